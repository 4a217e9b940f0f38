-- Nothing to do on SQLite: its foreign keys stay. On PostgreSQL (see
-- migrations/postgres/0011) the keys of the bulk-written tables are
-- replaced by statement-level cascades, because there each key costs a
-- query per inserted row; SQLite checks a key with a lookup in the
-- parent's index, and dropping one would mean rebuilding the table.
SELECT 1;
