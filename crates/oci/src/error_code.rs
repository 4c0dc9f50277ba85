//! The error codes of the OCI Distribution Spec (plus Gantry's few additions), with the
//! JSON body every HTTP error carries.

use serde::Serialize;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum ErrorCode {
    BlobUnknown,
    BlobUploadInvalid,
    BlobUploadUnknown,
    DigestInvalid,
    ManifestBlobUnknown,
    ManifestInvalid,
    ManifestUnknown,
    NameInvalid,
    NameUnknown,
    SizeInvalid,
    Unauthorized,
    Denied,
    Unsupported,
    #[serde(rename = "TOOMANYREQUESTS")]
    TooManyRequests,
    /// Not in the spec's table: a `Range` header that cannot be satisfied (status 416).
    RangeInvalid,
    /// Not in the spec's table: the tag is malformed (Gantry separates it from manifest errors).
    TagInvalid,
    /// Not in the spec's table: the server failed; the detail is in its log.
    InternalError,
    /// Not in the spec's table (REST API): the request body or a parameter is invalid.
    InvalidRequest,
    /// Not in the spec's table (REST API): no such user, project, member or credential.
    NotFound,
    /// Not in the spec's table (REST API): the thing exists already, or is still in use.
    Conflict,
    /// Not in the spec's table: a store the server needs does not answer (status 503);
    /// CNCF Distribution's `UNAVAILABLE`.
    Unavailable,
}

impl ErrorCode {
    pub fn as_str(self) -> &'static str {
        match self {
            ErrorCode::BlobUnknown => "BLOB_UNKNOWN",
            ErrorCode::BlobUploadInvalid => "BLOB_UPLOAD_INVALID",
            ErrorCode::BlobUploadUnknown => "BLOB_UPLOAD_UNKNOWN",
            ErrorCode::DigestInvalid => "DIGEST_INVALID",
            ErrorCode::ManifestBlobUnknown => "MANIFEST_BLOB_UNKNOWN",
            ErrorCode::ManifestInvalid => "MANIFEST_INVALID",
            ErrorCode::ManifestUnknown => "MANIFEST_UNKNOWN",
            ErrorCode::NameInvalid => "NAME_INVALID",
            ErrorCode::NameUnknown => "NAME_UNKNOWN",
            ErrorCode::SizeInvalid => "SIZE_INVALID",
            ErrorCode::Unauthorized => "UNAUTHORIZED",
            ErrorCode::Denied => "DENIED",
            ErrorCode::Unsupported => "UNSUPPORTED",
            ErrorCode::TooManyRequests => "TOOMANYREQUESTS",
            ErrorCode::RangeInvalid => "RANGE_INVALID",
            ErrorCode::TagInvalid => "TAG_INVALID",
            ErrorCode::InternalError => "INTERNAL_ERROR",
            ErrorCode::InvalidRequest => "INVALID_REQUEST",
            ErrorCode::NotFound => "NOT_FOUND",
            ErrorCode::Conflict => "CONFLICT",
            ErrorCode::Unavailable => "UNAVAILABLE",
        }
    }
}

#[derive(Debug, Serialize)]
struct ErrorEntry<'a> {
    code: ErrorCode,
    message: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    detail: Option<&'a serde_json::Value>,
}

#[derive(Debug, Serialize)]
struct ErrorBody<'a> {
    errors: [ErrorEntry<'a>; 1],
}

/// `{"errors":[{"code":…,"message":…,"detail":…}]}` as the spec defines it.
pub fn error_body(code: ErrorCode, message: &str, detail: Option<&serde_json::Value>) -> Vec<u8> {
    let body = ErrorBody {
        errors: [ErrorEntry {
            code,
            message,
            detail,
        }],
    };
    serde_json::to_vec(&body).expect("error body serializes")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn serde_name_matches_as_str() {
        for code in [
            ErrorCode::BlobUnknown,
            ErrorCode::ManifestBlobUnknown,
            ErrorCode::TooManyRequests,
            ErrorCode::RangeInvalid,
            ErrorCode::InternalError,
            ErrorCode::InvalidRequest,
            ErrorCode::NotFound,
            ErrorCode::Conflict,
            ErrorCode::Unavailable,
        ] {
            let json = serde_json::to_string(&code).unwrap();
            assert_eq!(json, format!("\"{}\"", code.as_str()));
        }
    }

    #[test]
    fn body_has_spec_shape() {
        let body = error_body(ErrorCode::NameUnknown, "repository x not known", None);
        let v: serde_json::Value = serde_json::from_slice(&body).unwrap();
        assert_eq!(v["errors"][0]["code"], "NAME_UNKNOWN");
        assert_eq!(v["errors"][0]["message"], "repository x not known");
        assert!(v["errors"][0].get("detail").is_none());
    }
}
