//! Archiving artifacts out of the registry and restoring them. Each archived artifact (a
//! tagged manifest, its index children, its signatures and SBOMs, and every blob they use)
//! becomes one OCI image layout tarball in the archive location, written as a stream: the
//! layout's `index.json` names the tags (`org.opencontainers.image.ref.name`), manifests
//! come before the blobs, parents before children, so a restore can stream it back in one
//! pass. Only once the tarball is complete and durable are the manifests deleted (their
//! blobs then go with the next garbage collection). A restore verifies every digest and puts
//! the exact bytes back through the normal push path (tag rules and quotas apply).

use std::collections::{HashMap, HashSet, VecDeque};

use futures::StreamExt;
use gantry_lifecycle::archive::{self as selection, ArchiveSelector, Passed, Selected};
use gantry_meta::ArchiveRecord;
use gantry_metrics::Job;
use gantry_oci::manifest::{self, MAX_MANIFEST_BYTES};
use gantry_oci::{media_type, Digest, Hasher, Reference, RepositoryName};
use gantry_storage::{ArchiveLocation, ArchiveWriter};
use serde::Serialize;
use serde_json::{json, Value};

use crate::tarball::{self, TarReader};
use crate::{parse_name, Registry, RegistryError, Result, FOREIGN_LAYERS};

const REF_NAME: &str = "org.opencontainers.image.ref.name";
const REPOSITORY_ANNOTATION: &str = "io.gantry.archive.repository";
const OCI_LAYOUT: &[u8] = br#"{"imageLayoutVersion":"1.0.0"}"#;

#[derive(Debug, Clone, Serialize)]
pub struct ArchivedArtifact {
    /// The archive's id (to restore it), `None` in a dry run.
    pub id: Option<i64>,
    #[serde(flatten)]
    pub artifact: Selected,
    pub object_key: String,
    /// Bytes of the manifests and blobs it holds (the tarball is slightly larger).
    pub bytes: u64,
}

#[derive(Debug, Clone, Serialize)]
pub struct ArchiveReport {
    pub dry_run: bool,
    pub location: String,
    pub archived: Vec<ArchivedArtifact>,
    /// Artifacts the selector matched in part that stay, with the reason.
    pub passed: Vec<Passed>,
}

#[derive(Debug, Clone, Serialize)]
pub struct RestoreReport {
    pub id: i64,
    pub repository: String,
    pub digest: String,
    pub tags: Vec<String>,
    pub manifests: usize,
    pub blobs: usize,
    pub bytes: u64,
}

/// What one artifact's tarball holds, manifests parent-first.
struct Bundle {
    manifests: Vec<(Digest, String, Vec<u8>)>,
    blobs: Vec<(Digest, u64)>,
    /// The referrer tags (`sha256-<hex>.sig` and the like) of the referrers.
    referrer_tags: Vec<(Digest, String)>,
}

impl Bundle {
    fn bytes(&self) -> u64 {
        self.manifests
            .iter()
            .map(|(_, _, m)| m.len() as u64)
            .chain(self.blobs.iter().map(|(_, size)| *size))
            .sum()
    }
}

fn invalid(what: String) -> RegistryError {
    RegistryError::ArchiveInvalid(what)
}

fn blob_path(digest: &Digest) -> String {
    format!("blobs/{}/{}", digest.algorithm().as_str(), digest.hex())
}

impl Registry {
    fn archive_location(&self) -> Result<&ArchiveLocation> {
        self.archive
            .as_ref()
            .ok_or_else(|| invalid("no archive location is configured".into()))
    }

    /// Archives what `selector` picks in `project` at `now` (or, in a dry run, reports it).
    pub async fn archive(
        &self,
        project: &str,
        selector: &ArchiveSelector,
        actor: &str,
        now: i64,
        dry_run: bool,
    ) -> Result<ArchiveReport> {
        // Archiving moves bytes out; garbage collection is what frees them here.
        let run = self.select_and_archive(project, selector, actor, now, dry_run);
        self.timed_job(Job::Archive, |_| 0, run).await
    }

