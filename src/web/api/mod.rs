//! JSON API under `/api/v1`. Authenticated by bearer API key or HTTP Basic;
//! no cookies, but a browser may hold Basic credentials, so nothing another site can make
//! it send is accepted ([`json_only`]). Wire structs live in `dto.rs`, never the storage
//! types.

mod dto;
mod events;
mod webhooks;

pub(crate) use dto::{EventFilterIn, rfc3339};

use axum::Router;
use axum::body::HttpBody as _;
use axum::extract::{FromRequest, FromRequestParts, Request};
use axum::http::{HeaderValue, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
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
/// rejection, such as the 413 of a body over the limit. [`json_only`] has made sure it is
/// empty or declared as JSON.
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
            StatusCode::UNPROCESSABLE_ENTITY
        } else {
            StatusCode::BAD_REQUEST
        };
        ApiError::new(status, format!("invalid JSON: {e}"))
    })
}

/// Refuses (415) every request with a Content-Type other than JSON, or with a body but no
/// Content-Type: that is what a page on another site can make a browser send without a
/// CORS preflight (a form post, even an empty one, or a `no-cors` fetch), and the browser
/// adds any Basic credentials it holds for us, which our 401 challenge invites it to keep.
/// A JSON request needs a preflight, which the API never grants; an empty body without a
/// Content-Type is what `curl -X POST` sends.
async fn json_only(req: Request, next: Next) -> Response {
    let allowed = match req.headers().get(header::CONTENT_TYPE) {
        Some(content_type) => is_json(content_type),
        None => req.body().size_hint().exact() == Some(0),
    };
    if !allowed {
        return ApiError::new(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "request bodies must be JSON, sent with Content-Type: application/json",
        )
        .into_response();
    }
    next.run(req).await
}

/// `application/json` or `application/*+json`, as axum's `Json` accepts.
fn is_json(content_type: &HeaderValue) -> bool {
    let Ok(value) = content_type.to_str() else {
        return false;
    };
    let essence = value
        .split_once(';')
        .map_or(value, |(essence, _)| essence)
        .trim()
        .to_ascii_lowercase();
    essence == "application/json"
        || essence
            .strip_prefix("application/")
            .is_some_and(|subtype| subtype.ends_with("+json"))
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
        .route(
            "/webhooks/{id}/targets/{tid}/rotate-secret",
            post(webhooks::rotate_secret),
        )
        .route("/webhooks/{id}/events", get(events::list))
        .route("/webhooks/{id}/redeliver", post(events::redeliver_matching))
        .route("/webhooks/{id}/events/stream", get(events::stream))
        .route("/webhooks/{id}/test-event", post(events::test_event))
        .route("/webhooks/{id}/export", get(events::export))
        .route("/webhooks/{id}/events/{event_id}", get(events::read))
        .route(
            "/webhooks/{id}/events/{event_id}/redeliver",
            post(events::redeliver),
        )
        .route("/keys", get(webhooks::list_keys).post(webhooks::create_key))
        .route("/keys/{kid}", axum::routing::delete(webhooks::revoke_key))
        .fallback(|| async { ApiError::new(StatusCode::NOT_FOUND, "no such route") })
        // Around every route and the fallback: no handler or extractor, authentication
        // included, sees such a request.
        .layer(axum::middleware::from_fn(json_only))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_json_media_types_are_json() {
        for json in [
            "application/json",
            "application/json; charset=utf-8",
            "Application/JSON",
            "application/problem+json",
        ] {
            assert!(is_json(&HeaderValue::from_static(json)), "{json}");
        }
        for other in [
            "application/x-www-form-urlencoded",
            "multipart/form-data; boundary=x",
            "text/plain",
            "text/plain; x=application/json",
            "application/jsonp",
            "text/json",
            "",
        ] {
            assert!(!is_json(&HeaderValue::from_static(other)), "{other}");
        }
    }
}
