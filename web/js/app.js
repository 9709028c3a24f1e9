// The page: state in the URL (state.js), data from the server (api.js),
// and the views redrawn from both: the flamegraph and the top table here,
// the services overview (services.js), the sandwich (sandwich.js) and the
// comparison (compare.js), with the controls (controls.js) and the status
// line (status.js). Changing something the data depends on fetches again;
// anything else only redraws.

import { ApiError, api } from './api.js';
import { afterGraph, beforeGraph, compareWindows, diffGraph, diffParams, drawDiff, selectSide } from './compare.js';
import { applyTheme, bind, syncControls, updateExports } from './controls.js';
import { FlameGraph, fit } from './flamegraph.js';
import { formatPercent, formatTime, formatValue } from './format.js';
import { namer, simplify } from './names.js';
import { $, DEFAULT_MAX_NODES, page, profileParams } from './page.js';
import { legacyHead, serviceOf, withMatcher } from './query.js';
import { callees, callers, drawSandwich } from './sandwich.js';
import { allGraph, drawServices } from './services.js';
import { DATA_KEYS, DIFF_KEYS, changed, fromSearch, resolveTime, toSearch, unixSeconds } from './state.js';
import { offerLatest, offerMoreNodes, setStatus, showError, showQueryError } from './status.js';
import { renderMatches, renderTop } from './table.js';
import { Timeline } from './timeline.js';
import { decodeDouble, decodeSingle, findPath, outermostHits, pathOf, searchTree } from './tree.js';

const data = page.data;
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
const timeline = new Timeline($('timeline'), tooltip, { onSelect: onTimeSelect, onAnnotation: showAnnotation });

/** Applies a change of state: pushes it to the history, then fetches or redraws. */
function update(patch, { push = true } = {}) {
  const next = { ...page.state, ...patch };
  if (toSearch(next) === toSearch(page.state)) return;
  const previous = page.state;
  page.state = next;
  const target = `${location.pathname}${toSearch(next)}`;
  if (push) history.pushState(null, '', target);
  else history.replaceState(null, '', target);
  apply(previous);
}

function apply(previous) {
  const state = page.state;
  if (changed(previous, state, DATA_KEYS) || !data.render) {
    load();
  } else if (state.view === 'diff' && (changed(previous, state, DIFF_KEYS) || previous.view !== 'diff' || !data.diff)) {
    loadDiff();
  } else {
    draw();
  }
}

window.addEventListener('popstate', () => {
  const previous = page.state;
  page.state = fromSearch(location.search);
  apply(previous);
});

// ---------------------------------------------------------------- loading

function renderParams() {
  return { ...profileParams(), maxNodes: page.state.maxNodes || DEFAULT_MAX_NODES };
}

