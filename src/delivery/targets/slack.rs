//! The Slack message: method, content type, time, size, and the body in a code block
//! (JSON pretty-printed), cut at 3500 characters.

use crate::delivery::task::EventPayload;

/// Characters of payload shown in a Slack message.
pub const SLACK_PAYLOAD_LIMIT: usize = 3500;

/// The `text` of the Slack message for an event.
pub fn slack_text(event: &EventPayload, body: &[u8]) -> String {
    let received = jiff::Timestamp::from_millisecond(event.received_at)
        .map(|t| t.strftime("%Y-%m-%d %H:%M:%S UTC").to_string())
        .unwrap_or_default();
    let payload = match serde_json::from_slice::<serde_json::Value>(body) {
        Ok(v) => serde_json::to_string_pretty(&v).unwrap_or_default(),
        Err(_) => String::from_utf8_lossy(body).into_owned(),
    };
    let mut shown: String = payload.chars().take(SLACK_PAYLOAD_LIMIT).collect();
    if shown.len() < payload.len() {
        shown.push_str("\n… (truncated)");
    }
    // A literal ``` inside the payload would close the code block early.
    let shown = shown.replace("```", "`\u{200b}``");
    format!(
        "*Webhook received* `{} {}`\n*Content-Type:* {}\n*Received:* {}\n*Size:* {} bytes\n```\n{}\n```",
        event.method,
        event.display_path(),
        event.content_type.as_deref().unwrap_or("(none)"),
        received,
        event.body_len,
        shown
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use uuid::Uuid;

    fn payload(body: &[u8]) -> EventPayload {
        EventPayload {
            id: Uuid::now_v7(),
            received_at: 0,
            method: "POST".into(),
            path: "/webhook/0194d0a2-secret?x=1".into(),
            headers: vec![],
            content_type: Some("application/json".into()),
            body_len: body.len() as u64,
            body: None,
        }
    }

    #[test]
    fn pretty_prints_json() {
        let t = slack_text(&payload(br#"{"a":1}"#), br#"{"a":1}"#);
        assert!(t.contains("{\n  \"a\": 1\n}"), "{t}");
        assert!(t.contains("POST /webhook/…?x=1"), "{t}");
        assert!(
            !t.contains("secret"),
            "the entrypoint id is the URL's secret"
        );
        assert!(t.contains("1970-01-01 00:00:00 UTC"));
    }

    #[test]
    fn truncates_long_bodies() {
        let body = vec![b'x'; 10_000];
        let t = slack_text(&payload(&body), &body);
        assert!(t.contains("(truncated)"));
        assert!(t.matches('x').count() <= SLACK_PAYLOAD_LIMIT + 2);
    }
}
