// One demo service process: `node service.mjs --service NAME` with the environment that
// `cairn up --demo` sets (lib/env.mjs, docs/demo.md). It serves the routes of
// services/NAME.mjs with a SERVER span per request, calls its peers through the gateway (or
// the registry), registers itself in the registry and applies the fault switches:
//   error        a share of requests (errorRate, default 0.5) fail with the service's error
//   latency      every request spends latencyMs (default 400) more of the service's own time
//   bad-version  the service runs as its next version (service.version changes) and a share
//                of requests (errorRate, default 0.4) fail with an error never seen before
import { parseArgs } from 'node:util';

import { ROOT_CONTEXT } from '@opentelemetry/api';
import { callsite, call, deploy, emitLog, errorSite, serve, SeverityNumber } from './lib/otel.mjs';
import { Registry } from './lib/registry.mjs';
import { demoEnv, exitWithParent, targetOf } from './lib/env.mjs';

const SERVICES = ['frontend', 'recommendations', 'checkout', 'inventory', 'payments', 'shipping'];
const { service: name } = parseArgs({ options: { service: { type: 'string' } }, strict: true }).values;
if (!SERVICES.includes(name)) {
  console.error(`service.mjs: --service must be one of ${SERVICES.join(', ')}`);
  process.exit(2);
}
const svc = (await import(`./services/${name}.mjs`)).default;
const env = demoEnv();
const stats = { exported: 0, failures: 0, lastError: '' };
const normal = deploy(name, svc.version, env.otlp, stats);
const bad = deploy(name, svc.badVersion, env.otlp, stats);
let faults = {};
const faultOf = () => faults[name] || null;
const current = () => (faultOf()?.fault === 'bad-version' ? bad : normal);
const registry = env.registry ? new Registry(env.registry) : null;
const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

// What a route handler gets: the request, a logger and calls to peers.
function handlerContext(r) {
  const d = r.deployment;
  const logAt = (sev) => (body, attrs) => emitLog(d, r.ctx, sev, body, attrs, callsite(2));
  let json = {};
  try { json = r.body ? JSON.parse(r.body) : {}; } catch { json = {}; }
  return {
    url: r.url, json, span: r.span, sleep,
    log: { info: logAt(SeverityNumber.INFO), warn: logAt(SeverityNumber.WARN), error: logAt(SeverityNumber.ERROR) },
    call(peer, method, path, body) {
      const t = targetOf(env, registry, peer);
      if (!t) return Promise.resolve({ status: 503, body: null, reason: `no instance of ${peer} in the registry` });
      return call(d, r.ctx, t, method, path, body);
    },
  };
}

const listen = env.listenFd !== null ? { fd: env.listenFd } : { port: env.port, host: '127.0.0.1' };
const server = await serve(current, listen, async (r) => {
  const route = svc.routes[`${r.req.method} ${r.url.pathname}`];
  if (!route) return { status: 404, body: { error: `no route ${r.req.method} ${r.url.pathname}` } };
  const c = handlerContext(r);
  const f = faultOf();
  try {
    if (f?.fault === 'latency') await svc.slow(c, Number(f.latencyMs ?? 400));
    if (f?.fault === 'error' && Math.random() < Number(f.errorRate ?? 0.5)) svc.fail(c);
    if (f?.fault === 'bad-version' && Math.random() < Number(f.errorRate ?? 0.4)) svc.failBadVersion(c);
    return await route.call(svc, c);
  } catch (e) {
    // The service's own failure: an ERROR log where it was thrown, an exception event.
    r.span.recordException(e);
    emitLog(r.deployment, r.ctx, SeverityNumber.ERROR, e.message, { 'exception.type': e.name }, errorSite(e));
    return { status: 500, body: { error: e.message }, error: e.message };
  }
});
const port = server.address().port;
process.stderr.write(`demo: ${name} ${svc.version} listening on 127.0.0.1:${port}, calls via ${env.route}\n`);

async function startRegistry() {
  if (!registry) return;
  await registry.ready();
  registry.onFaults((f) => {
    const before = JSON.stringify(faultOf());
    faults = f;
    const now = faultOf();
    if (JSON.stringify(now) === before) return;
    process.stderr.write(`demo: ${name} fault now ${now ? JSON.stringify(now) : 'none'}\n`);
    emitLog(current(), ROOT_CONTEXT, now ? SeverityNumber.WARN : SeverityNumber.INFO,
      now ? `fault switch on: ${now.fault}${now.fault === 'bad-version' ? ` (running ${svc.badVersion})` : ''}`
        : 'fault switch off', { 'demo.fault': now ? now.fault : 'none' });
    registry.register(name, port, { version: current().version, fault: now ? now.fault : 'none' })
      .catch((e) => process.stderr.write(`demo: ${name} re-registration failed: ${e.message}\n`));
  });
  if (env.route === 'registry') for (const p of svc.peers) registry.watch(p);
  await registry.register(name, port, { version: svc.version, fault: 'none' });
}
// The registry may come up after us or restart: keep trying, the service serves meanwhile.
(async function registerLoop() {
  for (let delay = 500; ; delay = Math.min(delay * 2, 10000)) {
    try {
      await startRegistry();
      return;
    } catch (e) {
      process.stderr.write(`demo: ${name} registry not reachable (${e.message}), retrying in ${delay} ms\n`);
      await sleep(delay);
    }
  }
})();

setInterval(() => {
  if (stats.failures) process.stderr.write(`demo: ${name} ${stats.failures} exports failed, last: ${stats.lastError}\n`);
  stats.failures = 0;
}, 30000).unref();

let stopping = false;
async function stop(why) {
  if (stopping) return;
  stopping = true;
  process.stderr.write(`demo: ${name} stopping (${why})\n`);
  setTimeout(() => process.exit(0), 3000).unref();
  server.close();
  if (registry) await registry.close().catch(() => {});
  await Promise.allSettled([normal.shutdown(), bad.shutdown()]);
  process.exit(0);
}
process.on('SIGTERM', () => stop('SIGTERM'));
process.on('SIGINT', () => stop('SIGINT'));
exitWithParent(stop);
