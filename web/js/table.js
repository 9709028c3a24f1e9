// Tables: the top functions of a profile (sortable, filterable, a row
// opens the function's sandwich) and the regressions and improvements of a
// diff.

import { formatPercent, formatPoints, formatValue } from './format.js';
import { rowName } from './names.js';

/** A button that reads as a link: a name the reader can click. */
export function linkButton(text, title, onClick) {
  const b = document.createElement('button');
  b.type = 'button';
  b.className = 'link';
  b.textContent = text;
  if (title) b.title = title;
  b.addEventListener('click', onClick);
  return b;
}

const COLUMNS = [
  ['name', 'Function'],
  ['self', 'Self'],
  ['total', 'Total'],
];

/** A name cell: the function as `show` shows it (full name on hover), `[k]` for the kernel's. */
function nameCell(r, show, title, onClick) {
  const td = document.createElement('td');
  td.className = 'name';
  const b = linkButton(rowName(r.name, r.kernel, show), title, onClick);
  if (r.kernel) b.classList.add('kernel');
  td.append(b);
  return td;
}

/**
 * Fills `table` with `rows` ({name, self, total, kernel}), as the server
 * filtered and ordered them by `sort`/`dir` from the whole profile
 * (`counts`: how many functions match, of how many); `show(name)` is the
 * name shown; `onSort(key)`, `onPick(name)` and `onFind(name)` report
 * clicks. Returns the line saying what is shown.
 */
export function renderTop(table, rows, { sort, dir, counts, meta, numTicks, show, onSort, onPick, onFind }) {
  const shown = rows;
  const thead = document.createElement('thead');
  const tr = document.createElement('tr');
  for (const [key, label] of COLUMNS) {
    const th = document.createElement('th');
    th.scope = 'col';
    const active = key === sort;
    th.setAttribute('aria-sort', active ? (dir === 'asc' ? 'ascending' : 'descending') : 'none');
    const button = document.createElement('button');
    button.type = 'button';
    button.dataset.sort = key;
    button.textContent = `${label}${active ? (dir === 'asc' ? ' ▲' : ' ▼') : ''}`;
    button.addEventListener('click', () => onSort(key));
    th.append(button);
    tr.append(th);
  }
  thead.append(tr);
  const tbody = document.createElement('tbody');
  for (const r of shown) {
    const row = document.createElement('tr');
    const name = nameCell(r, show, `${r.name}: show its callers and callees`, () => onPick(r.name));
    const find = document.createElement('button');
    find.type = 'button';
    find.className = 'find';
    find.textContent = '⌕';
    find.title = `Highlight ${r.name} in the flamegraph`;
    find.setAttribute('aria-label', find.title);
    find.addEventListener('click', () => onFind(r.name));
    name.prepend(find);
    row.append(name, valueCell(r.self, numTicks, meta), valueCell(r.total, numTicks, meta));
    tbody.append(row);
  }
  table.replaceChildren(thead, tbody);
  const note = counts.matched > shown.length ? ` (first ${shown.length} shown)` : '';
  return `${counts.matched} of ${counts.count} functions${note}`;
}

function valueCell(v, numTicks, meta) {
  const td = document.createElement('td');
  td.className = 'num';
  td.textContent = `${formatValue(v, meta)} · ${formatPercent(numTicks ? v / numTicks : 0)}`;
  const bar = document.createElement('span');
  bar.className = 'bar';
  bar.style.width = `${numTicks ? Math.min(100, (100 * v) / numTicks) : 0}%`;
  td.prepend(bar);
  return td;
}

/**
 * Fills the regressions and improvements tables of a diff from the
 * server's ranked function rows (self shares in percent).
 */
export function renderChanges(regressed, improved, functions, show, onPick) {
  const grew = functions.filter((f) => f.deltaSelfPercent > 0).sort((a, b) => b.deltaSelfPercent - a.deltaSelfPercent);
  const shrank = functions.filter((f) => f.deltaSelfPercent < 0).sort((a, b) => a.deltaSelfPercent - b.deltaSelfPercent);
  fillChanges(regressed, grew, show, onPick);
  fillChanges(improved, shrank, show, onPick);
}

/** A row saying a table has nothing to list. */
function emptyRow(columns) {
  const tr = document.createElement('tr');
  const td = document.createElement('td');
  td.colSpan = columns;
  td.className = 'empty';
  td.textContent = 'None';
  tr.append(td);
  return tr;
}

function fillChanges(table, rows, show, onPick) {
  const thead = document.createElement('thead');
  thead.innerHTML =
    '<tr><th scope="col">Function</th><th scope="col">Self before</th><th scope="col">Self after</th><th scope="col">Change</th></tr>';
  const tbody = document.createElement('tbody');
  if (rows.length === 0) tbody.append(emptyRow(4));
  for (const f of rows) {
    const tr = document.createElement('tr');
    const name = nameCell(f, show, f.name, () => onPick(f.name));
    const cells = [
      formatPercent(f.beforeSelfPercent / 100),
      formatPercent(f.afterSelfPercent / 100),
      formatPoints(f.deltaSelfPercent / 100),
    ].map((text) => {
      const td = document.createElement('td');
      td.className = 'num';
      td.textContent = text;
      return td;
    });
    tr.append(name, ...cells);
    tbody.append(tr);
  }
  table.replaceChildren(thead, tbody);
}

/**
 * Fills `list` with the functions a search matches (`cover`, an
 * /api/v1/functions answer), each with its share of the whole profile;
 * `onPick(name)` narrows the search to one. Hidden without matches.
 */
export function renderMatches(list, cover, meta, show, onPick) {
  if (!cover || cover instanceof Error || !cover.functions.length) {
    list.hidden = true;
    list.replaceChildren();
    return;
  }
  list.hidden = false;
  list.replaceChildren(
    ...cover.functions.map((r) => {
      const li = document.createElement('li');
      const b = linkButton(rowName(r.name, r.kernel, show), `Search for ${r.name} only`, () => onPick(r.name));
      const share = document.createElement('span');
      share.className = 'muted';
      share.textContent = ` total ${formatValue(r.total, meta)} (${formatPercent(cover.total ? r.total / cover.total : 0)})`;
      li.append(b, share);
      return li;
    }),
  );
  if (cover.matched > cover.functions.length) {
    const more = document.createElement('li');
    more.className = 'muted';
    more.textContent = `and ${cover.matched - cover.functions.length} more (see the top table)`;
    list.append(more);
  }
}

/**
 * Fills `table` with a sandwich's direct callers or callees (`rows`:
 * {name, total, kernel}), each with its share of the function's total
 * `of`; `onPick(name)` moves the sandwich to a row's function.
 */
export function renderNeighbours(table, rows, { heading, of, meta, show, onPick }) {
  const thead = document.createElement('thead');
  thead.innerHTML = `<tr><th scope="col">${heading}</th><th scope="col">Through it</th></tr>`;
  const tbody = document.createElement('tbody');
  if (rows.length === 0) tbody.append(emptyRow(2));
  for (const r of rows) {
    const tr = document.createElement('tr');
    tr.append(nameCell(r, show, `${r.name}: its sandwich`, () => onPick(r.name)), valueCell(r.total, of, meta));
    tbody.append(tr);
  }
  table.replaceChildren(thead, tbody);
}
