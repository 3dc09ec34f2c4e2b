"""The server's query merge at its edges, through grpcio and blocks encoded here (BLOCK.md):
[from_ns, to_ns) with records exactly on both edges, records of equal ts_ns in two blocks
(block order breaks the tie), and a block file that is a valid block of the same id and time
range as its catalog row but not the committed one (a different size) is DATA_LOSS."""
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import tvtest  # noqa: E402

grpc = tvtest.grpc_modules()[0]

BASE = 1_800_000_000 * 10**9

rec = tvtest.trace_record  # (ts_ns, pid, path="/"): 5 ns, comm "t", GET, status 200


def pids(cl, from_ns, to_ns, limit=0):
    return [r.pid for r in cl.query(from_ns, to_ns, limit)]


def test_window_edges(cl):
    """from_ns is inclusive, to_ns exclusive: a record exactly at to_ns is out, one exactly
    at from_ns is in (also where the edge falls inside a block, not at its start)."""
    ts = [BASE + 10, BASE + 20, BASE + 30, BASE + 40]
    cl.write_segment(0x51, [(0x510, [rec(t, i + 1) for i, t in enumerate(ts)])])
    for frm, to, want in ((BASE + 20, BASE + 40, [2, 3]), (BASE + 10, BASE + 11, [1]),
                          (BASE + 11, BASE + 20, []), (BASE + 30, BASE + 41, [3, 4])):
        got = pids(cl, frm, to)
        assert got == want, ("[base+%d, base+%d)" % (frm - BASE, to - BASE), got, want)


def test_equal_ts_across_blocks_in_block_order(cl):
    """Two blocks, each with a record at T: the block that starts first (lower min_ts_ns)
    gives its record at T first, in every query; within a block arrival order holds."""
    t = BASE + 1000
    a = [rec(t - 5, 101), rec(t, 102), rec(t + 5, 103)]
    b = [rec(t, 201), rec(t + 1, 202)]
    cl.write_segment(0x52, [(0x520, a)])
    cl.write_segment(0x53, [(0x521, b)])
    want = [101, 102, 201, 202, 103]
    assert pids(cl, t - 100, t + 100) == want, pids(cl, t - 100, t + 100)
    assert pids(cl, t, t + 100) == want[1:], pids(cl, t, t + 100)
    assert pids(cl, t, t + 1) == [102, 201], pids(cl, t, t + 1)


def test_block_file_of_other_size_is_data_loss(srv, cl):
    """A file under the committed block's name with the same id and time range but one more
    record (so a different size than the catalog's bytes) is not the committed block."""
    t = BASE + 5000
    block_id = 0x540
    committed = tvtest.encode_block(block_id, [rec(t, 1), rec(t + 10, 2)])
    cl.write_encoded(0x54, [(block_id, committed)])
    other = tvtest.encode_block(block_id, [rec(t, 1), rec(t + 5, 9), rec(t + 10, 2)])
    assert len(other) != len(committed)
    path = tvtest.block_path(srv.data_dir, block_id)
    with open(path, "wb") as f:
        f.write(other)
    try:
        recs = cl.query(t, t + 11)
        raise AssertionError("a swapped block file was served: %r" % [r.pid for r in recs])
    except grpc.RpcError as e:
        assert e.code() == grpc.StatusCode.DATA_LOSS, e
        assert "%016x: file does not match its catalog entry" % block_id in e.details(), \
            e.details()
    assert srv.proc.poll() is None


def main():
    with tvtest.Server() as srv:
        cl = tvtest.GrpcClient(srv.addr)
        try:
            test_window_edges(cl)
            print("ok window edges")
            test_equal_ts_across_blocks_in_block_order(cl)
            print("ok equal ts across blocks")
            test_block_file_of_other_size_is_data_loss(srv, cl)
            print("ok swapped block file")
        finally:
            cl.close()
    print("PASS")


if __name__ == "__main__":
    main()
