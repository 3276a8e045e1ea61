// The devhost dashboard in a real browser: headless Debian Chromium driven by playwright-core.
//
//   node tests/e2e/dashboard.spec.mjs http://127.0.0.1:PORT/dashboard/ OUTDIR
//
// Run by tests/e2e/test_dashboard.py while `python -m devhost run --serve` is in flight.
// Checks: the page loads; the events-in figure grows while the run is in flight; after the run
// the page's figures equal the run's summary; the inspector shows a player's state, actions and
// dead letters; the erase button erases it. Writes OUTDIR/result.json (what the page showed) and
// screenshots (dashboard.png: after the run, a player inspected; dashboard-running.png;
// dashboard-erased.png; failure.png when a check fails). Exits 0 when every check passed.
import { mkdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { chromium } from 'playwright-core';

const [url, outDir] = process.argv.slice(2);
if (!url || !outDir) {
  console.error('usage: node dashboard.spec.mjs DASHBOARD_URL OUTDIR');
  process.exit(2);
}
mkdirSync(outDir, { recursive: true });
const origin = new URL(url).origin;
const CHROMIUM = process.env.CHROMIUM_PATH || '/usr/bin/chromium';
const ARGS = [
  '--headless', '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run',
  '--disable-background-networking', '--disable-component-update', '--disable-sync',
];

const result = { checks: [] };
function check(name, ok, detail) {
  result.checks.push({ name, ok: Boolean(ok), detail });
  console.log(`${ok ? 'ok  ' : 'FAIL'} ${name}${detail !== undefined ? `: ${JSON.stringify(detail)}` : ''}`);
  if (!ok) throw new Error(`check failed: ${name} ${JSON.stringify(detail)}`);
}
const sleep = (ms) => new Promise((r) => setTimeout(r, ms));
const num = async (page, sel) => {
  const v = await page.getAttribute(sel, 'data-value');
  return v === null || v === '' ? null : Number(v);
};
async function api(path, init) {
  const resp = await fetch(origin + path, init);
  return { status: resp.status, body: await resp.json().catch(() => null) };
}
const total = (obj) => Object.values(obj || {}).reduce((a, b) => a + b, 0);
const rows = async (page, table) =>
  Object.fromEntries(
    await page.$$eval(`#${table} tr[data-key]`, (trs) =>
      trs.map((tr) => [tr.dataset.key, Number(tr.querySelector('td[data-value]').dataset.value)])),
  );

const browser = await chromium.launch({ executablePath: CHROMIUM, args: ARGS, timeout: 30000 });
const page = await browser.newPage({ viewport: { width: 1440, height: 1000 } });
const consoleErrors = [];
// A 404 from the app's read API is how an erased player looks; any other failed request is an error.
page.on('response', (r) => {
  const path = new URL(r.url()).pathname;
  if (r.status() >= 400 && !(r.status() === 404 && path.startsWith('/api/players/'))) consoleErrors.push(`${r.status()} ${path}`);
});
page.on('console', (m) => {
  if (m.type() === 'error' && !m.text().startsWith('Failed to load resource')) consoleErrors.push(m.text());
});
page.on('pageerror', (e) => consoleErrors.push(String(e)));
let exitCode = 0;
try {
  // 1. The page loads and shows the run in flight.
  await page.goto(url, { waitUntil: 'domcontentloaded', timeout: 15000 });
  await page.waitForSelector('#fig-events_in[data-value]', { timeout: 15000 });
  check('page loads', (await page.title()) === 'devhost dashboard');
  const phase1 = await page.getAttribute('body', 'data-phase');
  const first = await num(page, '#fig-events_in');
  check('the run is in flight when the page first reads it', phase1 === 'running', { phase: phase1, eventsIn: first });
  await sleep(2600); // two refreshes
  const second = await num(page, '#fig-events_in');
  check('events in grows between two reads during the run', second > first, { first, second });
  await page.screenshot({ path: join(outDir, 'dashboard-running.png'), fullPage: true });

  // 2. After the run: the page's figures equal the run's summary.
  await page.waitForSelector('body[data-phase="finished"]', { timeout: 45000 });
  await sleep(1800); // one more refresh after the phase changed
  const figures = (await api('/devhost/api/figures')).body;
  const summary = figures.summary.pipeline;
  const shown = {
    events_in: await num(page, '#fig-events_in'),
    signals: await num(page, '#fig-signals'),
    entity_operations: await num(page, '#fig-entity_operations'),
    actions: await num(page, '#fig-actions'),
    dropped: await num(page, '#fig-dropped'),
    dead_lettered: await num(page, '#fig-dead_lettered'),
    batches_parked: await num(page, '#fig-batches_parked'),
    write_failures: await num(page, '#fig-write_failures'),
    latency_p50: await num(page, '#fig-latency_p50'),
    latency_p99: await num(page, '#fig-latency_p99'),
    actions_by_type: await rows(page, 'tbl-actions'),
    rejections_by_rule: await rows(page, 'tbl-rejections'),
    dropped_by_type: await rows(page, 'tbl-dropped'),
    dead_letters_by_reason: await rows(page, 'tbl-dead_lettered'),
  };
  result.page_figures = shown;
  const expected = {
    events_in: summary.events_in,
    signals: summary.signals,
    entity_operations: summary.entity_operations,
    actions: total(summary.actions),
    dropped: total(summary.dropped),
    dead_lettered: total(summary.dead_lettered),
    batches_parked: summary.batches_parked,
    write_failures: summary.write_failures,
    latency_p50: summary.latency_ms.p50,
    latency_p99: summary.latency_ms.p99,
    actions_by_type: summary.actions,
    rejections_by_rule: summary.rejections,
    dropped_by_type: summary.dropped,
    dead_letters_by_reason: summary.dead_lettered,
  };
  check('after the run the page shows the summary', JSON.stringify(shown) === JSON.stringify(expected), { shown, expected });
  check('the events counted are the events processed', shown.events_in === figures.summary.events_processed,
    { events_in: shown.events_in, processed: figures.summary.events_processed });
  const points = await page.$$eval('#chart-throughput path.series', (ps) => ps.map((p) => p.getAttribute('d').length));
  check('the throughput chart has lines over the run', points.length === 4 && points[0] > 20, { points });
  const bars = (await page.$$('#chart-partitions rect.backlog')).length;
  check('the partition chart has one bar per partition', bars === figures.partitions.length && bars > 0, { bars });

  // 3. The inspector: a player with actions (else one with state), as the app's API shows it.
  await page.waitForSelector('#player-picks button.pick', { timeout: 10000 });
  const picks = (await api('/devhost/api/players')).body;
  const player = picks.with_actions.length ? picks.with_actions[0].playerId : picks.recent[0];
  result.player = player;
  if (picks.with_actions.length) {
    await page.waitForSelector(`#player-picks button.with-actions[data-player="${player}"]`, { timeout: 10000 });
  }
  const docs = (await api(`/devhost/api/players/${player}/documents`)).body;
  const state = await api(`/api/players/${player}`);
  check('the app knows the player', state.status === 200 && state.body.playerId === player, state);
  await page.fill('#player-input', player);
  await page.click('#inspect-form button[type=submit]');
  await page.waitForSelector(`#player-result[data-player="${player}"] #player-state[data-status="200"]`, { timeout: 10000 });
  await page.waitForSelector('#player-actions-count[data-value]', { timeout: 10000 });
  const shownState = await page.$$eval('#player-state tr[data-key]', (trs) => Object.fromEntries(trs.map((tr) => [tr.dataset.key, tr.querySelector('td').textContent])));
  check('the inspector shows the state the API returns', shownState.playerId === player &&
    shownState.bufferedEvents === String(state.body.bufferedEvents), shownState);
  const shownActions = await num(page, '#player-actions-count');
  const actionRows = (await page.$$('#player-actions tr[data-id]')).length;
  check('the inspector lists the player\'s actions from Cosmos', shownActions === docs.actions.length && actionRows === docs.actions.length,
    { shownActions, actionRows, cosmos: docs.actions.length });
  result.inspected = { state: state.body, actions: docs.actions.length, deadletters: docs.deadletters.length };
  await page.screenshot({ path: join(outDir, 'dashboard.png'), fullPage: true });

  // 4. Erase through the app's DELETE API: state 404 (erased), actions and dead letters gone.
  page.once('dialog', (d) => d.accept());
  await page.click('#erase-btn');
  await page.waitForSelector('#player-result[data-erased="true"]', { timeout: 25000 });
  const after = await api(`/api/players/${player}`);
  const docsAfter = (await api(`/devhost/api/players/${player}/documents`)).body;
  check('erase: the API answers 404 erased', after.status === 404 && /erased/.test(after.body.error), after);
  check('erase: no actions or dead letters left', docsAfter.actions.length === 0 && docsAfter.deadletters.length === 0,
    { actions: docsAfter.actions.length, deadletters: docsAfter.deadletters.length });
  check('erase: the page says so', (await page.textContent('#erase-status')).startsWith('erased'));
  await page.screenshot({ path: join(outDir, 'dashboard-erased.png'), fullPage: true });
  check('no errors in the page console, no failed requests', consoleErrors.length === 0, consoleErrors);
} catch (err) {
  exitCode = 1;
  result.error = String(err && err.stack ? err.stack : err);
  console.error(result.error);
  await page.screenshot({ path: join(outDir, 'failure.png'), fullPage: true }).catch(() => {});
} finally {
  result.browser = browser.version();
  writeFileSync(join(outDir, 'result.json'), JSON.stringify(result, null, 2));
  await browser.close();
}
process.exit(exitCode);
