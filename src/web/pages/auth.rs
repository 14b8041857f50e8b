//! Login and logout pages.

use std::net::SocketAddr;
use std::time::Instant;

use askama::Template;
use askama_web::WebTemplate;
use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::{ConnectInfo, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Redirect, Response};
use axum_extra::extract::cookie::{Cookie, CookieJar};
use serde::Deserialize;

use super::{Ctx, PageQuery, PageResult};
use crate::service::ServiceError;
use crate::web::AppState;
use crate::web::auth::{
    AnonCsrf, AuthForm, CSRF_COOKIE, MaybeUser, SESSION_COOKIE, csrf_nonce_cookie, session_cookie,
};
use crate::web::client_ip;

#[derive(Template, WebTemplate)]
#[template(path = "login.html")]
struct LoginPage {
    ctx: Ctx,
    notice: Option<super::Flash>,
    error: Option<String>,
    next: String,
    username_value: String,
}

#[derive(Deserialize, Default)]
pub(super) struct NextQuery {
    next: Option<String>,
}

#[derive(Deserialize, Default)]
struct LoginForm {
    #[serde(default)]
    username: String,
    #[serde(default)]
    password: String,
    csrf_token: Option<String>,
    #[serde(default)]
    next: String,
}

/// Where to go after login: a local path (one leading `/`, not `//` or `/\`, which
/// browsers treat as another host), else the webhook list.
pub(super) fn safe_next(next: &str) -> &str {
    let local = next.starts_with('/')
        && !next.starts_with("//")
        && !next.starts_with("/\\")
        && !next.chars().any(|c| c.is_control() || c == '\\');
    if local { next } else { "/webhooks" }
}

/// Why a login in prod got no cookie back, and what to do about it.
const SECURE_COOKIES_NEED_HTTPS: &str = "Your browser sent no sign-in cookie. \
     With WEBHOOKER_ENVIRONMENT=prod cookies are Secure, so browsers send them only over \
     HTTPS: open this site through https://, or set WEBHOOKER_ENVIRONMENT=dev to use plain \
     HTTP.";

/// The login page plus the pre-login CSRF cookie when it is new.
fn login_page(
    state: &AppState,
    jar: CookieJar,
    status: StatusCode,
    error: Option<String>,
    next: &str,
    username: String,
) -> Response {
    let csrf = AnonCsrf::from_jar(&state.service, &jar);
    let jar = if csrf.fresh {
        jar.add(csrf_nonce_cookie(
            csrf.nonce.clone(),
            state.web.secure_cookies,
        ))
    } else {
        jar
    };
    let page = LoginPage {
        ctx: Ctx::anonymous(csrf.token),
        // Shown inside the narrow login column rather than across the page.
        notice: super::read_flash(&jar),
        error,
        next: safe_next(next).to_string(),
        username_value: username,
    };
    (status, jar, page).into_response()
}

/// GET /login: the form, or straight on when already logged in.
pub(super) async fn login_form(
    State(state): State<AppState>,
    MaybeUser(user): MaybeUser,
    jar: CookieJar,
    PageQuery(q): PageQuery<NextQuery>,
) -> Response {
    let next = q.next.unwrap_or_default();
    if user.is_some() {
        return Redirect::to(safe_next(&next)).into_response();
    }
    login_page(&state, jar, StatusCode::OK, None, &next, String::new())
}

/// POST /login: rate limit, CSRF, credentials; then the session cookie and `next`.
pub(super) async fn login(
    State(state): State<AppState>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
    jar: CookieJar,
    body: Result<Bytes, BytesRejection>,
) -> PageResult<Response> {
    // An unreadable or oversized form costs no attempt: no password was read.
    let body = body?;
    let ip = client_ip(&headers, peer, state.web.trust_proxy);
    let form: LoginForm = serde_urlencoded::from_bytes(&body).unwrap_or_default();
    // Counted before anything is checked, so a limited client gets this same answer
    // whatever it sent; a successful sign-in is given back below.
    let guess = state.limiter.guess(Some(ip));
    if !guess.admit() {
        let wait = state.limiter.wait(ip, Instant::now()).as_secs().max(1);
        let mut resp = login_page(
            &state,
            jar,
            StatusCode::TOO_MANY_REQUESTS,
            Some(format!(
                "Too many sign-in attempts. Wait {wait} s and try again."
            )),
            &form.next,
            form.username,
        );
        if let Ok(v) = HeaderValue::from_str(&wait.to_string()) {
            resp.headers_mut().insert(header::RETRY_AFTER, v);
        }
        return Ok(resp);
    }
    let csrf = AnonCsrf::from_jar(&state.service, &jar);
    if csrf.fresh && state.web.secure_cookies {
        // The nonce cookie did not come back. In prod it is Secure, and a browser on plain
        // HTTP drops it: say so, instead of a puzzling "form expired".
        return Ok(login_page(
            &state,
            jar,
            StatusCode::FORBIDDEN,
            Some(SECURE_COOKIES_NEED_HTTPS.into()),
            &form.next,
            form.username,
        ));
    }
    csrf.check(form.csrf_token.as_deref())?;
    match state.service.login(&form.username, &form.password).await {
        Ok(outcome) => {
            guess.succeeded();
            let jar = jar
                .remove(Cookie::build(CSRF_COOKIE).path("/"))
                .add(session_cookie(outcome.token.0, state.web.secure_cookies));
            Ok((jar, Redirect::to(safe_next(&form.next))).into_response())
        }
        Err(ServiceError::Unauthorized) => Ok(login_page(
            &state,
            jar,
            StatusCode::UNAUTHORIZED,
            Some("Wrong username or password.".into()),
            &form.next,
            form.username,
        )),
        Err(e) => Err(e.into()),
    }
}

#[derive(Deserialize)]
pub(super) struct Empty {}

/// POST /logout: ends the server session and drops the cookie.
pub(super) async fn logout(
    State(state): State<AppState>,
    jar: CookieJar,
    AuthForm { user, .. }: AuthForm<Empty>,
) -> PageResult<Response> {
    state.service.logout(&user.token).await?;
    let jar = jar.remove(Cookie::build(SESSION_COOKIE).path("/"));
    Ok((
        jar,
        super::redirect_with("/login", "info", "You have been signed out."),
    )
        .into_response())
}

#[cfg(test)]
mod tests {
    use super::safe_next;

    #[test]
    fn next_must_be_local() {
        assert_eq!(safe_next("/webhooks/1?page=2"), "/webhooks/1?page=2");
        for bad in [
            "//evil.com",
            "https://evil.com",
            "/\\evil.com",
            "evil.com",
            "",
            "/a\r\nb",
            "/\\/evil.com",
        ] {
            assert_eq!(safe_next(bad), "/webhooks", "{bad:?}");
        }
    }
}
