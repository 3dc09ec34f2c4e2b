"""tracevaultd's OTLP trace service (PROTOCOL.md "OTLP ingest") against an independent client:
grpcio with the messages compiled from the published opentelemetry-proto schema (tests/otlp),
not from our own subset. Spans sent are read back through Query (TraceRecord.span), partial
success counts the refused spans, malformed and oversized requests are refused whole, a server
over its pending-bytes bound answers RESOURCE_EXHAUSTED with a google.rpc.RetryInfo, an
answered Export survives kill -9, and the span counters show on /metrics."""
import base64
import os
import random
import signal
import subprocess
import sys
import tempfile

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import tvtest  # noqa: E402
from tvtest import metrics as tvmetrics  # noqa: E402

grpc, pb = tvtest.grpc_modules()

OTLP_DIR = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "otlp")
OTLP_PROTOS = ["opentelemetry/proto/common/v1/common.proto",
               "opentelemetry/proto/resource/v1/resource.proto",
               "opentelemetry/proto/trace/v1/trace.proto",
               "opentelemetry/proto/collector/trace/v1/trace_service.proto"]
EXPORT = "/opentelemetry.proto.collector.trace.v1.TraceService/Export"
T0 = 1_700_000_000_000_000_000  # span start times: unix ns, late 2023
TIMEOUT_S = 30


def otlp_modules(tmp):
    """(trace_service_pb2, trace_pb2, common_pb2, resource_pb2) from the vendored schema."""
    subprocess.run(["protoc", "--python_out=" + tmp, "-I" + OTLP_DIR] + OTLP_PROTOS,
                   check=True)
    sys.path.insert(0, tmp)
    from opentelemetry.proto.collector.trace.v1 import trace_service_pb2
    from opentelemetry.proto.trace.v1 import trace_pb2
    from opentelemetry.proto.common.v1 import common_pb2
    from opentelemetry.proto.resource.v1 import resource_pb2
    return trace_service_pb2, trace_pb2, common_pb2, resource_pb2


class Otlp:
    """An OTLP/gRPC client of tracevaultd: requests built with the official messages."""

    def __init__(self, addr, mods):
        self.svc, self.tr, self.common, self.res = mods
        self.ch = grpc.insecure_channel(addr, options=[
            ("grpc.max_send_message_length", 64 << 20), ("grpc.enable_retries", 0)])
        self.export_raw = self.ch.unary_unary(
            EXPORT, request_serializer=None,
            response_deserializer=self.svc.ExportTraceServiceResponse.FromString)

    def kv(self, key, value):
        kv = self.common.KeyValue(key=key)
        if isinstance(value, bool):
            kv.value.bool_value = value
        elif isinstance(value, int):
            kv.value.int_value = value
        elif isinstance(value, float):
            kv.value.double_value = value
        elif isinstance(value, bytes):
            kv.value.bytes_value = value
        elif isinstance(value, list):
            kv.value.array_value.values.add().string_value = value[0]
        else:
            kv.value.string_value = value
        return kv

    def span(self, trace_id, span_id, parent=b"", name="op", start=T0, dur=1000, **kw):
        attrs = kw.pop("attrs", {})
        sp = self.tr.Span(trace_id=trace_id, span_id=span_id, parent_span_id=parent, name=name,
                          start_time_unix_nano=start, end_time_unix_nano=start + dur, **kw)
        sp.attributes.extend(self.kv(k, v) for k, v in attrs.items())
        return sp

    def request(self, by_service):
        """by_service: {service name: [Span]} -> ExportTraceServiceRequest."""
        req = self.svc.ExportTraceServiceRequest()
        for service, spans in by_service.items():
            rs = req.resource_spans.add()
            rs.resource.attributes.append(self.kv("service.name", service))
            ss = rs.scope_spans.add()
            ss.scope.name = "test-scope"
            ss.scope.version = "1.2.3"
            ss.spans.extend(spans)
        return req

    def export(self, req, timeout=TIMEOUT_S):
        data = req if isinstance(req, bytes) else req.SerializeToString()
        return self.export_raw(data, timeout=timeout)


def ids(rng):
    return rng.randbytes(16), rng.randbytes(8)


def spans_of(srv):
    """Every span record in the archive, by span_id."""
    recs = tvtest.GrpcClient(srv.addr).query(0, 2**64 - 1)
    return {r.span_id: r for r in recs if r.HasField("span")}


