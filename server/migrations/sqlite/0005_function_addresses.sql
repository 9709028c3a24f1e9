-- Frames no symbol named keep their file's build id and their address in
-- that file, so the server can name them from a debug file it receives
-- later. Named functions have build_id '' and address 0. SQLite cannot
-- change a table's UNIQUE constraint in place, so the table is rebuilt
-- (ids kept: stack_nodes refer to them).
CREATE TABLE functions_new (
    id        INTEGER PRIMARY KEY,
    tenant_id INTEGER NOT NULL,
    name      TEXT NOT NULL,
    file      TEXT NOT NULL,
    line      INTEGER NOT NULL,
    build_id  TEXT NOT NULL DEFAULT '',
    address   INTEGER NOT NULL DEFAULT 0,
    UNIQUE (tenant_id, name, file, line, build_id, address)
);
INSERT INTO functions_new (id, tenant_id, name, file, line)
    SELECT id, tenant_id, name, file, line FROM functions;
DROP TABLE functions;
ALTER TABLE functions_new RENAME TO functions;
