//! Who is asking. Every handler takes the [`crate::http`] extractor built on [`Auth::identify`],
//! so how people prove who they are changes here, not in every handler.
//!
//! Today: one local user. When `EASEL_API_KEY` is set, `/api` and `/v1` require it: as
//! `Authorization: Bearer <key>` (programs), or as the session cookie a browser gets once the key
//! is entered (`POST /api/auth/login {"key"}`). Keys and session tokens are compared in
//! constant time; only a hash of a session token is stored.

mod sessions;

use http::{header, HeaderMap};
use subtle::ConstantTimeEq;

use crate::store::{Store, StoreError, LOCAL_USER};
pub use sessions::{SessionCookie, SESSION_COOKIE};

/// The person (or program) a request acts for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Identity {
    pub user_id: String,
    /// How they proved it.
    pub via: Via,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Via {
    /// Nothing to prove: no key is configured.
    Open,
    Bearer,
    Session,
}

#[derive(Clone)]
pub struct Auth {
    store: Store,
    api_key: Option<String>,
    secure_cookies: bool,
}

impl Auth {
    pub fn new(store: Store, api_key: Option<String>, public_url: Option<&str>) -> Auth {
        Auth {
            store,
            api_key: api_key.filter(|k| !k.is_empty()),
            secure_cookies: public_url.is_some_and(|u| u.starts_with("https://")),
        }
    }

    /// Whether requests must prove who they are.
    pub fn required(&self) -> bool {
        self.api_key.is_some()
    }

    /// Who the request comes from; `None` when it must prove it and did not.
    pub async fn identify(&self, headers: &HeaderMap) -> Result<Option<Identity>, StoreError> {
        let Some(key) = &self.api_key else {
            return Ok(Some(Identity {
                user_id: LOCAL_USER.into(),
                via: Via::Open,
            }));
        };
        if let Some(given) = bearer(headers) {
            return Ok(constant_time_eq(given, key).then(|| Identity {
                user_id: LOCAL_USER.into(),
                via: Via::Bearer,
            }));
        }
        if let Some(token) = sessions::cookie_token(headers) {
            if let Some(user_id) = sessions::user_of(&self.store, token).await? {
                return Ok(Some(Identity {
                    user_id,
                    via: Via::Session,
                }));
            }
        }
        Ok(None)
    }

    /// Checks the API key a person typed and opens a browser session for it.
    pub async fn login_with_key(&self, key: &str) -> Result<Option<SessionCookie>, StoreError> {
        match &self.api_key {
            Some(expected) if constant_time_eq(key.trim(), expected) => Ok(Some(
                sessions::open(&self.store, LOCAL_USER, self.secure_cookies).await?,
            )),
            _ => Ok(None),
        }
    }

    /// Ends the session the request carries (if any) and returns the cookie that clears it.
    pub async fn logout(&self, headers: &HeaderMap) -> Result<String, StoreError> {
        if let Some(token) = sessions::cookie_token(headers) {
            sessions::end(&self.store, token).await?;
        }
        Ok(sessions::clearing_cookie(self.secure_cookies))
    }
}

/// `Authorization: Bearer <token>`.
pub fn bearer(headers: &HeaderMap) -> Option<&str> {
    let value = headers.get(header::AUTHORIZATION)?.to_str().ok()?;
    let (scheme, token) = value.trim().split_once(' ')?;
    scheme
        .eq_ignore_ascii_case("bearer")
        .then(|| token.trim())
        .filter(|t| !t.is_empty())
}

/// Equal strings, compared without leaking where they differ through timing.
pub fn constant_time_eq(a: &str, b: &str) -> bool {
    // Lengths may differ; compare fixed-size digests so the comparison time does not depend on
    // the secret's length either.
    use sha2::{Digest, Sha256};
    let a = Sha256::digest(a.as_bytes());
    let b = Sha256::digest(b.as_bytes());
    a.ct_eq(&b).into()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bearer_tokens_are_read_from_the_header() {
        let mut h = HeaderMap::new();
        h.insert(header::AUTHORIZATION, "Bearer  sk-1 ".parse().unwrap());
        assert_eq!(bearer(&h), Some("sk-1"));
        h.insert(header::AUTHORIZATION, "Basic abc".parse().unwrap());
        assert_eq!(bearer(&h), None);
        assert!(constant_time_eq("abc", "abc"));
        assert!(!constant_time_eq("abc", "abd"));
        assert!(!constant_time_eq("abc", "abcd"));
    }
}
