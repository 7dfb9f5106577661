//! Exemplar manifests the binary carries for the classifier-style families upstream serves
//! with fine-tuned models: domain, fact_check, user_feedback, jailbreak.

use crate::kb::{parse_manifest, Manifest};
use crate::EngineError;

const FACT_CHECK: &str = include_str!("../../../recipes/knowledge_bases/fact_check/labels.json");
const USER_FEEDBACK: &str =
    include_str!("../../../recipes/knowledge_bases/user_feedback/labels.json");
const JAILBREAK: &str = include_str!("../../../recipes/knowledge_bases/jailbreak/labels.json");
const DOMAINS: &str = include_str!("../../../recipes/knowledge_bases/domains/labels.json");

/// The domain manifest: the 14 MMLU-Pro categories as chat-request intents (raw MMLU exam
/// questions make poor prototypes for requests).
pub fn domains() -> Result<Manifest, EngineError> {
    parse_manifest("domains", DOMAINS)
}

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
