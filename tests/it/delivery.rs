//! Delivery engine tests against real loopback sinks (no mocks of the engine).

use std::time::Duration;

use serde_json::{Value, json};

use crate::support::receiver::{Receiver, Reply};
use crate::support::{TestApp, test_config, wait_until};

fn results(ev: &Value, i: usize) -> Vec<Value> {
    ev["deliveries"][i]["results"].as_array().unwrap().clone()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn happy_path_is_byte_identical_with_webhooker_headers() {
    let app = TestApp::start().await;
    let sink = Receiver::start().await;
    let (wh, url) = app.webhook("happy").await;
    app.target(
        &wh,
        json!({"name": "sink", "kind": "http", "url": sink.url("/in?x=1")}),
    )
    .await;
    let small: Vec<u8> = (0..=255u8).chain([0, 0, 0xff]).collect();
    let large: Vec<u8> = (0..40_000u32).map(|i| (i * 7 % 251) as u8).collect();
    for (method, body) in [
        (reqwest::Method::PUT, small),
        (reqwest::Method::POST, large),
    ] {
        let before = sink.count();
        let r = app
            .http
            .request(method.clone(), &url)
            .header("x-github-event", "push")
            .header("x-dup", "a")
            .header("x-dup", "b")
            .header("x-webhooker-event-id", "forged")
            .header("content-type", "application/octet-stream")
            .body(body.clone())
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200);
        let event_id = r.json::<Value>().await.unwrap()["event_id"]
            .as_str()
            .unwrap()
            .to_string();
        assert!(wait_until(Duration::from_secs(10), || async { sink.count() > before }).await);
        let got = sink.received().pop().unwrap();
        assert_eq!(got.method, method);
        assert_eq!(got.uri.path(), "/in");
        assert_eq!(got.body.as_ref(), body.as_slice(), "body is byte-identical");
        assert_eq!(got.header("x-github-event").as_deref(), Some("push"));
        assert_eq!(
            got.header("content-type").as_deref(),
            Some("application/octet-stream")
        );
        let dups: Vec<_> = got
            .headers
            .iter()
            .filter(|(k, _)| k == "x-dup")
            .map(|(_, v)| v.clone())
            .collect();
        assert_eq!(dups, vec![b"a".to_vec(), b"b".to_vec()]);
        assert_eq!(
            got.header("x-webhooker-event-id").as_deref(),
            Some(event_id.as_str())
        );
        assert_eq!(got.header("x-webhooker-attempt").as_deref(), Some("1"));
        let ev = app
            .wait_finished(&wh, &event_id, Duration::from_secs(10))
            .await;
        let d = &ev["deliveries"][0];
        assert_eq!(d["status"], "delivered");
        assert_eq!(
            got.header("x-webhooker-delivery-id").as_deref(),
            d["id"].as_str()
        );
        let r = &results(&ev, 0)[0];
        assert_eq!(r["status_code"], 200);
        assert_eq!(r["response_body"], "sink reply");
    }
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn retries_until_success_and_fails_fast_on_4xx() {
    let app = TestApp::start().await;
    let (wh, url) = app.webhook("retry").await;

    // 503, 503, 200: delivered on attempt 3, three results.
    let flaky = Receiver::start().await;
    flaky.script([Reply::status(503), Reply::status(503)]);
    let t = app
        .target(
            &wh,
            json!({"name": "flaky", "kind": "http", "url": flaky.url("/"), "max_retries": 5}),
        )
        .await;
    let id = app.send(&url, b"{}").await;
    let ev = app.wait_finished(&wh, &id, Duration::from_secs(10)).await;
    let d = &ev["deliveries"][0];
    assert_eq!(d["status"], "delivered");
    assert_eq!(d["attempts"], 3);
    let rs = results(&ev, 0);
    let codes: Vec<_> = rs
        .iter()
        .map(|r| r["status_code"].as_u64().unwrap())
        .collect();
    assert_eq!(codes, [503, 503, 200]);
    let attempts: Vec<_> = flaky
        .received()
        .iter()
        .map(|r| r.header("x-webhooker-attempt").unwrap())
        .collect();
    assert_eq!(attempts, ["1", "2", "3"]);
    app.api(
        reqwest::Method::DELETE,
        &format!("/webhooks/{wh}/targets/{t}"),
    )
    .send()
    .await
    .unwrap();

    // 400: failed after one attempt.
    let picky = Receiver::start().await;
    picky.set_default(Reply::status(400));
    let t = app
        .target(
            &wh,
            json!({"name": "picky", "kind": "http", "url": picky.url("/"), "max_retries": 5}),
        )
        .await;
    let id = app.send(&url, b"{}").await;
    let ev = app.wait_finished(&wh, &id, Duration::from_secs(10)).await;
    assert_eq!(ev["deliveries"][0]["status"], "failed");
    assert_eq!(ev["deliveries"][0]["attempts"], 1);
    assert_eq!(picky.count(), 1);
    app.api(
        reqwest::Method::DELETE,
        &format!("/webhooks/{wh}/targets/{t}"),
    )
    .send()
    .await
    .unwrap();

    // max_retries = 0 against a closed port: failed after one attempt, error recorded.
    let closed = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap();
    app.target(&wh, json!({"name": "gone", "kind": "http", "url": format!("http://{closed}/"), "max_retries": 0}))
        .await;
    let id = app.send(&url, b"{}").await;
    let ev = app.wait_finished(&wh, &id, Duration::from_secs(10)).await;
    assert_eq!(ev["deliveries"][0]["status"], "failed");
    assert_eq!(ev["deliveries"][0]["attempts"], 1);
    let err = results(&ev, 0)[0]["error"].as_str().unwrap().to_string();
    assert!(err.contains("connection"), "{err}");
    app.stop().await;
}

fn ms(rfc3339: &Value) -> i64 {
    rfc3339
        .as_str()
        .unwrap()
        .parse::<jiff::Timestamp>()
        .unwrap()
        .as_millisecond()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn retry_after_is_honoured_within_its_clamp() {
    let app = TestApp::start().await;
    let (wh, url) = app.webhook("retry-after").await;
    // A 1 s hint is longer than our 50 ms test backoff: it wins.
    let slow_down = Receiver::start().await;
    slow_down.script([Reply {
        status: 429,
        retry_after: Some("1".into()),
        delay: Duration::ZERO,
    }]);
    let t = app
        .target(
            &wh,
            json!({"name": "ra", "kind": "http", "url": slow_down.url("/"), "max_retries": 3}),
        )
        .await;
    let id = app.send(&url, b"{}").await;
    let ev = app.wait_finished(&wh, &id, Duration::from_secs(10)).await;
    assert_eq!(ev["deliveries"][0]["status"], "delivered");
    let got = slow_down.received();
    assert_eq!(got.len(), 2);
    let gap = got[1].at - got[0].at;
    assert!(
        gap >= Duration::from_millis(950),
        "second attempt came after {gap:?}"
    );
    app.api(
        reqwest::Method::DELETE,
        &format!("/webhooks/{wh}/targets/{t}"),
    )
    .send()
    .await
    .unwrap();

    // A one-hour hint is clamped to the target's max_backoff (2 s).
    let greedy = Receiver::start().await;
    greedy.set_default(Reply {
        status: 503,
        retry_after: Some("3600".into()),
        delay: Duration::ZERO,
    });
    app.target(&wh, json!({"name": "clamp", "kind": "http", "url": greedy.url("/"), "max_retries": 3, "max_backoff_secs": 2}))
        .await;
    let id = app.send(&url, b"{}").await;
    let ev = app
        .wait_event(&wh, &id, Duration::from_secs(10), |ev| {
            ev["deliveries"][0]["status"] == "retrying"
        })
        .await;
    let started = ms(&results(&ev, 0)[0]["started_at"]);
    let next = ms(&ev["deliveries"][0]["next_attempt_at"]);
    let wait = next - started;
    assert!(
        (1900..=2600).contains(&wait),
        "next attempt {wait} ms after the first, want ≈2000"
    );
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn breaker_stops_attempts_then_sends_one_probe() {
    let app = TestApp::start_with(|c| {
        c.engine.breaker_cooldown = Duration::from_millis(1500);
    })
    .await;
    let dead = Receiver::start().await;
    dead.set_default(Reply::status(503));
    let (wh, url) = app.webhook("breaker").await;
    app.target(
        &wh,
        json!({
            "name": "dead", "kind": "http", "url": dead.url("/"),
            "max_retries": "unlimited", "max_backoff_secs": 1, "max_in_flight": 1, "timeout_secs": 1
        }),
    )
    .await;
    for _ in 0..10 {
        app.send(&url, b"{}").await;
    }
    assert!(wait_until(Duration::from_secs(10), || async { dead.count() >= 5 }).await);
    // Open: nothing for most of the cooldown.
    tokio::time::sleep(Duration::from_millis(700)).await;
    assert_eq!(
        dead.count(),
        5,
        "attempts stop after 5 consecutive failures"
    );
    // Then exactly one half-open probe, which fails and re-opens the breaker.
    assert!(wait_until(Duration::from_secs(5), || async { dead.count() >= 6 }).await);
    tokio::time::sleep(Duration::from_millis(700)).await;
    assert_eq!(dead.count(), 6, "one probe per cooldown");
    // Deferrals spend no retry budget: no delivery has more attempts than were made.
    let page = app
        .get_json(&format!("/webhooks/{wh}/events?per_page=50"))
        .await;
    let attempts: u64 = page["events"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["deliveries"][0]["attempts"].as_u64().unwrap())
        .sum();
    assert_eq!(attempts, 6);
    // The receiver recovers: the probe closes the breaker and the backlog drains.
    dead.set_default(Reply::status(200));
    let ok = wait_until(Duration::from_secs(15), || async {
        let page = app
            .get_json(&format!("/webhooks/{wh}/events?per_page=50"))
            .await;
        page["events"]
            .as_array()
            .unwrap()
            .iter()
            .all(|e| e["deliveries"][0]["status"] == "delivered")
    })
    .await;
    assert!(ok, "backlog delivered after recovery");
    app.stop().await;
}

/// A half-open probe to a target that hangs is the only request until it times out: the
/// deliveries deferred behind it do not come due first and start a second probe.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hanging_probe_is_the_only_request_until_it_times_out() {
    let cooldown = Duration::from_millis(1500);
    let app = TestApp::start_with(|c| {
        c.engine.breaker_threshold = 1;
        c.engine.breaker_cooldown = cooldown;
    })
    .await;
    let hanging = Receiver::start().await;
    hanging.set_default(Reply::delayed(200, Duration::from_secs(60)));
    let (wh, url) = app.webhook("hanging").await;
    app.target(
        &wh,
        json!({
            "name": "hangs", "kind": "http", "url": hanging.url("/"), "timeout_secs": 1
        }),
    )
    .await;
    const SENT: usize = 3;
    for _ in 0..SENT {
        app.send(&url, b"{}").await;
    }
    // The first attempts time out together and open the breaker; then one probe per
    // cooldown, each of which times out in turn.
    let enough = SENT + 3;
    assert!(
        wait_until(Duration::from_secs(20), || async {
            hanging.count() >= enough
        })
        .await
    );
    let at: Vec<_> = hanging.received().iter().map(|r| r.at).collect();
    app.stop().await;
    for pair in at[SENT - 1..enough].windows(2) {
        let gap = pair[1] - pair[0];
        assert!(
            gap >= cooldown,
            "two requests {gap:?} apart while the breaker was open or probing"
        );
    }
}

/// An app for the breaker-recovery tests. Any failed attempt waits at least 96 s (120 s
/// minus 20% jitter): far beyond their deadlines, so only a closing breaker can bring such
/// a delivery forward.
async fn outage_app(threshold: u32, cooldown: Duration, scheduler_capacity: usize) -> TestApp {
    TestApp::start_with(|c| {
        c.engine.retry_base = Duration::from_secs(120);
        c.engine.breaker_threshold = threshold;
        c.engine.breaker_cooldown = cooldown;
        c.engine.scheduler_capacity = scheduler_capacity;
    })
    .await
}

/// A webhook named `name` with one http target that retries without limit, backs off up
/// to an hour, and points at a sink that answers 503 until told otherwise. Returns the sink,
/// the webhook's id and its entrypoint URL.
async fn dead_target(
    app: &TestApp,
    name: &str,
    max_in_flight: u32,
    timeout_secs: u32,
) -> (Receiver, String, String) {
    let sink = Receiver::start().await;
    sink.set_default(Reply::status(503));
    let (wh, url) = app.webhook(name).await;
    app.target(
        &wh,
        json!({
            "name": "retrying", "kind": "http", "url": sink.url("/"),
            "max_retries": "unlimited", "max_backoff_secs": 3600,
            "max_in_flight": max_in_flight, "timeout_secs": timeout_secs
        }),
    )
    .await;
    (sink, wh, url)
}

/// Each event's first delivery as (status, attempts), newest event first.
async fn first_deliveries(app: &TestApp, wh: &str) -> Vec<(String, u64)> {
    let page = app
        .get_json(&format!("/webhooks/{wh}/events?per_page=50"))
        .await;
    page["events"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| {
            let d = &e["deliveries"][0];
            (
                d["status"].as_str().unwrap().to_owned(),
                d["attempts"].as_u64().unwrap(),
            )
        })
        .collect()
}

/// How many events' first delivery has `status`.
async fn count_with_status(app: &TestApp, wh: &str, status: &str) -> usize {
    first_deliveries(app, wh)
        .await
        .iter()
        .filter(|(s, _)| s == status)
        .count()
}

/// A target back from an outage gets its backlog at once: deliveries waiting out a long
/// backoff are brought forward when a probe closes the breaker, whether they wait in the
/// scheduler's heap or (with no room there) in the due index alone.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_recovered_target_gets_its_backed_off_deliveries_at_once() {
    for scheduler_capacity in [4096, 0] {
        backed_off_deliveries_follow_the_closing_probe(scheduler_capacity).await;
    }
}

async fn backed_off_deliveries_follow_the_closing_probe(scheduler_capacity: usize) {
    let app = outage_app(1, Duration::from_millis(300), scheduler_capacity).await;
    let (sink, wh, url) = dead_target(&app, "outage", 1, 1).await;
    // The first event's failure opens the breaker; the second is deferred to the end of
    // the cooldown, becomes the probe, fails and re-opens it. Both now wait out 96 s+.
    app.send(&url, b"first").await;
    assert!(wait_until(Duration::from_secs(10), || async { sink.count() >= 1 }).await);
    app.send(&url, b"second").await;
    assert!(wait_until(Duration::from_secs(10), || async { sink.count() >= 2 }).await);
    let statuses = || async {
        first_deliveries(&app, &wh)
            .await
            .into_iter()
            .map(|(status, _)| status)
            .collect::<Vec<_>>()
    };
    assert!(
        wait_until(Duration::from_secs(5), || async {
            statuses().await == ["retrying", "retrying"]
        })
        .await,
        "both failed deliveries wait for a retry: {:?}",
        statuses().await
    );

    // The receiver is back. The next event is the probe that closes the breaker, and the
    // two waiting deliveries follow it instead of waiting out their backoff.
    sink.set_default(Reply::status(200));
    app.send(&url, b"third").await;
    let drained = wait_until(Duration::from_secs(20), || async {
        statuses().await == ["delivered", "delivered", "delivered"]
    })
    .await;
    assert!(
        drained,
        "scheduler capacity {scheduler_capacity}: {:?}",
        statuses().await
    );
    let mut bodies = sink
        .received()
        .into_iter()
        .skip(2)
        .map(|r| r.body)
        .collect::<Vec<_>>();
    bodies.sort();
    assert_eq!(bodies, [&b"first"[..], b"second", b"third"]);
    app.stop().await;
}

/// 20 KiB: above the 16 KiB up to which a body travels inside the task, so a re-queued
/// delivery reads it from the store when it sends.
fn large_body() -> Vec<u8> {
    (0..20 * 1024).map(|i| b'a' + (i % 26) as u8).collect()
}

/// A large body is delivered whole whoever queues the delivery: ingest (first attempt), the
/// sweeper (the retry finds no room in the scheduler heap), and the startup sweep after a
/// restart.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_large_body_is_delivered_whole_when_the_sweeper_requeues_it() {
    let app = TestApp::start_with(|c| c.engine.scheduler_capacity = 0).await;
    let sink = Receiver::start().await;
    sink.script([Reply::status(503)]);
    let (wh, url) = app.webhook("large").await;
    app.target(
        &wh,
        json!({"name": "sink", "kind": "http", "url": sink.url("/"), "max_backoff_secs": 1}),
    )
    .await;
    let body = large_body();
    let r = app.http.post(&url).body(body.clone()).send().await.unwrap();
    assert_eq!(r.status(), 200);
    assert!(wait_until(Duration::from_secs(15), || async { sink.count() >= 2 }).await);
    let got = sink.received();
    assert_eq!(got[0].body, body, "first attempt, queued by ingest");
    assert_eq!(got[1].body, body, "retry, queued by the sweeper");

    // Once more across a restart: the first sweep of the new process queues it.
    sink.set_default(Reply::status(503));
    let r = app.http.post(&url).body(body.clone()).send().await.unwrap();
    assert_eq!(r.status(), 200);
    assert!(wait_until(Duration::from_secs(10), || async { sink.count() >= 4 }).await);
    let dir = app.stop().await;
    sink.set_default(Reply::status(200));
    let before = sink.count();
    let mut config = test_config(dir.path());
    config.admin_password = Some("correct horse battery".into());
    let app = TestApp::start_in(dir, config).await;
    assert!(wait_until(Duration::from_secs(15), || async { sink.count() > before }).await);
    let after_restart: Vec<_> = sink.received().into_iter().skip(before).collect();
    assert!(
        !after_restart.is_empty() && after_restart.iter().all(|r| r.body == body),
        "after the restart the target got bodies of {:?} bytes",
        after_restart
            .iter()
            .map(|r| r.body.len())
            .collect::<Vec<_>>()
    );
    app.stop().await;
}

