"""Only valid blocks are acknowledged (issue 10 kind 3): tracevaultd checks every block it is
sent against BLOCK.md's rules (the payload decompressed, every record walked: parseable, sorted,
inside the header's range that its first and last records bound, exactly record_count of them,
none above the record limit; the header's reserved fields 0, an empty block one instant) before
the block can reach COMMIT. A block that breaks one ends the stream with PROTOCOL.md's status
(DATA_LOSS, INVALID_ARGUMENT for a reserved field, RESOURCE_EXHAUSTED for a record above the
limit), leaves nothing behind, and every record committed before it stays readable. Blocks
are made here by hand (tvtest.encode_block_as): headers and payload CRCs are always right, so
only the content checks can refuse them."""
import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import tvtest  # noqa: E402

grpc, pb = tvtest.grpc_modules()

BASE = 1_764_000_000_000_000_000
MAX_RECORD_BYTES = 1 << 20  # TV_BLOCK_MAX_RECORD_BYTES
rec = tvtest.trace_record   # (ts_ns, pid, path="/"): 5 ns, comm "t", GET, status 200
cmd = tvtest.write_cmd
block = tvtest.encode_block_as


def packed(ts_ns, path="/p"):
    return rec(ts_ns, 1, path).SerializeToString()


def sized_record(ts_ns, size):
    """A packed TraceRecord of exactly size bytes (its path sized to fit)."""
    path = size - 64
    for _ in range(8):
        b = packed(ts_ns, "/" + "x" * (path - 1))
        if len(b) == size:
            return b
        path += size - len(b)
    raise AssertionError("no record of %d bytes" % size)


GOOD = [rec(BASE + i, 1, "/good%d" % i) for i in range(100)]


def ten(start=BASE):
    return [packed(start + i) for i in range(10)]


# (what, the block, the status, words of the reason)
def invalid_blocks():
    not_sorted = ten()
    not_sorted[4], not_sorted[5] = not_sorted[5], not_sorted[4]
    return [
        ("zstd codec, payload not a zstd frame (rel-04)",
         block(0x201, [], codec=1, payload=b"not a zstd frame" * 8, raw_bytes=1000, count=10,
               min_ts=BASE, max_ts=BASE + 9),
         grpc.StatusCode.DATA_LOSS, "does not decompress"),
        ("records not sorted by ts_ns", block(0x202, not_sorted, min_ts=BASE, max_ts=BASE + 9),
         grpc.StatusCode.DATA_LOSS, "(not sorted)"),
        ("a record above the header's max_ts_ns", block(0x203, ten(), max_ts=BASE + 8),
         grpc.StatusCode.DATA_LOSS, "outside the header's"),
        ("a record without ts_ns (0) in a block of [BASE, BASE]",
         block(0x204, [packed(0)], min_ts=BASE, max_ts=BASE),
         grpc.StatusCode.DATA_LOSS, "ts_ns 0 outside"),
        ("a range claiming all of time around its records (rel-04)",
         block(0x205, ten(), min_ts=0, max_ts=2**63 - 1),
         grpc.StatusCode.DATA_LOSS, "not the header's min_ts_ns"),
        ("record_count 3 for 10 records", block(0x206, ten(), count=3),
         grpc.StatusCode.DATA_LOSS, "more records than record_count 3"),
        ("record_count 11 for 10 records", block(0x207, ten(), count=11),
         grpc.StatusCode.DATA_LOSS, "10 records, header says record_count 11"),
        ("payload ff ff ff, not a record", block(0x208, [], payload=b"\xff\xff\xff",
                                                 raw_bytes=3, count=1, min_ts=BASE,
                                                 max_ts=BASE),
         grpc.StatusCode.DATA_LOSS, "cut short"),
        ("a record that is not a TraceRecord (a string longer than the record)",
         block(0x209, [b"\x08\x01\x2a\x05\x41"], min_ts=1, max_ts=1),
         grpc.StatusCode.DATA_LOSS, "not a TraceRecord"),
        ("zstd raw_bytes one more than the frame holds",
         block(0x20A, ten(), codec=1, raw_bytes=len(b"".join(
             tvtest.varint(len(r)) + r for r in ten())) + 1),
         grpc.StatusCode.DATA_LOSS, "decompresses to"),
        ("a block without records over all of time",
         block(0x20B, [], min_ts=0, max_ts=2**63 - 1),
         grpc.StatusCode.DATA_LOSS, "min_ts_ns == max_ts_ns"),
        ("header flags set (reserved)", block(0x20C, ten(), flags=1),
         grpc.StatusCode.INVALID_ARGUMENT, "reserved header field"),
        ("a record one byte above the record limit (rel-04's variant)",
         block(0x20D, [sized_record(BASE, MAX_RECORD_BYTES + 1)]),
         grpc.StatusCode.RESOURCE_EXHAUSTED, "above the limit of 1048576 bytes"),
    ]


