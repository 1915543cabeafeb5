// Sends a small, realistic trace and its logs to an OTLP/HTTP endpoint with the real
// OpenTelemetry JS SDK (2.x), then writes a JSON description of exactly what was exported,
// so tests/integration/test_telemetry.py can compare what Cairn serves field by field.
//
//   node export.mjs --url http://127.0.0.1:4318 --protocol proto|json [--gzip] --out FILE
//
// Exit 0 when every export reported success (and no partial success), 1 otherwise, 2 on a
// usage error. The description holds the records as the exporters were handed them, in the
// OTLP JSON shape Cairn's read API answers with: hex IDs, times as decimal nanosecond
// strings, span kinds as OTLP numbers (API kind + 1), intValue as a decimal string.
import { randomBytes } from 'node:crypto';
import { writeFileSync } from 'node:fs';
import { parseArgs } from 'node:util';

import {
  context, createTraceState, diag, DiagLogLevel, SpanKind, SpanStatusCode, trace, TraceFlags,
} from '@opentelemetry/api';
import { SeverityNumber } from '@opentelemetry/api-logs';
import { resourceFromAttributes } from '@opentelemetry/resources';
import { ATTR_SERVICE_NAME, ATTR_SERVICE_VERSION } from '@opentelemetry/semantic-conventions';
import { BasicTracerProvider, BatchSpanProcessor } from '@opentelemetry/sdk-trace-base';
import { BatchLogRecordProcessor, LoggerProvider } from '@opentelemetry/sdk-logs';
import { OTLPTraceExporter as ProtoTraceExporter } from '@opentelemetry/exporter-trace-otlp-proto';
import { OTLPTraceExporter as JsonTraceExporter } from '@opentelemetry/exporter-trace-otlp-http';
import { OTLPLogExporter as ProtoLogExporter } from '@opentelemetry/exporter-logs-otlp-proto';
import { OTLPLogExporter as JsonLogExporter } from '@opentelemetry/exporter-logs-otlp-http';

function usage(msg) {
  process.stderr.write(`export.mjs: ${msg}\n` +
    'usage: node export.mjs --url BASE --protocol proto|json [--gzip] --out FILE\n');
  process.exit(2);
}

let args;
try {
  args = parseArgs({
    options: {
      url: { type: 'string' },
      protocol: { type: 'string' },
      gzip: { type: 'boolean', default: false },
      out: { type: 'string' },
    },
    strict: true,
  }).values;
} catch (e) {
  usage(e.message);
}
if (!args.url || !args.out) usage('--url and --out are required');
if (args.protocol !== 'proto' && args.protocol !== 'json') {
  usage('--protocol must be proto or json');
}
const base = args.url.replace(/\/+$/, '');

// Anything the SDK or the exporters complain about (a partial success is a diag warning)
// fails the run: the server must take every record.
const complaints = [];
diag.setLogger({
  error: (...a) => complaints.push(['error', a.map(String).join(' ')]),
  warn: (...a) => complaints.push(['warn', a.map(String).join(' ')]),
  info: () => {},
  debug: () => {},
  verbose: () => {},
}, DiagLogLevel.WARN);

// ---- exporters, wrapped to record what each export carried and how it ended ----------------

const exportResults = [];

class Recording {
  constructor(signal, inner) {
    this.signal = signal;
    this.inner = inner;
    this.sent = [];
  }

  export(items, resultCallback) {
    this.inner.export(items, (result) => {
      exportResults.push({
        signal: this.signal,
        records: items.length,
        code: result.code,
        error: result.error ? String(result.error.message || result.error) : null,
      });
      if (result.code === 0) this.sent.push(...items);
      resultCallback(result);
    });
  }

  forceFlush() {
    return this.inner.forceFlush ? this.inner.forceFlush() : Promise.resolve();
  }

  shutdown() {
    return this.inner.shutdown();
  }
}

const common = {
  compression: args.gzip ? 'gzip' : 'none',
  timeoutMillis: 15000,
  headers: { 'X-Cairn-Test': 'export.mjs' },
};
const TraceExporter = args.protocol === 'proto' ? ProtoTraceExporter : JsonTraceExporter;
const LogExporter = args.protocol === 'proto' ? ProtoLogExporter : JsonLogExporter;
const spanExporter = new Recording('traces',
  new TraceExporter({ ...common, url: `${base}/v1/traces` }));
const logExporter = new Recording('logs',
  new LogExporter({ ...common, url: `${base}/v1/logs` }));

