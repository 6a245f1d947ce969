//! The chat page: conversations on the left, the selected conversation on the right, the
//! reply streaming in (text, then image placeholders that fill with live previews and finished
//! thumbnails), and the message box with its internal-tools menu.

use leptos::prelude::*;
use leptos::task::spawn_local;
use leptos_router::hooks::{use_navigate, use_params_map};

use crate::api::events as ev;
use crate::api::{
    limits, Conversation, ConversationDetail, CreateConversation, ErrorDetail, Image,
    InternalTools, Message, ModelsResponse, PostMessage, PostMessageResponse, UpdateConversation,
};
use crate::client::{self, RunEvents};
use crate::components::toasts::use_toasts;
use crate::markdown;

/// An image slot of a reply: a placeholder with progress until the image arrives.
#[derive(Debug, Clone, PartialEq)]
struct Slot {
    index: u32,
    step: u32,
    steps: u32,
    preview: Option<String>,
    image: Option<Image>,
}

/// One message on screen, with signals so streaming updates touch only what changes.
#[derive(Clone, Copy)]
struct Shown {
    id: StoredValue<String>,
    role: StoredValue<String>,
    content: RwSignal<String>,
    status: RwSignal<String>,
    error: RwSignal<Option<ErrorDetail>>,
    slots: RwSignal<Vec<Slot>>,
    queue_position: RwSignal<Option<usize>>,
}

impl Shown {
    fn from_message(m: Message) -> Shown {
        let slots = m
            .images
            .into_iter()
            .enumerate()
            .map(|(i, image)| Slot {
                index: i as u32,
                step: 0,
                steps: 0,
                preview: None,
                image: Some(image),
            })
            .collect();
        Shown {
            id: StoredValue::new(m.id),
            role: StoredValue::new(m.role),
            content: RwSignal::new(m.content),
            status: RwSignal::new(m.status),
            error: RwSignal::new(m.error),
            slots: RwSignal::new(slots),
            queue_position: RwSignal::new(None),
        }
    }
}

#[component]
pub fn ChatPage() -> impl IntoView {
    let params = use_params_map();
    let selected = Memo::new(move |_| params.read().get("id"));
    let toasts = use_toasts();
    let navigate = use_navigate();

    let list_version = RwSignal::new(0u32);
    let conversations = LocalResource::new(move || {
        list_version.track();
        async move { client::get::<Vec<Conversation>>("/api/conversations").await }
    });
    let models =
        LocalResource::new(|| async { client::get::<ModelsResponse>("/api/models").await });

    let new_conversation = {
        let navigate = navigate.clone();
        move || {
            let navigate = navigate.clone();
            spawn_local(async move {
                match client::send::<_, Conversation>(
                    "POST",
                    "/api/conversations",
                    &CreateConversation::default(),
                )
                .await
                {
                    Ok(c) => {
                        list_version.update(|v| *v += 1);
                        navigate(&format!("/c/{}", c.id), Default::default());
                    }
                    Err(e) => toasts.error(e.message),
                }
            });
        }
    };

    let delete_conversation = {
        let navigate = navigate.clone();
        move |id: String| {
            let navigate = navigate.clone();
            spawn_local(async move {
                match client::call("DELETE", &format!("/api/conversations/{id}")).await {
                    Ok(()) => {
                        list_version.update(|v| *v += 1);
                        if selected.get_untracked().as_deref() == Some(id.as_str()) {
                            navigate("/", Default::default());
                        }
                    }
                    Err(e) => toasts.error(e.message),
                }
            });
        }
    };

    let new_click = new_conversation.clone();
    view! {
        <div class="layout">
            <aside class="sidebar" aria-label="Conversations">
                <div class="brand">
                    <span class="brand-mark" aria-hidden="true">"◐"</span>
                    " Easel"
                </div>
                <button class="button primary new-chat" on:click=move |_| new_click()>"+ New conversation"</button>
                <nav class="conversation-list">
                    {move || {
                        conversations
                            .get()
                            .map(|result| match result {
                                Ok(list) if list.is_empty() => view! { <p class="muted">"No conversations yet."</p> }.into_any(),
                                Ok(list) => {
                                    let delete_conversation = delete_conversation.clone();
                                    list.into_iter()
                                        .map(|c| {
                                            let id = c.id.clone();
                                            let href = format!("/c/{}", c.id);
                                            let current = {
                                                let id = id.clone();
                                                Memo::new(move |_| selected.get().as_deref() == Some(id.as_str()))
                                            };
                                            let delete_conversation = delete_conversation.clone();
                                            let title = c.title.clone();
                                            view! {
                                                <div class="conversation-item" class:current=current>
                                                    <a href=href aria-current=move || current.get().then_some("page")>{c.title.clone()}</a>
                                                    <button
                                                        class="icon-button"
                                                        aria-label=format!("Delete conversation {title}")
                                                        on:click=move |_| delete_conversation(id.clone())
                                                    >
                                                        "🗑"
                                                    </button>
                                                </div>
                                            }
                                        })
                                        .collect_view()
                                        .into_any()
                                }
                                Err(e) => view! { <p class="error-text">{e.message}</p> }.into_any(),
                            })
                    }}
                </nav>
            </aside>
            <main class="chat-main">
                {move || match selected.get() {
                    Some(id) => view! { <ConversationView id=id models=models list_version=list_version/> }.into_any(),
                    None => {
                        let new_conversation = new_conversation.clone();
                        view! {
                            <div class="empty-state">
                                <h1>"Easel"</h1>
                                <p>"A chat assistant that paints. Start a conversation, or pick one on the left."</p>
                                <button class="button primary" on:click=move |_| new_conversation()>"Start a conversation"</button>
                            </div>
                        }
                            .into_any()
                    }
                }}
            </main>
        </div>
    }
}

