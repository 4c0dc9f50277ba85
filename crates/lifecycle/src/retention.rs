//! Retention policies: which tags and manifests of a project to keep, as data, evaluated
//! digest-aware against the project's artifacts and tag rules at a given time (passed in, so
//! tests and dry runs need no clock). The [`Plan`] is the run: it says, for every survivor,
//! why it stays, for every deleted tag and manifest, why it goes, which tags tag rules
//! protect, and the bytes that would be freed; a real run executes exactly it.
//!
//! Semantics: a rule applies to the repositories its selector matches; within repositories
//! some rule applies to, a tag survives if a rule whose tag selector matches it keeps it, or
//! if an immutable tag pattern matches it (tag rules override the policy: such a tag is
//! *protected*), and a digest survives if any of its tags survives (then all its tags
//! survive). Everything a surviving manifest reaches (index children at any depth,
//! referrers; see [`crate::reach`]) survives with it. Tags nothing keeps are deleted; a
//! manifest left without tags is deleted with them unless a rule selecting untagged artifacts
//! keeps it. Untagged manifests no rule looks at, and repositories no rule applies to, are
//! untouched. "Most recent" orders by push time in microseconds, then version, then digest.

use std::collections::{BTreeMap, BTreeSet, HashMap};

use serde::{Deserialize, Serialize};

use crate::tag_rules::{glob_match, TagRules};

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

/// What a rule keeps of the tags (or untagged manifests) it selects. Written `"always"`,
/// or a table with one entry naming the rule and its number: `{ most_recently_pushed = 3 }`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
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

/// What a policy file may say for `keep`, for error messages.
const KEEP_FORMS: &str = "keep = \"always\", or keep = { NAME = N } with NAME one of \
     most_recently_pushed, most_recently_pulled, pushed_within_days, pulled_within_days, \
     newest_per_version_line";

impl<'de> Deserialize<'de> for Keep {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Keep, D::Error> {
        struct KeepVisitor;

        impl<'de> serde::de::Visitor<'de> for KeepVisitor {
            type Value = Keep;

            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str(KEEP_FORMS)
            }

            fn visit_str<E: serde::de::Error>(self, word: &str) -> Result<Keep, E> {
                match word {
                    "always" => Ok(Keep::Always),
                    "most_recently_pushed"
                    | "most_recently_pulled"
                    | "pushed_within_days"
                    | "pulled_within_days"
                    | "newest_per_version_line" => Err(E::custom(format!(
                        "`{word}` needs a number: write keep = {{ {word} = N }}"
                    ))),
                    other => Err(E::custom(format!(
                        "unknown keep rule {other:?}; write {KEEP_FORMS}"
                    ))),
                }
            }

            fn visit_map<A: serde::de::MapAccess<'de>>(self, mut map: A) -> Result<Keep, A::Error> {
                use serde::de::Error;
                let Some(name) = map.next_key::<String>()? else {
                    return Err(A::Error::custom(format!(
                        "keep is empty; write {KEEP_FORMS}"
                    )));
                };
                let keep = match name.as_str() {
                    "always" => {
                        return Err(A::Error::custom(
                            "`always` takes no value: write keep = \"always\"",
                        ))
                    }
                    "most_recently_pushed" => Keep::MostRecentlyPushed(map.next_value()?),
                    "most_recently_pulled" => Keep::MostRecentlyPulled(map.next_value()?),
                    "pushed_within_days" => Keep::PushedWithinDays(map.next_value()?),
                    "pulled_within_days" => Keep::PulledWithinDays(map.next_value()?),
                    "newest_per_version_line" => Keep::NewestPerVersionLine(map.next_value()?),
                    other => {
                        return Err(A::Error::custom(format!(
                            "unknown keep rule {other:?}; write {KEEP_FORMS}"
                        )))
                    }
                };
                if map.next_key::<String>()?.is_some() {
                    return Err(A::Error::custom(format!(
                        "keep names one rule; write {KEEP_FORMS}"
                    )));
                }
                Ok(keep)
            }
        }

        deserializer.deserialize_any(KeepVisitor)
    }
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
    /// The rule looks at BuildKit registry caches instead of images and other artifacts.
    /// Caches no such rule looks at stay: a rule for images never counts or deletes them.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub buildkit_cache: bool,
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

