// The Sandwich tab: one function's callers (drawn inverted, above) and
// callees (below), each beside a table of the functions that call it or
// that it calls directly, all from the whole profile; the finder suggests
// every function whose name holds what was typed.

import { ApiError, api } from './api.js';
import { FlameGraph } from './flamegraph.js';
import { formatPercent, formatValue } from './format.js';
import { namer } from './names.js';
import { $, DEFAULT_MAX_NODES, page, profileParams } from './page.js';
import { renderNeighbours } from './table.js';
import { decodeSingle } from './tree.js';

const tooltip = $('tooltip');
export const callers = new FlameGraph($('callers'), tooltip, { label: 'Callers' });
export const callees = new FlameGraph($('callees'), tooltip, { label: 'Callees' });

/** Functions whose names hold what was typed in the finder, busiest first. */
export function fillFinder(typed) {
  const found = page.answers.get('finder', { ...profileParams(), filter: typed, limit: 50 }, api.functions);
  const names = $('fn-names');
  const list = found && !(found instanceof ApiError) ? found.functions.map((r) => r.name) : [];
  if (names.dataset.key !== typed + list.length) {
    names.replaceChildren(...list.map((n) => new Option(n)));
    names.dataset.key = typed + list.length;
  }
  return list;
}

function clear(summary) {
  callers.show(null);
  callees.show(null);
  $('caller-table').replaceChildren();
  $('callee-table').replaceChildren();
  $('fn-summary').textContent = summary;
}

export function drawSandwich(tree, meta) {
  const state = page.state;
  let fn = state.fn;
  if (!fn) {
    // The function with the most self time of the whole profile.
    fn = fillFinder('')[0];
    if (!fn) return clear(tree.numTicks ? 'Loading…' : '');
  } else {
    fillFinder(document.activeElement === $('fn') ? $('fn').value : fn);
  }
  const params = { ...profileParams(), function: fn, maxNodes: state.maxNodes || DEFAULT_MAX_NODES };
  const s = page.answers.get('sandwich', params, api.sandwich);
  if (!s || s instanceof ApiError) {
    const similar = s ? fillFinder(fn).slice(0, 3) : [];
    return clear(
      !s
        ? 'Loading…'
        : s.status === 404 && similar.length
          ? `${fn} is not in this profile; did you mean ${similar.join(', ')}?`
          : s.status === 404
            ? `${fn} is not in this profile.`
            : s.message,
    );
  }
  const display = namer(state.names);
  s.trees ??= [decodeSingle(s.callers), decodeSingle(s.callees)];
  const [up, down] = s.trees;
  // A click zooms inside a half; redraws keep it.
  callers.show(up, { meta, orient: 'flame', display, zoom: callers.zoomFor(up) });
  callees.show(down, { meta, orient: 'icicle', display, zoom: callees.zoomFor(down) });
  const pick = (name) => page.update({ fn: name });
  renderNeighbours($('caller-table'), s.callerRows ?? [], { heading: 'Called from', of: s.total, meta, show: display, onPick: pick });
  renderNeighbours($('callee-table'), s.calleeRows ?? [], { heading: 'Calls', of: s.total, meta, show: display, onPick: pick });
  const share = (v) => formatPercent(s.totalValue ? v / s.totalValue : 0);
  $('fn-summary').textContent =
    `${fn}: total ${formatValue(s.total, meta)} (${share(s.total)}), ` +
    `self ${formatValue(s.self, meta)} (${share(s.self)})`;
}
