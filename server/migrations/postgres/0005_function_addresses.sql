-- Frames no symbol named keep their file's build id and their address in
-- that file, so the server can name them from a debug file it receives
-- later. Named functions have build_id '' and address 0.
ALTER TABLE functions ADD COLUMN build_id TEXT NOT NULL DEFAULT '';
ALTER TABLE functions ADD COLUMN address BIGINT NOT NULL DEFAULT 0;
ALTER TABLE functions DROP CONSTRAINT functions_tenant_id_name_file_line_key;
ALTER TABLE functions ADD CONSTRAINT functions_key
    UNIQUE (tenant_id, name, file, line, build_id, address);
