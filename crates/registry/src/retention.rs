//! Running a project's retention policy: load it and the project's tag rules, evaluate them
//! over the project's artifacts at `now` into one plan (immutable tags are protected in the
//! plan itself), and unless it is a dry run, execute exactly that plan. The dry run, the real
//! run's report and the history row are that one plan rendered three ways.

use gantry_lifecycle::retention::{self, Artifact, Plan, Policy, TagInfo};
use gantry_meta::RetentionRun;
use gantry_metrics::Job;
use gantry_oci::{Digest, Reference};
use serde::Serialize;

use crate::{parse_name, parse_reference, Registry, RegistryError, Result};

/// One retention run: the plan (what goes, each with its reason; what stays and why; what
/// tag rules protect), executed unless `dry_run`.
#[derive(Debug, Clone, Serialize)]
pub struct RetentionReport {
    pub dry_run: bool,
    pub at: i64,
    #[serde(flatten)]
    pub plan: Plan,
}

/// The actor scheduled runs are recorded as.
pub(crate) const SCHEDULER: &str = gantry_meta::SCHEDULER_ACTOR;

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

    /// A project's last `limit` retention runs, newest first.
    pub async fn retention_runs(&self, project: &str, limit: u32) -> Result<Vec<RetentionRun>> {
        Ok(self.meta.retention_runs(project, limit).await?)
    }

    pub async fn set_retention_policy(&self, project: &str, policy: &Policy) -> Result<()> {
        let json = serde_json::to_string(policy).expect("policies serialize");
        Ok(self.meta.set_retention_policy(project, &json).await?)
    }

    /// Every project's retention policy (one that cannot be read is logged and left out).
    pub(crate) async fn retention_policies(&self) -> Result<Vec<(String, Policy)>> {
        let mut policies = Vec::new();
        for (project, json) in self.meta.retention_policies().await? {
            match serde_json::from_str(&json) {
                Ok(policy) => policies.push((project, policy)),
                Err(e) => {
                    tracing::warn!(project, error = %e, "stored retention policy is unreadable")
                }
            }
        }
        Ok(policies)
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
                        pushed_at_us: t.pushed_at_us,
                        last_pulled_at: t.last_pulled_at,
                    })
                    .collect(),
                buildkit_cache: a.artifact_type.as_deref()
                    == Some(gantry_oci::media_type::BUILDKIT_CACHE_CONFIG),
                repository: a.repository,
                digest: a.digest,
                pushed_at_us: a.pushed_at_us,
                last_pulled_at: a.last_pulled_at,
                subject: a.subject,
                children: a.children,
                size: a.size.max(0) as u64,
                blobs: a
                    .blobs
                    .into_iter()
                    .map(|(d, s)| (d, s.max(0) as u64))
                    .collect(),
            })
            .collect())
    }

    /// Evaluates (and unless `dry_run`, executes) the project's policy at `now`; records the
    /// run in the history with the plan's numbers.
    pub async fn run_retention(
        &self,
        project: &str,
        actor: &str,
        now: i64,
        dry_run: bool,
    ) -> Result<RetentionReport> {
        let freed = |report: &RetentionReport| {
            if report.dry_run {
                0
            } else {
                report.plan.freed_bytes
            }
        };
        let run = self.plan_and_run_retention(project, actor, now, dry_run);
        self.timed_job(Job::Retention, freed, run).await
    }

    async fn plan_and_run_retention(
        &self,
        project: &str,
        actor: &str,
        now: i64,
        dry_run: bool,
    ) -> Result<RetentionReport> {
        let policy = self.retention_policy(project).await?.unwrap_or_default();
        // Pulls counted in memory must be seen by "pulled within" rules.
        self.flush_pulls().await?;
        let artifacts = tag_scheme_as_referrers(self.project_artifacts(project).await?);
        let rules = self.current_tag_rules(project).await?;
        let plan = retention::evaluate(&policy, &rules, &artifacts, now);
        if !dry_run {
            self.execute(&plan, actor).await?;
        }
        let run = RetentionRun {
            at: now,
            actor: actor.to_string(),
            dry_run,
            deleted_tags: plan.delete_tags.len() as i64,
            deleted_manifests: plan.delete_manifests.len() as i64,
            freed_bytes: plan.freed_bytes as i64,
        };
        self.meta.record_retention_run(project, &run).await?;
        Ok(RetentionReport {
            dry_run,
            at: now,
            plan,
        })
    }

    /// Deletes exactly the plan's tags, then its manifests (indexes before their children),
    /// through the same checks as any delete. Something already gone counts as done. If the
    /// project changed since the plan was made (a tag rule now refuses, or a manifest to delete
    /// was tagged meanwhile) the run stops there with an error, deleting nothing unplanned.
    async fn execute(&self, plan: &Plan, actor: &str) -> Result<()> {
        for t in &plan.delete_tags {
            let name = parse_name(&t.repository)?;
            let tag = parse_reference(&t.tag)?;
            match self.delete_manifest(&name, &tag, actor).await {
                Ok(()) | Err(RegistryError::ManifestUnknown(_)) => {}
                Err(e) => return Err(e),
            }
        }
        for m in &plan.delete_manifests {
            let name = parse_name(&m.repository)?;
            let digest: Digest = m.digest.parse()?;
            // A tag-scheme signature's own tag goes with it (see tag_scheme_as_referrers).
            let tags: Vec<String> = self
                .meta
                .tags_of(&m.repository, &digest)
                .await?
                .into_iter()
                .filter(|t| gantry_signing::cosign::tag_subject(t).is_none())
                .collect();
            if !tags.is_empty() {
                return Err(RegistryError::Meta(gantry_meta::MetaError::Conflict(
                    format!(
                    "retention stopped: {}@{} was tagged {} after the plan was made; run it again",
                    m.repository,
                    m.digest,
                    tags.join(", ")
                ),
                )));
            }
            match self
                .delete_manifest(&name, &Reference::Digest(digest), actor)
                .await
            {
                Ok(()) | Err(RegistryError::ManifestUnknown(_)) => {}
                Err(e) => return Err(e),
            }
        }
        Ok(())
    }
}

/// Artifacts under referrer tags (cosign's `sha256-<hex>.sig`, `.att`, `.sbom`, and the
/// referrers fallback tag `sha256-<hex>`) as the referrers they are: their tags are not versions for rules to count (a rule keeping the newest tag kept the
/// newest signature and deleted the image it signs), and they stay and go with the manifest
/// their tags name, keeping their tags while they stay.
pub(crate) fn tag_scheme_as_referrers(mut artifacts: Vec<Artifact>) -> Vec<Artifact> {
    for artifact in &mut artifacts {
        if artifact.subject.is_some() || artifact.tags.is_empty() {
            continue;
        }
        let subjects: Vec<Option<String>> = artifact
            .tags
            .iter()
            .map(|t| gantry_signing::cosign::tag_subject(&t.name))
            .collect();
        if let Some(Some(subject)) = subjects.first() {
            if subjects.iter().all(|s| s.as_ref() == Some(subject)) {
                artifact.subject = Some(subject.clone());
                artifact.tags.clear();
            }
        }
    }
    artifacts
}
