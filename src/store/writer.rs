//! The writer pool: a fixed set of threads that commit the writes of every event file.
//!
//! Each file keeps its own queue of writes ([`FileWriter`]). A file with writes waiting is
//! in the pool's ring once; the pool thread that takes it commits everything queued for it
//! (up to a batch) in ONE fsync'd transaction (group commit), fires the writes' notices,
//! and puts the file back at the end of the ring if more came meanwhile. So one thread at
//! a time serves a file (redb has one writer per file anyway), files with writes waiting
//! take turns, and the number of threads does not grow with the number of webhooks.
//!
//! The pool also runs short jobs for the files (zero-filling ahead, see `zero_ahead.rs`),
//! and serves a file whose writes failed when its pause is over, write or no write, so its
//! readers do not wait for the next write to see it reopened.

use std::collections::VecDeque;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard, Weak};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use redb::Database;
use uuid::Uuid;

use super::StoreError;
use super::due_times::DueTimes;
use super::event_db::{BatchOutcome, SharedDb, SyncBy, WriteOp, checkpoint, commit, replay};
use super::health::{Operation, StorageHealth};
use super::journal::{self, Completion, Journal};
use super::notice::Notice;
use crate::model::Millis;

/// Most writes of one file committed in one transaction.
const MAX_BATCH_OPS: usize = 1024;
/// Most bytes (bodies, mostly) committed in one transaction.
const MAX_BATCH_BYTES: usize = 16 * 1024 * 1024;
/// Writes one file may have waiting; beyond that ingest gets 503 and delivery threads wait.
const QUEUE_CAP: usize = 8192;
/// After a failed write, the next batch tries again (the error may have been a passing one);
/// if that fails too, it pauses this long, doubled after each failure up to [`RETRY_MAX`].
const RETRY_FIRST: Duration = Duration::from_secs(1);
/// See [`RETRY_FIRST`].
const RETRY_MAX: Duration = Duration::from_secs(10);
/// A timer that found its file being served looks again this much later.
const TIMER_RETRY: Duration = Duration::from_millis(50);

/// Threads of the pool: twice the cores. Writers compute (the journal syncs their
/// commits) but wait for each file's checkpoint, once a second per busy file: with many
/// files checkpointing, one thread per core was slower (docs/performance.md).
pub(crate) fn default_writer_threads() -> usize {
    std::thread::available_parallelism()
        .map_or(2, |n| n.get() * 2)
        .clamp(2, 8)
}

/// Runs a short job for a file on the pool.
pub(crate) type Spawner = Arc<dyn Fn(Box<dyn FnOnce() + Send>) + Send + Sync>;

/// The pool's threads and its ring of work; cheap to clone.
#[derive(Clone)]
pub(crate) struct WriterPool {
    pool: Arc<Pool>,
    threads: Arc<Mutex<Vec<JoinHandle<()>>>>,
    /// Where its files' failure episodes are recorded.
    health: Arc<StorageHealth>,
    /// Where its files' commits are made durable; without one each commit syncs itself.
    journal: Option<Arc<Journal>>,
}

struct Pool {
    state: Mutex<PoolState>,
    work: Condvar,
}

#[derive(Default)]
struct PoolState {
    ring: VecDeque<Work>,
    /// Failed files to serve at a time even without writes (their reopen).
    timers: Vec<(Instant, Weak<FileWriter>)>,
    stopping: bool,
}

enum Work {
    File(Arc<FileWriter>),
    Job(Box<dyn FnOnce() + Send>),
}

impl WriterPool {
    /// Starts `threads` writer threads, whose files journal their commits in `journal`
    /// (without one, each commit syncs itself). They log to the subscriber of whoever
    /// starts the pool: the global one in the app, a test's own in tests.
    pub(crate) fn start(
        threads: usize,
        journal: Option<Arc<Journal>>,
    ) -> std::io::Result<WriterPool> {
        let pool = Arc::new(Pool {
            state: Mutex::default(),
            work: Condvar::new(),
        });
        let log = tracing::dispatcher::get_default(Clone::clone);
        let mut handles = Vec::new();
        for i in 0..threads.max(1) {
            let (pool, log) = (pool.clone(), log.clone());
            handles.push(
                std::thread::Builder::new()
                    .name(format!("writer-{i}"))
                    .spawn(move || tracing::dispatcher::with_default(&log, || pool.run()))?,
            );
        }
        Ok(WriterPool {
            pool,
            threads: Arc::new(Mutex::new(handles)),
            health: Arc::default(),
            journal,
        })
    }

