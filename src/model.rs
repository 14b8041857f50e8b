//! The domain records. Plain serde structs: `store` encodes them, everyone else
//! passes them around. Times are Unix milliseconds (`Millis`).

use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::routing::{Dedupe, Filter, Transform};

/// Unix time in milliseconds.
pub type Millis = i64;

/// The current time in Unix milliseconds.
pub fn now_ms() -> Millis {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as Millis)
        .unwrap_or(0)
}

/// Shortest accepted new password, in characters.
pub const MIN_PASSWORD: usize = 8;
/// Longest accepted password, in bytes (argon2 cost does not depend on it, but bodies should
/// be small); a longer one is refused unchecked at login.
pub const MAX_PASSWORD: usize = 1024;

/// Whether a password may be set: at least [`MIN_PASSWORD`] characters, and at most
/// [`MAX_PASSWORD`] bytes so that it can log in. The error says what is wrong, without the
/// password.
pub fn check_password_length(password: &str) -> Result<(), String> {
    if password.chars().count() < MIN_PASSWORD {
        return Err(format!("must be at least {MIN_PASSWORD} characters"));
    }
    if password.len() > MAX_PASSWORD {
        return Err(format!("must be at most {MAX_PASSWORD} bytes"));
    }
    Ok(())
}

/// The single operator (and any further users an admin adds later).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct User {
    /// Primary key.
    pub id: Uuid,
    /// Login name; the first user is `admin`.
    pub username: String,
    /// argon2id PHC string.
    pub password_hash: String,
    /// Creation time.
    pub created_at: Millis,
}

/// An API key; only the SHA-256 of its secret is stored, the secret is shown once.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ApiKey {
    /// Primary key; also embedded in the token so lookup is by id.
    pub id: Uuid,
    /// Owner.
    pub user_id: Uuid,
    /// Human label.
    pub name: String,
    /// SHA-256 of the secret part of the token.
    pub secret_hash: Vec<u8>,
    /// Creation time.
    pub created_at: Millis,
    /// Last successful use (updated at most once a minute).
    pub last_used_at: Option<Millis>,
}

/// A server-side login session; the cookie carries the token, the table its keyed hash.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Session {
    /// The logged-in user.
    pub user_id: Uuid,
    /// Creation time.
    pub created_at: Millis,
    /// Expiry time.
    pub expires_at: Millis,
}

/// A group of entrypoints and targets: every event received on an entrypoint goes to every
/// active target.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Webhook {
    /// Primary key; also names the event file `events-{id}.redb`.
    pub id: Uuid,
    /// Display name.
    pub name: String,
    /// Free text.
    pub description: String,
    /// Days to keep finished events; 0 keeps them forever.
    pub retention_days: u32,
    /// Creation time.
    pub created_at: Millis,
    /// How a request to its entrypoints must prove who sent it.
    pub verification: Verification,
    /// Where a request's idempotency key is, if the webhook drops repeated requests.
    pub dedupe: Option<Dedupe>,
}

/// A credential kept in the main file. Its `Debug` form hides the value, so a record
/// printed in a log line or a panic message does not leak it.
#[derive(Clone, Serialize, Deserialize, PartialEq, Eq)]
#[serde(transparent)]
pub struct Secret(String);

impl Secret {
    /// Wraps a credential.
    pub fn new(value: impl Into<String>) -> Secret {
        Secret(value.into())
    }

    /// The credential itself, for checks and for authenticated users.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Secret(..)")
    }
}

/// Raw key bytes of an HMAC secret, shown as `whsec_` + base64 (the Standard Webhooks
/// spelling). `Debug` hides them.
#[derive(Clone, Serialize, Deserialize, PartialEq, Eq)]
#[serde(transparent)]
pub struct SigningKey(Vec<u8>);

/// Prefix of a Standard Webhooks secret.
pub const WHSEC_PREFIX: &str = "whsec_";

impl SigningKey {
    /// A new random key of 32 bytes (256 bits, HMAC-SHA256's block-sized security).
    pub fn generate() -> SigningKey {
        let mut key = vec![0u8; 32];
        rand::fill(&mut key[..]);
        SigningKey(key)
    }

    /// Parses `whsec_` + base64 (the prefix may be left out, as the official libraries
    /// allow); `None` when it is not base64 or decodes to nothing.
    pub fn parse(text: &str) -> Option<SigningKey> {
        use base64::Engine as _;
        let b64 = text.trim();
        let b64 = b64.strip_prefix(WHSEC_PREFIX).unwrap_or(b64);
        let key = base64::engine::general_purpose::STANDARD.decode(b64).ok()?;
        (!key.is_empty()).then_some(SigningKey(key))
    }

