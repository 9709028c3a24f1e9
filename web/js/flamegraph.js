// A flamegraph on a canvas: icicle (root on top) or flame (root at the
// bottom), zoom by click, hover tooltips, search highlighting, keyboard
// navigation, and the diff colouring. One class serves the main view, the
// two halves of the sandwich view and the compare view.
//
// Drawing walks the flat columns of tree.js level by level and skips boxes
// narrower than half a pixel, so 20,000 nodes draw in a few milliseconds;
// hovering only hit-tests (a binary search in one level) and moves the
// tooltip, it never redraws.

import { formatPercent, formatPoints, formatValue } from './format.js';
import { levelOf, pathOf } from './tree.js';

const ROW = 20;
const FONT = '12px ui-monospace, SFMono-Regular, Menlo, Consolas, monospace';

/** What the boxes that are not functions stand for, in their tooltips. */
const NOTES = {
  other:
    'Calls too small to draw within this graph\'s node budget, folded together (their totals are exact; ' +
    'the top table and search count them one by one). "Draw more" above raises the budget.',
  '[truncated stack]':
    'The agent stopped unwinding these stacks before the thread\'s first function (the stack was deeper ' +
    'than it could read, or a frame had no unwind information): the frames above this box are the ' +
    'outermost ones it read (the agent\'s documentation, "Deep stacks", says when this happens).',
  '[python stack not read]':
    'A Python thread whose Python frames could not be read for this sample: its native frames are shown.',
};

export class FlameGraph {
  /**
   * @param {HTMLCanvasElement} canvas
   * @param {HTMLElement} tooltip shared tooltip element
   * @param {{onZoom?: (path: string[]) => void, label?: string}} options
   */
  constructor(canvas, tooltip, options = {}) {
    this.canvas = canvas;
    this.tooltip = tooltip;
    this.options = options;
    this.tree = null;
    // A vertical scrollbar appearing narrows the page without a window
    // resize event: redraw to the new width rather than overflow it.
    new ResizeObserver(() => {
      if (this.tree && contentWidth(canvas.parentElement) !== this.width) this.render();
    }).observe(canvas.parentElement);
    this.zoom = 0;
    this.cursor = -1;
    this.hits = null;
    this.orient = 'icicle';
    this.meta = {};
    this.palette = null;
    this.display = (name) => name;
    this.colours = [];
    this.stats = { renderMs: 0, drawn: 0, hoverMs: 0, hoverMaxMs: 0, hovers: 0 };
    canvas.tabIndex = 0;
    canvas.setAttribute('role', 'img');
    canvas.addEventListener('mousemove', (e) => this.onMove(e));
    canvas.addEventListener('mouseleave', () => this.hideTooltip());
    canvas.addEventListener('click', (e) => this.onClick(e));
    canvas.addEventListener('keydown', (e) => this.onKey(e));
    canvas.addEventListener('blur', () => this.hideTooltip());
  }

  /**
   * Shows a tree. `options`: meta (units), orient, zoom (node index),
   * hits (search result), palette (diff colours), display (the name a
   * box shows for a function's full name).
   */
  show(tree, options = {}) {
    if (tree !== this.tree) {
      this.tree = tree;
      this.colours = [];
      this.cursor = -1;
    }
    this.meta = options.meta ?? this.meta;
    this.orient = options.orient ?? this.orient;
    const zoom = options.zoom ?? 0;
    // A zoom from outside (breadcrumb, URL) restarts keyboard navigation there.
    if (zoom !== this.zoom) this.cursor = -1;
    this.zoom = zoom;
    this.hits = options.hits ?? null;
    this.palette = options.palette ?? null;
    this.display = options.display ?? this.display;
    this.render();
  }

  /** The zoom to keep when showing `tree`: the current one if it is the tree shown. */
  zoomFor(tree) {
    return tree === this.tree ? this.zoom : 0;
  }

