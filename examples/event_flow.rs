//! Measures the three event-flow cases documented in the README:
//! (a) the target succeeds first try, (b) it fails once and succeeds on the retry,
//! (c) it is offline for 12 hours — run with every engine timer scaled down 300×
//! (12 h → 144 s, breaker cooldown 30 s → 100 ms, backoff cap 300 s → 1 s).
//!
//! `cargo run --release --example event_flow`

use std::collections::HashMap;
use std::sync::atomic::{AtomicU16, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use serde_json::{Value, json};
use webhooker::app::App;
use webhooker::config::Config;

/// A loopback sink answering `status`, recording when each event id first arrived.
#[derive(Clone, Default)]
struct Sink {
    status: Arc<AtomicU16>,
    requests: Arc<AtomicUsize>,
    first_seen: Arc<Mutex<HashMap<String, Instant>>>,
    attempts: Arc<Mutex<Vec<(String, Instant, u16)>>>,
}

impl Sink {
    async fn start(status: u16) -> Result<(Sink, String)> {
        let sink = Sink::default();
        sink.status.store(status, Ordering::SeqCst);
        let s = sink.clone();
        let app = axum::Router::new().fallback(move |headers: axum::http::HeaderMap| {
            let s = s.clone();
            async move {
                let now = Instant::now();
                let id = headers
                    .get("x-webhooker-event-id")
                    .and_then(|v| v.to_str().ok())
                    .unwrap_or("")
                    .to_string();
                let status = s.status.load(Ordering::SeqCst);
                s.requests.fetch_add(1, Ordering::SeqCst);
                s.attempts.lock().unwrap().push((id.clone(), now, status));
                if status == 200 {
                    s.first_seen.lock().unwrap().entry(id).or_insert(now);
                }
                axum::http::StatusCode::from_u16(status).unwrap_or(axum::http::StatusCode::OK)
            }
        });
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
        let url = format!("http://{}/hook", listener.local_addr()?);
        tokio::spawn(async move { axum::serve(listener, app).await });
        Ok((sink, url))
    }

    fn delivered(&self, id: &str) -> Option<Instant> {
        self.first_seen.lock().unwrap().get(id).copied()
    }
}

struct Harness {
    app: App,
    http: reqwest::Client,
    base: String,
    token: String,
    _dir: tempfile::TempDir,
}

const PASSWORD: &str = "event flow password";

impl Harness {
    async fn start(tweak: impl FnOnce(&mut Config)) -> Result<Harness> {
        webhooker::delivery::install_crypto_provider();
        let dir = tempfile::tempdir()?;
        let mut config = Config::for_data_dir(dir.path());
        config.admin_password = Some(PASSWORD.into());
        config.engine.allowed_target_networks = vec!["127.0.0.0/8".parse()?];
        tweak(&mut config);
        let app = App::start(config).await?;
        let base = format!("http://{}", app.local_addr());
        let mut h = Harness {
            app,
            http: reqwest::Client::new(),
            base,
            token: String::new(),
            _dir: dir,
        };
        // A bearer key (SHA-256) keeps the result polling cheap.
        let key = h
            .api(
                reqwest::Method::POST,
                "/keys",
                Some(json!({"name": "flow"})),
            )
            .await?;
        h.token = key["token"].as_str().context("token")?.to_string();
        Ok(h)
    }

    async fn api(&self, method: reqwest::Method, path: &str, body: Option<Value>) -> Result<Value> {
        let mut req = self
            .http
            .request(method, format!("{}/api/v1{path}", self.base));
        req = if self.token.is_empty() {
            req.basic_auth("admin", Some(PASSWORD))
        } else {
            req.bearer_auth(&self.token)
        };
        if let Some(b) = body {
            req = req
                .header("content-type", "application/json")
                .body(serde_json::to_vec(&b)?);
        }
        let r = req.send().await?;
        let status = r.status();
        let v: Value = serde_json::from_slice(&r.bytes().await?)?;
        if !status.is_success() {
            bail!("{path}: {status} {v}");
        }
        Ok(v)
    }

    /// A webhook with one http target; returns (webhook id, entrypoint URL).
    async fn webhook(&self, target: Value) -> Result<(String, String)> {
        let w = self
            .api(
                reqwest::Method::POST,
                "/webhooks",
                Some(json!({"name": "flow"})),
            )
            .await?;
        let id = w["id"].as_str().context("id")?.to_string();
        self.api(
            reqwest::Method::POST,
            &format!("/webhooks/{id}/targets"),
            Some(target),
        )
        .await?;
        let path = reqwest::Url::parse(w["entrypoints"][0]["url"].as_str().context("url")?)?
            .path()
            .to_string();
        Ok((id, format!("{}{path}", self.base)))
    }

    async fn send(&self, url: &str) -> Result<(String, Duration)> {
        let t0 = Instant::now();
        let r = self
            .http
            .post(url)
            .header("content-type", "application/json")
            .body(vec![b' '; 1024])
            .send()
            .await?;
        let v: Value = serde_json::from_slice(&r.bytes().await?)?;
        Ok((
            v["event_id"].as_str().context("event_id")?.to_string(),
            t0.elapsed(),
        ))
    }

    /// Polls until the event's deliveries are all terminal; returns when that was seen.
    async fn wait_recorded(&self, webhook: &str, event: &str) -> Result<(Instant, Value)> {
        let deadline = Instant::now() + Duration::from_secs(600);
        while Instant::now() < deadline {
            let ev = self
                .api(
                    reqwest::Method::GET,
                    &format!("/webhooks/{webhook}/events/{event}"),
                    None,
                )
                .await?;
            let done = ev["deliveries"].as_array().is_some_and(|ds| {
                ds.iter()
                    .all(|d| d["status"] == "delivered" || d["status"] == "failed")
            });
            if done {
                return Ok((Instant::now(), ev));
            }
            tokio::time::sleep(Duration::from_micros(500)).await;
        }
        bail!("event {event} never finished")
    }
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

fn pct(v: &mut [f64], p: f64) -> f64 {
    v.sort_by(f64::total_cmp);
    v[((v.len() - 1) as f64 * p).round() as usize]
}

async fn first_try() -> Result<()> {
    let h = Harness::start(|_| {}).await?;
    let (sink, url) = Sink::start(200).await?;
    let (wh, entry) = h
        .webhook(json!({"name": "ok", "kind": "http", "url": url}))
        .await?;
    let (mut ack, mut to_sink, mut to_record, mut attempt) = (vec![], vec![], vec![], vec![]);
    for _ in 0..200 {
        let (id, ingest) = h.send(&entry).await?;
        let acked = Instant::now();
        let (recorded, ev) = h.wait_recorded(&wh, &id).await?;
        let seen = sink.delivered(&id).context("not delivered")?;
        ack.push(ms(ingest));
        to_sink.push(ms(seen.saturating_duration_since(acked)));
        to_record.push(ms(recorded.saturating_duration_since(seen)));
        attempt.push(
            ev["deliveries"][0]["results"][0]["duration_ms"]
                .as_f64()
                .unwrap_or(0.0),
        );
    }
    println!("(a) first try, 200 sequential events, 1 KiB body");
    for (name, v) in [
        ("send -> 200 ack (ingest + fsync'd commit)", &mut ack),
        (
            "ack -> request at the sink (queue + worker + HTTP)",
            &mut to_sink,
        ),
        ("attempt duration recorded (HTTP round trip)", &mut attempt),
        (
            "sink -> result visible via API (commit + poll)",
            &mut to_record,
        ),
    ] {
        println!(
            "    {name:55} p50 {:7.2} ms  p99 {:7.2} ms",
            pct(v, 0.5),
            pct(v, 0.99)
        );
    }
    h.app.shutdown().await;
    Ok(())
}

async fn one_retry() -> Result<()> {
    let h = Harness::start(|_| {}).await?;
    let (sink, url) = Sink::start(200).await?;
    let (wh, entry) = h
        .webhook(json!({"name": "flaky", "kind": "http", "url": url}))
        .await?;
    println!("(b) fails once (503), succeeds on the retry; real timers (1 s first backoff ±20%)");
    for _ in 0..5 {
        sink.status.store(503, Ordering::SeqCst);
        let before = sink.requests.load(Ordering::SeqCst);
        let (id, ingest) = h.send(&entry).await?;
        let acked = Instant::now();
        while sink.requests.load(Ordering::SeqCst) == before {
            tokio::time::sleep(Duration::from_micros(200)).await;
        }
        let first = Instant::now();
        sink.status.store(200, Ordering::SeqCst);
        let (recorded, _) = h.wait_recorded(&wh, &id).await?;
        let second = sink.delivered(&id).context("not delivered")?;
        println!(
            "    ack {:5.2} ms | first attempt +{:5.2} ms (503) | retry +{:7.1} ms | result visible +{:5.2} ms | total {:7.1} ms",
            ms(ingest),
            ms(first.saturating_duration_since(acked)),
            ms(second.saturating_duration_since(first)),
            ms(recorded.saturating_duration_since(second)),
            ms(recorded.saturating_duration_since(acked)),
        );
    }
    h.app.shutdown().await;
    Ok(())
}

async fn offline_twelve_hours() -> Result<()> {
    const SCALE: u32 = 300;
    let offline = Duration::from_secs(12 * 3600) / SCALE;
    let h = Harness::start(|c| {
        c.engine.retry_base = Duration::from_secs(1) / SCALE;
        c.engine.breaker_cooldown = Duration::from_secs(30) / SCALE;
    })
    .await?;
    let (sink, url) = Sink::start(503).await?;
    // max_backoff 1 s here stands for the default 300 s.
    let (wh, entry) = h
        .webhook(json!({"name": "offline", "kind": "http", "url": url, "max_backoff_secs": 1, "max_retries": "unlimited"}))
        .await?;
    println!(
        "(c) offline for 12 h, timers scaled 1/{SCALE}: 12 h -> {:.0} s, breaker cooldown 30 s -> {:.0} ms, backoff cap 300 s -> 1 s",
        offline.as_secs_f64(),
        ms(Duration::from_secs(30) / SCALE)
    );
    let events = 100;
    let mut ids = Vec::new();
    let start = Instant::now();
    for i in 0..events {
        let due = start + offline * i / events;
        tokio::time::sleep_until(due.into()).await;
        ids.push(h.send(&entry).await?.0);
    }
    tokio::time::sleep_until((start + offline).into()).await;
    let dead_requests = sink.requests.load(Ordering::SeqCst);
    let back = Instant::now();
    sink.status.store(200, Ordering::SeqCst);
    let deadline = back + Duration::from_secs(120);
    let mut first = None;
    loop {
        let delivered = ids.iter().filter(|id| sink.delivered(id).is_some()).count();
        if delivered > 0 && first.is_none() {
            first = Some(back.elapsed());
        }
        if delivered == ids.len() || Instant::now() > deadline {
            break;
        }
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
    let all = back.elapsed();
    let delivered = ids.iter().filter(|id| sink.delivered(id).is_some()).count();
    let page = h
        .api(
            reqwest::Method::GET,
            &format!("/webhooks/{wh}/events?per_page=200"),
            None,
        )
        .await?;
    let attempts: u64 = page["events"]
        .as_array()
        .map(|es| {
            es.iter()
                .map(|e| e["deliveries"][0]["attempts"].as_u64().unwrap_or(0))
                .sum()
        })
        .unwrap_or(0);
    let first = first.unwrap_or(all);
    println!("    {events} events arrived spread over the outage");
    println!(
        "    requests the dead target received during the outage: {dead_requests} (≈ {:.1} per real hour)",
        dead_requests as f64 / 12.0
    );
    println!(
        "    after it came back: first delivery {:.0} ms scaled ≈ {:.1} s real; all {delivered}/{events} delivered after {:.0} ms scaled ≈ {:.0} s real",
        ms(first),
        first.as_secs_f64() * f64::from(SCALE),
        ms(all),
        all.as_secs_f64() * f64::from(SCALE)
    );
    println!("    attempts recorded across the {events} deliveries: {attempts}");
    h.app.shutdown().await;
    Ok(())
}

#[tokio::main]
async fn main() -> Result<()> {
    first_try().await?;
    one_retry().await?;
    offline_twelve_hours().await?;
    Ok(())
}
