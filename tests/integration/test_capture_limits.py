"""Issue 11, limits that cut silently: against a small HTTP/1.1 server of our own (it reads in
2 KiB pieces, so every read is copied whole), in both capture modes (tracepoint: both ends of
the loopback connection; sockfilter: the packets, seen from both ends too). At --payload-bytes
32K a 10 KiB response head keeps its body count, a 12 KiB request head its traceparent and a
2000-byte path is stored whole, all with flags 0 (the parser's head limit follows
--payload-bytes; paths have no bound of their own). What is still cut -- a head past the limit, or past the copy -- is a
record flagged PARTIAL | CUT and counted in the summary's "heads cut"; a request whose start
line the parser cannot read (a 16-byte method) is no record but is counted ("unparsed heads",
and in the parser loss)."""
import os
import socket
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import test_capture_sockfilter as sockfilter  # noqa: E402  (its availability check)
import tvtest  # noqa: E402

PARTIAL, CUT = 2, 8
TRACE = "4bf92f3577b34da6a3ce929d0e0e4736"
TP = b"00-" + TRACE.encode() + b"-00f067aa0ba902b7-01"
LONG_PATH = "/reports/" + "a" * 1991  # 2000 bytes


def big_lines(prefix, n, size):
    return b"".join(b"%s-%d: %s\r\n" % (prefix, i, b"c" * size) for i in range(n))


class Server(tvtest.RawTcpServer):
    """HTTP/1.1 keep-alive server on 127.0.0.1:port, reading 2 KiB per recv. /big-response-head
    answers with ten ~1000-byte headers and a 5000-byte body; anything else with 7 bytes. A
    method it does not know gets 501."""

    def serve(self, c):
        buf = b""
        with c:
            while True:
                while b"\r\n\r\n" not in buf:
                    d = c.recv(2048)
                    if not d:
                        return
                    buf += d
                head, buf = buf.split(b"\r\n\r\n", 1)
                method, path = head.split(b" ")[:2]
                status = b"200 OK"
                extra, body = b"", b"k" * 7
                if path == b"/big-response-head":
                    extra, body = big_lines(b"X-Policy", 10, 990), b"r" * 5000
                if len(method) > 15:
                    status, body = b"501 Not Implemented", b""
                c.sendall(b"HTTP/1.1 %s\r\nContent-Length: %d\r\n%s\r\n" % (status, len(body),
                                                                            extra) + body)



