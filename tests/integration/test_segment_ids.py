"""Ids cannot reach another writer's data (issue 10 kind 4): a segment id is used once for the
life of the archive (OPEN_SEGMENT of an id committed, deleted, or open on another stream is
ALREADY_EXISTS, also after a restart), and Delete{segment_id} removes a segment only with the
writer_token of its OPEN_SEGMENT (PERMISSION_DENIED otherwise, nothing touched, in-flight
streams included), so a failing writer's cleanup can only remove what it wrote. Delete of block
ids, the operator's form, needs no token. Hand-made messages through grpcio."""
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import tvtest  # noqa: E402

grpc, pb = tvtest.grpc_modules()

BASE = 1_765_000_000_000_000_000
rec = tvtest.trace_record  # (ts_ns, pid, path="/"): 5 ns, comm "t", GET, status 200
cmd = tvtest.write_cmd
OK = grpc.StatusCode.OK
T1, T2 = 0x1111_2222_3333_4444, 0x5555_6666_7777_8888  # two writers' tokens


def records(cl, start, n):
    return [r.pid for r in cl.query(BASE + start, BASE + start + n)]


def segment(seg, bid, start, n=50, token=T1, commit=True, bad_crc=False):
    data = tvtest.encode_block(bid, [rec(BASE + start + i, i) for i in range(n)])
    reqs = [cmd(pb.OPEN_SEGMENT, segment_id=seg, writer_token=token),
            cmd(pb.OPEN_BLOCK, block_id=bid, length=len(data))]
    reqs += tvtest.write_chunks(bid, data, bad_crc_at=0 if bad_crc else None)
    return reqs + ([cmd(pb.COMMIT)] if commit else [])


def test_second_writer_with_a_committed_id_cannot_delete_it(srv, cl):
    """rel-05: writer 1 commits segment S; writer 2 happens to use S, fails, and cleans up as
    PROTOCOL.md says. Its OPEN_SEGMENT is refused and its Delete (its own token, or none as an
    older writer sends) removes nothing: writer 1's acknowledged records all stay."""
    _, code, details = cl.write_requests(segment(0x5E6, 0xA1, 0))
    assert code == OK, details
    _, code, details = cl.write_requests(segment(0x5E6, 0xB1, 1000, token=T2, bad_crc=True))
    assert code == grpc.StatusCode.ALREADY_EXISTS, (code, details)
    assert "segment 00000000000005e6 was committed already" in details, details
    for token in (T2, 0):
        code, details, _ = cl.delete_segment(0x5E6, token)
        assert code == grpc.StatusCode.PERMISSION_DENIED and "nothing deleted" in details, \
            (token, code, details)
    assert records(cl, 0, 50) == list(range(50))
    assert records(cl, 1000, 5) == []
    assert "Delete failed: PERMISSION_DENIED: segment 00000000000005e6" in srv.log()
    # the writer itself can: its token removes its segment
    code, details, resp = cl.delete_segment(0x5E6, T1)
    assert code == OK and resp.deleted_blocks == 1, (code, details, resp)
    assert records(cl, 0, 50) == []


def test_two_streams_cannot_hold_one_id(srv, cl):
    """An id open on one stream is ALREADY_EXISTS on another (it used to let both commit, and
    one Delete then removed both); the first stream commits undisturbed."""
    s = tvtest.WriteStream(cl)
    data = tvtest.encode_block(0xC1, [rec(BASE + 2000 + i, i) for i in range(20)])
    s.send(cmd(pb.OPEN_SEGMENT, segment_id=0xC0, writer_token=T1),
           cmd(pb.OPEN_BLOCK, block_id=0xC1, length=len(data)),
           *tvtest.write_chunks(0xC1, data))
    s.wait_acked(0xC1, len(data))
    _, code, details = cl.write_requests(segment(0xC0, 0xC2, 2100, token=T2))
    assert code == grpc.StatusCode.ALREADY_EXISTS, (code, details)
    assert "being written by another stream" in details, details
    # and another writer's Delete does not abort it
    code, details, _ = cl.delete_segment(0xC0, T2)
    assert code == grpc.StatusCode.PERMISSION_DENIED and "is being written" in details, details
    s.send(cmd(pb.COMMIT))
    assert s.next().committed
    s.end()
    assert list(s.call) == [] and s.call.code() == OK
    assert records(cl, 2000, 20) == list(range(20)) and records(cl, 2100, 50) == []


