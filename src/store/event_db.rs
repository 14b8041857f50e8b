//! One webhook's event file `events-{webhook_id}.redb`: events, bodies, deliveries, attempt
//! results and the due index.
//!
//! All writes go through one writer thread per file that commits whatever is queued (up to
//! a bound) in ONE `Durability::Immediate` transaction and only then runs each request's
//! completion: group commit. A lone request is committed at once; under load many requests
//! share one fsync. I1 holds because nothing is acknowledged before its commit.
//!
//! Architecture Invariant: every unfinished delivery has exactly one row in `DUE`, keyed by
//! `(next_attempt_at, delivery_id)`; the transaction that records a terminal status removes
//! it (I2).

use std::collections::HashSet;
use std::path::Path;
use std::sync::{Arc, RwLock};

use bytes::Bytes;
use redb::{
    Database, Key, ReadTransaction, ReadableDatabase, ReadableTable, ReadableTableMetadata,
    StorageBackend, Table, TableDefinition, Value, WriteTransaction,
};
use uuid::Uuid;

use super::due_times::DueTimes;
use super::notice::Notice;
use super::writer::{FileWriter, WriterPool};
use super::zero_ahead::ZeroAheadFile;
use super::{
    EVENTS_FORMAT_VERSION, EVENTS_OLDEST_READABLE, StoreError, check_format_version, codec,
};
use crate::model::{Delivery, DeliveryResult, Event, Millis};

const META: TableDefinition<'static, &str, u32> = TableDefinition::new("meta");
/// The event record, extended by the deliveries its own commit finished (`database`
/// targets: the stored event is their delivery) and followed by its body when that is
/// under [`INLINE_BODY_BYTES`] (see [`codec::encode_extended`]): a typical webhook is one
/// insert, not two or three.
const EVENTS: TableDefinition<'static, u128, &[u8]> = TableDefinition::new("events");
/// Bodies of [`INLINE_BODY_BYTES`] or more (and every body in version-1 files), apart from
/// the event record, so walking past events never reads large bodies.
const BODIES: TableDefinition<'static, u128, &[u8]> = TableDefinition::new("bodies");
/// `(event_id, delivery_id)`: an event's deliveries are one range, apart from those in its
/// `EVENTS` row.
const DELIVERIES: TableDefinition<'static, (u128, u128), &[u8]> =
    TableDefinition::new("deliveries");
/// `(delivery_id, attempt)`.
const RESULTS: TableDefinition<'static, (u128, u32), &[u8]> = TableDefinition::new("results");
/// `(due_ms, delivery_id) -> (event_id, target_id)`: "what is due now" is a range scan.
const DUE: TableDefinition<'static, (u64, u128), (u128, u128)> = TableDefinition::new("due");

const FORMAT_KEY: &str = "format_version";

/// Most rows [`EventStore::due_before`] passes over in one scan (about 7 ms per 100k).
const MAX_SKIPPED_DUE_ROWS: usize = 100_000;

/// Bodies smaller than this are stored in the event's own row (one insert per event, not
/// two); larger ones in `BODIES`. The price: walking past events (a deep page of the event
/// log, a retention scan) reads their small bodies too, up to this much per event.
pub const INLINE_BODY_BYTES: usize = 16 * 1024;

/// redb page cache of a file opened only to read its earliest due time.
const PEEK_CACHE_BYTES: usize = 256 * 1024;

/// An event file's database, shared by its readers, the pruner and its writer.
/// `None` only while the writer reopens it after a failed write, or if that failed.
pub(super) type SharedDb = std::sync::Arc<RwLock<Option<Database>>>;

/// A new event with its body and one delivery per active target.
#[derive(Debug, Clone)]
pub struct NewEvent {
    /// The event record.
    pub event: Event,
    /// The raw body.
    pub body: Bytes,
    /// Its deliveries: `Pending` and due now, or already `Delivered` by this very commit
    /// (`database` targets: no attempt record, no due row).
    pub deliveries: Vec<Delivery>,
}

/// A delivery's new state after an attempt or a deferral.
#[derive(Debug, Clone)]
pub struct AttemptWrite {
    /// The delivery as it now stands (status, attempts, next_attempt_at).
    pub delivery: Delivery,
    /// The due time the delivery's due-index row is filed under now.
    pub previous_due: Option<Millis>,
    /// The attempt's record; `None` for a deferral (breaker open), which spends no attempt.
    pub result: Option<DeliveryResult>,
}

/// One request to the writer thread.
#[derive(Debug, Clone)]
pub enum WriteOp {
    /// Store an event, its body, its deliveries and their due rows.
    Ingest(NewEvent),
    /// Record an attempt or deferral and move or remove the due row. Only for unfinished
    /// deliveries: one finished at ingest lives in its event's row and must never get a
    /// second copy here.
    Attempt(AttemptWrite),
    /// Add deliveries (and due rows) to an existing event: redelivery.
    AddDeliveries(Vec<Delivery>),
}

impl WriteOp {
    pub(super) fn weight(&self) -> usize {
        match self {
            WriteOp::Ingest(n) => n.body.len() + 256,
            WriteOp::Attempt(a) => a
                .result
                .as_ref()
                .map_or(64, |r| r.response_body.len() + 128),
            WriteOp::AddDeliveries(d) => d.len() * 64,
        }
    }
}

/// An event with (the start of) its body and its deliveries (for the event log).
#[derive(Debug, Clone)]
pub struct EventWithBody {
    /// The event.
    pub event: Event,
    /// Its raw body.
    pub body: Vec<u8>,
    /// Its deliveries, oldest first.
    pub deliveries: Vec<Delivery>,
}

/// An event with its body when the body is small (see `event_with_small_body`).
pub type EventMaybeBody = (Event, Option<Vec<u8>>);

/// An event with every delivery and every attempt.
#[derive(Debug, Clone)]
pub struct EventDetail {
    /// The event.
    pub event: Event,
    /// Its raw body.
    pub body: Vec<u8>,
    /// Each delivery with its attempts in order.
    pub deliveries: Vec<(Delivery, Vec<DeliveryResult>)>,
}

/// One row of the due index.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DueRow {
    /// When the delivery is due.
    pub due_at: Millis,
    /// The delivery.
    pub delivery_id: Uuid,
    /// Its event.
    pub event_id: Uuid,
    /// Its target.
    pub target_id: Uuid,
}

/// What a retention pass removed.
#[derive(Debug, Default, Clone, Copy)]
pub struct PruneReport {
    /// Events removed with their deliveries and results.
    pub events_removed: u64,
    /// Whether the file was compacted afterwards.
    pub compacted: bool,
}

