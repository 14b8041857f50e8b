//! Users, passwords, sessions and API keys.
//!
//! Passwords are argon2id hashes, verified on the blocking pool (about 30 ms of CPU each).
//! Session cookies carry a random token; the main file stores only HMAC(session key,
//! token), so a copy of the file holds no usable session. API key secrets are random
//! 256-bit values, stored as SHA-256 (a slow hash buys nothing for random secrets).

use std::sync::Arc;

use argon2::Argon2;
use argon2::password_hash::{PasswordHasher, PasswordVerifier};
use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use hmac::{Hmac, KeyInit, Mac};
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;
use uuid::Uuid;

use super::{Service, ServiceError, ServiceResult, clean_name};
use crate::model::{ApiKey, MAX_PASSWORD, Session, User, check_password_length, now_ms};
use crate::store::Store;

/// How long a login lasts.
pub const SESSION_TTL_MS: i64 = 7 * 24 * 3600 * 1000;
/// Prefix of API key tokens, so leaked keys are recognisable.
const API_KEY_PREFIX: &str = "whk_";
/// How long a verified Basic credential is remembered.
const BASIC_CACHE_TTL: std::time::Duration = std::time::Duration::from_secs(60);
/// Most remembered Basic credentials.
const BASIC_CACHE_MAX: usize = 256;
/// API key `last_used_at` is written at most this often.
const TOUCH_INTERVAL_MS: i64 = 60_000;

/// An opaque session token (the cookie value).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SessionToken(pub String);

/// A successful login.
#[derive(Debug, Clone)]
pub struct LoginOutcome {
    /// The user.
    pub user: User,
    /// The new session's token.
    pub token: SessionToken,
}

/// How a caller proved who they are; some actions need more than others.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Authentication {
    /// The password: HTTP Basic, or the login form that opened the caller's session.
    Password,
    /// A bearer API key.
    ApiKey,
}

/// A new API key; `token` is shown once and never stored.
#[derive(Debug, Clone)]
pub struct ApiKeyCreated {
    /// The stored key.
    pub key: ApiKey,
    /// The full bearer token.
    pub token: String,
}

fn random_bytes<const N: usize>() -> [u8; N] {
    let mut b = [0u8; N];
    rand::fill(&mut b[..]);
    b
}

/// Gives `username` a new random password and returns it (the `webhooker reset-password`
/// command, run on a stopped server). Ends the user's sessions, as a password change does,
/// and with `revoke_api_keys` their API keys too; otherwise the keys keep working.
pub fn reset_password(
    store: &Store,
    username: &str,
    revoke_api_keys: bool,
) -> ServiceResult<PasswordReset> {
    let user = store
        .main
        .user_by_name(username.trim())?
        .ok_or(ServiceError::NotFound("user"))?;
    let password = random_password();
    store
        .main
        .set_password(user.id, hash_password(&password)?, revoke_api_keys)?;
    let api_keys = store.main.api_keys_of(user.id)?.len();
    Ok(PasswordReset { password, api_keys })
}

/// What [`reset_password`] did.
#[derive(Debug)]
pub struct PasswordReset {
    /// The new password, shown once.
    pub password: String,
    /// The user's API keys still valid afterwards.
    pub api_keys: usize,
}

/// A random password (first run, reset): 20 characters from a CSPRNG.
fn random_password() -> String {
    const ALPHABET: &[u8] = b"ABCDEFGHJKLMNPQRSTUVWXYZabcdefghijkmnopqrstuvwxyz23456789";
    use rand::RngExt;
    let mut rng = rand::rng();
    (0..20)
        .map(|_| ALPHABET[rng.random_range(0..ALPHABET.len())] as char)
        .collect()
}

fn hash_password(password: &str) -> ServiceResult<String> {
    Argon2::default()
        .hash_password(password.as_bytes())
        .map(|h| h.to_string())
        .map_err(|e| ServiceError::Internal(format!("hashing password: {e}")))
}

fn password_matches(password: &str, phc: &str) -> bool {
    Argon2::default()
        .verify_password(password.as_bytes(), phc)
        .is_ok()
}

