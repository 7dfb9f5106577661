//! The `metadata` family (contract §3.19): comparisons over the request body's top-level
//! `metadata` strings.
//!
//! Owns only the comparison; bounding and string filtering happen in [`crate::request`].
//! Metadata is untrusted client input and must never carry identity. Matches get
//! confidence 1.0.

use indexmap::IndexMap;
use vllm_sr_config::model::{MetadataPredicate, MetadataRule};

use crate::state::FamilyResult;

/// The metadata rules of a recipe.
#[derive(Debug)]
pub struct MetadataSignals {
    rules: Vec<MetadataRule>,
}

impl MetadataSignals {
    /// Keeps the rules.
    pub fn build(rules: &[MetadataRule]) -> Self {
        Self {
            rules: rules.to_vec(),
        }
    }

    /// Evaluates every rule against the request metadata.
    pub fn eval(&self, metadata: &IndexMap<String, String>, out: &mut FamilyResult) {
        for (i, r) in self.rules.iter().enumerate() {
            let value = metadata.get(&r.key);
            let matched = match &r.predicate {
                MetadataPredicate::Equals(want) => value.is_some_and(|v| v == want),
                MetadataPredicate::In(list) => value.is_some_and(|v| list.iter().any(|w| w == v)),
                MetadataPredicate::Exists(b) => value.is_some() == *b,
            };
            if matched {
                out.hit(i, Some(1.0));
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::request::RequestView;
    use serde_json::json;

    fn check(key: &str, p: MetadataPredicate, meta: serde_json::Value, expected: bool) {
        let req = RequestView::from_json(&json!({"messages": [], "metadata": meta})).unwrap();
        let rule = MetadataRule {
            name: "m".into(),
            key: key.into(),
            predicate: p.clone(),
        };
        let mut out = FamilyResult::new(1);
        MetadataSignals::build(&[rule]).eval(&req.metadata, &mut out);
        assert_eq!(out.is_matched(0), expected, "{key} {p:?} on {meta}");
        if expected {
            assert_eq!(out.confidence[0], Some(1.0));
        }
    }

    use MetadataPredicate::{Equals, Exists, In};

    #[test]
    fn comparators() {
        check("tier", Equals("gold".into()), json!({"tier": "gold"}), true);
        check(
            "tier",
            Equals("gold".into()),
            json!({"tier": "Gold"}),
            false,
        );
        check("tier", Equals("gold".into()), json!({}), false);
        check(
            "tier",
            In(vec!["gold".into(), "silver".into()]),
            json!({"tier": "silver"}),
            true,
        );
        check(
            "tier",
            In(vec!["gold".into()]),
            json!({"tier": "bronze"}),
            false,
        );
        check("tier", In(vec![]), json!({"tier": "gold"}), false);
        check("tier", Exists(true), json!({"tier": ""}), true);
        check("tier", Exists(false), json!({"other": "x"}), true);
        check("tier", Exists(false), json!({"tier": "x"}), false);
        // Non-string values are dropped by the request view.
        check("tier", Exists(true), json!({"tier": 5}), false);
        check("tier", Equals("5".into()), json!({"tier": 5}), false);
    }
}
