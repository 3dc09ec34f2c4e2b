#!/usr/bin/python3
"""`make bench`, capture part: nginx throughput with capture off vs tracepoint vs sockfilter
mode vs the peer a user would pick instead, `tcpdump -w` (same run, interleaved rounds), the
bytes each keeps per exchange, the eBPF program time per request, the highest request rate
captured with nothing lost, the parser replay rate on one core, and one window of traffic read
back by `tshark -r` from tcpdump's pcap beside `tracevault query` from the tracevaultd that
captured the same traffic (bench/README.md, "Capture").

Every figure is the median of TV_BENCH_CAPTURE_ROUNDS (default 5) interleaved repeats, printed
with its min and max; the lossless ladder (ii) is a search, one pass. A peer that is not
installed (tcpdump, tshark, zstd) prints a SKIP line with the reason instead of its figure.
TV_BENCH_QUICK=1 runs each part small (make test keeps the step working): 1 round of 1 s runs,
a two-step ramp of 1 s steps, one 1 s parser replay, 1 s of traffic read back once."""
import os
import re
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "tests", "integration"))
sys.dont_write_bytecode = True  # no __pycache__ in the source tree's tests/integration/tvtest/
import tvtest  # noqa: E402  (TV_BIN_DIR, set by bench/run.sh, selects the build)

BODY = b"b" * 612  # the size of nginx's stock index.html
QUICK = os.environ.get("TV_BENCH_QUICK") == "1"


def env_int(name, default):
    """A positive integer from the environment (a usage error, exit 2, if it is not one)."""
    v = os.environ.get(name, str(default))
    if not re.fullmatch(r"[1-9][0-9]*", v):
        print("bench_capture: invalid %s: '%s' (a positive integer)" % (name, v), file=sys.stderr)
        sys.exit(2)
    return int(v)


DURATION_S = env_int("TV_BENCH_CAPTURE_S", 1 if QUICK else 3)  # each wrk run of (i)
COST_S = env_int("TV_BENCH_COST_S", 1 if QUICK else 3)  # each wrk run of (i-b)
RAMP_S = env_int("TV_BENCH_RAMP_S", 1 if QUICK else 2)
# rounds of (i) (off, the tracevault modes, tcpdump -w), and repeats of (i-b), (iii) and (iv)
ROUNDS = env_int("TV_BENCH_CAPTURE_ROUNDS", 1 if QUICK else 5)
RAMP = ([(1, 1), (2, 16)] if QUICK else
        [(1, 1), (1, 2), (1, 4), (2, 8), (2, 16), (2, 32), (2, 64), (2, 128)])  # (threads, conns)
CAPTURE_ARGS = ["--block-age-ms", "500"]  # the default ring (16M), as a user gets it
# (i-b): eBPF cost by --ring-bytes: the default ring only (64M and 4M were within 2% of it on
# 2026-12-02: 1338 / 1360 / 1368 ns); TV_BENCH_COST_RINGS="64M 16M 4M" measures them again
COST_RINGS = os.environ.get("TV_BENCH_COST_RINGS", "16M").split()
PARSER_S = 1  # (iii): seconds of each replay (millions of exchanges: enough for a rate)
# (iv): the traffic read back: wrk -t1 -c1 for WINDOW_TRAFFIC_S, the window queried is that
# traffic without WINDOW_MARGIN_MS at each end (bench/README.md says why not a whole minute)
WINDOW_TRAFFIC_S = env_int("TV_BENCH_WINDOW_S", 1 if QUICK else 4)
WINDOW_MARGIN_MS = 250 if QUICK else 1000
WINDOW_CONNS = 1
READ_TIMEOUT_S = 120  # one tshark or query run; bounded so a hung peer fails the step
PEER_STOP_TIMEOUT_S = 30

HZ = os.sysconf("SC_CLK_TCK")


