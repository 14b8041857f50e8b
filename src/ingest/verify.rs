//! Sender verification: whether a request carries its sender's signature or credential,
//! checked before anything is written, so a forged request costs no disk write and starts
//! no delivery.
//!
//! Pure and in memory: the webhook's [`Verification`] from the catalog, the request's
//! headers and body, and the time go in; a [`Rejection`] naming what was wrong comes out.
//! It costs at most one HMAC-SHA256 pass over the body (`none` costs a match). Every
//! comparison of a secret-derived value is constant-time; static credentials are compared
//! as SHA-256 digests, so not even their length shows in the timing.

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use hmac::{Hmac, KeyInit, Mac};
use sha2::{Digest, Sha256};
use subtle::{Choice, ConstantTimeEq};

use crate::model::{Millis, Secret, Verification};

/// How far a signed timestamp may be from our clock, either way, in seconds. The senders'
/// own libraries use 5 minutes; more would widen the window for replays.
pub const TIMESTAMP_TOLERANCE_SECS: u64 = 5 * 60;

/// Why a request was refused. The text names the header and what was wrong with it, never
/// the secret or the expected value.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Rejection {
    /// A header the scheme needs is absent.
    #[error("missing header {0}")]
    MissingHeader(&'static str),
    /// A header is present but not in the scheme's format.
    #[error("malformed header {0}")]
    MalformedHeader(&'static str),
    /// The signature does not match the body under the webhook's secret.
    #[error("bad signature")]
    BadSignature,
    /// The signed timestamp is more than 5 minutes from now (a replay, or a skewed clock).
    #[error("stale timestamp")]
    StaleTimestamp,
    /// A static token, header value or username and password do not match.
    #[error("wrong credentials")]
    BadCredentials,
}

impl Rejection {
    /// The reason as a metric label.
    pub fn label(&self) -> &'static str {
        match self {
            Rejection::MissingHeader(_) => "missing_header",
            Rejection::MalformedHeader(_) => "malformed_header",
            Rejection::BadSignature => "bad_signature",
            Rejection::StaleTimestamp => "stale_timestamp",
            Rejection::BadCredentials => "bad_credentials",
        }
    }
}

/// The header carrying the static credential of `verification` (`gitlab`, `header`,
/// `basic`): a secret shared with webhooker alone, so once checked it is dropped from the
/// request. Signatures (the other kinds) prove one body only and are kept.
pub fn credential_header(verification: &Verification) -> Option<&str> {
    match verification {
        Verification::Gitlab { .. } => Some("X-Gitlab-Token"),
        Verification::Header { name, .. } => Some(name),
        Verification::Basic { .. } => Some("Authorization"),
        _ => None,
    }
}

