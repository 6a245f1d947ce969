//! "Get a model": shown wherever painting needs an image model and none is installed (the
//! Internal tools menu, the Studio, a reply that failed for lack of one). Admins start the
//! server's download of the recommended model and watch its progress; once it lands the model
//! list is reloaded, so the switch and the Studio work at once. Others are told to ask an admin.

use std::time::Duration;

use leptos::prelude::*;
use leptos::task::spawn_local;

use crate::api::{ModelDownload, ModelDownloadRequest};
use crate::client;
use crate::components::toasts::use_toasts;
use crate::state::use_app;

const POLL: Duration = Duration::from_millis(500);

fn busy(d: &ModelDownload) -> bool {
    matches!(d.phase.as_str(), "downloading" | "checking")
}

fn size(bytes: u64) -> String {
    let b = bytes as f64;
    match bytes {
        0..=1_048_575 => format!("{:.1} KB", b / 1024.0),
        1_048_576..=1_073_741_823 => format!("{:.1} MB", b / 1_048_576.0),
        _ => format!("{:.2} GB", b / 1_073_741_824.0),
    }
}

#[component]
pub fn GetModel() -> impl IntoView {
    let app = use_app();
    let toasts = use_toasts();
    let status: RwSignal<Option<ModelDownload>> = RwSignal::new(None);
    // Follows the download until it ends, then reloads the models the page offers.
    let poll = StoredValue::new(None::<std::sync::Arc<dyn Fn() + Send + Sync>>);
    let follow = std::sync::Arc::new(move || {
        spawn_local(async move {
            let Ok(now) = client::get::<ModelDownload>("/api/models/download").await else {
                return;
            };
            // The component may be gone by now (the models arrived and it was hidden).
            let Some(before) = status.try_get_untracked() else {
                return;
            };
            let was_busy = before.as_ref().is_some_and(busy);
            let still = busy(&now);
            if was_busy && now.phase == "ready" {
                toasts.info(format!(
                    "Model {} is ready",
                    now.model.clone().unwrap_or_default()
                ));
                app.refresh_models();
            }
            if status.try_set(Some(now)).is_some() {
                return;
            }
            if still {
                set_timeout(
                    move || {
                        // Gone with its page meanwhile: nothing to follow.
                        if let Some(again) = poll.try_get_value().flatten() {
                            again();
                        }
                    },
                    POLL,
                );
            }
        });
    });
    poll.set_value(Some(follow.clone()));
    let first = follow.clone();
    Effect::new(move |_| first());
    let start = move |_| {
        let follow = follow.clone();
        spawn_local(async move {
            match client::send::<_, ModelDownload>(
                "POST",
                "/api/models/download",
                &ModelDownloadRequest::default(),
            )
            .await
            {
                Ok(started) => {
                    if status.try_set(Some(started)).is_none() {
                        follow();
                    }
                }
                Err(e) => toasts.error(e.message),
            }
        });
    };
    view! {
        <div class="get-model" role="region" aria-label="Get a model">
            <p class="note warn">"No image model is installed, so nothing can be painted yet."</p>
            {move || {
                let Some(d) = status.get() else {
                    return ().into_any();
                };
                if busy(&d) {
                    let percent = (d.done * 100).checked_div(d.total).unwrap_or(0);
                    let label = if d.phase == "checking" {
                        format!("Checking {} …", d.repo)
                    } else {
                        format!("Downloading {}: {percent}% ({} of {})", d.repo, size(d.done), size(d.total))
                    };
                    return view! {
                        <div class="download-progress">
                            <progress max=d.total.max(1).to_string() value=d.done.to_string() aria-label="Download progress"></progress>
                            <p class="small" aria-live="polite">{label}</p>
                        </div>
                    }
                    .into_any();
                }
                let failed = (d.phase == "failed").then(|| d.error.clone().unwrap_or_default());
                if !d.can_start {
                    return view! {
                        <p class="small muted">"Ask an admin to get one (Get a model, in the Internal tools menu or the Studio)."</p>
                    }
                    .into_any();
                }
                let start = start.clone();
                view! {
                    {failed.map(|e| view! { <p class="error-text" role="alert">{format!("The download failed: {e}")}</p> })}
                    <button type="button" class="button primary" on:click=start>"Get a model"</button>
                    <p class="small muted">{format!("Downloads {} from the Hugging Face hub: an LCM model that paints in 4 steps, on a CPU too. It is usable as soon as it lands.", d.recommended)}</p>
                }
                .into_any()
            }}
        </div>
    }
}
