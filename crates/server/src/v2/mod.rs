//! The `/v2/` Distribution API. Repository names contain slashes, so routes are recognised
//! from the end of the path rather than by a pattern router. This module recognises the route,
//! derives the permission it needs, authorizes and audits it, and hands it to its endpoint
//! family: [`blobs`] (GET/HEAD/DELETE, ranges), [`uploads`] (sessions and mounts),
//! [`manifests`] (manifests and referrers) and [`listings`] (catalog and tags).

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Arc;

use axum::body::Body;
use axum::extract::{ConnectInfo, Query, State};
use axum::response::Response;
use gantry_oci::{Digest, RepositoryName};
use gantry_registry::parse_name;
use http::{header, HeaderMap, HeaderName, HeaderValue, Method, Uri};
use percent_encoding::percent_decode_str;

use gantry_access::{project_of, AccessError, AuditEntry, Caller, LoginVia};
use gantry_auth::Action;

use crate::auth::{self, client_address, realm};
use crate::error::ApiError;
use crate::AppState;

mod blobs;
mod listings;
mod manifests;
mod uploads;

pub(crate) use uploads::range_header;

type ApiResult = Result<Response, ApiError>;

pub(super) const DOCKER_CONTENT_DIGEST: HeaderName =
    HeaderName::from_static("docker-content-digest");

#[derive(Debug, PartialEq)]
enum Route<'a> {
    Base,
    Catalog,
    Tags(&'a str),
    Manifest(&'a str, &'a str),
    Blob(&'a str, &'a str),
    UploadStart(&'a str),
    Upload(&'a str, &'a str),
    Referrers(&'a str, &'a str),
}

impl<'a> Route<'a> {
    /// The repository name the route is about, if any.
    fn name(&self) -> Option<&'a str> {
        match *self {
            Route::Base | Route::Catalog => None,
            Route::Tags(name)
            | Route::UploadStart(name)
            | Route::Upload(name, _)
            | Route::Manifest(name, _)
            | Route::Blob(name, _)
            | Route::Referrers(name, _) => Some(name),
        }
    }
}

/// Recognises a route from the path after `/v2`. The name is everything before the
/// endpoint's fixed segments; it is validated later.
fn route(path: &str) -> Option<Route<'_>> {
    let rest = path.strip_prefix("/v2")?;
    if rest.is_empty() || rest == "/" {
        return Some(Route::Base);
    }
    let rest = rest.strip_prefix('/')?;
    if rest == "_catalog" {
        return Some(Route::Catalog);
    }
    if let Some(name) = rest.strip_suffix("/tags/list") {
        return Some(Route::Tags(name));
    }
    if let Some(name) = rest
        .strip_suffix("/blobs/uploads/")
        .or_else(|| rest.strip_suffix("/blobs/uploads"))
    {
        return Some(Route::UploadStart(name));
    }
    let (head, last) = rest.rsplit_once('/')?;
    if let Some(name) = head.strip_suffix("/blobs/uploads") {
        return Some(Route::Upload(name, last));
    }
    let (name, kind) = head.rsplit_once('/')?;
    match kind {
        "manifests" => Some(Route::Manifest(name, last)),
        "blobs" => Some(Route::Blob(name, last)),
        "referrers" => Some(Route::Referrers(name, last)),
        _ => None,
    }
}

/// The route family of a `/v2` path (`None` for other paths), the `route` label of the HTTP
/// metrics.
pub(crate) fn route_family(path: &str) -> Option<&'static str> {
    Some(match route(path)? {
        Route::Base => "base",
        Route::Catalog => "catalog",
        Route::Tags(_) => "tags",
        Route::Manifest(..) => "manifests",
        Route::Blob(..) => "blobs",
        Route::UploadStart(_) | Route::Upload(..) => "uploads",
        Route::Referrers(..) => "referrers",
    })
}

pub(super) fn decoded(segment: &str) -> String {
    percent_decode_str(segment).decode_utf8_lossy().into_owned()
}

pub(super) fn digest_param(s: &str) -> Result<Digest, ApiError> {
    decoded(s)
        .parse::<Digest>()
        .map_err(|e| ApiError::Registry(e.into()))
}

pub(super) fn header_str<'a>(headers: &'a HeaderMap, name: &HeaderName) -> Option<&'a str> {
    headers.get(name).and_then(|v| v.to_str().ok())
}

pub(super) fn value(s: &str) -> HeaderValue {
    HeaderValue::from_str(s).expect("header values built from validated names and digests")
}

