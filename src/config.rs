//! Configuration, read once from the environment (and `.env` if present) at startup.
//!
//! Every other module takes its slice of [`Config`]; nobody else reads the environment.
//! A bad value stops startup with an error naming the variable.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use ipnet::IpNet;

/// Default ingest body limit: 10 MiB.
pub const DEFAULT_MAX_BODY_BYTES: usize = 10 * 1024 * 1024;
/// Default cap on event files open at once.
pub const DEFAULT_MAX_OPEN_EVENT_FILES: usize = 64;
/// Default page-cache budget of all open event files together.
pub const DEFAULT_EVENT_CACHE_BYTES: usize = 256 * 1024 * 1024;
/// See [`StoreConfig::checkpoint_after`].
pub const DEFAULT_CHECKPOINT_AFTER: std::time::Duration = std::time::Duration::from_secs(1);
/// Default cap on outgoing exchanges in flight, all targets together.
pub const DEFAULT_DELIVERY_CONCURRENCY: usize = 512;
/// Default body bytes of outgoing exchanges in flight, all together.
pub const DEFAULT_DELIVERY_BODY_BUDGET: u64 = 64 * 1024 * 1024;

/// Default number of delivery threads: one per core (at least two). They never wait on the
/// network, so more threads than cores would only take turns.
pub fn default_delivery_workers() -> usize {
    std::thread::available_parallelism().map_or(2, |n| n.get().clamp(2, 64))
}
/// Log filter without `RUST_LOG` or `DEBUG`: our info lines, not one per HTTP request.
pub const DEFAULT_LOG_FILTER: &str = "info,tower_http=warn";
/// Default cap on open HTTP connections.
pub const DEFAULT_MAX_CONNECTIONS: usize = 1024;

/// Deployment environment: `prod` turns on Secure cookies.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Environment {
    /// Local development (the default).
    Dev,
    /// Production: cookies are marked Secure.
    Prod,
}

/// The whole configuration of one webhooker process.
#[derive(Debug, Clone)]
pub struct Config {
    /// Address the HTTP server binds to.
    pub listen: SocketAddr,
    /// Directory holding `webhooker.redb` and the per-webhook event files.
    pub data_dir: PathBuf,
    /// `dev` or `prod`.
    pub environment: Environment,
    /// Public base URL used to build absolute entrypoint URLs; the request's Host otherwise.
    pub base_url: Option<String>,
    /// Largest accepted webhook body.
    pub max_body_bytes: usize,
    /// Credentials guarding `/metrics`; the route exists only when both are set.
    pub metrics_credentials: Option<(String, String)>,
    /// Password for the first-run `admin` user instead of a random one.
    pub admin_password: Option<String>,
    /// Trust the right-most `X-Forwarded-For` entry for the client address (and
    /// `X-Forwarded-Proto` for the scheme).
    pub trust_proxy: bool,
    /// The log filter: `RUST_LOG`, else `debug` when `DEBUG` is true, else
    /// `info,tower_http=warn`.
    pub log_filter: String,
    /// HTTP server limits.
    pub http: HttpConfig,
    /// Delivery engine tunables.
    pub engine: EngineConfig,
    /// Event-file limits.
    pub store: StoreConfig,
}

/// How many event files may be open, and how much page cache they share.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StoreConfig {
    /// Event files open at once; the least recently used idle one is closed to open another.
    pub max_open_event_files: usize,
    /// redb page cache of all open event files together (each gets an equal part).
    pub event_cache_bytes: usize,
    /// How long an event file's commits may rest on the commit journal before the file
    /// syncs them itself (not an environment setting: it bounds the journal, and tests
    /// that cut the power lengthen it).
    pub checkpoint_after: std::time::Duration,
}

impl Default for StoreConfig {
    fn default() -> Self {
        StoreConfig {
            max_open_event_files: DEFAULT_MAX_OPEN_EVENT_FILES,
            event_cache_bytes: DEFAULT_EVENT_CACHE_BYTES,
            checkpoint_after: DEFAULT_CHECKPOINT_AFTER,
        }
    }
}

