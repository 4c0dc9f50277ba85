//! Version ordering, one per ecosystem, each as its own tools order versions:
//!
//! - [`GoVersion`]: Go's semantic versions exactly as `golang.org/x/mod/semver` compares them
//!   (the `v` optional, as OSV writes them without it), and [`go_toolchain_version`] for the
//!   `stdlib`/`toolchain` versions from a Go release tag.
//! - [`DebianVersion`]: dpkg's ordering (epochs, `~`, revisions) through the `debversion`
//!   crate.
//! - [`AlpineVersion`]: apk-tools' ordering (`src/version.c`).
//!
//! Each is a total order consistent with its equality (`a == b` exactly when
//! `a.cmp(b) == Equal`), including over strings its tool would call invalid, so that sorting
//! a range's events is always well defined; [`Ecosystem::parse`] still refuses versions that
//! are not valid in the ecosystem, and an invalid version is never matched.

use std::cmp::Ordering;
use std::fmt;

/// The version ordering an OSV ecosystem name (`package.ecosystem`) selects.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Ecosystem {
    /// `Go`: module versions and the `stdlib`/`toolchain` versions, Go's semver.
    Go,
    /// `Debian:N` (and bare `Debian`): dpkg versions.
    Debian,
    /// `Alpine:vX.Y` (and bare `Alpine`): apk versions.
    Alpine,
    /// Any other ecosystem: its records are stored but never match, since this crate does not
    /// know how it orders versions.
    Unsupported,
}

impl Ecosystem {
    /// The ordering for an OSV ecosystem name: the part before `:` (the release) decides.
    pub fn of(name: &str) -> Ecosystem {
        match name.split(':').next().unwrap_or_default() {
            "Go" => Ecosystem::Go,
            "Debian" => Ecosystem::Debian,
            "Alpine" => Ecosystem::Alpine,
            _ => Ecosystem::Unsupported,
        }
    }

    /// `text` as a version of this ecosystem; `None` when it is not a valid one (or the
    /// ecosystem is unsupported).
    pub fn parse(self, text: &str) -> Option<Version> {
        match self {
            Ecosystem::Go => GoVersion::parse(text).map(Version::Go),
            Ecosystem::Debian => DebianVersion::parse(text).map(Version::Debian),
            Ecosystem::Alpine => AlpineVersion::parse(text).map(Version::Alpine),
            Ecosystem::Unsupported => None,
        }
    }

    /// `text` as this ecosystem orders it, valid or not (an invalid version sorts below every
    /// valid one); `None` only for an unsupported ecosystem.
    pub fn parse_any(self, text: &str) -> Option<Version> {
        match self {
            Ecosystem::Go => Some(Version::Go(GoVersion::parse_any(text))),
            Ecosystem::Debian => Some(Version::Debian(DebianVersion::parse_any(text))),
            Ecosystem::Alpine => Some(Version::Alpine(AlpineVersion::parse_any(text))),
            Ecosystem::Unsupported => None,
        }
    }

    /// Compares two versions of this ecosystem; `None` for an unsupported ecosystem.
    pub fn compare(self, a: &str, b: &str) -> Option<Ordering> {
        Some(self.parse_any(a)?.cmp(&self.parse_any(b)?))
    }
}

/// A version of one of the supported ecosystems. Versions of different ecosystems never meet
/// in a comparison that matters; they order Go < Debian < Alpine to keep `Ord` total.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub enum Version {
    Go(GoVersion),
    Debian(DebianVersion),
    Alpine(AlpineVersion),
}

// ---------------------------------------------------------------------------------------------
// Go

/// A Go module version, ordered as `golang.org/x/mod/semver.Compare` orders it: `vMAJOR[.MINOR
/// [.PATCH]]` (shorthands only without prerelease), then `-PRERELEASE` (a pseudo-version
/// `v0.0.0-20210101000000-abcdef123456` is a prerelease of v0.0.0, so below v0.0.1), and
/// `+BUILD`, ignored (`v2.0.0+incompatible` == `v2.0.0`). The leading `v` is optional, as OSV
/// leaves it out. Invalid strings are all equal to each other and below every valid version.
#[derive(Debug, Clone)]
pub struct GoVersion {
    parsed: Option<GoSemver>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
struct GoSemver {
    /// Decimal digits without leading zeros.
    major: String,
    minor: String,
    patch: String,
    /// The dot-separated identifiers after `-`; empty for a release.
    prerelease: Vec<String>,
}

impl GoVersion {
    /// A valid Go semantic version (with or without the `v`), else `None`.
    pub fn parse(text: &str) -> Option<GoVersion> {
        let version = GoVersion::parse_any(text);
        version.is_valid().then_some(version)
    }

