"""`tracevault query --format csv|otlp-json` against the real tracevaultd, each checked by a reader
that is not ours: csv with Python's csv module against the jsonl of the same query; otlp-json
parsed strictly (unknown keys and wrong types refused) by python3-protobuf's json_format into
ExportTraceServiceRequest compiled from the published opentelemetry-proto schema (tests/otlp,
v1.11.0), plus what json_format would let through: enums as integers, 64-bit integers as decimal
strings, 16/8-byte hex ids. Span kinds, statuses and attributes follow the HTTP semantic
conventions; a local client/server pair forms one trace (client spanId == server parentSpanId);
derived ids are SHA-256 of the exchange identity, recomputed here with hashlib; two runs are
identical."""
import base64
import csv
import fcntl
import hashlib
import io
import json
import os
import subprocess
import sys
import tempfile

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import tvtest  # noqa: E402

BASE = 1_790_000_000 * 10**9
OTLP_DIR = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "otlp")
OTLP_PROTOS = ["opentelemetry/proto/common/v1/common.proto",
               "opentelemetry/proto/resource/v1/resource.proto",
               "opentelemetry/proto/trace/v1/trace.proto",
               "opentelemetry/proto/collector/trace/v1/trace_service.proto"]
TRACE = "4bf92f3577b34da6a3ce929d0e0e4736"
SPAN = "00f067aa0ba902b7"
U64_MAX = 2**64 - 1
N_BULK = 2500  # more than two otlp-json lines of 1000 spans

rec = tvtest.trace_record


def otlp_module(tmp):
    """ExportTraceServiceRequest and json_format, compiled from the vendored schema."""
    subprocess.run(["protoc", "--python_out=" + tmp, "-I" + OTLP_DIR] + OTLP_PROTOS,
                   check=True)
    sys.path.insert(0, tmp)
    from google.protobuf import json_format
    from opentelemetry.proto.collector.trace.v1 import trace_service_pb2
    return trace_service_pb2.ExportTraceServiceRequest, json_format


def special_records():
    """Records whose strings need csv quoting and JSON escaping, the u64 extremes, and the
    exchanges the otlp mapping distinguishes."""
    t = BASE
    return [
        rec(t + 1, 11, path='/a,b?x="1"&y=2', comm="node", role="server", host="shop.example",
            http_version="1.1", status=200, trace_id=TRACE, span_id=SPAN,
            local="127.0.0.1:8080", remote="127.0.0.1:40000", req_body_bytes=U64_MAX),
        # the client end of the same exchange: it sent traceparent TRACE-SPAN
        rec(t + 2, 12, path='/a,b?x="1"&y=2', comm="curl", role="client",
            host="shop.example:8080", status=200, trace_id=TRACE, span_id=SPAN,
            local="127.0.0.1:40000", remote="127.0.0.1:8080", http_version="1.1"),
        rec(t + 3, 13, path="/line\nbreak\rcr", comm="tab\tcomm", role="server", status=503,
            remote="[::1]:5000", local="[::1]:80", resp_body_bytes=U64_MAX, latency_ns=0),
        rec(t + 4, 14, path="/ünï/ćödé", comm="w", role="client", status=404,
            host="[2001:db8::1]:8443"),
        rec(t + 5, 15, path="/x", role="server", status=404, method="FOO"),
        rec(t + 6, 16, path="/gone", role="server", status=0, flags=1),     # NO_RESPONSE
        rec(t + 7, 17, path="/lost", role="client", status=0, flags=4 | 2),  # LOST|PARTIAL
        rec(t + 8, 18, path="", method="", comm="", status=0, local="", remote=""),  # no role
    ]


def bulk_records():
    return [rec(BASE + 1000 + i, 100 + i % 3, path="/b/%d" % i, comm="c%d" % (i % 3),
                role=("server", "client")[i % 2], status=(200, 500, 302)[i % 3])
            for i in range(N_BULK)]


