"""`capture --sample-ratio` against a real nginx: traced requests are kept exactly when
OpenTelemetry's TraceIdRatioBased sampler (computed independently here) keeps their trace id,
untraced ones all-or-none per connection, and the rest is counted as sampled out, not lost."""
import collections
import http.client
import json
import os
import random
import re
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import tvtest  # noqa: E402

RATIO = 0.25
N_TRACED = 400          # on 4 keep-alive connections
N_CONNS_UNTRACED = 40   # 3 requests each
HTTP_TIMEOUT_S = 30


def otel_keeps(trace_id, ratio):
    """opentelemetry-java TraceIdRatioBasedSampler: |lower 64 bits as a signed long| <
    (long)(ratio * Long.MAX_VALUE), with Java's Math.abs(Long.MIN_VALUE) == Long.MIN_VALUE."""
    bound = int(ratio * float(2**63 - 1))
    low = int(trace_id[16:], 16)
    if low >= 2**63:
        low -= 2**64
    a = -2**63 if low == -2**63 else abs(low)
    return a < bound


def get(conn, path, headers):
    conn.request("GET", path, headers=headers)
    r = conn.getresponse()
    r.read()
    assert r.status == 200, (path, r.status)


def main():
    reason = tvtest.bpf_unavailable_reason()
    if reason:
        tvtest.skip(reason)
    rng = random.Random(20261126)
    ids = ["%032x" % rng.getrandbits(128) for _ in range(N_TRACED)]
    with tvtest.Server() as srv, tvtest.Nginx({"index.html": b"sampled\n"}) as ng:
        from_ns = time.time_ns()
        cap = tvtest.Capture(srv.addr, ["--pid", str(ng.pid), "--block-age-ms", "200",
                                        "--sample-ratio", str(RATIO)]).start()
        try:
            per_conn = N_TRACED // 4
            for c in range(4):
                conn = http.client.HTTPConnection("127.0.0.1", ng.port, timeout=HTTP_TIMEOUT_S)
                for i in range(c * per_conn, (c + 1) * per_conn):
                    get(conn, "/index.html?t=%d" % i,
                        {"traceparent": "00-%s-00f067aa0ba902b7-01" % ids[i]})
                conn.close()
            for c in range(N_CONNS_UNTRACED):
                conn = http.client.HTTPConnection("127.0.0.1", ng.port, timeout=HTTP_TIMEOUT_S)
                for _ in range(3):
                    get(conn, "/index.html", {})
                conn.close()
        finally:
            rc, err = cap.stop()
        assert rc == 0, "capture exited %s: %s" % (rc, err)
        q = tvtest.run(["query", "--server", srv.addr, "--from", str(from_ns),
                        "--to", str(time.time_ns() + 1), "--format", "jsonl"], check=True)
        recs = [json.loads(line) for line in q.stdout.splitlines() if line.strip()]

    want_traced = sorted(t for t in ids if otel_keeps(t, RATIO))
    got_traced = sorted(r["trace_id"] for r in recs if r["trace_id"])
    assert got_traced == want_traced, "kept trace ids differ from OTel's decisions: " \
        "%d kept, %d expected" % (len(got_traced), len(want_traced))
    untraced = collections.Counter(r["remote"] for r in recs if not r["trace_id"])
    assert all(n == 3 for n in untraced.values()), "a connection was split: %s" % untraced
    assert 0 < len(untraced) < N_CONNS_UNTRACED, untraced  # P(fail) ~ 1e-5
    total = N_TRACED + 3 * N_CONNS_UNTRACED
    m = re.search(r"sent (\d+), lost (\d+) ", err)
    s = re.search(r"sampled out (\d+) records", err)
    assert m and s, err
    assert int(m.group(1)) == len(recs) and int(m.group(2)) == 0, err
    assert len(recs) + int(s.group(1)) == total, (len(recs), s.group(1), total)
    print("ok: %d of %d traced kept exactly as OTel decides, %d of %d untraced connections "
          "kept whole, %s sampled out" % (len(got_traced), N_TRACED, len(untraced),
                                          N_CONNS_UNTRACED, s.group(1)))


if __name__ == "__main__":
    main()