impl StoreConfig {
    /// Each open file's share of the page cache.
    pub fn cache_per_file(&self) -> usize {
        self.event_cache_bytes / self.max_open_event_files.max(1)
    }
}

/// Limits that keep slow or stalled clients from tying up the server (bounded memory, I3): each
/// connection, header and ingest body must make progress or be dropped.
#[derive(Debug, Clone)]
pub struct HttpConfig {
    /// Connections served at once; further clients wait in the listen backlog.
    pub max_connections: usize,
    /// Connections one client (IPv4 address or IPv6 /64) may hold open; more are answered
    /// 429 and closed. `None` behind a trusted proxy, where every connection comes from the
    /// proxy (which must do this itself).
    pub max_connections_per_client: Option<usize>,
    /// Time a client has to send a request's headers. It also closes a keep-alive
    /// connection that sends no next request for this long.
    pub header_read_timeout: Duration,
    /// Longest a client may leave a response unread before the connection is dropped.
    pub write_timeout: Duration,
    /// Longest pause between two pieces of an ingest body.
    pub body_idle_timeout: Duration,
    /// Time to receive a whole ingest body (10 MiB at ~100 KB/s fits).
    pub body_read_timeout: Duration,
    /// Bytes per second that an ingest body holding room in the memory budget must bring,
    /// averaged over each `body_rate_window`; a slower one gets 408 and its room goes back
    /// to the budget. `0` turns the check off.
    pub body_min_rate: usize,
    /// The window `body_min_rate` is averaged over.
    pub body_rate_window: Duration,
}

impl Default for HttpConfig {
    fn default() -> Self {
        HttpConfig {
            max_connections: DEFAULT_MAX_CONNECTIONS,
            max_connections_per_client: Some(per_client_share(DEFAULT_MAX_CONNECTIONS)),
            header_read_timeout: Duration::from_secs(10),
            write_timeout: Duration::from_secs(30),
            body_idle_timeout: Duration::from_secs(15),
            body_read_timeout: Duration::from_secs(120),
            // 20 KiB in every 5 s: far below any working uplink, yet a trickle of a byte
            // every few seconds loses its room within 5 s instead of holding it for 120 s.
            // The window is half the 10 s a request waits for room, so a waiting request
            // outlasts a reservation that is not being filled.
            body_min_rate: 4 * 1024,
            body_rate_window: Duration::from_secs(5),
        }
    }
}

/// The delivery engine's slice of the configuration.
#[derive(Debug, Clone)]
pub struct EngineConfig {
    /// Fixed number of delivery threads.
    pub workers: usize,
    /// Outgoing exchanges in flight at once, all targets together.
    pub concurrency: usize,
    /// Body bytes of the exchanges in flight, all together (a larger body still goes,
    /// alone).
    pub body_budget: u64,
    /// Capacity of the main delivery queue.
    pub queue_capacity: usize,
    /// Capacity of the in-memory retry timer heap; beyond it retries live in the due index only.
    pub scheduler_capacity: usize,
    /// Total tasks that may wait for a free `max_in_flight` slot across all targets.
    pub parked_capacity: usize,
    /// How often the sweeper scans the due index.
    pub sweep_interval: Duration,
    /// First retry delay; doubles per attempt up to the target's max_backoff.
    pub retry_base: Duration,
    /// Consecutive failures that open a target's circuit breaker.
    pub breaker_threshold: u32,
    /// How long an open breaker waits before its half-open probe.
    pub breaker_cooldown: Duration,
    /// How long in-flight deliveries may finish on shutdown.
    pub shutdown_grace: Duration,
    /// Networks that targets may reach although they are private/loopback/etc.
    pub allowed_target_networks: Vec<IpNet>,
}

