"""capture --body-bytes against a small server of our own, in both capture modes: the JSON error
body of a 500 is stored with its Content-Type; a chunked request body and a chunked response
body sent in pieces (separate syscalls and packets) are stored de-chunked; a gzip body is stored
as sent (not decompressed, base64 in jsonl, with its Content-Encoding); a long body is cut at
N; bytes a syscall moved past its copy (--payload-bytes) are not invented; without the option
nothing of a body is stored; the table form never shows one; --body-bytes above
--payload-bytes is a usage error."""
import gzip
import json
import os
import socket
import subprocess
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import test_capture_sockfilter as sockfilter  # noqa: E402  (its availability check)
import tvtest  # noqa: E402

ERROR_BODY = b'{"error":"database is down","code":"E42"}'
UPLOAD_CHUNKS = [b"name,city\n", b"Zo\xc3\xab,Gent\n", b"Ana,Porto\n"]
REPLY_CHUNKS = [b"stored ", b"3 rows ", b"of csv"]
GZ_BODY = gzip.compress(b"compressed text " * 20, mtime=0)
LONG_BODY = bytes(range(32, 127)) * 100  # 9500 bytes
THREE_K = b"x" * 1000 + b"y" * 1000 + b"z" * 1000
BODY_KEYS = {k % d for k in ("%s_body", "%s_body_base64", "%s_content_type",
                             "%s_content_encoding") for d in ("req", "resp")}


class Server(tvtest.RawTcpServer):
    """HTTP/1.1 keep-alive server on 127.0.0.1 with the routes of the checks below."""

    @staticmethod
    def more(c, buf):
        d = c.recv(65536)
        if not d:
            raise EOFError
        return buf + d

    def serve(self, c):
        buf = b""
        try:
            with c:
                while True:
                    while b"\r\n\r\n" not in buf:
                        buf = self.more(c, buf)
                    head, buf = buf.split(b"\r\n\r\n", 1)
                    path = head.split(b" ")[1]
                    if b"chunked" in head.lower():
                        while b"0\r\n\r\n" not in buf:
                            buf = self.more(c, buf)
                        buf = buf.split(b"0\r\n\r\n", 1)[1]
                    self.respond(c, path)
        except EOFError:
            return

    @staticmethod
    def respond(c, path):
        def plain(status, body, extra=b""):
            c.sendall(b"HTTP/1.1 %s\r\nContent-Length: %d\r\n%s\r\n" % (status, len(body), extra)
                      + body)
        if path == b"/error":
            plain(b"500 Internal Server Error", ERROR_BODY, b"Content-Type: application/json\r\n")
        elif path == b"/upload":
            c.sendall(b"HTTP/1.1 201 Created\r\nTransfer-Encoding: chunked\r\n"
                      b"Content-Type: text/plain\r\n\r\n")
            for ch in REPLY_CHUNKS:  # each piece its own syscall and packet
                time.sleep(0.02)
                c.sendall(b"%x\r\n%s\r\n" % (len(ch), ch))
            c.sendall(b"0\r\n\r\n")
        elif path == b"/gzip":
            plain(b"200 OK", GZ_BODY, b"Content-Type: text/plain\r\nContent-Encoding: gzip\r\n")
        elif path == b"/long":
            plain(b"200 OK", LONG_BODY)
        elif path == b"/three-k":
            plain(b"200 OK", THREE_K)
        else:
            plain(b"404 Not Found", b"")



def read_response(c, buf=b""):
    """One response (Content-Length or chunked); returns what followed it."""
    c.settimeout(5)
    while b"\r\n\r\n" not in buf:
        buf += c.recv(65536)
    head, rest = buf.split(b"\r\n\r\n", 1)
    if b"chunked" in head.lower():
        while b"0\r\n\r\n" not in rest:
            rest += c.recv(65536)
        return rest.split(b"0\r\n\r\n", 1)[1]
    n = int(head.lower().split(b"content-length: ")[1].split(b"\r\n")[0])
    while len(rest) < n:
        rest += c.recv(65536)
    return rest[n:]


def traffic(port, paths):
    with socket.create_connection(("127.0.0.1", port)) as c:
        c.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        for p in paths:
            if p == "/upload":
                c.sendall(b"POST /upload HTTP/1.1\r\nHost: t\r\nContent-Type: text/csv\r\n"
                          b"Transfer-Encoding: chunked\r\n\r\n")
                for ch in UPLOAD_CHUNKS:
                    time.sleep(0.02)
                    c.sendall(b"%x\r\n%s\r\n" % (len(ch), ch))
                c.sendall(b"0\r\n\r\n")
            else:
                c.sendall(b"GET %s HTTP/1.1\r\nHost: t\r\n\r\n" % p.encode())
            assert read_response(c) == b""


def body(r, key):
    """A record's stored body as bytes (text or base64 form), and which form it was."""
    import base64
    if key in r:
        return r[key].encode(), "text"
    if key + "_base64" in r:
        return base64.b64decode(r[key + "_base64"]), "base64"
    return b"", None


