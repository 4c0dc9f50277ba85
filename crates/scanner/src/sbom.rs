//! SBOMs of an image from the scanner's own package list ([`Inventory`]): an SPDX 2.3
//! document (<https://spdx.github.io/spdx-spec/v2.3/>, JSON) and a CycloneDX 1.5 BOM
//! (<https://cyclonedx.org/docs/1.5/json/>). Packages are named by package URL (purl-spec:
//! `pkg:golang/golang.org/x/text@v0.3.5`, `pkg:apk/alpine/musl@1.2.4-r2?arch=x86_64`,
//! `pkg:deb/debian/libc6@2.36-9?arch=amd64`).
//!
//! The same image and package list always give the same bytes: the creation time is the
//! image's (its config's `created`), and the document namespace and serial number derive from
//! the image digest, so attaching an image's SBOM twice adds nothing new.

use packageurl::PackageUrl;
use serde_json::{json, Value};
use sha2::{Digest as _, Sha256};

use crate::inventory::{Inventory, Package, PackageType};

/// The media type of an SPDX JSON document (IANA), also the referrer's `artifactType`.
pub const SPDX_MEDIA_TYPE: &str = "application/spdx+json";
/// The media type of a CycloneDX JSON BOM (IANA), also the referrer's `artifactType`.
pub const CYCLONEDX_MEDIA_TYPE: &str = "application/vnd.cyclonedx+json";

/// The image an SBOM describes.
#[derive(Debug, Clone, Copy)]
pub struct Subject<'a> {
    /// The repository, e.g. `team/app`.
    pub name: &'a str,
    /// The image manifest's digest, `sha256:…`.
    pub digest: &'a str,
    /// When the image was created (RFC 3339, UTC), from its config; the Unix epoch when the
    /// config does not say.
    pub created: &'a str,
}

/// The tool named as the SBOMs' creator.
const TOOL: &str = "gantry";
const TOOL_VERSION: &str = env!("CARGO_PKG_VERSION");

/// The distribution qualifier value (`alpine-3.19.1`, `debian-12`), if known.
fn distro(inventory: &Inventory) -> Option<String> {
    let d = inventory.distribution.as_ref()?;
    Some(format!("{}-{}", d.id, d.version_id))
}

/// A package's purl; `None` only for a name purl-spec cannot hold (empty).
pub fn purl(package: &Package, inventory: &Inventory) -> Option<String> {
    let (ty, namespace, name) = match package.kind {
        PackageType::Golang => match package.name.rsplit_once('/') {
            Some((namespace, name)) => ("golang", Some(namespace.to_string()), name),
            None => ("golang", None, package.name.as_str()),
        },
        PackageType::Apk => ("apk", Some("alpine".to_string()), package.name.as_str()),
        PackageType::Deb => ("deb", Some("debian".to_string()), package.name.as_str()),
    };
    let mut purl = PackageUrl::new(ty, name).ok()?;
    if let Some(namespace) = namespace {
        purl.with_namespace(namespace).ok()?;
    }
    if !package.version.is_empty() {
        purl.with_version(package.version.as_str()).ok()?;
    }
    if let Some(arch) = &package.architecture {
        purl.add_qualifier("arch", arch.as_str()).ok()?;
    }
    if package.kind != PackageType::Golang {
        if let Some(distro) = distro(inventory) {
            purl.add_qualifier("distro", distro).ok()?;
        }
    }
    Some(purl.to_string())
}

/// 16 bytes derived from the subject, for identifiers that must be unique per document.
fn subject_hash(subject: &Subject<'_>, format: &str) -> [u8; 16] {
    let hash = Sha256::digest(format!("{format}\n{}\n{}", subject.name, subject.digest));
    hash[..16].try_into().expect("32 bytes")
}

/// An RFC 4122 version-4-shaped UUID from 16 bytes.
fn uuid(mut bytes: [u8; 16]) -> String {
    bytes[6] = (bytes[6] & 0x0f) | 0x40;
    bytes[8] = (bytes[8] & 0x3f) | 0x80;
    let hex: String = bytes.iter().map(|b| format!("{b:02x}")).collect();
    format!(
        "{}-{}-{}-{}-{}",
        &hex[0..8],
        &hex[8..12],
        &hex[12..16],
        &hex[16..20],
        &hex[20..32]
    )
}

