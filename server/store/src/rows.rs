//! Stored types: the replay record as it is written to and read from the database.
//!
//! These are the store's own serde types (architecture convention 12: wire and stored types
//! are separate). The gateway fills a [`ReplayRecord`] from its routing outcome and response;
//! the store serialises it to JSON and keeps it, with its key and id, in a compressed
//! segment. Records must stay readable forever: every field added after
//! [`RECORD_SCHEMA_VERSION`] 1 has a serde default, and unknown fields are ignored, so an
//! older build reads newer records and a newer build reads older ones.

use std::borrow::Cow;
use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

/// Version of the [`ReplayRecord`] JSON shape written by this build. Version 3 is the
/// whole record (stored in compressed segments). Version 2 left out of the JSON what the
/// row's own columns held (id, decision, final model, session hash, status, usage, cache
/// hit), and version 1 repeated them; the migration to segments rebuilds both as whole
/// records.
pub const RECORD_SCHEMA_VERSION: u32 = 3;

/// A new record id stamped now; see [`record_id_at`].
#[must_use]
pub fn new_record_id() -> String {
    record_id_at(now_ms())
}

/// Largest millisecond timestamp an id carries (48 bits, the year 10889).
const MAX_ID_MS: i64 = (1 << 48) - 1;

/// A record id for a request that arrived at `timestamp_ms`: a UUIDv7 as 32 lowercase hex
/// digits (upstream's record id format) whose first 64 bits are the millisecond timestamp,
/// the version nibble and a 12-bit counter (RFC 9562 §6.2, method 1), the rest random. Ids
/// therefore sort by time, and the first 64 bits, read as an integer ([`record_key`]), are
/// the row's key in the store: records are stored in id order with no index of their own.
/// Ids of the same millisecond differ in the counter (4 096 before it wraps) and in 62
/// random bits; two ids with the same key are still stored apart (the store then gives the
/// later one the next free key of that millisecond).
#[must_use]
pub fn record_id_at(timestamp_ms: i64) -> String {
    static COUNTER: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    let counter = COUNTER.fetch_add(1, std::sync::atomic::Ordering::Relaxed) & 0xFFF;
    let ms = timestamp_ms.clamp(0, MAX_ID_MS) as u64;
    let high = (ms << 16) | 0x7000 | counter;
    let random = uuid::Uuid::new_v4().as_u64_pair().1;
    let low = (random & 0x3FFF_FFFF_FFFF_FFFF) | 0x8000_0000_0000_0000;
    hex_id(high, low)
}

/// `high` then `low` as 32 lowercase hex digits (a UUID's simple form, written per request
/// without the formatting machinery).
fn hex_id(high: u64, low: u64) -> String {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    let mut digits = [0u8; 32];
    let value = u128::from(high) << 64 | u128::from(low);
    for (i, d) in digits.iter_mut().enumerate() {
        *d = HEX[((value >> (4 * (31 - i))) & 0xf) as usize];
    }
    // Never fails: every byte is an ASCII digit.
    String::from_utf8(digits.to_vec()).unwrap_or_default()
}

/// The store key of a record id: its first 64 bits as an integer (see [`record_id_at`]);
/// `None` unless `id` is 32 hex digits. Keys of one millisecond `ms` lie in
/// `ms << 16 ..= ms << 16 | 0xFFFF`.
#[must_use]
pub fn record_key(id: &str) -> Option<i64> {
    let bytes: &[u8; 32] = id.as_bytes().try_into().ok()?;
    let (high, low) = bytes.split_at(16);
    // Branch-free: every digit is looked up, and any non-digit (0xFF) sets the high bit.
    let mut seen = 0u8;
    let mut key = 0u64;
    for &b in high {
        let digit = HEX_DIGITS[usize::from(b)];
        seen |= digit;
        key = key << 4 | u64::from(digit & 0xF);
    }
    for &b in low {
        seen |= HEX_DIGITS[usize::from(b)];
    }
    if seen & 0x80 != 0 {
        return None;
    }
    // Only a timestamp beyond 2^47 ms (the year 6429) sets the sign bit.
    i64::try_from(key).ok()
}

