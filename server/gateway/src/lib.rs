//! The vllm-sr data plane: an OpenAI-compatible proxy in front of the recipe's backends.
//!
//! - `server`: lifecycle (listeners, metrics listener, health checks, config watcher, reload,
//!   graceful drain).
//! - `shards`: the data plane's I/O threads (one single-threaded runtime and upstream pool
//!   each; connections dealt to them round robin).
//! - `http`: the listener's routes and the `x-vsr-*` response headers.
//! - `service`: the transport-independent routing step (request → outcome → rewritten body);
//!   a future Envoy ext_proc server calls the same function.
//! - `learning`: Router Learning's session-aware protection (stay, switch, hard lock, bypass).
//! - `rewrite`: the body rewrite of contract §9 and the request-side plugins.
//! - `forward` and `upstream`: backend choice, retries, outlier ejection, streaming relay.
//! - `replay` and `tap`: a Router Replay record per routed request (usage and capped bodies
//!   read off the relayed response), written through the store's bounded, non-blocking intake.
//! - `mgmt`: the management API (classify, eval, replay, insights, live events).
//! - `error`: the one place a failure becomes an HTTP status.
//!
//! Model inference runs on the models crate's threads; handlers only await it.

pub mod body;
mod conn;
pub mod error;
pub mod forward;
mod h1_server;
pub mod headers;
pub mod http;
pub mod learning;
pub mod live;
pub mod metrics;
pub mod mgmt;
pub mod replay;
pub mod rewrite;
pub mod server;
pub mod service;
mod shards;
pub mod span;
pub mod tap;
#[cfg(test)]
mod test_support;
pub mod trace_pack;
pub mod upstream;

pub use error::ApiError;
pub use http::Limits;
pub use live::{BuildError, LiveState, ModelSource};
pub use server::{BoundListener, Gateway, ManagementOptions, ServeOptions, StartError};
