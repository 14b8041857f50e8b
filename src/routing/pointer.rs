//! Finding the values at JSON Pointers (RFC 6901) in a body's bytes without building the
//! document: one pass over the body for all the pointers a request's filters name, which
//! skips everything off their paths (`IgnoredAny`) and borrows each value found as raw
//! JSON text. A filter names a few paths of a body that may be large, so building a
//! `serde_json::Value` of all of it (every string and map allocated) would cost far more
//! than the conditions themselves.
//!
//! The pass reads the whole body (text: the caller checks it is UTF-8), so a body that is
//! not JSON (bad syntax, trailing bytes) is told apart from a path that is absent. Two
//! things a full parse into a `Value` refuses pass here: a `\u` escape of a lone surrogate
//! in a string off the paths (escapes there are not decoded), and nesting deeper than
//! serde_json's limit (128) off the paths (a path that deep makes the pass fail, and its
//! pointers read as not JSON). Where an object repeats a key, the last one counts, as in a
//! parsed `Value`.

use std::borrow::Cow;
use std::fmt;

use serde::Deserialize as _;
use serde::de::{
    DeserializeSeed, Deserializer, Error as _, IgnoredAny, MapAccess, SeqAccess, Visitor,
};
use serde_json::value::RawValue;

/// Most pointers looked up in one pass (one bit each in a `u64`); more take more passes.
pub(super) const POINTERS_PER_PASS: usize = 64;

/// The values at `pointers` in `body`, in the same order: `Err` when the body is not JSON,
/// `None` where a pointer does not resolve. Each pointer is `""` (the whole body) or starts
/// with `/`; at most [`POINTERS_PER_PASS`] of them.
pub(super) fn find_all<'a>(
    body: &'a str,
    pointers: &[&str],
) -> serde_json::Result<Vec<Option<&'a RawValue>>> {
    debug_assert!(pointers.len() <= POINTERS_PER_PASS);
    let paths: Vec<Vec<Cow<'_, str>>> = pointers
        .iter()
        // "" has one empty token before any '/', "/a" has "" then "a": the first is never
        // a key.
        .map(|p| p.split('/').skip(1).map(unescape).collect())
        .collect();
    let mut found = vec![None; paths.len()];
    let all = u64::MAX >> (u64::BITS as usize - paths.len().max(1));
    let mut de = serde_json::Deserializer::from_str(body);
    Walk {
        paths: &paths,
        active: if paths.is_empty() { 0 } else { all },
        depth: 0,
        found: &mut found,
    }
    .deserialize(&mut de)?;
    de.end()?;
    Ok(found)
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

/// The bits set in `mask`, as indexes.
fn bits(mut mask: u64) -> impl Iterator<Item = usize> {
    std::iter::from_fn(move || {
        (mask != 0).then(|| {
            let i = mask.trailing_zeros() as usize;
            mask &= mask - 1;
            i
        })
    })
}

/// The value being read, and the paths (`active`, one bit per path) that lead to it after
/// `depth` tokens. A path whose tokens end here takes the value; the others go on into it.
struct Walk<'p, 'o, 'a> {
    paths: &'p [Vec<Cow<'p, str>>],
    active: u64,
    depth: usize,
    found: &'o mut [Option<&'a RawValue>],
}

impl<'de> DeserializeSeed<'de> for Walk<'_, '_, 'de> {
    type Value = ();

    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<(), D::Error> {
        let ending = bits(self.active)
            .filter(|&i| self.paths[i].len() == self.depth)
            .fold(0u64, |m, i| m | 1 << i);
        let going = self.active & !ending;
        if ending == 0 {
            return d.deserialize_any(Step { walk: self });
        }
        let raw = <&RawValue>::deserialize(d)?;
        for i in bits(ending) {
            self.found[i] = Some(raw);
        }
        if going != 0 {
            // Some paths end here and others go deeper (`/a` beside `/a/b`): read the value
            // again for those, from the text just borrowed.
            let mut inner = serde_json::Deserializer::from_str(raw.get());
            Walk {
                active: going,
                ..self
            }
            .deserialize(&mut inner)
            .map_err(D::Error::custom)?;
        }
        Ok(())
    }
}

/// One level down: the keys of an object or the indexes of an array that the walk's paths
/// name; any other value has nothing under it.
struct Step<'p, 'o, 'a> {
    walk: Walk<'p, 'o, 'a>,
}