pub(super) fn json_response(body: Vec<u8>, content_type: &'static str) -> Response {
    let mut response = Response::new(Body::from(body));
    response
        .headers_mut()
        .insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    response
}

/// The permission a request needs before it is handled.
enum Need<'a> {
    /// `/v2/`: any authenticated caller (anonymous callers get the challenge that starts
    /// `docker login`).
    Authenticated,
    /// The catalog: anyone, filtered to what the caller may list.
    Nothing,
    Repository(&'a str, Action),
}

fn need<'a>(route: &Route<'a>, method: &Method) -> Need<'a> {
    let action = match *method {
        Method::GET | Method::HEAD => Action::Pull,
        Method::DELETE => Action::Delete,
        _ => Action::Push,
    };
    match *route {
        Route::Base => Need::Authenticated,
        Route::Catalog => Need::Nothing,
        Route::Tags(name) => Need::Repository(name, Action::List),
        // Reading an upload's progress needs pull, as in CNCF Distribution (a client polls
        // its own upload; the session id is unguessable). Writing to it needs push, and so
        // does cancelling it (Distribution asks for delete there; cancelling one's own
        // unfinished upload deletes nothing a pusher without delete rights could not).
        Route::UploadStart(name) => Need::Repository(name, Action::Push),
        Route::Upload(name, _) => Need::Repository(
            name,
            if matches!(*method, Method::GET | Method::HEAD) {
                Action::Pull
            } else {
                Action::Push
            },
        ),
        Route::Manifest(name, _) | Route::Blob(name, _) | Route::Referrers(name, _) => {
            Need::Repository(name, action)
        }
    }
}

/// The scope a client must ask the token endpoint for to be allowed `action` on `name`.
pub(super) fn challenge_scope(name: &RepositoryName, action: Action) -> String {
    let actions = match action {
        Action::Push => "pull,push",
        Action::Delete => "delete",
        _ => "pull",
    };
    format!("repository:{name}:{actions}")
}

/// A refused registry request: `error` with the challenge that tells the client which token
/// to get for `scope` (space-separated scopes of the token spec).
pub(super) fn refusal(
    state: &AppState,
    headers: &HeaderMap,
    error: AccessError,
    scope: Option<&str>,
) -> ApiError {
    ApiError::Access {
        challenge: state
            .access
            .challenge(&realm(state, headers), scope, &error),
        error,
    }
}

/// What the audit log calls a successful request, if it records it: one entry per image
/// pulled, pushed or deleted, not one per blob.
fn audited_action(route: &Route<'_>, method: &Method) -> Option<&'static str> {
    match (route, method) {
        (Route::Manifest(..), &Method::GET) => Some("pull"),
        (Route::Manifest(..), &Method::PUT) => Some("push"),
        (Route::Manifest(..) | Route::Blob(..), &Method::DELETE) => Some("delete"),
        _ => None,
    }
}

/// What the audit log calls a refused request: any refusal of a repository operation counts
/// (a push is usually stopped at its first blob upload, long before its manifest).
fn refused_action(action: Action) -> &'static str {
    match action {
        Action::Pull => "pull",
        Action::Push => "push",
        Action::Delete => "delete",
        Action::List => "list",
        // Not needed by any /v2 route; named for completeness.
        Action::ManageTagRules => "tag-rules.set",
        Action::ManageMembers => "member.set",
        Action::ManageSettings => "project.set",
    }
}

