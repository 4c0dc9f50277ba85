//! OS packages recorded in an image's package databases, and the distribution they belong to,
//! as the scanner matches them against OSV (ecosystems `Alpine:vX.Y` and `Debian:N`):
//!
//! - Alpine: `lib/apk/db/installed`, blocks of `K:value` lines separated by blank lines
//!   (`P` name, `V` version, `A` architecture, `o` origin: the source package).
//! - Debian: `var/lib/dpkg/status`, RFC 822 stanzas of which only those whose `Status` ends in
//!   `installed` count; and distroless images' `var/lib/dpkg/status.d/*`, one file per
//!   package, without `Status` (every one is installed). Debian's OSV records are keyed by
//!   source package: `Source: NAME [(VERSION)]`, the binary package's own name and version
//!   when absent.
//! - The distribution from `etc/os-release` (or `usr/lib/os-release`): `ID` and `VERSION_ID`.

use std::collections::BTreeMap;

/// Which package database a package comes from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum PackageKind {
    Apk,
    Dpkg,
}

/// One installed OS package.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct OsPackage {
    pub kind: PackageKind,
    pub name: String,
    pub version: String,
    pub architecture: Option<String>,
    /// The source package OSV names (Debian's `Source`, Alpine's origin); the package's own
    /// name when the database gives none.
    pub source_name: String,
    /// The source package's version (Debian's `Source: NAME (VERSION)`), else the package's.
    pub source_version: String,
}

/// The packages of an Alpine `lib/apk/db/installed`.
pub fn parse_apk_installed(text: &str) -> Vec<OsPackage> {
    text.split("\n\n")
        .filter_map(|block| {
            let fields: BTreeMap<&str, &str> = block
                .lines()
                .filter_map(|line| line.split_once(':'))
                .filter(|(key, _)| key.len() == 1)
                .collect();
            let (name, version) = (fields.get("P")?, fields.get("V")?);
            let origin = fields.get("o").unwrap_or(name);
            Some(OsPackage {
                kind: PackageKind::Apk,
                name: name.to_string(),
                version: version.to_string(),
                architecture: fields.get("A").map(|a| a.to_string()),
                source_name: origin.to_string(),
                source_version: version.to_string(),
            })
        })
        .collect()
}

/// The stanzas of a Debian control file (`var/lib/dpkg/status`, `status.d/*`): each a map of
/// field name to value, continuation lines joined with `\n`.
fn stanzas(text: &str) -> Vec<BTreeMap<String, String>> {
    let mut all = Vec::new();
    let mut current: BTreeMap<String, String> = BTreeMap::new();
    let mut last: Option<String> = None;
    for line in text.lines() {
        if line.trim().is_empty() {
            if !current.is_empty() {
                all.push(std::mem::take(&mut current));
            }
            last = None;
        } else if line.starts_with([' ', '\t']) {
            if let Some(value) = last.as_ref().and_then(|field| current.get_mut(field)) {
                value.push('\n');
                value.push_str(line.trim());
            }
        } else if let Some((field, value)) = line.split_once(':') {
            current.insert(field.to_string(), value.trim().to_string());
            last = Some(field.to_string());
        }
    }
    if !current.is_empty() {
        all.push(current);
    }
    all
}

/// The installed packages of a dpkg database file: `var/lib/dpkg/status` (stanzas whose
/// `Status` says `installed`) or a distroless `var/lib/dpkg/status.d/*` file (no `Status`:
/// installed).
pub fn parse_dpkg_status(text: &str) -> Vec<OsPackage> {
    stanzas(text)
        .into_iter()
        .filter(|stanza| {
            stanza
                .get("Status")
                .is_none_or(|status| status.split_whitespace().last() == Some("installed"))
        })
        .filter_map(|stanza| {
            let name = stanza.get("Package")?.clone();
            let version = stanza.get("Version")?.clone();
            let (source_name, source_version) = match stanza.get("Source") {
                Some(source) => match source.split_once(' ') {
                    Some((source, version)) => (
                        source.to_string(),
                        version
                            .trim_matches(|c| c == '(' || c == ')' || c == ' ')
                            .to_string(),
                    ),
                    None => (source.clone(), version.clone()),
                },
                None => (name.clone(), version.clone()),
            };
            Some(OsPackage {
                kind: PackageKind::Dpkg,
                architecture: stanza.get("Architecture").cloned(),
                name,
                version,
                source_name,
                source_version,
            })
        })
        .collect()
}

/// The `KEY=value` fields of an `os-release` file (os-release(5)), quotes removed.
pub fn os_release_fields(os_release: &str) -> BTreeMap<&str, &str> {
    os_release
        .lines()
        .filter_map(|line| line.split_once('='))
        .map(|(key, value)| (key.trim(), value.trim().trim_matches(['"', '\''])))
        .collect()
}

