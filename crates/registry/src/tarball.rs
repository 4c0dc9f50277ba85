//! The tar framing of archives, streamed both ways: headers for plain files written one after
//! another, and a reader that hands out each entry's bytes as they arrive. Only what archives
//! hold is accepted (regular files and directories, ustar names); the tar crate builds and
//! decodes the header blocks.

use tokio::io::{AsyncRead, AsyncReadExt};

const BLOCK: u64 = 512;

/// The header block of a regular file `path` of `size` bytes (fixed mode and time, so the
/// same content makes the same archive).
pub(crate) fn file_header(path: &str, size: u64) -> Result<[u8; 512], TarError> {
    let mut header = tar::Header::new_ustar();
    header.set_path(path)?;
    header.set_size(size);
    header.set_mode(0o644);
    header.set_mtime(0);
    header.set_entry_type(tar::EntryType::Regular);
    header.set_cksum();
    Ok(*header.as_bytes())
}

/// Zero bytes that pad an entry of `size` bytes to a whole block.
pub(crate) fn padding(size: u64) -> usize {
    ((BLOCK - size % BLOCK) % BLOCK) as usize
}

/// Two zero blocks end an archive.
pub(crate) const END: [u8; 1024] = [0; 1024];

#[derive(Debug, thiserror::Error)]
pub enum TarError {
    #[error("reading the archive failed: {0}")]
    Io(#[from] std::io::Error),
    #[error("archive header is damaged: {0}")]
    Header(String),
    #[error("archive entry {path:?} is {size} bytes, more than the {limit} allowed for it")]
    TooLarge { path: String, size: u64, limit: u64 },
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Entry {
    pub path: String,
    pub size: u64,
    pub is_dir: bool,
}

pub(crate) struct TarReader<R> {
    inner: R,
    /// Unread bytes of the current entry, then its padding.
    remaining: u64,
    padding: u64,
}

impl<R: AsyncRead + Unpin> TarReader<R> {
    pub fn new(inner: R) -> Self {
        TarReader {
            inner,
            remaining: 0,
            padding: 0,
        }
    }

    /// The next entry, skipping whatever of the current one was not read; `None` at the end.
    pub async fn next_entry(&mut self) -> Result<Option<Entry>, TarError> {
        let rest = self.remaining + self.padding;
        let skipped =
            tokio::io::copy(&mut (&mut self.inner).take(rest), &mut tokio::io::sink()).await?;
        if skipped != rest {
            return Err(TarError::Header("archive ends inside an entry".into()));
        }
        (self.remaining, self.padding) = (0, 0);
        let mut block = [0u8; BLOCK as usize];
        let mut filled = 0;
        while filled < block.len() {
            let n = self.inner.read(&mut block[filled..]).await?;
            if n == 0 {
                return match filled {
                    // Tolerate archives cut after the last entry (no end blocks).
                    0 => Ok(None),
                    _ => Err(TarError::Header("archive ends inside a header".into())),
                };
            }
            filled += n;
        }
        if block.iter().all(|b| *b == 0) {
            return Ok(None);
        }
        let header = tar::Header::from_byte_slice(&block);
        let stored = header
            .cksum()
            .map_err(|e| TarError::Header(e.to_string()))?;
        let computed: u32 = block
            .iter()
            .enumerate()
            .map(|(i, b)| {
                if (148..156).contains(&i) {
                    32
                } else {
                    *b as u32
                }
            })
            .sum();
        if stored != computed {
            return Err(TarError::Header(format!(
                "checksum {stored} does not match {computed}"
            )));
        }
        let path = header
            .path()
            .map_err(|e| TarError::Header(e.to_string()))?
            .to_str()
            .ok_or_else(|| TarError::Header("entry name is not UTF-8".into()))?
            .trim_start_matches("./")
            .to_string();
        let size = header
            .entry_size()
            .map_err(|e| TarError::Header(e.to_string()))?;
        let is_dir = match header.entry_type() {
            tar::EntryType::Regular | tar::EntryType::Continuous => false,
            tar::EntryType::Directory => true,
            other => {
                return Err(TarError::Header(format!(
                    "entry {path:?} is of type {other:?}; archives hold only files and directories"
                )))
            }
        };
        (self.remaining, self.padding) = (size, padding(size) as u64);
        Ok(Some(Entry { path, size, is_dir }))
    }

    /// Reads the next bytes of the current entry into `buf`; 0 at its end.
    pub async fn read(&mut self, buf: &mut [u8]) -> Result<usize, TarError> {
        let want = buf
            .len()
            .min(self.remaining.min(usize::MAX as u64) as usize);
        if want == 0 {
            return Ok(0);
        }
        let n = self.inner.read(&mut buf[..want]).await?;
        if n == 0 {
            return Err(TarError::Header("archive ends inside an entry".into()));
        }
        self.remaining -= n as u64;
        Ok(n)
    }

    /// The whole current entry, which must be at most `limit` bytes.
    pub async fn read_to_end(&mut self, entry: &Entry, limit: u64) -> Result<Vec<u8>, TarError> {
        if entry.size > limit {
            return Err(TarError::TooLarge {
                path: entry.path.clone(),
                size: entry.size,
                limit,
            });
        }
        let mut bytes = vec![0; entry.size as usize];
        let mut filled = 0;
        while filled < bytes.len() {
            filled += self.read(&mut bytes[filled..]).await?;
        }
        Ok(bytes)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn archive(files: &[(&str, Vec<u8>)]) -> Vec<u8> {
        let mut out = Vec::new();
        for (path, content) in files {
            out.extend_from_slice(&file_header(path, content.len() as u64).unwrap());
            out.extend_from_slice(content);
            out.extend(std::iter::repeat_n(0, padding(content.len() as u64)));
        }
        out.extend_from_slice(&END);
        out
    }

    async fn entries(bytes: &[u8]) -> Result<Vec<(String, Vec<u8>)>, TarError> {
        let mut reader = TarReader::new(bytes);
        let mut out = Vec::new();
        while let Some(entry) = reader.next_entry().await? {
            let content = reader.read_to_end(&entry, 1 << 20).await?;
            out.push((entry.path, content));
        }
        Ok(out)
    }

    #[tokio::test]
    async fn what_is_written_reads_back_and_other_tools_agree() {
        let files = vec![
            ("oci-layout", b"{\"imageLayoutVersion\":\"1.0.0\"}".to_vec()),
            ("index.json", vec![b'{'; 700]),
            ("blobs/sha256/00", vec![]),
            ("blobs/sha256/01", vec![9; 512]),
        ];
        let bytes = archive(&files);
        let read = entries(&bytes).await.unwrap();
        let want: Vec<(String, Vec<u8>)> = files
            .iter()
            .map(|(p, c)| (p.to_string(), c.clone()))
            .collect();
        assert_eq!(read, want);
        // The tar crate's own reader sees the same archive.
        let mut other = tar::Archive::new(bytes.as_slice());
        let names: Vec<String> = other
            .entries()
            .unwrap()
            .map(|e| e.unwrap().path().unwrap().display().to_string())
            .collect();
        assert_eq!(
            names,
            [
                "oci-layout",
                "index.json",
                "blobs/sha256/00",
                "blobs/sha256/01"
            ]
        );
    }

    #[tokio::test]
    async fn damage_is_reported_not_misread() {
        let mut bytes = archive(&[("index.json", b"{}".to_vec())]);
        bytes[10] ^= 1;
        assert!(matches!(entries(&bytes).await, Err(TarError::Header(_))));
        let bytes = archive(&[("index.json", vec![1; 2000])]);
        assert!(matches!(
            entries(&bytes[..1000]).await,
            Err(TarError::Header(_))
        ));
        let mut reader = TarReader::new(&bytes[..]);
        let entry = reader.next_entry().await.unwrap().unwrap();
        assert!(matches!(
            reader.read_to_end(&entry, 100).await,
            Err(TarError::TooLarge { size: 2000, .. })
        ));
    }

    proptest! {
        #[test]
        fn arbitrary_bytes_never_panic_the_reader(bytes in proptest::collection::vec(any::<u8>(), 0..3000)) {
            let rt = tokio::runtime::Builder::new_current_thread().build().unwrap();
            let _ = rt.block_on(entries(&bytes));
        }

        #[test]
        fn a_valid_header_followed_by_garbage_never_panics(
            size in 0u64..5000,
            tail in proptest::collection::vec(any::<u8>(), 0..3000),
        ) {
            let mut bytes = file_header("blobs/sha256/x", size).unwrap().to_vec();
            bytes.extend(tail);
            let rt = tokio::runtime::Builder::new_current_thread().build().unwrap();
            let _ = rt.block_on(entries(&bytes));
        }
    }
}