/// A tag of an [`Artifact`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TagInfo {
    pub name: String,
    /// When the tag was last pointed at its digest (Unix time in microseconds: tags pushed in
    /// the same second still have an order).
    pub pushed_at_us: i64,
    /// The last pull by this tag (Unix seconds).
    pub last_pulled_at: Option<i64>,
}

/// A manifest of a repository as the lifecycle policies see it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Artifact {
    pub repository: String,
    pub digest: String,
    /// When the manifest was first pushed (Unix time in microseconds).
    pub pushed_at_us: i64,
    /// The last pull by digest (Unix seconds).
    pub last_pulled_at: Option<i64>,
    pub tags: Vec<TagInfo>,
    /// The manifest this one refers to (signatures, SBOMs), if any.
    pub subject: Option<String>,
    /// The manifests an index lists (its platform images or nested indexes); empty for an
    /// image manifest.
    pub children: Vec<String>,
    /// The manifest's own size and its blobs (digest, size), for the bytes freed.
    pub size: u64,
    pub blobs: Vec<(String, u64)>,
    /// A BuildKit registry cache (`--cache-to type=registry`), which only rules with
    /// `buildkit_cache` look at.
    pub buildkit_cache: bool,
}

/// A manifest that stays, with every reason it stays.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Survivor {
    pub repository: String,
    pub digest: String,
    pub tags: Vec<String>,
    /// Why it stays: `rule 2 (newest_per_version_line) keeps v1.1.4`, `v1.0.5 shares a digest
    /// with a survivor`, `child of index sha256:…, which stays`, `v1.0.0 is immutable (tag
    /// rule v*)`…
    pub reasons: Vec<String>,
}

/// A tag the plan deletes, and why.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct TagDeletion {
    pub repository: String,
    pub tag: String,
    pub digest: String,
    /// `selected by no rule`, or which rules select it without keeping it.
    pub reason: String,
}

/// A manifest the plan deletes, and why.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ManifestDeletion {
    pub repository: String,
    pub digest: String,
    /// `its tags all go`, `untagged: rule 2 (most_recently_pushed) does not keep it`,
    /// `refers to sha256:…, which goes`…
    pub reason: String,
}

/// A tag the policy alone would delete but that an immutable tag rule protects: it stays,
/// with its manifest and everything that manifest reaches, and is counted in no deletion.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Protected {
    pub repository: String,
    pub tag: String,
    pub digest: String,
    /// The immutable tag pattern that protects it.
    pub immutable_pattern: String,
    /// Why the policy alone would delete it.
    pub policy_reason: String,
}

/// One evaluation of a policy: the only thing a dry run shows, a real run executes and the
/// history records, so the three cannot disagree.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct Plan {
    pub keep: Vec<Survivor>,
    /// Tags to delete (the manifest itself survives or goes with them), by repository and tag.
    pub delete_tags: Vec<TagDeletion>,
    /// Manifests to delete, in a safe order: an index before its children, a referrer
    /// before its subject.
    pub delete_manifests: Vec<ManifestDeletion>,
    /// Tags the policy alone would delete that tag rules protect (not in `delete_tags`).
    pub protected: Vec<Protected>,
    /// Bytes of manifests and blobs no surviving manifest of the repository references.
    pub freed_bytes: u64,
}

const MICROS: i64 = 1_000_000;

/// A release tag's version line and patch: `v1.4.2` → `((1, 4), 2)`; `None` for tags that are
/// not exactly `vMAJOR.MINOR.PATCH` (`v1.4`, `v1.4.2-rc1`, `latest`). Retention's "newest N
/// per version line" and the usage snapshots' version sizes both group tags by it.
pub fn version_line(tag: &str) -> Option<((u64, u64), u64)> {
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

/// Newest first among candidates of equal time: the higher version (`vMAJOR.MINOR.PATCH`
/// tags, before tags that are not versions), then the digest, then the tag name.
type TieBreak<'a> = (
    std::cmp::Reverse<Option<(u64, u64, u64)>>,
    &'a str,
    Option<&'a str>,
);

