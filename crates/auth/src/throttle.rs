//! Failed-login throttling. Too many failures for a key inside the window lock the key for a
//! while. Time is passed in (Unix seconds), so the rules are tested without sleeping.
//!
//! [`LoginThrottle`] holds the login policy: a locked *user* is refused before the password is
//! checked; a locked *address* refuses nobody with a valid credential (behind a proxy or a
//! NAT'd CI fleet one address is many people, and one stale secret must not lock them all
//! out); it only turns the failures from that address into "back off" answers, and the
//! caller checks their passwords one at a time. Scoped credentials (robots, CI tokens: 256-bit
//! random secrets, not guessable) are not throttled per address at all, and their failures do
//! not count against the address. User keys are tracked only for users that exist: the user
//! table is then bounded by the real users, and an attacker who fills the address table
//! (addresses are cheap with IPv6) cannot stop a real user's failures from being counted.

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

/// One login attempt, as the throttles see it.
#[derive(Debug, Clone, Copy)]
pub struct LoginAttempt<'a> {
    /// The name logged in as (a user, or a scoped credential such as `robot$…`).
    pub name: &'a str,
    /// The client's address (after trusted proxies).
    pub address: &'a str,
    /// Whether `name` is a scoped credential with a random secret (not guessable).
    pub secret: bool,
}

/// What the throttles said before the credential was checked.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Admission {
    /// The address is locked out: a failure from it is answered with [`Locked`], and the
    /// caller should check its credentials one at a time (it is suspected of guessing).
    pub address_locked: Option<Locked>,
}

/// The failed-login policy over a per-user and a per-address [`Throttle`] (see the module
/// documentation).
pub struct LoginThrottle {
    users: Throttle,
    addresses: Throttle,
}

impl LoginThrottle {
    pub fn new(rules: ThrottleRules) -> LoginThrottle {
        LoginThrottle {
            users: Throttle::new(rules),
            addresses: Throttle::new(rules),
        }
    }

    fn user_key(attempt: &LoginAttempt<'_>) -> String {
        format!("user:{}", attempt.name)
    }

    fn address_key(attempt: &LoginAttempt<'_>) -> String {
        format!("addr:{}", attempt.address)
    }

    /// Before the credential is checked. Errors: [`Locked`] when the user is locked (then the
    /// credential is not checked at all). A locked address refuses no one here.
    pub fn admit(&self, attempt: &LoginAttempt<'_>, now: u64) -> Result<Admission, Locked> {
        self.users.check(&Self::user_key(attempt), now)?;
        let address_locked = if attempt.secret {
            None
        } else {
            self.addresses.check(&Self::address_key(attempt), now).err()
        };
        Ok(Admission { address_locked })
    }

    /// After the credential was checked and found valid: the user's failures are forgiven
    /// (the address's are not: other people may be failing there).
    pub fn succeeded(&self, attempt: &LoginAttempt<'_>) {
        self.users.success(&Self::user_key(attempt));
    }

    /// After the credential was checked and found wrong. `known_user`: `name` is a user that
    /// exists. Errors: [`Locked`] when the address was already locked out at admission, so
    /// the client is told to back off rather than to try another password.
    pub fn failed(
        &self,
        attempt: &LoginAttempt<'_>,
        admission: Admission,
        known_user: bool,
        now: u64,
    ) -> Result<(), Locked> {
        if attempt.secret {
            return Ok(());
        }
        self.addresses.failure(&Self::address_key(attempt), now);
        if known_user {
            self.users.failure(&Self::user_key(attempt), now);
        }
        match admission.address_locked {
            Some(locked) => Err(locked),
            None => Ok(()),
        }
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

    /// Runs one attempt through the policy; `Ok(true)`: logged in.
    fn login(
        t: &LoginThrottle,
        attempt: LoginAttempt<'_>,
        valid: bool,
        known_user: bool,
        now: u64,
    ) -> Result<bool, Locked> {
        let admission = t.admit(&attempt, now)?;
        if valid {
            t.succeeded(&attempt);
            return Ok(true);
        }
        t.failed(&attempt, admission, known_user, now)
            .map(|()| false)
    }

    fn user<'a>(name: &'a str, address: &'a str) -> LoginAttempt<'a> {
        LoginAttempt {
            name,
            address,
            secret: false,
        }
    }

    #[test]
    fn a_valid_password_is_not_refused_after_another_names_failures_from_the_same_address() {
        let t = LoginThrottle::new(rules());
        for i in 0..3 {
            assert_eq!(
                login(&t, user("nobody", "192.0.2.7"), false, false, 100 + i),
                Ok(false)
            );
        }
        // The address is locked: its failures are answered "back off"...
        assert_eq!(
            login(&t, user("mallory", "192.0.2.7"), false, false, 104),
            Err(Locked {
                retry_after_secs: 298
            })
        );
        // ...but the admin with the right password behind the same address gets in.
        assert_eq!(
            login(&t, user("admin", "192.0.2.7"), true, true, 105),
            Ok(true)
        );
        // And the lock still holds for failures.
        assert!(login(&t, user("admin", "192.0.2.7"), false, true, 106).is_err());
    }

    #[test]
    fn a_ci_secret_still_works_after_failures_from_its_address_and_its_failures_do_not_lock_it() {
        let t = LoginThrottle::new(rules());
        let ci = LoginAttempt {
            name: "ci$deploy",
            address: "192.0.2.9",
            secret: true,
        };
        // A stale CI secret failing over and over locks nobody out, itself included.
        for i in 0..10 {
            assert_eq!(login(&t, ci, false, false, 100 + i), Ok(false));
        }
        assert_eq!(
            login(&t, user("admin", "192.0.2.9"), false, true, 111),
            Ok(false),
            "the secret's failures did not count against the address"
        );
        // Users failing from the address lock it; a CI secret is still checked and accepted.
        for i in 0..3 {
            let _ = login(&t, user("nobody", "192.0.2.9"), false, false, 112 + i);
        }
        assert!(login(&t, user("nobody", "192.0.2.9"), false, false, 116).is_err());
        assert_eq!(login(&t, ci, true, false, 117), Ok(true));
    }

    #[test]
    fn per_user_throttling_stays_whatever_the_address() {
        let t = LoginThrottle::new(rules());
        for (i, address) in ["192.0.2.1", "192.0.2.2", "192.0.2.3"].iter().enumerate() {
            let _ = login(&t, user("alice", address), false, true, 100 + i as u64);
        }
        assert_eq!(
            login(&t, user("alice", "198.51.100.1"), true, true, 103),
            Err(Locked {
                retry_after_secs: 299
            }),
            "a locked user is refused before the password is checked"
        );
        // Names that do not exist are not tracked per user (bounded table), only per address.
        for i in 0..3 {
            let _ = login(
                &t,
                user("ghost", &format!("203.0.113.{i}")),
                false,
                false,
                100,
            );
        }
        assert!(t.admit(&user("ghost", "198.51.100.2"), 101).is_ok());
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
