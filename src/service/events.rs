//! Reading events and redelivering them.

use std::sync::Arc;

use uuid::Uuid;

use super::{Service, ServiceError, ServiceResult};
use crate::delivery::{DeliveryPlan, EventPayload, TargetHealth};
use crate::model::{Delivery, Millis, Target, now_ms};
use crate::store::{
    EventDetail, EventFilter, EventWithBody, ScanReport, StoreError, TargetCounts, WriteOp,
};

/// Largest page size.
pub const MAX_PER_PAGE: usize = 200;

/// One page of a webhook's events, newest first.
#[derive(Debug, Clone)]
pub struct EventPage {
    /// The events on this page.
    pub events: Vec<EventWithBody>,
    /// 1-based page number.
    pub page: usize,
    /// Page size.
    pub per_page: usize,
    /// Total number of events.
    pub total: u64,
}

impl EventPage {
    /// Number of pages (at least 1).
    pub fn pages(&self) -> usize {
        (self.total as usize).div_ceil(self.per_page.max(1)).max(1)
    }
}

impl Service {
    /// A page of events, newest first, with at most `body_limit` bytes of each body.
    pub async fn list_events(
        &self,
        webhook_id: Uuid,
        page: usize,
        per_page: usize,
        body_limit: usize,
    ) -> ServiceResult<EventPage> {
        self.webhook(webhook_id).await?;
        let page = page.max(1);
        let per_page = per_page.clamp(1, MAX_PER_PAGE);
        self.blocking(move |store| {
            let (events, total) = store.events(webhook_id)?.list_events(
                (page - 1).saturating_mul(per_page),
                per_page,
                body_limit,
            )?;
            Ok(EventPage {
                events,
                page,
                per_page,
                total,
            })
        })
        .await
    }

    /// One event with all deliveries and attempts.
    pub async fn event(&self, webhook_id: Uuid, event_id: Uuid) -> ServiceResult<EventDetail> {
        self.webhook(webhook_id).await?;
        self.blocking(move |store| {
            store
                .events(webhook_id)?
                .event_detail(event_id)?
                .ok_or(ServiceError::NotFound("event"))
        })
        .await
    }

    /// Creates a new delivery of the event to one target or to every active target; the
    /// old deliveries and their history stay. Returns the new delivery ids.
    pub async fn redeliver(
        &self,
        webhook_id: Uuid,
        event_id: Uuid,
        target_id: Option<Uuid>,
    ) -> ServiceResult<Vec<Uuid>> {
        let view = self.webhook(webhook_id).await?;
        // Judged after the event is found: a missing event is a 404 whatever the targets.
        let targets = redelivery_targets(&view.targets, target_id);
        let now = now_ms();
        let engine = self.engine.clone();
        let ids = self
            .blocking(move |store| {
                let events = store.events(webhook_id)?;
                let (event, body) = events
                    .event_with_body(event_id)?
                    .ok_or(ServiceError::NotFound("event"))?;
                // The user asked for these targets: their filters do not apply.
                let targets = targets?.into_iter().map(|t| (t, None)).collect();
                let body = bytes::Bytes::from(body);
                let DeliveryPlan {
                    deliveries,
                    tasks,
                    delivered_by_commit,
                    skipped: _,
                } = DeliveryPlan::new(webhook_id, event_id, targets, now, || {
                    Arc::new(EventPayload::new(&event, Some(body.clone())))
                });
                let ids = deliveries.iter().map(|d| d.id).collect::<Vec<_>>();
                // Queued right after the commit, as ingest's are.
                events.write_blocking_with(
                    WriteOp::AddDeliveries(deliveries),
                    engine.notice_for(tasks),
                )?;
                delivered_by_commit
                    .into_iter()
                    .for_each(crate::metrics::delivered_by_commit);
                Ok(ids)
            })
            .await?;
        Ok(ids)
    }
}

/// The targets a redelivery goes to: the one named (which must be active), or every active
/// target of the webhook (there must be one).
fn redelivery_targets(
    targets: &[Arc<Target>],
    target_id: Option<Uuid>,
) -> ServiceResult<Vec<Arc<Target>>> {
    let chosen: Vec<_> = match target_id {
        Some(tid) => {
            let t = targets
                .iter()
                .find(|t| t.id == tid)
                .cloned()
                .ok_or(ServiceError::NotFound("target"))?;
            if !t.active {
                return Err(ServiceError::invalid("target_id", "target is inactive"));
            }
            vec![t]
        }
        None => targets.iter().filter(|t| t.active).cloned().collect(),
    };
    if chosen.is_empty() {
        return Err(ServiceError::invalid(
            "target_id",
            "the webhook has no active target",
        ));
    }
    Ok(chosen)
}