    /// Any string: an invalid one orders below every valid version.
    pub fn parse_any(text: &str) -> GoVersion {
        let text = text.strip_prefix('v').unwrap_or(text);
        GoVersion {
            parsed: parse_go_semver(text),
        }
    }

    /// Whether the string was a valid semantic version.
    pub fn is_valid(&self) -> bool {
        self.parsed.is_some()
    }

    /// Whether the version has a prerelease part (pseudo-versions do).
    pub fn is_prerelease(&self) -> bool {
        self.parsed
            .as_ref()
            .is_some_and(|p| !p.prerelease.is_empty())
    }
}

/// x/mod/semver's parse, on the text after the `v`.
fn parse_go_semver(text: &str) -> Option<GoSemver> {
    let (major, rest) = take_go_number(text)?;
    let (minor, patch, rest) = if rest.is_empty() {
        ("0", "0", rest)
    } else {
        let (minor, rest) = take_go_number(rest.strip_prefix('.')?)?;
        if rest.is_empty() {
            (minor, "0", rest)
        } else {
            let (patch, rest) = take_go_number(rest.strip_prefix('.')?)?;
            (minor, patch, rest)
        }
    };
    let (prerelease, rest) = match rest.strip_prefix('-') {
        Some(after) => {
            let end = after.find('+').unwrap_or(after.len());
            let identifiers: Vec<String> = after[..end].split('.').map(str::to_string).collect();
            let valid = identifiers.iter().all(|id| {
                !id.is_empty()
                    && id.bytes().all(is_go_ident_byte)
                    && !(id.len() > 1
                        && id.starts_with('0')
                        && id.bytes().all(|b| b.is_ascii_digit()))
            });
            if !valid {
                return None;
            }
            (identifiers, &after[end..])
        }
        None => (Vec::new(), rest),
    };
    if let Some(build) = rest.strip_prefix('+') {
        if build
            .split('.')
            .any(|id| id.is_empty() || !id.bytes().all(is_go_ident_byte))
        {
            return None;
        }
    } else if !rest.is_empty() {
        return None;
    }
    Some(GoSemver {
        major: major.to_string(),
        minor: minor.to_string(),
        patch: patch.to_string(),
        prerelease,
    })
}

/// A decimal number without leading zeros, and the rest.
fn take_go_number(text: &str) -> Option<(&str, &str)> {
    let end = text
        .bytes()
        .position(|b| !b.is_ascii_digit())
        .unwrap_or(text.len());
    let number = &text[..end];
    if number.is_empty() || (number.len() > 1 && number.starts_with('0')) {
        return None;
    }
    Some((number, &text[end..]))
}

fn is_go_ident_byte(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b == b'-'
}

/// Decimal strings without leading zeros: the longer is larger, else lexicographic.
fn compare_decimal(a: &str, b: &str) -> Ordering {
    a.len().cmp(&b.len()).then_with(|| a.cmp(b))
}

impl Ord for GoSemver {
    fn cmp(&self, other: &Self) -> Ordering {
        compare_decimal(&self.major, &other.major)
            .then_with(|| compare_decimal(&self.minor, &other.minor))
            .then_with(|| compare_decimal(&self.patch, &other.patch))
            .then_with(
                || match (self.prerelease.is_empty(), other.prerelease.is_empty()) {
                    (true, true) => Ordering::Equal,
                    (true, false) => Ordering::Greater,
                    (false, true) => Ordering::Less,
                    (false, false) => {
                        for (a, b) in self.prerelease.iter().zip(&other.prerelease) {
                            let ordering = compare_prerelease_identifier(a, b);
                            if ordering != Ordering::Equal {
                                return ordering;
                            }
                        }
                        self.prerelease.len().cmp(&other.prerelease.len())
                    }
                },
            )
    }
}

impl PartialOrd for GoSemver {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

/// SemVer 2.0 §11: numeric identifiers below alphanumeric ones, numerically among
/// themselves; alphanumeric ones in ASCII order.
fn compare_prerelease_identifier(a: &str, b: &str) -> Ordering {
    let numeric = |s: &str| s.bytes().all(|b| b.is_ascii_digit());
    match (numeric(a), numeric(b)) {
        (true, true) => compare_decimal(a, b),
        (true, false) => Ordering::Less,
        (false, true) => Ordering::Greater,
        (false, false) => a.cmp(b),
    }
}

impl Ord for GoVersion {
    fn cmp(&self, other: &Self) -> Ordering {
        // None < Some: an invalid version is below every valid one, as in x/mod/semver.
        self.parsed.cmp(&other.parsed)
    }
}

impl PartialOrd for GoVersion {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

impl PartialEq for GoVersion {
    fn eq(&self, other: &Self) -> bool {
        self.cmp(other) == Ordering::Equal
    }
}

impl Eq for GoVersion {}

/// The semantic version of the Go standard library (OSV package `stdlib`, and `toolchain`)
/// in a Go release, as x/vuln's `semver.GoTagToSemver` maps it: `go1.22.3` → `v1.22.3`,
/// `go1.22` → `v1.22.0`, `go1.21rc2` → `v1.21.0-rc.2`, `go1.9beta1` → `v1.9.0-beta.1`,
/// `go1` → `v1.0.0`; anything after the first space is dropped (`go1.22.3 X:boringcrypto`
/// → `v1.22.3`). `None` for a string that is no Go release tag (`devel …`, `go1.0`).
pub fn go_toolchain_version(tag: &str) -> Option<String> {
    let tag = tag.split_whitespace().next()?;
    if tag == "go1" {
        return Some("v1.0.0".to_string());
    }
    // ^go(\d+\.\d+)(\.\d+|)((beta|rc|-pre)(\d+))?$
    let rest = tag.strip_prefix("go")?;
    let digits = |s: &str| s.bytes().take_while(u8::is_ascii_digit).count();
    let major_len = digits(rest);
    if major_len == 0 || rest.as_bytes().get(major_len) != Some(&b'.') {
        return None;
    }
    let minor_len = digits(&rest[major_len + 1..]);
    if minor_len == 0 {
        return None;
    }
    let major_minor = &rest[..major_len + 1 + minor_len];
    if major_minor == "1.0" {
        return None;
    }
    let mut rest = &rest[major_minor.len()..];
    let mut version = format!("v{major_minor}");
    match rest.strip_prefix('.') {
        Some(after) if digits(after) > 0 => {
            let patch = &after[..digits(after)];
            version.push('.');
            version.push_str(patch);
            rest = &after[patch.len()..];
        }
        Some(_) => return None,
        None => version.push_str(".0"),
    }
    if !rest.is_empty() {
        let kind = ["beta", "rc", "-pre"]
            .into_iter()
            .find(|kind| rest.starts_with(kind))?;
        let number = &rest[kind.len()..];
        if number.is_empty() || digits(number) != number.len() {
            return None;
        }
        if !kind.starts_with('-') {
            version.push('-');
        }
        version.push_str(kind);
        version.push('.');
        version.push_str(number);
    }
    Some(version)
}

// ---------------------------------------------------------------------------------------------
// Debian

/// A Debian package version (`[epoch:]upstream[-revision]`), ordered as dpkg orders it
/// (`1:1.0` > `2.0`, `1.0~rc1` < `1.0`, `1.0-1` < `1.0-2`), through the `debversion` crate.
/// Strings dpkg would refuse order below every valid version, among themselves by bytes.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct DebianVersion {
    parsed: DebianParsed,
}

/// Variant order is the ordering: an invalid version is below every valid one.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
enum DebianParsed {
    /// The text of a version that did not parse, ordered by bytes.
    Invalid(String),
    Valid(debversion::Version),
}

impl DebianVersion {
    /// A valid dpkg version, else `None`.
    pub fn parse(text: &str) -> Option<DebianVersion> {
        let version = DebianVersion::parse_any(text);
        matches!(version.parsed, DebianParsed::Valid(_)).then_some(version)
    }

