// How function names are shown: in full, or simplified (argument lists,
// generic parameters and all but the last namespace dropped) so a tower of
// `llvm::DwarfUnit::…` or `<core::iter::…>` boxes reads apart. Only what is
// shown changes: search, the tables' order and the links use full names.

/**
 * A shorter form of a demangled C++ or Rust name:
 * `llvm::DwarfUnit::addString(llvm::DIE&, unsigned)` → `DwarfUnit::addString`,
 * `<alloc::vec::Vec<T> as core::ops::drop::Drop>::drop` → `<Vec as Drop>::drop`,
 * `core::ptr::drop_in_place<foo::Bar>::h0123456789abcdef` → `ptr::drop_in_place`.
 */
export function simplify(name) {
  const bare = name.replace(/::h[0-9a-f]{16}$/, '');
  const s = path(bare, 2);
  return s || name;
}

// The last `keep` segments of a `::` path, each segment simplified.
function path(text, keep) {
  const segments = splitTop(text.trim(), '::')
    // A qualified type `<A as B>` only starts a path; later it is a turbofish's generics.
    .filter((s, i) => i === 0 || !s.trimStart().startsWith('<'))
    .map(segment)
    .filter((s) => s !== '');
  return segments.slice(-keep).join('::');
}

// One path segment: a qualified type `<A as B>` keeps the last segment of
// each side, generic parameters `<…>` and argument lists `(…)` after a
// name go, and so do the qualifiers after an argument list (`const`).
function segment(seg) {
  let out = '';
  let i = 0;
  while (i < seg.length) {
    const c = seg[i];
    const op = /operator$/.test(out) ? OPERATOR.exec(seg.slice(i)) : null;
    if (op) {
      out += op[0];
      i += op[0].length;
    } else if (c === '<' || c === '(') {
      const end = closing(seg, i);
      const inner = seg.slice(i + 1, end);
      if (out.trim() === '') {
        out += c === '<' ? `<${splitTop(inner, ' as ').map((p) => path(p, 1)).join(' as ')}>` : `(${inner})`;
      } else if (c === '(') {
        return out.trimEnd();
      }
      i = end + 1;
    } else {
      out += c;
      i += 1;
    }
  }
  return out.trim();
}

// The symbol of a C++ operator's name (`operator<<`, `operator()`).
const OPERATOR = /^(?:\(\)|\[\]|[<>=!+\-*/%&|^~,]+)/;

// The index of the bracket closing the one at `open` (or the end), skipping
// nested brackets and the `>` of `->`.
function closing(text, open) {
  let depth = 0;
  for (let i = open; i < text.length; i += 1) {
    const c = text[i];
    if (c === '<' || c === '(' || c === '[') depth += 1;
    else if ((c === '>' && text[i - 1] !== '-') || c === ')' || c === ']') {
      depth -= 1;
      if (depth === 0) return i;
    }
  }
  return text.length;
}

// `text` split at `sep` outside brackets.
function splitTop(text, sep) {
  const parts = [];
  let depth = 0;
  let from = 0;
  for (let i = 0; i < text.length; i += 1) {
    const c = text[i];
    if (c === '<' || c === '(' || c === '[') depth += 1;
    else if ((c === '>' && text[i - 1] !== '-') || c === ')' || c === ']') depth = Math.max(0, depth - 1);
    else if (depth === 0 && text.startsWith(sep, i)) {
      parts.push(text.slice(from, i));
      from = i + sep.length;
      i += sep.length - 1;
    }
  }
  parts.push(text.slice(from));
  return parts;
}

/** A table's text for a function: its shown name, `[k]` after a kernel one. */
export function rowName(name, kernel, show) {
  const shown = show(name);
  return kernel && !shown.endsWith('[k]') ? `${shown} [k]` : shown;
}

const full = (name) => name;
// Simplified names, kept for the page's life: every view asks for the
// same few thousand names on every redraw.
const simplified = new Map();
const simple = (name) => {
  let s = simplified.get(name);
  if (s === undefined) {
    s = simplify(name);
    simplified.set(name, s);
  }
  return s;
};

/** What a view shows for a name under the `names` setting (`full` or `simple`). */
export function namer(setting) {
  return setting === 'simple' ? simple : full;
}
