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
//!   the repository (signatures, SBOMs: listed under their subject), nor tagged only with
//!   referrer tags naming a manifest of the repository (cosign's `sha256-<hex>.sig`, `.att`,
//!   `.sbom` and the referrers fallback index `sha256-<hex>`: listed under the manifest the
//!   tag names, as GC keeps them), nor an untagged child of an index (listed as the index's
//!   platforms). A repository's `artifacts` counts those.
//!
//! Sizes are kept as data, not added up on every read (a page sorted by size would compute
//! every artifact's size, the repository list every blob of every repository): each
//! manifest's `artifact_size` and each repository's `bytes` are written in the transactions
//! that change what they count — a manifest stored or deleted (`count_manifest_bytes`,
//! `refresh_artifact_sizes`), a blob row created or collected (`count_blob_row`) — and equal
//! `ARTIFACT_SIZE` and `REPOSITORY_BYTES` over the rows, which the migration fills them with.

use sqlx::{Any, Row, Transaction};

use crate::gc::{referrer_tag_as, REFERRER_TAG, TAG_SUBJECT};
use crate::quota::Change;
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

/// A project's repositories, for the project list.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProjectRepositories {
    pub project: String,
    /// Repositories in the project, as its repository page counts them.
    pub repositories: i64,
    /// The latest manifest push or tag move in any of them (Unix microseconds); `None` when
    /// nothing was pushed.
    pub last_pushed_at_us: Option<i64>,
}

/// A manifest that names an artifact as its subject.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReferrerSummary {
    pub digest: String,
    pub media_type: String,
    pub artifact_type: Option<String>,
    /// Unix microseconds.
    pub pushed_at_us: i64,
    /// The referrer tag it is found by (`sha256-<hex>.sig`, `.att`, `.sbom`, or the fallback
    /// tag `sha256-<hex>`); `None` for a manifest whose subject is the artifact.
    pub tag: Option<String>,
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
    /// The manifest's bytes.
    pub content: Vec<u8>,
    /// The key this row is sorted by, for the next page's `after`.
    pub sort_key: i64,
}

/// How [`top_level`] finds the manifests tagged only with referrer tags.
#[derive(Clone, Copy)]
enum ReferrerTags<'a> {
    /// Looked up for each manifest: for a statement that checks a few.
    PerManifest,
    /// For a statement that walks a repository's manifests: gathered once per statement
    /// from the repository's tags named `sha256-…` (this SQL gives the repository's id, not
    /// depending on `m`), found through the tag names' index range (`sha256-` ≤ name <
    /// `sha256.`); a lookup per manifest walked doubled the time of a page sorted by pulls.
    Gathered(&'a str),
}

/// Manifest `m` is listed at the top level of its repository (see the module documentation).
fn top_level(referrer_tags: ReferrerTags<'_>) -> String {
    let other_tag_is_referrer_tag = referrer_tag_as("o");
    let only_referrer_tags = format!(
        "{REFERRER_TAG} \
         AND EXISTS (SELECT 1 FROM manifests s \
           WHERE s.repository_id = t.repository_id AND s.digest = {TAG_SUBJECT}) \
         AND NOT EXISTS (SELECT 1 FROM tags o \
           WHERE o.repository_id = t.repository_id AND o.digest = t.digest \
             AND NOT ({other_tag_is_referrer_tag}))"
    );
    let referrer_tagged = match referrer_tags {
        ReferrerTags::PerManifest => format!(
            "NOT EXISTS (SELECT 1 FROM tags t \
               WHERE t.repository_id = m.repository_id AND t.digest = m.digest AND {only_referrer_tags})"
        ),
        ReferrerTags::Gathered(repository) => format!(
            "m.digest NOT IN (SELECT t.digest FROM tags t \
               WHERE t.repository_id = {repository} AND t.name >= 'sha256-' AND t.name < 'sha256.' \
                 AND {only_referrer_tags})"
        ),
    };
    format!(
        "NOT (m.subject IS NOT NULL AND EXISTS (SELECT 1 FROM manifests s \
           WHERE s.repository_id = m.repository_id AND s.digest = m.subject)) \
         AND NOT (EXISTS (SELECT 1 FROM manifest_children c \
           WHERE c.repository_id = m.repository_id AND c.child_digest = m.digest) \
         AND NOT EXISTS (SELECT 1 FROM tags t WHERE t.repository_id = m.repository_id AND t.digest = m.digest)) \
         AND {referrer_tagged}"
    )
}

