//! Durable storage: the main redb file and one redb file per webhook.
//!
//! This is the only module that names redb or bincode. Table definitions live at the top of
//! `main_db.rs` and `event_db.rs`; values are encoded by `codec.rs`.
//!
//! API boundary: callers see [`Store`], [`MainDb`], [`EventStore`] and the `model` types.

mod calls;
mod catalog;
mod codec;
mod due_times;
mod event_db;
mod health;
mod journal;
mod main_db;
mod migrate;
mod notice;
mod pending;
mod writer;
mod zero_ahead;

use std::collections::{HashMap, HashSet};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, RwLock};

use uuid::Uuid;

use crate::config::StoreConfig;
use crate::model::{Millis, now_ms};

pub use catalog::Catalog;
pub use due_times::{DueTimes, EarliestDue};
pub use event_db::{
    AttemptWrite, DedupeKey, DeliveryCounts, DueRow, EventDetail, EventFilter, EventStore,
    EventWithBody, ExportPage, FAILURE_TIME_STEP_MS, FileOverview, FoundEvent, INLINE_BODY_BYTES,
    NewEvent, PruneReport, SEARCH_BODY_BYTES, ScanReport, TargetCounts, WriteOp,
    contains_ignoring_case,
};
pub use health::{Cause, FileProblem, MIN_FREE_BYTES, Operation, StorageHealth};
use journal::Journal;
pub use main_db::{MainDb, Replaced};
pub use notice::{Committed, Notice};
use writer::WriterPool;

/// Version of the main file's on-disk layout, checked at open. 2: webhooks carry sender
/// verification and http targets a signing secret. 3: webhooks carry dedupe, targets a
/// filter and http targets a transform. An older file is migrated at open (`migrate.rs`).
pub const MAIN_FORMAT_VERSION: u32 = 3;

/// The oldest main-file version this build reads (and migrates).
const MAIN_OLDEST_READABLE: u32 = 1;

/// Version of the event files' on-disk layout, checked at open: an event row holds the
/// event, the deliveries its own commit finished (delivered or skipped, with only what
/// the event does not imply; a skip's reason by its number in `skip_reasons`) and a body
/// under `INLINE_BODY_BYTES`; larger bodies are in chunks (`body_chunks`); an attempt's
/// result row carries what went over the wire (the request sent, the response headers:
/// `model::AttemptExchange`); the `dedupe` tables hold the webhook's idempotency keys.
/// Versions 1 to 5 were development layouts that no release wrote, so a file of an older
/// version is refused with an error naming it (`EVENTS_OLDEST_READABLE`), as is a newer
/// one. A later change of layout raises this, and reads or rewrites the older version at
/// open (`event_db::open_database`).
pub const EVENTS_FORMAT_VERSION: u32 = 6;

/// The oldest event-file version this build reads: the current one, until a release has
/// shipped a version that a later layout must read.
const EVENTS_OLDEST_READABLE: u32 = EVENTS_FORMAT_VERSION;

