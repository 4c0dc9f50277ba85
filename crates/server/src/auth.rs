//! Who is calling (the `Authorization` header), and the token endpoint of the Docker token
//! spec: `GET` with Basic credentials (docker, skopeo, podman, oras) and the OAuth2 `POST`
//! form with password and refresh-token grants (containerd).

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;

use axum::extract::{ConnectInfo, RawQuery, State};
use axum::response::{IntoResponse, Response};
use base64::engine::general_purpose::STANDARD;
use base64::Engine;
use gantry_access::{AccessError, Caller, IssuedToken, LoginVia};
use gantry_auth::scope::Resource;
use gantry_auth::{Identity, Scope};
use http::{header, HeaderMap, Method};
use serde_json::json;

use crate::error::ApiError;
use crate::AppState;

/// The path of the token endpoint (the `realm` of challenges).
pub const TOKEN_PATH: &str = "/auth/token";

/// The reverse proxies whose `X-Forwarded-For` / `Forwarded` headers are believed: a list of
/// addresses and CIDR networks. Empty (the default): no header is believed, the client is the
/// peer of the connection.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TrustedProxies(Vec<ipnet::IpNet>);

/// A trusted-proxy entry that is neither an IP address nor a CIDR network.
#[derive(Debug, thiserror::Error)]
#[error("{0:?} is not an IP address or a CIDR network such as 10.0.0.0/8 or fd00::/8")]
pub struct BadTrustedProxy(pub String);

