// Telemetry of one demo service with the real OpenTelemetry JS SDK: a tracer and a logger per
// deployment (service.name + service.version), exported as OTLP protobuf over HTTP to
// OTEL_EXPORTER_OTLP_ENDPOINT (Cairn's OTLP port); HTTP server and client spans with W3C
// trace context; log records linked to the active span and carrying the code location of
// their caller (code.filepath / code.lineno / code.function) so that code links work.
//
// The same patterns as tests/integration/otel/rca-app.mjs, shaped for a long-running
// process: batches every 500 ms, export failures counted and reported, never fatal.
import http from 'node:http';
import { fileURLToPath } from 'node:url';

import { context, ROOT_CONTEXT, SpanKind, SpanStatusCode, trace } from '@opentelemetry/api';
import { SeverityNumber } from '@opentelemetry/api-logs';
import { W3CTraceContextPropagator } from '@opentelemetry/core';
import { resourceFromAttributes } from '@opentelemetry/resources';
import { BasicTracerProvider, BatchSpanProcessor } from '@opentelemetry/sdk-trace-base';
import { BatchLogRecordProcessor, LoggerProvider } from '@opentelemetry/sdk-logs';
import { OTLPTraceExporter } from '@opentelemetry/exporter-trace-otlp-proto';
import { OTLPLogExporter } from '@opentelemetry/exporter-logs-otlp-proto';

export { SeverityNumber, SpanKind, SpanStatusCode };

const propagator = new W3CTraceContextPropagator();
const getter = { keys: (c) => Object.keys(c), get: (c, k) => c[k] };
const setter = { set: (c, k, v) => { c[k] = v; } };
const batch = { scheduledDelayMillis: 500, maxQueueSize: 8192, maxExportBatchSize: 512 };

// The code location of the frame `skip` levels above the caller of callsite(), from V8's
// structured stack (the same information a logging library's caller field carries).
export function callsite(skip = 0) {
  const saved = Error.prepareStackTrace;
  Error.prepareStackTrace = (_, frames) => frames;
  const holder = {};
  Error.captureStackTrace(holder, callsite);
  const frames = holder.stack;
  Error.prepareStackTrace = saved;
  return frameAttrs(frames[skip]);
}

function frameAttrs(f) {
  if (!f) return {};
  let file = f.getFileName() || '';
  if (file.startsWith('file://')) file = fileURLToPath(file);
  const attrs = { 'code.filepath': file, 'code.lineno': f.getLineNumber() || 0 };
  const fn = f.getFunctionName();
  if (fn) attrs['code.function'] = fn;
  return attrs;
}

