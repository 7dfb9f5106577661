//! The `keyword` family (contract §3.1): literal, regex, BM25 and n-gram keyword rules over
//! the full current user text.
//!
//! Owns compiling each rule once into one matcher and evaluating every rule per request.
//! Keyword rules write no confidence (decisions read 1.0) and no values.
//!
//! **Literal and regex modes.** A literal keyword is regex-quoted and wrapped in `\b…\b` when
//! it holds a word character and no Han character (Han keywords are raw substrings); an
//! explicit `method: regex` keyword is used as written. `(?i)` is prefixed unless
//! `case_sensitive`. `\b` is Unicode-aware here (Go's RE2 `\b` is ASCII-only, which makes
//! upstream keywords that start or end with a non-ASCII letter unmatchable; we treat that as a
//! bug, not a contract). OR and NOR rules compile to one alternation; AND rules, and any rule
//! with fuzzy matching, compile to a `RegexSet` so each keyword's outcome is known.
//!
//! **Fuzzy.** With `fuzzy_threshold = Some(d)`, a keyword that does not match exactly still
//! matches when some lowercase letter/digit run of the text is within Levenshtein distance
//! `d` of the lowercase keyword (upstream compares whole keywords against single words, so a
//! multi-word keyword only fuzzy-matches a word close to the whole phrase).
//!
//! **BM25** (upstream internals are unspecified). The text is one document: tokens are
//! letter/digit runs with each CJK character its own token, lowercased unless
//! case-sensitive. A keyword is tokenised the same way; each token `t` scores the BM25
//! saturation `tf·(k1+1) / (tf + k1·(1 − b + b·dl/avgdl))` with `k1 = 1.2`, `b = 0.75`,
//! `avgdl = 64` tokens (a typical prompt) and IDF 1 (a single document has no corpus), divided
//! by `k1 + 1` so it lies in [0, 1). The keyword's score is the mean over its tokens; the
//! keyword is present when the score ≥ `bm25_threshold`. Operators then apply as usual.
//!
//! **N-gram.** A keyword is compared with every window of the text holding as many words as
//! the keyword (for keywords with CJK characters: as many characters), lowercased unless
//! case-sensitive. Similarity is the Dice coefficient `2|A∩B| / (|A|+|B|)` of the two sets of
//! character n-grams (`ngram_arity`; a string shorter than n is its own single gram, spaces
//! included). The keyword is present when the best window reaches `ngram_threshold`.

use std::collections::HashSet;

use regex::{Regex, RegexBuilder, RegexSet, RegexSetBuilder};
use vllm_sr_config::model::{KeywordMethod, KeywordOperator, KeywordRule};

use super::textutil::{is_cjk, is_han, levenshtein_within, lower_words};
use crate::error::EngineError;
use crate::state::FamilyResult;

/// Compiled regex size limit per rule (large keyword lists with Unicode classes).
const REGEX_SIZE_LIMIT: usize = 64 << 20;
const BM25_K1: f64 = 1.2;
const BM25_B: f64 = 0.75;
const BM25_AVGDL: f64 = 64.0;

/// How one rule decides which keywords are present.
#[derive(Debug)]
enum Matcher {
    /// One alternation of every keyword (OR/NOR without fuzzy).
    Any(Regex),
    /// Per-keyword outcomes (AND, or fuzzy).
    Set(RegexSet),
    /// No keywords (only NOR validates this way).
    Empty,
    /// BM25 presence per keyword.
    Bm25 {
        keywords: Vec<Vec<String>>,
        threshold: f64,
        case_sensitive: bool,
    },
    /// N-gram similarity per keyword.
    Ngram {
        keywords: Vec<NgramKeyword>,
        threshold: f64,
        arity: usize,
        case_sensitive: bool,
    },
}

#[derive(Debug)]
struct NgramKeyword {
    /// Words in the keyword (window size in text words), or characters for CJK keywords.
    width: usize,
    cjk: bool,
    grams: HashSet<String>,
}

#[derive(Debug)]
struct CompiledRule {
    operator: KeywordOperator,
    matcher: Matcher,
    /// Lowercase keyword characters for fuzzy matching, with the maximum distance.
    fuzzy: Option<(Vec<Vec<char>>, usize)>,
}

/// Every keyword rule of a recipe, compiled.
#[derive(Debug)]
pub struct KeywordSignals {
    rules: Vec<CompiledRule>,
    any_fuzzy: bool,
}

/// The regex source of one keyword (without the case flag).
pub fn keyword_pattern(keyword: &str, method: KeywordMethod) -> String {
    if method == KeywordMethod::Regex {
        return keyword.to_string();
    }
    let quoted = regex::escape(keyword);
    let has_word = keyword.chars().any(|c| c.is_alphanumeric() || c == '_');
    let has_han = keyword.chars().any(is_han);
    if has_word && !has_han {
        format!(r"\b{quoted}\b")
    } else {
        quoted
    }
}