// ---- providers --------------------------------------------------------------------------

const resource = resourceFromAttributes({
  [ATTR_SERVICE_NAME]: 'checkout',
  [ATTR_SERVICE_VERSION]: '2.7.1',
  'deployment.environment': 'staging',
  'service.namespace': 'shop',
  'service.instance.id': 'checkout-7d9f8b-x2k4q',
  'host.name': 'node-17.internal',
  'k8s.pod.uid': '1b4e28ba-2fa1-11d2-883f-0016d3cca427',
  'process.pid': 4242,
  'cloud.region': 'eu-west-3',
});

// Big delays: nothing is exported until forceFlush, which then sends one request per signal.
const batch = { scheduledDelayMillis: 60000, exportTimeoutMillis: 20000, maxQueueSize: 4096 };
const tracerProvider = new BasicTracerProvider({
  resource,
  spanProcessors: [new BatchSpanProcessor(spanExporter, batch)],
});
const loggerProvider = new LoggerProvider({
  resource,
  processors: [new BatchLogRecordProcessor({ exporter: logExporter, ...batch })],
});

const tracer = tracerProvider.getTracer('cairn-test/checkout-http', '1.4.2');
const logger = loggerProvider.getLogger('cairn-test/checkout-logs', '0.9.0', {
  attributes: { 'logger.component': 'payments', 'logger.level.min': 5 },
});

// Explicit times with full nanosecond digits (HrTime passes through the SDK untouched), so
// the server must keep every digit; a few records take the SDK's clock instead.
const t0 = Math.floor(Date.now() / 1000) - 5;
const at = (msOffset, nanos) => [t0 + Math.floor(msOffset / 1000), (msOffset % 1000) * 1e6 + nanos];

// A stack short enough to stay below the server's attribute value limit (4k by default).
Error.stackTraceLimit = 4;

// ---- trace B: a queue consumer continuing a remote producer's trace (traceState, remote
// parent); trace A's root links to it ------------------------------------------------------

const remoteParent = {
  traceId: randomBytes(16).toString('hex'),
  spanId: randomBytes(8).toString('hex'),
  traceFlags: TraceFlags.SAMPLED,
  isRemote: true,
  traceState: createTraceState('vendor=abc123,cairn=t1'),
};
const ctxB = trace.setSpanContext(context.active(), remoteParent);
const consumer = tracer.startSpan('refunds process', {
  kind: SpanKind.CONSUMER,
  startTime: at(0, 111117),
  attributes: {
    'messaging.system': 'kafka',
    'messaging.destination.name': 'refunds',
    'messaging.batch.message_count': 3,
    'messaging.kafka.offset': -1,
  },
}, ctxB);
const consumerCtx = trace.setSpan(ctxB, consumer);
consumer.addEvent('message received', { 'messaging.message.id': 'm-991', attempt: 2 },
  at(3, 5));
logger.emit({
  timestamp: at(4, 987654),
  observedTimestamp: at(4, 999001),
  severityNumber: SeverityNumber.WARN,
  severityText: 'WARN',
  body: 'refund batch contains a duplicate message',
  attributes: { 'messaging.message.id': 'm-991', duplicate: true },
  exception: Object.assign(new Error('duplicate key m-991'), { name: 'DuplicateError' }),
  context: consumerCtx,
});
consumer.setStatus({ code: SpanStatusCode.OK });
consumer.end(at(9, 1));

// ---- trace A: SERVER root, CLIENT child (ERROR), INTERNAL grandchild, PRODUCER child ------

const root = tracer.startSpan('GET /api/checkout/{cartId}', {
  kind: SpanKind.SERVER,
  startTime: at(20, 456789),
  attributes: {
    'http.request.method': 'GET',
    'http.route': '/api/checkout/{cartId}',
    'url.path': '/api/checkout/c-7731',
    'http.response.status_code': 502,
    'server.port': 8443,
    'client.sample_rate': 0.25,
    'http.request.header.accept': ['application/json', 'text/plain;q=0.5'],
    'cart.item_ids': [1001, 1002, 1003, -7],
    'cart.weights': [0.5, 1.25, 3],
    'cart.flags': [true, false, true],
    'feature.new_checkout': true,
    'user.id': 'u-42',
    'unicode.note': 'crème brûlée ✓ 日本',
    'large.int': 9007199254740991,
    'empty.string': '',
  },
  links: [{
    context: consumer.spanContext(),
    attributes: { 'link.reason': 'refund-correlation', 'link.weight': 0.75, 'link.order': 1 },
  }],
}, context.active());
const rootCtx = trace.setSpan(context.active(), root);
root.addEvent('request.headers.parsed', { 'header.count': 14, 'header.bytes': 812.5 },
  at(21, 250000));
