//! The REST API asked in-process as the signed-in user: a request to the server's own router
//! carrying [`ActingAs`], which the API's caller extractor takes instead of credentials (an
//! extension no client can send), so the API authorizes the page's every read and write.

use axum::body::Body;
use axum::Router;
use gantry_access::{ActingAs, Actor};
use http::{Method, Request};
use serde::de::DeserializeOwned;
use serde_json::Value;
use tower::ServiceExt;

use crate::error::PageError;

/// The largest API answer a page reads.
const ANSWER_LIMIT: usize = 64 << 20;

/// Asks the API `method path` (path and query, already encoded) with a JSON `body` as
/// `actor`; the answer's JSON. Errors: `Api` with the API's status and message.
pub(crate) async fn call(
    api: &Router,
    actor: &Actor,
    method: Method,
    path: &str,
    body: Option<&Value>,
) -> Result<Value, PageError> {
    let request = Request::builder()
        .method(method)
        .uri(path)
        .header(http::header::CONTENT_TYPE, "application/json")
        .extension(ActingAs(actor.clone()))
        .body(match body {
            Some(body) => Body::from(serde_json::to_vec(body).expect("JSON serializes")),
            None => Body::empty(),
        })
        .map_err(|e| PageError::Internal(format!("request {path}: {e}")))?;
    let response = api
        .clone()
        .oneshot(request)
        .await
        .map_err(|e| PageError::Internal(format!("{path}: {e}")))?;
    let status = response.status();
    let bytes = axum::body::to_bytes(response.into_body(), ANSWER_LIMIT)
        .await
        .map_err(|e| PageError::Internal(format!("reading {path}: {e}")))?;
    let json: Value = if bytes.is_empty() {
        Value::Null
    } else {
        serde_json::from_slice(&bytes)
            .map_err(|e| PageError::Internal(format!("{path} answered no JSON: {e}")))?
    };
    if !status.is_success() {
        let message = json["errors"][0]["message"]
            .as_str()
            .unwrap_or("the request failed")
            .to_string();
        return Err(PageError::Api { status, message });
    }
    Ok(json)
}

/// [`call`] of a GET, read as `T`.
pub(crate) async fn get<T: DeserializeOwned>(
    api: &Router,
    actor: &Actor,
    path: &str,
) -> Result<T, PageError> {
    let json = call(api, actor, Method::GET, path, None).await?;
    serde_json::from_value(json)
        .map_err(|e| PageError::Internal(format!("{path} answered an unexpected shape: {e}")))
}

/// `value` as one path segment or query value: everything but unreserved characters
/// percent-encoded (a repository's `/` too, as the API's `{repository}` wants it).
pub(crate) fn encode(value: &str) -> String {
    let mut out = String::with_capacity(value.len());
    for byte in value.bytes() {
        if byte.is_ascii_alphanumeric() || matches!(byte, b'-' | b'_' | b'.' | b'~') {
            out.push(byte as char);
        } else {
            out.push_str(&format!("%{byte:02X}"));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_repository_name_is_one_encoded_segment() {
        assert_eq!(encode("team/app"), "team%2Fapp");
        assert_eq!(encode("v1.2_x-y~"), "v1.2_x-y~");
        assert_eq!(encode("a b&c=<d>"), "a%20b%26c%3D%3Cd%3E");
        assert_eq!(encode("é"), "%C3%A9");
    }
}
