//! The Slack message: method, content type, time, size, and the body in a code block
//! (JSON pretty-printed), cut at 3500 characters.
//!
//! Everything the sender controls (method, path, content type, body) is escaped as Slack's
//! message formatting requires: `&`, `<` and `>` become entities, so no mention
//! (`<!channel>`), link (`<https://…|text>`) or user reference can be injected; each value
//! sits in a code span or block it cannot end early.

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
    let shown = break_backtick_runs(&escape(&shown));
    format!(
        "*Webhook received* `{} {}`\n*Content-Type:* `{}`\n*Received:* {}\n*Size:* {} bytes\n```\n{}\n```",
        inline_code(&event.method),
        inline_code(&event.display_path()),
        inline_code(event.content_type.as_deref().unwrap_or("(none)")),
        received,
        event.body_len,
        shown
    )
}

/// `&`, `<` and `>` as the entities Slack requires: the only characters it reads control
/// sequences from.
fn escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            c => out.push(c),
        }
    }
    out
}

/// `text` with a zero-width space between any two adjacent backticks: a run of three
/// (``` or any longer run) would close the code block early, and no run survives this.
fn break_backtick_runs(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut previous = None;
    for c in text.chars() {
        if c == '`' && previous == Some('`') {
            out.push('\u{200b}');
        }
        out.push(c);
        previous = Some(c);
    }
    out
}

/// A value for a one-line code span: escaped, without the backticks that would end the
/// span (shown as a look-alike) or line breaks.
fn inline_code(text: &str) -> String {
    escape(text)
        .chars()
        .map(|c| match c {
            '`' => 'ˋ',
            c if c.is_control() => ' ',
            c => c,
        })
        .collect()
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
            test: false,
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

    /// Regression: the Content-Type stood outside any code span unescaped, and `<`, `>` and
    /// `&` in the body were passed on, so a sender could post `<!channel>` mentions and
    /// disguised links (`<https://evil.example|Reset your password>`) into the channel.
    #[test]
    fn sender_controlled_values_cannot_format_the_message() {
        let body = b"<!channel> <https://evil.example|Reset your password> &amp; ```\n<@U123>";
        let mut event = payload(body);
        event.content_type = Some("text/plain`<!here>` <https://evil.example|click> &".into());
        event.method = "PO`<!everyone>".into();
        event.path = "/webhook/x?q=<!subteam^S1>&`a`".into();
        let t = slack_text(&event, body);
        // Slack reads control sequences only between `<` and `>`: none may survive.
        assert!(!t.contains('<') && !t.contains('>'), "{t}");
        assert!(t.contains("&lt;!channel&gt;"), "{t}");
        assert!(
            t.contains("&amp;amp;"),
            "a literal & is escaped, so an entity in the body shows as sent: {t}"
        );
        // The Content-Type is shown as code, and cannot end its code span early.
        let ct_line = t
            .lines()
            .find(|l| l.starts_with("*Content-Type:*"))
            .unwrap();
        assert_eq!(ct_line.matches('`').count(), 2, "{ct_line}");
        let first_line = t.lines().next().unwrap();
        assert_eq!(first_line.matches('`').count(), 2, "{first_line}");
    }

    #[test]
    fn no_run_of_backticks_in_the_body_closes_its_code_block() {
        for body in [
            &b"a ```` b"[..],
            b"````*bold* https://evil.example",
            b"x``````y",
            b"``\n`",
        ] {
            let t = slack_text(&payload(body), body);
            let block = t.split_once("```\n").map(|(_, rest)| rest).unwrap();
            let inside = block.strip_suffix("\n```").unwrap();
            assert!(!inside.contains("``"), "{inside:?}");
            let shown: String = inside.chars().filter(|c| *c != '\u{200b}').collect();
            assert_eq!(shown.as_bytes(), body, "only zero-width spaces are added");
        }
    }

    #[test]
    fn truncates_long_bodies() {
        let body = vec![b'x'; 10_000];
        let t = slack_text(&payload(&body), &body);
        assert!(t.contains("(truncated)"));
        assert!(t.matches('x').count() <= SLACK_PAYLOAD_LIMIT + 2);
    }
}