def test_spans_stored_as_sent(srv, otlp):
    """Each span's fields come back from Query in the span record (BLOCK.md "Record kinds")."""
    rng = random.Random(1)
    tid, root = ids(rng)
    child = rng.randbytes(8)
    sp1 = otlp.span(tid, root, name="GET /a", kind=2, dur=5000,
                    attrs={"http.method": "GET", "http.status_code": 200, "ok": True,
                           "ratio": 0.5, "blob": b"\x00\x01", "list": ["x"]},
                    trace_state="k=v", flags=0x101)
    sp1.status.code = 2
    sp1.status.message = "boom"
    sp1.events.add(name="e1", time_unix_nano=T0 + 1)
    sp1.events.add(name="e2", time_unix_nano=T0 + 2)
    sp1.dropped_events_count = 3
    sp1.links.add(trace_id=tid, span_id=child)
    sp2 = otlp.span(tid, child, parent=root, name="SELECT", kind=3, start=T0 + 100, dur=50)
    resp = otlp.export(otlp.request({"svc-a": [sp1], "svc-b": [sp2]}))
    assert not resp.HasField("partial_success"), resp
    got = spans_of(srv)
    r1, r2 = got[root.hex()], got[child.hex()]
    assert r1.ts_ns == T0 and r1.end_ns == T0 + 5000 and r1.latency_ns == 5000, r1
    assert r1.trace_id == tid.hex() and r1.span.parent_span_id == "", r1
    assert r1.span.name == "GET /a" and r1.span.kind == 2 and r1.span.service == "svc-a", r1
    assert r1.span.status_code == 2 and r1.span.status_message == "boom", r1
    assert r1.span.trace_state == "k=v" and r1.span.flags == 0x101, r1
    assert r1.span.scope_name == "test-scope" and r1.span.scope_version == "1.2.3", r1
    attrs = {a.key: getattr(a, a.WhichOneof("value")) for a in r1.span.attributes}
    assert attrs == {"http.method": "GET", "http.status_code": 200, "ok": True,
                     "ratio": 0.5}, attrs
    assert r1.span.dropped_attributes_count == 2, r1  # bytes and array values
    assert r1.span.dropped_events_count == 5 and r1.span.dropped_links_count == 1, r1
    assert r2.span.parent_span_id == root.hex() and r2.span.service == "svc-b", r2
    assert r2.span.kind == 3 and r2.ts_ns == T0 + 100, r2
    # an exchange-only field stays absent
    assert r1.method == "" and r1.status == 0 and r1.pid == 0, r1


def test_partial_success_counts_refused_spans(srv, otlp):
    """Bad ids and times are refused one by one; the others are stored."""
    rng = random.Random(2)
    tid, good = ids(rng)
    bad = [otlp.span(tid[:15], rng.randbytes(8)),            # trace_id 15 bytes
           otlp.span(b"\0" * 16, rng.randbytes(8)),          # all-zero trace id
           otlp.span(tid, rng.randbytes(7)),                 # span_id 7 bytes
           otlp.span(tid, rng.randbytes(8), parent=b"\1\2"),  # parent 2 bytes
           otlp.span(tid, rng.randbytes(8), dur=-5)]         # ends before it starts
    resp = otlp.export(otlp.request({"svc": [bad[0], otlp.span(tid, good)] + bad[1:]}))
    assert resp.partial_success.rejected_spans == 5, resp
    assert "trace_id is 15 bytes" in resp.partial_success.error_message, resp
    got = spans_of(srv)
    assert good.hex() in got, got.keys()
    assert not any(b.span_id.hex() in got for b in bad if len(b.span_id) == 8)


def test_unstorable_times_refused_alone(mods):
    """A span with a time beyond 2^63-1 ns (the catalog's range) or a start more than
    --otlp-max-future-skew ahead of the server's clock is refused alone, counted in
    partial_success and otlp_spans_rejected_total; the rest of the Export is stored. A span
    within the skew is stored; the refused far-future one no longer holds the old ones past
    --retain-time."""
    import time
    with tvtest.Server(extra_args=["--metrics-addr", "127.0.0.1:0", "--retain-time", "1h",
                                   "--otlp-max-future-skew", "10m"]) as srv:
        otlp = Otlp(srv.addr, mods)
        rng = random.Random(12)
        now = time.time_ns()
        beyond = otlp.span(*ids(rng), start=2**63, dur=5)       # start past 2^63-1
        end_beyond = otlp.span(*ids(rng), start=now, dur=2**63)  # its end past 2^63-1
        future = otlp.span(*ids(rng), start=now + 2 * 3600 * 10**9)  # 2 h ahead
        near = otlp.span(*ids(rng), start=now + 5 * 60 * 10**9)       # 5 min ahead: kept
        old = [otlp.span(*ids(rng)) for _ in range(3)]                 # 2023: retention's
        # one Export, one block: the old spans with the three that cannot be kept
        resp = otlp.export(otlp.request({"svc": [beyond] + old + [end_beyond, future]}))
        assert resp.partial_success.rejected_spans == 3, resp
        assert "span 0: a time beyond 2^63-1" in resp.partial_success.error_message, resp
        assert not otlp.export(otlp.request({"svc": [near]})).HasField("partial_success")
        resp = otlp.export(otlp.request({"svc": [future]}))
        assert resp.partial_success.rejected_spans == 1, resp
        assert "ahead of the server's clock" in resp.partial_success.error_message, resp
        assert "--otlp-max-future-skew 600 s" in resp.partial_success.error_message, resp
        sc = tvmetrics.Scrape(tvmetrics.metrics_addr(srv.log()))
        assert sc.value("tracevault_server_otlp_spans_rejected_total") == 4, sc.text
        assert sc.value("tracevault_server_otlp_spans_accepted_total") == 4, sc.text
        assert sc.value("tracevault_server_otlp_exports_invalid_total") == 0, sc.text
        # the old spans go at their commit: no far-future record holds their block
        tvtest.wait_for(lambda: not set(s.span_id.hex() for s in old) & set(spans_of(srv)),
                        "retention to remove the old spans", timeout_s=20)
        got = spans_of(srv)
        assert near.span_id.hex() in got, got.keys()
        assert not {s.span_id.hex() for s in (beyond, end_beyond, future)} & set(got)
    p = subprocess.run([tvtest.binary("tracevaultd"), "--otlp-max-future-skew", "0s"],
                       capture_output=True, text=True, timeout=30)
    assert p.returncode == 2 and "--otlp-max-future-skew" in p.stderr, p


