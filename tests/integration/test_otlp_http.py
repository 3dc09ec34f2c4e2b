"""tracevaultd's OTLP/HTTP endpoint, POST /v1/traces on its --http-addr port (README "OTLP
ingest", server/otlp_http.h), against independent clients: http.client with the messages
compiled from the published opentelemetry-proto schema (tests/otlp), and the OpenTelemetry SDK
for Node.js with @opentelemetry/exporter-trace-otlp-proto (npm, pinned, installed into the
build dir; SKIP of that one case without node/npm or when the install fails).
Checked, per the OTLP specification's OTLP/HTTP section: spans stored as sent and found by
Query; a gzip body; partial success in the 200's ExportTraceServiceResponse; a malformed body
is 400 with a google.rpc.Status body; a body past --otlp-max-message-bytes is 413, raw (with
Content-Length, and chunked) or as gzip that inflates past it; 415 for JSON and other media
types or encodings; 405 for other methods; a throttled server answers 503 with Retry-After
and the Status with its RetryInfo; a 200 survives kill -9."""
import gzip
import http.client
import json
import os
import random
import signal
import socket
import subprocess
import sys
import tempfile
import threading

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import tvtest  # noqa: E402
from tvtest import metrics as tvmetrics  # noqa: E402
# the OTLP message helpers of the gRPC path's test: the same schema, spans and reads
from test_otlp_ingest import (Otlp, ids, otlp_modules, retry_delay_s, spans_of,  # noqa: E402
                              varint_at)

PATH = "/v1/traces"
PROTO = "application/x-protobuf"
TIMEOUT_S = 30
NPM_PACKAGES = ["@opentelemetry/exporter-trace-otlp-proto@0.301.0",
                "@opentelemetry/sdk-trace@3.1.0",
                "@opentelemetry/resources@3.1.0",
                "@opentelemetry/api@1.10.0"]
SDK_APP = os.path.join(os.path.dirname(os.path.abspath(__file__)), "otel", "http_export.js")


def http_addr(srv):
    addr = tvmetrics.metrics_addr(srv.log())
    assert addr, srv.log()[-2000:]
    return addr


def post(addr, body, content_type=PROTO, encoding=None, method="POST", path=PATH,
         chunked=False, headers=None):
    """(status, headers dict with lower-case names, body bytes) of one request."""
    host, port = addr.rsplit(":", 1)
    conn = http.client.HTTPConnection(host, int(port), timeout=TIMEOUT_S)
    h = dict(headers or {})
    if content_type:
        h["Content-Type"] = content_type
    if encoding:
        h["Content-Encoding"] = encoding
    try:
        if chunked:  # no Content-Length: the server learns the size only as it reads
            conn.request(method, path, body=iter([body[i:i + 65536]
                                                  for i in range(0, len(body), 65536)]),
                         headers=h, encode_chunked=True)
        else:
            conn.request(method, path, body=body, headers=h)
        r = conn.getresponse()
        return r.status, {k.lower(): v for k, v in r.getheaders()}, r.read()
    finally:
        conn.close()


def rpc_status(body):
    """(code, message) of a google.rpc.Status (decoded by hand: field 1 code, 2 message)."""
    i, code, msg = 0, 0, ""
    while i < len(body):
        key, i = varint_at(body, i)
        if key & 7 == 0:
            v, i = varint_at(body, i)
            if key >> 3 == 1:
                code = v
        elif key & 7 == 2:
            n, i = varint_at(body, i)
            if key >> 3 == 2:
                msg = body[i:i + n].decode()
            i += n
        else:
            raise AssertionError("wire type %d in %r" % (key & 7, body))
    return code, msg


def assert_status_body(st, hdrs, body, want_status, want_text):
    assert st == want_status, (st, body)
    assert hdrs.get("content-type") == PROTO, hdrs
    code, msg = rpc_status(body)
    assert want_text in msg, (msg, body)
    return code, msg


