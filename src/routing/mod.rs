//! Routing rules carried by webhooks and targets, and the pure functions that apply them:
//! per-target filters (which events a target gets), dedupe keys (which requests are the
//! same event sent again), transforms (what an http target's request looks like) and the
//! hop count that stops delivery loops. Requests in, decisions out: no I/O here.
//!
//! The records are stored in the main file (bincode, see `store/codec.rs`); their JSON
//! shapes (the API's and the target form's) are parsed and written here too, so the API,
//! the UI and the docs share one spelling.

mod pointer;

use std::cell::RefCell;
use std::collections::{HashMap, HashSet};

use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;
use serde_json::{Map, Value, json};

use crate::model::Secret;

/// Most conditions in one filter.
pub const MAX_CONDITIONS: usize = 20;
/// Most values in one `in` list.
pub const MAX_IN_VALUES: usize = 32;
/// Longest header name, JSON Pointer or text value in a filter or transform, in bytes.
pub const MAX_TEXT: usize = 256;
/// Longest header value a transform sets, in bytes (room for a long bearer token).
pub const MAX_HEADER_VALUE: usize = 4096;
/// Most headers a transform sets, and most it removes.
pub const MAX_TRANSFORM_HEADERS: usize = 32;
/// Longest path template, in bytes.
pub const MAX_PATH_TEMPLATE: usize = 1024;
/// Longest dedupe key stored as it is; a longer one is stored as its SHA-256.
pub const MAX_DEDUPE_KEY: usize = 256;
/// Longest dedupe window: 30 days.
pub const MAX_DEDUPE_WINDOW_SECS: u32 = 30 * 86_400;
/// Default dedupe window: 24 hours.
pub const DEFAULT_DEDUPE_WINDOW_SECS: u32 = 86_400;

/// The header carrying how many times webhooker has forwarded a request.
pub const HOPS_HEADER: &str = "x-webhooker-hops";
/// Forwards a request may already have been through and still be accepted: a request
/// whose hop count is above this is refused with `508 Loop Detected`, nothing stored. Low,
/// so that a loop of two targets forwarding to their own webhook (each event doubling) ends
/// after a few dozen events; a legitimate chain of webhooker instances is rarely longer.
pub const MAX_HOPS: u32 = 3;

/// How a filter combines its conditions.
#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq)]
pub enum Mode {
    /// Every condition must hold.
    All,
    /// At least one condition must hold.
    Any,
}

/// Which events a target gets. Stored as its mode and conditions; the skip reasons are
/// worked out once when it is built or read, so a skipped delivery costs a copy of one,
/// not a formatting per request.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(from = "FilterRecord", into = "FilterRecord")]
pub struct Filter {
    /// All or any.
    pub mode: Mode,
    /// One to [`MAX_CONDITIONS`] conditions.
    pub conditions: Vec<Condition>,
    /// `all`: the reason each condition gives when it fails; `any`: the one reason.
    reasons: Vec<String>,
}

/// What is stored of a filter.
#[derive(Serialize, Deserialize)]
struct FilterRecord {
    mode: Mode,
    conditions: Vec<Condition>,
}

impl From<FilterRecord> for Filter {
    fn from(r: FilterRecord) -> Filter {
        Filter::new(r.mode, r.conditions)
    }
}

impl From<Filter> for FilterRecord {
    fn from(f: Filter) -> FilterRecord {
        FilterRecord {
            mode: f.mode,
            conditions: f.conditions,
        }
    }
}

/// One test of a request.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub enum Condition {
    /// The method, upper case.
    Method(String),
    /// A header, by lower-case name; holds when any of its values passes.
    Header {
        /// Lower-case name.
        name: String,
        /// The test.
        test: HeaderTest,
    },
    /// A value of the JSON body, by JSON Pointer (RFC 6901). A body that is not JSON
    /// never passes.
    Json {
        /// `""` (the whole body) or `/a/b/0`.
        pointer: String,
        /// The test.
        test: JsonTest,
    },
}

/// A test of a header's values.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub enum HeaderTest {
    /// A value equals this.
    Equals(String),
    /// A value is one of these.
    In(Vec<String>),
    /// A value starts with this.
    Prefix(String),
    /// The header is present (`true`) or absent (`false`).
    Exists(bool),
}

/// A test of the value at a JSON Pointer.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub enum JsonTest {
    /// The value equals this JSON value.
    Equals(JsonLiteral),
    /// The value equals one of these.
    In(Vec<JsonLiteral>),
    /// The pointer resolves (`true`) or does not (`false`).
    Exists(bool),
    /// The value is a number greater than this.
    Gt(f64),
    /// The value is a number less than this.
    Lt(f64),
}

/// A JSON value in a stored record: kept parsed in memory (compared per request), stored
/// as its JSON text (bincode cannot hold a self-describing value).
#[derive(Debug, Clone, PartialEq)]
pub struct JsonLiteral(pub Value);

impl Serialize for JsonLiteral {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.0.to_string())
    }
}

impl<'de> Deserialize<'de> for JsonLiteral {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let text = String::deserialize(d)?;
        serde_json::from_str(&text)
            .map(JsonLiteral)
            .map_err(serde::de::Error::custom)
    }
}

/// The parts of a request a filter looks at. The body is read as JSON only when a JSON
/// condition (or a dedupe key) asks for a path, and then only for the paths asked for, each
/// once per request however many targets' filters name it: ingest names them all up front
/// ([`find_json`](Self::find_json)), so one pass over the body finds every one.
pub struct RequestView<'a> {
    method: &'a str,
    headers: &'a [(String, Vec<u8>)],
    body: &'a [u8],
    found: RefCell<HashMap<String, Found<'a>>>,
}

