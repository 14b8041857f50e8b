//! Authentication for pages (session cookie + CSRF) and the API (bearer key or Basic),
//! and the login rate limiter.

mod rate_limit;
mod session;

use std::net::SocketAddr;

use axum::extract::{ConnectInfo, FromRequestParts};
use axum::http::{HeaderMap, header, request::Parts};
use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use subtle::ConstantTimeEq;

pub use rate_limit::LoginLimiter;
pub use session::{
    AnonCsrf, AuthForm, CSRF_COOKIE, CurrentUser, MaybeUser, SESSION_COOKIE, csrf_nonce_cookie,
    mask_csrf, session_cookie,
};

use super::error::ApiError;
use super::{AppState, client_ip};
use crate::model::User;
use crate::service::{Authentication, ServiceError};

/// Constant-time string equality (for credentials).
pub fn constant_time_eq(a: &str, b: &str) -> bool {
    bool::from(a.as_bytes().ct_eq(b.as_bytes()))
}

/// The username and password of an `Authorization: Basic` header.
pub fn basic_credentials(headers: &HeaderMap) -> Option<(String, String)> {
    let value = headers.get(header::AUTHORIZATION)?.to_str().ok()?;
    let (scheme, rest) = value.split_once(' ')?;
    if !scheme.eq_ignore_ascii_case("basic") {
        return None;
    }
    let decoded = STANDARD.decode(rest.trim()).ok()?;
    let decoded = String::from_utf8(decoded).ok()?;
    let (u, p) = decoded.split_once(':')?;
    Some((u.to_string(), p.to_string()))
}

fn bearer_token(headers: &HeaderMap) -> Option<&str> {
    let value = headers.get(header::AUTHORIZATION)?.to_str().ok()?;
    let (scheme, rest) = value.split_once(' ')?;
    scheme.eq_ignore_ascii_case("bearer").then(|| rest.trim())
}

/// The caller of an API route: authenticated by bearer API key or HTTP Basic, and how.
#[derive(Debug, Clone)]
pub struct ApiUser(pub User, pub Authentication);

impl FromRequestParts<AppState> for ApiUser {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, ApiError> {
        let service = &state.service;
        if let Some(token) = bearer_token(&parts.headers) {
            // API keys are 256-bit random secrets checked by SHA-256: no guessing to limit.
            return match service.authenticate_api_key(token).await {
                Ok(user) => Ok(ApiUser(user, Authentication::ApiKey)),
                Err(ServiceError::Unauthorized) => Err(ApiError::unauthorized()),
                Err(e) => Err(e.into()),
            };
        }
        let Some((username, password)) = basic_credentials(&parts.headers) else {
            return Err(ApiError::unauthorized());
        };
        // Passwords can be guessed: Basic failures share the login limit per client IP.
        let ip = parts
            .extensions
            .get::<ConnectInfo<SocketAddr>>()
            .map(|c| client_ip(&parts.headers, c.0, state.web.trust_proxy));
        let guess = state.limiter.guess(ip);
        // Over the limit, every password gets the same 429, the right one included (even
        // when remembered): a different answer would tell which guess was right.
        if guess.limited() {
            return Err(ServiceError::TooManyAttempts.into());
        }
        // Remembered credentials are not checked again, so not counted.
        match service
            .verify_basic(&username, &password, || guess.admit())
            .await
        {
            Ok(user) => {
                guess.succeeded();
                Ok(ApiUser(user, Authentication::Password))
            }
            Err(ServiceError::Unauthorized) => Err(ApiError::unauthorized()),
            Err(e) => Err(e.into()),
        }
    }
}
