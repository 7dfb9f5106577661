//! Watching a relayed response body without holding it back: the backend-reported `usage`
//! (from a JSON completion, or from the final SSE chunk) and a capped copy of the body for
//! replay. When the router asked the backend for a usage chunk the client did not request,
//! that one frame is removed from the client's stream.

use std::sync::LazyLock;

use bytes::{Bytes, BytesMut};
use serde_json::Value;
use vllm_sr_store::Usage;

/// Largest non-streamed body parsed for `usage` (bigger bodies are relayed, not parsed).
const MAX_PARSED_BODY: usize = 4 * 1024 * 1024;

/// Observes one response body.
#[derive(Debug)]
pub struct Tap {
    streaming: bool,
    strip_usage_frame: bool,
    /// Whole JSON body (non-streaming), until it exceeds [`MAX_PARSED_BODY`].
    json: Option<JsonBody>,
    /// Incomplete SSE frame carried to the next chunk.
    partial: BytesMut,
    usage: Option<Usage>,
    capture: Option<(usize, BytesMut, bool)>,
}

/// A non-streamed body as it arrives: most come in one frame, which is kept as it is (a
/// reference, no copy); only a second frame makes the tap join them.
#[derive(Debug, Default)]
struct JsonBody {
    first: Option<Bytes>,
    joined: BytesMut,
}

impl JsonBody {
    fn len(&self) -> usize {
        self.first.as_ref().map_or(0, Bytes::len) + self.joined.len()
    }

    fn push(&mut self, b: &Bytes) {
        if self.first.is_none() && self.joined.is_empty() {
            self.first = Some(b.clone());
            return;
        }
        if let Some(first) = self.first.take() {
            self.joined.reserve(first.len() + b.len());
            self.joined.extend_from_slice(&first);
        }
        self.joined.extend_from_slice(b);
    }

    fn bytes(&self) -> &[u8] {
        self.first.as_deref().unwrap_or(&self.joined)
    }
}

/// A completion body as far as the tap cares: everything but `usage` is skipped unparsed.
#[derive(serde::Deserialize)]
struct UsageOnly {
    #[serde(default)]
    usage: Option<WireUsage>,
}

/// A streamed chunk as far as the tap cares: its `usage` and how many `choices` it has.
#[derive(serde::Deserialize)]
struct UsageChunk {
    #[serde(default)]
    usage: Option<WireUsage>,
    #[serde(default)]
    choices: Option<Len>,
}

/// An OpenAI `usage` object; missing or non-integer counts are 0, unknown fields skipped.
#[derive(serde::Deserialize)]
struct WireUsage {
    #[serde(default, deserialize_with = "count")]
    prompt_tokens: u64,
    #[serde(default, deserialize_with = "count")]
    completion_tokens: u64,
    #[serde(default)]
    prompt_tokens_details: Option<WireDetails>,
}

#[derive(serde::Deserialize)]
struct WireDetails {
    #[serde(default, deserialize_with = "count")]
    cached_tokens: u64,
}

impl From<WireUsage> for Usage {
    fn from(u: WireUsage) -> Self {
        Self {
            prompt_tokens: u.prompt_tokens,
            cached_prompt_tokens: u.prompt_tokens_details.map_or(0, |d| d.cached_tokens),
            completion_tokens: u.completion_tokens,
        }
    }
}

/// A token count, or 0 for anything that is not a non-negative integer.
fn count<'de, D: serde::Deserializer<'de>>(d: D) -> Result<u64, D::Error> {
    // A number deserialises into a `Value` without allocating.
    Ok(<Value as serde::Deserialize>::deserialize(d)?
        .as_u64()
        .unwrap_or(0))
}

/// The length of a JSON array, its elements skipped unparsed (anything else counts as 1).
struct Len(usize);

