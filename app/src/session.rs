//! Who is using the page: the server's answer to `GET /api/auth/status` and, once signed in,
//! `GET /api/me` (name, role, credits). Provided once as context at the app's root; the auth
//! gate (`pages::auth`) reads it to decide what may render, the user menu shows it.
//!
//! Both are asked by the browser after hydration (the server renders the "Loading" screen), as
//! every other request of the app is.

use leptos::prelude::*;
use leptos::task::spawn_local;

use crate::api::{AuthStatus, Me};
use crate::client::{self, ClientResult};

#[derive(Clone, Copy)]
pub struct Session {
    /// `None` until the first answer.
    pub status: RwSignal<Option<ClientResult<AuthStatus>>>,
    /// The signed-in account (`None` until known, or when signed out).
    pub me: RwSignal<Option<Me>>,
}

/// What the page may show, from the status (a `Memo` of it, so a new answer that says the same
/// does not render the app again).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Screen {
    Loading,
    Unreachable(String),
    /// Accounts mode before the admin account exists.
    Setup,
    /// Accounts mode, signed out; `registration` is `closed`, `open` or `approval`.
    SignIn {
        registration: String,
    },
    /// No accounts, but the server's API key is required.
    Key,
    App,
}

impl Session {
    /// Asks the server again who this is (after signing in or out, or a 401 anywhere).
    pub fn reload(&self) {
        let this = *self;
        spawn_local(async move {
            let status = client::get::<AuthStatus>("/api/auth/status").await;
            let signed_in = matches!(&status, Ok(s) if s.signed_in);
            if !signed_in {
                this.me.set(None);
            }
            this.status.set(Some(status));
            if signed_in {
                this.refresh_me();
            }
        });
    }

    /// Reloads the account (its balance changes with every generation).
    pub fn refresh_me(&self) {
        let me = self.me;
        spawn_local(async move {
            if let Ok(m) = client::get::<Me>("/api/me").await {
                me.set(Some(m));
            }
        });
    }

    pub fn screen(&self) -> Screen {
        match self.status.get() {
            None => Screen::Loading,
            Some(Err(e)) => Screen::Unreachable(e.message),
            Some(Ok(s)) if s.setup_needed => Screen::Setup,
            Some(Ok(s)) if s.signed_in => Screen::App,
            Some(Ok(s)) if s.mode == "none" => Screen::Key,
            Some(Ok(s)) => Screen::SignIn {
                registration: s.registration,
            },
        }
    }

    /// Accounts mode (sign-in, API keys and passwords exist).
    pub fn accounts(&self) -> bool {
        self.status
            .with(|s| matches!(s, Some(Ok(s)) if s.mode == "accounts"))
    }

    /// Whether this browser can sign out: with accounts, or with the server's key.
    pub fn can_sign_out(&self) -> bool {
        self.status
            .with(|s| matches!(s, Some(Ok(s)) if s.mode == "accounts" || s.key_required))
    }

    pub fn is_admin(&self) -> bool {
        self.me
            .with(|m| m.as_ref().is_some_and(|m| m.role == "admin"))
    }

    /// Ends the session and loads the app afresh at `/`: nothing of this account stays in the
    /// page's memory, and whoever signs in next starts at home, not at this account's last
    /// address.
    pub fn sign_out(&self) {
        let this = *self;
        spawn_local(async move {
            let _ = client::call("POST", "/api/auth/logout").await;
            #[cfg(feature = "hydrate")]
            if window().location().set_href("/").is_ok() {
                return;
            }
            this.reload();
        });
    }
}

pub fn provide_session() {
    let session = Session {
        status: RwSignal::new(None),
        me: RwSignal::new(None),
    };
    provide_context(session);
    // Effects run only in the browser, after hydration.
    Effect::new(move |_| {
        client::on_unauthorized(move || session.reload());
        session.reload();
    });
}

pub fn use_session() -> Session {
    expect_context::<Session>()
}
