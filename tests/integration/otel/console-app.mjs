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
import http from 'node:http';
import { writeFileSync } from 'node:fs';
import { parseArgs } from 'node:util';

import { context, SpanKind, SpanStatusCode, trace } from '@opentelemetry/api';
import { SeverityNumber } from '@opentelemetry/api-logs';
import { W3CTraceContextPropagator } from '@opentelemetry/core';
import { resourceFromAttributes } from '@opentelemetry/resources';
import { BasicTracerProvider, BatchSpanProcessor } from '@opentelemetry/sdk-trace-base';
import { BatchLogRecordProcessor, LoggerProvider } from '@opentelemetry/sdk-logs';
import { OTLPTraceExporter } from '@opentelemetry/exporter-trace-otlp-proto';
import { OTLPLogExporter } from '@opentelemetry/exporter-logs-otlp-proto';

const args = parseArgs({
  options: { url: { type: 'string' }, out: { type: 'string' }, requests: { type: 'string', default: '12' } },
  strict: true,
}).values;
const base = args.url.replace(/\/+$/, '');
const propagator = new W3CTraceContextPropagator();
const failures = [];
const spans = [];
const logs = [];

function recording(exporter, sink) {
  return {
    export(items, cb) {
      exporter.export(items, (r) => {
        if (r.code !== 0) failures.push(String(r.error));
        else sink.push(...items);
        cb(r);
      });
    },
    shutdown: () => exporter.shutdown(),
    forceFlush: () => exporter.forceFlush(),
  };
}

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

const getter = { keys: (c) => Object.keys(c), get: (c, k) => c[k] };
const setter = { set: (c, k, v) => { c[k] = v; } };

function serve(svc, handler) {
  const server = http.createServer((req, res) => {
    const parent = propagator.extract(context.active(), req.headers, getter);
    const route = req.url.split('?')[0];
    const span = svcs[svc].tracer.startSpan(`${req.method} ${route}`, {
      kind: SpanKind.SERVER,
      attributes: {
        'http.request.method': req.method, 'http.route': route, 'url.path': req.url,
        'code.filepath': `src/${svc}/server.js`, 'code.lineno': 40, 'code.function': 'handle',
      },
    }, parent);
    const ctx = trace.setSpan(parent, span);
    context.with(ctx, async () => {
      let status = 200;
      try {
        status = await handler(req, ctx, span);
      } catch (e) {
        status = 500;
      }
      span.setAttribute('http.response.status_code', status);
      if (status >= 500) span.setStatus({ code: SpanStatusCode.ERROR, message: `answered ${status}` });
      span.end();
      res.writeHead(status);
      res.end(String(status));
    });
  });
  return new Promise((resolve) => server.listen(0, '127.0.0.1', () => resolve(server)));
}

function call(svc, ctx, method, port, path, peer) {
  const span = svcs[svc].tracer.startSpan(`${method} ${path}`, {
    kind: SpanKind.CLIENT,
    attributes: { 'http.request.method': method, 'server.address': '127.0.0.1', 'server.port': port, 'peer.service': peer },
  }, ctx);
  const headers = {};
  propagator.inject(trace.setSpan(ctx, span), headers, setter);
  return new Promise((resolve, reject) => {
    const req = http.request({ host: '127.0.0.1', port, path, method, headers }, (res) => {
      res.resume();
      res.on('end', () => {
        span.setAttribute('http.response.status_code', res.statusCode);
        if (res.statusCode >= 500) span.setStatus({ code: SpanStatusCode.ERROR });
        span.end();
        resolve(res.statusCode);
      });
    });
    req.on('error', (e) => { span.end(); reject(e); });
    req.end();
  });
}

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

for (let i = 0; i < Number(args.requests); i++) {
  await new Promise((resolve, reject) => {
    http.get({ host: '127.0.0.1', port: frontend.address().port, path: '/checkout' }, (res) => {
      res.resume();
      res.on('end', resolve);
    }).on('error', reject);
  });
}
for (const s of Object.values(svcs)) {
  await s.tp.forceFlush();
  await s.lp.forceFlush();
  await s.tp.shutdown();
  await s.lp.shutdown();
}
for (const s of [payments, cart, frontend]) s.close();

const traces = new Map();
for (const s of spans) {
  const id = s.spanContext().traceId;
  if (!traces.has(id)) traces.set(id, { traceId: id, error: false, spans: [] });
  const t = traces.get(id);
  t.spans.push({
    spanId: s.spanContext().spanId,
    parentSpanId: s.parentSpanContext ? s.parentSpanContext.spanId : '',
    service: s.resource.attributes['service.name'],
    name: s.name,
    kind: s.kind,
  });
  if (s.status.code === SpanStatusCode.ERROR) t.error = true;
}
const out = {
  failures,
  traces: [...traces.values()],
  logs: logs.map((l) => ({ traceId: l.spanContext ? l.spanContext.traceId : '', body: l.body, service: l.resource.attributes['service.name'] })),
};
writeFileSync(args.out, JSON.stringify(out, null, 2) + '\n');
process.exit(failures.length ? 1 : 0);
