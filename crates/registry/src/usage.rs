//! Usage and growth over time: daily snapshots of what every repository and project holds
//! and how much it is used, and the report read from them — the series per project and
//! repository, the biggest growers over a window, and how the newest image of each version
//! line grew from version to version.

use std::collections::{BTreeMap, HashMap, HashSet};

use gantry_lifecycle::retention::{version_line, Artifact};
use gantry_meta::{RepositoryUsage, UsageFigures, UsageSnapshot, VersionSize};
use serde::Serialize;

use crate::{Registry, Result};

/// The UTC day (`YYYY-MM-DD`) of Unix time `secs`.
pub fn day_of(secs: i64) -> String {
    chrono::DateTime::from_timestamp(secs, 0)
        .unwrap_or_default()
        .date_naive()
        .format("%Y-%m-%d")
        .to_string()
}

/// The UTC day `days` days before the day of `secs`.
fn days_before(secs: i64, days: u32) -> String {
    day_of(secs.saturating_sub(i64::from(days) * 86_400))
}

/// What a snapshot recorded.
#[derive(Debug, Clone, Serialize)]
pub struct SnapshotTaken {
    /// The UTC day it is the snapshot of (`YYYY-MM-DD`).
    pub day: String,
    /// When it was taken (Unix seconds).
    pub taken_at: i64,
    pub projects: usize,
    pub repositories: usize,
    pub version_lines: usize,
}

/// A project's or repository's figures on one day.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct DayFigures {
    pub day: String,
    /// Stored bytes, each digest once (per project as its quota counts, or per repository).
    pub bytes: i64,
    /// Manifests held.
    pub artifacts: i64,
    /// Manifest PUTs accepted since counting started (cumulative: a day's pushes are the
    /// difference from the day before).
    pub pushes: i64,
    /// Manifest GETs since counting started (cumulative).
    pub pulls: i64,
}

impl DayFigures {
    fn new(day: &str, f: UsageFigures) -> DayFigures {
        DayFigures {
            day: day.to_string(),
            bytes: f.bytes,
            artifacts: f.artifacts,
            pushes: f.pushes,
            pulls: f.pulls,
        }
    }
}

/// The days of one project or repository, oldest first.
#[derive(Debug, Clone, Serialize)]
pub struct Series {
    pub project: String,
    /// `None` for a project's own series.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub repository: Option<String>,
    pub days: Vec<DayFigures>,
}

/// A repository's change over the window: from its figures on the window's first snapshot
/// day (zeros if it did not exist yet) to its latest.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Grower {
    pub project: String,
    pub repository: String,
    pub first_day: String,
    pub first_bytes: i64,
    pub last_day: String,
    pub last_bytes: i64,
    pub bytes_growth: i64,
    pub pushes: i64,
    pub pulls: i64,
}

/// The newest artifact of a version line, as last recorded in the window.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct VersionPoint {
    /// `v1.4`.
    pub line: String,
    /// `v1.4.2`: the line's highest patch when recorded.
    pub tag: String,
    pub digest: String,
    pub bytes: i64,
    /// The snapshot day this comes from.
    pub day: String,
}

/// How a repository's image size went from its lowest version line to its highest.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct VersionGrowth {
    pub project: String,
    pub repository: String,
    /// Every version line, lowest first.
    pub versions: Vec<VersionPoint>,
    pub first: VersionPoint,
    pub last: VersionPoint,
    /// `last.bytes / first.bytes` (1.0 when the first is empty).
    pub ratio: f64,
}

/// Everything `GET /api/v1/usage` answers.
#[derive(Debug, Clone, Serialize)]
pub struct UsageReport {
    /// The window: snapshot days from `since` to `until` (inclusive, UTC).
    pub since: String,
    pub until: String,
    pub projects: Vec<Series>,
    pub repositories: Vec<Series>,
    /// Repositories by bytes growth over the window, largest first (growth above zero only).
    pub growers: Vec<Grower>,
    /// Repositories with version tags, those that grew most (by ratio) first.
    pub versions: Vec<VersionGrowth>,
}

/// How many repositories the growers list keeps.
const GROWERS: usize = 10;

/// Bytes of artifact `artifact`: its manifest, its blobs and, for an index, its children at
/// any depth, each digest once (platform images sharing a layer count it once).
fn artifact_bytes(artifact: &Artifact, by_digest: &HashMap<&str, &Artifact>) -> i64 {
    let mut seen: HashSet<&str> = HashSet::new();
    let mut pending = vec![artifact];
    let mut bytes: u64 = 0;
    while let Some(a) = pending.pop() {
        if !seen.insert(a.digest.as_str()) {
            continue;
        }
        bytes += a.size;
        for (digest, size) in &a.blobs {
            if seen.insert(digest.as_str()) {
                bytes += size;
            }
        }
        pending.extend(a.children.iter().filter_map(|c| by_digest.get(c.as_str())));
    }
    bytes as i64
}

