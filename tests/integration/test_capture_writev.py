"""Responses written with one writev of many iovecs, in both capture modes: what Node.js does
with a chunked response when two writes land in one tick (res.write(a); res.end(b): a 9-iovec
writev, the terminating "0\\r\\n\\r\\n" in the 9th) and what nginx does with a chunked body of
many buffers (up to 64 iovecs). The tracepoint mode copied only the first 8 iovecs, so the
chunked framing after them was unseen: every such response was flagged PARTIAL and cost a
resync, with a body count that is only a lower bound. Each exchange must be one record per
end with flags 0, the exact body count and (--body-bytes) the de-chunked body; no resync, no
event cut. A chunked body longer than the copy ("/big", as Node's res.end(data) of 12 KB) is
one record with the exact count and flags 0 too: its uncopied tail ends in the last-chunk."""
import os
import socket
import sys
import threading

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import test_capture_sockfilter as sockfilter  # noqa: E402  (its availability check)
import tvtest  # noqa: E402
from tvtest import RawHttp, http_request as req  # noqa: E402

# chunks per response: Node's two writes in one tick (9 iovecs); 20 give 2 + 3 * 20 + 1 = 63
# iovecs, about what nginx writes at most (64 per writev)
CHUNKS = {"/node": [b"part one, ", b"end"], "/many": [b"c%02d;" % i for i in range(20)],
          # a body longer than the copy (--payload-bytes, default 4K): the copy ends inside
          # the data and the last-chunk goes by uncopied, which ends the body exactly
          "/big": [b"a" * 3000, bytes(range(33, 127)) * 100]}
HEAD = [b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nTransfer-Encoding: chunked\r\n",
        b"\r\n"]


def iovecs(chunks):
    """A chunked response as Node builds it (strace of res.write(a); res.end(b)): the header
    lines and the blank line's CRLF, then per chunk its size line, its data and CRLF as
    separate iovecs, then the last chunk: 2 chunks make 9 iovecs, the terminator the 9th."""
    out = list(HEAD)
    for c in chunks:
        out += [b"%x\r\n" % len(c), c, b"\r\n"]
    return out + [b"0\r\n\r\n"]


class WritevServer:
    """Answers each GET of a CHUNKS path with one os.writev of its iovecs (checked whole)."""

    def __init__(self):
        self.ls = socket.socket()
        self.ls.bind(("127.0.0.1", 0))
        self.ls.listen(4)
        self.port = self.ls.getsockname()[1]
        self.served = []
        self.thread = threading.Thread(target=self.serve, daemon=True)
        self.thread.start()

    def serve(self):
        c, _ = self.ls.accept()
        with c:
            buf = b""
            while True:
                while b"\r\n\r\n" not in buf:
                    d = c.recv(65536)
                    if not d:
                        return
                    buf += d
                head, buf = buf.split(b"\r\n\r\n", 1)
                path = head.split(b" ")[1].decode()
                iov = iovecs(CHUNKS[path])
                assert len(iov) <= 1024  # IOV_MAX
                n = os.writev(c.fileno(), iov)
                assert n == sum(len(b) for b in iov), n  # loopback takes it whole
                self.served.append((path, len(iov)))

    def close(self):
        self.ls.close()


def check(srv, mode_args, paths=("/node", "/many", "/node")):
    s = WritevServer()
    try:
        def traffic():
            with RawHttp(s.port) as c:
                for path in paths:
                    c.send(req("GET", path))
                    status, n = c.read_response()
                    assert (status, n) == (200, len(b"".join(CHUNKS[path]))), (path, status, n)
            s.thread.join(10)
        recs, nums, err = tvtest.capture_records(
            srv, list(mode_args) + ["--port", str(s.port), "--body-bytes", "4K"], traffic)
    finally:
        s.close()
    assert [n for _, n in s.served] == [len(iovecs(CHUNKS[p])) for p in paths], s.served
    cut = "/big" in paths
    for role in ("server", "client"):
        got = [(r["path"], r["status"], r["resp_body_bytes"], r["flags"])
               for r in sorted(recs, key=lambda r: r["ts_ns"]) if r["role"] == role]
        want = [(p, 200, len(b"".join(CHUNKS[p])), 0) for p in paths]
        assert got == want, "%s %s: %s\n%s" % (mode_args, role, got, err)
        for r in recs:  # the kept body: what the copy held of it, from its start
            body = b"".join(CHUNKS[r["path"]]).decode()
            kept = r.get("resp_body", "")
            assert (body.startswith(kept) and kept) if cut else kept == body, (r, err)
    assert len(recs) == 2 * len(paths), (mode_args, recs)
    assert nums["resyncs"] == 0 and nums["lost"] == 0, err
    assert cut or nums["truncated"] == 0, err


def main():
    reason = tvtest.bpf_unavailable_reason()
    if reason:
        tvtest.skip(reason)
    with tvtest.Server() as srv:
        check(srv, [])
        check(srv, [], ("/big", "/node"))
        print("ok tracepoint")
        if sockfilter.unavailable_reason():
            print("sockfilter part skipped: %s" % sockfilter.unavailable_reason())
            return
        check(srv, sockfilter.SOCKFILTER)
        check(srv, sockfilter.SOCKFILTER, ("/big", "/node"))
        print("ok sockfilter")


if __name__ == "__main__":
    main()
