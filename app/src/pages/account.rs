//! The signed-in account's own pages: API keys (`/keys`: list, create with an optional expiry,
//! the new key shown once, revoke) and Change password (`/account`).

use leptos::prelude::*;
use leptos::task::spawn_local;

use crate::api::{ApiKey, CreatedApiKey, NewApiKey, PasswordChange};
use crate::browser;
use crate::client;
use crate::components::confirm::use_confirm;
use crate::components::icons::{Icon, Svg};
use crate::components::layout::Layout;
use crate::components::toasts::use_toasts;
use crate::components::user_menu::short_time;

#[component]
pub fn KeysPage() -> impl IntoView {
    view! {
        <Layout>
            <Keys/>
        </Layout>
    }
}

#[component]
fn Keys() -> impl IntoView {
    let toasts = use_toasts();
    let confirm = use_confirm();
    let version = RwSignal::new(0u32);
    let keys = LocalResource::new(move || {
        version.track();
        async move { client::get::<Vec<ApiKey>>("/api/keys").await }
    });
    let name = RwSignal::new(String::new());
    let expires = RwSignal::new(String::new());
    let error: RwSignal<Option<String>> = RwSignal::new(None);
    let created: RwSignal<Option<CreatedApiKey>> = RwSignal::new(None);
    let busy = RwSignal::new(false);
    let first: NodeRef<leptos::html::Input> = NodeRef::new();
    Effect::new(move |_| {
        if let Some(input) = first.get() {
            let _ = input.focus();
        }
    });

    let create = move |e: leptos::ev::SubmitEvent| {
        e.prevent_default();
        let body = NewApiKey {
            name: name.get_untracked().trim().to_string(),
            expires_at: Some(expires.get_untracked()).filter(|d| !d.is_empty()),
        };
        busy.set(true);
        error.set(None);
        spawn_local(async move {
            let result = client::send::<_, CreatedApiKey>("POST", "/api/keys", &body).await;
            busy.set(false);
            match result {
                Ok(key) => {
                    created.set(Some(key));
                    name.set(String::new());
                    expires.set(String::new());
                    version.update(|v| *v += 1);
                    // Once the key is on the screen.
                    set_timeout(|| client::focus("new-key-value"), std::time::Duration::ZERO);
                }
                Err(e) => error.set(Some(e.message)),
            }
        });
    };
    let revoke = move |key: ApiKey| {
        confirm.ask(
            "Revoke API key?",
            format!(
                "“{}” ({}…) stops working at once. Programs that use it will be refused.",
                key.name, key.prefix
            ),
            "Revoke",
            move || {
                let id = key.id.clone();
                spawn_local(async move {
                    match client::call("DELETE", &format!("/api/keys/{id}")).await {
                        Ok(()) => {
                            toasts.info("API key revoked");
                            version.update(|v| *v += 1);
                        }
                        Err(e) => toasts.error(e.message),
                    }
                });
            },
        );
    };

    view! {
        <header class="page-header">
            <div>
                <h1>"API keys"</h1>
                <p class="small muted">"Programs use a key as a bearer token on /api and /v1 (the OpenAI-compatible images API), acting as you."</p>
            </div>
        </header>
        <section class="page-body">
            {move || created.get().map(|key| {
                let value = key.key.clone();
                let copy = key.key.clone();
                view! {
                    <div class="new-key" role="region" aria-labelledby="new-key-title">
                        <h2 id="new-key-title">{format!("Your new key “{}”", key.name)}</h2>
                        <p class="warning" role="alert">"Copy it now: it is shown only this once. Easel keeps only a fingerprint of it."</p>
                        <div class="row">
                            <input id="new-key-value" class="key-value" readonly aria-label="The new API key" prop:value=value on:focus=move |e| {
                                #[cfg(feature = "hydrate")]
                                {
                                    use wasm_bindgen::JsCast;
                                    if let Some(input) = e.target().and_then(|t| t.dyn_into::<web_sys::HtmlInputElement>().ok()) {
                                        input.select();
                                    }
                                }
                                #[cfg(not(feature = "hydrate"))]
                                let _ = e;
                            }/>
                            <button type="button" class="button" on:click=move |_| {
                                browser::copy_text(&copy);
                                toasts.info("Key copied");
                            }>"Copy"</button>
                            <button type="button" class="button" on:click=move |_| created.set(None)>"Done"</button>
                        </div>
                    </div>
                }
            })}
            <form class="form inline-form" on:submit=create aria-label="Create an API key">
                <h2>"Create a key"</h2>
                <div class="row">
                    <label class="field">
                        <span>"Name"</span>
                        <input node_ref=first name="key-name" required maxlength="100" placeholder="e.g. laptop script" prop:value=move || name.get() on:input=move |e| name.set(event_target_value(&e))/>
                    </label>
                    <label class="field">
                        <span>"Expires (optional)"</span>
                        <input type="date" name="key-expiry" prop:value=move || expires.get() on:input=move |e| expires.set(event_target_value(&e))/>
                    </label>
                    <button type="submit" class="button primary" disabled=move || busy.get()><Svg icon=Icon::Plus/>" Create key"</button>
                </div>
                {move || error.get().map(|e| view! { <p class="error-text" role="alert">{e}</p> })}
            </form>
            <h2>"Your keys"</h2>
            {move || keys.get().map(|result| match result {
                Ok(list) if list.is_empty() => view! { <p class="muted">"No API keys yet."</p> }.into_any(),
                Ok(list) => view! {
                    <table class="data-table keys">
                        <thead>
                            <tr><th scope="col">"Name"</th><th scope="col">"Key"</th><th scope="col">"Created"</th><th scope="col">"Last used"</th><th scope="col">"Expires"</th><th scope="col"><span class="visually-hidden">"Actions"</span></th></tr>
                        </thead>
                        <tbody>
                            {list.into_iter().map(|k| {
                                let label = format!("Revoke {}", k.name);
                                let key = k.clone();
                                view! {
                                    <tr>
                                        <td>{k.name.clone()}</td>
                                        <td><code>{format!("{}…", k.prefix)}</code></td>
                                        <td>{short_time(&k.created_at)}</td>
                                        <td>{k.last_used_at.as_deref().map(short_time).unwrap_or_else(|| "never".into())}</td>
                                        <td>{k.expires_at.as_deref().map(short_time).unwrap_or_else(|| "never".into())}</td>
                                        <td><button type="button" class="button" aria-label=label on:click=move |_| revoke(key.clone())>"Revoke"</button></td>
                                    </tr>
                                }
                            }).collect_view()}
                        </tbody>
                    </table>
                }
                .into_any(),
                Err(e) => view! { <p class="error-text" role="alert">{e.message}</p> }.into_any(),
            })}
        </section>
    }
    .into_any()
}

