//! The tag-rules step of a push or delete: which rules apply to a project (read from the
//! metadata store, cached for two seconds for pushes, dropped at once when changed through this
//! server, read afresh for deletes) and what they say about a tag.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use gantry_lifecycle::TagRules;
use gantry_meta::MetaStore;
use parking_lot::Mutex;

use crate::{RegistryError, Result};

/// How long another replica may apply rules that were just changed.
const RULES_TTL: Duration = Duration::from_secs(2);
/// Projects remembered at most; the cache is emptied when full.
const CACHE_LIMIT: usize = 10_000;

#[derive(Default)]
pub struct TagPolicy {
    cache: Mutex<HashMap<String, (TagRules, Instant)>>,
}

impl TagPolicy {
    /// The project's rules, as read within the last `RULES_TTL` (pushes: an immutable tag's
    /// move is checked again inside the manifest transaction).
    pub async fn rules(&self, meta: &MetaStore, project: &str) -> Result<TagRules> {
        if let Some((rules, at)) = self.cache.lock().get(project) {
            if at.elapsed() < RULES_TTL {
                return Ok(rules.clone());
            }
        }
        self.current(meta, project).await
    }

    /// The project's rules read from the database now, for what deletes tags: a rule made
    /// immutable through another replica a moment ago must already hold.
    pub async fn current(&self, meta: &MetaStore, project: &str) -> Result<TagRules> {
        let rules = match meta.tag_rules(project).await? {
            Some(json) => serde_json::from_str(&json).map_err(|e| {
                RegistryError::Meta(gantry_meta::MetaError::Corrupt(format!(
                    "tag rules of {project}: {e}"
                )))
            })?,
            None => TagRules::default(),
        };
        let mut cache = self.cache.lock();
        if cache.len() >= CACHE_LIMIT {
            cache.clear();
        }
        cache.insert(project.to_string(), (rules.clone(), Instant::now()));
        Ok(rules)
    }

    pub async fn set(&self, meta: &MetaStore, project: &str, rules: &TagRules) -> Result<()> {
        let json = serde_json::to_string(rules).expect("tag rules serialize");
        meta.set_tag_rules(project, &json).await?;
        self.cache.lock().remove(project);
        Ok(())
    }

    /// Drops the cached rules of `project` (deleted, so its rules are gone).
    pub fn forget(&self, project: &str) {
        self.cache.lock().remove(project);
    }
}
