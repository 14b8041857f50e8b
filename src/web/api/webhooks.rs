//! Webhooks, entrypoints, targets and API keys over JSON.

use axum::Json;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::IntoResponse;
use uuid::Uuid;

use super::dto::{
    ApiKeyIn, ApiKeyOut, Counts, EntrypointIn, EntrypointOut, ErrorOut, SigningSecretOut, TargetIn,
    TargetOut, WebhookIn, WebhookOut,
};
use super::{ApiBody, ApiJson, ApiPath};
use crate::service::{Service, TargetInput, WebhookView};
use crate::web::auth::ApiUser;
use crate::web::error::ApiError;
use crate::web::{AppState, public_base};

type ApiResult<T> = Result<T, ApiError>;

fn full(view: &WebhookView, base: &str) -> WebhookOut {
    let mut out = WebhookOut::new(&view.webhook);
    out.entrypoints = Some(
        view.entrypoints
            .iter()
            .map(|e| EntrypointOut::new(e, base))
            .collect(),
    );
    out.targets = Some(
        view.targets
            .iter()
            .map(|t| TargetOut::new(t, view.paused.contains(&t.id)))
            .collect(),
    );
    out
}

fn base(state: &AppState, headers: &HeaderMap) -> String {
    public_base(&state.web, headers)
}

#[utoipa::path(get, path = "/webhooks", tag = "webhooks", responses((status = 200, body = Vec<WebhookOut>, description = "every webhook, with counts"), (status = 401, body = ErrorOut)), security(("basic" = []), ("bearer" = [])))]
pub(super) async fn list(
    _: ApiUser,
    State(service): State<Service>,
) -> ApiResult<Json<Vec<WebhookOut>>> {
    let list = service.list_webhooks().await?;
    Ok(Json(
        list.iter()
            .map(|s| {
                let mut out = WebhookOut::new(&s.webhook);
                out.counts = Some(Counts {
                    entrypoints: s.entrypoints,
                    targets: s.targets,
                    events: s.events,
                });
                out
            })
            .collect(),
    ))
}

#[utoipa::path(post, path = "/webhooks", tag = "webhooks", request_body = WebhookIn, responses((status = 201, body = WebhookOut, description = "created, with its default entrypoint"), (status = 400, description = "malformed JSON", body = ErrorOut), (status = 415, description = "not JSON", body = ErrorOut), (status = 422, description = "invalid input", body = ErrorOut), (status = 401, body = ErrorOut)), security(("basic" = []), ("bearer" = [])))]
pub(super) async fn create(
    _: ApiUser,
    State(state): State<AppState>,
    headers: HeaderMap,
    ApiJson(input): ApiJson<WebhookIn>,
) -> ApiResult<impl IntoResponse> {
    let view = state.service.create_webhook(input.into()).await?;
    Ok((
        StatusCode::CREATED,
        Json(full(&view, &base(&state, &headers))),
    ))
}

#[utoipa::path(get, path = "/webhooks/{id}", tag = "webhooks", params(("id" = Uuid, Path, description = "the webhook")), responses((status = 200, body = WebhookOut, description = "with entrypoints and targets"), (status = 401, description = "not authenticated", body = ErrorOut), (status = 404, description = "no such webhook (or one of its parts)", body = ErrorOut)), security(("basic" = []), ("bearer" = [])))]
pub(super) async fn read(
    _: ApiUser,
    State(state): State<AppState>,
    headers: HeaderMap,
    ApiPath(id): ApiPath<Uuid>,
) -> ApiResult<Json<WebhookOut>> {
    let view = state.service.webhook(id).await?;
    Ok(Json(full(&view, &base(&state, &headers))))
}

#[utoipa::path(patch, path = "/webhooks/{id}", tag = "webhooks", params(("id" = Uuid, Path, description = "the webhook")), request_body = WebhookIn, responses((status = 200, body = WebhookOut), (status = 400, description = "malformed JSON", body = ErrorOut), (status = 415, description = "not JSON", body = ErrorOut), (status = 422, description = "invalid input", body = ErrorOut), (status = 401, description = "not authenticated", body = ErrorOut), (status = 404, description = "no such webhook (or one of its parts)", body = ErrorOut)), security(("basic" = []), ("bearer" = [])))]
pub(super) async fn update(
    _: ApiUser,
    State(state): State<AppState>,
    headers: HeaderMap,
    ApiPath(id): ApiPath<Uuid>,
    ApiJson(input): ApiJson<WebhookIn>,
) -> ApiResult<Json<WebhookOut>> {
    let view = state.service.update_webhook(id, input.into()).await?;
    Ok(Json(full(&view, &base(&state, &headers))))
}

#[utoipa::path(delete, path = "/webhooks/{id}", tag = "webhooks", params(("id" = Uuid, Path, description = "the webhook")), responses((status = 204, description = "deleted, with its event file"), (status = 401, description = "not authenticated", body = ErrorOut), (status = 404, description = "no such webhook (or one of its parts)", body = ErrorOut)), security(("basic" = []), ("bearer" = [])))]
pub(super) async fn delete(
    _: ApiUser,
    State(service): State<Service>,
    ApiPath(id): ApiPath<Uuid>,
) -> ApiResult<StatusCode> {
    service.delete_webhook(id).await?;
    Ok(StatusCode::NO_CONTENT)
}

