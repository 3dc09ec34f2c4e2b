"""A query's memory is bounded (issue 10, kind 6) and its failures say the truth (kind 7): blocks
that inflate to tens of MiB cost a zstd window each, not their raw size (rel-08's shape); a
query past --query-memory-bytes, or one that finds --query-total-memory-bytes taken by other
queries, ends RESOURCE_EXHAUSTED naming the limit, and runs once memory is back; so does one
that would hold more than 512 block files open; and an
allocation that fails (RLIMIT_AS) ends the query RESOURCE_EXHAUSTED with a readable reason,
never stack bytes (rel-13), while the server goes on serving."""
import os
import resource
import struct
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import tvtest  # noqa: E402

grpc, pb = tvtest.grpc_modules()
OK, RESOURCE_EXHAUSTED = grpc.StatusCode.OK, grpc.StatusCode.RESOURCE_EXHAUSTED

BASE = 1_795_000_000 * 10**9
WINDOW_LOG = 23  # BLOCK.md's largest zstd window: 8 MiB


def raw_records(t0, n, path_bytes):
    """n records from t0 (1 ns apart) with paths of path_bytes: [(ts_ns, bytes)]."""
    return [(t0 + i, pb.TraceRecord(ts_ns=t0 + i, pid=i + 1, path="/%d/" % i + "b" * path_bytes)
             .SerializeToString()) for i in range(n)]


def status_kib(srv, key):
    with open("/proc/%d/status" % srv.proc.pid) as f:
        for line in f:
            if line.startswith(key + ":"):
                return int(line.split()[1])
    raise AssertionError("no %s in /proc status" % key)


def restamp(blk, block_id):
    """The same version 2 block under another id (BLOCK.md: id at 8, header CRC at 108)."""
    head = blk[:8] + struct.pack("<Q", block_id) + blk[16:108]
    return head + struct.pack("<I", tvtest.crc32c(head)) + blk[112:]


def write_copies(cl, blk, first_id, n):
    """n copies of blk, ids first_id..., one segment each (ids as segment ids)."""
    for k in range(n):
        cl.write_encoded(first_id + k, [(first_id + k, restamp(blk, first_id + k))])


def test_inflating_blocks_cost_a_window_each(srv, cl):
    """rel-08's shape, smaller: 4 blocks of ~42 MiB raw each (some KB on the wire) over one
    range and a reader that stalls after one batch. The server once held all 4 inflated
    (~170 MiB); now it holds a window and buffers per block. Then every record is served."""
    t = BASE
    blk = tvtest.encode_block_zstd(0x100, None, raw_records=raw_records(t, 640, 64 << 10))
    assert len(blk) < (1 << 20)
    write_copies(cl, blk, 0x100, 4)
    before = status_kib(srv, "VmRSS")
    call = cl.query_rpc(pb.QueryRequest(from_ns=t, to_ns=t + 10**6), timeout=120)
    n = len(next(call).records)
    time.sleep(0.5)  # the server produces what flow control lets it
    grown = status_kib(srv, "VmRSS") - before
    assert grown < 64 * 1024, "a stalled query grew the server by %d KiB" % grown
    for resp in call:
        n += len(resp.records)
    assert n == 4 * 640, n


def window_block(block_id, t0, records=144):
    """A block whose zstd frame uses the largest window: ~9 MiB raw (64 KiB records)."""
    return tvtest.encode_block_zstd(block_id, None, level=1, window_log=WINDOW_LOG,
                                    raw_records=raw_records(t0, records, 64 << 10))


def test_a_query_over_its_memory_limit_is_resource_exhausted():
    """With --query-memory-bytes 16M, one block of the largest window is readable but three
    that overlap are not: RESOURCE_EXHAUSTED names the limit (and what to do)."""
    with tvtest.Server(extra_args=["--query-memory-bytes", "16M"]) as srv:
        cl = tvtest.GrpcClient(srv.addr, timeout_s=120)
        try:
            t = BASE + 10**12
            for k in range(3):
                cl.write_encoded(0x200 + k, [(0x200 + k, window_block(0x200 + k, t + k))])
            got, skipped, code, details, _ = cl.query_all(t, t + 1)
            assert code == OK and len(got) == 1, (code, details)
            got, skipped, code, details, _ = cl.query_all(t, t + 10**6)
            assert code == RESOURCE_EXHAUSTED, (code, details)
            assert "query's memory limit is reached (--query-memory-bytes 16M" in details, details
            assert not skipped
            assert "Query failed: RESOURCE_EXHAUSTED" in srv.log()
        finally:
            cl.close()


