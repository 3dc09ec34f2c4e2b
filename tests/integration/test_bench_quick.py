"""`make bench QUICK=1` once, so that benchmark code cannot rot unnoticed (issue 15): runs
bench/run.sh with TV_BENCH_QUICK=1 against the release build (TV_BENCH_BUILD, which the
Makefile's test target passes; make bench runs that build too) and checks that every step
announced itself ("bench step K/N: WHAT (elapsed S s)", K = 1..N in order) and printed its
figures: each step's summary lines, with numbers in them. Never a speed: the figures are
reported, not judged. A step may print a SKIP line instead only when this machine lacks what
it needs (eBPF privileges, wrk or nginx for the capture step; the Ceph packages for the
under-store step); the test then reports SKIP (77) once the rest has passed. A SKIP that this
machine does not explain fails the test. The capture step's peers (tcpdump -w, tshark) are
checked so too: their figures when they are on PATH, else their SKIP lines.

The checks themselves are checked: the real output with one step's figures cut out, or one
progress line cut out, must fail them; and a run whose step dies (a bench_ingest that exits 1)
must exit non-zero without its "bench done" line.

Then the results bench/report.py wrote (to a temp TV_BENCH_RESULTS_DIR, never the source
tree): the JSON parses and has the machine info, the commands, every step and each step's
figures (those this test names below; a skipped step its reason); the Markdown table was
printed; each plot the run's figures allow is a PNG file (magic bytes), the others say what
they wait for.

Takes the ebpf_capture lock (tests/CMakeLists.txt): the capture step runs eBPF captures."""
import os
import re
import shutil
import signal
import subprocess
import sys
import glob
import json
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
import tvtest  # noqa: E402

SRC = os.environ.get("TV_SOURCE_DIR", os.path.join(HERE, "..", ".."))
RUN_SH = os.path.join(SRC, "bench", "run.sh")
BENCH_BUILD = os.environ.get("TV_BENCH_BUILD") or os.path.join(SRC, "build")
# the quick run takes ~50 s on an idle 2-core machine; room for a loaded one, under ctest's
# TIMEOUT of this test (tests/CMakeLists.txt)
RUN_TIMEOUT_S = 200
DIES_TIMEOUT_S = 60
STOP_TIMEOUT_S = 20  # after a timeout: SIGTERM to the run's process group, then SIGKILL
# binaries run.sh needs from the build dir
NEEDED = ("tracevaultd", "tracevault", "bench/bench_ingest", "bench/ceiling_tcp",
          "bench/ceiling_uring", "bench/ceiling_memcpy", "bench/bench_parser")
NEEDED += ("bench/otlp_load",)  # the otlp step's

N = r"[0-9]+(?:\.[0-9]+)?"  # a figure
PROGRESS_RE = re.compile(r"^bench step ([0-9]+)/([0-9]+): (.+) \(elapsed ([0-9]+) s\)$", re.M)
DONE_RE = re.compile(r"^bench done: ([0-9]+) steps in ([0-9]+) s \(quick\)$", re.M)
CAPTURE_SKIP_RE = r"^capture bench \(i\), \(i-b\), \(ii\), \(iv\): SKIP: \S.*$"
UNDER_SKIP_RE = r"^under-store bench: skipped: \S.*$"
CAPTURE_MODES = ("tracepoint", "tp-port", "tp-port-server", "sockfilter")


# the quick run's ingest configurations: the headline runs and the sweep at run.sh's quick
# chunk sizes (64K, 4M), each in both modes and with 1 and 4 writers
INGEST_CONFIGS = ["zerocopy", "no-zerocopy"] + ["%s/%dw/%s" % (m, w, c) for c in ("64K", "4M")
                                                for w in (1, 4)
                                                for m in ("zerocopy", "no-zerocopy")]


