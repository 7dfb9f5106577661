//! The loading context: collects diagnostics with positions and deserialises pieces of the
//! document one at a time, so one bad decision does not hide the errors in the next.
//!
//! Raw types deny unknown fields. `Ctx::de` catches serde's "unknown field" error, records it
//! as a warning (or an error where upstream is strict) with a "did you mean" suggestion,
//! removes the key and tries again.

use std::collections::HashMap;

use serde::de::DeserializeOwned;
use serde_norway::{Mapping, Value};

use crate::diag::{Diagnostic, Diagnostics, Severity};
use crate::path::{Seg, YamlPath};
use crate::position::PositionIndex;

/// How unknown keys are treated.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Unknown {
    /// Warn (upstream logs and ignores them).
    Warn,
    /// Error (upstream rejects them, e.g. under `global.router.learning`).
    Error,
}

pub(crate) struct Ctx<'a> {
    pub(crate) pos: &'a PositionIndex,
    pub(crate) diags: Diagnostics,
    /// Lists that lost elements while being read (an element that failed to deserialise, a
    /// recipe without a name): the list's source path → the source index of each element
    /// kept. Later stages index the kept elements, so their paths are mapped back to source
    /// indices before a diagnostic is recorded.
    kept: HashMap<YamlPath, Vec<usize>>,
}

impl<'a> Ctx<'a> {
    pub(crate) fn new(pos: &'a PositionIndex) -> Self {
        Self {
            pos,
            diags: Diagnostics::default(),
            kept: HashMap::new(),
        }
    }

    /// Records which elements of the list at `list` (a source path) were kept, in order.
    /// Paths recorded afterwards index the kept elements and are translated back.
    pub(crate) fn record_kept(&mut self, list: &YamlPath, kept: Vec<usize>, total: usize) {
        if kept.len() < total {
            self.kept.insert(list.clone(), kept);
        }
    }

    /// Maps indices into shortened lists back to source indices, outermost first (an outer
    /// list's translation decides which inner list is meant).
    fn source_path(&self, path: &YamlPath) -> YamlPath {
        if self.kept.is_empty() {
            return path.clone();
        }
        let mut out = YamlPath::root();
        for seg in path.segments() {
            out = match seg {
                Seg::Key(k) => out.key(k),
                Seg::Index(i) => {
                    let i = self
                        .kept
                        .get(&out)
                        .and_then(|kept| kept.get(*i))
                        .copied()
                        .unwrap_or(*i);
                    out.index(i)
                }
            };
        }
        out
    }

    fn push(&mut self, severity: Severity, path: &YamlPath, message: String) {
        let path = &self.source_path(path);
        let p = self.pos.lookup(path);
        self.diags.push(Diagnostic {
            severity,
            path: path.to_string(),
            line: p.map(|p| p.line),
            column: p.map(|p| p.column),
            message,
        });
    }

    pub(crate) fn error(&mut self, path: &YamlPath, message: impl Into<String>) {
        self.push(Severity::Error, path, message.into());
    }

    pub(crate) fn warn(&mut self, path: &YamlPath, message: impl Into<String>) {
        self.push(Severity::Warning, path, message.into());
    }

    /// Reports an unknown key with a suggestion drawn from `known`.
    pub(crate) fn unknown_key(&mut self, path: &YamlPath, key: &str, known: &[&str], how: Unknown) {
        let mut msg = format!("unknown key \"{key}\"");
        if let Some(s) = suggest(key, known) {
            msg.push_str(&format!("; did you mean \"{s}\"?"));
        }
        match how {
            Unknown::Warn => {
                msg.push_str(" (ignored)");
                self.warn(&path.key(key), msg)
            }
            Unknown::Error => self.error(&path.key(key), msg),
        }
    }

    /// Checks a mapping's keys against `known`.
    pub(crate) fn check_keys(
        &mut self,
        map: &Mapping,
        path: &YamlPath,
        known: &[&str],
        how: Unknown,
    ) {
        for k in map.keys() {
            match k.as_str() {
                Some(k) if known.contains(&k) => {}
                Some(k) => self.unknown_key(path, k, known, how),
                None => self.error(
                    path,
                    format!("mapping keys must be strings, found {}", kind_of(k)),
                ),
            }
        }
    }

