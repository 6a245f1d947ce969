//! Cross-site safety, applied to every request before any handler runs.
//!
//! - **Host allow-list** (DNS rebinding): a page on `evil.example` that re-points its name at
//!   127.0.0.1 reaches Easel with `Host: evil.example`; such requests are refused. Allowed: the
//!   bind address, `localhost` / `127.0.0.1` / `[::1]` with the port Easel listens on, the host
//!   of `EASEL_PUBLIC_URL` and `EASEL_ALLOWED_HOSTS`.
//! - **Same origin for state changes**: any method but GET/HEAD/OPTIONS that carries an `Origin`
//!   of another site, or `Sec-Fetch-Site: cross-site`, is refused with 403 before it can change
//!   anything. Programs that send no `Origin` (curl, the OpenAI SDKs) are not affected.
//! - **CORS** stays closed unless `EASEL_CORS_ORIGINS` names origins.
//! - **Security headers**: `nosniff`, a strict referrer policy and `frame-ancestors 'none'` on
//!   every response; HTML pages get a CSP with the render's nonce (see [`page_csp`]).

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;

use axum::extract::{Request, State};
use axum::http::{header, HeaderMap, HeaderValue, Method, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};

use super::error::ApiError;
use crate::config::Config;

/// What the guard needs from the configuration, computed once.
#[derive(Debug, Clone)]
pub struct Guard {
    /// Lowercase `host[:port]` values accepted in `Host`.
    hosts: Vec<String>,
    /// Bound to every interface: any IP literal with our port is us (IP literals cannot be
    /// rebound, only names can).
    any_ip_port: Option<u16>,
    /// Bound to port 0 in a test: loopback names with any port.
    any_loopback_port: bool,
    /// Origins (`scheme://host[:port]`) allowed to send state-changing requests: our own.
    origins: Vec<String>,
    /// Origins granted CORS (`EASEL_CORS_ORIGINS`); `*` allows any.
    cors: Vec<String>,
}

impl Guard {
    pub fn from_config(config: &Config) -> Guard {
        Guard::new(
            config.addr,
            config.public_url.as_deref(),
            &config.allowed_hosts,
            &config.cors_origins,
        )
    }

    pub fn new(
        addr: SocketAddr,
        public_url: Option<&str>,
        allowed_hosts: &[String],
        cors: &[String],
    ) -> Guard {
        let port = addr.port();
        let mut hosts = Vec::new();
        let mut add = |host: String| {
            let host = host.to_ascii_lowercase();
            if !hosts.contains(&host) {
                hosts.push(host);
            }
        };
        let ip = match addr.ip() {
            IpAddr::V6(v6) => format!("[{v6}]"),
            v4 => v4.to_string(),
        };
        for name in [ip.as_str(), "localhost", "127.0.0.1", "[::1]"] {
            add(format!("{name}:{port}"));
            // Browsers leave the default port out of `Host`.
            if port == 80 {
                add(name.to_string());
            }
        }
        for host in allowed_hosts {
            add(host.trim().to_string());
        }
        let public = public_url.and_then(origin_of);
        if let Some(origin) = &public {
            if let Some((_, host)) = origin.split_once("://") {
                add(host.to_string());
            }
        }
        let mut origins: Vec<String> = Vec::new();
        for host in &hosts {
            for scheme in ["http", "https"] {
                origins.push(format!("{scheme}://{host}"));
            }
        }
        origins.extend(public);
        Guard {
            any_ip_port: addr.ip().is_unspecified().then_some(port),
            any_loopback_port: port == 0,
            hosts,
            origins,
            cors: cors
                .iter()
                .map(|o| o.trim().trim_end_matches('/').to_ascii_lowercase())
                .collect(),
        }
    }

    /// Whether `Host` names this server.
    pub fn host_allowed(&self, host: &str) -> bool {
        let host = host.trim().to_ascii_lowercase();
        if self.hosts.contains(&host) {
            return true;
        }
        let (name, port) = split_host(&host);
        if self.any_loopback_port && matches!(name, "localhost" | "127.0.0.1" | "[::1]") {
            return true;
        }
        if let (Some(ours), Some(port)) = (self.any_ip_port, port) {
            let bare = name.trim_start_matches('[').trim_end_matches(']');
            return port == ours && bare.parse::<IpAddr>().is_ok();
        }
        false
    }

