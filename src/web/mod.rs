//! Everything HTTP: the router, layers, extractors, API handlers and HTML pages.
//!
//! Architecture Invariant: `web` never opens a redb table and never builds a delivery
//! task; handlers extract, make one `Service`/`Ingestor` call, and render JSON or HTML.
//! Errors become responses only in `error.rs`.

pub mod api;
mod assets;
pub mod auth;
pub mod error;
mod health;
mod ingest;
mod live;
pub mod pages;
pub mod server;

use std::net::{IpAddr, Ipv6Addr, SocketAddr};
use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::Router;
use axum::extract::{ConnectInfo, DefaultBodyLimit, FromRef};
use axum::http::{HeaderMap, HeaderValue, Request, StatusCode, Version, header};
use axum::response::Response;
use axum::routing::get;
use hyper::body::Incoming;
use metrics_exporter_prometheus::PrometheusHandle;
use tower::ServiceExt;
use tower_http::catch_panic::CatchPanicLayer;
use tower_http::classify::SharedClassifier;
use tower_http::compression::CompressionLayer;
use tower_http::compression::Predicate as _;
use tower_http::compression::predicate::DefaultPredicate;
use tower_http::trace::TraceLayer;

use crate::config::HttpConfig;
use crate::delivery::Engine;
use crate::ingest::Ingestor;
use crate::service::Service;
use auth::LoginLimiter;

/// Version shown in the footer, the health check and asset URLs.
pub const VERSION: &str = env!("CARGO_PKG_VERSION");
/// Largest form or JSON body accepted by the UI and API.
const MAX_FORM_BYTES: usize = 64 * 1024;

/// Settings the web layer needs.
#[derive(Debug, Clone)]
pub struct WebConfig {
    /// Public base URL for entrypoint URLs; from the Host header when unset.
    pub base_url: Option<String>,
    /// Mark cookies Secure (prod).
    pub secure_cookies: bool,
    /// Take the client IP (and scheme) from forwarded headers.
    pub trust_proxy: bool,
    /// `/metrics` basic-auth credentials; the route exists only when set.
    pub metrics_credentials: Option<(String, String)>,
    /// Connection, header and ingest-body limits.
    pub http: HttpConfig,
}

/// What every handler can reach; shared behind one `Arc` in [`AppState`].
pub struct AppParts {
    /// The service layer.
    pub service: Service,
    /// Ingest.
    pub ingestor: Ingestor,
    /// The delivery engine (health and stats only).
    pub engine: Engine,
    /// Web settings.
    pub web: WebConfig,
    /// Prometheus handle when metrics are enabled.
    pub metrics: Option<PrometheusHandle>,
    /// Login rate limiter.
    pub limiter: LoginLimiter,
    /// Secrets waiting for the page after the POST that made them.
    pub once: pages::OneTimeSecrets,
    /// Process start, for uptime.
    pub started: Instant,
}

/// Shared state of every handler. axum clones the state for every request, so it is one
/// `Arc` (one reference count) rather than a struct of a dozen handles.
#[derive(Clone)]
pub struct AppState(Arc<AppParts>);

impl AppState {
    /// Wraps the parts.
    pub fn new(parts: AppParts) -> AppState {
        AppState(Arc::new(parts))
    }
}

impl std::ops::Deref for AppState {
    type Target = AppParts;

    fn deref(&self) -> &AppParts {
        &self.0
    }
}

impl FromRef<AppState> for Service {
    fn from_ref(state: &AppState) -> Service {
        state.service.clone()
    }
}

/// The HTTP application as the server calls it: requests to an entrypoint URL go straight
/// to the ingest handler, everything else through the axum [`Router`].
///
/// Why ingest skips the router: with storage switched off (an experiment, `wrk -c64`, 1 KiB
/// bodies), axum's routing — the request extensions, path extraction, boxed body and the
/// clone of every layer's service per request — took ingest from ~100k to ~65k req/s on
/// the 2-core box, and a webhook needs none of it.
#[derive(Clone)]
pub struct HttpApp {
    state: AppState,
    router: Router,
}

