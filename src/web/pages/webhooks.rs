//! Webhook pages: list, new, detail (entrypoints, targets, recent events), edit, delete.

use std::collections::HashMap;
use std::sync::Arc;

use askama::Template;
use askama_web::WebTemplate;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use serde::Deserialize;
use serde_json::{Value, json};
use uuid::Uuid;

use super::auth::Empty;
use super::view::{BodyView, EventRow, When, bytes_text, target_settings};
use super::{Ctx, FormError, PagePath, PageResult, Viewer, parse_u32, redirect_with};
use crate::delivery::BreakerStatus;
use crate::ingest::{KEPT_BODY_BYTES, RejectedRequest};
use crate::model::{Entrypoint, RetryLimit, Target, TargetKind, Verification, Webhook};
use crate::routing::{DedupeSource, MAX_CONDITIONS, is_token_byte};
use crate::service::{
    DEFAULT_RETENTION_DAYS, Service, TargetHealthView, TargetInput, VerificationInput,
    WebhookInput, parse_retry_limit,
};
use crate::web::auth::AuthForm;
use crate::web::{AppState, public_base};

/// Events shown on the detail page.
const RECENT_EVENTS: usize = 10;

// ---------- list ----------

struct WebhookRow {
    id: Uuid,
    name: String,
    description: String,
    entrypoints: usize,
    targets: usize,
    events: u64,
    created: When,
    /// Targets with a failed attempt in the last 24 hours.
    failing: usize,
    /// Targets whose breaker is open.
    open_breakers: usize,
    /// Paused targets.
    paused: usize,
}

#[derive(Template, WebTemplate)]
#[template(path = "webhooks.html")]
struct ListPage {
    ctx: Ctx,
    webhooks: Vec<WebhookRow>,
}

/// GET /webhooks
pub(super) async fn list(viewer: Viewer, State(service): State<Service>) -> PageResult<Response> {
    let webhooks = service
        .list_webhooks()
        .await?
        .into_iter()
        .map(|s| WebhookRow {
            id: s.webhook.id,
            name: s.webhook.name.clone(),
            description: s.webhook.description.clone(),
            entrypoints: s.entrypoints,
            targets: s.targets,
            events: s.events,
            created: When::at(s.webhook.created_at),
            failing: s.failing_targets,
            open_breakers: s.open_breakers,
            paused: s.paused_targets,
        })
        .collect();
    Ok(ListPage {
        ctx: viewer.ctx("webhooks"),
        webhooks,
    }
    .into_response())
}

// ---------- new / edit ----------

/// The webhook form. Secrets are never filled in: a secret field left empty keeps the
/// current secret (when the kind stays), so the page need not carry them.
#[derive(Deserialize, Default, Clone)]
#[serde(default)]
pub(super) struct WebhookForm {
    name: String,
    description: String,
    retention_days: String,
    /// Empty (a form without the section): verification unchanged.
    verification_kind: String,
    verification_secret: String,
    verification_token: String,
    verification_name: String,
    verification_value: String,
    verification_username: String,
    verification_password: String,
    /// `off`, `header` or `json`; empty (a form without the section): unchanged.
    dedupe_source: String,
    /// The header name or JSON Pointer.
    dedupe_key: String,
    dedupe_window_secs: String,
}

impl WebhookForm {
    fn of(w: &Webhook) -> WebhookForm {
        let (name, username) = match &w.verification {
            Verification::Header { name, .. } => (name.clone(), String::new()),
            Verification::Basic { username, .. } => (String::new(), username.clone()),
            _ => (String::new(), String::new()),
        };
        WebhookForm {
            name: w.name.clone(),
            description: w.description.clone(),
            retention_days: w.retention_days.to_string(),
            verification_kind: w.verification.kind().to_string(),
            verification_name: name,
            verification_username: username,
            dedupe_source: match w.dedupe.as_ref().map(|d| &d.source) {
                None => "off".into(),
                Some(DedupeSource::Header(_)) => "header".into(),
                Some(DedupeSource::Json(_)) => "json".into(),
            },
            dedupe_key: match w.dedupe.as_ref().map(|d| &d.source) {
                None => String::new(),
                Some(DedupeSource::Header(h) | DedupeSource::Json(h)) => h.clone(),
            },
            dedupe_window_secs: w
                .dedupe
                .as_ref()
                .map(|d| d.window_secs.to_string())
                .unwrap_or_default(),
            ..WebhookForm::default()
        }
    }

    /// The dedupe setting the form asks for: `None` unchanged, `Some(null)` off.
    fn dedupe(&self) -> Result<Option<Value>, FormError> {
        let source = self.dedupe_source.trim();
        if source.is_empty() {
            return Ok(None);
        }
        if source == "off" {
            return Ok(Some(Value::Null));
        }
        if source != "header" && source != "json" {
            return Err(FormError::new(
                "dedupe",
                "Choose off, a header or a JSON Pointer.",
            ));
        }
        let mut v = serde_json::Map::new();
        v.insert(source.into(), Value::from(self.dedupe_key.trim()));
        if let Some(w) = parse_u32("dedupe_window_secs", &self.dedupe_window_secs)? {
            v.insert("window_secs".into(), Value::from(w));
        }
        Ok(Some(Value::Object(v)))
    }

    fn input(&self) -> Result<WebhookInput, FormError> {
        let text = |s: &str| Some(s.to_string()).filter(|s| !s.is_empty());
        let verification = (!self.verification_kind.is_empty()).then(|| VerificationInput {
            kind: self.verification_kind.clone(),
            secret: text(&self.verification_secret),
            token: text(&self.verification_token),
            name: text(&self.verification_name),
            value: text(&self.verification_value),
            username: text(&self.verification_username),
            password: text(&self.verification_password),
        });
        Ok(WebhookInput {
            name: Some(self.name.clone()),
            description: Some(self.description.clone()),
            retention_days: parse_u32("retention_days", &self.retention_days)?,
            verification,
            dedupe: self.dedupe()?,
        })
    }

