//! Browsing what is stored: a project's repositories and a repository's artifacts, a sorted
//! page at a time, as the REST API and the web UI show them. The figures and what counts as
//! a top-level artifact are defined in `gantry_meta`'s browse module; this adds the page
//! tokens and the platforms of indexes.

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use std::collections::HashMap;
use std::sync::Arc;

use futures::{StreamExt, TryStreamExt};
use gantry_meta::{ArtifactSummary, BrowsePage, Quota, RepositorySummary, ScanRecord};
use gantry_oci::manifest;
use gantry_oci::{media_type, Digest, Reference, RepositoryName};
use gantry_scanner::report::Summary;
use gantry_signing::sources::{self, Located};
use gantry_signing::Verdict;
use serde::{Deserialize, Serialize};

pub use gantry_meta::BrowseSort;

use crate::scan::{NOT_AN_IMAGE, SCANNED};
use crate::signing::{is_signable, RepositorySignatures, TrustPolicy};
use crate::{Registry, RegistryError, Result};

/// At most this many rows per page; also the default.
pub const BROWSE_MAX_PAGE: u32 = 1000;
/// Rows per page when the caller names no limit.
pub const BROWSE_DEFAULT_PAGE: u32 = 100;

/// How to page: sort key, direction, page size and the token of the page to fetch.
#[derive(Debug, Clone)]
pub struct BrowseOptions {
    pub sort: BrowseSort,
    pub descending: bool,
    /// 1..=[`BROWSE_MAX_PAGE`].
    pub limit: u32,
    /// The `next` token of the page before; `None` for the first page.
    pub page: Option<String>,
}

/// One page and the token of the next (`None` on the last page).
#[derive(Debug, Clone, Serialize)]
pub struct Browsed<T> {
    pub items: Vec<T>,
    pub next: Option<String>,
}

/// A repository as the API shows it. Times are Unix seconds.
#[derive(Debug, Clone, Serialize)]
pub struct RepositoryView {
    /// The full name, project included (`team/app`).
    pub name: String,
    /// Top-level artifacts: referrers and untagged index children are not counted.
    pub artifacts: i64,
    /// Manifests plus distinct blobs: a blob shared by several artifacts counts once.
    pub size_bytes: i64,
    pub last_pushed_at: Option<i64>,
    pub last_pulled_at: Option<i64>,
    /// Manifest pulls (GET) of its artifacts, children and referrers.
    pub pulls: i64,
}

/// A project's figures for the project list: its usage against its quota, and its
/// repositories. Times are Unix seconds.
#[derive(Debug, Clone)]
pub struct ProjectFigures {
    pub quota: Quota,
    pub repositories: i64,
    /// The latest manifest push or tag move in the project; `None` when nothing was pushed.
    pub last_pushed_at: Option<i64>,
}

/// One platform of an index: an entry with a `platform`.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct PlatformView {
    pub os: String,
    pub architecture: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub variant: Option<String>,
    /// The platform's manifest.
    pub digest: String,
}

/// A manifest that names the artifact as its subject (a signature, an SBOM), or that a
/// referrer tag names it by (cosign's `.sig`, `.att`, `.sbom`, the referrers fallback index).
#[derive(Debug, Clone, Serialize)]
pub struct ReferrerView {
    pub digest: String,
    pub media_type: String,
    pub artifact_type: Option<String>,
    pub pushed_at: i64,
    /// The referrer tag (`sha256-<hex>.sig`, …); `null` for a referrer by subject.
    pub tag: Option<String>,
}

/// Whether an image or index is signed, as its project's signing policy judges it.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct SignatureView {
    /// `trusted` (a key the project trusts signed this digest), `untrusted` (signatures, none
    /// valid by a trusted key, or the project trusts no key), `other_digest` (a trusted
    /// key's signature names another digest) or `unsigned`.
    pub state: &'static str,
    /// The trusted key's fingerprint (`sha256:<hex>` of its SubjectPublicKeyInfo, as
    /// `gantry signing-policy show` lists it), when trusted.
    pub key: Option<String>,
    /// When the trusted signature was pushed (Unix seconds), when trusted.
    pub signed_at: Option<i64>,
}

