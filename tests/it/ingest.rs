//! Ingest: status codes, byte-exact storage, durability across restart, concurrency.

use std::time::Duration;

use base64::Engine as _;
use reqwest::Method;
use serde_json::{Value, json};

use crate::support::{TestApp, test_config};

async fn total_events(app: &TestApp, webhook: &str) -> u64 {
    app.get_json(&format!("/webhooks/{webhook}/events")).await["total"]
        .as_u64()
        .unwrap()
}

#[tokio::test]
async fn ingest_status_codes_and_nothing_stored_on_errors() {
    let app = TestApp::start_with(|c| c.max_body_bytes = 1024).await;
    let (wh, url) = app.webhook("statuses").await;

    // 405 with Allow, for methods other than POST/PUT/PATCH.
    for m in [Method::GET, Method::DELETE] {
        let r = app.http.request(m, &url).send().await.unwrap();
        assert_eq!(r.status(), 405);
        assert_eq!(r.headers()["allow"], "POST, PUT, PATCH");
        let v: Value = r.json().await.unwrap();
        assert!(v["error"].is_string(), "{v}");
    }
    // 404 unknown and malformed ids.
    let unknown = app.url(&format!("/webhook/{}", uuid::Uuid::new_v4()));
    assert_eq!(
        app.http
            .post(unknown)
            .body("x")
            .send()
            .await
            .unwrap()
            .status(),
        404
    );
    // Malformed ids, other spellings of the real id, no id, more segments after it, and a
    // path that is not UTF-8: all a JSON 404.
    let real = url.rsplit('/').next().unwrap().to_string();
    let simple = real.replace('-', "");
    // Entrypoint URLs are not percent-decoded: only the plain spelling names one.
    let percent_encoded = format!("%{:02X}{}", real.as_bytes()[0], &real[1..]);
    for id in [
        "not-a-uuid".to_string(),
        simple.clone(),
        percent_encoded,
        format!("{{{real}}}"),
        format!("urn:uuid:{real}"),
        String::new(),
        format!("{real}/"),
        format!("{real}/more"),
        "%FF%FE".to_string(),
    ] {
        let r = app
            .http
            .post(app.url(&format!("/webhook/{id}")))
            .body("x")
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 404, "{id}");
        assert_eq!(r.headers()["x-content-type-options"], "nosniff", "{id}");
        let v: Value = r.json().await.unwrap();
        assert!(v["error"].is_string(), "{id}: {v}");
    }
    // The canonical spelling in upper case is the same entrypoint.
    let upper = app.url(&format!("/webhook/{}", real.to_uppercase()));
    assert_eq!(
        app.http
            .post(upper)
            .body("x")
            .send()
            .await
            .unwrap()
            .status(),
        200
    );
    // 413 over the limit, declared or streamed.
    let r = app
        .http
        .post(&url)
        .body(vec![b'a'; 1025])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 413);
    assert_eq!(chunked_post(&url, &[&[b'b'; 600], &[b'c'; 600]]).await, 413);
    assert_eq!(
        total_events(&app, &wh).await,
        1,
        "nothing stored on error paths (the one event is the upper-case id)"
    );

    // 200 for POST, PUT and PATCH, exactly at the limit.
    for m in [Method::POST, Method::PUT, Method::PATCH] {
        let r = app
            .http
            .request(m, &url)
            .body(vec![b'z'; 1024])
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200);
        let v: Value = r.json().await.unwrap();
        assert_eq!(v["status"], "ok");
        assert!(v["event_id"].as_str().is_some());
    }
    assert_eq!(total_events(&app, &wh).await, 4);

    // 410 once the entrypoint is switched off; nothing more stored.
    let detail = app.get_json(&format!("/webhooks/{wh}")).await;
    let eid = detail["entrypoints"][0]["id"].as_str().unwrap();
    let r = app
        .api(Method::PATCH, &format!("/webhooks/{wh}/entrypoints/{eid}"))
        .json(&json!({ "active": false }))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(
        app.http.post(&url).body("x").send().await.unwrap().status(),
        410
    );
    assert_eq!(total_events(&app, &wh).await, 4);
    app.stop().await;
}

