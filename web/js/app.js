// The page: state in the URL (state.js), data from the server (api.js),
// and the views (flamegraph, top table, sandwich, compare) redrawn from
// both. Changing something the data depends on fetches again; anything
// else only redraws.

import { Answers } from './answers.js';
import { ApiError, api, url } from './api.js';
import { FlameGraph, fit } from './flamegraph.js';
import { formatPercent, formatTime, formatValue, typeLabel } from './format.js';
import { parseSelector, serviceOf, withMatcher } from './query.js';
import { DATA_KEYS, DIFF_KEYS, changed, fromSearch, resolveTime, toSearch, unixSeconds } from './state.js';
import { renderServices } from './services.js';
import { renderChanges, renderMatches, renderTop } from './table.js';
import { Timeline } from './timeline.js';
import { decodeDouble, decodeSingle, findPath, outermostHits, pathOf, searchTree } from './tree.js';

const DEFAULT_MAX_NODES = 32768;
const $ = (id) => document.getElementById(id);

let state = fromSearch(location.search);
let services = [];
const data = { render: null, tree: null, annotations: [], range: null, diff: null, diffTree: null };
// Answers computed on the server from the whole profile (the table, the
// search's coverage, the sandwich, the finder, the services' activity),
// each kept with the request it answers; one arriving redraws.
const answers = new Answers(() => draw());
// Requests in flight: the profile (render and annotations) and the
// comparison each have their own, so changing one never cancels or
// outraces the other.
let controller = null;
let diffController = null;

const tooltip = $('tooltip');
const flame = new FlameGraph($('flame'), tooltip, {
  label: 'Flamegraph',
  onZoom: (path) => update({ zoom: path.join(';') }),
});
const callers = new FlameGraph($('callers'), tooltip, { label: 'Callers' });
const callees = new FlameGraph($('callees'), tooltip, { label: 'Callees' });
const diffGraph = new FlameGraph($('diff'), tooltip, { label: 'Diff flamegraph' });
const timeline = new Timeline($('timeline'), tooltip, { onSelect: onTimeSelect, onAnnotation: showAnnotation });

/** Applies a change of state: pushes it to the history, then fetches or redraws. */
function update(patch, { push = true } = {}) {
  const next = { ...state, ...patch };
  if (toSearch(next) === toSearch(state)) return;
  const previous = state;
  state = next;
  const target = `${location.pathname}${toSearch(state)}`;
  if (push) history.pushState(null, '', target);
  else history.replaceState(null, '', target);
  apply(previous);
}

function apply(previous) {
  if (changed(previous, state, DATA_KEYS) || !data.render) {
    load();
  } else if (state.view === 'diff' && (changed(previous, state, DIFF_KEYS) || previous.view !== 'diff' || !data.diff)) {
    loadDiff();
  } else {
    draw();
  }
}

window.addEventListener('popstate', () => {
  const previous = state;
  state = fromSearch(location.search);
  apply(previous);
});

// ---------------------------------------------------------------- loading

function renderParams() {
  return {
    query: state.query,
    profile_type: state.type,
    from: state.from,
    until: state.until,
    maxNodes: state.maxNodes || DEFAULT_MAX_NODES,
  };
}

async function load() {
  controller?.abort();
  diffController?.abort();
  controller = new AbortController();
  const { signal } = controller;
  syncControls();
  if (!state.query) {
    data.render = null;
    data.tree = null;
    setStatus('empty', services.length ? 'Pick a service.' : 'No profiles stored yet: send some (see the API documentation) and reload.');
    draw();
    return;
  }
  setStatus('loading', 'Loading…');
  const now = Date.now();
  try {
    const [render, annotations] = await Promise.all([
      api.render(renderParams(), signal),
      api.annotations({ query: state.query, from: state.from, until: state.until }, signal),
    ]);
    data.render = render;
    data.tree = decodeSingle(render.flamebearer ?? {});
    answers.forget();
    data.annotations = annotations?.annotations ?? [];
    data.range = { fromMs: resolveTime(state.from, now), untilMs: resolveTime(state.until, now) };
    showQueryError(null);
    if (state.view === 'diff') await loadDiff();
    else {
      data.diff = null;
      draw();
    }
  } catch (e) {
    if (e.name !== 'AbortError') showError(e);
  }
}

