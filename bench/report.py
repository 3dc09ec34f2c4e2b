#!/usr/bin/python3
"""bench/report.py: the end of `make bench` (bench/run.sh runs it on the run's log): turns the
steps' printed figures into RESULTS_DIR/<UTC date>-<host>.json (machine info, the exact
commands, every figure as median/min/max/n), prints a Markdown table of them, and writes the
gnuplot PNG plots beside the JSON (bench/README.md, "Results").

Figures come from two kinds of lines in the log:
  - "FIGURE <step> <name> <value> <unit> [min=<v> max=<v> n=<k>]": any step may print these;
  - the steps' own summary lines (the same lines tests/integration/test_bench_quick.py pins
    with regexes), parsed here per step, so the steps' human output is the one source.
A step that printed SKIP is recorded as skipped, with its reason. Plots whose figures do not
exist yet are listed in the JSON as waiting, with what they wait for.

usage: report.py --log LOG --results-dir DIR [--run-id ID] [--data-dir DIR]... [--command CMD]...
[--quick]"""
import argparse
import datetime
import json
import os
import platform
import re
import shutil
import socket
import statistics
import subprocess
import sys

N = r"[0-9]+(?:\.[0-9]+)?"
PROGRESS_RE = re.compile(r"^bench step ([0-9]+)/([0-9]+): (.+) \(elapsed ([0-9]+) s\)$", re.M)
DONE_RE = re.compile(r"^bench done: ([0-9]+) steps in ([0-9]+) s", re.M)
FIGURE_RE = re.compile(r"^FIGURE (\S+) (\S+) (\S+) (\S+)((?: \S+=\S+)*)\s*$", re.M)
SKIP_RE = re.compile(r"^(?:capture bench \(i\), \(i-b\), \(ii\), \(iv\): SKIP: |"
                     r"under-store bench: skipped: |tracevault \S+ bench: skipped )(.*)$", re.M)
# the raw samples of the latency CDF (bench_read.py writes them when TV_BENCH_RESULTS_DIR is set)
WINDOW_SAMPLES = "read_window_ms.tsv"


def fig(name, unit, values=None, value=None, lo=None, hi=None):
    """One figure: median/min/max/n of values, or a single value (with its own min/max)."""
    if values:
        return {"name": name, "value": statistics.median(values), "unit": unit,
                "min": min(values), "max": max(values), "n": len(values)}
    f = {"name": name, "value": value, "unit": unit}
    if lo is not None:
        f.update({"min": lo, "max": hi})
    return f


def slug(s):
    return re.sub(r"_+", "_", re.sub(r"[^a-z0-9]+", "_", s.lower())).strip("_")


INGEST_SP = r"(%s)x? \[(%s)-(%s)\]" % (N, N, N)  # bench/ingest_summary.py's median [min-max]
INGEST_MODES = {"zero-copy": "zerocopy", "--no-zerocopy": "no_zerocopy"}  # printed -> named
INGEST_COLS = (("MBps", "MB/s"), ("x_bound", "x"), ("client_cpu_s_per_GB", "s/GB"),
               ("server_cpu_s_per_GB", "s/GB"))


def size_bytes(s):
    """64K, 1M or bytes -> bytes."""
    return int(s[:-1]) * {"K": 1 << 10, "M": 1 << 20}[s[-1]] if s[-1] in "KM" else int(s)


def size_name(b):
    """bytes -> 64K, 1M or the bytes (as bench/run.sh writes chunk sizes)."""
    return "%dM" % (b >> 20) if b and b % (1 << 20) == 0 else "%dK" % (b >> 10) if b and \
        b % 1024 == 0 else str(b)


