"""`tracevault capture` (tracepoint mode) follows TCP connections that were already open when it
started (the loader seeds the kernel's sockets map from /proc): a keep-alive connection's next
requests become records and what it carried before does not, on the server side (nginx) and on
the client side (a python http.client process); --port leaves another port's old connection
alone, and the far end of the capture's own gRPC connection is never followed."""
import os
import re
import select
import subprocess
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import tvtest  # noqa: E402
from tvtest import RawHttp, http_request as req  # noqa: E402

INDEX = b"hello tracevault\n"
SEEDED_RE = r"tracevault: following (\d+) connections open before the capture \((\d+) skipped"

BIG = b"x" * (1 << 20)
BIG_READ_BEFORE = 1000

# A keep-alive HTTP client on one connection, driven by stdin lines, answering each with
# "status body-bytes local-port" on stdout: "GET path"; "PART path n" sends the request and
# reads n body bytes only; "REST" reads the rest of that body; an empty line ends it.
CLIENT = r"""
import http.client, sys
c = http.client.HTTPConnection("127.0.0.1", int(sys.argv[1]), timeout=10)
part = None
for line in sys.stdin:
    cmd = line.split()
    if not cmd:
        break
    if cmd[0] == "REST":
        r, body = part, part.read()
    else:
        c.request("GET", cmd[1])
        r = c.getresponse()
        body = r.read(int(cmd[2])) if cmd[0] == "PART" else r.read()
        part = r
    print(r.status, len(body), c.sock.getsockname()[1], flush=True)
"""


def seeded(err):
    """(followed, skipped) from the capture's start line, or None when it printed none."""
    m = re.search(SEEDED_RE, err)
    return (int(m.group(1)), int(m.group(2))) if m else None


def access_log(ng):
    return [(m, u, int(s), int(b)) for m, u, s, b, _ in ng.access_log()]


def check_clean(nums, err):
    assert nums["lost"] == 0 and nums["ring_full"] == 0 and nums["map_full"] == 0, err
    assert nums["resyncs"] == 0, err


def test_server_side(srv):
    """nginx's side of a keep-alive connection opened (and used) before the capture."""
    with tvtest.Nginx() as ng:
        recs, nums, err, log, old_client, t0, t1 = tvtest.capture_old_connection(
            srv, ng, ["--pid", str(ng.pid)])
        tvtest.compare_exchanges(log[1:], recs, "pre-existing server connection", err)
        check_clean(nums, err)
        assert seeded(err) is not None and seeded(err)[0] == 1, err
        local = "127.0.0.1:%d" % ng.port
        for r in recs:
            assert r["pid"] == ng.pid and r["comm"] == "nginx", r
            assert r["local"] == local and r["remote"].startswith("127.0.0.1:"), r
            assert t0 <= r["ts_ns"] <= r["end_ns"] <= t1, (r, t0, t1)
            assert r["flags"] == 0, r
        on_old = [(r["path"], r["status"], r["resp_body_bytes"])
                  for r in sorted(recs, key=lambda r: r["ts_ns"]) if r["remote"] == old_client]
        assert [p for p, _, _ in on_old] == ["/old-conn-after-start", "/index.html"], (on_old, recs)
        assert on_old[1][1:] == (200, len(INDEX)), on_old
        new = [r for r in recs if r["remote"] != old_client]
        assert [(r["path"], r["status"]) for r in new] == [("/index.html", 200)], new
        print("ok: nginx's pre-existing keep-alive connection followed from its next request")


class Client:
    """A python3 http.client process holding one keep-alive connection to port."""

    def __init__(self, port, preexec_fn=None):
        self.proc = subprocess.Popen(["/usr/bin/python3", "-c", CLIENT, str(port)],
                                     stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True,
                                     bufsize=1, preexec_fn=preexec_fn)

    def cmd(self, line, timeout_s=10):
        """(status, body bytes, local port) of one command on the held connection."""
        self.proc.stdin.write(line + "\n")
        self.proc.stdin.flush()
        ready, _, _ = select.select([self.proc.stdout], [], [], timeout_s)
        answer = self.proc.stdout.readline() if ready else ""
        assert answer, "client gave no answer to %r within %ss" % (line, timeout_s)
        status, body, port = answer.split()
        return int(status), int(body), int(port)

    def close(self):
        if self.proc.poll() is None:
            try:
                self.proc.stdin.write("\n")
                self.proc.stdin.flush()
                self.proc.wait(10)
            except (OSError, subprocess.TimeoutExpired):
                self.proc.kill()
                self.proc.wait()


