//! Display helpers shared by the page templates: times, sizes, raw bytes (headers and
//! bodies are never assumed to be UTF-8) and the event rows of the webhook detail and
//! event log pages. Everything here produces plain strings; askama escapes them.

use std::fmt::Write as _;

use base64::Engine as _;

use uuid::Uuid;

use crate::model::{Delivery, Event, Millis, RetryLimit, Target, TargetKind};
use crate::store::EventWithBody;
use crate::web::api::rfc3339;

/// A point in time for the `reltime` macro: RFC 3339 for the client-side relative text,
/// and the full UTC date for the hover title and the no-JS fallback.
#[derive(Debug, Clone)]
pub struct When {
    /// RFC 3339, e.g. `2026-01-02T03:04:05.678Z`.
    pub iso: String,
    /// `2026-01-02 03:04:05 UTC`.
    pub full: String,
}

impl When {
    /// The time `ms` (Unix milliseconds).
    pub fn at(ms: Millis) -> When {
        let full = jiff::Timestamp::from_millisecond(ms)
            .map(|t| t.strftime("%Y-%m-%d %H:%M:%S UTC").to_string())
            .unwrap_or_default();
        When {
            iso: rfc3339(ms),
            full,
        }
    }
}

/// `1.5 KiB`-style size.
pub fn human_size(bytes: u64) -> String {
    const UNITS: [&str; 4] = ["KiB", "MiB", "GiB", "TiB"];
    if bytes < 1024 {
        return format!("{bytes} B");
    }
    let mut v = bytes as f64 / 1024.0;
    let mut unit = 0;
    while v >= 1024.0 && unit < UNITS.len() - 1 {
        v /= 1024.0;
        unit += 1;
    }
    if v < 10.0 {
        format!("{v:.1} {}", UNITS[unit])
    } else {
        format!("{v:.0} {}", UNITS[unit])
    }
}

/// A duration in microseconds as `850 µs`, `12 ms` or `1.25 s`.
pub fn human_duration(us: u64) -> String {
    if us < 1000 {
        format!("{us} µs")
    } else if us < 1_000_000 {
        format!("{} ms", us / 1000)
    } else {
        format!("{:.2} s", us as f64 / 1_000_000.0)
    }
}

/// Header bytes as text: as-is when UTF-8, else with invalid bytes as `\xNN`.
pub fn bytes_text(bytes: &[u8]) -> String {
    match std::str::from_utf8(bytes) {
        Ok(s) => s.to_string(),
        Err(_) => bytes.escape_ascii().to_string(),
    }
}

/// A short id for headings: the last 8 hex digits (random in a UUIDv7; the first ones
/// are the timestamp, shared by events of the same minute).
pub fn short_id(id: Uuid) -> String {
    id.simple().to_string()[24..].to_string()
}

/// How a body (or response excerpt) is shown.
#[derive(Debug, Clone)]
pub struct BodyView {
    /// `empty`, `text`, `json` or `binary`.
    pub kind: &'static str,
    /// Text, pretty-printed JSON, or a hex dump (binary).
    pub text: String,
    /// Base64 of the shown bytes (binary only).
    pub base64: String,
    /// Total size in bytes.
    pub len: usize,
    /// Bytes shown (less than `len` when cut).
    pub shown: usize,
}

impl BodyView {
    /// Renders `bytes`: JSON pretty-printed (key order and numbers kept as sent), UTF-8
    /// text as text, anything else as a hex dump plus base64. At most `limit` bytes are
    /// shown (a hex dump at most a quarter of that, it is four times as long).
    pub fn new(bytes: &[u8], content_type: Option<&str>, limit: usize) -> BodyView {
        let len = bytes.len();
        if len == 0 {
            return BodyView {
                kind: "empty",
                text: String::new(),
                base64: String::new(),
                len,
                shown: 0,
            };
        }
        // A prefix cut inside a multi-byte character is still text: keep the valid part.
        let text = crate::web::utf8_prefix(bytes).filter(|s| !s.contains('\0'));
        if let Some(s) = text {
            let looks_json = content_type.is_some_and(|c| c.to_ascii_lowercase().contains("json"))
                || matches!(s.trim_start().as_bytes().first(), Some(b'{' | b'['));
            if looks_json
                && len <= limit
                && serde_json::from_str::<serde::de::IgnoredAny>(s).is_ok()
            {
                let text = pretty_json(s);
                return BodyView {
                    kind: "json",
                    text,
                    base64: String::new(),
                    len,
                    shown: len,
                };
            }
            let mut cut = len.min(limit);
            while !s.is_char_boundary(cut) {
                cut -= 1;
            }
            return BodyView {
                kind: "text",
                text: s[..cut].to_string(),
                base64: String::new(),
                len,
                shown: cut,
            };
        }
        let shown = len.min((limit / 4).max(256));
        let base64 = base64::engine::general_purpose::STANDARD.encode(&bytes[..shown]);
        BodyView {
            kind: "binary",
            text: hex_dump(&bytes[..shown]),
            base64,
            len,
            shown,
        }
    }

