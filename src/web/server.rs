//! The accept loop. `axum::serve` gives no deadline for request headers and no cap on open
//! connections, so a few thousand half-sent requests (slowloris) could hold every file
//! descriptor. Here each connection needs a permit, one client may hold only a share of
//! them, hyper drops a client that is too slow with its headers (which also ends idle
//! keep-alive connections), a response left unread times out, and shutdown drains within a
//! bound.

use std::collections::HashMap;
use std::convert::Infallible;
use std::future::Future;
use std::net::IpAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::http::Request;
use hyper::body::Incoming;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::server::graceful::GracefulShutdown;
use tokio::net::TcpListener;
use tokio::sync::Semaphore;
use tokio_io_timeout::TimeoutStream;

use super::{HttpApp, client_key};
use crate::config::{HttpConfig, per_client_share};

/// Largest request head (request line and headers); more is answered 431. Also bounds the
/// read buffer each connection may grow to.
const MAX_HEAD_BYTES: usize = 64 * 1024;
/// What a client over its connection share hears before the connection is closed.
const TOO_MANY_CONNECTIONS: &[u8] = b"HTTP/1.1 429 Too Many Requests\r\nconnection: close\r\n\
    content-type: application/json\r\ncontent-length: 38\r\n\r\n\
    {\"error\":\"too many open connections\"}\n";

/// File descriptors kept free for everything but client connections: the redb files,
/// connections to targets, logs.
const RESERVED_FDS: u64 = 256;
/// How long open requests may finish after shutdown begins.
const DRAIN_TIMEOUT: Duration = Duration::from_secs(10);

/// The connection cap to use: `configured`, lowered (with a warning) when the process may
/// not open that many files.
fn connection_cap(configured: usize) -> usize {
    let Ok((soft, _hard)) = rlimit::getrlimit(rlimit::Resource::NOFILE) else {
        return configured;
    };
    let fits = usize::try_from(soft.saturating_sub(RESERVED_FDS))
        .unwrap_or(usize::MAX)
        .max(16);
    if fits < configured {
        tracing::warn!(
            configured,
            open_file_limit = soft,
            using = fits,
            "MAX_CONNECTIONS exceeds what the open-file limit allows; lowering it"
        );
        return fits;
    }
    configured
}