/// What a JSON Pointer found in the body.
#[derive(Clone, Copy)]
enum Found<'a> {
    /// The body is not JSON: no body condition passes.
    NotJson,
    /// The body is JSON; the pointer does not resolve.
    Absent,
    /// The value at the pointer, as its JSON text.
    Value(&'a RawValue),
}

impl<'a> RequestView<'a> {
    /// A view of a request with these parts.
    pub fn new(method: &'a str, headers: &'a [(String, Vec<u8>)], body: &'a [u8]) -> Self {
        RequestView {
            method,
            headers,
            body,
            found: RefCell::new(HashMap::new()),
        }
    }

    /// Looks up these JSON Pointers in the body together, in one pass, for the conditions
    /// that will ask for them; pointers already looked up are skipped.
    pub fn find_json<'p>(&self, pointers: impl IntoIterator<Item = &'p str>) {
        let mut wanted: Vec<&str> = Vec::new();
        {
            let found = self.found.borrow();
            let mut seen = HashSet::new();
            for p in pointers {
                if !found.contains_key(p) && seen.insert(p) {
                    wanted.push(p);
                }
            }
        }
        if wanted.is_empty() {
            return;
        }
        // Bytes that are not UTF-8 are not JSON, even where the walk would skip them.
        let text = std::str::from_utf8(self.body).ok();
        for chunk in wanted.chunks(pointer::POINTERS_PER_PASS) {
            let results = text.map(|t| pointer::find_all(t, chunk));
            let mut found = self.found.borrow_mut();
            for (i, p) in chunk.iter().enumerate() {
                let f = match &results {
                    None | Some(Err(_)) => Found::NotJson,
                    Some(Ok(values)) => values[i].map_or(Found::Absent, Found::Value),
                };
                found.insert((*p).to_owned(), f);
            }
        }
    }

    /// The body's value at `pointer`, looked up once per request.
    fn json_at(&self, pointer: &str) -> Found<'a> {
        if let Some(f) = self.found.borrow().get(pointer) {
            return *f;
        }
        self.find_json([pointer]);
        self.found
            .borrow()
            .get(pointer)
            .copied()
            .unwrap_or(Found::NotJson)
    }

    /// The body's value at `pointer`, parsed; `None` when the body is not JSON or the
    /// pointer does not resolve.
    fn json_value_at(&self, pointer: &str) -> Option<Value> {
        match self.json_at(pointer) {
            Found::Value(raw) => serde_json::from_str(raw.get()).ok(),
            Found::NotJson | Found::Absent => None,
        }
    }

    /// The values of the header `name` (lower case), in order.
    fn header_values<'s>(&'s self, name: &'s str) -> impl Iterator<Item = &'a [u8]> + 's {
        self.headers
            .iter()
            .filter(move |(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_slice())
    }
}

impl Filter {
    /// A filter of these conditions (checked by [`from_json`](Self::from_json)).
    pub fn new(mode: Mode, conditions: Vec<Condition>) -> Filter {
        let reasons = match mode {
            Mode::All => conditions
                .iter()
                .map(|c| format!("filter: not matched: {}", c.describe()))
                .collect(),
            Mode::Any => vec![format!(
                "filter: none of {} conditions matched",
                conditions.len()
            )],
        };
        Filter {
            mode,
            conditions,
            reasons,
        }
    }

    /// `Ok` when the request passes; otherwise why not, for the skipped delivery's record.
    /// The reason names the condition, never the request's values (headers may be secret).
    pub fn check(&self, req: &RequestView<'_>) -> Result<(), String> {
        let failed = match self.mode {
            Mode::All => self.conditions.iter().position(|c| !c.holds(req)),
            Mode::Any => (!self.conditions.iter().any(|c| c.holds(req))).then_some(0),
        };
        match failed {
            None => Ok(()),
            Some(i) => Err(self.reasons.get(i).cloned().unwrap_or_default()),
        }
    }

    /// Parses the API's shape: `{"all": [cond, …]}` or `{"any": [cond, …]}`, checking the
    /// bounds. The error says what is wrong, for a 400.
    pub fn from_json(v: &Value) -> Result<Filter, String> {
        let obj = v
            .as_object()
            .filter(|o| o.len() == 1)
            .ok_or("must be {\"all\": [conditions]} or {\"any\": [conditions]}")?;
        let (mode, list) = match (obj.get("all"), obj.get("any")) {
            (Some(l), None) => (Mode::All, l),
            (None, Some(l)) => (Mode::Any, l),
            _ => return Err("must be {\"all\": [conditions]} or {\"any\": [conditions]}".into()),
        };
        let list = list.as_array().ok_or("the conditions must be a list")?;
        if list.is_empty() || list.len() > MAX_CONDITIONS {
            return Err(format!("must have 1 to {MAX_CONDITIONS} conditions"));
        }
        let conditions = list
            .iter()
            .enumerate()
            .map(|(i, c)| Condition::from_json(c).map_err(|e| format!("condition {}: {e}", i + 1)))
            .collect::<Result<_, _>>()?;
        Ok(Filter::new(mode, conditions))
    }

    /// The API's shape (what [`from_json`](Self::from_json) reads).
    pub fn to_json(&self) -> Value {
        let list: Vec<Value> = self.conditions.iter().map(Condition::to_json).collect();
        match self.mode {
            Mode::All => json!({ "all": list }),
            Mode::Any => json!({ "any": list }),
        }
    }

    /// The JSON Pointers its conditions read.
    pub fn json_pointers(&self) -> impl Iterator<Item = &str> {
        self.conditions.iter().filter_map(|c| match c {
            Condition::Json { pointer, .. } => Some(pointer.as_str()),
            Condition::Method(_) | Condition::Header { .. } => None,
        })
    }
}

