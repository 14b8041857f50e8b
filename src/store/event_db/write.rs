//! The rows one write transaction of an event file adds, moves and removes.

use std::collections::HashMap;

use redb::{
    Database, Durability, Key, ReadableDatabase, ReadableTable, Table, TableDefinition, Value,
    WriteTransaction,
};

use super::due::due_key;
use super::settled::SettledRow;
use super::{
    BODY_CHUNKS, COMMIT_NUMBER, DEDUPE, DEDUPE_EVENTS, DELIVERIES, DUE, EVENTS,
    FAILURE_TIME_STEP_MS, INLINE_BODY_BYTES, LAST_FAILURES, RESULTS, SKIP_REASON_IDS, SKIP_REASONS,
    WriteOp, body, encode_result,
};
use crate::model::{Delivery, DeliveryResult, Millis};
use crate::store::{StoreError, codec};

/// What one write transaction did.
pub(in crate::store) struct BatchOutcome {
    /// Each request's outcome, in order.
    pub(in crate::store) outcomes: Vec<Result<(), StoreError>>,
    /// The due index's earliest time after the commit (`Some(None)`: empty), if the
    /// transaction touched the index.
    pub(in crate::store) earliest_due: Option<Option<Millis>>,
    /// The file's commit number of this transaction, if anything was written and so
    /// committed (a batch of refused requests, say duplicates alone, is aborted: it costs
    /// no sync and takes no number).
    pub(in crate::store) committed: Option<u64>,
}

/// How a commit is made durable.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(in crate::store) enum SyncBy {
    /// Synced by the transaction itself (`Durability::Immediate`).
    File,
    /// Not synced: the caller journals the writes (see `store/journal.rs`).
    Journal,
}

/// Applies `ops` in one transaction and commits it, numbered one above the file's last
/// commit. A request refused before it wrote anything (redelivery of an event retention
/// removed meanwhile, a duplicate of a stored event) gets its error in the returned
/// outcomes, one per op, and the others commit; any other error fails them all.
pub(in crate::store) fn commit<'a>(
    db: &Database,
    ops: impl Iterator<Item = &'a WriteOp>,
    sync: SyncBy,
) -> Result<BatchOutcome, StoreError> {
    let mut tx = db.begin_write()?;
    if sync == SyncBy::Journal {
        tx.set_durability(Durability::None)?;
    }
    let mut outcomes = Vec::new();
    let mut wrote = false;
    let earliest_due = {
        let mut tables = WriteTables::new(&tx);
        for op in ops {
            match tables.apply(op) {
                Ok(()) => {
                    wrote = true;
                    outcomes.push(Ok(()));
                }
                Err(e @ (StoreError::UnknownEvent | StoreError::Duplicate(_))) => {
                    outcomes.push(Err(e))
                }
                Err(e) => return Err(e),
            }
        }
        tables.record_failures()?;
        match &tables.due {
            Some(due) if wrote => Some(due.first()?.map(|(key, _)| key.value().0 as Millis)),
            _ => None,
        }
    };
    let committed = if wrote {
        let number = next_commit_number(&tx)?;
        tx.commit()?;
        Some(number)
    } else {
        tx.abort()?;
        None
    };
    Ok(BatchOutcome {
        outcomes,
        earliest_due,
        committed,
    })
}

/// Makes every earlier commit of the file durable (a checkpoint of the journal): one
/// synced transaction that only advances the commit number.
pub(in crate::store) fn checkpoint(db: &Database) -> Result<(), StoreError> {
    let tx = db.begin_write()?;
    next_commit_number(&tx)?;
    tx.commit()?;
    Ok(())
}

/// The number of the file's last commit (0 before the first).
pub(in crate::store) fn last_commit_number(db: &Database) -> Result<u64, StoreError> {
    let rx = db.begin_read()?;
    let table = match rx.open_table(COMMIT_NUMBER) {
        Ok(t) => t,
        Err(redb::TableError::TableDoesNotExist(_)) => return Ok(0),
        Err(e) => return Err(e.into()),
    };
    Ok(table.get(())?.map_or(0, |n| n.value()))
}