/// Everything that can go wrong below the service layer.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// redb failed (I/O, corruption, lock).
    #[error("database error: {0}")]
    Redb(#[from] Box<redb::Error>),
    /// A stored value could not be encoded or decoded.
    #[error("record encoding error: {0}")]
    Codec(String),
    /// The file was written by an incompatible version.
    #[error("{path}: format version {found}, this build understands {expected}")]
    FormatVersion {
        /// The file.
        path: PathBuf,
        /// Version found in the file.
        found: u32,
        /// Version this build writes.
        expected: u32,
    },
    /// Another process holds the file (redb's lock): a server running on this data
    /// directory, or another admin command.
    #[error("{0} is in use by another process (is webhooker running on this data directory?)")]
    InUse(PathBuf),
    /// Filesystem error outside redb (creating the data dir, removing a file).
    #[error("I/O error: {0}")]
    Io(#[from] std::io::Error),
    /// The per-webhook writer has stopped (shutdown or webhook deleted).
    #[error("event store is closed")]
    Closed,
    /// The per-webhook writer queue is full; the caller should retry later.
    #[error("event store is overloaded")]
    Busy,
    /// A write to the event file failed (a full disk, an I/O error), so nothing was stored;
    /// its writer reopens the file and tries again shortly (the cause is logged there).
    #[error("event storage is unavailable after a failed write")]
    Unavailable,
    /// The webhook's event file cannot be opened (the cause inside). The store logs it
    /// once per failure episode and the healthcheck reports it, so callers that meet it
    /// need not log it again.
    #[error("the event file cannot be opened: {0}")]
    CannotOpen(Box<StoreError>),
    /// The webhook does not exist (any more), so neither does its event file.
    #[error("no such webhook")]
    UnknownWebhook,
    /// The event does not exist (any more): retention may remove one at any time.
    #[error("no such event")]
    UnknownEvent,
    /// The request's idempotency key was stored with this event within the webhook's
    /// dedupe window; nothing was written.
    #[error("duplicate of event {0}")]
    Duplicate(Uuid),
}

impl StoreError {
    /// Whether trying again later may succeed: the disk or the writer is failing or busy
    /// now. Not a missing or undecodable record, an unknown webhook or event, or a file of
    /// another version: those stay as they are.
    pub fn is_transient(&self) -> bool {
        match self {
            StoreError::Unavailable | StoreError::Busy | StoreError::Closed => true,
            StoreError::Io(_) => true,
            StoreError::Redb(e) => matches!(**e, redb::Error::Io(_) | redb::Error::PreviousIo),
            StoreError::CannotOpen(cause) => cause.is_transient(),
            StoreError::Codec(_)
            | StoreError::FormatVersion { .. }
            | StoreError::InUse(_)
            | StoreError::UnknownWebhook
            | StoreError::UnknownEvent
            | StoreError::Duplicate(_) => false,
        }
    }
}

/// Checks a file's stored format version against the `current` one this build writes and
/// the oldest it reads: `Ok(true)` when `current` must be written (a new file, or an older
/// readable one), `Ok(false)` when it matches, an error naming the file otherwise (newer,
/// or too old).
fn check_format_version(
    path: &Path,
    found: Option<u32>,
    current: u32,
    oldest_readable: u32,
) -> Result<bool, StoreError> {
    match found {
        None => Ok(true),
        Some(v) if v == current => Ok(false),
        Some(v) if (oldest_readable..current).contains(&v) => Ok(true),
        Some(found) => Err(StoreError::FormatVersion {
            path: path.to_path_buf(),
            found,
            expected: current,
        }),
    }
}

macro_rules! from_redb {
    ($($t:ty),*) => {$(
        impl From<$t> for StoreError {
            fn from(e: $t) -> Self {
                StoreError::Redb(Box::new(redb::Error::from(e)))
            }
        }
    )*};
}
from_redb!(
    redb::Error,
    redb::DatabaseError,
    redb::TransactionError,
    redb::TableError,
    redb::StorageError,
    redb::CommitError,
    redb::CompactionError,
    redb::SetDurabilityError
);

/// Both kinds of file, opened under one data directory.
pub struct Store {
    /// Users, keys, sessions, webhooks, entrypoints, targets, settings.
    pub main: MainDb,
    events: EventStores,
    /// Where async callers run blocking store calls (`Store::call`).
    calls: calls::CallPool,
}

impl Store {
    /// Opens (creating if needed) the data directory and its main file, with the default
    /// event-file limits.
    pub fn open(data_dir: &Path) -> Result<Store, StoreError> {
        Store::open_with(data_dir, StoreConfig::default())
    }

    /// Opens (creating if needed) the data directory and its main file; at most
    /// `limits.max_open_event_files` event files will be open at once.
    pub fn open_with(data_dir: &Path, limits: StoreConfig) -> Result<Store, StoreError> {
        create_private_dir(data_dir)?;
        let main = MainDb::open(&data_dir.join("webhooker.redb"))?;
        // Before any event file is used: the commits a crash cut off are in the journal.
        let journal_dir = data_dir.join(JOURNAL_DIR);
        let kept = replay_journal(data_dir, &journal_dir)?;
        let journal = Arc::new(Journal::start(&journal_dir, limits.checkpoint_after, kept)?);
        Ok(Store {
            main,
            events: EventStores {
                dir: data_dir.to_path_buf(),
                open: RwLock::new(HashMap::new()),
                opening: Mutex::new(false),
                writers: WriterPool::start(
                    writer::default_writer_threads(),
                    Some(journal.clone()),
                )?,
                journal,
                due_times: Arc::default(),
                limits,
                uses: AtomicU64::new(0),
                pending: Mutex::default(),
            },
            calls: calls::CallPool::start(calls::CALL_THREADS)?,
        })
    }

    /// Runs `f`, a blocking call (redb reads and writes, password hashing), on the store's
    /// fixed pool of call threads and waits for it without blocking an async thread. `Busy`
    /// when too many calls are waiting; `Closed` after `close`.
    pub async fn call<T: Send + 'static>(
        &self,
        f: impl FnOnce() -> T + Send + 'static,
    ) -> Result<T, StoreError> {
        self.calls.run(f).await
    }

    /// The current in-memory snapshot of webhooks, entrypoints and targets.
    pub fn catalog(&self) -> Arc<Catalog> {
        self.main.catalog()
    }

    /// The event file of an existing webhook, opened on first use and kept open. Refuses
    /// webhooks missing from the catalog (checked again under the open lock), so a late
    /// write for a deleted webhook cannot bring its file back.
    pub fn events(&self, webhook_id: Uuid) -> Result<Arc<EventStore>, StoreError> {
        self.events
            .get_or_open(webhook_id, || self.catalog().webhook(webhook_id).is_some())
    }

    /// Creates (or opens) the event file of a webhook being created.
    pub fn create_events(&self, webhook_id: Uuid) -> Result<Arc<EventStore>, StoreError> {
        let store = self.events.get_or_open(webhook_id, || true)?;
        if self.events.due_times.get(webhook_id) == EarliestDue::Unknown {
            self.events.due_times.set(webhook_id, store.earliest_due()?);
        }
        Ok(store)
    }

    /// The event file of a webhook if it is already open (no I/O, never waits for an open).
    pub fn events_if_open(&self, webhook_id: Uuid) -> Option<Arc<EventStore>> {
        self.events
            .read()
            .get(&webhook_id)
            .map(|s| self.events.touch(s))
    }

    /// Queues a write for a webhook's event file without waiting for the file to open:
    /// an open file's writer gets it at once (waiting for room in its queue, like
    /// [`EventStore::submit`]); for a closed file it waits while one of the call threads
    /// opens the file, together with every other write for that file that arrives
    /// meanwhile, in order. A write that cannot be queued (the file cannot be opened, no
    /// room) fires its notice with the reason, as a failed commit does.
    pub fn submit_to(self: &Arc<Self>, webhook_id: Uuid, op: WriteOp, notice: Notice) {
        let mut pending = self.events.lock_pending();
        if !pending.has(webhook_id)
            && let Some(store) = self.events_if_open(webhook_id)
        {
            // Nothing waits for this file, so this write keeps its place without the lock.
            drop(pending);
            let _refused = store.submit(op, notice);
            return;
        }
        match pending.push(webhook_id, op, notice) {
            pending::Queued::Behind => {}
            pending::Queued::Full(notice) => notice.complete(Err(StoreError::Busy)),
            pending::Queued::First => {
                drop(pending);
                let store = self.clone();
                let started = self.calls.spawn(move || store.open_for_pending(webhook_id));
                if let Err(e) = started {
                    self.fail_pending(webhook_id, &e);
                }
            }
        }
    }

    /// Opens a webhook's file and hands it the writes waiting for it, in order.
    fn open_for_pending(&self, webhook_id: Uuid) {
        let opened = self.events(webhook_id);
        match opened {
            Ok(store) => {
                // Under the lock, so a write submitted meanwhile queues behind these.
                let mut pending = self.events.lock_pending();
                for (op, notice) in pending.take(webhook_id) {
                    // Never waits: the lock is held. A full queue refuses with `Busy`.
                    let _refused = store.try_submit(op, notice);
                }
            }
            Err(e) => self.fail_pending(webhook_id, &e),
        }
    }

    /// Fires the notices of the writes waiting for a file that cannot be opened.
    fn fail_pending(&self, webhook_id: Uuid, e: &StoreError) {
        let writes = self.events.lock_pending().take(webhook_id);
        if !writes.is_empty() {
            tracing::warn!(webhook_id = %webhook_id, error = %e, writes = writes.len(), "event file could not be opened for waiting writes");
        }
        for (_, notice) in writes {
            notice.complete(Err(match e {
                StoreError::Busy => StoreError::Busy,
                StoreError::UnknownWebhook => StoreError::UnknownWebhook,
                StoreError::Closed => StoreError::Closed,
                _ => StoreError::Unavailable,
            }));
        }
    }

    /// Event files open now.
    pub fn open_event_files(&self) -> usize {
        self.events.read().len()
    }

    /// Bytes free for webhooker on the data directory's filesystem, if it can tell, and
    /// whether that is below [`MIN_FREE_BYTES`] (noted in [`Store::health`], which logs a
    /// change once).
    pub fn free_space(&self) -> (Option<u64>, bool) {
        let free = rustix::fs::statvfs(&self.events.dir)
            .ok()
            .map(|stat| stat.f_bavail.saturating_mul(stat.f_frsize));
        (free, self.health().note_free_bytes(free))
    }

    /// The event files that cannot be opened or written now (the healthcheck's source).
    pub fn health(&self) -> &StorageHealth {
        self.events.writers.health()
    }

    /// Each webhook's earliest due time, as far as known (see [`DueTimes`]).
    pub fn due_times(&self) -> &DueTimes {
        &self.events.due_times
    }

    /// Reads the earliest due time of a webhook's file into [`Store::due_times`] and returns
    /// it. A file that is not open is opened for the read and closed again, so learning
    /// every webhook's (at start) holds no file open.
    pub fn learn_earliest_due(&self, webhook_id: Uuid) -> Result<Option<Millis>, StoreError> {
        let learned = match self.events_if_open(webhook_id) {
            Some(store) => store.earliest_due()?,
            None => {
                // Under the open lock: nobody opens the file while it is read here.
                let closed = self.events.lock_opening();
                if *closed {
                    return Err(StoreError::Closed);
                }
                let open = self.events.read().get(&webhook_id).cloned();
                match open {
                    Some(store) => store.earliest_due()?,
                    // Its file lacks commits the journal holds: only a full open (which
                    // applies them) tells its due rows.
                    None if self.events.journal.holds(webhook_id) => {
                        drop(closed);
                        return self.learn_from_open_file(webhook_id);
                    }
                    None => {
                        let path = self.events.path(webhook_id);
                        if path.exists() {
                            // The read opens the file: it counts against the cap too.
                            if self.events.read().len() >= self.events.limits.max_open_event_files {
                                self.events.make_room()?;
                            }
                            let peeked = event_db::peek_earliest_due(&path);
                            self.events.note_open(webhook_id, &peeked);
                            peeked.map_err(|e| StoreError::CannotOpen(Box::new(e)))?
                        } else {
                            None
                        }
                    }
                }
            }
        };
        self.events.due_times.set(webhook_id, learned);
        Ok(learned)
    }

    /// Opens a webhook's file the full way (see `learn_earliest_due`) and reads its
    /// earliest due time.
    fn learn_from_open_file(&self, webhook_id: Uuid) -> Result<Option<Millis>, StoreError> {
        let learned = self.events(webhook_id)?.earliest_due()?;
        self.events.due_times.set(webhook_id, learned);
        Ok(learned)
    }

    /// Closes and deletes a webhook's event file.
    pub fn remove_events(&self, webhook_id: Uuid) -> Result<(), StoreError> {
        // Under the open lock: nobody can be opening this file meanwhile.
        let _opening = self.events.lock_opening();
        let store = self.events.write().remove(&webhook_id);
        if let Some(store) = store {
            store.close();
        }
        self.events.due_times.forget(webhook_id);
        self.events.writers.health().forget(webhook_id);
        match std::fs::remove_file(self.events.path(webhook_id)) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(e.into()),
        }
        // Its records in the journal have no file to go to (a replay passes over them).
        self.events.journal.covered(webhook_id);
        Ok(())
    }

    /// Stops every event writer after it has committed what it holds. No file is opened
    /// after this (late callers get `Closed`).
    pub fn close(&self) {
        {
            let mut closed = self.events.lock_opening();
            *closed = true;
            let all: Vec<_> = self.events.write().drain().map(|(_, s)| s).collect();
            for store in all {
                store.close();
            }
        }
        // Without the open lock: a call waiting for it to open a file must get `Closed`
        // and finish, or joining the call threads would wait for it forever. Calls may
        // still wait for commits, so the writers stop last.
        self.calls.close();
        self.events.writers.stop();
        // Every file checkpointed as it closed: this leaves the journal empty.
        self.events.journal.stop();
    }
}