def ingest_figures():
    sp = r"%s \[%s-%s\]" % (N, N, N)
    # per run: writers, chunk, MiB, MB/s, x bound, client s/GB, server s/GB, copied bytes
    row = r"\s+[14]w\s+[0-9]+[KM]?\s+[0-9]+(?:\s+%s){4}\s+[0-9]+$" % N
    # per configuration: writers, chunk, MiB, then median [min-max] of those four, copied
    line = r"\s+[14]w\s+[0-9]+[KM]?\s+[0-9]+(?:\s+%s){4}\s+[0-9]+$" % sp
    return ([r"^round 1 ceilings, MB/s: TCP %s disk %s fio (?:%s|-) 1file %s memcpy %s; bound "
             r"min\(TCP, disk\) %s$" % ((N,) * 6)] +
            [r"^1\s+%s%s" % (re.escape(c), row) for c in INGEST_CONFIGS] +
            [r"^  %s%s" % (re.escape(c), line) for c in INGEST_CONFIGS] +
            [r"^ceilings over the rounds, MB/s: TCP %s, disk %s, fio (?:%s|-), 1file %s, "
             r"memcpy %s$" % ((sp,) * 5),
             r"^zero-copy ingest / min\(TCP, disk\) of its round: median %sx" % N,
             r"^zero-copy vs --no-zerocopy, same round: %sx \[%s-%s\] MB/s at the headline .*: "
             r"%s vs %s s .*every sweep point: %sx \[" % ((N,) * 6),
             r"^4 vs 1 writers, MB/s same round and chunk: zero-copy %sx \[%s-%s\], "
             r"--no-zerocopy %sx \[" % ((N,) * 4)] +
            [r"^  %s, %s: (?:64K|4M) %s MB/s \(64K %s, 4M %s\)$" % (m, w, N, N, N)
             for m in ("zero-copy", "--no-zerocopy") for w in ("1 writer", "4 writers")] +
            [r"^check: ingest / min\(TCP, disk\) <= 1\.0 in every run: (?:yes|NO.*) \(max %sx "
             r"over 10 runs" % N,
             r"^cross-check: disk ceiling / fio .*: (?:median %sx|SKIP: .*)" % N])


def peer_missing(name):
    """Why the capture step may print a peer's SKIP line instead of its figure (None: the peer
    is installed and its figure must be there). On PATH, as bench_capture.py looks for it."""
    return None if shutil.which(name) else "%s is not installed" % name


def peer_or_skip(name, figure, skip_prefix):
    """The figure's pattern when the peer is installed, else its SKIP line's."""
    if peer_missing(name):
        return r"^%sSKIP: %s is not installed" % (skip_prefix, name)
    return figure


def capture_figures():
    spread = r"median %s \(min %s, max %s\)" % (N, N, N)
    tcpdump = peer_missing("tcpdump")
    return ([r"^\(iii\) parser replay .*, [0-9]+ runs of [0-9]+ s: %s exchanges/s "
             r"\(%s events/s" % (spread, N)] +
            [r"^capture on \(%s\) / off throughput: %sx median" % (m, N) for m in CAPTURE_MODES] +
            [r"^req/s \(%s\) \([0-9]+ runs\): %s$" % (m, spread)
             for m in ("off",) + CAPTURE_MODES] +
            [peer_or_skip("tcpdump", r"^req/s \(tcpdump-w\) \([0-9]+ runs\): %s$" % spread,
                          r"peer tcpdump -w: "),
             peer_or_skip("tcpdump", r"^peer tcpdump -w / off throughput: %sx median of rounds"
                          % N, r"peer tcpdump -w: "),
             peer_or_skip("tcpdump", r"^tcpdump -w packets dropped by kernel \([0-9]+ runs of "
                          r"[0-9]+ s\): %s" % spread, r"peer tcpdump -w: "),
             # zstd is a dependency of the read step too: here it must be installed
             peer_or_skip("tcpdump", r"^bytes per exchange, tcpdump -w pcap \([0-9]+ runs\): "
                          r"raw %s B, zstd -3 %s B$" % (spread, spread),
                          r"bytes per exchange, tcpdump -w pcap: "),
             r"^bytes per exchange, tracevault blocks \+ catalog \([0-9]+ runs\): %s$"
             % ", ".join(r"%s %s B" % (m, spread) for m in CAPTURE_MODES),
             r"^bytes per record, tracevault blocks \+ catalog \([0-9]+ runs\): %s$"
             % ", ".join(r"%s %s B" % (m, spread) for m in CAPTURE_MODES),
             r"^\(i-b\) eBPF program time per request .*: %s us CPU per request" % N,
             r"^  --ring-bytes \S+\s+%s ns per request \(%s program runs\)" % (N, N),
             r"^eBPF time per request, --ring-bytes 16M \([0-9]+ runs\): %s ns$" % spread,
             r"^  -t[0-9]+ -c[0-9]+\s+%s req/s\s+wrk\s+[0-9]+\s+nginx\s+[0-9]+\s+records\s+"
             r"[0-9]+\s+lost\s+[0-9]+" % N,
             r"^highest rate captured with lost 0: (%s req/s|none)" % N,
             r"^tracevault query time to first record \([0-9]+ runs\): %s ms; to last: %s ms; "
             r"[1-9][0-9]* records in the window$" % (spread, spread)] +
            ([r"^tshark time to first record: SKIP: tcpdump is not installed"] if tcpdump else
             [peer_or_skip("tshark", r"^tshark time to first record \([0-9]+ runs\): %s ms; "
                           r"to last: %s ms; [1-9][0-9]* HTTP requests in the window$"
                           % (spread, spread), r"tshark time to first record: "),
              peer_or_skip("tshark", r"^tshark / tracevault query, same repeat \([0-9]+ "
                           r"runs\): first record %sx, last record %sx$" % (spread, spread),
                           r"tshark time to first record: "),
              peer_or_skip("tshark", r"^check: records in the window, tracevault [0-9]+ vs "
                           r"tshark [0-9]+ \(tcpdump dropped [0-9]+ packets\): differ by "
                           r"[0-9]+ \(%s%%\): (comparable|NOT comparable)" % N,
                           r"tshark time to first record: ")]))


