"""bench/benchlib.py - what bench/run, bench/summarize and bench/rest.py share:
the cell matrix, the guests' console lines (PMG-REPORT, PMG-OPS) and the
ops timeline's alignment with a migration, the QEMU command line, medians,
and the number and CSV formatting of the outputs. Standard library only.

The number and CSV formatting reproduce what the harness printed when it was
written in jq, so that results of either version read the same."""
import json
import math
import os
import re
import statistics
from collections import namedtuple

PRESETS = ("quick", "full")
LINKS = ("lo", "veth", "10g", "1g")
# The migrating engines, in the order every table and plot shows them.
ENGINES = ("pml-ring", "pml-bitmap", "qemu-bitmap", "qemu-ring")
ALL_ENGINES = ENGINES + ("none",)

# runs.csv's columns, in order (runs.json has these and the engine's whole
# report under "raw", and the guest's ops timeline under "timeline").
COLS = ("preset,cell,group,link,engine,mem,workload,args,compress,streams,run,result,total_time_ms,"
        "setup_time_ms,downtime_ms,guest_stall_ms,expected_downtime_ms,rounds,pages_sent,zero_pages,"
        "transferred_bytes,bytes_on_wire,throughput_mbps,dirty_rate_pps,harvests,harvest_time_ms,"
        "throttle_max_pct,ops_before_ps,ops_during_ps,ops_after_ps,note").split(",")


# ---- the matrix ---------------------------------------------------------------

class Cell(namedtuple("Cell", "group link engine mem workload args compress streams ms")):
    """One workload, guest size, link, engine, compression and stream count.
    args uses commas for spaces; ms is how long the guest keeps working after
    its working set is written (memstress ms=), so it outlives the migration."""
    __slots__ = ()

    @property
    def id(self):
        return f"{self.group}/{self.link}/{self.engine}/{self.mem}/{self.workload}:{self.args}/c={self.compress}/s={self.streams}"

    def line(self):
        """The --list form: the fields in order, one space apart."""
        return " ".join(str(f) for f in self)


HEAD = "ws=128M,prefill=1,rate=64,content=text,dist=uniform"
# A write-heavy guest running flat out, with its ops timeline (50 ms
# windows), to compare its speed before, during and after a migration.
FLATOUT = "ws=256M,prefill=1,rate=0,content=text,dist=uniform,tl_ms=50"


def _incompressible():
    # 1 GiB of random bytes, written once and then barely touched: the rate at
    # which each engine moves memory that does not compress (issue 11), with
    # one and with four streams.
    for e in ("pml-ring", "qemu-bitmap"):
        yield Cell("incompressible", "lo", e, "2G", "memstress", "ws=1G,prefill=1,rate=1,content=random", "auto", 1, 12000)
    yield Cell("incompressible", "lo", "pml-ring", "2G", "memstress", "ws=1G,prefill=1,rate=1,content=random", "auto", 4, 12000)


def _large():
    # The cells where the guest felt the migration most (issue 23): a 1 GiB
    # working set of random or text pages in a 4 GiB guest, 1 GiB touched in a
    # 64 GiB guest, and an idle 8 GiB guest, each written slowly (4 MB/s) so
    # that what the guest feels is the engine's work, not its own dirtying.
    # `none` is each guest alone, its stall at rest.
    # (Every guest waits by spinning: guest_args.)
    for mem, args in (("4G", "ws=1G,prefill=1,rate=4,content=random"),
                      ("4G", "ws=1G,prefill=1,rate=4,content=text"),
                      ("64G", "ws=1G,prefill=1,rate=4,content=text")):
        for e in ("pml-ring", "qemu-bitmap", "none"):
            yield Cell("large", "lo", e, mem, "memstress", args, "auto", 1, 12000)
    for e in ("pml-ring", "qemu-bitmap", "none"):
        yield Cell("large", "lo", e, "8G", "idle", "touch=16M,ops=1200,period_us=10000", "auto", 1, 12000)


