//! Retention of an event file: removing old finished events, and compaction.

use redb::ReadableTable;

use redb::Database;

use super::{
    BODY_CHUNKS, DEDUPE, DEDUPE_EVENTS, DELIVERIES, EVENTS, EventStore, PruneReport, RESULTS,
    available, body, deliveries_in,
};
use crate::model::Millis;
use crate::store::StoreError;

impl EventStore {
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

    /// Forgets the idempotency keys stored before `cutoff` (now less the webhook's dedupe
    /// window: they can no longer make a request a duplicate), in transactions of at most
    /// `PRUNE_CHUNK` keys. Returns how many went.
    pub fn prune_dedupe(&self, cutoff: Millis) -> Result<u64, StoreError> {
        const PRUNE_CHUNK: usize = 1000;
        let bound = (cutoff.max(0) as u128) << 80;
        let mut removed = 0;
        loop {
            let db = self.db.read().unwrap_or_else(|p| p.into_inner());
            let tx = available(&db)?.begin_write()?;
            let done = {
                let mut by_event = tx.open_table(DEDUPE_EVENTS)?;
                let mut index = tx.open_table(DEDUPE)?;
                let mut old = Vec::with_capacity(PRUNE_CHUNK);
                for row in by_event.range(..bound)?.take(PRUNE_CHUNK) {
                    let (id, key) = row?;
                    old.push((id.value(), key.value().to_vec()));
                }
                for (id, key) in &old {
                    // A key stored again after its window points at the newer event.
                    let current = index.get(key.as_slice())?.map(|v| v.value());
                    if current == Some(*id) {
                        index.remove(key.as_slice())?;
                    }
                    by_event.remove(*id)?;
                }
                removed += old.len() as u64;
                old.len() < PRUNE_CHUNK
            };
            tx.commit()?;
            if done {
                return Ok(removed);
            }
        }
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
            let mut chunks = tx.open_table(BODY_CHUNKS)?;
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
                // A small body went with its row; a large one is in chunks.
                chunks.retain_in(body::chunk_keys(id), |_, _| false)?;
                removed += 1;
            }
        }
        tx.commit()?;
        Ok((removed, next))
    }
}
