//! A benchmark, not a test (`#[ignore]`; `cargo xtask bench --scale` runs it on PostgreSQL):
//!
//! - **overhead**: the same jobs one after another, painted in-process by the web node and
//!   then by an `easel worker` behind a web node that paints nothing; what the worker adds to
//!   each job's latency (submit → `run.finished` at the client), as a share of the painting
//!   time;
//! - **throughput**: a burst of jobs with one and with two workers (one ONNX Runtime thread
//!   each): images per minute and queue wait (p50/p95).
//!
//! `EASEL_BENCH_MODELS` names a models folder with one model (e.g. `target/bench/medium-sd`'s
//! parent); the tiny test model otherwise. Figures are printed, never asserted.

mod common;

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use common::process::{client, post, slow_models, Easel};
use common::read_events;
use serde_json::{json, Value};

fn models(dir: &Path) -> (PathBuf, Value) {
    match std::env::var("EASEL_BENCH_MODELS") {
        Ok(folder) => (
            PathBuf::from(folder),
            json!({"prompt": "a lighthouse at dusk", "size": "512x512", "steps": 4, "sampler": "euler", "seed": 1}),
        ),
        Err(_) => (
            slow_models(dir),
            json!({"prompt": "a lighthouse at dusk", "size": "256x256", "steps": 20, "sampler": "euler", "seed": 1}),
        ),
    }
}

async fn run_job(node: &Easel, body: &Value) -> Duration {
    let client = client();
    let started = Instant::now();
    let job = post(&client, node.url("/api/studio/generations"), body.clone()).await["job_id"]
        .as_str()
        .unwrap()
        .to_string();
    let events = read_events(
        &client,
        &node.url(&format!("/api/studio/jobs/{job}/events")),
        None,
    )
    .await;
    assert_eq!(events.last().unwrap().event, "run.finished");
    started.elapsed()
}

/// (queued → started, started → finished) of every finished job, in milliseconds.
async fn job_times(database: &str) -> Vec<(i64, i64)> {
    let store = easel::store::Store::connect(database).await.unwrap();
    let rows: Vec<(i64, i64, i64)> = sqlx::query_as(
        "SELECT queued_at, started_at, finished_at FROM image_jobs WHERE state = 'done' ORDER BY queued_at",
    )
    .fetch_all(store.pool())
    .await
    .unwrap();
    store.pool().close().await;
    rows.into_iter().map(|(q, s, f)| (s - q, f - s)).collect()
}

fn percentile(sorted: &[i64], p: f64) -> i64 {
    if sorted.is_empty() {
        return 0;
    }
    sorted[((sorted.len() - 1) as f64 * p).round() as usize]
}

fn mean(values: &[f64]) -> f64 {
    values.iter().sum::<f64>() / values.len().max(1) as f64
}

const ONE_THREAD: (&str, &str) = ("EASEL_ORT_THREADS", "1");
const SEQUENTIAL: usize = 6;
const BURST: usize = 12;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "a benchmark: cargo xtask bench --scale"]
async fn scale_out_throughput_and_worker_overhead() {
    if common::postgres_server().is_none() {
        eprintln!("skipped: set EASEL_TEST_BACKEND=postgres (cargo xtask bench --scale does)");
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let (models, body) = models(dir.path());
    let no_models = dir.path().join("no-models");
    std::fs::create_dir_all(&no_models).unwrap();

    // Overhead: in-process.
    let db = common::TestDatabase::new(dir.path(), "inprocess");
    let node = Easel::serve(&db.url, &models, None, &[ONE_THREAD]).await;
    run_job(&node, &body).await; // warm-up: loads the model
    let mut local = Vec::new();
    for _ in 0..SEQUENTIAL {
        local.push(run_job(&node, &body).await.as_secs_f64() * 1000.0);
    }
    let local_paint: Vec<f64> = job_times(&db.url)
        .await
        .iter()
        .skip(1)
        .map(|t| t.1 as f64)
        .collect();
    drop(node);

    // Overhead: one worker behind a web node.
    let db = common::TestDatabase::new(dir.path(), "worker");
    let web =
        Easel::serve_with_args(&db.url, &no_models, None, &[], &["--image-workers", "0"]).await;
    let worker = Easel::worker(&db.url, &models, "bench-1", &[ONE_THREAD]);
    web.wait_for_models().await;
    run_job(&web, &body).await;
    let mut remote = Vec::new();
    for _ in 0..SEQUENTIAL {
        remote.push(run_job(&web, &body).await.as_secs_f64() * 1000.0);
    }
    let (local_ms, remote_ms, paint_ms) = (mean(&local), mean(&remote), mean(&local_paint));
    println!("\n| sequential jobs ({SEQUENTIAL}) | latency ms (mean) |");
    println!("| --- | --- |");
    println!("| in-process | {local_ms:.0} |");
    println!("| easel worker | {remote_ms:.0} |");
    println!(
        "worker overhead: {:.0} ms per job = {:.1} % of the painting time ({paint_ms:.0} ms)",
        remote_ms - local_ms,
        (remote_ms - local_ms) / paint_ms * 100.0
    );

    // Throughput with one worker, then two.
    println!("\n| workers | jobs | images/min | queue wait p50 ms | p95 ms |");
    println!("| --- | --- | --- | --- | --- |");
    let mut workers = vec![worker];
    for count in [1usize, 2] {
        let db_name = format!("burst{count}");
        let db = common::TestDatabase::new(dir.path(), &db_name);
        let web =
            Easel::serve_with_args(&db.url, &no_models, None, &[], &["--image-workers", "0"]).await;
        drop(std::mem::take(&mut workers));
        for k in 0..count {
            workers.push(Easel::worker(
                &db.url,
                &models,
                &format!("burst-{k}"),
                &[ONE_THREAD],
            ));
        }
        web.wait_for_models().await;
        // Warm every worker (each loads the model) before timing.
        let warm: Vec<_> = (0..count).map(|_| run_job(&web, &body)).collect();
        futures_util::future::join_all(warm).await;
        let warm_ids = job_times(&db.url).await.len();
        let started = Instant::now();
        let burst: Vec<_> = (0..BURST)
            .map(|k| {
                let mut b = body.clone();
                b["seed"] = json!(100 + k);
                let web = &web;
                async move { run_job(web, &b).await }
            })
            .collect();
        futures_util::future::join_all(burst).await;
        let wall = started.elapsed().as_secs_f64();
        let mut waits: Vec<i64> = job_times(&db.url)
            .await
            .iter()
            .skip(warm_ids)
            .map(|t| t.0)
            .collect();
        waits.sort_unstable();
        println!(
            "| {count} | {BURST} | {:.1} | {} | {} |",
            BURST as f64 / wall * 60.0,
            percentile(&waits, 0.5),
            percentile(&waits, 0.95)
        );
        // Stop the processes before their database is dropped.
        workers.clear();
        drop(web);
    }
    drop(web);
}