/// The bytes of manifest `m`: itself, its children's manifests, and the distinct blobs of
/// both. `CROSS JOIN` keeps SQLite's join order (children first, then their blobs): left to
/// choose, it walks every blob link of the repository for each manifest. Kept in
/// `manifests.artifact_size`; computed only when that changes.
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

/// The bytes of repository `r`: its manifests plus the distinct blobs they reference. Kept in
/// `repositories.bytes`; this recounts it.
const REPOSITORY_BYTES: &str =
    "(COALESCE((SELECT CAST(SUM(m.size) AS BIGINT) FROM manifests m WHERE m.repository_id = r.id), 0) \
     + COALESCE((SELECT CAST(SUM(b.size) AS BIGINT) FROM blobs b WHERE b.digest IN \
         (SELECT mb.blob_digest FROM manifest_blobs mb WHERE mb.repository_id = r.id)), 0))";

/// The bytes of the blobs that manifest `$2` of repository `$1` references and no other
/// manifest of the repository does: with the manifest's own bytes, what storing it adds to
/// the repository's size and deleting it takes away.
const BLOBS_ONLY_IT_REFERENCES: &str = "SELECT COALESCE(CAST(SUM(b.size) AS BIGINT), 0) FROM manifest_blobs mb \
     JOIN blobs b ON b.digest = mb.blob_digest \
     WHERE mb.repository_id = $1 AND mb.manifest_digest = $2 AND NOT EXISTS (SELECT 1 FROM manifest_blobs o \
       WHERE o.repository_id = $1 AND o.blob_digest = mb.blob_digest AND o.manifest_digest <> $2)";

/// `bytes` as a change of a kept size: added, or taken away.
fn signed(change: Change, bytes: i64) -> i64 {
    match change {
        Change::Added => bytes,
        Change::Removed => -bytes,
    }
}

/// Keeps repository `repository_id`'s size as its manifest `digest` (`size` bytes of its
/// own) is stored or deleted. Call inside the changing transaction while the manifest's blob
/// references are recorded: after recording them (`Added`), before deleting them (`Removed`).
pub(crate) async fn count_manifest_bytes(
    tx: &mut Transaction<'_, Any>,
    change: Change,
    repository_id: i64,
    digest: &str,
    size: i64,
) -> Result<()> {
    let blobs: i64 = sqlx::query_scalar(BLOBS_ONLY_IT_REFERENCES)
        .bind(repository_id)
        .bind(digest)
        .fetch_one(&mut **tx)
        .await?;
    let bytes = size + blobs;
    sqlx::query("UPDATE repositories SET bytes = bytes + $2 WHERE id = $1")
        .bind(repository_id)
        .bind(signed(change, bytes))
        .execute(&mut **tx)
        .await?;
    Ok(())
}

/// Recomputes the kept size of manifest `digest` of repository `repository_id` (when it
/// exists) and of the indexes of the repository that list it, after what it counts changed:
/// it was stored or deleted (with its reference rows), or a blob row it counts appeared or
/// went.
pub(crate) async fn refresh_artifact_sizes(
    tx: &mut Transaction<'_, Any>,
    repository_id: i64,
    digest: &str,
) -> Result<()> {
    sqlx::query(&format!(
        "UPDATE manifests AS m SET artifact_size = {ARTIFACT_SIZE} \
         WHERE m.repository_id = $1 AND m.digest IN (SELECT CAST($2 AS TEXT) \
           UNION SELECT c.manifest_digest FROM manifest_children c \
           WHERE c.repository_id = $1 AND c.child_digest = $2)"
    ))
    .bind(repository_id)
    .bind(digest)
    .execute(&mut **tx)
    .await?;
    Ok(())
}