impl<'a> Candidate<'a> {
    fn pushed_at_us(&self) -> i64 {
        self.tag
            .map_or(self.artifact.pushed_at_us, |t| t.pushed_at_us)
    }
    fn last_pulled_at(&self) -> Option<i64> {
        self.tag
            .map_or(self.artifact.last_pulled_at, |t| t.last_pulled_at)
    }
    fn tie_break(&self) -> TieBreak<'a> {
        let version = self
            .tag
            .and_then(|t| version_line(&t.name))
            .map(|((major, minor), patch)| (major, minor, patch));
        (
            std::cmp::Reverse(version),
            self.artifact.digest.as_str(),
            self.tag.map(|t| t.name.as_str()),
        )
    }
}

/// Which of `candidates` (of one repository) `keep` keeps, at `now` (Unix seconds).
/// "Most recent" orders by time, newest first, and breaks ties by [`Candidate::tie_break`].
fn kept<'a>(keep: &Keep, candidates: Vec<Candidate<'a>>, now: i64) -> Vec<Candidate<'a>> {
    let mut candidates = candidates;
    let since = |days: i64| (now - days * DAY) * MICROS;
    match keep {
        Keep::Always => candidates,
        Keep::PushedWithinDays(days) => candidates
            .into_iter()
            .filter(|c| c.pushed_at_us() >= since(*days))
            .collect(),
        Keep::PulledWithinDays(days) => candidates
            .into_iter()
            .filter(|c| c.last_pulled_at().is_some_and(|at| at >= now - days * DAY))
            .collect(),
        Keep::MostRecentlyPushed(n) => {
            candidates.sort_by_key(|c| (std::cmp::Reverse(c.pushed_at_us()), c.tie_break()));
            candidates.truncate(*n);
            candidates
        }
        Keep::MostRecentlyPulled(n) => {
            candidates.sort_by_key(|c| {
                (
                    std::cmp::Reverse(c.last_pulled_at()),
                    std::cmp::Reverse(c.pushed_at_us()),
                    c.tie_break(),
                )
            });
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
                    // `v1.0.01` and `v1.0.1` have the same patch: the newer push wins.
                    line.sort_by_key(|(patch, c)| {
                        (
                            std::cmp::Reverse(*patch),
                            std::cmp::Reverse(c.pushed_at_us()),
                            c.tie_break(),
                        )
                    });
                    line.into_iter().take(*n).map(|(_, c)| c)
                })
                .collect()
        }
    }
}

/// What the rules decided about one tag or untagged manifest.
#[derive(Default)]
struct Verdict {
    /// `rule 1 (always) keeps v1`, one per rule that keeps it.
    kept_by: Vec<String>,
    /// `rule 2 (most_recently_pushed)`, one per rule that selects it without keeping it.
    passed_over_by: Vec<String>,
}

impl Verdict {
    /// Why the rules alone would delete it.
    fn deletion_reason(&self) -> String {
        if self.passed_over_by.is_empty() {
            "selected by no rule".to_string()
        } else {
            format!("not kept by {}", self.passed_over_by.join(", "))
        }
    }
}

