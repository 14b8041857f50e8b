//! `POST|PUT|PATCH /webhook/{entrypoint}`: read the request, hand it to the [`Ingestor`],
//! answer `200 {"status":"ok","event_id":…}` only after the commit.
//!
//! These requests do not go through the axum router: [`super::HttpApp`] hands them to
//! [`receive`] directly (see there for why).

use std::net::SocketAddr;
use std::panic::AssertUnwindSafe;
use std::time::Duration;

use axum::Json;
use axum::http::{HeaderValue, Method, Request, StatusCode, header};
use axum::response::{IntoResponse, Response};
use bytes::Bytes;
use futures_util::FutureExt;
use http_body_util::BodyExt;
use hyper::body::Incoming;
use serde::Serialize;
use tokio::time::Instant;
use uuid::Uuid;

use super::error::ApiError;
use super::{AppState, client_ip, client_key};
use crate::config::HttpConfig;
use crate::ingest::{BodyReservation, IncomingRequest, IngestError, Ingestor};

use crate::ingest::ENTRYPOINT_PATH_PREFIX as PATH_PREFIX;

/// Whether `path` is ingest's to answer: everything under `/webhook/`, so a sender that
/// got its URL wrong (no id, a trailing slash) gets ingest's JSON 404, not an HTML page.
pub(super) fn is_ingest_path(path: &str) -> bool {
    path.starts_with(PATH_PREFIX)
}

/// The entrypoint id in `path` when it is an entrypoint URL: `/webhook/` and one non-empty
/// segment, taken as sent (not percent-decoded: only the plain hyphenated UUID names an
/// entrypoint).
fn entrypoint_in(path: &str) -> Option<&str> {
    path.strip_prefix(PATH_PREFIX)
        .filter(|id| !id.is_empty() && !id.contains('/'))
}

/// Answers a request to an entrypoint URL: JSON in every case, a panic included (500).
pub(super) async fn receive(
    state: &AppState,
    peer: SocketAddr,
    req: Request<Incoming>,
) -> Response {
    let method = req.method().clone();
    answer(method, receive_inner(state, peer, req)).await
}

/// Awaits `handling` and turns what it ends with into the response: an error through
/// [`ApiError`], a panic into `500 {"error":"internal error"}` with the panic's message
/// logged. Server errors are logged here at ERROR, as the router's trace layer does for
/// every other route, except those of a storage failure episode (an event file that
/// cannot be opened or written now): the store logs the episode once when it begins and
/// once when it ends, so each sender request that meets it is logged at DEBUG only.
async fn answer(
    method: Method,
    handling: impl Future<Output = Result<Response, ApiError>>,
) -> Response {
    let started = Instant::now();
    let mut known_failure = false;
    let resp = match AssertUnwindSafe(handling).catch_unwind().await {
        Ok(Ok(resp)) => resp,
        Ok(Err(e)) => {
            known_failure = e.is_known_failure();
            e.into_response()
        }
        Err(panic) => {
            let message = panic
                .downcast_ref::<String>()
                .map(String::as_str)
                .or_else(|| panic.downcast_ref::<&str>().copied())
                .unwrap_or("(no message)");
            tracing::error!(%method, panic = message, "ingest handler panicked");
            ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, "internal error").into_response()
        }
    };
    let status = resp.status().as_u16();
    let latency_ms = started.elapsed().as_millis();
    // A loop (508) is the sender's doing, and ingest logged it at WARN.
    if resp.status().is_server_error() && resp.status() != StatusCode::LOOP_DETECTED {
        if known_failure {
            tracing::debug!(%method, status, latency_ms, "webhook request failed: storage is failing (logged once)");
        } else {
            tracing::error!(%method, status, latency_ms, "webhook request failed");
        }
    } else {
        tracing::debug!(%method, status, latency_ms, "webhook request answered");
    }
    resp
}

