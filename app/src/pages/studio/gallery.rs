//! The gallery: everything made in the Studio, newest first, each with open (fullscreen),
//! edit, send to chat, download and delete.

use leptos::prelude::*;

use super::{ImageActions, StudioState};
use crate::api::Image;
use crate::client;
use crate::components::icons::{Icon, Svg};
use crate::components::viewer::{use_viewer, user_prompt};

#[component]
pub(super) fn Gallery(state: StudioState, actions: ImageActions) -> impl IntoView {
    let viewer = use_viewer();
    let gallery_version = state.gallery_version;
    let ImageActions {
        edit: edit_image,
        send_to_chat,
        delete: delete_image,
    } = actions;
    let gallery = LocalResource::new(move || {
        gallery_version.track();
        async move { client::get::<Vec<Image>>("/api/studio/images").await }
    });
    view! {
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
