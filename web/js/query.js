// Selectors (`{service_name="checkout",version=~"1\\..*"}`) as lists of
// matchers, so the pickers and the label builder can edit the query the
// raw field shows. Pyroscope's form (`checkout.cpu{version="1.4"}`) reads
// as the server reads it: the service before the last dot, then the
// profile kind. The server stays the judge of syntax: text this parser
// cannot read is sent as typed and the server's error (with its position)
// is shown.

const OPS = ['=~', '!~', '!=', '='];

/** Matchers of a selector, or null when the text is not one we can edit. */
export function parseSelector(text) {
  const s = text.trim();
  if (s === '') return [];
  if (!s.startsWith('{') || !s.endsWith('}')) return null;
  const out = [];
  let i = 1;
  const end = s.length - 1;
  const skip = () => {
    while (i < end && /\s/.test(s[i])) i += 1;
  };
  skip();
  while (i < end) {
    const name = /^[A-Za-z_][A-Za-z0-9_.]*/.exec(s.slice(i, end));
    if (!name) return null;
    i += name[0].length;
    skip();
    const op = OPS.find((o) => s.startsWith(o, i));
    if (!op) return null;
    i += op.length;
    skip();
    if (s[i] !== '"') return null;
    i += 1;
    let value = '';
    while (i < end && s[i] !== '"') {
      if (s[i] === '\\' && i + 1 < end) i += 1;
      value += s[i];
      i += 1;
    }
    if (s[i] !== '"') return null;
    i += 1;
    out.push({ name: name[0], op, value });
    skip();
    if (s[i] === ',') {
      i += 1;
      skip();
    } else if (i < end) return null;
  }
  return out;
}

/** A selector from matchers. */
export function formatSelector(matchers) {
  const quote = (v) => `"${v.replace(/\\/g, '\\\\').replace(/"/g, '\\"')}"`;
  return `{${matchers.map((m) => `${m.name}${m.op}${quote(m.value)}`).join(',')}}`;
}

/** The service and profile kind of a query in Pyroscope's form, or null. */
export function legacyHead(query) {
  const s = query.trim();
  if (s === '' || s.startsWith('{')) return null;
  const head = s.split('{')[0].trim();
  const dot = head.lastIndexOf('.');
  return dot > 0 ? { service: head.slice(0, dot), kind: head.slice(dot + 1) } : { service: head, kind: '' };
}

/** Matchers of a query in either form, or null when it is not one we can edit. */
export function matchersOf(query) {
  const legacy = legacyHead(query);
  if (!legacy) return parseSelector(query);
  const brace = query.indexOf('{');
  const rest = brace < 0 ? [] : parseSelector(query.slice(brace));
  if (rest === null) return null;
  return [{ name: 'service_name', op: '=', value: legacy.service }, ...rest.filter((m) => m.name !== 'service_name')];
}

/** The selector with label `name` set to `value` (or removed when `value` is null). */
export function withMatcher(query, name, op, value) {
  const matchers = (matchersOf(query) ?? []).filter((m) => m.name !== name);
  if (value !== null) matchers.unshift({ name, op, value });
  matchers.sort((a, b) => (a.name === 'service_name' ? -1 : b.name === 'service_name' ? 1 : 0));
  return formatSelector(matchers);
}

/** The `service_name` a selector asks for with `=`, or ''. */
export function serviceOf(query) {
  const m = (matchersOf(query) ?? []).find((x) => x.name === 'service_name' && x.op === '=');
  return m ? m.value : '';
}