/// Keeps the sizes as blob row `digest` (`size` bytes) is created or deleted while
/// manifests reference it: sizes count only blobs that have a row, and a blob a manifest
/// references can lose its row (its link deleted, then garbage collection) and get it back
/// (pushed again). Call inside the transaction that creates or deletes the row, after it.
pub(crate) async fn count_blob_row(
    tx: &mut Transaction<'_, Any>,
    change: Change,
    digest: &str,
    size: i64,
) -> Result<()> {
    let referencing: Vec<(i64, String)> = sqlx::query_as(
        "SELECT repository_id, manifest_digest FROM manifest_blobs WHERE blob_digest = $1",
    )
    .bind(digest)
    .fetch_all(&mut **tx)
    .await?;
    if referencing.is_empty() {
        return Ok(());
    }
    sqlx::query(
        "UPDATE repositories SET bytes = bytes + $2 WHERE id IN \
         (SELECT repository_id FROM manifest_blobs WHERE blob_digest = $1)",
    )
    .bind(digest)
    .bind(signed(change, size))
    .execute(&mut **tx)
    .await?;
    for (repository_id, manifest) in referencing {
        refresh_artifact_sizes(tx, repository_id, &manifest).await?;
    }
    Ok(())
}

/// Fills the kept sizes from the rows (run by the migration that adds them).
pub(crate) async fn fill_sizes(tx: &mut Transaction<'_, Any>) -> Result<()> {
    sqlx::query(&format!(
        "UPDATE manifests AS m SET artifact_size = {ARTIFACT_SIZE}"
    ))
    .execute(&mut **tx)
    .await?;
    sqlx::query(&format!(
        "UPDATE repositories AS r SET bytes = {REPOSITORY_BYTES}"
    ))
    .execute(&mut **tx)
    .await?;
    Ok(())
}

/// The sort key of a sort by name: the same for every row, so the name decides (a bare `0`
/// would read as a column number in `ORDER BY`).
const NO_KEY: &str = "CAST(0 AS INTEGER)";

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

/// A repository's (`repo`) latest manifest push and tag move, Unix microseconds or -1: two
/// index lookups, as columns `manifest_pushed` and `tag_pushed`.
const PUSH_TIMES: &str =
    "COALESCE((SELECT MAX(m.created_at_us) FROM manifests m WHERE m.repository_id = repo.id), -1) \
       AS manifest_pushed, \
     COALESCE((SELECT MAX(t.updated_at_us) FROM tags t WHERE t.repository_id = repo.id), -1) \
       AS tag_pushed";

