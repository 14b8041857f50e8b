//! The admin commands and the healthcheck, through the real binary: export and import of
//! events (the API's streamed export too, and an export of several pages), reset-password
//! (of a named user too), a healthcheck that reports an event file it cannot open, and a
//! storage failure logged once however many requests meet it.

use std::time::Duration;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use serde_json::{Value, json};

use crate::support::process::{PASSWORD, ServerProcess, run_command, run_command_in};
use crate::support::receiver::{Receiver, Reply};
use crate::support::wait_until;

fn client() -> reqwest::Client {
    webhooker::delivery::install_crypto_provider();
    reqwest::Client::new()
}

async fn create_webhook(http: &reqwest::Client, base: &str, name: &str) -> (String, String) {
    let w: Value = http
        .post(format!("{base}/api/v1/webhooks"))
        .basic_auth("admin", Some(PASSWORD))
        .json(&json!({ "name": name }))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let url = w["entrypoints"][0]["url"].as_str().unwrap().to_string();
    (w["id"].as_str().unwrap().to_string(), url)
}

/// The event lines of an NDJSON export, after checking its header.
fn event_lines(ndjson: &[u8], webhook: &str) -> Vec<Value> {
    let text = std::str::from_utf8(ndjson).unwrap();
    let mut lines = text.lines();
    let header: Value = serde_json::from_str(lines.next().expect("a header line")).unwrap();
    assert_eq!(header["format"], "webhooker-events", "{header}");
    assert_eq!(header["version"], 1, "{header}");
    assert_eq!(header["webhook_id"], webhook, "{header}");
    lines.map(|l| serde_json::from_str(l).unwrap()).collect()
}

