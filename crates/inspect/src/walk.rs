//! The layer walker: an image's layers, bottom first, read as streams (tar, tar+gzip or
//! tar+zstd → tar entries) one at a time, with whiteouts and opaque directories applied
//! (OCI image spec, layer.md "Whiteouts"), so the result is the image's final filesystem and a
//! file a later layer deleted is not reported. A caller's `examine` sees each regular file's
//! bytes as they stream past and keeps what it found (a parsed package database, a Go binary's
//! build info); what it keeps for a path that a later layer overwrites or deletes goes with it.
//! Memory holds one entry of the path map per live file plus what `examine` keeps.
//!
//! A layer is decompressed on a thread of its own, a bounded queue ahead of the tar reader
//! ([`READ_AHEAD_CHUNKS`] × [`READ_AHEAD_CHUNK`] bytes at most), so inflating runs beside
//! reading entries and examining files: on two cores a layer takes the longer of the two,
//! not their sum.

use std::collections::BTreeMap;
use std::io::{self, Read};
use std::sync::mpsc::{sync_channel, Receiver, SyncSender};

use gantry_oci::media_type::{layer_compression, LayerCompression};
use serde::Serialize;

/// One layer to read: what its descriptor says and its blob's bytes.
pub struct LayerInput<R> {
    pub digest: String,
    /// The descriptor's media type; with the blob's first bytes it decides the decompression.
    pub media_type: String,
    /// The blob's size in bytes (compressed, as stored).
    pub compressed: u64,
    /// What the image config's history says made it, if anything.
    pub created_by: Option<String>,
    /// The blob: tar, tar+gzip or tar+zstd.
    pub blob: R,
}

/// One layer as read.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct LayerReport {
    pub digest: String,
    /// Bytes as stored.
    pub compressed: u64,
    /// Bytes of the tar stream.
    pub uncompressed: u64,
    /// Regular files in the layer.
    pub files: u64,
    /// What the image config's history says made it, if anything.
    pub created_by: Option<String>,
}

/// A file that a later layer replaced or deleted: its bytes still ship in the image.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct Waste {
    pub path: String,
    pub size: u64,
    pub layer: usize,
    /// `overwritten` or `deleted`, by layer `by`.
    pub how: &'static str,
    pub by: usize,
}

/// A regular file of the final filesystem.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LiveFile<T> {
    /// Bytes.
    pub size: u64,
    /// Index of the layer it comes from (0 = bottom).
    pub layer: usize,
    /// What `examine` kept of it.
    pub found: Option<T>,
}

/// A regular file as it streams past `examine`.
pub struct Entry<'a> {
    /// Cleaned path: no leading `./` or `/`, e.g. `usr/bin/app`.
    pub path: &'a str,
    /// Bytes.
    pub size: u64,
    /// Permission bits from the tar header, e.g. 0o755.
    pub mode: u32,
    /// The file's bytes; whatever `examine` leaves unread is skipped.
    pub content: &'a mut dyn Read,
}

/// The walk's result: per-layer figures, the final filesystem's regular files (path →
/// size, layer, what `examine` kept), and the files later layers overwrote or deleted.
#[derive(Debug)]
pub struct Walk<T> {
    pub layers: Vec<LayerReport>,
    pub files: BTreeMap<String, LiveFile<T>>,
    pub wasted: Vec<Waste>,
}

/// The magic numbers that open a gzip member (RFC 1952) and a zstd frame (RFC 8878).
const GZIP_MAGIC: &[u8] = &[0x1f, 0x8b];
const ZSTD_MAGIC: &[u8] = &[0x28, 0xb5, 0x2f, 0xfd];
/// Where a POSIX (ustar) tar header says `ustar`.
const USTAR_MAGIC_AT: std::ops::Range<usize> = 257..262;

/// Bytes of one chunk of decompressed layer handed from the decompressing thread.
pub const READ_AHEAD_CHUNK: usize = 256 * 1024;
/// Chunks queued ahead of the tar reader at most.
pub const READ_AHEAD_CHUNKS: usize = 4;

