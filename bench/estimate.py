#!/usr/bin/env python3
"""bench/estimate.py - `pml-migrate estimate`'s predictions against real
migrations of the same guests.

For each cell (a memstress working set and rate, a link), a guest is
started, measured with `estimate --seconds S --link RATE`, and then
migrated over loopback to a local agent with `send --max-bandwidth RATE`
(the link, as the engine's own cap): predicted and real total time,
downtime, bytes and whether the throttle was needed, side by side, and
the error of each prediction. Runs are interleaved, cell by cell.

Usage: bench/estimate.py [--runs N] [--seconds S] [--json FILE]
Run from the build directory (it uses ./pml-migrate and guest/*.elf).
Every process is bounded by timeout(1); the agent listens on 127.0.0.1
only and is stopped on exit.
"""
import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time

# (guest args, link): below, near and above the link's page rate.
CELLS = [("ws=64M rate=8", "20M"), ("ws=64M rate=4", "50M"), ("ws=32M rate=16", "20M"),
         ("ws=128M rate=2", "100M"), ("ws=256M rate=32", "100M")]


def last_json(text, must=None):
    for line in reversed(text.splitlines()):
        if line.startswith("{") and (must is None or must in line):
            try:
                return json.loads(line)
            except ValueError:
                pass
    return {}


def one(pm, guests, d, port, args, link, seconds, n):
    env = dict(os.environ, PML_MIGRATE_RUNDIR=f"{d}/src")
    name = f"est{n}"
    vm = subprocess.Popen(["timeout", "300", pm, "run", f"{guests}/memstress.elf", "--mem", "1G", "--name", name, "--",
                           "seed=5", *args.split(), "prefill=1", "content=text", "ops=100000000", "ms=60000"],
                          env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, stdin=subprocess.DEVNULL)
    try:
        for _ in range(200):
            if os.path.exists(f"{d}/src/{name}.sock"):
                break
            time.sleep(0.05)
        time.sleep(1)
        est = subprocess.run(["timeout", str(int(seconds) + 60), pm, "estimate", name, "--seconds", str(seconds),
                              "--link", link, "--json"], env=env, capture_output=True, text=True)
        snd = subprocess.run(["timeout", "150", pm, "send", name, f"127.0.0.1:{port}", "--certs", f"{d}/certs",
                              "--node", "sender", "--peer", "agent", "--max-bandwidth", link, "--max-time", "120",
                              "--json"], env=env, capture_output=True, text=True)
        subprocess.run([pm, "ctl", name, "stop"], env=dict(os.environ, PML_MIGRATE_RUNDIR=f"{d}/dst"),
                       capture_output=True)
        return last_json(est.stdout), last_json(snd.stdout, '"event":"result"')
    finally:
        vm.kill()
        vm.wait()


def err(p, r):
    return None if p is None or not r else (p - r) / r


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--seconds", type=float, default=3)
    ap.add_argument("--json", help="also write every run here")
    o = ap.parse_args()
    pm, guests = os.path.abspath("pml-migrate"), os.path.abspath("guest")
    if not os.access(pm, os.X_OK) or not shutil.which("timeout"):
        sys.exit("bench/estimate.py: run it from the build directory (./pml-migrate), with timeout(1) installed")
    d = tempfile.mkdtemp(prefix="pmg-estimate-")
    os.makedirs(f"{d}/src")
    os.makedirs(f"{d}/dst")
    for a in (["certs", "init", f"{d}/certs"], ["certs", "issue", f"{d}/certs", "agent"],
              ["certs", "issue", f"{d}/certs", "sender"]):
        subprocess.run([pm, *a], check=True, capture_output=True)
    agent = subprocess.Popen(["timeout", "3600", pm, "recv", "--listen", "127.0.0.1:0", "--certs", f"{d}/certs",
                              "--run-dir", f"{d}/dst", "--port-file", f"{d}/port"],
                             stdout=subprocess.DEVNULL, stderr=open(f"{d}/agent.log", "w"), stdin=subprocess.DEVNULL)
    rows = []
    try:
        for _ in range(100):
            if os.path.exists(f"{d}/port") and os.path.getsize(f"{d}/port"):
                break
            time.sleep(0.05)
        port = open(f"{d}/port").read().strip()
        n = 0
        for run in range(o.runs):
            for args, link in CELLS:
                n += 1
                e, s = one(pm, guests, d, port, args, link, o.seconds, n)
                rows.append({"cell": f"{args} link {link}", "run": run + 1, "estimate": e, "send": s})
                print(f"[{n}/{o.runs * len(CELLS)}] {args} link {link}: predicted {e.get('predicted_verdict')} "
                      f"{e.get('predicted_total_time_ms')} ms; real {s.get('result')} {s.get('total_time_ms')} ms",
                      file=sys.stderr)
    finally:
        agent.terminate()
        agent.wait()
        shutil.rmtree(d, ignore_errors=True)
    if o.json:
        with open(o.json, "w") as f:
            json.dump(rows, f, indent=1)
    med = lambda v: statistics.median(v) if v else None  # noqa: E731
    f = lambda v, k=1: "-" if v is None else f"{v:.{k}f}"  # noqa: E731
    print("| guest | link | predicted | real (throttle %) | total ms predicted / real | error | downtime ms predicted / real"
          " | MB predicted / real | error |")
    print("| --- | --- | --- | --- | --- | --- | --- | --- | --- |")
    errs_t, errs_b = [], []
    for args, link in CELLS:
        rs = [r for r in rows if r["cell"] == f"{args} link {link}"]
        ok = [r for r in rs if r["send"].get("result") == "migrated" and r["estimate"].get("ok")]
        pt = med([r["estimate"].get("predicted_total_time_ms") for r in ok if r["estimate"].get("predicted_total_time_ms")])
        rt = med([r["send"]["total_time_ms"] for r in ok])
        pdn = med([r["estimate"].get("predicted_downtime_ms") for r in ok if r["estimate"].get("predicted_downtime_ms")])
        rdn = med([r["send"]["downtime_ms"] for r in ok])
        pb = med([r["estimate"].get("predicted_bytes", 0) / 1e6 for r in ok])
        rb = med([r["send"]["bytes_on_wire"] / 1e6 for r in ok])
        verdicts = ",".join(sorted({str(r["estimate"].get("predicted_verdict")) for r in rs}))
        thr = ",".join(str(r["send"].get("throttle_max_pct")) for r in ok)
        et, eb = err(pt, rt), err(pb, rb)
        if et is not None:
            errs_t.append(abs(et))
        if eb is not None:
            errs_b.append(abs(eb))
        print(f"| {args} | {link}B/s | {verdicts} | {len(ok)}/{len(rs)} migrated ({thr}) | {f(pt, 0)} / {f(rt, 0)} | "
              f"{'-' if et is None else f'{et * 100:+.0f} %'} | {f(pdn)} / {f(rdn)} | {f(pb)} / {f(rb)} | "
              f"{'-' if eb is None else f'{eb * 100:+.0f} %'} |")
    print(f"\nmedian |error|: total time {f(med(errs_t) and med(errs_t) * 100, 0)} %, bytes "
          f"{f(med(errs_b) and med(errs_b) * 100, 0)} % (cells where a prediction and a migration exist)")


if __name__ == "__main__":
    main()
