//! `messages` read straight from the request's JSON text into [`Message`]s, without building
//! a JSON tree: the proxy keeps the client's bytes of `messages` and forwards them as they
//! are, so only the routing view is ever taken out of them.
//!
//! Reads the same facts as a parsed tree would, as leniently: a message or part of another
//! shape counts as unknown, not as an error, and a member written twice counts once, the last
//! one (as in a parsed object). Structured JSON is counted in bytes as written, without the
//! whitespace between tokens.

use std::borrow::Cow;
use std::fmt;

use serde::de::{
    self, Deserialize, DeserializeSeed, Deserializer, IgnoredAny, MapAccess, SeqAccess, Visitor,
};
use serde_json::value::RawValue;
use serde_json::Value;

use crate::request::{json_len, Message, RequestError, Role};

/// Visitor methods for every scalar JSON value (`non_strings_are`: but strings), each
/// answering `$v`.
macro_rules! scalars_are {
    ($v:expr) => {
        non_strings_are!($v);

        fn visit_str<E: de::Error>(self, _: &str) -> Result<Self::Value, E> {
            Ok($v)
        }
    };
}

macro_rules! non_strings_are {
    ($v:expr) => {
        fn visit_bool<E: de::Error>(self, _: bool) -> Result<Self::Value, E> {
            Ok($v)
        }

        fn visit_i64<E: de::Error>(self, _: i64) -> Result<Self::Value, E> {
            Ok($v)
        }

        fn visit_u64<E: de::Error>(self, _: u64) -> Result<Self::Value, E> {
            Ok($v)
        }

        fn visit_f64<E: de::Error>(self, _: f64) -> Result<Self::Value, E> {
            Ok($v)
        }

        fn visit_unit<E: de::Error>(self) -> Result<Self::Value, E> {
            Ok($v)
        }
    };
}

/// The messages of a `messages` value's JSON text; anything but a list is
/// [`RequestError::MissingMessages`].
pub(crate) fn parse(raw: &str) -> Result<Vec<Message>, RequestError> {
    let mut de = serde_json::Deserializer::from_str(raw);
    Messages
        .deserialize(&mut de)
        .ok()
        .flatten()
        .ok_or(RequestError::MissingMessages)
}

/// Reads a `messages` value where it stands in a body being parsed, in the same pass: the
/// messages of a list, `None` for a value of any other kind (which is consumed).
#[derive(Debug, Clone, Copy)]
pub struct Messages;