def query(addr, fmt, frm, to):
    p = tvtest.run(["query", "--server", addr, "--from", str(frm), "--to", str(to),
                    "--format", fmt], check=True)
    return p.stdout


def query_bytes(addr, fmt, frm, to):
    return subprocess.run([tvtest.binary("tracevault"), "query", "--server", addr, "--from",
                           str(frm), "--to", str(to), "--format", fmt],
                          capture_output=True, check=True).stdout


def identity_digest(r):
    """SHA-256 of "tv1\\0" ts_ns "\\0" pid "\\0" role "\\0" local "\\0" remote (README)."""
    s = b"\0".join([b"tv1", str(r["ts_ns"]).encode(), str(r["pid"]).encode(),
                    r["role"].encode(), r["local"].encode(), r["remote"].encode()])
    return hashlib.sha256(s).digest()


def nonzero(b):
    return b if any(b) else b[:-1] + b"\x01"


# csv: the record's fields, then a span's (client/cli/record_out.h; empty for an exchange)
SPAN_CSV_FIELDS = ["span_parent_span_id", "span_name", "span_kind", "span_status_code",
                   "span_status_message", "span_service"]
CSV_FIELDS = tvtest.RECORD_FIELDS + SPAN_CSV_FIELDS


def test_csv_equals_jsonl(srv):
    """Every csv row holds the jsonl line's scalar values in the header's order (Python's csv
    reads the quoting back); lines end CRLF; an empty window is the header alone."""
    frm, to = BASE, BASE + 10**9
    jl = [json.loads(line) for line in query(srv.addr, "jsonl", frm, to).splitlines()]
    raw = query_bytes(srv.addr, "csv", frm, to)
    assert len(jl) == len(special_records()) + N_BULK, len(jl)
    rows = list(csv.reader(io.StringIO(raw.decode("utf-8"), newline="")))
    assert rows[0] == CSV_FIELDS, rows[0]
    assert len(rows) == len(jl) + 1, (len(rows), len(jl))
    for row, j in zip(rows[1:], jl):
        # an exchange's span columns are empty (test_otlp_ingest checks a span's)
        assert row == [str(j[k]) for k in tvtest.RECORD_FIELDS] + [""] * len(SPAN_CSV_FIELDS), \
            (row, j)
    assert raw.startswith(b"ts_ns,end_ns,") and raw.endswith(b"\r\n")
    # quoting exactly where RFC 4180 needs it: the comma/quote path, the CR/LF path
    assert b'"/a,b?x=""1""&y=2"' in raw, raw[:400]
    assert b'"/line\nbreak\rcr"' in raw
    assert str(U64_MAX).encode() in raw
    empty = query_bytes(srv.addr, "csv", BASE - 10, BASE - 5)
    assert empty == (",".join(CSV_FIELDS) + "\r\n").encode(), empty


def check_encoding(line_obj):
    """What json_format accepts but OTLP JSON forbids: enum names, 64-bit numbers, ids that
    are not lowercase hex of the right length. Returns the spans."""
    spans = []
    for rs in line_obj["resourceSpans"]:
        for a in rs["resource"]["attributes"]:
            if "intValue" in a["value"]:
                assert isinstance(a["value"]["intValue"], str), a
        for ss in rs["scopeSpans"]:
            assert ss["scope"]["name"] == "tracevault", ss["scope"]
            for sp in ss["spans"]:
                assert isinstance(sp["kind"], int), sp
                assert isinstance(sp["startTimeUnixNano"], str), sp
                assert isinstance(sp["endTimeUnixNano"], str), sp
                assert int(sp["endTimeUnixNano"]) >= int(sp["startTimeUnixNano"]), sp
                for key, n in (("traceId", 16), ("spanId", 8), ("parentSpanId", 8)):
                    if key in sp:
                        v = sp[key]
                        assert len(v) == 2 * n and v == v.lower(), (key, v)
                        assert bytes.fromhex(v) != bytes(n), (key, v)
                for a in sp["attributes"]:
                    if "intValue" in a["value"]:
                        assert isinstance(a["value"]["intValue"], str), a
                if "status" in sp:
                    assert isinstance(sp["status"]["code"], int), sp["status"]
                sp["_resource"] = {a["key"]: a["value"] for a in rs["resource"]["attributes"]}
                spans.append(sp)
    return spans