/// A Basic credential that passed the argon2 check: whose it is, which password hash it
/// matched (SHA-256 of the PHC string) and when.
#[derive(Debug, Clone, Copy)]
pub(super) struct RememberedBasic {
    user_id: Uuid,
    hash_fingerprint: [u8; 32],
    at: std::time::Instant,
}

impl RememberedBasic {
    fn new(user: &User) -> RememberedBasic {
        RememberedBasic {
            user_id: user.id,
            hash_fingerprint: hash_fingerprint(&user.password_hash),
            at: std::time::Instant::now(),
        }
    }
}

fn hash_fingerprint(phc: &str) -> [u8; 32] {
    Sha256::digest(phc.as_bytes()).into()
}

impl Service {
    /// HMAC-SHA256 under the session key, domain-separated by `purpose`.
    pub fn mac(&self, purpose: &str, data: &[u8]) -> [u8; 32] {
        let mut mac = <Hmac<Sha256> as KeyInit>::new_from_slice(&self.session_key)
            .expect("BUG: HMAC accepts keys of any length");
        mac.update(purpose.as_bytes());
        mac.update(&[0]);
        mac.update(data);
        mac.finalize().into_bytes().into()
    }

    async fn argon2_permit(&self) -> ServiceResult<tokio::sync::SemaphorePermit<'_>> {
        self.argon2_permits
            .acquire()
            .await
            .map_err(|e| ServiceError::Internal(e.to_string()))
    }

    /// First run: creates `admin` when no user exists. Returns the password when it was
    /// generated here (the caller prints it once); `None` when set from the environment or
    /// when users already exist. A configured one must pass the rules of a new password
    /// (`Invalid`, naming `WEBHOOKER_ADMIN_PASSWORD`).
    pub async fn ensure_admin(&self, configured: Option<String>) -> ServiceResult<Option<String>> {
        self.blocking(move |store| {
            if store.main.user_count()? > 0 {
                return Ok(None);
            }
            let (password, generated) = match configured {
                Some(p) => {
                    // The rules of any new password (config has refused one too long).
                    check_password_length(&p)
                        .map_err(|e| ServiceError::invalid("WEBHOOKER_ADMIN_PASSWORD", e))?;
                    (p, false)
                }
                None => (random_password(), true),
            };
            let user = User {
                id: Uuid::new_v4(),
                username: "admin".into(),
                password_hash: hash_password(&password)?,
                created_at: now_ms(),
            };
            let inserted = store.main.insert_user(&user)?;
            Ok((inserted && generated).then_some(password))
        })
        .await
    }

    /// Checks a username and password (argon2, on the blocking pool).
    pub async fn verify_password(&self, username: &str, password: &str) -> ServiceResult<User> {
        if password.len() > MAX_PASSWORD {
            return Err(ServiceError::Unauthorized);
        }
        let username = username.trim().to_string();
        let password = password.to_string();
        let _permit = self.argon2_permit().await?;
        self.blocking(move |store| {
            let user = store.main.user_by_name(&username)?;
            match user {
                Some(u) if password_matches(&password, &u.password_hash) => Ok(u),
                Some(_) => Err(ServiceError::Unauthorized),
                None => {
                    // Spend the same time as a real check, so timing does not reveal names.
                    password_matches(&password, DUMMY_HASH);
                    Err(ServiceError::Unauthorized)
                }
            }
        })
        .await
    }

    /// Verifies HTTP Basic credentials, remembering a success for a minute. Only a check
    /// that runs argon2 asks `admit` first (the caller's login limit); a remembered success
    /// does not, and identical credentials arriving together wait for the first check
    /// instead of each counting as an attempt.
    pub async fn verify_basic(
        &self,
        username: &str,
        password: &str,
        admit: impl FnOnce() -> bool + Send,
    ) -> ServiceResult<User> {
        let mut material = Vec::with_capacity(username.len() + password.len() + 1);
        material.extend_from_slice(username.as_bytes());
        material.push(0);
        material.extend_from_slice(password.as_bytes());
        let key = self.mac("basic-cache", &material);
        if let Some(user) = self.remembered_basic(&key).await? {
            return Ok(user);
        }
        let gate = BasicGate::enter(&self.basic_gates, key);
        let _turn = gate.gate.lock().await;
        if let Some(user) = self.remembered_basic(&key).await? {
            return Ok(user);
        }
        if !admit() {
            return Err(ServiceError::TooManyAttempts);
        }
        let user = self.verify_password(username, password).await?;
        let mut cache = self.verified.lock().unwrap_or_else(|p| p.into_inner());
        if cache.len() >= BASIC_CACHE_MAX {
            cache.clear();
        }
        cache.insert(key, RememberedBasic::new(&user));
        Ok(user)
    }

    /// The user of credentials verified within the last minute, if the user's password
    /// hash is still the one they were verified against.
    async fn remembered_basic(&self, key: &[u8; 32]) -> ServiceResult<Option<User>> {
        let cached = self
            .verified
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(key)
            .filter(|r| r.at.elapsed() < BASIC_CACHE_TTL)
            .copied();
        let Some(remembered) = cached else {
            return Ok(None);
        };
        let user = self
            .blocking(move |store| Ok(store.main.user(remembered.user_id)?))
            .await?;
        // A check that read the old hash while a password change was committing may have
        // been remembered after the change cleared the cache: the hash tells it apart.
        Ok(user.filter(|u| hash_fingerprint(&u.password_hash) == remembered.hash_fingerprint))
    }

    /// Verifies credentials and opens a session.
    pub async fn login(&self, username: &str, password: &str) -> ServiceResult<LoginOutcome> {
        let user = self.verify_password(username, password).await?;
        let token = self.open_session(user.id).await?;
        Ok(LoginOutcome { user, token })
    }

    async fn open_session(&self, user_id: Uuid) -> ServiceResult<SessionToken> {
        let token = URL_SAFE_NO_PAD.encode(random_bytes::<32>());
        let key = self.mac("session", token.as_bytes());
        let now = now_ms();
        let session = Session {
            user_id,
            created_at: now,
            expires_at: now + SESSION_TTL_MS,
        };
        self.blocking(move |store| Ok(store.main.insert_session(&key, &session)?))
            .await?;
        Ok(SessionToken(token))
    }

    /// The user a session token belongs to, if the session is live.
    pub async fn session_user(&self, token: &str) -> ServiceResult<Option<User>> {
        if token.len() > 100 {
            return Ok(None);
        }
        let key = self.mac("session", token.as_bytes());
        self.blocking(move |store| {
            let Some(session) = store.main.session(&key)? else {
                return Ok(None);
            };
            if session.expires_at <= now_ms() {
                return Ok(None);
            }
            Ok(store.main.user(session.user_id)?)
        })
        .await
    }

    /// Ends a session.
    pub async fn logout(&self, token: &str) -> ServiceResult<()> {
        let key = self.mac("session", token.as_bytes());
        self.blocking(move |store| Ok(store.main.delete_session(&key)?))
            .await
    }

    /// Changes a password after checking the current one. Ends every session of the user
    /// and opens a fresh one for the caller; with `revoke_api_keys`, also revokes every
    /// API key of the user in the same transaction (otherwise they keep working).
    pub async fn change_password(
        &self,
        user: &User,
        current: &str,
        new: &str,
        revoke_api_keys: bool,
        admit: impl FnOnce() -> bool + Send,
    ) -> ServiceResult<SessionToken> {
        check_password_length(new).map_err(|e| ServiceError::invalid("new_password", e))?;
        // The current password can be guessed here as at login: `admit` counts the check
        // against the caller's login limit, as for API Basic auth.
        if !admit() {
            return Err(ServiceError::TooManyAttempts);
        }
        self.verify_password(&user.username, current)
            .await
            .map_err(|_| ServiceError::invalid("current_password", "is not correct"))?;
        let new = new.to_string();
        let id = user.id;
        let _permit = self.argon2_permit().await?;
        self.blocking(move |store| {
            let hash = hash_password(&new)?;
            Ok(store.main.set_password(id, hash, revoke_api_keys)?)
        })
        .await?;
        // Basic credentials remembered against the old hash stop counting with this commit
        // (see `remembered_basic`); clearing them afterwards frees their room.
        self.verified
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clear();
        self.open_session(id).await
    }

    /// Creates an API key for a user who proved who they are `by` the password: a key
    /// may not mint keys, or a leaked one could outlive its own revocation.
    pub async fn create_api_key(
        &self,
        user_id: Uuid,
        name: &str,
        by: Authentication,
    ) -> ServiceResult<ApiKeyCreated> {
        if by == Authentication::ApiKey {
            return Err(ServiceError::Forbidden(
                "an API key cannot create API keys; authenticate with the password (HTTP Basic) or use the account page",
            ));
        }
        let name = clean_name("name", name)?;
        let secret = URL_SAFE_NO_PAD.encode(random_bytes::<32>());
        let key = ApiKey {
            id: Uuid::new_v4(),
            user_id,
            name,
            secret_hash: Sha256::digest(secret.as_bytes()).to_vec(),
            created_at: now_ms(),
            last_used_at: None,
        };
        let token = format!("{API_KEY_PREFIX}{}_{secret}", key.id.simple());
        let stored = key.clone();
        self.blocking(move |store| Ok(store.main.insert_api_key(&stored)?))
            .await?;
        Ok(ApiKeyCreated { key, token })
    }

    /// A user's API keys.
    pub async fn api_keys(&self, user_id: Uuid) -> ServiceResult<Vec<ApiKey>> {
        self.blocking(move |store| Ok(store.main.api_keys_of(user_id)?))
            .await
    }

    /// Revokes one of the user's API keys.
    pub async fn revoke_api_key(&self, user_id: Uuid, id: Uuid) -> ServiceResult<()> {
        self.blocking(move |store| {
            if store.main.delete_api_key(user_id, id)? {
                Ok(())
            } else {
                Err(ServiceError::NotFound("API key"))
            }
        })
        .await
    }

    /// The user behind a bearer token.
    pub async fn authenticate_api_key(&self, token: &str) -> ServiceResult<User> {
        let parsed = token
            .strip_prefix(API_KEY_PREFIX)
            .and_then(|rest| rest.split_once('_'))
            .and_then(|(id, secret)| Some((Uuid::try_parse(id).ok()?, secret.to_string())));
        let Some((id, secret)) = parsed else {
            return Err(ServiceError::Unauthorized);
        };
        self.blocking(move |store| {
            let key = store.main.api_key(id)?.ok_or(ServiceError::Unauthorized)?;
            let hash = Sha256::digest(secret.as_bytes());
            if !bool::from(hash.as_slice().ct_eq(&key.secret_hash)) {
                return Err(ServiceError::Unauthorized);
            }
            let user = store
                .main
                .user(key.user_id)?
                .ok_or(ServiceError::Unauthorized)?;
            let now = now_ms();
            if key.last_used_at.is_none_or(|t| now - t > TOUCH_INTERVAL_MS)
                && let Err(e) = store.main.touch_api_key(id, now)
            {
                tracing::warn!(error = %e, "could not record API key use");
            }
            Ok(user)
        })
        .await
    }
}

