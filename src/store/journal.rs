//! The commit journal: one append-only log, shared by every event file, that makes their
//! writes durable with one `fdatasync` per round instead of one per file.
//!
//! An event file's writer commits a batch to redb without syncing it
//! (`Durability::None`), appends the batch's writes to the journal as one record, and
//! hands the journal the batch's notices. The journal's one thread writes everything
//! appended since its last round, syncs it once and only then fires those notices. So
//! eight busy webhooks cost one sync per round, as one busy webhook does, and nothing is
//! acknowledged before it is on disk.
//!
//! Each record carries its file's commit number (see `event_db::write`), which the file
//! stores with every commit. Every file makes its commits durable by itself now and then
//! (a checkpoint: an `Immediate` commit, at the latest a second after its first unsynced
//! one, and before it closes); a segment of the journal is deleted once every file with
//! records in it has checkpointed since. After a crash, [`for_each_record`] reads the
//! journal back and the store applies each record whose number is above its file's:
//! exactly the commits the file lost (see `Store::open_with`).
//!
//! A segment is a file of [`SEGMENT_BYTES`], zero-filled when created, holding records
//! `[len: u32 LE][crc32 of payload: u32 LE][segment number: u64 LE][payload]`, the payload
//! being bincode of `(event-file format version, webhook id, commit number, writes)`. Rounds overwrite the zeros, so
//! their `fdatasync` writes data only, no block allocation (as `zero_ahead.rs` does for
//! the event files); a segment no longer needed is renamed to serve as a later one, and
//! the segment number in each record tells its own records from those it held before. A
//! record cut short, damaged or of another segment ends its segment: a round that was
//! never synced acknowledged none of its writes.

use std::collections::{HashMap, HashSet};
use std::fs::File;
use std::io::Write;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use uuid::Uuid;

use super::event_db::WriteOp;
use super::notice::Notice;
use super::{EVENTS_FORMAT_VERSION, StoreError};

/// A segment's size: it is zero-filled to this when created, and takes no more records
/// once it holds this much.
const SEGMENT_BYTES: u64 = 8 * 1024 * 1024;
/// Segments no file needs any more are kept, up to this many, to be reused (renamed) as
/// new ones: their blocks are allocated already.
const MAX_SPARE_SEGMENTS: usize = 4;
/// A segment with records takes no more once it is this old, so a quiet journal's
/// segments can be deleted too.
const SEGMENT_AGE: Duration = Duration::from_secs(2);
/// A round's buffer larger than this is freed after the round rather than kept for reuse.
const MAX_KEPT_BUFFER: usize = 4 * 1024 * 1024;
/// Largest record read back: more than a batch's bound of bytes (see `writer.rs`).
const RECORD_LIMIT: usize = 1 << 30;
/// Bytes before a record's payload: its length, checksum and segment number.
const HEADER_BYTES: usize = 16;

/// A write's notice with the outcome it fires with once its round is synced.
pub(super) type Completion = (Notice, Result<(), StoreError>);

/// Runs once the records appended before it are synced (or their round failed).
pub(super) type AfterRound = Box<dyn FnOnce() + Send>;

/// One commit of one event file, read back from the journal.
pub(super) struct Record {
    /// The webhook whose file made the commit.
    pub(super) webhook_id: Uuid,
    /// The file's commit number.
    pub(super) seq: u64,
    /// The writes the commit applied, in order.
    pub(super) ops: Vec<WriteOp>,
}

/// The journal's files and its syncing thread; shared by the writers of every event file.
pub(crate) struct Journal {
    dir: PathBuf,
    shared: Arc<Shared>,
    thread: Mutex<Option<JoinHandle<()>>>,
    checkpoint_after: Duration,
}

struct Shared {
    state: Mutex<State>,
    /// The syncing thread waits here for records, and `flush` for rounds.
    changed: Condvar,
}

