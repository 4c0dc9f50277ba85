//! Failed-login throttling. Callers check a key per user and per client address before
//! verifying a password, and report the outcome after. Too many failures inside the window
//! lock the key for a while. Time is passed in (Unix seconds), so the rules are tested without
//! sleeping.
//!
//! Use one `Throttle` for users and another for addresses, and track user keys only for users
//! that exist: the user table is then bounded by the real users, and an attacker who fills the
//! address table (addresses are cheap with IPv6) cannot stop a real user's failures from
//! being counted.

use std::collections::HashMap;
use std::sync::Mutex;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ThrottleRules {
    /// Failures allowed inside `window_secs` before the key is locked.
    pub max_failures: u32,
    pub window_secs: u64,
    pub lockout_secs: u64,
    /// Keys remembered at most; expired entries are dropped first, so an attacker spraying
    /// addresses cannot grow memory without bound.
    pub max_keys: usize,
}

impl Default for ThrottleRules {
    fn default() -> Self {
        ThrottleRules {
            max_failures: 5,
            window_secs: 60,
            lockout_secs: 300,
            max_keys: 100_000,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("too many failed logins; try again in {retry_after_secs} s")]
pub struct Locked {
    pub retry_after_secs: u64,
}

#[derive(Debug, Clone, Copy)]
struct Entry {
    failures: u32,
    window_start: u64,
    locked_until: u64,
}

impl Entry {
    fn expired(&self, rules: &ThrottleRules, now: u64) -> bool {
        now >= self.locked_until && now >= self.window_start + rules.window_secs
    }
}

pub struct Throttle {
    rules: ThrottleRules,
    entries: Mutex<HashMap<String, Entry>>,
}

impl Throttle {
    pub fn new(rules: ThrottleRules) -> Throttle {
        Throttle {
            rules,
            entries: Mutex::new(HashMap::new()),
        }
    }

    /// Refuses when `key` is locked.
    pub fn check(&self, key: &str, now: u64) -> Result<(), Locked> {
        let entries = self.entries.lock().expect("throttle lock");
        match entries.get(key) {
            Some(e) if now < e.locked_until => Err(Locked {
                retry_after_secs: e.locked_until - now,
            }),
            _ => Ok(()),
        }
    }

    pub fn failure(&self, key: &str, now: u64) {
        let rules = self.rules;
        let mut entries = self.entries.lock().expect("throttle lock");
        if entries.len() >= rules.max_keys && !entries.contains_key(key) {
            entries.retain(|_, e| !e.expired(&rules, now));
            if entries.len() >= rules.max_keys {
                return; // still full of live entries: this key is not tracked (fail open on memory, not on auth)
            }
        }
        let entry = entries.entry(key.to_string()).or_insert(Entry {
            failures: 0,
            window_start: now,
            locked_until: 0,
        });
        if now >= entry.window_start + rules.window_secs {
            entry.failures = 0;
            entry.window_start = now;
        }
        entry.failures += 1;
        if entry.failures >= rules.max_failures {
            entry.locked_until = now + rules.lockout_secs;
            entry.failures = 0;
            entry.window_start = now;
        }
    }

    /// A successful login clears the key's failures.
    pub fn success(&self, key: &str) {
        self.entries.lock().expect("throttle lock").remove(key);
    }

    #[cfg(test)]
    fn tracked(&self) -> usize {
        self.entries.lock().unwrap().len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rules() -> ThrottleRules {
        ThrottleRules {
            max_failures: 3,
            window_secs: 60,
            lockout_secs: 300,
            max_keys: 4,
        }
    }

    #[test]
    fn locks_after_repeated_failures_and_unlocks_after_the_lockout() {
        let t = Throttle::new(rules());
        for i in 0..2 {
            t.failure("user:alice", 1000 + i);
            assert!(t.check("user:alice", 1000 + i).is_ok());
        }
        t.failure("user:alice", 1002);
        assert_eq!(
            t.check("user:alice", 1002),
            Err(Locked {
                retry_after_secs: 300
            })
        );
        assert_eq!(
            t.check("user:alice", 1250),
            Err(Locked {
                retry_after_secs: 52
            })
        );
        assert!(
            t.check("user:bob", 1002).is_ok(),
            "other keys are unaffected"
        );
        assert!(t.check("user:alice", 1302).is_ok());
    }

    #[test]
    fn failures_spread_beyond_the_window_do_not_lock_and_success_resets() {
        let t = Throttle::new(rules());
        t.failure("addr:192.0.2.7", 0);
        t.failure("addr:192.0.2.7", 30);
        t.failure("addr:192.0.2.7", 61); // a new window starts
        assert!(t.check("addr:192.0.2.7", 61).is_ok());
        t.failure("u", 0);
        t.failure("u", 1);
        t.success("u");
        t.failure("u", 2);
        assert!(t.check("u", 2).is_ok());
    }

    #[test]
    fn memory_stays_bounded_under_address_spraying() {
        let t = Throttle::new(rules());
        for i in 0..100 {
            t.failure(&format!("addr:{i}"), 10);
        }
        assert!(t.tracked() <= 4);
        // Once entries expire they make room again.
        t.failure("addr:new", 10_000);
        assert!(t.tracked() <= 4);
        t.failure("addr:new", 10_000);
        t.failure("addr:new", 10_000);
        assert!(
            t.check("addr:new", 10_000).is_err(),
            "a new key is tracked after expired ones are dropped"
        );
    }
}
