//! Packed JSON: the byte code records are stored as in segments of format 2.
//!
//! A record's JSON text spends most of its bytes on field names, quotes and decimal numbers,
//! and writing it costs the request thread most of what replay costs it. A packed record
//! says the same thing in fewer, cheaper bytes: field names are one byte (an index into
//! [`Key`], the record's own field names), strings are a length and their bytes (nothing
//! scanned for escaping), numbers are their machine form. [`unpack`] turns it back into
//! exactly the text `record_json` writes for the same record (tested), so every reader
//! keeps parsing plain JSON.
//!
//! Grammar (`varint` is unsigned LEB128; `zigzag` maps signed to unsigned):
//!
//! ```text
//! value  := NULL | FALSE | TRUE | F64 <8 bytes LE> | I64 <zigzag varint> | U64 <varint>
//!         | STR <varint len> <UTF-8> | RAW <varint len> <JSON text>
//!         | OBJ member* END | ARR value* END
//! member := KEY+i value          (field name Key i, i < 128)
//!         | STR <varint len> <UTF-8> value   (any other name, e.g. a map key)
//! ```
//!
//! The [`Key`] list is part of the stored format: names are only ever appended to it.

use std::fmt;

use crate::rows::RawJson;

/// Tags of packed values.
mod tag {
    pub const NULL: u8 = 0;
    pub const FALSE: u8 = 1;
    pub const TRUE: u8 = 2;
    pub const F64: u8 = 3;
    pub const I64: u8 = 4;
    pub const U64: u8 = 5;
    pub const STR: u8 = 6;
    pub const RAW: u8 = 7;
    pub const OBJ: u8 = 8;
    pub const ARR: u8 = 9;
    pub const END: u8 = 10;
    /// `KEY + i` names field [`super::Key`] `i`.
    pub const KEY: u8 = 0x80;
}

/// Deepest nesting [`unpack`] accepts (records nest three levels; raw values are copied).
const MAX_DEPTH: usize = 32;

macro_rules! keys {
    ($($key:ident = $name:literal,)*) => {
        /// The field names of a record, by the index a packed record stores them as.
        /// Append only: a stored index must keep naming the same field.
        #[derive(Debug, Clone, Copy, PartialEq, Eq)]
        #[repr(u8)]
        #[allow(dead_code, reason = "the eval trace's keys are only named by `FieldName`")]
        pub(crate) enum Key {
            $(
                #[doc = concat!("`", $name, "`")]
                $key,
            )*
        }

        /// Each key as JSON writes it before its value: quoted, with its colon.
        const QUOTED: &[&str] = &[$(concat!("\"", $name, "\":"),)*];

        /// Each key's name.
        const NAMES: &[&str] = &[$($name,)*];
    };
}

keys! {
    SchemaVersion = "schema_version",
    Id = "id",
    TimestampMs = "timestamp_ms",
    EndedMs = "ended_ms",
    RequestId = "request_id",
    SessionHash = "session_hash",
    ConversationHash = "conversation_hash",
    RequestedModel = "requested_model",
    Recipe = "recipe",
    Decision = "decision",
    Confidence = "confidence",
    BaseModel = "base_model",
    FinalModel = "final_model",
    Backend = "backend",
    Status = "status",
    Lifecycle = "lifecycle",
    Streaming = "streaming",
    Signals = "signals",
    SignalConfidences = "signal_confidences",
    ProjectionScores = "projection_scores",
    EvalTrace = "eval_trace",
    Learning = "learning",
    Plugins = "plugins",
    UseReasoning = "use_reasoning",
    ReasoningEffort = "reasoning_effort",
    Timings = "timings",
    Usage = "usage",
    Cost = "cost",
    CacheHit = "cache_hit",
    TerminalReason = "terminal_reason",
    RequestBody = "request_body",
    RequestBodyTruncated = "request_body_truncated",
    ResponseBody = "response_body",
    ResponseBodyTruncated = "response_body_truncated",
    SignalsMs = "signals_ms",
    RoutingMs = "routing_ms",
    UpstreamTtfbMs = "upstream_ttfb_ms",
    TotalMs = "total_ms",
    PromptTokens = "prompt_tokens",
    CachedPromptTokens = "cached_prompt_tokens",
    CompletionTokens = "completion_tokens",
    Actual = "actual",
    Baseline = "baseline",
    Currency = "currency",
    BaselineModel = "baseline_model",
    Action = "action",
    Reason = "reason",
    Scope = "scope",
    Mode = "mode",
    SwitchCost = "switch_cost",
    Detail = "detail",
    // The eval trace (`vllm_sr_engine::DecisionTrace`), packed by the gateway.
    DecisionName = "decision_name",
    Matched = "matched",
    RootTrace = "root_trace",
    NodeType = "node_type",
    SignalType = "signal_type",
    SignalName = "signal_name",
    Label = "label",
    Children = "children",
}

