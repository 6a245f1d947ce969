//! The chat page: the selected conversation's history, the reply streaming in (text, then one
//! placeholder per requested image that fills with live previews and finished thumbnails), and
//! the message box. Leaving and coming back re-attaches to a reply still being written.

mod composer;
mod message;

use leptos::prelude::*;
use leptos::task::spawn_local;
use leptos_router::hooks::{use_navigate, use_params_map};

use crate::api::events as ev;
use crate::api::{
    Conversation, ConversationDetail, ErrorDetail, Message, PostMessage, PostMessageResponse,
    UpdateConversation,
};
use crate::client::{self, RunEvents};
use crate::components::confirm::use_confirm;
use crate::components::icons::{Icon, Svg};
use crate::components::layout::{conversation_starter, Layout};
use crate::components::toasts::{use_toasts, ToastList};
use crate::images::{self, ImageEvent, ImageSlot, ImageUpdate};
use crate::state::use_app;
use composer::Composer;
use message::MessageView;

/// One message on screen, with signals so streaming updates touch only what changes.
#[derive(Clone, Copy)]
pub struct Shown {
    pub id: StoredValue<String>,
    pub role: StoredValue<String>,
    pub content: RwSignal<String>,
    pub status: RwSignal<String>,
    pub error: RwSignal<Option<ErrorDetail>>,
    pub slots: RwSignal<Vec<ImageSlot>>,
    /// Tool failures shown inside the message (the LLM usually explains them too).
    pub notes: RwSignal<Vec<String>>,
    pub queue_position: RwSignal<Option<usize>>,
}

impl Shown {
    fn new(m: Message) -> Shown {
        let shown = Shown {
            id: StoredValue::new(m.id.clone()),
            role: StoredValue::new(m.role.clone()),
            content: RwSignal::new(String::new()),
            status: RwSignal::new(String::new()),
            error: RwSignal::new(None),
            slots: RwSignal::new(Vec::new()),
            notes: RwSignal::new(Vec::new()),
            queue_position: RwSignal::new(None),
        };
        shown.update(m);
        shown
    }

    /// Takes the stored state of the message (after a load or when its run ended).
    fn update(&self, m: Message) {
        let slots = m
            .images
            .into_iter()
            .enumerate()
            .map(|(i, image)| ImageSlot::finished(i as u32, image))
            .collect();
        let notes = m
            .tool_calls
            .iter()
            .filter_map(|c| tool_note(&c.result, c.is_error))
            .collect();
        self.content.set(m.content);
        self.status.set(m.status);
        self.error.set(m.error);
        self.slots.set(slots);
        self.notes.set(notes);
        self.queue_position.set(None);
    }
}

#[component]
pub fn ChatPage() -> impl IntoView {
    let params = use_params_map();
    let selected = Memo::new(move |_| params.read().get("id"));
    let start = conversation_starter();
    view! {
        <Layout>
            {move || match selected.get() {
                Some(id) => view! { <ConversationView id=id/> }.into_any(),
                None => {
                    let start = start.clone();
                    view! {
                        <div class="empty-state">
                            <img src="/favicon.svg" alt="" width="56" height="56"/>
                            <h1>"Easel"</h1>
                            <p>"A chat assistant that paints. Start a conversation, or pick one on the left."</p>
                            <button class="button primary" on:click=move |_| start(None)>"Start a conversation"</button>
                        </div>
                    }
                    .into_any()
                }
            }}
        </Layout>
    }
}

/// The composer's text, shared so "reuse settings" on an image can fill it.
#[derive(Clone, Copy)]
pub struct ComposerText(pub RwSignal<String>);

