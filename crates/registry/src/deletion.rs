//! Deleting a whole repository, or everything a project holds, through the same path as
//! every other delete: tag rules are checked for every tag first (one immutable tag refuses
//! the whole deletion, and nothing is deleted), then tags and manifests go one by one through
//! [`Registry::delete_manifest`] (indexes before their children, referrers before their
//! subjects, so an interrupted deletion leaves nothing dangling), then the blob links and
//! upload sessions, so the project's usage falls and garbage collection frees the bytes.

use gantry_lifecycle::reach::Graph;
use gantry_oci::{Digest, Reference, RepositoryName};
use serde::Serialize;

use crate::{parse_reference, Registry, RegistryError, Result};

/// What deleting one repository removed.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct RepositoryDeletion {
    pub repository: String,
    /// Tags removed.
    pub tags: u64,
    /// Manifests removed.
    pub manifests: u64,
    /// Blob links removed (the bytes stay until garbage collection).
    pub blobs: u64,
    /// Upload sessions in progress dropped.
    pub uploads: u64,
    /// Bytes the project's storage usage fell by: what garbage collection frees unless
    /// another project holds the same blobs.
    pub freed_bytes: u64,
}

/// What deleting everything a project holds removed.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct ProjectContentDeletion {
    pub repositories: Vec<RepositoryDeletion>,
    /// Archived artifacts deleted (tarball and record).
    pub archives: u64,
}

/// How a refusal names the operation in a tag rule's message.
const DELETED_WITH_REPOSITORY: &str = "deleted with its repository (nothing was deleted)";

impl Registry {
    /// The project's storage usage in bytes now.
    async fn used_bytes(&self, project: &str) -> Result<i64> {
        Ok(self.meta.quota(project).await?.used.bytes)
    }

    /// Refuses (with the tag and its rule) if a tag rule forbids deleting any tag of the
    /// repositories `names`; deletes nothing.
    async fn check_deletable(&self, project: &str, names: &[String]) -> Result<()> {
        let rules = self.current_tag_rules(project).await?;
        for artifact in self.project_artifacts(project).await? {
            if !names.contains(&artifact.repository) {
                continue;
            }
            for tag in &artifact.tags {
                rules.check_change(project, &tag.name, DELETED_WITH_REPOSITORY)?;
            }
        }
        Ok(())
    }

    /// Deletes repository `name`: every tag, every manifest, its blob links and its upload
    /// sessions, then forgets the repository, so the name starts empty when used again.
    ///
    /// Errors: `NameUnknown` if the repository holds nothing; `TagRule` if a tag rule
    /// protects one of its tags (then nothing is deleted).
    pub async fn delete_repository(
        &self,
        name: &RepositoryName,
        actor: &str,
    ) -> Result<RepositoryDeletion> {
        let repository = name.as_str().to_string();
        let held = self.meta.holding_repositories(name.project()).await?;
        if !held.contains(&repository) {
            return Err(RegistryError::NameUnknown(repository));
        }
        self.check_deletable(name.project(), std::slice::from_ref(&repository))
            .await?;
        self.delete_checked_repository(name, actor).await
    }

    /// Deletes repository `name` whose tags [`Self::check_deletable`] allowed deleting.
    async fn delete_checked_repository(
        &self,
        name: &RepositoryName,
        actor: &str,
    ) -> Result<RepositoryDeletion> {
        let project = name.project();
        let used_before = self.used_bytes(project).await?;
        let mut report = RepositoryDeletion {
            repository: name.as_str().to_string(),
            ..RepositoryDeletion::default()
        };
        let artifacts: Vec<_> = self
            .project_artifacts(project)
            .await?
            .into_iter()
            .filter(|a| a.repository == report.repository)
            .collect();
        for artifact in &artifacts {
            for tag in &artifact.tags {
                match self
                    .delete_manifest(name, &parse_reference(&tag.name)?, actor)
                    .await
                {
                    Ok(()) => report.tags += 1,
                    Err(RegistryError::ManifestUnknown(_)) => {}
                    Err(e) => return Err(e),
                }
            }
        }
        let graph = Graph::new(&artifacts);
        let keys: Vec<(&str, &str)> = artifacts
            .iter()
            .map(|a| (a.repository.as_str(), a.digest.as_str()))
            .collect();
        for (_, digest) in graph.parents_first(&keys) {
            let digest: Digest = digest.parse()?;
            match self
                .delete_manifest(name, &Reference::Digest(digest), actor)
                .await
            {
                Ok(()) => report.manifests += 1,
                Err(RegistryError::ManifestUnknown(_)) => {}
                Err(e) => return Err(e),
            }
        }
        for digest in self.meta.repository_links(name.as_str()).await? {
            match self.delete_blob(name, &digest.parse()?).await {
                Ok(()) => report.blobs += 1,
                Err(RegistryError::BlobUnknown(_)) => {}
                Err(e) => return Err(e),
            }
        }
        for id in self.meta.repository_uploads(name.as_str()).await? {
            match self.cancel_upload(name, &id).await {
                Ok(()) => report.uploads += 1,
                Err(RegistryError::UploadUnknown(_)) => {}
                Err(e) => return Err(e),
            }
        }
        // A push into the name meanwhile keeps the row (it holds something again).
        self.meta.forget_repository_if_empty(name.as_str()).await?;
        let used_after = self.used_bytes(project).await?;
        report.freed_bytes = (used_before - used_after).max(0) as u64;
        Ok(report)
    }

    /// Deletes every repository of `project` and its archived artifacts (for a forced
    /// project delete). Tag rules still apply: one immutable tag anywhere in the project
    /// refuses the whole deletion before anything is deleted.
    pub async fn delete_project_content(
        &self,
        project: &str,
        actor: &str,
    ) -> Result<ProjectContentDeletion> {
        let names = self.meta.holding_repositories(project).await?;
        self.check_deletable(project, &names).await?;
        let mut report = ProjectContentDeletion::default();
        for name in &names {
            let name = crate::parse_name(name)?;
            report
                .repositories
                .push(self.delete_checked_repository(&name, actor).await?);
        }
        for archive in self.meta.archives(project).await? {
            if archive.restored_at.is_some() {
                continue;
            }
            self.delete_archive(project, archive.id).await?;
            report.archives += 1;
        }
        Ok(report)
    }

    /// Drops what this server caches about `project` (its tag rules), after it was deleted,
    /// so a project created with the same name starts with none.
    pub fn forget_project(&self, project: &str) {
        self.tag_policy.forget(project);
    }
}
