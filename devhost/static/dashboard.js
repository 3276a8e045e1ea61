// The devhost dashboard: polls /devhost/api/figures, draws plain SVG charts, inspects a player.
// No framework, no build step. Every value from the server is put in the page as text
// (textContent / SVG attributes), never as markup.
'use strict';

const POLL_MS = 1500;
const SVGNS = 'http://www.w3.org/2000/svg';
const COLORS = ['#2f6fde', '#1f9d55', '#c77c02', '#c9302c', '#7a4cc2', '#13a3b5', '#d1458f', '#5b6b82'];
const W = 640;
const H = 220;
const M = { l: 56, r: 14, t: 10, b: 26 };

const view = { rows: [], next: 0, figures: null, player: null, picksLoaded: 0 };
const $ = (id) => document.getElementById(id);
// Every number is rounded as Python rounds the printed summary (format(x, ',.Nf'), round()): half
// to even on the float's exact binary value. So 412.5 events/s is "412" on the page and in the
// summary (not "413"), and 13.35 s is "13.3" (the float is 13.3499...). Intl.NumberFormat cannot
// do this (it rounds the shortest decimal string, "13.35", so halfEven gives "13.4"); toFixed(100)
// gives the exact decimal expansion of any double above ~1e-15, which is rounded here by hand.
function pyRound(x, d = 0) {
  if (!Number.isFinite(x) || Math.abs(x) >= 1e21) return String(x);
  const [ip, fp] = Math.abs(x).toFixed(100).split('.');
  const kept = ip + fp.slice(0, d);
  const rest = fp.slice(d);
  const odd = Number(kept[kept.length - 1]) % 2 === 1;
  const up = rest[0] > '5' || (rest[0] === '5' && (/[1-9]/.test(rest.slice(1)) || odd));
  const digits = (up ? BigInt(kept) + 1n : BigInt(kept)).toString().padStart(d + 1, '0');
  const int = digits.slice(0, digits.length - d).replace(/\B(?=(\d{3})+(?!\d))/g, ',');
  return `${x < 0 ? '-' : ''}${int}${d ? `.${digits.slice(digits.length - d)}` : ''}`;
}
// A figure: whole, or with up to one decimal (a trailing .0 dropped).
function fmt(v, digits = 0) {
  if (v === null || v === undefined || Number.isNaN(v)) return '-';
  const s = pyRound(v, digits ? 1 : 0);
  return s.endsWith('.0') ? s.slice(0, -2) : s;
}
function fmtMs(v) {
  if (v === null || v === undefined) return '-';
  return v >= 10000 ? `${fmt(v / 1000, 1)} s` : `${fmt(v)} ms`;
}
function sum(obj) {
  return Object.values(obj || {}).reduce((a, b) => a + b, 0);
}
function el(tag, text, cls) {
  const e = document.createElement(tag);
  if (text !== undefined && text !== null) e.textContent = String(text);
  if (cls) e.className = cls;
  return e;
}
function svgEl(tag, attrs, text) {
  const e = document.createElementNS(SVGNS, tag);
  for (const [k, v] of Object.entries(attrs || {})) e.setAttribute(k, String(v));
  if (text !== undefined) e.textContent = String(text);
  return e;
}
function setFigure(id, value, text) {
  const e = $(id);
  if (!e) return;
  e.dataset.value = value === null || value === undefined ? '' : String(value);
  e.textContent = text !== undefined ? text : fmt(value);
}
function setText(id, text) {
  const e = $(id);
  if (e) e.textContent = text;
}

