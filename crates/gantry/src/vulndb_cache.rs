//! The prepared database that `gantry scan --db` scans against: the OSV sources given,
//! imported once (as `gantry vulndb import` does) into a SQLite store under the cache
//! directory and reused while they are unchanged, so a scan reads the records of the image's
//! packages only instead of the whole database every time (as Trivy and govulncheck keep
//! theirs between runs).
//!
//! An entry is named by a SHA-256 over Gantry's version and each source: a file's canonical
//! path and contents; a directory's canonical path and every file's relative path, size and
//! modification time (re-hashing tens of thousands of records would cost what the cache
//! saves). An entry is built in a temporary directory beside the others and renamed into
//! place, so a scan never opens a half-built one and two scans racing to build it both
//! succeed. A new entry replaces the ones built earlier from the same paths.

use std::io::Read;
use std::path::{Path, PathBuf};

use anyhow::Context;
use gantry_meta::MetaStore;
use sha2::{Digest as _, Sha256};

/// What names the store file inside an entry.
const STORE_FILE: &str = "meta.db";
/// The canonical source paths of an entry, one per line (to find its predecessors).
const SOURCES_FILE: &str = "sources";

/// Where scans keep prepared databases when not told: `$XDG_CACHE_HOME/gantry`, else
/// `$HOME/.cache/gantry`; `None` when neither is set.
pub fn default_dir() -> Option<PathBuf> {
    let from = |name: &str| std::env::var_os(name).filter(|v| !v.is_empty());
    from("XDG_CACHE_HOME")
        .map(PathBuf::from)
        .or_else(|| from("HOME").map(|home| Path::new(&home).join(".cache")))
        .map(|dir| dir.join("gantry"))
}

/// The store holding `sources` (OSV zips, directories or JSON files), prepared under
/// `cache_dir` (built now when missing) or, without one, in a temporary directory kept in
/// the returned guard. `quiet`: no progress bars while building.
pub async fn open(
    sources: &[PathBuf],
    cache_dir: Option<&Path>,
    quiet: bool,
) -> anyhow::Result<(MetaStore, Option<tempfile::TempDir>)> {
    let canonical: Vec<PathBuf> = sources
        .iter()
        .map(|path| {
            path.canonicalize().with_context(|| {
                format!(
                    "--db {}: give an OSV all.zip, a directory or a JSON file",
                    path.display()
                )
            })
        })
        .collect::<anyhow::Result<_>>()?;
    let Some(cache_dir) = cache_dir else {
        let temp = tempfile::tempdir()?;
        let store = build(&canonical, temp.path(), quiet).await?;
        return Ok((store, Some(temp)));
    };
    let entries = cache_dir.join("vulndb");
    let key = tokio::task::block_in_place(|| key(&canonical))?;
    let entry = entries.join(&key);
    if !entry.join(STORE_FILE).is_file() {
        std::fs::create_dir_all(&entries)
            .with_context(|| format!("cannot create the cache directory {}", entries.display()))?;
        let building = tempfile::Builder::new()
            .prefix(".building-")
            .tempdir_in(&entries)?;
        build(&canonical, building.path(), quiet)
            .await?
            .close()
            .await;
        let listed: Vec<String> = canonical.iter().map(|p| p.display().to_string()).collect();
        std::fs::write(building.path().join(SOURCES_FILE), listed.join("\n"))?;
        // Another scan may have built the same entry meanwhile: then its copy serves.
        if std::fs::rename(building.path(), &entry).is_ok() {
            remove_predecessors(&entries, &key, &listed.join("\n"));
        }
    }
    let store = MetaStore::open_sqlite(&entry.join(STORE_FILE))
        .await
        .with_context(|| {
            format!(
                "cannot open the prepared database {}: delete it to have it built again",
                entry.display()
            )
        })?;
    Ok((store, None))
}