def tool(name):
    """The path of a command on PATH (nginx: also /usr/sbin, where Debian puts it), or None
    when it is not installed. PATH only, so that a run with a PATH without a peer shows the
    peer's SKIP lines (tests/integration/test_bench_quick.py finds peers the same way)."""
    return shutil.which(name) or (shutil.which(name, path="/usr/sbin") if name == "nginx"
                                  else None)


TCPDUMP, TSHARK, ZSTD = tool("tcpdump"), tool("tshark"), tool("zstd")


def missing(name):
    return "%s is not installed (scripts/deps.sh installs it)" % name


def spread(xs, fmt="%.0f"):
    """'median M (min A, max B)' of xs, each number printed with fmt."""
    return ("median %s (min %s, max %s)" % (fmt, fmt, fmt)) % (statistics.median(xs), min(xs),
                                                               max(xs))


def cpu_s(pid):
    """User + system CPU seconds of a live process (its threads included)."""
    with open("/proc/%d/stat" % pid) as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / HZ


def wrk_cpu(ng, threads, conns, duration_s, extra_pids=()):
    """wrk with the CPU seconds nginx (and extra_pids) used meanwhile:
    (completed, req/s, errors, [cpu s of nginx, *extra])."""
    pids = [ng.pid] + list(extra_pids)
    t0 = [cpu_s(p) for p in pids]
    completed, rps, bad, _ = tvtest.wrk(ng.url, threads, conns, duration_s)
    return completed, rps, bad, [cpu_s(p) - t for p, t in zip(pids, t0)]


# (i)'s capture modes after "off": tracepoint with --pid (nginx's end only), with --port (both
# ends of each loopback connection: nginx's and wrk's, two records per exchange, as a capture
# by port gives them) and with --port --role server (wrk's end filtered out in the kernel);
# sockfilter with --port (both ends too: the packets of loopback carry both views); then the
# peer, tcpdump -w with a port filter (when installed)
MODES = ("tracepoint", "tp-port", "tp-port-server", "sockfilter")
PEER = "tcpdump-w"


def mode_args(ng, mode):
    """tracepoint: nginx's syscalls (--pid), or both ends of its port (--port, with --role
    server: nginx's end only); sockfilter: loopback packets of nginx's port."""
    if mode == "sockfilter":
        return ["--mode", "sockfilter", "--port", str(ng.port), "--block-age-ms", "500"]
    if mode == "tp-port":
        return ["--port", str(ng.port)] + CAPTURE_ARGS
    if mode == "tp-port-server":
        return ["--port", str(ng.port), "--role", "server"] + CAPTURE_ARGS
    return ["--pid", str(ng.pid)] + CAPTURE_ARGS


def capture_run(srv, ng, threads, conns, duration_s, mode="tracepoint"):
    """wrk under one capture: (wrk req/s, wrk completed, records sent, lost, nginx log lines
    added, wrk errors, capture summary, CPU us per request of nginx, capture, tracevaultd)."""
    before = log_lines(ng)
    cap = tvtest.Capture(srv.addr, mode_args(ng, mode)).start()
    try:
        completed, rps, bad, cpu = wrk_cpu(ng, threads, conns, duration_s,
                                           (cap.proc.pid, srv.proc.pid))
    finally:
        rc, err = cap.stop()
    if rc != 0:
        raise SystemExit("bench: capture exited %s: %s" % (rc, err.strip()))
    m = re.search(tvtest.CAPTURE_SUMMARY_RE, err)
    if not m:
        raise SystemExit("bench: no capture summary: %s" % err.strip())
    logged = wait_log(ng, before + completed) - before
    summary = [ln for ln in err.splitlines() if "sent " in ln]
    us = [c * 1e6 / max(completed, 1) for c in cpu]
    return rps, completed, int(m.group(1)), int(m.group(2)), logged, bad, summary[-1], us


def log_lines(ng):
    """nginx's access log line count: counted, not parsed (the log grows to millions of lines
    over a bench run, and parsing it between runs took longer than the runs)."""
    try:
        with open(os.path.join(ng.dir, "access.log"), "rb") as f:
            return sum(chunk.count(b"\n") for chunk in iter(lambda: f.read(1 << 20), b""))
    except FileNotFoundError:
        return 0