// -- charts ----------------------------------------------------------------------------------
// The smallest 1, 2, 2.5 or 5 times a power of ten at or above v.
function niceStep(v) {
  if (!(v > 0)) return 1;
  const p = 10 ** Math.floor(Math.log10(v));
  for (const m of [1, 2, 2.5, 5, 10]) if (m * p >= v * (1 - 1e-9)) return m * p;
  return 10 * p;
}
// A y-axis top with four gridlines at round values.
const niceMax = (v) => 4 * niceStep(v / 4);
// The fraction digits that show every multiple of step exactly (0.25 -> 2, 2.5 -> 1, 5 -> 0).
function decimalsFor(step) {
  for (let d = 0; d < 6; d++) {
    const scaled = step * 10 ** d;
    if (Math.abs(scaled - Math.round(scaled)) < 1e-6 * Math.max(1, scaled)) return d;
  }
  return 6;
}
// An axis label: the same number of decimals on every tick of the axis, enough for its step
// (0, 0.25, 0.50, 0.75, 1.00; not 0.3 and 0.8), in thousands (k) or millions (M) when large.
function tickLabel(v, step, top) {
  const [div, suffix] = top >= 1e6 ? [1e6, 'M'] : top >= 1e4 ? [1e3, 'k'] : [1, ''];
  return v === 0 ? '0' : pyRound(v / div, decimalsFor(step / div)) + suffix;
}
function yAxis(svg, ymax, Y, x, anchor, cls) {
  for (let i = 0; i <= 4; i++) {
    const v = (ymax * i) / 4;
    svg.append(svgEl('text', { x, y: Y(v) + 4, 'text-anchor': anchor, class: cls, 'data-v': v }, tickLabel(v, ymax / 4, ymax)));
  }
}
const isNum = (y) => y !== null && y !== undefined && !Number.isNaN(y);

// series: [{name, values: [[x, y|null], ...], axis?: 'right'}]; a null y breaks the line, and a
// point with no drawn neighbour (both null or absent) is drawn as a dot, so a lone second's value
// is on the chart. Series with axis 'right' get their own scale, labelled on the right.
function lineChart(id, series, opts = {}) {
  const svg = $(id);
  svg.replaceChildren();
  svg.setAttribute('viewBox', `0 0 ${W} ${H}`);
  const right = series.filter((s) => s.axis === 'right');
  const left = series.filter((s) => s.axis !== 'right');
  const m = { ...M, r: right.length ? M.l : M.r };
  const pw = W - m.l - m.r;
  const ph = H - m.t - m.b;
  const xs = series.flatMap((s) => s.values.map((p) => p[0]));
  const yOf = (list) => list.flatMap((s) => s.values.map((p) => p[1]).filter(isNum));
  const ys = yOf(series);
  if (!xs.length || !ys.length) {
    svg.append(svgEl('text', { x: W / 2, y: H / 2, 'text-anchor': 'middle', class: 'empty' }, opts.empty || 'no data yet'));
    renderLegend(opts.legend, series);
    return;
  }
  const xmax = Math.max(...xs, 1);
  const X = (x) => m.l + (x / xmax) * pw;
  const scale = (ymax) => (y) => m.t + ph - (y / ymax) * ph;
  const ymaxL = niceMax(Math.max(...yOf(left), 0));
  const ymaxR = niceMax(Math.max(...yOf(right), 0));
  const YL = scale(ymaxL);
  const YR = scale(ymaxR);
  for (let i = 0; i <= 4; i++) {
    const y = YL((ymaxL * i) / 4);
    svg.append(svgEl('line', { x1: m.l, x2: W - m.r, y1: y, y2: y, class: 'grid-line' }));
  }
  if (left.length) yAxis(svg, ymaxL, YL, m.l - 6, 'end', 'tick-left');
  if (right.length) yAxis(svg, ymaxR, YR, W - m.r + 6, 'start', 'tick-right');
  const step = niceStep(xmax / 6);
  for (let x = 0; x <= xmax + 1e-9; x += step) {
    svg.append(svgEl('text', { x: X(x), y: H - 8, 'text-anchor': 'middle', class: 'tick-x' }, `${tickLabel(x, step, 0)} s`));
  }
  svg.append(svgEl('line', { x1: m.l, x2: m.l, y1: m.t, y2: m.t + ph, class: 'axis' }));
  if (right.length) svg.append(svgEl('line', { x1: W - m.r, x2: W - m.r, y1: m.t, y2: m.t + ph, class: 'axis' }));
  svg.append(svgEl('line', { x1: m.l, x2: W - m.r, y1: m.t + ph, y2: m.t + ph, class: 'axis' }));
  series.forEach((s, i) => {
    const Y = s.axis === 'right' ? YR : YL;
    const color = s.color || COLORS[i % COLORS.length];
    const v = s.values;
    let d = '';
    const dots = [];
    for (let k = 0; k < v.length; k++) {
      const [x, y] = v[k];
      if (!isNum(y)) continue;
      const before = k > 0 && isNum(v[k - 1][1]);
      const after = k + 1 < v.length && isNum(v[k + 1][1]);
      if (!before && !after) dots.push([x, y]);
      else d += `${before ? 'L' : 'M'}${X(x).toFixed(1)},${Y(y).toFixed(1)}`;
    }
    const attrs = { stroke: color, class: 'series', 'data-series': s.name, 'data-axis': s.axis || 'left' };
    if (s.dash) attrs['stroke-dasharray'] = s.dash;
    const path = svgEl('path', { d, ...attrs });
    path.append(svgEl('title', {}, s.name));
    svg.append(path);
    for (const [x, y] of dots) {
      const dot = svgEl('circle', { cx: X(x).toFixed(1), cy: Y(y).toFixed(1), r: 3, fill: color, class: 'point', 'data-series': s.name });
      dot.append(svgEl('title', {}, `${s.name}: ${fmt(y, 1)} at ${fmt(x, 1)} s`));
      svg.append(dot);
    }
  });
  renderLegend(opts.legend, series);
}