    /// The current failures of the files it writes (and of opening them, see `Store`).
    pub(crate) fn health(&self) -> &Arc<StorageHealth> {
        &self.health
    }

    /// The journal its files' commits go to, if any.
    pub(crate) fn journal(&self) -> Option<&Arc<Journal>> {
        self.journal.as_ref()
    }

    /// Runs jobs for files on the pool.
    pub(crate) fn spawner(&self) -> Spawner {
        let pool = self.pool.clone();
        Arc::new(move |job| pool.push(Work::Job(job)))
    }

    /// Stops the threads once the ring is empty. Files should be closed first: a write
    /// submitted after this waits forever.
    pub(crate) fn stop(&self) {
        self.pool.lock().stopping = true;
        self.pool.work.notify_all();
        let threads: Vec<_> = self
            .threads
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .drain(..)
            .collect();
        for t in threads {
            if t.join().is_err() {
                tracing::error!("writer thread panicked");
            }
        }
    }
}

/// What a pool thread does next.
enum Next {
    Work(Work),
    /// A failed file's pause is over.
    Timer(Weak<FileWriter>),
    Stop,
}

impl Pool {
    fn lock(&self) -> MutexGuard<'_, PoolState> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn push(&self, work: Work) {
        self.lock().ring.push_back(work);
        self.work.notify_one();
    }

    fn add_timer(&self, at: Instant, file: Weak<FileWriter>) {
        self.lock().timers.push((at, file));
        // Some thread must wait with this deadline in mind.
        self.work.notify_all();
    }

    fn run(&self) {
        loop {
            match self.next() {
                Next::Work(Work::File(file)) => file.serve(),
                Next::Work(Work::Job(job)) => job(),
                Next::Timer(weak) => {
                    if let Some(file) = weak.upgrade() {
                        match file.take_turn() {
                            Turn::Taken => {
                                file.timer_set.store(false, Ordering::SeqCst);
                                file.serve();
                            }
                            // Its serving may have begun before the timer was due: look
                            // again shortly rather than trust it to see the timer.
                            Turn::Busy => self.add_timer(Instant::now() + TIMER_RETRY, weak),
                            Turn::Closed => {}
                        }
                    }
                }
                Next::Stop => return,
            }
        }
    }

    fn next(&self) -> Next {
        let mut state = self.lock();
        loop {
            if let Some(work) = state.ring.pop_front() {
                return Next::Work(work);
            }
            let now = Instant::now();
            if let Some(i) = state.timers.iter().position(|(at, _)| *at <= now) {
                return Next::Timer(state.timers.swap_remove(i).1);
            }
            if state.stopping {
                return Next::Stop;
            }
            let next_timer = state.timers.iter().map(|(at, _)| *at).min();
            state = match next_timer {
                Some(at) => {
                    self.work
                        .wait_timeout(state, at.saturating_duration_since(now))
                        .unwrap_or_else(|p| p.into_inner())
                        .0
                }
                None => self.work.wait(state).unwrap_or_else(|p| p.into_inner()),
            };
        }
    }
}

/// One event file's queue of writes and its commit state.
pub(super) struct FileWriter {
    pool: Arc<Pool>,
    jobs: Mutex<Jobs>,
    /// Blocking submitters wait here for room, and `close` for the file to be idle.
    changed: Condvar,
    /// Only the pool thread serving the file takes it.
    writer: Mutex<Writer>,
    /// A timer for the file's reopen is set.
    timer_set: AtomicBool,
    /// Transactions committed (see `EventStore::commits`).
    commits: Arc<AtomicU64>,
    /// The journal its writer appends to, if any.
    journal: Option<Arc<Journal>>,
}

/// Whether a timer got its file's turn.
enum Turn {
    Taken,
    /// Scheduled or being served.
    Busy,
    Closed,
}

/// Whose due times a file's commits update: its webhook's entry in the map.
pub(super) type DueEntry = (Uuid, Arc<DueTimes>);