/// An artifact as the API shows it. Times are Unix seconds.
#[derive(Debug, Clone, Serialize)]
pub struct ArtifactView {
    pub digest: String,
    pub media_type: String,
    /// `artifactType`, else the config's media type; `null` for an index without one.
    pub artifact_type: Option<String>,
    /// Sorted.
    pub tags: Vec<String>,
    /// Manifest, config and layers; for an index, the index, its children's manifests and
    /// their distinct blobs.
    pub size_bytes: i64,
    /// The platforms an index lists, in its order; empty for an image.
    pub platforms: Vec<PlatformView>,
    pub pushed_at: i64,
    pub last_pulled_at: Option<i64>,
    /// Pulls (GET) of this manifest.
    pub pulls: i64,
    /// Oldest first.
    pub referrers: Vec<ReferrerView>,
    /// `null` for what a signing policy does not check (signatures, SBOMs, other artifacts).
    pub signature: Option<SignatureView>,
    /// `null` for what holds no image the scanner reads (signatures, SBOMs, other artifacts).
    pub vulnerabilities: Option<VulnerabilityView>,
}

/// An artifact's vulnerabilities by severity, added up over the latest scans of its images
/// (itself, or an index's platform images), as the scan API reports them one by one.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct VulnerabilityView {
    /// Images of the artifact (those scanned as not an image left out).
    pub images: usize,
    /// Of `images`, those with a finished scan; the counts are theirs.
    pub scanned: usize,
    #[serde(flatten)]
    pub counts: Summary,
}

impl From<RepositorySummary> for RepositoryView {
    fn from(r: RepositorySummary) -> Self {
        RepositoryView {
            name: r.name,
            artifacts: r.artifacts,
            size_bytes: r.size,
            last_pushed_at: r.last_pushed_at_us.map(seconds),
            last_pulled_at: r.last_pulled_at,
            pulls: r.pulls,
        }
    }
}

impl ArtifactView {
    fn new(a: ArtifactSummary, signature: Option<SignatureView>) -> Self {
        let is_index = matches!(
            a.media_type.as_str(),
            media_type::OCI_INDEX | media_type::DOCKER_MANIFEST_LIST
        );
        ArtifactView {
            platforms: if is_index {
                platforms_of(&a.content)
            } else {
                Vec::new()
            },
            digest: a.digest,
            media_type: a.media_type,
            artifact_type: a.artifact_type,
            tags: a.tags,
            size_bytes: a.size,
            pushed_at: seconds(a.pushed_at_us),
            last_pulled_at: a.last_pulled_at,
            pulls: a.pulls,
            referrers: a
                .referrers
                .into_iter()
                .map(|r| ReferrerView {
                    digest: r.digest,
                    media_type: r.media_type,
                    artifact_type: r.artifact_type,
                    pushed_at: seconds(r.pushed_at_us),
                    tag: r.tag,
                })
                .collect(),
            signature,
            vulnerabilities: None,
        }
    }

    /// The manifests the scanner may read for this artifact: an index's platform images, or
    /// the artifact itself when its config is an image's; none for other artifacts.
    fn image_digests(&self) -> Vec<Digest> {
        let candidates: Vec<&str> = if !self.platforms.is_empty() {
            self.platforms.iter().map(|p| p.digest.as_str()).collect()
        } else if matches!(
            self.artifact_type.as_deref(),
            Some(media_type::OCI_CONFIG | media_type::DOCKER_CONFIG)
        ) {
            vec![self.digest.as_str()]
        } else {
            Vec::new()
        };
        candidates
            .into_iter()
            .filter_map(|d| d.parse().ok())
            .collect()
    }
}

fn seconds(us: i64) -> i64 {
    us.div_euclid(1_000_000)
}

/// The platforms of an index's entries (entries without a `platform` are left out).
fn platforms_of(index: &[u8]) -> Vec<PlatformView> {
    let Ok(index) = serde_json::from_slice::<serde_json::Value>(index) else {
        return Vec::new();
    };
    let text = |v: &serde_json::Value| v.as_str().map(str::to_string);
    index["manifests"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|entry| {
            let platform = &entry["platform"];
            Some(PlatformView {
                os: text(&platform["os"])?,
                architecture: text(&platform["architecture"])?,
                variant: text(&platform["variant"]),
                digest: text(&entry["digest"])?,
            })
        })
        .collect()
}