async fn receive_inner(
    state: &AppState,
    peer: SocketAddr,
    req: Request<Incoming>,
) -> Result<Response, ApiError> {
    if !matches!(*req.method(), Method::POST | Method::PUT | Method::PATCH) {
        let mut resp =
            ApiError::new(StatusCode::METHOD_NOT_ALLOWED, "use POST, PUT or PATCH").into_response();
        resp.headers_mut()
            .insert(header::ALLOW, HeaderValue::from_static("POST, PUT, PATCH"));
        return Ok(resp);
    }
    let ingestor = &state.ingestor;
    let id = entrypoint_in(req.uri().path()).ok_or(IngestError::UnknownEntrypoint)?;
    let entrypoint = ingestor.entrypoint(id)?;
    let limit = ingestor.max_body_bytes();
    let declared = req
        .headers()
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<usize>().ok());
    if declared.is_some_and(|n| n > limit) {
        return Err(IngestError::BodyTooLarge { limit }.into());
    }
    let client = client_ip(req.headers(), peer, state.web.trust_proxy);
    let (parts, body) = req.into_parts();
    // The reservation holds room for the body in the ingest memory budget, within the
    // client's share of it, until the writer is done with it (`accept` hands it on).
    let reservation = ingestor.reserve_body(declared, client_key(client)).await?;
    let (body, reservation) =
        read_body(ingestor, &state.web.http, body, declared, reservation).await?;
    let headers = parts
        .headers
        .iter()
        .map(|(k, v)| (k.as_str().to_string(), v.as_bytes().to_vec()))
        .collect();
    let path = parts
        .uri
        .path_and_query()
        .map(|p| p.as_str().to_string())
        .unwrap_or_default();
    let incoming = IncomingRequest {
        method: parts.method.as_str().to_string(),
        path,
        headers,
        remote_addr: client.to_string(),
        body,
    };
    let accepted = ingestor.accept(&entrypoint, incoming, reservation).await?;
    Ok(Json(Answer {
        status: "ok",
        event_id: accepted.event_id,
        duplicate: accepted.duplicate,
    })
    .into_response())
}

/// After this many pieces, a body must average [`MIN_AVERAGE_PIECE`] bytes per piece.
/// Honest senders write kilobytes at a time; a sender writing one byte per chunk makes the
/// server do ~100× the work per byte.
const PIECES_BEFORE_AVERAGE_CHECK: usize = 16 * 1024;
/// See [`PIECES_BEFORE_AVERAGE_CHECK`].
const MIN_AVERAGE_PIECE: usize = 64;