struct Jobs {
    queue: VecDeque<(WriteOp, Notice)>,
    /// In the pool's ring or being served.
    scheduled: bool,
    /// Writes are refused from now on.
    closed: bool,
}

/// Opens an event file again, after a failed write.
pub(super) type Reopen = Box<dyn Fn() -> Result<Database, StoreError> + Send>;

impl FileWriter {
    /// The writer of the file at `path`, whose database `db` holds, served by `pool`.
    pub(super) fn new(
        pool: &WriterPool,
        db: SharedDb,
        open: Reopen,
        path: PathBuf,
        due: DueEntry,
    ) -> Arc<Self> {
        let commits = Arc::new(AtomicU64::new(0));
        Arc::new(FileWriter {
            pool: pool.pool.clone(),
            jobs: Mutex::new(Jobs {
                queue: VecDeque::new(),
                scheduled: false,
                closed: false,
            }),
            changed: Condvar::new(),
            writer: Mutex::new(Writer {
                db,
                open,
                path,
                due,
                failure: None,
                commits: commits.clone(),
                health: pool.health.clone(),
                journal: pool.journal.clone(),
                unsynced_since: None,
            }),
            timer_set: AtomicBool::new(false),
            commits,
            journal: pool.journal.clone(),
        })
    }

    /// Transactions committed since the file was opened.
    pub(super) fn commits(&self) -> u64 {
        self.commits.load(Ordering::Relaxed)
    }

    fn lock_jobs(&self) -> MutexGuard<'_, Jobs> {
        // Every update of Jobs is a plain push, pop or assignment: a panic leaves it whole.
        self.jobs.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Writes waiting, not counting a batch being committed.
    pub(super) fn queued(&self) -> usize {
        self.lock_jobs().queue.len()
    }

    /// Whether nothing is queued or being committed.
    pub(super) fn idle(&self) -> bool {
        let jobs = self.lock_jobs();
        jobs.queue.is_empty() && !jobs.scheduled
    }

    /// Whether the file failed while commits of it rest on the journal alone: closing it
    /// would leave them to its next open, and keep the journal's segments until then.
    pub(super) fn failed_with_journaled_commits(&self) -> bool {
        let writer = self.writer.lock().unwrap_or_else(|p| p.into_inner());
        writer.failure.is_some() && writer.unsynced_since.is_some()
    }

    /// Queues a write; with `wait`, waits for room, otherwise a full queue refuses it with
    /// `Busy`. A refused write's notice fires with the reason.
    pub(super) fn submit(
        self: &Arc<Self>,
        op: WriteOp,
        notice: Notice,
        wait: bool,
    ) -> Result<(), StoreError> {
        let mut jobs = self.lock_jobs();
        let refused = loop {
            if jobs.closed {
                break Some(StoreError::Closed);
            }
            if jobs.queue.len() < QUEUE_CAP {
                break None;
            }
            if !wait {
                break Some(StoreError::Busy);
            }
            jobs = self.changed.wait(jobs).unwrap_or_else(|p| p.into_inner());
        };
        if let Some(error) = refused {
            drop(jobs);
            let reason = match error {
                StoreError::Busy => StoreError::Busy,
                _ => StoreError::Closed,
            };
            notice.complete(Err(reason));
            return Err(error);
        }
        jobs.queue.push_back((op, notice));
        let schedule = !std::mem::replace(&mut jobs.scheduled, true);
        drop(jobs);
        if schedule {
            self.pool.push(Work::File(self.clone()));
        }
        Ok(())
    }

    /// Refuses further writes, waits until everything queued before is committed and
    /// makes the file's journaled commits durable (a checkpoint), so a closed file needs
    /// nothing from the journal.
    pub(super) fn close(&self) {
        let mut jobs = self.lock_jobs();
        jobs.closed = true;
        while jobs.scheduled {
            jobs = self.changed.wait(jobs).unwrap_or_else(|p| p.into_inner());
        }
        drop(jobs);
        self.writer
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .checkpoint_unsynced();
    }

    /// Takes the file's turn for a timer.
    fn take_turn(&self) -> Turn {
        let mut jobs = self.lock_jobs();
        if jobs.closed {
            Turn::Closed
        } else if std::mem::replace(&mut jobs.scheduled, true) {
            Turn::Busy
        } else {
            Turn::Taken
        }
    }

