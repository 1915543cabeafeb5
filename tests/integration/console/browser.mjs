// What the console's browser drivers (console.mjs, demo.mjs) share: headless Chromium
// (Debian's /usr/bin/chromium through playwright-core), one page that collects console
// errors, uncaught exceptions and failed requests, and checks printed as JSON lines
// {"check", "ok", "detail"}.
import { mkdirSync } from 'node:fs';
import { chromium } from 'playwright-core';

export function expect(cond, msg) {
  if (!cond) throw new Error(msg);
}

// Starts the browser (exit 2 when it cannot) and returns the session's helpers. base: the
// console's URL; artifacts: the screenshots' directory; timeoutMs: each action's timeout.
export async function session(script, base, artifacts, timeoutMs) {
  mkdirSync(artifacts, { recursive: true });
  let browser;
  try {
    browser = await chromium.launch({ executablePath: '/usr/bin/chromium', headless: true, args: ['--no-sandbox'] });
  } catch (e) {
    process.stderr.write(`${script}: cannot start chromium: ${e}\n`);
    process.exit(2);
  }
  const context = await browser.newContext({ viewport: { width: 1400, height: 900 } });
  context.setDefaultTimeout(timeoutMs);
  const page = await context.newPage();
  const problems = [];
  page.on('console', (m) => { if (m.type() === 'error') problems.push(`console error: ${m.text()} (${m.location().url})`); });
  page.on('pageerror', (e) => problems.push(`uncaught: ${e.message}`));
  // A fetch the console aborted itself (a newer search, leaving a page) is not a failure.
  page.on('requestfailed', (r) => { if (!/ERR_ABORTED/.test(r.failure() && r.failure().errorText)) problems.push(`request failed: ${r.url()} ${r.failure() && r.failure().errorText}`); });
  // Every API path the pages ask for, printed by finish() as one line "API [...]" so the test
  // can check the console uses only the documented public API.
  const apiPaths = new Set();
  // For a failed check's report: the API requests still waiting for an answer, and the last
  // answers (status, path and query), to tell a slow or failing server from a page that
  // rendered nothing.
  const pending = new Set();
  const answers = [];
  page.on('request', (r) => {
    const u = new URL(r.url());
    if (u.pathname.startsWith('/api/')) {
      apiPaths.add(u.pathname);
      pending.add(r);
    }
  });
  page.on('requestfinished', (r) => pending.delete(r));
  page.on('requestfailed', (r) => pending.delete(r));
  page.on('response', (r) => {
    const u = new URL(r.url());
    if (!u.pathname.startsWith('/api/')) return;
    answers.push(`${r.status()} ${u.pathname}${u.search}`);
    if (answers.length > 12) answers.shift();
  });
  async function pageState() {
    try {
      const text = await page.evaluate(() => (document.body ? document.body.innerText : ''));
      const waiting = [...pending].map((r) => new URL(r.url())).map((u) => u.pathname + u.search);
      return `\npage ${page.url()}:\n${text.slice(0, 1500)}\nAPI requests unanswered: ${
        JSON.stringify(waiting)}\nlast API answers:\n${answers.join('\n')}\nproblems: ${
        JSON.stringify(problems)}`;
    } catch (e) {
      return `\n(page state unavailable: ${e})`;
    }
  }
  let failed = 0;

  function report(name, ok, detail = '') {
    if (!ok) failed++;
    process.stdout.write(JSON.stringify({ check: name, ok: !!ok, detail: String(detail) }) + '\n');
  }
  return {
    page,
    // Runs one check: fn's result is its detail, a throw its failure.
    async check(name, fn) {
      try {
        report(name, true, (await fn()) || '');
      } catch (e) {
        report(name, false, (e && e.stack ? e.stack : e) + (await pageState()));
      }
    },
    /* Navigates to path and waits for selector; returns the milliseconds it took. Problems
     * are counted from here (see clean). */
    async open(path, selector) {
      problems.length = 0;
      const t0 = Date.now();
      await page.goto(base + path);
      await page.locator(selector).first().waitFor();
      return Date.now() - t0;
    },
    // Fails on any console error, uncaught exception or failed request since open.
    async clean(what) {
      await page.waitForTimeout(50); // let a late console message arrive
      expect(problems.length === 0, `${what}: ${problems.join('; ')}`);
    },
    async shot(name) {
      await page.screenshot({ path: `${artifacts}/${name}.png`, fullPage: true });
    },
    // Closes the browser, prints the API paths used and exits: 0 when every check passed,
    // 1 otherwise.
    async finish() {
      await browser.close();
      process.stdout.write(`API ${JSON.stringify([...apiPaths].sort())}\n`);
      process.exit(failed ? 1 : 0);
    },
  };
}
