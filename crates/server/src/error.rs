//! The one place where failures become HTTP responses: every error leaves the server as the
//! spec's `{"errors":[…]}` JSON with its status and code.

use axum::body::Body;
use axum::response::{IntoResponse, Response};
use gantry_access::AccessError;
use gantry_lifecycle::TagRuleViolation;
use gantry_meta::MetaError;
use gantry_mirror::{MirrorError, UpstreamFailure};
use gantry_oci::error_code::error_body;
use gantry_oci::{DigestError, ErrorCode};
use gantry_registry::RegistryError;
use gantry_storage::StorageError;
use http::{header, HeaderValue, StatusCode};

#[derive(Debug)]
pub enum ApiError {
    Registry(RegistryError),
    /// The path matches no endpoint of the API.
    NoRoute,
    MethodNotAllowed,
    /// A query parameter or header is malformed.
    BadParameter(String),
    /// Authentication or authorization failed. `challenge` is the `WWW-Authenticate` value
    /// that tells the client where to get a token for what it tried.
    Access {
        error: AccessError,
        challenge: String,
    },
    /// REST API: a body or parameter is invalid.
    Invalid(String),
    /// REST API: no such user, project, member or credential.
    NotFound(String),
    /// REST API: a metadata operation failed (a conflict, or an internal error).
    Meta(MetaError),
    /// The pull-through cache could not answer.
    Mirror(MirrorError),
}

impl From<MirrorError> for ApiError {
    fn from(e: MirrorError) -> Self {
        match e {
            MirrorError::Registry(e) => ApiError::Registry(e),
            other => ApiError::Mirror(other),
        }
    }
}

impl From<RegistryError> for ApiError {
    fn from(e: RegistryError) -> Self {
        ApiError::Registry(e)
    }
}

impl From<gantry_webhooks::WebhookError> for ApiError {
    fn from(e: gantry_webhooks::WebhookError) -> Self {
        use gantry_webhooks::WebhookError as E;
        match e {
            E::Invalid(message) => ApiError::Invalid(message),
            E::NotFound(_) => ApiError::NotFound(e.to_string()),
            E::Meta(e) => ApiError::Meta(e),
        }
    }
}

impl From<MetaError> for ApiError {
    fn from(e: MetaError) -> Self {
        ApiError::Meta(e)
    }
}

/// The challenge of the REST API, which takes Basic credentials (or a bearer token).
pub const API_CHALLENGE: &str = "Basic realm=\"gantry\"";

impl From<AccessError> for ApiError {
    fn from(error: AccessError) -> Self {
        ApiError::Access {
            error,
            challenge: API_CHALLENGE.to_string(),
        }
    }
}

impl ApiError {
    /// When this error is a policy refusing the operation (a missing permission, an immutable
    /// tag, a tag rule, a quota, a login throttle), what refused it, as the client was told;
    /// the audit log records these as `denied`.
    pub fn refusal(&self) -> Option<String> {
        match self {
            ApiError::Access {
                error:
                    error @ (AccessError::Denied(_)
                    | AccessError::Unauthenticated(_)
                    | AccessError::Throttled { .. }),
                ..
            } => Some(error.to_string()),
            ApiError::Registry(
                error @ (RegistryError::TagRule(_)
                | RegistryError::Quota(_)
                | RegistryError::PullBlocked { .. }),
            ) => Some(error.to_string()),
            ApiError::Mirror(error @ MirrorError::ReadOnly { .. }) => Some(error.to_string()),
            _ => None,
        }
    }
}

/// Status and code for each access error.
fn classify_access(e: &AccessError) -> (StatusCode, ErrorCode) {
    match e {
        AccessError::Unauthenticated(_) => (StatusCode::UNAUTHORIZED, ErrorCode::Unauthorized),
        AccessError::Denied(_) | AccessError::InsufficientScope { repeated: true, .. } => {
            (StatusCode::FORBIDDEN, ErrorCode::Denied)
        }
        AccessError::InsufficientScope { .. } => {
            (StatusCode::UNAUTHORIZED, ErrorCode::Unauthorized)
        }
        AccessError::Throttled { .. } => {
            (StatusCode::TOO_MANY_REQUESTS, ErrorCode::TooManyRequests)
        }
        AccessError::ProjectUnknown(_) => (StatusCode::NOT_FOUND, ErrorCode::NameUnknown),
        AccessError::Invalid(_) => (StatusCode::BAD_REQUEST, ErrorCode::InvalidRequest),
        AccessError::NotFound(_) => (StatusCode::NOT_FOUND, ErrorCode::NotFound),
        AccessError::Meta(e) => classify_meta(e),
        AccessError::Hashing(_) => (StatusCode::INTERNAL_SERVER_ERROR, ErrorCode::InternalError),
    }
}

