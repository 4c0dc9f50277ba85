//! Whatever a standard tool writes is read: OCI layouts from umoci (manifests without
//! `mediaType`), buildah (uncompressed tar layers), skopeo (zstd layers, Docker schema 2
//! layouts), pushed and analyzed by `gantry` and pulled back by skopeo; and blob GETs with
//! several ranges, asked by curl, as RFC 9110 says.

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;

use common::*;
use gantry_oci::media_type;
use serde_json::Value;

/// 300 kB that do not compress away.
fn noise() -> Vec<u8> {
    (0..300_000u32)
        .map(|i| (i.wrapping_mul(2654435761) >> 13) as u8)
        .collect()
}

fn json_file(path: &Path) -> Value {
    serde_json::from_slice(&std::fs::read(path).unwrap()).unwrap()
}

/// The top manifest of a layout (its only one) and its descriptor in index.json.
fn layout_manifest(layout: &Path) -> (Value, Value) {
    let index = json_file(&layout.join("index.json"));
    let descriptor = index["manifests"][0].clone();
    let hex = descriptor["digest"]
        .as_str()
        .unwrap()
        .trim_start_matches("sha256:");
    (
        json_file(&layout.join("blobs/sha256").join(hex)),
        descriptor,
    )
}

/// Runs `gantry` and fails the test, with its output, if it fails; returns stdout.
fn gantry_ok(args: &[&str]) -> String {
    let out = gantry_as_admin(args);
    assert!(
        out.status.success(),
        "gantry {args:?} failed\nstdout: {}\nstderr: {}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// `gantry analyze --json` of `image`: the report.
fn analyze(image: &str) -> Value {
    serde_json::from_str(&gantry_ok(&["analyze", image, "--json"])).unwrap()
}

/// The report lists `files` (path, size) among its largest and has the manifest `digest`.
fn assert_report(report: &Value, digest: &str, files: &[(&str, u64)]) {
    assert_eq!(report["digest"], digest, "{report}");
    let largest: Vec<(&str, u64)> = report["largest"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| (f["path"].as_str().unwrap(), f["size"].as_u64().unwrap()))
        .collect();
    for file in files {
        assert!(largest.contains(file), "{file:?} not in {largest:?}");
    }
}

/// Pushes `layout` (its tag `v1`) with `gantry push` to `image`, analyzes both, and pulls
/// the image back with skopeo: the same digest comes out.
fn push_analyze_and_pull_back(dir: &Path, layout: &Path, image: &str, files: &[(&str, u64)]) {
    let (_, descriptor) = layout_manifest(layout);
    let digest = descriptor["digest"].as_str().unwrap();
    let layout_ref = format!("{}:v1", layout.display());
    gantry_ok(&["push", "-q", &layout_ref, image]);
    assert_report(&analyze(&format!("oci:{layout_ref}")), digest, files);
    assert_report(&analyze(image), digest, files);

    // The registry keeps the exact bytes.
    let raw = run(skopeo(dir).args([
        "inspect",
        "--tls-verify=false",
        "--raw",
        &format!("docker://{image}"),
    ]));
    assert_eq!(
        gantry_oci::Digest::sha256_of(raw.as_bytes()).to_string(),
        digest
    );
    // skopeo's dir: transport keeps the manifest and blobs as they are (its oci: one would
    // recompress uncompressed layers and convert Docker manifests).
    let out = dir.join(format!("pulled-{}", digest.trim_start_matches("sha256:")));
    run(skopeo(dir)
        .args([
            "copy",
            "--src-tls-verify=false",
            &format!("docker://{image}"),
        ])
        .arg(format!("dir:{}", out.display())));
    let pulled = std::fs::read(out.join("manifest.json")).unwrap();
    assert_eq!(
        gantry_oci::Digest::sha256_of(&pulled).to_string(),
        digest,
        "digest out equals digest in"
    );
    let (manifest, _) = layout_manifest(layout);
    for layer in manifest["layers"].as_array().unwrap() {
        let hex = layer["digest"]
            .as_str()
            .unwrap()
            .trim_start_matches("sha256:");
        let bytes = std::fs::read(out.join(hex)).unwrap();
        assert_eq!(gantry_oci::Digest::sha256_of(&bytes).hex(), hex);
    }
}

#[tokio::test]
async fn umoci_layout_without_manifest_media_type_is_pushed_analyzed_and_pulled_back() {
    let s = Server::start();
    let dir = tempfile::tempdir().unwrap();
    let noise = noise();
    make_layout(
        dir.path(),
        "v1",
        &[("app/data.bin", &noise), ("app/hello.txt", b"hello\n")],
    );
    let layout = dir.path().join("layout");
    let (manifest, descriptor) = layout_manifest(&layout);
    assert!(
        manifest.get("mediaType").is_none(),
        "umoci omits mediaType: {manifest}"
    );
    assert_eq!(descriptor["mediaType"], media_type::OCI_MANIFEST);
    login(dir.path(), &s, "admin", ADMIN_PASSWORD);
    let image = format!("{}/team/umoci:v1", s.addr);
    push_analyze_and_pull_back(
        dir.path(),
        &layout,
        &image,
        &[("app/data.bin", 300_000), ("app/hello.txt", 6)],
    );
    let r = http()
        .get(s.url("/v2/team/umoci/manifests/v1"))
        .header("accept", media_type::OCI_MANIFEST)
        .send()
        .await
        .unwrap();
    assert_eq!(header(&r, "content-type"), Some(media_type::OCI_MANIFEST));
}

/// An image made with `buildah from scratch`, `copy` and `commit --disable-compression` into
/// the layout `<dir>/buildah` (tag `v1`): one uncompressed tar layer holding /app/hello.txt
/// and /app/data.bin.
fn buildah_layout(dir: &Path) -> PathBuf {
    let files = dir.join("files");
    std::fs::create_dir_all(&files).unwrap();
    std::fs::write(files.join("hello.txt"), b"hello\n").unwrap();
    std::fs::write(files.join("data.bin"), noise()).unwrap();
    let container = run(buildah(dir).args(["from", "scratch"]));
    let container = container.trim();
    run(buildah(dir)
        .args(["copy", container])
        .arg(files.join("hello.txt"))
        .arg(files.join("data.bin"))
        .arg("/app/"));
    let layout = dir.join("buildah");
    run(buildah(dir)
        .args(["commit", "--disable-compression", container])
        .arg(format!("oci:{}:v1", layout.display())));
    layout
}

const BUILDAH_FILES: &[(&str, u64)] = &[("app/data.bin", 300_000), ("app/hello.txt", 6)];

/// The buildah image copied by skopeo (with `copy_args`) into the layout `<dir>/<name>`;
/// returns it and its manifest's descriptor and first layer's media type.
fn reencoded_buildah_layout(dir: &Path, name: &str, copy_args: &[&str]) -> (PathBuf, Value, Value) {
    let plain = buildah_layout(dir);
    let layout = dir.join(name);
    run(skopeo(dir)
        .arg("copy")
        .args(copy_args)
        .arg(format!("oci:{}:v1", plain.display()))
        .arg(format!("oci:{}:v1", layout.display())));
    let (manifest, descriptor) = layout_manifest(&layout);
    let layer_type = manifest["layers"][0]["mediaType"].clone();
    (layout, descriptor, layer_type)
}

#[test]
fn buildah_uncompressed_tar_layers_are_analyzed_and_pushed() {
    let s = Server::start();
    let dir = tempfile::tempdir().unwrap();
    let layout = buildah_layout(dir.path());
    let (manifest, _) = layout_manifest(&layout);
    assert_eq!(
        manifest["layers"][0]["mediaType"],
        media_type::OCI_LAYER,
        "{manifest}"
    );
    let report = analyze(&format!("oci:{}:v1", layout.display()));
    let layer = &report["layers"][0];
    assert_eq!(
        layer["compressed"], layer["uncompressed"],
        "a tar layer is its own size: {report}"
    );
    login(dir.path(), &s, "admin", ADMIN_PASSWORD);
    let image = format!("{}/team/buildah:v1", s.addr);
    push_analyze_and_pull_back(dir.path(), &layout, &image, BUILDAH_FILES);
}

#[test]
fn zstd_layers_are_analyzed_and_pushed() {
    let s = Server::start();
    let dir = tempfile::tempdir().unwrap();
    let (layout, _, layer_type) = reencoded_buildah_layout(
        dir.path(),
        "zstd",
        &["--dest-compress", "--dest-compress-format", "zstd"],
    );
    assert_eq!(layer_type, media_type::OCI_LAYER_ZSTD);
    let report = analyze(&format!("oci:{}:v1", layout.display()));
    let layer = &report["layers"][0];
    assert!(
        layer["uncompressed"].as_u64() > layer["compressed"].as_u64(),
        "{report}"
    );
    login(dir.path(), &s, "admin", ADMIN_PASSWORD);
    let image = format!("{}/team/zstd:v1", s.addr);
    push_analyze_and_pull_back(dir.path(), &layout, &image, BUILDAH_FILES);
}

#[test]
fn docker_schema2_layout_is_pushed_analyzed_and_pulled_back() {
    let s = Server::start();
    let dir = tempfile::tempdir().unwrap();
    let (layout, descriptor, layer_type) =
        reencoded_buildah_layout(dir.path(), "v2s2", &["--format", "v2s2"]);
    assert_eq!(descriptor["mediaType"], media_type::DOCKER_MANIFEST);
    assert_eq!(layer_type, media_type::DOCKER_LAYER_GZIP);
    login(dir.path(), &s, "admin", ADMIN_PASSWORD);
    let image = format!("{}/team/docker:v1", s.addr);
    push_analyze_and_pull_back(dir.path(), &layout, &image, BUILDAH_FILES);
}

/// Response or part headers: (lower-case name, value), in order.
type Headers = Vec<(String, String)>;

/// curl's answer: status, headers (lower-case names) and body.
fn curl(s: &Server, dir: &Path, path: &str, range: &str) -> (u16, Headers, Vec<u8>) {
    let head = dir.join("head");
    let body = dir.join("body");
    run(Command::new("curl")
        .args([
            "-sS",
            "-u",
            &admin_creds(),
            "-H",
            &format!("Range: {range}"),
            "-D",
        ])
        .arg(&head)
        .arg("-o")
        .arg(&body)
        .arg(s.url(path)));
    let head = std::fs::read_to_string(head).unwrap();
    let mut lines = head.lines();
    let status = lines
        .next()
        .unwrap()
        .split(' ')
        .nth(1)
        .unwrap()
        .parse()
        .unwrap();
    let headers = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim().to_ascii_lowercase(), v.trim().to_string()))
        .collect();
    (status, headers, std::fs::read(body).unwrap())
}

