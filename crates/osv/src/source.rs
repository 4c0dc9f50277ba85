//! Reading OSV records as databases publish them: a per-ecosystem `all.zip` (one JSON record
//! per entry, read entry by entry), a directory tree of `*.json` files (as in the databases'
//! git repositories), or one JSON file (a record, or an array of records).
//!
//! A record that does not parse is reported as [`Item::Malformed`] with its file name and
//! skipped; only a source that cannot be read at all (missing, not a zip, unreadable
//! directory) is an error. Files whose names do not end in `.json` are skipped silently
//! (licences, READMEs). Memory stays bounded: one record at a time, each at most
//! [`MAX_RECORD_BYTES`].

use std::collections::VecDeque;
use std::fs::File;
use std::io::{self, BufReader, Read, Seek};
use std::path::{Path, PathBuf};

use crate::schema::Advisory;

/// The largest record read (the Go database's largest is ~60 KiB); a larger entry is reported
/// as malformed instead of filling memory.
pub const MAX_RECORD_BYTES: u64 = 16 * 1024 * 1024;

/// One record of a source, parsed.
#[derive(Debug, Clone)]
pub struct Record {
    /// Where it came from: the zip entry's name, or the file's path below the directory.
    pub file: String,
    /// The record's JSON text as published (every field, including those not typed here).
    pub json: String,
    pub advisory: Advisory,
}

/// A record that could not be read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Malformed {
    /// The zip entry's name or the file's path.
    pub file: String,
    /// What was wrong (the JSON path and the parser's message).
    pub error: String,
}

/// What a source yields, record by record.
#[derive(Debug, Clone)]
pub enum Item {
    Record(Box<Record>),
    Malformed(Malformed),
}

/// A source that cannot be read at all.
#[derive(Debug, thiserror::Error)]
pub enum SourceError {
    #[error("cannot read {}: {source}", path.display())]
    Io {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("{} is not a readable zip archive: {source}", path.display())]
    Zip {
        path: PathBuf,
        #[source]
        source: zip::result::ZipError,
    },
}

/// The records of a source, one at a time: see [`open`].
pub struct SourceReader {
    path: PathBuf,
    kind: ReaderKind,
    pending: VecDeque<Item>,
}

enum ReaderKind {
    Zip {
        archive: Box<zip::ZipArchive<BufReader<File>>>,
        next: usize,
    },
    Files {
        root: PathBuf,
        files: std::vec::IntoIter<PathBuf>,
    },
}

/// Opens a source: a directory (every `*.json` below it, in path order), a zip archive
/// (recognised by its signature, whatever its name), or a JSON file.
///
/// Errors: the path cannot be read, or a file that starts like a zip is not a readable one.
pub fn open(path: &Path) -> Result<SourceReader, SourceError> {
    let io_error = |source| SourceError::Io {
        path: path.to_path_buf(),
        source,
    };
    let metadata = std::fs::metadata(path).map_err(io_error)?;
    let kind = if metadata.is_dir() {
        let mut files = Vec::new();
        collect_json_files(path, &mut files)?;
        files.sort();
        ReaderKind::Files {
            root: path.to_path_buf(),
            files: files.into_iter(),
        }
    } else {
        let mut file = File::open(path).map_err(io_error)?;
        let mut signature = [0u8; 4];
        let is_zip =
            file.read(&mut signature).map_err(io_error)? == 4 && signature == *b"PK\x03\x04";
        if is_zip {
            file.rewind().map_err(io_error)?;
            let archive =
                zip::ZipArchive::new(BufReader::new(file)).map_err(|source| SourceError::Zip {
                    path: path.to_path_buf(),
                    source,
                })?;
            ReaderKind::Zip {
                archive: Box::new(archive),
                next: 0,
            }
        } else {
            ReaderKind::Files {
                root: path.parent().unwrap_or(Path::new("")).to_path_buf(),
                files: vec![path.to_path_buf()].into_iter(),
            }
        }
    };
    Ok(SourceReader {
        path: path.to_path_buf(),
        kind,
        pending: VecDeque::new(),
    })
}

fn collect_json_files(dir: &Path, files: &mut Vec<PathBuf>) -> Result<(), SourceError> {
    let io_error = |source| SourceError::Io {
        path: dir.to_path_buf(),
        source,
    };
    for entry in std::fs::read_dir(dir).map_err(io_error)? {
        let entry = entry.map_err(io_error)?;
        let path = entry.path();
        let file_type = entry.file_type().map_err(io_error)?;
        if file_type.is_dir() {
            collect_json_files(&path, files)?;
        } else if path.extension().is_some_and(|ext| ext == "json") {
            files.push(path);
        }
    }
    Ok(())
}

impl SourceReader {
    /// The number of entries a zip archive holds (files of a directory), for progress.
    pub fn len_hint(&self) -> usize {
        match &self.kind {
            ReaderKind::Zip { archive, .. } => archive.len(),
            ReaderKind::Files { files, .. } => files.len(),
        }
    }

