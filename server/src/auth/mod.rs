//! Who is asking, and what they may spend. Every handler takes the extractor built on
//! [`Auth::identify`], so how people prove who they are changes here, not in every handler.
//!
//! Two modes (`EASEL_AUTH`):
//! - `accounts` (the default): people sign in with an email and a password (argon2id) and get a
//!   session cookie; programs send an API key (`Authorization: Bearer`). The first visit creates
//!   the admin account; until then nothing else answers. `EASEL_API_KEY` keeps working as a key
//!   of the first admin.
//! - `none`: one local user, no sign-in, for a personal machine (loopback only). When
//!   `EASEL_API_KEY` is set, `/api` and `/v1` require it (a browser enters it once and gets a
//!   session cookie).
//!
//! Keys and session tokens are random, shown once, and stored only as SHA-256 hashes; the
//! configured key is compared in constant time. Disabling a user ends their sessions and keys.

pub mod credits;
mod keys;
pub mod limiter;
pub mod passwords;
mod sessions;

use std::sync::Arc;
use std::time::Duration;

use http::{header, HeaderMap};
use subtle::ConstantTimeEq;

use crate::store::{NewUser, Store, StoreError, UserRecord, UserRole, LOCAL_USER};
pub use credits::{Balance, Credits, Registration, ServerSettings};
pub use keys::NewKey;
pub use sessions::{SessionCookie, SESSION_COOKIE};

/// How people prove who they are (`EASEL_AUTH`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AuthMode {
    /// One local user; optionally a shared API key.
    None,
    /// Accounts with passwords, sessions, API keys and roles.
    Accounts,
}

/// The person (or program) a request acts for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Identity {
    pub user_id: String,
    pub role: UserRole,
    pub via: Via,
    /// The session's hash, when signed in by cookie (a password change keeps this one).
    pub session: Option<String>,
}

impl Identity {
    pub fn is_admin(&self) -> bool {
        self.role == UserRole::Admin
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Via {
    /// Nothing to prove: `EASEL_AUTH=none` without a key.
    Open,
    Bearer,
    Session,
}

/// Why an account action was refused, in words for the person.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum AuthError {
    #[error("{0}")]
    Invalid(String),
    #[error("The email or password is not right.")]
    WrongCredentials,
    #[error("Too many failed sign-ins; try again in {} seconds.", .0.as_secs().max(1))]
    Locked(Duration),
    #[error("This account is disabled. Ask an administrator.")]
    Disabled,
    #[error("This account is waiting for an administrator's approval.")]
    Pending,
    #[error("An account with this email already exists.")]
    EmailTaken,
    #[error("The admin account exists already.")]
    AlreadySetUp,
    #[error("Registration is closed. Ask an administrator for an account.")]
    RegistrationClosed,
}

#[derive(Clone)]
pub struct Auth {
    inner: Arc<Inner>,
}

struct Inner {
    store: Store,
    mode: AuthMode,
    api_key: Option<String>,
    secure_cookies: bool,
    limiter: limiter::Limiter,
    credits: Credits,
}

/// What a new account states.
#[derive(Debug, Clone)]
pub struct AccountForm {
    pub name: String,
    pub email: String,
    pub password: String,
}

impl Auth {
    pub fn new(
        store: Store,
        mode: AuthMode,
        api_key: Option<String>,
        public_url: Option<&str>,
    ) -> Auth {
        Auth {
            inner: Arc::new(Inner {
                credits: Credits::new(store.clone()),
                limiter: limiter::Limiter::new(store.clone()),
                store,
                mode,
                api_key: api_key.filter(|k| !k.is_empty()),
                secure_cookies: public_url.is_some_and(|u| u.starts_with("https://")),
            }),
        }
    }

    pub fn mode(&self) -> AuthMode {
        self.inner.mode
    }

    pub fn credits(&self) -> &Credits {
        &self.inner.credits
    }

    /// Whether requests must prove who they are.
    pub fn required(&self) -> bool {
        self.inner.mode == AuthMode::Accounts || self.inner.api_key.is_some()
    }

    /// Accounts mode before the admin account exists: only setup answers.
    pub async fn setup_needed(&self) -> Result<bool, StoreError> {
        Ok(self.inner.mode == AuthMode::Accounts && !self.inner.store.has_accounts().await?)
    }