#[utoipa::path(post, path = "/webhooks/{id}/entrypoints", tag = "webhooks", params(("id" = Uuid, Path, description = "the webhook")), request_body(content = Option<EntrypointIn>, description = "optional"), responses((status = 201, body = EntrypointOut), (status = 400, description = "malformed JSON", body = ErrorOut), (status = 415, description = "not JSON", body = ErrorOut), (status = 422, description = "invalid input", body = ErrorOut), (status = 401, description = "not authenticated", body = ErrorOut), (status = 404, description = "no such webhook (or one of its parts)", body = ErrorOut)), security(("basic" = []), ("bearer" = [])))]
pub(super) async fn add_entrypoint(
    _: ApiUser,
    State(state): State<AppState>,
    headers: HeaderMap,
    ApiPath(id): ApiPath<Uuid>,
    ApiBody(body): ApiBody,
) -> ApiResult<impl IntoResponse> {
    let input: EntrypointIn = super::optional_json(&body)?;
    let mut e = state.service.add_entrypoint(id, input.description).await?;
    if input.active == Some(false) {
        e = state
            .service
            .update_entrypoint(id, e.id, Some(false), None)
            .await?;
    }
    Ok((
        StatusCode::CREATED,
        Json(EntrypointOut::new(&e, &base(&state, &headers))),
    ))
}

#[utoipa::path(patch, path = "/webhooks/{id}/entrypoints/{eid}", tag = "webhooks", params(("id" = Uuid, Path, description = "the webhook"), ("eid" = Uuid, Path, description = "the entrypoint")), request_body = EntrypointIn, responses((status = 200, body = EntrypointOut), (status = 400, description = "malformed JSON", body = ErrorOut), (status = 415, description = "not JSON", body = ErrorOut), (status = 422, description = "invalid input", body = ErrorOut), (status = 401, description = "not authenticated", body = ErrorOut), (status = 404, description = "no such webhook (or one of its parts)", body = ErrorOut)), security(("basic" = []), ("bearer" = [])))]
pub(super) async fn update_entrypoint(
    _: ApiUser,
    State(state): State<AppState>,
    headers: HeaderMap,
    ApiPath((id, eid)): ApiPath<(Uuid, Uuid)>,
    ApiJson(input): ApiJson<EntrypointIn>,
) -> ApiResult<Json<EntrypointOut>> {
    let e = state
        .service
        .update_entrypoint(id, eid, input.active, input.description)
        .await?;
    Ok(Json(EntrypointOut::new(&e, &base(&state, &headers))))
}

#[utoipa::path(delete, path = "/webhooks/{id}/entrypoints/{eid}", tag = "webhooks", params(("id" = Uuid, Path, description = "the webhook"), ("eid" = Uuid, Path, description = "the entrypoint")), responses((status = 204, description = "removed"), (status = 401, description = "not authenticated", body = ErrorOut), (status = 404, description = "no such webhook (or one of its parts)", body = ErrorOut)), security(("basic" = []), ("bearer" = [])))]
pub(super) async fn delete_entrypoint(
    _: ApiUser,
    State(service): State<Service>,
    ApiPath((id, eid)): ApiPath<(Uuid, Uuid)>,
) -> ApiResult<StatusCode> {
    service.delete_entrypoint(id, eid).await?;
    Ok(StatusCode::NO_CONTENT)
}

#[utoipa::path(post, path = "/webhooks/{id}/targets", tag = "webhooks", params(("id" = Uuid, Path, description = "the webhook")), request_body = TargetIn, responses((status = 201, body = TargetOut), (status = 400, description = "malformed JSON", body = ErrorOut), (status = 415, description = "not JSON", body = ErrorOut), (status = 422, description = "invalid input", body = ErrorOut), (status = 401, description = "not authenticated", body = ErrorOut), (status = 404, description = "no such webhook (or one of its parts)", body = ErrorOut)), security(("basic" = []), ("bearer" = [])))]
pub(super) async fn add_target(
    _: ApiUser,
    State(service): State<Service>,
    ApiPath(id): ApiPath<Uuid>,
    ApiJson(input): ApiJson<TargetIn>,
) -> ApiResult<impl IntoResponse> {
    let paused = input.paused;
    let input = TargetInput::try_from(input)?;
    let mut t = service.add_target(id, input).await?;
    if paused == Some(true) {
        t = service.set_target_paused(id, t.id, true).await?;
    }
    let paused = service.paused_since(t.id).is_some();
    Ok((StatusCode::CREATED, Json(TargetOut::new(&t, paused))))
}

