//! The REST API under `/api/v1`: users, projects, members, robot accounts, CI tokens, tag
//! rules, retention, quotas, archives, garbage collection, usage over time, the audit log,
//! webhooks and background jobs, as JSON.
//! `openapi.json` (served at `/api/v1/openapi.json`) describes it; tests here keep the two in
//! step. Callers authenticate with Basic credentials or a bearer token issued for the scope
//! `api:v1:*`; every decision goes through the access service.
//!
//! One module per resource. Each handler is: extract ([`ApiCaller`], [`PathParams`],
//! [`Params`], [`Body`]) → one service call (the access service for accounts, projects,
//! members and credentials; the access service's permission check and then the registry for
//! the lifecycle resources) → a JSON response. Errors stay typed; `crate::error` alone turns
//! them into HTTP.
//!
//! Adding a resource `foo`: write `foo.rs` with `pub(super) fn routes() -> Router<Arc<AppState>>`
//! and `#[cfg(test)] pub(super) const ROUTES: &[(&str, &str)]` listing the same (method,
//! OpenAPI path) pairs; add `mod foo;`, `.merge(foo::routes())` in [`routes`] and `foo::ROUTES`
//! in [`ROUTES`]; describe every operation in `openapi.json` (the tests below fail until the
//! document and the routes agree, and until each integer's range is in [`limits`]).

use std::net::SocketAddr;
use std::sync::Arc;

use axum::extract::{
    ConnectInfo, FromRequest, FromRequestParts, MatchedPath, Path, Query, RawPathParams, Request,
    State,
};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use gantry_access::{AccessError, Actor, AuditEntry, LoginVia};
use gantry_auth::Identity;
use gantry_meta::Credential;
use http::{header, HeaderValue, StatusCode};
use serde::Serialize;

use crate::auth::{self, client_address};
use crate::error::{ApiError, Refused};
use crate::AppState;

mod archives;
mod artifacts;
mod audit;
mod gc;
mod jobs;
mod members;
mod projects;
mod quotas;
mod replication;
mod repositories;
mod repository_delete;
mod retention;
mod robots;
mod signing;
mod system;
mod tag_rules;
mod tokens;
mod usage;
mod users;
mod vulnerabilities;
mod webhooks;

pub const OPENAPI: &str = include_str!("../openapi.json");

/// Every route of the API: the OpenAPI document and each resource's routes.
pub fn routes() -> Router<Arc<AppState>> {
    Router::new()
        .route("/api/v1/openapi.json", get(openapi))
        .merge(users::routes())
        .merge(projects::routes())
        .merge(members::routes())
        .merge(tag_rules::routes())
        .merge(retention::routes())
        .merge(quotas::routes())
        .merge(archives::routes())
        .merge(robots::routes())
        .merge(tokens::routes())
        .merge(audit::routes())
        .merge(gc::routes())
        .merge(repositories::routes())
        .merge(artifacts::routes())
        .merge(signing::routes())
        .merge(vulnerabilities::routes())
        .merge(repository_delete::routes())
        .merge(usage::routes())
        .merge(webhooks::routes())
        .merge(jobs::routes())
        .merge(replication::routes())
        .merge(system::routes())
}

/// Every route of [`routes`], as (method, OpenAPI path), per resource, for the test that
/// keeps the document complete.
#[cfg(test)]
const ROUTES: &[&[(&str, &str)]] = &[
    &[("get", "/api/v1/openapi.json")],
    users::ROUTES,
    projects::ROUTES,
    members::ROUTES,
    tag_rules::ROUTES,
    retention::ROUTES,
    quotas::ROUTES,
    archives::ROUTES,
    robots::ROUTES,
    tokens::ROUTES,
    audit::ROUTES,
    gc::ROUTES,
    repositories::ROUTES,
    artifacts::ROUTES,
    signing::ROUTES,
    vulnerabilities::ROUTES,
    repository_delete::ROUTES,
    usage::ROUTES,
    webhooks::ROUTES,
    jobs::ROUTES,
    replication::ROUTES,
    system::ROUTES,
];

