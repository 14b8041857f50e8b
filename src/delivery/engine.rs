//! [`Engine`]: owns the queues and threads, and runs attempts.
//!
//! ```text
//!  ingest ──try_send──▶ [delivery queue] ──▶ worker × N ──▶ target
//!  sweeper ─try_send──▶        ▲                 │ result
//!  scheduler ─try_send─────────┘                 ▼
//!      ▲                               event writer (group commit)
//!      └──────── retry (after commit) ──────────┘
//! ```

use std::collections::{HashMap, HashSet, VecDeque};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use crossbeam_channel::{Receiver, Sender, TrySendError};
use rand::RngExt;
use uuid::Uuid;

use super::backoff::{backoff, clamp_retry_after};
use super::breaker::{Admission, CircuitBreaker};
use super::scheduler::{self, SchedulerMsg};
use super::ssrf::{GuardedResolver, NetworkPolicy};
use super::targets::{self, AttemptReport, HttpRequest, Verdict};
use super::task::DeliveryTask;
use super::{pruner, sweeper};
use crate::config::EngineConfig;
use crate::metrics as m;
use crate::model::{
    DEFAULT_MAX_BACKOFF_SECS, DeliveryResult, DeliveryStatus, Millis, RetryLimit,
    SLACK_MAX_RETRIES, Target, TargetKind, now_ms,
};
use crate::store::{AttemptWrite, Store, StoreError, WriteOp};

/// Handle on the running engine; cheap to clone.
#[derive(Clone)]
pub struct Engine {
    shared: Arc<Shared>,
}

/// A snapshot of the engine's in-memory occupancy (for tests, metrics and the load test).
#[derive(Debug, Clone, Copy, Default)]
pub struct EngineStats {
    /// Tasks in the delivery queue.
    pub queued: usize,
    /// Retries waiting in the scheduler heap (and claims it holds back, see `retry_later`).
    pub scheduled: usize,
    /// Tasks waiting for a `max_in_flight` slot.
    pub parked: usize,
    /// Delivery ids currently in memory anywhere.
    pub claimed: usize,
}

pub(super) struct Shared {
    pub(super) config: EngineConfig,
    pub(super) store: Arc<Store>,
    pub(super) queue_tx: Sender<DeliveryTask>,
    queue_rx: Receiver<DeliveryTask>,
    pub(super) scheduler_tx: Sender<SchedulerMsg>,
    pub(super) scheduled: AtomicUsize,
    pub(super) claims: Arc<Claims>,
    targets: Mutex<HashMap<Uuid, TargetState>>,
    parked: AtomicUsize,
    client: reqwest::Client,
    policy: NetworkPolicy,
    runtime: tokio::runtime::Handle,
    stopping: AtomicBool,
    /// Dropped on shutdown; every engine thread selects on the matching receiver.
    stop_tx: Mutex<Option<Sender<()>>>,
    pub(super) stop_rx: Receiver<()>,
    threads: Mutex<Vec<JoinHandle<()>>>,
    /// Targets whose breaker closed after an outage, not yet seen by the sweeper (see
    /// `target_recovered`).
    recovered: Mutex<HashSet<Uuid>>,
    /// Wakes the sweeper before its interval: a target it passed over has run out of
    /// waiting tasks (see `targets_with_waiting`).
    sweep_wake_tx: Sender<()>,
    pub(super) sweep_wake_rx: Receiver<()>,
}

/// Per-target state: the breaker, the in-flight count and tasks waiting for a slot.
struct TargetState {
    breaker: CircuitBreaker,
    in_flight: u32,
    waiting: VecDeque<DeliveryTask>,
    /// The sweeper passed over this target's due rows because tasks were waiting; it
    /// wants a wake-up when they are gone.
    passed_over: bool,
}

/// The set of delivery ids in memory (I5). Whoever inserts an id owns the delivery until
/// it releases it; the sweeper and dispatch only enqueue what they could claim.
#[derive(Default)]
pub(super) struct Claims(Mutex<HashSet<Uuid>>);

impl Claims {
    fn lock(&self) -> MutexGuard<'_, HashSet<Uuid>> {
        self.0.lock().unwrap_or_else(|p| p.into_inner())
    }
    /// Claims an id; false if it is already in memory.
    pub(super) fn claim(&self, id: Uuid) -> bool {
        self.lock().insert(id)
    }
    /// Gives an id back: from now on only the due index knows about it.
    pub(super) fn release(&self, id: Uuid) {
        self.lock().remove(&id);
    }
    pub(super) fn len(&self) -> usize {
        self.lock().len()
    }
}