/// POSTs a chunked body (no Content-Length) over a raw socket; returns the status code.
async fn chunked_post(url: &str, chunks: &[&[u8]]) -> u16 {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let u = reqwest::Url::parse(url).unwrap();
    let mut s = tokio::net::TcpStream::connect((u.host_str().unwrap(), u.port().unwrap()))
        .await
        .unwrap();
    let mut req = format!(
        "POST {} HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n",
        u.path()
    )
    .into_bytes();
    for c in chunks {
        req.extend_from_slice(format!("{:x}\r\n", c.len()).as_bytes());
        req.extend_from_slice(c);
        req.extend_from_slice(b"\r\n");
    }
    req.extend_from_slice(b"0\r\n\r\n");
    // The server may answer and close before reading everything; that is fine.
    let _ = s.write_all(&req).await;
    let mut buf = vec![0u8; 64];
    let n = s.read(&mut buf).await.unwrap();
    let line = String::from_utf8_lossy(&buf[..n]).to_string();
    line[9..12].parse().unwrap()
}

#[tokio::test]
async fn binary_body_and_repeated_headers_round_trip_byte_identical() {
    let app = TestApp::start().await;
    let (wh, url) = app.webhook("bytes").await;
    let body: Vec<u8> = vec![0x00, 0xff, 0xfe, b'{', 0x00, 0xc3, 0x28, b'\n', 0x80];
    let r = app
        .http
        .post(format!("{url}?a=1&b=%20"))
        .header("x-dup", "first")
        .header("x-dup", "second")
        .header("x-dup", "third")
        .header("content-type", "application/octet-stream")
        .body(body.clone())
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    // Ingest skips the router but answers with the same security headers as every route.
    assert_eq!(r.headers()["x-content-type-options"], "nosniff");
    assert_eq!(r.headers()["x-frame-options"], "DENY");
    assert!(r.headers().contains_key("content-security-policy"));
    assert!(r.headers().contains_key("referrer-policy"));
    let id = r.json::<Value>().await.unwrap()["event_id"]
        .as_str()
        .unwrap()
        .to_string();
    let ev = app.event(&wh, &id).await;
    assert_eq!(ev["body_encoding"], "base64");
    let got = base64::engine::general_purpose::STANDARD
        .decode(ev["body"].as_str().unwrap())
        .unwrap();
    assert_eq!(got, body);
    assert_eq!(ev["body_size"], body.len());
    assert!(ev["path"].as_str().unwrap().ends_with("?a=1&b=%20"));
    let dups: Vec<&str> = ev["headers"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|h| h["name"] == "x-dup")
        .map(|h| h["value"].as_str().unwrap())
        .collect();
    assert_eq!(dups, ["first", "second", "third"]);
    assert_eq!(ev["content_type"], "application/octet-stream");

    // A UTF-8 body comes back as text.
    let id = app.send(&url, "héllo ✓".as_bytes()).await;
    let ev = app.event(&wh, &id).await;
    assert_eq!(ev["body"], "héllo ✓");
    assert_eq!(ev["body_encoding"], "utf8");
    app.stop().await;
}

#[tokio::test]
async fn data_survives_restart() {
    let app = TestApp::start().await;
    let (wh, url) = app.webhook("durable").await;
    let mut ids = Vec::new();
    for _ in 0..20 {
        ids.push(app.send(&url, b"{\"n\":1}").await);
    }
    let dir = app.stop().await;
    let mut config = test_config(dir.path());
    config.admin_password = None;
    let app = TestApp::start_in(dir, config).await;
    assert_eq!(total_events(&app, &wh).await, 20);
    for id in &ids {
        let ev = app.event(&wh, id).await;
        assert_eq!(ev["body"], "{\"n\":1}");
    }
    // The entrypoint still accepts (on the new port).
    let path = reqwest::Url::parse(&url).unwrap().path().to_string();
    app.send(&app.url(&path), b"after restart").await;
    assert_eq!(total_events(&app, &wh).await, 21);
    app.stop().await;
}

