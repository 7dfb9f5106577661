//! Test support: tiny randomly initialised checkpoints written by the test itself (BERT,
//! ModernBERT, with and without classification heads), a tiny WordPiece tokenizer, and the
//! skip/require policy for tests that need the real default model.
#![allow(
    dead_code,
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::print_stderr,
    reason = "test support: fail loudly and print skip notes"
)]

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use candle_core::{DType, Device, Tensor};
use candle_nn::{VarBuilder, VarMap};
use serde_json::{json, Value};

pub const HIDDEN: usize = 32;

/// Words with their own vocab entry; any other lowercase word falls back to letter pieces.
const WORDS: &[&str] = &[
    "the",
    "a",
    "cat",
    "dog",
    "sat",
    "on",
    "mat",
    "ada",
    "love",
    "##lace",
    "visited",
    "new",
    "york",
    "math",
    "law",
    "code",
    "what",
    "is",
    "of",
    "derivative",
    "x",
    "?",
    ".",
    ",",
    "!",
];

pub fn vocab() -> Vec<String> {
    let mut v: Vec<String> = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]
        .iter()
        .map(|s| (*s).to_owned())
        .collect();
    v.extend(WORDS.iter().map(|s| (*s).to_owned()));
    for c in 'a'..='z' {
        v.push(c.to_string());
        v.push(format!("##{c}"));
    }
    for c in '0'..='9' {
        v.push(c.to_string());
        v.push(format!("##{c}"));
    }
    v.dedup();
    v
}

/// A BERT-style WordPiece `tokenizer.json` (shipped with a Fixed(8) padding that the loader
/// must override, like the real all-MiniLM file).
pub fn tokenizer_json() -> Value {
    let vocab: serde_json::Map<String, Value> = vocab()
        .into_iter()
        .enumerate()
        .map(|(i, t)| (t, json!(i)))
        .collect();
    let special = |id: usize, content: &str| {
        json!({"id": id, "content": content, "single_word": false, "lstrip": false,
               "rstrip": false, "normalized": false, "special": true})
    };
    json!({
        "version": "1.0",
        "truncation": {"direction": "Right", "max_length": 8, "strategy": "LongestFirst", "stride": 0},
        "padding": {"strategy": {"Fixed": 8}, "direction": "Right", "pad_to_multiple_of": null,
                    "pad_id": 0, "pad_type_id": 0, "pad_token": "[PAD]"},
        "added_tokens": [special(0, "[PAD]"), special(1, "[UNK]"), special(2, "[CLS]"),
                         special(3, "[SEP]"), special(4, "[MASK]")],
        "normalizer": {"type": "BertNormalizer", "clean_text": true, "handle_chinese_chars": true,
                       "strip_accents": null, "lowercase": true},
        "pre_tokenizer": {"type": "BertPreTokenizer"},
        "post_processor": {
            "type": "TemplateProcessing",
            "single": [{"SpecialToken": {"id": "[CLS]", "type_id": 0}},
                       {"Sequence": {"id": "A", "type_id": 0}},
                       {"SpecialToken": {"id": "[SEP]", "type_id": 0}}],
            "pair": [{"SpecialToken": {"id": "[CLS]", "type_id": 0}},
                     {"Sequence": {"id": "A", "type_id": 0}},
                     {"SpecialToken": {"id": "[SEP]", "type_id": 0}},
                     {"Sequence": {"id": "B", "type_id": 1}},
                     {"SpecialToken": {"id": "[SEP]", "type_id": 1}}],
            "special_tokens": {
                "[CLS]": {"id": "[CLS]", "ids": [2], "tokens": ["[CLS]"]},
                "[SEP]": {"id": "[SEP]", "ids": [3], "tokens": ["[SEP]"]}
            }
        },
        "decoder": {"type": "WordPiece", "prefix": "##", "cleanup": true},
        "model": {"type": "WordPiece", "unk_token": "[UNK]", "continuing_subword_prefix": "##",
                  "max_input_chars_per_word": 100, "vocab": vocab}
    })
}

fn write_json(path: &Path, v: &Value) {
    std::fs::write(path, serde_json::to_string_pretty(v).unwrap()).unwrap();
}

