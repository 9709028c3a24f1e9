// The Services tab: every service ranked by its share of the range's
// total, with a sparkline of its timeline, and one flamegraph of them all
// with a root box per service.

import { ApiError, api } from './api.js';
import { FlameGraph } from './flamegraph.js';
import { formatPercent, formatValue } from './format.js';
import { namer } from './names.js';
import { $, DEFAULT_MAX_NODES, page } from './page.js';
import { withMatcher } from './query.js';
import { setStatus } from './status.js';
import { linkButton } from './table.js';
import { decodeSingle } from './tree.js';

export const allGraph = new FlameGraph($('all-services'), $('tooltip'), { label: 'All services' });

/** The services' activity in the selected range and type, busiest first. */
export function activity() {
  const s = page.state;
  return page.answers.get('activity', { profile_type: s.type, from: s.from, until: s.until }, api.activity);
}

/** Draws the overview table and, once it arrives, the all-services flamegraph. */
export function drawServices() {
  const a = activity();
  if (!a || a instanceof ApiError) {
    setStatus(a ? 'error' : 'loading', a ? a.message : 'Loading services…');
    return;
  }
  setStatus(
    a.total ? 'ready' : 'empty',
    a.total ? `${formatValue(a.total, a.metadata ?? {})} across ${a.services.length} services.` : 'No samples in this range.',
  );
  const open = (name) => page.update({ query: withMatcher('', 'service_name', '=', name), view: 'flame', zoom: '', fn: '' });
  $('services-count').textContent = renderServices($('services-table'), a, open);
  const s = page.state;
  const all = page.answers.get(
    'all',
    {
      query: '{}',
      profile_type: s.type,
      from: s.from,
      until: s.until,
      groupBy: 'service_name',
      maxNodes: s.maxNodes || DEFAULT_MAX_NODES,
      hideTruncated: s.truncated === 'hide' ? 'true' : '',
    },
    api.render,
  );
  if (!all || all instanceof ApiError) {
    $('all-services-note').textContent = all ? all.message : 'Loading the flamegraph of every service…';
    allGraph.show(null);
    return;
  }
  if (page.data.all !== all) page.data.all = Object.assign(all, { tree: decodeSingle(all.flamebearer ?? {}) });
  const tree = all.tree;
  $('all-services-note').textContent = 'Every service in one flamegraph: a root box per service; click one to zoom.';
  // A click zooms inside this graph; redraws keep it.
  allGraph.show(tree, { meta: all.metadata ?? {}, orient: s.orient, display: namer(s.names), zoom: allGraph.zoomFor(tree) });
}

/**
 * Fills `table` from an /api/v1/activity answer; `onOpen(name)` reports a
 * click on a service. Returns the line saying how many have samples.
 */
function renderServices(table, activity, onOpen) {
  const meta = activity.metadata ?? {};
  const head = document.createElement('thead');
  head.innerHTML = '<tr><th scope="col">Service</th><th scope="col">Total</th><th scope="col">Over time</th></tr>';
  const body = document.createElement('tbody');
  for (const s of activity.services) {
    const tr = document.createElement('tr');
    const name = document.createElement('td');
    name.className = 'name';
    name.append(linkButton(s.name, `Flamegraph of ${s.name}`, () => onOpen(s.name)));
    const total = document.createElement('td');
    total.className = 'num';
    total.textContent = `${formatValue(s.total, meta)} · ${formatPercent(activity.total ? s.total / activity.total : 0)}`;
    const spark = document.createElement('td');
    spark.append(sparkline(s.timeline.samples));
    tr.append(name, total, spark);
    body.append(tr);
  }
  table.replaceChildren(head, body);
  const busy = activity.services.filter((s) => s.total > 0).length;
  return `${busy} of ${activity.services.length} services with samples`;
}

/** A small line of a timeline's points, as inline SVG. */
function sparkline(points) {
  const ns = 'http://www.w3.org/2000/svg';
  const svg = document.createElementNS(ns, 'svg');
  const w = 160;
  const h = 24;
  svg.setAttribute('viewBox', `0 0 ${w} ${h}`);
  svg.setAttribute('width', String(w));
  svg.setAttribute('height', String(h));
  svg.setAttribute('class', 'spark');
  svg.setAttribute('aria-hidden', 'true');
  const max = Math.max(1, ...points);
  const n = Math.max(1, points.length - 1);
  const line = document.createElementNS(ns, 'polyline');
  line.setAttribute(
    'points',
    points.map((v, i) => `${((i / n) * w).toFixed(1)},${(h - 1 - (v / max) * (h - 2)).toFixed(1)}`).join(' '),
  );
  svg.append(line);
  return svg;
}
