//! Model correctness on tiny random checkpoints the tests write themselves: our BERT against
//! candle-transformers' BERT, pooling/padding/truncation rules, Matryoshka, q8, ModernBERT,
//! sequence and token classification heads.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::print_stderr,
    clippy::disallowed_methods,
    reason = "tests: fail loudly, print skip notes, and join every task they spawn"
)]

mod common;

use candle_core::{DType, Device, Tensor, D};
use candle_nn::VarBuilder;
use common::{cosine, write_sentence_transformers, write_tiny_bert, write_tiny_modernbert, HIDDEN};
use vllm_sr_models::{
    CpuKernel, EmbeddingModel, LoadOptions, Precision, SequenceClassificationModel,
    TokenClassificationModel,
};

const TEXTS: &[&str] = &[
    "the cat sat on the mat",
    "what is the derivative of x?",
    "ada lovelace visited new york",
    "zebra",
    "quickly jumping foxes dodge lazy hounds near 42 rivers",
];

fn opts() -> LoadOptions {
    LoadOptions::default()
}

/// Every CPU kernel this build has (OpenBLAS only with the `openblas` feature).
fn kernels() -> Vec<CpuKernel> {
    [CpuKernel::Candle, CpuKernel::Packed, CpuKernel::OpenBlas]
        .into_iter()
        .filter(|k| k.available())
        .collect()
}

/// Reference: candle-transformers' BERT + masked mean pooling + L2, one text at a time.
fn reference_embeddings(dir: &std::path::Path, texts: &[&str]) -> Vec<Vec<f32>> {
    let cfg: candle_transformers::models::bert::Config =
        serde_json::from_str(&std::fs::read_to_string(dir.join("config.json")).unwrap()).unwrap();
    let tensors =
        candle_core::safetensors::load(dir.join("model.safetensors"), &Device::Cpu).unwrap();
    let vb = VarBuilder::from_tensors(tensors, DType::F32, &Device::Cpu);
    let model = candle_transformers::models::bert::BertModel::load(vb, &cfg).unwrap();
    let tok = tokenizers::Tokenizer::from_file(dir.join("tokenizer.json")).unwrap();
    texts
        .iter()
        .map(|t| {
            let mut tok = tok.clone();
            tok.with_padding(None);
            tok.with_truncation(None).unwrap();
            let enc = tok.encode(*t, true).unwrap();
            let ids = Tensor::new(enc.get_ids(), &Device::Cpu)
                .unwrap()
                .unsqueeze(0)
                .unwrap();
            let out = model
                .forward(&ids, &ids.zeros_like().unwrap(), None)
                .unwrap();
            let mean = out.mean(1).unwrap();
            let norm = mean
                .sqr()
                .unwrap()
                .sum_keepdim(D::Minus1)
                .unwrap()
                .sqrt()
                .unwrap();
            mean.broadcast_div(&norm)
                .unwrap()
                .squeeze(0)
                .unwrap()
                .to_vec1()
                .unwrap()
        })
        .collect()
}

#[test]
fn bert_matches_candle_transformers_reference() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = write_tiny_bert(tmp.path(), &[], false);
    write_sentence_transformers(&dir, false, 64);
    let reference = reference_embeddings(&dir, TEXTS);
    for kernel in kernels() {
        let options = LoadOptions {
            cpu_kernel: kernel,
            ..opts()
        };
        let model = EmbeddingModel::load("tiny", &dir, &options).unwrap();
        assert_eq!(model.dims(), HIDDEN);
        let ours = model.embed(TEXTS).unwrap();
        for ((ours, reference), text) in ours.iter().zip(&reference).zip(TEXTS) {
            let c = cosine(ours, reference);
            assert!(c > 0.99999, "{kernel:?} {text:?}: cosine {c}");
            let max_abs = ours
                .iter()
                .zip(reference)
                .map(|(a, b)| (a - b).abs())
                .fold(0.0, f32::max);
            assert!(
                max_abs < 1e-4,
                "{kernel:?} {text:?}: max abs diff {max_abs}"
            );
            assert!((ours.norm() - 1.0).abs() < 1e-5);
        }
        // The random model still separates different texts.
        assert!(ours[0].cosine(&ours[3]) < 0.9999);
    }
}