def parse_ingest(text):
    """bench/ingest_summary.py's lines (the end of run.sh's ingest step): per configuration
    median [min-max] of MB/s, x bound, client and server CPU s/GB over the rounds, and the copied
    bytes; the ceilings; zero-copy vs --no-zerocopy, 4 vs 1 writers, the best chunk size, the
    bound check and the fio cross-check. A sweep point's figures carry "config" (mode, writers,
    chunk_bytes, mib): the table shows them apart (ingest_sweep_table), the plot draws them."""
    figs = []
    m = re.search(r"^ingest summary: median \[min-max\] over ([0-9]+) rounds", text, re.M)
    n = {"n": int(m.group(1))} if m else {}

    def spread(name, unit, g):
        return fig(name, unit, value=float(g[0]), lo=float(g[1]), hi=float(g[2])) | n

    for m in re.finditer(r"^  (\S+)\s+([0-9]+)w\s+([0-9]+[KM]?)\s+([0-9]+)\s+%s\s+([0-9]+)$"
                         % r"\s+".join([INGEST_SP] * len(INGEST_COLS)), text, re.M):
        label, g = m.group(1), m.groups()
        conf = {"mode": label.split("/")[0], "writers": int(g[1]),
                "chunk_bytes": size_bytes(g[2]), "mib": int(g[3])}
        row = [spread("ingest_%s_%s" % (slug(label), c), u, g[4 + 3 * i:7 + 3 * i])
               for i, (c, u) in enumerate(INGEST_COLS)]
        row.append(fig("ingest_%s_copied_bytes" % slug(label), "B", value=float(g[-1])) | n)
        for f in row:  # a sweep point's "config", the headline's "headline": same keys
            f["config" if "/" in label else "headline"] = conf
        figs += row
    m = re.search(r"^ceilings over the rounds, MB/s: TCP %s, disk %s, fio (?:%s|-), 1file %s, "
                  r"memcpy %s$" % ((INGEST_SP,) * 5), text, re.M)
    if m:
        g = m.groups()
        for i, c in enumerate(("tcp", "disk", "fio", "one_file", "memcpy")):
            if g[3 * i] is not None:
                figs.append(spread("ceiling_%s_MBps" % c, "MB/s", g[3 * i:3 * i + 3]))
    m = re.search(r"^zero-copy vs --no-zerocopy, same round: %s MB/s at the headline .*: (%s) vs "
                  r"(%s) s .*every sweep point: (?:%s|none)" % (INGEST_SP, N, N, INGEST_SP),
                  text, re.M)
    if m:
        g = m.groups()
        figs.append(spread("zerocopy_vs_copy_throughput", "x", g[0:3]))
        figs.append(fig("zerocopy_cpu_s_per_GB_client_server", "s/GB", value=float(g[3])))
        figs.append(fig("no_zerocopy_cpu_s_per_GB_client_server", "s/GB", value=float(g[4])))
        if g[5] is not None:  # every (writers, chunk) pair of every round: n is not the rounds
            figs.append(fig("zerocopy_vs_copy_sweep", "x", value=float(g[5]), lo=float(g[6]),
                            hi=float(g[7])))
    m = re.search(r"^4 vs 1 writers, MB/s same round and chunk: (.*)$", text, re.M)
    for mode, sp in re.findall(r"(zero-copy|--no-zerocopy) (%sx \[%s-%s\])" % (N, N, N),
                               m.group(1) if m else ""):
        g = re.match(INGEST_SP, sp).groups()
        figs.append(fig("writers_4_vs_1_%s" % INGEST_MODES[mode], "x", value=float(g[0]),
                        lo=float(g[1]), hi=float(g[2])))
    for mode, w, chunk, mbps in re.findall(r"^  (zero-copy|--no-zerocopy), ([0-9]+) writers?: "
                                           r"([0-9]+[KM]?) (%s) MB/s" % N, text, re.M):
        figs.append(fig("best_chunk_bytes_%s_%sw" % (INGEST_MODES[mode], w), "B",
                        value=float(size_bytes(chunk))))
    m = re.search(r"^check: ingest / min\(TCP, disk\) <= 1\.0 in every run: \S+ \(max (%s)x "
                  r"over ([0-9]+) runs" % N, text, re.M)
    if m:
        figs.append(fig("ingest_over_bound_max", "x", value=float(m.group(1))) |
                    {"n": int(m.group(2))})
    m = re.search(r"^cross-check: disk ceiling / fio .*: median (%s)x \(per round: ([0-9. ]+)\)"
                  % N, text, re.M)
    if m:
        per = [float(v) for v in m.group(2).split()]
        figs.append(fig("disk_over_fio", "x", value=float(m.group(1)), lo=min(per),
                        hi=max(per)) | {"n": len(per)})
    return figs


# bench_capture.py's "median M (min A, max B)", with the run count "(K runs)" its lines give
CAP_SPREAD = r"median (%s) \(min (%s), max (%s)\)" % (N, N, N)
CAPTURE_MODE_NAMES = {"off": "capture_off", "tcpdump-w": "tcpdump_w"}


