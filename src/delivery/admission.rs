//! [`Admission`]: who may start an outgoing exchange now.
//!
//! Three limits hold at once: a target's `max_in_flight` (a hard cap, the half-open probe
//! included), the engine-wide `DELIVERY_CONCURRENCY`, and a byte budget for the bodies of
//! exchanges in flight. A task that finds its target's slots taken waits in that target's
//! list; one that finds only the engine-wide limits reached waits too, and its target
//! joins a ring of targets with ready work. Each freed engine-wide slot goes to the next
//! target of the ring, so service among ready targets is round robin: one target with a
//! large backlog cannot starve one with a single event, and a target at its own cap, slow,
//! hanging or behind an open breaker holds only its own slots.
//!
//! Pure bookkeeping: no threads, no I/O, and time is passed in, so every rule is unit-tested
//! without sleeping. The engine holds it under one mutex.

use std::collections::{HashMap, HashSet, VecDeque};
use std::time::{Duration, Instant};

use uuid::Uuid;

use super::breaker::{self, CircuitBreaker};
use super::task::DeliveryTask;

/// How many tasks a target may hold waiting per `max_in_flight` slot: enough to keep it
/// busy until the sweeper's next pass, few enough that one target's burst leaves waiting
/// room for the others.
const WAITING_PER_SLOT: usize = 8;

/// Engine-wide limits.
#[derive(Debug, Clone, Copy)]
pub(super) struct Limits {
    /// Exchanges in flight at once, all targets together.
    pub concurrency: usize,
    /// Body bytes of the exchanges in flight; a body larger than this still goes, alone.
    pub body_budget: u64,
    /// Tasks waiting for a slot, all targets together.
    pub parked_capacity: usize,
    /// Consecutive failures that open a breaker.
    pub breaker_threshold: u32,
    /// How long an open breaker holds attempts back.
    pub breaker_cooldown: Duration,
}

/// How a target is admitted, taken from its configuration at each offer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct TargetRules {
    /// Its hard cap on exchanges in flight.
    pub max_in_flight: u32,
    /// `Some` when a circuit breaker guards it: how long deliveries wait while its
    /// half-open probe is out (a little longer than the probe can take).
    pub probe_wait: Option<Duration>,
}

/// A task that holds its slots: its target's, one engine-wide, and its body's bytes. The
/// slots are given back by [`Admission::finish`], whatever became of the exchange.
#[derive(Debug)]
pub(super) struct Started {
    /// The delivery to attempt.
    pub task: DeliveryTask,
    /// Whether this is the breaker's half-open probe.
    pub probe: bool,
}

/// What became of an offered task.
#[derive(Debug)]
pub(super) enum Offer {
    /// Start it now.
    Start(Started),
    /// It waits for a slot; a later [`Finished`] starts it.
    Parked,
    /// No room to wait: the caller gives its claim back and the due index keeps it.
    Full(DeliveryTask),
    /// The breaker holds attempts back until `until`: the caller defers the task, spending
    /// no attempt. `released` were waiting and go back to the due index.
    Defer {
        /// The offered task.
        task: DeliveryTask,
        /// When the breaker may let an attempt through.
        until: Instant,
        /// Tasks that were waiting for this target.
        released: Vec<DeliveryTask>,
    },
}

/// A breaker changed state.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Transition {
    /// It opened: the target is failing.
    Opened,
    /// It closed after an outage: the target is back.
    Closed,
}

/// What follows from a finished exchange.
#[derive(Debug, Default)]
pub(super) struct Finished {
    /// Tasks that now hold slots: start them.
    pub start: Vec<Started>,
    /// Tasks that waited in vain (their target's breaker opened): give their claims back.
    pub release: Vec<DeliveryTask>,
    /// Tasks the breaker holds back, and until when.
    pub defer: Vec<(DeliveryTask, Instant)>,
    /// The finished target's breaker changed state.
    pub transition: Option<Transition>,
    /// The finished target's breaker state for the metric, when it has a breaker.
    pub breaker_gauge: Option<f64>,
    /// A target the sweeper passed over has no task waiting any more: wake the sweeper.
    pub wake_sweeper: bool,
}

