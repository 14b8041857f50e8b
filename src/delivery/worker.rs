//! Delivery threads. Each takes tasks from the queue and decides what to do with them
//! (refresh the target, admission, load a large body, build the request); the HTTP
//! exchange itself runs as a task on the tokio runtime and reports back through the
//! bounded outcomes channel, which the same threads serve first. So a delivery thread
//! never waits on the network: a slow or hanging receiver holds a slot, never a thread.

use std::sync::Arc;
use std::time::{Duration, Instant};

use super::admission::{Finished, Offer, Started, TargetRules, Transition};
use super::engine::Shared;
use super::record::{defer, record, retry_later};
use super::targets::{self, AttemptReport, HttpRequest};
use super::task::DeliveryTask;
use crate::metrics as m;
use crate::model::{DEFAULT_MAX_IN_FLIGHT, DEFAULT_TIMEOUT_SECS, Millis, TargetKind, now_ms};
use crate::routing;
use crate::store::StoreError;

/// How much longer than a probe's own timeout the deliveries deferred behind it wait.
const PROBE_GRACE: Duration = Duration::from_secs(2);

/// What one exchange came to, sent back by its runtime task.
pub(super) struct Outcome {
    started: Started,
    report: AttemptReport,
    /// Whether anything reached the network (the breaker learns only from those).
    attempted: bool,
    started_at: Millis,
    duration_us: u64,
}

pub(super) fn run(s: &Arc<Shared>) {
    // Stopping is noticed within `STOP_POLL` of idleness.
    const STOP_POLL: Duration = Duration::from_millis(100);
    loop {
        // Outcomes first: each one frees slots that waiting tasks need.
        crossbeam_channel::select_biased! {
            recv(s.outcomes_rx) -> msg => {
                if let Ok(outcome) = msg {
                    let next = conclude(s, outcome);
                    launch(s, next);
                }
            }
            recv(s.queue_rx) -> msg => match msg {
                // Start nothing once shutdown has begun: its result might not be recorded,
                // and it would be sent again after the restart. The due index holds it.
                Ok(task) if s.stop.stopping() => s.claims.release(task.delivery.id),
                Ok(task) => take(s, task),
                Err(_) => return,
            },
            default(STOP_POLL) => {}
        }
        // In flight exchanges still report during shutdown; `Engine::shutdown` bounds the wait.
        if s.stop.stopping() && s.lock_admission().in_flight() == 0 {
            return;
        }
    }
}

/// Decides what to do with a task from the queue.
fn take(s: &Arc<Shared>, task: DeliveryTask) {
    // Pick up configuration changes made since the task was queued (in memory, no I/O).
    let target_id = task.delivery.target_id;
    let catalog = s.store.catalog();
    if catalog.is_paused(target_id) {
        // Paused: the delivery waits in the due index as it is (status, attempts and due
        // time unchanged, the breaker not fed), and so does everything waiting for the
        // target. The sweeper passes over its rows until it is resumed.
        let waiting = s.lock_admission().release_target(target_id, false);
        s.claims.release_all(waiting);
        s.claims.release(task.delivery.id);
        return;
    }
    let target = match catalog.target(target_id).cloned() {
        Some(t) if t.active => t,
        current => {
            let deleted = current.is_none();
            let waiting = s.lock_admission().release_target(target_id, deleted);
            s.claims.release_all(waiting);
            let why = if deleted {
                "target was deleted"
            } else {
                "target is inactive"
            };
            record(s, task, AttemptReport::failed(why), 0, now_ms());
            return;
        }
    };
    let task = DeliveryTask { target, ..task };
    let rules = match &task.target.kind {
        // Ingest and redelivery create database deliveries already delivered; only a
        // pending one written by an earlier version can reach the engine.
        TargetKind::Database => {
            record(s, task, AttemptReport::delivered_locally(), 0, now_ms());
            return;
        }
        TargetKind::Log => {
            log_event(&task);
            record(s, task, AttemptReport::delivered_locally(), 0, now_ms());
            return;
        }
        TargetKind::Http(cfg) => TargetRules {
            max_in_flight: cfg.max_in_flight,
            // While a probe is out, the others look again only after it must have ended
            // (its timeout, and a margin so its result is recorded first): one probe at a
            // time. A probe that never reports holds the breaker no longer.
            probe_wait: cfg
                .max_retries
                .retries()
                .then(|| http_timeout(cfg.timeout_secs) + PROBE_GRACE),
        },
        TargetKind::Slack(_) => TargetRules {
            max_in_flight: DEFAULT_MAX_IN_FLIGHT,
            probe_wait: None,
        },
    };
    let offer = s.lock_admission().offer(task, rules, Instant::now());
    match offer {
        Offer::Start(started) => launch(s, vec![started]),
        Offer::Parked => {}
        Offer::Full(task) => s.claims.release(task.delivery.id),
        Offer::Defer {
            task,
            until,
            released,
        } => {
            s.claims.release_all(released);
            defer(s, task, until);
        }
    }
}