    /// Commits one batch of the file's writes (or, with none waiting, tries a due reopen),
    /// then gives the file back to the ring if more are waiting.
    fn serve(self: &Arc<Self>) {
        let batch = {
            let mut jobs = self.lock_jobs();
            let mut batch = Vec::new();
            let mut bytes = 0;
            while batch.len() < MAX_BATCH_OPS && bytes < MAX_BATCH_BYTES {
                let Some((op, notice)) = jobs.queue.pop_front() else {
                    break;
                };
                bytes += op.weight();
                batch.push((op, notice));
            }
            batch
        };
        // Room for blocked submitters.
        self.changed.notify_all();
        let (wake_at, journaled) = {
            let mut writer = self.writer.lock().unwrap_or_else(|p| p.into_inner());
            let mut journaled = false;
            if batch.is_empty() {
                if writer.ready() {
                    writer.checkpoint_if_due();
                }
            } else {
                journaled = writer.commit_batch(batch);
            }
            (writer.wake_at(), journaled)
        };
        if let Some(at) = wake_at
            && !self.timer_set.swap(true, Ordering::SeqCst)
        {
            self.pool.add_timer(at, Arc::downgrade(self));
        }
        // The file keeps its turn until the journal has synced this commit: what arrives
        // meanwhile waits for one commit after it, as with a commit that syncs itself, so
        // a file's batches grow with its traffic rather than its commits multiplying.
        if journaled && let Some(journal) = &self.journal {
            let file = self.clone();
            if let Err(release) = journal.after_round(Box::new(move || file.release())) {
                release();
            }
            return;
        }
        self.release();
    }

    /// Ends the file's turn: back to the ring if writes are waiting.
    fn release(self: &Arc<Self>) {
        let mut jobs = self.lock_jobs();
        if jobs.queue.is_empty() {
            jobs.scheduled = false;
            drop(jobs);
            self.changed.notify_all();
        } else {
            drop(jobs);
            self.pool.push(Work::File(self.clone()));
        }
    }
}

/// A file's commit state: its database, and from a failed write until a commit succeeds
/// again, the failure.
struct Writer {
    db: SharedDb,
    /// Opens the file again (see `EventStore::open_with`).
    open: Reopen,
    path: PathBuf,
    /// Updated after each commit that touched the due index.
    due: DueEntry,
    failure: Option<Failure>,
    /// Counts the transactions committed.
    commits: Arc<AtomicU64>,
    health: Arc<StorageHealth>,
    /// Where commits are journaled, if anywhere (see `journal.rs`).
    journal: Option<Arc<Journal>>,
    /// When the first commit not yet durable in the file itself was made (its writes are
    /// in the journal): the next checkpoint is due the journal's `checkpoint_after` later.
    unsynced_since: Option<Instant>,
}

/// A failure episode of the file: from a failed write until a commit succeeds again.
struct Failure {
    since: Instant,
    /// The database must be reopened before the next commit: redb refuses every write after
    /// an I/O error (`PreviousIo`) until it is, and repairs the file on open.
    reopen: bool,
    /// Before this, batches fail at once without touching the file: a disk that stays full
    /// must not cost a reopen (a repair) per request.
    retry_at: Instant,
    /// The pause after the next try that fails.
    pause: Duration,
    /// The last reopen failed: it is tried again when the pause is over, write or no
    /// write (until it opens, the file's readers get `Unavailable`). After a failed write
    /// the first reopen waits for the next write instead: the error may have passed.
    reopen_failed: bool,
}

impl Failure {
    fn retry_later(&mut self, now: Instant) {
        self.retry_at = now + self.pause;
        self.pause = (self.pause * 2).min(RETRY_MAX);
    }
}

