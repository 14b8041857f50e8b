//! [`Engine`]: creates the queues and threads of the delivery side and holds what they
//! share.
//!
//! ```text
//!  ingest ──try_send──▶ [delivery queue] ──▶ delivery thread × N ──spawn──▶ exchange (tokio)
//!  sweeper ─try_send──▶        ▲                  ▲    │ result              │
//!  scheduler ─try_send─────────┘      [outcomes] ─┘    ▼                     │
//!      ▲                                  ▲     event writer (group commit)  │
//!      └──────── retry (after commit) ────┼──────────┘                       │
//!                                         └──────────────────────────────────┘
//! ```

use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use crossbeam_channel::{Receiver, Sender};
use uuid::Uuid;

use super::admission::{Admission, Limits};
use super::committed::{self, AfterCommit, CommitSender, Committer};
use super::pruner;
use super::queue::{Claims, StopSignal, TaskQueue, system_clock};
use super::scheduler::Scheduler;
use super::ssrf::{GuardedResolver, NetworkPolicy};
use super::sweeper::{SweepSignals, Sweeper};
use super::task::DeliveryTask;
use super::worker::{self, Outcome};
use crate::config::EngineConfig;
use crate::live::LiveHub;
use crate::model::{Millis, now_ms};
use crate::store::{Notice, Store};

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
    /// Tasks waiting for a slot (their target's `max_in_flight`, or engine-wide room).
    pub parked: usize,
    /// Exchanges holding a slot: in flight, or their outcome not yet recorded.
    pub in_flight: usize,
    /// Delivery ids currently in memory anywhere.
    pub claimed: usize,
}

/// A target's circuit breaker as the UI shows it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BreakerStatus {
    /// Attempts flow.
    Closed,
    /// Attempts wait until this time (Unix ms).
    Open {
        /// When the next probe may go.
        until: Millis,
    },
    /// One probe is out and decides.
    HalfOpen,
}

/// What the engine knows of a target's health, in memory (since the process started).
/// When an attempt last failed is kept by the target's event file instead
/// (`EventStore::overview`), so a restart does not forget it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TargetHealth {
    /// Its breaker.
    pub breaker: BreakerStatus,
}

/// What the delivery threads share.
pub(super) struct Shared {
    pub(super) config: EngineConfig,
    pub(super) store: Arc<Store>,
    pub(super) queue: TaskQueue,
    pub(super) queue_rx: Receiver<DeliveryTask>,
    pub(super) claims: Arc<Claims>,
    pub(super) scheduler: Scheduler,
    pub(super) admission: Arc<Mutex<Admission>>,
    /// Where writers report the engine's commits.
    pub(super) commits: CommitSender,
    /// Exchanges report here. Its capacity is the engine-wide concurrency: an exchange
    /// holds its slot until its outcome is concluded, so a send never finds it full.
    pub(super) outcomes_tx: Sender<Outcome>,
    pub(super) outcomes_rx: Receiver<Outcome>,
    pub(super) client: reqwest::Client,
    pub(super) policy: NetworkPolicy,
    pub(super) runtime: tokio::runtime::Handle,
    pub(super) stop: StopSignal,
    pub(super) sweep: Arc<SweepSignals>,
    /// Viewers of webhooks, told of committed delivery changes.
    pub(super) live: Arc<LiveHub>,
    /// Dropped on shutdown, which disconnects `stop`.
    stop_tx: Mutex<Option<Sender<()>>>,
    threads: Mutex<Vec<JoinHandle<()>>>,
}