/// A version line, `(major, minor)`.
type Line = (u64, u64);

/// The newest artifact of a version line found so far: the highest patch, then the latest push.
struct Newest<'a> {
    patch: u64,
    pushed_at_us: i64,
    tag: &'a str,
    artifact: &'a Artifact,
}

/// The newest artifact of each version line of each repository of `artifacts`.
fn version_sizes(project: &str, artifacts: &[Artifact]) -> Vec<VersionSize> {
    // repository → its artifacts by digest (an index's children are in its repository).
    let mut repositories: BTreeMap<&str, HashMap<&str, &Artifact>> = BTreeMap::new();
    for a in artifacts {
        repositories
            .entry(a.repository.as_str())
            .or_default()
            .insert(a.digest.as_str(), a);
    }
    let mut sizes = Vec::new();
    for (repository, by_digest) in &repositories {
        let mut newest: BTreeMap<Line, Newest> = BTreeMap::new();
        for a in by_digest.values() {
            for tag in &a.tags {
                let Some((line, patch)) = version_line(&tag.name) else {
                    continue;
                };
                let candidate = Newest {
                    patch,
                    pushed_at_us: a.pushed_at_us,
                    tag: tag.name.as_str(),
                    artifact: a,
                };
                match newest.get(&line) {
                    Some(n) if (n.patch, n.pushed_at_us) >= (patch, a.pushed_at_us) => {}
                    _ => {
                        newest.insert(line, candidate);
                    }
                }
            }
        }
        sizes.extend(newest.into_iter().map(|((major, minor), n)| VersionSize {
            day: String::new(),
            project: project.to_string(),
            repository: repository.to_string(),
            line: format!("v{major}.{minor}"),
            tag: n.tag.to_string(),
            digest: n.artifact.digest.clone(),
            bytes: artifact_bytes(n.artifact, by_digest),
            pushed_at_us: n.pushed_at_us,
        }));
    }
    sizes
}

/// Orders version lines `v1.10` after `v1.9`.
fn line_order(line: &str) -> Line {
    version_line(&format!("{line}.0")).map_or((u64::MAX, u64::MAX), |(l, _)| l)
}

/// The report of `history` (snapshot rows from `since` on).
fn report(history: UsageSnapshot, since: String, until: String) -> UsageReport {
    let projects = series(history.projects.iter().map(|p| {
        (
            (p.project.clone(), None),
            DayFigures::new(&p.day, p.figures),
        )
    }));
    let repositories = series(history.repositories.iter().map(|r| {
        (
            (r.project.clone(), Some(r.repository.clone())),
            DayFigures::new(&r.day, r.figures),
        )
    }));
    let growers = growers(&history.repositories);
    let versions = version_growth(&history.versions);
    UsageReport {
        since,
        until,
        projects,
        repositories,
        growers,
        versions,
    }
}

fn series(rows: impl Iterator<Item = ((String, Option<String>), DayFigures)>) -> Vec<Series> {
    let mut grouped: BTreeMap<(String, Option<String>), Vec<DayFigures>> = BTreeMap::new();
    for (key, day) in rows {
        grouped.entry(key).or_default().push(day);
    }
    grouped
        .into_iter()
        .map(|((project, repository), days)| Series {
            project,
            repository,
            days,
        })
        .collect()
}

fn growers(rows: &[RepositoryUsage]) -> Vec<Grower> {
    let Some(first_day) = rows.iter().map(|r| r.day.as_str()).min() else {
        return Vec::new();
    };
    let mut by_repository: BTreeMap<&str, Vec<&RepositoryUsage>> = BTreeMap::new();
    for r in rows {
        by_repository.entry(&r.repository).or_default().push(r);
    }
    let mut growers: Vec<Grower> = by_repository
        .into_values()
        .filter_map(|days| {
            let last = *days.iter().max_by(|a, b| a.day.cmp(&b.day))?;
            let first = days
                .iter()
                .find(|r| r.day == first_day)
                .map_or(UsageFigures::default(), |r| r.figures);
            let growth = last.figures.bytes - first.bytes;
            (growth > 0).then(|| Grower {
                project: last.project.clone(),
                repository: last.repository.clone(),
                first_day: first_day.to_string(),
                first_bytes: first.bytes,
                last_day: last.day.clone(),
                last_bytes: last.figures.bytes,
                bytes_growth: growth,
                pushes: last.figures.pushes - first.pushes,
                pulls: last.figures.pulls - first.pulls,
            })
        })
        .collect();
    growers.sort_by(|a, b| {
        b.bytes_growth
            .cmp(&a.bytes_growth)
            .then_with(|| a.repository.cmp(&b.repository))
    });
    growers.truncate(GROWERS);
    growers
}

