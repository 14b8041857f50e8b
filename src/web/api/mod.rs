//! JSON API under `/api/v1` (BRIEF R12). Authenticated by bearer API key or HTTP Basic;
//! no cookies, so no CSRF. Wire structs live in `dto.rs`, never the storage types.

mod dto;
mod events;
mod webhooks;

pub(crate) use dto::rfc3339;

use axum::Router;
use axum::extract::{FromRequest, FromRequestParts};
use axum::routing::{get, patch, post};

use super::AppState;
use super::error::ApiError;

/// JSON body with our error format on rejection.
#[derive(FromRequest)]
#[from_request(via(axum::Json), rejection(ApiError))]
pub struct ApiJson<T>(pub T);

/// Path parameters; a malformed id is a 404 like an unknown one.
#[derive(FromRequestParts)]
#[from_request(via(axum::extract::Path), rejection(ApiError))]
pub struct ApiPath<T>(pub T);

/// A raw body (for routes whose JSON body is optional) with our error format on
/// rejection, such as the 413 of a body over the limit.
pub struct ApiBody(pub axum::body::Bytes);

impl<S: Send + Sync> axum::extract::FromRequest<S> for ApiBody {
    type Rejection = ApiError;

    async fn from_request(req: axum::extract::Request, state: &S) -> Result<Self, ApiError> {
        let body = axum::body::Bytes::from_request(req, state).await?;
        Ok(ApiBody(body))
    }
}

/// Query string with our error format on rejection.
#[derive(FromRequestParts)]
#[from_request(via(axum::extract::Query), rejection(ApiError))]
pub struct ApiQuery<T>(pub T);

/// A JSON body that may be absent: no body (or only whitespace) means `T::default()`.
pub(crate) fn optional_json<T: serde::de::DeserializeOwned + Default>(
    body: &[u8],
) -> Result<T, ApiError> {
    if body.iter().all(u8::is_ascii_whitespace) {
        return Ok(T::default());
    }
    serde_json::from_slice(body).map_err(|e| {
        let status = if e.is_data() {
            axum::http::StatusCode::UNPROCESSABLE_ENTITY
        } else {
            axum::http::StatusCode::BAD_REQUEST
        };
        ApiError::new(status, format!("invalid JSON: {e}"))
    })
}

/// The `/api/v1` routes.
pub fn router() -> Router<AppState> {
    Router::new()
        .route("/webhooks", get(webhooks::list).post(webhooks::create))
        .route(
            "/webhooks/{id}",
            get(webhooks::read)
                .patch(webhooks::update)
                .delete(webhooks::delete),
        )
        .route("/webhooks/{id}/entrypoints", post(webhooks::add_entrypoint))
        .route(
            "/webhooks/{id}/entrypoints/{eid}",
            patch(webhooks::update_entrypoint).delete(webhooks::delete_entrypoint),
        )
        .route("/webhooks/{id}/targets", post(webhooks::add_target))
        .route(
            "/webhooks/{id}/targets/{tid}",
            patch(webhooks::update_target).delete(webhooks::delete_target),
        )
        .route("/webhooks/{id}/events", get(events::list))
        .route("/webhooks/{id}/events/{event_id}", get(events::read))
        .route(
            "/webhooks/{id}/events/{event_id}/redeliver",
            post(events::redeliver),
        )
        .route("/keys", get(webhooks::list_keys).post(webhooks::create_key))
        .route("/keys/{kid}", axum::routing::delete(webhooks::revoke_key))
        .fallback(|| async { ApiError::new(axum::http::StatusCode::NOT_FOUND, "no such route") })
}
