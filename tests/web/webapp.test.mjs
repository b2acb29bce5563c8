// The Kairos web app (/app) end to end in Debian's headless Chromium,
// driven by playwright-core, against a running service in allowlist mode
// (only the app's manifest runs), with every non-loopback request blocked
// and no console error, script error or CSP refusal allowed:
//
// - a learner registers, browses the catalogue (search, filters, load
//   more), opens a module (its Markdown rendered without its HTML
//   injections), starts it, records progress and sees the statistics change;
// - an admin is refused a module with invalid fields (errors by the
//   fields), creates one, publishes it and follows the fan-out job; the
//   learner then sees the notification and the unread count (pushed over
//   the notificationAdded subscription);
// - an expired token leads back to the login page, from which the learner
//   signs in again with the keyboard only;
// - at a phone's width nothing scrolls sideways.
//
// Run by tests/api/web.rs with KAIROS_URL, KAIROS_CHROMIUM,
// KAIROS_MODULE_COUNT (published modules seeded), KAIROS_FIRST_MODULE
// (JSON {slug, title} of the first by position), KAIROS_ADMIN_LOGIN /
// KAIROS_ADMIN_PASSWORD, KAIROS_EXPIRED_TOKEN and KAIROS_SCREENSHOTS (a
// directory for the screenshots of the main screens).

import assert from 'node:assert/strict';
import { mkdirSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, test } from 'node:test';
import { chromium } from 'playwright-core';

const base = process.env.KAIROS_URL;
const moduleCount = Number(process.env.KAIROS_MODULE_COUNT);
const first = JSON.parse(process.env.KAIROS_FIRST_MODULE ?? '{}');
const shots = process.env.KAIROS_SCREENSHOTS;
const LOOPBACK = new Set(['127.0.0.1', 'localhost', '[::1]']);
const isLoopback = (url) => {
  const u = new URL(url);
  return !['http:', 'https:', 'ws:', 'wss:'].includes(u.protocol) || LOOPBACK.has(u.hostname);
};
const learner = { email: 'ada@example.org', username: 'ada_learns', password: 'correct horse battery', name: 'Ada' };
const NEW_MODULE = { title: 'Fresh from the web app', slug: 'fresh-from-the-web-app', category: 'web' };

let context;
let profile;
/** What went wrong anywhere, checked at the end. */
const problems = { outside: [], pageErrors: [], consoleErrors: [], failed: [] };
/** Responses the expired-token test expects (401 for /graphql), not problems. */
let expected401 = false;
const graphqlRequests = [];

async function screenshot(page, name) {
  if (!shots) return;
  mkdirSync(shots, { recursive: true });
  await page.screenshot({ path: join(shots, `${name}.png`), fullPage: true });
}

async function newPage(width = 1280, height = 860) {
  const page = await context.newPage();
  await page.setViewportSize({ width, height });
  page.on('pageerror', (e) => problems.pageErrors.push(String(e)));
  page.on('console', (m) => {
    if (m.type() !== 'error') return;
    // Chromium logs every 4xx answer; the expired-token test causes one 401 on purpose.
    if (expected401 && /status of 401/.test(m.text())) return;
    problems.consoleErrors.push(m.text());
  });
  page.on('requestfailed', (r) => problems.failed.push(`${r.url()}: ${r.failure()?.errorText}`));
  page.on('response', (r) => {
    if (r.status() >= 400 && !(expected401 && r.status() === 401)) problems.failed.push(`${r.status()} ${r.url()}`);
  });
  page.on('request', (r) => {
    const u = new URL(r.url());
    if (u.pathname === '/graphql') graphqlRequests.push({ method: r.method(), url: u, body: r.postData() });
  });
  await page.addInitScript(() => {
    window.__cspViolations = [];
    document.addEventListener('securitypolicyviolation', (e) => window.__cspViolations.push(`${e.violatedDirective} ${e.blockedURI}`));
  });
  return page;
}

async function checkPage(page) {
  assert.deepEqual(await page.evaluate(() => window.__cspViolations), [], 'no CSP refusal');
  assert.equal(await page.evaluate(() => window.__xss), undefined, 'no injected script ran');
}

/** Reads a figure of "My progress" by its test id. */
const stat = (page, id) => page.getByTestId(id).locator('dd').innerText();

