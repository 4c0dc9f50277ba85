//! Where the bytes of an image go: per-layer sizes, the largest files, bytes wasted on files
//! that a later layer overwrites or deletes, and what the main binary is. Built on the layer
//! walker (`crate::walk`); only the entrypoint binary is held in memory.

use std::collections::BTreeMap;
use std::io::{self, Read};

use serde::Serialize;

use crate::buildinfo;
use crate::elf;
use crate::walk::{clean, walk};
pub use crate::walk::{LayerInput, LayerReport, Waste};

#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct FileReport {
    pub path: String,
    pub size: u64,
    /// Index of the layer the file comes from.
    pub layer: usize,
}

#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct BinaryReport {
    pub path: String,
    pub size: u64,
    pub elf: bool,
    pub static_linked: Option<bool>,
    pub stripped: Option<bool>,
    pub go_version: Option<String>,
    /// Dependency modules in the Go build info.
    pub modules: Option<usize>,
}

#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct Report {
    pub layers: Vec<LayerReport>,
    pub compressed: u64,
    pub uncompressed: u64,
    pub largest: Vec<FileReport>,
    pub wasted: Vec<Waste>,
    pub wasted_bytes: u64,
    pub binary: Option<BinaryReport>,
    /// Every regular file of the final filesystem and its size (for comparisons).
    #[serde(skip)]
    pub files: BTreeMap<String, u64>,
}

/// How many of the largest files a report lists.
pub const LARGEST: usize = 10;

/// Analyzes layers given bottom first, with `entrypoint` the path of the main binary (from the
/// image config). Errors name the layer they are about.
pub fn analyze<R: Read + Send>(
    layers: impl IntoIterator<Item = LayerInput<R>>,
    entrypoint: Option<&str>,
) -> io::Result<Report> {
    let entrypoint = entrypoint.map(clean);
    let walked = walk(layers, |entry| {
        if entrypoint.as_deref() != Some(entry.path) {
            return Ok(None);
        }
        let mut bytes = Vec::with_capacity(entry.size.min(1 << 30) as usize);
        entry.content.read_to_end(&mut bytes)?;
        Ok(Some(bytes))
    })?;
    let mut largest: Vec<FileReport> = walked
        .files
        .iter()
        .map(|(path, file)| FileReport {
            path: path.clone(),
            size: file.size,
            layer: file.layer,
        })
        .collect();
    largest.sort_by(|a, b| b.size.cmp(&a.size).then_with(|| a.path.cmp(&b.path)));
    largest.truncate(LARGEST);
    let binary = entrypoint
        .as_ref()
        .and_then(|path| Some((path, walked.files.get(path)?.found.as_ref()?)))
        .map(|(path, bytes)| {
            let facts = elf::facts(bytes);
            let info = buildinfo::parse(bytes).ok();
            BinaryReport {
                path: format!("/{path}"),
                size: bytes.len() as u64,
                elf: facts.is_some(),
                static_linked: facts.map(|f| f.static_linked),
                stripped: facts.map(|f| f.stripped),
                go_version: info.as_ref().map(|i| i.go_version.clone()),
                modules: info.map(|i| i.deps.len()),
            }
        });
    Ok(Report {
        compressed: walked.layers.iter().map(|l| l.compressed).sum(),
        uncompressed: walked.layers.iter().map(|l| l.uncompressed).sum(),
        layers: walked.layers,
        largest,
        wasted_bytes: walked.wasted.iter().map(|w| w.size).sum(),
        wasted: walked.wasted,
        binary,
        files: walked
            .files
            .into_iter()
            .map(|(p, file)| (p, file.size))
            .collect(),
    })
}

/// What changed between two images' final filesystems.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct Comparison {
    pub compressed_delta: i64,
    pub uncompressed_delta: i64,
    /// (path, size before, size after), biggest growth first; absent files are 0.
    pub changed: Vec<(String, u64, u64)>,
}

