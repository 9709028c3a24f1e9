-- Firewatch storage, SQLite dialect. Append-only: never edit a released migration.

CREATE TABLE tenants (
    id   INTEGER PRIMARY KEY,
    name TEXT NOT NULL UNIQUE
);

-- Per-tenant symbol dictionary.
CREATE TABLE functions (
    id        INTEGER PRIMARY KEY,
    tenant_id INTEGER NOT NULL,
    name      TEXT NOT NULL,
    file      TEXT NOT NULL,
    line      INTEGER NOT NULL,
    UNIQUE (tenant_id, name, file, line)
);

-- Trie of call paths: a stack is the id of its leaf node. Roots have parent 0.
-- Function ids belong to one tenant, so (parent, function_id) is unique per tenant too.
CREATE TABLE stack_nodes (
    id          INTEGER PRIMARY KEY,
    parent      INTEGER NOT NULL,
    function_id INTEGER NOT NULL,
    UNIQUE (parent, function_id)
);

CREATE TABLE series (
    id           INTEGER PRIMARY KEY,
    tenant_id    INTEGER NOT NULL,
    labels       TEXT NOT NULL,           -- canonical JSON object, keys sorted
    sample_types TEXT NOT NULL,           -- JSON [[kind, unit], ...]: column order of its blocks
    period_type  TEXT NOT NULL DEFAULT '',
    UNIQUE (tenant_id, labels)
);

-- One row per stored profile (tier 0) or rollup (tier 1: 10 min, 2: 1 h, 3: 1 day).
-- Small rows clustered by series and time, so planning and timelines scan
-- contiguous pages; payloads live in `blobs`.
CREATE TABLE blocks (
    series_id INTEGER NOT NULL,
    tier      INTEGER NOT NULL,
    start_ms  INTEGER NOT NULL,
    id        INTEGER NOT NULL,           -- = blobs.id
    end_ms    INTEGER NOT NULL,
    profiles  INTEGER NOT NULL,           -- stored profiles merged into this block
    totals    BLOB NOT NULL,              -- varint total per series column
    PRIMARY KEY (series_id, tier, start_ms, id)
) WITHOUT ROWID;

CREATE TABLE blobs (
    id   INTEGER PRIMARY KEY,
    data BLOB NOT NULL
);

-- Rollup windows to (re)build.
CREATE TABLE dirty (
    series_id INTEGER NOT NULL,
    tier      INTEGER NOT NULL,
    start_ms  INTEGER NOT NULL,
    version   BIGINT NOT NULL,            -- bumped by every profile landing in the window
    PRIMARY KEY (series_id, tier, start_ms)
) WITHOUT ROWID;
