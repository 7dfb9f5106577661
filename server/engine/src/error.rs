//! Engine errors.

/// Why an engine could not be built or a request evaluated.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum EngineError {
    /// A pattern that validated could not be compiled into a matcher.
    #[error("signal {family}:{name}: {message}")]
    Compile {
        /// Leaf type of the family.
        family: &'static str,
        /// Rule name.
        name: String,
        /// What failed.
        message: String,
    },
    /// The embedding backend failed.
    #[error("embedding failed: {0}")]
    Embedding(String),
    /// A knowledge base could not be loaded.
    #[error("knowledge base {name}: {message}")]
    KnowledgeBase {
        /// KB name.
        name: String,
        /// What failed.
        message: String,
    },
    /// The recipe uses a feature the engine does not implement yet.
    #[error("{0}")]
    Unsupported(String),
}
