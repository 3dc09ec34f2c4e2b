"""tracevaultd's HTTP API (README "HTTP API") read by a client written from the published
shapes, not from our code: the Jaeger query API as jaegertracing/jaeger's
cmd/query/app/http_handler.go and model/json define it (the {"data","total","limit","offset",
"errors"} envelope; traces {traceID, spans, processes, warnings}; spans {traceID, spanID,
operationName, references, startTime, duration (us), tags [{key,type,value}], logs,
processID, warnings}), and the page's /api/tracevault routes. The archive holds known
records: exchanges put with `tracevault put` and OTLP spans sent over gRPC Export with the
published opentelemetry-proto messages. Expected values are computed here by hand, the
derived trace id with hashlib (README "Exchanges as spans")."""
import hashlib
import json
import os
import random
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.parse
import urllib.request

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import tvtest  # noqa: E402
from test_otlp_ingest import Otlp, otlp_modules  # noqa: E402

US = 1000
# the records' times: whole microseconds, ten minutes ago (inside the default 1 h lookback)
T0 = (time.time_ns() // 1_000_000_000 - 600) * 1_000_000_000
TRACE_A = "0af7651916cd43dd8448eb211c80319c"
SPAN_CLIENT = "b7ad6b7169203331"

EXCHANGES = [
    # curl (--service-name curl=frontend) calls nginx: the client's own span id is SPAN_CLIENT
    {"ts_ns": T0, "end_ns": T0 + 5_000_000, "latency_ns": 5_000_000, "pid": 42,
     "comm": "curl", "local": "127.0.0.1:50000", "remote": "127.0.0.1:8080",
     "method": "GET", "path": "/api/users?id=3", "status": 200, "role": "client",
     "host": "localhost:8080", "trace_id": TRACE_A, "span_id": SPAN_CLIENT,
     "http_version": "1.1"},
    # nginx answers it 503: its span is a child of the client's
    {"ts_ns": T0 + 1_000_000, "end_ns": T0 + 4_000_000, "latency_ns": 3_000_000, "pid": 43,
     "comm": "nginx", "local": "127.0.0.1:8080", "remote": "127.0.0.1:50000",
     "method": "GET", "path": "/api/users?id=3", "status": 503, "role": "server",
     "host": "localhost:8080", "trace_id": TRACE_A, "span_id": SPAN_CLIENT,
     "http_version": "1.1"},
    # a later request without traceparent: its trace id is derived
    {"ts_ns": T0 + 60_000_000_000, "end_ns": T0 + 60_000_000_000 + 8_000_000,
     "latency_ns": 8_000_000, "pid": 43, "comm": "nginx", "local": "127.0.0.1:8080",
     "remote": "127.0.0.1:50002", "method": "POST", "path": "/login", "status": 200,
     "role": "server", "host": "localhost:8080", "http_version": "1.1"},
]

# the published envelope and shapes (model/json)
ENVELOPE = {"data", "total", "limit", "offset", "errors"}
TRACE_KEYS = {"traceID", "spans", "processes", "warnings"}
SPAN_KEYS = {"traceID", "spanID", "operationName", "references", "startTime", "duration",
             "tags", "logs", "processID", "warnings"}
TAG_TYPES = {"string": str, "bool": bool, "int64": int, "float64": float}


def get(base, path, /, **params):
    """(status, parsed JSON) of GET base+path?params (positional-only: a parameter may be
    called path)."""
    url = "http://%s%s" % (base, path)
    if params:
        url += "?" + urllib.parse.urlencode(params)
    try:
        with urllib.request.urlopen(url, timeout=30) as r:
            return r.status, json.loads(r.read())
    except urllib.error.HTTPError as e:
        return e.code, json.loads(e.read())


def ok_data(base, path, /, **params):
    status, body = get(base, path, **params)
    assert status == 200, (path, params, status, body)
    assert set(body) == ENVELOPE, body.keys()
    assert body["errors"] is None, body
    return body["data"]


def check_trace_shape(t):
    """Every key and type the published model/json trace has."""
    assert set(t) == TRACE_KEYS, t.keys()
    for sp in t["spans"]:
        assert SPAN_KEYS <= set(sp), sp.keys()
        assert sp["traceID"] == t["traceID"]
        assert len(sp["spanID"]) == 16 and int(sp["spanID"], 16) >= 0
        assert isinstance(sp["startTime"], int) and isinstance(sp["duration"], int)
        assert sp["processID"] in t["processes"], (sp["processID"], t["processes"])
        assert sp["logs"] == []
        for ref in sp["references"]:
            assert set(ref) == {"refType", "traceID", "spanID"} and ref["refType"] == "CHILD_OF"
        for tag in sp["tags"]:
            assert set(tag) == {"key", "type", "value"}, tag
            assert isinstance(tag["value"], TAG_TYPES[tag["type"]]), tag
    for p in t["processes"].values():
        assert set(p) == {"serviceName", "tags"}, p


def tags_of(sp):
    return {t["key"]: t["value"] for t in sp["tags"]}


def derived_ids(r):
    """README "Exchanges as spans": SHA-256 of "tv1\\0" ts "\\0" pid "\\0" role "\\0" local
    "\\0" remote; trace id bytes 0-15, span id bytes 16-23."""
    ident = b"\0".join(s.encode() for s in ("tv1", str(r["ts_ns"]), str(r["pid"]), r["role"],
                                             r["local"], r["remote"]))
    d = hashlib.sha256(ident).digest()
    return d[:16].hex(), d[16:24].hex()


def test_services(http):
    data = ok_data(http, "/api/services")
    assert data == ["checkout", "frontend", "nginx"], data


def test_operations(http):
    assert ok_data(http, "/api/services/nginx/operations") == ["GET /api/users", "POST /login"]
    assert ok_data(http, "/api/services/frontend/operations") == ["GET /api/users"]
    # the comm of a mapped service is not a service of its own
    assert ok_data(http, "/api/services/curl/operations") == []
    assert ok_data(http, "/api/operations", service="checkout") == [
        {"name": "POST /pay", "spanKind": "server"}, {"name": "SELECT", "spanKind": "client"}]
    assert ok_data(http, "/api/operations", service="checkout", spanKind="client") == [
        {"name": "SELECT", "spanKind": "client"}]


def test_trace_by_id_exchanges(http):
    data = ok_data(http, "/api/traces/" + TRACE_A)
    assert len(data) == 1
    t = data[0]
    check_trace_shape(t)
    assert t["traceID"] == TRACE_A
    by_op = {(sp["operationName"], tags_of(sp)["span.kind"]): sp for sp in t["spans"]}
    assert set(by_op) == {("GET /api/users", "client"), ("GET /api/users", "server")}
    cli, srv = by_op[("GET /api/users", "client")], by_op[("GET /api/users", "server")]
    # client: its traceparent names its own span; server: child of it
    assert cli["spanID"] == SPAN_CLIENT and cli["references"] == []
    assert srv["references"] == [{"refType": "CHILD_OF", "traceID": TRACE_A,
                                  "spanID": SPAN_CLIENT}]
    _, want_span = derived_ids(EXCHANGES[1])
    assert srv["spanID"] == want_span, (srv["spanID"], want_span)
    assert cli["startTime"] == T0 // US and cli["duration"] == 5000
    assert srv["startTime"] == (T0 + 1_000_000) // US and srv["duration"] == 3000
    assert t["processes"][cli["processID"]]["serviceName"] == "frontend"
    assert t["processes"][srv["processID"]]["serviceName"] == "nginx"
    ct, st = tags_of(cli), tags_of(srv)
    assert ct["http.request.method"] == "GET" and ct["url.path"] == "/api/users"
    assert ct["url.query"] == "id=3" and ct["http.response.status_code"] == 200
    assert ct["url.full"] == "http://localhost:8080/api/users?id=3"
    assert "error" not in ct
    assert st["http.response.status_code"] == 503 and st["error"] is True
    assert st["error.type"] == "503" and st["client.port"] == 50000
    # the trace id in any case, and without leading zeros padding, finds it
    assert ok_data(http, "/api/traces/" + TRACE_A.upper())[0]["traceID"] == TRACE_A


def test_trace_by_id_otlp_spans(http, trace_b):
    tid, root, child = trace_b
    t = ok_data(http, "/api/traces/" + tid)[0]
    check_trace_shape(t)
    spans = {sp["spanID"]: sp for sp in t["spans"]}
    assert set(spans) == {root, child}
    r, c = spans[root], spans[child]
    assert r["operationName"] == "POST /pay" and r["references"] == []
    assert r["startTime"] == (T0 + 2_000_000) // US and r["duration"] == 2000
    assert c["references"] == [{"refType": "CHILD_OF", "traceID": tid, "spanID": root}]
    assert c["startTime"] == (T0 + 2_500_000) // US and c["duration"] == 700
    rt, ctags = tags_of(r), tags_of(c)
    assert rt["span.kind"] == "server" and rt["http.route"] == "/pay"
    assert rt["http.response.status_code"] == 201 and rt["retry"] is False
    assert rt["ratio"] == 0.25
    assert ctags["span.kind"] == "client" and ctags["error"] is True
    assert ctags["otel.status_code"] == "ERROR" and ctags["otel.status_description"] == "timeout"
    assert ctags["otel.scope.name"] == "test-scope"
    assert t["processes"][r["processID"]]["serviceName"] == "checkout"


def test_search(http, trace_b):
    # newest first: the derived trace (a minute later) before trace A
    data = ok_data(http, "/api/traces", service="nginx")
    want_derived, _ = derived_ids(EXCHANGES[2])
    assert [t["traceID"] for t in data] == [want_derived, TRACE_A], [t["traceID"] for t in data]
    for t in data:
        check_trace_shape(t)
    # the search found nginx's span; the trace holds every span of it (frontend's too)
    assert len(data[1]["spans"]) == 2
    assert [t["traceID"] for t in ok_data(http, "/api/traces", service="nginx", limit=1)] == [
        want_derived]
    assert [t["traceID"] for t in ok_data(http, "/api/traces", service="nginx",
                                          operation="GET /api/users")] == [TRACE_A]
    # tags as Jaeger UI sends them (a JSON object) and as tag=k:v
    assert [t["traceID"] for t in ok_data(
        http, "/api/traces", service="nginx",
        tags=json.dumps({"http.response.status_code": "503"}))] == [TRACE_A]
    assert [t["traceID"] for t in ok_data(http, "/api/traces", service="nginx",
                                          tag="error:true")] == [TRACE_A]
    assert ok_data(http, "/api/traces", service="nginx", tag="error:false") == []
    # durations: nginx's spans last 3 ms and 8 ms
    assert [t["traceID"] for t in ok_data(http, "/api/traces", service="nginx",
                                          minDuration="4ms")] == [want_derived]
    assert [t["traceID"] for t in ok_data(http, "/api/traces", service="nginx",
                                          maxDuration="3000us")] == [TRACE_A]
    # a window (start/end in microseconds, end inclusive) that holds only trace A's span
    assert [t["traceID"] for t in ok_data(
        http, "/api/traces", service="nginx", start=(T0 + 1_000_000) // US,
        end=(T0 + 1_000_000) // US, lookback="custom")] == [TRACE_A]
    assert ok_data(http, "/api/traces", service="nginx", start=(T0 + 2_000_000) // US,
                   end=(T0 + 3_000_000) // US) == []
    # an OTLP service
    tid, _, _ = trace_b
    assert [t["traceID"] for t in ok_data(http, "/api/traces", service="checkout",
                                          operation="SELECT")] == [tid]


def test_errors(http):
    """Bad parameters: 400 with the error shape and a message naming the parameter."""
    cases = [("/api/traces", {"service": "nginx", "minDuration": "banana"}, "minDuration"),
             ("/api/traces", {"service": "nginx", "limit": "-1"}, "limit"),
             ("/api/traces", {"service": "nginx", "limit": "100000"}, "--http-max-traces"),
             ("/api/traces", {"service": "nginx", "start": "20", "end": "10"}, "after"),
             ("/api/traces", {"service": "nginx", "tags": "{not json"}, "tags"),
             ("/api/traces", {}, "service"),
             ("/api/traces/xyz", {}, "trace id"),
             ("/api/operations", {}, "service"),
             ("/api/tracevault/summary", {"by": "colour"}, "by"),
             ("/api/tracevault/exchanges", {"status": "6xxx"}, "status"),
             ("/api/tracevault/rates", {"step": "1us"}, "buckets")]
    for path, params, word in cases:
        status, body = get(http, path, **params)
        assert status == 400, (path, params, status, body)
        assert set(body) == ENVELOPE and body["data"] is None, body
        assert body["errors"][0]["code"] == 400 and word in body["errors"][0]["msg"], body
    status, body = get(http, "/api/traces/" + "1" * 32)
    assert status == 404 and body["errors"][0]["msg"] == "trace not found", body
    req = urllib.request.Request("http://%s/api/nothing" % http)
    try:
        urllib.request.urlopen(req, timeout=10)
        raise AssertionError("/api/nothing answered")
    except urllib.error.HTTPError as e:
        assert e.code == 404


def test_search_by_trace_ids(http, trace_b):
    """traceID (repeatable), as Jaeger's search takes it: exactly those traces, in the order
    asked, without service; with service (or other search parameters) given too, Jaeger
    applies none of them, so neither do we; an id with no span is an entry of errors."""
    tid_b, _, _ = trace_b
    missing = "2" * 32

    def search(*pairs):
        return get(http, "/api/traces?" + urllib.parse.urlencode(pairs))

    status, body = search(("traceID", TRACE_A))
    assert status == 200 and body["errors"] is None, body
    assert [t["traceID"] for t in body["data"]] == [TRACE_A] and body["total"] == 1, body
    assert len(body["data"][0]["spans"]) == 2
    check_trace_shape(body["data"][0])
    status, body = search(("traceID", tid_b), ("traceID", TRACE_A.upper()))
    assert [t["traceID"] for t in body["data"]] == [tid_b, TRACE_A], body
    # service and operation are not applied with trace ids (Jaeger's tracesByIDs)
    status, body = search(("service", "checkout"), ("operation", "SELECT"),
                          ("traceID", TRACE_A))
    assert status == 200 and [t["traceID"] for t in body["data"]] == [TRACE_A], body
    status, body = search(("traceID", missing), ("traceID", TRACE_A))
    assert status == 200 and [t["traceID"] for t in body["data"]] == [TRACE_A], body
    assert body["errors"] == [{"msg": "trace not found", "traceID": missing}], body
    # not hex: 400 naming the parameter
    status, body = search(("traceID", "xyz"))
    assert status == 400 and "traceID" in body["errors"][0]["msg"], body


def test_dependencies_and_favicon(http):
    """Jaeger UI's dependencies tab gets Jaeger's empty answer; /favicon.ico is 204."""
    status, body = get(http, "/api/dependencies", endTs=int(time.time() * 1000),
                       lookback=3600000)
    assert status == 200 and body == {"data": [], "total": 0, "limit": 0, "offset": 0,
                                      "errors": None}, body
    with urllib.request.urlopen("http://%s/favicon.ico" % http, timeout=10) as r:
        assert r.status == 204 and r.read() == b""


def socket_dirs_of(pid):
    """The directories of the unix sockets process pid listens on (from /proc)."""
    inodes = set()
    for fd in os.listdir("/proc/%d/fd" % pid):
        try:
            t = os.readlink("/proc/%d/fd/%s" % (pid, fd))
        except OSError:
            continue
        if t.startswith("socket:["):
            inodes.add(t[8:-1])
    dirs = set()
    with open("/proc/net/unix") as f:
        next(f)
        for ln in f:
            parts = ln.split()
            if len(parts) >= 8 and parts[6] in inodes and parts[7].startswith("/"):
                dirs.add(os.path.dirname(parts[7]))
    return dirs


def test_names_exact():
    """/api/services and operations list every service and operation of their window, not
    those of the newest --http-max-spans records: the exchanges' from Summary calls (exact at
    any count), the span records' from a Query of at most 10 x --http-max-spans of them,
    whose cut is said in errors. With --http-max-spans 5: 30 exchanges of one comm, a few of
    others; span records of a busy service and of a rare one. Also: an exchange put without
    end_ns lasts its latency_ns in Jaeger's answer, as minDuration/maxDuration select it; a
    trace above --http-max-response-bytes is 413 with advice that fits /api/traces/ID; the
    private socket directory is gone after SIGTERM."""
    def x(i, comm, path, role, **kw):
        ts = T0 + i * 1_000_000
        r = {"ts_ns": ts, "end_ns": ts + 1_000_000, "latency_ns": 1_000_000, "pid": 7,
             "comm": comm, "local": "127.0.0.1:8080", "remote": "127.0.0.1:%d" % (40000 + i),
             "method": "GET", "path": path, "status": 200, "role": role}
        r.update(kw)
        return r

    # rare first (oldest), then 30 of busy: 3 paths, server/client/no role
    recs = [x(0, "rare", "/r", "server")]
    recs += [x(1 + i, "busy", "/p%d?q=%d" % (i % 3, i), ["server", "client", ""][i % 3])
             for i in range(30)]
    noend = x(40, "noend", "/slow", "server", latency_ns=2_000_000)
    del noend["end_ns"]
    recs.append(noend)
    with tvtest.Server(extra_args=["--http-addr", "127.0.0.1:0", "--http-max-spans", "5",
                                   "--http-max-response-bytes", "4K"]) as srv:
        http = tvtest.metrics_addr(srv.log())
        with tempfile.NamedTemporaryFile("w", suffix=".jsonl", delete=False) as f:
            for r in recs:
                f.write(json.dumps(r) + "\n")
        tvtest.run(["put", "--server", srv.addr, f.name], check=True)
        os.unlink(f.name)
        otlp = Otlp(srv.addr, otlp_modules(tempfile.mkdtemp(prefix="tv-otlp-py-")))
        rng = random.Random(5)
        tid = rng.randbytes(16)
        rare = otlp.span(rng.randbytes(16), rng.randbytes(8), name="tick", kind=1, start=T0)
        busy = [otlp.span(tid, rng.randbytes(8), name="work %d" % (i % 2), kind=2,
                          start=T0 + 1_000_000 + i * 1000, attrs={"note": "x" * 1000})
                for i in range(40)]
        assert otlp.export(otlp.request({"rare-span": [rare], "busy-span": busy})
                           ).partial_success.rejected_spans == 0
        # 41 span records: under the bound of 50, every name, no error
        assert ok_data(http, "/api/services") == ["busy", "busy-span", "noend", "rare",
                                                  "rare-span"]
        assert ok_data(http, "/api/services", kind="exchange") == ["busy", "noend", "rare"]
        assert ok_data(http, "/api/services", kind="span") == ["busy-span", "rare-span"]
        assert ok_data(http, "/api/services/busy/operations") == [
            "GET /p0", "GET /p1", "GET /p2"]
        # p0: server, p1: client, p2: no role (spanKind "")
        assert ok_data(http, "/api/operations", service="busy") == [
            {"name": "GET /p0", "spanKind": "server"}, {"name": "GET /p1", "spanKind": "client"},
            {"name": "GET /p2", "spanKind": ""}]
        assert ok_data(http, "/api/operations", service="busy", spanKind="client") == [
            {"name": "GET /p1", "spanKind": "client"}]
        assert ok_data(http, "/api/services/busy-span/operations") == ["work 0", "work 1"]
        assert ok_data(http, "/api/services/rare/operations") == ["GET /r"]
        # an exchange without end_ns: a 2 ms span, found by minDuration 1ms, not by max 1ms
        data = ok_data(http, "/api/traces", service="noend", minDuration="1ms")
        assert [sp["duration"] for t in data for sp in t["spans"]] == [2000], data
        assert ok_data(http, "/api/traces", service="noend", maxDuration="1ms") == []
        # the trace (its newest 5 spans of 1 KiB each) does not fit in 4 KiB: the advice
        # names what helps for one trace
        status, body = get(http, "/api/traces/" + tid.hex())
        assert status == 413 and "tracevault trace" in body["errors"][0]["msg"], body
        # a trace of 8 small spans read with --http-max-spans 5: 5 spans, and its warnings say
        # the read was cut (never a silent cut); a trace within the bound has none
        tid8 = rng.randbytes(16)
        eight = [otlp.span(tid8, rng.randbytes(8), name="step", kind=1,
                           start=T0 + 3_000_000 + i * 1000) for i in range(8)]
        assert otlp.export(otlp.request({"eight": eight})).partial_success.rejected_spans == 0
        [t8] = ok_data(http, "/api/traces/" + tid8.hex())
        assert len(t8["spans"]) == 5, t8
        assert t8["warnings"] and "--http-max-spans" in t8["warnings"][0], t8
        [t1] = ok_data(http, "/api/traces/" + rare.trace_id.hex())
        assert len(t1["spans"]) == 1 and t1["warnings"] is None, t1
        # 20 more busy spans: 61 > 50 span records, the rare span service is past the bound
        more = [otlp.span(tid, rng.randbytes(8), name="work 0", kind=2,
                          start=T0 + 2_000_000 + i * 1000) for i in range(20)]
        assert otlp.export(otlp.request({"busy-span": more})).partial_success.rejected_spans == 0
        status, body = get(http, "/api/services")
        assert status == 200 and "rare-span" not in body["data"], body
        # ... and the answer says so; the exchanges' services stay exact
        assert body["errors"] and "--http-max-spans" in body["errors"][0]["msg"], body
        assert {"busy", "noend", "rare", "busy-span"} <= set(body["data"]), body
        assert ok_data(http, "/api/services", kind="exchange") == ["busy", "noend", "rare"]
        dirs = [d for d in socket_dirs_of(srv.proc.pid) if "tracevaultd-http." in d]
        assert len(dirs) == 1 and os.path.isdir(dirs[0]), dirs
        assert srv.stop() == 0, srv.log()[-2000:]
        assert not os.path.exists(dirs[0]), "%s left after SIGTERM" % dirs[0]


def test_page_routes(http):
    """The page's routes: summary, rates, a page of exchanges, against the records."""
    # end is inclusive: the window is [T0, T0 + 120 s) exactly
    w = {"start": T0 // US, "end": (T0 + 120_000_000_000) // US - 1}
    s = get(http, "/api/tracevault/summary", by="path", **w)[1]
    groups = {g["key"]: g for g in s["groups"]}
    assert s["records"] == 3 and set(groups) == {"/api/users", "/login"}, s
    assert groups["/api/users"]["count"] == 2 and groups["/api/users"]["count_5xx"] == 1
    assert groups["/api/users"]["errors"] == 1 and groups["/login"]["errors"] == 0
    assert groups["/api/users"]["max_us"] == 5000 and groups["/login"]["max_us"] == 8000
    s = get(http, "/api/tracevault/summary", by="status", service="nginx", **w)[1]
    assert {g["key"]: g["count"] for g in s["groups"]} == {"503": 1, "200": 1}, s
    # rates: two 60 s buckets: trace A's two exchanges, then the login
    r = get(http, "/api/tracevault/rates", step="60s", **w)[1]
    assert [b["count"] for b in r["buckets"]] == [2, 1], r
    assert [b["errors"] for b in r["buckets"]] == [1, 0]
    assert r["buckets"][1]["start"] == T0 // US + 60_000_000
    # exchanges: newest first, paged
    e = get(http, "/api/tracevault/exchanges", limit=2, **w)[1]
    assert [x["path"] for x in e["data"]] == ["/login", "/api/users?id=3"], e
    assert e["data"][0]["ts_ns"] == EXCHANGES[2]["ts_ns"] and e["data"][1]["status"] == 503
    e = get(http, "/api/tracevault/exchanges", limit=2, offset=2, **w)[1]
    assert [x["service"] for x in e["data"]] == ["frontend"], e
    e = get(http, "/api/tracevault/exchanges", status="5xx", **w)[1]
    assert [x["status"] for x in e["data"]] == [503]


def test_page_served(http):
    with urllib.request.urlopen("http://%s/" % http, timeout=10) as r:
        body = r.read().decode()
        assert r.status == 200 and r.headers["Content-Type"].startswith("text/html")
    with open(os.path.join(os.environ["TV_SOURCE_DIR"], "web", "index.html")) as f:
        assert body == f.read()


def test_hostile_parameters(http):
    """Random and oversized parameters on every route: each answer is 200, 400 or 404 with a
    JSON body, and the server keeps answering (a crash would end the run)."""
    rng = random.Random(7)
    routes = ["/api/services", "/api/services/nginx/operations", "/api/operations",
              "/api/traces", "/api/traces/" + TRACE_A, "/api/tracevault/summary",
              "/api/tracevault/rates", "/api/tracevault/exchanges"]
    names = ["service", "operation", "tags", "tag", "start", "end", "lookback", "minDuration",
             "maxDuration", "limit", "offset", "step", "by", "status", "path", "role",
             "method", "host", "trace_id", "spanKind"]
    values = ["", "-1", "0", "1", "18446744073709551615", "18446744073709551616", "1e308",
              "nan", "inf", "1.5ms", "2x", "{", "{\"a\":1}", "[]", "\x00", "%", "*", "[a-",
              "5xx", "999-1", "ü" * 300, "a" * 5000, "custom", "nginx", ":", "k:v"]
    for i in range(300):
        params = {rng.choice(names): rng.choice(values) for _ in range(rng.randint(1, 4))}
        path = rng.choice(routes)
        status, body = get(http, path, **params)
        assert status in (200, 400, 404), (path, params, status, body)
        assert isinstance(body, dict), body
    assert ok_data(http, "/api/services") == ["checkout", "frontend", "nginx"]
    # values that name nothing Jaeger knows are refused with the reason, not an empty 200:
    # an unknown span kind, a service name that is not UTF-8 (every name the API lists is)
    status, body = get(http, "/api/operations", service="nginx", spanKind="bogus")
    assert status == 400 and "invalid spanKind: 'bogus'" in body["errors"][0]["msg"], body
    for path in ("/api/services/%FF%FE/operations", "/api/operations?service=%FF%FE",
                 "/api/traces?service=%FF%FE"):
        status, body = get(http, path)
        assert status == 400 and "not UTF-8" in body["errors"][0]["msg"], (path, body)
    for kind, names in (("server", ["POST /pay"]), ("client", ["SELECT"]), ("producer", []),
                        ("consumer", []), ("internal", []), ("", ["POST /pay", "SELECT"])):
        got = ok_data(http, "/api/operations", service="checkout", spanKind=kind)
        assert [o["name"] for o in got] == names, (kind, got)
    # an unknown but well-formed service: Jaeger's answer, 200 with no data
    assert ok_data(http, "/api/services/nosuch/operations") == []
    assert ok_data(http, "/api/services/%C3%BC/operations") == []  # "ü": UTF-8, unknown


def test_status_parameter(http):
    """status= of the page's routes takes exactly what the CLI's --status takes
    (common/status_range.h: Nxx, NNN, NNN-NNN within 100 to 999, none, comma-separated) and
    refuses the rest with 400 and the reason; it used to take -1 (wrapped), ' 404', '4044'
    (as 404) and 599-100 (as nothing). 600 to 999 are selectable: a status line may carry
    them and the capture stores them (they used to be refused)."""
    w = {"start": T0 // US, "end": (T0 + 120_000_000_000) // US - 1}
    for bad in ("1000", "-1", " 404", "404 ", "4044", "40x", "599-100", "099", "0xx", "10xx",
                "404,", ",404", "4xx-5xx", "+404", "0", "none1", "%d" % (2 ** 32 + 404)):
        for route in ("/api/tracevault/summary", "/api/tracevault/exchanges",
                      "/api/tracevault/rates"):
            status, body = get(http, route, status=bad, **w)
            assert status == 400, (route, bad, status, body)
            msg = body["errors"][0]["msg"]
            assert msg.startswith("invalid status: ") and "100 to 999" in msg, (bad, msg)

    def statuses(value):
        e = get(http, "/api/tracevault/exchanges", status=value, **w)
        assert e[0] == 200, (value, e)
        return sorted(x["status"] for x in e[1]["data"])
    assert statuses("5xx") == statuses("503") == statuses("500-599") == [503]
    assert statuses("200") == statuses("2xx") == statuses("100-299") == [200, 200]
    assert statuses("404") == statuses("none") == []
    assert statuses("503,200") == statuses("2xx,5xx") == [200, 200, 503]
    # the CLI refuses what the API refuses: one parser
    p = subprocess.run([tvtest.binary("tracevault"), "query", "--server", "127.0.0.1:1",
                        "--status", "1000"], capture_output=True, text=True, timeout=30)
    assert p.returncode == 2 and "Nxx, NNN, NNN-NNN (100 to 999) or none" in p.stderr, p


def test_argument_shape(http):
    """Arguments a route reads once must come once and whole: 'status=404%00x' used to pass as
    404 (a C string ends at the NUL) and 'status=5xx&status=404' as 5xx (the first won).
    Both are 400 with the argument named, on every route; traceID alone repeats."""
    w = "start=%d&end=%d" % (T0 // US, (T0 + 120_000_000_000) // US - 1)
    routes = ("/api/tracevault/summary", "/api/tracevault/exchanges", "/api/tracevault/rates",
              "/api/traces", "/api/services", "/api/operations")
    for route in routes:
        for query, want in (("status=404%00x", "'status' holds a NUL byte"),
                            ("service=ngi%00nx", "'service' holds a NUL byte"),
                            ("x%00y=1", "holds a NUL byte"),
                            ("status=5xx&status=404", "'status' given more than once"),
                            ("service=a&service=b", "'service' given more than once"),
                            ("limit=1&limit=2", "'limit' given more than once"),
                            ("&".join("a%d=1" % i for i in range(257)),
                             "query arguments: at most 256")):
            status, body = get(http, "%s?%s&%s" % (route, w, query))
            assert status == 400, (route, query, status, body)
            msg = body["errors"][0]["msg"]
            assert want in msg, (route, query, msg)
    # a NUL in the path: a C string ended there, so "/api/traces/ID%00junk" answered ID's
    # trace and "/api/tracevault/exchanges%00x" the exchanges; now 400 before any route
    for path in ("/api/traces/%s%%00junk" % TRACE_A, "/api/tracevault/exchanges%00x",
                 "/api/dependencies%00", "/metrics%00", "/%00", "/v1/traces%00"):
        try:
            with urllib.request.urlopen("http://%s%s" % (http, path), timeout=30) as r:
                raise AssertionError("%s answered %d" % (path, r.status))
        except urllib.error.HTTPError as e:
            assert e.code == 400 and b"NUL byte" in e.read(), (path, e.code)
    # ... while the same paths without it still answer; on one keep-alive connection a
    # request after one with a NUL (path or argument) is judged on its own
    from http.client import HTTPConnection
    host, port = http.rsplit(":", 1)
    c = HTTPConnection(host, int(port), timeout=30)
    try:
        for path, want in (("/api/traces/%s%%00junk" % TRACE_A, 400),
                           ("/api/traces/" + TRACE_A, 200), ("/api/services?x=%00", 400),
                           ("/api/services", 200), ("/api/services%00", 400),
                           ("/api/services", 200)):
            c.request("GET", path)
            r = c.getresponse()
            r.read()
            assert r.status == want, (path, r.status)
    finally:
        c.close()
    # the limit is on the count, not the shape: 256 distinct arguments pass the check
    many = "&".join("a%d=1" % i for i in range(250))
    assert get(http, "/api/services?" + many)[0] == 200
    # empty pieces are no arguments (Go's url.ParseQuery, Jaeger's, skips them), however
    # many: 600 of them overflowed libmicrohttpd's default 32 KiB and got no answer at all
    for query in ("lookback=1h&&kind=exchange", "a=1&&b=2&&c=3", "&" * 600, "=x&=y"):
        assert get(http, "/api/services?" + query)[0] == 200, query
    # tag and tags repeat, as in Jaeger (query_parser.go parseTags): every one applies
    w1h = "service=nginx&start=%d&end=%d" % (T0 // US, (T0 + 120_000_000_000) // US)
    # (query, the traces found: TRACE_A's ("A"), the /login request's ("L"))
    for query, want in (("tag=http.response.status_code:503&tag=http.request.method:GET", "A"),
                        ("tag=http.response.status_code:503&tag=http.request.method:POST", ""),
                        ("tags=%7B%22error%22%3A%22true%22%7D&tags=%7B%22url.path%22%3A"
                         "%22%2Fapi%2Fusers%22%7D", "A"),
                        ("tags=%7B%22error%22%3A%22true%22%7D&tags=%7B%22url.path%22%3A"
                         "%22%2Flogin%22%7D", ""),
                        # a key in both: tags wins, as Jaeger reads it after tag
                        ("tags=%7B%22url.path%22%3A%22%2Flogin%22%7D&tag=url.path:/api/users",
                         "L"),
                        ("tags=%7B%22url.path%22%3A%22%2Fapi%2Fusers%22%7D&tag=url.path:/login",
                         "A")):
        got = ok_data(http, "/api/traces?%s&%s" % (w1h, query))
        found = "".join(sorted("A" if t["traceID"] == TRACE_A else "L" for t in got))
        assert found == want, (query, [t["traceID"] for t in got])
    status, body = get(http, "/api/traces?%s&%s" % (w1h, "&".join(["tag=a:b"] * 65)))
    assert status == 400 and "at most 64" in body["errors"][0]["msg"], body
    # traceID repeats up to --http-max-traces (1000), not TV_HTTP_MAX_ARGS: the URL (41 KB
    # here) fits TV_HTTP_CONNECTION_MEMORY_BYTES
    ids = ["%032x" % (i + 0x1000) for i in range(1000)]
    status, body = get(http, "/api/traces?" + "&".join("traceID=" + x for x in ids))
    assert status == 200 and len(body["errors"]) == 1000, (status, str(body)[:300])
    # a service name that is not UTF-8 is 400 on the page's routes too (no list shows one)
    for route in routes[:3]:
        status, body = get(http, "%s?%s&service=%%FF" % (route, w))
        assert status == 400 and "not UTF-8" in body["errors"][0]["msg"], (route, body)
    # traceID is the one argument that repeats (Jaeger's multi-trace lookup, checked whole in
    # test_search_by_trace_ids)
    got = ok_data(http, "/api/traces?traceID=%s&traceID=%s" % (TRACE_A, TRACE_A))
    assert [t["traceID"] for t in got] == [TRACE_A], got


def test_concurrent_requests(http):
    """8 clients at once (the API's thread pool is 4): every answer whole and the same."""
    import concurrent.futures
    want = ok_data(http, "/api/traces", service="nginx")

    def one(_):
        return ok_data(http, "/api/traces", service="nginx")

    with concurrent.futures.ThreadPoolExecutor(8) as ex:
        got = list(ex.map(one, range(40)))
    assert all(g == want for g in got)


def test_bounds():
    """--http-max-spans: a search sees the newest N spans only; --http-max-response-bytes:
    413 past it, with the error shape; --http-max-traces: a larger limit is 400; a bad
    --service-name or an --http-* option without --http-addr is a usage error (exit 2)."""
    with tvtest.Server(extra_args=["--http-addr", "127.0.0.1:0", "--http-max-spans", "1"]) as srv:
        http = tvtest.metrics_addr(srv.log())
        put_exchanges(srv.addr)
        want_derived, _ = derived_ids(EXCHANGES[2])
        # one span read: the newest, nginx's login (its trace is that one span)
        assert [t["traceID"] for t in ok_data(http, "/api/traces", service="nginx")] == [
            want_derived]
        status, body = get(http, "/api/tracevault/exchanges", limit=2)
        assert status == 400 and "--http-max-spans" in body["errors"][0]["msg"], body
        assert srv.stop() == 0, srv.log()[-2000:]
    with tvtest.Server(extra_args=["--http-addr", "127.0.0.1:0", "--http-max-response-bytes",
                                   "4K", "--http-max-traces", "5"]) as srv:
        http = tvtest.metrics_addr(srv.log())
        put_exchanges(srv.addr)
        # trace A (2 spans) fits in 4 KiB, both of nginx's traces (3 spans) do not
        assert len(json.dumps(ok_data(http, "/api/traces/" + TRACE_A))) < 4096
        status, body = get(http, "/api/traces", service="nginx")
        assert status == 413 and "--http-max-response-bytes" in body["errors"][0]["msg"], body
        assert set(body) == ENVELOPE
        status, body = get(http, "/api/traces", service="nginx", limit=6)
        assert status == 400 and "--http-max-traces (5)" in body["errors"][0]["msg"], body
        assert srv.stop() == 0, srv.log()[-2000:]
    for args in (["--service-name", "nosign"], ["--service-name", "=x"],
                 ["--http-max-spans", "0"], ["--http-timeout-ms", "5"],
                 ["--http-max-response-bytes", "1K"]):
        p = subprocess.run(
            [tvtest.binary("tracevaultd"), "--data", "/nonexistent", "--http-addr",
             "127.0.0.1:0"] + args, capture_output=True, text=True, timeout=30)
        assert p.returncode == 2 and p.stderr.count("\n") == 1, (args, p.returncode, p.stderr)
    p = subprocess.run([tvtest.binary("tracevaultd"), "--data", "/nonexistent",
                                     "--service-name", "a=b"],
                                    capture_output=True, text=True, timeout=30)
    assert p.returncode == 2 and "need --http-addr" in p.stderr, p.stderr


def test_api_of_a_tls_server_that_requires_client_certs():
    """The API reads through the server's private unix socket (server/local_rpc.h), so it
    answers when --listen takes only TLS clients with certificates."""
    from test_tls import make_certs
    d = tempfile.mkdtemp(prefix="tv-jaeger-tls-")
    make_certs(d)
    p = lambda n: os.path.join(d, n)  # noqa: E731
    with tvtest.Server(extra_args=["--tls-cert", p("server.pem"), "--tls-key", p("server.key"),
                                   "--tls-ca", p("ca.pem"), "--tls-require-client-cert",
                                   "--http-addr", "127.0.0.1:0"]) as srv:
        http = tvtest.metrics_addr(srv.log())
        put_exchanges(srv.addr, ["--tls-ca", p("ca.pem"), "--tls-cert", p("client.pem"),
                                 "--tls-key", p("client.key")])
        assert ok_data(http, "/api/services") == ["curl", "nginx"]
        assert ok_data(http, "/api/traces/" + TRACE_A)[0]["traceID"] == TRACE_A
        assert srv.stop() == 0, srv.log()[-2000:]


def test_names_not_utf8():
    """Names that are not valid UTF-8 (a span name, a service.name, an attribute key and
    value sent over OTLP; an exchange's path, host and comm as a capture may store them)
    reach every Jaeger answer as valid JSON with each such byte as '?', as
    /api/tracevault/exchanges shows them: no 500, and every processID in "processes". They
    used to give 500 (trace, search) or a span whose process was missing."""
    with tvtest.Server(extra_args=["--http-addr", "127.0.0.1:0"]) as srv:
        http = tvtest.metrics_addr(srv.log())
        otlp = Otlp(srv.addr, otlp_modules(tempfile.mkdtemp(prefix="tv-otlp-py-")))
        rng = random.Random(21)
        tid, root, child = rng.randbytes(16), rng.randbytes(8), rng.randbytes(8)
        r = otlp.span(tid, root, name="NNNN", kind=2, start=T0, dur=3_000_000,
                      attrs={"KKKK": "VVVV", "plain": "ok"})
        c = otlp.span(tid, child, parent=root, name="child", kind=3, start=T0 + 1_000_000,
                      dur=1_000_000)
        raw = otlp.request({"shop": [r], "SSSS": [c]}).SerializeToString()
        # bytes only raw protobuf can carry (the messages refuse str that is not UTF-8);
        # same lengths, so every length prefix stays right
        swaps = {b"NNNN": b"N\xff\xfeN", b"SSSS": b"S\xc3(S", b"KKKK": b"K\xed\xa0\x80",
                 b"VVVV": b"V\xf8\x88V"}
        for old, new in swaps.items():
            assert raw.count(old) == 1, old
            raw = raw.replace(old, new)
        assert otlp.export(raw).partial_success.rejected_spans == 0
        # an exchange of the same trace (its traceparent names the root span) whose path,
        # host and comm are not UTF-8, written as a block
        rec = tvtest.trace_record(T0 + 1_500_000, pid=77, path="/bad/PPPP?q=1",
                                  latency_ns=1_000_000, comm="CCCC", host="HHHH",
                                  role="server", trace_id=tid.hex(),
                                  span_id=root.hex()).SerializeToString()
        for old, new in {b"PPPP": b"P\xff\xfeP", b"CCCC": b"C\x80\x80C",
                         b"HHHH": b"H\xc0\xafH"}.items():
            assert rec.count(old) == 1, old
            rec = rec.replace(old, new)
        tvtest.GrpcClient(srv.addr).write_encoded(
            random.getrandbits(63) + 1,
            [(5, tvtest.encode_block_as(5, [rec], min_ts=T0 + 1_500_000, max_ts=T0 + 1_500_000))])

        # the page's route already showed them so: the Jaeger routes must agree with it
        e = get(http, "/api/tracevault/exchanges", lookback="1h")
        assert e[0] == 200, e
        assert [(z["path"], z["host"], z["comm"], z["service"]) for z in e[1]["data"]] == [
            ("/bad/P??P?q=1", "H??H", "C??C", "C??C")], e
        assert ok_data(http, "/api/services") == ["C??C", "S?(S", "shop"]
        assert ok_data(http, "/api/services/shop/operations") == ["N??N"]
        assert ok_data(http, "/api/operations", service="shop") == [
            {"name": "N??N", "spanKind": "server"}]
        assert ok_data(http, "/api/operations", service="shop", spanKind="server") == [
            {"name": "N??N", "spanKind": "server"}]

        def check_trace(t):
            check_trace_shape(t)
            by_op = {sp["operationName"]: sp for sp in t["spans"]}
            assert set(by_op) == {"N??N", "child", "GET /bad/P??P"}, by_op
            assert tags_of(by_op["N??N"])["K???"] == "V??V", by_op["N??N"]["tags"]
            procs = {k: p["serviceName"] for k, p in t["processes"].items()}
            assert procs[by_op["N??N"]["processID"]] == "shop", procs
            assert procs[by_op["child"]["processID"]] == "S?(S", procs
            # the exchange: operation from the path without its query, process from comm
            x = by_op["GET /bad/P??P"]
            assert procs[x["processID"]] == "C??C", procs
            assert tags_of(x)["url.path"] == "/bad/P??P", x["tags"]
            assert tags_of(x)["url.query"] == "q=1" and tags_of(x)["server.address"] == "H??H"
            assert t["processes"][x["processID"]]["tags"] == [
                {"key": "process.pid", "type": "int64", "value": 77},
                {"key": "process.executable.name", "type": "string", "value": "C??C"}], t
        traces = ok_data(http, "/api/traces", service="shop")
        assert len(traces) == 1, traces
        check_trace(traces[0])
        check_trace(ok_data(http, "/api/traces/" + tid.hex())[0])
        check_trace(ok_data(http, "/api/traces", traceID=tid.hex())[0])
        traces = ok_data(http, "/api/traces", service="shop", operation="N??N")
        assert [t["traceID"] for t in traces] == [tid.hex()], traces
        # a listed name selects what it was listed for: the stored names shown as it
        assert ok_data(http, "/api/services/S%3F%28S/operations") == ["child"]
        assert ok_data(http, "/api/services/C%3F%3FC/operations") == ["GET /bad/P??P"]
        assert ok_data(http, "/api/operations", service="C??C") == [
            {"name": "GET /bad/P??P", "spanKind": "server"}]
        for svc in ("S?(S", "C??C"):
            traces = ok_data(http, "/api/traces", service=svc)
            assert len(traces) == 1, (svc, traces)
            check_trace(traces[0])
        # ... and nothing else: '?' there is no wildcard for valid names of its length
        assert ok_data(http, "/api/services/S%3F%3FS/operations") == []
        assert ok_data(http, "/api/services/shop%3F/operations") == []
        assert ok_data(http, "/api/traces", service="s?op") == []
        # the page picks services from /api/services?kind=exchange: its routes select what a
        # listed '?' name was listed for too (they used to select nothing)
        assert ok_data(http, "/api/services", kind="exchange") == ["C??C"]
        for svc, n in (("C??C", 1), ("C?C?", 0), ("C??", 0)):
            e = get(http, "/api/tracevault/exchanges", lookback="1h", service=svc)
            assert e[0] == 200 and [z["comm"] for z in e[1]["data"]] == ["C??C"] * n, (svc, e)
            s = get(http, "/api/tracevault/summary", lookback="1h", service=svc)
            assert s[0] == 200 and s[1]["records"] == n, (svc, s)
            r = get(http, "/api/tracevault/rates", lookback="1h", service=svc)
            assert r[0] == 200 and sum(b["count"] for b in r[1]["buckets"]) == n, (svc, r)
        assert srv.stop() == 0, srv.log()[-2000:]


def test_names_shown_alike():
    """66 comms that differ only in a byte that is not UTF-8 ("C\\x80C" ... "C\\xc1C") are
    all listed as "C?C". Selecting it selects 63 of them: one filter takes 64 comms
    (TV_FILTER_MAX_ENTRIES), the name "C?C" itself one of them. The Jaeger search says so in
    errors (it used to cut silently); the page's routes take the same 63.
    A service path of any length the lists show is routed (it was 404 past 511 bytes)."""
    comms = [b"C" + bytes([b]) + b"C" for b in range(0x80, 0xC2)]
    with tvtest.Server(extra_args=["--http-addr", "127.0.0.1:0"]) as srv:
        http = tvtest.metrics_addr(srv.log())
        recs = []
        for i, comm in enumerate(comms):
            rec = tvtest.trace_record(T0 + i * 1000, pid=100 + i, path="/x", comm="C~C",
                                      role="server").SerializeToString()
            assert rec.count(b"C~C") == 1
            recs.append(rec.replace(b"C~C", comm))
        tvtest.GrpcClient(srv.addr).write_encoded(
            random.getrandbits(63) + 1,
            [(7, tvtest.encode_block_as(7, recs, min_ts=T0, max_ts=T0 + 1000 * (len(recs) - 1)))])
        assert ok_data(http, "/api/services", kind="exchange") == ["C?C"]
        status, body = get(http, "/api/traces", service="C?C", lookback="1h", limit=100)
        assert status == 200 and len(body["data"]) == 63, (status, len(body["data"]))
        msgs = [e["msg"] for e in body["errors"] or []]
        assert any("more comms are shown as service 'C?C' than one filter takes (64" in m
                   for m in msgs), msgs
        e = get(http, "/api/tracevault/exchanges", lookback="1h", service="C?C", limit=100)
        assert e[0] == 200 and len(e[1]["data"]) == 63, e[0]
        assert get(http, "/api/tracevault/summary", lookback="1h",
                   service="C?C")[1]["records"] == 63
        assert ok_data(http, "/api/services/%s/operations" % ("a" * 600)) == []
        assert srv.stop() == 0, srv.log()[-2000:]


def test_unknown_service():
    """unknown_service names the exchanges without a comm and those of a comm called so:
    selecting it selects both (it used to select only the first), on the page's routes and
    the Jaeger search alike."""
    with tvtest.Server(extra_args=["--http-addr", "127.0.0.1:0"]) as srv:
        http = tvtest.metrics_addr(srv.log())
        recs = [tvtest.trace_record(T0 + i * 1000, pid=200 + i, path="/u", comm=comm,
                                    role="server").SerializeToString()
                for i, comm in enumerate(("", "unknown_service", "other"))]
        tvtest.GrpcClient(srv.addr).write_encoded(
            random.getrandbits(63) + 1,
            [(8, tvtest.encode_block_as(8, recs, min_ts=T0, max_ts=T0 + 2000))])
        assert ok_data(http, "/api/services", kind="exchange") == ["other", "unknown_service"]
        e = get(http, "/api/tracevault/exchanges", lookback="1h", service="unknown_service")
        assert e[0] == 200 and sorted(z["pid"] for z in e[1]["data"]) == [200, 201], e
        traces = ok_data(http, "/api/traces", service="unknown_service", lookback="1h")
        assert len(traces) == 2, traces
        assert srv.stop() == 0, srv.log()[-2000:]


def put_exchanges(addr, extra=()):
    with tempfile.NamedTemporaryFile("w", suffix=".jsonl", delete=False) as f:
        for r in EXCHANGES:
            f.write(json.dumps(r) + "\n")
    try:
        tvtest.run(["put", "--server", addr, f.name] + list(extra), check=True)
    finally:
        os.unlink(f.name)


def send_spans(addr):
    """Trace B from service checkout over OTLP: a server span and its failing client child."""
    mods = otlp_modules(tempfile.mkdtemp(prefix="tv-otlp-py-"))
    otlp = Otlp(addr, mods)
    rng = random.Random(16)
    tid, root, child = rng.randbytes(16), rng.randbytes(8), rng.randbytes(8)
    r = otlp.span(tid, root, name="POST /pay", kind=2, start=T0 + 2_000_000, dur=2_000_000,
                  attrs={"http.route": "/pay", "http.response.status_code": 201,
                         "retry": False, "ratio": 0.25})
    c = otlp.span(tid, child, parent=root, name="SELECT", kind=3, start=T0 + 2_500_000,
                  dur=700_000)
    c.status.code = 2
    c.status.message = "timeout"
    resp = otlp.export(otlp.request({"checkout": [r, c]}))
    assert resp.partial_success.rejected_spans == 0
    return tid.hex(), root.hex(), child.hex()


def main():
    only = sys.argv[1:]
    with tvtest.Server(extra_args=["--http-addr", "127.0.0.1:0",
                                   "--service-name", "curl=frontend"]) as srv:
        http = tvtest.metrics_addr(srv.log())
        assert http, srv.log()
        put_exchanges(srv.addr)
        trace_b = send_spans(srv.addr)
        args = {"http": http, "trace_b": trace_b}
        cases = tvtest.cases(globals(), only)
        res = tvtest.Results(len(cases))
        for t in cases:
            names = t.__code__.co_varnames[:t.__code__.co_argcount]
            res.run(t, *[args[n] for n in names])
        if srv.stop() != 0:
            res.fail("tracevaultd exit status: " + srv.log()[-2000:])
    return res.exit_code()


if __name__ == "__main__":
    sys.exit(main())