/// Export through the API while the server runs and with the command once it is stopped
/// give the same events, bodies (binary, inline and chunked) and attempts; import into
/// another webhook restores them once (a second import skips them); the commands (import
/// included) refuse while a server holds the data directory; reset-password replaces the
/// password.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn export_import_and_reset_password_through_the_binary() {
    let http = client();
    let receiver = Receiver::start().await;
    // Each delivery's first attempt fails, its retry succeeds: a history of two attempts.
    receiver.script([Reply::status(500), Reply::status(500), Reply::status(500)]);
    let dir = tempfile::tempdir().unwrap();
    let mut server = ServerProcess::start(dir.path(), None);
    let base = server.base.clone();
    let (source, url) = create_webhook(&http, &base, "source").await;
    let (restored, _) = create_webhook(&http, &base, "restored").await;
    let r = http
        .post(format!("{base}/api/v1/webhooks/{source}/targets"))
        .basic_auth("admin", Some(PASSWORD))
        .json(
            &json!({"name": "down", "kind": "http", "url": receiver.url("/in"), "max_retries": 3}),
        )
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 201);
    // A target whose filter no event matches: a skipped delivery with its reason.
    let r = http
        .post(format!("{base}/api/v1/webhooks/{source}/targets"))
        .basic_auth("admin", Some(PASSWORD))
        .json(&json!({"name": "never", "kind": "log",
            "filter": {"all": [{"header": "X-Never", "exists": true}]}}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 201, "{}", r.text().await.unwrap());

    let bodies: Vec<Vec<u8>> = vec![
        b"{\"n\":1}".to_vec(),
        vec![0xff, 0x00, 0xfe, 0x80],
        (0..100_000u32).map(|i| (i * 7 % 251) as u8).collect(),
    ];
    for body in &bodies {
        let r = http.post(&url).body(body.clone()).send().await.unwrap();
        assert_eq!(r.status(), 200);
    }
    // Every delivery finished, after a failed attempt and a retry.
    assert!(
        wait_until(Duration::from_secs(30), || async { receiver.count() >= 6 }).await,
        "attempts never arrived"
    );
    let finished = || async {
        let page: Value = http
            .get(format!("{base}/api/v1/webhooks/{source}/events"))
            .basic_auth("admin", Some(PASSWORD))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        page["events"].as_array().is_some_and(|events| {
            events.iter().all(|e| {
                e["deliveries"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .all(|d| d["status"] == "delivered" || d["status"] == "skipped")
            })
        })
    };
    assert!(wait_until(Duration::from_secs(30), finished).await);

    // Streamed through the API.
    let r = http
        .get(format!("{base}/api/v1/webhooks/{source}/export"))
        .basic_auth("admin", Some(PASSWORD))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(r.headers()["content-type"], "application/x-ndjson");
    let from_api = r.bytes().await.unwrap();
    let events = event_lines(&from_api, &source);
    assert_eq!(events.len(), 3);
    for (event, body) in events.iter().zip(&bodies) {
        assert_eq!(
            STANDARD.decode(event["body"].as_str().unwrap()).unwrap(),
            *body
        );
        let deliveries = event["deliveries"].as_array().unwrap();
        let delivery = deliveries
            .iter()
            .find(|d| d["status"] != "skipped")
            .unwrap();
        assert_eq!(delivery["status"], "delivered");
        assert_eq!(
            delivery["results"].as_array().unwrap().len(),
            2,
            "{delivery}"
        );
        let first = &delivery["results"][0];
        assert_eq!(first["status_code"], 500);
        // The attempt's exchange: the request sent and the response's headers.
        assert_eq!(first["request"]["method"], "POST", "{first}");
        assert!(
            first["request"]["headers"]
                .as_array()
                .unwrap()
                .iter()
                .any(|h| h[0] == "webhook-signature"),
            "{first}"
        );
        assert!(!first["response_headers"].as_array().unwrap().is_empty());
        let skipped = deliveries
            .iter()
            .find(|d| d["status"] == "skipped")
            .unwrap();
        assert!(
            skipped["reason"]
                .as_str()
                .unwrap()
                .to_ascii_lowercase()
                .contains("x-never"),
            "{skipped}"
        );
        assert!(skipped["results"].as_array().unwrap().is_empty());
    }
    // A time after every event: nothing but the header.
    let later = http
        .get(format!(
            "{base}/api/v1/webhooks/{source}/export?since=2999-01-01T00:00:00Z"
        ))
        .basic_auth("admin", Some(PASSWORD))
        .send()
        .await
        .unwrap()
        .bytes()
        .await
        .unwrap();
    assert!(event_lines(&later, &source).is_empty());

    // The commands refuse while the server holds the directory.
    for args in [
        vec!["reset-password"],
        vec!["export", "--webhook", source.as_str()],
        vec!["import", "--webhook", restored.as_str()],
    ] {
        let out = run_command(dir.path(), server.port, &args, b"");
        assert_eq!(out.code, 1, "{args:?}: {}", out.stderr);
        assert!(out.stderr.contains("in use"), "{args:?}: {}", out.stderr);
        assert!(out.stdout.is_empty());
    }

    server.stop();
    let exported = run_command(dir.path(), 0, &["export", "--webhook", &source], b"");
    assert_eq!(exported.code, 0, "{}", exported.stderr);
    // The same lines as the API's (the header differs in its time only).
    let skip_header = |b: &[u8]| b.splitn(2, |&c| c == b'\n').nth(1).unwrap().to_vec();
    assert_eq!(skip_header(&exported.stdout), skip_header(&from_api));

    let import =
        |input: &[u8]| run_command(dir.path(), 0, &["import", "--webhook", &restored], input);
    let first = import(&exported.stdout);
    assert_eq!(first.code, 0, "{}", first.stderr);
    assert!(
        first.stderr.contains("imported 3 events, skipped 0"),
        "{}",
        first.stderr
    );
    let again = import(&exported.stdout);
    assert_eq!(again.code, 0, "{}", again.stderr);
    assert!(
        again.stderr.contains("imported 0 events, skipped 3"),
        "{}",
        again.stderr
    );
    // Not an export, or one of another version: refused, saying which line.
    let bad = import(b"{\"format\":\"webhooker-events\",\"version\":99,\"webhook_id\":\"00000000-0000-0000-0000-000000000000\",\"exported_at\":\"x\",\"since\":null}\n");
    assert_eq!(bad.code, 1);
    assert!(
        bad.stderr.contains("line 1") && bad.stderr.contains("99"),
        "{}",
        bad.stderr
    );
    let unknown = run_command(
        dir.path(),
        0,
        &[
            "export",
            "--webhook",
            "00000000-0000-0000-0000-000000000001",
        ],
        b"",
    );
    assert_eq!(unknown.code, 1);
    assert!(
        unknown.stderr.contains("no such webhook"),
        "{}",
        unknown.stderr
    );

    let reset = run_command(dir.path(), 0, &["reset-password"], b"");
    assert_eq!(reset.code, 0, "{}", reset.stderr);
    let new_password = String::from_utf8(reset.stdout).unwrap().trim().to_string();
    assert!(new_password.len() >= 16, "{new_password}");

    // Back up: the restored webhook has the events, whole, with their attempts; the new
    // password works and the old one does not.
    let server = ServerProcess::start(dir.path(), None);
    let base = server.base.clone();
    let old = http
        .get(format!("{base}/api/v1/webhooks"))
        .basic_auth("admin", Some(PASSWORD))
        .send()
        .await
        .unwrap();
    assert_eq!(old.status(), 401);
    let r = http
        .get(format!("{base}/api/v1/webhooks/{restored}/export"))
        .basic_auth("admin", Some(&new_password))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let back = r.bytes().await.unwrap();
    assert_eq!(skip_header(&back), skip_header(&from_api));
    let id = events[1]["id"].as_str().unwrap();
    let detail: Value = http
        .get(format!("{base}/api/v1/webhooks/{restored}/events/{id}"))
        .basic_auth("admin", Some(&new_password))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(detail["body_encoding"], "base64", "{detail}");
    let deliveries = detail["deliveries"].as_array().unwrap();
    let delivered = deliveries
        .iter()
        .find(|d| d["status"] == "delivered")
        .unwrap();
    assert_eq!(delivered["results"].as_array().unwrap().len(), 2);
    assert_eq!(delivered["results"][0]["request"]["method"], "POST");
    let skipped = deliveries
        .iter()
        .find(|d| d["status"] == "skipped")
        .unwrap();
    assert!(
        skipped["reason"]
            .as_str()
            .unwrap()
            .to_ascii_lowercase()
            .contains("x-never"),
        "{detail}"
    );
    drop(server);
}

/// An event file that cannot be opened (here a directory in its place, which blocks even
/// root) makes the healthcheck answer 503 "degraded" naming the webhook, and
/// `webhooker healthcheck` exit 1; the failure is logged once, not every second; once the
/// file opens again, both are back to ok.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_healthcheck_reports_an_event_file_that_cannot_be_opened() {
    let http = client();
    let dir = tempfile::tempdir().unwrap();
    let mut server = ServerProcess::start(dir.path(), None);
    let (webhook, url) = create_webhook(&http, &server.base, "broken").await;
    assert_eq!(
        http.post(&url).body("one").send().await.unwrap().status(),
        200
    );
    let health = |base: String| {
        let http = http.clone();
        async move {
            let r = http
                .get(format!("{base}/.well-known/healthcheck"))
                .send()
                .await
                .unwrap();
            (r.status().as_u16(), r.json::<Value>().await.unwrap())
        }
    };
    let (status, body) = health(server.base.clone()).await;
    assert_eq!((status, &body["status"]), (200, &json!("ok")), "{body}");
    assert_eq!(
        run_command(dir.path(), server.port, &["healthcheck"], b"").code,
        0
    );
    let port = server.port;
    server.stop();

    let file = dir.path().join(format!("events-{webhook}.redb"));
    std::fs::remove_file(&file).unwrap();
    std::fs::create_dir(&file).unwrap();
    let server = ServerProcess::start_with(dir.path(), Some(port), &[("RUST_LOG", "info")]);
    let refused = http.post(&url).body("two").send().await.unwrap();
    assert!(refused.status().is_server_error(), "{}", refused.status());
    let (status, body) = health(server.base.clone()).await;
    assert_eq!(status, 503, "{body}");
    assert_eq!(body["status"], "degraded");
    let failing = &body["storage"]["failing_event_files"][0];
    assert_eq!(failing["webhook_id"], webhook.as_str(), "{body}");
    assert_eq!(failing["webhook_name"], "broken");
    assert_eq!(failing["operation"], "open");
    assert!(
        body["reasons"][0].as_str().unwrap().contains(&webhook),
        "{body}"
    );
    let unhealthy = run_command(dir.path(), server.port, &["healthcheck"], b"");
    assert_eq!(unhealthy.code, 1);
    assert!(
        unhealthy.stderr.contains("503") && unhealthy.stderr.contains(&webhook),
        "the reason, naming the webhook: {}",
        unhealthy.stderr
    );

    // The sweeper meets the file every second, and senders retry: still one line for the
    // episode (two sweeps' time and two more refused requests later).
    assert_eq!(server.output_lines_with("cannot open event file"), 1);
    tokio::time::sleep(Duration::from_millis(2100)).await;
    for _ in 0..2 {
        let r = http.post(&url).body("again").send().await.unwrap();
        assert!(r.status().is_server_error());
    }
    assert_eq!(server.output_lines_with("cannot open event file"), 1);

    std::fs::remove_dir(&file).unwrap();
    let r = http.post(&url).body("three").send().await.unwrap();
    assert_eq!(r.status(), 200);
    let (status, body) = health(server.base.clone()).await;
    assert_eq!((status, &body["status"]), (200, &json!("ok")), "{body}");
    assert_eq!(
        run_command(dir.path(), server.port, &["healthcheck"], b"").code,
        0
    );
    assert_eq!(server.output_lines_with("opens again"), 1);
}

