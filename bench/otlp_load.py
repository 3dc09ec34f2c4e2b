"""OTLP ingest load generator (issue 16): OTLP/gRPC Export calls of --spans spans each (default
512, the OpenTelemetry SDKs' default batch) sent to a tracevaultd with --concurrency calls in
flight, --batches calls in all (bounded by --max-seconds too). Prints spans/s (spans stored:
each reply means durable) and the Export latency p50/p99/max, as text or one JSON object
(--json). The requests are built before the clock starts, from the published OTLP schema
(tests/otlp, compiled with protoc into a temp dir), with unique ids and realistic span shapes
(HTTP server/client spans, 8 attributes). Run with /usr/bin/python3 (python3-grpcio,
python3-protobuf). Without --server it starts its own tracevaultd from --build on a temp data
dir (on /tmp unless --data-dir).

  /usr/bin/python3 bench/otlp_load.py --build build
  /usr/bin/python3 bench/otlp_load.py --server 127.0.0.1:7070 --batches 400 --concurrency 8
"""
import argparse
import json
import os
import random
import shutil
import subprocess
import sys
import tempfile
import threading
import time

HERE = os.path.dirname(os.path.abspath(__file__))
OTLP_DIR = os.path.join(HERE, "..", "tests", "otlp")
OTLP_PROTOS = ["opentelemetry/proto/common/v1/common.proto",
               "opentelemetry/proto/resource/v1/resource.proto",
               "opentelemetry/proto/trace/v1/trace.proto",
               "opentelemetry/proto/collector/trace/v1/trace_service.proto"]
EXPORT = "/opentelemetry.proto.collector.trace.v1.TraceService/Export"
START_TIMEOUT_S = 30


def usage_error(msg):
    print("otlp_load.py: %s" % msg, file=sys.stderr)
    sys.exit(2)


def modules(tmp):
    os.makedirs(tmp, exist_ok=True)
    subprocess.run(["protoc", "--python_out=" + tmp, "-I" + OTLP_DIR] + OTLP_PROTOS, check=True)
    sys.path.insert(0, tmp)
    from opentelemetry.proto.collector.trace.v1 import trace_service_pb2
    from opentelemetry.proto.trace.v1 import trace_pb2
    return trace_service_pb2, trace_pb2


def build_requests(svc, tr, batches, spans, seed):
    """batches serialized ExportTraceServiceRequests of `spans` spans: traces of 4 spans (a
    server span, an internal one, a client span, the callee's server span), 2 services."""
    rng = random.Random(seed)
    t0 = time.time_ns()
    out = []
    for b in range(batches):
        req = svc.ExportTraceServiceRequest()
        by_svc = {}
        for name in ("frontend", "backend"):
            rs = req.resource_spans.add()
            kv = rs.resource.attributes.add(key="service.name")
            kv.value.string_value = name
            ss = rs.scope_spans.add()
            ss.scope.name = "@opentelemetry/instrumentation-http"
            ss.scope.version = "0.301.0"
            by_svc[name] = ss
        tid, parent = None, b""
        for i in range(spans):
            if i % 4 == 0:
                tid, parent = rng.randbytes(16), b""
            sid = rng.randbytes(8)
            ss = by_svc["backend" if i % 4 == 3 else "frontend"]
            start = t0 + (b * spans + i) * 1000
            sp = ss.spans.add(trace_id=tid, span_id=sid, parent_span_id=parent,
                              name="GET /api/items/{id}" if i % 4 != 1 else "db.query",
                              kind=(2, 1, 3, 2)[i % 4], start_time_unix_nano=start,
                              end_time_unix_nano=start + rng.randrange(10**5, 10**8),
                              flags=0x301)
            for k, v in (("http.request.method", "GET"), ("url.path", "/api/items/%d" % i),
                         ("server.address", "10.0.0.7"), ("network.peer.address", "10.0.0.9"),
                         ("user_agent.original", "load/1.0")):
                sp.attributes.add(key=k).value.string_value = v
            for k, v in (("http.response.status_code", 200), ("server.port", 8080),
                         ("network.peer.port", 40000 + i % 20000)):
                sp.attributes.add(key=k).value.int_value = v
            parent = sid
        out.append(req.SerializeToString())
    return out


def start_server(build, data_dir):
    proc = subprocess.Popen([os.path.join(build, "tracevaultd"), "--data", data_dir,
                             "--listen", "127.0.0.1:0"], stdout=subprocess.PIPE,
                            stderr=subprocess.DEVNULL, text=True)
    line = proc.stdout.readline()
    if not line.startswith("listening on "):
        proc.kill()
        raise SystemExit("otlp_load.py: tracevaultd did not start: %r" % line)
    return proc, line.split()[-1]


