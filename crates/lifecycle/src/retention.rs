//! Retention policies: which tags and manifests of a project to keep, as data, evaluated
//! digest-aware against the project's artifacts at a given time (passed in, so tests and dry
//! runs need no clock). A plan says, for every survivor, which rule kept it, and lists exactly
//! what would go and the bytes that would be freed.
//!
//! Semantics: a rule applies to the repositories its selector matches; within repositories
//! some rule applies to, a tag survives if a rule whose tag selector matches it keeps it, and
//! a digest survives if any of its tags survives (then all its tags survive: tags sharing a
//! digest with a survivor stay). Tags no rule keeps are deleted; a manifest left without tags
//! is deleted with them unless a rule selecting untagged artifacts keeps it. Referrers
//! (signatures, SBOMs) follow their subject. Repositories no rule applies to are untouched.

use std::collections::{BTreeMap, BTreeSet, HashMap};

use serde::{Deserialize, Serialize};

use crate::tag_rules::glob_match;

/// A glob over repository names or tags: `team/*`, `v1.*`, `dev-?`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct Glob(String);

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "pattern {0:?} is invalid: use name characters (a-z A-Z 0-9 _ . - /) with * and ?, at most 256"
)]
pub struct InvalidGlob(String);

impl TryFrom<String> for Glob {
    type Error = InvalidGlob;

    fn try_from(s: String) -> Result<Self, Self::Error> {
        let valid = !s.is_empty()
            && s.len() <= 256
            && s.chars()
                .all(|c| c.is_ascii_alphanumeric() || "_.-/*?".contains(c));
        if valid {
            Ok(Glob(s))
        } else {
            Err(InvalidGlob(s))
        }
    }
}

impl From<Glob> for String {
    fn from(g: Glob) -> String {
        g.0
    }
}

impl Glob {
    pub fn parse(s: &str) -> Result<Glob, InvalidGlob> {
        Glob::try_from(s.to_string())
    }

    pub fn matches(&self, value: &str) -> bool {
        glob_match(&self.0, value)
    }
}

const DAY: i64 = 86_400;

/// Include/exclude globs; an empty include list includes everything.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Selector {
    #[serde(default)]
    pub include: Vec<Glob>,
    #[serde(default)]
    pub exclude: Vec<Glob>,
}

impl Selector {
    pub fn matches(&self, value: &str) -> bool {
        (self.include.is_empty() || self.include.iter().any(|p| p.matches(value)))
            && !self.exclude.iter().any(|p| p.matches(value))
    }
}

