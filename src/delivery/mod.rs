//! The delivery engine (BRIEF R3–R8): bounded queues, a fixed pool of delivery threads, one
//! scheduler thread for retries, one sweeper thread over the due index, one pruner thread.
//!
//! Architecture Invariant: no thread, timer or task per queued delivery; every in-memory
//! structure is bounded by `EngineConfig` (I3). A delivery id is in memory at most once (I5).
//! The engine never renders HTML and never blocks the tokio runtime's worker threads.

mod admission;
pub mod backoff;
pub mod breaker;
mod engine;
mod pruner;
mod queue;
mod record;
mod scheduler;
pub mod ssrf;
mod sweeper;
pub mod targets;
pub mod task;
mod worker;

pub use engine::{Engine, EngineStats, install_crypto_provider};
pub use task::{DeliveryPlan, DeliveryTask, EventPayload};
