"""tracevaultd's Write stream at the edges the C client never reaches, through grpcio and blocks
encoded here (BLOCK.md): a FLUSH while a block is still incomplete answers only the bytes that
are durable (the complete, synced blocks), not every byte received; the largest supported
timestamp, 2^63-1, is a valid max_ts_ns and one more is not; a block of exactly the server's
maximum size may be opened (one byte more may not)."""
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import tvtest  # noqa: E402

grpc, pb = tvtest.grpc_modules()

MAX_BLOCK_BYTES = 64 << 20  # TV_WIRE_MAX_BLOCK_BYTES

rec = tvtest.trace_record  # (ts_ns, pid, path="/"): 5 ns, comm "t", GET, status 200
cmd = tvtest.write_cmd
chunk = tvtest.write_chunk  # (block_id, data, offset): one chunk, its CRC32C


def test_flush_with_an_incomplete_block_counts_durable_bytes_only(srv, cl):
    a = tvtest.encode_block(0xA1, [rec(1000 + i, i, "/p/%d" % i) for i in range(50)])
    b = tvtest.encode_block(0xA2, [rec(2000 + i, i, "/p/%d" % i) for i in range(50)])
    half = len(b) // 2
    s = tvtest.WriteStream(cl)
    s.send(cmd(pb.OPEN_SEGMENT, segment_id=0xA0),
           cmd(pb.OPEN_BLOCK, block_id=0xA1, length=len(a)), chunk(0xA1, a, 0),
           cmd(pb.OPEN_BLOCK, block_id=0xA2, length=len(b)), chunk(0xA2, b[:half], 0))
    acks = [s.next(), s.next()]
    assert [(x.block_id, x.offset) for x in acks] == [(0xA1, len(a)), (0xA2, half)], acks
    s.send(cmd(pb.FLUSH))
    reply = s.next()
    # block A is complete and synced; B's first half is written but not durable
    assert (reply.block_id, reply.offset, reply.committed) == (0, len(a), False), \
        (reply, len(a), half)
    # the rest of B, a second FLUSH: now both blocks count
    s.send(chunk(0xA2, b[half:], half), cmd(pb.FLUSH))
    ack, reply = s.next(), s.next()
    assert (ack.block_id, ack.offset) == (0xA2, len(b)), ack
    assert reply.offset == len(a) + len(b), (reply, len(a) + len(b))
    s.send(cmd(pb.CANCEL))
    s.end()
    assert list(s.call) == []


def test_max_ts_edge(srv, cl):
    top = (1 << 63) - 1
    blk = tvtest.encode_block(0xB1, [rec(top - 1, 1, "/p/1"), rec(top, 2, "/p/2")])
    resp = cl.write_encoded(0xB0, [(0xB1, blk)])
    assert resp.committed and list(resp.committed_block_ids) == [0xB1], resp
    got = [(r.ts_ns, r.pid) for r in cl.query(top - 1, (1 << 64) - 1)]
    assert got == [(top - 1, 1), (top, 2)], got
    # one past it: refused before a byte is stored
    blk = tvtest.encode_block(0xB3, [rec(top, 3, "/p/3"), rec(top + 1, 4, "/p/4")])
    try:
        cl.write_encoded(0xB2, [(0xB3, blk)])
        raise AssertionError("a block with max_ts_ns 2^63 was committed")
    except grpc.RpcError as e:
        assert e.code() == grpc.StatusCode.INVALID_ARGUMENT, e
        assert "max_ts_ns %d beyond the supported 2^63-1" % (top + 1) in e.details(), e.details()


def test_block_of_exactly_the_max_size_may_be_opened(srv, cl):
    """OPEN_BLOCK of exactly 64 MiB is accepted (the stream is then cancelled: OK, nothing
    stored); 64 MiB + 1 is RESOURCE_EXHAUSTED."""
    for length, code in ((MAX_BLOCK_BYTES, grpc.StatusCode.OK),
                         (MAX_BLOCK_BYTES + 1, grpc.StatusCode.RESOURCE_EXHAUSTED)):
        s = tvtest.WriteStream(cl)
        s.send(cmd(pb.OPEN_SEGMENT, segment_id=0xC0), cmd(pb.OPEN_BLOCK, block_id=0xC1,
                                                           length=length), cmd(pb.CANCEL))
        s.end()
        try:
            assert list(s.call) == []
            got = s.call.code()
        except grpc.RpcError as e:
            got = e.code()
            assert "exceeds the server limit of %d bytes" % MAX_BLOCK_BYTES in e.details(), e
        assert got == code, (length, got, code)


def main():
    with tvtest.Server() as srv:
        cl = tvtest.GrpcClient(srv.addr)
        try:
            for t in (test_flush_with_an_incomplete_block_counts_durable_bytes_only,
                      test_max_ts_edge, test_block_of_exactly_the_max_size_may_be_opened):
                t(srv, cl)
                print("ok " + t.__name__)
        finally:
            cl.close()
    print("PASS")


if __name__ == "__main__":
    main()
