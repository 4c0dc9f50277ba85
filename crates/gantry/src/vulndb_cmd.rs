//! `gantry vulndb import` and `gantry vulndb status`: the vulnerability database the scanner
//! matches against, in the server's metadata store, worked on directly (like `gantry
//! backup`), with or without a server running.

use std::path::PathBuf;

use anyhow::Context;
use clap::Subcommand;
use futures::StreamExt;
use gantry_meta::{MetaStore, VulnDbSource};
use gantry_osv::source::{self, Item, Malformed};
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use serde_json::json;
use tokio::io::AsyncWriteExt;

use crate::admin::{print_json, table, time_of, TransportArgs};
use crate::backup::DataDirArgs;

#[derive(Subcommand)]
pub enum VulnDbCommand {
    /// Load OSV vulnerability data (a zip, a directory or a URL) into the server's database.
    #[command(
        long_about = "Load OSV vulnerability data into the server's database.\n\n\
        SOURCE is what a vulnerability database publishes in the OSV format: an all.zip export\n\
        (one per ecosystem), a directory of OSV JSON files (searched recursively), one JSON file,\n\
        or an http(s):// URL of any of those files (downloaded to a temporary file first). Records\n\
        that do not parse are listed and skipped. The import replaces everything the source\n\
        loaded before, in one transaction: running it again with the same data changes nothing,\n\
        and a server scanning meanwhile sees the old data or the new, never half. Several\n\
        sources are kept side by side and merged by aliases (GO-…, GHSA-…, CVE-…), so that the\n\
        Go database's records get the severity another source gives the same vulnerability.\n\n\
        Gantry ships no vulnerability data: until a first import, scans find nothing. Air-gapped\n\
        sites import from a file or an internal mirror.\n\n\
        Examples:\n    \
        gantry vulndb import osv-go-all.zip --data-dir /var/lib/gantry\n    \
        gantry vulndb import https://mirror.example.com/osv/Go/all.zip\n    \
        gantry vulndb import ./debian-osv/ --source debian"
    )]
    Import {
        /// An OSV all.zip, a directory of OSV JSON files, one JSON file, or an http(s):// URL.
        source: String,
        /// The source's name: an import replaces the records of its name [default: the
        /// ecosystem of the first record, lowercase: go, debian, alpine].
        #[arg(long = "source", value_name = "NAME")]
        name: Option<String>,
        #[command(flatten)]
        data: DataDirArgs,
        #[command(flatten)]
        transport: TransportArgs,
    },
    /// What vulnerability data is loaded: per source, records, newest record, import time, age.
    Status {
        /// Print JSON instead of a table.
        #[arg(long)]
        json: bool,
        #[command(flatten)]
        data: DataDirArgs,
    },
}

pub async fn vulndb(command: VulnDbCommand) -> anyhow::Result<()> {
    match command {
        VulnDbCommand::Import {
            source,
            name,
            data,
            transport,
        } => import(&source, name, &data, &transport).await,
        VulnDbCommand::Status { json, data } => status(&data, json).await,
    }
}

/// Opens the server's metadata store (creating the embedded default's data directory when
/// the import comes before the first `gantry serve`).
async fn open_store(data: &DataDirArgs) -> anyhow::Result<MetaStore> {
    crate::data_dir::create_privately();
    let location = data.database()?;
    if let gantry_meta::DatabaseLocation::Sqlite(path) = &location {
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir)
                .with_context(|| format!("cannot create the data directory {}", dir.display()))?;
        }
    }
    MetaStore::open(&location).await.with_context(|| {
        format!(
            "cannot open the metadata database {}: give the server's --data-dir, --config or \
             GANTRY_DATABASE",
            location.redacted()
        )
    })
}

/// The most malformed records listed one by one; the rest are counted.
const MALFORMED_LISTED: usize = 20;

/// What an import did.
pub struct Imported {
    /// The source as stored.
    pub source: VulnDbSource,
    /// The first malformed records skipped (at most [`MALFORMED_LISTED`]).
    pub skipped: Vec<Malformed>,
}