impl Default for EngineConfig {
    fn default() -> Self {
        EngineConfig {
            workers: default_delivery_workers(),
            concurrency: DEFAULT_DELIVERY_CONCURRENCY,
            body_budget: DEFAULT_DELIVERY_BODY_BUDGET,
            // Each task in memory costs ~3 KiB (payload, headers, target); these bounds keep
            // a backlog of any size under ~30 MiB of tasks. Beyond them the due index holds
            // the work, which costs disk, not memory.
            queue_capacity: 4096,
            scheduler_capacity: 4096,
            parked_capacity: 2048,
            sweep_interval: Duration::from_secs(1),
            retry_base: Duration::from_secs(1),
            breaker_threshold: 5,
            breaker_cooldown: Duration::from_secs(30),
            shutdown_grace: Duration::from_secs(5),
            allowed_target_networks: Vec::new(),
        }
    }
}

/// A configuration variable that could not be used.
#[derive(Debug, thiserror::Error)]
#[error("invalid value for {var}: {reason}")]
pub struct ConfigError {
    /// The environment variable at fault.
    pub var: &'static str,
    /// What is wrong with it.
    pub reason: String,
}

impl Config {
    /// Where a process on this machine reaches the server, in the order to try: its
    /// `HOST` itself, or loopback when it listens on every address (`0.0.0.0`:
    /// 127.0.0.1; `::`: ::1, then 127.0.0.1, which a dual-stack socket accepts too).
    pub fn local_addrs(&self) -> Vec<SocketAddr> {
        let port = self.listen.port();
        match self.listen.ip() {
            std::net::IpAddr::V4(ip) if ip.is_unspecified() => {
                vec![SocketAddr::from(([127, 0, 0, 1], port))]
            }
            std::net::IpAddr::V6(ip) if ip.is_unspecified() => vec![
                SocketAddr::from((std::net::Ipv6Addr::LOCALHOST, port)),
                SocketAddr::from(([127, 0, 0, 1], port)),
            ],
            _ => vec![self.listen],
        }
    }

    /// Reads `.env` (if present, never overriding the real environment), then the environment.
    pub fn from_env() -> Result<Config, ConfigError> {
        // A missing .env is normal; a malformed one is an error worth stopping for. Only
        // the working directory's: a `.env` in a parent directory belongs to something else.
        match dotenvy::from_path(".env") {
            Ok(_) => {}
            Err(e) if e.not_found() => {}
            Err(e) => {
                return Err(ConfigError {
                    var: ".env",
                    reason: e.to_string(),
                });
            }
        }
        Config::from_lookup(|k| std::env::var(k).ok())
    }