/// Handle on one webhook's event file and its writer thread.
pub struct EventStore {
    webhook_id: Uuid,
    /// Write-locked only to compact (redb needs `&mut Database` and no live transactions)
    /// and by the writer to reopen the file.
    db: SharedDb,
    writer: Arc<FileWriter>,
    /// When it was last used (see `EventStores::touch`).
    last_used: std::sync::atomic::AtomicU64,
    /// Events removed since the file was last compacted: a compaction that could not run
    /// (a read was in progress) is retried by the next pass even if that removes little.
    pruned_since_compaction: std::sync::atomic::AtomicU64,
}

impl EventStore {
    /// Opens or creates the file and checks its format version; `pool` commits its writes
    /// (and zero-fills ahead of them).
    pub(crate) fn open(
        webhook_id: Uuid,
        path: &Path,
        pool: &WriterPool,
        due_times: Arc<DueTimes>,
        cache_bytes: usize,
    ) -> Result<EventStore, StoreError> {
        let file = path.to_path_buf();
        let spawner = pool.spawner();
        EventStore::open_with(webhook_id, path, pool, due_times, move || {
            open_database(
                ZeroAheadFile::open(&file, spawner.clone())?,
                &file,
                cache_bytes,
            )
        })
    }

    /// Opens the file with `open`, which its writer calls again to reopen the file after a
    /// failed write.
    fn open_with(
        webhook_id: Uuid,
        path: &Path,
        pool: &WriterPool,
        due_times: Arc<DueTimes>,
        open: impl Fn() -> Result<Database, StoreError> + Send + 'static,
    ) -> Result<EventStore, StoreError> {
        let db = std::sync::Arc::new(RwLock::new(Some(open()?)));
        let writer = FileWriter::new(
            pool,
            db.clone(),
            Box::new(open),
            path.to_path_buf(),
            (webhook_id, due_times),
        );
        Ok(EventStore {
            webhook_id,
            db,
            writer,
            last_used: Default::default(),
            pruned_since_compaction: Default::default(),
        })
    }

    /// Stamps the file as used at `tick` (see `EventStores::touch`).
    pub(super) fn used(&self, tick: u64) {
        self.last_used
            .store(tick, std::sync::atomic::Ordering::Relaxed);
    }

    /// When the file was last used.
    pub(super) fn last_used(&self) -> u64 {
        self.last_used.load(std::sync::atomic::Ordering::Relaxed)
    }

    /// The webhook this file belongs to.
    pub fn webhook_id(&self) -> Uuid {
        self.webhook_id
    }

    /// Writes waiting for the writer, not counting a batch being committed.
    pub fn queued(&self) -> usize {
        self.writer.queued()
    }

    /// Whether no write is waiting or being committed.
    pub fn idle(&self) -> bool {
        self.writer.idle()
    }

    /// Queues a write without blocking; `Busy` when the writer is saturated (the notice
    /// then fires with that error).
    pub fn try_submit(&self, op: WriteOp, notice: Notice) -> Result<(), StoreError> {
        self.writer.submit(op, notice, false)
    }

    /// Queues a write, waiting for room (for delivery threads: natural backpressure).
    pub fn submit(&self, op: WriteOp, notice: Notice) -> Result<(), StoreError> {
        self.writer.submit(op, notice, true)
    }

    /// Queues a write and waits for its commit (for callers off the hot path).
    pub fn write_blocking(&self, op: WriteOp) -> Result<(), StoreError> {
        self.write_blocking_with(op, Notice::default())
    }

    /// Like [`write_blocking`](Self::write_blocking), firing `notice` first.
    pub fn write_blocking_with(&self, op: WriteOp, notice: Notice) -> Result<(), StoreError> {
        let (tx, rx) = std::sync::mpsc::sync_channel(1);
        self.submit(op, notice.and_wake(tx))?;
        rx.recv().map_err(|_| StoreError::Closed)?
    }

    /// Refuses further writes after committing everything queued before this call, and
    /// closes the database at once (whoever still holds the writer), so the file may be
    /// opened again; reads get `Unavailable` from now on.
    pub(crate) fn close(&self) {
        self.writer.close();
        let db = self.db.write().unwrap_or_else(|p| p.into_inner()).take();
        drop(db);
    }

    fn read(&self) -> Result<ReadTransaction, StoreError> {
        let db = self.db.read().unwrap_or_else(|p| p.into_inner());
        Ok(available(&db)?.begin_read()?)
    }

    /// Number of stored events.
    pub fn event_count(&self) -> Result<u64, StoreError> {
        Ok(self.read()?.open_table(EVENTS)?.len()?)
    }

    /// A page of events, newest first, with deliveries and the first `body_limit` bytes
    /// of each body (`event.body_len` has the full size); and the total count. A page of
    /// 10 MiB bodies must not cost 250 MiB to list.
    pub fn list_events(
        &self,
        offset: usize,
        limit: usize,
        body_limit: usize,
    ) -> Result<(Vec<EventWithBody>, u64), StoreError> {
        let rx = self.read()?;
        let events = rx.open_table(EVENTS)?;
        let bodies = rx.open_table(BODIES)?;
        let deliveries = rx.open_table(DELIVERIES)?;
        let total = events.len()?;
        let mut out = Vec::with_capacity(limit);
        for row in events.range::<u128>(..)?.rev().skip(offset).take(limit) {
            let (k, v) = row?;
            let (event, body, settled) = event_row(v.value(), k.value(), &bodies, body_limit)?;
            out.push(EventWithBody {
                body,
                deliveries: event_deliveries(settled, &deliveries, k.value())?,
                event,
            });
        }
        Ok((out, total))
    }

    /// One event with its body only (no deliveries): for delivering large bodies.
    pub fn event_with_body(&self, event_id: Uuid) -> Result<Option<(Event, Vec<u8>)>, StoreError> {
        Ok(self
            .event_with_small_body(event_id, usize::MAX)?
            .map(|(event, body)| (event, body.unwrap_or_default())))
    }

    /// One event, with its body only when smaller than `max_body` (the sweeper does not
    /// read large bodies it would only drop; they are read at delivery).
    pub fn event_with_small_body(
        &self,
        event_id: Uuid,
        max_body: usize,
    ) -> Result<Option<EventMaybeBody>, StoreError> {
        let rx = self.read()?;
        let Some(v) = rx.open_table(EVENTS)?.get(event_id.as_u128())? else {
            return Ok(None);
        };
        let (event, _, inline) = decode_event_row(v.value())?;
        let body = if event.body_len >= max_body as u64 {
            None
        } else {
            let bodies = rx.open_table(BODIES)?;
            Some(event_body(
                &event,
                inline,
                event_id.as_u128(),
                &bodies,
                usize::MAX,
            )?)
        };
        Ok(Some((event, body)))
    }

