//! HTML pages: askama templates rendered from service data.
//!
//! Every handler extracts (a [`Viewer`] for GET pages, an [`AuthForm`] for state-changing
//! POSTs, so no form can skip the CSRF check), makes one service call, then renders a
//! template or redirects (POST → redirect → GET, with a one-shot [`Flash`] cookie).
//! Templates live in `templates/`, their structs next to the handlers; askama escapes
//! everything, and no template uses `|safe`.
//!
//! [`AuthForm`]: super::auth::AuthForm

mod account;
mod auth;
mod events;
mod once;
mod view;
mod webhooks;

use askama::Template;
use askama_web::WebTemplate;
use axum::Router;
use axum::extract::{FromRequestParts, Path, Request, State};
use axum::http::{HeaderValue, StatusCode, header, request::Parts};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::{get, post};
use axum_extra::extract::cookie::CookieJar;
use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use serde::de::DeserializeOwned;

use super::AppState;
use super::auth::CurrentUser;
use super::error::PageError;
use crate::service::ServiceError;
pub use once::OneTimeSecrets;

/// Name of the one-shot flash message cookie.
const FLASH_COOKIE: &str = "webhooker_flash";

/// Result of a page handler.
type PageResult<T> = Result<T, PageError>;

/// The page routes; `state` is for the page middleware.
pub fn router(state: AppState) -> Router<AppState> {
    Router::new()
        .route("/", get(|| async { Redirect::to("/webhooks") }))
        .route("/login", get(auth::login_form).post(auth::login))
        .route("/logout", post(auth::logout))
        .route("/webhooks", get(webhooks::list))
        .route(
            "/webhooks/new",
            get(webhooks::new_form).post(webhooks::create),
        )
        .route("/webhooks/{id}", get(webhooks::detail))
        .route(
            "/webhooks/{id}/edit",
            get(webhooks::edit_form).post(webhooks::update),
        )
        .route("/webhooks/{id}/delete", post(webhooks::delete))
        .route("/webhooks/{id}/entrypoints", post(webhooks::add_entrypoint))
        .route(
            "/webhooks/{id}/entrypoints/{eid}/toggle",
            post(webhooks::toggle_entrypoint),
        )
        .route(
            "/webhooks/{id}/entrypoints/{eid}/delete",
            post(webhooks::delete_entrypoint),
        )
        .route("/webhooks/{id}/targets", post(webhooks::add_target))
        .route(
            "/webhooks/{id}/targets/{tid}/toggle",
            post(webhooks::toggle_target),
        )
        .route(
            "/webhooks/{id}/targets/{tid}/delete",
            post(webhooks::delete_target),
        )
        .route(
            "/webhooks/{id}/targets/{tid}/pause",
            post(webhooks::pause_target),
        )
        .route(
            "/webhooks/{id}/targets/{tid}/edit",
            post(webhooks::edit_target),
        )
        .route(
            "/webhooks/{id}/targets/{tid}/signing",
            post(webhooks::set_signing),
        )
        .route(
            "/webhooks/{id}/targets/{tid}/rotate-secret",
            post(webhooks::rotate_secret),
        )
        .route("/webhooks/{id}/test-event", post(webhooks::send_test))
        .route("/webhooks/{id}/events", get(events::list))
        .route("/webhooks/{id}/redeliver", post(events::redeliver_matching))
        .route("/webhooks/{id}/events/stream", get(events::stream))
        .route(
            "/webhooks/{id}/events/{event_id}/body",
            get(events::download_body),
        )
        .route("/webhooks/{id}/events/{event_id}", get(events::detail))
        .route(
            "/webhooks/{id}/events/{event_id}/redeliver",
            post(events::redeliver),
        )
        .route("/account", get(account::show))
        .route("/account/password", post(account::change_password))
        .route("/account/keys", post(account::create_key))
        .route("/account/keys/{id}/revoke", post(account::revoke_key))
        // After every route: a GET of a form's address (a reload, a bookmark) gets the
        // styled page, not a bare 405.
        .method_not_allowed_fallback(|| async {
            PageError::Status(
                StatusCode::METHOD_NOT_ALLOWED,
                "This address only takes a form submission. Go back to the page with the form"
                    .into(),
            )
        })
        .fallback(|| async { PageError::Status(StatusCode::NOT_FOUND, "Page not found".into()) })
        .layer(middleware::from_fn_with_state(state, page_headers))
}

