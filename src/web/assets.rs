//! Static assets embedded in the binary (works offline, no CDN), served under `/s/` with
//! long-lived cache headers; pages add `?v={version}` to bust caches on upgrade.

use axum::extract::Path;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};

/// (path under /s/, content type, bytes)
const ASSETS: &[(&str, &str, &[u8])] = &[
    (
        "css/app.css",
        "text/css; charset=utf-8",
        include_bytes!("../../static/css/app.css"),
    ),
    (
        "js/app.js",
        "text/javascript; charset=utf-8",
        include_bytes!("../../static/js/app.js"),
    ),
    (
        "js/alpine-csp.min.js",
        "text/javascript; charset=utf-8",
        include_bytes!("../../static/js/alpine-csp.min.js"),
    ),
    (
        "img/favicon.svg",
        "image/svg+xml",
        include_bytes!("../../static/img/favicon.svg"),
    ),
];

pub(super) async fn serve(Path(path): Path<String>) -> Response {
    match ASSETS.iter().find(|(p, _, _)| *p == path) {
        Some((_, content_type, bytes)) => (
            [
                (header::CONTENT_TYPE, *content_type),
                (header::CACHE_CONTROL, "public, max-age=31536000, immutable"),
            ],
            *bytes,
        )
            .into_response(),
        None => (StatusCode::NOT_FOUND, "not found").into_response(),
    }
}
