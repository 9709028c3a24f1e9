// The services overview: every service of the selection ranked by its
// share of the range's total, with a sparkline of its timeline.

import { formatPercent, formatValue } from './format.js';
import { linkButton } from './table.js';

/**
 * Fills `table` from an /api/v1/activity answer; `onOpen(name)` reports a
 * click on a service. Returns the line saying how many have samples.
 */
export function renderServices(table, activity, onOpen) {
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
