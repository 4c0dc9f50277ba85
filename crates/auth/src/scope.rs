//! Scopes of the Docker token spec: `repository:team-a/app:pull,push`, `registry:catalog:*`.
//! A token grants the intersection of what was asked and what the identity may do.

use std::collections::BTreeSet;
use std::fmt;

use gantry_oci::RepositoryName;

use crate::Action;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ScopeError {
    #[error("malformed scope {0:?}: expected <type>:<name>:<action>[,<action>], e.g. repository:team-a/app:pull,push")]
    Malformed(String),
    #[error("scope {0:?} names an invalid repository")]
    Repository(String),
}

/// What a scope is about.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Resource {
    Repository(RepositoryName),
    /// `registry:catalog:*`, the repository listing.
    Catalog,
    /// A type or name Gantry does not grant anything on (kept so that it can be refused
    /// explicitly rather than failing the whole token request, as distribution does).
    Other {
        kind: String,
        name: String,
    },
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Scope {
    pub resource: Resource,
    /// Known actions only (`pull`, `push`, `delete`, `*`), sorted.
    pub actions: BTreeSet<String>,
}

const KNOWN_ACTIONS: [&str; 4] = ["pull", "push", "delete", "*"];

impl Scope {
    /// Parses one scope. The resource name may itself contain ':' (a registry host with a
    /// port), so the type ends at the first ':' and the actions start after the last.
    pub fn parse(s: &str) -> Result<Scope, ScopeError> {
        let malformed = || ScopeError::Malformed(s.chars().take(200).collect());
        let (kind, rest) = s.split_once(':').ok_or_else(malformed)?;
        let (name, actions) = rest.rsplit_once(':').ok_or_else(malformed)?;
        if kind.is_empty() || name.is_empty() {
            return Err(malformed());
        }
        // `repository(plugin)` is the spec's resource class syntax; the class changes nothing here.
        let base_kind = kind.split('(').next().unwrap_or(kind);
        let resource = match (base_kind, name) {
            ("repository", name) => Resource::Repository(
                RepositoryName::parse(name)
                    .map_err(|_| ScopeError::Repository(s.chars().take(200).collect()))?,
            ),
            ("registry", "catalog") => Resource::Catalog,
            (kind, name) => Resource::Other {
                kind: kind.to_string(),
                name: name.to_string(),
            },
        };
        let actions = actions
            .split(',')
            .map(str::trim)
            .filter(|a| KNOWN_ACTIONS.contains(a))
            .map(str::to_string)
            .collect();
        Ok(Scope { resource, actions })
    }

    /// Parses the scopes of a token request: repeated `scope` parameters, each of which may
    /// hold several space-separated scopes (containerd's OAuth2 form does that).
    pub fn parse_all<'a>(
        values: impl IntoIterator<Item = &'a str>,
    ) -> Result<Vec<Scope>, ScopeError> {
        values
            .into_iter()
            .flat_map(str::split_whitespace)
            .map(Scope::parse)
            .collect()
    }

    /// The registry actions a token action stands for (`*` is all of them).
    fn registry_actions(action: &str) -> &'static [Action] {
        match action {
            "pull" => &[Action::Pull],
            "push" => &[Action::Push],
            "delete" => &[Action::Delete],
            "*" => &[Action::Pull, Action::Push, Action::Delete],
            _ => &[],
        }
    }

    /// This scope narrowed to the actions `may` allows on its resource. An action is kept
    /// only if every registry action it stands for is allowed.
    pub fn granted(&self, may: impl Fn(&Resource, Action) -> bool) -> Scope {
        let actions = self
            .actions
            .iter()
            .filter(|a| {
                let needed = Scope::registry_actions(a);
                !needed.is_empty() && needed.iter().all(|action| may(&self.resource, *action))
            })
            .cloned()
            .collect();
        Scope {
            resource: self.resource.clone(),
            actions,
        }
    }

    /// The token spec's (type, name) pair.
    pub fn type_and_name(&self) -> (&str, &str) {
        match &self.resource {
            Resource::Repository(name) => ("repository", name.as_str()),
            Resource::Catalog => ("registry", "catalog"),
            Resource::Other { kind, name } => (kind, name),
        }
    }
}

impl fmt::Display for Scope {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let (kind, name) = self.type_and_name();
        let actions: Vec<&str> = self.actions.iter().map(String::as_str).collect();
        write!(f, "{kind}:{name}:{}", actions.join(","))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_the_forms_clients_send() {
        let s = Scope::parse("repository:team-a/app:pull,push").unwrap();
        assert_eq!(
            s.resource,
            Resource::Repository(RepositoryName::parse("team-a/app").unwrap())
        );
        assert_eq!(s.actions.iter().collect::<Vec<_>>(), ["pull", "push"]);
        assert_eq!(s.to_string(), "repository:team-a/app:pull,push");
        assert_eq!(
            Scope::parse("registry:catalog:*").unwrap().resource,
            Resource::Catalog
        );
        let plugin = Scope::parse("repository(plugin):a/b:pull").unwrap();
        assert!(matches!(plugin.resource, Resource::Repository(_)));
        // Unknown actions are dropped, not fatal.
        assert_eq!(
            Scope::parse("repository:a:pull,fly").unwrap().actions.len(),
            1
        );
    }

    #[test]
    fn containerd_sends_several_scopes_in_one_field() {
        let all = Scope::parse_all([
            "repository:a/x:pull repository:b/y:pull,push",
            "repository:c:pull",
        ])
        .unwrap();
        assert_eq!(all.len(), 3);
        assert_eq!(all[1].to_string(), "repository:b/y:pull,push");
    }

    #[test]
    fn refuses_malformed_and_traversing_scopes() {
        for bad in [
            "",
            "repository",
            "repository:a",
            ":a:pull",
            "repository::pull",
            "repository:../etc:pull",
            "repository:A:pull",
        ] {
            assert!(Scope::parse(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn grant_is_the_intersection_with_what_is_allowed() {
        let asked = Scope::parse("repository:team-a/app:pull,push,delete").unwrap();
        let developer = |_: &Resource, a: Action| crate::Role::Developer.allows(a);
        assert_eq!(
            asked.granted(developer).to_string(),
            "repository:team-a/app:pull,push"
        );
        let nothing = |_: &Resource, _: Action| false;
        assert!(asked.granted(nothing).actions.is_empty());
        // `*` needs every action it stands for.
        let star = Scope::parse("repository:team-a/app:*").unwrap();
        assert!(star.granted(developer).actions.is_empty());
        let admin = |_: &Resource, a: Action| crate::Role::ProjectAdmin.allows(a);
        assert_eq!(star.granted(admin).to_string(), "repository:team-a/app:*");
    }
}
