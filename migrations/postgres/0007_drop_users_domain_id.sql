-- Nothing to do on PostgreSQL: users_domain_id stays, and load_users pages
-- through a domain with it. On SQLite the index is dropped (see
-- migrations/sqlite/0007), where a rowid scan is cheaper than keeping it.
SELECT 1;
