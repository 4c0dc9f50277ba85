//! Browsing what is stored: a project's repositories and a repository's artifacts with their
//! figures (sizes, counts, push and pull times, tags, referrers), a sorted page at a time.
//!
//! Each page is one SQL statement. Pages are keyset pages: a page starts after the
//! (sort key, name or digest) of the last row of the page before, so rows pushed or deleted
//! meanwhile neither repeat nor go missing from the rows that stay.
//!
//! What counts:
//! - A repository's size is its manifests' bytes plus the bytes of the distinct blobs they
//!   reference (a layer shared by ten artifacts counts once).
//! - An artifact's size is its manifest, config and layers; for an index, the index, its
//!   children's manifests and their distinct blobs (a layer shared by two platforms counts
//!   once).
//! - The top-level artifacts are the manifests that are neither a referrer of a manifest of
//!   the repository (signatures, SBOMs: listed under their subject) nor an untagged child of
//!   an index (listed as the index's platforms). A repository's `artifacts` counts those.

use sqlx::Row;

use crate::{Backend, MetaStore, Result};

/// What a page is sorted by.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BrowseSort {
    /// Repositories by name, artifacts by digest.
    Name,
    /// Last push (repositories) or push time (artifacts).
    Pushed,
    /// Last pull; never-pulled rows sort as the oldest.
    Pulled,
    /// Size in bytes.
    Size,
}

/// One page of a sorted listing: `after` is the sort key and name (or digest) of the last row
/// of the page before, as [`RepositorySummary::sort_key`] / [`ArtifactSummary::sort_key`] gave it.
#[derive(Debug, Clone, Copy)]
pub struct BrowsePage<'a> {
    pub sort: BrowseSort,
    pub descending: bool,
    pub after: Option<(i64, &'a str)>,
    pub limit: u32,
}

/// A repository with its figures.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RepositorySummary {
    pub name: String,
    /// Top-level artifacts (see the module documentation).
    pub artifacts: i64,
    /// Manifests plus distinct blobs, in bytes.
    pub size: i64,
    /// The latest manifest push or tag move (Unix microseconds); `None` when nothing was pushed.
    pub last_pushed_at_us: Option<i64>,
    /// The latest pull of any of its manifests (Unix seconds).
    pub last_pulled_at: Option<i64>,
    /// Pulls (GET of a manifest) of its manifests.
    pub pulls: i64,
    /// The key this row is sorted by, for the next page's `after`.
    pub sort_key: i64,
}

/// A manifest that names an artifact as its subject.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReferrerSummary {
    pub digest: String,
    pub media_type: String,
    pub artifact_type: Option<String>,
    /// Unix microseconds.
    pub pushed_at_us: i64,
}

/// An artifact (a manifest) with its figures.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ArtifactSummary {
    pub digest: String,
    pub media_type: String,
    /// The declared `artifactType`, else the config's media type.
    pub artifact_type: Option<String>,
    /// Unix microseconds.
    pub pushed_at_us: i64,
    /// In bytes (see the module documentation).
    pub size: i64,
    /// Unix seconds.
    pub last_pulled_at: Option<i64>,
    pub pulls: i64,
    /// Sorted.
    pub tags: Vec<String>,
    /// Oldest first.
    pub referrers: Vec<ReferrerSummary>,
    /// The manifest's bytes when it is an index (its entries carry the platforms).
    pub index_content: Option<Vec<u8>>,
    /// The key this row is sorted by, for the next page's `after`.
    pub sort_key: i64,
}

/// Manifest `m` is listed at the top level of its repository.
const TOP_LEVEL: &str = "NOT (m.subject IS NOT NULL AND EXISTS (SELECT 1 FROM manifests s \
       WHERE s.repository_id = m.repository_id AND s.digest = m.subject)) \
     AND NOT (EXISTS (SELECT 1 FROM manifest_children c \
       WHERE c.repository_id = m.repository_id AND c.child_digest = m.digest) \
     AND NOT EXISTS (SELECT 1 FROM tags t WHERE t.repository_id = m.repository_id AND t.digest = m.digest))";

