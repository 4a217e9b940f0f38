-- Welcome links and the mail outbox. Keep in step with migrations/postgres.
--
-- A welcome link's token is never stored: the mail worker derives it from
-- the link's salt and a key kept outside the database (mail.link_key_file),
-- and stores only its SHA-256 hash, so the database alone holds no usable
-- link. A resend revokes the user's earlier links.
CREATE TABLE welcome_links (
    id                  INTEGER PRIMARY KEY,
    user_id             INTEGER NOT NULL REFERENCES users(id) ON DELETE CASCADE,
    salt                TEXT NOT NULL UNIQUE,          -- 128 random bits, hex
    token_hash          TEXT UNIQUE,                   -- SHA-256 of the token, hex; set when first sent
    created_at          INTEGER NOT NULL,
    expires_at          INTEGER,                       -- set when first sent
    used_at             INTEGER,
    revoked_at          INTEGER
);
CREATE INDEX welcome_links_user ON welcome_links(user_id);

-- One row per email to send. Welcome emails are rendered when sent (from the
-- user as they are then); admin reports are rendered when queued.
CREATE TABLE outbox (
    id                  INTEGER PRIMARY KEY,
    kind                TEXT NOT NULL CHECK (kind IN ('welcome', 'report')),
    link_id             INTEGER REFERENCES welcome_links(id) ON DELETE CASCADE,
    message_id          TEXT NOT NULL UNIQUE,
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
CREATE INDEX outbox_due ON outbox(status, next_attempt_at);
CREATE INDEX outbox_link ON outbox(link_id);
