//! API authentication, hostile input, first-run admin, CRUD.

use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

use crate::support::{TestApp, test_config};

#[tokio::test]
async fn api_auth_rejections() {
    let app = TestApp::start().await;
    let url = app.url("/api/v1/webhooks");
    // No credentials.
    let r = app.http.get(&url).send().await.unwrap();
    assert_eq!(r.status(), 401);
    assert!(r.headers().contains_key("www-authenticate"));
    assert!(r.json::<Value>().await.unwrap()["error"].is_string());
    // Wrong password, unknown user, garbage headers.
    for (u, p) in [("admin", "nope"), ("root", "correct horse battery")] {
        let r = app
            .http
            .get(&url)
            .basic_auth(u, Some(p))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 401, "{u}");
    }
    for h in [
        "Bearer",
        "Bearer whk_zzz",
        "Basic !!!",
        "Digest abc",
        "Bearer whk_0123_abc",
    ] {
        let r = app
            .http
            .get(&url)
            .header("authorization", h)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 401, "{h}");
    }
    // A key works until revoked.
    let key = app.post_json("/keys", json!({ "name": "ci" })).await;
    let token = key["token"].as_str().unwrap().to_string();
    assert!(token.starts_with("whk_"));
    let r = app.http.get(&url).bearer_auth(&token).send().await.unwrap();
    assert_eq!(r.status(), 200);
    let listed = app.get_json("/keys").await;
    assert_eq!(listed[0]["name"], "ci");
    assert!(listed[0].get("token").is_none(), "secret is shown once");
    let kid = key["id"].as_str().unwrap();
    let r = app
        .api(Method::DELETE, &format!("/keys/{kid}"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 204);
    let r = app.http.get(&url).bearer_auth(&token).send().await.unwrap();
    assert_eq!(r.status(), 401);
    // A tampered secret with a real id fails too.
    let key = app.post_json("/keys", json!({ "name": "two" })).await;
    let mut forged = key["token"].as_str().unwrap().to_string();
    let last = forged.pop().unwrap();
    forged.push(if last == 'A' { 'B' } else { 'A' });
    let r = app
        .http
        .get(&url)
        .bearer_auth(&forged)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 401);
    app.stop().await;
}