// The two windows of a time-range comparison: as set, else the selected
// range split at its latest annotation (a deploy), or in half without one.
function compareWindows() {
  if (state.leftFrom && state.leftUntil && state.rightFrom && state.rightUntil) {
    return [state.leftFrom, state.leftUntil, state.rightFrom, state.rightUntil];
  }
  const now = Date.now();
  const a = resolveTime(state.from, now);
  const b = Math.min(resolveTime(state.until, now), now);
  const marks = data.annotations.map((m) => m.time).filter((t) => t > a && t < b);
  const split = marks.length ? Math.max(...marks) : (a + b) / 2;
  return [unixSeconds(a), unixSeconds(split), unixSeconds(split), unixSeconds(b)];
}

function diffParams() {
  const common = {
    profile_type: state.type,
    maxNodes: state.maxNodes || DEFAULT_MAX_NODES,
    limit: 100,
    colorBlind: state.palette === 'colorblind' ? 'true' : '',
  };
  if (state.compare === 'labels') {
    return {
      ...common,
      leftQuery: state.leftQuery || state.query,
      rightQuery: state.rightQuery || state.query,
      leftFrom: state.from,
      leftUntil: state.until,
      rightFrom: state.from,
      rightUntil: state.until,
    };
  }
  const [leftFrom, leftUntil, rightFrom, rightUntil] = compareWindows();
  return { ...common, query: state.query, leftFrom, leftUntil, rightFrom, rightUntil };
}

async function loadDiff() {
  diffController?.abort();
  diffController = new AbortController();
  const { signal } = diffController;
  if (!state.query && !(state.leftQuery && state.rightQuery)) return draw();
  setStatus('loading', 'Comparing…');
  try {
    const d = await api.diff(diffParams(), signal);
    data.diff = d;
    data.diffTree = decodeDouble(d.flamebearer ?? {}, d.leftTicks ?? 0, d.rightTicks ?? 0);
    showQueryError(null);
    draw();
  } catch (e) {
    if (e.name !== 'AbortError') showError(e);
  }
}

// ---------------------------------------------------------------- drawing

function draw() {
  syncControls();
  for (const view of ['services', 'flame', 'table', 'sandwich', 'diff']) $(`view-${view}`).hidden = state.view !== view;
  if (state.view === 'services') return drawServices();
  const tree = data.tree;
  drawTimeline();
  updateExports();
  if (!tree) return;
  const meta = data.render.metadata ?? {};
  if (state.view === 'diff') return drawDiff();
  if (tree.numTicks === 0) {
    const r = data.range;
    setStatus('empty', `No samples for ${state.query} between ${formatTime(r.fromMs)} and ${formatTime(r.untilMs)}.`);
    offerLatest();
  } else {
    const nodes = data.render.callTreeNodes?.total ?? tree.n;
    setStatus('ready', `${formatValue(tree.numTicks, meta)} in ${nodes - 1} call-tree nodes.`);
    offerMoreNodes();
  }
  if (state.view === 'flame') drawFlame(tree, meta);
  else if (state.view === 'table') drawTable(tree, meta);
  else drawSandwich(tree, meta);
}

function drawTimeline() {
  if (!data.render || !data.range) return timeline.show(null);
  const bands = [];
  if (state.view === 'diff' && state.compare === 'time') {
    const w = compareWindows().map((t) => resolveTime(t));
    bands.push({ fromMs: w[0], untilMs: w[1], kind: 'baseline' }, { fromMs: w[2], untilMs: w[3], kind: 'comparison' });
  }
  timeline.show({
    timeline: data.render.timeline,
    fromMs: data.range.fromMs,
    untilMs: data.range.untilMs,
    meta: data.render.metadata,
    annotations: data.annotations,
    bands,
  });
}

/** The data parameters every whole-profile answer shares. */
function profileParams() {
  return { query: state.query, profile_type: state.type, from: state.from, until: state.until };
}

/** Matching functions listed under the search. */
const SEARCH_LIST = 10;
/** The drawn boxes a search matched (outermost, largest first), and which one Next zoomed to. */
let searchMatches = [];
let searchCursor = -1;
let searchedFor = '';

