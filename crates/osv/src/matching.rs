//! Whether a package version is affected, by the OSV schema's evaluation rules
//! (<https://ossf.github.io/osv-schema/#evaluation>):
//!
//! - an affected entry applies to a package when its `package.ecosystem` and `package.name`
//!   equal the ones asked about (the ecosystem with its release: `Debian:12`, `Alpine:v3.19`);
//! - each `SEMVER` or `ECOSYSTEM` range's events are sorted by version (`introduced: "0"`
//!   first) and walked in order: at an `introduced` at or below the version the version is
//!   affected, at a `fixed` at or below it not, at a `last_affected` below it not; a range
//!   with `limit` events affects only versions below one of its limits; `GIT` ranges are
//!   never evaluated (an image has packages, not commits);
//! - a version listed in `versions[]` is affected;
//! - versions compare with the ecosystem's ordering ([`crate::Ecosystem`]); a version that is
//!   not valid in its ecosystem (`(devel)`, a string set by `-ldflags`) and any package of an
//!   unsupported ecosystem match nothing; a withdrawn record matches nothing.

use std::cmp::Ordering;

use crate::schema::{Advisory, Affected, Event, GoImport, Range, RangeKind};
use crate::version::{Ecosystem, Version};

/// An affected package entry that applies to a version.
#[derive(Debug, Clone, PartialEq)]
pub struct Match<'a> {
    /// The record's entry that matched.
    pub affected: &'a Affected,
    /// The smallest `fixed` version above the version asked about, as the record writes it
    /// (Go's without the `v`); `None` when no fix is known.
    pub fixed_version: Option<&'a str>,
    /// Go: the vulnerable packages and symbols (`ecosystem_specific.imports`); empty
    /// elsewhere, or when the record names none (then the whole module is vulnerable).
    pub imports: &'a [GoImport],
}

impl Advisory {
    /// Whether `version` of `package` in `ecosystem` (OSV names: `Go`, `Debian:12`,
    /// `Alpine:v3.19`) is affected by this record, with the fix to move to. `None` when it is
    /// not, when the record is withdrawn, when the ecosystem is not supported, or when
    /// `version` is not a valid version of the ecosystem.
    pub fn affects(&self, ecosystem: &str, package: &str, version: &str) -> Option<Match<'_>> {
        if self.withdrawn.is_some() {
            return None;
        }
        let names = |affected: &&Affected| {
            affected
                .package
                .as_ref()
                .is_some_and(|p| p.ecosystem == ecosystem && p.name == package)
        };
        // Most records name other packages: answer those before parsing the version (a
        // scan asks every record about every package).
        if !self.affected.iter().any(|a| names(&a)) {
            return None;
        }
        let ordering = Ecosystem::of(ecosystem);
        let version = ordering.parse(version)?;
        self.affected
            .iter()
            .filter(names)
            .find(|affected| affected_contains(ordering, affected, &version))
            .map(|affected| Match {
                affected,
                fixed_version: smallest_fix_above(ordering, affected, &version),
                imports: affected
                    .ecosystem_specific
                    .as_ref()
                    .map(|specific| specific.imports.as_slice())
                    .unwrap_or_default(),
            })
    }
}

/// Whether one affected entry's ranges or versions contain `version`.
pub fn affected_contains(ecosystem: Ecosystem, affected: &Affected, version: &Version) -> bool {
    affected
        .ranges
        .iter()
        .any(|range| range_contains(ecosystem, range, version))
        || affected
            .versions
            .iter()
            .any(|listed| ecosystem.parse_any(listed).as_ref() == Some(version))
}

/// Whether one range contains `version`, by the schema's evaluation algorithm.
pub fn range_contains(ecosystem: Ecosystem, range: &Range, version: &Version) -> bool {
    if !matches!(range.kind, RangeKind::Semver | RangeKind::Ecosystem) {
        return false;
    }
    let Some(mut events) = sorted_events(ecosystem, range) else {
        return false;
    };
    let mut affected = false;
    let mut limits = Vec::new();
    for (bound, event) in events.drain(..) {
        let at_or_below = |bound: &Option<Version>| bound.as_ref().is_none_or(|b| b <= version);
        match event {
            Event::Introduced(_) if at_or_below(&bound) => affected = true,
            Event::Fixed(_) if at_or_below(&bound) => affected = false,
            Event::LastAffected(_) if bound.as_ref().is_some_and(|b| b < version) => {
                affected = false
            }
            Event::Limit(_) => limits.push(bound),
            _ => {}
        }
    }
    affected
        && (limits.is_empty()
            || limits
                .iter()
                .any(|limit| limit.as_ref().is_some_and(|l| version < l)))
}

/// The range's events with their versions parsed (`None`: `introduced: "0"`, below all),
/// sorted by version, `"0"` first. `None` for an unsupported ecosystem.
fn sorted_events(ecosystem: Ecosystem, range: &Range) -> Option<Vec<(Option<Version>, &Event)>> {
    let mut events = Vec::with_capacity(range.events.len());
    for event in &range.events {
        let bound = match event {
            Event::Introduced(v) if v == "0" => None,
            _ => Some(ecosystem.parse_any(event.version())?),
        };
        events.push((bound, event));
    }
    // Stable: events at one version keep the record's order.
    events.sort_by(|(a, _), (b, _)| match (a, b) {
        (None, None) => Ordering::Equal,
        (None, Some(_)) => Ordering::Less,
        (Some(_), None) => Ordering::Greater,
        (Some(a), Some(b)) => a.cmp(b),
    });
    Some(events)
}

/// The smallest `fixed` of the entry's ranges that is above `version`.
fn smallest_fix_above<'a>(
    ecosystem: Ecosystem,
    affected: &'a Affected,
    version: &Version,
) -> Option<&'a str> {
    affected
        .ranges
        .iter()
        .filter(|range| matches!(range.kind, RangeKind::Semver | RangeKind::Ecosystem))
        .flat_map(|range| &range.events)
        .filter_map(|event| match event {
            Event::Fixed(fixed) => Some((ecosystem.parse_any(fixed)?, fixed.as_str())),
            _ => None,
        })
        .filter(|(fixed, _)| fixed > version)
        .min_by(|(a, _), (b, _)| a.cmp(b))
        .map(|(_, text)| text)
}
