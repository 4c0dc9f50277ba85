-- Webhook secrets stored sealed (AES-256-GCM under a key derived from the token signing key,
-- as replication passwords are): 1 when `secret` holds the sealed form. Rows written before
-- this are sealed by the first server that starts with it.
ALTER TABLE webhooks ADD COLUMN secret_sealed BIGINT NOT NULL DEFAULT 0;
