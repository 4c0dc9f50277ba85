-- Tag rules per project (issue 5), as the lifecycle crate's JSON document.
CREATE TABLE tag_rules (
    project     TEXT PRIMARY KEY,
    rules       TEXT NOT NULL,
    updated_at  INTEGER NOT NULL
);
