//! Vulnerability scanning of stored images: on push (a job per pushed image manifest,
//! enqueued from the `artifact.pushed` events by whichever server looks first), on demand,
//! and read back per artifact (per platform for an index).
//!
//! A scan reads the image's layers from the blob store as streams (one at a time, through the
//! layer walker on a blocking thread), lists its packages, asks the metadata store for the
//! advisories of just those packages, and records the report under the manifest's digest
//! with the vulnerability database generation it was matched against.

use std::io;
use std::sync::Arc;

use gantry_inspect::Platform;
use gantry_jobs::{JobError, JobHandler, Progress};
use gantry_meta::{JobRecord, MetaStore, NewEvent, NewJob, ScanRecord, StoredManifest};
use gantry_oci::manifest::{self, ManifestKind};
use gantry_oci::media_type::{DOCKER_MANIFEST_LIST, OCI_INDEX, OCI_MANIFEST};
use gantry_oci::{Descriptor, Digest, Reference, RepositoryName};
use gantry_scanner::assess::{assess, KnownAdvisory};
use gantry_scanner::inventory::Inventory;
use gantry_scanner::{sbom, ScanReport};
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};
use tokio_util::io::{StreamReader, SyncIoBridge};

use crate::{Registry, RegistryError, Result};

/// The job kind of a scan.
pub const SCAN: &str = "scan";
/// The event consumer that enqueues scans of pushed images.
const CONSUMER: &str = "scanner";
/// Events taken per look.
const BATCH: u32 = 500;
/// Attempts a scan gets (a blob store hiccup) before it is recorded as failed.
const SCAN_ATTEMPTS: u32 = 3;
/// Who pushes the SBOMs a scan attaches (the `actor` of their `artifact.pushed` events).
pub const SCANNER_ACTOR: &str = "scanner";

/// A scan's state, as stored and as the API shows it.
pub const SCANNED: &str = "scanned";
pub const NOT_AN_IMAGE: &str = "not-an-image";
pub const FAILED: &str = "failed";
/// No scan is recorded yet (shown only, never stored).
pub const PENDING: &str = "pending";

#[derive(Debug, Serialize, Deserialize)]
struct ScanPayload {
    repository: String,
    digest: String,
}

/// One image's scan as the API shows it.
#[derive(Debug, Clone, Serialize)]
pub struct ImageScan {
    /// `os/architecture[/variant]` for an index's child; `None` for a lone image.
    pub platform: Option<String>,
    pub digest: String,
    /// `scanned`, `pending`, `not-an-image` or `failed`.
    pub status: &'static str,
    /// Unix milliseconds.
    pub scanned_ms: Option<i64>,
    /// The vulnerability database generation the report was matched against.
    pub database_generation: Option<i64>,
    /// Why the scan failed.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none", flatten)]
    pub report: Option<ScanReport>,
}

/// An artifact's scan: one entry per image (one for an image, one per child of an index).
#[derive(Debug, Clone, Serialize)]
pub struct ArtifactScan {
    pub repository: String,
    pub digest: String,
    pub images: Vec<ImageScan>,
}

fn status_of(stored: &str) -> &'static str {
    match stored {
        SCANNED => SCANNED,
        NOT_AN_IMAGE => NOT_AN_IMAGE,
        _ => FAILED,
    }
}

fn image_scan(platform: Option<String>, digest: &Digest, record: Option<&ScanRecord>) -> ImageScan {
    let Some(record) = record else {
        return ImageScan {
            platform,
            digest: digest.to_string(),
            status: PENDING,
            scanned_ms: None,
            database_generation: None,
            error: None,
            report: None,
        };
    };
    let status = status_of(&record.status);
    let (report, error) = match status {
        SCANNED => (serde_json::from_str(&record.report).ok(), None),
        FAILED => (
            None,
            serde_json::from_str::<Value>(&record.report)
                .ok()
                .and_then(|v| v["error"].as_str().map(str::to_string)),
        ),
        _ => (None, None),
    };
    ImageScan {
        platform,
        digest: digest.to_string(),
        status,
        scanned_ms: Some(record.scanned_ms),
        database_generation: Some(record.generation),
        error,
        report,
    }
}

/// The unique key of the scan a pushed image gets against database `generation`: one per
/// image and generation, whoever enqueues it (the push's event, a waiting pull).
fn push_scan_key(digest: &str, generation: i64) -> String {
    format!("scan:{digest}@{generation}")
}

