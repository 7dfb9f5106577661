//! Validated projections: partitions, weighted-sum scores (topologically ordered) and band
//! mappings whose outputs decision leaves reference by id (contract §4–§5).

use super::signals::{ComplexityLevel, SignalRef};

/// All projections of one recipe.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Projections {
    /// Exclusive groups.
    pub partitions: Vec<Partition>,
    /// Weighted sums, in declaration order.
    pub scores: Vec<Score>,
    /// Indices into `scores` in evaluation (dependency) order.
    pub score_order: Vec<u32>,
    /// Band mappings.
    pub mappings: Vec<Mapping>,
    /// Every mapping output, flattened; projection leaves index this.
    pub outputs: Vec<OutputRef>,
}

/// Location of one mapping output.
#[derive(Debug, Clone, PartialEq)]
pub struct OutputRef {
    /// Output name (unique within the recipe).
    pub name: String,
    /// Index into `mappings`.
    pub mapping: u32,
    /// Index into that mapping's outputs.
    pub output: u32,
}

/// A partition over domain or embedding signals.
#[derive(Debug, Clone, PartialEq)]
pub struct Partition {
    /// Name.
    pub name: String,
    /// `Some(temperature)` for `softmax_exclusive`, `None` for `exclusive`.
    pub softmax_temperature: Option<f64>,
    /// Members: all domains or all embeddings.
    pub members: Vec<SignalRef>,
    /// The default member.
    pub default: SignalRef,
}

/// A weighted-sum score.
#[derive(Debug, Clone, PartialEq)]
pub struct Score {
    /// Name.
    pub name: String,
    /// Inputs.
    pub inputs: Vec<ScoreInput>,
}

/// What a score input reads.
#[derive(Debug, Clone, PartialEq)]
pub enum InputSource {
    /// A signal rule.
    Signal(SignalRef),
    /// A complexity rule at one level.
    Complexity {
        /// Index into complexity rules.
        rule: u32,
        /// Level.
        level: ComplexityLevel,
    },
    /// An authz role (index into `Signals::roles`).
    Role(u32),
    /// A KB metric value (`kb_metric:<kb>:<metric>`).
    KbMetric {
        /// Index into `global.model_catalog.kbs`.
        kb: u32,
        /// Metric name (`best_score`, `best_matched_score` or a declared metric).
        metric: String,
    },
    /// Another score's value.
    Score(u32),
    /// A mapping output's confidence (index into `Projections::outputs`).
    Output(u32),
}

/// How an input's value is taken.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ValueSource {
    /// `match` when matched, else `miss`.
    Binary,
    /// The signal confidence when matched (1.0 when absent), else 0.
    Confidence,
    /// The raw signal value, or 0.
    Raw,
    /// A score or KB metric value.
    Score,
}

/// One input of a weighted sum.
#[derive(Debug, Clone, PartialEq)]
pub struct ScoreInput {
    /// What is read.
    pub source: InputSource,
    /// Weight (may be negative).
    pub weight: f64,
    /// How the value is taken.
    pub value: ValueSource,
    /// Binary value when matched (0 in YAML reads as 1).
    pub match_value: f64,
    /// Binary value when unmatched.
    pub miss_value: f64,
}

/// A band mapping over a score.
#[derive(Debug, Clone, PartialEq)]
pub struct Mapping {
    /// Name.
    pub name: String,
    /// Index into `scores`.
    pub source: u32,
    /// True for `multi_emit`, false for `threshold_bands` (first band wins).
    pub multi_emit: bool,
    /// Sigmoid slope for output confidence (default 12).
    pub slope: f64,
    /// Bands.
    pub outputs: Vec<Band>,
}

/// One band.
#[derive(Debug, Clone, PartialEq)]
#[expect(missing_docs, reason = "bounds named by the contract")]
pub struct Band {
    pub name: String,
    pub lt: Option<f64>,
    pub lte: Option<f64>,
    pub gt: Option<f64>,
    pub gte: Option<f64>,
}
