"""Issue 11, kind 1: connections that stop speaking HTTP/1.x. Against a small server of our own
(every HTTP/1.x exchange it serves is logged), in both capture modes: a 101 to a raw byte
stream whose tunnel carries bytes that look like HTTP in both directions, a 101 sent before the
upgrading request's body ended, a request pipelined behind the Upgrade request, CONNECT answered
403 (keeps parsing) then 200 (a tunnel), a refused upgrade (426, keeps parsing) and a
prior-knowledge HTTP/2 connection. Every logged exchange is exactly one record (101 and
CONNECT 200 with no response body and a latency that ends at that head), nothing else is, no
parser resync or unparsed head is counted, and the summary counts the tunnels."""
import os
import re
import socket
import sys
import threading
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import test_capture_sockfilter as sockfilter  # noqa: E402  (its availability check)
import tvtest  # noqa: E402

# what the server sends first inside every tunnel: an HTTP response, as bytes of the tunnel
INSIDE = b"HTTP/1.1 200 OK\r\nContent-Length: 6\r\n\r\ninside"
SETTINGS = b"\x00\x00\x06\x04\x00\x00\x00\x00\x00\x00\x03\x00\x00\x00\x64"
PREFACE = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"
TUNNEL_HOLD_S = 0.3  # tunnels stay open this long after their traffic: the latency must not
TUNNELS = 5          # attach, early, behind, CONNECT db, h2 prior knowledge


class Server(tvtest.RawTcpServer):
    """HTTP/1.1 keep-alive server on 127.0.0.1 that switches as asked; log: (method, target,
    status, response body bytes) of each HTTP/1.x exchange it served."""

    def __init__(self):
        self.log = []
        self.lock = threading.Lock()
        super().__init__(backlog=16)

    def logged(self, *entry):
        with self.lock:
            self.log.append(entry)

    @staticmethod
    def read_until(c, buf, n=None, marker=None):
        while (n is not None and len(buf) < n) or (marker is not None and marker not in buf):
            d = c.recv(65536)
            if not d:
                return None
            buf += d
        return buf

    @staticmethod
    def tunnel(c, buf):
        """Another protocol now: an HTTP-looking message, then echo whatever comes."""
        c.sendall(INSIDE + buf)
        while True:
            d = c.recv(65536)
            if not d:
                return
            c.sendall(d)

    def serve(self, c):
        buf = b""
        with c:
            while True:
                buf = self.read_until(c, buf, marker=b"\r\n\r\n")
                if buf is None:
                    return
                if buf.startswith(b"PRI * HTTP/2.0\r\n"):
                    buf = self.read_until(c, buf, n=len(PREFACE))
                    c.sendall(SETTINGS)
                    return self.tunnel(c, buf[len(PREFACE):])
                head, buf = buf.split(b"\r\n\r\n", 1)
                lines = head.split(b"\r\n")
                method, target = lines[0].split(b" ")[:2]
                hdrs = dict(l.lower().split(b": ", 1) for l in lines[1:])
                cl = int(hdrs.get(b"content-length", b"0"))
                m, t = method.decode(), target.decode()
                if method == b"CONNECT":
                    if target.startswith(b"denied"):
                        c.sendall(b"HTTP/1.1 403 Forbidden\r\nContent-Length: 9\r\n\r\nforbidden")
                        self.logged(m, t, 403, 9)
                        continue
                    c.sendall(b"HTTP/1.1 200 Connection Established\r\n\r\n")
                    self.logged(m, t, 200, 0)
                    return self.tunnel(c, buf)
                if b"upgrade" in hdrs and target == b"/ws-refused":
                    c.sendall(b"HTTP/1.1 426 Upgrade Required\r\nContent-Length: 14\r\n\r\n"
                              b"use plain http")
                    self.logged(m, t, 426, 14)
                    continue
                if b"upgrade" in hdrs:
                    if target != b"/early":  # /early: the 101 goes before the body is read
                        buf = self.read_until(c, buf, n=cl)
                    c.sendall(b"HTTP/1.1 101 Switching Protocols\r\nConnection: Upgrade\r\n"
                              b"Upgrade: %s\r\n\r\n" % hdrs[b"upgrade"])
                    self.logged(m, t, 101, 0)
                    buf = self.read_until(c, buf, n=cl)
                    return self.tunnel(c, buf[cl:])
                buf = self.read_until(c, buf, n=cl)
                buf = buf[cl:]
                c.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: 6\r\n\r\nplain!")
                self.logged(m, t, 200, 6)



def recv_until(c, marker, timeout_s=5):
    c.settimeout(timeout_s)
    got = b""
    while marker not in got:
        d = c.recv(65536)
        assert d, "server closed before %r (got %r)" % (marker, got)
        got += d
    return got


def hold_and_close(c):
    time.sleep(TUNNEL_HOLD_S)
    c.close()


