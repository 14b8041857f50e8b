//! Operating a webhook day to day through the API: the event log's filters, bulk
//! redelivery of a filter, and pausing and resuming a target.

use std::str::FromStr;
use std::time::Duration;

use reqwest::Method;
use serde_json::{Value, json};

use crate::support::receiver::{Receiver, Reply};
use crate::support::{TestApp, wait_until};

const LIMIT: Duration = Duration::from_secs(10);

/// Sends `body` with one extra header; returns the event id.
async fn send_with(t: &TestApp, url: &str, header: (&str, &str), body: &'static str) -> String {
    let r = t
        .http
        .post(url)
        .header(header.0, header.1)
        .header("content-type", "application/json")
        .body(body)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let v: Value = r.json().await.unwrap();
    v["event_id"].as_str().unwrap().to_string()
}

/// The ids of the events a filtered list returns, newest first.
async fn ids(t: &TestApp, webhook: &str, query: &str) -> Vec<String> {
    let v = t
        .get_json(&format!("/webhooks/{webhook}/events?{query}"))
        .await;
    v["events"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["id"].as_str().unwrap().to_string())
        .collect()
}

async fn patch_target(t: &TestApp, webhook: &str, target: &str, body: Value) -> Value {
    let r = t
        .api(
            Method::PATCH,
            &format!("/webhooks/{webhook}/targets/{target}"),
        )
        .json(&body)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    r.json().await.unwrap()
}

/// RFC 3339 text of now plus `offset_ms`.
fn rfc3339(offset_ms: i64) -> String {
    jiff::Timestamp::now()
        .checked_add(jiff::SignedDuration::from_millis(offset_ms))
        .unwrap()
        .to_string()
}

fn delivery_to<'a>(event: &'a Value, target: &str) -> &'a Value {
    event["deliveries"]
        .as_array()
        .unwrap()
        .iter()
        .rfind(|d| d["target_id"] == target)
        .unwrap()
}