    /// Creates the admin account at start-up from `EASEL_ADMIN_EMAIL` and
    /// `EASEL_ADMIN_PASSWORD`, when no account exists yet (headless installs).
    pub async fn ensure_admin(&self, email: &str, password: &str) -> Result<(), String> {
        if self.inner.mode != AuthMode::Accounts {
            return Ok(());
        }
        match self
            .setup(AccountForm {
                name: "Admin".into(),
                email: email.into(),
                password: password.into(),
            })
            .await
        {
            Ok(Ok(_)) => {
                tracing::info!("created the admin account {email} from EASEL_ADMIN_EMAIL");
                Ok(())
            }
            Ok(Err(AuthError::AlreadySetUp)) => Ok(()),
            Ok(Err(e)) => Err(format!("EASEL_ADMIN_EMAIL/EASEL_ADMIN_PASSWORD: {e}")),
            Err(e) => Err(e.to_string()),
        }
    }

    /// Who the request comes from; `None` when it must prove it and did not.
    pub async fn identify(&self, headers: &HeaderMap) -> Result<Option<Identity>, StoreError> {
        let inner = &self.inner;
        // No sign-in at all: every request is the local user (SDKs send a dummy key anyway).
        if inner.mode == AuthMode::None && inner.api_key.is_none() {
            return Ok(Some(Identity {
                user_id: LOCAL_USER.into(),
                role: UserRole::Admin,
                via: Via::Open,
                session: None,
            }));
        }
        if let Some(given) = bearer(headers) {
            if let Some(key) = &inner.api_key {
                if constant_time_eq(given, key) {
                    return self.configured_key_user().await;
                }
            }
            if inner.mode == AuthMode::Accounts {
                if let Some(user_id) = keys::user_of(&inner.store, given).await? {
                    return self.active(&user_id, Via::Bearer, None).await;
                }
            }
            return Ok(None);
        }
        if let Some(token) = sessions::cookie_token(headers) {
            if let Some((user_id, hash)) = sessions::user_of(&inner.store, token).await? {
                return self.active(&user_id, Via::Session, Some(hash)).await;
            }
        }
        Ok(None)
    }

    /// The user `EASEL_API_KEY` acts for: the local user without accounts, the first admin
    /// with them (the local user before setup, which setup turns into the admin).
    async fn configured_key_user(&self) -> Result<Option<Identity>, StoreError> {
        let user_id = match self.inner.mode {
            AuthMode::None => LOCAL_USER.to_string(),
            AuthMode::Accounts => self
                .inner
                .store
                .first_admin()
                .await?
                .map(|u| u.id)
                .unwrap_or_else(|| LOCAL_USER.to_string()),
        };
        Ok(Some(Identity {
            user_id,
            role: UserRole::Admin,
            via: Via::Bearer,
            session: None,
        }))
    }

    /// The user, when they exist and may act (not disabled, not pending).
    async fn active(
        &self,
        user_id: &str,
        via: Via,
        session: Option<String>,
    ) -> Result<Option<Identity>, StoreError> {
        let Some(user) = self.inner.store.get_user(user_id).await? else {
            return Ok(None);
        };
        if user.disabled || user.pending {
            return Ok(None);
        }
        let role = match self.inner.mode {
            AuthMode::None => UserRole::Admin,
            AuthMode::Accounts => user.role,
        };
        Ok(Some(Identity {
            user_id: user.id,
            role,
            via,
            session,
        }))
    }

    /// First run: the admin account (the local user becomes it, keeping what it made).
    pub async fn setup(
        &self,
        form: AccountForm,
    ) -> Result<Result<UserRecord, AuthError>, StoreError> {
        let form = match checked(form) {
            Ok(f) => f,
            Err(e) => return Ok(Err(e)),
        };
        if self.inner.store.has_accounts().await? {
            return Ok(Err(AuthError::AlreadySetUp));
        }
        let hash = slow(move || passwords::hash(&form.password))
            .await
            .map_err(StoreError::Corrupt)?;
        match self
            .inner
            .store
            .create_first_admin(&form.name, &form.email, &hash)
            .await?
        {
            Some(user) => Ok(Ok(user)),
            None => Ok(Err(AuthError::AlreadySetUp)),
        }
    }

    /// Sign-up: `Ok(Ok(user))` with `user.pending` set when registration needs approval.
    pub async fn signup(
        &self,
        form: AccountForm,
    ) -> Result<Result<UserRecord, AuthError>, StoreError> {
        let settings = self.inner.credits.settings().await?;
        if settings.registration == Registration::Closed || self.setup_needed().await? {
            return Ok(Err(AuthError::RegistrationClosed));
        }
        self.create(
            form,
            UserRole::User,
            settings.registration == Registration::Approval,
        )
        .await
    }

