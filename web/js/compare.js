// The Compare tab: two time ranges (by default the selected range split at
// its latest deploy marker) or two label sets, drawn as a diff flamegraph,
// the before and after flamegraphs side by side, and the functions whose
// self share changed most.

import { FlameGraph } from './flamegraph.js';
import { formatValue } from './format.js';
import { namer } from './names.js';
import { $, DEFAULT_MAX_NODES, page } from './page.js';
import { resolveTime, unixSeconds } from './state.js';
import { setStatus } from './status.js';
import { renderChanges } from './table.js';
import { decodeSingle, splitDouble } from './tree.js';

const tooltip = $('tooltip');
export const diffGraph = new FlameGraph($('diff'), tooltip, { label: 'Diff flamegraph' });
export const beforeGraph = new FlameGraph($('before'), tooltip, { label: 'Baseline flamegraph' });
export const afterGraph = new FlameGraph($('after'), tooltip, { label: 'Comparison flamegraph' });

/**
 * The two windows of a time-range comparison: as set, else the selected
 * range split at its latest annotation (a deploy), or in half without one.
 */
export function compareWindows() {
  const s = page.state;
  if (s.leftFrom && s.leftUntil && s.rightFrom && s.rightUntil) {
    return [s.leftFrom, s.leftUntil, s.rightFrom, s.rightUntil];
  }
  const now = Date.now();
  const a = resolveTime(s.from, now);
  const b = Math.min(resolveTime(s.until, now), now);
  const marks = page.data.annotations.map((m) => m.time).filter((t) => t > a && t < b);
  const split = marks.length ? Math.max(...marks) : (a + b) / 2;
  return [unixSeconds(a), unixSeconds(split), unixSeconds(split), unixSeconds(b)];
}

/** The /render-diff parameters of the current comparison. */
export function diffParams() {
  const s = page.state;
  const common = {
    profile_type: s.type,
    maxNodes: s.maxNodes || DEFAULT_MAX_NODES,
    limit: 100,
    hideTruncated: s.truncated === 'hide' ? 'true' : '',
  };
  if (s.compare === 'labels') {
    return {
      ...common,
      leftQuery: s.leftQuery || s.query,
      rightQuery: s.rightQuery || s.query,
      leftFrom: s.from,
      leftUntil: s.until,
      rightFrom: s.from,
      rightUntil: s.until,
    };
  }
  const [leftFrom, leftUntil, rightFrom, rightUntil] = compareWindows();
  return { ...common, query: s.query, leftFrom, leftUntil, rightFrom, rightUntil };
}

/** Draws the comparison that arrived: diff, both sides, the changed functions. */
export function drawDiff() {
  const d = page.data.diff;
  if (!d) return;
  const s = page.state;
  const meta = d.metadata ?? page.data.render?.metadata ?? {};
  const display = namer(s.names);
  // Both palettes come with the answer: switching needs no new query.
  const palette = (d.palettes ?? []).find((p) => p.name === s.palette) ?? d.palette ?? {};
  diffGraph.show(page.data.diffTree, { meta, palette, display, zoom: diffGraph.zoomFor(page.data.diffTree) });
  document.querySelector('.legend .grew').style.background = palette.grew ?? '';
  document.querySelector('.legend .shrank').style.background = palette.shrank ?? '';
  if (!page.data.sides) page.data.sides = splitDouble(d.flamebearer ?? {}).map(decodeSingle);
  const [before, after] = page.data.sides;
  beforeGraph.show(before, { meta, orient: s.orient, display, zoom: beforeGraph.zoomFor(before) });
  afterGraph.show(after, { meta, orient: s.orient, display, zoom: afterGraph.zoomFor(after) });
  renderChanges($('regressions'), $('improvements'), d.functions ?? [], display, (name) =>
    page.update({ view: 'sandwich', fn: name }),
  );
  const left = d.leftTicks ?? 0;
  const right = d.rightTicks ?? 0;
  $('before-total').textContent = formatValue(left, meta);
  $('after-total').textContent = formatValue(right, meta);
  if (!left || !right) {
    setStatus('empty', `No samples in the ${!left ? 'baseline' : 'comparison'}: pick a window or label set with data.`);
  } else {
    setStatus('ready', `Baseline ${formatValue(left, meta)}, comparison ${formatValue(right, meta)}; compared by share of each side's total.`);
  }
}

/**
 * Before vs after an annotation: the selected range split at it (the end
 * clamped to now, never the future); an annotation outside the range
 * compares the hour on each side of it.
 */
export function compareAround(a) {
  const hour = 3600e3;
  const now = Date.now();
  let from = resolveTime(page.state.from, now);
  let until = Math.min(resolveTime(page.state.until, now), now);
  if (!(a.time > from && a.time < until)) {
    from = a.time - hour;
    until = Math.min(a.time + hour, now);
  }
  page.update({
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

/** A range dragged on the timeline while comparing time ranges sets one side. */
export function selectSide(fromMs, untilMs) {
  const side = document.querySelector('#compare-form input[name=brush]:checked')?.value ?? 'baseline';
  const w = compareWindows();
  const pair = [unixSeconds(fromMs), unixSeconds(untilMs)];
  if (side === 'baseline') page.update({ leftFrom: pair[0], leftUntil: pair[1], rightFrom: w[2], rightUntil: w[3] });
  else page.update({ leftFrom: w[0], leftUntil: w[1], rightFrom: pair[0], rightUntil: pair[1] });
}
