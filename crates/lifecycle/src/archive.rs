//! Which artifacts an archive run moves out of the registry: tagged manifests whose every tag
//! the selector takes (a digest goes with all its tags or not at all), pushed long enough ago
//! and not pulled recently. Signatures and SBOMs go with their subject. Nothing that an
//! artifact which stays reaches ([`crate::reach`]: a platform image of a kept index, a
//! signature of a kept image) is archived: such an artifact is passed with the reason.

use std::collections::BTreeSet;

use serde::{Deserialize, Serialize};

use crate::retention::{Artifact, Selector};

const DAY: i64 = 86_400;

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ArchiveSelector {
    #[serde(default)]
    pub repositories: Selector,
    #[serde(default)]
    pub tags: Selector,
    /// Only artifacts pushed at least this many days ago.
    #[serde(default)]
    pub pushed_before_days: Option<i64>,
    /// Only artifacts not pulled (by digest or any tag) for this many days.
    #[serde(default)]
    pub not_pulled_for_days: Option<i64>,
}

/// One artifact to archive: a manifest with its tags and the manifests that refer to it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Selected {
    pub repository: String,
    pub digest: String,
    pub tags: Vec<String>,
    pub referrers: Vec<String>,
}

/// An artifact the selector matched in part but that stays, and why.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Passed {
    pub repository: String,
    pub digest: String,
    pub reason: String,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct Selection {
    pub archive: Vec<Selected>,
    pub passed: Vec<Passed>,
}

/// Chooses what to archive from a project's artifacts at time `now`.
pub fn select(selector: &ArchiveSelector, artifacts: &[Artifact], now: i64) -> Selection {
    let mut selection = Selection::default();
    for artifact in artifacts {
        if artifact.tags.is_empty() || !selector.repositories.matches(&artifact.repository) {
            continue;
        }
        let (taken, left): (Vec<_>, Vec<_>) = artifact
            .tags
            .iter()
            .partition(|t| selector.tags.matches(&t.name));
        if taken.is_empty() {
            continue;
        }
        let pass = |reason: String| Passed {
            repository: artifact.repository.clone(),
            digest: artifact.digest.clone(),
            reason,
        };
        if let Some(other) = left.first() {
            selection.passed.push(pass(format!(
                "also tagged {}, which the selector does not take",
                other.name
            )));
            continue;
        }
        if let Some(days) = selector.pushed_before_days {
            if artifact.pushed_at_us > (now - days * DAY) * 1_000_000 {
                selection
                    .passed
                    .push(pass(format!("pushed within the last {days} days")));
                continue;
            }
        }
        if let Some(days) = selector.not_pulled_for_days {
            let last_pull = artifact
                .tags
                .iter()
                .filter_map(|t| t.last_pulled_at)
                .chain(artifact.last_pulled_at)
                .max();
            if last_pull.is_some_and(|at| at > now - days * DAY) {
                selection
                    .passed
                    .push(pass(format!("pulled within the last {days} days")));
                continue;
            }
        }
        let mut tags: Vec<String> = artifact.tags.iter().map(|t| t.name.clone()).collect();
        tags.sort();
        let referrers = artifacts
            .iter()
            .filter(|r| {
                r.repository == artifact.repository
                    && r.subject.as_deref() == Some(artifact.digest.as_str())
            })
            .map(|r| r.digest.clone())
            .collect();
        selection.archive.push(Selected {
            repository: artifact.repository.clone(),
            digest: artifact.digest.clone(),
            tags,
            referrers,
        });
    }
    keep_what_stays_reaches(&mut selection, artifacts);
    selection
        .archive
        .sort_by(|a, b| (&a.repository, &a.digest).cmp(&(&b.repository, &b.digest)));
    selection
}

