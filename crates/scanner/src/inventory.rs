//! An image's packages from one walk of its layers (`gantry_inspect::walk`, whiteouts
//! applied): the Go modules and standard library of every Go executable (build info), and the
//! Alpine and Debian packages of the package databases, with the OSV ecosystem and the name and
//! version OSV keys each under. The same list feeds matching and SBOMs.
//!
//! Executables are spooled to a temporary file and read through a memory map, so a large
//! binary costs page cache rather than heap; package databases are read whole up to
//! [`MAX_TEXT_FILE`] bytes each.

use std::collections::{BTreeMap, BTreeSet};
use std::io::{self, Read, Write};

use gantry_inspect::buildinfo::BuildInfo;
use gantry_inspect::packages::{self, OsPackage, PackageKind};
use gantry_inspect::walk::{walk, Entry, LayerInput};
use gantry_inspect::{binary, gobinary};
use serde::{Deserialize, Serialize};

/// The largest package database or os-release file read; a bigger one is not read and the
/// walk fails with `InvalidData` rather than hold it in memory.
pub const MAX_TEXT_FILE: u64 = 64 << 20;

/// The OSV ecosystem of Go modules and the standard library.
pub const GO_ECOSYSTEM: &str = "Go";
/// The name OSV's Go database gives the standard library.
pub const GO_STDLIB: &str = "stdlib";

/// A package's kind, named as its package URL type (purl-spec `PURL-TYPES.rst`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum PackageType {
    /// A Go module, or the Go standard library (`stdlib`).
    Golang,
    /// An Alpine package.
    Apk,
    /// A Debian package.
    Deb,
}

/// One package found in the image.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
pub struct Package {
    #[serde(rename = "type")]
    pub kind: PackageType,
    /// Module path (`golang.org/x/text`), `stdlib`, or the OS package's name.
    pub name: String,
    /// As the image records it: `v0.3.5`, `v1.22.3` for the standard library, `1.2.4-r2`.
    pub version: String,
    /// OS packages: the architecture the database records (`x86_64`, `amd64`, `all`).
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub architecture: Option<String>,
    /// The OSV ecosystem it is matched in (`Go`, `Alpine:v3.19`, `Debian:12`); `None` for OS
    /// packages of a distribution OSV has no ecosystem for.
    pub ecosystem: Option<String>,
    /// The name OSV keys it under: the source package for Debian (`Source:`), the origin for
    /// Alpine, the module path for Go.
    pub source_name: String,
    /// The version OSV ranges are compared with (the source package's for Debian).
    pub source_version: String,
    /// Go: the module path a `replace` directive replaced with this one; matched under both.
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub replaces: Option<String>,
    /// Files it was found in: executables for Go, the package database for OS packages.
    pub locations: Vec<String>,
}

/// A Go executable in the image.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct GoBinary {
    /// Path in the image, with a leading `/`.
    pub path: String,
    /// As the build info says, e.g. `go1.22.3 X:boringcrypto`.
    pub go_version: String,
    /// The main module's path, if the build info has one.
    pub main_module: Option<String>,
    /// The build settings' `GOOS` and `GOARCH`, if recorded.
    pub goos: Option<String>,
    pub goarch: Option<String>,
    /// The functions of the binary's function table and those inlined into them, per package
    /// import path, in OSV's symbol notation; `None` when the table could not be read
    /// (reachability unknown).
    #[serde(skip)]
    pub symbols: Option<BTreeMap<String, BTreeSet<String>>>,
    /// Whether `symbols` holds the inlined functions too (the inline trees were read). When
    /// not, a vulnerable function missing from `symbols` may have been inlined: its absence
    /// makes reachability unknown, not "no".
    #[serde(skip)]
    pub inlined_read: bool,
}

/// The distribution an image's `os-release` names.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Distribution {
    /// `ID`, e.g. `alpine`, `debian`.
    pub id: String,
    /// `VERSION_ID`, e.g. `3.19.1`, `12`.
    pub version_id: String,
    /// `PRETTY_NAME`, if given.
    pub pretty_name: Option<String>,
    /// The OSV ecosystem its packages are matched in, if OSV has one.
    pub ecosystem: Option<String>,
}

/// Everything the scanner found in an image.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Inventory {
    pub distribution: Option<Distribution>,
    /// Sorted by type, name, version; one entry per (type, name, version, source).
    pub packages: Vec<Package>,
    pub binaries: Vec<GoBinary>,
}

/// What the walk keeps of an interesting file.
enum Found {
    OsRelease(String),
    OsPackages(Vec<OsPackage>),
    Go(Box<(BuildInfo, GoBinary)>),
}

const OS_RELEASE: [&str; 2] = ["etc/os-release", "usr/lib/os-release"];
const APK_INSTALLED: &str = "lib/apk/db/installed";
const DPKG_STATUS: &str = "var/lib/dpkg/status";
const DPKG_STATUS_D: &str = "var/lib/dpkg/status.d/";

