// The controls around the views: the service and type pickers, the query
// and its label chips, the time range, the view settings (orientation,
// names, markers, palette), exports and the share link. `syncControls`
// shows the state in them; `bind` turns what the reader does into updates.

import { ApiError, api, url } from './api.js';
import { compareAround, compareWindows, diffParams } from './compare.js';
import { typeLabel } from './format.js';
import { $, DEFAULT_MAX_NODES, page, profileParams } from './page.js';
import { matchersOf, serviceOf, withMatcher } from './query.js';
import { fillFinder } from './sandwich.js';
import { activity } from './services.js';
import { resolveTime, toSearch, unixSeconds } from './state.js';

const update = (patch, options) => page.update(patch, options);

export function syncControls() {
  const state = page.state;
  syncPickers(state);
  if (document.activeElement !== $('query')) $('query').value = state.query;
  for (const id of ['search', 'filter']) if (document.activeElement !== $(id)) $(id).value = state[id];
  if (document.activeElement !== $('fn')) $('fn').value = state.fn;
  $('orient').textContent = state.orient === 'icicle' ? 'Icicle' : 'Flame';
  $('orient').setAttribute('aria-pressed', String(state.orient === 'flame'));
  $('simplify').checked = state.names === 'simple';
  $('hide-truncated').checked = state.truncated === 'hide';
  for (const b of document.querySelectorAll('.tabs [data-view]')) {
    b.setAttribute('aria-selected', String(b.dataset.view === state.view));
  }
  syncChips(state);
  const now = Date.now();
  setLocal($('from'), resolveTime(state.from, now));
  setLocal($('until'), resolveTime(state.until, now));
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

// The service picker, busiest first (or by name), and the profile types.
function syncPickers(state) {
  const services = page.services;
  const service = serviceOf(state.query);
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
  setOptions($('service'), [['', names.length ? 'Choose a service…' : 'No services yet'], ...names.map((n) => [n, label(n)])], service);
  $('service-order').textContent = state.order === 'activity' ? 'A–Z' : 'Busiest';
  $('service-order').title =
    state.order === 'activity' ? 'Busiest first now: order by name' : 'By name now: busiest first';
  const types = new Set();
  for (const s of services) if (!service || s.name === service) s.profileTypes.forEach((t) => types.add(t));
  if (state.type) types.add(state.type);
  setOptions($('type'), [...types].sort().map((t) => [t, typeLabel(t)]), state.type);
}

// A chip per label matcher besides the service, each removing itself.
function syncChips(state) {
  $('chips').replaceChildren(
    ...(matchersOf(state.query) ?? [])
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

/** Points the export links at the current view's data. */
export function updateExports() {
  const state = page.state;
  const svg = $('export-svg');
  const pprof = $('export-pprof');
  const folded = $('export-folded');
  const has = Boolean(state.query);
  for (const a of [svg, pprof, folded, $('export-label')]) a.hidden = !has;
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
  const p = { ...profileParams(), maxNodes: state.maxNodes || DEFAULT_MAX_NODES };
  svg.href = url('/render', { ...p, format: 'svg', icicle: state.orient === 'icicle' ? 'true' : '' });
  pprof.href = url('/render', { ...p, format: 'pprof', maxNodes: '' });
  folded.href = url('/render', { ...p, format: 'folded' });
  const base = (serviceOf(state.query) || 'profile').replace(/[^\w.-]/g, '_');
  svg.download = `${base}.svg`;
  pprof.download = `${base}.pb.gz`;
  folded.download = `${base}.folded`;
}

/** The current view's link with relative times pinned to what they mean now. */
function shareLink() {
  const now = Date.now();
  const pinned = { ...page.state };
  for (const key of ['from', 'until', 'leftFrom', 'leftUntil', 'rightFrom', 'rightUntil']) {
    if (pinned[key] && !/^\d+$/.test(pinned[key])) pinned[key] = unixSeconds(resolveTime(pinned[key], now));
  }
  return `${location.origin}${location.pathname}${toSearch(pinned)}`;
}

function theme() {
  return localStorage.getItem('firewatch-theme') || 'auto';
}

export function applyTheme() {
  const t = theme();
  document.documentElement.dataset.theme = t;
  $('theme').textContent = `Theme: ${t}`;
}

/**
 * Listens to every control. `handlers`: stepMatch(step) for the search's
 * previous/next, annotation() for the annotation shown in the popover.
 */
export function bind(handlers) {
  bindQuery();
  bindTimes();
  bindViews(handlers);
  bindCompare(handlers);
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
    page.draw();
  });
  let resizing = null;
  window.addEventListener('resize', () => {
    clearTimeout(resizing);
    resizing = setTimeout(() => page.draw(), 100);
  });
}

function bindQuery() {
  $('service').addEventListener('change', (e) => {
    const name = e.target.value;
    const info = page.services.find((s) => s.name === name);
    const types = info?.profileTypes ?? [];
    const state = page.state;
    const type = types.includes(state.type) ? state.type : (types.find((t) => t.includes(':cpu:')) ?? types[0] ?? '');
    update({ query: withMatcher(state.query, 'service_name', '=', name || null), type, zoom: '', fn: '' });
  });
  $('service-order').addEventListener('click', () =>
    update({ order: page.state.order === 'activity' ? 'name' : 'activity' }),
  );
  $('type').addEventListener('change', (e) => update({ type: e.target.value, zoom: '', fn: '' }));
  $('query-form').addEventListener('submit', (e) => {
    e.preventDefault();
    update({ query: $('query').value.trim(), zoom: '' });
  });
  $('label-name').addEventListener('focus', async () => {
    const names = await api.labelNames(page.state.query).catch(() => []);
    $('label-names').replaceChildren(...(names ?? []).map((n) => new Option(n)));
  });
  $('label-name').addEventListener('change', async (e) => {
    const values = await api.labelValues(e.target.value, page.state.query).catch(() => []);
    $('label-values').replaceChildren(...(values ?? []).map((n) => new Option(n)));
  });
  $('builder').addEventListener('submit', (e) => {
    e.preventDefault();
    const name = $('label-name').value.trim();
    const value = $('label-value').value;
    if (!name) return;
    update({ query: withMatcher(page.state.query, name, $('label-op').value, value), zoom: '' });
    $('label-name').value = '';
    $('label-value').value = '';
  });
}

function bindTimes() {
  for (const b of document.querySelectorAll('#presets [data-range]')) {
    b.addEventListener('click', () => update({ from: `now-${b.dataset.range}`, until: 'now', zoom: '' }));
  }
  $('range-form').addEventListener('submit', (e) => {
    e.preventDefault();
    update({ from: localSeconds($('from')), until: localSeconds($('until')), zoom: '' });
  });
}

function bindViews({ stepMatch }) {
  for (const b of document.querySelectorAll('.tabs [data-view]')) {
    b.addEventListener('click', () => update({ view: b.dataset.view }));
  }
  $('orient').addEventListener('click', () => update({ orient: page.state.orient === 'icicle' ? 'flame' : 'icicle' }));
  $('simplify').addEventListener('change', (e) => update({ names: e.target.checked ? 'simple' : 'full' }));
  $('hide-truncated').addEventListener('change', (e) => update({ truncated: e.target.checked ? 'hide' : 'show' }));
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
  $('search-next').addEventListener('click', () => stepMatch(1));
  $('search-prev').addEventListener('click', () => stepMatch(-1));
  // The finder suggests from every function whose name holds what is typed.
  $('fn').addEventListener('input', (e) => {
    clearTimeout(typing);
    const value = e.target.value;
    typing = setTimeout(() => fillFinder(value), 150);
  });
  $('fn').addEventListener('change', (e) => update({ fn: e.target.value }));
}

function bindCompare({ annotation }) {
  $('compare-form').addEventListener('change', (e) => {
    if (e.target.name === 'compare') update({ compare: e.target.value });
    if (e.target.id === 'palette') update({ palette: e.target.checked ? 'colorblind' : 'default' });
  });
  $('compare-form').addEventListener('submit', (e) => {
    e.preventDefault();
    if (page.state.compare === 'labels') {
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
    const a = annotation();
    if (a) compareAround(a);
  });
  $('annotation-close').addEventListener('click', () => ($('annotation-pop').hidden = true));
}
