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
            let entry = pending.entry(key).or_insert((0, at));
            entry.0 += 1;
            entry.1 = entry.1.max(at);
        }
    }

    /// Writes what was counted since the last flush.
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
        if !batch.is_empty() {
            meta.record_pulls(&batch).await?;
        }
        Ok(())
    }
}
