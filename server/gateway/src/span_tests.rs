//! `member` against serde_json's own reading of the same text.

use serde_json::value::RawValue;

use super::member;

/// serde_json's answer: the raw text of the one top-level `messages` (an error, so `None`,
/// when it appears twice).
fn oracle(text: &str) -> Option<&str> {
    #[derive(serde::Deserialize)]
    struct Span<'a> {
        #[serde(borrow)]
        messages: Option<&'a RawValue>,
    }
    if !text.trim_start().starts_with('{') {
        return None;
    }
    let span: Span<'_> = serde_json::from_str(text).ok()?;
    span.messages.map(RawValue::get)
}

fn ours(text: &str) -> Option<&str> {
    member(text.as_bytes(), "messages").map(|r| &text[r])
}

#[test]
fn finds_the_top_level_member_and_nothing_nested() {
    let text = r#" { "model" : "auto", "x": {"messages": [1]}, "s": "\"messages\": 2",
        "messages" :[ {"role":"user","content":"a\"b\\c\u00e9 [{"}] , "n": -1.5e3, "t": true } "#;
    assert_eq!(
        ours(text),
        Some(r#"[ {"role":"user","content":"a\"b\\c\u00e9 [{"}]"#)
    );
    assert_eq!(ours(text), oracle(text));
    for (text, want) in [
        (r#"{"messages":null}"#, Some("null")),
        (r#"{"messages":"x"}"#, Some(r#""x""#)),
        (r#"{"messages":12 }"#, Some("12")),
        (r#"{"a":1}"#, None),
        (r#"{}"#, None),
        (r#"[{"messages":[]}]"#, None),
        (r#""messages""#, None),
        // Twice, or a key that may spell it with an escape: declined.
        (r#"{"messages":[],"messages":[1]}"#, None),
        (r#"{"messag\u0065s":[1]}"#, None),
        (r#"{"x\"y":1,"messages":[]}"#, None),
    ] {
        assert_eq!(ours(text), want, "{text}");
    }
}

/// A random JSON value as text, with random spacing, keys from a set that includes
/// `messages`, and strings full of characters that need escapes.
fn value(rng: &mut fastrand::Rng, depth: u32, out: &mut String) {
    let ws = |rng: &mut fastrand::Rng, out: &mut String| {
        for _ in 0..rng.usize(0..3) {
            out.push([' ', '\n', '\t', '\r'][rng.usize(0..4)]);
        }
    };
    let string = |rng: &mut fastrand::Rng, out: &mut String| {
        let pieces = [
            "a", "messages", "\"", "\\", "\n", "é", "[", "{", "}", "]", ":", ",",
        ];
        let mut s = String::new();
        for _ in 0..rng.usize(0..6) {
            s.push_str(pieces[rng.usize(0..pieces.len())]);
        }
        out.push_str(&serde_json::to_string(&s).unwrap());
    };
    match if depth > 3 {
        rng.u32(0..4)
    } else {
        rng.u32(0..6)
    } {
        0 => string(rng, out),
        1 => out.push_str(["0", "-1.5e3", "12"][rng.usize(0..3)]),
        2 => out.push_str(["true", "false", "null"][rng.usize(0..3)]),
        3 => string(rng, out),
        4 => {
            out.push('[');
            for i in 0..rng.usize(0..4) {
                if i > 0 {
                    out.push(',');
                }
                ws(rng, out);
                value(rng, depth + 1, out);
                ws(rng, out);
            }
            out.push(']');
        }
        _ => object(rng, depth + 1, out),
    }
}

fn object(rng: &mut fastrand::Rng, depth: u32, out: &mut String) {
    let keys = ["messages", "model", "m", "messagesx", "x", "messag\\u0065s"];
    out.push('{');
    for i in 0..rng.usize(0..5) {
        if i > 0 {
            out.push(',');
        }
        out.push_str(&" ".repeat(rng.usize(0..2)));
        out.push('"');
        out.push_str(keys[rng.usize(0..keys.len())]);
        out.push('"');
        out.push_str(&" ".repeat(rng.usize(0..2)));
        out.push(':');
        out.push_str(&"\n".repeat(rng.usize(0..2)));
        value(rng, depth, out);
        out.push_str(&" ".repeat(rng.usize(0..2)));
    }
    out.push('}');
}

#[test]
fn agrees_with_serde_json_on_random_bodies() {
    let mut rng = fastrand::Rng::with_seed(7);
    let (mut found, mut declined) = (0, 0);
    for _ in 0..20_000 {
        let mut text = String::new();
        object(&mut rng, 0, &mut text);
        serde_json::from_str::<serde_json::Value>(&text).unwrap();
        match ours(&text) {
            // Whatever is found is what serde_json reads there (which reads a `null` member
            // as none).
            Some(raw) => {
                assert_eq!(Some(raw).filter(|r| *r != "null"), oracle(&text), "{text}");
                found += 1;
            }
            // Declined only for an escaped key, or where serde_json finds none either.
            None => {
                let escaped_key = text.contains("\"messag\\u0065s\"") || oracle(&text).is_none();
                assert!(escaped_key, "{text}");
                declined += 1;
            }
        }
    }
    assert!(
        found > 1000 && declined > 1000,
        "{found} found, {declined} declined"
    );
}
