//! Classifier heads for user-supplied fine-tuned checkpoints.
//!
//! [`SequenceClassificationModel`] scores a whole text against `id2label` (softmax, or sigmoid
//! per label for `multi_label_classification`). [`TokenClassificationModel`] labels each token
//! and folds BIO tags into entity spans with byte offsets into the original text. Both run on a
//! worker thread; the async handles are [`crate::SequenceClassifier`] and
//! [`crate::TokenClassifier`].

use std::path::Path;
use std::sync::Arc;

use candle_core::{DType, Tensor, D};

use crate::encoder::HeadTransform;
use crate::error::ModelError;
use crate::forward::{Core, LoadOptions};
use crate::layers::{Linear, Precision};
use crate::runtime::InferenceModel;
use crate::spec::{Architecture, ModelSpec, ProblemType};
use crate::tokenize::Tokens;

/// Scores of one text over the model's labels.
#[derive(Debug, Clone, PartialEq)]
pub struct ClassScores {
    /// Label names, index-aligned with `scores` (shared between results).
    pub labels: Arc<[String]>,
    /// Probability per label: softmax (sums to 1) or independent sigmoids when `multi_label`.
    pub scores: Vec<f32>,
    /// True for multi-label (sigmoid) models.
    pub multi_label: bool,
}

impl ClassScores {
    /// The best label and its score (`None` only for a model without labels).
    #[must_use]
    pub fn top(&self) -> Option<(&str, f32)> {
        self.scores
            .iter()
            .enumerate()
            .max_by(|a, b| a.1.total_cmp(b.1))
            .and_then(|(i, s)| self.labels.get(i).map(|l| (l.as_str(), *s)))
    }

    /// Labels whose score is at least `threshold`, best first.
    #[must_use]
    pub fn above(&self, threshold: f32) -> Vec<(&str, f32)> {
        let mut v: Vec<(&str, f32)> = self
            .labels
            .iter()
            .zip(&self.scores)
            .filter(|(_, s)| **s >= threshold)
            .map(|(l, s)| (l.as_str(), *s))
            .collect();
        v.sort_by(|a, b| b.1.total_cmp(&a.1));
        v
    }
}

/// One entity found by a token classifier.
#[derive(Debug, Clone, PartialEq)]
pub struct Entity {
    /// Entity type (the label without its `B-`/`I-` prefix).
    pub label: String,
    /// Byte offset of the first character in the original text.
    pub start: usize,
    /// Byte offset one past the last character.
    pub end: usize,
    /// The covered text, `text[start..end]`.
    pub text: String,
    /// Mean probability of the entity's tokens.
    pub score: f32,
}

fn load_classifier(
    core: &Core,
    vb: &candle_nn::VarBuilder<'static>,
) -> Result<(Linear, Arc<[String]>), ModelError> {
    let spec = &core.spec;
    let labels: Arc<[String]> = spec.labels.clone().into();
    if labels.is_empty() {
        return Err(ModelError::load(
            spec.dir.join("config.json"),
            "a classifier needs id2label in config.json",
        ));
    }
    let classifier = Linear::load(
        &vb.pp("classifier"),
        spec.hidden_size,
        labels.len(),
        Precision::F32,
    )
    .map_err(|e| ModelError::load(&spec.weights, e))?;
    Ok((classifier, labels))
}

/// A loaded sequence classifier (synchronous).
#[derive(Debug, Clone)]
pub struct SequenceClassificationModel {
    core: Core,
    head: HeadTransform,
    classifier: Linear,
    labels: Arc<[String]>,
    multi_label: bool,
    mean_pool: bool,
}

impl SequenceClassificationModel {
    /// Loads a `*ForSequenceClassification` checkpoint from `dir`.
    ///
    /// # Errors
    /// [`ModelError::Load`] when files, labels or head weights are missing.
    pub fn load(id: &str, dir: &Path, options: &LoadOptions) -> Result<Self, ModelError> {
        let spec = ModelSpec::read(dir)?;
        let mean_pool = spec.architecture == Architecture::ModernBert
            && spec
                .config
                .get("classifier_pooling")
                .and_then(serde_json::Value::as_str)
                == Some("mean");
        let multi_label = spec.problem_type == ProblemType::MultiLabel;
        let (core, vb) = Core::load(id, spec, options)?;
        let head = core.encoder.head_transform(&core.spec, &vb, true)?;
        let (classifier, labels) = load_classifier(&core, &vb)?;
        Ok(Self {
            core,
            head,
            classifier,
            labels,
            multi_label,
            mean_pool,
        })
    }

    /// The label names by class index.
    #[must_use]
    pub fn labels(&self) -> &[String] {
        &self.labels
    }

