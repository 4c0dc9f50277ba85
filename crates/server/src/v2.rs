//! The `/v2/` Distribution API. Repository names contain slashes, so routes are recognised
//! from the end of the path rather than by a pattern router.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Arc;

use axum::body::Body;
use axum::extract::{ConnectInfo, Query, State};
use axum::response::{IntoResponse, Response};
use futures::{StreamExt, TryStreamExt};
use gantry_oci::manifest::MAX_MANIFEST_BYTES;
use gantry_oci::{media_type, Digest, Reference, RepositoryName};
use gantry_registry::{accepts, parse_name, parse_reference, Registry, RegistryError};
use gantry_storage::ByteStream;
use http::{header, HeaderMap, HeaderName, HeaderValue, Method, StatusCode, Uri};
use percent_encoding::percent_decode_str;

use gantry_access::{project_of, AccessError, AuditEntry, Caller, LoginVia};
use gantry_auth::{Action, Identity};

use crate::auth::{self, client_address, realm};
use crate::error::ApiError;
use crate::AppState;

type ApiResult = Result<Response, ApiError>;

const DOCKER_CONTENT_DIGEST: HeaderName = HeaderName::from_static("docker-content-digest");
const DOCKER_UPLOAD_UUID: HeaderName = HeaderName::from_static("docker-upload-uuid");
const OCI_SUBJECT: HeaderName = HeaderName::from_static("oci-subject");
const OCI_FILTERS_APPLIED: HeaderName = HeaderName::from_static("oci-filters-applied");

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

fn decoded(segment: &str) -> String {
    percent_decode_str(segment).decode_utf8_lossy().into_owned()
}

fn digest_param(s: &str) -> Result<Digest, ApiError> {
    decoded(s)
        .parse::<Digest>()
        .map_err(|e| ApiError::Registry(e.into()))
}

fn header_str<'a>(headers: &'a HeaderMap, name: &HeaderName) -> Option<&'a str> {
    headers.get(name).and_then(|v| v.to_str().ok())
}

fn value(s: &str) -> HeaderValue {
    HeaderValue::from_str(s).expect("header values built from validated names and digests")
}

/// `Range: 0-<last byte>` as upload responses report progress ("0-0" when empty, as
/// distribution does).
pub(crate) fn range_header(size: u64) -> HeaderValue {
    value(&format!("0-{}", size.saturating_sub(1)))
}

fn body_stream(body: Body) -> ByteStream {
    Box::pin(body.into_data_stream().map_err(std::io::Error::other))
}

fn upload_location(name: &RepositoryName, id: &str) -> HeaderValue {
    value(&format!("/v2/{name}/blobs/uploads/{id}"))
}

fn upload_progress(status: StatusCode, name: &RepositoryName, id: &str, size: u64) -> Response {
    let mut response = status.into_response();
    let h = response.headers_mut();
    h.insert(header::LOCATION, upload_location(name, id));
    h.insert(header::RANGE, range_header(size));
    h.insert(DOCKER_UPLOAD_UUID, value(id));
    h.insert(header::CONTENT_LENGTH, HeaderValue::from_static("0"));
    response
}

fn blob_created(name: &RepositoryName, digest: &Digest) -> Response {
    let mut response = StatusCode::CREATED.into_response();
    let h = response.headers_mut();
    h.insert(
        header::LOCATION,
        value(&format!("/v2/{name}/blobs/{digest}")),
    );
    h.insert(DOCKER_CONTENT_DIGEST, value(&digest.to_string()));
    h.insert(header::CONTENT_LENGTH, HeaderValue::from_static("0"));
    response
}

/// Parses `Content-Range: <start>-<end>` (a `bytes=`/`bytes ` prefix and `/total` are
/// tolerated), checking it against Content-Length when both are present.
fn content_range(headers: &HeaderMap) -> Result<Option<u64>, ApiError> {
    let Some(raw) = header_str(headers, &header::CONTENT_RANGE) else {
        return Ok(None);
    };
    let invalid = || {
        ApiError::Registry(RegistryError::ContentRangeInvalid(
            raw.chars().take(100).collect(),
        ))
    };
    let spec = raw
        .trim()
        .trim_start_matches("bytes=")
        .trim_start_matches("bytes ");
    let spec = spec.split('/').next().unwrap_or("");
    let (start, end) = spec.split_once('-').ok_or_else(invalid)?;
    let start: u64 = start.trim().parse().map_err(|_| invalid())?;
    let end: u64 = end.trim().parse().map_err(|_| invalid())?;
    if end < start {
        return Err(invalid());
    }
    if let Some(length) =
        header_str(headers, &header::CONTENT_LENGTH).and_then(|l| l.parse::<u64>().ok())
    {
        if length != end - start + 1 {
            return Err(invalid());
        }
    }
    Ok(Some(start))
}

