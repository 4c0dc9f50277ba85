//! `gantry serve`: wires storage, metadata and the HTTP edge together and runs until
//! SIGTERM or SIGINT, then finishes requests in flight for at most the drain timeout.

use std::net::SocketAddr;
use std::sync::Arc;

use anyhow::Context;
use axum::serve::ListenerExt;
use gantry_access::{AccessConfig, AccessService};
use gantry_auth::TokenKey;
use gantry_meta::MetaStore;
use gantry_metrics::{Metrics, MetricsOptions};
use gantry_registry::{BlobDeletionLock, Registry};
use gantry_server::AppState;
use gantry_storage::{ArchiveLocation, BlobStore, FsBlobStore, S3BlobStore};

use crate::config::ServeConfig;
use crate::tls::{EdgeListener, ServedCertificate, TlsListener};

/// How often pull counts gathered in memory are written (a crash loses at most this much).
const PULL_FLUSH_INTERVAL: std::time::Duration = std::time::Duration::from_secs(5);
/// How often the server looks whether today (UTC) has its usage snapshot yet.
const USAGE_SNAPSHOT_CHECK: std::time::Duration = std::time::Duration::from_secs(60);
/// How often each server looks whether the scheduled garbage collection fired.
const SCHEDULE_CHECK: std::time::Duration = std::time::Duration::from_secs(60);

/// The ES256 key registry tokens are signed with, created on first start (mode 0600).
pub const TOKEN_KEY_FILE: &str = "token-signing-key.pem";

/// Allocations from this size up are mapped and unmapped on their own. glibc otherwise raises
/// this threshold after the first large free, and from then on keeps freed large blocks in
/// per-thread arenas: every blocking thread that once verified a password (Argon2id, 7 MiB)
/// kept those 7 MiB, and 16 concurrent logins left the server at 140 MiB instead of ~30.
/// 4 MiB: above the I/O buffers (256 KiB reads), which must stay cheap to allocate (at 256 KiB,
/// mapping each read buffer cost pulls 25 % of their throughput), below Argon2's blocks.
#[cfg(all(target_os = "linux", target_env = "gnu"))]
fn return_large_allocations_to_the_system() {
    const MMAP_THRESHOLD: libc::c_int = 4 * 1024 * 1024;
    // SAFETY: mallopt only tunes the allocator; it is called before the runtime spawns work.
    unsafe {
        libc::mallopt(libc::M_MMAP_THRESHOLD, MMAP_THRESHOLD);
    }
}

#[cfg(not(all(target_os = "linux", target_env = "gnu")))]
fn return_large_allocations_to_the_system() {}

/// How long a presigned blob URL (`[storage] redirect`) stays valid: long enough for a slow
/// pull of a large layer to start, as Distribution's 20 minutes.
const BLOB_REDIRECT_VALIDITY: std::time::Duration = std::time::Duration::from_secs(20 * 60);

/// The blob store `config` names: an S3 bucket, or `<data_dir>/storage` by default. A bucket
/// that does not answer stops the start, as a missing directory would.
async fn open_blob_store(config: &ServeConfig) -> anyhow::Result<Arc<dyn BlobStore>> {
    let Some(location) = &config.storage_location else {
        let blobs = FsBlobStore::open(config.data_dir.join("storage")).with_context(|| {
            format!(
                "cannot open blob storage under {}",
                config.data_dir.display()
            )
        })?;
        return Ok(Arc::new(blobs));
    };
    let blobs = S3BlobStore::open(location, config.storage_part_size)
        .with_context(|| format!("cannot use the storage location {location}"))?;
    blobs.check_ready().await.with_context(|| {
        format!(
            "the storage location {location} does not answer: check the bucket and the AWS_* \
             variables (AWS_ENDPOINT_URL, AWS_REGION, AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY)"
        )
    })?;
    tracing::info!(location = %location, "blobs are stored in object storage");
    Ok(Arc::new(blobs))
}

