//! Wire formats of the JSON API. Bodies and header values that are not UTF-8 travel as
//! base64 with an explicit encoding field, so every byte round-trips.

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use utoipa::{IntoParams, ToSchema};
use uuid::Uuid;

use crate::model::{
    ApiKey, Delivery, DeliveryResult, DeliveryStatus, Entrypoint, Event, Millis, RetryLimit,
    Target, TargetKind, Verification, Webhook,
};
use crate::service::{
    ServiceError, TargetInput, VerificationInput, WebhookInput, parse_retry_limit,
};
use crate::store::EventFilter;

/// RFC 3339 text of a Unix-ms time.
pub fn rfc3339(ms: Millis) -> String {
    jiff::Timestamp::from_millisecond(ms)
        .map(|t| t.to_string())
        .unwrap_or_default()
}

/// Bytes as UTF-8 text when valid, otherwise base64; returns (text, encoding).
pub fn encode_bytes(bytes: &[u8]) -> (String, &'static str) {
    match std::str::from_utf8(bytes) {
        Ok(s) => (s.to_string(), "utf8"),
        Err(_) => (STANDARD.encode(bytes), "base64"),
    }
}

#[derive(Serialize, ToSchema)]
pub struct WebhookOut {
    pub id: Uuid,
    pub name: String,
    pub description: String,
    pub retention_days: u32,
    pub created_at: String,
    /// The kind and its secrets: every API caller is authenticated.
    #[schema(value_type = Object)]
    pub verification: Value,
    /// Idempotent ingest: `{"header": name}` or `{"json": pointer}`, with `window_secs`;
    /// null when off (see docs/routing.md).
    #[schema(value_type = Option<Object>)]
    pub dedupe: Value,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub entrypoints: Option<Vec<EntrypointOut>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub targets: Option<Vec<TargetOut>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub counts: Option<Counts>,
}

#[derive(Serialize, ToSchema)]
pub struct Counts {
    pub entrypoints: usize,
    pub targets: usize,
    pub events: u64,
}

impl WebhookOut {
    pub fn new(w: &Webhook) -> WebhookOut {
        WebhookOut {
            id: w.id,
            name: w.name.clone(),
            description: w.description.clone(),
            retention_days: w.retention_days,
            created_at: rfc3339(w.created_at),
            verification: verification_json(&w.verification),
            dedupe: w.dedupe.as_ref().map_or(Value::Null, |d| d.to_json()),
            entrypoints: None,
            targets: None,
            counts: None,
        }
    }
}

/// `{"kind": …}` with the fields the kind needs, secrets included.
pub fn verification_json(v: &Verification) -> Value {
    use serde_json::json;
    match v {
        Verification::None => json!({ "kind": "none" }),
        Verification::Github { secret }
        | Verification::Gitea { secret }
        | Verification::Stripe { secret }
        | Verification::Slack { secret } => {
            json!({ "kind": v.kind(), "secret": secret.expose() })
        }
        Verification::Gitlab { token } => json!({ "kind": "gitlab", "token": token.expose() }),
        Verification::StandardWebhooks { secret } => {
            json!({ "kind": "standard_webhooks", "secret": secret.to_whsec() })
        }
        Verification::Header { name, value } => {
            json!({ "kind": "header", "name": name, "value": value.expose() })
        }
        Verification::Basic { username, password } => {
            json!({ "kind": "basic", "username": username, "password": password.expose() })
        }
    }
}

#[derive(Serialize, ToSchema)]
pub struct EntrypointOut {
    pub id: Uuid,
    pub url: String,
    pub description: String,
    pub active: bool,
    pub created_at: String,
}

impl EntrypointOut {
    pub fn new(e: &Entrypoint, base: &str) -> EntrypointOut {
        EntrypointOut {
            id: e.id,
            url: format!("{base}/webhook/{}", e.id),
            description: e.description.clone(),
            active: e.active,
            created_at: rfc3339(e.created_at),
        }
    }
}

