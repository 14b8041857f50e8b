//! The browser UI over HTTP: login, sessions, CSRF, rate limit, redirects, escaping,
//! security headers, form errors and the page flows. No cookie jar in reqwest here, so
//! cookies are carried by hand.

use std::time::Duration;

use reqwest::header::{COOKIE, HeaderMap, LOCATION, SET_COOKIE};
use reqwest::{Response, StatusCode};
use serde_json::{Value, json};

use crate::support::receiver::Receiver;
use crate::support::{TestApp, wait_until};

const XSS_SCRIPT: &str = "<script>alert(1)</script>";
const XSS_ATTR: &str = "\"><img src=x onerror=alert(1)>";
/// askama escapes `<`, `>`, `"`, `'` and `&` as numeric entities.
const XSS_SCRIPT_ESCAPED: &str = "&#60;script&#62;alert(1)&#60;/script&#62;";
const XSS_ATTR_ESCAPED: &str = "&#34;&#62;&#60;img src=x onerror=alert(1)&#62;";

/// A logged-in browser: its cookie header and the session's CSRF token.
pub(crate) struct Browser {
    pub(crate) cookie: String,
    pub(crate) csrf: String,
}

fn set_cookies(headers: &HeaderMap) -> Vec<String> {
    headers
        .get_all(SET_COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok().map(str::to_string))
        .collect()
}

/// The `name=value` part of the Set-Cookie for `name`, if any.
pub(crate) fn cookie_pair(headers: &HeaderMap, name: &str) -> Option<String> {
    set_cookies(headers)
        .into_iter()
        .find(|c| c.starts_with(&format!("{name}=")))
        .map(|c| c.split(';').next().unwrap().to_string())
}

pub(crate) fn csrf_in(html: &str) -> String {
    let marker = "name=\"csrf_token\" value=\"";
    let start = html.find(marker).expect("a csrf_token field") + marker.len();
    let len = html[start..].find('"').unwrap();
    html[start..start + len].to_string()
}

pub(crate) fn location(r: &Response) -> String {
    r.headers()
        .get(LOCATION)
        .map(|v| v.to_str().unwrap().to_string())
        .unwrap_or_default()
}

fn form(fields: &[(&str, &str)]) -> String {
    serde_urlencoded::to_string(fields).unwrap()
}

/// The login form: (pre-login CSRF cookie pair, token).
async fn login_form(app: &TestApp) -> (String, String) {
    let r = app.http.get(app.url("/login")).send().await.unwrap();
    assert_eq!(r.status(), 200);
    let cookie = cookie_pair(r.headers(), "webhooker_csrf").expect("csrf cookie");
    let html = r.text().await.unwrap();
    (cookie, csrf_in(&html))
}

/// Posts the login form with `password` and `next`.
pub(crate) async fn post_login(app: &TestApp, password: &str, next: &str) -> Response {
    let (cookie, token) = login_form(app).await;
    app.http
        .post(app.url("/login"))
        .header(COOKIE, cookie)
        .header("content-type", "application/x-www-form-urlencoded")
        .body(form(&[
            ("username", "admin"),
            ("password", password),
            ("csrf_token", &token),
            ("next", next),
        ]))
        .send()
        .await
        .unwrap()
}

pub(crate) async fn login(app: &TestApp) -> Browser {
    let r = post_login(app, &app.password, "/webhooks").await;
    assert_eq!(r.status(), StatusCode::SEE_OTHER);
    let cookie = cookie_pair(r.headers(), "webhooker_session").expect("session cookie");
    let b = Browser {
        cookie,
        csrf: String::new(),
    };
    let html = get(app, &b, "/webhooks").await.text().await.unwrap();
    Browser {
        csrf: csrf_in(&html),
        ..b
    }
}

pub(crate) async fn get(app: &TestApp, b: &Browser, path: &str) -> Response {
    app.http
        .get(app.url(path))
        .header(COOKIE, &b.cookie)
        .send()
        .await
        .unwrap()
}

pub(crate) async fn get_ok(app: &TestApp, b: &Browser, path: &str) -> String {
    let r = get(app, b, path).await;
    assert_eq!(r.status(), 200, "GET {path}");
    r.text().await.unwrap()
}

/// Posts a form with the session cookie and CSRF token.
pub(crate) async fn post(
    app: &TestApp,
    b: &Browser,
    path: &str,
    fields: &[(&str, &str)],
) -> Response {
    let mut all = vec![("csrf_token", b.csrf.as_str())];
    all.extend_from_slice(fields);
    post_raw(app, &b.cookie, path, &form(&all)).await
}

async fn post_raw(app: &TestApp, cookie: &str, path: &str, body: &str) -> Response {
    app.http
        .post(app.url(path))
        .header(COOKIE, cookie)
        .header("content-type", "application/x-www-form-urlencoded")
        .body(body.to_string())
        .send()
        .await
        .unwrap()
}

/// What a form POST left: where it redirected, the page shown there, and the flash
/// cookie as set by the POST and as cleared by that page (whole `Set-Cookie` values).
struct Flashed {
    to: String,
    html: String,
    set: String,
    cleared: String,
}

/// Posts, expects a redirect with a flash, and follows it: the page shows the flash and
/// clears it.
async fn post_flashed(app: &TestApp, b: &Browser, path: &str, fields: &[(&str, &str)]) -> Flashed {
    let r = post(app, b, path, fields).await;
    assert_eq!(r.status(), StatusCode::SEE_OTHER, "POST {path}");
    let to = location(&r);
    let set = set_cookies(r.headers())
        .into_iter()
        .find(|c| c.starts_with("webhooker_flash="))
        .expect("a flash");
    assert!(
        set.contains("Max-Age=60") && set.contains("HttpOnly"),
        "{set}"
    );
    let flash = set.split(';').next().unwrap().to_string();
    let shown = app
        .http
        .get(app.url(&to))
        .header(COOKIE, format!("{}; {flash}", b.cookie))
        .send()
        .await
        .unwrap();
    assert_eq!(shown.status(), 200, "GET {to}");
    let cleared = set_cookies(shown.headers())
        .into_iter()
        .find(|c| c.starts_with("webhooker_flash=;") && c.contains("Max-Age=0"))
        .expect("a shown flash is cleared");
    let html = shown.text().await.unwrap();
    Flashed {
        to,
        html,
        set,
        cleared,
    }
}

/// Posts and expects a redirect; returns (location, flash message shown there).
async fn post_redirect(
    app: &TestApp,
    b: &Browser,
    path: &str,
    fields: &[(&str, &str)],
) -> (String, String) {
    let flashed = post_flashed(app, b, path, fields).await;
    (flashed.to, flashed.html)
}

#[tokio::test]
async fn pages_redirect_to_login_when_logged_out() {
    let app = TestApp::start().await;
    let id = uuid::Uuid::new_v4();
    for path in [
        "/webhooks".to_string(),
        "/webhooks/new".to_string(),
        "/account".to_string(),
        format!("/webhooks/{id}"),
        format!("/webhooks/{id}/events?page=2"),
    ] {
        let r = app.http.get(app.url(&path)).send().await.unwrap();
        assert!(
            matches!(r.status().as_u16(), 302 | 303),
            "{path}: {}",
            r.status()
        );
        let to = location(&r);
        let next: String = url::form_urlencoded::byte_serialize(path.as_bytes()).collect();
        assert_eq!(to, format!("/login?next={next}"), "{path}");
    }
    // A stale or forged session cookie is no session.
    let r = app
        .http
        .get(app.url("/webhooks"))
        .header(COOKIE, "webhooker_session=forged")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::SEE_OTHER);
    // "/" goes to the list.
    let r = app.http.get(app.url("/")).send().await.unwrap();
    assert_eq!(location(&r), "/webhooks");
    app.stop().await;
}

