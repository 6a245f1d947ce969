//! Browser sessions: a random token in an `HttpOnly`, `SameSite=Lax` cookie (`Secure` when the
//! public URL is https); the database keeps only its SHA-256, with an idle and an absolute
//! expiry.

use http::{header, HeaderMap};

use crate::store::{now_ms, Store, StoreError};

pub const SESSION_COOKIE: &str = "easel_session";
/// A session unused this long ends.
pub const IDLE_MS: i64 = 14 * 24 * 3600 * 1000;
/// A session ends this long after sign-in, used or not.
pub const ABSOLUTE_MS: i64 = 30 * 24 * 3600 * 1000;
/// `last_seen_at` is written at most this often.
const TOUCH_EVERY_MS: i64 = 60 * 1000;

/// A new session: the `Set-Cookie` value to send.
#[derive(Debug, Clone)]
pub struct SessionCookie {
    pub set_cookie: String,
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
    let token = super::random_token()?;
    let now = now_ms();
    store
        .insert_session(&super::sha256_hex(&token), user_id, now, now + ABSOLUTE_MS)
        .await?;
    Ok(SessionCookie {
        set_cookie: cookie(&token, ABSOLUTE_MS / 1000, secure),
    })
}

/// The session's user and hash, when the token names a live session.
pub(super) async fn user_of(
    store: &Store,
    token: &str,
) -> Result<Option<(String, String)>, StoreError> {
    let now = now_ms();
    let hash = super::sha256_hex(token);
    let Some(session) = store.get_session(&hash).await? else {
        return Ok(None);
    };
    if !super::constant_time_eq(&session.id_hash, &hash) {
        return Ok(None);
    }
    if session.expires_at <= now || session.last_seen_at + IDLE_MS <= now {
        store.end_session(&session.id_hash).await?;
        return Ok(None);
    }
    if now - session.last_seen_at > TOUCH_EVERY_MS {
        store.touch_session(&session.id_hash, now).await?;
    }
    Ok(Some((session.user_id, session.id_hash)))
}

pub(super) async fn end(store: &Store, token: &str) -> Result<(), StoreError> {
    store.end_session(&super::sha256_hex(token)).await
}
