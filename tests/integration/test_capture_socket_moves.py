"""A connection used by another process or descriptor than the one that accepted it (issue 11,
kind 2): a forking server (the parent accepts, a child serves), a descriptor dup2'd to another
number, one passed over a unix socket (SCM_RIGHTS) to a worker process, and a close() of one
of two descriptors of a connection that goes on. The server is tests/tools/tv_moves_http.py.
Every request it answers must be exactly one server-side record, in tracepoint mode (which
follows the kernel's socket, not the (pid, fd) that accepted it, and gives each record the pid
of the process that served it) and in sockfilter mode (which sees the packets whoever sends
them); nothing lost.

Also the helpers test_capture_conn_end.py and test_capture_unhooked.py use: MovesHttp, the
capture of one run with its server-side records, the modes available."""
import json
import os
import select
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import test_capture_sockfilter as sockfilter  # noqa: E402  (its availability check)
import tvtest  # noqa: E402
from tvtest import RawHttp, http_request as req  # noqa: E402

START_TIMEOUT_S = 10
SERVER = os.path.join(os.environ.get("TV_SOURCE_DIR",
                                     os.path.join(os.path.dirname(__file__), "..", "..")),
                      "tests", "tools", "tv_moves_http.py")
MODES = ("tracepoint", "sockfilter")


class MovesHttp(tvtest.HttpServer):
    """tests/tools/tv_moves_http.py with args, on the free port it reports as 'port N'; its
    log lines are (method, path, status, body bytes, pid)."""

    def __init__(self, *args):
        self.dir = tempfile.mkdtemp(prefix="tv-moves-")
        self.logfile = os.path.join(self.dir, "served.log")
        self.args = ["--log", self.logfile, "--uring", tvtest.binary("tv_uring_io")] + list(args)
        self.port = None
        self.proc = None

    def start(self, timeout=START_TIMEOUT_S):
        self.err = open(os.path.join(self.dir, "stderr.log"), "w")
        self.proc = subprocess.Popen(["/usr/bin/python3", SERVER] + self.args,
                                     stdout=subprocess.PIPE, stderr=self.err, text=True,
                                     start_new_session=True)
        ready, _, _ = select.select([self.proc.stdout], [], [], timeout)
        line = self.proc.stdout.readline() if ready else ""
        if not line.startswith("port "):
            self.stop()
            raise AssertionError("tv_moves_http did not start: %r %s" % (line, self.stderr()))
        self.port = int(line.split()[1])
        return self

    def stop(self):
        """Ends the server and every process it left (forked children, exec'd sleep)."""
        if self.proc:
            try:
                os.killpg(self.proc.pid, 9)
            except ProcessLookupError:
                pass
            self.proc.wait()
            self.err.close()

    def stderr(self):
        return open(os.path.join(self.dir, "stderr.log")).read()

    def served(self):
        """[(method, path, status, body bytes, pid)] of the requests it answered."""
        if not os.path.exists(self.logfile):
            return []
        out = []
        for line in open(self.logfile):
            m, p, s, n, pid = line.split()
            out.append((m, p, int(s), int(n), int(pid)))
        return out


def mode_args(mode, port):
    if mode == "sockfilter":
        return ["--mode", "sockfilter", "--port", str(port)]
    return ["--port", str(port)]


def available_modes():
    """(modes to run, skip reasons of the others)."""
    modes, why = [], []
    r = tvtest.bpf_unavailable_reason()
    if r:
        return [], [r]
    modes.append("tracepoint")
    r = sockfilter.unavailable_reason()
    if r:
        why.append("sockfilter: " + r)
    else:
        modes.append("sockfilter")
    return modes, why


def server_records(srv, server, mode, traffic):
    """Runs traffic() under a capture of server's port in mode: (server-side records, summary
    numbers, capture stderr)."""
    recs, nums, err = tvtest.capture_records(srv, mode_args(mode, server.port), traffic)
    mine = [r for r in recs if r["local"] == "127.0.0.1:%d" % server.port]
    return mine, nums, err


