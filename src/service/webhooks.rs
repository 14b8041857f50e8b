//! Webhooks, entrypoints and targets: creation, validation (including the save-time SSRF
//! check), updates and deletion (which removes the webhook's event file).

use std::sync::Arc;

use uuid::Uuid;

use super::{Service, ServiceError, ServiceResult, clean_name};
use crate::model::{
    DEFAULT_MAX_BACKOFF_SECS, DEFAULT_MAX_IN_FLIGHT, DEFAULT_TIMEOUT_SECS, Entrypoint, HttpTarget,
    RetryLimit, Secret, Signing, SigningKey, SlackTarget, Target, TargetKind, Verification,
    Webhook, now_ms,
};
use crate::routing::{self, Dedupe, Filter, Transform};
use crate::store::Replaced;

/// Default retention for new webhooks.
pub const DEFAULT_RETENTION_DAYS: u32 = 30;
/// Longest accepted description.
const MAX_DESCRIPTION: usize = 2000;
/// Longest accepted URL.
const MAX_URL: usize = 2048;

/// Fields of a webhook, for create (missing = default) and update (missing = unchanged).
#[derive(Debug, Clone, Default)]
pub struct WebhookInput {
    /// Display name.
    pub name: Option<String>,
    /// Free text.
    pub description: Option<String>,
    /// Days to keep finished events; 0 = forever.
    pub retention_days: Option<u32>,
    /// How senders prove themselves.
    pub verification: Option<VerificationInput>,
    /// Idempotency: `{"header": name, "window_secs": n}` or `{"json": pointer, …}`
    /// (`routing::Dedupe::from_json`); `null` turns it off.
    pub dedupe: Option<serde_json::Value>,
}

/// A webhook's sender verification as entered: a kind and the fields it needs. A secret
/// left out (or empty) keeps the current one when the kind stays the same, so a form need
/// not show secrets to keep them. Its `Debug` leaves the secret fields out.
#[derive(Clone, Default)]
pub struct VerificationInput {
    /// `none`, `github`, `gitea`, `gitlab`, `stripe`, `slack`, `standard_webhooks`,
    /// `header` or `basic`.
    pub kind: String,
    /// github, gitea, stripe, slack, standard_webhooks.
    pub secret: Option<String>,
    /// gitlab.
    pub token: Option<String>,
    /// header: its name.
    pub name: Option<String>,
    /// header: its value.
    pub value: Option<String>,
    /// basic.
    pub username: Option<String>,
    /// basic.
    pub password: Option<String>,
}

impl std::fmt::Debug for VerificationInput {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let given = |field: &Option<String>| field.as_ref().map(|_| "..");
        f.debug_struct("VerificationInput")
            .field("kind", &self.kind)
            .field("secret", &given(&self.secret))
            .field("token", &given(&self.token))
            .field("name", &self.name)
            .field("value", &given(&self.value))
            .field("username", &self.username)
            .field("password", &given(&self.password))
            .finish()
    }
}

/// Times an edit of a target is built again after the target changed under it.
const UPDATE_ATTEMPTS: usize = 5;

/// Longest accepted verification secret, token or header value.
const MAX_SECRET: usize = 1024;