def test_nul_in_kept_strings_refused_alone(srv, otlp):
    """A NUL byte (valid UTF-8) in a string the record keeps refuses that span alone, named;
    a NUL in what is not kept as a string (a bytes value, another resource attribute) does
    not. Nothing is stored cut at the NUL."""
    rng = random.Random(13)
    tid = rng.randbytes(16)
    name = otlp.span(tid, rng.randbytes(8), name="a\x00b")
    attr_val = otlp.span(tid, rng.randbytes(8), attrs={"k": "v\x00w"})
    attr_key = otlp.span(tid, rng.randbytes(8), attrs={"k\x00x": "v"})
    status = otlp.span(tid, rng.randbytes(8))
    status.status.message = "bad\x00"
    state = otlp.span(tid, rng.randbytes(8), trace_state="a=1\x00")
    fine = otlp.span(tid, rng.randbytes(8), name="fine", attrs={"blob": b"\x00\x00"})
    svc_nul = otlp.span(tid, rng.randbytes(8))
    req = otlp.request({"svc-nul": [name, attr_val, fine, attr_key, status, state],
                        "ctl\x00svc": [svc_nul]})
    req.resource_spans[0].resource.attributes.append(otlp.kv("host.note", "x\x00y"))
    resp = otlp.export(req)
    assert resp.partial_success.rejected_spans == 6, resp
    assert "span 0:" in resp.partial_success.error_message, resp
    assert "NUL" in resp.partial_success.error_message, resp
    # a NUL in the scope's name refuses the scope's spans
    scoped = otlp.span(tid, rng.randbytes(8))
    req = otlp.request({"svc-nul": [scoped]})
    req.resource_spans[0].scope_spans[0].scope.name = "sc\x00ope"
    assert otlp.export(req).partial_success.rejected_spans == 1
    got = spans_of(srv)
    assert fine.span_id.hex() in got, got.keys()
    assert got[fine.span_id.hex()].span.service == "svc-nul"
    for sp in (name, attr_val, attr_key, status, state, svc_nul, scoped):
        assert sp.span_id.hex() not in got, sp


def test_limits_cut_and_count_attributes(srv_small_limits, otlp_small):
    """--otlp-max-attributes 2 --otlp-max-attribute-bytes 16: two attributes kept, a long
    UTF-8 value cut at a character boundary, the rest counted."""
    rng = random.Random(3)
    tid, sid = ids(rng)
    sp = otlp_small.span(tid, sid, name="n" * 40, attrs={
        "a": "é" * 20, "b": 1, "c": 2, "d": 3}, dropped_attributes_count=7)
    otlp_small.export(otlp_small.request({"svc": [sp]}))
    r = spans_of(srv_small_limits)[sid.hex()]
    assert [a.key for a in r.span.attributes] == ["a", "b"], r
    assert r.span.attributes[0].string_value == "é" * 8, r  # 16 bytes: 8 two-byte chars
    assert r.span.name == "n" * 16, r
    assert r.span.dropped_attributes_count == 9, r


def cli_query(srv, *args):
    p = tvtest.run(["query", "--server", srv.addr, "--from", "0"] + list(args), check=True)
    return p.stdout


