"""The catalog's failures answer the status that says why (issue 10, kind 7; shared case rel-09):
a disk that fills at the catalog commit (the block files fit, SQLite's WAL does not) ends the
Write with RESOURCE_EXHAUSTED naming "No space left on device", like a full disk at any other
step (PROTOCOL.md's status table), and nothing of the segment is committed or left on disk: the
same block id commits once space is back. Needs CAP_SYS_ADMIN for a small tmpfs."""
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import tvtest  # noqa: E402

grpc, pb = tvtest.grpc_modules()
cmd = tvtest.write_cmd
FILL_CHUNK = 4096
MAX_FILL_BYTES = 64 << 20  # bound on the fill loop: far above the tmpfs size


def fill(path):
    """Write path until the file system is full (ENOSPC); returns the bytes written."""
    n = 0
    with open(path, "wb", buffering=0) as f:
        while n < MAX_FILL_BYTES:
            try:
                n += f.write(b"f" * FILL_CHUNK)
            except OSError as e:
                assert e.errno == 28, e  # ENOSPC
                return n
    raise AssertionError("the tmpfs never filled")


def test_full_disk_at_catalog_commit_is_resource_exhausted():
    try:
        mnt = tvtest.mount_tmpfs("4m")
    except tvtest.Unavailable as e:
        tvtest.skip(str(e))
    try:
        with tvtest.Server(data_dir=os.path.join(mnt, "data")) as srv:
            cl = tvtest.GrpcClient(srv.addr)
            recs = [tvtest.trace_record(5000 + i, i) for i in range(40)]
            data = tvtest.encode_block(0x11, recs)
            s = tvtest.WriteStream(cl)
            s.send(cmd(pb.OPEN_SEGMENT, segment_id=0x10),
                   cmd(pb.OPEN_BLOCK, block_id=0x11, length=len(data)),
                   *tvtest.write_chunks(0x11, data))
            s.wait_acked(0x11, len(data))
            s.send(cmd(pb.FLUSH))
            flushed = s.next()
            assert flushed.block_id == 0 and flushed.offset == len(data), flushed
            # the block is durable in tmp/; now nothing is left for the catalog's WAL
            fill(os.path.join(mnt, "fill"))
            s.send(cmd(pb.COMMIT, segment_id=0x10))
            s.end()
            try:
                replies = list(s.call)
                raise AssertionError("COMMIT on a full disk succeeded: %r" % replies)
            except grpc.RpcError as e:
                code, details = e.code(), e.details()
            assert code == grpc.StatusCode.RESOURCE_EXHAUSTED, (code, details)
            assert "catalog commit: No space left on device" in details, details
            log = "\n".join(tvtest.segment_log_lines(srv.log(), 0x10))
            assert "aborted: catalog commit: No space left on device" in log, log
            # nothing half-committed: no row, no block file, no temp file
            assert tvtest.catalog_blocks(srv.data_dir) == {}
            assert tvtest.block_files(srv.data_dir) == set()
            assert tvtest.tmp_files(srv.data_dir) == []
            assert cl.query(0, 1 << 63) == []
            os.unlink(os.path.join(mnt, "fill"))
            # the block id was never committed: it commits now, under a new segment id
            r = cl.write_segment(0x20, [(0x11, recs)])
            assert r.committed and list(r.committed_block_ids) == [0x11], r
            assert [x.pid for x in cl.query(0, 1 << 63)] == list(range(40))
            cl.close()
            assert srv.stop() == 0
    finally:
        tvtest.umount_tmpfs(mnt)


def main():
    tests = tvtest.cases(globals())
    results = tvtest.Results(len(tests))
    for t in tests:
        results.run(t)
    return results.exit_code()


if __name__ == "__main__":
    sys.exit(main())
