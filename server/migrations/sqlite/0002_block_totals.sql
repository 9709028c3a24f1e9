-- Totals of series columns 0-3 as plain integers (also in `totals`), so a
-- timeline over raw profiles is summed by the database, not row by row.
ALTER TABLE blocks ADD COLUMN t0 INTEGER;
ALTER TABLE blocks ADD COLUMN t1 INTEGER;
ALTER TABLE blocks ADD COLUMN t2 INTEGER;
ALTER TABLE blocks ADD COLUMN t3 INTEGER;