fn get<'a>(headers: &'a [(String, String)], name: &str) -> Option<&'a str> {
    headers
        .iter()
        .find(|(k, _)| k == name)
        .map(|(_, v)| v.as_str())
}

/// Splits a `multipart/byteranges` body (RFC 9110 §14.6, RFC 2046 §5.1) into its parts'
/// headers and bytes.
fn multipart_parts(body: &[u8], boundary: &str) -> Vec<(Headers, Vec<u8>)> {
    let delimiter = format!("--{boundary}");
    let mut pieces = Vec::new();
    let mut rest = body;
    while let Some(at) = rest
        .windows(delimiter.len())
        .position(|w| w == delimiter.as_bytes())
    {
        pieces.push(&rest[..at]);
        rest = &rest[at + delimiter.len()..];
    }
    assert!(
        rest.starts_with(b"--"),
        "the body ends with the close delimiter"
    );
    assert!(pieces[0].is_empty(), "no preamble");
    pieces[1..]
        .iter()
        .map(|piece| {
            let piece = piece
                .strip_prefix(b"\r\n")
                .expect("CRLF after the delimiter");
            let piece = piece
                .strip_suffix(b"\r\n")
                .expect("CRLF before the next delimiter");
            let split = piece
                .windows(4)
                .position(|w| w == b"\r\n\r\n")
                .expect("blank line");
            let headers = String::from_utf8(piece[..split].to_vec())
                .unwrap()
                .lines()
                .filter_map(|l| l.split_once(':'))
                .map(|(k, v)| (k.trim().to_ascii_lowercase(), v.trim().to_string()))
                .collect();
            (headers, piece[split + 4..].to_vec())
        })
        .collect()
}