def test_query_kind_and_service_filters(srv, otlp):
    """--kind span|exchange and --service NAME, evaluated by the server, beside exchanges."""
    import json
    rng = random.Random(9)
    tid = rng.randbytes(16)
    a = [otlp.span(tid, rng.randbytes(8), start=T0 + i) for i in range(3)]
    b = [otlp.span(tid, rng.randbytes(8), start=T0 + 10 + i) for i in range(2)]
    otlp.export(otlp.request({"filt-a": a, "filt-b": b}))
    ex = [tvtest.trace_record(T0 + 5, pid=7, path="/x", trace_id=tid.hex(),
                              span_id=a[0].span_id.hex())]
    tvtest.GrpcClient(srv.addr).write_segment(random.getrandbits(63) + 1,
                                              [(random.getrandbits(63) + 1, ex)])
    def lines(*args):
        return [json.loads(x) for x in cli_query(srv, "--trace-id", tid.hex(),
                                                 *args).splitlines()]
    every = lines()
    assert len(every) == 6, every
    spans = lines("--kind", "span")
    assert sorted(x["span_id"] for x in spans) == sorted(s.span_id.hex() for s in a + b)
    assert all("span" in x for x in spans), spans
    exch = lines("--kind", "exchange")
    assert len(exch) == 1 and "span" not in exch[0] and exch[0]["path"] == "/x", exch
    assert len(lines("--kind", "span,exchange")) == 6
    sa = lines("--service", "filt-a")
    assert sorted(x["span_id"] for x in sa) == sorted(s.span_id.hex() for s in a), sa
    assert all(x["span"]["service"] == "filt-a" for x in sa), sa
    assert len(lines("--service", "filt-a,filt-b")) == 5
    assert lines("--service", "nope") == []
    # exchanges have no service.name: the combination is refused, not silently empty
    p = tvtest.run(["query", "--server", srv.addr, "--from", "0", "--kind", "exchange",
                    "--service", "filt-a"])
    assert p.returncode == 2 and "--service" in p.stderr and "--comm" in p.stderr, p
    table = cli_query(srv, "--trace-id", tid.hex(), "--format", "table").splitlines()
    rows = [r.split() for r in table[1:]]
    assert len(rows) == 6, table
    spans_rows = [r for r in rows if r[1] == "span"]
    assert len(spans_rows) == 5, table
    assert all(r[2] == "-" and r[3] in ("filt-a", "filt-b") and r[4] == "op" for r in spans_rows), table
    p = tvtest.run(["query", "--server", srv.addr, "--from", "0", "--kind", "spans"])
    assert p.returncode == 2 and "--kind" in p.stderr, p


def test_csv_span_columns(srv, otlp):
    """query --format csv: the record's columns as before (same names, same order), then the
    span's parent, name, kind, status code and message and service; empty for an exchange."""
    import csv
    import io
    rng = random.Random(15)
    tid = rng.randbytes(16)
    root = otlp.span(tid, rng.randbytes(8), name='GET /a,"b"', kind=2)
    root.status.code = 2
    root.status.message = "boom\nline"
    child = otlp.span(tid, rng.randbytes(8), parent=root.span_id, name="db", kind=3,
                      start=T0 + 5)
    otlp.export(otlp.request({"csv-svc": [root, child]}))
    ex = [tvtest.trace_record(T0 + 9, pid=3, path="/x", trace_id=tid.hex(),
                              span_id=child.span_id.hex())]
    tvtest.GrpcClient(srv.addr).write_segment(random.getrandbits(63) + 1,
                                              [(random.getrandbits(63) + 1, ex)])
    out = cli_query(srv, "--trace-id", tid.hex(), "--format", "csv")
    rows = list(csv.reader(io.StringIO(out, newline="")))
    span_cols = ["span_parent_span_id", "span_name", "span_kind", "span_status_code",
                 "span_status_message", "span_service"]
    head = rows[0]
    assert head[0] == "ts_ns" and head[-6:] == span_cols, head
    assert head[:-6][-1] == "http_version", head  # the old columns end where they did
    recs = [dict(zip(head, r)) for r in rows[1:]]
    assert len(recs) == 3 and all(len(r) == len(head) for r in rows), rows
    by_span = {r["span_id"]: r for r in recs if r["span_name"]}
    r = by_span[root.span_id.hex()]
    assert r["span_name"] == 'GET /a,"b"' and r["span_kind"] == "2", r
    assert r["span_status_code"] == "2" and r["span_status_message"] == "boom\nline", r
    assert r["span_service"] == "csv-svc" and r["span_parent_span_id"] == "", r
    c = by_span[child.span_id.hex()]
    assert c["span_parent_span_id"] == root.span_id.hex() and c["span_kind"] == "3", c
    x = [r for r in recs if r["path"] == "/x"]
    assert len(x) == 1 and all(x[0][k] == "" for k in span_cols), x