    /// Deserialises `value` into `T`, reporting problems at `path`.
    pub(crate) fn de<T: DeserializeOwned>(
        &mut self,
        value: &Value,
        path: &YamlPath,
        how: Unknown,
    ) -> Option<T> {
        let mut v = value.clone();
        // Each retry removes one key, so the loop is bounded by the number of keys.
        for _ in 0..256 {
            match serde_path_to_error::deserialize::<_, T>(v.clone()) {
                Ok(t) => return Some(t),
                Err(e) => {
                    let inner = YamlPath::from_serde(e.path());
                    let msg = e.inner().to_string();
                    if let Some((field, expected)) = parse_unknown_field(&msg) {
                        let expected: Vec<&str> = expected.iter().map(String::as_str).collect();
                        // serde's path ends at the unknown key; the holder is its parent.
                        let holder_rel = match inner.segments().last() {
                            Some(Seg::Key(k)) if *k == field => inner.parent().unwrap_or_default(),
                            _ => inner,
                        };
                        self.unknown_key(&path.join(&holder_rel), &field, &expected, how);
                        if !remove_key(&mut v, holder_rel.segments(), &field) {
                            return None;
                        }
                        continue;
                    }
                    self.error(&path.join(&inner), clean_message(&msg));
                    return None;
                }
            }
        }
        None
    }

    /// Deserialises every element of an optional sequence separately.
    pub(crate) fn seq<T: DeserializeOwned>(
        &mut self,
        value: Option<&Value>,
        path: &YamlPath,
    ) -> Vec<T> {
        match value {
            None | Some(Value::Null) => Vec::new(),
            Some(Value::Sequence(items)) => {
                let mut kept = Vec::with_capacity(items.len());
                let mut out = Vec::with_capacity(items.len());
                for (i, item) in items.iter().enumerate() {
                    if let Some(t) = self.de(item, &path.index(i), Unknown::Warn) {
                        kept.push(i);
                        out.push(t);
                    }
                }
                self.record_kept(path, kept, items.len());
                out
            }
            Some(other) => {
                self.error(path, format!("expected a list, found {}", kind_of(other)));
                Vec::new()
            }
        }
    }

    /// The mapping at `value`, or an error when it is something else. Null reads as empty.
    pub(crate) fn mapping<'v>(
        &mut self,
        value: Option<&'v Value>,
        path: &YamlPath,
    ) -> Option<&'v Mapping> {
        match value {
            None | Some(Value::Null) => None,
            Some(Value::Mapping(m)) => Some(m),
            Some(other) => {
                self.error(
                    path,
                    format!("expected a mapping, found {}", kind_of(other)),
                );
                None
            }
        }
    }
}

/// A short description of a YAML value's type for messages.
pub(crate) fn kind_of(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Sequence(_) => "a list",
        Value::Mapping(_) => "a mapping",
        Value::Tagged(_) => "a tagged value",
    }
}

/// The closest candidate within edit distance 3.
pub(crate) fn suggest<'k>(key: &str, known: &[&'k str]) -> Option<&'k str> {
    known
        .iter()
        .map(|k| (strsim::levenshtein(key, k), *k))
        .filter(|(d, _)| *d <= 3)
        .min_by_key(|(d, _)| *d)
        .map(|(_, k)| k)
}

/// Parses serde's "unknown field `x`, expected one of `a`, `b`" message.
fn parse_unknown_field(msg: &str) -> Option<(String, Vec<String>)> {
    let rest = msg.strip_prefix("unknown field `")?;
    let mut parts = rest.split('`').collect::<Vec<_>>().into_iter();
    let field = parts.next()?.to_string();
    let expected = parts.skip(1).step_by(2).map(str::to_string).collect();
    Some((field, expected))
}

fn remove_key(v: &mut Value, segs: &[Seg], key: &str) -> bool {
    let mut cur = v;
    for seg in segs {
        cur = match (seg, cur) {
            (Seg::Key(k), Value::Mapping(m)) => match m.get_mut(k.as_str()) {
                Some(next) => next,
                None => return false,
            },
            (Seg::Index(i), Value::Sequence(s)) => match s.get_mut(*i) {
                Some(next) => next,
                None => return false,
            },
            _ => return false,
        };
    }
    match cur {
        Value::Mapping(m) => m.remove(key).is_some(),
        _ => false,
    }
}

/// Makes serde messages read like the rest: no trailing location, quotes instead of backticks.
fn clean_message(msg: &str) -> String {
    msg.replace('`', "\"")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_unknown_field_messages() {
        let (f, e) =
            parse_unknown_field("unknown field `thresold`, expected one of `name`, `threshold`")
                .unwrap();
        assert_eq!(f, "thresold");
        assert_eq!(e, vec!["name", "threshold"]);
        let (f, e) = parse_unknown_field("unknown field `x`, expected `a` or `b`").unwrap();
        assert_eq!(
            (f.as_str(), e),
            ("x", vec!["a".to_string(), "b".to_string()])
        );
        let (_, e) = parse_unknown_field("unknown field `x`, there are no fields").unwrap();
        assert!(e.is_empty());
    }

    #[test]
    fn suggests_close_keys() {
        assert_eq!(
            suggest("thresold", &["name", "threshold"]),
            Some("threshold")
        );
        assert_eq!(suggest("zzzzzzzz", &["name", "threshold"]), None);
    }
}