/// Checks a request against the webhook's verification at `now`. `headers` are in arrival
/// order; where a header is repeated, its first value counts.
pub fn verify(
    verification: &Verification,
    headers: &[(String, Vec<u8>)],
    body: &[u8],
    now: Millis,
) -> Result<(), Rejection> {
    let now_secs = now.div_euclid(1000);
    match verification {
        Verification::None => Ok(()),
        Verification::Github { secret } => {
            const NAME: &str = "X-Hub-Signature-256";
            let value = require(headers, NAME)?;
            let hex = value
                .strip_prefix(b"sha256=")
                .ok_or(Rejection::MalformedHeader(NAME))?;
            let given = decode_hex(hex).ok_or(Rejection::MalformedHeader(NAME))?;
            check_mac(secret.expose().as_bytes(), &[body], [given.as_slice()])
        }
        Verification::Gitea { secret } => {
            // Forgejo sends the same signature under both names.
            const NAME: &str = "X-Gitea-Signature";
            let value = header(headers, NAME)
                .or_else(|| header(headers, "X-Forgejo-Signature"))
                .ok_or(Rejection::MissingHeader(NAME))?;
            let given = decode_hex(value).ok_or(Rejection::MalformedHeader(NAME))?;
            check_mac(secret.expose().as_bytes(), &[body], [given.as_slice()])
        }
        Verification::Gitlab { token } => {
            let value = require(headers, "X-Gitlab-Token")?;
            check_secret(value, token)
        }
        Verification::Stripe { secret } => stripe(secret, headers, body, now_secs),
        Verification::Slack { secret } => {
            const TIMESTAMP: &str = "X-Slack-Request-Timestamp";
            const SIGNATURE: &str = "X-Slack-Signature";
            let ts = require(headers, TIMESTAMP)?;
            let seconds = parse_seconds(ts).ok_or(Rejection::MalformedHeader(TIMESTAMP))?;
            let value = require(headers, SIGNATURE)?;
            let hex = value
                .strip_prefix(b"v0=")
                .ok_or(Rejection::MalformedHeader(SIGNATURE))?;
            let given = decode_hex(hex).ok_or(Rejection::MalformedHeader(SIGNATURE))?;
            check_fresh(seconds, now_secs)?;
            check_mac(
                secret.expose().as_bytes(),
                &[b"v0:", ts, b":", body],
                [given.as_slice()],
            )
        }
        Verification::StandardWebhooks { secret } => {
            // Svix senders spell the same headers `svix-*`.
            let names = if header(headers, "webhook-id").is_some() {
                ["webhook-id", "webhook-timestamp", "webhook-signature"]
            } else if header(headers, "svix-id").is_some() {
                ["svix-id", "svix-timestamp", "svix-signature"]
            } else {
                return Err(Rejection::MissingHeader("webhook-id"));
            };
            let [id_name, ts_name, sig_name] = names;
            let id = require(headers, id_name)?;
            let ts = require(headers, ts_name)?;
            let seconds = parse_seconds(ts).ok_or(Rejection::MalformedHeader(ts_name))?;
            let signatures = require(headers, sig_name)?;
            // A space-separated list of `version,base64`; only v1 is symmetric HMAC.
            let given: Vec<Vec<u8>> = signatures
                .split(|b| *b == b' ')
                .filter_map(|sig| sig.strip_prefix(b"v1,"))
                .filter_map(|b64| STANDARD.decode(b64).ok())
                .collect();
            if given.is_empty() {
                return Err(Rejection::MalformedHeader(sig_name));
            }
            check_fresh(seconds, now_secs)?;
            let seconds = seconds.to_string();
            check_mac(
                secret.bytes(),
                &[id, b".", seconds.as_bytes(), b".", body],
                given.iter().map(Vec::as_slice),
            )
        }
        Verification::Header { name, value } => {
            let got = header(headers, name).ok_or(Rejection::BadCredentials)?;
            check_secret(got, value)
        }
        Verification::Basic { username, password } => {
            const NAME: &str = "Authorization";
            let value = require(headers, NAME)?;
            let (scheme, encoded) = value
                .split_at_checked(6)
                .ok_or(Rejection::MalformedHeader(NAME))?;
            if !scheme.eq_ignore_ascii_case(b"basic ") {
                return Err(Rejection::MalformedHeader(NAME));
            }
            let decoded = STANDARD
                .decode(encoded.trim_ascii())
                .map_err(|_| Rejection::MalformedHeader(NAME))?;
            let colon = decoded
                .iter()
                .position(|b| *b == b':')
                .ok_or(Rejection::MalformedHeader(NAME))?;
            let (user, pass) = (&decoded[..colon], &decoded[colon + 1..]);
            // Both halves are always compared: which one was wrong does not show.
            let same = digest_eq(user, username.as_bytes())
                & digest_eq(pass, password.expose().as_bytes());
            if bool::from(same) {
                Ok(())
            } else {
                Err(Rejection::BadCredentials)
            }
        }
    }
}

/// Stripe: `Stripe-Signature: t=<seconds>,v1=<hex>[,v1=<hex>…][,v0=…]`, HMAC-SHA256 of
/// `{t}.{body}` under the signing secret as given (`whsec_…`, not decoded).
fn stripe(
    secret: &Secret,
    headers: &[(String, Vec<u8>)],
    body: &[u8],
    now_secs: i64,
) -> Result<(), Rejection> {
    const NAME: &str = "Stripe-Signature";
    let value = require(headers, NAME)?;
    let mut timestamp = None;
    let mut given = Vec::new();
    for item in value.split(|b| *b == b',') {
        let item = item.trim_ascii();
        if let Some(t) = item.strip_prefix(b"t=") {
            timestamp = Some(t);
        } else if let Some(hex) = item.strip_prefix(b"v1=") {
            // A candidate that is not hex cannot match; the others still may.
            given.extend(decode_hex(hex));
        }
    }
    let ts = timestamp.ok_or(Rejection::MalformedHeader(NAME))?;
    let seconds = parse_seconds(ts).ok_or(Rejection::MalformedHeader(NAME))?;
    if given.is_empty() {
        return Err(Rejection::MalformedHeader(NAME));
    }
    check_fresh(seconds, now_secs)?;
    check_mac(
        secret.expose().as_bytes(),
        &[ts, b".", body],
        given.iter().map(Vec::as_slice),
    )
}

