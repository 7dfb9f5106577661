//! The routing engine: request view → signals → projections → decisions → outcome.
//!
//! Pure given model outputs: the engine does no network or disk I/O per request, and never
//! blocks on a model itself. Callers compute the embeddings it asks for (one batch per request)
//! on the model runtime's threads and hand them in.

pub mod bank;
mod builtin;
pub mod decide;
mod deterministic;
pub mod embed;
mod engine;
pub mod error;
pub mod kb;
mod messages;
pub mod outcome;
pub mod pass;
mod post;
pub mod probes;
mod report;
pub mod request;
pub mod route;
pub mod semantic;
pub mod signals;
pub mod state;

pub use embed::{needs_embeddings, Embed, LexicalEmbedder};
pub use engine::{Engine, Plan, RouteOptions};
pub use outcome::{Outcome, RouteKind};
pub use pass::{Selection, SignalPass};

pub use error::EngineError;
pub use messages::{KeySeed as JsonKeySeed, Messages as MessagesSeed};
pub use request::{Headers, Message, RequestError, RequestView, SignalText};
pub use route::{embed_plan, route, Embedded, MissingVectors};
pub use state::{FamilyResult, SignalState};