    /// Builds the configuration from any key lookup; `from_env` passes the process environment.
    pub fn from_lookup(get: impl Fn(&str) -> Option<String>) -> Result<Config, ConfigError> {
        let get = |k: &str| get(k).filter(|v| !v.trim().is_empty());
        let port: u16 = parse(&get, "PORT", 8080)?;
        let host: std::net::IpAddr = parse(&get, "HOST", std::net::IpAddr::from([0, 0, 0, 0]))?;
        let environment = match get("WEBHOOKER_ENVIRONMENT").as_deref().map(str::trim) {
            None | Some("dev") => Environment::Dev,
            Some("prod") => Environment::Prod,
            Some(other) => {
                return Err(ConfigError {
                    var: "WEBHOOKER_ENVIRONMENT",
                    reason: format!("expected `dev` or `prod`, got `{other}`"),
                });
            }
        };
        let base_url = match get("BASE_URL") {
            None => None,
            Some(url) => {
                let trimmed = url.trim().trim_end_matches('/').to_string();
                if !(trimmed.starts_with("http://") || trimmed.starts_with("https://")) {
                    return Err(ConfigError {
                        var: "BASE_URL",
                        reason: "must start with http:// or https://".into(),
                    });
                }
                Some(trimmed)
            }
        };
        let max_body_bytes: usize = parse(&get, "MAX_BODY_BYTES", DEFAULT_MAX_BODY_BYTES)?;
        let workers: usize = parse(&get, "DELIVERY_WORKERS", default_delivery_workers())?;
        if workers == 0 || workers > 1024 {
            return Err(ConfigError {
                var: "DELIVERY_WORKERS",
                reason: "must be between 1 and 1024".into(),
            });
        }
        let concurrency: usize = parse(&get, "DELIVERY_CONCURRENCY", DEFAULT_DELIVERY_CONCURRENCY)?;
        if !(1..=100_000).contains(&concurrency) {
            return Err(ConfigError {
                var: "DELIVERY_CONCURRENCY",
                reason: "must be between 1 and 100000".into(),
            });
        }
        let body_budget: u64 = parse(
            &get,
            "DELIVERY_BODY_BUDGET_BYTES",
            DEFAULT_DELIVERY_BODY_BUDGET,
        )?;
        if body_budget < 1024 * 1024 {
            return Err(ConfigError {
                var: "DELIVERY_BODY_BUDGET_BYTES",
                reason: "must be at least 1048576 (1 MiB)".into(),
            });
        }
        let metrics_credentials = match (get("METRICS_USERNAME"), get("METRICS_PASSWORD")) {
            (Some(u), Some(p)) => Some((u, p)),
            (None, None) => None,
            (Some(_), None) => {
                return Err(ConfigError {
                    var: "METRICS_PASSWORD",
                    reason: "must be set when METRICS_USERNAME is".into(),
                });
            }
            (None, Some(_)) => {
                return Err(ConfigError {
                    var: "METRICS_USERNAME",
                    reason: "must be set when METRICS_PASSWORD is".into(),
                });
            }
        };
        let allowed_target_networks = match get("ALLOWED_TARGET_NETWORKS") {
            None => Vec::new(),
            Some(list) => parse_networks(&list).map_err(|reason| ConfigError {
                var: "ALLOWED_TARGET_NETWORKS",
                reason,
            })?,
        };
        let trust_proxy = parse_bool(&get, "TRUST_PROXY")?;
        let debug = parse_bool(&get, "DEBUG")?;
        let log_filter = match get("RUST_LOG") {
            Some(filter) => {
                tracing_subscriber::EnvFilter::try_new(&filter).map_err(|e| ConfigError {
                    var: "RUST_LOG",
                    reason: format!("`{filter}`: {e}"),
                })?;
                filter
            }
            None if debug => "debug".to_string(),
            None => DEFAULT_LOG_FILTER.to_string(),
        };
        let max_open_event_files: usize =
            parse(&get, "MAX_OPEN_EVENT_FILES", DEFAULT_MAX_OPEN_EVENT_FILES)?;
        if !(2..=100_000).contains(&max_open_event_files) {
            return Err(ConfigError {
                var: "MAX_OPEN_EVENT_FILES",
                reason: "must be between 2 and 100000".into(),
            });
        }
        let event_cache_bytes: usize = parse(&get, "EVENT_CACHE_BYTES", DEFAULT_EVENT_CACHE_BYTES)?;
        if event_cache_bytes < max_open_event_files * 256 * 1024 {
            return Err(ConfigError {
                var: "EVENT_CACHE_BYTES",
                reason: "must give each open event file at least 256 KiB (MAX_OPEN_EVENT_FILES × 262144)".into(),
            });
        }
        let max_connections: usize = parse(&get, "MAX_CONNECTIONS", DEFAULT_MAX_CONNECTIONS)?;
        if !(16..=1_000_000).contains(&max_connections) {
            return Err(ConfigError {
                var: "MAX_CONNECTIONS",
                reason: "must be between 16 and 1000000".into(),
            });
        }
        let admin_password = get("WEBHOOKER_ADMIN_PASSWORD");
        // One over the maximum could never log in. (The minimum is checked when the value
        // is used, at the first run: later starts ignore it, so an older deployment's
        // shorter one must not stop them.)
        if admin_password
            .as_ref()
            .is_some_and(|p| p.len() > crate::model::MAX_PASSWORD)
        {
            return Err(ConfigError {
                var: "WEBHOOKER_ADMIN_PASSWORD",
                reason: format!(
                    "must be at most {} bytes: a longer password can never log in",
                    crate::model::MAX_PASSWORD
                ),
            });
        }
        Ok(Config {
            listen: SocketAddr::new(host, port),
            data_dir: PathBuf::from(get("DATA_DIR").unwrap_or_else(|| "./data".into())),
            environment,
            base_url,
            max_body_bytes,
            metrics_credentials,
            admin_password,
            trust_proxy,
            log_filter,
            http: HttpConfig {
                max_connections,
                max_connections_per_client: (!trust_proxy)
                    .then(|| per_client_share(max_connections)),
                ..HttpConfig::default()
            },
            engine: EngineConfig {
                workers,
                concurrency,
                body_budget,
                allowed_target_networks,
                ..EngineConfig::default()
            },
            store: StoreConfig {
                max_open_event_files,
                event_cache_bytes,
                checkpoint_after: DEFAULT_CHECKPOINT_AFTER,
            },
        })
    }

