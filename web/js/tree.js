// Call trees as the views use them: the server's flamebearer
// (docs/flamegraph-json.md) decoded into flat columns, nodes grouped by
// depth and ordered left to right, so drawing and hit-testing a level is a
// scan or a binary search with no object per node.
//
// A tree: { names, numTicks, n, depth, levelStart (Int32Array, depth + 1
// entries), start, total, self (Float64Array: ticks can exceed 2^31),
// name, parent (Int32Array, -1 for the root), kernel (the Set of name
// indexes that are kernel functions), folded (a Map of "other" nodes to
// the number of calls each stands for) } and, for a diff,
// { diff: true, leftTicks, rightTicks, leftTotal, leftSelf, rightTotal, rightSelf }.

function alloc(n, depth) {
  return {
    n,
    depth,
    levelStart: new Int32Array(depth + 1),
    start: new Float64Array(n),
    total: new Float64Array(n),
    self: new Float64Array(n),
    name: new Int32Array(n),
    parent: new Int32Array(n).fill(-1),
  };
}

/** Decodes a `single` flamebearer. */
export function decodeSingle(fb) {
  const levels = fb.levels ?? [];
  const n = levels.reduce((s, l) => s + l.length / 4, 0);
  const t = alloc(n, levels.length);
  let i = 0;
  levels.forEach((lv, d) => {
    t.levelStart[d] = i;
    let end = 0;
    for (let j = 0; j + 3 < lv.length; j += 4) {
      t.start[i] = end + lv[j];
      t.total[i] = lv[j + 1];
      t.self[i] = lv[j + 2];
      t.name[i] = lv[j + 3];
      end = t.start[i] + t.total[i];
      i += 1;
    }
  });
  t.levelStart[levels.length] = i;
  linkParents(t, [[t.start, t.total]]);
  t.names = fb.names ?? [];
  t.kernel = new Set(fb.kernel ?? []);
  t.folded = foldedCalls(t, fb);
  t.numTicks = fb.numTicks ?? (n ? t.total[0] : 0);
  return t;
}

// "other" nodes -> how many calls each stands for, from the flamebearer's
// `[level, position, calls]` entries.
function foldedCalls(t, fb) {
  const out = new Map();
  for (const [level, position, calls] of fb.folded ?? []) {
    const i = t.levelStart[level] + position;
    if (level < t.depth && i < t.levelStart[level + 1]) out.set(i, calls);
  }
  return out;
}

/**
 * The two sides of a `double` (diff) flamebearer as `single` ones, each
 * without the nodes it has no samples in: the before and after
 * flamegraphs, drawn beside the diff.
 */
export function splitDouble(fb) {
  const side = (k) => {
    // Per level, each kept node's new position, for the folded counts.
    const moved = [];
    const levels = (fb.levels ?? []).map((lv) => {
      const out = [];
      const position = new Map();
      let end = 0; // where the previous node of the side ended
      let kept = 0; // where the previous kept node ended
      for (let j = 0; j + 6 < lv.length; j += 7) {
        const start = end + lv[j + 3 * k];
        const total = lv[j + 3 * k + 1];
        end = start + total;
        if (total <= 0) continue;
        position.set(j / 7, out.length / 4);
        out.push(start - kept, total, lv[j + 3 * k + 2], lv[j + 6]);
        kept = end;
      }
      moved.push(position);
      return out;
    });
    const folded = (fb.folded ?? [])
      .filter(([level, at]) => moved[level]?.has(at))
      .map(([level, at, calls]) => [level, moved[level].get(at), calls]);
    while (levels.length && levels[levels.length - 1].length === 0) levels.pop();
    const ticks = k === 0 ? fb.leftTicks : fb.rightTicks;
    return { names: fb.names, kernel: fb.kernel, folded, levels, numTicks: ticks ?? 0, format: 'single' };
  };
  return [side(0), side(1)];
}

/**
 * Decodes a `double` (diff) flamebearer. Widths are the mean of the two
 * sides' shares, so a function that vanished keeps a visible box and one
 * that appeared gets one; colour then tells the change.
 */
export function decodeDouble(fb, leftTicks, rightTicks) {
  const levels = fb.levels ?? [];
  const n = levels.reduce((s, l) => s + l.length / 7, 0);
  const t = alloc(n, levels.length);
  const side = () => ({ start: new Float64Array(n), total: new Float64Array(n), self: new Float64Array(n) });
  const L = side();
  const R = side();
  const lt = leftTicks > 0 ? leftTicks : 0;
  const rt = rightTicks > 0 ? rightTicks : 0;
  const SCALE = 1e9;
  // A side with no samples has no shares; the other one alone decides widths.
  const wl = lt && rt ? 0.5 : lt ? 1 : 0;
  const wr = lt && rt ? 0.5 : rt ? 1 : 0;
  let i = 0;
  levels.forEach((lv, d) => {
    t.levelStart[d] = i;
    let lend = 0;
    let rend = 0;
    for (let j = 0; j + 6 < lv.length; j += 7) {
      L.start[i] = lend + lv[j];
      L.total[i] = lv[j + 1];
      L.self[i] = lv[j + 2];
      R.start[i] = rend + lv[j + 3];
      R.total[i] = lv[j + 4];
      R.self[i] = lv[j + 5];
      t.name[i] = lv[j + 6];
      lend = L.start[i] + L.total[i];
      rend = R.start[i] + R.total[i];
      const share = (v, ticks) => (ticks ? v / ticks : 0);
      t.start[i] = SCALE * (wl * share(L.start[i], lt) + wr * share(R.start[i], rt));
      t.total[i] = SCALE * (wl * share(L.total[i], lt) + wr * share(R.total[i], rt));
      t.self[i] = SCALE * (wl * share(L.self[i], lt) + wr * share(R.self[i], rt));
      i += 1;
    }
  });
  t.levelStart[levels.length] = i;
  // Parents from integer positions of a side where the node exists: exact,
  // where the mixed positions could be off by a rounding.
  linkParents(t, [[R.start, R.total], [L.start, L.total]]);
  t.folded = foldedCalls(t, fb);
  Object.assign(t, {
    names: fb.names ?? [],
    kernel: new Set(fb.kernel ?? []),
    numTicks: n ? t.total[0] : 0,
    diff: true,
    leftTicks: lt,
    rightTicks: rt,
    leftTotal: L.total,
    leftSelf: L.self,
    rightTotal: R.total,
    rightSelf: R.self,
  });
  return t;
}