    /// Whether `kind` is the one selected.
    fn is_kind(&self, kind: &str) -> bool {
        self.kind() == kind
    }

    /// Whether the selected kind is one of those with a single shared secret field.
    fn uses_secret(&self) -> bool {
        matches!(
            self.kind(),
            "github" | "gitea" | "stripe" | "slack" | "standard_webhooks"
        )
    }

    /// The kind the form shows selected.
    fn kind(&self) -> &str {
        if self.verification_kind.is_empty() {
            "none"
        } else {
            &self.verification_kind
        }
    }
}

#[derive(Template, WebTemplate)]
#[template(path = "webhook_form.html")]
struct FormPage {
    ctx: Ctx,
    /// The webhook being edited; `None` on the new page.
    editing: Option<Arc<Webhook>>,
    form: WebhookForm,
    error: Option<FormError>,
}

impl FormPage {
    fn action(&self) -> String {
        match &self.editing {
            Some(w) => format!("/webhooks/{}/edit", w.id),
            None => "/webhooks/new".into(),
        }
    }

    fn has_error(&self, field: &str) -> bool {
        self.error.as_ref().is_some_and(|e| e.field == field)
    }

    /// The verification kinds the form offers: (value, label).
    fn kinds(&self) -> &'static [(&'static str, &'static str)] {
        &VERIFICATION_KINDS
    }

    /// Whether the webhook being edited already has a secret of this kind, which an empty
    /// field keeps.
    fn keeps_secret(&self, kind: &str) -> bool {
        self.editing
            .as_ref()
            .is_some_and(|w| w.verification.kind() == kind && kind != "none")
    }
}

/// The verification kinds offered by the form: (value, label).
pub(super) const VERIFICATION_KINDS: [(&str, &str); 9] = [
    ("none", "None — the URL is the only credential"),
    ("github", "GitHub — X-Hub-Signature-256"),
    ("gitea", "Gitea / Forgejo — X-Gitea-Signature"),
    ("gitlab", "GitLab — X-Gitlab-Token"),
    ("stripe", "Stripe — Stripe-Signature"),
    ("slack", "Slack — X-Slack-Signature"),
    (
        "standard_webhooks",
        "Standard Webhooks / Svix — webhook-signature",
    ),
    ("header", "Static header"),
    ("basic", "HTTP Basic"),
];

fn form_error(
    ctx: Ctx,
    editing: Option<Arc<Webhook>>,
    form: WebhookForm,
    e: FormError,
) -> Response {
    let page = FormPage {
        ctx,
        editing,
        form,
        error: Some(e),
    };
    (StatusCode::UNPROCESSABLE_ENTITY, page).into_response()
}

/// GET /webhooks/new
pub(super) async fn new_form(viewer: Viewer) -> Response {
    FormPage {
        ctx: viewer.ctx("webhooks"),
        editing: None,
        form: WebhookForm {
            retention_days: DEFAULT_RETENTION_DAYS.to_string(),
            ..WebhookForm::default()
        },
        error: None,
    }
    .into_response()
}

/// POST /webhooks/new
pub(super) async fn create(
    State(service): State<Service>,
    AuthForm { user, form }: AuthForm<WebhookForm>,
) -> PageResult<Response> {
    let ctx = Ctx::for_user(&user, "webhooks");
    let input = match form.input() {
        Ok(i) => i,
        Err(e) => return Ok(form_error(ctx, None, form, e)),
    };
    match service.create_webhook(input).await {
        Ok(view) => Ok(redirect_with(
            &format!("/webhooks/{}", view.webhook.id),
            "success",
            format!(
                "Created webhook “{}”. Send requests to its entrypoint URL below.",
                view.webhook.name
            ),
        )),
        Err(e) => Ok(form_error(ctx, None, form, FormError::from_service(e)?)),
    }
}

/// GET /webhooks/{id}/edit
pub(super) async fn edit_form(
    viewer: Viewer,
    State(service): State<Service>,
    PagePath(id): PagePath<Uuid>,
) -> PageResult<Response> {
    let view = service.webhook(id).await?;
    Ok(FormPage {
        ctx: viewer.ctx("webhooks"),
        form: WebhookForm::of(&view.webhook),
        editing: Some(view.webhook),
        error: None,
    }
    .into_response())
}

/// POST /webhooks/{id}/edit
pub(super) async fn update(
    State(service): State<Service>,
    PagePath(id): PagePath<Uuid>,
    AuthForm { user, form }: AuthForm<WebhookForm>,
) -> PageResult<Response> {
    let ctx = Ctx::for_user(&user, "webhooks");
    let result = match form.input() {
        Ok(input) => service.update_webhook(id, input).await,
        Err(e) => {
            let editing = service.webhook(id).await?.webhook;
            return Ok(form_error(ctx, Some(editing), form, e));
        }
    };
    match result {
        Ok(view) => Ok(redirect_with(
            &format!("/webhooks/{id}"),
            "success",
            format!("Saved webhook “{}”.", view.webhook.name),
        )),
        Err(e) => {
            let e = FormError::from_service(e)?;
            let editing = service.webhook(id).await?.webhook;
            Ok(form_error(ctx, Some(editing), form, e))
        }
    }
}

/// POST /webhooks/{id}/delete
pub(super) async fn delete(
    State(service): State<Service>,
    PagePath(id): PagePath<Uuid>,
    _: AuthForm<Empty>,
) -> PageResult<Response> {
    service.delete_webhook(id).await?;
    Ok(redirect_with(
        "/webhooks",
        "success",
        "The webhook and all its events were deleted.",
    ))
}

// ---------- detail ----------

struct EntrypointRow {
    ep: Arc<Entrypoint>,
    url: String,
    created: When,
}