#[tokio::test]
async fn login_success_failure_and_next() {
    let app = TestApp::start().await;
    // Failure: the form again, with a message, and no session.
    let r = post_login(&app, "wrong password", "/account").await;
    assert_eq!(r.status(), StatusCode::UNAUTHORIZED);
    assert!(cookie_pair(r.headers(), "webhooker_session").is_none());
    let html = r.text().await.unwrap();
    assert!(html.contains("Wrong username or password"));
    assert!(html.contains("value=\"/account\""), "next is kept");

    // Success: HttpOnly, SameSite=Lax session cookie; back to a local next.
    let r = post_login(&app, &app.password, "/account").await;
    assert_eq!(r.status(), StatusCode::SEE_OTHER);
    assert_eq!(location(&r), "/account");
    let raw = set_cookies(r.headers())
        .into_iter()
        .find(|c| c.starts_with("webhooker_session="))
        .unwrap();
    assert!(raw.contains("HttpOnly"), "{raw}");
    assert!(raw.contains("SameSite=Lax"), "{raw}");
    assert!(raw.contains("Path=/"), "{raw}");
    // It outlives the browser session, as long as the server-side session (7 days).
    assert!(raw.contains("Max-Age=604800"), "{raw}");
    assert!(!raw.contains("Secure"), "not Secure in dev: {raw}");

    // Off-site next values are not followed.
    for evil in ["//evil.com", "https://evil.com", "/\\evil.com"] {
        let r = post_login(&app, &app.password, evil).await;
        assert_eq!(r.status(), StatusCode::SEE_OTHER);
        assert_eq!(location(&r), "/webhooks", "{evil}");
    }
    // Nor rendered into the form.
    let r = app
        .http
        .get(app.url("/login?next=%2F%2Fevil.com"))
        .send()
        .await
        .unwrap();
    let html = r.text().await.unwrap();
    assert!(!html.contains("evil.com"));
    app.stop().await;
}

#[tokio::test]
async fn prod_cookies_are_secure_and_plain_http_logins_are_explained() {
    let app = TestApp::start_with(|c| c.environment = webhooker::config::Environment::Prod).await;
    let r = app.http.get(app.url("/login")).send().await.unwrap();
    let nonce = set_cookies(r.headers())
        .into_iter()
        .find(|c| c.starts_with("webhooker_csrf="))
        .unwrap();
    assert!(nonce.contains("Secure"), "{nonce}");
    let token = csrf_in(&r.text().await.unwrap());
    // A browser on plain HTTP drops the Secure cookie: the answer says why.
    let r = app
        .http
        .post(app.url("/login"))
        .header("content-type", "application/x-www-form-urlencoded")
        .body(form(&[
            ("username", "admin"),
            ("password", &app.password),
            ("csrf_token", &token),
        ]))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::FORBIDDEN);
    let html = r.text().await.unwrap();
    assert!(html.contains("WEBHOOKER_ENVIRONMENT=dev"), "{html}");
    // Over HTTPS the browser sends it back, and the session cookie is Secure too.
    let r = post_login(&app, &app.password, "/webhooks").await;
    assert_eq!(r.status(), StatusCode::SEE_OTHER);
    let session = set_cookies(r.headers())
        .into_iter()
        .find(|c| c.starts_with("webhooker_session="))
        .unwrap();
    assert!(session.contains("Secure"), "{session}");
    // So are flash messages and their clearing.
    let b = login(&app).await;
    let flashed = post_flashed(&app, &b, "/webhooks/new", &[("name", "Flash")]).await;
    assert!(flashed.set.contains("Secure"), "{}", flashed.set);
    assert!(flashed.cleared.contains("Secure"), "{}", flashed.cleared);
    assert!(flashed.html.contains("Created webhook"));
    app.stop().await;
}

#[tokio::test]
async fn login_is_rate_limited() {
    let app = TestApp::start().await;
    for i in 0..5 {
        let r = post_login(&app, "wrong", "/").await;
        assert_eq!(r.status(), StatusCode::UNAUTHORIZED, "attempt {i}");
    }
    let r = post_login(&app, &app.password, "/").await;
    assert_eq!(r.status(), StatusCode::TOO_MANY_REQUESTS);
    assert!(cookie_pair(r.headers(), "webhooker_session").is_none());
    assert!(
        r.text()
            .await
            .unwrap()
            .contains("Too many sign-in attempts")
    );
    app.stop().await;
}

/// The current password on the account page can be guessed as at login, so its check
/// shares the login limit (5 a minute per client; the successful sign-in does not count).
/// A new password refused before the check costs nothing.
#[tokio::test]
async fn password_change_is_rate_limited() {
    let app = TestApp::start().await;
    let b = login(&app).await;
    let guess = |i: usize| {
        [
            ("current_password", format!("guess-{i}")),
            ("new_password", "a-new-password".to_owned()),
            ("confirm", "a-new-password".to_owned()),
        ]
    };
    for _ in 0..6 {
        let r = post(
            &app,
            &b,
            "/account/password",
            &[
                ("current_password", "whatever"),
                ("new_password", "short"),
                ("confirm", "short"),
            ],
        )
        .await;
        assert_eq!(r.status(), StatusCode::UNPROCESSABLE_ENTITY);
    }
    for i in 0..5 {
        let fields = guess(i);
        let fields: Vec<(&str, &str)> = fields.iter().map(|(k, v)| (*k, v.as_str())).collect();
        let r = post(&app, &b, "/account/password", &fields).await;
        assert_eq!(r.status(), StatusCode::UNPROCESSABLE_ENTITY, "guess {i}");
    }
    let r = post(
        &app,
        &b,
        "/account/password",
        &[
            ("current_password", app.password.as_str()),
            ("new_password", "a-new-password"),
            ("confirm", "a-new-password"),
        ],
    )
    .await;
    assert_eq!(r.status(), StatusCode::TOO_MANY_REQUESTS);
    assert!(r.text().await.unwrap().contains("wait a minute"));
    app.stop().await;
}

