-- Upload sessions keep their running SHA-256 (issue 12): a chunk may land on any replica, or on
-- the same server after a restart, and go on hashing where the last one stopped instead of
-- reading the bytes received so far again. `hashed_bytes`: how many bytes `hash_state` covers.
ALTER TABLE uploads ADD COLUMN hashed_bytes BIGINT;
ALTER TABLE uploads ADD COLUMN hash_state BYTEA;