#[test]
fn unavailable_kernel_is_a_clear_error() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = write_tiny_bert(tmp.path(), &[], false);
    write_sentence_transformers(&dir, false, 64);
    let options = LoadOptions {
        cpu_kernel: CpuKernel::OpenBlas,
        ..opts()
    };
    match EmbeddingModel::load("tiny", &dir, &options) {
        Ok(_) => assert!(CpuKernel::OpenBlas.available()),
        Err(e) => {
            assert!(!CpuKernel::OpenBlas.available());
            assert!(e.to_string().contains("openblas"), "{e}");
        }
    }
    assert_eq!("packed".parse::<CpuKernel>().unwrap(), CpuKernel::Packed);
    assert!("mkl".parse::<CpuKernel>().is_err());
}

#[test]
fn batched_equals_single_and_padding_does_not_leak() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = write_tiny_bert(tmp.path(), &[], false);
    write_sentence_transformers(&dir, false, 64);
    for kernel in kernels() {
        // No bucketing: every text is padded to the longest one in the same forward pass.
        let padded = EmbeddingModel::load(
            "tiny",
            &dir,
            &LoadOptions {
                length_bucketing: false,
                cpu_kernel: kernel,
                ..opts()
            },
        )
        .unwrap();
        let batch = padded.embed(TEXTS).unwrap();
        for (i, text) in TEXTS.iter().enumerate() {
            let single = padded.embed(&[text]).unwrap();
            let c = batch[i].cosine(&single[0]);
            assert!(
                c >= 0.9999,
                "{kernel:?} {text:?}: batch vs single cosine {c}"
            );
        }
        // Bucketed and unbucketed runs agree too, and order is preserved.
        let options = LoadOptions {
            cpu_kernel: kernel,
            ..opts()
        };
        let bucketed = EmbeddingModel::load("tiny", &dir, &options).unwrap();
        let b2 = bucketed.embed(TEXTS).unwrap();
        for (a, b) in batch.iter().zip(&b2) {
            assert!(a.cosine(b) >= 0.9999);
        }
    }
}

#[test]
fn tokenizer_padding_is_overridden_and_truncation_follows_config() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = write_tiny_bert(tmp.path(), &[], false);
    write_sentence_transformers(&dir, false, 12);
    let model = EmbeddingModel::load("tiny", &dir, &opts()).unwrap();
    assert_eq!(model.max_seq_length(), 12);
    // tokenizer.json says Fixed(8) padding and truncation at 8; we must ignore both.
    assert_eq!(model.tokenizer().count("cat").unwrap(), 3);
    assert_eq!(
        model
            .tokenizer()
            .count("the cat sat on the mat the cat sat on the mat")
            .unwrap(),
        12
    );
    // Everything past the limit is dropped, so these two texts embed identically.
    let long_a = "the cat sat on the mat the cat sat on the mat dog dog dog";
    let long_b = "the cat sat on the mat the cat sat on the mat law law law code";
    let v = model.embed(&[long_a, long_b]).unwrap();
    assert!(v[0].cosine(&v[1]) > 0.99999);
    // A per-load override is honoured, up to the position table (64) but not beyond.
    let short = EmbeddingModel::load(
        "tiny",
        &dir,
        &LoadOptions {
            max_seq_length: Some(5),
            ..opts()
        },
    )
    .unwrap();
    assert_eq!(short.max_seq_length(), 5);
    let long = EmbeddingModel::load(
        "tiny",
        &dir,
        &LoadOptions {
            max_seq_length: Some(1000),
            ..opts()
        },
    )
    .unwrap();
    assert_eq!(long.max_seq_length(), 64);
}

