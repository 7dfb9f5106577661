//! Reading a Hugging Face style model directory.
//!
//! Owns everything learned from the JSON files next to the weights: the architecture
//! (`config.json` `model_type`), the sentence-transformers pipeline (`modules.json`, the pooling
//! module's `config.json`, `sentence_bert_config.json`), labels (`id2label`, `problem_type`) and
//! which weight file to load. Nothing here touches candle tensors.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::Deserialize;

use crate::error::ModelError;

/// Encoder architecture, from `config.json`'s `model_type`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Architecture {
    /// BERT and its look-alikes with the same weights layout (MiniLM, BGE, E5, GTE-base style).
    Bert,
    /// ModernBERT (rotary, GeGLU, alternating local/global attention), e.g. mmBERT.
    ModernBert,
}

/// How token states become one sentence vector.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Pooling {
    /// Average of the non-padding token states.
    Mean,
    /// The first (`[CLS]`) token state.
    Cls,
}

/// Whether a classifier's scores are exclusive classes or independent labels.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ProblemType {
    /// Softmax over labels (`single_label_classification`, the default).
    SingleLabel,
    /// Independent sigmoid per label (`multi_label_classification`).
    MultiLabel,
}

/// What the model directory says about itself.
#[derive(Debug, Clone)]
pub struct ModelSpec {
    /// The directory.
    pub dir: PathBuf,
    /// Encoder family.
    pub architecture: Architecture,
    /// The raw `config.json`, for the architecture-specific parsers.
    pub config: serde_json::Value,
    /// Hidden size of the encoder.
    pub hidden_size: usize,
    /// Sentence pooling (sentence-transformers config, else mean).
    pub pooling: Pooling,
    /// Whether sentence vectors are L2-normalised (a `Normalize` module, or no modules.json).
    pub normalize: bool,
    /// Longest input in tokens including special tokens (sentence-transformers config, capped
    /// by the position table).
    pub max_seq_length: usize,
    /// Size of the position table (`max_position_embeddings`): the hard length limit.
    pub max_positions: usize,
    /// Labels by class index, for classifier heads; empty for plain encoders.
    pub labels: Vec<String>,
    /// How to turn logits into scores.
    pub problem_type: ProblemType,
    /// Weights file (`model.safetensors` preferred over `pytorch_model.bin`).
    pub weights: PathBuf,
    /// `tokenizer.json`.
    pub tokenizer: PathBuf,
}

#[derive(Deserialize)]
struct StModule {
    #[serde(default)]
    path: String,
    #[serde(rename = "type", default)]
    kind: String,
}

#[derive(Deserialize, Default)]
#[expect(
    clippy::struct_excessive_bools,
    reason = "mirrors sentence-transformers' pooling config"
)]
struct PoolingConfig {
    #[serde(default)]
    pooling_mode_cls_token: bool,
    #[serde(default)]
    pooling_mode_mean_tokens: bool,
    #[serde(default)]
    pooling_mode_max_tokens: bool,
    #[serde(default)]
    pooling_mode_lasttoken: bool,
}

#[derive(Deserialize)]
struct SentenceBertConfig {
    max_seq_length: Option<usize>,
}

fn read_json<T: serde::de::DeserializeOwned>(path: &Path) -> Result<T, ModelError> {
    let text = std::fs::read_to_string(path).map_err(|e| ModelError::load(path, e))?;
    serde_json::from_str(&text).map_err(|e| ModelError::load(path, e))
}

