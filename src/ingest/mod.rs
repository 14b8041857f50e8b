//! Ingest: turn an accepted request into a durable event with one delivery per
//! active target, committed in ONE transaction before the sender hears 200 (I1), then hand
//! the deliveries to the engine without ever blocking on it. A webhook's sender
//! verification (`verify.rs`) runs first, in memory: a refused request writes nothing and
//! is remembered only in the bounded in-memory log of `rejected.rs`.

mod budget;
mod rejected;
mod verify;

use std::net::IpAddr;
use std::sync::Arc;

use bytes::Bytes;
use uuid::Uuid;

use crate::delivery::{DeliveryPlan, Engine, EventPayload};
use crate::live::{LiveEvent, LiveUpdate};
use crate::metrics as m;
use crate::model::{Entrypoint, Event, Millis, TEST_EVENT_ORIGIN, Verification, now_ms};
use crate::routing::{self, Dedupe, Filter, RequestView};
use crate::store::{DedupeKey, EventStore, NewEvent, Store, StoreError, WriteOp};
use budget::BodyBudget;
pub use budget::BodyReservation;
use rejected::RejectionLog;
pub use rejected::{KEPT_BODY_BYTES, RejectedRequest};
pub use verify::Rejection;

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
    /// The body held room in the memory budget but came in too slowly to fill it.
    #[error("the request body arrived too slowly")]
    BodyTooSlow,
    /// The body came in a flood of tiny pieces (each costs far more to handle than it
    /// carries).
    #[error("the request body arrived in too many tiny pieces")]
    BodyFragmented,
    /// The webhook's sender verification refused the request; nothing was stored.
    #[error("request not verified: {0}")]
    Unverified(Rejection),
    /// The request has been forwarded by webhooker more than `routing::MAX_HOPS` times: a
    /// delivery loop. Nothing was stored.
    #[error("loop detected: the request has been forwarded {hops} times (at most {max} accepted)", max = crate::routing::MAX_HOPS)]
    LoopDetected {
        /// Its hop count.
        hops: u32,
    },
    /// Too many large bodies are in memory at once, or this sender's client already holds
    /// its share of them; the sender should retry shortly.
    #[error("too many requests in progress; retry shortly")]
    Overloaded,
    /// A test event needs an active entrypoint to arrive on, and the webhook has none.
    #[error("the webhook has no active entrypoint to send a test event to")]
    NoActiveEntrypoint,
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

impl IncomingRequest {
    /// The event this request becomes when received at `now` on `entrypoint_id`, and its
    /// body.
    pub fn into_event(self, entrypoint_id: Uuid, now: Millis) -> (Event, Bytes) {
        let content_type = self
            .headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case("content-type"))
            .map(|(_, v)| String::from_utf8_lossy(v).into_owned());
        let event = Event {
            id: Uuid::now_v7(),
            entrypoint_id,
            received_at: now,
            method: self.method,
            path: self.path,
            headers: self.headers,
            content_type,
            remote_addr: self.remote_addr,
            body_len: self.body.len() as u64,
        };
        (event, self.body)
    }
}

/// What every entrypoint URL's path starts with.
pub const ENTRYPOINT_PATH_PREFIX: &str = "/webhook/";

/// The entrypoint id an entrypoint URL spells: only the hyphenated spelling that the UI
/// shows (either case); `{…}`, `urn:uuid:…` and unhyphenated aliases of one entrypoint
/// would be needless extra URLs.
pub fn entrypoint_id(raw_id: &str) -> Option<Uuid> {
    if raw_id.len() != uuid::fmt::Hyphenated::LENGTH {
        return None;
    }
    Uuid::parse_str(raw_id).ok()
}

/// The entrypoint id of a path that is exactly an entrypoint URL's (`/webhook/{id}`).
pub fn entrypoint_id_in_path(path: &str) -> Option<Uuid> {
    path.strip_prefix(ENTRYPOINT_PATH_PREFIX)
        .and_then(entrypoint_id)
}

/// What ingest did with an accepted request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Accepted {
    /// The stored event: this request's, or for a duplicate the first one with its key.
    pub event_id: Uuid,
    /// The request repeated an idempotency key stored within the webhook's window:
    /// nothing was stored or delivered.
    pub duplicate: bool,
}

/// Accepts webhooks; cheap to clone.
#[derive(Clone)]
pub struct Ingestor {
    store: Arc<Store>,
    engine: Engine,
    max_body_bytes: usize,
    body_budget: BodyBudget,
    rejections: RejectionLog,
}

impl Ingestor {
    /// An ingestor writing to `store` and feeding `engine`.
    pub fn new(store: Arc<Store>, engine: Engine, max_body_bytes: usize) -> Ingestor {
        Ingestor {
            store,
            engine,
            max_body_bytes,
            body_budget: BodyBudget::new(max_body_bytes, budget::BODY_BUDGET_WAIT),
            rejections: RejectionLog::default(),
        }
    }

