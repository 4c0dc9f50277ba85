//! Credentials in the docker-compatible `config.json` (`$DOCKER_CONFIG/config.json`, else
//! `~/.docker/config.json`), which docker, podman, skopeo, oras and crane also read. Other
//! keys of the file are kept as they are; the file is written with mode 0600.

use std::path::PathBuf;

use base64::engine::general_purpose::STANDARD;
use base64::Engine;
use serde_json::{json, Value};

use crate::{ClientError, Credentials, Result};

pub struct DockerConfig {
    path: PathBuf,
    doc: Value,
}

fn io_error(path: &std::path::Path, source: std::io::Error) -> ClientError {
    ClientError::Io {
        path: path.display().to_string(),
        source,
    }
}

impl DockerConfig {
    /// Where the file is: `$DOCKER_CONFIG/config.json` or `$HOME/.docker/config.json`.
    pub fn default_path() -> Option<PathBuf> {
        if let Some(dir) = std::env::var_os("DOCKER_CONFIG") {
            return Some(PathBuf::from(dir).join("config.json"));
        }
        std::env::var_os("HOME").map(|home| PathBuf::from(home).join(".docker/config.json"))
    }

    /// Reads the file at `path`; a missing file is an empty configuration.
    pub fn load(path: PathBuf) -> Result<DockerConfig> {
        let doc = match std::fs::read(&path) {
            Ok(bytes) => serde_json::from_slice(&bytes).map_err(|e| {
                ClientError::Protocol(format!(
                    "{} is not valid JSON ({e}); fix or remove it",
                    path.display()
                ))
            })?,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => json!({}),
            Err(e) => return Err(io_error(&path, e)),
        };
        Ok(DockerConfig { path, doc })
    }

    pub fn path(&self) -> &std::path::Path {
        &self.path
    }

    /// The stored credentials for `registry` (`host[:port]`), if any.
    pub fn credentials(&self, registry: &str) -> Option<Credentials> {
        let auth = self.doc["auths"][registry]["auth"].as_str()?;
        let decoded = String::from_utf8(STANDARD.decode(auth).ok()?).ok()?;
        let (username, password) = decoded.split_once(':')?;
        Some(Credentials {
            username: username.to_string(),
            password: password.to_string(),
        })
    }

    pub fn set(&mut self, registry: &str, credentials: &Credentials) {
        if !self.doc.is_object() {
            self.doc = json!({});
        }
        if !self.doc["auths"].is_object() {
            self.doc["auths"] = json!({});
        }
        let auth = STANDARD.encode(format!("{}:{}", credentials.username, credentials.password));
        self.doc["auths"][registry] = json!({ "auth": auth });
    }

    /// Forgets `registry`'s credentials; false if there were none.
    pub fn remove(&mut self, registry: &str) -> bool {
        self.doc
            .get_mut("auths")
            .and_then(Value::as_object_mut)
            .is_some_and(|auths| auths.remove(registry).is_some())
    }

    /// Writes the file atomically (a temporary file renamed over it), readable by the owner only.
    pub fn save(&self) -> Result<()> {
        use std::io::Write;
        use std::os::unix::fs::OpenOptionsExt;
        let dir = self.path.parent().unwrap_or(std::path::Path::new("."));
        std::fs::create_dir_all(dir).map_err(|e| io_error(dir, e))?;
        let temp = self.path.with_extension("json.tmp");
        let mut file = std::fs::OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .mode(0o600)
            .open(&temp)
            .map_err(|e| io_error(&temp, e))?;
        let text = serde_json::to_vec_pretty(&self.doc).expect("JSON serializes");
        file.write_all(&text)
            .and_then(|_| file.sync_all())
            .map_err(|e| io_error(&temp, e))?;
        std::fs::rename(&temp, &self.path).map_err(|e| io_error(&self.path, e))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    #[test]
    fn credentials_round_trip_and_other_keys_survive() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("docker/config.json");
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(
            &path,
            r#"{"credsStore":"x","auths":{"other:1":{"auth":"YTpi"}}}"#,
        )
        .unwrap();
        let mut config = DockerConfig::load(path.clone()).unwrap();
        assert!(config.credentials("r:5000").is_none());
        config.set(
            "r:5000",
            &Credentials {
                username: "robot$a+b".into(),
                password: "p:w".into(),
            },
        );
        config.save().unwrap();
        let config = DockerConfig::load(path.clone()).unwrap();
        let got = config.credentials("r:5000").unwrap();
        assert_eq!(
            (got.username.as_str(), got.password.as_str()),
            ("robot$a+b", "p:w")
        );
        assert_eq!(config.credentials("other:1").unwrap().username, "a");
        assert_eq!(config.doc["credsStore"], "x");
        assert_eq!(
            std::fs::metadata(&path).unwrap().permissions().mode() & 0o777,
            0o600
        );
        let mut config = config;
        assert!(config.remove("r:5000"));
        assert!(!config.remove("r:5000"));
    }

    #[test]
    fn a_missing_file_is_empty_and_a_broken_one_is_an_error() {
        let dir = tempfile::tempdir().unwrap();
        let config = DockerConfig::load(dir.path().join("none.json")).unwrap();
        assert!(config.credentials("x").is_none());
        let broken = dir.path().join("broken.json");
        std::fs::write(&broken, "{").unwrap();
        let err = DockerConfig::load(broken).err().unwrap().to_string();
        assert!(err.contains("not valid JSON"), "{err}");
    }
}