def parse_capture(text):
    """bench_capture.py's summary lines: each figure the median of its runs with min, max and
    n; a peer's SKIP line (tcpdump, tshark, zstd not installed) as that figure with no value
    and its reason under "skipped"."""
    figs = []

    def spread(name, unit, m, i, n):
        """The figure of CAP_SPREAD's three groups from group i of match m, over n runs."""
        figs.append(fig(name, unit, value=float(m.group(i)), lo=float(m.group(i + 1)),
                        hi=float(m.group(i + 2))) | {"n": int(n)})

    def skipped(names, unit, why):
        figs.extend({"name": n, "value": None, "unit": unit, "skipped": why} for n in names)

    m = re.search(r"^\(iii\) parser replay .*, ([0-9]+) runs of [0-9]+ s: %s "
                  r"exchanges/s \((%s) events/s" % (CAP_SPREAD, N), text, re.M)
    if m:
        spread("parser_exchanges_per_s", "1/s", m, 2, m.group(1))
        figs.append(fig("parser_events_per_s", "1/s", value=float(m.group(5))) |
                    {"n": int(m.group(1))})
    for m in re.finditer(r"^req/s \((\S+)\) \(([0-9]+) runs\): %s$" % CAP_SPREAD, text, re.M):
        mode = CAPTURE_MODE_NAMES.get(m.group(1), slug(m.group(1)))
        spread("nginx_req_per_s_" + mode, "req/s", m, 3, m.group(2))
    for m in re.finditer(r"^(?:capture on \((\S+)\)|peer (tcpdump -w)) / off throughput: (%s)x "
                         r"median of rounds ((?:%s ?)+)" % (N, N), text, re.M):
        rounds = [float(v) for v in m.group(4).split()]
        v = float(m.group(3))  # the rounds are printed to 2 digits, the median to 3
        name = ("capture_on_off_" + slug(m.group(1)) if m.group(1) else
                "peer_%s_on_off" % slug(m.group(2)))
        figs.append(fig(name, "x", value=v, lo=min(rounds + [v]), hi=max(rounds + [v])) |
                    {"n": len(rounds)})
    m = re.search(r"^peer tcpdump -w: SKIP: (.*)$", text, re.M)
    if m:
        skipped(["nginx_req_per_s_tcpdump_w"], "req/s", m.group(1))
        skipped(["peer_tcpdump_w_on_off"], "x", m.group(1))
    m = re.search(r"^tcpdump -w packets dropped by kernel \(([0-9]+) runs.*: %s" % CAP_SPREAD,
                  text, re.M)
    if m:
        spread("tcpdump_w_dropped_packets", "packets", m, 2, m.group(1))
    m = re.search(r"^bytes per exchange, tcpdump -w pcap(?: \(([0-9]+) runs\))?: (.*)$", text,
                  re.M)
    pcap_names = ["bytes_per_exchange_pcap_raw", "bytes_per_exchange_pcap_zstd3"]
    if m and m.group(2).startswith("SKIP: "):
        skipped(pcap_names, "B", m.group(2)[len("SKIP: "):])
    elif m:
        raw = re.search(r"raw %s B" % CAP_SPREAD, m.group(2))
        z = re.search(r"zstd -3 (?:SKIP: (.*)|%s B)" % CAP_SPREAD, m.group(2))
        if raw:
            spread(pcap_names[0], "B", raw, 1, m.group(1))
        if z and z.group(1):
            skipped(pcap_names[1:], "B", z.group(1))
        elif z:
            spread(pcap_names[1], "B", z, 2, m.group(1))
    for per in ("exchange", "record"):
        m = re.search(r"^bytes per %s, tracevault blocks \+ catalog \(([0-9]+) runs\): (.*)$"
                      % per, text, re.M)
        for g in re.finditer(r"(\S+) %s B" % CAP_SPREAD, m.group(2) if m else ""):
            spread("bytes_per_%s_tracevault_%s" % (per, slug(g.group(1))), "B", g, 2,
                   m.group(1))
    for m in re.finditer(r"^eBPF time per request, --ring-bytes (\S+) \(([0-9]+) runs\): %s ns"
                         % CAP_SPREAD, text, re.M):
        spread("ebpf_ns_per_request_ring_%s" % slug(m.group(1)), "ns", m, 3, m.group(2))
    for m in re.finditer(r"^  -t([0-9]+) -c([0-9]+)\s+(%s) req/s.*lost\s+([0-9]+)\s+(\S+)" % N,
                         text, re.M):
        figs.append(fig("ramp_t%s_c%s_req_per_s" % (m.group(1), m.group(2)), "req/s",
                        value=float(m.group(3))))
    m = re.search(r"^highest rate captured with lost 0: (?:(%s) req/s|none)" % N, text, re.M)
    if m:
        figs.append(fig("lossless_req_per_s", "req/s",
                        value=float(m.group(1)) if m.group(1) else 0.0))
    # (iv): one window read back, tshark from tcpdump's pcap beside tracevault query
    for who, key in (("tshark", "tshark"), ("tracevault query", "tracevault")):
        m = re.search(r"^%s time to first record(?: \(([0-9]+) runs\): %s ms; to last: %s ms; "
                      r"([0-9]+) .* in the window|: SKIP: (.*))$"
                      % (who, CAP_SPREAD, CAP_SPREAD), text, re.M)
        if not m:
            continue
        names = ["window_%s_first_record_ms" % key, "window_%s_last_record_ms" % key]
        if m.group(9):
            skipped(names, "ms", m.group(9))
            skipped(["window_%s_records" % key], "records", m.group(9))
            continue
        spread(names[0], "ms", m, 2, m.group(1))
        spread(names[1], "ms", m, 5, m.group(1))
        figs.append(fig("window_%s_records" % key, "records", value=float(m.group(8))))
    m = re.search(r"^tshark / tracevault query, same repeat \(([0-9]+) runs\): first record %sx, "
                  r"last record %sx" % (CAP_SPREAD, CAP_SPREAD), text, re.M)
    if m:
        spread("window_tshark_over_tracevault_first", "x", m, 2, m.group(1))
        spread("window_tshark_over_tracevault_last", "x", m, 5, m.group(1))
    return figs


def spread_fig(name, unit, s):
    """'M (min A, max B)' -> a figure."""
    m = re.match(r"(%s)\S* \(min (%s)\S*, max (%s)\S*\)" % (N, N, N), s)
    return fig(name, unit, value=float(m.group(1)), lo=float(m.group(2)), hi=float(m.group(3)))


def parse_under(text):
    sp = r"%s\S* \(min %s\S*, max %s\S*\)" % (N, N, N)
    pats = [
        (r"^persist \(cache-through\) / raw curl PUT, same round: median (%s)" % sp,
         [("persist_over_curl_4conn", "x")]),
        (r"^the same with --s3-connections 1: median (%s)" % sp,
         [("persist_over_curl_1conn", "x")]),
        (r"^persist MiB/s: (%s) \(1 connection: (%s)\); raw curl MiB/s: (%s)" % (sp, sp, sp),
         [("persist_MiBps_4conn", "MiB/s"), ("persist_MiBps_1conn", "MiB/s"),
          ("curl_put_MiBps", "MiB/s")]),
        (r"^COMMIT to reply, cache-through: p50 (%s) ms, p99 (%s) ms; must-cache: p50 (%s) ms, "
         r"p99 (%s) ms" % (sp, sp, sp, sp),
         [("commit_p50_cache_through", "ms"), ("commit_p99_cache_through", "ms"),
          ("commit_p50_must_cache", "ms"), ("commit_p99_must_cache", "ms")]),
        (r"^COMMIT to reply, async-through: p50 (%s) ms, p99 (%s) ms; every segment in the "
         r"bucket (%s) s" % (sp, sp, sp),
         [("commit_p50_async_through", "ms"), ("commit_p99_async_through", "ms"),
          ("async_all_in_bucket", "s")]),
        (r"^  evicted p50 (%s) ms, p99 (%s) ms" % (sp, sp),
         [("query_p50_evicted", "ms"), ("query_p99_evicted", "ms")]),
        (r"^  local   p50 (%s) ms, p99 (%s) ms" % (sp, sp),
         [("query_p50_local", "ms"), ("query_p99_local", "ms")]),
        (r"^  evicted / local p50, same round: median (%s)" % sp,
         [("query_evicted_over_local_p50", "x")]),
    ]
    figs = []
    for pat, names in pats:
        m = re.search(pat, text, re.M)
        if m:
            figs += [spread_fig(n, u, g) for (n, u), g in zip(names, m.groups())]
    return figs