#[component]
fn ConversationView(
    id: String,
    models: LocalResource<Result<ModelsResponse, client::ClientError>>,
    list_version: RwSignal<u32>,
) -> impl IntoView {
    let toasts = use_toasts();
    let conversation: RwSignal<Option<Conversation>> = RwSignal::new(None);
    let messages: RwSignal<Vec<Shown>> = RwSignal::new(Vec::new());
    let running: RwSignal<Option<String>> = RwSignal::new(None);
    let subscription: StoredValue<Option<RunEvents>, LocalStorage> = StoredValue::new_local(None);
    let load_error: RwSignal<Option<String>> = RwSignal::new(None);
    let id = StoredValue::new(id);

    // Follows a run: the replay from its start rebuilds the reply, then live events extend it.
    let attach = move |run_id: String, target: Shown| {
        target.content.set(String::new());
        running.set(Some(run_id.clone()));
        let handle = RunEvents::open(&run_id, move |name, data| {
            apply_event(name, data, target, running, toasts, list_version);
            if matches!(name, ev::RUN_FINISHED | ev::RUN_CANCELLED | ev::RUN_ERROR) {
                subscription.set_value(None);
            }
        });
        subscription.set_value(handle);
    };

    let load = move || {
        let id = id.get_value();
        spawn_local(async move {
            match client::get::<ConversationDetail>(&format!("/api/conversations/{id}?images=url"))
                .await
            {
                Ok(detail) => {
                    let active = detail.conversation.active_run_id.clone();
                    let shown: Vec<Shown> = detail
                        .messages
                        .into_iter()
                        .map(Shown::from_message)
                        .collect();
                    let last_running = shown
                        .iter()
                        .rev()
                        .find(|m| m.status.get_untracked() == "running")
                        .copied();
                    conversation.set(Some(detail.conversation));
                    messages.set(shown);
                    load_error.set(None);
                    if let (Some(run), Some(target)) = (active, last_running) {
                        attach(run, target);
                    }
                }
                Err(e) => load_error.set(Some(e.message)),
            }
        });
    };
    Effect::new(move |_| load());
    on_cleanup(move || subscription.set_value(None));

    let text = RwSignal::new(String::new());
    let send = move || {
        let content = text.get_untracked();
        if content.trim().is_empty() || running.get_untracked().is_some() {
            return;
        }
        let id = id.get_value();
        spawn_local(async move {
            match client::send::<_, PostMessageResponse>(
                "POST",
                &format!("/api/conversations/{id}/messages"),
                &PostMessage {
                    content: content.clone(),
                },
            )
            .await
            {
                Ok(answer) => {
                    text.set(String::new());
                    let user = Shown::from_message(local_message(
                        &answer.message_id,
                        "user",
                        &content,
                        "complete",
                    ));
                    let reply = Shown::from_message(local_message(
                        &answer.assistant_message_id,
                        "assistant",
                        "",
                        "running",
                    ));
                    messages.update(|list| {
                        list.push(user);
                        list.push(reply);
                    });
                    list_version.update(|v| *v += 1);
                    attach(answer.run_id, reply);
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
        let id = id.get_value();
        spawn_local(async move {
            let body = UpdateConversation {
                model: Some(Some(model).filter(|m| !m.is_empty())),
                ..Default::default()
            };
            match client::send::<_, Conversation>(
                "PATCH",
                &format!("/api/conversations/{id}"),
                &body,
            )
            .await
            {
                Ok(c) => conversation.set(Some(c)),
                Err(e) => toasts.error(e.message),
            }
        });
    };

    let scroller: NodeRef<leptos::html::Div> = NodeRef::new();
    Effect::new(move |_| {
        // Re-run on any message change; keep the newest text in view.
        messages.track();
        for m in messages.get() {
            m.content.track();
            m.slots.track();
        }
        if let Some(el) = scroller.get() {
            el.set_scroll_top(el.scroll_height());
        }
    });

    view! {
        <header class="chat-header">
            <h1 class="chat-title">{move || conversation.get().map(|c| c.title).unwrap_or_default()}</h1>
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
                                    .map(|llm| view! { <option value=llm.id.clone()>{llm.name.clone()} " (" {llm.provider.clone()} ")"</option> })
                                    .collect_view()
                            })
                    }}
                </select>
            </label>
        </header>
        <div class="messages" node_ref=scroller aria-live="polite">
            {move || load_error.get().map(|e| view! { <p class="error-text">{e}</p> })}
            <For each=move || messages.get() key=|m| m.id.get_value() let:message>
                <MessageView message=message/>
            </For>
        </div>
        <Composer text=text running=running send=send stop=stop conversation=conversation models=models/>
    }
    .into_any()
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
    }
}

