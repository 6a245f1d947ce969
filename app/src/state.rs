//! App-wide state, provided once as context: the conversation list (shared by the sidebar and
//! the pages that change it) and the models the server offers.

use leptos::prelude::*;

use crate::api::{Conversation, ModelsResponse};
use crate::client::{self, ClientResult};

#[derive(Clone, Copy)]
pub struct AppState {
    list_version: RwSignal<u32>,
    pub conversations: LocalResource<ClientResult<Vec<Conversation>>>,
    pub models: LocalResource<ClientResult<ModelsResponse>>,
}

impl AppState {
    /// Reloads the conversation list (after a create, rename, delete or a new title).
    pub fn refresh_conversations(&self) {
        self.list_version.update(|v| *v += 1);
    }

    /// Reloads the models (after "Get a model" lands one).
    pub fn refresh_models(&self) {
        self.models.refetch();
    }

    /// Whether image creation can be offered (a usable image model exists).
    pub fn images_available(&self) -> bool {
        self.models
            .get()
            .and_then(|r| r.ok())
            .map(|m| m.image_creation_available)
            .unwrap_or(false)
    }
}

pub fn provide_app_state() {
    let list_version = RwSignal::new(0u32);
    let conversations = LocalResource::new(move || {
        list_version.track();
        async move { client::get::<Vec<Conversation>>("/api/conversations").await }
    });
    let models =
        LocalResource::new(|| async { client::get::<ModelsResponse>("/api/models").await });
    provide_context(AppState {
        list_version,
        conversations,
        models,
    });
}

pub fn use_app() -> AppState {
    expect_context::<AppState>()
}
