// The server's query API (docs/api.md), with errors a view can show: an
// answer the server refused carries its message (a syntax error names its
// position); a request that never got an answer says the server is
// unreachable.

export class ApiError extends Error {
  /**
   * @param {string} message what went wrong, as the server said it
   * @param {number} status HTTP status, 0 when the server did not answer
   */
  constructor(message, status, kind = '', position = null) {
    super(message);
    this.status = status;
    this.kind = kind;
    this.queryPosition = position;
  }

  get unreachable() {
    return this.status === 0;
  }

  /** The byte position of a query syntax error (the server's `position` field), else null. */
  get position() {
    return Number.isInteger(this.queryPosition) ? this.queryPosition : null;
  }
}

/** `path?params` with empty values left out. */
export function url(path, params) {
  const q = new URLSearchParams();
  for (const [k, v] of Object.entries(params)) {
    if (v !== undefined && v !== null && v !== '') q.set(k, String(v));
  }
  const s = q.toString();
  return s ? `${path}?${s}` : path;
}

async function request(target, init = {}) {
  let resp;
  try {
    resp = await fetch(target, init);
  } catch (e) {
    if (e.name === 'AbortError') throw e;
    throw new ApiError(`The server is unreachable (${e.message}).`, 0);
  }
  const text = await resp.text();
  let body = null;
  try {
    body = text ? JSON.parse(text) : null;
  } catch {
    body = null;
  }
  if (!resp.ok) {
    const message = body?.error ?? body?.message ?? (text.trim() || resp.statusText);
    throw new ApiError(message, resp.status, body?.kind ?? '', body?.position ?? null);
  }
  return body;
}

const get = (path, params, signal) => request(url(path, params), { signal });

export const api = {
  services: (signal) => get('/api/v1/services', {}, signal),
  activity: (params, signal) => get('/api/v1/activity', params, signal),
  labelNames: (query, signal) => get('/labels', { query }, signal),
  labelValues: (label, query, signal) => get('/label-values', { label, query }, signal),
  render: (params, signal) => get('/render', { ...params, format: 'json' }, signal),
  diff: (params, signal) => get('/render-diff', { ...params, format: 'json' }, signal),
  annotations: (params, signal) => get('/api/annotations', params, signal),
  // Computed on the server from the whole merged profile, not from the
  // flamegraph, which is truncated for drawing.
  functions: (params, signal) => get('/api/v1/functions', params, signal),
  sandwich: (params, signal) => get('/api/v1/sandwich', params, signal),
};