/// Reads an ingest body within `MAX_BODY_BYTES`, the ingest memory budget (`reservation`,
/// grown as an unknown length needs) and the time limits: a body that pauses longer than
/// `body_idle_timeout`, is not complete within `body_read_timeout` of its first byte being
/// awaited, or holds room in the budget and brings less than `body_min_rate` in some
/// `body_rate_window` (see [`FillRate`]), gets 408 and nothing is stored.
async fn read_body(
    ingestor: &Ingestor,
    limits: &HttpConfig,
    mut body: Incoming,
    declared: Option<usize>,
    mut reservation: BodyReservation,
) -> Result<(Bytes, BodyReservation), IngestError> {
    let limit = ingestor.max_body_bytes();
    let start = Instant::now();
    let deadline = start + limits.body_read_timeout;
    let mut last_piece = start;
    let mut fill_rate = FillRate::new(limits, start);
    let next_check = |idle_until: Instant, fill_rate: &Option<FillRate>| {
        let check = idle_until.min(deadline);
        fill_rate
            .as_ref()
            .map_or(check, |rate| check.min(rate.window_ends))
    };
    // One timer for the whole body, re-armed only when it fires: resetting it per piece
    // would cost a timer-wheel update for every few bytes a slow sender trickles in.
    let timer = tokio::time::sleep_until(next_check(start + limits.body_idle_timeout, &fill_rate));
    let mut timer = std::pin::pin!(timer);
    // The common single-piece body is kept as is; anything else is copied into one buffer
    // as it arrives, so no piece holds on to hyper's read buffer.
    let mut first: Option<Bytes> = None;
    // A Vec grown with `reserve_exact` to what the reservation covers: a doubling buffer
    // could hold nearly twice what the budget counts.
    let mut rest: Vec<u8> = Vec::new();
    let mut len = 0usize;
    let mut pieces = 0usize;
    loop {
        let frame = tokio::select! {
            biased;
            frame = body.frame() => frame,
            () = timer.as_mut() => {
                let now = Instant::now();
                let idle_until = last_piece + limits.body_idle_timeout;
                if now >= deadline || now >= idle_until {
                    return Err(IngestError::BodyTimeout);
                }
                if let Some(rate) = &mut fill_rate
                    && now >= rate.window_ends
                {
                    // Only room reserved and not yet filled is at stake: the unbudgeted
                    // start is bounded by the connection cap already.
                    let unfilled = reservation.holds_room() && len < reservation.covers();
                    if !rate.next_window(now, len) && unfilled {
                        return Err(IngestError::BodyTooSlow);
                    }
                }
                timer.as_mut().reset(next_check(idle_until, &fill_rate));
                continue;
            }
        };
        let Some(frame) = frame else { break };
        let frame = frame.map_err(|_| IngestError::BodyUnreadable)?;
        // Trailers are not part of the event.
        let Ok(data) = frame.into_data() else {
            continue;
        };
        last_piece = Instant::now();
        pieces += 1;
        len += data.len();
        if len > limit {
            return Err(IngestError::BodyTooLarge { limit });
        }
        if pieces > PIECES_BEFORE_AVERAGE_CHECK && len < pieces * MIN_AVERAGE_PIECE {
            return Err(IngestError::BodyFragmented);
        }
        reservation.cover(len).await?;
        match first.take() {
            None if rest.is_empty() => first = Some(data),
            earlier => {
                if rest.capacity() < len {
                    // A declared length is allocated once; an unknown one doubles, but
                    // never past what the reservation covers.
                    let room = match declared {
                        Some(declared) => declared.min(limit),
                        None => (len * 2).max(4096).min(reservation.covers()),
                    }
                    .max(len);
                    rest.reserve_exact(room - rest.len());
                }
                if let Some(earlier) = earlier {
                    rest.extend_from_slice(&earlier);
                }
                rest.extend_from_slice(&data);
            }
        }
    }
    let body = first.unwrap_or_else(|| Bytes::from(rest));
    Ok((body, reservation))
}

/// The minimum rate at which a body must fill its room in the ingest memory budget
/// (`body_min_rate`), counted in consecutive windows of `body_rate_window`: without it, a
/// sender that declares a large body and trickles it in (a byte every few seconds keeps
/// clear of the pause limit) holds that room for the whole `body_read_timeout`, so a few
/// such senders, reconnecting, keep every large body from others waiting.
struct FillRate {
    window: Duration,
    /// Bytes a window must bring.
    min_per_window: usize,
    /// When the current window ends.
    window_ends: Instant,
    /// Body bytes received when the current window began.
    len_at_start: usize,
}

impl FillRate {
    /// The rule for a body whose first byte is awaited at `start`; `None` when it is off.
    fn new(limits: &HttpConfig, start: Instant) -> Option<FillRate> {
        let window = limits.body_rate_window;
        if limits.body_min_rate == 0 || window.is_zero() {
            return None;
        }
        let per_window = limits.body_min_rate as u128 * window.as_millis() / 1000;
        Some(FillRate {
            window,
            min_per_window: usize::try_from(per_window).unwrap_or(usize::MAX),
            window_ends: start + window,
            len_at_start: 0,
        })
    }

    /// Ends the current window at `now`, with `len` bytes received so far, and starts the
    /// next one. Returns whether the ended window brought enough.
    fn next_window(&mut self, now: Instant, len: usize) -> bool {
        let brought = len - self.len_at_start;
        self.len_at_start = len;
        self.window_ends = now + self.window;
        brought >= self.min_per_window
    }
}

/// The answer to an accepted webhook: `{"status":"ok","event_id":"…"}`, and
/// `"duplicate":true` when the request repeated a stored event's idempotency key. A struct
/// rather than `json!`: this is the hottest response, and it needs no map.
#[derive(Serialize)]
struct Answer {
    status: &'static str,
    event_id: Uuid,
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    duplicate: bool,
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::test_log::Logged;

