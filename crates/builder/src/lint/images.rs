//! Image references in `FROM` (the Docker reference grammar of distribution/reference, enough
//! to tell a valid name from a broken one) and what the linter knows about well-known base
//! images: [`KNOWN_BASES`], one small table, first match wins.

/// A parsed image reference, normalised as Docker does (`golang` is
/// `docker.io/library/golang`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ImageRef {
    /// Registry host and repository path: `gcr.io/distroless/static-debian12`.
    pub name: String,
    pub tag: Option<String>,
    pub digest: Option<String>,
}

/// The special empty base.
pub const SCRATCH: &str = "scratch";

/// Parses `reference`; `None` if it is not a valid image reference (upper case in the path,
/// an empty tag as `golang:` left by an unset ARG, stray characters).
pub fn parse_reference(reference: &str) -> Option<ImageRef> {
    if reference.is_empty() || reference.len() > 255 + 150 {
        return None;
    }
    let (rest, digest) = match reference.split_once('@') {
        Some((rest, digest)) => {
            let (algorithm, hex) = digest.split_once(':')?;
            let algorithm_ok = algorithm.chars().next()?.is_ascii_alphabetic()
                && algorithm
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || "-_+.".contains(c));
            if !algorithm_ok || hex.len() < 32 || !hex.chars().all(|c| c.is_ascii_hexdigit()) {
                return None;
            }
            (rest, Some(digest.to_string()))
        }
        None => (reference, None),
    };
    let last_slash = rest.rfind('/').map_or(0, |i| i + 1);
    let (path, tag) = match rest[last_slash..].find(':') {
        Some(i) => {
            let tag = &rest[last_slash + i + 1..];
            let tag_ok = tag.len() <= 128
                && tag
                    .chars()
                    .next()
                    .is_some_and(|c| c.is_ascii_alphanumeric() || c == '_')
                && tag
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || "_.-".contains(c));
            if !tag_ok {
                return None;
            }
            (&rest[..last_slash + i], Some(tag.to_string()))
        }
        None => (rest, None),
    };
    let mut components: Vec<&str> = path.split('/').collect();
    let domain = match components.first() {
        Some(first)
            if components.len() > 1
                && (first.contains('.')
                    || first.contains(':')
                    || *first == "localhost"
                    || first.chars().any(|c| c.is_ascii_uppercase())) =>
        {
            let domain = components.remove(0);
            let (host, port) = match domain.split_once(':') {
                Some((host, port)) => (host, Some(port)),
                None => (domain, None),
            };
            let host_ok = !host.is_empty()
                && host
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '.');
            let port_ok =
                port.is_none_or(|p| !p.is_empty() && p.chars().all(|c| c.is_ascii_digit()));
            if !host_ok || !port_ok {
                return None;
            }
            domain.to_string()
        }
        _ => "docker.io".to_string(),
    };
    if !components.iter().all(|c| path_component_ok(c)) {
        return None;
    }
    if domain == "docker.io" && components.len() == 1 {
        components.insert(0, "library");
    }
    Some(ImageRef {
        name: format!("{domain}/{}", components.join("/")),
        tag,
        digest,
    })
}

/// `[a-z0-9]+(?:(?:[._]|__|[-]+)[a-z0-9]+)*`
fn path_component_ok(component: &str) -> bool {
    let bytes = component.as_bytes();
    if bytes.is_empty()
        || !bytes[0].is_ascii_alphanumeric()
        || !bytes[bytes.len() - 1].is_ascii_alphanumeric()
    {
        return false;
    }
    let mut separator = String::new();
    for &b in bytes {
        match b {
            b'a'..=b'z' | b'0'..=b'9' => {
                if !(separator.is_empty()
                    || separator == "."
                    || separator == "_"
                    || separator == "__"
                    || separator.bytes().all(|s| s == b'-'))
                {
                    return false;
                }
                separator.clear();
            }
            b'.' | b'_' | b'-' => separator.push(char::from(b)),
            _ => return false,
        }
    }
    true
}