impl Writer {
    /// Commits `batch`; returns whether any of it went to the journal (its notices then
    /// fire once the journal has synced it).
    fn commit_batch(&mut self, batch: Vec<(WriteOp, Notice)>) -> bool {
        if !self.ready() {
            fail_all(batch);
            return false;
        }
        let shared = self.db.clone();
        let guard = shared.read().unwrap_or_else(|p| p.into_inner());
        let Some(db) = guard.as_ref() else {
            // Only a failed reopen leaves none, and then `ready` is false.
            fail_all(batch);
            return false;
        };
        let sync = self.sync_for_next_commit();
        let mut journaled = false;
        match commit(db, batch.iter().map(|(op, _)| op), sync) {
            Ok(done) => journaled = self.committed(db, sync, batch, done),
            // Nothing of the batch is stored, whatever request it came with.
            Err(e) if is_io_failure(&e) => {
                self.failed(&e);
                fail_all(batch);
            }
            Err(e) if batch.len() == 1 => {
                if let Some((op, notice)) = batch.into_iter().next() {
                    finish(op, notice, Err(e));
                }
            }
            Err(e) => {
                // One bad request must not fail its neighbours: retry each on its own.
                tracing::warn!(error = %e, ops = batch.len(), "batch commit failed; retrying singly");
                let mut broken = false;
                for (op, notice) in batch {
                    if broken {
                        finish(op, notice, Err(StoreError::Unavailable));
                        continue;
                    }
                    match commit(db, std::iter::once(&op), sync) {
                        Ok(done) => journaled |= self.committed(db, sync, vec![(op, notice)], done),
                        Err(e) if is_io_failure(&e) => {
                            self.failed(&e);
                            broken = true;
                            finish(op, notice, Err(StoreError::Unavailable));
                        }
                        Err(e) => finish(op, notice, Err(e)),
                    }
                }
            }
        }
        journaled
    }

    /// How the next commit is made durable: through the journal, unless there is none
    /// (or it failed), or a checkpoint is due (the commit then syncs the file itself).
    fn sync_for_next_commit(&self) -> SyncBy {
        let journal_usable = self.journal.as_ref().is_some_and(|j| j.usable());
        if journal_usable && !self.checkpoint_due() {
            SyncBy::Journal
        } else {
            SyncBy::File
        }
    }

    /// When the file is due to make its journaled commits durable itself, if it has any.
    fn checkpoint_at(&self) -> Option<Instant> {
        let after = self.journal.as_ref()?.checkpoint_after();
        self.unsynced_since.map(|since| since + after)
    }

    fn checkpoint_due(&self) -> bool {
        self.checkpoint_at().is_some_and(|at| at <= Instant::now())
    }

    /// After a commit of `batch`: records it, and fires the writes' notices, once the
    /// journal has synced them if the commit did not sync itself. Returns whether the
    /// journal took them.
    fn committed(
        &mut self,
        db: &Database,
        sync: SyncBy,
        batch: Vec<(WriteOp, Notice)>,
        done: BatchOutcome,
    ) -> bool {
        self.recovered();
        self.note_commit(done.committed.is_some());
        self.note_due(done.earliest_due);
        let (Some(number), SyncBy::Journal, Some(journal)) =
            (done.committed, sync, self.journal.clone())
        else {
            for ((op, notice), outcome) in batch.into_iter().zip(done.outcomes) {
                finish(op, notice, outcome);
            }
            // After the notices: telling the journal waits for its round.
            if sync == SyncBy::File && done.committed.is_some() {
                self.now_durable();
            }
            return false;
        };
        let stored: Vec<&WriteOp> = batch
            .iter()
            .zip(&done.outcomes)
            .filter(|(_, outcome)| outcome.is_ok())
            .map(|((op, _), _)| op)
            .collect();
        let record = journal::encode(self.due.0, number, &stored);
        drop(stored);
        let mut completions: Vec<Completion> = Vec::with_capacity(batch.len());
        for ((op, notice), outcome) in batch.into_iter().zip(done.outcomes) {
            drop(op);
            match outcome {
                Ok(()) => completions.push((notice, Ok(()))),
                // Refused writes stored nothing: nothing to wait for.
                Err(e) => notice.complete(Err(e)),
            }
        }
        let appended = match record {
            Some(record) => journal.append(self.due.0, record, completions),
            None => Err(completions),
        };
        match appended {
            Ok(()) => {
                self.unsynced_since.get_or_insert_with(Instant::now);
                true
            }
            // The journal cannot take it: the file makes the commit durable itself.
            Err(completions) => {
                let outcome = checkpoint(db);
                match &outcome {
                    Ok(()) => self.now_durable(),
                    Err(e) if is_io_failure(e) => self.failed(e),
                    // Not an episode the file's health records (and logs once), so the
                    // answer's 503, logged quietly as one, must not be its only trace.
                    Err(e) => tracing::error!(
                        path = %self.path.display(),
                        error = %e,
                        "cannot sync an event file's commit"
                    ),
                }
                for (notice, _) in completions {
                    notice.complete(match &outcome {
                        Ok(()) => Ok(()),
                        Err(_) => Err(StoreError::Unavailable),
                    });
                }
                false
            }
        }
    }