/// While two event files cannot be opened, many sender requests and API calls meet them,
/// each answered 503: the log has one ERROR per failing file, whatever the traffic (the
/// store logs each episode when it begins; ingest and the trace layer log each request at
/// DEBUG), and one INFO when a file opens again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_storage_failure_episode_logs_one_error_per_file_however_many_requests() {
    let http = client();
    let dir = tempfile::tempdir().unwrap();
    let mut server = ServerProcess::start(dir.path(), None);
    let webhooks = [
        create_webhook(&http, &server.base, "one").await,
        create_webhook(&http, &server.base, "two").await,
    ];
    let port = server.port;
    server.stop();
    for (webhook, _) in &webhooks {
        let file = dir.path().join(format!("events-{webhook}.redb"));
        std::fs::remove_file(&file).unwrap();
        std::fs::create_dir(&file).unwrap();
    }
    let server = ServerProcess::start_with(dir.path(), Some(port), &[("RUST_LOG", "info")]);
    let base = server.base.clone();
    for _ in 0..15 {
        for (webhook, url) in &webhooks {
            let r = http.post(url).body("refused").send().await.unwrap();
            assert_eq!(r.status(), 503, "{}", r.text().await.unwrap());
            let r = http
                .get(format!("{base}/api/v1/webhooks/{webhook}/events"))
                .basic_auth("admin", Some(PASSWORD))
                .send()
                .await
                .unwrap();
            assert_eq!(r.status(), 503, "{}", r.text().await.unwrap());
        }
    }
    let errors = || server.output_lines_with("\"level\":\"ERROR\"");
    let log = || server.output.lock().unwrap().join("\n");
    assert_eq!(errors(), 2, "{}", log());
    assert_eq!(server.output_lines_with("cannot open event file"), 2);

    let (webhook, url) = &webhooks[0];
    std::fs::remove_dir(dir.path().join(format!("events-{webhook}.redb"))).unwrap();
    let r = http.post(url).body("stored").send().await.unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(server.output_lines_with("opens again"), 1);
    assert_eq!(errors(), 2, "{}", log());
}

