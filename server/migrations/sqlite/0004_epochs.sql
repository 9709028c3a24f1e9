-- Change tracking, so several servers over one database (PostgreSQL) keep
-- their in-memory series index and dictionary current; the same schema on
-- SQLite keeps the code one.
--
-- `epochs` holds counters: `series` is bumped by every transaction that
-- creates a series or changes its sample types (and stamps the rows it
-- changed with the new value as their `revision`), `series_deleted` by
-- retention when it deletes series, `dictionary` by retention when it
-- deletes functions and stack nodes.
ALTER TABLE series ADD COLUMN revision INTEGER NOT NULL DEFAULT 0;
CREATE INDEX series_revision ON series (revision);

CREATE TABLE epochs (
    name  TEXT PRIMARY KEY,
    value INTEGER NOT NULL
);
INSERT INTO epochs (name, value) VALUES ('series', 0), ('series_deleted', 0), ('dictionary', 0);