fn read_text(entry: &mut Entry<'_>) -> io::Result<String> {
    if entry.size > MAX_TEXT_FILE {
        return Err(io::Error::new(
            io::ErrorKind::InvalidData,
            format!(
                "{} bytes is more than a package database may hold ({MAX_TEXT_FILE})",
                entry.size
            ),
        ));
    }
    let mut bytes = Vec::with_capacity(entry.size as usize);
    entry.content.read_to_end(&mut bytes)?;
    Ok(String::from_utf8_lossy(&bytes).into_owned())
}

/// Reads an executable's Go facts, spooling it to a temporary file; `None` when it is not a
/// Go binary (or one whose build info cannot be read).
fn examine_executable(entry: &mut Entry<'_>) -> io::Result<Option<Found>> {
    let mut head = [0u8; 4];
    let read = entry.content.read(&mut head)?;
    if !binary::looks_executable(&head[..read]) {
        return Ok(None);
    }
    let mut spool = tempfile::tempfile()?;
    spool.write_all(&head[..read])?;
    io::copy(entry.content, &mut spool)?;
    // Safety: the file is private to this function (unnamed, just written) and nothing
    // changes it while the map lives.
    let map = unsafe { memmap2::Mmap::map(&spool)? };
    let Ok(go) = gobinary::read_go_binary(&map) else {
        return Ok(None);
    };
    let info = go.info;
    let binary = GoBinary {
        path: format!("/{}", entry.path),
        go_version: info.go_version.clone(),
        main_module: info.main.as_ref().map(|m| m.path.clone()),
        goos: info.setting("GOOS").map(str::to_string),
        goarch: info.setting("GOARCH").map(str::to_string),
        inlined_read: go.inlined_error.is_none(),
        symbols: go.symbols,
    };
    Ok(Some(Found::Go(Box::new((info, binary)))))
}

fn examine(mut entry: Entry<'_>) -> io::Result<Option<Found>> {
    let path = entry.path;
    if OS_RELEASE.contains(&path) {
        return Ok(Some(Found::OsRelease(read_text(&mut entry)?)));
    }
    if path == APK_INSTALLED {
        let text = read_text(&mut entry)?;
        return Ok(Some(Found::OsPackages(packages::parse_apk_installed(
            &text,
        ))));
    }
    let status_d = path
        .strip_prefix(DPKG_STATUS_D)
        .is_some_and(|name| !name.contains('/') && !name.ends_with(".md5sums"));
    if path == DPKG_STATUS || status_d {
        let text = read_text(&mut entry)?;
        return Ok(Some(Found::OsPackages(packages::parse_dpkg_status(&text))));
    }
    examine_executable(&mut entry)
}

/// The packages of an image whose layers are given bottom first. Errors: I/O and layer format
/// errors, naming the layer and file; a package database over [`MAX_TEXT_FILE`].
pub fn inventory<R: Read + Send>(
    layers: impl IntoIterator<Item = LayerInput<R>>,
) -> io::Result<Inventory> {
    let walked = walk(layers, examine)?;
    let mut os_release = None;
    let mut os_packages = Vec::new();
    let mut go = Vec::new();
    // Walked in path order, so etc/os-release comes before usr/lib/os-release and wins.
    for (path, file) in walked.files {
        match file.found {
            Some(Found::OsRelease(text)) => {
                os_release.get_or_insert(text);
            }
            Some(Found::OsPackages(found)) => os_packages.push((format!("/{path}"), found)),
            Some(Found::Go(found)) => go.push(*found),
            None => {}
        }
    }
    let distribution = os_release.as_deref().and_then(distribution);
    let ecosystem = distribution.as_ref().and_then(|d| d.ecosystem.clone());
    let mut found: BTreeMap<(PackageType, String, String, String), Package> = BTreeMap::new();
    let mut add = |package: Package| {
        let key = (
            package.kind,
            package.name.clone(),
            package.version.clone(),
            package.replaces.clone().unwrap_or_default(),
        );
        let entry = found.entry(key).or_insert_with(|| Package {
            locations: Vec::new(),
            ..package.clone()
        });
        for location in package.locations {
            if !entry.locations.contains(&location) {
                entry.locations.push(location);
            }
        }
    };
    for (location, packages) in os_packages {
        for package in packages {
            add(Package {
                kind: match package.kind {
                    PackageKind::Apk => PackageType::Apk,
                    PackageKind::Dpkg => PackageType::Deb,
                },
                name: package.name,
                version: package.version,
                architecture: package.architecture,
                ecosystem: ecosystem.clone(),
                source_name: package.source_name,
                source_version: package.source_version,
                replaces: None,
                locations: vec![location.clone()],
            });
        }
    }
    let mut binaries = Vec::new();
    for (info, binary) in go {
        for package in go_packages(&info, &binary.path) {
            add(package);
        }
        binaries.push(binary);
    }
    Ok(Inventory {
        distribution,
        packages: found.into_values().collect(),
        binaries,
    })
}

