//! `baseline`: the HTTP ceiling of this machine, for the load test (`scripts/loadtest.sh`).
//!
//! A minimal axum server that answers `POST /webhook/{id}` exactly like webhooker's ingest
//! does on success — it reads the whole body and answers
//! `200 {"status":"ok","event_id":"<uuid v7>"}` — but stores nothing. The gap between this
//! and webhooker is the cost of storing (and fsyncing) the event.
//!
//! It listens on `127.0.0.1:$PORT` only and uses the same runtime as the `webhooker` binary
//! (a default multi-thread tokio runtime: one worker per core), so both get the same CPUs.
//! It prints `baseline listening on http://…` once it accepts connections and runs until
//! SIGINT or SIGTERM.

use std::net::SocketAddr;

use anyhow::Context;
use axum::Json;
use axum::Router;
use axum::body::Bytes;
use axum::extract::Path;
use axum::routing::post;
use serde_json::{Value, json};

fn main() -> anyhow::Result<()> {
    let port: u16 = std::env::var("PORT")
        .context("PORT must be set")?
        .trim()
        .parse()
        .context("PORT must be a port number")?;
    // Same builder as the webhooker binary: worker threads default to the number of cores.
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("starting the async runtime")?;
    runtime.block_on(serve(SocketAddr::from(([127, 0, 0, 1], port))))
}

/// Serves until SIGINT or SIGTERM.
async fn serve(addr: SocketAddr) -> anyhow::Result<()> {
    let app = Router::new().route("/webhook/{id}", post(ingest));
    let listener = tokio::net::TcpListener::bind(addr)
        .await
        .with_context(|| format!("binding {addr}"))?;
    println!("baseline listening on http://{addr}");
    axum::serve(listener, app)
        .with_graceful_shutdown(shutdown_signal())
        .await
        .context("serving HTTP")
}

/// Reads the body (the `Bytes` extractor buffers all of it) and acknowledges it like
/// webhooker would, without storing anything.
async fn ingest(Path(_entrypoint): Path<String>, body: Bytes) -> Json<Value> {
    let _received = body.len();
    Json(json!({"status": "ok", "event_id": uuid::Uuid::now_v7()}))
}

/// Resolves on SIGINT or SIGTERM.
async fn shutdown_signal() {
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        () = term => {}
    }
}
