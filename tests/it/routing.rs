//! Routing through the real server: per-target filters (skipped deliveries), idempotent
//! ingest (dedupe), transforms of the forwarded request, and the two loop guards (a
//! target at an own entrypoint is refused; a request past the hop limit gets 508).

use std::collections::HashSet;
use std::time::Duration;

use reqwest::Method;
use serde_json::{Value, json};

use crate::support::process::{PASSWORD, ServerProcess};
use crate::support::receiver::Receiver;
use crate::support::{TestApp, wait_until};

const WAIT: Duration = Duration::from_secs(10);

/// The deliveries of an event by target id: (status, reason, attempts).
fn by_target(ev: &Value) -> std::collections::HashMap<String, (String, Option<String>, u64)> {
    ev["deliveries"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| {
            (
                d["target_id"].as_str().unwrap().to_string(),
                (
                    d["status"].as_str().unwrap().to_string(),
                    d["reason"].as_str().map(str::to_string),
                    d["attempts"].as_u64().unwrap(),
                ),
            )
        })
        .collect()
}

fn finished(ev: &Value) -> bool {
    ev["deliveries"].as_array().unwrap().iter().all(|d| {
        matches!(
            d["status"].as_str(),
            Some("delivered" | "failed" | "skipped")
        )
    })
}

/// Sends `body` with `method` and headers; returns the status and the JSON answer.
async fn send(
    app: &TestApp,
    method: Method,
    url: &str,
    headers: &[(&str, &str)],
    body: &'static [u8],
) -> (u16, Value) {
    let mut req = app.http.request(method, url).body(body);
    for (k, v) in headers {
        req = req.header(*k, *v);
    }
    let r = req.send().await.unwrap();
    let status = r.status().as_u16();
    (status, r.json().await.unwrap_or(Value::Null))
}

async fn event_total(app: &TestApp, webhook: &str) -> u64 {
    app.get_json(&format!("/webhooks/{webhook}/events")).await["total"]
        .as_u64()
        .unwrap()
}

