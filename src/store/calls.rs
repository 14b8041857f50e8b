//! A fixed pool of threads on which async code (the UI, the API, ingest opening a closed
//! event file) runs the store's blocking calls: redb is synchronous and may fsync, and
//! argon2 hashing is CPU work. Its threads exist from start to close, so the process's
//! thread count does not follow the number of webhooks or of requests in progress.

use std::panic::AssertUnwindSafe;
use std::sync::Mutex;
use std::thread::JoinHandle;

use crossbeam_channel::{Sender, TrySendError};

use super::StoreError;

/// Threads of the pool: as many blocking calls run at once. Eight kept the UI and API
/// responsive under parallel use while a burst of webhook creations stayed cheap.
pub(crate) const CALL_THREADS: usize = 8;

/// Calls waiting for a thread; beyond that a call is refused with `Busy` (503).
const CALL_QUEUE: usize = 1024;

type Job = Box<dyn FnOnce() + Send>;

/// The pool; `close` stops it after the calls queued so far.
pub(crate) struct CallPool {
    jobs: Mutex<Option<Sender<Job>>>,
    threads: Mutex<Vec<JoinHandle<()>>>,
}

impl CallPool {
    /// Starts `threads` threads.
    pub(crate) fn start(threads: usize) -> Result<CallPool, StoreError> {
        let (tx, rx) = crossbeam_channel::bounded::<Job>(CALL_QUEUE);
        let mut handles = Vec::with_capacity(threads);
        for i in 0..threads {
            let rx = rx.clone();
            handles.push(
                std::thread::Builder::new()
                    .name(format!("store-call-{i}"))
                    .spawn(move || {
                        for job in rx {
                            // A panicking call (a bug) fails its caller, whose reply
                            // channel is dropped, and leaves the thread serving.
                            let _ = std::panic::catch_unwind(AssertUnwindSafe(job));
                        }
                    })?,
            );
        }
        Ok(CallPool {
            jobs: Mutex::new(Some(tx)),
            threads: Mutex::new(handles),
        })
    }

    /// Runs `f` on a pool thread and waits for its result without blocking the caller's
    /// async thread. `Busy` when the queue is full, `Closed` after `close` or if `f`
    /// panicked.
    pub(crate) async fn run<T: Send + 'static>(
        &self,
        f: impl FnOnce() -> T + Send + 'static,
    ) -> Result<T, StoreError> {
        let (reply, result) = tokio::sync::oneshot::channel();
        let job: Job = Box::new(move || {
            // The caller may have gone (a client hung up); the result is then dropped.
            let _ = reply.send(f());
        });
        let sent = match self.jobs.lock().unwrap_or_else(|p| p.into_inner()).as_ref() {
            Some(jobs) => jobs.try_send(job),
            None => return Err(StoreError::Closed),
        };
        match sent {
            Ok(()) => result.await.map_err(|_| StoreError::Closed),
            Err(TrySendError::Full(_)) => Err(StoreError::Busy),
            Err(TrySendError::Disconnected(_)) => Err(StoreError::Closed),
        }
    }

    /// Runs `job` on a pool thread without waiting for it. `Busy` when the queue is full,
    /// `Closed` after `close`.
    pub(crate) fn spawn(&self, job: impl FnOnce() + Send + 'static) -> Result<(), StoreError> {
        let sent = match self.jobs.lock().unwrap_or_else(|p| p.into_inner()).as_ref() {
            Some(jobs) => jobs.try_send(Box::new(job)),
            None => return Err(StoreError::Closed),
        };
        sent.map_err(|e| match e {
            TrySendError::Full(_) => StoreError::Busy,
            TrySendError::Disconnected(_) => StoreError::Closed,
        })
    }

    /// Refuses new calls, lets the queued ones finish and joins the threads. Must not be
    /// called from a pool thread.
    pub(crate) fn close(&self) {
        drop(self.jobs.lock().unwrap_or_else(|p| p.into_inner()).take());
        let threads = std::mem::take(&mut *self.threads.lock().unwrap_or_else(|p| p.into_inner()));
        for t in threads {
            let _ = t.join();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn runs_calls_and_survives_a_panic() {
        let pool = CallPool::start(2).unwrap();
        assert_eq!(pool.run(|| 6 * 7).await.unwrap(), 42);
        let panicked = pool.run(|| -> u32 { panic!("a bug") }).await;
        assert!(matches!(panicked, Err(StoreError::Closed)));
        // Both threads still serve.
        let (a, b) = tokio::join!(pool.run(|| 1), pool.run(|| 2));
        assert_eq!((a.unwrap(), b.unwrap()), (1, 2));
        pool.close();
        assert!(matches!(pool.run(|| 3).await, Err(StoreError::Closed)));
    }
}
