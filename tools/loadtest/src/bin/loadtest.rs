//! `loadtest`: measures webhooker in one run and prints one Markdown table.
//!
//! Run it with `bash scripts/loadtest.sh`, which installs `wrk` and builds the release
//! binaries first. It talks to webhooker only over HTTP and through its process, as a
//! user's tools would, so it lives outside the server's crate. This program expects `webhooker` and `baseline` next to itself
//! (`target/release/`) and `wrk` on the `PATH`. In order, it measures:
//!
//! 1. **baseline**: the `baseline` binary (answers like webhooker's ingest, stores nothing)
//!    under `wrk` at 1, 16 and 64 connections — the HTTP ceiling of this machine (the
//!    store's own ceiling, without HTTP, is `cargo bench --bench store`);
//! 2. **ingest**: webhooker with a `database` target under the same `wrk` runs; every ack
//!    is fsync'd;
//! 3. **routing**: one webhook with ten `database` targets at 64 connections, without
//!    filters, with five conditions each (two on JSON paths) that all hold, and with filters
//!    that pass each event to one target
//!    (`LOADTEST_ONLY=routing` runs just this phase, as `LOADTEST_ONLY=many-webhooks` does
//!    the last one; `LOADTEST_ONLY=spread` is an extra phase, not part of the full run: 1
//!    webhook × 64 connections against N webhooks sharing them, alternating, N from
//!    `LOADTEST_SPREAD_WEBHOOKS`, 8 by default);
//! 4. **signatures**: sender verification off and on for the same GitHub-signed requests
//!    at 64 connections, and signing off and on for bursts delivered to an `http` target,
//!    in alternating runs on one server (`LOADTEST_ONLY=signatures` runs just this phase);
//! 5. **end to end**: an `http` target pointing at an in-process sink; delivered events/s
//!    with 64 concurrent senders, then ack → sink latency at a fixed 1,000 events/s;
//! 6. **slow receivers**: a fast receiver beside two that answer after 3 s; 50 targets
//!    that answer after 200 ms; a receiver that never answers beside a fast one at a
//!    fixed 500 events/s;
//! 7. **backlog**: 100,000 events for a target that is down; threads and memory before and
//!    after, then a restart with the target back up: time to listening, to the first
//!    delivery and to the last one;
//! 8. **many webhooks**: 1,000 webhooks under `ulimit -n 1024`, 100 of them with a backlog
//!    for a target that is down: threads, memory and open descriptors; ingest to 1 webhook
//!    at 64 connections against 8 webhooks × 8 and 64 × 1; the first event to a webhook
//!    whose file is closed; then 10,000 webhooks and a restart.
//!
//! For every `wrk` run it also reads, from `/proc`, the server's CPU time per request and
//! the share of the machine's CPU left idle or waiting for I/O: the second table, which
//! shows where the time goes (the profile that explains a missed target).
//!
//! Everything listens on 127.0.0.1 (webhooker gets `HOST=127.0.0.1`). Every process started here is
//! stopped at the end, on error and on SIGINT/SIGTERM (child handles kill on drop), and
//! every wait has a deadline. Progress goes to stderr, the report to stdout.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, OnceLock, PoisonError};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail, ensure};
use axum::Router;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use serde_json::{Value, json};
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::{Child, ChildStdout, Command};
use tokio::sync::{Semaphore, oneshot};
use tokio::task::JoinSet;
use tokio::time::{sleep, timeout};
use uuid::Uuid;

/// The command documented in the README; printed with the results.
const COMMAND: &str = "bash scripts/loadtest.sh";
/// Size of every request body: 1 KiB of JSON, well under the 16 KiB inline-body limit.
const BODY_BYTES: usize = 1024;
/// Length of each `wrk` run.
const WRK_DURATION: Duration = Duration::from_secs(10);
/// Connection counts of the `wrk` runs.
const CONNECTIONS: [u32; 3] = [1, 16, 64];
/// Concurrent senders when loadtest itself sends as fast as it can.
const SENDERS: usize = 64;
/// Events sent for the end-to-end throughput measurement.
const E2E_EVENTS: usize = 20_000;
/// Rate and duration of the paced latency measurement.
const PACED_RATE: u32 = 1_000;
const PACED_DURATION: Duration = Duration::from_secs(10);
/// At most this many paced requests wait for their answer at once.
const PACED_MAX_IN_FLIGHT: usize = 256;
/// Events warming the restarted server up before its idle footprint is read.
const WARMUP_EVENTS: usize = 1_000;
/// Events left waiting for a target that is down.
const BACKLOG_EVENTS: usize = 100_000;
/// `max_in_flight` of the end-to-end target (the backlog target keeps the default).
const E2E_MAX_IN_FLIGHT: u32 = 64;
const ADMIN_PASSWORD: &str = "loadtest admin password";

/// Deadlines: the longest each kind of wait may take.
const STARTUP_DEADLINE: Duration = Duration::from_secs(30);
const STOP_DEADLINE: Duration = Duration::from_secs(15);
const REQUEST_TIMEOUT: Duration = Duration::from_secs(30);
const SEND_DEADLINE: Duration = Duration::from_secs(120);
const DELIVERY_DEADLINE: Duration = Duration::from_secs(60);
const DRAIN_DEADLINE: Duration = Duration::from_secs(180);
/// Extra time `wrk` gets beyond its own duration before it is killed.
const WRK_GRACE: Duration = Duration::from_secs(30);

#[tokio::main]
async fn main() -> Result<()> {
    // reqwest is built without a default TLS provider, as webhooker's is.
    let _ = rustls::crypto::ring::default_provider().install_default();
    let outcome = tokio::select! {
        result = run() => Ok(result),
        signal = interrupted() => Err(signal),
    };
    // Here `run()` has been dropped, and with it every child handle (which kills the
    // child) and the temporary directory.
    match outcome {
        Ok(result) => result,
        Err(signal) => {
            eprintln!("loadtest: stopped by {signal}; every process it started was killed");
            std::process::exit(130);
        }
    }
}

/// Runs the phases and prints the report.
async fn run() -> Result<()> {
    let started = Instant::now();
    let bins = Binaries::locate()?;
    let work = TempDir::create()?;
    let wrk = Wrk::prepare(work.path()).await?;
    let sender = Sender::new()?;
    let mut report = Report::default();

    // A webhooker on a data directory of its own under `work`.
    let webhooker_on = |dir: &str| -> Result<Webhooker> {
        Ok(Webhooker {
            binary: bins.webhooker.clone(),
            data_dir: work.path().join(dir),
            port: free_port()?,
        })
    };
    // `LOADTEST_ONLY=routing`, `many-webhooks`, `spread` or `end-to-end`: just that
    // phase, for quick comparisons.
    let only = std::env::var("LOADTEST_ONLY").ok();
    let all = only.is_none();

    if all || only.as_deref() == Some("routing") {
        // The baseline runs alone, before any webhooker starts.
        let baseline = if all {
            Some(baseline_phase(&bins, &wrk, &mut report).await?)
        } else {
            None
        };
        let webhooker = webhooker_on("data")?;
        let server = webhooker.start().await?;
        let api = Api::new(sender.http.clone(), webhooker.port);
        let db_hook = match &baseline {
            Some(baseline) => Some(ingest_phase(&api, &server, &wrk, baseline, &mut report).await?),
            None => None,
        };
        routing_phase(&api, &server, &wrk, &mut report).await?;
        if all {
            signatures_phase(&api, &server, &wrk, &sender, &mut report).await?;
            end_to_end_phase(&api, &sender, &mut report).await?;
            slow_receivers_phase(&api, &sender, &mut report).await?;
        }
        server.stop().await?;
        if let Some(db_hook) = &db_hook {
            backlog_phase(&webhooker, &api, &sender, db_hook, &mut report).await?;
        }
    }
    if only.as_deref() == Some("end-to-end") {
        let webhooker = webhooker_on("data")?;
        let server = webhooker.start().await?;
        end_to_end_phase(
            &Api::new(sender.http.clone(), webhooker.port),
            &sender,
            &mut report,
        )
        .await?;
        server.stop().await?;
    }
    if only.as_deref() == Some("signatures") {
        let webhooker = webhooker_on("signatures")?;
        let server = webhooker.start().await?;
        let api = Api::new(sender.http.clone(), webhooker.port);
        signatures_phase(&api, &server, &wrk, &sender, &mut report).await?;
        server.stop().await?;
    }
    if only.as_deref() == Some("spread") {
        spread_phase(&webhooker_on("spread")?, &wrk, &sender, &mut report).await?;
    }
    if all || only.as_deref() == Some("many-webhooks") {
        many_webhooks_phase(&webhooker_on("many-webhooks")?, &wrk, &sender, &mut report).await?;
    }

    report.print(&wrk.version, started.elapsed());
    Ok(())
}

/// Resolves with the name of the first SIGINT or SIGTERM received.
async fn interrupted() -> &'static str {
    use tokio::signal::unix::{SignalKind, signal};
    match signal(SignalKind::terminate()) {
        Ok(mut term) => tokio::select! {
            _ = tokio::signal::ctrl_c() => "SIGINT",
            _ = term.recv() => "SIGTERM",
        },
        Err(_) => {
            let _ = tokio::signal::ctrl_c().await;
            "SIGINT"
        }
    }
}

// ---------------------------------------------------------------------------------------
// Phases
// ---------------------------------------------------------------------------------------

/// Phase 1: `wrk` against the no-storage baseline server. Returns req/s per connection count.
async fn baseline_phase(
    bins: &Binaries,
    wrk: &Wrk,
    report: &mut Report,
) -> Result<HashMap<u32, f64>> {
    progress("baseline: starting the no-storage server");
    let server = Server::baseline(bins, free_port()?).await?;
    let url = format!(
        "http://127.0.0.1:{}/webhook/{}",
        server.port,
        Uuid::new_v4()
    );
    let mut ceiling = HashMap::new();
    for connections in CONNECTIONS {
        progress(&format!("baseline: wrk at {connections} connections"));
        let result = wrk.run(&url, connections, server.pid).await?;
        report.wrk_row("baseline (no storage)", connections, &result, result.rps);
        ceiling.insert(connections, result.rps);
    }
    server.stop().await?;
    Ok(ceiling)
}

/// Phase 2: `wrk` against webhooker with a `database` target. Returns that webhook.
async fn ingest_phase(
    api: &Api,
    server: &Server,
    wrk: &Wrk,
    baseline: &HashMap<u32, f64>,
    report: &mut Report,
) -> Result<Webhook> {
    let hook = api
        .create_webhook("loadtest ingest", json!({"name": "db", "kind": "database"}))
        .await?;
    for connections in CONNECTIONS {
        progress(&format!("ingest: wrk at {connections} connections"));
        let result = wrk.run(&hook.url, connections, server.pid).await?;
        let ceiling = baseline.get(&connections).copied().unwrap_or(f64::NAN);
        report.wrk_row(
            "webhooker ingest, database target, fsync'd acks",
            connections,
            &result,
            ceiling,
        );
    }
    report.note(
        "Every webhooker ack is durable: the event and its deliveries are committed to redb \
         and synced (the commit journal's fsync) before the 200; concurrent requests, of one \
         webhook or many, share one fsync (group commit).",
    );

    Ok(hook)
}

/// Targets of the routing phase's webhook.
const ROUTED_TARGETS: usize = 10;
/// Rounds of the routing phase; each runs every setup twice, in palindromic order.
const ROUTING_ROUNDS: usize = 2;

/// GitHub event kinds, one per routed target: in the "one of ten" setup, target i wants
/// kind i, and the requests (`pull_request`) match one target.
const ROUTED_KINDS: [&str; ROUTED_TARGETS] = [
    "push",
    "issues",
    "release",
    "pull_request",
    "fork",
    "star",
    "watch",
    "create",
    "delete",
    "deployment",
];