/// The value of each hex digit (either case); 0xFF for every other byte.
static HEX_DIGITS: [u8; 256] = {
    let mut table = [0xFF; 256];
    let mut i = 0;
    while i < 10 {
        table[b'0' as usize + i] = i as u8;
        i += 1;
    }
    let mut i = 0;
    while i < 6 {
        table[b'a' as usize + i] = 10 + i as u8;
        table[b'A' as usize + i] = 10 + i as u8;
        i += 1;
    }
    table
};

/// The millisecond timestamp of a record id (its first 48 bits); `None` unless `id` is 32
/// hex digits.
#[must_use]
pub fn record_time_ms(id: &str) -> Option<i64> {
    record_key(id).map(|key| key >> 16)
}

/// The first store key of millisecond `ms` (clamped to what an id can carry).
pub(crate) fn first_key_of_ms(ms: i64) -> i64 {
    ms.clamp(0, MAX_ID_MS >> 1) << 16
}

/// The first and last store key of the millisecond that `key` belongs to: where a record
/// whose id has this key is stored (its own key, or the next free one after a clash).
pub(crate) fn keys_of_same_ms(key: i64) -> (i64, i64) {
    let first = key & !0xFFFF;
    (first, first | 0xFFFF)
}

/// `skip_serializing_if` for flags that default to `false`.
#[allow(
    clippy::trivially_copy_pass_by_ref,
    reason = "serde passes a reference"
)]
fn is_false(b: &bool) -> bool {
    !*b
}

/// Milliseconds since the Unix epoch, now (0 if the clock is before 1970).
#[must_use]
pub fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
}

/// Cuts `text` to at most `max_bytes` bytes on a character boundary.
///
/// Returns the kept text and whether anything was cut. Callers use it for
/// `request_body`/`response_body` with the decision's `router_replay.max_body_bytes`.
#[must_use]
pub fn cap_body(text: &str, max_bytes: usize) -> (String, bool) {
    if text.len() <= max_bytes {
        return (text.to_owned(), false);
    }
    let mut end = max_bytes;
    while end > 0 && !text.is_char_boundary(end) {
        end -= 1;
    }
    (text.get(..end).unwrap_or_default().to_owned(), true)
}

/// Where a request ended up.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Default, Serialize, Deserialize,
)]
#[serde(rename_all = "snake_case")]
pub enum Lifecycle {
    /// The upstream response was relayed to the end.
    #[default]
    Completed,
    /// The request failed (routing, upstream error status, upstream cut).
    Failed,
    /// The client went away before the end.
    Aborted,
    /// Written before the end (e.g. at stream start); a later record with the same id
    /// replaces it.
    InProgress,
    /// A state this build does not know (written by a newer one).
    #[serde(other)]
    Unknown,
}

impl Lifecycle {
    /// The lowercase name stored in the `lifecycle` column.
    #[must_use]
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Completed => "completed",
            Self::Failed => "failed",
            Self::Aborted => "aborted",
            Self::InProgress => "in_progress",
            Self::Unknown => "unknown",
        }
    }

    /// Parses a stored name; anything unknown is [`Lifecycle::Unknown`].
    #[must_use]
    pub fn from_name(name: &str) -> Self {
        match name {
            "completed" => Self::Completed,
            "failed" => Self::Failed,
            "aborted" => Self::Aborted,
            "in_progress" => Self::InProgress,
            _ => Self::Unknown,
        }
    }
}

/// What session learning did to this request (upstream runtime spec §4.4).
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(default)]
pub struct LearningTrace {
    /// E.g. `stay`, `switch`, `rescue`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub action: Option<String>,
    /// Why the action was taken.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    /// `session` or `conversation`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub scope: Option<String>,
    /// `observe` (shadow) or `enforce`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub mode: Option<String>,
    /// Estimated cost of switching models mid-session (prefix cache lost), if computed.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub switch_cost: Option<f64>,
    /// The full learning trace (protection, adaptation, scores) as the engine reports it.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub detail: Option<serde_json::Value>,
}

/// Stage timings in milliseconds.
#[derive(Debug, Clone, Copy, PartialEq, Default, Serialize, Deserialize)]
#[serde(default)]
pub struct Timings {
    /// Signal extraction, embeddings included.
    pub signals_ms: f64,
    /// Projections, decisions and model selection.
    pub routing_ms: f64,
    /// From sending upstream to the upstream response head; `None` if never reached.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub upstream_ttfb_ms: Option<f64>,
    /// From request arrival to the last byte (or failure).
    pub total_ms: f64,
}