    /// The key bytes, the HMAC key.
    pub fn bytes(&self) -> &[u8] {
        &self.0
    }

    /// `whsec_` + base64 of the key.
    pub fn to_whsec(&self) -> String {
        use base64::Engine as _;
        format!(
            "{WHSEC_PREFIX}{}",
            base64::engine::general_purpose::STANDARD.encode(&self.0)
        )
    }
}

impl std::fmt::Debug for SigningKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("SigningKey(..)")
    }
}

/// How a webhook checks that a request comes from its sender, before anything is stored.
/// Each kind follows its sender's own scheme, so senders need no change.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq, Eq)]
pub enum Verification {
    /// Anyone who knows an entrypoint URL may send.
    #[default]
    None,
    /// GitHub: `X-Hub-Signature-256: sha256=<hex HMAC-SHA256(secret, body)>`.
    Github {
        /// The webhook secret set at GitHub.
        secret: Secret,
    },
    /// Gitea and Forgejo: `X-Gitea-Signature: <hex HMAC-SHA256(secret, body)>`.
    Gitea {
        /// The webhook secret set at Gitea.
        secret: Secret,
    },
    /// GitLab: `X-Gitlab-Token` equals the token.
    Gitlab {
        /// The secret token set at GitLab.
        token: Secret,
    },
    /// Stripe: `Stripe-Signature: t=…,v1=…`, HMAC-SHA256 of `{t}.{body}`, `t` recent.
    Stripe {
        /// The endpoint's signing secret (`whsec_…`), used as is.
        secret: Secret,
    },
    /// Slack: `X-Slack-Signature: v0=<hex HMAC-SHA256(secret, "v0:{ts}:{body}")>` with a
    /// recent `X-Slack-Request-Timestamp`.
    Slack {
        /// The app's signing secret.
        secret: Secret,
    },
    /// Standard Webhooks (and Svix): `webhook-id`, `webhook-timestamp` and
    /// `webhook-signature` (or their `svix-` spellings), timestamp recent.
    StandardWebhooks {
        /// The `whsec_…` secret, decoded.
        secret: SigningKey,
    },
    /// A static header that must carry a fixed value.
    Header {
        /// Header name, lower case.
        name: String,
        /// The value it must have.
        value: Secret,
    },
    /// HTTP Basic credentials.
    Basic {
        /// Expected user name.
        username: String,
        /// Expected password.
        password: Secret,
    },
}

impl Verification {
    /// The kind's name as used in forms and the API.
    pub fn kind(&self) -> &'static str {
        match self {
            Verification::None => "none",
            Verification::Github { .. } => "github",
            Verification::Gitea { .. } => "gitea",
            Verification::Gitlab { .. } => "gitlab",
            Verification::Stripe { .. } => "stripe",
            Verification::Slack { .. } => "slack",
            Verification::StandardWebhooks { .. } => "standard_webhooks",
            Verification::Header { .. } => "header",
            Verification::Basic { .. } => "basic",
        }
    }
}

/// An inbound URL `/webhook/{id}`; the id is the secret.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Entrypoint {
    /// Primary key and URL secret.
    pub id: Uuid,
    /// Owning webhook.
    pub webhook_id: Uuid,
    /// Free text.
    pub description: String,
    /// Inactive entrypoints answer 410.
    pub active: bool,
    /// Creation time.
    pub created_at: Millis,
}

/// Where events go.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Target {
    /// Primary key.
    pub id: Uuid,
    /// Owning webhook.
    pub webhook_id: Uuid,
    /// Display name.
    pub name: String,
    /// Inactive targets get no new deliveries.
    pub active: bool,
    /// Kind and kind-specific configuration.
    pub kind: TargetKind,
    /// Creation time.
    pub created_at: Millis,
    /// Which events it gets; `None`: every event.
    pub filter: Option<Filter>,
}

/// The kinds of target.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub enum TargetKind {
    /// Forward the original request over HTTP(S).
    Http(HttpTarget),
    /// Write one structured log line per event.
    Log,
    /// The event is already stored; the delivery succeeds at once.
    Database,
    /// Post a summary to a Slack-compatible incoming webhook.
    Slack(SlackTarget),
}

