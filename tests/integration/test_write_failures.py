"""The no-retry write rule against real failures of the real tracevaultd, driven through the
real client pipeline by tests/tools/tv_load: a full tmpfs (ENOSPC), RLIMIT_FSIZE, kill -9 mid
segment, a corrupted chunk, and cache back-pressure with a stopped server. Each failure case
checks: one attempt, cancel seen by the server, nothing left on disk, cache released, loss
counted and logged, the next segment commits, and a concurrent writer is unaffected."""
import os
import re
import resource
import shutil
import signal
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import tvtest  # noqa: E402

# pad 200 gives ~260 raw and ~170 stored bytes per record (zstd on a 64-letter random pad)
PAD = ["--pad-bytes", "200"]
H_RECORDS = 200           # one healthy segment: ~34 KB stored
MAX_HEALTHY_SEGMENTS = 400  # bound on the concurrent writer's loop


class Case:
    """Bookkeeping of one failure case: the drivers, and what each committed."""

    def __init__(self, srv):
        self.srv = srv
        self.committed = {}  # tag -> [seq]

    def commit(self, ld, seg):
        assert seg["ok"], "segment first %d count %d of tv_load %d failed: %s" % (
            seg["first"], seg["count"], ld.tag, ld.stderr_text())
        assert seg["refused"] == 0, seg
        self.committed.setdefault(ld.tag, []).extend(seg["seqs"])


def healthy_while(h, f, case, allow_failure=None, max_segments=MAX_HEALTHY_SEGMENTS):
    """Run segments on h until f answers its pending command; returns f's answer. Every h
    segment must commit (allow_failure: a reason regex a shared full disk may legitimately
    give; such a segment must then be gone like any failed one)."""
    answer, done = None, 0
    for _ in range(max_segments):
        seg = h.segment()
        done += 1
        if seg["ok"]:
            case.commit(h, seg)
        else:
            fails = h.failure_lines()
            assert allow_failure and fails and re.search(allow_failure, fails[-1][1]), \
                "the concurrent healthy writer failed: %s" % h.stderr_text()
            print("note: healthy writer hit the shared full disk: %s" % fails[-1][1])
        answer = f.poll_answer()
        if answer is not None:
            break
    if answer is None:
        answer = f.answer()
    assert done >= 1
    return answer


def check_failure(case, ld, seg, stats_before, reason_re, server_alive=True):
    """Every point of the failure rule for one failed segment of ld. Returns the segment id."""
    srv = case.srv
    assert not seg["ok"], "segment meant to fail committed: %r" % seg
    st = ld.stats()
    fails = ld.failure_lines()
    assert len(fails) == 1, "want one failure line, got: %s" % ld.stderr_text()
    sid_hex, reason, nblocks, nrecs, t0, t1, cleanup = fails[0]
    sid = int(sid_hex, 16)
    assert re.search(reason_re, reason), "reason %r does not match %r" % (reason, reason_re)
    # loss counted and logged, with the right counts and time range
    assert int(nrecs) == seg["count"], (fails[0], seg)
    assert (int(t0), int(t1)) == (ld.ts_of(seg["first"]), ld.ts_of(seg["first"] + seg["count"] - 1)), \
        (fails[0], seg)
    assert st["segments_failed"] - stats_before["segments_failed"] == 1, st
    assert st["records_dropped_failed"] - stats_before["records_dropped_failed"] == seg["count"], st
    assert st["blocks_dropped"] - stats_before["blocks_dropped"] == int(nblocks) >= 1, st
    assert st["records_in"] == st["records_committed"] + st["records_dropped_cache"] + \
        st["records_dropped_failed"], st
    # the cache released the segment's blocks
    assert st["cache_bytes_used"] == 0, st
    # exactly one attempt, and the server saw the end of it
    opened = [line for line in tvtest.segment_log_lines(srv.log(), sid) if line.endswith(" opened")]
    assert len(opened) == 1, "segment %016x opened %d times:\n%s" % (sid, len(opened), srv.log())
    if server_alive:
        tvtest.wait_for(lambda: any(" aborted: " in line
                                    for line in tvtest.segment_log_lines(srv.log(), sid)),
                        "the server's aborted line for segment %016x" % sid, 10)
        assert cleanup.startswith("ok"), "cleanup on a live server failed: %r" % cleanup
        assert re.search(r"^delete segment %016x: removed " % sid, srv.log(), re.M), \
            "the client's Delete of %016x never reached the server:\n%s" % (sid, srv.log())
    assert not any(" committed: " in line for line in tvtest.segment_log_lines(srv.log(), sid))
    return sid