#[tokio::test]
async fn multi_range_blob_get_answers_206_multipart_byteranges_with_every_part() {
    let s = Server::start();
    let dir = tempfile::tempdir().unwrap();
    let blob: Vec<u8> = noise()[..100_000].to_vec();
    let digest = push_blob(&s, "team/ranges", &blob).await;
    let path = format!("/v2/team/ranges/blobs/{digest}");

    let (status, headers, body) = curl(&s, dir.path(), &path, "bytes=0-9,50000-50009");
    assert_eq!(status, 206, "{headers:?}");
    let content_type = get(&headers, "content-type").unwrap();
    let boundary = content_type
        .strip_prefix("multipart/byteranges; boundary=")
        .unwrap_or_else(|| panic!("{content_type}"));
    assert_eq!(
        get(&headers, "content-length"),
        Some(body.len().to_string().as_str())
    );
    let parts = multipart_parts(&body, boundary);
    assert_eq!(parts.len(), 2);
    for ((headers, bytes), (range, expected)) in parts.iter().zip([
        ("bytes 0-9/100000", &blob[0..10]),
        ("bytes 50000-50009/100000", &blob[50_000..50_010]),
    ]) {
        assert_eq!(get(headers, "content-range"), Some(range));
        assert_eq!(
            get(headers, "content-type"),
            Some("application/octet-stream")
        );
        assert_eq!(bytes.as_slice(), expected, "{range}");
    }

    // Ranges past the end are dropped; the one left is a plain 206.
    let (status, headers, body) = curl(&s, dir.path(), &path, "bytes=99990-,200000-200009");
    assert_eq!(status, 206);
    assert_eq!(
        get(&headers, "content-range"),
        Some("bytes 99990-99999/100000")
    );
    assert_eq!(body, &blob[99_990..]);

    // 416 only when no range can be satisfied, as OCI error JSON.
    let (status, headers, body) = curl(&s, dir.path(), &path, "bytes=100000-100009,200000-");
    assert_eq!(status, 416);
    assert_eq!(get(&headers, "content-range"), Some("bytes */100000"));
    let error: Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(error["errors"][0]["code"], "RANGE_INVALID", "{error}");

    // A Range that is not a valid byte-range set is ignored: the whole blob.
    let (status, _, body) = curl(&s, dir.path(), &path, "bytes=9-0");
    assert_eq!(status, 200);
    assert_eq!(body, blob);
}
