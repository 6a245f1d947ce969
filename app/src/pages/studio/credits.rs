//! What Generate costs in credits, and the balance: asked of the server again whenever
//! something the cost depends on changes (the latest question's answer wins), and after a job
//! starts or ends (credits are reserved when it is queued and settled when it ends).

use leptos::prelude::*;
use leptos::task::spawn_local;

use super::StudioState;
use crate::api::CreditQuote;
use crate::client;
use crate::session::use_session;

#[derive(Clone, Copy)]
pub(super) struct Credits {
    quote: RwSignal<Option<CreditQuote>>,
    asked: StoredValue<u64>,
}

impl Credits {
    pub(super) fn new() -> Credits {
        Credits {
            quote: RwSignal::new(None),
            asked: StoredValue::new(0),
        }
    }

    /// Keeps the quote current for `state`'s form (called once, by the page).
    pub(super) fn follow(self, state: StudioState) {
        let session = use_session();
        Effect::new(move |_| {
            state.current_model.track();
            state.size.track();
            state.count.track();
            state.steps.track();
            state.source.track();
            state.strength.track();
            self.ask(state);
        });
        Effect::new(move |was: Option<bool>| {
            let running = state.job.get().is_some();
            if was.is_some_and(|was| was != running) {
                session.refresh_me();
                self.ask(state);
            }
            running
        });
    }

    fn ask(self, state: StudioState) {
        let mut body = state.request();
        // The cost depends on neither the words nor the pixels; only on the edit being one.
        if body.prompt.trim().is_empty() {
            body.prompt = "quote".into();
        }
        body.mask_b64 = None;
        if body.source_image_b64.is_some() {
            body.source_image_b64 = Some(String::new());
        }
        let asked = self.asked.get_value() + 1;
        self.asked.set_value(asked);
        spawn_local(async move {
            let answer = client::send::<_, CreditQuote>("POST", "/api/studio/quote", &body)
                .await
                .ok();
            // The page may have been left meanwhile (its values disposed).
            if self.asked.try_get_value() == Some(asked) {
                self.quote.try_set(answer);
            }
        });
    }

    /// Why Generate is refused ("needs 12 credits, 2 left"), when the balance is short.
    pub(super) fn short(self) -> Option<String> {
        self.quote.with(|q| {
            q.as_ref()
                .filter(|q| q.enabled && !q.enough)
                .map(|q| format!("needs {} credits, {} left", q.cost, q.balance))
        })
    }

    /// " · 12 credits" after the button's word, with credits on.
    pub(super) fn on_button(self) -> Option<String> {
        self.quote.get().filter(|q| q.enabled).map(|q| {
            format!(
                " · {} {}",
                q.cost,
                if q.cost == 1 { "credit" } else { "credits" }
            )
        })
    }

    /// The line under the button: the balance, or why Generate is refused.
    pub(super) fn note(self) -> Option<String> {
        match (self.short(), self.quote.get().filter(|q| q.enabled)) {
            (Some(reason), _) => Some(format!("Not enough credits: {reason}.")),
            (None, Some(q)) => Some(format!("Balance: {} credits", q.balance)),
            (None, None) => None,
        }
    }
}
