//! The sweeper: every `sweep_interval` it range-scans the due index of each webhook whose
//! earliest due time has come (`Store::due_times`, kept by the writers, so files with
//! nothing due are not opened) and queues rows not already in memory. Its first pass at
//! startup is crash recovery, and learns each file's earliest due time once; later passes
//! pick up what a full queue or full scheduler left behind (I2).
//!
//! The queue's free room is shared between webhooks, starting from a different webhook
//! each pass, so one webhook's large backlog cannot starve the others.
//!
//! When a target's breaker closes after an outage, the sweeper also brings that target's
//! backed-off deliveries forward, once each ([`Recoveries`]).

use std::collections::{HashMap, HashSet, VecDeque};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use crossbeam_channel::{Receiver, Sender};
use uuid::Uuid;

use super::admission::Admission;
use super::committed::{AfterCommit, CommitSender};
use super::queue::{Clock, StopSignal, TaskQueue};
use super::task::{DeliveryTask, EventPayload, MAX_INLINE_BODY};
use crate::metrics as m;
use crate::model::{Delivery, DeliveryResult, DeliveryStatus, Millis, Target, TargetKind};
use crate::store::{
    AttemptWrite, DueRow, EarliestDue, EventStore, Notice, Store, StoreError, WriteOp,
};

/// What the delivery threads tell the sweeper between passes.
pub(super) struct SweepSignals {
    /// Targets whose breaker closed after an outage, not yet seen by the sweeper.
    recovered: Mutex<HashSet<Uuid>>,
    /// Wakes the sweeper before its interval: a target it passed over has run out of
    /// waiting tasks (see `Admission::targets_with_waiting`).
    wake_tx: Sender<()>,
    wake_rx: Receiver<()>,
}

impl Default for SweepSignals {
    fn default() -> Self {
        let (wake_tx, wake_rx) = crossbeam_channel::bounded(1);
        SweepSignals {
            recovered: Mutex::default(),
            wake_tx,
            wake_rx,
        }
    }
}

impl SweepSignals {
    /// A target's breaker closed after an outage: its deliveries waiting out a backoff are
    /// due now, so the backlog drains at `max_in_flight` from the first successful probe
    /// on, instead of each delivery waiting for the end of its own backoff. (The scheduler
    /// brings its own entries forward; the sweeper queues those only the due index holds.)
    pub(super) fn target_recovered(&self, target_id: Uuid) {
        self.recovered
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(target_id);
    }

    /// Asks for a pass now.
    pub(super) fn wake(&self) {
        // Full already means a wake-up is pending.
        let _pending = self.wake_tx.try_send(());
    }

    fn take_recovered(&self) -> HashSet<Uuid> {
        std::mem::take(&mut *self.recovered.lock().unwrap_or_else(|p| p.into_inner()))
    }
}

/// The sweeper thread's view of the engine.
pub(super) struct Sweeper {
    pub(super) store: Arc<Store>,
    pub(super) queue: TaskQueue,
    pub(super) admission: Arc<Mutex<Admission>>,
    pub(super) signals: Arc<SweepSignals>,
    /// Where the writers report its failing of orphans.
    pub(super) commits: CommitSender,
    pub(super) stop: StopSignal,
    /// Time between passes when nothing is left behind.
    pub(super) interval: Duration,
    /// After start, work due within this window counts as due now (the breaker cooldown).
    pub(super) recovery_window: Duration,
    pub(super) clock: Clock,
}

/// What the sweeper carries from one pass to the next.
struct Passes {
    count: usize,
    due_gauges: DueGauges,
    recoveries: Recoveries,
    /// Deferrals by a circuit breaker of the previous process are not binding on this
    /// one, whose breakers start closed: during the first cooldown after start, work due
    /// before its end counts as due now. If the target is still down, this process's own
    /// breaker opens after a few failures and defers it again.
    recovery_until: Millis,
}

impl Sweeper {
    pub(super) fn run(self) {
        let mut passes = self.first_pass();
        loop {
            let backlog = self.pass(&mut passes);
            // With more due work than the queue took, come back as soon as the delivery
            // threads have made room, so a recovered backlog drains at delivery speed, not
            // one queue per interval.
            let wait = if backlog {
                self.interval / 20
            } else {
                self.interval
            };
            crossbeam_channel::select! {
                recv(self.stop.rx()) -> _ => return,
                recv(self.signals.wake_rx) -> _ => {}
                default(wait) => {}
            }
        }
    }

