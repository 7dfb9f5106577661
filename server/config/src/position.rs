//! Source positions of YAML nodes, so a diagnostic about `routing.decisions[3]` can say
//! `line 212:15`.
//!
//! serde's YAML values carry no spans, so the text is walked once more with a marked event
//! parser and every node's path is mapped to where it starts. For a mapping entry the position
//! is the key's, which is where a reader looks.

use std::collections::HashMap;

use yaml_rust2::parser::{Event, MarkedEventReceiver, Parser};
use yaml_rust2::scanner::Marker;

use crate::path::{Seg, YamlPath};

/// A 1-based line and column.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Pos {
    /// 1-based line.
    pub line: usize,
    /// 1-based column.
    pub column: usize,
}

/// Maps YAML paths to source positions.
#[derive(Debug, Default)]
pub struct PositionIndex {
    map: HashMap<YamlPath, Pos>,
}

impl PositionIndex {
    /// Builds the index. A document the marked parser rejects yields an empty index: the
    /// serde parse reports the syntax error with its own position.
    pub fn build(text: &str) -> Self {
        let mut recv = Receiver::default();
        let mut parser = Parser::new_from_str(text);
        if parser.load(&mut recv, false).is_err() {
            return Self::default();
        }
        Self { map: recv.map }
    }

    /// The position of `path`, or of its closest ancestor that exists in the source.
    pub fn lookup(&self, path: &YamlPath) -> Option<Pos> {
        let mut p = Some(path.clone());
        while let Some(cur) = p {
            if let Some(pos) = self.map.get(&cur) {
                return Some(*pos);
            }
            p = cur.parent();
        }
        None
    }
}

enum Frame {
    Map {
        pending_key: Option<String>,
        key_pos: Option<Pos>,
        seen_key: bool,
    },
    Seq {
        next: usize,
    },
}

#[derive(Default)]
struct Receiver {
    path: YamlPath,
    stack: Vec<Frame>,
    map: HashMap<YamlPath, Pos>,
}

fn pos(mark: Marker) -> Pos {
    Pos {
        line: mark.line(),
        column: mark.col() + 1,
    }
}

impl Receiver {
    /// Called when a node (scalar, mapping or sequence) starts. Returns the node's path, or
    /// `None` when the node is a mapping key.
    fn node_start(&mut self, mark: Marker, key_text: Option<&str>) -> Option<YamlPath> {
        match self.stack.last_mut() {
            None => {
                self.map.entry(YamlPath::root()).or_insert(pos(mark));
                Some(YamlPath::root())
            }
            Some(Frame::Seq { next }) => {
                let p = self.path.index(*next);
                *next += 1;
                self.map.entry(p.clone()).or_insert(pos(mark));
                Some(p)
            }
            Some(Frame::Map {
                pending_key,
                key_pos,
                seen_key,
            }) => match pending_key.take() {
                None => {
                    *pending_key = Some(key_text.unwrap_or_default().to_string());
                    *key_pos = Some(pos(mark));
                    // A sequence item's mapping-start mark can sit past its first key; the
                    // first key is where a reader sees the item begin. (A mapping under a key
                    // keeps the key's position.)
                    if !*seen_key {
                        *seen_key = true;
                        if !matches!(self.path.segments().last(), Some(Seg::Key(_))) {
                            self.map.insert(self.path.clone(), pos(mark));
                        }
                    }
                    None
                }
                Some(k) => {
                    let p = self.path.key(&k);
                    let at = key_pos.take().unwrap_or(pos(mark));
                    self.map.entry(p.clone()).or_insert(at);
                    Some(p)
                }
            },
        }
    }

    fn enter(&mut self, mark: Marker, frame: Frame) {
        match self.node_start(mark, None) {
            Some(p) => self.path = p,
            // A complex (non-scalar) mapping key: track it under a placeholder segment.
            None => self.path = self.path.key("?"),
        }
        self.stack.push(frame);
    }

    fn leave(&mut self) {
        self.stack.pop();
        if let Some(parent) = self.path.parent() {
            self.path = parent;
        }
        // A container that was itself a mapping key consumed the pending-key slot.
        if let Some(Frame::Map { pending_key, .. }) = self.stack.last_mut() {
            if pending_key.as_deref() == Some("?") {
                *pending_key = None;
            }
        }
    }
}

impl MarkedEventReceiver for Receiver {
    fn on_event(&mut self, ev: Event, mark: Marker) {
        match ev {
            Event::Scalar(text, ..) => {
                self.node_start(mark, Some(&text));
            }
            Event::Alias(_) => {
                self.node_start(mark, Some(""));
            }
            Event::MappingStart(..) => {
                self.enter(
                    mark,
                    Frame::Map {
                        pending_key: None,
                        key_pos: None,
                        seen_key: false,
                    },
                );
            }
            Event::SequenceStart(..) => self.enter(mark, Frame::Seq { next: 0 }),
            Event::MappingEnd | Event::SequenceEnd => self.leave(),
            _ => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_keys_and_items() {
        let text = "a:\n  b:\n    - x: 1\n      y: [1, 2]\n    - z: 3\nc: d\n";
        let idx = PositionIndex::build(text);
        assert_eq!(
            idx.lookup(&YamlPath::parse("a")),
            Some(Pos { line: 1, column: 1 })
        );
        assert_eq!(
            idx.lookup(&YamlPath::parse("a.b")),
            Some(Pos { line: 2, column: 3 })
        );
        assert_eq!(
            idx.lookup(&YamlPath::parse("a.b[0].y")),
            Some(Pos { line: 4, column: 7 })
        );
        assert_eq!(
            idx.lookup(&YamlPath::parse("a.b[1].z")),
            Some(Pos { line: 5, column: 7 })
        );
        assert_eq!(
            idx.lookup(&YamlPath::parse("c")),
            Some(Pos { line: 6, column: 1 })
        );
        // Missing leaves fall back to the closest ancestor.
        assert_eq!(
            idx.lookup(&YamlPath::parse("a.b[1].nope")),
            Some(Pos { line: 5, column: 7 })
        );
    }
}