def check_disk_and_query(case, loaders):
    """No temp file, no block without a catalog row (and none of the catalog missing), and
    the query returns exactly the committed records of every driver."""
    srv = case.srv
    tvtest.wait_for(lambda: tvtest.tmp_files(srv.data_dir) == [],
                    "DATA/tmp to be empty (has %r)" % tvtest.tmp_files(srv.data_dir), 10)
    assert tvtest.block_files(srv.data_dir) == set(tvtest.catalog_blocks(srv.data_dir))
    for ld in loaders:
        keys, ts = tvtest.query_keys(srv.addr, ld.ts_of(0), ld.ts_of(10**11))
        want = [(ld.tag, s) for s in sorted(case.committed.get(ld.tag, []))]
        assert keys == want, "tv_load %d: query gave %d records, committed %d" % (
            ld.tag, len(keys), len(want))


def fail_case(srv, big, small, f_args, reason_re, h_servers=None, allow_h_failure=None,
              h_records=H_RECORDS, h_max_segments=MAX_HEALTHY_SEGMENTS):
    """Common shape of (a), (b), (d): f commits a small segment, then a big one fails while h
    writes, then f's next small segment commits."""
    case = Case(srv)
    f = tvtest.Loader(srv.addr, small, PAD + f_args, tag=1)
    h = tvtest.Loader(h_servers or srv.addr, h_records, PAD, tag=2)
    try:
        case.commit(f, f.segment())
        before = f.stats()
        f.send("segment %d" % big)
        seg = tvtest.Loader.parse_segment(healthy_while(h, f, case, allow_h_failure,
                                                        h_max_segments))
        check_failure(case, f, seg, before, reason_re)
        case.commit(f, f.segment())  # the next segment commits
        case.commit(h, h.segment())
        assert f.stats()["cache_bytes_used"] == 0
        check_disk_and_query(case, [f] if h_servers else [f, h])
        assert f.quit() == 0 and h.quit() == 0
    finally:
        f.cleanup()
        h.cleanup()


def status_reason(srv, status, detail_re):
    """The failure reason a server's error status gives, exactly: the server named, the gRPC
    status by name, then the server's message (segment id first)."""
    return r"^%s: %s: segment [0-9a-f]{16}: %s$" % (re.escape(srv.addr), status, detail_re)


def test_enospc_on_small_tmpfs(tmp):
    del tmp
    mnt = tvtest.mount_tmpfs("6m")
    try:
        srv = tvtest.Server(data_dir=os.path.join(mnt, "data"))
        with srv:
            # 50000 records ~ 8.5 MB stored > 6 MiB; 2000 records ~ 340 KB fit after cleanup.
            # The healthy writer shares the disk: a segment of it may meet the disk while full,
            # and its volume is capped (60 x 20 records, ~200 KB) so it cannot fill it alone.
            enospc = status_reason(srv, "RESOURCE_EXHAUSTED",
                                   r"block [0-9a-f]{16}: .*: No space left on device")
            # the healthy writer's small segment may instead find the disk full at its catalog
            # commit (SQLite's WAL grows): the same status, naming the catalog (rel-09)
            h_enospc = status_reason(srv, "RESOURCE_EXHAUSTED",
                                     r"(block [0-9a-f]{16}: .*|catalog commit): No space left "
                                     r"on device( \(SQLite: database or disk is full\))?")
            fail_case(srv, 50000, 2000, ["--block-bytes", str(1 << 20)], enospc,
                      allow_h_failure=h_enospc, h_records=20, h_max_segments=60)
    finally:
        tvtest.umount_tmpfs(mnt)