    fn first_pass(&self) -> Passes {
        Passes {
            count: 0,
            due_gauges: DueGauges::default(),
            recoveries: Recoveries::default(),
            recovery_until: (self.clock)() + self.recovery_window.as_millis() as Millis,
        }
    }

    /// One pass: recovered targets' rows, then every webhook's due rows. Returns whether
    /// due work was left behind for lack of room.
    fn pass(&self, passes: &mut Passes) -> bool {
        let horizon = (self.clock)().max(passes.recovery_until);
        let recovering = passes.recoveries.requeue(self);
        let backlog = sweep(self, passes.count, horizon) || recovering;
        passes.count += 1;
        // A disk filling up is logged when it happens, not only when a health check or a
        // scrape asks (one statvfs).
        self.store.free_space();
        publish_depths(self);
        passes.due_gauges.publish(self);
        backlog
    }

    fn stopping(&self) -> bool {
        self.stop.stopping()
    }

    fn admission(&self) -> std::sync::MutexGuard<'_, Admission> {
        self.admission.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// One pass over every webhook, starting at webhook number `pass` (round robin), for work
/// due at or before `horizon`. Returns whether due work was left behind for lack of room.
fn sweep(s: &Sweeper, pass: usize, horizon: i64) -> bool {
    let mut webhooks = s.store.catalog().webhooks();
    if webhooks.is_empty() {
        return false;
    }
    let start = pass % webhooks.len();
    webhooks.rotate_left(start);
    // Only files with work due are opened; a webhook not looked at since the start (the
    // first pass, crash recovery) is learned once, without keeping its file open.
    let mut due = Vec::new();
    for webhook in webhooks {
        if s.stopping() {
            return false;
        }
        let earliest = match s.store.due_times().get(webhook.id) {
            EarliestDue::At(at) => Some(at),
            EarliestDue::Nothing => None,
            EarliestDue::Unknown => match s.store.learn_earliest_due(webhook.id) {
                Ok(at) => at,
                // Every open file is in use: learned on a later pass.
                Err(StoreError::Busy) => None,
                // An open that fails is logged by the store once per episode.
                Err(e) => {
                    tracing::debug!(webhook_id = %webhook.id, error = %e, "cannot read the due index");
                    None
                }
            },
        };
        if earliest.is_some_and(|at| at <= horizon) {
            due.push(webhook);
        }
    }
    let webhooks = due;
    let mut backlog = false;
    let mut busy = s.admission().targets_with_waiting();
    // A paused target's rows wait where they are; resuming it wakes the sweeper.
    busy.extend(s.store.catalog().paused_targets());
    let count = webhooks.len();
    for (i, webhook) in webhooks.into_iter().enumerate() {
        if s.stopping() {
            return false;
        }
        let room = s.queue.room();
        if room == 0 {
            return true;
        }
        // A fair share of what is left; the last webhooks get whatever the others left.
        let share = room.div_ceil(count - i);
        let store = match s.store.events(webhook.id) {
            Ok(store) => store,
            // Every open file is in use: swept on a later pass.
            Err(StoreError::Busy) => {
                backlog = true;
                continue;
            }
            // Logged by the store once per episode, and shown by the healthcheck.
            Err(e) => {
                tracing::debug!(webhook_id = %webhook.id, error = %e, "cannot open event file");
                continue;
            }
        };
        // Scan a bit past the share: some rows are in memory already and get skipped.
        let limit = share + s.queue.claims().len().min(share * 4);
        let rows = match store.due_before(horizon, limit, &busy) {
            Ok(rows) => rows,
            // Being reopened after a failed write, which its writer has logged.
            Err(StoreError::Unavailable) => continue,
            Err(e) => {
                tracing::error!(webhook_id = %webhook.id, error = %e, "due index scan failed");
                continue;
            }
        };
        let scanned = rows.len();
        let queued = requeue(s, &store, &mut rows.into(), share);
        backlog |= queued >= share && scanned > queued;
    }
    backlog
}

/// Most due rows read for one target's recovery; beyond them, deliveries wait out their
/// own backoff. A breaker opens after a handful of failures and then spends attempts only
/// on probes, so a recovered target usually has about one backed-off delivery per probe
/// (one per cooldown) plus the threshold; deferred deliveries are not counted (see
/// `Recoveries::requeue`).
const MAX_RECOVERY_ROWS: usize = 10_000;

/// Per pass, a recovered target gets this many tasks per `max_in_flight` slot: enough to
/// keep it busy until the next pass, not so many that they bounce off a full waiting list.
const RECOVERY_TASKS_PER_SLOT: usize = 8;

/// The due rows of targets whose breaker closed after an outage (`SweepSignals::target_recovered`),
/// read once per recovery and queued over the next passes as room allows. Each row is
/// brought forward at most once, and only while it is unchanged (`requeue` re-reads it):
/// a delivery that fails again after the recovery waits out its new backoff.
#[derive(Default)]
struct Recoveries(HashMap<Uuid, VecDeque<DueRow>>);

impl Recoveries {
    /// Queues the next rows of each recovering target. Returns whether rows are left.
    fn requeue(&mut self, s: &Sweeper) -> bool {
        let catalog = s.store.catalog();
        // Rows due before the next pass are the regular sweep's (the deferrals waiting for
        // the breaker's reopen time are): a recovery is for the backed-off ones.
        let soon = (s.clock)() + s.interval.as_millis() as i64;
        for target_id in s.signals.take_recovered() {
            // A new recovery replaces an unfinished one: the rows are read again.
            self.0.remove(&target_id);
            let Some(target) = catalog.target(target_id) else {
                continue;
            };
            let rows = s
                .store
                .events(target.webhook_id)
                .and_then(|store| store.due_for_target(target_id, soon, MAX_RECOVERY_ROWS));
            match rows {
                Ok(rows) => {
                    self.0.insert(target_id, rows.into());
                }
                Err(e) => {
                    tracing::error!(target_id = %target_id, error = %e, "cannot read a recovered target's due rows");
                }
            }
        }
        let mut left = false;
        self.0.retain(|&target_id, rows| {
            // Re-opened since, or paused: its deliveries wait for the next recovery, or for
            // the regular sweep after the resume.
            if !s.admission().breaker_closed(target_id) || catalog.is_paused(target_id) {
                return false;
            }
            // A deleted target's deliveries are failed by the workers as they come due.
            let Some(target) = catalog.target(target_id) else {
                return false;
            };
            let slots = match &target.kind {
                TargetKind::Http(cfg) => cfg.max_in_flight.max(1) as usize,
                _ => 1,
            };
            let room = s.queue.room();
            let share = (room / 2).min(slots * RECOVERY_TASKS_PER_SLOT);
            if share > 0 {
                let store = match s.store.events(target.webhook_id) {
                    Ok(store) => store,
                    Err(e) => {
                        tracing::debug!(webhook_id = %target.webhook_id, error = %e, "cannot open event file");
                        return false;
                    }
                };
                let queued = requeue(s, &store, rows, share);
                if queued > 0 {
                    tracing::debug!(target_id = %target_id, queued, "recovered target: retries brought forward");
                }
            }
            let keep = !rows.is_empty();
            left |= keep;
            keep
        });
        left
    }
}

/// Takes rows from the front of `rows` and queues up to `share` of those that nobody holds
/// in memory and that are unchanged since they were read (the others are skipped and count
/// against nothing); returns how many. Stops at a full queue, leaving the rest in `rows`.
fn requeue(
    s: &Sweeper,
    store: &Arc<EventStore>,
    rows: &mut VecDeque<DueRow>,
    share: usize,
) -> usize {
    let catalog = s.store.catalog();
    let mut payloads: HashMap<Uuid, Arc<EventPayload>> = HashMap::new();
    let mut queued = 0;
    while queued < share && s.queue.room() > 0 {
        let Some(row) = rows.pop_front() else { break };
        if !s.queue.claims().claim(row.delivery_id) {
            continue;
        }
        let task = match load_task(store, &row, &mut payloads, &catalog) {
            Ok(Some(task)) => task,
            Ok(None) => {
                s.queue.claims().release(row.delivery_id);
                continue;
            }
            Err(e) => {
                tracing::error!(delivery_id = %row.delivery_id, error = %e, "cannot load due delivery");
                s.queue.claims().release(row.delivery_id);
                continue;
            }
        };
        let task = match task {
            Loaded::Task(task) => task,
            Loaded::Orphan(delivery) => {
                fail_orphan(s, store, delivery);
                continue;
            }
        };
        if !s.queue.enqueue_claimed(task) {
            break;
        }
        queued += 1;
    }
    queued
}

enum Loaded {
    Task(DeliveryTask),
    /// The delivery's event is gone (removed between redelivery and retention).
    Orphan(Delivery),
}

/// Re-reads the claimed row's delivery and builds its task. Reading AFTER claiming matters:
/// a worker may have finished the delivery between the scan and the claim, and only a read
/// begun after the claim is sure to see that commit (I5). `None`: nothing to do.
fn load_task(
    store: &EventStore,
    row: &DueRow,
    payloads: &mut HashMap<Uuid, Arc<EventPayload>>,
    catalog: &crate::store::Catalog,
) -> Result<Option<Loaded>, StoreError> {
    let delivery = match store.delivery(row.event_id, row.delivery_id)? {
        Some(d) if !d.status.is_terminal() && d.next_attempt_at == Some(row.due_at) => d,
        _ => return Ok(None),
    };
    let payload = match payloads.get(&row.event_id) {
        Some(p) => p.clone(),
        None => match store.event_with_small_body(row.event_id, MAX_INLINE_BODY)? {
            Some((event, body)) => {
                // A large body is not read here (None): the worker reads it when it sends.
                let p = Arc::new(EventPayload::new(&event, body.map(Into::into)));
                payloads.insert(row.event_id, p.clone());
                p
            }
            None => return Ok(Some(Loaded::Orphan(delivery))),
        },
    };
    // A deleted target still gets a task: the worker records why it failed.
    let target = catalog.target(row.target_id).cloned().unwrap_or_else(|| {
        Arc::new(Target {
            id: row.target_id,
            webhook_id: store.webhook_id(),
            name: "(deleted)".into(),
            active: false,
            kind: TargetKind::Database,
            created_at: 0,
            filter: None,
        })
    });
    Ok(Some(Loaded::Task(DeliveryTask {
        webhook_id: store.webhook_id(),
        target,
        event: payload,
        delivery,
    })))
}

/// Records a terminal failure for a delivery whose event no longer exists, so its due row
/// goes (I2) instead of being found again every pass.
fn fail_orphan(s: &Sweeper, store: &EventStore, delivery: Delivery) {
    let id = delivery.id;
    let now = (s.clock)();
    let previous_due = delivery.next_attempt_at;
    let attempt = delivery.attempts + 1;
    let failed = Delivery {
        status: DeliveryStatus::Failed,
        attempts: attempt,
        next_attempt_at: None,
        ..delivery
    };
    let write = AttemptWrite {
        delivery: failed,
        previous_due,
        result: Some(DeliveryResult {
            delivery_id: id,
            attempt,
            started_at: now,
            duration_us: 0,
            status_code: None,
            error: Some("event no longer stored".into()),
            response_body: Vec::new(),
            success: false,
            exchange: Default::default(),
        }),
    };
    let notice = Notice::message(&s.commits, AfterCommit::Release(id));
    // A refused write fires the notice too, which releases the claim.
    let _refused = store.submit(WriteOp::Attempt(write), notice);
}

fn publish_depths(s: &Sweeper) {
    let (parked, in_flight) = {
        let a = s.admission();
        (a.parked(), a.in_flight())
    };
    metrics::gauge!(m::QUEUE_DEPTH, "queue" => "delivery").set(s.queue.len() as f64);
    metrics::gauge!(m::QUEUE_DEPTH, "queue" => "parked").set(parked as f64);
    metrics::gauge!(m::QUEUE_DEPTH, "queue" => "in_flight").set(in_flight as f64);
    metrics::gauge!(m::QUEUE_DEPTH, "queue" => "claimed").set(s.queue.claims().len() as f64);
}

/// The `due_index_rows` gauge per webhook: the backlog, read as a row count (no scan) from
/// files that are open anyway, at most once a second and only when metrics are on.
#[derive(Default)]
struct DueGauges {
    published: HashSet<Uuid>,
    last: Option<std::time::Instant>,
}

impl DueGauges {
    fn publish(&mut self, s: &Sweeper) {
        let now = std::time::Instant::now();
        if !m::enabled()
            || self
                .last
                .is_some_and(|t| now - t < std::time::Duration::from_secs(1))
        {
            return;
        }
        self.last = Some(now);
        let mut current = HashSet::new();
        for webhook in s.store.catalog().webhooks() {
            if let Some(store) = s.store.events_if_open(webhook.id)
                && let Ok(rows) = store.due_count()
            {
                metrics::gauge!(m::DUE_ROWS, "webhook" => webhook.id.to_string()).set(rows as f64);
                current.insert(webhook.id);
            }
        }
        // A deleted webhook has no backlog: say so once rather than repeat its last value.
        for gone in self.published.difference(&current) {
            metrics::gauge!(m::DUE_ROWS, "webhook" => gone.to_string()).set(0.0);
        }
        self.published = current;
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicI64, Ordering};