/// The later of [`PUSH_TIMES`]' two columns.
const LATEST_PUSH: &str =
    "CASE WHEN tag_pushed > manifest_pushed THEN tag_pushed ELSE manifest_pushed END";

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
        // Per repository, the size is kept and the last push is two index lookups. The pulls
        // read its pulled manifests' rows once (`CROSS JOIN`: repositories first, not every
        // pull row of the registry); the top-level count reads only the manifests that may
        // not be top-level (referrers and index children) and subtracts those that are not
        // from all its manifests, counted in an index (reading every manifest row, and
        // adding up every blob, is what made this page slow).
        let top_level = top_level(ReferrerTags::PerManifest);
        let sql = format!(
            "WITH repo AS (SELECT id, name, bytes FROM repositories WHERE project = $1), \
             pull AS (SELECT repo.id AS rid, CAST(SUM(p.pull_count) AS BIGINT) AS pulls, MAX(p.last_pulled_at) AS last_pulled \
               FROM repo CROSS JOIN manifest_pulls p JOIN manifests m \
                 ON m.repository_id = p.repository_id AND m.digest = p.digest \
               WHERE p.repository_id = repo.id GROUP BY repo.id), \
             figures AS (SELECT repo.name AS name, repo.bytes AS size, \
                 (SELECT COUNT(*) FROM manifests m WHERE m.repository_id = repo.id) \
                 - (SELECT COUNT(*) FROM manifests m WHERE m.repository_id = repo.id AND m.digest IN \
                     (SELECT s.digest FROM manifests s WHERE s.repository_id = repo.id AND s.subject IS NOT NULL \
                      UNION SELECT c.child_digest FROM manifest_children c WHERE c.repository_id = repo.id \
                      UNION SELECT t.digest FROM tags t WHERE t.repository_id = repo.id \
                        AND t.name >= 'sha256-' AND t.name < 'sha256.' AND {REFERRER_TAG}) \
                   AND NOT ({top_level})) AS artifacts, \
                 {PUSH_TIMES}, \
                 pull.last_pulled AS last_pulled, COALESCE(pull.pulls, 0) AS pulls \
               FROM repo LEFT JOIN pull ON pull.rid = repo.id), \
             summary AS (SELECT name, artifacts, size, \
                 NULLIF({LATEST_PUSH}, -1) AS pushed, last_pulled, pulls \
               FROM figures) \
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

    /// Every project that has repositories, with their count and latest push, in one query
    /// (two index lookups per repository, as on the repository page).
    pub async fn project_repositories(&self) -> Result<Vec<ProjectRepositories>> {
        let rows = sqlx::query(&format!(
            "WITH pushed AS (SELECT repo.project AS project, {PUSH_TIMES} FROM repositories repo) \
             SELECT project, COUNT(*), NULLIF(MAX({LATEST_PUSH}), -1) \
             FROM pushed GROUP BY project ORDER BY project"
        ))
        .fetch_all(&self.readers)
        .await?;
        Ok(rows
            .into_iter()
            .map(|row| ProjectRepositories {
                project: row.get(0),
                repositories: row.get(1),
                last_pushed_at_us: row.get(2),
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
            BrowseSort::Name => NO_KEY,
            BrowseSort::Pushed => "m.created_at_us",
            BrowseSort::Pulled => "COALESCE(p.last_pulled_at, -1)",
            BrowseSort::Size => "m.artifact_size",
        };
        let (filter, order) = keyset(key, "m.digest", &page);
        let top_level = top_level(ReferrerTags::Gathered(
            "(SELECT id FROM repositories WHERE name = $1)",
        ));
        // The page's rows are chosen first, so that tags, referrers and sizes are computed
        // for them alone, not for every row the sort looks at.
        let chosen = format!(
            "SELECT m.repository_id AS rid, m.digest AS digest, {key} AS sort_key \
             FROM manifests m LEFT JOIN manifest_pulls p \
               ON p.repository_id = m.repository_id AND p.digest = m.digest \
             WHERE m.repository_id = (SELECT id FROM repositories WHERE name = $1) \
               AND {top_level} AND {filter} {order}"
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
    // Referrers: the manifests whose subject is `m`, and those tagged with a referrer tag
    // naming `m` (with the tag).
    let stem = "'sha256-' || substr(m.digest, 8)";
    let referrers = backend.json_array_of(
        &backend.json_array("r.digest, r.media_type, r.artifact_type, r.created_at_us, r.tag"),
        &format!(
            "FROM (SELECT x.digest, x.media_type, x.artifact_type, x.created_at_us, NULL AS tag \
               FROM manifests x WHERE x.repository_id = m.repository_id AND x.subject = m.digest \
             UNION ALL SELECT x.digest, x.media_type, x.artifact_type, x.created_at_us, t.name \
               FROM tags t JOIN manifests x ON x.repository_id = t.repository_id AND x.digest = t.digest \
               WHERE t.repository_id = m.repository_id \
                 AND t.name IN ({stem} || '.sig', {stem} || '.att', {stem} || '.sbom', {stem})) r"
        ),
    );
    format!(
        "WITH chosen AS ({chosen}) \
         SELECT m.digest, m.media_type, m.artifact_type, m.created_at_us, m.artifact_size, \
           p.last_pulled_at, COALESCE(p.pull_count, 0), \
           {tags}, {referrers}, \
           m.content, \
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
    type Referrer = (String, String, Option<String>, i64, Option<String>);
    // Sorted here for the same reason as the tags (SQL would walk the repository by push time).
    let mut referrers: Vec<Referrer> =
        serde_json::from_str(&row.get::<String, _>(8)).map_err(corrupt)?;
    // A manifest found both ways is listed once, with its tag.
    referrers.sort_by(|a, b| a.0.cmp(&b.0).then(b.4.is_some().cmp(&a.4.is_some())));
    referrers.dedup_by(|later, first| later.0 == first.0);
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
                |(digest, media_type, artifact_type, pushed_at_us, tag)| ReferrerSummary {
                    digest,
                    media_type,
                    artifact_type,
                    pushed_at_us,
                    tag,
                },
            )
            .collect(),
        content: row.get(9),
        sort_key: row.get(10),
    })
}

#[cfg(test)]
mod tests {
    use gantry_oci::{media_type, Digest};

    use super::*;
    use crate::tests::{manifest, store};
    use crate::{NewManifest, Reckoning};

    fn d(n: u8) -> Digest {
        Digest::sha256_of(&[n])
    }

    /// Asserts that every kept size equals a recount from the rows.
    async fn assert_sizes_equal_a_recount(store: &MetaStore) {
        let repositories: Vec<(String, i64, i64)> = sqlx::query_as(&format!(
            "SELECT name, bytes, {REPOSITORY_BYTES} FROM repositories r WHERE bytes <> {REPOSITORY_BYTES}"
        ))
        .fetch_all(&store.readers)
        .await
        .unwrap();
        assert!(
            repositories.is_empty(),
            "repository sizes (name, kept, counted): {repositories:?}"
        );
        let manifests: Vec<(String, i64, i64)> = sqlx::query_as(&format!(
            "SELECT m.digest, m.artifact_size, {ARTIFACT_SIZE} FROM manifests m \
             WHERE m.artifact_size <> {ARTIFACT_SIZE}"
        ))
        .fetch_all(&store.readers)
        .await
        .unwrap();
        assert!(
            manifests.is_empty(),
            "artifact sizes (digest, kept, counted): {manifests:?}"
        );
    }

    /// Repository `name` as the repository page gives it.
    async fn repository(store: &MetaStore, name: &str) -> Option<RepositorySummary> {
        let page = BrowsePage {
            sort: BrowseSort::Name,
            descending: false,
            after: None,
            limit: 100,
        };
        let project = gantry_oci::RepositoryName::project_of(name);
        let rows = store.repository_page(project, page).await.unwrap();
        rows.into_iter().find(|r| r.name == name)
    }

    async fn repository_size(store: &MetaStore, name: &str) -> i64 {
        repository(store, name).await.map_or(0, |r| r.size)
    }

    async fn artifact_size(store: &MetaStore, name: &str, digest: &Digest) -> i64 {
        store
            .artifact_summary(name, &digest.to_string())
            .await
            .unwrap()
            .unwrap()
            .size
    }

    /// Garbage collection as the registry runs it, everything older than now collectable.
    async fn collect_garbage(store: &MetaStore) {
        let cutoff = crate::now() + 10;
        let dead = store
            .unreachable_manifests(cutoff, None, 100)
            .await
            .unwrap();
        let dead: Vec<(String, String)> =
            dead.into_iter().map(|m| (m.repository, m.digest)).collect();
        store.delete_manifests(&dead, "tester").await.unwrap();
        let links = store
            .collectable_links(Reckoning::AsItIs, cutoff, None, 100)
            .await
            .unwrap();
        store.unlink_unreferenced(&links, cutoff).await.unwrap();
        let blobs = store
            .collectable_blobs(Reckoning::AsItIs, cutoff, None, 100)
            .await
            .unwrap();
        let blobs: Vec<String> = blobs.into_iter().map(|(digest, _)| digest).collect();
        store.delete_orphan_blobs(&blobs).await.unwrap();
    }

    /// cosign's `.sig` manifest and the referrers fallback index are listed under the image
    /// their tag names, as its referrers with their tag, not as artifacts of their own; a
    /// referrer tag naming no manifest of the repository, or a manifest with another tag too,
    /// stays at the top level.
    #[tokio::test]
    async fn manifests_tagged_only_with_referrer_tags_are_listed_under_the_image_they_name() {
        let (_dir, store) = store().await;
        let (image, signature, fallback, orphan, both) = (d(20), d(21), d(22), d(23), d(24));
        let stem = |digest: &Digest| format!("sha256-{}", digest.hex());
        let put = |digest: Digest, tag: String| {
            let store = store.clone();
            async move {
                store
                    .put_manifest(
                        "team/app",
                        &manifest(&digest, vec![], None),
                        Some(tag.as_str().into()),
                    )
                    .await
                    .unwrap();
            }
        };
        put(image.clone(), "v1".into()).await;
        put(signature.clone(), format!("{}.sig", stem(&image))).await;
        put(fallback.clone(), stem(&image)).await;
        put(orphan.clone(), format!("{}.sig", stem(&d(99)))).await;
        put(both.clone(), format!("{}.att", stem(&image))).await;
        put(both.clone(), "v2".into()).await;
        let page = BrowsePage {
            sort: BrowseSort::Name,
            descending: false,
            after: None,
            limit: 100,
        };
        let rows = store
            .artifact_page("team/app", page)
            .await
            .unwrap()
            .unwrap();
        let mut listed: Vec<&str> = rows.iter().map(|r| r.digest.as_str()).collect();
        listed.sort();
        let mut expected = vec![image.to_string(), orphan.to_string(), both.to_string()];
        expected.sort();
        assert_eq!(listed, expected);
        assert_eq!(repository(&store, "team/app").await.unwrap().artifacts, 3);
        let projects = store.project_repositories().await.unwrap();
        assert_eq!(projects.len(), 1);
        assert_eq!(
            (projects[0].project.as_str(), projects[0].repositories),
            ("team", 1)
        );
        assert_eq!(
            projects[0].last_pushed_at_us,
            repository(&store, "team/app")
                .await
                .unwrap()
                .last_pushed_at_us
        );
        let image_row = rows.iter().find(|r| r.digest == image.to_string()).unwrap();
        let mut referrers: Vec<(String, Option<String>)> = image_row
            .referrers
            .iter()
            .map(|r| (r.digest.clone(), r.tag.clone()))
            .collect();
        referrers.sort();
        let mut expected = vec![
            (signature.to_string(), Some(format!("{}.sig", stem(&image)))),
            (fallback.to_string(), Some(stem(&image))),
            (both.to_string(), Some(format!("{}.att", stem(&image)))),
        ];
        expected.sort();
        assert_eq!(referrers, expected);
    }

    /// The sizes are kept live, not added up on read: every write path that changes what
    /// they count (pushes with shared layers, an index, a referrer, deletes of children,
    /// indexes and referrers, a referenced blob's link deleted and its row collected, the
    /// blob pushed again, garbage collection) must leave them equal to a recount.
    #[tokio::test]
    async fn repository_size_stays_equal_to_a_recount_after_deletes() {
        let (_dir, store) = store().await;
        // Blobs: a layer shared by two images and another repository, two own layers, a
        // signature payload.
        let (shared, own_a, own_b, payload) = (d(1), d(2), d(3), d(4));
        for (digest, size) in [(&shared, 1000), (&own_a, 100), (&own_b, 10), (&payload, 1)] {
            store.link_blob("team/app", digest, size).await.unwrap();
        }
        store.link_blob("team/web", &shared, 1000).await.unwrap();
        let (a, b, index, signature, web) = (d(10), d(11), d(12), d(13), d(14));
        // Every test manifest's own bytes are `{}`: 2 bytes.
        store
            .put_manifest("team/app", &manifest(&a, vec![&shared, &own_a], None), None)
            .await
            .unwrap();
        store
            .put_manifest("team/app", &manifest(&b, vec![&shared, &own_b], None), None)
            .await
            .unwrap();
        let multi = NewManifest {
            media_type: media_type::OCI_INDEX,
            children: vec![&a, &b],
            pushed_by: "tester",
            ..manifest(&index, vec![], None)
        };
        store
            .put_manifest("team/app", &multi, Some("v1".into()))
            .await
            .unwrap();
        store
            .put_manifest(
                "team/app",
                &manifest(&signature, vec![&payload], Some(&index)),
                None,
            )
            .await
            .unwrap();
        store
            .put_manifest(
                "team/web",
                &manifest(&web, vec![&shared], None),
                Some("v1".into()),
            )
            .await
            .unwrap();
        assert_sizes_equal_a_recount(&store).await;
        assert_eq!(repository_size(&store, "team/app").await, 4 * 2 + 1111);
        assert_eq!(repository_size(&store, "team/web").await, 2 + 1000);
        assert_eq!(
            artifact_size(&store, "team/app", &index).await,
            3 * 2 + 1110
        );
        // The index is the only top-level artifact (its children are untagged, the signature
        // is listed under it) until a child is tagged.
        assert_eq!(repository(&store, "team/app").await.unwrap().artifacts, 1);
        store
            .put_manifest(
                "team/app",
                &manifest(&a, vec![&shared, &own_a], None),
                Some("a".into()),
            )
            .await
            .unwrap();
        assert_eq!(repository(&store, "team/app").await.unwrap().artifacts, 2);
        assert!(store.delete_tag("team/app", "a", "tester").await.unwrap());

        // A child deleted on its own: the index no longer counts it, nor the layer only it used.
        assert!(store
            .delete_manifest("team/app", &b, "tester")
            .await
            .unwrap());
        assert_sizes_equal_a_recount(&store).await;
        assert_eq!(repository_size(&store, "team/app").await, 3 * 2 + 1101);
        assert_eq!(
            artifact_size(&store, "team/app", &index).await,
            2 * 2 + 1100
        );

        // Pushed again: counted again, in the index too.
        store
            .put_manifest("team/app", &manifest(&b, vec![&shared, &own_b], None), None)
            .await
            .unwrap();
        assert_sizes_equal_a_recount(&store).await;
        assert_eq!(
            artifact_size(&store, "team/app", &index).await,
            3 * 2 + 1110
        );

        // A referenced blob's link deleted, then its row collected: sizes count blobs that
        // have a row. Pushed again, it counts again.
        assert!(store.unlink_blob("team/app", &own_a).await.unwrap());
        collect_garbage(&store).await;
        assert!(!store.blob_recorded(&own_a).await.unwrap());
        assert_sizes_equal_a_recount(&store).await;
        assert_eq!(repository_size(&store, "team/app").await, 4 * 2 + 1011);
        store.link_blob("team/app", &own_a, 100).await.unwrap();
        assert_sizes_equal_a_recount(&store).await;
        assert_eq!(repository_size(&store, "team/app").await, 4 * 2 + 1111);

        // The tag goes: garbage collection deletes the index, its children and its referrer,
        // then the links and the blobs; the shared layer stays for team/web.
        assert!(store.delete_tag("team/app", "v1", "tester").await.unwrap());
        collect_garbage(&store).await;
        assert_sizes_equal_a_recount(&store).await;
        assert_eq!(repository_size(&store, "team/app").await, 0);
        assert_eq!(repository_size(&store, "team/web").await, 2 + 1000);
        assert!(store.blob_recorded(&shared).await.unwrap());
        assert!(!store.blob_recorded(&own_b).await.unwrap());

        assert!(store
            .delete_manifest("team/web", &web, "tester")
            .await
            .unwrap());
        assert_sizes_equal_a_recount(&store).await;
        assert_eq!(repository_size(&store, "team/web").await, 0);
    }

    /// What the migration fills the sizes of data stored before they were kept with.
    #[tokio::test]
    async fn the_migration_fills_sizes_with_a_recount() {
        let (_dir, store) = store().await;
        let (layer, image) = (d(1), d(2));
        store.link_blob("team/app", &layer, 50).await.unwrap();
        store
            .put_manifest("team/app", &manifest(&image, vec![&layer], None), None)
            .await
            .unwrap();
        sqlx::query("UPDATE manifests SET artifact_size = 0")
            .execute(&store.writer)
            .await
            .unwrap();
        sqlx::query("UPDATE repositories SET bytes = 0")
            .execute(&store.writer)
            .await
            .unwrap();
        let mut tx = store.writer.begin().await.unwrap();
        fill_sizes(&mut tx).await.unwrap();
        tx.commit().await.unwrap();
        assert_sizes_equal_a_recount(&store).await;
        assert_eq!(repository_size(&store, "team/app").await, 52);
        assert_eq!(artifact_size(&store, "team/app", &image).await, 52);
    }
}