impl Engine {
    /// Starts the worker pool, the scheduler, the sweeper (whose first pass is crash
    /// recovery) and the pruner.
    pub fn start(
        config: EngineConfig,
        store: Arc<Store>,
        runtime: tokio::runtime::Handle,
    ) -> anyhow::Result<Engine> {
        install_crypto_provider();
        let policy = NetworkPolicy::new(config.allowed_target_networks.clone());
        let client = reqwest::Client::builder()
            .dns_resolver(Arc::new(GuardedResolver {
                policy: policy.clone(),
            }))
            // Through a proxy the resolver would see only the proxy's name.
            .no_proxy()
            // A redirect could lead to a literal private IP that skips the resolver.
            .redirect(reqwest::redirect::Policy::none())
            .user_agent(concat!("webhooker/", env!("CARGO_PKG_VERSION")))
            .pool_max_idle_per_host(64)
            .build()?;
        let (queue_tx, queue_rx) = crossbeam_channel::bounded(config.queue_capacity);
        let (scheduler_tx, scheduler_rx) = crossbeam_channel::bounded(1024);
        let (stop_tx, stop_rx) = crossbeam_channel::bounded::<()>(0);
        let (sweep_wake_tx, sweep_wake_rx) = crossbeam_channel::bounded::<()>(1);
        let shared = Arc::new(Shared {
            config,
            store,
            queue_tx,
            queue_rx,
            scheduler_tx,
            scheduled: AtomicUsize::new(0),
            claims: Arc::default(),
            targets: Mutex::new(HashMap::new()),
            parked: AtomicUsize::new(0),
            client,
            policy,
            runtime,
            stopping: AtomicBool::new(false),
            stop_tx: Mutex::new(Some(stop_tx)),
            stop_rx,
            threads: Mutex::new(Vec::new()),
            recovered: Mutex::default(),
            sweep_wake_tx,
            sweep_wake_rx,
        });
        let mut threads = Vec::new();
        for i in 0..shared.config.workers {
            let s = shared.clone();
            threads.push(spawn(format!("deliver-{i}"), move || worker_loop(&s))?);
        }
        let s = shared.clone();
        threads.push(spawn("scheduler".into(), move || {
            scheduler::run(&s, &scheduler_rx)
        })?);
        let s = shared.clone();
        threads.push(spawn("sweeper".into(), move || sweeper::run(&s))?);
        let s = shared.clone();
        threads.push(spawn("pruner".into(), move || pruner::run(&s))?);
        *shared.threads.lock().unwrap_or_else(|p| p.into_inner()) = threads;
        Ok(Engine { shared })
    }

    /// Hands freshly committed deliveries to the engine. Never blocks: what does not fit
    /// stays in the due index, where the sweeper finds it (I2).
    pub fn dispatch(&self, tasks: Vec<DeliveryTask>) {
        for task in tasks {
            self.shared.enqueue_unclaimed(task);
        }
    }

    /// Current occupancy.
    pub fn stats(&self) -> EngineStats {
        self.shared.stats()
    }

    /// Stops taking work, lets in-flight attempts finish within the grace period, and joins
    /// the threads. Whatever is still queued is recovered from the due index next start.
    pub fn shutdown(&self) {
        let s = &self.shared;
        s.stopping.store(true, Ordering::SeqCst);
        s.stop_tx.lock().unwrap_or_else(|p| p.into_inner()).take();
        let threads: Vec<_> = s
            .threads
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .drain(..)
            .collect();
        let deadline = Instant::now() + s.config.shutdown_grace;
        for t in threads {
            while !t.is_finished() && Instant::now() < deadline {
                std::thread::sleep(Duration::from_millis(10));
            }
            if t.is_finished() {
                if t.join().is_err() {
                    tracing::error!("engine thread panicked");
                }
            } else {
                tracing::warn!(
                    thread = t.thread().name().unwrap_or("?"),
                    "still busy at shutdown; its delivery will be retried after restart"
                );
            }
        }
    }
}