fn sort_name(sort: BrowseSort) -> &'static str {
    match sort {
        BrowseSort::Name => "name",
        BrowseSort::Pushed => "pushed",
        BrowseSort::Pulled => "pulled",
        BrowseSort::Size => "size",
    }
}

/// A page token: where the page before ended, under which sort. Opaque to callers
/// (base64url of `sort.order.key.name`); a token of another sort or order is refused.
fn token(options: &BrowseOptions, key: i64, name: &str) -> String {
    let order = if options.descending { "desc" } else { "asc" };
    URL_SAFE_NO_PAD.encode(format!("{}.{order}.{key}.{name}", sort_name(options.sort)))
}

/// The (key, name) a token resumes after.
fn resume_point(options: &BrowseOptions) -> Result<Option<(i64, String)>> {
    let Some(token) = &options.page else {
        return Ok(None);
    };
    let invalid = || {
        RegistryError::PageTokenInvalid(
            "page is not a token this listing gave: pass the `next` of the page before, \
             with the same sort and order"
                .into(),
        )
    };
    let text = URL_SAFE_NO_PAD
        .decode(token)
        .ok()
        .and_then(|bytes| String::from_utf8(bytes).ok())
        .ok_or_else(invalid)?;
    let mut parts = text.splitn(4, '.');
    let (Some(sort), Some(order), Some(key), Some(name)) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Err(invalid());
    };
    let order_matches = (order == "desc") == options.descending && matches!(order, "asc" | "desc");
    if sort != sort_name(options.sort) || !order_matches {
        return Err(invalid());
    }
    let key = key.parse().map_err(|_| invalid())?;
    Ok(Some((key, name.to_string())))
}

/// Splits rows fetched with one extra (to learn whether more follow) into a page's rows and
/// the token of the next page.
fn page_of<Row>(
    options: &BrowseOptions,
    mut rows: Vec<Row>,
    resume: impl Fn(&Row) -> (i64, String),
) -> (Vec<Row>, Option<String>) {
    let more = rows.len() > options.limit as usize;
    rows.truncate(options.limit as usize);
    let next = more
        .then(|| rows.last().map(&resume))
        .flatten()
        .map(|(key, name)| token(options, key, &name));
    (rows, next)
}

impl Registry {
    /// The figures of each of `projects`, by project name, in two queries whatever their
    /// number.
    pub async fn project_figures(
        &self,
        projects: &[String],
    ) -> Result<HashMap<String, ProjectFigures>> {
        let mut quotas: HashMap<String, Quota> = self
            .meta
            .quotas()
            .await?
            .into_iter()
            .map(|q| (q.project.clone(), q))
            .collect();
        let mut repositories: HashMap<String, (i64, Option<i64>)> = self
            .meta
            .project_repositories()
            .await?
            .into_iter()
            .map(|r| {
                (
                    r.project,
                    (r.repositories, r.last_pushed_at_us.map(seconds)),
                )
            })
            .collect();
        Ok(projects
            .iter()
            .map(|project| {
                let quota = quotas
                    .remove(project)
                    .unwrap_or_else(|| Quota::unused(project));
                let (repositories, last_pushed_at) =
                    repositories.remove(project).unwrap_or((0, None));
                let figures = ProjectFigures {
                    quota,
                    repositories,
                    last_pushed_at,
                };
                (project.clone(), figures)
            })
            .collect())
    }

    /// A page of `project`'s repositories with their figures. Pulls counted in memory are
    /// written first, so the figures are current.
    pub async fn browse_repositories(
        &self,
        project: &str,
        options: &BrowseOptions,
    ) -> Result<Browsed<RepositoryView>> {
        let resume = resume_point(options)?;
        self.flush_pulls().await?;
        let rows = self
            .meta
            .repository_page(project, meta_page(options, &resume))
            .await?;
        let (rows, next) = page_of(options, rows, |r| (r.sort_key, r.name.clone()));
        Ok(Browsed {
            items: rows.into_iter().map(RepositoryView::from).collect(),
            next,
        })
    }

