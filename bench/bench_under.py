#!/usr/bin/python3
"""`make bench`, under-store part (issue 14's benchmark; bench/README.md "Under-store"): the
persist throughput of tracevaultd's cache-through beside a raw `curl` PUT of the same bytes to
the same S3 server in the same round, and the COMMIT latency cache-through vs must-cache.

One real S3 server for the whole run: scripts/s3-ceph.sh's one-node Ceph RGW on loopback
(tvtest.Ceph; the step is skipped, saying why, when Ceph cannot be installed). The data: SEGMENTS
segments of 4 blocks of ~1 MiB (records with 64 KiB paths, codec 0). Each of ROUNDS rounds, in
an order that alternates between rounds so that drift in the shared machine's speed does not
favour one side:
  - raw curl: one curl process PUTs every block file of the round, on one kept-alive
    connection, SigV4 with UNSIGNED-PAYLOAD as tracevaultd signs (the peer a user would script);
  - cache-through: a fresh tracevaultd (release build) with --under (--s3-connections at its
    default, 4, and once more with 1: one block PUT after another); the Python client writes
    the segments one after another and times COMMIT to its reply once the last block is
    acknowledged; persist MiB/s = the server's persisted bytes / its persist seconds (the
    metrics tracevault_server_under_persisted_bytes_total and
    tracevault_server_under_persist_duration_seconds: COMMIT to manifest written, per segment);
  - must-cache: the same without --under (the COMMIT latency the bucket adds to);
  - async-through: --write-type async-through (COMMIT answered at the local commit), and the
    time from the last COMMIT's reply until every segment is in the bucket
    (tracevault_server_under_unpersisted_segments back to 0).
Each figure: median of the rounds with min and max; the ratio persist / raw curl is taken
within a round.

Then the read side: one tracevaultd with --local-bytes just below two segments of 4 blocks of
~1 MiB, so that the older is evicted (its blocks only in the bucket) and the newer local; each
of ROUNDS rounds queries each segment whole QUERIES times (alternating which goes first), timed
from the request to the last record, checking that every query of the evicted one read its 4
blocks back (tracevault_server_under_reads_total) and none of the local one did.

TV_BENCH_QUICK=1: 2 segments, 2 rounds, 5 queries (make test keeps the step working).

Environment: TV_BIN_DIR (bench/run.sh sets it), TV_BENCH_UNDER_SEGMENTS (default 8:
16 took the step to 272 s on an AMD EPYC VM, 2026-12-02, past its share of the 15 minutes),
TV_BENCH_UNDER_ROUNDS (default 5), TV_BENCH_UNDER_QUERIES (default 30)."""
import os
import random
import statistics
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "tests", "integration"))
sys.dont_write_bytecode = True  # no __pycache__ in the source tree's tests/integration/
import tvtest  # noqa: E402
from test_understore import (BASE_NS, START_TIMEOUT_S, make_segment, percentile,  # noqa: E402
                             set_credentials, timed_commit, under_args)
import test_understore_evict as ev  # noqa: E402

QUICK = os.environ.get("TV_BENCH_QUICK") == "1"
SEGMENTS = int(os.environ.get("TV_BENCH_UNDER_SEGMENTS", "2" if QUICK else "8"))
ROUNDS = int(os.environ.get("TV_BENCH_UNDER_ROUNDS", "2" if QUICK else "5"))
QUERIES = int(os.environ.get("TV_BENCH_UNDER_QUERIES", "5" if QUICK else "30"))
GOAL = 0.8  # issue 14: persist >= 0.8x a raw curl PUT of the same bytes
CURL_TIMEOUT_S = 600


def raw_curl(ceph, segs, tmp, tag):
    """MiB/s of one curl process PUTting every block of segs under rawcurl/TAG/."""
    args = ["curl", "-s", "-f", "-K", "-", "--aws-sigv4", "aws:amz:%s:s3" % ceph.region,
            "-H", "x-amz-content-sha256: UNSIGNED-PAYLOAD", "-o", "/dev/null"]
    total = 0
    for sid, blocks, _, _ in segs:
        for bid, data in blocks:
            path = os.path.join(tmp, "%016x.blk" % bid)
            if not os.path.exists(path):
                with open(path, "wb") as f:
                    f.write(data)
            args += ["-T", path, ceph.key_url("rawcurl/%s/%016x/%016x.blk" % (tag, sid, bid))]
            total += len(data)
    t0 = time.monotonic()
    p = subprocess.run(args, input='user = "%s:%s"\n' % (ceph.access_key, ceph.secret_key),
                       capture_output=True, text=True, timeout=CURL_TIMEOUT_S)
    el = time.monotonic() - t0
    if p.returncode != 0:
        raise AssertionError("raw curl exited %d: %s" % (p.returncode, p.stderr.strip()))
    return total / 2**20 / el