// During the run a legend entry gives the series' latest value; after it, the run's peak.
function renderLegend(id, series) {
  const box = $(id);
  if (!box) return;
  const finished = document.body.dataset.phase === 'finished';
  box.replaceChildren(
    ...series.map((s, i) => {
      const item = el('span');
      const sw = el('span', null, 'swatch');
      sw.style.background = s.color || COLORS[i % COLORS.length];
      const ys = s.values.map((p) => p[1]).filter((y) => y !== null && y !== undefined);
      let note = '';
      if (ys.length) note = finished ? ` (peak ${fmt(Math.max(...ys), 1)})` : ` (now ${fmt(ys[ys.length - 1], 1)})`;
      item.append(sw, s.name + (s.axis === 'right' ? ' (right axis)' : '') + note);
      return item;
    }),
  );
}

// One stacked bar per partition: events checkpointed (blue) and the backlog above it (orange).
function partitionChart(id, partitions) {
  const svg = $(id);
  svg.replaceChildren();
  svg.setAttribute('viewBox', `0 0 ${W} ${H}`);
  if (!partitions.length) {
    svg.append(svgEl('text', { x: W / 2, y: H / 2, 'text-anchor': 'middle', class: 'empty' }, 'no partitions (a live hub)'));
    return;
  }
  const pw = W - M.l - M.r;
  const ph = H - M.t - M.b;
  const ymax = niceMax(Math.max(...partitions.map((q) => q.tail), 1));
  const Y = (y) => M.t + ph - (y / ymax) * ph;
  for (let i = 0; i <= 4; i++) {
    const v = (ymax * i) / 4;
    svg.append(svgEl('line', { x1: M.l, x2: W - M.r, y1: Y(v), y2: Y(v), class: 'grid-line' }));
  }
  yAxis(svg, ymax, Y, M.l - 6, 'end', 'tick-left');
  const bw = pw / partitions.length;
  const every = Math.ceil(partitions.length / 32);
  partitions.forEach((q, i) => {
    const x = M.l + i * bw;
    const done = q.checkpoint + 1;
    const title = `partition ${q.id}: ${q.tail} events in the log, checkpoint at ${q.checkpoint}, backlog ${q.backlog}`;
    const bar = (from, to, cls, fill) => {
      const r = svgEl('rect', {
        x: x + bw * 0.15, y: Y(to), width: Math.max(1, bw * 0.7), height: Math.max(0, Y(from) - Y(to)), class: cls, fill,
      });
      r.append(svgEl('title', {}, title));
      svg.append(r);
    };
    bar(0, done, 'checkpointed', COLORS[0]);
    bar(done, done + q.backlog, 'backlog', COLORS[2]);
    if (i % every === 0) svg.append(svgEl('text', { x: x + bw / 2, y: H - 8, 'text-anchor': 'middle' }, q.id));
  });
  svg.append(svgEl('line', { x1: M.l, x2: W - M.r, y1: M.t + ph, y2: M.t + ph, class: 'axis' }));
}

// -- tables ----------------------------------------------------------------------------------
function kvTable(id, entries, emptyText = 'none') {
  const t = $(id);
  t.replaceChildren();
  if (!entries.length) {
    const tr = el('tr');
    tr.append(el('td', emptyText, 'none'));
    t.append(tr);
    return;
  }
  for (const [k, ...vals] of entries) {
    const tr = el('tr');
    tr.dataset.key = k;
    tr.append(el('td', k));
    for (const v of vals) {
      const td = el('td', typeof v === 'number' ? fmt(v, Number.isInteger(v) ? 0 : 1) : v, 'num');
      if (typeof v === 'number') td.dataset.value = String(v);
      tr.append(td);
    }
    t.append(tr);
  }
}