#[derive(Default)]
struct State {
    /// Records appended since the last round began.
    buffer: Vec<u8>,
    /// Whose records `buffer` holds.
    writers: Vec<Uuid>,
    /// What to fire once `buffer` is synced.
    completions: Vec<Completion>,
    /// What to run once every record appended before is synced (see `after_round`).
    after: Vec<AfterRound>,
    /// Records appended, and records a round has finished with (synced or failed).
    appended: u64,
    finished: u64,
    /// The oldest segment holding records of each webhook whose file has not made them
    /// durable itself yet (no checkpoint since).
    unsynced: HashMap<Uuid, u64>,
    /// A round failed to write or sync: no record is taken any more, and the writers
    /// commit durably again (see `Journal::usable`).
    failed: bool,
    stopping: bool,
}

impl Journal {
    /// Starts the journal in `dir` (created if missing), after the store replayed it: the
    /// segments there are deleted, unless `kept` names files whose replay failed; then they
    /// are kept until those files have their commits (see [`holds`](Self::holds)). The
    /// first new segment is created at the first round. Files rely on the journal for at
    /// most `checkpoint_after` (see [`checkpoint_after`](Self::checkpoint_after)).
    pub(crate) fn start(
        dir: &Path,
        checkpoint_after: Duration,
        kept: HashSet<Uuid>,
    ) -> Result<Journal, StoreError> {
        if !dir.exists() {
            std::fs::create_dir_all(dir)?;
            // The directory's own entry must survive a power cut with the records in it.
            if let Some(parent) = dir.parent() {
                File::open(parent)?.sync_all()?;
            }
        }
        let found = segments(dir)?;
        let next = found.last().map_or(1, |n| n + 1);
        let (closed, unsynced) = if kept.is_empty() {
            clear(dir)?;
            (Vec::new(), HashMap::new())
        } else {
            remove_spares(dir)?;
            let oldest = found.first().copied().unwrap_or(next);
            (found, kept.into_iter().map(|id| (id, oldest)).collect())
        };
        let shared = Arc::new(Shared {
            state: Mutex::new(State {
                unsynced,
                ..State::default()
            }),
            changed: Condvar::new(),
        });
        let log = tracing::dispatcher::get_default(Clone::clone);
        let syncer = Syncer {
            shared: shared.clone(),
            dir: dir.to_path_buf(),
            segment: None,
            next,
            closed,
            spares: Vec::new(),
        };
        let thread = std::thread::Builder::new()
            .name("journal".into())
            .spawn(move || tracing::dispatcher::with_default(&log, || syncer.run()))?;
        Ok(Journal {
            dir: dir.to_path_buf(),
            shared,
            thread: Mutex::new(Some(thread)),
            checkpoint_after,
        })
    }

    /// How long after its first journaled commit a file makes its commits durable itself
    /// (a checkpoint): this bounds the journal's size and the replay after a crash.
    pub(super) fn checkpoint_after(&self) -> Duration {
        self.checkpoint_after
    }

    /// Whether writers may commit without syncing and append here: false after a round
    /// failed (the disk is full, say) and once stopping.
    pub(super) fn usable(&self) -> bool {
        let state = self.shared.lock();
        !state.failed && !state.stopping
    }

    /// Appends `record` (see [`encode`]: encoded before, so writers of other files
    /// append meanwhile), a commit of `webhook_id`'s file; `completions` fire once it is
    /// synced. Refused (the completions are handed back) when the journal is not
    /// [`usable`](Self::usable): the writer then makes the commit durable itself.
    pub(super) fn append(
        &self,
        webhook_id: Uuid,
        record: Vec<u8>,
        completions: Vec<Completion>,
    ) -> Result<(), Vec<Completion>> {
        let mut state = self.shared.lock();
        if state.failed || state.stopping {
            return Err(completions);
        }
        state.buffer.extend_from_slice(&record);
        state.writers.push(webhook_id);
        state.completions.extend(completions);
        state.appended += 1;
        drop(state);
        self.shared.changed.notify_all();
        Ok(())
    }

