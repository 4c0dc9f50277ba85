//! The conformance suite every `BlobStore` backend must pass, as CNCF Distribution does
//! for its storage drivers. Backends call [`run`] from their own tests.

use bytes::Bytes;
use futures::TryStreamExt;
use gantry_oci::Digest;

use crate::{BlobStore, StorageError};

async fn collect(store: &dyn BlobStore, digest: &Digest, range: std::ops::Range<u64>) -> Vec<u8> {
    let chunks: Vec<Bytes> = store
        .read(digest, range)
        .await
        .unwrap()
        .try_collect()
        .await
        .unwrap();
    chunks.concat()
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
    let received: Vec<Bytes> = store
        .read_upload(id)
        .await
        .unwrap()
        .try_collect()
        .await
        .unwrap();
    assert_eq!(received.concat(), content);
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
