//! Compiled decision rule trees: every leaf holds a resolved id, never a name to look up.

use super::signals::{ComplexityLevel, SignalRef};
use super::Predicate;

/// A boolean rule tree (contract §6.2).
#[derive(Debug, Clone, PartialEq)]
pub enum Condition {
    /// No rules at all: matches with confidence 0 (trace node type `fallback`).
    Always,
    /// All children match; confidence is their mean. An empty AND matches with confidence 0.
    And(Vec<Condition>),
    /// Any child matches; confidence is the first maximum. An empty OR never matches.
    Or(Vec<Condition>),
    /// Matches with confidence 1 when the child does not match.
    Not(Box<Condition>),
    /// A signal reference.
    Leaf(Leaf),
}

/// A leaf of a rule tree.
#[derive(Debug, Clone, PartialEq)]
pub struct Leaf {
    /// What the leaf tests.
    pub target: LeafTarget,
    /// Numeric predicate on the signal value; when set, a match has confidence 1.
    pub predicate: Option<Predicate>,
    /// `on_error: match`: the leaf matches when its classifier errored.
    pub match_on_error: bool,
}

/// What a leaf tests.
#[derive(Debug, Clone, PartialEq)]
pub enum LeafTarget {
    /// A rule of a family matched (keyword, embedding, fact_check, user_feedback, reask,
    /// preference, language, context, structure, modality, jailbreak, pii, kb, conversation,
    /// event, metadata).
    Signal(SignalRef),
    /// A domain matched, directly or through its `mmlu_categories` (index into domains).
    Domain(u32),
    /// A complexity rule emitted this level.
    Complexity {
        /// Index into complexity rules.
        rule: u32,
        /// Required level.
        level: ComplexityLevel,
    },
    /// An authz role was granted (index into `Signals::roles`).
    Role(u32),
    /// A classifier label's score (index into classifiers and its labels).
    Classifier {
        /// Index into classifier rules.
        rule: u32,
        /// Index into that rule's labels.
        label: u32,
    },
    /// A projection mapping output was emitted (index into `Projections::outputs`).
    Projection(u32),
}

impl Condition {
    /// Number of nodes in the tree.
    pub fn size(&self) -> usize {
        match self {
            Self::Always | Self::Leaf(_) => 1,
            Self::And(c) | Self::Or(c) => 1 + c.iter().map(Condition::size).sum::<usize>(),
            Self::Not(c) => 1 + c.size(),
        }
    }

    /// Visits every leaf.
    pub fn for_each_leaf(&self, f: &mut impl FnMut(&Leaf)) {
        match self {
            Self::Always => {}
            Self::Leaf(l) => f(l),
            Self::And(c) | Self::Or(c) => c.iter().for_each(|c| c.for_each_leaf(f)),
            Self::Not(c) => c.for_each_leaf(f),
        }
    }
}