def under_figures():
    spread = r"%s \(min %s, max %s\)" % (N, N, N)
    return [r"^persist \(cache-through\) / raw curl PUT, same round: median %sx" % N,
            r"^the same with --s3-connections 1: median %sx" % N,
            r"^persist MiB/s: %s" % spread,
            r"^COMMIT to reply, cache-through: p50 %s ms, p99 %s ms; must-cache: p50 %s ms"
            % (spread, spread, spread),
            r"^COMMIT to reply, async-through: p50 %s ms.*bucket %s s" % (spread, spread),
            r"^  evicted p50 %s ms, p99 %s ms" % (spread, spread),
            r"^  local   p50 %s ms, p99 %s ms" % (spread, spread),
            r"^  evicted / local p50, same round: median %sx" % N]


def read_figures():
    rng = r"%s \[%s-%s\]" % (N, N, N)
    # the zstdcat + filter column: median [min-max] of its own n samples (one sample: no range)
    zst = r"%s(?: \[%s-%s\])? n=[1-9][0-9]*" % (N, N, N)
    return [r"^tracevault read bench: 100000 records",  # the quick size, not the full run's
            r"^  put / load, wall \(1 run each\)\s+%sk rec/s, RSS [0-9]+ MB\s+%sk rec/s" % (N, N),
            r"^  stored bytes per record\s+%s B" % N,
            r"^  1-min window p50 / p99 \(ms\)\s+%s / %s\s+%s / %s\s+%s  " % (rng, rng, rng, rng,
                                                                          zst),
            r"^  1-min window, first / last record p50 \(ms\)\s+%s / %s\s+%s / %s\s+%s / %s  "
            % (rng, rng, rng, rng, zst, zst),
            r"^  1-hour window, first record \(ms\)\s+%s\s+%s" % (rng, rng),
            r"^  whole day, all records \(s\)\s+%s\s+%s\s+%s  " % (rng, rng, zst),
            r"^  full-day scan, k rec per CPU-s\s+%s \(server alone %s\)\s+%s\s+%s  "
            % (rng, rng, rng, zst),
            r"^  --trace-id over the day p50 / p99 \(ms\)\s+%s / %s\s+%s / %s\s+%s  "
            % (rng, rng, rng, rng, zst),
            # zstdcat + filter is a baseline only if it printed the same records
            r"^counts check: zstdcat \+ filter printed as many records as tracevault and SQLite "
            r"in every sample: [1-9][0-9]* 1-min windows, [1-9][0-9]* --trace-id lookups, "
            r"[1-9][0-9]* whole days$",
            r"^  summary --by path, 1 hour \(ms\)\s+%s\s+%s" % (rng, rng),
            r"^  restart: exec to listening / to 1st answer\s+%s / %s" % (rng, rng)]


