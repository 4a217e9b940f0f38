-- Bulk writes without per-row foreign key checks, as PostgreSQL has had
-- since its migration 11. Keep in step with migrations/postgres.
--
-- With foreign keys on, SQLite looks every inserted row's parent up in the
-- parent's index: a full import writes five rows per user under eight keys
-- (a user to its domain, department and site; a device to its user and
-- domain; a link to its user; an outbox row to its link; a run record to its
-- run). Loading exactly an import's 100k users with the sqlite3 shell took
-- 0.60-0.70 s with the keys off and 1.05-1.25 s with them on. pbx-onboard
-- writes every parent before its children or with them, from ids drawn in
-- the same transaction, and deletes only users.
--
-- What the keys also did, cascading deletes, stays for these five tables,
-- whoever deletes (with or without PRAGMA foreign_keys): an AFTER DELETE
-- trigger per parent table deletes the rows that hang off the deleted row.
-- Departments, sites and phone numbers keep their keys to domains (they are
-- few, and not written in bulk), so their cascade still needs foreign keys
-- on, as pbx-onboard's connections have them. As on PostgreSQL, a
-- department or site that users name is no longer refused deletion
-- (pbx-onboard never deletes one).
--
-- SQLite cannot drop a foreign key, so the five tables are rebuilt (as in
-- migration 6). Children are dropped before their parents, so no drop
-- cascades into a table still to be copied; the view over users and
-- devices is dropped and made again around the renames.
DROP VIEW IF EXISTS sip_subscriber;

CREATE TABLE users_v12 (
    id                  INTEGER PRIMARY KEY,
    domain_id           INTEGER NOT NULL,
    extension           TEXT NOT NULL,                -- never changed after creation
    kind                TEXT NOT NULL DEFAULT 'person',
    first_name          TEXT NOT NULL,
    last_name           TEXT,
    emails              TEXT NOT NULL DEFAULT '',     -- newline separated
    department          TEXT,
    site                TEXT,
    scope               TEXT NOT NULL DEFAULT 'Basic User',
    title               TEXT,
    caller_id           TEXT,
    emergency_caller_id TEXT,
    voicemail           INTEGER NOT NULL DEFAULT 1 CHECK (voicemail IN (0, 1)),
    timezone            TEXT,
    language            TEXT,
    dial_permission     TEXT,
    directory_listing   INTEGER NOT NULL DEFAULT 1 CHECK (directory_listing IN (0, 1)),
    audio_announce      INTEGER NOT NULL DEFAULT 1 CHECK (audio_announce IN (0, 1)),
    portal_password_hash TEXT,                        -- argon2id PHC string, set by the user
    voicemail_pin_hash  TEXT,                         -- argon2id PHC string, set by the user
    status              TEXT NOT NULL DEFAULT 'active' CHECK (status IN ('active', 'disabled')),
    source              TEXT,                         -- NULL: created by hand, never touched by a sync
    source_id           TEXT,
    created_at          INTEGER NOT NULL,
    updated_at          INTEGER NOT NULL,
    disabled_at         INTEGER,
    UNIQUE (domain_id, extension),
    UNIQUE (domain_id, source, source_id)
);
INSERT INTO users_v12 (id, domain_id, extension, kind, first_name, last_name, emails, department,
                       site, scope, title, caller_id, emergency_caller_id, voicemail, timezone,
                       language, dial_permission, directory_listing, audio_announce,
                       portal_password_hash, voicemail_pin_hash, status, source, source_id,
                       created_at, updated_at, disabled_at)
    SELECT id, domain_id, extension, kind, first_name, last_name, emails, department,
           site, scope, title, caller_id, emergency_caller_id, voicemail, timezone,
           language, dial_permission, directory_listing, audio_announce,
           portal_password_hash, voicemail_pin_hash, status, source, source_id,
           created_at, updated_at, disabled_at FROM users;

CREATE TABLE devices_v12 (
    id                  INTEGER PRIMARY KEY,
    user_id             INTEGER NOT NULL,
    domain_id           INTEGER NOT NULL,
    device_type         TEXT NOT NULL CHECK (device_type IN ('sip', 'web')),
    sip_username        TEXT NOT NULL,
    secret              TEXT NOT NULL,                -- 128 random bits, hex
    force_login         INTEGER NOT NULL DEFAULT 0 CHECK (force_login IN (0, 1)),
    enabled             INTEGER NOT NULL DEFAULT 1 CHECK (enabled IN (0, 1)),
    created_at          INTEGER NOT NULL,
    ha1                 TEXT,
    ha1b                TEXT,
    secret_rotated_at   INTEGER,
    UNIQUE (domain_id, sip_username)
);
INSERT INTO devices_v12 (id, user_id, domain_id, device_type, sip_username, secret, force_login,
                         enabled, created_at, ha1, ha1b, secret_rotated_at)
    SELECT id, user_id, domain_id, device_type, sip_username, secret, force_login,
           enabled, created_at, ha1, ha1b, secret_rotated_at FROM devices;

