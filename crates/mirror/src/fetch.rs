//! Blob fetches from an upstream, one per digest however many ask at once — across the
//! servers sharing a database too: one holds the fetch's lease (renewed while it runs, taken
//! over once it ran out) and fetches; the others wait until it stored the blob, then serve it
//! from the registry (their first byte comes once the blob is complete). The fetch writes
//! the upstream's bytes to a spool file and announces how far it got; every client that asks
//! meanwhile reads the spool file behind it (the first byte reaches the first client before
//! the blob is complete, and memory stays one read buffer per client). Once the bytes are
//! complete they are stored through the registry's upload path (the digest verified — content
//! that does not match is not stored —, committed under the blob's lock, linked into the
//! repository, quota applied), and the spool file is deleted. Clients check the digest of
//! what they pulled, as every registry client does.

use std::collections::HashMap;
use std::io;
use std::path::PathBuf;
use std::sync::Arc;

use bytes::{Bytes, BytesMut};
use futures::StreamExt;
use gantry_client::RegistryClient;
use gantry_oci::{Digest, RepositoryName};
use gantry_registry::Registry;
use gantry_storage::ByteStream;
use parking_lot::Mutex;
use tokio::io::AsyncReadExt;
use tokio::sync::watch;

use crate::{upstream_failure, MirrorError, UpstreamFailure};

/// How much a client reads from the spool at a time.
const READ_SIZE: usize = 1024 * 1024;
/// How long a fetch's lease lasts unless renewed (renewed every third of it).
const LEASE: std::time::Duration = std::time::Duration::from_secs(15);
/// How often a server waiting for another's fetch looks whether the blob is stored.
const WAIT_POLL: std::time::Duration = std::time::Duration::from_millis(200);
/// How many bytes a client waits for before it reads the spool (unless the fetch is done):
/// fewer, larger reads.
const MIN_READ: u64 = 128 * 1024;
/// The fetch tells its readers how far it got at least this often (and whenever it caught up
/// with the upstream).
const ANNOUNCE_EVERY: u64 = 256 * 1024;

/// How far a fetch got.
#[derive(Debug, Clone, Default)]
pub(crate) struct Progress {
    /// The upstream answered; its `Content-Length`, when it sent one.
    pub started: bool,
    pub size: Option<u64>,
    /// Bytes in the spool file so far.
    pub received: u64,
    /// All bytes are in the spool and matched the digest.
    pub complete: bool,
    /// The fetch failed, before or while receiving.
    pub failed: Option<UpstreamFailure>,
    /// Whether storing the complete blob succeeded (`None` while not tried yet); `Ok` without
    /// `started` when another server fetched and stored it.
    pub stored: Option<Result<(), String>>,
}

/// A running fetch: its spool file and its progress.
pub(crate) struct Fetch {
    path: PathBuf,
    progress: watch::Receiver<Progress>,
}

/// One upstream request per blob being fetched, on this server.
pub(crate) struct Fetches {
    spool: PathBuf,
    running: Mutex<HashMap<Digest, Arc<Fetch>>>,
    /// This server's name in fetch leases.
    owner: String,
}

/// What fetching a blob gives its caller: the running fetch's progress and, when asked for,
/// the spool file opened at its start.
pub(crate) struct Joined {
    pub progress: watch::Receiver<Progress>,
    pub file: Option<std::fs::File>,
}

/// What a fetch needs to run.
pub(crate) struct Source {
    pub registry: Arc<Registry>,
    pub client: RegistryClient,
    pub upstream: String,
    pub remote: String,
    pub name: RepositoryName,
}

impl Fetches {
    pub fn new(spool: PathBuf) -> Fetches {
        Fetches {
            spool,
            running: Mutex::default(),
            owner: uuid::Uuid::new_v4().to_string(),
        }
    }

    /// Joins the fetch of `digest`, starting it from `source` when none runs. With `open`,
    /// the spool file comes opened (under the lock that its deletion also takes, so it
    /// exists).
    pub fn join(
        self: &Arc<Self>,
        digest: &Digest,
        source: Source,
        open: bool,
    ) -> Result<Joined, MirrorError> {
        let mut running = self.running.lock();
        let fetch = match running.get(digest) {
            Some(fetch) => fetch.clone(),
            None => {
                std::fs::create_dir_all(&self.spool).map_err(MirrorError::Spool)?;
                let path = self.spool.join(uuid::Uuid::new_v4().to_string());
                let file = std::fs::File::create(&path).map_err(MirrorError::Spool)?;
                let (sender, progress) = watch::channel(Progress::default());
                let fetch = Arc::new(Fetch {
                    path: path.clone(),
                    progress,
                });
                running.insert(digest.clone(), fetch.clone());
                let fetches = self.clone();
                let digest = digest.clone();
                tokio::spawn(async move {
                    let target = format!("{}@{digest}", source.name);
                    if lead_or_wait(&source, &digest, &target, &fetches.owner, &sender).await {
                        let renewing = tokio::spawn(renew(
                            source.registry.clone(),
                            target.clone(),
                            fetches.owner.clone(),
                        ));
                        run(&source, &digest, (file, &path), sender).await;
                        renewing.abort();
                        let meta = source.registry.meta();
                        if let Err(e) = meta.release_fetch_lease(&target, &fetches.owner).await {
                            tracing::warn!(%target, error = %e, "cannot release a fetch lease (it runs out)");
                        }
                    }
                    // Readers that have the file open keep reading it after the unlink; new
                    // ones find the blob stored (or start again).
                    fetches.running.lock().remove(&digest);
                    let _ = tokio::fs::remove_file(&path).await;
                });
                fetch
            }
        };
        let file = if open {
            Some(std::fs::File::open(&fetch.path).map_err(MirrorError::Spool)?)
        } else {
            None
        };
        Ok(Joined {
            progress: fetch.progress.clone(),
            file,
        })
    }
}

