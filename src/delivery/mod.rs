//! The delivery engine: bounded queues, a fixed pool of delivery threads that decide and
//! hand HTTP exchanges to the async runtime, one scheduler thread for retries, one sweeper
//! thread over the due index, one pruner thread.
//!
//! Architecture Invariants (defined in ARCHITECTURE.md): bounded memory (I3): no thread,
//! timer or task per queued delivery, every in-memory structure bounded by `EngineConfig`;
//! one copy in memory (I5). The engine never renders HTML and none of its threads waits on
//! the network.

mod admission;
pub mod backoff;
pub mod breaker;
mod committed;
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

pub use engine::{BreakerStatus, Engine, EngineStats, TargetHealth, install_crypto_provider};
pub use task::{DeliveryPlan, DeliveryTask, EventPayload};