// -- figures ---------------------------------------------------------------------------------
function render(f) {
  document.body.dataset.phase = f.phase;
  const badge = $('phase');
  badge.textContent = f.phase;
  badge.className = `badge ${f.phase}`;
  if (f.phase === 'starting') return;
  const p = f.pipeline;
  const h = f.host;
  const r = f.rates;
  const s = f.summary;
  const total = f.source.total;
  const done = f.events_checkpointed;
  $('progress-bar').style.width = total ? `${Math.min(100, (100 * done) / total).toFixed(1)}%` : '0';
  setText('progress-text', `${fmt(done)}${total ? ` / ${fmt(total)}` : ''} events checkpointed, ${fmt(f.elapsed_s, 1)} s`);

  const perS = (v) => (v === null || v === undefined ? '' : `${fmt(v, 1)} /s`);
  const avg = (n) => (s && s.wall_seconds > 0 ? `run avg ${fmt(n / s.wall_seconds, 1)} /s` : '');
  const actionsTotal = sum(p.actions);
  setFigure('fig-events_in', p.events_in);
  setText('rate-events_in', r ? perS(r.events_in) : avg(p.events_in));
  setFigure('fig-signals', p.signals);
  setText('rate-signals', r ? perS(r.signals) : avg(p.signals));
  setFigure('fig-entity_operations', p.entity_operations);
  setText('rate-entity_operations', r ? perS(r.entity_operations) : avg(p.entity_operations));
  setFigure('fig-actions', actionsTotal);
  setText('rate-actions', r ? perS(sum(r.actions)) : avg(actionsTotal));
  setFigure('fig-dropped', sum(p.dropped));
  setText('rate-dropped', r ? perS(r.dropped) : '');
  setFigure('fig-dead_lettered', sum(p.dead_lettered));
  setText('rate-dead_lettered', r ? perS(r.dead_lettered) : '');
  setFigure('fig-latency_p50', p.latency_ms.p50, fmtMs(p.latency_ms.p50));
  setFigure('fig-latency_p99', p.latency_ms.p99, fmtMs(p.latency_ms.p99));
  setText('sub-latency_count', `${fmt(p.latency_ms.count)} actions written`);
  setFigure('fig-batches_parked', p.batches_parked);
  setText('sub-retries', `${fmt(h.retries)} retries, ${fmt(h.failed_batches)} failed`);
  setFigure('fig-write_failures', p.write_failures);
  $('fig-write_failures').classList.toggle('bad', p.write_failures > 0);
  setText('sub-deadletter_write_failures', `actions; dead letters: ${fmt(p.deadletter_write_failures)}, outbox expired: ${fmt(p.outbox_expired)}`);
  setFigure('fig-outbox_max', p.outbox.max, `max ${fmt(p.outbox.max)}`);
  setText('sub-outbox', `${fmt(p.outbox.non_empty)} of ${fmt(p.outbox.operations)} operations left a non-empty outbox`);
  setFigure('fig-entity_queue_depth', h.entity_queue_depth);
  setText('sub-backlog_events', `backlog ${fmt(h.backlog_events)} events (max lag ${fmt(h.max_lag)})`);

  const rateOf = (obj, k) => (r && r[obj] ? r[obj][k] || 0 : null);
  kvTable('tbl-actions', Object.entries(p.actions).map(([k, v]) => (r ? [k, v, `${fmt(rateOf('actions', k), 1)} /s`] : [k, v])));
  kvTable('tbl-rejections', Object.entries(p.rejections));
  kvTable('tbl-dropped', Object.entries(p.dropped));
  kvTable('tbl-dead_lettered', Object.entries(p.dead_lettered));
  kvTable('tbl-host', [
    ['events appended', f.source.appended],
    ['events checkpointed', f.events_checkpointed],
    ['trigger batches', h.trigger_batches],
    ['redelivered events', h.redelivered_events],
    ['entity batches', h.entity_batches],
    ['entity batch failures', h.entity_batch_failures],
    ['operation errors', h.entity_operation_errors],
    ['duplicates', p.duplicates],
    ['scored', p.scored],
  ]);

  const note = $('finished-note');
  if (s) {
    note.hidden = false;
    note.textContent = `Run complete: ${fmt(s.events_processed)} events in ${pyRound(s.wall_seconds, 1)} s ` +
      `(${fmt(s.events_per_second)} events/s). Report: ${f.report || 'not written (--no-report)'}. ` +
      'The figures stay live: an erase below shows up as one more entity operation.';
  } else {
    note.hidden = true;
  }

  const rows = view.rows;
  const line = (key) => rows.map((row) => [row.t, row[key] ?? null]);
  lineChart('chart-throughput', [
    { name: 'events in', values: line('events_in') },
    { name: 'signals', values: line('signals'), axis: 'right' },
    // Dashed: with one operation per signal the two lines coincide, and both must stay visible.
    { name: 'entity operations', values: line('entity_operations'), axis: 'right', dash: '6 4' },
    { name: 'dead letters', values: line('dead_lettered'), color: COLORS[3] },
  ], { legend: 'legend-throughput' });
  const types = [...new Set(rows.flatMap((row) => Object.keys(row.actions || {})).concat(Object.keys(p.actions)))].sort();
  lineChart('chart-actions', types.map((t) => ({ name: t, values: rows.map((row) => [row.t, (row.actions || {})[t] || 0]) })),
    { legend: 'legend-actions', empty: 'no actions yet' });
  lineChart('chart-latency', [
    { name: 'p50', values: line('latency_p50_ms') },
    { name: 'p99', values: line('latency_p99_ms'), color: COLORS[3] },
  ], { legend: 'legend-latency', empty: 'no actions written yet' });
  lineChart('chart-backlog', [
    { name: 'events not checkpointed', values: line('backlog_events') },
    { name: 'entity operations queued', values: line('queued_operations'), color: COLORS[2] },
  ], { legend: 'legend-backlog' });
  partitionChart('chart-partitions', f.partitions);
  const busiest = [...f.partitions].sort((a, b) => b.backlog - a.backlog)[0];
  setText('partitions-text', f.partitions.length
    ? `${f.partitions.length} partitions, ${fmt(f.partitions.reduce((n, q) => n + q.backlog, 0))} events behind` +
      (busiest && busiest.backlog ? `; most behind: partition ${busiest.id} (${fmt(busiest.backlog)})` : '')
    : '');
}

