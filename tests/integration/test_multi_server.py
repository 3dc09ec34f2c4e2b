"""Several real tracevaultd behind one client: `tracevault query --server A,B,C` merges the
streams in ts order (limit over the merge, a server's skipped block named), the pipeline (driven by
tests/tools/tv_load) spreads blocks by tv_place_block, a stopped server fails only the segments
placed on it, and records cross between our C code and an independent grpcio client."""
import json
import os
import random
import re
import shutil
import signal
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import tvtest  # noqa: E402

BASE_NS = 1767225600 * 10**9
ALL = ("0", str(2**63))


def put(addr, records, tmp):
    path = os.path.join(tmp, "put-%d.jsonl" % random.getrandbits(32))
    with open(path, "w") as f:
        for r in records:
            f.write(json.dumps(r) + "\n")
    tvtest.run(["put", "--server", addr, path], check=True)


def query_lines(servers, frm=ALL[0], to=ALL[1], extra=()):
    p = tvtest.run(["query", "--server", servers, "--from", frm, "--to", to] + list(extra),
                   check=True)
    return [json.loads(line) for line in p.stdout.splitlines()]


def expect_fail(args, message, exact=True):
    p = tvtest.run(args, timeout=60)
    lines = p.stderr.splitlines()
    ok = p.returncode == 1 and len(lines) == 1 and p.stdout == "" and \
        (lines[0] == message if exact else lines[0].startswith(message))
    assert ok, "tracevault %s: want exit 1 and %r, got %d %r stdout %r" % (
        " ".join(args), message, p.returncode, p.stderr, p.stdout[:200])
    return lines[0]


def test_query_fanout_merges_in_ts_order(srvs, tmp):
    """Interleaved ts over three servers, a ts held by all three, and an empty server: the
    merged answer is the reference order (ts, then server list order) and --limit cuts it."""
    a, b, c = srvs
    per = {0: [], 1: [], 2: []}
    base = BASE_NS + 10**12
    for i in range(3000):  # several response batches per server
        k = random.choice((0, 0, 1, 2))
        per[k].append({"ts_ns": base + 10 * i, "path": "/m/%d/%d" % (k, i)})
    for k in range(3):
        per[k].append({"ts_ns": base + 10**9, "path": "/tie/%d" % k})
    for k, srv in enumerate(srvs):
        put(srv.addr, per[k], tmp)
    want = sorted(((r["ts_ns"], k, r["path"]) for k in range(3) for r in per[k]))
    frm, to = str(base), str(base + 2 * 10**9)
    servers = ",".join(s.addr for s in srvs)
    got = [(r["ts_ns"], r["path"]) for r in query_lines(servers, frm, to)]
    assert got == [(t, p) for t, _, p in want], "merge order differs (%d vs %d records)" % (
        len(got), len(want))
    # the list order decides ties: C,A,B puts /tie/2 first
    got = [r["path"] for r in query_lines("%s,%s,%s" % (c.addr, a.addr, b.addr), frm, to)
           if r["path"].startswith("/tie/")]
    assert got == ["/tie/2", "/tie/0", "/tie/1"], got
    for limit in (1, 7, 2500, 3003, 5000):
        got = [(r["ts_ns"], r["path"]) for r in query_lines(servers, frm, to,
                                                           ["--limit", str(limit)])]
        assert got == [(t, p) for t, _, p in want][:limit], "limit %d" % limit
    # a window holding records of one server only, and an empty one
    one = per[1][5]["ts_ns"]
    assert [r["path"] for r in query_lines(servers, str(one), str(one + 1))] == \
        [per[1][5]["path"]]
    assert query_lines(servers, str(base + 5), str(base + 6)) == []