READ_TOKEN = re.compile(r"(%s)(k?)(?: \[(%s)-(%s)\])?(?: n=([0-9]+))?" % (N, N, N))
READ_NAMED = re.compile(r"([A-Za-z][A-Za-z0-9 -]*?) (%s) (B)(?:,|$)" % N)
READ_ROUNDS_RE = re.compile(r"^per-round figures: median \[min-max\] over ([0-9]+) interleaved "
                            r"rounds", re.M)


def parse_read(text):
    """The read bench's table rows: 'label  ours  peer  [zstdcat]  goal', columns apart by 2+
    spaces (the zstdcat + filter column when the header names it); each 'M [A-B]' (or 'M') of
    each peer is one figure, its n the cell's own 'n=K' (zstdcat's samples) or else, with a
    range, the rounds of the 'per-round figures' line."""
    figs = []
    rows = False
    m = READ_ROUNDS_RE.search(text)
    rounds = int(m.group(1)) if m else None
    who_cols = ("tracevault", "peer")
    for line in text.splitlines():
        if line.startswith("figure ") and "tracevault" in line:
            rows = True
            who_cols = ("tracevault", "peer", "zstdcat") if "zstdcat" in line else who_cols
            continue
        if not rows or not line.startswith("  "):
            if rows and line.strip() == "":
                rows = False
            continue
        parts = re.split(r"\s{2,}", line.strip())
        if len(parts) < 2:
            continue
        label = parts[0]
        unit = "ms" if "(ms)" in label or label.startswith("restart") else \
            "s" if "(s)" in label else "k rec/CPU-s" if "k rec per CPU-s" in label else \
            "rec/CPU-s" if "per CPU-s" in label else ""
        for who, cell in zip(who_cols, parts[1:1 + len(who_cols)]):
            # a cell of named figures, 'zstd -3 53.5 B, SQLite 183.4 B': one figure each
            named = READ_NAMED.findall(cell)
            if named and not READ_TOKEN.match(cell):
                for peer, v, u in named:
                    figs.append(fig("read_%s_%s" % (slug(label), slug(peer)), u, value=float(v)))
                continue
            for i, sub in enumerate(cell.split(" / ")):
                m = READ_TOKEN.match(sub.strip())
                if not m:
                    continue
                k = 1000.0 if m.group(2) else 1.0
                u = unit or ("rec/s" if "rec/s" in sub else "B" if " B" in sub else "")
                name = "read_%s_%s%s" % (slug(label), who, "_%d" % i if " / " in cell else "")
                v = float(m.group(1)) * k
                if m.group(3):
                    g = fig(name, u, value=v, lo=float(m.group(3)) * k, hi=float(m.group(4)) * k)
                    n = int(m.group(5)) if m.group(5) else rounds
                    if n:
                        g["n"] = n
                    figs.append(g)
                else:
                    figs.append(fig(name, u, value=v))
    return figs


OTLP_SP = r"%s \[%s-%s\]" % (N, N, N)


def parse_otlp(text):
    """bench/bench_otlp.py's summary lines: each 'M [A-B]' is a figure (median, min, max) over
    the rounds it names; the Node SDK's SKIP line gives its figures with the reason."""
    figs = []

    def add(name, unit, s, n):
        m = re.match(r"(%s) \[(%s)-(%s)\]" % (N, N, N), s)
        g = fig(name, unit, value=float(m.group(1)), lo=float(m.group(2)), hi=float(m.group(3)))
        g["n"] = n
        figs.append(g)

    sp = OTLP_SP
    for m in re.finditer(r"^otlp C generator, ([0-9]+) in flight: (%s) spans/s, (%s) spans per "
                         r"server CPU-s, Export p50 (%s) ms, p99 (%s) ms \(([0-9]+) rounds\)"
                         % (sp, sp, sp, sp), text, re.M):
        k, n = m.group(1), int(m.group(6))
        for (name, unit), g in zip((("spans_per_s", "spans/s"),
                                    ("spans_per_server_cpu_s", "spans/CPU-s"),
                                    ("export_p50_ms", "ms"), ("export_p99_ms", "ms")),
                                   m.groups()[1:5]):
            add("otlp_c%s_%s" % (k, name), unit, g, n)
        c = re.search(r"^otlp C generator, %s in flight / ingest ceiling, same round: (%s)x of "
                      r"(%s) MB/s \(stored (%s) MB/s" % (k, sp, sp, sp), text, re.M)
        if c:
            for (name, unit), g in zip((("x_ingest_ceiling", "x"), ("ceiling_MBps", "MB/s"),
                                        ("stored_MBps", "MB/s")), c.groups()):
                add("otlp_c%s_%s" % (k, name), unit, g, n)
    m = re.search(r"^otlp Node SDK, batches of [0-9]+: (%s) spans/s, (%s) spans per server "
                  r"CPU-s, SDK process CPU / wall (%s) \(([0-9]+) rounds\)" % (sp, sp, sp),
                  text, re.M)
    node = (("otlp_node_spans_per_s", "spans/s"),
            ("otlp_node_spans_per_server_cpu_s", "spans/CPU-s"),
            ("otlp_node_sdk_cpu_over_wall", "x"))
    if m:
        for (name, unit), g in zip(node, m.groups()[:3]):
            add(name, unit, g, int(m.group(4)))
    skip = re.search(r"^otlp Node SDK: SKIP: (.*)$", text, re.M)
    if skip:
        figs += [{"name": name, "value": None, "unit": unit, "skipped": skip.group(1)}
                 for name, unit in node]
    return figs


