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
import { writeFileSync } from 'node:fs';
import { parseArgs } from 'node:util';

import { resourceFromAttributes } from '@opentelemetry/resources';
import { BasicTracerProvider, SimpleSpanProcessor } from '@opentelemetry/sdk-trace-base';
import { OTLPTraceExporter } from '@opentelemetry/exporter-trace-otlp-proto';

import { byTrace, call, get, hrNs, recording, serve as serveWith } from './shop.mjs';

const args = parseArgs({
  options: { url: { type: 'string' }, out: { type: 'string' }, requests: { type: 'string', default: '6' } },
  strict: true,
}).values;
const base = args.url.replace(/\/+$/, '');
const exported = [];
const failures = [];

function provider(name) {
  return new BasicTracerProvider({
    resource: resourceFromAttributes({ 'service.name': name, 'service.version': '1.0.0', 'deployment.environment': 'test' }),
    spanProcessors: [new SimpleSpanProcessor(recording(new OTLPTraceExporter({ url: `${base}/v1/traces` }), exported, failures))],
  });
}

const providers = { frontend: provider('frontend'), cart: provider('cart'), payments: provider('payments') };
const tracers = Object.fromEntries(Object.entries(providers).map(([k, p]) => [k, p.getTracer(`shop/${k}`, '0.1.0')]));
const serve = (svc, handler) => serveWith(() => tracers[svc], handler, { attributes: (req) => ({ 'url.path': req.url }) });

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
  await call(tracers.frontend, ctx, 'GET', cart.address().port, '/cart');
  const s = await call(tracers.frontend, ctx, 'POST', payments.address().port, '/pay');
  return s >= 500 ? 502 : 200;
});

for (let i = 0; i < Number(args.requests); i++) await get(frontend.address().port, '/checkout');
for (const p of Object.values(providers)) {
  await p.forceFlush();
  await p.shutdown();
}
for (const s of [payments, cart, frontend]) s.close();

const traces = byTrace(exported, (s) => ({
  kind: s.kind,
  status: s.status.code,
  startUs: Number(hrNs(s.startTime) / 1000n),
  startNs: hrNs(s.startTime).toString(),
}));
writeFileSync(args.out, JSON.stringify({ failures, traces }, null, 2) + '\n');
process.exit(failures.length ? 1 : 0);