CREATE TABLE welcome_links_v12 (
    id                  INTEGER PRIMARY KEY,
    user_id             INTEGER NOT NULL,
    salt                TEXT NOT NULL,                 -- time prefix and 128 random bits, hex
    token_hash          TEXT,                          -- SHA-256 of the token, hex; set when first sent
    created_at          INTEGER NOT NULL,
    expires_at          INTEGER,                       -- set when first sent
    used_at             INTEGER,
    revoked_at          INTEGER
);
INSERT INTO welcome_links_v12 (id, user_id, salt, token_hash, created_at, expires_at, used_at, revoked_at)
    SELECT id, user_id, salt, token_hash, created_at, expires_at, used_at, revoked_at FROM welcome_links;

CREATE TABLE outbox_v12 (
    id                  INTEGER PRIMARY KEY,
    kind                TEXT NOT NULL CHECK (kind IN ('welcome', 'report')),
    link_id             INTEGER,
    message_id          TEXT NOT NULL,
    recipients          TEXT,                          -- report: newline separated
    subject             TEXT,                          -- report only
    body_text           TEXT,                          -- report only
    body_html           TEXT,                          -- report only
    status              TEXT NOT NULL DEFAULT 'queued' CHECK (status IN ('queued', 'sent', 'failed', 'cancelled')),
    attempts            INTEGER NOT NULL DEFAULT 0,
    next_attempt_at     INTEGER NOT NULL,
    lease_until         INTEGER,                       -- a worker is sending it until then
    last_error          TEXT,
    created_at          INTEGER NOT NULL,
    sent_at             INTEGER
);
INSERT INTO outbox_v12 (id, kind, link_id, message_id, recipients, subject, body_text, body_html, status,
                        attempts, next_attempt_at, lease_until, last_error, created_at, sent_at)
    SELECT id, kind, link_id, message_id, recipients, subject, body_text, body_html, status,
           attempts, next_attempt_at, lease_until, last_error, created_at, sent_at FROM outbox;

CREATE TABLE run_actions_v12 (
    id                  INTEGER PRIMARY KEY,
    run_id              INTEGER NOT NULL,
    user_id             INTEGER,
    source_id           TEXT NOT NULL,
    action              TEXT NOT NULL,
    detail              TEXT
);
INSERT INTO run_actions_v12 (id, run_id, user_id, source_id, action, detail)
    SELECT id, run_id, user_id, source_id, action, detail FROM run_actions;

DROP TABLE outbox;
DROP TABLE welcome_links;
DROP TABLE devices;
DROP TABLE run_actions;
DROP TABLE users;
ALTER TABLE users_v12 RENAME TO users;
ALTER TABLE devices_v12 RENAME TO devices;
ALTER TABLE welcome_links_v12 RENAME TO welcome_links;
ALTER TABLE outbox_v12 RENAME TO outbox;
ALTER TABLE run_actions_v12 RENAME TO run_actions;

CREATE INDEX devices_user ON devices(user_id);
CREATE UNIQUE INDEX welcome_links_token ON welcome_links(token_hash) WHERE token_hash IS NOT NULL;
CREATE INDEX welcome_links_user ON welcome_links(user_id);
CREATE INDEX outbox_due ON outbox(status, next_attempt_at);
CREATE INDEX outbox_link ON outbox(link_id);
CREATE INDEX run_actions_run ON run_actions(run_id);

-- As migration 3 made it.
CREATE VIEW sip_subscriber AS
SELECT d.sip_username AS username,
       m.name         AS domain,
       d.ha1          AS ha1,
       d.ha1b         AS ha1b,
       u.extension    AS extension,
       d.id           AS device_id
  FROM devices d
  JOIN users u   ON u.id = d.user_id
  JOIN domains m ON m.id = d.domain_id
 WHERE d.device_type = 'sip'
   AND d.enabled = 1
   AND u.status = 'active'
   AND d.ha1 IS NOT NULL;

CREATE TRIGGER domains_cascade AFTER DELETE ON domains
BEGIN
    DELETE FROM users WHERE domain_id = OLD.id;
    DELETE FROM devices WHERE domain_id = OLD.id;
END;
CREATE TRIGGER users_cascade AFTER DELETE ON users
BEGIN
    DELETE FROM devices WHERE user_id = OLD.id;
    DELETE FROM welcome_links WHERE user_id = OLD.id;
END;
CREATE TRIGGER welcome_links_cascade AFTER DELETE ON welcome_links
BEGIN
    DELETE FROM outbox WHERE link_id = OLD.id;
END;
CREATE TRIGGER runs_cascade AFTER DELETE ON runs
BEGIN
    DELETE FROM run_actions WHERE run_id = OLD.id;
END;
