//! Image lifecycle policies: tag rules (the conventions a push must follow) and retention
//! (which tags and manifests a project keeps).

pub mod archive;
pub mod retention;
pub mod tag_rules;

pub use tag_rules::{Pattern, TagRuleViolation, TagRules, TagWrite};