impl<'de> serde::Deserialize<'de> for Len {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct Visit;
        impl<'de> serde::de::Visitor<'de> for Visit {
            type Value = Len;
            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("a JSON value")
            }
            fn visit_seq<A: serde::de::SeqAccess<'de>>(self, mut a: A) -> Result<Len, A::Error> {
                let mut n = 0;
                while a.next_element::<serde::de::IgnoredAny>()?.is_some() {
                    n += 1;
                }
                Ok(Len(n))
            }
            fn visit_map<A: serde::de::MapAccess<'de>>(self, mut a: A) -> Result<Len, A::Error> {
                while a
                    .next_entry::<serde::de::IgnoredAny, serde::de::IgnoredAny>()?
                    .is_some()
                {}
                Ok(Len(1))
            }
            fn visit_unit<E>(self) -> Result<Len, E> {
                Ok(Len(1))
            }
            fn visit_bool<E>(self, _: bool) -> Result<Len, E> {
                Ok(Len(1))
            }
            fn visit_u64<E>(self, _: u64) -> Result<Len, E> {
                Ok(Len(1))
            }
            fn visit_i64<E>(self, _: i64) -> Result<Len, E> {
                Ok(Len(1))
            }
            fn visit_f64<E>(self, _: f64) -> Result<Len, E> {
                Ok(Len(1))
            }
            fn visit_str<E>(self, _: &str) -> Result<Len, E> {
                Ok(Len(1))
            }
        }
        d.deserialize_any(Visit)
    }
}

impl Tap {
    /// A tap for a streamed (SSE) or JSON body; `capture` keeps up to that many bytes.
    pub fn new(streaming: bool, strip_usage_frame: bool, capture: Option<usize>) -> Self {
        Self {
            streaming,
            strip_usage_frame: streaming && strip_usage_frame,
            json: (!streaming).then(JsonBody::default),
            partial: BytesMut::new(),
            usage: None,
            capture: capture.map(|cap| (cap, BytesMut::new(), false)),
        }
    }

    /// Whether this tap may remove bytes from the body.
    pub fn may_strip(&self) -> bool {
        self.strip_usage_frame
    }

    /// Observes a chunk; returns what to send to the client.
    pub fn chunk(&mut self, b: Bytes) -> Bytes {
        if let Some((cap, buf, truncated)) = &mut self.capture {
            let room = cap.saturating_sub(buf.len());
            buf.extend_from_slice(&b[..room.min(b.len())]);
            *truncated |= b.len() > room;
        }
        if !self.streaming {
            if let Some(j) = &mut self.json {
                if j.len() + b.len() > MAX_PARSED_BODY {
                    self.json = None;
                } else {
                    j.push(&b);
                }
            }
            return b;
        }
        // The frames that end in this chunk are inspected; an unterminated last one waits for
        // its end. Usually a chunk is whole frames, all kept: it goes on as it is, uncopied.
        let data = if self.partial.is_empty() {
            b
        } else {
            self.partial.extend_from_slice(&b);
            self.partial.split().freeze()
        };
        let mut start = 0;
        // Set once a frame is dropped: the kept bytes, and where the next kept run begins.
        let mut kept: Option<(BytesMut, usize)> = None;
        while let Some(len) = find_frame_end(&data[start..]) {
            let end = start + len;
            if !self.frame(&data[start..end]) {
                let (out, from) = kept.get_or_insert_with(|| (BytesMut::new(), 0));
                out.extend_from_slice(&data[*from..start]);
                *from = end;
            }
            start = end;
        }
        if start < data.len() {
            self.partial.extend_from_slice(&data[start..]);
        }
        match kept {
            None => data.slice(..start),
            Some((mut out, from)) => {
                out.extend_from_slice(&data[from..start]);
                out.freeze()
            }
        }
    }