#[test]
fn cls_pooling_matryoshka_and_q8() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = write_tiny_bert(tmp.path(), &[], false);
    write_sentence_transformers(&dir, true, 64);
    let full = EmbeddingModel::load("tiny", &dir, &opts()).unwrap();
    let v = full.embed(TEXTS).unwrap();
    // CLS pooling differs from mean pooling on the same weights.
    write_sentence_transformers(&dir, false, 64);
    let mean = EmbeddingModel::load("tiny", &dir, &opts())
        .unwrap()
        .embed(TEXTS)
        .unwrap();
    assert!(v[0].cosine(&mean[0]) < 0.999);
    write_sentence_transformers(&dir, true, 64);

    let truncated = EmbeddingModel::load(
        "tiny",
        &dir,
        &LoadOptions {
            truncate_dim: Some(8),
            ..opts()
        },
    )
    .unwrap();
    assert_eq!(truncated.dims(), 8);
    let t = truncated.embed(TEXTS).unwrap();
    for (short, long) in t.iter().zip(&v) {
        assert_eq!(short.dims(), 8);
        assert!((short.norm() - 1.0).abs() < 1e-5, "re-normalised");
        let c = cosine(short, &long[..8]);
        assert!(c > 0.99999, "prefix of the full vector, cosine {c}");
    }
    assert!(EmbeddingModel::load(
        "tiny",
        &dir,
        &LoadOptions {
            truncate_dim: Some(HIDDEN + 1),
            ..opts()
        }
    )
    .is_err());

    let q8 = EmbeddingModel::load(
        "tiny",
        &dir,
        &LoadOptions {
            precision: Precision::Q8,
            ..opts()
        },
    )
    .unwrap();
    for (a, b) in q8.embed(TEXTS).unwrap().iter().zip(&v) {
        let c = a.cosine(b);
        assert!(c > 0.99, "q8 vs f32 cosine {c}");
    }
}

#[test]
fn bert_sequence_classifier_matches_manual_head() {
    let tmp = tempfile::tempdir().unwrap();
    let labels = ["math", "law", "code"];
    let dir = write_tiny_bert(tmp.path(), &labels, false);
    let model = SequenceClassificationModel::load("cls", &dir, &opts()).unwrap();
    assert_eq!(model.labels(), labels);
    let scores = model.classify(TEXTS).unwrap();

    // Manual: candle-transformers BERT → [CLS] → tanh(pooler) → classifier → softmax.
    let cfg: candle_transformers::models::bert::Config =
        serde_json::from_str(&std::fs::read_to_string(dir.join("config.json")).unwrap()).unwrap();
    let tensors =
        candle_core::safetensors::load(dir.join("model.safetensors"), &Device::Cpu).unwrap();
    let get = |n: &str| tensors[n].clone();
    let vb = VarBuilder::from_tensors(tensors.clone(), DType::F32, &Device::Cpu);
    let bert = candle_transformers::models::bert::BertModel::load(vb, &cfg).unwrap();
    let tok = tokenizers::Tokenizer::from_file(dir.join("tokenizer.json")).unwrap();
    for (text, got) in TEXTS.iter().zip(&scores) {
        let mut tok = tok.clone();
        tok.with_padding(None);
        tok.with_truncation(None).unwrap();
        let enc = tok.encode(*text, true).unwrap();
        let ids = Tensor::new(enc.get_ids(), &Device::Cpu)
            .unwrap()
            .unsqueeze(0)
            .unwrap();
        let states = bert
            .forward(&ids, &ids.zeros_like().unwrap(), None)
            .unwrap();
        let cls = states.get(0).unwrap().get(0).unwrap().unsqueeze(0).unwrap();
        let pooled = cls
            .matmul(&get("bert.pooler.dense.weight").t().unwrap())
            .unwrap()
            .broadcast_add(&get("bert.pooler.dense.bias"))
            .unwrap()
            .tanh()
            .unwrap();
        let logits = pooled
            .matmul(&get("classifier.weight").t().unwrap())
            .unwrap()
            .broadcast_add(&get("classifier.bias"))
            .unwrap();
        let want: Vec<f32> = candle_nn::ops::softmax_last_dim(&logits)
            .unwrap()
            .squeeze(0)
            .unwrap()
            .to_vec1()
            .unwrap();
        for (a, b) in got.scores.iter().zip(&want) {
            assert!(
                (a - b).abs() < 1e-5,
                "{text:?}: {:?} vs {want:?}",
                got.scores
            );
        }
        assert!((got.scores.iter().sum::<f32>() - 1.0).abs() < 1e-5);
        assert!(!got.multi_label);
    }
}