/// Most events a filtered look at the event log scans, newest first (in the filter's time
/// range): a text search reads headers and up to `SEARCH_BODY_BYTES` of each body, and a
/// status or target filter each event's deliveries. There is no index to keep on every
/// ingest commit; this bounds the cost of one page instead (tens of milliseconds).
pub const MAX_SCANNED_EVENTS: usize = 10_000;

/// Events a bulk redelivery writes per transaction: a large replay is committed in pieces,
/// so ingest on the same file is never held behind one huge write.
const REDELIVERY_BATCH: usize = 500;

/// Most deliveries counted per webhook for its targets' health (newest first).
pub const MAX_COUNTED_DELIVERIES: usize = 100_000;

/// A page of the events that pass a filter, newest first.
#[derive(Debug, Clone)]
pub struct FoundPage {
    /// The events on this page.
    pub events: Vec<EventWithBody>,
    /// 1-based page number.
    pub page: usize,
    /// Page size.
    pub per_page: usize,
    /// Events that passed the filter among those scanned.
    pub matched: usize,
    /// How far the scan looked.
    pub scan: ScanReport,
    /// What a bulk redelivery of this filter would send.
    pub replay: ReplayPlan,
}

impl FoundPage {
    /// Whether a later page has events.
    pub fn has_more(&self) -> bool {
        self.page.saturating_mul(self.per_page) < self.matched
    }
}

/// What a bulk redelivery sends: per target (in the webhook's order), how many events.
#[derive(Debug, Clone, Default)]
pub struct ReplayPlan {
    /// Target and the number of new deliveries to it.
    pub targets: Vec<(Arc<Target>, usize)>,
}

impl ReplayPlan {
    /// New deliveries in all.
    pub fn count(&self) -> usize {
        self.targets.iter().map(|(_, n)| n).sum()
    }
}

/// The targets one event of a bulk redelivery goes to: the active targets the filter names
/// (one, or all); with a status, only those whose latest delivery of the event is in that
/// status, so a replay run twice does not send twice what the first one queued.
fn replay_targets<'t>(
    filter: &EventFilter,
    deliveries: &[Delivery],
    targets: &'t [Arc<Target>],
) -> impl Iterator<Item = &'t Arc<Target>> {
    targets.iter().filter(move |t| {
        t.active
            && filter.target_id.is_none_or(|id| id == t.id)
            && filter.status.as_ref().is_none_or(|status| {
                deliveries
                    .iter()
                    .rev()
                    .find(|d| d.target_id == t.id)
                    .is_some_and(|d| d.status.as_str() == status.as_str())
            })
    })
}

/// One target's health for the webhook page.
#[derive(Debug, Clone)]
pub struct TargetHealthView {
    /// The target.
    pub target: Arc<Target>,
    /// Since when it is paused.
    pub paused_since: Option<Millis>,
    /// Counts and the latest attempt, from the newest deliveries.
    pub counts: TargetCounts,
    /// Its breaker, from the engine (since the start); `None` while closed.
    pub engine: Option<TargetHealth>,
}

/// Every target's health, and how far the counting looked.
#[derive(Debug, Clone, Default)]
pub struct HealthReport {
    /// Per target, in the webhook's order.
    pub targets: Vec<TargetHealthView>,
    /// Deliveries counted.
    pub counted: usize,
    /// Whether every stored delivery was counted.
    pub complete: bool,
}

impl Service {
    /// A page of the events that pass `filter` (at most [`MAX_SCANNED_EVENTS`] scanned),
    /// with at most `body_limit` bytes of each body, and what a bulk redelivery of the
    /// filter would send.
    pub async fn find_events(
        &self,
        webhook_id: Uuid,
        filter: EventFilter,
        page: usize,
        per_page: usize,
        body_limit: usize,
    ) -> ServiceResult<FoundPage> {
        let view = self.webhook(webhook_id).await?;
        let page = page.max(1);
        let per_page = per_page.clamp(1, MAX_PER_PAGE);
        let skip = (page - 1).saturating_mul(per_page);
        self.blocking(move |store| {
            let mut events = Vec::new();
            let mut matched = 0usize;
            let mut per_target = vec![0usize; view.targets.len()];
            let scan =
                store
                    .events(webhook_id)?
                    .find_events(&filter, MAX_SCANNED_EVENTS, |found| {
                        if matched >= skip && events.len() < per_page {
                            events.push(EventWithBody {
                                event: found.event.clone(),
                                body: found.body(body_limit)?,
                                deliveries: found.deliveries.to_vec(),
                            });
                        }
                        matched += 1;
                        for t in replay_targets(&filter, found.deliveries, &view.targets) {
                            if let Some(i) = view.targets.iter().position(|x| x.id == t.id) {
                                per_target[i] += 1;
                            }
                        }
                        Ok(true)
                    })?;
            let replay = ReplayPlan {
                targets: view
                    .targets
                    .iter()
                    .cloned()
                    .zip(per_target)
                    .filter(|(_, n)| *n > 0)
                    .collect(),
            };
            Ok(FoundPage {
                events,
                page,
                per_page,
                matched,
                scan,
                replay,
            })
        })
        .await
    }

