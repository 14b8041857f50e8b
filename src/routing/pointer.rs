//! Finding the value at a JSON Pointer (RFC 6901) in a body's bytes without building the
//! document: one pass that skips everything off the path (`IgnoredAny`) and borrows the
//! value found as raw JSON text. A filter names a few paths of a body that may be large,
//! so building a `serde_json::Value` of all of it (every string and map allocated) would
//! cost far more than the conditions themselves.
//!
//! The pass reads the whole body, so a body that is not JSON (bad syntax, invalid UTF-8,
//! trailing bytes) is told apart from a path that is absent, as `serde_json::from_slice`
//! would tell it. Where an object repeats a key, the last one counts, as in a parsed
//! `Value`.

use std::borrow::Cow;
use std::fmt;
use std::str::Split;

use serde::Deserialize as _;
use serde::de::{DeserializeSeed, Deserializer, IgnoredAny, MapAccess, SeqAccess, Visitor};
use serde_json::value::RawValue;

/// The value at `pointer` in `body`: `Err` when the body is not JSON, `Ok(None)` when the
/// pointer does not resolve. `pointer` is `""` (the whole body) or starts with `/`.
pub(super) fn find<'a>(body: &'a [u8], pointer: &str) -> serde_json::Result<Option<&'a RawValue>> {
    let mut tokens = pointer.split('/');
    // "" has one empty token before any '/', "/a" has "" then "a": the first is never a key.
    tokens.next();
    let mut de = serde_json::Deserializer::from_slice(body);
    let found = Walk { tokens }.deserialize(&mut de)?;
    de.end()?;
    Ok(found)
}

/// The rest of a pointer's tokens, applied to the value being read.
struct Walk<'t> {
    tokens: Split<'t, char>,
}

impl<'de> DeserializeSeed<'de> for Walk<'_> {
    type Value = Option<&'de RawValue>;

    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<Self::Value, D::Error> {
        let mut rest = self.tokens;
        match rest.next() {
            None => <&RawValue>::deserialize(d).map(Some),
            Some(token) => d.deserialize_any(Step {
                token: unescape(token),
                rest,
            }),
        }
    }
}

/// RFC 6901's escapes: `~1` is `/`, then `~0` is `~`.
fn unescape(token: &str) -> Cow<'_, str> {
    if token.contains('~') {
        Cow::Owned(token.replace("~1", "/").replace("~0", "~"))
    } else {
        Cow::Borrowed(token)
    }
}

/// An array index as RFC 6901 spells it: digits, no sign, no leading zero.
fn index(token: &str) -> Option<usize> {
    if token.starts_with('+') || (token.starts_with('0') && token.len() > 1) {
        return None;
    }
    token.parse().ok()
}

/// One token applied to one value: a key of an object or an index of an array; any other
/// value has nothing under it.
struct Step<'t> {
    token: Cow<'t, str>,
    rest: Split<'t, char>,
}

impl<'de> Visitor<'de> for Step<'_> {
    type Value = Option<&'de RawValue>;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a JSON value")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
        let mut found = None;
        while let Some(hit) = map.next_key_seed(KeyIs(&self.token))? {
            if hit {
                found = map.next_value_seed(Walk {
                    tokens: self.rest.clone(),
                })?;
            } else {
                map.next_value::<IgnoredAny>()?;
            }
        }
        Ok(found)
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Self::Value, A::Error> {
        let wanted = index(&self.token);
        let mut found = None;
        let mut i = 0;
        loop {
            if Some(i) == wanted {
                match seq.next_element_seed(Walk {
                    tokens: self.rest.clone(),
                })? {
                    Some(v) => found = v,
                    None => break,
                }
            } else if seq.next_element::<IgnoredAny>()?.is_none() {
                break;
            }
            i += 1;
        }
        Ok(found)
    }

    fn visit_bool<E>(self, _: bool) -> Result<Self::Value, E> {
        Ok(None)
    }
    fn visit_i64<E>(self, _: i64) -> Result<Self::Value, E> {
        Ok(None)
    }
    fn visit_u64<E>(self, _: u64) -> Result<Self::Value, E> {
        Ok(None)
    }
    fn visit_f64<E>(self, _: f64) -> Result<Self::Value, E> {
        Ok(None)
    }
    fn visit_str<E>(self, _: &str) -> Result<Self::Value, E> {
        Ok(None)
    }
    fn visit_unit<E>(self) -> Result<Self::Value, E> {
        Ok(None)
    }
}

