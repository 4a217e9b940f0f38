-- Nothing to do on PostgreSQL: migration 11 replaced its bulk tables'
-- foreign keys with statement-level cascades. SQLite's migration 12 does
-- the same with row-level triggers. Keep in step with migrations/sqlite.
SELECT 1;