    /// One event with every delivery and attempt.
    pub fn event_detail(&self, event_id: Uuid) -> Result<Option<EventDetail>, StoreError> {
        let rx = self.read()?;
        let Some(v) = rx.open_table(EVENTS)?.get(event_id.as_u128())? else {
            return Ok(None);
        };
        let (event, body, settled) = event_row(
            v.value(),
            event_id.as_u128(),
            &rx.open_table(BODIES)?,
            usize::MAX,
        )?;
        let results = rx.open_table(RESULTS)?;
        let mut deliveries = Vec::new();
        let table = rx.open_table(DELIVERIES)?;
        for d in event_deliveries(settled, &table, event_id.as_u128())? {
            let mut attempts = Vec::new();
            for row in results.range((d.id.as_u128(), 0)..=(d.id.as_u128(), u32::MAX))? {
                attempts.push(codec::decode(row?.1.value())?);
            }
            deliveries.push((d, attempts));
        }
        Ok(Some(EventDetail {
            event,
            body,
            deliveries,
        }))
    }

    /// One delivery as committed now.
    pub fn delivery(
        &self,
        event_id: Uuid,
        delivery_id: Uuid,
    ) -> Result<Option<Delivery>, StoreError> {
        let rx = self.read()?;
        let t = rx.open_table(DELIVERIES)?;
        if let Some(v) = t.get((event_id.as_u128(), delivery_id.as_u128()))? {
            return codec::decode(v.value()).map(Some);
        }
        let Some(row) = rx.open_table(EVENTS)?.get(event_id.as_u128())? else {
            return Ok(None);
        };
        let (_, settled, _) = decode_event_row(row.value())?;
        Ok(settled.into_iter().find(|d| d.id == delivery_id))
    }

    /// Up to `limit` due-index rows due at or before `now`, earliest first, passing over
    /// the rows of `skip_targets` (at most 100,000 of them, about 7 ms: the scan ends
    /// there).
    pub fn due_before(
        &self,
        now: Millis,
        limit: usize,
        skip_targets: &HashSet<Uuid>,
    ) -> Result<Vec<DueRow>, StoreError> {
        self.due_rows(0, due_key(now), limit, MAX_SKIPPED_DUE_ROWS, |row| {
            !skip_targets.contains(&row.target_id)
        })
    }

    /// Up to `limit` due-index rows of `target_id` due after `after`, earliest first. A scan
    /// of the index from there (about 7 ms per 100k rows): for the rare moment a target
    /// comes back after an outage.
    pub fn due_for_target(
        &self,
        target_id: Uuid,
        after: Millis,
        limit: usize,
    ) -> Result<Vec<DueRow>, StoreError> {
        let from = due_key(after).saturating_add(1);
        self.due_rows(from, u64::MAX, limit, usize::MAX, |row| {
            row.target_id == target_id
        })
    }

    /// Up to `limit` rows due in `from..=until` (due keys), earliest first, that are
    /// `wanted`; the scan ends early after passing over `max_skipped` unwanted rows.
    fn due_rows(
        &self,
        from: u64,
        until: u64,
        limit: usize,
        max_skipped: usize,
        wanted: impl Fn(&DueRow) -> bool,
    ) -> Result<Vec<DueRow>, StoreError> {
        let rx = self.read()?;
        let t = rx.open_table(DUE)?;
        let mut out = Vec::new();
        let mut skipped = 0usize;
        for row in t.range((from, 0u128)..=(until, u128::MAX))? {
            if out.len() >= limit || skipped > max_skipped {
                break;
            }
            let (k, v) = row?;
            let (due, delivery) = k.value();
            let (event, target) = v.value();
            let row = DueRow {
                due_at: due as Millis,
                delivery_id: Uuid::from_u128(delivery),
                event_id: Uuid::from_u128(event),
                target_id: Uuid::from_u128(target),
            };
            if wanted(&row) {
                out.push(row);
            } else {
                skipped += 1;
            }
        }
        Ok(out)
    }

    /// Number of unfinished deliveries (rows in the due index).
    pub fn due_count(&self) -> Result<u64, StoreError> {
        Ok(self.read()?.open_table(DUE)?.len()?)
    }

    /// The earliest due time of the file's unfinished deliveries (`None`: there are none).
    pub fn earliest_due(&self) -> Result<Option<Millis>, StoreError> {
        earliest_due(&self.read()?)
    }

    /// Removes events received before `cutoff` whose deliveries are all finished, with
    /// their bodies, deliveries and results, in transactions of at most `PRUNE_CHUNK`
    /// events so the writer thread is never held up for long; compacts when much went.
    pub fn prune(&self, cutoff: Millis) -> Result<PruneReport, StoreError> {
        // UUIDv7 ids start with their millisecond timestamp: the cutoff is a key bound.
        let bound = (cutoff.max(0) as u128) << 80;
        let mut report = PruneReport::default();
        let mut from = 0u128;
        loop {
            let (removed, next) = self.prune_chunk(from, bound)?;
            report.events_removed += removed;
            match next {
                Some(n) => from = n,
                None => break,
            }
        }
        use std::sync::atomic::Ordering::Relaxed;
        let freed = self
            .pruned_since_compaction
            .fetch_add(report.events_removed, Relaxed)
            + report.events_removed;
        let total = self.event_count()?;
        // Compaction rewrites the file; worth it only when a good share was freed. It holds
        // the file's write lock, so this file's writer waits meanwhile.
        if freed >= 1000 && freed >= total / 4 {
            let mut db = self.db.write().unwrap_or_else(|p| p.into_inner());
            match db.as_mut().map(Database::compact) {
                Some(Ok(done)) => {
                    report.compacted = done;
                    self.pruned_since_compaction.store(0, Relaxed);
                }
                // Live read transactions make compaction fail; the next pass tries again.
                Some(Err(e)) => tracing::debug!(error = %e, "compaction skipped"),
                // The writer is reopening the file after a failed write: the same.
                None => tracing::debug!("compaction skipped: the file is being reopened"),
            }
        }
        Ok(report)
    }