fn scan_job(repository: &str, digest: &str, unique_key: Option<String>) -> NewJob {
    NewJob {
        unique_key,
        subject: Some(format!("{repository}@{digest}")),
        max_attempts: SCAN_ATTEMPTS,
        ..NewJob::of(
            SCAN,
            serde_json::to_string(&ScanPayload {
                repository: repository.to_string(),
                digest: digest.to_string(),
            })
            .expect("payloads serialize"),
        )
    }
}

impl Registry {
    /// Takes the events recorded since the scanner last looked (by any server) and enqueues
    /// a scan of every pushed manifest that is not an index (an index's images are pushed,
    /// and scanned, on their own), once per manifest and database generation. Returns how many
    /// jobs were added.
    pub async fn enqueue_scans_of_pushed(&self) -> Result<usize> {
        let (cursor, events) = self.meta.events_after_cursor(CONSUMER, BATCH).await?;
        let Some(last) = events.last().map(|e| e.id) else {
            return Ok(0);
        };
        let generation = self.meta.vulndb_generation().await?;
        let mut jobs = Vec::new();
        for event in &events {
            let media_type = event.data["media_type"].as_str().unwrap_or_default();
            let (Some(repository), Some(digest)) =
                (event.repository.as_deref(), event.data["digest"].as_str())
            else {
                continue;
            };
            // The scanner's own pushes are the SBOMs it attached: nothing to scan.
            if event.event_type != "artifact.pushed"
                || media_type == OCI_INDEX
                || media_type == DOCKER_MANIFEST_LIST
                || event.data["actor"] == SCANNER_ACTOR
            {
                continue;
            }
            let project = RepositoryName::project_of(repository);
            if !self.gate.policy(&self.meta, project).await?.scan_on_push {
                continue;
            }
            jobs.push(scan_job(
                repository,
                digest,
                Some(push_scan_key(digest, generation)),
            ));
        }
        let added = jobs.len();
        let moved = self
            .meta
            .consume_events(CONSUMER, cursor, last, &jobs, &[])
            .await?;
        Ok(if moved { added } else { 0 })
    }

    /// Enqueues the scan of a pushed image against the current database (once: the same key
    /// as the push's own scan), and wakes the job runner.
    pub(crate) async fn enqueue_push_scan(&self, repository: &str, digest: &Digest) -> Result<()> {
        let generation = self.meta.vulndb_generation().await?;
        let digest = digest.to_string();
        let job = scan_job(
            repository,
            &digest,
            Some(push_scan_key(&digest, generation)),
        );
        if self.meta.enqueue_job(&job).await?.is_some() {
            self.wake_jobs();
        }
        Ok(())
    }

    /// Enqueues a scan of `reference` in `name` now (each image of an index); returns the job
    /// ids.
    pub async fn request_scan(
        &self,
        name: &RepositoryName,
        reference: &Reference,
    ) -> Result<Vec<i64>> {
        let mut ids = Vec::new();
        for (_, digest) in self.images_of(name, reference).await? {
            let job = scan_job(name.as_str(), &digest.to_string(), None);
            if let Some(id) = self.meta.enqueue_job(&job).await? {
                ids.push(id);
            }
        }
        self.wake_jobs();
        Ok(ids)
    }

    /// The images of an artifact: itself, or an index's children with their platforms.
    pub(crate) async fn images_of(
        &self,
        name: &RepositoryName,
        reference: &Reference,
    ) -> Result<Vec<(Option<String>, Digest)>> {
        let stored = self.get_manifest(name, reference).await?;
        let parsed = manifest::parse(&stored.content, Some(&stored.media_type))?;
        if parsed.kind != ManifestKind::Index {
            return Ok(vec![(None, stored.digest)]);
        }
        let doc: Value = serde_json::from_slice(&stored.content).map_err(|e| {
            RegistryError::ManifestInvalid(manifest::ManifestError::Json(e.to_string()))
        })?;
        Ok(parsed
            .manifests
            .iter()
            .zip(doc["manifests"].as_array().into_iter().flatten())
            .map(|(child, entry)| {
                let platform = Platform::of_index_entry(entry).map(|p| p.to_string());
                (platform, child.digest.clone())
            })
            .collect())
    }