#[derive(Serialize, ToSchema)]
pub struct TargetOut {
    pub id: Uuid,
    pub name: String,
    pub kind: &'static str,
    pub active: bool,
    /// Deliveries wait in the due index, unattempted, until it is resumed.
    pub paused: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub url: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub timeout_secs: Option<u32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    /// A number (`0` = fire-and-forget) or `"unlimited"`.
    #[schema(value_type = Option<Object>)]
    pub max_retries: Option<Value>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub max_backoff_secs: Option<u32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub max_in_flight: Option<u32>,
    /// http: whether attempts carry Standard Webhooks signatures.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub signing: Option<bool>,
    /// http: the current signing secret (`whsec_…`), to every authenticated caller.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub signing_secret: Option<String>,
    /// `{"all"|"any": [conditions]}`, or null: every event (see docs/routing.md).
    #[schema(value_type = Option<Object>)]
    pub filter: Value,
    /// http: `{"set_headers": {name: value}, "remove_headers": [names], "path": template}`
    /// (values included: every caller is authenticated); see docs/routing.md.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<Object>)]
    pub transform: Option<Value>,
    pub created_at: String,
}

/// `max_retries` on the wire: a number, or the string `unlimited`.
pub fn retry_limit_json(r: RetryLimit) -> Value {
    match r {
        RetryLimit::Limited(n) => Value::from(n),
        RetryLimit::Unlimited => Value::from("unlimited"),
    }
}

impl TargetOut {
    pub fn new(t: &Target, paused: bool) -> TargetOut {
        let mut out = TargetOut {
            id: t.id,
            name: t.name.clone(),
            kind: t.kind.name(),
            active: t.active,
            paused,
            url: t.kind.url().map(str::to_string),
            timeout_secs: None,
            max_retries: None,
            max_backoff_secs: None,
            max_in_flight: None,
            signing: None,
            signing_secret: None,
            filter: t.filter.as_ref().map_or(Value::Null, |f| f.to_json()),
            transform: None,
            created_at: rfc3339(t.created_at),
        };
        if let TargetKind::Http(h) = &t.kind {
            out.timeout_secs = Some(h.timeout_secs);
            out.max_retries = Some(retry_limit_json(h.max_retries));
            out.max_backoff_secs = Some(h.max_backoff_secs);
            out.max_in_flight = Some(h.max_in_flight);
            out.signing = Some(h.signing.enabled);
            out.signing_secret = Some(h.signing.secret.to_whsec());
            out.transform = Some(h.transform.to_json());
        }
        out
    }
}

#[derive(Serialize, ToSchema)]
pub struct HeaderOut {
    pub name: String,
    pub value: String,
    #[serde(skip_serializing_if = "is_utf8")]
    pub encoding: &'static str,
}

fn is_utf8(e: &&'static str) -> bool {
    *e == "utf8"
}

#[derive(Serialize, ToSchema)]
pub struct EventOut {
    pub id: Uuid,
    pub entrypoint_id: Uuid,
    pub received_at: String,
    pub method: String,
    pub path: String,
    pub headers: Vec<HeaderOut>,
    pub content_type: Option<String>,
    pub remote_addr: String,
    /// Sent by webhooker itself ("Send test event", `test-event`).
    pub test: bool,
    pub body_size: u64,
    pub body: String,
    pub body_encoding: &'static str,
    /// Lists carry at most 64 KiB of each body; the event detail carries all of it.
    pub body_truncated: bool,
    pub deliveries: Vec<DeliveryOut>,
}

impl EventOut {
    pub fn new(e: &Event, body: &[u8], deliveries: Vec<DeliveryOut>) -> EventOut {
        let body_truncated = (body.len() as u64) < e.body_len;
        // A list's cut may split a character; that must not turn text into base64.
        let body = match body_truncated {
            true => crate::web::utf8_prefix(body).map_or(body, str::as_bytes),
            false => body,
        };
        let (body, body_encoding) = encode_bytes(body);
        EventOut {
            id: e.id,
            entrypoint_id: e.entrypoint_id,
            received_at: rfc3339(e.received_at),
            method: e.method.clone(),
            path: e.path.clone(),
            headers: headers_out(&e.headers),
            content_type: e.content_type.clone(),
            remote_addr: e.remote_addr.clone(),
            test: e.is_test(),
            body_size: e.body_len,
            body_truncated,
            body,
            body_encoding,
            deliveries,
        }
    }
}

