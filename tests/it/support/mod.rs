//! Test harness: [`TestApp`] runs the real `App` on loopback with a temp data dir;
//! [`receiver::Receiver`] is a programmable HTTP sink; [`wait_until`] polls with a deadline.

#![allow(dead_code)]

pub mod process;
pub mod receiver;

use std::future::Future;
use std::time::{Duration, Instant};

use serde_json::{Value, json};
use tempfile::TempDir;
use webhooker::app::App;
use webhooker::config::Config;

/// A running app with its data dir and an admin-authenticated client.
pub struct TestApp {
    pub app: Option<App>,
    pub dir: TempDir,
    pub base: String,
    pub password: String,
    pub http: reqwest::Client,
}

/// Config for tests: loopback targets allowed, fast retries and breaker.
pub fn test_config(dir: &std::path::Path) -> Config {
    let mut c = Config::for_data_dir(dir);
    c.engine.allowed_target_networks = vec!["127.0.0.0/8".parse().unwrap()];
    c.engine.retry_base = Duration::from_millis(50);
    c.engine.sweep_interval = Duration::from_millis(100);
    c.engine.workers = 4;
    c
}

impl TestApp {
    /// Starts with the default test config.
    pub async fn start() -> TestApp {
        TestApp::start_with(|_| {}).await
    }

    /// Starts with a tweaked test config.
    pub async fn start_with(tweak: impl FnOnce(&mut Config)) -> TestApp {
        let dir = tempfile::tempdir().unwrap();
        let mut config = test_config(dir.path());
        config.admin_password = Some("correct horse battery".into());
        tweak(&mut config);
        TestApp::start_in(dir, config).await
    }

    /// Starts on an existing data dir (restart tests).
    pub async fn start_in(dir: TempDir, config: Config) -> TestApp {
        webhooker::delivery::install_crypto_provider();
        let password = config
            .admin_password
            .clone()
            .unwrap_or_else(|| "correct horse battery".into());
        let app = App::start(config).await.unwrap();
        let base = format!("http://{}", app.local_addr());
        let http = reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .unwrap();
        TestApp {
            app: Some(app),
            dir,
            base,
            password,
            http,
        }
    }

    /// Shuts down gracefully and returns the data dir for a restart.
    pub async fn stop(mut self) -> TempDir {
        if let Some(app) = self.app.take() {
            app.shutdown().await;
        }
        self.dir
    }

    pub fn app(&self) -> &App {
        self.app.as_ref().unwrap()
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    /// An admin-authenticated API request.
    pub fn api(&self, method: reqwest::Method, path: &str) -> reqwest::RequestBuilder {
        self.http
            .request(method, self.url(&format!("/api/v1{path}")))
            .basic_auth("admin", Some(&self.password))
    }

    pub async fn get_json(&self, path: &str) -> Value {
        let r = self.api(reqwest::Method::GET, path).send().await.unwrap();
        assert!(r.status().is_success(), "GET {path}: {}", r.status());
        r.json().await.unwrap()
    }

    pub async fn post_json(&self, path: &str, body: Value) -> Value {
        let r = self
            .api(reqwest::Method::POST, path)
            .json(&body)
            .send()
            .await
            .unwrap();
        let status = r.status();
        let text = r.text().await.unwrap();
        assert!(status.is_success(), "POST {path}: {status} {text}");
        serde_json::from_str(&text).unwrap()
    }

    /// Creates a webhook; returns (webhook id, entrypoint URL).
    pub async fn webhook(&self, name: &str) -> (String, String) {
        let w = self.post_json("/webhooks", json!({ "name": name })).await;
        let id = w["id"].as_str().unwrap().to_string();
        let url = w["entrypoints"][0]["url"].as_str().unwrap().to_string();
        (id, url)
    }

    /// Adds a target; returns its id.
    pub async fn target(&self, webhook: &str, body: Value) -> String {
        let t = self
            .post_json(&format!("/webhooks/{webhook}/targets"), body)
            .await;
        t["id"].as_str().unwrap().to_string()
    }

    /// Sends a webhook body; returns the event id.
    pub async fn send(&self, entrypoint_url: &str, body: &'static [u8]) -> String {
        let r = self
            .http
            .post(entrypoint_url)
            .body(body)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200);
        let v: Value = r.json().await.unwrap();
        v["event_id"].as_str().unwrap().to_string()
    }

    /// `POST .../redeliver` through the API, to one target or (with `None`) all active
    /// targets; returns the status.
    pub async fn redeliver(
        &self,
        webhook: &str,
        event: &str,
        target: Option<&str>,
    ) -> reqwest::StatusCode {
        let mut req = self.api(
            reqwest::Method::POST,
            &format!("/webhooks/{webhook}/events/{event}/redeliver"),
        );
        if let Some(t) = target {
            req = req.json(&json!({ "target_id": t }));
        }
        req.send().await.unwrap().status()
    }

    pub async fn event(&self, webhook: &str, event: &str) -> Value {
        self.get_json(&format!("/webhooks/{webhook}/events/{event}"))
            .await
    }

    /// Waits until every delivery of the event is terminal; returns the event.
    pub async fn wait_finished(&self, webhook: &str, event: &str, limit: Duration) -> Value {
        self.wait_event(webhook, event, limit, |ev| {
            ev["deliveries"]
                .as_array()
                .unwrap()
                .iter()
                .all(|d| matches!(d["status"].as_str(), Some("delivered" | "failed")))
        })
        .await
    }

    /// Polls the event until `done` holds; returns it.
    pub async fn wait_event(
        &self,
        webhook: &str,
        event: &str,
        limit: Duration,
        done: impl Fn(&Value) -> bool,
    ) -> Value {
        let deadline = Instant::now() + limit;
        loop {
            let ev = self.event(webhook, event).await;
            if done(&ev) {
                return ev;
            }
            assert!(Instant::now() < deadline, "event never got there: {ev:#}");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}

/// Polls `f` every 20 ms until it returns true or `limit` passes; returns the last result.
pub async fn wait_until<F, Fut>(limit: Duration, mut f: F) -> bool
where
    F: FnMut() -> Fut,
    Fut: Future<Output = bool>,
{
    let deadline = Instant::now() + limit;
    loop {
        if f().await {
            return true;
        }
        if Instant::now() >= deadline {
            return false;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}
