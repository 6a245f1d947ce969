//! The current job's images: the selected one large (a placeholder with progress and the live
//! preview until it is finished), arrows, the actions on a finished image, and a strip of
//! thumbnails to pick from.

use leptos::prelude::*;

use super::{ImageActions, StudioState};
use crate::api::Image;
use crate::components::icons::{Icon, Svg};
use crate::components::viewer::{use_viewer, user_prompt};

#[component]
pub(super) fn Results(state: StudioState, actions: ImageActions) -> impl IntoView {
    let StudioState {
        slots, selected, ..
    } = state;
    let viewer = use_viewer();
    let ImageActions {
        edit: edit_image,
        send_to_chat,
        delete: delete_image,
    } = actions;
    // The finished images, in order, for paging in the viewer.
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
    view! {
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
    }
    .into_any()
}