    /// One retention transaction over events in `[from, bound)`: returns how many were
    /// removed and where the next chunk starts, if the range is not exhausted.
    fn prune_chunk(&self, from: u128, bound: u128) -> Result<(u64, Option<u128>), StoreError> {
        const PRUNE_CHUNK: usize = 500;
        let db = self.db.read().unwrap_or_else(|p| p.into_inner());
        let tx = available(&db)?.begin_write()?;
        let mut removed = 0;
        let mut next = None;
        {
            let mut events = tx.open_table(EVENTS)?;
            let mut bodies = tx.open_table(BODIES)?;
            let mut deliveries = tx.open_table(DELIVERIES)?;
            let mut results = tx.open_table(RESULTS)?;
            let mut scanned = Vec::with_capacity(PRUNE_CHUNK);
            for row in events.range(from..bound)?.take(PRUNE_CHUNK + 1) {
                scanned.push(row?.0.value());
            }
            if scanned.len() > PRUNE_CHUNK {
                next = scanned.pop();
            }
            for id in scanned {
                // The deliveries in the event's row are finished and go with the row.
                let ds = deliveries_in(&deliveries, id)?;
                if !ds.iter().all(|d| d.status.is_terminal()) {
                    continue;
                }
                for d in &ds {
                    let did = d.id.as_u128();
                    results.retain_in((did, 0)..=(did, u32::MAX), |_, _| false)?;
                    deliveries.remove((id, did))?;
                }
                events.remove(id)?;
                bodies.remove(id)?;
                removed += 1;
            }
        }
        tx.commit()?;
        Ok((removed, next))
    }
}

impl Drop for EventStore {
    fn drop(&mut self) {
        self.close();
    }
}

/// The file's database, unless the writer is reopening it after a failed write.
fn available(db: &Option<Database>) -> Result<&Database, StoreError> {
    db.as_ref().ok_or(StoreError::Unavailable)
}

fn due_key(at: Millis) -> u64 {
    at.max(0) as u64
}

/// The parts of an `EVENTS` row: the event, the deliveries in the row (none in rows
/// written before format 3) and the inline body bytes.
fn decode_event_row(row: &[u8]) -> Result<(Event, Vec<Delivery>, &[u8]), StoreError> {
    codec::decode_extended(row)
}

/// Decodes an `EVENTS` row: the event, the first `body_limit` bytes of its body (from the
/// row itself or, for a large body or a row written before bodies were inlined, from
/// `BODIES`) and the deliveries in the row.
fn event_row(
    row: &[u8],
    id: u128,
    bodies: &impl ReadableTable<u128, &'static [u8]>,
    body_limit: usize,
) -> Result<(Event, Vec<u8>, Vec<Delivery>), StoreError> {
    let (event, settled, inline) = decode_event_row(row)?;
    let body = event_body(&event, inline, id, bodies, body_limit)?;
    Ok((event, body, settled))
}

/// The first `limit` bytes of an event's body: the bytes after its record when the body is
/// inline, else its `BODIES` row. Anything else is an error, never a silently empty body
/// that could be delivered as if it were the event's.
fn event_body(
    event: &Event,
    inline: &[u8],
    id: u128,
    bodies: &impl ReadableTable<u128, &'static [u8]>,
    limit: usize,
) -> Result<Vec<u8>, StoreError> {
    let cut = |b: &[u8]| b[..b.len().min(limit)].to_vec();
    if inline.len() as u64 == event.body_len {
        return Ok(cut(inline));
    }
    if !inline.is_empty() {
        return Err(StoreError::Codec(format!(
            "event {}: {} body bytes in its row, {} recorded",
            event.id,
            inline.len(),
            event.body_len
        )));
    }
    match bodies.get(id)? {
        Some(v) => Ok(cut(v.value())),
        None => Err(StoreError::Codec(format!(
            "event {}: its {}-byte body is missing",
            event.id, event.body_len
        ))),
    }
}

/// An event's rows in `DELIVERIES`, oldest first.
fn deliveries_in(
    t: &impl ReadableTable<(u128, u128), &'static [u8]>,
    event: u128,
) -> Result<Vec<Delivery>, StoreError> {
    let mut out = Vec::new();
    for row in t.range((event, 0u128)..=(event, u128::MAX))? {
        out.push(codec::decode(row?.1.value())?);
    }
    Ok(out)
}

/// Every delivery of an event, oldest first: `settled` (from its row) and its rows in
/// `DELIVERIES`.
fn event_deliveries(
    settled: Vec<Delivery>,
    t: &impl ReadableTable<(u128, u128), &'static [u8]>,
    event: u128,
) -> Result<Vec<Delivery>, StoreError> {
    let mut out = deliveries_in(t, event)?;
    if !settled.is_empty() {
        out.extend(settled);
        out.sort_by_key(|d| d.id);
    }
    Ok(out)
}

/// Opens the event file at `path` with redb's plain backend (no writer, no zero-filling),
/// reads its earliest due time and closes it again.
pub(super) fn peek_earliest_due(path: &Path) -> Result<Option<Millis>, StoreError> {
    let file = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open(path)?;
    let backend = redb::backends::FileBackend::new(file)?;
    let db = open_database(backend, path, PEEK_CACHE_BYTES)?;
    let earliest = earliest_due(&db.begin_read()?)?;
    drop(db);
    Ok(earliest)
}

/// The earliest due time in a file's due index (`None`: it is empty).
pub(super) fn earliest_due(tx: &redb::ReadTransaction) -> Result<Option<Millis>, StoreError> {
    let table = tx.open_table(DUE)?;
    let first = table.first()?;
    Ok(first.map(|(key, _)| key.value().0 as Millis))
}

/// Opens redb on `backend`, the event file at `path`: checks the format version (marking an
/// older readable file current) and creates any missing table.
pub(super) fn open_database(
    backend: impl StorageBackend,
    path: &Path,
    cache_bytes: usize,
) -> Result<Database, StoreError> {
    let db = Database::builder()
        .set_cache_size(cache_bytes)
        .create_with_backend(backend)?;
    let tx = db.begin_write()?;
    {
        let mut meta = tx.open_table(META)?;
        let found = meta.get(FORMAT_KEY)?.map(|v| v.value());
        if check_format_version(path, found, EVENTS_FORMAT_VERSION, EVENTS_OLDEST_READABLE)? {
            meta.insert(FORMAT_KEY, EVENTS_FORMAT_VERSION)?;
        }
        tx.open_table(EVENTS)?;
        tx.open_table(BODIES)?;
        tx.open_table(DELIVERIES)?;
        tx.open_table(RESULTS)?;
        tx.open_table(DUE)?;
    }
    tx.commit()?;
    Ok(db)
}

/// What one write transaction did.
pub(super) struct BatchOutcome {
    /// Each request's outcome, in order.
    pub(super) outcomes: Vec<Result<(), StoreError>>,
    /// The due index's earliest time after the commit (`Some(None)`: empty), if the
    /// transaction touched the index.
    pub(super) earliest_due: Option<Option<Millis>>,
}

