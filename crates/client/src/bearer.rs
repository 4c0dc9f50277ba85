//! Docker token authentication (the distribution token spec): a registry that answers 401
//! with `WWW-Authenticate: Bearer realm="…",service="…",scope="…"` is asked again with a
//! token from the realm, fetched with the client's Basic credentials (or anonymously).

use std::collections::HashMap;

/// A `Bearer` challenge's parameters.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Challenge {
    pub realm: String,
    pub service: Option<String>,
    pub scope: Option<String>,
}

/// Reads a `WWW-Authenticate` value; `None` unless it is a `Bearer` challenge with a realm.
/// Parameters are `key="value"` (quoted, with `\"` escapes) or `key=token`, comma-separated.
pub(crate) fn parse_challenge(header: &str) -> Option<Challenge> {
    let (scheme, rest) = header.trim().split_once(' ')?;
    if !scheme.eq_ignore_ascii_case("bearer") {
        return None;
    }
    let mut params = HashMap::new();
    let mut chars = rest.chars().peekable();
    loop {
        while chars.peek().is_some_and(|c| *c == ',' || c.is_whitespace()) {
            chars.next();
        }
        let key: String = chars.by_ref().take_while(|c| *c != '=').collect();
        if key.is_empty() {
            break;
        }
        let mut value = String::new();
        if chars.peek() == Some(&'"') {
            chars.next();
            while let Some(c) = chars.next() {
                match c {
                    '\\' => value.extend(chars.next()),
                    '"' => break,
                    c => value.push(c),
                }
            }
        } else {
            while let Some(c) = chars.peek().copied() {
                if c == ',' {
                    break;
                }
                value.push(c);
                chars.next();
            }
        }
        params.insert(key.trim().to_ascii_lowercase(), value.trim().to_string());
    }
    Some(Challenge {
        realm: params.remove("realm").filter(|r| !r.is_empty())?,
        service: params.remove("service"),
        scope: params.remove("scope"),
    })
}

/// The repository a registry URL is about (`team/app` of `…/v2/team/app/blobs/…`), which
/// tokens are kept under; empty for other paths.
pub(crate) fn repository_of(url: &str) -> &str {
    let Some((_, path)) = url.split_once("/v2/") else {
        return "";
    };
    let path = path.split('?').next().unwrap_or(path);
    ["/manifests/", "/blobs/", "/tags/", "/referrers/"]
        .iter()
        .filter_map(|kind| path.rfind(kind).map(|at| &path[..at]))
        .max_by_key(|name| name.len())
        .unwrap_or("")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn docker_hub_challenges_are_read() {
        let c = parse_challenge(
            r#"Bearer realm="https://auth.docker.io/token",service="registry.docker.io",scope="repository:library/nginx:pull""#,
        )
        .unwrap();
        assert_eq!(c.realm, "https://auth.docker.io/token");
        assert_eq!(c.service.as_deref(), Some("registry.docker.io"));
        assert_eq!(c.scope.as_deref(), Some("repository:library/nginx:pull"));
        let bare = parse_challenge("bearer realm=http://h/token , service=x").unwrap();
        assert_eq!((bare.realm.as_str(), bare.scope), ("http://h/token", None));
        assert!(parse_challenge(r#"Basic realm="gantry""#).is_none());
        assert!(parse_challenge("Bearer service=x").is_none());
        assert!(parse_challenge("").is_none());
    }

    #[test]
    fn tokens_are_kept_per_repository() {
        assert_eq!(
            repository_of("http://h/v2/team/app/blobs/sha256:ab"),
            "team/app"
        );
        assert_eq!(repository_of("http://h/v2/a/blobs/uploads/x?digest=1"), "a");
        assert_eq!(
            repository_of("http://h/v2/x/manifests/manifests/v1"),
            "x/manifests"
        );
        assert_eq!(repository_of("http://h/v2/"), "");
    }

    proptest::proptest! {
        #[test]
        fn reading_any_challenge_never_panics(header in "\\PC{0,120}") {
            let _ = parse_challenge(&header);
        }
    }
}
