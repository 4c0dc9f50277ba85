//! The web UI, served at `/` by `gantry serve`: HTML rendered on the server from the REST
//! API's answers. Each page asks the API in-process as the signed-in user ([`api`]), so a page
//! shows exactly what the API lets that user read, and a form does what the API lets them do;
//! the UI adds no rules of its own. Forms work without JavaScript; the one script
//! (`/static/app.js`) only adds copy buttons. Every asset is embedded in the binary.
//!
//! Security: sessions are an HttpOnly, SameSite=Lax cookie (Secure under TLS) naming a
//! server-side session ([`gantry_access::AccessService::sign_in`]); every form that changes
//! something carries the session's CSRF token and is refused without it; templates escape
//! everything they print (askama); every answer carries a Content-Security-Policy that allows
//! no inline script or style and nothing from elsewhere.

use std::net::SocketAddr;
use std::sync::Arc;

use axum::extract::Request;
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::Router;
use gantry_access::AccessService;
use http::{header, HeaderMap, HeaderValue};

mod api;
mod error;
mod extract;
mod forms;
mod notice;
mod pages;
mod policies;
mod session;
mod settings;

/// How a request's client address is found (the server's trusted-proxy rules).
pub type ClientAddress = Arc<dyn Fn(&SocketAddr, &HeaderMap) -> String + Send + Sync>;

/// What the UI's handlers need.
pub struct Web {
    /// The whole HTTP surface of the server, asked in-process (`/api/v1/...`).
    api: Router,
    access: Arc<AccessService>,
    client_address: ClientAddress,
    /// Cookies get `Secure` (the server terminates TLS).
    secure_cookies: bool,
    /// How pull commands name this registry (`registry.example.com`); `None`: the request's
    /// `Host`.
    registry_host: Option<String>,
}

impl Web {
    /// The UI over `api` (the server's router, with its state).
    pub fn new(
        api: Router,
        access: Arc<AccessService>,
        client_address: ClientAddress,
        secure_cookies: bool,
        registry_host: Option<String>,
    ) -> Web {
        Web {
            api,
            access,
            client_address,
            secure_cookies,
            registry_host,
        }
    }

