//! Image Studio: the engine without a chat. A form (prompt, style cards, aspect ratio, count,
//! advanced sampling settings), live progress with previews, results with arrows and a strip of
//! thumbnails, editing (upload or pick an image, paint the area to change), "View code" for
//! the OpenAI-compatible API, and a gallery of everything made here.

use leptos::prelude::*;
use leptos::task::spawn_local;
use leptos_router::hooks::use_navigate;

use crate::api::events as ev;
use crate::api::{
    limits, CreditQuote, EnhanceRequest, EnhanceResponse, Image, ImageModelInfo, SentToChat,
    StudioJob, StudioRequest,
};
use crate::browser;
use crate::client::{self, RunEvents};
use crate::components::confirm::use_confirm;
use crate::components::icons::{Icon, Svg};
use crate::components::layout::Layout;
use crate::components::switch::{InfoTip, Switch};
use crate::components::toasts::use_toasts;
use crate::components::viewer::{use_viewer, user_prompt};
use crate::session::use_session;
use crate::state::use_app;

/// The style cards shown first (the API accepts every preset and free text).
const STYLE_CARDS: [(&str, &str); 8] = [
    ("auto", "Auto"),
    ("3d-anime", "3D Anime"),
    ("3d-model", "3D Model"),
    ("anime", "Japanese Anime"),
    ("movie", "Movie"),
    ("comic", "Comic"),
    ("cyberpunk", "Cyberpunk"),
    ("fantasy", "Fantasy"),
];

const RANDOM_PROMPTS: [&str; 16] = [
    "a lighthouse on a rocky cliff at dusk, waves crashing, warm light in the window",
    "a cozy reading nook with a cat asleep on a stack of books, rain on the window",
    "a red fox in a snowy birch forest, morning mist",
    "an astronaut tending a vegetable garden on the moon",
    "a bustling night market in a floating city, lanterns and steam",
    "a watercolor map of an imaginary archipelago",
    "a vintage bicycle leaning against a sunflower field",
    "a dragon made of autumn leaves flying over a village",
    "a glass greenhouse on a mountain peak under the milky way",
    "a steampunk owl with brass gears and glowing eyes",
    "a quiet Japanese street after rain, reflections of neon signs",
    "a bowl of ramen with a tiny island and a volcano in it",
    "an underwater library with fish swimming between the shelves",
    "a knight and a robot sharing tea at sunset",
    "a hot air balloon shaped like a whale above the clouds",
    "a mossy stone bridge in an enchanted forest, fireflies",
];

/// A result slot of the current job: placeholder until its image arrives.
#[derive(Debug, Clone, PartialEq)]
struct ResultSlot {
    index: u32,
    /// Size of the image being made, so the placeholder has its shape.
    width: u32,
    height: u32,
    step: u32,
    steps: u32,
    preview: Option<String>,
    image: Option<Image>,
}

/// The picture being edited: an earlier image (by id) or an upload.
#[derive(Debug, Clone, PartialEq)]
struct Source {
    url: String,
    image_id: Option<String>,
    b64: Option<String>,
    name: String,
}

fn round8(v: f64) -> u32 {
    ((v / 8.0).round() as u32 * 8).max(64)
}

/// The size for an aspect ratio: the model's allowed size closest to it (so the request is
/// one the images API accepts too), else one computed around the default area.
fn size_for(model: &ImageModelInfo, aspect: &str) -> String {
    let wanted: f64 = match aspect {
        "16:9" => 16.0 / 9.0,
        "9:16" => 9.0 / 16.0,
        _ => 1.0,
    };
    let parse = |s: &str| {
        s.split_once('x')
            .and_then(|(w, h)| Some((w.parse::<f64>().ok()?, h.parse::<f64>().ok()?)))
    };
    let default_area = parse(&model.default_size)
        .map(|(w, h)| w * h)
        .unwrap_or(512.0 * 512.0);
    let same_orientation = |r: f64| {
        (r - 1.0).abs() < 1e-6 && (wanted - 1.0).abs() < 1e-6
            || (r > 1.0) == (wanted > 1.0) && (r - 1.0).abs() > 1e-6 && (wanted - 1.0).abs() > 1e-6
    };
    let best = model
        .allowed_sizes
        .iter()
        .filter_map(|s| parse(s).map(|(w, h)| (s, w / h, w * h)))
        .filter(|(_, r, _)| same_orientation(*r))
        .min_by(|a, b| {
            let score = |(_, r, area): &(&String, f64, f64)| {
                (r / wanted).ln().abs() * 4.0 + (area / default_area).ln().abs()
            };
            score(a).total_cmp(&score(b))
        });
    if let Some((s, _, _)) = best {
        return s.clone();
    }
    computed_size(model, aspect)
}