impl<'de> Visitor<'de> for Step<'_, '_, 'de> {
    type Value = ();

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a JSON value")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<(), A::Error> {
        let Walk {
            paths,
            active,
            depth,
            found,
        } = self.walk;
        while let Some(hit) = map.next_key_seed(KeyMatch {
            paths,
            active,
            depth,
        })? {
            if hit == 0 {
                map.next_value::<IgnoredAny>()?;
                continue;
            }
            // A repeated key replaces what an earlier one held.
            for i in bits(hit) {
                found[i] = None;
            }
            map.next_value_seed(Walk {
                paths,
                active: hit,
                depth: depth + 1,
                found: &mut *found,
            })?;
        }
        Ok(())
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<(), A::Error> {
        let Walk {
            paths,
            active,
            depth,
            found,
        } = self.walk;
        let wanted: Vec<(usize, usize)> = bits(active)
            .filter_map(|i| Some((index(&paths[i][depth])?, i)))
            .collect();
        let mut at = 0;
        loop {
            let hit = wanted
                .iter()
                .filter(|(n, _)| *n == at)
                .fold(0u64, |m, (_, i)| m | 1 << i);
            let more = if hit == 0 {
                seq.next_element::<IgnoredAny>()?.is_some()
            } else {
                seq.next_element_seed(Walk {
                    paths,
                    active: hit,
                    depth: depth + 1,
                    found: &mut *found,
                })?
                .is_some()
            };
            if !more {
                return Ok(());
            }
            at += 1;
        }
    }

    fn visit_bool<E>(self, _: bool) -> Result<(), E> {
        Ok(())
    }
    fn visit_i64<E>(self, _: i64) -> Result<(), E> {
        Ok(())
    }
    fn visit_u64<E>(self, _: u64) -> Result<(), E> {
        Ok(())
    }
    fn visit_f64<E>(self, _: f64) -> Result<(), E> {
        Ok(())
    }
    fn visit_str<E>(self, _: &str) -> Result<(), E> {
        Ok(())
    }
    fn visit_unit<E>(self) -> Result<(), E> {
        Ok(())
    }
}

/// Reads an object's key and answers which of the active paths name it next (a bit mask),
/// without keeping the key.
struct KeyMatch<'p> {
    paths: &'p [Vec<Cow<'p, str>>],
    active: u64,
    depth: usize,
}

impl<'de> DeserializeSeed<'de> for KeyMatch<'_> {
    type Value = u64;

    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<u64, D::Error> {
        d.deserialize_str(self)
    }
}

impl<'de> Visitor<'de> for KeyMatch<'_> {
    type Value = u64;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("an object key")
    }

    fn visit_str<E>(self, key: &str) -> Result<u64, E> {
        Ok(bits(self.active)
            .filter(|&i| self.paths[i][self.depth] == key)
            .fold(0, |m, i| m | 1 << i))
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
        let found = find_all(body, &[pointer]).ok()?;
        Some(found[0].map(|raw| {
            let v: Value = serde_json::from_str(raw.get()).unwrap();
            v.to_string()
        }))
    }

    fn find<'a>(body: &'a str, pointer: &str) -> serde_json::Result<Option<&'a RawValue>> {
        find_all(body, &[pointer]).map(|f| f[0])
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
            "/pull_request",
            "/pull_request/labels",
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
            // All of them in one pass, including paths that end where others go on.
            let together = find_all(body, &pointers);
            for (i, pointer) in pointers.iter().enumerate() {
                let ours = together.as_ref().ok().map(|f| {
                    f[i].map(|raw| {
                        serde_json::from_str::<Value>(raw.get())
                            .unwrap()
                            .to_string()
                    })
                });
                assert_eq!(
                    ours,
                    reference(body, pointer),
                    "one pass: {body:?} {pointer:?}"
                );
            }
        }
    }

    #[test]
    fn a_repeated_key_replaces_what_the_first_held() {
        let body = r#"{"a":{"b":1,"c":2},"a":{"c":3}}"#;
        let found = find_all(body, &["/a/b", "/a/c", "/a"]).unwrap();
        assert!(found[0].is_none());
        assert_eq!(found[1].unwrap().get(), "3");
        assert_eq!(found[2].unwrap().get(), r#"{"c":3}"#);
    }

    #[test]
    fn deep_nesting_neither_overflows_nor_is_refused() {
        // What is off the path is skipped without recursion; the walk itself goes only as
        // deep as the pointer (a filter's pointer is at most 256 bytes).
        let deep = format!("{}{}", "[".repeat(100_000), "]".repeat(100_000));
        let found = find(&deep, "/0/0/0").unwrap().unwrap();
        assert!(found.get().starts_with("[[[") && found.get().len() == deep.len() - 6);
        assert!(find(&deep, "/x").unwrap().is_none());
        assert!(find(&deep, &"/0".repeat(100)).unwrap().is_some());
        // serde_json's depth limit (128) bounds the walk: deeper paths read as not JSON.
        assert!(find(&deep, &"/0".repeat(128)).is_err());
        let unclosed = "[".repeat(100_000);
        assert!(find(&unclosed, "/0").is_err());
    }
}
