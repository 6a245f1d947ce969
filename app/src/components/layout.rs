//! The frame around every page: a sidebar with the navigation and the conversations (new,
//! search by title, rename, delete with confirmation; newest first) and the page itself.

use leptos::prelude::*;
use leptos::task::spawn_local;
use leptos_router::hooks::{use_location, use_navigate};

use super::confirm::use_confirm;
use super::icons::{Icon, Svg};
use super::toasts::use_toasts;
use super::user_menu::UserMenu;
use crate::api::{Conversation, CreateConversation, UpdateConversation};
use crate::client;
use crate::state::use_app;

#[component]
pub fn Layout(children: Children) -> impl IntoView {
    view! {
        <div class="layout">
            <Sidebar/>
            <main class="main" id="main">{children()}</main>
        </div>
    }
}

/// A function that starts a conversation (optionally with an agent) and opens it. Call this
/// while building a component (it reads context), then call the result from event handlers.
pub fn conversation_starter() -> impl Fn(Option<String>) + Clone + 'static {
    let app = use_app();
    let toasts = use_toasts();
    let navigate = use_navigate();
    move |agent_id: Option<String>| {
        let navigate = navigate.clone();
        spawn_local(async move {
            let body = CreateConversation {
                agent_id,
                ..Default::default()
            };
            match client::send::<_, Conversation>("POST", "/api/conversations", &body).await {
                Ok(c) => {
                    app.refresh_conversations();
                    navigate(&format!("/c/{}", c.id), Default::default());
                }
                Err(e) => toasts.error(e.message),
            }
        });
    }
}

#[component]
fn Sidebar() -> impl IntoView {
    let app = use_app();
    let location = use_location();
    let path = move || location.pathname.get();
    let search = RwSignal::new(String::new());
    let start = conversation_starter();
    let nav = move |href: &'static str, label: &'static str, icon: Icon| {
        let current = move || {
            let p = path();
            if href == "/" {
                p == "/" || p.starts_with("/c/")
            } else {
                p.starts_with(href)
            }
        };
        view! {
            <a href=href aria-current=move || current().then_some("page")>
                <Svg icon=icon/>
                {label}
            </a>
        }
    };
    view! {
        <aside class="sidebar" aria-label="Navigation and conversations">
            <div class="brand">
                <img src="/favicon.svg" alt="" width="22" height="22"/>
                "Easel"
            </div>
            <nav class="nav-links" aria-label="Pages">
                {nav("/", "Chat", Icon::Chat)}
                {nav("/agents", "Agents", Icon::Agent)}
                {nav("/studio", "Studio", Icon::Palette)}
            </nav>
            <button class="button primary new-chat" on:click=move |_| start(None)>
                <Svg icon=Icon::Plus/>
                " New conversation"
            </button>
            <label class="search">
                <Svg icon=Icon::Search/>
                <span class="visually-hidden">"Search conversations"</span>
                <input
                    type="search"
                    placeholder="Search by title"
                    prop:value=move || search.get()
                    on:input=move |e| search.set(event_target_value(&e))
                />
            </label>
            <nav class="conversation-list" aria-label="Conversations">
                {move || {
                    app.conversations
                        .get()
                        .map(|result| match result {
                            Ok(list) => {
                                let needle = search.get().to_lowercase();
                                let shown: Vec<Conversation> =
                                    list.into_iter().filter(|c| needle.is_empty() || c.title.to_lowercase().contains(&needle)).collect();
                                if shown.is_empty() {
                                    let text = if needle.is_empty() { "No conversations yet." } else { "No conversation matches." };
                                    view! { <p class="muted small">{text}</p> }.into_any()
                                } else {
                                    shown.into_iter().map(|c| view! { <ConversationItem conversation=c/> }).collect_view().into_any()
                                }
                            }
                            Err(e) => view! { <p class="error-text">{e.message}</p> }.into_any(),
                        })
                }}
            </nav>
            <UserMenu/>
        </aside>
    }
    .into_any()
}

#[component]
fn ConversationItem(conversation: Conversation) -> impl IntoView {
    let app = use_app();
    let toasts = use_toasts();
    let confirm = use_confirm();
    let navigate = use_navigate();
    let location = use_location();
    let id = StoredValue::new(conversation.id.clone());
    let href = format!("/c/{}", conversation.id);
    let current = {
        let href = href.clone();
        Memo::new(move |_| location.pathname.get() == href)
    };
    let title = RwSignal::new(conversation.title.clone());
    let editing = RwSignal::new(false);
    let input: NodeRef<leptos::html::Input> = NodeRef::new();
    Effect::new(move |_| {
        if editing.get() {
            if let Some(i) = input.get() {
                let _ = i.focus();
                i.select();
            }
        }
    });
    let save = move |value: String| {
        editing.set(false);
        let value = value.trim().to_string();
        if value.is_empty() || value == title.get_untracked() {
            return;
        }
        title.set(value.clone());
        let id = id.get_value();
        spawn_local(async move {
            let body = UpdateConversation {
                title: Some(value),
                ..Default::default()
            };
            match client::send::<_, Conversation>(
                "PATCH",
                &format!("/api/conversations/{id}"),
                &body,
            )
            .await
            {
                Ok(_) => app.refresh_conversations(),
                Err(e) => toasts.error(e.message),
            }
        });
    };
    let delete = move || {
        let name = title.get_untracked();
        let navigate = navigate.clone();
        confirm.ask(
            "Delete conversation?",
            format!(
                "“{name}” and all its messages and images will be deleted. This cannot be undone."
            ),
            "Delete",
            move || {
                let id = id.get_value();
                let navigate = navigate.clone();
                spawn_local(async move {
                    match client::call("DELETE", &format!("/api/conversations/{id}")).await {
                        Ok(()) => {
                            app.refresh_conversations();
                            // Its sidebar entry may be gone by now; then so is the question.
                            if current.try_get_untracked().unwrap_or(false) {
                                navigate("/", Default::default());
                            }
                            toasts.info("Conversation deleted");
                        }
                        Err(e) => toasts.error(e.message),
                    }
                });
            },
        );
    };
    view! {
        <div class="conversation-item" class:current=current>
            <Show
                when=move || editing.get()
                fallback=move || {
                    view! {
                        <a href=href.clone() aria-current=move || current.get().then_some("page") title=move || title.get()>
                            {move || title.get()}
                        </a>
                    }
                }
            >
                <input
                    class="rename"
                    node_ref=input
                    aria-label="Conversation title"
                    maxlength="200"
                    prop:value=move || title.get_untracked()
                    on:keydown=move |e| match e.key().as_str() {
                        "Enter" => save(event_target_value(&e)),
                        "Escape" => editing.set(false),
                        _ => {}
                    }
                    on:blur=move |e| {
                        if editing.get_untracked() {
                            save(event_target_value(&e))
                        }
                    }
                />
            </Show>
            <button class="icon-button" aria-label=move || format!("Rename {}", title.get()) on:click=move |_| editing.set(true)>
                <Svg icon=Icon::Pencil/>
            </button>
            <button class="icon-button" aria-label=move || format!("Delete {}", title.get()) on:click=move |_| delete()>
                <Svg icon=Icon::Trash/>
            </button>
        </div>
    }
    .into_any()
}