def test_query_fanout_names_the_failing_server(srvs, tmp):
    a, b, c = srvs
    servers = ",".join(s.addr for s in srvs)
    expect_fail(["query", "--server", "%s,127.0.0.1:1,%s" % (a.addr, c.addr), "--from", "0"],
                "tracevault: cannot reach server 127.0.0.1:1: connection refused")
    # an empty entry is a usage error, worded and exiting as in capture and put
    bad = "%s,,%s" % (a.addr, c.addr)
    p = tvtest.run(["query", "--server", bad, "--from", "0"], timeout=60)
    assert p.returncode == 2 and p.stdout == "" and p.stderr == (
        "tracevault: invalid --server: '%s' (HOST:PORT[,HOST:PORT...], no empty entry)\n"
        % bad), (p.returncode, p.stderr)
    # a corrupt block on B: DATA_LOSS from B only, the warning names B and the block, the
    # other servers' records (none here) are all printed, exit 3 (PROTOCOL.md, Query)
    base = BASE_NS + 2 * 10**12
    before = tvtest.block_files(b.data_dir)
    put(b.addr, [{"ts_ns": base + i, "path": "/corrupt-me/%d" % i} for i in range(200)], tmp)
    new = tvtest.block_files(b.data_dir) - before
    assert len(new) == 1, new
    victim_id = new.pop()
    victim = tvtest.block_path(b.data_dir, victim_id)
    with open(victim, "r+b") as f:
        f.seek(100)
        byte = f.read(1)
        f.seek(100)
        f.write(bytes([byte[0] ^ 0xFF]))
    p = tvtest.run(["query", "--server", servers, "--from", str(base), "--to", str(base + 1000)],
                   timeout=60)
    assert p.returncode == 3 and p.stdout == "" and p.stderr.startswith(
        "tracevault: warning: server %s skipped block %016x " % (b.addr, victim_id)) and \
        "DATA_LOSS: " in p.stderr, (p.returncode, p.stderr)
    # A and C alone still answer; B's damaged block is quarantined, so B answers too
    assert query_lines("%s,%s" % (a.addr, c.addr), str(base), str(base + 1000)) == []
    assert query_lines(servers, str(base), str(base + 1000)) == []
    assert not os.path.exists(victim)


def test_pipeline_spreads_blocks_and_query_merges(srvs, tmp):
    """tv_load over A,B,C: each block lands on tv_place_block(id, 3); all servers get some;
    the fan-out query returns exactly the driver's records in ts order."""
    servers = ",".join(s.addr for s in srvs)
    before = [set(tvtest.catalog_blocks(s.data_dir)) for s in srvs]
    ld = tvtest.Loader(servers, 3000, ["--block-bytes", "65536", "--pad-bytes", "100"], tag=11)
    try:
        want = []
        for _ in range(4):
            seg = ld.segment()
            assert seg["ok"] and seg["refused"] == 0, seg
            want += seg["seqs"]
        st = ld.stats()
        assert st["segments_committed"] == 4 and st["segments_failed"] == 0, st
        assert st["records_committed"] == len(want) == st["records_in"], st
        assert st["cache_bytes_used"] == 0, st
    finally:
        ld.cleanup()
    new_blocks = 0
    for k, s in enumerate(srvs):
        blocks = set(tvtest.catalog_blocks(s.data_dir)) - before[k]
        assert blocks, "server %d got no block" % k
        wrong = [b for b in blocks if tvtest.place_block(b, 3) != k]
        assert not wrong, "server %d holds blocks placed elsewhere: %r" % (k, wrong)
        new_blocks += len(blocks)
    assert new_blocks == st["blocks_committed"], (new_blocks, st)
    keys, ts = tvtest.query_keys(servers, ld.ts_of(0), ld.ts_of(10**9))
    assert keys == [(11, s) for s in want], "query differs from the driver's reference"
    assert ts == sorted(ts)


