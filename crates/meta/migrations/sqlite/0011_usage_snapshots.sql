-- Usage and growth over time (issue 11 item 4).
--
-- Cumulative activity per repository: accepted manifest PUTs and manifest GETs (real pulls),
-- added to in the same transactions that store a manifest and flush pull counts. Keyed by the
-- repository's name, not its row, and never decremented: deleting manifests (whose per-digest
-- pull rows go with them) or a repository does not lower them, so a day's activity is the
-- difference of two snapshots. Counting starts with this migration.
CREATE TABLE repository_activity (
    repository  TEXT PRIMARY KEY,
    project     TEXT NOT NULL,
    pushes      INTEGER NOT NULL DEFAULT 0,
    pulls       INTEGER NOT NULL DEFAULT 0
);

-- One row per (UTC day, repository): what the repository held and its cumulative activity
-- when the day's snapshot was taken. `bytes`: its blobs and manifests, each digest once;
-- `artifacts`: its manifests. Taking the day's snapshot again replaces the day's rows.
CREATE TABLE usage_snapshots (
    day         TEXT NOT NULL,
    project     TEXT NOT NULL,
    repository  TEXT NOT NULL,
    bytes       INTEGER NOT NULL,
    artifacts   INTEGER NOT NULL,
    pushes      INTEGER NOT NULL,
    pulls       INTEGER NOT NULL,
    taken_at    INTEGER NOT NULL,
    PRIMARY KEY (day, repository)
);
CREATE INDEX usage_snapshots_by_project ON usage_snapshots(project, day);

-- One row per (UTC day, project): the project's usage as its quota counts it (each digest once
-- per project, however many repositories share it) and its repositories' activity summed.
CREATE TABLE usage_project_snapshots (
    day         TEXT NOT NULL,
    project     TEXT NOT NULL,
    bytes       INTEGER NOT NULL,
    artifacts   INTEGER NOT NULL,
    pushes      INTEGER NOT NULL,
    pulls       INTEGER NOT NULL,
    taken_at    INTEGER NOT NULL,
    PRIMARY KEY (day, project)
);

-- One row per (UTC day, repository, version line vMAJOR.MINOR): the newest artifact of the
-- line (its highest vMAJOR.MINOR.PATCH tag) and its size (manifest, config, layers and, for
-- an index, its platform images, each digest once). Kept after retention deletes the versions,
-- so growth between versions stays visible.
CREATE TABLE usage_version_snapshots (
    day         TEXT NOT NULL,
    project     TEXT NOT NULL,
    repository  TEXT NOT NULL,
    line        TEXT NOT NULL,
    tag         TEXT NOT NULL,
    digest      TEXT NOT NULL,
    bytes       INTEGER NOT NULL,
    pushed_at_us INTEGER NOT NULL,
    PRIMARY KEY (day, repository, line)
);
CREATE INDEX usage_version_snapshots_by_project ON usage_version_snapshots(project, day);

-- The days that have a snapshot, even one of an empty registry (so the daily schedule does not
-- take it again every minute).
CREATE TABLE usage_snapshot_days (
    day         TEXT PRIMARY KEY,
    taken_at    INTEGER NOT NULL
);