async function poll() {
  try {
    const resp = await fetch(`/devhost/api/figures?since=${view.next}`, { cache: 'no-store' });
    if (!resp.ok) throw new Error(`HTTP ${resp.status}`);
    const f = await resp.json();
    if (f.series) {
      if (f.series.since !== view.next) view.rows = view.rows.slice(0, f.series.since);
      view.rows.push(...f.series.rows);
      view.next = f.series.next;
    }
    const phaseChanged = view.figures !== null && view.figures.phase !== f.phase;
    view.figures = f;
    render(f);
    const st = $('status');
    st.className = 'status muted';
    st.textContent = `updated ${new Date().toLocaleTimeString()}`;
    // The players to pick: at the start, every 10 s of the run, and once more when it finishes.
    if (f.phase !== 'starting' && (view.picksLoaded === 0 || phaseChanged || (f.phase === 'running' && Date.now() - view.picksLoaded > 10000))) {
      loadPicks();
      loadWhatif();
    }
  } catch (err) {
    const st = $('status');
    st.className = 'status down';
    st.textContent = `devhost not reachable (${err.message}); retrying`;
    $('phase').className = 'badge down';
    $('phase').textContent = 'unreachable';
    document.body.dataset.phase = 'unreachable';
  } finally {
    setTimeout(poll, POLL_MS);
  }
}

// -- the inspector ---------------------------------------------------------------------------
async function loadPicks() {
  view.picksLoaded = Date.now();
  const box = $('player-picks');
  try {
    const resp = await fetch('/devhost/api/players', { cache: 'no-store' });
    const data = await resp.json();
    box.replaceChildren();
    const group = (label, ids, cls) => {
      if (!ids.length) return;
      box.append(el('span', label));
      for (const { id, text } of ids) {
        const b = el('button', text, `pick ${cls}`);
        b.type = 'button';
        b.dataset.player = id;
        b.addEventListener('click', () => inspect(id));
        box.append(b);
      }
    };
    group('with sent actions:', data.with_actions.map((x) => ({ id: x.playerId, text: `${x.playerId} (${x.actions})` })), 'with-actions');
    group('recently active:', data.recent.map((id) => ({ id, text: id })), 'recent');
    if (data.error) box.append(el('span', `(actions not readable: ${data.error})`));
  } catch (err) {
    box.replaceChildren(el('span', `players not available: ${err.message}`));
  }
}

