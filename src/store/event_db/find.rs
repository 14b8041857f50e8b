//! Finding events: the event log's filters (delivery status, target, time range, text),
//! and per-target delivery counts. Both are bounded scans, newest first, so their cost
//! does not grow with the file: there is no secondary index to keep up to date on every
//! ingest commit.

use std::collections::HashMap;

use redb::{ReadableTable, ReadableTableMetadata};
use uuid::Uuid;

use super::body::LargeBodies;
use super::{
    DELIVERIES, EVENTS, EventStore, RESULTS, RowParts, decode_event_row, decode_result, event_body,
    event_deliveries, settled,
};
use crate::model::{Delivery, DeliveryResult, DeliveryStatus, Event, Millis};
use crate::store::{StoreError, codec};

/// Body bytes a text search looks at per event: all of a body stored in its event's row,
/// the first 16 KiB of a larger one (its first chunk), so a search over 10,000 large
/// events reads at most 160 MiB.
pub const SEARCH_BODY_BYTES: usize = super::INLINE_BODY_BYTES;

/// What a filtered scan of the event log keeps. Every part is optional; they combine with
/// AND.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct EventFilter {
    /// Events with at least one delivery in this status (to `target_id`, if set),
    /// compared by name: a skipped delivery matches whatever its reason.
    pub status: Option<DeliveryStatus>,
    /// Events with a delivery to this target.
    pub target_id: Option<Uuid>,
    /// Events whose header names or values, or body, contain this text (ASCII case
    /// ignored). Empty means no text filter.
    pub text: Vec<u8>,
    /// Received at or after.
    pub since: Option<Millis>,
    /// Received at or before (inclusive, like `since`).
    pub until: Option<Millis>,
}

impl EventFilter {
    /// Whether anything is filtered out at all.
    pub fn is_empty(&self) -> bool {
        *self == EventFilter::default()
    }

    /// The `EVENTS` key range holding every event of the time range, a second wider on
    /// each side: ids are UUIDv7, whose first 48 bits are the millisecond they were made,
    /// which may differ slightly from `received_at` (checked exactly per event).
    fn key_range(&self) -> std::ops::RangeInclusive<u128> {
        let from = self
            .since
            .map_or(0, |s| ((s.saturating_sub(1000)).max(0) as u128) << 80);
        let to = self.until.map_or(u128::MAX, |u| {
            ((u.saturating_add(1001).max(0) as u128) << 80).saturating_sub(1)
        });
        from..=to
    }

    fn keeps_time(&self, at: Millis) -> bool {
        self.since.is_none_or(|s| at >= s) && self.until.is_none_or(|u| at <= u)
    }

    fn keeps_deliveries(&self, deliveries: &[Delivery]) -> bool {
        if self.status.is_none() && self.target_id.is_none() {
            return true;
        }
        deliveries.iter().any(|d| {
            self.status
                .as_ref()
                .is_none_or(|s| d.status.as_str() == s.as_str())
                && self.target_id.is_none_or(|t| d.target_id == t)
        })
    }

    fn keeps_headers(&self, event: &Event) -> bool {
        event.headers.iter().any(|(name, value)| {
            contains_ignoring_case(name.as_bytes(), &self.text)
                || contains_ignoring_case(value, &self.text)
        })
    }
}

/// Whether `needle` occurs in `haystack`, ASCII letters compared without case.
pub fn contains_ignoring_case(haystack: &[u8], needle: &[u8]) -> bool {
    if needle.is_empty() {
        return true;
    }
    let first = needle[0].to_ascii_lowercase();
    haystack.len() >= needle.len()
        && (0..=haystack.len() - needle.len()).any(|i| {
            haystack[i].to_ascii_lowercase() == first
                && haystack[i..i + needle.len()].eq_ignore_ascii_case(needle)
        })
}

/// One event that passed the filter, handed to the caller of [`EventStore::find_events`].
pub struct FoundEvent<'a> {
    /// The event.
    pub event: &'a Event,
    /// Its deliveries, oldest first.
    pub deliveries: &'a [Delivery],
    inline: &'a [u8],
    id: u128,
    bodies: &'a LargeBodies,
}

impl FoundEvent<'_> {
    /// The first `limit` bytes of its body.
    pub fn body(&self, limit: usize) -> Result<Vec<u8>, StoreError> {
        event_body(self.event, self.inline, self.id, self.bodies, limit)
    }
}