#[derive(Serialize, ToSchema)]
pub struct DeliveryOut {
    pub id: Uuid,
    pub target_id: Uuid,
    pub target_name: Option<String>,
    /// `pending`, `retrying`, `delivered`, `failed` or `skipped` (its filter did not match).
    pub status: &'static str,
    /// Why a skipped delivery was skipped.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    pub attempts: u32,
    pub next_attempt_at: Option<String>,
    pub created_at: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub results: Option<Vec<ResultOut>>,
}

impl DeliveryOut {
    pub fn new(
        d: &Delivery,
        target_name: Option<String>,
        results: Option<&[DeliveryResult]>,
    ) -> DeliveryOut {
        DeliveryOut {
            id: d.id,
            target_id: d.target_id,
            target_name,
            status: d.status.as_str(),
            reason: d.status.reason().map(str::to_string),
            attempts: d.attempts,
            next_attempt_at: d.next_attempt_at.map(rfc3339),
            created_at: rfc3339(d.created_at),
            results: results.map(|rs| rs.iter().map(ResultOut::new).collect()),
        }
    }
}

#[derive(Serialize, ToSchema)]
pub struct ResultOut {
    pub attempt: u32,
    pub started_at: String,
    pub duration_ms: f64,
    pub success: bool,
    pub status_code: Option<u16>,
    pub error: Option<String>,
    pub response_body: String,
    pub response_body_encoding: &'static str,
    /// The request sent; `None` when nothing was sent or it was not recorded.
    pub request: Option<SentRequestOut>,
    pub response_headers: Vec<HeaderOut>,
}

/// The request an attempt sent.
#[derive(Serialize, ToSchema)]
pub struct SentRequestOut {
    pub method: String,
    pub url: String,
    pub headers: Vec<HeaderOut>,
}

/// Headers as `{name, value, encoding}` (values that are not UTF-8 in base64).
fn headers_out(headers: &[(String, Vec<u8>)]) -> Vec<HeaderOut> {
    headers
        .iter()
        .map(|(name, v)| {
            let (value, encoding) = encode_bytes(v);
            HeaderOut {
                name: name.clone(),
                value,
                encoding,
            }
        })
        .collect()
}

impl ResultOut {
    fn new(r: &DeliveryResult) -> ResultOut {
        let (response_body, response_body_encoding) = encode_bytes(&r.response_body);
        ResultOut {
            request: r.exchange.request.as_ref().map(|q| SentRequestOut {
                method: q.method.clone(),
                url: q.url.clone(),
                headers: headers_out(&q.headers),
            }),
            response_headers: headers_out(&r.exchange.response_headers),
            attempt: r.attempt,
            started_at: rfc3339(r.started_at),
            duration_ms: r.duration_us as f64 / 1000.0,
            success: r.success,
            status_code: r.status_code,
            error: r.error.clone(),
            response_body,
            response_body_encoding,
        }
    }
}

#[derive(Serialize, ToSchema)]
pub struct ApiKeyOut {
    pub id: Uuid,
    pub name: String,
    pub created_at: String,
    pub last_used_at: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub token: Option<String>,
}

impl ApiKeyOut {
    pub fn new(k: &ApiKey, token: Option<String>) -> ApiKeyOut {
        ApiKeyOut {
            id: k.id,
            name: k.name.clone(),
            created_at: rfc3339(k.created_at),
            last_used_at: k.last_used_at.map(rfc3339),
            token,
        }
    }
}

#[derive(Deserialize, Default, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct WebhookIn {
    pub name: Option<String>,
    pub description: Option<String>,
    pub retention_days: Option<u32>,
    pub verification: Option<VerificationIn>,
    /// Idempotent ingest: `{"header": name}` or `{"json": pointer}`, with `window_secs`
    /// (default a day); absent: unchanged; null: off (see docs/routing.md).
    #[serde(default, deserialize_with = "present")]
    #[schema(value_type = Option<Object>)]
    pub dedupe: Option<Value>,
}

/// A field that may be given as `null` (to clear it), told apart from a missing one.
fn present<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Option<Value>, D::Error> {
    Value::deserialize(d).map(Some)
}

