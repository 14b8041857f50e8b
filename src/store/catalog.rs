//! An in-memory snapshot of the configuration (webhooks, entrypoints, targets).
//!
//! Ingest and delivery read it on every event, so it must cost no I/O; the main file is the
//! truth. It is built from the file once at start; each configuration commit then applies
//! its own change to a copy (pointers only, nothing decoded), so a write costs the same with
//! ten webhooks or ten thousand.

use std::collections::HashMap;
use std::sync::Arc;

use uuid::Uuid;

use crate::model::{Entrypoint, Millis, Target, Webhook};

/// Immutable view of the configuration at one moment.
#[derive(Debug, Default, Clone)]
pub struct Catalog {
    webhooks: HashMap<Uuid, Arc<Webhook>>,
    /// Every webhook, newest first (the order lists show).
    webhooks_newest_first: Vec<Arc<Webhook>>,
    entrypoints: HashMap<Uuid, Arc<Entrypoint>>,
    targets: HashMap<Uuid, Arc<Target>>,
    targets_by_webhook: HashMap<Uuid, Vec<Arc<Target>>>,
    entrypoints_by_webhook: HashMap<Uuid, Vec<Arc<Entrypoint>>>,
    /// Paused targets and since when: their deliveries wait in the due index.
    paused: HashMap<Uuid, Millis>,
}

/// Something with a place in a creation-ordered list.
trait Ordered {
    fn id(&self) -> Uuid;
    fn order(&self) -> (i64, Uuid);
}

impl Ordered for Webhook {
    fn id(&self) -> Uuid {
        self.id
    }
    fn order(&self) -> (i64, Uuid) {
        (self.created_at, self.id)
    }
}

impl Ordered for Entrypoint {
    fn id(&self) -> Uuid {
        self.id
    }
    fn order(&self) -> (i64, Uuid) {
        (self.created_at, self.id)
    }
}

impl Ordered for Target {
    fn id(&self) -> Uuid {
        self.id
    }
    fn order(&self) -> (i64, Uuid) {
        (self.created_at, self.id)
    }
}

/// Puts `item` into `list` (kept in creation order), replacing the entry with its id.
fn put_ordered<T: Ordered>(list: &mut Vec<Arc<T>>, item: Arc<T>) {
    list.retain(|x| x.id() != item.id());
    let at = list.partition_point(|x| x.order() < item.order());
    list.insert(at, item);
}

impl Catalog {
    pub(crate) fn build(
        webhooks: Vec<Webhook>,
        entrypoints: Vec<Entrypoint>,
        targets: Vec<Target>,
        paused: HashMap<Uuid, Millis>,
    ) -> Catalog {
        let mut c = Catalog {
            paused,
            ..Catalog::default()
        };
        for w in webhooks {
            c.webhooks.insert(w.id, Arc::new(w));
        }
        c.webhooks_newest_first = c.webhooks.values().cloned().collect();
        c.webhooks_newest_first
            .sort_by_key(|w| std::cmp::Reverse(w.order()));
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
            v.sort_by_key(|t| t.order());
        }
        for v in c.entrypoints_by_webhook.values_mut() {
            v.sort_by_key(|e| e.order());
        }
        c
    }

    /// Adds a webhook or replaces the one with its id.
    pub(crate) fn put_webhook(&mut self, webhook: Webhook) {
        let webhook = Arc::new(webhook);
        let list = &mut self.webhooks_newest_first;
        list.retain(|w| w.id != webhook.id);
        let at = list.partition_point(|w| w.order() > webhook.order());
        list.insert(at, webhook.clone());
        self.webhooks.insert(webhook.id, webhook);
    }

    /// Removes a webhook with its entrypoints and targets.
    pub(crate) fn remove_webhook(&mut self, id: Uuid) {
        if self.webhooks.remove(&id).is_some() {
            self.webhooks_newest_first.retain(|w| w.id != id);
        }
        for e in self.entrypoints_by_webhook.remove(&id).unwrap_or_default() {
            self.entrypoints.remove(&e.id);
        }
        for t in self.targets_by_webhook.remove(&id).unwrap_or_default() {
            self.targets.remove(&t.id);
            self.paused.remove(&t.id);
        }
    }

    /// Adds an entrypoint or replaces the one with its id.
    pub(crate) fn put_entrypoint(&mut self, entrypoint: Entrypoint) {
        let entrypoint = Arc::new(entrypoint);
        put_ordered(
            self.entrypoints_by_webhook
                .entry(entrypoint.webhook_id)
                .or_default(),
            entrypoint.clone(),
        );
        self.entrypoints.insert(entrypoint.id, entrypoint);
    }

    /// Removes an entrypoint.
    pub(crate) fn remove_entrypoint(&mut self, id: Uuid) {
        if let Some(e) = self.entrypoints.remove(&id)
            && let Some(list) = self.entrypoints_by_webhook.get_mut(&e.webhook_id)
        {
            list.retain(|x| x.id != id);
        }
    }

    /// Adds a target or replaces the one with its id.
    pub(crate) fn put_target(&mut self, target: Target) {
        let target = Arc::new(target);
        put_ordered(
            self.targets_by_webhook
                .entry(target.webhook_id)
                .or_default(),
            target.clone(),
        );
        self.targets.insert(target.id, target);
    }

    /// Pauses a target since `since`, or (`None`) resumes it.
    pub(crate) fn set_paused(&mut self, id: Uuid, since: Option<Millis>) {
        match since {
            Some(at) => self.paused.insert(id, at),
            None => self.paused.remove(&id),
        };
    }

    /// Removes a target.
    pub(crate) fn remove_target(&mut self, id: Uuid) {
        self.paused.remove(&id);
        if let Some(t) = self.targets.remove(&id)
            && let Some(list) = self.targets_by_webhook.get_mut(&t.webhook_id)
        {
            list.retain(|x| x.id != id);
        }
    }

    /// All webhooks, newest first.
    pub fn webhooks(&self) -> Vec<Arc<Webhook>> {
        self.webhooks_newest_first.clone()
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

    /// Since when the target is paused; `None` if it is not.
    pub fn paused_since(&self, target_id: Uuid) -> Option<Millis> {
        self.paused.get(&target_id).copied()
    }

    /// Whether the target is paused.
    pub fn is_paused(&self, target_id: Uuid) -> bool {
        self.paused.contains_key(&target_id)
    }

    /// Every paused target.
    pub fn paused_targets(&self) -> impl Iterator<Item = Uuid> + '_ {
        self.paused.keys().copied()
    }

    /// A webhook's entrypoints in creation order.
    pub fn entrypoints_of(&self, webhook_id: Uuid) -> &[Arc<Entrypoint>] {
        self.entrypoints_by_webhook
            .get(&webhook_id)
            .map(Vec::as_slice)
            .unwrap_or(&[])
    }
}
