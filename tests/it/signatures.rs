//! Signatures, checked against code that is not ours: the official Standard Webhooks
//! library (`standardwebhooks`) verifies what webhooker sends.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde_json::{Value, json};

use crate::support::receiver::{Received, Receiver, Reply};
use crate::support::{TestApp, wait_until};

/// Verifies a received attempt with the official library, as a receiver would.
fn official_verify(secret: &str, got: &Received) -> Result<(), String> {
    let webhook = standardwebhooks::Webhook::new(secret).map_err(|e| e.to_string())?;
    let mut headers = axum::http::HeaderMap::new();
    for (name, value) in &got.headers {
        headers.append(
            axum::http::HeaderName::from_bytes(name.as_bytes()).unwrap(),
            axum::http::HeaderValue::from_bytes(value).unwrap(),
        );
    }
    webhook
        .verify(&got.body, &headers)
        .map_err(|e| e.to_string())
}

fn unix_now() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64
}

async fn target_json(app: &TestApp, webhook: &str, target: &str) -> Value {
    let detail = app.get_json(&format!("/webhooks/{webhook}")).await;
    detail["targets"]
        .as_array()
        .unwrap()
        .iter()
        .find(|t| t["id"] == target)
        .unwrap()
        .clone()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn attempts_verify_with_the_official_library_and_retries_keep_the_message_id() {
    let app = TestApp::start().await;
    let sink = Receiver::start().await;
    sink.script([Reply::status(503)]);
    let (wh, url) = app.webhook("signed").await;
    let target = app
        .post_json(
            &format!("/webhooks/{wh}/targets"),
            json!({"name": "sink", "kind": "http", "url": sink.url("/in"), "max_retries": 3}),
        )
        .await;
    assert_eq!(target["signing"], true, "on by default: {target}");
    let secret = target["signing_secret"].as_str().unwrap().to_string();
    assert!(secret.starts_with("whsec_"), "{secret}");
    let key = base64_decode(&secret["whsec_".len()..]);
    assert_eq!(key.len(), 32);
    // The read shows the same secret.
    let read = target_json(&app, &wh, target["id"].as_str().unwrap()).await;
    assert_eq!(read["signing_secret"], secret.as_str());

    // The sender's own Standard Webhooks headers must not pass for ours.
    let r = app
        .http
        .post(&url)
        .header("content-type", "application/json")
        .header("webhook-id", "msg_from_the_sender")
        .header("webhook-timestamp", "1")
        .header("webhook-signature", "v1,c2VuZGVyJ3Mgb3du")
        .body(r#"{"n": 1, "text": "héllo"}"#)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let event_id = r.json::<Value>().await.unwrap()["event_id"]
        .as_str()
        .unwrap()
        .to_string();
    let ev = app
        .wait_finished(&wh, &event_id, Duration::from_secs(10))
        .await;
    assert_eq!(ev["deliveries"][0]["status"], "delivered");
    assert_eq!(ev["deliveries"][0]["attempts"], 2);
    let delivery_id = ev["deliveries"][0]["id"].as_str().unwrap();

    let got = sink.received();
    assert_eq!(got.len(), 2);
    for (i, attempt) in got.iter().enumerate() {
        official_verify(&secret, attempt)
            .unwrap_or_else(|e| panic!("attempt {}: {e}: {attempt:?}", i + 1));
        assert_eq!(attempt.header("webhook-id").as_deref(), Some(delivery_id));
        let values = |name: &str| attempt.headers.iter().filter(|(n, _)| n == name).count();
        assert_eq!(
            (
                values("webhook-id"),
                values("webhook-timestamp"),
                values("webhook-signature")
            ),
            (1, 1, 1),
            "ours replace the sender's"
        );
        let ts: i64 = attempt
            .header("webhook-timestamp")
            .unwrap()
            .parse()
            .unwrap();
        assert!(
            (ts - unix_now()).abs() < 300,
            "the attempt's own time: {ts}"
        );
    }
    // A different secret does not verify them.
    let other = format!("whsec_{}", base64_encode(&[7u8; 32]));
    assert!(official_verify(&other, &got[0]).is_err());
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn during_a_rotation_both_secrets_verify_and_signing_can_be_switched_off() {
    let app = TestApp::start().await;
    let sink = Receiver::start().await;
    let (wh, url) = app.webhook("rotating").await;
    let t = app
        .post_json(
            &format!("/webhooks/{wh}/targets"),
            json!({"name": "sink", "kind": "http", "url": sink.url("/")}),
        )
        .await;
    let tid = t["id"].as_str().unwrap().to_string();
    let old = t["signing_secret"].as_str().unwrap().to_string();

    let rotated = app
        .post_json(
            &format!("/webhooks/{wh}/targets/{tid}/rotate-secret"),
            json!({}),
        )
        .await;
    let new = rotated["signing_secret"].as_str().unwrap().to_string();
    assert!(new.starts_with("whsec_") && new != old, "{rotated}");
    assert_eq!(
        target_json(&app, &wh, &tid).await["signing_secret"],
        new.as_str()
    );

    app.send(&url, br#"{"rotated": true}"#).await;
    assert!(wait_until(Duration::from_secs(10), || async { sink.count() == 1 }).await);
    let got = &sink.received()[0];
    let signatures = got.header("webhook-signature").unwrap();
    assert_eq!(signatures.split(' ').count(), 2, "{signatures}");
    official_verify(&new, got).expect("the new secret verifies");
    official_verify(&old, got).expect("the old secret still verifies during the overlap");

    // Off: nothing of ours; a sender's own headers pass through untouched.
    let r = app
        .api(
            reqwest::Method::PATCH,
            &format!("/webhooks/{wh}/targets/{tid}"),
        )
        .json(&json!({ "signing": false }))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(r.json::<Value>().await.unwrap()["signing"], false);
    let r = app
        .http
        .post(&url)
        .header("svix-id", "theirs")
        .header("webhook-id", "theirs")
        .body("unsigned")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert!(wait_until(Duration::from_secs(10), || async { sink.count() == 2 }).await);
    let got = &sink.received()[1];
    assert_eq!(got.header("webhook-id").as_deref(), Some("theirs"));
    assert_eq!(got.header("webhook-timestamp"), None);
    assert_eq!(got.header("webhook-signature"), None);
    app.stop().await;
}

fn base64_encode(bytes: &[u8]) -> String {
    use base64::Engine as _;
    base64::engine::general_purpose::STANDARD.encode(bytes)
}

fn base64_decode(text: &str) -> Vec<u8> {
    use base64::Engine as _;
    base64::engine::general_purpose::STANDARD
        .decode(text)
        .unwrap()
}