    /// Any string: an invalid one orders below every valid version.
    pub fn parse_any(text: &str) -> DebianVersion {
        let parsed = match text.parse::<debversion::Version>() {
            Ok(version) => DebianParsed::Valid(version),
            Err(_) => DebianParsed::Invalid(text.to_string()),
        };
        DebianVersion { parsed }
    }
}

// ---------------------------------------------------------------------------------------------
// Alpine

/// An Alpine package version, ordered by apk-tools' rules (apk-tools `src/version.c`, apk 3
/// and 2.14: the grammar `digit{.digit}…{letter}{_suffix{digits}}…{~hash}{-r#}`):
///
/// - the tokens of two versions are compared in turn while they are of the same kind: the
///   first number and the numbers of suffixes and `-rN` numerically; a later number
///   (`.N`) numerically too, unless either starts with `0`, when both compare as strings
///   (`1.01` < `1.1`, `1.01` < `1.010`); a letter by its byte; a suffix by its rank
///   (`_alpha` < `_beta` < `_pre` < `_rc` < (none) < `_cvs` < `_svn` < `_git` < `_hg` <
///   `_p`); a `~hash` as a string;
/// - where one version goes on with a different kind of token than the other: a pre-release
///   suffix (`_alpha`…`_rc`) makes its side the smaller (`1.0_rc1` < `1.0`); otherwise the
///   side whose token comes later in the grammar is the smaller, the end of the version
///   coming after `-r` and an invalid token after everything (`1.2.3` < `1.2.3-r0`,
///   `1.0a` < `1.0.1`, `1.0_p1` > `1.0`, `1.0-foo` < `1.0`);
/// - reading stops at the first token the grammar does not allow; two versions that agree up
///   to such a point are equal.
///
/// The rules are restated and implemented here independently (apk-tools is GPL-2.0), pinned
/// by the tests beside them. Numbers compare exactly at any length (apk reads them into 64
/// bits).
#[derive(Debug, Clone)]
pub struct AlpineVersion {
    tokens: Vec<ApkToken>,
}

/// The kinds of token, in apk's grammar order (which decides when two versions go on with
/// different kinds).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum ApkTokenKind {
    InitialDigit,
    Digit,
    Letter,
    Suffix,
    SuffixNumber,
    CommitHash,
    Revision,
    End,
    Invalid,
}

/// A token's value, as apk compares two tokens of one kind.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
enum ApkValue {
    None,
    /// Compared as bytes: numbers after `.` with a leading zero, commit hashes. Below every
    /// `Number`, as the byte `0` is below `1`…`9`.
    Text(String),
    /// A decimal number without leading zeros, as (digit count, digits): numeric order.
    Number(usize, String),
    Letter(u8),
    /// The suffix's rank: 0–3 `alpha`…`rc`, 5–9 `cvs`…`p` (4 would be no suffix).
    Suffix(u8),
}

#[derive(Debug, Clone, PartialEq, Eq)]
struct ApkToken {
    kind: ApkTokenKind,
    value: ApkValue,
}

const APK_SUFFIXES: [&str; 10] = [
    "alpha", "beta", "pre", "rc", "", "cvs", "svn", "git", "hg", "p",
];
const APK_NO_SUFFIX: u8 = 4;

impl AlpineVersion {
    /// A version apk accepts (`apk version -c`), else `None`.
    pub fn parse(text: &str) -> Option<AlpineVersion> {
        let version = AlpineVersion::parse_any(text);
        (version.tokens.last().map(|t| t.kind) == Some(ApkTokenKind::End)).then_some(version)
    }

