//! Where a top-level member's value lies in the text of a JSON object, found without parsing
//! it: strings are skipped with `memchr` (they are most of a conversation's bytes), the
//! punctuation between them byte by byte.
//!
//! [`member`] is meant for text serde_json has already accepted. It still checks what it
//! relies on and declines (`None`) anything unexpected, and any key written with an escape:
//! such a key may spell the one looked for, and a member that appears twice must not be
//! picked here while the parsed body kept the other. [`walk_members`] walks an object's
//! members for a caller that parses each value itself.

use std::ops::Range;

/// The byte range of the value of the top-level member `key` of the JSON object in `text`;
/// `None` when `text` is not an object, has no such member, has it more than once, or has a
/// key with an escape.
pub fn member(text: &[u8], key: &str) -> Option<Range<usize>> {
    let mut found = None;
    walk_members(text, |name, start| {
        let end = value_end(text, start)?;
        if name == key.as_bytes() {
            if found.is_some() {
                return None;
            }
            found = Some(start..end);
        }
        Some(end)
    })?;
    found
}

/// Walks the members of the JSON object that is the whole of `text`: `value` gets each
/// member's key (its bytes between the quotes) and where its value starts, and returns where
/// the value ends. `None` when `text` is not an object followed by nothing but whitespace, a
/// key is written with an escape or holds a control character (which JSON forbids unescaped),
/// or `value` declines. Values are the caller's to check.
pub fn walk_members(
    text: &[u8],
    mut value: impl FnMut(&[u8], usize) -> Option<usize>,
) -> Option<()> {
    let mut i = skip_ws(text, 0);
    if text.get(i) != Some(&b'{') {
        return None;
    }
    i = skip_ws(text, i + 1);
    if text.get(i) == Some(&b'}') {
        return (skip_ws(text, i + 1) == text.len()).then_some(());
    }
    loop {
        if text.get(i) != Some(&b'"') {
            return None;
        }
        let key_end = string_end(text, i)?;
        let name = &text[i + 1..key_end - 1];
        if name.iter().any(|b| *b == b'\\' || *b < 0x20) {
            return None;
        }
        i = skip_ws(text, key_end);
        if text.get(i) != Some(&b':') {
            return None;
        }
        let end = value(name, skip_ws(text, i + 1))?;
        i = skip_ws(text, end);
        match text.get(i)? {
            b',' => i = skip_ws(text, i + 1),
            b'}' => return (skip_ws(text, i + 1) == text.len()).then_some(()),
            _ => return None,
        }
    }
}

fn skip_ws(text: &[u8], mut i: usize) -> usize {
    while text
        .get(i)
        .is_some_and(|b| matches!(b, b' ' | b'\t' | b'\n' | b'\r'))
    {
        i += 1;
    }
    i
}

/// Index just past the string that opens at `start` (a `"`).
fn string_end(text: &[u8], start: usize) -> Option<usize> {
    let mut i = start + 1;
    loop {
        let at = i + memchr::memchr2(b'"', b'\\', text.get(i..)?)?;
        if text[at] == b'"' {
            return Some(at + 1);
        }
        // An escape: the next byte is escaped (`\"`, `\\`, `\u…` all continue after it).
        i = at + 2;
    }
}

/// Index just past the value that starts at `start`.
fn value_end(text: &[u8], start: usize) -> Option<usize> {
    match text.get(start)? {
        b'"' => string_end(text, start),
        b'{' | b'[' => {
            let mut depth = 0usize;
            let mut i = start;
            while let Some(&b) = text.get(i) {
                match b {
                    b'"' => {
                        i = string_end(text, i)?;
                        continue;
                    }
                    b'{' | b'[' => depth += 1,
                    b'}' | b']' => {
                        depth = depth.checked_sub(1)?;
                        if depth == 0 {
                            return Some(i + 1);
                        }
                    }
                    _ => {}
                }
                i += 1;
            }
            None
        }
        // A number, `true`, `false` or `null`: up to what ends it.
        _ => {
            let len = text[start..]
                .iter()
                .position(|b| matches!(b, b',' | b'}' | b']' | b' ' | b'\t' | b'\n' | b'\r'))
                .unwrap_or(text.len() - start);
            (len > 0).then_some(start + len)
        }
    }
}

#[cfg(test)]
#[path = "span_tests.rs"]
mod tests;