def flatout_ms(engine, link, max_time):
    """How long the flat-out guest writes after its prefill: 2 s before the
    migration starts (wait_s), through the migration, and 2 s or more after.
    pml-migrate moves it in about 1 s on loopback without throttling, and in
    about 3 s on 1 Gbit/s with its throttle near 95 % (the rate sweep saw up
    to 7.5 s there): 7 and 12 s leave room for 2.5 and 7.5 s. QEMU with
    auto-converge raises its throttle 10 points per pass, and may take up
    to --max-time: its guest outlives that (as in the rate sweep), so a
    migration QEMU gives up on is cancelled while the guest still runs."""
    if engine.startswith("qemu-"):
        return max_time * 1000 + 4000
    return 7000 if link == "lo" else 12000


def _flatout(engines, links, max_time):
    for link in links:
        for e in engines:
            if e == "none" and link != "lo":
                continue  # nothing migrates: the link makes no difference
            yield Cell("flatout", link, e, "2G", "memstress", FLATOUT, "auto", 1, flatout_ms(e, link, max_time))


def cells(preset, max_time):
    """Every cell of a preset, in the order they run."""
    out = []
    for link in LINKS:
        for e in ENGINES:
            out.append(Cell("headline", link, e, "2G", "memstress", HEAD, "auto", 1, 5000))
    if preset == "quick":
        out.append(Cell("baseline", "lo", "none", "2G", "memstress", HEAD, "auto", 1, 5000))
        for e in ("pml-ring", "pml-bitmap"):
            out.append(Cell("size", "lo", e, "8G", "memstress", "ws=64M,prefill=1,rate=16,content=text", "auto", 1, 4000))
        for c in ("on", "off"):
            out.append(Cell("compress", "1g", "pml-ring", "2G", "memstress", "ws=128M,prefill=1,rate=64,content=random", c, 1, 5000))
        out += _incompressible()
        out += _flatout(("pml-ring", "qemu-bitmap", "none"), ("lo",), max_time)
        return out
    # Dirty rate from well below to well above a 1 Gbit/s link (125 MB/s).
    # Above the link a guest has to outlive QEMU's attempt (--max-time); our
    # engine throttles and converges, so its guests need not run that long.
    for r in (16, 256, 1024):
        for e in ENGINES:
            ms = 5000
            if r > 64:
                ms = max_time * 1000 + 4000 if e.startswith("qemu-") else 9000
            out.append(Cell("rate", "1g", e, "2G", "memstress", f"ws=128M,prefill=1,rate={r},content=text,dist=uniform", "auto", 1, ms))
    for wl, args in (("memstress", "ws=128M,prefill=1,rate=64,content=text,dist=zipf"),
                     ("memstress", "ws=128M,prefill=1,rate=64,content=random,dist=uniform"),
                     ("kvstore", "data=64M,rate=200000,ops=1200000"), ("idle", "touch=16M,ops=600,period_us=10000")):
        for e in ALL_ENGINES:
            out.append(Cell("workload", "lo", e, "2G", wl, args, "auto", 1, 5000))
    out.append(Cell("baseline", "lo", "none", "2G", "memstress", HEAD, "auto", 1, 5000))
    for s in ("1G", "4G", "16G"):
        for e in ENGINES:
            out.append(Cell("size", "lo", e, s, "memstress", "ws=64M,prefill=1,rate=16,content=text", "auto", 1, 4000))
    for w in ("text", "random"):
        for c in ("on", "off"):
            out.append(Cell("compress", "1g", "pml-ring", "2G", "memstress", f"ws=128M,prefill=1,rate=64,content={w}", c, 1, 5000))
    out.append(Cell("compress", "1g", "pml-ring", "2G", "memstress", "ws=128M,prefill=1,rate=64,content=random", "auto", 1, 5000))
    for s in (1, 4):
        out.append(Cell("streams", "10g", "pml-ring", "2G", "memstress", "ws=128M,prefill=1,rate=64,content=random", "auto", s, 5000))
    out += _incompressible()
    out += _large()
    out += _flatout(("pml-ring", "pml-bitmap", "qemu-bitmap", "none"), ("lo", "1g"), max_time)
    # Without LZ4 on loopback: half the CPU per page on both ends, twice the
    # bytes through TLS (what the flat-out guest's speed costs, RESULTS.md).
    out.append(Cell("flatout", "lo", "pml-ring", "2G", "memstress", FLATOUT, "off", 1, flatout_ms("pml-ring", "lo", max_time)))
    return out


