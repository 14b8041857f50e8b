//! The `webhooker` binary: read config, set up logging, run until SIGINT/SIGTERM.

use std::io::IsTerminal;

use anyhow::Context;
use tracing_subscriber::EnvFilter;
use webhooker::app::App;
use webhooker::config::Config;

#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> anyhow::Result<()> {
    if std::env::args().nth(1).as_deref() == Some("healthcheck") {
        std::process::exit(healthcheck());
    }
    let config = match Config::from_env() {
        Ok(c) => c,
        Err(e) => {
            eprintln!("webhooker: configuration error: {e}");
            std::process::exit(2);
        }
    };
    init_logging(&config.log_filter);
    if let Err(e) = webhooker::web::server::raise_open_file_limit() {
        tracing::warn!(error = %e, "cannot raise the open-file limit");
    }
    webhooker::delivery::install_crypto_provider();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        // Storage calls run on the store's own fixed threads; tokio's blocking pool is left
        // with host name lookups and start/stop. Bounded all the same: tokio's default (up
        // to 512, gone after 10 s idle) leaves the allocator heaps of exited threads behind.
        .max_blocking_threads(8)
        .thread_keep_alive(std::time::Duration::from_secs(300))
        .build()
        .context("starting the async runtime")?;
    runtime.block_on(run(config))
}

async fn run(config: Config) -> anyhow::Result<()> {
    let app = App::start(config).await?;
    if let Some(password) = app.first_run_password() {
        // Printed once, to stdout and not through the logger, so it never lands in log
        // aggregation by accident.
        println!("========================================================");
        println!(" webhooker first run: created user `admin`");
        println!(" password: {password}");
        println!(" (shown only now; change it on the Account page)");
        println!("========================================================");
    }
    println!("webhooker listening on http://{}", app.local_addr());
    shutdown_signal().await;
    tracing::info!("shutting down");
    app.shutdown().await;
    Ok(())
}

fn init_logging(filter: &str) {
    // The filter was validated with the rest of the configuration.
    let filter = EnvFilter::try_new(filter).unwrap_or_else(|_| EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt().with_env_filter(filter);
    if std::io::stdout().is_terminal() {
        builder.init();
    } else {
        builder.json().init();
    }
}

async fn shutdown_signal() {
    let ctrl_c = async {
        if let Err(e) = tokio::signal::ctrl_c().await {
            tracing::error!(error = %e, "cannot listen for SIGINT");
            std::future::pending::<()>().await;
        }
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(e) => {
                tracing::error!(error = %e, "cannot listen for SIGTERM");
                std::future::pending::<()>().await;
            }
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        () = ctrl_c => {}
        () = term => {}
    }
}

/// `webhooker healthcheck`: exit 0 when the local server answers its health check. Used by
/// the Docker HEALTHCHECK, where no curl is installed.
fn healthcheck() -> i32 {
    use std::io::{Read, Write};
    let port = std::env::var("PORT").unwrap_or_else(|_| "8080".into());
    let addr = format!("127.0.0.1:{}", port.trim());
    let Ok(mut stream) = std::net::TcpStream::connect(&addr) else {
        return 1;
    };
    let timeout = Some(std::time::Duration::from_secs(3));
    if stream.set_read_timeout(timeout).is_err() || stream.set_write_timeout(timeout).is_err() {
        return 1;
    }
    let request =
        "GET /.well-known/healthcheck HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n";
    if stream.write_all(request.as_bytes()).is_err() {
        return 1;
    }
    let mut head = [0u8; 12];
    match stream.read_exact(&mut head) {
        Ok(()) if head.starts_with(b"HTTP/1.1 200") => 0,
        _ => 1,
    }
}
