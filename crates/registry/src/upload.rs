//! Streaming a request body into an upload: bytes are hashed and written in parallel, in
//! bounded batches, while the next batch is being received.

use bytes::Bytes;
use futures::StreamExt;
use gantry_oci::{Algorithm, Hasher};
use gantry_storage::{BlobStore, ByteStream, StorageError, UploadWriter};
use tokio::sync::mpsc;
use tokio::task::spawn_blocking;

use crate::error::{RegistryError, Result};

/// Bytes handed to the hash-and-write stage at once. Larger batches mean fewer thread
/// hand-offs; this bounds an upload's memory to about three batches. A batch is the received
/// buffers themselves, never a copy.
const BATCH: usize = 1024 * 1024;

fn join_error(e: tokio::task::JoinError) -> RegistryError {
    RegistryError::Storage(StorageError::Io(std::io::Error::other(e)))
}

/// Hashes and writes batches as they arrive; returns the upload's durable size and the
/// hash state covering exactly the bytes written.
async fn hash_and_write(
    mut writer: Box<dyn UploadWriter>,
    mut hasher: Hasher,
    mut batches: mpsc::Receiver<Vec<Bytes>>,
) -> std::result::Result<(u64, Hasher), (RegistryError, Option<Hasher>)> {
    while let Some(batch) = batches.recv().await {
        let for_hash = batch.clone();
        let hashing = spawn_blocking(move || {
            for chunk in &for_hash {
                hasher.update(chunk);
            }
            hasher
        });
        let written = writer.write(batch).await;
        hasher = hashing.await.map_err(|e| (join_error(e), None))?;
        // A failed write leaves the file's length unknown relative to the hash: drop the state.
        written.map_err(|e| (e.into(), None))?;
    }
    let size = writer.finish().await.map_err(|e| (e.into(), None))?;
    Ok((size, hasher))
}

/// Appends `body` to the upload. On success and on a body error (client gone) alike, what
/// was received is durable and the returned hash state (if any) covers it.
pub(crate) async fn append(
    store: &dyn BlobStore,
    id: &str,
    hasher: Hasher,
    mut body: ByteStream,
) -> (Result<u64>, Option<(u64, Hasher)>) {
    let writer = match store.append_upload(id).await {
        Ok(w) => w,
        Err(StorageError::NotFound) => {
            return (Err(RegistryError::UploadUnknown(id.to_string())), None)
        }
        Err(e) => return (Err(e.into()), None),
    };
    let (tx, rx) = mpsc::channel::<Vec<Bytes>>(1);
    let stage = tokio::spawn(hash_and_write(writer, hasher, rx));

    let mut batch = Vec::new();
    let mut batch_size = 0;
    let mut body_error = None;
    while let Some(chunk) = body.next().await {
        let chunk = match chunk {
            Ok(c) => c,
            Err(e) => {
                body_error = Some(RegistryError::Body(e));
                break;
            }
        };
        batch_size += chunk.len();
        batch.push(chunk);
        if batch_size >= BATCH {
            batch_size = 0;
            if tx.send(std::mem::take(&mut batch)).await.is_err() {
                break; // the stage failed; its error is reported below
            }
        }
    }
    if !batch.is_empty() {
        let _ = tx.send(batch).await;
    }
    drop(tx);

    match stage.await {
        Ok(Ok((size, hasher))) => match body_error {
            Some(e) => (Err(e), Some((size, hasher))),
            None => (Ok(size), Some((size, hasher))),
        },
        Ok(Err((e, _))) => (Err(e), None),
        Err(e) => (Err(join_error(e)), None),
    }
}

/// Hashes everything the upload holds, to rebuild a lost hash state (after a restart) or
/// to verify a digest of another algorithm.
pub(crate) async fn rehash(
    store: &dyn BlobStore,
    id: &str,
    algorithm: Algorithm,
) -> Result<(u64, Hasher)> {
    let mut stream = match store.read_upload(id).await {
        Ok(s) => s,
        Err(StorageError::NotFound) => return Err(RegistryError::UploadUnknown(id.to_string())),
        Err(e) => return Err(e.into()),
    };
    let mut hasher = Hasher::new(algorithm);
    let mut size = 0u64;
    while let Some(chunk) = stream.next().await {
        let chunk = chunk.map_err(StorageError::Io)?;
        size += chunk.len() as u64;
        hasher = spawn_blocking(move || {
            hasher.update(&chunk);
            hasher
        })
        .await
        .map_err(join_error)?;
    }
    Ok((size, hasher))
}
