//! What one attempt does per target kind, how its result is classified, and the headers
//! it carries (forwarded originals, our ids, Standard Webhooks signatures).
//! An attempt never returns `Err`: a receiver's 503 or a refused connection is data
//! ([`AttemptReport`]), not a failure of ours.

mod http;
mod signature;
mod slack;

use std::time::Duration;

use crate::model::AttemptExchange;

pub(crate) use http::{HttpRequest, send_http};
pub(crate) use signature::{SVIX_HEADERS, standard_webhooks_headers};
pub use slack::slack_text;

/// Bytes of response body kept per attempt.
pub const MAX_RESPONSE_EXCERPT: usize = 4096;

/// What should happen after an attempt.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// Delivered.
    Delivered,
    /// Transient failure; retry if the budget allows, not before `after` if given.
    Retry {
        /// A `Retry-After` hint from the receiver.
        after: Option<Duration>,
    },
    /// Permanent failure: do not retry.
    Fail,
}

/// The outcome of one attempt.
#[derive(Debug, Clone)]
pub struct AttemptReport {
    /// What to do next.
    pub verdict: Verdict,
    /// HTTP status, when a response arrived.
    pub status_code: Option<u16>,
    /// Error text when there was no usable response.
    pub error: Option<String>,
    /// Start of the response body.
    pub response_body: Vec<u8>,
    /// The request sent and the response headers (bounded; boxed, so a report stays small
    /// on the paths that never reach the network).
    pub exchange: Box<AttemptExchange>,
}

impl AttemptReport {
    /// A success without an HTTP exchange (log, database).
    pub fn delivered_locally() -> AttemptReport {
        AttemptReport {
            verdict: Verdict::Delivered,
            status_code: None,
            error: None,
            response_body: Vec::new(),
            exchange: Box::default(),
        }
    }

    /// A permanent failure with a reason.
    pub fn failed(reason: impl Into<String>) -> AttemptReport {
        AttemptReport {
            verdict: Verdict::Fail,
            status_code: None,
            error: Some(reason.into()),
            response_body: Vec::new(),
            exchange: Box::default(),
        }
    }

    /// Whether this attempt says the target is unhealthy (for the circuit breaker): a 4xx
    /// other than 408/429 proves the receiver is up, so only transient failures count.
    pub fn target_unhealthy(&self) -> bool {
        matches!(self.verdict, Verdict::Retry { .. })
    }
}

/// Classifies an HTTP status: 2xx delivered; 408, 429 and 5xx retry; other
/// statuses fail at once.
pub fn classify_status(status: u16, retry_after: Option<Duration>) -> Verdict {
    match status {
        200..=299 => Verdict::Delivered,
        408 | 429 | 500..=599 => Verdict::Retry {
            // Retry-After is honoured on 429 and 503 only.
            after: if status == 429 || status == 503 {
                retry_after
            } else {
                None
            },
        },
        _ => Verdict::Fail,
    }
}

/// Headers never forwarded: hop-by-hop ones, Host, and framing the client recomputes.
const DROPPED_HEADERS: &[&str] = &[
    "connection",
    "keep-alive",
    "proxy-connection",
    "proxy-authenticate",
    "proxy-authorization",
    "te",
    "trailer",
    "transfer-encoding",
    "upgrade",
    "host",
    "content-length",
];

/// The original headers forwarded to http targets: not hop-by-hop (the fixed list, plus
/// any header the sender's `Connection` header names, RFC 9110 §7.6.1), not Host or
/// framing, and not `X-Webhooker-*`, so a sender cannot forge the ids receivers dedupe by.
pub fn forwarded_headers(
    original: &[(String, Vec<u8>)],
) -> impl Iterator<Item = &(String, Vec<u8>)> {
    let named_by_connection: Vec<String> = original
        .iter()
        .filter(|(name, _)| name.eq_ignore_ascii_case("connection"))
        .flat_map(|(_, value)| {
            String::from_utf8_lossy(value)
                .split(',')
                .map(|t| t.trim().to_ascii_lowercase())
                .filter(|t| !t.is_empty())
                .collect::<Vec<_>>()
        })
        .collect();
    original.iter().filter(move |(name, _)| {
        let lower = name.to_ascii_lowercase();
        !DROPPED_HEADERS.contains(&lower.as_str())
            && !lower.starts_with("x-webhooker-")
            && !named_by_connection.contains(&lower)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn status_classes() {
        let hint = Some(Duration::from_secs(5));
        let cases = [
            (200, hint, Verdict::Delivered),
            (204, None, Verdict::Delivered),
            (301, None, Verdict::Fail),
            (400, None, Verdict::Fail),
            (404, None, Verdict::Fail),
            (408, hint, Verdict::Retry { after: None }),
            (429, hint, Verdict::Retry { after: hint }),
            (500, hint, Verdict::Retry { after: None }),
            (503, hint, Verdict::Retry { after: hint }),
        ];
        for (status, ra, want) in cases {
            assert_eq!(classify_status(status, ra), want, "{status}");
        }
    }

    #[test]
    fn header_filter() {
        let h = |pairs: &[(&str, &str)]| -> Vec<(String, Vec<u8>)> {
            pairs
                .iter()
                .map(|(n, v)| (n.to_string(), v.as_bytes().to_vec()))
                .collect()
        };
        let original = h(&[
            ("Host", "x"),
            ("connection", "keep-alive, X-Hop"),
            ("Transfer-Encoding", "chunked"),
            ("X-Webhooker-Event-Id", "forged"),
            ("x-hop", "named by Connection"),
            ("content-type", "application/json"),
            ("x-github-event", "push"),
            ("authorization", "token"),
            ("user-agent", "GitHub-Hookshot"),
        ]);
        let kept: Vec<&str> = forwarded_headers(&original)
            .map(|(n, _)| n.as_str())
            .collect();
        assert_eq!(
            kept,
            [
                "content-type",
                "x-github-event",
                "authorization",
                "user-agent"
            ]
        );
    }
}
