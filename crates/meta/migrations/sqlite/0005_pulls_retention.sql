-- Pull tracking and retention (issue 5). Pulls are counted in memory and written in batches.
CREATE TABLE manifest_pulls (
    repository_id   INTEGER NOT NULL REFERENCES repositories(id),
    digest          TEXT NOT NULL,
    last_pulled_at  INTEGER NOT NULL,
    pull_count      INTEGER NOT NULL,
    PRIMARY KEY (repository_id, digest)
);

CREATE TABLE tag_pulls (
    repository_id   INTEGER NOT NULL REFERENCES repositories(id),
    tag             TEXT NOT NULL,
    last_pulled_at  INTEGER NOT NULL,
    pull_count      INTEGER NOT NULL,
    PRIMARY KEY (repository_id, tag)
);

CREATE TABLE retention_policies (
    project     TEXT PRIMARY KEY,
    policy      TEXT NOT NULL,
    updated_at  INTEGER NOT NULL
);

CREATE TABLE retention_runs (
    id                 INTEGER PRIMARY KEY,
    project            TEXT NOT NULL,
    at                 INTEGER NOT NULL,
    actor              TEXT NOT NULL,
    dry_run            INTEGER NOT NULL,
    deleted_tags       INTEGER NOT NULL,
    deleted_manifests  INTEGER NOT NULL,
    freed_bytes        INTEGER NOT NULL
);
CREATE INDEX retention_runs_by_project ON retention_runs(project, at);

-- Garbage collection looks blobs up by digest across repositories (blob_anywhere too).
CREATE INDEX repository_blobs_by_digest ON repository_blobs(digest);
-- ... and asks whether any manifest of a repository still references a blob.
CREATE INDEX manifest_blobs_by_repository_blob ON manifest_blobs(repository_id, blob_digest);