/** Zooms to the next (`step` 1) or previous (-1) matching box. */
function stepMatch(step) {
  if (!searchMatches.length || !data.tree) return;
  const n = searchMatches.length;
  searchCursor = (((searchCursor + step) % n) + n) % n;
  update({ zoom: pathOf(data.tree, searchMatches[searchCursor]).join(';') });
}

function drawFlame(tree, meta) {
  const hits = searchTree(tree, state.search);
  const zoom = findPath(tree, state.zoom ? state.zoom.split(';') : []);
  flame.show(tree, { meta, orient: state.orient, zoom, hits: hits?.hits });
  // Highlighting marks the drawn boxes; the share is the whole profile's.
  const cover = state.search.trim()
    ? answers.get('cover', { ...profileParams(), filter: state.search, limit: SEARCH_LIST }, api.functions)
    : null;
  renderMatches($('search-list'), cover, meta, (name) => update({ search: name }));
  searchMatches = hits ? outermostHits(tree, hits.hits) : [];
  if (searchedFor !== state.search) searchCursor = -1;
  searchedFor = state.search;
  $('search-prev').hidden = searchMatches.length === 0;
  $('search-next').hidden = searchMatches.length === 0;
  $('search-result').textContent = !cover
    ? ''
    : cover instanceof ApiError
      ? cover.message
      : `${cover.matched} ${cover.matched === 1 ? 'function matches' : 'functions match'}, ` +
        `in ${formatPercent(cover.total ? cover.covered / cover.total : 0)} of the total`;
  const crumbs = $('breadcrumb');
  crumbs.replaceChildren();
  const path = zoom > 0 ? pathOf(tree, zoom) : [];
  ['all', ...path].forEach((name, k) => {
    const b = document.createElement('button');
    b.type = 'button';
    b.textContent = name;
    if (k === path.length) b.setAttribute('aria-current', 'true');
    b.addEventListener('click', () => update({ zoom: path.slice(0, k).join(';') }));
    crumbs.append(b);
  });
  const focus = $('focus-fn');
  focus.hidden = zoom === 0;
  if (zoom > 0) {
    const name = tree.names[tree.name[zoom]];
    focus.textContent = `Sandwich of ${name}`;
    focus.onclick = () => update({ view: 'sandwich', fn: name });
  }
}

const TABLE_ROWS = 500;

function drawTable(tree, meta) {
  const params = { ...profileParams(), filter: state.filter, sort: state.sort, dir: state.dir, limit: TABLE_ROWS };
  const top = answers.get('table', params, api.functions);
  if (!top || top instanceof ApiError) {
    $('table-count').textContent = top?.message ?? 'Loading…';
    return;
  }
  $('table-count').textContent = renderTop($('top'), top.functions, {
    sort: state.sort,
    dir: state.dir,
    counts: { matched: top.matched, count: top.count },
    meta,
    numTicks: top.total,
    onSort: (key) => {
      const dir = key === state.sort ? (state.dir === 'asc' ? 'desc' : 'asc') : key === 'name' ? 'asc' : 'desc';
      update({ sort: key, dir });
    },
    onPick: (name) => update({ view: 'sandwich', fn: name }),
    onFind: (name) => update({ view: 'flame', search: name, zoom: '' }),
  });
}

/** Functions whose names hold what was typed in the finder, busiest first. */
function fillFinder(typed) {
  const found = answers.get('finder', { ...profileParams(), filter: typed, limit: 50 }, api.functions);
  const names = $('fn-names');
  const list = found && !(found instanceof ApiError) ? found.functions.map((r) => r.name) : [];
  if (names.dataset.key !== typed + list.length) {
    names.replaceChildren(...list.map((n) => new Option(n)));
    names.dataset.key = typed + list.length;
  }
  return list;
}

