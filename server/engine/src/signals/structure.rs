//! The `structure` family (contract §3.10): regex, keyword-set, marker-sequence and
//! byte-length features of the full user text, compared with a numeric predicate.
//!
//! Owns compiling each rule's source once and computing feature values, matches and the
//! sigmoid-distance confidence. Follows upstream exactly: an empty (all-whitespace) text
//! matches nothing; `(?i)` is prefixed to regexes unless case-sensitive or already present;
//! keyword-set occurrences are counted on lowercased text (unless case-sensitive) with
//! letter/digit boundaries unless the keyword holds CJK; after a rejected occurrence the
//! search resumes after it. Values are recorded only for matched rules (upstream's
//! `SignalValues` carries only matches).

use regex::Regex;
use vllm_sr_config::model::{Predicate, StructureFeature, StructureRule, StructureSource};

use super::textutil::{contains_cjk, is_cjk, is_word_char, multilingual_units};
use crate::error::EngineError;
use crate::state::FamilyResult;

#[derive(Debug)]
enum Source {
    Regex(Regex),
    KeywordSet {
        keywords: Vec<String>,
        case_sensitive: bool,
    },
    Sequence {
        sequences: Vec<Vec<String>>,
        case_sensitive: bool,
    },
    TextBytes,
}

#[derive(Debug)]
struct Compiled {
    feature: StructureFeature,
    source: Source,
    predicate: Option<Predicate>,
}

/// Every structure rule of a recipe, compiled.
#[derive(Debug)]
pub struct StructureSignals {
    rules: Vec<Compiled>,
}

fn fold(s: &str, case_sensitive: bool) -> String {
    if case_sensitive {
        s.to_string()
    } else {
        s.to_lowercase()
    }
}

/// Occurrences of `keyword` in `text` (both already case-folded).
fn count_occurrences(text: &str, keyword: &str) -> usize {
    if keyword.is_empty() {
        return 0;
    }
    let boundary = !contains_cjk(keyword);
    let blocking = |c: char| is_word_char(c) && !is_cjk(c);
    let mut count = 0;
    for (start, m) in text.match_indices(keyword) {
        let end = start + m.len();
        let ok = !boundary
            || (!text[..start].chars().next_back().is_some_and(blocking)
                && !text[end..].chars().next().is_some_and(blocking));
        if ok {
            count += 1;
        }
    }
    count
}

/// True when some sequence's markers appear in order (non-overlapping).
fn sequence_matched(text: &str, sequences: &[Vec<String>], case_sensitive: bool) -> bool {
    let candidate = fold(text, case_sensitive);
    sequences.iter().filter(|s| !s.is_empty()).any(|seq| {
        let mut from = 0;
        seq.iter().all(|marker| {
            let marker = fold(marker, case_sensitive);
            match candidate[from..].find(&marker) {
                Some(idx) => {
                    from += idx + marker.len();
                    true
                }
                None => false,
            }
        })
    })
}

/// `max(0.5, sigmoid(4·|value − bound|))` for a matched rule with a predicate; 1.0 without.
pub fn structure_confidence(value: f64, predicate: Option<&Predicate>) -> f64 {
    match predicate {
        None => 1.0,
        Some(p) => {
            let distance = p.first_bound().map_or(1.0, |b| (value - b).abs());
            (1.0 / (1.0 + (-4.0 * distance).exp())).max(0.5)
        }
    }
}

impl StructureSignals {
    /// Compiles every rule.
    pub fn build(rules: &[StructureRule]) -> Result<Self, EngineError> {
        let mut out = Vec::with_capacity(rules.len());
        for r in rules {
            let source = match &r.source {
                StructureSource::Regex {
                    pattern,
                    case_sensitive,
                } => {
                    let p = if !case_sensitive && !pattern.starts_with("(?i)") {
                        format!("(?i){pattern}")
                    } else {
                        pattern.clone()
                    };
                    Source::Regex(Regex::new(&p).map_err(|e| EngineError::Compile {
                        family: "structure",
                        name: r.name.clone(),
                        message: e.to_string(),
                    })?)
                }
                StructureSource::KeywordSet {
                    keywords,
                    case_sensitive,
                } => Source::KeywordSet {
                    keywords: keywords.iter().map(|k| fold(k, *case_sensitive)).collect(),
                    case_sensitive: *case_sensitive,
                },
                StructureSource::Sequence {
                    sequences,
                    case_sensitive,
                } => Source::Sequence {
                    sequences: sequences.clone(),
                    case_sensitive: *case_sensitive,
                },
                StructureSource::TextBytes => Source::TextBytes,
            };
            out.push(Compiled {
                feature: r.feature,
                source,
                predicate: r.predicate,
            });
        }
        Ok(Self { rules: out })
    }