def test_rlimit_fsize(tmp):
    limit = 2 << 20

    def limit_files():
        resource.setrlimit(resource.RLIMIT_FSIZE, (limit, limit))

    srv = tvtest.Server(preexec_fn=limit_files)
    with srv:
        # one 4 MiB-raw block (~2.7 MB stored) is above the limit; 2000 records (~340 KB) not
        fail_case(srv, 20000, 2000, ["--block-bytes", str(4 << 20)],
                  status_reason(srv, "RESOURCE_EXHAUSTED",
                                r"block [0-9a-f]{16}: .*: File too large"))
        assert srv.proc.poll() is None, "tracevaultd died under RLIMIT_FSIZE:\n" + srv.log()


def test_corrupt_chunk(tmp):
    srv = tvtest.Server()
    with srv:
        # segment 1 (100 records, ~17 KB) is chunk 1; chunk 2 is the first of the big one
        fail_case(srv, 3000, 100, ["--chunk-bytes", "65536", "--test-corrupt-chunk", "2"],
                  status_reason(srv, "DATA_LOSS", r"chunk crc32c mismatch: block [0-9a-f]{16} "
                                r"at offset 0: CRC32C 0x[0-9a-f]{8}, sender said 0x[0-9a-f]{8}"))


def test_kill_9_mid_segment(tmp):
    srv = tvtest.Server()
    other = tvtest.Server()
    case = Case(srv)
    with srv, other:
        f = tvtest.Loader(srv.addr, 2000, PAD + ["--chunk-bytes", "65536",
                                                  "--write-timeout-ms", "20000",
                                                  "--delete-timeout-ms", "2000"], tag=1)
        h = tvtest.Loader(other.addr, H_RECORDS, PAD, tag=2)
        try:
            case.commit(f, f.segment())
            before = f.stats()
            opened_before = srv.log().count(" opened")
            f.send("segment 150000")  # ~25 MB stored in 64 KiB chunks
            # kill once the segment has data on disk: the server logs "opened" at
            # OPEN_SEGMENT but creates the first temp file only at OPEN_BLOCK
            tvtest.wait_for(lambda: srv.log().count(" opened") > opened_before
                            and tvtest.tmp_files(srv.data_dir),
                            "the big segment's opened line and first temp file", 120, 0.002)
            srv.proc.send_signal(signal.SIGKILL)
            srv.proc.wait(10)
            h_case = Case(other)
            seg = tvtest.Loader.parse_segment(healthy_while(h, f, h_case))
            leftovers = tvtest.tmp_files(srv.data_dir)
            assert leftovers, "kill -9 came too late: nothing of the segment was on disk"
            sid = check_failure(case, f, seg, before, r"UNAVAILABLE|Connection refused|Socket "
                                r"closed|connection|closed", server_alive=False)
            fails = f.failure_lines()
            assert not fails[0][6].startswith("ok"), \
                "the Delete cannot have reached a dead server, yet cleanup says %r" % fails[0][6]
            # restart on the same port and data dir: recovery removes the temp files
            srv.listen = srv.addr
            srv.start()
            assert tvtest.tmp_files(srv.data_dir) == []
            assert re.search(r"recovery: removed %d uncommitted temp files" % len(leftovers),
                             srv.log()), srv.log()
            assert not any(" committed: " in line
                           for line in tvtest.segment_log_lines(srv.log(), sid))
            case.commit(f, f.segment())  # the next segment commits on the restarted server
            assert f.stats()["cache_bytes_used"] == 0
            check_disk_and_query(case, [f])
            check_disk_and_query(h_case, [h])
            assert f.quit() == 0 and h.quit() == 0
        finally:
            f.cleanup()
            h.cleanup()


