//! Compiling a Go main package into a static binary for one platform, with the toolchain on
//! PATH (or the one given).

use std::path::{Path, PathBuf};
use std::process::Command;

use crate::{BuildError, Platform};

/// What `go build` is asked for.
#[derive(Debug, Clone)]
pub struct GoBuild<'a> {
    pub go: &'a Path,
    /// The module directory the package is built from.
    pub dir: &'a Path,
    /// The main package, e.g. `.` or `./cmd/server`.
    pub package: &'a str,
    pub ldflags: &'a str,
    pub platform: &'a Platform,
}

/// Runs `go build` with CGO off and `-trimpath`, so the binary is static and carries no paths
/// of the build host; returns the binary's path inside `out_dir`.
pub fn compile(build: &GoBuild, out_dir: &Path) -> Result<PathBuf, BuildError> {
    let output = out_dir.join(format!(
        "bin-{}-{}{}",
        build.platform.os,
        build.platform.architecture,
        build
            .platform
            .variant
            .as_deref()
            .map(|v| format!("-{v}"))
            .unwrap_or_default()
    ));
    let mut command = Command::new(build.go);
    command
        .current_dir(build.dir)
        .args(["build", "-trimpath", "-buildvcs=false"])
        .arg(format!("-ldflags={}", build.ldflags))
        .arg("-o")
        .arg(&output)
        .arg(build.package)
        .env("CGO_ENABLED", "0")
        .env("GOOS", &build.platform.os)
        .env("GOARCH", &build.platform.architecture)
        // The toolchain must not pick a newer one over the network mid-build.
        .env("GOTOOLCHAIN", "local");
    if let Some(arm) = build
        .platform
        .variant
        .as_deref()
        .and_then(|v| v.strip_prefix('v'))
    {
        if build.platform.architecture == "arm" {
            command.env("GOARM", arm);
        }
    }
    let result = command.output().map_err(|e| BuildError::Go {
        message: format!(
            "cannot run {}: {e}; install Go or point --go at the toolchain",
            build.go.display()
        ),
    })?;
    if !result.status.success() {
        return Err(BuildError::Go {
            message: format!(
                "go build {} for {} failed:\n{}",
                build.package,
                build.platform,
                String::from_utf8_lossy(&result.stderr).trim_end()
            ),
        });
    }
    Ok(output)
}
