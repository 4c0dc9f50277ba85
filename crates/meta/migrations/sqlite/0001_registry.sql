CREATE TABLE repositories (
    id          INTEGER PRIMARY KEY,
    name        TEXT NOT NULL UNIQUE,
    created_at  INTEGER NOT NULL
);

-- Every blob whose bytes are durable in the blob store.
CREATE TABLE blobs (
    digest      TEXT PRIMARY KEY,
    size        INTEGER NOT NULL,
    created_at  INTEGER NOT NULL
);

-- Which repositories hold which blobs: a blob is served from, and may be referenced in,
-- a repository only through such a link (uploaded there or mounted).
CREATE TABLE repository_blobs (
    repository_id INTEGER NOT NULL REFERENCES repositories(id),
    digest        TEXT NOT NULL REFERENCES blobs(digest),
    created_at    INTEGER NOT NULL,
    PRIMARY KEY (repository_id, digest)
);

CREATE TABLE manifests (
    repository_id INTEGER NOT NULL REFERENCES repositories(id),
    digest        TEXT NOT NULL,
    media_type    TEXT NOT NULL,
    artifact_type TEXT,
    subject       TEXT,
    annotations   TEXT,
    size          INTEGER NOT NULL,
    content       BLOB NOT NULL,
    created_at    INTEGER NOT NULL,
    PRIMARY KEY (repository_id, digest)
);
CREATE INDEX manifests_by_subject ON manifests(repository_id, subject);

-- What a manifest references: blobs (config, layers) and child manifests (index entries).
CREATE TABLE manifest_blobs (
    repository_id   INTEGER NOT NULL,
    manifest_digest TEXT NOT NULL,
    blob_digest     TEXT NOT NULL,
    PRIMARY KEY (repository_id, manifest_digest, blob_digest)
);
CREATE INDEX manifest_blobs_by_blob ON manifest_blobs(blob_digest);

CREATE TABLE manifest_children (
    repository_id   INTEGER NOT NULL,
    manifest_digest TEXT NOT NULL,
    child_digest    TEXT NOT NULL,
    PRIMARY KEY (repository_id, manifest_digest, child_digest)
);

CREATE TABLE tags (
    repository_id INTEGER NOT NULL REFERENCES repositories(id),
    name          TEXT NOT NULL,
    digest        TEXT NOT NULL,
    updated_at    INTEGER NOT NULL,
    PRIMARY KEY (repository_id, name)
);
CREATE INDEX tags_by_digest ON tags(repository_id, digest);

CREATE TABLE uploads (
    id            TEXT PRIMARY KEY,
    repository    TEXT NOT NULL,
    created_at    INTEGER NOT NULL
);
