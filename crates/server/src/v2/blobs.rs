//! Blobs: GET and HEAD (with single and multipart byte ranges) and DELETE.

use axum::body::Body;
use axum::response::{IntoResponse, Response};
use futures::StreamExt;
use gantry_mirror::{BlobAnswer, Mirror};
use gantry_oci::{Digest, RepositoryName};
use gantry_registry::{parse_name, Registry, RegistryError};
use gantry_storage::ByteStream;
use http::{header, HeaderMap, HeaderValue, StatusCode};

use super::{digest_param, header_str, value, ApiResult, DOCKER_CONTENT_DIGEST};

/// What a blob GET answers to its `Range` header.
#[derive(Debug, PartialEq)]
enum RangeAnswer {
    /// 200 with the whole blob.
    Whole,
    /// 206 with one range and `Content-Range`.
    One(std::ops::Range<u64>),
    /// 206 `multipart/byteranges`, one part per range, in the order asked.
    Several(Vec<std::ops::Range<u64>>),
}

/// The most ranges one request may name; a header with more is ignored (RFC 9110 §14.2 lets a
/// server ignore many small ranges, a sign of abuse).
const MAX_RANGES: std::num::NonZeroUsize = std::num::NonZeroUsize::new(100).expect("non-zero");

/// Reads a blob GET's `Range` header against a blob of `size` bytes, by RFC 9110 §14.2:
/// ranges that lie past the end are dropped, and only when no range is left is it
/// `RangeNotSatisfiable` (416 with `Content-Range: bytes */size`). A header that is not a
/// valid byte-range set (another unit, bad syntax, a reversed range, over [`MAX_RANGES`],
/// more than two overlapping) is ignored and the whole blob sent, as §14.2 allows (and for an
/// unknown unit requires). Several ranges adding up to the blob's size or more also get the
/// whole blob, as Go's `http.ServeContent` (what Distribution serves blobs with) does: it is
/// cheaper than the multipart body and no amplification.
fn requested_ranges(raw: Option<&str>, size: u64) -> Result<RangeAnswer, RegistryError> {
    use http_range_header::RangeUnsatisfiableError;
    let Some(raw) = raw else {
        return Ok(RangeAnswer::Whole);
    };
    let Ok(parsed) = http_range_header::parse_range_header_with_max_ranges(raw, MAX_RANGES) else {
        return Ok(RangeAnswer::Whole);
    };
    let ranges: Vec<std::ops::Range<u64>> = match parsed.validate(size) {
        Ok(ranges) => ranges
            .into_iter()
            .map(|r| *r.start()..r.end() + 1)
            .collect(),
        Err(RangeUnsatisfiableError::Unsatisfiable) => {
            return Err(RegistryError::RangeNotSatisfiable { size })
        }
        Err(_) => return Ok(RangeAnswer::Whole),
    };
    let asked: u64 = ranges.iter().map(|r| r.end - r.start).sum();
    Ok(match ranges.len() {
        0 => RangeAnswer::Whole,
        1 => RangeAnswer::One(ranges[0].clone()),
        _ if asked >= size => RangeAnswer::Whole,
        _ => RangeAnswer::Several(ranges),
    })
}

/// A `multipart/byteranges` body (RFC 9110 §14.6) of `ranges` of a blob: its boundary, exact
/// length and stream. The boundary is the blob's digest: a blob cannot contain its own
/// digest, so no part can contain the boundary. Parts are read one at a time.
fn multipart_byteranges(
    r: &Registry,
    digest: &Digest,
    ranges: Vec<std::ops::Range<u64>>,
    size: u64,
) -> (String, u64, ByteStream) {
    let boundary = digest.hex().to_string();
    let heads: Vec<bytes::Bytes> = ranges
        .iter()
        .enumerate()
        .map(|(i, range)| {
            let gap = if i == 0 { "" } else { "\r\n" };
            bytes::Bytes::from(format!(
                "{gap}--{boundary}\r\nContent-Type: application/octet-stream\r\nContent-Range: bytes {}-{}/{size}\r\n\r\n",
                range.start,
                range.end - 1
            ))
        })
        .collect();
    let tail = bytes::Bytes::from(format!("\r\n--{boundary}--\r\n"));
    let length = heads.iter().map(|h| h.len() as u64).sum::<u64>()
        + ranges.iter().map(|r| r.end - r.start).sum::<u64>()
        + tail.len() as u64;
    let parts = r
        .read_blob_ranges(digest, ranges)
        .zip(futures::stream::iter(heads))
        .flat_map(|(part, head)| {
            let head = futures::stream::once(futures::future::ready(Ok(head)));
            match part {
                Ok(part) => head.chain(part).boxed(),
                Err(e) => head
                    .chain(futures::stream::once(futures::future::ready(Err(
                        std::io::Error::other(e),
                    ))))
                    .boxed(),
            }
        })
        .chain(futures::stream::once(futures::future::ready(Ok(tail))));
    (boundary, length, Box::pin(parts))
}