function drawSandwich(tree, meta) {
  let fn = state.fn;
  if (!fn) {
    // The function with the most self time of the whole profile.
    fn = fillFinder('')[0];
    if (!fn) {
      callers.show(null);
      callees.show(null);
      $('fn-summary').textContent = tree.numTicks ? 'Loading…' : '';
      return;
    }
  } else {
    fillFinder(document.activeElement === $('fn') ? $('fn').value : fn);
  }
  const s = answers.get('sandwich', { ...profileParams(), function: fn, maxNodes: state.maxNodes || DEFAULT_MAX_NODES }, api.sandwich);
  if (!s || s instanceof ApiError) {
    callers.show(null);
    callees.show(null);
    const similar = s ? fillFinder(fn).slice(0, 3) : [];
    $('fn-summary').textContent = !s
      ? 'Loading…'
      : s.status === 404 && similar.length
        ? `${fn} is not in this profile; did you mean ${similar.join(', ')}?`
        : s.status === 404
          ? `${fn} is not in this profile.`
          : s.message;
    return;
  }
  callers.show(decodeSingle(s.callers), { meta, orient: 'flame' });
  callees.show(decodeSingle(s.callees), { meta, orient: 'icicle' });
  const share = (v) => formatPercent(s.totalValue ? v / s.totalValue : 0);
  $('fn-summary').textContent =
    `${fn}: total ${formatValue(s.total, meta)} (${share(s.total)}), ` +
    `self ${formatValue(s.self, meta)} (${share(s.self)})`;
}

function drawDiff() {
  const d = data.diff;
  if (!d) return;
  const meta = d.metadata ?? data.render?.metadata ?? {};
  diffGraph.show(data.diffTree, { meta, palette: d.palette });
  const palette = d.palette ?? {};
  document.querySelector('.legend .grew').style.background = palette.grew ?? '';
  document.querySelector('.legend .shrank').style.background = palette.shrank ?? '';
  renderChanges($('regressions'), $('improvements'), d.functions ?? [], (name) => update({ view: 'sandwich', fn: name }));
  const left = d.leftTicks ?? 0;
  const right = d.rightTicks ?? 0;
  if (!left || !right) {
    setStatus('empty', `No samples in the ${!left ? 'baseline' : 'comparison'}: pick a window or label set with data.`);
  } else {
    setStatus('ready', `Baseline ${formatValue(left, meta)}, comparison ${formatValue(right, meta)}; compared by share of each side's total.`);
  }
}

// ---------------------------------------------------------------- controls

/** The services' activity in the selected range and type, busiest first. */
function activity() {
  return answers.get('activity', { profile_type: state.type, from: state.from, until: state.until }, api.activity);
}

function syncControls() {
  const service = serviceOf(state.query);
  const sel = $('service');
  let names = services.map((s) => s.name);
  const active = activity();
  const idle = new Set();
  if (active && !(active instanceof ApiError)) {
    const rank = new Map(active.services.map((s, i) => [s.name, s.total > 0 ? i : Infinity]));
    for (const n of names) if (!(rank.get(n) < Infinity)) idle.add(n);
    if (state.order === 'activity') {
      names = [...names].sort((a, b) => (rank.get(a) ?? Infinity) - (rank.get(b) ?? Infinity) || a.localeCompare(b));
    }
  }
  if (service && !names.includes(service)) names.push(service);
  const label = (n) => (idle.has(n) ? `${n} (no samples)` : n);
  setOptions(sel, [['', names.length ? 'Choose a service…' : 'No services yet'], ...names.map((n) => [n, label(n)])], service);
  $('service-order').textContent = state.order === 'activity' ? 'A–Z' : 'Busiest';
  $('service-order').title =
    state.order === 'activity' ? 'Busiest first now: order by name' : 'By name now: busiest first';
  const types = new Set();
  for (const s of services) if (!service || s.name === service) s.profileTypes.forEach((t) => types.add(t));
  if (state.type) types.add(state.type);
  setOptions($('type'), [...types].sort().map((t) => [t, typeLabel(t)]), state.type);
  if (document.activeElement !== $('query')) $('query').value = state.query;
  for (const id of ['search', 'filter']) if (document.activeElement !== $(id)) $(id).value = state[id];
  if (document.activeElement !== $('fn')) $('fn').value = state.fn;
  $('orient').textContent = state.orient === 'icicle' ? 'Icicle' : 'Flame';
  $('orient').setAttribute('aria-pressed', String(state.orient === 'flame'));
  for (const b of document.querySelectorAll('.tabs [data-view]')) {
    b.setAttribute('aria-selected', String(b.dataset.view === state.view));
  }
  const chips = $('chips');
  chips.replaceChildren(
    ...(parseSelector(state.query) ?? [])
      .filter((m) => m.name !== 'service_name')
      .map((m) => {
        const b = document.createElement('button');
        b.type = 'button';
        b.className = 'chip';
        b.textContent = `${m.name}${m.op}"${m.value}" ×`;
        b.title = `Remove ${m.name}${m.op}"${m.value}"`;
        b.addEventListener('click', () => update({ query: withMatcher(state.query, m.name, m.op, null) }));
        return b;
      }),
  );
  const now = Date.now();
  const a = resolveTime(state.from, now);
  const b = resolveTime(state.until, now);
  setLocal($('from'), a);
  setLocal($('until'), b);
  $('range-text').textContent = /^now-/.test(state.from) && state.until === 'now' ? `last ${state.from.slice(4)}` : '';
  for (const r of document.querySelectorAll('#compare-form input[name=compare]')) r.checked = r.value === state.compare;
  $('compare-form').dataset.mode = state.compare;
  const w = compareWindows();
  [['left-from', w[0]], ['left-until', w[1]], ['right-from', w[2]], ['right-until', w[3]]].forEach(([id, t]) =>
    setLocal($(id), resolveTime(t, now)),
  );
  if (document.activeElement !== $('left-query')) $('left-query').value = state.leftQuery;
  if (document.activeElement !== $('right-query')) $('right-query').value = state.rightQuery;
  $('palette').checked = state.palette === 'colorblind';
}

