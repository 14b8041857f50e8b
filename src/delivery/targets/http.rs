//! One HTTP(S) attempt: the original method, headers and body as the target's transform
//! shapes them, plus the X-Webhooker ids and hop count.

use std::time::{Duration, SystemTime};

use reqwest::header::{HeaderMap, HeaderName, HeaderValue};

use super::{AttemptReport, MAX_RESPONSE_EXCERPT, Verdict, classify_status, forwarded_headers};
use crate::delivery::backoff::parse_retry_after;
use crate::delivery::ssrf::{NetworkPolicy, SsrfError};
use crate::model::{AttemptExchange, SentRequest, bounded_headers};
use crate::routing::Transform;

/// Everything one HTTP attempt sends, checked and built by a delivery thread so that the
/// runtime's part is the exchange alone.
pub(crate) struct HttpRequest {
    method: reqwest::Method,
    url: reqwest::Url,
    headers: HeaderMap,
    body: bytes::Bytes,
    timeout: Duration,
}

impl HttpRequest {
    /// Checks the method and URL (a literal address the policy refuses is refused here;
    /// names are checked when they resolve). A request that cannot be sent is the
    /// attempt's failure, as a report.
    pub(crate) fn new(
        method: &str,
        url: &str,
        headers: HeaderMap,
        body: bytes::Bytes,
        timeout: Duration,
        policy: &NetworkPolicy,
    ) -> Result<HttpRequest, AttemptReport> {
        let method = reqwest::Method::from_bytes(method.as_bytes())
            .map_err(|_| AttemptReport::failed(format!("invalid method {method}")))?;
        let url = reqwest::Url::parse(url)
            .map_err(|e| AttemptReport::failed(format!("invalid URL: {e}")))?;
        policy
            .check_literal_host(&url)
            .map_err(|e| AttemptReport::failed(format!("refused by SSRF guard: {e}")))?;
        Ok(HttpRequest {
            method,
            url,
            headers,
            body,
            timeout,
        })
    }

