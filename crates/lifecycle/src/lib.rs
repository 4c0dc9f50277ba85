//! Image lifecycle policies, as pure functions of data and time: tag rules (the conventions a
//! push must follow), retention (which tags and manifests a project keeps) and its schedule,
//! archive selection (which artifacts move out of the registry), and the closure all of them
//! respect (`reach`: what a kept artifact reaches is kept with it).

pub mod archive;
pub mod reach;
pub mod retention;
pub mod schedule;
pub mod tag_rules;

pub use tag_rules::{Pattern, TagRuleViolation, TagRules, TagWrite};
