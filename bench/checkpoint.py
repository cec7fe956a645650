#!/usr/bin/env python3
"""bench/checkpoint.py - incremental checkpoints against a full image each time.

For each cell (a memstress working set and dirty rate), one guest is
started and checkpointed two ways, side by side on the same guest:

  (a) incremental: one `checkpoint NAME DIR1 --every E --count K --json`:
      the first file is a full image, the next K-1 hold only the pages
      written since the previous one (the dirty log stays armed);
  (b) full each time: K separate `checkpoint NAME DIR2 --json` commands,
      started E seconds apart (start to start, as --every counts), each a
      new connection and so a full image.

Per checkpoint the command's own report is kept (pause_ms, bytes, pages,
total_ms, ...), and each directory is read back with `restore DIR --list
--json` to check that every file it wrote is readable. The table gives,
per cell, the median pause, image size and time to write one checkpoint
for the incremental ones (the first, full one of (a) excluded) and for the
full ones of (b), and the ratio of their sizes. With --runs N the order of
(a) and (b) alternates from run to run (a new guest each run and cell).

Usage: bench/checkpoint.py [--runs N] [--count K] [--every S] [--cells N]
                           [--downtime MS] [--json FILE]
Run from the build directory (it uses ./pml-migrate and guest/*.elf).
Every process is bounded by timeout(1); the guests' control sockets and the
checkpoint files live in a private temporary directory, removed on exit
(each cell's files as soon as the cell is done).
"""
import argparse
import json
import os
import shlex
import shutil
import statistics
import subprocess
import sys
import tempfile
import time

# Guest args: one working set, dirty rates from light to heavy (memstress
# MB/s are MiB/s: 256 pages of 4096 B per MB).
CELLS = ["ws=256M rate=2", "ws=256M rate=8", "ws=256M rate=32"]


def json_lines(text):
    out = []
    for line in text.splitlines():
        if line.startswith("{"):
            try:
                out.append(json.loads(line))
            except ValueError:
                pass
    return out


def rate_pages(args):
    """The guest's dirty rate in pages/s, from its rate=MBPS argument."""
    for a in args.split():
        if a.startswith("rate="):
            return int(a[5:]) * (1 << 20) // 4096
    return None


def listed(pm, env, ckdir):
    """`restore DIR --list --json`: (files readable, files listed, kinds)."""
    p = subprocess.run(["timeout", "60", pm, "restore", ckdir, "--list", "--json"], env=env,
                       capture_output=True, text=True)
    ls = [r for r in json_lines(p.stdout) if "seq" in r]
    return {"rc": p.returncode, "files": len(ls), "ok": sum(1 for r in ls if r.get("ok")),
            "kinds": [r.get("kind") for r in ls]}


def incremental(pm, env, name, ckdir, o):
    """(a): one checkpoint command, K checkpoints, --every E."""
    t = int(o.count * (o.every + 15)) + 60
    cmd = ["timeout", str(t), pm, "checkpoint", name, ckdir, "--every", str(o.every), "--count", str(o.count),
           "--downtime", str(o.downtime), "--json"]
    p = subprocess.run(cmd, env=env, capture_output=True, text=True)
    rows = [r for r in json_lines(p.stdout) if "seq" in r and "event" not in r]
    if p.returncode != 0:
        print(f"  incremental: exit {p.returncode}: {p.stderr.strip()[-300:]}", file=sys.stderr)
    return rows


def full(pm, env, name, ckdir, o):
    """(b): K checkpoint commands, each a new connection and a full image."""
    rows = []
    for i in range(o.count):
        t0 = time.monotonic()
        p = subprocess.run(["timeout", "60", pm, "checkpoint", name, ckdir, "--downtime", str(o.downtime), "--json"],
                           env=env, capture_output=True, text=True)
        got = [r for r in json_lines(p.stdout) if "seq" in r and "event" not in r]
        if p.returncode != 0:
            print(f"  full {i + 1}: exit {p.returncode}: {p.stderr.strip()[-300:]}", file=sys.stderr)
        rows.extend(got)
        if i + 1 < o.count:
            time.sleep(max(0.0, o.every - (time.monotonic() - t0)))
    return rows