/// What a blob GET answers to its `Range` header.
#[derive(Debug, PartialEq)]
enum RangeAnswer {
    /// 200 with the whole blob.
    Whole,
    /// 206 with one range and `Content-Range`.
    One(std::ops::Range<u64>),
    /// 206 `multipart/byteranges`, one part per range, in the order asked.
    Several(Vec<std::ops::Range<u64>>),
}

/// The most ranges one request may name; a header with more is ignored (RFC 9110 §14.2 lets a
/// server ignore many small ranges, a sign of abuse).
const MAX_RANGES: std::num::NonZeroUsize = std::num::NonZeroUsize::new(100).expect("non-zero");

/// Reads a blob GET's `Range` header against a blob of `size` bytes, by RFC 9110 §14.2:
/// ranges that lie past the end are dropped, and only when no range is left is it
/// `RangeNotSatisfiable` (416 with `Content-Range: bytes */size`). A header that is not a
/// valid byte-range set (another unit, bad syntax, a reversed range, over [`MAX_RANGES`],
/// more than two overlapping) is ignored and the whole blob sent, as §14.2 allows (and for an
/// unknown unit requires). Several ranges adding up to the blob's size or more also get the
/// whole blob, as Go's `http.ServeContent` (what Distribution serves blobs with) does: it is
/// cheaper than the multipart body and no amplification.
fn requested_ranges(raw: Option<&str>, size: u64) -> Result<RangeAnswer, RegistryError> {
    use http_range_header::RangeUnsatisfiableError;
    let Some(raw) = raw else {
        return Ok(RangeAnswer::Whole);
    };
    let Ok(parsed) = http_range_header::parse_range_header_with_max_ranges(raw, MAX_RANGES) else {
        return Ok(RangeAnswer::Whole);
    };
    let ranges: Vec<std::ops::Range<u64>> = match parsed.validate(size) {
        Ok(ranges) => ranges
            .into_iter()
            .map(|r| *r.start()..r.end() + 1)
            .collect(),
        Err(RangeUnsatisfiableError::Unsatisfiable) => {
            return Err(RegistryError::RangeNotSatisfiable { size })
        }
        Err(_) => return Ok(RangeAnswer::Whole),
    };
    let asked: u64 = ranges.iter().map(|r| r.end - r.start).sum();
    Ok(match ranges.len() {
        0 => RangeAnswer::Whole,
        1 => RangeAnswer::One(ranges[0].clone()),
        _ if asked >= size => RangeAnswer::Whole,
        _ => RangeAnswer::Several(ranges),
    })
}

/// A `multipart/byteranges` body (RFC 9110 §14.6) of `ranges` of a blob: its boundary, exact
/// length and stream. The boundary is the blob's digest: a blob cannot contain its own
/// digest, so no part can contain the boundary. Parts are read one at a time.
fn multipart_byteranges(
    r: &Registry,
    digest: &Digest,
    ranges: Vec<std::ops::Range<u64>>,
    size: u64,
) -> (String, u64, ByteStream) {
    let boundary = digest.hex().to_string();
    let heads: Vec<bytes::Bytes> = ranges
        .iter()
        .enumerate()
        .map(|(i, range)| {
            let gap = if i == 0 { "" } else { "\r\n" };
            bytes::Bytes::from(format!(
                "{gap}--{boundary}\r\nContent-Type: application/octet-stream\r\nContent-Range: bytes {}-{}/{size}\r\n\r\n",
                range.start,
                range.end - 1
            ))
        })
        .collect();
    let tail = bytes::Bytes::from(format!("\r\n--{boundary}--\r\n"));
    let length = heads.iter().map(|h| h.len() as u64).sum::<u64>()
        + ranges.iter().map(|r| r.end - r.start).sum::<u64>()
        + tail.len() as u64;
    let parts = r
        .read_blob_ranges(digest, ranges)
        .zip(futures::stream::iter(heads))
        .flat_map(|(part, head)| {
            let head = futures::stream::once(futures::future::ready(Ok(head)));
            match part {
                Ok(part) => head.chain(part).boxed(),
                Err(e) => head
                    .chain(futures::stream::once(futures::future::ready(Err(
                        std::io::Error::other(e),
                    ))))
                    .boxed(),
            }
        })
        .chain(futures::stream::once(futures::future::ready(Ok(tail))));
    (boundary, length, Box::pin(parts))
}

