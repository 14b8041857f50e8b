//! The ONLY place where errors become HTTP responses. Matches are exhaustive on purpose:
//! a new error variant must decide its status code here.

use axum::Json;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Redirect, Response};
use serde_json::json;
use tower_http::classify::{
    ClassifiedResponse, ClassifyResponse, NeverClassifyEos, ServerErrorsAsFailures,
    ServerErrorsFailureClass,
};

use crate::ingest::IngestError;
use crate::live::LiveError;
use crate::service::ServiceError;
use crate::store::StoreError;

/// Marks a response that answers a storage failure episode (an event file that cannot be
/// opened or written now): the store logged the episode once when it began and the
/// healthcheck reports it, so the request itself is logged at DEBUG, not at ERROR.
#[derive(Debug, Clone, Copy)]
pub(crate) struct KnownFailure;

/// The trace layer's view of responses: a 5xx is a failure, logged at ERROR, as with
/// `ServerErrorsAsFailures`, except one marked [`KnownFailure`], whose episode the store
/// has logged once (the trace layer logs it at DEBUG, as any other response).
#[derive(Debug, Clone, Copy)]
pub(crate) struct ServerErrorsButKnownFailures;

impl ClassifyResponse for ServerErrorsButKnownFailures {
    type FailureClass = ServerErrorsFailureClass;
    type ClassifyEos = NeverClassifyEos<ServerErrorsFailureClass>;

    fn classify_response<B>(
        self,
        res: &axum::http::Response<B>,
    ) -> ClassifiedResponse<Self::FailureClass, Self::ClassifyEos> {
        if res.extensions().get::<KnownFailure>().is_some() {
            return ClassifiedResponse::Ready(Ok(()));
        }
        ServerErrorsAsFailures::new().classify_response(res)
    }

    fn classify_error<E>(self, error: &E) -> Self::FailureClass
    where
        E: std::fmt::Display + 'static,
    {
        ServerErrorsAsFailures::new().classify_error(error)
    }
}

/// Whether `e` is part of a storage failure episode that the store has logged once.
fn is_known_failure(e: &StoreError) -> bool {
    matches!(e, StoreError::Unavailable | StoreError::CannotOpen(_))
}

/// An error answered as JSON `{"error": "…"}` (API and ingest).
#[derive(Debug)]
pub struct ApiError {
    status: StatusCode,
    message: String,
    /// It answers a storage failure episode ([`KnownFailure`]).
    known_failure: bool,
}

impl ApiError {
    /// An error with an explicit status.
    pub fn new(status: StatusCode, message: impl Into<String>) -> ApiError {
        ApiError {
            status,
            message: message.into(),
            known_failure: false,
        }
    }

    /// Whether it answers a storage failure episode that the store has logged once (so
    /// the request need not be logged at ERROR).
    pub(crate) fn is_known_failure(&self) -> bool {
        self.known_failure
    }

    /// 401 with a `WWW-Authenticate` challenge.
    pub fn unauthorized() -> ApiError {
        ApiError::new(StatusCode::UNAUTHORIZED, "authentication required")
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let mut resp = (self.status, Json(json!({ "error": self.message }))).into_response();
        if self.known_failure {
            resp.extensions_mut().insert(KnownFailure);
        }
        if self.status == StatusCode::UNAUTHORIZED {
            resp.headers_mut().insert(
                header::WWW_AUTHENTICATE,
                header::HeaderValue::from_static("Basic realm=\"webhooker\", charset=\"UTF-8\""),
            );
        }
        resp
    }
}

/// API errors that axum or a layer answered with an empty body (405 with its `Allow`, the
/// 408 of the request timeout, …) get the same `{"error": …}` body as every other API
/// error, keeping their headers. (Extractor rejections are mapped by the `Api*` extractors.)
pub(crate) async fn api_error_bodies(resp: Response) -> Response {
    use axum::body::HttpBody as _;
    let status = resp.status();
    let is_error = status.is_client_error() || status.is_server_error();
    if !is_error || resp.body().size_hint().exact() != Some(0) {
        return resp;
    }
    let reason = status
        .canonical_reason()
        .unwrap_or("error")
        .to_ascii_lowercase();
    // Keep the original head (status, every header value, extensions); take the body and
    // its content type from the standard JSON error.
    let (mut parts, _) = resp.into_parts();
    let (json_parts, body) = ApiError::new(status, reason).into_response().into_parts();
    parts.headers.remove(header::CONTENT_LENGTH);
    if let Some(content_type) = json_parts.headers.get(header::CONTENT_TYPE) {
        parts
            .headers
            .insert(header::CONTENT_TYPE, content_type.clone());
    }
    Response::from_parts(parts, body)
}