    /// Redelivers every event that passes `filter` (at most [`MAX_SCANNED_EVENTS`]
    /// scanned) to its targets as [`replay_targets`] picks them; returns how many
    /// deliveries were created. They are written to the due index in batches and not
    /// queued here: the sweeper queues them, oldest first, as each target's
    /// `max_in_flight` and the queue allow, so a large replay never floods memory or a
    /// receiver.
    pub async fn redeliver_matching(
        &self,
        webhook_id: Uuid,
        filter: EventFilter,
    ) -> ServiceResult<usize> {
        let view = self.webhook(webhook_id).await?;
        if let Some(tid) = filter.target_id {
            let target = view
                .targets
                .iter()
                .find(|t| t.id == tid)
                .ok_or(ServiceError::NotFound("target"))?;
            if !target.active {
                return Err(ServiceError::invalid("target_id", "target is inactive"));
            }
        }
        let engine = self.engine.clone();
        self.blocking(move |store| {
            let events = store.events(webhook_id)?;
            // Event ids and their new deliveries, newest first as scanned.
            let mut plan: Vec<Vec<Delivery>> = Vec::new();
            let now = now_ms();
            events.find_events(&filter, MAX_SCANNED_EVENTS, |found| {
                let new: Vec<Delivery> = replay_targets(&filter, found.deliveries, &view.targets)
                    .map(|t| Delivery::for_target(found.event.id, t, now))
                    .collect();
                if !new.is_empty() {
                    plan.push(new);
                }
                Ok(true)
            })?;
            // Oldest first: the due index orders equal due times by delivery id, and ids
            // made later sort later, so the sweeper queues the oldest event first.
            plan.reverse();
            let mut plan: Vec<Vec<Delivery>> = plan
                .into_iter()
                .map(|ds| {
                    ds.into_iter()
                        .map(|d| Delivery {
                            id: Uuid::now_v7(),
                            ..d
                        })
                        .collect()
                })
                .collect();
            let mut count = 0;
            while !plan.is_empty() {
                let batch: Vec<Vec<Delivery>> =
                    plan.drain(..plan.len().min(REDELIVERY_BATCH)).collect();
                let outcomes = events.write_all_blocking(
                    batch
                        .iter()
                        .map(|ds| WriteOp::AddDeliveries(ds.clone()))
                        .collect(),
                );
                for (ds, outcome) in batch.iter().zip(outcomes) {
                    match outcome {
                        Ok(()) => {}
                        // Removed by retention since the scan: nothing to redeliver.
                        Err(StoreError::UnknownEvent) => continue,
                        Err(e) => return Err(e.into()),
                    }
                    count += ds.len();
                    ds.iter()
                        .filter(|d| !d.needs_engine())
                        .for_each(|d| crate::metrics::delivered_by_commit(d.target_id));
                }
                engine.sweep_now();
            }
            Ok(count)
        })
        .await
    }

    /// Each target's health: delivery counts and latest attempt (the newest
    /// [`MAX_COUNTED_DELIVERIES`] deliveries), pause, breaker and latest failure.
    pub async fn target_health(&self, webhook_id: Uuid) -> ServiceResult<HealthReport> {
        let view = self.webhook(webhook_id).await?;
        let catalog = self.store.catalog();
        let mut engine = self.engine.target_health();
        let counts = self
            .blocking(move |store| {
                Ok(store
                    .events(webhook_id)?
                    .target_counts(MAX_COUNTED_DELIVERIES)?)
            })
            .await?;
        let mut per_target = counts.targets;
        Ok(HealthReport {
            targets: view
                .targets
                .iter()
                .map(|t| TargetHealthView {
                    target: t.clone(),
                    paused_since: catalog.paused_since(t.id),
                    counts: per_target.remove(&t.id).unwrap_or_default(),
                    engine: engine.remove(&t.id),
                })
                .collect(),
            counted: counts.counted,
            complete: counts.complete,
        })
    }
}