#[tokio::test]
async fn csrf_is_required() {
    let app = TestApp::start().await;
    let b = login(&app).await;
    // Login itself: no token, or a token without its cookie.
    let (_, token) = login_form(&app).await;
    for body in [
        form(&[("username", "admin"), ("password", &app.password)]),
        form(&[
            ("username", "admin"),
            ("password", &app.password),
            ("csrf_token", &token),
        ]),
    ] {
        let r = app
            .http
            .post(app.url("/login"))
            .header("content-type", "application/x-www-form-urlencoded")
            .body(body)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), StatusCode::FORBIDDEN);
    }
    // A state-changing form and logout: missing and wrong tokens.
    for path in ["/webhooks/new", "/logout"] {
        for body in [
            form(&[("name", "x")]),
            form(&[("name", "x"), ("csrf_token", "wrong")]),
            form(&[("name", "x"), ("csrf_token", "")]),
        ] {
            let r = post_raw(&app, &b.cookie, path, &body).await;
            assert_eq!(r.status(), StatusCode::FORBIDDEN, "{path} {body}");
            let html = r.text().await.unwrap();
            assert!(html.contains("403"));
        }
    }
    // Nothing was created and the session still works.
    let listed = app.get_json("/webhooks").await;
    assert_eq!(listed.as_array().unwrap().len(), 0);
    assert_eq!(get(&app, &b, "/webhooks").await.status(), 200);
    // Another session's token does not work either.
    let other = login(&app).await;
    let r = post_raw(
        &app,
        &b.cookie,
        "/webhooks/new",
        &form(&[("name", "x"), ("csrf_token", &other.csrf)]),
    )
    .await;
    assert_eq!(r.status(), StatusCode::FORBIDDEN);
    app.stop().await;
}

#[tokio::test]
async fn logout_ends_the_session() {
    let app = TestApp::start().await;
    let b = login(&app).await;
    assert_eq!(get(&app, &b, "/account").await.status(), 200);
    let r = post(&app, &b, "/logout", &[]).await;
    assert_eq!(r.status(), StatusCode::SEE_OTHER);
    assert!(location(&r).starts_with("/login"));
    let cleared = set_cookies(r.headers())
        .iter()
        .any(|c| c.starts_with("webhooker_session=") && c.contains("Max-Age=0"));
    assert!(cleared, "cookie removed");
    // The old cookie is dead on the server, not just in the browser.
    let r = get(&app, &b, "/account").await;
    assert_eq!(r.status(), StatusCode::SEE_OTHER);
    assert!(location(&r).starts_with("/login"));
    app.stop().await;
}

#[tokio::test]
async fn hostile_payloads_render_escaped() {
    let app = TestApp::start().await;
    let b = login(&app).await;
    let (id, url) = app.webhook(&format!("hook {XSS_SCRIPT}")).await;
    let body = serde_json::to_vec(&json!({ "html": XSS_SCRIPT, "attr": XSS_ATTR })).unwrap();
    let json_event = send(&app, &url, "application/json", body).await;
    let text_event = send(
        &app,
        &url,
        "text/plain",
        format!("{XSS_SCRIPT} and {XSS_ATTR}").into_bytes(),
    )
    .await;
    // Binary body with the payload inside: shown as hex/base64, never raw.
    let mut bin = vec![0xff, 0xfe, 0x00];
    bin.extend_from_slice(XSS_SCRIPT.as_bytes());
    let bin_event = send(&app, &url, "application/octet-stream", bin).await;

    let mut pages = vec![
        "/webhooks".to_string(),
        format!("/webhooks/{id}"),
        format!("/webhooks/{id}/edit"),
        format!("/webhooks/{id}/events"),
    ];
    for ev in [&json_event, &text_event, &bin_event] {
        pages.push(format!("/webhooks/{id}/events/{ev}"));
    }
    for path in &pages {
        let html = get_ok(&app, &b, path).await;
        assert!(!html.contains(XSS_SCRIPT), "{path}: raw script tag");
        assert!(!html.contains("<img src=x"), "{path}: raw img tag");
        assert!(html.contains(XSS_SCRIPT_ESCAPED), "{path}: escaped form");
    }
    for path in [
        format!("/webhooks/{id}/events"),
        format!("/webhooks/{id}/events/{text_event}"),
    ] {
        let html = get_ok(&app, &b, &path).await;
        assert!(html.contains(XSS_ATTR_ESCAPED), "{path}: escaped attribute");
        // The header value too.
        assert!(html.contains("x-evil"), "{path}: header shown");
    }
    app.stop().await;
}

/// A `database` target's delivery is finished by the ingest commit: delivered, one
/// attempt counted, no attempt record, and the page says so instead of "Not attempted yet".
#[tokio::test]
async fn database_delivery_shows_stored_with_the_event() {
    let app = TestApp::start().await;
    let b = login(&app).await;
    let (id, url) = app.webhook("stored").await;
    let db = app
        .target(&id, json!({"name": "db", "kind": "database"}))
        .await;
    let ev = send(&app, &url, "text/plain", b"kept".to_vec()).await;
    // Redelivered: the engine finishes it the same way.
    assert_eq!(app.redeliver(&id, &ev, Some(&db)).await, 202);
    let detail = app.wait_finished(&id, &ev, Duration::from_secs(10)).await;
    let deliveries = detail["deliveries"].as_array().unwrap();
    assert_eq!(deliveries.len(), 2);
    for d in deliveries {
        assert_eq!(d["status"], "delivered");
        assert_eq!(d["attempts"], 1);
        assert_eq!(d["results"], json!([]), "{d}");
    }
    let html = get_ok(&app, &b, &format!("/webhooks/{id}/events/{ev}")).await;
    assert_eq!(html.matches("Stored with the event.").count(), 2, "{html}");
    assert!(!html.contains("Not attempted yet."));
    app.stop().await;
}

async fn send(app: &TestApp, url: &str, content_type: &str, body: Vec<u8>) -> String {
    let r = app
        .http
        .post(url)
        .header("content-type", content_type)
        .header("x-evil", format!("{XSS_SCRIPT}{XSS_ATTR}"))
        .body(body)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    r.json::<serde_json::Value>().await.unwrap()["event_id"]
        .as_str()
        .unwrap()
        .to_string()
}

#[tokio::test]
async fn security_headers_on_every_page() {
    let app = TestApp::start().await;
    let b = login(&app).await;
    let (id, url) = app.webhook("headers").await;
    let ev = send(&app, &url, "text/plain", b"hi".to_vec()).await;
    let paths = [
        "/login".to_string(),
        "/webhooks".to_string(),
        "/webhooks/new".to_string(),
        format!("/webhooks/{id}"),
        format!("/webhooks/{id}/edit"),
        format!("/webhooks/{id}/events"),
        format!("/webhooks/{id}/events/{ev}"),
        "/account".to_string(),
        "/no/such/page".to_string(),
        format!("/webhooks/{}", uuid::Uuid::new_v4()),
        "/webhooks/not-a-uuid".to_string(),
    ];
    let anonymous = Browser {
        cookie: String::new(),
        csrf: String::new(),
    };
    for path in &paths {
        let who = if path == "/login" { &anonymous } else { &b };
        let r = get(&app, who, path).await;
        assert!(r.status().as_u16() < 500, "{path}: {}", r.status());
        let h = r.headers();
        let csp = h["content-security-policy"].to_str().unwrap();
        assert!(csp.contains("script-src 'self'"), "{path}: {csp}");
        assert!(!csp.contains("unsafe-inline"), "{path}: {csp}");
        assert!(!csp.contains("unsafe-eval"), "{path}: {csp}");
        assert_eq!(h["x-frame-options"], "DENY", "{path}");
        assert_eq!(h["x-content-type-options"], "nosniff", "{path}");
        assert!(h.contains_key("referrer-policy"), "{path}");
        assert_eq!(h["cache-control"], "no-store", "{path}");
        assert!(
            h["content-type"].to_str().unwrap().starts_with("text/html"),
            "{path}"
        );
        let html = r.text().await.unwrap();
        assert!(!html.contains("<script>"), "{path}: inline script");
        assert!(!html.contains(" style=\""), "{path}: inline style");
    }
    // Unknown and malformed ids are 404 pages, not 400 or 500.
    for path in &paths[8..] {
        assert_eq!(get(&app, &b, path).await.status(), 404, "{path}");
    }
    app.stop().await;
}

