//! Browser sessions: a random token in an `HttpOnly`, `SameSite=Lax` cookie; the database keeps
//! only its SHA-256, with an idle and an absolute expiry.

use base64::Engine as _;
use http::{header, HeaderMap};
use sha2::{Digest, Sha256};

use crate::store::{now_ms, Store, StoreError};

pub const SESSION_COOKIE: &str = "easel_session";
/// A session unused this long ends.
const IDLE_MS: i64 = 14 * 24 * 3600 * 1000;
/// A session ends this long after sign-in, used or not.
const ABSOLUTE_MS: i64 = 30 * 24 * 3600 * 1000;
/// `last_seen_at` is written at most this often.
const TOUCH_EVERY_MS: i64 = 60 * 1000;

/// A new session: the `Set-Cookie` value to send.
#[derive(Debug, Clone)]
pub struct SessionCookie {
    pub set_cookie: String,
}

fn hash(token: &str) -> String {
    Sha256::digest(token.as_bytes())
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

pub(super) fn cookie_token(headers: &HeaderMap) -> Option<&str> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(name, _)| *name == SESSION_COOKIE)
        .map(|(_, value)| value.trim())
        .filter(|v| !v.is_empty() && v.len() <= 128)
}

fn cookie(value: &str, max_age_secs: i64, secure: bool) -> String {
    format!(
        "{SESSION_COOKIE}={value}; Path=/; HttpOnly; SameSite=Lax; Max-Age={max_age_secs}{}",
        if secure { "; Secure" } else { "" }
    )
}

pub(super) fn clearing_cookie(secure: bool) -> String {
    cookie("", 0, secure)
}

pub(super) async fn open(
    store: &Store,
    user_id: &str,
    secure: bool,
) -> Result<SessionCookie, StoreError> {
    let mut bytes = [0u8; 32];
    getrandom::fill(&mut bytes).map_err(|e| StoreError::Corrupt(format!("no randomness: {e}")))?;
    let token = base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes);
    let now = now_ms();
    store
        .insert_session(&hash(&token), user_id, now, now + ABSOLUTE_MS)
        .await?;
    Ok(SessionCookie {
        set_cookie: cookie(&token, ABSOLUTE_MS / 1000, secure),
    })
}

/// The session's user, when the token names a live session.
pub(super) async fn user_of(store: &Store, token: &str) -> Result<Option<String>, StoreError> {
    let now = now_ms();
    let Some(session) = store.get_session(&hash(token)).await? else {
        return Ok(None);
    };
    if session.expires_at <= now || session.last_seen_at + IDLE_MS <= now {
        store.end_session(&session.id_hash).await?;
        return Ok(None);
    }
    if now - session.last_seen_at > TOUCH_EVERY_MS {
        store.touch_session(&session.id_hash, now).await?;
    }
    Ok(Some(session.user_id))
}

pub(super) async fn end(store: &Store, token: &str) -> Result<(), StoreError> {
    store.end_session(&hash(token)).await
}
