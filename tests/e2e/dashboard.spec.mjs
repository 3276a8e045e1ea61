// The devhost dashboard in a real browser: headless Debian Chromium driven by playwright-core.
//
//   node tests/e2e/dashboard.spec.mjs http://127.0.0.1:PORT/dashboard/ OUTDIR
//
// Run by tests/e2e/test_dashboard.py while `python -m devhost run --serve` is in flight.
// Checks: the page loads; the events-in figure grows while the run is in flight; after the run
// the page's figures equal the run's summary, the header's elapsed time has stopped at the run's
// wall time, every chart point is drawn (a lone second as a dot), axis labels show their values
// exactly (0.25, not 0.3), signals and entity operations have their own (right) axis; the
// inspector shows a player's state, actions and dead letters; the erase button erases it and the
// player leaves "recently active". Synthetic series drawn by the page's own lineChart into scratch
// charts check the lone point and the ticks on fixed data. Writes OUTDIR/result.json (what the page
// showed, with its rounding of tie values for the Python side to compare) and screenshots
// (dashboard.png: after the run, a player inspected; dashboard-running.png; dashboard-erased.png;
// dashboard-synthetic.png; failure.png when a check fails). Exits 0 when every check passed.
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
// The drawn vertices of an SVG path "M x,y L x,y ...", and the plot's geometry (dashboard.js).
const vertices = (d) => (d.match(/[ML]-?[\d.]+,-?[\d.]+/g) || []).map((c) => Number(c.slice(1).split(',')[1]));
const PLOT_TOP = 10;
const PLOT_HEIGHT = 220 - 10 - 26;
const PLOT_MIDDLE = PLOT_TOP + PLOT_HEIGHT / 2;
const labelValue = (text) => {
  const m = /^(-?[\d,]*\.?\d+)([kM]?)$/.exec(text.trim());
  if (!m) return NaN;
  return Number(m[1].replace(/,/g, '')) * (m[2] === 'k' ? 1e3 : m[2] === 'M' ? 1e6 : 1);
};
// Ties exact in binary (412.5) and near-ties that are not (13.35 is 13.3499... as a float): the
// page must round them as Python's format() does; the Python side compares.
const ROUND_VALUES = [0.5, 1.5, 2.5, 412.5, 413.5, 1234.5, 407.3, 0.25, 0.35, 13.25, 13.35, 2.675, 1.005, 0.125,
  412.55, 999.95, 999999.5, 0.045];
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

  // The header's elapsed time is the run's wall time and no longer counts.
  const elapsed1 = await page.textContent('#progress-text');
  await sleep(3300); // two refreshes
  const elapsed2 = await page.textContent('#progress-text');
  const wallShown = await page.evaluate((w) => fmt(w, 1), figures.summary.wall_seconds);
  check('the elapsed time has stopped at the run\'s wall time', elapsed1 === elapsed2 && elapsed1.endsWith(`, ${wallShown} s`) &&
    figures.elapsed_s === figures.summary.wall_seconds, { elapsed1, elapsed2, wall: figures.summary.wall_seconds });

  // Rounding: half to even, as the printed summary (Python) rounds; the Python side compares.
  result.rounding = await page.evaluate((vs) => vs.map((v) => [v, fmt(v), pyRound(v, 1), pyRound(v, 2)]), ROUND_VALUES);
  result.finished_note = await page.textContent('#finished-note');

  // Every point of every line chart is drawn: vertices of the path plus lone dots = values.
  const drawn = await page.evaluate(() => {
    const out = {};
    for (const svg of document.querySelectorAll('svg.chart')) {
      for (const path of svg.querySelectorAll('path.series')) {
        const name = path.dataset.series;
        const dots = svg.querySelectorAll(`circle.point[data-series="${CSS.escape(name)}"]`).length;
        const verts = (path.getAttribute('d').match(/[ML]/g) || []).length;
        out[`${svg.id}/${name}`] = { verts, dots };
      }
    }
    const keys = { 'chart-latency/p50': 'latency_p50_ms', 'chart-latency/p99': 'latency_p99_ms',
      'chart-throughput/events in': 'events_in', 'chart-throughput/signals': 'signals',
      'chart-throughput/entity operations': 'entity_operations' };
    const want = {};
    for (const [k, key] of Object.entries(keys)) want[k] = view.rows.filter((r) => r[key] !== null && r[key] !== undefined).length;
    return { out, want };
  });
  for (const [k, n] of Object.entries(drawn.want)) {
    const got = drawn.out[k];
    check(`every value of ${k} is drawn`, got && got.verts + got.dots === n, { got, values: n });
  }
  result.latency_points = { p50: drawn.out['chart-latency/p50'], p99: drawn.out['chart-latency/p99'] };

  // Axis labels say their value exactly (enough decimals for the step), on every chart.
  const ticks = await page.$$eval('svg.chart text[data-v]', (ts) => ts.map((t) => [t.closest('svg').id, t.textContent, Number(t.dataset.v)]));
  const wrong = ticks.filter(([, text, v]) => Math.abs(labelValue(text) - v) > 1e-9 * Math.max(1, v));
  check('every axis label shows its value exactly', ticks.length >= 20 && wrong.length === 0, { wrong, n: ticks.length });
  result.actions_ticks = ticks.filter(([id]) => id === 'chart-actions').map(([, t]) => t);

  // Signals and entity operations on their own right axis, each reaching the upper half of the plot.
  const tp = await page.evaluate(() => {
    const svg = document.getElementById('chart-throughput');
    const series = [...svg.querySelectorAll('path.series')].map((p) => ({ name: p.dataset.series, axis: p.dataset.axis, d: p.getAttribute('d') }));
    const right = [...svg.querySelectorAll('text.tick-right')].map((t) => t.textContent);
    return { series, right };
  });
  const axisOf = Object.fromEntries(tp.series.map((x) => [x.name, x.axis]));
  check('signals and entity operations use the right axis, events the left', axisOf.signals === 'right' &&
    axisOf['entity operations'] === 'right' && axisOf['events in'] === 'left' && tp.right.length === 5, { axisOf, right: tp.right });
  const peaks = Object.fromEntries(tp.series.filter((x) => x.name !== 'dead letters').map((x) => [x.name, Math.min(...vertices(x.d))]));
  // Each axis is scaled to its data: its highest line reaches the upper half (niceMax is at most twice
  // the largest value). A lower line on a shared axis (signals beside entity operations) may peak
  // anywhere, depending on how the run's seconds fell, but none lies flat on zero.
  const axisTop = {};
  for (const [name, y] of Object.entries(peaks)) axisTop[axisOf[name]] = Math.min(axisTop[axisOf[name]] ?? Infinity, y);
  check('each throughput axis is scaled to its data and no line lies flat',
    Object.values(axisTop).every((y) => y >= PLOT_TOP - 0.5 && y <= PLOT_MIDDLE + 0.5) &&
    Object.values(peaks).every((y) => y < PLOT_TOP + PLOT_HEIGHT - 0.5), { peaks, axisTop, middle: PLOT_MIDDLE });
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
  // Decisions told apart (GET /api/players/{id}/actions), each kind against the Cosmos documents.
  const decisions = await api(`/api/players/${player}/actions`);
  check('the read API answers the player\'s decisions', decisions.status === 200 && decisions.body.playerId === player, decisions.status);
  const SENT = ['pending', 'accepted', 'dismissed'];
  const sentDocs = docs.actions.filter((d) => SENT.includes(d.status));
  const heldDocs = docs.actions.filter((d) => d.status === 'holdout');
  const suppressedDocs = docs.actions.filter((d) => d.status === 'suppressed');
  const shownActions = await num(page, '#player-actions-count');
  const actionRows = (await page.$$('#player-actions tr[data-id]')).length;
  check('the inspector lists the player\'s sent actions only', shownActions === sentDocs.length && actionRows === sentDocs.length &&
    decisions.body.sent.length === sentDocs.length, { shownActions, actionRows, sent: sentDocs.length, all: docs.actions.length });
  const shownHeld = await num(page, '#player-holdout-count');
  check('the inspector lists the holdout decisions apart', shownHeld === heldDocs.length && decisions.body.holdout.length === heldDocs.length,
    { shownHeld, holdout: heldDocs.length });
  const suppressedTotal = suppressedDocs.reduce((a, d) => a + (d.count || 1), 0);
  const shownSuppressed = await num(page, '#player-suppressed-count');
  const byRule = await rows(page, 'player-suppressed');
  const cosmosByRule = {};
  for (const d of suppressedDocs) cosmosByRule[d.rejectedBy] = (cosmosByRule[d.rejectedBy] || 0) + (d.count || 1);
  check('the inspector counts suppressed decisions per rule', shownSuppressed === suppressedTotal &&
    JSON.stringify(Object.entries(byRule).sort()) === JSON.stringify(Object.entries(cosmosByRule).sort()), { byRule, cosmosByRule });
  if (picks.with_actions.length) {
    check('"players with actions" counts sent actions only', picks.with_actions[0].actions === sentDocs.length,
      { listed: picks.with_actions[0], sent: sentDocs.length, all: docs.actions.length });
  }
  result.inspected = { state: state.body, actions: docs.actions.length, sent: sentDocs.length, holdout: heldDocs.length,
    suppressed: suppressedTotal, deadletters: docs.deadletters.length };

  // The last what-if report (the test wrote one into the report folder before the run).
  const whatif = (await api('/devhost/api/whatif')).body;
  check('the dashboard finds the last what-if report', whatif.report !== null && whatif.png !== null, whatif);
  await page.waitForSelector('#whatif-types tr[data-key]', { timeout: 15000 });
  const shownAdded = await page.$$eval('#whatif-types tr[data-key]', (trs) =>
    Object.fromEntries(trs.map((tr) => [tr.dataset.key, Number(tr.querySelector('td[data-col="added"]').dataset.value)])));
  const reportAdded = Object.fromEntries(Object.entries(whatif.report.added).map(([t, a]) => [t, a.total]));
  check('the what-if panel shows the report\'s decisions added per type', JSON.stringify(shownAdded) === JSON.stringify(reportAdded),
    { shownAdded, reportAdded });
  await page.waitForFunction(() => { const i = document.getElementById('whatif-png'); return !i.hidden && i.complete && i.naturalWidth > 0; },
    null, { timeout: 10000 });
  result.whatif = { path: whatif.path, added: reportAdded };
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
  // The erasure saved the player's tombstone last: without a filter it would head "recently active".
  const picksAfter = (await api('/devhost/api/players')).body;
  check('erase: the player is no longer under "recently active"', !picksAfter.recent.includes(player) && picksAfter.recent.length > 0,
    { player, recent: picksAfter.recent });
  await page.waitForFunction((id) => !document.querySelector(`#player-picks button.recent[data-player="${id}"]`) &&
    document.querySelectorAll('#player-picks button.recent').length > 0, player, { timeout: 10000 });
  await page.screenshot({ path: join(outDir, 'dashboard-erased.png'), fullPage: true });

  // 5. The page's own chart code on fixed data, in scratch charts added to the page.
  const synthetic = await page.evaluate(() => {
    const card = el('section', null, 'card');
    card.id = 'scratch';
    card.append(el('h2', 'Synthetic (test): a lone latency point, ticks of 0.9 actions/s, two axes'));
    for (const id of ['scratch-lone', 'scratch-ticks', 'scratch-axes']) {
      const svg = document.createElementNS('http://www.w3.org/2000/svg', 'svg');
      svg.id = id;
      svg.setAttribute('class', 'chart');
      svg.style.width = '32%';
      svg.style.display = 'inline-block';
      card.append(svg);
    }
    document.querySelector('main').prepend(card);
    lineChart('scratch-lone', [
      { name: 'p50', values: [[1, null], [2, 450], [3, null], [4, null]] },
      { name: 'p99', values: [[1, null], [2, 900], [3, null], [4, 600], [5, 640], [6, null]], color: COLORS[3] },
    ]);
    lineChart('scratch-ticks', [{ name: 'help_offer', values: [[1, 0.1], [2, 0.9], [3, 0.4]] }]);
    lineChart('scratch-axes', [
      { name: 'events in', values: [[1, 360], [2, 400], [3, 380]] },
      { name: 'signals', values: [[1, 3], [2, 4], [3, 2]], axis: 'right' },
    ]);
    const q = (sel) => [...document.querySelectorAll(sel)];
    return {
      lone: q('#scratch-lone circle.point').map((c) => [c.dataset.series, Number(c.getAttribute('cy'))]),
      lonePaths: q('#scratch-lone path.series').map((p) => [p.dataset.series, p.getAttribute('d')]),
      ticks: q('#scratch-ticks text.tick-left').map((t) => t.textContent),
      left: q('#scratch-axes text.tick-left').map((t) => t.textContent),
      right: q('#scratch-axes text.tick-right').map((t) => t.textContent),
      signalsPeak: Math.min(...(document.querySelector('#scratch-axes path[data-series="signals"]').getAttribute('d').match(/,-?[\d.]+/g) || []).map((v) => Number(v.slice(1)))),
    };
  });
  result.synthetic = synthetic;
  // p50: 450 ms alone; p99: 900 alone, then 600 and 640 as a line; the scale's top is 1,000.
  check('a lone point is drawn as a dot (450 ms with empty neighbours), a pair as a line',
    JSON.stringify(synthetic.lone.map(([n]) => n)) === JSON.stringify(['p50', 'p99']) &&
    Math.abs(synthetic.lone[0][1] - (PLOT_TOP + PLOT_HEIGHT * (1 - 0.45))) < 0.11 &&
    synthetic.lonePaths.find(([n]) => n === 'p99')[1].split('L').length === 2 &&
    synthetic.lonePaths.find(([n]) => n === 'p50')[1] === '', synthetic);
  check('ticks of a 0.9 top are 0, 0.25, 0.50, 0.75, 1.00', JSON.stringify(synthetic.ticks) === JSON.stringify(['0', '0.25', '0.50', '0.75', '1.00']), synthetic.ticks);
  check('two axes on fixed data: events 0-400 left, signals 0-4 right, both reaching the top',
    JSON.stringify(synthetic.left) === JSON.stringify(['0', '100', '200', '300', '400']) &&
    JSON.stringify(synthetic.right) === JSON.stringify(['0', '1', '2', '3', '4']) && synthetic.signalsPeak === PLOT_TOP, synthetic);
  await page.locator('#scratch').screenshot({ path: join(outDir, 'dashboard-synthetic.png') });
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