fn compile_err(rule: &KeywordRule, e: impl std::fmt::Display) -> EngineError {
    EngineError::Compile {
        family: "keyword",
        name: rule.name.clone(),
        message: e.to_string(),
    }
}

/// Tokens for BM25: letter/digit runs, each CJK character alone.
fn bm25_tokens(text: &str, case_sensitive: bool) -> Vec<String> {
    let mut out = Vec::new();
    let mut cur = String::new();
    for c in text.chars() {
        if is_cjk(c) {
            if !cur.is_empty() {
                out.push(std::mem::take(&mut cur));
            }
            out.push(c.to_string());
        } else if c.is_alphanumeric() {
            cur.push(c);
        } else if !cur.is_empty() {
            out.push(std::mem::take(&mut cur));
        }
    }
    if !cur.is_empty() {
        out.push(cur);
    }
    if !case_sensitive {
        for t in &mut out {
            *t = t.to_lowercase();
        }
    }
    out
}

fn char_ngrams(s: &str, n: usize) -> HashSet<String> {
    let chars: Vec<char> = s.chars().collect();
    if chars.len() <= n {
        return std::iter::once(s.to_string())
            .filter(|g| !g.is_empty())
            .collect();
    }
    chars.windows(n).map(|w| w.iter().collect()).collect()
}

fn dice(a: &HashSet<String>, b: &HashSet<String>) -> f64 {
    if a.is_empty() || b.is_empty() {
        return 0.0;
    }
    let inter = a.iter().filter(|g| b.contains(*g)).count();
    2.0 * inter as f64 / (a.len() + b.len()) as f64
}

fn fold(s: &str, case_sensitive: bool) -> String {
    if case_sensitive {
        s.to_string()
    } else {
        s.to_lowercase()
    }
}

impl KeywordSignals {
    /// Compiles every rule. Fails only if a validated pattern does not compile here.
    pub fn build(rules: &[KeywordRule]) -> Result<Self, EngineError> {
        let mut compiled = Vec::with_capacity(rules.len());
        for rule in rules {
            compiled.push(Self::compile(rule)?);
        }
        let any_fuzzy = compiled.iter().any(|r| r.fuzzy.is_some());
        Ok(Self {
            rules: compiled,
            any_fuzzy,
        })
    }

    fn compile(rule: &KeywordRule) -> Result<CompiledRule, EngineError> {
        let fuzzy = match (rule.method, rule.fuzzy_threshold) {
            (KeywordMethod::Literal | KeywordMethod::Regex, Some(d)) => Some((
                rule.keywords
                    .iter()
                    .map(|k| k.to_lowercase().chars().collect())
                    .collect(),
                d as usize,
            )),
            _ => None,
        };
        let matcher = match rule.method {
            _ if rule.keywords.is_empty() => Matcher::Empty,
            KeywordMethod::Literal | KeywordMethod::Regex => {
                let pats: Vec<String> = rule
                    .keywords
                    .iter()
                    .map(|k| keyword_pattern(k, rule.method))
                    .collect();
                let per_keyword = rule.operator == KeywordOperator::And || fuzzy.is_some();
                if per_keyword {
                    let set = RegexSetBuilder::new(&pats)
                        .case_insensitive(!rule.case_sensitive)
                        .size_limit(REGEX_SIZE_LIMIT)
                        .build()
                        .map_err(|e| compile_err(rule, e))?;
                    Matcher::Set(set)
                } else {
                    let alt = pats
                        .iter()
                        .map(|p| format!("(?:{p})"))
                        .collect::<Vec<_>>()
                        .join("|");
                    let re = RegexBuilder::new(&alt)
                        .case_insensitive(!rule.case_sensitive)
                        .size_limit(REGEX_SIZE_LIMIT)
                        .build()
                        .map_err(|e| compile_err(rule, e))?;
                    Matcher::Any(re)
                }
            }
            KeywordMethod::Bm25 { threshold } => Matcher::Bm25 {
                keywords: rule
                    .keywords
                    .iter()
                    .map(|k| bm25_tokens(k, rule.case_sensitive))
                    .collect(),
                threshold,
                case_sensitive: rule.case_sensitive,
            },
            KeywordMethod::Ngram { threshold, arity } => {
                let arity = (arity as usize).max(1);
                let keywords = rule
                    .keywords
                    .iter()
                    .map(|k| {
                        let folded = fold(k.trim(), rule.case_sensitive);
                        let cjk = folded.chars().any(is_cjk);
                        let width = if cjk {
                            folded.chars().count()
                        } else {
                            folded.split_whitespace().count().max(1)
                        };
                        let norm = if cjk {
                            folded
                        } else {
                            folded.split_whitespace().collect::<Vec<_>>().join(" ")
                        };
                        NgramKeyword {
                            width,
                            cjk,
                            grams: char_ngrams(&norm, arity),
                        }
                    })
                    .collect();
                Matcher::Ngram {
                    keywords,
                    threshold,
                    arity,
                    case_sensitive: rule.case_sensitive,
                }
            }
        };
        Ok(CompiledRule {
            operator: rule.operator,
            matcher,
            fuzzy,
        })
    }