    /// The model id.
    #[must_use]
    pub fn id(&self) -> &str {
        &self.core.id
    }

    /// Classifies `texts`.
    ///
    /// # Errors
    /// [`ModelError::Inference`] if tokenisation or the forward pass fails.
    pub fn classify(&self, texts: &[&str]) -> Result<Vec<ClassScores>, ModelError> {
        if texts.is_empty() {
            return Ok(Vec::new());
        }
        self.core.run(texts, |_, batch, states| {
            let pooled = if self.mean_pool {
                let mask =
                    Tensor::from_slice(&batch.mask, (batch.rows, batch.seq), states.device())?
                        .to_dtype(DType::F32)?;
                let summed = states.broadcast_mul(&mask.unsqueeze(D::Minus1)?)?.sum(1)?;
                summed.broadcast_div(&mask.sum_keepdim(1)?.clamp(1.0, f32::MAX)?)?
            } else {
                states.narrow(1, 0, 1)?.squeeze(1)?
            };
            let x = self.core.encoder.apply_head(&self.head, &pooled, states)?;
            let logits = self.classifier.forward(&x)?;
            let probs = if self.multi_label {
                candle_nn::ops::sigmoid(&logits)?
            } else {
                candle_nn::ops::softmax_last_dim(&logits)?
            };
            Ok(probs
                .to_vec2::<f32>()?
                .into_iter()
                .map(|scores| ClassScores {
                    labels: self.labels.clone(),
                    scores,
                    multi_label: self.multi_label,
                })
                .collect())
        })
    }
}

/// A loaded token classifier (synchronous).
#[derive(Debug, Clone)]
pub struct TokenClassificationModel {
    core: Core,
    head: HeadTransform,
    classifier: Linear,
    labels: Arc<[String]>,
}

impl TokenClassificationModel {
    /// Loads a `*ForTokenClassification` checkpoint from `dir`.
    ///
    /// # Errors
    /// [`ModelError::Load`] when files, labels or head weights are missing.
    pub fn load(id: &str, dir: &Path, options: &LoadOptions) -> Result<Self, ModelError> {
        let spec = ModelSpec::read(dir)?;
        let (core, vb) = Core::load(id, spec, options)?;
        let head = core.encoder.head_transform(&core.spec, &vb, false)?;
        let (classifier, labels) = load_classifier(&core, &vb)?;
        Ok(Self {
            core,
            head,
            classifier,
            labels,
        })
    }

    /// The tag names by class index (`O`, `B-PER`, ...).
    #[must_use]
    pub fn labels(&self) -> &[String] {
        &self.labels
    }

    /// The model id.
    #[must_use]
    pub fn id(&self) -> &str {
        &self.core.id
    }

    /// Finds entities in each text.
    ///
    /// # Errors
    /// [`ModelError::Inference`] if tokenisation or the forward pass fails.
    pub fn extract(&self, texts: &[&str]) -> Result<Vec<Vec<Entity>>, ModelError> {
        if texts.is_empty() {
            return Ok(Vec::new());
        }
        let result = self.core.run(texts, |members, _batch, states| {
            let x = self.core.encoder.apply_head(&self.head, states, states)?;
            let probs = candle_nn::ops::softmax_last_dim(&self.classifier.forward(&x)?)?;
            let probs = probs.to_vec3::<f32>()?;
            Ok(members
                .iter()
                .zip(probs)
                .map(|(tokens, rows)| tag_tokens(tokens, &rows))
                .collect::<Vec<_>>())
        })?;
        Ok(result
            .into_iter()
            .zip(texts)
            .map(|(tags, text)| decode_bio(text, &tags, &self.labels))
            .collect())
    }
}

/// Per real token: (label index, probability, byte span, is-continuation-of-word).
type Tag = (usize, f32, (usize, usize), bool);

fn tag_tokens(tokens: &Tokens, rows: &[Vec<f32>]) -> Vec<Tag> {
    let mut out = Vec::with_capacity(tokens.ids.len());
    let mut prev_word = None;
    for (i, probs) in rows.iter().enumerate().take(tokens.ids.len()) {
        if tokens.special.get(i).copied().unwrap_or(true) {
            prev_word = None;
            continue;
        }
        let word = tokens.words.get(i).copied().flatten();
        let continuation = word.is_some() && word == prev_word;
        prev_word = word;
        let (best, p) = probs
            .iter()
            .enumerate()
            .max_by(|a, b| a.1.total_cmp(b.1))
            .map_or((0, 0.0), |(j, p)| (j, *p));
        let span = tokens.offsets.get(i).copied().unwrap_or((0, 0));
        out.push((best, p, span, continuation));
    }
    out
}