def test_backpressure_drops_and_counts(tmp):
    """A 256 KiB cache and a SIGSTOPped server: adds wait 5 ms for room, then blocks are
    dropped, counted and logged; after SIGCONT the rest commits and adds up exactly."""
    srv = tvtest.Server()
    with srv:
        f = tvtest.Loader(srv.addr, 2000, PAD + ["--cache-bytes", str(256 << 10),
                                                  "--block-bytes", str(64 << 10),
                                                  "--backpressure-ms", "5",
                                                  "--write-timeout-ms", "30000"], tag=1)
        try:
            assert f.segment()["ok"]
            srv.proc.send_signal(signal.SIGSTOP)
            try:
                f.send("segment 20000")
                # the fault is a stopped server for a fixed time; nothing signals "cache full"
                time.sleep(1.0)
            finally:
                srv.proc.send_signal(signal.SIGCONT)
            seg = tvtest.Loader.parse_segment(f.answer())
            st = f.stats()
            assert st["records_dropped_cache"] > 0, st
            assert seg["refused"] > 0, seg
            assert st["records_in"] == 22000, st
            assert st["records_in"] == st["records_committed"] + st["records_dropped_cache"] + \
                st["records_dropped_failed"], st
            assert st["cache_bytes_peak"] <= 256 << 10, st
            assert st["cache_bytes_used"] == 0, st
            logged = sum(int(m) for m in re.findall(
                r"^tracevault: block cache full past the back-pressure time: dropped 1 block, "
                r"(\d+) records$", f.stderr_text(), re.M))
            assert logged == st["records_dropped_cache"], (logged, st)
            keys, ts = tvtest.query_keys(srv.addr, f.ts_of(0), f.ts_of(10**9))
            assert len(keys) == st["records_committed"] == len(set(keys)), (len(keys), st)
            assert all(k[0] == 1 and 0 <= k[1] < 22000 for k in keys)
            assert ts == sorted(ts)
            after = f.segment(500)
            assert after["ok"] and after["refused"] == 0, after
            assert f.quit() == 0
        finally:
            f.cleanup()


def vm_kib(pid, key):
    with open("/proc/%d/status" % pid) as f:
        for line in f:
            if line.startswith(key + ":"):
                return int(line.split()[1])
    raise AssertionError("no %s in /proc/%d/status" % (key, pid))


def test_rss_bounded_by_cache(tmp):
    """~60 MB of records through a 4 MiB cache while the server is stopped: the client's peak
    RSS grows by at most the cache plus a small constant (the builder's open block, gRPC
    buffers), not by what passed through. ASan's quarantine is turned off for the driver, or
    freed blocks would be held back on purpose and the bound would measure ASan."""
    cache, block, slack = 4 << 20, 256 << 10, 16 << 20
    srv = tvtest.Server()
    with srv:
        saved = os.environ.get("ASAN_OPTIONS")
        os.environ["ASAN_OPTIONS"] = ((saved + ":") if saved else "") + "quarantine_size_mb=0"
        try:
            f = tvtest.Loader(srv.addr, 2000, ["--pad-bytes", "200", "--cache-bytes", str(cache),
                                               "--block-bytes", str(block),
                                               "--backpressure-ms", "5",
                                               "--write-timeout-ms", "30000"], tag=1)
        finally:
            if saved is None:
                del os.environ["ASAN_OPTIONS"]
            else:
                os.environ["ASAN_OPTIONS"] = saved
        try:
            assert f.segment()["ok"]  # gRPC, the pipeline and the allocator are warm now
            base_kib = vm_kib(f.proc.pid, "VmHWM")
            srv.proc.send_signal(signal.SIGSTOP)
            try:
                f.send("segment 200000")  # ~60 MB of records: far more than the cache
                time.sleep(1.0)  # the fault is a stopped server for a fixed time
            finally:
                srv.proc.send_signal(signal.SIGCONT)
            f.answer()
            st = f.stats()
            peak_kib = vm_kib(f.proc.pid, "VmHWM")
            assert st["records_in"] == 202000, st
            assert st["records_dropped_cache"] > 0, st  # the cache really was full
            assert st["cache_bytes_peak"] <= cache, st
            assert (peak_kib - base_kib) * 1024 <= cache + slack, \
                "peak RSS grew %d KiB for a %d KiB cache" % (peak_kib - base_kib, cache >> 10)
            assert f.quit() == 0
        finally:
            f.cleanup()


def main():
    only = sys.argv[1:]
    tests = tvtest.cases(globals(), only)
    results = tvtest.Results(len(tests))
    tmp = tempfile.mkdtemp(prefix="tv-wfail-")
    try:
        for t in tests:
            results.run(t, tmp)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return results.exit_code()


if __name__ == "__main__":
    sys.exit(main())