/// The Go packages of one binary: the standard library, the main module when it has a
/// version (`(devel)` has none to match), and every dependency, a replaced one under its
/// replacement.
fn go_packages(info: &BuildInfo, location: &str) -> Vec<Package> {
    let go = |name: &str, version: &str, replaces: Option<String>| Package {
        kind: PackageType::Golang,
        name: name.to_string(),
        version: version.to_string(),
        architecture: None,
        ecosystem: Some(GO_ECOSYSTEM.to_string()),
        source_name: name.to_string(),
        source_version: version.to_string(),
        replaces,
        locations: vec![location.to_string()],
    };
    let mut packages = Vec::new();
    if let Some(version) = gantry_osv::go_toolchain_version(&info.go_version) {
        packages.push(go(GO_STDLIB, &version, None));
    }
    let main = info.main.iter().filter(|m| m.version != "(devel)");
    for module in main.chain(&info.deps) {
        match &module.replacement {
            // A local directory replacement has no version; it is still listed, unmatched.
            Some(new) => packages.push(go(&new.path, &new.version, Some(module.path.clone()))),
            None => packages.push(go(&module.path, &module.version, None)),
        }
    }
    packages
}

fn distribution(os_release: &str) -> Option<Distribution> {
    let fields = packages::os_release_fields(os_release);
    Some(Distribution {
        id: fields.get("ID")?.to_string(),
        version_id: fields.get("VERSION_ID").unwrap_or(&"").to_string(),
        pretty_name: fields.get("PRETTY_NAME").map(|s| s.to_string()),
        ecosystem: packages::osv_ecosystem(os_release),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use gantry_inspect::walk::testing::tar_layer;
    use std::path::Path;
    use std::process::Command;

    /// A hello-world Go binary built by the machine's Go (`go` on PATH), no dependencies.
    fn hello_binary(dir: &Path) -> (Vec<u8>, String) {
        std::fs::write(dir.join("go.mod"), "module example.com/hello\n\ngo 1.19\n").unwrap();
        std::fs::write(
            dir.join("main.go"),
            "package main\n\nimport \"fmt\"\n\nfunc main() { fmt.Println(\"hello\") }\n",
        )
        .unwrap();
        let out = Command::new("go")
            .args(["build", "-o", "hello", "."])
            .current_dir(dir)
            .env("CGO_ENABLED", "0")
            .env("GOFLAGS", "-mod=mod")
            .env("GOPROXY", "off")
            .output()
            .expect("Go is installed (scripts/test-all.sh installs golang-go)");
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let version = Command::new("go")
            .arg("env")
            .arg("GOVERSION")
            .output()
            .unwrap();
        (
            std::fs::read(dir.join("hello")).unwrap(),
            String::from_utf8(version.stdout)
                .unwrap()
                .trim()
                .to_string(),
        )
    }

    #[test]
    fn packages_come_from_live_files_only_with_their_ecosystems() {
        let dir = tempfile::tempdir().unwrap();
        let (hello, go_version) = hello_binary(dir.path());
        let apk = b"P:musl\nV:1.2.4-r2\nA:x86_64\no:musl\n\nP:libssl3\nV:3.1.4-r1\no:openssl\n";
        let layers = vec![
            tar_layer(&[
                (
                    "etc/os-release",
                    b"ID=alpine\nVERSION_ID=3.19.1\nPRETTY_NAME=\"Alpine Linux v3.19\"\n",
                ),
                ("lib/apk/db/installed", apk),
                ("usr/bin/app", &hello),
                ("usr/bin/gone", &hello),
                ("usr/share/not-go", b"\x7fELF but not Go"),
            ]),
            tar_layer(&[("usr/bin/.wh.gone", b"")]),
        ];
        let found = inventory(layers).unwrap();
        let distribution = found.distribution.unwrap();
        assert_eq!(distribution.ecosystem.as_deref(), Some("Alpine:v3.19"));
        assert_eq!(
            distribution.pretty_name.as_deref(),
            Some("Alpine Linux v3.19")
        );
        let listed: Vec<String> = found
            .packages
            .iter()
            .map(|p| {
                format!(
                    "{:?} {} {} (OSV {:?} {}) in {}",
                    p.kind,
                    p.name,
                    p.version,
                    p.ecosystem,
                    p.source_name,
                    p.locations.join(",")
                )
            })
            .collect();
        let stdlib = gantry_osv::go_toolchain_version(&go_version).unwrap();
        assert_eq!(
            listed,
            [
                format!("Golang stdlib {stdlib} (OSV Some(\"Go\") stdlib) in /usr/bin/app"),
                "Apk libssl3 3.1.4-r1 (OSV Some(\"Alpine:v3.19\") openssl) in /lib/apk/db/installed"
                    .to_string(),
                "Apk musl 1.2.4-r2 (OSV Some(\"Alpine:v3.19\") musl) in /lib/apk/db/installed"
                    .to_string(),
            ]
        );
        assert_eq!(found.binaries.len(), 1);
        assert_eq!(found.binaries[0].go_version, go_version);
        assert_eq!(
            found.binaries[0].main_module.as_deref(),
            Some("example.com/hello")
        );
    }
}