struct TargetState {
    breaker: CircuitBreaker,
    rules: TargetRules,
    in_flight: u32,
    waiting: VecDeque<DeliveryTask>,
    /// In the ring of targets with ready work.
    in_ring: bool,
    /// The sweeper passed over this target's due rows because tasks were waiting; it
    /// wants a wake-up when they are gone.
    passed_over: bool,
}

impl TargetState {
    fn cap(&self) -> u32 {
        self.rules.max_in_flight.max(1)
    }

    fn has_own_slot(&self) -> bool {
        self.in_flight < self.cap()
    }

    /// Whether the breaker holds attempts back at `now`.
    fn held_back(&self, now: Instant) -> Option<Instant> {
        let wait = self.rules.probe_wait?;
        self.breaker.held_back(now, wait)
    }
}

/// Slots, waiting lists and breakers of every target (see the module documentation).
pub(super) struct Admission {
    limits: Limits,
    /// Exchanges holding an engine-wide slot (from start until `finish`).
    requests: usize,
    /// Body bytes of those exchanges.
    bytes: u64,
    /// Tasks in waiting lists.
    parked: usize,
    targets: HashMap<Uuid, TargetState>,
    /// Targets with waiting tasks and a slot of their own, in turn order. An entry can be
    /// stale (checked when taken); each target is in it at most once (`in_ring`).
    ring: VecDeque<Uuid>,
    /// Shutting down: nothing starts or waits any more.
    closed: bool,
}

impl Admission {
    /// Empty bookkeeping under `limits`.
    pub(super) fn new(limits: Limits) -> Admission {
        Admission {
            limits,
            requests: 0,
            bytes: 0,
            parked: 0,
            targets: HashMap::new(),
            ring: VecDeque::new(),
            closed: false,
        }
    }

    /// Exchanges holding slots.
    pub(super) fn in_flight(&self) -> usize {
        self.requests
    }

    /// Tasks waiting for a slot.
    pub(super) fn parked(&self) -> usize {
        self.parked
    }

    /// Offers a task of a target governed by `rules`.
    pub(super) fn offer(&mut self, task: DeliveryTask, rules: TargetRules, now: Instant) -> Offer {
        if self.closed {
            return Offer::Full(task);
        }
        let id = task.target.id;
        let limits = self.limits;
        let state = self.targets.entry(id).or_insert_with(|| TargetState {
            breaker: CircuitBreaker::new(limits.breaker_threshold, limits.breaker_cooldown),
            rules,
            in_flight: 0,
            waiting: VecDeque::new(),
            in_ring: false,
            passed_over: false,
        });
        state.rules = rules;
        if let Some(until) = state.held_back(now) {
            let released = drain(state, &mut self.parked);
            return Offer::Defer {
                task,
                until,
                released,
            };
        }
        let global_room = self.requests < limits.concurrency
            && fits(self.bytes, task.event.body_len, limits.body_budget);
        let first_in_line = state.has_own_slot() && state.waiting.is_empty();
        if first_in_line && self.ring.is_empty() && global_room {
            let body_len = task.event.body_len;
            return match take_slots(state, &mut self.requests, &mut self.bytes, body_len, now) {
                Ok(probe) => Offer::Start(Started { task, probe }),
                // Not reached: the breaker was asked above, with the same `now`.
                Err(until) => Offer::Defer {
                    task,
                    until,
                    released: Vec::new(),
                },
            };
        }
        let waiting_cap = state.cap() as usize * WAITING_PER_SLOT;
        if self.parked >= limits.parked_capacity || state.waiting.len() >= waiting_cap {
            return Offer::Full(task);
        }
        state.waiting.push_back(task);
        self.parked += 1;
        if state.has_own_slot() && !state.in_ring {
            state.in_ring = true;
            self.ring.push_back(id);
        }
        Offer::Parked
    }

