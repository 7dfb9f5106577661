//! Prototype banks (contract §3.2): a rule's example texts reduced to at most
//! `max_prototypes` representative vectors, and the score of a query against them.

use vllm_sr_config::model::global::PrototypeScoring;

use crate::embed::dot;

/// Maps an embedding model's cosine scale onto the scale recipe thresholds were written for.
///
/// Upstream recipes set absolute similarity thresholds (0.72–0.9) for its 768-dim mmBERT
/// embedder, under which related requests score high. Smaller models compress related-but-not-
/// paraphrased pairs much lower (all-MiniLM-L6-v2 puts them around 0.3–0.5), so thresholds are
/// compared against `scale·cosine + offset`. Only absolute thresholds read calibrated scores;
/// margins, rankings and softmax probabilities use raw cosines.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Calibration {
    /// Multiplier of the raw cosine.
    pub scale: f64,
    /// Added after scaling.
    pub offset: f64,
}

impl Calibration {
    /// No change.
    pub const IDENTITY: Self = Self {
        scale: 1.0,
        offset: 0.0,
    };

    /// The calibration for a known embedding model id (identity for unknown models).
    pub fn for_model(id: &str) -> Self {
        let name = id.rsplit('/').next().unwrap_or(id).to_ascii_lowercase();
        match name.as_str() {
            // A line through two anchors: a related intent (MiniLM cosine ~0.4) lands at 0.70,
            // where recipe thresholds for related intents sit, and the soft-match floor (0.5)
            // sits at cosine 0.15, above the ~0.0-0.15 that unrelated text scores. A flatter
            // line (0.5·c + 0.5) let any positive cosine soft-match and made the default
            // privacy KB fire on greetings; steeper ones (≥ 0.9) cut genuine soft matches of
            // short paraphrases (cosine ~0.2) on the agent probes.
            "all-minilm-l6-v2" => Self {
                scale: 0.8,
                offset: 0.38,
            },
            _ => Self::IDENTITY,
        }
    }

    /// The calibrated score.
    pub fn apply(&self, cosine: f64) -> f64 {
        self.scale * cosine + self.offset
    }
}

/// Scoring options of a bank.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct BankOptions {
    /// Cluster and keep medoids (false: every distinct example is a prototype).
    pub clustering: bool,
    /// Cosine similarity that puts two examples in one cluster.
    pub cluster_threshold: f64,
    /// Maximum prototypes kept.
    pub max_prototypes: usize,
    /// Weight of the best similarity; the rest goes to the mean of the top `top_m`.
    pub best_weight: f64,
    /// How many top similarities form the support term.
    pub top_m: usize,
}

impl BankOptions {
    /// Options from the recipe's `prototype_scoring`.
    pub fn from_config(p: &PrototypeScoring) -> Self {
        Self {
            clustering: p.enabled,
            cluster_threshold: p.cluster_similarity_threshold,
            max_prototypes: (p.max_prototypes as usize).max(1),
            best_weight: p.best_weight,
            top_m: (p.top_m as usize).max(1),
        }
    }

    /// Options for a `mean` aggregation: no best term, support over every prototype.
    pub fn mean(self) -> Self {
        Self {
            best_weight: 0.0,
            top_m: usize::MAX,
            ..self
        }
    }
}

/// A query's score against a bank.
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub struct BankScore {
    /// `best_weight·best + (1−best_weight)·support`.
    pub score: f64,
    /// Highest similarity.
    pub best: f64,
    /// Mean of the top `top_m` similarities.
    pub support: f64,
}

/// Representative vectors of one rule.
#[derive(Debug, Clone, PartialEq)]
pub struct PrototypeBank {
    prototypes: Vec<Vec<f32>>,
    opts: BankOptions,
}

