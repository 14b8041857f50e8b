//! Server-sent events of one webhook (`live::LiveHub`): the API's `events/stream` for
//! `curl -N`, and the same stream for the pages, which reload their live part on each.
//!
//! A new event is a default `message` with one `data:` line of JSON (id, received_at,
//! method, content_type, body_size, deliveries); a delivery's new status is an
//! `event: delivery` message, so a client that only wants new events ignores it. A comment
//! every 15 s keeps proxies from closing an idle stream.

use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;

use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use futures_util::stream;
use serde::Serialize;
use uuid::Uuid;

use super::api::rfc3339;
use crate::live::{LiveError, LiveHub, LiveUpdate};

/// How often an idle stream sends a keep-alive comment.
const KEEP_ALIVE: Duration = Duration::from_secs(15);

#[derive(Serialize)]
struct EventNews<'a> {
    id: Uuid,
    received_at: String,
    method: &'a str,
    content_type: Option<&'a str>,
    body_size: u64,
    deliveries: Vec<DeliveryState>,
}

#[derive(Serialize)]
struct DeliveryState {
    id: Uuid,
    target_id: Uuid,
    status: &'static str,
}

#[derive(Serialize)]
struct DeliveryNews {
    event_id: Uuid,
    delivery_id: Uuid,
    target_id: Uuid,
    status: &'static str,
    attempts: u32,
    next_attempt_at: Option<String>,
}

/// The SSE message for an update.
fn message(update: &LiveUpdate) -> Event {
    let (kind, json) = match update {
        LiveUpdate::Event(e) => (
            None,
            serde_json::to_string(&EventNews {
                id: e.id,
                received_at: rfc3339(e.received_at),
                method: &e.method,
                content_type: e.content_type.as_deref(),
                body_size: e.body_len,
                deliveries: e
                    .deliveries
                    .iter()
                    .map(|&(id, target_id, ref status)| DeliveryState {
                        id,
                        target_id,
                        status: status.as_str(),
                    })
                    .collect(),
            }),
        ),
        LiveUpdate::Delivery(d) => (
            Some("delivery"),
            serde_json::to_string(&DeliveryNews {
                event_id: d.event_id,
                delivery_id: d.delivery_id,
                target_id: d.target_id,
                status: d.status.as_str(),
                attempts: d.attempts,
                next_attempt_at: d.next_attempt_at.map(rfc3339),
            }),
        ),
    };
    // These structs always serialise; an empty object is the harmless fallback.
    let event = Event::default().data(json.unwrap_or_else(|_| "{}".into()));
    match kind {
        Some(kind) => event.event(kind),
        None => event,
    }
}

/// The live stream of `webhook_id` (whose existence the caller has checked). Ends when the
/// server shuts down or the client falls too far behind.
pub(super) fn stream(hub: &Arc<LiveHub>, webhook_id: Uuid) -> Result<Response, LiveError> {
    let subscription = hub.subscribe(webhook_id)?;
    let updates = stream::unfold(subscription, |mut sub| async move {
        let update = sub.next().await?;
        Some((Ok::<_, Infallible>(message(&update)), sub))
    });
    Ok(Sse::new(updates)
        .keep_alive(KeepAlive::new().interval(KEEP_ALIVE))
        .into_response())
}