fn version_growth(rows: &[VersionSize]) -> Vec<VersionGrowth> {
    // (project, repository) → line → latest row (rows come ordered by day).
    let mut latest: BTreeMap<(&str, &str), BTreeMap<Line, &VersionSize>> = BTreeMap::new();
    for v in rows {
        latest
            .entry((&v.project, &v.repository))
            .or_default()
            .insert(line_order(&v.line), v);
    }
    let mut growth: Vec<VersionGrowth> = latest
        .into_iter()
        .filter_map(|((project, repository), lines)| {
            let versions: Vec<VersionPoint> = lines
                .into_values()
                .map(|v| VersionPoint {
                    line: v.line.clone(),
                    tag: v.tag.clone(),
                    digest: v.digest.clone(),
                    bytes: v.bytes,
                    day: v.day.clone(),
                })
                .collect();
            let first = versions.first()?.clone();
            let last = versions.last()?.clone();
            let ratio = if first.bytes > 0 {
                last.bytes as f64 / first.bytes as f64
            } else {
                1.0
            };
            Some(VersionGrowth {
                project: project.to_string(),
                repository: repository.to_string(),
                versions,
                first,
                last,
                ratio,
            })
        })
        .collect();
    growth.sort_by(|a, b| {
        b.ratio
            .total_cmp(&a.ratio)
            .then_with(|| a.repository.cmp(&b.repository))
    });
    growth
}

impl Registry {
    /// Takes the snapshot of the UTC day of `now` (Unix seconds), replacing one taken earlier
    /// that day: pull counts gathered in memory are written first, so they are in it.
    pub async fn take_usage_snapshot(&self, now: i64) -> Result<SnapshotTaken> {
        self.flush_pulls().await?;
        let day = day_of(now);
        let repositories = self.meta.repository_usage_now().await?;
        // Every project, also those that hold nothing yet (their series starts at zero).
        let mut projects: BTreeMap<String, UsageFigures> = self
            .meta
            .projects()
            .await?
            .into_iter()
            .map(|p| (p.name, UsageFigures::default()))
            .collect();
        for quota in self.meta.quotas().await? {
            let figures = projects.entry(quota.project).or_default();
            figures.bytes = quota.used.bytes;
            figures.artifacts = quota.used.artifacts;
        }
        for r in &repositories {
            let figures = projects.entry(r.project.clone()).or_default();
            figures.pushes += r.figures.pushes;
            figures.pulls += r.figures.pulls;
        }
        let mut versions = Vec::new();
        for project in projects.keys() {
            let artifacts = self.project_artifacts(project).await?;
            versions.extend(version_sizes(project, &artifacts));
        }
        let snapshot = UsageSnapshot {
            projects: projects
                .into_iter()
                .map(|(project, figures)| gantry_meta::ProjectUsage {
                    day: day.clone(),
                    project,
                    figures,
                })
                .collect(),
            repositories,
            versions,
        };
        self.meta
            .replace_usage_snapshot(&day, now, &snapshot)
            .await?;
        Ok(SnapshotTaken {
            day,
            taken_at: now,
            projects: snapshot.projects.len(),
            repositories: snapshot.repositories.len(),
            version_lines: snapshot.versions.len(),
        })
    }

    /// Takes the snapshot of the day of `now` unless that day has one (the daily schedule).
    pub async fn take_missing_usage_snapshot(&self, now: i64) -> Result<Option<SnapshotTaken>> {
        if self.meta.has_usage_snapshot(&day_of(now)).await? {
            return Ok(None);
        }
        // Not claimed as a firing: the day's rows are the record, and a snapshot taken twice
        // (two servers looking at once) replaces the first, while a claim would keep a day
        // whose rows are missing from ever being taken again.
        self.take_usage_snapshot(now).await.map(Some)
    }