def test_the_writer_deletes_its_in_flight_segment(srv, cl):
    """Its own token aborts its stream (ABORTED) and removes the temp data, as before."""
    s = tvtest.WriteStream(cl)
    data = tvtest.encode_block(0xD1, [rec(BASE + 3000 + i, i) for i in range(20)])
    s.send(cmd(pb.OPEN_SEGMENT, segment_id=0xD0, writer_token=T1),
           cmd(pb.OPEN_BLOCK, block_id=0xD1, length=len(data)),
           *tvtest.write_chunks(0xD1, data))
    s.wait_acked(0xD1, len(data))
    code, details, resp = cl.delete_segment(0xD0, T1)
    assert code == OK and resp.deleted_temp_blocks == 1, (code, details, resp)
    s.end()
    try:
        list(s.call)
        raise AssertionError("a deleted segment's stream succeeded")
    except grpc.RpcError as e:
        assert e.code() == grpc.StatusCode.ABORTED, e
    assert tvtest.tmp_files(srv.data_dir) == []


def test_deleted_and_committed_ids_stay_used(srv, cl):
    """A deleted id cannot come back, nor one a Delete named before it existed (a late
    OPEN_SEGMENT of a writer that already cleaned up); after a restart neither can, nor a
    committed one. An id whose stream ended without a commit kept nothing and is free."""
    _, code, details = cl.write_requests(segment(0xE0, 0xE1, 4000))
    assert code == OK, details
    assert cl.delete_segment(0xE0, T1)[0] == OK
    code, details, resp = cl.delete_segment(0xE2, T1)  # never opened
    assert code == OK and resp.deleted_blocks == 0, (code, details)
    _, code, details = cl.write_requests(segment(0xE4, 0xE5, 4200))
    assert code == OK, details
    _, code, details = cl.write_requests(segment(0xE6, 0xE7, 4300, bad_crc=True))
    assert code == grpc.StatusCode.DATA_LOSS, (code, details)
    assert srv.stop() == 0
    srv.start()
    cl2 = tvtest.GrpcClient(srv.addr)
    try:
        for seg, word in ((0xE0, "deleted"), (0xE2, "deleted"), (0xE4, "committed")):
            _, code, details = cl2.write_requests(segment(seg, 0xF0 + seg, 4400))
            assert code == grpc.StatusCode.ALREADY_EXISTS, (hex(seg), code, details)
            assert "was %s already" % word in details, details
        _, code, details = cl2.write_requests(segment(0xE6, 0xE7, 4300))
        assert code == OK, details
        assert records(cl2, 4200, 50) == list(range(50))
    finally:
        cl2.close()


def test_segment_without_token_is_removed_by_block_ids_only(srv, cl):
    """A writer that sends no token (before this field) still commits; no Delete{segment_id}
    can match its segment, and Delete{block_ids} (no token) removes it."""
    _, code, details = cl.write_requests(segment(0x90, 0x91, 5000, token=0))
    assert code == OK, details
    for token in (0, T1):
        code, details, _ = cl.delete_segment(0x90, token)
        assert code == grpc.StatusCode.PERMISSION_DENIED, (code, details)
        assert "only a Delete of its block ids removes it" in details, details
    assert records(cl, 5000, 50) == list(range(50))
    code, details, resp = cl.delete_segment(0, 0, block_ids=[0x91])
    assert code == OK and resp.deleted_blocks == 1, (code, details, resp)
    assert records(cl, 5000, 50) == []


def main():
    tests = tvtest.cases(globals())
    results = tvtest.Results(len(tests))
    with tvtest.Server() as srv:
        for t in tests:
            cl = tvtest.GrpcClient(srv.addr)
            results.run(t, srv, cl)
            cl.close()
        if srv.stop() != 0:
            results.fail("tracevaultd did not exit 0 on SIGTERM")
    return results.exit_code()


if __name__ == "__main__":
    sys.exit(main())
