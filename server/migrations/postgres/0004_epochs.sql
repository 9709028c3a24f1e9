-- Change tracking, so several servers over one database keep their
-- in-memory series index and dictionary current.
--
-- `epochs` holds counters: `series` is bumped by every transaction that
-- creates a series or changes its sample types (and stamps the rows it
-- changed with the new value as their `revision`); the row lock taken by
-- that update lasts until commit, so revisions become visible in order and
-- a server reads what changed with `revision > last seen`. `series_deleted`
-- is bumped by retention when it deletes series, `dictionary` when it
-- deletes functions and stack nodes: a server seeing either change reloads.
ALTER TABLE series ADD COLUMN revision BIGINT NOT NULL DEFAULT 0;
CREATE INDEX series_revision ON series (revision);

CREATE TABLE epochs (
    name  TEXT PRIMARY KEY,
    value BIGINT NOT NULL
);
INSERT INTO epochs (name, value) VALUES ('series', 0), ('series_deleted', 0), ('dictionary', 0);
