//! One webhook's event file `events-{webhook_id}.redb`: events, bodies, deliveries, attempt
//! results and the due index.
//!
//! All writes go through the file's writer (`store/writer.rs`), which commits whatever is
//! queued (up to a bound) in ONE `Durability::Immediate` transaction and only then fires
//! each write's notice: group commit. A lone write is committed at once; under load many
//! share one fsync. I1 holds because nothing is acknowledged before its commit.
//!
//! This file: the tables, the record types, the handle and the reads. `write.rs`: the rows
//! a write transaction adds, moves and removes. `body.rs`: large bodies, cut into chunks
//! that fill redb's allocations. `due.rs`: the due index. `retention.rs`: removing old
//! events, and compaction. `find.rs`: the event log's filters and per-target counts, as
//! bounded scans. Rows of older formats are decoded by `codec.rs`.
//!
//! Architecture Invariant: every unfinished delivery has exactly one row in `DUE`, keyed by
//! `(next_attempt_at, delivery_id)`; the transaction that records a terminal status removes
//! it (I2).

use std::path::Path;
use std::sync::{Arc, RwLock};

use bytes::Bytes;
use redb::{
    Database, ReadTransaction, ReadableDatabase, ReadableTable, ReadableTableMetadata,
    StorageBackend, TableDefinition,
};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use super::due_times::DueTimes;
use super::notice::Notice;
use super::writer::{FileWriter, WriterPool};
use super::zero_ahead::ZeroAheadFile;
use super::{
    EVENTS_FORMAT_VERSION, EVENTS_OLDEST_READABLE, StoreError, check_format_version, codec,
};
use crate::model::{AttemptExchange, Delivery, DeliveryResult, Event, Millis};
use body::LargeBodies;
use settled::{SettledRow, SkipReasons};

const META: TableDefinition<'static, &str, u32> = TableDefinition::new("meta");
/// The event record, extended by the deliveries its own commit finished (`database`
/// targets: the stored event is their delivery) and followed by its body when that is
/// under [`INLINE_BODY_BYTES`] (see [`codec::encode_extended`]): a typical webhook is one
/// insert, not two or three.
const EVENTS: TableDefinition<'static, u128, &[u8]> = TableDefinition::new("events");
/// `(event_id, index)`: bodies of [`INLINE_BODY_BYTES`] or more, in chunks sized to fill
/// redb's power-of-two allocations (see `body.rs`), apart from the event record.
const BODY_CHUNKS: TableDefinition<'static, (u128, u32), &[u8]> =
    TableDefinition::new("body_chunks");
/// `(event_id, delivery_id)`: an event's deliveries are one range, apart from those in its
/// `EVENTS` row.
const DELIVERIES: TableDefinition<'static, (u128, u128), &[u8]> =
    TableDefinition::new("deliveries");
/// `(delivery_id, attempt)`.
const RESULTS: TableDefinition<'static, (u128, u32), &[u8]> = TableDefinition::new("results");
/// `(due_ms, delivery_id) -> (event_id, target_id)`: "what is due now" is a range scan.
const DUE: TableDefinition<'static, (u64, u128), (u128, u128)> = TableDefinition::new("due");
/// The reasons of skipped deliveries, numbered in the order first seen; the event rows
/// refer to them by number (`settled.rs`).
const SKIP_REASONS: TableDefinition<'static, u32, &str> = TableDefinition::new("skip_reasons");
/// A skip reason → its number in `SKIP_REASONS`, for the writer.
const SKIP_REASON_IDS: TableDefinition<'static, &str, u32> =
    TableDefinition::new("skip_reason_ids");
/// A webhook's idempotency keys: key → the first event stored with it. Written in the
/// event's own transaction (`write.rs`), so the two are on disk together or not at all.
const DEDUPE: TableDefinition<'static, &[u8], u128> = TableDefinition::new("dedupe");
/// event id → its key in `DEDUPE`: retention walks the keys by age (UUIDv7 ids start with
/// their time) without scanning the whole index.
const DEDUPE_EVENTS: TableDefinition<'static, u128, &[u8]> = TableDefinition::new("dedupe_events");