/// The authenticated caller of an API request and where it came from, as the access service
/// takes it. Anonymous callers get 401 on every API endpoint but the OpenAPI document.
pub struct ApiCaller(pub Actor);

/// Where [`ApiCaller`] leaves the caller it identified, for [`audit_refusals`] to read after
/// the handler.
#[derive(Clone, Default)]
struct CallerSlot(Arc<std::sync::OnceLock<Actor>>);

/// Audits a request the REST API refused by a policy — a permission, a tag rule or immutable
/// tag, a quota — as `denied`, with what refused it, as the registry API audits refused pushes
/// and pulls: auditors want refusals most. The action is the operation (`DELETE
/// /api/v1/repositories/{repository}`), the resource the request's path, the project the
/// path's `{project}` or the first part of its `{repository}`. Refusals before the caller is
/// known (no or wrong credentials, a throttled login) are the login's to audit.
pub(crate) async fn audit_refusals(
    State(state): State<Arc<AppState>>,
    operation: MatchedPath,
    path: RawPathParams,
    mut request: Request,
    next: Next,
) -> Response {
    let slot = CallerSlot::default();
    request.extensions_mut().insert(slot.clone());
    // Kept as they are; the entry's strings are made only for a refusal, off the common path.
    let (method, uri) = (request.method().clone(), request.uri().clone());
    let response = next.run(request).await;
    if let (Some(Refused(detail)), Some(actor)) =
        (response.extensions().get::<Refused>(), slot.0.get())
    {
        let project = path.iter().find_map(|(key, value)| match key {
            "project" => Some(value.to_string()),
            "repository" => value.split('/').next().map(str::to_string),
            _ => None,
        });
        let entry = AuditEntry {
            actor: actor.name().to_string(),
            action: format!("{method} {}", operation.as_str()),
            resource: uri.path().to_string(),
            project,
            client: actor.client.clone(),
            outcome: "denied".into(),
            detail: Some(detail.clone()),
        };
        state.access.audit_log().record(entry).await;
    }
    response
}

impl FromRequestParts<Arc<AppState>> for ApiCaller {
    type Rejection = ApiError;

    async fn from_request_parts(
        parts: &mut http::request::Parts,
        state: &Arc<AppState>,
    ) -> Result<Self, Self::Rejection> {
        let slot = parts.extensions.get::<CallerSlot>().cloned();
        let identified = |actor: Actor| {
            if let Some(CallerSlot(slot)) = &slot {
                let _ = slot.set(actor.clone());
            }
            Ok(ApiCaller(actor))
        };
        if let Some(gantry_access::ActingAs(actor)) = parts.extensions.get() {
            // An in-process request of the web UI, as its signed-in user.
            return identified(actor.clone());
        }
        let client = parts
            .extensions
            .get::<ConnectInfo<SocketAddr>>()
            .map(|ConnectInfo(addr)| client_address(&state.trusted_proxies, addr, &parts.headers))
            .unwrap_or_default();
        let caller = auth::caller(state, &parts.headers, &client, LoginVia::Basic).await?;
        let identity = state.access.api_identity(&caller).await?;
        if matches!(identity, Identity::Anonymous) {
            return Err(AccessError::Unauthenticated(
                "the API needs credentials: Basic auth or a bearer token for scope api:v1:*".into(),
            )
            .into());
        }
        identified(Actor { identity, client })
    }
}

/// A JSON request body; every rejection is an OCI error like every other failure.
///
/// The body is JSON whatever its `Content-Type` says (`curl -d` sends
/// `application/x-www-form-urlencoded`), as most REST APIs take it. It must be a JSON object
/// (every body the document describes is one): serde would otherwise read a JSON array into a
/// struct field by field. Unknown fields are refused by the types (`deny_unknown_fields`).
pub struct Body<T>(pub T);

