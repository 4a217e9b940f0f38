-- Where each LDAP source's reads left off. The last full read and the last
-- changed-only read are kept apart: only a full read may disable anyone, and
-- the next changed-only read starts after the newer of the two markers.
-- Written only after a run applied, so a failed or refused run is read again.
CREATE TABLE source_state (
    source              TEXT PRIMARY KEY,
    last_full_at        BIGINT,
    last_full_marker    TEXT,
    last_full_server    TEXT,
    last_full_entries   BIGINT,
    last_changed_at     BIGINT,
    last_changed_marker TEXT,
    last_changed_server TEXT
);
