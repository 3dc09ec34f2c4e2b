"""The OpenTelemetry SDK for Node.js against tracevaultd while `tracevault capture` watches
(issue 16, OTLP ingest): service A (Node, @opentelemetry/sdk-node + instrumentation-http +
exporter-trace-otlp-grpc) calls service B (the same) over HTTP on 127.0.0.1 N times; both
export their spans to tracevaultd over OTLP/gRPC, and a capture of B's port writes the A->B
exchanges to the same tracevaultd. Checked:
  - every span the SDK exported (each process writes the spans its exporter reported as
    exported) is in the archive exactly once, and there is no other span;
  - every captured exchange carries the trace id and span id of the client span that sent it
    (the SDK injects traceparent with the client span's id), one client-side and one
    server-side exchange per request;
  - `tracevault trace ID` prints the span tree with each exchange under its client span.
npm packages (pinned) are installed into BUILD/npm by this test (npm's cache or the registry);
without node/npm, an install that fails, or without CAP_BPF: SKIP with the reason. Loads eBPF:
run under flock /work/capture-tests.lock (ctest: RESOURCE_LOCK ebpf_capture)."""
import collections
import json
import os
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import tvtest  # noqa: E402

N = 20  # A's jobs: each one GET to B
NPM_PACKAGES = ["@opentelemetry/sdk-node@0.301.0",
                "@opentelemetry/exporter-trace-otlp-grpc@0.301.0",
                "@opentelemetry/instrumentation-http@0.301.0",
                "@opentelemetry/sdk-trace@3.1.0",
                "@opentelemetry/api@1.10.0"]
APP = os.path.join(os.path.dirname(os.path.abspath(__file__)), "otel", "app.js")
SPAN_KIND_CLIENT = 3  # OTLP SpanKind (the JS API's CLIENT is 2: OTLP's minus one)


def npm_modules():
    """BUILD/npm/node_modules with NPM_PACKAGES installed (once per build dir), or SKIP."""
    return tvtest.npm_modules("npm", NPM_PACKAGES, "the OpenTelemetry SDK")


def node_env(modules, srv, **kw):
    env = dict(os.environ, NODE_PATH=modules, OTLP_URL="http://" + srv.addr,
               OTEL_METRICS_EXPORTER="none", OTEL_LOGS_EXPORTER="none")
    env.update({k: str(v) for k, v in kw.items()})
    return env


def read_jsonl(path):
    with open(path) as f:
        return [json.loads(x) for x in f if x.strip()]