fn log_event(task: &DeliveryTask) {
    let e = &task.event;
    tracing::info!(
        target: "webhooker::log_target",
        webhook_id = %task.webhook_id,
        target_name = %task.target.name,
        event_id = %e.id,
        method = %e.method,
        path = %e.display_path(),
        content_type = e.content_type.as_deref().unwrap_or(""),
        body_bytes = e.body_len,
        "webhook event"
    );
}

fn http_timeout(secs: u32) -> Duration {
    Duration::from_secs(secs.max(1) as u64)
}

/// Starts exchanges for tasks that hold slots. One that cannot be sent (its body is gone,
/// its URL is invalid) is concluded at once, and whatever its slots start next joins the
/// list.
fn launch(s: &Arc<Shared>, mut todo: Vec<Started>) {
    while let Some(started) = todo.pop() {
        if s.stop.stopping() {
            // Shutdown began after admission: hand the slots back, start nothing.
            let next = settle(s, &started, None);
            debug_assert!(next.is_empty(), "admission is closed");
            s.claims.release(started.task.delivery.id);
            continue;
        }
        if s.store.catalog().is_paused(started.task.target.id) {
            // Paused while it waited for a slot: it goes back to the due index unattempted.
            todo.extend(settle(s, &started, None));
            s.claims.release(started.task.delivery.id);
            continue;
        }
        match prepare(s, &started.task) {
            Ok(req) => spawn_exchange(s, started, req),
            Err(NotSent::Failed(report)) => todo.extend(conclude(
                s,
                Outcome {
                    started,
                    report,
                    attempted: false,
                    started_at: now_ms(),
                    duration_us: 0,
                },
            )),
            Err(NotSent::Unreadable(why)) => {
                // Nothing was attempted: the breaker learns nothing, no retry is spent.
                todo.extend(settle(s, &started, None));
                retry_later(&s.scheduler, started.task.delivery.id, &why);
            }
        }
    }
}

/// Why a task holding slots sends nothing.
enum NotSent {
    /// The attempt fails (its event or body is gone, its request is invalid).
    Failed(AttemptReport),
    /// The event file cannot be read now (a failed disk being reopened, say): the delivery
    /// waits and is tried again, spending nothing.
    Unreadable(String),
}

/// Builds the request: the original for http targets, a message for Slack.
fn prepare(s: &Shared, task: &DeliveryTask) -> Result<HttpRequest, NotSent> {
    let body = load_body(s, task)?;
    match &task.target.kind {
        TargetKind::Http(cfg) => {
            let mut headers = HttpRequest::headers_from(
                &task.event.headers,
                &webhooker_headers(task),
                &cfg.transform,
            );
            if cfg.signing.enabled {
                // Signed here, over the very bytes sent and at this attempt's time. Ours
                // replace any `webhook-*` headers the sender sent, and its `svix-*` ones go
                // (Svix's libraries read those first): a receiver must never take the
                // sender's signature for ours.
                let message_id = task.delivery.id.to_string();
                let signed =
                    targets::standard_webhooks_headers(&cfg.signing, &message_id, now_ms(), &body);
                for name in targets::SVIX_HEADERS {
                    headers.remove(name);
                }
                for (name, value) in signed {
                    headers.insert(name, value);
                }
            }
            let url = routing::target_url(
                &cfg.url,
                cfg.transform.path.as_deref(),
                &routing::TemplateVars {
                    original_path: &task.event.path,
                    event_id: task.event.id,
                    headers: &task.event.headers,
                },
            );
            HttpRequest::new(
                &task.event.method,
                &url,
                headers,
                body,
                http_timeout(cfg.timeout_secs),
                &s.policy,
            )
        }
        TargetKind::Slack(cfg) => {
            let text = targets::slack_text(&task.event, &body);
            let payload = serde_json::json!({ "text": text }).to_string();
            let mut headers = reqwest::header::HeaderMap::new();
            headers.insert(
                reqwest::header::CONTENT_TYPE,
                reqwest::header::HeaderValue::from_static("application/json"),
            );
            HttpRequest::new(
                "POST",
                &cfg.url,
                headers,
                payload.into(),
                http_timeout(DEFAULT_TIMEOUT_SECS),
                &s.policy,
            )
        }
        TargetKind::Log | TargetKind::Database => Err(AttemptReport::failed(
            "not a network target (its kind changed while it waited)",
        )),
    }
    .map_err(NotSent::Failed)
}

