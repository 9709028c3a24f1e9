// Values as people read them: the server's metadata says what a tick is
// (`units` and `sampleRate`, see docs/api.md), so a CPU profile reads in
// seconds and a memory profile in bytes.

const DURATION_UNITS = new Set(['samples', 'lock_nanoseconds']);

/** Formats `ticks` of a profile whose metadata is `meta`. */
export function formatValue(ticks, meta) {
  const units = meta?.units ?? '';
  if (DURATION_UNITS.has(units)) {
    const rate = units === 'lock_nanoseconds' ? 1e9 : meta.sampleRate || 100;
    return formatSeconds(ticks / rate);
  }
  if (units === 'bytes') return formatBytes(ticks);
  const suffix = units && units !== 'objects' ? ` ${units.replace('_', ' ')}` : '';
  return formatCount(ticks) + (units === 'objects' ? ' objects' : suffix);
}

export function formatSeconds(s) {
  const a = Math.abs(s);
  if (a === 0) return '0 s';
  if (a < 1e-3) return `${trim(s * 1e6)} µs`;
  if (a < 1) return `${trim(s * 1e3)} ms`;
  if (a < 120) return `${trim(s)} s`;
  if (a < 7200) return `${trim(s / 60)} min`;
  return `${trim(s / 3600)} h`;
}

export function formatBytes(b) {
  const units = ['B', 'KiB', 'MiB', 'GiB', 'TiB'];
  let v = b;
  let i = 0;
  while (Math.abs(v) >= 1024 && i < units.length - 1) {
    v /= 1024;
    i += 1;
  }
  return `${i === 0 ? Math.round(v) : trim(v)} ${units[i]}`;
}

export function formatCount(n) {
  const a = Math.abs(n);
  if (a < 1e3) return String(Math.round(n));
  if (a < 1e6) return `${trim(n / 1e3)}k`;
  if (a < 1e9) return `${trim(n / 1e6)}M`;
  return `${trim(n / 1e9)}G`;
}

/** A fraction (0.123) as a percentage ("12.30%"). */
export function formatPercent(fraction) {
  if (!Number.isFinite(fraction)) return '–';
  return `${(fraction * 100).toFixed(2)}%`;
}

/** A change of share in percentage points, signed ("+12.30 pp"). */
export function formatPoints(delta) {
  const pp = delta * 100;
  return `${pp > 0 ? '+' : pp < 0 ? '−' : '±'}${Math.abs(pp).toFixed(2)} pp`;
}

// Three significant digits, no trailing zeros.
function trim(v) {
  const a = Math.abs(v);
  const digits = a >= 100 ? 0 : a >= 10 ? 1 : 2;
  return String(Number(v.toFixed(digits)));
}

/** A profile type id (`process_cpu:cpu:nanoseconds:cpu:nanoseconds`) as a picker label. */
export function typeLabel(id) {
  const parts = id.split(':');
  if (parts.length < 3) return id;
  return `${parts[1]} (${parts[2]})`;
}

/** Unix milliseconds as a short local date and time. */
export function formatTime(ms) {
  const d = new Date(ms);
  const pad = (n) => String(n).padStart(2, '0');
  return `${d.getFullYear()}-${pad(d.getMonth() + 1)}-${pad(d.getDate())} ${pad(d.getHours())}:${pad(d.getMinutes())}:${pad(d.getSeconds())}`;
}
