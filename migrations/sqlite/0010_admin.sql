-- Held runs: a run refused by max_disable, max_disable_percent or
-- max_billable keeps its plan (as --plan-out writes it) until an admin
-- approves (applies exactly that plan) or discards it. One pending hold per
-- source; kind 'scim' stands for that source's pending held_changes (its
-- plan is made when approved). digest: SHA-256 of the plan's actions, so an
-- unchanged later run adds no second hold.
CREATE TABLE held_runs (
    id                  INTEGER PRIMARY KEY,
    source              TEXT NOT NULL,
    domain              TEXT NOT NULL,
    kind                TEXT NOT NULL CHECK (kind IN ('plan', 'scim')),
    run_id              BIGINT,
    reason              TEXT NOT NULL,
    creates             BIGINT NOT NULL DEFAULT 0,
    updates             BIGINT NOT NULL DEFAULT 0,
    disables            BIGINT NOT NULL DEFAULT 0,
    billable            BIGINT NOT NULL DEFAULT 0,
    plan                TEXT,
    digest              TEXT,
    status              TEXT NOT NULL DEFAULT 'pending'
                        CHECK (status IN ('pending', 'approved', 'discarded', 'superseded')),
    created_at          BIGINT NOT NULL,
    updated_at          BIGINT NOT NULL,
    decided_at          BIGINT,
    decided_by          TEXT,
    applied_run_id      BIGINT
);
CREATE UNIQUE INDEX held_runs_one_pending ON held_runs (source) WHERE status = 'pending';

-- Who did what, from where: approvals, discards, resends, logins, account
-- changes (console and CLI alike).
CREATE TABLE audit (
    id                  INTEGER PRIMARY KEY,
    at                  BIGINT NOT NULL,
    actor               TEXT NOT NULL,
    address             TEXT NOT NULL,
    action              TEXT NOT NULL,
    target              TEXT,
    detail              TEXT
);
CREATE INDEX audit_by_time ON audit (at);

-- Console accounts: argon2id PHC strings, never the password.
CREATE TABLE admins (
    id                  INTEGER PRIMARY KEY,
    name                TEXT NOT NULL UNIQUE,
    role                TEXT NOT NULL CHECK (role IN ('admin', 'viewer')),
    password_hash       TEXT NOT NULL,
    created_at          BIGINT NOT NULL,
    updated_at          BIGINT NOT NULL
);

-- Console sessions, by the SHA-256 of the cookie's token; shared by every
-- daemon on the store. csrf: the token each form of the session carries.
CREATE TABLE admin_sessions (
    token_hash          TEXT PRIMARY KEY,
    admin               TEXT NOT NULL,
    role                TEXT NOT NULL,
    csrf                TEXT NOT NULL,
    created_at          BIGINT NOT NULL,
    last_seen           BIGINT NOT NULL
);