    /// Whether only part of the body is shown.
    pub fn truncated(&self) -> bool {
        self.shown < self.len
    }

    /// Total size, human readable.
    pub fn size(&self) -> String {
        human_size(self.len as u64)
    }

    /// Shown size, human readable.
    pub fn shown_size(&self) -> String {
        human_size(self.shown as u64)
    }
}

/// Classic 16-bytes-a-line hex dump with an ASCII column.
pub fn hex_dump(bytes: &[u8]) -> String {
    let mut out = String::with_capacity(bytes.len() * 4 + 16);
    for (i, chunk) in bytes.chunks(16).enumerate() {
        let _ = write!(out, "{:08x}  ", i * 16);
        for j in 0..16 {
            match chunk.get(j) {
                Some(b) => {
                    let _ = write!(out, "{b:02x} ");
                }
                None => out.push_str("   "),
            }
            if j == 7 {
                out.push(' ');
            }
        }
        out.push_str(" |");
        for b in chunk {
            out.push(if b.is_ascii_graphic() || *b == b' ' {
                *b as char
            } else {
                '.'
            });
        }
        out.push_str("|\n");
    }
    out
}

/// Re-indents valid JSON text with two spaces, keeping key order, number spelling and
/// string escapes exactly as sent (a parse-and-print would sort keys and reformat numbers).
/// Indentation stops growing past this depth: deep nesting from an untrusted body must not
/// multiply the output.
const MAX_INDENT: usize = 16;

pub fn pretty_json(s: &str) -> String {
    // Bound the output too: a body built to explode (`[[[…0,0,0…]]]`) is shown as sent.
    let budget = s.len().saturating_mul(4).saturating_add(4096);
    let mut out = String::with_capacity(s.len() * 2);
    let mut depth = 0usize;
    let mut in_string = false;
    let mut escaped = false;
    let mut chars = s.chars().peekable();
    let newline = |out: &mut String, depth: usize| {
        out.push('\n');
        for _ in 0..depth.min(MAX_INDENT) {
            out.push_str("  ");
        }
    };
    while let Some(c) = chars.next() {
        if out.len() > budget {
            return s.to_string();
        }
        if in_string {
            out.push(c);
            if escaped {
                escaped = false;
            } else if c == '\\' {
                escaped = true;
            } else if c == '"' {
                in_string = false;
            }
            continue;
        }
        match c {
            '"' => {
                in_string = true;
                out.push(c);
            }
            '{' | '[' => {
                out.push(c);
                // Keep empty containers on one line.
                while chars.peek().is_some_and(|n| n.is_whitespace()) {
                    chars.next();
                }
                if matches!(chars.peek(), Some('}' | ']')) {
                    out.push(chars.next().unwrap_or(' '));
                } else {
                    depth += 1;
                    newline(&mut out, depth);
                }
            }
            '}' | ']' => {
                depth = depth.saturating_sub(1);
                newline(&mut out, depth);
                out.push(c);
            }
            ',' => {
                out.push(c);
                newline(&mut out, depth);
            }
            ':' => out.push_str(": "),
            c if c.is_whitespace() => {}
            c => out.push(c),
        }
    }
    out
}

/// One delivery's status, with its target's name.
#[derive(Debug, Clone)]
pub struct DeliveryBadge {
    /// Target name, or a placeholder when it was deleted.
    pub target: String,
    /// `pending`, `retrying`, `delivered`, `failed` or `skipped`.
    pub status: &'static str,
    /// Why a skipped delivery was skipped.
    pub reason: Option<String>,
    /// Attempts so far.
    pub attempts: u32,
}

/// The target's name, or a placeholder when it was deleted.
pub fn target_name(targets: &[std::sync::Arc<Target>], id: Uuid) -> String {
    targets
        .iter()
        .find(|t| t.id == id)
        .map(|t| t.name.clone())
        .unwrap_or_else(|| "(deleted target)".into())
}

