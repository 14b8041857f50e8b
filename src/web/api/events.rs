//! Events over JSON: list, detail with attempts, redeliver.

use axum::Json;
use axum::body::{Body, Bytes};
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::IntoResponse;
use axum::response::Response;
use serde_json::json;
use uuid::Uuid;

use super::dto::{DeliveryOut, EventFilterIn, EventOut, ExportQuery, PageQuery, RedeliverIn};
use super::{ApiBody, ApiPath, ApiQuery};
use crate::service::{ExportCursor, Service};
use crate::store::EventWithBody;
use crate::web::AppState;
use crate::web::auth::ApiUser;
use crate::web::error::ApiError;

type ApiResult<T> = Result<T, ApiError>;

/// Default page size.
const DEFAULT_PER_PAGE: usize = 25;
/// Body bytes per event in a list (`body_truncated` says when there is more; the event
/// detail has all of it).
const LIST_BODY_LIMIT: usize = 64 * 1024;

pub(super) async fn list(
    _: ApiUser,
    State(service): State<Service>,
    ApiPath(id): ApiPath<Uuid>,
    ApiQuery(q): ApiQuery<PageQuery>,
) -> ApiResult<Json<serde_json::Value>> {
    let filter = q.filter().to_filter()?;
    if !filter.is_empty() {
        let found = service
            .find_events(
                id,
                filter,
                q.page.unwrap_or(1),
                q.per_page.unwrap_or(DEFAULT_PER_PAGE),
                LIST_BODY_LIMIT,
            )
            .await?;
        let names = target_names(&service, id).await;
        let events: Vec<EventOut> = found.events.iter().map(|e| event_out(e, &names)).collect();
        return Ok(Json(json!({
            "events": events,
            "page": found.page,
            "per_page": found.per_page,
            "matched": found.matched,
            "has_more": found.has_more(),
            "scanned": found.scan.scanned,
            "scan_complete": found.scan.complete,
        })));
    }
    let page = service
        .list_events(
            id,
            q.page.unwrap_or(1),
            q.per_page.unwrap_or(DEFAULT_PER_PAGE),
            LIST_BODY_LIMIT,
        )
        .await?;
    let names = target_names(&service, id).await;
    let events: Vec<EventOut> = page.events.iter().map(|e| event_out(e, &names)).collect();
    Ok(Json(json!({
        "events": events,
        "page": page.page,
        "per_page": page.per_page,
        "total": page.total,
        "pages": page.pages(),
    })))
}

fn event_out(e: &EventWithBody, names: &impl Fn(Uuid) -> Option<String>) -> EventOut {
    let deliveries = e
        .deliveries
        .iter()
        .map(|d| DeliveryOut::new(d, names(d.target_id), None))
        .collect();
    EventOut::new(&e.event, &e.body, deliveries)
}

async fn target_names(service: &Service, webhook_id: Uuid) -> impl Fn(Uuid) -> Option<String> {
    let targets = service
        .webhook(webhook_id)
        .await
        .map(|v| v.targets)
        .unwrap_or_default();
    move |id| targets.iter().find(|t| t.id == id).map(|t| t.name.clone())
}

pub(super) async fn read(
    _: ApiUser,
    State(service): State<Service>,
    ApiPath((id, event_id)): ApiPath<(Uuid, Uuid)>,
) -> ApiResult<Json<EventOut>> {
    let detail = service.event(id, event_id).await?;
    let names = target_names(&service, id).await;
    let deliveries = detail
        .deliveries
        .iter()
        .map(|(d, results)| DeliveryOut::new(d, names(d.target_id), Some(results)))
        .collect();
    Ok(Json(EventOut::new(&detail.event, &detail.body, deliveries)))
}