    /// An account made by an admin (or by sign-up).
    pub async fn create(
        &self,
        form: AccountForm,
        role: UserRole,
        pending: bool,
    ) -> Result<Result<UserRecord, AuthError>, StoreError> {
        let form = match checked(form) {
            Ok(f) => f,
            Err(e) => return Ok(Err(e)),
        };
        let settings = self.inner.credits.settings().await?;
        let password = form.password.clone();
        let hash = slow(move || passwords::hash(&password))
            .await
            .map_err(StoreError::Corrupt)?;
        let new = NewUser {
            name: form.name,
            email: form.email,
            password_hash: hash,
            role,
            pending,
            credits: if settings.credits.enabled {
                settings.credits.default_allowance
            } else {
                0
            },
        };
        match self.inner.store.create_user(&new).await? {
            Some(user) => Ok(Ok(user)),
            None => Ok(Err(AuthError::EmailTaken)),
        }
    }

    /// Signs in with an email and a password; rate-limited per account and per address.
    pub async fn login(
        &self,
        email: &str,
        password: &str,
        client: &str,
    ) -> Result<Result<(UserRecord, SessionCookie), AuthError>, StoreError> {
        let email = normal_email(email);
        let account_key = format!("account:{email}");
        let address_key = format!("address:{client}");
        for key in [&account_key, &address_key] {
            if let Err(wait) = self.inner.limiter.check(key).await? {
                return Ok(Err(AuthError::Locked(wait)));
            }
        }
        if password.len() > passwords::MAX_LENGTH * 4 {
            return Ok(Err(AuthError::WrongCredentials));
        }
        let user = self.inner.store.user_by_email(&email).await?;
        let stored = user
            .as_ref()
            .and_then(|u| u.password_hash.clone())
            .unwrap_or_else(|| passwords::decoy().to_string());
        let given = password.to_string();
        let matches = slow(move || Ok(passwords::verify(&given, &stored)))
            .await
            .unwrap_or(false);
        let Some(user) = user.filter(|_| matches) else {
            self.inner.limiter.failed(&account_key).await?;
            self.inner.limiter.failed(&address_key).await?;
            return Ok(Err(AuthError::WrongCredentials));
        };
        self.inner.limiter.succeeded(&account_key).await?;
        if user.disabled {
            return Ok(Err(AuthError::Disabled));
        }
        if user.pending {
            return Ok(Err(AuthError::Pending));
        }
        let cookie = sessions::open(&self.inner.store, &user.id, self.inner.secure_cookies).await?;
        Ok(Ok((user, cookie)))
    }

    /// Opens a session for a user who just proved who they are (a new account).
    pub async fn open_session(&self, user_id: &str) -> Result<SessionCookie, StoreError> {
        sessions::open(&self.inner.store, user_id, self.inner.secure_cookies).await
    }

    /// Without accounts: checks the API key a person typed and opens a browser session.
    pub async fn login_with_key(&self, key: &str) -> Result<Option<SessionCookie>, StoreError> {
        match &self.inner.api_key {
            Some(expected) if constant_time_eq(key.trim(), expected) => {
                let user = match self.configured_key_user().await? {
                    Some(identity) => identity.user_id,
                    None => LOCAL_USER.to_string(),
                };
                Ok(Some(
                    sessions::open(&self.inner.store, &user, self.inner.secure_cookies).await?,
                ))
            }
            _ => Ok(None),
        }
    }

    /// Ends the session the request carries (if any) and returns the cookie that clears it.
    pub async fn logout(&self, headers: &HeaderMap) -> Result<String, StoreError> {
        if let Some(token) = sessions::cookie_token(headers) {
            sessions::end(&self.inner.store, token).await?;
        }
        Ok(sessions::clearing_cookie(self.inner.secure_cookies))
    }

    /// Changes a password (the current one must be right) and ends the user's other sessions.
    pub async fn change_password(
        &self,
        who: &Identity,
        current: &str,
        new: &str,
    ) -> Result<Result<(), AuthError>, StoreError> {
        if let Err(e) = passwords::check_new(new) {
            return Ok(Err(AuthError::Invalid(e)));
        }
        let Some(user) = self.inner.store.get_user(&who.user_id).await? else {
            return Ok(Err(AuthError::WrongCredentials));
        };
        let stored = user.password_hash.unwrap_or_default();
        let given = current.to_string();
        if !slow(move || Ok(passwords::verify(&given, &stored)))
            .await
            .unwrap_or(false)
        {
            return Ok(Err(AuthError::WrongCredentials));
        }
        self.set_password(&who.user_id, new).await?;
        self.inner
            .store
            .end_sessions_of(&who.user_id, who.session.as_deref())
            .await?;
        Ok(Ok(()))
    }