    /// The latest scan of each image of `reference` in `name`.
    pub async fn artifact_scan(
        &self,
        name: &RepositoryName,
        reference: &Reference,
    ) -> Result<ArtifactScan> {
        let stored = self.get_manifest(name, reference).await?;
        let images = self
            .images_of(name, &Reference::Digest(stored.digest.clone()))
            .await?;
        let digests: Vec<Digest> = images.iter().map(|(_, d)| d.clone()).collect();
        let records = self.meta.scan_results(&digests).await?;
        Ok(ArtifactScan {
            repository: name.as_str().to_string(),
            digest: stored.digest.to_string(),
            images: images
                .into_iter()
                .map(|(platform, digest)| {
                    let record = records.iter().find(|r| r.digest == digest);
                    image_scan(platform, &digest, record)
                })
                .collect(),
        })
    }

    /// Scans the image manifest `digest` of `repository` and records the result; returns the
    /// status recorded. A manifest that is not an image (an index, a signature, an SBOM) is
    /// recorded `not-an-image`. In a project with `sbom_on_push`, an image's SPDX and CycloneDX
    /// SBOMs are then attached to it as referrers (once: the same package list gives the same
    /// documents); an image whose SBOMs
    /// cannot be attached (e.g. its project is over quota) keeps its scan, and the failure is
    /// logged.
    pub async fn scan_image(&self, repository: &str, digest: &Digest) -> Result<&'static str> {
        let name = crate::parse_name(repository)?;
        let generation = self.meta.vulndb_generation().await?;
        let stored = self
            .get_manifest(&name, &Reference::Digest(digest.clone()))
            .await?;
        let parsed = manifest::parse(&stored.content, Some(&stored.media_type))?;
        let (status, report, sboms) = if !parsed.is_container_image() {
            (NOT_AN_IMAGE, None, Vec::new())
        } else {
            let inventory = self.inventory_of(parsed.layers).await?;
            let mut sboms = Vec::new();
            if self
                .gate
                .policy(&self.meta, name.project())
                .await?
                .sbom_on_push
            {
                let created = self.image_created(&name, digest).await?;
                let subject = sbom::Subject {
                    name: name.as_str(),
                    digest: &stored.digest.to_string(),
                    created: &created,
                };
                for format in [SbomFormat::Spdx, SbomFormat::Cyclonedx] {
                    sboms.push((sbom_document(&inventory, subject, format), created.clone()));
                }
            }
            let advisories = known_advisories(&self.meta, &inventory).await?;
            let findings = assess(&inventory, &advisories);
            (SCANNED, Some(ScanReport::new(inventory, findings)), sboms)
        };
        let previous = self
            .meta
            .scan_results(std::slice::from_ref(digest))
            .await?
            .into_iter()
            .next()
            .filter(|r| r.status == SCANNED)
            .and_then(|r| serde_json::from_str::<ScanReport>(&r.report).ok());
        let event = scanned_event(
            repository,
            digest,
            generation,
            report.as_ref(),
            previous.as_ref(),
        );
        let report = match &report {
            Some(report) => serde_json::to_string(report).expect("reports serialize"),
            None => json!({}).to_string(),
        };
        self.meta
            .put_scan_result(
                &ScanRecord {
                    digest: digest.clone(),
                    repository: repository.to_string(),
                    status: status.to_string(),
                    generation,
                    scanned_ms: gantry_meta::now_ms(),
                    report,
                },
                event.as_ref(),
            )
            .await?;
        for ((media_type, document), created) in sboms {
            if let Err(e) = self
                .attach(&name, &stored, media_type, &document, &created)
                .await
            {
                tracing::warn!(%repository, %digest, media_type, error = %e, "the image's SBOM could not be attached");
            }
        }
        Ok(status)
    }

    /// Attaches `document` (of `media_type`) to the image `subject` of `name` as a referrer
    /// (an artifact manifest of the document's type, pushed by [`SCANNER_ACTOR`]), unless the
    /// same referrer is already there.
    async fn attach(
        &self,
        name: &RepositoryName,
        subject: &StoredManifest,
        media_type: &str,
        document: &Value,
        created: &str,
    ) -> Result<()> {
        let bytes = serde_json::to_vec(document).expect("JSON serializes");
        let descriptor = |media_type: &str, digest, size: usize| {
            Descriptor::new(media_type, digest, size as u64)
        };
        let blob = descriptor(media_type, Digest::sha256_of(&bytes), bytes.len());
        let referrer = manifest::referrer_manifest(
            &blob,
            &descriptor(
                &subject.media_type,
                subject.digest.clone(),
                subject.content.len(),
            ),
            created,
        );
        let referrer_digest = Digest::sha256_of(&referrer);
        if self
            .meta
            .manifest_by_digest(name.as_str(), &referrer_digest)
            .await?
            .is_some()
        {
            return Ok(());
        }
        let empty = Digest::sha256_of(manifest::EMPTY_CONFIG);
        for (digest, bytes) in [
            (&empty, manifest::EMPTY_CONFIG.to_vec()),
            (&blob.digest, bytes),
        ] {
            let body = futures::stream::once(async move { Ok(bytes::Bytes::from(bytes)) });
            self.upload_monolithic(name, digest, Box::pin(body)).await?;
        }
        self.put_manifest(
            name,
            &Reference::Digest(referrer_digest),
            Some(OCI_MANIFEST),
            &referrer,
            SCANNER_ACTOR,
        )
        .await?;
        Ok(())
    }

    /// Records that the scan of `digest` failed, with why.
    async fn record_failed_scan(
        &self,
        repository: &str,
        digest: &Digest,
        error: &str,
    ) -> Result<()> {
        let generation = self.meta.vulndb_generation().await?;
        self.meta
            .put_scan_result(
                &ScanRecord {
                    digest: digest.clone(),
                    repository: repository.to_string(),
                    status: FAILED.to_string(),
                    generation,
                    scanned_ms: gantry_meta::now_ms(),
                    report: json!({ "error": error }).to_string(),
                },
                None,
            )
            .await?;
        Ok(())
    }

    /// Enqueues a scan of every image whose latest scan was matched against an older
    /// database than the current one (after an import), a batch per call, once per image and
    /// generation; returns how many jobs were added.
    pub async fn enqueue_rescans(&self) -> Result<usize> {
        let generation = self.meta.vulndb_generation().await?;
        let mut added = 0;
        for (repository, digest) in self.meta.stale_scans(generation, BATCH).await? {
            let digest = digest.to_string();
            let job = scan_job(
                &repository,
                &digest,
                Some(push_scan_key(&digest, generation)),
            );
            added += usize::from(self.meta.enqueue_job(&job).await?.is_some());
        }
        if added > 0 {
            self.wake_jobs();
        }
        Ok(added)
    }

    /// The packages of an image whose layers are `layers`.
    async fn inventory_of(&self, layers: Vec<gantry_oci::Descriptor>) -> Result<Inventory> {
        let inputs = layers.into_iter().map(|layer| (layer, None)).collect();
        self.walk_layers(inputs, gantry_scanner::inventory).await
    }

    /// Runs `work` on a blocking thread over `layers` (with what made each) as the layer
    /// walker's inputs, each layer's blob opened only when the walker reaches it and read as a
    /// stream.
    pub(crate) async fn walk_layers<T: Send + 'static>(
        &self,
        layers: Vec<(gantry_oci::Descriptor, Option<String>)>,
        work: impl FnOnce(
                Box<dyn Iterator<Item = gantry_inspect::walk::LayerInput<Box<dyn io::Read + Send>>>>,
            ) -> io::Result<T>
            + Send
            + 'static,
    ) -> Result<T> {
        let blobs = self.blobs.clone();
        let handle = tokio::runtime::Handle::current();
        let walked = tokio::task::spawn_blocking(move || {
            let inputs = layers.into_iter().map(move |(layer, created_by)| {
                let opened = handle.block_on(blobs.read(&layer.digest, 0..layer.size));
                let blob: Box<dyn io::Read + Send> = match opened {
                    Ok(stream) => Box::new(SyncIoBridge::new_with_handle(
                        StreamReader::new(stream),
                        handle.clone(),
                    )),
                    Err(e) => Box::new(FailingReader(Some(io::Error::other(e.to_string())))),
                };
                gantry_inspect::walk::LayerInput {
                    digest: layer.digest.to_string(),
                    media_type: layer.media_type,
                    compressed: layer.size,
                    created_by,
                    blob,
                }
            });
            work(Box::new(inputs))
        })
        .await
        .map_err(|e| RegistryError::Body(io::Error::other(e.to_string())))?;
        walked.map_err(RegistryError::Body)
    }

    /// The SBOM of an image of `reference` (for an index, the child for `platform`, e.g.
    /// `linux/amd64`), from its latest scan's package list: the document and its media type.
    ///
    /// Errors: `PlatformInvalid` when an index's platform is missing or unknown; `NotScanned`
    /// when the image has no successful scan yet.
    pub async fn sbom(
        &self,
        name: &RepositoryName,
        reference: &Reference,
        platform: Option<&str>,
        format: SbomFormat,
    ) -> Result<(&'static str, Value)> {
        let scan = self.artifact_scan(name, reference).await?;
        let image = image_for_platform(&scan.images, |i| i.platform.as_deref(), platform)?;
        let report = image.report.as_ref().ok_or_else(|| {
            RegistryError::NotScanned(format!(
                "image {} has no scan yet ({}); its SBOM is made from its scan: POST …/scan and try again",
                image.digest, image.status
            ))
        })?;
        let inventory = Inventory {
            distribution: report.distribution.clone(),
            packages: report.packages.clone(),
            binaries: report.binaries.clone(),
        };
        let created = self.image_created(name, &image.digest.parse()?).await?;
        let subject = sbom::Subject {
            name: name.as_str(),
            digest: &image.digest,
            created: &created,
        };
        Ok(sbom_document(&inventory, subject, format))
    }

    /// When an image was created, as its config says (RFC 3339); the Unix epoch when it does
    /// not say, so that documents made from it stay the same.
    async fn image_created(&self, name: &RepositoryName, digest: &Digest) -> Result<String> {
        const EPOCH: &str = "1970-01-01T00:00:00Z";
        let stored = self
            .get_manifest(name, &Reference::Digest(digest.clone()))
            .await?;
        let parsed = manifest::parse(&stored.content, Some(&stored.media_type))?;
        let Some(config) = parsed
            .config
            .filter(|c| c.size <= manifest::MAX_MANIFEST_BYTES as u64)
        else {
            return Ok(EPOCH.to_string());
        };
        let bytes = self.blob_bytes(&config.digest, config.size).await?;
        let config: Value = serde_json::from_slice(&bytes).unwrap_or_default();
        Ok(config["created"].as_str().unwrap_or(EPOCH).to_string())
    }

    pub(crate) fn scan_handler(self: &Arc<Registry>) -> Arc<dyn JobHandler> {
        Arc::new(ScanJob(self.clone()))
    }
}

