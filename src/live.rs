//! Live updates for whoever watches a webhook (the event log and event pages, the API's
//! event stream): new events after their commit, and delivery status changes after
//! theirs.
//!
//! One bounded `tokio::sync::broadcast` channel per watched webhook, created by the first
//! watcher and removed with the last. Publishing never waits: a send to a broadcast
//! channel overwrites the oldest message instead of waiting for a slow watcher, and such a
//! watcher is dropped when it next reads ([`Subscription::next`] ends), so ingest and the
//! delivery engine never slow down for a viewer. A webhook nobody watches costs one map
//! look-up per publish.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, RwLock};

use tokio::sync::broadcast;
use uuid::Uuid;

use crate::model::{DeliveryStatus, Millis};

/// Most live watchers at once, over all webhooks: each holds a connection for as long as
/// it watches.
pub const MAX_LIVE_SUBSCRIBERS: usize = 64;
/// Updates a watcher may fall behind by before it is dropped.
pub const LIVE_CHANNEL_CAPACITY: usize = 256;

/// Something a watcher of a webhook learns.
#[derive(Debug, Clone, PartialEq)]
pub enum LiveUpdate {
    /// A new event was committed.
    Event(LiveEvent),
    /// A delivery's new state was committed.
    Delivery(LiveDelivery),
}

/// A new event, as the event log lists it.
#[derive(Debug, Clone, PartialEq)]
pub struct LiveEvent {
    /// Event id.
    pub id: Uuid,
    /// Arrival time.
    pub received_at: Millis,
    /// HTTP method.
    pub method: String,
    /// Content-Type, if any.
    pub content_type: Option<String>,
    /// Body length.
    pub body_len: u64,
    /// Its deliveries: (delivery, target, status).
    pub deliveries: Vec<(Uuid, Uuid, DeliveryStatus)>,
}

/// A delivery's state after an attempt.
#[derive(Debug, Clone, PartialEq)]
pub struct LiveDelivery {
    /// Its event.
    pub event_id: Uuid,
    /// The delivery.
    pub delivery_id: Uuid,
    /// Its target.
    pub target_id: Uuid,
    /// Status now.
    pub status: DeliveryStatus,
    /// Attempts made.
    pub attempts: u32,
    /// When the next attempt is due.
    pub next_attempt_at: Option<Millis>,
}

/// Why a watcher was not let in.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum LiveError {
    /// [`MAX_LIVE_SUBSCRIBERS`] watchers are connected already.
    #[error("too many live viewers ({MAX_LIVE_SUBSCRIBERS}); try again later")]
    Full,
    /// The server is shutting down.
    #[error("the server is shutting down")]
    Closed,
}

type Channel = broadcast::Sender<Arc<LiveUpdate>>;

/// The channels of watched webhooks.
#[derive(Default)]
pub struct LiveHub {
    channels: RwLock<HashMap<Uuid, Channel>>,
    subscribers: AtomicUsize,
    closed: AtomicBool,
}

impl LiveHub {
    /// Whether anyone watches `webhook_id` (so an update is worth building).
    pub fn watched(&self, webhook_id: Uuid) -> bool {
        self.read().contains_key(&webhook_id)
    }

    /// Sends `update` to the webhook's watchers, if any. Never waits for them.
    pub fn publish(&self, webhook_id: Uuid, update: LiveUpdate) {
        if let Some(channel) = self.read().get(&webhook_id) {
            // No receiver left (the last one is being dropped): nobody to tell.
            let _unheard = channel.send(Arc::new(update));
        }
    }

    /// Starts watching `webhook_id`.
    pub fn subscribe(self: &Arc<Self>, webhook_id: Uuid) -> Result<Subscription, LiveError> {
        let mut channels = self.write();
        if self.closed.load(Ordering::Acquire) {
            return Err(LiveError::Closed);
        }
        if self.subscribers.load(Ordering::Acquire) >= MAX_LIVE_SUBSCRIBERS {
            return Err(LiveError::Full);
        }
        self.subscribers.fetch_add(1, Ordering::AcqRel);
        let rx = channels
            .entry(webhook_id)
            .or_insert_with(|| broadcast::channel(LIVE_CHANNEL_CAPACITY).0)
            .subscribe();
        Ok(Subscription {
            rx,
            hub: self.clone(),
            webhook_id,
        })
    }