    /// Runs `f` once every record appended before this call is synced or its round has
    /// failed. Handed back when the journal is stopping: the caller runs it.
    pub(super) fn after_round(&self, f: AfterRound) -> Result<(), AfterRound> {
        let mut state = self.shared.lock();
        if state.stopping {
            return Err(f);
        }
        state.after.push(f);
        drop(state);
        self.shared.changed.notify_all();
        Ok(())
    }

    /// Notes that `webhook_id`'s file has made every commit before this call durable (a
    /// checkpoint), or is gone: the journal need not keep its records. Waits for the
    /// records appended before to be synced first, so none of them, noted later, keeps
    /// the file among those whose records are needed.
    pub(super) fn covered(&self, webhook_id: Uuid) {
        self.flush();
        self.shared.lock().unsynced.remove(&webhook_id);
    }

    /// Whether the journal holds records of `webhook_id`'s file that the file may lack: it
    /// closed without a checkpoint (one that failed), or its replay at start failed. Its
    /// opener then catches up (`writer::catch_up`) before anything reads or writes it.
    pub(super) fn holds(&self, webhook_id: Uuid) -> bool {
        self.shared.lock().unsynced.contains_key(&webhook_id)
    }

    /// Waits until every record appended before the call is synced or has failed: then the
    /// segments hold all of them, for a file that reads its own back.
    pub(super) fn flush(&self) {
        let mut state = self.shared.lock();
        let target = state.appended;
        while state.finished < target {
            state = self
                .shared
                .changed
                .wait(state)
                .unwrap_or_else(|p| p.into_inner());
        }
    }

    /// Calls `f` with every commit of `webhook_id`'s file in the journal, oldest first (for
    /// a file that lost its unsynced commits; [`flush`](Self::flush) first).
    pub(super) fn replay_file(
        &self,
        webhook_id: Uuid,
        mut f: impl FnMut(u64, Vec<WriteOp>) -> Result<(), StoreError>,
    ) -> Result<(), StoreError> {
        for_each_record(&self.dir, |record| {
            if record.webhook_id == webhook_id {
                f(record.seq, record.ops)?;
            }
            Ok(())
        })
    }

