//! `s3://BUCKET[/PREFIX]` locations, shared by archive locations and the S3 blob store: one
//! parser and one client builder, configured the way AWS tools are.

use object_store::aws::{AmazonS3, AmazonS3Builder, AmazonS3ConfigKey};

use crate::StorageError;

/// A client for one bucket, and the key prefix everything of this location lives under
/// (no leading or trailing `/`; empty for the whole bucket).
pub(crate) struct S3Bucket {
    pub client: AmazonS3,
    pub prefix: String,
}

/// Opens `location` if it is an `s3://BUCKET[/PREFIX]` URL (`None` otherwise). Credentials,
/// region and endpoint come from the usual `AWS_*` variables (AWS_ACCESS_KEY_ID,
/// AWS_SECRET_ACCESS_KEY, AWS_REGION, AWS_ENDPOINT_URL, AWS_ALLOW_HTTP, …), then from
/// `overrides` (the same names, for callers that must not read the process environment);
/// an `http://` endpoint allows plain HTTP by itself.
///
/// Errors: `InvalidLocation` naming `what` (e.g. "archive location") when no bucket is given
/// or a setting is malformed.
pub(crate) fn open_s3(
    location: &str,
    what: &str,
    overrides: &[(&str, &str)],
) -> Result<Option<S3Bucket>, StorageError> {
    let Some(rest) = location.strip_prefix("s3://") else {
        return Ok(None);
    };
    let (bucket, prefix) = rest.split_once('/').unwrap_or((rest, ""));
    if bucket.is_empty() {
        return Err(StorageError::InvalidLocation(format!(
            "{what} {location:?} names no bucket: use s3://BUCKET[/PREFIX]"
        )));
    }
    let mut builder = AmazonS3Builder::from_env();
    for (name, value) in overrides {
        let key: AmazonS3ConfigKey = name.to_ascii_lowercase().parse().map_err(|_| {
            StorageError::InvalidLocation(format!("{what}: unknown S3 setting {name}"))
        })?;
        builder = builder.with_config(key, *value);
    }
    let endpoint = builder
        .get_config_value(&AmazonS3ConfigKey::Endpoint)
        .unwrap_or_default();
    if endpoint.starts_with("http://") {
        builder = builder.with_allow_http(true);
    }
    let client = builder
        .with_bucket_name(bucket)
        .build()
        .map_err(|e| StorageError::InvalidLocation(format!("{what} {location:?}: {e}")))?;
    Ok(Some(S3Bucket {
        client,
        prefix: prefix.trim_matches('/').to_string(),
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_s3_location_needs_a_bucket() {
        assert!(matches!(
            open_s3("s3://", "storage location", &[]),
            Err(StorageError::InvalidLocation(why)) if why.contains("names no bucket")
        ));
        assert!(open_s3("/var/lib/gantry", "storage location", &[])
            .unwrap()
            .is_none());
    }

    #[test]
    fn the_prefix_loses_its_slashes() {
        let bucket = open_s3(
            "s3://b/team/blobs/",
            "storage location",
            &[("AWS_REGION", "garage")],
        )
        .unwrap()
        .unwrap();
        assert_eq!(bucket.prefix, "team/blobs");
    }
}
