//! YAML paths such as `routing.decisions[3].rules.conditions[1]`.
//!
//! The same representation is produced by the position index (from the source text) and by
//! the loader (from serde's error paths), so a diagnostic's path finds its `line:column`.

use std::fmt;

/// One step into a YAML document.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Seg {
    /// A mapping key.
    Key(String),
    /// A sequence index.
    Index(usize),
}

/// A path from the document root to a node.
#[derive(Debug, Clone, Default, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct YamlPath(Vec<Seg>);

impl YamlPath {
    /// The document root.
    pub fn root() -> Self {
        Self(Vec::new())
    }

    /// Parses a dotted path (`a.b[2].c`). Keys containing dots cannot be expressed.
    pub fn parse(s: &str) -> Self {
        let mut segs = Vec::new();
        for part in s.split('.').filter(|p| !p.is_empty()) {
            let (key, mut rest) = match part.find('[') {
                Some(i) => (&part[..i], &part[i..]),
                None => (part, ""),
            };
            if !key.is_empty() {
                segs.push(Seg::Key(key.to_string()));
            }
            while let Some(end) = rest.find(']') {
                if let Ok(i) = rest[1..end].parse() {
                    segs.push(Seg::Index(i));
                }
                rest = &rest[end + 1..];
            }
        }
        Self(segs)
    }

    /// This path extended by a key.
    pub fn key(&self, k: &str) -> Self {
        let mut p = self.clone();
        p.0.push(Seg::Key(k.to_string()));
        p
    }

    /// This path extended by an index.
    pub fn index(&self, i: usize) -> Self {
        let mut p = self.clone();
        p.0.push(Seg::Index(i));
        p
    }

    /// This path extended by every segment of `other`.
    pub fn join(&self, other: &YamlPath) -> Self {
        let mut p = self.clone();
        p.0.extend(other.0.iter().cloned());
        p
    }

    /// The segments.
    pub fn segments(&self) -> &[Seg] {
        &self.0
    }

    /// The path without its last segment, or `None` at the root.
    pub fn parent(&self) -> Option<Self> {
        if self.0.is_empty() {
            None
        } else {
            Some(Self(self.0[..self.0.len() - 1].to_vec()))
        }
    }

    /// Converts a `serde_path_to_error` path.
    pub(crate) fn from_serde(p: &serde_path_to_error::Path) -> Self {
        use serde_path_to_error::Segment;
        let segs = p
            .iter()
            .filter_map(|s| match s {
                Segment::Seq { index } => Some(Seg::Index(*index)),
                Segment::Map { key } => Some(Seg::Key(key.clone())),
                Segment::Enum { variant } => Some(Seg::Key(variant.clone())),
                Segment::Unknown => None,
            })
            .collect();
        Self(segs)
    }
}

impl fmt::Display for YamlPath {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut first = true;
        for seg in &self.0 {
            match seg {
                Seg::Key(k) => {
                    if !first {
                        f.write_str(".")?;
                    }
                    f.write_str(k)?;
                }
                Seg::Index(i) => write!(f, "[{i}]")?,
            }
            first = false;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn display_and_parse_round_trip() {
        let p = YamlPath::root()
            .key("routing")
            .key("decisions")
            .index(3)
            .key("rules");
        assert_eq!(p.to_string(), "routing.decisions[3].rules");
        assert_eq!(YamlPath::parse("routing.decisions[3].rules"), p);
        assert_eq!(YamlPath::parse("a[1][2].b").to_string(), "a[1][2].b");
    }
}