#[tokio::test]
async fn the_event_log_filters_by_status_target_text_and_time() {
    let t = TestApp::start().await;
    let ok = Receiver::start().await;
    let gone = Receiver::start().await;
    gone.set_default(Reply::status(404));
    let (w, url) = t.webhook("filters").await;
    let a = t
        .target(&w, json!({"name": "a", "kind": "http", "url": ok.url("/")}))
        .await;
    let b = t
        .target(
            &w,
            json!({"name": "b", "kind": "http", "url": gone.url("/")}),
        )
        .await;
    let before = rfc3339(-1000);
    let push = send_with(&t, &url, ("X-GitHub-Event", "push"), r#"{"n":1}"#).await;
    let issues = send_with(&t, &url, ("X-GitHub-Event", "issues"), r#"{"n":2}"#).await;
    let needle = send_with(&t, &url, ("X-Other", "x"), r#"{"note":"Needle-42"}"#).await;
    for e in [&push, &issues, &needle] {
        t.wait_finished(&w, e, LIMIT).await;
    }
    let all = vec![needle.clone(), issues.clone(), push.clone()];

    // Every event failed at b and was delivered to a.
    assert_eq!(ids(&t, &w, "status=failed").await, all);
    assert_eq!(
        ids(&t, &w, &format!("status=failed&target_id={b}")).await,
        all
    );
    assert!(
        ids(&t, &w, &format!("status=failed&target_id={a}"))
            .await
            .is_empty()
    );
    assert_eq!(
        ids(&t, &w, &format!("status=delivered&target_id={a}")).await,
        all
    );
    assert!(ids(&t, &w, "status=retrying").await.is_empty());
    assert_eq!(ids(&t, &w, &format!("target_id={a}")).await, all);

    // Text: a header value, a header name, the body; case ignored; AND with the status.
    assert_eq!(ids(&t, &w, "q=ISSUES").await, vec![issues.clone()]);
    assert_eq!(ids(&t, &w, "q=x-other").await, vec![needle.clone()]);
    assert_eq!(ids(&t, &w, "q=needle-42").await, vec![needle.clone()]);
    assert!(ids(&t, &w, "q=needle-42&status=pending").await.is_empty());

    // Time range (RFC 3339).
    let later = rfc3339(60_000);
    assert_eq!(ids(&t, &w, &format!("since={before}")).await, all);
    assert!(ids(&t, &w, &format!("since={later}")).await.is_empty());
    assert!(ids(&t, &w, &format!("until={before}")).await.is_empty());

    // Paging over the matches, and how far the scan looked.
    let v = t
        .get_json(&format!("/webhooks/{w}/events?status=failed&per_page=2"))
        .await;
    assert_eq!(v["matched"], 3);
    assert_eq!(v["has_more"], true);
    assert_eq!(v["scanned"], 3);
    assert_eq!(v["scan_complete"], true);
    let v = t
        .get_json(&format!(
            "/webhooks/{w}/events?status=failed&per_page=2&page=2"
        ))
        .await;
    assert_eq!(v["events"][0]["id"], push.as_str());
    assert_eq!(v["has_more"], false);

    // Bad values name their field.
    for (query, field) in [
        ("status=done", "status"),
        ("since=yesterday", "since"),
        ("target_id=x", "target_id"),
    ] {
        let r = t
            .api(Method::GET, &format!("/webhooks/{w}/events?{query}"))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 422, "{query}");
        assert!(r.text().await.unwrap().contains(field), "{query}");
    }
    t.stop().await;
}

#[tokio::test]
async fn skipped_deliveries_are_found_and_until_is_inclusive() {
    let t = TestApp::start().await;
    let sink = Receiver::start().await;
    let (w, url) = t.webhook("skips").await;
    let picky = t
        .target(
            &w,
            json!({"name": "picky", "kind": "http", "url": sink.url("/"),
                   "filter": {"all": [{"json": "/kind", "equals": "wanted"}]}}),
        )
        .await;
    let stored = t
        .target(&w, json!({"name": "stored", "kind": "database"}))
        .await;
    let wanted = send_with(&t, &url, ("X-A", "1"), r#"{"kind":"wanted"}"#).await;
    let other = send_with(&t, &url, ("X-A", "2"), r#"{"kind":"other"}"#).await;
    t.wait_finished(&w, &wanted, LIMIT).await;

    // A skip is settled in its event's row, and found there like a delivered one.
    assert_eq!(ids(&t, &w, "status=skipped").await, vec![other.clone()]);
    assert_eq!(
        ids(&t, &w, &format!("status=skipped&target_id={picky}")).await,
        vec![other.clone()]
    );
    assert!(
        ids(&t, &w, &format!("status=skipped&target_id={stored}"))
            .await
            .is_empty()
    );
    assert_eq!(
        ids(&t, &w, &format!("status=delivered&target_id={picky}")).await,
        vec![wanted.clone()]
    );
    let v = t
        .get_json(&format!("/webhooks/{w}/events?status=skipped"))
        .await;
    assert_eq!(
        (v["matched"].as_u64(), v["scanned"].as_u64()),
        (Some(1), Some(2))
    );
    // A failed filter looks only at events with deliveries to send: `other` has none.
    let v = t
        .get_json(&format!("/webhooks/{w}/events?status=failed"))
        .await;
    assert_eq!(
        (v["matched"].as_u64(), v["scanned"].as_u64()),
        (Some(0), Some(1))
    );
    let b = crate::pages::login(&t).await;
    let html = crate::pages::get_ok(&t, &b, &format!("/webhooks/{w}/events?status=failed")).await;
    assert!(
        html.contains("event with deliveries to send"),
        "the page says what it searched"
    );
    let html = crate::pages::get_ok(&t, &b, &format!("/webhooks/{w}/events?status=skipped")).await;
    assert!(
        html.contains("Redeliver 1 skipped"),
        "a skip can be replayed"
    );
    assert!(!html.contains("with deliveries to send"));

    // `until` is "at or before", to the millisecond, like `since` is "at or after".
    let at = t.event(&w, &other).await["received_at"]
        .as_str()
        .unwrap()
        .to_string();
    let at_ms = jiff::Timestamp::from_str(&at).unwrap().as_millisecond();
    let just_before = jiff::Timestamp::from_millisecond(at_ms - 1)
        .unwrap()
        .to_string();
    let until = |u: &str| format!("status=skipped&until={}", urlencoding(u));
    assert_eq!(ids(&t, &w, &until(&at)).await, vec![other.clone()]);
    assert!(ids(&t, &w, &until(&just_before)).await.is_empty());
    let since = format!("status=skipped&since={}", urlencoding(&at));
    assert_eq!(ids(&t, &w, &since).await, vec![other.clone()]);

    // Replaying the skips sends them, the filter notwithstanding.
    let v = t
        .post_json(
            &format!("/webhooks/{w}/redeliver"),
            json!({"status": "skipped", "target_id": picky}),
        )
        .await;
    assert_eq!(v, json!({"count": 1}));
    assert!(wait_until(LIMIT, || async { sink.count() == 2 }).await);
    t.stop().await;
}

/// Percent-encodes a query value (`+` in a time zone offset).
fn urlencoding(v: &str) -> String {
    url::form_urlencoded::byte_serialize(v.as_bytes()).collect()
}

#[tokio::test]
async fn a_bulk_redelivery_replays_the_filter_at_max_in_flight_once() {
    let t = TestApp::start().await;
    let sink = Receiver::start().await;
    sink.set_default(Reply::status(500));
    let (w, url) = t.webhook("replay").await;
    let target = t
        .target(
            &w,
            json!({"name": "flaky", "kind": "http", "url": sink.url("/"),
                   "max_retries": 0, "max_in_flight": 2}),
        )
        .await;
    let mut events = Vec::new();
    for _ in 0..12 {
        events.push(t.send(&url, b"{\"replay\":true}").await);
    }
    for e in &events {
        t.wait_finished(&w, e, LIMIT).await;
    }
    assert_eq!(sink.count(), 12);

    // The receiver is back, slow: twelve new deliveries, never more than two at once.
    sink.set_default(Reply::delayed(200, Duration::from_millis(30)));
    let v = t
        .post_json(
            &format!("/webhooks/{w}/redeliver"),
            json!({"status": "failed"}),
        )
        .await;
    assert_eq!(v, json!({"count": 12}));
    assert!(wait_until(LIMIT, || async { sink.count() == 24 }).await);
    assert!(sink.max_in_flight() <= 2, "{}", sink.max_in_flight());
    for e in &events {
        let ev = t.wait_finished(&w, e, LIMIT).await;
        assert_eq!(delivery_to(&ev, &target)["status"], "delivered");
    }
    // Every event's latest delivery is delivered now: a second replay sends nothing.
    let v = t
        .post_json(
            &format!("/webhooks/{w}/redeliver"),
            json!({"status": "failed"}),
        )
        .await;
    assert_eq!(v, json!({"count": 0}));

    // Without a body: every event to every active target.
    let r = t
        .api(Method::POST, &format!("/webhooks/{w}/redeliver"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 202);
    assert_eq!(r.json::<Value>().await.unwrap(), json!({"count": 12}));
    assert!(wait_until(LIMIT, || async { sink.count() == 36 }).await);
    assert!(sink.max_in_flight() <= 2);

    // An unknown field or target is refused.
    let r = t
        .api(Method::POST, &format!("/webhooks/{w}/redeliver"))
        .json(&json!({"state": "failed"}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 422);
    let r = t
        .api(Method::POST, &format!("/webhooks/{w}/redeliver"))
        .json(&json!({"target_id": uuid::Uuid::new_v4()}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 404);
    t.stop().await;
}

#[tokio::test]
async fn a_paused_target_keeps_its_deliveries_waiting_and_resume_sends_them_in_order() {
    // One delivery thread: the order in which the sweeper queues is the order of sending.
    let t = TestApp::start_with(|c| c.engine.workers = 1).await;
    let sink = Receiver::start().await;
    sink.set_default(Reply::status(500));
    let (w, url) = t.webhook("pause").await;
    let target = t
        .target(
            &w,
            json!({"name": "paused", "kind": "http", "url": sink.url("/"),
                   "max_retries": "unlimited", "max_backoff_secs": 1, "max_in_flight": 1}),
        )
        .await;
    // One delivery is retrying when the target is paused.
    let retrying = t.send(&url, b"{\"n\":0}").await;
    t.wait_event(&w, &retrying, LIMIT, |ev| {
        delivery_to(ev, &target)["status"] == "retrying"
    })
    .await;
    let v = patch_target(&t, &w, &target, json!({"paused": true})).await;
    assert_eq!(v["paused"], true);
    assert_eq!(v["name"], "paused", "the configuration is unchanged");
    let webhook = t.get_json(&format!("/webhooks/{w}")).await;
    assert_eq!(webhook["targets"][0]["paused"], true);
    sink.set_default(Reply::status(200));

    let bodies: [&'static [u8]; 5] = [b"1", b"2", b"3", b"4", b"5"];
    let mut events = Vec::new();
    for body in bodies {
        events.push(t.send(&url, body).await);
    }
    // An attempt in flight when the pause came may still land; then nothing more does.
    tokio::time::sleep(Duration::from_millis(300)).await;
    let seen = sink.count();
    let attempts = delivery_to(&t.event(&w, &retrying).await, &target)["attempts"].clone();
    tokio::time::sleep(Duration::from_millis(700)).await;
    assert_eq!(sink.count(), seen, "nothing is attempted while paused");
    let ev = t.event(&w, &retrying).await;
    let d = delivery_to(&ev, &target);
    if d["status"] == "retrying" {
        assert_eq!(d["attempts"], attempts, "no retry is spent while paused");
    }
    for e in &events {
        let ev = t.event(&w, e).await;
        let d = delivery_to(&ev, &target);
        assert_eq!(d["status"], "pending");
        assert_eq!(d["attempts"], 0);
    }
    let waiting = t
        .get_json(&format!("/webhooks/{w}/events?status=pending"))
        .await;
    assert_eq!(waiting["matched"], 5);

    // Resume: the backlog goes out, oldest first.
    let v = patch_target(&t, &w, &target, json!({"paused": false})).await;
    assert_eq!(v["paused"], false);
    for e in events.iter().chain([&retrying]) {
        let ev = t.wait_finished(&w, e, LIMIT).await;
        assert_eq!(delivery_to(&ev, &target)["status"], "delivered");
    }
    let order: Vec<Vec<u8>> = sink
        .received()
        .iter()
        .map(|r| r.body.to_vec())
        .filter(|b| b.len() == 1)
        .collect();
    assert_eq!(order, bodies.map(<[u8]>::to_vec).to_vec());
    assert!(sink.max_in_flight() <= 1);
    t.stop().await;
}

/// The `<li>` of the webhooks list that links to `webhook`.
fn list_row<'a>(html: &'a str, webhook: &str) -> &'a str {
    let start = html
        .find(&format!("href=\"/webhooks/{webhook}\""))
        .unwrap_or_else(|| panic!("{webhook} is listed: {html}"));
    let row = &html[start..];
    &row[..row.find("</li>").unwrap_or(row.len())]
}

#[tokio::test]
async fn failures_in_the_last_day_are_marked_across_a_restart() {
    let t = TestApp::start().await;
    let gone = Receiver::start().await;
    gone.set_default(Reply::status(404));
    let (failing, url) = t.webhook("failing").await;
    t.target(
        &failing,
        json!({"name": "gone", "kind": "http", "url": gone.url("/"), "max_retries": 0}),
    )
    .await;
    let (quiet, _) = t.webhook("quiet").await;
    let e = t.send(&url, b"{}").await;
    let ev = t.wait_finished(&failing, &e, LIMIT).await;
    assert_eq!(ev["deliveries"][0]["status"], "failed");
    let b = crate::pages::login(&t).await;
    let html = crate::pages::get_ok(&t, &b, "/webhooks").await;
    assert!(list_row(&html, &failing).contains("data-health=\"failing\""));
    assert!(!list_row(&html, &quiet).contains("data-health"));

    // The time is kept in the webhook's event file: a restart does not forget it.
    let dir = t.stop().await;
    let config = crate::support::test_config(dir.path());
    let t = TestApp::start_in(dir, config).await;
    let b = crate::pages::login(&t).await;
    let html = crate::pages::get_ok(&t, &b, "/webhooks").await;
    assert!(
        list_row(&html, &failing).contains("data-health=\"failing\""),
        "{html}"
    );
    assert!(!list_row(&html, &quiet).contains("data-health"));
    t.stop().await;
}

#[tokio::test]
async fn an_open_breaker_shows_on_the_webhook_page_and_the_list() {
    let t = TestApp::start_with(|c| {
        c.engine.breaker_threshold = 2;
        // Open for the whole test.
        c.engine.breaker_cooldown = Duration::from_secs(600);
    })
    .await;
    let down = Receiver::start().await;
    down.set_default(Reply::status(500));
    let (w, url) = t.webhook("breaking").await;
    let target = t
        .target(
            &w,
            json!({"name": "down", "kind": "http", "url": down.url("/"), "max_retries": 10}),
        )
        .await;
    t.send(&url, b"{}").await;
    // Two failed attempts (the first and a retry 50 ms later) open the breaker.
    assert!(wait_until(LIMIT, || async { down.count() >= 2 }).await);
    let b = crate::pages::login(&t).await;
    let deadline = std::time::Instant::now() + LIMIT;
    let page = loop {
        let page = crate::pages::get_ok(&t, &b, &format!("/webhooks/{w}")).await;
        if page.contains("Breaker open until") {
            break page;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "no open breaker: {page}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    let row = &page[page.find(&format!("id=\"target-{target}\"")).unwrap()..];
    let row = &row[..row.find("</li>").unwrap()];
    assert!(row.contains("data-state=\"breaker-open\""), "{row}");
    // The time is a <time> the browser shows in its own zone; UTC without JS.
    let shown = &row[row.find("Breaker open until").unwrap()..];
    let shown = &shown[..shown.find("</span>").unwrap()];
    let iso_at = shown.find("<time datetime=\"").unwrap() + "<time datetime=\"".len();
    let iso = &shown[iso_at..iso_at + shown[iso_at..].find('"').unwrap()];
    assert!(jiff::Timestamp::from_str(iso).is_ok(), "{shown}");
    assert!(shown.contains("x-data=\"absTime\""), "{shown}");
    assert!(shown.contains(" UTC</time>"), "{shown}");
    let html = crate::pages::get_ok(&t, &b, "/webhooks").await;
    assert!(
        list_row(&html, &w).contains("data-health=\"breaker\""),
        "{html}"
    );
    t.stop().await;
}
