//! Login rate limit: 5 attempts per minute per client IP. An IPv6 client counts
//! by its /64, the block one subscriber usually gets, so rotating through its own addresses
//! does not multiply its attempts.

use std::collections::{HashMap, VecDeque};
use std::net::IpAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crate::web::client_key;

/// Attempts allowed per window.
const MAX_ATTEMPTS: usize = 5;
/// The window.
const WINDOW: Duration = Duration::from_secs(60);
/// Above this many tracked clients, stale entries are swept.
const SWEEP_AT: usize = 10_000;

/// Sliding-window counter of login attempts per client (see [`client_key`]); cheap to
/// clone.
#[derive(Debug, Clone, Default)]
pub struct LoginLimiter {
    attempts: Arc<Mutex<HashMap<IpAddr, VecDeque<Instant>>>>,
}

impl LoginLimiter {
    /// Records an attempt from `ip` at `now`; false when its client is over the limit (the
    /// attempt is not counted then, so waiting a minute always helps).
    pub fn allow(&self, ip: IpAddr, now: Instant) -> bool {
        let mut map = self.attempts.lock().unwrap_or_else(|p| p.into_inner());
        if map.len() > SWEEP_AT {
            map.retain(|_, q| q.back().is_some_and(|t| now.duration_since(*t) < WINDOW));
        }
        let q = map.entry(client_key(ip)).or_default();
        while q.front().is_some_and(|t| now.duration_since(*t) >= WINDOW) {
            q.pop_front();
        }
        if q.len() >= MAX_ATTEMPTS {
            return false;
        }
        q.push_back(now);
        true
    }

    /// Whether the client of `ip` is over the limit at `now`; counts nothing.
    pub fn is_limited(&self, ip: IpAddr, now: Instant) -> bool {
        let map = self.attempts.lock().unwrap_or_else(|p| p.into_inner());
        map.get(&client_key(ip)).is_some_and(|q| {
            q.iter()
                .filter(|t| now.duration_since(**t) < WINDOW)
                .count()
                >= MAX_ATTEMPTS
        })
    }

    /// How long until the client of `ip` may try again at `now` (zero when it may now).
    pub fn wait(&self, ip: IpAddr, now: Instant) -> Duration {
        let map = self.attempts.lock().unwrap_or_else(|p| p.into_inner());
        let Some(q) = map.get(&client_key(ip)) else {
            return Duration::ZERO;
        };
        let recent: Vec<&Instant> = q
            .iter()
            .filter(|t| now.duration_since(**t) < WINDOW)
            .collect();
        if recent.len() < MAX_ATTEMPTS {
            return Duration::ZERO;
        }
        // The attempt that must age out of the window for the client to be under the limit.
        let oldest = recent[recent.len() - MAX_ATTEMPTS];
        (*oldest + WINDOW).saturating_duration_since(now)
    }

    /// One password check about to happen for the client `ip` (`None`: unknown, never
    /// limited).
    pub fn guess(&self, ip: Option<IpAddr>) -> PasswordGuess<'_> {
        PasswordGuess {
            limiter: self,
            ip,
            at: Instant::now(),
            counted: AtomicBool::new(false),
        }
    }

    /// Gives back the attempt counted at `now` (see [`PasswordGuess::succeeded`]).
    fn refund(&self, ip: IpAddr, now: Instant) {
        let mut map = self.attempts.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(q) = map.get_mut(&client_key(ip))
            && let Some(i) = q.iter().rposition(|t| *t == now)
        {
            q.remove(i);
        }
    }
}

/// One password check against the limit, for checks that succeed often (API Basic auth,
/// a password change, `/metrics`): [`admit`](Self::admit) counts it just before the slow check, so
/// concurrent guesses cannot all slip past the limit, and [`succeeded`](Self::succeeded)
/// gives a counted one back.
#[derive(Debug)]
pub struct PasswordGuess<'a> {
    limiter: &'a LoginLimiter,
    ip: Option<IpAddr>,
    at: Instant,
    counted: AtomicBool,
}

impl PasswordGuess<'_> {
    /// Whether the client is over the limit now, counting nothing. Asked before anything
    /// else about a credential (even one remembered as right), so that a limited client
    /// gets the same answer for every password and learns nothing from it.
    pub fn limited(&self) -> bool {
        self.ip
            .is_some_and(|ip| self.limiter.is_limited(ip, self.at))
    }

    /// Counts the check; false when the client is over the limit (nothing may be checked).
    pub fn admit(&self) -> bool {
        self.counted.store(true, Ordering::Relaxed);
        self.ip.is_none_or(|ip| self.limiter.allow(ip, self.at))
    }

    /// The password was right: the check, if counted, no longer counts.
    pub fn succeeded(&self) {
        if let Some(ip) = self.ip
            && self.counted.load(Ordering::Relaxed)
        {
            self.limiter.refund(ip, self.at);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn five_per_minute_per_ip() {
        let l = LoginLimiter::default();
        let a: IpAddr = "192.0.2.1".parse().unwrap();
        let b: IpAddr = "192.0.2.2".parse().unwrap();
        let t0 = Instant::now();
        for _ in 0..5 {
            assert!(l.allow(a, t0));
        }
        assert!(!l.allow(a, t0));
        assert!(l.is_limited(a, t0) && !l.is_limited(b, t0));
        assert!(l.allow(b, t0));
        assert_eq!(l.wait(a, t0), WINDOW);
        assert_eq!(
            l.wait(a, t0 + Duration::from_secs(45)),
            Duration::from_secs(15)
        );
        assert_eq!(l.wait(b, t0), Duration::ZERO);
        assert!(!l.is_limited(a, t0 + WINDOW));
        assert!(l.allow(a, t0 + WINDOW));
        // A refunded attempt does not count.
        let t1 = t0 + WINDOW * 3;
        for _ in 0..10 {
            assert!(l.allow(b, t1));
            l.refund(b, t1);
        }
    }

    #[test]
    fn ipv6_counts_per_64_and_mapped_ipv4_as_ipv4() {
        let l = LoginLimiter::default();
        let t0 = Instant::now();
        for i in 1..=5 {
            let ip: IpAddr = format!("2001:db8:1:2::{i}").parse().unwrap();
            assert!(l.allow(ip, t0));
        }
        let same_64: IpAddr = "2001:db8:1:2:ffff::9".parse().unwrap();
        assert!(
            !l.allow(same_64, t0),
            "a sixth address in the same /64 is refused"
        );
        let other_64: IpAddr = "2001:db8:1:3::1".parse().unwrap();
        assert!(l.allow(other_64, t0));

        let v4: IpAddr = "192.0.2.7".parse().unwrap();
        let mapped: IpAddr = "::ffff:192.0.2.7".parse().unwrap();
        for _ in 0..5 {
            assert!(l.allow(v4, t0));
        }
        assert!(!l.allow(mapped, t0));
    }
}