    /// Inspects one SSE frame; false drops it from the client stream.
    fn frame(&mut self, frame: &[u8]) -> bool {
        // Most frames have no usage, or `"usage":null` (every chunk of a stream that asked for
        // it): decided on the raw bytes.
        if !may_have_usage(frame) {
            return true;
        }
        let Ok(text) = std::str::from_utf8(frame) else {
            return true;
        };
        let data = text
            .lines()
            .filter_map(|l| l.strip_prefix("data:"))
            .map(str::trim)
            .collect::<String>();
        if !data.contains("\"usage\"") {
            return true;
        }
        let Ok(chunk) = serde_json::from_str::<UsageChunk>(&data) else {
            return true;
        };
        if let Some(u) = chunk.usage {
            self.usage = Some(u.into());
            let usage_only = chunk.choices.is_some_and(|c| c.0 == 0);
            if self.strip_usage_frame && usage_only {
                return false;
            }
        }
        true
    }

    /// The end of the body: the bytes still held back (an unterminated last frame).
    pub fn finish(&mut self) -> Option<Bytes> {
        if let Some(j) = self.json.take() {
            let body = j.bytes();
            let usage = usage_from_tail(body).or_else(|| {
                serde_json::from_slice::<UsageOnly>(body)
                    .ok()
                    .and_then(|b| b.usage)
            });
            if let Some(u) = usage {
                self.usage = Some(u.into());
            }
        }
        (!self.partial.is_empty()).then(|| self.partial.split().freeze())
    }

    /// Usage seen so far.
    pub fn usage(&self) -> Option<Usage> {
        self.usage
    }

    /// The captured body (lossy UTF-8) and whether it was cut.
    pub fn captured(&self) -> Option<(String, bool)> {
        self.capture
            .as_ref()
            .map(|(_, b, t)| (String::from_utf8_lossy(b).into_owned(), *t))
    }
}

/// The top-level `usage` of a JSON completion, read without parsing the rest of the body
/// (the usual place of `usage` is last): the last `"usage"` key is found from the end, its
/// value parsed, and what follows must be the rest of the top-level object (more members,
/// then `}` and the end). `None` when any of that does not hold, e.g. the last `"usage"`
/// belongs to a nested object; the caller then parses the whole body.
fn usage_from_tail(body: &[u8]) -> Option<WireUsage> {
    const KEY: &[u8] = b"\"usage\"";
    // From the end, quote by quote (cheaper than comparing every window).
    let mut end = body.len();
    let at = loop {
        let quote = memchr::memrchr(b'"', body.get(..end)?)?;
        if body.get(quote..)?.starts_with(KEY) {
            break quote;
        }
        end = quote;
    };
    // A key comes right after `{` or `,` (this also rules out the end of a string with an
    // escaped quote before `usage`).
    let before = body
        .get(..at)?
        .iter()
        .rev()
        .find(|b| !b.is_ascii_whitespace())?;
    if !matches!(before, b'{' | b',') {
        return None;
    }
    let rest = after_colon(body.get(at + KEY.len()..)?)?;
    let (usage, mut tail) = match usage_fast(rest) {
        Some(read) => read,
        None => {
            let mut values = serde_json::Deserializer::from_slice(rest).into_iter::<WireUsage>();
            let usage = values.next()?.ok()?;
            (usage, rest.get(values.byte_offset()..)?)
        }
    };
    // The remaining members of the top-level object, if any, then its end.
    loop {
        tail = tail.trim_ascii_start();
        match tail.split_first()? {
            (b'}', end) => return end.trim_ascii().is_empty().then_some(usage),
            (b',', more) => {
                let mut key =
                    serde_json::Deserializer::from_slice(more).into_iter::<serde::de::IgnoredAny>();
                key.next()?.ok()?;
                let value = after_colon(more.get(key.byte_offset()..)?)?;
                let mut skip = serde_json::Deserializer::from_slice(value)
                    .into_iter::<serde::de::IgnoredAny>();
                skip.next()?.ok()?;
                tail = value.get(skip.byte_offset()..)?;
            }
            _ => return None,
        }
    }
}