/// Imports every source into a new store in `dir`, each as a source of its own.
async fn build(sources: &[PathBuf], dir: &Path, quiet: bool) -> anyhow::Result<MetaStore> {
    let store = MetaStore::open_sqlite(&dir.join(STORE_FILE)).await?;
    let http = reqwest::Client::new();
    for (index, source) in sources.iter().enumerate() {
        let imported = crate::vulndb_cmd::import_into(
            &store,
            &source.display().to_string(),
            Some(&format!("db{}", index + 1)),
            &http,
            quiet,
        )
        .await
        .with_context(|| format!("--db {}", source.display()))?;
        for skipped in &imported.skipped {
            eprintln!("warning: skipped {}: {}", skipped.file, skipped.error);
        }
    }
    Ok(store)
}

/// The entry name of `sources` (canonical paths): hex SHA-256, see the module docs.
fn key(sources: &[PathBuf]) -> anyhow::Result<String> {
    let mut hash = Sha256::new();
    hash.update(env!("CARGO_PKG_VERSION"));
    for source in sources {
        hash.update([0]);
        hash.update(source.as_os_str().as_encoded_bytes());
        if source.is_dir() {
            let mut files = Vec::new();
            list_files(source, &mut files)?;
            files.sort();
            for (path, size, modified) in files {
                let relative = path.strip_prefix(source).unwrap_or(&path);
                hash.update([1]);
                hash.update(relative.as_os_str().as_encoded_bytes());
                hash.update(size.to_le_bytes());
                hash.update(modified.to_le_bytes());
            }
        } else {
            let mut file = std::fs::File::open(source)
                .with_context(|| format!("cannot read {}", source.display()))?;
            let mut buffer = vec![0; 1 << 16];
            loop {
                let read = file.read(&mut buffer)?;
                if read == 0 {
                    break;
                }
                hash.update(&buffer[..read]);
            }
        }
    }
    Ok(hex::encode(hash.finalize()))
}

/// Every file below `dir`: (path, size in bytes, modification time in ns since the epoch).
fn list_files(dir: &Path, files: &mut Vec<(PathBuf, u64, i128)>) -> anyhow::Result<()> {
    for entry in std::fs::read_dir(dir).with_context(|| format!("cannot read {}", dir.display()))? {
        let entry = entry?;
        let metadata = entry.metadata()?;
        if metadata.is_dir() {
            list_files(&entry.path(), files)?;
        } else {
            let modified = metadata
                .modified()?
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |d| d.as_nanos() as i128);
            files.push((entry.path(), metadata.len(), modified));
        }
    }
    Ok(())
}

/// Removes the entries other than `key` built from the same `sources` (older contents of the
/// same files); an entry another scan still reads keeps working until it closes it.
fn remove_predecessors(entries: &Path, key: &str, sources: &str) {
    let Ok(listing) = std::fs::read_dir(entries) else {
        return;
    };
    for entry in listing.flatten() {
        let path = entry.path();
        let name = entry.file_name();
        if name == key || name.to_string_lossy().starts_with('.') {
            continue;
        }
        if std::fs::read_to_string(path.join(SOURCES_FILE)).is_ok_and(|s| s == sources) {
            let _ = std::fs::remove_dir_all(&path);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_directory_source_gets_a_new_key_when_a_file_in_it_changes() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir(dir.path().join("nested")).unwrap();
        std::fs::write(dir.path().join("nested/GO-1.json"), "{}").unwrap();
        let sources = [dir.path().to_path_buf()];
        let before = key(&sources).unwrap();
        assert_eq!(key(&sources).unwrap(), before);
        std::fs::write(dir.path().join("nested/GO-1.json"), "{\"id\":1}").unwrap();
        assert_ne!(key(&sources).unwrap(), before);
    }

    #[test]
    fn a_file_source_is_keyed_by_its_contents() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("all.zip");
        std::fs::write(&file, "one").unwrap();
        let first = key(std::slice::from_ref(&file)).unwrap();
        std::fs::write(&file, "two").unwrap();
        let second = key(std::slice::from_ref(&file)).unwrap();
        assert_ne!(first, second);
        std::fs::write(&file, "one").unwrap();
        assert_eq!(key(std::slice::from_ref(&file)).unwrap(), first);
    }
}
