//! What operators and their tools ask of the server: `GET /healthz` (the process serves),
//! `GET /readyz` (the metadata and blob stores answer; 503 `UNAVAILABLE` with the reason
//! otherwise) and `GET /metrics` (Prometheus text format). On the main listener `/metrics`
//! needs a system administrator (Basic or a bearer token for `api:v1:*`); [`metrics_router`]
//! serves all three unauthenticated on a listener of their own (`--metrics-listen`).
//!
//! Every request is also measured here ([`measure`]): count, latency and body bytes by route
//! family, and upload requests in flight.

use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Instant;

use axum::body::Body;
use axum::extract::{Request, State};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use bytes::Bytes;
use gantry_metrics::IntCounter;
use http::{header, HeaderValue, Method};
use http_body::{Frame, SizeHint};
use serde_json::json;

use crate::api::ApiCaller;
use crate::error::ApiError;
use crate::AppState;

pub const HEALTH_PATH: &str = "/healthz";
pub const READY_PATH: &str = "/readyz";
pub const METRICS_PATH: &str = "/metrics";

/// The three endpoints on the main listener.
pub fn routes() -> Router<Arc<AppState>> {
    Router::new()
        .route(HEALTH_PATH, get(healthz))
        .route(READY_PATH, get(readyz))
        .route(METRICS_PATH, get(metrics_for_admins))
}

/// `/healthz`, `/readyz` and `/metrics` without credentials, for a listener that only the
/// monitoring network reaches.
pub fn metrics_router(state: Arc<AppState>) -> Router {
    Router::new()
        .route(HEALTH_PATH, get(healthz))
        .route(READY_PATH, get(readyz))
        .route(METRICS_PATH, get(metrics))
        .fallback(|| async { ApiError::NoRoute })
        .method_not_allowed_fallback(|| async { ApiError::MethodNotAllowed })
        .with_state(state)
}

async fn healthz() -> Response {
    Json(json!({"status": "ok"})).into_response()
}

async fn readyz(State(state): State<Arc<AppState>>) -> Result<Response, ApiError> {
    state.registry.check_ready().await?;
    Ok(Json(json!({"status": "ready"})).into_response())
}

async fn metrics_for_admins(
    state: State<Arc<AppState>>,
    ApiCaller(actor): ApiCaller,
) -> Result<Response, ApiError> {
    actor.require_system_admin("read metrics")?;
    metrics(state).await
}

async fn metrics(State(state): State<Arc<AppState>>) -> Result<Response, ApiError> {
    let text = state.registry.metrics_text().await?;
    Ok((
        [(
            header::CONTENT_TYPE,
            HeaderValue::from_static(gantry_metrics::CONTENT_TYPE),
        )],
        text,
    )
        .into_response())
}

/// The route family a path belongs to: the `route` label of the HTTP metrics (a handful of
/// values whatever the paths, so series stay few).
fn route_family(path: &str) -> &'static str {
    if let Some(family) = crate::v2::route_family(path) {
        return family;
    }
    match path {
        crate::auth::TOKEN_PATH => "token",
        HEALTH_PATH | READY_PATH => "health",
        METRICS_PATH => "metrics",
        _ if path.starts_with("/api/") => "api",
        _ => "other",
    }
}

/// Measures one request: counts it by route family, method and status, times it to its
/// response head, counts its body bytes both ways, and holds an upload slot while an upload
/// request is received.
pub async fn measure(State(state): State<Arc<AppState>>, request: Request, next: Next) -> Response {
    let started = Instant::now();
    let route = route_family(request.uri().path());
    let method = request.method().clone();
    let uploading =
        route == "uploads" && matches!(method, Method::POST | Method::PATCH | Method::PUT);
    let metrics = &state.metrics;
    let _in_flight = uploading.then(|| metrics.upload_in_flight());
    let received = metrics.http_received(route);
    let request = request.map(|body| Body::new(Counted::new(body, received)));
    let response = next.run(request).await;
    metrics.http_request(
        route,
        method.as_str(),
        response.status().as_str(),
        started.elapsed().as_secs_f64(),
    );
    let sent = metrics.http_sent(route);
    response.map(|body| Body::new(Counted::new(body, sent)))
}

/// A body that adds the length of every data frame passing through to a counter.
struct Counted {
    inner: Body,
    bytes: IntCounter,
}

impl Counted {
    fn new(inner: Body, bytes: IntCounter) -> Counted {
        Counted { inner, bytes }
    }
}

impl http_body::Body for Counted {
    type Data = Bytes;
    type Error = axum::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, axum::Error>>> {
        let polled = Pin::new(&mut self.inner).poll_frame(cx);
        if let Poll::Ready(Some(Ok(frame))) = &polled {
            if let Some(data) = frame.data_ref() {
                self.bytes.inc_by(data.len() as u64);
            }
        }
        polled
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_fall_into_few_route_families() {
        for (path, family) in [
            ("/v2/", "base"),
            ("/v2/_catalog", "catalog"),
            ("/v2/team/app/tags/list", "tags"),
            ("/v2/team/app/manifests/v1", "manifests"),
            ("/v2/team/app/blobs/sha256:00", "blobs"),
            ("/v2/team/app/blobs/uploads/", "uploads"),
            ("/v2/team/app/blobs/uploads/3f2a", "uploads"),
            ("/v2/team/app/referrers/sha256:00", "referrers"),
            ("/auth/token", "token"),
            ("/api/v1/projects/team", "api"),
            ("/healthz", "health"),
            ("/readyz", "health"),
            ("/metrics", "metrics"),
            ("/favicon.ico", "other"),
        ] {
            assert_eq!(route_family(path), family, "{path}");
        }
    }
}
