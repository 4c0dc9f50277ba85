use super::*;

fn d(n: u8) -> Digest {
    Digest::sha256_of(&[n])
}

/// The first ten entries of a listing.
const FIRST_PAGE: Page<'static> = Page {
    last: None,
    limit: 10,
};

/// Where a test's store lives, to open it again.
pub(crate) struct Fixture {
    /// Holds the SQLite file (and anything else a test writes) until the test ends.
    pub dir: tempfile::TempDir,
    pub location: DatabaseLocation,
}

impl Fixture {
    pub fn path(&self) -> &std::path::Path {
        self.dir.path()
    }

    /// The store at the same location, opened again (migrations run again, as at a restart).
    pub async fn reopen(&self) -> Result<MetaStore> {
        MetaStore::open(&self.location).await
    }
}

/// A fresh, empty store (see [`crate::testing::fresh_store`]). Every test of the store's
/// modules starts here, so the same suite runs on each backend.
pub(crate) async fn store() -> (Fixture, MetaStore) {
    let (dir, location, store) = crate::testing::fresh_store().await;
    (Fixture { dir, location }, store)
}

/// A fresh SQLite store, for what only SQLite has (file snapshots for backups).
pub(crate) async fn sqlite_store() -> (Fixture, MetaStore) {
    let dir = tempfile::tempdir().unwrap();
    let location = DatabaseLocation::Sqlite(dir.path().join("meta.db"));
    let store = MetaStore::open(&location).await.unwrap();
    (Fixture { dir, location }, store)
}

/// An image manifest record over `blobs` (content `{}`), for tests.
pub(crate) fn manifest<'a>(
    digest: &'a Digest,
    blobs: Vec<&'a Digest>,
    subject: Option<&'a Digest>,
) -> NewManifest<'a> {
    NewManifest {
        digest,
        media_type: gantry_oci::media_type::OCI_MANIFEST,
        artifact_type: Some("application/x-test"),
        subject,
        annotations: None,
        content: b"{}",
        blobs,
        children: vec![],
        pushed_by: "tester",
    }
}

#[tokio::test]
async fn blob_links_are_per_repository() {
    let (_dir, store) = store().await;
    store.link_blob("a/x", &d(1), 10).await.unwrap();
    assert_eq!(
        store.blob_in_repository("a/x", &d(1)).await.unwrap(),
        Some(10)
    );
    assert_eq!(store.blob_in_repository("a/y", &d(1)).await.unwrap(), None);
    assert_eq!(store.blob_anywhere(&d(1)).await.unwrap(), Some(10));
    assert!(store.unlink_blob("a/x", &d(1)).await.unwrap());
    assert!(!store.unlink_blob("a/x", &d(1)).await.unwrap());
    assert_eq!(store.blob_anywhere(&d(1)).await.unwrap(), None);
}

#[tokio::test]
async fn manifest_needs_its_blobs_in_the_same_repository() {
    let (_dir, store) = store().await;
    store.link_blob("other", &d(1), 1).await.unwrap();
    let (m, b) = (d(9), d(1));
    let err = store
        .put_manifest("repo", &manifest(&m, vec![&b], None), Some("v1".into()))
        .await;
    assert!(matches!(err, Err(MetaError::MissingBlob(x)) if x == d(1)));
    assert!(store.manifest_by_tag("repo", "v1").await.unwrap().is_none());

    store.link_blob("repo", &d(1), 1).await.unwrap();
    store
        .put_manifest("repo", &manifest(&m, vec![&b], None), Some("v1".into()))
        .await
        .unwrap();
    let got = store.manifest_by_tag("repo", "v1").await.unwrap().unwrap();
    assert_eq!(got.digest, m);
    assert_eq!(got.content, b"{}");
    assert!(store
        .manifest_by_digest("repo", &m)
        .await
        .unwrap()
        .is_some());
    assert!(store
        .manifest_by_digest("other", &m)
        .await
        .unwrap()
        .is_none());
}

#[tokio::test]
async fn index_needs_its_children() {
    let (_dir, store) = store().await;
    let (index, child) = (d(5), d(6));
    let mut new = manifest(&index, vec![], None);
    new.children = vec![&child];
    assert!(matches!(
        store.put_manifest("r", &new, None).await,
        Err(MetaError::MissingManifest(_))
    ));
    store
        .put_manifest("r", &manifest(&child, vec![], None), None)
        .await
        .unwrap();
    store
        .put_manifest("r", &new, Some("multi".into()))
        .await
        .unwrap();
}