/// Reads `source` to its end in chunks of [`READ_AHEAD_CHUNK`] bytes into `queue`; an error
/// is queued as the last item. Stops when the reading end is gone.
fn read_into(mut source: impl Read, queue: SyncSender<io::Result<Vec<u8>>>) {
    loop {
        let mut chunk = vec![0; READ_AHEAD_CHUNK];
        let mut filled = 0;
        let outcome = loop {
            match source.read(&mut chunk[filled..]) {
                Ok(0) => break Ok(()),
                Ok(n) => {
                    filled += n;
                    if filled == chunk.len() {
                        break Ok(());
                    }
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => break Err(e),
            }
        };
        chunk.truncate(filled);
        let end = filled < READ_AHEAD_CHUNK || outcome.is_err();
        if filled > 0 && queue.send(Ok(chunk)).is_err() {
            return;
        }
        if let Err(e) = outcome {
            let _ = queue.send(Err(e));
        }
        if end {
            return;
        }
    }
}

/// The reading end of [`read_into`]'s queue, as a stream of bytes: the end of the stream when
/// the queue's sender is done.
struct Queued {
    queue: Receiver<io::Result<Vec<u8>>>,
    chunk: Vec<u8>,
    at: usize,
}

impl Read for Queued {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        while self.at == self.chunk.len() {
            match self.queue.recv() {
                Ok(next) => {
                    self.chunk = next?;
                    self.at = 0;
                }
                Err(_) => return Ok(0),
            }
        }
        let n = buf.len().min(self.chunk.len() - self.at);
        buf[..n].copy_from_slice(&self.chunk[self.at..self.at + n]);
        self.at += n;
        Ok(n)
    }
}

/// Opens a layer blob as its uncompressed tar stream, streaming. The blob's own first bytes
/// decide (tools label layers loosely: Docker's "tar.gzip" layers are sometimes plain tar,
/// `buildah commit --disable-compression` writes tar); the media type only rules out reading a
/// blob declared compressed that is neither compressed nor a tar. Multi-member gzip (eStargz)
/// and multi-frame zstd are read to the end; zstd keeps the decoder's default window limit
/// (128 MiB), so memory stays bounded whatever the blob says.
///
/// Errors: `InvalidData` when a blob declared gzip or zstd starts with neither its magic nor a
/// tar header; I/O errors reading the blob.
pub fn open_layer<'a, R: Read + Send + 'a>(
    mut blob: R,
    media_type: &str,
) -> io::Result<Box<dyn Read + Send + 'a>> {
    let mut head = Vec::with_capacity(USTAR_MAGIC_AT.end);
    (&mut blob)
        .take(USTAR_MAGIC_AT.end as u64)
        .read_to_end(&mut head)?;
    let is_tar = head.get(USTAR_MAGIC_AT) == Some(b"ustar".as_slice());
    let compression = if head.starts_with(GZIP_MAGIC) {
        LayerCompression::Gzip
    } else if head.starts_with(ZSTD_MAGIC) {
        LayerCompression::Zstd
    } else {
        match layer_compression(media_type) {
            Some(declared @ (LayerCompression::Gzip | LayerCompression::Zstd)) if !is_tar => {
                return Err(io::Error::new(
                    io::ErrorKind::InvalidData,
                    format!(
                        "the layer is declared {media_type} but is neither {declared:?}-compressed nor a tar"
                    ),
                ))
            }
            _ => LayerCompression::None,
        }
    };
    let blob = io::Cursor::new(head).chain(blob);
    Ok(match compression {
        LayerCompression::None => Box::new(blob),
        LayerCompression::Gzip => Box::new(flate2::read::MultiGzDecoder::new(blob)),
        LayerCompression::Zstd => Box::new(zstd::stream::read::Decoder::new(blob)?),
    })
}

/// Normalises a tar path: no leading `./` or `/`, no trailing `/`.
pub fn clean(path: &str) -> String {
    path.trim_start_matches("./")
        .trim_start_matches('/')
        .trim_end_matches('/')
        .to_string()
}

