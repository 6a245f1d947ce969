//! The "Advanced" settings of the Studio form: sampler, schedule, steps, guidance, seed and
//! live previews. Empty fields leave the model's own defaults (shown as placeholders).

use leptos::prelude::*;

use super::{random, StudioState};
use crate::components::icons::{Icon, Svg};
use crate::components::switch::InfoTip;

#[component]
pub(super) fn Advanced(state: StudioState) -> impl IntoView {
    let StudioState {
        sampler,
        schedule,
        steps,
        guidance,
        seed,
        preview,
        current_model,
        long_prompts,
        weighting,
        ..
    } = state;
    view! {
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
            <label class="field">
                <span class="label-with-tip">"Long prompts" <InfoTip text="Prompts over 75 tokens: read in chunks of 75 (up to 225 tokens), or cut after the first 75"/></span>
                <select prop:value=move || long_prompts.get() on:change=move |e| long_prompts.set(event_target_value(&e))>
                    <option value="">"Server default"</option>
                    <option value="chunk">"chunk"</option>
                    <option value="truncate">"truncate"</option>
                </select>
            </label>
            <label class="inline">
                <input type="checkbox" prop:checked=move || weighting.get() on:change=move |e| weighting.set(event_target_checked(&e))/>
                <span class="label-with-tip">"Prompt weighting" <InfoTip text="(word:1.3) stresses a word, (word) by 1.1, [word] softens it; off reads brackets literally"/></span>
            </label>
        </details>
    }
    .into_any()
}