    /// Evaluates every rule against the full user text; matches are emitted in declaration
    /// order without confidence.
    pub fn eval(&self, text: &str, out: &mut FamilyResult) {
        let words: Vec<Vec<char>> = if self.any_fuzzy {
            lower_words(text)
                .into_iter()
                .map(|w| w.chars().collect())
                .collect()
        } else {
            Vec::new()
        };
        for (i, rule) in self.rules.iter().enumerate() {
            if rule.matches(text, &words) {
                out.hit(i, None);
            }
        }
    }
}

/// Applies an operator to per-keyword presence (short-circuiting).
fn combine(op: KeywordOperator, mut present: impl Iterator<Item = bool>) -> bool {
    match op {
        KeywordOperator::And => present.all(|p| p),
        KeywordOperator::Or => present.any(|p| p),
        KeywordOperator::Nor => !present.any(|p| p),
    }
}

impl CompiledRule {
    fn matches(&self, text: &str, words: &[Vec<char>]) -> bool {
        let op = self.operator;
        match &self.matcher {
            Matcher::Empty => self.operator != KeywordOperator::Or,
            Matcher::Any(re) => {
                let found = re.is_match(text);
                match self.operator {
                    KeywordOperator::Nor => !found,
                    _ => found,
                }
            }
            Matcher::Set(set) => {
                let exact = set.matches(text);
                let fuzzy = |k: usize| {
                    self.fuzzy.as_ref().is_some_and(|(kws, d)| {
                        words
                            .iter()
                            .any(|w| levenshtein_within(w, &kws[k], *d) <= *d)
                    })
                };
                combine(op, (0..set.len()).map(|k| exact.matched(k) || fuzzy(k)))
            }
            Matcher::Bm25 {
                keywords,
                threshold,
                case_sensitive,
            } => {
                let tokens = bm25_tokens(text, *case_sensitive);
                let dl = tokens.len() as f64;
                let norm = BM25_K1 * (1.0 - BM25_B + BM25_B * dl / BM25_AVGDL);
                let score = |kw: &Vec<String>| {
                    if kw.is_empty() {
                        return 0.0;
                    }
                    let total: f64 = kw
                        .iter()
                        .map(|t| {
                            let tf = tokens.iter().filter(|x| *x == t).count() as f64;
                            if tf == 0.0 {
                                0.0
                            } else {
                                tf / (tf + norm)
                            }
                        })
                        .sum();
                    total / kw.len() as f64
                };
                combine(op, keywords.iter().map(|k| score(k) >= *threshold))
            }
            Matcher::Ngram {
                keywords,
                threshold,
                arity,
                case_sensitive,
            } => {
                let folded = fold(text, *case_sensitive);
                let text_words: Vec<&str> = folded.split_whitespace().collect();
                let text_chars: Vec<char> = folded.chars().filter(|c| !c.is_whitespace()).collect();
                let best = |k: &NgramKeyword| -> f64 {
                    let mut best = 0.0f64;
                    if k.cjk {
                        if text_chars.len() < k.width {
                            return dice(
                                &k.grams,
                                &char_ngrams(&text_chars.iter().collect::<String>(), *arity),
                            );
                        }
                        for w in text_chars.windows(k.width) {
                            best = best.max(dice(
                                &k.grams,
                                &char_ngrams(&w.iter().collect::<String>(), *arity),
                            ));
                        }
                    } else {
                        let clean =
                            |w: &str| w.trim_matches(|c: char| !c.is_alphanumeric()).to_string();
                        let cleaned: Vec<String> = text_words.iter().map(|w| clean(w)).collect();
                        let width = k.width.min(cleaned.len().max(1));
                        for w in cleaned.windows(width) {
                            best = best.max(dice(&k.grams, &char_ngrams(&w.join(" "), *arity)));
                        }
                    }
                    best
                };
                combine(op, keywords.iter().map(|k| best(k) >= *threshold))
            }
        }
    }
}

#[cfg(test)]
#[path = "keyword_tests.rs"]
mod tests;
