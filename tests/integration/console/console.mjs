// Drives the web console in headless Chromium (Debian's /usr/bin/chromium, playwright-core)
// against a running `cairn up` that holds the data of ../otel/console-app.mjs, and prints
// one JSON line per check: {"check", "ok", "detail"}. For tests/integration/test_console.py.
//
//   node console.mjs --url http://127.0.0.1:PORT --otlp http://127.0.0.1:PORT
//                    --app FILE (console-app.mjs's --out) --artifacts DIR [--budget-ms N]
//
// Every page must render without a console error or an uncaught exception; the pages opened
// from their URLs (warm, one after another) within --budget-ms of navigation (default 1000).
// The interaction checks report their times but do not judge them: the first one also pays
// for the browser's cold start. A screenshot of each page goes to DIR. Exit 0 when
// every check passed, 1 otherwise, 2 when the browser could not be started.
import { readFileSync } from 'node:fs';
import { parseArgs } from 'node:util';
import { expect, session } from './browser.mjs';

const args = parseArgs({
  options: {
    url: { type: 'string' }, otlp: { type: 'string' }, app: { type: 'string' },
    artifacts: { type: 'string' }, 'budget-ms': { type: 'string', default: '1000' },
  },
  strict: true,
}).values;
const base = args.url.replace(/\/+$/, '');
const budget = Number(args['budget-ms']);
const app = JSON.parse(readFileSync(args.app, 'utf8'));

const { page, check, open, clean, shot, finish } = await session('console.mjs', base, args.artifacts, 15000);

/* Waits until the select has an option of that value (options carry their value as a
 * property, not an attribute, so no CSS selector finds them). */
async function option(select, value) {
  await page.waitForFunction(([sel, v]) => {
    const el = document.querySelector(sel);
    return el && [...el.options].some((o) => o.value === v);
  }, [select, value]);
}

// The browser's first navigation starts its renderer: not the console's time.
await page.goto('data:text/html,<p>warming up</p>');

const services = [...new Set(app.traces.flatMap((t) => t.spans.map((s) => s.service)))].sort();
const errorTraces = app.traces.filter((t) => t.error);

await check('services page', async () => {
  const ms = await open('/services', 'table.services tbody tr');
  await page.locator('table.services tbody tr').nth(services.length - 1).waitFor();
  const rows = await page.locator('table.services tbody tr').evaluateAll((trs) => trs.map((tr) => tr.dataset.service));
  expect(JSON.stringify([...rows].sort()) === JSON.stringify(services), `services ${rows} != ${services}`);
  await page.locator('.spark canvas').first().waitFor();
  expect(await page.locator('.spark canvas').count() === 3 * services.length, 'three sparklines per service');
  await page.getByRole('button', { name: /^Service/ }).click();
  await page.waitForURL(/sort=service/);
  await page.getByRole('button', { name: /^Service/ }).click();
  await page.waitForURL(/dir=asc/);
  const asc = await page.locator('table.services tbody tr').evaluateAll((trs) => trs.map((tr) => tr.dataset.service));
  expect(JSON.stringify(asc) === JSON.stringify(services), `ascending by name: ${asc}`);
  await clean('services');
  await shot('services');
  return `${ms} ms`;
});

await check('topology page', async () => {
  const ms = await open('/topology', '.graph canvas');
  const graph = page.locator('.graph');
  expect(await graph.getAttribute('data-nodes') === String(services.length), 'node count');
  const edges = await page.locator('table.edges tbody tr').evaluateAll((trs) => trs.map((tr) => tr.dataset.edge).sort());
  expect(JSON.stringify(edges) === JSON.stringify(['frontend->cart', 'frontend->payments']), `edges ${edges}`);
  // The graph holds the same nodes and edges; click the payments node on the canvas.
  await page.waitForFunction(() => {
    const cy = document.querySelector('.graph')._cy;
    return cy && cy.nodes().length && cy.nodes().every((n) => n.renderedPosition().x > 0);
  });
  const drawn = await graph.evaluate((el) => ({
    nodes: el._cy.nodes().map((n) => n.id()).sort(),
    edges: el._cy.edges().map((e) => `${e.source().id()}->${e.target().id()}`).sort(),
    pos: el._cy.getElementById('payments').renderedPosition(),
  }));
  expect(JSON.stringify(drawn.nodes) === JSON.stringify(services), `graph nodes ${drawn.nodes}`);
  expect(JSON.stringify(drawn.edges) === JSON.stringify(edges), `graph edges ${drawn.edges}`);
  const box = await graph.boundingBox();
  await page.mouse.move(box.x + drawn.pos.x, box.y + drawn.pos.y);
  await page.locator('.tip:not([hidden])').waitFor();
  const tip = await page.locator('.tip').innerText();
  expect(/payments/.test(tip) && /p99/.test(tip), `hover: ${tip}`);
  await page.mouse.click(box.x + drawn.pos.x, box.y + drawn.pos.y);
  await page.waitForURL(/service=payments/);
  const panel = page.locator('aside[data-panel=service]');
  await panel.locator('ul.ops li a').first().waitFor();
  expect((await panel.locator('h2').innerText()) === 'payments', 'panel title');
  const ops = await panel.locator('ul.ops li a').allInnerTexts();
  expect(ops.includes('POST /pay'), `operations ${ops}`);
  await clean('topology');
  await shot('topology');
  return `${ms} ms`;
});

