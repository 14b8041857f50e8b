//! Reading events and redelivering them.

use std::sync::Arc;

use uuid::Uuid;

use super::{Service, ServiceError, ServiceResult};
use crate::delivery::{DeliveryPlan, EventPayload};
use crate::model::{Target, now_ms};
use crate::store::{EventDetail, EventWithBody, WriteOp};

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
                let targets = targets?;
                let body = bytes::Bytes::from(body);
                let DeliveryPlan {
                    deliveries,
                    tasks,
                    delivered_by_commit,
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
