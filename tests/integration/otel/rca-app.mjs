// Four services calling each other over real HTTP on loopback with W3C trace context, each
// with its own tracer and logger providers (its own resource), exporting traces and logs as
// OTLP protobuf to Cairn with the real OpenTelemetry JS SDK. For tests/integration/test_rca.py.
//
//   node rca-app.mjs --url http://127.0.0.1:4318 --out FILE
//                    [--baseline N] [--requests N] [--inject none|leaf-error|slow-middle|new-version]
//                    [--slow-ms MS]
//
// frontend GET /checkout -> checkout POST /checkout -> inventory GET /stock
//                                                   -> payments POST /pay (only when in stock)
//
// After 3 warm-up requests, --baseline requests run healthy, then --requests more with the fault injected:
//   leaf-error   inventory fails every other request ("stock lookup failed: ...")
//   slow-middle  checkout spends --slow-ms of its own time before calling anyone
//   new-version  payments is redeployed as service.version 2.0.0 and fails every other
//                request with an error never seen before ("schema mismatch: ...")
// In both phases payments declines every fifth request ("card declined"): the background
// errors the analysis must look past. Every service logs within its spans (trace- and
// span-linked); inventory also logs a warning outside any trace just before it fails.
// Writes {failures, phases: {t0, mid, end} (ns since the epoch, as strings), traces: [...],
// logs: [...]}.
import { writeFileSync } from 'node:fs';
import { parseArgs } from 'node:util';

import { ROOT_CONTEXT } from '@opentelemetry/api';
import { SeverityNumber } from '@opentelemetry/api-logs';
import { resourceFromAttributes } from '@opentelemetry/resources';
import { BasicTracerProvider, BatchSpanProcessor } from '@opentelemetry/sdk-trace-base';
import { BatchLogRecordProcessor, LoggerProvider } from '@opentelemetry/sdk-logs';
import { OTLPTraceExporter } from '@opentelemetry/exporter-trace-otlp-proto';
import { OTLPLogExporter } from '@opentelemetry/exporter-logs-otlp-proto';

import { byTrace, call as callWith, get, hrNs, recording as recordingTo, serve as serveWith } from './shop.mjs';

const args = parseArgs({
  options: {
    url: { type: 'string' },
    out: { type: 'string' },
    baseline: { type: 'string', default: '20' },
    requests: { type: 'string', default: '20' },
    inject: { type: 'string', default: 'none' },
    'slow-ms': { type: 'string', default: '150' },
  },
  strict: true,
}).values;
if (!['none', 'leaf-error', 'slow-middle', 'new-version'].includes(args.inject)) {
  console.error(`unknown --inject ${args.inject}`);
  process.exit(2);
}
const base = args.url.replace(/\/+$/, '');
const failures = [];
const exportedSpans = [];
const exportedLogs = [];

const recording = (exporter, sink) => recordingTo(exporter, sink, failures);

const batch = { scheduledDelayMillis: 200, maxQueueSize: 16384, maxExportBatchSize: 512 };

// One "deployment" of a service: its resource, tracer and logger.
function deploy(name, version) {
  const resource = resourceFromAttributes({
    'service.name': name,
    'service.version': version,
    'deployment.environment': 'test',
  });
  const tp = new BasicTracerProvider({
    resource,
    spanProcessors: [new BatchSpanProcessor(
      recording(new OTLPTraceExporter({ url: `${base}/v1/traces` }), exportedSpans), batch)],
  });
  const lp = new LoggerProvider({
    resource,
    processors: [new BatchLogRecordProcessor({
      exporter: recording(new OTLPLogExporter({ url: `${base}/v1/logs` }), exportedLogs),
      ...batch,
    })],
  });
  return {
    name, version, tp, lp,
    tracer: tp.getTracer(`shop/${name}`, version),
    logger: lp.getLogger(`shop/${name}`, version),
  };
}

const deployments = {
  frontend: deploy('frontend', '1.0.0'),
  checkout: deploy('checkout', '1.0.0'),
  inventory: deploy('inventory', '1.0.0'),
  payments: deploy('payments', '1.0.0'),
};
const paymentsV2 = deploy('payments', '2.0.0');
const current = { ...deployments };

const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

function log(svc, ctx, severity, body, attributes = {}) {
  current[svc].logger.emit({
    severityNumber: severity,
    severityText: { [SeverityNumber.INFO]: 'INFO', [SeverityNumber.WARN]: 'WARN', [SeverityNumber.ERROR]: 'ERROR' }[severity],
    body,
    attributes,
    context: ctx,
  });
}

