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

const UNIT_MS = { ms: 1, s: 1e3, m: 60e3, h: 3600e3, d: 86400e3, w: 604800e3 };

/**
 * A time as the server reads it (`now-1h`, Unix time by digit count, RFC
 * 3339) in Unix milliseconds, or NaN; used to draw ranges and to derive the
 * compare windows.
 */
export function resolveTime(text, now = Date.now()) {
  const t = String(text).trim();
  if (t === '' || t === 'now') return now;
  const rel = /^(?:now)?([+-])((?:\d+(?:ms|s|m|h|d|w))+)$/.exec(t);
  if (rel) {
    let ms = 0;
    for (const [, n, unit] of rel[2].matchAll(/(\d+)(ms|s|m|h|d|w)/g)) ms += Number(n) * UNIT_MS[unit];
    return rel[1] === '-' ? now - ms : now + ms;
  }
  if (/^\d+$/.test(t)) {
    const n = Number(t);
    if (t.length <= 11) return n * 1e3;
    if (t.length <= 14) return n;
    if (t.length <= 17) return n / 1e3;
    return n / 1e6;
  }
  return Date.parse(t);
}

/** Unix seconds as the URL writes absolute times. */
export function unixSeconds(ms) {
  return String(Math.round(ms / 1000));
}