/// A malformed query string and a login form over the 64 KiB limit get the HTML error
/// page that every other page error gets, not axum's plain-text rejection.
#[tokio::test]
async fn malformed_queries_and_oversized_logins_get_the_error_page() {
    let app = TestApp::start().await;
    let b = login(&app).await;
    let (id, _) = app.webhook("queries").await;
    let anonymous = Browser {
        cookie: String::new(),
        csrf: String::new(),
    };
    let (csrf_cookie, _) = login_form(&app).await;
    let oversized_login = app
        .http
        .post(app.url("/login"))
        .header(COOKIE, csrf_cookie)
        .header("content-type", "application/x-www-form-urlencoded")
        // One byte over: a larger excess left unread could reset the connection first.
        .body(vec![b'a'; 64 * 1024 + 1])
        .send()
        .await
        .unwrap();
    for (what, r, status) in [
        (
            "duplicate next",
            get(&app, &anonymous, "/login?next=/a&next=/b").await,
            StatusCode::BAD_REQUEST,
        ),
        (
            "duplicate page",
            get(&app, &b, &format!("/webhooks/{id}/events?page=1&page=2")).await,
            StatusCode::BAD_REQUEST,
        ),
        (
            "oversized login",
            oversized_login,
            StatusCode::PAYLOAD_TOO_LARGE,
        ),
    ] {
        assert_eq!(r.status(), status, "{what}");
        assert!(
            r.headers()["content-type"]
                .to_str()
                .unwrap()
                .starts_with("text/html"),
            "{what}"
        );
        let html = r.text().await.unwrap();
        let reason = status.canonical_reason().unwrap();
        assert!(html.contains(reason), "{what}: {html}");
    }
    app.stop().await;
}

#[tokio::test]
async fn bad_forms_rerender_with_a_message() {
    let app = TestApp::start().await;
    let b = login(&app).await;
    let r = post(
        &app,
        &b,
        "/webhooks/new",
        &[("name", "  "), ("description", "kept text")],
    )
    .await;
    assert_eq!(r.status(), StatusCode::UNPROCESSABLE_ENTITY);
    let html = r.text().await.unwrap();
    assert!(html.contains("Name must not be empty."), "{html}");
    assert!(html.contains("kept text"), "values are kept");
    let r = post(
        &app,
        &b,
        "/webhooks/new",
        &[("name", "ok"), ("retention_days", "soon")],
    )
    .await;
    assert_eq!(r.status(), StatusCode::UNPROCESSABLE_ENTITY);
    assert!(
        r.text()
            .await
            .unwrap()
            .contains("Retention must be a whole number.")
    );

    let (id, _) = app.webhook("forms").await;
    for (fields, message) in [
        (
            vec![("name", "t"), ("kind", "http"), ("url", "")],
            "URL is required for http targets.",
        ),
        (
            vec![("name", "t"), ("kind", "http"), ("url", "ftp://x")],
            "URL must be an absolute http:// or https:// URL.",
        ),
        (
            vec![
                ("name", "t"),
                ("kind", "http"),
                ("url", "http://127.0.0.1:9/"),
                ("max_retries", "lots"),
            ],
            "Max retries must be a number of retries or “unlimited”.",
        ),
        (
            vec![
                ("name", "t"),
                ("kind", "http"),
                ("url", "http://127.0.0.1:9/"),
                ("timeout_secs", "0"),
            ],
            "Timeout must be between 1 and 300.",
        ),
        (
            vec![("name", "t"), ("kind", "http"), ("url", "http://10.0.0.1/")],
            "The URL was refused",
        ),
        (vec![("name", "t"), ("kind", "ftp")], "Kind must be one of"),
    ] {
        let r = post(&app, &b, &format!("/webhooks/{id}/targets"), &fields).await;
        assert_eq!(r.status(), StatusCode::UNPROCESSABLE_ENTITY, "{fields:?}");
        let html = r.text().await.unwrap();
        assert!(html.contains(message), "{fields:?}: {message}");
    }
    // Password change: mismatch and wrong current password.
    for (fields, message) in [
        (
            [
                ("current_password", app.password.as_str()),
                ("new_password", "abcdefghij"),
                ("confirm", "abcdefghiX"),
            ],
            "differ",
        ),
        (
            [
                ("current_password", "nope"),
                ("new_password", "abcdefghij"),
                ("confirm", "abcdefghij"),
            ],
            "The current password is not correct.",
        ),
        (
            [
                ("current_password", app.password.as_str()),
                ("new_password", "short"),
                ("confirm", "short"),
            ],
            "at least 8 characters",
        ),
    ] {
        let r = post(&app, &b, "/account/password", &fields).await;
        assert_eq!(r.status(), StatusCode::UNPROCESSABLE_ENTITY);
        assert!(r.text().await.unwrap().contains(message), "{message}");
    }
    let r = post(&app, &b, "/account/keys", &[("name", " ")]).await;
    assert_eq!(r.status(), StatusCode::UNPROCESSABLE_ENTITY);
    app.stop().await;
}

/// Sender verification and target signing through the forms: the kinds' fields, secrets
/// kept when left empty, signing on and off, rotation.
#[tokio::test]
async fn verification_and_signing_through_the_pages() {
    let app = TestApp::start().await;
    let b = login(&app).await;
    let html = get_ok(&app, &b, "/webhooks/new").await;
    for kind in [
        "github",
        "gitea",
        "gitlab",
        "stripe",
        "slack",
        "standard_webhooks",
        "header",
        "basic",
    ] {
        assert!(
            html.contains(&format!("value=\"{kind}\"")),
            "{kind} offered"
        );
    }
    let (to, html) = post_redirect(
        &app,
        &b,
        "/webhooks/new",
        &[
            ("name", "Pushes"),
            ("verification_kind", "github"),
            ("verification_secret", "gh-form-secret"),
        ],
    )
    .await;
    let id = to.strip_prefix("/webhooks/").unwrap().to_string();
    assert!(html.contains("Sender verification: GitHub"), "{html}");
    assert!(html.contains("type=\"password\""), "the secret is masked");
    let api = app.get_json(&format!("/webhooks/{id}")).await;
    assert_eq!(
        api["verification"],
        json!({"kind": "github", "secret": "gh-form-secret"})
    );
    // The edit form never carries the secret; left empty, it keeps it.
    let html = get_ok(&app, &b, &format!("/webhooks/{id}/edit")).await;
    assert!(!html.contains("gh-form-secret"));
    assert!(html.contains("Leave empty to keep the current one."));
    post_redirect(
        &app,
        &b,
        &format!("/webhooks/{id}/edit"),
        &[
            ("name", "Pushes"),
            ("retention_days", "30"),
            ("verification_kind", "github"),
        ],
    )
    .await;
    let api = app.get_json(&format!("/webhooks/{id}")).await;
    assert_eq!(api["verification"]["secret"], "gh-form-secret");
    // Another kind without its fields is refused with the form shown again.
    let r = post(
        &app,
        &b,
        &format!("/webhooks/{id}/edit"),
        &[("name", "Pushes"), ("verification_kind", "basic")],
    )
    .await;
    assert_eq!(r.status(), 422);
    assert!(
        r.text()
            .await
            .unwrap()
            .contains("is required for basic verification")
    );

    // A target added with signing off, then turned on, then rotated.
    let sink = Receiver::start().await;
    let (_, html) = post_redirect(
        &app,
        &b,
        &format!("/webhooks/{id}/targets"),
        &[
            ("name", "ci"),
            ("kind", "http"),
            ("url", &sink.url("/")),
            ("signing", "off"),
        ],
    )
    .await;
    assert!(html.contains("data-signing=\"off\""), "{html}");
    let target = |api: &serde_json::Value| api["targets"][0].clone();
    let t = target(&app.get_json(&format!("/webhooks/{id}")).await);
    assert_eq!(t["signing"], false);
    let tid = t["id"].as_str().unwrap().to_string();
    let first = t["signing_secret"].as_str().unwrap().to_string();
    let (_, html) = post_redirect(
        &app,
        &b,
        &format!("/webhooks/{id}/targets/{tid}/signing"),
        &[("enabled", "true")],
    )
    .await;
    assert!(html.contains("Signing on"), "{html}");
    assert!(html.contains(&first), "the secret is on the page, masked");
    let (_, html) = post_redirect(
        &app,
        &b,
        &format!("/webhooks/{id}/targets/{tid}/rotate-secret"),
        &[],
    )
    .await;
    assert!(html.contains("New signing secret"), "{html}");
    assert!(html.contains("the replaced secret signs too until"));
    let t = target(&app.get_json(&format!("/webhooks/{id}")).await);
    assert_eq!(t["signing"], true);
    assert_ne!(t["signing_secret"], first.as_str());
    app.stop().await;
}