    use bytes::Bytes;

    use super::*;
    use crate::delivery::admission::Limits;
    use crate::delivery::queue::Claims;
    use crate::model::{Entrypoint, Event, Verification, Webhook, now_ms};
    use crate::store::NewEvent;

    const WINDOW: Duration = Duration::from_secs(30);

    /// A sweeper over a real store with one webhook and one target, on a clock the test
    /// moves.
    fn sweeper(dir: &std::path::Path, clock: Arc<AtomicI64>) -> (Sweeper, Receiver<DeliveryTask>) {
        let store = Arc::new(Store::open(dir).unwrap());
        let (queue, queue_rx) = TaskQueue::new(100, Arc::new(Claims::default()));
        let (stop, _stop_tx) = StopSignal::new();
        let (commits, _inbox) = crossbeam_channel::bounded(10);
        let admission = Admission::new(Limits {
            concurrency: 10,
            body_budget: 1 << 20,
            parked_capacity: 10,
            breaker_threshold: 5,
            breaker_cooldown: WINDOW,
        });
        let sweeper = Sweeper {
            store,
            queue,
            admission: Arc::new(Mutex::new(admission)),
            signals: Arc::default(),
            commits,
            stop,
            interval: Duration::from_secs(1),
            recovery_window: WINDOW,
            clock: Arc::new(move || clock.load(Ordering::SeqCst)),
        };
        (sweeper, queue_rx)
    }

