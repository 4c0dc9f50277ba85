//! `gantry serve`: wires storage, metadata and the HTTP edge together and runs until
//! SIGTERM or SIGINT, finishing requests in flight.

use std::sync::Arc;

use anyhow::Context;
use gantry_meta::MetaStore;
use gantry_registry::Registry;
use gantry_storage::FsBlobStore;

use crate::config::ServeConfig;

pub async fn run(config: ServeConfig) -> anyhow::Result<()> {
    std::fs::create_dir_all(&config.data_dir)
        .with_context(|| format!("cannot create data directory {}", config.data_dir.display()))?;
    let blobs = FsBlobStore::open(config.data_dir.join("storage")).with_context(|| {
        format!(
            "cannot open blob storage under {}",
            config.data_dir.display()
        )
    })?;
    let meta = MetaStore::open_sqlite(&config.data_dir.join("gantry.db"))
        .await
        .with_context(|| {
            format!(
                "cannot open metadata database in {}",
                config.data_dir.display()
            )
        })?;
    let registry = Arc::new(Registry::new(Arc::new(blobs), meta.clone()));
    let app = gantry_server::router(registry);

    let listener = tokio::net::TcpListener::bind(config.listen)
        .await
        .with_context(|| {
            format!(
                "cannot listen on {}: is another process using it? choose another with --listen",
                config.listen
            )
        })?;
    let local = listener.local_addr()?;
    tracing::info!(listen = %local, data_dir = %config.data_dir.display(), "gantry registry ready");
    axum::serve(listener, app)
        .with_graceful_shutdown(shutdown_signal())
        .await
        .context("server failed")?;
    meta.close().await;
    tracing::info!("gantry stopped");
    Ok(())
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
