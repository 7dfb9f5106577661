//! Rule-tree evaluation with a trace (contract §6.2), ranking of matched decisions (§6.3)
//! and the model choice within the winner (§6.4).

use serde::Serialize;
use vllm_sr_config::model::*;

use crate::state::SignalState;

/// Projection results the rule trees read.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct ProjectionState {
    /// Score values in declaration order.
    pub scores: Vec<f64>,
    /// Confidence per flattened mapping output; `None` when not emitted.
    pub outputs: Vec<Option<f64>>,
}

/// One node of the evaluation trace (the eval API's `root_trace`).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct TraceNode {
    /// `AND`, `OR`, `NOT`, `leaf` or `fallback`.
    pub node_type: &'static str,
    /// Leaf signal type.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub signal_type: Option<&'static str>,
    /// Leaf signal name as referenced.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub signal_name: Option<String>,
    /// Classifier label.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub label: Option<String>,
    /// Whether the node matched.
    pub matched: bool,
    /// Node confidence.
    pub confidence: f64,
    /// Children of composites.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub children: Vec<TraceNode>,
}

/// Everything a rule tree can read.
#[derive(Clone, Copy)]
pub struct Facts<'a> {
    /// The recipe.
    pub recipe: &'a Recipe,
    /// Signal results.
    pub state: &'a SignalState,
    /// Projection results (empty before projections run).
    pub projections: &'a ProjectionState,
}

impl std::fmt::Debug for Facts<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Facts")
            .field("recipe", &self.recipe.name)
            .finish()
    }
}

/// Whether a leaf target holds, and its confidence.
pub fn leaf_match(facts: Facts<'_>, target: &LeafTarget) -> (bool, f64) {
    let st = facts.state;
    match target {
        LeafTarget::Signal(r) => {
            let fam = st.family(r.family);
            (fam.is_matched(r.index), fam.read_confidence(r.index))
        }
        LeafTarget::Domain(i) => {
            let fam = st.family(SignalFamily::Domain);
            if fam.is_matched(*i) {
                return (true, fam.read_confidence(*i));
            }
            let cats = facts
                .recipe
                .signals
                .domains
                .get(*i as usize)
                .map(|d| d.mmlu_categories.as_slice())
                .unwrap_or(&[]);
            match st.domain_labels.iter().find(|(l, _)| cats.contains(l)) {
                Some((_, p)) => (true, *p),
                None => (false, 0.0),
            }
        }
        LeafTarget::Complexity { rule, level } => {
            match st.complexity.get(*rule as usize).copied().flatten() {
                Some(c) if c.level == *level => (true, c.confidence),
                _ => (false, 0.0),
            }
        }
        LeafTarget::Role(i) => (st.roles.get(*i as usize).copied().unwrap_or(false), 1.0),
        LeafTarget::Classifier { rule, label } => {
            let score = st
                .classifier_scores
                .get(*rule as usize)
                .and_then(|s| s.get(*label as usize))
                .copied()
                .unwrap_or(0.0);
            let argmax = st
                .classifier_scores
                .get(*rule as usize)
                .and_then(|s| (0..s.len()).max_by(|a, b| s[*a].total_cmp(&s[*b])))
                .is_some_and(|m| m == *label as usize);
            (argmax, score)
        }
        LeafTarget::Projection(o) => match facts
            .projections
            .outputs
            .get(*o as usize)
            .copied()
            .flatten()
        {
            Some(c) => (true, c),
            None => (false, 0.0),
        },
    }
}

/// The raw value a leaf predicate compares (value, else confidence), if any.
fn leaf_value(facts: Facts<'_>, target: &LeafTarget) -> Option<f64> {
    let st = facts.state;
    match target {
        LeafTarget::Signal(r) => {
            let fam = st.family(r.family);
            fam.value
                .get(r.index as usize)
                .copied()
                .flatten()
                .or_else(|| fam.confidence.get(r.index as usize).copied().flatten())
        }
        LeafTarget::Classifier { rule, label } => st
            .classifier_scores
            .get(*rule as usize)
            .and_then(|s| s.get(*label as usize))
            .copied(),
        LeafTarget::Complexity { rule, .. } => st
            .complexity
            .get(*rule as usize)
            .copied()
            .flatten()
            .map(|c| c.confidence),
        LeafTarget::Projection(o) => facts
            .projections
            .outputs
            .get(*o as usize)
            .copied()
            .flatten(),
        LeafTarget::Domain(_) | LeafTarget::Role(_) => {
            let (matched, confidence) = leaf_match(facts, target);
            matched.then_some(confidence)
        }
    }
}

fn leaf_errored(facts: Facts<'_>, target: &LeafTarget) -> bool {
    match target {
        LeafTarget::Classifier { rule, .. } => facts
            .state
            .classifier_errors
            .get(*rule as usize)
            .copied()
            .unwrap_or(false),
        LeafTarget::Signal(r) => facts.state.errors.contains_key(r.family.leaf_type()),
        _ => false,
    }
}