/// The image of an artifact for `platform` (e.g. `linux/amd64`): the only image when none is
/// asked for, the index's image of that platform when one is. Errors: `PlatformInvalid` for an
/// index without a platform asked for, or a platform it does not have (naming those it has).
pub(crate) fn image_for_platform<'a, T>(
    images: &'a [T],
    platform_of: impl Fn(&T) -> Option<&str>,
    wanted: Option<&str>,
) -> Result<&'a T> {
    let platforms = || {
        images
            .iter()
            .filter_map(&platform_of)
            .collect::<Vec<_>>()
            .join(", ")
    };
    match (wanted, images) {
        (None, [only]) => Ok(only),
        (None, _) => Err(RegistryError::PlatformInvalid(format!(
            "the artifact is an index; choose one of its platforms with ?platform=: {}",
            platforms()
        ))),
        (Some(wanted), images) => images
            .iter()
            .find(|i| platform_of(i) == Some(wanted))
            .ok_or_else(|| {
                RegistryError::PlatformInvalid(format!(
                    "the artifact has no {wanted} image; its platforms: {}",
                    platforms()
                ))
            }),
    }
}

/// The `artifact.scanned` event of a scan that found `report` (none for what is not an
/// image, which raises none): its summary, and the vulnerabilities the image's previous scan
/// did not have (after a database import: the newly affected), so a receiver needs no second
/// request.
fn scanned_event(
    repository: &str,
    digest: &Digest,
    generation: i64,
    report: Option<&ScanReport>,
    previous: Option<&ScanReport>,
) -> Option<NewEvent> {
    let report = report?;
    let known: Vec<&str> = previous
        .map(|p| p.vulnerabilities.iter().map(|f| f.id.as_str()).collect())
        .unwrap_or_default();
    let new: Vec<Value> = report
        .vulnerabilities
        .iter()
        .filter(|f| !known.contains(&f.id.as_str()))
        .map(|f| {
            json!({
                "id": f.id,
                "aliases": f.aliases,
                "package": f.package,
                "version": f.version,
                "fixed_version": f.fixed_version,
                "severity": f.severity,
                "reachable": f.reachable,
            })
        })
        .collect();
    Some(NewEvent::in_repository(
        "artifact.scanned",
        repository,
        json!({
            "repository": repository,
            "digest": digest,
            "database_generation": generation,
            "summary": report.summary,
            "first_scan": previous.is_none(),
            "new_vulnerabilities": new,
        }),
    ))
}