/// Shutdown starts no new attempt, not even one waiting for a `max_in_flight` slot that
/// the finishing attempt frees: its result could no longer be recorded and it would be
/// sent twice. Across the restart every delivery is sent exactly once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutdown_starts_no_waiting_attempt() {
    let app = TestApp::start_with(|c| c.engine.shutdown_grace = Duration::from_secs(1)).await;
    let sink = Receiver::start().await;
    sink.set_default(Reply::delayed(200, Duration::from_millis(400)));
    let (wh, url) = app.webhook("parked").await;
    app.target(
        &wh,
        json!({"name": "slow", "kind": "http", "url": sink.url("/"), "max_in_flight": 1}),
    )
    .await;
    for _ in 0..6 {
        app.send(&url, b"{}").await;
    }
    // One in flight, the others waiting for its slot.
    assert!(wait_until(Duration::from_secs(5), || async { sink.count() >= 1 }).await);
    let dir = app.stop().await;
    let at_stop = sink.count();
    tokio::time::sleep(Duration::from_millis(1000)).await;
    assert_eq!(sink.count(), at_stop, "attempts started after the stop");

    sink.set_default(Reply::status(200));
    let mut config = test_config(dir.path());
    config.admin_password = Some("correct horse battery".into());
    let app = TestApp::start_in(dir, config).await;
    let distinct = || {
        let mut ids: Vec<String> = sink
            .received()
            .iter()
            .map(|r| r.header("x-webhooker-delivery-id").unwrap())
            .collect();
        ids.sort();
        ids.dedup();
        ids.len()
    };
    assert!(wait_until(Duration::from_secs(15), || async { distinct() == 6 }).await);
    assert_eq!(
        sink.count(),
        6,
        "a delivery was sent twice across a graceful restart"
    );
    app.stop().await;
}

