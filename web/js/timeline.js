// The timeline: totals of the selection per step as bars, the compare
// windows as tinted bands, deploy annotations as markers. Dragging selects a
// time range; a click on a marker hands its annotation to the page.

import { contentWidth } from './flamegraph.js';
import { formatTime, formatValue } from './format.js';

const HEIGHT = 90;
const AXIS = 16;
const MARK_HIT = 6;

export class Timeline {
  /**
   * @param {HTMLCanvasElement} canvas
   * @param {HTMLElement} tooltip
   * @param {{onSelect: (fromMs: number, untilMs: number) => void,
   *          onAnnotation: (a: object, x: number, y: number) => void}} handlers
   */
  constructor(canvas, tooltip, handlers) {
    this.canvas = canvas;
    this.tooltip = tooltip;
    this.handlers = handlers;
    this.data = null;
    this.drag = null;
    // As the flamegraph: follow the space a scrollbar leaves.
    new ResizeObserver(() => {
      if (this.data && contentWidth(canvas.parentElement) !== this.width) this.render();
    }).observe(canvas.parentElement);
    canvas.addEventListener('mousedown', (e) => this.onDown(e));
    window.addEventListener('mousemove', (e) => this.onMove(e));
    window.addEventListener('mouseup', (e) => this.onUp(e));
    canvas.addEventListener('mouseleave', () => {
      if (!this.drag) this.tooltip.hidden = true;
    });
  }

  /**
   * @param {{timeline, fromMs, untilMs, meta, annotations, bands}} data
   *   bands: [{fromMs, untilMs, kind: 'baseline' | 'comparison'}]
   */
  show(data) {
    this.data = data;
    this.render();
  }

  render() {
    const canvas = this.canvas;
    const width = contentWidth(canvas.parentElement);
    const dpr = window.devicePixelRatio || 1;
    canvas.width = Math.round(width * dpr);
    canvas.height = Math.round(HEIGHT * dpr);
    canvas.style.width = `${width}px`;
    canvas.style.height = `${HEIGHT}px`;
    this.width = width;
    const ctx = canvas.getContext('2d');
    ctx.setTransform(dpr, 0, 0, dpr, 0, 0);
    ctx.clearRect(0, 0, width, HEIGHT);
    const d = this.data;
    if (!d) return;
    const css = getComputedStyle(document.documentElement);
    const colour = (name, fallback) => css.getPropertyValue(name).trim() || fallback;
    const plot = HEIGHT - AXIS;
    for (const band of d.bands ?? []) {
      const a = this.x(band.fromMs);
      const b = this.x(band.untilMs);
      ctx.fillStyle = colour(band.kind === 'baseline' ? '--band-base' : '--band-new', '#ddd');
      ctx.fillRect(a, 0, Math.max(1, b - a), plot);
    }
    const tl = d.timeline;
    const samples = tl?.samples ?? [];
    let max = 0;
    for (const v of samples) max = Math.max(max, v);
    if (max > 0) {
      const stepMs = (tl.durationDelta || 10) * 1000;
      ctx.fillStyle = colour('--bar', '#f08a24');
      samples.forEach((v, i) => {
        if (!v) return;
        const t = tl.startTime * 1000 + i * stepMs;
        const a = this.x(t);
        const w = Math.max(1, this.x(t + stepMs) - a - (stepMs * this.scale() > 3 ? 1 : 0));
        const h = Math.max(1, (v / max) * (plot - 12));
        ctx.fillRect(a, plot - h, w, h);
      });
      ctx.fillStyle = colour('--muted', '#666');
      ctx.font = '11px system-ui, sans-serif';
      ctx.textBaseline = 'top';
      ctx.fillText(`max ${formatValue(max, d.meta)} per ${tl.durationDelta || 10} s`, 4, 2);
    }
    this.axis(ctx, colour('--muted', '#666'), plot);
    ctx.strokeStyle = colour('--marker', '#7c3aed');
    ctx.fillStyle = ctx.strokeStyle;
    for (const a of d.annotations ?? []) {
      const x = Math.round(this.x(a.time)) + 0.5;
      ctx.setLineDash([3, 3]);
      ctx.beginPath();
      ctx.moveTo(x, 0);
      ctx.lineTo(x, plot);
      ctx.stroke();
      ctx.setLineDash([]);
      ctx.beginPath();
      ctx.moveTo(x - 5, 0);
      ctx.lineTo(x + 5, 0);
      ctx.lineTo(x, 8);
      ctx.fill();
    }
    if (this.drag?.moved) {
      const a = Math.min(this.drag.x0, this.drag.x1);
      const b = Math.max(this.drag.x0, this.drag.x1);
      ctx.fillStyle = colour('--selection', 'rgba(0,100,200,0.2)');
      ctx.fillRect(a, 0, b - a, plot);
    }
  }