/// Serves `app` on `listener` until `shutdown` completes, then stops accepting and gives
/// open requests `DRAIN_TIMEOUT` to finish.
pub async fn serve(
    listener: TcpListener,
    app: HttpApp,
    limits: &HttpConfig,
    shutdown: impl Future<Output = ()>,
) {
    let cap = connection_cap(limits.max_connections);
    let permits = Arc::new(Semaphore::new(cap));
    // A share of the cap actually in force, which the open-file limit may have lowered.
    let per_client = limits
        .max_connections_per_client
        .map(|share| ClientShares::new(share.min(per_client_share(cap))));
    let mut http = hyper::server::conn::http1::Builder::new();
    // Both limits are needed: hyper checks `max_buf_size` only while a head is incomplete,
    // and a single read can carry its buffer well past that size with a whole head in it
    // (a 112 KiB header got through), while `max_header_size` also checks a parsed head.
    http.timer(TokioTimer::new())
        .header_read_timeout(limits.header_read_timeout)
        .max_header_size(MAX_HEAD_BYTES)
        .max_buf_size(MAX_HEAD_BYTES);
    let graceful = GracefulShutdown::new();
    let mut shutdown = std::pin::pin!(shutdown);
    let mut accept_failures = AcceptFailures::default();
    loop {
        // Take the permit before accepting: at the cap, new clients wait in the kernel's
        // backlog instead of costing a descriptor each.
        let permit = tokio::select! {
            permit = permits.clone().acquire_owned() => match permit {
                Ok(permit) => permit,
                Err(_closed) => break,
            },
            () = &mut shutdown => break,
        };
        let (stream, peer) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(accepted) => {
                    accept_failures.accepted();
                    accepted
                }
                Err(e) => {
                    // Anything but the client's own failure (such as running out of file
                    // descriptors) would spin the loop: wait a moment first.
                    if accept_failures.failed(&e) {
                        tokio::time::sleep(ACCEPT_PAUSE).await;
                    }
                    continue;
                }
            },
            () = &mut shutdown => break,
        };
        let share = match &per_client {
            None => None,
            Some(shares) => match shares.take(peer.ip()) {
                Some(share) => Some(share),
                None => {
                    tracing::debug!(%peer, "connection refused: client over its share");
                    tokio::spawn(refuse(stream, permit));
                    continue;
                }
            },
        };
        // Small JSON answers: do not let Nagle hold them back waiting for an ACK.
        if let Err(e) = stream.set_nodelay(true) {
            tracing::debug!(error = %e, "cannot set TCP_NODELAY");
        }
        let mut stream = TimeoutStream::new(stream);
        stream.set_write_timeout(Some(limits.write_timeout));
        let app = app.clone();
        let service = hyper::service::service_fn(move |req: Request<Incoming>| {
            let app = app.clone();
            async move { Ok::<_, Infallible>(app.handle(req, peer).await) }
        });
        let io = TokioIo::new(Box::pin(stream));
        let conn = graceful.watch(http.serve_connection(io, service));
        tokio::spawn(async move {
            if let Err(e) = conn.await {
                tracing::debug!(error = %e, %peer, "connection ended with an error");
            }
            drop((permit, share));
        });
    }
    drop(listener);
    if tokio::time::timeout(DRAIN_TIMEOUT, graceful.shutdown())
        .await
        .is_err()
    {
        tracing::warn!(
            "open requests did not finish within the drain timeout; shutting down without them"
        );
    }
}

/// Answers a client over its share with 429 and closes. The unread request is drained
/// for a moment first: closing with it unread would make the kernel send a reset, and
/// many clients then report "connection reset" instead of the answer. The connection
/// keeps its permit meanwhile, so refusals cannot pile up beyond the cap.
async fn refuse(mut stream: tokio::net::TcpStream, permit: tokio::sync::OwnedSemaphorePermit) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let linger = async {
        stream.write_all(TOO_MANY_CONNECTIONS).await?;
        stream.shutdown().await?;
        let mut sink = [0u8; 4096];
        let mut drained = 0;
        while drained < MAX_HEAD_BYTES {
            match stream.read(&mut sink).await? {
                0 => break,
                n => drained += n,
            }
        }
        Ok::<(), std::io::Error>(())
    };
    let _ = tokio::time::timeout(Duration::from_secs(1), linger).await;
    drop(permit);
}

/// Open connections per client (see [`client_key`]), each at most a share of the cap.
struct ClientShares {
    limit: usize,
    open: Mutex<HashMap<IpAddr, usize>>,
}

/// One connection counted against its client's share, given back on drop.
struct ClientShare {
    shares: Arc<ClientShares>,
    key: IpAddr,
}

impl ClientShares {
    fn new(limit: usize) -> Arc<ClientShares> {
        Arc::new(ClientShares {
            limit,
            open: Mutex::new(HashMap::new()),
        })
    }

    /// Counts a connection from `ip`, or `None` when its client already has its share.
    fn take(self: &Arc<Self>, ip: IpAddr) -> Option<ClientShare> {
        let key = client_key(ip);
        let mut open = self.open.lock().unwrap_or_else(|p| p.into_inner());
        let count = open.entry(key).or_insert(0);
        if *count >= self.limit {
            return None;
        }
        *count += 1;
        Some(ClientShare {
            shares: self.clone(),
            key,
        })
    }
}

impl Drop for ClientShare {
    fn drop(&mut self) {
        let mut open = self.shares.open.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(count) = open.get_mut(&self.key) {
            *count -= 1;
            if *count == 0 {
                open.remove(&self.key);
            }
        }
    }
}