/// Whether this server fetches `target` (it holds the lease, or the database cannot say):
/// otherwise waits until the server that fetches it stored it (announced as `stored` without
/// `started`), taking the lease over should that server stop renewing it.
async fn lead_or_wait(
    source: &Source,
    digest: &Digest,
    target: &str,
    owner: &str,
    progress: &watch::Sender<Progress>,
) -> bool {
    let lease_ms = LEASE.as_millis() as i64;
    loop {
        let now = gantry_meta::now_ms();
        match source
            .registry
            .meta()
            .claim_fetch_lease(target, owner, now, lease_ms)
            .await
        {
            Ok(true) => {
                // The lease may be free because another server just stored the blob.
                if source
                    .registry
                    .stat_blob(&source.name, digest)
                    .await
                    .is_err()
                {
                    return true;
                }
                let _ = source
                    .registry
                    .meta()
                    .release_fetch_lease(target, owner)
                    .await;
                progress.send_modify(|p| p.stored = Some(Ok(())));
                return false;
            }
            Ok(false) => {}
            Err(e) => {
                tracing::warn!(%target, error = %e, "cannot take a fetch lease: fetching anyway");
                return true;
            }
        }
        if source
            .registry
            .stat_blob(&source.name, digest)
            .await
            .is_ok()
        {
            progress.send_modify(|p| p.stored = Some(Ok(())));
            return false;
        }
        tokio::time::sleep(WAIT_POLL).await;
    }
}

/// Renews the lease of `target` every third of its length, until aborted.
async fn renew(registry: Arc<Registry>, target: String, owner: String) {
    let lease_ms = LEASE.as_millis() as i64;
    loop {
        tokio::time::sleep(LEASE / 3).await;
        let now = gantry_meta::now_ms();
        if let Err(e) = registry
            .meta()
            .claim_fetch_lease(&target, &owner, now, lease_ms)
            .await
        {
            tracing::warn!(%target, error = %e, "cannot renew a fetch lease");
        }
    }
}

/// Fetches the blob into `spool`, then stores it, announcing each step on `progress`.
async fn run(
    source: &Source,
    digest: &Digest,
    (spool, path): (std::fs::File, &std::path::Path),
    progress: watch::Sender<Progress>,
) {
    let progress = Arc::new(progress);
    let fail = |failure: UpstreamFailure| {
        tracing::warn!(upstream = %source.upstream, repository = %source.remote, %digest,
            error = %failure, "blob fetch from the upstream failed");
        progress.send_modify(|p| p.failed = Some(failure));
    };
    let (size, body) = match source.client.open_blob(&source.remote, digest).await {
        Ok(opened) => opened,
        Err(e) => return fail(upstream_failure(&source.upstream, e)),
    };
    progress.send_modify(|p| {
        p.started = true;
        p.size = size;
    });
    let started = std::time::Instant::now();
    // The body is read here, where reading is cheap per chunk, and handed to a blocking
    // thread that writes the spool (plain file writes: readers find every byte announced).
    let (to_writer, chunks) = tokio::sync::mpsc::channel::<Bytes>(256);
    let writing = {
        let progress = progress.clone();
        let upstream = source.upstream.clone();
        tokio::task::spawn_blocking(move || write_spool(chunks, spool, &progress, &upstream))
    };
    let mut body = body;
    let mut receive_failure = None;
    while let Some(chunk) = body.next().await {
        match chunk {
            Ok(chunk) => {
                if to_writer.send(chunk).await.is_err() {
                    break; // the writer failed: its error says why
                }
            }
            Err(e) => {
                receive_failure = Some(upstream_failure(&source.upstream, e));
                break;
            }
        }
    }
    drop(to_writer);
    let written = writing.await;
    if let Some(failure) = receive_failure {
        return fail(failure);
    }
    let received = match written {
        Ok(Ok(received)) => received,
        Ok(Err(failure)) => return fail(failure),
        Err(e) => {
            return fail(UpstreamFailure::Unreachable {
                upstream: source.upstream.clone(),
                reason: format!("the fetch stopped: {e}"),
            })
        }
    };
    progress.send_modify(|p| {
        p.complete = true;
        p.size = Some(received);
    });
    let fetched_in = started.elapsed();
    let stored = store(source, digest, path).await;
    tracing::debug!(upstream = %source.upstream, repository = %source.name, %digest, bytes = received,
        fetch_ms = fetched_in.as_millis() as u64, store_ms = (started.elapsed() - fetched_in).as_millis() as u64,
        "blob fetched from the upstream and stored");
    if let Err(e) = &stored {
        tracing::warn!(repository = %source.name, %digest, error = %e,
            "a blob fetched from the upstream could not be stored");
    }
    progress.send_modify(|p| p.stored = Some(stored));
}

