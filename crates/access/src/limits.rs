//! The ranges of the integers the access service takes from API requests. The server's
//! `openapi.json` gives each as `minimum`/`maximum`, and a test there checks the two agree;
//! [`within`] refuses what lies outside.

use std::ops::RangeInclusive;

use crate::{AccessError, Result};

/// `ttl_secs` of a CI token: they are meant to live for one pipeline run (at most 7 days).
pub const CI_TOKEN_TTL_SECS: RangeInclusive<u64> = 1..=7 * 24 * 3600;
/// The lifetime of a CI token minted without `ttl_secs`: fifteen minutes.
pub const DEFAULT_CI_TOKEN_TTL_SECS: u64 = 15 * 60;
/// `expires_in_secs` of a robot account: at most ten years.
pub const ROBOT_EXPIRES_IN_SECS: RangeInclusive<u64> = 1..=315_360_000;
/// `limit` of `GET /audit`.
pub const AUDIT_LIMIT: RangeInclusive<u32> = 1..=10_000;
/// `since` and `until` of `GET /audit`: Unix seconds.
pub const UNIX_SECS: RangeInclusive<i64> = 0..=i64::MAX;

/// `value` of the parameter or field `name`, if it lies in `range`; else
/// [`AccessError::Invalid`] naming both ("pause_ms 60001 is out of range: give 0 to 60000").
pub fn within<T: PartialOrd + std::fmt::Display>(
    name: &str,
    value: T,
    range: RangeInclusive<T>,
) -> Result<T> {
    if range.contains(&value) {
        Ok(value)
    } else {
        Err(AccessError::Invalid(format!(
            "{name} {value} is out of range: give {} to {}",
            range.start(),
            range.end()
        )))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn values_outside_a_range_are_refused_naming_the_range() {
        assert_eq!(within("pause_ms", 60_000, 0..=60_000).unwrap(), 60_000);
        match within("pause_ms", 60_001, 0..=60_000) {
            Err(AccessError::Invalid(m)) => {
                assert_eq!(m, "pause_ms 60001 is out of range: give 0 to 60000")
            }
            other => panic!("{other:?}"),
        }
    }
}
