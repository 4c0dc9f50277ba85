//! Upstream registries and the names requests use for them: a cache project's repository
//! `PROJECT/REST` is `REST` at its upstream (`library/REST` on Docker Hub for a one-component
//! name, as Docker Hub names official images); a mirror request (no project prefix) is given
//! the project of the upstream its `ns` names, or of the default upstream.

use gantry_client::{Credentials, RegistryClient, Transport};

use crate::MirrorError;

/// One upstream registry, as `[[upstreams]]` or `--upstream NAME=URL` configures it.
#[derive(Debug, Clone)]
pub struct Upstream {
    /// What requests call it: a mirror request's `?ns=` names it (or the host of its URL).
    pub name: String,
    /// `http(s)://host[:port]`.
    pub url: String,
    pub credentials: Option<Credentials>,
    /// Requests that carry no `ns` go to this upstream.
    pub default: bool,
    /// Its cache project is public: anyone may pull what is mirrored (docker sends no
    /// credentials to a mirror).
    pub public: bool,
    /// The project its cache lives in (by default named after the upstream).
    pub project: String,
}

impl Upstream {
    /// The upstream's `host[:port]`.
    pub fn host(&self) -> &str {
        let rest = self
            .url
            .split_once("://")
            .map_or(self.url.as_str(), |(_, rest)| rest);
        rest.split('/').next().unwrap_or(rest)
    }

    /// Whether a mirror request's `ns` names this upstream: its name or its host; Docker Hub
    /// answers to `docker.io`, the name containerd sends for it.
    pub fn answers_to(&self, ns: &str) -> bool {
        ns == self.name || ns == self.host() || (ns == "docker.io" && self.is_docker_hub())
    }

    fn is_docker_hub(&self) -> bool {
        matches!(
            self.host(),
            "registry-1.docker.io" | "docker.io" | "index.docker.io"
        )
    }

    /// The repository at the upstream that `rest` (the name after the cache project) is.
    pub fn remote_name(&self, rest: &str) -> String {
        if self.is_docker_hub() && !rest.contains('/') {
            format!("library/{rest}")
        } else {
            rest.to_string()
        }
    }

    /// Checks what the configuration gives. Errors: `Config` naming the field.
    pub fn validate(&self) -> Result<(), MirrorError> {
        let invalid =
            |what: String| MirrorError::Config(format!("upstream {:?}: {what}", self.name));
        if self.name.is_empty() {
            return Err(MirrorError::Config("an upstream has no name".into()));
        }
        let parsed = url::Url::parse(&self.url).map_err(|e| {
            invalid(format!(
                "url {:?} is not a URL ({e}); give http(s)://host[:port]",
                self.url
            ))
        })?;
        if !matches!(parsed.scheme(), "http" | "https") || parsed.host_str().is_none() {
            return Err(invalid(format!(
                "url {:?} must be http(s)://host[:port]",
                self.url
            )));
        }
        if self.project.contains('/') || gantry_oci::RepositoryName::parse(&self.project).is_err() {
            return Err(invalid(format!(
                "{:?} cannot be a project name (lowercase letters, digits and single . _ - \
                 between them); give `project = \"NAME\"`",
                self.project
            )));
        }
        Ok(())
    }

    pub(crate) fn client(&self, transport: &Transport) -> Result<RegistryClient, MirrorError> {
        RegistryClient::new(&self.url, transport, self.credentials.clone())
            .map_err(|e| MirrorError::Config(format!("upstream {:?}: {e}", self.name)))
    }
}

/// Checks a set of upstreams: each valid, names and projects distinct, at most one default.
pub fn validate_all(upstreams: &[Upstream]) -> Result<(), MirrorError> {
    for (i, upstream) in upstreams.iter().enumerate() {
        upstream.validate()?;
        for other in &upstreams[..i] {
            if other.name == upstream.name {
                return Err(MirrorError::Config(format!(
                    "two upstreams are named {:?}",
                    upstream.name
                )));
            }
            if other.project == upstream.project {
                return Err(MirrorError::Config(format!(
                    "upstreams {:?} and {:?} share the project {:?}; give each its own `project`",
                    other.name, upstream.name, upstream.project
                )));
            }
        }
    }
    if upstreams.iter().filter(|u| u.default).count() > 1 {
        return Err(MirrorError::Config(
            "more than one upstream has `default = true`".into(),
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn upstream(name: &str, url: &str) -> Upstream {
        Upstream {
            name: name.into(),
            url: url.into(),
            credentials: None,
            default: false,
            public: false,
            project: name.into(),
        }
    }

    #[test]
    fn ns_names_an_upstream_by_name_or_host_and_docker_io_is_docker_hub() {
        let hub = upstream("hub", "https://registry-1.docker.io");
        assert!(hub.answers_to("hub"));
        assert!(hub.answers_to("registry-1.docker.io"));
        assert!(hub.answers_to("docker.io"));
        assert!(!hub.answers_to("quay.io"));
        let origin = upstream("origin", "http://127.0.0.1:5001");
        assert!(origin.answers_to("127.0.0.1:5001"));
        assert!(!origin.answers_to("docker.io"));
    }

    #[test]
    fn docker_hub_official_images_are_under_library() {
        let hub = upstream("hub", "https://registry-1.docker.io");
        assert_eq!(hub.remote_name("nginx"), "library/nginx");
        assert_eq!(hub.remote_name("bitnami/redis"), "bitnami/redis");
        assert_eq!(upstream("o", "http://h:1").remote_name("nginx"), "nginx");
    }

    #[test]
    fn bad_upstreams_are_refused_naming_what_is_wrong() {
        let mut bad_url = upstream("o", "ftp://h");
        assert!(bad_url
            .validate()
            .unwrap_err()
            .to_string()
            .contains("http(s)"));
        bad_url.url = "not a url".into();
        assert!(bad_url.validate().is_err());
        let mut bad_project = upstream("o", "http://h:1");
        bad_project.project = "127.0.0.1:5001".into();
        assert!(bad_project
            .validate()
            .unwrap_err()
            .to_string()
            .contains("project"));
        let twins = [upstream("o", "http://a"), upstream("o", "http://b")];
        assert!(validate_all(&twins).is_err());
        let mut a = upstream("a", "http://a");
        let mut b = upstream("b", "http://b");
        a.default = true;
        b.default = true;
        assert!(validate_all(&[a.clone(), b.clone()]).is_err());
        b.default = false;
        assert!(validate_all(&[a, b]).is_ok());
    }
}