/// An event as a row of the event lists, optionally with headers and body.
#[derive(Debug, Clone)]
pub struct EventRow {
    /// Event id.
    pub id: Uuid,
    /// Short id for display.
    pub short: String,
    /// Arrival.
    pub received: When,
    /// HTTP method.
    pub method: String,
    /// Path and query.
    pub path: String,
    /// Content-Type, or empty.
    pub content_type: String,
    /// Body size, human readable.
    pub size: String,
    /// The event's type as its sender names it (see [`event_type`]), or empty.
    pub kind: String,
    /// Latest status per target of the webhook, in the webhook's target order (`None`: no
    /// delivery to it), so each target's badge sits in the same column on every row.
    pub columns: Vec<Option<DeliveryBadge>>,
    /// Headers as (name, value) text.
    pub headers: Vec<(String, String)>,
    /// The body, when asked for.
    pub body: Option<BodyView>,
}

impl EventRow {
    /// The badges of the targets the event has a delivery to, in column order.
    pub fn badges(&self) -> Vec<&DeliveryBadge> {
        self.columns.iter().flatten().collect()
    }

    /// A row for `e`; `body_limit` > 0 also renders headers and body.
    pub fn new(e: &EventWithBody, targets: &[std::sync::Arc<Target>], body_limit: usize) -> Self {
        let mut row = EventRow::summary(&e.event, &e.deliveries, targets);
        row.kind = event_type(&e.event, &e.body).unwrap_or_default();
        if body_limit > 0 {
            row.headers = header_rows(&e.event);
            let mut body = BodyView::new(&e.body, e.event.content_type.as_deref(), body_limit);
            // The store hands out at most `body_limit` bytes; the size shown is the real one.
            body.len = e.event.body_len as usize;
            row.body = Some(body);
        }
        row
    }

    /// The summary fields only.
    pub fn summary(
        event: &Event,
        deliveries: &[Delivery],
        targets: &[std::sync::Arc<Target>],
    ) -> Self {
        EventRow {
            id: event.id,
            short: short_id(event.id),
            received: When::at(event.received_at),
            method: event.method.clone(),
            path: event.path.clone(),
            content_type: event.content_type.clone().unwrap_or_default(),
            size: human_size(event.body_len),
            kind: event_type(event, &[]).unwrap_or_default(),
            columns: targets
                .iter()
                .map(|t| {
                    deliveries
                        .iter()
                        .rfind(|d| d.target_id == t.id)
                        .map(|d| DeliveryBadge {
                            target: t.name.clone(),
                            status: d.status.as_str(),
                            reason: d.status.reason().map(str::to_string),
                            attempts: d.attempts,
                        })
                })
                .collect(),
            headers: Vec::new(),
            body: None,
        }
    }
}

/// Headers that name the event type, as GitHub, Gitea (and Forgejo) and GitLab send them.
const EVENT_TYPE_HEADERS: [&str; 3] = ["x-github-event", "x-gitea-event", "x-gitlab-event"];
/// Top-level JSON fields that name the event type (Stripe and most others: `type`).
const EVENT_TYPE_FIELDS: [&str; 3] = ["type", "event", "action"];
/// Longest event type shown, in characters.
const MAX_EVENT_TYPE: usize = 60;

/// The event's type where the request names one: an event header of GitHub, Gitea or
/// GitLab, else a string `type`, `event` or `action` at the top of a JSON object body
/// (`body` may be a prefix; a cut body names nothing).
pub fn event_type(event: &Event, body: &[u8]) -> Option<String> {
    let from_header = EVENT_TYPE_HEADERS.iter().find_map(|name| {
        event
            .headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| bytes_text(v))
    });
    let found = from_header.or_else(|| {
        if body.len() as u64 != event.body_len || body.first() != Some(&b'{') {
            return None;
        }
        let fields: serde_json::Map<String, serde_json::Value> =
            serde_json::from_slice(body).ok()?;
        EVENT_TYPE_FIELDS
            .iter()
            .find_map(|k| fields.get(*k).and_then(|v| v.as_str()).map(str::to_string))
    })?;
    let text: String = found.trim().chars().take(MAX_EVENT_TYPE).collect();
    (!text.is_empty()).then_some(text)
}

/// The event's headers as text rows.
pub fn header_rows(event: &Event) -> Vec<(String, String)> {
    event
        .headers
        .iter()
        .map(|(k, v)| (k.clone(), bytes_text(v)))
        .collect()
}

