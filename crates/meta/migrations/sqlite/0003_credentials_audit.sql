-- Robot accounts and short-lived CI credentials (issue 3): both are scoped secrets. Only the
-- SHA-256 of a secret is stored; secrets are random and long, so a slow hash adds nothing.
CREATE TABLE credentials (
    id           INTEGER PRIMARY KEY,
    name         TEXT NOT NULL UNIQUE,
    kind         TEXT NOT NULL,          -- 'robot' or 'ci'
    project      TEXT,                   -- NULL: every project (system robots)
    repository   TEXT,                   -- NULL: every repository of the project
    actions      TEXT NOT NULL,          -- comma-separated: pull,push,delete
    secret_hash  TEXT NOT NULL UNIQUE,
    expires_at   INTEGER,                -- Unix seconds; NULL: never
    revoked_at   INTEGER,
    created_by   TEXT NOT NULL,
    created_at   INTEGER NOT NULL
);

CREATE TABLE audit_log (
    id           INTEGER PRIMARY KEY,
    at           INTEGER NOT NULL,
    actor        TEXT NOT NULL,
    action       TEXT NOT NULL,
    resource     TEXT NOT NULL,
    project      TEXT,
    client_addr  TEXT,
    outcome      TEXT NOT NULL
);
CREATE INDEX audit_by_project_time ON audit_log(project, at);
CREATE INDEX audit_by_time ON audit_log(at);
