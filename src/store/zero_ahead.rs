//! The storage backend of the event files: redb's own [`FileBackend`], plus a job on the
//! writer pool that keeps the next few MiB ahead of redb's writes filled with zeros.
//!
//! Why: redb grows its file with `set_len`, which leaves a hole, and its pages then land in
//! that hole. The first write into a hole makes the filesystem (ext4, XFS) allocate blocks,
//! so the commit's `fdatasync` must also write the allocation (the journal, or on ext4
//! without one the inode and extent blocks). With the blocks already written (as zeros, off
//! the writer's path) a commit overwrites existing blocks and its `fdatasync` flushes data
//! only. Measured on ingest at 64 connections: the writer's `fdatasync` took 0.36 ms instead
//! of 0.54 ms (docs/performance.md). PostgreSQL zero-fills its WAL segments for the same
//! reason; `fallocate` does not help, as ext4 still records the first write to each block
//! it allocated that way.
//!
//! Architecture Invariant: the zeroer never overwrites a byte redb wrote. Every redb write
//! is noted under the lock before it is made: one that starts at or below `zeroed` moves
//! `zeroed` past its end, one further on becomes an island. The zeroer writes only from
//! `zeroed` up to the next island, holding the lock, so a redb write into that range waits
//! and lands after the zeros. It never writes past the file's length (it never extends the
//! file), and it starts only at redb's first write, when redb holds its lock on the file.

use std::collections::BTreeMap;
use std::fs::{File, OpenOptions};
use std::io;
use std::ops::Bound;
use std::os::unix::fs::FileExt;
use std::path::Path;
use std::sync::{Arc, Condvar, Mutex, MutexGuard};

use redb::backends::FileBackend;
use redb::{BackendError, StorageBackend};

use super::writer::Spawner;

/// The zeroer `fdatasync`s after each this much.
const CHUNK: u64 = 1 << 20;
/// How far ahead of redb's writes it keeps zeros: as far as there is data, at most this
/// much, so a small file's zeros never outweigh its data and a large one's stay bounded.
const MAX_AHEAD: u64 = 32 << 20;
/// Most islands (see [`Extent::islands`]) tracked; past that the zeroer skips to the last.
const MAX_ISLANDS: usize = 1024;
/// The zeros come from here: one piece of a chunk.
static ZEROS: [u8; 64 * 1024] = [0; 64 * 1024];

/// A redb file whose space just ahead of redb's writes is kept zero-filled.
#[derive(Debug)]
pub(crate) struct ZeroAheadFile {
    inner: FileBackend,
    shared: Arc<Shared>,
}

struct Shared {
    /// The zeroer's own open of the file, not a `dup` of redb's: the kernel reports a
    /// write-back error once per open file, and this one must not take redb's.
    file: File,
    extent: Mutex<Extent>,
    /// Runs the zeroing job on the writer pool.
    spawn: Spawner,
    /// Signalled when a zeroing job ends (`stop` waits for a running one).
    ended: Condvar,
}

impl std::fmt::Debug for Shared {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Shared")
            .field("extent", &self.extent)
            .finish_non_exhaustive()
    }
}

/// What the zeroer knows of the file. Offsets in bytes.
#[derive(Debug)]
struct Extent {
    /// The file's length, as redb last set it.
    len: u64,
    /// The zeroer's position: it writes only at or past it, and past it only where no
    /// island is. Only grows, but for a shrink of the file.
    zeroed: u64,
    /// How far redb's writes reach into the space below `zeroed` (at the start: where the
    /// file's first hole began): zeros are wanted ahead of it.
    lead: u64,
    /// redb's writes at or past `zeroed`, merged, start → end. redb allocates from more than
    /// one place (it writes the end of a grown file early), so the zeroer skips these.
    islands: BTreeMap<u64, u64>,
    /// The zeroer has been started (at redb's first write or resize).
    started: bool,
    /// No zeroing job is queued or running; a write that makes work queues one.
    idle: bool,
    /// A zeroing job is running (writing), as opposed to queued.
    running: bool,
    /// Zero-filling is off, or closing, or the zeroer failed: nothing more is zeroed.
    stopped: bool,
}

impl Extent {
    /// How far past the lead zeros are wanted.
    fn ahead(&self) -> u64 {
        self.lead.clamp(CHUNK, MAX_AHEAD)
    }