def traffic(port):
    conn = lambda: socket.create_connection(("127.0.0.1", port))  # noqa: E731
    # field-03's case: a raw stream after the 101, HTTP-looking bytes both ways
    c = conn()
    c.sendall(b"POST /session/attach HTTP/1.1\r\nHost: svc\r\nConnection: Upgrade\r\n"
              b"Upgrade: tcp\r\nContent-Length: 0\r\n\r\n")
    recv_until(c, b"\r\n\r\n")
    time.sleep(0.02)
    c.sendall(b"GET /typed-in-the-tunnel HTTP/1.1\r\nHost: inner\r\n\r\n")
    recv_until(c, b"Host: inner\r\n\r\n")
    hold_and_close(c)
    # the 101 before the request body: the body (10 bytes) is still HTTP/1.x
    c = conn()
    c.sendall(b"POST /early HTTP/1.1\r\nHost: svc\r\nConnection: Upgrade\r\nUpgrade: tcp\r\n"
              b"Content-Length: 10\r\n\r\n")
    recv_until(c, b"\r\n\r\n")
    time.sleep(0.02)
    c.sendall(b"0123456789")
    time.sleep(0.02)
    c.sendall(b"DELETE /in-tunnel HTTP/1.1\r\nHost: inner\r\n\r\n")
    recv_until(c, b"DELETE /in-tunnel")
    hold_and_close(c)
    # a request behind the Upgrade request, before the 101: the new protocol's bytes
    c = conn()
    c.sendall(b"GET /chat HTTP/1.1\r\nHost: svc\r\nConnection: Upgrade\r\nUpgrade: tcp\r\n\r\n"
              b"GET /behind HTTP/1.1\r\nHost: svc\r\n\r\n")
    recv_until(c, b"GET /behind")
    hold_and_close(c)
    # CONNECT refused (parsing goes on), then granted: a tunnel
    c = conn()
    c.sendall(b"CONNECT denied.example:443 HTTP/1.1\r\nHost: denied.example:443\r\n\r\n")
    recv_until(c, b"forbidden")
    c.sendall(b"CONNECT db.example:5432 HTTP/1.1\r\nHost: db.example:5432\r\n\r\n")
    recv_until(c, b"\r\n\r\n")
    c.sendall(b"GET /through-the-proxy HTTP/1.1\r\nHost: db\r\n\r\n")
    recv_until(c, b"Host: db\r\n\r\n")
    hold_and_close(c)
    # a refused upgrade keeps the connection HTTP/1.x
    c = conn()
    c.sendall(b"GET /ws-refused HTTP/1.1\r\nHost: svc\r\nConnection: Upgrade\r\n"
              b"Upgrade: websocket\r\n\r\n")
    recv_until(c, b"use plain http")
    c.sendall(b"GET /after-refused HTTP/1.1\r\nHost: svc\r\n\r\n")
    recv_until(c, b"plain!")
    c.close()
    # prior-knowledge HTTP/2: the preface first, frames after
    c = conn()
    c.sendall(PREFACE + SETTINGS)
    recv_until(c, INSIDE)
    c.sendall(b"GET /h2-inner HTTP/1.1\r\nHost: inner\r\n\r\n")
    recv_until(c, b"/h2-inner")
    hold_and_close(c)


def parse_tunnels(err):
    m = re.search(r"tunnels \(left HTTP/1\.x: 101, CONNECT, HTTP/2 preface\) (\d+) "
                  r"\((\d+) bytes after the switch\)", err)
    assert m, "no tunnels line in the capture summary: %s" % err
    return int(m.group(1)), int(m.group(2))


def check(srv, mode, views):
    hs = Server()
    try:
        recs, nums, err = tvtest.capture_records(srv, mode + ["--port", str(hs.port)],
                                                 lambda: traffic(hs.port))
    finally:
        hs.close()
    want = sorted((m, t, s, b) for m, t, s, b in hs.log)
    for side in ("local", "remote")[:views]:
        got = [r for r in recs if r[side].endswith(":%d" % hs.port)]
        have = sorted((r["method"], r["path"], r["status"], r["resp_body_bytes"]) for r in got)
        assert have == want, "%s view: records %s, want the server's log %s\n%s" % (
            side, have, want, err)
        for r in got:
            assert r["flags"] == 0, (r, err)
            if r["status"] == 101 or r["method"] == "CONNECT" and r["status"] == 200:
                # ends at the switching head, not when the tunnel closed
                assert r["latency_ns"] < TUNNEL_HOLD_S * 1e9 / 2, (r, err)
            if r["path"] == "/early":
                assert r["req_body_bytes"] == 10, (r, err)
    assert len(recs) == views * len(want), (len(recs), err)
    lim = tvtest.parse_capture_limits(err)
    assert nums["resyncs"] == 0 and nums["lost"] == 0, (nums, err)
    assert lim["unparsed_requests"] == 0 and lim["unparsed_responses"] == 0, (lim, err)
    tunnels, tunnel_bytes = parse_tunnels(err)
    assert tunnels == views * TUNNELS and tunnel_bytes > 0, err
    print("ok (%s): %d exchanges, one record each per view, nothing from %d tunnels "
          "(%d bytes)" % (" ".join(mode or ["tp"]), len(want), tunnels, tunnel_bytes))


def main():
    reason = tvtest.bpf_unavailable_reason()
    if reason:
        tvtest.skip(reason)
    with tvtest.Server() as srv:
        check(srv, [], 2)  # tracepoint: the client's and the server's end
        if sockfilter.unavailable_reason():
            print("sockfilter part skipped: %s" % sockfilter.unavailable_reason())
            return
        check(srv, sockfilter.SOCKFILTER, 2)  # loopback: both ends are this host's


if __name__ == "__main__":
    main()
