-- SQLite only (PostgreSQL keeps users_domain_id; its migration 7 is empty).
--
-- load_users pages through a domain's users in rowid order and skips other
-- domains' rows (`+domain_id` keeps the planner off the extension index),
-- so the (domain_id, id) index from migration 2 is no longer read. It cost
-- every new user one more index entry: about 0.15 s of a 100k-user import.
DROP INDEX IF EXISTS users_domain_id;
