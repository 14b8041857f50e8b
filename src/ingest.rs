//! Ingest (BRIEF R2): turn an accepted request into a durable event with one delivery per
//! active target, committed in ONE transaction before the sender hears 200 (I1), then hand
//! the deliveries to the engine without ever blocking on it.

use std::sync::Arc;

use bytes::Bytes;
use uuid::Uuid;

use crate::delivery::{DeliveryTask, Engine, EventPayload};
use crate::metrics as m;
use crate::model::{Delivery, Entrypoint, Event, now_ms};
use crate::store::{EventStore, NewEvent, Store, StoreError, WriteOp};

/// Why a webhook was not accepted.
#[derive(Debug, thiserror::Error)]
pub enum IngestError {
    /// No entrypoint has this id (or the id is not a hyphenated UUID).
    #[error("unknown entrypoint")]
    UnknownEntrypoint,
    /// The entrypoint exists but is switched off.
    #[error("entrypoint is inactive")]
    InactiveEntrypoint,
    /// The body exceeds `MAX_BODY_BYTES`.
    #[error("body exceeds {limit} bytes")]
    BodyTooLarge {
        /// The configured limit.
        limit: usize,
    },
    /// The body could not be read from the connection.
    #[error("could not read request body")]
    BodyUnreadable,
    /// The body stalled or took longer than the server allows.
    #[error("the request body did not arrive in time")]
    BodyTimeout,
    /// Too many large bodies are in memory at once; the sender should retry shortly.
    #[error("too many requests in progress; retry shortly")]
    Overloaded,
    /// Storage failed or is saturated; nothing was acknowledged.
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// A request as received, before it becomes an [`Event`].
#[derive(Debug, Clone)]
pub struct IncomingRequest {
    /// Method.
    pub method: String,
    /// Path and query.
    pub path: String,
    /// Headers in order with duplicates, values as raw bytes.
    pub headers: Vec<(String, Vec<u8>)>,
    /// Client address.
    pub remote_addr: String,
    /// Body.
    pub body: Bytes,
}

/// Body bytes that requests in flight may hold in memory together, as a multiple of
/// `MAX_BODY_BYTES` (and at least 64 MiB), so memory does not grow with the number of
/// concurrent senders (I3).
const BODY_BUDGET_BODIES: usize = 8;
/// How long a request may wait for room in the budget before it gets 503.
const BODY_BUDGET_WAIT: std::time::Duration = std::time::Duration::from_secs(10);

/// Accepts webhooks; cheap to clone.
#[derive(Clone)]
pub struct Ingestor {
    store: Arc<Store>,
    engine: Engine,
    max_body_bytes: usize,
    /// Permits are KiB of body memory.
    body_budget: Arc<tokio::sync::Semaphore>,
}

/// Room for one body in the ingest memory budget, held until the request is answered. It
/// grows as the body arrives ([`BodyReservation::cover`]), so a client that declares 10 MiB
/// and then stalls holds only what it has sent.
pub struct BodyReservation {
    permit: tokio::sync::OwnedSemaphorePermit,
    /// The body limit in KiB: the reservation never grows past it.
    max_kib: u32,
}

impl BodyReservation {
    /// Makes the reservation cover at least `bytes`. It grows at least twofold each time, so
    /// a large body waits for the budget a few times, not once per piece.
    pub async fn cover(&mut self, bytes: usize) -> Result<(), IngestError> {
        let held = u32::try_from(self.permit.num_permits()).unwrap_or(u32::MAX);
        let need = kib(bytes);
        if need <= held {
            return Ok(());
        }
        let want = need.max(held.saturating_mul(2)).min(self.max_kib.max(need));
        let more = acquire(self.permit.semaphore().clone(), want - held).await?;
        self.permit.merge(more);
        Ok(())
    }
}

/// Bytes as whole KiB (the budget's unit), at least 1.
fn kib(bytes: usize) -> u32 {
    u32::try_from(bytes.div_ceil(1024).max(1)).unwrap_or(u32::MAX)
}

/// Takes `kib` permits from the budget, waiting at most [`BODY_BUDGET_WAIT`].
async fn acquire(
    budget: Arc<tokio::sync::Semaphore>,
    kib: u32,
) -> Result<tokio::sync::OwnedSemaphorePermit, IngestError> {
    tokio::time::timeout(BODY_BUDGET_WAIT, budget.acquire_many_owned(kib))
        .await
        .map_err(|_| IngestError::Overloaded)?
        .map_err(|_| IngestError::Overloaded)
}

impl Ingestor {
    /// An ingestor writing to `store` and feeding `engine`.
    pub fn new(store: Arc<Store>, engine: Engine, max_body_bytes: usize) -> Ingestor {
        let budget_kib = (max_body_bytes.saturating_mul(BODY_BUDGET_BODIES) / 1024).max(64 * 1024);
        Ingestor {
            store,
            engine,
            max_body_bytes,
            body_budget: Arc::new(tokio::sync::Semaphore::new(budget_kib)),
        }
    }