/// Applies one run event to the reply it belongs to.
fn apply_event(
    name: &str,
    data: &str,
    target: Shown,
    running: RwSignal<Option<String>>,
    toasts: crate::components::toasts::ToastList,
    list_version: RwSignal<u32>,
) {
    let value: serde_json::Value = serde_json::from_str(data).unwrap_or_default();
    match name {
        ev::MESSAGE_DELTA => {
            if let Some(text) = value.get("text").and_then(|t| t.as_str()) {
                target.content.update(|c| c.push_str(text));
            }
        }
        ev::IMAGE_QUEUED => {
            if let Ok(q) = serde_json::from_value::<ev::ImageQueued>(value) {
                target
                    .queue_position
                    .set((q.queue_position > 0).then_some(q.queue_position));
                target.slots.update(|slots| {
                    for index in q.first_index..q.first_index + q.count {
                        if !slots.iter().any(|s| s.index == index) {
                            slots.push(Slot {
                                index,
                                step: 0,
                                steps: 0,
                                preview: None,
                                image: None,
                            });
                        }
                    }
                });
            }
        }
        ev::IMAGE_PROGRESS => {
            if let Ok(p) = serde_json::from_value::<ev::ImageProgress>(value) {
                target.queue_position.set(None);
                target.slots.update(|slots| {
                    if let Some(slot) = slots.iter_mut().find(|s| s.index == p.index) {
                        slot.step = p.step;
                        slot.steps = p.steps;
                        if p.preview.is_some() {
                            slot.preview = p.preview;
                        }
                    }
                });
            }
        }
        ev::IMAGE_DONE => {
            if let Ok(d) = serde_json::from_value::<ev::ImageDone>(value) {
                target.slots.update(|slots| {
                    if let Some(slot) = slots.iter_mut().find(|s| s.index == d.index) {
                        slot.image = Some(Image {
                            id: d.image_id.clone(),
                            mime: "image/png".into(),
                            width: d.width,
                            height: d.height,
                            b64: None,
                            url: Some(d.url.clone()),
                            thumbnail_url: d.thumbnail_url.clone(),
                            metadata: Default::default(),
                        });
                    }
                });
            }
        }
        ev::TOOL_RESULT => {
            if let Ok(r) = serde_json::from_value::<ev::ToolResult>(value) {
                if r.is_error {
                    toasts.error(format!("Image generation: {}", r.result));
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
            target
                .slots
                .update(|slots| slots.retain(|s| s.image.is_some()));
            running.set(None);
        }
        ev::RUN_CANCELLED => {
            target.status.set("cancelled".into());
            target
                .slots
                .update(|slots| slots.retain(|s| s.image.is_some()));
            running.set(None);
        }
        ev::RUN_FINISHED => {
            running.set(None);
            list_version.update(|v| *v += 1);
        }
        _ => {}
    }
}

#[component]
fn MessageView(message: Shown) -> impl IntoView {
    let is_user = message.role.get_value() == "user";
    let body = move || {
        let text = message.content.get();
        if is_user {
            view! { <p class="user-text">{text}</p> }.into_any()
        } else {
            view! { <div class="markdown" inner_html=markdown::to_html(&text)></div> }.into_any()
        }
    };
    let status = move || match message.status.get().as_str() {
        "running" if message.content.get().is_empty() && message.slots.get().is_empty() => Some(
            view! { <p class="typing" aria-label="The assistant is writing">"●●●"</p> }.into_any(),
        ),
        "cancelled" => Some(view! { <p class="note">"Stopped."</p> }.into_any()),
        _ => None,
    };
    view! {
        <article class="message" class:from-user=is_user class:from-assistant=!is_user aria-label=if is_user { "You" } else { "Assistant" }>
            {body}
            {move || message.queue_position.get().map(|p| view! { <p class="note">"Waiting for the image engine (" {p} " ahead)…"</p> })}
            <div class="image-grid">
                <For each=move || message.slots.get() key=|s| (s.index, s.image.as_ref().map(|i| i.id.clone()), s.step) let:tile>
                    <ImageSlot tile=tile/>
                </For>
            </div>
            {status}
            {move || message.error.get().map(|e| view! { <p class="error-text" role="alert">{e.message}</p> })}
        </article>
    }
    .into_any()
}

#[component]
fn ImageSlot(tile: Slot) -> impl IntoView {
    let slot = tile;
    match slot.image {
        Some(image) => {
            let alt = image
                .metadata
                .tool_arguments
                .get("prompt")
                .and_then(|p| p.as_str())
                .unwrap_or(&image.metadata.prompt)
                .to_string();
            let alt = if alt.is_empty() {
                "Generated image".to_string()
            } else {
                alt
            };
            view! {
                <figure class="image-tile">
                    <a href=image.url.clone().unwrap_or_default() target="_blank">
                        <img src=image.thumbnail_url.clone() alt=alt width=image.width height=image.height loading="lazy"/>
                    </a>
                </figure>
            }
            .into_any()
        }
        None => {
            let label = if slot.steps > 0 {
                format!("Painting, step {} of {}", slot.step, slot.steps)
            } else {
                "Queued".to_string()
            };
            let percent = (slot.step * 100).checked_div(slot.steps).unwrap_or(0);
            view! {
                <figure class="image-tile placeholder" aria-label=label.clone()>
                    {slot.preview.map(|p| view! { <img src=p alt="" class="preview"/> })}
                    <figcaption>
                        <progress max="100" value=percent></progress>
                        <span>{label.clone()}</span>
                    </figcaption>
                </figure>
            }
            .into_any()
        }
    }
}

#[component]
fn Composer(
    text: RwSignal<String>,
    running: RwSignal<Option<String>>,
    send: impl Fn() + Clone + Send + Sync + 'static,
    stop: impl Fn() + Clone + Send + Sync + 'static,
    conversation: RwSignal<Option<Conversation>>,
    models: LocalResource<Result<ModelsResponse, client::ClientError>>,
) -> impl IntoView {
    let toasts = use_toasts();
    let count = move || text.with(|t| t.chars().count());
    let near_limit = move || count() > limits::MESSAGE_MAX_CHARS * 9 / 10;
    let send_key = send.clone();
    let on_key = move |e: leptos::ev::KeyboardEvent| {
        if e.key() == "Enter" && !e.shift_key() && !e.is_composing() {
            e.prevent_default();
            send_key();
        }
    };
    let menu_open = RwSignal::new(false);
    let available = move || {
        models
            .get()
            .and_then(|r| r.ok())
            .map(|m| m.image_creation_available)
            .unwrap_or(false)
    };
    let image_on = move || {
        conversation
            .get()
            .map(|c| c.internal_tools.image_creation)
            .unwrap_or(false)
    };
    let toggle_images = move || {
        let Some(c) = conversation.get_untracked() else {
            return;
        };
        let wanted = !c.internal_tools.image_creation;
        spawn_local(async move {
            let body = UpdateConversation {
                internal_tools: Some(InternalTools {
                    image_creation: wanted,
                }),
                ..Default::default()
            };
            match client::send::<_, Conversation>(
                "PATCH",
                &format!("/api/conversations/{}", c.id),
                &body,
            )
            .await
            {
                Ok(updated) => {
                    conversation.set(Some(updated));
                    toasts.info("Internal tools configuration updated");
                }
                Err(e) => toasts.error(e.message),
            }
        });
    };
    let send_click = send.clone();
    let stop_click = stop.clone();
    view! {
        <form class="composer" on:submit=move |e| { e.prevent_default(); send_click(); }>
            <label class="visually-hidden" for="message-box">"Message"</label>
            <textarea
                id="message-box"
                rows="2"
                placeholder="Message Easel (Enter to send, Shift+Enter for a new line)"
                prop:value=move || text.get()
                on:input=move |e| text.set(event_target_value(&e))
                on:keydown=on_key
            ></textarea>
            <div class="composer-bar">
                <div class="tools-menu">
                    <button
                        type="button"
                        class="icon-button"
                        aria-label="Internal tools"
                        aria-haspopup="true"
                        aria-expanded=move || menu_open.get().to_string()
                        on:click=move |_| menu_open.update(|o| *o = !*o)
                    >
                        "⚙"
                    </button>
                    <Show when=move || menu_open.get()>
                        <div class="popup" role="group" aria-label="Internal tools">
                            <p class="popup-title">"Internal tools"</p>
                            <div class="switch-row">
                                <span id="image-creation-label">"Image creation"</span>
                                <button
                                    type="button"
                                    role="switch"
                                    class="switch"
                                    aria-labelledby="image-creation-label"
                                    aria-checked=move || image_on().to_string()
                                    disabled=move || !available()
                                    on:click=move |_| toggle_images()
                                >
                                    <span class="switch-knob"></span>
                                </button>
                            </div>
                            <Show when=move || !available()>
                                <p class="note">"No image model is installed. Add one to the models folder (see README) to paint."</p>
                            </Show>
                        </div>
                    </Show>
                </div>
                <span class="counter" class:warn=near_limit aria-live="polite">
                    {move || near_limit().then(|| format!("{} / {}", count(), limits::MESSAGE_MAX_CHARS))}
                </span>
                {move || match running.get() {
                    Some(_) => {
                        let stop_click = stop_click.clone();
                        view! { <button type="button" class="button danger" on:click=move |_| stop_click()>"Stop"</button> }.into_any()
                    }
                    None => view! {
                        <button type="submit" class="button primary" disabled=move || text.with(|t| t.trim().is_empty())>"Send"</button>
                    }
                    .into_any(),
                }}
            </div>
        </form>
    }
    .into_any()
}
