//! Reproducible layers: a tar of sorted entries with fixed times, owners and modes, gzipped by
//! the builder's own encoder over the pinned miniz_oxide at a fixed level (`gzip`). The same entries always give the same bytes, so the
//! same digest. The layer streams to a file while both digests (of the tar, the `diff_id`, and
//! of the gzip, the blob digest) are computed.

use std::collections::BTreeMap;
use std::io::{self, Write};
use std::path::{Path, PathBuf};

use gantry_oci::Digest;
use sha2::{Digest as _, Sha256};

use crate::gzip::GzipWriter;

/// gzip level of every layer: the smallest output; the level is part of the reproducible recipe.
pub const GZIP_LEVEL: u8 = 9;

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Content {
    Directory,
    Bytes(Vec<u8>),
    /// A file copied from the build host (streamed, not loaded).
    File(PathBuf),
    /// A symbolic link to the given target.
    Symlink(String),
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    pub content: Content,
    pub mode: u32,
    pub uid: u64,
    pub gid: u64,
}

/// A layer's entries by path (without a leading `/`); sorted by the map.
#[derive(Debug, Default, Clone)]
pub struct LayerSpec {
    entries: BTreeMap<String, Entry>,
}

impl LayerSpec {
    /// Adds an entry, and root-owned 0755 directories for its parents that are not there yet.
    pub fn add(&mut self, path: &str, entry: Entry) {
        let path = path
            .trim_start_matches('/')
            .trim_end_matches('/')
            .to_string();
        let mut parent = Path::new(&path).parent();
        while let Some(dir) = parent.filter(|d| !d.as_os_str().is_empty()) {
            self.entries
                .entry(dir.to_string_lossy().into_owned())
                .or_insert(Entry {
                    content: Content::Directory,
                    mode: 0o755,
                    uid: 0,
                    gid: 0,
                });
            parent = dir.parent();
        }
        self.entries.insert(path, entry);
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }
}

/// A layer written to disk.
#[derive(Debug, Clone)]
pub struct BuiltLayer {
    pub path: PathBuf,
    /// Digest of the gzip bytes (the blob).
    pub digest: Digest,
    pub size: u64,
    /// Digest of the uncompressed tar (the config's `rootfs.diff_ids`).
    pub diff_id: Digest,
}

/// A writer that hashes and counts what passes through it.
struct Hashing<W> {
    inner: W,
    hash: Sha256,
    count: u64,
}

impl<W: Write> Write for Hashing<W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let n = self.inner.write(buf)?;
        self.hash.update(&buf[..n]);
        self.count += n as u64;
        Ok(n)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.inner.flush()
    }
}

fn hashing<W>(inner: W) -> Hashing<W> {
    Hashing {
        inner,
        hash: Sha256::new(),
        count: 0,
    }
}

fn digest_of(hash: Sha256) -> Digest {
    format!("sha256:{}", hex::encode(hash.finalize()))
        .parse()
        .expect("a sha256 digest")
}

