//! The real binary as a child process: SIGKILL mid-delivery loses nothing acknowledged;
//! a large backlog keeps threads flat and memory bounded.

use std::collections::HashSet;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde_json::{Value, json};

use crate::support::process::{PASSWORD, ServerProcess};
use crate::support::receiver::{Receiver, Reply};
use crate::support::wait_until;

async fn setup(http: &reqwest::Client, base: &str, target: Value) -> (String, String) {
    let w: Value = http
        .post(format!("{base}/api/v1/webhooks"))
        .basic_auth("admin", Some(PASSWORD))
        .json(&json!({"name": "proc"}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let id = w["id"].as_str().unwrap().to_string();
    let path = reqwest::Url::parse(w["entrypoints"][0]["url"].as_str().unwrap())
        .unwrap()
        .path()
        .to_string();
    let r = http
        .post(format!("{base}/api/v1/webhooks/{id}/targets"))
        .basic_auth("admin", Some(PASSWORD))
        .json(&target)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 201);
    (id, path)
}

/// Sends `count` events with `concurrency` senders; returns the acknowledged event ids.
/// Send errors (the server was killed) are not acknowledgements and are skipped.
async fn blast(
    http: &reqwest::Client,
    url: String,
    count: usize,
    concurrency: usize,
) -> Vec<String> {
    let acked = Arc::new(Mutex::new(Vec::new()));
    let next = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let mut tasks = Vec::new();
    for _ in 0..concurrency {
        let (http, url, acked, next) = (http.clone(), url.clone(), acked.clone(), next.clone());
        tasks.push(tokio::spawn(async move {
            loop {
                let n = next.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                if n >= count {
                    break;
                }
                let body = format!("{{\"n\":{n}}}");
                let Ok(r) = http.post(&url).body(body).send().await else {
                    break;
                };
                if r.status() != 200 {
                    break;
                }
                let Ok(v) = r.json::<Value>().await else {
                    break;
                };
                acked
                    .lock()
                    .unwrap()
                    .push(v["event_id"].as_str().unwrap().to_string());
            }
        }));
    }
    for t in tasks {
        t.await.unwrap();
    }
    Arc::try_unwrap(acked).unwrap().into_inner().unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigkill_mid_delivery_loses_no_acknowledged_event() {
    let dir = tempfile::tempdir().unwrap();
    let sink = Receiver::start().await;
    // A slow receiver keeps deliveries in flight and queued when the kill comes.
    sink.set_default(Reply::delayed(200, Duration::from_millis(20)));
    let dir_path = dir.path().to_path_buf();
    let mut server = tokio::task::spawn_blocking(move || ServerProcess::start(&dir_path, None))
        .await
        .unwrap();
    webhooker::delivery::install_crypto_provider();
    let http = reqwest::Client::new();
    let (_, path) = setup(
        &http,
        &server.base,
        json!({"name": "sink", "kind": "http", "url": sink.url("/"), "max_in_flight": 4}),
    )
    .await;
    let url = format!("{}{path}", server.base);

    // Kill the server while the load is running.
    let load = tokio::spawn({
        let http = http.clone();
        async move { blast(&http, url, 100_000, 8).await }
    });
    assert!(wait_until(Duration::from_secs(30), || async { sink.count() >= 50 }).await);
    server.kill();
    let acked: HashSet<String> = load.await.unwrap().into_iter().collect();
    let delivered_before = unique_event_ids(&sink).len();
    eprintln!(
        "acknowledged {} events, {} delivered before SIGKILL",
        acked.len(),
        delivered_before
    );
    assert!(acked.len() > delivered_before, "the kill came mid-delivery");

    // Restart on the same data: recovery delivers the rest.
    let dir_path = dir.path().to_path_buf();
    let server = tokio::task::spawn_blocking(move || ServerProcess::start(&dir_path, None))
        .await
        .unwrap();
    let ok = wait_until(Duration::from_secs(90), || async {
        let got = unique_event_ids(&sink);
        acked.iter().all(|id| got.contains(id))
    })
    .await;
    let got = unique_event_ids(&sink);
    let missing = acked.iter().filter(|id| !got.contains(*id)).count();
    assert!(ok, "{missing} acknowledged events never delivered");
    eprintln!(
        "after restart: {} unique delivered, {} requests in all (duplicates are allowed)",
        got.len(),
        sink.count()
    );
    drop(server);
}

fn unique_event_ids(sink: &Receiver) -> HashSet<String> {
    sink.received()
        .iter()
        .filter_map(|r| r.header("x-webhooker-event-id"))
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn backlog_for_a_dead_target_keeps_threads_flat_and_memory_bounded() {
    const BACKLOG: usize = 20_000;
    let dir = tempfile::tempdir().unwrap();
    let dir_path = dir.path().to_path_buf();
    let server = tokio::task::spawn_blocking(move || ServerProcess::start(&dir_path, None))
        .await
        .unwrap();
    webhooker::delivery::install_crypto_provider();
    let http = reqwest::Client::new();
    let closed = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap();
    let (wh, path) = setup(
        &http,
        &server.base,
        json!({"name": "dead", "kind": "http", "url": format!("http://{closed}/"), "max_retries": "unlimited"}),
    )
    .await;
    let url = format!("{}{path}", server.base);
    // Warm up, then take the idle figures.
    blast(&http, url.clone(), 20, 4).await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    let (threads_idle, rss_idle) = (server.threads(), server.rss_kib());

    let acked = blast(&http, url, BACKLOG, 32).await;
    assert_eq!(acked.len(), BACKLOG);
    let (threads_after, rss_after) = (server.threads(), server.rss_kib());
    eprintln!(
        "backlog {BACKLOG}: threads idle {threads_idle} -> {threads_after}; RSS idle {} MiB -> {} MiB",
        rss_idle / 1024,
        rss_after / 1024
    );
    assert!(
        threads_after <= threads_idle,
        "threads grew with the backlog"
    );
    assert!(
        rss_after < rss_idle + 150 * 1024,
        "memory grew by {} MiB",
        (rss_after - rss_idle) / 1024
    );
    // Every delivery is still unfinished and on record.
    let page: Value = http
        .get(format!(
            "{}/api/v1/webhooks/{wh}/events?per_page=1",
            server.base
        ))
        .basic_auth("admin", Some(PASSWORD))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(page["total"], BACKLOG + 20);
    assert_ne!(page["events"][0]["deliveries"][0]["status"], "delivered");
    drop(server);
}

/// SIGKILL with hundreds of exchanges open at a receiver that answers none of them: after
/// the restart every acknowledged event reaches every target, and each process sends each
/// delivery at most once (duplicates happen only across the crash).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigkill_with_hundreds_of_requests_in_flight_resumes_each_delivery_once() {
    const EVENTS: usize = 150;
    let dir = tempfile::tempdir().unwrap();
    let sink = Receiver::start().await;
    sink.hold();
    let dir_path = dir.path().to_path_buf();
    let mut server = tokio::task::spawn_blocking(move || ServerProcess::start(&dir_path, None))
        .await
        .unwrap();
    webhooker::delivery::install_crypto_provider();
    let http = reqwest::Client::new();
    let (wh, path) = setup(
        &http,
        &server.base,
        json!({"name": "a", "kind": "http", "url": sink.url("/a"), "max_in_flight": 200, "max_retries": 5}),
    )
    .await;
    let r = http
        .post(format!("{}/api/v1/webhooks/{wh}/targets", server.base))
        .basic_auth("admin", Some(PASSWORD))
        .json(&json!({"name": "b", "kind": "http", "url": sink.url("/b"), "max_in_flight": 200, "max_retries": 5}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 201);
    let acked = blast(&http, format!("{}{path}", server.base), EVENTS, 8).await;
    assert_eq!(acked.len(), EVENTS);
    // Every delivery is now an open request at the sink.
    assert!(
        wait_until(Duration::from_secs(30), || async {
            sink.in_flight() == 2 * EVENTS
        })
        .await,
        "in flight at the sink: {}",
        sink.in_flight()
    );
    server.kill();
    let before = sink.received();
    assert_eq!(before.len(), 2 * EVENTS);
    assert_each_delivery_once(&before, "before the kill");

    sink.release();
    let dir_path = dir.path().to_path_buf();
    let server = tokio::task::spawn_blocking(move || ServerProcess::start(&dir_path, None))
        .await
        .unwrap();
    let all_resent = wait_until(Duration::from_secs(60), || async {
        sink.count() >= 4 * EVENTS
    })
    .await;
    assert!(
        all_resent,
        "resent {} of {}",
        sink.count() - before.len(),
        2 * EVENTS
    );
    // Let a duplicate, if the new process sent one, arrive before counting.
    tokio::time::sleep(Duration::from_millis(300)).await;
    let after: Vec<_> = sink.received().split_off(before.len());
    assert_eq!(after.len(), 2 * EVENTS, "each delivery resent exactly once");
    assert_each_delivery_once(&after, "after the restart");
    let acked: HashSet<String> = acked.into_iter().collect();
    for target in ["/a", "/b"] {
        let got: HashSet<String> = after
            .iter()
            .filter(|r| r.uri.path() == target)
            .filter_map(|r| r.header("x-webhooker-event-id"))
            .collect();
        assert_eq!(got, acked, "every acknowledged event reached {target}");
    }
    drop(server);
}

fn assert_each_delivery_once(received: &[crate::support::receiver::Received], when: &str) {
    let mut seen = HashSet::new();
    for r in received {
        let id = r.header("x-webhooker-delivery-id").unwrap();
        assert!(seen.insert(id.clone()), "{id} sent twice {when}");
    }
}

/// Each webhook costs disk, not threads: hundreds of webhooks, each with an event written
/// to its own file, leave the process with the threads two had. (tokio's blocking pool is
/// left out of the comparison: it grows and shrinks with overlapping `spawn_blocking` calls,
/// whatever the number of webhooks.)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn threads_do_not_grow_with_webhooks() {
    let dir = tempfile::tempdir().unwrap();
    let dir_path = dir.path().to_path_buf();
    let server = tokio::task::spawn_blocking(move || ServerProcess::start(&dir_path, None))
        .await
        .unwrap();
    webhooker::delivery::install_crypto_provider();
    let http = reqwest::Client::new();
    let webhook_with_event = async |name: String| {
        let (_, path) = setup(&http, &server.base, json!({"name": name, "kind": "log"})).await;
        let r = http
            .post(format!("{}{path}", server.base))
            .body("{}")
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200);
    };
    let own_threads = || -> Vec<String> {
        server
            .thread_names()
            .into_iter()
            .filter(|name| !name.starts_with("tokio-"))
            .collect()
    };
    for i in 0..2 {
        webhook_with_event(format!("warm-up {i}")).await;
    }
    let with_two = own_threads();
    for i in 0..300 {
        webhook_with_event(format!("hook {i}")).await;
    }
    let with_many = own_threads();
    eprintln!(
        "threads with 2 webhooks: {with_two:?}; with 302: {with_many:?}; all now: {}",
        server.threads()
    );
    assert_eq!(with_many, with_two, "threads grew with the webhooks");
    drop(server);
}

/// SIGKILL while events flow to many webhooks, with fewer event files allowed open than
/// webhooks (so files close and reopen under the load): after the restart every
/// acknowledged event reaches its target.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigkill_with_many_webhooks_under_load_loses_nothing() {
    const WEBHOOKS: usize = 40;
    let dir = tempfile::tempdir().unwrap();
    let sink = Receiver::start().await;
    // Slower than ingest (40 × 1 in flight × 100 ms = 400 deliveries a second), so
    // deliveries are still due when the process is killed.
    sink.set_default(Reply::delayed(200, Duration::from_millis(100)));
    let dir_path = dir.path().to_path_buf();
    let mut server = tokio::task::spawn_blocking(move || {
        ServerProcess::start_with(&dir_path, None, &[("MAX_OPEN_EVENT_FILES", "8")])
    })
    .await
    .unwrap();
    webhooker::delivery::install_crypto_provider();
    let http = reqwest::Client::new();
    let mut urls = Vec::new();
    for i in 0..WEBHOOKS {
        let (_, path) = setup(
            &http,
            &server.base,
            json!({"name": "sink", "kind": "http", "url": sink.url(&format!("/{i}")), "max_in_flight": 1}),
        )
        .await;
        urls.push(format!("{}{path}", server.base));
    }
    // Senders spread over every webhook until the kill.
    let load = {
        let http = http.clone();
        tokio::spawn(async move {
            let mut loads = Vec::new();
            for url in urls {
                let http = http.clone();
                loads.push(tokio::spawn(
                    async move { blast(&http, url, 1_000, 1).await },
                ));
            }
            let mut acked = Vec::new();
            for l in loads {
                acked.extend(l.await.unwrap());
            }
            acked
        })
    };
    assert!(wait_until(Duration::from_secs(30), || async { sink.count() >= 200 }).await);
    server.kill();
    let acked: HashSet<String> = load.await.unwrap().into_iter().collect();
    eprintln!(
        "{} events acknowledged over {WEBHOOKS} webhooks, {} delivered before SIGKILL",
        acked.len(),
        unique_event_ids(&sink).len()
    );
    assert!(
        acked.len() > unique_event_ids(&sink).len(),
        "killed mid-delivery"
    );

    let dir_path = dir.path().to_path_buf();
    let server = tokio::task::spawn_blocking(move || {
        ServerProcess::start_with(&dir_path, None, &[("MAX_OPEN_EVENT_FILES", "8")])
    })
    .await
    .unwrap();
    let ok = wait_until(Duration::from_secs(90), || async {
        let got = unique_event_ids(&sink);
        acked.iter().all(|id| got.contains(id))
    })
    .await;
    let got = unique_event_ids(&sink);
    let missing = acked.iter().filter(|id| !got.contains(*id)).count();
    assert!(ok, "{missing} acknowledged events never delivered");
    drop(server);
}
