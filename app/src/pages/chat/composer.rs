//! The message box: Enter sends, Shift+Enter adds a line, a counter near the limit, Stop while
//! a reply runs, the "Internal tools" menu with the "Image creation" switch, and the "Paint"
//! mode (each message must make a picture; `/image …` does it for one message).

use leptos::prelude::*;
use leptos::task::spawn_local;

use crate::api::{limits, Conversation, InternalTools, UpdateConversation};
use crate::client;
use crate::components::get_model::GetModel;
use crate::components::icons::{Icon, Svg};
use crate::components::switch::{InfoTip, Switch};
use crate::components::toasts::use_toasts;
use crate::state::use_app;

#[component]
pub fn Composer(
    text: RwSignal<String>,
    running: RwSignal<Option<String>>,
    send: impl Fn() + Clone + Send + Sync + 'static,
    stop: impl Fn() + Clone + Send + Sync + 'static,
    conversation: RwSignal<Option<Conversation>>,
    paint: RwSignal<bool>,
) -> impl IntoView {
    let toasts = use_toasts();
    let app = use_app();
    let count = move || text.with(|t| t.chars().count());
    let near_limit = move || count() > limits::MESSAGE_MAX_CHARS * 9 / 10;
    let over_limit = move || count() > limits::MESSAGE_MAX_CHARS;
    let send_key = send.clone();
    let on_key = move |e: leptos::ev::KeyboardEvent| {
        if e.key() == "Enter" && !e.shift_key() && !e.is_composing() {
            e.prevent_default();
            if !over_limit() {
                send_key();
            }
        }
    };
    let menu_open = RwSignal::new(false);
    let menu_button: NodeRef<leptos::html::Button> = NodeRef::new();
    let close_menu = move || {
        menu_open.set(false);
        if let Some(b) = menu_button.get() {
            let _ = b.focus();
        }
    };
    let image_on = Signal::derive(move || {
        conversation
            .get()
            .map(|c| c.internal_tools.image_creation)
            .unwrap_or(false)
    });
    let unavailable = Signal::derive(move || !app.images_available());
    let toggle_images = Callback::new(move |wanted: bool| {
        let Some(c) = conversation.get_untracked() else {
            return;
        };
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
    });
    let send_click = send.clone();
    let stop_click = stop.clone();
    view! {
        <form class="composer" on:submit=move |e| {
            e.prevent_default();
            if !over_limit() {
                send_click();
            }
        }>
            <label class="visually-hidden" for="message-box">"Message"</label>
            <textarea
                id="message-box"
                rows="2"
                placeholder="Message Easel (Enter to send, Shift+Enter for a new line)"
                prop:value=move || text.get()
                on:input=move |e| text.set(event_target_value(&e))
                on:keydown=on_key
                aria-describedby="message-counter"
            ></textarea>
            <div class="composer-bar">
                <div class="tools-menu">
                    <button
                        type="button"
                        class="icon-button tools-button"
                        class:active=move || image_on.get()
                        aria-label="Internal tools"
                        title="Internal tools"
                        aria-haspopup="dialog"
                        aria-expanded=move || menu_open.get().to_string()
                        node_ref=menu_button
                        on:click=move |_| menu_open.update(|o| *o = !*o)
                    >
                        <Svg icon=Icon::Gear/>
                    </button>
                    <Show when=move || image_on.get()>
                        <span class="chip">"Image creation on"</span>
                        <button
                            type="button"
                            class="chip paint-toggle"
                            class:active=move || paint.get()
                            aria-pressed=move || paint.get().to_string()
                            title="Paint mode: every message makes a picture (or start one message with /image)"
                            on:click=move |_| paint.update(|p| *p = !*p)
                        >
                            <Svg icon=Icon::Palette/>
                            " Paint"
                        </button>
                    </Show>
                    <Show when=move || menu_open.get()>
                        <div class="click-away" on:click=move |_| menu_open.set(false)></div>
                        <div
                            class="popup"
                            role="dialog"
                            aria-label="Internal tools"
                            on:keydown=move |e| {
                                if e.key() == "Escape" {
                                    close_menu();
                                }
                            }
                        >
                            <p class="popup-title">"Internal tools"</p>
                            <Switch id="image-creation" label="Image creation" checked=image_on disabled=unavailable on_toggle=toggle_images>
                                <InfoTip text="Enable AI-powered image generation capabilities"/>
                            </Switch>
                            <Show when=move || unavailable.get()>
                                <GetModel/>
                            </Show>
                        </div>
                    </Show>
                </div>
                <span class="counter" class:warn=near_limit id="message-counter" aria-live="polite">
                    {move || near_limit().then(|| format!("{} / {}", count(), limits::MESSAGE_MAX_CHARS))}
                </span>
                {move || match running.get() {
                    Some(_) => {
                        let stop_click = stop_click.clone();
                        view! {
                            <button type="button" class="button danger" on:click=move |_| stop_click()>
                                "Stop"
                            </button>
                        }
                        .into_any()
                    }
                    None => view! {
                        <button type="submit" class="button primary" disabled=move || text.with(|t| t.trim().is_empty()) || over_limit()>
                            <Svg icon=Icon::Send/>
                            " Send"
                        </button>
                    }
                    .into_any(),
                }}
            </div>
        </form>
    }
    .into_any()
}
