//! Watching and trying a webhook: the live event stream, test events, what an attempt
//! recorded of its exchange, compressed pages, forms that redirect, the login limit.

use std::io::Read as _;
use std::time::{Duration, Instant};

use reqwest::StatusCode;
use reqwest::header::{ACCEPT_ENCODING, CONTENT_ENCODING, CONTENT_TYPE, COOKIE};
use serde_json::{Value, json};

use crate::pages::{Browser, get, get_ok, location, login, post, post_login};
use crate::support::TestApp;
use crate::support::receiver::{Receiver, Reply};

/// Reads server-sent events from a live response until `want` accepts one (event name,
/// data JSON) or the deadline passes.
struct SseReader {
    resp: reqwest::Response,
    buffer: String,
}

impl SseReader {
    async fn next_matching(
        &mut self,
        deadline: Instant,
        want: impl Fn(&str, &Value) -> bool,
    ) -> Option<(String, Value)> {
        loop {
            while let Some(end) = self.buffer.find("\n\n") {
                let block: String = self.buffer.drain(..end + 2).collect();
                let mut name = "message".to_string();
                let mut data = String::new();
                for line in block.lines() {
                    if let Some(v) = line.strip_prefix("event:") {
                        name = v.trim().to_string();
                    } else if let Some(v) = line.strip_prefix("data:") {
                        data.push_str(v.trim_start());
                    }
                }
                if data.is_empty() {
                    continue; // a keep-alive comment
                }
                let value: Value = serde_json::from_str(&data).expect("data is JSON");
                if want(&name, &value) {
                    return Some((name, value));
                }
            }
            let left = deadline.checked_duration_since(Instant::now())?;
            match tokio::time::timeout(left, self.resp.chunk()).await {
                Ok(Ok(Some(chunk))) => self.buffer.push_str(&String::from_utf8_lossy(&chunk)),
                _ => return None,
            }
        }
    }
}

async fn open_stream(app: &TestApp, webhook: &str) -> SseReader {
    let resp = app
        .api(
            reqwest::Method::GET,
            &format!("/webhooks/{webhook}/events/stream"),
        )
        .header(ACCEPT_ENCODING, "gzip, br")
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    assert_eq!(
        resp.headers()[CONTENT_TYPE].to_str().unwrap(),
        "text/event-stream"
    );
    assert!(
        resp.headers().get(CONTENT_ENCODING).is_none(),
        "a live stream is never compressed"
    );
    SseReader {
        resp,
        buffer: String::new(),
    }
}

#[tokio::test]
async fn the_stream_tails_new_events_and_their_delivery_changes() {
    let app = TestApp::start().await;
    let sink = Receiver::start().await;
    // Fails once, then delivers: the stream tells both.
    sink.script([Reply::status(500)]);
    let (wh, url) = app.webhook("live").await;
    let target = app
        .target(
            &wh,
            json!({"name": "sink", "kind": "http", "url": sink.url("/in"), "max_retries": 3}),
        )
        .await;
    let mut stream = open_stream(&app, &wh).await;
    let deadline = Instant::now() + Duration::from_secs(15);

    let id = app.send(&url, b"{\"hello\":1}").await;
    let (_, news) = stream
        .next_matching(deadline, |name, v| name == "message" && v["id"] == id)
        .await
        .expect("the new event on the stream");
    assert_eq!(news["method"], "POST");
    assert_eq!(news["body_size"], 11);
    assert_eq!(news["deliveries"][0]["target_id"], target);
    assert_eq!(news["deliveries"][0]["status"], "pending");
    assert!(news["received_at"].as_str().unwrap().ends_with('Z'));

    let (_, retrying) = stream
        .next_matching(deadline, |name, v| {
            name == "delivery" && v["event_id"] == id && v["status"] == "retrying"
        })
        .await
        .expect("the failed first attempt");
    assert_eq!(retrying["attempts"], 1);
    assert!(retrying["next_attempt_at"].is_string());
    let (_, delivered) = stream
        .next_matching(deadline, |name, v| {
            name == "delivery" && v["event_id"] == id && v["status"] == "delivered"
        })
        .await
        .expect("the delivery");
    assert_eq!(delivered["attempts"], 2);

    // Another webhook's stream hears nothing of this one.
    let (other, _) = app.webhook("other").await;
    let mut quiet = open_stream(&app, &other).await;
    app.send(&url, b"{}").await;
    let heard = quiet
        .next_matching(Instant::now() + Duration::from_millis(500), |_, _| true)
        .await;
    assert!(heard.is_none(), "{heard:?}");

    // Unknown webhooks and anonymous callers get no stream.
    let r = app
        .api(
            reqwest::Method::GET,
            &format!("/webhooks/{}/events/stream", uuid::Uuid::new_v4()),
        )
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 404);
    let r = app
        .http
        .get(app.url(&format!("/api/v1/webhooks/{wh}/events/stream")))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 401);
    // Shutdown ends open streams rather than waiting for them.
    app.stop().await;
}