impl Condition {
    fn holds(&self, req: &RequestView<'_>) -> bool {
        match self {
            Condition::Method(m) => req.method.eq_ignore_ascii_case(m),
            Condition::Header { name, test } => {
                let mut values = req.header_values(name);
                match test {
                    HeaderTest::Exists(want) => values.next().is_some() == *want,
                    HeaderTest::Equals(s) => values.any(|v| v == s.as_bytes()),
                    HeaderTest::In(list) => values.any(|v| list.iter().any(|s| v == s.as_bytes())),
                    HeaderTest::Prefix(p) => values.any(|v| v.starts_with(p.as_bytes())),
                }
            }
            Condition::Json { pointer, test } => {
                let found = match req.json_at(pointer) {
                    Found::NotJson => return false,
                    Found::Absent => None,
                    Found::Value(raw) => Some(raw),
                };
                let number = || found.and_then(json_number);
                match test {
                    JsonTest::Exists(want) => found.is_some() == *want,
                    JsonTest::Equals(lit) => found.is_some_and(|raw| raw_equals(raw, &lit.0)),
                    JsonTest::In(list) => {
                        found.is_some_and(|raw| list.iter().any(|lit| raw_equals(raw, &lit.0)))
                    }
                    JsonTest::Gt(n) => number().is_some_and(|v| v > *n),
                    JsonTest::Lt(n) => number().is_some_and(|v| v < *n),
                }
            }
        }
    }

    /// The condition in words, for a skip reason.
    fn describe(&self) -> String {
        let text = match self {
            Condition::Method(m) => format!("method is {m}"),
            Condition::Header { name, test } => match test {
                HeaderTest::Exists(true) => format!("header {name} exists"),
                HeaderTest::Exists(false) => format!("header {name} is absent"),
                HeaderTest::Equals(s) => format!("header {name} equals {s:?}"),
                HeaderTest::In(l) => format!("header {name} in {l:?}"),
                HeaderTest::Prefix(p) => format!("header {name} starts with {p:?}"),
            },
            Condition::Json { pointer, test } => match test {
                JsonTest::Exists(true) => format!("json {pointer:?} exists"),
                JsonTest::Exists(false) => format!("json {pointer:?} is absent"),
                JsonTest::Equals(v) => format!("json {pointer:?} equals {}", v.0),
                JsonTest::In(l) => format!(
                    "json {pointer:?} in [{}]",
                    l.iter()
                        .map(|v| v.0.to_string())
                        .collect::<Vec<_>>()
                        .join(",")
                ),
                JsonTest::Gt(n) => format!("json {pointer:?} > {n}"),
                JsonTest::Lt(n) => format!("json {pointer:?} < {n}"),
            },
        };
        truncate(text, 300)
    }

    fn from_json(v: &Value) -> Result<Condition, String> {
        let obj = v.as_object().ok_or("must be an object")?;
        if let Some(m) = obj.get("method") {
            only_keys(obj, &["method"])?;
            let m = m.as_str().ok_or("method must be a string")?;
            if m.is_empty() || m.len() > 16 || !m.bytes().all(is_token_byte) {
                return Err("method must be an HTTP method such as POST".into());
            }
            return Ok(Condition::Method(m.to_ascii_uppercase()));
        }
        if let Some(name) = obj.get("header") {
            let name = header_name(name.as_str().ok_or("header must be a string")?)?;
            let (op, arg) = one_test(obj, "header", &["equals", "in", "prefix", "exists"])?;
            let test = match op {
                "equals" => HeaderTest::Equals(text_arg(arg)?),
                "prefix" => HeaderTest::Prefix(text_arg(arg)?),
                "exists" => {
                    HeaderTest::Exists(arg.as_bool().ok_or("exists must be true or false")?)
                }
                _ => HeaderTest::In(
                    list_arg(arg)?
                        .iter()
                        .map(text_arg)
                        .collect::<Result<_, _>>()?,
                ),
            };
            return Ok(Condition::Header { name, test });
        }
        if let Some(p) = obj.get("json") {
            let pointer = p.as_str().ok_or("json must be a JSON Pointer string")?;
            if !(pointer.is_empty() || pointer.starts_with('/')) || pointer.len() > MAX_TEXT {
                return Err(format!(
                    "json must be a JSON Pointer such as /action (empty or starting with /, at most {MAX_TEXT} bytes)"
                ));
            }
            let (op, arg) = one_test(obj, "json", &["equals", "in", "exists", "gt", "lt"])?;
            let number = |a: &Value| {
                a.as_f64()
                    .filter(|n| n.is_finite())
                    .ok_or_else(|| format!("{op} must be a number"))
            };
            let test = match op {
                "equals" => JsonTest::Equals(literal(arg)?),
                "exists" => JsonTest::Exists(arg.as_bool().ok_or("exists must be true or false")?),
                "gt" => JsonTest::Gt(number(arg)?),
                "lt" => JsonTest::Lt(number(arg)?),
                _ => JsonTest::In(
                    list_arg(arg)?
                        .iter()
                        .map(literal)
                        .collect::<Result<_, _>>()?,
                ),
            };
            return Ok(Condition::Json {
                pointer: pointer.to_string(),
                test,
            });
        }
        Err("must have \"method\", \"header\" or \"json\"".into())
    }

    fn to_json(&self) -> Value {
        match self {
            Condition::Method(m) => json!({ "method": m }),
            Condition::Header { name, test } => {
                let (op, arg) = match test {
                    HeaderTest::Equals(s) => ("equals", json!(s)),
                    HeaderTest::In(l) => ("in", json!(l)),
                    HeaderTest::Prefix(p) => ("prefix", json!(p)),
                    HeaderTest::Exists(b) => ("exists", json!(b)),
                };
                json!({ "header": name, op: arg })
            }
            Condition::Json { pointer, test } => {
                let (op, arg) = match test {
                    JsonTest::Equals(v) => ("equals", v.0.clone()),
                    JsonTest::In(l) => {
                        ("in", Value::Array(l.iter().map(|v| v.0.clone()).collect()))
                    }
                    JsonTest::Exists(b) => ("exists", json!(b)),
                    JsonTest::Gt(n) => ("gt", json!(n)),
                    JsonTest::Lt(n) => ("lt", json!(n)),
                };
                json!({ "json": pointer, op: arg })
            }
        }
    }
}