    /// A configuration for tests and embedding: loopback, an OS-chosen port, the given data dir.
    pub fn for_data_dir(data_dir: impl Into<PathBuf>) -> Config {
        Config {
            listen: SocketAddr::from(([127, 0, 0, 1], 0)),
            data_dir: data_dir.into(),
            environment: Environment::Dev,
            base_url: None,
            max_body_bytes: DEFAULT_MAX_BODY_BYTES,
            metrics_credentials: None,
            admin_password: None,
            trust_proxy: false,
            log_filter: DEFAULT_LOG_FILTER.to_string(),
            http: HttpConfig::default(),
            engine: EngineConfig::default(),
            store: StoreConfig::default(),
        }
    }
}

/// One client's share of the connection cap: a quarter, so one address alone cannot take
/// every connection.
pub fn per_client_share(max_connections: usize) -> usize {
    (max_connections / 4).max(4)
}

/// Parses a comma-separated CIDR list; a bare address counts as a single-host network.
pub fn parse_networks(list: &str) -> Result<Vec<IpNet>, String> {
    list.split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(|s| {
            s.parse::<IpNet>()
                .or_else(|_| s.parse::<std::net::IpAddr>().map(IpNet::from))
                .map_err(|_| format!("`{s}` is not a CIDR network"))
        })
        .collect()
}

fn parse<T: std::str::FromStr>(
    get: &impl Fn(&str) -> Option<String>,
    var: &'static str,
    default: T,
) -> Result<T, ConfigError>
where
    T::Err: std::fmt::Display,
{
    match get(var) {
        None => Ok(default),
        Some(v) => v.trim().parse().map_err(|e: T::Err| ConfigError {
            var,
            reason: format!("`{v}`: {e}"),
        }),
    }
}