/// Which images a row of [`KNOWN_BASES`] covers.
#[derive(Debug, Clone, Copy)]
pub enum Repository {
    /// Exactly this normalised name.
    Exact(&'static str),
    /// Every repository under this prefix.
    Under(&'static str),
    /// Any repository, on any registry, whose last path component is this (mirrors of
    /// `alpine` included).
    Named(&'static str),
}

/// Which user a base image runs as when the Dockerfile sets no `USER`.
#[derive(Debug, Clone, Copy)]
pub enum DefaultUser {
    Root,
    /// Non-root in every tag.
    NonRoot(&'static str),
    /// Non-root in tags that have this `-`-separated word (`nonroot`, `debug-nonroot`).
    NonRootWithTagWord(&'static str, &'static str),
    /// Non-root unless the tag has this `-`-separated word (`latest-dev` runs as root).
    NonRootUnlessTagWord(&'static str, &'static str),
}

/// What the linter knows about one family of base images.
#[derive(Debug, Clone, Copy)]
pub struct KnownBase {
    pub repository: Repository,
    /// Small enough for a runtime stage (GL002).
    pub minimal: bool,
    /// No glibc: a cgo binary will not start on it (GL003).
    pub needs_static_binary: bool,
    /// The user it runs as without a `USER` (GL004).
    pub user: DefaultUser,
    /// The Go toolchain (GL006 if final).
    pub go_toolchain: bool,
}

const fn base(
    repository: Repository,
    minimal: bool,
    needs_static: bool,
    user: DefaultUser,
) -> KnownBase {
    KnownBase {
        repository,
        minimal,
        needs_static_binary: needs_static,
        user,
        go_toolchain: false,
    }
}

/// Known base images, first match wins. Distroless images run as root except the `nonroot`
/// tags (uid 65532); Chainguard's `static` runs as `nonroot` (65532) in every tag, and
/// `glibc-dynamic` too except its `-dev` tags.
pub const KNOWN_BASES: [KnownBase; 7] = [
    base(
        Repository::Under("gcr.io/distroless/static"),
        true,
        true,
        DefaultUser::NonRootWithTagWord("nonroot", "65532 (nonroot)"),
    ),
    base(
        Repository::Under("gcr.io/distroless/"),
        true,
        false,
        DefaultUser::NonRootWithTagWord("nonroot", "65532 (nonroot)"),
    ),
    base(
        Repository::Exact("cgr.dev/chainguard/static"),
        true,
        true,
        DefaultUser::NonRoot("65532 (nonroot)"),
    ),
    base(
        Repository::Exact("cgr.dev/chainguard/glibc-dynamic"),
        true,
        false,
        DefaultUser::NonRootUnlessTagWord("dev", "65532 (nonroot)"),
    ),
    base(Repository::Named("alpine"), true, true, DefaultUser::Root),
    base(Repository::Named("busybox"), true, false, DefaultUser::Root),
    KnownBase {
        repository: Repository::Named("golang"),
        minimal: false,
        needs_static_binary: false,
        user: DefaultUser::Root,
        go_toolchain: true,
    },
];

impl ImageRef {
    /// The row of [`KNOWN_BASES`] for this image, if any.
    pub fn known(&self) -> Option<&'static KnownBase> {
        KNOWN_BASES.iter().find(|b| match b.repository {
            Repository::Exact(name) => self.name == name,
            Repository::Under(prefix) => self.name.starts_with(prefix),
            Repository::Named(last) => self.name.rsplit('/').next() == Some(last),
        })
    }

    /// The non-root user the image runs as by default, if known to be one.
    pub fn default_non_root_user(&self) -> Option<&'static str> {
        let tag_words = || self.tag.iter().flat_map(|t| t.split('-'));
        match self.known()?.user {
            DefaultUser::Root => None,
            DefaultUser::NonRoot(user) => Some(user),
            DefaultUser::NonRootWithTagWord(word, user) => {
                tag_words().any(|w| w == word).then_some(user)
            }
            DefaultUser::NonRootUnlessTagWord(word, user) => {
                (!tag_words().any(|w| w == word)).then_some(user)
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn references_normalise_and_broken_ones_are_rejected() {
        let golang = parse_reference("golang:1.22-alpine").unwrap();
        assert_eq!(golang.name, "docker.io/library/golang");
        assert_eq!(golang.tag.as_deref(), Some("1.22-alpine"));
        let local = parse_reference("localhost:5000/team/app:v1").unwrap();
        assert_eq!(
            (local.name.as_str(), local.tag.as_deref()),
            ("localhost:5000/team/app", Some("v1"))
        );
        let pinned = parse_reference(&format!(
            "gcr.io/distroless/static:nonroot@sha256:{}",
            "a".repeat(64)
        ))
        .unwrap();
        assert_eq!(pinned.tag.as_deref(), Some("nonroot"));
        assert!(pinned.digest.is_some());
        for broken in [
            "golang:",
            "Golang:1.22",
            "golang:1.22 ",
            "",
            "a//b",
            "-x",
            "golang@sha256:abc",
        ] {
            assert_eq!(parse_reference(broken), None, "{broken}");
        }
    }

    #[test]
    fn non_root_bases_are_data() {
        let user = |r: &str| parse_reference(r).unwrap().default_non_root_user();
        assert!(user("gcr.io/distroless/static-debian12:nonroot").is_some());
        assert!(user("gcr.io/distroless/base-debian12:debug-nonroot").is_some());
        assert!(user("gcr.io/distroless/static-debian12").is_none());
        assert!(user("gcr.io/distroless/static-debian12:latest").is_none());
        assert!(user("cgr.dev/chainguard/static:latest").is_some());
        assert!(user("cgr.dev/chainguard/glibc-dynamic:latest").is_some());
        assert!(user("cgr.dev/chainguard/glibc-dynamic:latest-dev").is_none());
        assert!(user("alpine:3.20").is_none());
        assert!(user("ubuntu:24.04").is_none());
    }
}
