//! Export and import of a webhook's events as NDJSON: the format of `webhooker export`,
//! `webhooker import` and `GET /api/v1/webhooks/{id}/export`.
//!
//! The first line is a header naming the format and its version; every further line is
//! one event with its whole body, every delivery and every attempt. Bytes (bodies, header
//! values, response excerpts) are standard base64, times RFC 3339 with milliseconds, so a
//! line round-trips exactly. An export is read page by page (`EXPORT_PAGE_EVENTS` events
//! or `EXPORT_PAGE_BYTES` of bodies, one read transaction each), so its memory does not
//! grow with the number of events; an import writes in batches of the same size.

use std::io::BufRead;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use super::{Service, ServiceError, ServiceResult};
use crate::model::{
    AttemptExchange, Delivery, DeliveryResult, DeliveryStatus, Event, Millis, SentRequest, now_ms,
};
use crate::store::{EventDetail, Store, WriteOp};

/// Version of the export format, in its header line. Raise it when a line's meaning
/// changes; an import refuses versions it does not know.
pub const EXPORT_FORMAT_VERSION: u32 = 1;
/// The header's `format` value.
const FORMAT_NAME: &str = "webhooker-events";
/// Events per page of an export and per batch of an import.
const EXPORT_PAGE_EVENTS: usize = 100;
/// Body bytes after which a page or batch ends (one event may exceed it alone).
const EXPORT_PAGE_BYTES: usize = 8 << 20;
/// The longest line an import reads: a body of the largest `MAX_BODY_BYTES` anyone is
/// likely to set, in base64, with its record. A longer line is refused, not buffered.
const MAX_LINE_BYTES: u64 = 256 << 20;

/// The first line of an export.
#[derive(Debug, Serialize, Deserialize)]
struct Header {
    format: String,
    version: u32,
    webhook_id: Uuid,
    exported_at: String,
    since: Option<String>,
}

/// One event line.
#[derive(Debug, Serialize, Deserialize)]
struct EventLine {
    id: Uuid,
    entrypoint_id: Uuid,
    received_at: String,
    method: String,
    path: String,
    /// `[name, base64(value)]` in arrival order, duplicates kept.
    headers: Vec<(String, String)>,
    content_type: Option<String>,
    remote_addr: String,
    /// base64 of the raw body.
    body: String,
    deliveries: Vec<DeliveryLine>,
}

/// One delivery of an event line.
#[derive(Debug, Serialize, Deserialize)]
struct DeliveryLine {
    id: Uuid,
    target_id: Uuid,
    /// `pending`, `retrying`, `delivered`, `failed` or `skipped`.
    status: String,
    /// Why a `skipped` delivery was skipped (its target's filter did not match).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    reason: Option<String>,
    attempts: u32,
    next_attempt_at: Option<String>,
    created_at: String,
    results: Vec<ResultLine>,
}

/// One attempt of a delivery line.
#[derive(Debug, Serialize, Deserialize)]
struct ResultLine {
    attempt: u32,
    started_at: String,
    duration_us: u64,
    status_code: Option<u16>,
    error: Option<String>,
    /// base64 of the response excerpt.
    response_body: String,
    success: bool,
    /// The request sent, when it was recorded.
    #[serde(default)]
    request: Option<RequestLine>,
    /// `[name, base64(value)]` of the response, in order.
    #[serde(default)]
    response_headers: Vec<(String, String)>,
    /// Response headers that were not kept (over the bounds).
    #[serde(default)]
    response_headers_dropped: u32,
}

/// The request an attempt sent.
#[derive(Debug, Serialize, Deserialize)]
struct RequestLine {
    method: String,
    url: String,
    /// `[name, base64(value)]` in order.
    headers: Vec<(String, String)>,
    /// Headers that were not kept (over the bounds).
    headers_dropped: u32,
}

/// Headers as `[name, base64(value)]` pairs.
fn headers_line(headers: &[(String, Vec<u8>)]) -> Vec<(String, String)> {
    headers
        .iter()
        .map(|(n, v)| (n.clone(), STANDARD.encode(v)))
        .collect()
}

