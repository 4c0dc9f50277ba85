//! Project roles with Harbor's meaning, and what each may do.

use std::fmt;
use std::str::FromStr;

/// Something an identity does to a project or its repositories.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Action {
    Pull,
    Push,
    Delete,
    /// See the project's repositories and tags (catalog, tag lists).
    List,
    ManageTagRules,
    ManageMembers,
    ManageSettings,
}

/// A member's role in a project, weakest last.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize, serde::Deserialize,
)]
#[serde(rename_all = "kebab-case")]
pub enum Role {
    /// Members and settings, and everything a maintainer does.
    ProjectAdmin,
    /// Also delete and tag rules.
    Maintainer,
    /// Push and pull.
    Developer,
    /// Pull.
    Guest,
    /// Pull only, without listing the project's repositories or tags.
    LimitedGuest,
}

impl Role {
    pub const ALL: [Role; 5] = [
        Role::ProjectAdmin,
        Role::Maintainer,
        Role::Developer,
        Role::Guest,
        Role::LimitedGuest,
    ];

    pub fn allows(self, action: Action) -> bool {
        use Action::*;
        match self {
            Role::ProjectAdmin => true,
            Role::Maintainer => matches!(action, Pull | Push | Delete | List | ManageTagRules),
            Role::Developer => matches!(action, Pull | Push | List),
            Role::Guest => matches!(action, Pull | List),
            Role::LimitedGuest => matches!(action, Pull),
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Role::ProjectAdmin => "project-admin",
            Role::Maintainer => "maintainer",
            Role::Developer => "developer",
            Role::Guest => "guest",
            Role::LimitedGuest => "limited-guest",
        }
    }
}

impl fmt::Display for Role {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "unknown role {0:?}: use one of project-admin, maintainer, developer, guest, limited-guest"
)]
pub struct UnknownRole(String);

impl FromStr for Role {
    type Err = UnknownRole;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Role::ALL
            .into_iter()
            .find(|r| r.as_str() == s)
            .ok_or_else(|| UnknownRole(s.to_string()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use Action::*;

    /// The whole matrix, written out so that a change to any cell is a visible test change.
    #[test]
    fn role_matrix_matches_harbor() {
        let expected: [(Role, [bool; 7]); 5] = [
            //                    Pull  Push   Delete List   Rules  Members Settings
            (
                Role::ProjectAdmin,
                [true, true, true, true, true, true, true],
            ),
            (
                Role::Maintainer,
                [true, true, true, true, true, false, false],
            ),
            (
                Role::Developer,
                [true, true, false, true, false, false, false],
            ),
            (Role::Guest, [true, false, false, true, false, false, false]),
            (
                Role::LimitedGuest,
                [true, false, false, false, false, false, false],
            ),
        ];
        let actions = [
            Pull,
            Push,
            Delete,
            List,
            ManageTagRules,
            ManageMembers,
            ManageSettings,
        ];
        for (role, row) in expected {
            for (action, allowed) in actions.iter().zip(row) {
                assert_eq!(role.allows(*action), allowed, "{role} {action:?}");
            }
        }
    }

    #[test]
    fn roles_round_trip_through_their_names() {
        for role in Role::ALL {
            assert_eq!(role.as_str().parse::<Role>().unwrap(), role);
        }
        assert!("admin"
            .parse::<Role>()
            .unwrap_err()
            .to_string()
            .contains("project-admin"));
    }
}
