"""tracevaultd --retain-bytes / --retain-time (server/retention.h): the policy's edges and a
reader that must not lose what it already planned.

- bytes: segments of random sizes and random (also old, out of order) times are committed one
  by one; after each commit the set of segments served must be exactly what the rule gives,
  computed here: when the committed bytes are above the limit, remove the oldest segments (by
  their newest record, then segment id) until they are at most 63/64 of it (the low-water
  mark). The limit exactly equal to the bytes keeps everything.
- time: a put of data older than --retain-time is gone at its own commit; a segment whose
  newest record is inside the window stays even when its other blocks are old; a segment
  that ages past the limit goes at a periodic check (--retain-interval) with no commit.
- reader: a Query that read its first batch before a pass removed the segments it planned
  reads every record of them, status OK; with --retain-query-grace 0ms the same query finds
  blocks gone (skipped, DATA_LOSS, never quarantined), which shows the test can fail.
- Delete of a multi-block segment goes through the same retiring steps (log, no retiring row
  left) and removes every file.
- start-up finishes segments left half retired (made by hand: each step cut).
- a pass whose catalog transaction fails (a full disk) with a backlog over the pass cap is
  not run again at once on every turn of the loop, and nothing is lost by it.
- usage errors of the options."""
import os
import random
import re
import sqlite3
import subprocess
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import tvtest  # noqa: E402
from tvtest.blocks import encode_block, encode_block_zstd  # noqa: E402

NOW_NS = time.time_ns()
HOUR_NS = 3600 * 10**9
LOW_WATER_DIV = 64  # server/retention.h TV_RETENTION_LOW_WATER_DIV
PER_BLOCK = 1000  # records per block of the reader test (6 KiB each)


def make_segment(rng, sid, ts_list, host=""):
    """[(block_id, encoded)] with one block per list of ts in ts_list."""
    blocks = []
    for ts in ts_list:
        bid = rng.getrandbits(63) | 1
        recs = [tvtest.trace_record(t, pid=1, path="/seg/%x" % sid, host=host) for t in ts]
        # zstd for the big records of the reader test: small files, a CRC of little to compute
        blocks.append((bid, encode_block_zstd(bid, recs) if host else encode_block(bid, recs)))
    return blocks


def served_segments(cl):
    """{segment path tag: record count} over all time."""
    out = {}
    for r in cl.query(0, 2**63 - 1):
        out[r.path] = out.get(r.path, 0) + 1
    return out


def retiring_rows(data_dir):
    db = sqlite3.connect("file:%s?mode=ro" % os.path.join(data_dir, "catalog.db"), uri=True,
                         timeout=10)
    try:
        return db.execute("SELECT count(*) FROM retiring").fetchone()[0]
    finally:
        db.close()


def test_bytes_rule_matches_reference():
    rng = random.Random(12)
    segs = []  # (sid, newest_ts, bytes, nrecords)
    # first pass only to learn sizes: encode everything up front
    for k in range(24):
        sid = rng.getrandbits(62) | 1
        base = NOW_NS - rng.randint(0, 100) * HOUR_NS  # random age: puts of old data too
        ts_list = []
        for _ in range(rng.randint(1, 3)):
            n = rng.randint(1, 40)
            start = base + rng.randint(0, 10**9)
            ts_list.append(list(range(start, start + n)))
        blocks = make_segment(rng, sid, ts_list)
        newest = max(max(t) for t in ts_list)
        segs.append((sid, newest, sum(len(b) for _, b in blocks),
                     sum(len(t) for t in ts_list), blocks))
    # the limit: exactly the bytes of the first 6 segments, so the 6th commit sits at it
    limit = sum(s[2] for s in segs[:6])
    with tvtest.Server(extra_args=["--retain-bytes", str(limit)]) as srv:
        cl = tvtest.GrpcClient(srv.addr)
        try:
            kept = []
            for k, (sid, newest, nbytes, nrec, blocks) in enumerate(segs):
                resp = cl.write_encoded(sid, blocks)
                assert resp.committed, resp
                kept.append((newest, sid, nbytes, nrec))
                kept.sort()
                total = sum(x[2] for x in kept)
                if total > limit:  # down to the low-water mark (retention.h)
                    while total > limit - limit // LOW_WATER_DIV:
                        total -= kept.pop(0)[2]
                want = {"/seg/%x" % s: n for _, s, _, n in kept}
                got = served_segments(cl)
                assert got == want, ("after commit %d" % k, sorted(got), sorted(want))
                if k == 5:
                    assert total == limit and len(kept) == 6, "the limit exactly: all kept"
            files = tvtest.block_files(srv.data_dir)
            assert files == set(tvtest.catalog_blocks(srv.data_dir)), "files and rows differ"
        finally:
            cl.close()
        assert srv.stop() == 0
        # the last T2 waits for the next pass or check (retention.h); a clean stop does it
        assert retiring_rows(srv.data_dir) == 0
        log = srv.log()
        assert re.search(r"retention: removed \d+ segments .*--retain-bytes", log), log[-2000:]
        m = re.search(r"retention: (\d+) pass(?:es)? removed (\d+) segments?\b", log)
        assert m and int(m.group(2)) == len(segs) - len(kept), (m and m.group(0), len(kept))


