//! `easel models pull` against a local server that serves the Hugging Face hub's endpoints
//! (`/api/models/{repo}/tree/{rev}` and `/{repo}/resolve/{rev}/{path}` with range requests):
//! a full download of a model folder, resuming a partial file, and refusing a file whose size
//! does not match the listing.

mod common;

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use axum::body::Body;
use axum::extract::{Path as UrlPath, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use easel::imaging::hub::Hub;
use easel::imaging::registry::ModelEntry;
use serde_json::json;

#[derive(Default)]
struct Hosted {
    /// Repository path → file bytes.
    files: Vec<(String, Vec<u8>)>,
    /// Sizes to announce instead of the real ones (to test the check).
    lie_about: Option<String>,
    /// Range headers received, per path.
    ranges: Vec<(String, String)>,
    /// Downloads served, per path.
    served: Vec<String>,
}

type Shared = Arc<Mutex<Hosted>>;

fn model_files(dir: &Path, prefix: &str, out: &mut Vec<(String, Vec<u8>)>) {
    for entry in std::fs::read_dir(dir).unwrap() {
        let entry = entry.unwrap();
        let name = format!("{prefix}{}", entry.file_name().to_string_lossy());
        if entry.path().is_dir() {
            model_files(&entry.path(), &format!("{name}/"), out);
        } else {
            out.push((name, std::fs::read(entry.path()).unwrap()));
        }
    }
}

async fn tree(
    State(shared): State<Shared>,
    UrlPath((_owner, name, _rev)): UrlPath<(String, String, String)>,
) -> Response {
    // Every repository name serves the hosted files, except this one, which does not exist.
    if name == "missing" {
        return StatusCode::NOT_FOUND.into_response();
    }
    let hosted = shared.lock().unwrap();
    let mut entries: Vec<serde_json::Value> = hosted
        .files
        .iter()
        .map(|(path, bytes)| {
            let size = if hosted.lie_about.as_deref() == Some(path.as_str()) {
                bytes.len() + 10
            } else {
                bytes.len()
            };
            json!({"type": "file", "path": path, "size": size, "oid": "x"})
        })
        .collect();
    // Files outside the ONNX layout, which the pull must skip.
    entries.push(json!({"type": "file", "path": "unet/diffusion_pytorch_model.safetensors", "size": 1_000_000_000u64}));
    entries.push(json!({"type": "directory", "path": "unet", "size": 0}));
    Json(json!(entries)).into_response()
}

async fn resolve(
    State(shared): State<Shared>,
    UrlPath((_owner, _name, _rev, path)): UrlPath<(String, String, String, String)>,
    headers: HeaderMap,
) -> Response {
    let mut hosted = shared.lock().unwrap();
    let Some(bytes) = hosted
        .files
        .iter()
        .find(|(p, _)| *p == path)
        .map(|(_, b)| b.clone())
    else {
        return StatusCode::NOT_FOUND.into_response();
    };
    hosted.served.push(path.clone());
    if let Some(range) = headers.get("range").and_then(|v| v.to_str().ok()) {
        hosted.ranges.push((path.clone(), range.to_string()));
        let start: usize = range
            .trim_start_matches("bytes=")
            .trim_end_matches('-')
            .parse()
            .unwrap();
        return Response::builder()
            .status(StatusCode::PARTIAL_CONTENT)
            .header(
                "content-range",
                format!("bytes {start}-{}/{}", bytes.len() - 1, bytes.len()),
            )
            .body(Body::from(bytes[start..].to_vec()))
            .unwrap();
    }
    Response::new(Body::from(bytes))
}

async fn hub(hosted: Hosted) -> (String, Shared) {
    let shared: Shared = Arc::new(Mutex::new(hosted));
    let app = Router::new()
        .route("/api/models/{owner}/{name}/tree/{rev}", get(tree))
        .route("/{owner}/{name}/resolve/{rev}/{*path}", get(resolve))
        .with_state(shared.clone());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await });
    (format!("http://{addr}"), shared)
}

fn tiny_sd_files() -> Vec<(String, Vec<u8>)> {
    let mut files = Vec::new();
    model_files(&common::test_models_dir().join("tiny-sd"), "", &mut files);
    files
}

#[tokio::test]
async fn pulls_a_model_folder_that_then_loads() {
    let (endpoint, shared) = hub(Hosted {
        files: tiny_sd_files(),
        ..Hosted::default()
    })
    .await;
    let dir = tempfile::tempdir().unwrap();
    let dest: PathBuf = dir.path().join("tiny-sd");
    let hub = Hub::new(&endpoint, None).unwrap();
    let written = hub
        .pull("test/tiny-sd", "main", &dest, &|_| {})
        .await
        .unwrap();
    assert_eq!(written.len(), tiny_sd_files().len());
    for (path, bytes) in tiny_sd_files() {
        assert_eq!(std::fs::read(dest.join(&path)).unwrap(), bytes, "{path}");
    }
    assert!(
        !dest
            .join("unet/diffusion_pytorch_model.safetensors")
            .exists(),
        "non-ONNX weights are skipped"
    );
    let entry = ModelEntry::open(&dest);
    assert!(entry.problem.is_none(), "{:?}", entry.problem);
    // A second pull finds everything complete and downloads nothing.
    let served_before = shared.lock().unwrap().served.len();
    let again = hub
        .pull("test/tiny-sd", "main", &dest, &|_| {})
        .await
        .unwrap();
    assert!(again.is_empty());
    assert_eq!(shared.lock().unwrap().served.len(), served_before);
}

