//! `gantry serve`: wires storage, metadata and the HTTP edge together and runs until
//! SIGTERM or SIGINT, then finishes requests in flight for at most the drain timeout.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use axum::serve::ListenerExt;
use gantry_access::{AccessConfig, AccessService};
use gantry_auth::TokenKey;
use gantry_jobs::{JobRunner, RunnerOptions};
use gantry_meta::MetaStore;
use gantry_metrics::{Metrics, MetricsOptions};
use gantry_registry::{BlobDeletionLock, Registry};
use gantry_server::AppState;
use gantry_storage::{ArchiveLocation, BlobStore, FsBlobStore, S3BlobStore};
use gantry_webhooks::WebhookService;

use crate::config::ServeConfig;
use crate::tls::{EdgeListener, ServedCertificate, TlsListener};

/// How often pull counts gathered in memory are written: the bound on how stale another
/// server's pull counts are, and on what a crash loses of them.
const PULL_FLUSH_INTERVAL: Duration = Duration::from_secs(1);
/// How often each server looks for schedule firings (schedules may have seconds).
const SCHEDULE_LOOK: Duration = Duration::from_secs(1);
/// How often the answers "this token lacks a scope" are forgotten (tokens live minutes).
const SCOPE_ANSWER_SWEEP: Duration = Duration::from_secs(3600);
/// How often each server looks for new events to hand to webhooks.
const EVENT_LOOK: Duration = Duration::from_millis(500);
/// How often each server looks for images scanned against an older vulnerability database.
const RESCAN_LOOK: Duration = Duration::from_secs(2);

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
    let sealer = key.sealer();
    let webhook_sealer = key.sealer();
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
    let mirror = Arc::new(gantry_mirror::Mirror::new(
        registry.clone(),
        gantry_mirror::MirrorConfig {
            upstreams: config.upstreams.clone(),
            revalidate_after: config.revalidate_after,
            spool: config.data_dir.join("mirror-spool"),
            transport: config.upstream_transport.clone(),
        },
    )?);
    mirror
        .ensure_projects()
        .await
        .context("cannot create the pull-through cache projects")?;
    let replicator = Arc::new(
        gantry_mirror::replication::Replicator::new(
            registry.clone(),
            config.replication.clone(),
            &config.upstream_transport,
            sealer,
        )
        .context("the replication rules ([[replication]], [[preheat]]) cannot be used")?,
    );
    let listener = tokio::net::TcpListener::bind(config.listen)
        .await
        .with_context(|| {
            format!(
                "cannot listen on {}: is another process using it? choose another with --listen",
                config.listen
            )
        })?;
    let local = listener.local_addr()?;
    let scheme = if certificate.is_some() {
        "https"
    } else {
        "http"
    };
    let mut runner = JobRunner::new(meta.clone(), RunnerOptions::for_owner(registry.instance()));
    let webhooks = WebhookService::new(
        meta.clone(),
        config
            .public_url
            .as_deref()
            .unwrap_or(&format!("{scheme}://{local}")),
        runner.waker(),
        webhook_sealer,
    );
    let sealed = webhooks.seal_plain_secrets().await?;
    if sealed > 0 {
        tracing::info!(
            webhooks = sealed,
            "sealed the webhook secrets an earlier version stored in plain"
        );
    }
    for handler in registry.job_handlers() {
        runner = runner.handle(handler);
    }
    runner = runner.handle(webhooks.delivery_handler()?);
    runner = runner.handle(mirror.job_handler());
    for handler in replicator.job_handlers() {
        runner = runner.handle(handler);
    }
    if let Some(refresh) = &config.vulndb_refresh {
        runner = runner.handle(refresh.handler(meta.clone())?);
    }
    let schedules = gantry_registry::Schedules {
        gc_interval: config.gc_interval,
        gc_grace: config.gc_grace,
        started: gantry_registry::unix_now(),
    };
    let started = schedules.started;
    // Every server looks at the schedules; a firing is one job, whoever enqueues it first.
    let last_look = Arc::new(AtomicI64::new(schedules.started - 1));
    let waker = runner.waker();
    registry.set_job_waker(waker.clone());
    mirror.set_job_waker(waker.clone());
    replicator.set_job_waker(waker.clone());
    let runner = runner
        .every_and_at_shutdown(
            "pull counts",
            PULL_FLUSH_INTERVAL,
            on(&registry, |r| async move { r.flush_pulls().await }),
        )
        .every("schedules", SCHEDULE_LOOK, {
            let (registry, waker) = (registry.clone(), waker.clone());
            move || {
                let (registry, schedules) = (registry.clone(), schedules.clone());
                let (last_look, waker) = (last_look.clone(), waker.clone());
                async move {
                    let now = gantry_registry::unix_now();
                    let after = last_look.load(Ordering::Relaxed);
                    if now <= after {
                        return Ok(());
                    }
                    let added = registry.enqueue_due_firings(&schedules, after, now).await?;
                    last_look.store(now, Ordering::Relaxed);
                    if added > 0 {
                        waker.wake();
                    }
                    Ok::<(), gantry_registry::RegistryError>(())
                }
            }
        })
        .every(
            "token scope answers",
            SCOPE_ANSWER_SWEEP,
            on(&access, |a| async move { a.forget_scope_answers().await }),
        )
        .every(
            "audit of background work",
            EVENT_LOOK,
            on(
                &access,
                |a| async move { a.audit_background_events().await },
            ),
        )
        .every(
            "webhook events",
            EVENT_LOOK,
            on(&webhooks, |w| async move { w.fan_out().await }),
        )
        .every(
            "replication events",
            EVENT_LOOK,
            on(&replicator, |r| async move { r.fan_out().await }),
        )
        .every("replication schedules", SCHEDULE_LOOK, {
            let replicator = replicator.clone();
            let last_look = Arc::new(AtomicI64::new(started - 1));
            move || {
                let (replicator, last_look) = (replicator.clone(), last_look.clone());
                async move {
                    let now = gantry_registry::unix_now();
                    let after = last_look.load(Ordering::Relaxed);
                    if now > after {
                        replicator.enqueue_scheduled_runs(after, now).await?;
                        last_look.store(now, Ordering::Relaxed);
                    }
                    Ok::<(), gantry_mirror::MirrorError>(())
                }
            }
        })
        .every(
            "rescans after a database import",
            RESCAN_LOOK,
            on(&registry, |r| async move { r.enqueue_rescans().await }),
        )
        .every("scans of pushed images", EVENT_LOOK, {
            let (registry, waker) = (registry.clone(), waker.clone());
            move || {
                let (registry, waker) = (registry.clone(), waker.clone());
                async move {
                    if registry.enqueue_scans_of_pushed().await? > 0 {
                        waker.wake();
                    }
                    Ok::<(), gantry_registry::RegistryError>(())
                }
            }
        });
    // `[vulndb] refresh`: a firing every `refresh_every_secs` is one job across the servers.
    let runner = match config.vulndb_refresh.clone() {
        None => runner,
        Some(refresh) => {
            let last_look = Arc::new(AtomicI64::new(started - 1));
            let (meta, waker) = (meta.clone(), runner.waker());
            runner.every("vulndb refresh", SCHEDULE_LOOK, move || {
                let (refresh, meta) = (refresh.clone(), meta.clone());
                let (last_look, waker) = (last_look.clone(), waker.clone());
                async move {
                    let now = gantry_registry::unix_now();
                    let after = last_look.load(Ordering::Relaxed);
                    if now <= after {
                        return Ok(());
                    }
                    let added = refresh.enqueue_due(&meta, started, after, now).await?;
                    last_look.store(now, Ordering::Relaxed);
                    if added {
                        waker.wake();
                    }
                    Ok::<(), gantry_meta::MetaError>(())
                }
            })
        }
    };
    let jobs = runner.start().await;
    let state = Arc::new(AppState {
        registry: registry.clone(),
        mirror,
        replicator,
        access: access.clone(),
        webhooks,
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
    let api = gantry_server::router(state);
    let trusted = config.trusted_proxies.clone();
    let web = gantry_web::Web::new(
        api.clone(),
        access.clone(),
        Arc::new(move |peer, headers| gantry_server::client_address(&trusted, peer, headers)),
        // Served over HTTPS: by this server, or by the TLS proxy in front (`--public-url https://`).
        certificate.is_some()
            || config
                .public_url
                .as_deref()
                .is_some_and(|url| url.starts_with("https://")),
        config.public_url.as_deref().map(|url| {
            let host = url.split_once("://").map_or(url, |(_, rest)| rest);
            host.trim_end_matches('/').to_string()
        }),
    );
    let app = api
        .merge(web.router())
        .layer(axum::middleware::from_fn(gantry_web::protective_headers))
        .into_make_service_with_connect_info::<SocketAddr>();

    let (listener, certificate_watch) = match &certificate {
        Some(certificate) => (
            EdgeListener::Tls(TlsListener::new(listener, certificate.server_config()?)),
            Some(certificate.watch(config.tls_reload_poll)?),
        ),
        None => (EdgeListener::Plain(listener), None),
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
    if let Some(watch) = certificate_watch {
        watch.abort();
    }
    if let Some(metrics_server) = metrics_server {
        metrics_server.abort();
    }
    // Gives running jobs back to the queue and writes the last pull counts.
    jobs.shutdown().await;
    access.audit_log().flush().await;
    meta.close().await;
    tracing::info!("gantry stopped");
    Ok(())
}

/// A periodic worker's task: `work` on a clone of `service` each time it runs.
fn on<S, F, Fut>(service: &S, work: F) -> impl Fn() -> Fut + Send + Sync + 'static
where
    S: Clone + Send + Sync + 'static,
    F: Fn(S) -> Fut + Send + Sync + 'static,
{
    let service = service.clone();
    move || work(service.clone())
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