    /// Whether `origin` is this server itself.
    fn same_origin(&self, origin: &str) -> bool {
        let origin = origin.trim().trim_end_matches('/').to_ascii_lowercase();
        if self.origins.contains(&origin) {
            return true;
        }
        match origin.split_once("://") {
            Some(("http" | "https", host)) => {
                // Bound to 0.0.0.0 or a test port: the Host rules decide.
                (self.any_ip_port.is_some() || self.any_loopback_port) && self.host_allowed(host)
            }
            _ => false,
        }
    }

    fn cors_allowed(&self, origin: &str) -> bool {
        let origin = origin.trim().trim_end_matches('/').to_ascii_lowercase();
        self.cors.iter().any(|o| o == "*" || *o == origin)
    }
}

/// `https://Example.com:8443/path` → `https://example.com:8443`.
fn origin_of(url: &str) -> Option<String> {
    let (scheme, rest) = url.trim().split_once("://")?;
    let host = rest.split(['/', '?', '#']).next()?.to_ascii_lowercase();
    let scheme = scheme.to_ascii_lowercase();
    if host.is_empty() || !matches!(scheme.as_str(), "http" | "https") {
        return None;
    }
    let host = match (scheme.as_str(), host.rsplit_once(':')) {
        ("http", Some((h, "80"))) | ("https", Some((h, "443"))) => h.to_string(),
        _ => host,
    };
    Some(format!("{scheme}://{host}"))
}

/// `example.com:80` → (`example.com`, Some(80)); `[::1]:3000` → (`[::1]`, Some(3000)).
fn split_host(host: &str) -> (&str, Option<u16>) {
    if let Some(end) = host.rfind(']') {
        let (name, rest) = host.split_at(end + 1);
        return (name, rest.strip_prefix(':').and_then(|p| p.parse().ok()));
    }
    match host.rsplit_once(':') {
        Some((name, port)) => (name, port.parse().ok()),
        None => (host, None),
    }
}

/// The middleware: refuses foreign hosts and cross-site state changes, answers CORS, and adds
/// the security headers.
pub async fn protect(State(guard): State<Arc<Guard>>, request: Request, next: Next) -> Response {
    let openai = request.uri().path().starts_with("/v1");
    let headers = request.headers();
    let host = headers
        .get(header::HOST)
        .and_then(|v| v.to_str().ok())
        .or_else(|| request.uri().authority().map(|a| a.as_str()))
        .unwrap_or("");
    if !guard.host_allowed(host) {
        return secured(refuse(
            openai,
            "forbidden_host",
            "This server does not answer to that host name. Set EASEL_ALLOWED_HOSTS or EASEL_PUBLIC_URL to serve it.",
        ));
    }
    let origin = headers
        .get(header::ORIGIN)
        .and_then(|v| v.to_str().ok())
        .map(str::to_string);
    let cors_origin = origin
        .as_deref()
        .filter(|o| guard.cors_allowed(o))
        .map(str::to_string);
    if request.method() == Method::OPTIONS && cors_origin.is_some() {
        return secured(preflight(
            cors_origin.as_deref().unwrap_or_default(),
            headers,
        ));
    }
    if changes_state(request.method()) {
        let cross_site = headers
            .get("sec-fetch-site")
            .and_then(|v| v.to_str().ok())
            .is_some_and(|v| v.eq_ignore_ascii_case("cross-site"));
        let foreign = match &origin {
            Some(o) => !guard.same_origin(o) && cors_origin.is_none(),
            None => false,
        };
        if foreign || (cross_site && cors_origin.is_none()) {
            return secured(refuse(
                openai,
                "cross_origin",
                "Requests that change data must come from Easel's own pages (another site sent this one).",
            ));
        }
    }
    let mut response = next.run(request).await;
    if let Some(origin) = cors_origin {
        if let Ok(v) = HeaderValue::from_str(&origin) {
            let h = response.headers_mut();
            h.insert(header::ACCESS_CONTROL_ALLOW_ORIGIN, v);
            h.insert(header::VARY, HeaderValue::from_static("Origin"));
        }
    }
    secured(response)
}

fn changes_state(method: &Method) -> bool {
    !matches!(*method, Method::GET | Method::HEAD | Method::OPTIONS)
}

fn refuse(openai: bool, code: &str, message: &str) -> Response {
    if openai {
        let body = serde_json::json!({"error": {"message": message, "type": "invalid_request_error", "param": null, "code": code}});
        (StatusCode::FORBIDDEN, axum::Json(body)).into_response()
    } else {
        ApiError::new(StatusCode::FORBIDDEN, code, message).into_response()
    }
}