def test_trace_cli_escapes_and_header(srv, otlp):
    """`tracevault trace` shows names from the archive as a terminal may: control characters
    (escape sequences, CR, LF, BEL) and bytes that are not UTF-8 as '?', printable non-ASCII
    UTF-8 as it is; its header's duration follows the lines' rule (latency when an exchange has
    no end_ns) and counts in the singular for one."""
    rng = random.Random(14)
    tid = rng.randbytes(16)
    root = otlp.span(tid, rng.randbytes(8), name="evil\x1b]0;pwn\x07\nnext\r", dur=2000)
    child = otlp.span(tid, rng.randbytes(8), parent=root.span_id, name="naïve é\u202eright",
                      start=T0 + 10)
    bad = otlp.span(tid, rng.randbytes(8), parent=root.span_id, name="QQQQ", start=T0 + 20)
    raw = otlp.request({"svc\x1b[31m": [root, child, bad]}).SerializeToString()
    assert raw.count(b"QQQQ") == 1
    otlp.export(raw.replace(b"QQQQ", b"Q\xff\xfeQ"))  # not UTF-8: only raw bytes carry it
    p = subprocess.run([tvtest.binary("tracevault"), "trace", "--server", srv.addr, tid.hex()],
                       capture_output=True, timeout=60)
    assert p.returncode == 0, p
    out = p.stdout
    assert all(c >= 0x20 for c in out.replace(b"\n", b"")), out
    text = out.decode("utf-8")  # strict: an invalid byte would fail here
    lines = text.splitlines()
    assert len(lines) == 4, text
    assert lines[0].startswith("trace %s: 3 spans, 0 exchanges, " % tid.hex()), text
    assert "evil?]0;pwn??next? [svc?[31m, unspecified]" in text, text
    assert "naïve é?right" in text, text
    assert "Q??Q" in text, text
    # query --format table: the same rule (it used to show non-ASCII as '?' byte by byte)
    table = cli_query(srv, "--trace-id", tid.hex(), "--format", "table")
    assert "naïve é?right" in table and "evil?]0;pwn??next?" in table, table
    assert "\x1b" not in table and "\r" not in table, table
    # one exchange without end_ns: the header's duration is its latency, as its line says
    tid2, sid2 = ids(rng)
    ex = tvtest.trace_record(T0, latency_ns=1_000_000, trace_id=tid2.hex(), span_id=sid2.hex(),
                             comm="cu\x1brl")
    ex.end_ns = 0
    tvtest.GrpcClient(srv.addr).write_segment(random.getrandbits(63) + 1,
                                              [(random.getrandbits(63) + 1, [ex])])
    p = tvtest.run(["trace", "--server", srv.addr, tid2.hex()], check=True)
    lines = p.stdout.splitlines()
    assert lines[0] == "trace %s: 0 spans, 1 exchange, 1.000 ms" % tid2.hex(), p.stdout
    assert "1.000 ms" in lines[2] and "cu?rl" in lines[2], p.stdout


def test_trace_cli_not_found_names_window(srv, otlp):
    """`tracevault trace` of a trace with no record where it looked: exit 1 saying where. With
    --from/--to given, the window [from, to) (the trace's records may lie outside it: it used to
    say "no record in the archive"); by default the archive up to now + 1h."""
    rng = random.Random(17)
    tid, sid = ids(rng)
    otlp.export(otlp.request({"svc": [otlp.span(tid, sid, start=T0 + 10**9)]}))
    assert tvtest.run(["trace", "--server", srv.addr, tid.hex()]).returncode == 0

    def fails(*args):
        p = tvtest.run(["trace", "--server", srv.addr] + list(args))
        assert p.returncode == 1 and p.stdout == "" and len(p.stderr.splitlines()) == 1, p
        return p.stderr.strip()
    got = fails("--to", "0", tid.hex())
    assert got == ("tracevault: trace %s: no record in the window [1970-01-01T00:00:00.000000000Z,"
                   " 1970-01-01T00:00:00.000000000Z) (--from 0 (the default), --to 0); records "
                   "outside it were not searched" % tid.hex()), got
    got = fails("--from", str(T0 + 10**9 + 1), tid.hex())
    assert got.startswith("tracevault: trace %s: no record in the window "
                          "[2023-11-14T22:13:21.000000001Z, " % tid.hex()), got
    assert got.endswith(") (--from %d, --to now + 1h (the default)); records outside it were "
                        "not searched" % (T0 + 10**9 + 1)), got
    other = "ab" * 16
    got = fails(other)
    assert got.startswith("tracevault: trace %s: no record in the archive up to now + 1h (" %
                          other) and got.endswith("Z, the default --to)"), got