pub fn compare(before: &Report, after: &Report) -> Comparison {
    let mut changed: Vec<(String, u64, u64)> = before
        .files
        .keys()
        .chain(after.files.keys())
        .collect::<std::collections::BTreeSet<_>>()
        .into_iter()
        .filter_map(|path| {
            let a = before.files.get(path).copied().unwrap_or(0);
            let b = after.files.get(path).copied().unwrap_or(0);
            (a != b || before.files.contains_key(path) != after.files.contains_key(path))
                .then(|| (path.clone(), a, b))
        })
        .collect();
    changed.sort_by_key(|(p, a, b)| (std::cmp::Reverse((*b as i64 - *a as i64).abs()), p.clone()));
    Comparison {
        compressed_delta: after.compressed as i64 - before.compressed as i64,
        uncompressed_delta: after.uncompressed as i64 - before.uncompressed as i64,
        changed,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use gantry_builder::layer::{self, Content, Entry, LayerSpec};
    use gantry_oci::media_type::{OCI_LAYER, OCI_LAYER_GZIP, OCI_LAYER_ZSTD};

    fn file(bytes: &[u8]) -> Entry {
        Entry {
            content: Content::Bytes(bytes.to_vec()),
            mode: 0o644,
            uid: 0,
            gid: 0,
        }
    }

    fn layer_of(
        dir: &std::path::Path,
        name: &str,
        files: &[(&str, &[u8])],
    ) -> LayerInput<std::fs::File> {
        let mut spec = LayerSpec::default();
        for (path, bytes) in files {
            spec.add(path, file(bytes));
        }
        let built = layer::write(&spec, 0, &dir.join(name)).unwrap();
        LayerInput {
            digest: built.digest.to_string(),
            media_type: OCI_LAYER_GZIP.into(),
            compressed: built.size,
            created_by: None,
            blob: std::fs::File::open(&built.path).unwrap(),
        }
    }

    #[test]
    fn wasted_bytes_count_overwritten_and_deleted_files() {
        let dir = tempfile::tempdir().unwrap();
        let big = vec![7u8; 100_000];
        let layers = vec![
            layer_of(
                dir.path(),
                "a",
                &[
                    ("data/big.bin", &big),
                    ("data/keep.txt", b"keep"),
                    ("cache/x", b"12345"),
                ],
            ),
            layer_of(
                dir.path(),
                "b",
                &[
                    ("data/keep.txt", b"keep it longer"),
                    ("data/.wh.big.bin", b""),
                    ("cache/.wh..wh..opq", b""),
                ],
            ),
            layer_of(dir.path(), "c", &[("app", b"not an elf")]),
        ];
        let report = analyze(layers, Some("/app")).unwrap();
        assert_eq!(report.layers.len(), 3);
        assert_eq!(report.layers[0].files, 3);
        assert!(report.layers[0].uncompressed > 100_000);
        assert_eq!(
            report.compressed,
            report.layers.iter().map(|l| l.compressed).sum::<u64>()
        );
        let wasted: Vec<(&str, u64, &str)> = report
            .wasted
            .iter()
            .map(|w| (w.path.as_str(), w.size, w.how))
            .collect();
        assert_eq!(
            wasted,
            [
                ("cache/x", 5, "deleted"),
                ("data/big.bin", 100_000, "deleted"),
                ("data/keep.txt", 4, "overwritten"),
            ]
        );
        assert_eq!(report.wasted_bytes, 100_009);
        assert_eq!(report.largest[0].path, "data/keep.txt");
        let binary = report.binary.unwrap();
        assert_eq!(
            (binary.path.as_str(), binary.size, binary.elf),
            ("/app", 10, false)
        );
        assert_eq!(report.files.len(), 2);
    }

    fn input<'a>(media_type: &str, blob: &'a [u8]) -> LayerInput<&'a [u8]> {
        LayerInput {
            digest: "sha256:layer".into(),
            media_type: media_type.into(),
            compressed: blob.len() as u64,
            created_by: None,
            blob,
        }
    }

    #[test]
    fn layers_are_read_as_tar_gzip_or_zstd_by_their_bytes_whatever_the_label() {
        let dir = tempfile::tempdir().unwrap();
        let mut gz = Vec::new();
        layer_of(
            dir.path(),
            "a",
            &[("app", b"binary"), ("etc/big", &[5; 70_000])],
        )
        .blob
        .read_to_end(&mut gz)
        .unwrap();
        let mut tar = Vec::new();
        flate2::read::GzDecoder::new(gz.as_slice())
            .read_to_end(&mut tar)
            .unwrap();
        let zst = zstd::encode_all(tar.as_slice(), 3).unwrap();
        // eStargz-style: several gzip members, one after another.
        let mut two_members = Vec::new();
        for half in tar.chunks(tar.len() / 2 + 1) {
            let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
            std::io::Write::write_all(&mut e, half).unwrap();
            two_members.extend(e.finish().unwrap());
        }
        for (media_type, blob) in [
            (OCI_LAYER_GZIP, &gz),
            (OCI_LAYER, &tar),
            (OCI_LAYER_ZSTD, &zst),
            (OCI_LAYER_GZIP, &two_members),
            // Mislabelled: the bytes decide.
            (OCI_LAYER_GZIP, &tar),
            (OCI_LAYER, &zst),
            (OCI_LAYER_ZSTD, &gz),
        ] {
            let report = analyze(vec![input(media_type, blob)], None)
                .unwrap_or_else(|e| panic!("{media_type}: {e}"));
            let files: Vec<(&str, u64)> =
                report.files.iter().map(|(p, s)| (p.as_str(), *s)).collect();
            assert_eq!(files, [("app", 6), ("etc/big", 70_000)], "{media_type}");
            assert_eq!(report.uncompressed, tar.len() as u64, "{media_type}");
        }
    }

    #[test]
    fn a_layer_declared_compressed_that_is_neither_compressed_nor_tar_is_an_error() {
        for media_type in [OCI_LAYER_GZIP, OCI_LAYER_ZSTD] {
            let err = analyze(vec![input(media_type, b"not a layer at all")], None).unwrap_err();
            assert_eq!(err.kind(), std::io::ErrorKind::InvalidData);
            let message = err.to_string();
            assert!(
                message.contains("sha256:layer") && message.contains(media_type),
                "{message}"
            );
        }
    }

    #[test]
    fn comparison_shows_what_grew() {
        let dir = tempfile::tempdir().unwrap();
        let before = analyze(
            vec![layer_of(
                dir.path(),
                "a",
                &[("app", &[1; 1000]), ("old", b"x")],
            )],
            None,
        )
        .unwrap();
        let after = analyze(
            vec![layer_of(
                dir.path(),
                "b",
                &[("app", &[1; 5000]), ("new", b"yy")],
            )],
            None,
        )
        .unwrap();
        let diff = compare(&before, &after);
        assert_eq!(
            diff.changed,
            [
                ("app".to_string(), 1000, 5000),
                ("new".into(), 0, 2),
                ("old".into(), 1, 0)
            ]
        );
        assert!(diff.uncompressed_delta > 0);
    }
}
