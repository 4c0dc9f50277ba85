//! Image inspection, shared by the Go image builder (`gantry analyze`) and the vulnerability
//! scanner: the layer walker (`walk`: tar, tar+gzip and tar+zstd layers read as streams,
//! whiteouts and opaque directories applied, so a deleted file is not reported), the size
//! analysis built on it (`analyze`), Go build info
//! from binary bytes (`buildinfo`), ELF facts (`elf`), OS package databases (`packages`:
//! apk and dpkg, and the OSV ecosystem from os-release), and platforms (`Platform`,
//! `select_platform`). Pure: bytes in, facts out.

use std::fmt;
use std::str::FromStr;

use gantry_oci::Digest;
use serde_json::{json, Value};

pub mod analyze;
pub mod binary;
pub mod buildinfo;
pub mod elf;
pub mod gobinary;
pub mod packages;
pub mod pclntab;
pub mod walk;

/// A platform that does not read as `OS/ARCH[/VARIANT]`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid platform {0:?}: write OS/ARCH[/VARIANT], e.g. linux/amd64 or linux/arm64")]
pub struct PlatformError(pub String);

/// A target platform: `linux/amd64`, `linux/arm64`, `linux/arm/v7`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Platform {
    pub os: String,
    pub architecture: String,
    pub variant: Option<String>,
}

impl FromStr for Platform {
    type Err = PlatformError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let parts: Vec<&str> = s.trim().split('/').collect();
        let valid = |p: &&str| !p.is_empty() && p.chars().all(|c| c.is_ascii_alphanumeric());
        match parts.as_slice() {
            [os, arch] if valid(os) && valid(arch) => Ok(Platform {
                os: os.to_string(),
                architecture: arch.to_string(),
                variant: None,
            }),
            [os, arch, variant] if valid(os) && valid(arch) && valid(variant) => Ok(Platform {
                os: os.to_string(),
                architecture: arch.to_string(),
                variant: Some(variant.to_string()),
            }),
            _ => Err(PlatformError(s.to_string())),
        }
    }
}

impl fmt::Display for Platform {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.os, self.architecture)?;
        if let Some(v) = &self.variant {
            write!(f, "/{v}")?;
        }
        Ok(())
    }
}

impl Platform {
    /// The platform an image index entry (OCI image-index `manifests[]`) names in its
    /// `platform` object; `None` when it names no `os` and `architecture`.
    pub fn of_index_entry(entry: &Value) -> Option<Platform> {
        let p = &entry["platform"];
        Some(Platform {
            os: p["os"].as_str()?.to_string(),
            architecture: p["architecture"].as_str()?.to_string(),
            variant: p["variant"].as_str().map(str::to_string),
        })
    }

    pub fn to_json(&self) -> Value {
        let mut p = json!({"os": self.os, "architecture": self.architecture});
        if let Some(v) = &self.variant {
            p["variant"] = json!(v);
        }
        p
    }
}

/// The manifest of `platform` in an image index.
pub fn select_platform(index: &Value, platform: &Platform) -> Option<Digest> {
    index["manifests"].as_array()?.iter().find_map(|m| {
        let p = &m["platform"];
        let matches = p["os"] == platform.os.as_str()
            && p["architecture"] == platform.architecture.as_str()
            && platform
                .variant
                .as_deref()
                .is_none_or(|v| p["variant"] == v);
        matches
            .then(|| m["digest"].as_str()?.parse().ok())
            .flatten()
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn platforms_parse_and_print() {
        let p: Platform = "linux/arm/v7".parse().unwrap();
        assert_eq!(p.variant.as_deref(), Some("v7"));
        assert_eq!(p.to_string(), "linux/arm/v7");
        assert_eq!(
            "linux/amd64".parse::<Platform>().unwrap().to_json(),
            json!({"os": "linux", "architecture": "amd64"})
        );
        let entry = json!({"platform": {"os": "linux", "architecture": "arm", "variant": "v7"}});
        assert_eq!(
            Platform::of_index_entry(&entry)
                .map(|p| p.to_string())
                .as_deref(),
            Some("linux/arm/v7")
        );
        assert_eq!(Platform::of_index_entry(&json!({"digest": "x"})), None);
        for bad in ["", "linux", "linux/", "linux/amd64/v1/x", "linux/amd 64"] {
            assert!(bad.parse::<Platform>().is_err(), "{bad}");
        }
    }
}