// Key indexes must fit beside the KEY tag bit.
const _: () = assert!(QUOTED.len() <= 128);

impl Key {
    /// The name as JSON writes it before its value: `"name":`.
    pub(crate) fn quoted(self) -> &'static str {
        QUOTED.get(self as usize).copied().unwrap_or_default()
    }

    /// The index of the key named `name`, if the table has it (usable in constants).
    pub(crate) const fn index_of(name: &str) -> Option<u8> {
        let mut i = 0;
        while i < NAMES.len() {
            if same_bytes(NAMES[i].as_bytes(), name.as_bytes()) {
                return Some(i as u8);
            }
            i += 1;
        }
        None
    }
}

const fn same_bytes(a: &[u8], b: &[u8]) -> bool {
    if a.len() != b.len() {
        return false;
    }
    let mut i = 0;
    while i < a.len() {
        if a[i] != b[i] {
            return false;
        }
        i += 1;
    }
    true
}

/// A member name for [`JsonPacker::field`], resolved once (in a constant, typically): one
/// byte when the record format's key table has it, the name itself otherwise.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FieldName {
    name: &'static str,
    key: Option<u8>,
}

impl FieldName {
    /// `name`, looked up in the key table.
    #[must_use]
    pub const fn new(name: &'static str) -> Self {
        Self {
            name,
            key: Key::index_of(name),
        }
    }
}

/// Where a record's fields are written: JSON text or packed bytes, in the same order.
///
/// Objects hold members (`key` or `name`, then one value); arrays hold values.
pub(crate) trait Sink {
    fn begin_object(&mut self);
    fn end_object(&mut self);
    fn begin_array(&mut self);
    fn end_array(&mut self);
    /// A member named by a record field.
    fn key(&mut self, key: Key);
    /// A member with any other name (a map's key).
    fn name(&mut self, name: &str);
    fn str(&mut self, value: &str);
    fn i64(&mut self, value: i64);
    fn u64(&mut self, value: u64);
    /// Non-finite values are written as `null`, as serde_json does.
    fn f64(&mut self, value: f64);
    fn bool(&mut self, value: bool);
    /// A value that is already JSON text.
    fn raw(&mut self, json: &str);
    /// A value that is already packed (one whole value, trusted like `raw`).
    fn packed(&mut self, value: &[u8]);
}

/// The packed [`Sink`]: appends to a byte buffer.
pub(crate) struct Packer<'a> {
    out: &'a mut Vec<u8>,
}

impl<'a> Packer<'a> {
    pub(crate) fn new(out: &'a mut Vec<u8>) -> Self {
        Self { out }
    }

    fn varint(&mut self, mut n: u64) {
        while n >= 0x80 {
            // The low seven bits, with the continuation bit.
            self.out.push((n as u8 & 0x7f) | 0x80);
            n >>= 7;
        }
        self.out.push(n as u8);
    }

    fn bytes(&mut self, tag: u8, bytes: &[u8]) {
        // Most strings are names and ids: their length is one byte.
        if let Some(len) = u8::try_from(bytes.len()).ok().filter(|&n| n < 0x80) {
            self.out.extend_from_slice(&[tag, len]);
            self.out.extend_from_slice(bytes);
            return;
        }
        self.out.reserve(bytes.len() + 3);
        self.out.push(tag);
        self.varint(bytes.len() as u64);
        self.out.extend_from_slice(bytes);
    }
}