/// Token usage as the backend reported it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(default)]
pub struct Usage {
    /// Prompt tokens, cached ones included.
    pub prompt_tokens: u64,
    /// The part of `prompt_tokens` served from the backend's prefix cache.
    pub cached_prompt_tokens: u64,
    /// Completion tokens (reasoning included).
    pub completion_tokens: u64,
}

impl Usage {
    /// Prompt plus completion tokens.
    #[must_use]
    pub fn total_tokens(&self) -> u64 {
        self.prompt_tokens.saturating_add(self.completion_tokens)
    }
}

/// What the request cost and what it would have cost on the most expensive model.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(default)]
pub struct Cost {
    /// Usage priced at the final model's pricing.
    pub actual: f64,
    /// The same usage priced at the baseline (most expensive) model.
    pub baseline: f64,
    /// ISO currency code, e.g. `USD`.
    pub currency: String,
    /// The model `baseline` was priced at.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub baseline_model: Option<String>,
}

impl Cost {
    /// `baseline - actual`.
    #[must_use]
    pub fn savings(&self) -> f64 {
        self.baseline - self.actual
    }
}

/// A JSON document kept as its text, or packed (built with [`crate::JsonPacker`]): written
/// into a record verbatim and read back without building a tree. Compares by text.
#[derive(Debug, Clone)]
pub struct RawJson(Repr);

#[derive(Debug, Clone)]
enum Repr {
    Text(Box<str>),
    /// One whole packed value (`packed`).
    Packed(Box<[u8]>),
}

/// The struct name (and field name) under which serde_json's own raw values serialise; a
/// struct of this name with one string field is written as that string, unquoted.
const RAW_VALUE_TOKEN: &str = "$serde_json::private::RawValue";

impl RawJson {
    /// `value` serialised; `None` if it cannot be (a map with non-string keys).
    pub fn of<T: Serialize + ?Sized>(value: &T) -> Option<Self> {
        serde_json::to_string(value)
            .ok()
            .map(|s| Self(Repr::Text(s.into_boxed_str())))
    }

    /// Text its caller produced as JSON, kept without parsing it again. It must be valid
    /// JSON: a record holding anything else cannot be read back.
    #[must_use]
    pub fn from_trusted(json: String) -> Self {
        Self(Repr::Text(json.into_boxed_str()))
    }

    pub(crate) fn from_packed(bytes: Box<[u8]>) -> Self {
        Self(Repr::Packed(bytes))
    }

    /// The JSON text (a malformed packed value reads as `null`).
    #[must_use]
    pub fn get(&self) -> Cow<'_, str> {
        match &self.0 {
            Repr::Text(text) => Cow::Borrowed(text),
            Repr::Packed(bytes) => {
                let mut text = Vec::with_capacity(bytes.len() * 3);
                crate::packed::Sink::packed(&mut crate::packed::JsonText::new(&mut text), bytes);
                Cow::Owned(String::from_utf8(text).unwrap_or_else(|_| "null".into()))
            }
        }
    }

    /// The packed bytes, when it was built packed.
    pub(crate) fn packed_bytes(&self) -> Option<&[u8]> {
        match &self.0 {
            Repr::Text(_) => None,
            Repr::Packed(bytes) => Some(bytes),
        }
    }

    /// Parsed into a tree.
    #[must_use]
    pub fn to_value(&self) -> serde_json::Value {
        serde_json::from_str(&self.get()).unwrap_or(serde_json::Value::Null)
    }
}

/// Written as the JSON it holds (serde_json's raw value protocol), not as a string.
impl Serialize for RawJson {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        use serde::ser::SerializeStruct;
        let mut s = serializer.serialize_struct(RAW_VALUE_TOKEN, 1)?;
        s.serialize_field(RAW_VALUE_TOKEN, &*self.get())?;
        s.end()
    }
}

/// Any JSON value, kept as its text.
impl<'de> Deserialize<'de> for RawJson {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let raw = Box::<serde_json::value::RawValue>::deserialize(deserializer)?;
        Ok(Self(Repr::Text(raw.get().into())))
    }
}

impl PartialEq for RawJson {
    fn eq(&self, other: &Self) -> bool {
        self.get() == other.get()
    }
}