def hex_ids_to_base64(obj):
    """The one place OTLP JSON departs from the proto3 JSON mapping json_format implements:
    trace and span ids are hex, not base64 (opentelemetry-proto docs/specification.md)."""
    for rs in obj["resourceSpans"]:
        for ss in rs["scopeSpans"]:
            for sp in ss["spans"]:
                for key in ("traceId", "spanId", "parentSpanId"):
                    if key in sp:
                        sp[key] = base64.b64encode(bytes.fromhex(sp[key])).decode()
    return obj


def attrs(sp):
    out = {}
    for a in sp["attributes"]:
        (kind, v), = a["value"].items()
        out[a["key"]] = int(v) if kind == "intValue" else v
    return out


def test_otlp_json_loads_strictly(srv, otlp):
    """Each line parses into ExportTraceServiceRequest (at most 1000 spans), one span per
    record in query order within each resource, ids and kinds as the README says."""
    Req, json_format = otlp
    frm, to = BASE, BASE + 10**9
    jl = [json.loads(line) for line in query(srv.addr, "jsonl", frm, to).splitlines()]
    text = query(srv.addr, "otlp-json", frm, to)
    lines = text.splitlines()
    assert len(lines) == (len(jl) + 999) // 1000, len(lines)
    spans = []
    for line in lines:
        msg = json_format.Parse(json.dumps(hex_ids_to_base64(json.loads(line))), Req())
        got = check_encoding(json.loads(line))
        assert 1 <= len(got) <= 1000, len(got)
        spans += got
        assert sum(len(ss.spans) for rs in msg.resource_spans for ss in rs.scope_spans) == \
            len(got)
        for rs in msg.resource_spans:
            for ss in rs.scope_spans:
                for sp in ss.spans:
                    assert len(sp.trace_id) == 16 and len(sp.span_id) == 8, sp
                    assert len(sp.parent_span_id) in (0, 8), sp
    assert len(spans) == len(jl)
    by_start = {int(sp["startTimeUnixNano"]): sp for sp in spans}
    assert len(by_start) == len(jl)
    for r in jl:
        sp = by_start[r["ts_ns"]]
        a = attrs(sp)
        res = sp["_resource"]
        assert res["service.name"]["stringValue"] == (r["comm"] or "unknown_service"), res
        assert res["process.pid"]["intValue"] == str(r["pid"]), res
        assert sp["kind"] == {"server": 2, "client": 3, "": 0}[r["role"]], (sp, r)
        assert int(sp["endTimeUnixNano"]) == r["end_ns"]
        digest = identity_digest(r)
        if r["trace_id"]:
            assert sp["traceId"] == r["trace_id"], (sp, r)
            assert "tracevault.trace_id_derived" not in a
        else:
            assert sp["traceId"] == nonzero(digest[:16]).hex(), (sp, r)
            assert a["tracevault.trace_id_derived"] is True
        if r["role"] == "client" and r["span_id"]:
            assert sp["spanId"] == r["span_id"] and "parentSpanId" not in sp, sp
        else:
            assert sp["spanId"] == nonzero(digest[16:24]).hex(), (sp, r)
            assert sp.get("parentSpanId") == (r["span_id"] or None), (sp, r)
        # semantic conventions
        if r["method"] in ("GET", "POST"):
            assert sp["name"] == r["method"] and a["http.request.method"] == r["method"]
        path, _, q = r["path"].partition("?")
        if r["path"]:
            assert a["url.path"] == path, (a, r)
            assert a.get("url.query") == (q or None) if "?" in r["path"] else \
                "url.query" not in a, (a, r)
        assert a["url.scheme"] == "http"
        if r["status"]:
            assert a["http.response.status_code"] == r["status"]
        else:
            assert "http.response.status_code" not in a
        error = (r["status"] >= 500 or (r["role"] == "client" and r["status"] >= 400)
                 or (r["status"] == 0 and r["flags"] & 1))
        assert ("status" in sp) == bool(error), (sp, r)
        if error:
            assert sp["status"]["code"] == 2
            assert a["error.type"] == (str(r["status"]) if r["status"]
                                       else "tracevault.no_response"), a
        if r["remote"]:
            assert a["network.peer.address"] == r["remote"].rsplit(":", 1)[0].strip("[]")
            assert a["network.peer.port"] == int(r["remote"].rsplit(":", 1)[1])
        if r["flags"]:
            assert a["tracevault.flags"] == r["flags"]


