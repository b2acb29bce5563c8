// GraphiQL works with no internet access: Debian's Chromium, headless and
// driven by playwright-core (no downloaded browser), opens the page of a
// running Kairos, runs queries typed into the editor (one with a token
// typed into the headers editor) and a subscription over WebSocket, and
// reads the result pane, while every
// request to a host other than loopback is blocked and recorded.
//
// Run by tests/api/web.rs with KAIROS_URL (the service), KAIROS_MODULES
// (the seeded published modules, by position), KAIROS_TOKEN and
// KAIROS_USERNAME (a registered learner) and KAIROS_CHROMIUM; with
// KAIROS_GRAPHIQL_SCREENSHOT=<file.png> it also saves what the page showed.

import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { test } from 'node:test';
import { chromium } from 'playwright-core';

const base = process.env.KAIROS_URL;
const modules = JSON.parse(process.env.KAIROS_MODULES ?? '[]');
const LOOPBACK = new Set(['127.0.0.1', 'localhost', '[::1]']);

const isLoopback = (url) => {
  const u = new URL(url);
  return !['http:', 'https:', 'ws:', 'wss:'].includes(u.protocol) || LOOPBACK.has(u.hostname);
};

/// The text of the CodeMirror editor under `selector`.
const editorValue = (page, selector) =>
  page.evaluate((s) => document.querySelector(s)?.CodeMirror?.getValue() ?? null, selector);

/// Replaces the text of the CodeMirror editor under `selector` as a user
/// would: click, select all, type (inserted as text, so the editor's
/// auto-closing brackets do not double them).
async function typeInto(page, selector, text) {
  await page.click(`${selector} .CodeMirror-lines`);
  await page.keyboard.press('Control+A');
  await page.keyboard.insertText(text);
  assert.equal(await editorValue(page, `${selector} .CodeMirror`), text);
}

/// Runs the query in the editor and returns the parsed result pane once it
/// shows a result containing `expect`.
async function run(page, expect) {
  await page.click('.graphiql-execute-button');
  const handle = await page.waitForFunction(
    (want) => {
      const text = document.querySelector('.graphiql-response .CodeMirror')?.CodeMirror?.getValue();
      return text && text.includes(want) ? text : null;
    },
    expect,
    { timeout: 30_000 },
  );
  return JSON.parse(await handle.jsonValue());
}

/// Waits until the service runs `n` subscriptions (at least `n`, or
/// exactly `n` with `exact`), as its metrics gauge says.
async function activeSubscriptions(n, exact = false) {
  for (let i = 0; i < 300; i++) {
    const text = await (await fetch(`${base}/metrics`)).text();
    const line = text.split('\n').find((l) => l.startsWith('kairos_ws_subscriptions '));
    const value = line ? Number(line.split(' ')[1]) : 0;
    if (exact ? value === n : value >= n) return;
    await new Promise((resolve) => setTimeout(resolve, 50));
  }
  assert.fail(`the service never ran ${n} subscription(s)`);
}