def test_time_cutoff_and_old_put():
    rng = random.Random(7)
    with tvtest.Server(extra_args=["--retain-time", "1h", "--retain-interval",
                                   "200ms"]) as srv:
        cl = tvtest.GrpcClient(srv.addr)
        try:
            now = time.time_ns()
            old = rng.getrandbits(62) | 1       # newest record 2 h ago: a put of old data
            mixed = rng.getrandbits(62) | 1     # one block 5 h old, one 10 min old: kept
            fresh = rng.getrandbits(62) | 1     # 59 min old: kept
            soon = rng.getrandbits(62) | 1      # 1 h minus 1.5 s: goes at a periodic check
            cl.write_encoded(old, make_segment(rng, old, [range(now - 2 * HOUR_NS,
                                                                now - 2 * HOUR_NS + 5)]))
            cl.write_encoded(mixed, make_segment(rng, mixed, [
                range(now - 5 * HOUR_NS, now - 5 * HOUR_NS + 3),
                range(now - 600 * 10**9, now - 600 * 10**9 + 3)]))
            cl.write_encoded(fresh, make_segment(rng, fresh, [range(now - 59 * 60 * 10**9,
                                                                    now - 59 * 60 * 10**9 + 4)]))
            t_soon = now - HOUR_NS + 1500 * 10**6
            cl.write_encoded(soon, make_segment(rng, soon, [range(t_soon, t_soon + 2)]))
            got = served_segments(cl)
            assert got == {"/seg/%x" % mixed: 6, "/seg/%x" % fresh: 4, "/seg/%x" % soon: 2}, got
            # no commit from here: only the periodic check can remove `soon`
            deadline = time.monotonic() + 10
            while "/seg/%x" % soon in served_segments(cl):
                assert time.monotonic() < deadline, "the periodic check did not remove it"
                time.sleep(0.1)
            assert served_segments(cl) == {"/seg/%x" % mixed: 6, "/seg/%x" % fresh: 4}
            assert time.time_ns() >= t_soon + HOUR_NS, "removed before it was past the cutoff"
            assert tvtest.block_files(srv.data_dir) == set(tvtest.catalog_blocks(srv.data_dir))
        finally:
            cl.close()
        assert srv.stop() == 0
        assert "--retain-time" in srv.log()


def reader_round(grace):
    """A Query reads its first batch; then commits push the queried segments out; the rest of
    the query is read. Returns (records, skipped, code, details, total written, log)."""
    rng = random.Random(3)
    t0 = NOW_NS - 10 * HOUR_NS
    planned = []
    # 3 segments of 4 blocks of 1000 records of ~6 KiB (6 MiB of records a block, small
    # compressed): the query waits on its client long before it could open the second
    # segment's last block (gRPC's windows, grown by BDP probing, held up to ~2 blocks, so
    # with 2 blocks a segment the server had sometimes opened every planned block already)
    host = "h" * 6000
    for k in range(3):
        sid = rng.getrandbits(62) | 1
        ts_list = [range(t0 + (4 * k + j) * 10**9, t0 + (4 * k + j) * 10**9 + PER_BLOCK)
                   for j in range(4)]
        planned.append((sid, make_segment(rng, sid, ts_list, host)))
    seg_bytes = sum(len(b) for _, b in planned[0][1])
    # the three fit; a fourth and a fifth of about the same size push out one each
    limit = 3 * seg_bytes + seg_bytes // 2
    args = ["--retain-bytes", str(limit), "--retain-query-grace", grace]
    with tvtest.Server(extra_args=args) as srv:
        cl = tvtest.GrpcClient(srv.addr, timeout_s=60)
        try:
            for sid, blocks in planned:
                assert cl.write_encoded(sid, blocks).committed
            call = cl.query_rpc(cl.pb.QueryRequest(from_ns=t0, to_ns=t0 + HOUR_NS),
                                timeout=60)
            recs, skipped = [], []
            first = next(call)
            recs.extend(first.records)
            for k in range(2):  # newer segments: the two oldest go (they were planned)
                sid = rng.getrandbits(62) | 1
                t = NOW_NS - HOUR_NS + k * 10**9
                blocks = make_segment(rng, sid, [range(t + j * 10**8, t + j * 10**8 + PER_BLOCK)
                                                 for j in range(4)], host)
                assert cl.write_encoded(sid, blocks).committed
            left = served_segments(cl)
            assert "/seg/%x" % planned[0][0] not in left and \
                "/seg/%x" % planned[1][0] not in left, \
                "the passes did not remove the two oldest segments: the test proves nothing"
            code, details = cl.grpc.StatusCode.OK, ""
            try:
                for resp in call:
                    recs.extend(resp.records)
                    skipped.extend(resp.skipped)
            except cl.grpc.RpcError as e:
                code, details = e.code(), e.details()
            files_during = tvtest.block_files(srv.data_dir)
        finally:
            cl.close()
        assert srv.stop() == 0
        return recs, skipped, code, details, 3 * 4 * PER_BLOCK, files_during, srv.log()