let traceId = '';
await check('search, trace, its logs, back to the trace', async () => {
  let ms = await open('/traces', 'form.search select[name=service]');
  const t0 = Date.now();
  await option('form.search select[name=service]', 'frontend');
  ms += Date.now() - t0;
  await page.selectOption('form.search select[name=service]', 'frontend');
  await option('form.search select[name=operation]', 'GET /checkout');
  await page.selectOption('form.search select[name=operation]', 'GET /checkout');
  await page.selectOption('form.search select[name=status]', 'error');
  await page.getByRole('button', { name: 'Search' }).click();
  await page.waitForURL(/status=error/);
  await page.locator('table.traces tbody tr').first().waitFor();
  await page.waitForFunction((n) => document.querySelectorAll('table.traces tbody tr').length === n && !document.querySelector('.loading'), errorTraces.length);
  const ids = await page.locator('table.traces tbody tr').evaluateAll((trs) => trs.map((tr) => tr.dataset.trace).sort());
  expect(JSON.stringify(ids) === JSON.stringify(errorTraces.map((t) => t.traceId).sort()), `error traces ${ids}`);
  expect(await page.locator('.scatter canvas').count() > 0, 'scatter plot');
  await clean('trace search');
  await shot('traces');
  // Open the first trace by clicking it.
  traceId = ids.length ? await page.locator('table.traces tbody tr').first().getAttribute('data-trace') : '';
  await page.locator('table.traces tbody tr').first().locator('a.trace-link').click();
  await page.waitForURL(new RegExp(`/traces/${traceId}`));
  await page.locator('.waterfall .wf-row[data-span]').first().waitFor();
  const want = app.traces.find((t) => t.traceId === traceId);
  const spans = await page.locator('.waterfall .wf-row[data-span]').evaluateAll((rs) => rs.map((r) => r.dataset.span).sort());
  expect(JSON.stringify(spans) === JSON.stringify(want.spans.map((s) => s.spanId).sort()), `spans ${spans}`);
  const root = want.spans.find((s) => !s.parentSpanId);
  const critical = await page.locator('.waterfall .wf-row.critical').evaluateAll((rs) => rs.map((r) => r.dataset.span));
  expect(critical.includes(root.spanId), `the root is on the critical path: ${critical}`);
  expect(await page.locator('.waterfall .wf-row.error').count() > 0, 'erroring spans marked');
  // Span details: click the payments server span.
  const pay = want.spans.find((s) => s.service === 'payments');
  await page.locator(`.waterfall .wf-row[data-span="${pay.spanId}"]`).click();
  await page.waitForURL(new RegExp(`span=${pay.spanId}`));
  const details = page.locator(`aside.span-details[data-span="${pay.spanId}"]`);
  await details.waitFor();
  const text = await details.innerText();
  expect(/charge\.attempt/.test(text) && /exception/.test(text), 'events shown');
  expect(/error/.test(text) && /answered 502/.test(text), 'status shown');
  // telemetry.code_links "*" is "https://git.example.com/{repo}/blob/{revision}/{filepath}#L{lineno}".
  const code = await details.locator('a.code-link').getAttribute('href');
  expect(code === 'https://git.example.com/shop/blob/abc123/src/payments/server.js#L40', `code link ${code}`);
  await clean('trace view');
  await shot('trace');
  // Its logs.
  await details.locator('a.logs-link').click();
  await page.waitForURL(new RegExp(`/logs\\?.*traceId=${traceId}`));
  await page.locator('table.logs tbody tr').first().waitFor();
  const wantLogs = app.logs.filter((l) => l.traceId === traceId);
  await page.waitForFunction((n) => document.querySelectorAll('table.logs tbody tr').length === n, wantLogs.length);
  const rows = await page.locator('table.logs tbody tr').evaluateAll((trs) => trs.map((tr) => tr.dataset.trace));
  expect(rows.every((t) => t === traceId), `log rows of other traces: ${rows}`);
  const bodies = await page.locator('table.logs td.body').allInnerTexts();
  expect(bodies.some((b) => /card processor refused/.test(b)), `bodies ${bodies}`);
  expect(await page.locator('table.logs tr.sev-error .sev-error').count() === 1, 'one ERROR record, coloured');
  await clean('logs of the trace');
  await shot('logs');
  // Back to the trace, from the ERROR record's trace link.
  await page.locator('table.logs tr.sev-error a.trace-link').click();
  await page.waitForURL(new RegExp(`/traces/${traceId}\\?span=${pay.spanId}`));
  await page.locator(`aside.span-details[data-span="${pay.spanId}"]`).waitFor();
  await clean('back to the trace');
  return `${ms} ms, trace ${traceId}`;
});