def wait_log(ng, at_least, timeout_s=10):
    """nginx writes its access log unbuffered after each request: wait (bounded) until the
    lines wrk completed are all there, then return the line count."""
    deadline = time.monotonic() + timeout_s
    while True:
        n = log_lines(ng)
        if n >= at_least or time.monotonic() > deadline:
            return n
        time.sleep(0.05)


def stored_bytes(data_dir):
    """What a stopped tracevaultd keeps for its records: the block files and the catalog
    (catalog.db and any -wal/-shm beside it), in bytes (as bench_read.py counts them)."""
    blocks = os.path.join(data_dir, "blocks")
    n = sum(os.path.getsize(os.path.join(r, f)) for r, _, fs in os.walk(blocks) for f in fs)
    return n + sum(os.path.getsize(os.path.join(data_dir, f)) for f in os.listdir(data_dir)
                   if f.startswith("catalog.db"))


def fs_of(path):
    """'TYPE on DEVICE' of the file system path is on (df)."""
    p = subprocess.run(["df", "--output=fstype,source", path], capture_output=True, text=True,
                       timeout=10)
    lines = p.stdout.split("\n")
    return " on ".join(lines[1].split()) if p.returncode == 0 and len(lines) > 1 else "?"


class Tcpdump:
    """The peer: `tcpdump -i lo -w PCAP tcp port PORT`, as a user captures the same traffic.
    start() returns once tcpdump says it is listening (its capture is then active); stop()
    sends SIGINT, as a user's Ctrl-C, and returns tcpdump's own counts from the lines it
    prints at exit. -Z root: Debian's tcpdump otherwise drops to user tcpdump before opening
    the pcap, which then cannot be written into a root-owned temp dir. Snap length, buffer
    (-B) and everything else are tcpdump's defaults: full packets, libpcap's 2 MiB ring."""
    COUNTS = {"captured": r"([0-9]+) packets? captured",
              "received": r"([0-9]+) packets? received by filter",
              "dropped": r"([0-9]+) packets? dropped by kernel"}

    def __init__(self, port, pcap):
        self.argv = [TCPDUMP, "-i", "lo", "-n", "-Z", "root", "-w", pcap, "tcp port %d" % port]
        self.pcap = pcap
        self.proc = None
        self.err = None

    def start(self, timeout_s=10):
        # stderr to a file: a pipe nobody drains could block tcpdump
        self.err = tempfile.TemporaryFile(mode="w+")
        self.proc = subprocess.Popen(self.argv, stdout=subprocess.DEVNULL, stderr=self.err)
        deadline = time.monotonic() + timeout_s
        while "listening on" not in self._stderr():
            if self.proc.poll() is not None or time.monotonic() > deadline:
                self.stop()
                raise SystemExit("bench: tcpdump did not start listening (%s): %s"
                                 % (self.proc.returncode, self._stderr().strip()))
            time.sleep(0.01)
        return self

    def _stderr(self):
        self.err.seek(0)
        return self.err.read()

    def stop(self):
        """{captured, received, dropped} packets as tcpdump counts them (exit 1 if absent)."""
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGINT)
            try:
                self.proc.wait(PEER_STOP_TIMEOUT_S)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        text = self._stderr()
        self.err.close()
        counts = {}
        for k, pat in self.COUNTS.items():
            m = re.search(pat, text)
            if not m:
                raise SystemExit("bench: tcpdump (exit %s) printed no '%s' count: %s"
                                 % (self.proc.returncode, pat, text.strip()))
            counts[k] = int(m.group(1))
        return counts


def zstd3_bytes(path):
    """The size of path compressed by `zstd -3 -T1` (streamed, never held in memory)."""
    p = subprocess.Popen([ZSTD, "-3", "-T1", "-c", path], stdout=subprocess.PIPE)
    n = sum(len(c) for c in iter(lambda: p.stdout.read(1 << 20), b""))
    p.stdout.close()
    if p.wait() != 0:
        raise SystemExit("bench: zstd -3 of %s exited %d" % (path, p.returncode))
    return n


