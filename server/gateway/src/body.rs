//! The chat-completions body the router forwards. Every top-level member is parsed into a
//! tree except `messages` (most of a conversation's bytes): in the same pass the routing view
//! of the messages is read from it ([`MessagesSeed`]), and its bytes stay the client's own,
//! shared with the request body, forwarded as they came. Only a rewrite that changes the
//! messages parses them into a tree ([`ChatBody::messages_mut`]); they are then written again
//! when forwarded.

use std::fmt;
use std::ops::Range;

use bytes::Bytes;
use serde::de::{Deserialize, Deserializer, IgnoredAny, MapAccess, Visitor};
use serde_json::{Map, Value};
use vllm_sr_engine::{JsonKeySeed, Message, MessagesSeed, RequestError, RequestView};

/// A chat body: its members, with `messages` kept as text until a rewrite needs it.
#[derive(Debug, Default, Clone, PartialEq)]
pub struct ChatBody {
    /// Every member but `messages` while [`Self::raw_messages`] holds it.
    members: Map<String, Value>,
    /// The client's bytes of `messages`, while nothing has changed them.
    raw_messages: Option<Bytes>,
    /// The messages as the routing view reads them, read with the body (until taken).
    read: Option<Vec<Message>>,
}

/// Why a request body is not a chat body.
#[derive(Debug)]
pub enum BodyError {
    /// Not JSON.
    Json(serde_json::Error),
    /// JSON, but not an object.
    NotAnObject,
}

impl ChatBody {
    /// Parses a request body: every member but `messages` into a tree, the routing view of
    /// `messages` read in the same pass, and its bytes located in `bytes`.
    ///
    /// # Errors
    /// The body is not JSON, or not an object.
    pub fn parse(bytes: &Bytes) -> Result<Self, BodyError> {
        match Self::parse_members(bytes) {
            Some(body) => Ok(body),
            None => Self::parse_whole(bytes),
        }
    }

    /// [`Self::parse`] for any text: the object read by serde_json in one pass, then the
    /// bytes of `messages` located in it.
    fn parse_whole(bytes: &Bytes) -> Result<Self, BodyError> {
        let mut de = serde_json::Deserializer::from_slice(bytes);
        if bytes.trim_ascii_start().first() != Some(&b'{') {
            // Not an object; still told apart from text that is not JSON at all.
            IgnoredAny::deserialize(&mut de).map_err(BodyError::Json)?;
            de.end().map_err(BodyError::Json)?;
            return Err(BodyError::NotAnObject);
        }
        let (members, messages) = de.deserialize_map(TopLevel).map_err(BodyError::Json)?;
        de.end().map_err(BodyError::Json)?;
        let Some(read) = messages else {
            return Ok(Self::from(members));
        };
        match crate::span::member(bytes, "messages") {
            Some(at) => Ok(Self {
                members,
                raw_messages: Some(bytes.slice(at)),
                read,
            }),
            // A key written with an escape, or `messages` twice: parsed whole instead.
            None => {
                let members: Map<String, Value> =
                    serde_json::from_slice(bytes).map_err(BodyError::Json)?;
                Ok(Self {
                    read,
                    ..Self::from(members)
                })
            }
        }
    }

    /// [`Self::parse`] for a well-formed object, member by member: each value is parsed where
    /// it lies and `messages` is located as it is read, not by a second scan of the body.
    /// `None` (the general path then decides, errors included) for anything else: not an
    /// object, a value that is not JSON, a key written with an escape, `messages` twice.
    ///
    /// Each value is parsed on its own, so serde_json's nesting limit (128) counts from the
    /// member rather than from the body: a value nested exactly 128 deep is accepted here.
    fn parse_members(bytes: &Bytes) -> Option<Self> {
        let mut members = Map::new();
        let mut messages: Option<(Range<usize>, Option<Vec<Message>>)> = None;
        crate::span::walk_members(bytes, |key, start| {
            let text = &bytes[start..];
            if key == b"messages" {
                if messages.is_some() {
                    return None;
                }
                let (read, len) = one_value::<ReadMessages>(text)?;
                messages = Some((start..start + len, read.0));
                Some(start + len)
            } else {
                let key = std::str::from_utf8(key).ok()?;
                let (value, len) = one_value::<Value>(text)?;
                members.insert(key.to_string(), value);
                Some(start + len)
            }
        })?;
        Some(match messages {
            Some((at, read)) => Self {
                members,
                raw_messages: Some(bytes.slice(at)),
                read,
            },
            None => Self::from(members),
        })
    }

