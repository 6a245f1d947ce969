//! The Generate row: Generate (or "Edit image" while editing) and Randomize, Stop while a job
//! runs, and the status line. Kept on its own so changes to the button stay in one place.

use leptos::prelude::*;

use super::form::{random_prompt, STYLE_CARDS};
use super::{random, StudioState};
use crate::components::icons::{Icon, Svg};

#[component]
pub(super) fn GenerateActions(state: StudioState) -> impl IntoView {
    let StudioState {
        job,
        source,
        image_models,
        status,
        credits,
        ..
    } = state;
    view! {
        <div class="studio-actions">
            {move || match job.get() {
                Some(_) => view! { <button type="button" class="button danger" on:click=move |_| state.stop()>"Stop"</button> }.into_any(),
                None => view! {
                    <button
                        type="submit"
                        class="button primary"
                        disabled=move || image_models.with(Vec::is_empty) || credits.short().is_some()
                        aria-describedby="studio-credits"
                    >
                        {move || if source.with(Option::is_some) { "Edit image" } else { "Generate" }}
                        {move || credits.on_button()}
                    </button>
                    <button type="button" class="button" on:click=move |_| state.randomize() disabled=move || image_models.with(Vec::is_empty)>
                        <Svg icon=Icon::Dice/>" Randomize"
                    </button>
                }
                .into_any(),
            }}
            <span class="note" role="status">{move || status.get()}</span>
            <span id="studio-credits" class="note" class:warn=move || credits.short().is_some()>
                {move || credits.note()}
            </span>
        </div>
    }
    .into_any()
}

impl StudioState {
    /// Randomize: a random style, ratio, count, sampler, schedule and seed (and a random
    /// prompt if the box is empty), then a job with them.
    fn randomize(self) {
        if self.prompt.get_untracked().trim().is_empty() {
            self.prompt.set(random_prompt());
        }
        self.style.set(
            STYLE_CARDS[random(STYLE_CARDS.len() as u32) as usize]
                .0
                .to_string(),
        );
        self.aspect
            .set(["1:1", "16:9", "9:16"][random(3) as usize].to_string());
        self.exact_size.set(String::new());
        self.count.set(1 + random(4));
        // Only samplers that suit the model: LCM models need `lcm`, others must not use it.
        let info = self.current_model.get_untracked();
        let lcm_model = info.as_ref().is_some_and(|m| m.family == "lcm");
        let samplers: Vec<String> = info
            .map(|m| m.samplers)
            .unwrap_or_default()
            .into_iter()
            .filter(|s| (s == "lcm") == lcm_model)
            .collect();
        if !samplers.is_empty() {
            self.sampler
                .set(samplers[random(samplers.len() as u32) as usize].clone());
        }
        self.schedule
            .set(["discrete", "karras"][random(2) as usize].to_string());
        self.seed.set(random(4_294_967_295).to_string());
        self.run(self.request());
    }
}
