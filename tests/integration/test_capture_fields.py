"""Issue 11, which end and the whole URL, in both capture modes against a real nginx on
loopback: every exchange gives exactly one record with role "server" (nginx's end: local is
the server) and one with role "client" (this test's end: local is the client); --role server
and --role client keep only theirs (tracepoint: filtered in the kernel, also for a connection
seeded from /proc at the start; sockfilter: one joined mid-stream without --port is picked up
at its next request, the request's sender being the client). The request target keeps its
query with the values of credential parameters redacted (--redact-query-params replaces or
extends the list, --no-redact keeps them, --strip-query drops the query), host comes from the
Host header or an absolute-form target (which wins), and http_version from the request
line."""
import os
import shutil
import socket
import subprocess
import sys
import tempfile

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import test_capture_sockfilter as sockfilter  # noqa: E402  (its availability check)
import tvtest  # noqa: E402
from tvtest import RawHttp  # noqa: E402

SOCKFILTER = ["--mode", "sockfilter"]
N = 3  # exchanges per connection


def raw(method, target, version="HTTP/1.1", host="127.0.0.1"):
    return ("%s %s %s\r\nHost: %s\r\n\r\n" % (method, target, version, host)).encode()


def keepalive_exchanges(port):
    """N GETs on one connection; returns its client address."""
    with RawHttp(port) as c:
        client = "127.0.0.1:%d" % c.sock.getsockname()[1]
        for i in range(N):
            c.send(raw("GET", "/index.html?i=%d" % i))
            assert c.read_response() == (200, 17)
    return client


def check_ends(recs, ng, client, want, pids, what):
    """Exactly N records of each role in want, none of another; a server record has nginx's
    end as local and the client as remote, a client record the reverse."""
    server_end = "127.0.0.1:%d" % ng.port
    roles = sorted(r["role"] for r in recs)
    assert roles == sorted(want * N), "%s: roles %s, want %d each of %s" % (what, roles, N, want)
    for r in recs:
        ends = (r["local"], r["remote"])
        if r["role"] == "server":
            assert ends == (server_end, client) and r["pid"] == pids[0], (what, r)
        else:
            assert ends == (client, server_end) and r["pid"] == pids[1], (what, r)
        assert r["status"] == 200 and r["path"].startswith("/index.html?i="), (what, r)
    for role in want:
        paths = sorted(r["path"] for r in recs if r["role"] == role)
        assert paths == ["/index.html?i=%d" % i for i in range(N)], (what, role, paths)


def test_roles(srv, mode):
    pids = lambda ng: (0, 0) if mode else (ng.pid, os.getpid())  # noqa: E731
    with tvtest.Nginx() as ng:
        for role, want in (("both", ["client", "server"]), ("server", ["server"]),
                           ("client", ["client"])):
            out = {}

            def run():
                out["client"] = keepalive_exchanges(ng.port)
            args = mode + ["--port", str(ng.port)] + ([] if role == "both" else ["--role", role])
            recs, nums, err = tvtest.capture_records(srv, args, run)
            assert nums["lost"] == 0, err
            check_ends(recs, ng, out["client"], want, pids(ng), "%s --role %s" % (mode, role))
    print("ok (%s): one server and one client record per exchange; --role server and "
          "--role client keep only theirs" % (" ".join(mode) or "tracepoint"))


def test_seeded_connection_roles(srv):
    """A connection open before the capture (tracepoint: seeded from /proc) gets each end's
    role: nginx's local port is a listening one, ours is not; --role client seeds only ours."""
    for role, want in ((None, ["client", "server"]), ("client", ["client"])):
        with tvtest.Nginx() as ng:
            args = ["--port", str(ng.port)] + (["--role", role] if role else [])
            recs, nums, err, log, old, _, _ = tvtest.capture_old_connection(srv, ng, args)
            assert "following" in err, err  # the seeding ran and found it
            on_old = sorted((r["role"], r["local"], r["remote"], r["path"]) for r in recs
                            if old in (r["local"], r["remote"]))
            server_end = "127.0.0.1:%d" % ng.port
            expect = []
            for p in ("/index.html", "/old-conn-after-start"):
                if "client" in want:
                    expect.append(("client", old, server_end, p))
                if "server" in want:
                    expect.append(("server", server_end, old, p))
            assert on_old == sorted(expect), (role, on_old, err)
            assert all(r["role"] in want for r in recs), (role, recs)
    print("ok: a connection seeded at the start gets server (listened port) and client roles; "
          "--role client seeds only the client end")


