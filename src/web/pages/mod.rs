//! HTML pages (BRIEF R10): askama templates rendered from service data.

use axum::Router;
use axum::http::StatusCode;
use axum::response::{Html, IntoResponse, Redirect, Response};
use axum::routing::get;

use super::AppState;

/// The page routes.
pub fn router() -> Router<AppState> {
    Router::new().route("/", get(|| async { Redirect::to("/webhooks") }))
}

/// A rendered error page.
pub fn error_page(status: StatusCode, message: &str) -> Response {
    let body = format!(
        "<!doctype html><title>{}</title><p>{}</p>",
        status,
        askama::filters::escape(message, askama::filters::Html)
            .map(|s| s.to_string())
            .unwrap_or_default()
    );
    (status, Html(body)).into_response()
}