logger.emit({
  timestamp: at(22, 42),
  severityNumber: SeverityNumber.INFO,
  severityText: 'INFO',
  body: 'checkout started for cart c-7731',
  attributes: { 'cart.id': 'c-7731', 'cart.items': 4, 'cart.total': 129.99 },
  context: rootCtx,
});

const client = tracer.startSpan('POST /v1/payments', {
  kind: SpanKind.CLIENT,
  startTime: at(25, 1),
  attributes: {
    'http.request.method': 'POST',
    'server.address': 'payments.internal',
    'server.port': 443,
    'http.response.status_code': 502,
    'http.request.resend_count': 1,
    'network.protocol.version': '1.1',
  },
}, rootCtx);
const clientCtx = trace.setSpan(rootCtx, client);
client.addEvent('retry', { 'retry.attempt': 1, 'retry.backoff_ms': 25.5, 'retry.idempotent': true },
  at(40, 17));

const internal = tracer.startSpan('sign payment request', {
  kind: SpanKind.INTERNAL,
  // The SDK's own clock for this one (not a multiple of anything).
  attributes: { 'crypto.algorithm': 'ed25519', 'crypto.key_ids': ['k1', 'k2'] },
}, clientCtx);
const internalCtx = trace.setSpan(clientCtx, internal);
logger.emit({
  severityNumber: SeverityNumber.DEBUG,
  severityText: 'DEBUG',
  eventName: 'payment.signed',
  body: 'signature computed',
  attributes: {
    'payload.digest': new Uint8Array([0xde, 0xad, 0xbe, 0xef, 0x00, 0x01, 0xff]),
    'key.ids': ['k1', 'k2'],
  },
  context: internalCtx,
});
internal.recordException('key cache miss');
internal.end();

const gatewayError = new Error('payment gateway answered 502 Bad Gateway');
gatewayError.name = 'GatewayError';
client.recordException(gatewayError, at(60, 3));
logger.emit({
  timestamp: at(61, 5),
  severityNumber: SeverityNumber.ERROR,
  severityText: 'ERROR',
  body: {
    message: 'payment failed',
    gateway: { status: 502, host: 'payments.internal', retryable: true },
    attempts: [1, 2],
    latency_ms: 35.25,
  },
  attributes: {
    'error.type': 'GatewayError',
    'http.response.status_code': 502,
    'request.context': { region: 'eu-west-3', tries: 2 },
  },
  context: clientCtx,
});
client.setStatus({ code: SpanStatusCode.ERROR, message: 'payment gateway answered 502' });
client.end(at(62, 999999));

const producer = tracer.startSpan('order.failed publish', {
  kind: SpanKind.PRODUCER,
  startTime: at(63, 0),
  attributes: { 'messaging.system': 'kafka', 'messaging.destination.name': 'orders' },
}, rootCtx);
producer.end(at(64, 500));

root.addEvent('response.sent', {}, at(70, 1));
root.setStatus({ code: SpanStatusCode.ERROR, message: 'upstream payment failure' });
root.end(at(70, 900000));

// ---- export ------------------------------------------------------------------------------

let failed = false;
try {
  await tracerProvider.forceFlush();
  await loggerProvider.forceFlush();
  await tracerProvider.shutdown();
  await loggerProvider.shutdown();
} catch (e) {
  process.stderr.write(`export.mjs: flush/shutdown failed: ${e && e.stack ? e.stack : e}\n`);
  failed = true;
}

// ---- the description ---------------------------------------------------------------------

const nanos = (hr) => (BigInt(hr[0]) * 1000000000n + BigInt(hr[1])).toString();

function anyValue(v) {
  if (typeof v === 'string') return { stringValue: v };
  if (typeof v === 'boolean') return { boolValue: v };
  if (typeof v === 'number') {
    return Number.isInteger(v) ? { intValue: String(v) } : { doubleValue: v };
  }
  if (v instanceof Uint8Array) return { bytesValue: Buffer.from(v).toString('base64') };
  if (Array.isArray(v)) return { arrayValue: { values: v.map(anyValue) } };
  if (v && typeof v === 'object') {
    const values = Object.keys(v).map((k) => ({ key: k, value: anyValue(v[k]) }));
    return { kvlistValue: { values } };
  }
  return {};
}