def test_sockfilter_old_connection_without_port(srv):
    """sockfilter without --port: a connection open before the start (no SYN seen) is picked
    up at its next request, whose sender is the client: both ends get their role."""
    with tvtest.Nginx() as ng:
        recs, nums, err, log, old, _, _ = tvtest.capture_old_connection(srv, ng, SOCKFILTER)
        server_end = "127.0.0.1:%d" % ng.port
        on_old = sorted((r["role"], r["local"], r["remote"], r["path"]) for r in recs
                        if old in (r["local"], r["remote"]))
        assert on_old == sorted(
            [("client", old, server_end, p) for p in ("/index.html", "/old-conn-after-start")] +
            [("server", server_end, old, p) for p in ("/index.html", "/old-conn-after-start")]), \
            (on_old, err)
    print("ok (sockfilter): without --port, a connection open before the start is picked up "
          "at its next request, the sender of the request being the client")


class VethPair:
    """A veth pair, one end in a network namespace of its own: HOST_IP here, PEER_IP there. The
    one place a capture test leaves loopback: the sockfilter rule for an interface other than
    lo (an end is recorded only when its address is this host's) needs a peer that is not
    this host. Both ends exist only during the test."""

    def __init__(self):
        tag = "tvf%d" % (os.getpid() % 10**7)
        self.ns, self.dev, self.peer = tag, tag + "a", tag + "b"
        self.net = "10.211.%d" % (os.getpid() % 250)
        self.host_ip, self.peer_ip = self.net + ".1", self.net + ".2"
        self.procs = []

    def sh(self, *args):
        p = subprocess.run(list(args), capture_output=True, text=True, timeout=30)
        if p.returncode != 0:
            raise tvtest.Unavailable("%s: %s" % (" ".join(args), p.stderr.strip()))

    def __enter__(self):
        try:
            self.sh("ip", "netns", "add", self.ns)
            self.sh("ip", "link", "add", self.dev, "type", "veth", "peer", "name", self.peer)
            self.sh("ip", "link", "set", self.peer, "netns", self.ns)
            self.sh("ip", "addr", "add", self.host_ip + "/24", "dev", self.dev)
            self.sh("ip", "link", "set", self.dev, "up")
            self.sh("ip", "netns", "exec", self.ns, "ip", "addr", "add", self.peer_ip + "/24",
                    "dev", self.peer)
            self.sh("ip", "netns", "exec", self.ns, "ip", "link", "set", self.peer, "up")
        except BaseException:
            self.__exit__()
            raise
        return self

    def http_server(self, in_ns):
        """A python http.server on this end (in_ns False) or the peer's; returns its port."""
        ip = self.peer_ip if in_ns else self.host_ip
        port = tvtest.free_port()
        cmd = ["/usr/bin/python3", "-m", "http.server", str(port), "--bind", ip]
        if in_ns:
            cmd = ["ip", "netns", "exec", self.ns] + cmd
        proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                                cwd=tempfile.gettempdir())
        self.procs.append(proc)

        def up():
            try:
                socket.create_connection((ip, port), 0.2).close()
                return True
            except OSError:
                return proc.poll() is not None
        tvtest.wait_for(up, "http.server on %s:%d" % (ip, port), 10)
        assert proc.poll() is None, "http.server on %s:%d exited" % (ip, port)
        return port

    def __exit__(self, *exc):
        for p in self.procs:
            p.kill()
            p.wait()
        subprocess.run(["ip", "link", "del", self.dev], capture_output=True, timeout=30)
        subprocess.run(["ip", "netns", "del", self.ns], capture_output=True, timeout=30)


def test_sockfilter_other_interface(srv):
    """On an interface other than lo, an end is ours only when its address is this host's:
    a server here gives only its server record, a client here only its client record."""
    if not shutil.which("ip"):
        print("sockfilter on another interface skipped: no ip(8)")
        return
    try:
        with VethPair() as v:
            here, there = v.http_server(False), v.http_server(True)

            def run():
                for cmd in (["ip", "netns", "exec", v.ns, "curl", "-s", "-o", "/dev/null",
                             "http://%s:%d/?served=here" % (v.host_ip, here)],
                            ["curl", "-s", "-o", "/dev/null",
                             "http://%s:%d/?served=there" % (v.peer_ip, there)]):
                    subprocess.run(cmd, check=True, timeout=30)
            for role, want in (("both", ["client", "server"]), ("server", ["server"]),
                               ("client", ["client"])):
                recs, nums, err = tvtest.capture_records(
                    srv, SOCKFILTER + ["--interface", v.dev, "--role", role], run)
                got = sorted((r["role"], r["local"].split(":")[0], r["remote"].split(":")[0],
                              r["path"]) for r in recs)
                expect = {"server": ("server", v.host_ip, v.peer_ip, "/?served=here"),
                          "client": ("client", v.host_ip, v.peer_ip, "/?served=there")}
                assert got == [expect[w] for w in want], (role, got, err)
    except tvtest.Unavailable as e:
        print("sockfilter on another interface skipped: %s" % e)
        return
    print("ok (sockfilter): on another interface only this host's end of a connection is "
          "recorded, by --role")