impl TargetKind {
    /// The kind's name as used in forms and the API.
    pub fn name(&self) -> &'static str {
        match self {
            TargetKind::Http(_) => "http",
            TargetKind::Log => "log",
            TargetKind::Database => "database",
            TargetKind::Slack(_) => "slack",
        }
    }

    /// The URL the kind sends to, if it sends anywhere.
    pub fn url(&self) -> Option<&str> {
        match self {
            TargetKind::Http(h) => Some(&h.url),
            TargetKind::Slack(s) => Some(&s.url),
            TargetKind::Log | TargetKind::Database => None,
        }
    }
}

/// Default per-attempt timeout of an http target.
pub const DEFAULT_TIMEOUT_SECS: u32 = 10;
/// Default cap on retry backoff.
pub const DEFAULT_MAX_BACKOFF_SECS: u32 = 300;
/// Default cap on concurrent requests to one target.
pub const DEFAULT_MAX_IN_FLIGHT: u32 = 10;
/// Retries a slack target gets (it has no setting of its own).
pub const SLACK_MAX_RETRIES: u32 = 5;

/// Configuration of an `http` target.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct HttpTarget {
    /// Absolute http(s) URL.
    pub url: String,
    /// Per-attempt timeout.
    pub timeout_secs: u32,
    /// Retries after the first attempt.
    pub max_retries: RetryLimit,
    /// Cap on the backoff between attempts.
    pub max_backoff_secs: u32,
    /// Hard cap on concurrent requests to this target.
    pub max_in_flight: u32,
    /// Standard Webhooks signatures on every attempt.
    pub signing: Signing,
    /// Headers set and removed, and the path template, applied to every attempt.
    pub transform: Transform,
}

/// How long the secret replaced by a rotation still signs, beside the new one.
pub const SIGNING_ROTATION_OVERLAP_MS: Millis = 24 * 3600 * 1000;

/// Standard Webhooks (v1, symmetric) signing of an http target's attempts.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct Signing {
    /// Whether attempts carry the `webhook-*` headers.
    pub enabled: bool,
    /// The current secret.
    pub secret: SigningKey,
    /// The secret a rotation replaced, and until when attempts are signed with it too.
    pub previous: Option<(SigningKey, Millis)>,
}

impl Signing {
    /// Signing on, with a new random secret.
    pub fn generate() -> Signing {
        Signing {
            enabled: true,
            secret: SigningKey::generate(),
            previous: None,
        }
    }

    /// The keys that sign an attempt made at `now`: the current one, then the replaced
    /// one while its overlap lasts.
    pub fn keys_at(&self, now: Millis) -> impl Iterator<Item = &SigningKey> {
        let previous = self
            .previous
            .as_ref()
            .filter(|(_, until)| now < *until)
            .map(|(key, _)| key);
        std::iter::once(&self.secret).chain(previous)
    }

    /// A new current secret at `now`; the old one signs beside it for
    /// [`SIGNING_ROTATION_OVERLAP_MS`] (an earlier replaced one stops at once).
    pub fn rotate(&mut self, now: Millis) {
        let old = std::mem::replace(&mut self.secret, SigningKey::generate());
        self.previous = Some((old, now + SIGNING_ROTATION_OVERLAP_MS));
    }
}

/// How many retries follow a failed first attempt.
#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq)]
pub enum RetryLimit {
    /// At most this many retries; 0 is fire-and-forget.
    Limited(u32),
    /// Retry until delivered.
    Unlimited,
}

impl RetryLimit {
    /// Whether attempt number `attempt` (1-based) may be followed by another.
    pub fn allows_retry_after(self, attempt: u32) -> bool {
        match self {
            RetryLimit::Limited(n) => attempt <= n,
            RetryLimit::Unlimited => true,
        }
    }

    /// Whether any retry happens at all (and so whether the circuit breaker applies).
    pub fn retries(self) -> bool {
        self != RetryLimit::Limited(0)
    }
}

/// Configuration of a `slack` target.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct SlackTarget {
    /// Incoming-webhook URL.
    pub url: String,
}

/// One received request, stored as it arrived. The body is stored beside it (table `bodies`).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Event {
    /// UUIDv7: time-ordered, so the event table is in arrival order.
    pub id: Uuid,
    /// The entrypoint it arrived on.
    pub entrypoint_id: Uuid,
    /// Arrival time.
    pub received_at: Millis,
    /// HTTP method.
    pub method: String,
    /// Path and query as received.
    pub path: String,
    /// Headers in arrival order, duplicates kept, values as raw bytes.
    pub headers: Vec<(String, Vec<u8>)>,
    /// The Content-Type header, if any (lossy UTF-8).
    pub content_type: Option<String>,
    /// The client address (from forwarded headers only when TRUST_PROXY is set).
    pub remote_addr: String,
    /// Body length in bytes.
    pub body_len: u64,
}