def unpersisted(srv):
    return tvtest.Scrape(tvtest.metrics_addr(srv.log())).value(
        "tracevault_server_under_unpersisted_segments")


def tracevaultd(ceph, segs, extra):
    """A fresh server: (COMMIT latencies s, persist MiB/s or None, server CPU s); for
    async-through the persist figure is the seconds from the last reply to all in the
    bucket."""
    srv = tvtest.Server(extra_args=extra + ["--metrics-addr", "127.0.0.1:0"])
    try:
        srv.start(timeout=START_TIMEOUT_S)
        c = tvtest.GrpcClient(srv.addr, timeout_s=120)
        lat = [timed_commit(c, sid, blocks) for sid, blocks, _, _ in segs]
        persist = None
        if "async-through" in extra:
            t0 = time.monotonic()
            tvtest.wait_for(lambda: unpersisted(srv) == 0, "every segment in the bucket",
                            timeout_s=300, interval_s=0.01)
            persist = time.monotonic() - t0
        elif extra:
            scrape = tvtest.Scrape(tvtest.metrics_addr(srv.log()))
            pb = scrape.value("tracevault_server_under_persisted_bytes_total")
            ps = scrape.value("tracevault_server_under_persist_duration_seconds_sum")
            persist = pb / 2**20 / ps
        with open("/proc/%d/stat" % srv.proc.pid) as f:
            fields = f.read().rsplit(")", 1)[1].split()
        cpu = (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
        c.close()
        return lat, persist, cpu
    finally:
        srv.cleanup()


def read_back(ceph):
    """Per round, {"evicted": (p50 ms, p99 ms), "local": (...)} of QUERIES whole-segment
    queries each."""
    rng = random.Random(15)
    segs = [ev.make_segment(rng, i, 4, 16, path_bytes=64 * 1024) for i in range(2)]
    srv = tvtest.Server(extra_args=under_args(ceph, "bench-evict") + [
        "--metrics-addr", "127.0.0.1:0",
        "--local-bytes", str(ev.seg_bytes(segs[0]) + ev.seg_bytes(segs[1]) - 1)])
    rounds = []
    try:
        srv.start(timeout=START_TIMEOUT_S)
        c = tvtest.GrpcClient(srv.addr, timeout_s=120)
        ev.write_all(c, segs)
        assert ev.block_files(srv) == ev.seg_files(segs[1]), "segment 0 not the evicted one"
        for r in range(ROUNDS):
            got = {}
            order = (("evicted", segs[0]), ("local", segs[1]))
            for name, seg in (order if r % 2 == 0 else order[::-1]):
                lat = []
                reads = ev.scrape(srv).value("tracevault_server_under_reads_total")
                for _ in range(QUERIES):
                    t = time.monotonic()
                    recs = c.query(seg[2], seg[3] + 1)
                    lat.append(time.monotonic() - t)
                    assert len(recs) == 64, len(recs)
                n = ev.scrape(srv).value("tracevault_server_under_reads_total") - reads
                assert n == (4 * QUERIES if name == "evicted" else 0), (name, n)
                got[name] = (percentile(lat, 0.5) * 1e3, percentile(lat, 0.99) * 1e3)
            rounds.append(got)
        c.close()
        return rounds, ev.seg_bytes(segs[0])
    finally:
        srv.cleanup()


def spread(xs, fmt="%.1f"):
    return (fmt + " (min " + fmt + ", max " + fmt + ")") % (
        statistics.median(xs), min(xs), max(xs))


def main():
    # the objects of every run stay (4 runs a round): room for them twice over, within the
    # bucket's quota (75% of the memstore, scripts/s3-ceph.sh)
    run_mib = SEGMENTS * 4 * 4.1 * 4 / 3  # 4 runs a round put objects
    try:
        ceph = tvtest.Ceph(memstore_mib=max(1024, int(run_mib * 3 * ROUNDS * 2))).start()
    except tvtest.Unavailable as e:
        print("under-store bench: skipped: %s" % e)
        return 0
    try:
        set_credentials(ceph)
        rng = random.Random(5)
        segs = [make_segment(rng, BASE_NS + (100 + i) * 10**12, 4, 16, path_bytes=64 * 1024)
                for i in range(SEGMENTS)]
        total = sum(len(d) for s in segs for _, d in s[1])
        print("under-store bench: %d segments of 4 blocks (%.1f MiB) per run, %d rounds, "
              "Ceph RGW %s (memstore, loopback)" % (SEGMENTS, total / 2**20, ROUNDS,
                                                    ceph.endpoint))
        print("%-6s %11s %9s %7s %11s %7s %22s %22s %10s" % (
            "round", "curl MiB/s", "persist", "ratio", "persist 1c", "ratio",
            "COMMIT p50/p99 c-t ms", "COMMIT p50/p99 m-c ms", "CPU c-t/m-c s"))
        curl, persist, ratio, persist1, ratio1 = [], [], [], [], []
        ct50, ct99, mc50, mc99, at50, at99, atlag = [], [], [], [], [], [], []
        with tempfile.TemporaryDirectory(prefix="tv-bench-under-") as tmp:
            raw_curl(ceph, segs[:1], tmp, "warm-up")  # RGW's first PUTs are slow: not counted
            for r in range(ROUNDS):
                order = ("curl", "ct", "ct1", "mc", "at")
                if r % 2:
                    order = order[::-1]
                got = {}
                for what in order:
                    if what == "curl":
                        got[what] = raw_curl(ceph, segs, tmp, "r%d" % r)
                    elif what == "ct":
                        got[what] = tracevaultd(ceph, segs, under_args(ceph, "bench/r%d" % r))
                    elif what == "ct1":
                        got[what] = tracevaultd(ceph, segs, under_args(ceph, "bench1/r%d" % r) +
                                                ["--s3-connections", "1"])
                    elif what == "at":
                        got[what] = tracevaultd(ceph, segs, under_args(ceph, "bench-a/r%d" % r)
                                                + ["--write-type", "async-through"])
                    else:
                        got[what] = tracevaultd(ceph, segs, [])
                (lat_ct, p, cpu_ct), (lat_mc, _, cpu_mc) = got["ct"], got["mc"]
                curl.append(got["curl"])
                persist.append(p)
                ratio.append(p / got["curl"])
                persist1.append(got["ct1"][1])
                ratio1.append(persist1[-1] / got["curl"])
                ct50.append(percentile(lat_ct, 0.5) * 1e3)
                ct99.append(percentile(lat_ct, 0.99) * 1e3)
                mc50.append(percentile(lat_mc, 0.5) * 1e3)
                mc99.append(percentile(lat_mc, 0.99) * 1e3)
                at50.append(percentile(got["at"][0], 0.5) * 1e3)
                at99.append(percentile(got["at"][0], 0.99) * 1e3)
                atlag.append(got["at"][1])
                print("%-6d %11.1f %9.1f %6.2fx %11.1f %6.2fx %11.1f / %-8.1f %11.1f / %-8.1f "
                      "%5.2f/%.2f" % (r + 1, curl[-1], p, ratio[-1], persist1[-1], ratio1[-1],
                                      ct50[-1], ct99[-1], mc50[-1], mc99[-1], cpu_ct, cpu_mc))
        print("persist (cache-through) / raw curl PUT, same round: median %s, goal >= %.1fx"
              % (spread(ratio, "%.2fx"), GOAL))
        print("the same with --s3-connections 1: median %s" % spread(ratio1, "%.2fx"))
        print("persist MiB/s: %s (1 connection: %s); raw curl MiB/s: %s"
              % (spread(persist), spread(persist1), spread(curl)))
        print("COMMIT to reply, cache-through: p50 %s ms, p99 %s ms; must-cache: p50 %s ms, "
              "p99 %s ms" % (spread(ct50), spread(ct99), spread(mc50), spread(mc99)))
        print("COMMIT to reply, async-through: p50 %s ms, p99 %s ms; every segment in the "
              "bucket %s s after the last reply" % (spread(at50), spread(at99),
                                                   spread(atlag, "%.2f")))
        rounds, nbytes = read_back(ceph)
        print("query of one whole segment (4 blocks, %.1f MiB), %d queries a round, %d rounds:"
              % (nbytes / 2**20, QUERIES, ROUNDS))
        for name in ("evicted", "local"):
            print("  %-7s p50 %s ms, p99 %s ms" % (
                name, spread([g[name][0] for g in rounds]), spread([g[name][1] for g in rounds])))
        print("  evicted / local p50, same round: median %s" % spread(
            [g["evicted"][0] / g["local"][0] for g in rounds], "%.1fx"))
        return 0
    finally:
        ceph.stop()
        ceph.cleanup()


if __name__ == "__main__":
    sys.exit(main())
