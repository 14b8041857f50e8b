//! The delivery queue and the claim set, the two things every producer of tasks (ingest's
//! dispatch, the scheduler, the sweeper) shares with the delivery threads.

use std::collections::HashSet;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};

use crossbeam_channel::{Receiver, Sender, TrySendError};
use uuid::Uuid;

use super::task::DeliveryTask;
use crate::model::{Millis, now_ms};

/// The time source of an engine thread whose rules depend on the wall clock, so tests can
/// drive those rules without sleeping.
pub(super) type Clock = Arc<dyn Fn() -> Millis + Send + Sync>;

/// The real clock.
pub(super) fn system_clock() -> Clock {
    Arc::new(now_ms)
}

/// The set of delivery ids in memory. Whoever inserts an id owns the delivery until it
/// releases it; the sweeper and dispatch only enqueue what they could claim (see
/// "one copy in memory" in ARCHITECTURE.md).
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
    /// Gives back every task's id.
    pub(super) fn release_all(&self, tasks: impl IntoIterator<Item = DeliveryTask>) {
        let mut claims = self.lock();
        for task in tasks {
            claims.remove(&task.delivery.id);
        }
    }
    /// Ids in memory.
    pub(super) fn len(&self) -> usize {
        self.lock().len()
    }
}

/// The sending side of the bounded delivery queue, with the claims it enforces.
#[derive(Clone)]
pub(super) struct TaskQueue {
    tx: Sender<DeliveryTask>,
    claims: Arc<Claims>,
    capacity: usize,
}

impl TaskQueue {
    /// A queue of `capacity` tasks and its receiving end.
    pub(super) fn new(capacity: usize, claims: Arc<Claims>) -> (TaskQueue, Receiver<DeliveryTask>) {
        let (tx, rx) = crossbeam_channel::bounded(capacity);
        (
            TaskQueue {
                tx,
                claims,
                capacity,
            },
            rx,
        )
    }

    /// The claim set.
    pub(super) fn claims(&self) -> &Arc<Claims> {
        &self.claims
    }

    /// Tasks queued.
    pub(super) fn len(&self) -> usize {
        self.tx.len()
    }

    /// Free places.
    pub(super) fn room(&self) -> usize {
        self.capacity.saturating_sub(self.tx.len())
    }

    /// Queues a task this caller already owns; on a full queue, releases it to the index.
    pub(super) fn enqueue_claimed(&self, task: DeliveryTask) -> bool {
        match self.tx.try_send(task) {
            Ok(()) => true,
            Err(TrySendError::Full(t) | TrySendError::Disconnected(t)) => {
                self.claims.release(t.delivery.id);
                false
            }
        }
    }
}

/// Shutdown as every engine thread sees it: a flag to poll, and a channel that disconnects
/// (for threads that wait in a `select`).
#[derive(Clone)]
pub(super) struct StopSignal {
    flag: Arc<AtomicBool>,
    rx: Receiver<()>,
}

impl StopSignal {
    /// A signal and the sender whose drop disconnects it.
    pub(super) fn new() -> (StopSignal, Sender<()>) {
        let (tx, rx) = crossbeam_channel::bounded(0);
        (
            StopSignal {
                flag: Arc::default(),
                rx,
            },
            tx,
        )
    }

    /// Raises the flag (the caller then drops the sender).
    pub(super) fn raise(&self) {
        self.flag.store(true, Ordering::SeqCst);
    }

    /// Whether shutdown has begun.
    pub(super) fn stopping(&self) -> bool {
        self.flag.load(Ordering::Relaxed)
    }

    /// Disconnects when shutdown begins.
    pub(super) fn rx(&self) -> &Receiver<()> {
        &self.rx
    }
}