def peer_run(ng, pcap):
    """wrk under tcpdump -w: (req/s, completed, nginx log lines added, wrk errors, tcpdump's
    counts, CPU us per request of nginx and tcpdump, pcap bytes, pcap bytes zstd -3 or None)."""
    before = log_lines(ng)
    td = Tcpdump(ng.port, pcap).start()
    try:
        completed, rps, bad, cpu = wrk_cpu(ng, 2, 50, DURATION_S, (td.proc.pid,))
    finally:
        counts = td.stop()
    logged = wait_log(ng, before + completed) - before
    raw = os.path.getsize(pcap)
    z = zstd3_bytes(pcap) if ZSTD else None
    os.unlink(pcap)
    us = [c * 1e6 / max(completed, 1) for c in cpu]
    return rps, completed, logged, bad, counts, us, raw, z


def throughput(ng, tmp):
    peer = "tcpdump -w" if TCPDUMP else "no peer (%s)" % missing("tcpdump")
    print("(i) nginx throughput, wrk -t2 -c50 -d%ds on a %d-byte file, %d rounds of capture off "
          "/ tracepoint --pid / tracepoint --port / tracepoint --port --role server / sockfilter "
          "/ %s alternated; each tracevault capture to a fresh tracevaultd (its data dir's "
          "bytes after it stops); pcaps and data dirs under %s (%s)"
          % (DURATION_S, len(BODY), ROUNDS, peer, tmp, fs_of(tmp)))
    modes = ("off",) + MODES + ((PEER,) if TCPDUMP else ())
    runs = {mode: [] for mode in modes}
    per_exchange = {mode: [] for mode in MODES}  # tracevault's stored bytes / exchanges
    per_record = {mode: [] for mode in MODES}
    pcap_raw, pcap_z, drops = [], [], []
    for _ in range(ROUNDS):
        for mode in modes:
            if mode == "off":
                done, rps, bad, cpu = wrk_cpu(ng, 2, 50, DURATION_S)
                runs[mode].append(rps)
                print("  capture off:  %9.0f req/s %s  CPU us/request: nginx %.1f"
                      % (rps, bad, cpu[0] * 1e6 / max(done, 1)))
                continue
            if mode == PEER:
                rps, done, logged, bad, counts, us, raw, z = peer_run(
                    ng, os.path.join(tmp, "tcpdump.pcap"))
                runs[mode].append(rps)
                drops.append(counts["dropped"])
                pcap_raw.append(raw / max(logged, 1))
                if z is not None:
                    pcap_z.append(z / max(logged, 1))
                print("  %-16s %9.0f req/s %s  CPU us/request: nginx %.1f, tcpdump %.1f; packets "
                      "captured %d, dropped by kernel %d; pcap %d B = %.0f B/exchange (zstd -3 "
                      "%s), nginx logged %d"
                      % (mode + ":", rps, bad, us[0], us[1], counts["captured"],
                         counts["dropped"], raw, raw / max(logged, 1),
                         "%.0f B" % (z / max(logged, 1)) if z is not None else "SKIP", logged))
                continue
            # a fresh tracevaultd per run: what it stores is this run's records only
            with tvtest.Server(data_dir=tempfile.mkdtemp(prefix="tv-bench-data-", dir=tmp)) \
                    as srv:
                rps, done, sent, lost, logged, bad, _, us = capture_run(srv, ng, 2, 50,
                                                                        DURATION_S, mode)
                if srv.stop() != 0:
                    raise SystemExit("bench: tracevaultd exited %s: %s"
                                     % (srv.proc.returncode, srv.log()[-2000:]))
                stored = stored_bytes(srv.data_dir)
                shutil.rmtree(srv.data_dir)
            runs[mode].append(rps)
            per_exchange[mode].append(stored / max(logged, 1))
            per_record[mode].append(stored / max(sent, 1))
            print("  %-16s %9.0f req/s %s  CPU us/request: nginx %.1f, capture %.1f, "
                  "tracevaultd %.1f; records %d, lost %d, nginx logged %d; stored %d B"
                  % (mode + ":", rps, bad, us[0], us[1], us[2], sent, lost, logged, stored))
    # This machine's speed drifts between rounds (other tenants): each round's ratio is taken
    # against the "off" run right before it, and the median of those is the figure.
    off = sum(runs["off"]) / len(runs["off"])
    for mode in modes:
        print("req/s (%s) (%d runs): %s" % (mode, ROUNDS, spread(runs[mode])))
    for mode in modes[1:]:
        on = sum(runs[mode]) / len(runs[mode])
        ratios = sorted(m / o for m, o in zip(runs[mode], runs["off"]))
        what = "peer tcpdump -w" if mode == PEER else "capture on (%s)" % mode
        print("%s / off throughput: %.3fx median of rounds %s (means %.0f vs %.0f req/s: "
              "%.3fx) %s" % (what, statistics.median(ratios), " ".join("%.2f" % r for r in ratios),
                             on, off, on / off, "(the peer)" if mode == PEER else "goal >= 0.95x"))
    if not TCPDUMP:
        print("peer tcpdump -w: SKIP: " + missing("tcpdump"))
        print("bytes per exchange, tcpdump -w pcap: SKIP: " + missing("tcpdump"))
    else:
        print("tcpdump -w packets dropped by kernel (%d runs of %d s): %s (tcpdump's "
              "own count at exit)" % (ROUNDS, DURATION_S, spread(drops)))
        print("bytes per exchange, tcpdump -w pcap (%d runs): raw %s B, zstd -3 %s"
              % (ROUNDS, spread(pcap_raw), "%s B" % spread(pcap_z) if pcap_z else
                 "SKIP: " + missing("zstd")))
    print("bytes per exchange, tracevault blocks + catalog (%d runs): %s"
          % (ROUNDS, ", ".join("%s %s B" % (m, spread(per_exchange[m], "%.1f"))
                               for m in MODES)))
    print("bytes per record, tracevault blocks + catalog (%d runs): %s"
          % (ROUNDS, ", ".join("%s %s B" % (m, spread(per_record[m], "%.1f")) for m in MODES)))