/// An export of more events than one page of the exporter (100) holds: the command's
/// NDJSON, imported into another webhook with the command, comes back through the API
/// line for line: every event, body (inline, chunked, binary), delivery and attempt.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_export_of_several_pages_round_trips_through_import() {
    const EVENTS: usize = 250;
    let http = client();
    let dir = tempfile::tempdir().unwrap();
    let mut server = ServerProcess::start(dir.path(), None);
    let base = server.base.clone();
    let (source, url) = create_webhook(&http, &base, "source").await;
    let (restored, _) = create_webhook(&http, &base, "restored").await;
    let r = http
        .post(format!("{base}/api/v1/webhooks/{source}/targets"))
        .basic_auth("admin", Some(PASSWORD))
        .json(&json!({"name": "audit", "kind": "log"}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 201, "{}", r.text().await.unwrap());
    // Mostly small JSON; every 40th a 20 KiB binary body, stored in pieces.
    let body = |i: usize| -> Vec<u8> {
        if i.is_multiple_of(40) {
            (0..20_000u32)
                .map(|b| (b as usize * 31 + i) as u8)
                .collect()
        } else {
            format!("{{\"n\":{i}}}").into_bytes()
        }
    };
    for i in 0..EVENTS {
        let r = http.post(&url).body(body(i)).send().await.unwrap();
        assert_eq!(r.status(), 200, "{}", r.text().await.unwrap());
    }
    let export = |webhook: String| {
        let http = http.clone();
        let base = base.clone();
        async move {
            let r = http
                .get(format!("{base}/api/v1/webhooks/{webhook}/export"))
                .basic_auth("admin", Some(PASSWORD))
                .send()
                .await
                .unwrap();
            assert_eq!(r.status(), 200);
            r.bytes().await.unwrap()
        }
    };
    // Every delivery made its attempt and finished.
    let all_delivered = || async {
        let lines = event_lines(&export(source.clone()).await, &source);
        lines.len() == EVENTS
            && lines.iter().all(|e| {
                e["deliveries"].as_array().unwrap().iter().all(|d| {
                    d["status"] == "delivered" && d["results"].as_array().unwrap().len() == 1
                })
            })
    };
    assert!(
        wait_until(Duration::from_secs(60), all_delivered).await,
        "deliveries did not finish"
    );
    server.stop();

    let exported = run_command(dir.path(), 0, &["export", "--webhook", &source], b"");
    assert_eq!(exported.code, 0, "{}", exported.stderr);
    let lines = event_lines(&exported.stdout, &source);
    assert_eq!(lines.len(), EVENTS);
    for (i, line) in lines.iter().enumerate() {
        assert_eq!(
            STANDARD.decode(line["body"].as_str().unwrap()).unwrap(),
            body(i),
            "event {i}"
        );
    }
    let imported = run_command(
        dir.path(),
        0,
        &["import", "--webhook", &restored],
        &exported.stdout,
    );
    assert_eq!(imported.code, 0, "{}", imported.stderr);
    assert!(
        imported
            .stderr
            .contains(&format!("imported {EVENTS} events, skipped 0")),
        "{}",
        imported.stderr
    );

    let server = ServerProcess::start(dir.path(), None);
    let base = server.base.clone();
    let r = http
        .get(format!("{base}/api/v1/webhooks/{restored}/export"))
        .basic_auth("admin", Some(PASSWORD))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let back = r.bytes().await.unwrap();
    let skip_header = |b: &[u8]| b.splitn(2, |&c| c == b'\n').nth(1).unwrap().to_vec();
    assert_eq!(event_lines(&back, &restored).len(), EVENTS);
    assert!(
        skip_header(&back) == skip_header(&exported.stdout),
        "the restored webhook's events differ from the export"
    );
}

