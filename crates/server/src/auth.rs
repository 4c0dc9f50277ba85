//! Who is calling (the `Authorization` header), and the token endpoint of the Docker token
//! spec: `GET` with Basic credentials (docker, skopeo, podman, oras) and the OAuth2 `POST`
//! form with password and refresh-token grants (containerd).

use std::net::SocketAddr;
use std::sync::Arc;

use axum::extract::{ConnectInfo, RawQuery, State};
use axum::response::{IntoResponse, Response};
use base64::engine::general_purpose::STANDARD;
use base64::Engine;
use gantry_access::{AccessError, Caller, IssuedToken, LoginVia};
use gantry_auth::{Identity, Scope};
use http::{header, HeaderMap, Method};
use serde_json::json;

use crate::error::ApiError;
use crate::AppState;

/// The path of the token endpoint (the `realm` of challenges).
pub const TOKEN_PATH: &str = "/auth/token";

/// The caller's address as audit records and throttling see it.
pub fn client_address(addr: &SocketAddr) -> String {
    addr.ip().to_string()
}

/// Splits Basic credentials; `None` when the header is not Basic.
fn basic_credentials(value: &str) -> Option<Result<(String, String), AccessError>> {
    let encoded = value
        .strip_prefix("Basic ")
        .or_else(|| value.strip_prefix("basic "))?;
    let malformed = || {
        AccessError::Unauthenticated(
            "malformed Basic credentials: expected base64 of user:password".into(),
        )
    };
    Some(
        STANDARD
            .decode(encoded.trim())
            .ok()
            .and_then(|bytes| String::from_utf8(bytes).ok())
            .and_then(|text| {
                text.split_once(':')
                    .map(|(u, p)| (u.to_string(), p.to_string()))
            })
            .ok_or_else(malformed),
    )
}

/// Resolves the request's `Authorization` header to a caller. Unknown schemes and bad
/// credentials are refused (a client that sends credentials means to use them).
pub async fn caller(
    state: &AppState,
    headers: &HeaderMap,
    client: &str,
    via: LoginVia,
) -> Result<Caller, AccessError> {
    let Some(value) = headers.get(header::AUTHORIZATION) else {
        return Ok(Caller::anonymous());
    };
    let value = value
        .to_str()
        .map_err(|_| AccessError::Unauthenticated("Authorization header is not ASCII".into()))?;
    if let Some(credentials) = basic_credentials(value) {
        let (user, password) = credentials?;
        return Ok(Caller::Identity(
            state.access.basic(&user, &password, client, via).await?,
        ));
    }
    if let Some(token) = value
        .strip_prefix("Bearer ")
        .or_else(|| value.strip_prefix("bearer "))
    {
        return state.access.bearer(token.trim());
    }
    Err(AccessError::Unauthenticated(
        "unsupported Authorization scheme: use Basic credentials or a Bearer token".into(),
    ))
}

/// The absolute URL of the token endpoint: the configured public URL, or the address the
/// client used to reach us.
pub fn realm(state: &AppState, headers: &HeaderMap) -> String {
    if let Some(public) = &state.public_url {
        return format!("{}{TOKEN_PATH}", public.trim_end_matches('/'));
    }
    let host = headers
        .get(header::HOST)
        .and_then(|h| h.to_str().ok())
        .unwrap_or("localhost");
    let scheme = headers
        .get("x-forwarded-proto")
        .and_then(|h| h.to_str().ok())
        .filter(|p| *p == "https" || *p == "http")
        .unwrap_or("http");
    format!("{scheme}://{host}{TOKEN_PATH}")
}

/// What a token request carries, from the query (GET) or the form body (POST).
#[derive(Default)]
struct TokenRequest {
    scopes: Vec<String>,
    service: Option<String>,
    grant_type: Option<String>,
    username: Option<String>,
    password: Option<String>,
    refresh_token: Option<String>,
    offline: bool,
}

impl TokenRequest {
    fn parse(encoded: &[u8]) -> TokenRequest {
        let mut request = TokenRequest::default();
        for (key, value) in form_urlencoded::parse(encoded) {
            let value = value.into_owned();
            match key.as_ref() {
                "scope" => request.scopes.push(value),
                "service" => request.service = Some(value),
                "grant_type" => request.grant_type = Some(value),
                "username" => request.username = Some(value),
                "password" => request.password = Some(value),
                "refresh_token" => request.refresh_token = Some(value),
                "offline_token" => request.offline = value == "true",
                "access_type" => request.offline = value == "offline",
                _ => {}
            }
        }
        request
    }
}

fn time_rfc3339(secs: u64) -> String {
    time::OffsetDateTime::from_unix_timestamp(secs as i64)
        .ok()
        .and_then(|t| {
            t.format(&time::format_description::well_known::Rfc3339)
                .ok()
        })
        .unwrap_or_default()
}

