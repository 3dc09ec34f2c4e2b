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
        want = ("tracevaultd: data dir %s is in use: another tracevaultd (pid %d) holds %s/lock"
                % (a.data_dir, a.proc.pid, a.data_dir))
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