fn spawn(name: String, f: impl FnOnce() + Send + 'static) -> std::io::Result<JoinHandle<()>> {
    std::thread::Builder::new().name(name).spawn(f)
}

impl Shared {
    pub(super) fn stopping(&self) -> bool {
        self.stopping.load(Ordering::Relaxed)
    }

    pub(super) fn stats(&self) -> EngineStats {
        EngineStats {
            queued: self.queue_tx.len(),
            scheduled: self.scheduled.load(Ordering::Relaxed),
            parked: self.parked.load(Ordering::Relaxed),
            claimed: self.claims.len(),
        }
    }

    /// Claims and queues a task; gives up quietly when it is already in memory.
    fn enqueue_unclaimed(&self, task: DeliveryTask) {
        if self.claims.claim(task.delivery.id) {
            self.enqueue_claimed(task);
        }
    }

    /// Queues a task this caller already owns; on a full queue, releases it to the index.
    pub(super) fn enqueue_claimed(&self, task: DeliveryTask) -> bool {
        match self.queue_tx.try_send(task) {
            Ok(()) => true,
            Err(TrySendError::Full(t) | TrySendError::Disconnected(t)) => {
                self.claims.release(t.delivery.id);
                false
            }
        }
    }

    /// A target's breaker closed after an outage: its deliveries waiting out a backoff are
    /// due now, so the backlog drains at `max_in_flight` from the first successful probe on,
    /// instead of each delivery waiting for the end of its own backoff (up to
    /// `max_backoff`). The scheduler brings its entries forward at once; the sweeper queues
    /// those that only the due index holds. Called under the targets lock (see
    /// `schedule_deferral`).
    fn target_recovered(&self, target_id: Uuid) {
        self.recovered
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(target_id);
        // A blocking send, in order behind every deferral scheduled before the close (they
        // are sent under the same lock): the scheduler must see those entries before it
        // brings the target's entries forward. It never waits for the targets lock, and
        // once it has stopped the send fails at once.
        let _stopped = self.scheduler_tx.send(SchedulerMsg::Recovered(target_id));
    }

    /// Takes the targets recovered since the sweeper last asked.
    pub(super) fn recovered_for_sweeper(&self) -> HashSet<Uuid> {
        std::mem::take(&mut *self.recovered.lock().unwrap_or_else(|p| p.into_inner()))
    }

    /// Targets with tasks waiting for a slot: they have work in memory beyond what they
    /// can run, so the sweeper passes over their due rows (more tasks would only bounce
    /// off the full waiting list, and fill every pass with the same rows, starving the
    /// rows behind them). Each target named here wakes the sweeper once its waiting list
    /// runs dry, so it is not left idle until the next pass.
    pub(super) fn targets_with_waiting(&self) -> HashSet<Uuid> {
        let mut targets = self.lock_targets();
        let mut busy = HashSet::new();
        for (id, state) in targets.iter_mut() {
            if !state.waiting.is_empty() {
                state.passed_over = true;
                busy.insert(*id);
            }
        }
        busy
    }

    /// Whether the target's breaker lets attempts through (a target without state has
    /// never failed).
    pub(super) fn breaker_closed(&self, target_id: Uuid) -> bool {
        breaker_closed(&self.lock_targets(), target_id)
    }

    /// Schedules a delivery the breaker deferred: at `due`, or now if the breaker has
    /// closed since (a deferral committed while the closing probe was out). Decided under
    /// the targets lock, under which a closing breaker notifies the scheduler, so a
    /// deferral cannot slip in after that notice and wait out a cooldown for nothing.
    fn schedule_deferral(&self, due: Millis, task: DeliveryTask) {
        let targets = self.lock_targets();
        let due = if breaker_closed(&targets, task.target.id) {
            due.min(now_ms())
        } else {
            due
        };
        scheduler::schedule(self, due, task);
    }

    fn lock_targets(&self) -> MutexGuard<'_, HashMap<Uuid, TargetState>> {
        self.targets.lock().unwrap_or_else(|p| p.into_inner())
    }
}

fn breaker_closed(targets: &HashMap<Uuid, TargetState>, target_id: Uuid) -> bool {
    targets
        .get(&target_id)
        .is_none_or(|t| t.breaker.is_closed())
}

