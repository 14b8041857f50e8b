//! Standard Webhooks (v1, symmetric) signatures on outgoing attempts, so receivers can
//! verify them with the specification's official libraries.

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use hmac::{Hmac, KeyInit, Mac};
use reqwest::header::HeaderValue;
use sha2::Sha256;

use crate::model::{Millis, Signing};

/// The message id: the delivery id, the same on every attempt, so receivers can dedupe.
pub(crate) const WEBHOOK_ID: &str = "webhook-id";
/// Unix seconds of the attempt.
pub(crate) const WEBHOOK_TIMESTAMP: &str = "webhook-timestamp";
/// `v1,<base64 signature>`, several separated by spaces.
pub(crate) const WEBHOOK_SIGNATURE: &str = "webhook-signature";

/// The same three headers as Svix spells them. Svix's libraries read these before the
/// `webhook-*` ones, so a sender's must not reach a receiver next to ours.
pub(crate) const SVIX_HEADERS: [&str; 3] = ["svix-id", "svix-timestamp", "svix-signature"];

/// The three `webhook-*` headers of an attempt made at `now` that sends `body` as message
/// `msg_id`: each key of `signing` in force at `now` signs `{msg_id}.{seconds}.{body}`.
/// The values are header-safe (a UUID, digits, base64), so they always parse.
pub(crate) fn standard_webhooks_headers(
    signing: &Signing,
    msg_id: &str,
    now: Millis,
    body: &[u8],
) -> [(&'static str, HeaderValue); 3] {
    let seconds = now.div_euclid(1000).to_string();
    let signatures = signing
        .keys_at(now)
        .map(|key| {
            let mut mac = <Hmac<Sha256> as KeyInit>::new_from_slice(key.bytes())
                .expect("BUG: HMAC accepts keys of any length");
            mac.update(msg_id.as_bytes());
            mac.update(b".");
            mac.update(seconds.as_bytes());
            mac.update(b".");
            mac.update(body);
            format!("v1,{}", STANDARD.encode(mac.finalize().into_bytes()))
        })
        .collect::<Vec<_>>()
        .join(" ");
    let value = |text: String| {
        HeaderValue::try_from(text).expect("BUG: ids, digits and base64 are header-safe")
    };
    [
        (WEBHOOK_ID, value(msg_id.to_string())),
        (WEBHOOK_TIMESTAMP, value(seconds)),
        (WEBHOOK_SIGNATURE, value(signatures)),
    ]
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{SIGNING_ROTATION_OVERLAP_MS, SigningKey};

    fn header<'a>(headers: &'a [(&'static str, HeaderValue); 3], name: &str) -> &'a str {
        let (_, v) = headers.iter().find(|(n, _)| *n == name).unwrap();
        v.to_str().unwrap()
    }

    /// The specification's own example (the official libraries test against it).
    #[test]
    fn matches_the_specification_example() {
        let signing = Signing {
            enabled: true,
            secret: SigningKey::parse("whsec_C2FVsBQIhrscChlQIMV+b5sSYspob7oD").unwrap(),
            previous: None,
        };
        let headers = standard_webhooks_headers(
            &signing,
            "msg_27UH4WbU6Z5A5EzD8u03UvzRbpk",
            1_649_367_553_000,
            br#"{"email":"test@example.com","username":"test_user"}"#,
        );
        assert_eq!(
            header(&headers, WEBHOOK_ID),
            "msg_27UH4WbU6Z5A5EzD8u03UvzRbpk"
        );
        assert_eq!(header(&headers, WEBHOOK_TIMESTAMP), "1649367553");
        assert_eq!(
            header(&headers, WEBHOOK_SIGNATURE),
            "v1,tZ1I4/hDygAJgO5TYxiSd6Sd0kDW6hPenDe+bTa3Kkw="
        );
    }

    #[test]
    fn a_rotated_secret_signs_beside_the_new_one_for_the_overlap_only() {
        let mut signing = Signing::generate();
        let body = b"{}";
        let before = standard_webhooks_headers(&signing, "m", 1_000, body);
        signing.rotate(1_000);
        let during = standard_webhooks_headers(&signing, "m", 2_000, body);
        let old_signature = header(&before, WEBHOOK_SIGNATURE);
        let sigs: Vec<&str> = header(&during, WEBHOOK_SIGNATURE).split(' ').collect();
        assert_eq!(sigs.len(), 2, "{sigs:?}");
        assert_ne!(sigs[0], old_signature, "the new secret signs first");
        // Same id, same body, but one second later: the old key's signature differs from
        // the first attempt's only by the timestamp, so re-sign to compare.
        let old_at_2s = Signing {
            enabled: true,
            secret: signing.previous.clone().unwrap().0,
            previous: None,
        };
        let expected_old = standard_webhooks_headers(&old_at_2s, "m", 2_000, body);
        assert_eq!(sigs[1], header(&expected_old, WEBHOOK_SIGNATURE));
        let after =
            standard_webhooks_headers(&signing, "m", 1_000 + SIGNING_ROTATION_OVERLAP_MS, body);
        assert_eq!(header(&after, WEBHOOK_SIGNATURE).split(' ').count(), 1);
    }
}