    /// The members; `messages` is among them only once a rewrite took it.
    pub fn members(&self) -> &Map<String, Value> {
        &self.members
    }

    /// The members, to change. A `messages` member put here replaces the client's.
    pub fn members_mut(&mut self) -> &mut Map<String, Value> {
        &mut self.members
    }

    /// The client's bytes of `messages`, while they are forwarded as they came.
    pub fn raw_messages(&self) -> Option<&Bytes> {
        self.raw_messages.as_ref()
    }

    /// `messages` as a list to change (parsed from the client's bytes on first use, which
    /// are then no longer forwarded); `None` when it is missing or not a list.
    pub fn messages_mut(&mut self) -> Option<&mut Vec<Value>> {
        self.read = None;
        if let Some(raw) = self.raw_messages.take() {
            let parsed = serde_json::from_slice(&raw).unwrap_or(Value::Null);
            self.members.insert("messages".into(), parsed);
        }
        self.members.get_mut("messages")?.as_array_mut()
    }

    /// The routing view of the body (the messages read with the body are taken: a second
    /// view reads them again).
    ///
    /// # Errors
    /// `messages` is missing or not a list.
    pub fn view(&mut self) -> Result<RequestView, RequestError> {
        if let Some(read) = self.read.take() {
            return Ok(RequestView::from_parts(&self.members, read));
        }
        match (self.members.get("messages"), &self.raw_messages) {
            (Some(m), _) if m.is_array() => {
                RequestView::from_members(&self.members, &m.to_string())
            }
            (None, Some(raw)) => {
                let text = std::str::from_utf8(raw).map_err(|_| RequestError::MissingMessages)?;
                RequestView::from_members(&self.members, text)
            }
            _ => Err(RequestError::MissingMessages),
        }
    }

    /// The body to forward as compact JSON: `model` first, then `messages` when it is still
    /// the client's bytes (written as they came), then the other members in order.
    ///
    /// # Errors
    /// A member cannot be serialised (not expected of parsed JSON).
    pub fn encode(&self, model: &str) -> Result<Vec<u8>, serde_json::Error> {
        let raw = self
            .raw_messages
            .as_deref()
            .filter(|_| !self.members.contains_key("messages"));
        // Room for the whole body when most of it is known: growing the buffer copies it.
        let mut out = Vec::with_capacity(raw.map_or(256, |m| m.len() + 1024));
        out.extend_from_slice(b"{\"model\":");
        serde_json::to_writer(&mut out, model)?;
        if let Some(raw) = raw {
            out.extend_from_slice(b",\"messages\":");
            out.extend_from_slice(raw);
        }
        for (k, v) in &self.members {
            if k == "model" {
                continue;
            }
            out.push(b',');
            serde_json::to_writer(&mut out, k)?;
            out.push(b':');
            serde_json::to_writer(&mut out, v)?;
        }
        out.push(b'}');
        Ok(out)
    }
}

impl From<Map<String, Value>> for ChatBody {
    /// A body parsed whole (`messages`, if any, is among the members).
    fn from(members: Map<String, Value>) -> Self {
        Self {
            members,
            raw_messages: None,
            read: None,
        }
    }
}

/// The JSON value at the start of `text` and its length; `None` when `text` does not start
/// with one.
fn one_value<'de, T: Deserialize<'de>>(text: &'de [u8]) -> Option<(T, usize)> {
    let mut values = serde_json::Deserializer::from_slice(text).into_iter::<T>();
    let value = values.next()?.ok()?;
    Some((value, values.byte_offset()))
}