    async fn select_and_archive(
        &self,
        project: &str,
        selector: &ArchiveSelector,
        actor: &str,
        now: i64,
        dry_run: bool,
    ) -> Result<ArchiveReport> {
        let location = self.archive_location()?;
        // Pulls counted in memory must be seen by "not pulled for" selectors.
        self.flush_pulls().await?;
        // cosign's `.sig` (and the like) go with the image they name, under their tags.
        let artifacts =
            crate::retention::tag_scheme_as_referrers(self.project_artifacts(project).await?);
        let chosen = selection::select(selector, &artifacts, now);
        let mut report = ArchiveReport {
            dry_run,
            location: location.describe().to_string(),
            archived: Vec::new(),
            passed: chosen.passed,
        };
        for artifact in chosen.archive {
            let name = parse_name(&artifact.repository)?;
            let bundle = self.bundle(&name, &artifact).await?;
            let object_key = format!(
                "{}/{}-{}.tar",
                artifact.repository,
                artifact.digest.replace(':', "-"),
                now
            );
            let mut archived = ArchivedArtifact {
                id: None,
                bytes: bundle.bytes(),
                artifact,
                object_key,
            };
            if !dry_run {
                match self
                    .archive_one(location, &name, &archived, &bundle, actor, now)
                    .await?
                {
                    Some(id) => archived.id = Some(id),
                    None => {
                        report.passed.push(Passed {
                            repository: archived.artifact.repository,
                            digest: archived.artifact.digest,
                            reason: "its tags changed while it was being archived".into(),
                        });
                        continue;
                    }
                }
            }
            report.archived.push(archived);
        }
        Ok(report)
    }

    /// Collects the manifests (the artifact, its referrers, index children) and blobs.
    async fn bundle(&self, name: &RepositoryName, artifact: &Selected) -> Result<Bundle> {
        let mut queue: VecDeque<Digest> = std::iter::once(&artifact.digest)
            .chain(&artifact.referrers)
            .map(|d| d.parse())
            .collect::<std::result::Result<_, _>>()?;
        let mut seen = HashSet::new();
        let mut blobs_seen = HashSet::new();
        let mut bundle = Bundle {
            manifests: Vec::new(),
            blobs: Vec::new(),
            referrer_tags: Vec::new(),
        };
        while let Some(digest) = queue.pop_front() {
            if !seen.insert(digest.clone()) {
                continue;
            }
            let stored = self
                .meta
                .manifest_by_digest(name.as_str(), &digest)
                .await?
                .ok_or_else(|| RegistryError::ManifestUnknown(digest.to_string()))?;
            let parsed = manifest::parse(&stored.content, Some(&stored.media_type))?;
            let blobs = parsed.config.iter().chain(
                parsed
                    .layers
                    .iter()
                    .filter(|l| !FOREIGN_LAYERS.contains(&l.media_type.as_str())),
            );
            for blob in blobs {
                if blobs_seen.insert(blob.digest.clone()) {
                    let size = self.stat_blob(name, &blob.digest).await?;
                    bundle.blobs.push((blob.digest.clone(), size));
                }
            }
            queue.extend(parsed.manifests.iter().map(|m| m.digest.clone()));
            if artifact.referrers.contains(&digest.to_string()) {
                for tag in self.meta.tags_of(name.as_str(), &digest).await? {
                    if gantry_signing::cosign::tag_subject(&tag).is_some() {
                        bundle.referrer_tags.push((digest.clone(), tag));
                    }
                }
            }
            bundle
                .manifests
                .push((digest, stored.media_type, stored.content));
        }
        Ok(bundle)
    }

    /// The layout's `index.json`: the artifact once per tag, then its referrers (a referrer
    /// under a referrer tag, as cosign's `.sig`, once per such tag).
    fn layout_index(artifact: &Selected, bundle: &Bundle) -> Vec<u8> {
        let descriptor = |(digest, media_type, content): &(Digest, String, Vec<u8>)| json!({"mediaType": media_type, "digest": digest.to_string(), "size": content.len()});
        let top = &bundle.manifests[0];
        let mut entries: Vec<Value> = artifact
            .tags
            .iter()
            .map(|tag| {
                let mut d = descriptor(top);
                d["annotations"] = json!({ REF_NAME: tag });
                d
            })
            .collect();
        for manifest in &bundle.manifests {
            if !artifact.referrers.contains(&manifest.0.to_string()) {
                continue;
            }
            let tags: Vec<&String> = bundle
                .referrer_tags
                .iter()
                .filter(|(digest, _)| *digest == manifest.0)
                .map(|(_, tag)| tag)
                .collect();
            if tags.is_empty() {
                entries.push(descriptor(manifest));
            }
            for tag in tags {
                let mut d = descriptor(manifest);
                d["annotations"] = json!({ REF_NAME: tag });
                entries.push(d);
            }
        }
        serde_json::to_vec(&json!({
            "schemaVersion": 2,
            "mediaType": media_type::OCI_INDEX,
            "manifests": entries,
            "annotations": { REPOSITORY_ANNOTATION: artifact.repository },
        }))
        .expect("index serializes")
    }