QUERY = "/index.html?user=bob&token=s3cr3t&%73ig=abc&empty=&token&Sig=x&page=2"
REDACTED = "/index.html?user=bob&token=REDACTED&%73ig=REDACTED&empty=&token&Sig=REDACTED&page=2"


def fields_traffic(port):
    with RawHttp(port) as c:
        c.send(raw("GET", QUERY, host="q.example"))
        assert c.read_response()[0] == 200
        # absolute-form: its authority is the host, not the Host header (RFC 9112 §3.2.2)
        c.send(raw("GET", "http://abs.example:8081/index.html?x=1", host="other.example"))
        assert c.read_response()[0] == 200
    with RawHttp(port) as c:
        c.send(raw("GET", "/index.html?v=10", version="HTTP/1.0", host="ten.example"))
        assert c.read_response(close_delimited_ok=True)[0] == 200


def test_url_fields(srv, mode):
    with tvtest.Nginx() as ng:
        def capture(extra):
            recs, nums, err = tvtest.capture_records(
                srv, mode + ["--port", str(ng.port), "--role", "server"] + extra,
                lambda: fields_traffic(ng.port))
            assert len(recs) == 3 and nums["lost"] == 0, (recs, err)
            return {r["host"]: r for r in recs}, recs

        got, recs = capture([])
        r = got["q.example"]
        assert (r["path"], r["http_version"]) == (REDACTED, "1.1"), r
        assert "s3cr3t" not in str(recs) and "abc" not in str(recs), recs
        r = got["abs.example:8081"]
        assert (r["path"], r["http_version"]) == ("http://abs.example:8081/index.html?x=1",
                                                  "1.1"), r
        r = got["ten.example"]
        assert (r["path"], r["http_version"]) == ("/index.html?v=10", "1.0"), r
        if mode:
            print("ok (sockfilter): query values redacted, host, http_version")
            return
        # a list of our own replaces the default one; --no-redact and --strip-query
        got, _ = capture(["--redact-query-params", "User,page"])
        assert got["q.example"]["path"] == "/index.html?user=REDACTED&token=s3cr3t&%73ig=abc" \
            "&empty=&token&Sig=x&page=REDACTED", got
        got, _ = capture(["--redact-query-params", "+user"])
        assert got["q.example"]["path"] == REDACTED.replace("bob", "REDACTED"), got
        got, _ = capture(["--no-redact"])
        assert got["q.example"]["path"] == QUERY, got
        got, _ = capture(["--strip-query"])
        assert sorted(r["path"] for r in got.values()) == [
            "/index.html", "/index.html", "http://abs.example:8081/index.html"], got
    print("ok (tracepoint): query values redacted by the default list, by a list that replaces "
          "or extends it, kept by --no-redact, dropped by --strip-query; host, http_version")


def test_usage_errors():
    for args, msg in (
            (["--role", "peer"], "invalid --role: 'peer' (server, client or both)"),
            (["--redact-query-params", "a,,b"], "invalid --redact-query-params 'a,,b': empty "
             "name"),
            (["--strip-query", "--redact-query-params", "a"], "--redact-query-params does not "
             "apply with --strip-query (the query is dropped)"),
            (["--no-redact", "--redact-query-params", "a"], "--redact-query-params does not "
             "apply with --no-redact (nothing is redacted)")):
        p = tvtest.run(["capture", "--server", "127.0.0.1:9"] + args)
        assert p.returncode == 2 and p.stderr == "tracevault: %s\n" % msg, (args, p.returncode,
                                                                             p.stderr)
    print("ok: --role and --redact-query-params usage errors exit 2 with one line")


def main():
    test_usage_errors()
    reason = tvtest.bpf_unavailable_reason()
    if reason:
        tvtest.skip(reason)
    with tvtest.Server() as srv:
        test_roles(srv, [])
        test_seeded_connection_roles(srv)
        test_url_fields(srv, [])
        if sockfilter.unavailable_reason():
            print("sockfilter part skipped: %s" % sockfilter.unavailable_reason())
            return
        test_roles(srv, SOCKFILTER)
        test_sockfilter_old_connection_without_port(srv)
        test_sockfilter_other_interface(srv)
        test_url_fields(srv, SOCKFILTER)


if __name__ == "__main__":
    main()
