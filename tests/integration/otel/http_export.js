// The OpenTelemetry SDK for Node.js exporting over OTLP/HTTP protobuf
// (@opentelemetry/exporter-trace-otlp-proto) to OTLP_URL (tracevaultd's /v1/traces), for
// tests/integration/test_otlp_http.py, its bodies gzip-compressed when COMPRESSION is 'gzip'
// ('none': plain). Makes N spans of service SERVICE (roots with one child
// each), flushed by a BatchSpanProcessor in batches of 64, then writes to OUT one JSON line
// per span the exporter reported as exported: the test's list of what must be in the
// archive, exactly once. Modules come from NODE_PATH (the build dir's npm install).
'use strict';

const fs = require('fs');
const { OTLPTraceExporter } = require('@opentelemetry/exporter-trace-otlp-proto');
// sdk-trace 3.x names the provider TracerProvider (2.x: BasicTracerProvider)
const { TracerProvider, BatchSpanProcessor } = require('@opentelemetry/sdk-trace');
const { resourceFromAttributes } = require('@opentelemetry/resources');
const api = require('@opentelemetry/api');

const service = process.env.SERVICE;
const n = Number(process.env.N);
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
                          name: s.name, kind: s.kind });
        }
      } else {
        console.error(`export of ${spans.length} spans failed: ${result.error}`);
      }
      done(result);
    });
  }
  shutdown() { return this.inner.shutdown(); }
  forceFlush() { return this.inner.forceFlush ? this.inner.forceFlush() : Promise.resolve(); }
}

const provider = new TracerProvider({
  resource: resourceFromAttributes({ 'service.name': service }),
  spanProcessors: [new BatchSpanProcessor({
    exporter: new RecordingExporter(new OTLPTraceExporter({
      url: process.env.OTLP_URL, compression: process.env.COMPRESSION })),
    maxExportBatchSize: 64,
    scheduledDelayMillis: 100,
  })],
});
const tracer = provider.getTracer('tracevault-http-test');

async function main() {
  for (let i = 0; i < n; i += 2) {
    const root = tracer.startSpan(`job ${i}`, { kind: api.SpanKind.SERVER });
    const ctx = api.trace.setSpan(api.context.active(), root);
    const child = tracer.startSpan(`step ${i}`, { kind: api.SpanKind.CLIENT }, ctx);
    child.setAttribute('i', i);
    child.end();
    root.end();
    if (i % 32 === 0)
      await new Promise((r) => setTimeout(r, 5)); // let batches go out while spans are made
  }
  await provider.shutdown(); // flushes the batch processor: every span exported or failed
  fs.writeFileSync(process.env.OUT, exported.map((s) => JSON.stringify(s)).join('\n') + '\n');
}

main().catch((e) => { console.error(e); process.exit(1); });