def node_missing():
    """Why the otlp step may print the Node SDK's SKIP line (None: node and npm are on PATH and
    its figures must be there), as tests/integration/test_capture_otel_node.py looks for them."""
    if not shutil.which("node") or not shutil.which("npm"):
        return "node/npm not installed"
    return None


def otlp_figures():
    rng = r"%s \[%s-%s\]" % (N, N, N)
    return ([r"^otlp C generator, %d in flight: %s spans/s, %s spans per server CPU-s, Export "
             r"p50 %s ms, p99 %s ms \(1 rounds\)$" % (k, rng, rng, rng, rng) for k in (1, 4)] +
            [r"^otlp C generator, %d in flight / ingest ceiling, same round: %sx of %s MB/s "
             r"\(stored %s MB/s, blocks of %s B\)$" % (k, rng, rng, rng, rng) for k in (1, 4)] +
            [r"^otlp Node SDK: SKIP: node/npm not installed" if node_missing() else
             r"^otlp Node SDK, batches of 512: %s spans/s, %s spans per server CPU-s, SDK "
             r"process CPU / wall %s \(1 rounds\)$" % (rng, rng, rng)])


OTLP_JSON_FIGURES = ["otlp_c%d_%s" % (k, n) for k in (1, 4)
                     for n in ("spans_per_s", "spans_per_server_cpu_s", "export_p50_ms",
                               "export_p99_ms", "x_ingest_ceiling", "ceiling_MBps")]
OTLP_NODE_JSON_FIGURES = ["otlp_node_spans_per_s", "otlp_node_spans_per_server_cpu_s",
                          "otlp_node_sdk_cpu_over_wall"]


# per step (report.py's step names): figures the results' JSON must hold; for the capture
# step those of (iii) always, the rest unless the step printed its SKIP
JSON_FIGURES = {
    "ingest": ["ceiling_tcp_MBps", "ceiling_disk_MBps", "ceiling_memcpy_MBps",
               "zerocopy_vs_copy_throughput", "zerocopy_vs_copy_sweep",
               "writers_4_vs_1_zerocopy", "writers_4_vs_1_no_zerocopy",
               "best_chunk_bytes_zerocopy_1w", "best_chunk_bytes_no_zerocopy_4w",
               "ingest_over_bound_max"] +
              ["ingest_%s_%s" % (re.sub(r"[^a-z0-9]+", "_", c.lower()), f)
               for c in INGEST_CONFIGS
               for f in ("MBps", "x_bound", "client_cpu_s_per_GB", "server_cpu_s_per_GB")],
    "capture": ["parser_exchanges_per_s"],
    "under": ["persist_over_curl_4conn", "persist_over_curl_1conn", "persist_MiBps_4conn",
              "curl_put_MiBps", "commit_p50_cache_through", "commit_p50_async_through",
              "commit_p50_must_cache", "query_p50_evicted", "query_p50_local",
              "query_evicted_over_local_p50"],
    "read": ["read_put_load_wall_1_run_each_tracevault", "read_put_load_wall_1_run_each_peer",
             "read_stored_bytes_per_record_tracevault", "read_1_min_window_p50_p99_ms_tracevault_0",
             "read_1_min_window_p50_p99_ms_peer_0", "read_whole_day_all_records_s_tracevault",
             "read_summary_by_path_1_hour_ms_tracevault",
             # zstdcat + filter (issue 15): each with its own n (check_read_results)
             "read_1_min_window_p50_p99_ms_zstdcat",
             "read_1_min_window_first_last_record_p50_ms_zstdcat_0",
             "read_1_min_window_first_last_record_p50_ms_zstdcat_1",
             "read_whole_day_all_records_s_zstdcat", "read_trace_id_over_the_day_p50_p99_ms_zstdcat",
             "read_full_day_scan_k_rec_per_cpu_s_zstdcat"],
}
JSON_FIGURES["otlp"] = OTLP_JSON_FIGURES + ([] if node_missing() else OTLP_NODE_JSON_FIGURES)
CAPTURE_RUN_FIGURES = (
    ["capture_on_off_" + m.replace("-", "_") for m in CAPTURE_MODES] +
    ["nginx_req_per_s_" + m.replace("-", "_") for m in ("capture-off",) + CAPTURE_MODES] +
    ["bytes_per_exchange_tracevault_" + m.replace("-", "_") for m in CAPTURE_MODES] +
    ["lossless_req_per_s", "ebpf_ns_per_request_ring_16m", "window_tracevault_first_record_ms",
     "window_tracevault_last_record_ms", "window_tracevault_records"])