  /** Redraws; the time it took is in `stats.renderMs`. */
  render() {
    const t0 = performance.now();
    const t = this.tree;
    const canvas = this.canvas;
    const width = contentWidth(canvas.parentElement);
    const depth = t ? t.depth : 0;
    const height = Math.max(ROW, depth * ROW);
    const dpr = window.devicePixelRatio || 1;
    canvas.width = Math.round(width * dpr);
    canvas.height = Math.round(height * dpr);
    canvas.style.width = `${width}px`;
    canvas.style.height = `${height}px`;
    const ctx = canvas.getContext('2d');
    ctx.setTransform(dpr, 0, 0, dpr, 0, 0);
    ctx.clearRect(0, 0, width, height);
    this.width = width;
    let drawn = 0;
    if (t && t.n > 0) {
      const css = getComputedStyle(document.documentElement);
      const text = css.getPropertyValue('--flame-text').trim() || '#111';
      const dim = css.getPropertyValue('--flame-dim').trim() || '#ccc';
      const ancestor = css.getPropertyValue('--flame-ancestor').trim() || '#bbb';
      ctx.font = FONT;
      ctx.textBaseline = 'middle';
      const charWidth = ctx.measureText('M').width;
      const z = this.zoom;
      const x0 = t.start[z];
      const scale = width / (t.total[z] || 1);
      const zLevel = levelOf(t, z);
      const x1 = x0 + t.total[z];
      for (let d = 0; d < t.depth; d += 1) {
        const y = this.rowY(d);
        const lo = t.levelStart[d];
        const hi = t.levelStart[d + 1];
        for (let i = firstEndingAfter(t, lo, hi, x0); i < hi; i += 1) {
          const s = t.start[i];
          if (s >= x1) break;
          let px = (s - x0) * scale;
          let w = t.total[i] * scale;
          if (w < 0.5) continue;
          if (px < 0) {
            w += px;
            px = 0;
          }
          if (px + w > width) w = width - px;
          let fill;
          if (d < zLevel) fill = ancestor;
          else if (this.hits && !this.hits[i]) fill = dim;
          else fill = this.colour(i);
          ctx.fillStyle = fill;
          ctx.fillRect(px, y, Math.max(0.5, w - 0.5), ROW - 1);
          drawn += 1;
          if (w > 3 * charWidth) {
            const label = fit(this.boxName(i), Math.floor((w - 6) / charWidth));
            if (label) {
              ctx.fillStyle = text;
              ctx.fillText(label, px + 3, y + ROW / 2);
            }
          }
        }
      }
      if (this.cursor >= 0) {
        const r = this.nodeBox(this.cursor);
        if (r) {
          ctx.strokeStyle = css.getPropertyValue('--focus').trim() || '#06c';
          ctx.lineWidth = 2;
          ctx.strokeRect(r.x + 1, r.y + 1, Math.max(2, r.w - 2), ROW - 3);
        }
      }
    }
    this.stats.drawn = drawn;
    this.stats.renderMs = performance.now() - t0;
  }

  /** What box `i` is called: the shown name, or how many calls an "other" folds. */
  boxName(i) {
    const t = this.tree;
    const calls = t.folded?.get(i);
    if (calls) return `other: ${calls} smaller ${calls === 1 ? 'call' : 'calls'}`;
    return this.display(t.names[t.name[i]]);
  }

  rowY(d) {
    return this.orient === 'icicle' ? d * ROW : (this.tree.depth - 1 - d) * ROW;
  }

  // Box of node i in canvas pixels at the current zoom, or null if hidden.
  nodeBox(i) {
    const t = this.tree;
    if (!t || i < 0 || i >= t.n) return null;
    const z = this.zoom;
    const scale = this.width / (t.total[z] || 1);
    let x = (t.start[i] - t.start[z]) * scale;
    let w = t.total[i] * scale;
    if (x < 0) {
      w += x;
      x = 0;
    }
    w = Math.min(w, this.width - x);
    if (w < 0.5) return null;
    return { x, y: this.rowY(levelOf(t, i)), w, h: ROW };
  }

