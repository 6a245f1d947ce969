//! Credits: what a generation costs, computed before it runs by one function for chat, Studio
//! and `/v1` ([`cost_of`]); balances with a periodic allowance; and the server-wide settings an
//! admin changes at run time (registration mode, credits on/off, allowance and period, the
//! cost of each model). Reserving at queue time and settling at the end happen in the store, in
//! the same transactions as the job's own writes.

use std::collections::BTreeMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};

use crate::store::{now_ms, Store, StoreError};

/// Who may create an account.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Registration {
    /// Only admins create accounts (the default after setup).
    #[default]
    Closed,
    Open,
    /// Anyone may sign up; an admin approves them.
    Approval,
}

/// How often allowances refill.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Period {
    Day,
    Week,
    #[default]
    Month,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CreditSettings {
    #[serde(default)]
    pub enabled: bool,
    #[serde(default = "default_allowance")]
    pub default_allowance: i64,
    #[serde(default)]
    pub period: Period,
}

fn default_allowance() -> i64 {
    100
}

impl Default for CreditSettings {
    fn default() -> Self {
        CreditSettings {
            enabled: false,
            default_allowance: default_allowance(),
            period: Period::default(),
        }
    }
}

/// The settings an admin changes (`GET/PUT /api/admin/settings`).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct ServerSettings {
    #[serde(default)]
    pub registration: Registration,
    #[serde(default)]
    pub credits: CreditSettings,
    /// Base cost of one image at the model's default size and steps; 1 when not set.
    #[serde(default)]
    pub model_costs: BTreeMap<String, i64>,
}

impl ServerSettings {
    pub fn model_cost(&self, model: &str) -> i64 {
        self.model_costs.get(model).copied().unwrap_or(1)
    }
}

/// A user's credits as the page shows them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Balance {
    pub balance: i64,
    pub enabled: bool,
    pub allowance: i64,
    /// When the allowance next refills (ms), with credits on.
    pub refills_at: Option<i64>,
}

const SETTINGS_KEY: &str = "server";
/// Settings are read from the database at most this often (other nodes may change them).
const CACHE_FOR: Duration = Duration::from_secs(2);

pub struct Credits {
    store: Store,
    cache: Mutex<Option<(Instant, ServerSettings)>>,
}

impl Credits {
    pub fn new(store: Store) -> Credits {
        Credits {
            store,
            cache: Mutex::new(None),
        }
    }

    pub async fn settings(&self) -> Result<ServerSettings, StoreError> {
        if let Some((at, s)) = self.lock().as_ref() {
            if at.elapsed() < CACHE_FOR {
                return Ok(s.clone());
            }
        }
        let settings = match self.store.get_setting(SETTINGS_KEY).await? {
            Some(text) => serde_json::from_str(&text).unwrap_or_default(),
            None => ServerSettings::default(),
        };
        *self.lock() = Some((Instant::now(), settings.clone()));
        Ok(settings)
    }

    pub async fn put_settings(&self, settings: &ServerSettings) -> Result<(), StoreError> {
        self.store
            .put_setting(SETTINGS_KEY, &serde_json::to_string(settings)?)
            .await?;
        *self.lock() = Some((Instant::now(), settings.clone()));
        Ok(())
    }

