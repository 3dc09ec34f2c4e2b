"""eBPF capture fidelity beyond nginx's mix: (a) a second, independent server (lighttpd, its own
access log) gives the same record == log-line equality; (b) under wrk load against nginx no
exchange is lost: records == access-log lines, wrk's completed requests are all among them,
and the kernel and client loss counters stay 0."""
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import tvtest  # noqa: E402
from tvtest import RawHttp, http_request as req  # noqa: E402

SMALL = b"hello from lighttpd\n"
BIG = bytes((i * 11 + 5) % 253 for i in range(300 * 1024))
WRK_CONNS = 10


curl = tvtest.curl


def lighttpd_traffic(port):
    """curl singles and a keep-alive run, then raw keep-alive, pipelining and byte-by-byte
    requests; returns how many requests were sent."""
    base = "http://127.0.0.1:%d" % port
    assert curl(base + "/index.html") == ["200"]
    assert curl(base + "/big.bin", base + "/missing", base + "/index.html?q=1") == \
        ["200", "404", "200"]
    assert curl("-I", base + "/big.bin") == ["200"]
    sent = 5
    with RawHttp(port) as c:
        for r, head in ((req("GET", "/index.html"), False), (req("HEAD", "/index.html"), True),
                        (req("GET", "/big.bin"), False), (req("GET", "/nope"), False)):
            c.send(r)
            c.read_response(head_request=head)
        c.send(b"".join([req("GET", "/index.html"), req("GET", "/big.bin"),
                         req("GET", "/pipe-missing")]))
        got = [c.read_response() for _ in range(3)]
        assert [s for s, _ in got] == [200, 200, 404], got
        c.send_bytewise(req("GET", "/index.html"))
        assert c.read_response() == (200, len(SMALL))
    sent += 8
    with RawHttp(port) as c:
        c.send(req("GET", "/big.bin", version="HTTP/1.0"))
        assert c.read_response(close_delimited_ok=True) == (200, len(BIG))
    return sent + 1


def test_lighttpd(srv):
    if not tvtest.Lighttpd.binary():
        print("note: lighttpd is not installed (scripts/deps.sh installs it): second server "
              "not tested")
        return False
    with tvtest.Lighttpd({"index.html": SMALL, "big.bin": BIG}) as lt:
        counts = {}

        def run():
            counts["sent"] = lighttpd_traffic(lt.port)
        recs, nums, err = tvtest.capture_records(
            srv, ["--pid", str(lt.pid), "--payload-bytes", "32K"], run)
        lt.stop()  # closes the access log
        log = lt.access_log()
        assert len(log) == counts["sent"], "lighttpd logged %d requests, %d sent: %s" % (
            len(log), counts["sent"], log)
        tvtest.compare_exchanges(log, recs, "lighttpd", err)
        assert nums["lost"] == 0, err
        for r in recs:
            assert r["flags"] == 0 and r["comm"] == "lighttpd", r
    print("ok: lighttpd: %d requests, each one record matching its access-log line" % len(recs))
    return True


def test_wrk(srv, capture_args=lambda ng: ["--pid", str(ng.pid), "--ring-bytes", "64M"],
             what="nginx under wrk"):
    """wrk -t1 -c10 -d2s: nothing lost. wrk counts the responses it read before its timer
    fired; the requests still in flight then (at most one per connection: wrk does not
    pipeline) are served and logged by nginx after wrk stopped counting. So the exact
    statements are: records == access log (as a multiset), loss counters 0, and
    wrk's count <= log lines <= wrk's count + connections. capture_args(nginx): the capture's
    options (test_capture_sockfilter runs this with --mode sockfilter)."""
    body = b"w" * 612
    with tvtest.Nginx({"index.html": body}) as ng:
        out = {}

        def run():
            out["wrk"] = tvtest.wrk("http://127.0.0.1:%d/index.html" % ng.port, threads=1,
                                    conns=WRK_CONNS, duration_s=2)
        recs, nums, err = tvtest.capture_records(srv, capture_args(ng), run)
        ng.stop()
        log = [(m, u, int(s), int(b)) for m, u, s, b, _ in ng.access_log()]
    completed, rps, bad, _ = out["wrk"]
    assert not bad, "wrk saw errors: %s" % bad
    if nums["lost"] or nums["ring_full"] or nums["map_full"]:
        raise AssertionError("capture lost exchanges under wrk (%d req/s): %s" % (rps, err))
    assert completed > 1000, "wrk completed only %d requests" % completed
    tvtest.compare_exchanges(log, recs, what, err)
    assert completed <= len(log) <= completed + WRK_CONNS, (completed, len(log))
    assert all(x == ("GET", "/index.html", 200, len(body)) for x in log[:completed]), \
        "nginx logged something other than wrk's GETs"
    # The requests in flight when wrk closed its connections at its deadline: nginx had sent
    # the head, the body's sendfile then failed on the closed socket, and the record is flagged
    # partial (2) with the bytes nginx logged (compare_exchanges checked those). Only those may
    # be flagged, so there are at most as many as nginx logged beyond wrk's count.
    cut = [r for r in recs if r["flags"] != 0]
    assert len(cut) <= len(log) - completed, (cut, completed, len(log))
    assert all(r["flags"] == 2 and r["resp_body_bytes"] < len(body) for r in cut), cut
    print("ok: %s: wrk completed %d requests (%.0f req/s); nginx logged %d, captured %d, "
          "lost 0" % (what, completed, rps, len(log), len(recs)))


def main():
    reason = tvtest.bpf_unavailable_reason()
    if reason:
        tvtest.skip(reason)
    with tvtest.Server() as srv:
        test_lighttpd(srv)
        test_wrk(srv)


if __name__ == "__main__":
    main()
