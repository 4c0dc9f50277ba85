-- Browsing at scale (issue 11): sizes kept as data instead of added up from every row on every
-- page. Written in the transactions that store and delete manifests and create and collect
-- blob rows; filled for existing rows by the migration code with the same expressions
-- (crates/meta/src/browse.rs: ARTIFACT_SIZE, REPOSITORY_BYTES).
--
-- A manifest's size: itself, its children's manifests and the distinct blobs of both. A page
-- sorted by size walks this index and stops at the page's end.
ALTER TABLE manifests ADD COLUMN artifact_size INTEGER NOT NULL DEFAULT 0;
CREATE INDEX manifests_by_artifact_size ON manifests(repository_id, artifact_size, digest);
-- A repository's size: its manifests plus the distinct blobs they reference.
ALTER TABLE repositories ADD COLUMN bytes INTEGER NOT NULL DEFAULT 0;
-- A repository's last push is the later of its newest manifest and its last tag move: both
-- are index lookups, not scans.
CREATE INDEX tags_by_update ON tags(repository_id, updated_at_us);
-- Keeping the sizes asks "which indexes list this manifest?" and "does another manifest of the
-- repository reference this blob?" on every push and delete. Without statistics SQLite
-- prefers a covering index on the repository alone (walking all its rows) to these two-column
-- ones, so they now cover the column the question returns.
DROP INDEX manifest_children_by_child;
CREATE INDEX manifest_children_by_child ON manifest_children(repository_id, child_digest, manifest_digest);
DROP INDEX manifest_blobs_by_repository_blob;
CREATE INDEX manifest_blobs_by_repository_blob ON manifest_blobs(repository_id, blob_digest, manifest_digest);