#[test]
fn multi_label_uses_independent_sigmoids() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = write_tiny_bert(tmp.path(), &["a", "b", "c", "d"], true);
    let model = SequenceClassificationModel::load("ml", &dir, &opts()).unwrap();
    let single = SequenceClassificationModel::load("ml", &dir, &opts()).unwrap();
    let scores = model.classify(TEXTS).unwrap();
    for s in &scores {
        assert!(s.multi_label);
        assert!(s.scores.iter().all(|p| (0.0..=1.0).contains(p)));
    }
    // Sigmoid outputs do not sum to one in general.
    assert!(scores
        .iter()
        .any(|s| (s.scores.iter().sum::<f32>() - 1.0).abs() > 0.05));
    // Batch and single agree.
    let one = single.classify(&[TEXTS[2]]).unwrap();
    for (a, b) in one[0].scores.iter().zip(&scores[2].scores) {
        assert!((a - b).abs() < 1e-5);
    }
}

/// Rewrites the classifier bias so one tag wins everywhere.
fn force_tag(dir: &std::path::Path, labels: usize, tag: usize) {
    let path = dir.join("model.safetensors");
    let mut tensors = candle_core::safetensors::load(&path, &Device::Cpu).unwrap();
    let mut bias = vec![0f32; labels];
    bias[tag] = 1000.0;
    tensors.insert(
        "classifier.bias".into(),
        Tensor::new(bias, &Device::Cpu).unwrap(),
    );
    candle_core::safetensors::save(&tensors, &path).unwrap();
}

#[test]
fn token_classifier_spans_map_to_original_text() {
    let tags = ["O", "B-PER", "I-PER"];
    let tmp = tempfile::tempdir().unwrap();
    let dir = write_tiny_bert(tmp.path(), &tags, false);
    let text = "Ada  Lovelace visited Zürich";
    // Every token B-PER: one entity per word, word pieces merged, offsets in the original text.
    force_tag(&dir, tags.len(), 1);
    let model = TokenClassificationModel::load("ner", &dir, &opts()).unwrap();
    let entities = model.extract(&[text, "cat"]).unwrap();
    let words: Vec<&str> = entities[0].iter().map(|e| e.text.as_str()).collect();
    assert_eq!(words, ["Ada", "Lovelace", "visited", "Zürich"]);
    for e in &entities[0] {
        assert_eq!(e.label, "PER");
        assert_eq!(&text[e.start..e.end], e.text);
        assert!(e.score > 0.99);
    }
    assert_eq!(entities[1].len(), 1);
    // Every token I-PER: one entity spanning the whole text.
    force_tag(&dir, tags.len(), 2);
    let model = TokenClassificationModel::load("ner", &dir, &opts()).unwrap();
    let entities = model.extract(&[text]).unwrap();
    assert_eq!(entities[0].len(), 1);
    assert_eq!(entities[0][0].text, text);
    // Every token O: nothing.
    force_tag(&dir, tags.len(), 0);
    let model = TokenClassificationModel::load("ner", &dir, &opts()).unwrap();
    assert!(model.extract(&[text]).unwrap()[0].is_empty());
}

