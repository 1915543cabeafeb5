// Drives the web console in headless Chromium against a running `cairn up --demo`, and
// prints one JSON line per check: {"check", "ok", "detail"}. For test_console.py's demo test.
//
//   node demo.mjs --url http://127.0.0.1:PORT --artifacts DIR
//
// The Gateway page shows the demo's routes and each cluster's endpoint (the services' ports,
// from /api/v1/demo) without a console error; a fault injected by clicking on the Demo
// page makes the Root cause page name that service; clicking clears it. Exit 0 when every
// check passed, 1 otherwise, 2 when the browser could not be started.
import { parseArgs } from 'node:util';
import { expect, session } from './browser.mjs';

const args = parseArgs({
  options: { url: { type: 'string' }, artifacts: { type: 'string' } },
  strict: true,
}).values;
const base = args.url.replace(/\/+$/, '');

const { page, check, open, clean, shot, finish } = await session('demo.mjs', base, args.artifacts, 20000);

const demo = await (await fetch(`${base}/api/v1/demo`)).json();
const services = demo.processes.filter((p) => p.kind === 'service');

const names = services.map((s) => s.name).sort();

await check('demo services and topology', async () => {
  // every demo service has traffic on the Services page (the load reaches all of them)
  const ms = await open('/services', 'table.services tbody tr');
  await page.waitForFunction((want) => {
    const have = [...document.querySelectorAll('table.services tbody tr')].map((tr) => tr.dataset.service);
    return want.every((n) => have.includes(n));
  }, names);
  await clean('services');
  await shot('demo-services');
  // the graph draws every demo service, and the same edges as the page's table
  await open('/topology', '.graph canvas');
  await page.waitForFunction((want) => {
    const cy = document.querySelector('.graph')._cy;
    return cy && want.every((n) => cy.getElementById(n).length) && cy.edges().length >= want.length - 1;
  }, names);
  const drawn = await page.locator('.graph').evaluate((el) => ({
    nodes: el._cy.nodes().map((n) => n.id()),
    edges: el._cy.edges().map((e) => `${e.source().id()}->${e.target().id()}`).sort(),
  }));
  const table = await page.locator('table.edges tbody tr').evaluateAll((trs) => trs.map((tr) => tr.dataset.edge).sort());
  expect(JSON.stringify(drawn.edges) === JSON.stringify(table), `graph edges ${drawn.edges} != table ${table}`);
  for (const e of ['frontend->checkout', 'frontend->recommendations', 'checkout->payments']) {
    expect(drawn.edges.includes(e), `edge ${e} missing: ${drawn.edges}`);
  }
  await clean('topology');
  await shot('demo-topology');
  return `${ms} ms, ${drawn.nodes.length} nodes, ${drawn.edges.length} edges`;
});

await check('demo search, trace, its logs, back to the trace', async () => {
  await open('/traces?service=frontend&operation=POST%20%2Fcheckout', 'table.traces tbody tr');
  await clean('trace search');
  await shot('demo-traces');
  const row = page.locator('table.traces tbody tr').first();
  const traceId = await row.getAttribute('data-trace');
  await row.locator('a.trace-link').click();
  await page.waitForURL(new RegExp(`/traces/${traceId}`));
  await page.locator('.waterfall .wf-row[data-span]').first().waitFor();
  const spans = await page.locator('.waterfall .wf-row[data-span]').count();
  expect(spans >= 3, `${spans} spans in a checkout trace`);
  await page.locator('.waterfall .wf-row[data-span]').first().click();
  const details = page.locator('aside.span-details');
  await details.waitFor();
  await clean('trace view');
  await shot('demo-trace');
  await details.locator('a.logs-link').click();
  await page.waitForURL(new RegExp(`/logs\\?.*traceId=${traceId}`));
  await page.locator('table.logs tbody tr').first().waitFor();
  const rows = await page.locator('table.logs tbody tr').evaluateAll((trs) => trs.map((tr) => tr.dataset.trace));
  expect(rows.every((t) => t === traceId), `log rows of other traces: ${rows}`);
  await clean('logs of the trace');
  await shot('demo-logs');
  await page.locator('table.logs tbody tr a.trace-link').first().click();
  await page.waitForURL(new RegExp(`/traces/${traceId}`));
  await page.locator('.waterfall .wf-row[data-span]').first().waitFor();
  await clean('back to the trace');
  return `trace ${traceId}: ${spans} spans, ${rows.length} log records`;
});