    /// Gives back the slots of an exchange of `target_id` with `bytes` of body, feeds its
    /// breaker (`healthy`: `None` when nothing reached the receiver), and hands the freed
    /// slots on.
    pub(super) fn finish(
        &mut self,
        target_id: Uuid,
        bytes: u64,
        probe: bool,
        healthy: Option<bool>,
        now: Instant,
    ) -> Finished {
        let mut out = Finished::default();
        self.requests = self.requests.saturating_sub(1);
        self.bytes = self.bytes.saturating_sub(bytes);
        if let Some(state) = self.targets.get_mut(&target_id) {
            state.in_flight = state.in_flight.saturating_sub(1);
            if state.rules.probe_wait.is_some() {
                if let Some(healthy) = healthy {
                    let was_closed = state.breaker.is_closed();
                    state.breaker.record(healthy, probe, now);
                    out.transition = match (was_closed, state.breaker.is_closed()) {
                        (true, false) => Some(Transition::Opened),
                        (false, true) => Some(Transition::Closed),
                        _ => None,
                    };
                }
                out.breaker_gauge = Some(state.breaker.gauge());
            }
            if state.held_back(now).is_some() {
                // Waiting tasks would only be deferred one by one: back to the due index.
                out.release = drain(state, &mut self.parked);
                out.wake_sweeper |= std::mem::take(&mut state.passed_over);
            } else if !state.waiting.is_empty() && state.has_own_slot() && !state.in_ring {
                state.in_ring = true;
                self.ring.push_back(target_id);
            }
        }
        self.pump(now, &mut out);
        out
    }

    /// Hands engine-wide room to the targets of the ring, one task each per turn.
    fn pump(&mut self, now: Instant, out: &mut Finished) {
        while !self.closed && self.requests < self.limits.concurrency {
            let Some(id) = self.ring.pop_front() else {
                return;
            };
            let Some(state) = self.targets.get_mut(&id) else {
                continue;
            };
            state.in_ring = false;
            if !state.has_own_slot() {
                // Its own finish puts it back in the ring.
                continue;
            }
            let Some(head) = state.waiting.front() else {
                continue;
            };
            if !fits(self.bytes, head.event.body_len, self.limits.body_budget) {
                // Strict turns: the head waits for bytes to come back rather than being
                // overtaken forever by smaller bodies.
                state.in_ring = true;
                self.ring.push_front(id);
                return;
            }
            let Some(task) = state.waiting.pop_front() else {
                continue;
            };
            self.parked -= 1;
            let body_len = task.event.body_len;
            match take_slots(state, &mut self.requests, &mut self.bytes, body_len, now) {
                Ok(probe) => out.start.push(Started { task, probe }),
                Err(until) => {
                    out.defer.push((task, until));
                    out.release.extend(drain(state, &mut self.parked));
                }
            }
            if state.waiting.is_empty() {
                out.wake_sweeper |= std::mem::take(&mut state.passed_over);
            } else if state.has_own_slot() {
                state.in_ring = true;
                self.ring.push_back(id);
            }
        }
    }

    /// Whether the breaker of `target_id` lets attempts flow (a target never seen has
    /// never failed).
    pub(super) fn breaker_closed(&self, target_id: Uuid) -> bool {
        self.targets
            .get(&target_id)
            .is_none_or(|t| t.breaker.is_closed())
    }

    /// Every target whose breaker is not closed: `Some(until)` while open, `None` while
    /// half-open (a probe decides). One entry per target ever failing, so at most one per
    /// target.
    pub(super) fn breakers_not_closed(&self) -> HashMap<Uuid, Option<Instant>> {
        self.targets
            .iter()
            .filter(|(_, t)| !t.breaker.is_closed())
            .map(|(id, t)| (*id, t.breaker.open_until()))
            .collect()
    }

