//! webhooker: a self-hosted webhook proxy and store-and-forward service.
//!
//! See ARCHITECTURE.md for the map. Data flows config → store → ingest → delivery → web.
#![forbid(unsafe_code)]

pub mod app;
pub mod config;
pub mod delivery;
pub(crate) mod ingest;
pub mod live;
pub mod metrics;
pub mod model;
pub mod routing;
pub mod service;
pub mod store;
pub mod web;

#[cfg(test)]
mod test_log;
