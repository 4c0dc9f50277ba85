//! When a policy runs by itself: a cron pattern in UTC, five fields (`0 3 * * *`: daily at
//! 03:00) or six with seconds first.

use std::str::FromStr;

use chrono::{DateTime, Utc};
use croner::parser::CronParser;
use croner::Cron;
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct Schedule {
    text: String,
    cron: Cron,
}

impl PartialEq for Schedule {
    fn eq(&self, other: &Self) -> bool {
        self.text == other.text
    }
}

impl Eq for Schedule {}

#[derive(Debug, thiserror::Error)]
#[error(
    "schedule {text:?} is not a cron pattern such as \"0 3 * * *\" (daily at 03:00 UTC): {reason}"
)]
pub struct InvalidSchedule {
    text: String,
    reason: String,
}

impl FromStr for Schedule {
    type Err = InvalidSchedule;

    fn from_str(text: &str) -> Result<Schedule, InvalidSchedule> {
        let cron = CronParser::builder()
            .build()
            .parse(text)
            .map_err(|e| InvalidSchedule {
                text: text.to_string(),
                reason: e.to_string(),
            })?;
        Ok(Schedule {
            text: text.trim().to_string(),
            cron,
        })
    }
}

impl TryFrom<String> for Schedule {
    type Error = InvalidSchedule;
    fn try_from(text: String) -> Result<Schedule, InvalidSchedule> {
        text.parse()
    }
}

impl From<Schedule> for String {
    fn from(s: Schedule) -> String {
        s.text
    }
}

impl Schedule {
    /// The first time the schedule fires in `(after, until]` (Unix seconds), if it does.
    pub fn firing_between(&self, after: i64, until: i64) -> Option<i64> {
        let start = DateTime::<Utc>::from_timestamp(after, 0)?;
        self.cron
            .find_next_occurrence(&start, false)
            .ok()
            .map(|next| next.timestamp())
            .filter(|&next| next <= until)
    }

    pub fn as_str(&self) -> &str {
        &self.text
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    // 2026-11-22T02:59:30Z
    const BEFORE_THREE: i64 = 1_795_316_370;

    #[test]
    fn fires_when_an_occurrence_falls_in_the_window() {
        let daily: Schedule = "0 3 * * *".parse().unwrap();
        let three = BEFORE_THREE + 30;
        assert_eq!(daily.firing_between(BEFORE_THREE, three), Some(three));
        assert_eq!(daily.firing_between(BEFORE_THREE, three - 1), None);
        assert_eq!(daily.firing_between(three, BEFORE_THREE + 3600), None);
        let every_second: Schedule = "* * * * * *".parse().unwrap();
        assert_eq!(
            every_second.firing_between(BEFORE_THREE, BEFORE_THREE + 5),
            Some(BEFORE_THREE + 1),
            "the first firing in the window"
        );
    }

    #[test]
    fn bad_patterns_say_what_is_expected() {
        for bad in ["", "every day", "61 * * * *", "* * *"] {
            let e = bad.parse::<Schedule>().unwrap_err();
            assert!(e.to_string().contains("0 3 * * *"), "{e}");
        }
        let json = serde_json::to_string(&"0 3 * * *".parse::<Schedule>().unwrap()).unwrap();
        assert_eq!(json, "\"0 3 * * *\"");
        assert!(serde_json::from_str::<Schedule>("\"nope\"").is_err());
    }
}