    /// Targets with tasks waiting: they have work in memory beyond what they can run, so
    /// the sweeper passes over their due rows (more tasks would only bounce off a full
    /// waiting list and fill every pass with the same rows). Each one named here sets
    /// `wake_sweeper` once its list runs dry.
    pub(super) fn targets_with_waiting(&mut self) -> HashSet<Uuid> {
        let mut busy = HashSet::new();
        for (id, state) in &mut self.targets {
            if !state.waiting.is_empty() {
                state.passed_over = true;
                busy.insert(*id);
            }
        }
        busy
    }

    /// Gives back every task waiting for `target_id` (it went inactive or was deleted);
    /// with `forget`, its state goes too once nothing of it is in flight.
    pub(super) fn release_target(&mut self, target_id: Uuid, forget: bool) -> Vec<DeliveryTask> {
        let Some(state) = self.targets.get_mut(&target_id) else {
            return Vec::new();
        };
        let released = drain(state, &mut self.parked);
        if forget && state.in_flight == 0 {
            self.targets.remove(&target_id);
        }
        released
    }

    /// Shutting down: every waiting task is given back, and nothing starts or waits from
    /// now on. Exchanges in flight still `finish`.
    pub(super) fn close(&mut self) -> Vec<DeliveryTask> {
        self.closed = true;
        self.ring.clear();
        let mut released = Vec::new();
        for state in self.targets.values_mut() {
            state.in_ring = false;
            released.extend(drain(state, &mut self.parked));
        }
        released
    }
}

/// Whether `more` body bytes fit beside `held`; with nothing held, anything fits.
fn fits(held: u64, more: u64, budget: u64) -> bool {
    held == 0 || held.saturating_add(more) <= budget
}

/// Asks the breaker and takes the target's slot, an engine-wide one and `body_len` bytes;
/// returns whether this is the probe, or until when the breaker holds attempts back.
fn take_slots(
    state: &mut TargetState,
    requests: &mut usize,
    bytes: &mut u64,
    body_len: u64,
    now: Instant,
) -> Result<bool, Instant> {
    let probe = match state.rules.probe_wait {
        Some(wait) => match state.breaker.admit(now, wait) {
            breaker::Admission::Attempt { probe } => probe,
            breaker::Admission::DeferUntil(until) => return Err(until),
        },
        None => false,
    };
    state.in_flight += 1;
    *requests += 1;
    *bytes += body_len;
    Ok(probe)
}