fn classify_meta(e: &MetaError) -> (StatusCode, ErrorCode) {
    match e {
        MetaError::Conflict(_) => (StatusCode::CONFLICT, ErrorCode::Conflict),
        MetaError::Unavailable(_) => (StatusCode::SERVICE_UNAVAILABLE, ErrorCode::Unavailable),
        _ => (StatusCode::INTERNAL_SERVER_ERROR, ErrorCode::InternalError),
    }
}

/// The message for a failure: its own text, unless it is the server's fault (then the
/// details go to the log, not to the client). A store's unavailability (503) is said as it
/// is: its reasons are written for the client.
fn message(status: StatusCode, e: &dyn std::fmt::Display) -> String {
    if status == StatusCode::INTERNAL_SERVER_ERROR {
        tracing::error!(error = %e, "request failed");
        "internal error; the server log has the details".to_string()
    } else {
        e.to_string()
    }
}

/// Status and code for each registry error.
fn classify(e: &RegistryError) -> (StatusCode, ErrorCode) {
    use RegistryError as E;
    match e {
        E::Name(_) => (StatusCode::BAD_REQUEST, ErrorCode::NameInvalid),
        E::Tag(_) => (StatusCode::BAD_REQUEST, ErrorCode::TagInvalid),
        E::Digest(DigestError::Unsupported(_)) => (StatusCode::BAD_REQUEST, ErrorCode::Unsupported),
        E::Digest(DigestError::Invalid(_)) | E::DigestMissing | E::DigestMismatch { .. } => {
            (StatusCode::BAD_REQUEST, ErrorCode::DigestInvalid)
        }
        E::BlobUnknown(_) => (StatusCode::NOT_FOUND, ErrorCode::BlobUnknown),
        E::UploadUnknown(_) => (StatusCode::NOT_FOUND, ErrorCode::BlobUploadUnknown),
        E::UploadOutOfOrder { .. } => (
            StatusCode::RANGE_NOT_SATISFIABLE,
            ErrorCode::BlobUploadInvalid,
        ),
        E::ContentRangeInvalid(_) => (
            StatusCode::RANGE_NOT_SATISFIABLE,
            ErrorCode::BlobUploadInvalid,
        ),
        E::RangeNotSatisfiable { .. } => {
            (StatusCode::RANGE_NOT_SATISFIABLE, ErrorCode::RangeInvalid)
        }
        E::NameUnknown(_) => (StatusCode::NOT_FOUND, ErrorCode::NameUnknown),
        E::ManifestUnknown(_) | E::NotAcceptable { .. } => {
            (StatusCode::NOT_FOUND, ErrorCode::ManifestUnknown)
        }
        E::ManifestInvalid(_) => (StatusCode::BAD_REQUEST, ErrorCode::ManifestInvalid),
        E::ManifestTooLarge { .. } => (StatusCode::PAYLOAD_TOO_LARGE, ErrorCode::SizeInvalid),
        E::ManifestBlobUnknown(_) | E::ManifestChildUnknown(_) => {
            (StatusCode::BAD_REQUEST, ErrorCode::ManifestBlobUnknown)
        }
        E::Body(_) => (StatusCode::BAD_REQUEST, ErrorCode::BlobUploadInvalid),
        E::TagRule(TagRuleViolation::Immutable { .. }) => {
            (StatusCode::FORBIDDEN, ErrorCode::Denied)
        }
        E::TagRule(_) => (StatusCode::BAD_REQUEST, ErrorCode::TagInvalid),
        // As Harbor answers: the push is understood but not permitted.
        E::Quota(_) => (StatusCode::FORBIDDEN, ErrorCode::Denied),
        E::ArchiveUnknown(_) => (StatusCode::NOT_FOUND, ErrorCode::NotFound),
        E::PageTokenInvalid(_) | E::PlatformInvalid(_) => {
            (StatusCode::BAD_REQUEST, ErrorCode::InvalidRequest)
        }
        E::NotScanned(_) => (StatusCode::NOT_FOUND, ErrorCode::NotFound),
        E::PullBlocked { .. } => (StatusCode::FORBIDDEN, ErrorCode::Denied),
        E::PolicyInvalid(_) => (StatusCode::BAD_REQUEST, ErrorCode::InvalidRequest),
        // A damaged or missing archive object is the server's problem, not the request's.
        E::ArchiveInvalid(_) | E::Tar(_) => {
            (StatusCode::INTERNAL_SERVER_ERROR, ErrorCode::InternalError)
        }
        E::Storage(StorageError::Unavailable(_)) => {
            (StatusCode::SERVICE_UNAVAILABLE, ErrorCode::Unavailable)
        }
        E::Meta(e) => classify_meta(e),
        E::Storage(_) | E::Metrics(_) => {
            (StatusCode::INTERNAL_SERVER_ERROR, ErrorCode::InternalError)
        }
    }
}

