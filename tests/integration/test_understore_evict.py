"""Eviction (tracevaultd --local-bytes) and read-back of evicted blocks from the under-store
(issue 14, server/under/UNDERSTORE.md "Eviction and read-back") against a real S3 server:
scripts/s3-ceph.sh's one-node Ceph with a RADOS Gateway on loopback (tvtest.Ceph), started once
for the file and always stopped; the file SKIPs with the reason only if Ceph cannot be installed.

Cases: read-back alone (segments marked evicted in the catalog and their files removed while
the server is down: the restarted server keeps their rows and serves them from S3, exact);
eviction (N segments cache-through with a --local-bytes that evicts most: exactly the segments
a model of the pass predicts lose their files in blocks/, the evicted metrics count exactly
them, `tracevault query` of the full range and of windows, forward and reverse, prints exactly
what a must-cache server given the same data prints, also after a restart); radosgw stopped (a
query of an evicted range fails UNAVAILABLE naming the S3 request, a local range still answers,
the retries and failure are counted exactly; radosgw back: the evicted range answers again);
unpersisted segments (committed before --under) are never evicted.

bench/bench_under.py (make bench) measures query latency of an evicted vs a local segment
with this file's helpers."""
import json
import os
import random
import re
import signal
import sqlite3
import subprocess
import sys
import threading
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import tvtest  # noqa: E402
from tvtest.blocks import encode_block  # noqa: E402

BASE_NS = 1_764_000_000 * 10**9  # 2025-11-24T16:00:00Z
START_TIMEOUT_S = 60
SEG_SPACING_NS = 10**12  # segment i's records start at BASE_NS + i * this
LOW_WATER_DIV = 64  # server/evict.h TV_EVICT_LOW_WATER_DIV
READ_ATTEMPTS = 3  # server/under/read.h TV_UNDER_READ_ATTEMPTS
LOW_SPEED_TIME_S = 5  # server/under/read.h TV_UNDER_READ_LOW_SPEED_TIME_S


def under_args(ceph, prefix):
    return ["--under", "s3://%s/%s" % (ceph.bucket, prefix), "--s3-endpoint", ceph.endpoint,
            "--s3-region", ceph.region]


def set_credentials(ceph):
    os.environ["AWS_ACCESS_KEY_ID"] = ceph.access_key
    os.environ["AWS_SECRET_ACCESS_KEY"] = ceph.secret_key


def make_segment(rng, i, nblocks, records_per_block, path_bytes=200):
    """(sid, [(bid, bytes)], first ts, newest ts) of segment i: records with random paths (so
    the blocks do not compress to nothing)."""
    sid = rng.getrandbits(63) | 1
    ts = BASE_NS + i * SEG_SPACING_NS
    first, blocks = ts, []
    for _ in range(nblocks):
        recs = [tvtest.trace_record(ts + k, pid=7, path="/" + "%x" % rng.getrandbits(4 * path_bytes))
                for k in range(records_per_block)]
        ts += records_per_block
        bid = rng.getrandbits(64) | 1
        blocks.append((bid, encode_block(bid, recs)))
    return sid, blocks, first, ts - 1


def seg_bytes(seg):
    return sum(len(d) for _, d in seg[1])


def keeps_local(segs):
    """A --local-bytes whose low-water mark (server/evict.h) still holds segs whole: a pass
    evicts every older persisted segment and none of these."""
    return sum(seg_bytes(s) for s in segs) * LOW_WATER_DIV // (LOW_WATER_DIV - 1) + \
        LOW_WATER_DIV


def block_files(srv):
    return set(os.listdir(os.path.join(srv.data_dir, "blocks")))


def seg_files(seg):
    return {"%016x-%016x.tvb" % (seg[0], bid) for bid, _ in seg[1]}


def model_pass(segs, committed, persisted, evicted, local_bytes):
    """One pass of server/evict.c over the committed indexes: adds what it evicts to evicted."""
    target = local_bytes - local_bytes // LOW_WATER_DIV
    if sum(seg_bytes(segs[j]) for j in committed) <= local_bytes:
        return
    local = sum(seg_bytes(segs[j]) for j in committed if j not in evicted)
    if local <= local_bytes:
        return
    # oldest first: by newest record, then segment id
    for j in sorted(committed, key=lambda j: (segs[j][3], segs[j][0])):
        if local <= target:
            break
        if j in persisted and j not in evicted:
            evicted.add(j)
            local -= seg_bytes(segs[j])