/// Writes `spec` as a gzipped tar at `path`, every entry stamped with `mtime`.
pub fn write(spec: &LayerSpec, mtime: u64, path: &Path) -> io::Result<BuiltLayer> {
    let file = std::fs::File::create(path)?;
    let compressed = hashing(io::BufWriter::new(file));
    let gzip = GzipWriter::new(compressed, GZIP_LEVEL)?;
    let mut tar = tar::Builder::new(hashing(gzip));
    tar.mode(tar::HeaderMode::Deterministic);
    for (name, entry) in &spec.entries {
        let mut header = tar::Header::new_gnu();
        header.set_mtime(mtime);
        header.set_uid(entry.uid);
        header.set_gid(entry.gid);
        header.set_mode(entry.mode);
        match &entry.content {
            Content::Directory => {
                header.set_entry_type(tar::EntryType::Directory);
                header.set_size(0);
                tar.append_data(&mut header, format!("{name}/"), io::empty())?;
            }
            Content::Bytes(bytes) => {
                header.set_entry_type(tar::EntryType::Regular);
                header.set_size(bytes.len() as u64);
                tar.append_data(&mut header, name, bytes.as_slice())?;
            }
            Content::File(source) => {
                let file = std::fs::File::open(source)?;
                header.set_entry_type(tar::EntryType::Regular);
                header.set_size(file.metadata()?.len());
                tar.append_data(&mut header, name, io::BufReader::new(file))?;
            }
            Content::Symlink(target) => {
                header.set_entry_type(tar::EntryType::Symlink);
                header.set_size(0);
                tar.append_link(&mut header, name, target)?;
            }
        }
    }
    let tar_stream = tar.into_inner()?;
    let diff_id = digest_of(tar_stream.hash);
    let mut compressed = tar_stream.inner.finish()?;
    compressed.flush()?;
    let size = compressed.count;
    let digest = digest_of(compressed.hash);
    compressed.inner.into_inner()?.sync_all()?;
    Ok(BuiltLayer {
        path: path.to_path_buf(),
        digest,
        size,
        diff_id,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn file(bytes: &[u8], mode: u32) -> Entry {
        Entry {
            content: Content::Bytes(bytes.to_vec()),
            mode,
            uid: 0,
            gid: 0,
        }
    }

    #[test]
    fn same_entries_give_the_same_bytes_whatever_the_insertion_order() {
        let dir = tempfile::tempdir().unwrap();
        let mut a = LayerSpec::default();
        a.add("/etc/passwd", file(b"root:x:0:0::/:\n", 0o644));
        a.add("/app/hello", file(b"\x7fELF...", 0o755));
        let mut b = LayerSpec::default();
        b.add("/app/hello", file(b"\x7fELF...", 0o755));
        b.add("/etc/passwd", file(b"root:x:0:0::/:\n", 0o644));
        let la = write(&a, 1_700_000_000, &dir.path().join("a")).unwrap();
        let lb = write(&b, 1_700_000_000, &dir.path().join("b")).unwrap();
        assert_eq!(la.digest, lb.digest);
        assert_eq!(la.diff_id, lb.diff_id);
        assert_eq!(
            std::fs::read(&la.path).unwrap(),
            std::fs::read(&lb.path).unwrap()
        );
        let lc = write(&a, 1_700_000_001, &dir.path().join("c")).unwrap();
        assert_ne!(la.digest, lc.digest, "the time is part of the content");
    }

    #[test]
    fn the_tar_holds_sorted_entries_with_parents_and_fixed_metadata() {
        let dir = tempfile::tempdir().unwrap();
        let mut spec = LayerSpec::default();
        spec.add(
            "/home/nonroot",
            Entry {
                content: Content::Directory,
                mode: 0o700,
                uid: 65532,
                gid: 65532,
            },
        );
        spec.add("/etc/ssl/certs/ca.crt", file(b"PEM", 0o644));
        spec.add(
            "/bin/sh",
            Entry {
                content: Content::Symlink("busybox".into()),
                mode: 0o777,
                uid: 0,
                gid: 0,
            },
        );
        let layer = write(&spec, 42, &dir.path().join("l")).unwrap();
        assert_eq!(layer.size, std::fs::metadata(&layer.path).unwrap().len());
        let gz = std::fs::read(&layer.path).unwrap();
        assert_eq!(Digest::sha256_of(&gz), layer.digest);
        let mut tar_bytes = Vec::new();
        io::Read::read_to_end(
            &mut flate2::read::GzDecoder::new(gz.as_slice()),
            &mut tar_bytes,
        )
        .unwrap();
        assert_eq!(Digest::sha256_of(&tar_bytes), layer.diff_id);
        let mut archive = tar::Archive::new(tar_bytes.as_slice());
        let listed: Vec<(String, u64, u64, u32)> = archive
            .entries()
            .unwrap()
            .map(|e| {
                let e = e.unwrap();
                let h = e.header();
                (
                    e.path().unwrap().to_string_lossy().into_owned(),
                    h.mtime().unwrap(),
                    h.uid().unwrap(),
                    h.mode().unwrap(),
                )
            })
            .collect();
        let names: Vec<&str> = listed.iter().map(|l| l.0.as_str()).collect();
        assert_eq!(
            names,
            [
                "bin/",
                "bin/sh",
                "etc/",
                "etc/ssl/",
                "etc/ssl/certs/",
                "etc/ssl/certs/ca.crt",
                "home/",
                "home/nonroot/"
            ]
        );
        assert!(listed.iter().all(|l| l.1 == 42));
        assert_eq!(listed[7].2, 65532);
        assert_eq!(listed[7].3, 0o700);
    }
}