#[component]
fn ConversationView(id: String) -> impl IntoView {
    let app = use_app();
    let session = crate::session::use_session();
    let toasts = use_toasts();
    let confirm = use_confirm();
    let navigate = use_navigate();
    let conversation: RwSignal<Option<Conversation>> = RwSignal::new(None);
    let messages: RwSignal<Vec<Shown>> = RwSignal::new(Vec::new());
    let running: RwSignal<Option<String>> = RwSignal::new(None);
    let subscription: StoredValue<Option<RunEvents>, LocalStorage> = StoredValue::new_local(None);
    let load_error: RwSignal<Option<String>> = RwSignal::new(None);
    let text = RwSignal::new(String::new());
    provide_context(ComposerText(text));
    // Paint mode: each message asks for a picture for certain (Image creation on).
    let paint = RwSignal::new(false);
    let id = StoredValue::new(id);

    // Loads (or reloads) the conversation and reconciles the messages on screen with it.
    let load = move |attach_to_run: bool| {
        let conversation_id = id.get_value();
        spawn_local(async move {
            match client::get::<ConversationDetail>(&format!(
                "/api/conversations/{conversation_id}?images=url"
            ))
            .await
            {
                Ok(detail) => {
                    // The view may be gone by now (going from `/` to `/c/{id}` makes one in the
                    // page being left, too): then there is nothing to show the answer in.
                    let Some(mut list) = messages.try_get_untracked() else {
                        return;
                    };
                    let active = detail.conversation.active_run_id.clone();
                    conversation.set(Some(detail.conversation));
                    load_error.set(None);
                    let fresh: Vec<Shown> = detail
                        .messages
                        .into_iter()
                        .map(|m| match list.iter().find(|s| s.id.get_value() == m.id) {
                            Some(existing) => {
                                existing.update(m);
                                *existing
                            }
                            None => Shown::new(m),
                        })
                        .collect();
                    list.clear();
                    messages.set(fresh);
                    if attach_to_run {
                        let target = messages
                            .get_untracked()
                            .into_iter()
                            .rev()
                            .find(|m| m.status.get_untracked() == "running");
                        if let (Some(run), Some(target)) = (active, target) {
                            follow(
                                run,
                                target,
                                running,
                                subscription,
                                toasts,
                                Callback::new(move |_| {
                                    load_after_run(id, conversation, messages, app, session)
                                }),
                            );
                        }
                    }
                }
                Err(e) if e.status == 404 => {
                    load_error.set(Some("This conversation does not exist (any more).".into()))
                }
                Err(e) => load_error.set(Some(e.message)),
            }
        });
    };
    Effect::new(move |_| load(true));
    on_cleanup(move || subscription.set_value(None));

    let send = move || {
        let content = text.get_untracked();
        if content.trim().is_empty() || running.get_untracked().is_some() {
            return;
        }
        let conversation_id = id.get_value();
        spawn_local(async move {
            let body = PostMessage {
                content: content.clone(),
                paint: paint.get_untracked(),
            };
            match client::send::<_, PostMessageResponse>(
                "POST",
                &format!("/api/conversations/{conversation_id}/messages"),
                &body,
            )
            .await
            {
                Ok(answer) => {
                    text.set(String::new());
                    let user = Shown::new(local_message(
                        &answer.message_id,
                        "user",
                        &content,
                        "complete",
                    ));
                    let reply = Shown::new(local_message(
                        &answer.assistant_message_id,
                        "assistant",
                        "",
                        "running",
                    ));
                    messages.update(|list| {
                        list.push(user);
                        list.push(reply);
                    });
                    app.refresh_conversations();
                    // The first message names the conversation: show the new title now, not
                    // when the reply ends (only the header is refreshed; the reply streams on).
                    if let Ok(c) = client::get::<Conversation>(&format!(
                        "/api/conversations/{conversation_id}?images=url"
                    ))
                    .await
                    {
                        conversation.set(Some(c));
                    }
                    follow(
                        answer.run_id,
                        reply,
                        running,
                        subscription,
                        toasts,
                        Callback::new(move |_| {
                            load_after_run(id, conversation, messages, app, session)
                        }),
                    );
                }
                Err(e) => toasts.error(e.message),
            }
        });
    };
    let stop = move || {
        if let Some(run) = running.get_untracked() {
            spawn_local(async move {
                if let Err(e) = client::call("POST", &format!("/api/runs/{run}/cancel")).await {
                    toasts.error(e.message);
                }
            });
        }
    };
    let change_model = move |model: String| {
        let conversation_id = id.get_value();
        spawn_local(async move {
            let body = UpdateConversation {
                model: Some(Some(model).filter(|m| !m.is_empty())),
                ..Default::default()
            };
            match client::send::<_, Conversation>(
                "PATCH",
                &format!("/api/conversations/{conversation_id}"),
                &body,
            )
            .await
            {
                Ok(c) => {
                    conversation.set(Some(c));
                    toasts.info("Model changed");
                }
                Err(e) => toasts.error(e.message),
            }
        });
    };
    let clear = move || {
        confirm.ask(
            "Clear history?",
            "Every message and image of this conversation will be deleted. The conversation stays.",
            "Clear history",
            move || {
                let conversation_id = id.get_value();
                spawn_local(async move {
                    match client::call(
                        "DELETE",
                        &format!("/api/conversations/{conversation_id}/messages"),
                    )
                    .await
                    {
                        Ok(()) => {
                            messages.set(Vec::new());
                            toasts.info("History cleared");
                        }
                        Err(e) => toasts.error(e.message),
                    }
                });
            },
        );
    };

    let scroller: NodeRef<leptos::html::Div> = NodeRef::new();
    Effect::new(move |_| {
        // Keep the newest text in view while it streams.
        for m in messages.get() {
            m.content.track();
            m.slots.track();
        }
        if let Some(el) = scroller.get() {
            el.set_scroll_top(el.scroll_height());
        }
    });

    let models = app.models;
    view! {
        <header class="chat-header">
            <h1 class="chat-title">{move || conversation.get().map(|c| c.title).unwrap_or_default()}</h1>
            <div class="header-actions">
                <label class="model-select">
                    <span class="visually-hidden">"Model"</span>
                    <select
                        aria-label="Model"
                        on:change=move |e| change_model(event_target_value(&e))
                        prop:value=move || conversation.get().and_then(|c| c.model).unwrap_or_default()
                    >
                        <option value="">"Default model"</option>
                        {move || {
                            models
                                .get()
                                .and_then(|r| r.ok())
                                .map(|m| {
                                    m.llm
                                        .into_iter()
                                        .map(|llm| {
                                            let label = if llm.provider == llm.id { llm.name.clone() } else { format!("{} · {}", llm.name, llm.provider) };
                                            view! { <option value=llm.id.clone()>{label}</option> }
                                        })
                                        .collect_view()
                                })
                        }}
                    </select>
                </label>
                <button class="icon-button" aria-label="Clear history" title="Clear history" on:click=move |_| clear()>
                    <Svg icon=Icon::Broom/>
                </button>
            </div>
        </header>
        <div class="messages" node_ref=scroller>
            {move || {
                load_error
                    .get()
                    .map(|e| {
                        let navigate = navigate.clone();
                        view! {
                            <div class="empty-state">
                                <p class="error-text">{e}</p>
                                <button class="button" on:click=move |_| navigate("/", Default::default())>"Back"</button>
                            </div>
                        }
                    })
            }}
            <Show when=move || messages.with(Vec::is_empty) && conversation.with(Option::is_some)>
                <div class="empty-state small">
                    <p>"Say hello, ask a question, or describe a picture to paint."</p>
                </div>
            </Show>
            <For each=move || messages.get() key=|m| m.id.get_value() let:message>
                <MessageView message=message on_deleted=Callback::new(move |_| load(false))/>
            </For>
        </div>
        <Composer text=text running=running send=send stop=stop conversation=conversation paint=paint/>
    }
    .into_any()
}