PARSERS = [("ingest", parse_ingest), ("capture", parse_capture), ("under", parse_under),
           ("read", parse_read)]
PARSERS.append(("otlp", parse_otlp))  # bench/bench_otlp.py's step


def sections(log):
    marks = list(PROGRESS_RE.finditer(log))
    return [(int(m.group(1)), m.group(3), int(m.group(4)),
             log[m.end():marks[i + 1].start() if i + 1 < len(marks) else len(log)])
            for i, m in enumerate(marks)]


def step_name(what):
    """The step's key from its WHAT (run.sh's STEPS)."""
    w = what.lower()
    for key, words in (("ingest", "ingest"), ("capture", "capture"), ("under", "under-store"),
                       ("read", "read side")):
        if words in w:
            return key
    return slug(what.split(" ")[0])


def sh(argv):
    try:
        return subprocess.run(argv, capture_output=True, text=True, timeout=10).stdout.strip()
    except (OSError, subprocess.TimeoutExpired):
        return ""


def machine(data_dirs):
    cpu = ""
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    cpu = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    mem = ""
    try:
        with open("/proc/meminfo") as f:
            mem = f.readline().split(":", 1)[1].strip()
    except OSError:
        pass
    fs = []
    for d in data_dirs:
        out = sh(["df", "-PT", d]).splitlines()
        if len(out) >= 2:
            p = out[1].split()
            fs.append({"dir": d, "device": p[0], "type": p[1], "mount": p[-1]})
    return {"host": socket.gethostname(), "cpu_model": cpu, "nproc": os.cpu_count(),
            "kernel": platform.release(), "memory": mem, "filesystems": fs,
            "load_average": list(os.getloadavg()), "python": platform.python_version()}


def git_info(src):
    return {"commit": sh(["git", "-C", src, "rev-parse", "HEAD"]),
            "dirty": bool(sh(["git", "-C", src, "status", "--porcelain", "--untracked-files=no"]))}


# ---------- plots ----------
def gnuplot(script, out, size="900,560"):
    """Runs gnuplot; True when out is a PNG. pngcairo if this gnuplot has it, else png (gd)."""
    term = ("pngcairo size %s noenhanced" if "pngcairo" in sh(
        ["gnuplot", "-e", "set terminal"]) else "png size %s noenhanced") % size
    p = subprocess.run(["gnuplot"], input="set terminal %s\nset output '%s'\n%s" % (
        term, out, script), capture_output=True, text=True, timeout=60)
    if p.returncode != 0:
        print("report: gnuplot failed for %s: %s" % (out, p.stderr.strip()), file=sys.stderr)
        return False
    with open(out, "rb") as f:
        return f.read(8) == b"\x89PNG\r\n\x1a\n"


def byname(figs):
    return {f["name"]: f for f in figs}


