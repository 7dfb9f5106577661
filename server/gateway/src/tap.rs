//! Watching a relayed response body without holding it back: the backend-reported `usage`
//! (from a JSON completion, or from the final SSE chunk) and a capped copy of the body for
//! replay. When the router asked the backend for a usage chunk the client did not request,
//! that one frame is removed from the client's stream.

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
    json: Option<BytesMut>,
    /// Incomplete SSE frame carried to the next chunk.
    partial: BytesMut,
    usage: Option<Usage>,
    capture: Option<(usize, BytesMut, bool)>,
}

/// A completion body as far as the tap cares: everything but `usage` is skipped unparsed.
#[derive(serde::Deserialize)]
struct UsageOnly {
    #[serde(default)]
    usage: Option<Value>,
}

/// Reads an OpenAI `usage` object (missing or non-integer counts are 0).
fn usage_from(u: &Value) -> Option<Usage> {
    if !u.is_object() {
        return None;
    }
    let n = |p: &str| u.pointer(p).and_then(Value::as_u64).unwrap_or(0);
    Some(Usage {
        prompt_tokens: n("/prompt_tokens"),
        cached_prompt_tokens: n("/prompt_tokens_details/cached_tokens"),
        completion_tokens: n("/completion_tokens"),
    })
}

impl Tap {
    /// A tap for a streamed (SSE) or JSON body; `capture` keeps up to that many bytes.
    pub fn new(streaming: bool, strip_usage_frame: bool, capture: Option<usize>) -> Self {
        Self {
            streaming,
            strip_usage_frame: streaming && strip_usage_frame,
            json: (!streaming).then(BytesMut::new),
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
                    j.extend_from_slice(&b);
                }
            }
            return b;
        }
        self.partial.extend_from_slice(&b);
        let mut out = BytesMut::new();
        while let Some(end) = find_frame_end(&self.partial) {
            let frame = self.partial.split_to(end);
            if self.frame(&frame) {
                out.extend_from_slice(&frame);
            }
        }
        out.freeze()
    }

    /// Inspects one SSE frame; false drops it from the client stream.
    fn frame(&mut self, frame: &[u8]) -> bool {
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
        let Ok(v) = serde_json::from_str::<Value>(&data) else {
            return true;
        };
        if let Some(u) = v.get("usage").and_then(usage_from) {
            self.usage = Some(u);
            let usage_only = v
                .get("choices")
                .and_then(Value::as_array)
                .is_some_and(Vec::is_empty);
            if self.strip_usage_frame && usage_only {
                return false;
            }
        }
        true
    }

    /// The end of the body: the bytes still held back (an unterminated last frame).
    pub fn finish(&mut self) -> Option<Bytes> {
        if let Some(j) = self.json.take() {
            if let Ok(UsageOnly { usage: Some(u) }) = serde_json::from_slice(&j) {
                self.usage = usage_from(&u);
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

/// Index just past the first `\n\n` (or `\r\n\r\n`) frame terminator.
fn find_frame_end(b: &[u8]) -> Option<usize> {
    let lf = b.windows(2).position(|w| w == b"\n\n").map(|i| i + 2);
    let crlf = b.windows(4).position(|w| w == b"\r\n\r\n").map(|i| i + 4);
    match (lf, crlf) {
        (Some(a), Some(c)) => Some(a.min(c)),
        (a, c) => a.or(c),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn json_usage_is_read_at_the_end() {
        let mut t = Tap::new(false, false, Some(10));
        let body = br#"{"id":"x","usage":{"prompt_tokens":7,"completion_tokens":3,"prompt_tokens_details":{"cached_tokens":2}}}"#;
        let (a, b) = body.split_at(20);
        assert_eq!(&t.chunk(Bytes::copy_from_slice(a))[..], a);
        assert_eq!(&t.chunk(Bytes::copy_from_slice(b))[..], b);
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
}