/// The SBOM formats: SPDX 2.3 JSON (the default) and CycloneDX 1.5 JSON.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum SbomFormat {
    #[default]
    Spdx,
    Cyclonedx,
}

/// The SBOM of `subject` in `format`, and its media type.
fn sbom_document(
    inventory: &Inventory,
    subject: sbom::Subject<'_>,
    format: SbomFormat,
) -> (&'static str, Value) {
    match format {
        SbomFormat::Spdx => (sbom::SPDX_MEDIA_TYPE, sbom::spdx(inventory, subject)),
        SbomFormat::Cyclonedx => (
            sbom::CYCLONEDX_MEDIA_TYPE,
            sbom::cyclonedx(inventory, subject),
        ),
    }
}

/// The advisories `meta` holds for the packages of `inventory` (each under its source name
/// and every name it replaces), merged as the matcher takes them: what a scan of the
/// inventory is matched against, in the registry and in `gantry scan --db`.
pub async fn known_advisories(
    meta: &MetaStore,
    inventory: &Inventory,
) -> std::result::Result<Vec<KnownAdvisory>, gantry_meta::MetaError> {
    let keys = package_keys(inventory);
    let keys: Vec<(&str, &str)> = keys.iter().map(|(e, n)| (e.as_str(), n.as_str())).collect();
    Ok(meta
        .advisories_for(&keys)
        .await?
        .into_iter()
        .map(|stored| KnownAdvisory {
            advisory: stored.advisory,
            aliases: stored.aliases,
            severity: stored.severity,
        })
        .collect())
}