impl VerificationInput {
    /// The verification this input describes, given the `current` one (whose secret a
    /// left-out field keeps when the kind stays the same).
    fn resolve(&self, current: &Verification) -> ServiceResult<Verification> {
        let kind = self.kind.trim();
        let same_kind = current.kind() == kind;
        // A secret field: given and not empty, or kept from the current verification.
        let given =
            |field: &'static str, value: &Option<String>| -> ServiceResult<Option<String>> {
                match value.as_deref() {
                    Some(v) if !v.is_empty() => {
                        if v.len() > MAX_SECRET {
                            return Err(ServiceError::invalid(
                                field,
                                format!("at most {MAX_SECRET} bytes"),
                            ));
                        }
                        if v.chars().any(char::is_control) || v.trim() != v {
                            return Err(ServiceError::invalid(
                                field,
                                "must not contain control characters or surrounding spaces",
                            ));
                        }
                        Ok(Some(v.to_string()))
                    }
                    _ => Ok(None),
                }
            };
        let required = |field: &'static str, value: Option<String>, kept: Option<Secret>| {
            value
                .map(Secret::new)
                .or(kept.filter(|_| same_kind))
                .ok_or_else(|| {
                    ServiceError::invalid(field, format!("is required for {kind} verification"))
                })
        };
        let current_secret = match current {
            Verification::Github { secret }
            | Verification::Gitea { secret }
            | Verification::Stripe { secret }
            | Verification::Slack { secret } => Some(secret.clone()),
            Verification::Gitlab { token } => Some(token.clone()),
            Verification::Header { value, .. } => Some(value.clone()),
            Verification::Basic { password, .. } => Some(password.clone()),
            Verification::StandardWebhooks { .. } | Verification::None => None,
        };
        let secret = given("verification.secret", &self.secret)?;
        Ok(match kind {
            "none" => Verification::None,
            "github" => Verification::Github {
                secret: required("verification.secret", secret, current_secret)?,
            },
            "gitea" => Verification::Gitea {
                secret: required("verification.secret", secret, current_secret)?,
            },
            "stripe" => Verification::Stripe {
                secret: required("verification.secret", secret, current_secret)?,
            },
            "slack" => Verification::Slack {
                secret: required("verification.secret", secret, current_secret)?,
            },
            "gitlab" => Verification::Gitlab {
                token: required(
                    "verification.token",
                    given("verification.token", &self.token)?,
                    current_secret,
                )?,
            },
            "standard_webhooks" => {
                let secret = match (secret, current) {
                    (Some(text), _) => SigningKey::parse(&text).ok_or_else(|| {
                        ServiceError::invalid(
                            "verification.secret",
                            "must be whsec_ followed by base64, as the sender shows it",
                        )
                    })?,
                    (None, Verification::StandardWebhooks { secret }) => secret.clone(),
                    (None, _) => {
                        return Err(ServiceError::invalid(
                            "verification.secret",
                            "is required for standard_webhooks verification",
                        ));
                    }
                };
                Verification::StandardWebhooks { secret }
            }
            "header" => {
                let kept_name = match current {
                    Verification::Header { name, .. } => Some(name.clone()),
                    _ => None,
                };
                let name = match self.name.as_deref().map(str::trim) {
                    Some(n) if !n.is_empty() => n.to_ascii_lowercase(),
                    _ => kept_name.ok_or_else(|| {
                        ServiceError::invalid(
                            "verification.name",
                            "is required for header verification",
                        )
                    })?,
                };
                let valid_name = name.len() <= 100
                    && name
                        .bytes()
                        .all(|b| b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b));
                if !valid_name {
                    return Err(ServiceError::invalid(
                        "verification.name",
                        "must be an HTTP header name (letters, digits and -)",
                    ));
                }
                Verification::Header {
                    name,
                    value: required(
                        "verification.value",
                        given("verification.value", &self.value)?,
                        current_secret,
                    )?,
                }
            }
            "basic" => {
                let kept_user = match current {
                    Verification::Basic { username, .. } => Some(username.clone()),
                    _ => None,
                };
                let username = match self.username.as_deref() {
                    Some(u) if !u.is_empty() => {
                        if u.contains(':') || u.chars().any(char::is_control) || u.len() > 200 {
                            return Err(ServiceError::invalid(
                                "verification.username",
                                "must be at most 200 bytes, without colons or control characters",
                            ));
                        }
                        u.to_string()
                    }
                    _ => kept_user.ok_or_else(|| {
                        ServiceError::invalid(
                            "verification.username",
                            "is required for basic verification",
                        )
                    })?,
                };
                Verification::Basic {
                    username,
                    password: required(
                        "verification.password",
                        given("verification.password", &self.password)?,
                        current_secret,
                    )?,
                }
            }
            _ => {
                return Err(ServiceError::invalid(
                    "verification.kind",
                    "must be one of none, github, gitea, gitlab, stripe, slack, standard_webhooks, header, basic",
                ));
            }
        })
    }
}