#[tokio::test]
async fn webhook_pages_flow() {
    let app = TestApp::start().await;
    let b = login(&app).await;
    let sink = Receiver::start().await;

    // Empty states.
    let html = get_ok(&app, &b, "/webhooks").await;
    assert!(html.contains("No webhooks yet"));
    assert!(html.contains("href=\"/webhooks/new\""));

    // Create → detail with a default entrypoint and a flash.
    let (to, html) = post_redirect(
        &app,
        &b,
        "/webhooks/new",
        &[("name", "Orders"), ("description", "from the shop")],
    )
    .await;
    let id = to.strip_prefix("/webhooks/").unwrap().to_string();
    assert!(html.contains("Created webhook “Orders”"));
    assert!(html.contains("No targets yet"));
    assert!(html.contains("No events yet"));
    let api = app.get_json(&format!("/webhooks/{id}")).await;
    let ep_url = api["entrypoints"][0]["url"].as_str().unwrap().to_string();
    let ep_id = api["entrypoints"][0]["id"].as_str().unwrap().to_string();
    assert!(html.contains(&ep_url), "entrypoint URL shown");
    assert_eq!(api["retention_days"], 30);

    // Edit.
    post_redirect(
        &app,
        &b,
        &format!("/webhooks/{id}/edit"),
        &[
            ("name", "Orders v2"),
            ("description", ""),
            ("retention_days", "0"),
        ],
    )
    .await;
    let api = app.get_json(&format!("/webhooks/{id}")).await;
    assert_eq!(api["name"], "Orders v2");
    assert_eq!(api["retention_days"], 0);

    // Entrypoints: add, disable (410), enable, delete.
    post_redirect(
        &app,
        &b,
        &format!("/webhooks/{id}/entrypoints"),
        &[("description", "second")],
    )
    .await;
    let api = app.get_json(&format!("/webhooks/{id}")).await;
    assert_eq!(api["entrypoints"].as_array().unwrap().len(), 2);
    let second = api["entrypoints"][1]["id"].as_str().unwrap().to_string();
    post_redirect(
        &app,
        &b,
        &format!("/webhooks/{id}/entrypoints/{ep_id}/toggle"),
        &[("active", "false")],
    )
    .await;
    let r = app.http.post(&ep_url).body("x").send().await.unwrap();
    assert_eq!(r.status(), 410);
    post_redirect(
        &app,
        &b,
        &format!("/webhooks/{id}/entrypoints/{ep_id}/toggle"),
        &[("active", "true")],
    )
    .await;
    post_redirect(
        &app,
        &b,
        &format!("/webhooks/{id}/entrypoints/{second}/delete"),
        &[],
    )
    .await;
    let api = app.get_json(&format!("/webhooks/{id}")).await;
    assert_eq!(api["entrypoints"].as_array().unwrap().len(), 1);
    assert_eq!(api["entrypoints"][0]["active"], true);

    // Targets: an http target to the sink (defaults: unlimited retries), a log target.
    let (_, html) = post_redirect(
        &app,
        &b,
        &format!("/webhooks/{id}/targets"),
        &[
            ("name", "sink"),
            ("kind", "http"),
            ("url", &sink.url("/in")),
            ("timeout_secs", "5"),
            ("max_retries", ""),
        ],
    )
    .await;
    assert!(html.contains("Added target “sink”"));
    post_redirect(
        &app,
        &b,
        &format!("/webhooks/{id}/targets"),
        &[("name", "logger"), ("kind", "log")],
    )
    .await;
    let api = app.get_json(&format!("/webhooks/{id}")).await;
    let targets = api["targets"].as_array().unwrap();
    assert_eq!(targets.len(), 2);
    assert_eq!(targets[0]["max_retries"], "unlimited");
    assert_eq!(targets[0]["timeout_secs"], 5);
    let sink_id = targets[0]["id"].as_str().unwrap().to_string();
    let log_id = targets[1]["id"].as_str().unwrap().to_string();

    // An event, delivered; listed on the detail page and the log; detail with attempts.
    let ev = send(
        &app,
        &ep_url,
        "application/json",
        br#"{"b":1,"a":2}"#.to_vec(),
    )
    .await;
    app.wait_finished(&id, &ev, Duration::from_secs(10)).await;
    let html = get_ok(&app, &b, &format!("/webhooks/{id}")).await;
    assert!(html.contains(&format!("/webhooks/{id}/events/{ev}")));
    let html = get_ok(&app, &b, &format!("/webhooks/{id}/events")).await;
    assert!(html.contains("badge-success\">delivered"));
    assert!(
        html.contains("{\n  &#34;b&#34;: 1,\n  &#34;a&#34;: 2\n}"),
        "pretty, in order"
    );
    let html = get_ok(&app, &b, &format!("/webhooks/{id}/events/{ev}")).await;
    assert!(html.contains("HTTP 200"));
    assert!(html.contains("Redeliver to sink"));

    // Redeliver to one target, then to all.
    let (_, html) = post_redirect(
        &app,
        &b,
        &format!("/webhooks/{id}/events/{ev}/redeliver"),
        &[("target_id", &sink_id)],
    )
    .await;
    assert!(html.contains("Redelivery queued"));
    assert!(wait_until(Duration::from_secs(10), || async { sink.count() == 2 }).await);
    post_redirect(
        &app,
        &b,
        &format!("/webhooks/{id}/events/{ev}/redeliver"),
        &[("target_id", "")],
    )
    .await;
    assert!(wait_until(Duration::from_secs(10), || async { sink.count() == 3 }).await);
    let detail = app.event(&id, &ev).await;
    assert_eq!(detail["deliveries"].as_array().unwrap().len(), 5);

    // Disable a target: no redelivery to it; delete the other.
    post_redirect(
        &app,
        &b,
        &format!("/webhooks/{id}/targets/{sink_id}/toggle"),
        &[("active", "false")],
    )
    .await;
    let (_, html) = post_redirect(
        &app,
        &b,
        &format!("/webhooks/{id}/events/{ev}/redeliver"),
        &[("target_id", &sink_id)],
    )
    .await;
    assert!(html.contains("alert-error"), "inactive target refused");
    post_redirect(
        &app,
        &b,
        &format!("/webhooks/{id}/targets/{log_id}/delete"),
        &[],
    )
    .await;
    let api = app.get_json(&format!("/webhooks/{id}")).await;
    assert_eq!(api["targets"].as_array().unwrap().len(), 1);
    assert_eq!(api["targets"][0]["active"], false);

    // Event log pagination: 26 events → 2 pages.
    for i in 0..25 {
        send(&app, &ep_url, "text/plain", format!("n{i}").into_bytes()).await;
    }
    let html = get_ok(&app, &b, &format!("/webhooks/{id}/events")).await;
    assert!(html.contains("Showing <span class=\"font-medium text-gray-900\">1–25</span>"));
    assert!(html.contains("?page=2"));
    let html = get_ok(&app, &b, &format!("/webhooks/{id}/events?page=2")).await;
    assert!(
        html.contains(&format!("/webhooks/{id}/events/{ev}")),
        "oldest last"
    );
    let html = get_ok(&app, &b, &format!("/webhooks/{id}/events?page=99")).await;
    assert!(html.contains("No events on this page"));

    // List counts, then delete.
    let html = get_ok(&app, &b, "/webhooks").await;
    assert!(html.contains("Orders v2"));
    assert!(html.contains("<span class=\"count-n\">26</span> events"));
    let (to, html) = post_redirect(&app, &b, &format!("/webhooks/{id}/delete"), &[]).await;
    assert_eq!(to, "/webhooks");
    assert!(html.contains("No webhooks yet"));
    assert_eq!(
        get(&app, &b, &format!("/webhooks/{id}")).await.status(),
        404
    );
    app.stop().await;
}

