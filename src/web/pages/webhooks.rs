//! Webhook pages: list, new, detail (entrypoints, targets, recent events), edit, delete.

use std::sync::Arc;

use askama::Template;
use askama_web::WebTemplate;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use serde::Deserialize;
use uuid::Uuid;

use super::auth::Empty;
use super::view::{EventRow, When, target_settings};
use super::{Ctx, FormError, PagePath, PageResult, Viewer, parse_u32, redirect_with};
use crate::model::{Entrypoint, Target, Webhook};
use crate::service::{
    DEFAULT_RETENTION_DAYS, Service, TargetInput, WebhookInput, parse_retry_limit,
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
        })
        .collect();
    Ok(ListPage {
        ctx: viewer.ctx("webhooks"),
        webhooks,
    }
    .into_response())
}

// ---------- new / edit ----------

#[derive(Deserialize, Default, Clone)]
#[serde(default)]
pub(super) struct WebhookForm {
    name: String,
    description: String,
    retention_days: String,
}

impl WebhookForm {
    fn of(w: &Webhook) -> WebhookForm {
        WebhookForm {
            name: w.name.clone(),
            description: w.description.clone(),
            retention_days: w.retention_days.to_string(),
        }
    }

    fn input(&self) -> Result<WebhookInput, FormError> {
        Ok(WebhookInput {
            name: Some(self.name.clone()),
            description: Some(self.description.clone()),
            retention_days: parse_u32("retention_days", &self.retention_days)?,
            verification: None,
        })
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
}

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
}

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
        }
    }
}

impl TargetForm {
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
            signing: None,
            active: Some(true),
        })
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
    target_form: TargetForm,
    target_error: Option<FormError>,
}

impl DetailPage {
    fn target_has_error(&self, field: &str) -> bool {
        self.target_error.as_ref().is_some_and(|e| e.field == field)
    }
}

/// Everything the detail page shows, for GET and for a re-rendered add-target form.
async fn detail_page(
    service: &Service,
    state: &AppState,
    headers: &HeaderMap,
    ctx: Ctx,
    id: Uuid,
    target_form: TargetForm,
    target_error: Option<FormError>,
) -> PageResult<DetailPage> {
    let view = service.webhook(id).await?;
    let recent = service.list_events(id, 1, RECENT_EVENTS, 0).await?;
    let base = public_base(&state.web, headers);
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
        targets: view
            .targets
            .iter()
            .map(|t| TargetRow {
                url: t.kind.url().map(str::to_string),
                settings: target_settings(t),
                t: t.clone(),
            })
            .collect(),
        events: recent
            .events
            .iter()
            .map(|e| EventRow::new(e, &view.targets, 0))
            .collect(),
        event_total: recent.total,
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
        &state.service,
        &state,
        &headers,
        viewer.ctx("webhooks"),
        id,
        TargetForm::default(),
        None,
    )
    .await?;
    Ok(page.into_response())
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
    let page = detail_page(service, &state, &headers, ctx, id, form, Some(error)).await?;
    Ok((StatusCode::UNPROCESSABLE_ENTITY, page).into_response())
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
