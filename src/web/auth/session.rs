//! Browser sessions: the session cookie, the current-user extractors, and CSRF tokens.
//!
//! The CSRF token of a logged-in page is HMAC(session key, session token): nothing to
//! store, and it changes with every login. The login form, which has no session yet, uses
//! a random nonce cookie instead (double submit, signed).

use axum::body::Bytes;
use axum::extract::{FromRequest, FromRequestParts, Request};
use axum::http::request::Parts;
use axum_extra::extract::cookie::{Cookie, CookieJar, SameSite};
use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use serde::Deserialize;
use serde::de::DeserializeOwned;

use super::constant_time_eq;
use crate::model::User;
use crate::service::{SESSION_TTL_MS, Service};
use crate::web::AppState;
use crate::web::error::PageError;

/// Name of the session cookie.
pub const SESSION_COOKIE: &str = "webhooker_session";
/// Name of the pre-login CSRF nonce cookie.
pub const CSRF_COOKIE: &str = "webhooker_csrf";

/// The session cookie (HttpOnly, SameSite=Lax, Secure in prod). It lasts as long as the
/// server-side session, so closing the browser does not sign out.
pub fn session_cookie(token: String, secure: bool) -> Cookie<'static> {
    private_cookie(SESSION_COOKIE, token, secure, Some(SESSION_TTL_MS / 1000))
}

/// The pre-login CSRF nonce cookie; it ends with the browser session.
pub fn csrf_nonce_cookie(nonce: String, secure: bool) -> Cookie<'static> {
    private_cookie(CSRF_COOKIE, nonce, secure, None)
}

fn private_cookie(
    name: &'static str,
    value: String,
    secure: bool,
    max_age_secs: Option<i64>,
) -> Cookie<'static> {
    // The cookie crate takes Max-Age only as its own `time::Duration`; parsing the attribute
    // spares the project a third time crate. The string is ours (a token is URL-safe
    // base64), so the parse cannot fail; if it ever did, the cookie would last the browser
    // session.
    let base = match max_age_secs {
        Some(secs) => Cookie::parse(format!("{name}={value}; Max-Age={secs}"))
            .unwrap_or_else(|_| Cookie::new(name, value)),
        None => Cookie::new(name, value),
    };
    Cookie::build(base)
        .path("/")
        .http_only(true)
        .same_site(SameSite::Lax)
        .secure(secure)
        .build()
}

/// A CSRF token as written into a page: a fresh random pad and the token XOR the pad, so
/// that no two responses carry the same bytes. A compressed page that also reflects what
/// an attacker sent (an event's path, a query) would otherwise leak the token through its
/// compressed size, one guessed character at a time (BREACH).
pub fn mask_csrf(token: &str) -> String {
    let token = token.as_bytes();
    let mut masked = vec![0u8; token.len() * 2];
    rand::fill(&mut masked[..token.len()]);
    for i in 0..token.len() {
        masked[token.len() + i] = masked[i] ^ token[i];
    }
    URL_SAFE_NO_PAD.encode(masked)
}

/// Whether `submitted` (masked by [`mask_csrf`], or as is) is `token`, in constant time.
fn csrf_matches(submitted: &str, token: &str) -> bool {
    let unmasked = URL_SAFE_NO_PAD
        .decode(submitted)
        .ok()
        .filter(|b| b.len() == token.len() * 2)
        .map(|b| {
            let (pad, xored) = b.split_at(token.len());
            pad.iter()
                .zip(xored)
                .map(|(p, x)| p ^ x)
                .collect::<Vec<u8>>()
        });
    match unmasked {
        Some(raw) => bool::from(subtle::ConstantTimeEq::ct_eq(&raw[..], token.as_bytes())),
        None => constant_time_eq(submitted, token),
    }
}

fn csrf_for_session(service: &Service, token: &str) -> String {
    URL_SAFE_NO_PAD.encode(service.mac("csrf", token.as_bytes()))
}

/// A logged-in user, with the session token and its CSRF token. Rejects with a redirect
/// to the login page that comes back here afterwards.
#[derive(Debug, Clone)]
pub struct CurrentUser {
    /// The user.
    pub user: User,
    /// The session token (cookie value).
    pub token: String,
    /// The CSRF token every form of this session must carry.
    pub csrf: String,
}

impl CurrentUser {
    /// Checks a submitted CSRF token.
    pub fn check_csrf(&self, submitted: Option<&str>) -> Result<(), PageError> {
        match submitted {
            Some(s) if csrf_matches(s, &self.csrf) => Ok(()),
            _ => Err(PageError::Csrf),
        }
    }
}

