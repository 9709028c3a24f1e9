// Everything a view shows is decided by this state, and the state lives in
// the URL: a link reproduces the view, and the back button walks through
// what the user did.

export const DEFAULTS = Object.freeze({
  query: '', // selector, e.g. {service_name="checkout",version="1.5"}
  type: '', // profile type id
  from: 'now-1h',
  until: 'now',
  view: 'flame', // services | flame | table | sandwich | diff
  order: 'activity', // the service picker's order: activity | name
  orient: 'icicle', // icicle | flame
  zoom: '', // names from the root to the zoomed node, joined by ';'
  search: '', // the flamegraph's search
  filter: '', // the top table's filter
  fn: '', // the function of the sandwich view
  sort: 'self', // self | total | name
  dir: 'desc',
  compare: 'time', // time | labels
  leftFrom: '',
  leftUntil: '',
  rightFrom: '',
  rightUntil: '',
  leftQuery: '',
  rightQuery: '',
  palette: 'default', // default | colorblind
  names: 'full', // full | simple: how function names are shown
  truncated: 'show', // show | hide the [truncated stack] marker frames
  maxNodes: '',
});

const KEYS = Object.keys(DEFAULTS);

/** The state a URL's query string describes. */
export function fromSearch(search) {
  const params = new URLSearchParams(search);
  const state = { ...DEFAULTS };
  for (const key of KEYS) {
    const v = params.get(key);
    if (v !== null) state[key] = v;
  }
  return state;
}

/** The query string of a state, defaults left out. */
export function toSearch(state) {
  const params = new URLSearchParams();
  for (const key of KEYS) {
    if (state[key] !== DEFAULTS[key] && state[key] !== undefined) params.set(key, state[key]);
  }
  const s = params.toString();
  return s ? `?${s}` : '';
}

/** Keys whose change needs new data from the server (others only redraw). */
export const DATA_KEYS = ['query', 'type', 'from', 'until', 'maxNodes', 'truncated'];
export const DIFF_KEYS = ['compare', 'leftFrom', 'leftUntil', 'rightFrom', 'rightUntil', 'leftQuery', 'rightQuery'];

export function changed(a, b, keys) {
  return keys.some((k) => a[k] !== b[k]);
}

// What a unit of a duration is worth, as humantime (which every binary
// uses, see firewatch-syntax) reads it.
const UNIT_MS = new Map([
  [['nanos', 'nsec', 'ns'], 1e-6],
  [['usec', 'us', 'µs'], 1e-3],
  [['millis', 'msec', 'ms'], 1],
  [['seconds', 'second', 'secs', 'sec', 's'], 1e3],
  [['minutes', 'minute', 'min', 'mins', 'm'], 60e3],
  [['hours', 'hour', 'hr', 'hrs', 'h'], 3600e3],
  [['days', 'day', 'd'], 86400e3],
  [['weeks', 'week', 'wk', 'wks', 'w'], 604800e3],
  [['months', 'month', 'M'], 2630016e3],
  [['years', 'year', 'yr', 'yrs', 'y'], 31557600e3],
].flatMap(([names, ms]) => names.map((n) => [n, ms])));

/**
 * A duration (`1h30m`, `2.5s`, `3 hours`, `0`) in milliseconds, or NaN:
 * numbers, fractions allowed, each followed by a unit, spaces anywhere
 * between them.
 */
function parseDuration(text) {
  const t = String(text).trim();
  if (t === '0') return 0;
  if (t === '') return NaN;
  let ms = 0;
  let rest = t;
  while (rest !== '') {
    const m = /^(\d+(?:\.\d+)?)\s*([a-zA-Zµ]+)\s*/.exec(rest);
    if (!m || !UNIT_MS.has(m[2])) return NaN;
    ms += Number(m[1]) * UNIT_MS.get(m[2]);
    rest = rest.slice(m[0].length);
  }
  return ms;
}

/**
 * A time as every binary reads it (firewatch-syntax, whose table of cases
 * the browser tests check this against) in Unix milliseconds, or NaN:
 * `now`, `now-1h` (or `-1h`), Unix time by digit count (8 digits that
 * form a date are that date), `YYYY-MM-DD`, RFC 3339 with an offset.
 */
export function resolveTime(text, now = Date.now()) {
  const t = String(text).trim();
  if (t === 'now') return now;
  const rel = /^(?:now)?\s*([+-])(.*)$/.exec(t);
  if (rel) {
    const ms = parseDuration(rel[2]);
    return rel[1] === '-' ? now - ms : now + ms;
  }
  if (/^\d+$/.test(t)) {
    const date = t.length === 8 ? utcDate(t.slice(0, 4), t.slice(4, 6), t.slice(6, 8)) : NaN;
    if (Number.isFinite(date) && Number(t.slice(0, 4)) >= 1970 && Number(t.slice(0, 4)) <= 2200) return date;
    const n = Number(t);
    if (t.length <= 11) return n * 1e3;
    if (t.length <= 14) return n;
    if (t.length <= 17) return Math.floor(n / 1e3);
    if (t.length <= 19) return Math.floor(n / 1e6);
    return NaN;
  }
  const m = /^(\d{4})-(\d{2})-(\d{2})(?:[Tt ](\d{2}):(\d{2}):(\d{2})(?:\.(\d+))?([Zz]|[+-]\d{2}:\d{2}))?$/.exec(t);
  if (!m) return NaN;
  const day = utcDate(m[1], m[2], m[3]);
  if (m[4] === undefined) return day;
  const [h, mi, s] = [Number(m[4]), Number(m[5]), Number(m[6])];
  if (h > 23 || mi > 59 || s > 60) return NaN;
  const frac = m[7] ? Number(`${m[7]}000`.slice(0, 3)) : 0;
  const zone = m[8].toUpperCase() === 'Z' ? 0 : (m[8][0] === '-' ? -1 : 1) * (Number(m[8].slice(1, 3)) * 60 + Number(m[8].slice(4))) * 60e3;
  return day + ((h * 60 + mi) * 60 + s) * 1e3 + frac - zone;
}

// Midnight UTC of a calendar date, or NaN when there is no such day.
function utcDate(year, month, day) {
  const [y, m, d] = [Number(year), Number(month), Number(day)];
  const ms = Date.UTC(y, m - 1, d);
  const back = new Date(ms);
  return back.getUTCFullYear() === y && back.getUTCMonth() === m - 1 && back.getUTCDate() === d ? ms : NaN;
}

/** Unix seconds as the URL writes absolute times. */
export function unixSeconds(ms) {
  return String(Math.round(ms / 1000));
}
