//! Event pages: the paginated event log, one event with every attempt, redelivery.

use std::sync::Arc;

use askama::Template;
use askama_web::WebTemplate;
use axum::extract::State;
use axum::response::{IntoResponse, Response};
use serde::Deserialize;
use uuid::Uuid;

use super::view::{
    BodyView, EventRow, When, bytes_text, header_rows, human_duration, human_size, target_name,
};
use super::{Ctx, PagePath, PageQuery, PageResult, Viewer, redirect_with};
use crate::delivery::targets::MAX_RESPONSE_EXCERPT;
use crate::model::{Delivery, DeliveryResult, Millis, Target, Webhook};
use crate::service::{MAX_SCANNED_EVENTS, Service, ServiceError};
use crate::web::AppState;
use crate::web::api::EventFilterIn;
use crate::web::auth::{AuthForm, CurrentUser};

/// Events per page of the log.
const PER_PAGE: usize = 25;
/// Body bytes shown inline in the log (the detail page shows more).
const LOG_BODY_LIMIT: usize = 16 * 1024;
/// Body bytes shown on the detail page.
const DETAIL_BODY_LIMIT: usize = 1024 * 1024;

// ---------- log ----------

#[derive(Deserialize, Default)]
#[serde(default)]
pub(super) struct LogQuery {
    page: Option<String>,
    status: String,
    target_id: String,
    q: String,
    since: String,
    until: String,
}

impl LogQuery {
    fn filter_in(&self) -> EventFilterIn {
        EventFilterIn {
            status: Some(self.status.clone()),
            target_id: Some(self.target_id.clone()),
            q: Some(self.q.clone()),
            since: Some(self.since.clone()),
            until: Some(self.until.clone()),
        }
    }

    /// The filter as a query string (for page links), without `page`.
    fn query(&self) -> String {
        let pairs = [
            ("status", &self.status),
            ("target_id", &self.target_id),
            ("q", &self.q),
            ("since", &self.since),
            ("until", &self.until),
        ];
        let mut out = url::form_urlencoded::Serializer::new(String::new());
        for (k, v) in pairs {
            if !v.trim().is_empty() {
                out.append_pair(k, v);
            }
        }
        out.finish()
    }
}

/// What the filter form shows and a bulk redelivery would do.
struct FilterView {
    status: String,
    target_id: String,
    q: String,
    since: String,
    until: String,
    /// Why the filter was refused, if it was.
    error: Option<String>,
    /// The filter's query string, without `page`.
    query: String,
    /// Whether a filter is in force.
    active: bool,
    /// Events that passed among those scanned.
    matched: usize,
    /// Events scanned.
    scanned: usize,
    /// Whether only events with deliveries to send were scanned (see `ScanReport`).
    by_deliveries: bool,
    /// Whether the scan stopped at its bound.
    bounded: bool,
    /// New deliveries a bulk redelivery of the filter makes.
    replay_count: usize,
    /// "a (3), b (1)".
    replay_targets: String,
}

#[derive(Template, WebTemplate)]
#[template(path = "events.html")]
struct LogPage {
    ctx: Ctx,
    webhook: Arc<Webhook>,
    targets: Vec<Arc<Target>>,
    /// "a, b": the active targets an event's replay goes to.
    active_targets: String,
    events: Vec<EventRow>,
    filter: FilterView,
    page: usize,
    pages: usize,
    total: u64,
    first: usize,
    last: usize,
    /// Filtered: whether a later page has events.
    has_more: bool,
    /// Page links; `None` is an ellipsis.
    links: Vec<Option<usize>>,
    max_scanned: usize,
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

    /// The link to page `p` of the same filter.
    fn page_url(&self, p: impl std::fmt::Display) -> String {
        match self.filter.query.is_empty() {
            true => format!("?page={p}"),
            false => format!("?{}&page={p}", self.filter.query),
        }
    }

    fn status_selected(&self, status: &str) -> bool {
        self.filter.status == status
    }

    fn target_selected(&self, t: &Target) -> bool {
        self.filter.target_id == t.id.to_string()
    }

