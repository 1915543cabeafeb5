// Three services calling each other over real HTTP on loopback with W3C trace context,
// each with its own tracer provider (its own resource), exporting OTLP protobuf to Cairn with
// the real OpenTelemetry JS SDK. For tests/integration/test_compat.py.
//
//   node compat-app.mjs --url http://127.0.0.1:4318 --out FILE [--requests N]
//
// frontend  GET /checkout  (SERVER) -> CLIENT "GET /cart" -> cart SERVER "GET /cart"
//                                   -> CLIENT "POST /pay"  -> payments SERVER "POST /pay"
// Every third request fails in payments (status ERROR, 502), which frontend marks as error.
// Writes {traces: [{traceId, error, spans: [{spanId, parentSpanId, service, name, kind}]}]}.
import http from 'node:http';
import { writeFileSync } from 'node:fs';
import { parseArgs } from 'node:util';

import { context, propagation, SpanKind, SpanStatusCode, trace } from '@opentelemetry/api';
import { W3CTraceContextPropagator } from '@opentelemetry/core';
import { resourceFromAttributes } from '@opentelemetry/resources';
import { BasicTracerProvider, SimpleSpanProcessor } from '@opentelemetry/sdk-trace-base';
import { OTLPTraceExporter } from '@opentelemetry/exporter-trace-otlp-proto';

const args = parseArgs({
  options: { url: { type: 'string' }, out: { type: 'string' }, requests: { type: 'string', default: '6' } },
  strict: true,
}).values;
const base = args.url.replace(/\/+$/, '');
const propagator = new W3CTraceContextPropagator();
const exported = [];
const failures = [];

function provider(name) {
  const exporter = new OTLPTraceExporter({ url: `${base}/v1/traces` });
  const wrapped = {
    export(spans, cb) {
      exporter.export(spans, (r) => {
        if (r.code !== 0) failures.push(String(r.error));
        else exported.push(...spans);
        cb(r);
      });
    },
    shutdown: () => exporter.shutdown(),
    forceFlush: () => exporter.forceFlush(),
  };
  const p = new BasicTracerProvider({
    resource: resourceFromAttributes({ 'service.name': name, 'service.version': '1.0.0', 'deployment.environment': 'test' }),
    spanProcessors: [new SimpleSpanProcessor(wrapped)],
  });
  return p;
}

const providers = { frontend: provider('frontend'), cart: provider('cart'), payments: provider('payments') };
const tracers = Object.fromEntries(Object.entries(providers).map(([k, p]) => [k, p.getTracer(`shop/${k}`, '0.1.0')]));

const getter = { keys: (c) => Object.keys(c), get: (c, k) => c[k] };
const setter = { set: (c, k, v) => { c[k] = v; } };

function serve(svc, handler) {
  const server = http.createServer((req, res) => {
    const parent = propagator.extract(context.active(), req.headers, getter);
    const route = req.url.split('?')[0];
    const span = tracers[svc].startSpan(`${req.method} ${route}`, {
      kind: SpanKind.SERVER,
      attributes: { 'http.request.method': req.method, 'http.route': route, 'url.path': req.url },
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

function call(svc, ctx, method, port, path) {
  const span = tracers[svc].startSpan(`${method} ${path}`, {
    kind: SpanKind.CLIENT,
    attributes: { 'http.request.method': method, 'server.address': '127.0.0.1', 'server.port': port },
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
  await new Promise((r) => setTimeout(r, 5));
  return n % 3 === 0 ? 502 : 200;
});
const cart = await serve('cart', async (req, ctx, span) => {
  span.setAttribute('cart.items', 3);
  return 200;
});
const frontend = await serve('frontend', async (req, ctx, span) => {
  span.setAttribute('user.id', 'u-42');
  await call('frontend', ctx, 'GET', cart.address().port, '/cart');
  const s = await call('frontend', ctx, 'POST', payments.address().port, '/pay');
  return s >= 500 ? 502 : 200;
});

const traceIds = [];
for (let i = 0; i < Number(args.requests); i++) {
  await new Promise((resolve, reject) => {
    http.get({ host: '127.0.0.1', port: frontend.address().port, path: '/checkout' }, (res) => {
      res.resume();
      res.on('end', resolve);
    }).on('error', reject);
  });
}
for (const p of Object.values(providers)) {
  await p.forceFlush();
  await p.shutdown();
}
for (const s of [payments, cart, frontend]) s.close();

const traces = new Map();
for (const s of exported) {
  const id = s.spanContext().traceId;
  if (!traces.has(id)) traces.set(id, { traceId: id, error: false, spans: [] });
  const t = traces.get(id);
  t.spans.push({
    spanId: s.spanContext().spanId,
    parentSpanId: s.parentSpanContext ? s.parentSpanContext.spanId : '',
    service: s.resource.attributes['service.name'],
    name: s.name,
    kind: s.kind,
    status: s.status.code,
    startUs: Number((BigInt(s.startTime[0]) * 1000000000n + BigInt(s.startTime[1])) / 1000n),
    startNs: (BigInt(s.startTime[0]) * 1000000000n + BigInt(s.startTime[1])).toString(),
  });
  if (s.status.code === SpanStatusCode.ERROR) t.error = true;
}
writeFileSync(args.out, JSON.stringify({ failures, traces: [...traces.values()] }, null, 2) + '\n');
process.exit(failures.length ? 1 : 0);
