//! Projects, their members and the audit log, as the REST API reads and changes them. Each
//! method checks that the [`Actor`] may, and every change to projects or members applies to
//! the next request (the cached project facts are dropped) and is audited.

use gantry_auth::{Action, Role};
use gantry_meta::{AuditEvent, AuditQuery, Project};
use serde::Deserialize;

use crate::accounts::Actor;
use crate::limits::{self, within};
use crate::{AccessError, AccessService, Result};

/// A project name is a valid single repository path component.
pub fn valid_project_name(name: &str) -> bool {
    !name.contains('/') && gantry_oci::RepositoryName::parse(name).is_ok()
}

/// A project the caller may pull from.
#[derive(Debug, Clone)]
pub struct VisibleProject {
    pub project: Project,
    /// Whether the caller may also list its repositories and tags.
    pub may_list: bool,
}

/// Which audit entries to read, as `GET /audit` takes it.
#[derive(Debug, Default, Deserialize)]
pub struct AuditFilter {
    /// Only this project's entries.
    pub project: Option<String>,
    /// Entries at or after this Unix second.
    pub since: Option<i64>,
    /// Entries before this Unix second.
    pub until: Option<i64>,
    /// At most this many entries [default: 100].
    pub limit: Option<u32>,
}

impl AccessService {
    /// Refuses unless `actor` may do `action` in `project`, which must exist
    /// ([`AccessError::NotFound`]); `what` completes "… may not … in project …".
    pub async fn require(
        &self,
        actor: &Actor,
        project: &str,
        action: Action,
        what: &str,
    ) -> Result<()> {
        self.require_at(actor, project, None, action, what).await
    }

    /// Refuses unless `actor` may do `action` on repository `repository` (whose project
    /// must exist: [`AccessError::NotFound`]); a robot scoped to one repository may act on
    /// that one only. `what` completes "… may not … in project …".
    pub async fn require_in_repository(
        &self,
        actor: &Actor,
        repository: &str,
        action: Action,
        what: &str,
    ) -> Result<()> {
        let project = crate::project_of(repository);
        self.require_at(actor, project, Some(repository), action, what)
            .await
    }

    async fn require_at(
        &self,
        actor: &Actor,
        project: &str,
        repository: Option<&str>,
        action: Action,
        what: &str,
    ) -> Result<()> {
        if self.meta.project(project).await?.is_none() {
            return Err(AccessError::NotFound(format!(
                "project {project:?} does not exist"
            )));
        }
        if self
            .may(&actor.identity, project, repository, action)
            .await?
        {
            Ok(())
        } else {
            Err(AccessError::Denied(format!(
                "{:?} may not {what} in project {project:?}",
                actor.name()
            )))
        }
    }

    /// The projects `actor` may pull from, each with whether it may also list the project's
    /// repositories (a limited guest may not).
    pub async fn visible_projects(&self, actor: &Actor) -> Result<Vec<VisibleProject>> {
        let mut visible = Vec::new();
        for project in self.meta.projects().await? {
            let may = |action| self.may(&actor.identity, &project.name, None, action);
            if may(Action::Pull).await? {
                let may_list = may(Action::List).await?;
                visible.push(VisibleProject { project, may_list });
            }
        }
        Ok(visible)
    }

    /// Creates a project with `actor` as its project admin (users only, not credentials). A
    /// taken name is `Meta(Conflict)`.
    pub async fn create_project(&self, actor: &Actor, name: &str, public: bool) -> Result<()> {
        actor.require_user("robot accounts and CI tokens cannot create projects")?;
        if !valid_project_name(name) {
            return Err(AccessError::Invalid(format!(
                "project name {name:?} is invalid: use lowercase letters and digits, separated by '.', '_' or '-', at most {} characters",
                gantry_oci::MAX_NAME_LEN
            )));
        }
        self.meta
            .create_project(name, public, Some(actor.name()))
            .await?;
        self.permissions_changed_by(actor, "project.create", name, Some(name))
            .await;
        Ok(())
    }

    /// A project `actor` may pull from.
    pub async fn project(&self, actor: &Actor, name: &str) -> Result<Project> {
        self.require(actor, name, Action::Pull, "see the project")
            .await?;
        self.meta
            .project(name)
            .await?
            .ok_or_else(|| AccessError::NotFound(format!("project {name:?} does not exist")))
    }