def test_otlp_pair_mapping(srv):
    """The special records span by span: the local pair shares one trace with the client's
    span as the server's parent; _OTHER methods, 4xx by role, the server and client
    addresses, url.full on the client."""
    frm, to = BASE, BASE + 100
    spans = []
    for line in query(srv.addr, "otlp-json", frm, to).splitlines():
        spans += check_encoding(json.loads(line))
    s = {int(sp["startTimeUnixNano"]) - BASE: sp for sp in spans}
    srv_sp, cli_sp = s[1], s[2]
    assert srv_sp["traceId"] == cli_sp["traceId"] == TRACE
    assert cli_sp["spanId"] == srv_sp["parentSpanId"] == SPAN
    assert srv_sp["spanId"] != SPAN
    a = attrs(srv_sp)
    assert (a["server.address"], a.get("server.port")) == ("shop.example", None), a
    assert (a["client.address"], a["client.port"]) == ("127.0.0.1", 40000), a
    assert (a["network.local.address"], a["network.local.port"]) == ("127.0.0.1", 8080)
    assert a["network.protocol.name"] == "http" and a["network.protocol.version"] == "1.1"
    assert a["url.path"] == "/a,b" and a["url.query"] == 'x="1"&y=2', a
    assert a["http.request.body.size"] == 2**63 - 1, a  # a u64 beyond int64 is clamped
    c = attrs(cli_sp)
    assert (c["server.address"], c["server.port"]) == ("shop.example", 8080), c
    assert "client.address" not in c
    assert c["url.full"] == 'http://shop.example:8080/a,b?x="1"&y=2', c
    assert attrs(s[3])["error.type"] == "503" and s[3]["kind"] == 2
    assert attrs(s[3])["network.peer.address"] == "::1"
    c4 = attrs(s[4])
    assert s[4]["status"]["code"] == 2 and c4["error.type"] == "404"  # 4xx on a client
    assert (c4["server.address"], c4["server.port"]) == ("2001:db8::1", 8443), c4
    a5 = attrs(s[5])
    assert "status" not in s[5]                                     # 4xx on a server: unset
    assert s[5]["name"] == "HTTP" and a5["http.request.method"] == "_OTHER"
    assert a5["http.request.method_original"] == "FOO"
    assert attrs(s[6])["error.type"] == "tracevault.no_response"
    assert "status" not in s[7]                                     # LOST: capture's loss
    assert s[8]["kind"] == 0 and s[8]["name"] == "HTTP"


ODD_BASE = BASE + 5 * 10**9  # the window of the record with invalid UTF-8 below