# the peers' figures, there when the peer is installed (else a SKIP line: not in the JSON)
CAPTURE_PEER_FIGURES = {
    "tcpdump": ["nginx_req_per_s_tcpdump_w", "peer_tcpdump_w_on_off",
                "tcpdump_w_dropped_packets", "bytes_per_exchange_pcap_raw",
                "bytes_per_exchange_pcap_zstd3"],
    "tshark": ["window_tshark_first_record_ms", "window_tshark_last_record_ms",
               "window_tshark_records", "window_tshark_over_tracevault_first",
               "window_tshark_over_tracevault_last"],
}
TABLE_HEAD_RE = re.compile(r"^\| step \| figure \| median \| min \| max \| n \| unit \|$", re.M)
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def check_read_results(res, results_dir):
    """Problems of the read step's results: every zstdcat figure says its n, and the latency
    CDF has zstdcat's windows in it (the quick run takes enough samples for it)."""
    problems = []
    for f in res.get("figures", {}).get("read", []):
        if "zstdcat" in f["name"] and not f.get("n"):
            problems.append("read figure %s without its sample count n" % f["name"])
    cdf = res.get("plots", {}).get("query_latency_cdf", {})
    if cdf.get("file"):
        try:
            with open(os.path.join(results_dir, cdf["file"][:-4] + ".dat")) as f:
                if "# zstdcat+mawk" not in f.read():
                    problems.append("query_latency_cdf without zstdcat's windows: %s"
                                    % cdf.get("note"))
        except OSError as err:
            problems.append("query_latency_cdf's data: %s" % err)
    return problems


def check_results(results_dir, out):
    """Problems of the results report.py wrote for one quick run (none: all there)."""
    jsons = glob.glob(os.path.join(results_dir, "*.json"))
    if len(jsons) != 1:
        return ["not one results JSON in %s: %s" % (results_dir, os.listdir(results_dir))]
    name = os.path.basename(jsons[0])
    if not re.match(r"^[0-9]{4}-[0-9]{2}-[0-9]{2}-\S+\.json$", name):
        return ["results JSON not named <UTC date>-<host>.json: %s" % name]
    try:
        with open(jsons[0]) as f:
            res = json.load(f)
    except ValueError as e:
        return ["%s does not parse: %s" % (name, e)]
    problems = []
    m = res.get("machine", {})
    for key in ("cpu_model", "kernel", "nproc", "host"):
        if not m.get(key):
            problems.append("machine info without %s: %s" % (key, m))
    if not m.get("filesystems") or not all(f.get("type") for f in m["filesystems"]):
        problems.append("machine info without the data dirs' file systems: %s" % m)
    cmds = res.get("commands", [])
    if not cmds or "bench/run.sh" not in cmds[0]:
        problems.append("no commands (the run.sh invocation first): %s" % cmds)
    steps = {s["name"]: s for s in res.get("steps", [])}
    for step, want in JSON_FIGURES.items():
        if step not in steps:
            problems.append("step %s not in the results JSON" % step)
            continue
        have = {f["name"] for f in res["figures"].get(step, [])
                if isinstance(f.get("value"), (int, float))}
        need = list(want)
        if step == "capture" and not steps[step]["skipped"]:
            need += CAPTURE_RUN_FIGURES
            # tshark reads tcpdump's pcap: without tcpdump, no tshark figures either
            need += [f for peer, names in CAPTURE_PEER_FIGURES.items()
                     if not peer_missing(peer) and not peer_missing("tcpdump") for f in names]
        if steps[step]["skipped"] and step != "capture":
            need = []
        missing = [n for n in need if n not in have]
        if missing:
            problems.append("step %s: figures missing from the JSON: %s" % (step, missing))
    if "read" in steps and not steps["read"]["skipped"]:
        problems += check_read_results(res, results_dir)
    if not TABLE_HEAD_RE.search(out) or not re.search(r"^\| read \| read_\S+ \| ", out, re.M):
        problems.append("no Markdown table of the figures printed")
    # the ingest sweep's own table (report.py ingest_sweep_table): a row per sweep point
    for mode, w, chunk in (("zerocopy", 4, "64K"), ("no-zerocopy", 1, "4M")):
        if not re.search(r"^\| %s \| %d \| %s \| [0-9]+ \| %s \[" % (mode, w, chunk, N), out,
                         re.M):
            problems.append("no ingest sweep table row for %s, %d writers, %s" % (mode, w, chunk))
    plots = res.get("plots", {})
    must = {"throughput_vs_chunk", "query_latency_cdf"}
    if not steps.get("capture", {}).get("skipped"):
        must.add("capture_overhead")
    for p in sorted(must - set(plots)):
        problems.append("plot %s not in the JSON" % p)
    for p, e in sorted(plots.items()):
        if not e.get("waits_for"):
            problems.append("plot %s does not say what it waits for" % p)
        if p not in must and not e.get("file"):
            continue
        if e.get("status") != "written" or not e.get("file"):
            problems.append("plot %s not written: %s" % (p, e.get("status")))
            continue
        try:
            with open(os.path.join(results_dir, e["file"]), "rb") as f:
                if f.read(8) != PNG_MAGIC:
                    problems.append("plot %s (%s) is not a PNG" % (p, e["file"]))
        except OSError as err:
            problems.append("plot %s: %s" % (p, err))
    return problems