impl Engine {
    /// Starts the delivery threads, the scheduler, the sweeper (whose first pass is crash
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
        let claims: Arc<Claims> = Arc::default();
        let (queue, queue_rx) = TaskQueue::new(config.queue_capacity, claims.clone());
        let (stop, stop_tx) = StopSignal::new();
        let (scheduler, scheduler_body) =
            Scheduler::new(config.scheduler_capacity, queue.clone(), stop.clone());
        let concurrency = config.concurrency.max(1);
        let admission = Arc::new(Mutex::new(Admission::new(Limits {
            concurrency,
            body_budget: config.body_budget,
            parked_capacity: config.parked_capacity,
            breaker_threshold: config.breaker_threshold,
            breaker_cooldown: config.breaker_cooldown,
        })));
        let (outcomes_tx, outcomes_rx) = crossbeam_channel::bounded(concurrency);
        let sweep = Arc::new(SweepSignals::default());
        let (commits, inbox) = crossbeam_channel::bounded(committed::CAPACITY);
        let live = Arc::new(LiveHub::default());
        let committer = Committer {
            live: live.clone(),
            inbox,
            queue: queue.clone(),
            scheduler: scheduler.clone(),
            admission: admission.clone(),
            stop: stop.clone(),
        };
        let sweeper = Sweeper {
            store: store.clone(),
            queue: queue.clone(),
            admission: admission.clone(),
            signals: sweep.clone(),
            commits: commits.clone(),
            stop: stop.clone(),
            interval: config.sweep_interval,
            recovery_window: config.breaker_cooldown,
            clock: system_clock(),
        };
        let shared = Arc::new(Shared {
            config,
            store: store.clone(),
            queue,
            queue_rx,
            claims,
            scheduler,
            admission,
            commits,
            outcomes_tx,
            outcomes_rx,
            client,
            policy,
            runtime,
            stop: stop.clone(),
            sweep,
            live,
            stop_tx: Mutex::new(Some(stop_tx)),
            threads: Mutex::new(Vec::new()),
        });
        let mut threads = Vec::new();
        for i in 0..shared.config.workers.max(1) {
            let s = shared.clone();
            threads.push(spawn(format!("deliver-{i}"), move || worker::run(&s))?);
        }
        threads.push(spawn("scheduler".into(), scheduler_body)?);
        threads.push(spawn("committed".into(), move || committer.run())?);
        threads.push(spawn("sweeper".into(), move || sweeper.run())?);
        threads.push(spawn("pruner".into(), move || pruner::run(&store, &stop))?);
        *shared.threads.lock().unwrap_or_else(|p| p.into_inner()) = threads;
        Ok(Engine { shared })
    }

    /// Claims new deliveries about to be written and returns the notice that queues them
    /// once their write is committed, or gives them back if it fails. Claimed before the
    /// write, so the sweeper cannot queue a second copy of one meanwhile (one copy in
    /// memory). Never blocks: what does not fit in the queue stays in the due index, where
    /// the sweeper finds it.
    pub fn notice_for(&self, tasks: Vec<DeliveryTask>) -> Notice {
        if tasks.is_empty() {
            return Notice::default();
        }
        for task in &tasks {
            self.shared.claims.claim(task.delivery.id);
        }
        Notice::message(&self.shared.commits, AfterCommit::Dispatch(tasks))
    }

    /// A paused target was resumed: its deliveries waiting in the due index are due, so
    /// the sweeper looks now rather than at its next interval. (Pausing needs no call: the
    /// delivery threads and the sweeper read the catalog.)
    pub fn target_resumed(&self) {
        self.shared.sweep.wake();
    }

    /// Asks the sweeper for a pass now: deliveries were written to the due index without
    /// being queued (a bulk redelivery), and it queues them as room allows.
    pub fn sweep_now(&self) {
        self.shared.sweep.wake();
    }

    /// The health of every target whose breaker is not closed; any other target's is.
    pub fn target_health(&self) -> HashMap<Uuid, TargetHealth> {
        let (breakers, now) = {
            let admission = self.shared.lock_admission();
            (admission.breakers_not_closed(), Instant::now())
        };
        let wall = now_ms();
        breakers
            .into_iter()
            .map(|(id, until)| {
                let breaker = match until {
                    Some(until) => BreakerStatus::Open {
                        until: wall + until.saturating_duration_since(now).as_millis() as Millis,
                    },
                    None => BreakerStatus::HalfOpen,
                };
                (id, TargetHealth { breaker })
            })
            .collect()
    }

    /// The watchers of webhooks: ingest tells them of new events, the engine of delivery
    /// changes, the web layer streams both.
    pub fn live(&self) -> &Arc<LiveHub> {
        &self.shared.live
    }

    /// Current occupancy.
    pub fn stats(&self) -> EngineStats {
        self.shared.stats()
    }

    /// Stops taking work, lets exchanges in flight finish within the grace period, and
    /// joins the threads. Whatever is still queued is recovered from the due index next
    /// start.
    pub fn shutdown(&self) {
        let s = &self.shared;
        s.stop.raise();
        let waiting = s.lock_admission().close();
        s.claims.release_all(waiting);
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
                    in_flight = s.lock_admission().in_flight(),
                    "still busy at shutdown; unfinished deliveries are retried after restart"
                );
            }
        }
    }
}

fn spawn(name: String, f: impl FnOnce() + Send + 'static) -> std::io::Result<JoinHandle<()>> {
    std::thread::Builder::new().name(name).spawn(f)
}

impl Shared {
    pub(super) fn stats(&self) -> EngineStats {
        let (parked, in_flight) = {
            let a = self.lock_admission();
            (a.parked(), a.in_flight())
        };
        EngineStats {
            queued: self.queue.len(),
            scheduled: self.scheduler.depth(),
            parked,
            in_flight,
            claimed: self.claims.len(),
        }
    }

    pub(super) fn lock_admission(&self) -> MutexGuard<'_, Admission> {
        self.admission.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// Installs ring as the process's rustls provider (the only one compiled in). Idempotent:
/// a later call finds it installed, which is fine.
pub fn install_crypto_provider() {
    let _already_installed = rustls::crypto::ring::default_provider().install_default();
}