fn token_response(issued: IssuedToken, oauth: bool) -> Response {
    let mut body = json!({
        "token": issued.token,
        "access_token": issued.token,
        "expires_in": issued.expires_in,
        "issued_at": time_rfc3339(issued.issued_at),
    });
    if let Some(refresh) = issued.refresh_token {
        body["refresh_token"] = json!(refresh);
    }
    if oauth {
        body["scope"] = json!(issued.granted.join(" "));
    }
    let mut response = axum::Json(body).into_response();
    response.headers_mut().insert(
        header::CACHE_CONTROL,
        http::HeaderValue::from_static("no-store"),
    );
    response
}

/// `GET|POST /auth/token`.
pub async fn token(
    State(state): State<Arc<AppState>>,
    ConnectInfo(addr): ConnectInfo<SocketAddr>,
    method: Method,
    RawQuery(query): RawQuery,
    headers: HeaderMap,
    body: axum::body::Bytes,
) -> Result<Response, ApiError> {
    let client = client_address(&addr);
    let oauth = method == Method::POST;
    let request = match method {
        Method::GET => TokenRequest::parse(query.unwrap_or_default().as_bytes()),
        Method::POST => TokenRequest::parse(&body),
        _ => return Err(ApiError::MethodNotAllowed),
    };
    let challenge = format!("Basic realm=\"{}\"", realm(&state, &headers));
    let refuse = |error: AccessError| ApiError::Access {
        error,
        challenge: challenge.clone(),
    };
    if let Some(service) = &request.service {
        if service != &state.access.config().service {
            return Err(refuse(AccessError::Invalid(format!(
                "this registry issues tokens for service {:?}, not {service:?}",
                state.access.config().service
            ))));
        }
    }
    let scopes = Scope::parse_all(request.scopes.iter().map(String::as_str))
        .map_err(|e| refuse(AccessError::Invalid(e.to_string())))?;
    let identity: Identity = if oauth {
        match request.grant_type.as_deref() {
            Some("password") => {
                let (Some(user), Some(password)) = (&request.username, &request.password) else {
                    return Err(refuse(AccessError::Invalid(
                        "grant_type=password needs username and password".into(),
                    )));
                };
                state
                    .access
                    .login(user, password, &client, LoginVia::OAuth2Password)
                    .await
                    .map_err(refuse)?
            }
            Some("refresh_token") => {
                let Some(refresh) = &request.refresh_token else {
                    return Err(refuse(AccessError::Invalid(
                        "grant_type=refresh_token needs refresh_token".into(),
                    )));
                };
                state.access.refresh(refresh).await.map_err(refuse)?
            }
            other => {
                return Err(refuse(AccessError::Invalid(format!(
                    "unsupported grant_type {other:?}: use password or refresh_token"
                ))))
            }
        }
    } else {
        match caller(&state, &headers, &client, LoginVia::TokenEndpoint)
            .await
            .map_err(refuse)?
        {
            Caller::Identity(identity) => identity,
            Caller::Token(_) => {
                return Err(refuse(AccessError::Unauthenticated(
                    "the token endpoint takes Basic credentials, not a token".into(),
                )))
            }
        }
    };
    let issued = state
        .access
        .issue(&identity, &scopes, request.offline)
        .await
        .map_err(refuse)?;
    tracing::debug!(subject = identity.name(), granted = ?issued.granted, "token issued");
    Ok(token_response(issued, oauth))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn basic_credentials_are_split_at_the_first_colon() {
        let encoded = format!("Basic {}", STANDARD.encode("robot$a+b:pa:ss"));
        let (user, password) = basic_credentials(&encoded).unwrap().unwrap();
        assert_eq!((user.as_str(), password.as_str()), ("robot$a+b", "pa:ss"));
        assert!(basic_credentials("Bearer x").is_none());
        assert!(basic_credentials("Basic !!!").unwrap().is_err());
        assert!(
            basic_credentials(&format!("Basic {}", STANDARD.encode("nocolon")))
                .unwrap()
                .is_err()
        );
    }

    #[test]
    fn token_requests_keep_every_scope() {
        let r = TokenRequest::parse(
            b"grant_type=password&username=u&password=p%26q&scope=repository%3Aa%3Apull+repository%3Ab%3Apush&scope=registry%3Acatalog%3A*&access_type=offline",
        );
        assert_eq!(
            r.scopes,
            ["repository:a:pull repository:b:push", "registry:catalog:*"]
        );
        assert_eq!(r.password.as_deref(), Some("p&q"));
        assert!(r.offline);
        assert_eq!(r.grant_type.as_deref(), Some("password"));
    }
}