impl PrototypeBank {
    /// Builds a bank from example texts and their vectors (same order).
    pub fn build(texts: &[String], vectors: &[Vec<f32>], opts: BankOptions) -> Self {
        // 1. Drop exact duplicate texts.
        let mut items: Vec<(&str, &[f32])> = Vec::new();
        for (t, v) in texts.iter().zip(vectors) {
            if !items.iter().any(|(x, _)| *x == t.as_str()) {
                items.push((t, v));
            }
        }
        if !opts.clustering {
            let prototypes = items
                .iter()
                .take(opts.max_prototypes)
                .map(|(_, v)| v.to_vec())
                .collect();
            return Self { prototypes, opts };
        }
        let n = items.len();
        // Self-similarity is exactly 1 (the vectors are unit length): computed, it would be
        // 1 ± rounding, and that noise would decide between medoids whose mean similarities
        // tie exactly (every two-member cluster) — a routing outcome must not hinge on the
        // last bit of a kernel's arithmetic. `dot` is symmetric, so sim[i][j] == sim[j][i].
        let sim: Vec<Vec<f64>> = (0..n)
            .map(|i| {
                (0..n)
                    .map(|j| {
                        if i == j {
                            1.0
                        } else {
                            dot(items[i].1, items[j].1)
                        }
                    })
                    .collect()
            })
            .collect();
        let mut remaining: Vec<usize> = (0..n).collect();
        // (cluster size, mean similarity of the medoid, text, index of the medoid)
        let mut reps: Vec<(usize, f64, &str, usize)> = Vec::new();
        while !remaining.is_empty() {
            // 2. The seed whose cluster is largest; ties by the smaller text.
            let members_of = |s: usize| -> Vec<usize> {
                remaining
                    .iter()
                    .copied()
                    .filter(|&j| sim[s][j] >= opts.cluster_threshold)
                    .collect()
            };
            let seed = remaining
                .iter()
                .copied()
                .max_by(|&a, &b| {
                    members_of(a)
                        .len()
                        .cmp(&members_of(b).len())
                        .then_with(|| items[b].0.cmp(items[a].0))
                })
                .unwrap_or(remaining[0]);
            let members = members_of(seed);
            // 3. The medoid: highest mean similarity to the cluster; ties by text.
            let mean_sim =
                |i: usize| members.iter().map(|&j| sim[i][j]).sum::<f64>() / members.len() as f64;
            let medoid = members
                .iter()
                .copied()
                .max_by(|&a, &b| {
                    mean_sim(a)
                        .total_cmp(&mean_sim(b))
                        .then_with(|| items[b].0.cmp(items[a].0))
                })
                .unwrap_or(seed);
            reps.push((members.len(), mean_sim(medoid), items[medoid].0, medoid));
            remaining.retain(|j| !members.contains(j));
        }
        // 4. Sort by cluster size, mean similarity, text; keep the first max_prototypes.
        reps.sort_by(|a, b| b.0.cmp(&a.0).then(b.1.total_cmp(&a.1)).then(a.2.cmp(b.2)));
        let prototypes = reps
            .iter()
            .take(opts.max_prototypes)
            .map(|r| items[r.3].1.to_vec())
            .collect();
        Self { prototypes, opts }
    }

    /// Number of prototypes kept.
    pub fn len(&self) -> usize {
        self.prototypes.len()
    }

    /// True when the bank has no prototype.
    pub fn is_empty(&self) -> bool {
        self.prototypes.is_empty()
    }