    /// Notes a commit that synced the file: every earlier commit is durable in the file,
    /// so the journal need not keep them.
    fn now_durable(&mut self) {
        self.unsynced_since = None;
        if let Some(journal) = &self.journal {
            journal.covered(self.due.0);
        }
    }

    /// Makes the file's journaled commits durable in the file now, if it has any.
    fn checkpoint_unsynced(&mut self) {
        if self.unsynced_since.is_none() || !self.ready() {
            return;
        }
        let shared = self.db.clone();
        let guard = shared.read().unwrap_or_else(|p| p.into_inner());
        let Some(db) = guard.as_ref() else {
            return;
        };
        match checkpoint(db) {
            Ok(()) => {
                self.note_commit(true);
                self.now_durable();
            }
            // The journal keeps the commits meanwhile: the reopen replays them, or the
            // next start does. Any error counts: the file is reopened, not retried at once.
            Err(e) => self.failed(&e),
        }
    }

    /// Checkpoints the file if its first journaled commit is old enough.
    fn checkpoint_if_due(&mut self) {
        if self.checkpoint_due() {
            self.checkpoint_unsynced();
        }
    }

    fn note_commit(&self, committed: bool) {
        if committed {
            self.commits.fetch_add(1, Ordering::Relaxed);
        }
    }

    /// Records the due index's earliest time after a commit that touched it; before the
    /// writes' notices fire, so a sweeper woken by them finds it.
    fn note_due(&self, earliest: Option<Option<Millis>>) {
        if let Some(earliest) = earliest {
            let (webhook_id, times) = &self.due;
            times.set(*webhook_id, earliest);
        }
    }

    /// When the file must be served even without writes: to reopen it after a failed
    /// reopen, or to checkpoint it.
    fn wake_at(&self) -> Option<Instant> {
        // A file whose reopen failed, or that holds commits only the journal has, is
        // reopened on time even without writes: the journal keeps its segments for it.
        let reopen = self
            .failure
            .as_ref()
            .filter(|f| f.reopen && (f.reopen_failed || self.unsynced_since.is_some()))
            .map(|f| f.retry_at);
        // A failed file checkpoints once it is reopened (which replays the journal and
        // syncs): until then, only the reopen is due.
        let checkpoint = match self.failure {
            Some(_) => None,
            None => self.checkpoint_at(),
        };
        reopen.into_iter().chain(checkpoint).min()
    }

    /// Whether a commit may be tried now: always, unless the file failed; then once the
    /// pause after the last try is over and the database has been reopened.
    fn ready(&mut self) -> bool {
        let Some(failure) = &mut self.failure else {
            return true;
        };
        let now = Instant::now();
        if now < failure.retry_at {
            return false;
        }
        if failure.reopen {
            let reopened = reopen(&self.db, &self.open).and_then(|()| match &self.journal {
                Some(journal) => {
                    let guard = self.db.read().unwrap_or_else(|p| p.into_inner());
                    let db = guard.as_ref().ok_or(StoreError::Unavailable)?;
                    catch_up(db, journal, self.due.0).map(drop)
                }
                None => Ok(()),
            });
            if let Err(e) = reopened {
                // A file that lacks acknowledged commits (the journal's, until they are
                // replayed) is not read: readers get `Unavailable` until it is whole.
                let partial = self.db.write().unwrap_or_else(|p| p.into_inner()).take();
                drop(partial);
                failure.reopen_failed = true;
                failure.retry_later(now);
                // The episode was logged when it began, and the healthcheck shows it.
                tracing::debug!(
                    path = %self.path.display(),
                    error = %e,
                    retry_in_ms = (failure.retry_at - now).as_millis(),
                    "reopening the event file failed; its writes keep failing until it opens"
                );
                return false;
            }
            failure.reopen = false;
            failure.reopen_failed = false;
            // `catch_up` replayed and synced what the file had only in the journal: a
            // commit succeeded, which ends the episode.
            self.unsynced_since = None;
            if self.journal.is_some() {
                self.recovered();
            }
        }
        true
    }