/// `{"kind": …}` and the fields of that kind.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct VerificationIn {
    pub kind: String,
    pub secret: Option<String>,
    pub token: Option<String>,
    pub name: Option<String>,
    pub value: Option<String>,
    pub username: Option<String>,
    pub password: Option<String>,
}

impl From<WebhookIn> for WebhookInput {
    fn from(w: WebhookIn) -> WebhookInput {
        WebhookInput {
            name: w.name,
            description: w.description,
            retention_days: w.retention_days,
            verification: w.verification.map(|v| VerificationInput {
                kind: v.kind,
                secret: v.secret,
                token: v.token,
                name: v.name,
                value: v.value,
                username: v.username,
                password: v.password,
            }),
            dedupe: w.dedupe,
        }
    }
}

#[derive(Serialize, ToSchema)]
pub struct SigningSecretOut {
    pub signing_secret: String,
}

#[derive(Deserialize, Default, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct EntrypointIn {
    pub description: Option<String>,
    pub active: Option<bool>,
}

#[derive(Deserialize, Default, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct TargetIn {
    pub name: Option<String>,
    pub kind: Option<String>,
    pub url: Option<String>,
    pub timeout_secs: Option<u32>,
    /// A number (`0` = fire-and-forget) or `"unlimited"`.
    #[schema(value_type = Option<Object>)]
    pub max_retries: Option<Value>,
    pub max_backoff_secs: Option<u32>,
    pub max_in_flight: Option<u32>,
    pub signing: Option<bool>,
    pub active: Option<bool>,
    /// Pause (`true`) or resume (`false`); not part of the target's configuration.
    pub paused: Option<bool>,
    /// `{"all"|"any": [conditions]}` on the method, a header or a JSON Pointer into the
    /// body; absent: unchanged; null: removed (see docs/routing.md).
    #[serde(default, deserialize_with = "present")]
    #[schema(value_type = Option<Object>)]
    pub filter: Option<Value>,
    /// http: `{"set_headers": {…}, "remove_headers": […], "path": template}`; absent:
    /// unchanged; null: removed (see docs/routing.md).
    #[serde(default, deserialize_with = "present")]
    #[schema(value_type = Option<Object>)]
    pub transform: Option<Value>,
}

impl TryFrom<TargetIn> for TargetInput {
    type Error = ServiceError;

    fn try_from(t: TargetIn) -> Result<TargetInput, ServiceError> {
        let max_retries = match t.max_retries {
            None | Some(Value::Null) => None,
            Some(Value::Number(n)) => Some(parse_retry_limit(&n.to_string())?),
            Some(Value::String(s)) => Some(parse_retry_limit(&s)?),
            Some(_) => {
                return Err(ServiceError::invalid(
                    "max_retries",
                    "must be a number or \"unlimited\"",
                ));
            }
        };
        Ok(TargetInput {
            name: t.name,
            kind: t.kind,
            url: t.url,
            timeout_secs: t.timeout_secs,
            max_retries,
            max_backoff_secs: t.max_backoff_secs,
            max_in_flight: t.max_in_flight,
            signing: t.signing,
            active: t.active,
            filter: t.filter,
            transform: t.transform,
        })
    }
}

#[derive(Deserialize, Default, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RedeliverIn {
    pub target_id: Option<Uuid>,
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ApiKeyIn {
    pub name: String,
}

#[derive(Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct PageQuery {
    /// From 1.
    pub page: Option<usize>,
    /// At most 200; 25 by default.
    pub per_page: Option<usize>,
    /// Events with a delivery in this status: `pending`, `retrying`, `delivered`, `failed`,
    /// `skipped` (or `any`).
    pub status: Option<String>,
    /// Events with a delivery to this target (in `status`, when given).
    pub target_id: Option<String>,
    /// Text in a header or the body, ASCII case ignored.
    pub q: Option<String>,
    /// Received at or after (RFC 3339).
    pub since: Option<String>,
    /// Received at or before (RFC 3339; the whole second, or minute, it names).
    pub until: Option<String>,
}

impl PageQuery {
    /// Its filter part.
    pub fn filter(&self) -> EventFilterIn {
        EventFilterIn {
            status: self.status.clone(),
            target_id: self.target_id.clone(),
            q: self.q.clone(),
            since: self.since.clone(),
            until: self.until.clone(),
        }
    }
}