const attrs = (a) => Object.keys(a || {}).map((k) => ({ key: k, value: anyValue(a[k]) }));

function describeResource(r) {
  return {
    serviceName: String(r.attributes[ATTR_SERVICE_NAME]),
    attributes: attrs(r.attributes),
    droppedAttributesCount: 0,
  };
}

function describeSpan(s) {
  const sc = s.spanContext();
  const parentRemote = s.parentSpanContext ? !!s.parentSpanContext.isRemote : false;
  return {
    traceId: sc.traceId,
    spanId: sc.spanId,
    parentSpanId: s.parentSpanContext ? s.parentSpanContext.spanId : '',
    traceState: sc.traceState ? sc.traceState.serialize() : '',
    name: s.name,
    kind: s.kind + 1,
    startTimeUnixNano: nanos(s.startTime),
    endTimeUnixNano: nanos(s.endTime),
    attributes: attrs(s.attributes),
    droppedAttributesCount: s.droppedAttributesCount,
    events: s.events.map((e) => ({
      timeUnixNano: nanos(e.time),
      name: e.name,
      attributes: attrs(e.attributes),
      droppedAttributesCount: e.droppedAttributesCount || 0,
    })),
    droppedEventsCount: s.droppedEventsCount,
    links: s.links.map((l) => ({
      traceId: l.context.traceId,
      spanId: l.context.spanId,
      traceState: l.context.traceState ? l.context.traceState.serialize() : '',
      attributes: attrs(l.attributes),
      droppedAttributesCount: l.droppedAttributesCount || 0,
      flags: (l.context.traceFlags & 0xff) | 0x100 | (l.context.isRemote ? 0x200 : 0),
    })),
    droppedLinksCount: s.droppedLinksCount,
    status: { code: s.status.code, message: s.status.message || '' },
    flags: (sc.traceFlags & 0xff) | 0x100 | (parentRemote ? 0x200 : 0),
    resource: describeResource(s.resource),
    scope: {
      name: s.instrumentationScope.name,
      version: s.instrumentationScope.version || '',
      attributes: attrs(s.instrumentationScope.attributes),
    },
  };
}

function describeLog(l) {
  return {
    timeUnixNano: nanos(l.hrTime),
    observedTimeUnixNano: nanos(l.hrTimeObserved),
    severityNumber: l.severityNumber || 0,
    severityText: l.severityText || '',
    body: anyValue(l.body),
    attributes: attrs(l.attributes),
    droppedAttributesCount: l.droppedAttributesCount,
    flags: l.spanContext ? l.spanContext.traceFlags : 0,
    traceId: l.spanContext ? l.spanContext.traceId : '',
    spanId: l.spanContext ? l.spanContext.spanId : '',
    eventName: l.eventName || '',
    resource: describeResource(l.resource),
    scope: {
      name: l.instrumentationScope.name,
      version: l.instrumentationScope.version || '',
      attributes: attrs(l.instrumentationScope.attributes),
    },
  };
}

const traces = new Map();
const traceOf = (id) => {
  if (!traces.has(id)) traces.set(id, { traceId: id, spans: [], logs: [] });
  return traces.get(id);
};
for (const s of spanExporter.sent) traceOf(s.spanContext().traceId).spans.push(describeSpan(s));
for (const l of logExporter.sent) {
  if (l.spanContext) traceOf(l.spanContext.traceId).logs.push(describeLog(l));
}

const expected = { spans: 5, logs: 4 };
const problems = [];
if (spanExporter.sent.length !== expected.spans) {
  problems.push(`exported ${spanExporter.sent.length} spans, made ${expected.spans}`);
}
if (logExporter.sent.length !== expected.logs) {
  problems.push(`exported ${logExporter.sent.length} log records, made ${expected.logs}`);
}
for (const r of exportResults) {
  if (r.code !== 0) problems.push(`${r.signal} export of ${r.records} failed: ${r.error}`);
}
for (const [level, msg] of complaints) problems.push(`sdk ${level}: ${msg}`);

const description = {
  protocol: args.protocol,
  gzip: args.gzip,
  url: base,
  exports: exportResults,
  problems,
  resource: describeResource(resource),
  traces: [...traces.values()],
};
writeFileSync(args.out, JSON.stringify(description, null, 2) + '\n');
if (failed || problems.length) {
  process.stderr.write(`export.mjs: ${problems.join('; ') || 'flush failed'}\n`);
  process.exit(1);
}