#[tokio::test]
async fn account_keys_and_password() {
    let app = TestApp::start().await;
    let b = login(&app).await;
    let html = get_ok(&app, &b, "/account").await;
    assert!(html.contains("No API keys"));

    // POST → redirect → GET: the secret is on the next page only, so a reload of that
    // page neither creates another key nor shows the secret again.
    let r = post(&app, &b, "/account/keys", &[("name", "deploy")]).await;
    assert_eq!(r.status(), StatusCode::SEE_OTHER);
    assert_eq!(location(&r), "/account");
    let other = login(&app).await;
    assert!(
        !get_ok(&app, &other, "/account")
            .await
            .contains("value=\"whk_"),
        "another session does not get the secret"
    );
    let html = get_ok(&app, &b, "/account").await;
    let start = html.find("value=\"whk_").expect("token shown") + 7;
    let token = html[start..start + html[start..].find('"').unwrap()].to_string();
    let r = app
        .http
        .get(app.url("/api/v1/webhooks"))
        .bearer_auth(&token)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let html = get_ok(&app, &b, "/account").await;
    assert!(html.contains("deploy"));
    assert!(!html.contains(&token), "shown once");
    assert_eq!(app.get_json("/keys").await.as_array().unwrap().len(), 1);
    let key_id = app.get_json("/keys").await[0]["id"]
        .as_str()
        .unwrap()
        .to_string();
    post_redirect(&app, &b, &format!("/account/keys/{key_id}/revoke"), &[]).await;
    let r = app
        .http
        .get(app.url("/api/v1/webhooks"))
        .bearer_auth(&token)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 401);

    // Password change: other sessions end, this browser gets a fresh cookie.
    let other = login(&app).await;
    let r = post(
        &app,
        &b,
        "/account/password",
        &[
            ("current_password", &app.password),
            ("new_password", "a much better password"),
            ("confirm", "a much better password"),
        ],
    )
    .await;
    assert_eq!(r.status(), StatusCode::SEE_OTHER);
    let fresh = cookie_pair(r.headers(), "webhooker_session").expect("new session cookie");
    assert_ne!(fresh, b.cookie);
    assert_eq!(get(&app, &other, "/webhooks").await.status(), 303);
    assert_eq!(get(&app, &b, "/webhooks").await.status(), 303);
    let renewed = Browser {
        cookie: fresh,
        csrf: String::new(),
    };
    assert_eq!(get(&app, &renewed, "/webhooks").await.status(), 200);
    app.stop().await;
}