def odd_block():
    """A v1 block of 3 records whose path holds bytes that are not UTF-8 (FF, a lone C3, a cut
    E2 82), a comma and a quote. Python's protobuf refuses such a str, so the records are
    serialized with placeholder bytes of the same length, then patched."""
    import struct
    payload = b""
    for i in range(3):
        r = rec(ODD_BASE + i, pid=7, status=200, latency_ns=1000 + i,
                path='/odd,"\x01\x02\x03\x04\x05x')
        b = r.SerializeToString().replace(b"\x01\x02\x03\x04\x05", b"\xff\xc3(\xe2\x82")
        payload += tvtest.blocks.varint(len(b)) + b
    head = struct.pack("<IHHQQQIIQQI", 0x4B425654, 1, 0, 0xF31, ODD_BASE, ODD_BASE + 2, 3, 0,
                       len(payload), len(payload), tvtest.blocks.crc32c(payload))
    return head + struct.pack("<I", tvtest.blocks.crc32c(head)) + payload


def test_summary_csv_writes_a_key_as_query_csv_does(srv):
    """summary --format csv writes the key as query's csv writes the same path: invalid UTF-8
    replaced by U+FFFD byte for byte, quoted with the quote doubled, CRLF line ends (it once wrote the raw
    bytes with LF)."""
    frm, to = ODD_BASE, ODD_BASE + 10**9
    q = query_bytes(srv.addr, "csv", frm, to)
    p = subprocess.run([tvtest.binary("tracevault"), "summary", "--server", srv.addr,
                        "--from", str(frm), "--to", str(to), "--by", "path", "--format", "csv"],
                       capture_output=True, check=True).stdout
    want = '"/odd,""\ufffd\ufffd(\ufffd\ufffdx"'.encode()
    assert q.count(want) == 3, q
    assert want in p, p
    for out in (q, p):
        out.decode("utf-8")  # valid UTF-8 throughout
        assert out.endswith(b"\r\n") and out.count(b"\n") == out.count(b"\r\n"), out
    row = list(csv.DictReader(io.StringIO(p.decode(), newline="")))
    assert [(r["key"], r["count"]) for r in row] == [('/odd,"\ufffd\ufffd(\ufffd\ufffdx', "3")], row


def test_summary_table_columns_stay_aligned(srv):
    """summary's table keeps every column under its header whatever the rate: a window of
    1 ns makes the rate 1e9/s per record, which once printed as 1000000000.00, wider than
    RATE/S, pushing the row out of line (tryout nit 3). The rate then shows with an SI suffix
    (1.00G); over a window of a second in plain decimals (1.00)."""
    for to, fmt in ((ODD_BASE + 1, "%.2fG"), (ODD_BASE + 10**9, "%.2f")):
        p = subprocess.run([tvtest.binary("tracevault"), "summary", "--server", srv.addr,
                            "--from", str(ODD_BASE), "--to", str(to), "--format", "table"],
                           capture_output=True, text=True, check=True).stdout
        head, row = p.splitlines()
        # each header word ends where its column's value ends (right-aligned columns)
        for word in ("COUNT", "RATE/S", "5XX%", "4XX%", "P50", "MAX"):
            end = head.index(word) + len(word)
            assert row[end - 1] != " " and (end == len(row) or row[end] == " "), \
                (word, head, row)
        count = int(row.split()[1])  # 1 to 3: the odd block's records in the window
        assert row.split()[2] == fmt % count, (to, row)


def test_two_runs_identical(srv):
    frm, to = BASE, BASE + 10**9
    for fmt in ("otlp-json", "csv", "jsonl", "table"):
        assert query_bytes(srv.addr, fmt, frm, to) == query_bytes(srv.addr, fmt, frm, to), fmt