def model_evictions(segs, persisted, local_bytes):
    """The segments a pass after each commit evicts: segs in commit order, each its own
    commit group; persisted: the set of indexes with an under_persisted row. Returns the set
    of evicted indexes."""
    evicted = set()
    for i in range(len(segs)):
        model_pass(segs, list(range(i + 1)), persisted, evicted, local_bytes)
    return evicted


def cli_query(addr, frm, to, reverse=False):
    args = ["query", "--server", addr, "--from", str(frm), "--to", str(to), "--format", "jsonl"]
    if reverse:
        args.append("--reverse")
    return tvtest.run(args, timeout=120)


def scrape(srv):
    """The metrics of the server's current run (its log holds every run's address)."""
    return tvtest.Scrape(tvtest.METRICS_LINE_RE.findall(srv.log())[-1])


def write_all(c, segs):
    for sid, blocks, _, _ in segs:
        r = c.write_encoded(sid, blocks, chunk_bytes=64 * 1024)
        assert r.committed, r


def windows(segs):
    """The full range and windows across evicted/local boundaries, inside one block, empty."""
    lo, hi = segs[0][2], segs[-1][3] + 1
    mid = segs[len(segs) // 2]
    return [(lo, hi), (lo, segs[1][3] + 1), (segs[1][2] + 5, segs[-2][2] + 7),
            (mid[2] + 3, mid[2] + 40), (segs[-1][2], hi), (hi, hi + 10**9)]


def test_read_back(ceph):
    """Read-back alone: segments whose rows say evicted and whose files are gone are served
    from S3, exact, and the restarted server kept their rows (recovery)."""
    set_credentials(ceph)
    rng = random.Random(11)
    srv = tvtest.Server(extra_args=under_args(ceph, "readback") + ["--metrics-addr",
                                                                    "127.0.0.1:0"])
    try:
        srv.start(timeout=START_TIMEOUT_S)
        c = tvtest.GrpcClient(srv.addr)
        segs = [make_segment(rng, i, 2, 40) for i in range(3)]
        write_all(c, segs)
        want = sorted(r.SerializeToString() for r in c.query(BASE_NS, BASE_NS + 10**15))
        c.close()
        assert srv.stop() == 0
        db = sqlite3.connect(os.path.join(srv.data_dir, "catalog.db"))
        rows = db.execute("SELECT segment_id, oldest_ts_ns, evicted FROM under_persisted "
                          "ORDER BY oldest_ts_ns").fetchall()
        assert [(r[0] & (2**64 - 1), r[1], r[2]) for r in rows] == \
            [(s[0], s[2], 0) for s in segs], rows
        with db:
            db.execute("UPDATE under_persisted SET evicted = 1 WHERE segment_id IN (?, ?)",
                       (segs[0][0], segs[2][0]))
        db.close()
        for s in (segs[0], segs[2]):
            for f in seg_files(s):
                os.unlink(os.path.join(srv.data_dir, "blocks", f))
        srv.start(timeout=START_TIMEOUT_S)
        assert "recovery: 4 blocks of evicted segments are in the under-store" in srv.log(), \
            srv.log()
        c = tvtest.GrpcClient(srv.addr)
        got = sorted(r.SerializeToString() for r in c.query(BASE_NS, BASE_NS + 10**15))
        assert got == want, "records read back differ"
        m = scrape(srv)
        assert m.value("tracevault_server_under_reads_total") == 4
        assert m.value("tracevault_server_under_read_bytes_total") == \
            seg_bytes(segs[0]) + seg_bytes(segs[2])
        assert m.value("tracevault_server_under_read_failures_total") == 0
        assert block_files(srv) == seg_files(segs[1]), "read-back must not re-cache"
        c.close()
        print("  %d records, 4 blocks read back from S3" % len(got))
    finally:
        srv.cleanup()


def test_evict(ceph):
    """N segments cache-through, --local-bytes evicting most: exactly the predicted segments
    lose their files, the metrics count them, and every query prints what a must-cache server
    prints for the same data, before and after a restart."""
    set_credentials(ceph)
    rng = random.Random(12)
    segs = [make_segment(rng, i, 2, 60) for i in range(10)]
    sizes = [seg_bytes(s) for s in segs]
    local_bytes = sum(sizes[-3:])  # about three segments stay
    evicted = model_evictions(segs, set(range(len(segs))), local_bytes)
    assert 5 <= len(evicted) < len(segs) - 1, (evicted, sizes, local_bytes)
    ref = tvtest.Server()
    srv = tvtest.Server(extra_args=under_args(ceph, "evict") + [
        "--metrics-addr", "127.0.0.1:0", "--local-bytes", str(local_bytes)])
    try:
        ref.start(timeout=START_TIMEOUT_S)
        srv.start(timeout=START_TIMEOUT_S)
        for s in (ref, srv):
            c = tvtest.GrpcClient(s.addr)
            write_all(c, segs)
            c.close()
        files = block_files(srv)
        for i, s in enumerate(segs):
            if i in evicted:
                assert not (seg_files(s) & files), ("segment %d not evicted" % i, files)
            else:
                assert seg_files(s) <= files, ("segment %d evicted" % i, files)
        assert files == set().union(*(seg_files(s) for i, s in enumerate(segs)
                                      if i not in evicted)), files
        m = scrape(srv)
        assert m.value("tracevault_server_under_evicted_segments_total") == len(evicted)
        assert m.value("tracevault_server_under_evicted_bytes_total") == \
            sum(sizes[i] for i in evicted)
        assert m.value("tracevault_server_under_reads_total") == 0
        wins = windows(segs)
        for run in ("serving", "restarted"):
            for frm, to in wins:
                for rev in (False, True):
                    a, b = cli_query(ref.addr, frm, to, rev), cli_query(srv.addr, frm, to, rev)
                    assert a.returncode == 0 and b.returncode == 0, (a, b)
                    assert a.stdout == b.stdout, ("differs", frm, to, rev)
            # Summary reads evicted blocks back too: the same answer as must-cache's
            sums = []
            for s in (ref, srv):
                c = tvtest.GrpcClient(s.addr)
                sums.append(c.summary(c.pb.SummaryRequest(
                    from_ns=wins[0][0], to_ns=wins[0][1], by=c.pb.GROUP_BY_PATH),
                    timeout=60))
                c.close()
            assert sums[0].records == sums[1].records == 1200 and not sums[1].skipped, sums[1]
            assert sums[0].SerializeToString() == sums[1].SerializeToString()
            full = cli_query(srv.addr, wins[0][0], wins[0][1]).stdout.splitlines()
            assert len(full) == 10 * 2 * 60, len(full)
            assert [json.loads(x)["ts_ns"] for x in full] == \
                [s[2] + k for s in segs for k in range(120)]
            reads = scrape(srv).value("tracevault_server_under_reads_total")
            assert reads > 0 and scrape(srv).value(
                "tracevault_server_under_read_failures_total") == 0
            print("  %s: %d of %d segments evicted, %d queries equal to must-cache's, %d "
                  "blocks read back" % (run, len(evicted), len(segs), 2 * len(wins) + 1, reads))
            if run == "serving":
                assert srv.stop() == 0
                srv.start(timeout=START_TIMEOUT_S)
                assert block_files(srv) == files
    finally:
        srv.cleanup()
        ref.cleanup()


def test_rgw_stopped(ceph):
    """radosgw stopped: a query of an evicted range fails UNAVAILABLE naming the S3 request
    (after TV_UNDER_READ_ATTEMPTS, each retry counted), a local range still answers; radosgw
    back: the evicted range answers again, exact."""
    set_credentials(ceph)
    rng = random.Random(13)
    segs = [make_segment(rng, i, 1, 50) for i in range(4)]
    local_bytes = seg_bytes(segs[-1]) + seg_bytes(segs[-2])
    evicted = model_evictions(segs, set(range(4)), local_bytes)
    assert evicted == {0, 1}, evicted
    srv = tvtest.Server(extra_args=under_args(ceph, "rgwstop-evict") + [
        "--metrics-addr", "127.0.0.1:0", "--local-bytes", str(local_bytes)])
    try:
        srv.start(timeout=START_TIMEOUT_S)
        c = tvtest.GrpcClient(srv.addr)
        write_all(c, segs)
        want_old = [r.SerializeToString() for r in c.query(segs[0][2], segs[1][3] + 1)]
        assert len(want_old) == 100
        ceph.rgw_stop()
        try:
            recs, _, code, details, _ = c.query_all(segs[0][2], segs[1][3] + 1)
            assert code == c.grpc.StatusCode.UNAVAILABLE, (code, details)
            assert recs == [], len(recs)
            assert "under-store" in details and "GET s3://%s/rgwstop-evict/v1/" % ceph.bucket \
                in details and "(evicted)" in details and \
                "(%d attempts)" % READ_ATTEMPTS in details, details
            p = cli_query(srv.addr, segs[0][2], segs[1][3] + 1)
            assert p.returncode == 1 and "s3://" in p.stderr and p.stdout == "", p
            print("  radosgw stopped: %s; the CLI: %s" % (code, p.stderr.strip()))
            local = c.query(segs[2][2], segs[3][3] + 1)
            assert len(local) == 100, len(local)
            try:
                c.summary(c.pb.SummaryRequest(from_ns=segs[0][2], to_ns=segs[1][3] + 1,
                                              by=c.pb.GROUP_BY_PATH), timeout=60)
                raise AssertionError("Summary of an evicted range answered without S3")
            except c.grpc.RpcError as e:
                assert e.code() == c.grpc.StatusCode.UNAVAILABLE and "GET s3://" in \
                    e.details(), (e.code(), e.details())
            m = scrape(srv)
            assert m.value("tracevault_server_under_read_failures_total") == 3
            assert m.value("tracevault_server_under_read_retries_total") == \
                3 * (READ_ATTEMPTS - 1)
            assert m.value("tracevault_server_under_reads_total") == 2  # want_old's
        finally:
            ceph.rgw_start()
        got = [r.SerializeToString() for r in c.query(segs[0][2], segs[1][3] + 1)]
        assert got == want_old
        assert scrape(srv).value("tracevault_server_under_reads_total") == 4
        c.close()
    finally:
        srv.cleanup()


def test_rgw_hung(ceph):
    """radosgw stopped with SIGSTOP (connections accepted, nothing answered): a query of an
    evicted range fails UNAVAILABLE after the reader's own bounds (3 attempts of
    TV_UNDER_READ_LOW_SPEED_TIME_S, not the persister's 30 s each), naming the GET; after
    SIGCONT it answers again."""
    set_credentials(ceph)
    rng = random.Random(21)
    segs = [make_segment(rng, i, 1, 40) for i in range(3)]
    local_bytes = keeps_local(segs[1:])
    srv = tvtest.Server(extra_args=under_args(ceph, "rgwhung") + [
        "--metrics-addr", "127.0.0.1:0", "--local-bytes", str(local_bytes)])
    rgw = ceph.pids()["rgw"]
    try:
        srv.start(timeout=START_TIMEOUT_S)
        c = tvtest.GrpcClient(srv.addr, timeout_s=120)
        write_all(c, segs)
        assert block_files(srv) == seg_files(segs[1]) | seg_files(segs[2])
        os.kill(rgw, signal.SIGSTOP)
        try:
            t = time.monotonic()
            recs, _, code, details, _ = c.query_all(segs[0][2], segs[0][3] + 1, timeout_s=120)
            el = time.monotonic() - t
        finally:
            os.kill(rgw, signal.SIGCONT)
        assert code == c.grpc.StatusCode.UNAVAILABLE and recs == [], (code, details)
        assert "GET s3://" in details and "(%d attempts)" % READ_ATTEMPTS in details, details
        # 3 attempts of 5 s (LOW_SPEED_TIME_S) and 0.3 s of pauses; the persister's bounds
        # would take 90 s
        assert 3 * LOW_SPEED_TIME_S <= el < 3 * LOW_SPEED_TIME_S + 10, el
        print("  radosgw hung: %s after %.1f s: %s" % (code, el, details[:200]))
        assert len(c.query(segs[0][2], segs[0][3] + 1)) == 40
        m = scrape(srv)
        assert m.value("tracevault_server_under_read_failures_total") == 1
        assert m.value("tracevault_server_under_read_retries_total") == READ_ATTEMPTS - 1
        c.close()
    finally:
        srv.cleanup()


def test_unpersisted_never_evicted(ceph):
    """Segments committed without --under have no under_persisted row: with --under and a
    --local-bytes they are far above, only the persisted ones are evicted."""
    set_credentials(ceph)
    rng = random.Random(14)
    old = [make_segment(rng, i, 2, 40) for i in range(3)]
    new = [make_segment(rng, 3 + i, 2, 40) for i in range(3)]
    srv = tvtest.Server(extra_args=["--metrics-addr", "127.0.0.1:0"])
    try:
        srv.start(timeout=START_TIMEOUT_S)
        c = tvtest.GrpcClient(srv.addr)
        write_all(c, old)
        c.close()
        assert srv.stop() == 0
        srv.extra_args += under_args(ceph, "unpersisted") + ["--local-bytes", "1"]
        srv.start(timeout=START_TIMEOUT_S)
        c = tvtest.GrpcClient(srv.addr)
        write_all(c, new)
        files = block_files(srv)
        assert files == set().union(*(seg_files(s) for s in old)), files
        m = scrape(srv)
        assert m.value("tracevault_server_under_evicted_segments_total") == 3
        assert m.value("tracevault_server_under_evicted_bytes_total") == \
            sum(seg_bytes(s) for s in new)
        assert len(c.query(BASE_NS, BASE_NS + 10**15)) == 6 * 80
        c.close()
        print("  3 unpersisted segments kept, 3 persisted evicted (--local-bytes 1)")
    finally:
        srv.cleanup()


def test_recache(ceph):
    """--recache: a block read back is in blocks/ again and its segment no longer evicted (a
    second query reads no S3); the next pass after a commit evicts it again by age."""
    set_credentials(ceph)
    rng = random.Random(16)
    segs = [make_segment(rng, i, 2, 30) for i in range(5)]
    local_bytes = seg_bytes(segs[2]) + seg_bytes(segs[3])
    evicted = model_evictions(segs[:4], set(range(5)), local_bytes)
    assert evicted == {0, 1}, evicted
    srv = tvtest.Server(extra_args=under_args(ceph, "recache") + [
        "--metrics-addr", "127.0.0.1:0", "--local-bytes", str(local_bytes), "--recache"])
    try:
        srv.start(timeout=START_TIMEOUT_S)
        c = tvtest.GrpcClient(srv.addr)
        write_all(c, segs[:4])
        assert block_files(srv) == seg_files(segs[2]) | seg_files(segs[3])
        want = [r.SerializeToString() for r in c.query(segs[0][2], segs[0][3] + 1)]
        assert len(want) == 60
        assert block_files(srv) == seg_files(segs[0]) | seg_files(segs[2]) | seg_files(segs[3])
        m = scrape(srv)
        assert m.value("tracevault_server_under_reads_total") == 2
        assert m.value("tracevault_server_under_recached_blocks_total") == 2
        assert m.value("tracevault_server_under_recached_segments_total") == 1
        db = sqlite3.connect(os.path.join(srv.data_dir, "catalog.db"))
        flags = dict(db.execute("SELECT segment_id, evicted FROM under_persisted").fetchall())
        db.close()
        assert flags == {segs[0][0]: 0, segs[1][0]: 1, segs[2][0]: 0, segs[3][0]: 0}, flags
        assert [r.SerializeToString() for r in c.query(segs[0][2], segs[0][3] + 1)] == want
        assert scrape(srv).value("tracevault_server_under_reads_total") == 2  # local now
        # the next commit's pass: segment 0 is the oldest local one again
        evicted.discard(0)
        model_pass(segs, list(range(5)), set(range(5)), evicted, local_bytes)
        assert 0 in evicted, evicted
        write_all(c, segs[4:])
        assert block_files(srv) == set().union(*(seg_files(s) for i, s in enumerate(segs)
                                                 if i not in evicted))
        assert scrape(srv).value("tracevault_server_under_evicted_segments_total") == \
            2 + len(evicted - {1})
        assert len(c.query(BASE_NS, BASE_NS + 10**15)) == 5 * 60
        c.close()
        print("  segment 0 re-cached (2 blocks), evicted again by the next pass (with %s)"
              % sorted(evicted - {0, 1}))
    finally:
        srv.cleanup()


def test_delete_evicted(ceph):
    """A Delete of an evicted segment: OK, its records are gone from queries, its objects
    from the bucket (manifest first), the other segments stay."""
    set_credentials(ceph)
    rng = random.Random(17)
    prefix = "delete-evicted"
    segs = [make_segment(rng, i, 2, 30) for i in range(3)]
    # the low-water mark (63/64 of it) still holds segments 1 and 2
    local_bytes = keeps_local(segs[1:])
    assert model_evictions(segs, set(range(3)), local_bytes) == {0}
    srv = tvtest.Server(extra_args=under_args(ceph, prefix) + ["--local-bytes",
                                                                str(local_bytes)])
    try:
        srv.start(timeout=START_TIMEOUT_S)
        c = tvtest.GrpcClient(srv.addr)
        for k, (sid, blocks, _, _) in enumerate(segs):
            assert c.write_encoded(sid, blocks, writer_token=100 + k).committed
        assert block_files(srv) == seg_files(segs[1]) | seg_files(segs[2])
        d = "%s/v1/%s/%016x/" % (prefix, time.strftime("%Y/%m/%d/%H",
                                                      time.gmtime(segs[0][2] // 10**9)),
                                  segs[0][0])
        assert len(ceph.list_keys(d)) == 3  # 2 blocks + manifest
        code, details, _ = c.delete_segment(segs[0][0], writer_token=100)
        assert code == c.grpc.StatusCode.OK, (code, details)
        assert [r.ts_ns for r in c.query(BASE_NS, BASE_NS + 10**15)] == \
            [s[2] + k for s in segs[1:] for k in range(60)]
        tvtest.wait_for(lambda: not ceph.list_keys(d), "the evicted segment's objects gone",
                        timeout_s=30, interval_s=0.1)
        assert len(ceph.list_keys(prefix + "/")) == 2 * 3
        c.close()
    finally:
        srv.cleanup()


def test_kill9_while_evicting(ceph):
    """kill -9 while segments commit and passes evict: after the restart every acknowledged
    segment answers exactly (from blocks/ or read back), and no blocks row was dropped."""
    set_credentials(ceph)
    rng = random.Random(18)
    segs = [make_segment(rng, i, 2, 20) for i in range(40)]
    local_bytes = 3 * seg_bytes(segs[0])
    srv = tvtest.Server(extra_args=under_args(ceph, "kill9-evict") + [
        "--local-bytes", str(local_bytes)])
    acked, stop = [], threading.Event()
    try:
        srv.start(timeout=START_TIMEOUT_S)
        c = tvtest.GrpcClient(srv.addr)

        def writer():
            for seg in segs:
                if stop.is_set():
                    return
                try:
                    if c.write_encoded(seg[0], seg[1]).committed:
                        acked.append(seg)
                except c.grpc.RpcError:
                    return
        t = threading.Thread(target=writer)
        t.start()
        tvtest.wait_for(lambda: len(acked) >= 8, "8 acked segments", timeout_s=60)
        time.sleep(random.Random(19).uniform(0.0, 0.3))
        srv.proc.send_signal(signal.SIGKILL)
        srv.proc.wait(10)
        stop.set()
        t.join(60)
        c.close()
        done = list(acked)
        srv.start(timeout=START_TIMEOUT_S)
        dropped = re.findall(r"(\d+) rows without a file dropped\)", srv.log())
        assert len(dropped) == 2 and dropped[-1] == "0", srv.log()
        c = tvtest.GrpcClient(srv.addr)
        for seg in done:
            got = [r.ts_ns for r in c.query(seg[2], seg[3] + 1)]
            assert got == list(range(seg[2], seg[3] + 1)), ("segment lost", seg[0])
        files = block_files(srv)
        evicted = [s for s in done if not seg_files(s) <= files]
        assert evicted, "nothing was evicted before the kill"
        c.close()
        print("  %d acked before kill -9, all answer after restart (%d evicted)"
              % (len(done), len(evicted)))
    finally:
        srv.cleanup()


def test_damaged_object(ceph):
    """An evicted block whose object in the bucket was changed fails its checks when read
    back: skipped and reported (DATA_LOSS, the other blocks' records sent), never served; its
    row goes as a quarantined block's does, so the next query answers OK without it."""
    set_credentials(ceph)
    rng = random.Random(20)
    prefix = "damaged"
    segs = [make_segment(rng, i, 2, 30) for i in range(3)]
    local_bytes = keeps_local(segs[1:])
    srv = tvtest.Server(extra_args=under_args(ceph, prefix) + ["--local-bytes",
                                                                str(local_bytes)])
    try:
        srv.start(timeout=START_TIMEOUT_S)
        c = tvtest.GrpcClient(srv.addr)
        write_all(c, segs)
        assert block_files(srv) == seg_files(segs[1]) | seg_files(segs[2])
        bid, data = segs[0][1][1]
        key = "%s/v1/%s/%016x/%016x.blk" % (
            prefix, time.strftime("%Y/%m/%d/%H", time.gmtime(segs[0][2] // 10**9)),
            segs[0][0], bid)
        bad = bytearray(data)
        bad[len(bad) // 2] ^= 1
        assert ceph.s3("PUT", key, data=bytes(bad)).status == 200
        recs, skipped, code, details, _ = c.query_all(BASE_NS, BASE_NS + 10**15)
        assert code == c.grpc.StatusCode.DATA_LOSS, (code, details)
        assert [sk.block_id for sk in skipped] == [bid], skipped
        assert [r.ts_ns for r in recs] == \
            [segs[0][2] + k for k in range(30)] + [s[2] + k for s in segs[1:] for k in range(60)]
        print("  damaged object: %s: %s" % (code, details[:200]))
        recs, skipped, code, details, _ = c.query_all(BASE_NS, BASE_NS + 10**15)
        assert code == c.grpc.StatusCode.OK and not skipped, (code, details)
        assert len(recs) == 30 + 120, len(recs)
        c.close()
    finally:
        srv.cleanup()


def obj_key(prefix, seg, bid):
    return "%s/v1/%s/%016x/%016x.blk" % (
        prefix, time.strftime("%Y/%m/%d/%H", time.gmtime(seg[2] // 10**9)), seg[0], bid)


def test_missing_object_never_evicted(ceph):
    """A segment whose object was deleted from the bucket behind the server's back (a
    lifecycle rule, a hand) is not evicted when a pass picks it: its local files are its only
    copy. It loses its persisted mark, is counted, logged, and every record stays exact."""
    set_credentials(ceph)
    rng = random.Random(21)
    prefix = "missing"
    segs = [make_segment(rng, i, 2, 30) for i in range(3)]
    local_bytes = keeps_local(segs[1:])
    srv = tvtest.Server(extra_args=under_args(ceph, prefix) + [
        "--local-bytes", str(local_bytes), "--metrics-addr", "127.0.0.1:0"])
    try:
        srv.start(timeout=START_TIMEOUT_S)
        c = tvtest.GrpcClient(srv.addr)
        write_all(c, segs[:1])
        gone = obj_key(prefix, segs[0], segs[0][1][1][0])
        assert ceph.s3("DELETE", gone).status == 204
        write_all(c, segs[1:])  # the pass after these picks segment 0
        assert block_files(srv) == seg_files(segs[0]) | seg_files(segs[1]) | \
            seg_files(segs[2]), "a segment not whole in the bucket lost its local files"
        m = scrape(srv)
        assert m.value("tracevault_server_under_evict_missing_segments_total") == 1
        assert m.value("tracevault_server_under_evicted_segments_total") == 0
        assert "segment %016x is not whole in the under-store" % segs[0][0] in srv.log()
        assert gone in srv.log(), srv.log()[-2000:]
        recs, skipped, code, details, _ = c.query_all(BASE_NS, BASE_NS + 10**15)
        assert code == c.grpc.StatusCode.OK and not skipped, (code, details)
        assert len(recs) == 3 * 60, len(recs)
        # one more commit: the segment is never picked again (no second count)
        more = make_segment(rng, 3, 1, 5)
        write_all(c, [more])
        assert scrape(srv).value("tracevault_server_under_evict_missing_segments_total") == 1
        c.close()
    finally:
        srv.cleanup()


def test_evicted_object_gone(ceph):
    """An evicted block whose object is then deleted from the bucket (404) is skipped and
    reported as lost (DATA_LOSS, named), while every other record of the range is sent; not
    the whole query failing."""
    set_credentials(ceph)
    rng = random.Random(22)
    prefix = "gone404"
    segs = [make_segment(rng, i, 2, 30) for i in range(3)]
    local_bytes = keeps_local(segs[1:])
    srv = tvtest.Server(extra_args=under_args(ceph, prefix) + ["--local-bytes",
                                                                str(local_bytes)])
    try:
        srv.start(timeout=START_TIMEOUT_S)
        c = tvtest.GrpcClient(srv.addr)
        write_all(c, segs)
        assert block_files(srv) == seg_files(segs[1]) | seg_files(segs[2])
        bid = segs[0][1][1][0]
        assert ceph.s3("DELETE", obj_key(prefix, segs[0], bid)).status == 204
        recs, skipped, code, details, _ = c.query_all(BASE_NS, BASE_NS + 10**15)
        assert code == c.grpc.StatusCode.DATA_LOSS, (code, details)
        assert [sk.block_id for sk in skipped] == [bid], skipped
        assert "404" in details and "%016x" % bid in details, details
        assert [r.ts_ns for r in recs] == \
            [segs[0][2] + k for k in range(30)] + [s[2] + k for s in segs[1:] for k in range(60)]
        p = cli_query(srv.addr, BASE_NS, BASE_NS + 10**15)
        assert p.returncode == 3 and len(p.stdout.splitlines()) == 150, (p.returncode,
                                                                         p.stderr)
        print("  object gone: %s: %s" % (code, details[:200]))
        c.close()
    finally:
        srv.cleanup()


def test_usage(ceph):
    """--local-bytes and --recache: bad values and a missing --under are usage errors (exit
    2, one line)."""
    set_credentials(ceph)
    d = "/tmp/tv-evict-usage"
    for args, msg in [
        (["--local-bytes", "1M"], "--local-bytes needs --under s3://BUCKET/PREFIX"),
        (["--recache"], "--recache needs --under s3://BUCKET/PREFIX"),
        (under_args(ceph, "p") + ["--local-bytes", "banana"],
         "invalid --local-bytes: 'banana' (1 to 1048576G)"),
        (under_args(ceph, "p") + ["--local-bytes", "0"],
         "invalid --local-bytes: '0' (1 to 1048576G)"),
        (under_args(ceph, "p") + ["--local-bytes", "1048577G"],
         "invalid --local-bytes: '1048577G' (1 to 1048576G)"),
    ]:
        p = subprocess.run([tvtest.binary("tracevaultd"), "--data", d] + args,
                           capture_output=True, text=True, timeout=30)
        assert p.returncode == 2 and p.stderr.startswith("tracevaultd: " + msg) and \
            p.stderr.count("\n") == 1, (args, p.returncode, p.stderr)
    assert not os.path.exists(d)


def main():
    only = sys.argv[1:]  # test names to run (default: all)
    res = tvtest.Results(len(tvtest.cases(globals(), only)))
    try:
        with tvtest.Ceph() as ceph:
            for t in tvtest.cases(globals(), only):
                res.run(t, ceph)
    except tvtest.Unavailable as e:
        tvtest.skip(str(e))
    return res.exit_code()


if __name__ == "__main__":
    sys.exit(main())