/// The bytes of manifest `m`: itself, its children's manifests, and the distinct blobs of
/// both. `CROSS JOIN` keeps SQLite's join order (children first, then their blobs): left to
/// choose, it walks every blob link of the repository for each manifest.
const ARTIFACT_SIZE: &str = "(m.size \
     + COALESCE((SELECT CAST(SUM(cm.size) AS BIGINT) FROM manifest_children c JOIN manifests cm \
         ON cm.repository_id = c.repository_id AND cm.digest = c.child_digest \
         WHERE c.repository_id = m.repository_id AND c.manifest_digest = m.digest), 0) \
     + COALESCE((SELECT CAST(SUM(b.size) AS BIGINT) FROM ( \
         SELECT mb.blob_digest AS digest FROM manifest_blobs mb \
           WHERE mb.repository_id = m.repository_id AND mb.manifest_digest = m.digest \
         UNION SELECT mb.blob_digest FROM manifest_children c CROSS JOIN manifest_blobs mb \
           WHERE c.repository_id = m.repository_id AND c.manifest_digest = m.digest \
             AND mb.repository_id = c.repository_id AND mb.manifest_digest = c.child_digest) u \
         JOIN blobs b ON b.digest = u.digest), 0))";

/// The sort key of a sort by name: the same for every row, so the name decides (a bare `0`
/// would read as a column number in `ORDER BY`).
const NO_KEY: &str = "CAST(0 AS INTEGER)";

/// The media types of indexes, whose bytes a page returns for their platforms.
const INDEX_TYPES: &str = "('application/vnd.oci.image.index.v1+json', \
     'application/vnd.docker.distribution.manifest.list.v2+json')";

/// `WHERE` and `ORDER BY` of a keyset page over rows sorted by `key` then `name`, whose
/// `after` is bound as `$2` (key) and `$3` (name), and limit as `$4`.
fn keyset(key: &str, name: &str, page: &BrowsePage<'_>) -> (String, String) {
    let (compare, direction) = if page.descending {
        ("<", "DESC")
    } else {
        (">", "ASC")
    };
    (
        format!("($2 IS NULL OR ({key}, {name}) {compare} ($2, $3))"),
        format!("ORDER BY {key} {direction}, {name} {direction} LIMIT $4"),
    )
}