impl<'de> DeserializeSeed<'de> for Messages {
    type Value = Option<Vec<Message>>;

    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<Self::Value, D::Error> {
        d.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for Messages {
    type Value = Option<Vec<Message>>;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a list of messages")
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Self::Value, A::Error> {
        let mut out = Vec::with_capacity(seq.size_hint().unwrap_or(0));
        while let Some(m) = seq.next_element_seed(OneMessage)? {
            out.push(m);
        }
        Ok(Some(out))
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
        while map.next_entry::<IgnoredAny, IgnoredAny>()?.is_some() {}
        Ok(None)
    }

    scalars_are!(None);
}

/// One message; one of another kind has no role and no content.
struct OneMessage;

impl<'de> DeserializeSeed<'de> for OneMessage {
    type Value = Message;

    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<Self::Value, D::Error> {
        d.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for OneMessage {
    type Value = Message;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a message")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
        let mut role = None;
        let mut content = Content::None;
        let mut tool_calls = None;
        let mut function_call = None;
        // The last of duplicates wins, as in a parsed object.
        while let Some(key) = map.next_key_seed(KeySeed)? {
            match &*key {
                "role" => role = map.next_value_seed(StrOrNothing)?,
                "content" => content = map.next_value_seed(ContentSeed)?,
                "tool_calls" => tool_calls = Some(map.next_value::<&'de RawValue>()?),
                "function_call" => function_call = Some(map.next_value::<&'de RawValue>()?),
                _ => {
                    map.next_value::<IgnoredAny>()?;
                }
            }
        }
        Ok(message(role, content, tool_calls, function_call))
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Self::Value, A::Error> {
        while seq.next_element::<IgnoredAny>()?.is_some() {}
        Ok(message(None, Content::None, None, None))
    }

    scalars_are!(message(None, Content::None, None, None));
}

/// A message's `content` as it was read.
enum Content<'a> {
    /// Null or absent.
    None,
    /// A string.
    Text(Cow<'a, str>),
    /// A list of parts.
    Parts(Vec<&'a RawValue>),
    /// Anything else: its bytes as compact JSON.
    Other(usize),
}

fn message(
    role: Option<Cow<'_, str>>,
    content: Content<'_>,
    tool_calls: Option<&RawValue>,
    function_call: Option<&RawValue>,
) -> Message {
    let mut msg = Message {
        role: Role::parse(role.as_deref().unwrap_or("")),
        text: String::new(),
        images: 0,
        tool_calls: 0,
        json_bytes: 0,
    };
    match content {
        Content::None => {}
        Content::Text(t) => msg.text = t.into_owned(),
        Content::Parts(parts) => {
            let mut texts: Vec<Cow<'_, str>> = Vec::new();
            for part in parts {
                part_of(part, &mut msg, &mut texts);
            }
            msg.text = texts.join("\n");
        }
        Content::Other(bytes) => msg.json_bytes += bytes,
    }
    if let Some(calls) = tool_calls.filter(|c| c.get().starts_with('[')) {
        let calls = serde_json::from_str::<Vec<&RawValue>>(calls.get()).unwrap_or_default();
        msg.tool_calls = calls.len();
        msg.json_bytes += calls.iter().map(|c| compact_len(c.get())).sum::<usize>();
    }
    if let Some(call) = function_call.filter(|c| c.get() != "null") {
        msg.tool_calls += 1;
        msg.json_bytes += compact_len(call.get());
    }
    msg
}

/// `content` read in the pass over the body: strings are kept (borrowed when unescaped),
/// parts as their JSON text.
struct ContentSeed;

impl<'de> DeserializeSeed<'de> for ContentSeed {
    type Value = Content<'de>;

    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<Self::Value, D::Error> {
        d.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for ContentSeed {
    type Value = Content<'de>;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("message content")
    }

    fn visit_borrowed_str<E: de::Error>(self, v: &'de str) -> Result<Self::Value, E> {
        Ok(Content::Text(Cow::Borrowed(v)))
    }

    fn visit_str<E: de::Error>(self, v: &str) -> Result<Self::Value, E> {
        Ok(Content::Text(Cow::Owned(v.to_string())))
    }

    fn visit_unit<E: de::Error>(self) -> Result<Self::Value, E> {
        Ok(Content::None)
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Self::Value, A::Error> {
        let mut parts = Vec::with_capacity(seq.size_hint().unwrap_or(0));
        while let Some(p) = seq.next_element::<&'de RawValue>()? {
            parts.push(p);
        }
        Ok(Content::Parts(parts))
    }

    fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<Self::Value, A::Error> {
        let v = Value::deserialize(de::value::MapAccessDeserializer::new(map))?;
        Ok(Content::Other(json_len(&v)))
    }

    fn visit_bool<E: de::Error>(self, v: bool) -> Result<Self::Value, E> {
        Ok(Content::Other(json_len(&Value::from(v))))
    }

    fn visit_i64<E: de::Error>(self, v: i64) -> Result<Self::Value, E> {
        Ok(Content::Other(json_len(&Value::from(v))))
    }

    fn visit_u64<E: de::Error>(self, v: u64) -> Result<Self::Value, E> {
        Ok(Content::Other(json_len(&Value::from(v))))
    }

    fn visit_f64<E: de::Error>(self, v: f64) -> Result<Self::Value, E> {
        Ok(Content::Other(json_len(&Value::from(v))))
    }
}

/// A string (borrowed when unescaped), or `None` for a value of any other kind (consumed).
struct StrOrNothing;

impl<'de> DeserializeSeed<'de> for StrOrNothing {
    type Value = Option<Cow<'de, str>>;

    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<Self::Value, D::Error> {
        d.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for StrOrNothing {
    type Value = Option<Cow<'de, str>>;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a string")
    }

    fn visit_borrowed_str<E: de::Error>(self, v: &'de str) -> Result<Self::Value, E> {
        Ok(Some(Cow::Borrowed(v)))
    }

    fn visit_str<E: de::Error>(self, v: &str) -> Result<Self::Value, E> {
        Ok(Some(Cow::Owned(v.to_string())))
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
        while map.next_entry::<IgnoredAny, IgnoredAny>()?.is_some() {}
        Ok(None)
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Self::Value, A::Error> {
        while seq.next_element::<IgnoredAny>()?.is_some() {}
        Ok(None)
    }

    non_strings_are!(None);
}

/// One part of a list `content`: text (kept), an image (counted) or other JSON (its bytes).
fn part_of<'a>(part: &'a RawValue, msg: &mut Message, texts: &mut Vec<Cow<'a, str>>) {
    let [kind, text] = match part.get().as_bytes().first() {
        Some(b'{') => object(part, ["type", "text"]).unwrap_or_default(),
        Some(b'"') => {
            texts.extend(string(part));
            return;
        }
        _ => [None, None],
    };
    match kind.and_then(string).as_deref() {
        Some("text" | "input_text") => texts.extend(text.and_then(string)),
        Some("image_url" | "input_image" | "image" | "image_fixture") => msg.images += 1,
        _ => msg.json_bytes += compact_len(part.get()),
    }
}

/// The value as a string, borrowed when it has no escapes; `None` when it is not a string.
fn string(v: &RawValue) -> Option<Cow<'_, str>> {
    let text = v.get();
    if !text.starts_with('"') {
        return None;
    }
    // A JSON string without escapes is the text between its quotes.
    if !text.contains('\\') {
        return text.get(1..text.len() - 1).map(Cow::Borrowed);
    }
    let mut de = serde_json::Deserializer::from_str(text);
    de.deserialize_str(Text).ok()
}

/// The named members of an object (`None` when the value is not an object).
fn object<'a, const N: usize>(
    v: &'a RawValue,
    names: [&str; N],
) -> Option<[Option<&'a RawValue>; N]> {
    let mut de = serde_json::Deserializer::from_str(v.get());
    Fields(names).deserialize(&mut de).ok().flatten()
}

/// Bytes of JSON text without the whitespace between its tokens.
fn compact_len(text: &str) -> usize {
    let mut n = 0;
    let mut in_string = false;
    let mut escaped = false;
    for &b in text.as_bytes() {
        if in_string {
            n += 1;
            if escaped {
                escaped = false;
            } else if b == b'\\' {
                escaped = true;
            } else if b == b'"' {
                in_string = false;
            }
        } else if !matches!(b, b' ' | b'\n' | b'\r' | b'\t') {
            n += 1;
            in_string = b == b'"';
        }
    }
    n
}

/// A string, borrowed from the text when it can be.
struct Text;

impl<'de> Visitor<'de> for Text {
    type Value = Cow<'de, str>;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a string")
    }

    fn visit_borrowed_str<E: de::Error>(self, v: &'de str) -> Result<Self::Value, E> {
        Ok(Cow::Borrowed(v))
    }

    fn visit_str<E: de::Error>(self, v: &str) -> Result<Self::Value, E> {
        Ok(Cow::Owned(v.to_string()))
    }

    fn visit_string<E: de::Error>(self, v: String) -> Result<Self::Value, E> {
        Ok(Cow::Owned(v))
    }
}

/// The named members of an object as raw JSON, the last of duplicates winning; `None` for a
/// value of any other kind.
struct Fields<'n, const N: usize>([&'n str; N]);

impl<'de, const N: usize> DeserializeSeed<'de> for Fields<'_, N> {
    type Value = Option<[Option<&'de RawValue>; N]>;

    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<Self::Value, D::Error> {
        d.deserialize_any(self)
    }
}

impl<'de, const N: usize> Visitor<'de> for Fields<'_, N> {
    type Value = Option<[Option<&'de RawValue>; N]>;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("any JSON value")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
        let mut out = [None; N];
        while let Some(key) = map.next_key_seed(KeySeed)? {
            match self.0.iter().position(|n| *n == key) {
                Some(i) => out[i] = Some(map.next_value::<&'de RawValue>()?),
                None => {
                    map.next_value::<IgnoredAny>()?;
                }
            }
        }
        Ok(Some(out))
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Self::Value, A::Error> {
        while seq.next_element::<IgnoredAny>()?.is_some() {}
        Ok(None)
    }

    scalars_are!(None);
}

/// Reads an object key, borrowed from the text unless written with an escape (for visitors
/// of JSON objects, here and in the proxy's body parser).
#[derive(Debug, Clone, Copy)]
pub struct KeySeed;

impl<'de> DeserializeSeed<'de> for KeySeed {
    type Value = Cow<'de, str>;

    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<Self::Value, D::Error> {
        d.deserialize_str(Text)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn compact_len_skips_whitespace_between_tokens_only() {
        assert_eq!(compact_len("{ \"a b\" : [1, 2] }"), "{\"a b\":[1,2]}".len());
        assert_eq!(compact_len(r#""x \" y""#), r#""x \" y""#.len());
        assert_eq!(compact_len("\"\\\\\" ,\t1"), "\"\\\\\",1".len());
    }

    #[test]
    fn strings_are_borrowed_unless_escaped() {
        let plain: &RawValue = serde_json::from_str(r#""hello""#).unwrap();
        assert!(matches!(string(plain), Some(Cow::Borrowed("hello"))));
        let escaped: &RawValue = serde_json::from_str(r#""a\nb""#).unwrap();
        assert_eq!(string(escaped).as_deref(), Some("a\nb"));
        let number: &RawValue = serde_json::from_str("12").unwrap();
        assert_eq!(string(number), None);
    }

    #[test]
    fn the_last_of_duplicate_members_wins() {
        let v: &RawValue =
            serde_json::from_str(r#"{"type": "image_url", "x": {"a": 1}, "type": "text"}"#)
                .unwrap();
        let [kind, text] = object(v, ["type", "text"]).unwrap();
        assert_eq!(kind.map(RawValue::get), Some(r#""text""#));
        assert!(text.is_none());
        let list: &RawValue = serde_json::from_str("[1, 2]").unwrap();
        assert!(object(list, ["type"]).is_none());
    }

    #[test]
    fn anything_but_a_list_is_missing_messages() {
        for raw in ["{}", "null", "\"hi\"", "[1,", "[{\"role\": }]"] {
            assert_eq!(parse(raw), Err(RequestError::MissingMessages), "{raw}");
        }
        assert_eq!(parse("[]"), Ok(Vec::new()));
    }

    #[test]
    fn every_message_shape_reads_the_same_written_loosely_or_compactly() {
        let messages = serde_json::json!([
            {"role": "system", "content": "be \"brief\"", "role": "developer"},
            {"role": "user", "content": [
                {"type": "text", "text": "one"},
                "two",
                {"type": "image_url", "image_url": {"url": "x"}},
                {"type": "input_audio", "data": [1, 2]},
                {"text": "untyped"},
                3
            ]},
            {"role": "assistant", "content": null, "tool_calls": [
                {"id": "1", "type": "function", "function": {"name": "f", "arguments": "{}"}},
                {"id": "2"}
            ]},
            {"role": "assistant", "content": {"k": 1}, "function_call": {"name": "g"}},
            {"role": "tool", "content": "done", "function_call": null},
            {"role": 5, "content": 7},
            "not a message",
            {"role": "wizard"}
        ]);
        let compact = messages.to_string();
        let loose = serde_json::to_string_pretty(&messages).unwrap();
        let parsed = parse(&compact).unwrap();
        assert_eq!(parse(&loose).unwrap(), parsed);
        let m = |role: Role, text: &str, images, tool_calls, json_bytes| Message {
            role,
            text: text.to_string(),
            images,
            tool_calls,
            json_bytes,
        };
        let audio =
            r#"{"data":[1,2],"type":"input_audio"}"#.len() + r#"{"text":"untyped"}"#.len() + 1;
        let calls = r#"{"function":{"arguments":"{}","name":"f"},"id":"1","type":"function"}"#
            .len()
            + r#"{"id":"2"}"#.len();
        let other = |s: &str| Role::Other(s.to_string());
        assert_eq!(
            parsed,
            vec![
                m(Role::Developer, "be \"brief\"", 0, 0, 0),
                m(Role::User, "one\ntwo", 1, 0, audio),
                m(Role::Assistant, "", 0, 2, calls),
                m(
                    Role::Assistant,
                    "",
                    0,
                    1,
                    r#"{"k":1}"#.len() + r#"{"name":"g"}"#.len()
                ),
                m(Role::Tool, "done", 0, 0, 0),
                m(other(""), "", 0, 0, 1),
                m(other(""), "", 0, 0, 0),
                m(other("wizard"), "", 0, 0, 0),
            ]
        );
    }
}