function setOptions(select, options, value) {
  const key = JSON.stringify(options);
  if (select.dataset.options !== key) {
    select.replaceChildren(...options.map(([v, label]) => new Option(label, v)));
    select.dataset.options = key;
  }
  select.value = value;
}

function setLocal(input, ms) {
  if (document.activeElement === input || !Number.isFinite(ms)) return;
  const d = new Date(ms - new Date(ms).getTimezoneOffset() * 60e3);
  input.value = d.toISOString().slice(0, 19);
}

function localSeconds(input) {
  const ms = new Date(input.value).getTime();
  return Number.isFinite(ms) ? unixSeconds(ms) : '';
}

function updateExports() {
  const svg = $('export-svg');
  const pprof = $('export-pprof');
  const folded = $('export-folded');
  const has = Boolean(state.query);
  for (const a of [svg, pprof, folded]) a.hidden = !has;
  if (!has) return;
  if (state.view === 'diff') {
    const p = diffParams();
    svg.href = url('/render-diff', { ...p, format: 'svg' });
    folded.href = url('/render-diff', { ...p, format: 'folded' });
    svg.download = 'diff.svg';
    folded.download = 'diff.folded';
    pprof.hidden = true;
    return;
  }
  const p = renderParams();
  svg.href = url('/render', { ...p, format: 'svg', icicle: state.orient === 'icicle' ? 'true' : '' });
  pprof.href = url('/render', { ...p, format: 'pprof', maxNodes: '' });
  folded.href = url('/render', { ...p, format: 'folded' });
  const base = (serviceOf(state.query) || 'profile').replace(/[^\w.-]/g, '_');
  svg.download = `${base}.svg`;
  pprof.download = `${base}.pb.gz`;
  folded.download = `${base}.folded`;
}

/** The services overview: each service's share of the range, busiest first. */
function drawServices() {
  const a = activity();
  drawTimeline();
  updateExports();
  if (!a || a instanceof ApiError) {
    setStatus(a ? 'error' : 'loading', a ? a.message : 'Loading services…');
    return;
  }
  setStatus(
    a.total ? 'ready' : 'empty',
    a.total ? `${formatValue(a.total, a.metadata ?? {})} across ${a.services.length} services.` : 'No samples in this range.',
  );
  $('services-count').textContent = renderServices($('services-table'), a, (name) =>
    update({ query: withMatcher('', 'service_name', '=', name), view: 'flame', zoom: '', fn: '' }),
  );
}

/** The largest node budget the server draws. */
const MAX_NODES = 1000000;

/**
 * When the flamegraph folds calls into "other" boxes, says how much of the
 * call tree it draws and offers a larger budget.
 */