fn worker_loop(s: &Arc<Shared>) {
    // A plain blocking receive (not a select with the stop channel): with many idle workers
    // on one queue, select's register/unregister per task cost measurable context switches.
    // Stopping is noticed within `STOP_POLL` of idleness, or after the current task.
    const STOP_POLL: Duration = Duration::from_millis(100);
    while !s.stopping() {
        match s.queue_rx.recv_timeout(STOP_POLL) {
            Ok(task) => {
                let mut next = Some(task);
                while let Some(task) = next.take() {
                    if s.stopping() {
                        // Start nothing once shutdown has begun: its result could no longer
                        // be recorded, and it would be sent again after the restart. The due
                        // index still holds it (I2).
                        s.claims.release(task.delivery.id);
                        break;
                    }
                    next = attempt(s, task);
                }
            }
            Err(crossbeam_channel::RecvTimeoutError::Timeout) => {}
            Err(crossbeam_channel::RecvTimeoutError::Disconnected) => return,
        }
    }
}

/// Runs one task to the point where its result is handed to the writer. Returns a task
/// that was waiting for the slot this attempt freed, to be run next on this thread.
fn attempt(s: &Arc<Shared>, task: DeliveryTask) -> Option<DeliveryTask> {
    // Pick up configuration changes made since the task was queued (in memory, no I/O).
    let current = s.store.catalog().target(task.delivery.target_id).cloned();
    let target = match current {
        Some(t) if t.active => t,
        Some(_) => {
            release_waiting(s, task.delivery.target_id, false);
            record(
                s,
                task,
                AttemptReport::failed("target is inactive"),
                0,
                now_ms(),
            );
            return None;
        }
        None => {
            release_waiting(s, task.delivery.target_id, true);
            record(
                s,
                task,
                AttemptReport::failed("target was deleted"),
                0,
                now_ms(),
            );
            return None;
        }
    };
    let task = DeliveryTask { target, ..task };
    match &task.target.kind {
        // Ingest and redelivery create database deliveries already delivered; only a
        // pending one written by an earlier version can reach the engine.
        TargetKind::Database => {
            record(s, task, AttemptReport::delivered_locally(), 0, now_ms());
            None
        }
        TargetKind::Log => {
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
            record(s, task, AttemptReport::delivered_locally(), 0, now_ms());
            None
        }
        TargetKind::Http(cfg) => {
            let cfg = cfg.clone();
            let uses_breaker = cfg.max_retries.retries();
            let timeout = Duration::from_secs(cfg.timeout_secs.max(1) as u64);
            // While a probe is out, the others look again only after it must have ended
            // (its timeout, and a margin so its result is recorded first): one probe at a
            // time. A probe that never reports (a lost thread) holds the breaker no longer.
            let probe_wait = timeout + PROBE_GRACE;
            let probe = match admit(s, &task, cfg.max_in_flight, uses_breaker, probe_wait) {
                Admit::Go { probe } => probe,
                Admit::Waiting => return None,
                Admit::Defer(until) => {
                    // Nothing will free a slot while the breaker holds attempts back.
                    release_waiting(s, task.target.id, false);
                    defer(s, task, until);
                    return None;
                }
            };
            let started = now_ms();
            let clock = Instant::now();
            let report = match load_body(s, &task) {
                Ok(body) => {
                    let req = HttpRequest {
                        method: &task.event.method,
                        url: &cfg.url,
                        headers: HttpRequest::headers_from(
                            &task.event.headers,
                            &webhooker_headers(&task),
                        ),
                        body,
                        timeout,
                        policy: &s.policy,
                    };
                    s.runtime.block_on(targets::send_http(&s.client, req))
                }
                Err(BodyError::Gone(e)) => AttemptReport::failed(e),
                Err(BodyError::Unreadable(e)) => {
                    // Nothing was attempted: the breaker learns nothing, no retry is spent.
                    let next = release_slot(s, task.target.id, uses_breaker, probe, None);
                    retry_later(s, task, &e);
                    return next;
                }
            };
            let elapsed = clock.elapsed();
            let next = release_slot(s, task.target.id, uses_breaker, probe, Some(&report));
            record(s, task, report, elapsed.as_micros() as u64, started);
            next
        }
        TargetKind::Slack(cfg) => {
            let started = now_ms();
            let clock = Instant::now();
            let report = match load_body(s, &task) {
                Ok(body) => {
                    let text = targets::slack_text(&task.event, &body);
                    let payload = serde_json::json!({ "text": text }).to_string();
                    let mut headers = reqwest::header::HeaderMap::new();
                    headers.insert(
                        reqwest::header::CONTENT_TYPE,
                        reqwest::header::HeaderValue::from_static("application/json"),
                    );
                    let req = HttpRequest {
                        method: "POST",
                        url: &cfg.url,
                        headers,
                        body: payload.into(),
                        timeout: Duration::from_secs(crate::model::DEFAULT_TIMEOUT_SECS as u64),
                        policy: &s.policy,
                    };
                    s.runtime.block_on(targets::send_http(&s.client, req))
                }
                Err(BodyError::Gone(e)) => AttemptReport::failed(e),
                Err(BodyError::Unreadable(e)) => {
                    retry_later(s, task, &e);
                    return None;
                }
            };
            record(s, task, report, clock.elapsed().as_micros() as u64, started);
            None
        }
    }
}