    /// Notes a failed write: the file is reopened before the next commit. Logged at ERROR
    /// when an episode begins (and recorded for the healthcheck), at DEBUG when a retry
    /// fails, never per request.
    fn failed(&mut self, e: &StoreError) {
        let now = Instant::now();
        match &mut self.failure {
            None => {
                self.health.failed(self.due.0, Operation::Write, e);
                tracing::error!(
                    path = %self.path.display(),
                    error = %e,
                    "writing the event file failed; its writes fail until it is reopened and a commit succeeds"
                );
                // The first retry is the next batch: the error may have been a passing one.
                self.failure = Some(Failure {
                    since: now,
                    reopen: true,
                    retry_at: now,
                    pause: RETRY_FIRST,
                    reopen_failed: false,
                });
            }
            Some(failure) => {
                failure.reopen = true;
                failure.retry_later(now);
                tracing::debug!(
                    path = %self.path.display(),
                    error = %e,
                    retry_in_ms = (failure.retry_at - now).as_millis(),
                    "writing the event file still fails"
                );
            }
        }
    }

    /// Notes a successful commit, which ends a failure episode.
    fn recovered(&mut self) {
        if let Some(failure) = self.failure.take() {
            self.health.recovered(self.due.0, Operation::Write);
            tracing::info!(
                path = %self.path.display(),
                failed_for_ms = failure.since.elapsed().as_millis(),
                "the event file is writable again"
            );
        }
    }
}

/// Fails every request of `batch`: nothing of it was stored.
fn fail_all(batch: Vec<(WriteOp, Notice)>) {
    for (op, notice) in batch {
        finish(op, notice, Err(StoreError::Unavailable));
    }
}

/// Frees a request's op, then fires its notice with `outcome`: an ingest's notice holds its
/// body's room in the memory budget, so the body must be gone first.
fn finish(op: WriteOp, notice: Notice, outcome: Result<(), StoreError>) {
    drop(op);
    notice.complete(outcome);
}

/// Whether `e` is an I/O failure of redb (ENOSPC, EFBIG, EIO, …), after which it refuses
/// every write of the database with `PreviousIo` until it is reopened.
fn is_io_failure(e: &StoreError) -> bool {
    matches!(e, StoreError::Redb(_)) && e.is_transient()
}

/// Applies the commits of `webhook_id`'s file that the journal holds and `db` lacks, syncs
/// them and tells the journal. For a file reopened after a failed write (redb recovered it
/// to its last synced commit) or opened after it closed without a checkpoint (one that
/// failed): both may lack acknowledged commits. Returns how many it applied.
pub(super) fn catch_up(
    db: &Database,
    journal: &Journal,
    webhook_id: Uuid,
) -> Result<u64, StoreError> {
    // Commits whose records are still on their way must be in the segments first.
    journal.flush();
    let mut replayed = 0;
    journal.replay_file(webhook_id, |seq, ops| {
        replayed += u64::from(replay(db, seq, &ops)?);
        Ok(())
    })?;
    checkpoint(db)?;
    journal.covered(webhook_id);
    if replayed > 0 {
        tracing::info!(webhook_id = %webhook_id, commits = replayed, "replayed the journal into the reopened event file");
    }
    Ok(replayed)
}

/// Closes the file's failed database and opens it again with `open` (redb repairs it).
/// Readers get [`StoreError::Unavailable`] meanwhile rather than waiting for a repair.
fn reopen(db: &SharedDb, open: &Reopen) -> Result<(), StoreError> {
    // redb holds the file's lock until the old database is closed: it must go first.
    let failed = db.write().unwrap_or_else(|p| p.into_inner()).take();
    if let Some(failed) = failed
        && let Err(e) = failed.close()
    {
        // Expected: it reports the I/O error it latched.
        tracing::debug!(error = %e, "closing the failed event database");
    }
    let reopened = open()?;
    *db.write().unwrap_or_else(|p| p.into_inner()) = Some(reopened);
    Ok(())
}
