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

pub(super) async fn healthcheck(State(state): State<AppState>) -> Json<serde_json::Value> {
    let uptime = state.started.elapsed().as_secs();
    let now = jiff::Timestamp::now();
    Json(json!({
        "status": "ok",
        "now": now.to_string(),
        "uptime_seconds": uptime,
        "uptime_human": human_duration(uptime),
        "version": VERSION,
        "appname": "webhooker",
    }))
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