/// How much longer than a probe's own timeout the deliveries deferred behind it wait.
const PROBE_GRACE: Duration = Duration::from_secs(2);

enum Admit {
    Go { probe: bool },
    Waiting,
    Defer(Instant),
}

/// Takes an in-flight slot and asks the breaker. A task that finds every slot taken waits
/// in the target's list (bounded overall by `parked_capacity`; beyond it the task goes
/// back to the due index), so no worker ever blocks on a slow target.
fn admit(
    s: &Shared,
    task: &DeliveryTask,
    max_in_flight: u32,
    uses_breaker: bool,
    probe_wait: Duration,
) -> Admit {
    let mut targets = s.lock_targets();
    let state = targets
        .entry(task.target.id)
        .or_insert_with(|| TargetState {
            breaker: CircuitBreaker::new(s.config.breaker_threshold, s.config.breaker_cooldown),
            in_flight: 0,
            waiting: VecDeque::new(),
            passed_over: false,
        });
    if state.in_flight >= max_in_flight.max(1) {
        if s.parked.load(Ordering::Relaxed) < s.config.parked_capacity {
            s.parked.fetch_add(1, Ordering::Relaxed);
            state.waiting.push_back(task.clone());
        } else {
            s.claims.release(task.delivery.id);
        }
        return Admit::Waiting;
    }
    let mut probe = false;
    if uses_breaker {
        match state.breaker.admit(Instant::now(), probe_wait) {
            Admission::Attempt { probe: p } => probe = p,
            Admission::DeferUntil(until) => return Admit::Defer(until),
        }
    }
    state.in_flight += 1;
    Admit::Go { probe }
}

/// Frees the slot, feeds the breaker the attempt's `report` (none: nothing was sent), and
/// hands back the next waiting task, if any.
fn release_slot(
    s: &Shared,
    target_id: Uuid,
    uses_breaker: bool,
    probe: bool,
    report: Option<&AttemptReport>,
) -> Option<DeliveryTask> {
    let mut targets = s.lock_targets();
    let state = targets.get_mut(&target_id)?;
    state.in_flight = state.in_flight.saturating_sub(1);
    if uses_breaker && let Some(report) = report {
        let was_closed = state.breaker.is_closed();
        state
            .breaker
            .record(!report.target_unhealthy(), probe, Instant::now());
        metrics::gauge!(m::BREAKER_STATE, "target" => target_id.to_string())
            .set(state.breaker.gauge());
        // Transitions only: a dead target's failed probes (one per cooldown) stay quiet.
        match (was_closed, state.breaker.is_closed()) {
            (true, false) => {
                tracing::warn!(target_id = %target_id, "circuit breaker opened: deliveries to this target wait")
            }
            (false, true) => {
                tracing::info!(target_id = %target_id, "circuit breaker closed: the target is back");
                s.target_recovered(target_id);
            }
            _ => {}
        }
    }
    if !state.breaker.is_closed() {
        // The breaker just opened (or stays half-open): waiting tasks would only be
        // deferred one by one; hand them all back to the due index now.
        drain_waiting(s, state);
        return None;
    }
    let next = state.waiting.pop_front();
    if next.is_some() {
        s.parked.fetch_sub(1, Ordering::Relaxed);
        if state.waiting.is_empty() && std::mem::take(&mut state.passed_over) {
            // Full already means a wake-up is pending.
            let _pending = s.sweep_wake_tx.try_send(());
        }
    }
    next
}