/// Around the default area at the exact ratio, multiples of 8.
fn computed_size(model: &ImageModelInfo, aspect: &str) -> String {
    let (w, h) = model
        .default_size
        .split_once('x')
        .and_then(|(w, h)| Some((w.parse::<f64>().ok()?, h.parse::<f64>().ok()?)))
        .unwrap_or((512.0, 512.0));
    let side = (w * h).sqrt();
    let (rw, rh) = match aspect {
        "16:9" => (16.0f64, 9.0f64),
        "9:16" => (9.0, 16.0),
        _ => (1.0, 1.0),
    };
    let scale = (rw * rh).sqrt();
    let (w, h) = (round8(side * rw / scale), round8(side * rh / scale));
    let max = model.max_size;
    format!("{}x{}", w.min(max), h.min(max))
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
    let app = use_app();
    let toasts = use_toasts();
    let confirm = use_confirm();
    let viewer = use_viewer();
    let navigate = use_navigate();

    // The form.
    let prompt = RwSignal::new(String::new());
    let negative = RwSignal::new(String::new());
    let model = RwSignal::new(String::new());
    let style = RwSignal::new("auto".to_string());
    let aspect = RwSignal::new("1:1".to_string());
    let exact_size = RwSignal::new(String::new());
    let count = RwSignal::new(1u32);
    let sampler = RwSignal::new(String::new());
    let schedule = RwSignal::new(String::new());
    let steps = RwSignal::new(String::new());
    let guidance = RwSignal::new(String::new());
    let seed = RwSignal::new(String::new());
    let preview = RwSignal::new("normal".to_string());
    let enhance = RwSignal::new(false);
    let strength = RwSignal::new(0.6f32);
    let source: RwSignal<Option<Source>> = RwSignal::new(None);
    let brush = RwSignal::new(32.0f64);
    let erasing = RwSignal::new(false);
    let enhanced: RwSignal<Option<String>> = RwSignal::new(None);
    let show_code = RwSignal::new(false);
    let code_tab = RwSignal::new("curl".to_string());

    // The current job and results.
    let job: RwSignal<Option<String>> = RwSignal::new(None);
    let slots: RwSignal<Vec<ResultSlot>> = RwSignal::new(Vec::new());
    let selected = RwSignal::new(0usize);
    let status: RwSignal<Option<String>> = RwSignal::new(None);
    // The prompt of the running job (the box may change meanwhile).
    let job_prompt = StoredValue::new(String::new());
    let subscription: StoredValue<Option<RunEvents>, LocalStorage> = StoredValue::new_local(None);
    let gallery_version = RwSignal::new(0u32);
    let gallery = LocalResource::new(move || {
        gallery_version.track();
        async move { client::get::<Vec<Image>>("/api/studio/images").await }
    });
    on_cleanup(move || subscription.set_value(None));

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
            .map(|m| size_for(&m, &aspect.get()))
            .unwrap_or_else(|| "auto".into())
    });

    let request = move || -> StudioRequest {
        let src = source.get_untracked();
        StudioRequest {
            model: current_model.get_untracked().map(|m| m.id),
            prompt: prompt.get_untracked(),
            negative_prompt: negative.get_untracked(),
            n: count.get_untracked(),
            size: if src.is_some() && exact_size.get_untracked().is_empty() {
                "auto".into()
            } else {
                size.get_untracked()
            },
            quality: None,
            steps: steps.get_untracked().trim().parse().ok(),
            guidance: guidance.get_untracked().trim().parse().ok(),
            sampler: Some(sampler.get_untracked()).filter(|s| !s.is_empty()),
            schedule: Some(schedule.get_untracked()).filter(|s| !s.is_empty()),
            seed: seed.get_untracked().trim().parse().ok(),
            style: Some(style.get_untracked()).filter(|s| s != "auto"),
            preview: preview.get_untracked(),
            source_image_id: src.as_ref().and_then(|s| s.image_id.clone()),
            source_image_b64: src.as_ref().and_then(|s| s.b64.clone()),
            mask_b64: src.as_ref().and_then(|_| browser::mask_png("mask-canvas")),
            strength: src.as_ref().map(|_| strength.get_untracked()),
        }
    };

    // What Generate costs in credits (and the balance), asked again whenever something the
    // cost depends on changes; the latest question's answer wins.
    let session = use_session();
    let quote: RwSignal<Option<CreditQuote>> = RwSignal::new(None);
    let quote_asked = StoredValue::new(0u64);
    let requote = move || {
        let mut body = request();
        // The cost does not depend on the words or the pixels; only on the edit being one.
        if body.prompt.trim().is_empty() {
            body.prompt = "quote".into();
        }
        body.mask_b64 = None;
        if body.source_image_b64.is_some() {
            body.source_image_b64 = Some(String::new());
        }
        let asked = quote_asked.get_value() + 1;
        quote_asked.set_value(asked);
        spawn_local(async move {
            let answer = client::send::<_, CreditQuote>("POST", "/api/studio/quote", &body)
                .await
                .ok();
            if quote_asked.get_value() == asked {
                quote.set(answer);
            }
        });
    };
    Effect::new(move |_| {
        current_model.track();
        size.track();
        count.track();
        steps.track();
        source.track();
        strength.track();
        requote();
    });
    // A job reserves credits when it starts and settles when it ends: the balance shown here
    // and in the user menu follows.
    Effect::new(move |was: Option<bool>| {
        let running = job.get().is_some();
        if was.is_some_and(|was| was != running) {
            session.refresh_me();
            requote();
        }
        running
    });
    let short_of_credits = move || {
        quote.with(|q| {
            q.as_ref()
                .filter(|q| q.enabled && !q.enough)
                .map(|q| format!("needs {} credits, {} left", q.cost, q.balance))
        })
    };

    // Starts a job with the form as it is.
    let run = move |body: StudioRequest| {
        if body.prompt.trim().is_empty() {
            toasts.error("Write a prompt first.");
            return;
        }
        subscription.set_value(None);
        slots.set(Vec::new());
        selected.set(0);
        job_prompt.set_value(body.prompt.clone());
        status.set(Some("Starting…".into()));
        spawn_local(async move {
            match client::send::<_, StudioJob>("POST", "/api/studio/generations", &body).await {
                Ok(started) => {
                    job.set(Some(started.job_id.clone()));
                    let handle = RunEvents::open_url(
                        &format!("/api/studio/jobs/{}/events", started.job_id),
                        move |name, data| {
                            let value: serde_json::Value =
                                serde_json::from_str(data).unwrap_or_default();
                            match name {
                                ev::IMAGE_QUEUED => {
                                    if let Ok(q) = serde_json::from_value::<ev::ImageQueued>(value)
                                    {
                                        status.set(Some(if q.queue_position > 0 {
                                            format!("Waiting ({} ahead)…", q.queue_position)
                                        } else {
                                            "Painting…".into()
                                        }));
                                        slots.set(
                                            (0..q.count)
                                                .map(|index| ResultSlot {
                                                    index,
                                                    width: q.width,
                                                    height: q.height,
                                                    step: 0,
                                                    steps: 0,
                                                    preview: None,
                                                    image: None,
                                                })
                                                .collect(),
                                        );
                                    }
                                }
                                ev::IMAGE_POSITION => {
                                    if let Ok(p) =
                                        serde_json::from_value::<ev::ImagePosition>(value)
                                    {
                                        status.set(Some(if p.queue_position > 0 {
                                            format!("Waiting ({} ahead)…", p.queue_position)
                                        } else {
                                            "Painting…".into()
                                        }));
                                    }
                                }
                                ev::IMAGE_PROGRESS => {
                                    if let Ok(p) =
                                        serde_json::from_value::<ev::ImageProgress>(value)
                                    {
                                        status.set(Some(format!("Step {} of {}", p.step, p.steps)));
                                        slots.update(|s| {
                                            if let Some(slot) =
                                                s.iter_mut().find(|s| s.index == p.index)
                                            {
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
                                        slots.update(|s| {
                                            if let Some(slot) =
                                                s.iter_mut().find(|s| s.index == d.index)
                                            {
                                                slot.image = Some(Image {
                                                    id: d.image_id.clone(),
                                                    mime: "image/png".into(),
                                                    width: d.width,
                                                    height: d.height,
                                                    b64: None,
                                                    url: Some(d.url.clone()),
                                                    thumbnail_url: d.thumbnail_url.clone(),
                                                    // Until the gallery answers with the full record.
                                                    metadata: crate::api::ImageMetadata {
                                                        seed: d.seed,
                                                        width: d.width,
                                                        height: d.height,
                                                        tool_arguments: serde_json::json!({ "prompt": job_prompt.get_value() }),
                                                        ..Default::default()
                                                    },
                                                });
                                            }
                                        });
                                    }
                                }
                                ev::RUN_FINISHED => {
                                    status.set(None);
                                    job.set(None);
                                    gallery_version.update(|v| *v += 1);
                                    complete_results(slots);
                                }
                                ev::RUN_CANCELLED => {
                                    status.set(Some("Stopped.".into()));
                                    job.set(None);
                                    slots.update(|s| s.retain(|slot| slot.image.is_some()));
                                    gallery_version.update(|v| *v += 1);
                                    complete_results(slots);
                                }
                                ev::RUN_ERROR => {
                                    if let Ok(e) = serde_json::from_value::<ev::RunError>(value) {
                                        toasts.error(e.message.clone());
                                        status.set(Some(e.message));
                                    }
                                    job.set(None);
                                    slots.update(|s| s.retain(|slot| slot.image.is_some()));
                                }
                                _ => {}
                            }
                        },
                    );
                    subscription.set_value(handle);
                }
                Err(e) => {
                    status.set(None);
                    toasts.error(e.message);
                }
            }
        });
    };

    // Generate: with prompt enhancement on, the rewritten prompt is shown first.
    let generate = move || {
        if job.get_untracked().is_some() || short_of_credits().is_some() {
            return;
        }
        let body = request();
        if enhance.get_untracked() && enhanced.get_untracked().is_none() {
            if body.prompt.trim().is_empty() {
                toasts.error("Write a prompt first.");
                return;
            }
            status.set(Some("Enhancing the prompt…".into()));
            spawn_local(async move {
                match client::send::<_, EnhanceResponse>(
                    "POST",
                    "/api/studio/enhance",
                    &EnhanceRequest {
                        prompt: body.prompt.clone(),
                    },
                )
                .await
                {
                    Ok(r) => {
                        status.set(None);
                        enhanced.set(Some(r.prompt));
                    }
                    Err(e) => {
                        status.set(None);
                        toasts.error(e.message);
                    }
                }
            });
            return;
        }
        run(body);
    };
    let use_enhanced = move || {
        if let Some(text) = enhanced.get_untracked() {
            prompt.set(text.clone());
            enhanced.set(None);
            let mut body = request();
            body.prompt = text;
            run(body);
        }
    };
    let stop = move || {
        if let Some(id) = job.get_untracked() {
            spawn_local(async move {
                let _ = client::call("POST", &format!("/api/studio/jobs/{id}/cancel")).await;
            });
        }
    };
    let randomize = move || {
        if prompt.get_untracked().trim().is_empty() {
            prompt.set(RANDOM_PROMPTS[random(RANDOM_PROMPTS.len() as u32) as usize].to_string());
        }
        style.set(
            STYLE_CARDS[random(STYLE_CARDS.len() as u32) as usize]
                .0
                .to_string(),
        );
        aspect.set(["1:1", "16:9", "9:16"][random(3) as usize].to_string());
        exact_size.set(String::new());
        count.set(1 + random(4));
        // Only samplers that suit the model: LCM models need `lcm`, others must not use it.
        let info = current_model.get_untracked();
        let lcm_model = info.as_ref().is_some_and(|m| m.family == "lcm");
        let samplers: Vec<String> = info
            .map(|m| m.samplers)
            .unwrap_or_default()
            .into_iter()
            .filter(|s| (s == "lcm") == lcm_model)
            .collect();
        if !samplers.is_empty() {
            sampler.set(samplers[random(samplers.len() as u32) as usize].clone());
        }
        schedule.set(["discrete", "karras"][random(2) as usize].to_string());
        seed.set(random(4_294_967_295).to_string());
        run(request());
    };

    let results = Memo::new(move |_| {
        slots.with(|s| {
            s.iter()
                .filter_map(|s| s.image.clone())
                .collect::<Vec<Image>>()
        })
    });
    let open_result = move |index: usize| {
        let list = results.get_untracked();
        if !list.is_empty() {
            viewer.open(
                list,
                index.min(results.with_untracked(Vec::len) - 1),
                "result-main".into(),
            );
        }
    };
    let edit_image = Callback::new(move |image: Image| {
        source.set(Some(Source {
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
    let delete_image = Callback::new(move |id: String| {
        confirm.ask(
            "Delete image?",
            "It will be removed from the gallery.",
            "Delete",
            move || {
                let id = id.clone();
                spawn_local(async move {
                    match client::call("DELETE", &format!("/api/images/{id}")).await {
                        Ok(()) => {
                            slots.update(|s| {
                                s.retain(|slot| {
                                    slot.image.as_ref().map(|i| i.id.as_str()) != Some(id.as_str())
                                })
                            });
                            gallery_version.update(|v| *v += 1);
                            toasts.info("Image deleted");
                        }
                        Err(e) => toasts.error(e.message),
                    }
                });
            },
        );
    });
    let upload = move || {
        spawn_local(async move {
            if let Some((url, b64, name)) = browser::read_file("studio-upload").await {
                source.set(Some(Source {
                    url,
                    image_id: None,
                    b64: Some(b64),
                    name,
                }));
                browser::clear("mask-canvas");
            }
        });
    };

    // Mask painting: pointer strokes on the canvas over the source image.
    let last_point: StoredValue<Option<(f64, f64)>> = StoredValue::new(None);
    let painting = RwSignal::new(false);
    let paint_at = move |x: f64, y: f64| {
        if let Some(p) = browser::canvas_point("mask-canvas", x, y) {
            browser::stroke(
                "mask-canvas",
                last_point.get_value(),
                p,
                brush.get_untracked(),
                erasing.get_untracked(),
            );
            last_point.set_value(Some(p));
        }
    };
    let save_mask = move || match browser::mask_png("mask-canvas") {
        Some(url) => browser::download(&url, "mask.png"),
        None => {
            toasts.info("Paint the area to change first; without a mask the whole image changes.")
        }
    };

    // Tracks every field, so an open code view follows the form as it changes.
    let snippet = move || {
        prompt.track();
        negative.track();
        model.track();
        style.track();
        size.track();
        count.track();
        sampler.track();
        schedule.track();
        steps.track();
        guidance.track();
        seed.track();
        source.track();
        strength.track();
        code_snippets(&request(), &code_tab.get())
    };

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
            <form class="studio-form" on:submit=move |e| {
                e.prevent_default();
                generate();
            }>
                <div class="field">
                    <div class="field-head">
                        <label for="studio-prompt">"Prompt"</label>
                        <span class="counter" class:warn=move || { prompt.with(|p| p.chars().count()) > limits::PROMPT_MAX_CHARS }>
                            {move || format!("{}/{}", prompt.with(|p| p.chars().count()), limits::PROMPT_MAX_CHARS)}
                        </span>
                    </div>
                    <textarea
                        id="studio-prompt"
                        rows="4"
                        maxlength=limits::PROMPT_MAX_CHARS.to_string()
                        placeholder="Describe the image"
                        prop:value=move || prompt.get()
                        on:input=move |e| {
                            prompt.set(event_target_value(&e));
                            enhanced.set(None);
                        }
                    ></textarea>
                    <div class="row">
                        <button type="button" class="button" on:click=move |_| {
                            prompt.set(RANDOM_PROMPTS[random(RANDOM_PROMPTS.len() as u32) as usize].to_string());
                        }>
                            <Svg icon=Icon::Dice/>" Random prompt"
                        </button>
                        <button type="button" class="button" on:click=move |_| {
                            prompt.set(String::new());
                            negative.set(String::new());
                            enhanced.set(None);
                        }>"Clear"</button>
                    </div>
                </div>
                <label class="field">
                    <span>"Negative prompt"</span>
                    <input placeholder="What the image must not show" prop:value=move || negative.get() on:input=move |e| negative.set(event_target_value(&e))/>
                </label>
                <label class="field">
                    <span>"Model"</span>
                    <select on:change=move |e| model.set(event_target_value(&e))>
                        {move || {
                            let selected = current_model.get().map(|m| m.id).unwrap_or_default();
                            image_models
                                .get()
                                .into_iter()
                                .map(|m| view! { <option value=m.id.clone() selected=m.id == selected>{m.name.clone()}</option> })
                                .collect_view()
                        }}
                    </select>
                </label>
                <Show when=move || image_models.with(Vec::is_empty)>
                    <p class="note warn">"No image model is installed. Put one in the models folder (see the README)."</p>
                </Show>
                <fieldset class="field">
                    <legend>"Style"</legend>
                    <div class="style-cards" role="radiogroup" aria-label="Style">
                        {STYLE_CARDS
                            .iter()
                            .map(|(id, name)| {
                                let id = *id;
                                view! {
                                    <button
                                        type="button"
                                        role="radio"
                                        class=format!("style-card style-{id}")
                                        aria-checked=move || (style.get() == id).to_string()
                                        on:click=move |_| style.set(id.to_string())
                                    >
                                        {*name}
                                    </button>
                                }
                            })
                            .collect_view()}
                    </div>
                </fieldset>
                <fieldset class="field">
                    <legend>"Aspect ratio"</legend>
                    <div class="segmented" role="radiogroup" aria-label="Aspect ratio">
                        {["16:9", "1:1", "9:16"]
                            .into_iter()
                            .map(|a| {
                                view! {
                                    <button
                                        type="button"
                                        role="radio"
                                        aria-checked=move || (aspect.get() == a && exact_size.get().is_empty()).to_string()
                                        on:click=move |_| {
                                            aspect.set(a.to_string());
                                            exact_size.set(String::new());
                                        }
                                    >
                                        {a}
                                    </button>
                                }
                            })
                            .collect_view()}
                    </div>
                    <label class="inline">
                        <span>"Exact size"</span>
                        <select prop:value=move || exact_size.get() on:change=move |e| exact_size.set(event_target_value(&e))>
                            <option value="">{move || format!("From the ratio ({})", size.get())}</option>
                            {move || {
                                current_model
                                    .get()
                                    .map(|m| m.allowed_sizes.into_iter().map(|s| view! { <option value=s.clone()>{s.clone()}</option> }).collect_view())
                            }}
                        </select>
                    </label>
                </fieldset>
                <label class="field">
                    <span>{move || format!("Images: {}", count.get())}</span>
                    <input type="range" min="1" max="10" prop:value=move || count.get().to_string() on:input=move |e| count.set(event_target_value(&e).parse().unwrap_or(1))/>
                </label>
                <details class="advanced">
                    <summary>"Advanced"</summary>
                    <label class="field">
                        <span class="label-with-tip">"Sampler" <InfoTip text="How the image is refined from noise at each step (Euler, DPM++ 2M, …)"/></span>
                        <select prop:value=move || sampler.get() on:change=move |e| sampler.set(event_target_value(&e))>
                            <option value="">{move || format!("Model default ({})", current_model.get().map(|m| m.default_sampler).unwrap_or_default())}</option>
                            {move || current_model.get().map(|m| m.samplers.into_iter().map(|s| view! { <option value=s.clone()>{s.clone()}</option> }).collect_view())}
                        </select>
                    </label>
                    <label class="field">
                        <span class="label-with-tip">"Schedule" <InfoTip text="How the noise levels are spaced: the model's own (discrete) or Karras (more steps at low noise)"/></span>
                        <select prop:value=move || schedule.get() on:change=move |e| schedule.set(event_target_value(&e))>
                            <option value="">"Model default"</option>
                            <option value="discrete">"discrete"</option>
                            <option value="karras">"karras"</option>
                        </select>
                    </label>
                    <label class="field">
                        <span class="label-with-tip">"Steps" <InfoTip text="How many refinement steps: more steps add detail and take longer"/></span>
                        <input type="number" min="1" max="150" placeholder=move || current_model.get().map(|m| format!("{} (auto)", m.steps.auto)).unwrap_or_default() prop:value=move || steps.get() on:input=move |e| steps.set(event_target_value(&e))/>
                    </label>
                    <label class="field">
                        <span class="label-with-tip">"Guidance" <InfoTip text="How closely the image follows the prompt; 0 turns guidance off (Turbo models)"/></span>
                        <input type="number" min="0" max="30" step="0.5" placeholder=move || current_model.get().map(|m| m.default_guidance.to_string()).unwrap_or_default() prop:value=move || guidance.get() on:input=move |e| guidance.set(event_target_value(&e))/>
                    </label>
                    <div class="field">
                        <label class="label-with-tip" for="studio-seed">"Seed" <InfoTip text="The same seed with the same settings makes the same image; empty picks a new one"/></label>
                        <div class="row">
                            <input id="studio-seed" type="number" min="0" placeholder="random" prop:value=move || seed.get() on:input=move |e| seed.set(event_target_value(&e))/>
                            <button type="button" class="icon-button" aria-label="Random seed" title="Random seed" on:click=move |_| seed.set(random(4_294_967_295).to_string())>
                                <Svg icon=Icon::Dice/>
                            </button>
                        </div>
                    </div>
                    <label class="field">
                        <span class="label-with-tip">"Preview" <InfoTip text="Live previews while painting: every step (faster), every other step (normal), or none"/></span>
                        <select prop:value=move || preview.get() on:change=move |e| preview.set(event_target_value(&e))>
                            <option value="faster">"faster"</option>
                            <option value="normal">"normal"</option>
                            <option value="none">"none"</option>
                        </select>
                    </label>
                </details>
                <Switch id="prompt-enhancement" label="Prompt enhancement" checked=enhance on_toggle=Callback::new(move |on| {
                    enhance.set(on);
                    enhanced.set(None);
                })>
                    <InfoTip text="Your LLM rewrites the prompt with more detail; you see it before it is used"/>
                </Switch>
                {move || {
                    enhanced
                        .get()
                        .map(|text| {
                            view! {
                                <div class="enhanced" role="region" aria-label="Enhanced prompt">
                                    <p class="small muted">"Enhanced prompt"</p>
                                    <p>{text}</p>
                                    <div class="row">
                                        <button type="button" class="button primary" on:click=move |_| use_enhanced()>"Use it"</button>
                                        <button type="button" class="button" on:click=move |_| enhanced.set(None)>"Discard"</button>
                                    </div>
                                </div>
                            }
                        })
                }}
                <div class="studio-actions">
                    {move || match job.get() {
                        Some(_) => view! { <button type="button" class="button danger" on:click=move |_| stop()>"Stop"</button> }.into_any(),
                        None => view! {
                            <button
                                type="submit"
                                class="button primary"
                                disabled=move || image_models.with(Vec::is_empty) || short_of_credits().is_some()
                                aria-describedby="studio-credits"
                            >
                                {move || if source.with(Option::is_some) { "Edit image" } else { "Generate" }}
                                {move || quote.get().filter(|q| q.enabled).map(|q| format!(" · {} {}", q.cost, if q.cost == 1 { "credit" } else { "credits" }))}
                            </button>
                            <button type="button" class="button" on:click=move |_| randomize() disabled=move || image_models.with(Vec::is_empty)>
                                <Svg icon=Icon::Dice/>" Randomize"
                            </button>
                        }
                        .into_any(),
                    }}
                    <span class="note" role="status">{move || status.get()}</span>
                    <span id="studio-credits" class="note" class:warn=move || short_of_credits().is_some()>
                        {move || match (short_of_credits(), quote.get().filter(|q| q.enabled)) {
                            (Some(reason), _) => Some(format!("Not enough credits: {reason}.")),
                            (None, Some(q)) => Some(format!("Balance: {} credits", q.balance)),
                            (None, None) => None,
                        }}
                    </span>
                </div>
            </form>

            <section class="studio-output" aria-label="Results">
                <div class="edit-panel">
                    <div class="row">
                        <label class="button">
                            "Upload an image to edit"
                            <input id="studio-upload" type="file" accept="image/png,image/jpeg" class="visually-hidden" on:change=move |_| upload()/>
                        </label>
                        <Show when=move || source.with(Option::is_some)>
                            <button type="button" class="button" on:click=move |_| {
                                source.set(None);
                                browser::clear("mask-canvas");
                            }>"Stop editing"</button>
                        </Show>
                    </div>
                    {move || {
                        source
                            .get()
                            .map(|src| {
                                let url = src.url.clone();
                                view! {
                                    <div class="source">
                                        <p class="small muted">"Source (paint over the area to change; nothing painted changes the whole image)"</p>
                                        <div class="edit-stage">
                                            <img class="edit-source" id="edit-source" src=url.clone() alt=format!("Source image: {}", src.name)/>
                                            <canvas
                                                id="mask-canvas"
                                                class="mask-canvas"
                                                width="512"
                                                height="512"
                                                aria-label="Mask: paint the area to change"
                                                on:pointerdown=move |e| {
                                                    painting.set(true);
                                                    last_point.set_value(None);
                                                    paint_at(f64::from(e.client_x()), f64::from(e.client_y()));
                                                }
                                                on:pointermove=move |e| {
                                                    if painting.get_untracked() {
                                                        paint_at(f64::from(e.client_x()), f64::from(e.client_y()));
                                                    }
                                                }
                                                on:pointerup=move |_| painting.set(false)
                                                on:pointerleave=move |_| painting.set(false)
                                            ></canvas>
                                        </div>
                                        <div class="row mask-tools">
                                            <label class="inline">
                                                <span>{move || format!("Brush {}", brush.get() as u32)}</span>
                                                <input type="range" min="4" max="128" prop:value=move || brush.get().to_string() on:input=move |e| brush.set(event_target_value(&e).parse().unwrap_or(32.0))/>
                                            </label>
                                            <button type="button" class="button" aria-pressed=move || erasing.get().to_string() on:click=move |_| erasing.update(|v| *v = !*v)>
                                                "Eraser"
                                            </button>
                                            <button type="button" class="button" on:click=move |_| browser::clear("mask-canvas")>"Clear mask"</button>
                                            <button type="button" class="button" on:click=move |_| save_mask()>"Save mask"</button>
                                            <label class="inline">
                                                <span>{move || format!("Strength {:.2}", strength.get())}</span>
                                                <input type="range" min="0.05" max="1" step="0.05" prop:value=move || strength.get().to_string() on:input=move |e| strength.set(event_target_value(&e).parse().unwrap_or(0.6))/>
                                            </label>
                                        </div>
                                    </div>
                                }
                            })
                    }}
                </div>
                <div class="result-stage">
                    {move || {
                        let list = slots.get();
                        if list.is_empty() {
                            return view! { <p class="muted result-empty">"Your images appear here."</p> }.into_any();
                        }
                        let index = selected.get().min(list.len() - 1);
                        let slot = list[index].clone();
                        let count = list.len();
                        let main = match &slot.image {
                            Some(image) => {
                                let done_index = results.with(|r| r.iter().position(|i| i.id == image.id).unwrap_or(0));
                                view! {
                                    <button class="result-main" id="result-main" aria-label="Open fullscreen" on:click=move |_| open_result(done_index)>
                                        <img src=image.url.clone().unwrap_or_default() alt=user_prompt(image)/>
                                    </button>
                                }
                                .into_any()
                            }
                            None => {
                                let label = if slot.steps > 0 { format!("Painting, step {} of {}", slot.step, slot.steps) } else { "Queued".into() };
                                view! {
                                    <figure class="result-main placeholder" role="img" aria-label=label.clone() style=format!("aspect-ratio: {} / {}", slot.width.max(1), slot.height.max(1))>
                                        {slot.preview.clone().map(|p| view! { <img src=p alt="" class="preview"/> })}
                                        <figcaption>
                                            <progress max="100" value=(slot.step * 100).checked_div(slot.steps).unwrap_or(0)></progress>
                                            <span>{label.clone()}</span>
                                        </figcaption>
                                    </figure>
                                }
                                .into_any()
                            }
                        };
                        let image_actions = slot.image.clone().map(|image| {
                            let (a, b, c) = (image.clone(), image.id.clone(), image.id.clone());
                            view! {
                                <div class="row result-actions">
                                    <a class="button" href=format!("{}?download=1", crate::api::image_url(&image.id, "png")) download><Svg icon=Icon::Download/>" PNG"</a>
                                    <a class="button" href=format!("{}?download=1", crate::api::image_url(&image.id, "jpg")) download><Svg icon=Icon::Download/>" JPG"</a>
                                    <button type="button" class="button" on:click=move |_| edit_image.run(a.clone())><Svg icon=Icon::Pencil/>" Edit"</button>
                                    <button type="button" class="button" on:click=move |_| send_to_chat.run(b.clone())><Svg icon=Icon::Chat/>" Send to chat"</button>
                                    <button type="button" class="icon-button" aria-label="Delete image" on:click=move |_| delete_image.run(c.clone())><Svg icon=Icon::Trash/></button>
                                </div>
                            }
                        });
                        view! {
                            <div class="result-view">
                                <button type="button" class="icon-button" aria-label="Previous result" disabled=count < 2 on:click=move |_| selected.update(|s| *s = (*s + count - 1) % count)>
                                    <Svg icon=Icon::Left/>
                                </button>
                                {main}
                                <button type="button" class="icon-button" aria-label="Next result" disabled=count < 2 on:click=move |_| selected.update(|s| *s = (*s + 1) % count)>
                                    <Svg icon=Icon::Right/>
                                </button>
                            </div>
                            {image_actions}
                            <div class="strip" role="list" aria-label="Results">
                                {list
                                    .into_iter()
                                    .enumerate()
                                    .map(|(i, s)| {
                                        let thumb = s.image.as_ref().map(|im| im.thumbnail_url.clone()).or(s.preview.clone());
                                        view! {
                                            <div role="listitem">
                                            <button type="button" class="strip-item" aria-current=move || (selected.get() == i).then_some("true") aria-label=format!("Result {}", i + 1) on:click=move |_| selected.set(i)>
                                                {thumb.map(|t| view! { <img src=t alt=""/> })}
                                            </button>
                                            </div>
                                        }
                                    })
                                    .collect_view()}
                            </div>
                        }
                        .into_any()
                    }}
                </div>
                <Show when=move || show_code.get()>
                    <div class="code-panel" role="region" aria-label="Code">
                        <div class="tabs" role="tablist" aria-label="Language">
                            {["curl", "python", "node"]
                                .into_iter()
                                .map(|t| view! {
                                    <button type="button" role="tab" class="tab" aria-selected=move || (code_tab.get() == t).to_string() on:click=move |_| code_tab.set(t.to_string())>
                                        {match t { "curl" => "curl", "python" => "Python", _ => "Node.js" }}
                                    </button>
                                })
                                .collect_view()}
                        </div>
                        <Show when=move || {
                            let sz = size.get();
                            sz != "auto" && source.with(Option::is_none) && !current_model.get().is_some_and(|m| m.allowed_sizes.contains(&sz))
                        }>
                            <p class="note warn code-note">
                                {move || format!("{} is a Studio size; the images API accepts the model's allowed sizes ({}).", size.get(), current_model.get().map(|m| m.allowed_sizes.join(", ")).unwrap_or_default())}
                            </p>
                        </Show>
                        <pre><code id="code-snippet">{snippet}</code></pre>
                        <button type="button" class="button" on:click=move |_| {
                            browser::copy_text(&snippet());
                            toasts.info("Code copied");
                        }>"Copy"</button>
                    </div>
                </Show>
            </section>
        </div>
        <section class="gallery" aria-label="Gallery">
            <h2>"Gallery"</h2>
            {move || {
                gallery
                    .get()
                    .map(|r| match r {
                        Ok(list) if list.is_empty() => view! { <p class="muted">"Nothing here yet."</p> }.into_any(),
                        Ok(list) => {
                            let all = list.clone();
                            view! {
                                <ul class="gallery-grid" role="list">
                                    {list
                                        .into_iter()
                                        .enumerate()
                                        .map(|(i, image)| {
                                            let all = all.clone();
                                            let (edit_copy, chat_id, delete_id) = (image.clone(), image.id.clone(), image.id.clone());
                                            let alt = user_prompt(&image);
                                            let button_id = format!("gallery-{}", image.id);
                                            let opener = button_id.clone();
                                            view! {
                                                <li class="image-tile">
                                                    <button class="thumb-button" id=button_id aria-label=format!("Open image: {alt}") on:click=move |_| viewer.open(all.clone(), i, opener.clone())>
                                                        <img src=image.thumbnail_url.clone() alt=alt.clone() loading="lazy"/>
                                                    </button>
                                                    <div class="image-actions">
                                                        <button class="icon-button" aria-label="Edit this image" title="Edit" on:click=move |_| edit_image.run(edit_copy.clone())><Svg icon=Icon::Pencil/></button>
                                                        <button class="icon-button" aria-label="Send to chat" title="Send to chat" on:click=move |_| send_to_chat.run(chat_id.clone())><Svg icon=Icon::Chat/></button>
                                                        <a class="icon-button" href=format!("{}?download=1", crate::api::image_url(&image.id, "png")) download aria-label="Download PNG" title="Download PNG"><Svg icon=Icon::Download/></a>
                                                        <button class="icon-button" aria-label="Delete image" title="Delete" on:click=move |_| delete_image.run(delete_id.clone())><Svg icon=Icon::Trash/></button>
                                                    </div>
                                                </li>
                                            }
                                        })
                                        .collect_view()}
                                </ul>
                            }
                            .into_any()
                        }
                        Err(e) => view! { <p class="error-text">{e.message}</p> }.into_any(),
                    })
            }}
        </section>
    }
    .into_any()
}

/// Replaces the results' provisional records (from `image.done`) with the stored ones, which
/// carry the full generation metadata the viewer and "Edit" show.
fn complete_results(slots: RwSignal<Vec<ResultSlot>>) {
    spawn_local(async move {
        let Ok(stored) = client::get::<Vec<Image>>("/api/studio/images?limit=50").await else {
            return;
        };
        slots.update(|list| {
            for slot in list.iter_mut() {
                if let Some(image) = &slot.image {
                    if let Some(full) = stored.iter().find(|g| g.id == image.id) {
                        slot.image = Some(full.clone());
                    }
                }
            }
        });
    });
}

/// The exact current request as curl, Python (`openai`) and Node.js (`openai`) code against
/// Easel's OpenAI-compatible API.
fn code_snippets(r: &StudioRequest, language: &str) -> String {
    let origin = origin();
    let mut extra = serde_json::Map::new();
    if !r.negative_prompt.is_empty() {
        extra.insert("negative_prompt".into(), r.negative_prompt.clone().into());
    }
    if let Some(s) = r.seed {
        extra.insert("seed".into(), s.into());
    }
    if let Some(s) = r.steps {
        extra.insert("steps".into(), s.into());
    }
    if let Some(g) = r.guidance {
        extra.insert("guidance".into(), serde_json::json!(g));
    }
    if let Some(s) = &r.sampler {
        extra.insert("sampler".into(), s.clone().into());
    }
    if let Some(s) = &r.schedule {
        extra.insert("schedule".into(), s.clone().into());
    }
    if let Some(s) = &r.style {
        extra.insert("style".into(), s.clone().into());
    }
    let editing = r.source_image_id.is_some() || r.source_image_b64.is_some();
    if editing {
        if let Some(s) = r.strength {
            // Two decimals, as shown on the slider (not 0.6000000238…).
            let rounded: f64 = format!("{s:.2}").parse().unwrap_or(0.6);
            extra.insert("strength".into(), serde_json::json!(rounded));
        }
    }
    let masked = r.mask_b64.is_some();
    let model = r.model.clone().unwrap_or_default();
    let size = if r.size == "auto" {
        None
    } else {
        Some(r.size.clone())
    };
    let mut body = serde_json::json!({"model": model, "prompt": r.prompt, "n": r.n, "response_format": "b64_json"});
    if let Some(s) = &size {
        body["size"] = s.clone().into();
    }
    let py_str = |s: &str| serde_json::to_string(s).unwrap_or_default();
    match (language, editing) {
        ("python", false) => format!(
            "from openai import OpenAI\n\nclient = OpenAI(base_url=\"{origin}/v1\", api_key=\"unused\")\nresult = client.images.generate(\n    model={},\n    prompt={},\n    n={},{}\n    response_format=\"b64_json\",\n    extra_body={},\n)\nprint(len(result.data), \"images\")",
            py_str(&model),
            py_str(&r.prompt),
            r.n,
            size.map(|s| format!("\n    size=\"{s}\",")).unwrap_or_default(),
            serde_json::Value::Object(extra)
        ),
        ("python", true) => format!(
            "from openai import OpenAI\n\nclient = OpenAI(base_url=\"{origin}/v1\", api_key=\"unused\")\nresult = client.images.edit(\n    model={},\n    image=open(\"source.png\", \"rb\"),{}\n    prompt={},\n    n={},\n    extra_body={},\n)",
            py_str(&model),
            if masked { "\n    mask=open(\"mask.png\", \"rb\"),  # from \"Save mask\"" } else { "" },
            py_str(&r.prompt),
            r.n,
            serde_json::Value::Object(extra)
        ),
        ("node", false) => {
            let mut full = body.clone();
            for (k, v) in extra {
                full[k] = v;
            }
            format!(
                "import OpenAI from \"openai\";\n\nconst client = new OpenAI({{ baseURL: \"{origin}/v1\", apiKey: \"unused\" }});\nconst result = await client.images.generate({});\nconsole.log(result.data.length, \"images\");",
                serde_json::to_string_pretty(&full).unwrap_or_default()
            )
        }
        ("node", true) => format!(
            "import fs from \"node:fs\";\nimport OpenAI from \"openai\";\n\nconst client = new OpenAI({{ baseURL: \"{origin}/v1\", apiKey: \"unused\" }});\nconst result = await client.images.edit({{\n  model: {},\n  image: fs.createReadStream(\"source.png\"),{}\n  prompt: {},\n  n: {},\n  ...{},\n}});",
            py_str(&model),
            if masked { "\n  mask: fs.createReadStream(\"mask.png\"), // from \"Save mask\"" } else { "" },
            py_str(&r.prompt),
            r.n,
            serde_json::Value::Object(extra)
        ),
        (_, false) => {
            let mut full = body;
            for (k, v) in extra {
                full[k] = v;
            }
            format!(
                "curl {origin}/v1/images/generations \\\n  -H \"Content-Type: application/json\" \\\n  -d '{}'",
                full.to_string().replace('\'', "'\\''")
            )
        }
        (_, true) => {
            let mut lines = vec![format!("curl {origin}/v1/images/edits"), "  -F image=@source.png".into()];
            if masked {
                lines.push("  -F mask=@mask.png".into());
            }
            lines.extend([
                format!("  -F model={model}"),
                format!("  -F prompt='{}'", r.prompt.replace('\'', "'\\''")),
                format!("  -F n={}", r.n),
            ]);
            for (k, v) in extra {
                let value = v.as_str().map(str::to_string).unwrap_or_else(|| v.to_string());
                lines.push(format!("  -F {k}='{}'", value.replace('\'', "'\\''")));
            }
            lines.join(" \\\n")
        }
    }
}

fn origin() -> String {
    #[cfg(feature = "hydrate")]
    {
        web_sys::window()
            .and_then(|w| w.location().origin().ok())
            .unwrap_or_else(|| "http://127.0.0.1:3000".into())
    }
    #[cfg(not(feature = "hydrate"))]
    {
        "http://127.0.0.1:3000".into()
    }
}
