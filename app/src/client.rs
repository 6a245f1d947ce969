//! The browser's side of the HTTP API: JSON requests with `fetch`, run events with
//! `EventSource`. On the server these are never called (resources and handlers only run after
//! hydration), so the server build gets inert versions that keep the types checked.

use serde::de::DeserializeOwned;
use serde::Serialize;

use crate::api::ErrorBody;

/// A failed request, in words for a notification.
#[derive(Debug, Clone, PartialEq)]
pub struct ClientError {
    pub status: u16,
    pub code: String,
    pub message: String,
}

impl std::fmt::Display for ClientError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.message)
    }
}

impl ClientError {
    fn network(message: impl Into<String>) -> Self {
        ClientError {
            status: 0,
            code: "network".into(),
            message: message.into(),
        }
    }

    #[cfg_attr(not(feature = "hydrate"), allow(dead_code))]
    fn from_body(status: u16, text: &str) -> Self {
        match serde_json::from_str::<ErrorBody>(text) {
            Ok(body) => ClientError {
                status,
                code: body.error.code,
                message: body.error.message,
            },
            Err(_) => ClientError {
                status,
                code: "http".into(),
                message: format!("The server answered {status}."),
            },
        }
    }
}

pub type ClientResult<T> = Result<T, ClientError>;

pub async fn get<T: DeserializeOwned>(url: &str) -> ClientResult<T> {
    let text = request("GET", url, None).await?;
    serde_json::from_str(&text)
        .map_err(|e| ClientError::network(format!("Unexpected answer from {url}: {e}")))
}

pub async fn send<B: Serialize, T: DeserializeOwned>(
    method: &str,
    url: &str,
    body: &B,
) -> ClientResult<T> {
    let body = serde_json::to_string(body).map_err(|e| ClientError::network(e.to_string()))?;
    let text = request(method, url, Some(body)).await?;
    serde_json::from_str(&text)
        .map_err(|e| ClientError::network(format!("Unexpected answer from {url}: {e}")))
}

/// A request whose answer has no body worth reading (DELETE, cancel).
pub async fn call(method: &str, url: &str) -> ClientResult<()> {
    request(method, url, None).await.map(|_| ())
}

/// A JSON request whose answer has no body worth reading (sign-in with a key, a password).
pub async fn submit<B: Serialize>(method: &str, url: &str, body: &B) -> ClientResult<()> {
    let body = serde_json::to_string(body).map_err(|e| ClientError::network(e.to_string()))?;
    request(method, url, Some(body)).await.map(|_| ())
}

#[cfg(feature = "hydrate")]
thread_local! {
    static ON_UNAUTHORIZED: std::cell::RefCell<Option<std::rc::Rc<dyn Fn()>>> =
        const { std::cell::RefCell::new(None) };
}

/// What to do when a request answers 401 (the session ended, the account was disabled): the
/// session context asks the server again and shows the sign-in page. The sign-in requests
/// themselves (`/api/auth/…`) answer 401 for a wrong password and do not trigger it.
pub fn on_unauthorized(handler: impl Fn() + 'static) {
    #[cfg(feature = "hydrate")]
    ON_UNAUTHORIZED.with(|h| *h.borrow_mut() = Some(std::rc::Rc::new(handler)));
    #[cfg(not(feature = "hydrate"))]
    let _ = handler;
}

#[cfg(feature = "hydrate")]
fn unauthorized(url: &str) {
    if url.starts_with("/api/auth/") {
        return;
    }
    // Cloned out first: the handler may replace itself.
    if let Some(handler) = ON_UNAUTHORIZED.with(|h| h.borrow().clone()) {
        handler();
    }
}

