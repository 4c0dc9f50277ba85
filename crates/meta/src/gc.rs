//! The queries of online garbage collection. "Reachable" is computed in SQL: tagged
//! manifests, manifests younger than the grace cutoff, the children of reachable indexes and
//! the referrers of reachable manifests. Everything else is collectable. Deletions re-check
//! their condition inside their own statement, so a concurrent push that makes something
//! reachable again wins.

use std::sync::LazyLock;

use sqlx::Row;

use crate::quota::{Change, UsageChanges};
use crate::{Backend, MetaStore, Result};

/// The reachable manifests (`live`) as of cutoff `$1`: ones tagged (but for referrer tags),
/// ones pushed at or after the cutoff, the children of reachable indexes, the referrers of
/// reachable manifests, and the manifests a referrer tag of a reachable manifest names.
/// Referrer tags — cosign's `sha256-<hex>.sig`/`.att`/`.sbom` and the referrers fallback tag
/// `sha256-<hex>` ([`REFERRER_TAG`]) — keep their manifest only while the manifest their
/// name gives lives: a signature whose image is gone is collected with its tag.
///
/// Two texts: PostgreSQL allows one reference to `live` in its recursive term, so children,
/// referrers and referrer tags are joined through one union of edges there; SQLite walks the
/// branches by index, while the union would be rebuilt for every row the recursion visits.
fn live(backend: Backend) -> &'static str {
    static SQLITE: LazyLock<String> = LazyLock::new(|| {
        format!(
            "WITH RECURSIVE live(repository_id, digest) AS ( \
                SELECT repository_id, digest FROM tags t WHERE NOT ({REFERRER_TAG}) \
                UNION SELECT repository_id, digest FROM manifests WHERE created_at >= $1 \
                UNION SELECT c.repository_id, c.child_digest FROM manifest_children c \
                    JOIN live l ON l.repository_id = c.repository_id AND l.digest = c.manifest_digest \
                UNION SELECT m.repository_id, m.digest FROM manifests m \
                    JOIN live l ON l.repository_id = m.repository_id AND m.subject = l.digest \
                UNION SELECT t.repository_id, t.digest FROM tags t \
                    JOIN live l ON l.repository_id = t.repository_id AND l.digest = {TAG_SUBJECT} \
                    WHERE {REFERRER_TAG} \
            )"
        )
    });
    static POSTGRES: LazyLock<String> = LazyLock::new(|| {
        format!(
            "WITH RECURSIVE live(repository_id, digest) AS ( \
                SELECT repository_id, digest FROM tags t WHERE NOT ({REFERRER_TAG}) \
                UNION SELECT repository_id, digest FROM manifests WHERE created_at >= $1 \
                UNION SELECT e.repository_id, e.digest FROM live l JOIN ( \
                    SELECT repository_id, manifest_digest AS parent, child_digest AS digest \
                        FROM manifest_children \
                    UNION ALL SELECT repository_id, subject, digest FROM manifests \
                        WHERE subject IS NOT NULL \
                    UNION ALL SELECT repository_id, {TAG_SUBJECT}, digest FROM tags t \
                        WHERE {REFERRER_TAG}) e \
                    ON e.repository_id = l.repository_id AND e.parent = l.digest \
            )"
        )
    });
    match backend {
        Backend::Sqlite => &SQLITE,
        Backend::Postgres => &POSTGRES,
    }
}

/// Whether tag `t` is a referrer tag: `sha256-` and 64 characters, alone (the referrers
/// fallback tag) or with `.sig`, `.att` or `.sbom` (cosign's tag scheme); the SQL twin of
/// `gantry_signing::cosign::tag_subject`.
pub(crate) const REFERRER_TAG: &str = "t.name LIKE 'sha256-%' AND (length(t.name) = 71 \
    OR (length(t.name) = 75 AND (t.name LIKE '%.sig' OR t.name LIKE '%.att')) \
    OR (length(t.name) = 76 AND t.name LIKE '%.sbom'))";