/// The (ecosystem, name) pairs whose advisories an inventory needs.
fn package_keys(inventory: &Inventory) -> Vec<(String, String)> {
    let mut keys: Vec<(String, String)> = inventory
        .packages
        .iter()
        .filter_map(|p| {
            let ecosystem = p.ecosystem.clone()?;
            Some(
                std::iter::once(p.source_name.clone())
                    .chain(p.replaces.clone())
                    .map(move |name| (ecosystem.clone(), name)),
            )
        })
        .flatten()
        .collect();
    keys.sort();
    keys.dedup();
    keys
}

/// A reader that fails with the error that kept its blob from opening.
struct FailingReader(Option<io::Error>);

impl io::Read for FailingReader {
    fn read(&mut self, _: &mut [u8]) -> io::Result<usize> {
        Err(self
            .0
            .take()
            .unwrap_or_else(|| io::Error::other("the layer could not be opened")))
    }
}

struct ScanJob(Arc<Registry>);

#[async_trait::async_trait]
impl JobHandler for ScanJob {
    fn kind(&self) -> &'static str {
        SCAN
    }

    async fn run(
        &self,
        job: &JobRecord,
        progress: &Progress,
    ) -> std::result::Result<Value, JobError> {
        let payload: ScanPayload = serde_json::from_str(&job.payload)
            .map_err(|e| JobError::permanent(format!("unreadable scan job payload: {e}")))?;
        let digest: Digest = payload
            .digest
            .parse()
            .map_err(|e| JobError::permanent(format!("scan job digest: {e}")))?;
        progress.report("reading layers").await;
        match self.0.scan_image(&payload.repository, &digest).await {
            Ok(status) => Ok(json!({ "digest": payload.digest, "status": status })),
            // Deleted since it was pushed: nothing to scan, nothing to record.
            Err(RegistryError::ManifestUnknown(_) | RegistryError::NameUnknown(_)) => {
                Ok(json!({ "digest": payload.digest, "status": "gone" }))
            }
            Err(e) => {
                let last_attempt = job.attempts >= job.max_attempts;
                if last_attempt {
                    self.0
                        .record_failed_scan(&payload.repository, &digest, &e.to_string())
                        .await
                        .map_err(|e| JobError::transient(e.to_string()))?;
                }
                Err(JobError::transient(e.to_string()))
            }
        }
    }
}