def plot_throughput(res, figs, path):
    """Ingest MB/s vs chunk size: one line per zero-copy | --no-zerocopy x 1 | 4 writers (the
    sweep; median, min-max bars), the headline runs as open points, the ceilings that fit the
    scale as horizontal lines (those far above, loopback TCP and memcpy as a rule, are named in
    the title with their MB/s instead)."""
    f = byname(figs.get("ingest", []))
    sweep = [g for g in figs.get("ingest", []) if g.get("config") and g["name"].endswith("_MBps")]
    if not sweep:
        return None, "the ingest step's sweep figures (none in this run)"
    dat = path[:-4] + ".dat"
    series = sorted({(g["config"]["mode"], g["config"]["writers"]) for g in sweep},
                    key=lambda s: (s[0] != "zerocopy", s[1]))
    top = 0
    plots = []
    with open(dat, "w") as o:
        # x is spread a little per series so that the error bars do not hide each other
        for i, (mode, w) in enumerate(series):
            shift = 1 + 0.04 * (i - (len(series) - 1) / 2)
            o.write("# %s, %d writer(s): chunk_MiB median min max\n" % (mode, w))
            for g in sorted((g for g in sweep if g["config"]["mode"] == mode and
                             g["config"]["writers"] == w), key=lambda g: g["config"]["chunk_bytes"]):
                o.write("%g %g %g %g\n" % (g["config"]["chunk_bytes"] / 2 ** 20 * shift,
                                           g["value"], g["min"], g["max"]))
                top = max(top, g["max"])
            o.write("\n\n")
            plots.append("'%s' index %d using 1:2:3:4 with yerrorlines lw 2 pt %d ps 1.2 "
                         "title '%s, %d writer%s'" % (
                             dat, i, (7, 5, 9, 13)[i % 4], "zero-copy" if mode == "zerocopy"
                             else "--no-zerocopy", w, "s" if w > 1 else ""))
        o.write("# headline: chunk_MiB median min max\n")
        heads = []
        for j, mode in enumerate(("zerocopy", "no_zerocopy")):
            g = f.get("ingest_%s_MBps" % mode)
            if g:  # at the headline's chunk size, the two modes a little apart
                heads.append(g)
                x = g.get("headline", {}).get("chunk_bytes", 2 ** 20) / 2 ** 20
                o.write("%g %g %g %g\n" % (x * (0.92, 1.08)[j], g["value"], g["min"], g["max"]))
                top = max(top, g["max"])
    sizes = "sweep %d MiB a run" % sweep[0]["config"]["mib"]
    if heads:
        h = heads[0].get("headline", {})
        sizes += "; headline %s MiB a run, 1 writer, %s chunk" % (
            h.get("mib", "?"), size_name(h.get("chunk_bytes", 0)))
        plots.append("'%s' index %d using 1:2:3:4 with yerrorbars pt 6 ps 1.8 lw 1.5 "
                     "lc rgb 'black' title 'headline: zero-copy (left), --no-zerocopy (right)'"
                     % (dat, len(series)))
    ceil = [(c, f["ceiling_%s_MBps" % c]["value"]) for c in ("disk", "tcp", "memcpy")
            if "ceiling_%s_MBps" % c in f]
    names = {"disk": "disk, as the server syncs", "tcp": "loopback TCP", "memcpy": "memcpy"}
    bound = min([v for c, v in ceil if c in ("disk", "tcp")] or [top])
    ymax = 1.12 * max(top, bound)  # the bound, min(TCP, disk), is always on the plot
    off = []
    for k, (c, v) in enumerate(ceil):
        if v <= ymax:
            plots.append("%g with lines lw 2 dt %d lc rgb '%s' title 'ceiling: %s (%.0f)'"
                         % (v, 2 + k, ("dark-red", "dark-blue", "dark-green")[k], names[c], v))
        else:
            off.append("%s %.0f" % (names[c], v))
    title = "durable ingest vs chunk size: median, min-max of %s rounds (%s)\\n%s" % (
        sweep[0].get("n", "?"), res["run_id"], sizes)
    if off:
        title += "\\nceilings (medians, MB/s) above this scale: " + ", ".join(off)
    ok = gnuplot("""set title "%s"
set xlabel 'chunk size (bench_ingest --chunk-bytes; blocks of 4 MiB)'
set ylabel 'MB/s, every byte fdatasynced and in the catalog'
set logscale x 2
set xrange [0.045:5.5]
set xtics ('64K' 0.0625, '128K' 0.125, '256K' 0.25, '512K' 0.5, '1M' 1, '2M' 2, '4M' 4)
set yrange [0:%g]
set key outside below center horizontal maxcols 2 font ',10'
set grid
plot %s
""" % (title, ymax, ", \\\n     ".join(plots)), path, size="1000,680")
    return ok, None


CDF_MIN_SAMPLES = 5  # a peer with fewer window samples is left out of the CDF, with a note


def plot_cdf(res, results_dir, path):
    samples = os.path.join(results_dir, WINDOW_SAMPLES)
    if not os.path.exists(samples):
        return None, "the read step's window samples (%s; not written in this run)" % (
            WINDOW_SAMPLES)
    peers = {}
    with open(samples) as f:
        for line in f:
            if line.startswith("#") or not line.strip():
                continue
            peer, ms = line.split()
            peers.setdefault(peer, []).append(float(ms))
    if not peers:
        return None, "the read step's window samples (%s is empty)" % WINDOW_SAMPLES
    few = {p: len(xs) for p, xs in peers.items() if len(xs) < CDF_MIN_SAMPLES}
    if few:
        res.setdefault("plot_notes", {})["query_latency_cdf"] = "left out, fewer than %d " \
            "samples: %s" % (CDF_MIN_SAMPLES, ", ".join("%s (%d)" % kv for kv in sorted(few.items())))
        peers = {p: xs for p, xs in peers.items() if p not in few}
        if not peers:
            return None, "the read step's window samples (%s)" % \
                res["plot_notes"].pop("query_latency_cdf")
    dat = path[:-4] + ".dat"
    plots = []
    with open(dat, "w") as o:
        for i, (peer, xs) in enumerate(sorted(peers.items())):
            xs.sort()
            o.write("# %s\n" % peer)
            for j, x in enumerate(xs):
                o.write("%g %g\n" % (x, (j + 1) / len(xs)))
            o.write("\n\n")
            plots.append("'%s' index %d using 1:2 with steps lw 2 title '%s (%d samples)'"
                         % (dat, i, peer, len(xs)))
    note = res.get("plot_notes", {}).get("query_latency_cdf")
    ok = gnuplot("""set title "1-minute window query latency, whole process (%s)%s"
set xlabel 'ms'
set ylabel 'fraction of queries'
set logscale x 10
set yrange [0:1]
set key bottom right
set grid
plot %s
""" % (res["run_id"], "\\n" + note if note else "", ", \\\n     ".join(plots)), path)
    return ok, None