function offerMoreNodes() {
  const nodes = data.render?.callTreeNodes;
  if (!nodes || nodes.total <= nodes.drawn) return;
  const el = $('status');
  el.append(` ${nodes.drawn - 1} drawn; smaller calls are folded into "other" boxes. `);
  const more = document.createElement('button');
  more.type = 'button';
  more.id = 'more-nodes';
  const next = Math.min(MAX_NODES, nodes.total, Math.max(4 * nodes.drawn, DEFAULT_MAX_NODES));
  more.textContent = next >= nodes.total ? 'Draw all' : `Draw ${next}`;
  more.addEventListener('click', () => update({ maxNodes: String(next) }));
  el.append(more);
}

/** How far back an empty view looks for the query's latest data. */
const LATEST_LOOKBACK = 'now-30d';

/**
 * Beside "No samples": where the query's data last was (its timeline over
 * the last 30 days, from the rollups), with a button that shows the hour
 * up to it.
 */
async function offerLatest() {
  const asked = toSearch(state);
  let latest = null;
  try {
    const r = await api.render({ ...renderParams(), from: LATEST_LOOKBACK, until: 'now', maxNodes: 1 });
    const t = r.timeline ?? {};
    const points = t.samples ?? [];
    for (let i = points.length - 1; i >= 0; i -= 1) {
      if (points[i] > 0) {
        latest = (t.startTime + (i + 1) * t.durationDelta) * 1000;
        break;
      }
    }
  } catch {
    return;
  }
  if (toSearch(state) !== asked || document.body.dataset.status !== 'empty') return;
  const el = $('status');
  if (latest === null) {
    el.append(' Nothing in the last 30 days either.');
    return;
  }
  const jump = document.createElement('button');
  jump.type = 'button';
  jump.id = 'jump-latest';
  jump.textContent = `Show the latest data (${formatTime(latest)})`;
  jump.addEventListener('click', () =>
    update({ from: unixSeconds(latest - 3600e3), until: unixSeconds(latest), zoom: '' }),
  );
  el.append(' ', jump);
}

/** The current view's link with relative times pinned to what they mean now. */
function shareLink() {
  const now = Date.now();
  const pinned = { ...state };
  for (const key of ['from', 'until', 'leftFrom', 'leftUntil', 'rightFrom', 'rightUntil']) {
    if (pinned[key] && !/^\d+$/.test(pinned[key])) pinned[key] = unixSeconds(resolveTime(pinned[key], now));
  }
  return `${location.origin}${location.pathname}${toSearch(pinned)}`;
}

function setStatus(kind, text) {
  document.body.dataset.status = kind;
  const el = $('status');
  el.className = `status ${kind}`;
  el.replaceChildren(text);
}

function showError(e) {
  if (!(e instanceof ApiError)) {
    setStatus('error', `Something went wrong: ${e.message}`);
    return;
  }
  if (e.unreachable) {
    setStatus('error', `${e.message} Check that firewatch-server is running, then retry.`);
    const retry = document.createElement('button');
    retry.type = 'button';
    retry.textContent = 'Retry';
    retry.addEventListener('click', () => (services.length ? load() : start()));
    $('status').append(' ', retry);
    return;
  }
  showQueryError(e.position !== null ? e : null);
  setStatus('error', e.message);
}

// A query syntax error under the query field, with a caret at its position.
function showQueryError(e) {
  const box = $('query-error');
  if (!e) {
    box.hidden = true;
    box.replaceChildren();
    return;
  }
  box.replaceChildren(e.message);
  const pos = e.position;
  if (pos !== null) {
    const pre = document.createElement('pre');
    const text = document.createElement('code');
    text.textContent = `${state.query}\n${' '.repeat(Math.min(pos, state.query.length))}^`;
    pre.append(text);
    box.append(pre);
  }
  box.hidden = false;
}

function onTimeSelect(fromMs, untilMs) {
  if (state.view === 'diff' && state.compare === 'time') {
    const side = document.querySelector('#compare-form input[name=brush]:checked')?.value ?? 'baseline';
    const w = compareWindows();
    const pair = [unixSeconds(fromMs), unixSeconds(untilMs)];
    if (side === 'baseline') update({ leftFrom: pair[0], leftUntil: pair[1], rightFrom: w[2], rightUntil: w[3] });
    else update({ leftFrom: w[0], leftUntil: w[1], rightFrom: pair[0], rightUntil: pair[1] });
    return;
  }
  update({ from: unixSeconds(fromMs), until: unixSeconds(untilMs), zoom: '' });
}