    /// Writes one artifact's tarball, records it and deletes the artifact's manifests.
    /// `None` when its tags moved meanwhile (then nothing is deleted or kept).
    async fn archive_one(
        &self,
        location: &ArchiveLocation,
        name: &RepositoryName,
        archived: &ArchivedArtifact,
        bundle: &Bundle,
        actor: &str,
        now: i64,
    ) -> Result<Option<i64>> {
        let artifact = &archived.artifact;
        let mut writer = location.create(&archived.object_key).await?;
        if let Err(e) = self
            .write_tarball(&mut writer, &Self::layout_index(artifact, bundle), bundle)
            .await
        {
            writer.abort().await;
            return Err(e);
        }
        writer.finish().await?;
        let digest: Digest = artifact.digest.parse()?;
        if self.meta.tags_of(name.as_str(), &digest).await? != artifact.tags {
            location.delete(&archived.object_key).await?;
            return Ok(None);
        }
        let id = self
            .meta
            .record_archive(&ArchiveRecord {
                id: 0,
                project: name.project().to_string(),
                repository: artifact.repository.clone(),
                digest: artifact.digest.clone(),
                tags: artifact.tags.clone(),
                object_key: archived.object_key.clone(),
                bytes: archived.bytes as i64,
                archived_at: now,
                archived_by: actor.to_string(),
                restored_at: None,
            })
            .await?;
        let manifests: Vec<(String, String)> = std::iter::once(&artifact.digest)
            .chain(&artifact.referrers)
            .map(|d| (artifact.repository.clone(), d.clone()))
            .collect();
        self.meta.delete_manifests(&manifests, actor).await?;
        Ok(Some(id))
    }

    async fn write_tarball(
        &self,
        writer: &mut ArchiveWriter,
        index: &[u8],
        bundle: &Bundle,
    ) -> Result<()> {
        let small_files = [
            ("oci-layout".to_string(), OCI_LAYOUT),
            ("index.json".to_string(), index),
        ]
        .into_iter()
        .chain(
            bundle
                .manifests
                .iter()
                .map(|(digest, _, content)| (blob_path(digest), content.as_slice())),
        );
        for (path, content) in small_files {
            writer
                .write(&tarball::file_header(&path, content.len() as u64)?)
                .await?;
            writer.write(content).await?;
            writer
                .write(&tarball::END[..tarball::padding(content.len() as u64)])
                .await?;
        }
        for (digest, size) in &bundle.blobs {
            writer
                .write(&tarball::file_header(&blob_path(digest), *size)?)
                .await?;
            let mut stream = self.blobs.read(digest, 0..*size).await?;
            let mut copied = 0;
            while let Some(chunk) = stream.next().await {
                let chunk = chunk.map_err(gantry_storage::StorageError::Io)?;
                copied += chunk.len() as u64;
                writer.write(&chunk).await?;
            }
            if copied != *size {
                return Err(invalid(format!(
                    "blob {digest} has {copied} bytes in storage, {size} recorded"
                )));
            }
            writer
                .write(&tarball::END[..tarball::padding(*size)])
                .await?;
        }
        writer.write(&tarball::END).await?;
        Ok(())
    }

    /// A project's archives, newest first.
    pub async fn archives(&self, project: &str) -> Result<Vec<ArchiveRecord>> {
        Ok(self.meta.archives(project).await?)
    }

    /// Deletes archive `id` of `project` for good: its tarball, then its record.
    pub async fn delete_archive(&self, project: &str, id: i64) -> Result<ArchiveRecord> {
        let record = self.archive_record(project, id).await?;
        match self.archive_location()?.delete(&record.object_key).await {
            Ok(()) | Err(gantry_storage::StorageError::NotFound) => {}
            Err(e) => return Err(e.into()),
        }
        self.meta.delete_archive(id).await?;
        Ok(record)
    }

    async fn archive_record(&self, project: &str, id: i64) -> Result<ArchiveRecord> {
        self.meta
            .archive(id)
            .await?
            .filter(|r| r.project == project)
            .ok_or(RegistryError::ArchiveUnknown(id))
    }