/// A GitHub `pull_request` delivery of 1.2 KiB, as the routing phase sends it (the same
/// body as the routing benchmark's).
fn pull_request_body() -> String {
    include_str!("../../../../benches/github-pull-request.json")
        .trim()
        .to_owned()
}

/// The routing phase's setups of the ten targets.
#[derive(Clone, Copy, PartialEq)]
enum Routing {
    /// No filters: every target gets every event.
    None,
    /// Five conditions per target, all holding: every condition of every target is read.
    AllMatch,
    /// Five conditions per target, the second naming that target's event kind: one target
    /// matches, nine are skipped.
    OneOfTen,
}

impl Routing {
    /// The filter of target `i`.
    fn filter(self, i: usize) -> Value {
        let kinds = match self {
            Routing::None => return Value::Null,
            Routing::AllMatch => json!(["push", "pull_request"]),
            Routing::OneOfTen => json!([ROUTED_KINDS[i]]),
        };
        json!({"all": [
            {"method": "POST"},
            {"header": "X-GitHub-Event", "in": kinds},
            {"header": "User-Agent", "prefix": "GitHub-Hookshot/"},
            {"json": "/action", "in": ["opened", "reopened", "synchronize"]},
            {"json": "/pull_request/additions", "gt": 10},
        ]})
    }

    fn name(self) -> &'static str {
        match self {
            Routing::None => "no filters",
            Routing::AllMatch => "five conditions each, all holding",
            Routing::OneOfTen => "five conditions each, one target matching",
        }
    }
}

/// Phase 3: what per-target filters cost ingest. One webhook with ten `database` targets
/// takes GitHub-like requests at 64 connections, its targets without filters, with five
/// conditions each (method, two headers, two JSON paths) that all hold (every condition
/// read, the same rows stored as without filters: the filters' cost alone), and with
/// filters that send each event to one target (nine skipped deliveries instead of nine
/// delivered ones). The setups run in palindromic order (A B C C B A), so a drift as the
/// file grows favours none of them.
async fn routing_phase(api: &Api, server: &Server, wrk: &Wrk, report: &mut Report) -> Result<()> {
    let hook = api.create_webhook("loadtest routing", Value::Null).await?;
    let mut targets = Vec::with_capacity(ROUTED_TARGETS);
    for i in 0..ROUTED_TARGETS {
        let target = api
            .call(
                reqwest::Method::POST,
                &format!("/webhooks/{}/targets", hook.id),
                Some(&json!({"name": format!("db {i}"), "kind": "database"})),
            )
            .await
            .context("adding a routed target")?;
        targets.push(
            target["id"]
                .as_str()
                .context("target without id")?
                .to_owned(),
        );
    }
    let body = pull_request_body();
    let headers = [
        ("Content-Type", "application/json"),
        ("X-GitHub-Event", "pull_request"),
        ("User-Agent", "GitHub-Hookshot/044aadd"),
    ];
    // The first seconds on an empty file run faster than any later ones (a shallow tree):
    // a run that is not counted.
    progress("routing: warm-up");
    wrk.run_json(&hook.url, 64, server.pid, &body, &headers)
        .await?;
    let setups = [Routing::None, Routing::AllMatch, Routing::OneOfTen];
    // (setup, req/s, server CPU µs per request) of every run.
    let mut runs: Vec<(Routing, f64, f64)> = Vec::new();
    for round in 0..ROUTING_ROUNDS {
        for setup in setups.iter().chain(setups.iter().rev()).copied() {
            for (i, t) in targets.iter().enumerate() {
                api.call(
                    reqwest::Method::PATCH,
                    &format!("/webhooks/{}/targets/{t}", hook.id),
                    Some(&json!({ "filter": setup.filter(i) })),
                )
                .await
                .context("setting a target's filter")?;
            }
            progress(&format!(
                "routing: round {} of {ROUTING_ROUNDS}, {}",
                round + 1,
                setup.name()
            ));
            let result = wrk
                .run_json(&hook.url, 64, server.pid, &body, &headers)
                .await?;
            ensure!(
                result.problems.is_empty(),
                "routing run: {}",
                result.problems.join("; ")
            );
            let cpu = result
                .cpu
                .as_ref()
                .map_or(f64::NAN, |c| c.server_user_us + c.server_system_us);
            runs.push((setup, result.rps, cpu));
            // The filters did what they say: the newest event went to all targets, or to
            // the one whose kind it is.
            let page = api
                .call(
                    reqwest::Method::GET,
                    &format!("/webhooks/{}/events?per_page=1", hook.id),
                    None,
                )
                .await?;
            let deliveries = page["events"][0]["deliveries"]
                .as_array()
                .context("event without deliveries")?;
            let skipped = deliveries
                .iter()
                .filter(|d| d["status"] == "skipped")
                .count();
            let expected = if setup == Routing::OneOfTen {
                ROUTED_TARGETS - 1
            } else {
                0
            };
            ensure!(
                deliveries.len() == ROUTED_TARGETS && skipped == expected,
                "{}: {skipped} of {} deliveries skipped, expected {expected}",
                setup.name(),
                deliveries.len()
            );
        }
    }
    let of = |setup: Routing| -> (f64, f64, String) {
        let mine: Vec<_> = runs.iter().filter(|r| r.0 == setup).collect();
        let n = mine.len() as f64;
        let list = mine
            .iter()
            .map(|r| format!("{} ({:.1} µs)", fmt_count(r.1), r.2))
            .collect::<Vec<_>>()
            .join(" / ");
        (
            mine.iter().map(|r| r.1).sum::<f64>() / n,
            mine.iter().map(|r| r.2).sum::<f64>() / n,
            list,
        )
    };
    let (base_rps, base_cpu, base_list) = of(Routing::None);
    for setup in [Routing::AllMatch, Routing::OneOfTen] {
        let (rps, cpu, _) = of(setup);
        report.text_row(
            &format!("ingest, 10 targets, {} vs no filters", setup.name()),
            format!(
                "{} vs {} req/s ({:+.1}%); server CPU {cpu:.1} vs {base_cpu:.1} µs per request",
                fmt_count(rps),
                fmt_count(base_rps),
                100.0 * (rps / base_rps - 1.0),
            ),
        );
    }
    report.note(format!(
        "Routing: one webhook with {ROUTED_TARGETS} database targets, GitHub-like 1.2 KiB \
         requests at 64 connections, {ROUTING_ROUNDS} rounds in palindromic order (req/s and \
         the server's CPU per request): no filters {base_list}; all holding {}; one target \
         matching {}.",
        of(Routing::AllMatch).2,
        of(Routing::OneOfTen).2
    ));
    Ok(())
}

/// Rounds of the signatures phase; each runs both setups twice (A B B A).
const SIGNATURE_ROUNDS: usize = 2;
/// Events of each end-to-end run of the signatures phase.
const SIGNED_E2E_EVENTS: usize = 10_000;

/// Mean of the `(on, value)` pairs whose flag is `on`.
fn mean_of(runs: &[(bool, f64)], on: bool) -> f64 {
    let mine: Vec<f64> = runs.iter().filter(|r| r.0 == on).map(|r| r.1).collect();
    mine.iter().sum::<f64>() / mine.len().max(1) as f64
}

/// The runs with flag `on`, as "a / b / c" of `show(value)`.
fn list_of(runs: &[(bool, f64)], on: bool, show: impl Fn(f64) -> String) -> String {
    runs.iter()
        .filter(|r| r.0 == on)
        .map(|r| show(r.1))
        .collect::<Vec<_>>()
        .join(" / ")
}

/// "on vs off rate (±%); server CPU on vs off µs per `what` (±%)", from runs flagged on or
/// off.
fn on_against_off(rates: &[(bool, f64)], cpus: &[(bool, f64)], unit: &str, what: &str) -> String {
    let (off, on) = (mean_of(rates, false), mean_of(rates, true));
    let (cpu_off, cpu_on) = (mean_of(cpus, false), mean_of(cpus, true));
    format!(
        "{} vs {} {unit} ({:+.1}%); server CPU {cpu_on:.1} vs {cpu_off:.1} µs per {what} \
         ({:+.1}%)",
        fmt_count(on),
        fmt_count(off),
        100.0 * (on / off - 1.0),
        100.0 * (cpu_on / cpu_off - 1.0),
    )
}

/// Phase 4: what sender verification costs ingest and what signing costs delivery, each
/// against itself switched off on the same server, in alternating runs (A B B A per
/// round, so a drift as the files grow favours neither). Ingest: the same GitHub-signed
/// requests at 64 connections to one webhook, its verification off and on. Delivery:
/// bursts to one http target at the in-process sink, its signing off and on; each burst
/// is delivered in full before the next starts, and the server's CPU time per delivered
/// event is read from `/proc` beside the rate.
async fn signatures_phase(
    api: &Api,
    server: &Server,
    wrk: &Wrk,
    sender: &Sender,
    report: &mut Report,
) -> Result<()> {
    let secret = "loadtest verification secret";
    let hook = api
        .create_webhook(
            "loadtest verification",
            json!({"name": "db", "kind": "database"}),
        )
        .await?;
    let signature = github_signature(secret, &event_body())?;
    progress("signatures: ingest warm-up");
    wrk.run_with_header(&hook.url, 64, server.pid, "X-Hub-Signature-256", &signature)
        .await?;
    // (verification on, req/s) and (on, server CPU µs per request) of every run.
    let (mut rates, mut cpus) = (Vec::new(), Vec::new());
    for round in 0..SIGNATURE_ROUNDS {
        for verify in [false, true, true, false] {
            let verification = if verify {
                json!({"kind": "github", "secret": secret})
            } else {
                json!({"kind": "none"})
            };
            api.call(
                reqwest::Method::PATCH,
                &format!("/webhooks/{}", hook.id),
                Some(&json!({ "verification": verification })),
            )
            .await
            .context("switching verification")?;
            progress(&format!(
                "signatures: round {} of {SIGNATURE_ROUNDS}, ingest, verification {}",
                round + 1,
                if verify { "on" } else { "off" }
            ));
            let result = wrk
                .run_with_header(&hook.url, 64, server.pid, "X-Hub-Signature-256", &signature)
                .await?;
            ensure!(
                result.problems.is_empty(),
                "verified ingest: {}",
                result.problems.join("; ")
            );
            let cpu = result
                .cpu
                .as_ref()
                .map_or(f64::NAN, |c| c.server_user_us + c.server_system_us);
            rates.push((verify, result.rps));
            cpus.push((verify, cpu));
        }
    }
    report.text_row(
        "ingest at 64 connections, GitHub signature verified vs not",
        on_against_off(&rates, &cpus, "req/s", "request"),
    );
    report.note(format!(
        "Verification: {SIGNATURE_ROUNDS} rounds (off, on, on, off) of the same GitHub-signed \
         requests at 64 connections: off {}; on {}.",
        list_of(&rates, false, fmt_count),
        list_of(&rates, true, fmt_count),
    ));

    let sink = Sink::start(0, Duration::ZERO).await?;
    let signed = api
        .create_webhook(
            "loadtest signing",
            json!({
                "name": "sink", "kind": "http", "url": sink.url(),
                "max_in_flight": E2E_MAX_IN_FLIGHT, "max_retries": "unlimited",
            }),
        )
        .await?;
    let webhook = api
        .call(
            reqwest::Method::GET,
            &format!("/webhooks/{}", signed.id),
            None,
        )
        .await?;
    let target = webhook["targets"]
        .as_array()
        .and_then(|t| t.first())
        .and_then(|t| t["id"].as_str())
        .context("the signing webhook has no target")?
        .to_owned();
    progress("signatures: delivery warm-up");
    let warm = sender.burst(&signed.url, WARMUP_EVENTS).await?;
    sink.wait_for(warm.acked, DELIVERY_DEADLINE).await;
    // (signing on, events/s delivered) and (on, server CPU µs per delivered event).
    let (mut rates, mut cpus) = (Vec::new(), Vec::new());
    for round in 0..SIGNATURE_ROUNDS {
        for sign in [false, true, true, false] {
            api.call(
                reqwest::Method::PATCH,
                &format!("/webhooks/{}/targets/{target}", signed.id),
                Some(&json!({ "signing": sign })),
            )
            .await
            .context("switching signing")?;
            progress(&format!(
                "signatures: round {} of {SIGNATURE_ROUNDS}, delivery, signing {}",
                round + 1,
                if sign { "on" } else { "off" }
            ));
            sink.reset();
            let signed_before = sink.signed();
            let before = CpuSample::take(server.pid)?;
            let started = Instant::now();
            let burst = sender.burst(&signed.url, SIGNED_E2E_EVENTS).await?;
            let delivered = sink.wait_for(burst.acked, DELIVERY_DEADLINE).await;
            let after = CpuSample::take(server.pid)?;
            ensure!(
                burst.failures.count == 0 && delivered == burst.acked,
                "signing run: {delivered} of {} acked events delivered, {} sends failed",
                burst.acked,
                burst.failures.count
            );
            let signed_now = sink.signed() - signed_before;
            ensure!(
                (signed_now > 0) == sign,
                "signing {sign}: {signed_now} signed requests arrived"
            );
            let window = sink.last_receipt().map_or(Duration::ZERO, |last| {
                last.saturating_duration_since(started)
            });
            let cpu = after.since(&before, delivered as u64);
            rates.push((sign, delivered as f64 / window.as_secs_f64()));
            cpus.push((sign, cpu.server_user_us + cpu.server_system_us));
        }
    }
    report.text_row(
        "end to end, http target, signed vs not",
        on_against_off(&rates, &cpus, "events/s", "event"),
    );
    report.note(format!(
        "Signing: {SIGNATURE_ROUNDS} rounds (off, on, on, off) of {} events from {SENDERS} \
         senders to one http target, each delivered in full before the next: off {} events/s \
         ({} µs CPU per event); on {} ({}).",
        fmt_count(SIGNED_E2E_EVENTS as f64),
        list_of(&rates, false, fmt_count),
        list_of(&cpus, false, |c| format!("{c:.1}")),
        list_of(&rates, true, fmt_count),
        list_of(&cpus, true, |c| format!("{c:.1}")),
    ));
    Ok(())
}