/// A target's settings as (label, value) pairs for display.
pub fn target_settings(t: &Target) -> Vec<(&'static str, String)> {
    match &t.kind {
        TargetKind::Http(h) => vec![
            ("Timeout", format!("{} s", h.timeout_secs)),
            (
                "Retries",
                match h.max_retries {
                    RetryLimit::Unlimited => "unlimited".into(),
                    RetryLimit::Limited(0) => "none".into(),
                    RetryLimit::Limited(n) => n.to_string(),
                },
            ),
            ("Max backoff", format!("{} s", h.max_backoff_secs)),
            ("In flight", format!("≤ {}", h.max_in_flight)),
        ],
        TargetKind::Slack(_) => vec![("Retries", crate::model::SLACK_MAX_RETRIES.to_string())],
        TargetKind::Log => vec![("Writes", "one log line per event".into())],
        TargetKind::Database => vec![("Stores", "the event only".into())],
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pretty_json_keeps_order_and_escapes() {
        let s = r#"{"z":1,"a":[1,2.50,{}],"s":"a,b:{\"c\"}","e":[]}"#;
        let p = pretty_json(s);
        assert_eq!(
            p,
            "{\n  \"z\": 1,\n  \"a\": [\n    1,\n    2.50,\n    {}\n  ],\n  \"s\": \"a,b:{\\\"c\\\"}\",\n  \"e\": []\n}"
        );
        assert!(serde_json::from_str::<serde_json::Value>(&p).is_ok());
    }

    #[test]
    fn bodies_by_kind() {
        assert_eq!(BodyView::new(b"", None, 100).kind, "empty");
        assert_eq!(BodyView::new(b"{\"a\":1}", None, 100).kind, "json");
        assert_eq!(BodyView::new(b"{\"a\":", None, 100).kind, "text");
        let b = BodyView::new(&[0xff, 0x00, 0x41], None, 100_000);
        assert_eq!(b.kind, "binary");
        assert!(b.text.starts_with("00000000  ff 00 41"));
        assert_eq!(b.base64, "/wBB");
        let t = BodyView::new("héllo".as_bytes(), None, 2);
        assert_eq!((t.text.as_str(), t.truncated()), ("h", true));
    }

    #[test]
    fn event_types_come_from_sender_headers_then_the_json_body() {
        let event = |headers: Vec<(&str, &str)>, body: &[u8]| Event {
            id: Uuid::nil(),
            entrypoint_id: Uuid::nil(),
            received_at: 0,
            method: "POST".into(),
            path: "/".into(),
            headers: headers
                .into_iter()
                .map(|(k, v)| (k.to_string(), v.as_bytes().to_vec()))
                .collect(),
            content_type: None,
            remote_addr: String::new(),
            body_len: body.len() as u64,
        };
        let body = br#"{"type":"invoice.paid","action":"x"}"#;
        let e = event(vec![("X-GitHub-Event", "push")], body);
        assert_eq!(event_type(&e, body).as_deref(), Some("push"));
        let e = event(vec![("x-gitlab-event", "Push Hook")], b"");
        assert_eq!(event_type(&e, b"").as_deref(), Some("Push Hook"));
        let e = event(vec![], body);
        assert_eq!(event_type(&e, body).as_deref(), Some("invoice.paid"));
        assert_eq!(
            event_type(&e, &body[..10]),
            None,
            "a cut body names nothing"
        );
        let action = br#"{"action":"opened","type":7}"#;
        let e = event(vec![], action);
        assert_eq!(event_type(&e, action).as_deref(), Some("opened"));
        let e = event(vec![], b"type=x");
        assert_eq!(event_type(&e, b"type=x"), None);
    }

    #[test]
    fn sizes_and_durations() {
        assert_eq!(human_size(12), "12 B");
        assert_eq!(human_size(1536), "1.5 KiB");
        assert_eq!(human_size(10 * 1024 * 1024), "10 MiB");
        assert_eq!(human_duration(850), "850 µs");
        assert_eq!(human_duration(12_345), "12 ms");
        assert_eq!(human_duration(1_250_000), "1.25 s");
        assert_eq!(bytes_text(b"a\xffb"), "a\\xffb");
    }
}

#[cfg(test)]
mod review_tests {
    use super::*;

    /// Regression: deeply nested JSON made the pretty-printer's output ~127x the input.
    #[test]
    fn pretty_json_output_is_bounded() {
        let hostile = format!(
            "{}{}{}",
            "[".repeat(126),
            "0,".repeat(50_000) + "0",
            "]".repeat(126)
        );
        let out = pretty_json(&hostile);
        assert!(
            out.len() <= hostile.len() * 4 + 4096 + 64,
            "{} bytes",
            out.len()
        );
        assert_eq!(
            pretty_json("{\"a\":[1,2]}"),
            "{\n  \"a\": [\n    1,\n    2\n  ]\n}"
        );
    }

    /// Regression: a text prefix cut inside a multi-byte character showed as binary.
    #[test]
    fn cut_utf8_prefix_is_still_text() {
        let body = "héllo wörld".as_bytes();
        let cut = &body[..2]; // "h" plus half of "é"
        let view = BodyView::new(cut, Some("text/plain"), 1024);
        assert_eq!(view.kind, "text");
    }
}