/// Applies a commit read back from the journal, numbered as it was, unless the file
/// already holds it (its number is not above the file's). Not synced: the replay ends
/// with a [`checkpoint`]. Returns whether it was applied.
pub(in crate::store) fn replay(
    db: &Database,
    number: u64,
    ops: &[WriteOp],
) -> Result<bool, StoreError> {
    let last = last_commit_number(db)?;
    if number <= last {
        return Ok(false);
    }
    if number != last + 1 {
        // A gap: a journaled commit is missing, which only a lost segment explains.
        // Applying the rest keeps what can be kept.
        tracing::error!(last, number, "the journal skips commits of an event file");
    }
    let mut tx = db.begin_write()?;
    tx.set_durability(Durability::None)?;
    {
        let mut tables = WriteTables::new(&tx);
        for op in ops {
            match tables.apply(op) {
                Ok(()) => {}
                // Refused before it wrote anything. Only writes that were stored are
                // journaled, so this does not happen; if it did, the refusal stores
                // nothing, as it would have then.
                Err(e @ (StoreError::UnknownEvent | StoreError::Duplicate(_))) => {
                    tracing::error!(error = %e, number, "a journaled write was refused on replay");
                }
                // The commit is not applied: the file must not skip it (a full disk, say;
                // the replay is tried again).
                Err(e) => return Err(e),
            }
        }
        tables.record_failures()?;
    }
    tx.open_table(COMMIT_NUMBER)?.insert((), number)?;
    tx.commit()?;
    Ok(true)
}

/// Advances the commit number in `tx` and returns the new one.
fn next_commit_number(tx: &WriteTransaction) -> Result<u64, StoreError> {
    let mut table = tx.open_table(COMMIT_NUMBER)?;
    let next = table.get(())?.map_or(0, |n| n.value()) + 1;
    table.insert((), next)?;
    Ok(next)
}

/// The time in a UUIDv7's first 48 bits, in Unix milliseconds.
pub(super) fn uuid_ms(id: u128) -> Millis {
    (id >> 80) as Millis
}