/// Phase 5: delivery through an `http` target to an in-process sink.
async fn end_to_end_phase(api: &Api, sender: &Sender, report: &mut Report) -> Result<()> {
    let sink = Sink::start(0, Duration::ZERO).await?;
    let hook = api
        .create_webhook(
            "loadtest end to end",
            json!({
                "name": "sink", "kind": "http", "url": sink.url(),
                "max_in_flight": E2E_MAX_IN_FLIGHT, "max_retries": "unlimited",
            }),
        )
        .await?;

    progress(&format!(
        "end to end: {E2E_EVENTS} events from {SENDERS} senders"
    ));
    let started = Instant::now();
    let burst = sender.burst(&hook.url, E2E_EVENTS).await?;
    report.send_failures("end to end throughput", &burst.failures);
    let delivered = sink.wait_for(burst.acked, DELIVERY_DEADLINE).await;
    let window = sink.last_receipt().map_or(Duration::ZERO, |last| {
        last.saturating_duration_since(started)
    });
    let rate = delivered as f64 / window.as_secs_f64();
    let mut ack_ms = burst.ack_ms;
    report.row([
        "end to end, http target, fan-out 1".into(),
        format!("{SENDERS} senders"),
        format!("{} events/s delivered", fmt_count(rate)),
        fmt_ms(percentile(&mut ack_ms, 50.0)),
        fmt_ms(percentile(&mut ack_ms, 99.0)),
        String::new(),
    ]);
    report.note(format!(
        "End to end: {} of {} acked events delivered in {:.2} s from the first send \
         (ingest alone took {:.2} s, {} acks/s); its p50/p99 are send → 200 at the sender. \
         Target max_in_flight = {E2E_MAX_IN_FLIGHT}.",
        fmt_count(delivered as f64),
        fmt_count(burst.acked as f64),
        window.as_secs_f64(),
        burst.elapsed.as_secs_f64(),
        fmt_count(burst.acked as f64 / burst.elapsed.as_secs_f64()),
    ));
    if delivered < burst.acked {
        report.note(format!(
            "End to end: only {delivered} of {} acked events reached the sink within {} s; \
             the rate above counts those.",
            burst.acked,
            DELIVERY_DEADLINE.as_secs()
        ));
    }

    sink.reset();
    progress(&format!(
        "end to end: {PACED_RATE} events/s for {} s",
        PACED_DURATION.as_secs()
    ));
    let paced = sender.paced(&hook.url, PACED_RATE, PACED_DURATION).await?;
    report.send_failures("paced latency", &paced.failures);
    sink.wait_for(paced.samples.len(), DELIVERY_DEADLINE).await;
    report_latencies(&paced, &sink, report);
    Ok(())
}

/// How long the slow receivers of the slow-receivers phase take to answer.
const SLOW_LATENCY: Duration = Duration::from_secs(3);
/// Targets of the many-targets scenario, each answering after `MANY_LATENCY`.
const MANY_TARGETS: usize = 50;
const MANY_LATENCY: Duration = Duration::from_millis(200);
const MANY_MAX_IN_FLIGHT: u32 = 10;
/// Events sent to the many-targets webhook: each becomes `MANY_TARGETS` deliveries.
const MANY_EVENTS: usize = 200;
/// Events queued for a receiver that never answers before the paced run beside it.
const HANGING_BACKLOG: usize = 1_000;
const HANGING_PACED_RATE: u32 = 500;

/// Phase 6: receivers that are slow, or hang, hold slots of their own and no thread; the
/// others are served as if they were not there.
async fn slow_receivers_phase(api: &Api, sender: &Sender, report: &mut Report) -> Result<()> {
    // A fast receiver beside two slow ones.
    let slow = Sink::start(0, SLOW_LATENCY).await?;
    for i in 0..2 {
        let hook = api
            .create_webhook(
                &format!("loadtest slow {i}"),
                json!({"name": "slow", "kind": "http", "url": slow.url(), "max_retries": "unlimited"}),
            )
            .await?;
        let burst = sender.burst(&hook.url, 50).await?;
        report.send_failures("slow receivers", &burst.failures);
    }
    let fast = Sink::start(0, Duration::ZERO).await?;
    let hook = api
        .create_webhook(
            "loadtest fast beside slow",
            json!({"name": "fast", "kind": "http", "url": fast.url()}),
        )
        .await?;
    progress("slow receivers: 50 events to a fast receiver beside two 3 s ones");
    let paced = sender.paced(&hook.url, 50, Duration::from_secs(1)).await?;
    report.send_failures("fast beside slow", &paced.failures);
    fast.wait_for(paced.samples.len(), DELIVERY_DEADLINE).await;
    let slow_answered_by_then = slow.distinct();
    let mut after_ack = ack_to_receipt_ms(&paced, &fast);
    report.row([
        "fast receiver beside two 3 s receivers (50 + 50 events)".into(),
        "50 events".into(),
        format!("{} of {} delivered", after_ack.len(), paced.samples.len()),
        fmt_ms(percentile(&mut after_ack, 50.0)),
        fmt_ms(percentile(&mut after_ack, 99.0)),
        format!(
            "max {} (ack → sink)",
            fmt_ms(percentile(&mut after_ack, 100.0))
        ),
    ]);
    report.note(format!(
        "Fast beside slow: the two slow receivers had received {slow_answered_by_then} of \
         their 100 events when the fast one had all of its own (each slow target holds \
         max_in_flight 10 requests for 3 s at a time)."
    ));
    drop(slow);

    // Many targets, each slow.
    let many = Sink::start(0, MANY_LATENCY).await?;
    let target = |i: usize| {
        json!({
            "name": format!("t{i}"), "kind": "http", "url": many.url(),
            "max_in_flight": MANY_MAX_IN_FLIGHT, "max_retries": "unlimited",
        })
    };
    let hook = api
        .create_webhook("loadtest many targets", target(0))
        .await?;
    for i in 1..MANY_TARGETS {
        api.call(
            reqwest::Method::POST,
            &format!("/webhooks/{}/targets", hook.id),
            Some(&target(i)),
        )
        .await
        .context("adding a target")?;
    }
    progress(&format!(
        "slow receivers: {MANY_EVENTS} events to {MANY_TARGETS} targets answering after {} ms",
        MANY_LATENCY.as_millis()
    ));
    let burst = sender.burst(&hook.url, MANY_EVENTS).await?;
    report.send_failures("many targets", &burst.failures);
    let expected = (burst.acked * MANY_TARGETS) as u64;
    let got = many.wait_for_requests(expected, DELIVERY_DEADLINE).await;
    let window = match (many.first_request(), many.last_request()) {
        (Some(first), Some(last)) => last.saturating_duration_since(first),
        _ => Duration::ZERO,
    };
    let cap = MANY_TARGETS as f64 * f64::from(MANY_MAX_IN_FLIGHT) / MANY_LATENCY.as_secs_f64();
    report.row([
        format!(
            "{MANY_TARGETS} targets answering after {} ms, max_in_flight {MANY_MAX_IN_FLIGHT}",
            MANY_LATENCY.as_millis()
        ),
        format!("{} deliveries", fmt_count(expected as f64)),
        format!(
            "{} deliveries/s",
            fmt_count(got as f64 / window.as_secs_f64().max(1e-3))
        ),
        String::new(),
        String::new(),
        format!("the caps allow {}/s", fmt_count(cap)),
    ]);
    if got < expected {
        report.note(format!(
            "Many targets: only {got} of {expected} deliveries arrived within {} s.",
            DELIVERY_DEADLINE.as_secs()
        ));
    }
    drop(many);

    // A receiver that never answers (its requests time out after 10 s) beside a fast one.
    let hanging = Sink::start(0, Duration::from_secs(3600)).await?;
    let fast = Sink::start(0, Duration::ZERO).await?;
    let hook = api
        .create_webhook(
            "loadtest hanging",
            json!({"name": "hanging", "kind": "http", "url": hanging.url(), "max_retries": "unlimited"}),
        )
        .await?;
    api.call(
        reqwest::Method::POST,
        &format!("/webhooks/{}/targets", hook.id),
        Some(&json!({"name": "fast", "kind": "http", "url": fast.url()})),
    )
    .await
    .context("adding a target")?;
    progress(&format!(
        "slow receivers: {HANGING_BACKLOG} events for a receiver that never answers, then \
         {HANGING_PACED_RATE} events/s to it and a fast one"
    ));
    let burst = sender.burst(&hook.url, HANGING_BACKLOG).await?;
    report.send_failures("hanging backlog", &burst.failures);
    fast.wait_for(burst.acked, DELIVERY_DEADLINE).await;
    fast.reset();
    let paced = sender
        .paced(&hook.url, HANGING_PACED_RATE, PACED_DURATION)
        .await?;
    report.send_failures("beside a hanging receiver", &paced.failures);
    fast.wait_for(paced.samples.len(), DELIVERY_DEADLINE).await;
    let mut after_ack = ack_to_receipt_ms(&paced, &fast);
    report.row([
        format!(
            "fast target beside a hanging one ({HANGING_BACKLOG} queued), ack → sink at {HANGING_PACED_RATE} ev/s"
        ),
        "paced".into(),
        format!("{} of {} delivered", after_ack.len(), paced.samples.len()),
        fmt_ms(percentile(&mut after_ack, 50.0)),
        fmt_ms(percentile(&mut after_ack, 99.0)),
        format!("max {}", fmt_ms(percentile(&mut after_ack, 100.0))),
    ]);
    report.note(format!(
        "Hanging receiver: it received {} requests in all (max_in_flight 10, a 10 s timeout \
         each), while the fast target of the same webhook kept up.",
        hanging.requests()
    ));
    Ok(())
}