/// The raw JSON value as a number, read by serde_json as the filter's literals are (so the
/// same text gives the same `f64`); `None` for anything else, and for a number out of
/// the `f64` range, which serde_json refuses.
fn json_number(raw: &RawValue) -> Option<f64> {
    serde_json::from_str::<f64>(raw.get()).ok()
}

/// Whether the JSON text `raw` equals the literal (a string, number, boolean or null),
/// numbers compared by value (`1` equals `1.0`). Read from the text: a plain string is
/// compared in place, and only a string with escapes is decoded.
fn raw_equals(raw: &RawValue, literal: &Value) -> bool {
    let text = raw.get();
    match literal {
        Value::String(want) => match text.strip_prefix('"').and_then(|t| t.strip_suffix('"')) {
            Some(inner) if !inner.contains('\\') => inner == want,
            Some(_) => serde_json::from_str::<String>(text).is_ok_and(|s| s == *want),
            None => false,
        },
        // Numbers equal as f64 (what `1 == 1.0` needs); equal numbers are equal f64s too.
        Value::Number(want) => json_number(raw).is_some_and(|n| Some(n) == want.as_f64()),
        Value::Bool(true) => text == "true",
        Value::Bool(false) => text == "false",
        Value::Null => text == "null",
        // Filters hold no object or array literals (`literal` refuses them).
        Value::Array(_) | Value::Object(_) => false,
    }
}

fn only_keys(obj: &Map<String, Value>, allowed: &[&str]) -> Result<(), String> {
    match obj.keys().find(|k| !allowed.contains(&k.as_str())) {
        Some(k) => Err(format!("unexpected field {k:?}")),
        None => Ok(()),
    }
}

/// The one test of a header or json condition: exactly one of `ops` beside `subject`.
fn one_test<'v>(
    obj: &'v Map<String, Value>,
    subject: &str,
    ops: &[&'static str],
) -> Result<(&'static str, &'v Value), String> {
    let mut found = None;
    for (k, v) in obj {
        if k == subject {
            continue;
        }
        let Some(op) = ops.iter().find(|op| **op == k) else {
            return Err(format!(
                "unexpected field {k:?}; a {subject} condition takes one of {}",
                ops.join(", ")
            ));
        };
        if found.replace((*op, v)).is_some() {
            return Err(format!("takes exactly one of {}", ops.join(", ")));
        }
    }
    found.ok_or_else(|| format!("needs one of {}", ops.join(", ")))
}

fn text_arg(v: &Value) -> Result<String, String> {
    let s = v.as_str().ok_or("values must be strings")?;
    if s.len() > MAX_TEXT || s.chars().any(|c| c.is_control()) {
        return Err(format!(
            "values must be at most {MAX_TEXT} bytes without control characters"
        ));
    }
    Ok(s.to_string())
}

fn list_arg(v: &Value) -> Result<&Vec<Value>, String> {
    v.as_array()
        .filter(|l| !l.is_empty() && l.len() <= MAX_IN_VALUES)
        .ok_or_else(|| format!("in must be a list of 1 to {MAX_IN_VALUES} values"))
}

/// A JSON value to compare with: a string, number, boolean or null, at most
/// [`MAX_TEXT`] bytes written out.
fn literal(v: &Value) -> Result<JsonLiteral, String> {
    if v.is_object() || v.is_array() || v.to_string().len() > MAX_TEXT {
        return Err(format!(
            "values must be strings, numbers, true, false or null, at most {MAX_TEXT} bytes"
        ));
    }
    Ok(JsonLiteral(v.clone()))
}

/// An HTTP token character (RFC 9110 §5.6.2), as header names and methods are made of.
pub fn is_token_byte(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b)
}

/// A header name, checked and lower-cased.
pub fn header_name(raw: &str) -> Result<String, String> {
    let name = raw.trim();
    if name.is_empty() || name.len() > MAX_TEXT || !name.bytes().all(is_token_byte) {
        return Err(format!(
            "{name:?} is not an HTTP header name (letters, digits and -, at most {MAX_TEXT} bytes)"
        ));
    }
    Ok(name.to_ascii_lowercase())
}

fn truncate(mut s: String, max: usize) -> String {
    if s.len() > max {
        let mut cut = max;
        while !s.is_char_boundary(cut) {
            cut -= 1;
        }
        s.truncate(cut);
        s.push('…');
    }
    s
}

// ---------- dedupe ----------

/// Where a webhook finds a request's idempotency key, and for how long a key is
/// remembered.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct Dedupe {
    /// Where the key is.
    pub source: DedupeSource,
    /// A request whose key was stored less than this long ago is a duplicate.
    pub window_secs: u32,
}

/// Where a dedupe key is.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub enum DedupeSource {
    /// The first value of this header (lower case).
    Header(String),
    /// The value at this JSON Pointer of the body: a string as it is, a number or boolean
    /// as its JSON text.
    Json(String),
}

impl Dedupe {
    /// The JSON Pointer the key is read from, if it comes from the body.
    pub fn json_pointer(&self) -> Option<&str> {
        match &self.source {
            DedupeSource::Json(pointer) => Some(pointer),
            DedupeSource::Header(_) => None,
        }
    }