def test_client_side(srv):
    """The client's side (no listener on its local port: role CLIENT, outbound bytes are the
    requests) of a connection it opened before the capture, captured with --pid of the client.
    The capture starts in the middle of a 1 MiB response body: that exchange must leave no
    record and no resync (the parser waits for the next message start), the next ones must be
    recorded whole."""
    with tvtest.Nginx({"index.html": INDEX, "big.bin": BIG}) as ng:
        cl = Client(ng.port)
        try:
            status, _, port = cl.cmd("GET /before-capture")
            assert status == 404
            assert cl.cmd("PART /big.bin %d" % BIG_READ_BEFORE) == (200, BIG_READ_BEFORE, port)
            got = []

            def run():
                got.append(cl.cmd("REST"))
                got.append(cl.cmd("GET /client-after-start"))
                got.append(cl.cmd("GET /index.html"))
            recs, nums, err = tvtest.capture_records(srv, ["--pid", str(cl.proc.pid)], run)
        finally:
            cl.close()
        assert [g[2] for g in got] == [port] * 3, (got, port)  # still the old connection
        assert got[0][:2] == (200, len(BIG) - BIG_READ_BEFORE), got
        assert got[2][:2] == (200, len(INDEX)), got
        check_clean(nums, err)
        assert seeded(err) is not None and seeded(err)[0] == 1, err
        recs.sort(key=lambda r: r["ts_ns"])
        assert [(r["method"], r["path"], r["status"], r["resp_body_bytes"]) for r in recs] == [
            ("GET", "/client-after-start", 404, got[1][1]),
            ("GET", "/index.html", 200, len(INDEX))], recs
        for r in recs:
            assert r["pid"] == cl.proc.pid and r["comm"] == "python3", r
            assert r["local"] == "127.0.0.1:%d" % port, r
            assert r["remote"] == "127.0.0.1:%d" % ng.port, r
            assert r["flags"] == 0, r
        print("ok: a client's pre-existing connection followed with role client, joined "
              "mid-body")


def test_port_filter(srv):
    """--port A: the old connection to A is followed on both of its ends (nginx A, and this
    test process as its client), the old connection to B is not followed at all."""
    with tvtest.Nginx() as a, tvtest.Nginx() as b:
        old_a, old_b = RawHttp(a.port), RawHttp(b.port)
        try:
            for old in (old_a, old_b):
                old.send(req("GET", "/before-capture"))
                assert old.read_response()[0] == 404
            a_client = "127.0.0.1:%d" % old_a.sock.getsockname()[1]

            def run():
                old_b.send(req("GET", "/b-after-start"))
                assert old_b.read_response()[0] == 404
                old_a.send(req("GET", "/index.html"))
                assert old_a.read_response() == (200, len(INDEX))
                old_b.send(req("GET", "/index.html"))
                assert old_b.read_response() == (200, len(INDEX))
            recs, nums, err = tvtest.capture_records(srv, ["--port", str(a.port)], run)
        finally:
            old_a.close()
            old_b.close()
        check_clean(nums, err)
        assert seeded(err) is not None and seeded(err)[0] == 2, err
        a_addr = "127.0.0.1:%d" % a.port
        ends = sorted((r["pid"], r["local"], r["remote"]) for r in recs)
        assert ends == sorted([(a.pid, a_addr, a_client), (os.getpid(), a_client, a_addr)]), recs
        for r in recs:
            assert (r["method"], r["path"], r["status"], r["resp_body_bytes"]) == (
                "GET", "/index.html", 200, len(INDEX)), r
        print("ok: --port follows only the old connection to its port, from both ends")


def test_cgroup(srv):
    """--cgroup: the old connection of a client inside the cgroup is followed; nginx, outside
    it, holds the other end of that same connection and is not."""
    with tvtest.TempCgroup("pre") as cg:
        if not cg.path:
            print("note: no cgroup2 mount, --cgroup not tested")
            return
        with tvtest.Nginx() as ng:
            cl = Client(ng.port, preexec_fn=cg.join)
            try:
                port = cl.cmd("GET /before-capture")[2]
                recs, nums, err = tvtest.capture_records(
                    srv, ["--cgroup", cg.path], lambda: cl.cmd("GET /index.html"))
            finally:
                cl.close()
        check_clean(nums, err)
        assert seeded(err) is not None and seeded(err)[0] == 1, err
        assert [(r["pid"], r["path"], r["local"]) for r in recs] == [
            (cl.proc.pid, "/index.html", "127.0.0.1:%d" % port)], recs
    print("ok: --cgroup seeds only the connections of processes in the cgroup")


def test_own_connection_not_followed(srv):
    """--port of tracevaultd: the capture's own gRPC connection (open before the attach) must
    not be seeded from tracevaultd's end either; the kernel side only knows our own tgid."""
    port = srv.addr.rsplit(":", 1)[1]
    recs, nums, err = tvtest.capture_records(srv, ["--port", port], lambda: time.sleep(0.5))
    assert seeded(err) is None, err
    assert recs == [] and nums["resyncs"] == 0, (recs, err)
    print("ok: the far end of the capture's own connection is not followed")


def main():
    reason = tvtest.bpf_unavailable_reason()
    if reason:
        tvtest.skip(reason)
    with tvtest.Server() as srv:
        test_server_side(srv)
        test_client_side(srv)
        test_port_filter(srv)
        test_cgroup(srv)
        test_own_connection_not_followed(srv)


if __name__ == "__main__":
    main()