/// A valid argon2id hash of a random string, checked against when a username is unknown.
const DUMMY_HASH: &str = "$argon2id$v=19$m=19456,t=2,p=1$c29tZXNhbHRzb21lc2FsdA$Yq0y1/0q0j2gQ3X3e9N2P1b8m8e0k1y9rQ3Cq0Gm0xA";

/// A place in line to check one credential; leaving it removes the gate when nobody else
/// waits (also when the request is dropped midway).
struct BasicGate<'a> {
    gates: &'a std::sync::Mutex<super::BasicGates>,
    key: [u8; 32],
    gate: Arc<tokio::sync::Mutex<()>>,
}

impl<'a> BasicGate<'a> {
    fn enter(gates: &'a std::sync::Mutex<super::BasicGates>, key: [u8; 32]) -> BasicGate<'a> {
        let gate = gates
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .entry(key)
            .or_default()
            .clone();
        BasicGate { gates, key, gate }
    }
}

impl Drop for BasicGate<'_> {
    fn drop(&mut self) {
        let mut gates = self.gates.lock().unwrap_or_else(|p| p.into_inner());
        // Ours and the map's: nobody else is waiting, so the gate can go.
        if Arc::strong_count(&self.gate) == 2 {
            gates.remove(&self.key);
        }
    }
}