    /// The usage report of `project` (or every project) over the snapshots of the last
    /// `days` days before the day of `now`, today included.
    pub async fn usage_report(
        &self,
        project: Option<&str>,
        days: u32,
        now: i64,
    ) -> Result<UsageReport> {
        let since = days_before(now, days);
        let history = self.meta.usage_history(project, &since).await?;
        Ok(report(history, since, day_of(now)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use gantry_lifecycle::retention::TagInfo;

    fn artifact(digest: &str, tags: &[&str], pushed_at_us: i64, size: u64) -> Artifact {
        Artifact {
            repository: "team/api".into(),
            digest: digest.into(),
            pushed_at_us,
            last_pulled_at: None,
            tags: tags
                .iter()
                .map(|t| TagInfo {
                    name: t.to_string(),
                    pushed_at_us,
                    last_pulled_at: None,
                })
                .collect(),
            subject: None,
            children: vec![],
            size,
            blobs: vec![
                ("sha256:shared".into(), 100),
                (format!("{digest}-layer"), 1000),
            ],
            buildkit_cache: false,
        }
    }

    #[test]
    fn the_newest_artifact_of_each_version_line_is_recorded_with_its_bytes() {
        let mut index = artifact("sha256:index", &["v2.0.0"], 5, 10);
        index.blobs.clear();
        index.children = vec!["sha256:amd64".into(), "sha256:arm64".into()];
        let artifacts = vec![
            artifact("sha256:a", &["v1.0.0"], 1, 1),
            artifact("sha256:b", &["v1.0.1", "latest"], 2, 2),
            artifact("sha256:c", &["v1.4.0"], 3, 3),
            artifact("sha256:amd64", &[], 4, 4),
            artifact("sha256:arm64", &[], 4, 5),
            index,
            artifact("sha256:rc", &["v1.4.1-rc1", "v1.4"], 6, 6),
        ];
        let sizes: Vec<(String, String, i64)> = version_sizes("team", &artifacts)
            .into_iter()
            .map(|v| (v.line, v.tag, v.bytes))
            .collect();
        assert_eq!(
            sizes,
            [
                ("v1.0".into(), "v1.0.1".into(), 2 + 1100),
                ("v1.4".into(), "v1.4.0".into(), 3 + 1100),
                // The index, its two platform images and their layers; the shared one once.
                ("v2.0".into(), "v2.0.0".into(), 10 + 4 + 5 + 100 + 2000),
            ]
        );
    }

    fn version(day: &str, line: &str, bytes: i64) -> VersionSize {
        VersionSize {
            day: day.into(),
            project: "team".into(),
            repository: "team/api".into(),
            line: line.into(),
            tag: format!("{line}.0"),
            digest: format!("sha256:{line}"),
            bytes,
            pushed_at_us: 0,
        }
    }

    #[test]
    fn version_growth_keeps_lines_retention_deleted_and_orders_them_numerically() {
        let rows = [
            version("2026-01-01", "v1.9", 9_000_000),
            version("2026-01-01", "v1.10", 20_000_000),
            // Later that line's newest image changed; v1.9 is gone from the later day.
            version("2026-01-02", "v1.10", 30_000_000),
        ];
        let growth = version_growth(&rows);
        assert_eq!(growth.len(), 1);
        let lines: Vec<(&str, i64)> = growth[0]
            .versions
            .iter()
            .map(|v| (v.line.as_str(), v.bytes))
            .collect();
        assert_eq!(lines, [("v1.9", 9_000_000), ("v1.10", 30_000_000)]);
        assert_eq!(growth[0].ratio, 30_000_000.0 / 9_000_000.0);
    }

    #[test]
    fn growers_count_from_the_windows_first_day_and_a_new_repository_from_zero() {
        let row = |day: &str, repository: &str, bytes, pushes| RepositoryUsage {
            day: day.into(),
            project: "team".into(),
            repository: repository.into(),
            figures: UsageFigures {
                bytes,
                artifacts: 1,
                pushes,
                pulls: 0,
            },
        };
        let rows = [
            row("2026-01-01", "team/api", 10, 1),
            row("2026-01-01", "team/flat", 10, 1),
            row("2026-01-03", "team/api", 40, 4),
            row("2026-01-03", "team/flat", 10, 1),
            row("2026-01-03", "team/new", 25, 2),
        ];
        let growers = growers(&rows);
        let grown: Vec<(&str, i64, i64)> = growers
            .iter()
            .map(|g| (g.repository.as_str(), g.bytes_growth, g.pushes))
            .collect();
        assert_eq!(grown, [("team/api", 30, 3), ("team/new", 25, 2)]);
    }

    #[test]
    fn days_are_utc_calendar_days() {
        assert_eq!(day_of(0), "1970-01-01");
        assert_eq!(day_of(86_399), "1970-01-01");
        assert_eq!(days_before(86_400 * 31, 30), "1970-01-02");
    }
}
