//! Exemplar manifests the binary carries for the classifier-style families upstream serves
//! with fine-tuned models: fact_check, user_feedback, jailbreak (domain uses the MMLU KB).

use crate::kb::{parse_manifest, Manifest};
use crate::EngineError;

const FACT_CHECK: &str = include_str!("../../../recipes/knowledge_bases/fact_check/labels.json");
const USER_FEEDBACK: &str =
    include_str!("../../../recipes/knowledge_bases/user_feedback/labels.json");
const JAILBREAK: &str = include_str!("../../../recipes/knowledge_bases/jailbreak/labels.json");

/// The fact-check manifest (`needs_fact_check`, `no_fact_check_needed`).
pub fn fact_check() -> Result<Manifest, EngineError> {
    parse_manifest("fact_check", FACT_CHECK)
}

/// The feedback manifest (`satisfied`, `need_clarification`, `wrong_answer`, `want_different`).
pub fn user_feedback() -> Result<Manifest, EngineError> {
    parse_manifest("user_feedback", USER_FEEDBACK)
}

/// The jailbreak manifest (`jailbreak`, `benign`).
pub fn jailbreak() -> Result<Manifest, EngineError> {
    parse_manifest("jailbreak", JAILBREAK)
}