def run(addr, reqs, concurrency, max_s):
    import grpc
    ch = grpc.insecure_channel(addr, options=[("grpc.max_send_message_length", 64 << 20)])
    export = ch.unary_unary(EXPORT, request_serializer=None, response_deserializer=None)
    lat, errors, lock = [], [], threading.Lock()
    nxt = [0]
    deadline = time.monotonic() + max_s

    def worker():
        while time.monotonic() < deadline:
            with lock:
                i = nxt[0]
                nxt[0] += 1
            if i >= len(reqs):
                return
            t = time.perf_counter()
            try:
                export(reqs[i], timeout=60)
            except grpc.RpcError as e:
                with lock:
                    errors.append("%s: %s" % (e.code(), e.details()))
                continue
            with lock:
                lat.append(time.perf_counter() - t)
    threads = [threading.Thread(target=worker) for _ in range(concurrency)]
    t0 = time.perf_counter()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    wall = time.perf_counter() - t0
    ch.close()
    return lat, errors, wall


def quantile(xs, q):
    xs = sorted(xs)
    return xs[min(len(xs) - 1, int(q * len(xs)))] if xs else 0.0


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--server", help="HOST:PORT of a running tracevaultd (default: start one)")
    ap.add_argument("--build", default=os.path.join(HERE, "..", "build"),
                    help="build dir with tracevaultd (when --server is not given)")
    ap.add_argument("--data-dir", help="parent of the temp data dir (default: /tmp)")
    ap.add_argument("--batches", type=int, default=200, help="Export calls (1 to 100000)")
    ap.add_argument("--spans", type=int, default=512, help="spans per call (1 to 10000)")
    ap.add_argument("--concurrency", type=int, default=4, help="calls in flight (1 to 256)")
    ap.add_argument("--max-seconds", type=float, default=120, help="stop sending after this")
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--json", action="store_true", help="one JSON object on stdout")
    a = ap.parse_args()
    if not 1 <= a.batches <= 100000:
        usage_error("invalid --batches: %d (1 to 100000)" % a.batches)
    if not 1 <= a.spans <= 10000:
        usage_error("invalid --spans: %d (1 to 10000)" % a.spans)
    if not 1 <= a.concurrency <= 256:
        usage_error("invalid --concurrency: %d (1 to 256)" % a.concurrency)
    if not 0 < a.max_seconds <= 3600:
        usage_error("invalid --max-seconds: %s (0 to 3600)" % a.max_seconds)
    tmp = tempfile.mkdtemp(prefix="otlp-load-", dir=a.data_dir)
    proc = None
    try:
        svc, tr = modules(os.path.join(tmp, "py"))
        reqs = build_requests(svc, tr, a.batches, a.spans, a.seed)
        addr = a.server
        if not addr:
            os.mkdir(os.path.join(tmp, "data"))
            proc, addr = start_server(a.build, os.path.join(tmp, "data"))
        lat, errors, wall = run(addr, reqs, a.concurrency, a.max_seconds)
    finally:
        if proc:
            proc.terminate()
            proc.wait(30)
        shutil.rmtree(tmp, ignore_errors=True)
    res = {"batches": len(lat), "spans_per_batch": a.spans, "concurrency": a.concurrency,
           "request_bytes": sum(len(r) for r in reqs) // len(reqs), "errors": len(errors),
           "seconds": round(wall, 3), "spans_per_s": round(len(lat) * a.spans / wall, 1),
           "export_p50_ms": round(quantile(lat, 0.5) * 1e3, 3),
           "export_p99_ms": round(quantile(lat, 0.99) * 1e3, 3),
           "export_max_ms": round(max(lat, default=0) * 1e3, 3)}
    if a.json:
        print(json.dumps(res))
    else:
        print("otlp ingest: %d Export calls of %d spans (%d B), %d in flight: %.0f spans/s; "
              "Export p50 %.2f ms, p99 %.2f ms, max %.2f ms; %d errors"
              % (res["batches"], a.spans, res["request_bytes"], a.concurrency,
                 res["spans_per_s"], res["export_p50_ms"], res["export_p99_ms"],
                 res["export_max_ms"], len(errors)))
    if errors:
        print("otlp_load.py: %d calls failed, first: %s" % (len(errors), errors[0]),
              file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
