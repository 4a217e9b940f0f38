-- Fewer unique indexes on welcome links and the outbox. Keep in step with
-- migrations/sqlite.
--
-- Salts and Message-IDs are unique by construction (a time prefix, a
-- counter and 128 random bits) and never looked up, and a token hash is
-- only set when a link is first sent. Their three unique indexes made
-- queueing 100k welcomes cost about 0.4 s more than the rows themselves
-- (measured on SQLite). The token hash keeps a unique index over the links
-- that have one.
ALTER TABLE welcome_links DROP CONSTRAINT welcome_links_salt_key;
ALTER TABLE welcome_links DROP CONSTRAINT welcome_links_token_hash_key;
ALTER TABLE outbox DROP CONSTRAINT outbox_message_id_key;
CREATE UNIQUE INDEX welcome_links_token ON welcome_links(token_hash) WHERE token_hash IS NOT NULL;