/// Fields of a target, for create (kind and name required) and update (missing =
/// unchanged; the kind cannot change).
#[derive(Debug, Clone, Default)]
pub struct TargetInput {
    /// Display name.
    pub name: Option<String>,
    /// `http`, `log`, `database` or `slack`.
    pub kind: Option<String>,
    /// URL for http and slack.
    pub url: Option<String>,
    /// http: per-attempt timeout.
    pub timeout_secs: Option<u32>,
    /// http: retries after the first attempt.
    pub max_retries: Option<RetryLimit>,
    /// http: backoff cap.
    pub max_backoff_secs: Option<u32>,
    /// http: concurrency cap.
    pub max_in_flight: Option<u32>,
    /// http: whether attempts carry Standard Webhooks signatures (on by default).
    pub signing: Option<bool>,
    /// Whether the target gets new deliveries.
    pub active: Option<bool>,
    /// Which events it gets: `{"all": […]}` or `{"any": […]}` (`routing::Filter::from_json`);
    /// `null` removes the filter.
    pub filter: Option<serde_json::Value>,
    /// http: headers set and removed, path template (`routing::Transform::from_json`);
    /// `null` removes it.
    pub transform: Option<serde_json::Value>,
}

impl TargetInput {
    /// Whether it changes nothing.
    pub fn is_empty(&self) -> bool {
        let TargetInput {
            name,
            kind,
            url,
            timeout_secs,
            max_retries,
            max_backoff_secs,
            max_in_flight,
            signing,
            active,
            filter,
            transform,
        } = self;
        name.is_none()
            && kind.is_none()
            && url.is_none()
            && timeout_secs.is_none()
            && max_retries.is_none()
            && max_backoff_secs.is_none()
            && max_in_flight.is_none()
            && signing.is_none()
            && active.is_none()
            && filter.is_none()
            && transform.is_none()
    }
}

/// A webhook with its entrypoints and targets.
#[derive(Debug, Clone)]
pub struct WebhookView {
    /// The webhook.
    pub webhook: Arc<Webhook>,
    /// Its entrypoints, oldest first.
    pub entrypoints: Vec<Arc<Entrypoint>>,
    /// Its targets, oldest first.
    pub targets: Vec<Arc<Target>>,
    /// Its paused targets.
    pub paused: std::collections::HashSet<Uuid>,
}

/// A webhook with counts, for the list page.
#[derive(Debug, Clone)]
pub struct WebhookSummary {
    /// The webhook.
    pub webhook: Arc<Webhook>,
    /// Number of entrypoints.
    pub entrypoints: usize,
    /// Number of targets.
    pub targets: usize,
    /// Number of stored events.
    pub events: u64,
    /// Targets with a failed attempt in the last 24 hours (as its event file keeps it, so
    /// across restarts).
    pub failing_targets: usize,
    /// Targets whose circuit breaker is open or half-open.
    pub open_breakers: usize,
    /// Paused targets.
    pub paused_targets: usize,
}

/// Parses `max_retries` as written by people: a number, or `unlimited` (also `-1`, `inf`).
pub fn parse_retry_limit(raw: &str) -> Result<RetryLimit, ServiceError> {
    let t = raw.trim().to_ascii_lowercase();
    match t.as_str() {
        "unlimited" | "infinite" | "inf" | "-1" => Ok(RetryLimit::Unlimited),
        _ => t.parse::<u32>().map(RetryLimit::Limited).map_err(|_| {
            ServiceError::invalid("max_retries", "must be a number of retries or `unlimited`")
        }),
    }
}

