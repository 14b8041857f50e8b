//! What is wrong with storage now: every event file that cannot be opened or written, why,
//! and since when. The writers and the file map record a failure when its episode begins
//! and clear it when the file opens or commits again; the healthcheck reads it. One entry
//! per webhook and operation, so it is bounded by the number of webhooks, and an episode
//! is logged once, where it is recorded, not by every caller that meets it.

use std::collections::HashMap;
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, Ordering};

use uuid::Uuid;

use super::StoreError;
use crate::model::{Millis, now_ms};

/// What could not be done with an event file.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Operation {
    /// Opening it (or reading it at open).
    Open,
    /// Committing a write to it.
    Write,
}

impl Operation {
    /// Lower-case name, as the healthcheck reports it.
    pub fn as_str(self) -> &'static str {
        match self {
            Operation::Open => "open",
            Operation::Write => "write",
        }
    }
}

/// Why, as far as the operating system says.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Cause {
    /// No space (or quota) left on the filesystem.
    DiskFull,
    /// The process or the system has no file descriptor left.
    DescriptorsExhausted,
    /// Any other error (permissions, I/O, a file of another format version).
    Other,
}

impl Cause {
    /// Lower-case name, as the healthcheck reports it.
    pub fn as_str(self) -> &'static str {
        match self {
            Cause::DiskFull => "disk_full",
            Cause::DescriptorsExhausted => "descriptors_exhausted",
            Cause::Other => "error",
        }
    }

    fn of(e: &StoreError) -> Cause {
        let io = match e {
            StoreError::CannotOpen(cause) => return Cause::of(cause),
            StoreError::Io(io) => Some(io),
            StoreError::Redb(e) => match &**e {
                redb::Error::Io(io) => Some(io),
                _ => None,
            },
            _ => None,
        };
        // ENOSPC 28, EDQUOT 122; EMFILE 24, ENFILE 23 (Linux numbering).
        match io.and_then(std::io::Error::raw_os_error) {
            Some(28 | 122) => Cause::DiskFull,
            Some(23 | 24) => Cause::DescriptorsExhausted,
            _ if io.is_some_and(|e| e.kind() == std::io::ErrorKind::StorageFull) => Cause::DiskFull,
            _ => Cause::Other,
        }
    }
}

/// One event file's current failure.
#[derive(Debug, Clone)]
pub struct FileProblem {
    /// The webhook whose file it is.
    pub webhook_id: Uuid,
    /// What failed.
    pub operation: Operation,
    /// Why, classified.
    pub cause: Cause,
    /// The error as first met in this episode.
    pub error: String,
    /// When the episode began.
    pub since: Millis,
}

/// Below this much free space on the data directory's filesystem, storage is reported
/// degraded before writes start failing: event files grow in steps (and keep up to 32 MiB
/// zero-filled ahead), so a commit may need several MiB at once.
pub const MIN_FREE_BYTES: u64 = 64 << 20;

/// The current failures of every event file, and whether the disk is nearly full.
#[derive(Debug, Default)]
pub struct StorageHealth {
    problems: Mutex<HashMap<(Uuid, Operation), FileProblem>>,
    /// Whether the last look at free space found less than [`MIN_FREE_BYTES`].
    disk_low: AtomicBool,
}

impl StorageHealth {
    /// Records a failure; `true` when it begins an episode (the caller logs it then, once).
    pub(crate) fn failed(&self, webhook_id: Uuid, operation: Operation, e: &StoreError) -> bool {
        let mut problems = self.lock();
        if problems.contains_key(&(webhook_id, operation)) {
            return false;
        }
        problems.insert(
            (webhook_id, operation),
            FileProblem {
                webhook_id,
                operation,
                cause: Cause::of(e),
                error: e.to_string(),
                since: now_ms(),
            },
        );
        true
    }

    /// Ends an episode, if one was going on; returns it.
    pub(crate) fn recovered(&self, webhook_id: Uuid, operation: Operation) -> Option<FileProblem> {
        self.lock().remove(&(webhook_id, operation))
    }

    /// Forgets a deleted webhook's file.
    pub(crate) fn forget(&self, webhook_id: Uuid) {
        self.lock().retain(|(id, _), _| *id != webhook_id);
    }

    /// Notes the free space just read (`None`: the system would not say); whether it is
    /// below [`MIN_FREE_BYTES`]. Like a file's failure, a low disk is logged once when the
    /// episode begins (WARN) and once when it ends (INFO), however often it is looked at.
    pub(crate) fn note_free_bytes(&self, free: Option<u64>) -> bool {
        let low = free.is_some_and(|b| b < MIN_FREE_BYTES);
        if self.disk_low.swap(low, Ordering::Relaxed) != low {
            if low {
                tracing::warn!(
                    free_bytes = free,
                    "the data directory's filesystem is nearly full: writes fail when it is full"
                );
            } else {
                tracing::info!(
                    free_bytes = free,
                    "the data directory's filesystem has room again"
                );
            }
        }
        low
    }

    /// Every current failure, oldest first.
    pub fn problems(&self) -> Vec<FileProblem> {
        let mut out: Vec<FileProblem> = self.lock().values().cloned().collect();
        out.sort_by_key(|p| (p.since, p.webhook_id));
        out
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<(Uuid, Operation), FileProblem>> {
        // Every update is a single insert or remove: a panic leaves the map whole.
        self.problems.lock().unwrap_or_else(|p| p.into_inner())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_episode_is_reported_once_and_ends_on_recovery() {
        let health = StorageHealth::default();
        let id = Uuid::new_v4();
        let full = StoreError::Io(std::io::Error::from_raw_os_error(28));
        assert!(health.failed(id, Operation::Write, &full));
        assert!(!health.failed(id, Operation::Write, &full), "same episode");
        let emfile = StoreError::Io(std::io::Error::from_raw_os_error(24));
        assert!(health.failed(id, Operation::Open, &emfile));
        let problems = health.problems();
        assert_eq!(problems.len(), 2);
        let causes: Vec<_> = problems.iter().map(|p| p.cause).collect();
        assert!(causes.contains(&Cause::DiskFull));
        assert!(causes.contains(&Cause::DescriptorsExhausted));
        assert!(health.recovered(id, Operation::Write).is_some());
        assert!(health.recovered(id, Operation::Write).is_none());
        health.forget(id);
        assert!(health.problems().is_empty());
    }

    #[test]
    fn a_nearly_full_disk_is_an_episode_logged_once() {
        let logged = crate::test_log::Logged::default();
        let _guard = tracing::subscriber::set_default(logged.subscriber());
        let health = StorageHealth::default();
        assert!(!health.note_free_bytes(Some(MIN_FREE_BYTES)));
        assert!(!health.note_free_bytes(None), "unknown is not low");
        for _ in 0..3 {
            assert!(health.note_free_bytes(Some(MIN_FREE_BYTES - 1)));
        }
        assert!(!health.note_free_bytes(Some(10 * MIN_FREE_BYTES)));
        let text = logged.text();
        assert_eq!(text.matches("nearly full").count(), 1, "{text}");
        assert_eq!(text.matches("has room again").count(), 1, "{text}");
    }
}