    /// Where zeros are wanted up to: ahead of the lead, within the file.
    fn want(&self) -> u64 {
        (self.lead + self.ahead()).min(self.len)
    }

    /// The end of the gap the zeroer may fill now: up to the next island.
    fn gap_end(&self) -> u64 {
        let island = self.islands.keys().next().copied().unwrap_or(u64::MAX);
        self.want().min(island)
    }

    /// Whether zeros are wanted that are not written yet.
    fn behind(&self) -> bool {
        !self.stopped && self.zeroed < self.gap_end()
    }

    /// Whether the zeroer should wake: half the distance ahead is used up. It then zeroes
    /// all the way, so it runs (and `fdatasync`s) in a few long bursts, not after every
    /// commit of redb's.
    fn should_start(&self) -> bool {
        self.behind() && (self.want() - self.zeroed) * 2 > self.ahead()
    }

    /// Notes a redb write of `[start, end)`, before it is made.
    fn wrote(&mut self, start: u64, end: u64) {
        if self.stopped {
            // Nothing will be zeroed: no islands to keep.
            return;
        }
        if start <= self.zeroed {
            self.lead = self.lead.max(end);
            self.zeroed = self.zeroed.max(end);
        } else {
            self.add_island(start, end);
        }
        self.pass_islands();
    }

    fn add_island(&mut self, mut start: u64, mut end: u64) {
        if let Some((&s, &e)) = self.islands.range(..=start).next_back()
            && e >= start
        {
            start = s;
            end = end.max(e);
        }
        let merged: Vec<u64> = self.islands.range(start..=end).map(|(&s, _)| s).collect();
        for s in merged {
            if let Some(e) = self.islands.remove(&s) {
                end = end.max(e);
            }
        }
        self.islands.insert(start, end);
        if self.islands.len() > MAX_ISLANDS {
            // Scattered writes: give up on the gaps between them.
            if let Some((_, &last)) = self.islands.iter().next_back() {
                self.zeroed = self.zeroed.max(last);
            }
        }
    }

    /// Moves `zeroed` past the islands it has reached and forgets them.
    fn pass_islands(&mut self) {
        while let Some((&start, &end)) = self.islands.iter().next() {
            if start > self.zeroed {
                break;
            }
            self.islands.remove(&start);
            self.zeroed = self.zeroed.max(end);
        }
    }

    /// The file is now `len` long.
    fn resized(&mut self, len: u64) {
        self.len = len;
        self.zeroed = self.zeroed.min(len);
        self.lead = self.lead.min(len);
        // Islands past a shrink are gone with the file; one across it ends there.
        self.islands.retain(|&start, _| start < len);
        for end in self.islands.values_mut() {
            *end = (*end).min(len);
        }
    }
}

impl ZeroAheadFile {
    /// Opens (or creates) `path`. Its zeroer, run by `spawn`, starts at redb's first write
    /// (see [`start_once`](Self::start_once)).
    pub(crate) fn open(path: &Path, spawn: Spawner) -> io::Result<ZeroAheadFile> {
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(path)?;
        let zeroer_file = OpenOptions::new().write(true).open(path)?;
        let zero_fill = fills_holes_in_place(&file);
        ZeroAheadFile::new(file, zeroer_file, spawn, zero_fill)
    }

    /// redb's backend on `file`; the zeroer, if `zero_fill`, writes through `zeroer_file`.
    fn new(
        file: File,
        zeroer_file: File,
        spawn: Spawner,
        zero_fill: bool,
    ) -> io::Result<ZeroAheadFile> {
        Ok(ZeroAheadFile {
            inner: FileBackend::new(file).map_err(io::Error::other)?,
            shared: Arc::new(Shared {
                file: zeroer_file,
                extent: Mutex::new(Extent {
                    len: 0,
                    zeroed: 0,
                    lead: 0,
                    islands: BTreeMap::new(),
                    started: false,
                    idle: true,
                    running: false,
                    stopped: !zero_fill,
                }),
                spawn,
                ended: Condvar::new(),
            }),
        })
    }

    /// Starts the zeroer on redb's first write or resize. Not at open: redb locks the file
    /// after its backend exists, and an open it refuses (the file is live elsewhere) must
    /// never write to the file.
    fn start_once(&self, extent: &mut Extent) {
        if extent.started || extent.stopped {
            return;
        }
        extent.started = true;
        let file = &self.shared.file;
        match file.metadata() {
            Ok(m) => {
                extent.len = m.len();
                let (first_hole, islands) = layout(file, extent.len);
                extent.zeroed = first_hole;
                extent.lead = first_hole;
                extent.islands = islands;
                extent.pass_islands();
            }
            Err(e) => {
                extent.stopped = true;
                tracing::warn!(error = %e, "zero-filling ahead of an event file failed; continuing without");
            }
        }
    }