async fn import(
    location: &str,
    name: Option<String>,
    data: &DataDirArgs,
    transport: &TransportArgs,
) -> anyhow::Result<()> {
    let http = transport.http_client()?;
    let store = open_store(data).await?;
    let imported = import_into(&store, location, name.as_deref(), &http, data.quiet()).await?;
    for skipped in &imported.skipped {
        eprintln!("skipped {}: {}", skipped.file, skipped.error);
    }
    let source = imported.source;
    if source.malformed > imported.skipped.len() as u64 {
        eprintln!(
            "skipped {} more malformed records",
            source.malformed - imported.skipped.len() as u64
        );
    }
    println!(
        "imported {} records into source {:?}{}",
        source.records,
        source.name,
        if source.malformed > 0 {
            format!(", skipped {} malformed", source.malformed)
        } else {
            String::new()
        }
    );
    Ok(())
}

/// Imports `location` (a file, a directory or an http(s) URL, downloaded with `http`) into
/// `store` as source `name` (default: the first record's ecosystem), replacing what the
/// source held. A source without one readable record changes nothing and is an error.
/// `quiet`: no progress bars.
pub async fn import_into(
    store: &MetaStore,
    location: &str,
    name: Option<&str>,
    http: &reqwest::Client,
    quiet: bool,
) -> anyhow::Result<Imported> {
    // A URL is downloaded first: the import then reads a file like any other.
    let downloaded;
    let path: PathBuf = if location.starts_with("http://") || location.starts_with("https://") {
        downloaded = download(location, http, quiet).await?;
        downloaded.path().to_path_buf()
    } else {
        PathBuf::from(location)
    };
    let mut reader = source::open(&path).with_context(|| {
        format!("cannot read {location}: give an OSV all.zip, a directory of OSV JSON files, one JSON file or an http(s) URL")
    })?;
    let bar = progress_bar(
        Some(reader.len_hint() as u64),
        "{spinner} importing [{bar:30}] {pos}/{len} records",
        quiet,
    );

    // The source is read on a blocking thread, a bounded queue ahead of the database.
    let (sender, mut receiver) = tokio::sync::mpsc::channel(256);
    let reading = tokio::task::spawn_blocking(move || {
        for item in reader.by_ref() {
            if sender.blocking_send(item).is_err() {
                break;
            }
        }
    });
    let mut import = None;
    let mut malformed = 0u64;
    let mut skipped = Vec::new();
    while let Some(item) = receiver.recv().await {
        bar.inc(1);
        match item.with_context(|| format!("cannot read {location}"))? {
            Item::Record(record) => {
                if import.is_none() {
                    let name = match name {
                        Some(name) => name.to_string(),
                        None => default_source_name(&record.advisory),
                    };
                    let mut begun = store.begin_vulndb_import(&name, location).await?;
                    // Malformed records read before the first good one count too.
                    for _ in 0..malformed {
                        begun.skip_malformed();
                    }
                    import = Some(begun);
                }
                let import = import.as_mut().expect("begun above");
                import.add(&record).await.with_context(|| {
                    format!("cannot store {} ({})", record.advisory.id, record.file)
                })?;
            }
            Item::Malformed(record) => {
                malformed += 1;
                if let Some(import) = import.as_mut() {
                    import.skip_malformed();
                }
                if skipped.len() < MALFORMED_LISTED {
                    skipped.push(record);
                }
            }
        }
    }
    reading.await.context("the reading thread failed")?;
    bar.finish_and_clear();
    let Some(import) = import else {
        anyhow::bail!(
            "{location} holds no OSV record{}: nothing was changed. Give an OSV all.zip, a \
             directory of OSV JSON files or one JSON file",
            if malformed > 0 { " that parses" } else { "" }
        );
    };
    Ok(Imported {
        source: import.commit().await?,
        skipped,
    })
}

