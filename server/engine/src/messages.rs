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

use serde::de::{self, DeserializeSeed, Deserializer, IgnoredAny, MapAccess, SeqAccess, Visitor};
use serde_json::value::RawValue;

use crate::request::{Message, RequestError, Role};

/// The messages of a `messages` value's JSON text; anything but a list is
/// [`RequestError::MissingMessages`].
pub(crate) fn parse(raw: &str) -> Result<Vec<Message>, RequestError> {
    if !raw.starts_with('[') {
        return Err(RequestError::MissingMessages);
    }
    let mut de = serde_json::Deserializer::from_str(raw);
    let messages = de
        .deserialize_seq(Each(|m: Option<[Option<&RawValue>; 4]>| message(m)))
        .map_err(|_| RequestError::MissingMessages)?;
    Ok(messages)
}

/// One message from its `role`, `content`, `tool_calls` and `function_call` members (`None`:
/// not an object).
fn message(fields: Option<[Option<&RawValue>; 4]>) -> Message {
    let [role, content, tool_calls, function_call] = fields.unwrap_or_default();
    let mut msg = Message {
        role: Role::parse(role.and_then(string).as_deref().unwrap_or("")),
        text: String::new(),
        images: 0,
        tool_calls: 0,
        json_bytes: 0,
    };
    if let Some(content) = content {
        match content.get().as_bytes().first() {
            Some(b'"') => msg.text = string(content).map(Cow::into_owned).unwrap_or_default(),
            Some(b'[') => {
                let mut texts: Vec<Cow<'_, str>> = Vec::new();
                let parts =
                    serde_json::from_str::<Vec<&RawValue>>(content.get()).unwrap_or_default();
                for part in parts {
                    part_of(part, &mut msg, &mut texts);
                }
                msg.text = texts.join("\n");
            }
            Some(b'n') => {}
            _ => msg.json_bytes += compact_len(content.get()),
        }
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
    if !v.get().starts_with('"') {
        return None;
    }
    let mut de = serde_json::Deserializer::from_str(v.get());
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

    fn visit_bool<E: de::Error>(self, _: bool) -> Result<Self::Value, E> {
        Ok(None)
    }

    fn visit_i64<E: de::Error>(self, _: i64) -> Result<Self::Value, E> {
        Ok(None)
    }

    fn visit_u64<E: de::Error>(self, _: u64) -> Result<Self::Value, E> {
        Ok(None)
    }

    fn visit_f64<E: de::Error>(self, _: f64) -> Result<Self::Value, E> {
        Ok(None)
    }

    fn visit_str<E: de::Error>(self, _: &str) -> Result<Self::Value, E> {
        Ok(None)
    }

    fn visit_unit<E: de::Error>(self) -> Result<Self::Value, E> {
        Ok(None)
    }
}

/// An object key, borrowed when it has no escapes.
struct KeySeed;

impl<'de> DeserializeSeed<'de> for KeySeed {
    type Value = Cow<'de, str>;

    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<Self::Value, D::Error> {
        d.deserialize_str(Text)
    }
}

/// Every element of a list, each read as the named members of an object and mapped.
struct Each<F>(F);

impl<'de, F, T> Visitor<'de> for Each<F>
where
    F: FnMut(Option<[Option<&'de RawValue>; 4]>) -> T,
{
    type Value = Vec<T>;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a list of messages")
    }

    fn visit_seq<A: SeqAccess<'de>>(mut self, mut seq: A) -> Result<Self::Value, A::Error> {
        let mut out = Vec::with_capacity(seq.size_hint().unwrap_or(0));
        let names = ["role", "content", "tool_calls", "function_call"];
        while let Some(fields) = seq.next_element_seed(Fields(names))? {
            out.push((self.0)(fields));
        }
        Ok(out)
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