#[tokio::test]
async fn hostile_json_gets_4xx_never_5xx() {
    let app = TestApp::start().await;
    let (wh, _) = app.webhook("hostile").await;
    let deep = format!("{}{}", "[".repeat(10_000), "]".repeat(10_000));
    let huge = format!("{{\"name\":\"{}\"}}", "x".repeat(200_000));
    let cases: Vec<(String, String)> = vec![
        ("/webhooks".into(), "{not json".into()),
        ("/webhooks".into(), "[]".into()),
        ("/webhooks".into(), "{\"name\": 5}".into()),
        ("/webhooks".into(), "{\"name\": \"\"}".into()),
        (
            "/webhooks".into(),
            "{\"name\": \"a\", \"retention_days\": -1}".into(),
        ),
        (
            "/webhooks".into(),
            "{\"name\": \"a\", \"evil\": true}".into(),
        ),
        ("/webhooks".into(), deep),
        ("/webhooks".into(), huge),
        ("/webhooks".into(), "\u{0}\u{1}".into()),
        // Control characters in names and descriptions (JSON escapes).
        ("/webhooks".into(), r#"{"name": "a\u0000b"}"#.into()),
        ("/webhooks".into(), r#"{"name": "a\u001b[31mred"}"#.into()),
        (
            "/webhooks".into(),
            r#"{"name": "a", "description": "bell\u0007"}"#.into(),
        ),
        ("/keys".into(), r#"{"name": "k\u0000"}"#.into()),
        (
            format!("/webhooks/{wh}/targets"),
            r#"{"name":"t","kind":"http","url":"http://127.0.0.1:0/"}"#.into(),
        ),
        (
            format!("/webhooks/{wh}/targets"),
            "{\"name\":\"t\",\"kind\":\"ftp\"}".into(),
        ),
        (
            format!("/webhooks/{wh}/targets"),
            "{\"name\":\"t\",\"kind\":\"http\"}".into(),
        ),
        (
            format!("/webhooks/{wh}/targets"),
            "{\"name\":\"t\",\"kind\":\"http\",\"url\":\"javascript:alert(1)\"}".into(),
        ),
        (
            format!("/webhooks/{wh}/targets"),
            "{\"name\":\"t\",\"kind\":\"http\",\"url\":\"http://x/\",\"max_retries\":\"lots\"}"
                .into(),
        ),
        (
            format!("/webhooks/{wh}/targets"),
            "{\"name\":\"t\",\"kind\":\"http\",\"url\":\"http://x/\",\"max_retries\":[1]}".into(),
        ),
        (
            format!("/webhooks/{wh}/targets"),
            "{\"name\":\"t\",\"kind\":\"http\",\"url\":\"http://169.254.169.254/\"}".into(),
        ),
        (
            format!("/webhooks/{}/targets", uuid::Uuid::new_v4()),
            "{\"name\":\"t\",\"kind\":\"log\"}".into(),
        ),
        ("/webhooks/not-a-uuid/targets".into(), "{}".into()),
        (
            format!("/webhooks/{wh}/events/{}/redeliver", uuid::Uuid::new_v4()),
            "{\"target_id\": 3}".into(),
        ),
    ];
    for (path, body) in cases {
        let r = app
            .api(Method::POST, &path)
            .header("content-type", "application/json")
            .body(body.clone())
            .send()
            .await
            .unwrap();
        let status = r.status();
        assert!(status.is_client_error(), "{path} {body:.60}: {status}");
        let v: Value = r.json().await.unwrap_or(json!({"error": "non-json"}));
        assert!(v["error"].is_string(), "{path}: {v}");
    }
    // Missing content type.
    let r = app
        .api(Method::POST, "/webhooks")
        .body("{\"name\":\"a\"}")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::UNSUPPORTED_MEDIA_TYPE);
    app.stop().await;
}

/// A configured first-run password must pass the rules of a new password: a short one
/// stops the first start, naming the variable. Later starts ignore the variable, so the
/// same value does not stop a deployment whose admin exists.
#[tokio::test]
async fn a_short_first_run_password_stops_only_the_first_start() {
    webhooker::delivery::install_crypto_provider();
    let short = "x".repeat(webhooker::model::MIN_PASSWORD - 1);
    let fresh = tempfile::tempdir().unwrap();
    let mut config = test_config(fresh.path());
    config.admin_password = Some(short.clone());
    let err = webhooker::app::App::start(config)
        .await
        .err()
        .expect("a short first-run password is refused");
    let message = format!("{err:#}");
    assert!(message.contains("WEBHOOKER_ADMIN_PASSWORD"), "{message}");
    assert!(!message.contains(&short), "the password is not echoed");

    let app = TestApp::start().await;
    let dir = app.stop().await;
    let mut config = test_config(dir.path());
    config.admin_password = Some(short);
    let app = TestApp::start_in(dir, config).await;
    assert!(app.app().first_run_password().is_none());
    app.stop().await;
}

#[tokio::test]
async fn first_run_admin_is_created_once() {
    let dir = tempfile::tempdir().unwrap();
    let app = TestApp::start_in(
        tempfile::TempDir::new_in(dir.path()).unwrap(),
        test_config(dir.path()),
    )
    .await;
    let password = app.app().first_run_password().unwrap().to_string();
    assert!(password.len() >= 16);
    let r = app
        .http
        .get(app.url("/api/v1/webhooks"))
        .basic_auth("admin", Some(&password))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    app.stop().await;
    let app = TestApp::start_in(
        tempfile::TempDir::new_in(dir.path()).unwrap(),
        test_config(dir.path()),
    )
    .await;
    assert!(
        app.app().first_run_password().is_none(),
        "second start creates nothing"
    );
    let r = app
        .http
        .get(app.url("/api/v1/webhooks"))
        .basic_auth("admin", Some(&password))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200, "the first password still works");
    app.stop().await;
}

#[tokio::test]
async fn webhook_crud_and_entrypoint_urls() {
    let app = TestApp::start_with(|c| c.base_url = Some("https://hooks.example.com".into())).await;
    let w = app
        .post_json(
            "/webhooks",
            json!({"name": "gh", "description": "GitHub", "retention_days": 7}),
        )
        .await;
    let id = w["id"].as_str().unwrap();
    assert_eq!(w["retention_days"], 7);
    let ep = &w["entrypoints"][0];
    assert_eq!(
        ep["url"],
        format!(
            "https://hooks.example.com/webhook/{}",
            ep["id"].as_str().unwrap()
        )
    );
    let e2 = app
        .post_json(
            &format!("/webhooks/{id}/entrypoints"),
            json!({"description": "second"}),
        )
        .await;
    assert_eq!(e2["active"], true);
    let t = app
        .post_json(
            &format!("/webhooks/{id}/targets"),
            json!({"name": "h", "kind": "http", "url": "http://127.0.0.1:9/x", "max_retries": 3, "timeout_secs": 5}),
        )
        .await;
    assert_eq!(t["max_retries"], 3);
    let tid = t["id"].as_str().unwrap();
    let r = app
        .api(Method::PATCH, &format!("/webhooks/{id}/targets/{tid}"))
        .json(&json!({"max_retries": "unlimited", "active": false}))
        .send()
        .await
        .unwrap();
    let t: Value = r.json().await.unwrap();
    assert_eq!(t["max_retries"], "unlimited");
    assert_eq!(t["active"], false);
    let r = app
        .api(Method::PATCH, &format!("/webhooks/{id}"))
        .json(&json!({"name": "renamed"}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.json::<Value>().await.unwrap()["name"], "renamed");
    let list = app.get_json("/webhooks").await;
    assert_eq!(list[0]["counts"]["entrypoints"], 2);
    assert_eq!(list[0]["counts"]["targets"], 1);
    let file = app.dir.path().join(format!("events-{id}.redb"));
    assert!(file.exists());
    let r = app
        .api(Method::DELETE, &format!("/webhooks/{id}"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 204);
    assert!(!file.exists(), "the event file goes with the webhook");
    let r = app
        .api(Method::GET, &format!("/webhooks/{id}"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 404);
    app.stop().await;
}

#[tokio::test]
async fn healthcheck_and_metrics() {
    let app = TestApp::start_with(|c| {
        c.metrics_credentials = Some(("prom".into(), "scrape".into()));
    })
    .await;
    let h: Value = app
        .http
        .get(app.url("/.well-known/healthcheck"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(h["status"], "ok");
    assert_eq!(h["appname"], "webhooker");
    assert!(h["uptime_seconds"].is_u64());
    let (wh, url) = app.webhook("m").await;
    app.target(&wh, json!({"name": "db", "kind": "database"}))
        .await;
    app.send(&url, b"x").await;
    let r = app.http.get(app.url("/metrics")).send().await.unwrap();
    assert_eq!(r.status(), 401);
    let scrape = || async {
        let r = app
            .http
            .get(app.url("/metrics"))
            .basic_auth("prom", Some("scrape"))
            .send()
            .await
            .unwrap();
        (r.status(), r.text().await.unwrap())
    };
    let (status, text) = scrape().await;
    assert_eq!(status, 200);
    assert!(text.contains("webhooker_events_received_total"), "{text}");
    // The due-index gauge appears for the webhook once the sweeper has passed.
    let due_rows = format!("webhooker_due_index_rows{{webhook=\"{wh}\"}} 0");
    let seen = crate::support::wait_until(std::time::Duration::from_secs(10), || async {
        scrape().await.1.contains(&due_rows)
    })
    .await;
    assert!(seen, "no {due_rows}");

    // Without credentials configured the route does not exist.
    let plain = TestApp::start().await;
    let r = plain.http.get(plain.url("/metrics")).send().await.unwrap();
    assert_eq!(r.status(), 404);
    plain.stop().await;
    app.stop().await;
}

/// The `/metrics` password can be guessed like a user's, so wrong ones count against the
/// same limit (5 a minute per client); Prometheus scraping with the right one does not.
#[tokio::test]
async fn metrics_password_guessing_is_rate_limited() {
    let app = TestApp::start_with(|c| {
        c.metrics_credentials = Some(("prom".into(), "scrape".into()));
    })
    .await;
    let scrape = |password: &str| {
        app.http
            .get(app.url("/metrics"))
            .basic_auth("prom", Some(password))
            .send()
    };
    for _ in 0..10 {
        assert_eq!(scrape("scrape").await.unwrap().status(), StatusCode::OK);
    }
    let mut statuses = Vec::new();
    for i in 0..6 {
        statuses.push(
            scrape(&format!("guess-{i}"))
                .await
                .unwrap()
                .status()
                .as_u16(),
        );
    }
    assert_eq!(statuses, [401, 401, 401, 401, 401, 429]);
    let r = scrape("scrape").await.unwrap();
    assert_eq!(
        r.status(),
        StatusCode::TOO_MANY_REQUESTS,
        "the limit holds for the right password too"
    );
    let v: Value = r.json().await.unwrap();
    assert!(v["error"].is_string(), "{v}");
    app.stop().await;
}

/// Basic credentials are cached for a minute; a password change must end that at once.
#[tokio::test]
async fn password_change_invalidates_cached_basic_credentials() {
    let app = TestApp::start().await;
    let url = app.url("/api/v1/webhooks");
    let ok = app
        .http
        .get(&url)
        .basic_auth("admin", Some(&app.password))
        .send()
        .await
        .unwrap();
    assert_eq!(ok.status(), 200);
    let service = app.app().service();
    let user = service
        .verify_password("admin", &app.password)
        .await
        .unwrap();
    service
        .change_password(&user, &app.password, "a brand new password", false, || true)
        .await
        .unwrap();
    let old = app
        .http
        .get(&url)
        .basic_auth("admin", Some(&app.password))
        .send()
        .await
        .unwrap();
    assert_eq!(old.status(), 401);
    let new = app
        .http
        .get(&url)
        .basic_auth("admin", Some("a brand new password"))
        .send()
        .await
        .unwrap();
    assert_eq!(new.status(), 200);
    app.stop().await;
}

/// Basic auth on the API shares the login limit: guessing passwords is not unlimited.
#[tokio::test]
async fn basic_auth_failures_are_rate_limited() {
    let app = TestApp::start().await;
    let url = app.url("/api/v1/webhooks");
    for _ in 0..5 {
        let r = app
            .http
            .get(&url)
            .basic_auth("admin", Some("guess"))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 401);
    }
    let r = app
        .http
        .get(&url)
        .basic_auth("admin", Some("guess"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 429);
    let r = app
        .http
        .get(&url)
        .basic_auth("admin", Some(&app.password))
        .send()
        .await
        .unwrap();
    assert_eq!(
        r.status(),
        429,
        "the limit holds for the right password too"
    );
    // API keys are not affected.
    let key = app
        .app()
        .service()
        .create_api_key(
            app.app()
                .service()
                .verify_password("admin", &app.password)
                .await
                .unwrap()
                .id,
            "k",
            webhooker::service::Authentication::Password,
        )
        .await
        .unwrap();
    let r = app
        .http
        .get(&url)
        .bearer_auth(&key.token)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    app.stop().await;
}

/// Regression: remembered Basic credentials skipped the login limit, so once anyone had
/// logged in correctly, a client over the limit got 429 for wrong guesses but 200 for the
/// right password: the difference gave the password away. Over the limit, every answer is
/// the same 429.
#[tokio::test]
async fn a_limited_client_learns_nothing_from_the_right_password() {
    let app = TestApp::start().await;
    let url = app.url("/api/v1/webhooks");
    let with = |password: &str| {
        app.http
            .get(&url)
            .basic_auth("admin", Some(password))
            .send()
    };
    // A legitimate script logs in: its credentials are now remembered.
    assert_eq!(with(&app.password).await.unwrap().status(), StatusCode::OK);
    let mut statuses = Vec::new();
    for i in 0..6 {
        statuses.push(with(&format!("guess-{i}")).await.unwrap().status().as_u16());
    }
    assert_eq!(statuses, [401, 401, 401, 401, 401, 429]);
    let wrong = with("guess-6").await.unwrap();
    let (wrong_status, wrong_body) = (wrong.status(), wrong.text().await.unwrap());
    let right = with(&app.password).await.unwrap();
    let (right_status, right_body) = (right.status(), right.text().await.unwrap());
    assert_eq!(wrong_status, StatusCode::TOO_MANY_REQUESTS);
    assert_eq!(
        (right_status, right_body),
        (wrong_status, wrong_body),
        "over the limit, the right password is answered like a wrong one"
    );
    app.stop().await;
}

/// Regression: a bearer key could create further keys, so a leaked key could mint a
/// replacement that outlives its own revocation. Creating a key takes the password.
#[tokio::test]
async fn an_api_key_cannot_create_api_keys() {
    let app = TestApp::start().await;
    let key = app.post_json("/keys", json!({ "name": "ci" })).await;
    let token = key["token"].as_str().unwrap().to_string();
    let r = app
        .http
        .post(app.url("/api/v1/keys"))
        .bearer_auth(&token)
        .json(&json!({ "name": "successor" }))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::FORBIDDEN);
    let v: Value = r.json().await.unwrap();
    assert!(v["error"].as_str().unwrap().contains("password"), "{v}");
    let keys = app.get_json("/keys").await;
    assert_eq!(keys.as_array().unwrap().len(), 1, "{keys}");
    // The key still does everything else, revoking keys included.
    let r = app
        .http
        .get(app.url("/api/v1/keys"))
        .bearer_auth(&token)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    app.stop().await;
}

/// A target as the webhook's detail shows it.
async fn stored_target(app: &TestApp, webhook: &str, id: &str) -> Value {
    let detail = app.get_json(&format!("/webhooks/{webhook}")).await;
    detail["targets"]
        .as_array()
        .unwrap()
        .iter()
        .find(|t| t["id"] == id)
        .unwrap()
        .clone()
}

#[tokio::test]
async fn target_urls_are_stored_as_they_will_be_requested() {
    let app = TestApp::start().await;
    let (wh, _) = app.webhook("urls").await;
    // Line breaks and tabs pasted into a URL are dropped (WHATWG URL parsing), so what is
    // stored and shown is exactly what will be requested; no CR/LF reaches a header.
    let id = app
        .target(
            &wh,
            json!({
                "name": "pasted",
                "kind": "http",
                "url": "http://127.0.0.1:9/a\r\nX-Injected: 1\tb",
            }),
        )
        .await;
    let target = stored_target(&app, &wh, &id).await;
    let url = target["url"].as_str().unwrap();
    assert_eq!(url, "http://127.0.0.1:9/aX-Injected:%201b");
    // A kind that sends nowhere ignores a URL (say, left in the form) instead of refusing it.
    let log = app
        .target(
            &wh,
            json!({"name": "log", "kind": "log", "url": "http://10.0.0.1/"}),
        )
        .await;
    let target = stored_target(&app, &wh, &log).await;
    assert!(target["url"].is_null(), "{target}");
    app.stop().await;
}

#[tokio::test]
async fn parallel_basic_auth_with_correct_credentials_is_not_rate_limited() {
    let app = TestApp::start().await;
    // Ten scripts' calls at once, before any was verified: they wait for one argon2 check
    // instead of each counting against the login limit of 5 per minute.
    let calls: Vec<_> = (0..10)
        .map(|_| {
            let request = app.api(Method::GET, "/webhooks");
            tokio::spawn(async move { request.send().await.unwrap().status() })
        })
        .collect();
    for call in calls {
        assert_eq!(call.await.unwrap(), StatusCode::OK);
    }
    // Wrong passwords are still limited.
    let mut statuses = Vec::new();
    for _ in 0..6 {
        let r = app
            .http
            .get(app.url("/api/v1/webhooks"))
            .basic_auth("admin", Some("wrong password"))
            .send()
            .await
            .unwrap();
        statuses.push(r.status().as_u16());
    }
    assert_eq!(statuses, [401, 401, 401, 401, 401, 429]);
    app.stop().await;
}

/// A missing event is a 404 before anything is said about the targets (here there is no
/// active one, which would be a 422 for an event that exists).
#[tokio::test]
async fn redelivering_an_unknown_event_is_404_whatever_the_targets() {
    let app = TestApp::start().await;
    let (wh, url) = app.webhook("no-targets").await;
    let path = format!("/webhooks/{wh}/events/{}/redeliver", uuid::Uuid::nil());
    let r = app.api(Method::POST, &path).send().await.unwrap();
    assert_eq!(r.status(), StatusCode::NOT_FOUND);
    let v: Value = r.json().await.unwrap();
    assert_eq!(v["error"], "event not found");
    let id = app.send(&url, b"{}").await;
    let path = format!("/webhooks/{wh}/events/{id}/redeliver");
    let r = app.api(Method::POST, &path).send().await.unwrap();
    assert_eq!(r.status(), StatusCode::UNPROCESSABLE_ENTITY);
    app.stop().await;
}

#[tokio::test]
async fn every_api_error_has_a_json_body() {
    let app = TestApp::start().await;
    // A method the route does not have: 405 with Allow, and the usual error body.
    let r = app.api(Method::PUT, "/webhooks").send().await.unwrap();
    assert_eq!(r.status(), StatusCode::METHOD_NOT_ALLOWED);
    assert!(r.headers()["allow"].to_str().unwrap().contains("POST"));
    let v: Value = r.json().await.unwrap();
    assert_eq!(v["error"], "method not allowed");
    // Unknown routes and bad ids too.
    for path in ["/nothing-here", "/webhooks/not-a-uuid"] {
        let r = app.api(Method::GET, path).send().await.unwrap();
        assert_eq!(r.status(), StatusCode::NOT_FOUND, "{path}");
        let v: Value = r.json().await.unwrap();
        assert!(v["error"].is_string(), "{path}: {v}");
    }
    // A raw body over the 64 KiB limit on routes that take one: axum rejects it in plain
    // text; the client still gets JSON, with that text.
    let (wh, _) = app.webhook("limits").await;
    // One byte over: a larger excess left unread could reset the connection first.
    let big = vec![b' '; 64 * 1024 + 1];
    for path in [
        format!("/webhooks/{wh}/entrypoints"),
        format!("/webhooks/{wh}/events/{}/redeliver", uuid::Uuid::nil()),
    ] {
        let r = app
            .api(Method::POST, &path)
            .header("content-type", "application/json")
            .body(big.clone())
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), StatusCode::PAYLOAD_TOO_LARGE, "{path}");
        assert!(
            r.headers()["content-type"]
                .to_str()
                .unwrap()
                .starts_with("application/json"),
            "{path}"
        );
        let v: Value = r.json().await.unwrap();
        assert!(
            v["error"].as_str().unwrap().contains("length limit"),
            "{path}: {v}"
        );
    }
    app.stop().await;
}

/// A browser that once answered the API's Basic challenge sends those credentials with
/// every request to the origin, also ones another site makes it send: a form post
/// (url-encoded, multipart or `text/plain`, often with an empty body) or a `no-cors` fetch
/// with a body and no Content-Type. The API refuses all of them with 415 and changes
/// nothing; JSON, and an empty body without a Content-Type, still work.
#[tokio::test]
async fn api_refuses_what_a_cross_site_page_can_post() {
    let app = TestApp::start().await;
    let (wh, url) = app.webhook("csrf").await;
    app.target(&wh, json!({ "name": "log", "kind": "log" }))
        .await;
    let event = app.send(&url, b"{}").await;
    let redeliver = format!("/webhooks/{wh}/events/{event}/redeliver");
    let entrypoints = format!("/webhooks/{wh}/entrypoints");
    let mut posts = Vec::new();
    for path in [
        redeliver.as_str(),
        entrypoints.as_str(),
        "/webhooks",
        "/keys",
    ] {
        for content_type in [
            "application/x-www-form-urlencoded",
            "multipart/form-data; boundary=x",
            "text/plain;charset=UTF-8",
            "Text/Plain",
        ] {
            for body in ["", "name=evil"] {
                posts.push((path, Some(content_type), body));
            }
        }
        posts.push((path, None, r#"{"name":"evil"}"#));
    }
    for (path, content_type, body) in posts {
        let mut request = app
            .api(Method::POST, path)
            .header("origin", "https://evil.example")
            .body(body);
        if let Some(content_type) = content_type {
            request = request.header("content-type", content_type);
        }
        let r = request.send().await.unwrap();
        assert_eq!(
            r.status(),
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "POST {path} as {content_type:?} with {body:?}"
        );
        let v: Value = r.json().await.unwrap();
        assert!(v["error"].is_string(), "{path}: {v}");
    }
    let ev = app.event(&wh, &event).await;
    assert_eq!(ev["deliveries"].as_array().unwrap().len(), 1, "{ev}");
    let detail = app.get_json(&format!("/webhooks/{wh}")).await;
    assert_eq!(detail["entrypoints"].as_array().unwrap().len(), 1);
    assert_eq!(app.get_json("/webhooks").await.as_array().unwrap().len(), 1);
    assert!(app.get_json("/keys").await.as_array().unwrap().is_empty());

    // What API clients send still works: no body and no Content-Type (`curl -X POST`), or
    // JSON.
    assert_eq!(app.redeliver(&wh, &event, None).await, StatusCode::ACCEPTED);
    let r = app.api(Method::POST, &entrypoints).send().await.unwrap();
    assert_eq!(r.status(), StatusCode::CREATED);
    app.post_json(&entrypoints, json!({ "description": "json" }))
        .await;
    app.stop().await;
}

/// Deletes racing for one entrypoint or target: exactly one of them deleted it (204); the
/// others find it gone (404), as a delete after it would.
#[tokio::test]
async fn concurrent_deletes_of_one_resource_answer_204_once() {
    let app = TestApp::start().await;
    let w = app.post_json("/webhooks", json!({"name": "w"})).await;
    let id = w["id"].as_str().unwrap();
    let ep = app
        .post_json(&format!("/webhooks/{id}/entrypoints"), json!({}))
        .await;
    let t = app
        .post_json(
            &format!("/webhooks/{id}/targets"),
            json!({"name": "db", "kind": "database"}),
        )
        .await;
    for path in [
        format!("/webhooks/{id}/entrypoints/{}", ep["id"].as_str().unwrap()),
        format!("/webhooks/{id}/targets/{}", t["id"].as_str().unwrap()),
    ] {
        let deletes = (0..8).map(|_| app.api(Method::DELETE, &path).send());
        let mut statuses: Vec<u16> = futures_util::future::join_all(deletes)
            .await
            .into_iter()
            .map(|r| r.unwrap().status().as_u16())
            .collect();
        statuses.sort_unstable();
        assert_eq!(statuses, [204, 404, 404, 404, 404, 404, 404, 404], "{path}");
    }
    app.stop().await;
}