/// Creates the data directory, if it is missing, readable by its owner alone: its files
/// hold secrets (signing and verification secrets, session keys) and every event's body.
/// An existing directory keeps the mode it was given.
fn create_private_dir(dir: &Path) -> std::io::Result<()> {
    use std::os::unix::fs::DirBuilderExt;
    if dir.is_dir() {
        return Ok(());
    }
    if let Some(parent) = dir.parent().filter(|p| !p.as_os_str().is_empty()) {
        std::fs::create_dir_all(parent)?;
    }
    match std::fs::DirBuilder::new().mode(0o700).create(dir) {
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => Ok(()),
        other => other,
    }
}

/// The commit journal's directory under the data directory.
const JOURNAL_DIR: &str = "journal";
/// Event files a replay keeps open at once.
const REPLAY_OPEN_FILES: usize = 64;

/// A webhook's event file in the data directory `dir`.
fn events_path(dir: &Path, webhook_id: Uuid) -> PathBuf {
    dir.join(format!("events-{webhook_id}.redb"))
}

/// Applies the journal's commits that their event files lost in a crash (see
/// `journal.rs`), and makes every file it touched durable. A record of a file that no
/// longer exists (its webhook was deleted) is passed over. Returns the webhooks whose
/// files could not take their records (a file that cannot be opened, a full disk): the
/// journal keeps those records, and the file gets them when it is next opened. Reading
/// the journal itself failing stops the start, the journal kept.
fn replay_journal(data_dir: &Path, journal_dir: &Path) -> Result<HashSet<Uuid>, StoreError> {
    let mut open: HashMap<Uuid, redb::Database> = HashMap::new();
    let mut gone = HashSet::new();
    let mut failed = HashSet::new();
    let (mut applied, mut read) = (0u64, 0u64);
    let note_failure = |failed: &mut HashSet<Uuid>, id: Uuid, e: &StoreError| {
        tracing::error!(webhook_id = %id, error = %e, "replaying the journal into an event file failed; the journal keeps its commits for the file's next open");
        failed.insert(id);
    };
    let checkpoint_all = |open: &mut HashMap<Uuid, redb::Database>, failed: &mut HashSet<Uuid>| {
        for (id, db) in open.drain() {
            if let Err(e) = event_db::checkpoint(&db) {
                note_failure(failed, id, &e);
            }
        }
    };
    journal::for_each_record(journal_dir, |record| {
        read += 1;
        let id = record.webhook_id;
        if gone.contains(&id) || failed.contains(&id) {
            return Ok(());
        }
        if !open.contains_key(&id) {
            let path = events_path(data_dir, id);
            if !path.exists() {
                gone.insert(id);
                return Ok(());
            }
            if open.len() >= REPLAY_OPEN_FILES {
                checkpoint_all(&mut open, &mut failed);
            }
            match event_db::open_existing(&path) {
                Ok(db) => {
                    open.insert(id, db);
                }
                Err(e) => {
                    note_failure(&mut failed, id, &e);
                    return Ok(());
                }
            }
        }
        let replayed = match open.get(&id) {
            Some(db) => event_db::replay(db, record.seq, &record.ops),
            None => Ok(false),
        };
        match replayed {
            Ok(done) => applied += u64::from(done),
            Err(e) => {
                open.remove(&id);
                note_failure(&mut failed, id, &e);
            }
        }
        Ok(())
    })
    .inspect_err(|e| {
        tracing::error!(error = %e, dir = %journal_dir.display(), "reading the journal failed; it is kept for the next start");
    })?;
    checkpoint_all(&mut open, &mut failed);
    if read > 0 {
        tracing::info!(
            records = read,
            applied,
            files_failed = failed.len(),
            "replayed the journal after an unclean stop"
        );
    }
    Ok(failed)
}