/// A blob GET or HEAD: from the registry, or in a cache project through the pull-through
/// cache, streaming from the upstream what the cache lacks.
pub(super) async fn pull_blob(
    mirror: &Mirror,
    r: &Registry,
    name: &str,
    digest: &str,
    headers: &HeaderMap,
    head: bool,
) -> ApiResult {
    let name = parse_name(name)?;
    let digest = digest_param(digest)?;
    let ranged = headers.contains_key(header::RANGE);
    let (size, body) = match mirror.pull_blob(&name, &digest, head, ranged).await? {
        BlobAnswer::Cached => return get_blob(r, &name, &digest, headers, head).await,
        BlobAnswer::Head { size } => (Some(size), Body::empty()),
        BlobAnswer::Streaming { size, body } => (size, Body::from_stream(body)),
    };
    let mut response = Response::new(body);
    let h = response.headers_mut();
    if let Some(size) = size {
        h.insert(header::CONTENT_LENGTH, HeaderValue::from(size));
    }
    h.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/octet-stream"),
    );
    h.insert(header::ETAG, value(&format!("\"{digest}\"")));
    h.insert(DOCKER_CONTENT_DIGEST, value(&digest.to_string()));
    Ok(response)
}

async fn get_blob(
    r: &Registry,
    name: &RepositoryName,
    digest: &Digest,
    headers: &HeaderMap,
    head: bool,
) -> ApiResult {
    let (name, digest) = (name.clone(), digest.clone());
    let size = r.stat_blob(&name, &digest).await?;
    if !head {
        if let Some(url) = r.blob_redirect_url(&digest).await? {
            // As Distribution does with `redirect`: the client follows with its Range header.
            let mut response = StatusCode::TEMPORARY_REDIRECT.into_response();
            let h = response.headers_mut();
            h.insert(header::LOCATION, value(&url));
            h.insert(DOCKER_CONTENT_DIGEST, value(&digest.to_string()));
            return Ok(response);
        }
    }
    let answer = requested_ranges(header_str(headers, &header::RANGE), size)?;
    let (status, content_type, content_range, length, body) = match answer {
        RangeAnswer::Whole | RangeAnswer::One(_) => {
            let (status, served) = match answer {
                RangeAnswer::One(range) => (StatusCode::PARTIAL_CONTENT, range),
                _ => (StatusCode::OK, 0..size),
            };
            let content_range = (status == StatusCode::PARTIAL_CONTENT)
                .then(|| format!("bytes {}-{}/{size}", served.start, served.end - 1));
            let body = if head {
                Body::empty()
            } else {
                Body::from_stream(r.read_blob(&digest, served.clone()).await?)
            };
            let octets = HeaderValue::from_static("application/octet-stream");
            (
                status,
                octets,
                content_range,
                served.end - served.start,
                body,
            )
        }
        RangeAnswer::Several(ranges) => {
            let (boundary, length, stream) = multipart_byteranges(r, &digest, ranges, size);
            let body = if head {
                Body::empty()
            } else {
                Body::from_stream(stream)
            };
            let content_type = value(&format!("multipart/byteranges; boundary={boundary}"));
            (
                StatusCode::PARTIAL_CONTENT,
                content_type,
                None,
                length,
                body,
            )
        }
    };
    let mut response = Response::new(body);
    *response.status_mut() = status;
    let h = response.headers_mut();
    h.insert(header::CONTENT_LENGTH, HeaderValue::from(length));
    h.insert(header::CONTENT_TYPE, content_type);
    h.insert(header::ACCEPT_RANGES, HeaderValue::from_static("bytes"));
    h.insert(header::ETAG, value(&format!("\"{digest}\"")));
    h.insert(DOCKER_CONTENT_DIGEST, value(&digest.to_string()));
    if let Some(content_range) = content_range {
        h.insert(header::CONTENT_RANGE, value(&content_range));
    }
    Ok(response)
}