/// Headers back from `[name, base64(value)]` pairs; `what` names them in an error.
fn headers_from_line(
    what: &str,
    headers: Vec<(String, String)>,
) -> Result<Vec<(String, Vec<u8>)>, String> {
    headers
        .into_iter()
        .map(|(name, value)| {
            let value = unbase64(&format!("{what} {name}"), &value)?;
            Ok((name, value))
        })
        .collect()
}

/// Where an export stands: what it has written and where it goes on.
#[derive(Debug, Clone)]
pub struct ExportCursor {
    webhook_id: Uuid,
    since: Option<Millis>,
    /// The next event id to read; `None` once the last page is out.
    next: Option<Uuid>,
    header_written: bool,
}

impl ExportCursor {
    /// An export of `webhook_id`'s events received at or after `since` (all without).
    pub fn new(webhook_id: Uuid, since: Option<Millis>) -> ExportCursor {
        // Event ids are UUIDv7: their top 48 bits are the arrival time in milliseconds,
        // so the first event at or after `since` is at or after this key.
        let from = since.map_or(0, |ms| (ms.max(0) as u128) << 80);
        ExportCursor {
            webhook_id,
            since,
            next: Some(Uuid::from_u128(from)),
            header_written: false,
        }
    }

    /// The next piece of the export (the header, or one page of event lines), or `None`
    /// when it is complete.
    pub fn next_chunk(&mut self, store: &Store) -> ServiceResult<Option<Vec<u8>>> {
        if !self.header_written {
            self.header_written = true;
            let header = Header {
                format: FORMAT_NAME.into(),
                version: EXPORT_FORMAT_VERSION,
                webhook_id: self.webhook_id,
                exported_at: rfc3339(now_ms()),
                since: self.since.map(rfc3339),
            };
            return Ok(Some(line(&header)?));
        }
        let Some(from) = self.next else {
            return Ok(None);
        };
        let page = store.events(self.webhook_id)?.export_page(
            from,
            EXPORT_PAGE_EVENTS,
            EXPORT_PAGE_BYTES,
        )?;
        self.next = page.next;
        let mut out = Vec::new();
        for detail in &page.events {
            if self.since.is_some_and(|s| detail.event.received_at < s) {
                continue;
            }
            out.extend(line(&EventLine::from(detail))?);
        }
        Ok(Some(out))
    }
}

/// What an import did.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct ImportReport {
    /// Events written.
    pub imported: u64,
    /// Events the file already held, left as they were.
    pub skipped: u64,
}

/// Writes a whole export of `webhook_id` to `out` (the `webhooker export` command).
pub fn export_to(
    store: &Store,
    webhook_id: Uuid,
    since: Option<Millis>,
    out: &mut impl std::io::Write,
) -> ServiceResult<u64> {
    if store.catalog().webhook(webhook_id).is_none() {
        return Err(ServiceError::NotFound("webhook"));
    }
    let mut cursor = ExportCursor::new(webhook_id, since);
    let mut bytes = 0u64;
    while let Some(chunk) = cursor.next_chunk(store)? {
        out.write_all(&chunk).map_err(output_error)?;
        bytes += chunk.len() as u64;
    }
    out.flush().map_err(output_error)?;
    Ok(bytes)
}

