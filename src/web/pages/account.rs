//! The account page: change password, create/list/revoke API keys.

use askama::Template;
use askama_web::WebTemplate;
use std::net::SocketAddr;

use axum::extract::{ConnectInfo, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Redirect, Response};
use axum_extra::extract::cookie::CookieJar;
use serde::Deserialize;
use std::time::Instant;
use uuid::Uuid;

use super::auth::Empty;
use super::once::OneTimeSecret;
use super::view::When;
use super::{Ctx, FormError, PagePath, PageResult, Viewer, redirect_with};
use crate::model::ApiKey;
use crate::service::Authentication;
use crate::web::auth::{AuthForm, CurrentUser, session_cookie};
use crate::web::{AppState, client_ip};

struct KeyRow {
    id: Uuid,
    name: String,
    created: When,
    last_used: Option<When>,
}

/// A key created just now: its secret is on this response and nowhere else.
struct NewKey {
    name: String,
    token: String,
}

#[derive(Template, WebTemplate)]
#[template(path = "account.html")]
struct AccountPage {
    ctx: Ctx,
    username: String,
    keys: Vec<KeyRow>,
    new_key: Option<NewKey>,
    password_error: Option<FormError>,
    key_error: Option<FormError>,
    key_name: String,
}

impl AccountPage {
    fn new(ctx: Ctx, user: &CurrentUser, keys: Vec<ApiKey>) -> AccountPage {
        AccountPage {
            ctx,
            username: user.user.username.clone(),
            keys: keys
                .into_iter()
                .map(|k| KeyRow {
                    id: k.id,
                    name: k.name,
                    created: When::at(k.created_at),
                    last_used: k.last_used_at.map(When::at),
                })
                .collect(),
            new_key: None,
            password_error: None,
            key_error: None,
            key_name: String::new(),
        }
    }
}

/// Where the one-time secrets of `user`'s session are kept.
fn once_key(state: &AppState, user: &CurrentUser) -> Vec<u8> {
    state
        .service
        .mac("one-time-secret", user.token.as_bytes())
        .to_vec()
}

/// GET /account, with a key created just before shown once.
pub(super) async fn show(viewer: Viewer, State(state): State<AppState>) -> PageResult<Response> {
    let keys = state.service.api_keys(viewer.user.user.id).await?;
    let mut page = AccountPage::new(viewer.ctx("account"), &viewer.user, keys);
    page.new_key = state
        .once
        .take(&once_key(&state, &viewer.user), Instant::now())
        .map(|s| NewKey {
            name: s.name,
            token: s.value,
        });
    Ok(if page.new_key.is_some() {
        super::uncompressed(page.into_response())
    } else {
        page.into_response()
    })
}

#[derive(Deserialize, Default)]
#[serde(default)]
pub(super) struct PasswordForm {
    current_password: String,
    new_password: String,
    confirm: String,
    /// Also revoke every API key (a checkbox: absent when not ticked).
    revoke_keys: bool,
}

/// POST /account/password: ends every session and logs this browser in again.
pub(super) async fn change_password(
    State(state): State<AppState>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
    jar: CookieJar,
    AuthForm { user, form }: AuthForm<PasswordForm>,
) -> PageResult<Response> {
    let result = if form.new_password != form.confirm {
        Err(FormError::new(
            "confirm",
            "The new password and its confirmation differ.",
        ))
    } else {
        // The current password can be guessed here as at login (with a stolen session, to
        // keep access after it is revoked): its check counts against the same limit.
        let guess = state
            .limiter
            .guess(Some(client_ip(&headers, peer, state.web.trust_proxy)));
        match state
            .service
            .change_password(
                &user.user,
                &form.current_password,
                &form.new_password,
                form.revoke_keys,
                || guess.admit(),
            )
            .await
        {
            Ok(token) => {
                guess.succeeded();
                Ok(token)
            }
            Err(e) => Err(FormError::from_service(e)?),
        }
    };
    match result {
        Ok(token) => {
            let jar = jar.add(session_cookie(token.0, state.web.secure_cookies));
            Ok((
                jar,
                redirect_with(
                    "/account",
                    "success",
                    if form.revoke_keys {
                        "Password changed. Every other session was signed out and every API key revoked."
                    } else {
                        "Password changed. Every other session was signed out; API keys keep working."
                    },
                ),
            )
                .into_response())
        }
        Err(e) => {
            let keys = state.service.api_keys(user.user.id).await?;
            let mut page = AccountPage::new(Ctx::for_user(&user, "account"), &user, keys);
            page.password_error = Some(e);
            Ok((StatusCode::UNPROCESSABLE_ENTITY, page).into_response())
        }
    }
}

#[derive(Deserialize, Default)]
#[serde(default)]
pub(super) struct KeyForm {
    name: String,
}

/// POST /account/keys: creates a key, then redirects to the account page, which shows its
/// secret once.
pub(super) async fn create_key(
    State(state): State<AppState>,
    AuthForm { user, form }: AuthForm<KeyForm>,
) -> PageResult<Response> {
    // The session was opened with the password.
    let created = state
        .service
        .create_api_key(user.user.id, &form.name, Authentication::Password)
        .await;
    match created {
        Ok(c) => {
            let secret = OneTimeSecret {
                name: c.key.name,
                value: c.token,
            };
            state
                .once
                .put(once_key(&state, &user), secret, Instant::now());
            Ok(Redirect::to("/account").into_response())
        }
        Err(e) => {
            let keys = state.service.api_keys(user.user.id).await?;
            let mut page = AccountPage::new(Ctx::for_user(&user, "account"), &user, keys);
            page.key_error = Some(FormError::from_service(e)?);
            page.key_name = form.name;
            Ok((StatusCode::UNPROCESSABLE_ENTITY, page).into_response())
        }
    }
}

/// POST /account/keys/{id}/revoke
pub(super) async fn revoke_key(
    State(state): State<AppState>,
    PagePath(id): PagePath<Uuid>,
    AuthForm { user, .. }: AuthForm<Empty>,
) -> PageResult<Response> {
    state.service.revoke_api_key(user.user.id, id).await?;
    Ok(redirect_with(
        "/account",
        "success",
        "API key revoked. Requests using it are now refused.",
    ))
}
