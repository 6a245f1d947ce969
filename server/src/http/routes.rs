//! The route table: every API route is declared here through [`Routes`], which both builds the
//! axum router and records `(method, path, family, body limit)`. Tests that must cover "every
//! route" (bad input, cross-site, isolation) list the routes from [`super::route_table`], so a
//! new route cannot slip past them.
//!
//! Each route also gets its body limit enforced before its handler reads a byte: a declared
//! `Content-Length` over the limit is answered 413 at once, and a body without one is cut off
//! at the limit (the extractor then answers 413). Both answers use the route family's error shape.
//! Any answer given before the body was read to its end says `Connection: close`, as hyper
//! then closes the connection.

use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use axum::body::Body;
use axum::extract::{DefaultBodyLimit, Request, State};
use axum::handler::Handler;
use http_body::{Body as HttpBody, Frame, SizeHint};

use axum::http::{header, HeaderValue, Method, StatusCode};
use axum::middleware::{from_fn_with_state, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{on, MethodFilter};
use axum::Router;
use futures_util::StreamExt;

use super::error::ApiError;
use super::AppState;

/// Which error shape a route answers with.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Family {
    /// Easel's own `/api`: `{"error": {"code", "message"}}`.
    Api,
    /// `/v1`: OpenAI's `{"error": {"message", "type", "param", "code"}}`.
    OpenAi,
}

/// One declared route.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RouteInfo {
    pub method: Method,
    /// The full path template, e.g. `/api/conversations/{id}`.
    pub path: String,
    pub family: Family,
    pub body_limit: usize,
}

/// Bodies of ordinary JSON requests.
pub const JSON_LIMIT: usize = app::api::limits::JSON_BODY_MAX_BYTES;

/// A family's routes under one prefix, with their table.
pub struct Routes {
    family: Family,
    prefix: &'static str,
    router: Router<AppState>,
    table: Vec<RouteInfo>,
}

impl Routes {
    pub fn new(family: Family, prefix: &'static str) -> Routes {
        Routes {
            family,
            prefix,
            router: Router::new(),
            table: Vec::new(),
        }
    }

    pub fn get<H: Handler<T, AppState>, T: 'static>(self, path: &'static str, h: H) -> Self {
        self.add(Method::GET, path, h, JSON_LIMIT)
    }

    pub fn post<H: Handler<T, AppState>, T: 'static>(self, path: &'static str, h: H) -> Self {
        self.add(Method::POST, path, h, JSON_LIMIT)
    }

    pub fn put<H: Handler<T, AppState>, T: 'static>(self, path: &'static str, h: H) -> Self {
        self.add(Method::PUT, path, h, JSON_LIMIT)
    }

    pub fn patch<H: Handler<T, AppState>, T: 'static>(self, path: &'static str, h: H) -> Self {
        self.add(Method::PATCH, path, h, JSON_LIMIT)
    }

    pub fn delete<H: Handler<T, AppState>, T: 'static>(self, path: &'static str, h: H) -> Self {
        self.add(Method::DELETE, path, h, JSON_LIMIT)
    }

    /// A POST whose body may be larger than a JSON request (uploads, imports).
    pub fn post_large<H: Handler<T, AppState>, T: 'static>(
        self,
        path: &'static str,
        h: H,
        limit: usize,
    ) -> Self {
        self.add(Method::POST, path, h, limit)
    }

    fn add<H: Handler<T, AppState>, T: 'static>(
        mut self,
        method: Method,
        path: &'static str,
        handler: H,
        limit: usize,
    ) -> Self {
        let filter = MethodFilter::try_from(method.clone()).unwrap_or(MethodFilter::GET);
        let policy = BodyPolicy {
            limit,
            family: self.family,
        };
        let endpoint = on(filter, handler)
            // Our limit below replaces axum's 2 MB default for extractors.
            .layer(DefaultBodyLimit::disable())
            .layer(from_fn_with_state(policy, limit_body));
        self.router = self.router.route(path, endpoint);
        self.table.push(RouteInfo {
            method,
            path: format!("{}{path}", self.prefix),
            family: self.family,
            body_limit: limit,
        });
        self
    }

    pub fn merge(mut self, other: Routes) -> Self {
        self.router = self.router.merge(other.router);
        self.table.extend(other.table);
        self
    }

    pub fn into_parts(self) -> (Router<AppState>, Vec<RouteInfo>) {
        (self.router, self.table)
    }
}

#[derive(Debug, Clone, Copy)]
struct BodyPolicy {
    limit: usize,
    family: Family,
}