impl MetaStore {
    /// A page of `project`'s repositories with their figures, in one query.
    pub async fn repository_page(
        &self,
        project: &str,
        page: BrowsePage<'_>,
    ) -> Result<Vec<RepositorySummary>> {
        let key = match page.sort {
            BrowseSort::Name => NO_KEY,
            BrowseSort::Pushed => "COALESCE(pushed, -1)",
            BrowseSort::Pulled => "COALESCE(last_pulled, -1)",
            BrowseSort::Size => "size",
        };
        let (filter, order) = keyset(key, "name", &page);
        let sql = format!(
            "WITH repo AS (SELECT id, name FROM repositories WHERE project = $1), \
             man AS (SELECT m.repository_id AS rid, CAST(SUM(m.size) AS BIGINT) AS bytes, MAX(m.created_at_us) AS pushed, \
                 CAST(SUM(CASE WHEN {TOP_LEVEL} THEN 1 ELSE 0 END) AS BIGINT) AS artifacts \
               FROM manifests m JOIN repo ON repo.id = m.repository_id GROUP BY m.repository_id), \
             blob AS (SELECT u.rid, CAST(SUM(b.size) AS BIGINT) AS bytes FROM (SELECT DISTINCT mb.repository_id AS rid, \
                 mb.blob_digest AS digest FROM manifest_blobs mb JOIN repo ON repo.id = mb.repository_id) u \
               JOIN blobs b ON b.digest = u.digest GROUP BY u.rid), \
             tag AS (SELECT t.repository_id AS rid, MAX(t.updated_at_us) AS pushed FROM tags t \
               JOIN repo ON repo.id = t.repository_id GROUP BY t.repository_id), \
             pull AS (SELECT p.repository_id AS rid, CAST(SUM(p.pull_count) AS BIGINT) AS pulls, MAX(p.last_pulled_at) AS last_pulled \
               FROM manifest_pulls p JOIN repo ON repo.id = p.repository_id \
               JOIN manifests m ON m.repository_id = p.repository_id AND m.digest = p.digest \
               GROUP BY p.repository_id), \
             summary AS (SELECT repo.name AS name, COALESCE(man.artifacts, 0) AS artifacts, \
                 COALESCE(man.bytes, 0) + COALESCE(blob.bytes, 0) AS size, \
                 NULLIF(CASE WHEN COALESCE(man.pushed, -1) > COALESCE(tag.pushed, -1) \
                   THEN COALESCE(man.pushed, -1) ELSE COALESCE(tag.pushed, -1) END, -1) AS pushed, \
                 pull.last_pulled AS last_pulled, COALESCE(pull.pulls, 0) AS pulls \
               FROM repo LEFT JOIN man ON man.rid = repo.id LEFT JOIN blob ON blob.rid = repo.id \
               LEFT JOIN tag ON tag.rid = repo.id LEFT JOIN pull ON pull.rid = repo.id) \
             SELECT name, artifacts, size, pushed, last_pulled, pulls, {key} FROM summary \
             WHERE {filter} {order}"
        );
        let (after_key, after_name) = split_after(&page);
        let rows = sqlx::query(&sql)
            .bind(project)
            .bind(after_key)
            .bind(after_name)
            .bind(page.limit as i64)
            .fetch_all(&self.readers)
            .await?;
        Ok(rows
            .into_iter()
            .map(|row| RepositorySummary {
                name: row.get(0),
                artifacts: row.get(1),
                size: row.get(2),
                last_pushed_at_us: row.get(3),
                last_pulled_at: row.get(4),
                pulls: row.get(5),
                sort_key: row.get(6),
            })
            .collect())
    }

    /// A page of `repository`'s top-level artifacts with their figures, in one query;
    /// `None` when the repository does not exist.
    pub async fn artifact_page(
        &self,
        repository: &str,
        page: BrowsePage<'_>,
    ) -> Result<Option<Vec<ArtifactSummary>>> {
        let key = match page.sort {
            BrowseSort::Name => NO_KEY.to_string(),
            BrowseSort::Pushed => "m.created_at_us".to_string(),
            BrowseSort::Pulled => "COALESCE(p.last_pulled_at, -1)".to_string(),
            BrowseSort::Size => ARTIFACT_SIZE.to_string(),
        };
        let (filter, order) = keyset(&key, "m.digest", &page);
        // The page's rows are chosen first, so that tags, referrers and sizes are computed
        // for them alone, not for every row the sort looks at.
        let chosen = format!(
            "SELECT m.repository_id AS rid, m.digest AS digest, {key} AS sort_key \
             FROM manifests m LEFT JOIN manifest_pulls p \
               ON p.repository_id = m.repository_id AND p.digest = m.digest \
             WHERE m.repository_id = (SELECT id FROM repositories WHERE name = $1) \
               AND {TOP_LEVEL} AND {filter} {order}"
        );
        let direction = if page.descending { "DESC" } else { "ASC" };
        let (after_key, after_name) = split_after(&page);
        let rows = sqlx::query(&artifact_select(
            self.backend,
            &chosen,
            &format!("chosen.sort_key {direction}, chosen.digest {direction}"),
        ))
        .bind(repository)
        .bind(after_key)
        .bind(after_name)
        .bind(page.limit as i64)
        .fetch_all(&self.readers)
        .await?;
        if rows.is_empty() && !self.repository_exists(repository).await? {
            return Ok(None);
        }
        rows.iter()
            .map(artifact_summary)
            .collect::<Result<_>>()
            .map(Some)
    }

