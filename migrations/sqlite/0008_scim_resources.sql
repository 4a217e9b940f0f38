-- SCIM sources: each User and Group resource as the identity provider sent
-- it (attributes the PBX does not use are returned on GET as sent), beside
-- the PBX user it describes (users.source = source, users.source_id =
-- externalId, else id). `name_key` is a User's userName folded to lower
-- case: unique per source, which makes a retried or concurrent POST a 409
-- rather than a second user, also across daemons on one PostgreSQL;
-- likewise `external_id`, the PBX user's key.
-- `version` is the weak ETag (meta.version); `seq` the stable list order.
CREATE TABLE scim_resources (
    seq                 INTEGER PRIMARY KEY,
    source              TEXT NOT NULL,
    kind                TEXT NOT NULL,
    id                  TEXT NOT NULL,
    external_id         TEXT,
    pbx_key             TEXT,             -- users.source_id of a User's PBX user, fixed at create
    name_key            TEXT,
    body                TEXT NOT NULL,
    version             BIGINT NOT NULL,
    created_at          BIGINT NOT NULL,
    updated_at          BIGINT NOT NULL
);
CREATE UNIQUE INDEX scim_resources_by_id ON scim_resources (source, kind, id);
CREATE UNIQUE INDEX scim_resources_by_name ON scim_resources (source, kind, name_key);
CREATE UNIQUE INDEX scim_resources_by_external_id ON scim_resources (source, kind, external_id);