impl FromRequestParts<AppState> for CurrentUser {
    type Rejection = PageError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, PageError> {
        match MaybeUser::from_request_parts(parts, state).await {
            Ok(MaybeUser(Some(u))) => Ok(u),
            // A storage error is not "logged out": answer it as the error it is.
            Err(e) => Err(e),
            Ok(MaybeUser(None)) => {
                let next = if parts.method == axum::http::Method::GET {
                    parts
                        .uri
                        .path_and_query()
                        .map(|p| p.as_str().to_string())
                        .unwrap_or_else(|| "/".into())
                } else {
                    "/".into()
                };
                Err(PageError::Login { next })
            }
        }
    }
}

/// The logged-in user, if any (an invalid or expired cookie counts as none).
#[derive(Debug, Clone)]
pub struct MaybeUser(pub Option<CurrentUser>);

impl FromRequestParts<AppState> for MaybeUser {
    type Rejection = PageError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, PageError> {
        let jar = CookieJar::from_headers(&parts.headers);
        let Some(token) = jar.get(SESSION_COOKIE).map(|c| c.value().to_string()) else {
            return Ok(MaybeUser(None));
        };
        let user = state.service.session_user(&token).await?;
        Ok(MaybeUser(user.map(|user| CurrentUser {
            csrf: csrf_for_session(&state.service, &token),
            user,
            token,
        })))
    }
}

/// The pre-login CSRF state: the nonce cookie (new if absent) and the matching token.
#[derive(Debug, Clone)]
pub struct AnonCsrf {
    /// Nonce to (re)set in the cookie.
    pub nonce: String,
    /// Token to put in the form.
    pub token: String,
    /// Whether the cookie must be set in the response.
    pub fresh: bool,
}

impl AnonCsrf {
    /// Reads the nonce cookie or makes a new nonce.
    pub fn from_jar(service: &Service, jar: &CookieJar) -> AnonCsrf {
        let (nonce, fresh) = match jar.get(CSRF_COOKIE) {
            Some(c) if c.value().len() == 43 => (c.value().to_string(), false),
            _ => {
                let mut b = [0u8; 32];
                rand::fill(&mut b[..]);
                (URL_SAFE_NO_PAD.encode(b), true)
            }
        };
        let token = URL_SAFE_NO_PAD.encode(service.mac("csrf-anon", nonce.as_bytes()));
        AnonCsrf {
            nonce,
            token,
            fresh,
        }
    }

    /// Checks a submitted token against the nonce cookie.
    pub fn check(&self, submitted: Option<&str>) -> Result<(), PageError> {
        match submitted {
            Some(s) if !self.fresh && csrf_matches(s, &self.token) => Ok(()),
            _ => Err(PageError::Csrf),
        }
    }
}

#[derive(Deserialize)]
struct CsrfField {
    csrf_token: Option<String>,
}

/// A state-changing form from a logged-in user whose CSRF token checked out: the only way
/// page handlers receive POST bodies, so no form can forget the check.
#[derive(Debug)]
pub struct AuthForm<T> {
    /// The user.
    pub user: CurrentUser,
    /// The parsed form.
    pub form: T,
}

impl<T: DeserializeOwned> FromRequest<AppState> for AuthForm<T> {
    type Rejection = PageError;

    async fn from_request(req: Request, state: &AppState) -> Result<Self, PageError> {
        let (mut parts, body) = req.into_parts();
        let user = CurrentUser::from_request_parts(&mut parts, state).await?;
        let req = Request::from_parts(parts, body);
        let bytes = Bytes::from_request(req, state).await?;
        let csrf: CsrfField =
            serde_urlencoded::from_bytes(&bytes).unwrap_or(CsrfField { csrf_token: None });
        user.check_csrf(csrf.csrf_token.as_deref())?;
        let form = serde_urlencoded::from_bytes(&bytes).map_err(|e| {
            PageError::Status(
                axum::http::StatusCode::BAD_REQUEST,
                format!("Malformed form: {e}"),
            )
        })?;
        Ok(AuthForm { user, form })
    }
}

#[cfg(test)]
mod tests {
    use super::{csrf_matches, mask_csrf};

    #[test]
    fn masked_csrf_tokens_differ_each_time_and_still_check() {
        let token = "dG9rZW4tb2YtdGhlLXNlc3Npb24";
        let (a, b) = (mask_csrf(token), mask_csrf(token));
        assert_ne!(a, b);
        assert!(csrf_matches(&a, token) && csrf_matches(&b, token));
        assert!(csrf_matches(token, token), "the bare token still checks");
        assert!(!csrf_matches(
            &mask_csrf("another-token-of-same-len!!"),
            token
        ));
        assert!(!csrf_matches("", token) && !csrf_matches("!!", token));
    }
}