    /// The UI's routes, to merge beside the server's.
    pub fn router(self) -> Router {
        Router::new()
            .route("/", get(pages::projects))
            .route("/login", get(pages::login_form).post(pages::login))
            .route("/logout", post(pages::logout))
            .route("/projects", post(forms::create_project))
            .route("/projects/{project}", get(pages::project))
            .route(
                "/projects/{project}/tokens",
                get(pages::tokens).post(pages::create_token),
            )
            .route(
                "/projects/{project}/tokens/revoke",
                post(pages::revoke_token),
            )
            .route(
                "/projects/{project}/retention",
                get(pages::retention).post(pages::retention_run),
            )
            .route("/projects/{project}/audit", get(pages::audit))
            .route("/projects/{project}/settings", get(settings::settings))
            .route(
                "/projects/{project}/replication/{rule}",
                get(settings::replication_rule),
            )
            .route("/projects/{project}/settings/members", post(forms::member))
            .route(
                "/projects/{project}/settings/visibility",
                post(forms::visibility),
            )
            .route("/projects/{project}/settings/quota", post(forms::quota))
            .route(
                "/projects/{project}/settings/robots",
                post(forms::create_robot),
            )
            .route(
                "/projects/{project}/settings/robots/revoke",
                post(forms::revoke_robot),
            )
            .route(
                "/projects/{project}/settings/webhooks",
                post(forms::webhook),
            )
            .route(
                "/projects/{project}/settings/webhooks/change",
                post(forms::change_webhook),
            )
            .route(
                "/projects/{project}/settings/webhooks/new",
                post(forms::add_webhook),
            )
            .route(
                "/projects/{project}/settings/replication/{action}",
                post(forms::rule_action),
            )
            .route(
                "/projects/{project}/settings/replication",
                post(forms::save_rule),
            )
            .route(
                "/projects/{project}/settings/tag-rules",
                post(policies::save::<policies::TagRulesForm>),
            )
            .route(
                "/projects/{project}/settings/retention/schedule",
                post(policies::save::<policies::ScheduleForm>),
            )
            .route(
                "/projects/{project}/settings/retention/rule",
                post(policies::save::<policies::RetentionRuleForm>),
            )
            .route(
                "/projects/{project}/settings/signing-policy",
                post(policies::save::<policies::SigningForm>),
            )
            .route(
                "/projects/{project}/settings/vulnerability-policy",
                post(policies::save::<policies::VulnerabilityForm>),
            )
            .route(
                "/projects/{project}/settings/allowlist",
                post(policies::save::<policies::AllowlistForm>),
            )
            .route("/projects/{project}/usage", get(pages::usage))
            .route("/account", get(forms::account))
            .route("/account/password", post(forms::change_password))
            .route("/repository/delete", post(forms::delete_repository))
            .route("/artifact/scan", post(forms::rescan))
            .route("/artifact/delete", post(forms::delete_artifact))
            .route("/artifact/untag", post(forms::remove_tag))
            .route("/admin", get(pages::admin))
            .route("/admin/audit", get(pages::system_audit))
            .route("/admin/allowlist", post(policies::system_allowlist))
            .route("/admin/gc", post(pages::collect_garbage))
            .route("/admin/users", post(forms::create_user))
            .route("/admin/users/password", post(forms::set_user_password))
            .route("/admin/users/delete", post(forms::delete_user))
            .route("/admin/robots", post(forms::create_system_robot))
            .route("/admin/robots/revoke", post(forms::revoke_system_robot))
            .route("/repository", get(pages::repository))
            .route("/artifact", get(pages::artifact))
            .route("/artifact/sbom", get(pages::sbom))
            .route("/artifact/analysis", get(pages::analysis))
            .route("/static/app.css", get(stylesheet))
            .route("/static/app.js", get(script))
            .route("/static/favicon.svg", get(icon))
            .route("/favicon.ico", get(icon))
            .layer(middleware::from_fn(ui_guard))
            .with_state(Arc::new(self))
    }
}

/// What no page may do: run inline or foreign script, load anything from elsewhere, be
/// framed, or post forms elsewhere.
const CONTENT_SECURITY_POLICY: &str = "default-src 'none'; script-src 'self'; style-src 'self'; \
     img-src 'self' data:; connect-src 'self'; form-action 'self'; frame-ancestors 'none'; \
     base-uri 'none'";

/// The UI's answers: no form posted from another site is taken (see
/// [`session::cross_site`]), and pages are not stored by caches.
async fn ui_guard(request: Request, next: Next) -> Response {
    if request.method() == http::Method::POST && session::cross_site(request.headers()) {
        return error::PageError::CrossSite.into_response();
    }
    let mut response = next.run(request).await;
    response
        .headers_mut()
        .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    response
}

/// Headers for every answer of the server (the UI's, and the API's and registry's, which a
/// browser may be pointed at): a Content-Security-Policy that allows no inline or foreign
/// script or style and no framing, no MIME sniffing, no referrer to other sites.
pub async fn protective_headers(request: Request, next: Next) -> Response {
    let mut response = next.run(request).await;
    let headers = response.headers_mut();
    for (name, value) in [
        ("content-security-policy", CONTENT_SECURITY_POLICY),
        ("x-content-type-options", "nosniff"),
        ("referrer-policy", "same-origin"),
        ("x-frame-options", "DENY"),
    ] {
        headers.insert(name, HeaderValue::from_static(value));
    }
    response
}

async fn stylesheet() -> Response {
    (
        [(header::CONTENT_TYPE, "text/css; charset=utf-8")],
        include_str!("../static/app.css"),
    )
        .into_response()
}

async fn script() -> Response {
    (
        [(header::CONTENT_TYPE, "text/javascript; charset=utf-8")],
        include_str!("../static/app.js"),
    )
        .into_response()
}

async fn icon() -> Response {
    (
        [(header::CONTENT_TYPE, "image/svg+xml")],
        include_str!("../static/favicon.svg"),
    )
        .into_response()
}