/// A one-shot message shown at the top of the next page (POST → redirect → GET).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Flash {
    /// `success`, `error`, `info` or `warning` (the alert style).
    pub kind: &'static str,
    /// The message (escaped when shown).
    pub message: String,
}

impl Flash {
    /// Cookie value: base64url of `kind\nmessage` (survives cookie percent-decoding).
    fn encode(&self) -> String {
        URL_SAFE_NO_PAD.encode(format!("{}\n{}", self.kind, self.message))
    }

    fn decode(raw: &str) -> Option<Flash> {
        let bytes = URL_SAFE_NO_PAD.decode(raw.trim()).ok()?;
        let text = String::from_utf8(bytes).ok()?;
        let (kind, message) = text.split_once('\n')?;
        // Only known kinds: the value ends up in a class attribute.
        let kind = ["success", "error", "info", "warning"]
            .into_iter()
            .find(|known| *known == kind)?;
        let message: String = message.chars().take(500).collect();
        (!message.is_empty()).then_some(Flash { kind, message })
    }
}

/// What the shared layout (`templates/base.html`) needs from every page.
#[derive(Debug, Clone)]
pub struct Ctx {
    /// App version (footer, asset cache busting).
    pub version: &'static str,
    /// The logged-in username; `None` hides the navigation.
    pub user: Option<String>,
    /// CSRF token for every form on the page (logout included).
    pub csrf_token: String,
    /// One-shot message.
    pub flash: Option<Flash>,
    /// The nav section to highlight (`webhooks`, `account`).
    pub nav: &'static str,
}

impl Ctx {
    /// The context of a logged-in user, without a flash.
    pub fn for_user(user: &CurrentUser, nav: &'static str) -> Ctx {
        Ctx {
            version: super::VERSION,
            user: Some(user.user.username.clone()),
            csrf_token: super::auth::mask_csrf(&user.csrf),
            flash: None,
            nav,
        }
    }

    /// The context of an anonymous page (login, errors); `csrf_token` is masked here.
    pub fn anonymous(csrf_token: String) -> Ctx {
        Ctx {
            version: super::VERSION,
            user: None,
            csrf_token: if csrf_token.is_empty() {
                csrf_token
            } else {
                super::auth::mask_csrf(&csrf_token)
            },
            flash: None,
            nav: "",
        }
    }
}

/// The logged-in user of a GET page with the page context (including a pending flash).
/// Rejects with a redirect to the login page.
pub struct Viewer {
    /// The user and session.
    pub user: CurrentUser,
    /// The layout context.
    pub ctx: Ctx,
}

impl Viewer {
    /// The context with the nav section set.
    pub fn ctx(&self, nav: &'static str) -> Ctx {
        Ctx {
            nav,
            ..self.ctx.clone()
        }
    }
}

impl FromRequestParts<AppState> for Viewer {
    type Rejection = PageError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, PageError> {
        let user = CurrentUser::from_request_parts(parts, state).await?;
        let mut ctx = Ctx::for_user(&user, "");
        ctx.flash = read_flash(&CookieJar::from_headers(&parts.headers));
        Ok(Viewer { user, ctx })
    }
}

/// The pending flash message, if any (the response clears it, see `page_headers`).
pub fn read_flash(jar: &CookieJar) -> Option<Flash> {
    jar.get(FLASH_COOKIE).and_then(|c| Flash::decode(c.value()))
}

/// Path parameters of a page; a malformed id is a 404 page like an unknown one.
pub struct PagePath<T>(pub T);

impl<T: DeserializeOwned + Send> FromRequestParts<AppState> for PagePath<T> {
    type Rejection = PageError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, PageError> {
        match Path::<T>::from_request_parts(parts, state).await {
            Ok(Path(t)) => Ok(PagePath(t)),
            Err(_) => Err(PageError::Status(
                StatusCode::NOT_FOUND,
                "Page not found".into(),
            )),
        }
    }
}