/// Longest text search accepted, in bytes.
pub const MAX_SEARCH_BYTES: usize = 256;

/// The event log's filters, as query parameters (API and pages) or a JSON body (bulk
/// redelivery). Empty values mean "not set", as a form without JS sends them.
#[derive(Deserialize, Default, Debug, Clone, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct EventFilterIn {
    /// A delivery in this status: `pending`, `retrying`, `delivered`, `failed`, `skipped`.
    pub status: Option<String>,
    /// A delivery to this target.
    pub target_id: Option<String>,
    /// Text in a header or the body.
    pub q: Option<String>,
    /// Received at or after (RFC 3339).
    pub since: Option<String>,
    /// Received at or before (RFC 3339; the whole second, or minute, it names).
    pub until: Option<String>,
}

impl EventFilterIn {
    /// The store's filter; a value that does not parse names its field.
    pub fn to_filter(&self) -> Result<EventFilter, ServiceError> {
        fn set(v: &Option<String>) -> Option<&str> {
            v.as_deref().map(str::trim).filter(|v| !v.is_empty())
        }
        let status = match set(&self.status) {
            None | Some("any") => None,
            Some("pending") => Some(DeliveryStatus::Pending),
            Some("retrying") => Some(DeliveryStatus::Retrying),
            Some("delivered") => Some(DeliveryStatus::Delivered),
            Some("failed") => Some(DeliveryStatus::Failed),
            // Matched by name (see `EventFilter::status`): the reason is not compared.
            Some("skipped") => Some(DeliveryStatus::Skipped {
                reason: Box::default(),
            }),
            Some(_) => {
                return Err(ServiceError::invalid(
                    "status",
                    "must be one of failed, retrying, pending, delivered, skipped",
                ));
            }
        };
        let target_id = set(&self.target_id)
            .map(|t| {
                Uuid::try_parse(t)
                    .map_err(|_| ServiceError::invalid("target_id", "must be a target's id"))
            })
            .transpose()?;
        let text = set(&self.q).unwrap_or_default();
        if text.len() > MAX_SEARCH_BYTES {
            return Err(ServiceError::invalid(
                "q",
                format!("at most {MAX_SEARCH_BYTES} bytes"),
            ));
        }
        Ok(EventFilter {
            status,
            target_id,
            text: text.as_bytes().to_vec(),
            since: set(&self.since)
                .map(|t| parse_time("since", t))
                .transpose()?,
            until: set(&self.until).map(parse_until).transpose()?,
        })
    }
}

/// RFC 3339 (`2026-01-02T03:04:05Z`), or a date and time without a zone as a browser's
/// `datetime-local` field sends it (`2026-01-02T03:04`), taken as UTC.
fn parse_time(field: &'static str, text: &str) -> Result<Millis, ServiceError> {
    let parsed = text.parse::<jiff::Timestamp>().or_else(|_| {
        text.parse::<jiff::civil::DateTime>()
            .and_then(|dt| jiff::tz::TimeZone::UTC.to_timestamp(dt))
    });
    parsed
        .map(|t| t.as_millisecond())
        .map_err(|_| ServiceError::invalid(field, "must be an RFC 3339 time"))
}