/// Regression: API keys survived a password change, so a leaked key outlived the change
/// meant to lock its holder out. The form offers to revoke them all; keys kept are said
/// to keep working.
#[tokio::test]
async fn a_password_change_can_revoke_every_api_key() {
    let app = TestApp::start().await;
    let b = login(&app).await;
    let token = |key: Value| key["token"].as_str().unwrap().to_string();
    let kept = token(app.post_json("/keys", json!({ "name": "kept" })).await);
    let html = get_ok(&app, &b, "/account").await;
    assert!(html.contains("name=\"revoke_keys\""), "the form offers it");
    let api_with = |token: String| {
        app.http
            .get(app.url("/api/v1/webhooks"))
            .bearer_auth(token)
            .send()
    };

    // Without the box ticked, keys keep working.
    let r = post(
        &app,
        &b,
        "/account/password",
        &[
            ("current_password", &app.password),
            ("new_password", "second password"),
            ("confirm", "second password"),
        ],
    )
    .await;
    assert_eq!(r.status(), StatusCode::SEE_OTHER);
    assert_eq!(api_with(kept.clone()).await.unwrap().status(), 200);

    // Ticked, every key of the user stops working with the change.
    let b = Browser {
        cookie: cookie_pair(r.headers(), "webhooker_session").unwrap(),
        csrf: String::new(),
    };
    let b = Browser {
        csrf: csrf_in(&get_ok(&app, &b, "/account").await),
        ..b
    };
    let r = post(
        &app,
        &b,
        "/account/password",
        &[
            ("current_password", "second password"),
            ("new_password", "third password"),
            ("confirm", "third password"),
            ("revoke_keys", "true"),
        ],
    )
    .await;
    assert_eq!(r.status(), StatusCode::SEE_OTHER);
    assert_eq!(api_with(kept).await.unwrap().status(), 401);
    let keys: Value = app
        .http
        .get(app.url("/api/v1/keys"))
        .basic_auth("admin", Some("third password"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(keys, json!([]));
    app.stop().await;
}

/// A script keeps calling the API with Basic auth while the password is changed through
/// the form. Once the change is confirmed, the old password must open nothing: a request
/// checked against the old hash while the change was committing may not be remembered.
#[tokio::test]
async fn old_password_stops_opening_the_api_once_a_change_is_confirmed() {
    use std::sync::Arc;
    use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};

    // Forwarded addresses keep the script's failures after the change off the form's and
    // the checks' login limit, so the checks below can expect 401, not 429.
    let app = TestApp::start_with(|c| c.trust_proxy = true).await;
    let b = login(&app).await;
    let old = app.password.clone();
    let api = app.url("/api/v1/webhooks");
    let api_as = |password: &str, client: &str| {
        app.http
            .get(&api)
            .basic_auth("admin", Some(password))
            .header("x-forwarded-for", client)
    };
    let stop = Arc::new(AtomicBool::new(false));
    let accepted = Arc::new(AtomicUsize::new(0));
    let scripts: Vec<_> = (0..4)
        .map(|_| {
            let request = api_as(&old, "203.0.113.1");
            let (stop, accepted) = (stop.clone(), accepted.clone());
            tokio::spawn(async move {
                while !stop.load(Ordering::Relaxed) {
                    let Some(request) = request.try_clone() else {
                        return;
                    };
                    if request
                        .send()
                        .await
                        .is_ok_and(|r| r.status() == StatusCode::OK)
                    {
                        accepted.fetch_add(1, Ordering::Relaxed);
                    }
                }
            })
        })
        .collect();
    let busy = wait_until(Duration::from_secs(10), || async {
        accepted.load(Ordering::Relaxed) >= 8
    })
    .await;
    assert!(
        busy,
        "the script's calls with the old password never got through"
    );

    let new = "a brand new password";
    let r = post(
        &app,
        &b,
        "/account/password",
        &[
            ("current_password", &old),
            ("new_password", new),
            ("confirm", new),
        ],
    )
    .await;
    assert_eq!(r.status(), StatusCode::SEE_OTHER, "password changed");
    stop.store(true, Ordering::Relaxed);
    for script in scripts {
        script.await.unwrap();
    }

    for i in 1..=5 {
        let r = api_as(&old, &format!("198.51.100.{i}"))
            .send()
            .await
            .unwrap();
        assert_eq!(
            r.status(),
            StatusCode::UNAUTHORIZED,
            "check {i}: the old password still opens the API"
        );
    }
    let r = api_as(new, "198.51.100.100").send().await.unwrap();
    assert_eq!(r.status(), StatusCode::OK, "the new password works");
    app.stop().await;
}

#[tokio::test]
async fn routing_through_the_pages() {
    let app = TestApp::start().await;
    let b = login(&app).await;
    let html = get_ok(&app, &b, "/webhooks/new").await;
    assert!(html.contains("name=\"dedupe_source\""));
    let (to, _) = post_redirect(
        &app,
        &b,
        "/webhooks/new",
        &[
            ("name", "Deduped"),
            ("dedupe_source", "header"),
            ("dedupe_key", "X-GitHub-Delivery"),
            ("dedupe_window_secs", "600"),
        ],
    )
    .await;
    let id = to.strip_prefix("/webhooks/").unwrap().to_string();
    let api = app.get_json(&format!("/webhooks/{id}")).await;
    assert_eq!(
        api["dedupe"],
        json!({"header": "x-github-delivery", "window_secs": 600})
    );
    let html = get_ok(&app, &b, &format!("/webhooks/{id}/edit")).await;
    assert!(
        html.contains("<option value=\"header\" selected>"),
        "{html}"
    );
    assert!(html.contains("value=\"x-github-delivery\""));
    // Turned off from the form.
    post_redirect(
        &app,
        &b,
        &format!("/webhooks/{id}/edit"),
        &[("name", "Deduped"), ("dedupe_source", "off")],
    )
    .await;
    assert_eq!(
        app.get_json(&format!("/webhooks/{id}")).await["dedupe"],
        Value::Null
    );

    // A target with two condition rows (a third left empty) and a transform.
    let html = get_ok(&app, &b, &format!("/webhooks/{id}")).await;
    assert!(html.contains("name=\"cond4_on\""), "five condition rows");
    let (_, html) = post_redirect(
        &app,
        &b,
        &format!("/webhooks/{id}/targets"),
        &[
            ("name", "ci"),
            ("kind", "http"),
            ("url", "http://127.0.0.1:9/hook"),
            ("filter_mode", "any"),
            ("cond0_on", "header"),
            ("cond0_key", "X-GitHub-Event"),
            ("cond0_op", "in"),
            ("cond0_value", "push, release"),
            ("cond1_on", "json"),
            ("cond1_key", "/pull_request/number"),
            ("cond1_op", "gt"),
            ("cond1_value", "3"),
            ("cond2_on", ""),
            ("cond2_key", "ignored"),
            (
                "transform_set_headers",
                "Authorization: Bearer page-token\r\nX-Team: core",
            ),
            ("transform_remove_headers", "X-Hub-Signature-256, Cookie"),
            ("transform_path", "/ci/{event_id}?{query}"),
        ],
    )
    .await;
    assert!(html.contains("Filter"), "{html}");
    assert!(html.contains("authorization, x-team"), "{html}");
    assert!(
        !html.contains("page-token"),
        "set header values stay off the page"
    );
    let t = app.get_json(&format!("/webhooks/{id}")).await["targets"][0].clone();
    assert_eq!(
        t["filter"],
        json!({"any": [
            {"header": "x-github-event", "in": ["push", "release"]},
            {"json": "/pull_request/number", "gt": 3.0}
        ]})
    );
    assert_eq!(
        t["transform"],
        json!({
            "set_headers": {"authorization": "Bearer page-token", "x-team": "core"},
            "remove_headers": ["x-hub-signature-256", "cookie"],
            "path": "/ci/{event_id}?{query}"
        })
    );
    // The target's edit form shows its filter in rows; saving it with other rows changes
    // the filter and leaves the transform (not on the form) as it was; emptying the rows
    // removes the filter.
    let tid = t["id"].as_str().unwrap().to_string();
    let html = get_ok(&app, &b, &format!("/webhooks/{id}")).await;
    assert!(
        html.contains(&format!("id=\"e-{tid}-cond0-key\""))
            && html.contains("value=\"push, release\""),
        "the edit form is prefilled: {html}"
    );
    post_redirect(
        &app,
        &b,
        &format!("/webhooks/{id}/targets/{tid}/edit"),
        &[
            ("name", "ci"),
            ("kind", "http"),
            ("url", "http://127.0.0.1:9/hook"),
            ("edits_routing", "1"),
            ("filter_mode", "all"),
            ("cond0_on", "header"),
            ("cond0_key", "X-GitHub-Event"),
            ("cond0_op", "equals"),
            ("cond0_value", "push"),
            // As the form is prefilled.
            ("transform_remove_headers", "x-hub-signature-256, cookie"),
            ("transform_path", "/ci/{event_id}?{query}"),
        ],
    )
    .await;
    let edited = app.get_json(&format!("/webhooks/{id}")).await["targets"][0].clone();
    assert_eq!(
        edited["filter"],
        json!({"all": [{"header": "x-github-event", "equals": "push"}]})
    );
    assert_eq!(
        edited["transform"], t["transform"],
        "the edit kept the transform"
    );
    post_redirect(
        &app,
        &b,
        &format!("/webhooks/{id}/targets/{tid}/edit"),
        &[
            ("name", "ci"),
            ("kind", "http"),
            ("url", "http://127.0.0.1:9/hook"),
            ("edits_routing", "1"),
            ("transform_remove_headers", "x-hub-signature-256, cookie"),
            ("transform_path", "/ci/{event_id}?{query}"),
        ],
    )
    .await;
    let edited = app.get_json(&format!("/webhooks/{id}")).await["targets"][0].clone();
    assert_eq!(edited["filter"], Value::Null);
    assert_eq!(edited["transform"], t["transform"]);
    // The transform's removed headers and path are on the edit form, the set headers'
    // values are not; an empty "headers to set" keeps them, new lines replace them, and
    // "stop setting headers" drops them.
    let html = get_ok(&app, &b, &format!("/webhooks/{id}")).await;
    assert!(
        html.contains("value=\"x-hub-signature-256, cookie\""),
        "{html}"
    );
    assert!(html.contains("value=\"/ci/{event_id}?{query}\""), "{html}");
    assert!(
        !html.contains("page-token"),
        "set header values stay off the page"
    );
    let edit = |extra: &'static [(&'static str, &'static str)]| {
        let mut fields = vec![
            ("name", "ci"),
            ("kind", "http"),
            ("url", "http://127.0.0.1:9/hook"),
            ("edits_routing", "1"),
            ("transform_remove_headers", "Cookie"),
            ("transform_path", "/v2/{event_id}"),
        ];
        fields.extend_from_slice(extra);
        fields
    };
    post_redirect(
        &app,
        &b,
        &format!("/webhooks/{id}/targets/{tid}/edit"),
        &edit(&[]),
    )
    .await;
    let edited = app.get_json(&format!("/webhooks/{id}")).await["targets"][0].clone();
    assert_eq!(
        edited["transform"],
        json!({
            "set_headers": {"authorization": "Bearer page-token", "x-team": "core"},
            "remove_headers": ["cookie"],
            "path": "/v2/{event_id}"
        })
    );
    post_redirect(
        &app,
        &b,
        &format!("/webhooks/{id}/targets/{tid}/edit"),
        &edit(&[("transform_set_headers", "Authorization: Bearer new-token")]),
    )
    .await;
    let edited = app.get_json(&format!("/webhooks/{id}")).await["targets"][0].clone();
    assert_eq!(
        edited["transform"]["set_headers"],
        json!({"authorization": "Bearer new-token"})
    );
    post_redirect(
        &app,
        &b,
        &format!("/webhooks/{id}/targets/{tid}/edit"),
        &edit(&[("transform_clear_set", "on")]),
    )
    .await;
    let edited = app.get_json(&format!("/webhooks/{id}")).await["targets"][0].clone();
    assert_eq!(edited["transform"]["set_headers"], json!({}));
    // A post without the edit form's routing fields (an older page, a script) changes
    // neither the filter nor the transform.
    let before = edited;
    post_redirect(
        &app,
        &b,
        &format!("/webhooks/{id}/targets/{tid}/edit"),
        &[
            ("name", "ci2"),
            ("kind", "http"),
            ("url", "http://127.0.0.1:9/hook"),
        ],
    )
    .await;
    let after = app.get_json(&format!("/webhooks/{id}")).await["targets"][0].clone();
    assert_eq!(after["name"], "ci2");
    assert_eq!(
        (&after["filter"], &after["transform"]),
        (&before["filter"], &before["transform"])
    );
    // A header line that is not Name: value is refused without quoting it.
    let r = post(
        &app,
        &b,
        &format!("/webhooks/{id}/targets/{tid}/edit"),
        &edit(&[("transform_set_headers", "Bearer user:secret-part")]),
    )
    .await;
    let head = format!("{:?}", r.headers());
    let shown = format!("{head} {}", r.text().await.unwrap());
    assert!(
        !shown.contains("secret-part") && !shown.contains("Bearer user"),
        "{shown}"
    );

    // A row that does not make a condition re-renders the form with the reason.
    let r = post(
        &app,
        &b,
        &format!("/webhooks/{id}/targets"),
        &[
            ("name", "bad"),
            ("kind", "log"),
            ("cond0_on", "json"),
            ("cond0_key", "no-slash"),
            ("cond0_op", "exists"),
        ],
    )
    .await;
    assert_eq!(r.status(), StatusCode::UNPROCESSABLE_ENTITY);
    let html = r.text().await.unwrap();
    assert!(html.contains("JSON Pointer"), "{html}");
    assert!(html.contains("value=\"no-slash\""), "the row is kept");
}

