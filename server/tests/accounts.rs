//! Accounts: the first admin, sign-in and its rate limit, sign-up by registration mode, sessions
//! and API keys, admin routes, per-user isolation on every route of the router's table, shared
//! agents, and credits (the cost shown before, the balance after, never negative).

mod common;

use common::{data_of, Reply, ScriptedLlm, Setup, TestServer};
use futures_util::future::join_all;
use reqwest::Method;
use serde_json::{json, Value};

/// A signed-in browser (its session cookie) or a program (its key).
#[derive(Clone)]
struct Who {
    header: (&'static str, String),
}

impl Who {
    /// An HTTP client that sends this identity with every request (for event streams).
    fn client(&self) -> reqwest::Client {
        let mut headers = reqwest::header::HeaderMap::new();
        headers.insert(self.header.0, self.header.1.parse().unwrap());
        reqwest::Client::builder()
            .default_headers(headers)
            .build()
            .unwrap()
    }

    async fn call(
        &self,
        s: &TestServer,
        method: &str,
        path: &str,
        body: Option<Value>,
    ) -> (u16, Value) {
        let method = Method::from_bytes(method.as_bytes()).unwrap();
        let mut r = s
            .client
            .request(method, s.url(path))
            .header(self.header.0, &self.header.1);
        if let Some(b) = body {
            r = r.json(&b);
        }
        let r = r.send().await.unwrap();
        let status = r.status().as_u16();
        (status, r.json().await.unwrap_or(Value::Null))
    }
}

fn cookie_of(r: &reqwest::Response) -> String {
    r.headers()["set-cookie"]
        .to_str()
        .unwrap()
        .split(';')
        .next()
        .unwrap()
        .to_string()
}

async fn post(s: &TestServer, path: &str, body: Value) -> reqwest::Response {
    s.client.post(s.url(path)).json(&body).send().await.unwrap()
}

async fn accounts() -> TestServer {
    Setup {
        auth: "accounts",
        ..Setup::default().models()
    }
    .start()
    .await
}

/// Creates the admin (first run) and returns its session.
async fn admin(s: &TestServer) -> Who {
    let r = post(
        s,
        "/api/auth/setup",
        json!({"email": "Admin@Example.com", "password": "admin password", "name": "Ada"}),
    )
    .await;
    assert_eq!(r.status(), 201);
    Who {
        header: ("cookie", cookie_of(&r)),
    }
}

/// An admin-made account, signed in.
async fn user(s: &TestServer, admin: &Who, email: &str) -> Who {
    let (status, body) = admin
        .call(
            s,
            "POST",
            "/api/admin/users",
            Some(json!({"email": email, "password": "user password", "name": email})),
        )
        .await;
    assert_eq!(status, 201, "{body}");
    let r = post(
        s,
        "/api/auth/login",
        json!({"email": email, "password": "user password"}),
    )
    .await;
    assert_eq!(r.status(), 200);
    Who {
        header: ("cookie", cookie_of(&r)),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_first_visit_creates_the_admin_and_nothing_else_answers_before() {
    let s = accounts().await;
    let (_, status) = s.get("/api/auth/status").await;
    assert_eq!(status["mode"], "accounts");
    assert_eq!(status["setup_needed"], true);
    for path in [
        "/api/conversations",
        "/api/agents",
        "/api/studio/images",
        "/api/me",
    ] {
        let (code, body) = s.get(path).await;
        assert_eq!(code, 401, "{path}: {body}");
    }
    let r = post(&s, "/v1/images/generations", json!({"prompt": "x"})).await;
    assert_eq!(r.status(), 401);
    let a = admin(&s).await;
    let (status, me) = a.call(&s, "GET", "/api/me", None).await;
    assert_eq!(status, 200);
    assert_eq!(me["email"], "admin@example.com", "emails are normalised");
    assert_eq!(me["role"], "admin");
    assert_eq!(me["credits"]["enabled"], false);
    let (_, users) = a.call(&s, "GET", "/api/admin/users", None).await;
    let created = users.as_array().unwrap()[0]["created_at"]
        .as_str()
        .unwrap()
        .to_string();
    assert!(
        !created.starts_with("1970"),
        "the admin is made now: {created}"
    );
    let again = post(
        &s,
        "/api/auth/setup",
        json!({"email": "b@example.com", "password": "another one"}),
    )
    .await;
    assert_eq!(again.status(), 409);
    let (_, status) = s.get("/api/auth/status").await;
    assert_eq!(status["setup_needed"], false);
    assert_eq!(status["registration"], "closed");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sign_in_has_one_message_for_any_wrong_pair_and_a_rate_limit() {
    let s = accounts().await;
    let _a = admin(&s).await;
    let wrong_password = post(
        &s,
        "/api/auth/login",
        json!({"email": "admin@example.com", "password": "nope nope"}),
    )
    .await;
    assert_eq!(wrong_password.status(), 401);
    let m1: Value = wrong_password.json().await.unwrap();
    let unknown = post(
        &s,
        "/api/auth/login",
        json!({"email": "nobody@example.com", "password": "nope nope"}),
    )
    .await;
    assert_eq!(unknown.status(), 401);
    let m2: Value = unknown.json().await.unwrap();
    assert_eq!(m1, m2, "the answer does not tell which was wrong");
    // Five failures for one account lock it for a while, even with the right password.
    for _ in 0..4 {
        post(
            &s,
            "/api/auth/login",
            json!({"email": "admin@example.com", "password": "wrong again"}),
        )
        .await;
    }
    let locked = post(
        &s,
        "/api/auth/login",
        json!({"email": "admin@example.com", "password": "admin password"}),
    )
    .await;
    assert_eq!(locked.status(), 429);
    let wait: u64 = locked.headers()["retry-after"]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!((1..=60).contains(&wait), "{wait}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn registration_modes_decide_who_may_sign_up() {
    let s = accounts().await;
    let a = admin(&s).await;
    let form = |email: &str| json!({"email": email, "password": "a good password", "name": "New"});
    assert_eq!(
        post(&s, "/api/auth/signup", form("c@example.com"))
            .await
            .status(),
        403,
        "closed by default"
    );
    a.call(
        &s,
        "PUT",
        "/api/admin/settings",
        Some(json!({"registration": "open"})),
    )
    .await;
    let open = post(&s, "/api/auth/signup", form("o@example.com")).await;
    assert_eq!(open.status(), 201);
    assert!(
        open.headers().get("set-cookie").is_some(),
        "signed in at once"
    );
    a.call(
        &s,
        "PUT",
        "/api/admin/settings",
        Some(json!({"registration": "approval"})),
    )
    .await;
    let pending = post(&s, "/api/auth/signup", form("p@example.com")).await;
    assert_eq!(pending.status(), 202);
    let login = post(
        &s,
        "/api/auth/login",
        json!({"email": "p@example.com", "password": "a good password"}),
    )
    .await;
    assert_eq!(login.status(), 403, "waits for approval");
    let (_, users) = a.call(&s, "GET", "/api/admin/users", None).await;
    let p = users
        .as_array()
        .unwrap()
        .iter()
        .find(|u| u["email"] == "p@example.com")
        .unwrap()
        .clone();
    assert_eq!(p["pending"], true);
    let id = p["id"].as_str().unwrap();
    let (status, _) = a
        .call(
            &s,
            "PATCH",
            &format!("/api/admin/users/{id}"),
            Some(json!({"disabled": false})),
        )
        .await;
    assert_eq!(status, 200);
    let login = post(
        &s,
        "/api/auth/login",
        json!({"email": "p@example.com", "password": "a good password"}),
    )
    .await;
    assert_eq!(login.status(), 200, "approved");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sessions_keys_and_disabling() {
    let s = accounts().await;
    let a = admin(&s).await;
    let b = user(&s, &a, "b@example.com").await;
    // A second session of B, then B changes the password: the other session ends.
    let other = post(
        &s,
        "/api/auth/login",
        json!({"email": "b@example.com", "password": "user password"}),
    )
    .await;
    let other = Who {
        header: ("cookie", cookie_of(&other)),
    };
    let (status, _) = b
        .call(
            &s,
            "POST",
            "/api/me/password",
            Some(json!({"current": "user password", "new": "a new password"})),
        )
        .await;
    assert_eq!(status, 204);
    assert_eq!(other.call(&s, "GET", "/api/me", None).await.0, 401);
    assert_eq!(
        b.call(&s, "GET", "/api/me", None).await.0,
        200,
        "this session stays"
    );

    // A key is shown once, listed by prefix, works on /api and /v1, and can be revoked.
    let (status, created) = b
        .call(&s, "POST", "/api/keys", Some(json!({"name": "laptop"})))
        .await;
    assert_eq!(status, 201);
    let key = created["key"].as_str().unwrap().to_string();
    assert!(key.starts_with(created["prefix"].as_str().unwrap()));
    let (_, list) = b.call(&s, "GET", "/api/keys", None).await;
    assert_eq!(list[0]["name"], "laptop");
    assert!(list[0].get("key").is_none(), "never shown again");
    let program = Who {
        header: ("authorization", format!("Bearer {key}")),
    };
    assert_eq!(
        program.call(&s, "GET", "/api/conversations", None).await.0,
        200
    );
    assert_eq!(program.call(&s, "GET", "/v1/models", None).await.0, 200);
    let (_, list) = b.call(&s, "GET", "/api/keys", None).await;
    assert!(list[0]["last_used_at"].is_string());
    let (status, expired) = b
        .call(
            &s,
            "POST",
            "/api/keys",
            Some(json!({"name": "old", "expires_at": "2020-01-01"})),
        )
        .await;
    assert_eq!(status, 201);
    let old = Who {
        header: (
            "authorization",
            format!("Bearer {}", expired["key"].as_str().unwrap()),
        ),
    };
    assert_eq!(old.call(&s, "GET", "/api/me", None).await.0, 401, "expired");

    // Disabling B ends B's sessions and keys at once.
    let (_, me) = b.call(&s, "GET", "/api/me", None).await;
    let id = me["id"].as_str().unwrap();
    let (status, _) = a
        .call(
            &s,
            "PATCH",
            &format!("/api/admin/users/{id}"),
            Some(json!({"disabled": true})),
        )
        .await;
    assert_eq!(status, 200);
    assert_eq!(b.call(&s, "GET", "/api/me", None).await.0, 401);
    assert_eq!(program.call(&s, "GET", "/api/me", None).await.0, 401);
    let login = post(
        &s,
        "/api/auth/login",
        json!({"email": "b@example.com", "password": "a new password"}),
    )
    .await;
    assert_eq!(login.status(), 403);
    // Admin routes do not exist for others.
    let c = user(&s, &a, "c@example.com").await;
    for path in [
        "/api/admin/users",
        "/api/admin/settings",
        "/api/admin/usage",
    ] {
        assert_eq!(c.call(&s, "GET", path, None).await.0, 404, "{path}");
    }
    // "Get a model": everyone sees the download's progress; only admins start one.
    let (status, download) = c.call(&s, "GET", "/api/models/download", None).await;
    assert_eq!((status, &download["can_start"]), (200, &json!(false)));
    let (status, _) = c
        .call(&s, "POST", "/api/models/download", Some(json!({})))
        .await;
    assert_eq!(status, 404);
    let (_, download) = a.call(&s, "GET", "/api/models/download", None).await;
    assert_eq!(download["can_start"], true);
    // The last admin cannot be demoted.
    let (_, me) = a.call(&s, "GET", "/api/me", None).await;
    let (status, _) = a
        .call(
            &s,
            "PATCH",
            &format!("/api/admin/users/{}", me["id"].as_str().unwrap()),
            Some(json!({"role": "user"})),
        )
        .await;
    assert_eq!(status, 409);
}

/// User A's resources of every kind, to aim user B's requests at.
struct Owned {
    conversation: String,
    message: String,
    run: String,
    image: String,
    agent: String,
    job: String,
    key: String,
    user: String,
}

async fn make_everything(s: &TestServer, a: &Who) -> Owned {
    let (_, c) = a
        .call(
            s,
            "POST",
            "/api/conversations",
            Some(json!({"internal_tools": {"image_creation": true}})),
        )
        .await;
    let conversation = c["id"].as_str().unwrap().to_string();
    let (_, said) = a
        .call(
            s,
            "POST",
            &format!("/api/conversations/{conversation}/messages"),
            Some(json!({"content": "a red fox"})),
        )
        .await;
    let run = said["run_id"].as_str().unwrap().to_string();
    let message = said["assistant_message_id"].as_str().unwrap().to_string();
    // Wait for the reply (the direct provider paints the message).
    for _ in 0..200 {
        let (_, d) = a
            .call(
                s,
                "GET",
                &format!("/api/conversations/{conversation}?images=url"),
                None,
            )
            .await;
        if d["messages"]
            .as_array()
            .is_some_and(|m| m.len() == 2 && m[1]["status"] != "running")
        {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    let (_, d) = a
        .call(
            s,
            "GET",
            &format!("/api/conversations/{conversation}?images=url"),
            None,
        )
        .await;
    let image = d["messages"][1]["images"][0]["id"]
        .as_str()
        .unwrap()
        .to_string();
    let (_, agent) = a
        .call(s, "POST", "/api/agents", Some(json!({"name": "Private"})))
        .await;
    let (_, job) = a
        .call(
            s,
            "POST",
            "/api/studio/generations",
            Some(json!({"prompt": "a cat"})),
        )
        .await;
    let (_, key) = a
        .call(s, "POST", "/api/keys", Some(json!({"name": "a's key"})))
        .await;
    let (_, me) = a.call(s, "GET", "/api/me", None).await;
    Owned {
        conversation,
        message,
        run,
        image,
        agent: agent["id"].as_str().unwrap().to_string(),
        job: job["job_id"].as_str().unwrap().to_string(),
        key: key["id"].as_str().unwrap().to_string(),
        user: me["id"].as_str().unwrap().to_string(),
    }
}

/// The id of A's resource a route's `{id}` / `{file}` names.
fn aim(path: &str, a: &Owned) -> String {
    let id = if path.starts_with("/api/conversations") {
        &a.conversation
    } else if path.starts_with("/api/messages") {
        &a.message
    } else if path.starts_with("/api/runs") {
        &a.run
    } else if path.starts_with("/api/images") || path.starts_with("/api/studio/images") {
        &a.image
    } else if path.starts_with("/api/agents") {
        &a.agent
    } else if path.starts_with("/api/studio/jobs") {
        &a.job
    } else if path.starts_with("/api/keys") {
        &a.key
    } else if path.starts_with("/api/admin/users") {
        &a.user
    } else {
        &a.conversation
    };
    let file = if path.contains("{file}") {
        format!("{id}.png")
    } else {
        id.clone()
    };
    path.replace("{id}", id).replace("{file}", &file)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn another_users_resources_answer_404_on_every_route() {
    let s = accounts().await;
    let admin_session = admin(&s).await;
    let a = user(&s, &admin_session, "a@example.com").await;
    let b = user(&s, &admin_session, "b@example.com").await;
    let owned = make_everything(&s, &a).await;
    let a_ids = [
        &owned.conversation,
        &owned.message,
        &owned.run,
        &owned.image,
        &owned.agent,
        &owned.job,
        &owned.key,
    ];
    let table = easel::http::route_table();
    let mut checked = 0;
    for route in &table {
        let path = aim(&route.path, &owned);
        if route.path.contains('{') {
            let method = route.method.as_str();
            let body = matches!(method, "POST" | "PUT" | "PATCH")
                .then(|| json!({"name": "x", "title": "x", "content": "x", "prompt": "x"}));
            let (status, answer) = b.call(&s, method, &path, body).await;
            assert!(
                [403, 404].contains(&status),
                "user B on {method} {} got {status}: {answer}",
                route.path
            );
            checked += 1;
        } else if route.method == Method::GET {
            let (_, answer) = b.call(&s, "GET", &path, None).await;
            let text = answer.to_string();
            for id in a_ids {
                assert!(
                    !text.contains(id.as_str()),
                    "GET {} shows A's {id}: {text}",
                    route.path
                );
            }
            checked += 1;
        }
    }
    eprintln!(
        "route isolation: {checked} routes checked of {}",
        table.len()
    );
    assert!(checked >= 25);
    // Image URLs too (with and without the extension), and the events of A's run and job.
    for path in [
        format!("/api/images/{}.jpg?download=1", owned.image),
        format!("/api/images/{}", owned.image),
        format!("/api/runs/{}/events", owned.run),
        format!("/api/studio/jobs/{}/events", owned.job),
    ] {
        assert_eq!(b.call(&s, "GET", &path, None).await.0, 404, "{path}");
    }
    // A still has everything.
    assert_eq!(
        a.call(&s, "GET", &format!("/api/images/{}.png", owned.image), None)
            .await
            .0,
        200
    );
    assert_eq!(
        a.call(
            &s,
            "GET",
            &format!("/api/conversations/{}", owned.conversation),
            None
        )
        .await
        .0,
        200
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shared_agents_are_used_by_others_but_edited_by_their_owner_only() {
    let s = accounts().await;
    let admin_session = admin(&s).await;
    let a = user(&s, &admin_session, "a@example.com").await;
    let b = user(&s, &admin_session, "b@example.com").await;
    let (_, agent) = a
        .call(&s, "POST", "/api/agents", Some(json!({"name": "Painter", "shared": true, "meta": {"internal_tools": {"image_creation": true}}})))
        .await;
    let id = agent["id"].as_str().unwrap();
    let (_, list) = b.call(&s, "GET", "/api/agents", None).await;
    let seen = list
        .as_array()
        .unwrap()
        .iter()
        .find(|x| x["id"] == id)
        .unwrap()
        .clone();
    assert_eq!(seen["owned"], false);
    let (status, c) = b
        .call(
            &s,
            "POST",
            "/api/conversations",
            Some(json!({"agent_id": id})),
        )
        .await;
    assert_eq!(status, 201, "{c}");
    assert_eq!(c["internal_tools"]["image_creation"], true);
    assert_eq!(
        b.call(
            &s,
            "PUT",
            &format!("/api/agents/{id}"),
            Some(json!({"name": "Mine now"}))
        )
        .await
        .0,
        404
    );
    assert_eq!(
        b.call(&s, "GET", &format!("/api/agents/{id}/versions"), None)
            .await
            .0,
        404
    );
    assert_eq!(
        b.call(&s, "DELETE", &format!("/api/agents/{id}"), None)
            .await
            .0,
        404
    );
    assert_eq!(
        a.call(&s, "GET", &format!("/api/agents/{id}/versions"), None)
            .await
            .0,
        200
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn credits_are_quoted_before_reserved_at_queue_time_and_never_negative() {
    let llm = ScriptedLlm::start(Vec::new()).await;
    let s = Setup {
        auth: "accounts",
        ..Setup::with_llm(&llm.base_url).models()
    }
    .start()
    .await;
    let a = admin(&s).await;
    let (status, _) = a
        .call(&s, "PUT", "/api/admin/settings", Some(json!({"credits": {"enabled": true, "default_allowance": 20, "period": "month"}, "model_costs": {"tiny-sd": 2}})))
        .await;
    assert_eq!(status, 200);
    let b = user(&s, &a, "b@example.com").await;
    let (_, me) = b.call(&s, "GET", "/api/me", None).await;
    assert_eq!(me["credits"]["balance"], 20, "the allowance");
    assert!(me["credits"]["refills_at"].is_string());

    // The Studio's quote: 3 images of 128×64 at the default steps = 2 × 3 × 2 = 12.
    let request = json!({"prompt": "a lighthouse", "n": 3, "size": "128x64"});
    let (_, quote) = b
        .call(&s, "POST", "/api/studio/quote", Some(request.clone()))
        .await;
    assert_eq!(quote["cost"], 12);
    assert_eq!(quote["enough"], true);
    let (status, job) = b
        .call(&s, "POST", "/api/studio/generations", Some(request.clone()))
        .await;
    assert_eq!(status, 202, "{job}");
    let (_, me) = b.call(&s, "GET", "/api/me", None).await;
    assert_eq!(
        me["credits"]["balance"], 8,
        "reserved at queue time: exactly the quote"
    );
    let events = common::read_events(
        &b.client(),
        &s.url(&format!(
            "/api/studio/jobs/{}/events",
            job["job_id"].as_str().unwrap()
        )),
        None,
    )
    .await;
    assert!(events.iter().any(|e| e.event == "run.finished"));
    let (_, me) = b.call(&s, "GET", "/api/me", None).await;
    assert_eq!(me["credits"]["balance"], 8);

    // Short: refused with the reason, everywhere.
    let (status, body) = b
        .call(&s, "POST", "/api/studio/generations", Some(request.clone()))
        .await;
    assert_eq!(status, 402, "{body}");
    assert!(
        body["error"]["message"]
            .as_str()
            .unwrap()
            .contains("needs 12 credits, 8 left"),
        "{body}"
    );
    let (_, key) = b
        .call(&s, "POST", "/api/keys", Some(json!({"name": "k"})))
        .await;
    let program = Who {
        header: (
            "authorization",
            format!("Bearer {}", key["key"].as_str().unwrap()),
        ),
    };
    let (status, body) = program
        .call(
            &s,
            "POST",
            "/v1/images/generations",
            Some(json!({"prompt": "x", "n": 5})),
        )
        .await;
    assert_eq!(status, 429);
    assert_eq!(body["error"]["code"], "insufficient_quota");
    let (_, c) = b
        .call(
            &s,
            "POST",
            "/api/conversations",
            Some(json!({"internal_tools": {"image_creation": true}})),
        )
        .await;
    let conversation = c["id"].as_str().unwrap();
    llm.push(Reply::ToolCalls(vec![(
        "image_generator",
        vec![json!({"prompt": "many", "n": 10}).to_string()],
    )]));
    llm.push(Reply::Text(vec!["Not enough credits."]));
    llm.push(Reply::ToolCalls(vec![(
        "image_generator",
        vec![json!({"prompt": "one", "size": "64x64"}).to_string()],
    )]));
    llm.push(Reply::Text(vec!["Here."]));
    let (_, said) = b
        .call(
            &s,
            "POST",
            &format!("/api/conversations/{conversation}/messages"),
            Some(json!({"content": "ten please"})),
        )
        .await;
    let events = common::read_events(
        &b.client(),
        &s.url(&format!(
            "/api/runs/{}/events",
            said["run_id"].as_str().unwrap()
        )),
        None,
    )
    .await;
    let result = data_of(&events, "tool.result")[0];
    assert_eq!(result["is_error"], true);
    assert!(
        result["result"]
            .as_str()
            .unwrap()
            .contains("needs 20 credits, 8 left"),
        "{result}"
    );
    // One image (2 credits) fits; the tool tells the LLM what it cost and what is left; the
    // message shows the credits spent.
    let (_, said) = b
        .call(
            &s,
            "POST",
            &format!("/api/conversations/{conversation}/messages"),
            Some(json!({"content": "one then"})),
        )
        .await;
    let events = common::read_events(
        &b.client(),
        &s.url(&format!(
            "/api/runs/{}/events",
            said["run_id"].as_str().unwrap()
        )),
        None,
    )
    .await;
    let result: Value = serde_json::from_str(
        data_of(&events, "tool.result")[0]["result"]
            .as_str()
            .unwrap(),
    )
    .unwrap_or_default();
    let messages = b
        .call(
            &s,
            "GET",
            &format!("/api/conversations/{conversation}?images=url"),
            None,
        )
        .await
        .1["messages"]
        .clone();
    let last = messages.as_array().unwrap().last().unwrap().clone();
    assert_eq!(last["credits"], 2, "{last}");
    let _ = result;
    let (_, me) = b.call(&s, "GET", "/api/me", None).await;
    assert_eq!(me["credits"]["balance"], 6);

    // Concurrent requests never take the balance below zero.
    let (_, me) = b.call(&s, "GET", "/api/me", None).await;
    let id = me["id"].as_str().unwrap();
    a.call(
        &s,
        "PATCH",
        &format!("/api/admin/users/{id}"),
        Some(json!({"credits": {"set_balance": 5}})),
    )
    .await;
    let one = json!({"prompt": "x", "n": 1, "size": "64x64"});
    let answers =
        join_all((0..8).map(|_| b.call(&s, "POST", "/api/studio/generations", Some(one.clone()))))
            .await;
    let accepted = answers.iter().filter(|(s, _)| *s == 202).count();
    assert_eq!(
        accepted, 2,
        "5 credits pay for two 2-credit jobs: {answers:?}"
    );
    let (_, me) = b.call(&s, "GET", "/api/me", None).await;
    assert_eq!(me["credits"]["balance"], 1);

    // The usage report shows images, credits and engine time per user and model.
    let (_, usage) = a.call(&s, "GET", "/api/admin/usage?days=1", None).await;
    let rows = usage["rows"].as_array().unwrap();
    let mine = rows.iter().find(|r| r["email"] == "b@example.com").unwrap();
    assert_eq!(mine["model"], "tiny-sd");
    assert!(mine["images"].as_i64().unwrap() >= 4);
    assert!(mine["engine_seconds"].as_f64().unwrap() > 0.0);
    assert!(!usage["days"].as_array().unwrap().is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cancelled_job_gives_back_what_it_did_not_use() {
    let s = Setup {
        auth: "accounts",
        paints: false,
        ..Setup::default().models()
    }
    .start()
    .await;
    let a = admin(&s).await;
    a.call(
        &s,
        "PUT",
        "/api/admin/settings",
        Some(json!({"credits": {"enabled": true, "default_allowance": 10}})),
    )
    .await;
    let (_, job) = a
        .call(
            &s,
            "POST",
            "/api/studio/generations",
            Some(json!({"prompt": "x", "n": 4})),
        )
        .await;
    let (_, me) = a.call(&s, "GET", "/api/me", None).await;
    assert_eq!(me["credits"]["balance"], 6);
    let id = job["job_id"].as_str().unwrap();
    assert_eq!(
        a.call(&s, "POST", &format!("/api/studio/jobs/{id}/cancel"), None)
            .await
            .0,
        202
    );
    let (_, me) = a.call(&s, "GET", "/api/me", None).await;
    assert_eq!(
        me["credits"]["balance"], 10,
        "nothing was painted: all given back"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_configured_key_acts_for_the_first_admin() {
    let dir = tempfile::tempdir().unwrap();
    let mut env = std::collections::HashMap::new();
    let database = common::TestDatabase::new(dir.path(), "k");
    env.insert("DATABASE_URL".to_string(), database.url.clone());
    env.insert("EASEL_API_KEY".to_string(), "configured-key".to_string());
    env.insert(
        "EASEL_ADMIN_EMAIL".to_string(),
        "root@example.com".to_string(),
    );
    env.insert(
        "EASEL_ADMIN_PASSWORD".to_string(),
        "root password".to_string(),
    );
    let mut config = easel::config::Config::load(&env).unwrap();
    config.site_root = dir.path().join("site");
    let s = common::start_on(config, dir, database).await;
    let (_, status) = s.get("/api/auth/status").await;
    assert_eq!(status["setup_needed"], false, "created at start-up");
    let program = Who {
        header: ("authorization", "Bearer configured-key".to_string()),
    };
    let (status, me) = program.call(&s, "GET", "/api/me", None).await;
    assert_eq!(status, 200);
    assert_eq!(me["email"], "root@example.com");
    let r = post(
        &s,
        "/api/auth/login",
        json!({"email": "root@example.com", "password": "root password"}),
    )
    .await;
    assert_eq!(r.status(), 200);
}