    /// Runs `handling` through [`answer`] under a subscriber that records every event.
    async fn answered(
        handling: impl Future<Output = Result<Response, ApiError>>,
    ) -> (StatusCode, serde_json::Value, String) {
        let logged = Logged::default();
        // The test runtime is single-threaded: the future runs under this subscriber.
        let resp = {
            let _default = tracing::subscriber::set_default(logged.subscriber());
            answer(Method::POST, handling).await
        };
        let status = resp.status();
        let body = resp.into_body().collect().await.unwrap().to_bytes();
        (
            status,
            serde_json::from_slice(&body).unwrap(),
            logged.text(),
        )
    }

    #[test]
    fn fill_rate_counts_each_window_on_its_own() {
        let limits = HttpConfig {
            body_min_rate: 1000,
            body_rate_window: Duration::from_secs(2),
            ..HttpConfig::default()
        };
        let start = Instant::now();
        let mut rate = FillRate::new(&limits, start).unwrap();
        assert_eq!(rate.min_per_window, 2000);
        assert_eq!(rate.window_ends, start + Duration::from_secs(2));
        // A fast first window buys nothing for the next one.
        assert!(rate.next_window(rate.window_ends, 50_000));
        assert_eq!(rate.window_ends, start + Duration::from_secs(4));
        assert!(!rate.next_window(rate.window_ends, 51_999));
        assert!(rate.next_window(rate.window_ends, 53_999));
        let off = HttpConfig {
            body_min_rate: 0,
            ..HttpConfig::default()
        };
        assert!(FillRate::new(&off, start).is_none());
    }

    #[tokio::test]
    async fn a_panic_is_answered_500_json_and_logged_with_its_message() {
        let (status, body, log) = answered(async {
            if true {
                panic!("boom in the handler");
            }
            Ok(StatusCode::OK.into_response())
        })
        .await;
        assert_eq!(status, StatusCode::INTERNAL_SERVER_ERROR);
        assert_eq!(body, serde_json::json!({ "error": "internal error" }));
        assert!(log.contains("ingest handler panicked"), "{log}");
        assert!(log.contains("boom in the handler"), "{log}");
        assert!(
            log.contains("ERROR")
                && log.contains("webhook request failed")
                && log.contains("status=500"),
            "{log}"
        );
    }

    #[tokio::test]
    async fn server_errors_are_logged_at_error_and_client_errors_are_not() {
        let (status, body, log) =
            answered(async { Err(ApiError::new(StatusCode::SERVICE_UNAVAILABLE, "store busy")) })
                .await;
        assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
        assert_eq!(body, serde_json::json!({ "error": "store busy" }));
        assert!(log.contains("ERROR") && log.contains("status=503"), "{log}");

        let (status, _, log) =
            answered(async { Err(ApiError::new(StatusCode::NOT_FOUND, "no such entrypoint")) })
                .await;
        assert_eq!(status, StatusCode::NOT_FOUND);
        assert!(!log.contains("ERROR"), "{log}");
        assert!(
            log.contains("webhook request answered") && log.contains("status=404"),
            "{log}"
        );
    }

    /// A storage failure episode is logged once by the store: each request that meets it
    /// is answered 503 and logged at DEBUG, whether a write failed or the file cannot open.
    #[tokio::test]
    async fn requests_meeting_a_storage_failure_episode_are_not_logged_at_error() {
        use crate::store::StoreError;
        let cannot_open = || {
            StoreError::CannotOpen(Box::new(StoreError::Io(std::io::Error::from_raw_os_error(
                24,
            ))))
        };
        for e in [StoreError::Unavailable, cannot_open()] {
            let (status, _, log) = answered(async { Err(IngestError::Store(e).into()) }).await;
            assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
            assert!(!log.contains("ERROR"), "{log}");
            assert!(
                log.contains("DEBUG") && log.contains("storage is failing"),
                "{log}"
            );
        }
    }
}