/// A refused in-place target edit shows the page again (422) with the edit form open,
/// holding what was typed, and the reason beside it; nothing is saved.
#[tokio::test]
async fn a_refused_target_edit_keeps_what_was_typed() {
    let app = TestApp::start().await;
    let b = login(&app).await;
    let (id, _) = app.webhook("edits").await;
    let tid = app
        .target(
            &id,
            json!({"name": "api", "kind": "http", "url": "http://127.0.0.1:9/old",
                   "transform": {"set_headers": {"Authorization": "Bearer kept-token"}}}),
        )
        .await;
    let before = app.get_json(&format!("/webhooks/{id}")).await["targets"][0].clone();
    let r = post(
        &app,
        &b,
        &format!("/webhooks/{id}/targets/{tid}/edit"),
        &[
            ("name", "renamed api"),
            ("kind", "http"),
            ("url", "http://127.0.0.1:9/new"),
            ("timeout_secs", "0"),
            ("max_in_flight", "7"),
            ("edits_routing", "1"),
            ("cond0_on", "header"),
            ("cond0_key", "X-Typed"),
            ("cond0_op", "equals"),
            ("cond0_value", "typed-value"),
            (
                "transform_set_headers",
                "Authorization: Bearer typed-secret",
            ),
            ("transform_path", "/typed/{event_id}"),
        ],
    )
    .await;
    assert_eq!(r.status(), StatusCode::UNPROCESSABLE_ENTITY);
    assert!(
        set_cookies(r.headers())
            .iter()
            .all(|c| !c.starts_with("webhooker_flash=")),
        "no flash: the reason is on the page"
    );
    let html = r.text().await.unwrap();
    // The row's form is open, with the reason inside it and the field marked.
    let row = &html[html.find(&format!("id=\"target-{tid}\"")).unwrap()..];
    let row = &row[..row.find("</li>").unwrap()];
    assert!(
        row.contains("<details class=\"mt-3 text-sm\" open>"),
        "{row}"
    );
    assert!(row.contains("Timeout must be between 1 and 300."), "{row}");
    assert!(row.contains(&format!(
        "id=\"e-timeout-{tid}\" name=\"timeout_secs\" type=\"text\" inputmode=\"numeric\" class=\"input input-error\" value=\"0\""
    )));
    for typed in [
        "value=\"renamed api\"",
        "value=\"http://127.0.0.1:9/new\"",
        "value=\"7\"",
        "value=\"X-Typed\"",
        "value=\"typed-value\"",
        "value=\"/typed/{event_id}\"",
    ] {
        assert!(row.contains(typed), "{typed} kept: {row}");
    }
    // Header values to set are never put on a page, not even the ones just typed.
    assert!(!html.contains("typed-secret") && !html.contains("kept-token"));
    assert!(row.contains("not shown again"), "{row}");
    // The add-target form is as usual, and nothing was saved.
    assert!(!html.contains(
        "id=\"t-name\" name=\"name\" type=\"text\" class=\"input\" value=\"renamed api\""
    ));
    let after = app.get_json(&format!("/webhooks/{id}")).await["targets"][0].clone();
    assert_eq!(after, before);
    app.stop().await;
}
