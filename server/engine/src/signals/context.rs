//! The `context` family (contract §3.9): an estimated token count of the request and the
//! inclusive ranges of the context rules.
//!
//! Owns the token estimate `max(ceil(context_bytes/4), facts.token_floor)` (no EMA
//! recalibration yet) and the range check. Several rules may match; none writes a confidence.

use vllm_sr_config::model::ContextRule;

use crate::request::SignalText;
use crate::state::FamilyResult;

/// The context rules of a recipe.
#[derive(Debug)]
pub struct ContextSignals {
    ranges: Vec<(u64, u64)>,
}

/// The request's estimated token count (the proxy reports it in a header).
pub fn token_count(st: &SignalText) -> u64 {
    (st.context_bytes as u64)
        .div_ceil(4)
        .max(st.facts.token_floor)
}

impl ContextSignals {
    /// Keeps each rule's inclusive range.
    pub fn build(rules: &[ContextRule]) -> Self {
        Self {
            ranges: rules.iter().map(|r| (r.min_tokens, r.max_tokens)).collect(),
        }
    }

    /// Matches every rule whose range holds the token count, and returns the count.
    pub fn eval(&self, st: &SignalText, out: &mut FamilyResult) -> u64 {
        let count = token_count(st);
        self.eval_count(count, out);
        count
    }

    /// Matches against a precomputed count.
    pub fn eval_count(&self, count: u64, out: &mut FamilyResult) {
        for (i, (min, max)) in self.ranges.iter().enumerate() {
            if *min <= count && count <= *max {
                out.hit(i, None);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::request::RequestView;
    use serde_json::json;

    fn rules() -> Vec<ContextRule> {
        let r = |n: &str, a: u64, b: u64| ContextRule {
            name: n.into(),
            min_tokens: a,
            max_tokens: b,
        };
        vec![
            r("short", 0, 999),
            r("medium", 1000, 8000),
            r("k_edge", 8000, 8000),
            r("long", 8001, 256_000),
        ]
    }

    fn check(count: u64, expected: &[&str]) {
        let rules = rules();
        let mut out = FamilyResult::new(rules.len());
        ContextSignals::build(&rules).eval_count(count, &mut out);
        let got: Vec<&str> = out
            .matched
            .iter()
            .map(|&i| rules[i as usize].name.as_str())
            .collect();
        assert_eq!(got, expected, "count {count}");
    }

    #[test]
    fn inclusive_bounds() {
        check(0, &["short"]);
        check(999, &["short"]);
        check(1000, &["medium"]);
        check(8000, &["medium", "k_edge"]);
        check(8001, &["long"]);
        check(256_000, &["long"]);
        check(256_001, &[]);
    }

    #[test]
    fn count_uses_floor_and_context_bytes() {
        let req = RequestView::from_text(&"a".repeat(4001));
        let st = SignalText::of(&req);
        // Context text: 4001 bytes → 1001; floor: ceil((4001+4)/4) + 4 framing = 1006.
        assert_eq!(token_count(&st), 1006);
        let body = json!({"messages": [{"role": "user", "content": [{"type": "text", "text": "hi"}, {"type": "image_url", "image_url": {"url": "x"}}]}], "max_tokens": 100});
        let st = SignalText::of(&RequestView::from_json(&body).unwrap());
        assert_eq!(token_count(&st), 2 + 8192 + 4 + 100);
        let mut out = FamilyResult::new(4);
        assert_eq!(ContextSignals::build(&rules()).eval(&st, &mut out), 8298);
        assert_eq!(out.matched, vec![3]);
    }
}