/// Folds BIO (or plain IO) tags into entities. Word-piece continuations extend the current
/// entity; an `I-X` after something other than `X` starts a new entity (HF "simple" strategy).
pub(crate) fn decode_bio(text: &str, tags: &[Tag], labels: &[String]) -> Vec<Entity> {
    struct Open {
        label: String,
        start: usize,
        end: usize,
        scores: Vec<f32>,
    }
    fn close(text: &str, open: Option<Open>, out: &mut Vec<Entity>) {
        if let Some(o) = open {
            #[expect(clippy::cast_precision_loss, reason = "entity token counts are small")]
            let score = o.scores.iter().sum::<f32>() / o.scores.len().max(1) as f32;
            out.push(Entity {
                text: text.get(o.start..o.end).unwrap_or_default().to_owned(),
                label: o.label,
                start: o.start,
                end: o.end,
                score,
            });
        }
    }
    let mut out = Vec::new();
    let mut open: Option<Open> = None;
    for &(idx, p, (start, end), continuation) in tags {
        let tag = labels.get(idx).map_or("O", String::as_str);
        if continuation {
            if let Some(o) = open.as_mut() {
                o.end = o.end.max(end);
                o.scores.push(p);
            }
            continue;
        }
        let (prefix, kind) = match tag.split_once('-') {
            Some((pre @ ("B" | "I" | "S" | "E" | "L" | "U"), kind)) => (pre, kind),
            _ if tag == "O" => ("O", ""),
            _ => ("I", tag),
        };
        match prefix {
            "O" => close(text, open.take(), &mut out),
            "I" | "E" | "L" if open.as_ref().is_some_and(|o| o.label == kind) => {
                if let Some(o) = open.as_mut() {
                    o.end = end;
                    o.scores.push(p);
                }
            }
            _ => {
                close(text, open.take(), &mut out);
                open = Some(Open {
                    label: kind.to_owned(),
                    start,
                    end,
                    scores: vec![p],
                });
            }
        }
    }
    close(text, open, &mut out);
    out
}

impl InferenceModel for SequenceClassificationModel {
    type Output = ClassScores;
    fn model_id(&self) -> &str {
        self.id()
    }
    fn infer(&mut self, texts: &[&str]) -> Result<Vec<ClassScores>, ModelError> {
        self.classify(texts)
    }
}

impl InferenceModel for TokenClassificationModel {
    type Output = Arc<[Entity]>;
    fn model_id(&self) -> &str {
        self.id()
    }
    fn infer(&mut self, texts: &[&str]) -> Result<Vec<Arc<[Entity]>>, ModelError> {
        Ok(self.extract(texts)?.into_iter().map(Into::into).collect())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn labels() -> Vec<String> {
        ["O", "B-PER", "I-PER", "B-LOC", "I-LOC"]
            .iter()
            .map(|s| (*s).to_owned())
            .collect()
    }

    #[test]
    fn bio_spans_use_original_offsets() {
        let text = "Ada Lovelace visited New York";
        // Ada(B-PER) Love(I-PER) ##lace(cont) visited(O) New(B-LOC) York(I-LOC)
        let tags = vec![
            (1, 0.9, (0, 3), false),
            (2, 0.8, (4, 8), false),
            (0, 0.5, (8, 12), true),
            (0, 0.99, (13, 20), false),
            (3, 0.7, (21, 24), false),
            (4, 0.6, (25, 29), false),
        ];
        let e = decode_bio(text, &tags, &labels());
        assert_eq!(e.len(), 2);
        assert_eq!(
            (e[0].label.as_str(), e[0].text.as_str()),
            ("PER", "Ada Lovelace")
        );
        assert_eq!((e[0].start, e[0].end), (0, 12));
        assert_eq!(
            (e[1].label.as_str(), e[1].text.as_str()),
            ("LOC", "New York")
        );
        assert!((e[1].score - 0.65).abs() < 1e-6);
    }

    #[test]
    fn stray_inside_tag_starts_entity_and_type_change_splits() {
        let text = "Paris Berlin";
        let tags = vec![(4, 0.9, (0, 5), false), (2, 0.9, (6, 12), false)];
        let e = decode_bio(text, &tags, &labels());
        assert_eq!(e.len(), 2);
        assert_eq!(e[0].label, "LOC");
        assert_eq!(e[1].label, "PER");
        assert_eq!(e[1].text, "Berlin");
    }

    #[test]
    fn class_scores_top_and_threshold() {
        let s = ClassScores {
            labels: vec!["a".to_owned(), "b".to_owned(), "c".to_owned()].into(),
            scores: vec![0.2, 0.7, 0.1],
            multi_label: false,
        };
        assert_eq!(s.top(), Some(("b", 0.7)));
        assert_eq!(s.above(0.15), vec![("b", 0.7), ("a", 0.2)]);
    }
}