def bpf_programs():
    """{id: (name, run_time_ns, run_cnt)} of the loaded BPF programs (bpftool; Debian's build
    does not show which process holds them, so ours are told apart by id: new since before the
    capture started)."""
    import json
    p = subprocess.run(["bpftool", "prog", "show", "-j"], capture_output=True, text=True,
                       timeout=30)
    if p.returncode != 0:
        return {}
    return {x["id"]: (x.get("name", "?"), x.get("run_time_ns", 0), x.get("run_cnt", 0))
            for x in json.loads(p.stdout or "[]")}


def ebpf_cost(srv, ng):
    """What the throughput ratio blurs on a shared machine: the time our eBPF programs run per
    request (in nginx's syscalls, plus the early exits in wrk's), from the kernel's own
    accounting (kernel.bpf_stats_enabled, which adds ~20-30 ns per run itself), beside nginx's
    CPU per request without capture; by --ring-bytes, as the ring's size decides how cold the
    memory each event is copied into is. The cost of the syscall tracepoints being enabled at
    all (the slow syscall path, ~4-6% of nginx's CPU by perf) is not in it. ROUNDS repeats,
    the ring sizes interleaved in each."""
    stats_path = "/proc/sys/kernel/bpf_stats_enabled"
    done, _, _, cpu = wrk_cpu(ng, 2, 50, COST_S)
    off_us = cpu[0] * 1e6 / max(done, 1)
    print("(i-b) eBPF program time per request (kernel.bpf_stats_enabled), %d repeats of wrk "
          "-t2 -c50 -d%ds per ring size, nginx without capture: %.1f us CPU per request"
          % (ROUNDS, COST_S, off_us))
    ns_of = {ring: [] for ring in COST_RINGS}
    for _ in range(ROUNDS):
        for ring in COST_RINGS:
            before = log_lines(ng)
            others = set(bpf_programs())
            cap = tvtest.Capture(srv.addr, ["--pid", str(ng.pid), "--ring-bytes", ring]).start()
            try:
                with open(stats_path, "w") as f:
                    f.write("1")
                try:
                    p0 = {i: v for i, v in bpf_programs().items() if i not in others}
                    done, rps, bad, _ = wrk_cpu(ng, 2, 50, COST_S)
                    p1 = {i: v for i, v in bpf_programs().items() if i in p0}
                finally:
                    with open(stats_path, "w") as f:
                        f.write("0")
            finally:
                rc, err = cap.stop()
            requests = max(wait_log(ng, before + done) - before, 1)
            if not p1:
                raise SystemExit("bench: bpftool shows no program of the capture "
                                 "(--ring-bytes %s)" % ring)
            ns = sum(t - p0[i][1] for i, (_, t, _) in p1.items()) / requests
            runs = sum(c - p0[i][2] for i, (_, _, c) in p1.items()) / requests
            ns_of[ring].append(ns)
            m = re.search(tvtest.CAPTURE_SUMMARY_RE, err)
            print("  --ring-bytes %-4s %5.0f ns per request (%.1f program runs) = %.1f%% of "
                  "nginx's CPU per request; lost %s" % (ring, ns, runs, ns / 10 / off_us,
                                                       m.group(2) if m else "?"))
    for ring in COST_RINGS:
        print("eBPF time per request, --ring-bytes %s (%d runs): %s ns"
              % (ring, ROUNDS, spread(ns_of[ring])))