/// The SPDX 2.3 JSON document of the image: the image as the described package, containing
/// one package per found package, each with its purl as an external reference.
pub fn spdx(inventory: &Inventory, subject: Subject<'_>) -> Value {
    let image_id = "SPDXRef-Image";
    let mut packages = vec![json!({
        "SPDXID": image_id,
        "name": subject.name,
        "versionInfo": subject.digest,
        "downloadLocation": "NOASSERTION",
        "filesAnalyzed": false,
        "primaryPackagePurpose": "CONTAINER",
    })];
    let mut relationships = vec![json!({
        "spdxElementId": "SPDXRef-DOCUMENT",
        "relationshipType": "DESCRIBES",
        "relatedSpdxElement": image_id,
    })];
    for (index, package) in inventory.packages.iter().enumerate() {
        let id = format!("SPDXRef-Package-{}", index + 1);
        let mut entry = json!({
            "SPDXID": id,
            "name": package.name,
            "versionInfo": package.version,
            "downloadLocation": "NOASSERTION",
            "filesAnalyzed": false,
            "primaryPackagePurpose": "LIBRARY",
            "sourceInfo": format!("found in {}", package.locations.join(", ")),
        });
        if let Some(purl) = purl(package, inventory) {
            entry["externalRefs"] = json!([{
                "referenceCategory": "PACKAGE-MANAGER",
                "referenceType": "purl",
                "referenceLocator": purl,
            }]);
        }
        packages.push(entry);
        relationships.push(json!({
            "spdxElementId": image_id,
            "relationshipType": "CONTAINS",
            "relatedSpdxElement": id,
        }));
    }
    json!({
        "spdxVersion": "SPDX-2.3",
        "dataLicense": "CC0-1.0",
        "SPDXID": "SPDXRef-DOCUMENT",
        "name": format!("{}@{}", subject.name, subject.digest),
        "documentNamespace": format!(
            "https://gantry.dev/spdx/{}/{}",
            subject.digest.replace(':', "-"),
            uuid(subject_hash(&subject, "spdx"))
        ),
        "creationInfo": {
            "created": subject.created,
            "creators": [format!("Tool: {TOOL}-{TOOL_VERSION}")],
        },
        "packages": packages,
        "relationships": relationships,
    })
}

/// The CycloneDX 1.5 JSON BOM of the image: the image as the metadata's container
/// component, one library component per found package.
pub fn cyclonedx(inventory: &Inventory, subject: Subject<'_>) -> Value {
    let image_ref = "image";
    let mut refs = Vec::new();
    let components: Vec<Value> = inventory
        .packages
        .iter()
        .enumerate()
        .map(|(index, package)| {
            let bom_ref = format!("package-{}", index + 1);
            refs.push(bom_ref.clone());
            let mut component = json!({
                "type": "library",
                "bom-ref": bom_ref,
                "name": package.name,
                "version": package.version,
                "properties": package.locations.iter().map(|location| json!({
                    "name": "gantry:location",
                    "value": location,
                })).collect::<Vec<_>>(),
            });
            if let Some(purl) = purl(package, inventory) {
                component["purl"] = json!(purl);
            }
            component
        })
        .collect();
    json!({
        "bomFormat": "CycloneDX",
        "specVersion": "1.5",
        "serialNumber": format!("urn:uuid:{}", uuid(subject_hash(&subject, "cyclonedx"))),
        "version": 1,
        "metadata": {
            "timestamp": subject.created,
            "tools": {"components": [{"type": "application", "name": TOOL, "version": TOOL_VERSION}]},
            "component": {
                "type": "container",
                "bom-ref": image_ref,
                "name": subject.name,
                "version": subject.digest,
            },
        },
        "components": components,
        "dependencies": [{"ref": image_ref, "dependsOn": refs}],
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::inventory::Distribution;

    fn package(kind: PackageType, name: &str, version: &str, arch: Option<&str>) -> Package {
        Package {
            kind,
            name: name.into(),
            version: version.into(),
            architecture: arch.map(str::to_string),
            ecosystem: None,
            source_name: name.into(),
            source_version: version.into(),
            replaces: None,
            locations: vec!["/app".into()],
        }
    }

    fn debian_inventory() -> Inventory {
        Inventory {
            distribution: Some(Distribution {
                id: "debian".into(),
                version_id: "12".into(),
                pretty_name: None,
                ecosystem: Some("Debian:12".into()),
            }),
            packages: vec![
                package(PackageType::Golang, "golang.org/x/text", "v0.3.5", None),
                package(PackageType::Golang, "stdlib", "v1.22.3", None),
                package(PackageType::Deb, "libc6", "2.36-9+deb12u4", Some("amd64")),
                package(PackageType::Deb, "tzdata", "1:2024a-0+deb12u1", Some("all")),
            ],
            binaries: Vec::new(),
        }
    }

    #[test]
    fn purls_follow_each_type_with_arch_and_distro() {
        let inventory = debian_inventory();
        let purls: Vec<String> = inventory
            .packages
            .iter()
            .map(|p| purl(p, &inventory).unwrap())
            .collect();
        assert_eq!(
            purls,
            [
                "pkg:golang/golang.org/x/text@v0.3.5",
                "pkg:golang/stdlib@v1.22.3",
                "pkg:deb/debian/libc6@2.36-9%2Bdeb12u4?arch=amd64&distro=debian-12",
                "pkg:deb/debian/tzdata@1:2024a-0%2Bdeb12u1?arch=all&distro=debian-12",
            ]
        );
    }

    #[test]
    fn the_same_image_always_gives_the_same_documents() {
        let subject = Subject {
            name: "team/app",
            digest: "sha256:abc",
            created: "2026-11-30T00:00:00Z",
        };
        let inventory = debian_inventory();
        assert_eq!(spdx(&inventory, subject), spdx(&inventory, subject));
        let bom = cyclonedx(&inventory, subject);
        assert_eq!(bom, cyclonedx(&inventory, subject));
        assert_eq!(bom["components"].as_array().unwrap().len(), 4);
        let other = Subject {
            digest: "sha256:def",
            ..subject
        };
        assert_ne!(
            spdx(&inventory, subject)["documentNamespace"],
            spdx(&inventory, other)["documentNamespace"]
        );
        let serial = bom["serialNumber"].as_str().unwrap();
        assert_eq!(serial.len(), "urn:uuid:".len() + 36, "{serial}");
    }
}