    /// The request's key, if it has one: a request without one is stored as usual. Keys
    /// longer than [`MAX_DEDUPE_KEY`] are replaced by their SHA-256, so the index stays
    /// bounded whatever senders send; the first byte tells the two spellings apart.
    pub fn key(&self, req: &RequestView<'_>) -> Option<Vec<u8>> {
        let raw: Vec<u8> = match &self.source {
            DedupeSource::Header(name) => req.header_values(name).next()?.to_vec(),
            DedupeSource::Json(pointer) => match req.json_value_at(pointer)? {
                Value::String(s) => s.as_bytes().to_vec(),
                v @ (Value::Number(_) | Value::Bool(_)) => v.to_string().into_bytes(),
                _ => return None,
            },
        };
        if raw.is_empty() {
            return None;
        }
        let mut key = Vec::with_capacity(raw.len().min(MAX_DEDUPE_KEY) + 1);
        if raw.len() <= MAX_DEDUPE_KEY {
            key.push(0);
            key.extend_from_slice(&raw);
        } else {
            use sha2::Digest as _;
            key.push(1);
            key.extend_from_slice(&sha2::Sha256::digest(&raw));
        }
        Some(key)
    }

    /// Parses the API's shape: `{"header": name, "window_secs": n}` or
    /// `{"json": pointer, "window_secs": n}` (window optional, 24 h by default).
    pub fn from_json(v: &Value) -> Result<Dedupe, String> {
        let obj = v.as_object().ok_or(
            "must be {\"header\": name, \"window_secs\": n} or {\"json\": pointer, \"window_secs\": n}",
        )?;
        only_keys(obj, &["header", "json", "window_secs"])?;
        let source = match (obj.get("header"), obj.get("json")) {
            (Some(h), None) => {
                DedupeSource::Header(header_name(h.as_str().ok_or("header must be a string")?)?)
            }
            (None, Some(p)) => {
                let p = p.as_str().ok_or("json must be a JSON Pointer string")?;
                if !p.starts_with('/') || p.len() > MAX_TEXT {
                    return Err(format!(
                        "json must be a JSON Pointer such as /id (starting with /, at most {MAX_TEXT} bytes)"
                    ));
                }
                DedupeSource::Json(p.to_string())
            }
            _ => return Err("needs exactly one of header, json".into()),
        };
        let window_secs = match obj.get("window_secs") {
            None | Some(Value::Null) => DEFAULT_DEDUPE_WINDOW_SECS,
            Some(w) => w
                .as_u64()
                .filter(|w| (1..=u64::from(MAX_DEDUPE_WINDOW_SECS)).contains(w))
                .ok_or(format!(
                    "window_secs must be between 1 and {MAX_DEDUPE_WINDOW_SECS}"
                ))? as u32,
        };
        Ok(Dedupe {
            source,
            window_secs,
        })
    }

    /// The API's shape.
    pub fn to_json(&self) -> Value {
        match &self.source {
            DedupeSource::Header(h) => json!({ "header": h, "window_secs": self.window_secs }),
            DedupeSource::Json(p) => json!({ "json": p, "window_secs": self.window_secs }),
        }
    }
}

// ---------- transforms ----------

/// Changes an http target makes to the forwarded request.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
pub struct Transform {
    /// Headers added, replacing any of the same name (values may be credentials).
    pub set_headers: Vec<(String, Secret)>,
    /// Headers not forwarded (lower case).
    pub remove_headers: Vec<String>,
    /// Replaces the target URL's path and query; see [`render_path`].
    pub path: Option<String>,
}

/// Headers a transform may not set or remove: framing and hop-by-hop headers the client
/// controls, and webhooker's own (`x-webhooker-*`: ids receivers dedupe by and the hop
/// count that stops loops).
fn reserved_header(name: &str) -> bool {
    name.starts_with("x-webhooker-")
        || matches!(
            name,
            "host"
                | "content-length"
                | "transfer-encoding"
                | "connection"
                | "keep-alive"
                | "proxy-connection"
                | "te"
                | "trailer"
                | "upgrade"
        )
}

impl Transform {
    /// Whether it changes nothing.
    pub fn is_empty(&self) -> bool {
        self.set_headers.is_empty() && self.remove_headers.is_empty() && self.path.is_none()
    }

    /// Parses the API's shape: `{"set_headers": {name: value}, "remove_headers": [name],
    /// "path": template}`, every field optional.
    pub fn from_json(v: &Value) -> Result<Transform, String> {
        let obj = v
            .as_object()
            .ok_or("must be an object with set_headers, remove_headers or path")?;
        only_keys(obj, &["set_headers", "remove_headers", "path"])?;
        let mut t = Transform::default();
        if let Some(set) = obj.get("set_headers").filter(|v| !v.is_null()) {
            let set = set
                .as_object()
                .ok_or("set_headers must be an object of header names to values")?;
            for (name, value) in set {
                let value = value.as_str().ok_or("set_headers values must be strings")?;
                t.set_headers.push((name.clone(), Secret::new(value)));
            }
        }
        if let Some(remove) = obj.get("remove_headers").filter(|v| !v.is_null()) {
            let remove = remove
                .as_array()
                .ok_or("remove_headers must be a list of header names")?;
            for name in remove {
                let name = name.as_str().ok_or("remove_headers must be header names")?;
                t.remove_headers.push(name.to_string());
            }
        }
        if let Some(path) = obj.get("path").filter(|v| !v.is_null()) {
            let path = path.as_str().ok_or("path must be a string")?;
            if !path.is_empty() {
                t.path = Some(path.to_string());
            }
        }
        t.checked()
    }