pub(super) async fn delete_blob(r: &Registry, name: &str, digest: &str) -> ApiResult {
    let name = parse_name(name)?;
    r.delete_blob(&name, &digest_param(digest)?).await?;
    Ok(StatusCode::ACCEPTED.into_response())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn single_byte_ranges() {
        for (raw, range) in [
            ("bytes=0-9", 0..10),
            ("bytes=90-", 90..100),
            ("bytes=-10", 90..100),
            ("bytes=-500", 0..100),
            ("bytes=95-200", 95..100),
            // Ranges past the end are dropped; one is left.
            ("bytes=0-9,500-600", 0..10),
        ] {
            assert_eq!(
                requested_ranges(Some(raw), 100).unwrap(),
                RangeAnswer::One(range),
                "{raw}"
            );
        }
    }

    #[test]
    fn multi_range_blob_get_answers_every_satisfiable_range() {
        assert_eq!(
            requested_ranges(Some("bytes=0-9,50000-50009"), 100_000).unwrap(),
            RangeAnswer::Several(vec![0..10, 50_000..50_010])
        );
        assert_eq!(
            requested_ranges(Some("bytes=50-59, 0-4, 99999-"), 100_000).unwrap(),
            RangeAnswer::Several(vec![50..60, 0..5, 99_999..100_000])
        );
        // As much as the blob or more: the whole blob.
        assert_eq!(
            requested_ranges(Some("bytes=0-59,40-99"), 100).unwrap(),
            RangeAnswer::Whole
        );
    }

    #[test]
    fn only_wholly_unsatisfiable_ranges_are_416() {
        for raw in [
            "bytes=100-",
            "bytes=100-200",
            "bytes=-0",
            "bytes=100-109,200-",
        ] {
            assert!(
                matches!(
                    requested_ranges(Some(raw), 100),
                    Err(RegistryError::RangeNotSatisfiable { size: 100 })
                ),
                "{raw}"
            );
        }
    }

    #[test]
    fn invalid_range_headers_are_ignored() {
        for raw in [
            "items=0-1",
            "bytes=5-1",
            "bytes=x-1",
            "bytes=",
            "bytes=0-1,x",
        ] {
            assert_eq!(
                requested_ranges(Some(raw), 100).unwrap(),
                RangeAnswer::Whole,
                "{raw}"
            );
        }
        let too_many = format!(
            "bytes={}",
            (0..=MAX_RANGES.get())
                .map(|i| format!("{i}-{i}"))
                .collect::<Vec<_>>()
                .join(",")
        );
        assert_eq!(
            requested_ranges(Some(&too_many), 1000).unwrap(),
            RangeAnswer::Whole
        );
        assert_eq!(requested_ranges(None, 100).unwrap(), RangeAnswer::Whole);
        assert_eq!(
            requested_ranges(Some("bytes=-5"), 0).unwrap(),
            RangeAnswer::Whole
        );
    }

    proptest::proptest! {
        #[test]
        fn answered_ranges_lie_inside_the_blob_and_416_only_when_none_could(
            raw in "bytes=([0-9]{0,5}-[0-9]{0,5}, ?){0,4}[0-9]{0,5}-[0-9]{0,5}|\\PC{0,30}",
            size in 0u64..50_000,
        ) {
            let inside = |r: &std::ops::Range<u64>| r.start < r.end && r.end <= size;
            match requested_ranges(Some(&raw), size) {
                Ok(RangeAnswer::Whole) => {}
                Ok(RangeAnswer::One(r)) => proptest::prop_assert!(inside(&r)),
                Ok(RangeAnswer::Several(ranges)) => {
                    proptest::prop_assert!(ranges.len() >= 2);
                    proptest::prop_assert!(ranges.iter().all(inside));
                    proptest::prop_assert!(ranges.iter().map(|r| r.end - r.start).sum::<u64>() < size);
                }
                Err(_) => {
                    // Every range of the header starts at or past the end (or is a zero suffix).
                    let spec = &raw["bytes=".len()..];
                    for part in spec.split(',').map(str::trim).filter(|p| !p.is_empty()) {
                        let (first, _) = part.split_once('-').expect("a valid range");
                        if first.is_empty() {
                            proptest::prop_assert!(part.trim_start_matches(['-', '0']).is_empty());
                        } else {
                            proptest::prop_assert!(first.parse::<u64>().map_or(true, |n| n >= size));
                        }
                    }
                }
            }
        }
    }
}