fn clean_description(raw: &str) -> ServiceResult<String> {
    if raw.chars().count() > MAX_DESCRIPTION {
        return Err(ServiceError::invalid(
            "description",
            format!("at most {MAX_DESCRIPTION} characters"),
        ));
    }
    // Line breaks and tabs are fine in a description; NUL, escapes and the like are not.
    if raw
        .chars()
        .any(|c| c.is_control() && !matches!(c, '\n' | '\r' | '\t'))
    {
        return Err(ServiceError::invalid(
            "description",
            "must not contain control characters other than line breaks and tabs",
        ));
    }
    Ok(raw.trim().to_string())
}

/// The dedupe setting an input asks for: `None` for off (`null`).
fn parse_dedupe(v: &serde_json::Value) -> ServiceResult<Option<Dedupe>> {
    if v.is_null() {
        return Ok(None);
    }
    Dedupe::from_json(v)
        .map(Some)
        .map_err(|e| ServiceError::invalid("dedupe", e))
}

/// The filter an input asks for: `None` for every event (`null`).
fn parse_filter(v: &serde_json::Value) -> ServiceResult<Option<Filter>> {
    if v.is_null() {
        return Ok(None);
    }
    Filter::from_json(v)
        .map(Some)
        .map_err(|e| ServiceError::invalid("filter", e))
}

fn check_range(field: &'static str, v: u32, min: u32, max: u32) -> ServiceResult<u32> {
    if v < min || v > max {
        return Err(ServiceError::invalid(
            field,
            format!("must be between {min} and {max}"),
        ));
    }
    Ok(v)
}

impl Service {
    /// All webhooks with entrypoint, target and event counts, newest first.
    pub async fn list_webhooks(&self) -> ServiceResult<Vec<WebhookSummary>> {
        let health = self.engine.target_health();
        let day_ago = now_ms() - 24 * 3600 * 1000;
        self.blocking(move |store| {
            let catalog = store.catalog();
            catalog
                .webhooks()
                .into_iter()
                .map(|w| {
                    let targets = catalog.targets_of(w.id);
                    let file = store.events(w.id)?.overview()?;
                    Ok(WebhookSummary {
                        failing_targets: targets
                            .iter()
                            .filter(|t| {
                                file.last_failures
                                    .get(&t.id)
                                    .is_some_and(|at| *at >= day_ago)
                            })
                            .count(),
                        open_breakers: targets
                            .iter()
                            .filter_map(|t| health.get(&t.id))
                            .filter(|h| h.breaker != crate::delivery::BreakerStatus::Closed)
                            .count(),
                        paused_targets: targets.iter().filter(|t| catalog.is_paused(t.id)).count(),
                        entrypoints: catalog.entrypoints_of(w.id).len(),
                        targets: targets.len(),
                        events: file.events,
                        webhook: w,
                    })
                })
                .collect()
        })
        .await
    }

    /// One webhook with its entrypoints and targets.
    pub async fn webhook(&self, id: Uuid) -> ServiceResult<WebhookView> {
        let catalog = self.store.catalog();
        let webhook = catalog
            .webhook(id)
            .cloned()
            .ok_or(ServiceError::NotFound("webhook"))?;
        Ok(WebhookView {
            webhook,
            entrypoints: catalog.entrypoints_of(id).to_vec(),
            paused: catalog
                .targets_of(id)
                .iter()
                .map(|t| t.id)
                .filter(|t| catalog.is_paused(*t))
                .collect(),
            targets: catalog.targets_of(id).to_vec(),
        })
    }

    /// Creates a webhook, its event file and a default entrypoint.
    pub async fn create_webhook(&self, input: WebhookInput) -> ServiceResult<WebhookView> {
        let now = now_ms();
        let webhook = Webhook {
            id: Uuid::new_v4(),
            name: clean_name("name", input.name.as_deref().unwrap_or(""))?,
            description: clean_description(input.description.as_deref().unwrap_or(""))?,
            retention_days: check_range(
                "retention_days",
                input.retention_days.unwrap_or(DEFAULT_RETENTION_DAYS),
                0,
                36_500,
            )?,
            created_at: now,
            verification: match &input.verification {
                Some(v) => v.resolve(&Verification::None)?,
                None => Verification::None,
            },
            dedupe: match &input.dedupe {
                Some(v) => parse_dedupe(v)?,
                None => None,
            },
        };
        let entrypoint = Entrypoint {
            id: Uuid::new_v4(),
            webhook_id: webhook.id,
            description: "Default entrypoint".into(),
            active: true,
            created_at: now,
        };
        let id = webhook.id;
        self.blocking(move |store| {
            // The file first: a webhook that exists always has somewhere to store events.
            store.create_events(webhook.id)?;
            store.main.create_webhook(&webhook, &entrypoint)?;
            Ok(())
        })
        .await?;
        self.webhook(id).await
    }

