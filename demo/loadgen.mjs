// The demo's users: a steady stream of DEMO_RPS requests per second (default 5) to frontend,
// six in ten browsing (GET /products), four in ten buying (POST /checkout). It is not
// instrumented: frontend's spans are the traces' roots, as with real browsers.
import http from 'node:http';

import { demoEnv, exitWithParent, targetOf } from './lib/env.mjs';
import { Registry } from './lib/registry.mjs';

const env = demoEnv();
const rps = env.rps;
if (!(rps > 0 && rps <= 1000)) {
  console.error(`loadgen.mjs: DEMO_RPS must be in (0, 1000], got ${process.env.DEMO_RPS}`);
  process.exit(2);
}
const registry = env.route === 'registry' ? new Registry(env.registry) : null;
if (registry) {
  await registry.ready();
  registry.watch('frontend');
}
const agent = new http.Agent({ keepAlive: true, maxSockets: 32 });
const USERS = ['ada', 'grace', 'linus', 'margaret', 'ken', 'barbara', 'dennis', 'frances'];
const SKUS = ['sku-101', 'sku-102', 'sku-205', 'sku-311', 'sku-412'];
let inflight = 0;
const counts = { sent: 0, ok: 0, failed: 0, skipped: 0 };

function one() {
  const t = targetOf(env, registry, 'frontend');
  if (!t || inflight >= 64) {
    counts.skipped++;
    return;
  }
  const user = USERS[Math.floor(Math.random() * USERS.length)];
  const buy = Math.random() < 0.4;
  const body = buy ? JSON.stringify({ user, items: SKUS.filter(() => Math.random() < 0.4).concat('sku-101') }) : null;
  const headers = { host: t.hostHeader || `${t.host}:${t.port}` };
  if (body) Object.assign(headers, { 'content-type': 'application/json', 'content-length': Buffer.byteLength(body) });
  inflight++;
  counts.sent++;
  const req = http.request({
    host: t.host, port: t.port, agent, headers, timeout: 10000,
    method: buy ? 'POST' : 'GET', path: buy ? '/checkout' : `/products?user=${user}`,
  }, (res) => {
    res.resume();
    res.on('end', () => {
      inflight--;
      counts[res.statusCode < 500 ? 'ok' : 'failed']++;
    });
  });
  req.on('timeout', () => req.destroy(new Error('timeout')));
  req.on('error', () => { inflight--; counts.failed++; });
  if (body) req.write(body);
  req.end();
}

process.stderr.write(`demo: loadgen sending ${rps} requests/s to frontend via ${env.route}\n`);
// A fixed schedule (not "wait, then send"): the rate holds whatever the answers' latency.
const period = 1000 / rps;
const t0 = Date.now();
let n = 0;
(function tick() {
  const now = Date.now();
  if (now - (t0 + n * period) > 1000) n = Math.floor((now - t0) / period); // paused: no burst
  while (t0 + n * period <= now) {
    n++;
    one();
  }
  setTimeout(tick, Math.max(1, t0 + n * period - Date.now()));
})();
setInterval(() => {
  process.stderr.write(`demo: loadgen sent ${counts.sent} ok ${counts.ok} failed ${counts.failed} skipped ${counts.skipped}\n`);
}, 60000).unref();

function stop() {
  if (registry) registry.close().catch(() => {});
  process.exit(0);
}
process.on('SIGTERM', stop);
process.on('SIGINT', stop);
exitWithParent(stop);
