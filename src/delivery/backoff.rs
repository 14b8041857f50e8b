//! Retry timing: exponential backoff with jitter, and `Retry-After` clamping.
//! Pure functions; randomness and time come in as arguments.

use std::time::Duration;

/// Jitter applied to every backoff: ±20%.
const JITTER: f64 = 0.2;

/// The delay before the retry that follows attempt `attempt` (1-based): `base * 2^(attempt-1)`
/// capped at `max`, then scaled by `1 + jitter` with `jitter` in [-0.2, 0.2].
///
/// `unit_random` is a number in [0, 1) (so tests can pin it).
pub fn backoff(attempt: u32, base: Duration, max: Duration, unit_random: f64) -> Duration {
    let exp = attempt.saturating_sub(1).min(32);
    let raw = base.saturating_mul(1u32 << exp.min(31)).min(max);
    let factor = 1.0 + JITTER * (2.0 * unit_random.clamp(0.0, 1.0) - 1.0);
    raw.mul_f64(factor)
}

/// The delay to honour for a `Retry-After` hint, clamped to `[computed, max]`: a receiver
/// may slow us down but not make us hammer it faster than our own backoff, nor park a
/// delivery longer than the target's cap.
pub fn clamp_retry_after(hint: Duration, computed: Duration, max: Duration) -> Duration {
    hint.max(computed).min(max.max(computed))
}

/// Parses a `Retry-After` value: delay-seconds or an HTTP-date (relative to `now`).
pub fn parse_retry_after(value: &str, now: std::time::SystemTime) -> Option<Duration> {
    let value = value.trim();
    if let Ok(secs) = value.parse::<u64>() {
        return Some(Duration::from_secs(secs));
    }
    // An HTTP-date is RFC 2822's fixed form in GMT (RFC 9110's IMF-fixdate).
    let at = jiff::fmt::rfc2822::DateTimeParser::new()
        .parse_timestamp(value)
        .ok()?;
    let at = std::time::SystemTime::try_from(at).ok()?;
    Some(at.duration_since(now).unwrap_or(Duration::ZERO))
}

#[cfg(test)]
mod tests {
    use super::*;

    const S: Duration = Duration::from_secs(1);

    #[test]
    fn doubles_and_caps() {
        let max = Duration::from_secs(300);
        // unit_random 0.5 means no jitter.
        let got: Vec<u64> = (1..=10)
            .map(|a| backoff(a, S, max, 0.5).as_secs())
            .collect();
        assert_eq!(got, vec![1, 2, 4, 8, 16, 32, 64, 128, 256, 300]);
        assert_eq!(backoff(1000, S, max, 0.5), max);
    }

    #[test]
    fn jitter_is_within_twenty_percent() {
        let max = Duration::from_secs(300);
        assert_eq!(backoff(3, S, max, 0.0), Duration::from_millis(3200));
        assert_eq!(backoff(3, S, max, 1.0), Duration::from_millis(4800));
    }

    #[test]
    fn retry_after_is_clamped() {
        let max = Duration::from_secs(300);
        let computed = Duration::from_secs(2);
        assert_eq!(
            clamp_retry_after(Duration::from_secs(1), computed, max),
            computed
        );
        assert_eq!(
            clamp_retry_after(Duration::from_secs(7), computed, max),
            Duration::from_secs(7)
        );
        assert_eq!(
            clamp_retry_after(Duration::from_secs(9999), computed, max),
            max
        );
    }

    #[test]
    fn parses_retry_after_forms() {
        let now = std::time::SystemTime::UNIX_EPOCH + Duration::from_secs(1_000_000_000);
        assert_eq!(
            parse_retry_after(" 120 ", now),
            Some(Duration::from_secs(120))
        );
        // 1_000_000_030 s after the epoch, as RFC 9110 spells an HTTP-date.
        let date = "Sun, 09 Sep 2001 01:47:10 GMT";
        assert_eq!(parse_retry_after(date, now), Some(Duration::from_secs(30)));
        assert_eq!(parse_retry_after("soon", now), None);
    }
}
