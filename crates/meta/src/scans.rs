//! The vulnerability scanner's results, one per image manifest digest (migration 17). The
//! report is the scanner's JSON, kept as text: the metadata store does not read it.

use gantry_oci::Digest;
use sqlx::Row;

use crate::{MetaStore, NewEvent, Result};

/// One manifest's latest scan.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ScanRecord {
    pub digest: Digest,
    /// A repository holding the manifest, where a rescan reads it.
    pub repository: String,
    /// `scanned`, `not-an-image` or `failed`.
    pub status: String,
    /// The vulnerability database generation the packages were matched against.
    pub generation: i64,
    /// Unix milliseconds.
    pub scanned_ms: i64,
    /// The scanner's JSON report (or the failure's message, as JSON).
    pub report: String,
}

fn record(row: &sqlx::any::AnyRow) -> Result<ScanRecord> {
    let digest: String = row.get(0);
    Ok(ScanRecord {
        digest: digest
            .parse()
            .map_err(|e| crate::MetaError::Corrupt(format!("scan result digest: {e}")))?,
        repository: row.get(1),
        status: row.get(2),
        generation: row.get(3),
        scanned_ms: row.get(4),
        report: row.get(5),
    })
}

impl MetaStore {
    /// Records a scan, replacing the manifest's earlier one unless that one was matched
    /// against a newer database generation (two scans finishing out of order keep the newer),
    /// with `event` (`artifact.scanned`) in the same transaction when it is recorded.
    /// Returns whether it was recorded.
    pub async fn put_scan_result(
        &self,
        scan: &ScanRecord,
        event: Option<&NewEvent>,
    ) -> Result<bool> {
        let mut tx = self.begin_write().await?;
        let recorded = sqlx::query(
            "INSERT INTO scan_results (digest, repository, status, generation, scanned_ms, report) \
             VALUES ($1, $2, $3, $4, $5, $6) \
             ON CONFLICT (digest) DO UPDATE SET repository = excluded.repository, \
             status = excluded.status, generation = excluded.generation, \
             scanned_ms = excluded.scanned_ms, report = excluded.report \
             WHERE scan_results.generation <= excluded.generation",
        )
        .bind(scan.digest.to_string())
        .bind(&scan.repository)
        .bind(&scan.status)
        .bind(scan.generation)
        .bind(scan.scanned_ms)
        .bind(&scan.report)
        .execute(&mut *tx)
        .await?
        .rows_affected()
            > 0;
        if let Some(event) = event.filter(|_| recorded) {
            crate::events::record_in(&mut tx, event).await?;
        }
        tx.commit().await?;
        Ok(recorded)
    }

    /// Scans matched against a database generation older than `generation`, oldest first, at
    /// most `limit`: (repository, digest) to scan again.
    pub async fn stale_scans(&self, generation: i64, limit: u32) -> Result<Vec<(String, Digest)>> {
        let rows: Vec<(String, String)> = sqlx::query_as(
            "SELECT repository, digest FROM scan_results WHERE generation < $1 \
             ORDER BY generation, scanned_ms LIMIT $2",
        )
        .bind(generation)
        .bind(i64::from(limit))
        .fetch_all(&self.readers)
        .await?;
        rows.into_iter()
            .map(|(repository, digest)| {
                let digest = digest
                    .parse()
                    .map_err(|e| crate::MetaError::Corrupt(format!("scan result digest: {e}")))?;
                Ok((repository, digest))
            })
            .collect()
    }

    /// The latest scan of each of `digests` that has one, in no particular order.
    pub async fn scan_results(&self, digests: &[Digest]) -> Result<Vec<ScanRecord>> {
        let mut found = Vec::new();
        for chunk in digests.chunks(100) {
            let placeholders: Vec<String> = (1..=chunk.len()).map(|i| format!("${i}")).collect();
            let sql = format!(
                "SELECT digest, repository, status, generation, scanned_ms, report FROM scan_results \
                 WHERE digest IN ({})",
                placeholders.join(", ")
            );
            let mut query = sqlx::query(&sql);
            for digest in chunk {
                query = query.bind(digest.to_string());
            }
            for row in query.fetch_all(&self.readers).await? {
                found.push(record(&row)?);
            }
        }
        Ok(found)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::fresh_store;

    fn scan(digest: &Digest, generation: i64, report: &str) -> ScanRecord {
        ScanRecord {
            digest: digest.clone(),
            repository: "team/app".into(),
            status: "scanned".into(),
            generation,
            scanned_ms: 1_000 * generation,
            report: report.into(),
        }
    }

    #[tokio::test]
    async fn a_scan_against_an_older_database_never_replaces_a_newer_one() {
        let (_dir, _, meta) = fresh_store().await;
        let digest = Digest::sha256_of(b"manifest");
        let put = |generation: i64| {
            let meta = meta.clone();
            let record = scan(&digest, generation, &format!("{{\"g\":{generation}}}"));
            async move { meta.put_scan_result(&record, None).await.unwrap() }
        };
        assert!(put(2).await);
        assert!(!put(1).await, "an older generation's scan is not recorded");
        assert_eq!(
            meta.scan_results(std::slice::from_ref(&digest))
                .await
                .unwrap(),
            [scan(&digest, 2, "{\"g\":2}")]
        );
        assert_eq!(
            meta.stale_scans(3, 10).await.unwrap(),
            [("team/app".to_string(), digest.clone())]
        );
        assert!(put(3).await);
        assert!(meta.stale_scans(3, 10).await.unwrap().is_empty());
        let other = Digest::sha256_of(b"other");
        assert_eq!(
            meta.scan_results(&[digest.clone(), other]).await.unwrap(),
            [scan(&digest, 3, "{\"g\":3}")]
        );
    }
}