fn leaf_names(recipe: &Recipe, target: &LeafTarget) -> (&'static str, String, Option<String>) {
    let s = &recipe.signals;
    match target {
        LeafTarget::Signal(r) => (r.family.leaf_type(), s.name_of(*r).to_string(), None),
        LeafTarget::Domain(i) => (
            "domain",
            s.domains
                .get(*i as usize)
                .map(|d| d.name.clone())
                .unwrap_or_default(),
            None,
        ),
        LeafTarget::Complexity { rule, level } => {
            let name = s
                .complexity
                .get(*rule as usize)
                .map(|c| c.name.as_str())
                .unwrap_or("");
            ("complexity", format!("{name}:{}", level.as_str()), None)
        }
        LeafTarget::Role(i) => (
            "authz",
            s.roles.get(*i as usize).cloned().unwrap_or_default(),
            None,
        ),
        LeafTarget::Classifier { rule, label } => {
            let c = s.classifiers.get(*rule as usize);
            (
                "classifier",
                c.map(|c| c.name.clone()).unwrap_or_default(),
                c.and_then(|c| c.labels.get(*label as usize).cloned()),
            )
        }
        LeafTarget::Projection(o) => (
            "projection",
            recipe
                .projections
                .outputs
                .get(*o as usize)
                .map(|o| o.name.clone())
                .unwrap_or_default(),
            None,
        ),
    }
}

/// AND: every child matches; confidence is their mean. An empty AND matches with confidence 0.
/// Stops at the first child that does not match.
fn all_of(results: impl Iterator<Item = (bool, f64)>) -> (bool, f64) {
    let (mut n, mut sum) = (0usize, 0.0);
    for (matched, confidence) in results {
        if !matched {
            return (false, 0.0);
        }
        n += 1;
        sum += confidence;
    }
    if n == 0 {
        (true, 0.0)
    } else {
        (true, sum / n as f64)
    }
}

/// OR: any child matches; confidence is the first maximum. An empty OR never matches.
fn any_of(results: impl Iterator<Item = (bool, f64)>) -> (bool, f64) {
    let mut best: Option<f64> = None;
    for (matched, confidence) in results {
        if matched && best.is_none_or(|b| confidence > b) {
            best = Some(confidence);
        }
    }
    best.map_or((false, 0.0), |b| (true, b))
}

/// Evaluates a condition: (matched, confidence). No trace is built.
pub fn eval(facts: Facts<'_>, c: &Condition) -> (bool, f64) {
    match c {
        Condition::Always => (true, 0.0),
        Condition::Leaf(l) => eval_leaf(facts, l),
        Condition::And(children) => all_of(children.iter().map(|k| eval(facts, k))),
        Condition::Or(children) => any_of(children.iter().map(|k| eval(facts, k))),
        Condition::Not(child) => {
            let (m, _) = eval(facts, child);
            if m {
                (false, 0.0)
            } else {
                (true, 1.0)
            }
        }
    }
}

fn eval_leaf(facts: Facts<'_>, l: &Leaf) -> (bool, f64) {
    if let Some(p) = &l.predicate {
        return match leaf_value(facts, &l.target) {
            Some(v) if p.holds(v) => (true, 1.0),
            Some(_) => (false, 0.0),
            None => (l.match_on_error && leaf_errored(facts, &l.target), 1.0),
        };
    }
    if l.match_on_error && leaf_errored(facts, &l.target) {
        return (true, 1.0);
    }
    leaf_match(facts, &l.target)
}

/// Evaluates a condition and records every node.
pub fn trace(facts: Facts<'_>, c: &Condition) -> TraceNode {
    let node = |node_type, matched, confidence, children| TraceNode {
        node_type,
        signal_type: None,
        signal_name: None,
        label: None,
        matched,
        confidence,
        children,
    };
    match c {
        Condition::Always => node("fallback", true, 0.0, Vec::new()),
        Condition::Leaf(l) => {
            let (matched, confidence) = eval_leaf(facts, l);
            let (ty, name, label) = leaf_names(facts.recipe, &l.target);
            TraceNode {
                node_type: "leaf",
                signal_type: Some(ty),
                signal_name: Some(name),
                label,
                matched,
                confidence,
                children: Vec::new(),
            }
        }
        Condition::And(children) | Condition::Or(children) => {
            let kids: Vec<TraceNode> = children.iter().map(|k| trace(facts, k)).collect();
            // Combine the children's results; re-evaluating the subtree would redo it.
            let results = kids.iter().map(|k| (k.matched, k.confidence));
            let (matched, confidence) = if matches!(c, Condition::And(_)) {
                all_of(results)
            } else {
                any_of(results)
            };
            node(
                if matches!(c, Condition::And(_)) {
                    "AND"
                } else {
                    "OR"
                },
                matched,
                confidence,
                kids,
            )
        }
        Condition::Not(child) => {
            let kid = trace(facts, child);
            let matched = !kid.matched;
            node("NOT", matched, if matched { 1.0 } else { 0.0 }, vec![kid])
        }
    }
}

