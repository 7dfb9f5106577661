//! Signal families. Each module compiles its rules once (`build`) and evaluates them per
//! request (`eval`) into a [`crate::state::FamilyResult`].
//!
//! Deterministic families (keyword, structure, context, conversation, event, metadata,
//! authz, language, pii, modality) need no model. Embedding-backed families read vectors
//! computed once per request and shared.

pub mod authz;
pub mod context;
pub mod conversation;
pub mod event;
pub mod keyword;
pub mod language;
pub mod metadata;
pub mod modality;
pub mod pii;
pub mod structure;
pub mod textutil;
