//! Tag rules of a project: tags matching an immutable pattern can be pushed once and never
//! moved or deleted; when allowed patterns are set, other tags are refused; `latest` can be
//! refused outright. Patterns are globs: `*` any run of characters, `?` one character.

use serde::{Deserialize, Serialize};

/// A tag glob, e.g. `v*`, `release-?.?`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct Pattern(String);

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "tag pattern {0:?} is invalid: use tag characters (A-Za-z0-9_.-) with * and ?, at most 128"
)]
pub struct InvalidPattern(String);

impl TryFrom<String> for Pattern {
    type Error = InvalidPattern;

    fn try_from(s: String) -> Result<Self, Self::Error> {
        let valid = !s.is_empty()
            && s.len() <= 128
            && s.chars()
                .all(|c| c.is_ascii_alphanumeric() || "_.-*?".contains(c));
        if valid {
            Ok(Pattern(s))
        } else {
            Err(InvalidPattern(s))
        }
    }
}

impl From<Pattern> for String {
    fn from(p: Pattern) -> String {
        p.0
    }
}

impl Pattern {
    pub fn parse(s: &str) -> Result<Pattern, InvalidPattern> {
        Pattern::try_from(s.to_string())
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    pub fn matches(&self, tag: &str) -> bool {
        glob_match(&self.0, tag)
    }
}

/// Glob match (`*`, `?`) without backtracking blow-up: the classic two-pointer algorithm.
pub(crate) fn glob_match(pattern: &str, text: &str) -> bool {
    let (p, t) = (pattern.as_bytes(), text.as_bytes());
    let (mut pi, mut ti) = (0, 0);
    let mut star: Option<(usize, usize)> = None;
    while ti < t.len() {
        if pi < p.len() && (p[pi] == b'?' || p[pi] == t[ti]) {
            pi += 1;
            ti += 1;
        } else if pi < p.len() && p[pi] == b'*' {
            star = Some((pi, ti));
            pi += 1;
        } else if let Some((sp, st)) = star {
            pi = sp + 1;
            ti = st + 1;
            star = Some((sp, st + 1));
        } else {
            return false;
        }
    }
    p[pi..].iter().all(|c| *c == b'*')
}

/// A project's tag rules; the default allows everything.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TagRules {
    /// Tags matching any of these are written once: no re-push of another digest, no delete.
    #[serde(default)]
    pub immutable: Vec<Pattern>,
    /// When not empty, only tags matching one of these may be pushed.
    #[serde(default)]
    pub allowed: Vec<Pattern>,
    /// Refuse the tag `latest`.
    #[serde(default)]
    pub refuse_latest: bool,
}

/// How a tag may be written, once the rules allow it at all.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TagWrite {
    Mutable,
    /// The tag may be created, or pushed again with the same digest, never moved.
    Immutable,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TagRuleViolation {
    #[error(
        "tag {tag:?} is not allowed in project {project:?}: its tag rules allow only {allowed}"
    )]
    NotAllowed {
        project: String,
        tag: String,
        allowed: String,
    },
    #[error("tag \"latest\" is refused in project {project:?} (tag rule refuse_latest): push a version tag")]
    Latest { project: String },
    #[error("tag {tag:?} is immutable in project {project:?} (tag rule immutable {pattern:?}): it cannot be {what}")]
    Immutable {
        project: String,
        tag: String,
        pattern: String,
        /// `moved to another digest`, `deleted`
        what: &'static str,
    },
}

impl TagRules {
    /// The immutable pattern `tag` matches, if any.
    pub fn immutable_pattern(&self, tag: &str) -> Option<&Pattern> {
        self.immutable.iter().find(|p| p.matches(tag))
    }