def keepalive(port, paths):
    """One connection, a GET of each path in turn; the statuses the client saw."""
    with RawHttp(port) as c:
        out = []
        for p in paths:
            c.send(req("GET", p))
            out.append(c.read_response()[0])
        return out


def check_served(recs, served, mode, err, what):
    """Every request the server logged is one record with its status and body bytes, flags 0;
    tracepoint mode names the process that served it."""
    want = sorted((m, p, s, n) for m, p, s, n, _ in served)
    got = sorted((r["method"], r["path"], r["status"], r["resp_body_bytes"]) for r in recs)
    assert got == want, "%s (%s): records %s, served %s\n%s" % (what, mode, got, want, err)
    assert all(r["flags"] == 0 for r in recs), (what, mode, recs)
    if mode == "tracepoint":
        pids = {p: pid for _, p, _, _, pid in served}
        for r in recs:
            assert r["pid"] == pids[r["path"]], ("the record names the serving process",
                                                 what, r, served)


def run_dispatch(srv, mode, dispatch, paths_per_conn, conns):
    with MovesHttp("--dispatch", dispatch) as s:
        def traffic():
            for i in range(conns):
                paths = [p.replace("%d", str(i)) for p in paths_per_conn]
                assert keepalive(s.port, paths) == [200] * len(paths)
        recs, nums, err = server_records(srv, s, mode, traffic)
        served = s.served()
    assert len(served) == conns * len(paths_per_conn), served
    check_served(recs, served, mode, err, dispatch)
    assert nums["lost"] == 0 and nums["resyncs"] == 0, err
    return served


def test_forked_child_serves(srv, mode):
    """Python's ForkingMixIn pattern: the parent accepts and closes, a child serves."""
    served = run_dispatch(srv, mode, "fork", ["/len/%d00", "/len/1%d"], 3)
    assert len({pid for *_, pid in served}) == 3, ("a child per connection", served)


def test_dup2_descriptor(srv, mode):
    run_dispatch(srv, mode, "dup2", ["/len/%d", "/len/20%d", "/len/5000"], 2)


def test_fd_passed_over_unix_socket(srv, mode):
    served = run_dispatch(srv, mode, "scm", ["/len/3%d", "/len/40"], 2)
    assert len({pid for *_, pid in served}) == 1, served


def test_close_of_one_of_two_descriptors(srv, mode):
    """The first request on a dup, then the original descriptor is closed: the connection goes
    on (TCP sends no FIN), so the later requests are recorded on the same connection."""
    run_dispatch(srv, mode, "dup", ["/len/1%d", "/len/2", "/len/3"], 2)


def test_connection_open_before_capture_served_by_child(srv, mode):
    """A keep-alive connection accepted (and served by a forked child) before the capture
    starts: tracepoint mode seeds it from /proc by its socket inode and the child's next
    syscall adopts it; its requests after the start are recorded with the child's pid."""
    with MovesHttp("--dispatch", "fork") as s:
        with RawHttp(s.port) as c:
            c.send(req("GET", "/len/1"))
            assert c.read_response() == (200, 1)

            def traffic():
                for p in ("/len/2", "/len/3"):
                    c.send(req("GET", p))
                    assert c.read_response() == (200, int(p.split("/")[-1]))
            recs, nums, err = server_records(srv, s, mode, traffic)
        served = s.served()
    assert [p for _, p, *_ in served] == ["/len/1", "/len/2", "/len/3"], served
    check_served(recs, served[1:], mode, err, "open before the capture")
    assert nums["lost"] == 0, err


def run_cases_in_modes(namespace):
    """Runs every test_* case of a module's namespace (tvtest.cases) in each available capture
    mode against one tracevaultd, each called as case(srv, mode): the exit code."""
    modes, why = available_modes()
    if not modes:
        tvtest.skip("; ".join(why))
    for w in why:
        print("SKIP " + w)
    cases = tvtest.cases(namespace)
    res = tvtest.Results(len(cases) * len(modes))
    with tvtest.Server() as srv:
        for t in cases:
            for mode in modes:
                print("mode %s:" % mode)
                res.run(t, srv, mode)
    return res.exit_code()


def main():
    return run_cases_in_modes(globals())


if __name__ == "__main__":
    sys.exit(main())
