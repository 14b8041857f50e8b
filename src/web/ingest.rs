//! `POST|PUT|PATCH /webhook/{entrypoint}`: read the request, hand it to the [`Ingestor`],
//! answer `200 {"status":"ok","event_id":…}` only after the commit.

use std::net::SocketAddr;

use axum::Json;
use axum::body::Body;
use axum::extract::{ConnectInfo, Path, State};
use axum::http::{HeaderValue, Method, Request, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::Serialize;
use uuid::Uuid;

use super::error::ApiError;
use super::{AppState, client_ip};
use crate::ingest::{IncomingRequest, IngestError};

pub(super) async fn receive(
    State(state): State<AppState>,
    Path(entrypoint): Path<String>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    req: Request<Body>,
) -> Response {
    match receive_inner(&state, &entrypoint, peer, req).await {
        Ok(resp) => resp,
        Err(e) => e.into_response(),
    }
}

async fn receive_inner(
    state: &AppState,
    entrypoint: &str,
    peer: SocketAddr,
    req: Request<Body>,
) -> Result<Response, ApiError> {
    if !matches!(*req.method(), Method::POST | Method::PUT | Method::PATCH) {
        let mut resp =
            ApiError::new(StatusCode::METHOD_NOT_ALLOWED, "use POST, PUT or PATCH").into_response();
        resp.headers_mut()
            .insert(header::ALLOW, HeaderValue::from_static("POST, PUT, PATCH"));
        return Ok(resp);
    }
    let ingestor = &state.ingestor;
    let entrypoint = ingestor.entrypoint(entrypoint)?;
    let limit = ingestor.max_body_bytes();
    let declared = req
        .headers()
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if declared.is_some_and(|n| n > limit as u64) {
        return Err(IngestError::BodyTooLarge { limit }.into());
    }
    // Hold room for the body in the ingest memory budget until we have answered.
    let _reservation = ingestor
        .reserve_body(declared.map_or(limit, |n| n as usize))
        .await?;
    let (parts, body) = req.into_parts();
    let body = axum::body::to_bytes(body, limit).await.map_err(|e| {
        let too_large = std::error::Error::source(&e)
            .is_some_and(|s| s.is::<http_body_util::LengthLimitError>());
        if too_large {
            IngestError::BodyTooLarge { limit }
        } else {
            IngestError::BodyUnreadable
        }
    })?;
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
        remote_addr: client_ip(&parts.headers, peer, state.web.trust_proxy).to_string(),
        body,
    };
    let event_id = ingestor.accept(&entrypoint, incoming).await?;
    Ok(Json(Accepted {
        status: "ok",
        event_id,
    })
    .into_response())
}

/// The answer to an accepted webhook: `{"status":"ok","event_id":"…"}`. A struct rather than
/// `json!`: this is the hottest response, and it needs no map.
#[derive(Serialize)]
struct Accepted {
    status: &'static str,
    event_id: Uuid,
}