impl Sink for Packer<'_> {
    fn begin_object(&mut self) {
        self.out.push(tag::OBJ);
    }
    fn end_object(&mut self) {
        self.out.push(tag::END);
    }
    fn begin_array(&mut self) {
        self.out.push(tag::ARR);
    }
    fn end_array(&mut self) {
        self.out.push(tag::END);
    }
    fn key(&mut self, key: Key) {
        self.out.push(tag::KEY | key as u8);
    }
    fn name(&mut self, name: &str) {
        self.bytes(tag::STR, name.as_bytes());
    }
    fn str(&mut self, value: &str) {
        self.bytes(tag::STR, value.as_bytes());
    }
    fn i64(&mut self, value: i64) {
        self.out.push(tag::I64);
        self.varint(((value << 1) ^ (value >> 63)) as u64);
    }
    fn u64(&mut self, value: u64) {
        self.out.push(tag::U64);
        self.varint(value);
    }
    fn f64(&mut self, value: f64) {
        if value.is_finite() {
            self.out.push(tag::F64);
            self.out.extend_from_slice(&value.to_le_bytes());
        } else {
            self.out.push(tag::NULL);
        }
    }
    fn bool(&mut self, value: bool) {
        self.out.push(if value { tag::TRUE } else { tag::FALSE });
    }
    fn raw(&mut self, json: &str) {
        self.bytes(tag::RAW, json.as_bytes());
    }
    fn packed(&mut self, value: &[u8]) {
        self.out.extend_from_slice(value);
    }
}

/// The JSON text [`Sink`]: compact JSON, as serde_json writes it.
pub(crate) struct JsonText<'a> {
    out: &'a mut Vec<u8>,
    /// Whether the next member or element needs a comma before it.
    comma: bool,
}

impl<'a> JsonText<'a> {
    pub(crate) fn new(out: &'a mut Vec<u8>) -> Self {
        Self { out, comma: false }
    }

    fn separate(&mut self) {
        if std::mem::replace(&mut self.comma, false) {
            self.out.push(b',');
        }
    }

    /// Writes one complete value.
    fn value(&mut self, text: &[u8]) {
        self.separate();
        self.out.extend_from_slice(text);
        self.comma = true;
    }

    fn open(&mut self, byte: u8) {
        self.separate();
        self.out.push(byte);
    }

    fn close(&mut self, byte: u8) {
        self.out.push(byte);
        self.comma = true;
    }
}

impl Sink for JsonText<'_> {
    fn begin_object(&mut self) {
        self.open(b'{');
    }
    fn end_object(&mut self) {
        self.close(b'}');
    }
    fn begin_array(&mut self) {
        self.open(b'[');
    }
    fn end_array(&mut self) {
        self.close(b']');
    }
    fn key(&mut self, key: Key) {
        self.separate();
        self.out.extend_from_slice(key.quoted().as_bytes());
    }
    fn name(&mut self, name: &str) {
        self.separate();
        string(self.out, name);
        self.out.push(b':');
    }
    fn str(&mut self, value: &str) {
        self.separate();
        string(self.out, value);
        self.comma = true;
    }
    fn i64(&mut self, value: i64) {
        self.value(itoa::Buffer::new().format(value).as_bytes());
    }
    fn u64(&mut self, value: u64) {
        self.value(itoa::Buffer::new().format(value).as_bytes());
    }
    fn f64(&mut self, value: f64) {
        if value.is_finite() {
            self.value(zmij::Buffer::new().format_finite(value).as_bytes());
        } else {
            self.value(b"null");
        }
    }
    fn bool(&mut self, value: bool) {
        self.value(if value { b"true" } else { b"false" });
    }
    fn raw(&mut self, json: &str) {
        self.value(json.as_bytes());
    }
    fn packed(&mut self, value: &[u8]) {
        self.separate();
        let start = self.out.len();
        if unpack(value, self.out).is_err() {
            // Only a misused `JsonPacker` gets here; the text stays valid JSON.
            tracing::error!("a packed JSON value in a replay record is malformed; written as null");
            self.out.truncate(start);
            self.out.extend_from_slice(b"null");
        }
        self.comma = true;
    }
}