/// `reset-password --user NAME` gives that user a new password and ends that user's
/// sessions; the old password stops working; another user keeps theirs and their session.
/// An unknown user is refused.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reset_password_for_a_named_user_resets_that_user_only() {
    use argon2::password_hash::PasswordHasher;
    use reqwest::header::COOKIE;

    const OPS_PASSWORD: &str = "ops user password 1";
    let http = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap();
    let dir = tempfile::tempdir().unwrap();
    // The first start creates `admin`; a second user is added to the stopped directory.
    let mut server = ServerProcess::start(dir.path(), None);
    server.stop();
    {
        let store = webhooker::store::Store::open(dir.path()).unwrap();
        let hash = argon2::Argon2::default()
            .hash_password(OPS_PASSWORD.as_bytes())
            .unwrap()
            .to_string();
        let ops = webhooker::model::User {
            id: uuid::Uuid::new_v4(),
            username: "ops".into(),
            password_hash: hash,
            created_at: webhooker::model::now_ms(),
        };
        assert!(store.main.insert_user(&ops).unwrap());
        store.close();
    }

    let mut server = ServerProcess::start(dir.path(), None);
    let base = server.base.clone();
    let login = |user: &'static str, password: &'static str| {
        let http = http.clone();
        let base = base.clone();
        async move {
            let r = http.get(format!("{base}/login")).send().await.unwrap();
            let csrf_cookie = crate::pages::cookie_pair(r.headers(), "webhooker_csrf").unwrap();
            let token = crate::pages::csrf_in(&r.text().await.unwrap());
            let r = http
                .post(format!("{base}/login"))
                .header(COOKIE, csrf_cookie)
                .header("content-type", "application/x-www-form-urlencoded")
                .body(
                    serde_urlencoded::to_string([
                        ("username", user),
                        ("password", password),
                        ("csrf_token", &token),
                        ("next", "/webhooks"),
                    ])
                    .unwrap(),
                )
                .send()
                .await
                .unwrap();
            assert_eq!(r.status(), 303, "{user}");
            crate::pages::cookie_pair(r.headers(), "webhooker_session").unwrap()
        }
    };
    let ops_session = login("ops", OPS_PASSWORD).await;
    let admin_session = login("admin", PASSWORD).await;
    let page = |base: String, cookie: String| {
        let http = http.clone();
        async move {
            http.get(format!("{base}/webhooks"))
                .header(COOKIE, cookie)
                .send()
                .await
                .unwrap()
                .status()
                .as_u16()
        }
    };
    assert_eq!(page(base.clone(), ops_session.clone()).await, 200);
    assert_eq!(page(base.clone(), admin_session.clone()).await, 200);
    server.stop();

    let unknown = run_command(dir.path(), 0, &["reset-password", "--user", "nobody"], b"");
    assert_eq!(unknown.code, 1);
    assert!(
        unknown.stderr.contains("no such user"),
        "{}",
        unknown.stderr
    );
    let reset = run_command(dir.path(), 0, &["reset-password", "--user", "ops"], b"");
    assert_eq!(reset.code, 0, "{}", reset.stderr);
    assert!(reset.stderr.contains("`ops`"), "{}", reset.stderr);
    let new_password = String::from_utf8(reset.stdout).unwrap().trim().to_string();
    assert!(new_password.len() >= 16, "{new_password}");

    let server = ServerProcess::start(dir.path(), None);
    let base = server.base.clone();
    let api = |user: &str, password: &str| {
        http.get(format!("{base}/api/v1/webhooks"))
            .basic_auth(user, Some(password))
            .send()
    };
    assert_eq!(api("ops", OPS_PASSWORD).await.unwrap().status(), 401);
    assert_eq!(api("ops", &new_password).await.unwrap().status(), 200);
    assert_eq!(api("admin", PASSWORD).await.unwrap().status(), 200);
    // The ops session ended (back to the login page); admin's goes on.
    assert_eq!(page(base.clone(), ops_session).await, 303);
    assert_eq!(page(base.clone(), admin_session).await, 200);
}