/// Passes every selected artifact whose manifests (itself or a referrer) something that
/// stays reaches, until nothing that stays reaches anything archived.
fn keep_what_stays_reaches(selection: &mut Selection, artifacts: &[Artifact]) {
    let graph = crate::reach::Graph::new(artifacts);
    loop {
        let archived: BTreeSet<(&str, &str)> = selection
            .archive
            .iter()
            .flat_map(|s| {
                std::iter::once(&s.digest)
                    .chain(&s.referrers)
                    .map(|d| (s.repository.as_str(), d.as_str()))
            })
            .collect();
        let staying = artifacts
            .iter()
            .map(|a| (a.repository.as_str(), a.digest.as_str()))
            .filter(|key| !archived.contains(key));
        let reached = graph.closure(staying);
        let mut passed = Vec::new();
        selection.archive.retain(|s| {
            let reason = std::iter::once(&s.digest)
                .chain(&s.referrers)
                .find_map(|d| Some((d, reached.get(&(s.repository.as_str(), d.as_str()))?)));
            match reason {
                Some((digest, how)) => {
                    passed.push(Passed {
                        repository: s.repository.clone(),
                        digest: s.digest.clone(),
                        reason: if *digest == s.digest {
                            how.to_string()
                        } else {
                            format!("its referrer {digest} stays: {how}")
                        },
                    });
                    false
                }
                None => true,
            }
        });
        if passed.is_empty() {
            return;
        }
        selection.passed.extend(passed);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::retention::{Glob, TagInfo};

    const NOW: i64 = 1_000 * DAY;

    fn artifact(repo: &str, digest: &str, pushed_days_ago: i64, tags: &[&str]) -> Artifact {
        Artifact {
            repository: repo.into(),
            digest: digest.into(),
            pushed_at_us: (NOW - pushed_days_ago * DAY) * 1_000_000,
            last_pulled_at: None,
            tags: tags
                .iter()
                .map(|t| TagInfo {
                    name: t.to_string(),
                    pushed_at_us: (NOW - pushed_days_ago * DAY) * 1_000_000,
                    last_pulled_at: None,
                })
                .collect(),
            subject: None,
            children: vec![],
            size: 10,
            blobs: vec![],
            buildkit_cache: false,
        }
    }

    fn globs(patterns: &[&str]) -> Selector {
        Selector {
            include: patterns.iter().map(|p| Glob::parse(p).unwrap()).collect(),
            exclude: vec![],
        }
    }

    #[test]
    fn old_versions_go_with_their_signatures_and_shared_digests_stay_whole() {
        let mut signature = artifact("team/app", "sha256:sig", 300, &[]);
        signature.subject = Some("sha256:old".into());
        let mut pulled = artifact("team/app", "sha256:pulled", 400, &["v0.8.0"]);
        pulled.tags[0].last_pulled_at = Some(NOW - 2 * DAY);
        let artifacts = vec![
            artifact("team/app", "sha256:old", 200, &["v1.0.0", "v1.0"]),
            signature,
            artifact("team/app", "sha256:new", 10, &["v1.2.0"]),
            artifact("team/app", "sha256:shared", 300, &["v0.9.0", "dev-latest"]),
            artifact("team/other", "sha256:else", 300, &["v0.1.0"]),
            artifact("team/app", "sha256:untagged", 300, &[]),
            pulled,
        ];
        let selector = ArchiveSelector {
            repositories: globs(&["team/app"]),
            tags: globs(&["v*"]),
            pushed_before_days: Some(180),
            not_pulled_for_days: Some(30),
        };
        let selection = select(&selector, &artifacts, NOW);
        assert_eq!(
            selection.archive,
            vec![Selected {
                repository: "team/app".into(),
                digest: "sha256:old".into(),
                tags: vec!["v1.0".into(), "v1.0.0".into()],
                referrers: vec!["sha256:sig".into()],
            }]
        );
        let reasons: Vec<(&str, &str)> = selection
            .passed
            .iter()
            .map(|p| (p.digest.as_str(), p.reason.as_str()))
            .collect();
        assert_eq!(
            reasons,
            vec![
                ("sha256:new", "pushed within the last 180 days"),
                (
                    "sha256:shared",
                    "also tagged dev-latest, which the selector does not take"
                ),
                ("sha256:pulled", "pulled within the last 30 days"),
            ]
        );
    }

    #[test]
    fn archive_never_takes_what_a_kept_artifact_reaches() {
        // A kept index `v2.0.0` over a platform image that is also tagged `v1.9.0` (all of
        // whose tags the selector takes), and an index `v1.0.0` that goes whole.
        let mut kept_index = artifact("team/app", "sha256:index-new", 10, &["v2.0.0"]);
        kept_index.children = vec!["sha256:shared-child".into()];
        let mut old_index = artifact("team/app", "sha256:index-old", 400, &["v1.0.0"]);
        old_index.children = vec!["sha256:old-child".into()];
        let artifacts = vec![
            kept_index,
            artifact("team/app", "sha256:shared-child", 400, &["v1.9.0"]),
            old_index,
            artifact("team/app", "sha256:old-child", 400, &[]),
        ];
        let selector = ArchiveSelector {
            tags: globs(&["v1.*"]),
            pushed_before_days: Some(180),
            ..ArchiveSelector::default()
        };
        let selection = select(&selector, &artifacts, NOW);
        let archived: Vec<&str> = selection
            .archive
            .iter()
            .map(|s| s.digest.as_str())
            .collect();
        assert_eq!(archived, ["sha256:index-old"]);
        assert_eq!(
            selection.passed,
            [Passed {
                repository: "team/app".into(),
                digest: "sha256:shared-child".into(),
                reason: "child of index sha256:index-new, which stays".into(),
            }]
        );
    }

    #[test]
    fn selectors_round_trip_as_json() {
        let text = r#"{"tags":{"include":["v*"]},"pushed_before_days":180}"#;
        let selector: ArchiveSelector = serde_json::from_str(text).unwrap();
        assert_eq!(selector.pushed_before_days, Some(180));
        assert!(serde_json::from_str::<ArchiveSelector>(r#"{"older":1}"#).is_err());
    }
}