    /// Builds the header map: forwarded originals less those the target's transform
    /// removes, plus those it sets (replacing originals of the same name), plus our own.
    /// A transform never touches ours (`routing::Transform::checked` refuses them).
    pub(crate) fn headers_from(
        original: &[(String, Vec<u8>)],
        extra: &[(&'static str, String)],
        transform: &Transform,
    ) -> HeaderMap {
        let mut map = HeaderMap::with_capacity(original.len() + extra.len());
        for (name, value) in forwarded_headers(original) {
            // Values arrived through hyper, so they parse; skip anything that does not.
            if let (Ok(n), Ok(v)) = (
                HeaderName::from_bytes(name.as_bytes()),
                HeaderValue::from_bytes(value),
            ) {
                map.append(n, v);
            }
        }
        for name in &transform.remove_headers {
            map.remove(name.as_str());
        }
        for (name, value) in &transform.set_headers {
            // Checked when saved; a value that is a credential stays out of debug output.
            if let (Ok(n), Ok(mut v)) = (
                HeaderName::from_bytes(name.as_bytes()),
                HeaderValue::from_str(value.expose()),
            ) {
                v.set_sensitive(true);
                map.insert(n, v);
            }
        }
        for (name, value) in extra {
            if let Ok(v) = HeaderValue::from_str(value) {
                map.insert(*name, v);
            }
        }
        map
    }
}

/// What the attempt's record holds instead of a header value marked sensitive: the
/// values a target's transform sets may be credentials, which the pages and the API never
/// show.
const NOT_RECORDED: &[u8] = b"(set by the target's transform; not recorded)";

/// The request as it goes out, bounded, for the attempt's record.
fn sent_request(req: &HttpRequest) -> SentRequest {
    let (headers, headers_dropped) = bounded_headers(req.headers.iter().map(|(name, value)| {
        let shown = if value.is_sensitive() {
            NOT_RECORDED
        } else {
            value.as_bytes()
        };
        (name.as_str(), shown)
    }));
    SentRequest {
        method: req.method.to_string(),
        url: req.url.to_string(),
        headers,
        headers_dropped,
    }
}

/// Performs one exchange. Never fails: every problem becomes an [`AttemptReport`].
pub(crate) async fn send_http(client: &reqwest::Client, req: HttpRequest) -> AttemptReport {
    let request = sent_request(&req);
    let timeout = req.timeout;
    let mut report = exchange(client, req, timeout).await;
    report.exchange.request = Some(request);
    report
}

async fn exchange(client: &reqwest::Client, req: HttpRequest, timeout: Duration) -> AttemptReport {
    let sent = client
        .request(req.method, req.url)
        .headers(req.headers)
        .body(req.body)
        .timeout(req.timeout)
        .send()
        .await;
    let mut resp = match sent {
        Ok(r) => r,
        Err(e) => return transport_failure(&e, timeout),
    };
    let status = resp.status().as_u16();
    let (response_headers, response_headers_dropped) = bounded_headers(
        resp.headers()
            .iter()
            .map(|(name, value)| (name.as_str(), value.as_bytes())),
    );
    let retry_after = resp
        .headers()
        .get(reqwest::header::RETRY_AFTER)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| parse_retry_after(v, SystemTime::now()));
    // Keep the first 4 KiB; stop reading after that (the receiver may send a lot).
    let mut excerpt = Vec::new();
    while excerpt.len() < MAX_RESPONSE_EXCERPT {
        match resp.chunk().await {
            Ok(Some(chunk)) => {
                let room = MAX_RESPONSE_EXCERPT - excerpt.len();
                excerpt.extend_from_slice(&chunk[..chunk.len().min(room)]);
            }
            Ok(None) | Err(_) => break,
        }
    }
    AttemptReport {
        verdict: classify_status(status, retry_after),
        status_code: Some(status),
        error: None,
        response_body: excerpt,
        exchange: Box::new(AttemptExchange {
            request: None,
            response_headers,
            response_headers_dropped,
        }),
    }
}

/// Classifies a transport error by type: a refused address is permanent, everything else
/// (connect, timeout, reset) is worth a retry.
/// A timeout reads "no response (timed out after N s)": nothing came back in the target's
/// time.
fn transport_failure(e: &reqwest::Error, timeout: Duration) -> AttemptReport {
    let mut source: Option<&(dyn std::error::Error + 'static)> = Some(e);
    while let Some(err) = source {
        if let Some(ssrf) = err.downcast_ref::<SsrfError>() {
            return AttemptReport::failed(format!("refused by SSRF guard: {ssrf}"));
        }
        source = err.source();
    }
    let error = if e.is_timeout() {
        format!("no response (timed out after {} s)", timeout.as_secs())
    } else if e.is_connect() {
        format!("connection failed: {}", error_chain(e))
    } else {
        format!("request failed: {}", error_chain(e))
    };
    AttemptReport {
        verdict: Verdict::Retry { after: None },
        status_code: None,
        error: Some(error),
        response_body: Vec::new(),
        exchange: Box::default(),
    }
}

fn error_chain(e: &dyn std::error::Error) -> String {
    let mut out = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        out.push_str(": ");
        out.push_str(&s.to_string());
        source = s.source();
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::delivery::ssrf::NetworkPolicy;
    use crate::model::Secret;

    /// A transform's header values are sent but never recorded with the attempt.
    #[test]
    fn headers_a_transform_sets_are_sent_but_not_recorded() {
        let transform = Transform {
            set_headers: vec![("authorization".into(), Secret::new("Bearer page-token"))],
            ..Transform::default()
        };
        let original = [("x-github-event".to_string(), b"push".to_vec())];
        let headers = HttpRequest::headers_from(&original, &[], &transform);
        assert_eq!(headers["authorization"], "Bearer page-token");
        let req = HttpRequest::new(
            "POST",
            "http://hooks.example.com/hook",
            headers,
            bytes::Bytes::new(),
            Duration::from_secs(1),
            &NetworkPolicy::default(),
        )
        .unwrap();
        let sent = sent_request(&req);
        let auth: Vec<&(String, Vec<u8>)> = sent
            .headers
            .iter()
            .filter(|(n, _)| n == "authorization")
            .collect();
        assert_eq!(auth.len(), 1);
        assert_eq!(auth[0].1, NOT_RECORDED);
        assert!(
            sent.headers
                .iter()
                .any(|(n, v)| n == "x-github-event" && v == b"push")
        );
    }
}