def test_reader_keeps_what_it_planned():
    recs, skipped, code, details, total, _, log = reader_round("10m")
    assert code == reader_code_ok(), (code, details)
    assert not skipped, skipped
    assert len(recs) == total, (len(recs), total)
    ts = [r.ts_ns for r in recs]
    assert ts == sorted(ts) and len(set(ts)) == total
    assert "quarantine:" not in log, log[-2000:]


def reader_code_ok():
    return tvtest.grpc_modules()[0].StatusCode.OK


def test_reader_past_grace_skips_not_quarantines():
    recs, skipped, code, details, total, files, log = reader_round("0ms")
    grpc = tvtest.grpc_modules()[0]
    assert code == grpc.StatusCode.DATA_LOSS and skipped, (code, details, len(recs))
    assert len(recs) < total
    assert all("gone" in s.reason for s in skipped), [s.reason for s in skipped]
    assert "quarantine:" not in log, log[-2000:]
    assert " 0 files quarantined" in log


def test_delete_of_a_multi_block_segment_retires_it():
    rng = random.Random(5)
    with tvtest.Server() as srv:
        cl = tvtest.GrpcClient(srv.addr)
        try:
            sid, keep = rng.getrandbits(62) | 1, rng.getrandbits(62) | 1
            blocks = make_segment(rng, sid, [range(NOW_NS + k * 100, NOW_NS + k * 100 + 5)
                                             for k in range(4)])
            cl.write_encoded(sid, blocks, writer_token=99)
            cl.write_encoded(keep, make_segment(rng, keep, [range(NOW_NS + 10**9,
                                                                  NOW_NS + 10**9 + 3)]))
            code, details, resp = cl.delete_segment(sid, writer_token=99)
            assert code == cl.grpc.StatusCode.OK and resp.deleted_blocks == 4, (code, details)
            assert served_segments(cl) == {"/seg/%x" % keep: 3}
            assert tvtest.block_files(srv.data_dir) == set(tvtest.catalog_blocks(srv.data_dir))
            assert len(tvtest.block_files(srv.data_dir)) == 1
            assert retiring_rows(srv.data_dir) == 0
            # its id is used up, as before
            again = cl.write_requests([tvtest.write_cmd(cl.pb.OPEN_SEGMENT, segment_id=sid)])
            assert again[1] == cl.grpc.StatusCode.ALREADY_EXISTS, again
        finally:
            cl.close()


def test_delete_killed_mid_way_leaves_the_segment_whole_or_gone():
    """A Delete of a 4-block segment whose unlinks take 25 ms each, killed inside them: after
    the restart the segment is whole (the kill came before its commit point) or gone, never in
    part, and recovery adopted nothing (before, files went first: a kill between two unlinks
    left the other blocks served)."""
    import signal
    import threading
    rng = random.Random(9)
    srv = tvtest.Server(extra_args=["--test-retention-unlink-delay-ms", "25"])
    outcomes = {"whole": 0, "gone": 0}
    try:
        srv.start()
        srv.listen = srv.addr
        for rnd in range(8):
            cl = tvtest.GrpcClient(srv.addr)
            sid = rng.getrandbits(62) | 1
            t = NOW_NS + rnd * 10**9
            cl.write_encoded(sid, make_segment(rng, sid, [range(t + k * 100, t + k * 100 + 5)
                                                          for k in range(4)]),
                             writer_token=5)
            th = threading.Thread(target=cl.delete_segment, args=(sid, 5))
            th.start()
            time.sleep(rng.uniform(0.01, 0.12))
            srv.proc.send_signal(signal.SIGKILL)
            srv.proc.wait(10)
            th.join(30)
            cl.close()
            srv.start()
            cl = tvtest.GrpcClient(srv.addr)
            try:
                n = served_segments(cl).get("/seg/%x" % sid, 0)
            finally:
                cl.close()
            assert n in (0, 20), ("segment half deleted", rnd, n)
            outcomes["whole" if n else "gone"] += 1
            assert tvtest.block_files(srv.data_dir) == set(tvtest.catalog_blocks(srv.data_dir))
            m = re.findall(r"recovery: .*?(\d+) adopted.*?(\d+) rows without a file dropped\), "
                           r"(\d+) files quarantined", srv.log())[-1]
            assert m == ("0", "0", "0"), m
        assert srv.stop() == 0
        assert "retired segments: 1 finished" in srv.log(), \
            "no kill landed between the Delete's commit point and its end: %s" % outcomes
    finally:
        srv.cleanup()