/// [`REFERRER_TAG`] for a tag aliased `alias` instead of `t`.
pub(crate) fn referrer_tag_as(alias: &str) -> String {
    REFERRER_TAG.replace("t.name", &format!("{alias}.name"))
}

/// The digest a referrer tag `t` names.
pub(crate) const TAG_SUBJECT: &str = "'sha256:' || substr(t.name, 8, 64)";

/// Whether a live manifest of link `rb`'s repository references its blob.
const LIVE_REFERENCE: &str = "EXISTS (SELECT 1 FROM manifest_blobs mb JOIN live l \
        ON l.repository_id = mb.repository_id AND l.digest = mb.manifest_digest \
        WHERE mb.repository_id = rb.repository_id AND mb.blob_digest = rb.digest)";

/// Which state of the store a listing of collectable links or blobs describes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reckoning {
    /// The store as it is: what a collection's current step deletes.
    AsItIs,
    /// The store as a collection would leave it, for a dry run that deletes nothing: what
    /// only unreachable manifests use counts as collectable too.
    AfterCollection,
}

impl Reckoning {
    /// The query's `WITH` prefix, and the condition "a manifest that stays references link `rb`".
    fn clauses(self, backend: Backend) -> (&'static str, &'static str) {
        match self {
            Reckoning::AsItIs => (
                "",
                "EXISTS (SELECT 1 FROM manifest_blobs mb \
                 WHERE mb.repository_id = rb.repository_id AND mb.blob_digest = rb.digest)",
            ),
            Reckoning::AfterCollection => (live(backend), LIVE_REFERENCE),
        }
    }
}

/// A collectable manifest.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeadManifest {
    pub repository: String,
    pub digest: String,
    pub size: i64,
}

impl MetaStore {
    /// Manifests no tag, index or subject keeps alive, pushed before `cutoff`, in key order
    /// after `after`. Deleting them leaves the live set as it is, so one walk finds them all.
    pub async fn unreachable_manifests(
        &self,
        cutoff: i64,
        after: Option<&(String, String)>,
        limit: u32,
    ) -> Result<Vec<DeadManifest>> {
        let (after_name, after_digest) = after.map_or(("", ""), |(n, d)| (n.as_str(), d.as_str()));
        let live = live(self.backend);
        let rows = sqlx::query(&format!(
            "{live} \
             SELECT r.name, m.digest, m.size FROM manifests m JOIN repositories r ON r.id = m.repository_id \
             WHERE (r.name > $2 OR (r.name = $2 AND m.digest > $3)) \
             AND NOT EXISTS (SELECT 1 FROM live l WHERE l.repository_id = m.repository_id AND l.digest = m.digest) \
             ORDER BY r.name, m.digest LIMIT $4"
        ))
        .bind(cutoff)
        .bind(after_name)
        .bind(after_digest)
        .bind(limit as i64)
        .fetch_all(&self.readers)
        .await?;
        Ok(rows
            .into_iter()
            .map(|r| DeadManifest {
                repository: r.get(0),
                digest: r.get(1),
                size: r.get(2),
            })
            .collect())
    }

    /// Repository links made before `cutoff` (younger ones may belong to a push in progress)
    /// that no manifest of their repository references (`AsItIs`), or no live one
    /// (`AfterCollection`): (repository, digest), in key order after `after`, so a collection
    /// walks them once, page by page.
    pub async fn collectable_links(
        &self,
        reckoning: Reckoning,
        cutoff: i64,
        after: Option<&(String, String)>,
        limit: u32,
    ) -> Result<Vec<(String, String)>> {
        let (after_name, after_digest) = after.map_or(("", ""), |(n, d)| (n.as_str(), d.as_str()));
        let (with, referenced) = reckoning.clauses(self.backend);
        let rows = sqlx::query(&format!(
            "{with} SELECT r.name, rb.digest FROM repository_blobs rb \
             JOIN repositories r ON r.id = rb.repository_id \
             WHERE rb.created_at < $1 AND (r.name > $2 OR (r.name = $2 AND rb.digest > $3)) \
             AND NOT {referenced} ORDER BY r.name, rb.digest LIMIT $4"
        ))
        .bind(cutoff)
        .bind(after_name)
        .bind(after_digest)
        .bind(limit as i64)
        .fetch_all(&self.readers)
        .await?;
        Ok(rows.into_iter().map(|r| (r.get(0), r.get(1))).collect())
    }