/// Exporters name external data files as they like (`model.onnx.data`, `weights.bin`, one
/// file per tensor…): every file a graph names is fetched, whatever its name.
#[tokio::test]
async fn every_external_data_file_a_graph_names_is_fetched() {
    let renamed = "weights-unet.db"; // as long as `model.onnx_data`, so the graph stays valid
    assert_eq!(renamed.len(), "model.onnx_data".len());
    let files: Vec<(String, Vec<u8>)> = tiny_sd_files()
        .into_iter()
        .map(|(path, bytes)| match path.as_str() {
            "unet/model.onnx_data" => (format!("unet/{renamed}"), bytes),
            "unet/model.onnx" => {
                let old = b"model.onnx_data";
                let mut graph = bytes.clone();
                let mut at = 0;
                while let Some(i) = graph[at..].windows(old.len()).position(|w| w == old) {
                    graph[at + i..at + i + old.len()].copy_from_slice(renamed.as_bytes());
                    at += i + old.len();
                }
                assert!(at > 0, "the tiny UNet keeps its weights outside the graph");
                (path, graph)
            }
            _ => (path, bytes),
        })
        .collect();
    assert!(!easel::imaging::hub::wanted(&format!("unet/{renamed}")));
    let unet = &files
        .iter()
        .find(|(p, _)| p == "unet/model.onnx")
        .unwrap()
        .1;
    assert_eq!(easel::imaging::hub::external_data_names(unet), [renamed]);
    let (endpoint, _) = hub(Hosted {
        files: files.clone(),
        ..Hosted::default()
    })
    .await;
    let dir = tempfile::tempdir().unwrap();
    let dest: PathBuf = dir.path().join("tiny-sd");
    Hub::new(&endpoint, None)
        .unwrap()
        .pull("test/tiny-sd", "main", &dest, &|_| {})
        .await
        .unwrap();
    assert!(dest.join("unet").join(renamed).is_file());
    let entry = ModelEntry::open(&dest);
    assert!(entry.problem.is_none(), "{:?}", entry.problem);
    let runtime = easel::imaging::runtime::Runtime::load(&common::image_settings()).unwrap();
    entry.load(&runtime).expect("the UNet finds its weights");
}

#[tokio::test]
async fn a_partial_download_resumes_with_a_range_request() {
    let files = tiny_sd_files();
    let (endpoint, shared) = hub(Hosted {
        files: files.clone(),
        ..Hosted::default()
    })
    .await;
    let dir = tempfile::tempdir().unwrap();
    let dest = dir.path().join("tiny-sd");
    let (path, bytes) = files
        .iter()
        .find(|(p, _)| p == "unet/model.onnx_data")
        .unwrap()
        .clone();
    std::fs::create_dir_all(dest.join("unet")).unwrap();
    std::fs::write(
        dest.join("unet/model.onnx_data.part"),
        &bytes[..bytes.len() / 2],
    )
    .unwrap();
    Hub::new(&endpoint, None)
        .unwrap()
        .pull("test/tiny-sd", "main", &dest, &|_| {})
        .await
        .unwrap();
    assert_eq!(std::fs::read(dest.join(&path)).unwrap(), bytes);
    assert!(!dest.join("unet/model.onnx_data.part").exists());
    let ranges = shared.lock().unwrap().ranges.clone();
    assert_eq!(ranges, vec![(path, format!("bytes={}-", bytes.len() / 2))]);
}

#[tokio::test]
async fn a_file_of_the_wrong_size_is_refused_and_not_installed() {
    let (endpoint, _) = hub(Hosted {
        files: tiny_sd_files(),
        lie_about: Some("vae_decoder/model.onnx".into()),
        ..Hosted::default()
    })
    .await;
    let dir = tempfile::tempdir().unwrap();
    let dest = dir.path().join("tiny-sd");
    let error = Hub::new(&endpoint, None)
        .unwrap()
        .pull("test/tiny-sd", "main", &dest, &|_| {})
        .await
        .unwrap_err();
    let text = error.to_string();
    assert!(
        text.contains("vae_decoder/model.onnx") && text.contains("run the command again"),
        "{text}"
    );
    assert!(!dest.join("vae_decoder/model.onnx").exists());
}