/// Status and public message for a service error; 5xx causes are logged once here.
pub(crate) fn service_status(e: &ServiceError) -> (StatusCode, String) {
    match e {
        ServiceError::NotFound(_) => (StatusCode::NOT_FOUND, e.to_string()),
        ServiceError::Invalid { .. } => (StatusCode::UNPROCESSABLE_ENTITY, e.to_string()),
        ServiceError::Unauthorized => (StatusCode::UNAUTHORIZED, e.to_string()),
        ServiceError::TooManyAttempts => (StatusCode::TOO_MANY_REQUESTS, e.to_string()),
        ServiceError::Forbidden(_) => (StatusCode::FORBIDDEN, e.to_string()),
        ServiceError::Conflict(_) => (StatusCode::CONFLICT, e.to_string()),
        ServiceError::TargetRefused(_) => (StatusCode::UNPROCESSABLE_ENTITY, e.to_string()),
        ServiceError::Store(s) => store_status(s),
        ServiceError::Internal(_) => {
            tracing::error!(error = %e, "internal error");
            (StatusCode::INTERNAL_SERVER_ERROR, "internal error".into())
        }
    }
}

fn store_status(e: &StoreError) -> (StatusCode, String) {
    match e {
        StoreError::Busy => (
            StatusCode::SERVICE_UNAVAILABLE,
            "storage is saturated; retry shortly".into(),
        ),
        StoreError::Closed => (
            StatusCode::SERVICE_UNAVAILABLE,
            "shutting down; retry shortly".into(),
        ),
        // Not logged per request: the store logs each failure episode once, when it
        // begins, and the healthcheck reports it while it lasts.
        StoreError::Unavailable => (
            StatusCode::SERVICE_UNAVAILABLE,
            "storage is unavailable; retry shortly".into(),
        ),
        StoreError::CannotOpen(cause) if cause.is_transient() => (
            StatusCode::SERVICE_UNAVAILABLE,
            "storage is unavailable; retry shortly".into(),
        ),
        StoreError::CannotOpen(_) => (StatusCode::INTERNAL_SERVER_ERROR, "storage error".into()),
        StoreError::UnknownWebhook | StoreError::UnknownEvent => {
            (StatusCode::NOT_FOUND, e.to_string())
        }
        // Ingest answers a duplicate itself (200 with the first event's id).
        StoreError::Duplicate(_) => (StatusCode::CONFLICT, e.to_string()),
        StoreError::Redb(_)
        | StoreError::Codec(_)
        | StoreError::FormatVersion { .. }
        | StoreError::InUse(_)
        | StoreError::Io(_) => {
            tracing::error!(error = %e, "storage error");
            (StatusCode::INTERNAL_SERVER_ERROR, "storage error".into())
        }
    }
}

/// Whether a service error answers a storage failure episode ([`KnownFailure`]).
fn service_known_failure(e: &ServiceError) -> bool {
    matches!(e, ServiceError::Store(s) if is_known_failure(s))
}

impl From<ServiceError> for ApiError {
    fn from(e: ServiceError) -> ApiError {
        let (status, message) = service_status(&e);
        ApiError {
            status,
            message,
            known_failure: service_known_failure(&e),
        }
    }
}

impl From<IngestError> for ApiError {
    fn from(e: IngestError) -> ApiError {
        let status = match &e {
            IngestError::UnknownEntrypoint => StatusCode::NOT_FOUND,
            IngestError::InactiveEntrypoint => StatusCode::GONE,
            IngestError::BodyTooLarge { .. } => StatusCode::PAYLOAD_TOO_LARGE,
            IngestError::BodyUnreadable => StatusCode::BAD_REQUEST,
            IngestError::BodyTimeout => StatusCode::REQUEST_TIMEOUT,
            IngestError::BodyTooSlow => StatusCode::REQUEST_TIMEOUT,
            IngestError::BodyFragmented => StatusCode::BAD_REQUEST,
            IngestError::Overloaded => StatusCode::SERVICE_UNAVAILABLE,
            IngestError::Unverified(_) => StatusCode::UNAUTHORIZED,
            IngestError::NoActiveEntrypoint => StatusCode::CONFLICT,
            IngestError::LoopDetected { .. } => StatusCode::LOOP_DETECTED,
            IngestError::Store(s) => {
                let (status, message) = store_status(s);
                return ApiError {
                    status,
                    message,
                    known_failure: is_known_failure(s),
                };
            }
        };
        ApiError::new(status, e.to_string())
    }
}