/// Walks `layers`, bottom first, calling `examine` on every regular file; see the module
/// docs. Errors (I/O, decompression, a malformed tar, or `examine`'s own) name the layer.
pub fn walk<R: Read + Send, T>(
    layers: impl IntoIterator<Item = LayerInput<R>>,
    mut examine: impl FnMut(Entry<'_>) -> io::Result<Option<T>>,
) -> io::Result<Walk<T>> {
    let mut live: BTreeMap<String, LiveFile<T>> = BTreeMap::new();
    let mut wasted = Vec::new();
    let mut reports = Vec::new();
    for (index, layer) in layers.into_iter().enumerate() {
        let in_layer =
            |e: io::Error| io::Error::new(e.kind(), format!("layer {}: {e}", layer.digest));
        let tar = open_layer(layer.blob, &layer.media_type).map_err(in_layer)?;
        let (sender, queue) = sync_channel(READ_AHEAD_CHUNKS);
        let mut files = 0;
        let mut uncompressed = 0;
        let mut read_entries = |counted: &mut Counting<Queued>| -> io::Result<()> {
            let mut archive = tar::Archive::new(&mut *counted);
            for entry in archive.entries()? {
                let mut entry = entry?;
                let path = clean(&entry.path()?.to_string_lossy());
                let (dir, name) = path.rsplit_once('/').unwrap_or(("", path.as_str()));
                if name == ".wh..wh..opq" {
                    // Opaque directory: everything below it from lower layers is gone.
                    let prefix = if dir.is_empty() {
                        String::new()
                    } else {
                        format!("{dir}/")
                    };
                    delete_from(&mut live, &mut wasted, index, |p, layer| {
                        p.starts_with(&prefix) && layer < index
                    });
                    continue;
                }
                if let Some(target) = name.strip_prefix(".wh.") {
                    let target = if dir.is_empty() {
                        target.to_string()
                    } else {
                        format!("{dir}/{target}")
                    };
                    let prefix = format!("{target}/");
                    delete_from(&mut live, &mut wasted, index, |p, _| {
                        p == target || p.starts_with(&prefix)
                    });
                    continue;
                }
                if !entry.header().entry_type().is_file() {
                    continue;
                }
                files += 1;
                let size = entry.header().size()?;
                let mode = entry.header().mode()?;
                let found = examine(Entry {
                    path: &path,
                    size,
                    mode,
                    content: &mut entry,
                })
                .map_err(|e| io::Error::new(e.kind(), format!("{path}: {e}")))?;
                let file = LiveFile {
                    size,
                    layer: index,
                    found,
                };
                if let Some(old) = live.insert(path.clone(), file) {
                    wasted.push(Waste {
                        path,
                        size: old.size,
                        layer: old.layer,
                        how: "overwritten",
                        by: index,
                    });
                }
            }
            // Whatever the tar reader left unread (padding) still counts as uncompressed bytes.
            io::copy(counted, &mut io::sink())?;
            Ok(())
        };
        std::thread::scope(|scope| {
            scope.spawn(move || read_into(tar, sender));
            let mut counted = Counting {
                inner: Queued {
                    queue,
                    chunk: Vec::new(),
                    at: 0,
                },
                count: 0,
            };
            let read = read_entries(&mut counted);
            uncompressed = counted.count;
            // Dropping the queue (with `counted`) stops the thread if the walk stopped early.
            drop(counted);
            read
        })
        .map_err(in_layer)?;
        reports.push(LayerReport {
            digest: layer.digest,
            compressed: layer.compressed,
            uncompressed,
            files,
            created_by: layer.created_by,
        });
    }
    Ok(Walk {
        layers: reports,
        files: live,
        wasted,
    })
}

/// Removes the live files `doomed` picks, recording them as deleted by layer `by`.
fn delete_from<T>(
    live: &mut BTreeMap<String, LiveFile<T>>,
    wasted: &mut Vec<Waste>,
    by: usize,
    doomed: impl Fn(&str, usize) -> bool,
) {
    let gone: Vec<String> = live
        .iter()
        .filter(|(p, file)| doomed(p, file.layer))
        .map(|(p, _)| p.clone())
        .collect();
    for path in gone {
        let file = live.remove(&path).expect("listed");
        wasted.push(Waste {
            path,
            size: file.size,
            layer: file.layer,
            how: "deleted",
            by,
        });
    }
}

struct Counting<R> {
    inner: R,
    count: u64,
}

impl<R: Read> Read for Counting<R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.count += n as u64;
        Ok(n)
    }
}

/// Layers for tests.
#[cfg(any(test, feature = "test-support"))]
pub mod testing {
    use super::LayerInput;

