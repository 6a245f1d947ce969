//! Notifications at the top right: errors from runs and requests, confirmations of settings.
//! Each disappears after a few seconds or when dismissed; screen readers hear them (`role`
//! `status` for information, `alert` for errors).

use leptos::prelude::*;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ToastKind {
    Info,
    Error,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Toast {
    pub id: u64,
    pub kind: ToastKind,
    pub text: String,
}

/// The app-wide notification list, provided as context.
#[derive(Clone, Copy)]
pub struct ToastList {
    items: RwSignal<Vec<Toast>>,
    next: StoredValue<u64>,
}

impl ToastList {
    pub fn info(&self, text: impl Into<String>) {
        self.push(ToastKind::Info, text.into());
    }

    pub fn error(&self, text: impl Into<String>) {
        self.push(ToastKind::Error, text.into());
    }

    fn push(&self, kind: ToastKind, text: String) {
        let id = self.next.get_value();
        self.next.set_value(id + 1);
        self.items
            .update(|list| list.push(Toast { id, kind, text }));
        let items = self.items;
        let millis = if kind == ToastKind::Error { 8000 } else { 4000 };
        set_timeout(
            move || items.update(|list| list.retain(|t| t.id != id)),
            std::time::Duration::from_millis(millis),
        );
    }

    pub fn dismiss(&self, id: u64) {
        self.items.update(|list| list.retain(|t| t.id != id));
    }
}

pub fn provide_toasts() {
    provide_context(ToastList {
        items: RwSignal::new(Vec::new()),
        next: StoredValue::new(0),
    });
}

pub fn use_toasts() -> ToastList {
    expect_context::<ToastList>()
}

#[component]
pub fn Toasts() -> impl IntoView {
    let toasts = use_toasts();
    view! {
        <div class="toasts" aria-live="polite">
            <For each=move || toasts.items.get() key=|t| t.id let:toast>
                <div
                    class="toast"
                    class:toast-error=toast.kind == ToastKind::Error
                    role=if toast.kind == ToastKind::Error { "alert" } else { "status" }
                >
                    <span class="toast-text">{toast.text.clone()}</span>
                    <button class="icon-button" aria-label="Dismiss notification" on:click=move |_| toasts.dismiss(toast.id)>
                        "×"
                    </button>
                </div>
            </For>
        </div>
    }
}