/// The first value of header `name` (any case).
fn header<'a>(headers: &'a [(String, Vec<u8>)], name: &str) -> Option<&'a [u8]> {
    headers
        .iter()
        .find(|(n, _)| n.eq_ignore_ascii_case(name))
        .map(|(_, v)| v.trim_ascii())
}

fn require<'a>(
    headers: &'a [(String, Vec<u8>)],
    name: &'static str,
) -> Result<&'a [u8], Rejection> {
    header(headers, name).ok_or(Rejection::MissingHeader(name))
}

fn parse_seconds(text: &[u8]) -> Option<i64> {
    std::str::from_utf8(text).ok()?.parse().ok()
}

fn check_fresh(seconds: i64, now_secs: i64) -> Result<(), Rejection> {
    if seconds.abs_diff(now_secs) <= TIMESTAMP_TOLERANCE_SECS {
        Ok(())
    } else {
        Err(Rejection::StaleTimestamp)
    }
}

/// Whether any of `given` is HMAC-SHA256(`key`, the concatenated `parts`); every candidate
/// is compared in constant time.
fn check_mac<'a>(
    key: &[u8],
    parts: &[&[u8]],
    given: impl IntoIterator<Item = &'a [u8]>,
) -> Result<(), Rejection> {
    let mut mac = <Hmac<Sha256> as KeyInit>::new_from_slice(key)
        .expect("BUG: HMAC accepts keys of any length");
    for part in parts {
        mac.update(part);
    }
    let expected = mac.finalize().into_bytes();
    let matched = given
        .into_iter()
        .fold(Choice::from(0), |any, g| any | expected.as_slice().ct_eq(g));
    if bool::from(matched) {
        Ok(())
    } else {
        Err(Rejection::BadSignature)
    }
}

fn check_secret(given: &[u8], expected: &Secret) -> Result<(), Rejection> {
    if bool::from(digest_eq(given, expected.expose().as_bytes())) {
        Ok(())
    } else {
        Err(Rejection::BadCredentials)
    }
}

/// Constant-time equality of SHA-256 digests: the time depends on neither where the values
/// differ nor how long the expected one is.
fn digest_eq(a: &[u8], b: &[u8]) -> Choice {
    Sha256::digest(a)
        .as_slice()
        .ct_eq(Sha256::digest(b).as_slice())
}