    /// A plain tar layer (mode 0755 files) of `(path, bytes)`, `.wh.` names included as they
    /// are.
    pub fn tar_layer(files: &[(&str, &[u8])]) -> LayerInput<std::io::Cursor<Vec<u8>>> {
        let mut builder = tar::Builder::new(Vec::new());
        for (path, bytes) in files {
            let mut header = tar::Header::new_ustar();
            header.set_size(bytes.len() as u64);
            header.set_mode(0o755);
            header.set_cksum();
            builder.append_data(&mut header, path, *bytes).unwrap();
        }
        let blob = builder.into_inner().unwrap();
        LayerInput {
            digest: "sha256:layer".into(),
            media_type: gantry_oci::media_type::OCI_LAYER.into(),
            compressed: blob.len() as u64,
            created_by: None,
            blob: std::io::Cursor::new(blob),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::testing::tar_layer;
    use super::*;

    #[test]
    fn what_examine_kept_goes_with_a_file_a_later_layer_deletes_or_overwrites() {
        let layers = vec![
            tar_layer(&[
                ("etc/os-release", b"ID=alpine"),
                ("app/old", b"old binary"),
                ("app/kept", b"kept binary"),
                ("var/db/x", b"under an opaque dir"),
            ]),
            tar_layer(&[
                ("app/.wh.old", b""),
                ("etc/os-release", b"ID=debian"),
                ("var/db/.wh..wh..opq", b""),
                ("var/db/y", b"new"),
            ]),
        ];
        let walked = walk(layers, |entry| {
            let mut text = String::new();
            entry.content.read_to_string(&mut text)?;
            Ok(Some((text, entry.mode)))
        })
        .unwrap();
        let found: Vec<(&str, &str, usize)> = walked
            .files
            .iter()
            .map(|(p, f)| (p.as_str(), f.found.as_ref().unwrap().0.as_str(), f.layer))
            .collect();
        assert_eq!(
            found,
            [
                ("app/kept", "kept binary", 0),
                ("etc/os-release", "ID=debian", 1),
                ("var/db/y", "new", 1),
            ]
        );
        assert!(walked
            .files
            .values()
            .all(|f| f.found.as_ref().unwrap().1 == 0o755));
        assert_eq!(walked.wasted.len(), 3);
    }

    #[test]
    fn an_opaque_whiteout_at_the_root_hides_every_lower_file() {
        let layers = vec![
            tar_layer(&[("a", b"1"), ("dir/b", b"2")]),
            tar_layer(&[(".wh..wh..opq", b""), ("c", b"3")]),
        ];
        let walked = walk(layers, |_| Ok(None::<()>)).unwrap();
        assert_eq!(walked.files.keys().collect::<Vec<_>>(), ["c"]);
    }

    /// The decompressing thread is a bounded queue ahead: a walk that stops early (an error of
    /// `examine`) returns at once, without reading the rest of a layer many queues long, and
    /// the uncompressed size counts every byte of a layer read to its end.
    #[test]
    fn a_walk_stopped_by_examine_returns_and_a_full_one_counts_every_byte() {
        let big = vec![7u8; 5 * READ_AHEAD_CHUNKS * READ_AHEAD_CHUNK];
        let layer = || tar_layer(&[("first", b"1"), ("big", &big), ("last", b"2")]);
        let stopped = walk(vec![layer()], |entry| {
            Err::<Option<()>, _>(io::Error::other(format!("stop at {}", entry.path)))
        })
        .unwrap_err();
        assert!(stopped.to_string().contains("stop at first"), "{stopped}");
        let walked = walk(vec![layer()], |entry| {
            let mut bytes = Vec::new();
            entry.content.read_to_end(&mut bytes)?;
            Ok(Some(bytes.len()))
        })
        .unwrap();
        assert_eq!(walked.files["big"].found, Some(big.len()));
        assert_eq!(walked.layers[0].uncompressed, layer().compressed);
    }

    /// A layer that fails to decompress halfway reports the error, naming the layer.
    #[test]
    fn a_layer_corrupt_halfway_fails_the_walk_naming_it() {
        let mut layer = tar_layer(&[("big", &vec![1u8; 3 * READ_AHEAD_CHUNK])]);
        let tar = layer.blob.into_inner();
        let mut gzip = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        io::Write::write_all(&mut gzip, &tar).unwrap();
        let mut compressed = gzip.finish().unwrap();
        let half = compressed.len() / 2;
        compressed.truncate(half);
        layer.blob = io::Cursor::new(compressed);
        layer.media_type = gantry_oci::media_type::OCI_LAYER_GZIP.into();
        let failed = walk(vec![layer], |_| Ok(None::<()>)).unwrap_err();
        assert!(failed.to_string().contains("sha256:layer"), "{failed}");
    }
}