// A node's parent is the node one level up whose span holds its start, on
// the first side (of `sides`) where the node has a width.
function linkParents(t, sides) {
  for (let d = 1; d < t.depth; d += 1) {
    const lo = t.levelStart[d - 1];
    const hi = t.levelStart[d];
    for (let i = hi; i < t.levelStart[d + 1]; i += 1) {
      const side = sides.find(([, tot]) => tot[i] > 0) ?? sides[0];
      const [st, tot] = side;
      const x = st[i];
      let a = lo;
      let b = hi - 1;
      while (a < b) {
        const m = (a + b + 1) >> 1;
        if (st[m] <= x) a = m;
        else b = m - 1;
      }
      let p = a;
      while (p > lo && (tot[p] === 0 || x >= st[p] + tot[p])) p -= 1;
      t.parent[i] = p;
    }
  }
}

/** The level (depth) of node `i`. */
export function levelOf(t, i) {
  let a = 0;
  let b = t.depth - 1;
  while (a < b) {
    const m = (a + b + 1) >> 1;
    if (t.levelStart[m] <= i) a = m;
    else b = m - 1;
  }
  return a;
}

/** Children of every node: `{ first, list }`, node i's children are list[first[i]..first[i+1]). */
export function children(t) {
  if (t.childIndex) return t.childIndex;
  const first = new Int32Array(t.n + 1);
  for (let i = 1; i < t.n; i += 1) first[t.parent[i] + 1] += 1;
  for (let i = 0; i < t.n; i += 1) first[i + 1] += first[i];
  const fill = first.slice(0, t.n);
  const list = new Int32Array(Math.max(0, t.n - 1));
  for (let i = 1; i < t.n; i += 1) {
    list[fill[t.parent[i]]] = i;
    fill[t.parent[i]] += 1;
  }
  t.childIndex = { first, list };
  return t.childIndex;
}

/** Names from the root's child down to node i. */
export function pathOf(t, i) {
  const names = [];
  for (let k = i; k > 0; k = t.parent[k]) names.push(t.names[t.name[k]]);
  return names.reverse();
}

/** The node a path of names leads to, or 0 (the root) when it leads nowhere. */
export function findPath(t, names) {
  let node = 0;
  const { first, list } = children(t);
  for (const want of names) {
    let next = -1;
    for (let c = first[node]; c < first[node + 1]; c += 1) {
      if (t.names[t.name[list[c]]] === want) {
        next = list[c];
        break;
      }
    }
    if (next < 0) return node;
    node = next;
  }
  return node;
}

/** A case-insensitive substring test, or null for an empty search. */
export function matcher(search) {
  const s = search.trim().toLowerCase();
  if (!s) return null;
  return (name) => name.toLowerCase().includes(s);
}

/**
 * Which nodes match, and the share of the tree's time they cover (a match
 * inside another match is not counted twice).
 */
export function searchTree(t, search) {
  const test = matcher(search);
  if (!test) return null;
  const byName = new Int8Array(t.names.length).fill(-1);
  const hits = new Uint8Array(t.n);
  let covered = 0;
  let count = 0;
  for (let i = 1; i < t.n; i += 1) {
    const f = t.name[i];
    if (byName[f] < 0) byName[f] = test(t.names[f]) ? 1 : 0;
    if (!byName[f]) continue;
    hits[i] = 1;
    count += 1;
    let inner = false;
    for (let k = t.parent[i]; k > 0; k = t.parent[k]) {
      if (hits[k]) {
        inner = true;
        break;
      }
    }
    if (!inner) covered += t.total[i];
  }
  return { hits, count, covered, share: t.numTicks ? covered / t.numTicks : 0 };
}

/** Boxes that match and have no matching ancestor, largest first. */
export function outermostHits(tree, hits) {
  const out = [];
  for (let i = 1; i < tree.n; i += 1) {
    if (!hits[i]) continue;
    let inner = false;
    for (let k = tree.parent[i]; k > 0; k = tree.parent[k]) if (hits[k]) inner = true;
    if (!inner) out.push(i);
  }
  return out.sort((a, b) => tree.total[b] - tree.total[a]);
}
