//! Writes for event files that are closed, waiting while a call thread opens the file.
//!
//! A delivery thread that records an attempt must not open a file itself: opening may wait
//! for another file to go idle, and with more webhooks busy than files may be open, every
//! attempt would pay for an open (and a close) on the thread that should be launching the
//! next exchange. Instead the write waits here, one call thread opens the file, and every
//! write that gathered meanwhile goes to its writer at once: one open for many writes.

use std::collections::HashMap;

use uuid::Uuid;

use super::event_db::WriteOp;
use super::notice::Notice;

/// Most writes waiting for files to open, over all files; beyond that a write is refused
/// with `Busy` (its notice says so, and the delivery is retried from the due index).
pub(super) const PENDING_CAP: usize = 8192;

/// Writes by webhook, in submission order.
#[derive(Default)]
pub(super) struct PendingWrites {
    by_webhook: HashMap<Uuid, Vec<(WriteOp, Notice)>>,
    total: usize,
}

/// Where a write for a closed file went.
pub(super) enum Queued {
    /// The first write for this file: the caller starts the open.
    First,
    /// Added behind writes whose open is under way.
    Behind,
    /// No room: the write's notice comes back, to be told so.
    Full(Notice),
}

impl PendingWrites {
    /// Whether writes for `webhook_id` are waiting (so a new one must queue behind them,
    /// even if the file is open by now, to keep their order).
    pub(super) fn has(&self, webhook_id: Uuid) -> bool {
        self.by_webhook.contains_key(&webhook_id)
    }

    /// Queues a write for `webhook_id`.
    pub(super) fn push(&mut self, webhook_id: Uuid, op: WriteOp, notice: Notice) -> Queued {
        if self.total >= PENDING_CAP {
            return Queued::Full(notice);
        }
        self.total += 1;
        let writes = self.by_webhook.entry(webhook_id).or_default();
        writes.push((op, notice));
        if writes.len() == 1 {
            Queued::First
        } else {
            Queued::Behind
        }
    }

    /// Takes every write waiting for `webhook_id`.
    pub(super) fn take(&mut self, webhook_id: Uuid) -> Vec<(WriteOp, Notice)> {
        let writes = self.by_webhook.remove(&webhook_id).unwrap_or_default();
        self.total -= writes.len();
        writes
    }
}
