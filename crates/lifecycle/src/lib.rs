//! Image lifecycle policies. So far: tag rules, the per-project conventions a push must follow.

pub mod tag_rules;

pub use tag_rules::{Pattern, TagRuleViolation, TagRules, TagWrite};
