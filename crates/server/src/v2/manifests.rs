//! Manifests (GET, HEAD, PUT, DELETE) and the referrers API.

use std::collections::HashMap;

use axum::body::Body;
use axum::response::{IntoResponse, Response};
use futures::StreamExt;
use gantry_mirror::Mirror;
use gantry_oci::manifest::MAX_MANIFEST_BYTES;
use gantry_oci::{media_type, Reference};
use gantry_registry::{accepts, parse_name, parse_reference, Registry, RegistryError};
use http::{header, HeaderMap, HeaderName, HeaderValue, StatusCode};

use super::{
    decoded, digest_param, header_str, json_response, value, ApiResult, DOCKER_CONTENT_DIGEST,
};

const OCI_SUBJECT: HeaderName = HeaderName::from_static("oci-subject");
const OCI_FILTERS_APPLIED: HeaderName = HeaderName::from_static("oci-filters-applied");

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

/// A manifest GET or HEAD: from the registry, or in a cache project through the
/// pull-through cache.
pub(super) async fn get_manifest(
    mirror: &Mirror,
    name: &str,
    reference: &str,
    headers: &HeaderMap,
    head: bool,
) -> ApiResult {
    let name = parse_name(name)?;
    let reference = parse_reference(&decoded(reference))?;
    let manifest = mirror.pull_manifest(&name, &reference, head).await?;
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

pub(super) async fn put_manifest(
    r: &Registry,
    name: &str,
    reference: &str,
    headers: &HeaderMap,
    body: Body,
    actor: &str,
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
            actor,
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

pub(super) async fn delete_manifest(
    r: &Registry,
    name: &str,
    reference: &str,
    actor: &str,
) -> ApiResult {
    let name = parse_name(name)?;
    let reference = parse_reference(&decoded(reference))?;
    r.delete_manifest(&name, &reference, actor).await?;
    Ok(StatusCode::ACCEPTED.into_response())
}

/// The referrers of a manifest, as an OCI index (filtered by `artifactType` when given).
pub(super) async fn referrers(
    r: &Registry,
    name: &str,
    digest: &str,
    params: &HashMap<String, String>,
) -> ApiResult {
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
