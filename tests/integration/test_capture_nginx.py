"""eBPF capture against a real nginx: for requests sent by curl (small and sendfile-sized files,
404s, HEAD, POST bodies, keep-alive, a traceparent), the records read back from tracevaultd
must equal nginx's own access log as a multiset of (method, path, status, body bytes)."""
import collections
import json
import os
import subprocess
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import tvtest  # noqa: E402

SMALL = b"hello tracevault\n"
LARGE = bytes((i * 7 + 3) % 251 for i in range(100 * 1024))  # served with sendfile
TRACE_ID = "4bf92f3577b34da6a3ce929d0e0e4736"
SPAN_ID = "00f067aa0ba902b7"
CURL_TIMEOUT_S = 30


def curl(*args):
    return tvtest.curl(*args, timeout_s=CURL_TIMEOUT_S)


def send_requests(base):
    """Returns the number of HTTP requests sent (each gets one access-log line)."""
    sent = 0
    for _ in range(8):
        assert curl(base + "/index.html") == ["200"]
        sent += 1
    for _ in range(6):
        assert curl(base + "/large.bin") == ["200"]
        sent += 1
    for i in range(5):
        assert curl(base + "/missing-%d" % i) == ["404"]
        sent += 1
    for _ in range(3):
        assert curl("-I", base + "/large.bin") == ["200"]  # HEAD: no body
        sent += 1
    for i in range(5):
        assert curl("--data-binary", "x" * (10 + i), base + "/post") == ["201"]
        sent += 1
    # above curl's 1 KiB threshold it sends Expect: 100-continue: interim response first
    for _ in range(2):
        p = subprocess.run(["curl", "-s", "-S", "-o", "/dev/null", "-w", "%{http_code}\\n",
                            "--data-binary", "@-", base + "/post"], input=b"y" * 5000,
                           capture_output=True, timeout=CURL_TIMEOUT_S)
        assert p.returncode == 0 and p.stdout.split() == [b"201"], p
        sent += 1
    # keep-alive: several requests on one connection
    for _ in range(4):
        codes = curl(base + "/index.html", base + "/large.bin", base + "/missing-ka",
                     base + "/index.html", base + "/large.bin")
        assert codes == ["200", "200", "404", "200", "200"], codes
        sent += 5
    assert curl("-H", "traceparent: 00-%s-%s-01" % (TRACE_ID, SPAN_ID),
                base + "/index.html") == ["200"]
    sent += 1
    return sent


def main():
    reason = tvtest.bpf_unavailable_reason()
    if reason:
        tvtest.skip(reason)
    with tvtest.Server() as srv, tvtest.Nginx({"index.html": SMALL, "large.bin": LARGE}) as ng:
        from_ns = time.time_ns()
        cap = tvtest.Capture(srv.addr, ["--pid", str(ng.pid), "--block-age-ms", "200"]).start()
        try:
            sent = send_requests("http://127.0.0.1:%d" % ng.port)
        finally:
            rc, err = cap.stop()
        assert rc == 0, "capture exited %s: %s" % (rc, err)
        ng.stop()  # flushes the access log
        log = ng.access_log()
        assert len(log) == sent, "nginx logged %d requests, %d sent" % (len(log), sent)
        q = tvtest.run(["query", "--server", srv.addr, "--from", str(from_ns),
                        "--to", str(time.time_ns() + 1), "--format", "jsonl"], check=True)
        recs = [json.loads(line) for line in q.stdout.splitlines() if line.strip()]

        want = collections.Counter((m, u, int(s), int(b)) for m, u, s, b, _ in log)
        got = collections.Counter((r["method"], r["path"], r["status"], r["resp_body_bytes"])
                                  for r in recs)
        if got != want or len(recs) != len(log):
            raise AssertionError("captured records differ from nginx's access log\n"
                                 "missing: %s\nextra: %s\ncapture: %s"
                                 % (dict(want - got), dict(got - want), err.strip()))
        assert "sent %d, lost 0" % len(recs) in err, err

        # fields the access log does not carry
        ts = [r["ts_ns"] for r in recs]
        assert ts == sorted(ts), "query output not ordered by ts_ns"
        for r in recs:
            assert r["pid"] == ng.pid and r["comm"] == "nginx", r
            assert r["local"] == "127.0.0.1:%d" % ng.port, r
            assert r["remote"].startswith("127.0.0.1:"), r
            assert from_ns <= r["ts_ns"] <= r["end_ns"], r
            assert r["latency_ns"] == r["end_ns"] - r["ts_ns"], r
            assert r["flags"] == 0, r  # every exchange seen whole: no flag
        posts = sorted(r["req_body_bytes"] for r in recs if r["method"] == "POST")
        assert posts == [10, 11, 12, 13, 14, 5000, 5000], posts
        traced = [r for r in recs if r["trace_id"]]
        assert [(r["trace_id"], r["span_id"]) for r in traced] == [(TRACE_ID, SPAN_ID)], traced
        print("ok: %d requests captured, matching nginx's access log" % len(recs))


if __name__ == "__main__":
    main()
