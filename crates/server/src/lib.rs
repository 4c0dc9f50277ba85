//! The HTTP edge of Gantry. Handlers translate requests into registry service calls;
//! `error` is the single place where failures become OCI error responses.

use std::sync::Arc;
use std::time::Instant;

use axum::extract::Request;
use axum::middleware::{self, Next};
use axum::response::Response;
use axum::routing::any;
use axum::Router;
use gantry_access::AccessService;
use gantry_metrics::Metrics;
use gantry_registry::Registry;
use http::{HeaderName, HeaderValue};

mod api;
mod auth;
mod error;
mod operations;
mod v2;

pub use auth::{client_address, BadTrustedProxy, TrustedProxies};
pub use error::ApiError;
pub use operations::metrics_router;

/// What every handler needs.
pub struct AppState {
    pub registry: Arc<Registry>,
    /// The pull-through cache in front of the registry (with no upstreams: every request is
    /// the registry's own).
    pub mirror: Arc<gantry_mirror::Mirror>,
    /// Push replication to other registries.
    pub replicator: Arc<gantry_mirror::replication::Replicator>,
    pub access: Arc<AccessService>,
    /// Projects' webhooks.
    pub webhooks: gantry_webhooks::WebhookService,
    /// The URL clients reach this registry at (e.g. behind a TLS proxy), for the token
    /// realm; `None` means the request's own `Host`.
    pub public_url: Option<String>,
    /// Reverse proxies whose forwarding headers name the client (for throttling and audit).
    pub trusted_proxies: auth::TrustedProxies,
    /// The process's metrics, which the edge records requests into (the same the registry
    /// records into).
    pub metrics: Arc<Metrics>,
    /// Whether this server terminates TLS itself: the token realm is then `https://`.
    pub serves_tls: bool,
}

const API_VERSION: HeaderName = HeaderName::from_static("docker-distribution-api-version");

/// Adds the API version header to every response and logs each request.
async fn edge(mut request: Request, next: Next) -> Response {
    // HTTP/2 names the host in `:authority`, which arrives in the URI, not in a Host header;
    // the token realm is made from Host.
    if !request.headers().contains_key(http::header::HOST) {
        let authority = request.uri().authority().map(|a| a.as_str().to_string());
        if let Some(value) = authority.and_then(|a| HeaderValue::from_str(&a).ok()) {
            request.headers_mut().insert(http::header::HOST, value);
        }
    }
    let started = Instant::now();
    let method = request.method().clone();
    let path = request.uri().path().to_string();
    let mut response = next.run(request).await;
    response
        .headers_mut()
        .insert(API_VERSION, HeaderValue::from_static("registry/2.0"));
    let status = response.status().as_u16();
    let micros = started.elapsed().as_micros() as u64;
    if status >= 500 {
        tracing::warn!(%method, %path, status, micros, "request");
    } else {
        tracing::debug!(%method, %path, status, micros, "request");
    }
    response
}

/// The whole HTTP surface. Serve it with `into_make_service_with_connect_info::<SocketAddr>()`:
/// throttling and the audit log need the client's address.
pub fn router(state: Arc<AppState>) -> Router {
    Router::new()
        .route("/v2", any(v2::dispatch))
        .route("/v2/", any(v2::dispatch))
        .route("/v2/{*rest}", any(v2::dispatch))
        .route(auth::TOKEN_PATH, any(auth::token))
        .merge(api::routes().route_layer(middleware::from_fn_with_state(
            state.clone(),
            api::audit_refusals,
        )))
        .merge(operations::routes())
        .fallback(|| async { ApiError::NoRoute })
        .method_not_allowed_fallback(|| async { ApiError::MethodNotAllowed })
        .layer(middleware::from_fn_with_state(
            state.clone(),
            operations::measure,
        ))
        .with_state(state)
        .layer(middleware::from_fn(edge))
}