/// When a run ends: reload the conversation for the stored state (full image metadata, title).
fn load_after_run(
    id: StoredValue<String>,
    conversation: RwSignal<Option<Conversation>>,
    messages: RwSignal<Vec<Shown>>,
    app: crate::state::AppState,
    session: crate::session::Session,
) {
    let conversation_id = id.get_value();
    app.refresh_conversations();
    // A reply that painted may have spent credits.
    session.refresh_me();
    spawn_local(async move {
        if let Ok(detail) = client::get::<ConversationDetail>(&format!(
            "/api/conversations/{conversation_id}?images=url"
        ))
        .await
        {
            conversation.set(Some(detail.conversation));
            // The conversation may have been left while the reply ended.
            let Some(list) = messages.try_get_untracked() else {
                return;
            };
            for m in detail.messages {
                if let Some(existing) = list.iter().find(|s| s.id.get_value() == m.id) {
                    existing.update(m);
                }
            }
        }
    });
}

/// Follows a run: the replay from its start rebuilds the reply, then live events extend it.
fn follow(
    run_id: String,
    target: Shown,
    running: RwSignal<Option<String>>,
    subscription: StoredValue<Option<RunEvents>, LocalStorage>,
    toasts: ToastList,
    on_end: Callback<()>,
) {
    target.content.set(String::new());
    target.slots.set(Vec::new());
    target.notes.set(Vec::new());
    running.set(Some(run_id.clone()));
    let handle = RunEvents::open(&run_id, move |name, data| {
        apply_event(name, data, target, toasts);
        if matches!(name, ev::RUN_FINISHED | ev::RUN_CANCELLED | ev::RUN_ERROR) {
            running.set(None);
            subscription.set_value(None);
            on_end.run(());
        }
    });
    subscription.set_value(handle);
}

