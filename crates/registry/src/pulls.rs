//! Pull tracking without a database write per request: pulls are counted in memory and
//! flushed in one transaction every few seconds (and at shutdown). A crash loses at most the
//! counts since the last flush; nothing else depends on them being exact to the second.

use std::collections::HashMap;

use gantry_meta::{MetaStore, PullDelta};
use parking_lot::Mutex;

use crate::Result;

/// (repository, digest or None, tag or None)
type Key = (String, Option<String>, Option<String>);

#[derive(Default)]
pub struct PullTracker {
    pending: Mutex<HashMap<Key, (i64, i64)>>,
}

impl PullTracker {
    /// Counts one access: by digest (`count` = a real pull) and/or by tag.
    pub fn note(&self, repository: &str, digest: Option<&str>, tag: Option<&str>, at: i64) {
        let mut pending = self.pending.lock();
        for key in [
            digest.map(|d| (repository.to_string(), Some(d.to_string()), None)),
            tag.map(|t| (repository.to_string(), None, Some(t.to_string()))),
        ]
        .into_iter()
        .flatten()
        {
            add(&mut pending, key, 1, at);
        }
    }

    /// Writes what was counted since the last flush. When the write fails the counts are kept
    /// for the next flush, merged with what was counted meanwhile.
    pub async fn flush(&self, meta: &MetaStore) -> Result<()> {
        let batch: Vec<PullDelta> = self
            .pending
            .lock()
            .drain()
            .map(
                |((repository, digest, tag), (count, last_pulled_at))| PullDelta {
                    repository,
                    digest,
                    tag,
                    count,
                    last_pulled_at,
                },
            )
            .collect();
        if batch.is_empty() {
            return Ok(());
        }
        if let Err(e) = meta.record_pulls(&batch).await {
            let mut pending = self.pending.lock();
            for delta in batch {
                let key = (delta.repository, delta.digest, delta.tag);
                add(&mut pending, key, delta.count, delta.last_pulled_at);
            }
            return Err(e.into());
        }
        Ok(())
    }
}

/// Adds `count` accesses, the last at `at` (Unix ms), to `key`'s pending counts.
fn add(pending: &mut HashMap<Key, (i64, i64)>, key: Key, count: i64, at: i64) {
    let entry = pending.entry(key).or_insert((0, at));
    entry.0 += count;
    entry.1 = entry.1.max(at);
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Regression: a flush took the counts out of memory before writing them, so a failed
    /// write (the store unreachable for a moment) lost them.
    #[tokio::test]
    async fn counts_whose_write_failed_are_kept_for_the_next_flush() {
        let (_dir, _, meta) = gantry_meta::testing::fresh_store().await;
        let tracker = PullTracker::default();
        tracker.note("p/app", Some("sha256:aa"), Some("v1"), 1_000);
        tracker.note("p/app", Some("sha256:aa"), None, 2_000);
        meta.close().await;
        assert!(tracker.flush(&meta).await.is_err());
        tracker.note("p/app", Some("sha256:aa"), None, 3_000);
        let pending = tracker.pending.lock().clone();
        let by_digest = ("p/app".to_string(), Some("sha256:aa".to_string()), None);
        let by_tag = ("p/app".to_string(), None, Some("v1".to_string()));
        assert_eq!(pending.get(&by_digest), Some(&(3, 3_000)));
        assert_eq!(pending.get(&by_tag), Some(&(1, 1_000)));
    }
}