/// How long opening an event file waits for an open one to be idle before it gives up with
/// `Busy` (every open file in use).
const ROOM_WAIT: std::time::Duration = std::time::Duration::from_secs(2);

/// Lazily opened per-webhook files, keyed by webhook id.
struct EventStores {
    dir: PathBuf,
    /// Lookups only take the read lock, so ingest never waits for a file being opened.
    open: RwLock<HashMap<Uuid, Arc<EventStore>>>,
    /// Serialises opening and removing files (redb locks a file: two opens of one file
    /// would fail). Holds whether the store is closed.
    opening: Mutex<bool>,
    /// Commits the writes of every open file.
    writers: WriterPool,
    /// Makes the writers' commits durable (see `journal.rs`).
    journal: Arc<Journal>,
    /// Each webhook's earliest due time, kept by the writers.
    due_times: Arc<DueTimes>,
    limits: StoreConfig,
    /// A clock of uses: each use of a file stamps it with the next tick, so the least
    /// recently used one has the smallest stamp.
    uses: AtomicU64,
    /// Writes waiting for their closed file to be opened (`Store::submit_to`).
    pending: Mutex<pending::PendingWrites>,
}

impl EventStores {
    fn path(&self, webhook_id: Uuid) -> PathBuf {
        events_path(&self.dir, webhook_id)
    }