    /// Syncs what is appended, then stops the thread; the segments no file needs any more
    /// are deleted. Files should be closed first (they checkpoint when they close), so a
    /// clean stop leaves an empty journal.
    pub(crate) fn stop(&self) {
        self.shared.lock().stopping = true;
        self.shared.changed.notify_all();
        let thread = self.thread.lock().unwrap_or_else(|p| p.into_inner()).take();
        if let Some(thread) = thread
            && thread.join().is_err()
        {
            tracing::error!("the journal thread panicked");
        }
    }
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, State> {
        // Every update of State is a push, a take or an assignment: a panic leaves it whole.
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// The journal's thread: writes and syncs rounds, rotates and deletes segments.
struct Syncer {
    shared: Arc<Shared>,
    dir: PathBuf,
    /// The segment records go to; created at the first round after a rotation.
    segment: Option<Segment>,
    /// The number of the next segment.
    next: u64,
    /// Segments that take no more records, oldest first.
    closed: Vec<u64>,
    /// Files of deleted segments, for new ones to reuse.
    spares: Vec<PathBuf>,
}

impl Syncer {
    fn run(mut self) {
        let mut buffer = Vec::new();
        loop {
            let (writers, completions, after, stop) = {
                let mut state = self.shared.lock();
                while state.buffer.is_empty() && state.after.is_empty() && !state.stopping {
                    // Woken for the segment's rotation, and then for deletions.
                    let (next, waited) = self
                        .shared
                        .changed
                        .wait_timeout(state, SEGMENT_AGE)
                        .unwrap_or_else(|p| p.into_inner());
                    state = next;
                    if waited.timed_out() {
                        break;
                    }
                }
                buffer.clear();
                std::mem::swap(&mut buffer, &mut state.buffer);
                (
                    std::mem::take(&mut state.writers),
                    std::mem::take(&mut state.completions),
                    std::mem::take(&mut state.after),
                    state.stopping && buffer.is_empty(),
                )
            };
            if !buffer.is_empty() {
                self.round(&mut buffer, writers, completions);
                // A burst of large bodies must not keep its buffer for the process's life.
                if buffer.capacity() > MAX_KEPT_BUFFER {
                    buffer = Vec::new();
                }
            }
            // Every record appended before these is in this round or an earlier one.
            for f in after {
                f();
            }
            self.rotate_if_due();
            self.delete_covered(MAX_SPARE_SEGMENTS);
            if stop {
                self.delete_if_unneeded();
                return;
            }
        }
    }

    /// Writes and syncs one round's records, then fires their notices.
    fn round(&mut self, records: &mut [u8], writers: Vec<Uuid>, completions: Vec<Completion>) {
        let writes = completions.len();
        let written = self.write(records);
        let mut state = self.shared.lock();
        // Counted as finished whatever happened: `flush` waits for rounds, not success.
        state.finished += writers.len() as u64;
        let failed = match written {
            Ok(segment) => {
                for webhook_id in writers {
                    state.unsynced.entry(webhook_id).or_insert(segment);
                }
                None
            }
            Err(e) => {
                let first = !std::mem::replace(&mut state.failed, true);
                Some((e, first))
            }
        };
        drop(state);
        self.shared.changed.notify_all();
        match failed {
            None => {
                for (notice, outcome) in completions {
                    notice.complete(outcome);
                }
            }
            Some((e, first)) => {
                if first {
                    tracing::error!(
                        dir = %self.dir.display(),
                        error = %e,
                        writes,
                        "writing the journal failed; event files commit durably by themselves until a restart"
                    );
                }
                for (notice, _) in completions {
                    notice.complete(Err(StoreError::Unavailable));
                }
            }
        }
    }

    /// Writes and syncs `records` in the current segment (created now if there is none);
    /// returns its number.
    fn write(&mut self, records: &mut [u8]) -> Result<u64, StoreError> {
        let segment = match &mut self.segment {
            Some(segment) => segment,
            None => {
                let created = Segment::create(&self.dir, self.next, self.spares.pop())?;
                self.next += 1;
                self.segment.insert(created)
            }
        };
        segment.append(records)?;
        Ok(segment.number)
    }

    /// Closes the current segment when it is full or old enough: the next round starts a
    /// new one.
    fn rotate_if_due(&mut self) {
        let due = self.segment.as_ref().is_some_and(|s| {
            s.bytes >= SEGMENT_BYTES || (s.bytes > 0 && s.opened.elapsed() >= SEGMENT_AGE)
        });
        if due && let Some(old) = self.segment.take() {
            self.closed.push(old.number);
        }
    }

    /// At a stop: deletes the current segment and the spares too when no file needs the
    /// records, so a clean stop leaves an empty journal.
    fn delete_if_unneeded(&mut self) {
        let state = self.shared.lock();
        if !state.unsynced.is_empty() || state.failed {
            return;
        }
        drop(state);
        if let Some(current) = self.segment.take() {
            self.closed.push(current.number);
        }
        self.delete_covered(0);
        for spare in self.spares.drain(..) {
            if let Err(e) = std::fs::remove_file(&spare) {
                tracing::warn!(path = %spare.display(), error = %e, "deleting a journal segment failed");
            }
        }
    }

    /// Deletes the closed segments whose records every file has made durable itself,
    /// keeping up to `max_spares` files for new segments.
    fn delete_covered(&mut self, max_spares: usize) {
        let oldest_needed = self
            .shared
            .lock()
            .unsynced
            .values()
            .min()
            .copied()
            .unwrap_or(u64::MAX);
        while let Some(&n) = self.closed.first() {
            if n >= oldest_needed {
                break;
            }
            let path = segment_path(&self.dir, n);
            let kept = self.spares.len() < max_spares;
            let spare = self.dir.join(format!("{n:020}.spare"));
            let removed = if kept {
                std::fs::rename(&path, &spare)
            } else {
                std::fs::remove_file(&path)
            };
            match removed {
                Ok(()) if kept => self.spares.push(spare),
                Ok(()) => {}
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                Err(e) => {
                    tracing::warn!(path = %path.display(), error = %e, "deleting a journal segment failed");
                    return;
                }
            }
            self.closed.remove(0);
        }
    }
}

/// The segment records are written to.
struct Segment {
    number: u64,
    file: File,
    /// Bytes of records written.
    bytes: u64,
    opened: Instant,
}

impl Segment {
    /// Creates segment `number` from `spare` (the file of a deleted segment), or as a new
    /// file of [`SEGMENT_BYTES`] zeros; its directory entry is synced, so a sync of the
    /// file alone makes its records durable.
    fn create(dir: &Path, number: u64, spare: Option<PathBuf>) -> Result<Segment, StoreError> {
        let path = segment_path(dir, number);
        let file = match spare {
            Some(spare) => {
                std::fs::rename(&spare, &path)?;
                File::options().write(true).open(&path)?
            }
            None => {
                let mut file = File::options().write(true).create_new(true).open(&path)?;
                let zeros = vec![0; 1024 * 1024];
                let mut written = 0;
                while written < SEGMENT_BYTES {
                    file.write_all(&zeros)?;
                    written += zeros.len() as u64;
                }
                file.sync_all()?;
                file
            }
        };
        File::open(dir)?.sync_all()?;
        Ok(Segment {
            number,
            file,
            bytes: 0,
            opened: Instant::now(),
        })
    }

    /// Writes `records` after the last ones, stamped with this segment's number, and syncs.
    fn append(&mut self, records: &mut [u8]) -> std::io::Result<()> {
        stamp(records, self.number);
        self.file.write_all_at(records, self.bytes)?;
        self.file.sync_data()?;
        self.bytes += records.len() as u64;
        Ok(())
    }
}

/// Writes `segment` into the header of each of `records`.
fn stamp(records: &mut [u8], segment: u64) {
    let mut at = 0;
    while let Some(header) = records.get_mut(at..at + HEADER_BYTES) {
        let len = u32::from_le_bytes([header[0], header[1], header[2], header[3]]) as usize;
        header[8..].copy_from_slice(&segment.to_le_bytes());
        at += HEADER_BYTES + len;
    }
}

fn segment_path(dir: &Path, number: u64) -> PathBuf {
    dir.join(format!("{number:020}.journal"))
}

/// The numbers of the segments in `dir`, oldest first.
fn segments(dir: &Path) -> Result<Vec<u64>, StoreError> {
    let mut found = Vec::new();
    for entry in std::fs::read_dir(dir)? {
        let name = entry?.file_name();
        let number = name
            .to_str()
            .and_then(|n| n.strip_suffix(".journal"))
            .and_then(|n| n.parse::<u64>().ok());
        if let Some(number) = number {
            found.push(number);
        }
    }
    found.sort_unstable();
    Ok(found)
}

fn bincode_config() -> impl bincode::config::Config {
    bincode::config::standard().with_limit::<RECORD_LIMIT>()
}

/// The record of commit `seq` of `webhook_id`'s file, which applied `ops`, with its
/// header; `None` if the writes cannot be encoded (the commit then syncs itself).
pub(super) fn encode(webhook_id: Uuid, seq: u64, ops: &[&WriteOp]) -> Option<Vec<u8>> {
    let mut out = vec![0; HEADER_BYTES];
    let encoded = bincode::serde::encode_into_std_write(
        (EVENTS_FORMAT_VERSION, webhook_id.as_u128(), seq, ops),
        &mut out,
        bincode_config(),
    );
    if let Err(e) = encoded {
        tracing::error!(error = %e, "a commit could not be journaled");
        return None;
    }
    let payload = out.get(HEADER_BYTES..).unwrap_or_default();
    let len = u32::try_from(payload.len()).ok()?;
    let crc = crc32fast::hash(payload);
    out[..4].copy_from_slice(&len.to_le_bytes());
    out[4..8].copy_from_slice(&crc.to_le_bytes());
    Some(out)
}

/// Calls `f` with every record of the journal in `dir`, oldest first; stops at the first
/// error `f` returns. A segment ends at its first record cut short or damaged. A record
/// written by a build with another event-file format is an error: its writes cannot be
/// read, and the journal is kept for the build that wrote it.
pub(super) fn for_each_record(
    dir: &Path,
    mut f: impl FnMut(Record) -> Result<(), StoreError>,
) -> Result<(), StoreError> {
    if !dir.exists() {
        return Ok(());
    }
    for number in segments(dir)? {
        let path = segment_path(dir, number);
        let bytes = match std::fs::read(&path) {
            Ok(bytes) => bytes,
            // Deleted since it was listed: no file needed it any more.
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
            Err(e) => return Err(e.into()),
        };
        let mut rest = bytes.as_slice();
        while !rest.is_empty() {
            match decode(rest, number) {
                Decoded::Record(record, used) => {
                    f(record)?;
                    rest = rest.get(used..).unwrap_or_default();
                }
                // The zeros after the last record, or what a reused segment held before.
                Decoded::End => break,
                Decoded::Damaged => {
                    tracing::warn!(
                        path = %path.display(),
                        offset = bytes.len() - rest.len(),
                        "the journal segment ends in a record cut short (a crash while it was written); its writes were not acknowledged"
                    );
                    break;
                }
                Decoded::Unreadable => {
                    return Err(StoreError::Codec(format!(
                        "{}: a journal record at byte {} cannot be read by this build; the journal is kept",
                        path.display(),
                        bytes.len() - rest.len()
                    )));
                }
                Decoded::OtherFormat(found) => {
                    return Err(StoreError::FormatVersion {
                        path,
                        found,
                        expected: EVENTS_FORMAT_VERSION,
                    });
                }
            }
        }
    }
    Ok(())
}

/// What the bytes at a point of a segment hold.
enum Decoded {
    /// A record of this segment, and its length with the header.
    Record(Record, usize),
    /// No record of this segment: zeros, or a record the file held as another segment.
    End,
    /// A record of this segment cut short or damaged.
    Damaged,
    /// A record of this segment written with another event-file format.
    OtherFormat(u32),
    /// A whole record of this segment (its checksum matches) that this build cannot read.
    Unreadable,
}

/// The record of segment `segment` at the start of `bytes`.
fn decode(bytes: &[u8], segment: u64) -> Decoded {
    let Some(header) = bytes.get(..HEADER_BYTES) else {
        return if bytes.iter().all(|b| *b == 0) {
            Decoded::End
        } else {
            Decoded::Damaged
        };
    };
    let word = |range: std::ops::Range<usize>| -> u64 {
        header[range]
            .iter()
            .rev()
            .fold(0, |n, b| (n << 8) | u64::from(*b))
    };
    let (len, crc, stamped) = (word(0..4) as usize, word(4..8) as u32, word(8..16));
    if stamped != segment {
        return Decoded::End;
    }
    let Some(payload) = bytes.get(HEADER_BYTES..HEADER_BYTES.saturating_add(len)) else {
        return Decoded::Damaged;
    };
    if crc32fast::hash(payload) != crc {
        return Decoded::Damaged;
    }
    // The checksum matches: from here on, a record that cannot be read is an error, not
    // the end of the segment.
    let version: Result<(u32, _), _> = bincode::serde::decode_from_slice(payload, bincode_config());
    match version {
        Ok((v, _)) if v == EVENTS_FORMAT_VERSION => {}
        Ok((v, _)) => return Decoded::OtherFormat(v),
        Err(_) => return Decoded::Unreadable,
    }
    type Payload = (u32, u128, u64, Vec<WriteOp>);
    match bincode::serde::decode_from_slice::<Payload, _>(payload, bincode_config()) {
        Ok(((_, webhook_id, seq, ops), _)) => Decoded::Record(
            Record {
                webhook_id: Uuid::from_u128(webhook_id),
                seq,
                ops,
            },
            HEADER_BYTES + len,
        ),
        Err(_) => Decoded::Unreadable,
    }
}

/// Deletes every segment in `dir`: after a replay made all their records durable.
fn clear(dir: &Path) -> Result<(), StoreError> {
    remove_with_extension(dir, "journal")?;
    remove_spares(dir)
}

/// Deletes the spare segments a previous run left in `dir`.
fn remove_spares(dir: &Path) -> Result<(), StoreError> {
    remove_with_extension(dir, "spare")
}

fn remove_with_extension(dir: &Path, extension: &str) -> Result<(), StoreError> {
    for entry in std::fs::read_dir(dir)? {
        let path = entry?.path();
        if path.extension().is_some_and(|e| e == extension) {
            std::fs::remove_file(path)?;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn op(created_at: u8) -> WriteOp {
        let d = crate::model::Delivery::pending(Uuid::new_v4(), Uuid::new_v4(), created_at.into());
        WriteOp::AddDeliveries(vec![d])
    }

    #[test]
    fn records_read_back_in_order_and_a_torn_tail_ends_the_segment() {
        let dir = tempfile::tempdir().unwrap();
        let hook = Uuid::new_v4();
        let mut bytes = Vec::new();
        for seq in 1..=3 {
            bytes.extend(encode(hook, seq, &[&op(seq as u8)]).unwrap());
        }
        let whole = bytes.len();
        // A fourth record, cut short as by a crash in the middle of its round.
        let fourth = encode(hook, 4, &[&op(4)]).unwrap();
        bytes.extend(&fourth[..fourth.len() - 3]);
        stamp(&mut bytes, 7);
        std::fs::write(segment_path(dir.path(), 7), &bytes).unwrap();
        // A damaged record in the next segment ends it too.
        let mut damaged = encode(hook, 5, &[&op(5)]).unwrap();
        let last = damaged.len() - 1;
        damaged[last] ^= 1;
        damaged.extend(encode(hook, 6, &[&op(6)]).unwrap());
        stamp(&mut damaged, 8);
        std::fs::write(segment_path(dir.path(), 8), &damaged).unwrap();
        // A reused segment: a record it held as segment 8, whole, is not one of its own;
        // nor are the zeros of a new segment.
        let mut reused = encode(hook, 9, &[&op(9)]).unwrap();
        stamp(&mut reused, 8);
        reused.extend([0; 64]);
        std::fs::write(segment_path(dir.path(), 10), &reused).unwrap();
        std::fs::write(segment_path(dir.path(), 11), [0; 64]).unwrap();

        let mut seen = Vec::new();
        for_each_record(dir.path(), |r| {
            assert_eq!(r.webhook_id, hook);
            assert_eq!(r.ops.len(), 1);
            seen.push(r.seq);
            Ok(())
        })
        .unwrap();
        assert_eq!(seen, [1, 2, 3]);
        assert!(whole < bytes.len());
    }

    #[test]
    fn notices_fire_after_the_round_and_covered_segments_go() {
        let dir = tempfile::tempdir().unwrap();
        let journal = Journal::start(dir.path(), Duration::from_secs(1), HashSet::new()).unwrap();
        let hook = Uuid::new_v4();
        let (tx, rx) = std::sync::mpsc::sync_channel(1);
        journal
            .append(
                hook,
                encode(hook, 1, &[&op(1)]).unwrap(),
                vec![(Notice::default().and_wake(tx), Ok(()))],
            )
            .map_err(|_| "refused")
            .unwrap();
        rx.recv_timeout(Duration::from_secs(10)).unwrap().unwrap();
        let mut seen = Vec::new();
        for_each_record(dir.path(), |r| {
            seen.push((r.webhook_id, r.seq));
            Ok(())
        })
        .unwrap();
        assert_eq!(seen, [(hook, 1)]);

        // Once the file is covered and the segment closed, the segment is deleted (kept as
        // a spare for a later one).
        journal.covered(hook);
        let deadline = Instant::now() + Duration::from_secs(20);
        while segments(dir.path()).unwrap().first() == Some(&1) {
            assert!(Instant::now() < deadline, "the covered segment stayed");
            std::thread::sleep(Duration::from_millis(50));
        }
        journal.stop();
        assert!(!journal.usable());
        // A clean stop leaves nothing behind.
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 0);
    }
}