pub(super) async fn redeliver(
    _: ApiUser,
    State(service): State<Service>,
    ApiPath((id, event_id)): ApiPath<(Uuid, Uuid)>,
    ApiBody(body): ApiBody,
) -> ApiResult<impl IntoResponse> {
    // The body is optional: no body (or `{}`) redelivers to every active target.
    let input: RedeliverIn = super::optional_json(&body)?;
    let ids = service.redeliver(id, event_id, input.target_id).await?;
    Ok((StatusCode::ACCEPTED, Json(json!({ "deliveries": ids }))))
}

/// `POST /webhooks/{id}/redeliver`: the event log's filter as a JSON body (all fields
/// optional); every matching event is delivered again to its targets (with a status, to
/// those whose latest delivery of it is in that status). Answers how many deliveries were
/// queued; they go out at each target's `max_in_flight`.
pub(super) async fn redeliver_matching(
    _: ApiUser,
    State(service): State<Service>,
    ApiPath(id): ApiPath<Uuid>,
    ApiBody(body): ApiBody,
) -> ApiResult<impl IntoResponse> {
    let input: EventFilterIn = super::optional_json(&body)?;
    let count = service.redeliver_matching(id, input.to_filter()?).await?;
    Ok((StatusCode::ACCEPTED, Json(json!({ "count": count }))))
}

/// GET /webhooks/{id}/events/stream: new events (and delivery changes) as server-sent
/// events, until the client leaves.
pub(super) async fn stream(
    _: ApiUser,
    State(state): State<AppState>,
    ApiPath(id): ApiPath<Uuid>,
) -> ApiResult<Response> {
    state.service.webhook(id).await?;
    Ok(crate::web::live::stream(state.engine.live(), id)?)
}

/// POST /webhooks/{id}/test-event: a sample event through ingest, answered like ingest.
pub(super) async fn test_event(
    _: ApiUser,
    State(state): State<AppState>,
    ApiPath(id): ApiPath<Uuid>,
) -> ApiResult<Json<serde_json::Value>> {
    state.service.webhook(id).await?;
    let event_id = state.ingestor.send_test(id).await?;
    Ok(Json(json!({ "status": "ok", "event_id": event_id })))
}

/// The webhook's events as NDJSON (the format of `webhooker export`), streamed a page at a
/// time: the next page is read only when the previous one has been sent, so a large
/// export or a slow client holds one page in memory and no thread.
pub(super) async fn export(
    _: ApiUser,
    State(service): State<Service>,
    ApiPath(id): ApiPath<Uuid>,
    ApiQuery(q): ApiQuery<ExportQuery>,
) -> ApiResult<axum::response::Response> {
    let since = match q.since.as_deref() {
        Some(s) => Some(
            s.parse::<jiff::Timestamp>()
                .map_err(|e| {
                    ApiError::new(StatusCode::BAD_REQUEST, format!("since: not RFC 3339: {e}"))
                })?
                .as_millisecond(),
        ),
        None => None,
    };
    service.webhook(id).await?;
    // The header and first page before answering, so a failure is a status, not a cut.
    let (first, cursor) = service.export_chunk(ExportCursor::new(id, since)).await?;
    let pages = futures_util::stream::unfold(
        (service, Some(cursor), first),
        move |(service, cursor, ready)| async move {
            if let Some(chunk) = ready {
                return Some((Ok(Bytes::from(chunk)), (service, cursor, None)));
            }
            let cursor = cursor?;
            match service.export_chunk(cursor).await {
                Ok((Some(chunk), cursor)) => {
                    Some((Ok(Bytes::from(chunk)), (service, Some(cursor), None)))
                }
                Ok((None, _)) => None,
                // Ends the response early: the client sees an incomplete transfer.
                Err(e) => {
                    tracing::error!(webhook = %id, error = %e, "export failed midway");
                    Some((Err(std::io::Error::other(e)), (service, None, None)))
                }
            }
        },
    );
    Ok((
        [
            (header::CONTENT_TYPE, "application/x-ndjson".to_string()),
            (
                header::CONTENT_DISPOSITION,
                format!("attachment; filename=\"webhook-{id}.ndjson\""),
            ),
        ],
        Body::from_stream(pages),
    )
        .into_response())
}