  axis(ctx, colour, plot) {
    const { fromMs, untilMs } = this.data;
    const span = untilMs - fromMs;
    const steps = [60e3, 300e3, 900e3, 1800e3, 3600e3, 3 * 3600e3, 6 * 3600e3, 12 * 3600e3, 86400e3];
    const step = steps.find((s) => span / s <= this.width / 90) ?? 86400e3;
    ctx.fillStyle = colour;
    ctx.strokeStyle = colour;
    ctx.font = '11px system-ui, sans-serif';
    ctx.textBaseline = 'top';
    ctx.beginPath();
    ctx.moveTo(0, plot + 0.5);
    ctx.lineTo(this.width, plot + 0.5);
    ctx.stroke();
    const offset = new Date().getTimezoneOffset() * 60e3;
    for (let t = Math.ceil((fromMs - offset) / step) * step + offset; t < untilMs; t += step) {
      const x = this.x(t);
      const d = new Date(t);
      const hm = `${String(d.getHours()).padStart(2, '0')}:${String(d.getMinutes()).padStart(2, '0')}`;
      const label = step >= 86400e3 ? `${d.getMonth() + 1}/${d.getDate()}` : hm;
      ctx.fillRect(x, plot, 1, 4);
      ctx.fillText(label, Math.min(x + 2, this.width - 30), plot + 3);
    }
  }

  scale() {
    const { fromMs, untilMs } = this.data;
    return this.width / Math.max(1, untilMs - fromMs);
  }

  x(ms) {
    return (ms - this.data.fromMs) * this.scale();
  }

  time(x) {
    return this.data.fromMs + x / this.scale();
  }

  localX(e) {
    const r = this.canvas.getBoundingClientRect();
    return Math.min(this.width, Math.max(0, e.clientX - r.left));
  }

  annotationAt(x) {
    let best = null;
    for (const a of this.data?.annotations ?? []) {
      const dx = Math.abs(this.x(a.time) - x);
      if (dx <= MARK_HIT && (!best || dx < best.dx)) best = { a, dx };
    }
    return best?.a ?? null;
  }

  onDown(e) {
    if (!this.data || e.button !== 0) return;
    const x = this.localX(e);
    this.drag = { x0: x, x1: x, moved: false };
    // A drag that starts on a marker selects a range: the marker's tooltip goes.
    this.tooltip.hidden = true;
    e.preventDefault();
  }

  onMove(e) {
    if (!this.data) return;
    if (this.drag) {
      this.drag.x1 = this.localX(e);
      this.drag.moved ||= Math.abs(this.drag.x1 - this.drag.x0) > 3;
      this.render();
      return;
    }
    if (e.target !== this.canvas) return;
    const a = this.annotationAt(this.localX(e));
    this.canvas.style.cursor = a ? 'pointer' : 'crosshair';
    if (a) {
      this.tooltip.textContent = `${formatTime(a.time)} — ${a.text}`;
      this.tooltip.hidden = false;
      this.tooltip.style.left = `${e.clientX + window.scrollX + 12}px`;
      this.tooltip.style.top = `${e.clientY + window.scrollY + 12}px`;
    } else {
      this.tooltip.hidden = true;
    }
  }

  onUp(e) {
    const drag = this.drag;
    if (!drag) return;
    this.drag = null;
    this.render();
    if (drag.moved) {
      const a = this.time(Math.min(drag.x0, drag.x1));
      const b = this.time(Math.max(drag.x0, drag.x1));
      this.handlers.onSelect(a, b);
      return;
    }
    const ann = this.annotationAt(drag.x0);
    if (ann) this.handlers.onAnnotation(ann, e.clientX, e.clientY);
  }

  /** Page x of an annotation's marker (tests and keyboard users). */
  markerPoint(annotation) {
    const r = this.canvas.getBoundingClientRect();
    return { x: r.left + this.x(annotation.time), y: r.top + 4 };
  }
}
