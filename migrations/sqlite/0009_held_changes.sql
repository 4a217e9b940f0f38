-- Disables a scim source asked for beyond limits.max_disable (or
-- max_disable_percent) within a rolling hour: answered as the client asked,
-- not applied until an admin runs `pbx-onboard held approve` (or
-- `discard`). `source_id` is the PBX user's users.source_id; `body` the
-- User resource as the client left it.
CREATE TABLE held_changes (
    id                  INTEGER PRIMARY KEY,
    source              TEXT NOT NULL,
    domain              TEXT NOT NULL,
    source_id           TEXT NOT NULL,
    resource_id         TEXT NOT NULL,
    what                TEXT NOT NULL,
    body                TEXT NOT NULL,
    created_at          BIGINT NOT NULL,
    status              TEXT NOT NULL DEFAULT 'pending',
    decided_at          BIGINT,
    decided_by          TEXT
);
CREATE INDEX held_changes_by_status ON held_changes (source, status);
