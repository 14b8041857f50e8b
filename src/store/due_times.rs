//! [`DueTimes`]: the earliest due time of every webhook's due index, in memory.
//!
//! Every change to a due index goes through its file's writer, which updates the entry
//! after each commit that touched the index, so the sweeper can open only the files that
//! have work due instead of scanning every file every second. A webhook whose file has not
//! been looked at since the start is unknown; the sweeper learns it once
//! (`Store::learn_earliest_due`) without keeping the file open.

use std::collections::HashMap;
use std::sync::{Mutex, MutexGuard};

use uuid::Uuid;

use crate::model::Millis;

/// What is known of one webhook's due index.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EarliestDue {
    /// Not looked at since the start.
    Unknown,
    /// No unfinished delivery.
    Nothing,
    /// The earliest due time of its unfinished deliveries.
    At(Millis),
}

/// The earliest due time per webhook (see the module documentation).
#[derive(Debug, Default)]
pub struct DueTimes(Mutex<HashMap<Uuid, Option<Millis>>>);

impl DueTimes {
    fn lock(&self) -> MutexGuard<'_, HashMap<Uuid, Option<Millis>>> {
        // Plain inserts and removes: a panic leaves the map whole.
        self.0.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// What is known of `webhook_id`'s due index.
    pub fn get(&self, webhook_id: Uuid) -> EarliestDue {
        match self.lock().get(&webhook_id) {
            None => EarliestDue::Unknown,
            Some(None) => EarliestDue::Nothing,
            Some(Some(at)) => EarliestDue::At(*at),
        }
    }

    /// Records the earliest due time of `webhook_id` (`None`: nothing is due).
    pub(crate) fn set(&self, webhook_id: Uuid, earliest: Option<Millis>) {
        self.lock().insert(webhook_id, earliest);
    }

    /// Forgets a webhook (its file is gone).
    pub(crate) fn forget(&self, webhook_id: Uuid) {
        self.lock().remove(&webhook_id);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unknown_nothing_and_a_time_are_told_apart() {
        let times = DueTimes::default();
        let id = Uuid::from_u128(1);
        assert_eq!(times.get(id), EarliestDue::Unknown);
        times.set(id, None);
        assert_eq!(times.get(id), EarliestDue::Nothing);
        times.set(id, Some(5));
        assert_eq!(times.get(id), EarliestDue::At(5));
        times.forget(id);
        assert_eq!(times.get(id), EarliestDue::Unknown);
    }
}