#[tokio::test]
async fn filters_route_events_by_header_json_and_method() {
    let app = TestApp::start().await;
    let (sink_a, sink_b, sink_c) = (
        Receiver::start().await,
        Receiver::start().await,
        Receiver::start().await,
    );
    let (wh, url) = app.webhook("routed").await;
    let push_only = app
        .target(
            &wh,
            json!({"name": "ci", "kind": "http", "url": sink_a.url("/"),
                   "filter": {"all": [{"header": "X-GitHub-Event", "equals": "push"}]}}),
        )
        .await;
    let opened_or_put = app
        .target(
            &wh,
            json!({"name": "triage", "kind": "http", "url": sink_b.url("/"),
            "filter": {"any": [
                {"json": "/action", "in": ["opened", "reopened"]},
                {"method": "PUT"}
            ]}}),
        )
        .await;
    let big_n = app
        .target(
            &wh,
            json!({"name": "big", "kind": "http", "url": sink_c.url("/"),
                   "filter": {"all": [{"json": "/n", "gt": 3}, {"method": "POST"}]}}),
        )
        .await;
    let t = app.get_json(&format!("/webhooks/{wh}")).await;
    assert_eq!(
        t["targets"][0]["filter"],
        json!({"all": [{"header": "x-github-event", "equals": "push"}]}),
        "the filter reads back in the shape it was given (header names lower-cased)"
    );

    let post = Method::POST;
    let (_, e1) = send(
        &app,
        post.clone(),
        &url,
        &[("X-GitHub-Event", "push")],
        br#"{"action":"closed","n":5}"#,
    )
    .await;
    let (_, e2) = send(
        &app,
        Method::PUT,
        &url,
        &[("X-GitHub-Event", "issues")],
        b"not json at all",
    )
    .await;
    let (_, e3) = send(&app, post, &url, &[], br#"{"action":"opened","n":1}"#).await;
    let ids: Vec<String> = [&e1, &e2, &e3]
        .iter()
        .map(|e| e["event_id"].as_str().unwrap().to_string())
        .collect();

    let mut events = Vec::new();
    for id in &ids {
        events.push(by_target(&app.wait_event(&wh, id, WAIT, finished).await));
    }
    let status = |e: usize, t: &str| events[e][t].0.clone();
    // e1: push, not opened, POST with n=5.
    assert_eq!(status(0, &push_only), "delivered");
    assert_eq!(status(0, &opened_or_put), "skipped");
    assert_eq!(status(0, &big_n), "delivered");
    // e2: a PUT whose body is not JSON: no body condition holds.
    assert_eq!(status(1, &push_only), "skipped");
    assert_eq!(status(1, &opened_or_put), "delivered");
    assert_eq!(status(1, &big_n), "skipped");
    // e3: opened, n=1.
    assert_eq!(status(2, &push_only), "skipped");
    assert_eq!(status(2, &opened_or_put), "delivered");
    assert_eq!(status(2, &big_n), "skipped");

    // A skipped delivery says why, and cost no attempt.
    let (_, reason, attempts) = &events[1][&big_n];
    assert_eq!(attempts, &0);
    assert!(
        reason.as_deref().unwrap().contains("json \"/n\" > 3"),
        "{reason:?}"
    );
    let (_, reason, _) = &events[0][&opened_or_put];
    assert_eq!(
        reason.as_deref(),
        Some("filter: none of 2 conditions matched")
    );
    let detail = app.event(&wh, &ids[1]).await;
    let skipped = detail["deliveries"]
        .as_array()
        .unwrap()
        .iter()
        .find(|d| d["target_id"] == big_n.as_str())
        .unwrap();
    assert_eq!(skipped["results"], json!([]));
    // The event log shows the same.
    let list = app.get_json(&format!("/webhooks/{wh}/events")).await;
    let skipped_in_list = list["events"]
        .as_array()
        .unwrap()
        .iter()
        .flat_map(|e| e["deliveries"].as_array().unwrap())
        .filter(|d| d["status"] == "skipped" && d["reason"].is_string())
        .count();
    assert_eq!(skipped_in_list, 5);

    assert_eq!((sink_a.count(), sink_b.count(), sink_c.count()), (1, 2, 1));

    // Redelivery to a filtered target is what the user asked for: the filter does not apply.
    assert_eq!(app.redeliver(&wh, &ids[1], Some(&push_only)).await, 202);
    assert!(wait_until(WAIT, || async { sink_a.count() == 2 }).await);
    assert_eq!(sink_a.received()[1].body.as_ref(), b"not json at all");
}

#[tokio::test]
async fn filters_and_transforms_are_checked_when_saved() {
    let app = TestApp::start().await;
    let (wh, _) = app.webhook("checked").await;
    let path = format!("/webhooks/{wh}/targets");
    let too_many: Vec<Value> = (0..21).map(|_| json!({"method": "POST"})).collect();
    for (body, needle) in [
        (json!({"filter": {"all": []}}), "1 to 20 conditions"),
        (json!({"filter": {"any": too_many}}), "1 to 20 conditions"),
        (
            json!({"filter": {"all": [{"json": "action", "equals": "x"}]}}),
            "JSON Pointer",
        ),
        (
            json!({"filter": {"all": [{"header": "X-A", "equals": "a", "in": ["b"]}]}}),
            "exactly one",
        ),
        (
            json!({"transform": {"set_headers": {"X-Webhooker-Hops": "0"}}}),
            "cannot be set",
        ),
        (json!({"transform": {"path": "/{nope}"}}), "placeholder"),
    ] {
        let mut target = json!({"name": "t", "kind": "http", "url": "http://127.0.0.1:9/"});
        for (k, v) in body.as_object().unwrap() {
            target[k] = v.clone();
        }
        let r = app
            .api(Method::POST, &path)
            .json(&target)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 422, "{body}");
        let text = r.text().await.unwrap();
        assert!(text.contains(needle), "{body}: {text}");
    }
    // A filter is removed with null.
    let id = app
        .target(
            &wh,
            json!({"name": "t", "kind": "log", "filter": {"all": [{"method": "POST"}]}}),
        )
        .await;
    let r = app
        .api(Method::PATCH, &format!("/webhooks/{wh}/targets/{id}"))
        .json(&json!({"filter": null}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let t: Value = r.json().await.unwrap();
    assert_eq!(t["filter"], Value::Null);
}

async fn dedupe_webhook(app: &TestApp, dedupe: Value, sink: &Receiver) -> (String, String) {
    let w = app
        .post_json("/webhooks", json!({"name": "idempotent", "dedupe": dedupe}))
        .await;
    let id = w["id"].as_str().unwrap().to_string();
    let url = w["entrypoints"][0]["url"].as_str().unwrap().to_string();
    app.target(
        &id,
        json!({"name": "sink", "kind": "http", "url": sink.url("/")}),
    )
    .await;
    (id, url)
}

#[tokio::test]
async fn the_same_key_twice_stores_one_event_and_delivers_once() {
    let app = TestApp::start().await;
    let sink = Receiver::start().await;
    let (wh, url) = dedupe_webhook(
        &app,
        json!({"header": "X-GitHub-Delivery", "window_secs": 3600}),
        &sink,
    )
    .await;
    let w = app.get_json(&format!("/webhooks/{wh}")).await;
    assert_eq!(
        w["dedupe"],
        json!({"header": "x-github-delivery", "window_secs": 3600})
    );
    let key = [("X-GitHub-Delivery", "72d3162e-cc78-11e3-81ab-4c9367dc0958")];
    let (s1, first) = send(&app, Method::POST, &url, &key, b"{}").await;
    assert_eq!(s1, 200);
    assert_eq!(
        first.get("duplicate"),
        None,
        "a first request is no duplicate"
    );
    let (s2, second) = send(&app, Method::POST, &url, &key, b"{}").await;
    assert_eq!(s2, 200);
    assert_eq!(
        second,
        json!({"status": "ok", "event_id": first["event_id"], "duplicate": true})
    );
    // Another key, and a request without one, are stored as usual.
    let (_, other) = send(
        &app,
        Method::POST,
        &url,
        &[("X-GitHub-Delivery", "b")],
        b"{}",
    )
    .await;
    let (_, keyless) = send(&app, Method::POST, &url, &[], b"{}").await;
    assert_eq!(other.get("duplicate"), None);
    assert_eq!(keyless.get("duplicate"), None);
    assert_eq!(event_total(&app, &wh).await, 3);
    assert!(wait_until(WAIT, || async { sink.count() == 3 }).await);
    let delivered: Vec<String> = sink
        .received()
        .iter()
        .filter_map(|r| r.header("x-webhooker-event-id"))
        .collect();
    assert_eq!(
        delivered
            .iter()
            .filter(|id| **id == first["event_id"].as_str().unwrap())
            .count(),
        1,
        "the duplicate was not delivered"
    );
}

#[tokio::test]
async fn a_json_pointer_key_dedupes_and_concurrent_duplicates_store_one() {
    let app = TestApp::start().await;
    let sink = Receiver::start().await;
    let (wh, url) = dedupe_webhook(&app, json!({"json": "/id"}), &sink).await;
    let w = app.get_json(&format!("/webhooks/{wh}")).await;
    assert_eq!(w["dedupe"], json!({"json": "/id", "window_secs": 86400}));
    // 16 requests with one key at once: one is stored, every answer names it.
    let mut tasks = Vec::new();
    for _ in 0..16 {
        let (http, url) = (app.http.clone(), url.clone());
        tasks.push(tokio::spawn(async move {
            let r = http
                .post(&url)
                .body(r#"{"id":"evt_1NQ2","type":"charge.succeeded"}"#)
                .send()
                .await
                .unwrap();
            assert_eq!(r.status(), 200);
            r.json::<Value>().await.unwrap()
        }));
    }
    let mut answers = Vec::new();
    for t in tasks {
        answers.push(t.await.unwrap());
    }
    let ids: HashSet<&str> = answers
        .iter()
        .map(|a| a["event_id"].as_str().unwrap())
        .collect();
    assert_eq!(ids.len(), 1, "{answers:?}");
    let fresh = answers
        .iter()
        .filter(|a| a.get("duplicate").is_none())
        .count();
    assert_eq!(fresh, 1, "exactly one request stored the event");
    assert_eq!(event_total(&app, &wh).await, 1);
    assert!(wait_until(WAIT, || async { sink.count() == 1 }).await);
    // A body that is not JSON has no key: stored as usual.
    let (_, plain) = send(&app, Method::POST, &url, &[], b"id=evt_1NQ2").await;
    assert_eq!(plain.get("duplicate"), None);
    assert_eq!(event_total(&app, &wh).await, 2);
}

#[tokio::test]
async fn a_key_outside_its_window_is_stored_again() {
    let app = TestApp::start().await;
    let sink = Receiver::start().await;
    let (wh, url) = dedupe_webhook(
        &app,
        json!({"header": "webhook-id", "window_secs": 1}),
        &sink,
    )
    .await;
    let key = [("webhook-id", "msg_1")];
    let (_, first) = send(&app, Method::POST, &url, &key, b"{}").await;
    let (_, dup) = send(&app, Method::POST, &url, &key, b"{}").await;
    assert_eq!(dup["duplicate"], true);
    // The window is one second: after it, the key stores a new event.
    tokio::time::sleep(Duration::from_millis(1100)).await;
    let (_, again) = send(&app, Method::POST, &url, &key, b"{}").await;
    assert_eq!(again.get("duplicate"), None);
    assert_ne!(again["event_id"], first["event_id"]);
    assert_eq!(event_total(&app, &wh).await, 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_key_survives_sigkill_and_restart() {
    let dir = tempfile::tempdir().unwrap();
    let dir_path = dir.path().to_path_buf();
    let mut server = tokio::task::spawn_blocking(move || ServerProcess::start(&dir_path, None))
        .await
        .unwrap();
    webhooker::delivery::install_crypto_provider();
    let http = reqwest::Client::new();
    let w: Value = http
        .post(format!("{}/api/v1/webhooks", server.base))
        .basic_auth("admin", Some(PASSWORD))
        .json(&json!({"name": "crash", "dedupe": {"header": "Idempotency-Key"}}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let wh = w["id"].as_str().unwrap().to_string();
    let path = reqwest::Url::parse(w["entrypoints"][0]["url"].as_str().unwrap())
        .unwrap()
        .path()
        .to_string();
    let post = |base: &str| {
        http.post(format!("{base}{path}"))
            .header("Idempotency-Key", "order-42")
            .body("{}")
            .send()
    };
    let first: Value = post(&server.base).await.unwrap().json().await.unwrap();
    server.kill();

    let dir_path = dir.path().to_path_buf();
    let port = server.port;
    let server = tokio::task::spawn_blocking(move || ServerProcess::start(&dir_path, Some(port)))
        .await
        .unwrap();
    let again: Value = post(&server.base).await.unwrap().json().await.unwrap();
    assert_eq!(again["duplicate"], true);
    assert_eq!(again["event_id"], first["event_id"]);
    let list: Value = http
        .get(format!("{}/api/v1/webhooks/{wh}/events", server.base))
        .basic_auth("admin", Some(PASSWORD))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(list["total"], 1);
}

#[tokio::test]
async fn transforms_shape_the_forwarded_request() {
    let app = TestApp::start().await;
    let sink = Receiver::start().await;
    let (wh, url) = app.webhook("shaped").await;
    let target = app
        .target(
            &wh,
            json!({"name": "third party", "kind": "http", "url": sink.url("/replaced?old=1"),
            "signing": false,
            "transform": {
                "set_headers": {"Authorization": "Bearer receiver-token", "X-Source": "webhooker"},
                "remove_headers": ["X-Hub-Signature-256"],
                "path": "/hooks/{header.X-GitHub-Event}/{event_id}?{query}&via=webhooker"
            }}),
        )
        .await;
    let t = app.get_json(&format!("/webhooks/{wh}")).await;
    let shown = t["targets"]
        .as_array()
        .unwrap()
        .iter()
        .find(|x| x["id"] == target.as_str())
        .unwrap()["transform"]
        .clone();
    assert_eq!(shown["remove_headers"], json!(["x-hub-signature-256"]));
    assert_eq!(
        shown["set_headers"]["authorization"],
        "Bearer receiver-token"
    );

    let r = app
        .http
        .post(format!("{url}?a=1&b=two"))
        .header("X-GitHub-Event", "pull_request")
        .header("X-Hub-Signature-256", "sha256=senders-signature")
        .header("Authorization", "token from the sender")
        .header("X-Kept", "yes")
        .body("{}")
        .send()
        .await
        .unwrap();
    let event_id = r.json::<Value>().await.unwrap()["event_id"]
        .as_str()
        .unwrap()
        .to_string();
    assert!(wait_until(WAIT, || async { sink.count() == 1 }).await);
    let got = &sink.received()[0];
    assert_eq!(
        got.uri.to_string(),
        format!("/hooks/pull_request/{event_id}?a=1&b=two&via=webhooker")
    );
    assert_eq!(
        got.header("authorization").as_deref(),
        Some("Bearer receiver-token")
    );
    assert_eq!(got.header("x-source").as_deref(), Some("webhooker"));
    assert_eq!(got.header("x-hub-signature-256"), None);
    assert_eq!(got.header("x-kept").as_deref(), Some("yes"));
    assert_eq!(got.header("x-webhooker-hops").as_deref(), Some("1"));
    let auth_values = got
        .headers
        .iter()
        .filter(|(k, _)| k.eq_ignore_ascii_case("authorization"))
        .count();
    assert_eq!(
        auth_values, 1,
        "set replaces, never adds beside the sender's"
    );
    // The attempt's record of the request sent keeps the transform's values out (they
    // may be credentials): the API and the event page show a placeholder.
    let detail = format!("/webhooks/{wh}/events/{event_id}");
    assert!(
        wait_until(WAIT, || async {
            app.get_json(&detail).await.to_string().contains("x-source")
        })
        .await,
        "the attempt records the request sent"
    );
    let recorded = app.get_json(&detail).await.to_string();
    assert!(!recorded.contains("receiver-token"), "{recorded}");
    assert!(recorded.contains("not recorded"), "{recorded}");
}

#[tokio::test]
async fn a_target_at_an_own_entrypoint_is_refused() {
    let app = TestApp::start().await;
    let (wh, url) = app.webhook("loop").await;
    let (_, other_url) = app.webhook("other").await;
    let id = url.rsplit('/').next().unwrap().to_string();
    let upper = url.replace(&id, &id.to_uppercase());
    let via_template = json!({"name": "t", "kind": "http", "url": app.url("/"),
                              "transform": {"path": format!("/webhook/{id}?x=1")}});
    for target in [
        json!({"name": "t", "kind": "http", "url": url}),
        json!({"name": "t", "kind": "http", "url": upper}),
        json!({"name": "t", "kind": "http", "url": other_url}),
        json!({"name": "t", "kind": "http", "url": format!("http://localhost.:9/webhook/{id}")}),
        json!({"name": "t", "kind": "slack", "url": url}),
        via_template,
    ] {
        let r = app
            .api(Method::POST, &format!("/webhooks/{wh}/targets"))
            .json(&target)
            .send()
            .await
            .unwrap();
        let status = r.status();
        let text = r.text().await.unwrap();
        assert_eq!(status, 422, "{target}: {text}");
        assert!(text.contains("own entrypoints"), "{target}: {text}");
    }
    // Other paths of this server are not entrypoints.
    app.target(
        &wh,
        json!({"name": "t", "kind": "http", "url": app.url("/webhook/not-an-entrypoint")}),
    )
    .await;
}

#[tokio::test]
async fn past_the_hop_limit_ingest_answers_508_and_stores_nothing() {
    let app = TestApp::start().await;
    let (wh, url) = app.webhook("hops").await;
    let (status, body) = send(
        &app,
        Method::POST,
        &url,
        &[("X-Webhooker-Hops", "4")],
        b"{}",
    )
    .await;
    assert_eq!(status, 508, "{body}");
    assert!(body["error"].as_str().unwrap().contains("loop"), "{body}");
    assert_eq!(event_total(&app, &wh).await, 0);
    let (status, _) = send(
        &app,
        Method::POST,
        &url,
        &[("X-Webhooker-Hops", "3")],
        b"{}",
    )
    .await;
    assert_eq!(status, 200);
    assert_eq!(event_total(&app, &wh).await, 1);
}

#[tokio::test]
async fn a_loop_through_a_relay_ends_at_the_hop_limit() {
    use std::sync::Arc;
    use std::sync::atomic::{AtomicUsize, Ordering};

    let app = TestApp::start().await;
    let (wh, url) = app.webhook("looped").await;
    // A relay the save-time check cannot see through: it forwards what it gets, hop count
    // included, to the webhook's own entrypoint, and accepts whatever came of it.
    let refused = Arc::new(AtomicUsize::new(0));
    let relay = {
        let (to, refused) = (url.clone(), refused.clone());
        axum::Router::new().fallback(
            move |headers: axum::http::HeaderMap, body: axum::body::Bytes| {
                let (to, refused) = (to.clone(), refused.clone());
                async move {
                    let mut req = reqwest::Client::new().post(&to).body(body);
                    if let Some(hops) = headers.get("x-webhooker-hops") {
                        req = req.header("x-webhooker-hops", hops);
                    }
                    if let Ok(r) = req.send().await
                        && r.status() == 508
                    {
                        refused.fetch_add(1, Ordering::SeqCst);
                    }
                    axum::http::StatusCode::OK
                }
            },
        )
    };
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let relay_addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, relay).await });
    app.target(
        &wh,
        json!({"name": "relay", "kind": "http", "url": format!("http://{relay_addr}/")}),
    )
    .await;
    let (status, _) = send(&app, Method::POST, &url, &[], b"{}").await;
    assert_eq!(status, 200);
    // Stored with hop counts 0, 1, 2 and 3; the forward of the last is refused.
    assert!(wait_until(WAIT, || async { refused.load(Ordering::SeqCst) == 1 }).await);
    assert_eq!(event_total(&app, &wh).await, 4);
}