    /// One artifact of `repository` by digest, with its figures (top-level or not).
    pub async fn artifact_summary(
        &self,
        repository: &str,
        digest: &str,
    ) -> Result<Option<ArtifactSummary>> {
        let chosen = "SELECT m.repository_id AS rid, m.digest AS digest, 0 AS sort_key FROM manifests m \
             WHERE m.repository_id = (SELECT id FROM repositories WHERE name = $1) AND m.digest = $2";
        let row = sqlx::query(&artifact_select(self.backend, chosen, "chosen.digest"))
            .bind(repository)
            .bind(digest)
            .fetch_optional(&self.readers)
            .await?;
        row.as_ref().map(artifact_summary).transpose()
    }
}

fn split_after(page: &BrowsePage<'_>) -> (Option<i64>, Option<String>) {
    match page.after {
        Some((key, name)) => (Some(key), Some(name.to_string())),
        None => (None, None),
    }
}

/// The figures of the manifests `chosen` selects (`rid`, `digest`, `sort_key`), in `order`.
fn artifact_select(backend: Backend, chosen: &str, order: &str) -> String {
    let tags = backend.json_array_of(
        "t.name",
        "FROM tags t WHERE t.repository_id = m.repository_id AND t.digest = m.digest",
    );
    let referrers = backend.json_array_of(
        &backend.json_array("r.digest, r.media_type, r.artifact_type, r.created_at_us"),
        "FROM manifests r WHERE r.repository_id = m.repository_id AND r.subject = m.digest",
    );
    format!(
        "WITH chosen AS ({chosen}) \
         SELECT m.digest, m.media_type, m.artifact_type, m.created_at_us, {ARTIFACT_SIZE}, \
           p.last_pulled_at, COALESCE(p.pull_count, 0), \
           {tags}, {referrers}, \
           CASE WHEN m.media_type IN {INDEX_TYPES} THEN m.content END, \
           chosen.sort_key \
         FROM chosen JOIN manifests m ON m.repository_id = chosen.rid AND m.digest = chosen.digest \
         LEFT JOIN manifest_pulls p ON p.repository_id = m.repository_id AND p.digest = m.digest \
         ORDER BY {order}"
    )
}

fn artifact_summary(row: &sqlx::any::AnyRow) -> Result<ArtifactSummary> {
    let corrupt = |e: serde_json::Error| crate::MetaError::Corrupt(format!("browse row: {e}"));
    // Sorted here: ordering them in SQL makes SQLite walk the repository's tags by name
    // instead of looking up the digest's.
    let mut tags: Vec<String> = serde_json::from_str(&row.get::<String, _>(7)).map_err(corrupt)?;
    tags.sort();
    type Referrer = (String, String, Option<String>, i64);
    // Sorted here for the same reason as the tags (SQL would walk the repository by push time).
    let mut referrers: Vec<Referrer> =
        serde_json::from_str(&row.get::<String, _>(8)).map_err(corrupt)?;
    referrers.sort_by(|a, b| (a.3, &a.0).cmp(&(b.3, &b.0)));
    Ok(ArtifactSummary {
        digest: row.get(0),
        media_type: row.get(1),
        artifact_type: row.get(2),
        pushed_at_us: row.get(3),
        size: row.get(4),
        last_pulled_at: row.get(5),
        pulls: row.get(6),
        tags,
        referrers: referrers
            .into_iter()
            .map(
                |(digest, media_type, artifact_type, pushed_at_us)| ReferrerSummary {
                    digest,
                    media_type,
                    artifact_type,
                    pushed_at_us,
                },
            )
            .collect(),
        index_content: row.get(9),
        sort_key: row.get(10),
    })
}