/// How long the accept loop waits after a failure that is not the client's.
const ACCEPT_PAUSE: Duration = Duration::from_secs(1);

/// The accept loop's failure episodes. A failure that is not the client's (such as running
/// out of file descriptors) lasts while it lasts, and the loop meets it every
/// [`ACCEPT_PAUSE`]: it is logged at ERROR when it begins, at DEBUG while it goes on, and
/// its end, the next accept that succeeds, at INFO with how many accepts failed.
#[derive(Debug, Default)]
struct AcceptFailures {
    /// The current episode: when it began and how many accepts have failed in it.
    episode: Option<(Instant, u64)>,
}

impl AcceptFailures {
    /// Notes a failed accept; whether the loop should pause before the next one (not after
    /// a per-connection error, which is the client's business).
    fn failed(&mut self, e: &std::io::Error) -> bool {
        use std::io::ErrorKind as K;
        if matches!(
            e.kind(),
            K::ConnectionRefused | K::ConnectionAborted | K::ConnectionReset
        ) {
            return false;
        }
        match &mut self.episode {
            None => {
                tracing::error!(
                    error = %e,
                    "accept failed; retrying every second, quietly, until it succeeds (logged once)"
                );
                self.episode = Some((Instant::now(), 1));
            }
            Some((_, failed)) => {
                *failed += 1;
                tracing::debug!(error = %e, failed = *failed, "accept still fails");
            }
        }
        true
    }

    /// Notes a successful accept, which ends an episode.
    fn accepted(&mut self) {
        if let Some((since, failed)) = self.episode.take() {
            tracing::info!(
                failed,
                failed_for_ms = since.elapsed().as_millis(),
                "accepting connections again"
            );
        }
    }
}

/// Raises this process's open-file soft limit to its hard limit, so the default
/// `MAX_CONNECTIONS` fits on systems whose soft limit is 1024. Returns the new limit.
pub fn raise_open_file_limit() -> std::io::Result<u64> {
    rlimit::increase_nofile_limit(u64::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_canned_429_is_well_formed() {
        let text = std::str::from_utf8(TOO_MANY_CONNECTIONS).unwrap();
        let (head, body) = text.split_once("\r\n\r\n").unwrap();
        let length = head
            .lines()
            .find_map(|l| l.strip_prefix("content-length: "))
            .unwrap();
        assert_eq!(length.parse::<usize>().unwrap(), body.len());
        let json: serde_json::Value = serde_json::from_str(body).unwrap();
        assert!(json["error"].is_string());
    }

    /// Descriptors running out fail every accept until one is closed: one ERROR when that
    /// begins, one INFO with the count when an accept succeeds again; a client's reset is
    /// neither logged nor waited after.
    #[test]
    fn accept_failures_are_logged_once_per_episode() {
        let logged = crate::test_log::Logged::default();
        let mut failures = AcceptFailures::default();
        tracing::subscriber::with_default(logged.subscriber(), || {
            let emfile = std::io::Error::from_raw_os_error(24);
            for _ in 0..5 {
                assert!(failures.failed(&emfile));
            }
            let reset = std::io::Error::from(std::io::ErrorKind::ConnectionReset);
            assert!(!failures.failed(&reset));
            failures.accepted();
            failures.accepted();
            assert!(failures.failed(&emfile));
        });
        let log = logged.text();
        let lines = |level: &str| log.lines().filter(|l| l.contains(level)).count();
        // Two episodes: the second began with the last failure.
        assert_eq!(lines("ERROR"), 2, "{log}");
        assert_eq!(lines(" INFO "), 1, "{log}");
        assert!(
            log.contains("accepting connections again") && log.contains("failed=5"),
            "{log}"
        );
        assert_eq!(lines("DEBUG"), 4, "{log}");
    }
}
