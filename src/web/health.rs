//! `/.well-known/healthcheck` (always) and `/metrics` (only when credentials are set).

use std::net::SocketAddr;

use axum::Json;
use axum::extract::{ConnectInfo, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde_json::json;

use super::error::ApiError;
use super::{AppState, VERSION, auth, client_ip};
use crate::service::ServiceError;
use crate::store::Operation;
use crate::web::api::rfc3339;

/// `200 {"status": "ok", …}`, or `503 {"status": "degraded", "reasons": […], …}` while an
/// event file cannot be opened or written (a full disk, exhausted descriptors, an I/O or
/// permission error) or the disk is nearly full: the process is alive, but events sent to
/// the affected webhooks are refused. A container health check sees the 503.
pub(super) async fn healthcheck(State(state): State<AppState>) -> Response {
    let uptime = state.started.elapsed().as_secs();
    let now = jiff::Timestamp::now();
    let storage = state.service.storage_health();
    let mut reasons = Vec::new();
    if storage.disk_low {
        reasons.push(format!(
            "disk nearly full: {} bytes free on the data directory's filesystem",
            storage.free_bytes.unwrap_or(0)
        ));
    }
    let problems: Vec<_> = storage
        .problems
        .iter()
        .map(|(p, name)| {
            reasons.push(format!(
                "the event file of webhook {} cannot be {}: {}",
                p.webhook_id,
                match p.operation {
                    Operation::Open => "opened",
                    Operation::Write => "written",
                },
                p.cause.as_str()
            ));
            json!({
                "webhook_id": p.webhook_id,
                "webhook_name": name,
                "operation": p.operation.as_str(),
                "cause": p.cause.as_str(),
                "error": p.error,
                "since": rfc3339(p.since),
            })
        })
        .collect();
    let degraded = storage.degraded();
    let body = json!({
        "status": if degraded { "degraded" } else { "ok" },
        "reasons": reasons,
        "storage": {
            "free_bytes": storage.free_bytes,
            "failing_event_files": problems,
        },
        "now": now.to_string(),
        "uptime_seconds": uptime,
        "uptime_human": human_duration(uptime),
        "version": VERSION,
        "appname": "webhooker",
    });
    let status = if degraded {
        StatusCode::SERVICE_UNAVAILABLE
    } else {
        StatusCode::OK
    };
    (status, Json(body)).into_response()
}

pub(super) async fn metrics(
    State(state): State<AppState>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
) -> Response {
    let (Some((user, pass)), Some(handle)) = (&state.web.metrics_credentials, &state.metrics)
    else {
        return ApiError::new(StatusCode::NOT_FOUND, "not found").into_response();
    };
    let Some((u, p)) = auth::basic_credentials(&headers) else {
        return ApiError::unauthorized().into_response();
    };
    // This password can be guessed like a user's: the check shares the login limit, and
    // scrapes with the right one do not use it up.
    let guess = state
        .limiter
        .guess(Some(client_ip(&headers, peer, state.web.trust_proxy)));
    if !guess.admit() {
        return ApiError::from(ServiceError::TooManyAttempts).into_response();
    }
    if !(auth::constant_time_eq(&u, user) & auth::constant_time_eq(&p, pass)) {
        return ApiError::unauthorized().into_response();
    }
    guess.succeeded();
    let storage = state.service.storage_health();
    metrics::gauge!(crate::metrics::STORAGE_FAILING_FILES).set(storage.problems.len() as f64);
    if let Some(free) = storage.free_bytes {
        metrics::gauge!(crate::metrics::STORAGE_FREE_BYTES).set(free as f64);
    }
    (
        [(
            header::CONTENT_TYPE,
            "text/plain; version=0.0.4; charset=utf-8",
        )],
        handle.render(),
    )
        .into_response()
}

fn human_duration(secs: u64) -> String {
    let (d, h, m, s) = (secs / 86400, secs / 3600 % 24, secs / 60 % 60, secs % 60);
    match (d, h, m) {
        (0, 0, 0) => format!("{s}s"),
        (0, 0, _) => format!("{m}m {s}s"),
        (0, _, _) => format!("{h}h {m}m {s}s"),
        _ => format!("{d}d {h}h {m}m {s}s"),
    }
}