let shownAnnotation = null;
function showAnnotation(a, x, y) {
  shownAnnotation = a;
  const pop = $('annotation-pop');
  $('annotation-text').textContent = `${formatTime(a.time)} — ${a.text}`;
  pop.hidden = false;
  const wrap = pop.parentElement.getBoundingClientRect();
  pop.style.left = `${Math.max(0, Math.min(x - wrap.left, wrap.width - pop.offsetWidth))}px`;
  pop.style.top = `${Math.max(0, y - wrap.top + 8)}px`;
  $('annotation-compare').focus();
}

/**
 * Before vs after an annotation: the selected range split at it (the end
 * clamped to now, never the future); an annotation outside the range
 * compares the hour on each side of it.
 */
function compareAround(a) {
  const hour = 3600e3;
  const now = Date.now();
  let from = resolveTime(state.from, now);
  let until = Math.min(resolveTime(state.until, now), now);
  if (!(a.time > from && a.time < until)) {
    from = a.time - hour;
    until = Math.min(a.time + hour, now);
  }
  update({
    view: 'diff',
    compare: 'time',
    from: unixSeconds(from),
    until: unixSeconds(until),
    leftFrom: unixSeconds(from),
    leftUntil: unixSeconds(a.time),
    rightFrom: unixSeconds(a.time),
    rightUntil: unixSeconds(until),
    zoom: '',
  });
}

function bind() {
  $('service').addEventListener('change', (e) => {
    const name = e.target.value;
    const info = services.find((s) => s.name === name);
    const types = info?.profileTypes ?? [];
    const type = types.includes(state.type) ? state.type : (types.find((t) => t.includes(':cpu:')) ?? types[0] ?? '');
    update({ query: withMatcher(state.query, 'service_name', '=', name || null), type, zoom: '', fn: '' });
  });
  $('type').addEventListener('change', (e) => update({ type: e.target.value, zoom: '', fn: '' }));
  $('query-form').addEventListener('submit', (e) => {
    e.preventDefault();
    update({ query: $('query').value.trim(), zoom: '' });
  });
  $('label-name').addEventListener('focus', async () => {
    const names = await api.labelNames(state.query).catch(() => []);
    $('label-names').replaceChildren(...(names ?? []).map((n) => new Option(n)));
  });
  $('label-name').addEventListener('change', async (e) => {
    const values = await api.labelValues(e.target.value, state.query).catch(() => []);
    $('label-values').replaceChildren(...(values ?? []).map((n) => new Option(n)));
  });
  $('builder').addEventListener('submit', (e) => {
    e.preventDefault();
    const name = $('label-name').value.trim();
    const value = $('label-value').value;
    if (!name) return;
    update({ query: withMatcher(state.query, name, $('label-op').value, value), zoom: '' });
    $('label-name').value = '';
    $('label-value').value = '';
  });
  for (const b of document.querySelectorAll('#presets [data-range]')) {
    b.addEventListener('click', () => update({ from: `now-${b.dataset.range}`, until: 'now', zoom: '' }));
  }
  $('range-form').addEventListener('submit', (e) => {
    e.preventDefault();
    update({ from: localSeconds($('from')), until: localSeconds($('until')), zoom: '' });
  });
  for (const b of document.querySelectorAll('.tabs [data-view]')) {
    b.addEventListener('click', () => update({ view: b.dataset.view }));
  }
  $('orient').addEventListener('click', () => update({ orient: state.orient === 'icicle' ? 'flame' : 'icicle' }));
  let typing = null;
  for (const id of ['search', 'filter']) {
    for (const event of ['input', 'change']) {
      $(id).addEventListener(event, (e) => {
        clearTimeout(typing);
        const value = e.target.value;
        typing = setTimeout(() => update({ [id]: value }, { push: false }), 150);
      });
    }
  }
  // The finder suggests from every function whose name holds what is typed.
  $('fn').addEventListener('input', (e) => {
    clearTimeout(typing);
    const value = e.target.value;
    typing = setTimeout(() => fillFinder(value), 150);
  });
  $('fn').addEventListener('change', (e) => update({ fn: e.target.value }));
  $('compare-form').addEventListener('change', (e) => {
    if (e.target.name === 'compare') update({ compare: e.target.value });
    if (e.target.id === 'palette') update({ palette: e.target.checked ? 'colorblind' : 'default' });
  });
  $('compare-form').addEventListener('submit', (e) => {
    e.preventDefault();
    if (state.compare === 'labels') {
      update({ leftQuery: $('left-query').value.trim(), rightQuery: $('right-query').value.trim() });
    } else {
      update({
        leftFrom: localSeconds($('left-from')),
        leftUntil: localSeconds($('left-until')),
        rightFrom: localSeconds($('right-from')),
        rightUntil: localSeconds($('right-until')),
      });
    }
  });
  $('annotation-compare').addEventListener('click', () => {
    $('annotation-pop').hidden = true;
    if (shownAnnotation) compareAround(shownAnnotation);
  });
  $('annotation-close').addEventListener('click', () => ($('annotation-pop').hidden = true));
  $('search-next').addEventListener('click', () => stepMatch(1));
  $('search-prev').addEventListener('click', () => stepMatch(-1));
  $('service-order').addEventListener('click', () =>
    update({ order: state.order === 'activity' ? 'name' : 'activity' }),
  );
  $('share').addEventListener('click', async () => {
    const link = shareLink();
    $('share').dataset.link = link;
    let copied = false;
    try {
      await navigator.clipboard.writeText(link);
      copied = true;
    } catch {
      copied = false;
    }
    $('share-note').textContent = copied ? 'Link copied, times pinned.' : link;
  });
  $('theme').addEventListener('click', () => {
    const order = ['auto', 'light', 'dark'];
    const next = order[(order.indexOf(theme()) + 1) % order.length];
    localStorage.setItem('firewatch-theme', next);
    applyTheme();
    draw();
  });
  let resizing = null;
  window.addEventListener('resize', () => {
    clearTimeout(resizing);
    resizing = setTimeout(draw, 100);
  });
}