def guest_args(cell, seed):
    """The guest's command line (space-separated) for one run. sleep=0:
    the guest waits by spinning under every engine. QEMU ignores the
    guest's sleep call, so its guest always spins; ours honours it, and a
    sleeping guest counts in its stall how late the host wakes it (1.9 to
    24 ms on a quiet PVM host, bench/RESULTS.md): stalls compare only with
    the same kind of wait (issue 23)."""
    a = f"seed={seed} sleep=0 {cell.args.replace(',', ' ')}"
    if cell.workload == "memstress":
        a += f" ops=100000000 ms={cell.ms}"
    return a


# ---- the machine and QEMU ----------------------------------------------------------

def tsc_khz():
    """The guest's TSC rate as the host sees it (guests under QEMU are told it
    with tsc_khz=; pml-migrate passes it on its own)."""
    with open("/proc/cpuinfo") as f:
        for line in f:
            if line.startswith("cpu MHz"):
                return int(float(line.split(":")[1]) * 1000)
    return 0


def qemu_argv(qemu, image, mem, append, accel="kvm"):
    """QEMU booting a guest image through its PVH entry, as bench/run and
    bench/rest.py run it; the caller adds -serial (and -qmp, -incoming)."""
    return [qemu, "-M", "microvm,x-option-roms=off,rtc=off", "-accel", accel, "-m", mem, "-kernel", image,
            "-append", append, "-nodefaults", "-no-user-config", "-display", "none", "-no-reboot",
            "-device", "isa-debug-exit,iobase=0xf4,iosize=4",
            # Threads named by role ("CPU 0/KVM", "live_migration"): a
            # profile (bench/run --perf) tells the vCPU from the rest.
            "-name", "bench,debug-threads=on"]


# ---- the guest's console -----------------------------------------------------------

def _console_line(text, tag):
    """The last line that holds `tag` (the console may carry other output)."""
    found = None
    for line in text.splitlines():
        i = line.find(tag)
        if i >= 0:
            found = line[i:]
    return found


def pmg_report(text):
    """The fields of the guest's last PMG-REPORT line (as strings), or None."""
    line = _console_line(text, "PMG-REPORT ")
    if line is None:
        return None
    return dict(kv.split("=", 1) for kv in line.split()[1:] if "=" in kv)


def stall_ms_from_report(text, khz):
    """The guest-observed stall of a PMG-REPORT, in ms to 3 decimals, or None."""
    rep = pmg_report(text)
    if not rep or not rep.get("max_stall_tsc", "").isdigit() or not khz:
        return None
    return float(f"{int(rep['max_stall_tsc']) / khz:.3f}")


def pmg_ops(text):
    """The guest's ops timeline (tl_ms=N), or None:
    {"window_ms": N, "stall_at_ms": T, "ops": [pages written per window]}.
    Windows are guest time since the workload started (prefill included);
    stall_at_ms is where the guest's largest stall ended."""
    line = _console_line(text, "PMG-OPS ")
    if line is None:
        return None
    f = dict(kv.split("=", 1) for kv in line.split()[1:] if "=" in kv)
    try:
        ops = [int(x) for x in f.get("ops", "").split(",") if x != ""]
        tl = {"window_ms": int(f["window_ms"]), "stall_at_ms": int(f["stall_at_ms"]), "ops": ops}
    except (KeyError, ValueError):
        return None
    return tl if tl["window_ms"] > 0 and ops else None


def _full_windows(tl):
    """Indexes of the windows that count: from the first one with work (the
    windows before it are the prefill, which does not report progress) to
    the last complete one (the final window ends when the guest stops)."""
    ops = tl["ops"]
    first = next((i for i, v in enumerate(ops) if v), len(ops))
    return range(first, len(ops) - 1)


def _rate(tl, idx):
    """ops per second over the windows idx, or None without a window."""
    idx = list(idx)
    if not idx:
        return None
    return sum(tl["ops"][i] for i in idx) * 1000.0 / (len(idx) * tl["window_ms"])


BEFORE_MS = 2000