/// target id → when an attempt to it last failed, as far as [`FAILURE_TIME_STEP_MS`]: the
/// webhooks list's "failures in the last 24 h", kept across restarts. Written by the
/// commits that record failed attempts, and only when the time moves on by a step, so a
/// target that keeps failing costs a lookup per batch, not a write.
const LAST_FAILURES: TableDefinition<'static, u128, i64> = TableDefinition::new("last_failures");

/// How stale a target's time in `LAST_FAILURES` may be: a later failure within this step
/// of the stored one is not written.
pub const FAILURE_TIME_STEP_MS: Millis = 60_000;

/// The number of the file's last commit (see `write.rs`): the journal's records carry it,
/// so a replay applies exactly the commits the file does not hold.
const COMMIT_NUMBER: TableDefinition<'static, (), u64> = TableDefinition::new("commit_number");

const FORMAT_KEY: &str = "format_version";

/// Bodies smaller than this are stored in the event's own row (one insert per event, not
/// two); larger ones in `BODY_CHUNKS`. The price: walking past events (a deep page of the
/// event log, a retention scan) reads their small bodies too, up to this much per event.
pub const INLINE_BODY_BYTES: usize = 16 * 1024;

/// redb page cache of a file opened only to read its earliest due time.
const PEEK_CACHE_BYTES: usize = 256 * 1024;

/// An event file's database, shared by its readers, the pruner and its writer.
/// `None` only while the writer reopens it after a failed write, or if that failed.
pub(super) type SharedDb = std::sync::Arc<RwLock<Option<Database>>>;

/// A new event with its body and one delivery per active target.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct NewEvent {
    /// The event record.
    pub event: Event,
    /// The raw body.
    pub body: Bytes,
    /// Its deliveries: `Pending` and due now, or already finished by this very commit
    /// (`database` targets, and targets whose filter skipped the event: no attempt record,
    /// no due row).
    pub deliveries: Vec<Delivery>,
    /// The request's idempotency key, when its webhook dedupes and the request has one.
    pub dedupe: Option<DedupeKey>,
}

/// An idempotency key and how long it makes later requests duplicates.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct DedupeKey {
    /// The key as stored (see `routing::Dedupe::key`).
    pub key: Vec<u8>,
    /// A request whose key was stored less than this long before is a duplicate.
    pub window_ms: Millis,
}

/// A delivery's new state after an attempt or a deferral.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct AttemptWrite {
    /// The delivery as it now stands (status, attempts, next_attempt_at).
    pub delivery: Delivery,
    /// The due time the delivery's due-index row is filed under now.
    pub previous_due: Option<Millis>,
    /// The attempt's record; `None` for a deferral (breaker open), which spends no attempt.
    pub result: Option<DeliveryResult>,
}

/// One request to the writer thread.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub enum WriteOp {
    /// Store an event, its body, its deliveries and their due rows.
    Ingest(NewEvent),
    /// Record an attempt or deferral and move or remove the due row. Only for unfinished
    /// deliveries: one finished at ingest lives in its event's row and must never get a
    /// second copy here.
    Attempt(AttemptWrite),
    /// Add deliveries (and due rows) to an existing event: redelivery.
    AddDeliveries(Vec<Delivery>),
    /// Restore exported events with their deliveries and attempts, each as it was; an
    /// event whose id the file already holds is left as it is (importing twice is
    /// harmless). Unfinished deliveries get their due rows (I2).
    Import(Vec<EventDetail>),
}