def write_backlog(srv, rng, n):
    """n one-record segments (one block each, 1 ns apart) written to srv, then srv stopped."""
    srv.start()
    cl = tvtest.GrpcClient(srv.addr)
    try:
        for k in range(n):
            sid = rng.getrandbits(62) | 1
            cl.write_encoded(sid, make_segment(rng, sid, [[NOW_NS + k]]))
    finally:
        cl.close()
    assert srv.stop() == 0


def test_a_pass_takes_at_most_256_segments():
    """300 segments, then a restart with --retain-bytes 1: the first pass removes the 256
    oldest, the next (at once, not after --retain-interval) the other 44."""
    rng = random.Random(11)
    srv = tvtest.Server()
    try:
        write_backlog(srv, rng, 300)
        srv.extra_args = ["--retain-bytes", "1", "--retain-interval", "1d"]
        srv.start()
        cl = tvtest.GrpcClient(srv.addr)
        try:
            deadline = time.monotonic() + 10
            while served_segments(cl):
                assert time.monotonic() < deadline, "the second pass did not follow"
                time.sleep(0.05)
        finally:
            cl.close()
        assert srv.stop() == 0
        removed = [int(n) for n in re.findall(r"retention: removed (\d+) segments", srv.log())]
        assert removed == [256, 44], removed
    finally:
        srv.cleanup()


def test_start_up_finishes_hand_made_half_retired_segments():
    """The start-up step that finishes retiring segments (RECOVERY.md), on states made by hand
    in a stopped server's data dir, one segment each (two blocks):
    A: T1 done (a retiring row, its block rows gone, segments.state 'deleted'), both files left;
    B: T1 done, one of its two files already unlinked (U cut half way);
    C: T1 and U done, only T2 (the retiring row) left;
    D: a retiring row whose block rows are still there (T1 never leaves that; start-up drops
       the rows too rather than serve a segment it was told to retire);
    E: untouched. After the start: only E is served, blocks/ and the catalog agree, no retiring
    row is left, the log says 4 segments and 5 files were finished, and a second start has
    nothing to do."""
    rng = random.Random(13)
    srv = tvtest.Server()
    try:
        srv.start()
        cl = tvtest.GrpcClient(srv.addr)
        sids, blocks = [], {}
        try:
            for k in range(5):
                sid = rng.getrandbits(62) | 1
                seg = make_segment(rng, sid, [[NOW_NS + 10 * k + j for j in range(3)],
                                              [NOW_NS + 10 * k + 5]])
                cl.write_encoded(sid, seg)
                sids.append(sid)
                blocks[sid] = [bid for bid, _ in seg]
        finally:
            cl.close()
        assert srv.stop() == 0
        a, b, c, d, e = sids
        path = os.path.join(srv.data_dir, "catalog.db")
        db = sqlite3.connect(path, timeout=10)
        try:
            with db:
                for sid in (a, b, c, d):
                    db.execute("INSERT INTO retiring (segment_id, at_ns) VALUES (?, ?)",
                               (sid, NOW_NS))
                for sid in (a, b, c):
                    db.execute("DELETE FROM blocks WHERE segment_id = ?", (sid,))
                    db.execute("UPDATE segments SET state = 'deleted' WHERE segment_id = ?",
                               (sid,))
        finally:
            db.close()
        os.unlink(os.path.join(srv.data_dir, "blocks", tvtest.block_name(b, blocks[b][0])))
        for bid in blocks[c]:
            os.unlink(os.path.join(srv.data_dir, "blocks", tvtest.block_name(c, bid)))
        srv.start()
        cl = tvtest.GrpcClient(srv.addr)
        try:
            assert served_segments(cl) == {"/seg/%x" % e: 4}, served_segments(cl)
        finally:
            cl.close()
        assert srv.stop() == 0
        assert "retired segments: 4 finished (5 files)" in srv.log(), srv.log()[-3000:]
        assert retiring_rows(srv.data_dir) == 0
        assert tvtest.block_files(srv.data_dir) == set(tvtest.catalog_blocks(srv.data_dir)) \
            == set(blocks[e])
        srv.start()
        assert srv.stop() == 0
        assert srv.log().count("retired segments: 0 finished (0 files)") >= 1
    finally:
        srv.cleanup()


