#!/usr/bin/env python3
"""bench/estimate.py - `pml-migrate estimate`'s predictions against real
migrations of the same guests.

For each cell (a memstress working set and rate, a link), a guest is
started, measured with `estimate --seconds S --link RATE`, and then
migrated over loopback to a local agent with `send --max-bandwidth RATE`
(the link, as the engine's own cap): predicted and real total time,
downtime, bytes and whether the throttle was needed, side by side, and
the error of each prediction. Runs are interleaved, cell by cell.

With --shaped the link is a real one instead of the engine's cap, and the
estimate measures it instead of being told: a veth pair between two
network namespaces this script creates (pmgest-s-PID, 10.252.X.1, and
pmgest-d-PID, 10.252.X.2, X = PID mod 250), shaped in both directions by
tc tbf at each cell's link rate (burst 5 ms of the rate, at least 16 KiB;
the rate changes per cell, nothing is restarted for it). The agent runs
in the destination namespace, the guest, `estimate` and `send` in the
source one. The estimate is `estimate NAME --seconds S --to
10.252.X.2:PORT --probe-seconds 2` (no --link: the link is measured, and
must be reported as such), the migration `send` without --max-bandwidth.
The table gains the tbf rate, the link the estimate measured and its
error against the tbf rate, and the round trip it measured. Needs root
(exit 2 without); the namespaces and everything in them are removed on
exit, also on errors and Ctrl-C.

Usage: bench/estimate.py [--runs N] [--seconds S] [--cells N] [--shaped]
                         [--json FILE]
Run from the build directory (it uses ./pml-migrate and guest/*.elf).
Every process is bounded by timeout(1); the agent listens on 127.0.0.1
only (with --shaped: on the veth inside its own namespace) and is stopped
on exit. Link rates are bytes per second with K/M/G as pml-migrate reads
them (powers of 1024: "20M" is 20,971,520 B/s, tbf rate 167772160bit);
MB/s in the table are 10^6 bytes per second.
"""
import argparse
import json
import os
import shutil
import signal
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


def rate_bytes(s):
    """A link string as pml-migrate reads it (cli_parse_size): K/M/G/T are
    powers of 1024, an optional i and B after them."""
    s = s.strip()
    mul = {"k": 1 << 10, "m": 1 << 20, "g": 1 << 30, "t": 1 << 40}
    t = s.rstrip("bB")
    t = t[:-1] if len(t) > 1 and t[-1] in "iI" and t[-2].lower() in mul else t
    if t and t[-1].lower() in mul:
        return int(float(t[:-1]) * mul[t[-1].lower()])
    return int(float(t))


def quick(argv, timeout=20):
    try:
        return subprocess.run(["timeout", str(timeout), *argv], capture_output=True, text=True,
                              stdin=subprocess.DEVNULL)
    except OSError as e:
        return subprocess.CompletedProcess(argv, 127, "", str(e))