def ops_phases(tl, total_time_ms):
    """ops/s before, during and after a migration, from the guest's timeline.
    The guest has only its own clock, so the migration is placed on it from
    its largest stall, which for a migrated guest is the switchover: the
    switchover is at stall_at_ms, the start at stall_at_ms - total_time_ms.
    before = the windows wholly in the BEFORE_MS before the start, during =
    those wholly between start and switchover (so the pause itself counts),
    after = those from the switchover on. Each is None without a window."""
    if tl is None or total_time_ms is None:
        return None, None, None
    w, switch = tl["window_ms"], tl["stall_at_ms"]
    start = switch - total_time_ms
    full = _full_windows(tl)
    before = [i for i in full if i * w >= start - BEFORE_MS and (i + 1) * w <= start]
    during = [i for i in full if i * w >= start and (i + 1) * w <= switch]
    after = [i for i in full if i * w >= switch]
    return _rate(tl, before), _rate(tl, during), _rate(tl, after)


# The guest's time starts when its workload does, some time after the host
# started the VM: pml-migrate boots in tens of ms, QEMU in one to two
# hundred. So the migration's start on the guest's clock is the host's
# (migration start - VM start) less a boot time in this range; a start put
# elsewhere comes from a stall that was not the switchover (under QEMU the
# guest sees other stalls of 25-30 ms on this machine, longer than the
# switchover's), and the phases would be measured in the wrong places.
BOOT_MS_MIN, BOOT_MS_MAX = -200, 800


def check_alignment(tl, total_time_ms, host_start_ms):
    """Whether the design's alignment (switchover at the largest stall) agrees
    with the host's clock; records both in the timeline. Returns a note
    ('' when it agrees)."""
    if tl is None or total_time_ms is None or host_start_ms is None:
        return ""
    boot = host_start_ms - (tl["stall_at_ms"] - total_time_ms)
    tl["host_start_ms"] = round(host_start_ms, 1)
    tl["aligned"] = BOOT_MS_MIN <= boot <= BOOT_MS_MAX
    if tl["aligned"]:
        return ""
    return (f"timeline not aligned: the guest's largest stall ends at {tl['stall_at_ms']} ms of its time, "
            f"which puts the migration's start {boot:.0f} ms off the host's clock: it was not the switchover")


def ops_thirds(tl):
    """For a guest that does not migrate: ops/s over the first, middle and
    last third of its working time (prefill and the final partial window
    left out), the same three phases with nothing happening in them."""
    if tl is None:
        return None, None, None
    full = list(_full_windows(tl))
    k = len(full) // 3
    if k == 0:
        return None, None, None
    return _rate(tl, full[:k]), _rate(tl, full[k:len(full) - k]), _rate(tl, full[len(full) - k:])


def timeline_series(tl, zero_ms):
    """(seconds relative to zero_ms, ops/s) per counted window, at the window's middle."""
    w = tl["window_ms"]
    xs, ys = [], []
    for i in _full_windows(tl):
        xs.append(((i + 0.5) * w - zero_ms) / 1000.0)
        ys.append(tl["ops"][i] * 1000.0 / w)
    return xs, ys


def thirds_zero_ms(tl):
    """Where a guest that does not migrate is put on a migrated guest's time
    axis: the end of the middle third, its 'switchover'."""
    full = list(_full_windows(tl))
    k = len(full) // 3
    return (full[len(full) - k] if full else 0) * tl["window_ms"]


# ---- statistics and formatting -------------------------------------------------------

def stats(values):
    """{"med", "min", "max"} of the non-null values, or None."""
    v = [x for x in values if x is not None]
    if not v:
        return None
    return {"med": statistics.median(v), "min": min(v), "max": max(v)}


def lt(a, b):
    """a < b with null below every number (as the jq version compared)."""
    if a is None:
        return b is not None
    return b is not None and a < b


def tostr(v):
    """A value as text, as jq's tostring writes it (null is empty here)."""
    if v is None:
        return ""
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, float):
        if math.isfinite(v) and v == int(v) and abs(v) < 1e17:
            return str(int(v))
        return repr(v)
    if isinstance(v, (dict, list)):
        return json.dumps(v, separators=(",", ":"), ensure_ascii=False)
    return str(v)


def csv_line(values):
    """One CSV line: empty for null, quoted (quotes doubled) where a value
    holds a comma or a quote."""
    out = []
    for v in values:
        s = tostr(v)
        if "," in s or '"' in s:
            s = '"' + s.replace('"', '""') + '"'
        out.append(s)
    return ",".join(out)