impl HttpApp {
    /// The application over `state`.
    pub fn new(state: AppState) -> HttpApp {
        HttpApp {
            router: router(state.clone()),
            state,
        }
    }

    /// Answers one request that came from `peer`.
    pub async fn handle(&self, mut req: Request<Incoming>, peer: SocketAddr) -> Response {
        if ingest::is_ingest_path(req.uri().path()) {
            let mut resp = ingest::receive(&self.state, peer, req).await;
            security_headers(resp.headers_mut());
            return resp;
        }
        req.extensions_mut().insert(ConnectInfo(peer));
        match self.router.clone().oneshot(req).await {
            Ok(resp) => resp,
            Err(never) => match never {},
        }
    }
}

/// The router with every route but ingest (see [`HttpApp`]) and its layers.
fn router(state: AppState) -> Router {
    let mut app = Router::new()
        .route("/s/{*path}", get(assets::serve).layer(compression()))
        .nest(
            "/api/v1",
            api::router()
                .layer(DefaultBodyLimit::max(MAX_FORM_BYTES))
                .layer(request_timeout())
                .layer(axum::middleware::map_response(error::api_error_bodies)),
        )
        .merge(
            pages::router(state.clone())
                .layer(DefaultBodyLimit::max(MAX_FORM_BYTES))
                .layer(request_timeout())
                .layer(compression()),
        );
    if state.web.metrics_credentials.is_some() {
        app = app.route("/metrics", get(health::metrics));
    }
    app.layer(axum::middleware::map_response(with_security_headers))
        .layer(TraceLayer::new(SharedClassifier::new(
            error::ServerErrorsButKnownFailures,
        )))
        // Outside the trace layer: a degraded answer (503) to each poll of a container
        // health check would otherwise log an ERROR; the failure itself is logged once.
        .route(
            "/.well-known/healthcheck",
            get(health::healthcheck).layer(axum::middleware::map_response(with_security_headers)),
        )
        .layer(CatchPanicLayer::new())
        .with_state(state)
}

async fn with_security_headers(mut resp: Response) -> Response {
    security_headers(resp.headers_mut());
    resp
}

/// The headers every response carries: a strict Content-Security-Policy (unless the
/// handler set its own), no framing, no MIME sniffing, no cross-site referrers.
fn security_headers(headers: &mut HeaderMap) {
    headers
        .entry(header::CONTENT_SECURITY_POLICY)
        .or_insert(HeaderValue::from_static(
            "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; \
             connect-src 'self'; object-src 'none'; frame-ancestors 'none'; base-uri 'self'; \
             form-action 'self'",
        ));
    headers.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    headers.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    headers.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("same-origin"),
    );
}

/// Marks a response that must not be compressed: a page that shows a secret beside text
/// a sender or another site controls (event paths, names), whose compressed size would
/// leak the secret a character at a time (BREACH).
#[derive(Debug, Clone, Copy)]
pub struct Uncompressed;

/// gzip or brotli for pages and assets, when the client accepts them. Not for ingest
/// (never routed here, see `HttpApp`) nor the API (JSON with secrets that a cross-site GET
/// with remembered Basic credentials could make the browser fetch), nor a live stream
/// (`text/event-stream` must not wait in a compressor's buffer; the default predicate
/// skips it, images and tiny bodies), nor a page marked [`Uncompressed`].
fn compression() -> CompressionLayer<impl tower_http::compression::Predicate> {
    CompressionLayer::new().compress_when(DefaultPredicate::new().and(
        |_: StatusCode, _: Version, _: &HeaderMap, extensions: &axum::http::Extensions| {
            extensions.get::<Uncompressed>().is_none()
        },
    ))
}

/// A time limit for UI and API requests. Ingest has none: a request waiting for its commit
/// must not be answered "timed out" and then be stored anyway (the sender would resend).
fn request_timeout() -> tower_http::timeout::TimeoutLayer {
    tower_http::timeout::TimeoutLayer::with_status_code(
        axum::http::StatusCode::REQUEST_TIMEOUT,
        Duration::from_secs(60),
    )
}