/// Runs the exchange on the runtime; its outcome comes back through the outcomes channel.
fn spawn_exchange(s: &Shared, started: Started, req: HttpRequest) {
    let client = s.client.clone();
    let tx = s.outcomes_tx.clone();
    let started_at = now_ms();
    s.runtime.spawn(async move {
        let clock = Instant::now();
        let report = targets::send_http(&client, req).await;
        let outcome = Outcome {
            started,
            report,
            attempted: true,
            started_at,
            duration_us: clock.elapsed().as_micros() as u64,
        };
        // The channel has room for every exchange holding a slot, so this cannot find it
        // full; it fails only once the engine is gone, and then the due index holds the
        // delivery. Should it ever be full, a blocking thread waits for room rather than
        // leaking the slots.
        if let Err(crossbeam_channel::TrySendError::Full(outcome)) = tx.try_send(outcome) {
            tokio::task::spawn_blocking(move || {
                let _engine_gone = tx.send(outcome);
            });
        }
    });
}

/// Gives an exchange's slots back and records its result; returns the tasks its slots
/// start next.
fn conclude(s: &Arc<Shared>, outcome: Outcome) -> Vec<Started> {
    let Outcome {
        started,
        report,
        attempted,
        started_at,
        duration_us,
    } = outcome;
    let healthy = attempted.then(|| !report.target_unhealthy());
    let next = settle(s, &started, healthy);
    record(s, started.task, report, duration_us, started_at);
    next
}

/// Gives the slots of `started` back, feeding its breaker `healthy` (`None`: nothing was
/// sent), and acts on what follows; returns the tasks that now hold slots.
fn settle(s: &Arc<Shared>, started: &Started, healthy: Option<bool>) -> Vec<Started> {
    let target_id = started.task.target.id;
    let mut admission = s.lock_admission();
    let finished = admission.finish(
        target_id,
        started.task.event.body_len,
        started.probe,
        healthy,
        Instant::now(),
    );
    if finished.transition == Some(Transition::Closed) {
        // Under the admission lock, in order behind every deferral scheduled before the
        // close (see `Shared::schedule_deferral`).
        s.scheduler.recovered(target_id);
    }
    drop(admission);
    let Finished {
        start,
        release,
        defer: deferred,
        transition,
        breaker_gauge,
        wake_sweeper,
    } = finished;
    if let Some(gauge) = breaker_gauge {
        metrics::gauge!(m::BREAKER_STATE, "target" => target_id.to_string()).set(gauge);
    }
    // Transitions only: a dead target's failed probes (one per cooldown) stay quiet.
    match transition {
        Some(Transition::Opened) => {
            tracing::warn!(target_id = %target_id, "circuit breaker opened: deliveries to this target wait")
        }
        Some(Transition::Closed) => {
            tracing::info!(target_id = %target_id, "circuit breaker closed: the target is back");
            s.sweep.target_recovered(target_id);
        }
        None => {}
    }
    s.claims.release_all(release);
    for (task, until) in deferred {
        defer(s, task, until);
    }
    if wake_sweeper {
        s.sweep.wake();
    }
    start
}

fn webhooker_headers(task: &DeliveryTask) -> Vec<(&'static str, String)> {
    let mut headers = vec![
        // One more than the request came with: ingest refuses a request past the limit,
        // so a target that leads back here ends the loop.
        (
            routing::HOPS_HEADER,
            routing::hops(&task.event.headers)
                .saturating_add(1)
                .to_string(),
        ),
        ("x-webhooker-event-id", task.event.id.to_string()),
        ("x-webhooker-delivery-id", task.delivery.id.to_string()),
        (
            "x-webhooker-attempt",
            (task.delivery.attempts + 1).to_string(),
        ),
    ];
    if task.event.test {
        headers.push(("x-webhooker-test", "true".into()));
    }
    headers
}

/// The body: inline for small events (no I/O on the happy path), from the event file
/// otherwise.
fn load_body(s: &Shared, task: &DeliveryTask) -> Result<bytes::Bytes, NotSent> {
    if let Some(b) = &task.event.body {
        return Ok(b.clone());
    }
    let failed = |e: StoreError| {
        let why = format!("loading body: {e}");
        if e.is_transient() {
            NotSent::Unreadable(why)
        } else {
            NotSent::Failed(AttemptReport::failed(why))
        }
    };
    let store = s.store.events(task.webhook_id).map_err(failed)?;
    match store.event_with_body(task.event.id) {
        Ok(Some((_, body))) => Ok(body.into()),
        Ok(None) => Err(NotSent::Failed(AttemptReport::failed(
            "event no longer stored",
        ))),
        Err(e) => Err(failed(e)),
    }
}