function renderValue(key, v) {
  if (v === null || v === undefined) return '-';
  if (typeof v === 'number' && /Ms$/.test(key) && v > 1e11) return `${new Date(v).toISOString()}`;
  if (Array.isArray(v)) return v.length ? v.join(', ') : '(empty)';
  if (typeof v === 'object') {
    const parts = Object.entries(v).map(([k, x]) => `${k}: ${typeof x === 'number' && x > 1e11 ? new Date(x).toISOString() : x}`);
    return parts.length ? parts.join('; ') : '(none)';
  }
  return String(v);
}

function docTable(id, docs, columns) {
  const t = $(id);
  t.replaceChildren();
  if (!docs.length) {
    const tr = el('tr');
    tr.append(el('td', 'none', 'none'));
    t.append(tr);
    return;
  }
  const head = el('tr');
  for (const [, label] of columns) head.append(el('th', label));
  t.append(head);
  for (const d of docs) {
    const tr = el('tr');
    tr.dataset.id = d.id;
    for (const [key] of columns) {
      const v = d[key];
      tr.append(el('td', Array.isArray(v) ? v.join(', ') : v ?? '-', key === 'reasons' || key === 'detail' || key === 'rawPreview' ? 'mono wrap' : 'mono'));
    }
    t.append(tr);
  }
}

async function loadState(id) {
  const resp = await fetch(`/api/players/${encodeURIComponent(id)}`, { cache: 'no-store' });
  let body = null;
  try {
    body = await resp.json();
  } catch {
    body = { error: `HTTP ${resp.status}` };
  }
  const table = $('player-state');
  table.dataset.status = String(resp.status);
  table.replaceChildren();
  const status = $('player-state-status');
  status.className = resp.status === 200 ? 'muted' : 'status-404';
  status.textContent = resp.status === 200 ? 'HTTP 200' : `HTTP ${resp.status}: ${body && body.error ? body.error : ''}`;
  if (resp.status === 200 && body) {
    for (const [k, v] of Object.entries(body)) {
      const tr = el('tr');
      tr.dataset.key = k;
      tr.append(el('th', k), el('td', renderValue(k, v), 'mono wrap'));
      table.append(tr);
    }
  }
  return resp.status;
}