def test_invalid_blocks_are_refused_and_leave_nothing(srv, cl):
    """Each block breaking one rule, sent after a valid block of the same segment: the stream
    ends with the rule's status naming the block, nothing of the segment is kept, and the
    records of the segment committed before stay readable over every range."""
    resp = cl.write_segment(0x100, [(0x101, GOOD)])
    assert resp.committed, resp
    good = tvtest.encode_block(0x301, [rec(BASE + 50 + i, 2, "/x") for i in range(5)])
    for k, (what, data, code, needle) in enumerate(invalid_blocks()):
        bid = int.from_bytes(data[8:16], "little")
        seg = 0x400 + k
        _, got, details = cl.write_requests(
            [cmd(pb.OPEN_SEGMENT, segment_id=seg),
             cmd(pb.OPEN_BLOCK, block_id=0x301, length=len(good))] +
            tvtest.write_chunks(0x301, good) +
            [cmd(pb.OPEN_BLOCK, block_id=bid, length=len(data))] +
            tvtest.write_chunks(bid, data, chunk_bytes=64 << 10) + [cmd(pb.COMMIT)])
        assert got == code, (what, got, details)
        assert needle in details and "block %016x" % bid in details, (what, details)
        assert tvtest.tmp_files(srv.data_dir) == [], (what, tvtest.tmp_files(srv.data_dir))
        held = {b for b, s in tvtest.catalog_blocks(srv.data_dir).items() if s == seg}
        assert not held, (what, held)
        paths = [r.path for r in cl.query(0, (1 << 64) - 1)]
        assert [p for p in paths if p.startswith("/good")] == ["/good%d" % i for i in range(100)] \
            and "/x" not in paths, (what, len(paths))


def test_edge_blocks_are_committed(srv, cl):
    """The accepted side of each edge: a record of exactly the limit, equal timestamps, a block
    without records at one instant, a zstd payload and a version 1 block."""
    ties = [packed(BASE + 1000), packed(BASE + 1000), packed(BASE + 1001)]
    blocks = [(0x501, block(0x501, [sized_record(BASE + 999, MAX_RECORD_BYTES)])),
              (0x502, block(0x502, ties)),
              (0x503, block(0x503, [], min_ts=BASE + 1002, max_ts=BASE + 1002)),
              (0x504, block(0x504, ten(BASE + 1003), codec=1)),
              (0x505, block(0x505, ten(BASE + 1013), version=1))]
    resp = cl.write_encoded(0x500, blocks, chunk_bytes=256 << 10)
    assert resp.committed and sorted(resp.committed_block_ids) == [b for b, _ in blocks], resp
    got = [r.ts_ns - BASE for r in cl.query(BASE + 999, BASE + 1023)]
    assert got == [999, 1000, 1000, 1001] + list(range(1003, 1023)), got


def test_a_bad_block_fails_before_its_end_arrives(srv, cl):
    """The check runs as the bytes arrive: a block whose first chunk holds records out of
    order is refused without waiting for the rest of the block (the stream is never
    half-closed here, so only an early check can end it)."""
    recs = [packed(BASE + 2000 + i, "/" + "y" * 100) for i in range(2000)]
    recs[1], recs[2] = recs[2], recs[1]
    data = block(0x601, recs, min_ts=BASE + 2000, max_ts=BASE + 3999)
    s = tvtest.WriteStream(cl)
    s.send(cmd(pb.OPEN_SEGMENT, segment_id=0x600),
           cmd(pb.OPEN_BLOCK, block_id=0x601, length=len(data)),
           tvtest.write_chunk(0x601, data[:4096], 0))
    start = time.monotonic()
    try:
        for _ in s.call:
            pass
        raise AssertionError("stream with an unsorted block ended OK")
    except grpc.RpcError as e:
        assert e.code() == grpc.StatusCode.DATA_LOSS and "(not sorted)" in e.details(), e
    assert time.monotonic() - start < 10
    s.end()
    assert tvtest.tmp_files(srv.data_dir) == []


def main():
    tests = tvtest.cases(globals())
    results = tvtest.Results(len(tests))
    with tvtest.Server() as srv:
        cl = tvtest.GrpcClient(srv.addr)
        for t in tests:
            results.run(t, srv, cl)
        cl.close()
        if srv.stop() != 0:
            results.fail("tracevaultd did not exit 0 on SIGTERM")
    return results.exit_code()


if __name__ == "__main__":
    sys.exit(main())
