//! Event pages: the paginated event log, one event with every attempt, redelivery.

use std::sync::Arc;

use askama::Template;
use askama_web::WebTemplate;
use axum::extract::State;
use axum::response::{IntoResponse, Response};
use serde::Deserialize;
use uuid::Uuid;

use super::view::{BodyView, EventRow, When, header_rows, human_duration, human_size, target_name};
use super::{Ctx, PagePath, PageQuery, PageResult, Viewer, redirect_with};
use crate::model::{Delivery, DeliveryResult, Webhook};
use crate::service::{Service, ServiceError};
use crate::web::auth::AuthForm;

/// Events per page of the log.
const PER_PAGE: usize = 25;
/// Body bytes shown inline in the log (the detail page shows more).
const LOG_BODY_LIMIT: usize = 16 * 1024;
/// Body bytes shown on the detail page.
const DETAIL_BODY_LIMIT: usize = 1024 * 1024;

// ---------- log ----------

#[derive(Deserialize)]
pub(super) struct LogQuery {
    page: Option<String>,
}

#[derive(Template, WebTemplate)]
#[template(path = "events.html")]
struct LogPage {
    ctx: Ctx,
    webhook: Arc<Webhook>,
    events: Vec<EventRow>,
    page: usize,
    pages: usize,
    total: u64,
    first: usize,
    last: usize,
    /// Page links; `None` is an ellipsis.
    links: Vec<Option<usize>>,
}

impl LogPage {
    fn webhook_url(&self) -> String {
        format!("/webhooks/{}", self.webhook.id)
    }

    fn log_url(&self) -> String {
        format!("/webhooks/{}/events", self.webhook.id)
    }

    fn event_url(&self, ev: &EventRow) -> String {
        format!("/webhooks/{}/events/{}", self.webhook.id, ev.id)
    }
}

/// Page numbers to link: first, last, and two either side of the current one.
fn page_links(page: usize, pages: usize) -> Vec<Option<usize>> {
    let mut out = Vec::new();
    for p in 1..=pages {
        if p == 1 || p == pages || p.abs_diff(page) <= 2 {
            out.push(Some(p));
        } else if out.last() != Some(&None) {
            out.push(None);
        }
    }
    out
}

/// GET /webhooks/{id}/events?page=N
pub(super) async fn list(
    viewer: Viewer,
    State(service): State<Service>,
    PagePath(id): PagePath<Uuid>,
    PageQuery(q): PageQuery<LogQuery>,
) -> PageResult<Response> {
    let page = q
        .page
        .and_then(|p| p.trim().parse::<usize>().ok())
        .unwrap_or(1)
        .clamp(1, 1_000_000);
    let view = service.webhook(id).await?;
    let list = service
        .list_events(id, page, PER_PAGE, LOG_BODY_LIMIT)
        .await?;
    let first = (list.page - 1) * list.per_page + 1;
    Ok(LogPage {
        ctx: viewer.ctx("webhooks"),
        first,
        last: first + list.events.len().saturating_sub(1),
        page: list.page,
        pages: list.pages(),
        links: page_links(list.page, list.pages()),
        total: list.total,
        events: list
            .events
            .iter()
            .map(|e| EventRow::new(e, &view.targets, LOG_BODY_LIMIT))
            .collect(),
        webhook: view.webhook,
    }
    .into_response())
}

// ---------- detail ----------

struct AttemptView {
    attempt: u32,
    /// One line of the response for the collapsed row.
    preview: String,
    started: When,
    duration: String,
    success: bool,
    status_code: Option<u16>,
    error: Option<String>,
    response: BodyView,
}

impl AttemptView {
    fn new(r: &DeliveryResult) -> AttemptView {
        let response = BodyView::new(&r.response_body, None, 4096);
        let preview = match response.kind {
            "text" | "json" => {
                let line: String = String::from_utf8_lossy(&r.response_body)
                    .split_whitespace()
                    .collect::<Vec<_>>()
                    .join(" ");
                line.chars().take(120).collect()
            }
            _ => String::new(),
        };
        AttemptView {
            attempt: r.attempt,
            preview,
            started: When::at(r.started_at),
            duration: human_duration(r.duration_us),
            success: r.success,
            status_code: r.status_code,
            error: r.error.clone(),
            response,
        }
    }
}