/// How far a filtered scan looked.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ScanReport {
    /// Events looked at (in the time range, newest first). A failed, retrying or pending
    /// filter looks only at events with deliveries to send (see `by_deliveries`).
    pub scanned: usize,
    /// Whether every event of the time range was looked at; `false` when the scan stopped
    /// at its bound.
    pub complete: bool,
    /// Whether the scan walked the `deliveries` table: it then passed over, without
    /// counting them, the events whose every delivery was finished by their own commit
    /// (delivered to a `database` target, or skipped), which no such filter can match.
    pub by_deliveries: bool,
}

/// The tables a filtered scan reads.
struct Tables {
    events: redb::ReadOnlyTable<u128, &'static [u8]>,
    deliveries: redb::ReadOnlyTable<(u128, u128), &'static [u8]>,
    parts: RowParts,
}

/// [`consider`] for the event with key `id`, if it is still stored.
fn consider_id(
    filter: &EventFilter,
    id: u128,
    tables: &Tables,
    found: &mut impl FnMut(FoundEvent<'_>) -> Result<bool, StoreError>,
) -> Result<bool, StoreError> {
    match tables.events.get(id)? {
        Some(row) => consider(filter, id, row.value(), tables, found),
        None => Ok(true),
    }
}

/// Checks one event row against the filter and hands it to `found` if it passes; returns
/// whether to go on. A text search first looks for the text in the row's raw bytes
/// (headers and an inline body are in there as sent): a row without it is passed over
/// without being decoded, which is most rows.
fn consider(
    filter: &EventFilter,
    id: u128,
    row: &[u8],
    tables: &Tables,
    found: &mut impl FnMut(FoundEvent<'_>) -> Result<bool, StoreError>,
) -> Result<bool, StoreError> {
    if !filter.text.is_empty()
        && !contains_ignoring_case(row, &filter.text)
        && !tables.parts.bodies.exists(id)?
    {
        return Ok(true);
    }
    let (event, settled, inline) = decode_event_row(row)?;
    if !filter.keeps_time(event.received_at) {
        return Ok(true);
    }
    let settled = settled::deliveries(&event, settled, &tables.parts.reasons)?;
    let ds = event_deliveries(settled, &tables.deliveries, id)?;
    if !filter.keeps_deliveries(&ds) {
        return Ok(true);
    }
    let candidate = FoundEvent {
        event: &event,
        deliveries: &ds,
        inline,
        id,
        bodies: &tables.parts.bodies,
    };
    if !filter.text.is_empty()
        && !filter.keeps_headers(&event)
        && !contains_ignoring_case(&candidate.body(SEARCH_BODY_BYTES)?, &filter.text)
    {
        return Ok(true);
    }
    found(candidate)
}

/// Per-target delivery counts over the newest deliveries of a file.
#[derive(Debug, Clone, Default)]
pub struct TargetCounts {
    /// Not attempted yet (waiting: the backlog).
    pub pending: u64,
    /// Attempted, another attempt due.
    pub retrying: u64,
    /// Gave up.
    pub failed: u64,
    /// The last attempt of the newest delivery that was attempted.
    pub last: Option<DeliveryResult>,
}

/// What [`EventStore::target_counts`] found.
#[derive(Debug, Clone, Default)]
pub struct DeliveryCounts {
    /// Per target.
    pub targets: HashMap<Uuid, TargetCounts>,
    /// Deliveries counted.
    pub counted: usize,
    /// Whether every delivery of the file was counted.
    pub complete: bool,
}

impl EventStore {
    /// Calls `found` for every event that passes `filter`, newest first, looking at no
    /// more than `max_scanned` events of the filter's time range; `found` returns whether
    /// to go on. Reads nothing but the event rows in the range, their deliveries and, for a
    /// text search that headers do not settle, up to [`SEARCH_BODY_BYTES`] of the body.
    /// A failed, retrying or pending filter walks the `deliveries` table instead (small
    /// rows; events with nothing there cannot match), decoding only the events that pass.
    pub fn find_events(
        &self,
        filter: &EventFilter,
        max_scanned: usize,
        mut found: impl FnMut(FoundEvent<'_>) -> Result<bool, StoreError>,
    ) -> Result<ScanReport, StoreError> {
        let rx = self.read()?;
        let tables = Tables {
            events: rx.open_table(EVENTS)?,
            deliveries: rx.open_table(DELIVERIES)?,
            parts: RowParts::open(&rx)?,
        };
        let range = filter.key_range();
        // Only unfinished and failed deliveries are sure to have rows of their own; a
        // delivered or skipped one may live in its event's row (`settled.rs`).
        let by_deliveries = matches!(
            filter.status,
            Some(DeliveryStatus::Pending | DeliveryStatus::Retrying | DeliveryStatus::Failed)
        );
        let mut report = ScanReport {
            scanned: 0,
            complete: true,
            by_deliveries,
        };
        if !by_deliveries {
            for row in tables.events.range(range)?.rev() {
                if report.scanned >= max_scanned {
                    report.complete = false;
                    break;
                }
                report.scanned += 1;
                let (k, v) = row?;
                if !consider(filter, k.value(), v.value(), &tables, &mut found)? {
                    break;
                }
            }
            return Ok(report);
        }
        // One group of rows per event, newest event first; `hit` once a row passes.
        let mut group: Option<(u128, bool)> = None;
        let keys = (*range.start(), 0u128)..=(*range.end(), u128::MAX);
        for row in tables.deliveries.range(keys)?.rev() {
            let (k, v) = row?;
            let (event, _) = k.value();
            match group {
                Some((id, _)) if id == event => {}
                previous => {
                    if let Some((id, true)) = previous
                        && !consider_id(filter, id, &tables, &mut found)?
                    {
                        return Ok(report);
                    }
                    if report.scanned >= max_scanned {
                        report.complete = false;
                        return Ok(report);
                    }
                    report.scanned += 1;
                    group = Some((event, false));
                }
            }
            if let Some((_, hit @ false)) = &mut group {
                let d: Delivery = codec::decode(v.value())?;
                *hit = filter.keeps_deliveries(std::slice::from_ref(&d));
            }
        }
        if let Some((id, true)) = group {
            consider_id(filter, id, &tables, &mut found)?;
        }
        Ok(report)
    }

    /// Counts the newest `max_deliveries` deliveries of the file by target and status
    /// (those in `DELIVERIES`: the ones a commit finished at ingest are all delivered),
    /// and reads each target's latest attempt. A reverse scan of one table of small rows:
    /// about 10 ms per 100,000.
    pub fn target_counts(&self, max_deliveries: usize) -> Result<DeliveryCounts, StoreError> {
        let rx = self.read()?;
        let table = rx.open_table(DELIVERIES)?;
        let results = rx.open_table(RESULTS)?;
        let mut out = DeliveryCounts {
            complete: table.len()? as usize <= max_deliveries,
            ..DeliveryCounts::default()
        };
        for row in table.iter()?.rev().take(max_deliveries) {
            let d: Delivery = codec::decode(row?.1.value())?;
            out.counted += 1;
            let counts = out.targets.entry(d.target_id).or_default();
            match d.status {
                DeliveryStatus::Pending => counts.pending += 1,
                DeliveryStatus::Retrying => counts.retrying += 1,
                DeliveryStatus::Failed => counts.failed += 1,
                DeliveryStatus::Delivered | DeliveryStatus::Skipped { .. } => {}
            }
            if counts.last.is_none() && d.attempts > 0 {
                let key = d.id.as_u128();
                if let Some(last) = results.range((key, 0)..=(key, u32::MAX))?.next_back() {
                    counts.last = Some(decode_result(last?.1.value())?);
                }
            }
        }
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn text_is_found_without_case() {
        assert!(contains_ignoring_case(
            b"X-GitHub-Event: push",
            b"github-event"
        ));
        assert!(contains_ignoring_case(b"abc", b""));
        assert!(!contains_ignoring_case(b"ab", b"abc"));
        assert!(!contains_ignoring_case(b"\xff\xfe", b"a"));
        assert!(contains_ignoring_case(b"\xffpUsH", b"push"));
    }

    #[test]
    fn a_time_range_is_a_key_range_with_a_margin() {
        let f = EventFilter {
            since: Some(10_000),
            until: Some(20_000),
            ..EventFilter::default()
        };
        let r = f.key_range();
        assert!(r.contains(&(10_000u128 << 80)));
        assert!(r.contains(&((20_000u128 << 80) | 0xffff)));
        assert!(!r.contains(&(8_000u128 << 80)));
        assert!(!r.contains(&(22_000u128 << 80)));
        assert!(f.keeps_time(10_000) && f.keeps_time(20_000));
        assert!(!f.keeps_time(9_999) && !f.keeps_time(20_001));
        assert_eq!(EventFilter::default().key_range(), 0..=u128::MAX);
    }
}