    /// Stops the zeroer and waits for a job that is writing; idempotent. A job still
    /// queued finds it stopped and writes nothing, so once this returns nothing more is
    /// written (the file may be opened again at once).
    fn stop(&self) {
        let mut extent = self.shared.extent();
        extent.stopped = true;
        while extent.running {
            extent = self
                .shared
                .ended
                .wait(extent)
                .unwrap_or_else(|p| p.into_inner());
        }
        drop(extent);
        // A job that just ended still holds the shared state (and its handle on the file)
        // until its closure returns, a few instructions later; wait for that, so a closed
        // file's descriptor is gone when this returns. Queued jobs hold it only weakly.
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(1);
        while Arc::strong_count(&self.shared) > 1 && std::time::Instant::now() < deadline {
            std::thread::yield_now();
        }
    }
}

impl Drop for ZeroAheadFile {
    fn drop(&mut self) {
        self.stop();
    }
}

impl Shared {
    fn extent(&self) -> MutexGuard<'_, Extent> {
        // Every update of Extent is a plain assignment: a panic leaves it consistent.
        self.extent.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Queues a zeroing job if `extent` (just changed, still locked) gives it work and none
    /// is queued or running.
    fn wake_if_due(self: &Arc<Self>, extent: &mut Extent) {
        if extent.idle && extent.should_start() {
            extent.idle = false;
            // Weak: a job still queued when the file closes must not keep its handle open.
            let shared = Arc::downgrade(self);
            (self.spawn)(Box::new(move || {
                if let Some(shared) = shared.upgrade() {
                    shared.fill();
                }
            }));
        }
    }

    /// The zeroing job: zeroes all that is wanted, a chunk and an `fdatasync` at a time,
    /// and goes on while writes made more work meanwhile.
    fn fill(&self) {
        {
            let mut extent = self.extent();
            if extent.stopped {
                extent.idle = true;
                return;
            }
            extent.running = true;
        }
        loop {
            let zeroed = || -> io::Result<()> {
                while self.extent().behind() {
                    self.zero_chunk()?;
                    self.file.sync_data()?;
                }
                Ok(())
            };
            let result = zeroed();
            let mut extent = self.extent();
            if let Err(e) = result {
                extent.stopped = true;
                tracing::warn!(error = %e, "zero-filling ahead of an event file failed; continuing without");
            }
            // Checked under the lock that writes take to note themselves: a write after
            // this sees the job gone and queues another.
            if extent.stopped || !extent.should_start() {
                extent.running = false;
                extent.idle = true;
                self.ended.notify_all();
                return;
            }
        }
    }

    /// Zeros up to [`CHUNK`] bytes, a piece at a time, each under the lock: a redb write
    /// into the piece being zeroed waits for it and lands after it; one elsewhere waits at
    /// most for one piece.
    fn zero_chunk(&self) -> io::Result<()> {
        let mut done = 0;
        while done < CHUNK {
            let mut extent = self.extent();
            if !extent.behind() {
                break;
            }
            // Up to the next island at most: that space is redb's.
            let to = (extent.zeroed + ZEROS.len() as u64).min(extent.gap_end());
            self.file
                .write_all_at(&ZEROS[..(to - extent.zeroed) as usize], extent.zeroed)?;
            done += to - extent.zeroed;
            extent.zeroed = to;
            extent.pass_islands();
        }
        Ok(())
    }
}

/// Whether zeros written ahead spare later commits anything: on ext4 and XFS the first
/// write into a hole allocates blocks and an overwrite does not. On copy-on-write
/// filesystems (btrfs, ZFS) every write allocates, so zeros would only double the writes.
fn fills_holes_in_place(file: &File) -> bool {
    const EXT4: u64 = 0xEF53;
    const XFS: u64 = 0x5846_5342;
    rustix::fs::fstatfs(file).is_ok_and(|fs| matches!(fs.f_type as u64, EXT4 | XFS))
}