/// A recovery brings each waiting delivery forward once: one that fails again after the
/// breaker closed waits out its new backoff, even though the breaker stays closed and the
/// sweeper keeps passing; in the scheduler's heap or (with no room there) in the due index.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_recovery_brings_each_delivery_forward_only_once() {
    for scheduler_capacity in [4096, 0] {
        each_delivery_comes_forward_once(scheduler_capacity).await;
    }
}

async fn each_delivery_comes_forward_once(scheduler_capacity: usize) {
    let app = outage_app(2, Duration::from_millis(300), scheduler_capacity).await;
    let (sink, wh, url) = dead_target(&app, "flapping", 10, 1).await;
    // Two failures open the breaker; both deliveries wait out 96 s+.
    app.send(&url, b"a").await;
    app.send(&url, b"b").await;
    // Recorded as retrying, so the breaker (fed before the record) has opened.
    let both_retrying = wait_until(Duration::from_secs(10), || async {
        count_with_status(&app, &wh, "retrying").await == 2
    })
    .await;
    assert!(both_retrying);
    // The probe succeeds and closes the breaker; of the two brought forward, the first to
    // arrive fails again (one failure: the breaker stays closed) and the other succeeds.
    sink.script([Reply::status(200), Reply::status(503), Reply::status(200)]);
    app.send(&url, b"probe").await;
    assert!(wait_until(Duration::from_secs(10), || async { sink.count() >= 5 }).await);
    // Many sweeper passes (every 100 ms) later, the failed one has not been tried again.
    tokio::time::sleep(Duration::from_millis(1500)).await;
    assert_eq!(
        sink.count(),
        5,
        "scheduler capacity {scheduler_capacity}: a delivery brought forward once fails into its backoff"
    );
    let mut states = first_deliveries(&app, &wh).await;
    states.sort();
    assert_eq!(
        states,
        [
            ("delivered".to_owned(), 1),
            ("delivered".to_owned(), 2),
            ("retrying".to_owned(), 2)
        ]
    );
    app.stop().await;
}

