//! The retry scheduler: ONE thread holding a bounded min-heap of (due time, task). When a
//! retry comes due it goes to the delivery queue. When the heap is full, or the queue is,
//! the task leaves memory and the due index alone carries it (the sweeper finds it). The
//! heap also holds claims to be given back later (`release_later`).
//!
//! The heap's rules live in [`RetryHeap`], which takes the time as an argument.

use std::cmp::{Ordering as CmpOrdering, Reverse};
use std::collections::BinaryHeap;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use crossbeam_channel::{Receiver, Sender};
use uuid::Uuid;

use super::queue::{Claims, StopSignal, TaskQueue};
use super::task::DeliveryTask;
use crate::metrics as m;
use crate::model::{Millis, now_ms};

/// A message to the scheduler thread.
enum SchedulerMsg {
    /// Act on this (claimed) item at this time.
    At(Millis, Item),
    /// This target's breaker closed after an outage: its retries are due now.
    Recovered(Uuid),
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

/// The handle through which the rest of the engine hands the scheduler its items.
#[derive(Clone)]
pub(super) struct Scheduler {
    tx: Sender<SchedulerMsg>,
    claims: Arc<Claims>,
    stop: StopSignal,
    /// Entries in the heap, as last published by the thread.
    depth: Arc<AtomicUsize>,
}

impl Scheduler {
    /// Starts nothing: returns the handle and the thread's body, to be run on its thread.
    pub(super) fn new(
        capacity: usize,
        queue: TaskQueue,
        stop: StopSignal,
    ) -> (Scheduler, impl FnOnce() + Send + 'static) {
        let (tx, inbox) = crossbeam_channel::bounded(1024);
        let depth = Arc::new(AtomicUsize::new(0));
        let handle = Scheduler {
            tx,
            claims: queue.claims().clone(),
            stop: stop.clone(),
            depth: depth.clone(),
        };
        let body = move || run(RetryHeap::new(capacity), &inbox, &queue, &stop, &depth);
        (handle, body)
    }

    /// Entries waiting in the heap.
    pub(super) fn depth(&self) -> usize {
        self.depth.load(Ordering::Relaxed)
    }

    /// Hands a claimed task over, to be queued at `due`; never blocks (a full inbox means
    /// the due index takes over).
    pub(super) fn schedule(&self, due: Millis, task: DeliveryTask) {
        self.send(due, Item::Task(task));
    }

    /// Keeps a delivery claimed (so the sweeper leaves it alone) until `due`, then
    /// releases it to the due index; never blocks (a full inbox or heap releases it now).
    pub(super) fn release_later(&self, due: Millis, delivery_id: Uuid) {
        self.send(due, Item::Release(delivery_id));
    }

    /// A target's breaker closed: its entries are due now. A blocking send, in order behind
    /// every item sent before it; the scheduler thread never waits for its senders, and
    /// once it has stopped the send fails at once.
    pub(super) fn recovered(&self, target_id: Uuid) {
        let _stopped = self.tx.send(SchedulerMsg::Recovered(target_id));
    }

    /// Hands `item` to the thread, or, when stopping or its inbox is full, releases the
    /// claim now: the due index takes over.
    fn send(&self, due: Millis, item: Item) {
        let refused = if self.stop.stopping() {
            Some(item)
        } else {
            match self.tx.try_send(SchedulerMsg::At(due, item)) {
                Ok(()) => None,
                Err(e) => match e.into_inner() {
                    SchedulerMsg::At(_, item) => Some(item),
                    SchedulerMsg::Recovered(_) => None,
                },
            }
        };
        if let Some(item) = refused {
            self.claims.release(item.delivery_id());
        }
    }
}

struct Entry {
    due: Millis,
    seq: u64,
    item: Item,
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

/// A bounded min-heap of items by due time (ties in arrival order).
pub(super) struct RetryHeap {
    heap: BinaryHeap<Reverse<Entry>>,
    seq: u64,
    capacity: usize,
}

impl RetryHeap {
    /// An empty heap of at most `capacity` items.
    pub(super) fn new(capacity: usize) -> RetryHeap {
        RetryHeap {
            heap: BinaryHeap::new(),
            seq: 0,
            capacity,
        }
    }

    /// Adds an item; a full heap hands it back (boxed: the refusal is the rare path, and
    /// an item is a whole task).
    pub(super) fn push(&mut self, due: Millis, item: Item) -> Result<(), Box<Item>> {
        if self.heap.len() >= self.capacity {
            return Err(Box::new(item));
        }
        self.seq += 1;
        self.heap.push(Reverse(Entry {
            due,
            seq: self.seq,
            item,
        }));
        Ok(())
    }