/// One routed request, as stored.
///
/// Only `id`, `timestamp_ms` and `lifecycle` are required; everything else may be absent
/// (a request rejected before routing has no decision, a failed one no usage). Absent,
/// empty and `false` fields are left out of the JSON (upstream's optional fields; a smaller
/// row to write) and read back as their defaults.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct ReplayRecord {
    /// Shape version of this record ([`RECORD_SCHEMA_VERSION`] when written by this build).
    pub schema_version: u32,
    /// Time-sortable id, see [`record_id_at`]; its time should be `timestamp_ms` (records
    /// are ordered and filtered by the time in their id). Recording an id that is already
    /// stored replaces the stored record.
    #[serde(skip_serializing_if = "String::is_empty")]
    pub id: String,
    /// Request arrival, ms since the Unix epoch.
    pub timestamp_ms: i64,
    /// Request end, ms since the Unix epoch.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ended_ms: Option<i64>,
    /// The client's or the gateway's request id (`x-request-id`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub request_id: Option<String>,
    /// Hash of the session identity (never the raw header).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub session_hash: Option<String>,
    /// Hash of the conversation identity.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub conversation_hash: Option<String>,
    /// The model the client asked for (the auto name, e.g. `MoM`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub requested_model: Option<String>,
    /// Recipe name.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub recipe: Option<String>,
    /// Winning decision.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub decision: Option<String>,
    /// Confidence of the winning decision.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub confidence: Option<f64>,
    /// Model the decision chose before learning.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub base_model: Option<String>,
    /// Model the request was sent to.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub final_model: Option<String>,
    /// Upstream backend (name or address) that served it.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub backend: Option<String>,
    /// HTTP status returned to the client.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub status: Option<u16>,
    /// Where the request ended up.
    pub lifecycle: Lifecycle,
    /// Whether the response was streamed (SSE).
    #[serde(skip_serializing_if = "is_false")]
    pub streaming: bool,
    /// Matched rule names per signal family.
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub signals: BTreeMap<String, Vec<String>>,
    /// Confidence per matched signal (`family:rule`).
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub signal_confidences: BTreeMap<String, f64>,
    /// Projection outputs (scores and bands) by name.
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub projection_scores: BTreeMap<String, f64>,
    /// The decision evaluation trace as the engine reports it, serialised once by the
    /// caller (the request path never builds a JSON tree for it).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub eval_trace: Option<RawJson>,
    /// Session learning, when enabled.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub learning: Option<LearningTrace>,
    /// Plugins applied, in order.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub plugins: Vec<String>,
    /// Whether reasoning was switched on.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub use_reasoning: Option<bool>,
    /// Reasoning effort sent upstream.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reasoning_effort: Option<String>,
    /// Stage timings.
    pub timings: Timings,
    /// Backend-reported usage.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub usage: Option<Usage>,
    /// Estimated cost, when the models have pricing.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cost: Option<Cost>,
    /// Served from the semantic cache.
    #[serde(skip_serializing_if = "is_false")]
    pub cache_hit: bool,
    /// Why the request ended, when not plainly completed (e.g. `client_disconnect`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub terminal_reason: Option<String>,
    /// Request body, already capped by the caller (see [`cap_body`]).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub request_body: Option<String>,
    /// Whether `request_body` was cut.
    #[serde(skip_serializing_if = "is_false")]
    pub request_body_truncated: bool,
    /// Response body (for streams, the reassembled text), already capped by the caller.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub response_body: Option<String>,
    /// Whether `response_body` was cut.
    #[serde(skip_serializing_if = "is_false")]
    pub response_body_truncated: bool,
}

impl Default for ReplayRecord {
    /// An empty record with version 1 and no id; readers fill missing fields from it.
    fn default() -> Self {
        Self {
            schema_version: RECORD_SCHEMA_VERSION,
            id: String::new(),
            timestamp_ms: 0,
            ended_ms: None,
            request_id: None,
            session_hash: None,
            conversation_hash: None,
            requested_model: None,
            recipe: None,
            decision: None,
            confidence: None,
            base_model: None,
            final_model: None,
            backend: None,
            status: None,
            lifecycle: Lifecycle::Completed,
            streaming: false,
            signals: BTreeMap::new(),
            signal_confidences: BTreeMap::new(),
            projection_scores: BTreeMap::new(),
            eval_trace: None,
            learning: None,
            plugins: Vec::new(),
            use_reasoning: None,
            reasoning_effort: None,
            timings: Timings::default(),
            usage: None,
            cost: None,
            cache_hit: false,
            terminal_reason: None,
            request_body: None,
            request_body_truncated: false,
            response_body: None,
            response_body_truncated: false,
        }
    }
}

