//! Progress bars for long transfers (one bar of total bytes, with what was skipped).

use std::sync::Arc;

use gantry_client::Progress;
use gantry_oci::Digest;
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};

pub struct Bars {
    bar: ProgressBar,
}

impl Bars {
    pub fn new(quiet: bool) -> Arc<Bars> {
        let bar = ProgressBar::with_draw_target(
            Some(0),
            if quiet {
                ProgressDrawTarget::hidden()
            } else {
                ProgressDrawTarget::stderr()
            },
        );
        bar.set_style(
            ProgressStyle::with_template(
                "{spinner} {msg:30} [{bar:30}] {bytes}/{total_bytes} {bytes_per_sec}",
            )
            .expect("template is valid")
            .progress_chars("=> "),
        );
        Arc::new(Bars { bar })
    }

    /// Sets the bar to `total` bytes of work described by `message` (a copy whose size is
    /// known before it starts).
    pub fn expect_bytes(&self, total: u64, message: &str) {
        self.bar.set_length(total);
        self.bar.set_message(message.to_string());
    }

    pub fn finish(&self, message: &str) {
        self.bar.finish_and_clear();
        println!("{message}");
    }
}

fn short(digest: &Digest) -> String {
    format!("{}:{}", digest.algorithm().as_str(), &digest.hex()[..12])
}

impl Progress for Bars {
    fn blob_started(&self, digest: &Digest, size: u64) {
        self.bar.inc_length(size);
        self.bar.set_message(format!("blob {}", short(digest)));
    }

    fn blob_skipped(&self, digest: &Digest, _size: u64) {
        self.bar.set_message(format!("exists {}", short(digest)));
    }

    fn bytes(&self, n: u64) {
        self.bar.inc(n);
    }

    fn manifest_done(&self, digest: &Digest, _reference: &str) {
        self.bar.set_message(format!("manifest {}", short(digest)));
    }
}
