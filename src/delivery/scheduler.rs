//! The retry scheduler: ONE thread holding a bounded min-heap of (due time, task). When a
//! retry comes due it goes to the delivery queue. When the heap is full, or the queue is,
//! the task leaves memory and the due index alone carries it (the sweeper finds it). The
//! heap also holds claims to be given back later (`release_later`).

use std::cmp::{Ordering as CmpOrdering, Reverse};
use std::collections::BinaryHeap;
use std::sync::atomic::Ordering;
use std::time::Duration;

use crossbeam_channel::Receiver;
use uuid::Uuid;

use super::engine::Shared;
use super::task::DeliveryTask;
use crate::metrics as m;
use crate::model::{Millis, now_ms};

/// A message to the scheduler thread.
pub(super) enum SchedulerMsg {
    /// Act on this (claimed) item at this time.
    At(Millis, Item),
    /// This target's breaker closed after an outage: its retries are due now.
    Recovered(Uuid),
}

struct Entry {
    due: Millis,
    seq: u64,
    item: Item,
}

/// What comes due.
pub(super) enum Item {
    /// Hand this task to the delivery queue.
    Task(DeliveryTask),
    /// Release this delivery's claim, leaving it to the sweeper, which re-reads its stored
    /// state.
    Release(Uuid),
}

impl Item {
    fn delivery_id(&self) -> Uuid {
        match self {
            Item::Task(task) => task.delivery.id,
            Item::Release(id) => *id,
        }
    }
}

impl PartialEq for Entry {
    fn eq(&self, other: &Self) -> bool {
        (self.due, self.seq) == (other.due, other.seq)
    }
}
impl Eq for Entry {}
impl PartialOrd for Entry {
    fn partial_cmp(&self, other: &Self) -> Option<CmpOrdering> {
        Some(self.cmp(other))
    }
}
impl Ord for Entry {
    fn cmp(&self, other: &Self) -> CmpOrdering {
        (self.due, self.seq).cmp(&(other.due, other.seq))
    }
}

/// Hands a claimed task to the scheduler; never blocks (a full inbox means the due index
/// takes over).
pub(super) fn schedule(s: &Shared, due: Millis, task: DeliveryTask) {
    send(s, due, Item::Task(task));
}

/// Keeps a delivery claimed (so the sweeper leaves it alone) until `due`, then releases it
/// to the due index; never blocks (a full inbox or heap releases it now).
pub(super) fn release_later(s: &Shared, due: Millis, delivery_id: Uuid) {
    send(s, due, Item::Release(delivery_id));
}

/// Hands `item` to the scheduler thread, or, when stopping or its inbox is full, releases
/// the claim now: the due index takes over.
fn send(s: &Shared, due: Millis, item: Item) {
    let refused = if s.stopping() {
        Some(item)
    } else {
        match s.scheduler_tx.try_send(SchedulerMsg::At(due, item)) {
            Ok(()) => None,
            Err(e) => match e.into_inner() {
                SchedulerMsg::At(_, item) => Some(item),
                SchedulerMsg::Recovered(_) => None,
            },
        }
    };
    if let Some(item) = refused {
        s.claims.release(item.delivery_id());
    }
}

pub(super) fn run(s: &Shared, inbox: &Receiver<SchedulerMsg>) {
    let mut heap: BinaryHeap<Reverse<Entry>> = BinaryHeap::new();
    let mut seq = 0u64;
    loop {
        let wait = heap
            .peek()
            .map(|Reverse(e)| Duration::from_millis((e.due - now_ms()).max(0) as u64))
            .unwrap_or(Duration::from_secs(1));
        crossbeam_channel::select! {
            recv(inbox) -> msg => match msg {
                Ok(SchedulerMsg::At(due, item)) => {
                    if heap.len() >= s.config.scheduler_capacity {
                        s.claims.release(item.delivery_id());
                    } else {
                        seq += 1;
                        heap.push(Reverse(Entry { due, seq, item }));
                    }
                }
                Ok(SchedulerMsg::Recovered(target_id)) => {
                    let now = now_ms();
                    heap = heap
                        .into_iter()
                        .map(|Reverse(mut e)| {
                            if matches!(&e.item, Item::Task(t) if t.target.id == target_id) {
                                e.due = e.due.min(now);
                            }
                            Reverse(e)
                        })
                        .collect();
                }
                Err(_) => return,
            },
            recv(s.stop_rx) -> _ => return,
            default(wait) => {}
        }
        let now = now_ms();
        while heap.peek().is_some_and(|Reverse(e)| e.due <= now) {
            match heap.pop().map(|Reverse(e)| e.item) {
                Some(Item::Task(task)) => {
                    s.enqueue_claimed(task);
                }
                Some(Item::Release(id)) => s.claims.release(id),
                None => {}
            }
        }
        s.scheduled.store(heap.len(), Ordering::Relaxed);
        metrics::gauge!(m::QUEUE_DEPTH, "queue" => "scheduler").set(heap.len() as f64);
    }
}