    /// The transform with its names lower-cased and every bound checked.
    pub fn checked(mut self) -> Result<Transform, String> {
        if self.set_headers.len() > MAX_TRANSFORM_HEADERS
            || self.remove_headers.len() > MAX_TRANSFORM_HEADERS
        {
            return Err(format!(
                "at most {MAX_TRANSFORM_HEADERS} headers to set and {MAX_TRANSFORM_HEADERS} to remove"
            ));
        }
        for (name, value) in &mut self.set_headers {
            *name = header_name(name)?;
            if reserved_header(name) {
                return Err(format!("header {name} cannot be set"));
            }
            let v = value.expose();
            if v.len() > MAX_HEADER_VALUE
                || v.bytes().any(|b| (b < 0x20 && b != b'\t') || b == 0x7f)
            {
                return Err(format!(
                    "the value of {name} must be at most {MAX_HEADER_VALUE} bytes without control characters"
                ));
            }
        }
        for name in &mut self.remove_headers {
            *name = header_name(name)?;
            if reserved_header(name) {
                return Err(format!("header {name} cannot be removed"));
            }
        }
        if let Some(path) = &self.path {
            check_path_template(path)?;
        }
        Ok(self)
    }

    /// The API's shape. Header values are credentials: the API shows them to its
    /// authenticated callers, like signing secrets.
    pub fn to_json(&self) -> Value {
        let set: Map<String, Value> = self
            .set_headers
            .iter()
            .map(|(n, v)| (n.clone(), Value::from(v.expose())))
            .collect();
        json!({
            "set_headers": set,
            "remove_headers": self.remove_headers,
            "path": self.path,
        })
    }
}

/// The placeholders of a path template.
const PLACEHOLDERS: &str = "{query}, {event_id} and {header.Name}";

/// Checks a path template: starts with `/`, at most [`MAX_PATH_TEMPLATE`] bytes, no
/// spaces or control characters, and braces only around known placeholders.
fn check_path_template(t: &str) -> Result<(), String> {
    if !t.starts_with('/') || t.len() > MAX_PATH_TEMPLATE {
        return Err(format!(
            "path must start with / and be at most {MAX_PATH_TEMPLATE} bytes"
        ));
    }
    if t.chars()
        .any(|c| c.is_control() || c.is_whitespace() || c == '#')
    {
        return Err("path must not contain spaces, control characters or #".into());
    }
    let mut rest = t;
    while let Some(open) = rest.find(['{', '}']) {
        if rest.as_bytes()[open] == b'}' {
            return Err(format!(
                "path: unmatched }}; placeholders are {PLACEHOLDERS}"
            ));
        }
        let after = &rest[open + 1..];
        let close = after
            .find('}')
            .ok_or_else(|| format!("path: unmatched {{; placeholders are {PLACEHOLDERS}"))?;
        let name = &after[..close];
        let known = matches!(name, "query" | "event_id")
            || name
                .strip_prefix("header.")
                .is_some_and(|h| header_name(h).is_ok());
        if !known {
            return Err(format!(
                "path: unknown placeholder {{{name}}}; placeholders are {PLACEHOLDERS}"
            ));
        }
        rest = &after[close + 1..];
    }
    Ok(())
}

/// What a path template's placeholders stand for.
pub struct TemplateVars<'a> {
    /// The original request's path and query (`/webhook/{id}?a=1`).
    pub original_path: &'a str,
    /// The event id.
    pub event_id: uuid::Uuid,
    /// The original headers.
    pub headers: &'a [(String, Vec<u8>)],
}

/// Renders a checked path template: `{query}` is the original query string (without `?`,
/// as received), `{event_id}` the event's id, `{header.Name}` the first value of that
/// original header, percent-encoded (empty when absent). Everything else is literal.
pub fn render_path(template: &str, vars: &TemplateVars<'_>) -> String {
    let mut out = String::with_capacity(template.len() + 64);
    let mut rest = template;
    while let Some(open) = rest.find('{') {
        out.push_str(&rest[..open]);
        let after = &rest[open + 1..];
        let Some(close) = after.find('}') else {
            out.push_str(&rest[open..]);
            return out;
        };
        let name = &after[..close];
        match name {
            "query" => {
                if let Some((_, q)) = vars.original_path.split_once('?') {
                    out.push_str(q);
                }
            }
            "event_id" => out.push_str(&vars.event_id.to_string()),
            _ => {
                if let Some(h) = name.strip_prefix("header.")
                    && let Some((_, v)) =
                        vars.headers.iter().find(|(n, _)| n.eq_ignore_ascii_case(h))
                {
                    percent_encode(v, &mut out);
                }
            }
        }
        rest = &after[close + 1..];
    }
    out.push_str(rest);
    out
}

