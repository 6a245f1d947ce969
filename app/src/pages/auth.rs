//! The auth gate at the app's root and its pages: "Create the admin account" on a fresh server,
//! "Sign in" (with "Create an account" when registration is open or needs approval), and
//! "Enter the server's API key" without accounts when `EASEL_API_KEY` is set. Nothing else
//! renders (and nothing else is asked of the server) until the gate lets the visitor through;
//! the address stays, so a link opened while signed out shows its page after signing in.

use leptos::prelude::*;
use leptos::task::spawn_local;
use leptos_router::components::Outlet;

use crate::api::{AccountForm, LoginForm};
use crate::client::{self, ClientError};
use crate::session::{use_session, Screen};

/// The parent route of every page: the page (`Outlet`) only once through.
#[component]
pub fn AuthGate() -> impl IntoView {
    let session = use_session();
    let screen = Memo::new(move |_| session.screen());
    move || {
        match screen.get() {
        Screen::Loading => view! {
            <div class="auth-page" aria-busy="true">
                <p class="muted">"Loading…"</p>
            </div>
        }
        .into_any(),
        Screen::Unreachable(message) => view! {
            <div class="auth-page">
                <div class="auth-card">
                    <h1>"Easel cannot be reached"</h1>
                    <p class="error-text" role="alert">{message}</p>
                    <button class="button primary" on:click=move |_| session.reload()>"Try again"</button>
                </div>
            </div>
        }
        .into_any(),
        Screen::Setup => view! { <SetupPage/> }.into_any(),
        Screen::SignIn { registration } => view! { <SignInPage registration/> }.into_any(),
        Screen::Key => view! { <KeyPage/> }.into_any(),
        Screen::App => view! { <SignedIn/> }.into_any(),
    }
    }
}

/// The app of a signed-in visitor: its state (conversations, models) is made, and asked of the
/// server, only once the gate lets the visitor through, and made anew after signing in again.
#[component]
fn SignedIn() -> impl IntoView {
    crate::state::provide_app_state();
    view! { <Outlet/> }
}

/// The words for a refused sign-in: the server's message says what happened (wrong pair,
/// "try again in N seconds", disabled, waiting for approval).
fn refusal(e: ClientError) -> String {
    match e.status {
        0 | 401 | 403 | 409 | 422 | 429 => e.message,
        status => format!("The server answered {status}: {}", e.message),
    }
}

/// A labelled input that binds to `value`; `node` lets the page focus it.
#[component]
fn Field(
    label: &'static str,
    name: &'static str,
    #[prop(default = "text")] kind: &'static str,
    #[prop(default = "")] autocomplete: &'static str,
    value: RwSignal<String>,
    #[prop(optional)] node: Option<NodeRef<leptos::html::Input>>,
) -> impl IntoView {
    let node = node.unwrap_or_default();
    view! {
        <label class="field">
            <span>{label}</span>
            <input
                node_ref=node
                type=kind
                name=name
                required
                autocomplete=autocomplete
                prop:value=move || value.get()
                on:input=move |e| value.set(event_target_value(&e))
            />
        </label>
    }
}

/// Focuses the input as soon as it is in the page.
fn focus_when_mounted(node: NodeRef<leptos::html::Input>) {
    Effect::new(move |_| {
        if let Some(input) = node.get() {
            let _ = input.focus();
        }
    });
}

#[component]
fn SetupPage() -> impl IntoView {
    let session = use_session();
    let name = RwSignal::new(String::new());
    let email = RwSignal::new(String::new());
    let password = RwSignal::new(String::new());
    let error: RwSignal<Option<String>> = RwSignal::new(None);
    let busy = RwSignal::new(false);
    let first = NodeRef::new();
    focus_when_mounted(first);
    let submit = move |e: leptos::ev::SubmitEvent| {
        e.prevent_default();
        let form = AccountForm {
            name: name.get_untracked(),
            email: email.get_untracked(),
            password: password.get_untracked(),
            role: None,
        };
        busy.set(true);
        error.set(None);
        spawn_local(async move {
            let result =
                client::send::<_, serde_json::Value>("POST", "/api/auth/setup", &form).await;
            busy.set(false);
            match result {
                Ok(_) => session.reload(),
                Err(e) => error.set(Some(refusal(e))),
            }
        });
    };
    view! {
        <main class="auth-page">
            <form class="auth-card form" on:submit=submit aria-labelledby="auth-title">
                <h1 id="auth-title">"Create the admin account"</h1>
                <p class="muted">"This is a new Easel. The first account manages the others, the settings and the credits."</p>
                <Field label="Name" name="name" autocomplete="name" value=name node=first/>
                <Field label="Email" name="email" kind="email" autocomplete="email" value=email/>
                <Field label="Password" name="password" kind="password" autocomplete="new-password" value=password/>
                {move || error.get().map(|e| view! { <p class="error-text" role="alert">{e}</p> })}
                <div class="form-actions">
                    <button type="submit" class="button primary" disabled=move || busy.get()>"Create the admin account"</button>
                </div>
            </form>
        </main>
    }
}