  /** The node under canvas point (x, y), or -1. */
  nodeAt(x, y) {
    const t = this.tree;
    if (!t || t.n === 0) return -1;
    const row = Math.floor(y / ROW);
    const d = this.orient === 'icicle' ? row : t.depth - 1 - row;
    if (d < 0 || d >= t.depth) return -1;
    const z = this.zoom;
    const ticks = t.start[z] + (x / this.width) * t.total[z];
    const lo = t.levelStart[d];
    const hi = t.levelStart[d + 1];
    let a = lo;
    let b = hi - 1;
    if (b < a) return -1;
    while (a < b) {
      const m = (a + b + 1) >> 1;
      if (t.start[m] <= ticks) a = m;
      else b = m - 1;
    }
    if (t.start[a] <= ticks && ticks < t.start[a] + t.total[a]) return a;
    return -1;
  }

  /** Page-relative box of the widest visible node named `name` (tests, keyboard). */
  boxOf(name) {
    const t = this.tree;
    if (!t) return null;
    let best = null;
    for (let i = 0; i < t.n; i += 1) {
      if (t.names[t.name[i]] !== name) continue;
      const r = this.nodeBox(i);
      if (r && (!best || r.w > best.w)) best = { ...r, node: i };
    }
    if (!best) return null;
    const rect = this.canvas.getBoundingClientRect();
    return { x: rect.left + best.x, y: rect.top + best.y, w: best.w, h: best.h, node: best.node };
  }

  colour(i) {
    const t = this.tree;
    if (t.diff) return this.diffColour(i);
    const f = t.name[i];
    if (!this.colours[f]) this.colours[f] = t.kernel?.has(f) ? cool(t.names[f]) : warm(t.names[f]);
    return this.colours[f];
  }

  // Red when the node's share grew, green (or blue) when it shrank, grey
  // when unchanged; saturation follows the size of the change.
  diffColour(i) {
    const t = this.tree;
    const delta = shareDelta(t, i);
    const p = this.palette ?? {};
    if (this.maxDelta === undefined || this.maxDeltaTree !== t) {
      let m = 0;
      for (let k = 1; k < t.n; k += 1) m = Math.max(m, Math.abs(shareDelta(t, k)));
      this.maxDelta = Math.max(m, 0.001);
      this.maxDeltaTree = t;
    }
    const k = Math.min(1, Math.abs(delta) / this.maxDelta);
    const base = p.unchanged ?? '#b0b0b0';
    if (Math.abs(delta) < 1e-9) return base;
    return mix(base, delta > 0 ? (p.grew ?? '#e5484d') : (p.shrank ?? '#30a46c'), 0.25 + 0.75 * k);
  }

  describe(i) {
    const t = this.tree;
    const name = t.folded?.has(i) ? this.boxName(i) : t.names[t.name[i]];
    if (t.diff) {
      const before = t.leftTicks ? t.leftTotal[i] / t.leftTicks : 0;
      const after = t.rightTicks ? t.rightTotal[i] / t.rightTicks : 0;
      return {
        name,
        rows: [
          ['Before', `${formatPercent(before)} (${formatValue(t.leftTotal[i], this.meta)})`],
          ['After', `${formatPercent(after)} (${formatValue(t.rightTotal[i], this.meta)})`],
          ['Change', formatPoints(after - before)],
        ],
      };
    }
    const rows = [
      ['Self', `${formatValue(t.self[i], this.meta)} (${formatPercent(t.self[i] / t.numTicks)})`],
      ['Total', `${formatValue(t.total[i], this.meta)} (${formatPercent(t.total[i] / t.numTicks)})`],
    ];
    if (this.zoom > 0) rows.push(['Of zoomed', formatPercent(t.total[i] / t.total[this.zoom])]);
    const note = NOTES[t.names[t.name[i]]];
    if (note) rows.push(['What', note]);
    if (t.kernel?.has(t.name[i])) rows.push(['Where', 'in the kernel']);
    return { name, rows };
  }