def views_of(recs, port, views):
    out = []
    for side in ("local", "remote")[:views]:
        out.append({r["path"]: r for r in recs if r[side].endswith(":%d" % port)})
    return out


def check_bodies(srv, mode, views):
    hs = Server()
    paths = ["/error", "/upload", "/gzip", "/long"]
    try:
        recs, nums, err = tvtest.capture_records(
            srv, mode + ["--port", str(hs.port), "--body-bytes", "1K"],
            lambda: traffic(hs.port, paths))
    finally:
        hs.close()
    assert len(recs) == views * len(paths), (recs, err)
    for got in views_of(recs, hs.port, views):
        r = got["/error"]
        assert r["status"] == 500 and body(r, "resp_body") == (ERROR_BODY, "text"), (r, err)
        assert r["resp_content_type"] == "application/json", r
        assert "resp_content_encoding" not in r and "req_body" not in r, r
        r = got["/upload"]
        assert body(r, "req_body") == (b"".join(UPLOAD_CHUNKS), "text"), (r, err)
        assert r["req_body_bytes"] == len(b"".join(UPLOAD_CHUNKS)), r
        assert r["req_content_type"] == "text/csv", r
        assert body(r, "resp_body") == (b"".join(REPLY_CHUNKS), "text"), (r, err)
        assert r["status"] == 201 and r["resp_content_type"] == "text/plain", r
        r = got["/gzip"]
        assert body(r, "resp_body") == (GZ_BODY, "base64"), (r, err)
        assert r["resp_content_encoding"] == "gzip", r
        r = got["/long"]
        assert body(r, "resp_body") == (LONG_BODY[:1024], "text"), (r, err)
        assert r["resp_body_bytes"] == len(LONG_BODY) and r["flags"] == 0, r
    # the table form shows no body
    t = tvtest.run(["query", "--server", srv.addr, "--from", str(min(r["ts_ns"] for r in recs)),
                    "--to", str(max(r["ts_ns"] for r in recs) + 1), "--format", "table"],
                   check=True)
    assert "database is down" not in t.stdout and "Porto" not in t.stdout, t.stdout
    print("ok (%s): a 500's JSON body, chunked bodies de-chunked, gzip as sent (base64), "
          "a long body cut at --body-bytes" % " ".join(mode or ["tp"]))


def check_copy_and_default(srv, mode, views):
    hs = Server()
    try:
        # the response head and its 3000-byte body in one syscall, copied 1K: only the body
        # bytes of that copy are stored, none invented
        recs, _, err = tvtest.capture_records(
            srv, mode + ["--port", str(hs.port), "--payload-bytes", "1K", "--body-bytes", "1K"],
            lambda: traffic(hs.port, ["/three-k"]))
        assert len(recs) == views, (recs, err)
        for r in recs:
            b, _ = body(r, "resp_body")
            assert 0 < len(b) < 1024 and THREE_K.startswith(b), (r, err)
            assert r["resp_body_bytes"] == 3000 and r["flags"] == 0, r
        recs, _, err = tvtest.capture_records(srv, mode + ["--port", str(hs.port)],
                                              lambda: traffic(hs.port, ["/error", "/upload"]))
        assert len(recs) == 2 * views, (recs, err)
        for r in recs:
            assert not BODY_KEYS & set(r), r
    finally:
        hs.close()
    print("ok (%s): a body past the copy is a shorter prefix, not invented; no --body-bytes, "
          "no body" % " ".join(mode or ["tp"]))


def check_usage():
    for args, msg in ((["--body-bytes", "8K"], "--body-bytes 8K is above --payload-bytes 4K"),
                      (["--payload-bytes", "2K", "--body-bytes", "3K"],
                       "--body-bytes 3K is above --payload-bytes 2K"),
                      (["--body-bytes", "33K", "--payload-bytes", "32K"], "0 to 32K")):
        p = subprocess.run([tvtest.binary("tracevault"), "capture"] + args, capture_output=True,
                           text=True, timeout=30)
        assert p.returncode == 2 and msg in p.stderr and p.stderr.count("\n") == 1, \
            (args, p.returncode, p.stderr)
    print("ok: --body-bytes above --payload-bytes (or 32K) is a one-line usage error")


def main():
    check_usage()
    reason = tvtest.bpf_unavailable_reason()
    if reason:
        tvtest.skip(reason)
    with tvtest.Server() as srv:
        check_bodies(srv, [], 2)  # tracepoint: the client's and the server's end
        check_copy_and_default(srv, [], 2)
        if sockfilter.unavailable_reason():
            print("sockfilter part skipped: %s" % sockfilter.unavailable_reason())
            return
        check_bodies(srv, sockfilter.SOCKFILTER, 2)  # loopback: both ends
        check_copy_and_default(srv, sockfilter.SOCKFILTER, 2)


if __name__ == "__main__":
    main()