def test_queries_share_the_total_memory_limit():
    """--query-total-memory-bytes 16M: a stalled query holding one large-window block leaves
    too little for a second one (RESOURCE_EXHAUSTED, 'try again later'), which runs once the
    first is gone."""
    with tvtest.Server(extra_args=["--query-memory-bytes", "16M",
                                   "--query-total-memory-bytes", "16M"]) as srv:
        cl = tvtest.GrpcClient(srv.addr, timeout_s=120)
        try:
            t = BASE + 2 * 10**12
            cl.write_encoded(0x300, [(0x300, window_block(0x300, t, records=512))])
            q1 = cl.query_rpc(pb.QueryRequest(from_ns=t, to_ns=t + 10**6), timeout=120)
            assert next(q1).records
            got, _, code, details, _ = cl.query_all(t, t + 10**6)
            assert code == RESOURCE_EXHAUSTED, (code, details)
            assert "--query-total-memory-bytes 16M" in details and "try again later" in details, \
                details
            q1.cancel()
            deadline = time.monotonic() + 20
            while True:  # the cancel reaches the server's loop soon, not at once
                got, _, code, details, _ = cl.query_all(t, t + 10**6)
                if code == OK or time.monotonic() > deadline:
                    break
                time.sleep(0.1)
            assert code == OK and len(got) == 512, (code, details)
        finally:
            cl.close()


def test_open_block_files_are_limited(srv, cl):
    """513 blocks that all overlap need 513 files open at once: past the 512 that queries may
    hold together (TV_QUERY_MAX_OPEN_BLOCKS) the query ends RESOURCE_EXHAUSTED, and the
    descriptors come back (the next query over 100 of them runs)."""
    t = BASE + 4 * 10**12
    rec = tvtest.trace_record
    for k in range(513):
        cl.write_segment(0x1000 + k, [(0x1000 + k, [rec(t + k, k), rec(t + 10**6, k)])])
    got, _, code, details, _ = cl.query_all(t, t + 10**7)
    assert code == RESOURCE_EXHAUSTED, (code, details)
    assert "512 block files are open in queries" in details, details
    fd_dir = "/proc/%d/fd" % srv.proc.pid
    deadline = time.monotonic() + 10
    while len(os.listdir(fd_dir)) >= 100 and time.monotonic() < deadline:
        time.sleep(0.1)  # the call is freed once grpc hands back its last batch
    fds = sorted(os.readlink(os.path.join(fd_dir, f)) for f in os.listdir(fd_dir))
    assert len(fds) < 100, "%d descriptors still open after the query: %s" % (len(fds), fds[:5])
    got, _, code, details, _ = cl.query_all(t, t + 100)
    assert code == OK and len(got) == 100, (code, details)


def test_out_of_memory_is_resource_exhausted_with_a_readable_reason():
    """rel-13's kind: the server under RLIMIT_AS a little above what it uses, no query limit in
    the way, and a query over 12 overlapping large-window blocks: allocations fail, and the
    query ends RESOURCE_EXHAUSTED with a reason in plain text; a query of one block works
    after it (ASan's quarantine of freed memory is off so that memory really comes back)."""
    saved = os.environ.get("ASAN_OPTIONS")
    os.environ["ASAN_OPTIONS"] = ((saved + ":") if saved else "") + "quarantine_size_mb=0"
    try:
        with tvtest.Server(extra_args=["--query-memory-bytes", "1G",
                                       "--query-total-memory-bytes", "1G"]) as srv:
            restore_env("ASAN_OPTIONS", saved)
            out_of_memory_case(srv)
    finally:
        restore_env("ASAN_OPTIONS", saved)


def restore_env(name, value):
    if value is None:
        os.environ.pop(name, None)
    else:
        os.environ[name] = value


def out_of_memory_case(srv):
    cl = tvtest.GrpcClient(srv.addr, timeout_s=120)
    try:
        t = BASE + 3 * 10**12
        # block k starts at t + k: all overlap, and [t, t + 1) is block 0's alone
        for k in range(12):
            cl.write_encoded(0x400 + k, [(0x400 + k, window_block(0x400 + k, t + k))])
        got, _, code, details, _ = cl.query_all(t, t + 1)  # threads and buffers exist now
        assert code == OK and len(got) == 1, (code, details)
        vm = status_kib(srv, "VmSize") * 1024
        resource.prlimit(srv.proc.pid, resource.RLIMIT_AS, (vm + (48 << 20),) * 2)
        got, skipped, code, details, _ = cl.query_all(t, t + 10**6)
        assert code == RESOURCE_EXHAUSTED, (code, details, len(got))
        assert details and all(32 <= ord(ch) < 127 for ch in details), repr(details)
        assert "out of memory" in details, details
        assert srv.proc.poll() is None
        got, _, code, details, _ = cl.query_all(t, t + 1)
        assert code == OK and len(got) == 1, (code, details)
    finally:
        cl.close()


def main():
    tests = tvtest.cases(globals())
    results = tvtest.Results(len(tests))
    with tvtest.Server() as srv:
        cl = tvtest.GrpcClient(srv.addr, timeout_s=120)
        try:
            for t in tests:
                args = (srv, cl) if t.__code__.co_argcount == 2 else ()
                results.run(t, *args)
        finally:
            cl.close()
        rc = srv.stop()
        if rc != 0:
            results.fail("tracevaultd exit status %d after SIGTERM" % rc)
    return results.exit_code()


if __name__ == "__main__":
    sys.exit(main())