def test_spans_stored_as_sent(srv, otlp):
    """A binary protobuf request: 200 with an empty ExportTraceServiceResponse in the same
    Content-Type; the spans come back from Query field by field."""
    rng = random.Random(21)
    tid, root = ids(rng)
    child = rng.randbytes(8)
    sp1 = otlp.span(tid, root, name="POST /h", kind=2, dur=7000,
                    attrs={"http.method": "POST", "n": 3, "ok": True, "r": 0.25},
                    trace_state="k=v", flags=0x101)
    sp1.status.code = 2
    sp1.status.message = "bad"
    sp2 = otlp.span(tid, child, parent=root, name="child", kind=3, start=otlp_t0() + 10, dur=5)
    st, hdrs, body = post(http_addr(srv), otlp.request(
        {"http-a": [sp1], "http-b": [sp2]}).SerializeToString())
    assert st == 200, (st, body)
    assert hdrs.get("content-type") == PROTO, hdrs
    resp = otlp.svc.ExportTraceServiceResponse.FromString(body)
    assert not resp.HasField("partial_success"), resp
    got = spans_of(srv)
    r1, r2 = got[root.hex()], got[child.hex()]
    assert r1.trace_id == tid.hex() and r1.latency_ns == 7000, r1
    assert r1.span.name == "POST /h" and r1.span.kind == 2 and r1.span.service == "http-a", r1
    assert r1.span.status_code == 2 and r1.span.status_message == "bad", r1
    assert r1.span.trace_state == "k=v" and r1.span.flags == 0x101, r1
    attrs = {a.key: getattr(a, a.WhichOneof("value")) for a in r1.span.attributes}
    assert attrs == {"http.method": "POST", "n": 3, "ok": True, "r": 0.25}, attrs
    assert r2.span.parent_span_id == root.hex() and r2.span.service == "http-b", r2
    # Content-Type parameters are allowed; an empty request is a success (the spec)
    st, _, body = post(http_addr(srv), b"", content_type=PROTO + "; charset=binary")
    assert st == 200 and body == b"", (st, body)


def otlp_t0():
    from test_otlp_ingest import T0
    return T0