def fill(d, name, leave_bytes):
    """Fill the file system of d to leave_bytes free with the file name (it stays)."""
    with open(os.path.join(d, name), "wb") as f:
        while True:
            st = os.statvfs(d)
            free = st.f_bavail * st.f_frsize
            if free <= leave_bytes:
                break
            try:
                f.write(b"\0" * min(free - leave_bytes, 1 << 20))
                f.flush()
            except OSError:
                break


def test_a_failing_catalog_is_not_retried_on_every_turn():
    """300 segments on a small tmpfs, then a restart with --retain-bytes 1 and the disk full:
    the pass's catalog transaction fails (SQLITE_FULL). The pass had 256 of 300 segments (cut
    at the cap), yet it is tried again only at the next --retain-interval (1 day here), not at
    once on every turn of the loop with an error line each (the spin fixed in d4bced9). Once
    there is room again, a Write triggers the next pass, which removes them."""
    rng = random.Random(12)
    try:
        mnt = tvtest.mount_tmpfs("24m")
    except tvtest.Unavailable as e:
        tvtest.skip(str(e))
    srv = tvtest.Server(data_dir=os.path.join(mnt, "data"))
    try:
        write_backlog(srv, rng, 300)
        fill(mnt, "filler", 64 * 1024)
        srv.extra_args = ["--retain-bytes", "1", "--retain-interval", "1d"]
        srv.start()
        time.sleep(2)  # a spinning loop logs thousands of lines in this time
        failed = srv.log().count("retention: cannot retire")
        cl = tvtest.GrpcClient(srv.addr)
        try:
            assert len(served_segments(cl)) == 300  # nothing is lost by the failed pass
            os.unlink(os.path.join(mnt, "filler"))
            sid = rng.getrandbits(62) | 1
            cl.write_encoded(sid, make_segment(rng, sid, [[NOW_NS + 300]]))
            deadline = time.monotonic() + 10
            while served_segments(cl):
                assert time.monotonic() < deadline, "no pass after the disk had room again"
                time.sleep(0.05)
        finally:
            cl.close()
        assert srv.stop() == 0
        assert failed == 1, "%d failed passes in 2 s (want 1: the next at --retain-interval)" \
            % failed
    finally:
        srv.cleanup()
        tvtest.umount_tmpfs(mnt)


def test_usage_errors():
    for args, what in ((["--retain-time", "30"], "invalid --retain-time: '30' (1s to 36500d)"),
                       (["--retain-time", "500ms"], "invalid --retain-time"),
                       (["--retain-bytes", "0"], "invalid --retain-bytes: '0' (1 to"),
                       (["--retain-interval", "1ms"], "invalid --retain-interval"),
                       (["--retain-query-grace", "2d"], "invalid --retain-query-grace"),
                       (["--test-retention-unlink-delay-ms", "20000"],
                        "invalid --test-retention-unlink-delay-ms")):
        p = subprocess.run([tvtest.binary("tracevaultd"), "--data", "/nonexistent/x"] + args,
                           capture_output=True, text=True, timeout=20)
        assert p.returncode == 2 and p.stderr.count("\n") == 1 and what in p.stderr, \
            (args, p.returncode, p.stderr)
    p = subprocess.run([tvtest.binary("tracevaultd"), "--data", "/nonexistent/x", "--scrub",
                        "--retain-bytes", "1M"], capture_output=True, text=True, timeout=20)
    assert p.returncode == 2 and "--retain-" in p.stderr, p.stderr
    p = subprocess.run([tvtest.binary("tracevaultd"), "--help"], capture_output=True, text=True,
                       timeout=20)
    for opt in ("--retain-time DURATION", "--retain-bytes SIZE", "--retain-interval",
                "--retain-query-grace", "--test-retention-unlink-delay-ms"):
        assert opt in p.stdout, opt


def main():
    res = tvtest.Results(len(tvtest.cases(globals())))
    for t in tvtest.cases(globals()):
        res.run(t)
    return res.exit_code()


if __name__ == "__main__":
    sys.exit(main())