/// Query string of a page; a malformed one is a 400 page.
#[derive(FromRequestParts)]
#[from_request(via(axum::extract::Query), rejection(PageError))]
pub struct PageQuery<T>(pub T);

/// A 303 redirect that leaves a flash message for the next page. The message rides in
/// the response's extensions; `page_headers` turns it into the cookie, which knows
/// whether cookies must be Secure.
pub fn redirect_with(to: &str, kind: &'static str, message: impl Into<String>) -> Response {
    let mut resp = Redirect::to(to).into_response();
    resp.extensions_mut().insert(Flash {
        kind,
        message: message.into(),
    });
    resp
}

/// `resp`, marked to be sent uncompressed: it shows a secret (see `web::Uncompressed`).
pub fn uncompressed(mut resp: Response) -> Response {
    resp.extensions_mut().insert(super::Uncompressed);
    resp
}

/// Headers for every page response: a flash left by [`redirect_with`] becomes a cookie that
/// lives a minute at most, a shown flash is cleared (a page that was not a redirect has
/// displayed it), and pages are never cached (they carry CSRF tokens and, once, an API key
/// secret).
async fn page_headers(State(state): State<AppState>, req: Request, next: Next) -> Response {
    let jar = CookieJar::from_headers(req.headers());
    let had_flash = jar.get(FLASH_COOKIE).is_some();
    let signed_in = jar.get(super::auth::SESSION_COOKIE).is_some();
    let request_headers = signed_in.then(|| req.headers().clone());
    let mut resp = next.run(req).await;
    if let (Some(headers), Some(error)) =
        (request_headers, resp.extensions_mut().remove::<ErrorInfo>())
    {
        resp = with_nav(&state, headers, error, resp).await;
    }
    let secure = if state.web.secure_cookies {
        "; Secure"
    } else {
        ""
    };
    let flash_cookie = match resp.extensions_mut().remove::<Flash>() {
        Some(flash) => Some(flash.encode()),
        None if had_flash && !resp.status().is_redirection() => Some(String::new()),
        None => None,
    };
    let headers = resp.headers_mut();
    if let Some(value) = flash_cookie {
        let max_age = if value.is_empty() { 0 } else { 60 };
        let cookie = format!(
            "{FLASH_COOKIE}={value}; Path=/; Max-Age={max_age}; HttpOnly; SameSite=Lax{secure}"
        );
        if let Ok(v) = HeaderValue::from_str(&cookie) {
            headers.append(header::SET_COOKIE, v);
        }
    }
    headers
        .entry(header::CACHE_CONTROL)
        .or_insert(HeaderValue::from_static("no-store"));
    resp
}

/// A form field's validation message, shown beside the form that is re-rendered.
#[derive(Debug, Clone)]
pub struct FormError {
    /// The field at fault (for highlighting).
    pub field: &'static str,
    /// A sentence for people.
    pub message: String,
}

impl FormError {
    /// An error about `field`.
    pub fn new(field: &'static str, message: impl Into<String>) -> FormError {
        FormError {
            field,
            message: message.into(),
        }
    }

    /// Input errors become form messages; anything else stays an error page.
    pub fn from_service(e: ServiceError) -> Result<FormError, PageError> {
        match e {
            ServiceError::Invalid { field, message } => Ok(FormError {
                field,
                message: format!("{} {message}.", field_label(field)),
            }),
            ServiceError::TargetRefused(r) => Ok(FormError {
                field: "url",
                message: format!("The URL was refused: {r}."),
            }),
            other => Err(other.into()),
        }
    }
}

/// `message` as a sentence: capitalised, with a full stop.
pub fn sentence(message: &str) -> String {
    let mut out = String::with_capacity(message.len() + 1);
    let mut chars = message.trim().chars();
    if let Some(first) = chars.next() {
        out.extend(first.to_uppercase());
    }
    out.extend(chars);
    if !out.ends_with(['.', '!', '?']) {
        out.push('.');
    }
    out
}