impl ModelSpec {
    /// Reads the directory's JSON files and finds the weights and tokenizer.
    ///
    /// # Errors
    /// [`ModelError::Load`] naming the missing or malformed file.
    pub fn read(dir: &Path) -> Result<Self, ModelError> {
        if !dir.is_dir() {
            return Err(ModelError::load(dir, "not a directory"));
        }
        let config: serde_json::Value = read_json(&dir.join("config.json"))?;
        let model_type = config
            .get("model_type")
            .and_then(serde_json::Value::as_str)
            .unwrap_or("bert");
        let architecture = match model_type {
            "bert" => Architecture::Bert,
            "modernbert" => Architecture::ModernBert,
            other => {
                return Err(ModelError::load(
                    dir.join("config.json"),
                    format!("unsupported model_type {other:?} (supported: bert, modernbert)"),
                ))
            }
        };
        let hidden_size = config
            .get("hidden_size")
            .and_then(serde_json::Value::as_u64)
            .and_then(|v| usize::try_from(v).ok())
            .ok_or_else(|| ModelError::load(dir.join("config.json"), "missing hidden_size"))?;
        let max_positions = config
            .get("max_position_embeddings")
            .and_then(serde_json::Value::as_u64)
            .and_then(|v| usize::try_from(v).ok())
            .unwrap_or(512);

        let (pooling, normalize) = read_sentence_pipeline(dir)?;
        let st_max = if dir.join("sentence_bert_config.json").is_file() {
            read_json::<SentenceBertConfig>(&dir.join("sentence_bert_config.json"))?.max_seq_length
        } else {
            None
        };
        let max_seq_length = st_max.unwrap_or(max_positions).min(max_positions).max(2);

        let (labels, problem_type) = read_labels(&config);
        let weights = ["model.safetensors", "pytorch_model.bin"]
            .iter()
            .map(|name| dir.join(name))
            .find(|p| p.is_file())
            .ok_or_else(|| {
                ModelError::load(
                    dir,
                    "no model.safetensors or pytorch_model.bin in the directory",
                )
            })?;
        let tokenizer = dir.join("tokenizer.json");
        if !tokenizer.is_file() {
            return Err(ModelError::load(&tokenizer, "tokenizer.json is missing"));
        }
        Ok(Self {
            dir: dir.to_path_buf(),
            architecture,
            config,
            hidden_size,
            pooling,
            normalize,
            max_seq_length,
            max_positions,
            labels,
            problem_type,
            weights,
            tokenizer,
        })
    }
}

/// Pooling and normalisation from `modules.json`; mean + normalise when it is absent.
fn read_sentence_pipeline(dir: &Path) -> Result<(Pooling, bool), ModelError> {
    let modules_path = dir.join("modules.json");
    if !modules_path.is_file() {
        return Ok((Pooling::Mean, true));
    }
    let modules: Vec<StModule> = read_json(&modules_path)?;
    let normalize = modules.iter().any(|m| m.kind.ends_with(".Normalize"));
    let pooling = match modules.iter().find(|m| m.kind.ends_with(".Pooling")) {
        None => Pooling::Mean,
        Some(module) => {
            let path = dir.join(&module.path).join("config.json");
            let cfg: PoolingConfig = if path.is_file() {
                read_json(&path)?
            } else {
                PoolingConfig::default()
            };
            if cfg.pooling_mode_max_tokens || cfg.pooling_mode_lasttoken {
                return Err(ModelError::load(
                    path,
                    "only mean and CLS pooling are supported",
                ));
            }
            if cfg.pooling_mode_cls_token && !cfg.pooling_mode_mean_tokens {
                Pooling::Cls
            } else {
                Pooling::Mean
            }
        }
    };
    Ok((pooling, normalize))
}

/// Labels ordered by class id, and the scoring rule.
fn read_labels(config: &serde_json::Value) -> (Vec<String>, ProblemType) {
    let mut by_id = BTreeMap::new();
    if let Some(map) = config
        .get("id2label")
        .and_then(serde_json::Value::as_object)
    {
        for (id, label) in map {
            if let (Ok(id), Some(label)) = (id.parse::<usize>(), label.as_str()) {
                by_id.insert(id, label.to_owned());
            }
        }
    }
    // Fill gaps with LABEL_N so indices stay aligned with the logits.
    let len = by_id.keys().next_back().map_or(0, |max| max + 1);
    let labels = (0..len)
        .map(|i| by_id.remove(&i).unwrap_or_else(|| format!("LABEL_{i}")))
        .collect();
    let problem_type = match config
        .get("problem_type")
        .and_then(serde_json::Value::as_str)
    {
        Some("multi_label_classification") => ProblemType::MultiLabel,
        _ => ProblemType::SingleLabel,
    };
    (labels, problem_type)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn labels_are_ordered_and_gaps_filled() {
        let cfg = serde_json::json!({
            "id2label": {"2": "c", "0": "a"},
            "problem_type": "multi_label_classification"
        });
        let (labels, pt) = read_labels(&cfg);
        assert_eq!(labels, vec!["a", "LABEL_1", "c"]);
        assert_eq!(pt, ProblemType::MultiLabel);
        let (labels, pt) = read_labels(&serde_json::json!({}));
        assert!(labels.is_empty());
        assert_eq!(pt, ProblemType::SingleLabel);
    }
}