/// Deliveries that an open breaker deferred come due together at its reopen time: one is
/// the probe and the rest are deferred again while it is out. When the probe succeeds they
/// go at once, also those whose deferral was committed after the breaker had closed,
/// instead of waiting out another cooldown.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deliveries_deferred_during_the_closing_probe_follow_it() {
    let cooldown = Duration::from_secs(4);
    let app = outage_app(1, cooldown, 4096).await;
    let (sink, wh, url) = dead_target(&app, "reopen", 10, 30).await;
    app.send(&url, b"opens the breaker").await;
    // Recorded as retrying: the breaker took the failure (it is fed before the record).
    let first_retrying = wait_until(Duration::from_secs(10), || async {
        count_with_status(&app, &wh, "retrying").await == 1
    })
    .await;
    assert!(first_retrying);
    sink.set_default(Reply::status(200));
    // Deferred to the reopen time, all of them.
    for _ in 0..20 {
        app.send(&url, b"deferred").await;
    }
    // At the reopen time one of them is the probe; it succeeds. Every deferred delivery
    // must follow well within the 4 s a second deferral would cost, and the first event's
    // retry (120 s away) with them.
    assert!(wait_until(cooldown * 3, || async { sink.count() >= 2 }).await);
    let probe_arrived = std::time::Instant::now();
    let delivered = wait_until(Duration::from_secs(3), || async {
        count_with_status(&app, &wh, "delivered").await == 21
    })
    .await;
    assert!(
        delivered,
        "{} requests arrived in the {:?} after the probe",
        sink.count() - 2,
        probe_arrived.elapsed()
    );
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn max_in_flight_is_a_hard_cap() {
    let app = TestApp::start_with(|c| c.engine.workers = 8).await;
    let slow = Receiver::start().await;
    slow.set_default(Reply::delayed(200, Duration::from_millis(30)));
    let (wh, url) = app.webhook("cap").await;
    app.target(
        &wh,
        json!({"name": "slow", "kind": "http", "url": slow.url("/"), "max_in_flight": 3}),
    )
    .await;
    let mut sends = Vec::new();
    for _ in 0..100 {
        let http = app.http.clone();
        let url = url.clone();
        sends.push(tokio::spawn(async move {
            assert_eq!(http.post(url).body("x").send().await.unwrap().status(), 200);
        }));
    }
    for s in sends {
        s.await.unwrap();
    }
    assert!(wait_until(Duration::from_secs(30), || async { slow.count() >= 100 }).await);
    assert!(
        slow.max_in_flight() <= 3,
        "saw {} concurrent",
        slow.max_in_flight()
    );
    assert_eq!(
        slow.max_in_flight(),
        3,
        "the cap is also reached, not undershot"
    );
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fan_out_is_parallel_and_a_slow_target_delays_nobody() {
    let app = TestApp::start().await;
    let (wh, url) = app.webhook("fanout").await;
    let slow = Receiver::start().await;
    slow.set_default(Reply::delayed(200, Duration::from_secs(3)));
    let fast: Vec<Receiver> = vec![
        Receiver::start().await,
        Receiver::start().await,
        Receiver::start().await,
    ];
    app.target(
        &wh,
        json!({"name": "slow", "kind": "http", "url": slow.url("/")}),
    )
    .await;
    for (i, f) in fast.iter().enumerate() {
        app.target(
            &wh,
            json!({"name": format!("fast{i}"), "kind": "http", "url": f.url("/")}),
        )
        .await;
    }
    app.send(&url, b"{\"fan\":\"out\"}").await;
    assert!(
        wait_until(Duration::from_secs(10), || async {
            fast.iter().all(|f| f.count() == 1)
        })
        .await
    );
    // All three fast targets got it while the slow one is still holding its request.
    assert_eq!(slow.count(), 1, "slow target was called in parallel");
    let slow_at = slow.received()[0].at;
    for f in &fast {
        let at = f.received()[0].at;
        assert!(
            at < slow_at + Duration::from_secs(1),
            "fast target waited for the slow one"
        );
    }
    app.stop().await;
}

/// A slow target's backlog does not hold up the other targets of its webhook when the
/// sweeper is the only way in (after a restart): rows of a target whose waiting list is
/// full are passed over instead of being re-read first on every pass. The engine is
/// scaled down (queue 4, 1 waiting slot) so a few dozen deliveries fill it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_slow_targets_backlog_does_not_hold_up_its_webhooks_other_targets() {
    fn small_engine(c: &mut webhooker::config::Config) {
        c.engine.queue_capacity = 4;
        c.engine.parked_capacity = 1;
        c.engine.workers = 2;
        // Failures must not open the breaker: this is about the sweeper.
        c.engine.breaker_threshold = 1000;
    }
    const EVENTS: usize = 30;
    let app = TestApp::start_with(small_engine).await;
    let slow = Receiver::start().await;
    slow.set_default(Reply::delayed(200, Duration::from_secs(1)));
    let other = Receiver::start().await;
    other.set_default(Reply::status(503));
    let (wh, url) = app.webhook("slow-and-other").await;
    app.target(
        &wh,
        json!({"name": "slow", "kind": "http", "url": slow.url("/"), "max_in_flight": 1}),
    )
    .await;
    app.target(
        &wh,
        json!({"name": "other", "kind": "http", "url": other.url("/"), "max_backoff_secs": 1}),
    )
    .await;
    for _ in 0..EVENTS {
        app.send(&url, b"{}").await;
    }
    // The other target's deliveries back off behind the slow target's pending ones.
    assert!(
        wait_until(Duration::from_secs(10), || async {
            other.count() >= EVENTS
        })
        .await
    );
    let dir = app.stop().await;

    other.set_default(Reply::status(200));
    let before = other.count();
    let mut config = test_config(dir.path());
    config.admin_password = Some("correct horse battery".into());
    small_engine(&mut config);
    let app = TestApp::start_in(dir, config).await;
    assert!(wait_until(Duration::from_secs(60), || async { other.count() > before }).await);
    let slow_done = slow.count();
    app.stop().await;
    assert!(
        slow_done < EVENTS / 2,
        "the other target waited until the slow one had {slow_done} of {EVENTS}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ssrf_is_refused_at_save_and_at_connect() {
    // No allow-list: metadata IPs and names resolving to loopback are refused at save.
    let app = TestApp::start_with(|c| c.engine.allowed_target_networks.clear()).await;
    let (wh, _) = app.webhook("ssrf").await;
    for url in [
        "http://169.254.169.254/latest/meta-data",
        "http://localhost:8080/",
        "http://[::1]/",
        "http://10.0.0.5/",
    ] {
        let r = app
            .api(reqwest::Method::POST, &format!("/webhooks/{wh}/targets"))
            .json(&json!({"name": "x", "kind": "http", "url": url}))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 422, "{url}");
        let e: Value = r.json().await.unwrap();
        assert!(e["error"].as_str().unwrap().contains("not allowed"), "{e}");
    }
    let dir = app.stop().await;

    // Allowed while saved (allow-list), refused at connect after a restart without it.
    let sink = Receiver::start().await;
    let mut config = test_config(dir.path());
    config.admin_password = Some("correct horse battery".into());
    let app = TestApp::start_in(dir, config).await;
    let (wh, url) = app.webhook("ssrf2").await;
    let host_url = format!("http://localhost:{}/", sink.addr.port());
    app.target(
        &wh,
        json!({"name": "by-name", "kind": "http", "url": host_url, "max_retries": 0}),
    )
    .await;
    // A literal IP never goes through the resolver: it is checked separately at connect.
    app.target(
        &wh,
        json!({"name": "by-ip", "kind": "http", "url": sink.url("/"), "max_retries": 0}),
    )
    .await;
    let dir = app.stop().await;
    let mut config = test_config(dir.path());
    config.engine.allowed_target_networks.clear();
    config.admin_password = Some("correct horse battery".into());
    let app = TestApp::start_in(dir, config).await;
    let path = reqwest::Url::parse(&url).unwrap().path().to_string();
    let id = app.send(&app.url(&path), b"{}").await;
    let ev = app.wait_finished(&wh, &id, Duration::from_secs(10)).await;
    for i in 0..2 {
        assert_eq!(ev["deliveries"][i]["status"], "failed");
        let err = results(&ev, i)[0]["error"].as_str().unwrap().to_string();
        assert!(err.contains("SSRF"), "{err}");
    }
    assert_eq!(sink.count(), 0, "nothing reached the loopback sink");
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redelivery_creates_a_new_delivery_and_keeps_history() {
    let app = TestApp::start().await;
    let sink = Receiver::start().await;
    let (wh, url) = app.webhook("redeliver").await;
    let t = app
        .target(
            &wh,
            json!({"name": "sink", "kind": "http", "url": sink.url("/")}),
        )
        .await;
    app.target(&wh, json!({"name": "db", "kind": "database"}))
        .await;
    let id = app.send(&url, b"again").await;
    app.wait_finished(&wh, &id, Duration::from_secs(10)).await;
    assert_eq!(app.redeliver(&wh, &id, Some(&t)).await, 202);
    let ev = app.wait_finished(&wh, &id, Duration::from_secs(10)).await;
    let to_sink: Vec<_> = ev["deliveries"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|d| d["target_id"] == t.as_str())
        .collect();
    assert_eq!(to_sink.len(), 2, "old delivery kept, new one added");
    assert!(to_sink.iter().all(|d| d["status"] == "delivered"));
    assert_eq!(sink.count(), 2);
    assert_eq!(sink.received()[1].body.as_ref(), b"again");
    // All targets.
    assert_eq!(app.redeliver(&wh, &id, None).await, 202);
    let ev = app.wait_finished(&wh, &id, Duration::from_secs(10)).await;
    assert_eq!(ev["deliveries"].as_array().unwrap().len(), 5);
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slack_target_posts_a_summary() {
    let app = TestApp::start().await;
    let slack = Receiver::start().await;
    let (wh, url) = app.webhook("slack").await;
    app.target(
        &wh,
        json!({"name": "chat", "kind": "slack", "url": slack.url("/services/T/B/X")}),
    )
    .await;
    app.target(&wh, json!({"name": "log", "kind": "log"})).await;
    let id = app.send(&url, b"{\"action\":\"opened\",\"n\":1}").await;
    let ev = app.wait_finished(&wh, &id, Duration::from_secs(10)).await;
    assert!(
        ev["deliveries"]
            .as_array()
            .unwrap()
            .iter()
            .all(|d| d["status"] == "delivered")
    );
    let got = slack.received();
    let v: Value = serde_json::from_slice(&got[0].body).unwrap();
    let text = v["text"].as_str().unwrap();
    assert!(text.contains("\"action\": \"opened\""), "{text}");
    assert!(text.contains("```"));
    assert_eq!(
        got[0].header("content-type").as_deref(),
        Some("application/json")
    );
    app.stop().await;
}

/// A large body that the event file no longer holds whole (here: one of its pieces
/// removed while the server was down) fails the delivery with the reason recorded: it is
/// not a passing read error to wait out, and retrying it would never end. What is left of
/// it is never sent as if it were the body.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lost_large_body_fails_its_delivery() {
    let app = TestApp::start().await;
    let sink = Receiver::start().await;
    sink.set_default(Reply::status(503));
    let (wh, url) = app.webhook("lost-body").await;
    app.target(
        &wh,
        json!({"name": "t", "kind": "http", "url": sink.url("/"), "max_retries": "unlimited"}),
    )
    .await;
    // Over the 16 KiB kept in the event's row: the body is stored in pieces of its own
    // (of 32 KiB, 4 KiB and under a page, less their leaves' own bytes).
    let event_id = app.send(&url, &[b'x'; 40_000]).await;
    assert!(wait_until(Duration::from_secs(10), || async { sink.count() >= 1 }).await);
    let dir = app.stop().await;

    let file = dir.path().join(format!("events-{wh}.redb"));
    let db = redb::Database::create(&file).unwrap();
    let tx = db.begin_write().unwrap();
    {
        let mut chunks = tx
            .open_table(redb::TableDefinition::<(u128, u32), &[u8]>::new(
                "body_chunks",
            ))
            .unwrap();
        let id = uuid::Uuid::parse_str(&event_id).unwrap().as_u128();
        assert!(
            chunks.remove((id, 1)).unwrap().is_some(),
            "the body had a second piece"
        );
    }
    tx.commit().unwrap();
    drop(db);

    let mut config = test_config(dir.path());
    config.admin_password = Some("correct horse battery".into());
    let app = TestApp::start_in(dir, config).await;
    // Its pages cannot be shown without the body, so ask the store: a finished delivery
    // has left the due index, and its last attempt says why.
    let events = app
        .app()
        .store()
        .events(uuid::Uuid::parse_str(&wh).unwrap())
        .unwrap();
    let finished = wait_until(Duration::from_secs(15), || async {
        events.due_count().unwrap() == 0
    })
    .await;
    assert!(finished, "the delivery never finished");
    let event = uuid::Uuid::parse_str(&event_id).unwrap();
    let delivery_id = sink.received()[0]
        .header("x-webhooker-delivery-id")
        .unwrap();
    let delivery = events
        .delivery(event, uuid::Uuid::parse_str(&delivery_id).unwrap())
        .unwrap()
        .unwrap();
    assert_eq!(delivery.status, webhooker::model::DeliveryStatus::Failed);
    assert!(
        sink.received().iter().all(|r| r.body.len() == 40_000),
        "a short body was sent"
    );
    app.stop().await;
}

/// Regression: a result recorded after its webhook was deleted used to re-create the
/// webhook's event file.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deleting_a_webhook_mid_delivery_does_not_resurrect_its_file() {
    let app = TestApp::start().await;
    let slow = Receiver::start().await;
    slow.set_default(Reply::delayed(503, Duration::from_millis(300)));
    let (wh, url) = app.webhook("doomed").await;
    app.target(
        &wh,
        json!({"name": "slow", "kind": "http", "url": slow.url("/")}),
    )
    .await;
    app.send(&url, b"{}").await;
    assert!(wait_until(Duration::from_secs(10), || async { slow.count() >= 1 }).await);
    let r = app
        .api(reqwest::Method::DELETE, &format!("/webhooks/{wh}"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 204);
    let file = app.dir.path().join(format!("events-{wh}.redb"));
    // Let the in-flight attempt finish and try to record its result.
    tokio::time::sleep(Duration::from_millis(600)).await;
    assert!(!file.exists(), "event file came back after delete");
    let count = slow.count();
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(
        slow.count(),
        count,
        "no further attempts for a deleted webhook"
    );
    app.stop().await;
}

/// Regression: tasks waiting for a `max_in_flight` slot stayed in memory (claimed) for
/// good once their target was deleted.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deleting_a_target_releases_its_waiting_deliveries() {
    let app = TestApp::start().await;
    let slow = Receiver::start().await;
    slow.set_default(Reply::delayed(200, Duration::from_millis(300)));
    let (wh, url) = app.webhook("waiting").await;
    let t = app
        .target(
            &wh,
            json!({"name": "slow", "kind": "http", "url": slow.url("/"), "max_in_flight": 1}),
        )
        .await;
    let mut ids = Vec::new();
    for _ in 0..20 {
        ids.push(app.send(&url, b"{}").await);
    }
    assert!(wait_until(Duration::from_secs(5), || async { slow.count() >= 1 }).await);
    assert!(
        app.app().engine().stats().parked > 0,
        "tasks wait for the slot"
    );
    let r = app
        .api(
            reqwest::Method::DELETE,
            &format!("/webhooks/{wh}/targets/{t}"),
        )
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 204);
    for id in &ids {
        let ev = app.wait_finished(&wh, id, Duration::from_secs(10)).await;
        assert!(matches!(
            ev["deliveries"][0]["status"].as_str(),
            Some("failed" | "delivered")
        ));
    }
    let drained = wait_until(Duration::from_secs(5), || async {
        let s = app.app().engine().stats();
        s.parked == 0 && s.claimed == 0
    })
    .await;
    assert!(drained, "stranded: {:?}", app.app().engine().stats());
    app.stop().await;
}

