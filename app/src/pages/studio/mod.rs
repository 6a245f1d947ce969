//! Image Studio: the engine without a chat. A form (prompt, style cards, aspect ratio, count,
//! advanced sampling settings), live progress with previews, results with arrows and a strip of
//! thumbnails, editing (upload or pick an image, paint the area to change), "View code" for
//! the OpenAI-compatible API, and a gallery of everything made here.
//!
//! One [`StudioState`] holds every signal of the page; it is made once here and handed to each
//! part: `form.rs` (prompt, model, style, size, count), `advanced.rs` (sampling settings),
//! `generate.rs` (Generate / Randomize / Stop and the status line), `job.rs` (running a job and
//! following its events), `edit.rs` (the source and its mask), `results.rs` (the current job's
//! images), `code.rs` (View code) and `gallery.rs`.

mod advanced;
mod code;
mod credits;
mod edit;
mod form;
mod gallery;
mod generate;
mod job;
mod results;

use leptos::prelude::*;
use leptos::task::spawn_local;
use leptos_router::hooks::use_navigate;

use crate::api::{Image, ImageModelInfo, SentToChat};
use crate::browser;
use crate::client::{self, RunEvents};
use crate::components::confirm::use_confirm;
use crate::components::icons::{Icon, Svg};
use crate::components::layout::Layout;
use crate::components::toasts::{use_toasts, ToastList};
use crate::components::viewer::user_prompt;
use crate::images::ImageSlot;
use crate::state::use_app;
use code::CodePanel;
use edit::{EditPanel, Source};
use form::StudioForm;
use gallery::Gallery;
use results::Results;

/// Everything the Studio page shows and sends, made once per visit and shared by its parts.
#[derive(Clone, Copy)]
pub(super) struct StudioState {
    // The form.
    prompt: RwSignal<String>,
    negative: RwSignal<String>,
    /// The chosen model id ("" until one is picked: the default model).
    model: RwSignal<String>,
    style: RwSignal<String>,
    aspect: RwSignal<String>,
    /// One of the model's allowed sizes, or "" for the size the aspect ratio gives.
    exact_size: RwSignal<String>,
    count: RwSignal<u32>,
    sampler: RwSignal<String>,
    schedule: RwSignal<String>,
    steps: RwSignal<String>,
    guidance: RwSignal<String>,
    seed: RwSignal<String>,
    preview: RwSignal<String>,
    /// "" (the server's setting), `chunk` or `truncate`.
    long_prompts: RwSignal<String>,
    /// Whether `(word:1.3)` is a weight.
    weighting: RwSignal<bool>,
    /// How the engine reads the current prompt (token counts), for the warning under it.
    prompt_check: RwSignal<Option<crate::api::PromptCheck>>,
    enhance: RwSignal<bool>,
    /// The LLM's rewrite of the prompt, shown until it is used or discarded.
    enhanced: RwSignal<Option<String>>,
    strength: RwSignal<f32>,
    source: RwSignal<Option<Source>>,
    show_code: RwSignal<bool>,
    // The models the form offers.
    image_models: Memo<Vec<ImageModelInfo>>,
    current_model: Memo<Option<ImageModelInfo>>,
    size: Memo<String>,
    // The current job and its results.
    job: RwSignal<Option<String>>,
    slots: RwSignal<Vec<ImageSlot>>,
    selected: RwSignal<usize>,
    status: RwSignal<Option<String>>,
    subscription: StoredValue<Option<RunEvents>, LocalStorage>,
    /// Bumped when the gallery should be fetched again.
    gallery_version: RwSignal<u32>,
    credits: credits::Credits,
    toasts: ToastList,
}

impl StudioState {
    fn new() -> StudioState {
        let app = use_app();
        let model = RwSignal::new(String::new());
        let aspect = RwSignal::new("1:1".to_string());
        let exact_size = RwSignal::new(String::new());
        let image_models = Memo::new(move |_| {
            app.models
                .get()
                .and_then(|r| r.ok())
                .map(|m| {
                    m.image
                        .into_iter()
                        .filter(|i| i.error.is_none())
                        .collect::<Vec<_>>()
                })
                .unwrap_or_default()
        });
        let default_model = Memo::new(move |_| {
            app.models
                .get()
                .and_then(|r| r.ok())
                .and_then(|m| m.default_image_model)
        });
        let current_model = Memo::new(move |_| {
            let list = image_models.get();
            let wanted = model.get();
            let wanted = if wanted.is_empty() {
                default_model.get().unwrap_or_default()
            } else {
                wanted
            };
            list.iter()
                .find(|m| m.id == wanted)
                .cloned()
                .or_else(|| list.first().cloned())
        });
        let size = Memo::new(move |_| {
            let exact = exact_size.get();
            if !exact.is_empty() {
                return exact;
            }
            current_model
                .get()
                .map(|m| form::size_for(&m, &aspect.get()))
                .unwrap_or_else(|| "auto".into())
        });
        StudioState {
            prompt: RwSignal::new(String::new()),
            negative: RwSignal::new(String::new()),
            model,
            style: RwSignal::new("auto".to_string()),
            aspect,
            exact_size,
            count: RwSignal::new(1),
            sampler: RwSignal::new(String::new()),
            schedule: RwSignal::new(String::new()),
            steps: RwSignal::new(String::new()),
            guidance: RwSignal::new(String::new()),
            seed: RwSignal::new(String::new()),
            preview: RwSignal::new("normal".to_string()),
            long_prompts: RwSignal::new(String::new()),
            weighting: RwSignal::new(true),
            prompt_check: RwSignal::new(None),
            enhance: RwSignal::new(false),
            enhanced: RwSignal::new(None),
            strength: RwSignal::new(0.6),
            source: RwSignal::new(None),
            show_code: RwSignal::new(false),
            image_models,
            current_model,
            size,
            job: RwSignal::new(None),
            slots: RwSignal::new(Vec::new()),
            selected: RwSignal::new(0),
            status: RwSignal::new(None),
            subscription: StoredValue::new_local(None),
            gallery_version: RwSignal::new(0),
            credits: credits::Credits::new(),
            toasts: use_toasts(),
        }
    }
}