    /// Evaluates every rule against the full user text.
    pub fn eval(&self, text: &str, out: &mut FamilyResult) {
        if text.trim().is_empty() || self.rules.is_empty() {
            return;
        }
        let mut folded: Option<String> = None;
        for (i, rule) in self.rules.iter().enumerate() {
            let value = rule.value(text, &mut folded);
            let matched = match &rule.predicate {
                None => value > 0.0,
                Some(p) => p.holds(value),
            };
            if matched {
                out.hit(
                    i,
                    Some(structure_confidence(value, rule.predicate.as_ref())),
                );
                out.set_value(i, value);
            }
        }
    }
}

impl Compiled {
    fn count(&self, text: &str, folded: &mut Option<String>) -> usize {
        match &self.source {
            Source::Regex(re) => re.find_iter(text).count(),
            Source::KeywordSet {
                keywords,
                case_sensitive,
            } => {
                let candidate: &str = if *case_sensitive {
                    text
                } else {
                    folded.get_or_insert_with(|| text.to_lowercase())
                };
                keywords
                    .iter()
                    .map(|k| count_occurrences(candidate, k))
                    .sum()
            }
            Source::Sequence {
                sequences,
                case_sensitive,
            } => usize::from(sequence_matched(text, sequences, *case_sensitive)),
            Source::TextBytes => text.len(),
        }
    }

