//! The account at the bottom of the sidebar: name, credit balance (when credits are on) and
//! when it refills, and a menu with API keys, Change password, Admin (admins only) and Sign out.

use leptos::prelude::*;

use crate::api::Me;
use crate::session::use_session;

/// `2026-12-01T00:00:00Z` → `2026-12-01 00:00 UTC`.
pub fn short_time(rfc3339: &str) -> String {
    let text: String = rfc3339.replace('T', " ").chars().take(16).collect();
    if rfc3339.ends_with('Z') {
        format!("{text} UTC")
    } else {
        text
    }
}

/// "40 credits · refills to 100 on 2026-12-01", or nothing with credits off.
fn credits_line(me: &Me) -> Option<String> {
    let c = &me.credits;
    if !c.enabled {
        return None;
    }
    let unit = if c.balance == 1 { "credit" } else { "credits" };
    Some(match &c.refills_at {
        Some(at) if c.allowance > 0 => format!(
            "{} {unit} · refills to {} on {}",
            c.balance,
            c.allowance,
            at.chars().take(10).collect::<String>()
        ),
        _ => format!("{} {unit}", c.balance),
    })
}

#[component]
pub fn UserMenu() -> impl IntoView {
    let session = use_session();
    let open = RwSignal::new(false);
    let name = move || {
        session.me.with(|m| {
            m.as_ref()
                .map(|m| m.name.clone())
                .filter(|n| !n.is_empty())
                .unwrap_or_else(|| "Local user".into())
        })
    };
    let credits = move || session.me.with(|m| m.as_ref().and_then(credits_line));
    let sign_out = move || {
        open.set(false);
        session.sign_out();
    };
    view! {
        <div
            class="user-menu"
            on:keydown=move |e| {
                if e.key() == "Escape" && open.get_untracked() {
                    open.set(false);
                    crate::client::focus("user-menu-button");
                }
            }
        >
            <Show when=move || open.get()>
                <div class="click-away" on:click=move |_| open.set(false)></div>
                <nav class="user-menu-popup" id="user-menu-popup" aria-label="Account">
                    <Show when=move || session.accounts()>
                        <a href="/keys" on:click=move |_| open.set(false)>"API keys"</a>
                        <a href="/account" on:click=move |_| open.set(false)>"Change password"</a>
                    </Show>
                    <Show when=move || session.is_admin()>
                        <a href="/admin" on:click=move |_| open.set(false)>"Admin"</a>
                    </Show>
                    <Show when=move || session.can_sign_out()>
                        <button type="button" class="link-button" on:click=move |_| sign_out()>"Sign out"</button>
                    </Show>
                </nav>
            </Show>
            <button
                type="button"
                id="user-menu-button"
                class="user-menu-button"
                aria-haspopup="true"
                aria-expanded=move || open.get().to_string()
                aria-controls="user-menu-popup"
                on:click=move |_| open.update(|o| *o = !*o)
            >
                <span class="user-name">{name}</span>
                {move || credits().map(|c| view! { <span class="user-credits small muted">{c}</span> })}
            </button>
        </div>
    }
}