def test_stopped_server_fails_only_its_segments(srvs, tmp):
    """B stopped: one-block segments placed on B fail (counted, logged, cleanup error for B
    reported), the others commit; the failed records are nowhere; B restarted answers again."""
    a, b, c = srvs
    servers = ",".join(s.addr for s in srvs)
    # one block per segment: each segment touches exactly one server
    ld = tvtest.Loader(servers, 50, ["--block-bytes", str(4 << 20), "--pad-bytes", "20",
                                     "--write-timeout-ms", "2500",
                                     "--delete-timeout-ms", "1000"], tag=12)
    try:
        assert ld.segment()["ok"]
        b.listen = b.addr
        assert b.stop() == 0
        order = [ld.segment(timeout=60) for _ in range(24)]
        st = ld.stats()
        fails = ld.failure_lines()
    finally:
        ld.cleanup()
    committed = [seg for seg in order if seg["ok"]]
    failed = [seg for seg in order if not seg["ok"]]
    first_fail = next((i for i, seg in enumerate(order) if not seg["ok"]), None)
    assert first_fail is not None and any(seg["ok"] for seg in order[first_fail:]), \
        "24 one-block segments should hit B, and later ones A or C: %r" % (
            ["ok" if seg["ok"] else "failed" for seg in order])
    assert st["segments_failed"] == len(failed) == len(fails), (st, fails)
    assert st["records_dropped_failed"] == 50 * len(failed), st
    assert st["cache_bytes_used"] == 0, st
    by_ts = {int(f[4]): f for f in fails}
    for seg in failed:
        f = by_ts.get(ld.ts_of(seg["first"]))
        assert f, "no failure line with ts from %d: %r" % (ld.ts_of(seg["first"]), fails)
        _, reason, nblocks, nrecs, t0, t1, cleanup = f
        assert (int(nblocks), int(nrecs)) == (1, 50), f
        assert int(t1) == ld.ts_of(seg["first"] + 49), f
        assert b.addr in reason or b.addr in cleanup, "failure does not name B: %r" % (f,)
        assert cleanup != "ok" and not cleanup.startswith("ok"), \
            "Delete on a stopped server cannot succeed, yet cleanup says %r" % cleanup
    # with B down the fan-out query refuses to answer half the data, naming B
    expect_fail(["query", "--server", servers, "--from", "0"],
                "tracevault: cannot reach server %s: connection refused" % b.addr)
    b.start()  # same port, same data dir
    assert tvtest.tmp_files(b.data_dir) == []
    keys, _ = tvtest.query_keys(servers, ld.ts_of(0), ld.ts_of(10**9))
    want = [(12, s) for s in range(50)] + [(12, s) for seg in committed for s in seg["seqs"]]
    assert keys == sorted(want), "query over A,B,C differs from the committed reference"
    for seg in failed:
        keys, _ = tvtest.query_keys(servers, ld.ts_of(seg["first"]),
                                    ld.ts_of(seg["first"] + seg["count"]))
        assert keys == [], "records of failed segment %r are visible" % seg


def segment_rows(srv, sid):
    """Block ids srv's catalog holds for segment sid."""
    return {b for b, s in tvtest.catalog_blocks(srv.data_dir).items() if s == sid}


def test_multi_block_segment_fails_on_every_server(srvs, tmp):
    """A segment of ~25 blocks over A,B,C while B is stopped (SIGSTOP: it accepts the
    connection, then never answers): A and C get their blocks and FLUSH them, but COMMIT
    waits for every server's FLUSH reply, so when the write times out no server has committed
    anything of it, at any moment; afterwards no server holds a block, catalog row or temp
    file of it, and the segments before and after are intact."""
    a, b, c = srvs
    servers = ",".join(s.addr for s in srvs)
    ld = tvtest.Loader(servers, 8000, ["--block-bytes", "65536", "--pad-bytes", "100",
                                       "--write-timeout-ms", "3000",
                                       "--delete-timeout-ms", "1000"], tag=14)
    committed = []
    try:
        seg = ld.segment()
        assert seg["ok"], seg
        committed += seg["seqs"]
        before = [set(tvtest.catalog_blocks(s.data_dir)) for s in srvs]
        b.proc.send_signal(signal.SIGSTOP)
        try:
            ld.send("segment")
            answer, polls = None, 0
            while answer is None:  # until the segment's answer: A and C commit nothing of it
                for k in (0, 2):
                    new = set(tvtest.catalog_blocks(srvs[k].data_dir)) - before[k]
                    assert not new, "server %d committed blocks %r of a segment still waiting " \
                        "for B's FLUSH" % (k, sorted(new))
                polls += 1
                answer = ld.poll_answer()
                time.sleep(0.01)
        finally:
            b.proc.send_signal(signal.SIGCONT)
        failed = tvtest.Loader.parse_segment(answer)
        assert not failed["ok"], "a segment with blocks on a stopped server committed"
        assert polls > 10, "the segment ended too fast to have waited for B (%d polls)" % polls
        fails = ld.failure_lines()
        assert len(fails) == 1, ld.stderr_text()
        sid_hex, reason, nblocks, nrecs, _, _, cleanup = fails[0]
        sid = int(sid_hex, 16)
        assert int(nblocks) >= 20 and int(nrecs) == failed["count"], fails[0]
        # every stream waited: whichever hit the write deadline first is the reason
        assert re.match(r"^127\.0\.0\.1:\d+: DEADLINE_EXCEEDED: ", reason), reason
        assert cleanup.startswith("1 errors: delete on %s: " % b.addr), cleanup
        for k in (0, 2):  # A and C took part: they opened the segment, never committed it
            lines = tvtest.segment_log_lines(srvs[k].log(), sid)
            assert any(line.endswith(" opened") for line in lines), (k, lines)
            assert not any(" committed: " in line for line in lines), (k, lines)
        seg = ld.segment(500)  # the next segment commits on all three again
        assert seg["ok"], seg
        committed += seg["seqs"]
    finally:
        ld.cleanup()
    for k, s in enumerate(srvs):
        tvtest.wait_for(lambda: tvtest.tmp_files(s.data_dir) == [],
                        "server %d's tmp to be empty" % k, 10)
        assert segment_rows(s, sid) == set(), "server %d keeps blocks of failed segment" % k
        assert tvtest.block_files(s.data_dir) == set(tvtest.catalog_blocks(s.data_dir)), k
        assert not any(" committed: " in line for line in tvtest.segment_log_lines(s.log(), sid))
    keys, _ = tvtest.query_keys(servers, ld.ts_of(0), ld.ts_of(10**9))
    assert keys == [(14, q) for q in sorted(committed)], \
        "query over A,B,C differs from the committed segments (%d vs %d)" % (len(keys),
                                                                           len(committed))