#[component]
fn SignInPage(registration: String) -> impl IntoView {
    let session = use_session();
    let can_sign_up = registration == "open" || registration == "approval";
    let approval = registration == "approval";
    let signing_up = RwSignal::new(false);
    let name = RwSignal::new(String::new());
    let email = RwSignal::new(String::new());
    let password = RwSignal::new(String::new());
    let error: RwSignal<Option<String>> = RwSignal::new(None);
    let notice: RwSignal<Option<String>> = RwSignal::new(None);
    let busy = RwSignal::new(false);
    let first_sign_in = NodeRef::new();
    let first_sign_up = NodeRef::new();
    focus_when_mounted(first_sign_in);
    focus_when_mounted(first_sign_up);

    let submit = move |e: leptos::ev::SubmitEvent| {
        e.prevent_default();
        busy.set(true);
        error.set(None);
        notice.set(None);
        let up = signing_up.get_untracked();
        let (email, password, name) = (
            email.get_untracked(),
            password.get_untracked(),
            name.get_untracked(),
        );
        spawn_local(async move {
            let result = if up {
                let form = AccountForm {
                    name,
                    email,
                    password,
                    role: None,
                };
                client::send::<_, serde_json::Value>("POST", "/api/auth/signup", &form).await
            } else {
                let form = LoginForm {
                    email: Some(email),
                    password: Some(password),
                    key: None,
                };
                client::send::<_, serde_json::Value>("POST", "/api/auth/login", &form).await
            };
            busy.set(false);
            match result {
                // 202: the account exists but waits for an admin.
                Ok(body) if body.get("status").and_then(|s| s.as_str()) == Some("pending") => {
                    let message = body
                        .get("message")
                        .and_then(|m| m.as_str())
                        .unwrap_or("Your account waits for an administrator's approval.")
                        .to_string();
                    notice.set(Some(message));
                    signing_up.set(false);
                }
                Ok(_) => session.reload(),
                Err(e) => error.set(Some(refusal(e))),
            }
        });
    };
    let switch_to = move |up: bool| {
        signing_up.set(up);
        error.set(None);
        notice.set(None);
        // Signing up focuses the name field as it appears; back to signing in, the email.
        if !up {
            if let Some(input) = first_sign_in.get_untracked() {
                let _ = input.focus();
            }
        }
    };
    view! {
        <main class="auth-page">
            <form class="auth-card form" on:submit=submit aria-labelledby="auth-title">
                <h1 id="auth-title">{move || if signing_up.get() { "Create an account" } else { "Sign in to Easel" }}</h1>
                <Show when=move || signing_up.get()>
                    <Field label="Name" name="name" autocomplete="name" value=name node=first_sign_up/>
                </Show>
                <Field label="Email" name="email" kind="email" autocomplete="username" value=email node=first_sign_in/>
                <Field label="Password" name="password" kind="password" autocomplete="current-password" value=password/>
                {move || error.get().map(|e| view! { <p class="error-text" role="alert">{e}</p> })}
                {move || notice.get().map(|n| view! { <p class="notice" role="status">{n}</p> })}
                <div class="form-actions">
                    <button type="submit" class="button primary" disabled=move || busy.get()>
                        {move || if signing_up.get() { "Create account" } else { "Sign in" }}
                    </button>
                </div>
                {can_sign_up.then(|| view! {
                    <p class="small">
                        <Show
                            when=move || signing_up.get()
                            fallback=move || view! {
                                "No account yet? "
                                <button type="button" class="link-button" on:click=move |_| switch_to(true)>"Create an account"</button>
                                {approval.then_some(" (an administrator approves it)")}
                            }
                        >
                            "Have an account? "
                            <button type="button" class="link-button" on:click=move |_| switch_to(false)>"Sign in"</button>
                        </Show>
                    </p>
                })}
            </form>
        </main>
    }
}

#[component]
fn KeyPage() -> impl IntoView {
    let session = use_session();
    let key = RwSignal::new(String::new());
    let error: RwSignal<Option<String>> = RwSignal::new(None);
    let busy = RwSignal::new(false);
    let first = NodeRef::new();
    focus_when_mounted(first);
    let submit = move |e: leptos::ev::SubmitEvent| {
        e.prevent_default();
        let form = LoginForm {
            key: Some(key.get_untracked().trim().to_string()),
            ..Default::default()
        };
        busy.set(true);
        error.set(None);
        spawn_local(async move {
            let result = client::submit("POST", "/api/auth/login", &form).await;
            busy.set(false);
            match result {
                Ok(()) => session.reload(),
                Err(e) => error.set(Some(refusal(e))),
            }
        });
    };
    view! {
        <main class="auth-page">
            <form class="auth-card form" on:submit=submit aria-labelledby="auth-title">
                <h1 id="auth-title">"Enter the server's API key"</h1>
                <p class="muted">"This Easel is protected by the key in its EASEL_API_KEY setting."</p>
                <Field label="API key" name="key" kind="password" autocomplete="current-password" value=key node=first/>
                {move || error.get().map(|e| view! { <p class="error-text" role="alert">{e}</p> })}
                <div class="form-actions">
                    <button type="submit" class="button primary" disabled=move || busy.get()>"Continue"</button>
                </div>
            </form>
        </main>
    }
}
