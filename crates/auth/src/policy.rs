//! The access decision: may this identity perform this action in this project? Every /v2 and
//! API check asks here, so the rules live in one place with one matrix test.

use std::collections::BTreeSet;

use crate::{Action, Role};

/// Who is asking.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Identity {
    Anonymous,
    User {
        name: String,
        system_admin: bool,
    },
    /// A robot account or a short-lived CI credential: explicit actions on one project (or on
    /// every project when `project` is `None`), optionally on one repository only, never more.
    /// Pulling implies listing what may be pulled.
    Scoped {
        name: String,
        project: Option<String>,
        repository: Option<String>,
        actions: BTreeSet<Action>,
    },
}

impl Identity {
    /// The name audit records and tokens carry; empty for anonymous callers.
    pub fn name(&self) -> &str {
        match self {
            Identity::Anonymous => "",
            Identity::User { name, .. } | Identity::Scoped { name, .. } => name,
        }
    }
}

/// What an action is done to: a project, or one repository in it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Target<'a> {
    pub project: &'a str,
    /// `None` for project-wide actions (members, settings).
    pub repository: Option<&'a str>,
}

/// What the decision needs to know about the project.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ProjectAccess {
    pub public: bool,
    /// The asking user's role in the project, if a member.
    pub role: Option<Role>,
}

/// Whether `identity` may perform `action` on `target`, in a project described by `project`.
pub fn allows(identity: &Identity, target: Target, project: ProjectAccess, action: Action) -> bool {
    let public_read = project.public && matches!(action, Action::Pull | Action::List);
    match identity {
        Identity::Anonymous => public_read,
        Identity::User {
            system_admin: true, ..
        } => true,
        Identity::User { .. } => public_read || project.role.is_some_and(|r| r.allows(action)),
        Identity::Scoped {
            project: scoped_project,
            repository: scoped_repository,
            actions,
            ..
        } => {
            let in_scope = scoped_project
                .as_deref()
                .is_none_or(|p| p == target.project)
                && scoped_repository
                    .as_deref()
                    .is_none_or(|r| Some(r) == target.repository);
            let granted = actions.contains(&action)
                || (action == Action::List && actions.contains(&Action::Pull));
            public_read || (in_scope && granted)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use Action::*;

    const ACTIONS: [Action; 7] = [
        Pull,
        Push,
        Delete,
        List,
        ManageTagRules,
        ManageMembers,
        ManageSettings,
    ];

    fn user(admin: bool) -> Identity {
        Identity::User {
            name: "u".into(),
            system_admin: admin,
        }
    }

    fn allowed_set(identity: &Identity, project: &str, access: ProjectAccess) -> Vec<Action> {
        let target = Target {
            project,
            repository: Some("team-a/app"),
        };
        ACTIONS
            .into_iter()
            .filter(|a| allows(identity, target, access, *a))
            .collect()
    }

    #[test]
    fn anonymous_reads_public_projects_only() {
        let public = ProjectAccess {
            public: true,
            role: None,
        };
        let private = ProjectAccess {
            public: false,
            role: None,
        };
        assert_eq!(allowed_set(&Identity::Anonymous, "p", public), [Pull, List]);
        assert!(allowed_set(&Identity::Anonymous, "p", private).is_empty());
    }

    #[test]
    fn users_get_their_role_plus_public_reads_and_admins_everything() {
        for public in [false, true] {
            assert!(
                allowed_set(&user(false), "p", ProjectAccess { public, role: None })
                    == if public { vec![Pull, List] } else { vec![] }
            );
            assert_eq!(
                allowed_set(&user(true), "p", ProjectAccess { public, role: None }),
                ACTIONS
            );
            for role in Role::ALL {
                let got = allowed_set(
                    &user(false),
                    "p",
                    ProjectAccess {
                        public,
                        role: Some(role),
                    },
                );
                let mut want: Vec<Action> =
                    ACTIONS.into_iter().filter(|a| role.allows(*a)).collect();
                if public && !want.contains(&List) {
                    want.push(List); // a public project can be listed by anyone
                    want.sort();
                }
                assert_eq!(got, want, "{role} public={public}");
            }
        }
    }

    #[test]
    fn scoped_credentials_never_exceed_their_project_and_actions() {
        let ci = Identity::Scoped {
            name: "ci".into(),
            project: Some("team-a".into()),
            repository: None,
            actions: [Pull, Push].into(),
        };
        let private = ProjectAccess {
            public: false,
            role: Some(Role::ProjectAdmin),
        };
        assert_eq!(allowed_set(&ci, "team-a", private), [Pull, Push, List]);
        // A token for project A is nothing in project B, whatever role data says.
        assert!(allowed_set(&ci, "team-b", private).is_empty());
        let system_robot = Identity::Scoped {
            name: "mirror".into(),
            project: None,
            repository: None,
            actions: [Pull].into(),
        };
        assert_eq!(
            allowed_set(&system_robot, "anything", private),
            [Pull, List]
        );
    }

    #[test]
    fn repository_scoped_credentials_reach_that_repository_only() {
        let ci = Identity::Scoped {
            name: "ci".into(),
            project: Some("team-a".into()),
            repository: Some("team-a/app".into()),
            actions: [Push].into(),
        };
        let private = ProjectAccess {
            public: false,
            role: None,
        };
        let repo = |r| Target {
            project: "team-a",
            repository: Some(r),
        };
        assert!(allows(&ci, repo("team-a/app"), private, Push));
        assert!(!allows(&ci, repo("team-a/app"), private, Pull));
        assert!(!allows(&ci, repo("team-a/other"), private, Push));
        let project_wide = Target {
            project: "team-a",
            repository: None,
        };
        assert!(!allows(&ci, project_wide, private, Push));
    }
}
