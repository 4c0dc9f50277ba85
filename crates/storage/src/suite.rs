//! The conformance suite every `BlobStore` backend must pass, as CNCF Distribution does
//! for its storage drivers. Backends call [`run`] from their own tests.

use bytes::Bytes;
use futures::TryStreamExt;
use gantry_oci::Digest;

use crate::{BlobStore, ByteStream, StorageError};

/// Everything `stream` yields, in one buffer.
async fn concat(stream: Result<ByteStream, StorageError>) -> Vec<u8> {
    let chunks: Vec<Bytes> = stream.unwrap().try_collect().await.unwrap();
    chunks.concat()
}

async fn collect(store: &dyn BlobStore, digest: &Digest, range: std::ops::Range<u64>) -> Vec<u8> {
    concat(store.read(digest, range).await).await
}

async fn upload(store: &dyn BlobStore, id: &str, parts: &[&[u8]]) -> u64 {
    store.create_upload(id).await.unwrap();
    let mut size = 0;
    for part in parts {
        let mut writer = store.append_upload(id).await.unwrap();
        writer
            .write(vec![Bytes::copy_from_slice(part)])
            .await
            .unwrap();
        size = writer.finish().await.unwrap();
    }
    size
}

pub async fn run(store: &dyn BlobStore) {
    // Larger than a direct-I/O stage, split at offsets that are not block-aligned, so resumed
    // appends start mid-block.
    let content: Vec<u8> = (0..5_000_000u32).map(|i| (i % 251) as u8).collect();
    let digest = Digest::sha256_of(&content);

    store
        .check_ready()
        .await
        .expect("a freshly opened store is ready");

    // Absent blobs and uploads.
    assert_eq!(store.stat(&digest).await.unwrap(), None);
    assert!(matches!(
        store.read(&digest, 0..1).await,
        Err(StorageError::NotFound)
    ));
    assert_eq!(
        store
            .upload_size("00000000-0000-0000-0000-000000000000")
            .await
            .unwrap(),
        None
    );

    // Chunked upload, resumed through a new writer for each part.
    let id = "11111111-1111-1111-1111-111111111111";
    let size = upload(
        store,
        id,
        &[
            &content[..300_000],
            &content[300_000..2_800_001],
            &content[2_800_001..],
        ],
    )
    .await;
    assert_eq!(size, content.len() as u64);
    assert_eq!(store.upload_size(id).await.unwrap(), Some(size));
    assert_eq!(upload_bytes(store, id).await, content);
    // Not visible as a blob before commit.
    assert_eq!(store.stat(&digest).await.unwrap(), None);

    store.commit_upload(id, &digest).await.unwrap();
    assert_eq!(store.upload_size(id).await.unwrap(), None);
    assert_eq!(
        store.stat(&digest).await.unwrap(),
        Some(content.len() as u64)
    );
    assert_eq!(
        collect(store, &digest, 0..content.len() as u64).await,
        content
    );
    assert_eq!(collect(store, &digest, 10..20).await, &content[10..20]);
    assert_eq!(
        collect(store, &digest, 4_999_990..5_000_000).await,
        &content[4_999_990..]
    );

    // Committing the same content again keeps one blob and drops the upload.
    let again = "22222222-2222-2222-2222-222222222222";
    upload(store, again, &[&content]).await;
    store.commit_upload(again, &digest).await.unwrap();
    assert_eq!(store.upload_size(again).await.unwrap(), None);
    assert_eq!(
        store.stat(&digest).await.unwrap(),
        Some(content.len() as u64)
    );

    // Empty blob.
    let empty = Digest::sha256_of(b"");
    let empty_id = "33333333-3333-3333-3333-333333333333";
    store.create_upload(empty_id).await.unwrap();
    store.commit_upload(empty_id, &empty).await.unwrap();
    assert_eq!(store.stat(&empty).await.unwrap(), Some(0));
    assert!(collect(store, &empty, 0..0).await.is_empty());

    // Cancelled upload and deleted blob are gone; deleting twice is fine.
    let cancelled = "44444444-4444-4444-4444-444444444444";
    upload(store, cancelled, &[b"abc"]).await;
    store.delete_upload(cancelled).await.unwrap();
    assert_eq!(store.upload_size(cancelled).await.unwrap(), None);
    store.delete(&digest).await.unwrap();
    store.delete(&digest).await.unwrap();
    assert_eq!(store.stat(&digest).await.unwrap(), None);
}

/// Appends `writes` (one `write` call each) through a new writer of `store`; returns the
/// size `finish` reports.
async fn append(store: &dyn BlobStore, id: &str, writes: &[&[u8]]) -> u64 {
    let mut writer = store.append_upload(id).await.unwrap();
    for bytes in writes {
        writer
            .write(vec![Bytes::copy_from_slice(bytes)])
            .await
            .unwrap();
    }
    writer.finish().await.unwrap()
}

async fn upload_bytes(store: &dyn BlobStore, id: &str) -> Vec<u8> {
    concat(store.read_upload(id).await).await
}

async fn assert_invisible(stores: [&dyn BlobStore; 2], digest: &Digest) {
    for store in stores {
        assert_eq!(store.stat(digest).await.unwrap(), None);
        assert!(matches!(
            store.read(digest, 0..1).await,
            Err(StorageError::NotFound)
        ));
    }
}