#[tokio::test]
async fn eight_webhooks_ingesting_concurrently_lose_nothing() {
    let app = TestApp::start().await;
    let mut hooks = Vec::new();
    for i in 0..8 {
        let (wh, url) = app.webhook(&format!("c{i}")).await;
        app.target(&wh, json!({"name": "db", "kind": "database"}))
            .await;
        hooks.push((wh, url));
    }
    const PER_HOOK: usize = 50;
    // One client may hold a quarter of MAX_CONNECTIONS (256 by default) at once; on a
    // busy machine 400 requests in flight would open more and get 429.
    let connections = std::sync::Arc::new(tokio::sync::Semaphore::new(200));
    let mut tasks = Vec::new();
    for (_, url) in &hooks {
        for n in 0..PER_HOOK {
            let http = app.http.clone();
            let url = url.clone();
            let connections = connections.clone();
            tasks.push(tokio::spawn(async move {
                let _connection = connections.acquire_owned().await.unwrap();
                let r = http
                    .post(url)
                    .body(format!("event {n}"))
                    .send()
                    .await
                    .unwrap();
                assert_eq!(r.status(), 200);
            }));
        }
    }
    for t in tasks {
        t.await.unwrap();
    }
    for (wh, _) in &hooks {
        assert_eq!(total_events(&app, wh).await, PER_HOOK as u64);
    }
    // Every database delivery finishes.
    let ok = crate::support::wait_until(Duration::from_secs(20), || async {
        let mut all = true;
        for (wh, _) in &hooks {
            let page = app
                .get_json(&format!("/webhooks/{wh}/events?per_page=200"))
                .await;
            all &= page["events"]
                .as_array()
                .unwrap()
                .iter()
                .all(|e| e["deliveries"][0]["status"] == "delivered");
        }
        all
    })
    .await;
    assert!(ok);
    app.stop().await;
}

/// Lists carry at most 64 KiB of each body; the detail carries it whole.
#[tokio::test]
async fn event_lists_truncate_large_bodies() {
    let app = TestApp::start().await;
    let (wh, url) = app.webhook("big").await;
    let body = vec![b'y'; 200 * 1024];
    let r = app.http.post(&url).body(body.clone()).send().await.unwrap();
    assert_eq!(r.status(), 200);
    let page = app.get_json(&format!("/webhooks/{wh}/events")).await;
    let ev = &page["events"][0];
    assert_eq!(ev["body_truncated"], true);
    assert_eq!(ev["body_size"], 200 * 1024);
    assert_eq!(ev["body"].as_str().unwrap().len(), 64 * 1024);
    let id = ev["id"].as_str().unwrap();
    let full = app.event(&wh, id).await;
    assert_eq!(full["body_truncated"], false);
    assert_eq!(full["body"].as_str().unwrap().len(), 200 * 1024);

    // A cut inside a multi-byte character leaves text as text, minus the partial character.
    let text = format!("a{}", "é".repeat(40_000));
    let r = app.http.post(&url).body(text.clone()).send().await.unwrap();
    assert_eq!(r.status(), 200);
    let page = app.get_json(&format!("/webhooks/{wh}/events")).await;
    let ev = &page["events"][0];
    assert_eq!(ev["body_truncated"], true);
    assert_eq!(ev["body_encoding"], "utf8");
    let shown = ev["body"].as_str().unwrap();
    assert_eq!(
        shown.len(),
        64 * 1024 - 1,
        "the cut-off half of an é is dropped"
    );
    assert!(text.starts_with(shown));
    app.stop().await;
}

#[tokio::test]
async fn chunked_bodies_of_many_pieces_are_stored_byte_identical() {
    let app = TestApp::start().await;
    let (wh, url) = app.webhook("chunked").await;
    // Pieces that cross the 64 KiB unbudgeted start, so the reservation and the buffer
    // both grow while the body arrives.
    let a = vec![b'a'; 1000];
    let b = vec![b'b'; 70 * 1024];
    let c = vec![b'c'; 200 * 1024];
    assert_eq!(chunked_post(&url, &[&a, &b, &c, b"end"]).await, 200);
    let page = app.get_json(&format!("/webhooks/{wh}/events")).await;
    let id = page["events"][0]["id"].as_str().unwrap().to_string();
    let event = app.event(&wh, &id).await;
    let expected = [&a[..], &b[..], &c[..], b"end"].concat();
    assert_eq!(event["body_size"], expected.len());
    assert_eq!(event["body"].as_str().unwrap().as_bytes(), &expected[..]);
    app.stop().await;
}