/// Where the first hole of `file` begins, and the data after it, as islands. The whole
/// file (no zeroing until it grows) if the filesystem cannot tell or the data is scattered.
fn layout(file: &File, len: u64) -> (u64, BTreeMap<u64, u64>) {
    use rustix::fs::{SeekFrom, seek};
    let hole = |at| seek(file, SeekFrom::Hole(at)).ok();
    let Some(first_hole) = hole(0) else {
        return (len, BTreeMap::new());
    };
    let mut islands = BTreeMap::new();
    let mut at = first_hole;
    while at < len {
        let data = match seek(file, SeekFrom::Data(at)) {
            Ok(data) => data,
            Err(rustix::io::Errno::NXIO) => break,
            Err(_) => return (len, BTreeMap::new()),
        };
        let Some(end) = hole(data) else {
            return (len, BTreeMap::new());
        };
        islands.insert(data, end.min(len));
        if islands.len() > MAX_ISLANDS {
            return (len, BTreeMap::new());
        }
        at = end;
    }
    (first_hole.min(len), islands)
}

impl StorageBackend for ZeroAheadFile {
    fn len(&self) -> io::Result<u64> {
        self.inner.len()
    }

    fn read(&self, offset: u64, out: &mut [u8]) -> io::Result<()> {
        self.inner.read(offset, out)
    }

    fn set_len(&self, len: u64) -> io::Result<()> {
        // Under the lock: no chunk is being zeroed while the length changes.
        let mut extent = self.shared.extent();
        self.start_once(&mut extent);
        self.inner.set_len(len)?;
        extent.resized(len);
        self.shared.wake_if_due(&mut extent);
        Ok(())
    }

    fn sync_data(&self) -> io::Result<()> {
        self.inner.sync_data()
    }

    fn write(&self, offset: u64, data: &[u8]) -> io::Result<()> {
        {
            let mut extent = self.shared.extent();
            self.start_once(&mut extent);
            extent.wrote(offset, offset + data.len() as u64);
            self.shared.wake_if_due(&mut extent);
        }
        self.inner.write(offset, data)
    }

    fn close(&self) -> io::Result<()> {
        self.stop();
        self.inner.close()
    }

    fn try_lock_range(&self, start: Bound<u64>, end: Bound<u64>) -> Result<bool, BackendError> {
        self.inner.try_lock_range(start, end)
    }

    fn try_lock_shared_range(
        &self,
        start: Bound<u64>,
        end: Bound<u64>,
    ) -> Result<bool, BackendError> {
        self.inner.try_lock_shared_range(start, end)
    }

    fn lock_range(&self, start: Bound<u64>, end: Bound<u64>) -> Result<(), BackendError> {
        self.inner.lock_range(start, end)
    }

    fn lock_shared_range(&self, start: Bound<u64>, end: Bound<u64>) -> Result<(), BackendError> {
        self.inner.lock_shared_range(start, end)
    }

    fn unlock_range(&self, start: Bound<u64>, end: Bound<u64>) -> Result<(), BackendError> {
        self.inner.unlock_range(start, end)
    }

    fn query_lock_range(&self, start: Bound<u64>, end: Bound<u64>) -> Result<bool, BackendError> {
        self.inner.query_lock_range(start, end)
    }
}

#[cfg(test)]
mod tests {
    use std::time::{Duration, Instant};

    use rustix::fs::{SeekFrom, seek};

    use super::*;

    const PAGE: usize = 4096;

    /// A path for a fresh file, in a directory removed when the guard drops.
    fn temp_file() -> (tempfile::TempDir, std::path::PathBuf) {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("f.redb");
        (dir, path)
    }

    /// A page of `seed`s, so a misplaced or zeroed page shows.
    fn page(seed: u8) -> Vec<u8> {
        vec![seed.max(1); PAGE]
    }

    /// Waits (bounded) until the zeroer sleeps, having nothing to do.
    fn caught_up(file: &ZeroAheadFile) {
        let deadline = Instant::now() + Duration::from_secs(20);
        while !file.shared.extent().idle {
            assert!(Instant::now() < deadline, "zeroer never caught up");
            std::thread::sleep(Duration::from_millis(1));
        }
    }

    fn next_hole(path: &Path, from: u64) -> u64 {
        let f = File::open(path).unwrap();
        seek(&f, SeekFrom::Hole(from)).unwrap()
    }

    /// Runs each zeroing job on a thread of its own, as the pool would on one of its.
    fn spawner() -> Spawner {
        Arc::new(|job| {
            std::thread::spawn(job);
        })
    }