fn local_message(id: &str, role: &str, content: &str, status: &str) -> Message {
    Message {
        id: id.into(),
        role: role.into(),
        content: content.into(),
        status: status.into(),
        error: None,
        model: None,
        run_id: None,
        images: Vec::new(),
        tool_calls: Vec::new(),
        created_at: String::new(),
        credits: 0,
    }
}

/// Applies one run event to the reply it belongs to.
fn apply_event(name: &str, data: &str, target: Shown, toasts: ToastList) {
    let value: serde_json::Value = serde_json::from_str(data).unwrap_or_default();
    if let Some(event) = ImageEvent::parse(name, &value) {
        match images::apply_to(target.slots, event) {
            ImageUpdate::Waiting { ahead } => {
                target.queue_position.set((ahead > 0).then_some(ahead))
            }
            ImageUpdate::Painting { .. } => target.queue_position.set(None),
            ImageUpdate::Finished | ImageUpdate::Ended => {}
        }
    }
    match name {
        ev::MESSAGE_DELTA => {
            if let Some(text) = value.get("text").and_then(|t| t.as_str()) {
                target.content.update(|c| c.push_str(text));
            }
        }
        ev::TOOL_RESULT => {
            if let Ok(r) = serde_json::from_value::<ev::ToolResult>(value) {
                if r.is_error {
                    let note = format!("Image generation: {}", r.result);
                    toasts.error(note.clone());
                    target.notes.update(|n| n.push(note));
                } else if let Some(note) = tool_note(&r.result, false) {
                    target.notes.update(|n| n.push(note));
                }
            }
        }
        ev::MESSAGE_DONE => {
            if let Ok(d) = serde_json::from_value::<ev::MessageDone>(value) {
                target.content.set(d.content);
                target.status.set(d.status);
            }
        }
        ev::RUN_ERROR => {
            if let Ok(e) = serde_json::from_value::<ev::RunError>(value) {
                toasts.error(e.message.clone());
                target.status.set("failed".into());
                target.error.set(Some(ErrorDetail {
                    code: e.code,
                    message: e.message,
                }));
            }
        }
        ev::RUN_CANCELLED => target.status.set("cancelled".into()),
        _ => {}
    }
}

/// What a person should read about a tool call: its error, or a warning on success (a prompt
/// longer than the model reads).
fn tool_note(result: &str, is_error: bool) -> Option<String> {
    let value = serde_json::from_str::<serde_json::Value>(result).ok()?;
    let key = if is_error { "error" } else { "warning" };
    value
        .get(key)
        .and_then(|e| e.as_str())
        .map(|e| format!("Image generation: {e}"))
}
