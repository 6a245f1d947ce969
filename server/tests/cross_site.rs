//! No other site can drive Easel. Every route is taken from the router's own table
//! (`easel::http::route_table`), so a route added later is covered without editing this file:
//! every state-changing route refuses a foreign `Origin` and `Sec-Fetch-Site: cross-site` with
//! 403 and changes nothing, every route refuses a foreign `Host`, programs without `Origin`
//! keep working, and pages carry the security headers.

mod common;

use common::Setup;
use reqwest::Method;
use serde_json::json;

/// A path with its `{…}` parameters filled with ids of real rows.
fn fill(path: &str, ids: &serde_json::Value) -> String {
    let mut out = path.to_string();
    for (name, value) in [
        ("{id}", ids["id"].as_str().unwrap()),
        ("{file}", ids["file"].as_str().unwrap()),
    ] {
        out = out.replace(name, value);
    }
    out
}

async fn counts(s: &common::TestServer) -> (usize, usize, usize) {
    let (_, conversations) = s.get("/api/conversations").await;
    let (_, agents) = s.get("/api/agents").await;
    let (_, gallery) = s.get("/api/studio/images").await;
    (
        conversations.as_array().map_or(0, Vec::len),
        agents.as_array().map_or(0, Vec::len),
        gallery.as_array().map_or(0, Vec::len),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cross_site_requests_are_refused_on_every_state_changing_route() {
    let s = Setup::default().models().start().await;
    let conversation = s.conversation(true).await;
    let (_, agent) = s
        .send("POST", "/api/agents", json!({"name": "Painter"}))
        .await;
    let ids = json!({"id": conversation, "file": format!("{}.png", agent["id"].as_str().unwrap())});
    let before = counts(&s).await;

    let table = easel::http::route_table();
    let changing: Vec<_> = table
        .iter()
        .filter(|r| ![Method::GET, Method::HEAD, Method::OPTIONS].contains(&r.method))
        .collect();
    assert!(
        changing.len() >= 15,
        "the table lists the routes: {changing:?}"
    );
    for route in &changing {
        let url = s.url(&fill(&route.path, &ids));
        for (header, value) in [
            ("origin", "http://evil.example"),
            ("origin", "null"),
            ("origin", "http://localhost:1"),
            ("sec-fetch-site", "cross-site"),
        ] {
            let r = s
                .client
                .request(route.method.clone(), &url)
                .header(header, value)
                .header("content-type", "application/json")
                .body(json!({"content": "hi", "prompt": "x", "name": "n", "key": "k"}).to_string())
                .send()
                .await
                .unwrap();
            assert_eq!(
                r.status(),
                403,
                "{} {} with {header}: {value}",
                route.method,
                route.path
            );
        }
    }
    assert_eq!(counts(&s).await, before, "nothing changed");

    // A multipart edit from another site is refused too (it needs no preflight in browsers).
    let form = reqwest::multipart::Form::new()
        .text("prompt", "x")
        .part("image", reqwest::multipart::Part::bytes(vec![1, 2, 3]));
    let r = s
        .client
        .post(s.url("/v1/images/edits"))
        .header("origin", "http://evil.example")
        .multipart(form)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 403);
    let body: serde_json::Value = r.json().await.unwrap();
    assert_eq!(
        body["error"]["code"], "cross_origin",
        "OpenAI's shape on /v1"
    );

    // Our own origin and programs without one still work.
    for origin in [Some(s.base.clone()), None] {
        let mut request = s.client.post(s.url("/api/conversations")).json(&json!({}));
        if let Some(o) = &origin {
            request = request.header("origin", o);
        }
        assert_eq!(request.send().await.unwrap().status(), 201, "{origin:?}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_foreign_host_is_refused_on_every_route_and_page() {
    let s = Setup::default().start().await;
    let ids = json!({"id": "0190a0a0-0000-7000-8000-000000000001", "file": "0190a0a0-0000-7000-8000-000000000001.png"});
    let mut paths: Vec<(Method, String)> = easel::http::route_table()
        .iter()
        .map(|r| (r.method.clone(), fill(&r.path, &ids)))
        .collect();
    paths.push((Method::GET, "/".into()));
    paths.push((Method::GET, "/studio".into()));
    paths.push((Method::GET, "/easel.css".into()));
    for (method, path) in paths {
        for host in [
            "evil.example",
            "evil.example:80",
            "localhost.evil.example",
            "127.0.0.2",
        ] {
            let r = s
                .client
                .request(method.clone(), s.url(&path))
                .header("host", host)
                .send()
                .await
                .unwrap();
            assert_eq!(r.status(), 403, "{method} {path} with Host {host}");
        }
    }
    // The names Easel serves.
    for host in [
        format!("127.0.0.1:{}", s.addr.port()),
        format!("localhost:{}", s.addr.port()),
    ] {
        let r = s
            .client
            .get(s.url("/api/health"))
            .header("host", host.as_str())
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200, "{host}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pages_carry_a_strict_policy_and_api_answers_are_not_sniffed() {
    let s = Setup::default().start().await;
    let page = s.client.get(s.url("/")).send().await.unwrap();
    let headers = page.headers().clone();
    let csp = headers["content-security-policy"].to_str().unwrap();
    assert!(csp.contains("frame-ancestors 'none'"), "{csp}");
    assert!(
        csp.contains("'nonce-"),
        "Leptos's inline scripts run by nonce: {csp}"
    );
    let script = csp
        .split(';')
        .find(|d| d.trim().starts_with("script-src"))
        .unwrap();
    assert!(
        !script.contains("unsafe-inline") && !script.contains('*'),
        "{csp}"
    );
    assert!(!script.contains("http"), "no remote scripts: {csp}");
    assert!(csp.contains("img-src 'self' data: blob:"), "{csp}");
    assert_eq!(headers["x-content-type-options"], "nosniff");
    assert_eq!(headers["referrer-policy"], "no-referrer");
    let nonce = csp
        .split("'nonce-")
        .nth(1)
        .unwrap()
        .split('\'')
        .next()
        .unwrap();
    let html = page.text().await.unwrap();
    assert!(
        html.contains(&format!("nonce=\"{nonce}\"")),
        "the page's scripts carry the nonce"
    );

    let api = s.client.get(s.url("/api/health")).send().await.unwrap();
    assert_eq!(api.headers()["x-content-type-options"], "nosniff");
    // CORS stays closed unless configured.
    let r = s
        .client
        .get(s.url("/api/health"))
        .header("origin", "http://evil.example")
        .send()
        .await
        .unwrap();
    assert!(r.headers().get("access-control-allow-origin").is_none());
}