    /// Updates a webhook's name, description or retention.
    pub async fn update_webhook(
        &self,
        id: Uuid,
        input: WebhookInput,
    ) -> ServiceResult<WebhookView> {
        let view = self.webhook(id).await?;
        let mut webhook = (*view.webhook).clone();
        if let Some(name) = &input.name {
            webhook.name = clean_name("name", name)?;
        }
        if let Some(d) = &input.description {
            webhook.description = clean_description(d)?;
        }
        if let Some(days) = input.retention_days {
            webhook.retention_days = check_range("retention_days", days, 0, 36_500)?;
        }
        if let Some(v) = &input.verification {
            webhook.verification = v.resolve(&webhook.verification)?;
        }
        if let Some(v) = &input.dedupe {
            webhook.dedupe = parse_dedupe(v)?;
        }
        self.blocking(move |store| found(store.main.update_webhook(&webhook)?, "webhook"))
            .await?;
        self.webhook(id).await
    }

    /// Deletes a webhook, its entrypoints, its targets and its event file.
    pub async fn delete_webhook(&self, id: Uuid) -> ServiceResult<()> {
        self.blocking(move |store| {
            found(store.main.delete_webhook(id)?, "webhook")?;
            store.remove_events(id)?;
            Ok(())
        })
        .await
    }

    /// Adds an entrypoint to a webhook.
    pub async fn add_entrypoint(
        &self,
        webhook_id: Uuid,
        description: Option<String>,
    ) -> ServiceResult<Arc<Entrypoint>> {
        self.webhook(webhook_id).await?;
        let entrypoint = Entrypoint {
            id: Uuid::new_v4(),
            webhook_id,
            description: clean_description(description.as_deref().unwrap_or(""))?,
            active: true,
            created_at: now_ms(),
        };
        let id = entrypoint.id;
        self.blocking(move |store| found(store.main.insert_entrypoint(&entrypoint)?, "webhook"))
            .await?;
        self.entrypoint(webhook_id, id)
    }

    fn entrypoint(&self, webhook_id: Uuid, id: Uuid) -> ServiceResult<Arc<Entrypoint>> {
        self.store
            .catalog()
            .entrypoint(id)
            .filter(|e| e.webhook_id == webhook_id)
            .cloned()
            .ok_or(ServiceError::NotFound("entrypoint"))
    }

    /// Changes an entrypoint's `active` flag or description.
    pub async fn update_entrypoint(
        &self,
        webhook_id: Uuid,
        id: Uuid,
        active: Option<bool>,
        description: Option<String>,
    ) -> ServiceResult<Arc<Entrypoint>> {
        let mut entrypoint = (*self.entrypoint(webhook_id, id)?).clone();
        if let Some(a) = active {
            entrypoint.active = a;
        }
        if let Some(d) = description {
            entrypoint.description = clean_description(&d)?;
        }
        self.blocking(move |store| found(store.main.update_entrypoint(&entrypoint)?, "entrypoint"))
            .await?;
        self.entrypoint(webhook_id, id)
    }

    /// Removes an entrypoint.
    pub async fn delete_entrypoint(&self, webhook_id: Uuid, id: Uuid) -> ServiceResult<()> {
        self.entrypoint(webhook_id, id)?;
        // Checked again in the write: a concurrent delete may have won since the check above.
        self.blocking(move |store| found(store.main.delete_entrypoint(id)?, "entrypoint"))
            .await
    }

