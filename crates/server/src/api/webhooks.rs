//! `/projects/{project}/webhooks`: a project's webhooks (project admins), their delivery log,
//! and test deliveries.

use std::sync::Arc;

use axum::extract::State;
use axum::response::IntoResponse;
use axum::routing::{delete, get, post};
use axum::Router;
use gantry_auth::Action;
use gantry_webhooks::{WebhookRequest, WebhookUpdate};
use serde::Deserialize;
use serde_json::json;

use super::limits::{self, within};
use super::{created, no_content, ok, ApiCaller, ApiResult, Body, Params, PathParams};
use crate::AppState;

pub(super) fn routes() -> Router<Arc<AppState>> {
    Router::new()
        .route(
            "/api/v1/projects/{project}/webhooks",
            get(list_webhooks).post(add_webhook),
        )
        .route(
            "/api/v1/projects/{project}/webhooks/{id}",
            delete(remove_webhook).patch(update_webhook),
        )
        .route(
            "/api/v1/projects/{project}/webhooks/{id}/deliveries",
            get(list_deliveries),
        )
        .route(
            "/api/v1/projects/{project}/webhooks/{id}/test",
            post(test_webhook),
        )
}

#[cfg(test)]
pub(super) const ROUTES: &[(&str, &str)] = &[
    ("get", "/api/v1/projects/{project}/webhooks"),
    ("post", "/api/v1/projects/{project}/webhooks"),
    ("delete", "/api/v1/projects/{project}/webhooks/{id}"),
    ("patch", "/api/v1/projects/{project}/webhooks/{id}"),
    ("get", "/api/v1/projects/{project}/webhooks/{id}/deliveries"),
    ("post", "/api/v1/projects/{project}/webhooks/{id}/test"),
];

/// Webhooks are for project admins: their URLs and deliveries say where a project's events go.
const MANAGE: Action = Action::ManageSettings;

/// Refuses unless `actor` administers `project` (to do `what`) and `id` is a valid id;
/// returns the id.
async fn checked_webhook(
    state: &AppState,
    actor: &gantry_access::Actor,
    project: &str,
    id: i64,
    what: &str,
) -> Result<i64, crate::error::ApiError> {
    state.access.require(actor, project, MANAGE, what).await?;
    Ok(within("webhook id", id, limits::ROW_ID)?)
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct NewWebhookBody {
    url: String,
    event_types: Vec<String>,
    #[serde(default)]
    secret: Option<String>,
}

async fn list_webhooks(
    State(state): State<Arc<AppState>>,
    ApiCaller(actor): ApiCaller,
    PathParams(project): PathParams<String>,
) -> ApiResult {
    state
        .access
        .require(&actor, &project, MANAGE, "see webhooks")
        .await?;
    ok(json!({ "webhooks": state.webhooks.list(&project).await? }))
}

async fn add_webhook(
    State(state): State<Arc<AppState>>,
    ApiCaller(actor): ApiCaller,
    PathParams(project): PathParams<String>,
    Body(body): Body<NewWebhookBody>,
) -> ApiResult {
    state
        .access
        .require(&actor, &project, MANAGE, "add webhooks")
        .await?;
    let request = WebhookRequest {
        url: body.url,
        event_types: body.event_types,
        secret: body.secret,
    };
    let (webhook, secret) = state
        .webhooks
        .create(&project, &request, actor.name())
        .await?;
    state
        .access
        .record_change(
            &actor,
            "webhook.add",
            &format!("webhook {}: {}", webhook.id, webhook.url),
            Some(&project),
        )
        .await;
    let mut body = serde_json::to_value(webhook).expect("serializes");
    body["secret"] = json!(secret);
    created(body)
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct WebhookUpdateBody {
    url: Option<String>,
    event_types: Option<Vec<String>>,
    enabled: Option<bool>,
}

/// Changes a webhook's URL, event types or whether it is enabled, audited as
/// `webhook.update`.
async fn update_webhook(
    State(state): State<Arc<AppState>>,
    ApiCaller(actor): ApiCaller,
    PathParams((project, id)): PathParams<(String, i64)>,
    Body(body): Body<WebhookUpdateBody>,
) -> ApiResult {
    let id = checked_webhook(&state, &actor, &project, id, "change webhooks").await?;
    let update = WebhookUpdate {
        url: body.url,
        event_types: body.event_types,
        enabled: body.enabled,
    };
    let webhook = state.webhooks.update(&project, id, &update).await?;
    let state_word = if webhook.enabled {
        "enabled"
    } else {
        "disabled"
    };
    state
        .access
        .record_change(
            &actor,
            "webhook.update",
            &format!("webhook {id}: {} ({state_word})", webhook.url),
            Some(&project),
        )
        .await;
    ok(webhook)
}

async fn remove_webhook(
    State(state): State<Arc<AppState>>,
    ApiCaller(actor): ApiCaller,
    PathParams((project, id)): PathParams<(String, i64)>,
) -> ApiResult {
    let id = checked_webhook(&state, &actor, &project, id, "remove webhooks").await?;
    state.webhooks.delete(&project, id).await?;
    state
        .access
        .record_change(
            &actor,
            "webhook.remove",
            &format!("webhook {id}"),
            Some(&project),
        )
        .await;
    no_content()
}

#[derive(Deserialize)]
struct DeliveryParams {
    /// Deliveries to list, newest first [default: 50].
    limit: Option<u32>,
}

async fn list_deliveries(
    State(state): State<Arc<AppState>>,
    ApiCaller(actor): ApiCaller,
    PathParams((project, id)): PathParams<(String, i64)>,
    Params(params): Params<DeliveryParams>,
) -> ApiResult {
    let id = checked_webhook(&state, &actor, &project, id, "see webhook deliveries").await?;
    let limit = within("limit", params.limit.unwrap_or(50), limits::LIST_LIMIT)?;
    let deliveries = state.webhooks.deliveries(&project, id, limit).await?;
    ok(json!({ "deliveries": deliveries }))
}

async fn test_webhook(
    State(state): State<Arc<AppState>>,
    ApiCaller(actor): ApiCaller,
    PathParams((project, id)): PathParams<(String, i64)>,
) -> ApiResult {
    let id = checked_webhook(&state, &actor, &project, id, "test webhooks").await?;
    let delivery = state.webhooks.test(&project, id, actor.name()).await?;
    Ok((http::StatusCode::ACCEPTED, axum::Json(delivery)).into_response())
}