#[test]
fn modernbert_sequence_classifier_matches_candle_transformers() {
    let labels = ["safe", "jailbreak"];
    let tmp = tempfile::tempdir().unwrap();
    let dir = write_tiny_modernbert(tmp.path(), &labels, "cls", false);
    let model = SequenceClassificationModel::load("mb", &dir, &opts()).unwrap();
    let ours = model.classify(TEXTS).unwrap();

    let cfg: candle_transformers::models::modernbert::Config =
        serde_json::from_str(&std::fs::read_to_string(dir.join("config.json")).unwrap()).unwrap();
    let tensors =
        candle_core::safetensors::load(dir.join("model.safetensors"), &Device::Cpu).unwrap();
    let vb = VarBuilder::from_tensors(tensors, DType::F32, &Device::Cpu);
    let reference =
        candle_transformers::models::modernbert::ModernBertForSequenceClassification::load(
            vb, &cfg,
        )
        .unwrap();
    let tok = tokenizers::Tokenizer::from_file(dir.join("tokenizer.json")).unwrap();
    for (text, got) in TEXTS.iter().zip(&ours) {
        let mut tok = tok.clone();
        tok.with_padding(None);
        tok.with_truncation(None).unwrap();
        let enc = tok.encode(*text, true).unwrap();
        let ids = Tensor::new(enc.get_ids(), &Device::Cpu)
            .unwrap()
            .unsqueeze(0)
            .unwrap();
        let mask = Tensor::new(enc.get_attention_mask(), &Device::Cpu)
            .unwrap()
            .unsqueeze(0)
            .unwrap();
        let want: Vec<f32> = reference
            .forward(&ids, &mask)
            .unwrap()
            .squeeze(0)
            .unwrap()
            .to_vec1()
            .unwrap();
        for (a, b) in got.scores.iter().zip(&want) {
            assert!(
                (a - b).abs() < 1e-4,
                "{text:?}: {:?} vs {want:?}",
                got.scores
            );
        }
    }
}

#[test]
fn modernbert_embeddings_bare_checkpoint_batch_equals_single() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = write_tiny_modernbert(tmp.path(), &["x"], "mean", true);
    write_sentence_transformers(&dir, false, 64);
    let model = EmbeddingModel::load(
        "mb-embed",
        &dir,
        &LoadOptions {
            length_bucketing: false,
            ..opts()
        },
    )
    .unwrap();
    assert_eq!(model.dims(), HIDDEN);
    let batch = model.embed(TEXTS).unwrap();
    for (i, text) in TEXTS.iter().enumerate() {
        let single = model.embed(&[text]).unwrap();
        let c = batch[i].cosine(&single[0]);
        assert!(c >= 0.9999, "{text:?}: cosine {c}");
        assert!((batch[i].norm() - 1.0).abs() < 1e-5);
    }
    assert!(batch[0].cosine(&batch[4]) < 0.9999);
}

#[test]
fn modernbert_token_classifier_runs() {
    let tags = ["O", "B-LOC", "I-LOC"];
    let tmp = tempfile::tempdir().unwrap();
    let dir = write_tiny_modernbert(tmp.path(), &tags, "cls", false);
    force_tag(&dir, tags.len(), 1);
    let model = TokenClassificationModel::load("mb-ner", &dir, &opts()).unwrap();
    let e = model.extract(&["new york cat"]).unwrap();
    let words: Vec<&str> = e[0].iter().map(|e| e.text.as_str()).collect();
    assert_eq!(words, ["new", "york", "cat"]);
}

#[test]
fn missing_files_give_clear_errors() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = write_tiny_bert(tmp.path(), &[], false);
    std::fs::remove_file(dir.join("model.safetensors")).unwrap();
    let err = EmbeddingModel::load("tiny", &dir, &opts())
        .unwrap_err()
        .to_string();
    assert!(err.contains("model.safetensors"), "{err}");
    // A classifier needs labels.
    let dir2 = write_tiny_bert(&tmp.path().join("b"), &[], false);
    let err = SequenceClassificationModel::load("c", &dir2, &opts())
        .unwrap_err()
        .to_string();
    assert!(err.contains("id2label"), "{err}");
}