    /// One target of a webhook.
    pub fn target_of(&self, webhook_id: Uuid, id: Uuid) -> ServiceResult<Arc<Target>> {
        self.target(webhook_id, id)
    }

    fn target(&self, webhook_id: Uuid, id: Uuid) -> ServiceResult<Arc<Target>> {
        self.store
            .catalog()
            .target(id)
            .filter(|t| t.webhook_id == webhook_id)
            .cloned()
            .ok_or(ServiceError::NotFound("target"))
    }

    /// Adds a target after validating its kind-specific fields and its URL (SSRF).
    pub async fn add_target(
        &self,
        webhook_id: Uuid,
        input: TargetInput,
    ) -> ServiceResult<Arc<Target>> {
        self.webhook(webhook_id).await?;
        let name = clean_name("name", input.name.as_deref().unwrap_or(""))?;
        let kind = match input.kind.as_deref().map(str::trim) {
            Some("http") => TargetKind::Http(HttpTarget {
                url: String::new(),
                timeout_secs: DEFAULT_TIMEOUT_SECS,
                max_retries: RetryLimit::Unlimited,
                max_backoff_secs: DEFAULT_MAX_BACKOFF_SECS,
                max_in_flight: DEFAULT_MAX_IN_FLIGHT,
                signing: Signing::generate(),
                transform: Transform::default(),
            }),
            Some("slack") => TargetKind::Slack(SlackTarget { url: String::new() }),
            Some("log") => TargetKind::Log,
            Some("database") => TargetKind::Database,
            Some(_) | None => {
                return Err(ServiceError::invalid(
                    "kind",
                    "must be one of http, slack, log, database",
                ));
            }
        };
        let target = Target {
            id: Uuid::new_v4(),
            webhook_id,
            name,
            active: input.active.unwrap_or(true),
            kind: self.apply_kind_fields(kind, &input, true).await?,
            created_at: now_ms(),
            filter: match &input.filter {
                Some(v) => parse_filter(v)?,
                None => None,
            },
        };
        let id = target.id;
        self.blocking(move |store| found(store.main.insert_target(&target)?, "webhook"))
            .await?;
        self.target(webhook_id, id)
    }

    /// Updates a target's name, active flag or kind-specific fields.
    pub async fn update_target(
        &self,
        webhook_id: Uuid,
        id: Uuid,
        input: TargetInput,
    ) -> ServiceResult<Arc<Target>> {
        // Built from a copy (the URL check may wait on DNS) and written only if the target
        // is still that copy; otherwise built again from the newer version, so an edit never
        // undoes one made meanwhile (a rotated secret, another field edited).
        for _ in 0..UPDATE_ATTEMPTS {
            let read = self.target(webhook_id, id)?;
            let mut target = Target::clone(&read);
            if let Some(kind) = input.kind.as_deref()
                && kind.trim() != target.kind.name()
            {
                return Err(ServiceError::invalid(
                    "kind",
                    "cannot be changed; add a new target",
                ));
            }
            if let Some(name) = &input.name {
                target.name = clean_name("name", name)?;
            }
            if let Some(a) = input.active {
                target.active = a;
            }
            if let Some(v) = &input.filter {
                target.filter = parse_filter(v)?;
            }
            target.kind = self.apply_kind_fields(target.kind, &input, false).await?;
            let replaced = self
                .blocking(move |store| Ok(store.main.replace_target(&read, &target)?))
                .await?;
            match replaced {
                Replaced::Done => return self.target(webhook_id, id),
                Replaced::Gone => return Err(ServiceError::NotFound("target")),
                Replaced::Changed => continue,
            }
        }
        Err(ServiceError::Conflict("the target"))
    }

