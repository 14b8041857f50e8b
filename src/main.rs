//! The `webhooker` binary: read config, set up logging, run until SIGINT/SIGTERM; or one
//! of the admin commands, which work on a stopped server's data directory; or the
//! healthcheck, which asks the running server.

use std::io::IsTerminal;

use anyhow::Context;
use clap::{Parser, Subcommand};
use tracing_subscriber::EnvFilter;
use uuid::Uuid;
use webhooker::app::App;
use webhooker::config::Config;
use webhooker::service::{self, ServiceError};
use webhooker::store::{Store, StoreError};

#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// Self-hosted webhook proxy and store-and-forward service. Settings come from the
/// environment (and `.env`); see the README.
#[derive(Parser)]
#[command(name = "webhooker", version)]
struct Cli {
    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Subcommand)]
enum Command {
    /// Serve HTTP until SIGINT/SIGTERM (the default without a command).
    Serve,
    /// Exit 0 when the running server (at $HOST:$PORT, loopback when HOST is 0.0.0.0 or
    /// ::) reports "ok", 1 otherwise (degraded storage, or no answer); for container health
    /// checks.
    Healthcheck,
    /// Give a user a new random password and print it; ends the user's sessions. On a
    /// stopped server.
    ResetPassword {
        /// The user.
        #[arg(long, default_value = "admin")]
        user: String,
        /// Also revoke every API key of the user (a key that leaked with the password
        /// would outlive the reset otherwise).
        #[arg(long)]
        revoke_keys: bool,
    },
    /// Write a webhook's events, with bodies, deliveries and attempts, as NDJSON to stdout.
    /// On a stopped server (a running one: GET /api/v1/webhooks/{id}/export).
    Export {
        /// The webhook's id.
        #[arg(long)]
        webhook: Uuid,
        /// Only events received at or after this time (RFC 3339, e.g. 2026-01-31T00:00:00Z).
        #[arg(long)]
        since: Option<jiff::Timestamp>,
    },
    /// Read an export (NDJSON on stdin) into a webhook; events it already holds are
    /// skipped. On a stopped server.
    Import {
        /// The webhook's id.
        #[arg(long)]
        webhook: Uuid,
    },
}

fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    let command = cli.command.unwrap_or(Command::Serve);
    if let Command::Healthcheck = command {
        std::process::exit(healthcheck());
    }
    let config = match Config::from_env() {
        Ok(c) => c,
        Err(e) => {
            eprintln!("webhooker: configuration error: {e}");
            std::process::exit(2);
        }
    };
    if !matches!(command, Command::Serve) {
        std::process::exit(admin(command, &config));
    }
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