/// Two stores over the same storage, as two replicas see it: an upload that one starts and
/// the other continues, in chunks smaller and larger than S3's 5 MiB minimum part, comes out
/// byte for byte, and its blob is visible to neither before the commit.
pub async fn run_replicas(first: &dyn BlobStore, second: &dyn BlobStore) {
    const MIB: usize = 1024 * 1024;
    let content: Vec<u8> = (0..13 * MIB + 12_345)
        .map(|i| (i % 253) as u8 ^ (i / 4096) as u8)
        .collect();
    let digest = Digest::sha256_of(&content);
    let id = "55555555-5555-5555-5555-555555555555";
    let stores = [first, second];

    first.create_upload(id).await.unwrap();
    assert_eq!(second.upload_size(id).await.unwrap(), Some(0));

    // Small chunks on the first replica, a chunk larger than a part on the second, several
    // writes adding up to almost a part on the first, the rest on the second.
    let cuts = [
        0,
        MIB,
        MIB + 300_000,
        8 * MIB + 300_000,
        13 * MIB,
        content.len(),
    ];
    assert_eq!(
        append(first, id, &[&content[..MIB], &content[MIB..cuts[2]]]).await,
        cuts[2] as u64
    );
    assert_eq!(second.upload_size(id).await.unwrap(), Some(cuts[2] as u64));
    assert_invisible(stores, &digest).await;

    assert_eq!(
        append(second, id, &[&content[cuts[2]..cuts[3]]]).await,
        cuts[3] as u64
    );
    assert_eq!(first.upload_size(id).await.unwrap(), Some(cuts[3] as u64));
    assert!(upload_bytes(first, id).await == content[..cuts[3]]);

    let middle = &content[cuts[3]..cuts[4]];
    let thirds = middle.len() / 3;
    assert_eq!(
        append(
            first,
            id,
            &[
                &middle[..thirds],
                &middle[thirds..2 * thirds],
                &middle[2 * thirds..]
            ]
        )
        .await,
        cuts[4] as u64
    );
    assert!(upload_bytes(second, id).await == content[..cuts[4]]);
    assert_invisible(stores, &digest).await;

    assert_eq!(
        append(second, id, &[&content[cuts[4]..]]).await,
        content.len() as u64
    );
    assert_eq!(
        first.upload_size(id).await.unwrap(),
        Some(content.len() as u64)
    );
    assert!(upload_bytes(first, id).await == content);
    assert_invisible(stores, &digest).await;

    // Committed by the second, read by the first, across the parts' boundaries.
    second.commit_upload(id, &digest).await.unwrap();
    for store in stores {
        assert_eq!(store.upload_size(id).await.unwrap(), None);
        assert_eq!(
            store.stat(&digest).await.unwrap(),
            Some(content.len() as u64)
        );
    }
    assert!(collect(first, &digest, 0..content.len() as u64).await == content);
    let across = (5 * MIB - 10) as u64..(10 * MIB + 10) as u64;
    assert!(
        collect(first, &digest, across.clone()).await
            == content[across.start as usize..across.end as usize]
    );
    first.delete(&digest).await.unwrap();
    assert_invisible(stores, &digest).await;
}

/// The S3 bucket tests use, from the `GANTRY_TEST_S3_*` variables that `scripts/garage.sh`
/// writes (`scripts/test-all.sh` starts Garage and exports them).
pub struct TestBucket {
    /// `s3://BUCKET/PREFIX` with a prefix of its own for each call, so tests do not meet.
    pub location: String,
    /// The `AWS_*` settings for the bucket: give them to `S3BlobStore::open_with`, or to a
    /// `gantry serve` process as its environment.
    pub settings: Vec<(&'static str, String)>,
}

impl TestBucket {
    /// The value of one of [`TestBucket::settings`] (e.g. `AWS_SECRET_ACCESS_KEY`).
    pub fn setting(&self, name: &str) -> &str {
        let found = self.settings.iter().find(|(k, _)| *k == name);
        found
            .map(|(_, v)| v.as_str())
            .expect("a test bucket setting")
    }

    /// The settings as `open_with` takes them.
    pub fn settings(&self) -> Vec<(&str, &str)> {
        self.settings
            .iter()
            .map(|(k, v)| (*k, v.as_str()))
            .collect()
    }
}

/// A fresh prefix in the test bucket.
///
/// Panics, saying how to start Garage, when the variables are missing: a test that needs
/// an S3 engine fails rather than passing without one.
pub fn test_bucket() -> TestBucket {
    static NEXT: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    let var = |name: &str| {
        std::env::var(name).unwrap_or_else(|_| {
            panic!(
                "{name} is not set: this test needs a Garage S3 server. Run scripts/test-all.sh, \
                 or start one with `scripts/garage.sh start DIR` and `source DIR/env`"
            )
        })
    };
    let bucket = var("GANTRY_TEST_S3_BUCKET");
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos();
    let n = NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    TestBucket {
        location: format!("s3://{bucket}/test-{}-{nanos}-{n}", std::process::id()),
        settings: vec![
            ("AWS_ENDPOINT_URL", var("GANTRY_TEST_S3_ENDPOINT")),
            ("AWS_REGION", var("GANTRY_TEST_S3_REGION")),
            ("AWS_ACCESS_KEY_ID", var("GANTRY_TEST_S3_ACCESS_KEY_ID")),
            (
                "AWS_SECRET_ACCESS_KEY",
                var("GANTRY_TEST_S3_SECRET_ACCESS_KEY"),
            ),
            ("AWS_ALLOW_HTTP", "true".to_string()),
        ],
    }
}