def test_sdk_spans_and_captured_exchanges(srv, modules, tmp):
    why = tvtest.bpf_unavailable_reason()
    if why:
        raise tvtest.Unavailable(why)
    out_a, out_b = os.path.join(tmp, "a.jsonl"), os.path.join(tmp, "b.jsonl")
    b = subprocess.Popen(["node", APP], env=node_env(modules, srv, ROLE="b", SERVICE="svc-b",
                                                     OUT=out_b),
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    cap = None
    try:
        line = b.stdout.readline()
        assert line.startswith("listening "), (line, b.stderr.read() if b.poll() else "")
        port = int(line.split()[1])
        from_ns = time.time_ns()
        cap = tvtest.Capture(srv.addr, ["--port", str(port), "--block-age-ms", "200"]).start()
        a = subprocess.run(["node", APP], env=node_env(modules, srv, ROLE="a", SERVICE="svc-a",
                                                        OUT=out_a, N=N,
                                                        TARGET="http://127.0.0.1:%d" % port),
                           capture_output=True, text=True, timeout=120)
        assert a.returncode == 0, a.stderr
        time.sleep(0.5)  # the capture sees B's side of the last exchange end
    finally:
        if cap:
            rc, err = cap.stop()
        b.terminate()
        _, b_err = b.communicate(timeout=60)
    assert rc == 0, err
    assert b.returncode == 0, b_err
    exported = read_jsonl(out_a) + read_jsonl(out_b)
    # N jobs: A's job span and client span, B's server span and work span
    assert len(exported) == 4 * N, (len(exported), a.stderr, b_err)

    q = tvtest.run(["query", "--server", srv.addr, "--from", "0", "--kind", "span"],
                   check=True)
    spans = [json.loads(x) for x in q.stdout.splitlines()]
    counts = collections.Counter((s["trace_id"], s["span_id"]) for s in spans)
    want = collections.Counter((s["trace_id"], s["span_id"]) for s in exported)
    dup = {k: v for k, v in counts.items() if v > 1}
    assert not dup, "spans stored more than once: %s" % dup
    assert counts == want, "missing %s, extra %s" % (dict(want - counts), dict(counts - want))
    by_id = {s["span_id"]: s for s in spans}
    for e in exported:  # and stored as the SDK sent them
        s = by_id[e["span_id"]]
        assert s["span"]["name"] == e["name"] and s["span"]["service"] == e["service"], (s, e)
        assert s["span"]["parent_span_id"] == e["parent_span_id"], (s, e)
        assert s["span"]["kind"] == e["kind"] + 1, (s, e)

    q = tvtest.run(["query", "--server", srv.addr, "--from", str(from_ns), "--kind",
                    "exchange"], check=True)
    exchanges = [json.loads(x) for x in q.stdout.splitlines()]
    paths = collections.Counter((x["role"], x["path"]) for x in exchanges)
    assert paths == collections.Counter({(r, "/item/%d" % i): 1 for r in ("client", "server")
                                         for i in range(N)}), paths
    for x in exchanges:
        s = by_id.get(x["span_id"])
        assert s is not None, "exchange %s carries span_id %r of no exported span" % (
            x["path"], x["span_id"])
        assert s["trace_id"] == x["trace_id"], (s, x)
        assert s["span"]["kind"] == SPAN_KIND_CLIENT and s["span"]["service"] == "svc-a", s
        assert s["span"]["attributes"] and any(
            a.get("string_value", "").endswith(x["path"]) for a in s["span"]["attributes"]
            if a["key"] == "url.full"), (s, x)
    print("     %d spans exported, %d stored once each; %d exchanges, each under its client "
          "span" % (len(exported), len(spans), len(exchanges)))
    check_trace_tree(srv, spans, exchanges)


def check_trace_tree(srv, spans, exchanges):
    """`tracevault trace ID` of one job: the tree in order, the exchanges under the client span."""
    root = next(s for s in spans if s["span"]["name"] == "a.job" and
                any(a.get("int_value") == 3 for a in s["span"]["attributes"]))
    tid = root["trace_id"]
    p = tvtest.run(["trace", "--server", srv.addr, tid], check=True)
    lines = p.stdout.splitlines()
    text = "\n".join(lines)
    print("\n".join("     | " + x for x in lines))
    mine = {s["span_id"]: s for s in spans if s["trace_id"] == tid}
    assert len(mine) == 4, mine
    client = next(s for s in mine.values() if s["span"]["kind"] == SPAN_KIND_CLIENT)
    server = next(s for s in mine.values() if s["span"]["parent_span_id"] == client["span_id"])
    work = next(s for s in mine.values() if s["span"]["parent_span_id"] == server["span_id"])

    def at(needle):
        idx = [i for i, x in enumerate(lines) if needle in x]
        assert len(idx) == 1, "%r in %d lines of:\n%s" % (needle, len(idx), text)
        return idx[0], len(lines[idx[0]]) - len(lines[idx[0]].lstrip())
    r, c, sv, w = (at(s["span_id"]) for s in (root, client, server, work))
    assert r[0] < c[0] < sv[0] < w[0], text
    assert r[1] < c[1] < sv[1] < w[1], text  # each one deeper
    ex = [i for i, x in enumerate(lines) if "/item/3" in x and "GET" in x and
          ("client" in x or "server" in x)]
    assert len(ex) == 2, text
    for i in ex:  # exchanges right under the client span, before the server span's subtree
        assert c[0] < i and len(lines[i]) - len(lines[i].lstrip()) > c[1], text


def main():
    with tempfile.TemporaryDirectory() as tmp:
        res = tvtest.Results(1)
        try:
            modules = npm_modules()
        except tvtest.Unavailable as e:
            res.skipped.append(str(e))
            print("SKIP %s" % e)
            return res.exit_code()
        with tvtest.Server() as srv:
            res.run(test_sdk_spans_and_captured_exchanges, srv, modules, tmp)
            if srv.stop() != 0:
                res.fail("tracevaultd exit status: " + srv.log()[-2000:])
        return res.exit_code()


if __name__ == "__main__":
    sys.exit(main())
