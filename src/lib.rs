//! webhooker: a self-hosted webhook proxy and store-and-forward service.
//!
//! See ARCHITECTURE.md for the map. Data flows config → store → ingest → delivery → web.
#![forbid(unsafe_code)]

pub mod config;
pub mod model;
pub mod store;
pub mod delivery;
pub mod metrics;