def n(x):
    """A figure for the tables: 3 significant digits or so, '-' for null."""
    if x is None:
        return "-"
    if x < 0:
        return "-" + n(-x)
    if x >= 100:
        return tostr(float(math.floor(x + 0.5)))
    if x >= 10:
        return tostr(math.floor(x * 10 + 0.5) / 10)
    return tostr(math.floor(x * 100 + 0.5) / 100)


def s(st):
    """median (min–max) of a statistics object, '-' for null."""
    if st is None:
        return "-"
    return f"{n(st['med'])} ({n(st['min'])}–{n(st['max'])})"


def mb(st):
    """s() in millions (bytes to MB)."""
    if st is None:
        return "-"
    return f"{n(st['med'] / 1e6)} ({n(st['min'] / 1e6)}–{n(st['max'] / 1e6)})"


def load_runs(d):
    with open(os.path.join(d, "runs.json")) as f:
        return json.load(f)


def args_value(args, key):
    """The value of key= in a cell's args (spaces or commas), or None."""
    m = re.search(r"(?:^|[ ,])" + re.escape(key) + r"=([^ ,]*)", args or "")
    return m.group(1) if m else None


# ---- CPU profile of a migration (bench/run --perf) ---------------------------

PERF_HZ = 999
# bench/run --trace: what the vCPU thread did, and who ran instead of it.
TRACE_EVENTS = ("sched:sched_switch", "sched:sched_wakeup", "sched:sched_waking", "kvm:kvm_entry",
                "kvm:kvm_exit")
TRACE_FIELDS = "comm,tid,cpu,time,event,trace"
_TRACE_LINE = re.compile(r"^\s*(.+?)\s+(\d+)\s+\[(\d+)\]\s+([\d.]+):\s+(\w+:\w+):\s*(.*)$")
_SWITCH = re.compile(r"prev_comm=(.+?) prev_pid=(\d+) .*prev_state=(\S+) ==> next_comm=(.+?) next_pid=(\d+)")
_WAKE = re.compile(r"comm=(.+?) pid=(\d+) .*target_cpu=(\d+)")
_EXIT = re.compile(r"vcpu (\d+) reason (\S+)")
_VCPU_IDX = re.compile(r"^(?:vcpu(\d+)|CPU (\d+)/KVM)$")


def _vcpu_index(comm):
    m = _VCPU_IDX.match(comm)
    return None if not m else int(m.group(1) or m.group(2))


def _add(d, k, v):
    d[k] = d.get(k, 0.0) + v


