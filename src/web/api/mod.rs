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
use utoipa::OpenApi;
use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

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

/// The OpenAPI description's fixed parts; the paths and schemas come from the handlers'
/// `#[utoipa::path]` attributes and the DTOs' `ToSchema` derives, through [`routes`].
#[derive(OpenApi)]
#[openapi(
    info(title = "webhooker API", description = "Webhooks, entrypoints, targets, events and API keys."),
    servers((url = "/api/v1")),
    modifiers(&Security),
    tags(
        (name = "webhooks", description = "webhooks with their entrypoints and targets"),
        (name = "events", description = "stored events, their deliveries and attempts"),
        (name = "keys", description = "API keys"),
    )
)]
struct ApiDoc;

/// HTTP Basic (a user's credentials) and bearer API keys.
struct Security;

impl utoipa::Modify for Security {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "basic",
            SecurityScheme::Http(HttpBuilder::new().scheme(HttpAuthScheme::Basic).build()),
        );
        components.add_security_scheme(
            "bearer",
            SecurityScheme::Http(HttpBuilder::new().scheme(HttpAuthScheme::Bearer).build()),
        );
    }
}

/// Every `/api/v1` route, in ONE list: each `routes!` entry both routes a handler and puts
/// its `#[utoipa::path]` into the description, so the two cannot drift apart. Add routes
/// here only this way (a plain `.route` would be missing from the description; a test
/// refuses one).
fn routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::with_openapi(ApiDoc::openapi())
        .routes(routes!(webhooks::list, webhooks::create))
        .routes(routes!(webhooks::read, webhooks::update, webhooks::delete))
        .routes(routes!(webhooks::add_entrypoint))
        .routes(routes!(
            webhooks::update_entrypoint,
            webhooks::delete_entrypoint
        ))
        .routes(routes!(webhooks::add_target))
        .routes(routes!(webhooks::update_target, webhooks::delete_target))
        .routes(routes!(webhooks::rotate_secret))
        .routes(routes!(events::list))
        .routes(routes!(events::redeliver_matching))
        .routes(routes!(events::stream))
        .routes(routes!(events::test_event))
        .routes(routes!(events::export))
        .routes(routes!(events::read))
        .routes(routes!(events::redeliver))
        .routes(routes!(webhooks::list_keys, webhooks::create_key))
        .routes(routes!(webhooks::revoke_key))
        .routes(routes!(openapi_json))
}

/// The API's OpenAPI 3.1 description.
pub fn openapi() -> utoipa::openapi::OpenApi {
    routes().split_for_parts().1
}

/// The description as JSON, generated from the handlers' types, for generating clients.
#[utoipa::path(get, path = "/openapi.json", tag = "meta", responses((status = 200, description = "this description (OpenAPI 3.1)", content_type = "application/json")))]
async fn openapi_json() -> axum::response::Response {
    match openapi().to_json() {
        Ok(json) => ([(header::CONTENT_TYPE, "application/json")], json).into_response(),
        Err(e) => ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()).into_response(),
    }
}

/// The `/api/v1` routes.
pub fn router() -> Router<AppState> {
    let (router, _) = routes().split_for_parts();
    router
        .fallback(|| async { ApiError::new(StatusCode::NOT_FOUND, "no such route") })
        // Around every route and the fallback: no handler or extractor, authentication
        // included, sees such a request.
        .layer(axum::middleware::from_fn(json_only))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The description and the router come from the same list only if every route is
    /// added with `routes!` in [`routes`]: a plain `.route(…)`, `.nest(…)` or
    /// `.merge(…)` in this file would serve a route the description lacks.
    #[test]
    fn every_api_route_is_added_with_its_description() {
        let source = include_str!("mod.rs");
        let code = &source[..source.find("#[cfg(test)]").unwrap_or(source.len())];
        for call in [
            ".route(",
            ".route_service(",
            ".nest(",
            ".nest_service(",
            ".merge(",
        ] {
            assert!(
                !code.contains(call),
                "web/api/mod.rs calls {call}: add API routes with `routes!` in `routes()`"
            );
        }
        // And every handler module's route attributes are in the list: each
        // `#[utoipa::path` in a handler file is one operation of the description.
        let attributes = [include_str!("webhooks.rs"), include_str!("events.rs"), code]
            .iter()
            .map(|s| s.matches("#[utoipa::path(").count())
            .sum::<usize>();
        let described: usize = openapi()
            .paths
            .paths
            .values()
            .map(|item| {
                [
                    &item.get,
                    &item.put,
                    &item.post,
                    &item.delete,
                    &item.options,
                    &item.head,
                    &item.patch,
                    &item.trace,
                ]
                .iter()
                .filter(|op| op.is_some())
                .count()
            })
            .sum();
        assert_eq!(
            attributes, described,
            "a handler with #[utoipa::path] is not in routes()"
        );
    }

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
