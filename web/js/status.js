// The status line under the tabs: loading, ready, empty or an error, with
// what a reader can do next (retry, draw more of the tree, jump to the
// latest data), and a query's syntax error under the query field.

import { ApiError, api } from './api.js';
import { formatTime } from './format.js';
import { $, DEFAULT_MAX_NODES, page } from './page.js';
import { toSearch, unixSeconds } from './state.js';

/** The largest node budget the server draws. */
const MAX_NODES = 1000000;

/** How far back an empty view looks for the query's latest data. */
const LATEST_LOOKBACK = 'now-30d';

export function setStatus(kind, text) {
  document.body.dataset.status = kind;
  const el = $('status');
  el.className = `status ${kind}`;
  el.replaceChildren(text);
}

export function showError(e) {
  if (!(e instanceof ApiError)) {
    setStatus('error', `Something went wrong: ${e.message}`);
    return;
  }
  if (e.unreachable) {
    setStatus('error', `${e.message} Check that firewatch-server is running, then retry.`);
    const retry = document.createElement('button');
    retry.type = 'button';
    retry.textContent = 'Retry';
    retry.addEventListener('click', () => (page.services.length ? page.load() : page.start()));
    $('status').append(' ', retry);
    return;
  }
  showQueryError(e.position !== null ? e : null);
  setStatus('error', e.message);
}

/** A query syntax error under the query field, with a caret at its position. */
export function showQueryError(e) {
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
    const query = page.state.query;
    text.textContent = `${query}\n${' '.repeat(Math.min(pos, query.length))}^`;
    pre.append(text);
    box.append(pre);
  }
  box.hidden = false;
}

/**
 * When the flamegraph folds calls into "other" boxes, says how much of the
 * call tree it draws and offers a larger budget.
 */
export function offerMoreNodes() {
  const nodes = page.data.render?.callTreeNodes;
  if (!nodes || nodes.total <= nodes.drawn) return;
  const el = $('status');
  el.append(` ${nodes.drawn - 1} drawn; smaller calls are folded into "other" boxes. `);
  const more = document.createElement('button');
  more.type = 'button';
  more.id = 'more-nodes';
  const next = Math.min(MAX_NODES, nodes.total, Math.max(4 * nodes.drawn, DEFAULT_MAX_NODES));
  more.textContent = next >= nodes.total ? 'Draw all' : `Draw ${next}`;
  more.addEventListener('click', () => page.update({ maxNodes: String(next) }));
  el.append(more);
}

/**
 * Beside "No samples": where the query's data last was (its timeline over
 * the last 30 days, from the rollups), with a button that shows the hour
 * up to it.
 */
export async function offerLatest(params) {
  const asked = toSearch(page.state);
  let latest = null;
  try {
    const r = await api.render({ ...params, from: LATEST_LOOKBACK, until: 'now', maxNodes: 1 });
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
  if (toSearch(page.state) !== asked || document.body.dataset.status !== 'empty') return;
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
    page.update({ from: unixSeconds(latest - 3600e3), until: unixSeconds(latest), zoom: '' }),
  );
  el.append(' ', jump);
}