impl ReplayRecord {
    /// A record with a fresh id of the same millisecond ([`record_id_at`]) stamped
    /// `timestamp_ms`; fill the rest with struct update syntax or field by field.
    #[must_use]
    pub fn new(timestamp_ms: i64) -> Self {
        Self {
            id: record_id_at(timestamp_ms),
            timestamp_ms,
            ..Self::default()
        }
    }

    /// Whether insights count this request as an error: lifecycle `failed`, or an HTTP
    /// status of 400 or more.
    #[must_use]
    pub fn is_error(&self) -> bool {
        self.lifecycle == Lifecycle::Failed || self.status.is_some_and(|s| s >= 400)
    }

    /// Whether any float is NaN or infinite (see [`ReplayRecord::sanitize`]).
    pub(crate) fn has_non_finite(&self) -> bool {
        let bad = |x: f64| !x.is_finite();
        let t = &self.timings;
        self.confidence.is_some_and(bad)
            || self.signal_confidences.values().any(|&x| bad(x))
            || self.projection_scores.values().any(|&x| bad(x))
            || self
                .learning
                .as_ref()
                .is_some_and(|l| l.switch_cost.is_some_and(bad))
            || bad(t.signals_ms)
            || bad(t.routing_ms)
            || t.upstream_ttfb_ms.is_some_and(bad)
            || bad(t.total_ms)
            || self
                .cost
                .as_ref()
                .is_some_and(|c| bad(c.actual) || bad(c.baseline))
    }

    /// Replaces non-finite floats (NaN, ±∞), which JSON cannot carry, so that every stored
    /// record reads back: optional ones become `None`, required ones and map values `0`.
    pub(crate) fn sanitize(&mut self) {
        fn finite(x: &mut f64) {
            if !x.is_finite() {
                *x = 0.0;
            }
        }
        fn finite_opt(x: &mut Option<f64>) {
            if x.is_some_and(|v| !v.is_finite()) {
                *x = None;
            }
        }
        finite_opt(&mut self.confidence);
        self.signal_confidences.values_mut().for_each(finite);
        self.projection_scores.values_mut().for_each(finite);
        if let Some(l) = &mut self.learning {
            finite_opt(&mut l.switch_cost);
        }
        finite(&mut self.timings.signals_ms);
        finite(&mut self.timings.routing_ms);
        finite_opt(&mut self.timings.upstream_ttfb_ms);
        finite(&mut self.timings.total_ms);
        if let Some(c) = &mut self.cost {
            finite(&mut c.actual);
            finite(&mut c.baseline);
        }
    }

    /// The record without its bodies (what a list view without details shows).
    #[must_use]
    pub fn without_bodies(mut self) -> Self {
        self.request_body = None;
        self.response_body = None;
        self
    }
}

#[cfg(test)]
mod tests {
    use std::collections::HashSet;

    use super::*;

    #[test]
    fn ids_are_32_hex_and_sort_by_time() {
        let a = new_record_id();
        std::thread::sleep(std::time::Duration::from_millis(2));
        let b = new_record_id();
        assert_eq!(a.len(), 32);
        assert!(a
            .chars()
            .all(|c| c.is_ascii_hexdigit() && !c.is_ascii_uppercase()));
        assert!(a < b, "{a} !< {b}");
    }