# the capture_overhead plot's bars, in the order the rounds run them: (figure suffix, x label,
# kind: 0 no capture, 1 tracevault, 2 the peer)
CAPTURE_BARS = [("capture_off", "off", 0), ("tracepoint", "tracepoint\\n--pid", 1),
                ("tp_port", "tracepoint\\n--port", 1),
                ("tp_port_server", "tracepoint --port\\n--role server", 1),
                ("sockfilter", "sockfilter\\n--port", 1), ("tcpdump_w", "PEER:\\ntcpdump -w", 2)]


def plot_capture(res, figs, path):
    """nginx req/s per capture mode (median of the rounds, min-max bars), capture off first
    and the peer (tcpdump -w) in its own colour, each bar labelled with its median on / off
    ratio of the same rounds."""
    f = byname(figs.get("capture", []))
    bars = [(i, label, kind, f["nginx_req_per_s_" + key], f.get("capture_on_off_" + key) or
             f.get("peer_%s_on_off" % key))
            for i, (key, label, kind) in enumerate(CAPTURE_BARS)
            if f.get("nginx_req_per_s_" + key, {}).get("value") is not None]
    if not bars or bars[0][2] != 0:
        return None, "the capture step's req/s per mode (skipped or absent in this run)"
    dat = path[:-4] + ".dat"
    with open(dat, "w") as o:
        o.write("# x kind median_req_per_s min max on_off_ratio label\n")
        for x, (_, label, kind, g, r) in enumerate(bars):
            o.write("%d %d %g %g %g %s \"%s\"\n" % (
                x, kind, g["value"], g["min"], g["max"],
                "%.2f" % r["value"] if r else "1.00", label.replace("\\n", " ")))
    xtics = ", ".join("\"%s\" %d" % (label, x) for x, (_, label, _, _, _) in enumerate(bars))
    n = bars[0][3].get("n", 1)
    ok = gnuplot("""set title "nginx req/s by capture mode, wrk -t2 -c50, median of %d rounds (%s)\\n\
labels: median req/s, median of each round's on / off"
set ylabel 'nginx req/s (bars: min-max of the rounds)'
set yrange [0:*]
set offsets 0, 0, graph 0.12, 0
set xrange [-0.6:%g]
set xtics (%s) scale 0
set style fill solid 0.6 border -1
set boxwidth 0.6
set grid y
set bmargin 6
set key at screen 0.5, screen 0.04 center horizontal maxrows 1
plot '%s' using 1:($2==0?$3:1/0) with boxes lc rgb '#9e9e9e' title 'capture off', \\
     '%s' using 1:($2==1?$3:1/0) with boxes lc rgb '#3a78b5' title 'tracevault capture', \\
     '%s' using 1:($2==2?$3:1/0) with boxes lc rgb '#e8871e' \\
         title 'PEER: tcpdump -w (pcap on disk)', \\
     '%s' using 1:3:4:5 with yerrorbars pt 0 lc rgb 'black' lw 1.5 notitle, \\
     '%s' using 1:5:(sprintf("%%.0f\\n%%sx off", $3, stringcolumn(6))) \\
         with labels offset 0,1.6 notitle
""" % (n, res["run_id"], len(bars) - 0.4, xtics, dat, dat, dat, dat, dat), path)
    return ok, None


PLOTS = [
    ("throughput_vs_chunk", plot_throughput,
     "nothing: every figure issue 15 asks for is drawn (chunk sizes 64 KiB ... 4 MiB, "
     "zero-copy | --no-zerocopy x 1 | 4 writers, the ceilings)"),
    ("query_latency_cdf", plot_cdf,
     "nothing (tracevault, SQLite and zstdcat + mawk windows; a peer with fewer than %d "
     "samples is left out and named in its note)" % CDF_MIN_SAMPLES),
    ("capture_overhead", plot_capture,
     "nothing: off, the tracevault modes and the peer tcpdump -w (without tcpdump: no peer bar)"),
]


def table(res):
    lines = ["| step | figure | median | min | max | n | unit |",
             "| --- | --- | ---: | ---: | ---: | ---: | --- |"]

    def num(v):
        return "" if v is None else ("%.4g" % v if abs(v) < 1000 else "%.0f" % v)

    for st in res["steps"]:
        if st.get("skipped"):
            lines.append("| %s | SKIP: %s | | | | | |" % (st["name"], st["skipped"]))
        for g in res["figures"].get(st["name"], []):
            if g.get("config"):  # an ingest sweep point: its own table (ingest_sweep_table)
                continue
            if g.get("skipped"):  # a peer that is not installed: its reason, no number
                lines.append("| %s | %s | SKIP: %s | | | | %s |" % (st["name"], g["name"],
                                                                  g["skipped"], g["unit"]))
                continue
            lines.append("| %s | %s | %s | %s | %s | %s | %s |" % (
                st["name"], g["name"], num(g["value"]), num(g.get("min")), num(g.get("max")),
                g.get("n", ""), g["unit"]))
    return "\n".join(lines)