await check('demo pages load without console errors', async () => {
  // A warning is logged on ~3% of charges (a declined card), so under ASan the first may
  // come seconds into the load. The page searches once as it loads and then rightly shows
  // none: wait for one to be ingested first.
  const deadline = Date.now() + 60000;
  for (;;) {
    const found = await (await fetch(`${base}/api/v1/logs?severity=warn&limit=1`)).json();
    if (found.logs && found.logs.length) break;
    expect(Date.now() < deadline, 'no warn log record from the demo within 60 s');
    await new Promise((r) => setTimeout(r, 200));
  }
  const times = {};
  for (const [path, sel] of [
    ['/logs?severity=warn', 'table.logs tbody tr'],
    ['/rca?service=frontend', 'ol.suspects li.suspect, .empty, .error-box'],
    ['/registry', 'ul.pick li a'],
  ]) {
    times[path] = await open(path, sel);
    await clean(path);
  }
  await shot('demo-registry');
  return JSON.stringify(times);
});

await check('gateway page', async () => {
  const ms = await open('/gateway', 'table.routes tbody tr');
  for (const s of services) {
    const row = page.locator(`table.routes tr[data-route="${s.name}"]`);
    await row.waitFor();
    expect((await row.innerText()).includes(s.name), `route ${s.name}`);
    const ep = page.locator(`table.clusters tr[data-cluster="${s.name}"] code[data-endpoint="127.0.0.1:${s.port}"]`);
    await ep.waitFor();
  }
  await page.locator('table.routes tr[data-route="shop"]').waitFor();
  // the demo's load goes through the gateway: the routes count requests
  await page.waitForFunction(() => [...document.querySelectorAll('table.routes tbody tr')]
    .some((tr) => Number(tr.children[5].innerText.replace(/[^0-9]/g, '')) > 0));
  // a cluster's endpoints, by clicking; the URL holds the choice
  await page.locator('table.clusters tr[data-cluster="payments"] a').click();
  await page.waitForURL(/cluster=payments/);
  const pay = services.find((s) => s.name === 'payments');
  const row = page.locator(`[data-panel="endpoints"] tr[data-endpoint="127.0.0.1:${pay.port}"]`);
  await row.waitFor();
  expect(/\bup\b/.test(await row.innerText()), 'payments endpoint up');
  await clean('gateway');
  await shot('gateway');
  return `${ms} ms`;
});

await check('fault injected by clicking, named by the root cause page', async () => {
  await open('/demo', '[data-panel="demo-faults"] button[name="inject"]');
  await page.locator('[data-panel="demo-faults"] select[name="service"]').selectOption('payments');
  await page.locator('[data-panel="demo-faults"] select[name="fault"]').selectOption('error');
  const t0 = Date.now();
  await page.locator('[data-panel="demo-faults"] button[name="inject"]').click();
  await page.locator('[data-panel="demo-faults"] [data-fault="payments"]').waitFor();
  await shot('demo');
  await clean('inject');
  // the window starts at the click: reload until enough failed requests are in it
  const url = `/rca?service=checkout&start=${t0}&end=${t0 + 600000}`;
  const deadline = Date.now() + 60000;
  let top = '';
  for (;;) {
    await open(url, 'ol.suspects li.suspect, .empty, .error-box');
    const first = page.locator('ol.suspects li.suspect').first();
    top = (await first.count()) ? await first.getAttribute('data-suspect') : '';
    if (top.startsWith('payments|')) break;
    expect(Date.now() < deadline, `root cause still ${top || 'empty'} after 60 s`);
    await page.waitForTimeout(1000);
  }
  await shot('rca-demo');
  await clean('rca');
  // clear it by clicking
  await open('/demo', '[data-panel="demo-faults"] [data-fault="payments"]');
  await page.locator('[data-panel="demo-faults"] button[name="clear-payments"]').click();
  await page.locator('[data-panel="demo-faults"] [data-fault="payments"]').waitFor({ state: 'detached' });
  const after = await (await fetch(`${base}/api/v1/demo/faults`)).json();
  expect(Object.keys(after.faults).length === 0, `faults left: ${JSON.stringify(after.faults)}`);
  await clean('clear');
  return `top suspect ${top} after ${Date.now() - t0} ms`;
});

await finish();