/// A body declared over the limit is read and thrown away up to this much before the 413 is
/// sent, so the client (still sending) reads the answer instead of a reset connection.
/// Anything larger is answered at once and the connection closed.
const DRAIN_AT_MOST: u64 = 64 * 1024 * 1024;
/// Draining stops when the client pauses this long.
const DRAIN_IDLE: Duration = Duration::from_secs(2);

async fn limit_body(State(policy): State<BodyPolicy>, request: Request, next: Next) -> Response {
    let declared = request
        .headers()
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().parse::<u64>().ok());
    if let Some(length) = declared.filter(|len| *len > policy.limit as u64) {
        if length <= DRAIN_AT_MOST {
            drain(request.into_body()).await;
        }
        let mut response = too_large(policy.family, policy.limit);
        response
            .headers_mut()
            .insert(header::CONNECTION, HeaderValue::from_static("close"));
        return response;
    }
    let (parts, body) = request.into_parts();
    let (body, read_to_end) = Tracked::new(http_body_util::Limited::new(body, policy.limit));
    let mut response = next.run(Request::from_parts(parts, Body::new(body))).await;
    // Answered without reading the whole body (refused on its headers, its query or its
    // content type): hyper closes such a connection after the answer. Saying so lets a client
    // with a connection pool open a new one instead of sending its next request into the
    // closing one (which then gets no answer).
    if !read_to_end.load(Ordering::Relaxed) {
        response
            .headers_mut()
            .insert(header::CONNECTION, HeaderValue::from_static("close"));
    }
    response
}

/// A request body that notes when it has been read to its end (an empty one has been).
struct Tracked<B> {
    inner: B,
    read_to_end: Arc<AtomicBool>,
}

impl<B: HttpBody + Unpin> Tracked<B> {
    fn new(inner: B) -> (Tracked<B>, Arc<AtomicBool>) {
        let read_to_end = Arc::new(AtomicBool::new(inner.is_end_stream()));
        let tracked = Tracked {
            inner,
            read_to_end: read_to_end.clone(),
        };
        (tracked, read_to_end)
    }
}

impl<B: HttpBody + Unpin> HttpBody for Tracked<B> {
    type Data = B::Data;
    type Error = B::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<B::Data>, B::Error>>> {
        let polled = Pin::new(&mut self.inner).poll_frame(cx);
        // A reader may stop after the last bytes without asking for the end.
        if matches!(polled, Poll::Ready(None)) || self.inner.is_end_stream() {
            self.read_to_end.store(true, Ordering::Relaxed);
        }
        polled
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

/// Reads a body and drops it (at most [`DRAIN_AT_MOST`], stopping when the client pauses), so
/// a client still sending reads the answer instead of a reset connection.
async fn drain(body: Body) {
    let mut body = body.into_data_stream();
    let mut read = 0u64;
    while let Ok(Some(Ok(chunk))) = tokio::time::timeout(DRAIN_IDLE, body.next()).await {
        read += chunk.len() as u64;
        if read > DRAIN_AT_MOST {
            break;
        }
    }
}

/// A route asked with a method it does not have: 405 in the family's shape, after reading
/// the body the client may still be sending (a 405 sent mid-upload would reset it).
pub async fn method_not_allowed(family: Family, request: Request) -> Response {
    drain(request.into_body()).await;
    let message = "This route does not take that method.";
    let mut response = match family {
        Family::Api => ApiError::new(
            StatusCode::METHOD_NOT_ALLOWED,
            "method_not_allowed",
            message,
        )
        .into_response(),
        Family::OpenAi => {
            let body = serde_json::json!({"error": {"message": message, "type": "invalid_request_error", "param": null, "code": "method_not_allowed"}});
            (StatusCode::METHOD_NOT_ALLOWED, axum::Json(body)).into_response()
        }
    };
    response
        .headers_mut()
        .insert(header::CONNECTION, HeaderValue::from_static("close"));
    response
}

/// 413 in the family's shape.
pub fn too_large(family: Family, limit: usize) -> Response {
    let message = format!("The request body is larger than this route accepts ({limit} bytes).");
    match family {
        Family::Api => ApiError::new(StatusCode::PAYLOAD_TOO_LARGE, "payload_too_large", message)
            .into_response(),
        Family::OpenAi => {
            let body = serde_json::json!({"error": {"message": message, "type": "invalid_request_error", "param": null, "code": "payload_too_large"}});
            (StatusCode::PAYLOAD_TOO_LARGE, axum::Json(body)).into_response()
        }
    }
}