  onMove(e) {
    const t0 = performance.now();
    const rect = this.canvas.getBoundingClientRect();
    const i = this.nodeAt(e.clientX - rect.left, e.clientY - rect.top);
    if (i < 0) this.hideTooltip();
    else this.showTooltip(i, e.clientX, e.clientY);
    this.canvas.style.cursor = i < 0 ? 'default' : 'pointer';
    const ms = performance.now() - t0;
    this.stats.hovers += 1;
    this.stats.hoverMs = ms;
    this.stats.hoverMaxMs = Math.max(this.stats.hoverMaxMs, ms);
  }

  showTooltip(i, x, y) {
    const { name, rows } = this.describe(i);
    const tip = this.tooltip;
    tip.replaceChildren();
    const title = document.createElement('div');
    title.className = 'tip-name';
    title.textContent = name;
    tip.append(title);
    const dl = document.createElement('dl');
    for (const [k, v] of rows) {
      const dt = document.createElement('dt');
      dt.textContent = k;
      const dd = document.createElement('dd');
      dd.textContent = v;
      dl.append(dt, dd);
    }
    tip.append(dl);
    tip.hidden = false;
    const w = tip.offsetWidth;
    const h = tip.offsetHeight;
    const left = x + 14 + w > window.innerWidth ? x - w - 10 : x + 14;
    const top = y + 16 + h > window.innerHeight ? y - h - 10 : y + 16;
    tip.style.left = `${Math.max(0, left + window.scrollX)}px`;
    tip.style.top = `${Math.max(0, top + window.scrollY)}px`;
  }

  hideTooltip() {
    this.tooltip.hidden = true;
  }

  onClick(e) {
    const rect = this.canvas.getBoundingClientRect();
    const i = this.nodeAt(e.clientX - rect.left, e.clientY - rect.top);
    if (i < 0) return;
    this.cursor = i;
    this.zoomTo(i);
  }

  zoomTo(i) {
    this.zoom = i;
    this.hideTooltip();
    this.render();
    this.options.onZoom?.(i === 0 ? [] : pathOf(this.tree, i));
  }

  // Arrows move a cursor through the tree (up and down follow the drawing),
  // Enter zooms into it, Escape zooms out one level.
  onKey(e) {
    const t = this.tree;
    if (!t || t.n === 0) return;
    let c = this.cursor < 0 ? this.zoom : this.cursor;
    const towardRoot = this.orient === 'icicle' ? 'ArrowUp' : 'ArrowDown';
    const towardLeaves = this.orient === 'icicle' ? 'ArrowDown' : 'ArrowUp';
    if (e.key === towardRoot) c = t.parent[c] >= 0 ? t.parent[c] : c;
    else if (e.key === towardLeaves) c = this.widestChild(c);
    else if (e.key === 'ArrowLeft' || e.key === 'ArrowRight') c = this.sibling(c, e.key === 'ArrowRight' ? 1 : -1);
    else if (e.key === 'Enter' || e.key === ' ') {
      this.zoomTo(c);
      e.preventDefault();
      return;
    } else if (e.key === 'Escape') {
      this.cursor = this.zoom;
      this.zoomTo(t.parent[this.zoom] >= 0 ? t.parent[this.zoom] : 0);
      e.preventDefault();
      return;
    } else return;
    e.preventDefault();
    this.cursor = c;
    this.render();
    const box = this.nodeBox(c);
    const rect = this.canvas.getBoundingClientRect();
    if (box) this.showTooltip(c, rect.left + box.x + Math.min(box.w, 40), rect.top + box.y);
    this.canvas.setAttribute('aria-label', `${this.options.label ?? 'Flamegraph'}: ${t.names[t.name[c]]}`);
  }