def exchange(c, method, path, extra=b"", pieces=1):
    """One request (its head sent in `pieces` sends, 20 ms apart, so each is its own syscall
    and packet), then its whole response."""
    req = b"%s %s HTTP/1.1\r\nHost: t\r\n%straceparent: %s\r\n\r\n" % (method, path, extra, TP)
    step = -(-len(req) // pieces)
    for i in range(0, len(req), step):
        c.sendall(req[i:i + step])
        if pieces > 1:
            time.sleep(0.02)
    r = b""
    while True:
        if b"\r\n\r\n" in r:
            head, rest = r.split(b"\r\n\r\n", 1)
            n = int(head.lower().split(b"content-length: ")[1].split(b"\r\n")[0])
            if len(rest) >= n:
                return
        d = c.recv(65536)
        assert d, "server closed"
        r += d


def server_view(recs, port):
    return {r["path"]: r for r in recs if r["local"].endswith(":%d" % port)}


def check_32k(srv, mode, views):
    """--payload-bytes 32K: heads up to 32K whole, paths whole; a 40 KiB head is cut."""
    hs = Server()
    try:
        def traffic():
            with socket.create_connection(("127.0.0.1", hs.port)) as c:
                c.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
                exchange(c, b"GET", b"/big-response-head")
                exchange(c, b"GET", b"/big-request-head", big_lines(b"X-Big", 12, 1000))
                exchange(c, b"GET", LONG_PATH.encode())
                exchange(c, b"ABCDEFGHIJKLMNOP", b"/odd-method")
                exchange(c, b"GET", b"/after-odd")
                exchange(c, b"GET", b"/over-40k", big_lines(b"X-Huge", 40, 1000))
                exchange(c, b"GET", b"/last")
        recs, nums, err = tvtest.capture_records(
            srv, mode + ["--port", str(hs.port), "--payload-bytes", "32K"], traffic)
    finally:
        hs.close()
    got = server_view(recs, hs.port)
    r = got.get("/big-response-head")
    assert r and (r["status"], r["resp_body_bytes"], r["flags"]) == (200, 5000, 0), (r, err)
    r = got.get("/big-request-head")
    assert r and r["trace_id"] == TRACE and r["flags"] == 0, (r, err)
    r = got.get(LONG_PATH)
    assert r and r["flags"] == 0 and r["status"] == 200, ([len(p) for p in got], err)
    for p in ("/after-odd", "/last"):
        assert got.get(p) and got[p]["flags"] == 0 and got[p]["trace_id"] == TRACE, (p, got, err)
    assert "/odd-method" not in got, got
    r = got.get("/over-40k")
    assert r and r["flags"] == PARTIAL | CUT and r["status"] == 200 and r["trace_id"] == "", \
        (r, err)
    lim = tvtest.parse_capture_limits(err)
    # every view saw one cut head (tracepoint's client end: cut by the copy; the server's 2 KiB
    # reads: by the limit) and one unreadable request, counted as parser loss
    assert lim["cut_limit"] + lim["cut_copy"] == views, (lim, err)
    assert lim["unparsed_requests"] == views and lim["unparsed_responses"] == 0, (lim, err)
    assert nums["parser"] == views and nums["lost"] == views, (nums, err)
    assert len(recs) == 6 * views, (len(recs), err)
    print("ok (%s): 10 KiB response head, 12 KiB request head, 2000-byte path whole at 32K; "
          "a 40 KiB head flagged CUT; an unreadable request counted" % " ".join(mode or ["tp"]))


def check_default(srv, mode, views):
    """The default --payload-bytes (4K): the head limit is 8K. A 12 KiB head sent in 3 KiB
    pieces is copied whole but is over the limit: flagged, counted as cut by the limit."""
    hs = Server()
    try:
        def traffic():
            with socket.create_connection(("127.0.0.1", hs.port)) as c:
                c.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
                exchange(c, b"GET", b"/twelve-k", big_lines(b"X-Big", 12, 1000), pieces=4)
                exchange(c, b"GET", b"/seven-k", big_lines(b"X-Big", 7, 1000), pieces=3)
        recs, nums, err = tvtest.capture_records(srv, mode + ["--port", str(hs.port)], traffic)
    finally:
        hs.close()
    got = server_view(recs, hs.port)
    r = got.get("/twelve-k")
    assert r and r["flags"] == PARTIAL | CUT and r["status"] == 200 and r["trace_id"] == "", \
        (r, err)
    r = got.get("/seven-k")
    assert r and r["flags"] == 0 and r["trace_id"] == TRACE, (r, err)
    lim = tvtest.parse_capture_limits(err)
    assert lim["cut_limit"] == views and lim["cut_copy"] == 0, (lim, err)
    assert nums["lost"] == 0, err
    print("ok (%s): at the default 4K a 12 KiB head over the 8K limit is flagged CUT and "
          "counted by its reason" % " ".join(mode or ["tp"]))


def main():
    reason = tvtest.bpf_unavailable_reason()
    if reason:
        tvtest.skip(reason)
    with tvtest.Server() as srv:
        check_32k(srv, [], 2)  # tracepoint: the client's and the server's end
        check_default(srv, [], 2)
        if sockfilter.unavailable_reason():
            print("sockfilter part skipped: %s" % sockfilter.unavailable_reason())
            return
        check_32k(srv, sockfilter.SOCKFILTER, 2)  # both ends are this host's (loopback)
        check_default(srv, sockfilter.SOCKFILTER, 2)


if __name__ == "__main__":
    main()
