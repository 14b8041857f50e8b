//! [`DeliveryTask`]: everything a delivery thread needs, so the happy path reads nothing
//! from redb (I4).

use std::sync::Arc;

use bytes::Bytes;
use uuid::Uuid;

use crate::model::{Delivery, Event, Millis, Target};

/// Bodies below this size travel inside the task; larger ones are read by event id when
/// delivered, so queued tasks cost little memory however big the payloads. The same bound
/// as the store's: a body carried in a task is one that lives in its event's row.
pub const MAX_INLINE_BODY: usize = crate::store::INLINE_BODY_BYTES;

/// The request to replay, shared by all targets of one event.
#[derive(Debug)]
pub struct EventPayload {
    /// Event id.
    pub id: Uuid,
    /// Arrival time.
    pub received_at: Millis,
    /// Original method.
    pub method: String,
    /// Original path and query.
    pub path: String,
    /// Original headers, in order, duplicates kept.
    pub headers: Vec<(String, Vec<u8>)>,
    /// Content-Type, if any.
    pub content_type: Option<String>,
    /// Body length.
    pub body_len: u64,
    /// The body when under [`MAX_INLINE_BODY`]; otherwise `None` and read from the store.
    pub body: Option<Bytes>,
    /// A test event webhooker sent itself (see `Event::is_test`): attempts say so.
    pub test: bool,
}

impl EventPayload {
    /// Builds the payload. `body` travels inline only when it is the event's whole body and
    /// small; otherwise (a large body, or the caller does not have it) the delivery thread
    /// reads it from the store.
    pub fn new(event: &Event, body: Option<Bytes>) -> EventPayload {
        EventPayload {
            id: event.id,
            received_at: event.received_at,
            method: event.method.clone(),
            path: event.path.clone(),
            headers: event.headers.clone(),
            content_type: event.content_type.clone(),
            body_len: event.body_len,
            body: body.filter(|b| b.len() < MAX_INLINE_BODY && b.len() as u64 == event.body_len),
            test: event.is_test(),
        }
    }
}

impl EventPayload {
    /// The path with the entrypoint id masked: the id is the URL's secret, and Slack
    /// channels and logs are no place for it.
    pub fn display_path(&self) -> String {
        redact_entrypoint(&self.path)
    }
}

/// `/webhook/{id}?q` → `/webhook/…?q`.
pub fn redact_entrypoint(path: &str) -> String {
    match path.strip_prefix("/webhook/") {
        Some(rest) => {
            let query = rest.find('?').map(|i| &rest[i..]).unwrap_or("");
            format!("/webhook/…{query}")
        }
        None => path.to_string(),
    }
}

/// One delivery in memory: queued, scheduled, parked or being attempted. A delivery id is
/// in memory at most once (I5), enforced by the engine's claim set.
#[derive(Debug, Clone)]
pub struct DeliveryTask {
    /// The webhook whose event file holds the delivery.
    pub webhook_id: Uuid,
    /// Target configuration as of queueing; refreshed from the catalog before each attempt.
    pub target: Arc<Target>,
    /// The request to replay.
    pub event: Arc<EventPayload>,
    /// The delivery as last committed.
    pub delivery: Delivery,
}

/// New deliveries of one event, split the way they must be handled: all of them written in
/// one transaction; the ones the engine attempts dispatched after that commit; the ones the
/// commit itself finishes (`database` targets, see [`Delivery::for_target`], and targets
/// whose filter skipped the event) counted once it is done. Ingest and redelivery both
/// build theirs here.
pub struct DeliveryPlan {
    /// Every new delivery.
    pub deliveries: Vec<Delivery>,
    /// The deliveries the engine attempts.
    pub tasks: Vec<DeliveryTask>,
    /// Targets whose delivery is finished by the commit.
    pub delivered_by_commit: Vec<Uuid>,
    /// Targets whose filter skipped the event.
    pub skipped: Vec<Uuid>,
}

/// A target of a new event, and whether its filter skipped the event (and why).
pub type Routed = (Arc<Target>, Option<String>);

impl DeliveryPlan {
    /// One delivery per target, due at `now`, or skipped with its reason. `payload` is
    /// called only if some delivery goes through the engine (building it copies the
    /// headers).
    pub fn new(
        webhook_id: Uuid,
        event_id: Uuid,
        targets: Vec<Routed>,
        now: Millis,
        payload: impl Fn() -> Arc<EventPayload>,
    ) -> DeliveryPlan {
        let mut plan = DeliveryPlan {
            deliveries: Vec::with_capacity(targets.len()),
            tasks: Vec::with_capacity(targets.len()),
            delivered_by_commit: Vec::new(),
            skipped: Vec::new(),
        };
        let mut built: Option<Arc<EventPayload>> = None;
        for (target, skip) in targets {
            if let Some(reason) = skip {
                plan.skipped.push(target.id);
                plan.deliveries
                    .push(Delivery::skipped(event_id, target.id, now, reason));
                continue;
            }
            let delivery = Delivery::for_target(event_id, &target, now);
            if delivery.needs_engine() {
                let event = built.get_or_insert_with(&payload).clone();
                plan.tasks.push(DeliveryTask {
                    webhook_id,
                    target,
                    event,
                    delivery: delivery.clone(),
                });
            } else {
                plan.delivered_by_commit.push(target.id);
            }
            plan.deliveries.push(delivery);
        }
        plan
    }
}

/// Tasks for unit tests of the engine's rules.
#[cfg(test)]
pub(super) mod testing {
    use std::sync::Arc;

    use uuid::Uuid;

    use super::{DeliveryTask, EventPayload};
    use crate::model::{Delivery, DeliveryStatus, Target, TargetKind};

    /// A target numbered `n`.
    pub(in crate::delivery) fn target(n: u128) -> Arc<Target> {
        Arc::new(Target {
            id: Uuid::from_u128(n),
            webhook_id: Uuid::nil(),
            name: format!("t{n}"),
            active: true,
            kind: TargetKind::Log,
            created_at: 0,
            filter: None,
        })
    }

    /// A pending delivery to `target` of an event with a body of `body_len` bytes.
    pub(in crate::delivery) fn task(target: &Arc<Target>, body_len: u64) -> DeliveryTask {
        let event_id = Uuid::now_v7();
        DeliveryTask {
            webhook_id: Uuid::nil(),
            target: target.clone(),
            event: Arc::new(EventPayload {
                id: event_id,
                received_at: 0,
                method: "POST".into(),
                path: "/".into(),
                headers: Vec::new(),
                content_type: None,
                body_len,
                body: None,
                test: false,
            }),
            delivery: Delivery {
                id: Uuid::now_v7(),
                event_id,
                target_id: target.id,
                status: DeliveryStatus::Pending,
                attempts: 0,
                next_attempt_at: Some(0),
                created_at: 0,
            },
        }
    }
}
