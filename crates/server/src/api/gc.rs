//! `/gc`: online garbage collection (system administrators).

use std::sync::Arc;

use axum::extract::State;
use axum::routing::post;
use axum::Router;
use serde::Deserialize;

use super::limits::{self, within};
use super::{ok, ApiCaller, ApiResult, Params};
use crate::AppState;

pub(super) fn routes() -> Router<Arc<AppState>> {
    Router::new().route("/api/v1/gc", post(run_gc))
}

#[cfg(test)]
pub(super) const ROUTES: &[(&str, &str)] = &[("post", "/api/v1/gc")];

#[derive(Deserialize)]
struct GcParams {
    #[serde(default)]
    dry_run: bool,
    /// Only what is older than this many seconds is collected [default: 3600].
    grace_secs: Option<u64>,
    /// Throttling: milliseconds to pause between batches of 1000 deletions [default: 0].
    pause_ms: Option<u64>,
}

/// Runs an online garbage collection now.
async fn run_gc(
    State(state): State<Arc<AppState>>,
    ApiCaller(actor): ApiCaller,
    Params(params): Params<GcParams>,
) -> ApiResult {
    actor.require_system_admin("run garbage collection")?;
    let mut options = gantry_registry::GcOptions {
        dry_run: params.dry_run,
        ..Default::default()
    };
    if let Some(grace) = params.grace_secs {
        let grace = within("grace_secs", grace, limits::GC_GRACE_SECS)?;
        options.grace = std::time::Duration::from_secs(grace);
    }
    if let Some(pause) = params.pause_ms {
        let pause = within("pause_ms", pause, limits::GC_PAUSE_MS)?;
        options.pause = std::time::Duration::from_millis(pause);
    }
    let report = state
        .registry
        .collect_garbage(gantry_registry::unix_now(), &options)
        .await?;
    state
        .access
        .record_change(
            &actor,
            if params.dry_run {
                "gc.dry-run"
            } else {
                "gc.run"
            },
            &format!(
                "{} manifests, {} blobs, {} bytes",
                report.manifests.len(),
                report.blobs,
                report.blob_bytes
            ),
            None,
        )
        .await;
    ok(report)
}
