//! The vulnerability scanner's results, one per image manifest digest (migration 17). The
//! report is the scanner's JSON, kept as text: the metadata store does not read it.

use gantry_oci::Digest;
use sqlx::Row;

use crate::{MetaStore, Result};

/// One manifest's latest scan.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ScanRecord {
    pub digest: Digest,
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
        status: row.get(1),
        generation: row.get(2),
        scanned_ms: row.get(3),
        report: row.get(4),
    })
}

impl MetaStore {
    /// Records a scan, replacing the manifest's earlier one unless that one was matched
    /// against a newer database generation (two scans finishing out of order keep the newer).
    pub async fn put_scan_result(&self, scan: &ScanRecord) -> Result<()> {
        let mut tx = self.begin_write().await?;
        sqlx::query(
            "INSERT INTO scan_results (digest, status, generation, scanned_ms, report) \
             VALUES ($1, $2, $3, $4, $5) \
             ON CONFLICT (digest) DO UPDATE SET status = excluded.status, \
             generation = excluded.generation, scanned_ms = excluded.scanned_ms, \
             report = excluded.report WHERE scan_results.generation <= excluded.generation",
        )
        .bind(scan.digest.to_string())
        .bind(&scan.status)
        .bind(scan.generation)
        .bind(scan.scanned_ms)
        .bind(&scan.report)
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(())
    }

    /// The latest scan of each of `digests` that has one, in no particular order.
    pub async fn scan_results(&self, digests: &[Digest]) -> Result<Vec<ScanRecord>> {
        let mut found = Vec::new();
        for chunk in digests.chunks(100) {
            let placeholders: Vec<String> = (1..=chunk.len()).map(|i| format!("${i}")).collect();
            let sql = format!(
                "SELECT digest, status, generation, scanned_ms, report FROM scan_results \
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
        meta.put_scan_result(&scan(&digest, 2, "{\"g\":2}"))
            .await
            .unwrap();
        meta.put_scan_result(&scan(&digest, 1, "{\"g\":1}"))
            .await
            .unwrap();
        assert_eq!(
            meta.scan_results(std::slice::from_ref(&digest))
                .await
                .unwrap(),
            [scan(&digest, 2, "{\"g\":2}")]
        );
        meta.put_scan_result(&scan(&digest, 3, "{\"g\":3}"))
            .await
            .unwrap();
        let other = Digest::sha256_of(b"other");
        assert_eq!(
            meta.scan_results(&[digest.clone(), other]).await.unwrap(),
            [scan(&digest, 3, "{\"g\":3}")]
        );
    }
}
