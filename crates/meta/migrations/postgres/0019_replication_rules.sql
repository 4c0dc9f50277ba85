-- Replication and preheat rules made through the REST API (issue 15); rules of the config file
-- are not stored. definition: the mirror crate's rule document (JSON) without the password;
-- sealed_password: the remote registry's password, AES-256-GCM sealed (auth crate `sealed`).
CREATE TABLE replication_rules (
    name             TEXT COLLATE "C" PRIMARY KEY,
    project          TEXT COLLATE "C",          -- NULL: a system-wide rule
    definition       TEXT NOT NULL,
    sealed_password  TEXT,
    created_by       TEXT NOT NULL,
    updated_at       BIGINT NOT NULL  -- Unix seconds
);
CREATE INDEX replication_rules_project ON replication_rules (project);