def ramp(srv, ng):
    print("(ii) lossless rate: wrk -d%ds at rising -t/-c, one capture per step; lossless = "
          "lost 0 and records == nginx log lines (a search: one pass, not repeated)" % RAMP_S)
    best = None
    for threads, conns in RAMP:
        rps, done, sent, lost, logged, bad, summary, _ = capture_run(srv, ng, threads, conns,
                                                                     RAMP_S)
        ok = lost == 0 and sent == logged
        print("  -t%d -c%-3d %9.0f req/s  wrk %7d  nginx %7d  records %7d  lost %5d  %s"
              % (threads, conns, rps, done, logged, sent, lost, "lossless" if ok else "LOSS"))
        if not ok:
            print("    " + summary)
        elif best is None or rps > best:
            best = rps
    print("highest rate captured with lost 0: %s goal >= 20000 req/s (on %d cores, wrk + "
          "nginx + capture + tracevaultd sharing them)"
          % ("%.0f req/s" % best if best else "none", os.cpu_count()))


def parser():
    """(iii): ROUNDS runs of bench_parser, PARSER_S seconds each."""
    xs, evs, mbs = [], [], []
    for _ in range(ROUNDS):
        p = subprocess.run([tvtest.binary("bench/bench_parser"), str(PARSER_S)],
                           capture_output=True, text=True, timeout=120)
        if p.returncode != 0:
            raise SystemExit("bench: bench_parser failed: %s" % p.stderr.strip())
        vals = dict(line.split() for line in p.stdout.splitlines())
        xs.append(float(vals["parser_exchanges_per_s"]))
        evs.append(float(vals["parser_events_per_s"]))
        mbs.append(float(vals["parser_MBps"]))
    print("(iii) parser replay (conn table + HTTP parser, one core, synthetic nginx-like "
          "keep-alive events), %d runs of %d s: %s exchanges/s (%.0f events/s, %.1f "
          "MB/s) goal >= 100000" % (ROUNDS, PARSER_S, spread(xs), statistics.median(evs),
                                    statistics.median(mbs)))