/// Builds a [`RawJson`] as packed bytes instead of text: cheaper to write on the request
/// path, several times smaller to store, and the same JSON text when read (field names the
/// record format knows, such as the eval trace's, take one byte).
///
/// The calls must make one whole JSON value: objects hold [`JsonPacker::field`] then one
/// value, repeated. Like [`RawJson::from_trusted`], this is not checked as it is written; a
/// malformed value is written as `null` when the record is.
#[derive(Debug, Default)]
pub struct JsonPacker {
    buf: Vec<u8>,
}

impl JsonPacker {
    /// An empty packer with room for `bytes`.
    #[must_use]
    pub fn with_capacity(bytes: usize) -> Self {
        Self {
            buf: Vec::with_capacity(bytes),
        }
    }

    fn sink(&mut self) -> Packer<'_> {
        Packer::new(&mut self.buf)
    }

    /// `{`
    pub fn begin_object(&mut self) {
        self.sink().begin_object();
    }
    /// `}`
    pub fn end_object(&mut self) {
        self.sink().end_object();
    }
    /// `[`
    pub fn begin_array(&mut self) {
        self.sink().begin_array();
    }
    /// `]`
    pub fn end_array(&mut self) {
        self.sink().end_array();
    }
    /// A member's name; its value follows.
    pub fn field(&mut self, name: FieldName) {
        match name.key {
            Some(i) => self.buf.push(tag::KEY | i),
            None => self.sink().name(name.name),
        }
    }
    /// A string.
    pub fn str(&mut self, value: &str) {
        self.sink().str(value);
    }
    /// A number as serde_json writes an `f64` (`null` unless finite).
    pub fn f64(&mut self, value: f64) {
        self.sink().f64(value);
    }
    /// An integer.
    pub fn u64(&mut self, value: u64) {
        self.sink().u64(value);
    }
    /// An integer.
    pub fn i64(&mut self, value: i64) {
        self.sink().i64(value);
    }
    /// `true` or `false`.
    pub fn bool(&mut self, value: bool) {
        self.sink().bool(value);
    }
    /// `null`.
    pub fn null(&mut self) {
        self.buf.push(tag::NULL);
    }
    /// The value built.
    #[must_use]
    pub fn finish(self) -> RawJson {
        RawJson::from_packed(self.buf.into_boxed_slice())
    }
}

/// The bytes serde_json escapes in a string: `"`, `\` and the control characters.
static ESCAPED: [bool; 256] = {
    let mut table = [false; 256];
    let mut b = 0;
    while b < 0x20 {
        table[b] = true;
        b += 1;
    }
    table[b'"' as usize] = true;
    table[b'\\' as usize] = true;
    table
};

/// A JSON string as serde_json writes it. Ids and names rarely need escaping: those are
/// copied whole after one table lookup per byte; the rest go through serde_json's escaper.
pub(crate) fn string(out: &mut Vec<u8>, s: &str) {
    if s.bytes().any(|b| ESCAPED[usize::from(b)]) {
        // Writing a `str` into a `Vec` cannot fail.
        let _ = serde_json::to_writer(&mut *out, s);
    } else {
        out.reserve(s.len() + 2);
        out.push(b'"');
        out.extend_from_slice(s.as_bytes());
        out.push(b'"');
    }
}

/// What is wrong with packed bytes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct UnpackError {
    /// Offset of the byte where reading failed.
    pub at: usize,
    pub what: &'static str,
}

impl fmt::Display for UnpackError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "packed record: {} at byte {}", self.what, self.at)
    }
}

