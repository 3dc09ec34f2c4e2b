// OTLP ingest from the real OpenTelemetry SDK for Node.js, for bench/bench_otlp.py: N spans
// (HTTP server/client spans with a handful of attributes, service.name in the resource) made
// by the SDK's tracer and exported to tracevaultd (OTLP_URL) over OTLP/gRPC by the
// BatchSpanProcessor in batches of 512 (maxExportBatchSize 512, a queue that holds all N so
// none is dropped). Spans are made in slices of 512 with a turn of the event loop between
// them, as a service's requests would be, so exports run while spans are made.
// Prints "key value" lines: spans_exported, spans_failed, seconds (first span to forceFlush
// done), spans_per_s, client_cpu_s (the SDK process's CPU over the same time). Exits 1 when any span was not exported (an Export failed or was
// partially rejected: the exporter reports both as failures) or forceFlush timed out.
// Modules come from NODE_PATH (the build dir's npm install, tests/integration/
// test_capture_otel_node.py's pinned versions).
'use strict';

const { OTLPTraceExporter } = require('@opentelemetry/exporter-trace-otlp-grpc');
const { BatchSpanProcessor, TracerProvider } = require('@opentelemetry/sdk-trace');
const { resourceFromAttributes } = require('@opentelemetry/resources');
const api = require('@opentelemetry/api');

const N = Number(process.env.N);
const BATCH = 512;
if (!Number.isInteger(N) || N < 1 || N > 10000000) {
  console.error(`otlp_node.js: invalid N: '${process.env.N}' (1 to 10000000)`);
  process.exit(2);
}

let exported = 0;
let failed = 0;
// The OTLP exporter, counting the spans of every export by its result
class CountingExporter {
  constructor(inner) { this.inner = inner; }
  export(spans, done) {
    this.inner.export(spans, (result) => {
      if (result.code === 0) exported += spans.length;
      else {
        failed += spans.length;
        console.error(`otlp_node.js: export of ${spans.length} spans failed: ${result.error}`);
      }
      done(result);
    });
  }
  shutdown() { return this.inner.shutdown(); }
  forceFlush() { return this.inner.forceFlush ? this.inner.forceFlush() : Promise.resolve(); }
}

const provider = new TracerProvider({
  resource: resourceFromAttributes({ 'service.name': 'bench-node' }),
  spanProcessors: [new BatchSpanProcessor({
    exporter: new CountingExporter(new OTLPTraceExporter({ url: process.env.OTLP_URL })),
    maxExportBatchSize: BATCH,
    maxQueueSize: N,
    scheduledDelayMillis: 200,
    exportTimeoutMillis: 30000,
  })],
});
const tracer = provider.getTracer('@opentelemetry/instrumentation-http', '0.301.0');

// One request's pair of spans: the server span and the client span it made downstream
function request(i) {
  tracer.startActiveSpan('GET /api/items/{id}', { kind: api.SpanKind.SERVER, attributes: {
    'http.request.method': 'GET', 'url.path': `/api/items/${i}`, 'server.address': '10.0.0.7',
    'server.port': 8080, 'network.peer.address': '10.0.0.9', 'user_agent.original': 'load/1.0',
  } }, (server) => {
    const client = tracer.startSpan('GET', { kind: api.SpanKind.CLIENT, attributes: {
      'http.request.method': 'GET', 'url.full': `http://10.0.0.8:9090/stock/${i}`,
      'server.address': '10.0.0.8', 'server.port': 9090, 'http.response.status_code': 200,
    } });
    client.end();
    server.setAttribute('http.response.status_code', 200);
    server.end();
  });
}

(async () => {
  const t0 = process.hrtime.bigint();
  const c0 = process.cpuUsage();
  let made = 0;
  while (made < N) {
    for (let k = 0; k < BATCH && made < N; k += 2, made += 2) {
      if (N - made === 1) {
        tracer.startSpan('GET /health', { kind: api.SpanKind.SERVER }).end();
        made -= 1; // one span, not two
      } else request(made);
    }
    await new Promise((resolve) => setImmediate(resolve));
  }
  await provider.forceFlush();
  const s = Number(process.hrtime.bigint() - t0) / 1e9;
  const c = process.cpuUsage(c0);
  console.log(`spans_exported ${exported}`);
  console.log(`spans_failed ${failed}`);
  console.log(`seconds ${s.toFixed(3)}`);
  console.log(`spans_per_s ${(exported / s).toFixed(0)}`);
  console.log(`client_cpu_s ${((c.user + c.system) / 1e6).toFixed(3)}`);
  await provider.shutdown();
  if (exported !== N) {
    console.error(`otlp_node.js: ${exported} of ${N} spans exported (${failed} failed)`);
    process.exit(1);
  }
})().catch((e) => { console.error(`otlp_node.js: ${e}`); process.exit(1); });