fn parse_bool(
    get: &impl Fn(&str) -> Option<String>,
    var: &'static str,
) -> Result<bool, ConfigError> {
    match get(var).map(|v| v.trim().to_ascii_lowercase()) {
        None => Ok(false),
        Some(v) if matches!(v.as_str(), "1" | "true" | "yes" | "on") => Ok(true),
        Some(v) if matches!(v.as_str(), "0" | "false" | "no" | "off") => Ok(false),
        Some(v) => Err(ConfigError {
            var,
            reason: format!("`{v}` is not a boolean (true/false)"),
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    fn load(pairs: &[(&str, &str)]) -> Result<Config, ConfigError> {
        let map: HashMap<String, String> = pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        Config::from_lookup(|k| map.get(k).cloned())
    }

    #[test]
    fn defaults() {
        let c = load(&[]).unwrap();
        assert_eq!(c.listen.port(), 8080);
        assert_eq!(c.data_dir, PathBuf::from("./data"));
        assert_eq!(c.max_body_bytes, 10 * 1024 * 1024);
        assert_eq!(c.engine.workers, default_delivery_workers());
        assert!(c.engine.workers >= 2);
        assert_eq!(c.engine.concurrency, 512);
        assert_eq!(c.engine.body_budget, 64 * 1024 * 1024);
        assert_eq!(c.store.max_open_event_files, 64);
        assert_eq!(c.store.cache_per_file(), 4 * 1024 * 1024);
        assert_eq!(c.http.max_connections, 1024);
        assert_eq!(c.log_filter, "info,tower_http=warn");
        assert_eq!(load(&[("DEBUG", "1")]).unwrap().log_filter, "debug");
        assert_eq!(
            load(&[("DEBUG", "false")]).unwrap().log_filter,
            c.log_filter
        );
        let explicit = load(&[("DEBUG", "1"), ("RUST_LOG", "webhooker=trace")]).unwrap();
        assert_eq!(explicit.log_filter, "webhooker=trace");
        assert_eq!(c.http.max_connections_per_client, Some(256));
        let proxied = load(&[("TRUST_PROXY", "true")]).unwrap();
        assert_eq!(proxied.http.max_connections_per_client, None);
        assert!(c.metrics_credentials.is_none());
    }

    #[test]
    fn the_healthcheck_reaches_the_configured_host_or_loopback() {
        let addrs = |host: &str| {
            load(&[("HOST", host), ("PORT", "9000")])
                .unwrap()
                .local_addrs()
                .iter()
                .map(ToString::to_string)
                .collect::<Vec<_>>()
        };
        assert_eq!(addrs("0.0.0.0"), ["127.0.0.1:9000"]);
        assert_eq!(addrs("::"), ["[::1]:9000", "127.0.0.1:9000"]);
        assert_eq!(addrs("10.1.2.3"), ["10.1.2.3:9000"]);
        assert_eq!(addrs("::1"), ["[::1]:9000"]);
        assert_eq!(
            load(&[]).unwrap().local_addrs()[0].to_string(),
            "127.0.0.1:8080"
        );
    }

    #[test]
    fn bad_values_name_the_variable() {
        for (var, val) in [
            ("PORT", "eighty"),
            ("HOST", "localhost:1"),
            ("MAX_BODY_BYTES", "-1"),
            ("DELIVERY_WORKERS", "0"),
            ("DELIVERY_CONCURRENCY", "0"),
            ("DELIVERY_BODY_BUDGET_BYTES", "1000"),
            ("MAX_OPEN_EVENT_FILES", "1"),
            ("EVENT_CACHE_BYTES", "1024"),
            ("WEBHOOKER_ENVIRONMENT", "staging"),
            ("ALLOWED_TARGET_NETWORKS", "10.0.0.0/33"),
            ("TRUST_PROXY", "maybe"),
            ("DEBUG", "verbose"),
            ("RUST_LOG", "webhooker=[[["),
            ("MAX_CONNECTIONS", "3"),
            ("BASE_URL", "example.com"),
            ("METRICS_USERNAME", "u"),
        ] {
            let err = load(&[(var, val)]).unwrap_err();
            let expected = if var == "METRICS_USERNAME" {
                "METRICS_PASSWORD"
            } else {
                var
            };
            assert_eq!(err.var, expected, "{var}={val}");
        }
    }

    /// A configured admin password that could never log in stops startup, naming the
    /// variable; a short one is left to the first run (see `Service::ensure_admin`).
    #[test]
    fn admin_password_over_the_maximum_stops_startup() {
        use crate::model::{MAX_PASSWORD, MIN_PASSWORD};
        let var = "WEBHOOKER_ADMIN_PASSWORD";
        let short = "x".repeat(MIN_PASSWORD - 1);
        let longest = "é".repeat(MAX_PASSWORD / 2);
        for ok in [short.as_str(), longest.as_str()] {
            let c = load(&[(var, ok)]).unwrap();
            assert_eq!(c.admin_password.as_deref(), Some(ok));
        }
        let too_long = "x".repeat(MAX_PASSWORD + 1);
        let err = load(&[(var, &too_long)]).unwrap_err();
        assert_eq!(err.var, var);
        assert!(
            !err.to_string().contains(&too_long),
            "the password is not echoed"
        );
    }

    #[test]
    fn networks_parse() {
        let n = parse_networks("127.0.0.0/8, ::1, 10.1.2.3").unwrap();
        assert_eq!(n.len(), 3);
    }
}