/// How a form field is called on the page.
fn field_label(field: &str) -> &'static str {
    match field {
        "name" => "Name",
        "description" => "Description",
        "retention_days" => "Retention",
        "kind" => "Kind",
        "url" => "URL",
        "timeout_secs" => "Timeout",
        "max_retries" => "Max retries",
        "max_backoff_secs" => "Max backoff",
        "max_in_flight" => "Max in flight",
        "current_password" => "The current password",
        "new_password" => "The new password",
        "target_id" => "Target",
        "verification.kind" => "Verification",
        "verification.secret" => "The secret",
        "verification.token" => "The token",
        "verification.name" => "The header name",
        "verification.value" => "The header value",
        "verification.username" => "The username",
        "verification.password" => "The password",
        _ => "This field",
    }
}

/// Parses an optional whole-number field: empty means "not given".
pub fn parse_u32(field: &'static str, raw: &str) -> Result<Option<u32>, FormError> {
    let t = raw.trim();
    if t.is_empty() {
        return Ok(None);
    }
    t.parse().map(Some).map_err(|_| {
        FormError::new(
            field,
            format!("{} must be a whole number.", field_label(field)),
        )
    })
}

/// The error page (`templates/error.html`).
#[derive(Template, WebTemplate)]
#[template(path = "error.html")]
struct ErrorPage {
    ctx: Ctx,
    status: u16,
    title: &'static str,
    message: String,
}

/// What an error page said, kept on its response so that `page_headers` can render it
/// again with the navigation for a signed-in user.
#[derive(Debug, Clone)]
struct ErrorInfo {
    status: StatusCode,
    message: String,
}

/// A rendered error page with `status` (without navigation: the code that failed may not
/// know who asks; `page_headers` adds it for a signed-in user).
pub fn error_page(status: StatusCode, message: &str) -> Response {
    let message = sentence(message);
    let mut resp = render_error(Ctx::anonymous(String::new()), status, message.clone());
    resp.extensions_mut().insert(ErrorInfo { status, message });
    resp
}

fn render_error(ctx: Ctx, status: StatusCode, message: String) -> Response {
    let page = ErrorPage {
        ctx,
        status: status.as_u16(),
        title: status.canonical_reason().unwrap_or("Error"),
        message,
    };
    (status, page).into_response()
}

/// The error page `resp` rendered again with the navigation, when `headers` carry a valid
/// session; else `resp` as it was.
async fn with_nav(
    state: &AppState,
    headers: axum::http::HeaderMap,
    error: ErrorInfo,
    resp: Response,
) -> Response {
    let (mut parts, ()) = axum::http::Request::new(()).into_parts();
    parts.headers = headers;
    match super::auth::MaybeUser::from_request_parts(&mut parts, state).await {
        Ok(super::auth::MaybeUser(Some(user))) => {
            let mut again = render_error(Ctx::for_user(&user, ""), error.status, error.message);
            let (first, _) = resp.into_parts();
            for (name, value) in &first.headers {
                if name != header::CONTENT_TYPE && name != header::CONTENT_LENGTH {
                    again.headers_mut().append(name, value.clone());
                }
            }
            // The marks other layers read (a known storage failure, say) stay on it.
            again.extensions_mut().extend(first.extensions);
            again
        }
        _ => resp,
    }
}

#[cfg(test)]
mod tests {
    use super::Flash;

    #[test]
    fn flash_round_trip() {
        let f = Flash {
            kind: "success",
            message: "Saved “a & b + c”; 100% done".into(),
        };
        assert_eq!(Flash::decode(&f.encode()), Some(f));
        assert_eq!(Flash::decode("not base64!"), None);
        let evil = Flash {
            kind: "success",
            message: String::new(),
        };
        assert_eq!(Flash::decode(&evil.encode()), None, "empty message");
        use base64::Engine as _;
        let forged = base64::engine::general_purpose::URL_SAFE_NO_PAD.encode("x\" onclick=\nhi");
        assert_eq!(Flash::decode(&forged), None, "unknown kind");
    }
}
