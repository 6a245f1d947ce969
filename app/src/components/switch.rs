//! An on/off switch: a button with `role="switch"` and `aria-checked`, named by its visible
//! label, operable with Space and Enter like any button.

use leptos::prelude::*;

#[component]
pub fn Switch(
    /// Unique id; the visible label is `{id}-label`.
    id: &'static str,
    label: &'static str,
    #[prop(into)] checked: Signal<bool>,
    #[prop(into, optional)] disabled: Signal<bool>,
    /// Called with the new state when the user flips it.
    on_toggle: Callback<bool>,
    /// Extra content after the label (an info icon, say).
    #[prop(optional)]
    children: Option<Children>,
) -> impl IntoView {
    let label_id = format!("{id}-label");
    view! {
        <div class="switch-row">
            <span class="switch-label">
                <span id=label_id.clone()>{label}</span>
                {children.map(|c| c())}
            </span>
            <button
                type="button"
                role="switch"
                class="switch"
                id=id
                aria-labelledby=label_id
                aria-checked=move || checked.get().to_string()
                disabled=move || disabled.get()
                on:click=move |_| on_toggle.run(!checked.get_untracked())
            >
                <span class="switch-knob"></span>
            </button>
        </div>
    }
}

/// An info icon whose text shows as a tooltip on hover and keyboard focus, and is read by
/// screen readers as the icon's name.
#[component]
pub fn InfoTip(text: &'static str) -> impl IntoView {
    view! {
        <span class="info-tip" tabindex="0" role="img" aria-label=text title=text>
            <super::icons::Svg icon=super::icons::Icon::Info/>
            <span class="tooltip" aria-hidden="true">{text}</span>
        </span>
    }
}