fn preflight(origin: &str, headers: &HeaderMap) -> Response {
    let mut response = StatusCode::NO_CONTENT.into_response();
    let h = response.headers_mut();
    if let Ok(v) = HeaderValue::from_str(origin) {
        h.insert(header::ACCESS_CONTROL_ALLOW_ORIGIN, v);
    }
    h.insert(
        header::ACCESS_CONTROL_ALLOW_METHODS,
        HeaderValue::from_static("GET, POST, PUT, PATCH, DELETE, OPTIONS"),
    );
    let asked = headers
        .get(header::ACCESS_CONTROL_REQUEST_HEADERS)
        .cloned()
        .unwrap_or_else(|| HeaderValue::from_static("authorization, content-type"));
    h.insert(header::ACCESS_CONTROL_ALLOW_HEADERS, asked);
    h.insert(
        header::ACCESS_CONTROL_MAX_AGE,
        HeaderValue::from_static("600"),
    );
    h.insert(header::VARY, HeaderValue::from_static("Origin"));
    response
}

/// The policy of Easel's pages: its own scripts (the render's nonce for Leptos's inline
/// hydration scripts), wasm, its own styles, images from itself or `data:`/`blob:` (previews,
/// the mask editor), nothing remote, never framed.
pub fn page_csp(nonce: Option<&str>) -> String {
    let script = match nonce {
        Some(n) => format!("'self' 'nonce-{n}' 'wasm-unsafe-eval'"),
        None => "'self' 'wasm-unsafe-eval'".to_string(),
    };
    format!(
        "default-src 'self'; script-src {script}; style-src 'self' 'unsafe-inline'; \
         img-src 'self' data: blob:; connect-src 'self'; font-src 'self'; object-src 'none'; \
         base-uri 'none'; form-action 'self'; frame-ancestors 'none'"
    )
}

/// Headers every response carries; HTML without a policy of its own (error pages) gets the
/// strict one.
fn secured(mut response: Response) -> Response {
    let h = response.headers_mut();
    h.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    h.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("no-referrer"),
    );
    h.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    let html = h
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("text/html"));
    if !h.contains_key(header::CONTENT_SECURITY_POLICY) {
        let policy = if html {
            page_csp(None)
        } else {
            "default-src 'none'; frame-ancestors 'none'; sandbox".to_string()
        };
        if let Ok(v) = HeaderValue::from_str(&policy) {
            h.insert(header::CONTENT_SECURITY_POLICY, v);
        }
    }
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    fn guard(addr: &str) -> Guard {
        Guard::new(addr.parse().unwrap(), None, &[], &[])
    }

    #[test]
    fn loopback_names_with_our_port_are_allowed_and_others_are_not() {
        let g = guard("127.0.0.1:3000");
        for ok in [
            "127.0.0.1:3000",
            "localhost:3000",
            "LOCALHOST:3000",
            "[::1]:3000",
        ] {
            assert!(g.host_allowed(ok), "{ok}");
        }
        for bad in [
            "evil.example",
            "evil.example:3000",
            "localhost:3001",
            "127.0.0.1",
            "10.0.0.1:3000",
            "",
            "localhost.evil.example:3000",
        ] {
            assert!(!g.host_allowed(bad), "{bad}");
        }
    }

    #[test]
    fn configured_and_public_hosts_are_allowed() {
        let g = Guard::new(
            "0.0.0.0:8080".parse().unwrap(),
            Some("https://easel.example.com/"),
            &["Studio.LAN:8080".into()],
            &[],
        );
        assert!(g.host_allowed("easel.example.com"));
        assert!(g.host_allowed("studio.lan:8080"));
        assert!(
            g.host_allowed("192.168.1.20:8080"),
            "any IP literal on 0.0.0.0"
        );
        assert!(!g.host_allowed("192.168.1.20:9090"));
        assert!(!g.host_allowed("rebind.evil.example:8080"));
        assert!(g.same_origin("https://easel.example.com"));
        assert!(!g.same_origin("https://evil.example"));
    }

    #[test]
    fn only_our_own_origins_are_same_origin() {
        let g = guard("127.0.0.1:3000");
        assert!(g.same_origin("http://127.0.0.1:3000"));
        assert!(g.same_origin("http://localhost:3000/"));
        assert!(!g.same_origin("http://localhost:3001"));
        assert!(!g.same_origin("null"));
        assert!(!g.same_origin("http://evil.example"));
    }

    #[test]
    fn origins_drop_default_ports() {
        assert_eq!(
            origin_of("https://Example.com:443/x").as_deref(),
            Some("https://example.com")
        );
        assert_eq!(
            origin_of("http://example.com:8080").as_deref(),
            Some("http://example.com:8080")
        );
        assert_eq!(origin_of("ftp://x"), None);
    }
}
