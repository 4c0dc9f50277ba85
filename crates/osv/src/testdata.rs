//! The project's shared test data (feature `test-support`).

use std::path::{Path, PathBuf};

/// Records in [`go_snapshot`].
pub const GO_SNAPSHOT_RECORDS: usize = 4291;

/// The Go vulnerability database snapshot (CC-BY-4.0, attribution in the NOTICES beside it):
/// `shared/testdata/vulndb/osv-go-all.zip`, `shared/` lying beside the checkout or beside a
/// folder above it (worktrees). Panics when it is not there.
pub fn go_snapshot() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .ancestors()
        .map(|dir| dir.join("shared/testdata/vulndb/osv-go-all.zip"))
        .find(|path| path.is_file())
        .expect("shared/testdata/vulndb/osv-go-all.zip beside the checkout")
}