/// What can be done with a finished image, from the results and from the gallery.
#[derive(Clone, Copy)]
struct ImageActions {
    /// Makes it the source of an edit.
    edit: Callback<Image>,
    /// Starts a conversation with it (by image id).
    send_to_chat: Callback<String>,
    /// Deletes it after asking (by image id).
    delete: Callback<String>,
}

impl ImageActions {
    fn new(state: StudioState) -> ImageActions {
        let app = use_app();
        let confirm = use_confirm();
        let navigate = use_navigate();
        let toasts = state.toasts;
        let edit = Callback::new(move |image: Image| {
            state.source.set(Some(Source {
                url: image
                    .url
                    .clone()
                    .unwrap_or_else(|| crate::api::image_url(&image.id, "png")),
                image_id: Some(image.id.clone()),
                b64: None,
                name: user_prompt(&image),
            }));
            browser::clear("mask-canvas");
            client::focus("studio-prompt");
        });
        let send_to_chat = Callback::new(move |id: String| {
            let navigate = navigate.clone();
            spawn_local(async move {
                match client::send::<_, SentToChat>(
                    "POST",
                    &format!("/api/studio/images/{id}/chat"),
                    &serde_json::json!({}),
                )
                .await
                {
                    Ok(sent) => {
                        app.refresh_conversations();
                        navigate(&format!("/c/{}", sent.conversation_id), Default::default());
                    }
                    Err(e) => toasts.error(e.message),
                }
            });
        });
        let delete = Callback::new(move |id: String| {
            confirm.ask(
                "Delete image?",
                "It will be removed from the gallery.",
                "Delete",
                move || {
                    let id = id.clone();
                    spawn_local(async move {
                        match client::call("DELETE", &format!("/api/images/{id}")).await {
                            Ok(()) => {
                                state.slots.update(|s| {
                                    s.retain(|slot| {
                                        slot.image.as_ref().map(|i| i.id.as_str())
                                            != Some(id.as_str())
                                    })
                                });
                                state.gallery_version.update(|v| *v += 1);
                                toasts.info("Image deleted");
                            }
                            Err(e) => toasts.error(e.message),
                        }
                    });
                },
            );
        });
        ImageActions {
            edit,
            send_to_chat,
            delete,
        }
    }
}

/// A small deterministic-enough random number from the clock (the UI needs no real entropy).
fn random(max: u32) -> u32 {
    let now = js_now();
    ((now * 1_000.0) as u64 % u64::from(max.max(1))) as u32
}

fn js_now() -> f64 {
    #[cfg(feature = "hydrate")]
    {
        js_sys::Math::random() * 1e6
    }
    #[cfg(not(feature = "hydrate"))]
    {
        0.0
    }
}

#[component]
pub fn StudioPage() -> impl IntoView {
    view! {
        <Layout>
            <Studio/>
        </Layout>
    }
}

#[component]
fn Studio() -> impl IntoView {
    let state = StudioState::new();
    state.credits.follow(state);
    let actions = ImageActions::new(state);
    on_cleanup(move || state.subscription.set_value(None));
    let show_code = state.show_code;
    view! {
        <header class="page-header">
            <div>
                <h1>"Image Studio"</h1>
                <p class="small muted">"Direct control of the image engine. Everything made here is kept in the gallery below."</p>
            </div>
            <div class="header-actions">
                <button class="button" on:click=move |_| show_code.update(|v| *v = !*v) aria-expanded=move || show_code.get().to_string()>
                    <Svg icon=Icon::Code/>" View code"
                </button>
            </div>
        </header>
        <div class="studio">
            <StudioForm state=state/>
            <section class="studio-output" aria-label="Results">
                <EditPanel state=state/>
                <Results state=state actions=actions/>
                <CodePanel state=state/>
            </section>
        </div>
        <Gallery state=state actions=actions/>
    }
    .into_any()
}