impl<T: serde::de::DeserializeOwned, S: Send + Sync> FromRequest<S> for Body<T> {
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, Self::Rejection> {
        let bytes = bytes::Bytes::from_request(req, state)
            .await
            .map_err(|rejection| {
                ApiError::Invalid(format!("request body: {}", rejection.body_text()))
            })?;
        parse_body(&bytes).map(Body)
    }
}

/// Reads a request body: a JSON object of the shape `T`.
fn parse_body<T: serde::de::DeserializeOwned>(bytes: &[u8]) -> Result<T, ApiError> {
    let value: serde_json::Value = serde_json::from_slice(bytes).map_err(|e| {
        ApiError::Invalid(format!(
            "request body is not JSON ({e}): send a JSON object"
        ))
    })?;
    if !value.is_object() {
        return Err(ApiError::Invalid(
            "request body must be a JSON object".to_string(),
        ));
    }
    serde_path_to_error::deserialize(value).map_err(|e| {
        let path = e.path().to_string();
        let inner = e.into_inner();
        if path == "." {
            ApiError::Invalid(format!("request body: {inner}"))
        } else {
            ApiError::Invalid(format!("request body: {path}: {inner}"))
        }
    })
}

/// Query parameters whose rejection is an OCI error like every other failure.
pub struct Params<T>(pub T);

impl<T: serde::de::DeserializeOwned, S: Send + Sync> FromRequestParts<S> for Params<T> {
    type Rejection = ApiError;

    async fn from_request_parts(
        parts: &mut http::request::Parts,
        state: &S,
    ) -> Result<Self, Self::Rejection> {
        match Query::<T>::from_request_parts(parts, state).await {
            Ok(Query(value)) => Ok(Params(value)),
            Err(rejection) => Err(ApiError::Invalid(rejection.body_text())),
        }
    }
}

/// Path parameters whose rejection (an archive id that is not a number, say) is an OCI
/// error like every other failure, not axum's plain-text answer.
pub struct PathParams<T>(pub T);

impl<T: serde::de::DeserializeOwned + Send, S: Send + Sync> FromRequestParts<S> for PathParams<T> {
    type Rejection = ApiError;

    async fn from_request_parts(
        parts: &mut http::request::Parts,
        state: &S,
    ) -> Result<Self, Self::Rejection> {
        match Path::<T>::from_request_parts(parts, state).await {
            Ok(Path(value)) => Ok(PathParams(value)),
            Err(rejection) => Err(ApiError::Invalid(format!(
                "path parameter: {}",
                rejection.body_text()
            ))),
        }
    }
}
/// The ranges of the API's integer parameters and fields. `openapi.json` gives each as
/// `minimum`/`maximum`; a test checks the two agree, and [`limits::within`] refuses what lies
/// outside. The access service enforces the ranges of what it takes (and owns them).
pub mod limits {
    use std::ops::RangeInclusive;

    /// The ranges the access service enforces itself (`AUDIT_LIMIT`, `UNIX_SECS`,
    /// `CI_TOKEN_TTL_SECS`, `ROBOT_EXPIRES_IN_SECS`) are in `gantry_access::limits`.
    pub use gantry_access::limits::within;

    /// `pause_ms` of `POST /gc`: at most a minute between batches.
    pub const GC_PAUSE_MS: RangeInclusive<u64> = 0..=60_000;
    /// `grace_secs` of `POST /gc`: at most ten years (the cutoff is `now - grace`).
    pub const GC_GRACE_SECS: RangeInclusive<u64> = 0..=315_360_000;
    /// Quota limits, in bytes or artifacts.
    pub const QUOTA_LIMIT: RangeInclusive<i64> = 0..=i64::MAX;
    /// Ages in days (archive selectors, retention rules, the usage window): at most 100 years.
    pub const DAYS: RangeInclusive<i64> = 0..=36_500;
    /// Counts of a retention rule (`most_recently_pushed` and the like).
    pub const KEEP_COUNT: RangeInclusive<usize> = 0..=1_000_000;
    /// Ids of archives, webhooks and jobs.
    pub const ROW_ID: RangeInclusive<i64> = 1..=i64::MAX;
    /// `limit` of the job and webhook delivery listings.
    pub const LIST_LIMIT: RangeInclusive<u32> = 1..=1000;
    /// `wait_secs` of a vulnerability policy: how long a pull waits for a scan.
    pub const GATE_WAIT_SECS: RangeInclusive<u64> = 0..=gantry_registry::GATE_MAX_WAIT_SECS;
    /// `limit` of the browse listings (repositories, artifacts): rows per page.
    pub const BROWSE_LIMIT: RangeInclusive<u32> = 1..=gantry_registry::BROWSE_MAX_PAGE;
}