    /// Pauses or resumes a target. While paused, its deliveries wait in the due index as
    /// they are (status, attempts and due time kept; the breaker learns nothing); on
    /// resume the sweeper queues them, oldest due first, at the target's `max_in_flight`.
    /// Unlike disabling, a paused target still gets new deliveries.
    pub async fn set_target_paused(
        &self,
        webhook_id: Uuid,
        id: Uuid,
        paused: bool,
    ) -> ServiceResult<Arc<Target>> {
        self.target(webhook_id, id)?;
        let since = paused.then(now_ms);
        self.blocking(move |store| found(store.main.set_target_paused(id, since)?, "target"))
            .await?;
        if !paused {
            self.engine.target_resumed();
        }
        self.target(webhook_id, id)
    }

    /// Since when a target is paused (`None`: it is not).
    pub fn paused_since(&self, target_id: Uuid) -> Option<crate::model::Millis> {
        self.store.catalog().paused_since(target_id)
    }

    /// Gives an http target a new signing secret. The old one keeps signing beside it
    /// (both signatures on every attempt) for 24 hours, so receivers can switch without
    /// refusing events; a secret replaced earlier stops at once.
    pub async fn rotate_signing_secret(
        &self,
        webhook_id: Uuid,
        id: Uuid,
    ) -> ServiceResult<Arc<Target>> {
        if !matches!(self.target(webhook_id, id)?.kind, TargetKind::Http(_)) {
            return Err(ServiceError::invalid(
                "kind",
                "only http targets sign their requests",
            ));
        }
        // Rotated in the write itself, so an edit of the target made meanwhile is kept.
        let now = now_ms();
        self.blocking(move |store| {
            let rotated = store.main.modify_target(id, |target| {
                if let TargetKind::Http(http) = &mut target.kind {
                    http.signing.rotate(now);
                }
            })?;
            found(rotated.is_some(), "target")
        })
        .await?;
        self.target(webhook_id, id)
    }

    /// Removes a target. Its unfinished deliveries fail with "target was deleted".
    pub async fn delete_target(&self, webhook_id: Uuid, id: Uuid) -> ServiceResult<()> {
        self.target(webhook_id, id)?;
        // Checked again in the write: a concurrent delete may have won since the check above.
        self.blocking(move |store| found(store.main.delete_target(id)?, "target"))
            .await
    }

    async fn apply_kind_fields(
        &self,
        kind: TargetKind,
        input: &TargetInput,
        creating: bool,
    ) -> ServiceResult<TargetKind> {
        // Only kinds that send somewhere have a URL to check; for the others a URL (say, left
        // in the form after switching kinds) is ignored, like their other unused fields.
        let uses_url = matches!(kind, TargetKind::Http(_) | TargetKind::Slack(_));
        let url = match input.url.as_deref().map(str::trim) {
            Some(u) if uses_url && !u.is_empty() => Some(self.check_target_url(u).await?),
            _ => None,
        };
        Ok(match kind {
            TargetKind::Http(mut h) => {
                match url {
                    Some(u) => h.url = u,
                    None if creating => {
                        return Err(ServiceError::invalid("url", "is required for http targets"));
                    }
                    None => {}
                }
                if let Some(t) = input.timeout_secs {
                    h.timeout_secs = check_range("timeout_secs", t, 1, 300)?;
                }
                if let Some(r) = input.max_retries {
                    if let RetryLimit::Limited(n) = r {
                        check_range("max_retries", n, 0, 1_000_000)?;
                    }
                    h.max_retries = r;
                }
                if let Some(b) = input.max_backoff_secs {
                    h.max_backoff_secs = check_range("max_backoff_secs", b, 1, 86_400)?;
                }
                if let Some(n) = input.max_in_flight {
                    h.max_in_flight = check_range("max_in_flight", n, 1, 1000)?;
                }
                if let Some(on) = input.signing {
                    h.signing.enabled = on;
                }
                match &input.transform {
                    Some(serde_json::Value::Null) => h.transform = Transform::default(),
                    Some(v) => {
                        h.transform = Transform::from_json(v)
                            .map_err(|e| ServiceError::invalid("transform", e))?;
                    }
                    None => {}
                }
                self.refuse_own_entrypoint(&h.url, h.transform.path.as_deref())?;
                TargetKind::Http(h)
            }
            TargetKind::Slack(mut s) => {
                match url {
                    Some(u) => s.url = u,
                    None if creating => {
                        return Err(ServiceError::invalid(
                            "url",
                            "is required for slack targets",
                        ));
                    }
                    None => {}
                }
                self.refuse_own_entrypoint(&s.url, None)?;
                TargetKind::Slack(s)
            }
            other => other,
        })
    }

