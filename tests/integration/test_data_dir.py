"""The data dir has one owner (issue 10, kind 2; shared case rel-03): a second tracevaultd on a
data dir in use refuses to start, exit 1 naming the dir and the owner's pid, before it touches
anything: the first server's half-written segment (its temp file) survives and commits, and
every record stays readable. The lock goes with its owner: a restart after SIGTERM or kill -9
starts at once."""
import os
import signal
import subprocess
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import tvtest  # noqa: E402

grpc, pb = tvtest.grpc_modules()
cmd = tvtest.write_cmd


def second_instance(data_dir):
    return subprocess.run([tvtest.binary("tracevaultd"), "--data", data_dir, "--listen",
                           "127.0.0.1:0"], capture_output=True, text=True, timeout=30)


def test_second_server_refuses_and_touches_nothing():
    with tvtest.Server() as a:
        cl = tvtest.GrpcClient(a.addr)
        cl.write_segment(1, [(2, [tvtest.trace_record(1000 + i, i) for i in range(10)])])
        # a segment left half-written on A: its block's temp file is live while B starts
        data = tvtest.encode_block(4, [tvtest.trace_record(2000 + i, 100 + i) for i in range(50)])
        s = tvtest.WriteStream(cl)
        s.send(cmd(pb.OPEN_SEGMENT, segment_id=3),
               cmd(pb.OPEN_BLOCK, block_id=4, length=len(data)),
               *tvtest.write_chunks(4, data)[:-1])
        tvtest.wait_for(lambda: tvtest.tmp_files(a.data_dir), "A's temp file")
        temp_before = tvtest.tmp_files(a.data_dir)

        p = second_instance(a.data_dir)
        want = ("tracevaultd: data dir %s is in use: another tracevaultd (pid %d) holds it"
                % (a.data_dir, a.proc.pid))
        assert p.returncode == 1 and p.stderr == want + "\n" and p.stdout == "", \
            (p.returncode, p.stdout, p.stderr, want)
        assert tvtest.tmp_files(a.data_dir) == temp_before  # nothing recovered under A

        s.send(tvtest.write_chunks(4, data)[-1], cmd(pb.FLUSH), cmd(pb.COMMIT))
        s.end()
        replies = [r for r in s.call]
        assert replies and replies[-1].offset == len(data), replies
        got = sorted(r.pid for r in cl.query(0, 2**63 - 1))
        assert got == list(range(10)) + list(range(100, 150)), got
        cl.close()
        rc = a.stop()
        assert rc == 0, rc


def test_deleting_the_lock_file_does_not_unlock():
    """DIR/lock looks like a stale pidfile and may be deleted: the dir stays locked (the lock
    is on the directory too), so neither a second server nor --scrub runs on it."""
    with tvtest.Server() as a:
        os.unlink(os.path.join(a.data_dir, "lock"))
        p = second_instance(a.data_dir)
        assert p.returncode == 1 and p.stderr == (
            "tracevaultd: data dir %s is in use: another tracevaultd holds it\n" % a.data_dir), \
            (p.returncode, p.stderr)
        p = subprocess.run([tvtest.binary("tracevaultd"), "--data", a.data_dir, "--scrub"],
                           capture_output=True, text=True, timeout=30)
        assert p.returncode == 1 and "is in use" in p.stderr, (p.returncode, p.stderr)
        assert not os.path.exists(os.path.join(a.data_dir, "lock"))  # nothing was touched
        assert a.stop() == 0


def test_data_dir_through_a_symlink():
    """A data dir reached through a parent that is a symlink (as mounts are laid out) is served
    like its target: the catalog opens, data written through one name is read through the
    other. The data dir itself a symlink is refused (test_data_dir_layout.py)."""
    import shutil
    import tempfile
    top = tempfile.mkdtemp(prefix="tv-symlink-")
    try:
        for n in ("real1", "real2"):
            os.mkdir(os.path.join(top, n))
        os.symlink("real1", os.path.join(top, "link1"))  # a parent that is a symlink
        os.symlink("real2", os.path.join(top, "link2"))
        os.symlink("link2", os.path.join(top, "link3"))  # a parent that is a link to a link
        for data_dir in (os.path.join(top, "link1", "data"),
                         os.path.join(top, "link3", "data")):
            srv = tvtest.Server(data_dir=data_dir)
            try:
                srv.start()
                cl = tvtest.GrpcClient(srv.addr)
                sid = 0x51 if "link1" in data_dir else 0x52
                cl.write_segment(sid, [(sid + 1, [tvtest.trace_record(5000 + sid, 7)])])
                assert [r.pid for r in cl.query(5000 + sid, 5001 + sid)] == [7]
                cl.close()
                assert srv.stop() == 0
            finally:
                srv.cleanup()
        assert os.path.exists(os.path.join(top, "real1", "data", "catalog.db"))
        assert os.path.exists(os.path.join(top, "real2", "data", "catalog.db"))
    finally:
        shutil.rmtree(top, ignore_errors=True)


def test_lock_goes_with_its_owner():
    srv = tvtest.Server()
    try:
        srv.start()
        srv.listen = srv.addr
        assert srv.stop() == 0
        srv.start()  # after SIGTERM
        srv.proc.send_signal(signal.SIGKILL)
        srv.proc.wait(10)
        srv.start()  # after kill -9: the kernel dropped the lock with the process
        assert os.stat(os.path.join(srv.data_dir, "lock")).st_mode & 0o777 == 0o600
        assert srv.stop() == 0
    finally:
        srv.cleanup()


def main():
    tests = tvtest.cases(globals())
    results = tvtest.Results(len(tests))
    for t in tests:
        results.run(t)
    return results.exit_code()


if __name__ == "__main__":
    sys.exit(main())
