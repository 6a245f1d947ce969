//! The Studio form: prompt, negative prompt, model, style cards, aspect ratio or exact size,
//! image count, the advanced settings, prompt enhancement, and the Generate row.

use leptos::prelude::*;

use super::advanced::Advanced;
use super::generate::GenerateActions;
use super::{random, StudioState};
use crate::api::{limits, ImageModelInfo, PromptCheck, PromptCheckRequest};
use crate::client;
use crate::components::get_model::GetModel;
use crate::components::icons::{Icon, Svg};
use crate::components::switch::{InfoTip, Switch};
use leptos::task::spawn_local;

/// The style cards shown first (the API accepts every preset and free text).
pub(super) const STYLE_CARDS: [(&str, &str); 8] = [
    ("auto", "Auto"),
    ("3d-anime", "3D Anime"),
    ("3d-model", "3D Model"),
    ("anime", "Japanese Anime"),
    ("movie", "Movie"),
    ("comic", "Comic"),
    ("cyberpunk", "Cyberpunk"),
    ("fantasy", "Fantasy"),
];

pub(super) const RANDOM_PROMPTS: [&str; 16] = [
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

pub(super) fn random_prompt() -> String {
    RANDOM_PROMPTS[random(RANDOM_PROMPTS.len() as u32) as usize].to_string()
}

fn round8(v: f64) -> u32 {
    ((v / 8.0).round() as u32 * 8).max(64)
}

/// The size for an aspect ratio: the model's allowed size closest to it (so the request is
/// one the images API accepts too), else one computed around the default area.
pub(super) fn size_for(model: &ImageModelInfo, aspect: &str) -> String {
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

#[component]
pub(super) fn StudioForm(state: StudioState) -> impl IntoView {
    let StudioState {
        prompt,
        negative,
        model,
        style,
        aspect,
        exact_size,
        count,
        enhance,
        enhanced,
        image_models,
        current_model,
        size,
        ..
    } = state;
    let app = crate::state::use_app();
    let models_loaded = move || app.models.with(|m| matches!(m, Some(Ok(_))));
    view! {
        <form class="studio-form" on:submit=move |e| {
            e.prevent_default();
            state.generate();
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
                <PromptWarning state=state/>
                <div class="row">
                    <button type="button" class="button" on:click=move |_| prompt.set(random_prompt())>
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
            // Only once the list has loaded: an empty list while loading says nothing.
            <Show when=move || models_loaded() && image_models.with(Vec::is_empty)>
                <GetModel/>
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
            <Advanced state=state/>
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
                                    <button type="button" class="button primary" on:click=move |_| state.use_enhanced()>"Use it"</button>
                                    <button type="button" class="button" on:click=move |_| enhanced.set(None)>"Discard"</button>
                                </div>
                            </div>
                        }
                    })
            }}
            <GenerateActions state=state/>
        </form>
    }
    .into_any()
}

/// Under the prompt: how many tokens the engine reads, and a warning when some are cut. Asked
/// of the server (it has the model's tokenizer) a moment after the typing stops.
#[component]
fn PromptWarning(state: StudioState) -> impl IntoView {
    let StudioState {
        prompt,
        negative,
        current_model,
        long_prompts,
        weighting,
        prompt_check,
        ..
    } = state;
    let version = StoredValue::new(0u64);
    Effect::new(move |_| {
        let body = PromptCheckRequest {
            model: current_model.get().map(|m| m.id),
            prompt: prompt.get(),
            negative_prompt: negative.get(),
            long_prompts: Some(long_prompts.get()).filter(|s| !s.is_empty()),
            prompt_weighting: Some(weighting.get()),
        };
        version.update_value(|v| *v += 1);
        let mine = version.get_value();
        if body.prompt.trim().is_empty() || body.model.is_none() {
            prompt_check.set(None);
            return;
        }
        // The page may be gone by the time these run (left for the chat, say): its values
        // are then disposed, and a plain read would panic.
        set_timeout(
            move || {
                if version.try_get_value() != Some(mine) {
                    return;
                }
                spawn_local(async move {
                    let answer =
                        client::send::<_, PromptCheck>("POST", "/api/studio/prompt", &body).await;
                    if version.try_get_value() == Some(mine) {
                        prompt_check.try_set(answer.ok());
                    }
                });
            },
            std::time::Duration::from_millis(300),
        );
    });
    move || {
        let check = prompt_check.get()?;
        let cut = check.dropped > 0 || check.negative_dropped > 0;
        let text = if check.dropped > 0 {
            format!(
                "This prompt is {} tokens; the model reads {} and the last {} are cut off.{}",
                check.tokens,
                check.limit,
                check.dropped,
                if check.long_prompts == "truncate" {
                    " Shorten it, or choose \"chunk\" for long prompts under Advanced."
                } else {
                    " Shorten it."
                }
            )
        } else if check.negative_dropped > 0 {
            format!(
                "The negative prompt is {} tokens; the last {} are cut off.",
                check.negative_tokens, check.negative_dropped
            )
        } else if check.tokens > 75 {
            format!(
                "{} tokens, read in {} chunks of 75.",
                check.tokens,
                check.tokens.div_ceil(75)
            )
        } else {
            return None;
        };
        Some(
            view! { <p class="small" class:warn=cut class:muted=!cut id="prompt-tokens" role=cut.then_some("alert")>{text}</p> },
        )
    }
}