#[utoipa::path(patch, path = "/webhooks/{id}/targets/{tid}", tag = "webhooks", params(("id" = Uuid, Path, description = "the webhook"), ("tid" = Uuid, Path, description = "the target")), request_body = TargetIn, responses((status = 200, body = TargetOut), (status = 400, description = "malformed JSON", body = ErrorOut), (status = 415, description = "not JSON", body = ErrorOut), (status = 422, description = "invalid input", body = ErrorOut), (status = 401, description = "not authenticated", body = ErrorOut), (status = 404, description = "no such webhook (or one of its parts)", body = ErrorOut)), security(("basic" = []), ("bearer" = [])))]
pub(super) async fn update_target(
    _: ApiUser,
    State(service): State<Service>,
    ApiPath((id, tid)): ApiPath<(Uuid, Uuid)>,
    ApiJson(input): ApiJson<TargetIn>,
) -> ApiResult<Json<TargetOut>> {
    let paused = input.paused;
    let input = TargetInput::try_from(input)?;
    let mut t = if input.is_empty() {
        service.target_of(id, tid)?
    } else {
        service.update_target(id, tid, input).await?
    };
    if let Some(paused) = paused {
        t = service.set_target_paused(id, tid, paused).await?;
    }
    let paused = service.paused_since(t.id).is_some();
    Ok(Json(TargetOut::new(&t, paused)))
}

/// `POST …/targets/{tid}/rotate-secret`: a new signing secret; the old one keeps signing
/// beside it for 24 hours.
#[utoipa::path(post, path = "/webhooks/{id}/targets/{tid}/rotate-secret", tag = "webhooks", params(("id" = Uuid, Path, description = "the webhook"), ("tid" = Uuid, Path, description = "an http target")), responses((status = 200, body = SigningSecretOut, description = "the new secret; the old one signs too for 24 h"), (status = 401, description = "not authenticated", body = ErrorOut), (status = 404, description = "no such webhook (or one of its parts)", body = ErrorOut)), security(("basic" = []), ("bearer" = [])))]
pub(super) async fn rotate_secret(
    _: ApiUser,
    State(service): State<Service>,
    ApiPath((id, tid)): ApiPath<(Uuid, Uuid)>,
) -> ApiResult<Json<SigningSecretOut>> {
    let t = service.rotate_signing_secret(id, tid).await?;
    let signing_secret = match &t.kind {
        crate::model::TargetKind::Http(h) => h.signing.secret.to_whsec(),
        _ => {
            return Err(ApiError::from(crate::service::ServiceError::NotFound(
                "target",
            )));
        }
    };
    Ok(Json(SigningSecretOut { signing_secret }))
}

#[utoipa::path(delete, path = "/webhooks/{id}/targets/{tid}", tag = "webhooks", params(("id" = Uuid, Path, description = "the webhook"), ("tid" = Uuid, Path, description = "the target")), responses((status = 204, description = "removed"), (status = 401, description = "not authenticated", body = ErrorOut), (status = 404, description = "no such webhook (or one of its parts)", body = ErrorOut)), security(("basic" = []), ("bearer" = [])))]
pub(super) async fn delete_target(
    _: ApiUser,
    State(service): State<Service>,
    ApiPath((id, tid)): ApiPath<(Uuid, Uuid)>,
) -> ApiResult<StatusCode> {
    service.delete_target(id, tid).await?;
    Ok(StatusCode::NO_CONTENT)
}

#[utoipa::path(get, path = "/keys", tag = "keys", responses((status = 200, body = Vec<ApiKeyOut>), (status = 401, body = ErrorOut)), security(("basic" = []), ("bearer" = [])))]
pub(super) async fn list_keys(
    ApiUser(user, _): ApiUser,
    State(service): State<Service>,
) -> ApiResult<Json<Vec<ApiKeyOut>>> {
    let keys = service.api_keys(user.id).await?;
    Ok(Json(keys.iter().map(|k| ApiKeyOut::new(k, None)).collect()))
}

#[utoipa::path(post, path = "/keys", tag = "keys", request_body = ApiKeyIn, responses((status = 201, body = ApiKeyOut, description = "the token is in this answer only"), (status = 403, body = ErrorOut, description = "an API key cannot create API keys"), (status = 400, description = "malformed JSON", body = ErrorOut), (status = 415, description = "not JSON", body = ErrorOut), (status = 422, description = "invalid input", body = ErrorOut), (status = 401, body = ErrorOut)), security(("basic" = []), ("bearer" = [])))]
pub(super) async fn create_key(
    ApiUser(user, by): ApiUser,
    State(service): State<Service>,
    ApiJson(input): ApiJson<ApiKeyIn>,
) -> ApiResult<impl IntoResponse> {
    let created = service.create_api_key(user.id, &input.name, by).await?;
    Ok((
        StatusCode::CREATED,
        Json(ApiKeyOut::new(&created.key, Some(created.token))),
    ))
}

#[utoipa::path(delete, path = "/keys/{kid}", tag = "keys", params(("kid" = Uuid, Path, description = "the key")), responses((status = 204, description = "revoked"), (status = 401, body = ErrorOut), (status = 404, body = ErrorOut)), security(("basic" = []), ("bearer" = [])))]
pub(super) async fn revoke_key(
    ApiUser(user, _): ApiUser,
    State(service): State<Service>,
    ApiPath(kid): ApiPath<Uuid>,
) -> ApiResult<StatusCode> {
    service.revoke_api_key(user.id, kid).await?;
    Ok(StatusCode::NO_CONTENT)
}