    /// Reserves memory for the first `bytes` of a body before reading it (grow it with
    /// [`BodyReservation::cover`] as more arrives); waits a little for room, then gives up.
    pub async fn reserve_body(&self, bytes: usize) -> Result<BodyReservation, IngestError> {
        let max_kib = kib(self.max_body_bytes);
        let permit = acquire(self.body_budget.clone(), kib(bytes).min(max_kib)).await?;
        Ok(BodyReservation { permit, max_kib })
    }

    /// The body size limit.
    pub fn max_body_bytes(&self) -> usize {
        self.max_body_bytes
    }

    /// Resolves an entrypoint id from the URL, before the body is read (no I/O).
    pub fn entrypoint(&self, raw_id: &str) -> Result<Arc<Entrypoint>, IngestError> {
        // Only the hyphenated spelling that the UI shows (either case): `{…}`, `urn:uuid:…`
        // and unhyphenated aliases of one entrypoint would be needless extra URLs.
        if raw_id.len() != uuid::fmt::Hyphenated::LENGTH {
            return Err(IngestError::UnknownEntrypoint);
        }
        let id = Uuid::parse_str(raw_id).map_err(|_| IngestError::UnknownEntrypoint)?;
        let catalog = self.store.catalog();
        let entrypoint = catalog
            .entrypoint(id)
            .ok_or(IngestError::UnknownEntrypoint)?;
        if !entrypoint.active {
            return Err(IngestError::InactiveEntrypoint);
        }
        Ok(entrypoint.clone())
    }

    /// Stores the event and its deliveries durably, then queues the deliveries.
    /// Returns the event id once the commit is on disk.
    pub async fn accept(
        &self,
        entrypoint: &Entrypoint,
        req: IncomingRequest,
    ) -> Result<Uuid, IngestError> {
        if req.body.len() > self.max_body_bytes {
            return Err(IngestError::BodyTooLarge {
                limit: self.max_body_bytes,
            });
        }
        let webhook_id = entrypoint.webhook_id;
        let catalog = self.store.catalog();
        let targets: Vec<_> = catalog
            .targets_of(webhook_id)
            .iter()
            .filter(|t| t.active)
            .cloned()
            .collect();
        let now = now_ms();
        let content_type = req
            .headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case("content-type"))
            .map(|(_, v)| String::from_utf8_lossy(v).into_owned());
        let event = Event {
            id: Uuid::now_v7(),
            entrypoint_id: entrypoint.id,
            received_at: now,
            method: req.method,
            path: req.path,
            headers: req.headers,
            content_type,
            remote_addr: req.remote_addr,
            body_len: req.body.len() as u64,
        };
        let mut deliveries = Vec::with_capacity(targets.len());
        let mut tasks = Vec::with_capacity(targets.len());
        let mut local_targets = Vec::new();
        // Built only if some delivery goes through the engine (it copies the headers).
        let mut payload: Option<Arc<EventPayload>> = None;
        for target in targets {
            let delivery = Delivery::for_target(event.id, &target, now);
            if !delivery.needs_engine() {
                local_targets.push(target.id);
            } else {
                let event = payload
                    .get_or_insert_with(|| Arc::new(EventPayload::new(&event, req.body.clone())))
                    .clone();
                tasks.push(DeliveryTask {
                    webhook_id,
                    target,
                    event,
                    delivery: delivery.clone(),
                });
            }
            deliveries.push(delivery);
        }
        let event_id = event.id;
        let body_len = req.body.len();

        let store = self.event_store(webhook_id).await?;
        let (tx, rx) = tokio::sync::oneshot::channel();
        let engine = self.engine.clone();
        store.try_submit(
            WriteOp::Ingest(NewEvent {
                event,
                body: req.body,
                deliveries,
            }),
            Box::new(move |r| {
                // Dispatch here, on the writer thread right after the commit: any later
                // commit for these deliveries goes through this same writer, so none can
                // have finished (and left memory) before they are queued (I5).
                if r.is_ok() {
                    engine.dispatch(tasks);
                }
                // The receiver only goes away if the client hung up; the event is stored.
                let _unused = tx.send(r);
            }),
        )?;
        rx.await.map_err(|_| StoreError::Closed)??;

        let webhook = webhook_id.to_string();
        metrics::counter!(m::EVENTS_RECEIVED, "webhook" => webhook.clone()).increment(1);
        metrics::counter!(m::EVENT_BODY_BYTES, "webhook" => webhook).increment(body_len as u64);
        local_targets.into_iter().for_each(m::delivered_by_commit);
        Ok(event_id)
    }

    async fn event_store(&self, webhook_id: Uuid) -> Result<Arc<EventStore>, StoreError> {
        if let Some(s) = self.store.events_if_open(webhook_id) {
            return Ok(s);
        }
        let store = self.store.clone();
        tokio::task::spawn_blocking(move || store.events(webhook_id))
            .await
            .map_err(|_| StoreError::Closed)?
    }
}
