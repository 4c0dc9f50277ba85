//! The signed-in viewer of a page: the session cookie resolved by the access service, and the
//! CSRF check of forms.

use std::net::SocketAddr;
use std::sync::Arc;

use axum::extract::{ConnectInfo, FromRequestParts};
use axum::response::{IntoResponse, Redirect, Response};
use gantry_access::Actor;
use http::request::Parts;
use http::HeaderMap;

use crate::error::PageError;
use crate::notice::Done;
use crate::Web;

/// The session cookie's name over plain HTTP.
pub(crate) const COOKIE: &str = "gantry_session";
/// Its name over HTTPS: the `__Host-` prefix makes browsers refuse it from a sibling domain, or
/// without `Secure` and `Path=/`.
pub(crate) const SECURE_COOKIE: &str = "__Host-gantry_session";

/// The session cookie's name for a server whose pages are served over HTTPS (`secure`) or not.
pub(crate) fn cookie_name(secure: bool) -> &'static str {
    if secure {
        SECURE_COOKIE
    } else {
        COOKIE
    }
}

/// Who is looking: their caller for the API, the session's CSRF token and cookie secret, and
/// what the form they just sent did (from `?done=`).
pub(crate) struct Viewer {
    pub actor: Actor,
    pub csrf: String,
    pub secret: String,
    pub done: Option<Done>,
}

impl Viewer {
    /// Refuses a form whose `csrf` field is not this session's token.
    pub fn check_csrf(&self, sent: Option<&str>) -> Result<(), PageError> {
        let matches = sent.is_some_and(|sent| {
            // Compared in constant time: the token is a secret of the session.
            sent.len() == self.csrf.len()
                && sent
                    .bytes()
                    .zip(self.csrf.bytes())
                    .fold(0u8, |diff, (a, b)| diff | (a ^ b))
                    == 0
        });
        if matches {
            Ok(())
        } else {
            Err(PageError::Csrf)
        }
    }
}

/// The value of cookie `name` in the request's `Cookie` headers.
pub(crate) fn cookie<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a str> {
    headers
        .get_all(http::header::COOKIE)
        .iter()
        .filter_map(|value| value.to_str().ok())
        .flat_map(|value| value.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(key, _)| *key == name)
        .map(|(_, value)| value)
}

/// The client's address as the server's rules find it.
pub(crate) fn client_of(web: &Web, parts: &Parts) -> String {
    parts
        .extensions
        .get::<ConnectInfo<SocketAddr>>()
        .map(|ConnectInfo(addr)| (web.client_address)(addr, &parts.headers))
        .unwrap_or_default()
}

impl FromRequestParts<Arc<Web>> for Viewer {
    /// Not signed in: to the sign-in form, coming back here after.
    type Rejection = Response;

    async fn from_request_parts(parts: &mut Parts, web: &Arc<Web>) -> Result<Self, Response> {
        let to_login = || {
            let here = parts
                .uri
                .path_and_query()
                .map(|p| p.as_str())
                .unwrap_or("/");
            Redirect::to(&format!("/login?next={}", crate::api::encode(here))).into_response()
        };
        let Some(secret) = cookie(&parts.headers, cookie_name(web.secure_cookies)) else {
            return Err(to_login());
        };
        let client = client_of(web, parts);
        match web.access.web_caller(secret, &client).await {
            Ok(Some((actor, csrf))) => Ok(Viewer {
                actor,
                csrf,
                secret: secret.to_string(),
                done: Done::in_query(parts.uri.query()),
            }),
            Ok(None) => Err(to_login()),
            Err(e) => Err(PageError::Internal(e.to_string()).into_response()),
        }
    }
}

/// The `Set-Cookie` value of a session (`secret`; empty with `max_age` 0 ends it).
pub(crate) fn session_cookie(secret: &str, max_age_secs: u64, secure: bool) -> String {
    format!(
        "{}={secret}; Path=/; HttpOnly; SameSite=Lax; Max-Age={max_age_secs}{}",
        cookie_name(secure),
        if secure { "; Secure" } else { "" }
    )
}

/// Whether a form post comes from another site: its `Sec-Fetch-Site` says `cross-site`, or its
/// `Origin` names another host than the request's `Host` (browsers send both on posts). Such
/// posts are refused — the sign-in form's too, which has no session (and no token) yet.
pub(crate) fn cross_site(headers: &HeaderMap) -> bool {
    let header = |name: &str| headers.get(name).and_then(|v| v.to_str().ok());
    if header("sec-fetch-site") == Some("cross-site") {
        return true;
    }
    match (header("origin"), header("host")) {
        (Some("null"), _) => true,
        (Some(origin), Some(host)) => origin.split_once("://").map(|(_, rest)| rest) != Some(host),
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_session_cookie_is_found_among_others_and_set_safely() {
        let mut headers = HeaderMap::new();
        headers.append("cookie", "a=1; gantry_session=s3cr3t; b=2".parse().unwrap());
        assert_eq!(cookie(&headers, COOKIE), Some("s3cr3t"));
        assert_eq!(cookie(&headers, "missing"), None);
        let set = session_cookie("abc", 60, true);
        for attribute in ["HttpOnly", "SameSite=Lax", "Secure", "Path=/", "Max-Age=60"] {
            assert!(set.contains(attribute), "{set}");
        }
        assert!(!session_cookie("abc", 60, false).contains("Secure"));
        assert!(session_cookie("abc", 60, true).starts_with("__Host-gantry_session=abc;"));
    }

    #[test]
    fn posts_from_another_site_are_told_apart() {
        let headers = |pairs: &[(&str, &str)]| {
            let mut map = HeaderMap::new();
            for (name, value) in pairs {
                map.insert(
                    http::HeaderName::from_bytes(name.as_bytes()).unwrap(),
                    value.parse().unwrap(),
                );
            }
            map
        };
        let host = ("host", "registry.example:5000");
        assert!(!cross_site(&headers(&[host])));
        assert!(!cross_site(&headers(&[
            host,
            ("origin", "https://registry.example:5000")
        ])));
        assert!(!cross_site(&headers(&[
            host,
            ("sec-fetch-site", "same-origin")
        ])));
        assert!(cross_site(&headers(&[
            host,
            ("origin", "https://evil.example")
        ])));
        assert!(cross_site(&headers(&[host, ("origin", "null")])));
        assert!(cross_site(&headers(&[
            host,
            ("sec-fetch-site", "cross-site")
        ])));
    }
}