/// `until` as given, rounded up to the end of the precision it was written in, so the
/// bound is inclusive as a reader means it: `…T23:59:59Z` takes in that whole second, a
/// `datetime-local` `…T04:00` that whole minute.
fn parse_until(text: &str) -> Result<Millis, ServiceError> {
    let at = parse_time("until", text)?;
    let time = text.split_once(['T', 't', ' ']).map_or("", |(_, t)| t);
    let clock = time.split(['Z', 'z', '+', '-']).next().unwrap_or("");
    let (hms, fraction) = clock.split_once('.').unwrap_or((clock, ""));
    let digits = fraction.chars().take_while(char::is_ascii_digit).count();
    let rest_of_unit = match (hms.matches(':').count(), digits) {
        (1, _) => 59_999,
        (_, 0) => 999,
        (_, 1) => 99,
        (_, 2) => 9,
        _ => 0,
    };
    Ok(at.saturating_add(rest_of_unit))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn until_takes_in_the_whole_unit_it_names() {
        let base = parse_time("until", "2026-01-02T03:04:05Z").unwrap();
        assert_eq!(parse_until("2026-01-02T03:04:05Z").unwrap(), base + 999);
        assert_eq!(
            parse_until("2026-01-02T04:04:05+01:00").unwrap(),
            base + 999
        );
        assert_eq!(parse_until("2026-01-02T03:04:05.5Z").unwrap(), base + 599);
        assert_eq!(parse_until("2026-01-02T03:04:05.123Z").unwrap(), base + 123);
        assert_eq!(
            parse_until("2026-01-02T03:04").unwrap(),
            base - 5_000 + 59_999
        );
        assert!(parse_until("yesterday").is_err());
    }

    #[test]
    fn filters_parse_and_name_the_bad_field() {
        let f = EventFilterIn {
            status: Some("failed".into()),
            since: Some("2026-01-02T03:04:05Z".into()),
            until: Some("2026-01-02T04:00".into()),
            q: Some(" push ".into()),
            target_id: Some(String::new()),
        }
        .to_filter()
        .unwrap();
        assert_eq!(f.status, Some(DeliveryStatus::Failed));
        assert_eq!(f.since, Some(1_767_323_045_000));
        assert_eq!(
            f.until,
            Some(1_767_326_400_000 + 59_999),
            "the whole minute"
        );
        assert_eq!(f.text, b"push");
        assert_eq!(f.target_id, None);
        let bad = |f: EventFilterIn| match f.to_filter() {
            Err(ServiceError::Invalid { field, .. }) => field,
            other => panic!("{other:?}"),
        };
        let status = EventFilterIn {
            status: Some("done".into()),
            ..Default::default()
        };
        assert_eq!(bad(status), "status");
        let since = EventFilterIn {
            since: Some("yesterday".into()),
            ..Default::default()
        };
        assert_eq!(bad(since), "since");
        let target = EventFilterIn {
            target_id: Some("x".into()),
            ..Default::default()
        };
        assert_eq!(bad(target), "target_id");
        assert!(EventFilterIn::default().to_filter().unwrap().is_empty());
    }
}

/// `?since=` of an export: RFC 3339.
#[derive(Debug, Default, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct ExportQuery {
    /// Only events received at or after this time (RFC 3339).
    pub since: Option<String>,
}

/// Every error answer of the API.
#[derive(Serialize, ToSchema)]
pub struct ErrorOut {
    pub error: String,
}

/// A page of events, newest first.
#[derive(Serialize, ToSchema)]
pub struct EventPageOut {
    pub events: Vec<EventOut>,
    pub page: usize,
    pub per_page: usize,
    pub total: u64,
    pub pages: usize,
}

/// The deliveries a redelivery created.
#[derive(Serialize, ToSchema)]
pub struct RedeliverOut {
    pub deliveries: Vec<Uuid>,
}

/// A filtered page of events, newest first: the filter looked at the newest `scanned`
/// events of its time range (at most 10,000) and `matched` of them matched. A `failed`,
/// `retrying` or `pending` filter looks only at events with deliveries to send (an event
/// whose deliveries were all stored or skipped with it cannot match), and counts those.
#[derive(Serialize, ToSchema)]
pub struct FoundPageOut {
    pub events: Vec<EventOut>,
    pub page: usize,
    pub per_page: usize,
    pub matched: usize,
    pub has_more: bool,
    pub scanned: usize,
    /// Whether every event of the time range was looked at.
    pub scan_complete: bool,
}

/// The event list: a plain page, or a filtered one when any filter is given.
#[derive(Serialize, ToSchema)]
#[serde(untagged)]
pub enum EventListOut {
    Page(EventPageOut),
    Found(FoundPageOut),
}

/// How many deliveries a bulk redelivery queued.
#[derive(Serialize, ToSchema)]
pub struct RedeliverMatchingOut {
    pub count: usize,
}

/// A test event's answer, like ingest's.
#[derive(Serialize, ToSchema)]
pub struct TestEventOut {
    /// `ok`.
    pub status: &'static str,
    pub event_id: Uuid,
}