/// The `remote_addr` of a test event sent from webhooker itself (the UI's "Send test
/// event", the API's `test-event`). A sender cannot forge it: a received request's
/// address is always an IP address.
pub const TEST_EVENT_ORIGIN: &str = "webhooker test event";

impl Event {
    /// Whether webhooker itself sent this event as a test.
    pub fn is_test(&self) -> bool {
        self.remote_addr == TEST_EVENT_ORIGIN
    }
}

/// Where a delivery stands. New variants go at the end: bincode stores the variant's
/// index, so older rows keep their meaning.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub enum DeliveryStatus {
    /// Not attempted yet.
    Pending,
    /// Attempted, failed, another attempt is due.
    Retrying,
    /// Terminal: the target accepted it.
    Delivered,
    /// Terminal: gave up.
    Failed,
    /// Terminal: the target's filter did not match the event; never attempted.
    Skipped {
        /// Which condition did not hold. Boxed: every delivery in memory carries a status,
        /// and only skipped ones (which never enter the engine) have a reason.
        reason: Box<String>,
    },
}

impl DeliveryStatus {
    /// Lower-case name as shown in the UI and API.
    pub fn as_str(&self) -> &'static str {
        match self {
            DeliveryStatus::Pending => "pending",
            DeliveryStatus::Retrying => "retrying",
            DeliveryStatus::Delivered => "delivered",
            DeliveryStatus::Failed => "failed",
            DeliveryStatus::Skipped { .. } => "skipped",
        }
    }

    /// Delivered, failed or skipped: no due-index row remains (I2).
    pub fn is_terminal(&self) -> bool {
        matches!(
            self,
            DeliveryStatus::Delivered | DeliveryStatus::Failed | DeliveryStatus::Skipped { .. }
        )
    }

    /// Why a skipped delivery was skipped.
    pub fn reason(&self) -> Option<&str> {
        match self {
            DeliveryStatus::Skipped { reason } => Some(reason),
            _ => None,
        }
    }
}

/// One (event, target) pairing.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Delivery {
    /// UUIDv7.
    pub id: Uuid,
    /// The event delivered.
    pub event_id: Uuid,
    /// The target delivered to.
    pub target_id: Uuid,
    /// Current status.
    pub status: DeliveryStatus,
    /// Attempts made so far.
    pub attempts: u32,
    /// When the next attempt is due; `None` once terminal. Also the due-index key (I2).
    pub next_attempt_at: Option<Millis>,
    /// Creation time.
    pub created_at: Millis,
}

impl Delivery {
    /// A new delivery of `event_id` to `target_id`, not yet attempted and due at `now`.
    pub fn pending(event_id: uuid::Uuid, target_id: uuid::Uuid, now: Millis) -> Delivery {
        Delivery {
            id: uuid::Uuid::now_v7(),
            event_id,
            target_id,
            status: DeliveryStatus::Pending,
            attempts: 0,
            next_attempt_at: Some(now),
            created_at: now,
        }
    }

    /// A new delivery of `event_id` to `target`: pending and due at `now`, except for a
    /// `database` target, whose delivery is the event being stored, so it is
    /// delivered by the very commit that writes it, with no attempt record and no due row.
    pub fn for_target(event_id: uuid::Uuid, target: &Target, now: Millis) -> Delivery {
        let mut delivery = Delivery::pending(event_id, target.id, now);
        if matches!(target.kind, TargetKind::Database) {
            delivery.status = DeliveryStatus::Delivered;
            delivery.attempts = 1;
            delivery.next_attempt_at = None;
        }
        delivery
    }

    /// A delivery of `event_id` to `target_id` that its filter skipped: finished by the
    /// commit that writes it, with no attempt and no due row.
    pub fn skipped(
        event_id: uuid::Uuid,
        target_id: uuid::Uuid,
        now: Millis,
        reason: String,
    ) -> Delivery {
        Delivery {
            status: DeliveryStatus::Skipped {
                reason: Box::new(reason),
            },
            next_attempt_at: None,
            ..Delivery::pending(event_id, target_id, now)
        }
    }

    /// Whether this delivery still goes through the delivery engine.
    pub fn needs_engine(&self) -> bool {
        !self.status.is_terminal()
    }
}