/// Ack → first receipt of each paced event the sink saw, in ms (a receipt a hair before
/// the ack counts as 0).
fn ack_to_receipt_ms(paced: &Paced, sink: &Sink) -> Vec<f64> {
    paced
        .samples
        .iter()
        .filter_map(|sample| {
            let receipt = sink.receipt(sample.event_id)?;
            Some(ms(receipt.saturating_duration_since(sample.acked)))
        })
        .collect()
}

/// Webhooks of the many-webhooks phase, of which `CROWD_BACKLOGS` have a target that is
/// down with `CROWD_BACKLOG_EVENTS` events each; then grown to `CROWD_RESTART`.
const CROWD: usize = 1_000;
const CROWD_BACKLOGS: usize = 100;
const CROWD_BACKLOG_EVENTS: usize = 10;
const CROWD_RESTART: usize = 10_000;
/// Open descriptors the server gets in this phase (soft and hard limit).
const CROWD_FILE_LIMIT: u32 = 1024;
/// Files webhooker keeps open at most (its default `MAX_OPEN_EVENT_FILES`).
const CROWD_OPEN_FILES: usize = 64;
/// Webhooks created (and sent an event) at once.
const CROWD_CONCURRENCY: usize = 16;

/// Phase 8: what a webhook costs when there are many. Runs a fresh process on its own data
/// directory under `ulimit -n 1024`.
async fn many_webhooks_phase(
    webhooker: &Webhooker,
    wrk: &Wrk,
    sender: &Sender,
    report: &mut Report,
) -> Result<()> {
    progress("many webhooks: one webhook first");
    let server = webhooker.start_with_file_limit(CROWD_FILE_LIMIT).await?;
    let api = Api::new(sender.http.clone(), webhooker.port);
    let db_target = json!({"name": "db", "kind": "database"});
    let first = api.create_webhook("crowd 0", db_target.clone()).await?;
    sender.post_event(&first.url).await?;
    sleep(Duration::from_secs(1)).await;
    let one = ProcStats::read(server.pid)?;

    progress(&format!(
        "many webhooks: {CROWD} webhooks, {CROWD_BACKLOGS} with a target that is down"
    ));
    let dead_port = free_port()?;
    let dead = json!({
        "name": "offline", "kind": "http", "max_retries": "unlimited",
        "url": format!("http://127.0.0.1:{dead_port}/sink"),
    });
    let mut hooks = vec![first];
    hooks.extend(
        create_crowd(&api, sender, 1..CROWD, |i| {
            if i <= CROWD_BACKLOGS {
                (dead.clone(), CROWD_BACKLOG_EVENTS)
            } else {
                (db_target.clone(), 1)
            }
        })
        .await?,
    );
    sleep(Duration::from_secs(2)).await;
    let crowd = ProcStats::read(server.pid)?;
    report.row([
        format!(
            "{CROWD} webhooks, {CROWD_BACKLOGS} with a backlog: threads / RSS / open descriptors"
        ),
        format!("ulimit -n {CROWD_FILE_LIMIT}"),
        format!(
            "threads {} → {}, RSS {} → {}, descriptors {} → {}",
            one.threads,
            crowd.threads,
            fmt_mib(one.rss_kib),
            fmt_mib(crowd.rss_kib),
            one.fds,
            crowd.fds
        ),
        String::new(),
        String::new(),
        format!("1 webhook → {CROWD}"),
    ]);

    progress("many webhooks: ingest, 1 webhook × 64 connections, 8 × 8 and 64 × 1");
    let one_hook = wrk.run(&hooks[0].url, 64, server.pid).await?;
    let urls =
        |n: usize| -> Vec<String> { hooks[CROWD - n..].iter().map(|h| h.url.clone()).collect() };
    let spread = wrk.run_spread(&urls(8), 64, server.pid).await?;
    let wide = wrk.run_spread(&urls(64), 64, server.pid).await?;
    for (what, result) in [
        ("1 webhook × 64", &one_hook),
        ("8 webhooks × 8", &spread),
        ("64 webhooks × 1", &wide),
    ] {
        report.row([
            format!("ingest among {CROWD} webhooks, {what} connections"),
            "64".into(),
            fmt_count(result.rps),
            fmt_ms(result.p50_ms),
            fmt_ms(result.p99_ms),
            String::new(),
        ]);
    }

    progress("many webhooks: the first event to webhooks whose files are closed");
    let mut first_event_ms = Vec::new();
    // The oldest webhooks' files were closed long ago to make room for newer ones.
    for hook in &hooks[CROWD_BACKLOGS + 1..CROWD_BACKLOGS + 201] {
        let sent = Instant::now();
        sender.post_event(&hook.url).await?;
        first_event_ms.push(ms(sent.elapsed()));
    }
    report.row([
        "first event to a webhook whose file is closed".into(),
        "1".into(),
        format!("{} webhooks, one after another", first_event_ms.len()),
        fmt_ms(percentile(&mut first_event_ms, 50.0)),
        fmt_ms(percentile(&mut first_event_ms, 99.0)),
        format!("at most {CROWD_OPEN_FILES} files open"),
    ]);

    progress(&format!(
        "many webhooks: growing to {CROWD_RESTART} webhooks"
    ));
    let grow_started = Instant::now();
    // Without a target: a target would double the configuration writes, and this part
    // measures the restart, not the creation.
    create_crowd(&api, sender, CROWD..CROWD_RESTART, |_| (Value::Null, 1)).await?;
    let grew_in = grow_started.elapsed();
    progress(&format!(
        "many webhooks: restarting with {CROWD_RESTART} webhooks, the target back up"
    ));
    // Measured, not required: a slow exit is reported in the notes, and the process is
    // killed (which it must survive anyway).
    let stopped = server.stop().await;
    let sink = Sink::start(dead_port, Duration::ZERO).await?;
    let server = webhooker.start_with_file_limit(CROWD_FILE_LIMIT).await?;
    let listening = server
        .listening_at
        .saturating_duration_since(server.spawned_at);
    let backlog = CROWD_BACKLOGS * CROWD_BACKLOG_EVENTS;
    let resumed = sink.wait_for(backlog, DRAIN_DEADLINE).await;
    let all_resumed = sink
        .last_receipt()
        .map(|at| at.saturating_duration_since(server.spawned_at));
    let after = ProcStats::read(server.pid)?;
    report.row([
        format!("{CROWD_RESTART} webhooks: restart to listening / backlog resumed"),
        format!("ulimit -n {CROWD_FILE_LIMIT}"),
        format!(
            "{} / {resumed} of {backlog} backlog events delivered by {}; RSS {}, threads {}, descriptors {}",
            fmt_secs(Some(listening)),
            fmt_secs(all_resumed),
            fmt_mib(after.rss_kib),
            after.threads,
            after.fds
        ),
        String::new(),
        String::new(),
        String::new(),
    ]);
    report.note(format!(
        "Many webhooks: a fresh process on its own data directory, started under `ulimit -n \
         {CROWD_FILE_LIMIT}` (soft and hard). Each webhook has one target and got one event \
         (those with a backlog, {CROWD_BACKLOG_EVENTS}, for an http target whose port is \
         closed); created {CROWD_CONCURRENCY} at a time through the API. Growing from \
         {CROWD} to {CROWD_RESTART} webhooks took {:.1} s. The restart row is measured from \
         spawning the process; the backlog's target listens again before it starts. \
         SIGTERM → exit with {CROWD_RESTART} webhooks: {}.",
        grew_in.as_secs_f64(),
        match &stopped {
            Ok(took) => format!("{:.2} s", took.as_secs_f64()),
            Err(e) => format!("{e:#}"),
        }
    ));
    server.stop().await?;
    Ok(())
}

/// `LOADTEST_ONLY=spread`: ingest to 1 webhook × 64 connections against N webhooks sharing
/// the 64 (`LOADTEST_SPREAD_WEBHOOKS`, 8 by default), alternating (one, N, N, one, twice),
/// on a fresh process with N webhooks: the quick A/B of the commit path when many files
/// are written at once.
async fn spread_phase(
    webhooker: &Webhooker,
    wrk: &Wrk,
    sender: &Sender,
    report: &mut Report,
) -> Result<()> {
    let spread_over: usize = match std::env::var("LOADTEST_SPREAD_WEBHOOKS") {
        Ok(n) => n.parse().context("LOADTEST_SPREAD_WEBHOOKS")?,
        Err(_) => 8,
    };
    progress(&format!("spread: {spread_over} webhooks"));
    let server = webhooker.start().await?;
    let api = Api::new(sender.http.clone(), webhooker.port);
    let db_target = json!({"name": "db", "kind": "database"});
    let hooks = create_crowd(&api, sender, 0..spread_over, |_| (db_target.clone(), 1)).await?;
    let eight: Vec<String> = hooks.iter().map(|h| h.url.clone()).collect();
    // Uncounted: files and caches warm, as in the routing phase.
    wrk.run_spread(&eight, 64, server.pid).await?;
    let mut rps: HashMap<bool, Vec<f64>> = HashMap::new();
    for spread in [false, true, true, false, false, true, true, false] {
        let result = if spread {
            wrk.run_spread(&eight, 64, server.pid).await?
        } else {
            wrk.run(&hooks[0].url, 64, server.pid).await?
        };
        progress(&format!(
            "spread: {} {:.0} req/s, {:.1} µs server CPU/req",
            if spread { "spread" } else { "1 × 64" },
            result.rps,
            result
                .cpu
                .as_ref()
                .map_or(0.0, |c| c.server_user_us + c.server_system_us)
        ));
        rps.entry(spread).or_default().push(result.rps);
    }
    let spread_name = format!("{spread_over} webhooks × {}", 64 / spread_over.max(1));
    for (spread, what) in [(false, "1 webhook × 64"), (true, spread_name.as_str())] {
        let runs = rps.get(&spread).map_or(&[][..], Vec::as_slice);
        let mean = runs.iter().sum::<f64>() / runs.len().max(1) as f64;
        report.row([
            format!("ingest, {what} connections, mean of {}", runs.len()),
            "64".into(),
            fmt_count(mean),
            String::new(),
            String::new(),
            String::new(),
        ]);
    }
    server.stop().await?;
    Ok(())
}

/// Creates the webhooks `range` through the API, each with the target `spec(i)` gives
/// (`null`: none) and that many events, `CROWD_CONCURRENCY` at a time; returns them in order.
async fn create_crowd(
    api: &Api,
    sender: &Sender,
    range: std::ops::Range<usize>,
    spec: impl Fn(usize) -> (Value, usize),
) -> Result<Vec<Webhook>> {
    let permits = Arc::new(Semaphore::new(CROWD_CONCURRENCY));
    let mut creating = JoinSet::new();
    for i in range {
        let (api, sender, permits) = (api.clone(), sender.clone(), permits.clone());
        let (target, events) = spec(i);
        creating.spawn(async move {
            let _permit = permits.acquire_owned().await?;
            let hook = api.create_webhook(&format!("crowd {i}"), target).await?;
            for _ in 0..events {
                sender.post_event(&hook.url).await?;
            }
            Ok::<_, anyhow::Error>((i, hook))
        });
    }
    let mut hooks = Vec::new();
    while let Some(done) = creating.join_next().await {
        hooks.push(done.context("a webhook task failed")??);
    }
    hooks.sort_by_key(|(i, _)| *i);
    Ok(hooks.into_iter().map(|(_, hook)| hook).collect())
}