/// Writes the chunks to `spool` (on a blocking thread), announcing what is written at least
/// every [`ANNOUNCE_EVERY`] bytes; the bytes written. The digest is not checked here: storing
/// checks it (a mismatch is not stored), and every client checks what it pulled.
fn write_spool(
    mut chunks: tokio::sync::mpsc::Receiver<Bytes>,
    mut spool: std::fs::File,
    progress: &watch::Sender<Progress>,
    upstream: &str,
) -> Result<u64, UpstreamFailure> {
    use std::io::Write;
    let (mut written, mut announced) = (0u64, 0u64);
    while let Some(chunk) = chunks.blocking_recv() {
        spool
            .write_all(&chunk)
            .map_err(|e| UpstreamFailure::Unreachable {
                upstream: upstream.to_string(),
                reason: format!("cannot write the spool file: {e}"),
            })?;
        written += chunk.len() as u64;
        if written - announced >= ANNOUNCE_EVERY || chunks.is_empty() {
            progress.send_modify(|p| p.received = written);
            announced = written;
        }
    }
    progress.send_modify(|p| p.received = written);
    Ok(written)
}

/// Stores the spooled blob in the repository through the upload path.
async fn store(source: &Source, digest: &Digest, spool: &std::path::Path) -> Result<(), String> {
    let file = tokio::fs::File::open(spool)
        .await
        .map_err(|e| format!("cannot read the spool file: {e}"))?;
    let body: ByteStream = Box::pin(tokio_util::io::ReaderStream::with_capacity(file, READ_SIZE));
    source
        .registry
        .upload_monolithic(&source.name, digest, body)
        .await
        .map(|_| ())
        .map_err(|e| e.to_string())
}

/// The bytes of a fetch as they arrive: reads `file` (the spool, opened at its start) up to
/// what the fetch announced, waiting for more until it is complete. Ends with an error when
/// the fetch fails.
pub(crate) fn follow(file: std::fs::File, progress: watch::Receiver<Progress>) -> ByteStream {
    let state = (tokio::fs::File::from_std(file), progress, 0u64, false);
    Box::pin(futures::stream::unfold(
        state,
        |(mut file, mut progress, offset, done)| async move {
            if done {
                return None;
            }
            loop {
                let now = progress.borrow_and_update().clone();
                if let Some(failure) = now.failed {
                    let error = io::Error::other(failure.to_string());
                    return Some((Err(error), (file, progress, offset, true)));
                }
                if now.received >= offset + MIN_READ || (now.complete && now.received > offset) {
                    let want = (now.received - offset).min(READ_SIZE as u64) as usize;
                    let mut buffer = BytesMut::zeroed(want);
                    return match file.read(&mut buffer).await {
                        Ok(0) => Some((
                            Err(io::Error::other("the spool file ended early")),
                            (file, progress, offset, true),
                        )),
                        Ok(n) => {
                            buffer.truncate(n);
                            let chunk: Bytes = buffer.freeze();
                            Some((Ok(chunk), (file, progress, offset + n as u64, false)))
                        }
                        Err(e) => Some((Err(e), (file, progress, offset, true))),
                    };
                }
                if now.complete {
                    return None;
                }
                if progress.changed().await.is_err() {
                    // The fetch ended without saying it completed.
                    let error = io::Error::other("the upstream fetch stopped");
                    return Some((Err(error), (file, progress, offset, true)));
                }
            }
        },
    ))
}

/// Waits until the fetch has started (the upstream answered), failed, or found the blob
/// stored by another server (`stored` without `started`).
pub(crate) async fn started(
    progress: &mut watch::Receiver<Progress>,
) -> Result<Progress, UpstreamFailure> {
    let now = progress
        .wait_for(|p| p.started || p.failed.is_some() || p.stored.is_some())
        .await
        .map(|p| p.clone())
        .unwrap_or_else(|_| progress.borrow().clone());
    match now.failed {
        Some(failure) if !now.started || now.received == 0 => Err(failure),
        _ => Ok(now),
    }
}

/// Waits until the fetch stored the blob; the failure otherwise.
pub(crate) async fn stored(mut progress: watch::Receiver<Progress>) -> Result<(), String> {
    let now = progress
        .wait_for(|p| p.stored.is_some() || p.failed.is_some())
        .await
        .map(|p| p.clone())
        .unwrap_or_else(|_| progress.borrow().clone());
    if let Some(failure) = now.failed {
        return Err(failure.to_string());
    }
    now.stored
        .unwrap_or_else(|| Err("the upstream fetch stopped".into()))
}
