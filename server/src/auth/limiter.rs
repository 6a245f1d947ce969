//! Sign-in attempts, limited per account and per client address: after [`FREE_FAILURES`]
//! failures within [`WINDOW`], further attempts are refused (429 with `Retry-After`) for
//! [`FIRST_LOCK`], doubling with every further failure up to [`MAX_LOCK`]. A success clears
//! the account's count. The counts live in the database (`sign_in_limits`), so every web node
//! sharing it enforces the same limit; the passwords themselves are slow to test (argon2id).

use std::time::Duration;

use crate::store::{now_ms, LimitRecord, Store, StoreError};

pub const FREE_FAILURES: u32 = 5;
pub const WINDOW: Duration = Duration::from_secs(15 * 60);
pub const FIRST_LOCK: Duration = Duration::from_secs(60);
pub const MAX_LOCK: Duration = Duration::from_secs(15 * 60);

fn ms(d: Duration) -> i64 {
    d.as_millis() as i64
}

/// The record after one more failure at `now` (ms): the count restarts after a quiet
/// [`WINDOW`]; from the fifth failure on, a lock that doubles each time.
pub fn after_failure(previous: Option<LimitRecord>, now: i64) -> LimitRecord {
    let failures = match previous {
        Some(p) if now - p.last_ms <= ms(WINDOW) => p.failures + 1,
        _ => 1,
    };
    let locked_until = (failures >= i64::from(FREE_FAILURES)).then(|| {
        let doublings = (failures - i64::from(FREE_FAILURES)).min(10) as u32;
        now + ms(FIRST_LOCK.saturating_mul(1 << doublings).min(MAX_LOCK))
    });
    LimitRecord {
        failures,
        last_ms: now,
        locked_until,
    }
}

/// How long `locked_until` still holds at `now`, if it does.
pub fn wait(locked_until: Option<i64>, now: i64) -> Option<Duration> {
    locked_until
        .filter(|&until| until > now)
        .map(|until| Duration::from_millis((until - now) as u64))
}

pub struct Limiter {
    store: Store,
}

impl Limiter {
    pub fn new(store: Store) -> Limiter {
        Limiter { store }
    }

    /// `Ok(Err(wait))` while `key` is locked out.
    pub async fn check(&self, key: &str) -> Result<Result<(), Duration>, StoreError> {
        let until = self.store.sign_in_locked_until(key).await?;
        Ok(match wait(until, now_ms()) {
            Some(wait) => Err(wait),
            None => Ok(()),
        })
    }

    pub async fn failed(&self, key: &str) -> Result<(), StoreError> {
        let now = now_ms();
        self.store
            .sign_in_failed(key, |previous| after_failure(previous, now))
            .await?;
        // Old keys go as new failures come, so the table stays as small as the attack.
        let forget = now - ms(WINDOW) - ms(MAX_LOCK);
        self.store.prune_sign_in_limits(forget, now).await?;
        Ok(())
    }

    pub async fn succeeded(&self, key: &str) -> Result<(), StoreError> {
        self.store.sign_in_cleared(key).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn locks_after_five_failures_and_doubles() {
        let t0 = 1_000_000;
        let mut record = None;
        for k in 0..4 {
            let r = after_failure(record, t0 + k * 1000);
            assert_eq!(wait(r.locked_until, t0 + k * 1000), None);
            record = Some(r);
        }
        let fifth = after_failure(record, t0 + 5000);
        assert_eq!(wait(fifth.locked_until, t0 + 5000), Some(FIRST_LOCK));
        let sixth = after_failure(Some(fifth), t0 + 6000);
        assert_eq!(wait(sixth.locked_until, t0 + 6000), Some(FIRST_LOCK * 2));
        assert_eq!(
            wait(sixth.locked_until, t0 + 6000 + ms(FIRST_LOCK * 2)),
            None
        );
        // Many more: capped.
        let mut r = sixth;
        for k in 0..20 {
            r = after_failure(Some(r), t0 + 7000 + k);
        }
        assert_eq!(wait(r.locked_until, r.last_ms), Some(MAX_LOCK));
    }

    #[test]
    fn a_quiet_window_starts_the_count_again() {
        let r = after_failure(None, 0);
        let later = after_failure(Some(r), ms(WINDOW) + 1);
        assert_eq!(later.failures, 1);
        assert_eq!(later.locked_until, None);
    }
}
