-- Annotations: points in time a tenant marked (deploys, incidents), shown
-- on the UI's timelines. Keyed by tenant name rather than `tenants.id` so
-- a tenant that never ingested can still annotate.
CREATE TABLE annotations (
    id      BIGSERIAL PRIMARY KEY,
    tenant  TEXT NOT NULL,
    time_ms BIGINT NOT NULL,
    text    TEXT NOT NULL,
    labels  TEXT NOT NULL DEFAULT '{}'  -- JSON object, keys sorted
);

CREATE INDEX annotations_tenant_time ON annotations (tenant, time_ms);
