//! One message: text (markdown for the assistant), image placeholders and thumbnails with
//! their actions (fullscreen, download PNG/JPG, delete, reuse settings), and what went wrong.

use leptos::prelude::*;
use leptos::task::spawn_local;

use super::{ComposerText, Shown};
use crate::api::Image;
use crate::client;
use crate::components::confirm::use_confirm;
use crate::components::get_model::GetModel;
use crate::components::icons::{Icon, Svg};
use crate::components::toasts::use_toasts;
use crate::components::viewer::{use_viewer, user_prompt};
use crate::images::ImageSlot;
use crate::markdown;

#[component]
pub fn MessageView(message: Shown, on_deleted: Callback<()>) -> impl IntoView {
    let is_user = message.role.get_value() == "user";
    let body = move || {
        let text = message.content.get();
        if is_user {
            view! { <p class="user-text">{text}</p> }.into_any()
        } else if text.is_empty() {
            ().into_any()
        } else {
            view! { <div class="markdown" inner_html=markdown::to_html(&text)></div> }.into_any()
        }
    };
    let status = move || {
        match message.status.get().as_str() {
        "running" if message.content.with(String::is_empty) && message.slots.with(Vec::is_empty) => {
            Some(view! { <p class="typing" role="status" aria-label="The assistant is writing">"● ● ●"</p> }.into_any())
        }
        "cancelled" => Some(view! { <p class="note">"Stopped before it was finished."</p> }.into_any()),
        _ => None,
    }
    };
    // The message's finished images, in order, for paging in the viewer.
    let images = Memo::new(move |_| {
        message.slots.with(|s| {
            s.iter()
                .filter_map(|s| s.image.clone())
                .collect::<Vec<Image>>()
        })
    });
    view! {
        <article class="message" class:from-user=is_user class:from-assistant=!is_user aria-label=if is_user { "You" } else { "Assistant" }>
            {body}
            {move || message.queue_position.get().map(|p| view! { <p class="note">"Waiting for the image engine (" {p} " ahead)…"</p> })}
            <div class="image-grid">
                <For each=move || message.slots.get() key=|s| (s.index, s.image.as_ref().map(|i| i.id.clone()), s.step) let:tile>
                    <ImageTile tile=tile images=images message=message on_deleted=on_deleted/>
                </For>
            </div>
            {status}
            {move || message.notes.get().into_iter().map(|n| view! { <p class="note warn">{n}</p> }).collect_view()}
            {move || message.error.get().map(|e| {
                // The way out of the one failure a person can fix from here.
                let no_model = e.code == "no_image_model";
                view! {
                    <p class="error-text" role="alert">{e.message}</p>
                    {no_model.then(|| view! { <GetModel/> })}
                }
            })}
        </article>
    }
    .into_any()
}

#[component]
fn ImageTile(
    tile: ImageSlot,
    images: Memo<Vec<Image>>,
    message: Shown,
    on_deleted: Callback<()>,
) -> impl IntoView {
    match tile.image {
        Some(image) => {
            view! { <Thumbnail image=image images=images message=message on_deleted=on_deleted/> }
                .into_any()
        }
        None => {
            let label = if tile.steps > 0 {
                format!("Painting, step {} of {}", tile.step, tile.steps)
            } else {
                "Queued".to_string()
            };
            let percent = (tile.step * 100).checked_div(tile.steps).unwrap_or(0);
            view! {
                <figure class="image-tile placeholder" role="img" aria-label=format!("{label}: {}", tile.prompt)>
                    {tile.preview.map(|p| view! { <img src=p alt="" class="preview"/> })}
                    <figcaption>
                        <progress max="100" value=percent aria-hidden="true"></progress>
                        <span>{label.clone()}</span>
                    </figcaption>
                </figure>
            }
            .into_any()
        }
    }
}

#[component]
fn Thumbnail(
    image: Image,
    images: Memo<Vec<Image>>,
    message: Shown,
    on_deleted: Callback<()>,
) -> impl IntoView {
    let viewer = use_viewer();
    let toasts = use_toasts();
    let confirm = use_confirm();
    let composer = use_context::<ComposerText>();
    let prompt = user_prompt(&image);
    let alt = if prompt.is_empty() {
        "Generated image".to_string()
    } else {
        prompt.clone()
    };
    let button_id = format!("thumb-{}", image.id);
    let id = StoredValue::new(image.id.clone());
    let seed = image.metadata.seed;
    let open = {
        let button_id = button_id.clone();
        move || {
            let list = images.get_untracked();
            let index = list
                .iter()
                .position(|i| i.id == id.get_value())
                .unwrap_or(0);
            viewer.open(list, index, button_id.clone());
        }
    };
    let open_button = open.clone();
    let reuse = {
        let prompt = prompt.clone();
        move || {
            if let Some(ComposerText(text)) = composer {
                text.set(format!("{prompt}, seed {seed}"));
                client::focus("message-box");
                toasts.info("Prompt and seed copied to the message box");
            }
        }
    };
    let delete = move || {
        confirm.ask(
            "Delete image?",
            "The image will be removed from this conversation.",
            "Delete",
            move || {
                let image_id = id.get_value();
                spawn_local(async move {
                    match client::call("DELETE", &format!("/api/images/{image_id}")).await {
                        Ok(()) => {
                            message.slots.update(|s| {
                                s.retain(|slot| {
                                    slot.image.as_ref().map(|i| i.id.as_str())
                                        != Some(image_id.as_str())
                                })
                            });
                            toasts.info("Image deleted");
                            on_deleted.run(());
                        }
                        Err(e) => toasts.error(e.message),
                    }
                });
            },
        );
    };
    view! {
        <figure class="image-tile">
            <button class="thumb-button" id=button_id aria-label=format!("Open image: {alt}") on:click=move |_| open_button()>
                <img src=image.thumbnail_url.clone() alt=alt.clone() width=image.width height=image.height loading="lazy" decoding="async"/>
            </button>
            <div class="image-actions">
                <button class="icon-button" aria-label="Fullscreen" title="Fullscreen" on:click=move |_| open()>
                    <Svg icon=Icon::Expand/>
                </button>
                <a class="icon-button" href=format!("{}?download=1", crate::api::image_url(&image.id, "png")) download aria-label="Download PNG" title="Download PNG">
                    <Svg icon=Icon::Download/>
                    <span class="badge">"PNG"</span>
                </a>
                <a class="icon-button" href=format!("{}?download=1", crate::api::image_url(&image.id, "jpg")) download aria-label="Download JPG" title="Download JPG">
                    <Svg icon=Icon::Download/>
                    <span class="badge">"JPG"</span>
                </a>
                <button class="icon-button" aria-label="Reuse settings" title="Reuse prompt and seed" on:click=move |_| reuse()>
                    <Svg icon=Icon::Reuse/>
                </button>
                <button class="icon-button" aria-label="Delete image" title="Delete image" on:click=move |_| delete()>
                    <Svg icon=Icon::Trash/>
                </button>
            </div>
        </figure>
    }
    .into_any()
}
