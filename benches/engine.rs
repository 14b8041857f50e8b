//! Engine throughput: events ingested over HTTP and delivered to an in-process loopback
//! sink, with fan-out 1 and 4. Measures the whole path (ingest commit, queue, worker,
//! HTTP to the sink, result commit). `engine_signing` runs the same load with every target's
//! Standard Webhooks signing off and on and reports the process's CPU time (server, sender
//! and sink together) rather than wall time, so what signing costs shows even on a busy
//! machine, where wall time mostly measures the neighbours.
//!
//! `cargo bench --bench engine`

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use serde_json::{Value, json};
use webhooker::app::App;
use webhooker::config::Config;

const EVENTS: usize = 500;

struct Bench {
    app: App,
    http: reqwest::Client,
    /// `http://host:port` of the server.
    base: String,
    /// One entrypoint URL per webhook, in the order of `setup`'s `signing`.
    urls: Vec<String>,
    /// Per webhook, its targets as `{webhook id}/targets/{target id}`.
    targets: Vec<Vec<String>>,
    received: Arc<AtomicUsize>,
    /// Deliveries the sink got with a `webhook-signature` header.
    signed: Arc<AtomicUsize>,
    _dir: tempfile::TempDir,
}

/// A server with one webhook per entry of `signing`, each with `fan_out` http targets to an
/// in-process sink, their Standard Webhooks signing as given.
async fn setup(fan_out: usize, signing: &[bool]) -> Bench {
    webhooker::delivery::install_crypto_provider();
    let received = Arc::new(AtomicUsize::new(0));
    let signed = Arc::new(AtomicUsize::new(0));
    let (counter, signed_counter) = (received.clone(), signed.clone());
    let sink = axum::Router::new().fallback(move |headers: axum::http::HeaderMap| {
        let (counter, signed_counter) = (counter.clone(), signed_counter.clone());
        async move {
            counter.fetch_add(1, Ordering::Relaxed);
            if headers.contains_key("webhook-signature") {
                signed_counter.fetch_add(1, Ordering::Relaxed);
            }
            "ok"
        }
    });
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let sink_addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, sink).await });

    let dir = tempfile::tempdir().unwrap();
    let mut config = Config::for_data_dir(dir.path());
    config.admin_password = Some("bench password".into());
    config.engine.allowed_target_networks = vec!["127.0.0.0/8".parse().unwrap()];
    let app = App::start(config).await.unwrap();
    let base = format!("http://{}", app.local_addr());
    let http = reqwest::Client::new();
    let mut urls = Vec::new();
    let mut targets = Vec::new();
    for &signing in signing {
        let w: Value = http
            .post(format!("{base}/api/v1/webhooks"))
            .basic_auth("admin", Some("bench password"))
            .json(&json!({"name": "bench"}))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        let id = w["id"].as_str().unwrap();
        let mut ids = Vec::new();
        for i in 0..fan_out {
            let t: Value = http.post(format!("{base}/api/v1/webhooks/{id}/targets"))
                .basic_auth("admin", Some("bench password"))
                .json(&json!({"name": format!("sink{i}"), "kind": "http", "url": format!("http://{sink_addr}/hook{i}"), "max_in_flight": 64, "signing": signing}))
                .send()
                .await
                .unwrap()
                .json()
                .await
                .unwrap();
            ids.push(format!("{id}/targets/{}", t["id"].as_str().unwrap()));
        }
        targets.push(ids);
        let path = reqwest::Url::parse(w["entrypoints"][0]["url"].as_str().unwrap())
            .unwrap()
            .path()
            .to_string();
        urls.push(format!("{base}{path}"));
    }
    Bench {
        app,
        http,
        base,
        urls,
        targets,
        received,
        signed,
        _dir: dir,
    }
}