/// Reads a manifest body up to the size limit. An oversized body is still drained (up to
/// `DRAIN_LIMIT`) so that the client, still sending, receives the 413 instead of a reset.
async fn read_manifest_body(headers: &HeaderMap, body: Body) -> Result<Vec<u8>, RegistryError> {
    const DRAIN_LIMIT: usize = 64 * 1024 * 1024;
    let too_large = RegistryError::ManifestTooLarge {
        limit: MAX_MANIFEST_BYTES,
    };
    let declared =
        header_str(headers, &header::CONTENT_LENGTH).and_then(|l| l.parse::<usize>().ok());
    if declared.is_some_and(|l| l > DRAIN_LIMIT) {
        return Err(too_large);
    }
    let mut stream = body.into_data_stream();
    let mut bytes = Vec::new();
    let mut received = 0usize;
    while let Some(chunk) = stream.next().await {
        let chunk = chunk.map_err(|e| RegistryError::Body(std::io::Error::other(e)))?;
        received += chunk.len();
        if received > DRAIN_LIMIT {
            break;
        }
        if received <= MAX_MANIFEST_BYTES {
            bytes.extend_from_slice(&chunk);
        }
    }
    if received > MAX_MANIFEST_BYTES {
        return Err(too_large);
    }
    Ok(bytes)
}

fn paging(params: &HashMap<String, String>) -> Result<(Option<u32>, Option<&str>), ApiError> {
    let n = match params.get("n") {
        None => None,
        Some(n) => Some(n.parse::<u32>().map_err(|_| {
            ApiError::BadParameter(format!(
                "query parameter n={n:?} is not a non-negative integer"
            ))
        })?),
    };
    Ok((n, params.get("last").map(String::as_str)))
}

fn link_next(path: &str, n: usize, last: Option<&String>) -> Option<HeaderValue> {
    let last = last?;
    let encoded: String = url_encode(last);
    HeaderValue::from_str(&format!("<{path}?n={n}&last={encoded}>; rel=\"next\"")).ok()
}

fn url_encode(s: &str) -> String {
    percent_encoding::utf8_percent_encode(s, percent_encoding::NON_ALPHANUMERIC).to_string()
}

