//! Events over JSON: list, detail with attempts, redeliver.

use axum::Json;
use axum::body::{Body, Bytes};
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::IntoResponse;
use axum::response::Response;
use uuid::Uuid;

use super::dto::{
    DeliveryOut, ErrorOut, EventFilterIn, EventListOut, EventOut, EventPageOut, ExportQuery,
    FoundPageOut, PageQuery, RedeliverIn, RedeliverMatchingOut, RedeliverOut, TestEventOut,
};
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

#[utoipa::path(get, path = "/webhooks/{id}/events", tag = "events", params(("id" = Uuid, Path, description = "the webhook"), PageQuery), responses((status = 200, body = EventListOut, description = "newest first: a plain page, or, with any filter, a filtered one saying how many events it scanned and matched"), (status = 422, description = "a filter that does not parse (the field is named)", body = ErrorOut), (status = 401, description = "not authenticated", body = ErrorOut), (status = 404, description = "no such webhook (or one of its parts)", body = ErrorOut)), security(("basic" = []), ("bearer" = [])))]
pub(super) async fn list(
    _: ApiUser,
    State(service): State<Service>,
    ApiPath(id): ApiPath<Uuid>,
    ApiQuery(q): ApiQuery<PageQuery>,
) -> ApiResult<Json<EventListOut>> {
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
        return Ok(Json(EventListOut::Found(FoundPageOut {
            events,
            page: found.page,
            per_page: found.per_page,
            matched: found.matched,
            has_more: found.has_more(),
            scanned: found.scan.scanned,
            scan_complete: found.scan.complete,
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
    Ok(Json(EventListOut::Page(EventPageOut {
        events,
        page: page.page,
        per_page: page.per_page,
        total: page.total,
        pages: page.pages(),
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

#[utoipa::path(get, path = "/webhooks/{id}/events/{event_id}", tag = "events", params(("id" = Uuid, Path, description = "the webhook"), ("event_id" = Uuid, Path, description = "the event")), responses((status = 200, body = EventOut, description = "with every delivery and attempt"), (status = 401, description = "not authenticated", body = ErrorOut), (status = 404, description = "no such webhook (or one of its parts)", body = ErrorOut)), security(("basic" = []), ("bearer" = [])))]
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

#[utoipa::path(post, path = "/webhooks/{id}/events/{event_id}/redeliver", tag = "events", params(("id" = Uuid, Path, description = "the webhook"), ("event_id" = Uuid, Path, description = "the event")), request_body(content = Option<RedeliverIn>, description = "optional: one target; all active targets without"), responses((status = 202, body = RedeliverOut), (status = 400, description = "malformed JSON", body = ErrorOut), (status = 415, description = "not JSON", body = ErrorOut), (status = 422, description = "invalid input", body = ErrorOut), (status = 401, description = "not authenticated", body = ErrorOut), (status = 404, description = "no such webhook (or one of its parts)", body = ErrorOut)), security(("basic" = []), ("bearer" = [])))]
pub(super) async fn redeliver(
    _: ApiUser,
    State(service): State<Service>,
    ApiPath((id, event_id)): ApiPath<(Uuid, Uuid)>,
    ApiBody(body): ApiBody,
) -> ApiResult<impl IntoResponse> {
    // The body is optional: no body (or `{}`) redelivers to every active target.
    let input: RedeliverIn = super::optional_json(&body)?;
    let ids = service.redeliver(id, event_id, input.target_id).await?;
    Ok((StatusCode::ACCEPTED, Json(RedeliverOut { deliveries: ids })))
}

#[utoipa::path(post, path = "/webhooks/{id}/redeliver", tag = "events", params(("id" = Uuid, Path, description = "the webhook")), request_body(content = Option<EventFilterIn>, description = "the event log's filter (every field optional; none: every event)"), responses((status = 202, body = RedeliverMatchingOut, description = "how many deliveries were queued"), (status = 400, description = "malformed JSON", body = ErrorOut), (status = 415, description = "not JSON", body = ErrorOut), (status = 422, description = "invalid filter", body = ErrorOut), (status = 401, description = "not authenticated", body = ErrorOut), (status = 404, description = "no such webhook (or one of its parts)", body = ErrorOut)), security(("basic" = []), ("bearer" = [])))]
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
    Ok((StatusCode::ACCEPTED, Json(RedeliverMatchingOut { count })))
}

#[utoipa::path(get, path = "/webhooks/{id}/events/stream", tag = "events", params(("id" = Uuid, Path, description = "the webhook")), responses((status = 200, content_type = "text/event-stream", body = String, description = "server-sent events until the client leaves: a `data:` line of JSON per new event (`id`, `received_at`, `method`, `content_type`, `body_size`, `deliveries`), and `event: delivery` messages when a delivery's status changes"), (status = 401, description = "not authenticated", body = ErrorOut), (status = 404, description = "no such webhook (or one of its parts)", body = ErrorOut), (status = 503, description = "too many live streams open", body = ErrorOut)), security(("basic" = []), ("bearer" = [])))]
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

#[utoipa::path(post, path = "/webhooks/{id}/test-event", tag = "events", params(("id" = Uuid, Path, description = "the webhook")), responses((status = 200, body = TestEventOut, description = "stored like an ingested event, marked as a test"), (status = 409, description = "the webhook has no active entrypoint", body = ErrorOut), (status = 401, description = "not authenticated", body = ErrorOut), (status = 404, description = "no such webhook (or one of its parts)", body = ErrorOut), (status = 503, description = "storage saturated or failing", body = ErrorOut)), security(("basic" = []), ("bearer" = [])))]
/// POST /webhooks/{id}/test-event: a sample event through ingest, answered like ingest.
pub(super) async fn test_event(
    _: ApiUser,
    State(state): State<AppState>,
    ApiPath(id): ApiPath<Uuid>,
) -> ApiResult<Json<TestEventOut>> {
    state.service.webhook(id).await?;
    let event_id = state.ingestor.send_test(id).await?;
    Ok(Json(TestEventOut {
        status: "ok",
        event_id,
    }))
}

/// The webhook's events as NDJSON (the format of `webhooker export`), streamed a page at a
/// time: the next page is read only when the previous one has been sent, so a large
/// export or a slow client holds one page in memory and no thread.
#[utoipa::path(get, path = "/webhooks/{id}/export", tag = "events", params(("id" = Uuid, Path, description = "the webhook"), ExportQuery), responses((status = 200, content_type = "application/x-ndjson", body = String, description = "a header line, then one event a line, oldest first (see docs/operations.md)"), (status = 400, body = ErrorOut), (status = 401, description = "not authenticated", body = ErrorOut), (status = 404, description = "no such webhook (or one of its parts)", body = ErrorOut)), security(("basic" = []), ("bearer" = [])))]
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