    #[test]
    fn ids_are_uuid_v7_keyed_by_their_millisecond_and_counter() {
        let ms = 1_795_309_591_111;
        let ids: Vec<String> = (0..3).map(|_| record_id_at(ms)).collect();
        for id in &ids {
            let uuid = uuid::Uuid::parse_str(id).unwrap();
            assert_eq!(uuid.get_version_num(), 7, "{id}");
            assert_eq!(uuid.get_variant(), uuid::Variant::RFC4122, "{id}");
            assert_eq!(record_time_ms(id), Some(ms));
            let key = record_key(id).unwrap();
            assert!((first_key_of_ms(ms)..first_key_of_ms(ms + 1)).contains(&key));
        }
        // Same millisecond: the counter orders them (unless it wrapped in between, 1 in 4 096).
        let keys: HashSet<i64> = ids.iter().filter_map(|id| record_key(id)).collect();
        assert_eq!(keys.len(), 3, "{ids:?}");
        assert_eq!(
            record_key(&ReplayRecord::new(ms).id).map(|k| k >> 16),
            Some(ms)
        );
        for bad in [
            "",
            "abc",
            "0a_b",
            &"g".repeat(32),
            &"f".repeat(32),
            &"0".repeat(31),
        ] {
            assert_eq!(record_key(bad), None, "{bad}");
        }
        assert_eq!(first_key_of_ms(-5), 0);
    }

    #[test]
    fn ids_are_a_uuids_simple_form() {
        for (high, low) in [
            (0, 0),
            (u64::MAX, u64::MAX),
            (0x0123_4567_89ab_cdef, 0xfedc_ba98_7654_3210),
            (1, 1 << 63),
        ] {
            assert_eq!(
                hex_id(high, low),
                uuid::Uuid::from_u64_pair(high, low).simple().to_string()
            );
        }
        let id = new_record_id();
        let parsed = uuid::Uuid::parse_str(&id).unwrap_or_default();
        assert_eq!(parsed.get_version_num(), 7, "{id}");
        assert_eq!(parsed.simple().to_string(), id);
    }

    #[test]
    fn record_keys_read_hex_of_either_case_and_reject_any_other_byte() {
        let id = "01a201cc863c7c0b94a9ea78a6dfbbb0";
        assert_eq!(record_key(id), Some(0x01a2_01cc_863c_7c0b));
        assert_eq!(
            record_key(&id.to_ascii_uppercase()),
            Some(0x01a2_01cc_863c_7c0b)
        );
        for at in 0..32 {
            for b in 0u8..0x80 {
                let mut bytes = id.as_bytes().to_vec();
                bytes[at] = b;
                let text = String::from_utf8(bytes).unwrap();
                // A first digit of 8 or more would set the sign bit: not a key.
                let want = char::from(b)
                    .is_ascii_hexdigit()
                    .then(|| i64::from_str_radix(text.get(..16).unwrap(), 16).ok())
                    .flatten();
                assert_eq!(record_key(&text), want, "{text:?}");
            }
        }
        // A multi-byte character makes 32 bytes of something else.
        assert_eq!(record_key(&format!("é{}", &id[2..])), None);
    }

    #[test]
    fn cap_body_cuts_on_char_boundary() {
        assert_eq!(cap_body("hello", 10), ("hello".to_owned(), false));
        assert_eq!(cap_body("hello", 5), ("hello".to_owned(), false));
        assert_eq!(cap_body("hello", 3), ("hel".to_owned(), true));
        // "é" is two bytes: cutting inside it keeps the character out.
        assert_eq!(cap_body("aé", 2), ("a".to_owned(), true));
        assert_eq!(cap_body("é", 0), (String::new(), true));
    }

    #[test]
    fn old_minimal_json_reads_with_defaults_and_unknown_fields_are_ignored() {
        let json = r#"{"id":"abc","timestamp_ms":5,"lifecycle":"weird","future_field":1}"#;
        let r: ReplayRecord = serde_json::from_str(json).unwrap();
        assert_eq!(r.id, "abc");
        assert_eq!(r.timestamp_ms, 5);
        assert_eq!(r.lifecycle, Lifecycle::Unknown);
        assert_eq!(r.schema_version, RECORD_SCHEMA_VERSION);
        assert!(r.signals.is_empty());
    }

    #[test]
    fn lifecycle_names_round_trip() {
        for l in [
            Lifecycle::Completed,
            Lifecycle::Failed,
            Lifecycle::Aborted,
            Lifecycle::InProgress,
            Lifecycle::Unknown,
        ] {
            assert_eq!(Lifecycle::from_name(l.as_str()), l);
            let json = serde_json::to_string(&l).unwrap();
            assert_eq!(json, format!("\"{}\"", l.as_str()));
        }
    }