async function loadDecisions(id) {
  // The app's read API tells a player's decisions apart: sent, holdout, suppressed per rule, shadow.
  const resp = await fetch(`/api/players/${encodeURIComponent(id)}/actions`, { cache: 'no-store' });
  let body = null;
  try {
    body = await resp.json();
  } catch {
    body = { error: `HTTP ${resp.status}` };
  }
  const status = $('player-decisions-status');
  status.dataset.status = String(resp.status);
  status.textContent = resp.ok ? `GET /api/players/{id}/actions: HTTP 200, as of ${body.asOf}` : `HTTP ${resp.status}: ${body.error || ''}`;
  const counted = (cid, n) => {
    const c = $(cid);
    c.textContent = n === null ? '?' : String(n);
    if (n === null) delete c.dataset.value; else c.dataset.value = String(n);
  };
  if (!resp.ok) {
    for (const cid of ['player-actions-count', 'player-holdout-count', 'player-suppressed-count']) counted(cid, null);
    for (const tid of ['player-actions', 'player-holdout', 'player-suppressed', 'player-outcomes']) $(tid).replaceChildren();
    return null;
  }
  const outcome = (d) => ({ ...d, metAt: d.outcome && d.outcome.metAt ? d.outcome.metAt : '-', windowEnd: d.outcome ? d.outcome.windowEnd : '-' });
  counted('player-actions-count', body.sent.length);
  docTable('player-actions', body.sent.map(outcome), [
    ['type', 'type'], ['score', 'score'], ['eventTime', 'event time'], ['status', 'status'], ['respondedAt', 'responded'],
    ['outcomeState', 'outcome'], ['metAt', 'met at'], ['reasons', 'reasons'], ['modelVersion', 'model'],
  ]);
  counted('player-holdout-count', body.holdout.length);
  docTable('player-holdout', body.holdout.map(outcome), [
    ['type', 'type'], ['score', 'score'], ['eventTime', 'event time'], ['outcomeState', 'outcome'], ['metAt', 'met at'],
    ['windowEnd', 'window ends'], ['modelVersion', 'model'],
  ]);
  counted('player-suppressed-count', body.suppressed.total);
  const sup = $('player-suppressed');
  sup.replaceChildren();
  const rules = Object.entries(body.suppressed.byRule).sort((a, b) => b[1] - a[1]);
  if (!rules.length) {
    const tr = el('tr');
    tr.append(el('td', 'none', 'none'));
    sup.append(tr);
  }
  for (const [rule, n] of rules) {
    const perType = Object.entries(body.suppressed.byType).filter(([, r]) => r[rule]).map(([t, r]) => `${t} ${r[rule]}`);
    const tr = el('tr');
    tr.dataset.key = rule;
    const td = el('td', String(n), 'num');
    td.dataset.value = String(n);
    tr.append(el('th', rule), td, el('td', perType.join(', '), 'muted'));
    sup.append(tr);
  }
  const out = $('player-outcomes');
  out.replaceChildren();
  const head = el('tr');
  for (const h of ['group', 'met', 'open', 'not met', 'untracked']) head.append(el('th', h));
  out.append(head);
  for (const [group, c] of Object.entries(body.outcomes)) {
    const tr = el('tr');
    tr.dataset.key = group;
    tr.append(el('th', group));
    for (const k of ['met', 'open', 'not_met', 'untracked']) {
      const td = el('td', String(c[k]), 'num');
      td.dataset.value = String(c[k]);
      tr.append(td);
    }
    out.append(tr);
  }
  const triggers = body.shadow.reduce((a, d) => a + (d.count || 0), 0);
  const agree = body.shadow.reduce((a, d) => a + (d.agree || 0), 0);
  setText('player-shadow', body.shadow.length
    ? `Challenger in shadow: ${triggers} triggers scored by both models in ${body.shadow.length} hour(s), ${agree} decided alike.`
    : 'No challenger aggregates (no CHALLENGER_MODEL).');
  return body;
}

async function loadWhatif() {
  try {
    const resp = await fetch('/devhost/api/whatif', { cache: 'no-store' });
    const body = await resp.json();
    const r = body.report;
    if (!r) {
      setText('whatif-status', body.error ? `${body.path}: ${body.error}` : `no what-if report in ${body.folder} yet`);
      $('whatif-body').hidden = true;
      return;
    }
    const box = $('whatif-body');
    if (box.dataset.path === body.path) return;
    box.dataset.path = body.path;
    box.hidden = false;
    setText('whatif-status', `${body.path} (${r.createdAt})`);
    const over = r.candidate.overrides.length ? `, ${r.candidate.overrides.join(' ')}` : '';
    setText('whatif-title', `${r.source.kind} ${r.source.path || ''}: baseline ${r.baseline.modelVersion}; candidate ${r.candidate.modelVersion}${over}`);
    const t = $('whatif-types');
    t.replaceChildren();
    const head = el('tr');
    const exported = Boolean(r.export);
    const cols = exported ? ['type', 'rows', 'kept', 'changed to', 'by rule'] : ['type', 'sent', 'holdout', 'added', 'removed', 'by rule (+ no longer stops, - now stops)', 'median score'];
    for (const h of cols) head.append(el('th', h));
    t.append(head);
    for (const type of Object.keys(r.scores)) {
      const tr = el('tr');
      tr.dataset.key = type;
      const s = r.scores[type];
      if (exported) {
        const e = r.export.types[type];
        tr.append(el('th', type), el('td', String(e.rows), 'num'), el('td', String(e.kept), 'num'),
          el('td', renderValue('', e.changedTo), 'mono'), el('td', renderValue('', e.byRule), 'mono'));
      } else {
        const b = r.totals.baseline, c = r.totals.candidate, a = r.added[type], d = r.removed[type];
        const why = [...Object.entries(a.byRule).map(([k, n]) => `+${k} ${n}`), ...Object.entries(d.byRule).map(([k, n]) => `-${k} ${n}`)];
        const added = el('td', String(a.total), 'num');
        added.dataset.value = String(a.total);
        added.dataset.col = 'added';
        const removed = el('td', String(d.total), 'num');
        removed.dataset.value = String(d.total);
        removed.dataset.col = 'removed';
        tr.append(el('th', type), el('td', `${b.sent[type]} → ${c.sent[type]}`, 'num'), el('td', `${b.holdout[type]} → ${c.holdout[type]}`, 'num'),
          added, removed, el('td', why.join(', ') || '-', 'mono'),
          el('td', `${s.baseline.quantiles.p50 ?? '-'} → ${s.candidate.quantiles.p50 ?? '-'}`, 'num'));
      }
      t.append(tr);
    }
    kvTable('whatif-rejections', Object.entries(r.rejections || {}).map(([k, v]) => [k, v.change, `${v.baseline} → ${v.candidate}`]));
    const eff = r.effect;
    setText('whatif-effect', eff.available
      ? `Estimated effect (uplift from ${eff.source}): ` + Object.entries(eff.types).map(([k, e]) => `${k} ${e.sentChange >= 0 ? '+' : ''}${e.sentChange} sent × ${e.uplift} = ${e.outcomesChange} outcomes`).join('; ')
      : `Estimated effect: none (${eff.reason}).`);
    const img = $('whatif-png');
    if (body.png) {
      img.src = `${body.png}?${encodeURIComponent(body.path)}`;
      img.hidden = false;
    } else img.hidden = true;
  } catch (err) {
    setText('whatif-status', `what-if report not available: ${err.message}`);
  }
}

