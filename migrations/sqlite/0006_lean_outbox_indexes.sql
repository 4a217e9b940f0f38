-- Fewer unique indexes on welcome links and the outbox. Keep in step with
-- migrations/postgres.
--
-- Salts and Message-IDs are unique by construction (a time prefix, a
-- counter and 128 random bits) and never looked up, and a token hash is
-- only set when a link is first sent. Their three unique indexes made
-- queueing 100k welcomes cost about 0.4 s more than the rows themselves.
-- The token hash keeps a unique index over the links that have one.
--
-- SQLite cannot drop a column's UNIQUE constraint, so both tables are
-- rebuilt. The outbox is dropped before the links it references, so the
-- drop cascades into nothing; renaming the new links table updates the
-- new outbox's foreign key.
CREATE TABLE welcome_links_v6 (
    id                  INTEGER PRIMARY KEY,
    user_id             INTEGER NOT NULL REFERENCES users(id) ON DELETE CASCADE,
    salt                TEXT NOT NULL,                 -- time prefix and 128 random bits, hex
    token_hash          TEXT,                          -- SHA-256 of the token, hex; set when first sent
    created_at          INTEGER NOT NULL,
    expires_at          INTEGER,                       -- set when first sent
    used_at             INTEGER,
    revoked_at          INTEGER
);
INSERT INTO welcome_links_v6 (id, user_id, salt, token_hash, created_at, expires_at, used_at, revoked_at)
    SELECT id, user_id, salt, token_hash, created_at, expires_at, used_at, revoked_at FROM welcome_links;

CREATE TABLE outbox_v6 (
    id                  INTEGER PRIMARY KEY,
    kind                TEXT NOT NULL CHECK (kind IN ('welcome', 'report')),
    link_id             INTEGER REFERENCES welcome_links_v6(id) ON DELETE CASCADE,
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
INSERT INTO outbox_v6 (id, kind, link_id, message_id, recipients, subject, body_text, body_html, status,
                       attempts, next_attempt_at, lease_until, last_error, created_at, sent_at)
    SELECT id, kind, link_id, message_id, recipients, subject, body_text, body_html, status,
           attempts, next_attempt_at, lease_until, last_error, created_at, sent_at FROM outbox;

DROP TABLE outbox;
DROP TABLE welcome_links;
ALTER TABLE welcome_links_v6 RENAME TO welcome_links;
ALTER TABLE outbox_v6 RENAME TO outbox;

CREATE UNIQUE INDEX welcome_links_token ON welcome_links(token_hash) WHERE token_hash IS NOT NULL;
CREATE INDEX welcome_links_user ON welcome_links(user_id);
CREATE INDEX outbox_due ON outbox(status, next_attempt_at);
CREATE INDEX outbox_link ON outbox(link_id);