#[component]
pub fn PasswordPage() -> impl IntoView {
    view! {
        <Layout>
            <ChangePassword/>
        </Layout>
    }
}

#[component]
fn ChangePassword() -> impl IntoView {
    let current = RwSignal::new(String::new());
    let new = RwSignal::new(String::new());
    let error: RwSignal<Option<String>> = RwSignal::new(None);
    let done = RwSignal::new(false);
    let busy = RwSignal::new(false);
    let first: NodeRef<leptos::html::Input> = NodeRef::new();
    Effect::new(move |_| {
        if let Some(input) = first.get() {
            let _ = input.focus();
        }
    });
    let submit = move |e: leptos::ev::SubmitEvent| {
        e.prevent_default();
        let body = PasswordChange {
            current: current.get_untracked(),
            new: new.get_untracked(),
        };
        busy.set(true);
        error.set(None);
        done.set(false);
        spawn_local(async move {
            let result = client::submit("POST", "/api/me/password", &body).await;
            busy.set(false);
            match result {
                Ok(()) => {
                    current.set(String::new());
                    new.set(String::new());
                    done.set(true);
                }
                // A wrong current password answers 401: the session is asked about again (it
                // is still good, so the page stays) and the message shows here.
                Err(e) => error.set(Some(e.message)),
            }
        });
    };
    view! {
        <header class="page-header">
            <h1>"Change password"</h1>
        </header>
        <section class="page-body">
            <form class="form narrow" on:submit=submit>
                <label class="field">
                    <span>"Current password"</span>
                    <input node_ref=first type="password" name="current" required autocomplete="current-password" prop:value=move || current.get() on:input=move |e| current.set(event_target_value(&e))/>
                </label>
                <label class="field">
                    <span>"New password"</span>
                    <input type="password" name="new" required autocomplete="new-password" prop:value=move || new.get() on:input=move |e| new.set(event_target_value(&e))/>
                </label>
                {move || error.get().map(|e| view! { <p class="error-text" role="alert">{e}</p> })}
                <Show when=move || done.get()>
                    <p class="notice" role="status">"Password changed. Your other sessions were signed out."</p>
                </Show>
                <div class="form-actions">
                    <button type="submit" class="button primary" disabled=move || busy.get()>"Change password"</button>
                </div>
            </form>
        </section>
    }
    .into_any()
}