async function loadDocuments(id) {
  const resp = await fetch(`/devhost/api/players/${encodeURIComponent(id)}/documents`, { cache: 'no-store' });
  const body = await resp.json();
  if (!resp.ok) {
    setText('player-deadletters-count', '?');
    const tr = el('tr');
    tr.append(el('td', body.error || `HTTP ${resp.status}`, 'none'));
    $('player-deadletters').replaceChildren(tr);
    return null;
  }
  const d = $('player-deadletters-count');
  d.textContent = String(body.deadletters.length);
  d.dataset.value = String(body.deadletters.length);
  docTable('player-deadletters', body.deadletters, [
    ['reason', 'reason'], ['detail', 'detail'], ['partition', 'partition'], ['sequenceNumber', 'seq'], ['receivedAt', 'received'],
  ]);
  return body;
}

async function inspect(id) {
  id = id.trim();
  if (!id) return;
  view.player = id;
  $('player-input').value = id;
  $('player-result').hidden = false;
  $('player-result').dataset.player = id;
  delete $('player-result').dataset.erased;
  setText('player-title', id);
  setText('erase-status', '');
  $('erase-btn').disabled = false;
  await Promise.all([loadState(id), loadDecisions(id), loadDocuments(id)]);
}

async function erase() {
  const id = view.player;
  if (!id || !window.confirm(`Erase player ${id}? This deletes its actions, dead letters and history (DELETE /api/players/${id}).`)) return;
  const btn = $('erase-btn');
  btn.disabled = true;
  const st = $('erase-status');
  const resp = await fetch(`/api/players/${encodeURIComponent(id)}`, { method: 'DELETE' });
  const body = await resp.json().catch(() => ({}));
  st.textContent = `DELETE: HTTP ${resp.status} ${body.status || body.error || ''}; waiting for the entity...`;
  // The erasure runs inside the entity, after the player's queued operations.
  for (let i = 0; i < 40 && view.player === id; i++) {
    const status = await loadState(id);
    const docs = await loadDocuments(id);
    await loadDecisions(id);
    if (status === 404 && docs && !docs.actions.length && !docs.deadletters.length) {
      st.textContent = `erased: state ${status}, no actions, no dead letters`;
      $('player-result').dataset.erased = 'true';
      loadPicks();
      return;
    }
    await new Promise((res) => setTimeout(res, 500));
  }
  st.textContent = 'erasure not visible yet; inspect again later';
  btn.disabled = false;
}

document.addEventListener('DOMContentLoaded', () => {
  $('inspect-form').addEventListener('submit', (ev) => {
    ev.preventDefault();
    inspect($('player-input').value);
  });
  $('erase-btn').addEventListener('click', erase);
  poll();
});