/// `webhooker healthcheck` asks the address the server listens on: its `HOST` (from the
/// environment or `.env`, as the server reads it), or loopback when `HOST` is every
/// address; a server on another address is no answer.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_healthcheck_asks_the_configured_host() {
    let dir = tempfile::tempdir().unwrap();
    let server = ServerProcess::start_with(dir.path(), None, &[("HOST", "127.0.0.2")]);
    let port = server.port.to_string();
    let data_dir = dir.path().to_string_lossy().into_owned();
    // Run from an empty directory unless told: no `.env` but the test's own.
    let empty = tempfile::tempdir().unwrap();
    let healthcheck = |cwd: Option<&std::path::Path>, env: &[(&str, &str)]| {
        let mut env = env.to_vec();
        env.extend([("DATA_DIR", data_dir.as_str()), ("PORT", port.as_str())]);
        run_command_in(
            Some(cwd.unwrap_or(empty.path())),
            &env,
            &["healthcheck"],
            b"",
        )
    };
    let asked = healthcheck(None, &[("HOST", "127.0.0.2")]);
    assert_eq!(asked.code, 0, "{}", asked.stderr);
    // HOST unset means every address: loopback, 127.0.0.1, where this server is not.
    let elsewhere = healthcheck(None, &[]);
    assert_eq!(elsewhere.code, 1);
    assert!(
        elsewhere.stderr.contains("no answer"),
        "{}",
        elsewhere.stderr
    );
    // From `.env` in the working directory, as the server reads it.
    let cwd = tempfile::tempdir().unwrap();
    std::fs::write(cwd.path().join(".env"), "HOST=127.0.0.2\n").unwrap();
    let from_dotenv = healthcheck(Some(cwd.path()), &[]);
    assert_eq!(from_dotenv.code, 0, "{}", from_dotenv.stderr);
    let bad = healthcheck(None, &[("HOST", "not an address")]);
    assert_eq!(bad.code, 1);
    assert!(bad.stderr.contains("HOST"), "{}", bad.stderr);
    drop(server);
}