/// Phase 7: a 100k backlog for a target that is down, then a restart with the target back.
/// Starts a fresh process first, so idle and peak memory belong to this phase alone.
async fn backlog_phase(
    webhooker: &Webhooker,
    api: &Api,
    sender: &Sender,
    warmup_hook: &Webhook,
    report: &mut Report,
) -> Result<()> {
    progress("backlog: restarting webhooker for a fresh process");
    let server = webhooker.start().await?;
    let dead_port = free_port()?;
    let hook = api
        .create_webhook(
            "loadtest backlog",
            json!({
                "name": "offline", "kind": "http",
                "url": format!("http://127.0.0.1:{dead_port}/sink"),
                "max_retries": "unlimited",
            }),
        )
        .await?;
    sender.burst(&warmup_hook.url, WARMUP_EVENTS).await?;
    sleep(Duration::from_secs(1)).await;
    let idle = ProcStats::read(server.pid)?;

    progress(&format!(
        "backlog: {BACKLOG_EVENTS} events for a target that is down"
    ));
    let mut burst = sender.burst(&hook.url, BACKLOG_EVENTS).await?;
    let loaded = ProcStats::read(server.pid)?;
    let stored = api.event_total(&hook.id).await?;
    let stop_took = server.stop().await?;
    let label = format!("backlog {}k", burst.acked / 1000);
    report.send_failures(&label, &burst.failures);
    report.row([
        format!("{label}: ingest while the target is down"),
        format!("{SENDERS} senders"),
        fmt_count(burst.acked as f64 / burst.elapsed.as_secs_f64()),
        fmt_ms(percentile(&mut burst.ack_ms, 50.0)),
        fmt_ms(percentile(&mut burst.ack_ms, 99.0)),
        String::new(),
    ]);
    report.text_row(
        &format!("{label}: idle → loaded threads / RSS"),
        format!(
            "threads {} → {}, RSS {} → {} MiB (peak {} MiB)",
            idle.threads,
            loaded.threads,
            fmt_mib(idle.rss_kib),
            fmt_mib(loaded.rss_kib),
            fmt_mib(loaded.peak_rss_kib),
        ),
    );
    report.note(format!(
        "Backlog: {} events stored for the webhook (API total); SIGTERM → exit took {:.2} s \
         with the backlog queued. Idle = after {} warm-up events and a 1 s pause; loaded = \
         right after the last ack; peak = VmHWM of the process. The target keeps the default \
         max_in_flight (10).",
        fmt_count(stored as f64),
        stop_took.as_secs_f64(),
        fmt_count(WARMUP_EVENTS as f64),
    ));

    let expected = usize::try_from(stored).context("event total does not fit in usize")?;
    drain_backlog(webhooker, dead_port, expected, &label, report).await
}

/// Brings the target up on `port`, restarts webhooker and times the delivery of the
/// `expected` stored events.
async fn drain_backlog(
    webhooker: &Webhooker,
    port: u16,
    expected: usize,
    label: &str,
    report: &mut Report,
) -> Result<()> {
    progress("backlog: target back up, restarting webhooker");
    let sink = Sink::start(port, Duration::ZERO).await?;
    let server = webhooker.start().await?;
    let delivered = sink.wait_for(expected, DRAIN_DEADLINE).await;
    let since_spawn =
        |at: Option<Instant>| at.map(|at| at.saturating_duration_since(server.spawned_at));
    let all = if delivered == expected {
        format!(
            "all {} {}",
            fmt_count(expected as f64),
            fmt_secs(since_spawn(sink.last_receipt()))
        )
    } else {
        format!(
            "only {} of {} within {} s",
            fmt_count(delivered as f64),
            fmt_count(expected as f64),
            DRAIN_DEADLINE.as_secs()
        )
    };
    report.text_row(
        &format!("{label}: restart to listening / first delivery / all delivered"),
        format!(
            "{} / {} / {all}",
            fmt_secs(since_spawn(Some(server.listening_at))),
            fmt_secs(since_spawn(sink.first_request())),
        ),
    );
    let arrived_by = [1, 10, 30].map(|secs| {
        let by = server.spawned_at + Duration::from_secs(secs);
        format!("{} by {secs} s", fmt_count(sink.arrived_before(by) as f64))
    });
    report.note(format!(
        "Backlog drain: {} sink requests for {} distinct events after the restart ({} after \
         the spawn). The breaker had deferred them while the target was down; the restarted \
         process's breaker starts closed, so its startup sweep takes them at once and they \
         drain at the target's max_in_flight.",
        fmt_count(sink.requests() as f64),
        fmt_count(delivered as f64),
        arrived_by.join(", "),
    ));
    if let Err(e) = server.stop().await {
        report.note(format!("Final stop of webhooker: {e:#}"));
    }
    Ok(())
}

/// Adds the rows for the paced run: ack → receipt and send → receipt.
fn report_latencies(paced: &Paced, sink: &Sink, report: &mut Report) {
    let mut ack_to_receipt = Vec::with_capacity(paced.samples.len());
    let mut send_to_receipt = Vec::with_capacity(paced.samples.len());
    let (mut clamped, mut missing) = (0, 0);
    for sample in &paced.samples {
        let Some(receipt) = sink.receipt(sample.event_id) else {
            missing += 1;
            continue;
        };
        let after_ack = receipt
            .checked_duration_since(sample.acked)
            .unwrap_or_else(|| {
                clamped += 1;
                Duration::ZERO
            });
        ack_to_receipt.push(ms(after_ack));
        send_to_receipt.push(ms(receipt.saturating_duration_since(sample.sent)));
    }
    let achieved = paced.samples.len() as f64 / paced.send_window.as_secs_f64();
    let label = format!("at {} ev/s", fmt_count(f64::from(PACED_RATE)));
    for (what, values) in [
        ("ack → sink", &mut ack_to_receipt),
        ("send → sink", &mut send_to_receipt),
    ] {
        report.row([
            format!("{what} {label}"),
            "paced".into(),
            format!("{} ev/s acked", fmt_count(achieved)),
            fmt_ms(percentile(values, 50.0)),
            fmt_ms(percentile(values, 99.0)),
            format!("max {}", fmt_ms(percentile(values, 100.0))),
        ]);
    }
    report.note(format!(
        "Latency at a fixed rate: {} events acked, {} not seen by the sink. Delivery starts \
         right after the commit, so the sink can see an event a hair before its 200 reaches \
         the sender: {} negative ack → sink times were clamped to 0.",
        fmt_count(paced.samples.len() as f64),
        fmt_count(missing as f64),
        fmt_count(clamped as f64),
    ));
}

// ---------------------------------------------------------------------------------------
// Processes
// ---------------------------------------------------------------------------------------

/// The release binaries this program drives, found next to its own executable.
struct Binaries {
    webhooker: PathBuf,
    baseline: PathBuf,
}

impl Binaries {
    fn locate() -> Result<Binaries> {
        let me = std::env::current_exe().context("finding the loadtest executable")?;
        let dir = me
            .parent()
            .context("the loadtest executable has no directory")?;
        let bins = Binaries {
            webhooker: dir.join("webhooker"),
            baseline: dir.join("baseline"),
        };
        for bin in [&bins.webhooker, &bins.baseline] {
            ensure!(
                bin.is_file(),
                "{} not found; run `bash scripts/loadtest.sh`, which builds them",
                bin.display()
            );
        }
        Ok(bins)
    }
}

/// How webhooker is (re)started: always the same binary, data directory and port, with a
/// known admin password, loopback targets allowed and quiet logs.
struct Webhooker {
    binary: PathBuf,
    data_dir: PathBuf,
    port: u16,
}

impl Webhooker {
    async fn start(&self) -> Result<Server> {
        let mut command = Command::new(&self.binary);
        self.configure(&mut command);
        Server::spawn("webhooker", command, self.port).await
    }

    /// Starts it with at most `files` open descriptors (soft and hard limit).
    async fn start_with_file_limit(&self, files: u32) -> Result<Server> {
        let mut command = Command::new("sh");
        command
            .arg("-c")
            .arg(format!("ulimit -n {files} && exec \"$0\""))
            .arg(&self.binary);
        self.configure(&mut command);
        Server::spawn("webhooker", command, self.port).await
    }

    fn configure(&self, command: &mut Command) {
        command
            .env_clear()
            .env("PATH", std::env::var_os("PATH").unwrap_or_default())
            .env("DATA_DIR", &self.data_dir)
            .env("PORT", self.port.to_string())
            .env("HOST", "127.0.0.1")
            .env("WEBHOOKER_ADMIN_PASSWORD", ADMIN_PASSWORD)
            .env("ALLOWED_TARGET_NETWORKS", "127.0.0.0/8")
            .env("RUST_LOG", "warn");
    }
}

/// A server child process that printed its `listening on` line. Dropping it kills the
/// process (`kill_on_drop`); [`Server::stop`] is the graceful way.
struct Server {
    name: &'static str,
    child: Child,
    pid: u32,
    port: u16,
    spawned_at: Instant,
    listening_at: Instant,
}

impl Server {
    /// Starts the no-storage baseline server on `127.0.0.1:port`.
    async fn baseline(bins: &Binaries, port: u16) -> Result<Server> {
        let mut command = Command::new(&bins.baseline);
        command.env("PORT", port.to_string());
        Server::spawn("baseline", command, port).await
    }

    /// Spawns `command` and waits (30 s at most) for `listening on` on its stdout, which
    /// is drained for the rest of its life. Its stderr goes to ours.
    async fn spawn(name: &'static str, mut command: Command, port: u16) -> Result<Server> {
        command
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .kill_on_drop(true);
        let spawned_at = Instant::now();
        let mut child = command
            .spawn()
            .with_context(|| format!("starting {name}"))?;
        let pid = child
            .id()
            .with_context(|| format!("{name} exited at once"))?;
        let stdout = child.stdout.take().context("child stdout is not piped")?;
        let listening = watch_stdout(stdout);
        let listening_at = match timeout(STARTUP_DEADLINE, listening).await {
            Ok(Ok(Ok(at))) => at,
            Ok(Ok(Err(output))) => bail!("{name} exited before listening; its output:\n{output}"),
            Ok(Err(_)) => bail!("{name}: the stdout watcher stopped"),
            Err(_) => bail!(
                "{name} did not print `listening on` within {}s",
                STARTUP_DEADLINE.as_secs()
            ),
        };
        Ok(Server {
            name,
            child,
            pid,
            port,
            spawned_at,
            listening_at,
        })
    }

    /// SIGTERM, then waits up to 15 s for a clean exit. Returns how long the exit took.
    async fn stop(mut self) -> Result<Duration> {
        let asked = Instant::now();
        let status = Command::new("kill")
            .args(["-TERM", &self.pid.to_string()])
            .status()
            .await
            .context("running `kill`")?;
        ensure!(
            status.success(),
            "`kill -TERM {}` failed: {status}",
            self.pid
        );
        match timeout(STOP_DEADLINE, self.child.wait()).await {
            Ok(exit) => {
                let exit = exit.with_context(|| format!("waiting for {} to exit", self.name))?;
                ensure!(
                    exit.success(),
                    "{} exited with {exit} on SIGTERM",
                    self.name
                );
                Ok(asked.elapsed())
            }
            // Returning drops `self`, which kills the process.
            Err(_) => bail!(
                "{} did not exit within {}s of SIGTERM; killed",
                self.name,
                STOP_DEADLINE.as_secs()
            ),
        }
    }
}