def test_interop_with_grpcio(srvs, tmp):
    """grpcio writes -> `tracevault query` reads (fan-out); tv_load writes -> grpcio reads."""
    grpc, pb = tvtest.grpc_modules()
    a, b, c = srvs
    base = BASE_NS + 3 * 10**12
    cl = tvtest.GrpcClient(c.addr)
    try:
        recs = [pb.TraceRecord(ts_ns=base + 3 * i, end_ns=base + 3 * i + 7, latency_ns=7,
                               pid=4000 + i, comm="py", local="127.0.0.1:80",
                               remote="127.0.0.1:9999", method="PUT", path="/py/%d" % i,
                               status=201, req_body_bytes=i, resp_body_bytes=2 * i,
                               trace_id="%032x" % (i + 1), span_id="%016x" % (i + 2),
                               flags=i % 4, role=("server", "client")[i % 2],
                               host="h%d.example" % (i % 3), http_version="1.%d" % (i % 2))
                for i in range(500)]
        last = cl.write_segment(random.getrandbits(63) | 1,
                                [(random.getrandbits(63) | 1, recs[:300]),
                                 (random.getrandbits(63) | 1, recs[300:])])
        assert last.committed, last
        got = query_lines(",".join(s.addr for s in srvs), str(base), str(base + 10**6))
        fields = ["ts_ns", "end_ns", "latency_ns", "pid", "comm", "local", "remote", "method",
                  "path", "status", "req_body_bytes", "resp_body_bytes", "trace_id", "span_id",
                  "flags", "role", "host", "http_version"]
        want = [{f: getattr(r, f) for f in fields} for r in recs]
        assert got == want, "tracevault query differs from what grpcio wrote"
    finally:
        cl.close()
    ld = tvtest.Loader(a.addr, 700, ["--pad-bytes", "30"], tag=13)
    try:
        seg = ld.segment()
        assert seg["ok"], seg
    finally:
        ld.cleanup()
    cl = tvtest.GrpcClient(a.addr)
    try:
        got = cl.query(ld.ts_of(0), ld.ts_of(10**6))
    finally:
        cl.close()
    assert [(r.ts_ns, tvtest.loader_path_key(r.path), r.pid, r.method, r.status) for r in got] \
        == [(ld.ts_of(s), (13, s), s, "GET", 200) for s in range(700)], "grpcio read differs"


def main():
    random.seed(int(os.environ.get("TV_TEST_SEED", "5")))
    only = sys.argv[1:]
    tests = tvtest.cases(globals(), only)
    results = tvtest.Results(len(tests))
    tmp = tempfile.mkdtemp(prefix="tv-multi-")
    srvs = [tvtest.Server() for _ in range(3)]
    try:
        for s in srvs:
            s.start()
        for t in tests:
            results.run(t, srvs, tmp)
            for k, s in enumerate(srvs):
                if s.proc.poll() is not None:
                    print("server %d exited %s; log:\n%s" % (k, s.proc.returncode, s.log()))
                    s.start()
        for k, s in enumerate(srvs):
            rc = s.stop()
            if rc != 0:
                results.fail("server %d exit status %d after SIGTERM:\n%s" % (k, rc, s.log()))
    finally:
        for s in srvs:
            s.cleanup()
        shutil.rmtree(tmp, ignore_errors=True)
    return results.exit_code()


if __name__ == "__main__":
    sys.exit(main())
