//! Sign-in attempts, limited per account and per client address: after [`FREE_FAILURES`]
//! failures within [`WINDOW`], further attempts are refused (429 with `Retry-After`) for
//! [`FIRST_LOCK`], doubling with every further failure up to [`MAX_LOCK`]. A success clears
//! the account's count. Kept in memory: a restart forgives, which is fine for a brute-force
//! brake (the passwords themselves are slow to test: argon2id).

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

pub const FREE_FAILURES: u32 = 5;
pub const WINDOW: Duration = Duration::from_secs(15 * 60);
pub const FIRST_LOCK: Duration = Duration::from_secs(60);
pub const MAX_LOCK: Duration = Duration::from_secs(15 * 60);
/// Addresses and accounts remembered at most (the oldest are forgotten first).
const MAX_ENTRIES: usize = 10_000;

#[derive(Debug, Clone, Copy)]
struct Entry {
    failures: u32,
    last: Instant,
    locked_until: Option<Instant>,
}

#[derive(Default)]
pub struct Limiter {
    entries: Mutex<HashMap<String, Entry>>,
}

impl Limiter {
    /// `Err(wait)` while `key` is locked out.
    pub fn check(&self, key: &str, now: Instant) -> Result<(), Duration> {
        let entries = self.lock();
        match entries.get(key).and_then(|e| e.locked_until) {
            Some(until) if until > now => Err(until - now),
            _ => Ok(()),
        }
    }

    pub fn failed(&self, key: &str, now: Instant) {
        let mut entries = self.lock();
        if entries.len() >= MAX_ENTRIES && !entries.contains_key(key) {
            if let Some(oldest) = entries
                .iter()
                .min_by_key(|(_, e)| e.last)
                .map(|(k, _)| k.clone())
            {
                entries.remove(&oldest);
            }
        }
        let entry = entries.entry(key.to_string()).or_insert(Entry {
            failures: 0,
            last: now,
            locked_until: None,
        });
        if now.duration_since(entry.last) > WINDOW {
            entry.failures = 0;
        }
        entry.failures += 1;
        entry.last = now;
        if entry.failures >= FREE_FAILURES {
            let doublings = (entry.failures - FREE_FAILURES).min(10);
            let lock = FIRST_LOCK.saturating_mul(1 << doublings).min(MAX_LOCK);
            entry.locked_until = Some(now + lock);
        }
    }

    pub fn succeeded(&self, key: &str) {
        self.lock().remove(key);
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, Entry>> {
        self.entries.lock().unwrap_or_else(|p| p.into_inner())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn locks_after_five_failures_and_doubles() {
        let l = Limiter::default();
        let t0 = Instant::now();
        for k in 0..4 {
            l.failed("a", t0 + Duration::from_secs(k));
            assert!(l.check("a", t0 + Duration::from_secs(k)).is_ok());
        }
        l.failed("a", t0 + Duration::from_secs(5));
        let wait = l.check("a", t0 + Duration::from_secs(5)).unwrap_err();
        assert_eq!(wait, FIRST_LOCK);
        l.failed("a", t0 + Duration::from_secs(6));
        assert_eq!(
            l.check("a", t0 + Duration::from_secs(6)).unwrap_err(),
            FIRST_LOCK * 2
        );
        assert!(l.check("b", t0).is_ok(), "other keys are not affected");
        l.succeeded("a");
        assert!(l.check("a", t0 + Duration::from_secs(7)).is_ok());
    }
}