/// Gives every task waiting for a slot of this target back to the due index (releasing
/// its claim): used when no attempt to the target will free a slot soon. With `forget`,
/// the target's state goes too (the target was deleted).
fn release_waiting(s: &Shared, target_id: Uuid, forget: bool) {
    let mut targets = s.lock_targets();
    if let Some(state) = targets.get_mut(&target_id) {
        drain_waiting(s, state);
        if forget && state.in_flight == 0 {
            targets.remove(&target_id);
        }
    }
}

fn drain_waiting(s: &Shared, state: &mut TargetState) {
    let n = state.waiting.len();
    for task in state.waiting.drain(..) {
        s.claims.release(task.delivery.id);
    }
    s.parked.fetch_sub(n, Ordering::Relaxed);
}

fn webhooker_headers(task: &DeliveryTask) -> [(&'static str, String); 3] {
    [
        ("x-webhooker-event-id", task.event.id.to_string()),
        ("x-webhooker-delivery-id", task.delivery.id.to_string()),
        (
            "x-webhooker-attempt",
            (task.delivery.attempts + 1).to_string(),
        ),
    ]
}

/// Why an attempt has no body to send.
enum BodyError {
    /// The event or its body is no longer stored, or cannot be decoded: the delivery fails.
    Gone(String),
    /// The event file cannot be read now (a failed disk being reopened, say): the delivery
    /// waits and is tried again, spending nothing.
    Unreadable(String),
}

/// The body: inline for small events (no I/O, I4), from the event file otherwise.
fn load_body(s: &Shared, task: &DeliveryTask) -> Result<bytes::Bytes, BodyError> {
    if let Some(b) = &task.event.body {
        return Ok(b.clone());
    }
    let failed = |e: StoreError| {
        let why = format!("loading body: {e}");
        if e.is_transient() {
            BodyError::Unreadable(why)
        } else {
            BodyError::Gone(why)
        }
    };
    let store = s.store.events(task.webhook_id).map_err(failed)?;
    match store.event_with_body(task.event.id) {
        Ok(Some((_, body))) => Ok(body.into()),
        Ok(None) => Err(BodyError::Gone("event no longer stored".into())),
        Err(e) => Err(failed(e)),
    }
}

/// The policy for retries of a target kind: (retry limit, backoff cap).
fn retry_policy(target: &Target) -> (RetryLimit, Duration) {
    match &target.kind {
        TargetKind::Http(h) => (
            h.max_retries,
            Duration::from_secs(h.max_backoff_secs as u64),
        ),
        TargetKind::Slack(_) => (
            RetryLimit::Limited(SLACK_MAX_RETRIES),
            Duration::from_secs(DEFAULT_MAX_BACKOFF_SECS as u64),
        ),
        TargetKind::Log | TargetKind::Database => (RetryLimit::Limited(0), Duration::ZERO),
    }
}

/// Writes the attempt's result and the delivery's next state in one transaction (through
/// the group-commit writer); after the commit, schedules the retry or lets the task go.
fn record(
    s: &Arc<Shared>,
    task: DeliveryTask,
    report: AttemptReport,
    duration_us: u64,
    started: Millis,
) {
    let now = now_ms();
    let attempt = task.delivery.attempts + 1;
    let (limit, max_backoff) = retry_policy(&task.target);
    let previous_due = task.delivery.next_attempt_at;
    let mut delivery = task.delivery.clone();
    delivery.attempts = attempt;
    let target_label = task.target.id.to_string();
    let outcome = match report.verdict {
        Verdict::Delivered => {
            delivery.status = DeliveryStatus::Delivered;
            delivery.next_attempt_at = None;
            "delivered"
        }
        Verdict::Retry { after } if limit.allows_retry_after(attempt) => {
            let computed = backoff(
                attempt,
                s.config.retry_base,
                max_backoff.max(s.config.retry_base),
                rand::rng().random::<f64>(),
            );
            let delay = match after {
                Some(hint) => clamp_retry_after(hint, computed, max_backoff),
                None => computed,
            };
            delivery.status = DeliveryStatus::Retrying;
            delivery.next_attempt_at = Some(now + delay.as_millis() as Millis);
            metrics::counter!(m::RETRIES_SCHEDULED, "target" => target_label.clone()).increment(1);
            "retry"
        }
        Verdict::Retry { .. } | Verdict::Fail => {
            delivery.status = DeliveryStatus::Failed;
            delivery.next_attempt_at = None;
            "failed"
        }
    };
    metrics::counter!(m::DELIVERY_ATTEMPTS, "target" => target_label.clone(), "outcome" => outcome)
        .increment(1);
    metrics::histogram!(m::DELIVERY_DURATION, "target" => target_label.clone())
        .record(duration_us as f64 / 1e6);
    if delivery.status.is_terminal() {
        metrics::counter!(m::DELIVERIES_FINISHED, "target" => target_label, "status" => delivery.status.as_str())
            .increment(1);
    }
    let result = DeliveryResult {
        delivery_id: delivery.id,
        attempt,
        started_at: started,
        duration_us,
        status_code: report.status_code,
        error: report.error,
        response_body: report.response_body,
        success: report.verdict == Verdict::Delivered,
    };
    let write = AttemptWrite {
        delivery: delivery.clone(),
        previous_due,
        result: Some(result),
    };
    submit_then(s, task, delivery, write);
}

/// The breaker is open: move the due time to when it may close, spending no attempt.
fn defer(s: &Arc<Shared>, task: DeliveryTask, until: Instant) {
    let wait = until.saturating_duration_since(Instant::now());
    let previous_due = task.delivery.next_attempt_at;
    let mut delivery = task.delivery.clone();
    delivery.next_attempt_at = Some(now_ms() + wait.as_millis() as Millis);
    metrics::counter!(m::DELIVERY_ATTEMPTS, "target" => task.target.id.to_string(), "outcome" => "deferred")
        .increment(1);
    let write = AttemptWrite {
        delivery: delivery.clone(),
        previous_due,
        result: None,
    };
    submit_then(s, task, delivery, write);
}

/// How long a delivery waits when its event file could not be read or written.
const STORE_RETRY_DELAY_MS: Millis = 30_000;

/// Leaves a delivery that the event file failed (its body could not be read, or its attempt
/// not recorded) to the due index only after [`STORE_RETRY_DELAY_MS`], claimed meanwhile:
/// released at once, the sweeper would find it within a second and, while the file stays
/// broken, send it again each time. The sweeper then re-reads what the file holds (a
/// failed commit may have landed after all).
fn retry_later(s: &Shared, task: DeliveryTask, why: &str) {
    let id = task.delivery.id;
    tracing::warn!(delivery_id = %id, reason = why, "event file failed; delivery retried in 30 s");
    scheduler::release_later(s, now_ms() + STORE_RETRY_DELAY_MS, id);
}

/// Sends the write to the event file's writer; once committed, the task either waits in
/// the scheduler for its next due time or leaves memory.
fn submit_then(
    s: &Arc<Shared>,
    task: DeliveryTask,
    delivery: crate::model::Delivery,
    write: AttemptWrite,
) {
    let id = delivery.id;
    let store = match s.store.events(task.webhook_id) {
        Ok(store) => store,
        Err(e) => {
            tracing::error!(error = %e, delivery_id = %id, "cannot record attempt");
            s.claims.release(id);
            return;
        }
    };
    let shared = s.clone();
    let deferral = write.result.is_none();
    let done = Box::new(move |r: Result<(), StoreError>| match r {
        Ok(()) => match delivery.next_attempt_at {
            Some(due) => {
                let task = DeliveryTask { delivery, ..task };
                if deferral {
                    shared.schedule_deferral(due, task);
                } else {
                    scheduler::schedule(&shared, due, task);
                }
            }
            None => shared.claims.release(id),
        },
        // The due row still holds the previous state; the attempt may have reached the
        // receiver, so it is repeated only after a while. (The writer logs the file's
        // failure itself, once.)
        Err(e) => retry_later(&shared, task, &format!("recording the attempt: {e}")),
    });
    if let Err(e) = store.submit(WriteOp::Attempt(write), done) {
        tracing::warn!(error = %e, delivery_id = %id, "event store closed; left to recovery");
        s.claims.release(id);
    }
}

/// Installs ring as the process's rustls provider (the only one compiled in). Idempotent:
/// a later call finds it installed, which is fine.
pub fn install_crypto_provider() {
    let _already_installed = rustls::crypto::ring::default_provider().install_default();
}