    /// Makes a project public or private (its settings managers may).
    pub async fn set_project_public(&self, actor: &Actor, name: &str, public: bool) -> Result<()> {
        self.require(actor, name, Action::ManageSettings, "change settings")
            .await?;
        self.meta.set_project_public(name, public).await?;
        let action = if public {
            "project.public"
        } else {
            "project.private"
        };
        self.permissions_changed_by(actor, action, name, Some(name))
            .await;
        Ok(())
    }

    /// Deletes a project (its settings managers may) with its members, robot accounts, CI
    /// tokens and policies; the audit log stays. `detail` (what a forced delete removed
    /// first) goes into the audit entry. A project that still holds repositories or archived
    /// artifacts is `Meta(Conflict)`.
    pub async fn delete_project(
        &self,
        actor: &Actor,
        name: &str,
        detail: Option<String>,
    ) -> Result<()> {
        self.require(actor, name, Action::ManageSettings, "delete the project")
            .await?;
        let removal = self
            .meta
            .delete_project(name)
            .await?
            .ok_or_else(|| AccessError::NotFound(format!("project {name:?} does not exist")))?;
        for credential in &removal.credentials {
            self.forget(credential).await;
        }
        self.permissions_changed().await;
        self.record_change_detailed(actor, "project.delete", name, Some(name), detail)
            .await;
        Ok(())
    }

    /// The members of a project and their roles, as (user, role) by user name.
    pub async fn members(&self, actor: &Actor, project: &str) -> Result<Vec<(String, String)>> {
        self.require(actor, project, Action::List, "list members")
            .await?;
        Ok(self.meta.members(project).await?)
    }

    /// Gives `user` the role named `role` in `project` (its member managers may).
    pub async fn set_member(
        &self,
        actor: &Actor,
        project: &str,
        user: &str,
        role: &str,
    ) -> Result<Role> {
        self.require(actor, project, Action::ManageMembers, "manage members")
            .await?;
        let role: Role = role
            .parse()
            .map_err(|e: gantry_auth::rbac::UnknownRole| AccessError::Invalid(e.to_string()))?;
        if !self.meta.set_member(project, user, role.as_str()).await? {
            return Err(AccessError::NotFound(format!("no user {user:?}")));
        }
        self.permissions_changed_by(
            actor,
            "member.set",
            &format!("{user}={role}"),
            Some(project),
        )
        .await;
        Ok(role)
    }

    /// Removes `user` from `project` (its member managers may).
    pub async fn remove_member(&self, actor: &Actor, project: &str, user: &str) -> Result<()> {
        self.require(actor, project, Action::ManageMembers, "manage members")
            .await?;
        if !self.meta.remove_member(project, user).await? {
            return Err(AccessError::NotFound(format!(
                "{user:?} is not a member of {project:?}"
            )));
        }
        self.permissions_changed_by(actor, "member.remove", user, Some(project))
            .await;
        Ok(())
    }

    /// The audit log, newest first: all of it for system administrators, a project's for its
    /// member managers. Entries recorded before the call are included.
    pub async fn audit_events(
        &self,
        actor: &Actor,
        filter: &AuditFilter,
    ) -> Result<Vec<AuditEvent>> {
        match &filter.project {
            Some(project) if !actor.is_system_admin() => {
                self.require(actor, project, Action::ManageMembers, "read the audit log")
                    .await?
            }
            _ => actor.require_system_admin("read the whole audit log (give ?project=NAME)")?,
        }
        let limit = within("limit", filter.limit.unwrap_or(100), limits::AUDIT_LIMIT)?;
        for (name, time) in [("since", filter.since), ("until", filter.until)] {
            if let Some(time) = time {
                within(name, time, limits::UNIX_SECS)?;
            }
        }
        self.audit.flush().await;
        Ok(self
            .meta
            .audit(&AuditQuery {
                project: filter.project.as_deref(),
                since: filter.since,
                until: filter.until,
                limit,
            })
            .await?)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn project_names_are_validated() {
        assert!(valid_project_name("team-a"));
        for bad in ["team/a", "Team", "", "..", "a..b", "ａ"] {
            assert!(!valid_project_name(bad), "{bad}");
        }
    }
}