def test_results_checks_fail_when_damaged(results_dir, out):
    """The results' checks checked: a figure cut from the JSON, a plot that is not a PNG,
    the table cut from the output: each must be a problem."""
    path = glob.glob(os.path.join(results_dir, "*.json"))[0]
    with open(path) as f:
        good = f.read()
    res = json.loads(good)
    try:
        res["figures"]["ingest"] = res["figures"]["ingest"][1:]
        with open(path, "w") as f:
            json.dump(res, f)
        assert check_results(results_dir, out), "a figure cut from the JSON passes the check"
    finally:
        with open(path, "w") as f:
            f.write(good)
    assert check_results(results_dir, TABLE_HEAD_RE.sub("", out)), "no table passes the check"
    png = os.path.join(results_dir, res["plots"]["throughput_vs_chunk"]["file"])
    with open(png, "r+b") as f:
        f.write(b"GIF89a")
    assert check_results(results_dir, out), "a plot that is not a PNG passes the check"


def capture_skip_reason():
    """Why the capture step may print SKIP on this machine (None: it must run)."""
    reason = tvtest.bpf_unavailable_reason()
    if reason:
        return reason
    for tool in ("wrk", "nginx"):
        if not (shutil.which(tool) or os.path.exists("/usr/sbin/" + tool)):
            return "%s is not installed" % tool
    return None


def under_skip_reason():
    """Why the under-store step may print its skip line (None: it must run): a Ceph package
    missing (scripts/s3-ceph.sh's SKIP; tvtest.Ceph tries scripts/deps.sh first)."""
    for cmd in ("ceph-mon", "ceph-osd", "radosgw", "radosgw-admin", "monmaptool"):
        if not shutil.which(cmd):
            return "%s is not installed" % cmd
    return None


# (a word of the step's WHAT in run.sh's STEPS, its figure patterns, the pattern of its SKIP
# line, why this machine may skip it)
STEP_CHECKS = [
    ("ingest", ingest_figures(), None, lambda: None),
    ("capture", capture_figures(), CAPTURE_SKIP_RE, capture_skip_reason),
    ("under-store", under_figures(), UNDER_SKIP_RE, under_skip_reason),
    ("read side", read_figures(), None, lambda: None),
]
STEP_CHECKS.append(("OTLP", otlp_figures(), None, lambda: None))  # bench/bench_otlp.py


def sections(out):
    """[(K, N, WHAT, elapsed_s, the text up to the next progress line)] of a run's output."""
    marks = list(PROGRESS_RE.finditer(out))
    return [(int(m.group(1)), int(m.group(2)), m.group(3), int(m.group(4)),
             out[m.end():marks[i + 1].start() if i + 1 < len(marks) else len(out)])
            for i, m in enumerate(marks)]


