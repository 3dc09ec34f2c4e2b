"""tracevaultd's resources stay bounded and it keeps serving (issue 10 kind 6; shared case
rel-06): descriptors never run out, whatever clients do, because gRPC 1.51's listener stops
accepting for good after one accept fails with EMFILE. Each case runs its own daemon, most
under a low RLIMIT_NOFILE (soft = hard, so start-up cannot raise it), and checks the limit's
status and message, that nothing is left behind, and that a valid put works afterwards."""
import os
import resource
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import tvtest  # noqa: E402

grpc, pb = tvtest.grpc_modules()
record = tvtest.trace_record
cmd = tvtest.write_cmd
TS0 = 1767225600000000000  # 2026-01-01T00:00:00Z


def nofile(n):
    """preexec_fn: the daemon alone runs with RLIMIT_NOFILE n (soft and hard)."""
    return lambda: resource.setrlimit(resource.RLIMIT_NOFILE, (n, n))


def server(limit=None, extra=()):
    return tvtest.Server(extra_args=list(extra), preexec_fn=nofile(limit) if limit else None)


def fds(srv):
    return len(os.listdir("/proc/%d/fd" % srv.proc.pid))


def tmp_files(srv):
    return os.listdir(os.path.join(srv.data_dir, "tmp"))


def small_file(n=10, base=TS0):
    fd, path = tempfile.mkstemp(prefix="tv-limits-", suffix=".jsonl")
    with os.fdopen(fd, "w") as f:
        for i in range(n):
            f.write('{"ts_ns":%d,"path":"/limits"}\n' % (base + i))
    return path


def put_works(srv, base=TS0):
    """A valid put on a new connection succeeds and its records are there."""
    path = small_file(base=base)
    try:
        p = tvtest.run(["put", "--server", srv.addr, path], timeout=60)
        assert p.returncode == 0, "put failed: %s" % p.stderr.strip()
        q = tvtest.run(["query", "--server", srv.addr, "--from", str(base),
                        "--to", str(base + 10)], timeout=60, check=True)
        assert len(q.stdout.splitlines()) == 10, q.stdout
    finally:
        os.unlink(path)


# ---- cases ----

def test_segment_of_many_blocks_within_a_low_descriptor_limit():
    """One well-formed segment of 600 one-record blocks under RLIMIT_NOFILE 128: a block's
    temp file is closed once its data is synced, so the blocks waiting for COMMIT hold no
    descriptor (seen before: every open block kept its fd until COMMIT, and the segment ended
    INTERNAL "cannot create temp file: Too many open files")."""
    with server(128) as srv:
        cl = tvtest.GrpcClient(srv.addr, timeout_s=120)
        blocks = [(0x1000 + i, [record(TS0 + i, pid=i, path="/many")]) for i in range(600)]
        final = cl.write_segment(0x600, blocks)
        assert final.committed and len(final.committed_block_ids) == 600
        assert len(cl.query(TS0, TS0 + 600)) == 600
        cl.close()
        assert tmp_files(srv) == []
        put_works(srv, TS0 + 1000)


def main():
    tests = tvtest.cases(globals(), only=sys.argv[1:])
    results = tvtest.Results(len(tests))
    for t in tests:
        results.run(t)
    return results.exit_code()


if __name__ == "__main__":
    sys.exit(main())