    fn rw(path: &Path) -> File {
        OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(path)
            .unwrap()
    }

    /// The file at `path` with its zeroer on, whatever the filesystem under the test.
    fn zero_filling(path: &Path) -> ZeroAheadFile {
        ZeroAheadFile::new(rw(path), rw(path), spawner(), true).unwrap()
    }

    fn read(file: &ZeroAheadFile, offset: u64, len: usize) -> Vec<u8> {
        let mut out = vec![0; len];
        file.read(offset, &mut out).unwrap();
        out
    }

    /// Grows `len` as redb does (doubling, leaving a hole) until `end` fits.
    fn grow_to(file: &ZeroAheadFile, len: &mut u64, end: u64) {
        while *len < end {
            *len *= 2;
            file.set_len(*len).unwrap();
        }
    }

    #[test]
    fn zeros_go_ahead_of_the_data() {
        let (_dir, path) = temp_file();
        let file = zero_filling(&path);
        let mut len = 64 * 1024;
        file.set_len(len).unwrap();
        for i in 0..3000u64 {
            let offset = i * PAGE as u64;
            grow_to(&file, &mut len, offset + PAGE as u64);
            file.write(offset, &page(i as u8)).unwrap();
            if i % 64 == 0 {
                // Keeps redb's writes inside the zeros, so the lead follows them.
                caught_up(&file);
            }
        }
        // Room for the full distance ahead.
        len = 64 << 20;
        file.set_len(len).unwrap();
        caught_up(&file);

        let data_end = 3000 * PAGE as u64;
        for i in 0..3000u64 {
            assert_eq!(read(&file, i * PAGE as u64, PAGE), page(i as u8));
        }
        // Past the data: zeros, really written (no hole), as far as the zeroer goes ...
        let zeroed_to = data_end + data_end.clamp(CHUNK, MAX_AHEAD);
        assert!(next_hole(&path, data_end) >= zeroed_to);
        let zeros = read(&file, data_end, (zeroed_to - data_end) as usize);
        assert!(zeros.iter().all(|&b| b == 0));
        // ... and no further: the rest of the file stays sparse.
        assert!(next_hole(&path, zeroed_to) < len);
        file.close().unwrap();
    }

    #[test]
    fn the_zeroer_never_writes_over_redb_data() {
        let (_dir, path) = temp_file();
        let file = zero_filling(&path);
        let mut len = 64 * 1024;
        file.set_len(len).unwrap();
        // Writes as redb makes them, with no waiting for the zeroer: pages at the front,
        // pages freed and reused below it, and pages far ahead and at the very end of the
        // file (islands), while the zeroer runs.
        let mut expected = std::collections::HashMap::new();
        let mut rng = 0x2545_f491_4f6c_dd1d_u64;
        let mut next = || {
            rng ^= rng << 13;
            rng ^= rng >> 7;
            rng ^= rng << 17;
            rng
        };
        let pages = |n: u64| n / PAGE as u64;
        for i in 0..4000u64 {
            let front = i * PAGE as u64;
            let before = len;
            grow_to(&file, &mut len, front + PAGE as u64);
            let mut offsets = vec![front];
            if len != before {
                offsets.push(len - PAGE as u64);
            }
            match next() % 8 {
                0 => offsets.push((next() % pages(front + PAGE as u64)) * PAGE as u64),
                1 => offsets.push((next() % pages(len)) * PAGE as u64),
                _ => {}
            }
            for offset in offsets {
                let seed = next() as u8;
                file.write(offset, &page(seed)).unwrap();
                expected.insert(offset, seed.max(1));
            }
        }
        caught_up(&file);

        for offset in (0..len).step_by(PAGE) {
            let want = expected
                .get(&offset)
                .map_or(vec![0; PAGE], |&seed| page(seed));
            assert_eq!(read(&file, offset, PAGE), want, "page at {offset}");
        }
        assert!(
            data_bytes(&path) > 4000 * PAGE as u64,
            "the zeroer wrote nothing"
        );
        file.close().unwrap();
    }