type ApiResult = Result<Response, ApiError>;

/// The artifact a `…/artifacts/{reference}` path names, once `actor` may do `action` in its
/// repository (`what` says what, for a refusal). Errors: a malformed name or reference (400),
/// the refusal (401/403).
async fn artifact_in_path(
    state: &AppState,
    actor: &Actor,
    (repository, reference): &(String, String),
    action: gantry_auth::Action,
    what: &str,
) -> Result<(gantry_oci::RepositoryName, gantry_oci::Reference), ApiError> {
    let name = gantry_registry::parse_name(repository)?;
    let reference = gantry_registry::parse_reference(reference)?;
    state
        .access
        .require_in_repository(actor, name.as_str(), action, what)
        .await?;
    Ok((name, reference))
}

fn ok(value: impl Serialize) -> ApiResult {
    Ok(Json(value).into_response())
}

fn created(value: serde_json::Value) -> ApiResult {
    Ok((StatusCode::CREATED, Json(value)).into_response())
}

fn no_content() -> ApiResult {
    Ok(StatusCode::NO_CONTENT.into_response())
}

/// `?dry_run=true` of the runs that delete or move artifacts (retention, archiving).
#[derive(serde::Deserialize)]
struct RunOptions {
    #[serde(default)]
    dry_run: bool,
}

/// A robot account or CI token as the API shows it (never its secret's digest).
#[derive(Serialize)]
struct CredentialView {
    name: String,
    kind: String,
    project: Option<String>,
    repository: Option<String>,
    actions: Vec<String>,
    expires_at: Option<i64>,
    revoked: bool,
    created_by: String,
}

impl From<Credential> for CredentialView {
    fn from(c: Credential) -> Self {
        CredentialView {
            revoked: c.revoked_at.is_some(),
            name: c.name,
            kind: c.kind,
            project: c.project,
            repository: c.repository,
            actions: c.actions,
            expires_at: c.expires_at,
            created_by: c.created_by,
        }
    }
}

/// `201` with a credential just minted and its secret, shown this once.
fn minted(minted: gantry_access::MintedCredential) -> ApiResult {
    let mut body =
        serde_json::to_value(CredentialView::from(minted.credential)).expect("serializes");
    body["secret"] = serde_json::json!(minted.secret);
    created(body)
}

/// `{"credentials": [...]}`.
fn credential_list(credentials: Vec<Credential>) -> ApiResult {
    let listed: Vec<CredentialView> = credentials.into_iter().map(CredentialView::from).collect();
    ok(serde_json::json!({ "credentials": listed }))
}

