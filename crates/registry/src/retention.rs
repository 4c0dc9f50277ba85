//! Running a project's retention policy: load it, evaluate it over the project's artifacts at
//! `now`, and (unless it is a dry run) delete what the plan says, through the same tag rules
//! as any delete: an immutable tag is never removed by retention, it is reported instead.

use gantry_lifecycle::retention::{self, Artifact, Plan, Policy, TagInfo};
use gantry_meta::RetentionRun;
use gantry_oci::{Digest, Reference};
use serde::Serialize;

use crate::{parse_name, parse_reference, Registry, RegistryError, Result};

#[derive(Debug, Clone, Serialize)]
pub struct RetentionReport {
    pub dry_run: bool,
    pub at: i64,
    #[serde(flatten)]
    pub plan: Plan,
    /// (repository, tag) the plan would delete but the tag rules protect.
    pub protected: Vec<(String, String)>,
}

/// The actor scheduled runs are recorded as.
const SCHEDULER: &str = "scheduler";

fn corrupt(what: String) -> RegistryError {
    RegistryError::Meta(gantry_meta::MetaError::Corrupt(what))
}

impl Registry {
    pub async fn retention_policy(&self, project: &str) -> Result<Option<Policy>> {
        match self.meta.retention_policy(project).await? {
            Some(json) => serde_json::from_str(&json)
                .map(Some)
                .map_err(|e| corrupt(format!("retention policy of {project}: {e}"))),
            None => Ok(None),
        }
    }

    pub async fn set_retention_policy(&self, project: &str, policy: &Policy) -> Result<()> {
        let json = serde_json::to_string(policy).expect("policies serialize");
        Ok(self.meta.set_retention_policy(project, &json).await?)
    }

    /// Runs every policy whose schedule fires in `(after, until]`, as of `until`; returns the
    /// projects run, each with its outcome.
    pub async fn run_scheduled_retention(
        &self,
        after: i64,
        until: i64,
    ) -> Result<Vec<(String, Result<RetentionReport>)>> {
        let mut outcomes = Vec::new();
        for (project, json) in self.meta.retention_policies().await? {
            let policy: Policy = match serde_json::from_str(&json) {
                Ok(policy) => policy,
                Err(e) => {
                    tracing::warn!(project, error = %e, "stored retention policy is unreadable");
                    continue;
                }
            };
            if policy
                .schedule
                .as_ref()
                .is_some_and(|s| s.fires_between(after, until))
            {
                let outcome = self.run_retention(&project, SCHEDULER, until, false).await;
                outcomes.push((project, outcome));
            }
        }
        Ok(outcomes)
    }

    /// Every manifest of `project` as the lifecycle policies see it.
    pub(crate) async fn project_artifacts(&self, project: &str) -> Result<Vec<Artifact>> {
        Ok(self
            .meta
            .artifacts(project)
            .await?
            .into_iter()
            .map(|a| Artifact {
                tags: a
                    .tags
                    .into_iter()
                    .map(|t| TagInfo {
                        name: t.name,
                        pushed_at: t.pushed_at,
                        last_pulled_at: t.last_pulled_at,
                    })
                    .collect(),
                repository: a.repository,
                digest: a.digest,
                pushed_at: a.pushed_at,
                last_pulled_at: a.last_pulled_at,
                subject: a.subject,
                size: a.size.max(0) as u64,
                blobs: a
                    .blobs
                    .into_iter()
                    .map(|(d, s)| (d, s.max(0) as u64))
                    .collect(),
            })
            .collect())
    }

    /// Evaluates (and unless `dry_run`, applies) the project's policy at `now`.
    pub async fn run_retention(
        &self,
        project: &str,
        actor: &str,
        now: i64,
        dry_run: bool,
    ) -> Result<RetentionReport> {
        let policy = self.retention_policy(project).await?.unwrap_or_default();
        // Pulls counted in memory must be seen by "pulled within" rules.
        self.flush_pulls().await?;
        let artifacts = self.project_artifacts(project).await?;
        let plan = retention::evaluate(&policy, &artifacts, now);
        let rules = self.tag_rules(project).await?;
        let protected: Vec<(String, String)> = plan
            .delete_tags
            .iter()
            .filter(|(_, tag)| rules.immutable_pattern(tag).is_some())
            .cloned()
            .collect();
        if !dry_run {
            self.apply(&plan, &protected).await?;
        }
        let run = RetentionRun {
            at: now,
            actor: actor.to_string(),
            dry_run,
            deleted_tags: (plan.delete_tags.len() - protected.len()) as i64,
            deleted_manifests: plan.delete_manifests.len() as i64,
            freed_bytes: plan.freed_bytes as i64,
        };
        self.meta.record_retention_run(project, &run).await?;
        Ok(RetentionReport {
            dry_run,
            at: now,
            plan,
            protected,
        })
    }

    /// Deletes the plan's tags, then its manifests (a manifest one of whose tags is protected
    /// stays, with that tag).
    async fn apply(&self, plan: &Plan, protected: &[(String, String)]) -> Result<()> {
        for (repo, tag) in &plan.delete_tags {
            if protected.contains(&(repo.clone(), tag.clone())) {
                continue;
            }
            let name = parse_name(repo)?;
            let tag = parse_reference(tag)?;
            match self.delete_manifest(&name, &tag).await {
                Ok(()) | Err(RegistryError::ManifestUnknown(_)) => {}
                Err(e) => return Err(e),
            }
        }
        for (repo, digest) in &plan.delete_manifests {
            let name = parse_name(repo)?;
            let digest: Digest = digest.parse()?;
            if !self.meta.tags_of(repo, &digest).await?.is_empty() {
                continue; // kept by a protected tag
            }
            match self
                .delete_manifest(&name, &Reference::Digest(digest))
                .await
            {
                Ok(()) | Err(RegistryError::ManifestUnknown(_)) => {}
                Err(e) => return Err(e),
            }
        }
        Ok(())
    }
}