def test_gzip_body(srv, otlp):
    """Content-Encoding: gzip (the Collector's default), also two gzip members; the same
    bytes with a broken gzip stream are 400 and store nothing."""
    rng = random.Random(22)
    spans = [otlp.span(*ids(rng), name="gz%d" % i) for i in range(50)]
    raw = otlp.request({"gz": spans}).SerializeToString()
    st, hdrs, body = post(http_addr(srv), gzip.compress(raw), encoding="gzip")
    assert st == 200, (st, body)
    got = spans_of(srv)
    assert all(s.span_id.hex() in got and got[s.span_id.hex()].span.name == s.name
               for s in spans), len(got)
    more = [otlp.span(*ids(rng), name="gz2") for _ in range(4)]
    raw = otlp.request({"gz": more}).SerializeToString()
    half = len(raw) // 2  # two gzip members (RFC 1952): their contents concatenate
    st, _, body = post(http_addr(srv), gzip.compress(raw[:half]) + gzip.compress(raw[half:]),
                       encoding="gzip")
    assert st == 200, (st, body)
    assert all(s.span_id.hex() in spans_of(srv) for s in more)
    bad = [otlp.span(*ids(rng), name="gz3")]
    z = gzip.compress(otlp.request({"gz": bad}).SerializeToString())
    for broken in (z[:len(z) // 2], b"not gzip at all", z + b"trailing junk"):
        st, hdrs, body = post(http_addr(srv), broken, encoding="gzip")
        assert_status_body(st, hdrs, body, 400, "gzip")
    assert bad[0].span_id.hex() not in spans_of(srv)


def test_partial_success(srv, otlp):
    """Refused spans are counted in the 200's partial_success, the others stored."""
    rng = random.Random(23)
    tid, good = ids(rng)
    bad = [otlp.span(tid[:15], rng.randbytes(8)), otlp.span(tid, rng.randbytes(7)),
           otlp.span(tid, rng.randbytes(8), dur=-5)]
    st, _, body = post(http_addr(srv), otlp.request(
        {"ps": [bad[0], otlp.span(tid, good)] + bad[1:]}).SerializeToString())
    assert st == 200, (st, body)
    resp = otlp.svc.ExportTraceServiceResponse.FromString(body)
    assert resp.partial_success.rejected_spans == 3, resp
    assert "trace_id is 15 bytes" in resp.partial_success.error_message, resp
    got = spans_of(srv)
    assert good.hex() in got
    assert not any(b.span_id.hex() in got for b in bad if len(b.span_id) == 8)


def test_malformed_is_400_with_status(srv, otlp):
    for junk in (b"\xff\xff\xff", b"\x0a\x05\x0a\x03\x0a", bytes(range(256))):
        st, hdrs, body = post(http_addr(srv), junk)
        code, _ = assert_status_body(st, hdrs, body, 400, "ExportTraceServiceRequest")
        assert code == 3, code  # INVALID_ARGUMENT, as the gRPC path says it
    rng = random.Random(24)
    tid, sid = ids(rng)
    st, _, _ = post(http_addr(srv), otlp.request({"m": [otlp.span(tid, sid)]})
                    .SerializeToString())
    assert st == 200 and sid.hex() in spans_of(srv)


def test_too_large_is_413(srv_small, otlp):
    """--otlp-max-message-bytes 64K: a body of exactly 64K is read (400: junk), one byte more
    is 413 (by Content-Length and chunked alike); a gzip body that inflates past 64K (a gzip
    bomb: 64 MiB of zeros in ~64 KB... here 1 MiB in ~1 KB) is 413; a real request under the
    cap is stored, gzip or not."""
    addr = http_addr(srv_small)
    cap = 64 << 10
    st, hdrs, body = post(addr, b"\xff" * cap)
    assert_status_body(st, hdrs, body, 400, "ExportTraceServiceRequest")
    for chunked in (False, True):
        st, hdrs, body = post(addr, b"\xff" * (cap + 1), chunked=chunked)
        assert_status_body(st, hdrs, body, 413, "--otlp-max-message-bytes")
        st, hdrs, body = post(addr, b"\xff" * (cap * 4), chunked=chunked)
        assert_status_body(st, hdrs, body, 413, "--otlp-max-message-bytes")
    # a Content-Length past the cap is refused before a byte of the body is read: the
    # answer comes though the body is never sent
    host, port = addr.rsplit(":", 1)
    with socket.create_connection((host, int(port)), timeout=5) as sk:
        sk.sendall(b"POST /v1/traces HTTP/1.1\r\nHost: x\r\nContent-Type: " + PROTO.encode() +
                   b"\r\nContent-Length: %d\r\n\r\n" % (100 << 20))
        head = sk.recv(4096)
    assert head.startswith(b"HTTP/1.1 413 "), head
    bomb = gzip.compress(b"\0" * (1 << 20))
    assert len(bomb) < 2048, len(bomb)
    st, hdrs, body = post(addr, bomb, encoding="gzip")
    assert_status_body(st, hdrs, body, 413, "inflates past")
    # inflating to exactly the cap is fine (400: zeros are no valid request)
    st, hdrs, body = post(addr, gzip.compress(b"\xff" * cap), encoding="gzip")
    assert_status_body(st, hdrs, body, 400, "ExportTraceServiceRequest")
    st, hdrs, body = post(addr, gzip.compress(b"\xff" * (cap + 1)), encoding="gzip")
    assert_status_body(st, hdrs, body, 413, "inflates past")
    rng = random.Random(25)
    spans = [otlp.span(*ids(rng)) for _ in range(20)]
    raw = otlp.request({"big": spans}).SerializeToString()
    assert len(raw) < cap
    st, _, body = post(addr, gzip.compress(raw), encoding="gzip")
    assert st == 200, (st, body)
    assert all(s.span_id.hex() in spans_of(srv_small) for s in spans)


def test_unsupported_media_is_415(srv, otlp):
    rng = random.Random(26)
    sp = otlp.span(*ids(rng))
    raw = otlp.request({"m": [sp]}).SerializeToString()
    from google.protobuf import json_format
    as_json = json_format.MessageToJson(otlp.request({"m": [sp]})).encode()
    for ctype, enc, body in (("application/json", None, as_json),
                             ("text/plain", None, raw), (None, None, raw),
                             ("application/x-protobufx", None, raw),
                             (PROTO, "br", raw), (PROTO, "deflate", raw)):
        st, hdrs, rbody = post(http_addr(srv), body, content_type=ctype, encoding=enc)
        assert_status_body(st, hdrs, rbody, 415, "is not served")
    assert sp.span_id.hex() not in spans_of(srv)


def test_other_methods_are_405(srv):
    for method in ("GET", "PUT", "DELETE", "HEAD"):
        st, hdrs, _ = post(http_addr(srv), b"x" if method == "PUT" else None, method=method)
        assert st == 405, (method, st)
        assert hdrs.get("allow") == "POST", (method, hdrs)
    # the other routes still answer GET
    st, _, body = post(http_addr(srv), None, method="GET", path="/metrics", content_type=None)
    assert st == 200 and b"tracevault_server_otlp_spans_accepted_total" in body, st


def test_throttled_is_503_with_retry_after(mods):
    """--otlp-max-pending-bytes 64K: 16 clients each POST 3 requests of ~40K at once; those the
    Export path throttles are 503 with Retry-After: 1 and the google.rpc.Status with its
    RetryInfo of 1 s as the body; exactly the spans of the 200s are stored."""
    with tvtest.Server(extra_args=["--otlp-max-pending-bytes", "64K",
                                   "--http-addr", "127.0.0.1:0"]) as srv:
        otlp = Otlp(srv.addr, mods)
        addr = http_addr(srv)
        rng = random.Random(27)
        reqs = [otlp.request({"thr": [otlp.span(*ids(rng), name="y" * 700)
                                      for _ in range(50)]}) for _ in range(48)]
        assert all(32000 < r.ByteSize() < 48000 for r in reqs), [r.ByteSize() for r in reqs]
        results = [None] * len(reqs)

        def client(k):
            for i in range(k, len(reqs), 16):
                results[i] = post(addr, reqs[i].SerializeToString())
        threads = [threading.Thread(target=client, args=(k,)) for k in range(16)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(TIMEOUT_S * 2)
        assert all(r is not None for r in results), results
        codes = [r[0] for r in results]
        assert set(codes) <= {200, 503}, codes
        throttled = [r for r in results if r[0] == 503]
        print("     %d of %d POSTs throttled" % (len(throttled), len(reqs)))
        assert throttled and len(throttled) < len(reqs), codes
        for st, hdrs, body in throttled:
            assert hdrs.get("retry-after") == "1", hdrs
            assert hdrs.get("content-type") == PROTO, hdrs
            assert retry_delay_s(body) == 1.0, body
            assert "--otlp-max-pending-bytes" in rpc_status(body)[1], body
        sent = [[sp.span_id.hex() for sp in r.resource_spans[0].scope_spans[0].spans]
                for r in reqs]
        ok_ids = {s for i, r in enumerate(results) if r[0] == 200 for s in sent[i]}
        assert set(spans_of(srv)) == ok_ids, len(ok_ids)
        sc = tvmetrics.Scrape(addr)
        assert sc.value("tracevault_server_otlp_exports_throttled_total") == len(throttled)


def test_200_survives_kill9(mods):
    """The 200 is sent only once the spans are durable: kill -9 right after it loses none."""
    with tvtest.Server(extra_args=["--http-addr", "127.0.0.1:0"]) as srv:
        otlp = Otlp(srv.addr, mods)
        addr = http_addr(srv)
        rng = random.Random(28)
        sent = []
        for i in range(20):
            spans = [otlp.span(*ids(rng)) for _ in range(30)]
            raw = otlp.request({"k9": spans}).SerializeToString()
            st, _, body = post(addr, gzip.compress(raw) if i % 2 else raw,
                               encoding="gzip" if i % 2 else None)
            assert st == 200, (st, body)
            sent += [s.span_id.hex() for s in spans]
        srv.stop(sig=signal.SIGKILL)
        srv.start()
        got = spans_of(srv)
        assert set(sent) <= set(got), len(set(sent) - set(got))


def test_grpc_gzip_as_the_collector_sends(srv, otlp):
    """The Collector's otlp (gRPC) exporter compresses with gzip by default (README's Collector
    snippet): a gzip-compressed gRPC Export is stored like a plain one."""
    import grpc
    rng = random.Random(29)
    spans = [otlp.span(*ids(rng), name="grpc-gz") for _ in range(40)]
    resp = otlp.export_raw(otlp.request({"grpc-gz": spans}).SerializeToString(),
                           timeout=TIMEOUT_S, compression=grpc.Compression.Gzip)
    assert not resp.HasField("partial_success"), resp
    got = spans_of(srv)
    assert all(s.span_id.hex() in got for s in spans)


def npm_modules():
    """BUILD/npm-otlp-http/node_modules with NPM_PACKAGES installed (once per build dir), or SKIP."""
    return tvtest.npm_modules("npm-otlp-http", NPM_PACKAGES, "the OTLP/HTTP exporter")


def test_otel_sdk_proto_exporter(srv, tmp):
    """The OpenTelemetry SDK for Node.js, @opentelemetry/exporter-trace-otlp-proto to
    http://HOST:PORT/v1/traces, plain and gzip-compressed: every span its exporter reported
    exported is in the archive exactly once, with its ids, parent, name and kind."""
    modules = npm_modules()
    recs = None
    for compression in ("none", "gzip"):
        service = "node-http-" + compression
        out = os.path.join(tmp, "exported-%s.jsonl" % compression)
        env = dict(os.environ, NODE_PATH=modules, OUT=out, N="200", COMPRESSION=compression,
                   OTLP_URL="http://%s%s" % (http_addr(srv), PATH), SERVICE=service)
        p = subprocess.run(["node", SDK_APP], env=env, capture_output=True, text=True,
                           timeout=120)
        assert p.returncode == 0, p.stderr[-3000:]
        with open(out) as f:
            exported = [json.loads(x) for x in f if x.strip()]
        assert len(exported) == 200, (len(exported), p.stderr[-2000:])
        recs = tvtest.GrpcClient(srv.addr).query(0, 2**64 - 1)
        mine = [r for r in recs if r.HasField("span") and r.span.service == service]
        assert len(mine) == len(exported), (compression, len(mine), len(exported))  # once
        by_id = {r.span_id: r for r in mine}
        assert len(by_id) == len(mine), compression
        for s in exported:
            r = by_id[s["span_id"]]
            assert r.trace_id == s["trace_id"] and r.span.name == s["name"], (r, s)
            assert r.span.parent_span_id == s["parent_span_id"], (r, s)
            assert r.span.kind == s["kind"] + 1, (r, s)  # the JS API's kinds: OTLP's minus 1


def main():
    only = sys.argv[1:]
    with tempfile.TemporaryDirectory() as tmp:
        mods = otlp_modules(tmp)
        http = ["--http-addr", "127.0.0.1:0"]
        small = http + ["--otlp-max-message-bytes", "64K"]
        with tvtest.Server(extra_args=http) as srv, \
                tvtest.Server(extra_args=small) as srv_small:
            otlp = Otlp(srv.addr, mods)
            args = {"srv": srv, "otlp": otlp, "srv_small": srv_small, "mods": mods,
                    "tmp": tmp}
            cases = tvtest.cases(globals(), only)
            res = tvtest.Results(len(cases))
            for t in cases:
                names = t.__code__.co_varnames[:t.__code__.co_argcount]
                res.run(t, *[args[n] for n in names])
            for s in (srv, srv_small):
                if s.stop() != 0:
                    res.fail("tracevaultd exit status: " + s.log()[-2000:])
        return res.exit_code()


if __name__ == "__main__":
    sys.exit(main())