    /// Makes every task of `target_id` due by `now`.
    pub(super) fn bring_forward(&mut self, target_id: Uuid, now: Millis) {
        let heap = std::mem::take(&mut self.heap);
        self.heap = heap
            .into_iter()
            .map(|Reverse(mut e)| {
                if matches!(&e.item, Item::Task(t) if t.target.id == target_id) {
                    e.due = e.due.min(now);
                }
                Reverse(e)
            })
            .collect();
    }

    /// Takes the next item due at or before `now`.
    pub(super) fn pop_due(&mut self, now: Millis) -> Option<Item> {
        if self.heap.peek().is_some_and(|Reverse(e)| e.due <= now) {
            self.heap.pop().map(|Reverse(e)| e.item)
        } else {
            None
        }
    }

    /// How long from `now` until the next item is due (`None`: empty).
    pub(super) fn wait(&self, now: Millis) -> Option<Duration> {
        self.heap
            .peek()
            .map(|Reverse(e)| Duration::from_millis((e.due - now).max(0) as u64))
    }

    /// Items held.
    pub(super) fn len(&self) -> usize {
        self.heap.len()
    }
}

fn run(
    mut heap: RetryHeap,
    inbox: &Receiver<SchedulerMsg>,
    queue: &TaskQueue,
    stop: &StopSignal,
    depth: &AtomicUsize,
) {
    loop {
        let wait = heap.wait(now_ms()).unwrap_or(Duration::from_secs(1));
        crossbeam_channel::select! {
            recv(inbox) -> msg => match msg {
                Ok(SchedulerMsg::At(due, item)) => {
                    if let Err(item) = heap.push(due, item) {
                        queue.claims().release(item.delivery_id());
                    }
                }
                Ok(SchedulerMsg::Recovered(target_id)) => heap.bring_forward(target_id, now_ms()),
                Err(_) => return,
            },
            recv(stop.rx()) -> _ => return,
            default(wait) => {}
        }
        let now = now_ms();
        while let Some(item) = heap.pop_due(now) {
            match item {
                Item::Task(task) => {
                    queue.enqueue_claimed(task);
                }
                Item::Release(id) => queue.claims().release(id),
            }
        }
        depth.store(heap.len(), Ordering::Relaxed);
        metrics::gauge!(m::QUEUE_DEPTH, "queue" => "scheduler").set(heap.len() as f64);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ids(heap: &mut RetryHeap, now: Millis) -> Vec<Uuid> {
        std::iter::from_fn(|| heap.pop_due(now))
            .map(|i| i.delivery_id())
            .collect()
    }

    #[test]
    fn items_come_due_in_time_order_and_not_before() {
        let mut heap = RetryHeap::new(10);
        let (a, b, c) = (Uuid::from_u128(1), Uuid::from_u128(2), Uuid::from_u128(3));
        heap.push(2_000, Item::Release(a)).ok();
        heap.push(1_000, Item::Release(b)).ok();
        heap.push(1_000, Item::Release(c)).ok();
        assert_eq!(heap.wait(500), Some(Duration::from_millis(500)));
        assert!(ids(&mut heap, 999).is_empty());
        // Equal due times keep their arrival order.
        assert_eq!(ids(&mut heap, 1_000), [b, c]);
        assert_eq!(heap.wait(1_500), Some(Duration::from_millis(500)));
        assert_eq!(heap.wait(2_500), Some(Duration::ZERO));
        assert_eq!(ids(&mut heap, 2_500), [a]);
        assert_eq!(heap.wait(2_500), None);
    }

    #[test]
    fn a_recovered_target_s_entries_come_due_now_and_no_others() {
        use crate::delivery::task::testing::{target, task};
        let (back, still_down) = (target(1), target(2));
        let mut heap = RetryHeap::new(10);
        let recovered = task(&back, 0);
        let other = task(&still_down, 0);
        let recovered_id = recovered.delivery.id;
        heap.push(60_000, Item::Task(recovered)).ok();
        heap.push(60_000, Item::Task(other)).ok();
        assert!(ids(&mut heap, 1_000).is_empty());
        heap.bring_forward(back.id, 1_000);
        assert_eq!(ids(&mut heap, 1_000), [recovered_id]);
        assert_eq!(heap.len(), 1);
        assert_eq!(heap.wait(1_000), Some(Duration::from_millis(59_000)));
    }

    #[test]
    fn a_full_heap_hands_the_item_back() {
        let mut heap = RetryHeap::new(1);
        assert!(heap.push(1, Item::Release(Uuid::from_u128(1))).is_ok());
        let refused = heap.push(1, Item::Release(Uuid::from_u128(2)));
        assert!(
            matches!(refused.map_err(|i| *i), Err(Item::Release(id)) if id == Uuid::from_u128(2))
        );
        assert_eq!(heap.len(), 1);
    }
}