struct TargetRow {
    t: Arc<Target>,
    url: Option<String>,
    settings: Vec<(&'static str, String)>,
    /// http targets: their Standard Webhooks signing.
    signing: Option<SigningRow>,
    health: HealthRow,
    /// The edit form, prefilled (with what was submitted, after a refused edit).
    form: TargetForm,
    /// Why the last edit was refused: the edit form is shown open, with the message.
    edit_error: Option<FormError>,
    /// Its filter and transform in words (header values left out: they may be secret).
    routing: Vec<(&'static str, String)>,
}

impl TargetRow {
    /// Whether the refused edit names `field`.
    fn edit_has_error(&self, field: &str) -> bool {
        self.edit_error.as_ref().is_some_and(|e| e.field == field)
    }
}

/// A target edit that was refused, to show again in its row's edit form.
struct RefusedEdit {
    target_id: Uuid,
    /// What was submitted.
    form: TargetForm,
    error: FormError,
}

/// A target's health for its row.
struct HealthRow {
    /// Since when it is paused.
    paused: Option<When>,
    /// Waiting for a first attempt (the backlog).
    waiting: u64,
    /// Attempted, another attempt due.
    retrying: u64,
    /// Gave up.
    failed: u64,
    /// The latest attempt: success, what it got, when.
    last: Option<LastAttempt>,
    /// `Some(Some(until))` while the breaker is open (shown in the browser's time zone,
    /// like other absolute times); `Some(None)` while half-open.
    breaker: Option<Option<When>>,
}

/// One attempt's result in a line.
struct LastAttempt {
    success: bool,
    /// "HTTP 404", "connection refused", "delivered".
    what: String,
    at: When,
}

impl HealthRow {
    /// Whether the latest attempt failed.
    fn last_failed(&self) -> bool {
        self.last.as_ref().is_some_and(|l| !l.success)
    }

    fn of(h: &TargetHealthView) -> HealthRow {
        let breaker = h.engine.and_then(|e| match e.breaker {
            BreakerStatus::Closed => None,
            BreakerStatus::Open { until } => Some(Some(When::at(until))),
            BreakerStatus::HalfOpen => Some(None),
        });
        HealthRow {
            paused: h.paused_since.map(When::at),
            waiting: h.counts.pending,
            retrying: h.counts.retrying,
            failed: h.counts.failed,
            last: h.counts.last.as_ref().map(|r| LastAttempt {
                success: r.success,
                what: match (r.status_code, &r.error) {
                    (Some(code), _) => format!("HTTP {code}"),
                    (None, Some(e)) => e.chars().take(80).collect(),
                    (None, None) if r.success => "delivered".into(),
                    (None, None) => "failed".into(),
                },
                at: When::at(r.started_at),
            }),
            breaker,
        }
    }
}

/// A target's filter and transform, for its row.
fn routing_rows(t: &Target) -> Vec<(&'static str, String)> {
    let mut rows = Vec::new();
    if let Some(f) = &t.filter {
        rows.push(("Filter", f.to_json().to_string()));
    }
    if let TargetKind::Http(h) = &t.kind {
        let tr = &h.transform;
        if !tr.set_headers.is_empty() {
            let names: Vec<&str> = tr.set_headers.iter().map(|(n, _)| n.as_str()).collect();
            rows.push(("Sets", names.join(", ")));
        }
        if !tr.remove_headers.is_empty() {
            rows.push(("Removes", tr.remove_headers.join(", ")));
        }
        if let Some(p) = &tr.path {
            rows.push(("Path", p.clone()));
        }
    }
    rows
}

/// How an http target signs, for its row.
struct SigningRow {
    enabled: bool,
    /// `whsec_…`, shown masked until revealed.
    secret: String,
    /// Until when the secret replaced by the last rotation still signs too.
    previous_until: Option<When>,
}

impl SigningRow {
    fn of(t: &Target, now: i64) -> Option<SigningRow> {
        let TargetKind::Http(h) = &t.kind else {
            return None;
        };
        Some(SigningRow {
            enabled: h.signing.enabled,
            secret: h.signing.secret.to_whsec(),
            previous_until: h
                .signing
                .previous
                .as_ref()
                .filter(|(_, until)| *until > now)
                .map(|(_, until)| When::at(*until)),
        })
    }
}

/// The webhook's verification, for its card.
struct VerificationView {
    kind: &'static str,
    /// What the sender sends, in a few words.
    summary: &'static str,
    /// (label, value) of its settings that are not secret.
    settings: Vec<(&'static str, String)>,
    /// (label, value) of its secrets, shown masked until revealed.
    secrets: Vec<(&'static str, String)>,
}

impl VerificationView {
    fn of(v: &Verification) -> VerificationView {
        let (summary, settings, secrets): (&'static str, Vec<(&'static str, String)>, _) = match v {
            Verification::None => (
                "Anyone who knows an entrypoint URL can send.",
                vec![],
                vec![],
            ),
            Verification::Github { secret } => (
                "X-Hub-Signature-256: sha256=HMAC-SHA256 of the body",
                vec![],
                vec![("Secret", secret.expose().to_string())],
            ),
            Verification::Gitea { secret } => (
                "X-Gitea-Signature: HMAC-SHA256 of the body",
                vec![],
                vec![("Secret", secret.expose().to_string())],
            ),
            Verification::Gitlab { token } => (
                "X-Gitlab-Token equal to the token",
                vec![],
                vec![("Token", token.expose().to_string())],
            ),
            Verification::Stripe { secret } => (
                "Stripe-Signature, timestamp within 5 minutes",
                vec![],
                vec![("Signing secret", secret.expose().to_string())],
            ),
            Verification::Slack { secret } => (
                "X-Slack-Signature, timestamp within 5 minutes",
                vec![],
                vec![("Signing secret", secret.expose().to_string())],
            ),
            Verification::StandardWebhooks { secret } => (
                "webhook-signature (or svix-signature), timestamp within 5 minutes",
                vec![],
                vec![("Secret", secret.to_whsec())],
            ),
            Verification::Header { name, value } => (
                "A static header with a fixed value",
                vec![("Header", name.clone())],
                vec![("Value", value.expose().to_string())],
            ),
            Verification::Basic { username, password } => (
                "HTTP Basic credentials",
                vec![("Username", username.clone())],
                vec![("Password", password.expose().to_string())],
            ),
        };
        let kind = match v {
            Verification::None => "none",
            Verification::Github { .. } => "GitHub",
            Verification::Gitea { .. } => "Gitea / Forgejo",
            Verification::Gitlab { .. } => "GitLab",
            Verification::Stripe { .. } => "Stripe",
            Verification::Slack { .. } => "Slack",
            Verification::StandardWebhooks { .. } => "Standard Webhooks",
            Verification::Header { .. } => "static header",
            Verification::Basic { .. } => "HTTP Basic",
        };
        VerificationView {
            kind,
            summary,
            settings,
            secrets,
        }
    }
}

/// A request the webhook's verification refused, for the detail page.
struct RejectedRow {
    received: When,
    client: String,
    reason: String,
    method: String,
    headers: Vec<(String, String)>,
    headers_truncated: bool,
    body: BodyView,
}

impl RejectedRow {
    fn of(r: &RejectedRequest) -> RejectedRow {
        let content_type = r
            .headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case("content-type"))
            .map(|(_, v)| bytes_text(v));
        let mut body = BodyView::new(&r.body, content_type.as_deref(), KEPT_BODY_BYTES);
        // Only the start was kept; the size shown is the real one.
        body.len = r.body_len;
        RejectedRow {
            received: When::at(r.at),
            client: r.client.clone(),
            reason: r.reason.to_string(),
            method: r.method.clone(),
            headers: r
                .headers
                .iter()
                .map(|(n, v)| (n.clone(), bytes_text(v)))
                .collect(),
            headers_truncated: r.headers_truncated,
            body,
        }
    }
}

/// Values of the add-target form (kept when it is re-rendered with an error).
#[derive(Deserialize, Clone)]
#[serde(default)]
pub(super) struct TargetForm {
    name: String,
    kind: String,
    url: String,
    timeout_secs: String,
    max_retries: String,
    max_backoff_secs: String,
    max_in_flight: String,
    /// `on` (the default when absent) or `off`.
    signing: String,
    /// `all` or `any`.
    filter_mode: String,
    /// http: one `Name: value` per line.
    transform_set_headers: String,
    /// http: names separated by commas, spaces or lines.
    transform_remove_headers: String,
    /// http: path template.
    transform_path: String,
    /// http, edit form: `on` to drop the headers the target sets (an empty
    /// `transform_set_headers` keeps them: their values are never shown).
    transform_clear_set: String,
    /// Edit form: `1` when it shows the filter rows (and, for http, the transform); a
    /// post without it leaves them as they are rather than clearing them.
    edits_routing: String,
    /// The filter's rows: `cond{i}_on` (`method`, `header`, `json` or empty for an unused
    /// row), `cond{i}_key` (header name or JSON Pointer), `cond{i}_op`, `cond{i}_value`.
    #[serde(flatten)]
    rows: HashMap<String, String>,
}

/// Condition rows the add-target form offers (the API takes up to
/// `routing::MAX_CONDITIONS`).
pub(super) const FORM_CONDITION_ROWS: usize = 5;

impl Default for TargetForm {
    fn default() -> TargetForm {
        TargetForm {
            name: String::new(),
            kind: "http".into(),
            url: String::new(),
            timeout_secs: String::new(),
            max_retries: String::new(),
            max_backoff_secs: String::new(),
            max_in_flight: String::new(),
            signing: "on".into(),
            filter_mode: "all".into(),
            transform_set_headers: String::new(),
            transform_remove_headers: String::new(),
            transform_path: String::new(),
            transform_clear_set: String::new(),
            edits_routing: String::new(),
            rows: HashMap::new(),
        }
    }
}

impl TargetForm {
    /// The form of an existing target, for editing it.
    fn of(t: &Target) -> TargetForm {
        let mut form = TargetForm {
            name: t.name.clone(),
            kind: t.kind.name().into(),
            edits_routing: "1".into(),
            ..TargetForm::default()
        };
        match &t.kind {
            TargetKind::Http(h) => {
                form.url = h.url.clone();
                form.timeout_secs = h.timeout_secs.to_string();
                form.max_retries = match h.max_retries {
                    RetryLimit::Unlimited => "unlimited".into(),
                    RetryLimit::Limited(n) => n.to_string(),
                };
                form.max_backoff_secs = h.max_backoff_secs.to_string();
                form.max_in_flight = h.max_in_flight.to_string();
                // Set headers' values may be credentials: the form shows neither them nor
                // their names here (the target's row lists the names), and keeps them
                // unless told otherwise.
                form.transform_remove_headers = h.transform.remove_headers.join(", ");
                form.transform_path = h.transform.path.clone().unwrap_or_default();
            }
            TargetKind::Slack(sl) => form.url = sl.url.clone(),
            TargetKind::Log | TargetKind::Database => {}
        }
        if let Some(filter) = &t.filter {
            form.fill_filter(&filter.to_json());
        }
        form
    }

    /// Fills the condition rows from a filter in the API's shape, as [`filter`](Self::filter)
    /// would read them back.
    fn fill_filter(&mut self, filter: &Value) {
        let Some((mode, list)) = filter.as_object().and_then(|o| o.iter().next()) else {
            return;
        };
        self.filter_mode = mode.clone();
        for (i, c) in list.as_array().into_iter().flatten().enumerate() {
            let Some(c) = c.as_object() else { continue };
            let mut row = |field: &str, value: String| {
                self.rows.insert(format!("cond{i}_{field}"), value);
            };
            if let Some(m) = c.get("method").and_then(Value::as_str) {
                row("on", "method".into());
                row("value", m.into());
                continue;
            }
            let json_body = c.contains_key("json");
            let on = if json_body { "json" } else { "header" };
            row("on", on.into());
            row(
                "key",
                c.get(on).and_then(Value::as_str).unwrap_or_default().into(),
            );
            if let Some((op, arg)) = c.iter().find(|(k, _)| k.as_str() != on) {
                row("op", op.clone());
                row("value", form_value(json_body, arg));
            }
        }
    }

    /// The change an edit of `current` makes: the fields of the target's kind (empty
    /// numbers keep their value); neither its kind, signing nor active flag. The rows are
    /// the whole filter (none used: no filter). An http target's transform is the form's,
    /// except that an empty "headers to set" keeps the ones `current` sets, unless the
    /// form asks to drop them. A post without `edits_routing` changes neither.
    fn edit_input(&self, current: &Target) -> Result<TargetInput, FormError> {
        let full = self.input()?;
        let has_url = matches!(self.kind.as_str(), "http" | "slack");
        let routing = self.edits_routing == "1";
        let transform = match (&current.kind, full.transform) {
            (TargetKind::Http(h), Some(mut t)) if routing => {
                let keep = self.transform_set_headers.trim().is_empty()
                    && self.transform_clear_set != "on";
                if keep {
                    t["set_headers"] = h.transform.to_json()["set_headers"].take();
                }
                Some(t)
            }
            _ => None,
        };
        Ok(TargetInput {
            kind: None,
            url: full.url.filter(|_| has_url),
            signing: None,
            active: None,
            filter: routing.then(|| full.filter.unwrap_or(Value::Null)),
            transform,
            ..full
        })
    }

    fn input(&self) -> Result<TargetInput, FormError> {
        let max_retries = match self.max_retries.trim() {
            "" => None,
            raw => Some(parse_retry_limit(raw).map_err(|_| {
                FormError::new(
                    "max_retries",
                    "Max retries must be a number of retries or “unlimited”.",
                )
            })?),
        };
        Ok(TargetInput {
            name: Some(self.name.clone()),
            kind: Some(self.kind.clone()),
            url: Some(self.url.clone()),
            timeout_secs: parse_u32("timeout_secs", &self.timeout_secs)?,
            max_retries,
            max_backoff_secs: parse_u32("max_backoff_secs", &self.max_backoff_secs)?,
            max_in_flight: parse_u32("max_in_flight", &self.max_in_flight)?,
            signing: Some(self.signing != "off"),
            active: Some(true),
            filter: self.filter()?,
            transform: (self.kind == "http")
                .then(|| self.transform())
                .transpose()?,
        })
    }

    /// A field of condition row `i` (`on`, `key`, `op` or `value`), as entered.
    fn cond(&self, i: &usize, field: &str) -> &str {
        self.rows
            .get(&format!("cond{i}_{field}"))
            .map_or("", String::as_str)
    }

    /// The row indexes, for the template and the parse: at least
    /// [`FORM_CONDITION_ROWS`], and one empty row after the last used one, up to the
    /// API's `routing::MAX_CONDITIONS` (a filter set through the API keeps all its
    /// conditions when edited here).
    fn cond_rows(&self) -> std::ops::Range<usize> {
        let used = (0..MAX_CONDITIONS)
            .rev()
            .find(|i| !self.cond(i, "on").is_empty())
            .map_or(0, |last| last + 2);
        0..used.clamp(FORM_CONDITION_ROWS, MAX_CONDITIONS)
    }

    /// The filter the rows describe, in the API's shape (checked by the service): `None`
    /// when no row is used.
    fn filter(&self) -> Result<Option<Value>, FormError> {
        let mut conditions = Vec::new();
        for i in self.cond_rows() {
            let (on, key, op, value) = (
                self.cond(&i, "on").trim(),
                self.cond(&i, "key").trim(),
                self.cond(&i, "op").trim(),
                self.cond(&i, "value").trim(),
            );
            let cond = match on {
                "" => continue,
                "method" => json!({ "method": value }),
                "header" | "json" => {
                    let arg = form_argument(on == "json", op, value);
                    let mut c = serde_json::Map::new();
                    c.insert(on.into(), Value::from(key));
                    c.insert(op.into(), arg);
                    Value::Object(c)
                }
                _ => return Err(FormError::new("filter", "Unknown condition kind.")),
            };
            conditions.push(cond);
        }
        if conditions.is_empty() {
            return Ok(None);
        }
        let mode = if self.filter_mode == "any" {
            "any"
        } else {
            "all"
        };
        Ok(Some(json!({ mode: conditions })))
    }

    /// The transform the http fields describe, in the API's shape.
    fn transform(&self) -> Result<Value, FormError> {
        let mut set = serde_json::Map::new();
        for (n, line) in self.transform_set_headers.lines().enumerate() {
            let line = line.trim();
            if line.is_empty() {
                continue;
            }
            // The message never quotes the line: its value may be a credential.
            let bad = || {
                FormError::new(
                    "transform",
                    format!(
                        "Line {} of “Headers to set” is not Name: value (one header per line).",
                        n + 1
                    ),
                )
            };
            let (name, value) = line.split_once(':').ok_or_else(bad)?;
            let name = name.trim();
            if name.is_empty() || !name.bytes().all(is_token_byte) {
                return Err(bad());
            }
            set.insert(name.to_string(), Value::from(value.trim()));
        }
        let remove: Vec<&str> = self
            .transform_remove_headers
            .split(|c: char| c == ',' || c.is_whitespace())
            .filter(|n| !n.is_empty())
            .collect();
        Ok(json!({
            "set_headers": set,
            "remove_headers": remove,
            "path": self.transform_path.trim(),
        }))
    }
}

/// The text of a condition's argument in its row, which [`form_argument`] reads back as
/// the same value: `in` lists joined with commas; a JSON string that would read as
/// another scalar (`"5"`, `"true"`) quoted.
fn form_value(json_body: bool, arg: &Value) -> String {
    let one = |v: &Value| match v {
        Value::String(text) => {
            let misread = json_body
                && (text.trim() != text
                    || serde_json::from_str::<Value>(text.trim())
                        .is_ok_and(|p| !p.is_object() && !p.is_array()));
            if misread { v.to_string() } else { text.clone() }
        }
        other => other.to_string(),
    };
    match arg {
        // A list whose values hold commas is shown as a JSON array, which reads back whole.
        Value::Array(items)
            if items
                .iter()
                .any(|i| i.as_str().is_some_and(|t| t.contains(','))) =>
        {
            arg.to_string()
        }
        Value::Array(items) => items.iter().map(one).collect::<Vec<_>>().join(", "),
        other => one(other),
    }
}

/// A condition row's value as the API takes it: `in` splits at commas; for the JSON body,
/// each value is read as JSON when it is a JSON scalar (`5`, `true`, `"x"`) and as text
/// otherwise; `exists` is `true` unless the value says no.
fn form_argument(json_body: bool, op: &str, value: &str) -> Value {
    let one = |v: &str| {
        let v = v.trim();
        if json_body {
            match serde_json::from_str::<Value>(v) {
                Ok(parsed) if !parsed.is_object() && !parsed.is_array() => parsed,
                _ => Value::from(v),
            }
        } else {
            Value::from(v)
        }
    };
    match op {
        "exists" => Value::Bool(!matches!(
            value.to_ascii_lowercase().as_str(),
            "false" | "no" | "0" | "absent"
        )),
        "in" => match serde_json::from_str::<Vec<Value>>(value.trim()) {
            // `["a,b", "c"]`: values that hold commas.
            Ok(list) if value.trim_start().starts_with('[') => Value::Array(list),
            _ => Value::Array(value.split(',').map(one).collect()),
        },
        _ => one(value),
    }
}

#[derive(Template, WebTemplate)]
#[template(path = "webhook_detail.html")]
struct DetailPage {
    ctx: Ctx,
    webhook: Arc<Webhook>,
    created: When,
    entrypoints: Vec<EntrypointRow>,
    targets: Vec<TargetRow>,
    events: Vec<EventRow>,
    event_total: u64,
    /// Deliveries counted for the targets' health, and whether that was all of them.
    health_counted: usize,
    health_complete: bool,
    target_form: TargetForm,
    target_error: Option<FormError>,
    verification: VerificationView,
    rejected: Vec<RejectedRow>,
}

impl DetailPage {
    fn target_has_error(&self, field: &str) -> bool {
        self.target_error.as_ref().is_some_and(|e| e.field == field)
    }
}

/// Everything the detail page shows, for GET and for a re-rendered add-target or edit form.
async fn detail_page(
    state: &AppState,
    headers: &HeaderMap,
    ctx: Ctx,
    id: Uuid,
    target_form: TargetForm,
    target_error: Option<FormError>,
    mut refused_edit: Option<RefusedEdit>,
) -> PageResult<DetailPage> {
    let service = &state.service;
    let view = service.webhook(id).await?;
    // Small bodies come along: a JSON body's `type` names the event.
    let recent = service
        .list_events(id, 1, RECENT_EVENTS, crate::store::INLINE_BODY_BYTES)
        .await?;
    let health = service.target_health(id).await?;
    let base = public_base(&state.web, headers);
    let now = crate::model::now_ms();
    Ok(DetailPage {
        ctx,
        created: When::at(view.webhook.created_at),
        entrypoints: view
            .entrypoints
            .iter()
            .map(|ep| EntrypointRow {
                url: format!("{base}/webhook/{}", ep.id),
                created: When::at(ep.created_at),
                ep: ep.clone(),
            })
            .collect(),
        targets: health
            .targets
            .iter()
            .map(|h| {
                let t = &h.target;
                let (form, edit_error) = match refused_edit.take_if(|e| e.target_id == t.id) {
                    // Rendered as the target's kind, whatever the post claimed.
                    Some(RefusedEdit { form, error, .. }) => (
                        TargetForm {
                            kind: t.kind.name().into(),
                            ..form
                        },
                        Some(error),
                    ),
                    None => (TargetForm::of(t), None),
                };
                TargetRow {
                    url: t.kind.url().map(str::to_string),
                    settings: target_settings(t),
                    signing: SigningRow::of(t, now),
                    health: HealthRow::of(h),
                    form,
                    edit_error,
                    routing: routing_rows(t),
                    t: t.clone(),
                }
            })
            .collect(),
        health_counted: health.counted,
        health_complete: health.complete,
        events: recent
            .events
            .iter()
            .map(|e| EventRow::new(e, &view.targets, 0))
            .collect(),
        event_total: recent.total,
        verification: VerificationView::of(&view.webhook.verification),
        rejected: state
            .ingestor
            .rejected(id)
            .iter()
            .map(|r| RejectedRow::of(r))
            .collect(),
        webhook: view.webhook,
        target_form,
        target_error,
    })
}

/// GET /webhooks/{id}
pub(super) async fn detail(
    viewer: Viewer,
    State(state): State<AppState>,
    headers: HeaderMap,
    PagePath(id): PagePath<Uuid>,
) -> PageResult<Response> {
    let page = detail_page(
        &state,
        &headers,
        viewer.ctx("webhooks"),
        id,
        TargetForm::default(),
        None,
        None,
    )
    .await?;
    // Signing and verification secrets beside sender-controlled event paths.
    Ok(super::uncompressed(page.into_response()))
}

// ---------- entrypoints ----------

#[derive(Deserialize, Default)]
#[serde(default)]
pub(super) struct EntrypointForm {
    description: String,
}

/// POST /webhooks/{id}/entrypoints
pub(super) async fn add_entrypoint(
    State(service): State<Service>,
    PagePath(id): PagePath<Uuid>,
    AuthForm { form, .. }: AuthForm<EntrypointForm>,
) -> PageResult<Response> {
    let back = format!("/webhooks/{id}");
    let description = Some(form.description).filter(|d| !d.trim().is_empty());
    Ok(match service.add_entrypoint(id, description).await {
        Ok(_) => redirect_with(&back, "success", "Added an entrypoint."),
        Err(e) => redirect_with(&back, "error", FormError::from_service(e)?.message),
    })
}

#[derive(Deserialize, Default)]
#[serde(default)]
pub(super) struct ToggleForm {
    /// The state to set (`true` / `false`): idempotent, unlike a flip.
    active: bool,
}

/// POST /webhooks/{id}/entrypoints/{eid}/toggle
pub(super) async fn toggle_entrypoint(
    State(service): State<Service>,
    PagePath((id, eid)): PagePath<(Uuid, Uuid)>,
    AuthForm { form, .. }: AuthForm<ToggleForm>,
) -> PageResult<Response> {
    service
        .update_entrypoint(id, eid, Some(form.active), None)
        .await?;
    let message = if form.active {
        "Entrypoint enabled: it accepts requests again."
    } else {
        "Entrypoint disabled: requests to it now get 410 Gone."
    };
    Ok(redirect_with(
        &format!("/webhooks/{id}"),
        "success",
        message,
    ))
}

/// POST /webhooks/{id}/entrypoints/{eid}/delete
pub(super) async fn delete_entrypoint(
    State(service): State<Service>,
    PagePath((id, eid)): PagePath<(Uuid, Uuid)>,
    _: AuthForm<Empty>,
) -> PageResult<Response> {
    service.delete_entrypoint(id, eid).await?;
    Ok(redirect_with(
        &format!("/webhooks/{id}"),
        "success",
        "Deleted the entrypoint; its URL now answers 404.",
    ))
}

// ---------- targets ----------

/// POST /webhooks/{id}/targets
pub(super) async fn add_target(
    State(state): State<AppState>,
    headers: HeaderMap,
    PagePath(id): PagePath<Uuid>,
    AuthForm { user, form }: AuthForm<TargetForm>,
) -> PageResult<Response> {
    let service = &state.service;
    let error = match form.input() {
        Ok(input) => match service.add_target(id, input).await {
            Ok(t) => {
                return Ok(redirect_with(
                    &format!("/webhooks/{id}"),
                    "success",
                    format!("Added target “{}”. New events are delivered to it.", t.name),
                ));
            }
            Err(e) => FormError::from_service(e)?,
        },
        Err(e) => e,
    };
    let ctx = Ctx::for_user(&user, "webhooks");
    let page = detail_page(&state, &headers, ctx, id, form, Some(error), None).await?;
    Ok(super::uncompressed(
        (StatusCode::UNPROCESSABLE_ENTITY, page).into_response(),
    ))
}

/// POST /webhooks/{id}/targets/{tid}/toggle
pub(super) async fn toggle_target(
    State(service): State<Service>,
    PagePath((id, tid)): PagePath<(Uuid, Uuid)>,
    AuthForm { form, .. }: AuthForm<ToggleForm>,
) -> PageResult<Response> {
    let input = TargetInput {
        active: Some(form.active),
        ..TargetInput::default()
    };
    let t = service.update_target(id, tid, input).await?;
    let message = if form.active {
        format!("Target “{}” enabled.", t.name)
    } else {
        format!("Target “{}” disabled: new events skip it.", t.name)
    };
    Ok(redirect_with(
        &format!("/webhooks/{id}"),
        "success",
        message,
    ))
}

/// POST /webhooks/{id}/targets/{tid}/delete
pub(super) async fn delete_target(
    State(service): State<Service>,
    PagePath((id, tid)): PagePath<(Uuid, Uuid)>,
    _: AuthForm<Empty>,
) -> PageResult<Response> {
    service.delete_target(id, tid).await?;
    Ok(redirect_with(
        &format!("/webhooks/{id}"),
        "success",
        "Deleted the target.",
    ))
}

#[derive(Deserialize, Default)]
#[serde(default)]
pub(super) struct PauseForm {
    /// The state to set (`true` / `false`).
    paused: bool,
}

/// POST /webhooks/{id}/targets/{tid}/pause
pub(super) async fn pause_target(
    State(service): State<Service>,
    PagePath((id, tid)): PagePath<(Uuid, Uuid)>,
    AuthForm { form, .. }: AuthForm<PauseForm>,
) -> PageResult<Response> {
    let t = service.set_target_paused(id, tid, form.paused).await?;
    let message = if form.paused {
        format!(
            "Target “{}” paused: its deliveries wait, unattempted, until you resume it.",
            t.name
        )
    } else {
        format!(
            "Target “{}” resumed: waiting deliveries go out oldest first.",
            t.name
        )
    };
    Ok(redirect_with(
        &format!("/webhooks/{id}#target-{tid}"),
        "success",
        message,
    ))
}

/// POST /webhooks/{id}/targets/{tid}/edit: the target's settings from its edit form. A
/// refused edit shows the page again (422) with the form as submitted, open, and why.
pub(super) async fn edit_target(
    State(state): State<AppState>,
    headers: HeaderMap,
    PagePath((id, tid)): PagePath<(Uuid, Uuid)>,
    AuthForm { user, form }: AuthForm<TargetForm>,
) -> PageResult<Response> {
    let service = &state.service;
    let back = format!("/webhooks/{id}#target-{tid}");
    let current = service.target_of(id, tid)?;
    let error = match form.edit_input(&current) {
        Ok(input) => match service.update_target(id, tid, input).await {
            Ok(t) => {
                return Ok(redirect_with(
                    &back,
                    "success",
                    format!("Saved target “{}”.", t.name),
                ));
            }
            Err(e) => FormError::from_service(e)?,
        },
        Err(e) => e,
    };
    let ctx = Ctx::for_user(&user, "webhooks");
    let refused = RefusedEdit {
        target_id: tid,
        form,
        error,
    };
    let page = detail_page(
        &state,
        &headers,
        ctx,
        id,
        TargetForm::default(),
        None,
        Some(refused),
    )
    .await?;
    Ok(super::uncompressed(
        (StatusCode::UNPROCESSABLE_ENTITY, page).into_response(),
    ))
}

#[derive(Deserialize, Default)]
#[serde(default)]
pub(super) struct SigningForm {
    /// The state to set (`true` / `false`).
    enabled: bool,
}

/// POST /webhooks/{id}/targets/{tid}/signing
pub(super) async fn set_signing(
    State(service): State<Service>,
    PagePath((id, tid)): PagePath<(Uuid, Uuid)>,
    AuthForm { form, .. }: AuthForm<SigningForm>,
) -> PageResult<Response> {
    let input = TargetInput {
        signing: Some(form.enabled),
        ..TargetInput::default()
    };
    let t = service.update_target(id, tid, input).await?;
    let message = if form.enabled {
        format!(
            "Signing on: requests to “{}” carry webhook-id, webhook-timestamp and webhook-signature.",
            t.name
        )
    } else {
        format!(
            "Signing off: requests to “{}” carry no webhook-* headers of ours.",
            t.name
        )
    };
    Ok(redirect_with(
        &format!("/webhooks/{id}"),
        "success",
        message,
    ))
}

/// POST /webhooks/{id}/targets/{tid}/rotate-secret
pub(super) async fn rotate_secret(
    State(service): State<Service>,
    PagePath((id, tid)): PagePath<(Uuid, Uuid)>,
    _: AuthForm<Empty>,
) -> PageResult<Response> {
    let t = service.rotate_signing_secret(id, tid).await?;
    Ok(redirect_with(
        &format!("/webhooks/{id}"),
        "success",
        format!(
            "New signing secret for “{}”. For 24 hours every request carries signatures with the old and the new one.",
            t.name
        ),
    ))
}

/// POST /webhooks/{id}/test-event: a sample event through ingest; then its page, which
/// follows its deliveries live.
pub(super) async fn send_test(
    State(state): State<AppState>,
    PagePath(id): PagePath<Uuid>,
    _: AuthForm<Empty>,
) -> PageResult<Response> {
    state.service.webhook(id).await?;
    Ok(match state.ingestor.send_test(id).await {
        Ok(event_id) => redirect_with(
            &format!("/webhooks/{id}/events/{event_id}"),
            "success",
            "Test event sent. Its deliveries update here as they happen.",
        ),
        Err(crate::ingest::IngestError::NoActiveEntrypoint) => redirect_with(
            &format!("/webhooks/{id}"),
            "error",
            "A test event arrives on an entrypoint: add or enable one first.",
        ),
        Err(e) => return Err(e.into()),
    })
}

#[cfg(test)]
mod tests {
    use serde_json::json;
    use uuid::Uuid;

    use super::*;
    use crate::routing::Filter;

    fn target_with(filter: &Value) -> Target {
        Target {
            id: Uuid::new_v4(),
            webhook_id: Uuid::new_v4(),
            name: "t".into(),
            active: true,
            kind: TargetKind::Log,
            created_at: 0,
            filter: Some(Filter::from_json(filter).unwrap()),
        }
    }

    /// The edit form shows a target's filter in rows that read back as the same filter,
    /// however many conditions the API gave it.
    #[test]
    fn a_filter_round_trips_through_the_edit_form() {
        let filters = [
            json!({"all": [
                {"method": "POST"},
                {"header": "x-github-event", "in": ["push", "release"]},
                {"header": "user-agent", "prefix": "GitHub-Hookshot/"},
                {"header": "x-token", "exists": false},
                {"json": "/action", "equals": "opened"},
                {"json": "/number", "gt": 10.0},
                {"json": "/ref", "in": ["5", "main", true, null, 7.5]},
                {"json": "/draft", "exists": true},
            ]}),
            json!({"any": [{"json": "/count", "lt": 3.0}, {"json": "/flag", "equals": "true"}]}),
            json!({"all": [
                {"header": "x-tags", "in": ["a,b", "c"]},
                {"json": "/ref", "in": [" main", "x,y", 5]},
                {"json": "/name", "equals": " padded "},
            ]}),
        ];
        for filter in filters {
            let t = target_with(&filter);
            let form = TargetForm::of(&t);
            assert!(
                form.cond_rows().len()
                    > filter
                        .as_object()
                        .unwrap()
                        .values()
                        .next()
                        .unwrap()
                        .as_array()
                        .unwrap()
                        .len()
            );
            let input = form.edit_input(&t).unwrap();
            let back = Filter::from_json(input.filter.as_ref().unwrap()).unwrap();
            assert_eq!(
                back.to_json(),
                t.filter.as_ref().unwrap().to_json(),
                "{filter}"
            );
        }
    }

    /// Emptying every row of the edit form removes the filter.
    #[test]
    fn an_emptied_edit_form_removes_the_filter() {
        let t = target_with(&json!({"all": [{"method": "POST"}]}));
        let mut form = TargetForm::of(&t);
        form.rows.clear();
        let input = form.edit_input(&t).unwrap();
        assert_eq!(input.filter, Some(Value::Null));
        assert!(input.transform.is_none(), "a log target has no transform");
    }
}