    #[test]
    fn raw_json_is_written_as_json_by_serde_json() {
        #[derive(Serialize)]
        struct Holder {
            trace: RawJson,
            after: u8,
        }
        let holder = Holder {
            trace: RawJson::from_trusted(r#"[{"node_type":"AND","matched":true}]"#.into()),
            after: 1,
        };
        let expected = r#"{"trace":[{"node_type":"AND","matched":true}],"after":1}"#;
        assert_eq!(serde_json::to_string(&holder).unwrap(), expected);
        let mut buffer = Vec::new();
        serde_json::to_writer(&mut buffer, &holder).unwrap();
        assert_eq!(buffer, expected.as_bytes());
        let tree = serde_json::to_value(&holder).unwrap();
        assert_eq!(tree["trace"][0]["node_type"], "AND");
        let back: RawJson = serde_json::from_str(" [1, 2] ").unwrap();
        assert_eq!(back.get(), "[1, 2]");
        assert_eq!(RawJson::of(&[1, 2]).unwrap().get(), "[1,2]");
    }

    /// `has_non_finite` walks the same floats as `sanitize`: each one, made NaN alone, is
    /// seen, and gone after sanitising.
    #[test]
    fn has_non_finite_sees_every_float_sanitize_replaces() {
        let setters: [fn(&mut ReplayRecord); 10] = [
            |r| r.confidence = Some(f64::NAN),
            |r| {
                r.signal_confidences.insert("k".into(), f64::NAN);
            },
            |r| {
                r.projection_scores.insert("p".into(), f64::INFINITY);
            },
            |r| {
                r.learning = Some(LearningTrace {
                    switch_cost: Some(f64::NAN),
                    ..LearningTrace::default()
                });
            },
            |r| r.timings.signals_ms = f64::NAN,
            |r| r.timings.routing_ms = f64::NEG_INFINITY,
            |r| r.timings.upstream_ttfb_ms = Some(f64::NAN),
            |r| r.timings.total_ms = f64::INFINITY,
            |r| {
                r.cost = Some(Cost {
                    actual: f64::NAN,
                    ..Cost::default()
                });
            },
            |r| {
                r.cost = Some(Cost {
                    baseline: f64::NAN,
                    ..Cost::default()
                });
            },
        ];
        assert!(!ReplayRecord::new(1).has_non_finite());
        for (i, set) in setters.iter().enumerate() {
            let mut r = ReplayRecord::new(1);
            set(&mut r);
            assert!(r.has_non_finite(), "float {i} not seen");
            r.sanitize();
            assert!(!r.has_non_finite(), "float {i} not sanitised");
        }
    }

    #[test]
    fn sanitized_records_with_non_finite_floats_read_back() {
        let mut r = ReplayRecord::new(1);
        r.confidence = Some(f64::NAN);
        r.timings.total_ms = f64::INFINITY;
        r.signal_confidences.insert("k".into(), f64::NEG_INFINITY);
        r.cost = Some(Cost {
            actual: f64::NAN,
            ..Cost::default()
        });
        r.sanitize();
        let back: ReplayRecord = serde_json::from_str(&serde_json::to_string(&r).unwrap()).unwrap();
        assert_eq!(back, r);
        assert_eq!(back.confidence, None);
        assert_eq!(back.timings.total_ms, 0.0);
    }

    #[test]
    fn absent_fields_are_left_out_and_read_back_as_defaults() {
        let r = ReplayRecord {
            lifecycle: Lifecycle::Completed,
            timings: Timings {
                total_ms: 1.5,
                ..Timings::default()
            },
            ..ReplayRecord::new(7)
        };
        let json = serde_json::to_string(&r).unwrap();
        assert_eq!(
            json,
            format!(
                r#"{{"schema_version":{},"id":"{}","timestamp_ms":7,"lifecycle":"completed","timings":{{"signals_ms":0.0,"routing_ms":0.0,"total_ms":1.5}}}}"#,
                RECORD_SCHEMA_VERSION, r.id
            )
        );
        assert_eq!(serde_json::from_str::<ReplayRecord>(&json).unwrap(), r);
    }

    #[test]
    fn errors_are_failed_or_4xx_5xx() {
        let mut r = ReplayRecord::new(1);
        assert!(!r.is_error());
        r.status = Some(502);
        assert!(r.is_error());
        r.status = Some(200);
        r.lifecycle = Lifecycle::Failed;
        assert!(r.is_error());
        r.lifecycle = Lifecycle::Aborted;
        assert!(!r.is_error());
    }
}