/// What a rule keeps of the tags (or untagged manifests) it selects.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", deny_unknown_fields)]
pub enum Keep {
    /// The N most recently pushed.
    MostRecentlyPushed(usize),
    /// The N most recently pulled (never-pulled ones last).
    MostRecentlyPulled(usize),
    PushedWithinDays(i64),
    PulledWithinDays(i64),
    Always,
    /// The newest N of each version line `vMAJOR.MINOR` (by patch number); tags that are not
    /// `vMAJOR.MINOR.PATCH` are not kept by this rule.
    NewestPerVersionLine(usize),
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Rule {
    #[serde(default)]
    pub repositories: Selector,
    /// Which tags the rule looks at (ignored when `untagged` is set).
    #[serde(default)]
    pub tags: Selector,
    /// The rule looks at untagged manifests instead of tags.
    #[serde(default)]
    pub untagged: bool,
    pub keep: Keep,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Policy {
    pub rules: Vec<Rule>,
    /// When the policy runs by itself; without one it runs only when asked.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub schedule: Option<crate::schedule::Schedule>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TagInfo {
    pub name: String,
    /// When the tag was last pointed at its digest (Unix seconds).
    pub pushed_at: i64,
    pub last_pulled_at: Option<i64>,
}

/// A manifest of a repository as retention sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Artifact {
    pub repository: String,
    pub digest: String,
    pub pushed_at: i64,
    pub last_pulled_at: Option<i64>,
    pub tags: Vec<TagInfo>,
    /// The manifest this one refers to (signatures, SBOMs), if any.
    pub subject: Option<String>,
    /// The manifest's own size and its blobs (digest, size), for the bytes freed.
    pub size: u64,
    pub blobs: Vec<(String, u64)>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Survivor {
    pub repository: String,
    pub digest: String,
    pub tags: Vec<String>,
    /// Why it stays: `rule 2 (newest_per_version_line) keeps v1.1.4`, `shares a digest with v1.0.5`…
    pub reasons: Vec<String>,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct Plan {
    pub keep: Vec<Survivor>,
    /// (repository, tag) to delete, where the manifest itself survives or goes with it.
    pub delete_tags: Vec<(String, String)>,
    /// (repository, digest) of manifests to delete.
    pub delete_manifests: Vec<(String, String)>,
    /// Bytes of manifests and blobs no surviving manifest of the repository references.
    pub freed_bytes: u64,
}

fn version_line(tag: &str) -> Option<((u64, u64), u64)> {
    let mut parts = tag.strip_prefix('v')?.split('.');
    let major = parts.next()?.parse().ok()?;
    let minor = parts.next()?.parse().ok()?;
    let patch = parts.next()?.parse().ok()?;
    parts.next().is_none().then_some(((major, minor), patch))
}

fn keep_name(keep: &Keep) -> &'static str {
    match keep {
        Keep::MostRecentlyPushed(_) => "most_recently_pushed",
        Keep::MostRecentlyPulled(_) => "most_recently_pulled",
        Keep::PushedWithinDays(_) => "pushed_within_days",
        Keep::PulledWithinDays(_) => "pulled_within_days",
        Keep::Always => "always",
        Keep::NewestPerVersionLine(_) => "newest_per_version_line",
    }
}

/// A candidate a rule looks at: a tag, or an untagged manifest (tag `None`).
struct Candidate<'a> {
    artifact: &'a Artifact,
    tag: Option<&'a TagInfo>,
}

impl Candidate<'_> {
    fn pushed_at(&self) -> i64 {
        self.tag.map_or(self.artifact.pushed_at, |t| t.pushed_at)
    }
    fn last_pulled_at(&self) -> Option<i64> {
        self.tag
            .map_or(self.artifact.last_pulled_at, |t| t.last_pulled_at)
    }
    fn name(&self) -> String {
        match self.tag {
            Some(t) => t.name.clone(),
            None => self.artifact.digest.clone(),
        }
    }
}

/// Which of `candidates` (of one repository) `keep` keeps.
fn kept<'a>(keep: &Keep, candidates: Vec<Candidate<'a>>, now: i64) -> Vec<Candidate<'a>> {
    let mut candidates = candidates;
    match keep {
        Keep::Always => candidates,
        Keep::PushedWithinDays(days) => candidates
            .into_iter()
            .filter(|c| c.pushed_at() >= now - days * DAY)
            .collect(),
        Keep::PulledWithinDays(days) => candidates
            .into_iter()
            .filter(|c| c.last_pulled_at().is_some_and(|at| at >= now - days * DAY))
            .collect(),
        Keep::MostRecentlyPushed(n) => {
            candidates.sort_by_key(|c| (std::cmp::Reverse(c.pushed_at()), c.name()));
            candidates.truncate(*n);
            candidates
        }
        Keep::MostRecentlyPulled(n) => {
            candidates.sort_by_key(|c| (std::cmp::Reverse(c.last_pulled_at()), c.name()));
            candidates.truncate(*n);
            candidates
        }
        Keep::NewestPerVersionLine(n) => {
            let mut lines: BTreeMap<(u64, u64), Vec<(u64, Candidate<'a>)>> = BTreeMap::new();
            for c in candidates {
                if let Some((line, patch)) = c.tag.and_then(|t| version_line(&t.name)) {
                    lines.entry(line).or_default().push((patch, c));
                }
            }
            lines
                .into_values()
                .flat_map(|mut line| {
                    line.sort_by_key(|(patch, _)| std::cmp::Reverse(*patch));
                    line.into_iter().take(*n).map(|(_, c)| c)
                })
                .collect()
        }
    }
}