    /// Brings archive `id` of `project` back: blobs, then manifests children-first, then tags.
    pub async fn restore(
        &self,
        project: &str,
        id: i64,
        now: i64,
        actor: &str,
    ) -> Result<RestoreReport> {
        let record = self.archive_record(project, id).await?;
        let name = parse_name(&record.repository)?;
        let stream = self.archive_location()?.read(&record.object_key).await?;
        let mut reader = TarReader::new(tokio_util::io::StreamReader::new(stream));
        let mut report = RestoreReport {
            id,
            repository: record.repository.clone(),
            digest: record.digest.clone(),
            tags: Vec::new(),
            manifests: 0,
            blobs: 0,
            bytes: 0,
        };
        // Manifests named so far (by index.json or an index), with the media type their
        // descriptor gives: a manifest need not carry its own `mediaType`.
        let mut expected: HashMap<Digest, String> = HashMap::new();
        let mut tags: HashMap<Digest, Vec<String>> = HashMap::new();
        let mut manifests: Vec<(Digest, String, Vec<u8>)> = Vec::new();
        let mut index_seen = false;
        while let Some(entry) = reader.next_entry().await? {
            if entry.is_dir || entry.path == "oci-layout" {
                continue;
            }
            if entry.path == "index.json" {
                let index = reader
                    .read_to_end(&entry, MAX_MANIFEST_BYTES as u64)
                    .await?;
                let index = manifest::parse(&index, Some(media_type::OCI_INDEX))?;
                for m in &index.manifests {
                    expected.insert(m.digest.clone(), m.media_type.clone());
                    let tag = m.annotations.as_ref().and_then(|a| a.get(REF_NAME));
                    if let Some(Value::String(tag)) = tag {
                        if m.digest.to_string() == record.digest {
                            report.tags.push(tag.clone());
                        }
                        tags.entry(m.digest.clone()).or_default().push(tag.clone());
                    }
                }
                index_seen = true;
                continue;
            }
            let Some(digest) = entry
                .path
                .strip_prefix("blobs/")
                .and_then(|p| p.split_once('/'))
                .and_then(|(alg, hex)| format!("{alg}:{hex}").parse::<Digest>().ok())
            else {
                return Err(invalid(format!("unexpected entry {:?}", entry.path)));
            };
            if !index_seen {
                return Err(invalid(
                    "index.json must come before the blobs (was it written by gantry archive?)"
                        .into(),
                ));
            }
            report.bytes += entry.size;
            if let Some(media_type) = expected.get(&digest).cloned() {
                let content = reader
                    .read_to_end(&entry, MAX_MANIFEST_BYTES as u64)
                    .await?;
                if Digest::of(digest.algorithm(), &content) != digest {
                    return Err(invalid(format!(
                        "manifest {digest} does not match its digest"
                    )));
                }
                let parsed = manifest::parse(&content, Some(&media_type))?;
                expected.extend(
                    parsed
                        .manifests
                        .iter()
                        .map(|m| (m.digest.clone(), m.media_type.clone())),
                );
                manifests.push((digest, media_type, content));
            } else {
                self.restore_blob(&name, &digest, &mut reader).await?;
                report.blobs += 1;
            }
        }
        let missing: Vec<String> = expected
            .keys()
            .filter(|d| !manifests.iter().any(|(m, _, _)| m == *d))
            .map(|d| d.to_string())
            .collect();
        if !index_seen || !missing.is_empty() {
            return Err(invalid(format!(
                "the archive lacks index.json or manifests {missing:?}"
            )));
        }
        // Children before the indexes that name them; the artifact under each of its tags,
        // a referrer under its referrer tags.
        for (digest, media_type, content) in manifests.iter().rev() {
            let references: Vec<Reference> = tags
                .get(digest)
                .into_iter()
                .flatten()
                .map(|t| crate::parse_reference(t))
                .collect::<Result<_>>()?;
            let references = if references.is_empty() {
                vec![Reference::Digest(digest.clone())]
            } else {
                references
            };
            for reference in &references {
                self.put_manifest(&name, reference, Some(media_type), content, actor)
                    .await?;
            }
            report.manifests += 1;
        }
        self.meta.mark_restored(id, now, actor).await?;
        Ok(report)
    }

    /// Streams one blob entry into storage (unless the repository holds it already) and links
    /// it, verifying its digest.
    async fn restore_blob<R>(
        &self,
        name: &RepositoryName,
        digest: &Digest,
        reader: &mut TarReader<R>,
    ) -> Result<()>
    where
        R: tokio::io::AsyncRead + Unpin,
    {
        if self
            .meta
            .blob_in_repository(name.as_str(), digest)
            .await?
            .is_some()
        {
            return Ok(()); // the rest of the entry is skipped by the next read
        }
        let id = uuid::Uuid::new_v4().to_string();
        self.blobs.create_upload(&id).await?;
        let copied = async {
            let mut writer = self.blobs.append_upload(&id).await?;
            let mut hasher = Hasher::new(digest.algorithm());
            let mut buf = vec![0u8; 256 * 1024];
            loop {
                let n = reader.read(&mut buf).await?;
                if n == 0 {
                    break;
                }
                hasher.update(&buf[..n]);
                writer
                    .write(vec![bytes::Bytes::copy_from_slice(&buf[..n])])
                    .await?;
            }
            let size = writer.finish().await?;
            let actual = hasher.finish();
            if actual != *digest {
                return Err(RegistryError::DigestMismatch {
                    expected: digest.clone(),
                    actual,
                });
            }
            Ok(size)
        }
        .await;
        match copied {
            Ok(size) => {
                self.commit_and_link(
                    name,
                    &id,
                    digest,
                    self.meta.link_blob(name.as_str(), digest, size),
                )
                .await
            }
            Err(e) => {
                let _ = self.blobs.delete_upload(&id).await;
                Err(e)
            }
        }
    }
}