    /// Refuses a target that would send to one of this server's own entrypoints: a URL
    /// (with the path template's fixed text in place of its path) whose path is
    /// `/webhook/{id}` of an entrypoint here. Entrypoint ids are random secrets, so such a
    /// URL reaches this server whatever its host (BASE_URL, the listen address, a proxy, a
    /// DNS alias): each event would come back as a new event, and fan out again. Loops
    /// this cannot see (through another service) end at the hop limit.
    fn refuse_own_entrypoint(&self, url: &str, template: Option<&str>) -> ServiceResult<()> {
        let Ok(parsed) = url::Url::parse(url) else {
            return Ok(());
        };
        let path = match template {
            // The placeholders render as nothing here: only the fixed text is known now.
            Some(t) => routing::render_path(
                t,
                &routing::TemplateVars {
                    original_path: "",
                    event_id: Uuid::nil(),
                    headers: &[],
                },
            ),
            None => parsed.path().to_string(),
        };
        let path = path.split(['?', '#']).next().unwrap_or_default();
        let own = crate::ingest::entrypoint_id_in_path(path)
            .is_some_and(|id| self.store.catalog().entrypoint(id).is_some());
        if own {
            return Err(ServiceError::invalid(
                "url",
                "points at one of this server's own entrypoints: every event would come back as a new event (a delivery loop)",
            ));
        }
        Ok(())
    }

    async fn check_target_url(&self, url: &str) -> ServiceResult<String> {
        if url.len() > MAX_URL {
            return Err(ServiceError::invalid(
                "url",
                format!("at most {MAX_URL} characters"),
            ));
        }
        match self.policy.check_url(url).await {
            Ok(parsed) => Ok(parsed.into()),
            Err(crate::delivery::ssrf::SsrfError::BadUrl(_)) => Err(ServiceError::invalid(
                "url",
                "must be an absolute http:// or https:// URL",
            )),
            Err(e) => Err(ServiceError::TargetRefused(e)),
        }
    }
}

/// `Ok` when the row the store was to change (or the webhook it belongs to) was there;
/// `NotFound(what)` when it had been deleted meanwhile.
fn found(done: bool, what: &'static str) -> ServiceResult<()> {
    if done {
        Ok(())
    } else {
        Err(ServiceError::NotFound(what))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn retry_limits_parse() {
        assert_eq!(parse_retry_limit("0").unwrap(), RetryLimit::Limited(0));
        assert_eq!(parse_retry_limit(" 12 ").unwrap(), RetryLimit::Limited(12));
        assert_eq!(
            parse_retry_limit("Unlimited").unwrap(),
            RetryLimit::Unlimited
        );
        assert_eq!(parse_retry_limit("-1").unwrap(), RetryLimit::Unlimited);
        assert!(parse_retry_limit("lots").is_err());
        assert!(parse_retry_limit("-5").is_err());
    }

    #[test]
    fn a_verification_input_prints_without_its_secrets() {
        let input = VerificationInput {
            kind: "basic".into(),
            secret: Some("s3cret-one".into()),
            token: Some("s3cret-two".into()),
            name: Some("X-Api-Key".into()),
            value: Some("s3cret-three".into()),
            username: Some("sender".into()),
            password: Some("s3cret-four".into()),
        };
        let printed = format!(
            "{input:?} {:?}",
            WebhookInput {
                verification: Some(input.clone()),
                ..WebhookInput::default()
            }
        );
        assert!(!printed.contains("s3cret"), "{printed}");
        assert!(
            printed.contains("X-Api-Key") && printed.contains("sender"),
            "{printed}"
        );
    }
}