fn write_common(dir: &Path, config: &Value) {
    std::fs::create_dir_all(dir).unwrap();
    write_json(&dir.join("config.json"), config);
    write_json(&dir.join("tokenizer.json"), &tokenizer_json());
}

/// Sentence-transformers files: pooling mode and a Normalize module.
pub fn write_sentence_transformers(dir: &Path, cls: bool, max_seq_length: usize) {
    std::fs::create_dir_all(dir.join("1_Pooling")).unwrap();
    write_json(
        &dir.join("modules.json"),
        &json!([
            {"idx": 0, "name": "0", "path": "", "type": "sentence_transformers.models.Transformer"},
            {"idx": 1, "name": "1", "path": "1_Pooling", "type": "sentence_transformers.models.Pooling"},
            {"idx": 2, "name": "2", "path": "2_Normalize", "type": "sentence_transformers.models.Normalize"}
        ]),
    );
    write_json(
        &dir.join("1_Pooling").join("config.json"),
        &json!({"word_embedding_dimension": HIDDEN, "pooling_mode_cls_token": cls,
                "pooling_mode_mean_tokens": !cls}),
    );
    write_json(
        &dir.join("sentence_bert_config.json"),
        &json!({"max_seq_length": max_seq_length, "do_lower_case": false}),
    );
}

pub fn bert_config(labels: &[&str], multi_label: bool) -> Value {
    let mut cfg = json!({
        "model_type": "bert", "vocab_size": vocab().len(), "hidden_size": HIDDEN,
        "num_hidden_layers": 2, "num_attention_heads": 4, "intermediate_size": 64,
        "hidden_act": "gelu", "hidden_dropout_prob": 0.0, "attention_probs_dropout_prob": 0.0,
        "max_position_embeddings": 64, "type_vocab_size": 2, "initializer_range": 0.02,
        "layer_norm_eps": 1e-12, "pad_token_id": 0
    });
    if !labels.is_empty() {
        let id2label: serde_json::Map<String, Value> = labels
            .iter()
            .enumerate()
            .map(|(i, l)| (i.to_string(), json!(l)))
            .collect();
        cfg["id2label"] = Value::Object(id2label);
        if multi_label {
            cfg["problem_type"] = json!("multi_label_classification");
        }
    }
    cfg
}

/// Fills every tensor of `varmap` with seeded pseudo-random values, so layer norms and
/// biases are not the trivial ones/zeros.
fn randomize(varmap: &VarMap, seed: u64) {
    let mut state = seed.wrapping_mul(6_364_136_223_846_793_005).wrapping_add(1);
    let data = varmap.data().lock().unwrap();
    let mut names: Vec<&String> = data.keys().collect();
    names.sort();
    for name in names {
        let var = &data[name];
        let n = var.elem_count();
        let scale = if name.contains("norm") || name.contains("LayerNorm") {
            0.2
        } else {
            0.5
        };
        let offset =
            if name.ends_with("weight") && (name.contains("norm") || name.contains("LayerNorm")) {
                1.0
            } else {
                0.0
            };
        let vals: Vec<f32> = (0..n)
            .map(|_| {
                state = state
                    .wrapping_mul(6_364_136_223_846_793_005)
                    .wrapping_add(1_442_695_040_888_963_407);
                let u = ((state >> 40) as f32) / ((1u64 << 24) as f32) - 0.5;
                offset + u * 2.0 * scale
            })
            .collect();
        let t = Tensor::from_vec(vals, var.shape(), &Device::Cpu).unwrap();
        var.set(&t).unwrap();
    }
}

/// Writes a tiny BERT. With labels, the checkpoint is `BertFor*Classification` style
/// (`bert.` prefix, pooler, `classifier`); without, a bare sentence-transformers encoder.
pub fn write_tiny_bert(dir: &Path, labels: &[&str], multi_label: bool) -> PathBuf {
    let cfg_json = bert_config(labels, multi_label);
    write_common(dir, &cfg_json);
    let cfg: candle_transformers::models::bert::Config = serde_json::from_value(cfg_json).unwrap();
    let varmap = VarMap::new();
    let vb = VarBuilder::from_varmap(&varmap, DType::F32, &Device::Cpu);
    if labels.is_empty() {
        candle_transformers::models::bert::BertModel::load(vb, &cfg).unwrap();
    } else {
        candle_transformers::models::bert::BertModel::load(vb.pp("bert"), &cfg).unwrap();
        candle_nn::linear(HIDDEN, HIDDEN, vb.pp("bert.pooler.dense")).unwrap();
        candle_nn::linear(HIDDEN, labels.len(), vb.pp("classifier")).unwrap();
    }
    randomize(&varmap, 7);
    varmap.save(dir.join("model.safetensors")).unwrap();
    dir.to_path_buf()
}