/// The tables of one write transaction, each opened on first use and then kept: an open
/// costs a lookup and closing a modified table a table-tree update, so a batch pays them
/// once per table, not once per request, and a table the batch never touches costs nothing.
struct WriteTables<'t> {
    tx: &'t WriteTransaction,
    events: Option<Table<'t, u128, &'static [u8]>>,
    chunks: Option<Table<'t, (u128, u32), &'static [u8]>>,
    deliveries: Option<Table<'t, (u128, u128), &'static [u8]>>,
    results: Option<Table<'t, (u128, u32), &'static [u8]>>,
    due: Option<Table<'t, (u64, u128), (u128, u128)>>,
    dedupe: Option<Table<'t, &'static [u8], u128>>,
    dedupe_events: Option<Table<'t, u128, &'static [u8]>>,
    skip_reason_ids: Option<Table<'t, &'static str, u32>>,
    skip_reasons: Option<Table<'t, u32, &'static str>>,
    /// Skip reasons numbered in this batch: events skipped by the same conditions repeat
    /// them, and a map lookup is cheaper than the table's.
    skip_reason_memo: HashMap<String, u32>,
    /// Per target, the latest failed attempt the batch records, for `LAST_FAILURES`.
    failures: HashMap<u128, Millis>,
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
            chunks: None,
            deliveries: None,
            results: None,
            due: None,
            dedupe: None,
            dedupe_events: None,
            skip_reason_ids: None,
            skip_reasons: None,
            skip_reason_memo: HashMap::new(),
            failures: HashMap::new(),
        }
    }

    /// Notes `r`, an attempt to `target_id`, if it failed.
    fn note_result(&mut self, target_id: uuid::Uuid, r: &DeliveryResult) {
        if !r.success {
            let at = self
                .failures
                .entry(target_id.as_u128())
                .or_insert(Millis::MIN);
            *at = (*at).max(r.started_at);
        }
    }

    /// Writes the batch's failed attempts to `LAST_FAILURES`, each only if it is a step
    /// later than the time stored: a batch without failures opens nothing, and one whose
    /// target keeps failing reads a row and writes nothing most of the time. Called once,
    /// after the batch's requests.
    fn record_failures(&mut self) -> Result<(), StoreError> {
        if self.failures.is_empty() {
            return Ok(());
        }
        let mut table = self.tx.open_table(LAST_FAILURES)?;
        for (&target, &at) in &self.failures {
            let stored = table.get(target)?.map(|v| v.value());
            // A step later, or a step earlier: a stored time ahead of every failure (a
            // clock that jumped, an imported attempt from the future) must not stick.
            if stored.is_none_or(|s| (at - s).abs() >= FAILURE_TIME_STEP_MS) {
                table.insert(target, at)?;
            }
        }
        self.failures.clear();
        Ok(())
    }

    /// Writes one request's rows into the transaction.
    fn apply(&mut self, op: &WriteOp) -> Result<(), StoreError> {
        match op {
            WriteOp::Ingest(n) => {
                let id = n.event.id.as_u128();
                if let Some(d) = &n.dedupe {
                    // Looked up and written in the event's own transaction: two requests
                    // with one key store one event, in one batch or two, and a crash
                    // keeps both the event and its key, or neither. Refused before
                    // anything is written, so the rest of the batch commits.
                    let index = opened(self.tx, &mut self.dedupe, DEDUPE)?;
                    let first = index.get(d.key.as_slice())?.map(|v| v.value());
                    if let Some(first) = first
                        && n.event.received_at - uuid_ms(first) < d.window_ms
                    {
                        return Err(StoreError::Duplicate(uuid::Uuid::from_u128(first)));
                    }
                    index.insert(d.key.as_slice(), id)?;
                    opened(self.tx, &mut self.dedupe_events, DEDUPE_EVENTS)?
                        .insert(id, d.key.as_slice())?;
                }
                let inline = n.body.len() < INLINE_BODY_BYTES;
                // A delivery this commit finishes (delivered to a `database` target, or
                // skipped by a filter) goes in the event's row (`settled.rs`).
                let mut settled = Vec::new();
                let mut own_rows = Vec::new();
                for d in &n.deliveries {
                    match SettledRow::of(d, &n.event, &mut |r| self.skip_reason_number(r))? {
                        Some(row) => settled.push(row),
                        None => own_rows.push(d),
                    }
                }
                let row =
                    codec::encode_extended(&n.event, &settled, if inline { &n.body } else { &[] })?;
                opened(self.tx, &mut self.events, EVENTS)?.insert(id, row.as_slice())?;
                if !inline {
                    let chunks = opened(self.tx, &mut self.chunks, BODY_CHUNKS)?;
                    for (index, range) in (0u32..).zip(body::chunks(n.body.len())) {
                        chunks.insert((id, index), &n.body[range])?;
                    }
                }
                self.insert_deliveries(own_rows)
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
            WriteOp::Import(events) => {
                for e in events {
                    let id = e.event.id.as_u128();
                    if opened(self.tx, &mut self.events, EVENTS)?
                        .get(id)?
                        .is_some()
                    {
                        continue;
                    }
                    // Every delivery gets a row of its own (readers merge rows with the
                    // event's), so the event's row needs no rule about which were settled.
                    let inline = e.body.len() < INLINE_BODY_BYTES;
                    let row = codec::encode_extended(
                        &e.event,
                        &Vec::<SettledRow>::new(),
                        if inline { &e.body } else { &[] },
                    )?;
                    opened(self.tx, &mut self.events, EVENTS)?.insert(id, row.as_slice())?;
                    if !inline {
                        let chunks = opened(self.tx, &mut self.chunks, BODY_CHUNKS)?;
                        for (index, range) in (0u32..).zip(body::chunks(e.body.len())) {
                            chunks.insert((id, index), &e.body[range])?;
                        }
                    }
                    for (d, attempts) in &e.deliveries {
                        self.insert_deliveries([d])?;
                        let results = opened(self.tx, &mut self.results, RESULTS)?;
                        for r in attempts {
                            results.insert(
                                (d.id.as_u128(), r.attempt),
                                encode_result(r)?.as_slice(),
                            )?;
                        }
                        for r in attempts {
                            self.note_result(d.target_id, r);
                        }
                    }
                }
                Ok(())
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
                    let row = encode_result(r)?;
                    opened(self.tx, &mut self.results, RESULTS)?
                        .insert((d.id.as_u128(), r.attempt), row.as_slice())?;
                    self.note_result(d.target_id, r);
                }
                Ok(())
            }
        }
    }

    /// The number of a skip reason in `SKIP_REASONS`, stored now if it is new. Reasons
    /// come from filters, so a file holds as many as distinct conditions have skipped
    /// events, however many events there are.
    fn skip_reason_number(&mut self, reason: &str) -> Result<u32, StoreError> {
        if let Some(&n) = self.skip_reason_memo.get(reason) {
            return Ok(n);
        }
        let n = self.skip_reason_in_tables(reason)?;
        self.skip_reason_memo.insert(reason.to_owned(), n);
        Ok(n)
    }

    fn skip_reason_in_tables(&mut self, reason: &str) -> Result<u32, StoreError> {
        if let Some(n) = opened(self.tx, &mut self.skip_reason_ids, SKIP_REASON_IDS)?.get(reason)? {
            return Ok(n.value());
        }
        let texts = opened(self.tx, &mut self.skip_reasons, SKIP_REASONS)?;
        let next = match texts.last()? {
            Some((n, _)) => n.value().checked_add(1).ok_or_else(|| {
                StoreError::Codec("the file has numbered every skip reason it can".into())
            })?,
            None => 0,
        };
        texts.insert(next, reason)?;
        opened(self.tx, &mut self.skip_reason_ids, SKIP_REASON_IDS)?.insert(reason, next)?;
        Ok(next)
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