/// Appends the JSON text of the packed value `bytes` holds to `out`: the text the
/// [`JsonText`] sink writes for what was packed. Trailing bytes are an error.
///
/// # Errors
/// Truncated or malformed bytes, unknown tags, nesting deeper than [`MAX_DEPTH`],
/// strings that are not UTF-8.
pub(crate) fn unpack(bytes: &[u8], out: &mut Vec<u8>) -> Result<(), UnpackError> {
    let mut r = Reader { bytes, at: 0 };
    let first = r.byte()?;
    r.value(first, &mut JsonText::new(out), 0)?;
    if r.at != bytes.len() {
        return Err(r.error("trailing bytes"));
    }
    Ok(())
}

struct Reader<'a> {
    bytes: &'a [u8],
    at: usize,
}

impl<'a> Reader<'a> {
    fn error(&self, what: &'static str) -> UnpackError {
        UnpackError { at: self.at, what }
    }

    fn byte(&mut self) -> Result<u8, UnpackError> {
        let b = *self
            .bytes
            .get(self.at)
            .ok_or_else(|| self.error("truncated"))?;
        self.at += 1;
        Ok(b)
    }

    fn take(&mut self, n: usize) -> Result<&'a [u8], UnpackError> {
        let end = self.at.checked_add(n).filter(|&e| e <= self.bytes.len());
        let end = end.ok_or_else(|| self.error("truncated"))?;
        let slice = self.bytes.get(self.at..end).unwrap_or_default();
        self.at = end;
        Ok(slice)
    }

    fn varint(&mut self) -> Result<u64, UnpackError> {
        let mut n = 0u64;
        for shift in (0..64).step_by(7) {
            let b = self.byte()?;
            n |= u64::from(b & 0x7f) << shift;
            if b < 0x80 {
                return Ok(n);
            }
        }
        Err(self.error("varint longer than 64 bits"))
    }

    fn text(&mut self) -> Result<&'a str, UnpackError> {
        let len = usize::try_from(self.varint()?).map_err(|_| self.error("length"))?;
        let at = self.at;
        std::str::from_utf8(self.take(len)?).map_err(|_| UnpackError {
            at,
            what: "string is not UTF-8",
        })
    }

    /// Reads the value whose tag is `tag` (already read) into `sink`.
    fn value(&mut self, tag: u8, sink: &mut JsonText<'_>, depth: usize) -> Result<(), UnpackError> {
        match tag {
            tag::NULL => sink.raw("null"),
            tag::FALSE => sink.bool(false),
            tag::TRUE => sink.bool(true),
            tag::F64 => {
                let b = self.take(8)?;
                let b = <[u8; 8]>::try_from(b).map_err(|_| self.error("truncated"))?;
                sink.f64(f64::from_le_bytes(b));
            }
            tag::I64 => {
                let z = self.varint()?;
                sink.i64(((z >> 1) as i64) ^ -((z & 1) as i64));
            }
            tag::U64 => sink.u64(self.varint()?),
            tag::STR => sink.str(self.text()?),
            tag::RAW => sink.raw(self.text()?),
            tag::OBJ | tag::ARR => {
                if depth >= MAX_DEPTH {
                    return Err(self.error("nested too deep"));
                }
                let object = tag == tag::OBJ;
                if object {
                    sink.begin_object();
                } else {
                    sink.begin_array();
                }
                loop {
                    let mut next = self.byte()?;
                    if next == tag::END {
                        break;
                    }
                    if object {
                        match next {
                            tag::STR => sink.name(self.text()?),
                            k if k >= tag::KEY => {
                                let quoted = QUOTED
                                    .get(usize::from(k - tag::KEY))
                                    .ok_or_else(|| self.error("unknown field name"))?;
                                sink.separate();
                                sink.out.extend_from_slice(quoted.as_bytes());
                            }
                            _ => return Err(self.error("member without a name")),
                        }
                        next = self.byte()?;
                    }
                    self.value(next, sink, depth + 1)?;
                }
                if object {
                    sink.end_object();
                } else {
                    sink.end_array();
                }
            }
            _ => {
                return Err(UnpackError {
                    at: self.at.saturating_sub(1),
                    what: "unknown tag",
                })
            }
        }
        Ok(())
    }
}

#[cfg(test)]
#[path = "packed_tests.rs"]
mod tests;