    /// Removes the links that are still unreferenced and old, in one transaction; returns how
    /// many went (a link something uses now stays).
    pub async fn unlink_unreferenced(
        &self,
        links: &[(String, String)],
        cutoff: i64,
    ) -> Result<u64> {
        let mut tx = self.begin_write().await?;
        let mut changes = UsageChanges::default();
        let mut removed = 0;
        for (repository, digest) in links {
            let repo: Option<i64> = sqlx::query_scalar(
                "DELETE FROM repository_blobs WHERE digest = $2 AND created_at < $3 \
                 AND repository_id = (SELECT id FROM repositories WHERE name = $1) \
                 AND NOT EXISTS (SELECT 1 FROM manifest_blobs mb \
                     WHERE mb.repository_id = repository_blobs.repository_id AND mb.blob_digest = $2) \
                 RETURNING repository_id",
            )
            .bind(repository)
            .bind(digest)
            .bind(cutoff)
            .fetch_optional(&mut *tx)
            .await?;
            if let Some(repo) = repo {
                changes
                    .record_unlinked_blob(&mut tx, (repo, repository), digest)
                    .await?;
                removed += 1;
            }
        }
        changes.charge(&mut tx).await?;
        tx.commit().await?;
        Ok(removed)
    }

    /// Blobs no repository links (`AsItIs`), or none of whose links would survive a
    /// collection (`AfterCollection`): (digest, size), in digest order after `after`.
    pub async fn collectable_blobs(
        &self,
        reckoning: Reckoning,
        cutoff: i64,
        after: Option<&str>,
        limit: u32,
    ) -> Result<Vec<(String, i64)>> {
        let (with, referenced) = reckoning.clauses(self.backend);
        let survives = match reckoning {
            Reckoning::AsItIs => "true".to_string(),
            Reckoning::AfterCollection => format!("(rb.created_at >= $1 OR {referenced})"),
        };
        // `$1` (the cutoff) is bound either way; SQLite sizes parameters by the highest number.
        let rows = sqlx::query(&format!(
            "{with} SELECT digest, size FROM blobs b WHERE digest > $2 AND NOT EXISTS \
             (SELECT 1 FROM repository_blobs rb WHERE rb.digest = b.digest AND {survives}) \
             ORDER BY digest LIMIT $3"
        ))
        .bind(cutoff)
        .bind(after.unwrap_or(""))
        .bind(limit as i64)
        .fetch_all(&self.readers)
        .await?;
        Ok(rows.into_iter().map(|r| (r.get(0), r.get(1))).collect())
    }

    /// Deletes the rows of blobs no repository links, in one transaction; returns the ones
    /// deleted, whose bytes may go.
    pub async fn delete_orphan_blobs(&self, digests: &[String]) -> Result<Vec<String>> {
        let mut tx = self.begin_write().await?;
        let mut deleted = Vec::new();
        for digest in digests {
            let size: Option<i64> = sqlx::query_scalar(
                "DELETE FROM blobs WHERE digest = $1 AND NOT EXISTS \
                 (SELECT 1 FROM repository_blobs rb WHERE rb.digest = $1) RETURNING size",
            )
            .bind(digest)
            .fetch_optional(&mut *tx)
            .await?;
            if let Some(size) = size {
                crate::browse::count_blob_row(&mut tx, Change::Removed, digest, size).await?;
                deleted.push(digest.clone());
            }
        }
        tx.commit().await?;
        Ok(deleted)
    }

    /// Upload sessions started before `cutoff` (abandoned): ids.
    pub async fn stale_uploads(&self, cutoff: i64) -> Result<Vec<String>> {
        Ok(
            sqlx::query_scalar("SELECT id FROM uploads WHERE created_at < $1 ORDER BY id")
                .bind(cutoff)
                .fetch_all(&self.readers)
                .await?,
        )
    }
}
