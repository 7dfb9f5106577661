//! The `language` family (contract §3.8): lingua language detection over the bounded text.
//!
//! Owns the process-wide detector (built once, shared by every engine and hot reload, since
//! detection does not depend on the rules) and the rule matching: the minimum confidence is
//! the smallest positive rule threshold, or 0.3; an empty text, no detection or a confidence
//! below the minimum reads as `en` with confidence 0.5; the rule named by the detected ISO
//! 639-1 code matches when the confidence reaches its threshold (when > 0). Rules naming a
//! language that is not compiled in never match; [`LanguageSignals::unsupported`] lists
//! them so the caller can warn once. No confidence is written (contract §3.0).
//!
//! Detection uses lingua's high-accuracy mode over the languages compiled in, with every
//! model preloaded by [`warm_up`]. Low-accuracy mode (trigrams only) is faster but calls
//! short English prompts French with 0.93 confidence, so it is not used; see the tests.

use std::sync::LazyLock;

use lingua::{Language, LanguageDetector, LanguageDetectorBuilder};
use vllm_sr_config::model::LanguageRule;

use crate::state::FamilyResult;

/// Default minimum confidence when no rule sets a positive threshold.
pub const DEFAULT_MIN_CONFIDENCE: f64 = 0.3;
/// The fallback detection.
pub const FALLBACK: (&str, f64) = ("en", 0.5);

static DETECTOR: LazyLock<LanguageDetector> = LazyLock::new(|| build_detector(false));

fn build_detector(low_accuracy: bool) -> LanguageDetector {
    let mut b = LanguageDetectorBuilder::from_all_languages();
    b.with_preloaded_language_models();
    if low_accuracy {
        b.with_low_accuracy_mode();
    }
    b.build()
}

/// The ISO 639-1 codes of the languages compiled in.
pub fn supported_codes() -> Vec<String> {
    let mut v: Vec<String> = Language::all()
        .iter()
        .map(|l| l.iso_code_639_1().to_string())
        .collect();
    v.sort();
    v
}

/// Forces the detector and its models to load (call at startup, not on a request).
pub fn warm_up() {
    LazyLock::force(&DETECTOR);
}

/// Detects the language of `text` as (ISO 639-1 code, confidence), without the fallback.
pub fn detect_raw(text: &str) -> Option<(String, f64)> {
    detect_with(&DETECTOR, text)
}

fn detect_with(d: &LanguageDetector, text: &str) -> Option<(String, f64)> {
    if text.trim().is_empty() {
        return None;
    }
    d.compute_language_confidence_values(text)
        .into_iter()
        .next()
        .filter(|(_, c)| *c > 0.0)
        .map(|(l, c)| (l.iso_code_639_1().to_string(), c))
}

/// The language rules of a recipe.
#[derive(Debug)]
pub struct LanguageSignals {
    names: Vec<String>,
    thresholds: Vec<f64>,
    min_confidence: f64,
    unsupported: Vec<String>,
}

impl LanguageSignals {
    /// Keeps the rules and computes the minimum confidence.
    pub fn build(rules: &[LanguageRule]) -> Self {
        let supported = supported_codes();
        let min_confidence = rules
            .iter()
            .map(|r| r.threshold)
            .filter(|t| *t > 0.0)
            .min_by(f64::total_cmp)
            .unwrap_or(DEFAULT_MIN_CONFIDENCE);
        Self {
            names: rules.iter().map(|r| r.name.clone()).collect(),
            thresholds: rules.iter().map(|r| r.threshold).collect(),
            min_confidence,
            unsupported: rules
                .iter()
                .filter(|r| !supported.contains(&r.name))
                .map(|r| r.name.clone())
                .collect(),
        }
    }

    /// Rule names that are valid ISO codes but not compiled into this build.
    pub fn unsupported(&self) -> &[String] {
        &self.unsupported
    }

    /// The detection as rules see it: (code, confidence) with the `en`/0.5 fallback.
    pub fn detect(&self, bounded: &str) -> (String, f64) {
        match detect_raw(bounded) {
            Some((code, c)) if c >= self.min_confidence => (code, c),
            _ => (FALLBACK.0.to_string(), FALLBACK.1),
        }
    }

    /// Matches the rule named by the detected code; returns the detection.
    pub fn eval(&self, bounded: &str, out: &mut FamilyResult) -> (String, f64) {
        let (code, c) = self.detect(bounded);
        self.eval_detection(&code, c, out);
        (code, c)
    }

    /// Matches against a given detection.
    pub fn eval_detection(&self, code: &str, confidence: f64, out: &mut FamilyResult) {
        for (i, (name, t)) in self.names.iter().zip(&self.thresholds).enumerate() {
            if name == code && (*t <= 0.0 || confidence >= *t) {
                out.hit(i, None);
            }
        }
    }
}

#[cfg(test)]
#[path = "language_tests.rs"]
mod tests;