async function load() {
  controller?.abort();
  diffController?.abort();
  controller = new AbortController();
  const { signal } = controller;
  const state = page.state;
  syncControls();
  page.answers.forget();
  if (!state.query) {
    data.render = null;
    data.tree = null;
    if (state.view !== 'services') {
      setStatus('empty', page.services.length ? 'Pick a service.' : 'No profiles stored yet: send some (see the API documentation) and reload.');
    }
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

async function loadDiff() {
  diffController?.abort();
  diffController = new AbortController();
  const { signal } = diffController;
  const state = page.state;
  if (!state.query && !(state.leftQuery && state.rightQuery)) return draw();
  setStatus('loading', 'Comparing…');
  try {
    const d = await api.diff(diffParams(), signal);
    data.diff = d;
    data.diffTree = decodeDouble(d.flamebearer ?? {}, d.leftTicks ?? 0, d.rightTicks ?? 0);
    data.sides = null;
    showQueryError(null);
    draw();
  } catch (e) {
    if (e.name !== 'AbortError') showError(e);
  }
}

// ---------------------------------------------------------------- drawing

function draw() {
  const state = page.state;
  syncControls();
  for (const view of ['services', 'flame', 'table', 'sandwich', 'diff']) $(`view-${view}`).hidden = state.view !== view;
  drawTimeline();
  updateExports();
  // Offered while the profile holds the marker (and to undo the hiding).
  $('truncated-toggle').hidden = state.truncated !== 'hide' && !data.tree?.names.includes('[truncated stack]');
  if (state.view === 'services') return drawServices();
  const tree = data.tree;
  if (!tree) return;
  const meta = data.render.metadata ?? {};
  if (state.view === 'diff') return drawDiff();
  if (tree.numTicks === 0) {
    const r = data.range;
    setStatus('empty', `No samples for ${state.query} between ${formatTime(r.fromMs)} and ${formatTime(r.untilMs)}.`);
    offerLatest(renderParams());
  } else {
    const nodes = data.render.callTreeNodes?.total ?? tree.n;
    setStatus('ready', `${formatValue(tree.numTicks, meta)} in ${nodes - 1} call-tree nodes.`);
    offerMoreNodes();
  }
  if (state.view === 'flame') drawFlame(tree, meta);
  else if (state.view === 'table') drawTable(meta);
  else drawSandwich(tree, meta);
}

function drawTimeline() {
  if (!data.render || !data.range) return timeline.show(null);
  const state = page.state;
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
  const state = page.state;
  const hits = searchTree(tree, state.search);
  const zoom = findPath(tree, state.zoom ? state.zoom.split(';') : []);
  const display = namer(state.names);
  flame.show(tree, { meta, orient: state.orient, zoom, hits: hits?.hits, display });
  // Highlighting marks the drawn boxes; the share is the whole profile's.
  const cover = state.search.trim()
    ? page.answers.get('cover', { ...profileParams(), filter: state.search, limit: SEARCH_LIST }, api.functions)
    : null;
  renderMatches($('search-list'), cover, meta, display, (name) => update({ search: name }));
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
  drawBreadcrumb(tree, zoom, display);
  $('kernel-legend').hidden = tree.kernel.size === 0;
}

function drawBreadcrumb(tree, zoom, display) {
  const crumbs = $('breadcrumb');
  crumbs.replaceChildren();
  const path = zoom > 0 ? pathOf(tree, zoom) : [];
  ['all', ...path].forEach((name, k) => {
    const b = document.createElement('button');
    b.type = 'button';
    b.textContent = k === 0 ? name : display(name);
    b.title = name;
    if (k === path.length) b.setAttribute('aria-current', 'true');
    b.addEventListener('click', () => update({ zoom: path.slice(0, k).join(';') }));
    crumbs.append(b);
  });
  const focus = $('focus-fn');
  focus.hidden = zoom === 0;
  if (zoom > 0) {
    const name = tree.names[tree.name[zoom]];
    focus.textContent = `Sandwich of ${display(name)}`;
    focus.onclick = () => update({ view: 'sandwich', fn: name });
  }
}

const TABLE_ROWS = 500;

function drawTable(meta) {
  const state = page.state;
  const params = { ...profileParams(), filter: state.filter, sort: state.sort, dir: state.dir, limit: TABLE_ROWS };
  const top = page.answers.get('table', params, api.functions);
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
    show: namer(state.names),
    onSort: (key) => {
      const dir = key === state.sort ? (state.dir === 'asc' ? 'desc' : 'asc') : key === 'name' ? 'asc' : 'desc';
      update({ sort: key, dir });
    },
    onPick: (name) => update({ view: 'sandwich', fn: name }),
    onFind: (name) => update({ view: 'flame', search: name, zoom: '' }),
  });
}

// ---------------------------------------------------------------- timeline

function onTimeSelect(fromMs, untilMs) {
  const state = page.state;
  if (state.view === 'diff' && state.compare === 'time') return selectSide(fromMs, untilMs);
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

// ---------------------------------------------------------------- start

async function start() {
  setStatus('loading', 'Loading services…');
  const state = page.state;
  try {
    page.services = (await api.services())?.services ?? [];
  } catch (e) {
    showError(e);
    return;
  }
  const services = page.services;
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
    // Pyroscope's form names its kind (`app.alloc_space`): the type whose
    // sample type that is; else CPU.
    const kind = legacyHead(state.query)?.kind;
    const types = info?.profileTypes ?? [];
    const type =
      (kind && types.find((t) => t.split(':')[1] === kind)) || types.find((t) => t.includes(':cpu:')) || types[0] || '';
    if (type) {
      update({ type }, { push: false });
      return;
    }
  }
  load();
}

Object.assign(page, { update, draw, load, start });

// What the browser tests read: the state, drawing figures, and where boxes
// and markers are on the page.
const graphs = { flame, callers, callees, diff: diffGraph, before: beforeGraph, after: afterGraph, all: allGraph };
window.firewatch = {
  get state() {
    return { ...page.state };
  },
  fit,
  simplify,
  resolveTime,
  stats: () => ({ flame: { ...flame.stats }, diff: { ...diffGraph.stats }, nodes: data.tree?.n ?? 0 }),
  box: (which, name) => graphs[which]?.boxOf(name) ?? null,
  graph: (which) => graphs[which] ?? null,
  marker: (i) => (data.annotations[i] ? timeline.markerPoint(data.annotations[i]) : null),
  redraw: () => {
    flame.render();
    return flame.stats.renderMs;
  },
};

applyTheme();
bind({ stepMatch, annotation: () => shownAnnotation });
start();