pub async fn dispatch(
    State(state): State<Arc<AppState>>,
    ConnectInfo(addr): ConnectInfo<SocketAddr>,
    method: Method,
    uri: Uri,
    Query(params): Query<HashMap<String, String>>,
    headers: HeaderMap,
    body: Body,
) -> ApiResult {
    // A pull of a mirrored name (`?ns=`, or no project of that name and a default
    // upstream) is served under its cache project's name, as if the client had asked for it.
    let mirrored: String;
    let mut route = route(uri.path()).ok_or(ApiError::NoRoute)?;
    let pull = matches!(method, Method::GET | Method::HEAD);
    if let (Some(name), true) = (route.name(), pull) {
        let ns = params.get("ns").map(String::as_str);
        if let Some(served) = state.mirror.mirrored_name(name, ns).await? {
            mirrored = format!("/v2/{served}{}", &uri.path()["/v2/".len() + name.len()..]);
            route = self::route(&mirrored).ok_or(ApiError::NoRoute)?;
        }
    }
    let client = client_address(&state.trusted_proxies, &addr, &headers);
    let refuse = |error: AccessError, scope: Option<String>| {
        refusal(&state, &headers, error, scope.as_deref())
    };
    let caller = auth::caller(&state, &headers, &client, LoginVia::Basic)
        .await
        .map_err(|e| refuse(e, None))?;
    // The repository operation this request is, if any: what it needs and how the audit log
    // names it (`team/app:v1`, `team/app:sha256:…`, or the repository).
    let mut operation = None;
    match need(&route, &method) {
        Need::Authenticated if caller.is_anonymous() => {
            return Err(refuse(
                AccessError::Unauthenticated("authentication required".into()),
                None,
            ))
        }
        Need::Authenticated | Need::Nothing => {}
        Need::Repository(name, action) => {
            let name = parse_name(name)?;
            let resource = match &route {
                Route::Manifest(_, reference) | Route::Blob(_, reference) => {
                    format!("{name}:{}", decoded(reference))
                }
                _ => name.to_string(),
            };
            operation = Some((name, action, resource));
        }
    }
    // Successes are recorded per image pulled, pushed or deleted; refusals of any repository
    // operation by a known caller (a push is usually stopped at its first blob upload). An
    // anonymous refusal is not recorded: a 401 to a caller without credentials is the first
    // step of every token login, not an attempt that was stopped.
    let audited = audited_action(&route, &method);
    let audit = |outcome: &'static str, detail: Option<String>| {
        let entry = operation
            .as_ref()
            .filter(|_| !caller.is_anonymous())
            .and_then(|(name, action, resource)| {
                let action = match outcome {
                    "success" => audited?,
                    _ => audited.unwrap_or_else(|| refused_action(*action)),
                };
                Some(AuditEntry {
                    actor: caller.name().to_string(),
                    action: action.into(),
                    resource: resource.clone(),
                    project: Some(project_of(name.as_str()).to_string()),
                    client: client.clone(),
                    outcome: outcome.into(),
                    detail,
                })
            });
        async {
            if let Some(entry) = entry {
                state.access.audit_log().record(entry).await;
            }
        }
    };
    if let Some((name, action, _)) = &operation {
        if let Err(e) = state.access.authorize(&caller, name, *action).await {
            let refused = refuse(e, Some(challenge_scope(name, *action)));
            if let Some(detail) = refused.refusal() {
                audit("denied", Some(detail)).await;
            }
            return Err(refused);
        }
    }
    match handle(&state, &caller, route, method, &params, &headers, body).await {
        Ok(response) => {
            if response.status().is_success() {
                audit("success", None).await;
            }
            Ok(response)
        }
        // Refused by a policy the registry applies (tag rules, immutability, quota).
        Err(error) => {
            if let Some(detail) = error.refusal() {
                audit("denied", Some(detail)).await;
            }
            Err(error)
        }
    }
}