    /// Sets a password without the old one (an admin's reset) and ends every session.
    pub async fn reset_password(
        &self,
        user_id: &str,
        new: &str,
    ) -> Result<Result<(), AuthError>, StoreError> {
        if let Err(e) = passwords::check_new(new) {
            return Ok(Err(AuthError::Invalid(e)));
        }
        self.set_password(user_id, new).await?;
        self.inner.store.end_sessions_of(user_id, None).await?;
        Ok(Ok(()))
    }

    async fn set_password(&self, user_id: &str, new: &str) -> Result<(), StoreError> {
        let new = new.to_string();
        let hash = slow(move || passwords::hash(&new))
            .await
            .map_err(StoreError::Corrupt)?;
        self.inner.store.set_password(user_id, &hash).await
    }

    pub async fn create_key(
        &self,
        user_id: &str,
        name: &str,
        expires_at: Option<i64>,
    ) -> Result<NewKey, StoreError> {
        keys::create(&self.inner.store, user_id, name, expires_at).await
    }
}

/// Runs slow work (password hashing) on a blocking thread.
async fn slow<T: Send + 'static>(
    work: impl FnOnce() -> Result<T, String> + Send + 'static,
) -> Result<T, String> {
    tokio::task::spawn_blocking(work)
        .await
        .map_err(|e| e.to_string())?
}

/// Emails are compared case-insensitively: stored trimmed and lower-cased.
pub fn normal_email(email: &str) -> String {
    email.trim().to_lowercase()
}

fn checked(form: AccountForm) -> Result<AccountForm, AuthError> {
    let email = normal_email(&form.email);
    let valid = email.len() <= 254
        && email.split_once('@').is_some_and(|(user, domain)| {
            !user.is_empty()
                && domain.contains('.')
                && !domain.starts_with('.')
                && !domain.ends_with('.')
        })
        && !email.chars().any(|c| c.is_whitespace() || c.is_control());
    if !valid {
        return Err(AuthError::Invalid("enter a valid email address".into()));
    }
    let name = form.name.trim().to_string();
    let name = if name.is_empty() {
        email.split('@').next().unwrap_or("").to_string()
    } else {
        name
    };
    if name.chars().count() > 100 || name.chars().any(|c| c.is_control()) {
        return Err(AuthError::Invalid(
            "the name must be at most 100 characters".into(),
        ));
    }
    passwords::check_new(&form.password).map_err(AuthError::Invalid)?;
    Ok(AccountForm {
        name,
        email,
        password: form.password,
    })
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
    // Compare fixed-size digests so the time does not depend on the secret's length either.
    use sha2::{Digest, Sha256};
    let a = Sha256::digest(a.as_bytes());
    let b = Sha256::digest(b.as_bytes());
    a.ct_eq(&b).into()
}

/// SHA-256 as lower-case hex (session tokens and keys are stored this way).
pub fn sha256_hex(text: &str) -> String {
    use sha2::{Digest, Sha256};
    Sha256::digest(text.as_bytes())
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// A random token: 32 bytes, base64url.
pub fn random_token() -> Result<String, StoreError> {
    use base64::Engine as _;
    let mut bytes = [0u8; 32];
    getrandom::fill(&mut bytes).map_err(|e| StoreError::Corrupt(format!("no randomness: {e}")))?;
    Ok(base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes))
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

    #[test]
    fn account_forms_are_checked_and_normalised() {
        let form = |email: &str, password: &str| AccountForm {
            name: String::new(),
            email: email.into(),
            password: password.into(),
        };
        let ok = checked(form(" Ada@Example.COM ", "long enough")).unwrap();
        assert_eq!(ok.email, "ada@example.com");
        assert_eq!(ok.name, "ada");
        for bad in [
            "",
            "ada",
            "ada@",
            "@example.com",
            "ada@example",
            "a da@example.com",
        ] {
            assert!(checked(form(bad, "long enough")).is_err(), "{bad}");
        }
        assert!(checked(form("ada@example.com", "short")).is_err());
    }
}