#[tokio::test]
async fn tags_paginate_in_lexical_order_and_deletes_behave() {
    let (_dir, store) = store().await;
    assert_eq!(store.tags("r", FIRST_PAGE).await.unwrap(), None);
    let m = d(1);
    for tag in ["b", "a", "c", "a1"] {
        store
            .put_manifest("r", &manifest(&m, vec![], None), Some(tag.into()))
            .await
            .unwrap();
    }
    let all = store
        .tags(
            "r",
            Page {
                last: None,
                limit: 10,
            },
        )
        .await
        .unwrap()
        .unwrap();
    assert_eq!(all, ["a", "a1", "b", "c"]);
    let page = store
        .tags(
            "r",
            Page {
                last: Some("a1"),
                limit: 1,
            },
        )
        .await
        .unwrap()
        .unwrap();
    assert_eq!(page, ["b"]);

    assert!(store.delete_tag("r", "a", "tester").await.unwrap());
    assert!(store.manifest_by_digest("r", &m).await.unwrap().is_some());
    assert!(store.delete_manifest("r", &m, "tester").await.unwrap());
    assert_eq!(
        store.tags("r", FIRST_PAGE).await.unwrap().unwrap(),
        Vec::<String>::new()
    );
    assert_eq!(
        store.catalog(FIRST_PAGE).await.unwrap(),
        Vec::<String>::new()
    );
}

#[tokio::test]
async fn referrers_filter_by_artifact_type() {
    let (_dir, store) = store().await;
    let (subject, sig, sbom) = (d(1), d(2), d(3));
    store
        .put_manifest("r", &manifest(&sig, vec![], Some(&subject)), None)
        .await
        .unwrap();
    let mut other = manifest(&sbom, vec![], Some(&subject));
    other.artifact_type = Some("application/spdx+json");
    store.put_manifest("r", &other, None).await.unwrap();
    assert_eq!(store.referrers("r", &subject, None).await.unwrap().len(), 2);
    let only = store
        .referrers("r", &subject, Some("application/spdx+json"))
        .await
        .unwrap();
    assert_eq!(only.len(), 1);
    assert_eq!(only[0].digest, sbom);
    assert!(store
        .referrers("other", &subject, None)
        .await
        .unwrap()
        .is_empty());
}

#[tokio::test]
async fn reopening_keeps_data_and_does_not_remigrate() {
    let (fixture, store) = store().await;
    store.link_blob("r", &d(1), 3).await.unwrap();
    store.close().await;
    let store = fixture.reopen().await.unwrap();
    assert_eq!(store.blob_in_repository("r", &d(1)).await.unwrap(), Some(3));
}

#[tokio::test]
async fn immutable_tags_do_not_move_but_take_the_same_digest_again() {
    let (_dir, store) = store().await;
    let (a, b) = (d(1), d(2));
    let immutable = Some(TagRef {
        name: "v1.0.0",
        immutable: true,
    });
    store
        .put_manifest("r", &manifest(&a, vec![], None), immutable)
        .await
        .unwrap();
    store
        .put_manifest("r", &manifest(&a, vec![], None), immutable)
        .await
        .unwrap();
    assert!(matches!(
        store.put_manifest("r", &manifest(&b, vec![], None), immutable).await,
        Err(MetaError::TagImmutable { tag, current }) if tag == "v1.0.0" && current == a.to_string()
    ));
    assert_eq!(store.tags_of("r", &a).await.unwrap(), ["v1.0.0"]);
    assert!(store.tags_of("r", &b).await.unwrap().is_empty());
    // A mutable write still moves it (the rules decide which writes are immutable).
    store
        .put_manifest("r", &manifest(&b, vec![], None), Some("v1.0.0".into()))
        .await
        .unwrap();
    assert_eq!(store.tags_of("r", &b).await.unwrap(), ["v1.0.0"]);

    assert_eq!(store.tag_rules("team").await.unwrap(), None);
    store
        .set_tag_rules("team", r#"{"refuse_latest":true}"#)
        .await
        .unwrap();
    store
        .set_tag_rules("team", r#"{"immutable":["v*"]}"#)
        .await
        .unwrap();
    assert_eq!(
        store.tag_rules("team").await.unwrap().as_deref(),
        Some(r#"{"immutable":["v*"]}"#)
    );
}

#[tokio::test]
async fn forgetting_change_counters_by_prefix_leaves_the_others() {
    let (_dir, store) = store().await;
    for name in [
        "access",
        "insufficient-scope:a:r:pull",
        "insufficient-scope:b:r:push",
    ] {
        store.bump_change_counter(name).await.unwrap();
    }
    assert_eq!(
        store
            .forget_change_counters("insufficient-scope:")
            .await
            .unwrap(),
        2
    );
    assert_eq!(store.change_counter("access").await.unwrap(), 1);
    assert_eq!(
        store
            .change_counter("insufficient-scope:a:r:pull")
            .await
            .unwrap(),
        0
    );
}
