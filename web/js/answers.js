// Answers the views read from the server, each kind kept with the request
// it answers: asking again for the same request returns what arrived (or
// nothing while it loads), asking for another cancels the kind's request in
// flight and starts the new one. Kinds never cancel each other.

import { ApiError, url } from './api.js';

export class Answers {
  /** @param {() => void} onArrive called when an answer (or a refusal) arrives */
  constructor(onArrive) {
    this.kinds = new Map();
    this.onArrive = onArrive;
  }

  /** Cancels everything in flight and forgets every answer. */
  forget() {
    for (const a of this.kinds.values()) a.controller?.abort();
    this.kinds.clear();
  }

  /**
   * The answer of `kind` for `params` once it arrived (`undefined` while it
   * loads, an ApiError when refused); asks `fetcher(params, signal)` for it.
   */
  get(kind, params, fetcher) {
    const key = url('', params);
    const known = this.kinds.get(kind);
    if (known?.key === key) return known.value;
    known?.controller?.abort();
    const controller = new AbortController();
    this.kinds.set(kind, { key, value: undefined, controller });
    fetcher(params, controller.signal).then(
      (value) => this.arrive(kind, key, value),
      (e) => {
        if (e.name !== 'AbortError') this.arrive(kind, key, e instanceof ApiError ? e : new ApiError(String(e), 0));
      },
    );
    return undefined;
  }

  arrive(kind, key, value) {
    if (this.kinds.get(kind)?.key !== key) return;
    this.kinds.set(kind, { key, value });
    this.onArrive();
  }
}
