//! Easel's user interface (Leptos, rendered on the server and hydrated in the browser) and the
//! HTTP API's shared types. Nothing here may depend on server-only crates: this crate
//! compiles to wasm.

// Leptos views are deeply nested types; the default limit is too low for a real page.
#![recursion_limit = "256"]

pub mod api;
mod browser;
pub mod client;
mod components;
mod images;
pub mod markdown;
mod pages;
mod session;
mod state;

use leptos::prelude::*;
use leptos_meta::{provide_meta_context, MetaTags, Stylesheet, Title};
use leptos_router::components::{ParentRoute, Route, Router, Routes};
use leptos_router::path;

use components::confirm::{provide_confirm, ConfirmDialog};
use components::toasts::{provide_toasts, Toasts};
use components::viewer::{provide_viewer, ImageViewer};
use pages::auth::AuthGate;

/// The HTML document around the app (server side).
pub fn shell(options: LeptosOptions) -> impl IntoView {
    view! {
        <!DOCTYPE html>
        <html lang="en">
            <head>
                <meta charset="utf-8"/>
                <meta name="viewport" content="width=device-width, initial-scale=1"/>
                <meta name="color-scheme" content="light dark"/>
                <link rel="icon" href="/favicon.svg" type="image/svg+xml"/>
                <HydrationScripts options/>
                <MetaTags/>
            </head>
            <body>
                <App/>
            </body>
        </html>
    }
}

#[component]
pub fn App() -> impl IntoView {
    provide_meta_context();
    provide_toasts();
    provide_confirm();
    provide_viewer();
    session::provide_session();
    view! {
        <Stylesheet id="easel" href="/easel.css"/>
        <Title text="Easel"/>
        <Router>
            <Routes fallback=|| view! { <p class="not-found">"Page not found."</p> }>
                // Every page sits behind the auth gate; the routes themselves are always declared,
                // so the server knows them (its route list is made from this tree).
                <ParentRoute path=path!("") view=AuthGate>
                    <Route path=path!("/") view=pages::chat::ChatPage/>
                    <Route path=path!("/c/:id") view=pages::chat::ChatPage/>
                    <Route path=path!("/agents") view=pages::agents::AgentsPage/>
                    <Route path=path!("/agents/:id") view=pages::agents::AgentsPage/>
                    <Route path=path!("/studio") view=pages::studio::StudioPage/>
                    <Route path=path!("/keys") view=pages::account::KeysPage/>
                    <Route path=path!("/account") view=pages::account::PasswordPage/>
                    <Route path=path!("/admin") view=pages::admin::AdminPage/>
                </ParentRoute>
            </Routes>
        </Router>
        <Toasts/>
        <ConfirmDialog/>
        <ImageViewer/>
    }
}