/// `messages` as [`MessagesSeed`] reads it.
struct ReadMessages(Option<Vec<Message>>);

impl<'de> Deserialize<'de> for ReadMessages {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        serde::de::DeserializeSeed::deserialize(MessagesSeed, d).map(Self)
    }
}

/// The top-level object: its members but `messages` parsed, `messages` read with
/// [`MessagesSeed`].
struct TopLevel;

/// The members but `messages`, and what was read of `messages` when present (`Some(None)`:
/// present but not a list).
type Parts = (Map<String, Value>, Option<Option<Vec<Message>>>);

impl<'de> Visitor<'de> for TopLevel {
    type Value = Parts;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a JSON object")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
        let mut members = Map::new();
        let mut messages = None;
        while let Some(key) = map.next_key_seed(JsonKeySeed)? {
            if key == "messages" {
                // The last of duplicates wins, as in a parsed object.
                messages = Some(map.next_value_seed(MessagesSeed)?);
            } else {
                members.insert(key.into_owned(), map.next_value::<Value>()?);
            }
        }
        Ok((members, messages))
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, reason = "tests")]

    use serde_json::json;

    use super::*;

    fn parse(text: &str) -> ChatBody {
        ChatBody::parse(&Bytes::copy_from_slice(text.as_bytes())).unwrap()
    }

    #[test]
    fn member_by_member_reads_what_the_whole_body_parse_reads() {
        let bodies = [
            r#"{"model":"auto","messages":[{"role":"user","content":"hi"}]}"#,
            " \n{ \"messages\" :\t[ {\"role\": \"user\", \"content\": [{\"type\": \"text\", \"text\": \"a\\u00e9\\n\"}]} ] ,\r\n \"model\" : \"auto\" } \n",
            r#"{"n": -1.5e3, "t": true, "f": false, "z": null, "o": {"a": [1, {"b": "}"}]}, "messages": []}"#,
            r#"{"model": "a", "model": "b", "messages": [{"role": "assistant", "content": null}]}"#,
            r#"{"messages": "not a list", "model": "auto"}"#,
            r#"{"messages": 7}"#,
            r#"{"model": "auto"}"#,
            r#"{}"#,
            r#"{"": 1, "k\u0065y": 2, "messages": []}"#,
        ];
        for text in bodies {
            let bytes = Bytes::copy_from_slice(text.as_bytes());
            let whole = ChatBody::parse_whole(&bytes).unwrap();
            let escaped_key = text.contains(r"\u0065");
            match ChatBody::parse_members(&bytes) {
                Some(fast) => {
                    assert!(!escaped_key, "{text}");
                    assert_eq!(fast, whole, "{text}");
                }
                None => assert!(escaped_key, "declined {text}"),
            }
        }
        // Declined, and the whole-body parse decides: a repeated `messages`, trailing text,
        // a control character in a key, not JSON, not an object.
        let declined = [
            r#"{"messages": [], "messages": [{"role": "user", "content": "a"}]}"#,
            r#"{"model": "auto"} x"#,
            "{\"mo\u{1}del\": 1}",
            r#"{"model": }"#,
            r#"{"messages": [1,]}"#,
            r#"[1, 2]"#,
            "",
        ];
        for text in declined {
            let bytes = Bytes::copy_from_slice(text.as_bytes());
            assert!(ChatBody::parse_members(&bytes).is_none(), "{text}");
        }
        let twice = Bytes::from_static(
            br#"{"messages": [], "messages": [{"role": "user", "content": "a"}]}"#,
        );
        assert_eq!(parse_bytes(&twice).view().unwrap().messages[0].text, "a");
    }

    fn parse_bytes(bytes: &Bytes) -> ChatBody {
        ChatBody::parse(bytes).unwrap()
    }

    #[test]
    fn messages_stay_the_clients_bytes_and_are_forwarded_as_they_came() {
        let text = r#"{"stream": false, "messages" : [ {"role": "user", "content": "caf\u00e9"} ], "model": "auto"}"#;
        let mut body = parse(text);
        assert_eq!(
            body.raw_messages().unwrap().as_ref(),
            br#"[ {"role": "user", "content": "caf\u00e9"} ]"#
        );
        assert!(!body.members().contains_key("messages"));
        let view = body.view().unwrap();
        assert_eq!(view.model, "auto");
        assert_eq!(view.messages[0].text, "café");
        let out = String::from_utf8(body.encode("m").unwrap()).unwrap();
        assert_eq!(
            out,
            r#"{"model":"m","messages":[ {"role": "user", "content": "caf\u00e9"} ],"stream":false}"#
        );
    }

    #[test]
    fn a_rewrite_of_the_messages_is_forwarded_instead_of_the_clients_bytes() {
        let mut body =
            parse(r#"{"model": "auto", "messages": [{"role": "user", "content": "hi"}], "n": 1}"#);
        body.messages_mut()
            .unwrap()
            .insert(0, json!({"role": "system", "content": "be brief"}));
        assert!(body.raw_messages().is_none());
        assert_eq!(body.view().unwrap().messages.len(), 2);
        let out: Value = serde_json::from_slice(&body.encode("m").unwrap()).unwrap();
        assert_eq!(
            out,
            json!({"model": "m", "n": 1, "messages": [
                {"role": "system", "content": "be brief"},
                {"role": "user", "content": "hi"}
            ]})
        );
    }

    #[test]
    fn the_body_is_compact_json_with_the_model_first() {
        let whole = json!({"stream": true, "model": "auto", "messages": [{"role": "user", "content": "é \"q\""}], "x": {"n": 1.5}});
        let Value::Object(map) = whole.clone() else {
            unreachable!()
        };
        let text = String::from_utf8(ChatBody::from(map).encode("org/m").unwrap()).unwrap();
        assert_eq!(
            text,
            r#"{"model":"org/m","messages":[{"content":"é \"q\"","role":"user"}],"stream":true,"x":{"n":1.5}}"#
        );
        let parsed = String::from_utf8(parse(&whole.to_string()).encode("org/m").unwrap()).unwrap();
        assert_eq!(
            parsed, text,
            "the same text whether messages was parsed or kept"
        );
    }

    #[test]
    fn a_repeated_or_escaped_messages_key_is_parsed_whole_and_other_shapes_are_refused() {
        // Twice, or under a key written with an escape: the body is parsed whole instead.
        let mut body = parse(r#"{"messages": [{"role": "user", "content": "a"}], "messages": []}"#);
        assert!(body.raw_messages().is_none());
        assert_eq!(body.members()["messages"], json!([]));
        assert!(body.view().unwrap().messages.is_empty());
        let mut body = parse(r#"{"mess\u0061ges": [{"role": "user", "content": "a"}]}"#);
        assert!(body.raw_messages().is_none());
        assert_eq!(body.view().unwrap().messages[0].text, "a");
        assert_eq!(
            String::from_utf8(body.encode("m").unwrap()).unwrap(),
            r#"{"model":"m","messages":[{"content":"a","role":"user"}]}"#
        );
        for text in [r#"{"messages": "hi"}"#, r#"{"model": "x"}"#] {
            assert_eq!(
                parse(text).view(),
                Err(RequestError::MissingMessages),
                "{text}"
            );
        }
        for text in ["[1, 2]", "\"s\"", "3", "null", "true"] {
            let r = ChatBody::parse(&Bytes::from_static(text.as_bytes()));
            assert!(matches!(r, Err(BodyError::NotAnObject)), "{text}");
        }
        for text in ["{", "{\"a\": 1} x", "", "{\"messages\": [1,]}"] {
            let r = ChatBody::parse(&Bytes::copy_from_slice(text.as_bytes()));
            assert!(matches!(r, Err(BodyError::Json(_))), "{text}");
        }
    }
}
