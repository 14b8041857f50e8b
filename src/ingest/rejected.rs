//! The last requests each webhook's verification refused, kept in memory only, so a wrong
//! secret can be debugged from the webhook's page. Bounded: [`KEPT_PER_WEBHOOK`] requests
//! per webhook, each with at most [`KEPT_HEADER_BYTES`] of headers and
//! [`KEPT_BODY_BYTES`] of body; webhooks deleted since are dropped as new ones arrive.

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use uuid::Uuid;

use super::IncomingRequest;
use super::verify::Rejection;
use crate::model::{Millis, Verification};

/// Refused requests kept per webhook.
pub const KEPT_PER_WEBHOOK: usize = 20;
/// Body bytes kept per refused request.
pub const KEPT_BODY_BYTES: usize = 4096;
/// Header bytes (names and values) kept per refused request.
pub const KEPT_HEADER_BYTES: usize = 8192;

/// One refused request.
#[derive(Debug, Clone)]
pub struct RejectedRequest {
    /// When it arrived.
    pub at: Millis,
    /// The client address (from forwarded headers only when TRUST_PROXY is set).
    pub client: String,
    /// What was wrong.
    pub reason: Rejection,
    /// Method.
    pub method: String,
    /// Headers in arrival order, up to [`KEPT_HEADER_BYTES`]; credentials the sender
    /// offered (its Authorization, GitLab token, or the webhook's own header) are replaced
    /// by a note of their length: they may be close to the real secret.
    pub headers: Vec<(String, Vec<u8>)>,
    /// Whether headers were left out.
    pub headers_truncated: bool,
    /// The first [`KEPT_BODY_BYTES`] of the body.
    pub body: Bytes,
    /// The whole body's length.
    pub body_len: usize,
}

/// The log of every webhook; cheap to clone.
#[derive(Debug, Clone, Default)]
pub(crate) struct RejectionLog {
    by_webhook: Arc<Mutex<HashMap<Uuid, VecDeque<Arc<RejectedRequest>>>>>,
}

impl RejectionLog {
    /// Keeps `req`, refused at `now` for `reason` by `verification` of `webhook_id`.
    /// `exists` tells which webhooks still exist, to drop the others' entries.
    pub(crate) fn record(
        &self,
        webhook_id: Uuid,
        verification: &Verification,
        req: &IncomingRequest,
        reason: Rejection,
        now: Millis,
        exists: impl Fn(Uuid) -> bool,
    ) {
        let headers = kept_headers(&req.headers, verification);
        let entry = Arc::new(RejectedRequest {
            at: now,
            client: req.remote_addr.clone(),
            reason,
            method: req.method.clone(),
            headers_truncated: headers.len() < req.headers.len(),
            headers,
            // A copy: a slice would keep the whole body alive.
            body: Bytes::copy_from_slice(&req.body[..req.body.len().min(KEPT_BODY_BYTES)]),
            body_len: req.body.len(),
        });
        let mut map = self.by_webhook.lock().unwrap_or_else(|p| p.into_inner());
        let list = map.entry(webhook_id).or_default();
        if list.len() >= KEPT_PER_WEBHOOK {
            list.pop_front();
        }
        list.push_back(entry);
        // A webhook deleted since its requests were refused frees its room here: new
        // entries are rare, and this keeps the map to the webhooks that exist.
        if map.len() > 1 {
            map.retain(|id, _| exists(*id));
        }
    }

    /// The requests refused for a webhook, newest first.
    pub(crate) fn of(&self, webhook_id: Uuid) -> Vec<Arc<RejectedRequest>> {
        let map = self.by_webhook.lock().unwrap_or_else(|p| p.into_inner());
        map.get(&webhook_id)
            .map(|list| list.iter().rev().cloned().collect())
            .unwrap_or_default()
    }
}

/// The headers worth keeping, within [`KEPT_HEADER_BYTES`], credentials masked.
fn kept_headers(
    headers: &[(String, Vec<u8>)],
    verification: &Verification,
) -> Vec<(String, Vec<u8>)> {
    let credential = |name: &str| {
        matches!(
            name.to_ascii_lowercase().as_str(),
            "authorization" | "proxy-authorization" | "cookie" | "x-gitlab-token"
        ) || matches!(verification, Verification::Header { name: n, .. } if n.eq_ignore_ascii_case(name))
    };
    let mut kept = Vec::new();
    let mut room = KEPT_HEADER_BYTES;
    for (name, value) in headers {
        let value = if credential(name) {
            format!("(hidden: {} bytes)", value.len()).into_bytes()
        } else {
            value.clone()
        };
        let Some(left) = room.checked_sub(name.len() + value.len()) else {
            break;
        };
        room = left;
        kept.push((name.clone(), value));
    }
    kept
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::Secret;

    fn request(body: Vec<u8>, headers: &[(&str, &str)]) -> IncomingRequest {
        IncomingRequest {
            method: "POST".into(),
            path: "/webhook/x".into(),
            headers: headers
                .iter()
                .map(|(n, v)| (n.to_string(), v.as_bytes().to_vec()))
                .collect(),
            remote_addr: "192.0.2.1".into(),
            body: body.into(),
        }
    }

    #[test]
    fn keeps_the_last_twenty_newest_first_bounded_and_masked() {
        let log = RejectionLog::default();
        let webhook = Uuid::new_v4();
        let v = Verification::Header {
            name: "x-key".into(),
            value: Secret::new("right"),
        };
        for i in 0..25u8 {
            let req = request(
                vec![i; 10_000],
                &[
                    ("authorization", "Basic c2VjcmV0"),
                    ("X-Key", "almost-right"),
                    ("x-pad", &"p".repeat(9000)),
                ],
            );
            log.record(
                webhook,
                &v,
                &req,
                Rejection::BadCredentials,
                i64::from(i),
                |_| true,
            );
        }
        let kept = log.of(webhook);
        assert_eq!(kept.len(), KEPT_PER_WEBHOOK);
        assert_eq!(kept[0].at, 24);
        assert_eq!(kept[19].at, 5);
        let newest = &kept[0];
        assert_eq!(
            (newest.body.len(), newest.body_len),
            (KEPT_BODY_BYTES, 10_000)
        );
        assert_eq!(
            newest.headers,
            vec![
                ("authorization".to_string(), b"(hidden: 14 bytes)".to_vec()),
                ("X-Key".to_string(), b"(hidden: 12 bytes)".to_vec()),
            ]
        );
        assert!(newest.headers_truncated);
        assert!(log.of(Uuid::new_v4()).is_empty());
    }

    #[test]
    fn deleted_webhooks_are_dropped() {
        let log = RejectionLog::default();
        let (gone, kept) = (Uuid::new_v4(), Uuid::new_v4());
        let req = request(vec![], &[]);
        log.record(
            gone,
            &Verification::None,
            &req,
            Rejection::BadSignature,
            1,
            |_| true,
        );
        log.record(
            kept,
            &Verification::None,
            &req,
            Rejection::BadSignature,
            2,
            |id| id == kept,
        );
        assert!(log.of(gone).is_empty());
        assert_eq!(log.of(kept).len(), 1);
    }
}