before(async () => {
  assert.ok(base, 'KAIROS_URL is set');
  profile = mkdtempSync(join(tmpdir(), 'kairos-webapp-'));
  context = await chromium.launchPersistentContext(profile, {
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
  await context.route('**/*', (route) => {
    const url = route.request().url();
    if (isLoopback(url)) return route.continue();
    problems.outside.push(url);
    return route.abort('blockedbyclient');
  });
  // The persistent context opens a blank page; close it.
  for (const p of context.pages()) await p.close();
});

after(async () => {
  await context?.close();
  if (profile) rmSync(profile, { recursive: true, force: true });
});

let learnerPage;

/** What the learner's page received over its WebSockets (graphql-ws frames). */
const learnerFrames = [];

test('the page is ours, with a strict policy', async () => {
  learnerPage = await newPage();
  learnerPage.on('websocket', (ws) => {
    ws.on('framereceived', (frame) => learnerFrames.push({ url: ws.url(), payload: String(frame.payload) }));
  });
  const response = await learnerPage.goto(`${base}/app`, { waitUntil: 'load' });
  assert.equal(response.status(), 200);
  const csp = response.headers()['content-security-policy'];
  assert.match(csp, /default-src 'none'/);
  assert.match(csp, /script-src 'self';/);
  assert.match(csp, /style-src 'self';/);
  assert.equal(await learnerPage.title(), 'Kairos');
  await learnerPage.getByRole('heading', { name: 'Sign in to Kairos' }).waitFor();
  await screenshot(learnerPage, '01-sign-in');
});

test('a learner registers, browses, opens a module, records progress and sees the statistics change', async (t) => {
  const page = learnerPage;

  await t.test('register: field errors first, then the account', async () => {
    await page.getByRole('link', { name: 'Create an account' }).click();
    await page.getByRole('heading', { name: 'Create your account' }).waitFor();
    await page.getByLabel('Email').fill('not an email');
    await page.getByLabel('Username').fill('ad');
    await page.getByLabel('Password').fill('short');
    await page.getByRole('button', { name: 'Create account' }).click();
    await page.locator('#reg-email-error').waitFor();
    assert.match(await page.locator('#reg-username-error').innerText(), /3–32/);
    assert.match(await page.locator('#reg-password-error').innerText(), /10 characters/);
    assert.equal(await page.getByLabel('Email').getAttribute('aria-invalid'), 'true');

    await page.getByLabel('Email').fill(learner.email);
    await page.getByLabel('Username').fill(learner.username);
    await page.getByLabel('Display name (optional)').fill(learner.name);
    await page.getByLabel('Password').fill(learner.password);
    await page.getByRole('button', { name: 'Create account' }).click();
    await page.getByRole('heading', { name: 'Catalogue' }).waitFor();
    assert.equal(await page.evaluate(() => JSON.parse(sessionStorage.getItem('kairos.session')).user.username), learner.username);
  });

  await t.test('statistics start at zero', async () => {
    await page.getByRole('link', { name: 'My progress' }).click();
    await page.getByTestId('stat-completion').waitFor();
    assert.equal(await stat(page, 'stat-completion'), '0%');
    assert.equal(await stat(page, 'stat-time'), '0 s');
    assert.equal(await stat(page, 'stat-score'), '—');
    await page.getByText('Nothing yet').waitFor();
  });

  await t.test('the catalogue pages with "load more" and filters', async () => {
    await page.getByRole('link', { name: 'Catalogue', exact: true }).click();
    await page.getByText(`${moduleCount} modules`).waitFor();
    const cards = page.locator('.cards > li');
    await page.getByRole('button', { name: 'Load more' }).waitFor();
    assert.equal(await cards.count(), 12);
    await page.getByRole('button', { name: 'Load more' }).click();
    await page.waitForFunction((n) => document.querySelectorAll('.cards > li').length === n, moduleCount);
    await page.getByRole('button', { name: 'Load more' }).waitFor({ state: 'detached' });

    await page.getByLabel('Search').fill('Gamma');
    await page.getByText('1 module', { exact: true }).waitFor();
    assert.equal(await cards.count(), 1);
    await page.getByLabel('Search').fill('');
    await page.getByText(`${moduleCount} modules`).waitFor();
    await page.getByLabel('Category').selectOption('data');
    await page.getByLabel('Level').selectOption('ADVANCED');
    // Theta is the one data module for advanced learners.
    await page.getByText('1 module', { exact: true }).waitFor();
    assert.match(await cards.first().innerText(), /Theta of the web[\s\S]*data[\s\S]*Advanced/);
    await page.getByLabel('Search').fill('no module is called this');
    await page.getByText('No module matches these filters.').waitFor();
    await page.getByLabel('Search').fill('');
    await page.getByLabel('Category').selectOption('');
    await page.getByLabel('Level').selectOption('');
    await page.getByText(`${moduleCount} modules`).waitFor();
    await screenshot(page, '02-catalogue');
  });

  await t.test('a module page renders its Markdown without the HTML in it', async () => {
    await page.getByRole('link', { name: first.title }).click();
    await page.getByRole('heading', { name: first.title, level: 1 }).waitFor();
    const md = page.locator('.markdown');
    await md.locator('h2', { hasText: 'What you will learn' }).waitFor();
    assert.equal(await md.locator('script, iframe, [onerror], [onclick], a[href^="javascript"]').count(), 0);
    assert.equal(await md.locator('strong').first().innerText(), 'safely');
    assert.match(await md.innerText(), /<script>window.__xss = 1<\/script>/, 'HTML is shown as text');
    await checkPage(page);
  });

  await t.test('start the module, record time, score and completion', async () => {
    await page.getByRole('button', { name: 'Start module' }).click();
    await page.getByText('Module started.').waitFor();
    assert.match(await page.getByTestId('module-progress').innerText(), /In progress/);
    await page.getByLabel('Score (0–100, optional)').fill('150');
    await page.getByRole('button', { name: 'Record progress' }).click();
    await page.locator('#rp-score-error').waitFor();
    await page.getByLabel('Minutes spent since last report').fill('15');
    await page.getByLabel('Score (0–100, optional)').fill('80');
    await page.getByLabel('I completed this module').check();
    const sent = page.waitForRequest(
      (r) => r.method() === 'POST' && r.postData()?.includes('"RecordProgress"'),
    );
    await page.getByRole('button', { name: 'Record progress' }).click();
    await page.getByText('Progress saved.').waitFor();
    // Each report carries an idempotency key, so a resend is applied once.
    const { variables } = JSON.parse((await sent).postData());
    assert.match(variables.input.idempotencyKey, /^[0-9a-f]{32}$/);
    const facts = await page.getByTestId('module-progress').innerText();
    assert.match(facts, /Completed/);
    assert.match(facts, /15 min/);
    assert.match(facts, /80/);
    await screenshot(page, '03-module');
  });

  await t.test('"My progress" shows the new statistics, charts and history', async () => {
    await page.getByRole('link', { name: 'My progress' }).click();
    await page.getByTestId('stat-completion').waitFor();
    assert.equal(await stat(page, 'stat-completion'), `${Math.round(100 / moduleCount)}%`);
    assert.equal(await stat(page, 'stat-completed'), `1 of ${moduleCount}`);
    assert.equal(await stat(page, 'stat-time'), '15 min');
    assert.equal(await stat(page, 'stat-score'), '80');
    assert.equal(await stat(page, 'stat-streak'), '1 day');
    const charts = page.locator('figure.chart svg[role="img"]');
    assert.equal(await charts.count(), 2);
    assert.match(await charts.nth(0).getAttribute('aria-label'), /web: \d+%/);
    assert.match(await charts.nth(1).getAttribute('aria-label'), /: 15 min/);
    const rows = page.locator('tbody tr');
    await rows.first().waitFor();
    assert.equal(await rows.count(), 2, 'started, then completed');
    assert.match(await rows.first().innerText(), /Completed/);
    await screenshot(page, '04-my-progress');
  });
});

test('an admin publishes a module and the learner is notified', async (t) => {
  const admin = await newPage();
  await admin.goto(`${base}/app`);

  await t.test('the admin signs in to the dashboard', async () => {
    await admin.getByLabel('Email or username').fill(process.env.KAIROS_ADMIN_LOGIN);
    await admin.getByLabel('Password').fill(process.env.KAIROS_ADMIN_PASSWORD);
    await admin.getByRole('button', { name: 'Sign in' }).click();
    await admin.getByRole('heading', { name: 'Dashboard' }).waitFor();
    await admin.getByText('Top modules by learners started').waitFor();
    await screenshot(admin, '05-admin-dashboard');
  });

  await t.test('users can be searched', async () => {
    await admin.getByRole('link', { name: 'Users' }).click();
    await admin.getByLabel('Search by email or username prefix').fill('ada');
    await admin.getByRole('cell', { name: learner.username }).waitFor();
    await admin.getByText('1 users').waitFor();
  });

  await t.test('invalid fields are shown by the fields, then the module is created as a draft', async () => {
    await admin.getByRole('link', { name: 'Modules' }).click();
    await admin.getByRole('link', { name: 'New module' }).click();
    await admin.getByRole('heading', { name: 'New module' }).waitFor();
    await admin.getByLabel('Slug').fill('Not A Slug');
    await admin.getByRole('button', { name: 'Create module' }).click();
    await admin.locator('#mod-title-error').waitFor();
    assert.match(await admin.locator('#mod-slug-error').innerText(), /lowercase/);
    assert.equal(await admin.evaluate(() => document.activeElement.id), 'mod-title', 'focus moves to the first bad field');

    // A taken slug passes the form's checks; the service's CONFLICT lands by the slug.
    await admin.getByLabel('Title').fill(NEW_MODULE.title);
    await admin.getByLabel('Slug').fill(first.slug);
    await admin.getByLabel('Summary').fill('Made by the browser test.');
    await admin.getByLabel('Category').fill(NEW_MODULE.category);
    await admin.getByLabel('Level').selectOption('INTERMEDIATE');
    await admin.getByLabel('Duration (minutes)').fill('20');
    await admin.getByLabel('Position in the catalogue').fill('100');
    await admin.getByLabel('Content (Markdown)').fill('## Hello\n\nA **new** module.');
    await admin.getByRole('button', { name: 'Create module' }).click();
    await admin.locator('#mod-slug-error', { hasText: 'already exists' }).waitFor();
    await screenshot(admin, '06-admin-module-errors');

    await admin.getByLabel('Slug').fill(NEW_MODULE.slug);
    await admin.getByRole('button', { name: 'Create module' }).click();
    await admin.getByRole('heading', { name: 'Modules' }).waitFor();
    await admin.getByRole('link', { name: NEW_MODULE.title }).waitFor();
  });

  await t.test('publishing it queues a fan-out job that notifies every learner', async () => {
    await admin.getByRole('button', { name: `Publish ${NEW_MODULE.title}`, exact: true }).click();
    await admin.getByText('published: learners are being notified').waitFor();
    await admin.getByRole('link', { name: 'Jobs' }).click();
    await admin.getByRole('heading', { name: 'Notification jobs' }).waitFor();
    // The fan-out runs in the background worker; the page polls while it runs.
    await admin.locator('.jobs .badge', { hasText: 'DONE' }).first().waitFor({ timeout: 60_000 });
    assert.match(await admin.locator('.jobs li').first().innerText(), /of \d+ learners notified/);
    await screenshot(admin, '07-admin-jobs');
  });

  await t.test('cache statistics show, and the cache clears', async () => {
    await admin.getByRole('link', { name: 'Cache' }).click();
    await admin.getByText('Hit rate').waitFor();
    await admin.getByRole('button', { name: 'Clear cache' }).click();
    await admin.getByText(/cached entries dropped/).waitFor();
    await checkPage(admin);
    await admin.getByRole('button', { name: 'Sign out' }).click();
    await admin.getByRole('heading', { name: 'Sign in to Kairos' }).waitFor();
    assert.equal(await admin.evaluate(() => sessionStorage.getItem('kairos.session')), null);
    await admin.close();
  });

  await t.test('the learner sees the unread count and the notification', async () => {
    const page = learnerPage;
    // The page was left open: the count changes by itself, on the
    // `notificationAdded` event the service pushed over the WebSocket.
    await page.getByTestId('unread-count').waitFor();
    assert.equal(await page.getByTestId('unread-count').innerText(), '1');
    const pushed = learnerFrames.filter((f) => f.payload.includes('"notificationAdded"'));
    assert.equal(pushed.length, 1, JSON.stringify(learnerFrames));
    assert.equal(new URL(pushed[0].url).pathname, '/graphql');
    assert.equal(JSON.parse(pushed[0].payload).type, 'next');
    await page.getByRole('link', { name: /Notifications/ }).click();
    const item = page.locator('.notifications li.unread').first();
    await item.waitFor();
    assert.match(await item.innerText(), new RegExp(NEW_MODULE.title));
    await screenshot(page, '08-notifications');
    await page.getByRole('button', { name: 'Mark all as read' }).click();
    await page.getByTestId('unread-count').waitFor({ state: 'detached' });
    await page.locator('.notifications li.read').first().waitFor();
    await page.getByRole('link', { name: `Open “${NEW_MODULE.title}”` }).click();
    await page.getByRole('heading', { name: NEW_MODULE.title, level: 1 }).waitFor();
  });
});

test('an expired token leads back to the login page, and the keyboard signs in again', async () => {
  const page = learnerPage;
  expected401 = true;
  await page.evaluate((token) => {
    const s = JSON.parse(sessionStorage.getItem('kairos.session'));
    sessionStorage.setItem('kairos.session', JSON.stringify({ ...s, token }));
  }, process.env.KAIROS_EXPIRED_TOKEN);
  await page.getByRole('link', { name: 'My progress' }).click();
  await page.getByRole('heading', { name: 'Sign in to Kairos' }).waitFor();
  await page.getByText('Your session has ended').waitFor();
  assert.equal(await page.evaluate(() => location.hash), '#/login');
  // Let the other requests of that screen come back (401 too) before counting again.
  await page.waitForTimeout(1000);
  expected401 = false;

  // Keyboard only: the heading has focus; Tab reaches the fields in order.
  await page.keyboard.press('Tab');
  assert.equal(await page.evaluate(() => document.activeElement.id), 'login-login');
  await page.keyboard.type(learner.username);
  await page.keyboard.press('Tab');
  await page.keyboard.type(learner.password);
  await page.keyboard.press('Enter');
  await page.getByRole('heading', { name: 'Catalogue' }).waitFor();
  await page.locator('.cards a').first().waitFor();
  // The screen's heading has focus; Tab reaches the search field, outlined.
  await page.keyboard.press('Tab');
  const focused = await page.evaluate(() => {
    const el = document.activeElement;
    return { id: el.id, outline: getComputedStyle(el).outlineStyle };
  });
  assert.deepEqual(focused, { id: 'cat-search', outline: 'solid' }, 'the focused control is outlined');
});

test('at a phone width nothing scrolls sideways', async () => {
  const page = learnerPage;
  await page.setViewportSize({ width: 375, height: 740 });
  for (const hash of ['#/catalogue', '#/progress', `#/modules/${first.slug}`, '#/notifications']) {
    await page.goto(`${base}/app${hash}`);
    await page.locator('main h1').waitFor();
    await page.waitForLoadState('networkidle');
    const { scroll, width } = await page.evaluate(() => ({ scroll: document.documentElement.scrollWidth, width: innerWidth }));
    assert.ok(scroll <= width, `${hash}: ${scroll} > ${width}`);
    if (hash === '#/progress') await screenshot(page, '09-phone-progress');
  }
  await checkPage(page);
});

test('the app used the API as the README tells SPAs to, and nothing went wrong', () => {
  assert.ok(graphqlRequests.length > 10);
  for (const r of graphqlRequests) {
    const ext = r.method === 'GET' ? JSON.parse(r.url.searchParams.get('extensions')) : JSON.parse(r.body).extensions;
    assert.equal(ext.persistedQuery.version, 1);
    assert.match(ext.persistedQuery.sha256Hash, /^[0-9a-f]{64}$/);
    if (r.method === 'GET') {
      assert.equal(r.url.searchParams.get('query'), null, 'queries go by id alone in allowlist mode');
    } else {
      assert.match(JSON.parse(r.body).operationName, /Login|Register|StartModule|RecordProgress|MarkRead|CreateModule|UpdateModule|ClearCache/);
    }
  }
  assert.deepEqual(problems.outside, [], 'no request left loopback');
  assert.deepEqual(problems.failed, [], 'no request failed');
  assert.deepEqual(problems.pageErrors, [], 'no script error');
  assert.deepEqual(problems.consoleErrors, [], 'no console error');
});