fn drain(state: &mut TargetState, parked: &mut usize) -> Vec<DeliveryTask> {
    *parked -= state.waiting.len();
    state.waiting.drain(..).collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::delivery::task::testing::{target, task};

    const COOL: Duration = Duration::from_secs(30);
    const WAIT: Duration = Duration::from_secs(12);

    fn limits(concurrency: usize) -> Limits {
        Limits {
            concurrency,
            body_budget: 1 << 20,
            parked_capacity: 1000,
            breaker_threshold: 2,
            breaker_cooldown: COOL,
        }
    }

    fn rules(max_in_flight: u32) -> TargetRules {
        TargetRules {
            max_in_flight,
            probe_wait: Some(WAIT),
        }
    }

    fn started(o: Offer) -> Started {
        match o {
            Offer::Start(s) => s,
            other => panic!("expected a start, got {other:?}"),
        }
    }

    fn targets_of(v: &[Started]) -> Vec<Uuid> {
        v.iter().map(|s| s.task.target.id).collect()
    }

    #[test]
    fn a_targets_cap_holds_and_a_freed_slot_starts_its_next_task() {
        let t0 = Instant::now();
        let mut a = Admission::new(limits(100));
        let t = target(1);
        let first = started(a.offer(task(&t, 10), rules(2), t0));
        started(a.offer(task(&t, 10), rules(2), t0));
        assert!(matches!(a.offer(task(&t, 10), rules(2), t0), Offer::Parked));
        assert_eq!((a.in_flight(), a.parked()), (2, 1));
        let f = a.finish(t.id, 10, first.probe, Some(true), t0);
        assert_eq!(targets_of(&f.start), [t.id]);
        assert_eq!((a.in_flight(), a.parked()), (2, 0));
    }

    #[test]
    fn the_engine_wide_cap_is_shared_round_robin() {
        let t0 = Instant::now();
        let mut a = Admission::new(limits(2));
        let (busy, other, third) = (target(1), target(2), target(3));
        let s1 = started(a.offer(task(&busy, 1), rules(10), t0));
        started(a.offer(task(&busy, 1), rules(10), t0));
        // The busy target has a backlog waiting for engine-wide room...
        for _ in 0..20 {
            assert!(matches!(
                a.offer(task(&busy, 1), rules(10), t0),
                Offer::Parked
            ));
        }
        // ...and two other targets queue one task each behind it.
        assert!(matches!(
            a.offer(task(&other, 1), rules(10), t0),
            Offer::Parked
        ));
        assert!(matches!(
            a.offer(task(&third, 1), rules(10), t0),
            Offer::Parked
        ));
        // Each freed slot goes to the next target in turn, not to the backlog.
        let f = a.finish(busy.id, 1, s1.probe, Some(true), t0);
        assert_eq!(targets_of(&f.start), [busy.id]);
        let f = a.finish(busy.id, 1, false, Some(true), t0);
        assert_eq!(targets_of(&f.start), [other.id]);
        let f = a.finish(busy.id, 1, false, Some(true), t0);
        assert_eq!(targets_of(&f.start), [third.id]);
        let f = a.finish(other.id, 1, false, Some(true), t0);
        assert_eq!(targets_of(&f.start), [busy.id]);
        assert!(a.in_flight() <= 2);
    }

    #[test]
    fn a_target_at_its_cap_does_not_hold_up_another() {
        let t0 = Instant::now();
        let mut a = Admission::new(limits(100));
        let (slow, fast) = (target(1), target(2));
        started(a.offer(task(&slow, 1), rules(1), t0));
        assert!(matches!(
            a.offer(task(&slow, 1), rules(1), t0),
            Offer::Parked
        ));
        started(a.offer(task(&fast, 1), rules(1), t0));
    }

    #[test]
    fn waiting_room_is_bounded_per_target_and_overall() {
        let t0 = Instant::now();
        let mut a = Admission::new(Limits {
            parked_capacity: 10,
            ..limits(100)
        });
        let (t, u) = (target(1), target(2));
        started(a.offer(task(&t, 1), rules(1), t0));
        for _ in 0..WAITING_PER_SLOT {
            assert!(matches!(a.offer(task(&t, 1), rules(1), t0), Offer::Parked));
        }
        assert!(matches!(a.offer(task(&t, 1), rules(1), t0), Offer::Full(_)));
        started(a.offer(task(&u, 1), rules(1), t0));
        assert!(matches!(a.offer(task(&u, 1), rules(1), t0), Offer::Parked));
        assert!(matches!(a.offer(task(&u, 1), rules(1), t0), Offer::Parked));
        assert!(matches!(a.offer(task(&u, 1), rules(1), t0), Offer::Full(_)));
        assert_eq!(a.parked(), 10);
    }

    #[test]
    fn the_body_budget_holds_but_a_large_body_still_goes_alone() {
        let t0 = Instant::now();
        let mut a = Admission::new(Limits {
            body_budget: 100,
            ..limits(100)
        });
        let (t, u) = (target(1), target(2));
        let big = started(a.offer(task(&t, 500), rules(10), t0));
        assert!(matches!(
            a.offer(task(&u, 10), rules(10), t0),
            Offer::Parked
        ));
        let f = a.finish(t.id, 500, big.probe, Some(true), t0);
        assert_eq!(targets_of(&f.start), [u.id]);
        started(a.offer(task(&t, 90), rules(10), t0));
        assert!(matches!(
            a.offer(task(&t, 10), rules(10), t0),
            Offer::Parked
        ));
    }

    #[test]
    fn an_open_breaker_defers_and_releases_the_waiting_tasks() {
        let t0 = Instant::now();
        let mut a = Admission::new(limits(100));
        let t = target(1);
        let s1 = started(a.offer(task(&t, 1), rules(2), t0));
        let s2 = started(a.offer(task(&t, 1), rules(2), t0));
        a.offer(task(&t, 1), rules(2), t0);
        a.offer(task(&t, 1), rules(2), t0);
        let f = a.finish(t.id, 1, s1.probe, Some(false), t0);
        assert_eq!(f.transition, None);
        assert_eq!(f.start.len(), 1);
        // The second failure opens the breaker; the task still waiting goes back.
        let f = a.finish(t.id, 1, s2.probe, Some(false), t0);
        assert_eq!(f.transition, Some(Transition::Opened));
        assert_eq!(f.release.len(), 1);
        assert_eq!(a.parked(), 0);
        // A late result while open changes nothing.
        let f = a.finish(t.id, 1, false, Some(true), t0);
        assert_eq!(f.transition, None);
        assert!(!a.breaker_closed(t.id));
        match a.offer(task(&t, 1), rules(2), t0 + Duration::from_secs(1)) {
            Offer::Defer { until, .. } => assert_eq!(until, t0 + COOL),
            other => panic!("expected a deferral, got {other:?}"),
        }
    }

    #[test]
    fn one_probe_at_a_time_within_the_cap_and_its_success_closes() {
        let t0 = Instant::now();
        let mut a = Admission::new(limits(100));
        let t = target(1);
        for _ in 0..2 {
            let s = started(a.offer(task(&t, 1), rules(3), t0));
            a.finish(t.id, 1, s.probe, Some(false), t0);
        }
        let t1 = t0 + COOL;
        let probe = started(a.offer(task(&t, 1), rules(3), t1));
        assert!(probe.probe);
        match a.offer(task(&t, 1), rules(3), t1) {
            Offer::Defer { until, .. } => assert_eq!(until, t1 + WAIT),
            other => panic!("expected a deferral, got {other:?}"),
        }
        let f = a.finish(t.id, 1, true, Some(true), t1);
        assert_eq!(f.transition, Some(Transition::Closed));
        assert!(a.breaker_closed(t.id));
        assert!(!started(a.offer(task(&t, 1), rules(3), t1)).probe);
    }

    #[test]
    fn a_passed_over_target_wakes_the_sweeper_when_its_list_runs_dry() {
        let t0 = Instant::now();
        let mut a = Admission::new(limits(100));
        let t = target(1);
        let s = started(a.offer(task(&t, 1), rules(1), t0));
        a.offer(task(&t, 1), rules(1), t0);
        assert_eq!(a.targets_with_waiting(), HashSet::from([t.id]));
        let f = a.finish(t.id, 1, s.probe, Some(true), t0);
        assert!(f.wake_sweeper);
        assert!(a.targets_with_waiting().is_empty());
    }

    #[test]
    fn closing_gives_everything_back_and_refuses_new_work() {
        let t0 = Instant::now();
        let mut a = Admission::new(limits(1));
        let (t, u) = (target(1), target(2));
        let s = started(a.offer(task(&t, 1), rules(1), t0));
        a.offer(task(&u, 1), rules(1), t0);
        assert_eq!(a.close().len(), 1);
        assert!(matches!(a.offer(task(&u, 1), rules(1), t0), Offer::Full(_)));
        let f = a.finish(t.id, 1, s.probe, Some(true), t0);
        assert!(f.start.is_empty());
        assert_eq!(a.in_flight(), 0);
    }

    #[test]
    fn targets_without_a_breaker_are_never_deferred() {
        let t0 = Instant::now();
        let mut a = Admission::new(limits(100));
        let t = target(1);
        let plain = TargetRules {
            max_in_flight: 1,
            probe_wait: None,
        };
        for _ in 0..5 {
            let s = started(a.offer(task(&t, 1), plain, t0));
            let f = a.finish(t.id, 1, s.probe, Some(false), t0);
            assert_eq!(f.transition, None);
        }
    }
}