/// Sends `n` events with up to 16 requests at a time; every one must be acknowledged.
async fn send_many(app: &TestApp, url: &str, n: usize) {
    let sem = std::sync::Arc::new(tokio::sync::Semaphore::new(16));
    let mut sends = Vec::new();
    for i in 0..n {
        let (http, url, sem) = (app.http.clone(), url.to_string(), sem.clone());
        sends.push(tokio::spawn(async move {
            let _permit = sem.acquire().await.unwrap();
            let r = http.post(url).body(format!("{{\"n\":{i}}}")).send();
            assert_eq!(r.await.unwrap().status(), 200);
        }));
    }
    for s in sends {
        s.await.unwrap();
    }
}

/// Receivers that hold every request open (slow or hanging) take their own slots, and no
/// thread: a fast receiver on another webhook gets all its events while every request to
/// the slow ones is still outstanding. Before exchanges ran on the runtime, the delivery
/// threads all sat on the slow requests and the fast receiver got nothing until they ended.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_fast_target_is_served_while_slow_ones_hold_every_slot_they_have() {
    let app = TestApp::start().await;
    let slow = [Receiver::start().await, Receiver::start().await];
    let mut slow_hooks = Vec::new();
    for (i, r) in slow.iter().enumerate() {
        r.hold();
        let (wh, url) = app.webhook(&format!("slow{i}")).await;
        app.target(
            &wh,
            json!({"name": "slow", "kind": "http", "url": r.url("/"), "max_in_flight": 10}),
        )
        .await;
        slow_hooks.push(wh);
        send_many(&app, &url, 50).await;
    }
    // Each slow receiver has a full set of requests it is not answering.
    assert!(
        wait_until(Duration::from_secs(10), || async {
            slow.iter().all(|r| r.in_flight() == 10)
        })
        .await,
        "slow receivers in flight: {:?}",
        slow.iter().map(|r| r.in_flight()).collect::<Vec<_>>()
    );
    let fast = Receiver::start().await;
    let (wh, url) = app.webhook("fast").await;
    app.target(
        &wh,
        json!({"name": "fast", "kind": "http", "url": fast.url("/")}),
    )
    .await;
    send_many(&app, &url, 50).await;
    assert!(
        wait_until(Duration::from_secs(10), || async { fast.count() == 50 }).await,
        "the fast receiver got {} of 50",
        fast.count()
    );
    // Order: all 50 arrived while the slow requests were still open, none of them answered.
    for r in &slow {
        assert_eq!(r.in_flight(), 10, "slow requests still outstanding");
        assert_eq!(r.count(), 10, "nothing beyond the cap was sent");
    }
    for r in &slow {
        r.release();
    }
    assert!(
        wait_until(Duration::from_secs(20), || async {
            slow.iter().all(|r| r.count() == 50)
        })
        .await
    );
    for (r, wh) in slow.iter().zip(&slow_hooks) {
        assert!(r.max_in_flight() <= 10);
        assert!(
            wait_until(Duration::from_secs(10), || async {
                count_with_status(&app, wh, "delivered").await == 50
            })
            .await
        );
    }
    app.stop().await;
}