/// Status and code for each failure of the pull-through cache: the upstream's 429 is passed
/// on as what it is; its other failures are a bad gateway, never "not found".
fn classify_mirror(e: &MirrorError) -> (StatusCode, ErrorCode) {
    match e {
        MirrorError::Registry(e) => classify(e),
        MirrorError::Upstream(UpstreamFailure::Status { status: 429, .. }) => {
            (StatusCode::TOO_MANY_REQUESTS, ErrorCode::TooManyRequests)
        }
        MirrorError::Upstream(_) => (StatusCode::BAD_GATEWAY, ErrorCode::Unavailable),
        MirrorError::NotAtUpstream { blob: true, .. } => {
            (StatusCode::NOT_FOUND, ErrorCode::BlobUnknown)
        }
        MirrorError::NotAtUpstream { blob: false, .. } => {
            (StatusCode::NOT_FOUND, ErrorCode::ManifestUnknown)
        }
        MirrorError::ReadOnly { .. } => (StatusCode::FORBIDDEN, ErrorCode::Denied),
        MirrorError::RuleUnknown(_) | MirrorError::RunUnknown { .. } => {
            (StatusCode::NOT_FOUND, ErrorCode::NotFound)
        }
        MirrorError::RuleInvalid(_) => (StatusCode::BAD_REQUEST, ErrorCode::InvalidRequest),
        MirrorError::RuleExists(_) | MirrorError::RuleConfigured(_) => {
            (StatusCode::CONFLICT, ErrorCode::Conflict)
        }
        MirrorError::Config(_) | MirrorError::Spool(_) | MirrorError::Target { .. } => {
            (StatusCode::INTERNAL_SERVER_ERROR, ErrorCode::InternalError)
        }
    }
}

pub fn error_response(status: StatusCode, code: ErrorCode, message: &str) -> Response {
    let mut response = Response::new(Body::from(error_body(code, message, None)));
    *response.status_mut() = status;
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    response
}

/// What refused a request, on the response of an error that is a refusal
/// ([`ApiError::refusal`]): the REST API's audit of refusals reads it.
#[derive(Debug, Clone)]
pub(crate) struct Refused(pub String);

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let refusal = self.refusal();
        let mut response = self.response();
        if let Some(detail) = refusal {
            response.extensions_mut().insert(Refused(detail));
        }
        response
    }
}

impl ApiError {
    fn response(self) -> Response {
        match self {
            ApiError::NoRoute => error_response(
                StatusCode::NOT_FOUND,
                ErrorCode::Unsupported,
                "no such endpoint in the registry API",
            ),
            ApiError::MethodNotAllowed => error_response(
                StatusCode::METHOD_NOT_ALLOWED,
                ErrorCode::Unsupported,
                "method not allowed on this endpoint",
            ),
            ApiError::BadParameter(message) => {
                error_response(StatusCode::BAD_REQUEST, ErrorCode::Unsupported, &message)
            }
            ApiError::Invalid(m) => {
                error_response(StatusCode::BAD_REQUEST, ErrorCode::InvalidRequest, &m)
            }
            ApiError::NotFound(m) => error_response(StatusCode::NOT_FOUND, ErrorCode::NotFound, &m),
            ApiError::Meta(e) => {
                let (status, code) = classify_meta(&e);
                error_response(status, code, &message(status, &e))
            }
            ApiError::Access { error, challenge } => {
                let (status, code) = classify_access(&error);
                let mut response = error_response(status, code, &message(status, &error));
                let headers = response.headers_mut();
                if matches!(status, StatusCode::UNAUTHORIZED | StatusCode::FORBIDDEN) {
                    if let Ok(v) = HeaderValue::from_str(&challenge) {
                        headers.insert(header::WWW_AUTHENTICATE, v);
                    }
                }
                if let AccessError::Throttled { retry_after_secs } = error {
                    headers.insert(header::RETRY_AFTER, HeaderValue::from(retry_after_secs));
                }
                response
            }
            ApiError::Mirror(e) => {
                let (status, code) = classify_mirror(&e);
                let mut response = error_response(status, code, &message(status, &e));
                if let MirrorError::Upstream(UpstreamFailure::Status {
                    retry_after: Some(retry_after),
                    ..
                }) = &e
                {
                    if let Ok(v) = HeaderValue::from_str(retry_after) {
                        response.headers_mut().insert(header::RETRY_AFTER, v);
                    }
                }
                response
            }
            ApiError::Registry(e) => {
                let (status, code) = classify(&e);
                let mut response = error_response(status, code, &message(status, &e));
                let headers = response.headers_mut();
                match e {
                    // Tell the client where to resume.
                    RegistryError::UploadOutOfOrder { expected, .. } => {
                        headers.insert(header::RANGE, crate::v2::range_header(expected));
                    }
                    RegistryError::RangeNotSatisfiable { size } => {
                        if let Ok(v) = HeaderValue::from_str(&format!("bytes */{size}")) {
                            headers.insert(header::CONTENT_RANGE, v);
                        }
                    }
                    _ => {}
                }
                response
            }
        }
    }
}
