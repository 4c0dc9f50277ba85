-- Quotas (issue 5). Each repository records its project (the first path component) so that
-- usage can be kept per project in the same transaction that changes it.
ALTER TABLE repositories ADD COLUMN project TEXT NOT NULL DEFAULT '';
UPDATE repositories SET project =
    CASE WHEN instr(name, '/') > 0 THEN substr(name, 1, instr(name, '/') - 1) ELSE name END;
CREATE INDEX repositories_by_project ON repositories(project);

-- Live usage and limits per project. `bytes`: blobs linked in any of the project's
-- repositories plus manifests, each digest counted once per project; `artifacts`: distinct
-- manifest digests. A NULL limit means unlimited. Filled for existing data by the migration
-- code with the same query `gantry quota recount` runs.
CREATE TABLE project_usage (
    project          TEXT PRIMARY KEY,
    bytes            INTEGER NOT NULL DEFAULT 0,
    artifacts        INTEGER NOT NULL DEFAULT 0,
    bytes_limit      INTEGER,
    artifacts_limit  INTEGER
);
