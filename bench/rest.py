#!/usr/bin/env python3
"""bench/rest.py - what the dirty log costs a guest that is not migrating.

Two measurements, side by side in one run, runs interleaved so that the
machine's noise falls on every configuration alike:

1. Guest speed: a write-heavy guest (kvstore by default) under
   `pml-migrate run` with --dirty-log off, ring and bitmap. The log is
   armed only while a migration runs, so ring and bitmap should run as
   fast as off (issue 11's target: within 2 %). With --at-rest the log is
   kept armed from boot as well (run --harvest-ms 10), which is what the
   engine did before, for comparison.
2. Stall at rest: the idle image's largest gap between two iterations of
   its loop (guest-observed), under `pml-migrate run` and under QEMU with
   the same image and arguments (skipped without qemu-system-x86_64).

Usage: bench/rest.py [--runs N] [--mem SIZE] [--args GUEST-ARGS] [--at-rest]
                     [--idle-mem SIZE] [--idle-args GUEST-ARGS] [--json FILE]
Run from the build directory (it uses ./pml-migrate and guest/*.elf).
"""
import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
sys.dont_write_bytecode = True  # no __pycache__ in the source tree
from benchlib import pmg_report, qemu_argv, tsc_khz  # noqa: E402


def pm_run(pm, image, mem, mode, gargs, extra=()):
    """One `pml-migrate run`; returns its JSON report."""
    rundir = tempfile.mkdtemp(prefix="pmg-rest-")
    try:
        cmd = [pm, "run", image, "--mem", mem, "--dirty-log", mode, "--json", *extra, "--", *gargs.split()]
        env = dict(os.environ, PML_MIGRATE_RUNDIR=rundir)
        p = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=600)
        if p.returncode != 0:
            raise RuntimeError(f"{' '.join(cmd)}: exit {p.returncode}: {p.stderr.strip()[-300:]}")
        return json.loads(p.stdout.strip().splitlines()[-1])
    finally:
        shutil.rmtree(rundir, ignore_errors=True)


def qemu_run(qemu, image, mem, gargs, khz):
    """The same image under QEMU (microvm, KVM); returns (max_stall_us, digest)."""
    out = tempfile.NamedTemporaryFile(prefix="pmg-rest-q-", delete=False)
    out.close()
    try:
        cmd = qemu_argv(qemu, image, mem, f"{gargs} tsc_khz={khz}") + ["-serial", f"file:{out.name}"]
        subprocess.run(cmd, capture_output=True, timeout=600)
        text = open(out.name, errors="replace").read()
    finally:
        os.unlink(out.name)
    rep = pmg_report(text)
    if not rep or not rep.get("max_stall_tsc", "").isdigit() or "digest" not in rep:
        raise RuntimeError(f"QEMU run of {image} printed no report: {text[-300:]!r}")
    return int(rep["max_stall_tsc"]) * 1000.0 / khz, rep["digest"]


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--runs", type=int, default=5)
    ap.add_argument("--mem", default="2G")
    ap.add_argument("--args", default="data=256M set_pct=50 ops=2000000", help="kvstore arguments")
    ap.add_argument("--at-rest", action="store_true", help="also measure the log kept armed (run --harvest-ms 10)")
    ap.add_argument("--idle-mem", default="8G")
    # sleep=0: the idle guest spins through its waits under both VMMs (QEMU
    # ignores its sleep call; a sleeping guest would count the host's
    # wake-up lateness, bench/RESULTS.md, issue 23).
    ap.add_argument("--idle-args", default="ops=300 period_us=10000 sleep=0")
    ap.add_argument("--json", help="write every run here")
    o = ap.parse_args()

    pm = os.path.abspath("./pml-migrate")
    kv, idle = os.path.abspath("guest/kvstore.elf"), os.path.abspath("guest/idle.elf")
    qemu = shutil.which("qemu-system-x86_64")
    khz = tsc_khz()
    if not os.path.exists("/dev/kvm"):
        sys.exit("bench/rest.py: /dev/kvm absent")

    configs = [("off", ()), ("ring", ()), ("bitmap", ())]
    if o.at_rest:
        configs += [("ring", ("--harvest-ms", "10")), ("bitmap", ("--harvest-ms", "10"))]
    name = lambda c: c[0] + (" armed at rest" if c[1] else "")
    times = {name(c): [] for c in configs}
    digests = set()
    runs = []
    for r in range(o.runs):
        order = configs[r % len(configs):] + configs[:r % len(configs)]
        for c in order:
            rep = pm_run(pm, kv, o.mem, c[0], o.args, c[1])
            times[name(c)].append(rep["run_time_ms"])
            digests.add(rep["digest"])
            runs.append({"bench": "speed", "config": name(c), "run": r, "run_time_ms": rep["run_time_ms"],
                         "digest": rep["digest"], "harvests": rep["harvests"]})
            print(f"run {r} {name(c):20s} {rep['run_time_ms']:9.1f} ms  digest {rep['digest']}", flush=True)

    stalls = {"pml-migrate run": [], "QEMU": []}
    for r in range(o.runs):
        rep = pm_run(pm, idle, o.idle_mem, "ring", o.idle_args)
        stalls["pml-migrate run"].append(rep["max_stall_us"] / 1000)
        runs.append({"bench": "stall", "engine": "pml-migrate", "run": r, "max_stall_ms": rep["max_stall_us"] / 1000})
        if qemu:
            s, d = qemu_run(qemu, idle, o.idle_mem, o.idle_args, khz)
            stalls["QEMU"].append(s / 1000)
            runs.append({"bench": "stall", "engine": "qemu", "run": r, "max_stall_ms": s / 1000, "digest": d})

    base = statistics.median(times["off"])
    print(f"\n## Guest speed at rest: kvstore {o.args}, {o.mem}, {o.runs} runs interleaved\n")
    print("| dirty log | median run time ms | min | max | ratio to off |")
    print("| --- | --- | --- | --- | --- |")
    for k, v in times.items():
        print(f"| {k} | {statistics.median(v):.1f} | {min(v):.1f} | {max(v):.1f} | {statistics.median(v) / base:.3f} |")
    print(f"\nDigests: {', '.join(sorted(digests))} ({'the same' if len(digests) == 1 else 'DIFFERENT'} in every run)")
    print(f"\n## Stall at rest: idle {o.idle_args}, {o.idle_mem}, {o.runs} runs\n")
    print("| engine | median max stall ms | min | max |")
    print("| --- | --- | --- | --- |")
    for k, v in stalls.items():
        if v:
            print(f"| {k} | {statistics.median(v):.2f} | {min(v):.2f} | {max(v):.2f} |")
        else:
            print(f"| {k} | not run (qemu-system-x86_64 not installed) | | |")
    if o.json:
        with open(o.json, "w") as f:
            json.dump({"args": vars(o), "runs": runs}, f, indent=1)
    return 0 if len(digests) == 1 else 1


if __name__ == "__main__":
    sys.exit(main())