/// Applies `ops` in one transaction and commits it. A request refused before it wrote
/// anything (redelivery of an event retention removed meanwhile) gets its error in the
/// returned outcomes, one per op, and the others commit; any other error fails them all.
pub(super) fn commit<'a>(
    db: &Database,
    ops: impl Iterator<Item = &'a WriteOp>,
) -> Result<BatchOutcome, StoreError> {
    let tx = db.begin_write()?;
    let mut outcomes = Vec::new();
    let earliest_due = {
        let mut tables = WriteTables::new(&tx);
        for op in ops {
            match tables.apply(op) {
                Ok(()) => outcomes.push(Ok(())),
                Err(StoreError::UnknownEvent) => outcomes.push(Err(StoreError::UnknownEvent)),
                Err(e) => return Err(e),
            }
        }
        match &tables.due {
            Some(due) => Some(due.first()?.map(|(key, _)| key.value().0 as Millis)),
            None => None,
        }
    };
    tx.commit()?;
    Ok(BatchOutcome {
        outcomes,
        earliest_due,
    })
}

/// The tables of one write transaction, each opened on first use and then kept: an open
/// costs a lookup and closing a modified table a table-tree update, so a batch pays them
/// once per table, not once per request, and a table the batch never touches costs nothing.
struct WriteTables<'t> {
    tx: &'t WriteTransaction,
    events: Option<Table<'t, u128, &'static [u8]>>,
    bodies: Option<Table<'t, u128, &'static [u8]>>,
    deliveries: Option<Table<'t, (u128, u128), &'static [u8]>>,
    results: Option<Table<'t, (u128, u32), &'static [u8]>>,
    due: Option<Table<'t, (u64, u128), (u128, u128)>>,
}

/// The table in `slot`, opened now if it is not yet.
fn opened<'s, 't, K: Key + 'static, V: Value + 'static>(
    tx: &'t WriteTransaction,
    slot: &'s mut Option<Table<'t, K, V>>,
    definition: TableDefinition<'static, K, V>,
) -> Result<&'s mut Table<'t, K, V>, StoreError> {
    let table = match slot.take() {
        Some(t) => t,
        None => tx.open_table(definition)?,
    };
    Ok(slot.insert(table))
}

impl<'t> WriteTables<'t> {
    /// No table opened yet.
    fn new(tx: &'t WriteTransaction) -> WriteTables<'t> {
        WriteTables {
            tx,
            events: None,
            bodies: None,
            deliveries: None,
            results: None,
            due: None,
        }
    }

    /// Writes one request's rows into the transaction.
    fn apply(&mut self, op: &WriteOp) -> Result<(), StoreError> {
        match op {
            WriteOp::Ingest(n) => {
                let id = n.event.id.as_u128();
                let inline = n.body.len() < INLINE_BODY_BYTES;
                // A delivery this commit finishes (a `database` target's) goes in the
                // event's row: it will never change, so a row of its own would only cost
                // a second B-tree insert for every event.
                let (settled, unfinished): (Vec<&Delivery>, Vec<&Delivery>) =
                    n.deliveries.iter().partition(|d| d.status.is_terminal());
                let row =
                    codec::encode_extended(&n.event, &settled, if inline { &n.body } else { &[] })?;
                opened(self.tx, &mut self.events, EVENTS)?.insert(id, row.as_slice())?;
                if !inline {
                    opened(self.tx, &mut self.bodies, BODIES)?.insert(id, n.body.as_ref())?;
                }
                self.insert_deliveries(unfinished)
            }
            WriteOp::AddDeliveries(ds) => {
                // Checked in the transaction: retention may have removed the event since
                // the caller read it, and its deliveries would be orphans nobody prunes.
                // Refused before anything is written, so the rest of the batch commits.
                let events = opened(self.tx, &mut self.events, EVENTS)?;
                for d in ds {
                    if events.get(d.event_id.as_u128())?.is_none() {
                        return Err(StoreError::UnknownEvent);
                    }
                }
                self.insert_deliveries(ds)
            }
            WriteOp::Attempt(a) => {
                let d = &a.delivery;
                self.put_delivery(d)?;
                let due = opened(self.tx, &mut self.due, DUE)?;
                if let Some(prev) = a.previous_due {
                    due.remove((due_key(prev), d.id.as_u128()))?;
                }
                if let Some(next) = d.next_attempt_at {
                    due.insert(
                        (due_key(next), d.id.as_u128()),
                        (d.event_id.as_u128(), d.target_id.as_u128()),
                    )?;
                }
                if let Some(r) = &a.result {
                    opened(self.tx, &mut self.results, RESULTS)?
                        .insert((d.id.as_u128(), r.attempt), codec::encode(r)?.as_slice())?;
                }
                Ok(())
            }
        }
    }

    /// New deliveries, each with a due row unless already finished.
    fn insert_deliveries<'d>(
        &mut self,
        ds: impl IntoIterator<Item = &'d Delivery>,
    ) -> Result<(), StoreError> {
        for d in ds {
            self.put_delivery(d)?;
            if let Some(at) = d.next_attempt_at {
                opened(self.tx, &mut self.due, DUE)?.insert(
                    (due_key(at), d.id.as_u128()),
                    (d.event_id.as_u128(), d.target_id.as_u128()),
                )?;
            }
        }
        Ok(())
    }