def check(out):
    """(problems, skips) of one quick run's output: no problems when every step announced
    itself in order and printed its figures or a SKIP this machine explains (one line in
    skips for each such SKIP)."""
    problems, skips = [], []
    secs = sections(out)
    if not secs:
        return ["no progress line ('bench step K/N: WHAT (elapsed S s)')"], skips
    n = secs[0][1]
    if [s[0] for s in secs] != list(range(1, n + 1)) or any(s[1] != n for s in secs):
        problems.append("progress lines are not steps 1..%d of %d in order: %s"
                        % (n, n, ["%d/%d" % (s[0], s[1]) for s in secs]))
    elapsed = [s[3] for s in secs]
    if elapsed != sorted(elapsed):
        problems.append("elapsed seconds go backwards: %s" % elapsed)
    done = DONE_RE.search(out)
    if not done or int(done.group(1)) != n:
        problems.append("no final 'bench done: %d steps in S s (quick)' line" % n)
    seen = set()
    for k, _, what, _, text in secs:
        known = [c for c in STEP_CHECKS if c[0] in what]
        if len(known) != 1:
            problems.append("step %d '%s': not exactly one of this test's steps %s (a new step "
                            "needs its figure patterns here)" % (k, what,
                                                                 [c[0] for c in STEP_CHECKS]))
            continue
        name, figures, skip_re, skip_reason = known[0]
        seen.add(name)
        skipped = skip_re and re.search(skip_re, text, re.M)
        if skipped:
            why = skip_reason()
            if why is None:
                problems.append("step %d (%s) skipped although this machine has what it needs: "
                                "%s" % (k, name, skipped.group(0)))
            else:
                skips.append("step %d (%s) skipped, as this machine lacks what it needs (%s)"
                             % (k, name, why))
            continue
        missing = [f for f in figures if not re.search(f, text, re.M)]
        if missing:
            problems.append("step %d (%s) printed no figures matching %s" % (k, name, missing))
        elif name == "capture":  # its peers' SKIP lines passed (capture_figures): say so
            skips += ["step %d (capture): the peer %s printed SKIP, as this machine lacks it "
                      "(%s)" % (k, peer, peer_missing(peer))
                      for peer in ("tcpdump", "tshark") if peer_missing(peer)]
    for name in sorted({c[0] for c in STEP_CHECKS} - seen):
        problems.append("step '%s' was not run" % name)
    return problems, skips