/// Appends `bytes` with everything but RFC 3986's unreserved characters percent-encoded,
/// so a header value stays within one path segment.
fn percent_encode(bytes: &[u8], out: &mut String) {
    for &b in bytes {
        if b.is_ascii_alphanumeric() || b"-._~".contains(&b) {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
}

/// The URL a request goes to: `url` with its path and query replaced by the rendered
/// `template`, or `url` itself without one.
pub fn target_url(url: &str, template: Option<&str>, vars: &TemplateVars<'_>) -> String {
    let Some(template) = template else {
        return url.to_string();
    };
    match url::Url::parse(url) {
        Ok(u) => format!(
            "{}{}",
            &u[..url::Position::BeforePath],
            render_path(template, vars)
        ),
        Err(_) => url.to_string(),
    }
}

// ---------- hops ----------

/// How many times the request has been forwarded by webhooker already: its
/// [`HOPS_HEADER`], 0 when absent or not a number.
pub fn hops(headers: &[(String, Vec<u8>)]) -> u32 {
    headers
        .iter()
        .find(|(n, _)| n.eq_ignore_ascii_case(HOPS_HEADER))
        .and_then(|(_, v)| std::str::from_utf8(v).ok())
        .and_then(|v| v.trim().parse::<u32>().ok())
        .unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn h(pairs: &[(&str, &str)]) -> Vec<(String, Vec<u8>)> {
        pairs
            .iter()
            .map(|(n, v)| (n.to_string(), v.as_bytes().to_vec()))
            .collect()
    }

    fn filter(v: Value) -> Filter {
        Filter::from_json(&v).unwrap()
    }

    #[test]
    fn conditions_on_method_headers_and_json() {
        let headers = h(&[("X-GitHub-Event", "push"), ("X-Tag", "v1.2")]);
        let body = br#"{"action":"opened","n":5,"pr":{"draft":false},"a/b":1}"#;
        let req = RequestView::new("POST", &headers, body);
        let pass = |v: Value| filter(json!({ "all": [v] })).check(&req).is_ok();
        assert!(pass(json!({"method": "post"})));
        assert!(!pass(json!({"method": "PUT"})));
        assert!(pass(json!({"header": "x-github-event", "equals": "push"})));
        assert!(!pass(json!({"header": "X-GitHub-Event", "equals": "Push"})));
        assert!(pass(
            json!({"header": "X-GitHub-Event", "in": ["issues", "push"]})
        ));
        assert!(pass(json!({"header": "X-Tag", "prefix": "v1."})));
        assert!(pass(json!({"header": "X-Tag", "exists": true})));
        assert!(pass(json!({"header": "X-Other", "exists": false})));
        assert!(pass(json!({"json": "/action", "equals": "opened"})));
        assert!(pass(json!({"json": "/action", "in": ["closed", "opened"]})));
        assert!(pass(json!({"json": "/n", "equals": 5.0})));
        assert!(pass(json!({"json": "/n", "gt": 4})));
        assert!(!pass(json!({"json": "/n", "lt": 5})));
        assert!(pass(json!({"json": "/pr/draft", "equals": false})));
        assert!(pass(json!({"json": "/a~1b", "exists": true})));
        assert!(pass(json!({"json": "/missing", "exists": false})));
        assert!(!pass(json!({"json": "/action", "gt": 1})));
    }

    #[test]
    fn all_any_and_a_body_that_is_not_json() {
        let headers = h(&[("x-event", "push")]);
        let f_all = filter(json!({"all": [
            {"header": "x-event", "equals": "push"},
            {"json": "/missing", "exists": false}
        ]}));
        let f_any = filter(json!({"any": [
            {"header": "x-event", "equals": "issues"},
            {"json": "/missing", "exists": false}
        ]}));
        let json_req = RequestView::new("POST", &headers, b"{}");
        assert!(f_all.check(&json_req).is_ok());
        assert!(f_any.check(&json_req).is_ok());
        // Not JSON: no body condition holds, not even "is absent".
        let text_req = RequestView::new("POST", &headers, b"a=1&b=2");
        let reason = f_all.check(&text_req).unwrap_err();
        assert!(reason.contains("json \"/missing\" is absent"), "{reason}");
        assert_eq!(
            f_any.check(&text_req).unwrap_err(),
            "filter: none of 2 conditions matched"
        );
    }

    /// Found by review: bytes off the paths still decide whether the body is JSON, and
    /// numbers compare as serde_json reads the filter's literals.
    #[test]
    fn what_the_walk_skips_still_counts() {
        let headers = h(&[]);
        let opened = filter(json!({"all": [{"json": "/action", "equals": "opened"}]}));
        let bad_utf8 =
            RequestView::new("POST", &headers, b"{\"action\":\"opened\",\"x\":\"\xff\"}");
        assert!(
            opened.check(&bad_utf8).is_err(),
            "invalid UTF-8 is not JSON"
        );
        let huge = RequestView::new("POST", &headers, br#"{"amount":1e400,"low":-1e400}"#);
        let gt = filter(json!({"all": [{"json": "/amount", "gt": 100}]}));
        let lt = filter(json!({"all": [{"json": "/low", "lt": 100}]}));
        assert!(
            gt.check(&huge).is_err() && lt.check(&huge).is_err(),
            "out of range is no number"
        );
        for text in ["1e-30", "97.910050895448555", "0.1", "123456789.123456789"] {
            let body = format!(r#"{{"x":{text}}}"#);
            let req = RequestView::new("POST", &headers, body.as_bytes());
            let literal: Value = serde_json::from_str(text).unwrap();
            let eq = filter(json!({"all": [{"json": "/x", "equals": literal}]}));
            assert!(eq.check(&req).is_ok(), "{text} equals itself");
        }
    }

    #[test]
    fn raw_values_equal_literals_as_parsed_values_do() {
        let raws = [
            r#""opened""#,
            r#""op\u0065ned""#,
            r#""a\"b""#,
            r#""""#,
            "1",
            "1.0",
            "1e0",
            "-0",
            "0",
            "12345678901234567890",
            "true",
            "false",
            "null",
            r#"{"a":1}"#,
            "[1]",
        ];
        let literals = [
            json!("opened"),
            json!("a\"b"),
            json!(""),
            json!(1),
            json!(1.0),
            json!(0),
            json!(12_345_678_901_234_567_890_u64),
            json!(true),
            json!(false),
            json!(null),
        ];
        for text in raws {
            let raw: &RawValue = serde_json::from_str(text).unwrap();
            let parsed: Value = serde_json::from_str(text).unwrap();
            for lit in &literals {
                let reference = match (&parsed, lit) {
                    (Value::Number(x), Value::Number(y)) => x == y || x.as_f64() == y.as_f64(),
                    _ => parsed == *lit,
                };
                assert_eq!(raw_equals(raw, lit), reference, "{text} vs {lit}");
            }
        }
    }

    #[test]
    fn the_body_is_read_once_per_path_and_only_for_json_conditions() {
        let headers = h(&[]);
        let req = RequestView::new("POST", &headers, b"{\"a\":1,\"b\":[2]}");
        let f = filter(json!({"all": [{"method": "POST"}]}));
        assert!(f.check(&req).is_ok());
        assert!(req.found.borrow().is_empty(), "no json condition, no read");
        let g = filter(json!({"all": [{"json": "/a", "equals": 1}, {"json": "/b/0", "gt": 1}]}));
        let again =
            filter(json!({"any": [{"json": "/a", "in": [1, 2]}, {"json": "/c", "exists": false}]}));
        assert!(g.check(&req).is_ok());
        assert!(again.check(&req).is_ok());
        let mut looked_up: Vec<String> = req.found.borrow().keys().cloned().collect();
        looked_up.sort();
        assert_eq!(
            looked_up,
            ["/a", "/b/0"],
            "each path once; `any` stops at the first pass"
        );
    }

    #[test]
    fn bad_filters_are_refused_with_a_message() {
        for (v, want) in [
            (json!({"all": []}), "1 to 20"),
            (json!({"every": [{"method": "POST"}]}), "must be"),
            (
                json!({"all": [{"header": "x", "equals": "a", "prefix": "b"}]}),
                "exactly one",
            ),
            (
                json!({"all": [{"header": "bad name", "exists": true}]}),
                "header name",
            ),
            (
                json!({"all": [{"json": "action", "exists": true}]}),
                "JSON Pointer",
            ),
            (json!({"all": [{"json": "/a", "gt": "x"}]}), "number"),
            (
                json!({"all": [{"json": "/a", "equals": {"x": 1}}]}),
                "strings, numbers",
            ),
            (json!({"all": [{"header": "x", "in": []}]}), "list of 1"),
            (json!({"all": [{"nothing": 1}]}), "method"),
        ] {
            let e = Filter::from_json(&v).unwrap_err();
            assert!(e.contains(want), "{v}: {e}");
        }
        let many: Vec<Value> = (0..21).map(|_| json!({"method": "POST"})).collect();
        assert!(Filter::from_json(&json!({ "any": many })).is_err());
    }

    #[test]
    fn filters_round_trip_through_the_api_shape_and_serde() {
        let v = json!({"any": [
            {"method": "POST"},
            {"header": "x-a", "in": ["1", "2"]},
            {"json": "/n", "gt": 2.5},
            {"json": "/s", "equals": "x"}
        ]});
        let f = filter(v.clone());
        assert_eq!(f.to_json(), v);
        let bytes = serde_json::to_vec(&f).unwrap();
        let back: Filter = serde_json::from_slice(&bytes).unwrap();
        assert_eq!(back, f);
    }

    #[test]
    fn dedupe_keys_from_a_header_or_a_pointer() {
        let d = Dedupe::from_json(&json!({"header": "X-GitHub-Delivery"})).unwrap();
        assert_eq!(d.window_secs, DEFAULT_DEDUPE_WINDOW_SECS);
        let headers = h(&[("x-github-delivery", "abc")]);
        let req = RequestView::new("POST", &headers, b"");
        assert_eq!(d.key(&req).unwrap(), b"\0abc");
        let j = Dedupe::from_json(&json!({"json": "/id", "window_secs": 60})).unwrap();
        assert_eq!(
            j.key(&RequestView::new("POST", &headers, br#"{"id":"evt_1"}"#)),
            Some(b"\0evt_1".to_vec())
        );
        assert_eq!(
            j.key(&RequestView::new("POST", &headers, br#"{"id":42}"#)),
            Some(b"\x0042".to_vec())
        );
        assert_eq!(
            j.key(&RequestView::new("POST", &headers, b"not json")),
            None
        );
        let long = "k".repeat(MAX_DEDUPE_KEY + 1);
        let body = format!(r#"{{"id":"{long}"}}"#);
        let key = j
            .key(&RequestView::new("POST", &headers, body.as_bytes()))
            .unwrap();
        assert_eq!((key[0], key.len()), (1, 33));
        assert!(Dedupe::from_json(&json!({"json": "/id", "window_secs": 0})).is_err());
        assert!(Dedupe::from_json(&json!({"header": "a", "json": "/id"})).is_err());
    }

    #[test]
    fn transforms_are_checked_and_paths_rendered() {
        let t = Transform::from_json(&json!({
            "set_headers": {"Authorization": "Bearer x"},
            "remove_headers": ["X-Hub-Signature-256"],
            "path": "/in/{header.X-GitHub-Event}/{event_id}?{query}"
        }))
        .unwrap();
        assert_eq!(t.set_headers[0].0, "authorization");
        assert_eq!(t.remove_headers, ["x-hub-signature-256"]);
        let headers = h(&[("X-GitHub-Event", "pull request/x")]);
        let id = uuid::Uuid::nil();
        let vars = TemplateVars {
            original_path: "/webhook/abc?a=1&b=2",
            event_id: id,
            headers: &headers,
        };
        assert_eq!(
            target_url("https://ci.example:8443/old?x=y", t.path.as_deref(), &vars),
            format!("https://ci.example:8443/in/pull%20request%2Fx/{id}?a=1&b=2")
        );
        assert_eq!(
            target_url("https://a.example/p", None, &vars),
            "https://a.example/p"
        );
        for bad in [
            json!({"set_headers": {"X-Webhooker-Hops": "0"}}),
            json!({"remove_headers": ["host"]}),
            json!({"set_headers": {"X-A": "line\nbreak"}}),
            json!({"path": "no-slash"}),
            json!({"path": "/{nope}"}),
            json!({"path": "/{query"}),
            json!({"other": 1}),
        ] {
            assert!(Transform::from_json(&bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn hop_counts() {
        assert_eq!(hops(&h(&[])), 0);
        assert_eq!(hops(&h(&[("X-Webhooker-Hops", "2")])), 2);
        assert_eq!(hops(&h(&[("x-webhooker-hops", "junk")])), 0);
    }
}