pub fn modernbert_config(labels: &[&str], pooling: &str) -> Value {
    let mut cfg = json!({
        "model_type": "modernbert", "vocab_size": vocab().len(), "hidden_size": HIDDEN,
        "num_hidden_layers": 3, "num_attention_heads": 4, "intermediate_size": 48,
        "max_position_embeddings": 64, "layer_norm_eps": 1e-5, "norm_eps": 1e-5,
        "pad_token_id": 0, "global_attn_every_n_layers": 2, "global_rope_theta": 160000.0,
        "local_attention": 8, "local_rope_theta": 10000.0, "classifier_pooling": pooling
    });
    let id2label: serde_json::Map<String, Value> = labels
        .iter()
        .enumerate()
        .map(|(i, l)| (i.to_string(), json!(l)))
        .collect();
    let label2id: serde_json::Map<String, Value> = labels
        .iter()
        .enumerate()
        .map(|(i, l)| ((*l).to_owned(), json!(i.to_string())))
        .collect();
    cfg["id2label"] = Value::Object(id2label);
    cfg["label2id"] = Value::Object(label2id);
    cfg
}

/// Writes a tiny ModernBERT with `head` + `classifier` (as `ModernBertFor*Classification`).
/// With `bare`, the `model.` prefix is stripped and the head dropped, as in embedding
/// checkpoints saved from `ModernBertModel`.
pub fn write_tiny_modernbert(dir: &Path, labels: &[&str], pooling: &str, bare: bool) -> PathBuf {
    let cfg_json = modernbert_config(labels, pooling);
    write_common(dir, &cfg_json);
    let cfg: candle_transformers::models::modernbert::Config =
        serde_json::from_value(cfg_json).unwrap();
    let varmap = VarMap::new();
    let vb = VarBuilder::from_varmap(&varmap, DType::F32, &Device::Cpu);
    candle_transformers::models::modernbert::ModernBertForSequenceClassification::load(vb, &cfg)
        .unwrap();
    randomize(&varmap, 11);
    let path = dir.join("model.safetensors");
    if bare {
        let data = varmap.data().lock().unwrap();
        let renamed: HashMap<String, Tensor> = data
            .iter()
            .filter_map(|(k, v)| {
                k.strip_prefix("model.")
                    .map(|s| (s.to_owned(), v.as_tensor().clone()))
            })
            .collect();
        candle_core::safetensors::save(&renamed, &path).unwrap();
    } else {
        varmap.save(&path).unwrap();
    }
    dir.to_path_buf()
}

/// Where the real default model is, or `None` (after printing why) when the test should be
/// skipped. Panics when `VLLM_SR_REQUIRE_MODELS` is set and the model is missing.
pub fn default_model_dir() -> Option<PathBuf> {
    let registry = vllm_sr_models::ModelRegistry::from_env();
    match registry.resolve(vllm_sr_models::DEFAULT_EMBEDDING_MODEL) {
        Ok(m) => Some(m.dir),
        Err(e) => {
            let required =
                std::env::var("VLLM_SR_REQUIRE_MODELS").is_ok_and(|v| !v.is_empty() && v != "0");
            if required {
                panic!("VLLM_SR_REQUIRE_MODELS is set but the default model is missing: {e}");
            }
            eprintln!("SKIPPED (default model not installed; run scripts/fetch-models.sh): {e}");
            None
        }
    }
}

pub fn cosine(a: &[f32], b: &[f32]) -> f32 {
    let dot: f32 = a.iter().zip(b).map(|(x, y)| x * y).sum();
    let na: f32 = a.iter().map(|x| x * x).sum::<f32>().sqrt();
    let nb: f32 = b.iter().map(|x| x * x).sum::<f32>().sqrt();
    dot / (na * nb)
}