/// The client's IP: the peer address, or the right-most `X-Forwarded-For` entry (the one
/// our proxy appended) when TRUST_PROXY is set (a direct client could otherwise forge it).
pub fn client_ip(headers: &HeaderMap, peer: SocketAddr, trust_proxy: bool) -> IpAddr {
    if trust_proxy {
        // In X-Forwarded-For the client may have written anything on the left; the
        // right-most entry is the one our proxy appended. (X-Real-IP is not used: many
        // proxies pass a client's own X-Real-IP through untouched.)
        let forwarded = headers
            .get_all("x-forwarded-for")
            .iter()
            .next_back()
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.rsplit(',').next())
            .and_then(|v| v.trim().parse::<IpAddr>().ok());
        if let Some(ip) = forwarded {
            return ip.to_canonical();
        }
    }
    peer.ip().to_canonical()
}

/// `bytes` as UTF-8 text, forgiving a character cut off at the end (bodies are shown and
/// listed as prefixes); `None` for anything else.
pub fn utf8_prefix(bytes: &[u8]) -> Option<&str> {
    match std::str::from_utf8(bytes) {
        Ok(s) => Some(s),
        Err(e) if e.error_len().is_none() && e.valid_up_to() > 0 => {
            std::str::from_utf8(&bytes[..e.valid_up_to()]).ok()
        }
        Err(_) => None,
    }
}

/// What one client is counted under (login attempts, open connections, ingest body memory):
/// its IPv4 address (also when written as IPv4-mapped IPv6), or its IPv6 /64. Like the hosts behind one IPv4
/// NAT, the hosts of one /64 (the block one subscriber usually gets) share a budget, so
/// rotating through one's own addresses does not multiply it.
pub fn client_key(ip: IpAddr) -> IpAddr {
    match ip.to_canonical() {
        IpAddr::V6(v6) => IpAddr::V6(Ipv6Addr::from_bits(v6.to_bits() & (u128::MAX << 64))),
        v4 => v4,
    }
}

/// The public base URL: `BASE_URL`, else scheme and Host of the request.
pub fn public_base(web: &WebConfig, headers: &HeaderMap) -> String {
    if let Some(base) = &web.base_url {
        return base.clone();
    }
    let host = headers
        .get(header::HOST)
        .and_then(|v| v.to_str().ok())
        .filter(|h| {
            !h.is_empty()
                && h.chars()
                    .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | ':' | '[' | ']'))
        })
        .unwrap_or("localhost");
    let scheme = if web.trust_proxy {
        match headers
            .get("x-forwarded-proto")
            .and_then(|v| v.to_str().ok())
        {
            Some("https") => "https",
            _ => "http",
        }
    } else {
        "http"
    };
    format!("{scheme}://{host}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn client_ip_trusts_forwarded_headers_only_when_told() {
        let peer: SocketAddr = "10.0.0.1:5000".parse().unwrap();
        let mut h = HeaderMap::new();
        h.insert(
            "x-forwarded-for",
            HeaderValue::from_static("6.6.6.6, 203.0.113.7"),
        );
        assert_eq!(client_ip(&h, peer, false), peer.ip());
        // The right-most entry is the one the trusted proxy appended.
        assert_eq!(
            client_ip(&h, peer, true),
            "203.0.113.7".parse::<IpAddr>().unwrap()
        );
        // X-Real-IP is ignored: many proxies pass a client's own value through.
        h.insert("x-real-ip", HeaderValue::from_static("198.51.100.2"));
        assert_eq!(
            client_ip(&h, peer, true),
            "203.0.113.7".parse::<IpAddr>().unwrap()
        );
        let mut junk = HeaderMap::new();
        junk.insert("x-forwarded-for", HeaderValue::from_static("not an ip"));
        assert_eq!(client_ip(&junk, peer, true), peer.ip());
    }
}