async fn openapi() -> Response {
    let mut response = OPENAPI.into_response();
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn openapi_document_describes_every_route_and_nothing_else() {
        let doc: serde_json::Value = serde_json::from_str(OPENAPI).unwrap();
        assert_eq!(
            doc["openapi"].as_str().unwrap().split('.').next(),
            Some("3")
        );
        let mut documented = Vec::new();
        for (path, item) in doc["paths"].as_object().unwrap() {
            for method in item.as_object().unwrap().keys() {
                documented.push((method.clone(), path.clone()));
            }
        }
        documented.sort();
        let mut routes: Vec<(String, String)> = ROUTES
            .iter()
            .flat_map(|routes| routes.iter())
            .map(|(m, p)| (m.to_string(), p.to_string()))
            .collect();
        routes.sort();
        assert_eq!(documented, routes);
    }

    /// Calls `visit(location, schema)` for every schema a request may carry: parameters
    /// (`"POST /api/v1/gc pause_ms"`) and bodies (`"PUT /api/v1/... body"`), and everything
    /// inside them. A `$ref` is followed and named by its target, so a schema used by two
    /// operations has one location (`"#/components/schemas/NewRobot.expires_in_secs"`).
    fn walk_request_schemas(
        doc: &serde_json::Value,
        visit: &mut dyn FnMut(&str, &serde_json::Value),
    ) {
        fn walk(
            doc: &serde_json::Value,
            schema: &serde_json::Value,
            location: String,
            visit: &mut dyn FnMut(&str, &serde_json::Value),
        ) {
            if let Some(target) = schema["$ref"].as_str() {
                let pointer = target.strip_prefix('#').expect("local reference");
                let resolved = doc.pointer(pointer).expect("reference resolves");
                return walk(doc, resolved, target.to_string(), visit);
            }
            visit(&location, schema);
            if let Some(properties) = schema["properties"].as_object() {
                for (name, property) in properties {
                    walk(doc, property, format!("{location}.{name}"), visit);
                }
            }
            if schema["items"].is_object() {
                walk(doc, &schema["items"], format!("{location}[]"), visit);
            }
            for combinator in ["oneOf", "anyOf", "allOf"] {
                for variant in schema[combinator].as_array().into_iter().flatten() {
                    walk(doc, variant, location.clone(), visit);
                }
            }
        }
        for (path, item) in doc["paths"].as_object().unwrap() {
            for (method, operation) in item.as_object().unwrap() {
                let operation_name = format!("{} {path}", method.to_uppercase());
                for parameter in operation["parameters"].as_array().into_iter().flatten() {
                    let name = parameter["name"].as_str().unwrap();
                    let location = format!("{operation_name} {name}");
                    walk(doc, &parameter["schema"], location, visit);
                }
                let body = &operation["requestBody"]["content"]["application/json"]["schema"];
                if !body.is_null() {
                    walk(doc, body, format!("{operation_name} body"), visit);
                }
            }
        }
    }

    /// The range of every integer a request may carry, where the document gives it.
    fn documented_integer_ranges() -> std::collections::BTreeMap<String, (i128, i128)> {
        let doc: serde_json::Value = serde_json::from_str(OPENAPI).unwrap();
        let bound = |schema: &serde_json::Value, key: &str, location: &str| -> i128 {
            let value = &schema[key];
            value
                .as_i64()
                .map(i128::from)
                .or(value.as_u64().map(i128::from))
                .unwrap_or_else(|| {
                    panic!("the integer at {location} has no {key}: the server's types have one")
                })
        };
        let mut ranges = std::collections::BTreeMap::new();
        walk_request_schemas(&doc, &mut |location, schema| {
            if schema["type"] == "integer" {
                let range = (
                    bound(schema, "minimum", location),
                    bound(schema, "maximum", location),
                );
                ranges.insert(location.to_string(), range);
            }
        });
        ranges
    }

    #[test]
    fn documented_integer_ranges_are_the_ranges_the_server_enforces() {
        macro_rules! range {
            ($range:expr) => {
                (*$range.start() as i128, *$range.end() as i128)
            };
        }
        let schemas = "#/components/schemas";
        let keep = format!("{schemas}/RetentionPolicy.rules[].keep");
        let enforced: std::collections::BTreeMap<String, (i128, i128)> = [
            (
                "POST /api/v1/gc pause_ms".to_string(),
                range!(limits::GC_PAUSE_MS),
            ),
            (
                "POST /api/v1/gc grace_secs".into(),
                range!(limits::GC_GRACE_SECS),
            ),
            (
                "GET /api/v1/audit limit".into(),
                range!(gantry_access::limits::AUDIT_LIMIT),
            ),
            (
                "GET /api/v1/audit since".into(),
                range!(gantry_access::limits::UNIX_SECS),
            ),
            (
                "GET /api/v1/audit until".into(),
                range!(gantry_access::limits::UNIX_SECS),
            ),
            (
                "DELETE /api/v1/projects/{project}/archives/{id} id".into(),
                range!(limits::ROW_ID),
            ),
            (
                "POST /api/v1/projects/{project}/archives/{id}/restore id".into(),
                range!(limits::ROW_ID),
            ),
            (
                "DELETE /api/v1/projects/{project}/webhooks/{id} id".into(),
                range!(limits::ROW_ID),
            ),
            (
                "PATCH /api/v1/projects/{project}/webhooks/{id} id".into(),
                range!(limits::ROW_ID),
            ),
            (
                "GET /api/v1/projects/{project}/webhooks/{id}/deliveries id".into(),
                range!(limits::ROW_ID),
            ),
            (
                "GET /api/v1/projects/{project}/webhooks/{id}/deliveries limit".into(),
                range!(limits::LIST_LIMIT),
            ),
            (
                "POST /api/v1/projects/{project}/webhooks/{id}/test id".into(),
                range!(limits::ROW_ID),
            ),
            ("GET /api/v1/jobs before".into(), range!(limits::ROW_ID)),
            ("GET /api/v1/jobs limit".into(), range!(limits::LIST_LIMIT)),
            ("GET /api/v1/jobs/{id} id".into(), range!(limits::ROW_ID)),
            (
                "GET /api/v1/replication/{rule}/items limit".into(),
                range!(limits::LIST_LIMIT),
            ),
            (
                "GET /api/v1/replication/{rule}/items run".into(),
                range!(limits::ROW_ID),
            ),
            (
                "GET /api/v1/replication/{rule}/runs limit".into(),
                range!(limits::LIST_LIMIT),
            ),
            (
                format!("{schemas}/ReplicationRuleSpec.bandwidth_mib"),
                range!(gantry_mirror::replication::BANDWIDTH_MIB),
            ),
            (
                format!("{schemas}/ReplicationRuleSpec.most_pulled.count"),
                range!(gantry_mirror::replication::MOST_PULLED_COUNT),
            ),
            (
                format!("{schemas}/ReplicationRuleSpec.most_pulled.days"),
                range!(gantry_mirror::replication::MOST_PULLED_DAYS),
            ),
            (
                "GET /api/v1/projects/{project}/repositories limit".into(),
                range!(limits::BROWSE_LIMIT),
            ),
            (
                "GET /api/v1/repositories/{repository}/artifacts limit".into(),
                range!(limits::BROWSE_LIMIT),
            ),
            (
                format!("{schemas}/NewToken.ttl_secs"),
                range!(gantry_access::limits::CI_TOKEN_TTL_SECS),
            ),
            (
                format!("{schemas}/NewRobot.expires_in_secs"),
                range!(gantry_access::limits::ROBOT_EXPIRES_IN_SECS),
            ),
            (
                format!("{schemas}/QuotaLimits.storage_bytes"),
                range!(limits::QUOTA_LIMIT),
            ),
            (
                format!("{schemas}/QuotaLimits.artifacts"),
                range!(limits::QUOTA_LIMIT),
            ),
            (
                format!("{schemas}/ArchiveSelector.pushed_before_days"),
                range!(limits::DAYS),
            ),
            (
                format!("{schemas}/ArchiveSelector.not_pulled_for_days"),
                range!(limits::DAYS),
            ),
            (
                format!("{keep}.most_recently_pushed"),
                range!(limits::KEEP_COUNT),
            ),
            (
                format!("{keep}.most_recently_pulled"),
                range!(limits::KEEP_COUNT),
            ),
            (
                format!("{keep}.newest_per_version_line"),
                range!(limits::KEEP_COUNT),
            ),
            (format!("{keep}.pushed_within_days"), range!(limits::DAYS)),
            ("GET /api/v1/usage since_days".into(), range!(limits::DAYS)),
            (format!("{keep}.pulled_within_days"), range!(limits::DAYS)),
            (
                format!("{schemas}/VulnerabilityPolicy.wait_secs"),
                range!(limits::GATE_WAIT_SECS),
            ),
            (
                format!("{schemas}/AllowedVulnerability.expires_at"),
                range!(gantry_access::limits::UNIX_SECS),
            ),
        ]
        .into_iter()
        .collect();
        assert_eq!(documented_integer_ranges(), enforced);
    }

    #[test]
    fn request_bodies_are_closed_json_objects_as_the_server_reads_them() {
        // `Body` refuses anything but a JSON object, and every body type denies unknown
        // fields: the document must say both, or generated requests it allows are refused.
        let doc: serde_json::Value = serde_json::from_str(OPENAPI).unwrap();
        walk_request_schemas(&doc, &mut |location, schema| {
            if location.ends_with(" body") {
                assert_eq!(schema["type"], "object", "{location}");
            }
            if schema["properties"].is_object() {
                assert_eq!(
                    schema["additionalProperties"],
                    serde_json::json!(false),
                    "{location} takes no other properties"
                );
            }
        });
    }

    #[test]
    fn every_operation_documents_every_status_it_answers() {
        let doc: serde_json::Value = serde_json::from_str(OPENAPI).unwrap();
        for (path, item) in doc["paths"].as_object().unwrap() {
            for (method, operation) in item.as_object().unwrap() {
                let name = format!("{} {path}", method.to_uppercase());
                let responses = operation["responses"].as_object().unwrap();
                assert!(
                    !responses.contains_key("default"),
                    "{name}: list the statuses, not a default"
                );
                let mut expected = Vec::new();
                if operation["security"] != serde_json::json!([]) {
                    // A malformed Authorization header, no or wrong credentials, a caller
                    // without the permission, and the failed-login throttle.
                    expected.extend(["400", "401", "403", "429"]);
                }
                let names_a_resource = operation["parameters"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .any(|p| p["in"] == "path");
                if names_a_resource {
                    expected.push("404");
                }
                for status in expected {
                    assert!(responses.contains_key(status), "{name} answers {status}");
                }
                for (status, response) in responses {
                    if status.starts_with('2') {
                        continue;
                    }
                    let response = match response["$ref"].as_str() {
                        Some(target) => doc.pointer(target.strip_prefix('#').unwrap()).unwrap(),
                        None => response,
                    };
                    assert_eq!(
                        response["content"]["application/json"]["schema"]["$ref"],
                        "#/components/schemas/Errors",
                        "{name} {status} is an OCI error document"
                    );
                }
            }
        }
    }

    #[test]
    fn a_body_must_be_a_json_object_of_its_type() {
        // serde alone reads `[null, null]` into the two fields of QuotaLimits.
        for (body, expected) in [
            ("[null, null]", "request body must be a JSON object"),
            ("[5, 6]", "request body must be a JSON object"),
            ("null", "request body must be a JSON object"),
            (
                r#"{"storage_bytes": "5"}"#,
                "request body: storage_bytes: invalid type",
            ),
            (r#"{"storage_bytes": 5, "x": 1}"#, "unknown field `x`"),
            ("storage_bytes=5", "request body is not JSON"),
        ] {
            match parse_body::<quotas::QuotaLimits>(body.as_bytes()) {
                Err(ApiError::Invalid(message)) => {
                    assert!(message.contains(expected), "{body}: {message}")
                }
                Err(other) => panic!("{body}: {other:?}"),
                Ok(_) => panic!("{body} was accepted"),
            }
        }
        let limits: quotas::QuotaLimits = parse_body(br#"{"storage_bytes": 5}"#).unwrap();
        assert_eq!((limits.storage_bytes, limits.artifacts), (Some(5), None));
    }
}