/// `go`, `debian`, `alpine`: the ecosystem (without its release) of the record's first
/// package, lowercase; `osv` for a record without one.
fn default_source_name(advisory: &gantry_osv::Advisory) -> String {
    advisory
        .affected
        .iter()
        .find_map(|affected| affected.package.as_ref())
        .map(|package| {
            package
                .ecosystem
                .split(':')
                .next()
                .unwrap_or_default()
                .to_lowercase()
        })
        .filter(|name| !name.is_empty())
        .unwrap_or_else(|| "osv".to_string())
}

/// Downloads `url` into a temporary file, streaming.
async fn download(
    url: &str,
    http: &reqwest::Client,
    quiet: bool,
) -> anyhow::Result<tempfile::NamedTempFile> {
    let response = http
        .get(url)
        .send()
        .await
        .with_context(|| format!("cannot download {url}"))?;
    anyhow::ensure!(
        response.status().is_success(),
        "cannot download {url}: the server answered {}",
        response.status()
    );
    let bar = progress_bar(
        response.content_length(),
        "{spinner} downloading [{bar:30}] {bytes}/{total_bytes}",
        quiet,
    );
    let file = tempfile::NamedTempFile::new().context("cannot create a temporary file")?;
    let mut target =
        tokio::fs::File::from_std(file.reopen().context("cannot open the temporary file")?);
    let mut body = response.bytes_stream();
    while let Some(chunk) = body.next().await {
        let chunk = chunk.with_context(|| format!("cannot download {url}"))?;
        target
            .write_all(&chunk)
            .await
            .context("cannot write the temporary file")?;
        bar.inc(chunk.len() as u64);
    }
    target
        .flush()
        .await
        .context("cannot write the temporary file")?;
    bar.finish_and_clear();
    Ok(file)
}

/// A progress bar on stderr (hidden when `quiet`) drawn by `template`.
fn progress_bar(total: Option<u64>, template: &str, quiet: bool) -> ProgressBar {
    let bar = ProgressBar::with_draw_target(
        total,
        if quiet {
            ProgressDrawTarget::hidden()
        } else {
            ProgressDrawTarget::stderr()
        },
    );
    bar.set_style(
        ProgressStyle::with_template(template)
            .expect("template is valid")
            .progress_chars("=> "),
    );
    bar
}

async fn status(data: &DataDirArgs, as_json: bool) -> anyhow::Result<()> {
    let store = open_store(data).await?;
    let status = store.vulndb_status().await?;
    let now_ms = gantry_meta::now_ms();
    if as_json {
        let sources: Vec<_> = status
            .sources
            .iter()
            .map(|source| {
                json!({
                    "name": source.name,
                    "location": source.location,
                    "records": source.records,
                    "malformed": source.malformed,
                    "newest_modified": newest(source),
                    "imported_at": time_of(source.imported_at_ms / 1000),
                    "age_seconds": (now_ms - source.imported_at_ms).max(0) / 1000,
                })
            })
            .collect();
        print_json(&json!({ "generation": status.generation, "sources": sources }));
        return Ok(());
    }
    if status.sources.is_empty() {
        println!(
            "empty: no vulnerability data is loaded, so scans find nothing. Load some with\n    \
             gantry vulndb import FILE|DIR|URL\n\
             e.g. the Go vulnerability database's OSV export (all.zip of the Go ecosystem)."
        );
        return Ok(());
    }
    let rows = status
        .sources
        .iter()
        .map(|source| {
            vec![
                source.name.clone(),
                source.records.to_string(),
                source.malformed.to_string(),
                newest(source).unwrap_or_else(|| "-".to_string()),
                time_of(source.imported_at_ms / 1000),
                age((now_ms - source.imported_at_ms).max(0) / 1000),
                source.location.clone(),
            ]
        })
        .collect();
    table(
        &[
            "source",
            "records",
            "malformed",
            "newest record",
            "imported",
            "age",
            "location",
        ],
        rows,
    );
    Ok(())
}

