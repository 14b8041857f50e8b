//! Large bodies (of [`INLINE_BODY_BYTES`](super::INLINE_BODY_BYTES) or more): how they are
//! cut into `BODY_CHUNKS` rows, and how they are read back.
//!
//! Why chunks: redb's buddy allocator gives a leaf the smallest power-of-two number of
//! pages its pairs fit in, and a value larger than a page has a leaf of its own. A body
//! stored as one value therefore cost up to twice its size on disk: a 1 MiB body, with its
//! key and the leaf's header, needs a 2 MiB leaf, and a 16 KiB one a 32 KiB leaf. A chunk
//! of 2^k pages less what its leaf holds besides it fills that leaf exactly, so a body cut
//! into such chunks (largest first, then the rest, under a page, as a last small row) costs
//! its size plus less than a page.

use std::ops::Range;

use redb::{ReadOnlyTable, ReadTransaction};

use super::BODY_CHUNKS;
use crate::model::Event;
use crate::store::StoreError;

/// redb's page size, the unit of its allocator.
const PAGE_BYTES: usize = 4096;

/// What a leaf holding one `BODY_CHUNKS` row stores besides the chunk: the leaf's header
/// (type, padding and pair count, 4 bytes), the value's end offset (4 bytes; the key is of
/// fixed width, so it has none) and the key `(u128, u32)` (20 bytes). redb's leaf format;
/// the size test in `tests.rs` fails if it changes.
const CHUNK_LEAF_OVERHEAD: usize = 4 + 4 + 16 + 4;

/// The largest chunk fills a leaf of 2^this pages (256 KiB). Bigger chunks would save only
/// B-tree rows, a few bytes each; smaller allocations are easier for redb to place in the
/// space retention frees, without growing the file for want of a contiguous free run.
const MAX_CHUNK_ORDER: u32 = 6;

/// The most a read reserves up front for a body, whatever its record says.
const PREALLOCATE_MAX: usize = 64 << 20;

/// The largest chunk, in bytes.
#[cfg(test)]
pub(super) const MAX_CHUNK_BYTES: usize = (PAGE_BYTES << MAX_CHUNK_ORDER) - CHUNK_LEAF_OVERHEAD;

/// The byte ranges of a body of `len` bytes, one per chunk in order: each the largest
/// chunk that fills a power-of-two leaf (at most 2^[`MAX_CHUNK_ORDER`] pages) and fits in
/// what is left, and finally what is left under a page.
pub(super) fn chunks(len: usize) -> impl Iterator<Item = Range<usize>> {
    let mut start = 0;
    std::iter::from_fn(move || {
        let left = len - start;
        if left == 0 {
            return None;
        }
        let size = (0..=MAX_CHUNK_ORDER)
            .rev()
            .map(|order| (PAGE_BYTES << order) - CHUNK_LEAF_OVERHEAD)
            .find(|&size| size <= left)
            .unwrap_or(left);
        start += size;
        Some(start - size..start)
    })
}

/// The key range of an event's chunks.
pub(super) fn chunk_keys(id: u128) -> std::ops::RangeInclusive<(u128, u32)> {
    (id, 0)..=(id, u32::MAX)
}

/// The table large bodies live in, opened in one read transaction.
pub(super) struct LargeBodies {
    /// `(event, index)`: the chunks of every large body.
    chunks: ReadOnlyTable<(u128, u32), &'static [u8]>,
}

impl LargeBodies {
    /// Opens the table in `rx`.
    pub(super) fn open(rx: &ReadTransaction) -> Result<LargeBodies, StoreError> {
        Ok(LargeBodies {
            chunks: rx.open_table(BODY_CHUNKS)?,
        })
    }

    /// Whether event `id` has a body stored apart from its row.
    pub(super) fn exists(&self, id: u128) -> Result<bool, StoreError> {
        Ok(self.chunks.get((id, 0))?.is_some())
    }

    /// The first `limit` bytes of `event`'s body, stored apart from its row (event `id`).
    /// A body that is missing, has a chunk missing, or does not add up to the recorded
    /// length is an error, never a shorter body. A read that stops at `limit` checks only
    /// the chunks it read: a page of previews must not read every large body whole.
    pub(super) fn read(
        &self,
        event: &Event,
        id: u128,
        limit: usize,
    ) -> Result<Vec<u8>, StoreError> {
        let mismatch = |stored: u64| {
            StoreError::Codec(format!(
                "event {}: {stored} body bytes stored, {} recorded",
                event.id, event.body_len
            ))
        };
        let whole = limit as u64 >= event.body_len;
        let want = if whole {
            event.body_len as usize
        } else {
            limit
        };
        // The recorded length sizes the buffer only up to a bound: a damaged record must
        // fail the length check below, not abort the process allocating.
        let mut out = Vec::with_capacity(want.min(PREALLOCATE_MAX));
        let mut stored = 0u64;
        for (index, row) in (0u32..).zip(self.chunks.range(chunk_keys(id))?) {
            let (key, chunk) = row?;
            if key.value().1 != index {
                return Err(StoreError::Codec(format!(
                    "event {}: chunk {index} of its {}-byte body is missing",
                    event.id, event.body_len
                )));
            }
            let chunk = chunk.value();
            stored += chunk.len() as u64;
            out.extend_from_slice(&chunk[..chunk.len().min(want - out.len())]);
            if !whole && out.len() == want {
                return Ok(out);
            }
        }
        match stored {
            0 => Err(StoreError::Codec(format!(
                "event {}: its {}-byte body is missing",
                event.id, event.body_len
            ))),
            n if n != event.body_len => Err(mismatch(n)),
            _ => Ok(out),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every chunk but a last one under a page fills a power-of-two leaf exactly, none is
    /// larger than the largest, and together they cover the body once, in order.
    #[test]
    fn chunks_fill_power_of_two_leaves_and_cover_the_body() {
        let largest = MAX_CHUNK_BYTES;
        for len in [
            1,
            PAGE_BYTES - CHUNK_LEAF_OVERHEAD - 1,
            PAGE_BYTES - CHUNK_LEAF_OVERHEAD,
            16 * 1024,
            20 * 1024,
            largest - 1,
            largest,
            largest + 1,
            2 * largest,
            600 * 1024,
            1024 * 1024,
            10 * 1024 * 1024,
        ] {
            let ranges: Vec<_> = chunks(len).collect();
            let mut end = 0;
            for (i, r) in ranges.iter().enumerate() {
                assert_eq!(r.start, end, "{len}: chunk {i} does not follow on");
                end = r.end;
                let leaf = r.len() + CHUNK_LEAF_OVERHEAD;
                let last = i == ranges.len() - 1;
                assert!(
                    (leaf.is_power_of_two() && leaf >= PAGE_BYTES) || (last && leaf < PAGE_BYTES),
                    "{len}: chunk {i} of {} bytes",
                    r.len()
                );
                assert!(r.len() <= largest);
            }
            assert_eq!(end, len);
            // Largest first: a body takes few rows, at most a couple per size below the
            // largest.
            assert!(ranges.len() <= len / largest + 2 * MAX_CHUNK_ORDER as usize + 2);
        }
        assert_eq!(chunks(0).count(), 0);
    }
}