/// The OSV ecosystem of the distribution an `os-release` file describes: `Alpine:vX.Y` for
/// Alpine (`VERSION_ID` 3.19.1 → `Alpine:v3.19`), `Debian:N` for Debian and distroless images
/// built on it; `None` for others.
pub fn osv_ecosystem(os_release: &str) -> Option<String> {
    let fields = os_release_fields(os_release);
    let version = fields.get("VERSION_ID")?;
    match *fields.get("ID")? {
        "alpine" => {
            let mut parts = version.split('.');
            let (major, minor) = (parts.next()?, parts.next()?);
            Some(format!("Alpine:v{major}.{minor}"))
        }
        "debian" => Some(format!("Debian:{}", version.split('.').next()?)),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn apk_installed_gives_name_version_architecture_and_origin() {
        let db = "C:Q1abc=\nP:musl\nV:1.2.4-r2\nA:x86_64\no:musl\nL:MIT\n\n\
                  P:libssl3\nV:3.1.4-r1\nA:x86_64\no:openssl\nT:SSL shared libraries\n\n\
                  P:no-origin\nV:1.0-r0\n";
        let packages = parse_apk_installed(db);
        assert_eq!(packages.len(), 3);
        assert_eq!(
            packages[1],
            OsPackage {
                kind: PackageKind::Apk,
                name: "libssl3".into(),
                version: "3.1.4-r1".into(),
                architecture: Some("x86_64".into()),
                source_name: "openssl".into(),
                source_version: "3.1.4-r1".into(),
            }
        );
        assert_eq!(packages[2].source_name, "no-origin");
    }

    #[test]
    fn dpkg_status_keeps_installed_packages_keyed_by_source() {
        let status = "Package: libssl3\nStatus: install ok installed\nArchitecture: amd64\n\
                      Source: openssl (3.0.11-1~deb12u2)\nVersion: 3.0.11-1~deb12u2\n\
                      Description: Secure Sockets Layer toolkit\n with a continuation line\n\n\
                      Package: removed\nStatus: deinstall ok config-files\nVersion: 1.0\n\n\
                      Package: tzdata\nStatus: install ok installed\nVersion: 2024a-0+deb12u1\n\n\
                      Package: libc6\nStatus: install ok installed\nSource: glibc\nVersion: 2.36-9+deb12u4\n";
        let packages = parse_dpkg_status(status);
        let names: Vec<(&str, &str, &str)> = packages
            .iter()
            .map(|p| {
                (
                    p.name.as_str(),
                    p.source_name.as_str(),
                    p.source_version.as_str(),
                )
            })
            .collect();
        assert_eq!(
            names,
            [
                ("libssl3", "openssl", "3.0.11-1~deb12u2"),
                ("tzdata", "tzdata", "2024a-0+deb12u1"),
                ("libc6", "glibc", "2.36-9+deb12u4"),
            ]
        );
        assert_eq!(packages[0].architecture.as_deref(), Some("amd64"));
    }

    #[test]
    fn distroless_status_d_files_have_no_status_and_are_installed() {
        let file = "Package: base-files\nVersion: 12.4+deb12u5\nArchitecture: amd64\n";
        let packages = parse_dpkg_status(file);
        assert_eq!(packages.len(), 1);
        assert_eq!(packages[0].source_name, "base-files");
    }

    #[test]
    fn os_release_names_the_osv_ecosystem() {
        let alpine = "NAME=\"Alpine Linux\"\nID=alpine\nVERSION_ID=3.19.1\n";
        assert_eq!(osv_ecosystem(alpine).as_deref(), Some("Alpine:v3.19"));
        let debian =
            "PRETTY_NAME=\"Debian GNU/Linux 12 (bookworm)\"\nID=debian\nVERSION_ID=\"12\"\n";
        assert_eq!(osv_ecosystem(debian).as_deref(), Some("Debian:12"));
        let distroless = "PRETTY_NAME=\"Distroless\"\nID=\"debian\"\nVERSION_ID=\"12\"\n";
        assert_eq!(osv_ecosystem(distroless).as_deref(), Some("Debian:12"));
        assert_eq!(osv_ecosystem("ID=fedora\nVERSION_ID=40\n"), None);
        assert_eq!(
            osv_ecosystem("ID=debian\n"),
            None,
            "no version: no ecosystem"
        );
    }

    proptest::proptest! {
        /// Whatever bytes a package database holds, parsing never panics.
        #[test]
        fn package_databases_of_any_content_parse_without_panicking(text in "\\PC{0,400}") {
            parse_apk_installed(&text);
            parse_dpkg_status(&text);
            osv_ecosystem(&text);
        }
    }
}