  widestChild(i) {
    const t = this.tree;
    const d = levelOf(t, i);
    if (d + 1 >= t.depth) return i;
    let best = i;
    for (let k = t.levelStart[d + 1]; k < t.levelStart[d + 2]; k += 1) {
      if (t.parent[k] === i && (best === i || t.total[k] > t.total[best])) best = k;
    }
    return best;
  }

  sibling(i, step) {
    const t = this.tree;
    const d = levelOf(t, i);
    for (let k = i + step; k >= t.levelStart[d] && k < t.levelStart[d + 1]; k += step) {
      if (this.nodeBox(k)) return k;
    }
    return i;
  }
}

/** The width inside an element's padding: what a canvas in it may fill. */
export function contentWidth(el) {
  if (!el) return 800;
  const cs = getComputedStyle(el);
  return Math.max(100, Math.floor(el.clientWidth - parseFloat(cs.paddingLeft) - parseFloat(cs.paddingRight)));
}

function shareDelta(t, i) {
  const before = t.leftTicks ? t.leftTotal[i] / t.leftTicks : 0;
  const after = t.rightTicks ? t.rightTotal[i] / t.rightTicks : 0;
  return after - before;
}

// First node of a level [lo, hi) that ends after x (levels are sorted).
function firstEndingAfter(t, lo, hi, x) {
  let a = lo;
  let b = hi;
  while (a < b) {
    const m = (a + b) >> 1;
    if (t.start[m] + t.total[m] <= x) a = m + 1;
    else b = m;
  }
  return a;
}

/**
 * A label of at most `chars` characters. A long name is cut in the middle,
 * keeping its last path segment (the method: `llvm::Dw…::addString`), so a
 * tower of boxes from one namespace still reads apart; a segment too long
 * for the box keeps its end.
 */
export function fit(text, chars) {
  if (chars <= 1) return '';
  if (text.length <= chars) return text;
  const sep = Math.max(text.lastIndexOf('::'), text.lastIndexOf('.'), text.lastIndexOf('/'));
  const tail = sep > 0 ? text.slice(sep) : '';
  if (tail && tail.length + 2 <= chars) return `${text.slice(0, chars - 1 - tail.length)}…${tail}`;
  return `…${text.slice(text.length - (chars - 1))}`;
}

// FlameGraph's warm palette, stable per name: the same function has the
// same colour in every view and every reload.
function warm(name) {
  const h = fnv(name);
  const u = h / 4294967296;
  const v = ((h >>> 8) & 0xffff) / 65536;
  const hue = Math.round(5 + 45 * u);
  const sat = Math.round(70 + 20 * v);
  const light = Math.round(58 + 10 * (1 - u));
  return `hsl(${hue} ${sat}% ${light}%)`;
}

// Kernel functions: blues, apart from the warm user-space boxes (perf's
// FlameGraph sets them apart by hue too).
function cool(name) {
  const u = fnv(name) / 4294967296;
  return `hsl(${Math.round(195 + 25 * u)} 60% ${Math.round(62 + 8 * (1 - u))}%)`;
}

// FNV-1a of a name, unsigned 32 bits.
function fnv(name) {
  let h = 2166136261;
  for (let i = 0; i < name.length; i += 1) {
    h ^= name.charCodeAt(i);
    h = Math.imul(h, 16777619);
  }
  return h >>> 0;
}

function mix(a, b, k) {
  const pa = hex(a);
  const pb = hex(b);
  const c = pa.map((x, j) => Math.round(x + (pb[j] - x) * k));
  return `rgb(${c[0]} ${c[1]} ${c[2]})`;
}

function hex(s) {
  const m = /^#?([0-9a-f]{6})$/i.exec(s.trim());
  const v = m ? parseInt(m[1], 16) : 0xb0b0b0;
  return [(v >> 16) & 255, (v >> 8) & 255, v & 255];
}