// The code location where an Error was created: the top frame of its stack.
export function errorSite(err) {
  const m = /\n\s+at (?:async )?(?:([^\s(]+) \()?(?:file:\/\/)?([^\s()]+):(\d+):\d+\)?/.exec(String(err.stack));
  if (!m) return {};
  return { 'code.filepath': m[2], 'code.lineno': Number(m[3]), ...(m[1] ? { 'code.function': m[1] } : {}) };
}

// Exporter wrapper that counts failures instead of throwing them away silently.
function counted(exporter, stats) {
  return {
    export(items, cb) {
      exporter.export(items, (r) => {
        if (r.code !== 0) {
          stats.failures++;
          stats.lastError = String(r.error);
        } else {
          stats.exported += items.length;
        }
        cb(r);
      });
    },
    shutdown: () => exporter.shutdown(),
    forceFlush: () => (exporter.forceFlush ? exporter.forceFlush() : Promise.resolve()),
  };
}

// One deployment of a service: its resource, tracer and logger.
export function deploy(name, version, endpoint, stats) {
  const base = endpoint.replace(/\/+$/, '');
  const resource = resourceFromAttributes({
    'service.name': name,
    'service.version': version,
    'service.namespace': 'shop',
    'deployment.environment': 'demo',
    'vcs.repository.name': 'cairn',
  });
  const tp = new BasicTracerProvider({
    resource,
    spanProcessors: [new BatchSpanProcessor(
      counted(new OTLPTraceExporter({ url: `${base}/v1/traces` }), stats), batch)],
  });
  const lp = new LoggerProvider({
    resource,
    processors: [new BatchLogRecordProcessor({
      exporter: counted(new OTLPLogExporter({ url: `${base}/v1/logs` }), stats), ...batch,
    })],
  });
  return {
    name, version, tp, lp,
    tracer: tp.getTracer(`shop/${name}`, version),
    logger: lp.getLogger(`shop/${name}`, version),
    async shutdown() {
      await Promise.allSettled([tp.forceFlush(), lp.forceFlush()]);
      await Promise.allSettled([tp.shutdown(), lp.shutdown()]);
    },
  };
}

const SEVERITY_TEXT = {
  [SeverityNumber.DEBUG]: 'DEBUG', [SeverityNumber.INFO]: 'INFO',
  [SeverityNumber.WARN]: 'WARN', [SeverityNumber.ERROR]: 'ERROR',
};

// Emits a log record linked to ctx's span, with the code location given or, by default,
// that of log()'s caller.
export function emitLog(d, ctx, severity, body, attributes = {}, site = callsite(2)) {
  d.logger.emit({
    severityNumber: severity,
    severityText: SEVERITY_TEXT[severity],
    body,
    attributes: { ...site, ...attributes },
    context: ctx,
  });
}

// An HTTP server whose handler(req, ctx, span) resolves to {status, body, error}; every
// request gets a SERVER span (the parent comes from the traceparent header). current() gives
// the deployment in force (a "bad version" swaps it). listen: {fd} or {port, host}.
export function serve(current, listen, handler) {
  const server = http.createServer((req, res) => {
    const parent = propagator.extract(ROOT_CONTEXT, req.headers, getter);
    const url = new URL(req.url, 'http://x');
    const d = current();
    const span = d.tracer.startSpan(`${req.method} ${url.pathname}`, {
      kind: SpanKind.SERVER,
      attributes: {
        'http.request.method': req.method, 'http.route': url.pathname, 'url.path': url.pathname,
        'server.port': server.address().port, 'network.peer.address': req.socket.remoteAddress,
      },
    }, parent);
    const ctx = trace.setSpan(parent, span);
    const chunks = [];
    req.on('data', (c) => chunks.push(c));
    req.on('end', () => context.with(ctx, async () => {
      let out;
      try {
        out = await handler({ req, url, body: Buffer.concat(chunks).toString(), ctx, span, deployment: d });
      } catch (e) {
        span.recordException(e);
        out = { status: 500, body: { error: e.message }, error: e.message };
      }
      span.setAttribute('http.response.status_code', out.status);
      if (out.status >= 500) span.setStatus({ code: SpanStatusCode.ERROR, message: out.error || `HTTP ${out.status}` });
      span.end();
      const text = JSON.stringify(out.body ?? {}) + '\n';
      res.writeHead(out.status, { 'content-type': 'application/json', 'content-length': Buffer.byteLength(text) });
      res.end(text);
    }));
  });
  server.keepAliveTimeout = 30000;
  return new Promise((resolve, reject) => {
    server.once('error', reject);
    server.listen(listen, () => resolve(server));
  });
}

const agent = new http.Agent({ keepAlive: true, maxSockets: 64 });

// Calls another service with a CLIENT span and the W3C traceparent header. target:
// {host, port, hostHeader, peer}; resolves to {status, body} (body parsed when JSON). A
// connection failure or a timeout resolves to status 503 with the reason.
export function call(d, ctx, target, method, path, body, timeoutMs = 5000) {
  const span = d.tracer.startSpan(`${method} ${path.split('?')[0]}`, {
    kind: SpanKind.CLIENT,
    attributes: {
      'http.request.method': method, 'server.address': target.host, 'server.port': target.port,
      'peer.service': target.peer, 'url.full': `http://${target.hostHeader || target.host}${path}`,
    },
  }, ctx);
  const headers = { host: target.hostHeader || `${target.host}:${target.port}` };
  propagator.inject(trace.setSpan(ctx, span), headers, setter);
  const payload = body === undefined ? null : JSON.stringify(body);
  if (payload) {
    headers['content-type'] = 'application/json';
    headers['content-length'] = Buffer.byteLength(payload);
  }
  return new Promise((resolve) => {
    const done = (status, parsed, reason) => {
      span.setAttribute('http.response.status_code', status);
      if (status >= 500) span.setStatus({ code: SpanStatusCode.ERROR, message: reason || `HTTP ${status}` });
      span.end();
      resolve({ status, body: parsed, reason });
    };
    const req = http.request({ host: target.host, port: target.port, path, method, headers, agent, timeout: timeoutMs }, (res) => {
      const chunks = [];
      res.on('data', (c) => chunks.push(c));
      res.on('end', () => {
        let parsed = null;
        try { parsed = JSON.parse(Buffer.concat(chunks).toString()); } catch { /* not JSON */ }
        done(res.statusCode, parsed, parsed && parsed.error);
      });
    });
    req.on('timeout', () => req.destroy(new Error(`no answer from ${target.peer} within ${timeoutMs} ms`)));
    req.on('error', (e) => done(503, null, e.message));
    if (payload) req.write(payload);
    req.end();
  });
}