def test_pipe_grown(srv):
    """A pipe as query's output is grown to TV_RECORD_OUT_PIPE_BYTES (1 MiB, record_out.h)
    and the output is the same as into a file; a pipe already larger (when this process may
    make one: root past /proc/sys/fs/pipe-max-size needs CAP_SYS_RESOURCE) is left as it is."""
    F_SETPIPE_SZ, F_GETPIPE_SZ = 1031, 1032
    frm, to = BASE, BASE + 10**9
    want = query_bytes(srv.addr, "jsonl", frm, to)
    for before in (65536, 2 * 1024 * 1024):
        r, w = os.pipe()
        try:
            try:
                fcntl.fcntl(w, F_SETPIPE_SZ, before)
            except PermissionError:
                print("note: cannot make a %d-byte pipe here, that case not tried" % before)
                continue
            p = subprocess.Popen([tvtest.binary("tracevault"), "query", "--server", srv.addr,
                                  "--from", str(frm), "--to", str(to)], stdout=w)
            os.close(w)
            w = -1
            got = b""
            while True:
                b = os.read(r, 1 << 16)
                if not b:
                    break
                got += b
            assert p.wait(60) == 0
            size = fcntl.fcntl(r, F_GETPIPE_SZ)
        finally:
            os.close(r)
            if w >= 0:
                os.close(w)
        assert got == want, (before, len(got), len(want))
        assert size == max(before, 1024 * 1024), (before, size)


NO_END_BASE = BASE + 6 * 10**9  # the window of the record without end_ns below


def no_end_record():
    """An exchange as `tracevault put` may store it: latency_ns but no end_ns."""
    r = rec(NO_END_BASE, 21, path="/no-end", role="server", status=200, latency_ns=1500000)
    r.end_ns = 0
    return r


def test_otlp_end_without_end_ns(srv):
    """otlp-json's endTimeUnixNano of an exchange without end_ns is ts_ns + latency_ns, the
    duration the latency filters and the Jaeger API use (proto/exchange_span.h
    tv_xspan_end_ns), not ts_ns (a span of length 0)."""
    lines = query(srv.addr, "otlp-json", NO_END_BASE, NO_END_BASE + 1).splitlines()
    spans = [sp for line in lines for sp in check_encoding(json.loads(line))]
    assert len(spans) == 1, spans
    assert int(spans[0]["startTimeUnixNano"]) == NO_END_BASE, spans
    assert int(spans[0]["endTimeUnixNano"]) == NO_END_BASE + 1500000, spans


def test_usage_errors(srv):
    p = tvtest.run(["query", "--server", srv.addr, "--from", "0", "--format", "xml"])
    assert p.returncode == 2 and len(p.stderr.splitlines()) == 1, p
    assert "jsonl, table, csv or otlp-json" in p.stderr, p.stderr
    p = tvtest.run(["query", "--server", srv.addr, "--from", "0", "--stats", "--format",
                    "otlp-json"])
    assert p.returncode == 2 and "otlp-json" in p.stderr, p


def main():
    with tvtest.Server() as srv, tempfile.TemporaryDirectory() as tmp:
        otlp = otlp_module(tmp)
        cl = tvtest.GrpcClient(srv.addr)
        cl.write_segment(0xF1, [(0xF10, special_records())])
        bulk = bulk_records()
        cl.write_segment(0xF2, [(0xF20 + i // 1000, bulk[i:i + 1000])
                                for i in range(0, len(bulk), 1000)])
        cl.write_encoded(0xF3, [(0xF31, odd_block())])
        cl.write_segment(0xF4, [(0xF40, [no_end_record()])])
        res = tvtest.Results(9)
        res.run(test_csv_equals_jsonl, srv)
        res.run(test_otlp_json_loads_strictly, srv, otlp)
        res.run(test_otlp_pair_mapping, srv)
        res.run(test_two_runs_identical, srv)
        res.run(test_pipe_grown, srv)
        res.run(test_summary_csv_writes_a_key_as_query_csv_does, srv)
        res.run(test_summary_table_columns_stay_aligned, srv)
        res.run(test_otlp_end_without_end_ns, srv)
        res.run(test_usage_errors, srv)
        return res.exit_code()


if __name__ == "__main__":
    sys.exit(main())