    /// Stores an event whose one delivery to `target_id` is due at `due`; returns its id.
    fn due_at(store: &Store, webhook_id: Uuid, target_id: Uuid, due: Millis) -> Uuid {
        let event = Event {
            id: Uuid::now_v7(),
            entrypoint_id: Uuid::nil(),
            received_at: due,
            method: "POST".into(),
            path: "/".into(),
            headers: vec![],
            content_type: None,
            remote_addr: "127.0.0.1".into(),
            body_len: 2,
        };
        let mut delivery = Delivery::pending(event.id, target_id, due);
        delivery.status = DeliveryStatus::Retrying;
        let id = delivery.id;
        store
            .events(webhook_id)
            .unwrap()
            .write_blocking(WriteOp::Ingest(NewEvent {
                event,
                body: Bytes::from_static(b"{}"),
                deliveries: vec![delivery],
                dedupe: None,
            }))
            .unwrap();
        id
    }

    fn queued(rx: &Receiver<DeliveryTask>) -> HashSet<Uuid> {
        rx.try_iter().map(|t| t.delivery.id).collect()
    }

    #[test]
    fn rows_come_due_by_the_clock_and_the_first_cooldown_counts_as_now() {
        let dir = tempfile::tempdir().unwrap();
        let t0 = now_ms();
        let clock = Arc::new(AtomicI64::new(t0));
        let (s, rx) = sweeper(dir.path(), clock.clone());
        let webhook = Webhook {
            id: Uuid::now_v7(),
            name: "w".into(),
            description: String::new(),
            retention_days: 0,
            created_at: t0,
            verification: Verification::None,
            dedupe: None,
        };
        let entrypoint = Entrypoint {
            id: Uuid::now_v7(),
            webhook_id: webhook.id,
            description: String::new(),
            active: true,
            created_at: t0,
        };
        s.store.main.create_webhook(&webhook, &entrypoint).unwrap();
        let target = Target {
            id: Uuid::now_v7(),
            webhook_id: webhook.id,
            name: "log".into(),
            active: true,
            kind: TargetKind::Log,
            created_at: t0,
            filter: None,
        };
        s.store.main.insert_target(&target).unwrap();
        let overdue = due_at(&s.store, webhook.id, target.id, t0 - 1_000);
        let within_window = due_at(&s.store, webhook.id, target.id, t0 + 10_000);
        let later = due_at(&s.store, webhook.id, target.id, t0 + 60_000);

        // At start, whatever comes due within the first cooldown is due now.
        let mut passes = s.first_pass();
        s.pass(&mut passes);
        assert_eq!(queued(&rx), HashSet::from([overdue, within_window]));
        // Queued rows are claimed: a second pass does not queue them again.
        clock.store(t0 + 1_000, Ordering::SeqCst);
        s.pass(&mut passes);
        assert!(queued(&rx).is_empty());
        // The last one only when the clock reaches it.
        clock.store(t0 + 59_999, Ordering::SeqCst);
        s.pass(&mut passes);
        assert!(queued(&rx).is_empty());
        clock.store(t0 + 60_000, Ordering::SeqCst);
        s.pass(&mut passes);
        assert_eq!(queued(&rx), HashSet::from([later]));
        s.store.close();
    }
}