    fn value(&self, text: &str, folded: &mut Option<String>) -> f64 {
        match self.feature {
            StructureFeature::Exists => f64::from(u8::from(self.count(text, folded) > 0)),
            StructureFeature::Count => self.count(text, folded) as f64,
            StructureFeature::Density => {
                let units = multilingual_units(text);
                if units == 0 {
                    0.0
                } else {
                    self.count(text, folded) as f64 / units as f64
                }
            }
            StructureFeature::Sequence => match &self.source {
                Source::Sequence {
                    sequences,
                    case_sensitive,
                } => f64::from(u8::from(sequence_matched(text, sequences, *case_sensitive))),
                _ => 0.0,
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pred(
        gt: Option<f64>,
        gte: Option<f64>,
        lt: Option<f64>,
        lte: Option<f64>,
    ) -> Option<Predicate> {
        Some(Predicate { gt, gte, lt, lte })
    }
    fn rx(p: &str) -> StructureSource {
        StructureSource::Regex {
            pattern: p.into(),
            case_sensitive: false,
        }
    }
    fn kw(k: &[&str]) -> StructureSource {
        StructureSource::KeywordSet {
            keywords: k.iter().map(|s| s.to_string()).collect(),
            case_sensitive: false,
        }
    }
    fn seq(s: &[&[&str]]) -> StructureSource {
        StructureSource::Sequence {
            sequences: s
                .iter()
                .map(|v| v.iter().map(|x| x.to_string()).collect())
                .collect(),
            case_sensitive: false,
        }
    }

    /// Evaluates one rule; returns (matched, confidence, value).
    fn check(
        feature: StructureFeature,
        source: StructureSource,
        predicate: Option<Predicate>,
        text: &str,
        expected: Option<(f64, f64)>,
    ) {
        let rule = StructureRule {
            name: "r".into(),
            feature,
            source,
            predicate,
        };
        let s = StructureSignals::build(&[rule]).unwrap();
        let mut out = FamilyResult::new(1);
        s.eval(text, &mut out);
        let got = out
            .is_matched(0)
            .then(|| (out.confidence[0].unwrap(), out.value[0].unwrap()));
        match (got, expected) {
            (None, None) => {}
            (Some((c, v)), Some((ec, ev))) => {
                assert!(
                    (c - ec).abs() < 1e-9 && (v - ev).abs() < 1e-9,
                    "{text:?}: got ({c}, {v}), want ({ec}, {ev})"
                )
            }
            _ => panic!("{text:?}: got {got:?}, want {expected:?}"),
        }
    }

    use StructureFeature::{Count, Density, Exists, Sequence};
    const SIG4: f64 = 0.982_013_790_037_908_4; // sigmoid(4)

    #[test]
    fn regex_counts() {
        check(Count, rx(r"\?"), None, "why? how? what?", Some((1.0, 3.0)));
        check(Count, rx("AB"), None, "ab Ab aB", Some((1.0, 3.0)));
        check(
            Count,
            StructureSource::Regex {
                pattern: "AB".into(),
                case_sensitive: true,
            },
            None,
            "ab Ab AB",
            Some((1.0, 1.0)),
        );
        check(Count, rx("aa"), None, "aaaa", Some((1.0, 2.0)));
        check(Count, rx("zz"), None, "nothing", None);
        check(
            Exists,
            rx(r"```"),
            None,
            "```rust\nfn main(){}\n```",
            Some((1.0, 1.0)),
        );
        check(Count, rx(r"\d+"), None, "   ", None);
    }

    #[test]
    fn predicate_confidence() {
        // At the bound: sigmoid(0) = 0.5.
        check(
            Count,
            rx(r"\?"),
            pred(None, Some(2.0), None, None),
            "a? b?",
            Some((0.5, 2.0)),
        );
        check(
            Count,
            rx(r"\?"),
            pred(None, Some(2.0), None, None),
            "a? b? c?",
            Some((SIG4, 3.0)),
        );
        check(
            Count,
            rx(r"\?"),
            pred(Some(2.0), None, None, None),
            "a? b?",
            None,
        );
        check(
            Count,
            rx(r"\?"),
            pred(None, None, Some(3.0), None),
            "a?",
            Some((1.0 / (1.0 + (-8.0f64).exp()), 1.0)),
        );
        // First bound is gt even when lt is also set.
        check(
            Count,
            rx(r"\?"),
            pred(Some(0.0), None, Some(5.0), None),
            "a?",
            Some((SIG4, 1.0)),
        );
        // A predicate may match a zero value.
        check(
            Count,
            rx(r"\?"),
            pred(None, None, None, Some(0.0)),
            "no questions",
            Some((0.5, 0.0)),
        );
    }

    #[test]
    fn keyword_sets() {
        check(
            Count,
            kw(&["step"]),
            None,
            "Step 1, step 2, steps, footstep",
            Some((1.0, 2.0)),
        );
        check(
            Count,
            kw(&["第一步", "然后"]),
            None,
            "第一步做这个然后做那个然后结束",
            Some((1.0, 3.0)),
        );
        check(Count, kw(&["a_b"]), None, "x_a_b_y", Some((1.0, 1.0)));
        check(Count, kw(&["api"]), None, "apis", None);
    }

    #[test]
    fn density_with_cjk() {
        // 4 units ("hello", "world", "foo", "bar"), one "?" match.
        check(
            Density,
            rx(r"\?"),
            None,
            "hello world? foo bar",
            Some((1.0, 0.25)),
        );
        // Each Han character is a unit: 你 好 吗 + "ok" = 4 units.
        check(Density, rx("吗"), None, "你好吗 ok", Some((1.0, 0.25)));
        check(
            Density,
            rx(r"\?"),
            pred(None, Some(0.5), None, None),
            "a? b? c d",
            Some((0.5, 0.5)),
        );
        check(Density, rx(r"\?"), None, "???", None);
    }

    #[test]
    fn sequences_and_bytes() {
        check(
            Sequence,
            seq(&[&["first", "then", "finally"]]),
            None,
            "First do x, then y, finally z",
            Some((1.0, 1.0)),
        );
        check(
            Sequence,
            seq(&[&["first", "then"]]),
            None,
            "then first",
            None,
        );
        check(
            Sequence,
            seq(&[&["a", "b"], &["then", "first"]]),
            None,
            "then first",
            Some((1.0, 1.0)),
        );
        check(
            Sequence,
            StructureSource::Sequence {
                sequences: vec![vec!["First".into(), "Then".into()]],
                case_sensitive: true,
            },
            None,
            "first then",
            None,
        );
        check(
            Count,
            StructureSource::TextBytes,
            pred(Some(3.0), None, None, None),
            "你好",
            Some((1.0 / (1.0 + (-12.0f64).exp()), 6.0)),
        );
        check(Count, StructureSource::TextBytes, None, "", None);
    }
}
