//! Editing in the Studio: upload an image or pick one ("Edit" on a result or in the gallery),
//! paint the area to change on a canvas over it, and choose how strongly it changes.

use leptos::prelude::*;
use leptos::task::spawn_local;

use super::StudioState;
use crate::browser;

/// The picture being edited: an earlier image (by id) or an upload.
#[derive(Debug, Clone, PartialEq)]
pub(super) struct Source {
    pub(super) url: String,
    pub(super) image_id: Option<String>,
    pub(super) b64: Option<String>,
    pub(super) name: String,
}

#[component]
pub(super) fn EditPanel(state: StudioState) -> impl IntoView {
    let StudioState {
        source,
        strength,
        toasts,
        ..
    } = state;
    let brush = RwSignal::new(32.0f64);
    let erasing = RwSignal::new(false);
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

    view! {
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
    }
    .into_any()
}