    /// The bulk button's words: "Redeliver 3 failed".
    fn replay_label(&self) -> String {
        let what = match self.filter.status.as_str() {
            "" | "any" => "matching".to_string(),
            s => s.to_string(),
        };
        format!("Redeliver {} {what}", self.filter.replay_count)
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

/// GET /webhooks/{id}/events?page=N&status=…&target_id=…&q=…&since=…&until=…
pub(super) async fn list(
    viewer: Viewer,
    State(service): State<Service>,
    PagePath(id): PagePath<Uuid>,
    PageQuery(q): PageQuery<LogQuery>,
) -> PageResult<Response> {
    let page = q
        .page
        .as_deref()
        .and_then(|p| p.trim().parse::<usize>().ok())
        .unwrap_or(1)
        .clamp(1, 1_000_000);
    let view = service.webhook(id).await?;
    let mut filter = FilterView {
        status: q.status.trim().to_string(),
        target_id: q.target_id.trim().to_string(),
        q: q.q.clone(),
        since: q.since.trim().to_string(),
        until: q.until.trim().to_string(),
        error: None,
        query: q.query(),
        active: false,
        matched: 0,
        scanned: 0,
        by_deliveries: false,
        bounded: false,
        replay_count: 0,
        replay_targets: String::new(),
    };
    let parsed = match q.filter_in().to_filter() {
        Ok(f) => Some(f),
        Err(ServiceError::Invalid { message, field }) => {
            filter.error = Some(format!("{field}: {message}"));
            None
        }
        Err(e) => return Err(e.into()),
    };
    let rows = |events: &[crate::store::EventWithBody]| -> Vec<EventRow> {
        events
            .iter()
            .map(|e| EventRow::new(e, &view.targets, LOG_BODY_LIMIT))
            .collect()
    };
    let (events, total, pages, first, has_more) = match parsed {
        Some(f) if !f.is_empty() => {
            let found = service
                .find_events(id, f, page, PER_PAGE, LOG_BODY_LIMIT)
                .await?;
            filter.active = true;
            filter.matched = found.matched;
            filter.scanned = found.scan.scanned;
            filter.by_deliveries = found.scan.by_deliveries;
            filter.bounded = !found.scan.complete;
            filter.replay_count = found.replay.count();
            filter.replay_targets = found
                .replay
                .targets
                .iter()
                .map(|(t, n)| format!("{} ({n})", t.name))
                .collect::<Vec<_>>()
                .join(", ");
            let first = (found.page - 1) * found.per_page + 1;
            let pages = found.matched.div_ceil(PER_PAGE).max(1);
            (
                rows(&found.events),
                found.matched as u64,
                pages,
                first,
                found.has_more(),
            )
        }
        _ => {
            let list = service
                .list_events(id, page, PER_PAGE, LOG_BODY_LIMIT)
                .await?;
            let first = (list.page - 1) * list.per_page + 1;
            let more = list.page < list.pages();
            (rows(&list.events), list.total, list.pages(), first, more)
        }
    };
    Ok(LogPage {
        ctx: viewer.ctx("webhooks"),
        first,
        last: first + events.len().saturating_sub(1),
        page,
        pages,
        links: page_links(page, pages),
        total,
        has_more,
        events,
        filter,
        active_targets: view
            .targets
            .iter()
            .filter(|t| t.active)
            .map(|t| t.name.clone())
            .collect::<Vec<_>>()
            .join(", "),
        targets: view.targets,
        webhook: view.webhook,
        max_scanned: MAX_SCANNED_EVENTS,
    }
    .into_response())
}

/// POST /webhooks/{id}/redeliver: the bulk redelivery of the log's filter (its fields as
/// hidden inputs), back to the same filtered log.
pub(super) async fn redeliver_matching(
    State(service): State<Service>,
    PagePath(id): PagePath<Uuid>,
    AuthForm { form, .. }: AuthForm<LogQuery>,
) -> PageResult<Response> {
    let query = form.query();
    let back = match query.is_empty() {
        true => format!("/webhooks/{id}/events"),
        false => format!("/webhooks/{id}/events?{query}"),
    };
    let filter = match form.filter_in().to_filter() {
        Ok(f) => f,
        Err(ServiceError::Invalid { message, .. }) => {
            return Ok(redirect_with(&back, "error", super::sentence(&message)));
        }
        Err(e) => return Err(e.into()),
    };
    Ok(match service.redeliver_matching(id, filter).await {
        Ok(0) => redirect_with(&back, "info", "Nothing to redeliver for this filter."),
        Ok(n) => redirect_with(
            &back,
            "success",
            format!(
                "Queued {n} deliveries. Each target gets them oldest first, at most its in-flight limit at a time."
            ),
        ),
        Err(ServiceError::Invalid { message, .. }) => {
            redirect_with(&back, "error", super::sentence(&message))
        }
        Err(e) => return Err(e.into()),
    })
}

// ---------- detail ----------

/// The request an attempt sent, as shown.
struct SentView {
    method: String,
    url: String,
    headers: Vec<(String, String)>,
    /// Headers not kept (over the bounds).
    dropped: u32,
}

struct AttemptView {
    attempt: u32,
    started: When,
    /// Time since the previous attempt started ("+2.1 s"); none for the first.
    gap: Option<String>,
    duration: String,
    success: bool,
    status_code: Option<u16>,
    error: Option<String>,
    request: Option<SentView>,
    response_headers: Vec<(String, String)>,
    response_headers_dropped: u32,
    response: BodyView,
}

impl AttemptView {
    fn new(r: &DeliveryResult, previous: Option<&DeliveryResult>) -> AttemptView {
        let text = |hs: &[(String, Vec<u8>)]| -> Vec<(String, String)> {
            hs.iter().map(|(n, v)| (n.clone(), bytes_text(v))).collect()
        };
        AttemptView {
            attempt: r.attempt,
            started: When::at(r.started_at),
            gap: previous.map(|p| gap(r.started_at - p.started_at)),
            duration: human_duration(r.duration_us),
            success: r.success,
            status_code: r.status_code,
            error: r.error.clone(),
            request: r.exchange.request.as_ref().map(|q| SentView {
                method: q.method.clone(),
                url: q.url.clone(),
                headers: text(&q.headers),
                dropped: q.headers_dropped,
            }),
            response_headers: text(&r.exchange.response_headers),
            response_headers_dropped: r.exchange.response_headers_dropped,
            response: BodyView::new(&r.response_body, None, MAX_RESPONSE_EXCERPT),
        }
    }
}

/// `+850 ms`, `+2.1 s`, `+4 min 5 s`, `+2 h 3 min`: the wait between two attempts.
fn gap(ms: Millis) -> String {
    let ms = ms.max(0);
    if ms < 1000 {
        format!("+{ms} ms")
    } else if ms < 60_000 {
        format!("+{:.1} s", ms as f64 / 1000.0)
    } else if ms < 3_600_000 {
        format!("+{} min {} s", ms / 60_000, ms % 60_000 / 1000)
    } else {
        format!("+{} h {} min", ms / 3_600_000, ms % 3_600_000 / 60_000)
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
    /// Why a skipped delivery was skipped.
    reason: Option<String>,
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
    /// A delivery still waits for an attempt: the page follows the live stream.
    pending: bool,
    /// A test event webhooker sent itself.
    test: bool,
    /// A form body as (key, value) rows; empty for any other body.
    form_fields: Vec<(String, String)>,
}

impl DetailPage {
    fn webhook_url(&self) -> String {
        format!("/webhooks/{}", self.webhook.id)
    }
}

/// Most rows a form body is shown as.
const MAX_FORM_ROWS: usize = 500;

/// A body sent as `application/x-www-form-urlencoded`, as (key, value) rows.
fn form_fields(content_type: Option<&str>, body: &[u8]) -> Vec<(String, String)> {
    let is_form = content_type
        .and_then(|c| c.split(';').next())
        .is_some_and(|c| {
            c.trim()
                .eq_ignore_ascii_case("application/x-www-form-urlencoded")
        });
    if !is_form || std::str::from_utf8(body).is_err() {
        return Vec::new();
    }
    url::form_urlencoded::parse(body)
        .take(MAX_FORM_ROWS)
        .map(|(k, v)| (k.into_owned(), v.into_owned()))
        .collect()
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
            reason: d.status.reason().map(str::to_string),
            attempts: d.attempts,
            created: When::at(d.created_at),
            next_attempt: d
                .next_attempt_at
                .filter(|_| !d.status.is_terminal())
                .map(When::at),
            results: results
                .iter()
                .enumerate()
                .map(|(i, r)| AttemptView::new(r, i.checked_sub(1).map(|p| &results[p])))
                .collect(),
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
        pending: plain.iter().any(|d| !d.status.is_terminal()),
        test: detail.event.is_test(),
        form_fields: form_fields(detail.event.content_type.as_deref(), &detail.body),
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

/// GET /webhooks/{id}/events/stream: the live stream for the event pages (see
/// `web::live`), with the session's authentication.
pub(super) async fn stream(
    _: CurrentUser,
    State(state): State<AppState>,
    PagePath(id): PagePath<Uuid>,
) -> PageResult<Response> {
    state.service.webhook(id).await?;
    Ok(crate::web::live::stream(state.engine.live(), id)?)
}

/// The file name extension for a body of `content_type`.
fn body_extension(content_type: Option<&str>) -> &'static str {
    let essence = content_type
        .and_then(|c| c.split(';').next())
        .map(|c| c.trim().to_ascii_lowercase())
        .unwrap_or_default();
    match essence.as_str() {
        "application/json" => "json",
        e if e.ends_with("+json") => "json",
        "application/xml" | "text/xml" => "xml",
        "application/x-www-form-urlencoded" | "text/plain" => "txt",
        _ => "bin",
    }
}

/// GET /webhooks/{id}/events/{event_id}/body: the raw body as a download, with its stored
/// content type. Never shown inline: `attachment`, a file name made of the event id only,
/// no sniffing, and a sandboxing CSP should a browser render it anyway.
pub(super) async fn download_body(
    _: CurrentUser,
    State(service): State<Service>,
    PagePath((id, event_id)): PagePath<(Uuid, Uuid)>,
) -> PageResult<Response> {
    use axum::http::{HeaderValue, header};
    let detail = service.event(id, event_id).await?;
    let stored = detail.event.content_type.as_deref();
    let content_type = stored
        .and_then(|c| HeaderValue::from_str(c).ok())
        .unwrap_or(HeaderValue::from_static("application/octet-stream"));
    let disposition = format!(
        "attachment; filename=\"event-{}.{}\"",
        detail.event.id,
        body_extension(stored)
    );
    let mut resp = detail.body.into_response();
    let headers = resp.headers_mut();
    headers.insert(header::CONTENT_TYPE, content_type);
    if let Ok(v) = HeaderValue::from_str(&disposition) {
        headers.insert(header::CONTENT_DISPOSITION, v);
    }
    headers.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static("default-src 'none'; sandbox"),
    );
    // `nosniff` comes with every response (`web::security_headers`).
    Ok(resp)
}

#[cfg(test)]
mod tests {
    use super::{form_fields, gap, page_links};

    #[test]
    fn gaps_between_attempts() {
        assert_eq!(gap(850), "+850 ms");
        assert_eq!(gap(2_100), "+2.1 s");
        assert_eq!(gap(245_000), "+4 min 5 s");
        assert_eq!(gap(7_380_000), "+2 h 3 min");
    }

    #[test]
    fn form_bodies_become_rows() {
        let rows = form_fields(
            Some("application/x-www-form-urlencoded; charset=utf-8"),
            b"a=1&b=x+y&c=%E2%9C%93&flag",
        );
        let want = [("a", "1"), ("b", "x y"), ("c", "✓"), ("flag", "")];
        let want: Vec<(String, String)> = want
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        assert_eq!(rows, want);
        assert!(form_fields(Some("application/json"), b"a=1").is_empty());
        assert!(form_fields(Some("application/x-www-form-urlencoded"), b"\xff=1").is_empty());
    }

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
