//! API keys: `esk_` and 43 random characters, shown once at creation. The database keeps the
//! SHA-256 of the key (looked up by it) and the first characters (`prefix`) so lists can tell
//! keys apart. Expired keys and keys of disabled users do not work.

use crate::store::{now_ms, ApiKeyRecord, Store, StoreError};

const PREFIX: &str = "esk_";
/// `last_used_at` is written at most this often.
const TOUCH_EVERY_MS: i64 = 60 * 1000;

/// A key just made: its record, and the key itself (the only time it is shown).
#[derive(Debug, Clone)]
pub struct NewKey {
    pub record: ApiKeyRecord,
    pub key: String,
}

pub(super) async fn create(
    store: &Store,
    user_id: &str,
    name: &str,
    expires_at: Option<i64>,
) -> Result<NewKey, StoreError> {
    let key = format!("{PREFIX}{}", super::random_token()?);
    let prefix: String = key.chars().take(PREFIX.len() + 8).collect();
    let record = store
        .insert_api_key(user_id, name, &prefix, &super::sha256_hex(&key), expires_at)
        .await?;
    Ok(NewKey { record, key })
}

/// The user a key belongs to, when it is a live key.
pub(super) async fn user_of(store: &Store, key: &str) -> Result<Option<String>, StoreError> {
    if key.len() > 200 {
        return Ok(None);
    }
    let hash = super::sha256_hex(key);
    let Some((record, stored)) = store.api_key_by_hash(&hash).await? else {
        return Ok(None);
    };
    // The lookup was by hash; compare again in constant time all the same.
    if !super::constant_time_eq(&stored, &hash) {
        return Ok(None);
    }
    let now = now_ms();
    if record.expires_at.is_some_and(|t| t <= now) {
        return Ok(None);
    }
    if record.last_used_at.is_none_or(|t| now - t > TOUCH_EVERY_MS) {
        store.touch_api_key(&record.id, now).await?;
    }
    Ok(Some(record.user_id))
}