/// Drains a child's stdout. The receiver gets the instant of the first line containing
/// `listening on`, or everything printed before the stream ended without one.
fn watch_stdout(stdout: ChildStdout) -> oneshot::Receiver<Result<Instant, String>> {
    const KEEP: usize = 16 * 1024;
    let (tx, rx) = oneshot::channel();
    tokio::spawn(async move {
        let mut lines = BufReader::new(stdout).lines();
        let mut tx = Some(tx);
        let mut before = String::new();
        while let Ok(Some(line)) = lines.next_line().await {
            if tx.is_none() {
                continue;
            }
            if line.contains("listening on") {
                if let Some(tx) = tx.take() {
                    let _ = tx.send(Ok(Instant::now()));
                }
            } else if before.len() < KEEP {
                before.push_str(&line);
                before.push('\n');
            }
        }
        if let Some(tx) = tx {
            let _ = tx.send(Err(before));
        }
    });
    rx
}

/// Thread count and memory of a process, from `/proc`.
struct ProcStats {
    threads: usize,
    rss_kib: u64,
    peak_rss_kib: u64,
    /// Open file descriptors.
    fds: usize,
}

impl ProcStats {
    fn read(pid: u32) -> Result<ProcStats> {
        let threads = std::fs::read_dir(format!("/proc/{pid}/task"))
            .with_context(|| format!("listing /proc/{pid}/task"))?
            .count();
        let status = std::fs::read_to_string(format!("/proc/{pid}/status"))
            .with_context(|| format!("reading /proc/{pid}/status"))?;
        let field = |name: &str| -> Result<u64> {
            status
                .lines()
                .find_map(|l| l.strip_prefix(name))
                .and_then(|v| v.split_whitespace().next())
                .and_then(|v| v.parse().ok())
                .with_context(|| format!("no {name} in /proc/{pid}/status"))
        };
        let fds = std::fs::read_dir(format!("/proc/{pid}/fd"))
            .with_context(|| format!("listing /proc/{pid}/fd"))?
            .count();
        Ok(ProcStats {
            threads,
            rss_kib: field("VmRSS:")?,
            peak_rss_kib: field("VmHWM:")?,
            fds,
        })
    }
}

/// A free TCP port on 127.0.0.1 (bound, then released for the caller).
fn free_port() -> Result<u16> {
    let listener =
        std::net::TcpListener::bind("127.0.0.1:0").context("finding a free local port")?;
    Ok(listener
        .local_addr()
        .context("reading a local address")?
        .port())
}

/// A directory under the system temp dir, removed when dropped.
struct TempDir(PathBuf);

impl TempDir {
    fn create() -> Result<TempDir> {
        let path = std::env::temp_dir().join(format!("webhooker-loadtest-{}", Uuid::now_v7()));
        std::fs::create_dir_all(&path).with_context(|| format!("creating {}", path.display()))?;
        Ok(TempDir(path))
    }

    fn path(&self) -> &Path {
        &self.0
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        if let Err(e) = std::fs::remove_dir_all(&self.0) {
            eprintln!("loadtest: could not remove {}: {e}", self.0.display());
        }
    }
}

// ---------------------------------------------------------------------------------------
// wrk
// ---------------------------------------------------------------------------------------

/// The `wrk` load generator with a Lua script POSTing the 1 KiB body.
struct Wrk {
    script: PathBuf,
    version: String,
}

/// What one `wrk` run measured.
struct WrkResult {
    /// Requests completed in the run.
    requests: u64,
    rps: f64,
    p50_ms: f64,
    p99_ms: f64,
    /// `Non-2xx or 3xx responses` and `Socket errors` lines, if any.
    problems: Vec<String>,
    /// Where the CPU went during the run.
    cpu: Option<CpuUse>,
}

/// CPU counters at one instant: a server process's and the whole machine's.
struct CpuSample {
    /// The server's user and system time, in clock ticks.
    server_user: u64,
    server_system: u64,
    /// All CPUs: ticks busy, and ticks idle or waiting for I/O.
    busy: u64,
    idle: u64,
}

/// Where the CPU went between two samples.
struct CpuUse {
    /// The server's CPU time per request, user and system, in µs.
    server_user_us: f64,
    server_system_us: f64,
    /// Share of the machine's CPU time that was idle or waiting for I/O.
    idle_share: f64,
}

/// Length of a clock tick in `/proc` (`USER_HZ`, 100 on every Linux this runs on).
const TICK_US: f64 = 10_000.0;

impl CpuSample {
    /// Reads `/proc/{pid}/stat` (fields 14 and 15: utime, stime) and the `cpu` line of
    /// `/proc/stat`.
    fn take(pid: u32) -> Result<CpuSample> {
        let stat = std::fs::read_to_string(format!("/proc/{pid}/stat"))
            .with_context(|| format!("reading /proc/{pid}/stat"))?;
        // The command name may hold spaces; the fields after it are space-separated.
        let fields: Vec<&str> = stat
            .rsplit_once(')')
            .map(|(_, rest)| rest.split_whitespace().collect())
            .unwrap_or_default();
        let field = |i: usize| -> Result<u64> {
            fields
                .get(i)
                .and_then(|v| v.parse().ok())
                .with_context(|| format!("no field {i} in /proc/{pid}/stat"))
        };
        let machine = std::fs::read_to_string("/proc/stat").context("reading /proc/stat")?;
        let ticks: Vec<u64> = machine
            .lines()
            .next()
            .and_then(|l| l.strip_prefix("cpu "))
            .context("no cpu line in /proc/stat")?
            .split_whitespace()
            .filter_map(|v| v.parse().ok())
            .collect();
        ensure!(ticks.len() >= 5, "short cpu line in /proc/stat");
        // user nice system idle iowait irq softirq steal guest guest_nice; guest time is
        // already counted in user, so only the first eight add up to the total.
        let idle = ticks[3] + ticks[4];
        Ok(CpuSample {
            // After ")": state is field 0, so utime (14th overall) is 11 and stime 12.
            server_user: field(11)?,
            server_system: field(12)?,
            busy: ticks.iter().take(8).sum::<u64>() - idle,
            idle,
        })
    }

    /// The CPU used since `before`, per request for the server.
    fn since(&self, before: &CpuSample, requests: u64) -> CpuUse {
        let per_request = |ticks: u64| ticks as f64 * TICK_US / requests.max(1) as f64;
        let busy = self.busy.saturating_sub(before.busy);
        let idle = self.idle.saturating_sub(before.idle);
        CpuUse {
            server_user_us: per_request(self.server_user.saturating_sub(before.server_user)),
            server_system_us: per_request(self.server_system.saturating_sub(before.server_system)),
            idle_share: idle as f64 / (busy + idle).max(1) as f64,
        }
    }
}

impl Wrk {
    /// Checks that `wrk` runs and writes the Lua script into `dir`.
    async fn prepare(dir: &Path) -> Result<Wrk> {
        let output = Command::new("wrk")
            .arg("-v")
            .output()
            .await
            .context("running `wrk -v` (is wrk installed? scripts/loadtest.sh installs it)")?;
        let version = String::from_utf8_lossy(&output.stdout)
            .lines()
            .next()
            .and_then(|l| l.split_whitespace().take(2).last())
            .unwrap_or("unknown")
            .to_owned();
        let script = dir.join("post-1k.lua");
        // The same 1 KiB JSON document as `event_body()`.
        let lua = format!(
            "wrk.method = \"POST\"\n\
             wrk.body = '{{\"p\":\"' .. string.rep(\"x\", {}) .. '\"}}'\n\
             wrk.headers[\"Content-Type\"] = \"application/json\"\n",
            BODY_BYTES - 8
        );
        std::fs::write(&script, lua).with_context(|| format!("writing {}", script.display()))?;
        Ok(Wrk { script, version })
    }

    /// Like [`run`](Self::run), each connection's requests going to the `urls` in turn
    /// (same host and port).
    async fn run_spread(
        &self,
        urls: &[String],
        connections: u32,
        server_pid: u32,
    ) -> Result<WrkResult> {
        let first = urls.first().context("no URL to load")?;
        let paths: Vec<String> = urls
            .iter()
            .map(|u| {
                reqwest::Url::parse(u)
                    .map(|u| format!("\"{}\"", u.path()))
                    .context("an entrypoint URL")
            })
            .collect::<Result<_>>()?;
        let script = self.script.with_file_name("post-1k-spread.lua");
        let lua = format!(
            "{}\npaths = {{{}}}\ni = 0\n\
             request = function()\n  i = i % #paths + 1\n  return wrk.format(nil, paths[i])\nend\n",
            std::fs::read_to_string(&self.script).context("reading the wrk script")?,
            paths.join(", ")
        );
        std::fs::write(&script, lua).with_context(|| format!("writing {}", script.display()))?;
        self.run_script(&script, first, connections, server_pid)
            .await
    }

    /// Like [`run`](Self::run), every request carrying the header `name: value`.
    async fn run_with_header(
        &self,
        url: &str,
        connections: u32,
        server_pid: u32,
        name: &str,
        value: &str,
    ) -> Result<WrkResult> {
        let script = self.script.with_file_name("post-1k-header.lua");
        let lua = format!(
            "{}wrk.headers[\"{name}\"] = \"{value}\"\n",
            std::fs::read_to_string(&self.script).context("reading the wrk script")?
        );
        std::fs::write(&script, lua).with_context(|| format!("writing {}", script.display()))?;
        self.run_script(&script, url, connections, server_pid).await
    }

    /// Like [`run`](Self::run) with this body and these headers.
    async fn run_json(
        &self,
        url: &str,
        connections: u32,
        server_pid: u32,
        body: &str,
        headers: &[(&str, &str)],
    ) -> Result<WrkResult> {
        let script = self.script.with_file_name("post-json.lua");
        // A Lua long string holds the body as it is (no escapes); the body has no "]==]".
        ensure!(
            !body.contains("]==]"),
            "the body cannot be a Lua long string"
        );
        let mut lua = format!("wrk.method = \"POST\"\nwrk.body = [==[{body}]==]\n");
        for (name, value) in headers {
            lua.push_str(&format!("wrk.headers[\"{name}\"] = \"{value}\"\n"));
        }
        std::fs::write(&script, lua).with_context(|| format!("writing {}", script.display()))?;
        self.run_script(&script, url, connections, server_pid).await
    }

    /// Runs `wrk --latency` for 10 s at `connections` (two threads, one for c=1), and
    /// reads the CPU time `server_pid` and the whole machine spent meanwhile.
    async fn run(&self, url: &str, connections: u32, server_pid: u32) -> Result<WrkResult> {
        self.run_script(&self.script, url, connections, server_pid)
            .await
    }

    async fn run_script(
        &self,
        script: &Path,
        url: &str,
        connections: u32,
        server_pid: u32,
    ) -> Result<WrkResult> {
        let threads = connections.min(2);
        // Without /proc (not Linux) the run still counts; only the CPU table stays empty.
        let before = CpuSample::take(server_pid).ok();
        let output = Command::new("wrk")
            .arg(format!("-t{threads}"))
            .arg(format!("-c{connections}"))
            .arg(format!("-d{}s", WRK_DURATION.as_secs()))
            .arg("--latency")
            .arg("-s")
            .arg(script)
            .arg(url)
            .stdin(Stdio::null())
            .kill_on_drop(true)
            .output();
        let output = timeout(WRK_DURATION + WRK_GRACE, output)
            .await
            .context("wrk ran past its deadline")?
            .context("running wrk")?;
        let stdout = String::from_utf8_lossy(&output.stdout);
        ensure!(
            output.status.success(),
            "wrk failed ({}): {}{}",
            output.status,
            stdout,
            String::from_utf8_lossy(&output.stderr)
        );
        let mut result =
            parse_wrk(&stdout).with_context(|| format!("reading wrk's output:\n{stdout}"))?;
        result.cpu = before.and_then(|before| {
            let after = CpuSample::take(server_pid).ok()?;
            Some(after.since(&before, result.requests))
        });
        Ok(result)
    }
}

