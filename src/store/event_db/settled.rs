//! Deliveries finished by the commit that writes their event (a `database` target's, whose
//! delivery is the stored event, and those a filter skipped), as the event's row holds
//! them: only what the event does not already say. A skipped delivery's reason is stored
//! once per file in `SKIP_REASONS` and referred to by number, so ten targets that skip
//! every event cost about the bytes of ten delivered ones, not ten sentences per event
//! (rows that grow past half a page halve how many fit in one, and ingest slows with them).

use redb::{ReadOnlyTable, ReadTransaction};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use super::SKIP_REASONS;
use crate::model::{Delivery, DeliveryStatus, Event};
use crate::store::StoreError;

/// A settled delivery in its event's row. The rest of its [`Delivery`] is implied: the
/// event's id, created when the event was received, no attempt due; one attempt if
/// delivered, none if skipped. Such a delivery never changes after its commit, so a row
/// of its own would only cost a second B-tree insert for every event.
#[derive(Debug, Serialize, Deserialize)]
pub(super) struct SettledRow {
    id: Uuid,
    target_id: Uuid,
    outcome: Outcome,
}

#[derive(Debug, Serialize, Deserialize)]
enum Outcome {
    Delivered,
    /// The number of its reason in `SKIP_REASONS`.
    Skipped(u32),
}

impl SettledRow {
    /// The row of `d`, if it is a delivery of `event` that its commit finishes and all of
    /// it but the outcome is implied (as ingest makes them); `number` gives a skip reason
    /// its number in `SKIP_REASONS` (storing it if it is new). Any other delivery gets a
    /// row of its own.
    pub(super) fn of(
        d: &Delivery,
        event: &Event,
        number: &mut impl FnMut(&str) -> Result<u32, StoreError>,
    ) -> Result<Option<SettledRow>, StoreError> {
        let implied = |attempts| {
            d.event_id == event.id
                && d.created_at == event.received_at
                && d.next_attempt_at.is_none()
                && d.attempts == attempts
        };
        let outcome = match &d.status {
            DeliveryStatus::Delivered if implied(1) => Outcome::Delivered,
            DeliveryStatus::Skipped { reason } if implied(0) => Outcome::Skipped(number(reason)?),
            _ => return Ok(None),
        };
        Ok(Some(SettledRow {
            id: d.id,
            target_id: d.target_id,
            outcome,
        }))
    }

    /// The delivery's id.
    pub(super) fn id(&self) -> Uuid {
        self.id
    }

    /// The delivery this row stands for, in `event`'s row.
    pub(super) fn delivery(
        self,
        event: &Event,
        reasons: &SkipReasons,
    ) -> Result<Delivery, StoreError> {
        let (status, attempts) = match self.outcome {
            Outcome::Delivered => (DeliveryStatus::Delivered, 1),
            Outcome::Skipped(n) => (
                DeliveryStatus::Skipped {
                    reason: Box::new(reasons.text(n)?),
                },
                0,
            ),
        };
        Ok(Delivery {
            id: self.id,
            event_id: event.id,
            target_id: self.target_id,
            status,
            attempts,
            next_attempt_at: None,
            created_at: event.received_at,
        })
    }
}

/// The deliveries of `rows`, in `event`'s row.
pub(super) fn deliveries(
    event: &Event,
    rows: Vec<SettledRow>,
    reasons: &SkipReasons,
) -> Result<Vec<Delivery>, StoreError> {
    rows.into_iter()
        .map(|r| r.delivery(event, reasons))
        .collect()
}

/// The reasons table, opened in one read transaction.
pub(super) struct SkipReasons {
    texts: ReadOnlyTable<u32, &'static str>,
}

impl SkipReasons {
    /// Opens the table in `rx`.
    pub(super) fn open(rx: &ReadTransaction) -> Result<SkipReasons, StoreError> {
        Ok(SkipReasons {
            texts: rx.open_table(SKIP_REASONS)?,
        })
    }

    fn text(&self, n: u32) -> Result<String, StoreError> {
        match self.texts.get(n)? {
            Some(t) => Ok(t.value().to_owned()),
            None => Err(StoreError::Codec(format!("skip reason {n} is missing"))),
        }
    }
}