    /// Whether `tag` may be pushed in `project`, and how.
    pub fn check_push(&self, project: &str, tag: &str) -> Result<TagWrite, TagRuleViolation> {
        if self.refuse_latest && tag == "latest" {
            return Err(TagRuleViolation::Latest {
                project: project.to_string(),
            });
        }
        if !self.allowed.is_empty() && !self.allowed.iter().any(|p| p.matches(tag)) {
            return Err(TagRuleViolation::NotAllowed {
                project: project.to_string(),
                tag: tag.to_string(),
                allowed: self
                    .allowed
                    .iter()
                    .map(Pattern::as_str)
                    .collect::<Vec<_>>()
                    .join(", "),
            });
        }
        Ok(match self.immutable_pattern(tag) {
            Some(_) => TagWrite::Immutable,
            None => TagWrite::Mutable,
        })
    }

    /// The refusal for changing `tag` in a way immutability forbids, if it is immutable.
    pub fn check_change(
        &self,
        project: &str,
        tag: &str,
        what: &'static str,
    ) -> Result<(), TagRuleViolation> {
        match self.immutable_pattern(tag) {
            Some(pattern) => Err(TagRuleViolation::Immutable {
                project: project.to_string(),
                tag: tag.to_string(),
                pattern: pattern.as_str().to_string(),
                what,
            }),
            None => Ok(()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(s: &str) -> Pattern {
        Pattern::parse(s).unwrap()
    }

    #[test]
    fn globs_match_like_shells_do() {
        for (pattern, tag, want) in [
            ("v*", "v1.2.0", true),
            ("v*", "latest", false),
            ("*", "", true),
            ("v?.?", "v1.2", true),
            ("v?.?", "v1.20", false),
            ("commit-*", "commit-abc123", true),
            ("*-rc*", "v1.0.0-rc2", true),
            ("*-rc*", "v1.0.0", false),
            ("a*b*c", "axxbyyc", true),
            ("a*b*c", "axxbyy", false),
            ("dev-latest", "dev-latest", true),
        ] {
            assert_eq!(p(pattern).matches(tag), want, "{pattern} ~ {tag}");
        }
        for bad in ["", "v/1", "v 1", "ü*", &"x".repeat(129)] {
            assert!(Pattern::parse(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn push_checks_name_the_rule() {
        let rules = TagRules {
            immutable: vec![p("v*")],
            allowed: vec![p("v*"), p("commit-*"), p("dev-*")],
            refuse_latest: true,
        };
        assert_eq!(rules.check_push("team", "v1.0.0"), Ok(TagWrite::Immutable));
        assert_eq!(
            rules.check_push("team", "dev-latest"),
            Ok(TagWrite::Mutable)
        );
        let latest = rules.check_push("team", "latest").unwrap_err();
        assert!(latest.to_string().contains("refuse_latest"), "{latest}");
        let other = rules.check_push("team", "nightly").unwrap_err();
        assert!(other.to_string().contains("v*, commit-*, dev-*"), "{other}");
        let moved = rules
            .check_change("team", "v1.0.0", "moved to another digest")
            .unwrap_err();
        assert!(moved.to_string().contains("immutable \"v*\""), "{moved}");
        assert!(rules.check_change("team", "dev-latest", "deleted").is_ok());
        assert_eq!(
            TagRules::default().check_push("t", "latest"),
            Ok(TagWrite::Mutable)
        );
    }

    #[test]
    fn rules_round_trip_as_json_and_refuse_bad_input() {
        let rules: TagRules =
            serde_json::from_str(r#"{"immutable":["v*"],"refuse_latest":true}"#).unwrap();
        assert!(rules.allowed.is_empty());
        let back: TagRules = serde_json::from_str(&serde_json::to_string(&rules).unwrap()).unwrap();
        assert_eq!(back, rules);
        assert!(serde_json::from_str::<TagRules>(r#"{"immutable":["v/*"]}"#).is_err());
        assert!(serde_json::from_str::<TagRules>(r#"{"imutable":["v*"]}"#).is_err());
    }

    proptest::proptest! {
        #[test]
        fn a_star_matches_everything_and_a_tag_matches_itself(tag in "[A-Za-z0-9_.-]{1,40}") {
            proptest::prop_assert!(p("*").matches(&tag));
            proptest::prop_assert!(p(&tag).matches(&tag));
            let prefix = format!("{tag}*");
            proptest::prop_assert!(p(&prefix).matches(&tag));
        }
    }
}
