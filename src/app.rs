//! Wiring: opens the store, starts the engine, builds the service and the HTTP app, serves,
//! and shuts everything down in order. `main.rs` and the integration tests both use it.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Instant;

use anyhow::Context;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

use crate::config::{Config, Environment};
use crate::delivery::Engine;
use crate::delivery::ssrf::NetworkPolicy;
use crate::ingest::Ingestor;
use crate::service::Service;
use crate::store::Store;
use crate::web::{self, AppParts, AppState, WebConfig};

/// A running webhooker.
pub struct App {
    addr: SocketAddr,
    first_run_password: Option<String>,
    service: Service,
    engine: Engine,
    store: Arc<Store>,
    stop: Option<oneshot::Sender<()>>,
    server: Option<JoinHandle<()>>,
}

impl App {
    /// Opens `config.data_dir`, creates the admin on first run, starts the engine (whose
    /// first sweep recovers unfinished deliveries) and starts serving on `config.listen`.
    pub async fn start(config: Config) -> anyhow::Result<App> {
        let (data_dir, limits) = (config.data_dir.clone(), config.store);
        let store = tokio::task::spawn_blocking(move || Store::open_with(&data_dir, limits))
            .await?
            .with_context(|| format!("opening data directory {}", config.data_dir.display()))?;
        let store = Arc::new(store);
        let engine = Engine::start(
            config.engine.clone(),
            store.clone(),
            tokio::runtime::Handle::current(),
        )?;
        match App::serve(config, store.clone(), engine.clone()).await {
            Ok(app) => Ok(app),
            Err(e) => {
                // A start that fails here (a refused first-run password, a taken port) must
                // not leave the engine's threads running in a process that goes on.
                stop_engine_and_store(engine, store).await;
                Err(e)
            }
        }
    }

    /// The rest of [`App::start`], once the store is open and the engine running.
    async fn serve(config: Config, store: Arc<Store>, engine: Engine) -> anyhow::Result<App> {
        let policy = NetworkPolicy::new(config.engine.allowed_target_networks.clone());
        let service = Service::new(store.clone(), engine.clone(), policy)?;
        let first_run_password = service
            .ensure_admin(config.admin_password.clone())
            .await
            .context("creating the first-run admin user")?;
        let metrics = config
            .metrics_credentials
            .as_ref()
            .and_then(|_| crate::metrics::handle());
        let state = AppState::new(AppParts {
            service: service.clone(),
            ingestor: Ingestor::new(store.clone(), engine.clone(), config.max_body_bytes),
            engine: engine.clone(),
            web: WebConfig {
                base_url: config.base_url.clone(),
                secure_cookies: config.environment == Environment::Prod,
                trust_proxy: config.trust_proxy,
                metrics_credentials: config.metrics_credentials.clone(),
                http: config.http.clone(),
            },
            metrics,
            limiter: Default::default(),
            once: Default::default(),
            started: Instant::now(),
        });
        let listener = tokio::net::TcpListener::bind(config.listen)
            .await
            .with_context(|| format!("binding {}", config.listen))?;
        let addr = listener.local_addr()?;
        let (stop, stopped) = oneshot::channel::<()>();
        let app = web::HttpApp::new(state);
        let limits = config.http.clone();
        let server = tokio::spawn(async move {
            web::server::serve(listener, app, &limits, async {
                // Either an explicit stop or the App being dropped ends the server.
                let _unused = stopped.await;
            })
            .await;
        });
        tracing::info!(%addr, "webhooker listening");
        Ok(App {
            addr,
            first_run_password,
            service,
            engine,
            store,
            stop: Some(stop),
            server: Some(server),
        })
    }

    /// The bound address (the OS-chosen port when configured with port 0).
    pub fn local_addr(&self) -> SocketAddr {
        self.addr
    }

    /// The generated admin password, on the first run only.
    pub fn first_run_password(&self) -> Option<&str> {
        self.first_run_password.as_deref()
    }

    /// The service layer (for tests and tools).
    pub fn service(&self) -> &Service {
        &self.service
    }

    /// The store (for tests and tools).
    pub fn store(&self) -> &Arc<Store> {
        &self.store
    }

    /// The delivery engine (for tests and tools).
    pub fn engine(&self) -> &Engine {
        &self.engine
    }

    /// Graceful shutdown: stop accepting, drain HTTP, let in-flight deliveries finish
    /// within the grace period, then commit what the writers hold and close the files.
    pub async fn shutdown(mut self) {
        // Live streams never end on their own; ending them lets the drain finish.
        self.engine.live().close();
        if let Some(stop) = self.stop.take() {
            // The server may already have stopped on its own.
            let _unused = stop.send(());
        }
        if let Some(server) = self.server.take()
            && let Err(e) = server.await
        {
            tracing::error!(error = %e, "server task failed");
        }
        stop_engine_and_store(self.engine.clone(), self.store.clone()).await;
    }
}

/// Stops the engine (its threads finish their attempts within the grace period), then
/// closes the store, off the async threads.
async fn stop_engine_and_store(engine: Engine, store: Arc<Store>) {
    let joined = tokio::task::spawn_blocking(move || {
        engine.shutdown();
        store.close();
    })
    .await;
    if let Err(e) = joined {
        tracing::error!(error = %e, "shutdown task failed");
    }
}
