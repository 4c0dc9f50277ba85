-- Archived artifacts (issue 5): what went where, so that it can be listed and restored, and
-- so that an immutable tag that was archived cannot come back with other content.
CREATE TABLE archives (
    id           INTEGER PRIMARY KEY,
    project      TEXT NOT NULL,
    repository   TEXT NOT NULL,
    digest       TEXT NOT NULL,
    tags         TEXT NOT NULL,   -- newline-separated (tags cannot hold one)
    object_key   TEXT NOT NULL,
    bytes        INTEGER NOT NULL,
    archived_at  INTEGER NOT NULL,
    archived_by  TEXT NOT NULL,
    restored_at  INTEGER
);
CREATE INDEX archives_by_project ON archives(project, archived_at);
CREATE INDEX archives_by_repository ON archives(repository, digest);