/// Evaluates `policy` over a project's artifacts at time `now`.
pub fn evaluate(policy: &Policy, artifacts: &[Artifact], now: i64) -> Plan {
    // Why each (repository, digest) survives.
    let mut reasons: BTreeMap<(String, String), Vec<String>> = BTreeMap::new();
    let governed: BTreeSet<&str> = artifacts
        .iter()
        .map(|a| a.repository.as_str())
        .filter(|r| policy.rules.iter().any(|rule| rule.repositories.matches(r)))
        .collect();
    let mut repositories: BTreeMap<&str, Vec<&Artifact>> = BTreeMap::new();
    for a in artifacts {
        repositories
            .entry(a.repository.as_str())
            .or_default()
            .push(a);
    }
    for (i, rule) in policy.rules.iter().enumerate() {
        for (repo, repo_artifacts) in &repositories {
            if !rule.repositories.matches(repo) {
                continue;
            }
            let candidates: Vec<Candidate> = repo_artifacts
                .iter()
                .flat_map(|a| {
                    if rule.untagged {
                        (a.tags.is_empty() && a.subject.is_none())
                            .then_some(Candidate {
                                artifact: a,
                                tag: None,
                            })
                            .into_iter()
                            .collect::<Vec<_>>()
                    } else {
                        a.tags
                            .iter()
                            .filter(|t| rule.tags.matches(&t.name))
                            .map(|t| Candidate {
                                artifact: a,
                                tag: Some(t),
                            })
                            .collect()
                    }
                })
                .collect();
            for c in kept(&rule.keep, candidates, now) {
                reasons
                    .entry((repo.to_string(), c.artifact.digest.clone()))
                    .or_default()
                    .push(format!(
                        "rule {} ({}) keeps {}",
                        i + 1,
                        keep_name(&rule.keep),
                        c.name()
                    ));
            }
        }
    }
    // Referrers follow their subject.
    for a in artifacts {
        if let Some(subject) = &a.subject {
            if reasons.contains_key(&(a.repository.clone(), subject.clone())) {
                reasons
                    .entry((a.repository.clone(), a.digest.clone()))
                    .or_default()
                    .push(format!("refers to kept {subject}"));
            }
        }
    }
    let mut plan = Plan::default();
    let mut surviving_blobs: HashMap<&str, BTreeSet<&str>> = HashMap::new();
    let mut deleted: Vec<&Artifact> = Vec::new();
    for a in artifacts {
        let key = (a.repository.clone(), a.digest.clone());
        let is_governed = governed.contains(a.repository.as_str());
        // Untagged manifests no rule looks at, and ungoverned repositories, are left alone.
        let looked_at = is_governed
            && (!a.tags.is_empty()
                || a.subject.is_some()
                || policy
                    .rules
                    .iter()
                    .any(|r| r.untagged && r.repositories.matches(&a.repository)));
        match reasons.remove(&key) {
            Some(mut why) => {
                let named: Vec<String> = why
                    .iter()
                    .filter_map(|r| r.rsplit(" keeps ").next().map(str::to_string))
                    .collect();
                for t in &a.tags {
                    if !named.contains(&t.name) {
                        why.push(format!("{} shares a digest with a survivor", t.name));
                    }
                }
                plan.keep.push(Survivor {
                    repository: a.repository.clone(),
                    digest: a.digest.clone(),
                    tags: a.tags.iter().map(|t| t.name.clone()).collect(),
                    reasons: why,
                });
            }
            None if looked_at => {
                for t in &a.tags {
                    plan.delete_tags
                        .push((a.repository.clone(), t.name.clone()));
                }
                plan.delete_manifests.push(key);
                deleted.push(a);
                continue;
            }
            None => plan.keep.push(Survivor {
                repository: a.repository.clone(),
                digest: a.digest.clone(),
                tags: a.tags.iter().map(|t| t.name.clone()).collect(),
                reasons: vec!["no rule selects it".into()],
            }),
        }
        let blobs = surviving_blobs.entry(a.repository.as_str()).or_default();
        blobs.extend(a.blobs.iter().map(|(d, _)| d.as_str()));
    }
    let mut freed_blobs: BTreeSet<(&str, &str)> = BTreeSet::new();
    for a in &deleted {
        plan.freed_bytes += a.size;
        let surviving = surviving_blobs.get(a.repository.as_str());
        for (digest, size) in &a.blobs {
            let still_used = surviving.is_some_and(|s| s.contains(digest.as_str()));
            if !still_used && freed_blobs.insert((a.repository.as_str(), digest.as_str())) {
                plan.freed_bytes += size;
            }
        }
    }
    plan
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pat(s: &str) -> Glob {
        Glob::parse(s).unwrap()
    }

    fn tags(include: &str) -> Selector {
        Selector {
            include: vec![pat(include)],
            exclude: vec![],
        }
    }

    const NOW: i64 = 1_800_000_000;

    /// A manifest with one private blob of 1000 bytes and one shared base blob.
    fn artifact(digest: &str, tag_list: &[(&str, i64, Option<i64>)]) -> Artifact {
        Artifact {
            repository: "team/app".into(),
            digest: digest.into(),
            pushed_at: tag_list
                .iter()
                .map(|t| t.1)
                .min()
                .unwrap_or(NOW - 100 * DAY),
            last_pulled_at: tag_list.iter().filter_map(|t| t.2).max(),
            tags: tag_list
                .iter()
                .map(|(name, pushed, pulled)| TagInfo {
                    name: name.to_string(),
                    pushed_at: *pushed,
                    last_pulled_at: *pulled,
                })
                .collect(),
            subject: None,
            size: 500,
            blobs: vec![(format!("blob-{digest}"), 1000), ("base".into(), 50_000)],
        }
    }

    /// The seeds' scenario: versions v1.0.0–v1.0.5 and v1.1.0–v1.1.4, commit-* and dev-* tags,
    /// some sharing digests.
    fn scenario() -> Vec<Artifact> {
        let day = |d: i64| NOW - d * DAY;
        let mut artifacts = Vec::new();
        for patch in 0..=5 {
            artifacts.push(artifact(
                &format!("d-1.0.{patch}"),
                &[(&format!("v1.0.{patch}"), day(60 - patch), None)],
            ));
        }
        for patch in 0..=4 {
            artifacts.push(artifact(
                &format!("d-1.1.{patch}"),
                &[(&format!("v1.1.{patch}"), day(30 - patch), None)],
            ));
        }
        // commit-old shares its digest with v1.0.1 (an old release): the release is deleted,
        // but… commit-old is 40 days old, so both go. commit-mid shares v1.1.0's digest and is
        // recent: v1.1.0 survives through it.
        artifacts[1].tags.push(TagInfo {
            name: "commit-old".into(),
            pushed_at: day(40),
            last_pulled_at: None,
        });
        artifacts[6].tags.push(TagInfo {
            name: "commit-mid".into(),
            pushed_at: day(10),
            last_pulled_at: None,
        });
        artifacts.push(artifact("d-c1", &[("commit-aaa", day(3), None)]));
        artifacts.push(artifact("d-c2", &[("commit-bbb", day(20), None)]));
        artifacts.push(artifact("d-dev1", &[("dev-login", day(30), Some(day(2)))]));
        artifacts.push(artifact("d-dev2", &[("dev-search", day(3), Some(day(9)))]));
        artifacts.push(artifact("d-dev3", &[("dev-never", day(1), None)]));
        // A signature of a surviving release, and one of a deleted one.
        let mut sig = artifact("d-sig-keep", &[]);
        sig.subject = Some("d-1.1.4".into());
        artifacts.push(sig);
        let mut sig = artifact("d-sig-gone", &[]);
        sig.subject = Some("d-1.0.0".into());
        artifacts.push(sig);
        artifacts
    }

    fn seed_policy() -> Policy {
        serde_json::from_str(
            r#"{"rules": [
                {"tags": {"include": ["v*"]}, "keep": {"newest_per_version_line": 3}},
                {"tags": {"include": ["commit-*"]}, "keep": {"pushed_within_days": 14}},
                {"tags": {"include": ["dev-*"]}, "keep": {"pulled_within_days": 7}}
            ]}"#,
        )
        .unwrap()
    }

    #[test]
    fn the_seed_scenario_keeps_exactly_the_expected_survivors() {
        let plan = evaluate(&seed_policy(), &scenario(), NOW);
        let mut surviving_tags: Vec<String> =
            plan.keep.iter().flat_map(|s| s.tags.clone()).collect();
        surviving_tags.sort();
        assert_eq!(
            surviving_tags,
            [
                "commit-aaa",
                "commit-mid",
                "dev-login",
                "v1.0.3",
                "v1.0.4",
                "v1.0.5",
                "v1.1.0",
                "v1.1.2",
                "v1.1.3",
                "v1.1.4"
            ]
        );
        let kept_digests: BTreeSet<&str> = plan.keep.iter().map(|s| s.digest.as_str()).collect();
        assert!(
            kept_digests.contains("d-sig-keep"),
            "referrers follow their subject"
        );
        assert!(!kept_digests.contains("d-sig-gone"));
        let v110 = plan.keep.iter().find(|s| s.digest == "d-1.1.0").unwrap();
        assert_eq!(
            v110.reasons,
            [
                "rule 2 (pushed_within_days) keeps commit-mid",
                "v1.1.0 shares a digest with a survivor"
            ]
        );
        let v114 = plan.keep.iter().find(|s| s.digest == "d-1.1.4").unwrap();
        assert_eq!(
            v114.reasons,
            ["rule 1 (newest_per_version_line) keeps v1.1.4"]
        );

        let mut deleted_tags: Vec<&str> =
            plan.delete_tags.iter().map(|(_, t)| t.as_str()).collect();
        deleted_tags.sort();
        assert_eq!(
            deleted_tags,
            [
                "commit-bbb",
                "commit-old",
                "dev-never",
                "dev-search",
                "v1.0.0",
                "v1.0.1",
                "v1.0.2",
                "v1.1.1"
            ]
        );
        assert_eq!(
            plan.delete_manifests.len(),
            8,
            "7 tagged manifests and the orphaned signature"
        );
        // Each deleted manifest frees its 500 bytes and its private 1000-byte blob; the shared
        // base blob stays referenced by survivors.
        assert_eq!(plan.freed_bytes, 8 * 1500);
    }

    #[test]
    fn the_plan_is_the_same_whatever_the_order_of_artifacts() {
        let mut reversed = scenario();
        reversed.reverse();
        let a = evaluate(&seed_policy(), &scenario(), NOW);
        let b = evaluate(&seed_policy(), &reversed, NOW);
        let sorted = |mut v: Vec<(String, String)>| {
            v.sort();
            v
        };
        assert_eq!(sorted(a.delete_manifests), sorted(b.delete_manifests));
        assert_eq!(a.freed_bytes, b.freed_bytes);
    }

    #[test]
    fn other_rules_and_selectors() {
        let day = |d: i64| NOW - d * DAY;
        let mut arts = vec![
            artifact("a", &[("x1", day(5), Some(day(1)))]),
            artifact("b", &[("x2", day(4), None)]),
            artifact("c", &[("x3", day(3), Some(day(3)))]),
            artifact("u", &[]),
        ];
        arts[3].pushed_at = day(1);
        let rule = |keep: Keep| Policy {
            rules: vec![Rule {
                repositories: Selector::default(),
                tags: tags("x*"),
                untagged: false,
                keep,
            }],
            schedule: None,
        };
        let kept = |p: &Policy| -> Vec<String> {
            let mut d: Vec<String> = evaluate(p, &arts, NOW)
                .keep
                .into_iter()
                .map(|s| s.digest)
                .collect();
            d.sort();
            d
        };
        assert_eq!(
            kept(&rule(Keep::MostRecentlyPushed(2))),
            ["b", "c", "u"],
            "untagged: no rule looks at it"
        );
        assert_eq!(kept(&rule(Keep::MostRecentlyPulled(1))), ["a", "u"]);
        assert_eq!(kept(&rule(Keep::Always)), ["a", "b", "c", "u"]);
        let mut untagged = rule(Keep::MostRecentlyPushed(3));
        untagged.rules.push(Rule {
            repositories: Selector::default(),
            tags: Selector::default(),
            untagged: true,
            keep: Keep::PushedWithinDays(0),
        });
        assert_eq!(
            kept(&untagged),
            ["a", "b", "c"],
            "a rule for untagged manifests lets them go"
        );
        // A repository no rule selects is untouched.
        let elsewhere = Policy {
            rules: vec![Rule {
                repositories: Selector {
                    include: vec![pat("other/*")],
                    exclude: vec![],
                },
                tags: Selector::default(),
                untagged: false,
                keep: Keep::MostRecentlyPushed(0),
            }],
            schedule: None,
        };
        let plan = evaluate(&elsewhere, &arts, NOW);
        assert!(plan.delete_manifests.is_empty() && plan.delete_tags.is_empty());
        assert!(Selector {
            include: vec![],
            exclude: vec![pat("dev-*")]
        }
        .matches("v1"));
        assert!(!Selector {
            include: vec![],
            exclude: vec![pat("dev-*")]
        }
        .matches("dev-x"));
        assert_eq!(version_line("v1.2.3"), Some(((1, 2), 3)));
        assert_eq!(version_line("v1.2"), None);
        assert_eq!(version_line("v1.2.3-rc1"), None);
    }

    #[test]
    fn policies_are_data() {
        let policy = seed_policy();
        let json = serde_json::to_string(&policy).unwrap();
        assert_eq!(serde_json::from_str::<Policy>(&json).unwrap(), policy);
        assert!(serde_json::from_str::<Policy>(r#"{"rules":[{"keep":{"forever":1}}]}"#).is_err());
    }
}