/// Reads an export from `input` into `webhook_id`'s event file (the `webhooker import`
/// command). Idempotent by event id. Deliveries keep the state they were exported in:
/// finished ones are history; unfinished ones are due again at their recorded time (or
/// now, if none was recorded), so a restored server resumes them; one whose target this
/// webhook does not have fails when due, as a deleted target's does.
pub fn import_from(
    store: &Store,
    webhook_id: Uuid,
    input: impl BufRead,
) -> ServiceResult<ImportReport> {
    if store.catalog().webhook(webhook_id).is_none() {
        return Err(ServiceError::NotFound("webhook"));
    }
    let events = store.events(webhook_id)?;
    let mut report = ImportReport::default();
    let mut batch: Vec<EventDetail> = Vec::new();
    let mut batch_bytes = 0usize;
    let mut input = input.take(0);
    let mut buf = Vec::new();
    let now = now_ms();
    let mut header_seen = false;
    for number in 1u64.. {
        buf.clear();
        input.set_limit(MAX_LINE_BYTES + 1);
        let read = input
            .read_until(b'\n', &mut buf)
            .map_err(|e| ServiceError::invalid("input", e.to_string()))?;
        if read == 0 {
            break;
        }
        if buf.len() as u64 > MAX_LINE_BYTES {
            return Err(bad_line(number, "longer than 256 MiB"));
        }
        if number == 1 {
            check_header(&buf)?;
            header_seen = true;
            continue;
        }
        if buf.iter().all(u8::is_ascii_whitespace) {
            continue;
        }
        let parsed: EventLine =
            serde_json::from_slice(&buf).map_err(|e| bad_line(number, e.to_string()))?;
        let detail = parsed
            .into_detail(now)
            .map_err(|message| bad_line(number, message))?;
        if events.has_event(detail.event.id)? || batch.iter().any(|e| e.event.id == detail.event.id)
        {
            report.skipped += 1;
            continue;
        }
        batch_bytes += detail.body.len();
        batch.push(detail);
        report.imported += 1;
        if batch.len() >= EXPORT_PAGE_EVENTS || batch_bytes >= EXPORT_PAGE_BYTES {
            events.write_blocking(WriteOp::Import(std::mem::take(&mut batch)))?;
            batch_bytes = 0;
        }
    }
    if !header_seen {
        return Err(ServiceError::invalid("input", "empty: no export header"));
    }
    if !batch.is_empty() {
        events.write_blocking(WriteOp::Import(batch))?;
    }
    Ok(report)
}

impl Service {
    /// The next piece of an export through the API (see [`ExportCursor::next_chunk`]),
    /// read on the blocking pool.
    pub async fn export_chunk(
        &self,
        mut cursor: ExportCursor,
    ) -> ServiceResult<(Option<Vec<u8>>, ExportCursor)> {
        self.blocking(move |store| {
            let chunk = cursor.next_chunk(store)?;
            Ok((chunk, cursor))
        })
        .await
    }
}

fn check_header(buf: &[u8]) -> ServiceResult<()> {
    let header: Header = serde_json::from_slice(buf)
        .map_err(|e| bad_line(1, format!("not an export header: {e}")))?;
    if header.format != FORMAT_NAME {
        return Err(bad_line(
            1,
            format!("format {:?} is not {FORMAT_NAME:?}", header.format),
        ));
    }
    if header.version != EXPORT_FORMAT_VERSION {
        return Err(bad_line(
            1,
            format!(
                "export format version {}; this build reads version {EXPORT_FORMAT_VERSION}",
                header.version
            ),
        ));
    }
    Ok(())
}

fn bad_line(number: u64, message: impl std::fmt::Display) -> ServiceError {
    ServiceError::invalid("input", format!("line {number}: {message}"))
}

fn output_error(e: std::io::Error) -> ServiceError {
    ServiceError::Internal(format!("writing the export: {e}"))
}

fn line(value: &impl Serialize) -> ServiceResult<Vec<u8>> {
    let mut out = serde_json::to_vec(value).map_err(|e| ServiceError::Internal(e.to_string()))?;
    out.push(b'\n');
    Ok(out)
}

fn rfc3339(ms: Millis) -> String {
    jiff::Timestamp::from_millisecond(ms)
        .map(|t| format!("{t:.3}"))
        .unwrap_or_else(|_| ms.to_string())
}

fn parse_time(field: &str, value: &str) -> Result<Millis, String> {
    value
        .parse::<jiff::Timestamp>()
        .map(|t| t.as_millisecond())
        .map_err(|e| format!("{field}: {e}"))
}

fn unbase64(field: &str, value: &str) -> Result<Vec<u8>, String> {
    STANDARD
        .decode(value)
        .map_err(|e| format!("{field}: not base64: {e}"))
}