def quick_env():
    """The caller's environment without any TV_BENCH_* size or skip, plus TV_BENCH_QUICK=1."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("TV_BENCH_")}
    env["TV_BENCH_QUICK"] = "1"
    return env


def test_quick_run_prints_every_steps_figures(results_dir):
    t0 = time.monotonic()
    env = quick_env()
    env["TV_BENCH_RESULTS_DIR"] = results_dir
    # its own process group: on a timeout, the steps' servers (tracevaultd, nginx, the Ceph
    # start) go with it
    p = subprocess.Popen(["bash", RUN_SH, BENCH_BUILD], env=env, stdout=subprocess.PIPE,
                         stderr=subprocess.PIPE, text=True, start_new_session=True)
    try:
        out, err = p.communicate(timeout=RUN_TIMEOUT_S)
    except subprocess.TimeoutExpired:
        os.killpg(p.pid, signal.SIGTERM)
        try:
            out, err = p.communicate(timeout=STOP_TIMEOUT_S)
        except subprocess.TimeoutExpired:
            os.killpg(p.pid, signal.SIGKILL)
            out, err = p.communicate()
        raise AssertionError("bench/run.sh (quick) did not finish within %d s; its output:\n%s"
                             "\n%s" % (RUN_TIMEOUT_S, out, err[-4000:]))
    took = time.monotonic() - t0
    print(out)
    assert p.returncode == 0, "bench/run.sh (quick) exited %d:\n%s" % (p.returncode,
                                                                      err[-4000:])
    problems, skips = check(out)
    assert not problems, "quick bench output:\n  " + "\n  ".join(problems)
    problems = check_results(results_dir, out)
    assert not problems, "quick bench results in %s:\n  %s" % (results_dir,
                                                               "\n  ".join(problems))
    test_results_checks_fail_when_damaged(results_dir, out)
    print("quick bench: %d steps, each with its figures or an explained SKIP, in %.0f s"
          % (len(sections(out)), took))
    return out, skips


def test_checks_fail_without_a_steps_figures(out):
    """Each step's figures cut out of the real output, and each progress line cut out: the
    check must say so. Without this, a check whose patterns had stopped matching anything
    would pass forever."""
    marks = list(PROGRESS_RE.finditer(out))
    for i, (k, _, what, _, _) in enumerate(sections(out)):
        end = marks[i + 1].start() if i + 1 < len(marks) else len(out)
        cut = out[:marks[i].end()] + "\n" + out[end:]
        problems, _ = check(cut)
        assert any(p.startswith("step %d " % k) for p in problems), \
            "step %d (%s) without its figures passes the check: %s" % (k, what, problems)
    for m in PROGRESS_RE.finditer(out):
        cut = out[:m.start()] + out[m.end():]
        assert check(cut)[0], "the output without '%s' passes the check" % m.group(0)


def processes_of(prefix):
    """pids whose argv[0] starts with prefix."""
    pids = []
    for pid in filter(str.isdigit, os.listdir("/proc")):
        try:
            with open("/proc/%s/cmdline" % pid, "rb") as f:
                argv0 = f.read().split(b"\0")[0].decode(errors="replace")
        except OSError:
            continue
        if argv0.startswith(prefix):
            pids.append(int(pid))
    return pids


def test_a_step_that_dies_fails_the_run():
    """bench_ingest exiting 1 (a build dir of links to the real binaries, but for that one):
    run.sh exits non-zero, never prints its "bench done" line, and leaves no tracevaultd
    running (the ingest step's server is started in a $(...) subshell: it once printed 0.0
    and -nan and went on)."""
    tmp = tempfile.mkdtemp(prefix="tv-bench-dies-")
    try:
        os.mkdir(os.path.join(tmp, "bench"))
        for name in NEEDED:
            os.symlink(os.path.join(os.path.abspath(BENCH_BUILD), name), os.path.join(tmp, name))
        fake = os.path.join(tmp, "bench", "bench_ingest")
        os.unlink(fake)
        with open(fake, "w") as f:
            f.write("#!/bin/sh\necho 'bench_ingest: failing on purpose' >&2\nexit 1\n")
        os.chmod(fake, 0o755)
        p = subprocess.run(["bash", RUN_SH, tmp], env=quick_env(), capture_output=True,
                           text=True, timeout=DIES_TIMEOUT_S)
        assert p.returncode != 0 and not DONE_RE.search(p.stdout), \
            "a dying step did not fail run.sh (exit %d):\n%s" % (p.returncode, p.stdout)
        assert "failing on purpose" in p.stderr, p.stderr
        left = processes_of(os.path.join(tmp, "tracevaultd"))
        assert not left, "tracevaultd left running after the failed run: pids %s" % left
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def test_usage_error_exits_2():
    p = subprocess.run(["bash", RUN_SH, BENCH_BUILD, "extra"], capture_output=True, text=True,
                       timeout=DIES_TIMEOUT_S)
    assert p.returncode == 2 and len(p.stderr.strip().splitlines()) == 1, (p.returncode,
                                                                          p.stderr)


def main():
    if os.environ.get("TV_VALGRIND_DIR"):
        tvtest.skip("the bench starts its own tracevaultd, not under memcheck, and times it: "
                    "nothing for the valgrind run to check")
    missing = [n for n in NEEDED if not os.access(os.path.join(BENCH_BUILD, n), os.X_OK)]
    if missing:
        tvtest.skip("no release build at %s (missing %s): make test builds it first, or pass "
                    "-DTV_BENCH_BUILD=DIR" % (BENCH_BUILD, ", ".join(missing)))
    test_usage_error_exits_2()
    test_a_step_that_dies_fails_the_run()
    if not shutil.which("gnuplot"):
        tvtest.skip("no gnuplot for the results' plots (scripts/deps.sh installs gnuplot-nox)")
    results_dir = tempfile.mkdtemp(prefix="tv-bench-results-")
    try:
        out, skips = test_quick_run_prints_every_steps_figures(results_dir)
    finally:
        shutil.rmtree(results_dir, ignore_errors=True)
    test_checks_fail_without_a_steps_figures(out)
    if skips:  # the other steps passed; ctest shows this run did not exercise them all
        for why in skips:
            print("SKIP: " + why)
        sys.exit(tvtest.SKIP)
    print("ok")


if __name__ == "__main__":
    main()