    /// Inserts or replaces a delivery's row.
    fn put_delivery(&mut self, d: &Delivery) -> Result<(), StoreError> {
        opened(self.tx, &mut self.deliveries, DELIVERIES)?.insert(
            (d.event_id.as_u128(), d.id.as_u128()),
            codec::encode(d)?.as_slice(),
        )?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The page cache of a test's event file.
    const TEST_CACHE: usize = 4 * 1024 * 1024;

    /// A writer pool of the test's own, logging to the test's subscriber if it has one.
    fn pool() -> WriterPool {
        WriterPool::start(2).unwrap()
    }
    use crate::model::DeliveryStatus;

    fn event(body: &[u8]) -> Event {
        Event {
            id: Uuid::now_v7(),
            entrypoint_id: Uuid::nil(),
            received_at: 1,
            method: "POST".into(),
            path: "/".into(),
            headers: vec![],
            content_type: None,
            remote_addr: "127.0.0.1".into(),
            body_len: body.len() as u64,
        }
    }

    /// Writes a file the way version 1 did: the event record alone in `EVENTS`, every body
    /// in `BODIES`, `format_version` 1.
    fn write_v1_file(path: &Path, rows: &[(&Event, &[u8])]) {
        let db = Database::create(path).unwrap();
        let tx = db.begin_write().unwrap();
        tx.open_table(META).unwrap().insert(FORMAT_KEY, 1).unwrap();
        for (event, body) in rows {
            let id = event.id.as_u128();
            let row = codec::encode(event).unwrap();
            tx.open_table(EVENTS)
                .unwrap()
                .insert(id, row.as_slice())
                .unwrap();
            tx.open_table(BODIES).unwrap().insert(id, *body).unwrap();
        }
        tx.commit().unwrap();
    }

    fn stored_version(path: &Path) -> u32 {
        let db = Database::create(path).unwrap();
        let rx = db.begin_read().unwrap();
        let meta = rx.open_table(META).unwrap();
        meta.get(FORMAT_KEY).unwrap().unwrap().value()
    }

    /// A version-1 file opens, reads every body exactly as before, and is marked current
    /// so an older build refuses it rather than reading inline bodies as empty.
    #[test]
    fn version_1_files_read_as_before_and_are_marked_current() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("e.redb");
        let body = b"\xffold layout".to_vec();
        let (old, empty) = (event(&body), event(b""));
        write_v1_file(&path, &[(&old, &body), (&empty, b"")]);

        let store =
            EventStore::open(Uuid::new_v4(), &path, &pool(), Arc::default(), TEST_CACHE).unwrap();
        assert_eq!(store.event_detail(old.id).unwrap().unwrap().body, body);
        assert_eq!(store.event_detail(empty.id).unwrap().unwrap().body, b"");
        let (_, small) = store.event_with_small_body(old.id, 1024).unwrap().unwrap();
        assert_eq!(small.as_deref(), Some(&body[..]));
        let (page, _) = store.list_events(0, 2, 4).unwrap();
        assert_eq!(page[1].body, &body[..4]);
        store.close();
        drop(store);
        assert_eq!(stored_version(&path), EVENTS_FORMAT_VERSION);
    }

    /// A delivery of `event` to a fresh target, in `status`.
    fn delivery(event: &Event, status: DeliveryStatus) -> Delivery {
        let mut d = Delivery::pending(event.id, Uuid::new_v4(), 1);
        if status.is_terminal() {
            d.next_attempt_at = None;
            d.attempts = 1;
        }
        d.status = status;
        d
    }

    /// The keys of every `DELIVERIES` row.
    fn delivery_rows(store: &EventStore) -> Vec<(u128, u128)> {
        let rx = store.read().unwrap();
        let t = rx.open_table(DELIVERIES).unwrap();
        t.range::<(u128, u128)>(..)
            .unwrap()
            .map(|r| r.unwrap().0.value())
            .collect()
    }

    /// A delivery the ingest commit finishes (a `database` target's) lives in the event's
    /// row, not in `DELIVERIES`, and every reader sees it among the event's deliveries in
    /// the same order as one with a row of its own.
    #[test]
    fn a_delivery_finished_at_ingest_is_stored_in_the_event_row() {
        let dir = tempfile::tempdir().unwrap();
        let store = EventStore::open(
            Uuid::new_v4(),
            &dir.path().join("e.redb"),
            &pool(),
            Arc::default(),
            TEST_CACHE,
        )
        .unwrap();
        let e = event(b"{}");
        let (pending, stored, failed) = (
            delivery(&e, DeliveryStatus::Pending),
            delivery(&e, DeliveryStatus::Delivered),
            delivery(&e, DeliveryStatus::Failed),
        );
        let all = vec![pending.clone(), stored.clone(), failed.clone()];
        store
            .write_blocking(WriteOp::Ingest(NewEvent {
                event: e.clone(),
                body: Bytes::from_static(b"{}"),
                deliveries: all.clone(),
            }))
            .unwrap();

        assert_eq!(
            delivery_rows(&store),
            vec![(e.id.as_u128(), pending.id.as_u128())]
        );
        let detail = store.event_detail(e.id).unwrap().unwrap();
        let shown: Vec<Delivery> = detail.deliveries.into_iter().map(|(d, _)| d).collect();
        assert_eq!(shown, all);
        let (page, _) = store.list_events(0, 10, 10).unwrap();
        assert_eq!(page[0].deliveries, all);
        assert_eq!(page[0].body, b"{}");
        for d in &all {
            assert_eq!(store.delivery(e.id, d.id).unwrap().as_ref(), Some(d));
        }
        assert_eq!(store.delivery(e.id, Uuid::now_v7()).unwrap(), None);
        assert_eq!(store.due_count().unwrap(), 1);

        // Retention waits for the pending one, then takes the row and all with it.
        let cutoff = crate::model::now_ms() + 1000;
        assert_eq!(store.prune(cutoff).unwrap().events_removed, 0);
        let mut done = pending.clone();
        done.status = DeliveryStatus::Delivered;
        done.next_attempt_at = None;
        store
            .write_blocking(WriteOp::Attempt(AttemptWrite {
                delivery: done,
                previous_due: pending.next_attempt_at,
                result: None,
            }))
            .unwrap();
        assert_eq!(store.prune(cutoff).unwrap().events_removed, 1);
        assert_eq!(store.delivery(e.id, stored.id).unwrap(), None);
        assert!(delivery_rows(&store).is_empty());
        store.close();
    }

    /// A version-2 file, whose `database` deliveries have rows of their own, reads with
    /// every delivery after the upgrade, and new events beside it use the new layout.
    #[test]
    fn version_2_files_keep_their_delivery_rows() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("e.redb");
        let old = event(b"old");
        let (stored, pending) = (
            delivery(&old, DeliveryStatus::Delivered),
            delivery(&old, DeliveryStatus::Pending),
        );
        {
            let db = Database::create(&path).unwrap();
            let tx = db.begin_write().unwrap();
            tx.open_table(META).unwrap().insert(FORMAT_KEY, 2).unwrap();
            let mut row = codec::encode(&old).unwrap();
            row.extend_from_slice(b"old");
            tx.open_table(EVENTS)
                .unwrap()
                .insert(old.id.as_u128(), row.as_slice())
                .unwrap();
            let mut t = tx.open_table(DELIVERIES).unwrap();
            for d in [&stored, &pending] {
                let row = codec::encode(d).unwrap();
                t.insert((old.id.as_u128(), d.id.as_u128()), row.as_slice())
                    .unwrap();
            }
            drop(t);
            tx.commit().unwrap();
        }