impl From<&EventDetail> for EventLine {
    fn from(d: &EventDetail) -> EventLine {
        let e = &d.event;
        EventLine {
            id: e.id,
            entrypoint_id: e.entrypoint_id,
            received_at: rfc3339(e.received_at),
            method: e.method.clone(),
            path: e.path.clone(),
            headers: headers_line(&e.headers),
            content_type: e.content_type.clone(),
            remote_addr: e.remote_addr.clone(),
            body: STANDARD.encode(&d.body),
            deliveries: d
                .deliveries
                .iter()
                .map(|(delivery, results)| DeliveryLine {
                    id: delivery.id,
                    target_id: delivery.target_id,
                    status: delivery.status.as_str().into(),
                    reason: delivery.status.reason().map(str::to_string),
                    attempts: delivery.attempts,
                    next_attempt_at: delivery.next_attempt_at.map(rfc3339),
                    created_at: rfc3339(delivery.created_at),
                    results: results
                        .iter()
                        .map(|r| ResultLine {
                            attempt: r.attempt,
                            started_at: rfc3339(r.started_at),
                            duration_us: r.duration_us,
                            status_code: r.status_code,
                            error: r.error.clone(),
                            response_body: STANDARD.encode(&r.response_body),
                            success: r.success,
                            request: r.exchange.request.as_ref().map(|q| RequestLine {
                                method: q.method.clone(),
                                url: q.url.clone(),
                                headers: headers_line(&q.headers),
                                headers_dropped: q.headers_dropped,
                            }),
                            response_headers: headers_line(&r.exchange.response_headers),
                            response_headers_dropped: r.exchange.response_headers_dropped,
                        })
                        .collect(),
                })
                .collect(),
        }
    }
}

impl EventLine {
    /// The stored form of this line; `now` is when an unfinished delivery without a due
    /// time becomes due. The error names the field at fault.
    fn into_detail(self, now: Millis) -> Result<EventDetail, String> {
        let body = unbase64("body", &self.body)?;
        let headers = headers_from_line("header", self.headers)?;
        let event = Event {
            id: self.id,
            entrypoint_id: self.entrypoint_id,
            received_at: parse_time("received_at", &self.received_at)?,
            method: self.method,
            path: self.path,
            headers,
            content_type: self.content_type,
            remote_addr: self.remote_addr,
            body_len: body.len() as u64,
        };
        let mut deliveries = Vec::with_capacity(self.deliveries.len());
        for d in self.deliveries {
            let status = match d.status.as_str() {
                "pending" => DeliveryStatus::Pending,
                "retrying" => DeliveryStatus::Retrying,
                "delivered" => DeliveryStatus::Delivered,
                "failed" => DeliveryStatus::Failed,
                "skipped" => DeliveryStatus::Skipped {
                    reason: Box::new(d.reason.clone().unwrap_or_default()),
                },
                other => return Err(format!("delivery {}: unknown status {other:?}", d.id)),
            };
            // Exactly one due row per unfinished delivery, none for a finished one.
            let next_attempt_at = match (status.is_terminal(), d.next_attempt_at) {
                (true, _) => None,
                (false, Some(at)) => Some(parse_time("next_attempt_at", &at)?),
                (false, None) => Some(now),
            };
            let mut results = Vec::with_capacity(d.results.len());
            for r in d.results {
                results.push(DeliveryResult {
                    delivery_id: d.id,
                    attempt: r.attempt,
                    started_at: parse_time("started_at", &r.started_at)?,
                    duration_us: r.duration_us,
                    status_code: r.status_code,
                    error: r.error,
                    response_body: unbase64("response_body", &r.response_body)?,
                    success: r.success,
                    exchange: AttemptExchange {
                        request: match r.request {
                            Some(q) => Some(SentRequest {
                                method: q.method,
                                url: q.url,
                                headers: headers_from_line("request header", q.headers)?,
                                headers_dropped: q.headers_dropped,
                            }),
                            None => None,
                        },
                        response_headers: headers_from_line("response header", r.response_headers)?,
                        response_headers_dropped: r.response_headers_dropped,
                    },
                });
            }
            deliveries.push((
                Delivery {
                    id: d.id,
                    event_id: event.id,
                    target_id: d.target_id,
                    status,
                    attempts: d.attempts,
                    next_attempt_at,
                    created_at: parse_time("created_at", &d.created_at)?,
                },
                results,
            ));
        }
        Ok(EventDetail {
            event,
            body,
            deliveries,
        })
    }
}