class ShapedLink:
    """Two network namespaces joined by a veth pair, tbf in both directions.
    Source side in nss (10.252.X.1), destination in nsd (10.252.X.2)."""

    def __init__(self):
        pid = os.getpid()
        self.nss, self.nsd = f"pmgest-s-{pid}", f"pmgest-d-{pid}"
        # Interface names have at most 15 characters.
        self.sv, self.dv = f"pges{pid}", f"pged{pid}"
        self.sub = pid % 250
        self.src_addr, self.dst_addr = f"10.252.{self.sub}.1", f"10.252.{self.sub}.2"
        self.made = []
        self.rate = None

    def src_exec(self):
        return ["ip", "netns", "exec", self.nss]

    def dst_exec(self):
        return ["ip", "netns", "exec", self.nsd]

    def setup(self):
        """'' when up, else why not."""
        for ns in (self.nss, self.nsd):
            r = quick(["ip", "netns", "add", ns])
            if r.returncode:
                return f"ip netns add {ns} failed: " + r.stderr.strip()[:200]
            self.made.append(ns)
        for argv in (["ip", "link", "add", self.sv, "type", "veth", "peer", "name", self.dv],
                     ["ip", "link", "set", self.sv, "netns", self.nss], ["ip", "link", "set", self.dv, "netns", self.nsd],
                     ["ip", "-n", self.nss, "addr", "add", f"{self.src_addr}/30", "dev", self.sv],
                     ["ip", "-n", self.nsd, "addr", "add", f"{self.dst_addr}/30", "dev", self.dv],
                     ["ip", "-n", self.nss, "link", "set", "lo", "up"], ["ip", "-n", self.nsd, "link", "set", "lo", "up"],
                     ["ip", "-n", self.nss, "link", "set", self.sv, "up"],
                     ["ip", "-n", self.nsd, "link", "set", self.dv, "up"]):
            r = quick(argv)
            if r.returncode:
                return f"veth setup failed ({' '.join(argv)}): " + r.stderr.strip()[:200]
        return ""

    def shape(self, rate):
        """Both directions (data one way, ACKs the other) at RATE bytes per
        second, with a burst of 5 ms at the rate (at least 16 KiB): accurate,
        without starving TSO segments. Only when the rate changes. '' when
        done, else why not."""
        if rate == self.rate:
            return ""
        burst = max(16384, rate * 5 // 1000)
        for ns, dev in ((self.nss, self.sv), (self.nsd, self.dv)):
            quick(["tc", "-n", ns, "qdisc", "del", "dev", dev, "root"])
            r = quick(["tc", "-n", ns, "qdisc", "add", "dev", dev, "root", "tbf", "rate", f"{rate * 8}bit",
                       "burst", str(burst), "latency", "20ms"])
            if r.returncode:
                self.rate = None
                return "tc tbf failed: " + (r.stderr.strip()[:200] or "?")
        self.rate = rate
        return ""

    def kill_in(self, ns):
        """SIGKILL every process inside NS: ours by construction."""
        for pid in quick(["ip", "netns", "pids", ns]).stdout.split():
            try:
                os.kill(int(pid), signal.SIGKILL)
            except (ValueError, OSError):
                pass

    def teardown(self):
        for ns in self.made:
            self.kill_in(ns)
        for ns in self.made:
            quick(["ip", "netns", "del", ns])
        self.made = []
        # A veth left behind in this namespace by a half-done setup.
        for dev in (self.sv, self.dv):
            if os.path.exists(f"/sys/class/net/{dev}"):
                quick(["ip", "link", "del", dev])


def one(pm, guests, d, port, args, link, seconds, n, net=None):
    env = dict(os.environ, PML_MIGRATE_RUNDIR=f"{d}/src")
    name = f"est{n}"
    pre = net.src_exec() if net else []
    vm = subprocess.Popen(pre + ["timeout", "300", pm, "run", f"{guests}/memstress.elf", "--mem", "1G", "--name", name,
                                 "--", "seed=5", *args.split(), "prefill=1", "content=text", "ops=100000000",
                                 "ms=60000"],
                          env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, stdin=subprocess.DEVNULL)
    try:
        for _ in range(200):
            if os.path.exists(f"{d}/src/{name}.sock"):
                break
            time.sleep(0.05)
        time.sleep(1)
        if net:
            to = f"{net.dst_addr}:{port}"
            est = subprocess.run(pre + ["timeout", str(int(seconds) + 60), pm, "estimate", name, "--seconds",
                                        str(seconds), "--to", to, "--certs", f"{d}/certs", "--node", "sender",
                                        "--peer", "agent", "--probe-seconds", "2", "--json"],
                                 env=env, capture_output=True, text=True, stdin=subprocess.DEVNULL)
            snd = subprocess.run(pre + ["timeout", "150", pm, "send", name, to, "--certs", f"{d}/certs",
                                        "--node", "sender", "--peer", "agent", "--max-time", "120", "--json"],
                                 env=env, capture_output=True, text=True, stdin=subprocess.DEVNULL)
        else:
            est = subprocess.run(["timeout", str(int(seconds) + 60), pm, "estimate", name, "--seconds", str(seconds),
                                  "--link", link, "--json"], env=env, capture_output=True, text=True)
            snd = subprocess.run(["timeout", "150", pm, "send", name, f"127.0.0.1:{port}", "--certs", f"{d}/certs",
                                  "--node", "sender", "--peer", "agent", "--max-bandwidth", link, "--max-time", "120",
                                  "--json"], env=env, capture_output=True, text=True)
        subprocess.run([pm, "ctl", name, "stop"], env=dict(os.environ, PML_MIGRATE_RUNDIR=f"{d}/dst"),
                       capture_output=True)
        e, s = last_json(est.stdout), last_json(snd.stdout, '"event":"result"')
        if net:
            if not e:
                e = {"error": (est.stderr.strip().splitlines() or [f"exit {est.returncode}"])[-1][:200]}
            if not s:
                s = {"error": (snd.stderr.strip().splitlines() or [f"exit {snd.returncode}"])[-1][:200]}
        return e, s
    finally:
        if net:
            # timeout(1) passes SIGTERM on to the VM host; whatever is left in
            # the source namespace (only this cell's processes) goes after it.
            vm.terminate()
            try:
                vm.wait(10)
            except subprocess.TimeoutExpired:
                vm.kill()
                vm.wait()
            net.kill_in(net.nss)
        else:
            vm.kill()
            vm.wait()


def err(p, r):
    return None if p is None or not r else (p - r) / r


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--seconds", type=float, default=3)
    ap.add_argument("--cells", type=int, default=len(CELLS), help="only the first N cells")
    ap.add_argument("--shaped", action="store_true",
                    help="migrate over a tbf-shaped veth between two namespaces; the estimate measures the link")
    ap.add_argument("--json", help="also write every run here")
    o = ap.parse_args()
    cells = CELLS[:max(0, o.cells)]
    pm, guests = os.path.abspath("pml-migrate"), os.path.abspath("guest")
    if not os.access(pm, os.X_OK) or not shutil.which("timeout"):
        sys.exit("bench/estimate.py: run it from the build directory (./pml-migrate), with timeout(1) installed")
    net = None
    if o.shaped:
        if os.geteuid() != 0:
            print("bench/estimate.py: --shaped needs root (ip netns, veth, tc)", file=sys.stderr)
            sys.exit(2)
        for tool in ("ip", "tc"):
            if not shutil.which(tool):
                print(f"bench/estimate.py: --shaped needs {tool} (iproute2)", file=sys.stderr)
                sys.exit(2)
        # SIGTERM as Ctrl-C: the finally below tears the namespaces down.
        signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
        net = ShapedLink()
    d = tempfile.mkdtemp(prefix="pmg-estimate-")
    agent = None
    rows = []
    try:
        os.makedirs(f"{d}/src")
        os.makedirs(f"{d}/dst")
        for a in (["certs", "init", f"{d}/certs"], ["certs", "issue", f"{d}/certs", "agent"],
                  ["certs", "issue", f"{d}/certs", "sender"]):
            subprocess.run([pm, *a], check=True, capture_output=True)
        if net:
            why = net.setup() or net.shape(rate_bytes(cells[0][1]) if cells else 1 << 20)
            if why:
                print(f"bench/estimate.py: --shaped: {why}", file=sys.stderr)
                sys.exit(2)
            agent = subprocess.Popen(net.dst_exec() + ["timeout", "7200", pm, "recv", "--listen", f"{net.dst_addr}:0",
                                                       "--certs", f"{d}/certs", "--node", "agent", "--allow", "sender",
                                                       "--run-dir", f"{d}/dst", "--port-file", f"{d}/port"],
                                     stdout=subprocess.DEVNULL, stderr=open(f"{d}/agent.log", "w"),
                                     stdin=subprocess.DEVNULL)
        else:
            agent = subprocess.Popen(["timeout", "3600", pm, "recv", "--listen", "127.0.0.1:0", "--certs", f"{d}/certs",
                                      "--run-dir", f"{d}/dst", "--port-file", f"{d}/port"],
                                     stdout=subprocess.DEVNULL, stderr=open(f"{d}/agent.log", "w"),
                                     stdin=subprocess.DEVNULL)
        for _ in range(100):
            if os.path.exists(f"{d}/port") and os.path.getsize(f"{d}/port"):
                break
            time.sleep(0.05)
        if net and not (os.path.exists(f"{d}/port") and os.path.getsize(f"{d}/port")):
            log = open(f"{d}/agent.log").read().strip()[-300:]
            print(f"bench/estimate.py: --shaped: the agent did not start: {log}", file=sys.stderr)
            sys.exit(2)
        port = open(f"{d}/port").read().strip()
        n = 0
        for run in range(o.runs):
            for args, link in cells:
                n += 1
                row = {"cell": f"{args} link {link}", "run": run + 1}
                if net:
                    why = net.shape(rate_bytes(link))
                    if why:
                        print(f"bench/estimate.py: --shaped: {why}", file=sys.stderr)
                        sys.exit(2)
                    row["tbf_bytes_per_s"] = net.rate
                e, s = one(pm, guests, d, port, args, link, o.seconds, n, net)
                row.update({"estimate": e, "send": s})
                rows.append(row)
                extra = ""
                if net:
                    lb = e.get("link_bytes_per_s")
                    extra = (f" [tbf {net.rate / 1e6:.1f} MB/s, measured "
                             f"{'-' if lb is None else f'{lb / 1e6:.1f}'} MB/s ({e.get('link_source')}), "
                             f"rtt {e.get('link_rtt_us')} us]")
                    for k, v in (("estimate", e), ("send", s)):
                        if v.get("error"):
                            extra += f" {k}: {v['error']}"
                print(f"[{n}/{o.runs * len(cells)}] {args} link {link}: predicted {e.get('predicted_verdict')} "
                      f"{e.get('predicted_total_time_ms')} ms; real {s.get('result')} {s.get('total_time_ms')} ms"
                      f"{extra}", file=sys.stderr)
    finally:
        if agent:
            agent.terminate()
            try:
                agent.wait(10)
            except subprocess.TimeoutExpired:
                agent.kill()
                agent.wait()
        if net:
            net.teardown()
        shutil.rmtree(d, ignore_errors=True)
    if o.json:
        with open(o.json, "w") as f:
            json.dump(rows, f, indent=1)
    med = lambda v: statistics.median(v) if v else None  # noqa: E731
    f = lambda v, k=1: "-" if v is None else f"{v:.{k}f}"  # noqa: E731
    pct = lambda v: "-" if v is None else f"{v * 100:+.0f} %"  # noqa: E731
    if net:
        print("| guest | link | tbf MB/s | measured MB/s (error) | rtt ms | predicted | real (throttle %) "
              "| total ms predicted / real | error | downtime ms predicted / real | MB predicted / real | error |")
        print("| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |")
    else:
        print("| guest | link | predicted | real (throttle %) | total ms predicted / real | error "
              "| downtime ms predicted / real | MB predicted / real | error |")
        print("| --- | --- | --- | --- | --- | --- | --- | --- | --- |")
    errs_t, errs_b, errs_l = [], [], []
    for args, link in cells:
        rs = [r for r in rows if r["cell"] == f"{args} link {link}"]
        # Shaped: a prediction counts only if the link under it was measured.
        ok = [r for r in rs if r["send"].get("result") == "migrated" and r["estimate"].get("ok")
              and (not net or r["estimate"].get("link_source") == "measured")]
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
        lead = f"| {args} | {link}B/s | "
        if net:
            tbf = rate_bytes(link) / 1e6
            meas = [r["estimate"] for r in rs if r["estimate"].get("link_source") == "measured"
                    and r["estimate"].get("link_bytes_per_s")]
            ml = med([m["link_bytes_per_s"] / 1e6 for m in meas])
            rtt = med([m["link_rtt_us"] / 1e3 for m in meas if m.get("link_rtt_us") is not None])
            el = err(ml, tbf)
            if el is not None:
                errs_l.append(abs(el))
            srcs = ",".join(sorted({str(r["estimate"].get("link_source")) for r in rs} - {"measured"}))
            lead += (f"{f(tbf)} | {f(ml)} ({pct(el)}){f' (not measured: {srcs})' if srcs else ''} | "
                     f"{f(rtt, 2)} | ")
        print(f"{lead}{verdicts} | {len(ok)}/{len(rs)} migrated ({thr}) | {f(pt, 0)} / {f(rt, 0)} | "
              f"{pct(et)} | {f(pdn)} / {f(rdn)} | {f(pb)} / {f(rb)} | {pct(eb)} |")
    print(f"\nmedian |error|: total time {f(med(errs_t) and med(errs_t) * 100, 0)} %, bytes "
          f"{f(med(errs_b) and med(errs_b) * 100, 0)} % (cells where a prediction and a migration exist)"
          + (f"; measured link against the tbf rate {f(med(errs_l) and med(errs_l) * 100, 0)} %" if net else ""))


if __name__ == "__main__":
    main()