fn json_response(body: Vec<u8>, content_type: &'static str) -> Response {
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
fn challenge_scope(name: &RepositoryName, action: Action) -> String {
    let actions = match action {
        Action::Push => "pull,push",
        Action::Delete => "delete",
        _ => "pull",
    };
    format!("repository:{name}:{actions}")
}

/// A refused registry request: `error` with the challenge that tells the client which token
/// to get for `scope` (space-separated scopes of the token spec).
fn refusal(
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
    let route = route(uri.path()).ok_or(ApiError::NoRoute)?;
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
    match (route, method) {
        (Route::Base, Method::GET | Method::HEAD) => {
            Ok(json_response(b"{}".to_vec(), "application/json"))
        }
        (Route::Catalog, Method::GET) => catalog(state, caller, params).await,
        (Route::Tags(name), Method::GET) => tags(r, name, params).await,
        (Route::Manifest(name, reference), m @ (Method::GET | Method::HEAD)) => {
            get_manifest(r, name, reference, headers, m == Method::HEAD).await
        }
        (Route::Manifest(name, reference), Method::PUT) => {
            put_manifest(r, name, reference, headers, body).await
        }
        (Route::Manifest(name, reference), Method::DELETE) => {
            let name = parse_name(name)?;
            let reference = parse_reference(&decoded(reference))?;
            r.delete_manifest(&name, &reference).await?;
            Ok(StatusCode::ACCEPTED.into_response())
        }
        (Route::Blob(name, digest), m @ (Method::GET | Method::HEAD)) => {
            get_blob(r, name, digest, headers, m == Method::HEAD).await
        }
        (Route::Blob(name, digest), Method::DELETE) => {
            let name = parse_name(name)?;
            r.delete_blob(&name, &digest_param(digest)?).await?;
            Ok(StatusCode::ACCEPTED.into_response())
        }
        (Route::UploadStart(name), Method::POST) => {
            start_upload(state, caller, name, params, headers, body).await
        }
        (Route::Upload(name, id), method) => {
            upload(r, name, &decoded(id), method, params, headers, body).await
        }
        (Route::Referrers(name, digest), Method::GET) => {
            let name = parse_name(name)?;
            let subject = digest_param(digest)?;
            let filter = params.get("artifactType").map(String::as_str);
            let index = r.referrers(&name, &subject, filter).await?;
            let mut response = json_response(index, media_type::OCI_INDEX);
            if filter.is_some() {
                response.headers_mut().insert(
                    OCI_FILTERS_APPLIED,
                    HeaderValue::from_static("artifactType"),
                );
            }
            Ok(response)
        }
        _ => Err(ApiError::MethodNotAllowed),
    }
}

/// The catalog, filtered to the repositories the caller may list. A page may then hold fewer
/// than `n` names; the `Link` header still continues where the unfiltered page ended.
async fn catalog(state: &AppState, caller: &Caller, params: &HashMap<String, String>) -> ApiResult {
    let (n, last) = paging(params)?;
    let listing = state.registry.catalog(n, last).await?;
    let continue_after = listing.items.last().cloned();
    let lister = state.access.lister(caller).await?;
    let visible = state.access.listable(&lister, listing.items).await?;
    let body =
        serde_json::to_vec(&serde_json::json!({ "repositories": visible })).expect("serializes");
    let mut response = json_response(body, "application/json");
    if listing.more {
        if let Some(link) = link_next(
            "/v2/_catalog",
            n.map_or(visible.len(), |n| n as usize),
            continue_after.as_ref(),
        ) {
            response.headers_mut().insert(header::LINK, link);
        }
    }
    Ok(response)
}

async fn tags(r: &Registry, name: &str, params: &HashMap<String, String>) -> ApiResult {
    let name = parse_name(name)?;
    let (n, last) = paging(params)?;
    let listing = r.tags(&name, n, last).await?;
    let body =
        serde_json::to_vec(&serde_json::json!({ "name": name.as_str(), "tags": listing.items }))
            .expect("serializes");
    let mut response = json_response(body, "application/json");
    if listing.more {
        if let Some(link) = link_next(
            &format!("/v2/{name}/tags/list"),
            listing.items.len(),
            listing.items.last(),
        ) {
            response.headers_mut().insert(header::LINK, link);
        }
    }
    Ok(response)
}

async fn get_manifest(
    r: &Registry,
    name: &str,
    reference: &str,
    headers: &HeaderMap,
    head: bool,
) -> ApiResult {
    let name = parse_name(name)?;
    let reference = parse_reference(&decoded(reference))?;
    let manifest = r.get_manifest(&name, &reference).await?;
    r.note_pull(&name, &reference, &manifest.digest, !head);
    let accept: Vec<&str> = headers
        .get_all(header::ACCEPT)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .collect();
    if !accepts(&accept, &manifest.media_type) {
        return Err(RegistryError::NotAcceptable {
            stored: manifest.media_type,
        }
        .into());
    }
    let digest = manifest.digest.to_string();
    let length = manifest.content.len();
    let mut response = if head {
        Response::new(Body::empty())
    } else {
        Response::new(Body::from(manifest.content))
    };
    let h = response.headers_mut();
    h.insert(header::CONTENT_TYPE, value(&manifest.media_type));
    h.insert(header::CONTENT_LENGTH, HeaderValue::from(length));
    h.insert(header::ETAG, value(&format!("\"{digest}\"")));
    h.insert(DOCKER_CONTENT_DIGEST, value(&digest));
    Ok(response)
}

async fn put_manifest(
    r: &Registry,
    name: &str,
    reference: &str,
    headers: &HeaderMap,
    body: Body,
) -> ApiResult {
    let name = parse_name(name)?;
    let reference = parse_reference(&decoded(reference))?;
    let bytes = read_manifest_body(headers, body).await?;
    let stored = r
        .put_manifest(
            &name,
            &reference,
            header_str(headers, &header::CONTENT_TYPE),
            &bytes,
        )
        .await?;
    let mut response = StatusCode::CREATED.into_response();
    let h = response.headers_mut();
    h.insert(
        header::LOCATION,
        value(&format!("/v2/{name}/manifests/{}", stored.digest)),
    );
    h.insert(DOCKER_CONTENT_DIGEST, value(&stored.digest.to_string()));
    h.insert(header::CONTENT_LENGTH, HeaderValue::from_static("0"));
    if let Some(subject) = stored.subject {
        h.insert(OCI_SUBJECT, value(&subject.to_string()));
    }
    if let Reference::Tag(tag) = &reference {
        tracing::info!(repository = %name, %tag, digest = %stored.digest, "manifest pushed");
    }
    Ok(response)
}

async fn get_blob(
    r: &Registry,
    name: &str,
    digest: &str,
    headers: &HeaderMap,
    head: bool,
) -> ApiResult {
    let name = parse_name(name)?;
    let digest = digest_param(digest)?;
    let size = r.stat_blob(&name, &digest).await?;
    let answer = requested_ranges(header_str(headers, &header::RANGE), size)?;
    let (status, content_type, content_range, length, body) = match answer {
        RangeAnswer::Whole | RangeAnswer::One(_) => {
            let (status, served) = match answer {
                RangeAnswer::One(range) => (StatusCode::PARTIAL_CONTENT, range),
                _ => (StatusCode::OK, 0..size),
            };
            let content_range = (status == StatusCode::PARTIAL_CONTENT)
                .then(|| format!("bytes {}-{}/{size}", served.start, served.end - 1));
            let body = if head {
                Body::empty()
            } else {
                Body::from_stream(r.read_blob(&digest, served.clone()).await?)
            };
            let octets = HeaderValue::from_static("application/octet-stream");
            (
                status,
                octets,
                content_range,
                served.end - served.start,
                body,
            )
        }
        RangeAnswer::Several(ranges) => {
            let (boundary, length, stream) = multipart_byteranges(r, &digest, ranges, size);
            let body = if head {
                Body::empty()
            } else {
                Body::from_stream(stream)
            };
            let content_type = value(&format!("multipart/byteranges; boundary={boundary}"));
            (
                StatusCode::PARTIAL_CONTENT,
                content_type,
                None,
                length,
                body,
            )
        }
    };
    let mut response = Response::new(body);
    *response.status_mut() = status;
    let h = response.headers_mut();
    h.insert(header::CONTENT_LENGTH, HeaderValue::from(length));
    h.insert(header::CONTENT_TYPE, content_type);
    h.insert(header::ACCEPT_RANGES, HeaderValue::from_static("bytes"));
    h.insert(header::ETAG, value(&format!("\"{digest}\"")));
    h.insert(DOCKER_CONTENT_DIGEST, value(&digest.to_string()));
    if let Some(content_range) = content_range {
        h.insert(header::CONTENT_RANGE, value(&content_range));
    }
    Ok(response)
}

/// Whether `caller` may mount blobs from `from` into `name`: it must be allowed to pull
/// there. A bearer token that lacks pull on `from` while its subject could have it is refused
/// with a challenge naming both scopes (as Distribution does), so the client asks for a token
/// with both and mounts; a caller who may not pull from `from` at all gets an upload session
/// instead (the spec's answer to a mount that cannot be done). Without `from`, the registry
/// would look for the blob in every repository, so only system administrators get automatic
/// mounts (for others a digest must not open another tenant's blobs).
async fn may_mount_from(
    state: &AppState,
    caller: &Caller,
    name: &RepositoryName,
    from: Option<&RepositoryName>,
    headers: &HeaderMap,
) -> Result<bool, ApiError> {
    match from {
        Some(from) => match state.access.authorize(caller, from, Action::Pull).await {
            Ok(()) => Ok(true),
            Err(AccessError::Meta(e)) => Err(e.into()),
            Err(error @ AccessError::InsufficientScope { .. }) => {
                let scopes = format!(
                    "{} {}",
                    challenge_scope(name, Action::Push),
                    challenge_scope(from, Action::Pull)
                );
                Err(refusal(state, headers, error, Some(&scopes)))
            }
            Err(_) => Ok(false),
        },
        None => Ok(matches!(
            state.access.lister(caller).await,
            Ok(Identity::User {
                system_admin: true,
                ..
            })
        )),
    }
}

async fn start_upload(
    state: &AppState,
    caller: &Caller,
    name: &str,
    params: &HashMap<String, String>,
    headers: &HeaderMap,
    body: Body,
) -> ApiResult {
    let r = state.registry.as_ref();
    let name = parse_name(name)?;
    if let Some(mount) = params.get("mount") {
        let digest: Digest = mount.parse().map_err(RegistryError::from)?;
        let from = params.get("from").map(|f| parse_name(f)).transpose()?;
        if may_mount_from(state, caller, &name, from.as_ref(), headers).await?
            && r.mount_blob(&name, &digest, from.as_ref()).await?.is_some()
        {
            return Ok(blob_created(&name, &digest));
        }
        // Not mountable: the spec says to answer with a new upload session instead.
    } else if let Some(digest) = params.get("digest") {
        let digest: Digest = digest.parse().map_err(RegistryError::from)?;
        r.upload_monolithic(&name, &digest, body_stream(body))
            .await?;
        return Ok(blob_created(&name, &digest));
    }
    let id = r.start_upload(&name).await?;
    Ok(upload_progress(StatusCode::ACCEPTED, &name, &id, 0))
}

async fn upload(
    r: &Registry,
    name: &str,
    id: &str,
    method: Method,
    params: &HashMap<String, String>,
    headers: &HeaderMap,
    body: Body,
) -> ApiResult {
    let name = parse_name(name)?;
    match method {
        Method::GET => {
            let size = r.upload_status(&name, id).await?;
            Ok(upload_progress(StatusCode::NO_CONTENT, &name, id, size))
        }
        Method::PATCH => {
            let start = content_range(headers)?;
            let size = r.append_upload(&name, id, start, body_stream(body)).await?;
            Ok(upload_progress(StatusCode::ACCEPTED, &name, id, size))
        }
        Method::PUT => {
            let digest: Digest = params
                .get("digest")
                .ok_or(RegistryError::DigestMissing)?
                .parse()
                .map_err(RegistryError::from)?;
            let has_body = header_str(headers, &header::CONTENT_LENGTH).is_none_or(|l| l != "0");
            let last_chunk = if has_body {
                Some((content_range(headers)?, body_stream(body)))
            } else {
                None
            };
            r.finish_upload(&name, id, &digest, last_chunk).await?;
            Ok(blob_created(&name, &digest))
        }
        Method::DELETE => {
            r.cancel_upload(&name, id).await?;
            Ok(StatusCode::NO_CONTENT.into_response())
        }
        _ => Err(ApiError::MethodNotAllowed),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The scope each route and method needs, as a token spec scope string ("" for none).
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

    #[test]
    fn single_byte_ranges() {
        for (raw, range) in [
            ("bytes=0-9", 0..10),
            ("bytes=90-", 90..100),
            ("bytes=-10", 90..100),
            ("bytes=-500", 0..100),
            ("bytes=95-200", 95..100),
            // Ranges past the end are dropped; one is left.
            ("bytes=0-9,500-600", 0..10),
        ] {
            assert_eq!(
                requested_ranges(Some(raw), 100).unwrap(),
                RangeAnswer::One(range),
                "{raw}"
            );
        }
    }

    #[test]
    fn multi_range_blob_get_answers_every_satisfiable_range() {
        assert_eq!(
            requested_ranges(Some("bytes=0-9,50000-50009"), 100_000).unwrap(),
            RangeAnswer::Several(vec![0..10, 50_000..50_010])
        );
        assert_eq!(
            requested_ranges(Some("bytes=50-59, 0-4, 99999-"), 100_000).unwrap(),
            RangeAnswer::Several(vec![50..60, 0..5, 99_999..100_000])
        );
        // As much as the blob or more: the whole blob.
        assert_eq!(
            requested_ranges(Some("bytes=0-59,40-99"), 100).unwrap(),
            RangeAnswer::Whole
        );
    }

    #[test]
    fn only_wholly_unsatisfiable_ranges_are_416() {
        for raw in [
            "bytes=100-",
            "bytes=100-200",
            "bytes=-0",
            "bytes=100-109,200-",
        ] {
            assert!(
                matches!(
                    requested_ranges(Some(raw), 100),
                    Err(RegistryError::RangeNotSatisfiable { size: 100 })
                ),
                "{raw}"
            );
        }
    }

    #[test]
    fn invalid_range_headers_are_ignored() {
        for raw in [
            "items=0-1",
            "bytes=5-1",
            "bytes=x-1",
            "bytes=",
            "bytes=0-1,x",
        ] {
            assert_eq!(
                requested_ranges(Some(raw), 100).unwrap(),
                RangeAnswer::Whole,
                "{raw}"
            );
        }
        let too_many = format!(
            "bytes={}",
            (0..=MAX_RANGES.get())
                .map(|i| format!("{i}-{i}"))
                .collect::<Vec<_>>()
                .join(",")
        );
        assert_eq!(
            requested_ranges(Some(&too_many), 1000).unwrap(),
            RangeAnswer::Whole
        );
        assert_eq!(requested_ranges(None, 100).unwrap(), RangeAnswer::Whole);
        assert_eq!(
            requested_ranges(Some("bytes=-5"), 0).unwrap(),
            RangeAnswer::Whole
        );
    }

    proptest::proptest! {
        #[test]
        fn route_recognition_never_panics(path in "\\PC{0,80}|/v2/[a-z/._-]{0,30}") {
            let _ = route(&path);
        }

        #[test]
        fn answered_ranges_lie_inside_the_blob_and_416_only_when_none_could(
            raw in "bytes=([0-9]{0,5}-[0-9]{0,5}, ?){0,4}[0-9]{0,5}-[0-9]{0,5}|\\PC{0,30}",
            size in 0u64..50_000,
        ) {
            let inside = |r: &std::ops::Range<u64>| r.start < r.end && r.end <= size;
            match requested_ranges(Some(&raw), size) {
                Ok(RangeAnswer::Whole) => {}
                Ok(RangeAnswer::One(r)) => proptest::prop_assert!(inside(&r)),
                Ok(RangeAnswer::Several(ranges)) => {
                    proptest::prop_assert!(ranges.len() >= 2);
                    proptest::prop_assert!(ranges.iter().all(inside));
                    proptest::prop_assert!(ranges.iter().map(|r| r.end - r.start).sum::<u64>() < size);
                }
                Err(_) => {
                    // Every range of the header starts at or past the end (or is a zero suffix).
                    let spec = &raw["bytes=".len()..];
                    for part in spec.split(',').map(str::trim).filter(|p| !p.is_empty()) {
                        let (first, _) = part.split_once('-').expect("a valid range");
                        if first.is_empty() {
                            proptest::prop_assert!(part.trim_start_matches(['-', '0']).is_empty());
                        } else {
                            proptest::prop_assert!(first.parse::<u64>().map_or(true, |n| n >= size));
                        }
                    }
                }
            }
        }

        #[test]
        fn content_range_parsing_never_panics(raw in "\\PC{0,30}|[0-9]{0,20}-[0-9]{0,20}") {
            let mut h = HeaderMap::new();
            if let Ok(v) = HeaderValue::from_str(&raw) {
                h.insert(header::CONTENT_RANGE, v);
                let _ = content_range(&h);
            }
        }
    }

    #[test]
    fn content_ranges() {
        let mut h = HeaderMap::new();
        assert_eq!(content_range(&h).unwrap(), None);
        h.insert(header::CONTENT_RANGE, HeaderValue::from_static("10-19"));
        assert_eq!(content_range(&h).unwrap(), Some(10));
        h.insert(header::CONTENT_LENGTH, HeaderValue::from_static("5"));
        assert!(content_range(&h).is_err());
        h.insert(header::CONTENT_RANGE, HeaderValue::from_static("bytes=0-4"));
        assert_eq!(content_range(&h).unwrap(), Some(0));
        h.insert(header::CONTENT_RANGE, HeaderValue::from_static("9-3"));
        assert!(content_range(&h).is_err());
    }
}
