-- Firewatch storage, PostgreSQL dialect. Append-only: never edit a released migration.

CREATE TABLE tenants (
    id   BIGSERIAL PRIMARY KEY,
    name TEXT NOT NULL UNIQUE
);

CREATE TABLE functions (
    id        BIGSERIAL PRIMARY KEY,
    tenant_id BIGINT NOT NULL,
    name      TEXT NOT NULL,
    file      TEXT NOT NULL,
    line      BIGINT NOT NULL,
    UNIQUE (tenant_id, name, file, line)
);

CREATE TABLE stack_nodes (
    id          BIGSERIAL PRIMARY KEY,
    parent      BIGINT NOT NULL,
    function_id BIGINT NOT NULL,
    UNIQUE (parent, function_id)
);

CREATE TABLE series (
    id           BIGSERIAL PRIMARY KEY,
    tenant_id    BIGINT NOT NULL,
    labels       TEXT NOT NULL,
    sample_types TEXT NOT NULL,
    period_type  TEXT NOT NULL DEFAULT '',
    UNIQUE (tenant_id, labels)
);

CREATE TABLE blobs (
    id   BIGSERIAL PRIMARY KEY,
    data BYTEA NOT NULL
);

CREATE TABLE blocks (
    series_id BIGINT NOT NULL,
    tier      BIGINT NOT NULL,
    start_ms  BIGINT NOT NULL,
    id        BIGINT NOT NULL,
    end_ms    BIGINT NOT NULL,
    profiles  BIGINT NOT NULL,
    totals    BYTEA NOT NULL,
    PRIMARY KEY (series_id, tier, start_ms, id)
);

CREATE TABLE dirty (
    series_id BIGINT NOT NULL,
    tier      BIGINT NOT NULL,
    start_ms  BIGINT NOT NULL,
    version   BIGINT NOT NULL,            -- bumped by every profile landing in the window
    PRIMARY KEY (series_id, tier, start_ms)
);