    #[test]
    fn an_existing_file_is_zeroed_around_its_data() {
        let (_dir, path) = temp_file();
        let island = 512 * 1024;
        {
            let f = File::create(&path).unwrap();
            f.set_len(16 << 20).unwrap();
            f.write_all_at(&page(1), 0).unwrap();
            f.write_all_at(&page(2), island).unwrap();
            f.sync_all().unwrap();
        }
        let file = zero_filling(&path);
        // The zeroer starts at redb's first write, wherever it is.
        file.write(0, &page(1)).unwrap();
        caught_up(&file);

        assert_eq!(read(&file, 0, PAGE), page(1));
        assert_eq!(read(&file, island, PAGE), page(2));
        // From the first hole, zeros as far ahead as a small file gets, around the page
        // already written in that range; then the file stays sparse.
        let zeroed_to = PAGE as u64 + CHUNK;
        assert!(next_hole(&path, 0) >= zeroed_to);
        assert!(next_hole(&path, zeroed_to) < 16 << 20);
        file.close().unwrap();
    }

    #[test]
    fn a_failing_zeroer_leaves_the_file_working() {
        let (_dir, path) = temp_file();
        let writable = rw(&path);
        // A read-only handle for the zeroer: every zero-fill write fails.
        let read_only = File::open(&path).unwrap();
        let file = ZeroAheadFile::new(writable, read_only, spawner(), true).unwrap();

        file.set_len(8 << 20).unwrap();
        file.write(0, &page(9)).unwrap();
        let deadline = Instant::now() + Duration::from_secs(20);
        while !file.shared.extent().stopped {
            assert!(Instant::now() < deadline, "the zeroer never gave up");
            std::thread::sleep(Duration::from_millis(1));
        }
        file.write(PAGE as u64, &page(10)).unwrap();
        file.sync_data().unwrap();
        assert_eq!(read(&file, 0, PAGE), page(9));
        assert_eq!(read(&file, PAGE as u64, PAGE), page(10));
        file.close().unwrap();
    }

    #[test]
    fn without_zero_fill_there_is_no_job_and_no_zeros() {
        let (_dir, path) = temp_file();
        let jobs = Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let counted = jobs.clone();
        let spawn: Spawner = Arc::new(move |_job| {
            counted.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        });
        let file = ZeroAheadFile::new(rw(&path), rw(&path), spawn, false).unwrap();

        file.set_len(8 << 20).unwrap();
        file.write(0, &page(3)).unwrap();
        file.write(4 << 20, &page(4)).unwrap();
        file.sync_data().unwrap();
        assert_eq!(read(&file, 0, PAGE), page(3));
        assert_eq!(read(&file, 4 << 20, PAGE), page(4));
        assert_eq!(next_hole(&path, 0), PAGE as u64);
        assert!(file.shared.extent().islands.is_empty());
        assert_eq!(jobs.load(std::sync::atomic::Ordering::SeqCst), 0);
        file.close().unwrap();
    }

    /// The bytes of `path` that are data, not holes.
    fn data_bytes(path: &Path) -> u64 {
        let f = File::open(path).unwrap();
        let len = f.metadata().unwrap().len();
        let (mut total, mut at) = (0, 0);
        while at < len {
            let Ok(data) = seek(&f, SeekFrom::Data(at)) else {
                break;
            };
            at = seek(&f, SeekFrom::Hole(data)).unwrap();
            total += at - data;
        }
        total
    }

    #[test]
    fn a_refused_second_open_writes_nothing() {
        const T: redb::TableDefinition<'static, u64, &[u8]> = redb::TableDefinition::new("t");
        let (_dir, path) = temp_file();
        // The live database, on redb's own backend: any zeros come from the second open.
        let live = redb::Database::create(&path).unwrap();
        let tx = live.begin_write().unwrap();
        {
            let mut t = tx.open_table(T).unwrap();
            for k in 0..3000u64 {
                t.insert(k, [7u8; 4000].as_slice()).unwrap();
            }
        }
        tx.commit().unwrap();
        // redb leaves holes in its file: room the second open's zeroer could write into.
        let before = data_bytes(&path);
        assert!(File::open(&path).unwrap().metadata().unwrap().len() > before + CHUNK);

        let second = ZeroAheadFile::new(rw(&path), rw(&path), spawner(), true).unwrap();
        let shared = second.shared.clone();
        let refused = redb::Database::builder().create_with_backend(second);
        assert!(matches!(
            refused,
            Err(redb::DatabaseError::DatabaseAlreadyOpen)
        ));
        // The zeroer waits for redb's first write, which a refused open never makes.
        assert!(!shared.extent().started);
        assert_eq!(data_bytes(&path), before);
        drop(live);
    }
}