/// Per target, `max_in_flight` is never exceeded; engine-wide, `DELIVERY_CONCURRENCY` is
/// not either, and both are reached rather than undershot.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn per_target_and_engine_wide_caps_hold() {
    const CONCURRENCY: usize = 8;
    let app = TestApp::start_with(|c| c.engine.concurrency = CONCURRENCY).await;
    // Five targets of 3 slots each share one receiver: it sees the engine-wide figure.
    let shared = Receiver::start().await;
    shared.hold();
    let (wh, url) = app.webhook("caps").await;
    for i in 0..5 {
        app.target(
            &wh,
            json!({"name": format!("t{i}"), "kind": "http", "url": shared.url(&format!("/t{i}")), "max_in_flight": 3}),
        )
        .await;
    }
    // A sixth target with its own receiver shows the per-target cap.
    let own = Receiver::start().await;
    own.hold();
    let (wh2, url2) = app.webhook("own").await;
    app.target(
        &wh2,
        json!({"name": "own", "kind": "http", "url": own.url("/"), "max_in_flight": 3}),
    )
    .await;
    send_many(&app, &url2, 20).await;
    assert!(wait_until(Duration::from_secs(10), || async { own.in_flight() == 3 }).await);
    send_many(&app, &url, 20).await;
    // The sixth target holds 3 of the 8 engine-wide slots; the five share the other 5.
    assert!(
        wait_until(Duration::from_secs(10), || async {
            shared.in_flight() == CONCURRENCY - 3
        })
        .await,
        "shared receiver in flight: {}",
        shared.in_flight()
    );
    assert_eq!(app.app().engine().stats().in_flight, CONCURRENCY);
    own.release();
    shared.release();
    assert!(
        wait_until(Duration::from_secs(30), || async {
            own.count() == 20 && shared.count() == 100
        })
        .await,
        "delivered {} + {}",
        own.count(),
        shared.count()
    );
    assert_eq!(own.max_in_flight(), 3);
    assert!(
        shared.max_in_flight() <= CONCURRENCY,
        "saw {} at once",
        shared.max_in_flight()
    );
    // Every target of the shared receiver got each event once.
    let received = shared.received();
    for i in 0..5 {
        let path = format!("/t{i}");
        assert_eq!(
            received.iter().filter(|r| r.uri.path() == path).count(),
            20,
            "{path}"
        );
    }
    app.stop().await;
}
