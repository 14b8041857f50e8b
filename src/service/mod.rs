//! The service layer: the one API that both the browser UI and the JSON API call.
//! Business rules and validation live here; no axum types, no redb types.
//!
//! API boundary: handlers call `Service` methods and map [`ServiceError`] to HTTP in
//! `web::error`, nowhere else.

mod accounts;
mod events;
mod transfer;
mod webhooks;

use std::sync::Arc;

use crate::delivery::Engine;
use crate::delivery::ssrf::{NetworkPolicy, SsrfError};
use crate::store::{FileProblem, Store, StoreError};

pub use accounts::{
    ApiKeyCreated, Authentication, LoginOutcome, PasswordReset, SESSION_TTL_MS, SessionToken,
    reset_password,
};
pub use events::{
    EventPage, FoundPage, HealthReport, MAX_COUNTED_DELIVERIES, MAX_SCANNED_EVENTS, ReplayPlan,
    TargetHealthView,
};
pub use transfer::{EXPORT_FORMAT_VERSION, ExportCursor, ImportReport, export_to, import_from};
pub use webhooks::{
    DEFAULT_RETENTION_DAYS, TargetInput, VerificationInput, WebhookInput, WebhookSummary,
    WebhookView, parse_retry_limit,
};

/// Why a service call did not succeed.
#[derive(Debug, thiserror::Error)]
pub enum ServiceError {
    /// The named thing does not exist (or is not visible to the caller).
    #[error("{0} not found")]
    NotFound(&'static str),
    /// An input field is missing or invalid.
    #[error("{field}: {message}")]
    Invalid {
        /// The field at fault.
        field: &'static str,
        /// What is wrong.
        message: String,
    },
    /// Credentials were missing or wrong.
    #[error("invalid credentials")]
    Unauthorized,
    /// The caller's login limit is used up; nothing was checked.
    #[error("too many failed logins; wait a minute")]
    TooManyAttempts,
    /// The caller is who they say, but the way they proved it does not allow this.
    #[error("{0}")]
    Forbidden(&'static str),
    /// The target URL points where targets may not go.
    #[error("target URL refused: {0}")]
    TargetRefused(#[from] SsrfError),
    /// The thing changed while this request was being applied, again and again: the
    /// caller may retry.
    #[error("{0} changed meanwhile; try again")]
    Conflict(&'static str),
    /// Storage failed.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// A background task died (a bug).
    #[error("internal error: {0}")]
    Internal(String),
}

impl ServiceError {
    pub(crate) fn invalid(field: &'static str, message: impl Into<String>) -> ServiceError {
        ServiceError::Invalid {
            field,
            message: message.into(),
        }
    }
}

/// The state of storage, for the healthcheck.
#[derive(Debug, Clone)]
pub struct StorageReport {
    /// Free bytes on the data directory's filesystem, if known.
    pub free_bytes: Option<u64>,
    /// Less than [`MIN_FREE_BYTES`](crate::store::MIN_FREE_BYTES) free.
    pub disk_low: bool,
    /// Each failing event file, with its webhook's name while the webhook exists.
    pub problems: Vec<(FileProblem, Option<String>)>,
}

impl StorageReport {
    /// Whether anything is wrong.
    pub fn degraded(&self) -> bool {
        self.disk_low || !self.problems.is_empty()
    }
}

/// Longest accepted name (webhooks, targets, API keys).
const MAX_NAME: usize = 200;

/// A display name as entered: trimmed, not empty, at most [`MAX_NAME`] characters, no
/// control characters (they would corrupt logs and pages).
pub(crate) fn clean_name(field: &'static str, raw: &str) -> ServiceResult<String> {
    let name = raw.trim();
    if name.is_empty() {
        return Err(ServiceError::invalid(field, "must not be empty"));
    }
    if name.chars().count() > MAX_NAME {
        return Err(ServiceError::invalid(
            field,
            format!("at most {MAX_NAME} characters"),
        ));
    }
    if name.chars().any(char::is_control) {
        return Err(ServiceError::invalid(
            field,
            "must not contain control characters",
        ));
    }
    Ok(name.to_string())
}

/// Keyed credential hash → the check that accepted it.
type BasicCache = std::collections::HashMap<[u8; 32], accounts::RememberedBasic>;
/// Keyed credential hash → the gate of its check in progress.
type BasicGates = std::collections::HashMap<[u8; 32], Arc<tokio::sync::Mutex<()>>>;

/// Result of a service call.
pub type ServiceResult<T> = Result<T, ServiceError>;

/// The service handle; cheap to clone.
#[derive(Clone)]
pub struct Service {
    store: Arc<Store>,
    engine: Engine,
    policy: NetworkPolicy,
    session_key: Arc<Vec<u8>>,
    /// Recently verified Basic credentials (keyed by HMAC of user and password), so API
    /// clients using Basic auth pay the argon2 cost once a minute, not per request.
    verified: Arc<std::sync::Mutex<BasicCache>>,
    /// One gate per credential being checked, so identical credentials sent in parallel
    /// wait for the first check instead of each running argon2.
    basic_gates: Arc<std::sync::Mutex<BasicGates>>,
    /// At most one argon2 computation per core: each takes ~30 ms and 19 MiB, so a burst
    /// of logins queues here instead of exhausting memory and the blocking pool.
    argon2_permits: Arc<tokio::sync::Semaphore>,
}

impl Service {
    /// Builds the service over an open store and a running engine.
    pub fn new(store: Arc<Store>, engine: Engine, policy: NetworkPolicy) -> ServiceResult<Service> {
        let session_key = Arc::new(store.main.session_key()?);
        Ok(Service {
            store,
            engine,
            policy,
            session_key,
            verified: Arc::default(),
            basic_gates: Arc::default(),
            argon2_permits: Arc::new(tokio::sync::Semaphore::new(
                std::thread::available_parallelism().map_or(2, |n| n.get()),
            )),
        })
    }

    /// What is wrong with storage now (the healthcheck): event files that cannot be opened
    /// or written, and whether the disk is (nearly) full. Memory only, plus one `statvfs`.
    pub fn storage_health(&self) -> StorageReport {
        let catalog = self.store.catalog();
        let (free_bytes, disk_low) = self.store.free_space();
        let problems = self
            .store
            .health()
            .problems()
            .into_iter()
            .map(|p| {
                let name = catalog.webhook(p.webhook_id).map(|w| w.name.clone());
                (p, name)
            })
            .collect();
        StorageReport {
            free_bytes,
            disk_low,
            problems,
        }
    }

    /// Runs storage work (and password hashing) on the store's call threads: redb is
    /// synchronous and may fsync.
    async fn blocking<T: Send + 'static>(
        &self,
        f: impl FnOnce(&Store) -> ServiceResult<T> + Send + 'static,
    ) -> ServiceResult<T> {
        let store = self.store.clone();
        self.store.call(move || f(&store)).await?
    }
}