    /// A page of `name`'s top-level artifacts (referrers are listed under their subject,
    /// untagged index children as the index's platforms).
    pub async fn browse_artifacts(
        &self,
        name: &RepositoryName,
        options: &BrowseOptions,
    ) -> Result<Browsed<ArtifactView>> {
        let resume = resume_point(options)?;
        self.flush_pulls().await?;
        let rows = self
            .meta
            .artifact_page(name.as_str(), meta_page(options, &resume))
            .await?
            .ok_or_else(|| RegistryError::NameUnknown(name.to_string()))?;
        let (rows, next) = page_of(options, rows, |a| (a.sort_key, a.digest.clone()));
        let trust = self.gate.signing_policy(&self.meta, name.project()).await?;
        // Judging reads signatures only where the cache has no verdict for them; a few at
        // once, for a page seen first.
        let items = futures::stream::iter(rows)
            .map(|row| {
                let trust = trust.clone();
                async move {
                    let signature = self.signature_view(name, &row, &trust).await?;
                    Ok::<_, RegistryError>(ArtifactView::new(row, signature))
                }
            })
            .buffered(8)
            .try_collect::<Vec<_>>()
            .await?;
        let items = self.with_vulnerabilities(items).await?;
        Ok(Browsed { items, next })
    }

    /// `artifacts` with their vulnerability counts from their images' latest scans, read in
    /// one query per hundred images.
    async fn with_vulnerabilities(
        &self,
        mut artifacts: Vec<ArtifactView>,
    ) -> Result<Vec<ArtifactView>> {
        /// A stored report's counts, the rest of it skipped.
        #[derive(Deserialize)]
        struct Counted {
            summary: Summary,
        }
        let images: Vec<Vec<Digest>> = artifacts.iter().map(ArtifactView::image_digests).collect();
        let all: Vec<Digest> = images.iter().flatten().cloned().collect();
        let records: HashMap<Digest, ScanRecord> = self
            .meta
            .scan_results(&all)
            .await?
            .into_iter()
            .map(|r| (r.digest.clone(), r))
            .collect();
        for (artifact, digests) in artifacts.iter_mut().zip(images) {
            let mut view = VulnerabilityView {
                images: 0,
                scanned: 0,
                counts: Summary::default(),
            };
            for digest in &digests {
                let record = records.get(digest);
                if record.is_some_and(|r| r.status == NOT_AN_IMAGE) {
                    continue;
                }
                view.images += 1;
                let counted = record
                    .filter(|r| r.status == SCANNED)
                    .and_then(|r| serde_json::from_str::<Counted>(&r.report).ok());
                if let Some(counted) = counted {
                    view.scanned += 1;
                    view.counts.add(&counted.summary);
                }
            }
            artifact.vulnerabilities = (view.images > 0).then_some(view);
        }
        Ok(artifacts)
    }

    /// One artifact by tag or digest, top-level or not.
    pub async fn browse_artifact(
        &self,
        name: &RepositoryName,
        reference: &Reference,
    ) -> Result<ArtifactView> {
        self.flush_pulls().await?;
        let unknown = || RegistryError::ManifestUnknown(reference.to_string());
        let digest: Digest = match reference {
            Reference::Digest(digest) => digest.clone(),
            Reference::Tag(_) => self.get_manifest(name, reference).await?.digest,
        };
        let row = self
            .meta
            .artifact_summary(name.as_str(), &digest.to_string())
            .await?
            .ok_or_else(unknown)?;
        let trust = self.gate.signing_policy(&self.meta, name.project()).await?;
        let signature = self.signature_view(name, &row, &trust).await?;
        let mut artifact = self
            .with_vulnerabilities(vec![ArtifactView::new(row, signature)])
            .await?;
        Ok(artifact.remove(0))
    }

