//! The fullscreen image viewer: a modal dialog with the image at full size, its prompt and
//! settings, arrows (and ←/→) to page through the message's images, and downloads. Escape or a
//! click outside closes it, and focus goes back to the thumbnail that opened it.

use leptos::prelude::*;

use super::icons::{Icon, Svg};
use crate::api::Image;
use crate::client;

#[derive(Clone, Copy)]
pub struct Viewer {
    images: RwSignal<Vec<Image>>,
    index: RwSignal<Option<usize>>,
    opener: StoredValue<Option<String>>,
}

impl Viewer {
    /// Opens on `images[index]`; `opener` is the id of the element to refocus on close.
    pub fn open(&self, images: Vec<Image>, index: usize, opener: String) {
        self.images.set(images);
        self.opener.set_value(Some(opener));
        self.index.set(Some(index));
    }

    fn close(&self) {
        self.index.set(None);
        if let Some(id) = self.opener.get_value() {
            client::focus(&id);
        }
    }

    fn step(&self, delta: isize) {
        let len = self.images.with_untracked(Vec::len) as isize;
        if len == 0 {
            return;
        }
        self.index.update(|i| {
            if let Some(i) = i {
                *i = ((*i as isize + delta).rem_euclid(len)) as usize;
            }
        });
    }
}

pub fn provide_viewer() {
    provide_context(Viewer {
        images: RwSignal::new(Vec::new()),
        index: RwSignal::new(None),
        opener: StoredValue::new(None),
    });
}

pub fn use_viewer() -> Viewer {
    expect_context::<Viewer>()
}

/// The prompt a person wrote (before the style template), else the engine's prompt.
pub fn user_prompt(image: &Image) -> String {
    image
        .metadata
        .tool_arguments
        .get("prompt")
        .and_then(|p| p.as_str())
        .map(str::to_string)
        .filter(|p| !p.is_empty())
        .unwrap_or_else(|| image.metadata.prompt.clone())
}

#[component]
pub fn ImageViewer() -> impl IntoView {
    let viewer = use_viewer();
    let dialog: NodeRef<leptos::html::Div> = NodeRef::new();
    Effect::new(move |_| {
        if viewer.index.get().is_some() {
            if let Some(d) = dialog.get() {
                let _ = d.focus();
            }
        }
    });
    let current = move || {
        viewer
            .index
            .get()
            .and_then(|i| viewer.images.with(|list| list.get(i).cloned()))
    };
    let count = move || viewer.images.with(Vec::len);
    view! {
        <Show when=move || viewer.index.get().is_some()>
            <div class="backdrop viewer-backdrop" on:click=move |_| viewer.close()>
                <div
                    class="dialog viewer"
                    role="dialog"
                    aria-modal="true"
                    aria-label="Image viewer"
                    tabindex="-1"
                    node_ref=dialog
                    on:click=|e| e.stop_propagation()
                    on:keydown=move |e| match e.key().as_str() {
                        "Escape" => viewer.close(),
                        "ArrowLeft" => viewer.step(-1),
                        "ArrowRight" => viewer.step(1),
                        _ => {}
                    }
                >
                    {move || {
                        current()
                            .map(|image| {
                                let prompt = user_prompt(&image);
                                let m = image.metadata.clone();
                                let png = crate::api::image_url(&image.id, "png");
                                view! {
                                    <div class="viewer-stage">
                                        <button class="icon-button viewer-nav" aria-label="Previous image" on:click=move |_| viewer.step(-1) disabled=move || count() < 2>
                                            <Svg icon=Icon::Left/>
                                        </button>
                                        <img class="viewer-image" src=png alt=prompt.clone() width=image.width height=image.height/>
                                        <button class="icon-button viewer-nav" aria-label="Next image" on:click=move |_| viewer.step(1) disabled=move || count() < 2>
                                            <Svg icon=Icon::Right/>
                                        </button>
                                    </div>
                                    <div class="viewer-info">
                                        <p class="viewer-prompt">{prompt}</p>
                                        <p class="viewer-position">
                                            {move || format!("{} / {}", viewer.index.get().unwrap_or(0) + 1, count())}
                                        </p>
                                        <dl class="settings">
                                            <dt>"Model"</dt><dd>{m.model.clone()}</dd>
                                            <dt>"Size"</dt><dd>{format!("{}×{}", image.width, image.height)}</dd>
                                            <dt>"Seed"</dt><dd>{m.seed}</dd>
                                            <dt>"Steps"</dt><dd>{m.steps}</dd>
                                            <dt>"Sampler"</dt><dd>{format!("{} ({})", m.sampler, m.schedule)}</dd>
                                            <dt>"Guidance"</dt><dd>{m.guidance}</dd>
                                        </dl>
                                        {(!m.negative_prompt.is_empty()).then(|| view! { <p class="note">"Negative: " {m.negative_prompt.clone()}</p> })}
                                        <div class="viewer-actions">
                                            <a class="button" href=format!("{}?download=1", crate::api::image_url(&image.id, "png")) download>
                                                <Svg icon=Icon::Download/>" PNG"
                                            </a>
                                            <a class="button" href=format!("{}?download=1", crate::api::image_url(&image.id, "jpg")) download>
                                                <Svg icon=Icon::Download/>" JPG"
                                            </a>
                                        </div>
                                    </div>
                                }
                                    .into_any()
                            })
                    }}
                    <button class="icon-button viewer-close" aria-label="Close viewer" on:click=move |_| viewer.close()>
                        <Svg icon=Icon::Close/>
                    </button>
                </div>
            </div>
        </Show>
    }
}
