//! What the engine does once a write it submitted is committed. Writers send an
//! [`AfterCommit`] message with the write's outcome (through a `store::Notice`), and ONE
//! thread acts on it. That thread never waits for a writer (it only queues, schedules and
//! releases claims), so a writer waiting for room in its channel always gets it, and no
//! engine code runs on a writer thread.

use std::sync::{Arc, Mutex};

use crossbeam_channel::{Receiver, Sender};
use uuid::Uuid;

use super::admission::Admission;
use super::queue::{StopSignal, TaskQueue};
use super::record::retry_later;
use super::scheduler::Scheduler;
use super::task::DeliveryTask;
use crate::live::{LiveDelivery, LiveHub, LiveUpdate};
use crate::model::{Millis, now_ms};
use crate::store::Committed;

/// Room for messages not yet acted on; a writer waits while it is full.
pub(super) const CAPACITY: usize = 4096;

/// A message from a writer, after a commit.
pub(super) enum AfterCommit {
    /// New deliveries (ingest, redelivery), claimed before their write was submitted:
    /// queue them, or give them back if the write failed.
    Dispatch(Vec<DeliveryTask>),
    /// An attempt or deferral was recorded; `task.delivery` is the delivery's new state:
    /// it waits for its next due time, or leaves memory.
    Recorded {
        /// The delivery, as now committed.
        task: DeliveryTask,
        /// A breaker deferral (no attempt was made).
        deferral: bool,
    },
    /// A delivery whose event is gone was failed: it leaves memory.
    Release(Uuid),
}

/// Where writers send the engine's messages.
pub(super) type CommitSender = Sender<(AfterCommit, Committed)>;

/// The thread that acts on [`AfterCommit`] messages, and what it needs.
pub(super) struct Committer {
    pub(super) inbox: Receiver<(AfterCommit, Committed)>,
    pub(super) queue: TaskQueue,
    pub(super) scheduler: Scheduler,
    pub(super) admission: Arc<Mutex<Admission>>,
    pub(super) stop: StopSignal,
    /// Told of each recorded attempt (after its commit; never waits).
    pub(super) live: Arc<LiveHub>,
}

impl Committer {
    /// Runs until shutdown; the inbox goes with it, so later sends fail at once.
    pub(super) fn run(self) {
        loop {
            crossbeam_channel::select! {
                recv(self.inbox) -> msg => match msg {
                    Ok((message, outcome)) => self.act(message, outcome),
                    Err(_) => return,
                },
                recv(self.stop.rx()) -> _ => return,
            }
        }
    }

    fn act(&self, message: AfterCommit, outcome: Committed) {
        let claims = self.queue.claims();
        match (message, outcome) {
            (AfterCommit::Dispatch(tasks), Ok(())) => {
                for task in tasks {
                    // A full queue releases it: the due index holds it.
                    self.queue.enqueue_claimed(task);
                }
            }
            (AfterCommit::Dispatch(tasks), Err(_)) => claims.release_all(tasks),
            (AfterCommit::Recorded { task, deferral }, Ok(())) => {
                if !deferral {
                    self.publish(&task);
                }
                match task.delivery.next_attempt_at {
                    Some(due) if deferral => self.schedule_deferral(due, task),
                    Some(due) => self.scheduler.schedule(due, task),
                    None => claims.release(task.delivery.id),
                }
            }
            // The due row still holds the previous state; the attempt may have reached the
            // receiver, so it is repeated only after a while. (The writer logs the file's
            // failure itself, once.)
            (AfterCommit::Recorded { task, .. }, Err(e)) => retry_later(
                &self.scheduler,
                task.delivery.id,
                &format!("recording the attempt: {e}"),
            ),
            (AfterCommit::Release(id), _) => claims.release(id),
        }
    }

    /// Tells the webhook's watchers, if any, of the delivery's committed state.
    fn publish(&self, task: &DeliveryTask) {
        if !self.live.watched(task.webhook_id) {
            return;
        }
        let d = &task.delivery;
        self.live.publish(
            task.webhook_id,
            LiveUpdate::Delivery(LiveDelivery {
                event_id: d.event_id,
                delivery_id: d.id,
                target_id: d.target_id,
                status: d.status.clone(),
                attempts: d.attempts,
                next_attempt_at: d.next_attempt_at,
            }),
        );
    }

    /// Schedules a delivery the breaker deferred: at `due`, or now if the breaker has
    /// closed since (a deferral committed while the closing probe was out). Decided under
    /// the admission lock, under which a closing breaker notifies the scheduler (see
    /// `worker::settle`), so a deferral cannot slip in after that notice and wait out a
    /// cooldown for nothing.
    fn schedule_deferral(&self, due: Millis, task: DeliveryTask) {
        let admission = self.admission.lock().unwrap_or_else(|p| p.into_inner());
        let due = if admission.breaker_closed(task.target.id) {
            due.min(now_ms())
        } else {
            due
        };
        self.scheduler.schedule(due, task);
        drop(admission);
    }
}