/// Sends `EVENTS` events to webhook `webhook` and waits until the sink has all deliveries.
async fn run_once(b: &Bench, webhook: usize, fan_out: usize) -> Duration {
    let start = Instant::now();
    let target = b.received.load(Ordering::Relaxed) + EVENTS * fan_out;
    let next = Arc::new(AtomicUsize::new(0));
    let mut senders = Vec::new();
    for _ in 0..16 {
        let (http, url, next) = (b.http.clone(), b.urls[webhook].clone(), next.clone());
        senders.push(tokio::spawn(async move {
            while next.fetch_add(1, Ordering::Relaxed) < EVENTS {
                http.post(&url).body(vec![b'x'; 1024]).send().await.unwrap();
            }
        }));
    }
    for s in senders {
        s.await.unwrap();
    }
    let deadline = Instant::now() + Duration::from_secs(60);
    while b.received.load(Ordering::Relaxed) < target && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
    start.elapsed()
}

fn engine(c: &mut Criterion) {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    let mut group = c.benchmark_group("engine_end_to_end");
    group
        .sample_size(10)
        .measurement_time(Duration::from_secs(10));
    for fan_out in [1usize, 4] {
        let bench = rt.block_on(setup(fan_out, &[true]));
        group.throughput(Throughput::Elements((EVENTS * fan_out) as u64));
        group.bench_with_input(BenchmarkId::new("fan_out", fan_out), &fan_out, |b, &f| {
            b.iter_custom(|iters| {
                let mut total = Duration::ZERO;
                for _ in 0..iters {
                    total += rt.block_on(run_once(&bench, 0, f));
                }
                total
            })
        });
        rt.block_on(bench.app.shutdown());
    }
    group.finish();
}

/// CPU time used by every thread of this process so far.
fn process_cpu_time() -> Duration {
    let t = rustix::time::clock_gettime(rustix::time::ClockId::ProcessCPUTime);
    Duration::new(t.tv_sec as u64, t.tv_nsec as u32)
}

/// Turns Standard Webhooks signing on or off on every target of webhook `webhook`.
async fn set_signing(b: &Bench, webhook: usize, signing: bool) {
    for target in &b.targets[webhook] {
        let status = b
            .http
            .patch(format!("{}/api/v1/webhooks/{target}", b.base))
            .basic_auth("admin", Some("bench password"))
            .json(&json!({ "signing": signing }))
            .send()
            .await
            .unwrap()
            .status();
        assert!(status.is_success(), "PATCH target: {status}");
    }
}

fn signing(c: &mut Criterion) {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    let fan_out = 4;
    // One webhook whose targets' signing is switched between measurements (two webhooks
    // differed by ~6% with signing off on both), in ABBA order, so a drift of the
    // machine's load or of the file's size hits both alike.
    let bench = rt.block_on(setup(fan_out, &[false]));
    let mut group = c.benchmark_group("engine_signing");
    group
        .sample_size(10)
        .measurement_time(Duration::from_secs(10))
        .throughput(Throughput::Elements((EVENTS * fan_out) as u64));
    for (round, order) in [[false, true], [true, false], [false, true]]
        .into_iter()
        .enumerate()
    {
        for signing in order {
            rt.block_on(set_signing(&bench, 0, signing));
            let signed_before = bench.signed.load(Ordering::Relaxed);
            let name = format!("{}_round{}", if signing { "on" } else { "off" }, round + 1);
            group.bench_function(BenchmarkId::new("fan_out_4_cpu", name), |b| {
                b.iter_custom(|iters| {
                    let start = process_cpu_time();
                    for _ in 0..iters {
                        rt.block_on(run_once(&bench, 0, fan_out));
                    }
                    process_cpu_time() - start
                })
            });
            let signed_now = bench.signed.load(Ordering::Relaxed) > signed_before;
            assert_eq!(signed_now, signing, "the sink saw signatures: {signed_now}");
        }
    }
    group.finish();
    rt.block_on(bench.app.shutdown());
}

criterion_group!(benches, engine, signing);
criterion_main!(benches);
