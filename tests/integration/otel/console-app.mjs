// Three services calling each other over real HTTP on loopback with W3C trace context, each
// with its own tracer and logger providers, exporting traces and logs as OTLP protobuf to
// Cairn with the real OpenTelemetry JS SDK. For tests/integration/test_console.py.
//
//   node console-app.mjs --url http://127.0.0.1:4318 --out FILE [--requests N]
//
// frontend GET /checkout (SERVER) -> CLIENT GET /cart  -> cart SERVER GET /cart
//                                 -> CLIENT POST /pay  -> payments SERVER POST /pay
// Every third request fails in payments (status ERROR, 502, an exception event and an
// ERROR log "card processor refused: ..."); every service logs within its spans (trace- and
// span-linked, with code.filepath / code.lineno), and cart logs one record outside any trace.
// Writes {failures, traces: [{traceId, error, spans: [...]}], logs: [{traceId, body}]}.
import { writeFileSync } from 'node:fs';
import { parseArgs } from 'node:util';

import { context } from '@opentelemetry/api';
import { SeverityNumber } from '@opentelemetry/api-logs';
import { resourceFromAttributes } from '@opentelemetry/resources';
import { BasicTracerProvider, BatchSpanProcessor } from '@opentelemetry/sdk-trace-base';
import { BatchLogRecordProcessor, LoggerProvider } from '@opentelemetry/sdk-logs';
import { OTLPTraceExporter } from '@opentelemetry/exporter-trace-otlp-proto';
import { OTLPLogExporter } from '@opentelemetry/exporter-logs-otlp-proto';

import { byTrace, call as callWith, get, recording as recordingTo, serve as serveWith } from './shop.mjs';

const args = parseArgs({
  options: { url: { type: 'string' }, out: { type: 'string' }, requests: { type: 'string', default: '12' } },
  strict: true,
}).values;
const base = args.url.replace(/\/+$/, '');
const failures = [];
const spans = [];
const logs = [];
const recording = (exporter, sink) => recordingTo(exporter, sink, failures);

function service(name) {
  const resource = resourceFromAttributes({
    'service.name': name, 'service.version': '1.4.2', 'deployment.environment': 'test',
    'vcs.repository.name': 'shop', 'vcs.revision': 'abc123',
  });
  const tp = new BasicTracerProvider({
    resource,
    spanProcessors: [new BatchSpanProcessor(recording(new OTLPTraceExporter({ url: `${base}/v1/traces` }), spans),
      { scheduledDelayMillis: 50 })],
  });
  const lp = new LoggerProvider({
    resource,
    processors: [new BatchLogRecordProcessor({
      exporter: recording(new OTLPLogExporter({ url: `${base}/v1/logs` }), logs), scheduledDelayMillis: 50,
    })],
  });
  return { tp, lp, tracer: tp.getTracer(`shop/${name}`, '0.1.0'), logger: lp.getLogger(`shop/${name}`, '0.1.0') };
}

const svcs = { frontend: service('frontend'), cart: service('cart'), payments: service('payments') };

function log(svc, ctx, severity, body, line, attrs = {}) {
  svcs[svc].logger.emit({
    context: ctx,
    severityNumber: severity,
    severityText: SeverityNumber[severity],
    body,
    attributes: { 'code.filepath': `src/${svc}/handler.js`, 'code.lineno': line, ...attrs },
  });
}

const serve = (svc, handler) => serveWith(() => svcs[svc].tracer, handler, {
  attributes: (req) => ({
    'url.path': req.url, 'code.filepath': `src/${svc}/server.js`, 'code.lineno': 40, 'code.function': 'handle',
  }),
});
const call = (svc, ctx, method, port, path, peer) =>
  callWith(svcs[svc].tracer, ctx, method, port, path, { attributes: { 'peer.service': peer } });

let n = 0;
const payments = await serve('payments', async (req, ctx, span) => {
  n++;
  span.addEvent('charge.attempt', { 'charge.amount': 12.5, 'charge.currency': 'EUR' });
  await new Promise((r) => setTimeout(r, 4 + (n % 5) * 3));
  if (n % 3 === 0) {
    const err = new Error(`card processor refused: code 51 (attempt ${n})`);
    span.recordException(err);
    log('payments', ctx, SeverityNumber.ERROR, err.message, 88, { 'payment.attempt': n });
    return 502;
  }
  log('payments', ctx, SeverityNumber.INFO, `charged 12.50 EUR (attempt ${n})`, 71);
  return 200;
});
const cart = await serve('cart', async (req, ctx, span) => {
  span.setAttribute('cart.items', 3);
  await new Promise((r) => setTimeout(r, 2));
  log('cart', ctx, SeverityNumber.DEBUG, 'cart loaded with 3 items', 23);
  return 200;
});
const frontend = await serve('frontend', async (req, ctx, span) => {
  span.setAttribute('user.id', 'u-42');
  log('frontend', ctx, SeverityNumber.INFO, 'checkout started for u-42', 12);
  await call('frontend', ctx, 'GET', cart.address().port, '/cart', 'cart');
  const s = await call('frontend', ctx, 'POST', payments.address().port, '/pay', 'payments');
  if (s >= 500) log('frontend', ctx, SeverityNumber.WARN, `payment failed with ${s}, checkout aborted`, 19);
  return s >= 500 ? 502 : 200;
});
log('cart', context.active(), SeverityNumber.INFO, 'cart service ready', 5);

for (let i = 0; i < Number(args.requests); i++) await get(frontend.address().port, '/checkout');
for (const s of Object.values(svcs)) {
  await s.tp.forceFlush();
  await s.lp.forceFlush();
  await s.tp.shutdown();
  await s.lp.shutdown();
}
for (const s of [payments, cart, frontend]) s.close();

const out = {
  failures,
  traces: byTrace(spans, (s) => ({ kind: s.kind })),
  logs: logs.map((l) => ({ traceId: l.spanContext ? l.spanContext.traceId : '', body: l.body, service: l.resource.attributes['service.name'] })),
};
writeFileSync(args.out, JSON.stringify(out, null, 2) + '\n');
process.exit(failures.length ? 1 : 0);