// Servers answer under the caller's context only (nothing ambient).
const serve = (svc, handler) => serveWith(() => current[svc].tracer, handler, { root: () => ROOT_CONTEXT });
const call = (svc, ctx, method, port, path, query) => callWith(current[svc].tracer, ctx, method, port, path, { query });

// The fault in force and the request's index within its phase (as a query parameter, so
// that every service decides the same way).
let inject = 'none';
const param = (req, k) => new URL(req.url, 'http://x').searchParams.get(k);

const inventory = await serve('inventory', async (req, ctx) => {
  const i = Number(param(req, 'i'));
  await sleep(3);
  if (inject === 'leaf-error' && i % 2 === 0) {
    log('inventory', ROOT_CONTEXT, SeverityNumber.WARN, 'db pool exhausted: 0 of 8 connections free');
    log('inventory', ctx, SeverityNumber.ERROR, `stock lookup failed for sku-${i}: connection refused (db-inventory:5432)`,
      { 'sku': `sku-${i}` });
    return [503, 'stock lookup failed: connection refused'];
  }
  log('inventory', ctx, SeverityNumber.INFO, `sku-${i} in stock`);
  return [200];
});
const payments = await serve('payments', async (req, ctx) => {
  const i = Number(param(req, 'i'));
  await sleep(3);
  if (inject === 'new-version' && i % 2 === 0) {
    log('payments', ctx, SeverityNumber.ERROR, `schema mismatch: field currency is required by the v2 API (order ${i})`);
    return [500, 'schema mismatch: field currency is required'];
  }
  if (i % 5 === 4) {
    log('payments', ctx, SeverityNumber.WARN, `card declined for order ${i}`);
    return [502, 'card declined'];
  }
  log('payments', ctx, SeverityNumber.INFO, `charged order ${i}`);
  return [200];
});
const checkout = await serve('checkout', async (req, ctx) => {
  const i = param(req, 'i');
  if (inject === 'slow-middle') {
    log('checkout', ctx, SeverityNumber.WARN, 'pricing cache cold: recomputing prices');
    await sleep(Number(args['slow-ms']));
  }
  const s = await call('checkout', ctx, 'GET', inventory.address().port, '/stock', `?i=${i}`);
  if (s >= 500) return [502, 'inventory unavailable'];
  const p = await call('checkout', ctx, 'POST', payments.address().port, '/pay', `?i=${i}`);
  if (p >= 500) return [502, 'payment failed'];
  log('checkout', ctx, SeverityNumber.INFO, `order ${i} placed`);
  return [200];
});
const frontend = await serve('frontend', async (req, ctx) => {
  const i = param(req, 'i');
  const s = await call('frontend', ctx, 'POST', checkout.address().port, '/checkout', `?i=${i}`);
  return s >= 500 ? [502, 'checkout failed'] : [200];
});

const nowNs = () => (BigInt(Date.now()) * 1000000n).toString();
async function phase(n) {
  for (let i = 0; i < n; i++) await get(frontend.address().port, `/checkout?i=${i}`);
}

await phase(3); // warm-up (connections, JIT), before the baseline starts
await sleep(100);
const t0 = nowNs();
await phase(Number(args.baseline));
await sleep(100);
const mid = nowNs();
await sleep(100);
inject = args.inject;
if (inject === 'new-version') current.payments = paymentsV2; // the redeploy
await phase(Number(args.requests));
await sleep(50);
const end = nowNs();

for (const d of [...Object.values(deployments), paymentsV2]) {
  await d.tp.forceFlush();
  await d.lp.forceFlush();
}
for (const d of [...Object.values(deployments), paymentsV2]) {
  await d.tp.shutdown();
  await d.lp.shutdown();
}
for (const s of [inventory, payments, checkout, frontend]) s.close();

const hr = (t) => hrNs(t).toString();
const traces = byTrace(exportedSpans, (s, t) => {
  if (!s.parentSpanContext) t.start = hr(s.startTime);
  return {
    version: s.resource.attributes['service.version'],
    status: s.status.code,
    message: s.status.message || '',
    startNs: hr(s.startTime),
  };
});
for (const t of traces) {
  t.phase = BigInt(t.start) < BigInt(t0) ? 'warm-up' : BigInt(t.start) < BigInt(mid) ? 'baseline' : 'window';
}
const logs = exportedLogs.map((l) => ({
  traceId: l.spanContext ? l.spanContext.traceId : '',
  spanId: l.spanContext ? l.spanContext.spanId : '',
  service: l.resource.attributes['service.name'],
  body: l.body,
}));
writeFileSync(args.out, JSON.stringify({ failures, phases: { t0, mid, end }, traces, logs }, null, 2) + '\n');
process.exit(failures.length ? 1 : 0);