    /// Scores a query vector.
    pub fn score(&self, query: &[f32]) -> BankScore {
        if self.prototypes.is_empty() {
            return BankScore::default();
        }
        let mut sims: Vec<f64> = self.prototypes.iter().map(|p| dot(p, query)).collect();
        sims.sort_by(|a, b| b.total_cmp(a));
        let best = sims[0];
        let m = self.opts.top_m.min(sims.len());
        let support = sims[..m].iter().sum::<f64>() / m as f64;
        let w = self.opts.best_weight;
        BankScore {
            score: w * best + (1.0 - w) * support,
            best,
            support,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn opts() -> BankOptions {
        BankOptions {
            clustering: true,
            cluster_threshold: 0.9,
            max_prototypes: 8,
            best_weight: 0.75,
            top_m: 2,
        }
    }

    fn unit(x: f32, y: f32) -> Vec<f32> {
        let n = (x * x + y * y).sqrt();
        vec![x / n, y / n]
    }

    #[test]
    fn clusters_near_duplicates_and_scores() {
        let texts: Vec<String> = ["a", "a2", "b", "a"]
            .iter()
            .map(|s| s.to_string())
            .collect();
        let vecs = vec![
            unit(1.0, 0.0),
            unit(1.0, 0.05),
            unit(0.0, 1.0),
            unit(1.0, 0.0),
        ];
        let bank = PrototypeBank::build(&texts, &vecs, opts());
        assert_eq!(
            bank.len(),
            2,
            "a and a2 cluster; the duplicate a is dropped"
        );
        let s = bank.score(&unit(1.0, 0.0));
        // {a, a2}: the mean similarities tie exactly, so the smaller text, a, is the medoid.
        assert!((s.best - 1.0).abs() < 1e-12, "{s:?}");
        assert!((s.score - (0.75 * s.best + 0.25 * s.support)).abs() < 1e-12);
        let mean = PrototypeBank::build(&texts, &vecs, opts().mean()).score(&unit(1.0, 0.0));
        assert!((mean.score - mean.support).abs() < 1e-12);
    }

    /// A two-member cluster's medoid is chosen by text, never by which vector's computed
    /// self-similarity rounds closer to 1: different GEMM kernels round differently, and the
    /// upstream privacy suite once routed a probe differently on that alone.
    #[test]
    fn medoid_ties_ignore_rounding_of_self_similarity() {
        // `short` has a self-similarity just under 1 in f32 arithmetic, `tilted` exactly ~1.
        let short = vec![0.999_999_9_f32, 0.0];
        let tilted = unit(1.0, 0.1);
        let query = [1.0_f32, 0.0];
        for (first, expect_short) in [("m", true), ("z", false)] {
            let texts = vec![first.to_string(), "n".to_string()];
            let bank = PrototypeBank::build(&texts, &[short.clone(), tilted.clone()], opts());
            assert_eq!(bank.len(), 1, "one cluster");
            let best = bank.score(&query).best;
            let want = if expect_short {
                dot(&short, &query)
            } else {
                dot(&tilted, &query)
            };
            assert!((best - want).abs() < 1e-12, "{first}: {best} vs {want}");
        }
    }

    #[test]
    fn minilm_calibration_keeps_unrelated_text_below_the_soft_match_floor() {
        let cal = Calibration::for_model("sentence-transformers/all-MiniLM-L6-v2");
        assert!(cal.apply(0.05) < 0.5, "unrelated text must not soft-match");
        assert!(cal.apply(0.12) < 0.5);
        assert!(
            (cal.apply(0.4) - 0.70).abs() < 1e-9,
            "related intents sit at 0.70"
        );
        assert!(
            cal.apply(0.9) > 0.95,
            "paraphrases clear every recipe threshold"
        );
        assert_eq!(
            Calibration::for_model("some/other-model"),
            Calibration::IDENTITY
        );
    }

    #[test]
    fn caps_prototypes() {
        let texts: Vec<String> = (0..20).map(|i| format!("t{i}")).collect();
        let vecs: Vec<Vec<f32>> = (0..20)
            .map(|i| unit((i as f32 * 0.3).cos(), (i as f32 * 0.3).sin()))
            .collect();
        let bank = PrototypeBank::build(
            &texts,
            &vecs,
            BankOptions {
                cluster_threshold: 0.999,
                ..opts()
            },
        );
        assert_eq!(bank.len(), 8);
    }
}
