//! An in-memory snapshot of the configuration (webhooks, entrypoints, targets).
//!
//! Ingest and delivery read it on every event, so it must cost no I/O; the main file is the
//! truth and the snapshot is rebuilt after every configuration change.

use std::collections::HashMap;
use std::sync::Arc;

use uuid::Uuid;

use crate::model::{Entrypoint, Target, Webhook};

/// Immutable view of the configuration at one moment.
#[derive(Debug, Default)]
pub struct Catalog {
    webhooks: HashMap<Uuid, Arc<Webhook>>,
    entrypoints: HashMap<Uuid, Arc<Entrypoint>>,
    targets: HashMap<Uuid, Arc<Target>>,
    targets_by_webhook: HashMap<Uuid, Vec<Arc<Target>>>,
    entrypoints_by_webhook: HashMap<Uuid, Vec<Arc<Entrypoint>>>,
}

impl Catalog {
    pub(crate) fn build(
        webhooks: Vec<Webhook>,
        entrypoints: Vec<Entrypoint>,
        targets: Vec<Target>,
    ) -> Catalog {
        let mut c = Catalog::default();
        for w in webhooks {
            c.webhooks.insert(w.id, Arc::new(w));
        }
        for e in entrypoints {
            let e = Arc::new(e);
            c.entrypoints_by_webhook
                .entry(e.webhook_id)
                .or_default()
                .push(e.clone());
            c.entrypoints.insert(e.id, e);
        }
        for t in targets {
            let t = Arc::new(t);
            c.targets_by_webhook
                .entry(t.webhook_id)
                .or_default()
                .push(t.clone());
            c.targets.insert(t.id, t);
        }
        // Stable, creation-ordered lists for display.
        for v in c.targets_by_webhook.values_mut() {
            v.sort_by_key(|t| (t.created_at, t.id));
        }
        for v in c.entrypoints_by_webhook.values_mut() {
            v.sort_by_key(|e| (e.created_at, e.id));
        }
        c
    }

    /// All webhooks, newest first.
    pub fn webhooks(&self) -> Vec<Arc<Webhook>> {
        let mut v: Vec<_> = self.webhooks.values().cloned().collect();
        v.sort_by_key(|w| std::cmp::Reverse((w.created_at, w.id)));
        v
    }

    /// One webhook.
    pub fn webhook(&self, id: Uuid) -> Option<&Arc<Webhook>> {
        self.webhooks.get(&id)
    }

    /// One entrypoint.
    pub fn entrypoint(&self, id: Uuid) -> Option<&Arc<Entrypoint>> {
        self.entrypoints.get(&id)
    }

    /// One target.
    pub fn target(&self, id: Uuid) -> Option<&Arc<Target>> {
        self.targets.get(&id)
    }

    /// A webhook's targets in creation order.
    pub fn targets_of(&self, webhook_id: Uuid) -> &[Arc<Target>] {
        self.targets_by_webhook
            .get(&webhook_id)
            .map(Vec::as_slice)
            .unwrap_or(&[])
    }

    /// A webhook's entrypoints in creation order.
    pub fn entrypoints_of(&self, webhook_id: Uuid) -> &[Arc<Entrypoint>] {
        self.entrypoints_by_webhook
            .get(&webhook_id)
            .map(Vec::as_slice)
            .unwrap_or(&[])
    }
}