#[cfg(feature = "hydrate")]
async fn request(method: &str, url: &str, body: Option<String>) -> ClientResult<String> {
    use wasm_bindgen::JsCast;
    use wasm_bindgen_futures::JsFuture;

    let init = web_sys::RequestInit::new();
    init.set_method(method);
    if let Some(body) = &body {
        init.set_body(&wasm_bindgen::JsValue::from_str(body));
        let headers =
            web_sys::Headers::new().map_err(|_| ClientError::network("cannot build headers"))?;
        let _ = headers.set("Content-Type", "application/json");
        init.set_headers(&headers);
    }
    let request = web_sys::Request::new_with_str_and_init(url, &init)
        .map_err(|_| ClientError::network("cannot build request"))?;
    let window = web_sys::window().ok_or_else(|| ClientError::network("no window"))?;
    let response = JsFuture::from(window.fetch_with_request(&request))
        .await
        .map_err(|_| ClientError::network("The server cannot be reached. Is Easel running?"))?;
    let response: web_sys::Response = response
        .dyn_into()
        .map_err(|_| ClientError::network("bad response"))?;
    let text_promise = response
        .text()
        .map_err(|_| ClientError::network("unreadable response"))?;
    let text = JsFuture::from(text_promise)
        .await
        .ok()
        .and_then(|v| v.as_string())
        .unwrap_or_default();
    if response.ok() {
        Ok(text)
    } else {
        if response.status() == 401 {
            unauthorized(url);
        }
        Err(ClientError::from_body(response.status(), &text))
    }
}

#[cfg(not(feature = "hydrate"))]
async fn request(_method: &str, _url: &str, _body: Option<String>) -> ClientResult<String> {
    Err(ClientError::network("requests are made by the browser"))
}

/// A subscription to a run's events; closes the `EventSource` when dropped.
pub struct RunEvents {
    #[cfg(feature = "hydrate")]
    source: web_sys::EventSource,
    #[cfg(feature = "hydrate")]
    _listeners: Vec<wasm_bindgen::closure::Closure<dyn FnMut(web_sys::MessageEvent)>>,
}

impl RunEvents {
    /// Calls `on_event(name, data)` for every event of a chat run; the stream ends itself after
    /// the last one.
    pub fn open(run_id: &str, on_event: impl Fn(&str, &str) + 'static) -> Option<RunEvents> {
        Self::open_url(&format!("/api/runs/{run_id}/events"), on_event)
    }

    /// The same for any run-event stream (Image Studio jobs use it too).
    #[cfg(feature = "hydrate")]
    pub fn open_url(url: &str, on_event: impl Fn(&str, &str) + 'static) -> Option<RunEvents> {
        use std::rc::Rc;
        use wasm_bindgen::closure::Closure;
        use wasm_bindgen::JsCast;

        let source = web_sys::EventSource::new(url).ok()?;
        let on_event = Rc::new(on_event);
        let mut listeners = Vec::new();
        for name in crate::api::events::ALL {
            let on_event = on_event.clone();
            let closing = source.clone();
            let terminal = matches!(
                name,
                crate::api::events::RUN_FINISHED
                    | crate::api::events::RUN_CANCELLED
                    | crate::api::events::RUN_ERROR
            );
            let listener = Closure::<dyn FnMut(web_sys::MessageEvent)>::new(
                move |e: web_sys::MessageEvent| {
                    let data = e.data().as_string().unwrap_or_default();
                    on_event(name, &data);
                    if terminal {
                        // Without this the browser reconnects after the server closes the stream.
                        closing.close();
                    }
                },
            );
            let _ =
                source.add_event_listener_with_callback(name, listener.as_ref().unchecked_ref());
            listeners.push(listener);
        }
        Some(RunEvents {
            source,
            _listeners: listeners,
        })
    }

    #[cfg(not(feature = "hydrate"))]
    pub fn open_url(_url: &str, _on_event: impl Fn(&str, &str) + 'static) -> Option<RunEvents> {
        None
    }
}

#[cfg(feature = "hydrate")]
impl Drop for RunEvents {
    fn drop(&mut self) {
        self.source.close();
    }
}

/// Moves keyboard focus to the element with this id (after a dialog closes, say).
pub fn focus(id: &str) {
    #[cfg(feature = "hydrate")]
    {
        use wasm_bindgen::JsCast;
        if let Some(el) = web_sys::window()
            .and_then(|w| w.document())
            .and_then(|d| d.get_element_by_id(id))
            .and_then(|e| e.dyn_into::<web_sys::HtmlElement>().ok())
        {
            let _ = el.focus();
        }
    }
    #[cfg(not(feature = "hydrate"))]
    let _ = id;
}