def test_otlp_json_round_trip(srv, otlp, mods):
    """query --format otlp-json of span records parses strictly into the published
    ExportTraceServiceRequest and gives back each span as sent, less what is not stored
    (events and links, counted; attributes without a scalar value, counted)."""
    from google.protobuf import json_format
    svc_pb = mods[0]
    rng = random.Random(10)
    tid = rng.randbytes(16)
    root = otlp.span(tid, rng.randbytes(8), name="root é", kind=2, trace_state="a=1",
                     flags=0x301, attrs={"s": "v\u00e9\n\"q", "i": -(2**63), "b": False,
                                         "d": 1.5e-300, "arr": ["x"]})
    root.status.code = 1
    root.status.message = "fine"
    root.events.add(name="e", time_unix_nano=T0)
    child = otlp.span(tid, rng.randbytes(8), parent=root.span_id, name="child", kind=3,
                      start=T0 + 7, dur=3, dropped_links_count=2)
    other = otlp.span(tid, rng.randbytes(8), name="other", start=T0 + 9)
    otlp.export(otlp.request({"rt-a": [root, child], "rt-b": [other]}))
    got = {}
    out = cli_query(srv, "--trace-id", tid.hex(), "--format", "otlp-json")
    for line in out.splitlines():
        req = json_format.Parse(line, svc_pb.ExportTraceServiceRequest())
        for rs in req.resource_spans:
            svc = [kv.value.string_value for kv in rs.resource.attributes
                   if kv.key == "service.name"]
            for ss in rs.scope_spans:
                assert ss.scope.name == "test-scope" and ss.scope.version == "1.2.3", ss
                for sp in ss.spans:
                    # OTLP JSON carries ids as hex (the OTLP spec), which protobuf's own JSON
                    # parser reads as base64: turn them back into the bytes
                    for f in ("trace_id", "span_id", "parent_span_id"):
                        raw = base64.b64encode(getattr(sp, f)).decode()
                        setattr(sp, f, bytes.fromhex(raw))
                    got[sp.span_id] = (svc, sp)
    assert len(got) == 3, got.keys()
    for want, svc in ((root, "rt-a"), (child, "rt-a"), (other, "rt-b")):
        exp = type(want)()
        exp.CopyFrom(want)
        dropped_attrs = sum(1 for kv in exp.attributes if kv.value.WhichOneof("value")
                            not in ("string_value", "bool_value", "int_value", "double_value"))
        kept = [kv for kv in exp.attributes if kv.value.WhichOneof("value")
                in ("string_value", "bool_value", "int_value", "double_value")]
        del exp.attributes[:]
        exp.attributes.extend(kept)
        exp.dropped_attributes_count += dropped_attrs
        exp.dropped_events_count += len(exp.events)
        exp.dropped_links_count += len(exp.links)
        del exp.events[:]
        del exp.links[:]
        g_svc, g = got[want.span_id]
        assert g_svc == [svc], g_svc
        assert g == exp, "got:\n%s\nwant:\n%s" % (g, exp)


def test_put_reads_query_jsonl_back(srv, otlp):
    """README: put reads query's jsonl back. Spans sent over OTLP (every Span field, each
    attribute type at its edges, events and links counted, a root and a child, a span of no
    duration) and exchanges of the same trace (headers, a text and a binary body), queried as
    jsonl, put to a second tracevaultd and queried there: the same lines, byte for byte. put
    refused the first span line before ("unknown field 'span'")."""
    rng = random.Random(16)
    tid = rng.randbytes(16)
    root = otlp.span(tid, rng.randbytes(8), name="GET /rt é \"q\"", kind=2, dur=9000,
                     trace_state="a=1,b=2", flags=0x301, dropped_attributes_count=2,
                     attrs={"s": "vé\n\"q\t", "i": -(2**63), "imax": 2**63 - 1,
                            "b": False, "t": True, "d": 1.5e-300, "dneg0": -0.0,
                            "dint": 100.0, "dmax": 1.7976931348623157e308,
                            "dinf": float("inf"), "dninf": float("-inf"),
                            "dnan": float("nan"), "arr": ["x"], "blob": b"\x00"})
    root.status.code = 2
    root.status.message = "boom\nline"
    root.events.add(name="e", time_unix_nano=T0 + 1)
    root.links.add(trace_id=tid, span_id=rng.randbytes(8))
    child = otlp.span(tid, rng.randbytes(8), parent=root.span_id, name="child", kind=3,
                      start=T0 + 7, dur=3, dropped_links_count=2, dropped_events_count=5)
    instant = otlp.span(tid, rng.randbytes(8), parent=child.span_id, name="", kind=1,
                        start=T0 + 8, dur=0)
    resp = otlp.export(otlp.request({"rt-put-a": [root, child], "rt-put-b": [instant]}))
    assert not resp.HasField("partial_success"), resp
    ex = tvtest.trace_record(T0 + 5, pid=9, path="/x?q=1", latency_ns=2,
                             trace_id=tid.hex(), span_id=child.span_id.hex(), role="client",
                             host="h:1", http_version="1.1", flags=2,
                             req_headers=[pb.Header(name="Host", value="h:1")],
                             resp_headers=[pb.Header(name="X-A", value="\"b\"")],
                             req_body=b"text \xc3\xa9", resp_body=b"\x1f\x8b\x00\xff",
                             resp_content_type="application/gzip")
    tvtest.GrpcClient(srv.addr).write_segment(random.getrandbits(63) + 1,
                                              [(random.getrandbits(63) + 1, [ex])])
    first = cli_query(srv, "--trace-id", tid.hex())
    lines = first.splitlines()
    assert len(lines) == 4 and sum('"span":{' in x for x in lines) == 3, first
    with tvtest.Server() as other:
        p = tvtest.run(["put", "--server", other.addr, "-"], input=first)
        assert p.returncode == 0 and "put 4 records in 1 block" in p.stderr, p
        again = cli_query(other)
        assert again == first, "put + query changed the lines:\n%s\n%s" % (first, again)
        # the edges the lines carry (-0 as a real: "-0" would read back as +0)
        for want in ('"double_value":"NaN"', '"double_value":"-Infinity"',
                     '"double_value":-0.0', '"int_value":-9223372036854775808',
                     '"double_value":100}', '"resp_body_base64":'):
            assert want in first, (want, first)
        # and once more: the second server's lines read back to themselves too
        p = tvtest.run(["put", "--server", other.addr, "-"], input=again, check=True)
        assert cli_query(other) == "".join(x + "\n" + x + "\n" for x in lines)
        assert other.stop() == 0, other.log()[-2000:]


