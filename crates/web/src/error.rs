//! A page that cannot be shown: an HTML page saying why, with the API's status (the UI is for
//! browsers; the registry and the REST API answer errors as OCI error JSON).

use askama::Template;
use axum::response::{Html, IntoResponse, Response};
use http::StatusCode;

/// Why a page cannot be shown.
#[derive(Debug)]
pub(crate) enum PageError {
    /// The API refused or failed, with its status and message.
    Api {
        status: StatusCode,
        message: String,
    },
    /// A form without this session's CSRF token.
    Csrf,
    /// A form posted from another site.
    CrossSite,
    /// A bad parameter of the page itself.
    BadRequest(String),
    Internal(String),
}

#[derive(Template)]
#[template(path = "error.html")]
struct ErrorPage<'a> {
    status: u16,
    title: &'a str,
    message: &'a str,
}

impl IntoResponse for PageError {
    fn into_response(self) -> Response {
        let (status, title, message) = match &self {
            PageError::Api { status, message } => (
                *status,
                match status.as_u16() {
                    401 | 403 => "Not allowed",
                    404 => "Not found",
                    _ => "The request failed",
                },
                message.clone(),
            ),
            PageError::Csrf => (
                StatusCode::FORBIDDEN,
                "Form refused",
                "This form was not sent from this session's page (its CSRF token is missing or \
                 wrong). Reload the page and try again."
                    .to_string(),
            ),
            PageError::CrossSite => (
                StatusCode::FORBIDDEN,
                "Form refused",
                "This form was posted from another site; Gantry takes forms from its own pages \
                 only."
                    .to_string(),
            ),
            PageError::BadRequest(message) => {
                (StatusCode::BAD_REQUEST, "Bad request", message.clone())
            }
            PageError::Internal(message) => {
                tracing::warn!(error = %message, "a web page failed");
                (
                    StatusCode::INTERNAL_SERVER_ERROR,
                    "Something went wrong",
                    "The server could not show this page; its log says why.".to_string(),
                )
            }
        };
        let page = ErrorPage {
            status: status.as_u16(),
            title,
            message: &message,
        };
        match page.render() {
            Ok(html) => (status, Html(html)).into_response(),
            Err(e) => (status, e.to_string()).into_response(),
        }
    }
}

impl From<askama::Error> for PageError {
    fn from(e: askama::Error) -> Self {
        PageError::Internal(format!("rendering: {e}"))
    }
}
