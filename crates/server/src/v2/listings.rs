//! Listings: the catalog (filtered to what the caller may list) and tags, with paging.

use std::collections::HashMap;

use gantry_access::Caller;
use gantry_mirror::Mirror;
use gantry_registry::parse_name;
use http::{header, HeaderValue};

use super::{json_response, ApiResult};
use crate::error::ApiError;
use crate::AppState;

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

/// The catalog, filtered to the repositories the caller may list. A page may then hold fewer
/// than `n` names; the `Link` header still continues where the unfiltered page ended.
pub(super) async fn catalog(
    state: &AppState,
    caller: &Caller,
    params: &HashMap<String, String>,
) -> ApiResult {
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

/// A tag listing: the registry's, or in a cache project the upstream's.
pub(super) async fn tags(
    mirror: &Mirror,
    name: &str,
    params: &HashMap<String, String>,
) -> ApiResult {
    let name = parse_name(name)?;
    let (n, last) = paging(params)?;
    let listing = mirror.tags(&name, n, last).await?;
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
