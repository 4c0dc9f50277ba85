-- Browsing at scale (issue 11): sizes kept as data; see migrations/sqlite/0012_browse_sizes.sql.
-- Filled for existing rows by the migration code with the same expressions.
ALTER TABLE manifests ADD COLUMN artifact_size BIGINT NOT NULL DEFAULT 0;
CREATE INDEX manifests_by_artifact_size ON manifests(repository_id, artifact_size, digest);
ALTER TABLE repositories ADD COLUMN bytes BIGINT NOT NULL DEFAULT 0;
CREATE INDEX tags_by_update ON tags(repository_id, updated_at_us);
DROP INDEX manifest_children_by_child;
CREATE INDEX manifest_children_by_child ON manifest_children(repository_id, child_digest, manifest_digest);
DROP INDEX manifest_blobs_by_repository_blob;
CREATE INDEX manifest_blobs_by_repository_blob ON manifest_blobs(repository_id, blob_digest, manifest_digest);