def ingest_sweep_table(res):
    """The ingest sweep as its own Markdown table, one row per configuration: median [min-max]
    of MB/s, x bound, client and server CPU s/GB (their figures in the JSON carry "config").
    Empty when the run has no sweep."""
    rows = {}  # (mode, writers, chunk) -> the config and its figures
    for g in res["figures"].get("ingest", []):
        c = g.get("config")
        if c:
            key = (c["mode"] != "zerocopy", c["writers"], c["chunk_bytes"])
            rows.setdefault(key, {"c": c, "figs": []})["figs"].append(g)
    if not rows:
        return ""

    def cell(g):
        return "%.4g [%.4g-%.4g]" % (g["value"], g["min"], g["max"]) if g else ""

    n = rows[min(rows)]["figs"][0].get("n", "")
    lines = ["ingest sweep: median [min-max] of %s rounds; x bound = MB/s / min(TCP, disk) of "
             "the same round" % n, "",
             "| mode | writers | chunk | MiB | MB/s | x bound | client s/GB | server s/GB |",
             "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: |"]
    for key in sorted(rows):
        c, figs = rows[key]["c"], rows[key]["figs"]

        def get(suffix):
            return next((g for g in figs if g["name"].endswith(suffix)), None)

        lines.append("| %s | %d | %s | %d | %s | %s | %s | %s |" % (
            c["mode"], c["writers"], size_name(c["chunk_bytes"]), c["mib"], cell(get("_MBps")),
            cell(get("_x_bound")), cell(get("_client_cpu_s_per_GB")),
            cell(get("_server_cpu_s_per_GB"))))
    return "\n".join(lines)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--log", required=True)
    ap.add_argument("--results-dir", required=True)
    ap.add_argument("--data-dir", action="append", default=[])
    ap.add_argument("--command", action="append", default=[])
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--run-id", help="<UTC date>-<host> (default: now, this host)")
    def usage_error(msg):  # one line, exit 2 (argparse's own prints the usage too)
        print("usage: bench/report.py --log LOG --results-dir DIR [...] (--help): %s" % msg,
              file=sys.stderr)
        sys.exit(2)

    ap.error = usage_error
    a = ap.parse_args()
    with open(a.log, errors="replace") as f:
        log = f.read()
    now = datetime.datetime.now(datetime.timezone.utc)
    host = socket.gethostname()
    run_id = a.run_id or "%s-%s" % (now.strftime("%Y-%m-%d"), host)
    src = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    res = {"run_id": run_id, "utc": now.strftime("%Y-%m-%dT%H:%M:%SZ"), "quick": a.quick,
           "machine": machine(a.data_dir), "git": git_info(src), "commands": a.command,
           "env": {k: v for k, v in sorted(os.environ.items()) if k.startswith("TV_BENCH_")},
           "log": os.path.basename(a.log), "steps": [], "figures": {}, "plots": {}}
    done = DONE_RE.search(log)
    res["total_s"] = int(done.group(2)) if done else None
    parsers = dict(PARSERS)
    for k, what, elapsed, text in sections(log):
        name = step_name(what)
        skip = SKIP_RE.search(text)
        figs = parsers[name](text) if name in parsers else []
        for m in FIGURE_RE.finditer(text):
            extra = dict(kv.split("=", 1) for kv in m.group(5).split())
            g = {"name": m.group(2), "value": float(m.group(3)), "unit": m.group(4)}
            g.update({kk: (int(v) if kk == "n" else float(v)) for kk, v in extra.items()})
            figs = [x for x in figs if x["name"] != g["name"]] + [g]
        res["steps"].append({"k": k, "name": name, "what": what, "elapsed_s": elapsed,
                             "skipped": skip.group(1) if skip else None})
        res["figures"][name] = figs
    os.makedirs(a.results_dir, exist_ok=True)
    have_gnuplot = shutil.which("gnuplot") is not None
    for pname, fn, waits in PLOTS:
        path = os.path.join(a.results_dir, "%s-%s.png" % (run_id, pname))
        entry = {"file": os.path.basename(path), "waits_for": waits}
        if not have_gnuplot:
            entry.update({"file": None, "status": "not written: no gnuplot (scripts/deps.sh)"})
        else:
            args = (res, a.results_dir, path) if fn is plot_cdf else (res, res["figures"], path)
            ok, missing = fn(*args)
            if ok is None:
                entry.update({"file": None, "status": "not written: waits for " + missing})
            else:
                entry["status"] = "written" if ok else "gnuplot failed"
        note = res.get("plot_notes", {}).pop(pname, None)  # what a plot left out, and why
        if note:
            entry["note"] = note
        res["plots"][pname] = entry
    res.pop("plot_notes", None)
    samples = os.path.join(a.results_dir, WINDOW_SAMPLES)
    if os.path.exists(samples):  # kept beside the run's JSON, under the run's name
        os.replace(samples, os.path.join(a.results_dir, "%s-%s" % (run_id, WINDOW_SAMPLES)))
        res["samples"] = "%s-%s" % (run_id, WINDOW_SAMPLES)
    out = os.path.join(a.results_dir, run_id + ".json")
    with open(out + ".tmp", "w") as f:
        json.dump(res, f, indent=1)
        f.write("\n")
    os.replace(out + ".tmp", out)
    print("## bench results %s%s\n" % (run_id, " (quick: sizes too small to measure)"
                                       if a.quick else ""))
    print(table(res))
    print()
    sweep = ingest_sweep_table(res)
    if sweep:
        print(sweep)
        print()
    for pname, e in res["plots"].items():
        print("plot %s: %s%s; still missing: %s" % (
            pname, e["status"], " (%s)" % e["file"] if e["file"] else "", e["waits_for"]))
    print("results: %s" % out)
    bad = [p for p, e in res["plots"].items() if e["status"] == "gnuplot failed"]
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