/// Evaluates `policy` over a project's artifacts at `now` (Unix seconds), with the
/// project's tag rules: a tag an immutable pattern matches is never deleted, whatever the
/// policy says (it is listed in [`Plan::protected`]). Everything a surviving manifest
/// reaches ([`crate::reach`]: index children at any depth, referrers) survives with it.
pub fn evaluate(policy: &Policy, tag_rules: &TagRules, artifacts: &[Artifact], now: i64) -> Plan {
    let applies = |repository: &str| {
        policy
            .rules
            .iter()
            .any(|rule| rule.repositories.matches(repository))
    };
    let looks_at_caches = |repository: &str| {
        policy
            .rules
            .iter()
            .any(|rule| rule.buildkit_cache && rule.repositories.matches(repository))
    };
    // What the rules say about each (repository, tag) and each untagged (repository, digest).
    let mut tag_verdicts: HashMap<(&str, &str), Verdict> = HashMap::new();
    let mut untagged_verdicts: HashMap<(&str, &str), Verdict> = HashMap::new();
    let mut repositories: BTreeMap<&str, Vec<&Artifact>> = BTreeMap::new();
    for a in artifacts {
        repositories
            .entry(a.repository.as_str())
            .or_default()
            .push(a);
    }
    for (i, rule) in policy.rules.iter().enumerate() {
        let label = format!("rule {} ({})", i + 1, keep_name(&rule.keep));
        for (repo, repo_artifacts) in &repositories {
            if !rule.repositories.matches(repo) {
                continue;
            }
            let candidates: Vec<Candidate> = repo_artifacts
                .iter()
                .filter(|a| a.buildkit_cache == rule.buildkit_cache)
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
            fn verdict_of<'a>(c: &Candidate<'a>) -> (&'a str, &'a str, bool) {
                match c.tag {
                    Some(t) => (c.artifact.repository.as_str(), t.name.as_str(), true),
                    None => (
                        c.artifact.repository.as_str(),
                        c.artifact.digest.as_str(),
                        false,
                    ),
                }
            }
            let keys: Vec<_> = candidates.iter().map(|c| verdict_of(c)).collect();
            let kept_keys: BTreeSet<_> = kept(&rule.keep, candidates, now)
                .iter()
                .map(|c| verdict_of(c))
                .collect();
            for key in keys {
                let (repo, name, is_tag) = key;
                let verdicts = if is_tag {
                    &mut tag_verdicts
                } else {
                    &mut untagged_verdicts
                };
                let verdict = verdicts.entry((repo, name)).or_default();
                if kept_keys.contains(&key) {
                    verdict.kept_by.push(format!("{label} keeps {name}"));
                } else {
                    verdict.passed_over_by.push(label.clone());
                }
            }
        }
    }

    // The roots: what the rules keep, what tag rules protect, and what no rule looks at.
    let no_verdict = Verdict::default();
    let mut root_reasons: BTreeMap<(&str, &str), Vec<String>> = BTreeMap::new();
    let mut immutable: Vec<Protected> = Vec::new();
    for a in artifacts {
        let key = (a.repository.as_str(), a.digest.as_str());
        if !applies(&a.repository) {
            root_reasons
                .entry(key)
                .or_default()
                .push("no rule applies to its repository".into());
            continue;
        }
        if a.buildkit_cache && !looks_at_caches(&a.repository) {
            root_reasons
                .entry(key)
                .or_default()
                .push("a BuildKit cache, and no rule selects caches".into());
            continue;
        }
        for t in &a.tags {
            let verdict = tag_verdicts
                .get(&(a.repository.as_str(), t.name.as_str()))
                .unwrap_or(&no_verdict);
            if !verdict.kept_by.is_empty() {
                root_reasons
                    .entry(key)
                    .or_default()
                    .extend(verdict.kept_by.iter().cloned());
            } else if let Some(pattern) = tag_rules.immutable_pattern(&t.name) {
                immutable.push(Protected {
                    repository: a.repository.clone(),
                    tag: t.name.clone(),
                    digest: a.digest.clone(),
                    immutable_pattern: pattern.as_str().to_string(),
                    policy_reason: verdict.deletion_reason(),
                });
            }
        }
        if a.tags.is_empty() && a.subject.is_none() {
            match untagged_verdicts.get(&key) {
                Some(verdict) if !verdict.kept_by.is_empty() => root_reasons
                    .entry(key)
                    .or_default()
                    .extend(verdict.kept_by.iter().cloned()),
                Some(_) => {}
                None => root_reasons
                    .entry(key)
                    .or_default()
                    .push("untagged, and no rule selects untagged manifests".into()),
            }
        }
    }

    // Protected: immutable tags the policy alone would delete (their digest would not
    // survive otherwise). They become roots too, so what they reach stays.
    let graph = crate::reach::Graph::new(artifacts);
    let by_policy = graph.closure(root_reasons.keys().copied());
    let protected: Vec<Protected> = immutable
        .into_iter()
        .filter(|p| !by_policy.contains_key(&(p.repository.as_str(), p.digest.as_str())))
        .collect();
    for p in &protected {
        let key = artifacts
            .iter()
            .find(|a| a.repository == p.repository && a.digest == p.digest)
            .map(|a| (a.repository.as_str(), a.digest.as_str()))
            .expect("protected tags belong to an artifact");
        root_reasons.entry(key).or_default().push(format!(
            "{} is immutable (tag rule {})",
            p.tag, p.immutable_pattern
        ));
    }
    let survivors = graph.closure(root_reasons.keys().copied());
    let mut plan = Plan {
        protected,
        ..Plan::default()
    };
    let mut surviving_blobs: HashMap<&str, BTreeSet<&str>> = HashMap::new();
    let mut deleted: BTreeMap<(&str, &str), &Artifact> = BTreeMap::new();
    let mut manifest_reasons: HashMap<(&str, &str), String> = HashMap::new();
    for a in artifacts {
        let key = (a.repository.as_str(), a.digest.as_str());
        match survivors.get(&key) {
            Some(how) => {
                let mut reasons = root_reasons.remove(&key).unwrap_or_default();
                if *how != crate::reach::Reached::Root {
                    reasons.push(how.to_string());
                }
                for t in &a.tags {
                    let named = reasons.iter().any(|r| {
                        r.ends_with(&format!(" keeps {}", t.name))
                            || r.starts_with(&format!("{} is immutable", t.name))
                    });
                    if !named {
                        reasons.push(format!("{} shares a digest with a survivor", t.name));
                    }
                }
                plan.keep.push(Survivor {
                    repository: a.repository.clone(),
                    digest: a.digest.clone(),
                    tags: a.tags.iter().map(|t| t.name.clone()).collect(),
                    reasons,
                });
                surviving_blobs
                    .entry(a.repository.as_str())
                    .or_default()
                    .extend(a.blobs.iter().map(|(d, _)| d.as_str()));
            }
            None => {
                for t in &a.tags {
                    let verdict = tag_verdicts
                        .get(&(a.repository.as_str(), t.name.as_str()))
                        .unwrap_or(&no_verdict);
                    plan.delete_tags.push(TagDeletion {
                        repository: a.repository.clone(),
                        tag: t.name.clone(),
                        digest: a.digest.clone(),
                        reason: verdict.deletion_reason(),
                    });
                }
                let reason = if !a.tags.is_empty() {
                    "its tags all go".to_string()
                } else if let Some(subject) = &a.subject {
                    if artifacts
                        .iter()
                        .any(|s| s.repository == a.repository && s.digest == *subject)
                    {
                        format!("refers to {subject}, which goes")
                    } else {
                        format!("refers to {subject}, which is not in the repository")
                    }
                } else {
                    format!(
                        "untagged: {}",
                        untagged_verdicts
                            .get(&key)
                            .unwrap_or(&no_verdict)
                            .deletion_reason()
                    )
                };
                manifest_reasons.insert(key, reason);
                deleted.insert(key, a);
            }
        }
    }
    let order: Vec<(&str, &str)> = deleted.keys().copied().collect();
    for key in graph.parents_first(&order) {
        plan.delete_manifests.push(ManifestDeletion {
            repository: key.0.to_string(),
            digest: key.1.to_string(),
            reason: manifest_reasons.remove(&key).unwrap_or_default(),
        });
    }
    let mut freed_blobs: BTreeSet<(&str, &str)> = BTreeSet::new();
    for a in deleted.values() {
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
            pushed_at_us: tag_list
                .iter()
                .map(|t| t.1)
                .min()
                .unwrap_or(NOW - 100 * DAY)
                * MICROS,
            last_pulled_at: tag_list.iter().filter_map(|t| t.2).max(),
            tags: tag_list
                .iter()
                .map(|(name, pushed, pulled)| TagInfo {
                    name: name.to_string(),
                    pushed_at_us: *pushed * MICROS,
                    last_pulled_at: *pulled,
                })
                .collect(),
            subject: None,
            children: vec![],
            size: 500,
            blobs: vec![(format!("blob-{digest}"), 1000), ("base".into(), 50_000)],
            buildkit_cache: false,
        }
    }

    #[test]
    fn buildkit_caches_are_looked_at_only_by_rules_for_caches() {
        let mut cache = artifact("cache", &[("buildcache", NOW - 30 * DAY, None)]);
        cache.buildkit_cache = true;
        let arts = vec![artifact("image", &[("dev-1", NOW - 30 * DAY, None)]), cache];
        let rule = |buildkit_cache: bool| Rule {
            repositories: Selector::default(),
            tags: Selector::default(),
            untagged: false,
            buildkit_cache,
            keep: Keep::PushedWithinDays(7),
        };
        let images_only = Policy {
            rules: vec![rule(false)],
            schedule: None,
        };
        let plan = evaluate(&images_only, &TagRules::default(), &arts, NOW);
        let deleted: Vec<&str> = plan.delete_tags.iter().map(|t| t.tag.as_str()).collect();
        assert_eq!(deleted, ["dev-1"]);
        let kept = plan.keep.iter().find(|s| s.digest == "cache").unwrap();
        assert_eq!(
            kept.reasons[0],
            "a BuildKit cache, and no rule selects caches"
        );
        let with_caches = Policy {
            rules: vec![rule(false), rule(true)],
            schedule: None,
        };
        let plan = evaluate(&with_caches, &TagRules::default(), &arts, NOW);
        let mut deleted: Vec<&str> = plan.delete_tags.iter().map(|t| t.tag.as_str()).collect();
        deleted.sort();
        assert_eq!(deleted, ["buildcache", "dev-1"]);
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
            pushed_at_us: day(40) * MICROS,
            last_pulled_at: None,
        });
        artifacts[6].tags.push(TagInfo {
            name: "commit-mid".into(),
            pushed_at_us: day(10) * MICROS,
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
        let plan = evaluate(&seed_policy(), &TagRules::default(), &scenario(), NOW);
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

        let mut deleted_tags: Vec<&str> = plan.delete_tags.iter().map(|t| t.tag.as_str()).collect();
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
        let a = evaluate(&seed_policy(), &TagRules::default(), &scenario(), NOW);
        let b = evaluate(&seed_policy(), &TagRules::default(), &reversed, NOW);
        let sorted = |v: Vec<ManifestDeletion>| {
            let mut v: Vec<String> = v.into_iter().map(|m| m.digest).collect();
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
        arts[3].pushed_at_us = day(1) * MICROS;
        let rule = |keep: Keep| Policy {
            rules: vec![Rule {
                repositories: Selector::default(),
                tags: tags("x*"),
                untagged: false,
                buildkit_cache: false,
                keep,
            }],
            schedule: None,
        };
        let kept = |p: &Policy| -> Vec<String> {
            let mut d: Vec<String> = evaluate(p, &TagRules::default(), &arts, NOW)
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
            buildkit_cache: false,
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
                buildkit_cache: false,
                keep: Keep::MostRecentlyPushed(0),
            }],
            schedule: None,
        };
        let plan = evaluate(&elsewhere, &TagRules::default(), &arts, NOW);
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

    fn policy(toml_like_json: &str) -> Policy {
        serde_json::from_str(toml_like_json).unwrap()
    }

    fn deleted_manifests(plan: &Plan) -> Vec<&str> {
        plan.delete_manifests
            .iter()
            .map(|m| m.digest.as_str())
            .collect()
    }

    #[test]
    fn retention_never_deletes_children_of_a_kept_index() {
        let mut index = artifact("d-index", &[("v1.0.1", NOW - DAY, None)]);
        index.children = vec!["d-amd64".into(), "d-arm64".into()];
        index.blobs.clear();
        let mut signature = artifact("d-sig-arm64", &[]);
        signature.subject = Some("d-arm64".into());
        let artifacts = vec![
            index,
            artifact("d-amd64", &[]),
            artifact("d-arm64", &[]),
            signature,
            artifact("d-stray", &[]),
        ];
        let policy = policy(
            r#"{"rules": [
                {"tags": {"include": ["v1.0.1"]}, "keep": "always"},
                {"untagged": true, "keep": {"most_recently_pushed": 0}}
            ]}"#,
        );
        let plan = evaluate(&policy, &TagRules::default(), &artifacts, NOW);
        assert_eq!(
            deleted_manifests(&plan),
            ["d-stray"],
            "only the unrelated untagged manifest goes"
        );
        assert!(plan.delete_tags.is_empty());
        let reasons = |digest: &str| {
            plan.keep
                .iter()
                .find(|s| s.digest == digest)
                .unwrap()
                .reasons
                .clone()
        };
        assert_eq!(reasons("d-amd64"), ["child of index d-index, which stays"]);
        assert_eq!(reasons("d-sig-arm64"), ["refers to d-arm64, which stays"]);
        assert_eq!(
            plan.delete_manifests[0].reason,
            "untagged: not kept by rule 2 (most_recently_pushed)"
        );
        // The bytes freed are the stray's alone: the children's blobs stay.
        assert_eq!(plan.freed_bytes, 1500);
    }

    #[test]
    fn immutable_tags_are_protected_in_the_plan_and_counted_in_no_deletion() {
        let rules = TagRules {
            immutable: vec![crate::Pattern::parse("v*").unwrap()],
            ..TagRules::default()
        };
        let plan = evaluate(&seed_policy(), &rules, &scenario(), NOW);
        let mut protected: Vec<&str> = plan.protected.iter().map(|p| p.tag.as_str()).collect();
        protected.sort();
        assert_eq!(protected, ["v1.0.0", "v1.0.1", "v1.0.2", "v1.1.1"]);
        assert!(plan.protected.iter().all(|p| p.immutable_pattern == "v*"
            && p.policy_reason == "not kept by rule 1 (newest_per_version_line)"));
        // What goes is only what no immutable tag holds: commit-old shares v1.0.1's digest.
        let mut deleted_tags: Vec<&str> = plan.delete_tags.iter().map(|t| t.tag.as_str()).collect();
        deleted_tags.sort();
        assert_eq!(deleted_tags, ["commit-bbb", "dev-never", "dev-search"]);
        let mut manifests = deleted_manifests(&plan);
        manifests.sort();
        assert_eq!(manifests, ["d-c2", "d-dev2", "d-dev3"]);
        assert_eq!(plan.freed_bytes, 3 * 1500);
        let v100 = plan.keep.iter().find(|s| s.digest == "d-1.0.0").unwrap();
        assert_eq!(v100.reasons, ["v1.0.0 is immutable (tag rule v*)"]);
        assert!(
            plan.keep.iter().any(|s| s.digest == "d-sig-gone"),
            "the signature of a protected release stays with it"
        );
    }

    #[test]
    fn tags_pushed_in_the_same_second_are_ordered_by_sub_second_time_then_version_then_digest() {
        let second = NOW - DAY;
        let tag = |name: &str, micros: i64| TagInfo {
            name: name.into(),
            pushed_at_us: second * MICROS + micros,
            last_pulled_at: None,
        };
        let with_tag = |digest: &str, t: TagInfo| Artifact {
            tags: vec![t],
            ..artifact(digest, &[])
        };
        let newest = |artifacts: &[Artifact], n: usize| -> Vec<String> {
            let policy = Policy {
                rules: vec![Rule {
                    repositories: Selector::default(),
                    tags: Selector::default(),
                    untagged: false,
                    buildkit_cache: false,
                    keep: Keep::MostRecentlyPushed(n),
                }],
                schedule: None,
            };
            let mut kept: Vec<String> = evaluate(&policy, &TagRules::default(), artifacts, NOW)
                .keep
                .into_iter()
                .flat_map(|s| s.tags)
                .collect();
            kept.sort();
            kept
        };
        // Within one second the microseconds decide, whatever the names.
        let arts = vec![
            with_tag("d-a", tag("v1.0.9", 100)),
            with_tag("d-b", tag("v1.0.1", 300)),
            with_tag("d-c", tag("commit-x", 200)),
        ];
        assert_eq!(newest(&arts, 2), ["commit-x", "v1.0.1"]);
        // Exact ties: the higher version first, version tags before other tags, then digest.
        let arts = vec![
            with_tag("d-a", tag("v1.0.9", 0)),
            with_tag("d-b", tag("v1.0.10", 0)),
            with_tag("d-c", tag("commit-x", 0)),
            with_tag("d-d", tag("commit-y", 0)),
        ];
        assert_eq!(newest(&arts, 1), ["v1.0.10"]);
        assert_eq!(newest(&arts, 2), ["v1.0.10", "v1.0.9"]);
        assert_eq!(
            newest(&arts, 3),
            ["commit-x", "v1.0.10", "v1.0.9"],
            "d-c before d-d"
        );
        let mut reversed = arts.clone();
        reversed.reverse();
        assert_eq!(
            newest(&reversed, 3),
            newest(&arts, 3),
            "the input order does not matter"
        );
    }

    #[test]
    fn every_deleted_item_carries_its_reason_including_selected_by_no_rule() {
        let arts = vec![
            artifact("d-v1", &[("v1.0.0", NOW - 9 * DAY, None)]),
            artifact("d-v2", &[("v1.0.1", NOW - DAY, None)]),
            artifact("d-x", &[("experiment", NOW - DAY, None)]),
        ];
        let policy = policy(
            r#"{"rules": [{"tags": {"include": ["v*"]}, "keep": {"most_recently_pushed": 1}}]}"#,
        );
        let plan = evaluate(&policy, &TagRules::default(), &arts, NOW);
        let mut tags: Vec<(&str, &str)> = plan
            .delete_tags
            .iter()
            .map(|t| (t.tag.as_str(), t.reason.as_str()))
            .collect();
        tags.sort();
        assert_eq!(
            tags,
            [
                ("experiment", "selected by no rule"),
                ("v1.0.0", "not kept by rule 1 (most_recently_pushed)")
            ]
        );
        assert!(plan
            .delete_manifests
            .iter()
            .all(|m| m.reason == "its tags all go"));
        assert_eq!(plan.delete_manifests.len(), 2);
    }

    #[test]
    fn keep_errors_say_what_is_accepted() {
        let keep = |json: &str| serde_json::from_str::<Keep>(json).map_err(|e| e.to_string());
        assert_eq!(keep(r#""always""#), Ok(Keep::Always));
        assert_eq!(
            keep(r#"{"newest_per_version_line": 3}"#),
            Ok(Keep::NewestPerVersionLine(3))
        );
        assert!(keep(r#"{"always": true}"#)
            .unwrap_err()
            .contains(r#"`always` takes no value: write keep = "always""#));
        let unknown = keep(r#"{"forever": 1}"#).unwrap_err();
        assert!(
            unknown.contains("unknown keep rule \"forever\"")
                && unknown.contains("most_recently_pushed"),
            "{unknown}"
        );
        assert!(keep(r#""most_recently_pushed""#)
            .unwrap_err()
            .contains("needs a number"));
        assert!(keep(r#"{"most_recently_pushed": 1, "always": 2}"#)
            .unwrap_err()
            .contains("keep names one rule"));
        // Policies keep their JSON form.
        let text = serde_json::to_string(&Keep::Always).unwrap();
        assert_eq!(text, r#""always""#);
    }

    #[test]
    fn policies_are_data() {
        let policy = seed_policy();
        let json = serde_json::to_string(&policy).unwrap();
        assert_eq!(serde_json::from_str::<Policy>(&json).unwrap(), policy);
        assert!(serde_json::from_str::<Policy>(r#"{"rules":[{"keep":{"forever":1}}]}"#).is_err());
    }
}
