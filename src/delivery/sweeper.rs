//! The sweeper: every `sweep_interval` it range-scans each webhook's due index for rows due
//! now and queues those not already in memory. Its first pass at startup is crash
//! recovery; later passes pick up what a full queue or full scheduler left behind (I2).

use std::collections::HashMap;
use std::sync::Arc;

use uuid::Uuid;

use super::engine::Shared;
use super::task::{DeliveryTask, EventPayload};
use crate::metrics as m;
use crate::model::now_ms;
use crate::store::{DueRow, EventStore};

pub(super) fn run(s: &Shared) {
    loop {
        sweep(s);
        publish_depths(s);
        crossbeam_channel::select! {
            recv(s.stop_rx) -> _ => return,
            default(s.config.sweep_interval) => {}
        }
    }
}

/// One pass over every webhook. Stops early once the delivery queue is full.
pub(super) fn sweep(s: &Shared) {
    let catalog = s.store.catalog();
    for webhook in catalog.webhooks() {
        if s.stopping() {
            return;
        }
        let room = s.config.queue_capacity.saturating_sub(s.queue_tx.len());
        if room == 0 {
            return;
        }
        let store = match s.store.events(webhook.id) {
            Ok(store) => store,
            Err(e) => {
                tracing::error!(webhook_id = %webhook.id, error = %e, "cannot open event file");
                continue;
            }
        };
        // Scan a bit past the room: some rows are in memory already and get skipped.
        let rows = match store.due_before(now_ms(), room + s.claims.len().min(room * 4)) {
            Ok(rows) => rows,
            Err(e) => {
                tracing::error!(webhook_id = %webhook.id, error = %e, "due index scan failed");
                continue;
            }
        };
        if let Err(e) = requeue(s, &store, rows, room) {
            tracing::error!(webhook_id = %webhook.id, error = %e, "requeue failed");
        }
    }
}

fn requeue(
    s: &Shared,
    store: &Arc<EventStore>,
    rows: Vec<DueRow>,
    room: usize,
) -> Result<(), crate::store::StoreError> {
    let catalog = s.store.catalog();
    let mut payloads: HashMap<Uuid, Arc<EventPayload>> = HashMap::new();
    let mut queued = 0;
    for row in rows {
        if queued >= room {
            break;
        }
        if !s.claims.claim(row.delivery_id) {
            continue;
        }
        // Re-read AFTER claiming: a worker may have finished it between the scan and the
        // claim, and only a read begun after the claim is sure to see that commit (I5).
        let delivery = match store.delivery(row.event_id, row.delivery_id)? {
            Some(d) if !d.status.is_terminal() && d.next_attempt_at == Some(row.due_at) => d,
            _ => {
                s.claims.release(row.delivery_id);
                continue;
            }
        };
        let payload = match payloads.get(&row.event_id) {
            Some(p) => p.clone(),
            None => match store.event_with_body(row.event_id)? {
                Some((event, body)) => {
                    let p = Arc::new(EventPayload::new(&event, body.into()));
                    payloads.insert(row.event_id, p.clone());
                    p
                }
                None => {
                    s.claims.release(row.delivery_id);
                    continue;
                }
            },
        };
        // A deleted target still gets a task: the worker records why it failed.
        let target = catalog.target(row.target_id).cloned().unwrap_or_else(|| {
            Arc::new(crate::model::Target {
                id: row.target_id,
                webhook_id: store.webhook_id(),
                name: "(deleted)".into(),
                active: false,
                kind: crate::model::TargetKind::Database,
                created_at: 0,
            })
        });
        let task = DeliveryTask {
            webhook_id: store.webhook_id(),
            target,
            event: payload,
            delivery,
        };
        if !s.enqueue_claimed(task) {
            break;
        }
        queued += 1;
    }
    Ok(())
}

fn publish_depths(s: &Shared) {
    let st = s.stats();
    metrics::gauge!(m::QUEUE_DEPTH, "queue" => "delivery").set(st.queued as f64);
    metrics::gauge!(m::QUEUE_DEPTH, "queue" => "parked").set(st.parked as f64);
    metrics::gauge!(m::QUEUE_DEPTH, "queue" => "claimed").set(st.claimed as f64);
}
