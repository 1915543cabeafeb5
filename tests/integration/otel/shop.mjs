// What the test apps (compat-app.mjs, console-app.mjs, rca-app.mjs) share: services that
// answer HTTP on loopback inside a SERVER span, CLIENT spans around their calls with W3C
// trace context injected, exporters that record what Cairn accepted, and the JSON the tests
// read back. Everything goes through the real OpenTelemetry JS SDK.
import http from 'node:http';

import { context, SpanKind, SpanStatusCode, trace } from '@opentelemetry/api';
import { W3CTraceContextPropagator } from '@opentelemetry/core';

const propagator = new W3CTraceContextPropagator();
const getter = { keys: (c) => Object.keys(c), get: (c, k) => c[k] };
const setter = { set: (c, k, v) => { c[k] = v; } };

// An exporter that passes items on and keeps those Cairn accepted in sink (failed exports'
// errors go to failures).
export function recording(exporter, sink, failures) {
  return {
    export(items, cb) {
      exporter.export(items, (r) => {
        if (r.code !== 0) failures.push(String(r.error));
        else sink.push(...items);
        cb(r);
      });
    },
    shutdown: () => exporter.shutdown(),
    forceFlush: () => (exporter.forceFlush ? exporter.forceFlush() : Promise.resolve()),
  };
}

// A server whose requests run in a SERVER span of tracerOf() (asked per request, so a
// redeploy can swap it) under the caller's trace context (from parentOf(headers)).
// handler(req, ctx, span) returns a status or [status, error message]; 5xx marks the span
// as an error. attributes(req, route) adds to the span's attributes. Resolves to the server.
export function serve(tracerOf, handler, { attributes = () => ({}), root = () => context.active() } = {}) {
  const server = http.createServer((req, res) => {
    const parent = propagator.extract(root(), req.headers, getter);
    const route = req.url.split('?')[0];
    const span = tracerOf().startSpan(`${req.method} ${route}`, {
      kind: SpanKind.SERVER,
      attributes: { 'http.request.method': req.method, 'http.route': route, ...attributes(req, route) },
    }, parent);
    const ctx = trace.setSpan(parent, span);
    context.with(ctx, async () => {
      let status = 200, message;
      try {
        const r = await handler(req, ctx, span);
        [status, message] = Array.isArray(r) ? r : [r, undefined];
      } catch (e) {
        status = 500;
        message = String(e);
      }
      span.setAttribute('http.response.status_code', status);
      if (status >= 500) span.setStatus({ code: SpanStatusCode.ERROR, message: message || `answered ${status}` });
      span.end();
      res.writeHead(status);
      res.end(String(status));
    });
  });
  return new Promise((resolve) => server.listen(0, '127.0.0.1', () => resolve(server)));
}

// A CLIENT span around method port path (query appended to the request, not the span name),
// its context injected into the request. Resolves to the status.
export function call(tracer, ctx, method, port, path, { query = '', attributes = {} } = {}) {
  const span = tracer.startSpan(`${method} ${path}`, {
    kind: SpanKind.CLIENT,
    attributes: { 'http.request.method': method, 'server.address': '127.0.0.1', 'server.port': port, ...attributes },
  }, ctx);
  const headers = {};
  propagator.inject(trace.setSpan(ctx, span), headers, setter);
  return new Promise((resolve, reject) => {
    const req = http.request({ host: '127.0.0.1', port, path: path + query, method, headers }, (res) => {
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

// A plain GET (the load, outside any trace); resolves when the answer was read.
export function get(port, path) {
  return new Promise((resolve, reject) => {
    http.get({ host: '127.0.0.1', port, path }, (res) => {
      res.resume();
      res.on('end', resolve);
    }).on('error', reject);
  });
}

export const hrNs = (t) => BigInt(t[0]) * 1000000000n + BigInt(t[1]);

// Exported spans grouped by trace: [{traceId, error, spans: [fields(s) + ids, service]}].
export function byTrace(spans, fields = () => ({})) {
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
      ...fields(s, t),
    });
    if (s.status.code === SpanStatusCode.ERROR) t.error = true;
  }
  return [...traces.values()];
}