/// Reads Requests/sec, the 50% and 99% latencies and any error lines from `wrk --latency`.
fn parse_wrk(output: &str) -> Result<WrkResult> {
    let (mut requests, mut rps, mut p50_ms, mut p99_ms) = (None, None, None, None);
    let mut problems = Vec::new();
    for line in output.lines().map(str::trim) {
        if let Some((n, _)) = line.split_once(" requests in ") {
            requests = Some(n.trim().parse().context("requests in")?);
        } else if let Some(v) = line.strip_prefix("Requests/sec:") {
            rps = Some(v.trim().parse().context("Requests/sec")?);
        } else if let Some(v) = line.strip_prefix("50%") {
            p50_ms = Some(parse_wrk_duration(v.trim())?);
        } else if let Some(v) = line.strip_prefix("99%") {
            p99_ms = Some(parse_wrk_duration(v.trim())?);
        } else if line.starts_with("Non-2xx") || line.starts_with("Socket errors") {
            problems.push(line.to_owned());
        }
    }
    Ok(WrkResult {
        requests: requests.context("no `requests in` line")?,
        rps: rps.context("no Requests/sec line")?,
        p50_ms: p50_ms.context("no 50% latency line")?,
        p99_ms: p99_ms.context("no 99% latency line")?,
        problems,
        cpu: None,
    })
}

/// `wrk` durations such as `812.00us`, `1.25ms`, `2.01s` or `1.02m`, in milliseconds.
fn parse_wrk_duration(text: &str) -> Result<f64> {
    let split = text
        .find(|c: char| c.is_ascii_alphabetic())
        .with_context(|| format!("no unit in {text:?}"))?;
    let (number, unit) = text.split_at(split);
    let value: f64 = number
        .parse()
        .with_context(|| format!("bad number in {text:?}"))?;
    let scale = match unit {
        "us" => 0.001,
        "ms" => 1.0,
        "s" => 1_000.0,
        "m" => 60_000.0,
        "h" => 3_600_000.0,
        _ => bail!("unknown unit in {text:?}"),
    };
    Ok(value * scale)
}

// ---------------------------------------------------------------------------------------
// HTTP: the JSON API, the sender and the sink
// ---------------------------------------------------------------------------------------

/// The 1 KiB JSON document every event carries.
/// GitHub's `X-Hub-Signature-256` value for `body` under `secret`.
fn github_signature(secret: &str, body: &[u8]) -> Result<String> {
    use hmac::{KeyInit, Mac};
    let mut mac = hmac::Hmac::<sha2::Sha256>::new_from_slice(secret.as_bytes())
        .map_err(|e| anyhow::anyhow!("HMAC key: {e}"))?;
    mac.update(body);
    let digest = mac.finalize().into_bytes();
    let hex: String = digest.iter().map(|b| format!("{b:02x}")).collect();
    Ok(format!("sha256={hex}"))
}

fn event_body() -> Bytes {
    Bytes::from(format!(r#"{{"p":"{}"}}"#, "x".repeat(BODY_BYTES - 8)))
}

/// A webhook created for the test: its id and the URL of its default entrypoint.
struct Webhook {
    id: String,
    url: String,
}

/// webhooker's JSON API, as `admin` over HTTP Basic.
#[derive(Clone)]
struct Api {
    http: reqwest::Client,
    base: String,
}

impl Api {
    fn new(http: reqwest::Client, port: u16) -> Api {
        Api {
            http,
            base: format!("http://127.0.0.1:{port}/api/v1"),
        }
    }

    /// Sends a request and returns the JSON answer; anything but 2xx is an error.
    async fn call(
        &self,
        method: reqwest::Method,
        path: &str,
        body: Option<&Value>,
    ) -> Result<Value> {
        let url = format!("{}{path}", self.base);
        let mut request = self
            .http
            .request(method.clone(), &url)
            .basic_auth("admin", Some(ADMIN_PASSWORD));
        if let Some(body) = body {
            request = request
                .header("content-type", "application/json")
                .body(serde_json::to_vec(body).context("encoding a JSON body")?);
        }
        let response = request
            .send()
            .await
            .with_context(|| format!("{method} {url}"))?;
        let status = response.status();
        let bytes = response
            .bytes()
            .await
            .with_context(|| format!("reading the answer to {method} {url}"))?;
        ensure!(
            status.is_success(),
            "{method} {url}: {status} {}",
            String::from_utf8_lossy(&bytes)
        );
        serde_json::from_slice(&bytes).with_context(|| format!("{method} {url}: not JSON"))
    }

    /// Creates a webhook (with its default entrypoint) and one target.
    async fn create_webhook(&self, name: &str, target: Value) -> Result<Webhook> {
        let hook = self
            .call(
                reqwest::Method::POST,
                "/webhooks",
                Some(&json!({"name": name})),
            )
            .await?;
        let id = hook["id"].as_str().context("created webhook has no id")?;
        let url = hook["entrypoints"][0]["url"]
            .as_str()
            .context("created webhook has no entrypoint url")?;
        // `null`: a webhook without a target.
        if !target.is_null() {
            self.call(
                reqwest::Method::POST,
                &format!("/webhooks/{id}/targets"),
                Some(&target),
            )
            .await
            .context("adding a target")?;
        }
        Ok(Webhook {
            id: id.to_owned(),
            url: url.to_owned(),
        })
    }

    /// Number of events stored for a webhook.
    async fn event_total(&self, id: &str) -> Result<u64> {
        let page = self
            .call(
                reqwest::Method::GET,
                &format!("/webhooks/{id}/events?per_page=1"),
                None,
            )
            .await?;
        page["total"].as_u64().context("event list has no total")
    }
}

/// One 200 from ingest: the event id and when the answer's head arrived.
struct Ack {
    event_id: Uuid,
    at: Instant,
}

/// Failed sends: how many, and the first error for the report.
#[derive(Default)]
struct Failures {
    count: usize,
    first: Option<String>,
}

impl Failures {
    fn add(&mut self, error: &anyhow::Error) {
        self.count += 1;
        self.first.get_or_insert_with(|| format!("{error:#}"));
    }

    fn merge(&mut self, other: Failures) {
        self.count += other.count;
        if self.first.is_none() {
            self.first = other.first;
        }
    }
}

/// The result of [`Sender::burst`].
#[derive(Default)]
struct Burst {
    acked: usize,
    failures: Failures,
    elapsed: Duration,
    /// Send → 200, per acked event, in ms.
    ack_ms: Vec<f64>,
}

/// One paced event: when it was sent and acked.
struct Sample {
    event_id: Uuid,
    sent: Instant,
    acked: Instant,
}

/// The result of [`Sender::paced`].
struct Paced {
    samples: Vec<Sample>,
    failures: Failures,
    /// From the first send to the last answer.
    send_window: Duration,
}

/// Posts events to entrypoints, the way a webhook sender would.
#[derive(Clone)]
struct Sender {
    http: reqwest::Client,
    body: Bytes,
}

impl Sender {
    fn new() -> Result<Sender> {
        let http = reqwest::Client::builder()
            .no_proxy()
            .tcp_nodelay(true)
            .timeout(REQUEST_TIMEOUT)
            .build()
            .context("building the HTTP client")?;
        Ok(Sender {
            http,
            body: event_body(),
        })
    }

    /// Posts one event; only a 200 with an `event_id` counts.
    async fn post_event(&self, url: &str) -> Result<Ack> {
        let response = self
            .http
            .post(url)
            .header("content-type", "application/json")
            .body(self.body.clone())
            .send()
            .await
            .context("sending an event")?;
        let at = Instant::now();
        let status = response.status();
        let bytes = response
            .bytes()
            .await
            .context("reading the ingest answer")?;
        ensure!(
            status == StatusCode::OK,
            "ingest answered {status}: {}",
            String::from_utf8_lossy(&bytes)
        );
        let answer: Value = serde_json::from_slice(&bytes).context("ingest answer is not JSON")?;
        let event_id = answer["event_id"]
            .as_str()
            .and_then(|s| Uuid::parse_str(s).ok())
            .context("ingest answer has no event_id")?;
        Ok(Ack { event_id, at })
    }

    /// Sends `count` events from [`SENDERS`] concurrent loops, each sending its next event
    /// as soon as the previous one is answered. Stops at [`SEND_DEADLINE`].
    async fn burst(&self, url: &str, count: usize) -> Result<Burst> {
        let next = Arc::new(AtomicUsize::new(0));
        let started = Instant::now();
        let deadline = started + SEND_DEADLINE;
        let mut loops = JoinSet::new();
        for _ in 0..SENDERS {
            let (sender, url, next) = (self.clone(), url.to_owned(), next.clone());
            loops.spawn(async move {
                let mut part = Burst::default();
                while next.fetch_add(1, Ordering::Relaxed) < count && Instant::now() < deadline {
                    let sent = Instant::now();
                    match sender.post_event(&url).await {
                        Ok(ack) => {
                            part.acked += 1;
                            part.ack_ms.push(ms(ack.at - sent));
                        }
                        Err(e) => part.failures.add(&e),
                    }
                }
                part
            });
        }
        let mut total = Burst::default();
        while let Some(part) = loops.join_next().await {
            let part = part.context("a sender task failed")?;
            total.acked += part.acked;
            total.failures.merge(part.failures);
            total.ack_ms.extend(part.ack_ms);
        }
        total.elapsed = started.elapsed();
        ensure!(
            total.acked > 0,
            "no event was acked: {:?}",
            total.failures.first
        );
        Ok(total)
    }

    /// Sends `rate` events per second for `duration` from interval ticks, with at most
    /// [`PACED_MAX_IN_FLIGHT`] unanswered at once (beyond that the rate drops; the achieved
    /// rate is reported).
    async fn paced(&self, url: &str, rate: u32, duration: Duration) -> Result<Paced> {
        let total = u64::from(rate) * duration.as_secs();
        let mut ticks = tokio::time::interval(Duration::from_secs(1) / rate);
        let permits = Arc::new(Semaphore::new(PACED_MAX_IN_FLIGHT));
        let started = Instant::now();
        let deadline = started + SEND_DEADLINE;
        let mut requests = JoinSet::new();
        for _ in 0..total {
            ticks.tick().await;
            let permit = permits
                .clone()
                .acquire_owned()
                .await
                .context("the in-flight semaphore closed")?;
            if Instant::now() > deadline {
                break;
            }
            let (sender, url) = (self.clone(), url.to_owned());
            requests.spawn(async move {
                let _permit = permit;
                let sent = Instant::now();
                sender.post_event(&url).await.map(|ack| Sample {
                    event_id: ack.event_id,
                    sent,
                    acked: ack.at,
                })
            });
        }
        // Every request has REQUEST_TIMEOUT, so this ends.
        let mut paced = Paced {
            samples: Vec::with_capacity(usize::try_from(total).unwrap_or(0)),
            failures: Failures::default(),
            send_window: Duration::ZERO,
        };
        while let Some(done) = requests.join_next().await {
            match done.context("a paced request task failed")? {
                Ok(sample) => paced.samples.push(sample),
                Err(e) => paced.failures.add(&e),
            }
        }
        paced.send_window = started.elapsed();
        Ok(paced)
    }
}

/// What the sink saw: the first receipt of each event id, the request count, the first
/// request's instant.
#[derive(Default)]
struct SinkState {
    receipts: Mutex<HashMap<Uuid, Instant>>,
    requests: AtomicU64,
    /// Requests that carried a `webhook-signature` header.
    signed: AtomicU64,
    first_request: OnceLock<Instant>,
    last_request: Mutex<Option<Instant>>,
    /// How long each request waits before its answer (a slow receiver).
    delay: Duration,
}

/// An in-process HTTP receiver on 127.0.0.1 that answers 200 to everything and records
/// the `X-Webhooker-Event-Id` of each request. Stops serving when dropped.
struct Sink {
    addr: SocketAddr,
    state: Arc<SinkState>,
    server: tokio::task::JoinHandle<()>,
}

impl Sink {
    /// Listens on `127.0.0.1:port` (0 for any free port) and answers each request after
    /// `delay`.
    async fn start(port: u16, delay: Duration) -> Result<Sink> {
        let addr = SocketAddr::from(([127, 0, 0, 1], port));
        let listener = tokio::net::TcpListener::bind(addr)
            .await
            .with_context(|| format!("binding the sink to {addr}"))?;
        let addr = listener.local_addr().context("reading the sink address")?;
        let state = Arc::new(SinkState {
            delay,
            ..SinkState::default()
        });
        let app = Router::new()
            .fallback(receive)
            .with_state(Arc::clone(&state));
        let server = tokio::spawn(async move {
            if let Err(e) = axum::serve(listener, app).await {
                eprintln!("loadtest: sink stopped: {e}");
            }
        });
        Ok(Sink {
            addr,
            state,
            server,
        })
    }

    fn url(&self) -> String {
        format!("http://{}/sink", self.addr)
    }

    fn receipts(&self) -> std::sync::MutexGuard<'_, HashMap<Uuid, Instant>> {
        self.state
            .receipts
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
    }

    /// Forgets the receipts (not the request count or the first request).
    fn reset(&self) {
        self.receipts().clear();
    }

    fn distinct(&self) -> usize {
        self.receipts().len()
    }

    fn receipt(&self, event_id: Uuid) -> Option<Instant> {
        self.receipts().get(&event_id).copied()
    }

    /// When the most recent distinct event arrived.
    fn last_receipt(&self) -> Option<Instant> {
        self.receipts().values().max().copied()
    }

    /// How many distinct events arrived before `instant`.
    fn arrived_before(&self, instant: Instant) -> usize {
        self.receipts().values().filter(|&&at| at < instant).count()
    }

    fn first_request(&self) -> Option<Instant> {
        self.state.first_request.get().copied()
    }

    fn requests(&self) -> u64 {
        self.state.requests.load(Ordering::Relaxed)
    }

    fn signed(&self) -> u64 {
        self.state.signed.load(Ordering::Relaxed)
    }

    fn last_request(&self) -> Option<Instant> {
        *self
            .state
            .last_request
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
    }

    /// Waits until `count` requests arrived or `limit` passed; returns how many did.
    async fn wait_for_requests(&self, count: u64, limit: Duration) -> u64 {
        let deadline = Instant::now() + limit;
        while self.requests() < count && Instant::now() < deadline {
            sleep(Duration::from_millis(10)).await;
        }
        self.requests()
    }

    /// Waits until `count` distinct events arrived or `limit` passed; returns how many did.
    async fn wait_for(&self, count: usize, limit: Duration) -> usize {
        let deadline = Instant::now() + limit;
        while self.distinct() < count && Instant::now() < deadline {
            sleep(Duration::from_millis(10)).await;
        }
        self.distinct()
    }
}

impl Drop for Sink {
    fn drop(&mut self) {
        self.server.abort();
    }
}

/// The sink's only handler: records the event id and the instant, answers 200.
async fn receive(
    State(state): State<Arc<SinkState>>,
    headers: HeaderMap,
    _body: Bytes,
) -> StatusCode {
    let now = Instant::now();
    state.first_request.get_or_init(|| now);
    state.requests.fetch_add(1, Ordering::Relaxed);
    if headers.contains_key("webhook-signature") {
        state.signed.fetch_add(1, Ordering::Relaxed);
    }
    *state
        .last_request
        .lock()
        .unwrap_or_else(PoisonError::into_inner) = Some(now);
    let event_id = headers
        .get("x-webhooker-event-id")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| Uuid::parse_str(v).ok());
    if let Some(id) = event_id {
        state
            .receipts
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .entry(id)
            .or_insert(now);
    }
    if !state.delay.is_zero() {
        sleep(state.delay).await;
    }
    StatusCode::OK
}

