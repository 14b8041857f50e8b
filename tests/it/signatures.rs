//! Signatures both ways, checked against code that is not ours: the official Standard
//! Webhooks library (`standardwebhooks`) verifies what webhooker sends and signs what the
//! inbound tests send, and the GitHub, Gitea, Stripe and Slack signatures are made with an
//! independent HMAC-SHA256 implementation (`hmac-sha256`) in each sender's format.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use reqwest::StatusCode;
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

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// HMAC-SHA256 by an implementation independent of the one under test.
fn hmac(key: &[u8], message: &[u8]) -> [u8; 32] {
    hmac_sha256::HMAC::mac(message, key)
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
        .header("svix-id", "msg_from_the_sender")
        .header("svix-timestamp", "1")
        .header("svix-signature", "v1,c2VuZGVyJ3Mgb3du")
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
        for name in ["svix-id", "svix-timestamp", "svix-signature"] {
            assert_eq!(
                attempt.header(name),
                None,
                "Svix's libraries would read {name}"
            );
        }
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

/// One kind of inbound verification, tried with bad requests (each must be refused with
/// 401 and store nothing) and then a good one (200, stored, delivered).
struct Inbound {
    verification: Value,
    /// Requests that must be refused, with the reason the 401 must name.
    bad: Vec<(reqwest::RequestBuilder, &'static str)>,
    good: reqwest::RequestBuilder,
}

async fn check_inbound(app: &TestApp, name: &str, make: impl FnOnce(&TestApp, &str) -> Inbound) {
    let sink = Receiver::start().await;
    let (wh, url) = app.webhook(name).await;
    app.target(
        &wh,
        json!({"name": "sink", "kind": "http", "url": sink.url("/")}),
    )
    .await;
    let case = make(app, &url);
    let r = app
        .api(reqwest::Method::PATCH, &format!("/webhooks/{wh}"))
        .json(&json!({ "verification": case.verification }))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200, "{name}: {}", r.text().await.unwrap());
    for (i, (request, reason)) in case.bad.into_iter().enumerate() {
        let r = request.send().await.unwrap();
        assert_eq!(
            r.status(),
            StatusCode::UNAUTHORIZED,
            "{name} bad request {i}"
        );
        let error = r.json::<Value>().await.unwrap()["error"]
            .as_str()
            .unwrap()
            .to_string();
        assert!(error.contains(reason), "{name} bad request {i}: {error}");
    }
    let events = app.get_json(&format!("/webhooks/{wh}/events")).await;
    assert_eq!(
        events["total"], 0,
        "{name}: a refused request stores nothing"
    );
    let r = case.good.send().await.unwrap();
    assert_eq!(r.status(), 200, "{name}: {}", r.text().await.unwrap());
    assert!(
        wait_until(Duration::from_secs(10), || async { sink.count() == 1 }).await,
        "{name}: the verified event is delivered, the refused ones are not"
    );
    let events = app.get_json(&format!("/webhooks/{wh}/events")).await;
    assert_eq!(events["total"], 1, "{name}");
    // A static credential is for webhooker alone: neither forwarded nor stored.
    let credential = match case.verification["kind"].as_str() {
        Some("gitlab") => Some("x-gitlab-token".to_string()),
        Some("header") => case.verification["name"].as_str().map(str::to_lowercase),
        Some("basic") => Some("authorization".to_string()),
        _ => None,
    };
    if let Some(credential) = credential {
        let forwarded = &sink.received()[0];
        assert_eq!(forwarded.header(&credential), None, "{name}: {forwarded:?}");
        let id = events["events"][0]["id"].as_str().unwrap();
        let stored = app
            .get_json(&format!("/webhooks/{wh}/events/{id}"))
            .await
            .to_string()
            .to_lowercase();
        assert!(
            stored.contains("content-type") || stored.contains("headers"),
            "{stored}"
        );
        assert!(!stored.contains(&credential), "{name}: {stored}");
    }
}

const BODY: &str = r#"{"action":"opened","number":1}"#;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn inbound_signatures_of_each_sender_are_checked_before_anything_is_stored() {
    let app = TestApp::start().await;

    check_inbound(&app, "github", |app, url| {
        let secret = "gh-secret";
        let sign =
            |body: &str| format!("sha256={}", hex(&hmac(secret.as_bytes(), body.as_bytes())));
        let post = |sig: Option<String>, body: &str| {
            let mut r = app.http.post(url).body(body.to_string());
            if let Some(sig) = sig {
                r = r.header("x-hub-signature-256", sig);
            }
            r
        };
        let wrong = format!("sha256={}", hex(&hmac(b"not-the-secret", BODY.as_bytes())));
        Inbound {
            verification: json!({"kind": "github", "secret": secret}),
            bad: vec![
                (
                    post(Some(sign(BODY)), r#"{"action":"closed","number":1}"#),
                    "bad signature",
                ),
                (post(Some(wrong), BODY), "bad signature"),
                (post(None, BODY), "missing header X-Hub-Signature-256"),
            ],
            good: post(Some(sign(BODY)), BODY),
        }
    })
    .await;

    check_inbound(&app, "gitea", |app, url| {
        let secret = "gitea-secret";
        let sig = hex(&hmac(secret.as_bytes(), BODY.as_bytes()));
        Inbound {
            verification: json!({"kind": "gitea", "secret": secret}),
            bad: vec![
                (
                    app.http
                        .post(url)
                        .header("x-gitea-signature", &sig)
                        .body("{}"),
                    "bad signature",
                ),
                (
                    app.http.post(url).body(BODY),
                    "missing header X-Gitea-Signature",
                ),
            ],
            good: app
                .http
                .post(url)
                .header("x-gitea-signature", &sig)
                .body(BODY),
        }
    })
    .await;

    check_inbound(&app, "stripe", |app, url| {
        let secret = "whsec_stripe_test_secret";
        let sign = |t: i64, key: &str, body: &str| {
            let mac = hmac(key.as_bytes(), format!("{t}.{body}").as_bytes());
            format!("t={t},v1={},v0=deadbeef", hex(&mac))
        };
        let now = unix_now();
        let post = |sig: String, body: &str| {
            app.http
                .post(url)
                .header("stripe-signature", sig)
                .body(body.to_string())
        };
        Inbound {
            verification: json!({"kind": "stripe", "secret": secret}),
            bad: vec![
                (post(sign(now, secret, BODY), "{}"), "bad signature"),
                (post(sign(now, "whsec_other", BODY), BODY), "bad signature"),
                (post(sign(now - 600, secret, BODY), BODY), "stale timestamp"),
                (
                    app.http.post(url).body(BODY),
                    "missing header Stripe-Signature",
                ),
            ],
            good: post(sign(now, secret, BODY), BODY),
        }
    })
    .await;

    check_inbound(&app, "slack", |app, url| {
        let secret = "8f742231b10e8888abcd99yyyzzz85a5";
        let now = unix_now();
        let post = |ts: i64, key: &str, body: &str| {
            let mac = hmac(key.as_bytes(), format!("v0:{ts}:{body}").as_bytes());
            app.http
                .post(url)
                .header("x-slack-request-timestamp", ts.to_string())
                .header("x-slack-signature", format!("v0={}", hex(&mac)))
                .body(body.to_string())
        };
        Inbound {
            verification: json!({"kind": "slack", "secret": secret}),
            bad: vec![
                (post(now, secret, BODY).body("token=x"), "bad signature"),
                (post(now, "other", BODY), "bad signature"),
                (post(now - 301, secret, BODY), "stale timestamp"),
                (
                    app.http.post(url).body(BODY),
                    "missing header X-Slack-Request-Timestamp",
                ),
            ],
            good: post(now, secret, BODY),
        }
    })
    .await;

    for spelling in ["webhook", "svix"] {
        check_inbound(&app, &format!("standard-{spelling}"), |app, url| {
            let secret = format!("whsec_{}", base64_encode(b"a sender's 24-byte secret"));
            let signer = standardwebhooks::Webhook::new(&secret).unwrap();
            let other = standardwebhooks::Webhook::new("whsec_b3RoZXI=").unwrap();
            let now = unix_now();
            let post = |signer: &standardwebhooks::Webhook, ts: i64, signed: &str, sent: &str| {
                let sig = signer.sign("msg_1", ts, signed.as_bytes()).unwrap();
                app.http
                    .post(url)
                    .header(format!("{spelling}-id"), "msg_1")
                    .header(format!("{spelling}-timestamp"), ts.to_string())
                    .header(format!("{spelling}-signature"), sig)
                    .body(sent.to_string())
            };
            Inbound {
                verification: json!({"kind": "standard_webhooks", "secret": secret}),
                bad: vec![
                    (post(&signer, now, BODY, "{}"), "bad signature"),
                    (post(&other, now, BODY, BODY), "bad signature"),
                    (post(&signer, now - 301, BODY, BODY), "stale timestamp"),
                    (app.http.post(url).body(BODY), "missing header webhook-id"),
                ],
                good: post(&signer, now, BODY, BODY),
            }
        })
        .await;
    }

    check_inbound(&app, "gitlab", |app, url| Inbound {
        verification: json!({"kind": "gitlab", "token": "glpat-secret"}),
        bad: vec![
            (
                app.http
                    .post(url)
                    .header("x-gitlab-token", "glpat-guess")
                    .body(BODY),
                "wrong credentials",
            ),
            (
                app.http.post(url).body(BODY),
                "missing header X-Gitlab-Token",
            ),
        ],
        good: app
            .http
            .post(url)
            .header("x-gitlab-token", "glpat-secret")
            .body(BODY),
    })
    .await;

    check_inbound(&app, "header", |app, url| Inbound {
        verification: json!({"kind": "header", "name": "X-Api-Key", "value": "k-123"}),
        bad: vec![
            (
                app.http.post(url).header("x-api-key", "k-124").body(BODY),
                "wrong credentials",
            ),
            (app.http.post(url).body(BODY), "wrong credentials"),
        ],
        good: app.http.post(url).header("x-api-key", "k-123").body(BODY),
    })
    .await;

    check_inbound(&app, "basic", |app, url| Inbound {
        verification: json!({"kind": "basic", "username": "sender", "password": "pw"}),
        bad: vec![
            (
                app.http
                    .post(url)
                    .basic_auth("sender", Some("guess"))
                    .body(BODY),
                "wrong credentials",
            ),
            (
                app.http.post(url).body(BODY),
                "missing header Authorization",
            ),
        ],
        good: app
            .http
            .post(url)
            .basic_auth("sender", Some("pw"))
            .body(BODY),
    })
    .await;
    app.stop().await;
}

/// Refused requests are counted by reason, listed on the webhook's page with what they
/// carried, and never show the webhook's secret; the API returns the secret to its
/// authenticated caller only.
#[tokio::test]
async fn refused_requests_are_counted_and_listed_without_the_secret() {
    let app = TestApp::start_with(|c| {
        c.metrics_credentials = Some(("prom".into(), "scrape".into()));
    })
    .await;
    let (wh, url) = app.webhook("listed").await;
    let created = app
        .api(reqwest::Method::PATCH, &format!("/webhooks/{wh}"))
        .json(&json!({"verification": {"kind": "github", "secret": "s3cr3t-value"}}))
        .send()
        .await
        .unwrap();
    let created: Value = created.json().await.unwrap();
    assert_eq!(
        created["verification"],
        json!({"kind": "github", "secret": "s3cr3t-value"})
    );
    let r = app
        .http
        .post(&url)
        .header("x-hub-signature-256", "sha256=00")
        .header("x-trace", "visible-header")
        .body("the refused body")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 401);
    let text = r.text().await.unwrap();
    assert!(!text.contains("s3cr3t"), "{text}");

    // A secret left out keeps the current one when the kind stays.
    let kept: Value = app
        .api(reqwest::Method::PATCH, &format!("/webhooks/{wh}"))
        .json(&json!({"verification": {"kind": "github"}}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(kept["verification"]["secret"], "s3cr3t-value");
    // Another kind needs its own.
    let r = app
        .api(reqwest::Method::PATCH, &format!("/webhooks/{wh}"))
        .json(&json!({"verification": {"kind": "stripe"}}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 422);
    let r = app
        .api(reqwest::Method::PATCH, &format!("/webhooks/{wh}"))
        .json(&json!({"verification": {"kind": "standard_webhooks", "secret": "not base64!"}}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 422);

    let metrics = app
        .http
        .get(app.url("/metrics"))
        .basic_auth("prom", Some("scrape"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let line = metrics
        .lines()
        .find(|l| l.starts_with("webhooker_ingest_rejected_total") && l.contains(&wh))
        .unwrap_or_else(|| panic!("no counter for {wh}:\n{metrics}"));
    assert!(line.contains("reason=\"bad_signature\""), "{line}");

    // The webhook's page lists it, with what it carried.
    let browser = crate::pages::login(&app).await;
    let html = crate::pages::get_ok(&app, &browser, &format!("/webhooks/{wh}")).await;
    let listed = &html[html.find("Rejected requests").expect("the list is shown")..];
    for shown in [
        "bad signature",
        "visible-header",
        "the refused body",
        "127.0.0.1",
    ] {
        assert!(listed.contains(shown), "{shown} missing from {listed}");
    }
    app.stop().await;
}

/// A main file written by webhooker 1.0.0 (format version 1, before signatures existed)
/// opens: its webhooks read without verification, its http target with a signing secret
/// and signing off (what its receivers get is unchanged by the upgrade), and it keeps
/// receiving and delivering.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_main_file_from_before_signatures_still_reads() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::copy(
        concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/tests/it/fixtures/main-v1.redb"
        ),
        dir.path().join("webhooker.redb"),
    )
    .unwrap();
    let mut config = crate::support::test_config(dir.path());
    config.admin_password = Some("correct horse battery".into());
    let app = TestApp::start_in(dir, config).await;
    let list = app.get_json("/webhooks").await;
    let webhook = list
        .as_array()
        .unwrap()
        .iter()
        .find(|w| w["name"] == "legacy")
        .unwrap_or_else(|| panic!("{list}"));
    assert_eq!(webhook["verification"], json!({"kind": "none"}));
    let wh = webhook["id"].as_str().unwrap();
    let detail = app.get_json(&format!("/webhooks/{wh}")).await;
    let targets = detail["targets"].as_array().unwrap();
    let http = targets.iter().find(|t| t["kind"] == "http").unwrap();
    assert_eq!(http["name"], "legacy-http");
    assert_eq!(http["url"], "http://127.0.0.1:9/legacy");
    assert_eq!(http["max_retries"], 7);
    assert_eq!(http["signing"], false);
    assert!(
        http["signing_secret"]
            .as_str()
            .unwrap()
            .starts_with("whsec_")
    );
    assert!(targets.iter().any(|t| t["kind"] == "log"));
    // It still receives: point the http target at a sink and send.
    let sink = Receiver::start().await;
    let tid = http["id"].as_str().unwrap();
    let r = app
        .api(
            reqwest::Method::PATCH,
            &format!("/webhooks/{wh}/targets/{tid}"),
        )
        .json(&json!({"url": sink.url("/"), "signing": true}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let secret = r.json::<Value>().await.unwrap()["signing_secret"]
        .as_str()
        .unwrap()
        .to_string();
    let url = detail["entrypoints"][0]["url"].as_str().unwrap();
    app.send(url, br#"{"after": "upgrade"}"#).await;
    assert!(wait_until(Duration::from_secs(10), || async { sink.count() == 1 }).await);
    official_verify(&secret, &sink.received()[0]).unwrap();
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

/// Secrets set through the API and the credentials senders present never reach the log,
/// even at DEBUG: the real binary's output is searched for each of them.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn secrets_never_reach_the_log() {
    use crate::support::process::ServerProcess;

    webhooker::delivery::install_crypto_provider();
    let http = reqwest::Client::new();
    let sink = Receiver::start().await;
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().to_path_buf();
    let mut server = tokio::task::spawn_blocking(move || {
        ServerProcess::start_with(&path, None, &[("RUST_LOG", "debug")])
    })
    .await
    .unwrap();
    let created = server
        .api_json(
            &http,
            reqwest::Method::POST,
            "/webhooks",
            Some(
                json!({"name": "quiet", "verification": {"kind": "github", "secret": "gh-hush-1"}}),
            ),
        )
        .await;
    let wh = created["id"].as_str().unwrap().to_string();
    let url = created["entrypoints"][0]["url"]
        .as_str()
        .unwrap()
        .to_string();
    let target = server
        .api_json(
            &http,
            reqwest::Method::POST,
            &format!("/webhooks/{wh}/targets"),
            Some(json!({"name": "sink", "kind": "http", "url": sink.url("/")})),
        )
        .await;
    let tid = target["id"].as_str().unwrap();
    let rotated = server
        .api_json(
            &http,
            reqwest::Method::POST,
            &format!("/webhooks/{wh}/targets/{tid}/rotate-secret"),
            None,
        )
        .await;
    let mut secrets = vec![
        "gh-hush-1".to_string(),
        "gl-hush-2".to_string(),
        target["signing_secret"].as_str().unwrap().to_string(),
        rotated["signing_secret"].as_str().unwrap().to_string(),
    ];
    // A wrong signature, then the GitLab kind: a wrong token and the right one.
    let r = http
        .post(&url)
        .header("x-hub-signature-256", format!("sha256={}", "0".repeat(64)))
        .body(BODY)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::UNAUTHORIZED);
    server
        .api_json(
            &http,
            reqwest::Method::PATCH,
            &format!("/webhooks/{wh}"),
            Some(json!({"verification": {"kind": "gitlab", "token": "gl-hush-2"}})),
        )
        .await;
    for token in ["gl-guess-3", "gl-hush-2"] {
        http.post(&url)
            .header("x-gitlab-token", token)
            .body(BODY)
            .send()
            .await
            .unwrap();
    }
    secrets.push("gl-guess-3".into());
    assert!(wait_until(Duration::from_secs(10), || async { sink.count() == 1 }).await);
    tokio::task::spawn_blocking(move || {
        server.stop();
        let lines = server.output.lock().unwrap().clone();
        assert!(
            lines
                .iter()
                .any(|l| l.contains("DEBUG") || l.contains("\"debug\"")),
            "the log runs at DEBUG: {lines:?}"
        );
        for secret in &secrets {
            let hits: Vec<_> = lines
                .iter()
                .filter(|l| l.contains(secret.as_str()))
                .collect();
            assert!(hits.is_empty(), "{secret} logged: {hits:?}");
        }
    })
    .await
    .unwrap();
}