impl TrustedProxies {
    /// Parses entries such as `10.1.2.3`, `10.0.0.0/8`, `::1`, `fd00::/8`.
    pub fn parse<S: AsRef<str>>(entries: &[S]) -> Result<TrustedProxies, BadTrustedProxy> {
        entries
            .iter()
            .map(|entry| {
                let entry = entry.as_ref().trim();
                entry
                    .parse::<ipnet::IpNet>()
                    .or_else(|_| entry.parse::<IpAddr>().map(ipnet::IpNet::from))
                    .map_err(|_| BadTrustedProxy(entry.to_string()))
            })
            .collect::<Result<_, _>>()
            .map(TrustedProxies)
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    fn contains(&self, ip: IpAddr) -> bool {
        let ip = ip.to_canonical();
        self.0.iter().any(|net| net.contains(&ip))
    }
}

/// One hop of `X-Forwarded-For` (`192.0.2.1`, `[2001:db8::1]:4711`, `192.0.2.1:80`) or of a
/// `Forwarded` `for=` parameter (quoted); `None` for `unknown` and obfuscated identifiers.
fn forwarded_hop(raw: &str) -> Option<IpAddr> {
    let raw = raw.trim().trim_matches('"');
    if let Ok(ip) = raw.parse::<IpAddr>() {
        return Some(ip);
    }
    if let Ok(socket) = raw.parse::<SocketAddr>() {
        return Some(socket.ip());
    }
    raw.strip_prefix('[')
        .and_then(|rest| rest.split(']').next())
        .and_then(|inner| inner.parse().ok())
}

/// The forwarding chain a proxy reported, client first: `X-Forwarded-For` (what nginx, HAProxy
/// and Traefik set), else the `for=` parameters of `Forwarded` (RFC 7239). Entries that are not
/// addresses are `None`.
fn forwarding_chain(headers: &HeaderMap) -> Vec<Option<IpAddr>> {
    let xff: Vec<_> = headers
        .get_all("x-forwarded-for")
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .map(forwarded_hop)
        .collect();
    if !xff.is_empty() {
        return xff;
    }
    headers
        .get_all(header::FORWARDED)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .filter_map(|element| {
            element.split(';').find_map(|pair| {
                let (key, value) = pair.split_once('=')?;
                key.trim()
                    .eq_ignore_ascii_case("for")
                    .then(|| forwarded_hop(value))
            })
        })
        .collect()
}

/// The caller's address as audit records and throttling see it: the peer of the connection,
/// unless the peer is a trusted proxy; then the forwarding chain is read from the right
/// (nearest hop first) past trusted proxies, and the first address not trusted is the client
/// (entries further left were written by that client and may be forged). A hop that is not an
/// address stops the walk at the last address known.
pub fn client_address(trusted: &TrustedProxies, peer: &SocketAddr, headers: &HeaderMap) -> String {
    let mut client = peer.ip().to_canonical();
    if trusted.contains(client) {
        for hop in forwarding_chain(headers).into_iter().rev() {
            let Some(hop) = hop else { break };
            client = hop.to_canonical();
            if !trusted.contains(client) {
                break;
            }
        }
    }
    client.to_string()
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
/// client used to reach us (https when a proxy says so or when this server serves TLS).
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
        .unwrap_or(if state.serves_tls { "https" } else { "http" });
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
    let client = client_address(&state.trusted_proxies, &addr, &headers);
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
    let mut scopes = Scope::parse_all(request.scopes.iter().map(String::as_str))
        .map_err(|e| refuse(AccessError::Invalid(e.to_string())))?;
    // A pull through the registry mirror is served under the cache project's name; the
    // token (asked for the name the client knows) covers that name too.
    let mut aliases = Vec::new();
    for scope in &scopes {
        if let Resource::Repository(name) = &scope.resource {
            for alias in state.mirror.token_aliases(name.as_str()).await? {
                if let Ok(alias) = gantry_registry::parse_name(&alias) {
                    aliases.push(Scope {
                        resource: Resource::Repository(alias),
                        actions: ["pull".to_string()].into_iter().collect(),
                    });
                }
            }
        }
    }
    scopes.extend(aliases);
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

    fn forwarded(pairs: &[(&'static str, &str)]) -> HeaderMap {
        let mut headers = HeaderMap::new();
        for (name, value) in pairs {
            headers.append(*name, value.parse().unwrap());
        }
        headers
    }

    #[test]
    fn x_forwarded_for_is_honoured_only_from_a_trusted_proxy() {
        let trusted = TrustedProxies::parse(&["10.0.0.0/8", "::1"]).unwrap();
        let proxy: SocketAddr = "10.1.2.3:40000".parse().unwrap();
        let stranger: SocketAddr = "198.51.100.9:40000".parse().unwrap();
        let xff = forwarded(&[("x-forwarded-for", "203.0.113.5")]);
        assert_eq!(client_address(&trusted, &proxy, &xff), "203.0.113.5");
        assert_eq!(
            client_address(&trusted, &stranger, &xff),
            "198.51.100.9",
            "anyone may send the header; only a trusted proxy is believed"
        );
        assert_eq!(
            client_address(&TrustedProxies::default(), &proxy, &xff),
            "10.1.2.3",
            "nothing is trusted unless configured"
        );
        // A client that forges the header gets its forgery to the left of its real address.
        let forged = forwarded(&[("x-forwarded-for", "192.0.2.1, 203.0.113.5, 10.9.9.9")]);
        assert_eq!(client_address(&trusted, &proxy, &forged), "203.0.113.5");
        // No header: the proxy itself.
        assert_eq!(
            client_address(&trusted, &proxy, &HeaderMap::new()),
            "10.1.2.3"
        );
        // Every hop trusted: the leftmost one.
        let internal = forwarded(&[("x-forwarded-for", "10.0.0.7, 10.0.0.8")]);
        assert_eq!(client_address(&trusted, &proxy, &internal), "10.0.0.7");
        // A hop that is not an address stops the walk.
        let garbage = forwarded(&[("x-forwarded-for", "203.0.113.5, unknown")]);
        assert_eq!(client_address(&trusted, &proxy, &garbage), "10.1.2.3");
        // IPv4-mapped IPv6 peers match IPv4 networks.
        let mapped: SocketAddr = "[::ffff:10.1.2.3]:1".parse().unwrap();
        assert_eq!(client_address(&trusted, &mapped, &xff), "203.0.113.5");
    }

    #[test]
    fn forwarded_for_is_read_when_there_is_no_x_forwarded_for() {
        let trusted = TrustedProxies::parse(&["127.0.0.1"]).unwrap();
        let proxy: SocketAddr = "127.0.0.1:1".parse().unwrap();
        let headers = forwarded(&[
            ("forwarded", "for=192.0.2.60;proto=http;by=203.0.113.43"),
            ("forwarded", "For=\"[2001:db8:cafe::17]:4711\""),
        ]);
        assert_eq!(
            client_address(&trusted, &proxy, &headers),
            "2001:db8:cafe::17"
        );
        let v4_port = forwarded(&[("forwarded", "for=\"192.0.2.60:8080\"")]);
        assert_eq!(client_address(&trusted, &proxy, &v4_port), "192.0.2.60");
    }

    #[test]
    fn trusted_proxies_take_addresses_and_networks_and_name_a_bad_entry() {
        assert!(TrustedProxies::parse(&["10.0.0.1", "192.168.0.0/16", "fd00::/8"]).is_ok());
        let err = TrustedProxies::parse(&["10.0.0.0/8", "proxy.internal"]).unwrap_err();
        assert!(err.to_string().contains("proxy.internal"), "{err}");
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
