"""eBPF capture against a real nginx under a traffic mix built from curl and a raw-socket client:
keep-alive, pipelining, byte-by-byte writes, POST with Content-Length / chunked / 100-continue,
HEAD, 404, HTTP/1.0, query strings and a 1 MiB sendfile body. Every access-log line must be
exactly one captured record (method, path, status, response body bytes), and nothing else."""
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import tvtest  # noqa: E402
from tvtest import RawHttp, http_request as req  # noqa: E402

SMALL = b"hello tracevault\n"
MEDIUM = bytes((i * 13 + 1) % 256 for i in range(20000))
HUGE = bytes((i * 7 + 3) % 251 for i in range(1 << 20))  # 1 MiB: nginx sends it with sendfile
FILES = {"index.html": SMALL, "medium.bin": MEDIUM, "huge.bin": HUGE}
# nginx writes "100 Continue" straight to the socket and counts it in $body_bytes_sent (it is
# in c->sent, not in the header size), so an exchange with an interim 100 is logged with these
# bytes too; the record counts only the final response's body, which is what was served
CONTINUE_BYTES = len(b"HTTP/1.1 100 Continue\r\n\r\n")
POST_REPLY = len(b"created\n")


curl = tvtest.curl


def traffic(port):
    """Sends the mix; returns how many requests were sent and the POST body sizes, checking
    each response as the client saw it (so a server-side surprise fails here, not later)."""
    base = "http://127.0.0.1:%d" % port
    sent, posts = 0, []

    # curl: single requests, one keep-alive run, HEAD, a 1 MiB body, a query string
    assert curl(base + "/index.html") == ["200"]
    assert curl(base + "/huge.bin", base + "/huge.bin") == ["200", "200"]
    assert curl(base + "/index.html?user=a&token=b") == ["200"]
    assert curl("-I", base + "/huge.bin") == ["200"]
    assert curl(base + "/nope", base + "/index.html", base + "/medium.bin") == ["404", "200",
                                                                               "200"]
    assert curl("--data-binary", "@-", base + "/post", data=b"c" * 3000) == ["201"]  # Expect
    assert curl("-H", "Transfer-Encoding: chunked", "--data-binary", "@-", base + "/post",
                data=b"k" * 700) == ["201"]
    sent += 10
    posts += [3000, 700]

    # keep-alive: every kind of exchange on one raw connection, one after another
    with RawHttp(port) as c:
        for r, head, want in ((req("GET", "/index.html"), False, (200, len(SMALL))),
                              (req("HEAD", "/medium.bin"), True, (200, 0)),
                              (req("GET", "/missing-ka"), False, (404, None)),
                              (req("POST", "/post", body=b"p" * 123), False, (201, 8)),
                              (req("GET", "/huge.bin"), False, (200, len(HUGE))),
                              (req("GET", "/medium.bin?x=1"), False, (200, len(MEDIUM)))):
            c.send(r)
            got = c.read_response(head_request=head)
            assert got[0] == want[0] and want[1] in (None, got[1]), (r[:40], got, want)
    sent += 6
    posts.append(123)

    # pipelining: six requests in one send, answered in order
    with RawHttp(port) as c:
        batch = [req("GET", "/index.html"), req("GET", "/pipe-404"), req("HEAD", "/index.html"),
                 req("POST", "/post", body=b"q" * 40), req("GET", "/medium.bin"),
                 req("GET", "/huge.bin")]
        c.send(b"".join(batch))
        got = [c.read_response(head_request=(i == 2)) for i in range(len(batch))]
        assert [s for s, _ in got] == [200, 404, 200, 201, 200, 200], got
        assert got[4][1] == len(MEDIUM) and got[5][1] == len(HUGE), got
    sent += 6
    posts.append(40)

    # split writes: requests written one byte per send, a POST body too
    with RawHttp(port) as c:
        c.send_bytewise(req("GET", "/index.html?split=1"))
        assert c.read_response() == (200, len(SMALL))
        c.send_bytewise(req("POST", "/post", body=b"s" * 17))
        assert c.read_response() == (201, 8)
    sent += 2
    posts.append(17)

    # POST bodies: Content-Length in pieces, chunked (chunks split across sends), 100-continue
    with RawHttp(port) as c:
        body = b"L" * 5000
        r = req("POST", "/post", body=body)
        c.send(r[:len(r) - 4000])
        c.send(r[len(r) - 4000:])
        assert c.read_response() == (201, 8)
        c.send(req("POST", "/post", ["Transfer-Encoding: chunked"]))
        for piece in (b"5\r\nhel", b"lo\r\n", b"1", b"0\r\n" + b"w" * 16 + b"\r\n", b"0\r\n\r\n"):
            c.send(piece)
        assert c.read_response() == (201, 8)
        c.send(req("POST", "/post", ["Expect: 100-continue", "Content-Length: 2048"]))
        status, _ = c.read_head()
        assert status == 100, "nginx did not answer Expect: 100-continue with 100"
        c.send(b"e" * 2048)
        assert c.read_response() == (201, 8)
    sent += 3
    posts += [5000, 21, 2048]

    # HTTP/1.0: one request per connection, closed by the server after the response
    for path, want in (("/index.html", 200), ("/huge.bin", 200), ("/old-404", 404)):
        with RawHttp(port) as c:
            c.send(req("GET", path, version="HTTP/1.0"))
            status, _ = c.read_response(close_delimited_ok=True)
            assert status == want, (path, status)
    with RawHttp(port) as c:
        c.send(req("HEAD", "/medium.bin", version="HTTP/1.0"))
        assert c.read_response(head_request=True)[0] == 200
    sent += 4
    return sent, posts