    /// The user's balance, after topping it up to the allowance if a new period began.
    pub async fn balance(&self, user_id: &str) -> Result<Balance, StoreError> {
        let settings = self.settings().await?;
        let user = self.store.get_user(user_id).await?;
        let allowance = user
            .as_ref()
            .and_then(|u| u.allowance)
            .unwrap_or(settings.credits.default_allowance);
        if !settings.credits.enabled {
            return Ok(Balance {
                balance: user.map(|u| u.credits).unwrap_or(0),
                enabled: false,
                allowance,
                refills_at: None,
            });
        }
        let now = now_ms();
        let start = period_start(settings.credits.period, now);
        if user.as_ref().is_some_and(|u| u.allowance_period < start) {
            self.store
                .refill_allowance(user_id, allowance, start)
                .await?;
        }
        let balance = self
            .store
            .get_user(user_id)
            .await?
            .map(|u| u.credits)
            .unwrap_or(0);
        Ok(Balance {
            balance,
            enabled: true,
            allowance,
            refills_at: Some(next_period_start(settings.credits.period, now)),
        })
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Option<(Instant, ServerSettings)>> {
        self.cache.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// What one request costs: the model's base cost × images × (area ÷ the model's default area)
/// × (steps ÷ the model's default steps), rounded up to whole credits (at least 1 per request
/// when the model costs anything).
pub fn cost_of(
    base: i64,
    n: u32,
    (width, height): (u32, u32),
    (default_width, default_height): (u32, u32),
    steps: u32,
    default_steps: u32,
) -> i64 {
    if base <= 0 {
        return 0;
    }
    let area = f64::from(width) * f64::from(height);
    let default_area = (f64::from(default_width) * f64::from(default_height)).max(1.0);
    let exact = base as f64
        * f64::from(n)
        * (area / default_area)
        * (f64::from(steps) / f64::from(default_steps.max(1)));
    // A tiny epsilon keeps exact products (12.000000001 from float error) from rounding up.
    ((exact - 1e-9).ceil() as i64).max(1)
}

/// What a job that made `done` of `n` images is charged of the `reserved` credits: all of it
/// when it finished, the finished images' share (rounded up) when it was cancelled or failed.
pub fn charge_for(reserved: i64, done: u32, n: u32, finished: bool) -> i64 {
    if finished || n == 0 {
        return reserved;
    }
    let share = (reserved as f64 * f64::from(done) / f64::from(n) - 1e-9).ceil() as i64;
    share.clamp(0, reserved)
}

/// The start (UTC, ms) of the period containing `now`: midnight, Monday, the 1st.
pub fn period_start(period: Period, now: i64) -> i64 {
    const DAY: i64 = 86_400_000;
    let day = now.div_euclid(DAY);
    match period {
        Period::Day => day * DAY,
        // 1970-01-01 was a Thursday: day 4 of its ISO week (Monday = 0 → day -3).
        Period::Week => ((day + 3).div_euclid(7) * 7 - 3) * DAY,
        Period::Month => {
            let (y, m, _) = civil_from_days(day);
            days_from_civil(y, m, 1) * DAY
        }
    }
}

/// The start of the next period after the one containing `now`.
pub fn next_period_start(period: Period, now: i64) -> i64 {
    const DAY: i64 = 86_400_000;
    let start = period_start(period, now);
    match period {
        Period::Day => start + DAY,
        Period::Week => start + 7 * DAY,
        Period::Month => {
            let (y, m, _) = civil_from_days(start / DAY);
            let (y, m) = if m == 12 { (y + 1, 1) } else { (y, m + 1) };
            days_from_civil(y, m, 1) * DAY
        }
    }
}

/// Howard Hinnant's `civil_from_days`: days since 1970-01-01 → (year, month, day).
fn civil_from_days(z: i64) -> (i64, i64, i64) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    (yoe + era * 400 + i64::from(m <= 2), m, d)
}

/// The inverse: (year, month, day) → days since 1970-01-01.
pub fn days_from_civil(y: i64, m: i64, d: i64) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y.rem_euclid(400);
    let mp = if m > 2 { m - 3 } else { m + 9 };
    let doy = (153 * mp + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cost_scales_with_images_area_and_steps_and_rounds_up() {
        let default = (512, 512);
        assert_eq!(cost_of(2, 1, (512, 512), default, 4, 4), 2);
        assert_eq!(
            cost_of(2, 3, (512, 512), default, 4, 4),
            6,
            "more images cost more"
        );
        assert_eq!(
            cost_of(1, 1, (1024, 1024), default, 4, 4),
            4,
            "four times the area"
        );
        assert_eq!(
            cost_of(1, 1, (512, 512), default, 8, 4),
            2,
            "twice the steps"
        );
        assert_eq!(
            cost_of(1, 1, (256, 256), default, 4, 4),
            1,
            "rounded up, at least 1"
        );
        assert_eq!(
            cost_of(3, 1, (512, 768), default, 4, 4),
            5,
            "4.5 rounds up to 5"
        );
        assert_eq!(
            cost_of(0, 10, (512, 512), default, 4, 4),
            0,
            "free models are free"
        );
    }

    #[test]
    fn cancelled_jobs_pay_for_their_finished_images_only() {
        assert_eq!(charge_for(12, 4, 4, true), 12);
        assert_eq!(charge_for(12, 0, 4, false), 0);
        assert_eq!(charge_for(12, 1, 4, false), 3);
        assert_eq!(charge_for(10, 1, 3, false), 4, "3.33 rounds up");
    }

    #[test]
    fn periods_start_at_midnight_monday_and_the_first() {
        // 2026-11-29 is a Sunday.
        let sunday_noon = days_from_civil(2026, 11, 29) * 86_400_000 + 12 * 3_600_000;
        let day = period_start(Period::Day, sunday_noon);
        assert_eq!(crate::store::rfc3339(day), "2026-11-29T00:00:00.000Z");
        assert_eq!(
            crate::store::rfc3339(period_start(Period::Week, sunday_noon)),
            "2026-11-23T00:00:00.000Z"
        );
        assert_eq!(
            crate::store::rfc3339(period_start(Period::Month, sunday_noon)),
            "2026-11-01T00:00:00.000Z"
        );
        assert_eq!(
            crate::store::rfc3339(next_period_start(Period::Month, sunday_noon)),
            "2026-12-01T00:00:00.000Z"
        );
        let december = days_from_civil(2026, 12, 31) * 86_400_000;
        assert_eq!(
            crate::store::rfc3339(next_period_start(Period::Month, december)),
            "2027-01-01T00:00:00.000Z"
        );
    }
}
