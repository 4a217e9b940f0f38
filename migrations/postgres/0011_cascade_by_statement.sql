-- Bulk writes without per-row foreign key checks. Keep in step with
-- migrations/sqlite (which keeps its foreign keys: see its 0011).
--
-- PostgreSQL checks a foreign key with a row-level trigger that runs a
-- query on the parent for every inserted row. A full import writes five
-- rows per user (user, device, welcome link, outbox row, run record) and
-- the schema checked eight foreign keys for them; those checks were about
-- half of the server's work (benches/pg_floor.py, 100k users in 1,000-user
-- transactions: 6.4 s with them, 3.3 s without). Every parent these keys
-- name is written by pbx-onboard in the same transaction as its children
-- or before it (domains, departments and sites are ensured before a run;
-- a user's device, link and outbox row are written with the user, from ids
-- drawn in that transaction), and none is ever deleted by pbx-onboard
-- except users.
--
-- What the keys also did, cascading deletes, stays, whoever deletes: one
-- statement-level trigger per parent table deletes the children of all
-- the rows a DELETE removed, in that statement. Departments, sites and
-- phone numbers keep their keys to domains (they are few, and not written
-- in bulk).
ALTER TABLE users
    DROP CONSTRAINT users_domain_id_fkey,
    DROP CONSTRAINT users_domain_id_department_fkey,
    DROP CONSTRAINT users_domain_id_site_fkey;
ALTER TABLE devices
    DROP CONSTRAINT devices_user_id_fkey,
    DROP CONSTRAINT devices_domain_id_fkey;
ALTER TABLE welcome_links DROP CONSTRAINT welcome_links_user_id_fkey;
ALTER TABLE outbox DROP CONSTRAINT outbox_link_id_fkey;
ALTER TABLE run_actions DROP CONSTRAINT run_actions_run_id_fkey;

CREATE FUNCTION pbx_domains_deleted() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    DELETE FROM users WHERE domain_id IN (SELECT id FROM gone);
    DELETE FROM devices WHERE domain_id IN (SELECT id FROM gone);
    RETURN NULL;
END $$;
CREATE TRIGGER domains_cascade AFTER DELETE ON domains
    REFERENCING OLD TABLE AS gone FOR EACH STATEMENT EXECUTE FUNCTION pbx_domains_deleted();

CREATE FUNCTION pbx_users_deleted() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    DELETE FROM devices WHERE user_id IN (SELECT id FROM gone);
    DELETE FROM welcome_links WHERE user_id IN (SELECT id FROM gone);
    RETURN NULL;
END $$;
CREATE TRIGGER users_cascade AFTER DELETE ON users
    REFERENCING OLD TABLE AS gone FOR EACH STATEMENT EXECUTE FUNCTION pbx_users_deleted();

CREATE FUNCTION pbx_welcome_links_deleted() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    DELETE FROM outbox WHERE link_id IN (SELECT id FROM gone);
    RETURN NULL;
END $$;
CREATE TRIGGER welcome_links_cascade AFTER DELETE ON welcome_links
    REFERENCING OLD TABLE AS gone FOR EACH STATEMENT EXECUTE FUNCTION pbx_welcome_links_deleted();

CREATE FUNCTION pbx_runs_deleted() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    DELETE FROM run_actions WHERE run_id IN (SELECT id FROM gone);
    RETURN NULL;
END $$;
CREATE TRIGGER runs_cascade AFTER DELETE ON runs
    REFERENCING OLD TABLE AS gone FOR EACH STATEMENT EXECUTE FUNCTION pbx_runs_deleted();