    /// Watchers connected now.
    pub fn subscribers(&self) -> usize {
        self.subscribers.load(Ordering::Acquire)
    }

    /// Ends every watch (their streams end once they have read what was sent) and refuses
    /// new ones: open streams must not hold up the server's drain at shutdown.
    pub fn close(&self) {
        let mut channels = self.write();
        self.closed.store(true, Ordering::Release);
        channels.clear();
    }

    fn read(&self) -> std::sync::RwLockReadGuard<'_, HashMap<Uuid, Channel>> {
        self.channels.read().unwrap_or_else(|p| p.into_inner())
    }

    fn write(&self) -> std::sync::RwLockWriteGuard<'_, HashMap<Uuid, Channel>> {
        self.channels.write().unwrap_or_else(|p| p.into_inner())
    }
}

/// One watcher of one webhook; dropping it leaves.
pub struct Subscription {
    rx: broadcast::Receiver<Arc<LiveUpdate>>,
    hub: Arc<LiveHub>,
    webhook_id: Uuid,
}

impl Subscription {
    /// The next update; `None` when the watch is over: the server is closing, or this
    /// watcher fell more than [`LIVE_CHANNEL_CAPACITY`] updates behind (a slow viewer is
    /// dropped rather than waited for; it may reconnect and reload).
    pub async fn next(&mut self) -> Option<Arc<LiveUpdate>> {
        self.rx.recv().await.ok()
    }
}

impl Drop for Subscription {
    fn drop(&mut self) {
        let mut channels = self.hub.write();
        self.hub.subscribers.fetch_sub(1, Ordering::AcqRel);
        // This receiver is still counted: it is the last one when the count is 1.
        if channels
            .get(&self.webhook_id)
            .is_some_and(|c| c.receiver_count() <= 1)
        {
            channels.remove(&self.webhook_id);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn delivery(attempts: u32) -> LiveUpdate {
        LiveUpdate::Delivery(LiveDelivery {
            event_id: Uuid::nil(),
            delivery_id: Uuid::nil(),
            target_id: Uuid::nil(),
            status: DeliveryStatus::Retrying,
            attempts,
            next_attempt_at: None,
        })
    }

    #[tokio::test]
    async fn watchers_get_updates_of_their_webhook_only() {
        let hub = Arc::new(LiveHub::default());
        let (a, b) = (Uuid::new_v4(), Uuid::new_v4());
        assert!(!hub.watched(a));
        let mut sub = hub.subscribe(a).unwrap();
        assert!(hub.watched(a) && !hub.watched(b));
        hub.publish(b, delivery(9));
        hub.publish(a, delivery(1));
        assert_eq!(*sub.next().await.unwrap(), delivery(1));
        drop(sub);
        assert!(!hub.watched(a), "the last watcher removes the channel");
        assert_eq!(hub.subscribers(), 0);
    }

    #[tokio::test]
    async fn a_slow_watcher_is_dropped_and_publishing_never_waits() {
        let hub = Arc::new(LiveHub::default());
        let id = Uuid::new_v4();
        let mut slow = hub.subscribe(id).unwrap();
        for i in 0..(LIVE_CHANNEL_CAPACITY as u32 * 2) {
            hub.publish(id, delivery(i));
        }
        assert!(slow.next().await.is_none(), "lagged behind: dropped");
    }

    #[tokio::test]
    async fn watchers_are_capped_and_close_ends_them() {
        let hub = Arc::new(LiveHub::default());
        let subs: Vec<_> = (0..MAX_LIVE_SUBSCRIBERS)
            .map(|_| hub.subscribe(Uuid::new_v4()).unwrap())
            .collect();
        assert_eq!(hub.subscribe(Uuid::new_v4()).err(), Some(LiveError::Full));
        drop(subs);
        let mut sub = hub.subscribe(Uuid::new_v4()).unwrap();
        hub.close();
        assert!(sub.next().await.is_none());
        assert_eq!(hub.subscribe(Uuid::new_v4()).err(), Some(LiveError::Closed));
    }
}
