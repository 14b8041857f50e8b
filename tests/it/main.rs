//! The one integration-test binary: real server on 127.0.0.1:0, real redb files in a temp
//! DATA_DIR, real HTTP sinks.

mod support;

mod admin;
mod api;
mod delivery;
mod ingest;
mod limits;
mod live;
mod openapi;
mod operate;
mod pages;
mod recovery;
mod routing;
mod signatures;
mod store;