/// A matched decision and its confidence.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Candidate {
    /// Index into the recipe's decisions.
    pub index: usize,
    /// Rule-tree confidence.
    pub confidence: f64,
}

/// Orders matched decisions (§6.3) and returns them best first.
pub fn rank(recipe: &Recipe, mut matched: Vec<Candidate>) -> Vec<Candidate> {
    let d = |c: &Candidate| &recipe.decisions[c.index];
    let tiered = matched.iter().any(|c| d(c).tier > 0);
    matched.sort_by(|a, b| {
        let (da, db) = (d(a), d(b));
        let conf = b.confidence.total_cmp(&a.confidence);
        let prio = db.priority.cmp(&da.priority);
        let name = da.name.cmp(&db.name);
        if tiered {
            da.tier.cmp(&db.tier).then(conf).then(prio).then(name)
        } else if recipe.strategy == Strategy::Confidence {
            conf.then(prio).then(name)
        } else {
            prio.then(conf).then(name)
        }
    });
    matched
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A naive interpreter written independently of `eval`, for the property test.
    fn naive(c: &Condition, leaves: &[bool]) -> bool {
        match c {
            Condition::Always => true,
            Condition::Leaf(l) => match l.target {
                LeafTarget::Role(i) => leaves[i as usize],
                _ => false,
            },
            Condition::And(k) => k.iter().all(|k| naive(k, leaves)),
            Condition::Or(k) => k.iter().any(|k| naive(k, leaves)),
            Condition::Not(k) => !naive(k, leaves),
        }
    }

    fn recipe_with_roles(n: usize) -> Recipe {
        let signals = Signals {
            roles: (0..n).map(|i| format!("r{i}")).collect(),
            ..Signals::default()
        };
        Recipe {
            name: "t".into(),
            description: String::new(),
            signals,
            projections: Projections::default(),
            decisions: Vec::new(),
            strategy: Strategy::Priority,
        }
    }

    fn state(recipe: &Recipe, roles: &[bool]) -> SignalState {
        let mut s = SignalState::new(&recipe.signals, 0);
        s.roles = roles.to_vec();
        s
    }

    fn arb_condition() -> impl proptest::strategy::Strategy<Value = Condition> {
        use proptest::prelude::*;
        let leaf = (0u32..4).prop_map(|i| {
            Condition::Leaf(Leaf {
                target: LeafTarget::Role(i),
                predicate: None,
                match_on_error: false,
            })
        });
        leaf.prop_recursive(4, 32, 4, |inner| {
            prop_oneof![
                proptest::collection::vec(inner.clone(), 0..4).prop_map(Condition::And),
                proptest::collection::vec(inner.clone(), 0..4).prop_map(Condition::Or),
                inner.prop_map(|c| Condition::Not(Box::new(c))),
            ]
        })
    }

    proptest::proptest! {
        #[test]
        fn agrees_with_a_naive_interpreter(c in arb_condition(), leaves in proptest::collection::vec(proptest::bool::ANY, 4)) {
            let recipe = recipe_with_roles(4);
            let st = state(&recipe, &leaves);
            let facts = Facts { recipe: &recipe, state: &st, projections: &ProjectionState::default() };
            proptest::prop_assert_eq!(eval(facts, &c).0, naive(&c, &leaves));
            proptest::prop_assert_eq!(trace(facts, &c).matched, eval(facts, &c).0);
        }

        #[test]
        fn double_negation_is_identity(c in arb_condition(), leaves in proptest::collection::vec(proptest::bool::ANY, 4)) {
            let recipe = recipe_with_roles(4);
            let st = state(&recipe, &leaves);
            let facts = Facts { recipe: &recipe, state: &st, projections: &ProjectionState::default() };
            let nn = Condition::Not(Box::new(Condition::Not(Box::new(c.clone()))));
            proptest::prop_assert_eq!(eval(facts, &nn).0, eval(facts, &c).0);
        }
    }

    #[test]
    fn confidence_rules() {
        let recipe = recipe_with_roles(2);
        let st = state(&recipe, &[true, false]);
        let facts = Facts {
            recipe: &recipe,
            state: &st,
            projections: &ProjectionState::default(),
        };
        let role = |i| {
            Condition::Leaf(Leaf {
                target: LeafTarget::Role(i),
                predicate: None,
                match_on_error: false,
            })
        };
        assert_eq!(eval(facts, &Condition::And(vec![])), (true, 0.0));
        assert_eq!(eval(facts, &Condition::Or(vec![])), (false, 0.0));
        assert_eq!(eval(facts, &Condition::Not(Box::new(role(1)))), (true, 1.0));
        assert_eq!(
            eval(
                facts,
                &Condition::And(vec![role(0), Condition::Not(Box::new(role(1)))])
            ),
            (true, 1.0)
        );
        assert_eq!(trace(facts, &Condition::Always).node_type, "fallback");
    }
}