    fn next_zip_entry(
        archive: &mut zip::ZipArchive<BufReader<File>>,
        index: usize,
        path: &Path,
    ) -> Result<Option<FileBytes>, SourceError> {
        let entry = archive.by_index(index).map_err(|source| SourceError::Zip {
            path: path.to_path_buf(),
            source,
        })?;
        let name = entry
            .name()
            .map(|name| name.into_owned())
            .unwrap_or_else(|_| String::from_utf8_lossy(entry.name_raw()).into_owned());
        if entry.is_dir() || !name.ends_with(".json") {
            return Ok(None);
        }
        Ok(Some((name, read_bounded(entry))))
    }
}

/// A file's name, and its bytes or why they could not be read.
type FileBytes = (String, Result<Vec<u8>, String>);

/// Reads at most [`MAX_RECORD_BYTES`]; a longer record is an error message.
fn read_bounded(reader: impl Read) -> Result<Vec<u8>, String> {
    let mut bytes = Vec::new();
    reader
        .take(MAX_RECORD_BYTES + 1)
        .read_to_end(&mut bytes)
        .map_err(|e| e.to_string())?;
    if bytes.len() as u64 > MAX_RECORD_BYTES {
        return Err(format!("larger than {MAX_RECORD_BYTES} bytes"));
    }
    Ok(bytes)
}

impl Iterator for SourceReader {
    type Item = Result<Item, SourceError>;

    fn next(&mut self) -> Option<Self::Item> {
        loop {
            if let Some(item) = self.pending.pop_front() {
                return Some(Ok(item));
            }
            let (file, bytes) = match &mut self.kind {
                ReaderKind::Zip { archive, next } => {
                    if *next >= archive.len() {
                        return None;
                    }
                    let index = *next;
                    *next += 1;
                    match Self::next_zip_entry(archive, index, &self.path) {
                        Ok(Some(entry)) => entry,
                        Ok(None) => continue,
                        Err(e) => return Some(Err(e)),
                    }
                }
                ReaderKind::Files { root, files } => {
                    let path = files.next()?;
                    let name = path
                        .strip_prefix(root.as_path())
                        .unwrap_or(&path)
                        .display()
                        .to_string();
                    let bytes = File::open(&path)
                        .map_err(|e| e.to_string())
                        .and_then(read_bounded);
                    (name, bytes)
                }
            };
            match bytes {
                Ok(bytes) => parse_records(&file, &bytes, &mut self.pending),
                Err(error) => self
                    .pending
                    .push_back(Item::Malformed(Malformed { file, error })),
            }
        }
    }
}

/// Parses one file's bytes: a record, or a JSON array of records (each reported on its own,
/// as `FILE[INDEX]`).
pub fn parse_records(file: &str, bytes: &[u8], out: &mut VecDeque<Item>) {
    let malformed = |file: String, error: String| Item::Malformed(Malformed { file, error });
    let text = match std::str::from_utf8(bytes) {
        Ok(text) => text.trim_start_matches('\u{feff}'),
        Err(e) => {
            out.push_back(malformed(file.to_string(), format!("not UTF-8: {e}")));
            return;
        }
    };
    if text.trim_start().starts_with('[') {
        match serde_json::from_str::<Vec<serde_json::Value>>(text) {
            Ok(records) => {
                for (index, record) in records.iter().enumerate() {
                    out.push_back(parse_record(
                        &format!("{file}[{index}]"),
                        &record.to_string(),
                    ));
                }
            }
            Err(e) => out.push_back(malformed(file.to_string(), e.to_string())),
        }
    } else {
        out.push_back(parse_record(file, text));
    }
}

/// One record from its JSON text.
pub fn parse_record(file: &str, json: &str) -> Item {
    // The plain parser first: tracking the path costs on every record (~10 ms of `gantry
    // scan --db` on the Go database's 4,291), and only a malformed record needs it.
    let parsed = serde_json::from_str::<Advisory>(json).or_else(|_| {
        let mut deserializer = serde_json::Deserializer::from_str(json);
        serde_path_to_error::deserialize::<_, Advisory>(&mut deserializer)
            .map_err(|e| format!("{} (at {})", e.inner(), e.path()))
            .and_then(|advisory| {
                deserializer.end().map_err(|e| e.to_string())?;
                Ok(advisory)
            })
    });
    match parsed {
        Ok(advisory) if advisory.id.trim().is_empty() => Item::Malformed(Malformed {
            file: file.to_string(),
            error: "the record's id is empty".to_string(),
        }),
        Ok(advisory) => Item::Record(Box::new(Record {
            file: file.to_string(),
            json: json.to_string(),
            advisory,
        })),
        Err(error) => Item::Malformed(Malformed {
            file: file.to_string(),
            error,
        }),
    }
}