/// Runs an admin command on the data directory; the process's exit code. The store's own
/// lock refuses while a server (or another command) has the directory open.
fn admin(command: Command, config: &Config) -> i32 {
    // Warnings and errors of the store (a failed write) go to stderr, apart from the output.
    tracing_subscriber::fmt()
        .with_env_filter(EnvFilter::new("warn"))
        .with_writer(std::io::stderr)
        .init();
    // A command pointed at the wrong place must not create an empty data directory there
    // and answer as if it were the server's (say, "no such user").
    if !config.data_dir.join("webhooker.redb").is_file() {
        eprintln!(
            "webhooker: no data directory at {} (no webhooker.redb): set DATA_DIR to the \
             server's",
            config.data_dir.display()
        );
        return 1;
    }
    let store = match Store::open(&config.data_dir) {
        Ok(store) => store,
        Err(StoreError::InUse(path)) => {
            eprintln!(
                "webhooker: {} is in use: a webhooker server (or another command) holds this \
                 data directory. Stop it first{}.",
                path.display(),
                if matches!(command, Command::Export { .. }) {
                    ", or export through the API: GET /api/v1/webhooks/{id}/export"
                } else {
                    ""
                }
            );
            return 1;
        }
        Err(e) => {
            eprintln!("webhooker: cannot open {}: {e}", config.data_dir.display());
            return 1;
        }
    };
    let outcome = match command {
        Command::ResetPassword { user, revoke_keys } => {
            service::reset_password(&store, &user, revoke_keys).map(|reset| {
                println!("{}", reset.password);
                eprintln!("webhooker: new password set for `{user}`; their sessions have ended");
                match (revoke_keys, reset.api_keys) {
                    (true, _) => eprintln!("webhooker: and their API keys are revoked"),
                    (false, 0) => {}
                    (false, n) => eprintln!(
                        "webhooker: their {n} API key(s) still work; --revoke-keys revokes them"
                    ),
                }
            })
        }
        Command::Export { webhook, since } => {
            let since = since.map(|t| t.as_millisecond());
            let mut out = std::io::BufWriter::new(std::io::stdout().lock());
            service::export_to(&store, webhook, since, &mut out).map(|_| ())
        }
        Command::Import { webhook } => {
            service::import_from(&store, webhook, std::io::stdin().lock()).map(|report| {
                eprintln!(
                    "webhooker: imported {} events, skipped {} already present",
                    report.imported, report.skipped
                );
            })
        }
        Command::Serve | Command::Healthcheck => Ok(()),
    };
    store.close();
    match outcome {
        Ok(()) => 0,
        Err(ServiceError::NotFound(what)) => {
            eprintln!("webhooker: no such {what}");
            1
        }
        Err(e) => {
            eprintln!("webhooker: {e}");
            1
        }
    }
}

/// `webhooker healthcheck`: exit 0 when the server answers its health check with 200
/// (`ok`); 1 when it answers 503 (`degraded`: an event file cannot be opened or written, or
/// the disk is nearly full) or not at all, or the settings are invalid. It reads the
/// server's settings as the server does (the environment, then `.env`) and asks the
/// address it listens on: `HOST`:`PORT`, or loopback when `HOST` is every address
/// ([`Config::local_addrs`]). Used by the Docker HEALTHCHECK, where no curl is installed.
fn healthcheck() -> i32 {
    let config = match Config::from_env() {
        Ok(c) => c,
        Err(e) => {
            eprintln!("webhooker healthcheck: configuration error: {e}");
            return 1;
        }
    };
    let mut last_error = None;
    for addr in config.local_addrs() {
        match ask_health(addr) {
            Ok(healthy) => return if healthy { 0 } else { 1 },
            Err(e) => last_error = Some(format!("{addr}: {e}")),
        }
    }
    if let Some(e) = last_error {
        eprintln!("webhooker healthcheck: no answer from {e}");
    }
    1
}

/// Asks the server at `addr` for its health; whether it answered 200. An error when it
/// cannot be reached or gives no answer within 3 s.
fn ask_health(addr: std::net::SocketAddr) -> std::io::Result<bool> {
    use std::io::{Read, Write};
    let timeout = std::time::Duration::from_secs(3);
    let mut stream = std::net::TcpStream::connect_timeout(&addr, timeout)?;
    stream.set_read_timeout(Some(timeout))?;
    stream.set_write_timeout(Some(timeout))?;
    let request =
        "GET /.well-known/healthcheck HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n";
    stream.write_all(request.as_bytes())?;
    // `Connection: close`: the answer ends with the stream. It is small; read at most 64 KiB.
    let mut answer = Vec::new();
    stream.take(64 * 1024).read_to_end(&mut answer)?;
    let healthy = answer.starts_with(b"HTTP/1.1 200");
    if !healthy {
        // The reasons (which files, what failed) are in the body: worth a line in the
        // container's health log.
        let text = String::from_utf8_lossy(&answer);
        let body = text.split_once("\r\n\r\n").map_or("", |(_, b)| b).trim();
        let status = text.lines().next().unwrap_or("").trim();
        eprintln!("webhooker healthcheck: {status}: {body}");
    }
    Ok(healthy)
}
