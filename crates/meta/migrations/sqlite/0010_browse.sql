-- Browsing (GET /api/v1/.../repositories, .../artifacts): pages by push time walk this index
-- and stop at the page's end; "is this manifest an index child?" is a lookup, not a scan.
UPDATE manifests SET created_at_us = created_at * 1000000 WHERE created_at_us IS NULL;
CREATE INDEX manifests_by_push ON manifests(repository_id, created_at_us, digest);
CREATE INDEX manifest_children_by_child ON manifest_children(repository_id, child_digest);