pub async fn run(config: ServeConfig) -> anyhow::Result<()> {
    return_large_allocations_to_the_system();
    // Before anything else: a certificate that cannot be used stops the start at once.
    let certificate = config
        .tls
        .as_ref()
        .map(ServedCertificate::load)
        .transpose()?;
    // Held until this function returns: one server per data directory.
    let _data_dir = crate::data_dir::claim(&config.data_dir)?;
    let blobs = open_blob_store(&config).await?;
    let meta = MetaStore::open(&config.database).await.with_context(|| {
        format!(
            "cannot open the metadata database {} (--database, GANTRY_DATABASE or [database] url)",
            config.database.redacted()
        )
    })?;
    crate::bootstrap::ensure_admin(
        &meta,
        &config.data_dir,
        config.admin_password.as_ref().map(|s| s.0.as_str()),
    )
    .await?;
    let metrics = Arc::new(Metrics::new(MetricsOptions {
        per_repository: config.metrics_per_repository,
    })?);
    let key = match &config.token_key {
        // Given explicitly, the key is shared: replicas racing to create it would each make
        // their own, so it must exist (made once beforehand, as with Harbor's or zot's keys).
        Some(path) => TokenKey::load(path).with_context(|| {
            format!(
                "cannot use the token signing key {} (--token-key, GANTRY_TOKEN_KEY or [auth] \
                 token_key): give every replica the same PKCS#8 P-256 key file, made once with \
                 `openssl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-256 -out {}`",
                path.display(),
                path.display()
            )
        })?,
        None => TokenKey::load_or_generate(&config.data_dir.join(TOKEN_KEY_FILE))?,
    };
    tracing::info!(kid = key.kid(), "token signing key loaded");
    let access = AccessService::new(
        meta.clone(),
        key,
        AccessConfig {
            token_ttl: config.token_ttl,
            auto_create_projects: config.auto_create_projects,
            metrics: metrics.clone(),
            ..AccessConfig::default()
        },
    )?;
    let archive = ArchiveLocation::open(&config.archive_location).with_context(|| {
        format!(
            "cannot open the archive location {}: give a writable directory or s3://BUCKET[/PREFIX] \
             (--archive-location, GANTRY_ARCHIVE_LOCATION or [archive] location)",
            config.archive_location
        )
    })?;
    let mut registry = Registry::new(blobs, meta.clone())
        .with_archive(archive)
        .with_blob_deletion_lock(BlobDeletionLock::in_data_dir(&config.data_dir))
        .with_metrics(metrics.clone());
    if config.storage_redirect {
        registry = registry.with_blob_redirect(BLOB_REDIRECT_VALIDITY);
    }
    let registry = Arc::new(registry);
    let flusher = {
        let registry = registry.clone();
        tokio::spawn(async move {
            let mut every = tokio::time::interval(PULL_FLUSH_INTERVAL);
            loop {
                every.tick().await;
                if let Err(e) = registry.flush_pulls().await {
                    tracing::warn!(error = %e, "cannot record pull statistics");
                }
            }
        })
    };
    let scheduled_gc = config.gc_interval.map(|interval| {
        let registry = registry.clone();
        let options = gantry_registry::GcOptions {
            grace: config.gc_grace,
            ..Default::default()
        };
        let started = gantry_registry::unix_now();
        tokio::spawn(async move {
            // Every server sharing the database looks every minute (or every interval, when
            // shorter); the one that claims a firing runs it.
            let mut every = tokio::time::interval(interval.min(SCHEDULE_CHECK));
            loop {
                every.tick().await;
                if let Err(e) = registry
                    .run_scheduled_gc(interval, started, gantry_registry::unix_now(), &options)
                    .await
                {
                    tracing::warn!(error = %e, "scheduled garbage collection failed");
                }
            }
        })
    });
    let scheduled_retention = {
        let registry = registry.clone();
        tokio::spawn(async move {
            // Schedules may have seconds: look every second at what fired since the last look.
            let mut every = tokio::time::interval(std::time::Duration::from_secs(1));
            let mut last = gantry_registry::unix_now();
            loop {
                every.tick().await;
                let now = gantry_registry::unix_now();
                if now <= last {
                    continue;
                }
                match registry.run_scheduled_retention(last, now).await {
                    Ok(outcomes) => {
                        for (project, outcome) in outcomes {
                            match outcome {
                                Ok(report) => tracing::info!(
                                    project,
                                    deleted_manifests = report.plan.delete_manifests.len(),
                                    freed_bytes = report.plan.freed_bytes,
                                    "scheduled retention ran"
                                ),
                                Err(e) => {
                                    tracing::warn!(project, error = %e, "scheduled retention failed")
                                }
                            }
                        }
                    }
                    Err(e) => tracing::warn!(error = %e, "cannot read retention schedules"),
                }
                last = now;
            }
        })
    };
    let scheduled_usage_snapshot = {
        let registry = registry.clone();
        tokio::spawn(async move {
            // At start if today has no snapshot yet, then once a day: a look every minute
            // notices the new UTC day (and a day missed while the server was down is not
            // invented afterwards: snapshots record what is, not what was).
            let mut every = tokio::time::interval(USAGE_SNAPSHOT_CHECK);
            loop {
                every.tick().await;
                match registry
                    .take_missing_usage_snapshot(gantry_registry::unix_now())
                    .await
                {
                    Ok(Some(taken)) => tracing::info!(
                        day = taken.day,
                        projects = taken.projects,
                        repositories = taken.repositories,
                        "usage snapshot taken"
                    ),
                    Ok(None) => {}
                    Err(e) => tracing::warn!(error = %e, "cannot take the usage snapshot"),
                }
            }
        })
    };
    let state = Arc::new(AppState {
        registry: registry.clone(),
        access: access.clone(),
        public_url: config.public_url.clone(),
        trusted_proxies: config.trusted_proxies.clone(),
        metrics,
        serves_tls: certificate.is_some(),
    });
    let (metrics_server, metrics_listen) = match config.metrics_listen {
        Some(address) => {
            let (task, bound) = serve_metrics(address, state.clone()).await?;
            (Some(task), Some(bound))
        }
        None => (None, None),
    };
    let app = gantry_server::router(state).into_make_service_with_connect_info::<SocketAddr>();

    let listener = tokio::net::TcpListener::bind(config.listen)
        .await
        .with_context(|| {
            format!(
                "cannot listen on {}: is another process using it? choose another with --listen",
                config.listen
            )
        })?;
    let local = listener.local_addr()?;
    let (listener, certificate_watch) = match &certificate {
        Some(certificate) => (
            EdgeListener::Tls(TlsListener::new(listener, certificate.server_config()?)),
            Some(certificate.watch(config.tls_reload_poll)?),
        ),
        None => (EdgeListener::Plain(listener), None),
    };
    let scheme = if certificate.is_some() {
        "https"
    } else {
        "http"
    };
    tracing::info!(
        listen = %local,
        scheme,
        metrics_listen = metrics_listen.map(|a| a.to_string()),
        data_dir = %config.data_dir.display(),
        "gantry registry ready"
    );
    let stopping = Arc::new(tokio::sync::Notify::new());
    let signalled = stopping.clone();
    // axum gives handlers the peer's address (ConnectInfo<SocketAddr>) for a tapped listener
    // of any kind; the tap itself has nothing to do.
    let listener = listener.tap_io(|_| {});
    let server = axum::serve(listener, app).with_graceful_shutdown(async move {
        shutdown_signal().await;
        signalled.notify_one();
    });
    tokio::select! {
        served = server => served.context("server failed")?,
        _ = async {
            stopping.notified().await;
            tokio::time::sleep(config.drain_timeout).await;
        } => {
            // Clients that have not finished are cut off; nothing they sent was acknowledged.
            tracing::warn!(timeout_secs = config.drain_timeout.as_secs(), "drain timeout reached: closing the remaining connections");
        }
    }
    flusher.abort();
    if let Some(watch) = certificate_watch {
        watch.abort();
    }
    scheduled_retention.abort();
    scheduled_usage_snapshot.abort();
    if let Some(metrics_server) = metrics_server {
        metrics_server.abort();
    }
    if let Some(gc) = scheduled_gc {
        gc.abort();
    }
    if let Err(e) = registry.flush_pulls().await {
        tracing::warn!(error = %e, "cannot record the last pull statistics");
    }
    access.audit_log().flush().await;
    meta.close().await;
    tracing::info!("gantry stopped");
    Ok(())
}

/// Serves `/metrics`, `/healthz` and `/readyz` without credentials on `address` until the
/// returned task is aborted; returns it and the address bound.
async fn serve_metrics(
    address: SocketAddr,
    state: Arc<AppState>,
) -> anyhow::Result<(tokio::task::JoinHandle<()>, SocketAddr)> {
    let listener = tokio::net::TcpListener::bind(address)
        .await
        .with_context(|| {
            format!(
                "cannot listen for metrics on {address}: is another process using it? choose another with --metrics-listen"
            )
        })?;
    let bound = listener.local_addr()?;
    let app = gantry_server::metrics_router(state);
    let task = tokio::spawn(async move {
        if let Err(e) = axum::serve(listener, app).await {
            tracing::error!(error = %e, "metrics listener failed");
        }
    });
    Ok((task, bound))
}

async fn shutdown_signal() {
    let interrupt = tokio::signal::ctrl_c();
    let mut terminate = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
        .expect("SIGTERM handler installs");
    tokio::select! {
        _ = interrupt => {},
        _ = terminate.recv() => {},
    }
    tracing::info!("shutting down: finishing requests in flight");
}