/// `reset-password` says how many API keys still work after it, and `--revoke-keys`
/// revokes them: a key that leaked with the password need not outlive the reset.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reset_password_keeps_api_keys_unless_told_to_revoke_them() {
    let http = client();
    let dir = tempfile::tempdir().unwrap();
    let mut server = ServerProcess::start(dir.path(), None);
    let key = server
        .api_json(
            &http,
            reqwest::Method::POST,
            "/keys",
            Some(json!({"name": "deploy"})),
        )
        .await;
    let token = key["token"].as_str().unwrap().to_string();
    server.stop();
    let kept = run_command(dir.path(), 0, &["reset-password"], b"");
    assert_eq!(kept.code, 0, "{}", kept.stderr);
    assert!(
        kept.stderr.contains("1 API key(s) still work"),
        "{}",
        kept.stderr
    );
    let mut server = ServerProcess::start(dir.path(), None);
    let r = http
        .get(format!("{}/api/v1/webhooks", server.base))
        .bearer_auth(&token)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200, "the key outlives a plain reset");
    server.stop();

    let revoked = run_command(dir.path(), 0, &["reset-password", "--revoke-keys"], b"");
    assert_eq!(revoked.code, 0, "{}", revoked.stderr);
    assert!(revoked.stderr.contains("revoked"), "{}", revoked.stderr);
    let mut server = ServerProcess::start(dir.path(), None);
    let r = http
        .get(format!("{}/api/v1/webhooks", server.base))
        .bearer_auth(&token)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 401, "--revoke-keys revokes it");
    server.stop();
}

/// An admin command pointed at a directory without the server's main file refuses, naming
/// the directory, and creates nothing there; a data directory the server creates is its
/// owner's alone.
#[test]
fn admin_commands_refuse_a_directory_that_is_not_the_servers() {
    use std::os::unix::fs::PermissionsExt;
    let parent = tempfile::tempdir().unwrap();
    let missing = parent.path().join("not-here");
    for args in [
        &["reset-password"][..],
        &[
            "import",
            "--webhook",
            "00000000-0000-0000-0000-000000000001",
        ],
    ] {
        let out = run_command(&missing, 0, args, b"");
        assert_eq!(out.code, 1, "{args:?}");
        assert!(
            out.stderr.contains("no data directory"),
            "{args:?}: {}",
            out.stderr
        );
        assert!(!missing.exists(), "{args:?} created the directory");
    }
    let data = parent.path().join("data");
    let mut server = ServerProcess::start(&data, None);
    server.stop();
    let mode = std::fs::metadata(&data).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o700, "{mode:o}");
}
