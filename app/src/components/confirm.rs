//! A confirmation dialog for destructive actions (delete a conversation, clear a history,
//! delete an image or an agent). One instance for the app, opened through context.

use leptos::prelude::*;

#[derive(Clone)]
struct Request {
    title: String,
    message: String,
    confirm: String,
    action: Callback<()>,
}

#[derive(Clone, Copy)]
pub struct Confirm {
    pending: RwSignal<Option<Request>>,
}

impl Confirm {
    /// Asks first; runs `action` only when the user confirms.
    pub fn ask(
        &self,
        title: impl Into<String>,
        message: impl Into<String>,
        confirm: impl Into<String>,
        action: impl Fn() + Send + Sync + 'static,
    ) {
        self.pending.set(Some(Request {
            title: title.into(),
            message: message.into(),
            confirm: confirm.into(),
            action: Callback::new(move |_| action()),
        }));
    }
}

pub fn provide_confirm() {
    provide_context(Confirm {
        pending: RwSignal::new(None),
    });
}

pub fn use_confirm() -> Confirm {
    expect_context::<Confirm>()
}

#[component]
pub fn ConfirmDialog() -> impl IntoView {
    let confirm = use_confirm();
    let button: NodeRef<leptos::html::Button> = NodeRef::new();
    Effect::new(move |_| {
        if confirm.pending.with(Option::is_some) {
            if let Some(b) = button.get() {
                let _ = b.focus();
            }
        }
    });
    let close = move || confirm.pending.set(None);
    view! {
        <Show when=move || confirm.pending.with(Option::is_some)>
            <div class="backdrop" on:click=move |_| close()>
                <div
                    class="dialog confirm"
                    role="alertdialog"
                    aria-modal="true"
                    aria-labelledby="confirm-title"
                    aria-describedby="confirm-message"
                    on:click=|e| e.stop_propagation()
                    on:keydown=move |e| {
                        if e.key() == "Escape" {
                            close();
                        }
                    }
                >
                    <h2 id="confirm-title">{move || confirm.pending.with(|p| p.as_ref().map(|r| r.title.clone()))}</h2>
                    <p id="confirm-message">{move || confirm.pending.with(|p| p.as_ref().map(|r| r.message.clone()))}</p>
                    <div class="dialog-actions">
                        <button class="button" on:click=move |_| close()>"Cancel"</button>
                        <button
                            class="button danger"
                            node_ref=button
                            on:click=move |_| {
                                if let Some(request) = confirm.pending.get_untracked() {
                                    confirm.pending.set(None);
                                    request.action.run(());
                                }
                            }
                        >
                            {move || confirm.pending.with(|p| p.as_ref().map(|r| r.confirm.clone()))}
                        </button>
                    </div>
                </div>
            </div>
        </Show>
    }
}
