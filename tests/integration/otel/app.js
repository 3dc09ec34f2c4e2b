// A small service instrumented with the OpenTelemetry SDK for Node.js (@opentelemetry/sdk-node,
// instrumentation-http, exporter-trace-otlp-grpc), for tests/integration/test_capture_otel_node.py.
// ROLE=b: an HTTP server on 127.0.0.1 (an ephemeral port, printed as "listening PORT") whose
// handler does a little work in a span of its own. ROLE=a: N jobs, each a span around an HTTP
// GET to TARGET/item/I (the SDK injects traceparent), then exit.
// Both export to tracevaultd (OTLP_URL) and, on exit, write to OUT one JSON line per span the
// exporter reported as exported: the test's list of what must be in the archive.
// Modules come from NODE_PATH (the build dir's npm install); http is required only after the
// SDK started, so the instrumentation hooks it.
'use strict';

const fs = require('fs');
const { NodeSDK } = require('@opentelemetry/sdk-node');
const { OTLPTraceExporter } = require('@opentelemetry/exporter-trace-otlp-grpc');
const { HttpInstrumentation } = require('@opentelemetry/instrumentation-http');
const { BatchSpanProcessor } = require('@opentelemetry/sdk-trace');
const api = require('@opentelemetry/api');

const role = process.env.ROLE;
const service = process.env.SERVICE;
const exported = [];

// The OTLP exporter, remembering the spans of every export that succeeded.
class RecordingExporter {
  constructor(inner) { this.inner = inner; }
  export(spans, done) {
    this.inner.export(spans, (result) => {
      if (result.code === 0) {
        for (const s of spans) {
          const ctx = s.spanContext();
          const parent = s.parentSpanContext ? s.parentSpanContext.spanId : (s.parentSpanId || '');
          exported.push({ trace_id: ctx.traceId, span_id: ctx.spanId, parent_span_id: parent,
                          name: s.name, kind: s.kind, service });
        }
      } else {
        console.error(`${service}: export of ${spans.length} spans failed: ${result.error}`);
      }
      done(result);
    });
  }
  shutdown() { return this.inner.shutdown(); }
  forceFlush() { return this.inner.forceFlush ? this.inner.forceFlush() : Promise.resolve(); }
}

const sdk = new NodeSDK({
  serviceName: service,
  autoDetectResources: false,
  instrumentations: [new HttpInstrumentation()],
  // sdk-trace 3.x takes the exporter in the options (2.x took it as the first argument)
  spanProcessors: [new BatchSpanProcessor({
    exporter: new RecordingExporter(new OTLPTraceExporter({ url: process.env.OTLP_URL })),
    scheduledDelayMillis: 200,
  })],
});
sdk.start();
const http = require('http');
const tracer = api.trace.getTracer('tracevault-test');

async function finish(code) {
  await sdk.shutdown(); // flushes the batch processor: every span is exported or failed
  fs.writeFileSync(process.env.OUT, exported.map((s) => JSON.stringify(s)).join('\n') + '\n');
  process.exit(code);
}

function get(url) {
  return new Promise((resolve, reject) => {
    http.get(url, (res) => {
      let body = '';
      res.on('data', (d) => { body += d; });
      res.on('end', () => resolve([res.statusCode, body]));
    }).on('error', reject);
  });
}

if (role === 'b') {
  const server = http.createServer((req, res) => {
    tracer.startActiveSpan('b.work', (span) => {
      span.setAttribute('item.path', req.url);
      span.end();
      res.end('ok ' + req.url);
    });
  });
  server.listen(0, '127.0.0.1', () => console.log('listening ' + server.address().port));
  process.on('SIGTERM', () => server.close(() => finish(0)));
} else {
  (async () => {
    const n = Number(process.env.N);
    for (let i = 0; i < n; i++) {
      await tracer.startActiveSpan('a.job', async (span) => {
        span.setAttribute('job.index', i);
        const [status] = await get(`${process.env.TARGET}/item/${i}`);
        if (status !== 200) throw new Error(`GET /item/${i}: ${status}`);
        span.end();
      });
    }
    await finish(0);
  })().catch((e) => { console.error(e); finish(1); });
}