def vcpu_gaps(text, top=5, min_ms=1.0, window=None, thread=None):
    """The top longest stretches, per vCPU index, in which no thread of
    that index ran guest code (see bench/gaps), from `perf script -F
    TRACE_FIELDS` text. window: (t0, t1) CLOCK_MONOTONIC seconds to keep
    gaps that overlap it, or None. thread: instead of the vCPUs, the
    threads of that name (index 0), whose time on a CPU counts as the
    guest's (a stand-in such as bench/pipe's, without KVM). Returns a list
    of dicts, longest first: vcpu, start, end (s), ms, and by_state /
    runnable_behind / woken_by (ms by state, by the thread that held the
    CPU, by waker)."""
    def index(comm):
        if thread is not None:
            return 0 if comm == thread else None
        return _vcpu_index(comm)

    ev = []
    for line in text.splitlines():
        m = _TRACE_LINE.match(line)
        if m:
            ev.append((float(m.group(4)), m.group(1).strip(), int(m.group(2)), int(m.group(3)), m.group(5), m.group(6)))
    ev.sort(key=lambda e: e[0])
    if not ev:
        return []
    # Who ran on each CPU, as intervals, for "runnable behind whom".
    runs, cur = {}, {}
    vcpu_tids = {}
    for t, comm, tid, cpu, name, rest in ev:
        if name == "sched:sched_switch":
            m = _SWITCH.search(rest)
            if not m:
                continue
            if cpu in cur:
                runs.setdefault(cpu, []).append((cur[cpu][0], t, cur[cpu][1]))
            cur[cpu] = (t, m.group(4))
            for c, p in ((m.group(1), m.group(2)), (m.group(4), m.group(5))):
                if index(c) is not None:
                    vcpu_tids[int(p)] = index(c)
        elif index(comm) is not None:
            vcpu_tids[tid] = index(comm)
    end_t = ev[-1][0]
    for cpu, (t0, who) in cur.items():
        runs.setdefault(cpu, []).append((t0, end_t, who))

    def behind(cpu, a, b, into):
        for r0, r1, who in runs.get(cpu, ()):
            if r1 > a and r0 < b:
                _add(into, who, (min(b, r1) - max(a, r0)) * 1000)

    # Each vCPU thread's states as segments (start, end, state, detail).
    st = {tid: {"state": None, "since": None, "detail": "", "cpu": None} for tid in vcpu_tids}
    segs = {tid: [] for tid in vcpu_tids}

    def move(tid, t, state, detail="", cpu=None):
        s = st[tid]
        if s["state"] is not None and t > s["since"]:
            segs[tid].append((s["since"], t, s["state"], s["detail"], s["cpu"]))
        s["state"], s["since"], s["detail"] = state, t, detail
        if cpu is not None:
            s["cpu"] = cpu

    last_exit = {}
    for t, comm, tid, cpu, name, rest in ev:
        if name == "kvm:kvm_entry" and tid in st:
            move(tid, t, "guest", cpu=cpu)
        elif name == "kvm:kvm_exit" and tid in st:
            m = _EXIT.search(rest)
            last_exit[tid] = m.group(2).lower() if m else "?"
            move(tid, t, "hv", last_exit[tid], cpu)
        elif name == "sched:sched_switch":
            m = _SWITCH.search(rest)
            if not m:
                continue
            prev, state, nxt = int(m.group(2)), m.group(3), int(m.group(5))
            if prev in st:
                if state.startswith("R"):
                    move(prev, t, "runnable", "preempted", cpu)
                else:
                    move(prev, t, "sleeping", "", cpu)
            if nxt in st:
                # A stand-in runs its "guest" whenever it is on a CPU.
                move(nxt, t, "guest" if thread is not None else "hv", last_exit.get(nxt, "?"), cpu)
        elif name in ("sched:sched_waking", "sched:sched_wakeup"):
            m = _WAKE.search(rest)
            if not m:
                continue
            p = int(m.group(2))
            if p in st and st[p]["state"] == "sleeping":
                move(p, t, "runnable", f"woken by {comm}", int(m.group(3)))
    for tid in st:
        move(tid, end_t, None)

    out = []
    for idx in sorted(set(vcpu_tids.values())):
        tids = [tid for tid, i in vcpu_tids.items() if i == idx]
        guest = sorted((a, b) for tid in tids for a, b, s, _, _ in segs[tid] if s == "guest")
        if not guest:
            continue
        # The gaps between guest stretches (merged across the threads).
        merged = []
        for a, b in guest:
            if merged and a <= merged[-1][1]:
                merged[-1][1] = max(merged[-1][1], b)
            else:
                merged.append([a, b])
        holes = [(merged[k][1], merged[k + 1][0]) for k in range(len(merged) - 1)]
        for a, b in holes:
            if (b - a) * 1000 < min_ms:
                continue
            if window and (b < window[0] or a > window[1]):
                continue
            # The thread that left guest mode at a.
            owner = next((tid for tid in tids for s0, s1, s, _, _ in segs[tid] if s == "guest" and s1 == a), None)
            g = {"vcpu": idx, "start": round(a, 6), "end": round(b, 6), "ms": round((b - a) * 1000, 3),
                 "by_state": {}, "runnable_behind": {}, "woken_by": {}}
            covered = a
            for s0, s1, s, detail, cpu in segs.get(owner, ()):
                lo, hi = max(a, s0), min(b, s1)
                if hi <= lo:
                    continue
                ms = (hi - lo) * 1000
                covered = max(covered, hi)
                if s == "hv":
                    _add(g["by_state"], f"hv {detail}", ms)
                elif s == "runnable":
                    _add(g["by_state"], "runnable", ms)
                    behind(cpu, lo, hi, g["runnable_behind"])
                    if detail.startswith("woken by "):
                        _add(g["woken_by"], detail[9:], ms)
                elif s == "sleeping":
                    _add(g["by_state"], "sleeping", ms)
            if covered < b:
                _add(g["by_state"], "moved", (b - covered) * 1000)
            # The guest went on in another thread of the index: the owner's
            # last sleep was the pause of a switchover.
            nxt = next((tid for tid in tids for s0, s1, s, _, _ in segs[tid] if s == "guest" and s0 == b), owner)
            if nxt != owner:
                g["moved_to_tid"] = nxt
                if "sleeping" in g["by_state"]:
                    g["by_state"]["paused (switchover)"] = g["by_state"].pop("sleeping")
            for k in ("by_state", "runnable_behind", "woken_by"):
                g[k] = {n: round(v, 3) for n, v in sorted(g[k].items(), key=lambda x: -x[1])}
            out.append(g)
    out.sort(key=lambda g: -g["ms"])
    return out[:top]