// ---------------------------------------------------------------------------------------
// Report
// ---------------------------------------------------------------------------------------

/// The table rows and the notes under it.
#[derive(Default)]
struct Report {
    rows: Vec<[String; 6]>,
    /// One per `wrk` run: where the CPU went.
    cpu_rows: Vec<[String; 5]>,
    notes: Vec<String>,
}

impl Report {
    fn row(&mut self, cells: [String; 6]) {
        self.rows.push(cells);
    }

    /// A row whose only figure is text in the req/s column.
    fn text_row(&mut self, what: &str, text: String) {
        self.row([
            what.to_owned(),
            String::new(),
            text,
            String::new(),
            String::new(),
            String::new(),
        ]);
    }

    fn note(&mut self, text: impl Into<String>) {
        self.notes.push(text.into());
    }

    /// A `wrk` row; `ceiling` is the baseline's req/s at the same connection count.
    fn wrk_row(&mut self, what: &str, connections: u32, result: &WrkResult, ceiling: f64) {
        self.row([
            what.to_owned(),
            connections.to_string(),
            fmt_count(result.rps),
            fmt_ms(result.p50_ms),
            fmt_ms(result.p99_ms),
            format!("{:.0}%", 100.0 * result.rps / ceiling),
        ]);
        if let Some(cpu) = &result.cpu {
            self.cpu_rows.push([
                what.to_owned(),
                connections.to_string(),
                format!("{:.1}", cpu.server_user_us + cpu.server_system_us),
                format!("{:.1}", cpu.server_system_us),
                format!("{:.0}%", 100.0 * cpu.idle_share),
            ]);
        }
        for problem in &result.problems {
            self.note(format!(
                "{what} at {connections} connections: wrk says {problem}"
            ));
        }
    }

    fn send_failures(&mut self, what: &str, failures: &Failures) {
        if let Some(first) = &failures.first {
            self.note(format!(
                "{what}: {} sends failed; the first: {first}",
                failures.count
            ));
        }
    }

    fn print(&self, wrk_version: &str, wall: Duration) {
        println!("## webhooker load test\n");
        println!(
            "- command: `{COMMAND}` (this run: {:.0} s wall time)",
            wall.as_secs_f64()
        );
        println!("- machine: {}", machine_facts());
        println!(
            "- load: wrk {wrk_version} (-t2, -t1 at 1 connection, {} s per row, --latency) and \
             loadtest's own reqwest sender; every request is a POST of a {BODY_BYTES}-byte JSON \
             body; generator, server and sink share the machine",
            WRK_DURATION.as_secs()
        );
        println!();
        println!("| measurement | connections | req/s | p50 ms | p99 ms | vs baseline |");
        println!("|---|---|---|---|---|---|");
        for row in &self.rows {
            println!("| {} |", row.join(" | "));
        }
        println!();
        println!(
            "| wrk run | connections | server CPU µs per request | of which system | \
             machine idle or in iowait |"
        );
        println!("|---|---|---|---|---|");
        for row in &self.cpu_rows {
            println!("| {} |", row.join(" | "));
        }
        println!();
        for note in &self.notes {
            println!("- {note}");
        }
    }
}

/// `nproc`, `uname -r` and the CPU model, read from the system.
fn machine_facts() -> String {
    let cores = std::thread::available_parallelism().map_or(0, |n| n.get());
    let kernel = std::fs::read_to_string("/proc/sys/kernel/osrelease")
        .map(|s| s.trim().to_owned())
        .unwrap_or_else(|_| "unknown".into());
    let cpu = std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|info| {
            info.lines()
                .find_map(|l| l.strip_prefix("model name"))
                .map(|v| v.trim_start_matches([' ', '\t', ':']).to_owned())
        })
        .unwrap_or_else(|| "unknown CPU".into());
    format!("nproc {cores}, Linux {kernel} (uname -r), {cpu}")
}

/// Prints a progress line to stderr.
fn progress(message: &str) {
    eprintln!("loadtest: {message}");
}

/// Nearest-rank percentile (`p` in 0..=100) of `values`, which it sorts; NaN when empty.
fn percentile(values: &mut [f64], p: f64) -> f64 {
    if values.is_empty() {
        return f64::NAN;
    }
    values.sort_by(f64::total_cmp);
    let rank = (p / 100.0 * values.len() as f64).ceil() as usize;
    values[rank.clamp(1, values.len()) - 1]
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1_000.0
}

fn fmt_ms(value: f64) -> String {
    if value.is_nan() {
        "–".into()
    } else {
        format!("{value:.2}")
    }
}

fn fmt_secs(d: Option<Duration>) -> String {
    d.map_or_else(|| "never".into(), |d| format!("{:.2} s", d.as_secs_f64()))
}

fn fmt_mib(kib: u64) -> String {
    format!("{:.1}", kib as f64 / 1024.0)
}

/// A non-negative number rounded to an integer, with thousands separators.
fn fmt_count(value: f64) -> String {
    if !value.is_finite() {
        return "–".into();
    }
    let digits = format!("{:.0}", value.max(0.0));
    let mut out = String::new();
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i) % 3 == 0 {
            out.push(',');
        }
        out.push(c);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    const WRK_OUTPUT: &str = "Running 10s test @ http://127.0.0.1:1/webhook/x
  2 threads and 64 connections
  Thread Stats   Avg      Stdev     Max   +/- Stdev
    Latency     1.90ms    1.02ms  30.11ms   88.12%
    Req/Sec    17.01k     1.20k   19.52k    70.50%
  Latency Distribution
     50%  812.00us
     75%    2.20ms
     90%    3.01ms
     99%    1.02s
  338516 requests in 10.00s, 60.05MB read
  Non-2xx or 3xx responses: 3
Requests/sec:  33851.60
Transfer/sec:      6.00MB
";

    #[test]
    fn reads_wrk_output() {
        let r = parse_wrk(WRK_OUTPUT).unwrap();
        assert_eq!(r.requests, 338_516);
        assert!((r.rps - 33851.6).abs() < 1e-9);
        assert!((r.p50_ms - 0.812).abs() < 1e-9);
        assert!((r.p99_ms - 1020.0).abs() < 1e-9);
        assert_eq!(r.problems, ["Non-2xx or 3xx responses: 3"]);
    }

    #[test]
    fn cpu_sample_counts_this_process_burning_cpu() {
        let pid = std::process::id();
        let before = CpuSample::take(pid).unwrap();
        let ticks = |c: &CpuSample| c.server_user + c.server_system;
        // Burn CPU until /proc shows at least 3 more ticks (30 ms); bounded.
        let deadline = Instant::now() + Duration::from_secs(20);
        let mut x = 0u64;
        let after = loop {
            for i in 0..1_000_000u64 {
                x = std::hint::black_box(x.wrapping_mul(31).wrapping_add(i));
            }
            let now = CpuSample::take(pid).unwrap();
            if ticks(&now) >= ticks(&before) + 3 {
                break now;
            }
            assert!(Instant::now() < deadline, "no CPU time showed up in /proc");
        };
        let cpu = after.since(&before, 2);
        // Two "requests" share at least 30 ms.
        assert!(cpu.server_user_us + cpu.server_system_us >= 15_000.0);
        assert!((0.0..=1.0).contains(&cpu.idle_share));
    }

    #[test]
    fn body_is_one_kib_of_json() {
        let body = event_body();
        assert_eq!(body.len(), BODY_BYTES);
        serde_json::from_slice::<Value>(&body).unwrap();
    }

    #[test]
    fn percentiles_and_counts() {
        let mut v: Vec<f64> = (1..=100).map(f64::from).collect();
        assert_eq!(percentile(&mut v, 50.0), 50.0);
        assert_eq!(percentile(&mut v, 99.0), 99.0);
        assert_eq!(percentile(&mut v, 100.0), 100.0);
        assert_eq!(fmt_count(1234567.4), "1,234,567");
        assert_eq!(fmt_count(999.0), "999");
    }
}