    /// The last requests the webhook's verification refused, newest first (in memory
    /// only: a restart forgets them).
    pub fn rejected(&self, webhook_id: Uuid) -> Vec<Arc<RejectedRequest>> {
        self.rejections.of(webhook_id)
    }

    /// Reserves memory for a body from `client` before it is read: all of a `declared`
    /// length over the unbudgeted start, or nothing yet for an unknown length (see
    /// [`BodyReservation`]). `client` is what the sender is counted under (its IPv4 address
    /// or IPv6 /64, `web::client_key`): one client may hold at most a quarter of the budget.
    /// Waits a little for room, then gives up with [`IngestError::Overloaded`].
    pub async fn reserve_body(
        &self,
        declared: Option<usize>,
        client: IpAddr,
    ) -> Result<BodyReservation, IngestError> {
        self.body_budget.reserve(declared, client).await
    }

    /// The body size limit.
    pub fn max_body_bytes(&self) -> usize {
        self.max_body_bytes
    }

    /// Resolves an entrypoint id from the URL, before the body is read (no I/O).
    pub fn entrypoint(&self, raw_id: &str) -> Result<Arc<Entrypoint>, IngestError> {
        let id = entrypoint_id(raw_id).ok_or(IngestError::UnknownEntrypoint)?;
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
    /// Returns the event id once the commit is on disk, or the first event's id when the
    /// request is a duplicate (see [`Accepted`]). `reservation`, the body's room in the
    /// memory budget, is given back when the writer is done with the body: a sender that
    /// hangs up ends this future, but not the write it queued.
    pub async fn accept(
        &self,
        entrypoint: &Entrypoint,
        req: IncomingRequest,
        reservation: BodyReservation,
    ) -> Result<Accepted, IngestError> {
        if req.body.len() > self.max_body_bytes {
            return Err(IngestError::BodyTooLarge {
                limit: self.max_body_bytes,
            });
        }
        let webhook_id = entrypoint.webhook_id;
        let hops = routing::hops(&req.headers);
        if hops > routing::MAX_HOPS {
            metrics::counter!(m::INGEST_LOOPS, "webhook" => webhook_id.to_string()).increment(1);
            tracing::warn!(%webhook_id, hops, "delivery loop: request refused");
            return Err(IngestError::LoopDetected { hops });
        }
        let catalog = self.store.catalog();
        let now = now_ms();
        // Before anything is written or claimed: a refused request costs no disk write
        // and starts no delivery.
        let mut req = req;
        if let Some(webhook) = catalog.webhook(webhook_id)
            && webhook.verification != Verification::None
        {
            if let Err(rejection) =
                verify::verify(&webhook.verification, &req.headers, &req.body, now)
            {
                metrics::counter!(
                    m::INGEST_REJECTED,
                    "webhook" => webhook_id.to_string(),
                    "reason" => rejection.label()
                )
                .increment(1);
                tracing::debug!(%webhook_id, reason = %rejection, client = %req.remote_addr, "webhook request refused");
                self.rejections.record(
                    webhook_id,
                    &webhook.verification,
                    &req,
                    rejection.clone(),
                    now,
                    |id| catalog.webhook(id).is_some(),
                );
                return Err(IngestError::Unverified(rejection));
            }
            // A static credential proved the sender to webhooker: it is not stored, shown
            // or forwarded (a receiver that needs one gets it from a transform).
            if let Some(name) = verify::credential_header(&webhook.verification) {
                req.headers.retain(|(n, _)| !n.eq_ignore_ascii_case(name));
            }
        }
        self.store_event(entrypoint, req, reservation, now, true)
            .await
    }

    /// Sends a sample JSON event through ingest, as if it had arrived on the webhook's
    /// first active entrypoint: stored, delivered and shown like any other, marked as a
    /// test (`Event::is_test`; attempts carry `X-Webhooker-Test: true`). Sender
    /// verification is skipped: the request comes from a signed-in user, not the sender.
    pub async fn send_test(&self, webhook_id: Uuid) -> Result<Uuid, IngestError> {
        let entrypoint = self
            .store
            .catalog()
            .entrypoints_of(webhook_id)
            .iter()
            .find(|e| e.active)
            .cloned()
            .ok_or(IngestError::NoActiveEntrypoint)?;
        let now = now_ms();
        let sent_at = jiff::Timestamp::from_millisecond(now)
            .map(|t| t.to_string())
            .unwrap_or_default();
        let body = serde_json::json!({
            "type": "webhooker.test",
            "message": "A test event sent from webhooker",
            "webhook_id": webhook_id,
            "sent_at": sent_at,
        })
        .to_string();
        let header = |name: &str, value: &str| (name.to_string(), value.as_bytes().to_vec());
        let req = IncomingRequest {
            method: "POST".into(),
            path: format!("/webhook/{}", entrypoint.id),
            headers: vec![
                header("content-type", "application/json"),
                header(
                    "user-agent",
                    concat!("webhooker/", env!("CARGO_PKG_VERSION")),
                ),
                header("x-webhooker-test", "true"),
            ],
            remote_addr: TEST_EVENT_ORIGIN.into(),
            body: Bytes::from(body),
        };
        let reservation = self
            .reserve_body(Some(req.body.len()), IpAddr::from([0, 0, 0, 0]))
            .await?;
        // Never a duplicate: each click stores a new event, and no later request is
        // taken for a duplicate of a test event.
        self.store_event(&entrypoint, req, reservation, now, false)
            .await
            .map(|accepted| accepted.event_id)
    }

    /// Builds the event and its deliveries, commits them and queues the deliveries.
    /// With `dedupes` false the webhook's dedupe key is neither looked up nor stored.
    async fn store_event(
        &self,
        entrypoint: &Entrypoint,
        req: IncomingRequest,
        reservation: BodyReservation,
        now: Millis,
        dedupes: bool,
    ) -> Result<Accepted, IngestError> {
        let webhook_id = entrypoint.webhook_id;
        let catalog = self.store.catalog();
        // Filters and the dedupe key, in memory, before anything is written; the body is
        // read as JSON only if a condition or the key names a path, and then once for all
        // the paths named.
        let (targets, dedupe) = {
            let view = RequestView::new(&req.method, &req.headers, &req.body);
            let active = || catalog.targets_of(webhook_id).iter().filter(|t| t.active);
            let webhook_dedupe = catalog
                .webhook(webhook_id)
                .and_then(|w| w.dedupe.as_ref())
                .filter(|_| dedupes);
            view.find_json(
                active()
                    .filter_map(|t| t.filter.as_ref())
                    .flat_map(Filter::json_pointers)
                    .chain(webhook_dedupe.and_then(Dedupe::json_pointer)),
            );
            let targets: Vec<_> = active()
                .map(|t| {
                    let skip = t.filter.as_ref().and_then(|f| f.check(&view).err());
                    (t.clone(), skip)
                })
                .collect();
            let dedupe = webhook_dedupe.and_then(|d| {
                Some(DedupeKey {
                    key: d.key(&view)?,
                    window_ms: Millis::from(d.window_secs) * 1000,
                })
            });
            (targets, dedupe)
        };
        let (event, body) = req.into_event(entrypoint.id, now);
        let DeliveryPlan {
            deliveries,
            tasks,
            delivered_by_commit,
            skipped,
        } = DeliveryPlan::new(webhook_id, event.id, targets, now, || {
            Arc::new(EventPayload::new(&event, Some(body.clone())))
        });
        let event_id = event.id;
        let body_len = body.len();
        let live = self.engine.live();
        let news = live.watched(webhook_id).then(|| LiveEvent {
            id: event.id,
            received_at: event.received_at,
            method: event.method.clone(),
            content_type: event.content_type.clone(),
            body_len: event.body_len,
            deliveries: deliveries
                .iter()
                .map(|d| (d.id, d.target_id, d.status.clone()))
                .collect(),
        });

        let store = self.event_store(webhook_id).await?;
        let (tx, rx) = tokio::sync::oneshot::channel();
        // The engine's message goes first (delivery starts right after the commit), then
        // the sender's answer; the body's room in the memory budget is held until the
        // writer is done with the body, even if the sender hung up.
        let notice = self
            .engine
            .notice_for(tasks)
            .and_reply(tx)
            .holding(reservation);
        store.try_submit(
            WriteOp::Ingest(NewEvent {
                event,
                body,
                deliveries,
                dedupe,
            }),
            notice,
        )?;
        match rx.await.map_err(|_| StoreError::Closed)? {
            Ok(()) => {}
            // Nothing was written; the engine's claims were released with the notice.
            Err(StoreError::Duplicate(first)) => {
                metrics::counter!(m::INGEST_DUPLICATES, "webhook" => webhook_id.to_string())
                    .increment(1);
                return Ok(Accepted {
                    event_id: first,
                    duplicate: true,
                });
            }
            Err(e) => return Err(e.into()),
        }
        if let Some(news) = news {
            live.publish(webhook_id, LiveUpdate::Event(news));
        }

        let webhook = webhook_id.to_string();
        metrics::counter!(m::EVENTS_RECEIVED, "webhook" => webhook.clone()).increment(1);
        metrics::counter!(m::EVENT_BODY_BYTES, "webhook" => webhook).increment(body_len as u64);
        delivered_by_commit
            .into_iter()
            .for_each(m::delivered_by_commit);
        for target in skipped {
            metrics::counter!(m::DELIVERIES_SKIPPED, "target" => target.to_string()).increment(1);
        }
        Ok(Accepted {
            event_id,
            duplicate: false,
        })
    }

    async fn event_store(&self, webhook_id: Uuid) -> Result<Arc<EventStore>, StoreError> {
        if let Some(s) = self.store.events_if_open(webhook_id) {
            return Ok(s);
        }
        let store = self.store.clone();
        self.store.call(move || store.events(webhook_id)).await?
    }
}
