// What the page's parts share: the state (mirrored in the URL), the data
// of the current query, the whole-profile answers, and the two ways to
// change anything: `update` (a change of state) and `draw`. app.js fills
// in `update`, `draw` and `load`; the views read and call them from here.

import { Answers } from './answers.js';
import { fromSearch } from './state.js';

/** Looks up an element by id. */
export const $ = (id) => document.getElementById(id);

/** The largest node count the flamegraph draws before folding into "other". */
export const DEFAULT_MAX_NODES = 32768;

export const page = {
  state: fromSearch(location.search),
  /** The services and their profile types. */
  services: [],
  /** The current query's render answer, its decoded tree, its annotations and range; the comparison. */
  data: { render: null, tree: null, annotations: [], range: null, diff: null, diffTree: null, sides: null },
  // Answers computed on the server from the whole profile (the table, the
  // search's coverage, the sandwich, the finder, the services' activity),
  // each kept with the request it answers; one arriving redraws.
  answers: new Answers(() => page.draw()),
  /** Applies a change of state: `update(patch, {push})`. */
  update: () => {},
  /** Redraws from the state and what has arrived. */
  draw: () => {},
  /** Fetches the current query again. */
  load: () => {},
};

/** The data parameters every whole-profile answer shares. */
export function profileParams() {
  const s = page.state;
  return {
    query: s.query,
    profile_type: s.type,
    from: s.from,
    until: s.until,
    hideTruncated: s.truncated === 'hide' ? 'true' : '',
  };
}