    /// Any string, read as far as the grammar allows.
    pub fn parse_any(text: &str) -> AlpineVersion {
        AlpineVersion {
            tokens: tokenize_apk(text.as_bytes()),
        }
    }

    /// The sort key of the token at `index` where the two versions' kinds differ: a
    /// pre-release suffix lowest, then the kinds in reverse grammar order.
    fn rank(&self, index: usize) -> i8 {
        let token = &self.tokens[index];
        match token.value {
            ApkValue::Suffix(rank) if rank < APK_NO_SUFFIX => i8::MIN,
            _ => -(token.kind as i8),
        }
    }
}

/// Splits a version into apk's tokens; the last is `End` or `Invalid`.
fn tokenize_apk(text: &[u8]) -> Vec<ApkToken> {
    use ApkTokenKind::*;
    let number = |digits: &[u8]| {
        let significant = &digits[digits.iter().take_while(|&&b| b == b'0').count()..];
        ApkValue::Number(
            significant.len(),
            String::from_utf8_lossy(significant).into_owned(),
        )
    };
    let span = |from: usize, allowed: fn(&u8) -> bool| {
        from + text[from..].iter().take_while(|b| allowed(b)).count()
    };
    let mut tokens = Vec::new();
    let push = |tokens: &mut Vec<ApkToken>, kind, value| tokens.push(ApkToken { kind, value });
    let end = span(0, u8::is_ascii_digit);
    if end == 0 {
        push(&mut tokens, Invalid, ApkValue::None);
        return tokens;
    }
    push(&mut tokens, InitialDigit, number(&text[..end]));
    let mut kind = InitialDigit;
    let mut at = end;
    loop {
        let Some(&first) = text.get(at) else {
            push(&mut tokens, End, ApkValue::None);
            return tokens;
        };
        let next = match first {
            b'a'..=b'z' if kind <= Digit => {
                at += 1;
                Some((Letter, ApkValue::Letter(first)))
            }
            b'.' | b'0'..=b'9' if !(first == b'.' && kind > Digit) => {
                let from = at + usize::from(first == b'.');
                let to = span(from, u8::is_ascii_digit);
                let digits = &text[from..to];
                at = to;
                match kind {
                    _ if digits.is_empty() => None,
                    InitialDigit | Digit if digits[0] == b'0' => Some((
                        Digit,
                        ApkValue::Text(String::from_utf8_lossy(digits).into_owned()),
                    )),
                    InitialDigit | Digit => Some((Digit, number(digits))),
                    Suffix => Some((SuffixNumber, number(digits))),
                    _ => None,
                }
            }
            b'_' if kind <= SuffixNumber => {
                let to = span(at + 1, u8::is_ascii_lowercase);
                let name = &text[at + 1..to];
                at = to;
                APK_SUFFIXES
                    .iter()
                    .position(|suffix| !suffix.is_empty() && suffix.as_bytes() == name)
                    .map(|rank| (Suffix, ApkValue::Suffix(rank as u8)))
            }
            b'~' if kind < CommitHash => {
                let to = span(at + 1, |b| b.is_ascii_digit() || (b'a'..=b'f').contains(b));
                let hash = &text[at + 1..to];
                at = to;
                (!hash.is_empty()).then(|| {
                    (
                        CommitHash,
                        ApkValue::Text(String::from_utf8_lossy(hash).into_owned()),
                    )
                })
            }
            b'-' if kind < Revision && text.get(at + 1) == Some(&b'r') => {
                let to = span(at + 2, u8::is_ascii_digit);
                let digits = &text[at + 2..to];
                at = to;
                (!digits.is_empty()).then(|| (Revision, number(digits)))
            }
            _ => None,
        };
        match next {
            Some((next_kind, value)) => {
                push(&mut tokens, next_kind, value);
                kind = next_kind;
            }
            None => {
                push(&mut tokens, Invalid, ApkValue::None);
                return tokens;
            }
        }
    }
}

impl Ord for AlpineVersion {
    fn cmp(&self, other: &Self) -> Ordering {
        for (index, (a, b)) in self.tokens.iter().zip(&other.tokens).enumerate() {
            if a.kind != b.kind {
                return self.rank(index).cmp(&other.rank(index));
            }
            if matches!(a.kind, ApkTokenKind::End | ApkTokenKind::Invalid) {
                return Ordering::Equal;
            }
            let ordering = a.value.cmp(&b.value);
            if ordering != Ordering::Equal {
                return ordering;
            }
        }
        unreachable!("both token lists end in End or Invalid, where the loop returns")
    }
}

impl PartialOrd for AlpineVersion {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

impl PartialEq for AlpineVersion {
    fn eq(&self, other: &Self) -> bool {
        self.cmp(other) == Ordering::Equal
    }
}

impl Eq for AlpineVersion {}

impl fmt::Display for Ecosystem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Ecosystem::Go => "Go",
            Ecosystem::Debian => "Debian",
            Ecosystem::Alpine => "Alpine",
            Ecosystem::Unsupported => "unsupported",
        })
    }
}