/// The usual `usage` object read without serde (a third of the instructions): members whose
/// values are non-negative integers, `null`, or objects of those. `None` for anything else
/// (strings, floats, arrays, escaped keys, ...), and serde decides. Returns the usage and what
/// follows the object.
fn usage_fast(b: &[u8]) -> Option<(WireUsage, &[u8])> {
    let mut usage = WireUsage {
        prompt_tokens: 0,
        completion_tokens: 0,
        prompt_tokens_details: None,
    };
    let rest = members(b, |key, value| {
        Some(match key {
            b"prompt_tokens" => {
                let (n, rest) = count_fast(value)?;
                usage.prompt_tokens = n;
                rest
            }
            b"completion_tokens" => {
                let (n, rest) = count_fast(value)?;
                usage.completion_tokens = n;
                rest
            }
            b"prompt_tokens_details" if value.starts_with(b"null") => &value[4..],
            b"prompt_tokens_details" => {
                let mut cached = 0;
                let rest = members(value, |key, value| {
                    let (n, rest) = count_fast(value)?;
                    if key == b"cached_tokens" {
                        cached = n;
                    }
                    Some(rest)
                })?;
                usage.prompt_tokens_details = Some(WireDetails {
                    cached_tokens: cached,
                });
                rest
            }
            // Other counts, and objects of counts (`completion_tokens_details`).
            _ => match count_fast(value) {
                Some((_, rest)) => rest,
                None => members(value, |_, value| Some(count_fast(value)?.1))?,
            },
        })
    })?;
    Some((usage, rest))
}

/// A JSON object of plain keys (no escapes): `member` gets each key and the bytes at its
/// value, and returns what follows the value. What follows the object, or `None`.
fn members<'a>(
    b: &'a [u8],
    mut member: impl FnMut(&[u8], &'a [u8]) -> Option<&'a [u8]>,
) -> Option<&'a [u8]> {
    let mut rest = b.trim_ascii_start().strip_prefix(b"{")?.trim_ascii_start();
    if let Some(after) = rest.strip_prefix(b"}") {
        return Some(after);
    }
    loop {
        let body = rest.strip_prefix(b"\"")?;
        let close = memchr::memchr(b'"', body)?;
        let key = &body[..close];
        if key.contains(&b'\\') {
            return None;
        }
        let value = after_colon(&body[close + 1..])?.trim_ascii_start();
        rest = member(key, value)?.trim_ascii_start();
        match rest.split_first()? {
            (b',', after) => rest = after.trim_ascii_start(),
            (b'}', after) => return Some(after),
            _ => return None,
        }
    }
}

/// A non-negative integer that fits `u64`, or `null` (0), and what follows it; `None` for
/// any other value.
fn count_fast(b: &[u8]) -> Option<(u64, &[u8])> {
    if let Some(rest) = b.strip_prefix(b"null") {
        return Some((0, rest));
    }
    let digits = b.iter().take_while(|c| c.is_ascii_digit()).count();
    let (number, rest) = b.split_at(digits);
    // Not a fraction or an exponent, no leading zero.
    if digits == 0
        || (digits > 1 && number[0] == b'0')
        || matches!(rest.first(), Some(b'.' | b'e' | b'E'))
    {
        return None;
    }
    let mut n: u64 = 0;
    for d in number {
        n = n.checked_mul(10)?.checked_add(u64::from(d - b'0'))?;
    }
    Some((n, rest))
}

/// What follows optional whitespace and a `:`.
fn after_colon(b: &[u8]) -> Option<&[u8]> {
    b.trim_ascii_start().strip_prefix(b":")
}

/// Whether a `"usage"` key in `frame` may have a value other than `null`. (Text that merely
/// mentions `"usage"` inside a JSON string has its quotes escaped and does not match.)
fn may_have_usage(frame: &[u8]) -> bool {
    const KEY: &[u8] = b"\"usage\"";
    // Built once: building a finder costs more than searching a frame with it.
    static FINDER: LazyLock<memchr::memmem::Finder<'static>> =
        LazyLock::new(|| memchr::memmem::Finder::new(KEY));
    FINDER.find_iter(frame).any(|at| {
        !after_colon(&frame[at + KEY.len()..])
            .is_some_and(|value| value.trim_ascii_start().starts_with(b"null"))
    })
}