function theme() {
  return localStorage.getItem('firewatch-theme') || 'auto';
}

function applyTheme() {
  const t = theme();
  document.documentElement.dataset.theme = t;
  $('theme').textContent = `Theme: ${t}`;
}

async function start() {
  setStatus('loading', 'Loading services…');
  try {
    services = (await api.services())?.services ?? [];
  } catch (e) {
    showError(e);
    return;
  }
  if (!state.query && services.length && state.view !== 'services') {
    // Open on the busiest service of the range (by CPU), else the first.
    let busiest = null;
    try {
      const a = await api.activity({ profile_type: state.type, from: state.from, until: state.until });
      busiest = a?.services?.find((s) => s.total > 0)?.name ?? null;
    } catch {
      busiest = null;
    }
    const first = services.find((s) => s.name === busiest) ?? services[0];
    const type = first.profileTypes.find((t) => t.includes(':cpu:')) ?? first.profileTypes[0] ?? '';
    update({ query: withMatcher('', 'service_name', '=', first.name), type }, { push: false });
    return;
  }
  if (state.query && !state.type) {
    const info = services.find((s) => s.name === serviceOf(state.query));
    const type = info?.profileTypes.find((t) => t.includes(':cpu:')) ?? info?.profileTypes[0] ?? '';
    if (type) {
      update({ type }, { push: false });
      return;
    }
  }
  load();
}

// What the browser tests read: the state, drawing figures, and where boxes
// and markers are on the page.
window.firewatch = {
  get state() {
    return { ...state };
  },
  fit,
  stats: () => ({ flame: { ...flame.stats }, diff: { ...diffGraph.stats }, nodes: data.tree?.n ?? 0 }),
  box: (which, name) => ({ flame, callers, callees, diff: diffGraph })[which]?.boxOf(name) ?? null,
  marker: (i) => (data.annotations[i] ? timeline.markerPoint(data.annotations[i]) : null),
  redraw: () => {
    flame.render();
    return flame.stats.renderMs;
  },
};

applyTheme();
bind();
start();