/// Lower- or upper-case hex; `None` for anything else (or an odd length).
fn decode_hex(hex: &[u8]) -> Option<Vec<u8>> {
    fn nibble(c: u8) -> Option<u8> {
        match c {
            b'0'..=b'9' => Some(c - b'0'),
            b'a'..=b'f' => Some(c - b'a' + 10),
            b'A'..=b'F' => Some(c - b'A' + 10),
            _ => None,
        }
    }
    if !hex.len().is_multiple_of(2) {
        return None;
    }
    hex.chunks_exact(2)
        .map(|pair| Some(nibble(pair[0])? << 4 | nibble(pair[1])?))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::SigningKey;

    fn h(pairs: &[(&str, &str)]) -> Vec<(String, Vec<u8>)> {
        pairs
            .iter()
            .map(|(n, v)| (n.to_string(), v.as_bytes().to_vec()))
            .collect()
    }

    const NOW: Millis = 1_700_000_000_000;

    /// GitHub's documented example: secret "It's a Secret to Everybody", body
    /// "Hello, World!".
    #[test]
    fn github_documented_example() {
        let v = Verification::Github {
            secret: Secret::new("It's a Secret to Everybody"),
        };
        let sig = "sha256=757107ea0eb2509fc211221cce984b8a37570b6d7586c22c46f4379c8b043e17";
        let ok = h(&[("x-hub-signature-256", sig)]);
        assert_eq!(verify(&v, &ok, b"Hello, World!", NOW), Ok(()));
        assert_eq!(
            verify(&v, &ok, b"Hello, World?", NOW),
            Err(Rejection::BadSignature)
        );
        assert_eq!(
            verify(&v, &[], b"Hello, World!", NOW),
            Err(Rejection::MissingHeader("X-Hub-Signature-256"))
        );
        let bare = h(&[("x-hub-signature-256", &sig[7..])]);
        assert_eq!(
            verify(&v, &bare, b"Hello, World!", NOW),
            Err(Rejection::MalformedHeader("X-Hub-Signature-256"))
        );
    }

    /// The Standard Webhooks specification's example, under both header spellings; the
    /// timestamp counts against the clock in both directions.
    #[test]
    fn standard_webhooks_example_and_tolerance() {
        let v = Verification::StandardWebhooks {
            secret: SigningKey::parse("whsec_C2FVsBQIhrscChlQIMV+b5sSYspob7oD").unwrap(),
        };
        let body = br#"{"email":"test@example.com","username":"test_user"}"#;
        let sig = "v1,bogus v1,tZ1I4/hDygAJgO5TYxiSd6Sd0kDW6hPenDe+bTa3Kkw= v2,x";
        let at = 1_649_367_553_000;
        for prefix in ["webhook", "svix"] {
            let headers = h(&[
                (&format!("{prefix}-id"), "msg_27UH4WbU6Z5A5EzD8u03UvzRbpk"),
                (&format!("{prefix}-timestamp"), "1649367553"),
                (&format!("{prefix}-signature"), sig),
            ]);
            assert_eq!(verify(&v, &headers, body, at), Ok(()), "{prefix}");
            assert_eq!(verify(&v, &headers, body, at + 300_000), Ok(()));
            assert_eq!(
                verify(&v, &headers, body, at + 301_000),
                Err(Rejection::StaleTimestamp)
            );
            assert_eq!(
                verify(&v, &headers, body, at - 301_000),
                Err(Rejection::StaleTimestamp)
            );
            assert_eq!(
                verify(&v, &headers, b"{}", at),
                Err(Rejection::BadSignature)
            );
        }
    }

    #[test]
    fn static_credentials() {
        let gitlab = Verification::Gitlab {
            token: Secret::new("t0ken"),
        };
        assert_eq!(
            verify(&gitlab, &h(&[("X-Gitlab-Token", "t0ken")]), b"", NOW),
            Ok(())
        );
        assert_eq!(
            verify(&gitlab, &h(&[("x-gitlab-token", "t0ken2")]), b"", NOW),
            Err(Rejection::BadCredentials)
        );
        let header = Verification::Header {
            name: "x-api-key".into(),
            value: Secret::new("k"),
        };
        assert_eq!(verify(&header, &h(&[("x-api-key", "k")]), b"", NOW), Ok(()));
        assert_eq!(
            verify(&header, &h(&[("x-other", "k")]), b"", NOW),
            Err(Rejection::BadCredentials)
        );
        let basic = Verification::Basic {
            username: "u".into(),
            password: Secret::new("p:w"),
        };
        // "u:p:w": the password may hold a colon.
        let good = h(&[("authorization", "Basic dTpwOnc=")]);
        assert_eq!(verify(&basic, &good, b"", NOW), Ok(()));
        let wrong = h(&[("authorization", "basic dTpw")]);
        assert_eq!(
            verify(&basic, &wrong, b"", NOW),
            Err(Rejection::BadCredentials)
        );
        assert_eq!(
            verify(&basic, &h(&[("authorization", "Bearer x")]), b"", NOW),
            Err(Rejection::MalformedHeader("Authorization"))
        );
    }

    #[test]
    fn hex_decoding() {
        assert_eq!(decode_hex(b"00ffA0"), Some(vec![0, 255, 160]));
        assert_eq!(decode_hex(b"0"), None);
        assert_eq!(decode_hex(b"zz"), None);
        assert_eq!(decode_hex(b""), Some(vec![]));
    }
}