    // Poisoned locks are recovered: a panic cannot leave these maps inconsistent.
    fn read(&self) -> std::sync::RwLockReadGuard<'_, HashMap<Uuid, Arc<EventStore>>> {
        self.open.read().unwrap_or_else(|p| p.into_inner())
    }

    fn write(&self) -> std::sync::RwLockWriteGuard<'_, HashMap<Uuid, Arc<EventStore>>> {
        self.open.write().unwrap_or_else(|p| p.into_inner())
    }

    fn lock_pending(&self) -> std::sync::MutexGuard<'_, pending::PendingWrites> {
        self.pending.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn lock_opening(&self) -> std::sync::MutexGuard<'_, bool> {
        self.opening.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Stamps `store` as used now.
    fn touch(&self, store: &Arc<EventStore>) -> Arc<EventStore> {
        store.used(self.uses.fetch_add(1, Ordering::Relaxed));
        store.clone()
    }

    fn get_or_open(
        &self,
        webhook_id: Uuid,
        exists: impl FnOnce() -> bool,
    ) -> Result<Arc<EventStore>, StoreError> {
        if let Some(s) = self.read().get(&webhook_id) {
            return Ok(self.touch(s));
        }
        let closed = self.lock_opening();
        if *closed {
            return Err(StoreError::Closed);
        }
        if let Some(s) = self.read().get(&webhook_id) {
            return Ok(self.touch(s));
        }
        if !exists() {
            return Err(StoreError::UnknownWebhook);
        }
        if self.read().len() >= self.limits.max_open_event_files {
            self.make_room()?;
        }
        let opened = EventStore::open(
            webhook_id,
            &self.path(webhook_id),
            &self.writers,
            self.due_times.clone(),
            self.limits.cache_per_file(),
        );
        self.note_open(webhook_id, &opened);
        let opened = Arc::new(opened.map_err(|e| StoreError::CannotOpen(Box::new(e)))?);
        self.write().insert(webhook_id, opened.clone());
        Ok(self.touch(&opened))
    }

    /// Records an open's outcome for the healthcheck: a failure is logged at ERROR when its
    /// episode begins (not by each caller meeting it, such as the sweeper every second), a
    /// success after failures at INFO.
    fn note_open<T>(&self, webhook_id: Uuid, outcome: &Result<T, StoreError>) {
        let health = self.writers.health();
        match outcome {
            Ok(_) => {
                if let Some(problem) = health.recovered(webhook_id, Operation::Open) {
                    tracing::info!(
                        webhook_id = %webhook_id,
                        failed_for_ms = now_ms().saturating_sub(problem.since),
                        "the event file opens again"
                    );
                }
            }
            Err(e) => {
                if health.failed(webhook_id, Operation::Open, e) {
                    tracing::error!(
                        webhook_id = %webhook_id,
                        path = %self.path(webhook_id).display(),
                        error = %e,
                        "cannot open event file; its webhook's events fail until it opens (logged once)"
                    );
                }
            }
        }
    }

    /// Closes a file to make room for another, waiting up to [`ROOM_WAIT`] for one to be
    /// idle (a file goes idle as soon as its writes are committed, so a burst of traffic to
    /// more webhooks than files waits about a commit, not fails). Called under the open lock.
    fn make_room(&self) -> Result<(), StoreError> {
        let deadline = std::time::Instant::now() + ROOM_WAIT;
        loop {
            match self.close_least_recently_used() {
                Err(StoreError::Busy) if std::time::Instant::now() < deadline => {
                    std::thread::sleep(std::time::Duration::from_millis(1));
                }
                other => return other,
            }
        }
    }

    /// Closes the least recently used idle file: one nobody holds (the map's is the only
    /// handle: others clone it only under the map's lock, held here) and with no write
    /// queued or being committed, so no user has it closed under them. `Busy` when every
    /// open file is in use. Called under the open lock.
    fn close_least_recently_used(&self) -> Result<(), StoreError> {
        let idle = {
            let mut open = self.write();
            let lru = open
                .iter()
                .filter(|(_, s)| Arc::strong_count(s) == 1 && s.closable())
                .min_by_key(|(_, s)| s.last_used())
                .map(|(id, _)| *id);
            lru.and_then(|id| open.remove(&id))
        };
        match idle {
            Some(store) => {
                store.close();
                Ok(())
            }
            None => Err(StoreError::Busy),
        }
    }
}