def gaps_table(gaps):
    """The markdown form of vcpu_gaps()'s answer."""
    if not gaps:
        return "No gap: no vCPU thread entered guest mode in the trace (no kvm:kvm_entry events; --thread NAME for a stand-in).\n"
    rows = ["| vCPU | at (s) | ms | where it went (ms) | ran instead (ms) |", "| --- | --- | --- | --- | --- |"]
    for g in gaps:
        where = ", ".join(f"{k} {v:.2f}" for k, v in g["by_state"].items())
        if g["woken_by"]:
            where += "; woken by " + ", ".join(f"{k}" for k in g["woken_by"])
        inst = ", ".join(f"{k} {v:.2f}" for k, v in list(g["runnable_behind"].items())[:4]) or "-"
        rows.append(f"| {g['vcpu']} | {g['start']:.3f} | {g['ms']:.2f} | {where} | {inst} |")
    return "\n".join(rows) + "\n"
# A vCPU thread: pml-migrate's and QEMU's names for them.
VCPU_RE = re.compile(r"^(vcpu\d+|CPU \d+/KVM)$")
_PERF_LINE = re.compile(r"^\s*(.+?)\s+(\d+)/(\d+)\s+([\d.]+):\s+[0-9a-f]+\s*(\S*)")


def descendants(roots):
    """The pids of roots and of all their descendants, now."""
    kids = {}
    for d in os.listdir("/proc"):
        if d.isdigit():
            try:
                with open(f"/proc/{d}/stat") as f:
                    ppid = int(f.read().rsplit(")", 1)[1].split()[1])
            except (OSError, ValueError, IndexError):
                continue
            kids.setdefault(ppid, []).append(int(d))
    out, todo = set(), [r for r in roots if r]
    while todo:
        p = todo.pop()
        if p not in out:
            out.add(p)
            todo += kids.get(p, [])
    return out


def cpu_split(script_text, engine_pids, ncpus):
    """CPU time by class from `perf script -F comm,pid,tid,time,ip,sym` of a
    system-wide cpu-clock profile. Samples are taken only in the host (a
    vCPU's time in guest mode is not sampled), so the guest's share is what
    is missing from ncpus x the window. ms figures, and the engine's threads
    by name."""
    n = {"vcpu_hv": 0, "engine": 0, "idle": 0, "other": 0}
    threads, syms = {}, {}
    t0 = t1 = None
    for line in script_text.splitlines():
        m = _PERF_LINE.match(line)
        if not m:
            continue
        comm, pid, t, sym = m.group(1).strip(), int(m.group(2)), float(m.group(4)), m.group(5)
        t0 = t if t0 is None else min(t0, t)
        t1 = t if t1 is None else max(t1, t)
        if pid == 0:
            n["idle"] += 1
        elif pid in engine_pids and VCPU_RE.match(comm):
            n["vcpu_hv"] += 1
            syms[sym or "?"] = syms.get(sym or "?", 0) + 1
        elif pid in engine_pids:
            n["engine"] += 1
            name = re.sub(r"\d+$", "N", comm)
            threads[name] = threads.get(name, 0) + 1
        else:
            n["other"] += 1
    if t0 is None:
        return None
    ms = 1000.0 / PERF_HZ
    window = (t1 - t0) * 1000 + ms
    out = {f"cpu_{k}_ms": round(v * ms, 1) for k, v in n.items()}
    out["cpu_window_ms"] = round(window, 1)
    out["cpu_guest_ms"] = round(max(0.0, ncpus * window - sum(n.values()) * ms), 1)
    out["cpu_engine_threads"] = {k: round(v * ms, 1) for k, v in sorted(threads.items(), key=lambda x: -x[1])}
    out["cpu_vcpu_hv_syms"] = {k: round(v * ms, 1) for k, v in sorted(syms.items(), key=lambda x: -x[1])[:12]}
    return out
