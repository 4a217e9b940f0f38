-- pbx-onboard store, SQLite flavour. Keep in step with migrations/postgres.
-- Times are Unix seconds (UTC). Booleans are 0/1.

CREATE TABLE domains (
    id                  INTEGER PRIMARY KEY,
    name                TEXT NOT NULL UNIQUE,
    revision            INTEGER NOT NULL DEFAULT 0,   -- bumped by every user write; plans pin it
    emergency_caller_id TEXT,
    timezone            TEXT,
    language            TEXT,
    dial_permission     TEXT,
    created_at          INTEGER NOT NULL
);

CREATE TABLE sites (
    id                  INTEGER PRIMARY KEY,
    domain_id           INTEGER NOT NULL REFERENCES domains(id) ON DELETE CASCADE,
    name                TEXT NOT NULL,
    timezone            TEXT,
    language            TEXT,
    area_code           TEXT,
    caller_id           TEXT,
    dial_permission     TEXT,
    UNIQUE (domain_id, name)
);

CREATE TABLE departments (
    id                  INTEGER PRIMARY KEY,
    domain_id           INTEGER NOT NULL REFERENCES domains(id) ON DELETE CASCADE,
    name                TEXT NOT NULL,
    UNIQUE (domain_id, name)
);

-- The domain's number inventory: caller IDs must come from here.
CREATE TABLE phone_numbers (
    id                  INTEGER PRIMARY KEY,
    domain_id           INTEGER NOT NULL REFERENCES domains(id) ON DELETE CASCADE,
    number              TEXT NOT NULL,
    UNIQUE (domain_id, number)
);

CREATE TABLE users (
    id                  INTEGER PRIMARY KEY,
    domain_id           INTEGER NOT NULL REFERENCES domains(id) ON DELETE CASCADE,
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
    UNIQUE (domain_id, source, source_id),
    FOREIGN KEY (domain_id, department) REFERENCES departments(domain_id, name),
    FOREIGN KEY (domain_id, site) REFERENCES sites(domain_id, name)
);

CREATE TABLE devices (
    id                  INTEGER PRIMARY KEY,
    user_id             INTEGER NOT NULL REFERENCES users(id) ON DELETE CASCADE,
    domain_id           INTEGER NOT NULL REFERENCES domains(id) ON DELETE CASCADE,
    device_type         TEXT NOT NULL CHECK (device_type IN ('sip', 'web')),
    sip_username        TEXT NOT NULL,
    secret              TEXT NOT NULL,                -- 128 random bits, hex
    force_login         INTEGER NOT NULL DEFAULT 0 CHECK (force_login IN (0, 1)),
    enabled             INTEGER NOT NULL DEFAULT 1 CHECK (enabled IN (0, 1)),
    created_at          INTEGER NOT NULL,
    UNIQUE (domain_id, sip_username)
);
CREATE INDEX devices_user ON devices(user_id);

CREATE TABLE runs (
    id                  INTEGER PRIMARY KEY,
    source              TEXT NOT NULL,
    domain              TEXT NOT NULL,
    started_at          INTEGER NOT NULL,
    finished_at         INTEGER,
    outcome             TEXT NOT NULL DEFAULT 'running',  -- running, ok, partial, refused, failed
    created             INTEGER NOT NULL DEFAULT 0,
    updated             INTEGER NOT NULL DEFAULT 0,
    disabled            INTEGER NOT NULL DEFAULT 0,
    reenabled           INTEGER NOT NULL DEFAULT 0,
    unchanged           INTEGER NOT NULL DEFAULT 0,
    deleted             INTEGER NOT NULL DEFAULT 0,
    conflicts           INTEGER NOT NULL DEFAULT 0,
    errors              INTEGER NOT NULL DEFAULT 0,
    billable_devices    INTEGER NOT NULL DEFAULT 0,
    billable_seats      INTEGER NOT NULL DEFAULT 0,
    report              TEXT                            -- the run report as JSON
);

CREATE TABLE run_actions (
    id                  INTEGER PRIMARY KEY,
    run_id              INTEGER NOT NULL REFERENCES runs(id) ON DELETE CASCADE,
    user_id             INTEGER,
    source_id           TEXT NOT NULL,
    action              TEXT NOT NULL,
    detail              TEXT
);
CREATE INDEX run_actions_run ON run_actions(run_id);