test('GraphiQL runs queries from local assets with every non-loopback request blocked', async (t) => {
  assert.ok(base, 'KAIROS_URL is set');
  const profile = mkdtempSync(join(tmpdir(), 'kairos-chromium-'));
  const context = await chromium.launchPersistentContext(profile, {
    executablePath: process.env.KAIROS_CHROMIUM || '/usr/bin/chromium',
    headless: true,
    args: [
      '--headless',
      '--no-sandbox',
      '--disable-gpu',
      '--disable-quic',
      '--no-first-run',
      '--disable-background-networking',
      '--disable-component-update',
      '--disable-sync',
    ],
  });
  t.after(async () => {
    await context.close();
    rmSync(profile, { recursive: true, force: true });
  });

  const outside = [];
  const failed = [];
  const pageErrors = [];
  const consoleErrors = [];
  const graphqlAccepts = [];
  const assets = [];
  await context.route('**/*', (route) => {
    const url = route.request().url();
    if (isLoopback(url)) return route.continue();
    outside.push(url);
    return route.abort('blockedbyclient');
  });
  context.on('request', (request) => {
    if (!isLoopback(request.url())) outside.push(request.url());
  });
  const page = await context.newPage();
  page.on('requestfailed', (r) => failed.push(`${r.url()}: ${r.failure()?.errorText}`));
  page.on('response', (r) => {
    if (r.status() >= 400) {
      // Noted at once; the request and answer bodies follow, to explain it.
      const entry = { url: r.url(), status: r.status(), sent: r.request().postData()?.slice(0, 300) };
      failed.push(entry);
      r.text().then(
        (body) => (entry.answer = body.slice(0, 500)),
        () => {},
      );
    }
    if (new URL(r.url()).pathname.startsWith('/graphiql/assets/')) assets.push(r);
  });
  page.on('request', (r) => {
    if (new URL(r.url()).pathname === '/graphql' && r.method() === 'POST') {
      graphqlAccepts.push(r.headers().accept);
    }
  });
  page.on('pageerror', (e) => pageErrors.push(String(e)));
  page.on('console', (m) => {
    if (m.type() === 'error') consoleErrors.push(m.text());
  });
  // Content-Security-Policy refusals, as the page sees them.
  await page.addInitScript(() => {
    window.__cspViolations = [];
    document.addEventListener('securitypolicyviolation', (e) =>
      window.__cspViolations.push(`${e.violatedDirective} ${e.blockedURI}`),
    );
  });

  const response = await page.goto(`${base}/graphql`, { waitUntil: 'load' });
  assert.equal(response.status(), 200);
  const headers = response.headers();
  assert.match(headers['content-type'], /^text\/html/);
  const csp = Object.fromEntries(
    headers['content-security-policy'].split(';').map((d) => {
      const [name, ...sources] = d.trim().split(/\s+/);
      return [name, sources.join(' ')];
    }),
  );
  assert.equal(csp['default-src'], "'none'");
  assert.equal(csp['script-src'], "'self'", 'scripts come from the service only, none inline');
  assert.equal(csp['connect-src'], "'self'");
  assert.equal(await page.title(), 'Kairos GraphiQL');
  await page.waitForSelector('.graphiql-query-editor .CodeMirror', { timeout: 30_000 });

  await t.test('a catalogue query typed into the editor shows its result', async () => {
    await typeInto(
      page,
      '.graphiql-query-editor',
      '{ modules(first: 2) { totalCount edges { node { title } } } }',
    );
    const result = await run(page, '"totalCount"');
    assert.equal(result.errors, undefined, JSON.stringify(result));
    assert.equal(result.data.modules.totalCount, modules.length);
    assert.deepEqual(
      result.data.modules.edges.map((e) => e.node.title),
      modules.slice(0, 2).map((m) => m.title),
    );
    if (process.env.KAIROS_GRAPHIQL_SCREENSHOT) {
      await page.screenshot({ path: process.env.KAIROS_GRAPHIQL_SCREENSHOT });
    }
  });

  await t.test('a bearer token typed into the headers editor signs the request', async () => {
    await page.getByRole('button', { name: 'Headers' }).click();
    const headersEditor = '.graphiql-editor-tool .graphiql-editor:not(.hidden)';
    await page.waitForSelector(`${headersEditor} .CodeMirror`);
    await typeInto(
      page,
      headersEditor,
      JSON.stringify({ Authorization: `Bearer ${process.env.KAIROS_TOKEN}` }),
    );
    await typeInto(page, '.graphiql-query-editor', '{ me { username role } }');
    const result = await run(page, '"username"');
    assert.equal(result.errors, undefined, JSON.stringify(result));
    assert.deepEqual(result.data, {
      me: { username: process.env.KAIROS_USERNAME, role: 'LEARNER' },
    });
  });

  await t.test('a subscription runs over WebSocket, signed by the headers editor', async () => {
    const sockets = [];
    page.on('websocket', (ws) => sockets.push(ws.url()));
    await typeInto(
      page,
      '.graphiql-query-editor',
      'subscription { progressChanged { status timeSpentSeconds module { id } } }',
    );
    await page.click('.graphiql-execute-button');
    await activeSubscriptions(1);
    // Progress recorded elsewhere (another device) shows in the result pane.
    const recorded = await fetch(`${base}/graphql`, {
      method: 'POST',
      headers: {
        'content-type': 'application/json',
        authorization: `Bearer ${process.env.KAIROS_TOKEN}`,
      },
      body: JSON.stringify({
        query: 'mutation($i: ProgressInput!) { recordProgress(input: $i) { timeSpentSeconds } }',
        variables: { i: { moduleId: modules[0].id, timeSpentSeconds: 7 } },
      }),
    });
    assert.equal(recorded.status, 200);
    const handle = await page.waitForFunction(
      () => {
        const text = document.querySelector('.graphiql-response .CodeMirror')?.CodeMirror?.getValue();
        return text && text.includes('"progressChanged"') ? text : null;
      },
      null,
      { timeout: 30_000 },
    );
    const result = JSON.parse(await handle.jsonValue());
    assert.equal(result.errors, undefined, JSON.stringify(result));
    assert.deepEqual(result.data, {
      progressChanged: { status: 'IN_PROGRESS', timeSpentSeconds: 7, module: { id: modules[0].id } },
    });
    assert.equal(sockets.length, 1);
    assert.equal(new URL(sockets[0]).pathname, '/graphql');
    // The execute button stops a running subscription.
    await page.click('.graphiql-execute-button');
    await activeSubscriptions(0, true);
  });

  await t.test('the schema loaded: the docs explorer and the settings dialog open', async () => {
    await page.getByRole('button', { name: 'Show Documentation Explorer' }).click();
    await page.locator('.graphiql-doc-explorer').getByText('modules').first().waitFor();
    await page.getByRole('button', { name: 'Open settings dialog' }).click();
    await page.getByRole('dialog').waitFor();
    await page.keyboard.press('Escape');
    await page.getByRole('dialog').waitFor({ state: 'detached' });
  });

  await t.test('everything came from the service itself', async () => {
    assert.deepEqual(outside, [], 'no request left loopback');
    assert.deepEqual(failed, [], 'no request failed');
    assert.deepEqual(pageErrors, [], 'no script error');
    assert.deepEqual(consoleErrors, [], 'no console error');
    assert.deepEqual(await page.evaluate(() => window.__cspViolations), [], 'no CSP refusal');
    assert.equal(assets.length, 6, 'the page loaded its six assets');
    for (const r of assets) {
      assert.equal(r.status(), 200, r.url());
      assert.match(r.headers()['cache-control'], /immutable/, r.url());
    }
    assert.ok(graphqlAccepts.length >= 2, 'GraphiQL posted to /graphql');
    for (const accept of graphqlAccepts) {
      assert.equal(accept, 'application/graphql-response+json, application/json');
    }
  });
});