def test_malformed_is_invalid_argument(srv, otlp):
    for junk in (b"\xff\xff\xff", b"\x0a\x05\x0a\x03\x0a", bytes(range(256))):
        try:
            otlp.export(junk)
        except grpc.RpcError as e:
            assert e.code() == grpc.StatusCode.INVALID_ARGUMENT, (junk, e)
            assert "ExportTraceServiceRequest" in e.details(), e.details()
            continue
        raise AssertionError("junk %r accepted" % junk)
    # the server still serves
    rng = random.Random(4)
    tid, sid = ids(rng)
    otlp.export(otlp.request({"svc": [otlp.span(tid, sid)]}))
    assert sid.hex() in spans_of(srv)


def test_too_large_is_refused_without_retry_hint(srv_small_limits, otlp_small):
    rng = random.Random(5)
    spans = [otlp_small.span(*ids(rng), name="x" * 200) for _ in range(40)]  # > 4K
    req = otlp_small.request({"svc": spans})
    assert req.ByteSize() > 4096
    try:
        otlp_small.export(req)
    except grpc.RpcError as e:
        assert e.code() == grpc.StatusCode.RESOURCE_EXHAUSTED, e
        assert "--otlp-max-message-bytes" in e.details(), e.details()
        md = dict(e.trailing_metadata() or ())
        assert "grpc-status-details-bin" not in md, md
        return
    raise AssertionError("an Export above --otlp-max-message-bytes was accepted")


def retry_delay_s(details_bin):
    """The RetryInfo delay in a google.rpc.Status (decoded by hand: field 3 Any, its field 1
    type_url and 2 value, RetryInfo field 1 Duration, seconds 1 and nanos 2)."""
    def fields(b):
        i, out = 0, []
        while i < len(b):
            key, i = varint_at(b, i)
            if key & 7 == 0:
                v, i = varint_at(b, i)
            elif key & 7 == 2:
                n, i = varint_at(b, i)
                v, i = b[i:i + n], i + n
            else:
                raise AssertionError("wire type %d" % (key & 7))
            out.append((key >> 3, v))
        return out
    st = fields(details_bin)
    assert (1, 8) in st, st  # code RESOURCE_EXHAUSTED
    anys = [dict(fields(v)) for n, v in st if n == 3]
    ri = [a[2] for a in anys if a[1] == b"type.googleapis.com/google.rpc.RetryInfo"]
    assert len(ri) == 1, anys
    dur = dict(fields(dict(fields(ri[0]))[1]))
    return dur.get(1, 0) + dur.get(2, 0) / 1e9


def varint_at(b, i):
    v = shift = 0
    while True:
        v |= (b[i] & 0x7f) << shift
        shift += 7
        i += 1
        if not b[i - 1] & 0x80:
            return v, i