/// The record of one attempt.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct DeliveryResult {
    /// The delivery attempted.
    pub delivery_id: Uuid,
    /// 1-based attempt number.
    pub attempt: u32,
    /// Start of the attempt.
    pub started_at: Millis,
    /// Duration in microseconds.
    pub duration_us: u64,
    /// HTTP status, when a response arrived.
    pub status_code: Option<u16>,
    /// Error text, when the attempt failed without a usable response.
    pub error: Option<String>,
    /// The first 4 KiB of the response body.
    pub response_body: Vec<u8>,
    /// Whether this attempt delivered the event.
    pub success: bool,
    /// What went over the wire. Stored as the extension of the result's row (see
    /// `store/event_db`), so rows written before it existed still read (with none).
    #[serde(skip)]
    pub exchange: AttemptExchange,
}

/// Most headers kept per side of an attempt (request sent, response received).
pub const MAX_KEPT_HEADERS: usize = 64;
/// Most header bytes (names and values) kept per side of an attempt.
pub const MAX_KEPT_HEADER_BYTES: usize = 8 * 1024;

/// What an attempt sent and what came back besides the status and body: for debugging a
/// delivery. Bounded per side by [`MAX_KEPT_HEADERS`] and [`MAX_KEPT_HEADER_BYTES`]; what
/// did not fit is counted, not kept.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq, Eq)]
pub struct AttemptExchange {
    /// The request webhooker sent; `None` when nothing was sent.
    pub request: Option<SentRequest>,
    /// The response's headers in order, duplicates kept.
    pub response_headers: Vec<(String, Vec<u8>)>,
    /// Response headers left out to stay within the bounds.
    pub response_headers_dropped: u32,
}

/// The request line and headers of one attempt, as sent.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq, Eq)]
pub struct SentRequest {
    /// HTTP method.
    pub method: String,
    /// Full URL.
    pub url: String,
    /// Headers in order (ours, `X-Webhooker-*` and signatures, included).
    pub headers: Vec<(String, Vec<u8>)>,
    /// Headers left out to stay within the bounds.
    pub headers_dropped: u32,
}

/// `headers` cut to [`MAX_KEPT_HEADERS`] and [`MAX_KEPT_HEADER_BYTES`], in order, and the
/// number left out.
pub fn bounded_headers<'a>(
    headers: impl IntoIterator<Item = (&'a str, &'a [u8])>,
) -> (Vec<(String, Vec<u8>)>, u32) {
    let (mut kept, mut bytes, mut dropped) = (Vec::new(), 0usize, 0u32);
    for (name, value) in headers {
        let size = name.len() + value.len();
        if kept.len() < MAX_KEPT_HEADERS && bytes + size <= MAX_KEPT_HEADER_BYTES {
            bytes += size;
            kept.push((name.to_string(), value.to_vec()));
        } else {
            dropped = dropped.saturating_add(1);
        }
    }
    (kept, dropped)
}

impl AttemptExchange {
    /// Rough size in memory, for the writer's batch weight.
    pub fn weight(&self) -> usize {
        let side =
            |h: &[(String, Vec<u8>)]| h.iter().map(|(n, v)| n.len() + v.len()).sum::<usize>();
        self.request
            .as_ref()
            .map_or(0, |r| r.url.len() + side(&r.headers))
            + side(&self.response_headers)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kept_headers_are_bounded_in_count_and_bytes() {
        let many: Vec<(String, Vec<u8>)> = (0..100)
            .map(|i| (format!("x-{i}"), b"v".to_vec()))
            .collect();
        let (kept, dropped) = bounded_headers(many.iter().map(|(n, v)| (n.as_str(), v.as_slice())));
        assert_eq!((kept.len(), dropped), (MAX_KEPT_HEADERS, 36));
        assert_eq!(kept[0], ("x-0".to_string(), b"v".to_vec()), "in order");

        let big = vec![b'a'; MAX_KEPT_HEADER_BYTES - 10];
        let small = b"ok".to_vec();
        let (kept, dropped) = bounded_headers([
            ("huge", big.as_slice()),
            ("too-much", big.as_slice()),
            ("s", small.as_slice()),
        ]);
        // The one that does not fit is left out; a later small one still fits.
        assert_eq!(
            kept.iter().map(|(n, _)| n.as_str()).collect::<Vec<_>>(),
            ["huge", "s"]
        );
        assert_eq!(dropped, 1);
    }
}