def one(pm, guests, d, args, n, order, o):
    """One guest, checkpointed both ways in ORDER; returns the rows."""
    env = dict(os.environ, PML_MIGRATE_RUNDIR=f"{d}/run")
    name = f"ck{n}"
    # The guest must outlive both series: K checkpoints each way, E apart,
    # plus the time to write them (bounded by --max-precopy and the disk).
    ms = int(30000 + 2 * o.count * (o.every + 5) * 1000)
    vm = subprocess.Popen(["timeout", str(ms // 1000 + 120), pm, "run", f"{guests}/memstress.elf", "--mem", "1G",
                           "--name", name, "--", "seed=5", *args.split(), "prefill=1", "content=text",
                           "ops=100000000", f"ms={ms}"],
                          env=env, stdout=subprocess.DEVNULL, stderr=open(f"{d}/{name}.log", "w"),
                          stdin=subprocess.DEVNULL)
    rows = []
    try:
        for _ in range(200):
            if os.path.exists(f"{d}/run/{name}.sock"):
                break
            time.sleep(0.05)
        else:
            with open(f"{d}/{name}.log") as log:
                tail = log.read()[-500:].strip()
            print(f"  {name}: no control socket after 10 s; its stderr: {tail}", file=sys.stderr)
            return rows
        time.sleep(1)  # the prefill
        for mode in order:
            ckdir = f"{d}/{name}-{mode}"
            got = (incremental if mode == "incremental" else full)(pm, env, name, ckdir, o)
            ls = listed(pm, env, ckdir)
            for i, r in enumerate(got):
                rows.append({"mode": mode, "index": i + 1, **r})
            rows.append({"mode": mode, "listed": ls})
            shutil.rmtree(ckdir, ignore_errors=True)
    finally:
        subprocess.run(["timeout", "20", pm, "ctl", name, "stop"], env=env, capture_output=True)
        try:
            vm.wait(timeout=30)
        except subprocess.TimeoutExpired:
            vm.terminate()  # timeout(1) passes it on to pml-migrate run
            try:
                vm.wait(timeout=10)
            except subprocess.TimeoutExpired:
                vm.kill()
                vm.wait()
    return rows


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--runs", type=int, default=1, help="runs per cell, (a)/(b) order alternating (default 1)")
    ap.add_argument("--count", type=int, default=6, help="checkpoints per series, K (default 6)")
    ap.add_argument("--every", type=float, default=1, help="seconds between checkpoints (default 1)")
    ap.add_argument("--cells", type=int, default=len(CELLS), help=f"only the first N cells (default {len(CELLS)})")
    ap.add_argument("--downtime", type=int, default=50, help="checkpoint --downtime MS (default 50)")
    ap.add_argument("--json", help="also write every checkpoint's report here")
    o = ap.parse_args()
    if o.runs < 1 or o.count < 2 or o.every < 0.1 or not 1 <= o.cells <= len(CELLS):
        ap.error(f"need --runs >= 1, --count >= 2, --every >= 0.1, 1 <= --cells <= {len(CELLS)}")
    cells = CELLS[:o.cells]
    pm, guests = os.path.abspath("pml-migrate"), os.path.abspath("guest")
    if not os.access(pm, os.X_OK) or not shutil.which("timeout"):
        sys.exit("bench/checkpoint.py: run it from the build directory (./pml-migrate), with timeout(1) installed")
    cmdline = shlex.join(["bench/checkpoint.py", *sys.argv[1:]])
    d = tempfile.mkdtemp(prefix="pmg-checkpoint-")
    os.makedirs(f"{d}/run")
    rows = []
    try:
        n = 0
        for run in range(o.runs):
            order = ("incremental", "full") if run % 2 == 0 else ("full", "incremental")
            for args in cells:
                n += 1
                t0 = time.monotonic()
                got = one(pm, guests, d, args, n, order, o)
                for r in got:
                    rows.append({"cell": args, "run": run + 1, **r})
                inc = [r for r in got if r.get("mode") == "incremental" and r.get("kind") == "incremental"]
                ful = [r for r in got if r.get("mode") == "full" and r.get("kind") == "full"]
                print(f"[{n}/{o.runs * len(cells)}] {args}: {len(inc)} incremental, {len(ful)} full "
                      f"({' then '.join(order)}; {time.monotonic() - t0:.0f} s)", file=sys.stderr)
    finally:
        shutil.rmtree(d, ignore_errors=True)
    if o.json:
        with open(o.json, "w") as f:
            json.dump(rows, f, indent=1)
    med = lambda v: statistics.median(v) if v else None  # noqa: E731
    f = lambda v, k=1: "-" if v is None else f"{v:.{k}f}"  # noqa: E731
    print(f"Command: `{cmdline}` (from the build directory; {o.count} checkpoints per series, {o.every:g} s apart, "
          f"--downtime {o.downtime}; guest memstress 1 GiB prefill=1 content=text; medians over the checkpoints "
          f"of {o.runs} run(s))\n")
    print("| guest | dirty pages/s | incremental / full written | files readable | pause ms incr / full"
          " | MB incr / full | full / incr bytes | pages incr / full | write ms incr / full |")
    print("| --- | --- | --- | --- | --- | --- | --- | --- | --- |")
    for args in cells:
        rs = [r for r in rows if r["cell"] == args]
        inc = [r for r in rs if r.get("mode") == "incremental" and r.get("index", 0) > 1 and r.get("ok")
               and r.get("kind") == "incremental"]
        ful = [r for r in rs if r.get("mode") == "full" and r.get("ok") and r.get("kind") == "full"]
        ls = [r["listed"] for r in rs if "listed" in r]
        pi, pf = med([r["pause_ms"] for r in inc]), med([r["pause_ms"] for r in ful])
        bi, bf = med([r["bytes"] for r in inc]), med([r["bytes"] for r in ful])
        gi, gf = med([r["pages"] for r in inc]), med([r["pages"] for r in ful])
        ti, tf = med([r["total_ms"] for r in inc]), med([r["total_ms"] for r in ful])
        ratio = f"{bf / bi:.1f}x" if bi and bf else "-"
        print(f"| memstress {args} | {rate_pages(args)} | {len(inc)}/{o.runs * (o.count - 1)} / "
              f"{len(ful)}/{o.runs * o.count} | {sum(x['ok'] for x in ls)}/{sum(x['files'] for x in ls)} | "
              f"{f(pi, 2)} / {f(pf, 2)} | {f(bi and bi / 1e6)} / {f(bf and bf / 1e6)} | {ratio} | "
              f"{f(gi, 0)} / {f(gf, 0)} | {f(ti, 0)} / {f(tf, 0)} |")


if __name__ == "__main__":
    main()