    /// How the listing shows `artifact`'s signatures under `trust`; `None` for what a
    /// signing policy does not check. The signatures are those its referrers name (the
    /// `.sig` manifest by its tag, bundles by artifact type), so a verdict in the cache costs
    /// no query; an artifact with a referrers fallback tag is looked up as a pull would be
    /// (the fallback index lists its bundles in its own bytes).
    async fn signature_view(
        &self,
        name: &RepositoryName,
        artifact: &ArtifactSummary,
        trust: &Arc<TrustPolicy>,
    ) -> Result<Option<SignatureView>> {
        let Ok(digest) = artifact.digest.parse::<Digest>() else {
            return Ok(None);
        };
        let signable = manifest::parse(&artifact.content, Some(&artifact.media_type))
            .is_ok_and(|parsed| is_signable(&parsed));
        if !signable {
            return Ok(None);
        }
        let stem = sources::fallback_tag(&digest);
        let tagged = |tag: String| {
            artifact
                .referrers
                .iter()
                .find(|r| r.tag.as_deref() == Some(tag.as_str()))
        };
        let located = if tagged(stem.clone()).is_some() {
            sources::locate(&RepositorySignatures::new(self, name), &digest).await?
        } else {
            let referrers: Vec<(Option<&str>, Digest)> = artifact
                .referrers
                .iter()
                .filter_map(|r| Some((r.artifact_type.as_deref(), r.digest.parse().ok()?)))
                .collect();
            Located::new(
                tagged(format!("{stem}.sig")).and_then(|r| r.digest.parse().ok()),
                referrers
                    .iter()
                    .map(|(artifact_type, digest)| (*artifact_type, digest)),
            )
        };
        let judged = self
            .judge_signatures(name, &digest, &artifact.content, located, trust)
            .await?;
        let signed_at = judged.holder.as_ref().and_then(|holder| {
            let holder = holder.to_string();
            artifact
                .referrers
                .iter()
                .find(|r| r.digest == holder)
                .map(|r| seconds(r.pushed_at_us))
        });
        let (state, key) = match judged.verdict {
            Verdict::Trusted { key, .. } => ("trusted", Some(key)),
            Verdict::Untrusted => ("untrusted", None),
            Verdict::OtherDigest { .. } => ("other_digest", None),
            Verdict::Unsigned => ("unsigned", None),
        };
        Ok(Some(SignatureView {
            state,
            key,
            signed_at,
        }))
    }
}

fn meta_page<'a>(options: &BrowseOptions, resume: &'a Option<(i64, String)>) -> BrowsePage<'a> {
    BrowsePage {
        sort: options.sort,
        descending: options.descending,
        after: resume.as_ref().map(|(key, name)| (*key, name.as_str())),
        limit: options.limit.clamp(1, BROWSE_MAX_PAGE) + 1,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn options(sort: BrowseSort, descending: bool, page: Option<String>) -> BrowseOptions {
        BrowseOptions {
            sort,
            descending,
            limit: 10,
            page,
        }
    }

    #[test]
    fn page_tokens_resume_after_the_last_row_and_only_under_their_own_sort() {
        let first = options(BrowseSort::Size, true, None);
        let next = token(&first, 42, "team/a.b");
        let resumed = options(BrowseSort::Size, true, Some(next.clone()));
        assert_eq!(
            resume_point(&resumed).unwrap(),
            Some((42, "team/a.b".to_string()))
        );
        for other in [
            options(BrowseSort::Size, false, Some(next.clone())),
            options(BrowseSort::Name, true, Some(next)),
            options(BrowseSort::Size, true, Some("not a token".into())),
        ] {
            assert!(matches!(
                resume_point(&other),
                Err(RegistryError::PageTokenInvalid(_))
            ));
        }
    }

    #[test]
    fn platforms_come_from_the_index_entries_that_carry_one() {
        let index = br#"{"manifests":[
            {"digest":"sha256:a","platform":{"os":"linux","architecture":"arm64","variant":"v8"}},
            {"digest":"sha256:b","platform":{"os":"linux","architecture":"amd64"}},
            {"digest":"sha256:c"}]}"#;
        assert_eq!(
            platforms_of(index),
            [
                PlatformView {
                    os: "linux".into(),
                    architecture: "arm64".into(),
                    variant: Some("v8".into()),
                    digest: "sha256:a".into()
                },
                PlatformView {
                    os: "linux".into(),
                    architecture: "amd64".into(),
                    variant: None,
                    digest: "sha256:b".into()
                },
            ]
        );
    }
}