        let store =
            EventStore::open(Uuid::new_v4(), &path, &pool(), Arc::default(), TEST_CACHE).unwrap();
        let new = event(b"new");
        let new_stored = delivery(&new, DeliveryStatus::Delivered);
        store
            .write_blocking(WriteOp::Ingest(NewEvent {
                event: new.clone(),
                body: Bytes::from_static(b"new"),
                deliveries: vec![new_stored.clone()],
            }))
            .unwrap();
        let (page, total) = store.list_events(0, 10, 10).unwrap();
        assert_eq!(total, 2);
        assert_eq!((page[0].event.id, &page[0].body[..]), (new.id, &b"new"[..]));
        assert_eq!(page[0].deliveries, vec![new_stored]);
        assert_eq!((page[1].event.id, &page[1].body[..]), (old.id, &b"old"[..]));
        assert_eq!(page[1].deliveries, vec![stored.clone(), pending.clone()]);
        assert_eq!(store.delivery(old.id, stored.id).unwrap(), Some(stored));
        store.close();
        drop(store);
        assert_eq!(stored_version(&path), 3);
    }

    /// A compaction that cannot run (a read is in progress) is not forgotten: the next
    /// pass compacts although it removes nothing itself.
    #[test]
    fn a_skipped_compaction_is_retried_by_the_next_pass() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("e.redb");
        let body = vec![b'x'; 1000];
        let events: Vec<Event> = (0..1200).map(|_| event(&body)).collect();
        let rows: Vec<(&Event, &[u8])> = events.iter().map(|e| (e, &body[..])).collect();
        write_v1_file(&path, &rows);
        let store =
            EventStore::open(Uuid::new_v4(), &path, &pool(), Arc::default(), TEST_CACHE).unwrap();
        let cutoff = crate::model::now_ms() + 1000;

        let reading = store.read().unwrap();
        let first = store.prune(cutoff).unwrap();
        assert_eq!(first.events_removed, 1200);
        assert!(
            !first.compacted,
            "a live read transaction blocks compaction"
        );
        drop(reading);

        let second = store.prune(cutoff).unwrap();
        assert_eq!(second.events_removed, 0);
        assert!(
            second.compacted,
            "the freed space is reclaimed on the next pass"
        );
        let third = store.prune(cutoff).unwrap();
        assert!(!third.compacted, "and only once");
        store.close();
    }

    #[test]
    fn newer_event_files_are_refused() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("e.redb");
        {
            let db = Database::create(&path).unwrap();
            let tx = db.begin_write().unwrap();
            tx.open_table(META).unwrap().insert(FORMAT_KEY, 99).unwrap();
            tx.commit().unwrap();
        }
        assert!(matches!(
            EventStore::open(Uuid::new_v4(), &path, &pool(), Arc::default(), TEST_CACHE),
            Err(StoreError::FormatVersion {
                found: 99,
                expected: EVENTS_FORMAT_VERSION,
                ..
            })
        ));
    }

    /// A row whose body does not match its record, or whose large body is gone, is an
    /// error: never an empty body that a retry would deliver as the event's.
    #[test]
    fn a_body_that_does_not_match_its_record_is_an_error() {
        let dir = tempfile::tempdir().unwrap();
        let store = EventStore::open(
            Uuid::new_v4(),
            &dir.path().join("e.redb"),
            &pool(),
            Arc::default(),
            TEST_CACHE,
        )
        .unwrap();
        let short = event(b"12345");
        let missing = event(&[7; 20]);
        {
            let db = store.db.read().unwrap();
            let tx = db.as_ref().unwrap().begin_write().unwrap();
            let mut events = tx.open_table(EVENTS).unwrap();
            let mut row = codec::encode(&short).unwrap();
            row.extend_from_slice(b"123");
            events.insert(short.id.as_u128(), row.as_slice()).unwrap();
            let row = codec::encode(&missing).unwrap();
            events.insert(missing.id.as_u128(), row.as_slice()).unwrap();
            drop(events);
            tx.commit().unwrap();
        }
        for id in [short.id, missing.id] {
            assert!(matches!(store.event_detail(id), Err(StoreError::Codec(_))));
            assert!(matches!(
                store.event_with_body(id),
                Err(StoreError::Codec(_))
            ));
        }
        store.close();
    }

    /// The real backend of event files on a disk that can fill up: while full, the file
    /// cannot grow (redb's `set_len`, or a write past the end, fails with ENOSPC), as on a
    /// filesystem without free blocks. Confined to one file, unlike a process-wide limit.
    #[derive(Debug)]
    struct FillingDisk {
        file: ZeroAheadFile,
        /// How long the file may be; `u64::MAX` while there is space.
        room: std::sync::Arc<std::sync::atomic::AtomicU64>,
    }

    impl FillingDisk {
        fn fits(&self, end: u64) -> std::io::Result<()> {
            if end > self.room.load(std::sync::atomic::Ordering::SeqCst) {
                return Err(std::io::ErrorKind::StorageFull.into());
            }
            Ok(())
        }
    }

    impl StorageBackend for FillingDisk {
        fn len(&self) -> std::io::Result<u64> {
            self.file.len()
        }
        fn read(&self, offset: u64, out: &mut [u8]) -> std::io::Result<()> {
            self.file.read(offset, out)
        }
        fn set_len(&self, len: u64) -> std::io::Result<()> {
            self.fits(len)?;
            self.file.set_len(len)
        }
        fn sync_data(&self) -> std::io::Result<()> {
            self.file.sync_data()
        }
        fn write(&self, offset: u64, data: &[u8]) -> std::io::Result<()> {
            self.fits(offset + data.len() as u64)?;
            self.file.write(offset, data)
        }
        fn close(&self) -> std::io::Result<()> {
            self.file.close()
        }
        fn try_lock_range(
            &self,
            start: std::ops::Bound<u64>,
            end: std::ops::Bound<u64>,
        ) -> Result<bool, redb::BackendError> {
            self.file.try_lock_range(start, end)
        }
        fn try_lock_shared_range(
            &self,
            start: std::ops::Bound<u64>,
            end: std::ops::Bound<u64>,
        ) -> Result<bool, redb::BackendError> {
            self.file.try_lock_shared_range(start, end)
        }
        fn lock_range(
            &self,
            start: std::ops::Bound<u64>,
            end: std::ops::Bound<u64>,
        ) -> Result<(), redb::BackendError> {
            self.file.lock_range(start, end)
        }
        fn lock_shared_range(
            &self,
            start: std::ops::Bound<u64>,
            end: std::ops::Bound<u64>,
        ) -> Result<(), redb::BackendError> {
            self.file.lock_shared_range(start, end)
        }
        fn unlock_range(
            &self,
            start: std::ops::Bound<u64>,
            end: std::ops::Bound<u64>,
        ) -> Result<(), redb::BackendError> {
            self.file.unlock_range(start, end)
        }
        fn query_lock_range(
            &self,
            start: std::ops::Bound<u64>,
            end: std::ops::Bound<u64>,
        ) -> Result<bool, redb::BackendError> {
            self.file.query_lock_range(start, end)
        }
    }

    /// Stores an event with `body` and a pending delivery; its id on success.
    fn ingest(store: &EventStore, body: &[u8]) -> Result<Uuid, StoreError> {
        let e = event(body);
        let id = e.id;
        store.write_blocking(WriteOp::Ingest(NewEvent {
            deliveries: vec![delivery(&e, DeliveryStatus::Pending)],
            event: e,
            body: Bytes::copy_from_slice(body),
        }))?;
        Ok(id)
    }

    /// Every acknowledged event reads back whole, and nothing else was stored.
    fn assert_all_readable(store: &EventStore, acked: &[(Uuid, Vec<u8>)]) {
        for (id, body) in acked {
            let detail = store
                .event_detail(*id)
                .unwrap()
                .expect("an acknowledged event");
            assert_eq!(&detail.body, body);
            assert_eq!(detail.deliveries.len(), 1);
        }
        assert_eq!(store.event_count().unwrap(), acked.len() as u64);
        assert_eq!(store.due_count().unwrap(), acked.len() as u64);
    }

    /// One failed write (here ENOSPC) made redb refuse every later write of the file with
    /// `PreviousIo` until a restart. Now the writer reopens the file (redb repairs it): while
    /// the disk is full writes fail, and once there is space again they succeed, in the
    /// same process, with everything acknowledged before and after intact. The failure is
    /// logged at ERROR once, not per request.
    #[test]
    fn writes_resume_after_a_full_disk_without_a_restart() {
        use std::sync::atomic::{AtomicU64, Ordering::SeqCst};
        use std::time::{Duration, Instant};

        let logged = crate::test_log::Logged::default();
        let _log = tracing::subscriber::set_default(logged.subscriber());
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("e.redb");
        let room = std::sync::Arc::new(AtomicU64::new(u64::MAX));
        let pool = pool();
        let store = {
            let (file, room, spawner) = (path.clone(), room.clone(), pool.spawner());
            EventStore::open_with(Uuid::new_v4(), &path, &pool, Arc::default(), move || {
                let disk = FillingDisk {
                    file: ZeroAheadFile::open(&file, spawner.clone())?,
                    room: room.clone(),
                };
                open_database(disk, &file, TEST_CACHE)
            })
            .unwrap()
        };
        let mut acked = Vec::new();
        for body in [b"small".to_vec(), vec![1; 100_000]] {
            acked.push((ingest(&store, &body).unwrap(), body));
        }

        // The disk fills up: writes succeed while redb has free pages in the file, then fail.
        let full = std::fs::metadata(&path).unwrap().len();
        room.store(full, SeqCst);
        let big = vec![7; 256 * 1024];
        let mut refused = None;
        for _ in 0..200 {
            match ingest(&store, &big) {
                Ok(id) => acked.push((id, big.clone())),
                Err(e) => {
                    refused = Some(e);
                    break;
                }
            }
        }
        assert!(
            matches!(refused, Some(StoreError::Unavailable)),
            "{refused:?}"
        );
        // Still full: later writes fail too (the writer reopens the file and tries again,
        // then pauses). A body as large as the whole file cannot fit whatever the repair
        // freed.
        let too_big = vec![8; full as usize];
        for _ in 0..2 {
            assert!(matches!(
                ingest(&store, &too_big),
                Err(StoreError::Unavailable)
            ));
        }

        // Space is back. The writer tries again after a pause (1 s here), not per request.
        room.store(u64::MAX, SeqCst);
        let deadline = Instant::now() + Duration::from_secs(30);
        let resumed = loop {
            match ingest(&store, b"after") {
                Ok(id) => break id,
                Err(StoreError::Unavailable) if Instant::now() < deadline => {
                    std::thread::sleep(Duration::from_millis(20));
                }
                Err(e) => panic!("writes never resumed: {e}"),
            }
        };
        acked.push((resumed, b"after".to_vec()));
        acked.push((ingest(&store, b"later").unwrap(), b"later".to_vec()));
        assert_all_readable(&store, &acked);

        let log = logged.text();
        assert_eq!(log.matches(" ERROR ").count(), 1, "{log}");
        assert!(log.contains("writable again"), "{log}");

        // And a restart finds the same.
        store.close();
        drop(store);
        let store =
            EventStore::open(Uuid::new_v4(), &path, &pool, Arc::default(), TEST_CACHE).unwrap();
        assert_all_readable(&store, &acked);
        store.close();
    }

    /// A reopen that failed is tried again on time, not only when the next write comes:
    /// until it succeeds the file cannot be read, and a quiet webhook may get no write.
    #[test]
    fn a_failed_reopen_is_retried_without_a_write() {
        use std::sync::atomic::{AtomicBool, AtomicU64, Ordering::SeqCst};
        use std::time::{Duration, Instant};

        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("e.redb");
        let room = std::sync::Arc::new(AtomicU64::new(u64::MAX));
        let refuse_open = std::sync::Arc::new(AtomicBool::new(false));
        let pool = pool();
        let store = {
            let (file, room, refuse_open) = (path.clone(), room.clone(), refuse_open.clone());
            let spawner = pool.spawner();
            EventStore::open_with(Uuid::new_v4(), &path, &pool, Arc::default(), move || {
                if refuse_open.load(SeqCst) {
                    return Err(StoreError::Unavailable);
                }
                let disk = FillingDisk {
                    file: ZeroAheadFile::open(&file, spawner.clone())?,
                    room: room.clone(),
                };
                open_database(disk, &file, TEST_CACHE)
            })
            .unwrap()
        };
        let first = ingest(&store, b"first").unwrap();
        room.store(std::fs::metadata(&path).unwrap().len(), SeqCst);
        let big = vec![7; 256 * 1024];
        let filled = (0..200).any(|_| ingest(&store, &big).is_err());
        assert!(filled, "the disk never filled");
        // The next write makes the writer reopen the file, which fails: nothing is open.
        refuse_open.store(true, SeqCst);
        assert!(ingest(&store, b"x").is_err());
        assert!(matches!(store.event_count(), Err(StoreError::Unavailable)));

        // Space is back and the file would open; no write comes.
        refuse_open.store(false, SeqCst);
        room.store(u64::MAX, SeqCst);
        let deadline = Instant::now() + Duration::from_secs(15);
        while store.event_count().is_err() && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(20));
        }
        assert!(
            store.event_with_body(first).unwrap().is_some(),
            "the file was not reopened without a write"
        );
        assert!(store.due_before(i64::MAX, 10, &HashSet::new()).is_ok());
        store.close();
    }
}