def timed_lines(argv):
    """Runs argv, reading its stdout as it streams: (seconds to its first complete line or None,
    seconds to its exit, lines). Exit 1 (SystemExit) if it fails or runs past READ_TIMEOUT_S."""
    import select
    with tempfile.TemporaryFile() as err:
        t0 = time.perf_counter()
        p = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=err)
        fd, first, lines = p.stdout.fileno(), None, 0
        try:
            while True:
                left = t0 + READ_TIMEOUT_S - time.perf_counter()
                if left <= 0 or not select.select([fd], [], [], left)[0]:
                    raise SystemExit("bench: %s ran longer than %d s" % (argv[0], READ_TIMEOUT_S))
                chunk = os.read(fd, 1 << 16)
                if not chunk:
                    break
                n = chunk.count(b"\n")
                if n and first is None:
                    first = time.perf_counter() - t0
                lines += n
            rc = p.wait()
            last = time.perf_counter() - t0
        finally:
            if p.poll() is None:
                p.kill()
                p.wait()
            p.stdout.close()
        if rc != 0:
            err.seek(0)
            why = err.read().decode(errors="replace")[-500:]
            raise SystemExit("bench: %s exited %d: %s" % (" ".join(argv[:3]), rc, why))
    return first, last, lines


def read_back(ng, tmp):
    """(iv): one stretch of nginx traffic captured at once by tracevault (--pid, one record per
    exchange, to its own tracevaultd) and by tcpdump -w; the window inside it read back ROUNDS
    times, tshark -r on the pcap and tracevault query interleaved (their order alternated)."""
    print("(iv) one window read back: wrk -t1 -c%d -d%ds captured at once by tracevault "
          "capture --pid (its own tracevaultd) and %s; the window = that traffic without its "
          "first and last %d ms, read %d times by tshark -r PCAP -l -Y 'http.request && "
          "frame.time_epoch in the window' and by tracevault query --from --to, interleaved"
          % (WINDOW_CONNS, WINDOW_TRAFFIC_S, "tcpdump -w" if TCPDUMP else "no tcpdump",
             WINDOW_MARGIN_MS, ROUNDS))
    pcap = os.path.join(tmp, "window.pcap")
    with tvtest.Server(data_dir=tempfile.mkdtemp(prefix="tv-bench-data-", dir=tmp)) as srv:
        td = Tcpdump(ng.port, pcap).start() if TCPDUMP else None
        try:
            before = log_lines(ng)
            cap = tvtest.Capture(srv.addr, ["--pid", str(ng.pid)] + CAPTURE_ARGS).start()
            try:
                t0_ns = time.time_ns()
                done, rps, bad, _ = tvtest.wrk(ng.url, 1, WINDOW_CONNS, WINDOW_TRAFFIC_S)
                t1_ns = time.time_ns()
            finally:
                rc, err = cap.stop()
        finally:
            counts = td.stop() if td else None
        if rc != 0:
            raise SystemExit("bench: capture exited %s: %s" % (rc, err.strip()))
        m = re.search(tvtest.CAPTURE_SUMMARY_RE, err)
        logged = wait_log(ng, before + done) - before
        frm, to = t0_ns + WINDOW_MARGIN_MS * 10**6, t1_ns - WINDOW_MARGIN_MS * 10**6
        print("  traffic: %.0f req/s, nginx logged %d; tracevault records %s, lost %s; %s; "
              "window %d to %d ns (%.2f s)"
              % (rps, logged, m.group(1) if m else "?", m.group(2) if m else "?",
                 "tcpdump: pcap %d B, packets captured %d, dropped by kernel %d"
                 % (os.path.getsize(pcap), counts["captured"], counts["dropped"]) if td
                 else "no pcap: " + missing("tcpdump"), frm, to, (to - frm) / 1e9))
        tv_argv = [tvtest.binary("tracevault"), "query", "--server", srv.addr, "--from",
                   str(frm), "--to", str(to)]
        peer = None if not TCPDUMP else "tshark" if TSHARK else None
        ts_argv = [TSHARK, "-r", pcap, "-n", "-l", "-Y",
                   "http.request && frame.time_epoch >= %d.%09d && frame.time_epoch < %d.%09d"
                   % (frm // 10**9, frm % 10**9, to // 10**9, to % 10**9)] if peer else None
        res = {"tv": [], "tshark": []}
        for i in range(ROUNDS):
            order = (("tshark", ts_argv), ("tv", tv_argv))
            for who, argv in (order if i % 2 == 0 else order[::-1]):
                if argv is None:
                    continue
                first, last, n = timed_lines(argv)
                res[who].append((first, last, n))
                print("  %d %-10s first record %s, last %.1f ms, %d lines"
                      % (i + 1, who if who == "tshark" else "tracevault",
                         "%.1f ms" % (first * 1e3) if first is not None else "none",
                         last * 1e3, n))
    if os.path.exists(pcap):
        os.unlink(pcap)
    for who, name, what in (("tshark", "tshark", "HTTP requests"),
                            ("tv", "tracevault query", "records")):
        rs = res[who]
        if not rs:
            why = missing("tcpdump") + ", no pcap" if not TCPDUMP else missing("tshark")
            print("%s time to first record: SKIP: %s" % (name, why))
            continue
        if any(r[0] is None for r in rs) or len({r[2] for r in rs}) != 1:
            raise SystemExit("bench: %s returned no record or different counts in the window: "
                             "%s" % (name, [r[2] for r in rs]))
        print("%s time to first record (%d runs): %s ms; to last: %s ms; %d %s "
              "in the window" % (name, len(rs), spread([r[0] * 1e3 for r in rs], "%.1f"),
                                 spread([r[1] * 1e3 for r in rs], "%.1f"), rs[0][2], what))
    if res["tshark"] and res["tv"]:
        # each tshark run against the tracevault run of the same repeat
        first = [a[0] / b[0] for a, b in zip(res["tshark"], res["tv"])]
        last = [a[1] / b[1] for a, b in zip(res["tshark"], res["tv"])]
        print("tshark / tracevault query, same repeat (%d runs): first record %sx, "
              "last record %sx" % (len(first), spread(first, "%.1f"),
                                          spread(last, "%.1f")))
        a, b = res["tv"][0][2], res["tshark"][0][2]
        diff = abs(a - b) / max(a, b)
        # the two clocks are the same (CLOCK_REALTIME) but not the same instant: tracevault
        # stamps the syscall that read the request's first byte, tcpdump the packet on lo,
        # microseconds earlier; requests at the window's two edges may fall either side
        print("check: records in the window, tracevault %d vs tshark %d (tcpdump dropped %d "
              "packets): differ by %d (%.2f%%): %s"
              % (a, b, counts["dropped"], abs(a - b), diff * 100,
                 "comparable" if diff <= 0.01 else "NOT comparable (more than 1% apart)"))


def main():
    reason = tvtest.bpf_unavailable_reason()
    took = []  # (part, seconds): where the step's time goes, printed last

    def timed(part, fn, *args):
        t0 = time.monotonic()
        fn(*args)
        took.append((part, time.monotonic() - t0))

    timed("(iii)", parser)
    if reason:
        print("capture bench (i), (i-b), (ii), (iv): SKIP: " + reason)
        return
    for name in ("wrk", "nginx"):
        if not tool(name):
            print("capture bench (i), (i-b), (ii), (iv): SKIP: %s is not installed "
                  "(scripts/deps.sh)" % name)
            return
    # the pcaps and the per-run data dirs: one temp dir, on the file system tracevaultd's
    # data dirs use (tempfile's, as tvtest.Server's own)
    tmp = tempfile.mkdtemp(prefix="tv-bench-capture-")
    try:
        with tvtest.Server() as srv, tvtest.Nginx({"index.html": BODY}) as ng:
            ng.url = "http://127.0.0.1:%d/index.html" % ng.port
            tvtest.wrk(ng.url, 2, 50, 1)  # warm-up, not reported
            timed("(i)", throughput, ng, tmp)
            timed("(i-b)", ebpf_cost, srv, ng)
            timed("(ii)", ramp, srv, ng)
            timed("(iv)", read_back, ng, tmp)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    print("capture bench parts, wall seconds: %s"
          % ", ".join("%s %.0f" % (part, s) for part, s in took))


if __name__ == "__main__":
    main()
