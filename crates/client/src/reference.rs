//! Image references as users type them: `127.0.0.1:5000/team/app:v1` or `…/app@sha256:…`.

use std::fmt;

use gantry_oci::{Digest, RepositoryName, Tag};

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid image reference {input:?}: {reason}; write it as REGISTRY/REPOSITORY[:TAG|@DIGEST], e.g. 127.0.0.1:5000/team/app:v1.2.0")]
pub struct RefError {
    input: String,
    reason: String,
}

/// Whether `host[:port]` is this machine (`localhost`, `127.x.y.z`, `[::1]`): such registries
/// may speak plain HTTP, as docker allows.
pub fn is_loopback(registry: &str) -> bool {
    let host = match registry.rsplit_once(':') {
        Some((host, port)) if port.bytes().all(|b| b.is_ascii_digit()) => host,
        _ => registry,
    };
    matches!(host, "localhost" | "[::1]") || host.starts_with("127.")
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ImageRef {
    /// `host[:port]`
    pub registry: String,
    pub repository: RepositoryName,
    /// A tag or a digest string; `latest` when the user gave neither.
    pub reference: String,
}

impl ImageRef {
    pub fn parse(input: &str) -> Result<ImageRef, RefError> {
        let fail = |reason: &str| RefError {
            input: input.to_string(),
            reason: reason.to_string(),
        };
        let (registry, rest) = input
            .split_once('/')
            .ok_or_else(|| fail("no registry host"))?;
        let looks_like_host =
            registry.contains('.') || registry.contains(':') || registry == "localhost";
        if !looks_like_host {
            return Err(fail("the first component must be a registry host such as 127.0.0.1:5000 or registry.example.com"));
        }
        let (name, reference) = if let Some((name, digest)) = rest.split_once('@') {
            digest.parse::<Digest>().map_err(|e| fail(&e.to_string()))?;
            (name, digest.to_string())
        } else {
            match rest.rsplit_once(':') {
                Some((name, tag)) if !tag.contains('/') => {
                    Tag::parse(tag).map_err(|e| fail(&e.to_string()))?;
                    (name, tag.to_string())
                }
                _ => (rest, "latest".to_string()),
            }
        };
        let repository = RepositoryName::parse(name).map_err(|e| fail(&e.to_string()))?;
        Ok(ImageRef {
            registry: registry.to_string(),
            repository,
            reference,
        })
    }

    /// Whether the registry is on this machine (see [`is_loopback`]).
    pub fn is_loopback(&self) -> bool {
        is_loopback(&self.registry)
    }

    /// The tag, when the reference is one.
    pub fn tag(&self) -> Option<&str> {
        (!self.reference.contains(':')).then_some(self.reference.as_str())
    }
}

impl fmt::Display for ImageRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let sep = if self.tag().is_some() { ':' } else { '@' };
        write!(
            f,
            "{}/{}{sep}{}",
            self.registry, self.repository, self.reference
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_common_forms() {
        let r = ImageRef::parse("127.0.0.1:5000/team/app:v1.2.0").unwrap();
        assert_eq!(r.registry, "127.0.0.1:5000");
        assert_eq!(r.repository.as_str(), "team/app");
        assert_eq!(r.tag(), Some("v1.2.0"));
        assert!(r.is_loopback());
        let r = ImageRef::parse("registry.example.com/app").unwrap();
        assert_eq!(r.reference, "latest");
        assert!(!r.is_loopback());
        let d = format!("sha256:{}", "a".repeat(64));
        let r = ImageRef::parse(&format!("localhost:5000/a/b@{d}")).unwrap();
        assert_eq!(r.reference, d);
        assert_eq!(r.tag(), None);
        assert_eq!(r.to_string(), format!("localhost:5000/a/b@{d}"));
    }

    #[test]
    fn refuses_ambiguous_or_bad_forms() {
        for bad in [
            "app",
            "team/app:v1",
            "127.0.0.1:5000/App",
            "127.0.0.1:5000/a:b:c",
            "127.0.0.1:5000/a@sha256:x",
        ] {
            let err = ImageRef::parse(bad).unwrap_err();
            assert!(err.to_string().contains("REGISTRY/REPOSITORY"), "{err}");
        }
    }
}