impl WriteOp {
    pub(super) fn weight(&self) -> usize {
        match self {
            WriteOp::Ingest(n) => n.body.len() + 256,
            WriteOp::Attempt(a) => a
                .result
                .as_ref()
                .map_or(64, |r| r.response_body.len() + r.exchange.weight() + 128),
            WriteOp::AddDeliveries(d) => d.len() * 64,
            WriteOp::Import(events) => events.iter().map(|e| e.body.len() + 256).sum(),
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
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct EventDetail {
    /// The event.
    pub event: Event,
    /// Its raw body.
    pub body: Vec<u8>,
    /// Each delivery with its attempts in order.
    pub deliveries: Vec<(Delivery, Vec<DeliveryResult>)>,
}

/// Events in arrival order from a point on, each with its whole body, every delivery and
/// every attempt: one page of an export.
#[derive(Debug, Clone)]
pub struct ExportPage {
    /// The events, oldest first.
    pub events: Vec<EventDetail>,
    /// Where the next page starts (pass it as `from`), or `None` after the last event.
    pub next: Option<Uuid>,
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

/// What [`EventStore::overview`] read.
#[derive(Debug, Clone, Default)]
pub struct FileOverview {
    /// Stored events.
    pub events: u64,
    /// Per target, when an attempt to it last failed.
    pub last_failures: std::collections::HashMap<Uuid, Millis>,
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
    /// failed write. A file the journal holds commits of (it closed without a checkpoint)
    /// gets them first.
    fn open_with(
        webhook_id: Uuid,
        path: &Path,
        pool: &WriterPool,
        due_times: Arc<DueTimes>,
        open: impl Fn() -> Result<Database, StoreError> + Send + 'static,
    ) -> Result<EventStore, StoreError> {
        let db = open()?;
        if let Some(journal) = pool.journal()
            && journal.holds(webhook_id)
        {
            super::writer::catch_up(&db, journal, webhook_id)?;
        }
        // A failure of the file's previous writer (one that closed it) is over: it opens
        // and holds every commit.
        pool.health()
            .recovered(webhook_id, super::health::Operation::Write);
        let db = std::sync::Arc::new(RwLock::new(Some(db)));
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

    /// Transactions the file's writer has committed since the file was opened: each is
    /// one fsync, however many writes it holds.
    pub fn commits(&self) -> u64 {
        self.writer.commits()
    }

    /// Writes waiting for the writer, not counting a batch being committed.
    pub fn queued(&self) -> usize {
        self.writer.queued()
    }

    /// Whether no write is waiting or being committed.
    pub fn idle(&self) -> bool {
        self.writer.idle()
    }

    /// Whether the file may be closed to make room for another: idle, and not failed with
    /// commits only the journal holds (its writer reopens it and replays them).
    pub(super) fn closable(&self) -> bool {
        self.idle() && !self.writer.failed_with_journaled_commits()
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

    /// Queues every write (the writer commits them together, up to its batch bound) and
    /// waits for all of them; one outcome per write, in order. For callers off the hot
    /// path that write many independent things, a refusal of one not failing the others.
    pub fn write_all_blocking(&self, ops: Vec<WriteOp>) -> Vec<Result<(), StoreError>> {
        let waiting: Vec<_> = ops
            .into_iter()
            .map(|op| {
                let (tx, rx) = std::sync::mpsc::sync_channel(1);
                self.submit(op, Notice::default().and_wake(tx)).map(|()| rx)
            })
            .collect();
        waiting
            .into_iter()
            .map(|w| w.and_then(|rx| rx.recv().map_err(|_| StoreError::Closed)?))
            .collect()
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

    /// The number of stored events, and when an attempt to each target last failed (up
    /// to [`FAILURE_TIME_STEP_MS`] earlier than it did; targets that never failed are
    /// absent), in one read: what the webhooks list shows of a webhook.
    pub fn overview(&self) -> Result<FileOverview, StoreError> {
        let rx = self.read()?;
        let events = rx.open_table(EVENTS)?.len()?;
        let mut last_failures = std::collections::HashMap::new();
        match rx.open_table(LAST_FAILURES) {
            Ok(table) => {
                for row in table.iter()? {
                    let (target, at) = row?;
                    last_failures.insert(Uuid::from_u128(target.value()), at.value());
                }
            }
            // No attempt has failed since the file was made.
            Err(redb::TableError::TableDoesNotExist(_)) => {}
            Err(e) => return Err(e.into()),
        }
        Ok(FileOverview {
            events,
            last_failures,
        })
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
        let parts = RowParts::open(&rx)?;
        let deliveries = rx.open_table(DELIVERIES)?;
        let total = events.len()?;
        let mut out = Vec::with_capacity(limit);
        for row in events.range::<u128>(..)?.rev().skip(offset).take(limit) {
            let (k, v) = row?;
            let (event, body, settled) = event_row(v.value(), k.value(), &parts, body_limit)?;
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
            Some(event_body(
                &event,
                inline,
                event_id.as_u128(),
                &LargeBodies::open(&rx)?,
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
            &RowParts::open(&rx)?,
            usize::MAX,
        )?;
        let results = rx.open_table(RESULTS)?;
        let mut deliveries = Vec::new();
        let table = rx.open_table(DELIVERIES)?;
        for d in event_deliveries(settled, &table, event_id.as_u128())? {
            let mut attempts = Vec::new();
            for row in results.range((d.id.as_u128(), 0)..=(d.id.as_u128(), u32::MAX))? {
                attempts.push(decode_result(row?.1.value())?);
            }
            deliveries.push((d, attempts));
        }
        Ok(Some(EventDetail {
            event,
            body,
            deliveries,
        }))
    }

    /// Whether the file holds the event.
    pub fn has_event(&self, event_id: Uuid) -> Result<bool, StoreError> {
        Ok(self
            .read()?
            .open_table(EVENTS)?
            .get(event_id.as_u128())?
            .is_some())
    }

    /// Events with ids from `from` on (UUIDv7: arrival order), oldest first, whole: at
    /// most `max_events`, and no more once their bodies reach `max_body_bytes` (at least
    /// one event). One read transaction per page, so an export of any size holds one
    /// page in memory and no transaction for long.
    pub fn export_page(
        &self,
        from: Uuid,
        max_events: usize,
        max_body_bytes: usize,
    ) -> Result<ExportPage, StoreError> {
        let rx = self.read()?;
        let events = rx.open_table(EVENTS)?;
        let parts = RowParts::open(&rx)?;
        let deliveries = rx.open_table(DELIVERIES)?;
        let results = rx.open_table(RESULTS)?;
        let mut page = ExportPage {
            events: Vec::new(),
            next: None,
        };
        let mut bytes = 0usize;
        for row in events.range(from.as_u128()..)? {
            let (k, v) = row?;
            let id = k.value();
            if page.events.len() >= max_events || bytes >= max_body_bytes {
                page.next = Some(Uuid::from_u128(id));
                break;
            }
            let (event, body, settled) = event_row(v.value(), id, &parts, usize::MAX)?;
            let mut with_attempts = Vec::new();
            for d in event_deliveries(settled, &deliveries, id)? {
                let mut attempts = Vec::new();
                for row in results.range((d.id.as_u128(), 0)..=(d.id.as_u128(), u32::MAX))? {
                    attempts.push(decode_result(row?.1.value())?);
                }
                with_attempts.push((d, attempts));
            }
            bytes += body.len();
            page.events.push(EventDetail {
                event,
                body,
                deliveries: with_attempts,
            });
        }
        Ok(page)
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
        let (event, settled, _) = decode_event_row(row.value())?;
        settled
            .into_iter()
            .find(|d| d.id() == delivery_id)
            .map(|d| d.delivery(&event, &SkipReasons::open(&rx)?))
            .transpose()
    }
}

impl Drop for EventStore {
    fn drop(&mut self) {
        self.close();
    }
}

/// Encodes a `RESULTS` row: the result, extended by what went over the wire.
fn encode_result(result: &DeliveryResult) -> Result<Vec<u8>, StoreError> {
    codec::encode_extended(result, &result.exchange, &[])
}

/// Decodes a `RESULTS` row: the result, extended by what went over the wire.
pub(super) fn decode_result(row: &[u8]) -> Result<DeliveryResult, StoreError> {
    let (mut result, exchange, _): (DeliveryResult, AttemptExchange, _) =
        codec::decode_extended(row)?;
    result.exchange = exchange;
    Ok(result)
}

/// The file's database, unless the writer is reopening it after a failed write.
fn available(db: &Option<Database>) -> Result<&Database, StoreError> {
    db.as_ref().ok_or(StoreError::Unavailable)
}

/// The parts of an `EVENTS` row: the event, the deliveries in the row and the inline body
/// bytes.
fn decode_event_row(row: &[u8]) -> Result<(Event, Vec<SettledRow>, &[u8]), StoreError> {
    codec::decode_extended(row)
}

/// What reading whole `EVENTS` rows needs besides the rows, opened in one read
/// transaction: large bodies and skip reasons.
struct RowParts {
    bodies: LargeBodies,
    reasons: SkipReasons,
}

impl RowParts {
    fn open(rx: &ReadTransaction) -> Result<RowParts, StoreError> {
        Ok(RowParts {
            bodies: LargeBodies::open(rx)?,
            reasons: SkipReasons::open(rx)?,
        })
    }
}

/// Decodes an `EVENTS` row: the event, the first `body_limit` bytes of its body (from the
/// row itself or, for a large body, from its chunks) and the deliveries in the row.
fn event_row(
    row: &[u8],
    id: u128,
    parts: &RowParts,
    body_limit: usize,
) -> Result<(Event, Vec<u8>, Vec<Delivery>), StoreError> {
    let (event, settled, inline) = decode_event_row(row)?;
    let body = event_body(&event, inline, id, &parts.bodies, body_limit)?;
    let settled = settled::deliveries(&event, settled, &parts.reasons)?;
    Ok((event, body, settled))
}

/// The first `limit` bytes of an event's body: the bytes after its record when the body is
/// inline, else its chunks. Anything else is an error, never a silently empty or
/// short body that could be delivered as if it were the event's.
fn event_body(
    event: &Event,
    inline: &[u8],
    id: u128,
    bodies: &LargeBodies,
    limit: usize,
) -> Result<Vec<u8>, StoreError> {
    if inline.len() as u64 == event.body_len {
        return Ok(inline[..inline.len().min(limit)].to_vec());
    }
    if !inline.is_empty() {
        return Err(StoreError::Codec(format!(
            "event {}: {} body bytes in its row, {} recorded",
            event.id,
            inline.len(),
            event.body_len
        )));
    }
    bodies.read(event, id, limit)
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

/// Opens redb on `backend`, the event file at `path`: checks the format version and creates
/// any missing table. This is the migration hook: once `EVENTS_OLDEST_READABLE` is below
/// the current version, an older file is brought up to date here, in this transaction.
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
        tx.open_table(BODY_CHUNKS)?;
        tx.open_table(DELIVERIES)?;
        tx.open_table(RESULTS)?;
        tx.open_table(DUE)?;
        tx.open_table(DEDUPE)?;
        tx.open_table(DEDUPE_EVENTS)?;
        tx.open_table(SKIP_REASONS)?;
        tx.open_table(SKIP_REASON_IDS)?;
        tx.open_table(COMMIT_NUMBER)?;
    }
    tx.commit()?;
    Ok(db)
}

mod body;
mod due;
mod find;
mod retention;
mod settled;
mod write;

pub(super) use due::{open_existing, peek_earliest_due};
pub use find::{
    DeliveryCounts, EventFilter, FoundEvent, SEARCH_BODY_BYTES, ScanReport, TargetCounts,
    contains_ignoring_case,
};
pub(super) use write::{BatchOutcome, SyncBy, checkpoint, commit, replay};

#[cfg(test)]
mod tests;