#[tokio::test]
async fn a_test_event_goes_through_ingest_and_is_marked() {
    let app = TestApp::start().await;
    let sink = Receiver::start().await;
    let (wh, _) = app.webhook("try").await;
    // Sender verification does not apply: the test comes from a signed-in user.
    let r = app
        .api(reqwest::Method::PATCH, &format!("/webhooks/{wh}"))
        .json(&json!({"verification": {"kind": "header", "name": "x-token", "value": "s3cret"}}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200, "{}", r.text().await.unwrap());
    app.target(
        &wh,
        json!({"name": "sink", "kind": "http", "url": sink.url("/in")}),
    )
    .await;

    let answer = app
        .post_json(&format!("/webhooks/{wh}/test-event"), json!({}))
        .await;
    assert_eq!(answer["status"], "ok");
    let id = answer["event_id"].as_str().unwrap().to_string();
    let event = app.wait_finished(&wh, &id, Duration::from_secs(10)).await;
    assert_eq!(event["test"], true);
    assert_eq!(event["method"], "POST");
    assert_eq!(event["content_type"], "application/json");
    let body: Value = serde_json::from_str(event["body"].as_str().unwrap()).unwrap();
    assert_eq!(body["type"], "webhooker.test");
    assert_eq!(event["deliveries"][0]["status"], "delivered");
    let got = &sink.received()[0];
    assert_eq!(got.header("x-webhooker-test").as_deref(), Some("true"));
    assert_eq!(
        got.header("x-webhooker-event-id").as_deref(),
        Some(id.as_str())
    );

    // A sender cannot pass its request off as a test: its X-Webhooker-Test is stored as
    // sent but not forwarded, and the event is not marked.
    let plain = app.webhook("plain").await;
    app.target(
        &plain.0,
        json!({"name": "sink", "kind": "http", "url": sink.url("/plain")}),
    )
    .await;
    let r = app
        .http
        .post(&plain.1)
        .header("x-webhooker-test", "true")
        .body("{}")
        .send()
        .await
        .unwrap();
    let forged: Value = r.json().await.unwrap();
    let forged = forged["event_id"].as_str().unwrap();
    let event = app
        .wait_finished(&plain.0, forged, Duration::from_secs(10))
        .await;
    assert_eq!(event["test"], false);
    let got = sink.received();
    let got = got.iter().find(|r| r.uri.path() == "/plain").unwrap();
    assert_eq!(got.header("x-webhooker-test"), None);

    // No active entrypoint: nothing to arrive on.
    let eid = app.get_json(&format!("/webhooks/{wh}")).await["entrypoints"][0]["id"]
        .as_str()
        .unwrap()
        .to_string();
    let r = app
        .api(
            reqwest::Method::PATCH,
            &format!("/webhooks/{wh}/entrypoints/{eid}"),
        )
        .json(&json!({"active": false}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let r = app
        .api(reqwest::Method::POST, &format!("/webhooks/{wh}/test-event"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::CONFLICT);
    let r = app
        .api(
            reqwest::Method::POST,
            &format!("/webhooks/{}/test-event", uuid::Uuid::new_v4()),
        )
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 404);
    app.stop().await;
}

#[tokio::test]
async fn test_events_are_never_deduplicated() {
    let app = TestApp::start().await;
    // Every test event has the same `type`: a dedupe key on it would match each time.
    let w = app
        .post_json(
            "/webhooks",
            json!({"name": "deduped", "dedupe": {"json": "/type", "window_secs": 3600}}),
        )
        .await;
    let wh = w["id"].as_str().unwrap().to_string();
    let url = w["entrypoints"][0]["url"].as_str().unwrap().to_string();
    let mut ids = Vec::new();
    for _ in 0..2 {
        let answer = app
            .post_json(&format!("/webhooks/{wh}/test-event"), json!({}))
            .await;
        assert_eq!(answer["duplicate"], Value::Null, "{answer}");
        ids.push(answer["event_id"].as_str().unwrap().to_string());
    }
    assert_ne!(ids[0], ids[1], "each click stores a new event");
    // Nor does a test event make a sender's request with that key a duplicate; the
    // sender's requests still dedupe among themselves.
    let body = r#"{"type":"webhooker.test"}"#;
    let first = app.send(&url, body.as_bytes()).await;
    assert!(!ids.contains(&first));
    let r = app.http.post(&url).body(body).send().await.unwrap();
    let again: Value = r.json().await.unwrap();
    assert_eq!(again["duplicate"], true);
    assert_eq!(again["event_id"], first.as_str());
    let list = app.get_json(&format!("/webhooks/{wh}/events")).await;
    assert_eq!(list["total"], 3, "{list}");
    app.stop().await;
}

#[tokio::test]
async fn an_attempt_records_the_request_sent_and_the_response_headers() {
    let app = TestApp::start().await;
    let sink = Receiver::start().await;
    let (wh, url) = app.webhook("debug").await;
    app.target(
        &wh,
        json!({"name": "sink", "kind": "http", "url": sink.url("/in?x=1")}),
    )
    .await;
    let id = app.send(&url, b"{\"a\":1}").await;
    let event = app.wait_finished(&wh, &id, Duration::from_secs(10)).await;
    let result = &event["deliveries"][0]["results"][0];
    let request = &result["request"];
    assert_eq!(request["method"], "POST");
    assert_eq!(request["url"], sink.url("/in?x=1"));
    let header = |list: &Value, name: &str| -> Option<String> {
        list.as_array()
            .unwrap()
            .iter()
            .find(|h| h["name"] == name)
            .map(|h| h["value"].as_str().unwrap().to_string())
    };
    // What the receiver got is what the record says was sent.
    let got = &sink.received()[0];
    for name in [
        "x-webhooker-event-id",
        "x-webhooker-delivery-id",
        "x-webhooker-attempt",
    ] {
        assert_eq!(
            header(&request["headers"], name),
            got.header(name),
            "{name}"
        );
    }
    assert_eq!(
        header(&result["response_headers"], "content-type").as_deref(),
        Some("text/plain; charset=utf-8")
    );

    // A receiver that does not answer in time: "no response (timed out after 1 s)".
    let slow = Receiver::start().await;
    slow.set_default(Reply::delayed(200, Duration::from_secs(5)));
    let (wh2, url2) = app.webhook("slow").await;
    app.target(
        &wh2,
        json!({"name": "slow", "kind": "http", "url": slow.url("/"), "timeout_secs": 1, "max_retries": 0}),
    )
    .await;
    let id2 = app.send(&url2, b"{}").await;
    let event = app.wait_finished(&wh2, &id2, Duration::from_secs(10)).await;
    let result = &event["deliveries"][0]["results"][0];
    assert_eq!(result["error"], "no response (timed out after 1 s)");
    assert!(result["request"]["headers"].is_array());
    assert_eq!(result["response_headers"], json!([]));

    // The event page shows both sides, and the timeout in those words.
    let b = login(&app).await;
    let html = get_ok(&app, &b, &format!("/webhooks/{wh}/events/{id}")).await;
    assert!(html.contains("Request sent") && html.contains("x-webhooker-delivery-id"));
    assert!(html.contains("delivered · 1 attempt"), "summary first");
    assert!(
        html.find("Summary").unwrap() < html.find("Request received").unwrap(),
        "deliveries come before the request's headers and body"
    );
    let html = get_ok(&app, &b, &format!("/webhooks/{wh2}/events/{id2}")).await;
    assert!(html.contains("no response (timed out after 1 s)"));
    app.stop().await;
}

#[tokio::test]
async fn bodies_download_raw_and_form_bodies_show_as_fields() {
    let app = TestApp::start().await;
    let (wh, url) = app.webhook("bodies").await;
    let b = login(&app).await;

    let html_body = b"<script>alert(1)</script>\xff";
    let r = app
        .http
        .post(&url)
        .header(CONTENT_TYPE, "text/html")
        .body(&html_body[..])
        .send()
        .await
        .unwrap();
    let id: Value = r.json().await.unwrap();
    let id = id["event_id"].as_str().unwrap();
    let r = get(&app, &b, &format!("/webhooks/{wh}/events/{id}/body")).await;
    assert_eq!(r.status(), 200);
    let h = r.headers().clone();
    assert_eq!(h[CONTENT_TYPE], "text/html");
    assert_eq!(
        h["content-disposition"].to_str().unwrap(),
        format!("attachment; filename=\"event-{id}.bin\"")
    );
    assert!(
        h["content-security-policy"]
            .to_str()
            .unwrap()
            .contains("sandbox")
    );
    assert_eq!(h["x-content-type-options"], "nosniff");
    assert_eq!(r.bytes().await.unwrap().as_ref(), &html_body[..]);
    // Only for the signed-in.
    let r = app
        .http
        .get(app.url(&format!("/webhooks/{wh}/events/{id}/body")))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::SEE_OTHER);

    let r = app
        .http
        .post(&url)
        .header(CONTENT_TYPE, "application/x-www-form-urlencoded")
        .body("payload=%7B%22a%22%3A1%7D&name=J%C3%B6rg+M")
        .send()
        .await
        .unwrap();
    let id: Value = r.json().await.unwrap();
    let id = id["event_id"].as_str().unwrap();
    let html = get_ok(&app, &b, &format!("/webhooks/{wh}/events/{id}")).await;
    assert!(html.contains("Form fields"));
    assert!(
        html.contains("<dt>payload</dt><dd>{&#34;a&#34;:1}</dd>"),
        "{html}"
    );
    assert!(html.contains("<dt>name</dt><dd>Jörg M</dd>"));
    app.stop().await;
}

#[tokio::test]
async fn pages_and_assets_are_compressed_but_not_ingest() {
    let app = TestApp::start().await;
    let (_, url) = app.webhook("zip").await;
    let b = login(&app).await;

    let r = app
        .http
        .get(app.url("/webhooks"))
        .header(COOKIE, &b.cookie)
        .header(ACCEPT_ENCODING, "gzip")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(r.headers()[CONTENT_ENCODING], "gzip");
    let zipped = r.bytes().await.unwrap();
    let mut html = String::new();
    flate2::read::GzDecoder::new(&zipped[..])
        .read_to_string(&mut html)
        .unwrap();
    assert!(html.contains("<!doctype html>") && html.contains("zip"));

    // Pages that show a secret beside text a sender controls, and the API, are not
    // compressed (their compressed size would leak the secret); the CSRF token in
    // compressed pages differs on every response.
    let detail = app.get_json("/webhooks").await[0]["id"]
        .as_str()
        .unwrap()
        .to_string();
    let r = app
        .http
        .get(app.url(&format!("/webhooks/{detail}")))
        .header(COOKIE, &b.cookie)
        .header(ACCEPT_ENCODING, "gzip, br")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert!(r.headers().get(CONTENT_ENCODING).is_none());
    let r = app
        .api(reqwest::Method::GET, "/webhooks")
        .header(ACCEPT_ENCODING, "gzip, br")
        .send()
        .await
        .unwrap();
    assert!(r.headers().get(CONTENT_ENCODING).is_none());
    let again = get_ok(&app, &b, "/webhooks").await;
    assert_ne!(
        crate::pages::csrf_in(&again),
        crate::pages::csrf_in(&html),
        "masked per response"
    );

    let css = format!("/s/css/app.css?v={}", env!("CARGO_PKG_VERSION"));
    let r = app
        .http
        .get(app.url(&css))
        .header(ACCEPT_ENCODING, "br")
        .send()
        .await
        .unwrap();
    assert_eq!(r.headers()[CONTENT_ENCODING], "br");
    let compressed = r.bytes().await.unwrap();
    let mut text = String::new();
    brotli_decompressor::Decompressor::new(&compressed[..], 4096)
        .read_to_string(&mut text)
        .unwrap();
    assert!(text.contains("tailwindcss"));
    assert!(compressed.len() * 3 < text.len(), "well compressed");

    // Without Accept-Encoding: plain.
    let r = app.http.get(app.url(&css)).send().await.unwrap();
    assert!(r.headers().get(CONTENT_ENCODING).is_none());

    // Ingest answers are never compressed.
    let r = app
        .http
        .post(&url)
        .header(ACCEPT_ENCODING, "gzip, br")
        .body("{}")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert!(r.headers().get(CONTENT_ENCODING).is_none());
    assert_eq!(r.json::<Value>().await.unwrap()["status"], "ok");
    app.stop().await;
}

#[tokio::test]
async fn forms_redirect_and_form_addresses_show_the_styled_page() {
    let app = TestApp::start().await;
    let b = login(&app).await;
    let (wh, _) = app.webhook("forms").await;

    // Send test event: POST → 303 to the event's page.
    let r = post(&app, &b, &format!("/webhooks/{wh}/test-event"), &[]).await;
    assert_eq!(r.status(), StatusCode::SEE_OTHER);
    let to = location(&r);
    assert!(to.starts_with(&format!("/webhooks/{wh}/events/")), "{to}");
    let html = get_ok(&app, &b, &to).await;
    assert!(html.contains("test event"));
    assert_eq!(
        app.get_json(&format!("/webhooks/{wh}/events")).await["total"],
        1
    );

    // The "how to send" example is there with events too.
    let html = get_ok(&app, &b, &format!("/webhooks/{wh}")).await;
    assert!(html.contains("How to send an event") && html.contains("curl -X POST"));

    // A GET of a form's address: the styled page with the navigation, not a bare 405.
    for path in [
        "/account/keys".to_string(),
        format!("/webhooks/{wh}/test-event"),
        "/logout".to_string(),
    ] {
        let r = get(&app, &b, &path).await;
        assert_eq!(r.status(), StatusCode::METHOD_NOT_ALLOWED, "{path}");
        let html = r.text().await.unwrap();
        assert!(html.contains("only takes a form submission"), "{path}");
        assert!(
            html.contains("Log out"),
            "signed in: the nav stays ({path})"
        );
    }
    // Other error pages keep it too; signed out, there is none.
    let html = get(&app, &b, "/no/such/page").await.text().await.unwrap();
    assert!(html.contains("Page not found") && html.contains("Log out"));
    let r = app.http.get(app.url("/no/such/page")).send().await.unwrap();
    assert_eq!(r.status(), 404);
    assert!(!r.text().await.unwrap().contains("Log out"));
    app.stop().await;
}

#[tokio::test]
async fn successful_logins_do_not_count_and_the_limit_shows_in_the_form() {
    let app = TestApp::start().await;
    for i in 0..8 {
        let r = post_login(&app, &app.password, "/webhooks").await;
        assert_eq!(r.status(), StatusCode::SEE_OTHER, "sign-in {i}");
    }
    for i in 0..5 {
        let r = post_login(&app, "wrong", "/").await;
        assert_eq!(r.status(), StatusCode::UNAUTHORIZED, "guess {i}");
    }
    // Over the limit: the same answer for the right password and a wrong one, inside
    // the login form, saying how long to wait.
    let mut pages = Vec::new();
    for password in [app.password.clone(), "wrong".to_string()] {
        let r = post_login(&app, &password, "/").await;
        assert_eq!(r.status(), StatusCode::TOO_MANY_REQUESTS);
        let wait: u64 = r.headers()["retry-after"]
            .to_str()
            .unwrap()
            .parse()
            .unwrap();
        assert!((1..=60).contains(&wait), "{wait}");
        assert!(
            r.headers()
                .get("set-cookie")
                .is_none_or(|c| { !c.to_str().unwrap().starts_with("webhooker_session") })
        );
        let html = r.text().await.unwrap();
        assert!(html.contains("name=\"password\""), "the form is shown");
        assert!(html.contains("Too many sign-in attempts. Wait "));
        // The CSRF token differs per form; nothing else may.
        let csrf = crate::pages::csrf_in(&html);
        pages.push(html.replace(&csrf, "").replace(&wait.to_string(), ""));
    }
    assert_eq!(pages[0], pages[1], "a limited client learns nothing");
    app.stop().await;
}

/// A session that has not signed in has no stream.
#[tokio::test]
async fn the_page_stream_needs_a_session() {
    let app = TestApp::start().await;
    let (wh, url) = app.webhook("pages").await;
    let r = app
        .http
        .get(app.url(&format!("/webhooks/{wh}/events/stream")))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::SEE_OTHER);
    let b: Browser = login(&app).await;
    let resp = get(&app, &b, &format!("/webhooks/{wh}/events/stream")).await;
    assert_eq!(resp.headers()[CONTENT_TYPE], "text/event-stream");
    let mut stream = SseReader {
        resp,
        buffer: String::new(),
    };
    let id = app.send(&url, b"{}").await;
    assert!(
        stream
            .next_matching(Instant::now() + Duration::from_secs(10), |_, v| v["id"]
                == id)
            .await
            .is_some()
    );
    app.stop().await;
}