#[tokio::test]
async fn a_repository_without_the_onnx_layout_is_explained() {
    let files = vec![
        ("README.md".to_string(), b"hello".to_vec()),
        ("model.safetensors".to_string(), vec![0; 10]),
    ];
    let (endpoint, _) = hub(Hosted {
        files,
        ..Hosted::default()
    })
    .await;
    let dir = tempfile::tempdir().unwrap();
    let error = Hub::new(&endpoint, None)
        .unwrap()
        .pull("test/pytorch-only", "main", &dir.path().join("x"), &|_| {})
        .await
        .unwrap_err();
    assert!(
        error.to_string().contains("not a diffusers ONNX export"),
        "{error}"
    );
}

/// "Get a model" on a fresh install: the real binary with an empty models folder downloads the
/// recommended model from the hub (here the stand-in), shows progress, and paints with it at
/// once, without a restart. A repository that does not exist ends as a failed download with
/// the hub's answer; a second download while one runs is refused.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn get_a_model_downloads_the_recommended_one_and_paints_without_a_restart() {
    use common::process::{client, get, post, Easel};
    use std::time::{Duration, Instant};

    let (endpoint, shared) = hub(Hosted {
        files: tiny_sd_files(),
        ..Hosted::default()
    })
    .await;
    let dir = tempfile::tempdir().unwrap();
    let models = dir.path().join("models");
    std::fs::create_dir_all(&models).unwrap();
    let database = common::TestDatabase::new(dir.path(), "easel");
    let easel = Easel::serve(
        &database.url,
        &models,
        None,
        &[
            ("HF_ENDPOINT", endpoint.as_str()),
            ("EASEL_RECOMMENDED_MODEL", "test/tiny-sd"),
        ],
    )
    .await;
    let http = client();

    let before = get(&http, easel.url("/api/models")).await;
    assert_eq!(before["image_creation_available"], false, "{before}");
    let status = get(&http, easel.url("/api/models/download")).await;
    assert_eq!(status["phase"], "idle");
    assert_eq!(status["recommended"], "test/tiny-sd");
    assert_eq!(status["can_start"], true, "the local user is the admin");

    // Image creation without a model: the reply fails with the exact message and its code,
    // which the page answers with "Get a model".
    let conversation = easel.painting_conversation(&http).await;
    let answer = easel
        .say(&http, &conversation, "a lighthouse at dusk")
        .await;
    let run = answer["run_id"].as_str().unwrap().to_string();
    let events = http
        .get(easel.url(&format!("/api/runs/{run}/events")))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(events.contains("no_image_model"), "{events}");

    let started = http
        .post(easel.url("/api/models/download"))
        .json(&serde_json::json!({}))
        .send()
        .await
        .unwrap();
    assert_eq!(started.status(), 202);
    let refused = http
        .post(easel.url("/api/models/download"))
        .json(&serde_json::json!({"repo": "test/other"}))
        .send()
        .await
        .unwrap();
    let refused_status = refused.status().as_u16();
    let began = Instant::now();
    let mut saw_progress = false;
    let last = loop {
        let status = get(&http, easel.url("/api/models/download")).await;
        saw_progress |= status["total"].as_u64().unwrap_or(0) > 0;
        if matches!(status["phase"].as_str(), Some("ready" | "failed")) {
            break status;
        }
        assert!(began.elapsed() < Duration::from_secs(60), "{status}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    assert_eq!(last["phase"], "ready", "{last}");
    assert_eq!(last["model"], "tiny-sd");
    assert_eq!(last["done"], last["total"]);
    assert!(saw_progress);
    // The download may have been quick enough to end before the second request.
    assert!(
        refused_status == 409 || refused_status == 202,
        "{refused_status}"
    );
    assert!(!shared.lock().unwrap().served.is_empty());

    // Usable at once: offered, and it paints through the images API.
    let models = easel.wait_for_models().await;
    assert!(
        models["image"]
            .as_array()
            .unwrap()
            .iter()
            .any(|m| m["id"] == "tiny-sd"),
        "{models}"
    );
    let painted = post(
        &http,
        easel.url("/v1/images/generations"),
        serde_json::json!({"model": "tiny-sd", "prompt": "a red fox", "size": "64x64", "steps": 2}),
    )
    .await;
    assert_eq!(common::process::b64_images(&painted).len(), 1, "{painted}");

    // A repository the hub does not have: the download fails with the hub's answer.
    let started = http
        .post(easel.url("/api/models/download"))
        .json(&serde_json::json!({"repo": "test/missing"}))
        .send()
        .await
        .unwrap();
    assert_eq!(started.status(), 202);
    let failed = loop {
        let status = get(&http, easel.url("/api/models/download")).await;
        if status["phase"] != "downloading" && status["phase"] != "checking" {
            break status;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    assert_eq!(failed["phase"], "failed", "{failed}");
    assert!(
        failed["error"].as_str().unwrap().contains("test/missing"),
        "{failed}"
    );
    // Names that could leave the hub's URL space are refused before anything starts.
    for bad in ["../etc", "a/b/c", "owner/..", "x"] {
        let r = http
            .post(easel.url("/api/models/download"))
            .json(&serde_json::json!({ "repo": bad }))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 422, "{bad}");
    }
}
