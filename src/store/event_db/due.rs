//! The due index of an event file: what is due when, read by the sweeper and at start.

use std::collections::HashSet;
use std::path::Path;

use redb::{ReadableDatabase, ReadableTable, ReadableTableMetadata};
use uuid::Uuid;

use super::{DUE, DueRow, EventStore, PEEK_CACHE_BYTES, open_database};
use crate::model::Millis;
use crate::store::StoreError;

/// Most rows [`EventStore::due_before`] passes over in one scan (about 7 ms per 100k).
const MAX_SKIPPED_DUE_ROWS: usize = 100_000;

impl EventStore {
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
}

pub(super) fn due_key(at: Millis) -> u64 {
    at.max(0) as u64
}

/// Opens the event file at `path` with redb's plain backend (no writer, no zero-filling),
/// reads its earliest due time and closes it again.
pub(in crate::store) fn peek_earliest_due(path: &Path) -> Result<Option<Millis>, StoreError> {
    let db = open_existing(path)?;
    let earliest = earliest_due(&db.begin_read()?)?;
    drop(db);
    Ok(earliest)
}

/// Opens an existing event file on its own, with a small cache: to read one thing from it
/// or to replay the journal into it, then close it.
pub(in crate::store) fn open_existing(path: &Path) -> Result<redb::Database, StoreError> {
    let file = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open(path)?;
    let backend = redb::backends::FileBackend::new(file)?;
    open_database(backend, path, PEEK_CACHE_BYTES)
}

/// The earliest due time in a file's due index (`None`: it is empty).
pub(super) fn earliest_due(tx: &redb::ReadTransaction) -> Result<Option<Millis>, StoreError> {
    let table = tx.open_table(DUE)?;
    let first = table.first()?;
    Ok(first.map(|(key, _)| key.value().0 as Millis))
}