await check('pages load from their URLs within the budget', async () => {
  const times = {};
  for (const [path, sel] of [
    ['/services?range=15m&sort=p99Ms', 'table.services tbody tr'],
    ['/topology?service=frontend', 'aside[data-panel=service] h2'],
    [`/traces?service=payments&status=error`, 'table.traces tbody tr'],
    [`/traces/${traceId}`, '.waterfall .wf-row[data-span]'],
    ['/logs?severity=warn', 'table.logs tbody tr'],
  ]) {
    times[path] = await open(path, sel);
    await clean(path);
  }
  const slow = Object.entries(times).filter(([, ms]) => ms >= budget);
  expect(!slow.length, `over ${budget} ms: ${JSON.stringify(slow)}`);
  return JSON.stringify(times);
});

await check('live tail', async () => {
  await open('/logs?tail=1&service=cart', '.tail-state .live');
  await page.waitForTimeout(200); // the stream is open once the fetch resolved
  const marker = `tail-marker-${Date.now()}`;
  const ns = `${Date.now()}000000`;
  const r = await fetch(`${args.otlp}/v1/logs`, {
    method: 'POST', headers: { 'Content-Type': 'application/json' },
    body: JSON.stringify({ resourceLogs: [{ resource: { attributes: [{ key: 'service.name', value: { stringValue: 'cart' } }] },
      scopeLogs: [{ logRecords: [{ timeUnixNano: ns, severityNumber: 17, severityText: 'ERROR', body: { stringValue: `stock service unreachable ${marker}` } }] }] }] }),
  });
  expect(r.ok, `OTLP export: ${r.status}`);
  await page.locator('table.logs td.body', { hasText: marker }).waitFor();
  expect(await page.locator('table.logs tr.sev-error', { hasText: marker }).count() === 1, 'the record, as an error');
  await clean('live tail');
  await shot('logs-tail');
});

await check('root cause page', async () => {
  const probe = await fetch(`${base}/api/v1/rca?service=frontend`);
  if (probe.status === 404 && !(await probe.text()).startsWith('{')) {
    await open('/rca?service=frontend', '.error-box');
    expect(/not available/.test(await page.locator('.error-box').innerText()), 'says RCA is missing');
    await shot('rca');
    return 'no /api/v1/rca on this server';
  }
  const ms = await open('/rca?service=frontend&range=1h', 'ol.suspects li.suspect');
  // Latency ranks move with the machine's timing; the error origin does not: every third
  // request fails in payments, so its share is exactly a third.
  const origin = page.locator('ol.suspects li.suspect[data-suspect="payments|POST /pay|error_origin"]');
  await origin.waitFor();
  expect(/33\.3% of frontend's requests/.test(await origin.locator('.reason').innerText()), 'reason');
  if ((await origin.locator('.suspect-head').getAttribute('aria-expanded')) !== 'true') await origin.locator('.suspect-head').click();
  await origin.locator('a.trace-link').first().waitFor();
  const example = await origin.locator('a.trace-link').first().innerText();
  expect(errorTraces.some((t) => t.traceId === example), `example ${example} is an error trace`);
  await shot('rca');
  await clean('rca');
  await origin.locator('a.trace-link').first().click();
  await page.waitForURL(new RegExp(`/traces/${example}`));
  await page.locator('.waterfall .wf-row[data-span]').first().waitFor();
  await clean('rca -> trace');
  return `${ms} ms`;
});

// test_console.py registered inventory at 10.0.0.7:8080 and wrote shop.yaml twice.
await check('registry page', async () => {
  const ms = await open('/registry', 'ul.pick li a');
  await page.getByRole('link', { name: 'DEFAULT_GROUP@@inventory' }).click();
  await page.waitForURL(/service=DEFAULT_GROUP%40%40inventory/);
  const inst = page.locator('table.instances tr[data-instance="10.0.0.7:8080"]');
  await inst.waitFor();
  expect(/healthy/.test(await inst.innerText()) && /zone=a/.test(await inst.innerText()), 'instance row');
  await page.getByRole('link', { name: 'shop.yaml' }).click();
  await page.locator('pre.config-content').waitFor();
  expect((await page.locator('pre.config-content').innerText()).trim() === 'timeout: 5s', 'content');
  expect(await page.locator('table.history tbody tr').count() === 2, 'two versions in the history');
  await clean('registry');
  await shot('registry');
  return `${ms} ms`;
});

await check('unknown page', async () => {
  await open('/traces/x/y', 'main h1');
  expect((await page.locator('main h1').innerText()) === 'Not found', 'not found page');
  await clean('unknown page');
});

await finish();