def main():
    reason = tvtest.bpf_unavailable_reason()
    if reason:
        tvtest.skip(reason)
    with tvtest.Server() as srv, tvtest.Nginx(FILES) as ng:
        counts = {}

        def run():
            counts["sent"], counts["posts"] = traffic(ng.port)
        # 32 KiB copies: nginx reads a pipelined batch in one read; the heads must all be copied
        recs, nums, err = tvtest.capture_records(
            srv, ["--pid", str(ng.pid), "--payload-bytes", "32K"], run)
        ng.stop()  # flushes the access log
        log = [(m, u, int(s), int(b)) for m, u, s, b, _ in ng.access_log()]
        assert len(log) == counts["sent"], "nginx logged %d requests, %d sent" % (len(log),
                                                                                  counts["sent"])
        # exactly the one raw 100-continue exchange carries the interim bytes (curl's POSTs may
        # not get a 100: nginx sends it only when no body byte has arrived yet)
        cont = ("POST", "/post", 201, POST_REPLY + CONTINUE_BYTES)
        assert log.count(cont) == 1, log
        log = [("POST", "/post", 201, POST_REPLY) if x == cont else x for x in log]
        tvtest.compare_exchanges(log, recs, "nginx mix", err)
        assert nums["lost"] == 0 and nums["ring_full"] == 0 and nums["map_full"] == 0, err
        assert nums["resyncs"] == 0, err  # the parser never lost its place

        # what the access log does not say, but the records must
        for r in recs:
            assert r["flags"] == 0, r  # every exchange seen whole
            assert r["pid"] == ng.pid and r["comm"] == "nginx", r
            # the query is kept by default, the values of credential names redacted
            assert "?" not in r["path"] or r["path"] in (
                "/index.html?user=a&token=REDACTED", "/medium.bin?x=1",
                "/index.html?split=1"), r
            assert r["local"] == "127.0.0.1:%d" % ng.port, r
        queries = sorted(r["path"] for r in recs if "?" in r["path"])
        assert queries == ["/index.html?split=1", "/index.html?user=a&token=REDACTED",
                           "/medium.bin?x=1"], queries
        posts = sorted(r["req_body_bytes"] for r in recs if r["method"] == "POST")
        assert posts == sorted(counts["posts"]), (posts, sorted(counts["posts"]))
        huge = [r for r in recs if r["path"] == "/huge.bin" and r["method"] == "GET"]
        assert len(huge) == 5 and all(r["resp_body_bytes"] == len(HUGE) for r in huge), huge
        print("ok: %d requests of the mix captured, each matching one nginx access-log line"
              % len(recs))


if __name__ == "__main__":
    main()