/// Reads an object's key and says whether it is the token, without keeping it.
struct KeyIs<'k>(&'k str);

impl<'de> DeserializeSeed<'de> for KeyIs<'_> {
    type Value = bool;

    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<bool, D::Error> {
        d.deserialize_str(self)
    }
}

impl<'de> Visitor<'de> for KeyIs<'_> {
    type Value = bool;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("an object key")
    }

    fn visit_str<E>(self, key: &str) -> Result<bool, E> {
        Ok(key == self.0)
    }
}

#[cfg(test)]
mod tests {
    use serde_json::Value;

    use super::*;

    /// What serde_json's own `Value::pointer` finds, as JSON text.
    fn reference(body: &str, pointer: &str) -> Option<Option<String>> {
        let v: Value = serde_json::from_str(body).ok()?;
        Some(v.pointer(pointer).map(Value::to_string))
    }

    fn ours(body: &str, pointer: &str) -> Option<Option<String>> {
        let found = find(body.as_bytes(), pointer).ok()?;
        Some(found.map(|raw| {
            let v: Value = serde_json::from_str(raw.get()).unwrap();
            v.to_string()
        }))
    }

    #[test]
    fn agrees_with_serde_json_value_pointer() {
        let bodies = [
            r#"{"action":"opened","number":7,"pull_request":{"head":{"ref":"main"},"labels":[{"name":"bug"},{"name":"ui"}]},"a/b":1,"m~n":2,"":3," ":4,"esc\"aped":5,"dup":1,"dup":2}"#,
            r#"[1,[2,3],{"x":null},true,"s",-1.5e3]"#,
            r#"  {"nested": {"deep": {"deeper": [0, {"k": "\u00e9\n"}]}}}  "#,
            r#"{"k\u0061y":"escaped key"}"#,
            "\"just a string\"",
            "42",
            "null",
            "{}",
            "[]",
            // Not JSON: every pointer must say so, the whole body being read.
            r#"{"action":"opened""#,
            r#"{"action":"opened"} trailing"#,
            "a=1&b=2",
            "",
            r#"{"action":"opened",}"#,
        ];
        let pointers = [
            "",
            "/",
            "/ ",
            "/action",
            "/number",
            "/missing",
            "/pull_request/head/ref",
            "/pull_request/labels/1/name",
            "/pull_request/labels/2/name",
            "/pull_request/labels/01/name",
            "/pull_request/labels/+1/name",
            "/pull_request/labels/-",
            "/a~1b",
            "/m~0n",
            "/esc\"aped",
            "/dup",
            "/0",
            "/1/1",
            "/2/x",
            "/5",
            "/6",
            "/nested/deep/deeper/1/k",
            "/key",
            "/kay",
            "/action/x",
            "/number/0",
        ];
        for body in bodies {
            for pointer in pointers {
                assert_eq!(
                    ours(body, pointer),
                    reference(body, pointer),
                    "body {body:?}, pointer {pointer:?}"
                );
            }
        }
    }

    #[test]
    fn bytes_that_are_not_utf8_are_not_json() {
        assert!(find(b"{\"a\":\"\xff\"}", "/a").is_err());
        assert!(find(b"\xff", "").is_err());
    }

    #[test]
    fn deep_nesting_neither_overflows_nor_is_refused() {
        // What is off the path is skipped without recursion; the walk itself goes only as
        // deep as the pointer (a filter's pointer is at most 256 bytes).
        let deep = format!("{}{}", "[".repeat(100_000), "]".repeat(100_000));
        let found = find(deep.as_bytes(), "/0/0/0").unwrap().unwrap();
        assert!(found.get().starts_with("[[[") && found.get().len() == deep.len() - 6);
        assert!(find(deep.as_bytes(), "/x").unwrap().is_none());
        assert!(find(deep.as_bytes(), &"/0".repeat(100)).unwrap().is_some());
        // serde_json's depth limit (128) bounds the walk: deeper paths read as not JSON.
        assert!(find(deep.as_bytes(), &"/0".repeat(128)).is_err());
        let unclosed = "[".repeat(100_000);
        assert!(find(unclosed.as_bytes(), "/0").is_err());
    }
}