/// Index just past the first `\n\n` (or `\r\n\r\n`) frame terminator.
fn find_frame_end(b: &[u8]) -> Option<usize> {
    memchr::memchr_iter(b'\n', b).find_map(|i| match b.get(i + 1) {
        Some(b'\n') => Some(i + 2),
        Some(b'\r') if i > 0 && b[i - 1] == b'\r' && b.get(i + 2) == Some(&b'\n') => Some(i + 3),
        _ => None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn odd_usage_counts_are_zero_and_unknown_fields_are_skipped() {
        let mut t = Tap::new(false, false, None);
        let body = br#"{"choices":[{"x":[1,{"y":null}]}],"usage":{"prompt_tokens":"7","completion_tokens":3.5,"total_tokens":9,"prompt_tokens_details":{"cached_tokens":4,"audio_tokens":0},"extra":{"a":[1]}}}"#;
        t.chunk(Bytes::from_static(body));
        t.finish();
        let u = t.usage().expect("usage read");
        assert_eq!(
            (u.prompt_tokens, u.cached_prompt_tokens, u.completion_tokens),
            (0, 4, 0)
        );

        let mut t = Tap::new(true, true, None);
        let frames = "data: {\"choices\":null,\"usage\":{\"prompt_tokens\":2,\"completion_tokens\":1}}\n\ndata: {\"choices\":[],\"usage\":{\"prompt_tokens\":5,\"completion_tokens\":2}}\n\n";
        let out = t.chunk(Bytes::from_static(frames.as_bytes()));
        let out = std::str::from_utf8(&out).unwrap();
        assert!(
            out.contains("\"choices\":null"),
            "a chunk with choices is kept: {out}"
        );
        assert!(
            !out.contains("\"choices\":[]"),
            "the usage-only chunk is removed: {out}"
        );
        assert_eq!(t.usage().map(|u| u.prompt_tokens), Some(5));
    }

    #[test]
    fn a_top_level_usage_is_read_from_the_tail_and_anything_else_falls_back() {
        let usage = |body: &str| {
            let mut t = Tap::new(false, false, None);
            t.chunk(Bytes::copy_from_slice(body.as_bytes()));
            t.finish();
            t.usage().map(|u| (u.prompt_tokens, u.completion_tokens))
        };
        let tail = |body: &str| usage_from_tail(body.as_bytes()).map(|u| u.prompt_tokens);
        // The common shape: read from the tail.
        let last = r#"{"choices":[{"message":{"content":"hi"}}],"usage":{"prompt_tokens":7,"completion_tokens":3}}"#;
        assert_eq!(tail(last), Some(7));
        assert_eq!(usage(last), Some((7, 3)));
        // Members after it, and whitespace.
        let more = r#"{ "usage" : {"prompt_tokens":5} , "x" : [1, {"usage": 2}], "y":"}" } "#;
        assert_eq!(tail(more), None, "the last \"usage\" is nested");
        assert_eq!(usage(more), Some((5, 0)));
        let after = r#"{"usage":{"prompt_tokens":5},"model":"m","n":null}"#;
        assert_eq!(tail(after), Some(5));
        // A nested `usage` after the top-level one, or only a nested one: the full parse.
        let nested = r#"{"usage":{"prompt_tokens":1},"meta":{"usage":{"prompt_tokens":9}}}"#;
        assert_eq!(tail(nested), None);
        assert_eq!(usage(nested), Some((1, 0)));
        let only_nested = r#"{"choices":[{"usage":{"prompt_tokens":9}}]}"#;
        assert_eq!(tail(only_nested), None);
        assert_eq!(usage(only_nested), None);
        // `usage` inside a string, as a key ending in an escaped quote, or null.
        let in_text =
            r#"{"content":"say \"usage\": {\"prompt_tokens\": 9}","usage":{"prompt_tokens":2}}"#;
        assert_eq!(usage(in_text), Some((2, 0)));
        let odd_key = r#"{"a \"usage": {"prompt_tokens":9}}"#;
        assert_eq!(tail(odd_key), None);
        assert_eq!(usage(odd_key), None);
        assert_eq!(usage(r#"{"usage":null}"#), None);
        assert_eq!(usage(r#"{"usage":{"prompt_tokens":3}"#), None, "cut body");
    }

    #[test]
    fn the_fast_usage_reader_agrees_with_serde_or_declines() {
        let by_serde = |b: &str| serde_json::from_str::<WireUsage>(b).ok().map(Usage::from);
        let read = [
            r#"{"completion_tokens":4,"prompt_tokens":2,"prompt_tokens_details":{"cached_tokens":1},"total_tokens":6}"#,
            r#"{ "prompt_tokens" : 7 , "completion_tokens_details" : { "reasoning_tokens" : 3 , "audio_tokens" : null } , "prompt_tokens_details" : null }"#,
            r#"{"prompt_tokens_details":{"audio_tokens":5},"completion_tokens":0}"#,
            r#"{}"#,
            r#"{"prompt_tokens":null}"#,
            r#"{"prompt_tokens":18446744073709551615}"#,
        ];
        for case in read {
            let (usage, rest) = usage_fast(case.as_bytes()).expect(case);
            assert!(rest.is_empty(), "{case}");
            assert_eq!(Some(Usage::from(usage)), by_serde(case), "{case}");
        }
        let declined = [
            r#"{"prompt_tokens":18446744073709551616}"#,
            r#"{"prompt_tokens":1.5}"#,
            r#"{"prompt_tokens":1e3}"#,
            r#"{"prompt_tokens":-1}"#,
            r#"{"prompt_tokens":"7"}"#,
            r#"{"prompt_tokens":01}"#,
            r#"{"a\"b":1}"#,
            r#"{"x":[1]}"#,
            r#"{"prompt_tokens":1"#,
            r#"{"prompt_tokens":1,}"#,
            r#"{"prompt_tokens_details":{"cached_tokens":{"a":1}}}"#,
            r#"{"prompt_tokens_details":{"cached_tokens":2.0}}"#,
            r#"null"#,
        ];
        for case in declined {
            assert!(usage_fast(case.as_bytes()).is_none(), "{case}");
        }
        // What follows the object is left for the caller.
        let (_, rest) = usage_fast(br#"{"prompt_tokens":1} ,"x":2}"#).unwrap();
        assert_eq!(rest, br#" ,"x":2}"#);
    }

    #[test]
    fn json_usage_is_read_at_the_end() {
        let mut t = Tap::new(false, false, Some(10));
        let body = br#"{"id":"x","usage":{"prompt_tokens":7,"completion_tokens":3,"prompt_tokens_details":{"cached_tokens":2}}}"#;
        // Three frames: the first is held as it came, the second joins it, the third appends.
        let (a, rest) = body.split_at(20);
        let (b, c) = rest.split_at(30);
        for piece in [a, b, c] {
            assert_eq!(&t.chunk(Bytes::copy_from_slice(piece))[..], piece);
        }
        assert_eq!(t.finish(), None);
        let u = t.usage().unwrap();
        assert_eq!(
            (u.prompt_tokens, u.cached_prompt_tokens, u.completion_tokens),
            (7, 2, 3)
        );
        assert_eq!(
            t.captured().unwrap(),
            (String::from_utf8_lossy(&body[..10]).into_owned(), true)
        );
    }

    #[test]
    fn sse_usage_frame_is_read_and_stripped_across_chunk_boundaries() {
        let frames = "data: {\"choices\":[{\"delta\":{\"content\":\"hi\"}}]}\n\ndata: {\"choices\":[],\"usage\":{\"prompt_tokens\":5,\"completion_tokens\":1}}\n\ndata: [DONE]\n\n";
        let mut t = Tap::new(true, true, None);
        let mut out = Vec::new();
        for piece in frames.as_bytes().chunks(7) {
            out.extend_from_slice(&t.chunk(Bytes::copy_from_slice(piece)));
        }
        assert_eq!(t.finish(), None);
        let out = String::from_utf8(out).unwrap();
        assert!(!out.contains("usage"), "{out}");
        assert!(out.ends_with("data: [DONE]\n\n") && out.contains("\"hi\""));
        assert_eq!(t.usage().unwrap().prompt_tokens, 5);

        let mut t = Tap::new(true, false, None);
        let out = t.chunk(Bytes::from(frames));
        assert_eq!(
            &out[..],
            frames.as_bytes(),
            "kept when the client asked for usage"
        );
    }

    #[test]
    fn whole_frames_go_on_uncopied_and_null_usage_is_not_usage() {
        let frames = "data: {\"choices\":[{\"delta\":{\"content\":\"the \\\"usage\\\" of it\"}}],\"usage\":null}\n\n\
                      data: {\"choices\":[],\"usage\": null}\r\n\r\n";
        let mut t = Tap::new(true, true, None);
        let input = Bytes::from(frames);
        let out = t.chunk(input.clone());
        assert_eq!(out, input);
        assert_eq!(out.as_ptr(), input.as_ptr(), "not copied");
        assert_eq!(t.usage(), None);
        assert_eq!(t.finish(), None);

        // An unterminated frame is held back until its end; the whole ones before it go on.
        let mut t = Tap::new(true, true, None);
        let first = "data: {\"choices\":[]}\n\ndata: {\"cho";
        let out = t.chunk(Bytes::from(first));
        assert_eq!(&out[..], b"data: {\"choices\":[]}\n\n");
        let out = t.chunk(Bytes::from("ices\":[]}\n\n"));
        assert_eq!(&out[..], b"data: {\"choices\":[]}\n\n");
    }

    #[test]
    fn only_the_usage_frame_is_dropped_from_a_chunk_of_many() {
        let a = "data: {\"choices\":[{\"delta\":{\"content\":\"a\"}}],\"usage\":null}\n\n";
        let u =
            "data: {\"choices\":[],\"usage\":{\"prompt_tokens\":3,\"completion_tokens\":2}}\n\n";
        let done = "data: [DONE]\n\n";
        let mut t = Tap::new(true, true, None);
        let out = t.chunk(Bytes::from(format!("{a}{u}{done}data: {{\"x")));
        assert_eq!(
            String::from_utf8(out.to_vec()).unwrap(),
            format!("{a}{done}")
        );
        assert_eq!(t.usage().unwrap().completion_tokens, 2);
        assert_eq!(&t.finish().unwrap()[..], b"data: {\"x");
    }

    #[test]
    fn frame_ends_are_found_as_before() {
        fn by_windows(b: &[u8]) -> Option<usize> {
            let lf = b.windows(2).position(|w| w == b"\n\n").map(|i| i + 2);
            let crlf = b.windows(4).position(|w| w == b"\r\n\r\n").map(|i| i + 4);
            match (lf, crlf) {
                (Some(a), Some(c)) => Some(a.min(c)),
                (a, c) => a.or(c),
            }
        }
        // Every string of up to 7 bytes over {a, \r, \n}.
        let alphabet = [b'a', b'\r', b'\n'];
        for len in 0..=7u32 {
            for mut code in 0..3usize.pow(len) {
                let mut b = Vec::new();
                for _ in 0..len {
                    b.push(alphabet[code % 3]);
                    code /= 3;
                }
                assert_eq!(find_frame_end(&b), by_windows(&b), "{b:?}");
            }
        }
    }
}