struct DeliveryView {
    id: Uuid,
    target_id: Uuid,
    target: String,
    /// The latest delivery to a target that still exists and is active: it gets the
    /// redeliver button (one per target).
    can_redeliver: bool,
    status: &'static str,
    attempts: u32,
    created: When,
    next_attempt: Option<When>,
    results: Vec<AttemptView>,
}

#[derive(Template, WebTemplate)]
#[template(path = "event.html")]
struct DetailPage {
    ctx: Ctx,
    webhook: Arc<Webhook>,
    event: EventRow,
    entrypoint_id: Uuid,
    remote_addr: String,
    size: String,
    deliveries: Vec<DeliveryView>,
    any_active_target: bool,
}

impl DetailPage {
    fn webhook_url(&self) -> String {
        format!("/webhooks/{}", self.webhook.id)
    }
}

/// GET /webhooks/{id}/events/{event_id}
pub(super) async fn detail(
    viewer: Viewer,
    State(service): State<Service>,
    PagePath((id, event_id)): PagePath<(Uuid, Uuid)>,
) -> PageResult<Response> {
    let view = service.webhook(id).await?;
    let detail = service.event(id, event_id).await?;
    let plain: Vec<Delivery> = detail.deliveries.iter().map(|(d, _)| d.clone()).collect();
    let mut event = EventRow::summary(&detail.event, &plain, &view.targets);
    event.headers = header_rows(&detail.event);
    event.body = Some(BodyView::new(
        &detail.body,
        detail.event.content_type.as_deref(),
        DETAIL_BODY_LIMIT,
    ));
    let deliveries = detail
        .deliveries
        .iter()
        .enumerate()
        .map(|(i, (d, results))| DeliveryView {
            id: d.id,
            target_id: d.target_id,
            target: target_name(&view.targets, d.target_id),
            can_redeliver: view.targets.iter().any(|t| t.id == d.target_id && t.active)
                && !plain[i + 1..].iter().any(|l| l.target_id == d.target_id),
            status: d.status.as_str(),
            attempts: d.attempts,
            created: When::at(d.created_at),
            next_attempt: d
                .next_attempt_at
                .filter(|_| !d.status.is_terminal())
                .map(When::at),
            results: results.iter().map(AttemptView::new).collect(),
        })
        .collect();
    Ok(DetailPage {
        ctx: viewer.ctx("webhooks"),
        event,
        entrypoint_id: detail.event.entrypoint_id,
        remote_addr: detail.event.remote_addr.clone(),
        size: human_size(detail.event.body_len),
        deliveries,
        any_active_target: view.targets.iter().any(|t| t.active),
        webhook: view.webhook,
    }
    .into_response())
}

#[derive(Deserialize, Default)]
#[serde(default)]
pub(super) struct RedeliverForm {
    /// One target, or empty for every active target.
    target_id: String,
}

/// POST /webhooks/{id}/events/{event_id}/redeliver
pub(super) async fn redeliver(
    State(service): State<Service>,
    PagePath((id, event_id)): PagePath<(Uuid, Uuid)>,
    AuthForm { form, .. }: AuthForm<RedeliverForm>,
) -> PageResult<Response> {
    let back = format!("/webhooks/{id}/events/{event_id}");
    let target = match form.target_id.trim() {
        "" => None,
        raw => match Uuid::try_parse(raw) {
            Ok(t) => Some(t),
            Err(_) => return Ok(redirect_with(&back, "error", "Unknown target.")),
        },
    };
    Ok(match service.redeliver(id, event_id, target).await {
        Ok(ids) => redirect_with(
            &back,
            "success",
            match ids.len() {
                1 => "Redelivery queued. It appears below as a new delivery.".to_string(),
                n => format!(
                    "Redelivery to {n} targets queued. They appear below as new deliveries."
                ),
            },
        ),
        Err(ServiceError::Invalid { message, .. }) => {
            redirect_with(&back, "error", super::sentence(&message))
        }
        Err(e) => return Err(e.into()),
    })
}

#[cfg(test)]
mod tests {
    use super::page_links;

    #[test]
    fn pagination_links() {
        assert_eq!(page_links(1, 1), vec![Some(1)]);
        assert_eq!(
            page_links(5, 10),
            vec![
                Some(1),
                None,
                Some(3),
                Some(4),
                Some(5),
                Some(6),
                Some(7),
                None,
                Some(10)
            ]
        );
    }
}
