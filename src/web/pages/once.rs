//! One-time secrets for the page after a POST (POST → redirect → GET): a new API key's
//! token is handed to the next page of the same session and then forgotten, so a reload
//! neither repeats the POST nor shows the secret again.
//!
//! In memory only, never on disk: a restart in between loses the secret (the key can be
//! revoked and created again). Bounded: at most [`MAX_PENDING`] secrets at once (the
//! oldest goes first), each kept at most [`KEEP_FOR`].

use std::collections::VecDeque;
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// Most secrets waiting for their next page, over all sessions.
pub const MAX_PENDING: usize = 256;
/// How long a secret waits for its next page.
pub const KEEP_FOR: Duration = Duration::from_secs(300);

/// A secret to show once.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OneTimeSecret {
    /// What it is called (the key's name).
    pub name: String,
    /// The secret itself.
    pub value: String,
}

/// Secrets waiting for their session's next page, keyed by a MAC of the session token
/// (the session token itself is not kept).
#[derive(Debug, Default)]
pub struct OneTimeSecrets {
    pending: Mutex<VecDeque<(Vec<u8>, Instant, OneTimeSecret)>>,
}

impl OneTimeSecrets {
    /// Keeps `secret` for the next [`take`](Self::take) of `session`, replacing one it had.
    pub fn put(&self, session: Vec<u8>, secret: OneTimeSecret, now: Instant) {
        let mut pending = self.lock();
        pending.retain(|(s, at, _)| *s != session && now.duration_since(*at) < KEEP_FOR);
        if pending.len() >= MAX_PENDING {
            pending.pop_front();
        }
        pending.push_back((session, now, secret));
    }

    /// The secret left for `session`, which is forgotten now.
    pub fn take(&self, session: &[u8], now: Instant) -> Option<OneTimeSecret> {
        let mut pending = self.lock();
        let i = pending.iter().position(|(s, _, _)| s == session)?;
        let (_, at, secret) = pending.remove(i)?;
        (now.duration_since(at) < KEEP_FOR).then_some(secret)
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, VecDeque<(Vec<u8>, Instant, OneTimeSecret)>> {
        self.pending.lock().unwrap_or_else(|p| p.into_inner())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn secret(v: &str) -> OneTimeSecret {
        OneTimeSecret {
            name: "k".into(),
            value: v.into(),
        }
    }

    #[test]
    fn shown_once_to_its_session_only_and_bounded() {
        let store = OneTimeSecrets::default();
        let t0 = Instant::now();
        store.put(b"a".to_vec(), secret("1"), t0);
        assert_eq!(store.take(b"b", t0), None);
        assert_eq!(store.take(b"a", t0), Some(secret("1")));
        assert_eq!(store.take(b"a", t0), None, "once");

        store.put(b"a".to_vec(), secret("2"), t0);
        assert_eq!(store.take(b"a", t0 + KEEP_FOR), None, "expired");

        for i in 0..(MAX_PENDING + 10) {
            store.put(i.to_le_bytes().to_vec(), secret("x"), t0);
        }
        assert_eq!(store.lock().len(), MAX_PENDING);
        assert_eq!(
            store.take(&0usize.to_le_bytes(), t0),
            None,
            "oldest dropped"
        );
    }
}