/// Live streams refused: too many viewers, or shutting down.
fn live_status(e: LiveError) -> StatusCode {
    match e {
        LiveError::Full | LiveError::Closed => StatusCode::SERVICE_UNAVAILABLE,
    }
}

impl From<LiveError> for ApiError {
    fn from(e: LiveError) -> ApiError {
        ApiError::new(live_status(e), e.to_string())
    }
}

impl From<LiveError> for PageError {
    fn from(e: LiveError) -> PageError {
        PageError::Status(live_status(e), e.to_string())
    }
}

impl From<IngestError> for PageError {
    fn from(e: IngestError) -> PageError {
        let ApiError {
            status,
            message,
            known_failure,
        } = e.into();
        if known_failure {
            PageError::KnownFailure(status, message)
        } else {
            PageError::Status(status, message)
        }
    }
}

impl From<axum::extract::rejection::JsonRejection> for ApiError {
    fn from(r: axum::extract::rejection::JsonRejection) -> ApiError {
        use axum::extract::rejection::JsonRejection as J;
        let status = match &r {
            J::JsonDataError(_) => StatusCode::UNPROCESSABLE_ENTITY,
            J::JsonSyntaxError(_) => StatusCode::BAD_REQUEST,
            J::MissingJsonContentType(_) => StatusCode::UNSUPPORTED_MEDIA_TYPE,
            J::BytesRejection(_) => StatusCode::PAYLOAD_TOO_LARGE,
            _ => StatusCode::BAD_REQUEST,
        };
        ApiError::new(status, r.body_text())
    }
}

impl From<axum::extract::rejection::BytesRejection> for ApiError {
    fn from(r: axum::extract::rejection::BytesRejection) -> ApiError {
        ApiError::new(r.status(), r.body_text())
    }
}

impl From<axum::extract::rejection::QueryRejection> for ApiError {
    fn from(r: axum::extract::rejection::QueryRejection) -> ApiError {
        ApiError::new(StatusCode::BAD_REQUEST, r.body_text())
    }
}

impl From<axum::extract::rejection::PathRejection> for ApiError {
    fn from(_: axum::extract::rejection::PathRejection) -> ApiError {
        ApiError::new(StatusCode::NOT_FOUND, "not found")
    }
}

/// An error on an HTML page: a redirect to the login page, or a rendered error page.
#[derive(Debug)]
pub enum PageError {
    /// Not logged in: go to the login page, then back to `next`.
    Login {
        /// Local path to return to.
        next: String,
    },
    /// The CSRF token was missing or wrong.
    Csrf,
    /// Anything else, with its status.
    Status(StatusCode, String),
    /// A storage failure episode that the store has logged once ([`KnownFailure`]), with
    /// its status.
    KnownFailure(StatusCode, String),
}

impl From<ServiceError> for PageError {
    fn from(e: ServiceError) -> PageError {
        let (status, message) = service_status(&e);
        if service_known_failure(&e) {
            PageError::KnownFailure(status, message)
        } else {
            PageError::Status(status, message)
        }
    }
}

impl From<axum::extract::rejection::QueryRejection> for PageError {
    fn from(r: axum::extract::rejection::QueryRejection) -> PageError {
        PageError::Status(StatusCode::BAD_REQUEST, r.body_text())
    }
}

impl From<axum::extract::rejection::BytesRejection> for PageError {
    fn from(r: axum::extract::rejection::BytesRejection) -> PageError {
        let message = if r.status() == StatusCode::PAYLOAD_TOO_LARGE {
            "The form is too large.".to_string()
        } else {
            r.body_text()
        };
        PageError::Status(r.status(), message)
    }
}

impl IntoResponse for PageError {
    fn into_response(self) -> Response {
        match self {
            PageError::Login { next } => {
                let to = format!(
                    "/login?next={}",
                    url::form_urlencoded::byte_serialize(next.as_bytes()).collect::<String>()
                );
                Redirect::to(&to).into_response()
            }
            PageError::Csrf => super::pages::error_page(
                StatusCode::FORBIDDEN,
                "The form expired or came from another site. Go back, reload the page and try again.",
            ),
            PageError::Status(status, message) => super::pages::error_page(status, &message),
            PageError::KnownFailure(status, message) => {
                let mut resp = super::pages::error_page(status, &message);
                resp.extensions_mut().insert(KnownFailure);
                resp
            }
        }
    }
}