/// The newest record's time, unless the source writes placeholders (year 1).
fn newest(source: &VulnDbSource) -> Option<String> {
    source
        .newest_modified
        .clone()
        .filter(|modified| !modified.starts_with("0001-"))
}

/// `45s`, `12m`, `5h`, `3d`.
fn age(secs: i64) -> String {
    match secs {
        s if s < 60 => format!("{s}s"),
        s if s < 3600 => format!("{}m", s / 60),
        s if s < 86_400 => format!("{}h", s / 3600),
        s => format!("{}d", s / 86_400),
    }
}

// --- the scheduled refresh (`[vulndb] refresh`) --------------------------------------------------

/// The job kind of a scheduled refresh.
pub const REFRESH_JOB: &str = "vulndb-refresh";

/// Attempts of one refresh (a mirror that is down now may answer a minute later).
const REFRESH_ATTEMPTS: u32 = 3;

/// `[vulndb] refresh`: import `location` (a URL or a directory of an internal mirror) every
/// `every`, as a job on the job backbone (once across the servers sharing a database).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Refresh {
    pub location: String,
    pub every: std::time::Duration,
    /// CA certificates trusted for an https location besides the system's roots.
    pub ca_cert: Option<PathBuf>,
}

impl Refresh {
    /// Enqueues the refresh firing in `(after, until]` (Unix seconds; every `every` from the
    /// epoch, none before `started`), once across servers; returns whether a job was added.
    pub async fn enqueue_due(
        &self,
        meta: &MetaStore,
        started: i64,
        after: i64,
        until: i64,
    ) -> Result<bool, gantry_meta::MetaError> {
        let every = self.every.as_secs().max(1) as i64;
        let fired_at = until - until.rem_euclid(every);
        if fired_at <= after || fired_at <= started {
            return Ok(false);
        }
        let job = gantry_meta::NewJob {
            unique_key: Some(format!("{REFRESH_JOB}@{fired_at}")),
            subject: Some(format!("vulndb:{}", self.location)),
            max_attempts: REFRESH_ATTEMPTS,
            ..gantry_meta::NewJob::of(REFRESH_JOB, json!({ "fired_at": fired_at }).to_string())
        };
        Ok(meta.enqueue_job(&job).await?.is_some())
    }

    /// The handler that runs the refresh jobs.
    pub fn handler(
        &self,
        meta: MetaStore,
    ) -> anyhow::Result<std::sync::Arc<dyn gantry_jobs::JobHandler>> {
        Ok(std::sync::Arc::new(RefreshJob {
            meta,
            location: self.location.clone(),
            http: gantry_client::http_client(&gantry_client::Transport {
                plain_http: false,
                ca_cert: self.ca_cert.clone(),
                ..gantry_client::Transport::default()
            })?,
        }))
    }
}

struct RefreshJob {
    meta: MetaStore,
    location: String,
    http: reqwest::Client,
}

#[async_trait::async_trait]
impl gantry_jobs::JobHandler for RefreshJob {
    fn kind(&self) -> &'static str {
        REFRESH_JOB
    }

    async fn run(
        &self,
        _job: &gantry_meta::JobRecord,
        progress: &gantry_jobs::Progress,
    ) -> Result<serde_json::Value, gantry_jobs::JobError> {
        progress
            .report(&format!("importing {}", self.location))
            .await;
        let imported = import_into(&self.meta, &self.location, None, &self.http, true)
            .await
            .map_err(|e| gantry_jobs::JobError::transient(format!("{e:#}")))?;
        for skipped in &imported.skipped {
            tracing::warn!(file = %skipped.file, error = %skipped.error, "vulndb refresh skipped a malformed record");
        }
        let source = imported.source;
        tracing::info!(source = %source.name, records = source.records, malformed = source.malformed, "vulndb refreshed");
        Ok(json!({
            "source": source.name,
            "location": source.location,
            "records": source.records,
            "malformed": source.malformed,
        }))
    }
}