def test_back_pressure_retry_info(mods):
    """--otlp-max-pending-bytes 64K: 48 Exports of ~20K sent at once (16 in flight per
    connection); those past the bound end RESOURCE_EXHAUSTED with RetryInfo 1 s in
    grpc-status-details-bin; exactly the answered ones are stored."""
    with tvtest.Server(extra_args=["--otlp-max-pending-bytes", "64K"]) as srv:
        otlp = Otlp(srv.addr, mods)
        rng = random.Random(6)
        reqs = [otlp.request({"svc": [otlp.span(*ids(rng), name="y" * 700)
                                      for _ in range(25)]}) for _ in range(48)]
        assert all(16000 < r.ByteSize() < 24000 for r in reqs), [r.ByteSize() for r in reqs]
        futures = [otlp.export_raw.future(r.SerializeToString(), timeout=TIMEOUT_S)
                   for r in reqs]
        results = []
        for f in futures:
            try:
                f.result()
                results.append("ok")
            except grpc.RpcError as e:
                results.append(e)
        throttled = [r for r in results if r != "ok"]
        assert all(r.code() == grpc.StatusCode.RESOURCE_EXHAUSTED for r in throttled), \
            [(r.code(), r.details()) for r in throttled]
        sent = [[sp.span_id.hex() for sp in r.resource_spans[0].scope_spans[0].spans]
                for r in reqs]
        ok_ids = {s for i, r in enumerate(results) if r == "ok" for s in sent[i]}
        stored = set(spans_of(srv))
        assert stored == ok_ids, (len(stored), len(ok_ids))
        print("     %d of %d Exports throttled" % (len(throttled), len(reqs)))
        assert throttled and len(throttled) < len(reqs), results
        md = dict(throttled[0].trailing_metadata())
        assert "--otlp-max-pending-bytes" in throttled[0].details(), throttled[0].details()
        assert retry_delay_s(md["grpc-status-details-bin"]) == 1.0, md


def test_answered_export_survives_kill9(mods):
    """The reply is sent only once the spans are durable: kill -9 right after it loses none."""
    with tvtest.Server() as srv:
        otlp = Otlp(srv.addr, mods)
        rng = random.Random(7)
        sent = []
        for _ in range(20):
            spans = [otlp.span(*ids(rng)) for _ in range(30)]
            otlp.export(otlp.request({"svc": spans}))
            sent += [s.span_id.hex() for s in spans]
        srv.stop(sig=signal.SIGKILL)
        srv.start()
        got = spans_of(srv)
        assert set(sent) <= set(got), len(set(sent) - set(got))


def test_retention_removes_old_spans(mods):
    """Spans fall under the same retention as exchanges: with --retain-time 1h, an Export of
    spans that ended in 2023 is answered (durable), then removed at its commit, while spans of
    now stay."""
    import time
    with tvtest.Server(extra_args=["--retain-time", "1h"]) as srv:
        otlp = Otlp(srv.addr, mods)
        rng = random.Random(11)
        old = [otlp.span(*ids(rng)) for _ in range(5)]  # T0: 2023
        new = [otlp.span(*ids(rng), start=time.time_ns()) for _ in range(5)]
        otlp.export(otlp.request({"svc": old}))
        otlp.export(otlp.request({"svc": new}))
        tvtest.wait_for(lambda: not set(s.span_id.hex() for s in old) & set(spans_of(srv)),
                        "retention to remove the old spans", timeout_s=20)
        assert set(s.span_id.hex() for s in new) <= set(spans_of(srv))
        assert "retention" in srv.log(), srv.log()[-2000:]


def test_metrics_count_spans(mods):
    with tvtest.Server(extra_args=["--metrics-addr", "127.0.0.1:0"]) as srv:
        otlp = Otlp(srv.addr, mods)
        rng = random.Random(8)
        tid, sid = ids(rng)
        otlp.export(otlp.request({"svc": [otlp.span(tid, sid), otlp.span(tid[:3], sid)]}))
        try:
            otlp.export(b"\xff")
        except grpc.RpcError:
            pass
        sc = tvmetrics.Scrape(tvmetrics.metrics_addr(srv.log()))
        assert sc.value("tracevault_server_otlp_spans_accepted_total") == 1, sc.text
        assert sc.value("tracevault_server_otlp_spans_rejected_total") == 1, sc.text
        assert sc.value("tracevault_server_otlp_exports_invalid_total") == 1, sc.text
        assert sc.value("tracevault_server_otlp_export_duration_seconds_count") == 2, sc.text


def main():
    only = sys.argv[1:]
    with tempfile.TemporaryDirectory() as tmp:
        mods = otlp_modules(tmp)
        small = ["--otlp-max-attributes", "2", "--otlp-max-attribute-bytes", "16",
                 "--otlp-max-message-bytes", "4K"]
        with tvtest.Server() as srv, tvtest.Server(extra_args=small) as srv_small:
            otlp, otlp_small = Otlp(srv.addr, mods), Otlp(srv_small.addr, mods)
            args = {"srv": srv, "otlp": otlp, "srv_small_limits": srv_small,
                    "otlp_small": otlp_small, "mods": mods}
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
