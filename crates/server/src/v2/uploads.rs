//! Blob uploads: starting a session (monolithic, chunked, or a cross-repository mount),
//! its status, chunks, completion and cancellation.

use std::collections::HashMap;

use axum::body::Body;
use axum::response::{IntoResponse, Response};
use futures::TryStreamExt;
use gantry_access::{AccessError, Caller};
use gantry_auth::{Action, Identity};
use gantry_oci::{Digest, RepositoryName};
use gantry_registry::{parse_name, Registry, RegistryError};
use gantry_storage::ByteStream;
use http::{header, HeaderMap, HeaderName, HeaderValue, Method, StatusCode};

use super::{challenge_scope, header_str, refusal, value, ApiResult, DOCKER_CONTENT_DIGEST};
use crate::error::ApiError;
use crate::AppState;

const DOCKER_UPLOAD_UUID: HeaderName = HeaderName::from_static("docker-upload-uuid");

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

pub(super) async fn start_upload(
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

pub(super) async fn upload(
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

    proptest::proptest! {
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