/// Hands a recognised request to its endpoint family.
async fn handle(
    state: &AppState,
    caller: &Caller,
    route: Route<'_>,
    method: Method,
    params: &HashMap<String, String>,
    headers: &HeaderMap,
    body: Body,
) -> ApiResult {
    let r = state.registry.as_ref();
    if !matches!(method, Method::GET | Method::HEAD | Method::DELETE) {
        if let Some(name) = route.name() {
            state.mirror.check_writable(&parse_name(name)?)?;
        }
    }
    match (route, method) {
        (Route::Base, Method::GET | Method::HEAD) => {
            Ok(json_response(b"{}".to_vec(), "application/json"))
        }
        (Route::Catalog, Method::GET) => listings::catalog(state, caller, params).await,
        (Route::Tags(name), Method::GET) => listings::tags(&state.mirror, name, params).await,
        (Route::Manifest(name, reference), m @ (Method::GET | Method::HEAD)) => {
            manifests::get_manifest(&state.mirror, name, reference, headers, m == Method::HEAD)
                .await
        }
        (Route::Manifest(name, reference), Method::PUT) => {
            manifests::put_manifest(r, name, reference, headers, body, caller.name()).await
        }
        (Route::Manifest(name, reference), Method::DELETE) => {
            manifests::delete_manifest(r, name, reference, caller.name()).await
        }
        (Route::Blob(name, digest), m @ (Method::GET | Method::HEAD)) => {
            blobs::pull_blob(&state.mirror, r, name, digest, headers, m == Method::HEAD).await
        }
        (Route::Blob(name, digest), Method::DELETE) => blobs::delete_blob(r, name, digest).await,
        (Route::UploadStart(name), Method::POST) => {
            uploads::start_upload(state, caller, name, params, headers, body).await
        }
        (Route::Upload(name, id), method) => {
            uploads::upload(r, name, &decoded(id), method, params, headers, body).await
        }
        (Route::Referrers(name, digest), Method::GET) => {
            manifests::referrers(r, name, digest, params).await
        }
        _ => Err(ApiError::MethodNotAllowed),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn needed_scope(path: &str, method: Method) -> String {
        match need(&route(path).unwrap(), &method) {
            Need::Authenticated => "authenticated".into(),
            Need::Nothing => String::new(),
            Need::Repository(name, action) => {
                let name = parse_name(name).unwrap();
                let scope = challenge_scope(&name, action);
                if action == Action::List {
                    format!("{scope} (list)")
                } else {
                    scope
                }
            }
        }
    }

    #[test]
    fn every_route_needs_the_scope_distribution_asks_for() {
        let pull = "repository:a/b:pull";
        let push = "repository:a/b:pull,push";
        let delete = "repository:a/b:delete";
        let d = "sha256:aa";
        for (path, method, want) in [
            ("/v2/", Method::GET, "authenticated"),
            ("/v2/_catalog", Method::GET, ""),
            (
                "/v2/a/b/tags/list",
                Method::GET,
                "repository:a/b:pull (list)",
            ),
            ("/v2/a/b/manifests/v1", Method::GET, pull),
            ("/v2/a/b/manifests/v1", Method::HEAD, pull),
            ("/v2/a/b/manifests/v1", Method::PUT, push),
            ("/v2/a/b/manifests/v1", Method::DELETE, delete),
            (&format!("/v2/a/b/blobs/{d}"), Method::GET, pull),
            (&format!("/v2/a/b/blobs/{d}"), Method::HEAD, pull),
            (&format!("/v2/a/b/blobs/{d}"), Method::DELETE, delete),
            (&format!("/v2/a/b/referrers/{d}"), Method::GET, pull),
            ("/v2/a/b/blobs/uploads/", Method::POST, push),
            // A client polling its own upload needs only pull (as in Distribution).
            ("/v2/a/b/blobs/uploads/u1", Method::GET, pull),
            ("/v2/a/b/blobs/uploads/u1", Method::PATCH, push),
            ("/v2/a/b/blobs/uploads/u1", Method::PUT, push),
            ("/v2/a/b/blobs/uploads/u1", Method::DELETE, push),
        ] {
            assert_eq!(needed_scope(path, method.clone()), want, "{method} {path}");
        }
    }

    #[test]
    fn routes_are_recognised_from_the_end() {
        assert_eq!(route("/v2/"), Some(Route::Base));
        assert_eq!(route("/v2"), Some(Route::Base));
        assert_eq!(route("/v2/_catalog"), Some(Route::Catalog));
        assert_eq!(route("/v2/a/b/tags/list"), Some(Route::Tags("a/b")));
        assert_eq!(
            route("/v2/a/manifests/tags/list"),
            Some(Route::Tags("a/manifests"))
        );
        assert_eq!(
            route("/v2/a/b/manifests/v1"),
            Some(Route::Manifest("a/b", "v1"))
        );
        assert_eq!(
            route("/v2/x/blobs/blobs/sha256:ab"),
            Some(Route::Blob("x/blobs", "sha256:ab"))
        );
        assert_eq!(route("/v2/a/blobs/uploads/"), Some(Route::UploadStart("a")));
        assert_eq!(route("/v2/a/blobs/uploads"), Some(Route::UploadStart("a")));
        assert_eq!(
            route("/v2/a/b/blobs/uploads/1234"),
            Some(Route::Upload("a/b", "1234"))
        );
        assert_eq!(
            route("/v2/a/referrers/sha256:ab"),
            Some(Route::Referrers("a", "sha256:ab"))
        );
        assert_eq!(route("/v2/a/unknown/x"), None);
        assert_eq!(route("/v3/a/manifests/x"), None);
        assert_eq!(route("/v2x"), None);
    }

    proptest::proptest! {
        #[test]
        fn route_recognition_never_panics(path in "\\PC{0,80}|/v2/[a-z/._-]{0,30}") {
            let _ = route(&path);
        }
    }
}
