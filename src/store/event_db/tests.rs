use std::collections::HashSet;

use super::*;
use crate::model::{DeliveryStatus, Target, TargetKind};
use crate::store::journal::Journal;

/// The page cache of a test's event file.
const TEST_CACHE: usize = 4 * 1024 * 1024;

/// A writer pool of the test's own, logging to the test's subscriber if it has one.
fn pool() -> WriterPool {
    WriterPool::start(2, None).unwrap()
}

/// A fresh event file `e.redb` in `dir`.
fn open_in(dir: &Path) -> EventStore {
    EventStore::open(
        Uuid::new_v4(),
        &dir.join("e.redb"),
        &pool(),
        Arc::default(),
        TEST_CACHE,
    )
    .unwrap()
}

fn event(body: &[u8]) -> Event {
    Event {
        id: Uuid::now_v7(),
        entrypoint_id: Uuid::nil(),
        received_at: 1,
        method: "POST".into(),
        path: "/".into(),
        headers: vec![],
        content_type: None,
        remote_addr: "127.0.0.1".into(),
        body_len: body.len() as u64,
    }
}

/// Writes `rows` straight into the file's tables in one transaction, as the writer lays
/// them out (body inline, no deliveries): a quick way to a file with many events.
fn write_rows(store: &EventStore, rows: &[(&Event, &[u8])]) {
    let db = store.db.read().unwrap();
    let tx = db.as_ref().unwrap().begin_write().unwrap();
    {
        let mut events = tx.open_table(EVENTS).unwrap();
        for (event, body) in rows {
            let row = codec::encode_extended(event, &Vec::<SettledRow>::new(), body).unwrap();
            events.insert(event.id.as_u128(), row.as_slice()).unwrap();
        }
    }
    tx.commit().unwrap();
}

fn stored_version(path: &Path) -> u32 {
    let db = Database::create(path).unwrap();
    let rx = db.begin_read().unwrap();
    let meta = rx.open_table(META).unwrap();
    meta.get(FORMAT_KEY).unwrap().unwrap().value()
}

/// A delivery of `event` to a fresh target, in `status`.
fn delivery(event: &Event, status: DeliveryStatus) -> Delivery {
    let mut d = Delivery::pending(event.id, Uuid::new_v4(), 1);
    if status.is_terminal() {
        d.next_attempt_at = None;
        d.attempts = 1;
    }
    d.status = status;
    d
}

/// The keys of every `DELIVERIES` row.
fn delivery_rows(store: &EventStore) -> Vec<(u128, u128)> {
    let rx = store.read().unwrap();
    let t = rx.open_table(DELIVERIES).unwrap();
    t.range::<(u128, u128)>(..)
        .unwrap()
        .map(|r| r.unwrap().0.value())
        .collect()
}

/// A delivery the ingest commit finishes (a `database` target's) lives in the event's
/// row, not in `DELIVERIES`, and every reader sees it among the event's deliveries in
/// the same order as one with a row of its own.
#[test]
fn a_delivery_finished_at_ingest_is_stored_in_the_event_row() {
    let dir = tempfile::tempdir().unwrap();
    let store = open_in(dir.path());
    let e = event(b"{}");
    let database = Target {
        id: Uuid::new_v4(),
        webhook_id: Uuid::nil(),
        name: "db".into(),
        active: true,
        kind: TargetKind::Database,
        created_at: 0,
        filter: None,
    };
    let skip = |reason: &str| Delivery::skipped(e.id, Uuid::new_v4(), e.received_at, reason.into());
    let (pending, stored, failed) = (
        delivery(&e, DeliveryStatus::Pending),
        Delivery::for_target(e.id, &database, e.received_at),
        delivery(&e, DeliveryStatus::Failed),
    );
    let (skipped, skipped_too, other_reason) =
        (skip("filter: a"), skip("filter: a"), skip("filter: b"));
    let mut all = vec![
        pending.clone(),
        stored.clone(),
        failed.clone(),
        skipped.clone(),
        skipped_too.clone(),
        other_reason.clone(),
    ];
    all.sort_by_key(|d| d.id);
    store
        .write_blocking(WriteOp::Ingest(NewEvent {
            event: e.clone(),
            body: Bytes::from_static(b"{}"),
            deliveries: all.clone(),
            dedupe: None,
        }))
        .unwrap();

    // A failed delivery is not one ingest makes: it gets a row of its own.
    assert_eq!(
        delivery_rows(&store),
        vec![
            (e.id.as_u128(), pending.id.as_u128()),
            (e.id.as_u128(), failed.id.as_u128())
        ]
    );
    let rx = store.read().unwrap();
    let reasons = rx.open_table(SKIP_REASONS).unwrap();
    assert_eq!(reasons.len().unwrap(), 2, "each reason stored once");
    drop((reasons, rx));
    let detail = store.event_detail(e.id).unwrap().unwrap();
    let shown: Vec<Delivery> = detail.deliveries.into_iter().map(|(d, _)| d).collect();
    assert_eq!(shown, all);
    let (page, _) = store.list_events(0, 10, 10).unwrap();
    assert_eq!(page[0].deliveries, all);
    assert_eq!(page[0].body, b"{}");
    for d in &all {
        assert_eq!(store.delivery(e.id, d.id).unwrap().as_ref(), Some(d));
    }
    assert_eq!(store.delivery(e.id, Uuid::now_v7()).unwrap(), None);
    assert_eq!(store.due_count().unwrap(), 1);

    // Retention waits for the pending one, then takes the row and all with it.
    let cutoff = crate::model::now_ms() + 1000;
    assert_eq!(store.prune(cutoff).unwrap().events_removed, 0);
    let mut done = pending.clone();
    done.status = DeliveryStatus::Delivered;
    done.next_attempt_at = None;
    store
        .write_blocking(WriteOp::Attempt(AttemptWrite {
            delivery: done,
            previous_due: pending.next_attempt_at,
            result: None,
        }))
        .unwrap();
    assert_eq!(store.prune(cutoff).unwrap().events_removed, 1);
    assert_eq!(store.delivery(e.id, stored.id).unwrap(), None);
    assert!(delivery_rows(&store).is_empty());
    store.close();
}

/// A compaction that cannot run (a read is in progress) is not forgotten: the next
/// pass compacts although it removes nothing itself.
#[test]
fn a_skipped_compaction_is_retried_by_the_next_pass() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("e.redb");
    let body = vec![b'x'; 1000];
    let events: Vec<Event> = (0..1200).map(|_| event(&body)).collect();
    let rows: Vec<(&Event, &[u8])> = events.iter().map(|e| (e, &body[..])).collect();
    let store =
        EventStore::open(Uuid::new_v4(), &path, &pool(), Arc::default(), TEST_CACHE).unwrap();
    write_rows(&store, &rows);
    let cutoff = crate::model::now_ms() + 1000;

    let reading = store.read().unwrap();
    let first = store.prune(cutoff).unwrap();
    assert_eq!(first.events_removed, 1200);
    assert!(
        !first.compacted,
        "a live read transaction blocks compaction"
    );
    drop(reading);

    let second = store.prune(cutoff).unwrap();
    assert_eq!(second.events_removed, 0);
    assert!(
        second.compacted,
        "the freed space is reclaimed on the next pass"
    );
    let third = store.prune(cutoff).unwrap();
    assert!(!third.compacted, "and only once");
    store.close();
}

/// A file of another version, newer or one of the development layouts before the
/// current one, is refused with an error naming its version, and left as it was.
#[test]
fn event_files_of_another_version_are_refused() {
    for found in [99, EVENTS_FORMAT_VERSION - 1, 1] {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("e.redb");
        {
            let db = Database::create(&path).unwrap();
            let tx = db.begin_write().unwrap();
            tx.open_table(META)
                .unwrap()
                .insert(FORMAT_KEY, found)
                .unwrap();
            tx.commit().unwrap();
        }
        let err = EventStore::open(Uuid::new_v4(), &path, &pool(), Arc::default(), TEST_CACHE)
            .err()
            .expect("refused");
        assert!(
            matches!(err, StoreError::FormatVersion { found: f, expected: EVENTS_FORMAT_VERSION, .. } if f == found),
            "{err}"
        );
        assert!(
            err.to_string().contains(&format!("format version {found}")),
            "{err}"
        );
        assert_eq!(stored_version(&path), found);
    }
}

/// A row whose body does not match its record, or whose large body is gone, is an
/// error: never an empty body that a retry would deliver as the event's.
#[test]
fn a_body_that_does_not_match_its_record_is_an_error() {
    let dir = tempfile::tempdir().unwrap();
    let store = open_in(dir.path());
    let short = event(b"12345");
    let missing = event(&[7; 20]);
    {
        let db = store.db.read().unwrap();
        let tx = db.as_ref().unwrap().begin_write().unwrap();
        let mut events = tx.open_table(EVENTS).unwrap();
        let none = Vec::<&Delivery>::new();
        let row = codec::encode_extended(&short, &none, b"123").unwrap();
        events.insert(short.id.as_u128(), row.as_slice()).unwrap();
        let row = codec::encode_extended(&missing, &none, &[]).unwrap();
        events.insert(missing.id.as_u128(), row.as_slice()).unwrap();
        drop(events);
        tx.commit().unwrap();
    }
    for id in [short.id, missing.id] {
        assert!(matches!(store.event_detail(id), Err(StoreError::Codec(_))));
        assert!(matches!(
            store.event_with_body(id),
            Err(StoreError::Codec(_))
        ));
    }
    store.close();
}

/// The real backend of event files on a disk that can fill up: while full, the file
/// cannot grow (redb's `set_len`, or a write past the end, fails with ENOSPC), as on a
/// filesystem without free blocks. Confined to one file, unlike a process-wide limit.
/// While `failing` is set, every write and sync fails, as on a disk that went away.
#[derive(Debug)]
struct FaultyDisk {
    file: ZeroAheadFile,
    /// How long the file may be; `u64::MAX` while there is space.
    room: std::sync::Arc<std::sync::atomic::AtomicU64>,
    failing: std::sync::Arc<std::sync::atomic::AtomicBool>,
}

impl FaultyDisk {
    fn fits(&self, end: u64) -> std::io::Result<()> {
        if self.failing.load(std::sync::atomic::Ordering::SeqCst) {
            return Err(std::io::Error::other("the disk failed"));
        }
        if end > self.room.load(std::sync::atomic::Ordering::SeqCst) {
            return Err(std::io::ErrorKind::StorageFull.into());
        }
        Ok(())
    }
}

impl StorageBackend for FaultyDisk {
    fn len(&self) -> std::io::Result<u64> {
        self.file.len()
    }
    fn read(&self, offset: u64, out: &mut [u8]) -> std::io::Result<()> {
        self.file.read(offset, out)
    }
    fn set_len(&self, len: u64) -> std::io::Result<()> {
        self.fits(len)?;
        self.file.set_len(len)
    }
    fn sync_data(&self) -> std::io::Result<()> {
        self.fits(0)?;
        self.file.sync_data()
    }
    fn write(&self, offset: u64, data: &[u8]) -> std::io::Result<()> {
        self.fits(offset + data.len() as u64)?;
        self.file.write(offset, data)
    }
    fn close(&self) -> std::io::Result<()> {
        self.file.close()
    }
    fn try_lock_range(
        &self,
        start: std::ops::Bound<u64>,
        end: std::ops::Bound<u64>,
    ) -> Result<bool, redb::BackendError> {
        self.file.try_lock_range(start, end)
    }
    fn try_lock_shared_range(
        &self,
        start: std::ops::Bound<u64>,
        end: std::ops::Bound<u64>,
    ) -> Result<bool, redb::BackendError> {
        self.file.try_lock_shared_range(start, end)
    }
    fn lock_range(
        &self,
        start: std::ops::Bound<u64>,
        end: std::ops::Bound<u64>,
    ) -> Result<(), redb::BackendError> {
        self.file.lock_range(start, end)
    }
    fn lock_shared_range(
        &self,
        start: std::ops::Bound<u64>,
        end: std::ops::Bound<u64>,
    ) -> Result<(), redb::BackendError> {
        self.file.lock_shared_range(start, end)
    }
    fn unlock_range(
        &self,
        start: std::ops::Bound<u64>,
        end: std::ops::Bound<u64>,
    ) -> Result<(), redb::BackendError> {
        self.file.unlock_range(start, end)
    }
    fn query_lock_range(
        &self,
        start: std::ops::Bound<u64>,
        end: std::ops::Bound<u64>,
    ) -> Result<bool, redb::BackendError> {
        self.file.query_lock_range(start, end)
    }
}

/// Stores an event with `body` and a pending delivery; its id on success.
fn ingest(store: &EventStore, body: &[u8]) -> Result<Uuid, StoreError> {
    let e = event(body);
    let id = e.id;
    store.write_blocking(WriteOp::Ingest(NewEvent {
        deliveries: vec![delivery(&e, DeliveryStatus::Pending)],
        dedupe: None,
        event: e,
        body: Bytes::copy_from_slice(body),
    }))?;
    Ok(id)
}

/// Every acknowledged event reads back whole, and nothing else was stored.
fn assert_all_readable(store: &EventStore, acked: &[(Uuid, Vec<u8>)]) {
    for (id, body) in acked {
        let detail = store
            .event_detail(*id)
            .unwrap()
            .expect("an acknowledged event");
        assert_eq!(&detail.body, body);
        assert_eq!(detail.deliveries.len(), 1);
    }
    assert_eq!(store.event_count().unwrap(), acked.len() as u64);
    assert_eq!(store.due_count().unwrap(), acked.len() as u64);
}

/// One failed write (here ENOSPC) made redb refuse every later write of the file with
/// `PreviousIo` until a restart. Now the writer reopens the file (redb repairs it): while
/// the disk is full writes fail, and once there is space again they succeed, in the
/// same process, with everything acknowledged before and after intact. The failure is
/// logged at ERROR once, not per request.
#[test]
fn writes_resume_after_a_full_disk_without_a_restart() {
    full_disk_then_space(false);
}

/// The same with the commits resting on the journal: the reopened file has lost them
/// (redb recovers it to its last synced commit), and the writer replays them from the
/// journal before anything reads or writes the file again.
#[test]
fn writes_resume_after_a_full_disk_with_the_journal() {
    full_disk_then_space(true);
}

fn full_disk_then_space(journaled: bool) {
    use std::sync::atomic::{AtomicU64, Ordering::SeqCst};
    use std::time::{Duration, Instant};

    let logged = crate::test_log::Logged::default();
    let _log = tracing::subscriber::set_default(logged.subscriber());
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("e.redb");
    let room = std::sync::Arc::new(AtomicU64::new(u64::MAX));
    // Files never sync by themselves here: every acknowledged write rests on the journal.
    let journal = journaled.then(|| {
        let dir = dir.path().join("journal");
        Arc::new(Journal::start(&dir, Duration::from_secs(3600), Default::default()).unwrap())
    });
    let pool = WriterPool::start(2, journal.clone()).unwrap();
    let store = {
        let (file, room, spawner) = (path.clone(), room.clone(), pool.spawner());
        EventStore::open_with(Uuid::new_v4(), &path, &pool, Arc::default(), move || {
            let disk = FaultyDisk {
                file: ZeroAheadFile::open(&file, spawner.clone())?,
                room: room.clone(),
                failing: Arc::default(),
            };
            open_database(disk, &file, TEST_CACHE)
        })
        .unwrap()
    };
    let mut acked = Vec::new();
    for body in [b"small".to_vec(), vec![1; 100_000]] {
        acked.push((ingest(&store, &body).unwrap(), body));
    }

    // The disk fills up: writes succeed while redb has free pages in the file, then fail.
    let full = std::fs::metadata(&path).unwrap().len();
    room.store(full, SeqCst);
    let big = vec![7; 256 * 1024];
    let mut refused = None;
    for _ in 0..200 {
        match ingest(&store, &big) {
            Ok(id) => acked.push((id, big.clone())),
            Err(e) => {
                refused = Some(e);
                break;
            }
        }
    }
    assert!(
        matches!(refused, Some(StoreError::Unavailable)),
        "{refused:?}"
    );
    // The healthcheck's source has the episode, with its cause.
    let problems = pool.health().problems();
    assert_eq!(problems.len(), 1, "{problems:?}");
    assert_eq!(problems[0].webhook_id, store.webhook_id());
    assert_eq!(problems[0].operation, crate::store::Operation::Write);
    assert_eq!(
        problems[0].cause,
        crate::store::Cause::DiskFull,
        "{problems:?}"
    );
    // Still full: later writes fail too (the writer reopens the file and tries again,
    // then pauses). A body as large as the whole file cannot fit whatever the repair
    // freed.
    let too_big = vec![8; full as usize];
    for _ in 0..2 {
        assert!(matches!(
            ingest(&store, &too_big),
            Err(StoreError::Unavailable)
        ));
    }

    // Space is back. The writer tries again after a pause (1 s here), not per request.
    room.store(u64::MAX, SeqCst);
    let deadline = Instant::now() + Duration::from_secs(30);
    let resumed = loop {
        match ingest(&store, b"after") {
            Ok(id) => break id,
            Err(StoreError::Unavailable) if Instant::now() < deadline => {
                std::thread::sleep(Duration::from_millis(20));
            }
            Err(e) => panic!("writes never resumed: {e}"),
        }
    };
    acked.push((resumed, b"after".to_vec()));
    acked.push((ingest(&store, b"later").unwrap(), b"later".to_vec()));
    assert_all_readable(&store, &acked);
    assert!(pool.health().problems().is_empty());

    let log = logged.text();
    assert_eq!(log.matches(" ERROR ").count(), 1, "{log}");
    assert!(log.contains("writable again"), "{log}");
    if journaled {
        assert!(
            log.contains("replayed the journal into the reopened event file"),
            "{log}"
        );
    }

    // And a restart finds the same.
    store.close();
    drop(store);
    let store = EventStore::open(Uuid::new_v4(), &path, &pool, Arc::default(), TEST_CACHE).unwrap();
    assert_all_readable(&store, &acked);
    store.close();
    if let Some(journal) = journal {
        journal.stop();
    }
}

/// An event file on a [`FaultyDisk`] whose commits go to a journal of its own.
struct JournaledFile {
    dir: tempfile::TempDir,
    path: std::path::PathBuf,
    journal: Arc<Journal>,
    pool: WriterPool,
    /// Fails the file's disk while set.
    failing: Arc<std::sync::atomic::AtomicBool>,
    webhook_id: Uuid,
    store: EventStore,
}

/// A fresh [`JournaledFile`] whose commits rest on the journal for `checkpoint_after`.
fn journaled_on_failing_disk(checkpoint_after: std::time::Duration) -> JournaledFile {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("e.redb");
    let journal = Arc::new(
        Journal::start(
            &dir.path().join("journal"),
            checkpoint_after,
            Default::default(),
        )
        .unwrap(),
    );
    let pool = WriterPool::start(2, Some(journal.clone())).unwrap();
    let failing = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let webhook_id = Uuid::new_v4();
    let store = {
        let (file, failing, spawner) = (path.clone(), failing.clone(), pool.spawner());
        EventStore::open_with(webhook_id, &path, &pool, Arc::default(), move || {
            let disk = FaultyDisk {
                file: ZeroAheadFile::open(&file, spawner.clone())?,
                room: Arc::new(std::sync::atomic::AtomicU64::new(u64::MAX)),
                failing: failing.clone(),
            };
            open_database(disk, &file, TEST_CACHE)
        })
        .unwrap()
    };
    JournaledFile {
        dir,
        path,
        journal,
        pool,
        failing,
        webhook_id,
        store,
    }
}

/// A file that closes while its commits rest on the journal and its checkpoint fails (the
/// file map closes idle files to make room) lacks them when it is opened again: the
/// opener applies them from the journal before anything reads or writes the file.
#[test]
fn a_file_closed_without_its_checkpoint_gets_its_commits_when_opened_again() {
    use std::sync::atomic::Ordering::SeqCst;
    use std::time::Duration;

    let JournaledFile {
        dir: _dir,
        path,
        journal,
        pool,
        failing,
        webhook_id,
        store,
    } = journaled_on_failing_disk(Duration::from_secs(3600));
    let mut acked = Vec::new();
    for body in [b"one".to_vec(), vec![2; 40_000], b"three".to_vec()] {
        acked.push((ingest(&store, &body).unwrap(), body));
    }
    failing.store(true, SeqCst);
    store.close();
    drop(store);
    assert!(
        journal.holds(webhook_id),
        "the failed checkpoint left the commits to the journal"
    );

    let reopened = EventStore::open(webhook_id, &path, &pool, Arc::default(), TEST_CACHE).unwrap();
    assert_all_readable(&reopened, &acked);
    assert!(!journal.holds(webhook_id));
    assert!(
        pool.health().problems().is_empty(),
        "the failure ended with the reopen"
    );
    acked.push((ingest(&reopened, b"after").unwrap(), b"after".to_vec()));
    assert_all_readable(&reopened, &acked);
    reopened.close();
    pool.stop();
    journal.stop();
}

/// A quiet file whose checkpoint fails (the disk went away) is reopened on time, without a
/// write, and gets its journaled commits back: the journal keeps every later segment for
/// it until then.
#[test]
fn a_quiet_file_whose_checkpoint_failed_is_reopened_without_a_write() {
    use std::sync::atomic::Ordering::SeqCst;
    use std::time::{Duration, Instant};

    let JournaledFile {
        dir: _dir,
        journal,
        pool,
        failing,
        webhook_id,
        store,
        ..
    } = journaled_on_failing_disk(Duration::from_millis(100));
    failing.store(true, SeqCst);
    // Acknowledged through the journal; the file's own writes fail from now on, so its
    // checkpoint (due 100 ms after the commit) fails.
    let acked = vec![(ingest(&store, b"quiet").unwrap(), b"quiet".to_vec())];
    let deadline = Instant::now() + Duration::from_secs(20);
    while pool.health().problems().is_empty() {
        assert!(Instant::now() < deadline, "the checkpoint never failed");
        std::thread::sleep(Duration::from_millis(10));
    }
    assert!(journal.holds(webhook_id));
    failing.store(false, SeqCst);
    while journal.holds(webhook_id) || !pool.health().problems().is_empty() {
        assert!(Instant::now() < deadline, "the file was never reopened");
        std::thread::sleep(Duration::from_millis(10));
    }
    assert_all_readable(&store, &acked);
    store.close();
    pool.stop();
    journal.stop();
}

/// A reopen that failed is tried again on time, not only when the next write comes:
/// until it succeeds the file cannot be read, and a quiet webhook may get no write.
#[test]
fn a_failed_reopen_is_retried_without_a_write() {
    use std::sync::atomic::{AtomicBool, AtomicU64, Ordering::SeqCst};
    use std::time::{Duration, Instant};

    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("e.redb");
    let room = std::sync::Arc::new(AtomicU64::new(u64::MAX));
    let refuse_open = std::sync::Arc::new(AtomicBool::new(false));
    let pool = pool();
    let store = {
        let (file, room, refuse_open) = (path.clone(), room.clone(), refuse_open.clone());
        let spawner = pool.spawner();
        EventStore::open_with(Uuid::new_v4(), &path, &pool, Arc::default(), move || {
            if refuse_open.load(SeqCst) {
                return Err(StoreError::Unavailable);
            }
            let disk = FaultyDisk {
                file: ZeroAheadFile::open(&file, spawner.clone())?,
                room: room.clone(),
                failing: Arc::default(),
            };
            open_database(disk, &file, TEST_CACHE)
        })
        .unwrap()
    };
    let first = ingest(&store, b"first").unwrap();
    room.store(std::fs::metadata(&path).unwrap().len(), SeqCst);
    let big = vec![7; 256 * 1024];
    let filled = (0..200).any(|_| ingest(&store, &big).is_err());
    assert!(filled, "the disk never filled");
    // The next write makes the writer reopen the file, which fails: nothing is open.
    refuse_open.store(true, SeqCst);
    assert!(ingest(&store, b"x").is_err());
    assert!(matches!(store.event_count(), Err(StoreError::Unavailable)));

    // Space is back and the file would open; no write comes.
    refuse_open.store(false, SeqCst);
    room.store(u64::MAX, SeqCst);
    let deadline = Instant::now() + Duration::from_secs(15);
    while store.event_count().is_err() && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(20));
    }
    assert!(
        store.event_with_body(first).unwrap().is_some(),
        "the file was not reopened without a write"
    );
    assert!(store.due_before(i64::MAX, 10, &HashSet::new()).is_ok());
    store.close();
}

/// What an event file takes, in bytes.
#[derive(Debug, Clone, Copy)]
struct Footprint {
    /// Its length.
    len: u64,
    /// The blocks the filesystem allocated for it (what `du` shows).
    disk: u64,
    /// The pages redb has allocated in it: what the file must hold, whatever its length
    /// (redb grows a file by doubling) and however far the zeroer has filled.
    pages: u64,
}

/// `store`'s footprint; `store` is closed (so the zeroer has stopped) and dropped.
fn footprint(store: EventStore, path: &Path) -> Footprint {
    use std::os::unix::fs::MetadataExt;
    let pages = {
        let db = store.db.read().unwrap();
        let tx = db.as_ref().unwrap().begin_write().unwrap();
        let stats = tx.stats().unwrap();
        tx.abort().unwrap();
        stats.allocated_pages() * stats.page_size() as u64
    };
    store.close();
    drop(store);
    let meta = std::fs::metadata(path).unwrap();
    Footprint {
        len: meta.len(),
        disk: meta.blocks() * 512,
        pages,
    }
}

/// How much an event file grows, per byte of body, when `n` bodies of `size` bytes are
/// written into a fresh one through the writer; with what it grew by.
fn growth(n: usize, size: usize) -> (Footprint, [f64; 3]) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("e.redb");
    let pool = pool();
    let open = || EventStore::open(Uuid::new_v4(), &path, &pool, Arc::default(), TEST_CACHE);
    let empty = footprint(open().unwrap(), &path);
    let store = open().unwrap();
    let body: Vec<u8> = (0..size).map(|i| (i % 251) as u8).collect();
    for _ in 0..n {
        ingest(&store, &body).unwrap();
    }
    let full = footprint(store, &path);
    let grown = Footprint {
        len: full.len - empty.len,
        disk: full.disk.saturating_sub(empty.disk),
        pages: full.pages - empty.pages,
    };
    let bytes = (n * size) as f64;
    let ratios = [grown.len, grown.disk, grown.pages].map(|g| g as f64 / bytes);
    (grown, ratios)
}

/// Prints how much event files grow per byte of large body, for the README.
/// `cargo test --lib body_space_by_size -- --ignored --nocapture`
#[test]
#[ignore = "a measurement: writes about 300 MB"]
fn body_space_by_size() {
    const KIB: usize = 1024;
    println!("size      n     bytes      +len        +du     +pages   len%   du%  pages%");
    for (size, n) in [
        (1024 * KIB, 100),
        (600 * KIB, 100),
        (100 * KIB, 500),
        (20 * KIB, 2000),
        (16 * KIB, 2000),
    ] {
        let (g, r) = growth(n, size);
        let over = |x: f64| (x - 1.0) * 100.0;
        println!(
            "{:>5}K {:>5} {:>9} {:>9} {:>10} {:>10} {:>6.1} {:>5.1} {:>6.1}",
            size / KIB,
            n,
            n * size,
            g.len,
            g.disk,
            g.pages,
            over(r[0]),
            over(r[1]),
            over(r[2])
        );
    }
}

/// Stores an event with `body` and a delivery already finished (so retention may take
/// it); the event.
fn ingest_settled(store: &EventStore, body: &[u8]) -> Event {
    let e = event(body);
    store
        .write_blocking(WriteOp::Ingest(NewEvent {
            deliveries: vec![delivery(&e, DeliveryStatus::Delivered)],
            dedupe: None,
            event: e.clone(),
            body: Bytes::copy_from_slice(body),
        }))
        .unwrap();
    e
}

/// A body of `len` bytes that no shifted or reordered copy of itself matches.
fn patterned(len: usize) -> Vec<u8> {
    (0..len)
        .map(|i| (i % 251) as u8 ^ (i >> 12) as u8)
        .collect()
}

/// The keys of every `BODY_CHUNKS` row.
fn chunk_rows(store: &EventStore) -> Vec<(u128, u32)> {
    let rx = store.read().unwrap();
    let t = rx.open_table(BODY_CHUNKS).unwrap();
    t.range::<(u128, u32)>(..)
        .unwrap()
        .map(|r| r.unwrap().0.value())
        .collect()
}

fn open_store(path: &Path) -> EventStore {
    EventStore::open(Uuid::new_v4(), path, &pool(), Arc::default(), TEST_CACHE).unwrap()
}

/// Large bodies of every size around a chunk's read back byte for byte through every
/// reader, whole or cut at a limit inside a chunk.
#[test]
fn large_bodies_read_back_whole_around_chunk_sizes() {
    let dir = tempfile::tempdir().unwrap();
    let store = open_store(&dir.path().join("e.redb"));
    let chunk = body::MAX_CHUNK_BYTES;
    let sizes = [
        INLINE_BODY_BYTES,
        INLINE_BODY_BYTES + 1,
        20 * 1024,
        chunk - 1,
        chunk,
        chunk + 1,
        2 * chunk,
        10 * 1024 * 1024,
    ];
    let stored: Vec<(Event, Vec<u8>)> = sizes
        .iter()
        .map(|&len| {
            let body = patterned(len);
            (ingest_settled(&store, &body), body)
        })
        .collect();
    let rows = chunk_rows(&store);
    for (e, body) in &stored {
        let id = e.id.as_u128();
        let n = rows.iter().filter(|k| k.0 == id).count();
        assert_eq!(n, body::chunks(body.len()).count(), "{} bytes", body.len());
        assert_eq!(store.event_with_body(e.id).unwrap().unwrap().1, *body);
        assert_eq!(store.event_detail(e.id).unwrap().unwrap().body, *body);
        let (_, whole) = store
            .event_with_small_body(e.id, body.len() + 1)
            .unwrap()
            .unwrap();
        assert_eq!(whole.as_ref(), Some(body));
        let (_, none) = store
            .event_with_small_body(e.id, body.len())
            .unwrap()
            .unwrap();
        assert_eq!(none, None);
    }
    // Previews: a few bytes, and a cut past the first chunk.
    for limit in [4, chunk + 5] {
        let (page, total) = store.list_events(0, sizes.len(), limit).unwrap();
        assert_eq!(total, sizes.len() as u64);
        for (row, (e, body)) in page.iter().zip(stored.iter().rev()) {
            assert_eq!(row.event.id, e.id);
            assert_eq!(row.body, body[..body.len().min(limit)]);
        }
    }
    store.close();
}

/// `BODY_CHUNKS` in a write transaction.
type ChunkTable<'t> = redb::Table<'t, (u128, u32), &'static [u8]>;

/// A chunked body with a chunk missing, at the start, in the middle or at the end, or
/// with one too many, is an error from every whole read: never a short or long body.
#[test]
fn a_missing_chunk_is_an_error_not_a_short_body() {
    let dir = tempfile::tempdir().unwrap();
    let store = open_store(&dir.path().join("e.redb"));
    let body = patterned(3 * body::MAX_CHUNK_BYTES + 1000);
    let last = body::chunks(body.len()).count() as u32 - 1;
    let tamper = |edit: &dyn Fn(&mut ChunkTable<'_>, u128)| {
        let e = ingest_settled(&store, &body);
        let db = store.db.read().unwrap();
        let tx = db.as_ref().unwrap().begin_write().unwrap();
        edit(&mut tx.open_table(BODY_CHUNKS).unwrap(), e.id.as_u128());
        tx.commit().unwrap();
        e
    };
    let broken = [
        tamper(&|t, id| drop(t.remove((id, 0)).unwrap())),
        tamper(&|t, id| drop(t.remove((id, 1)).unwrap())),
        tamper(&|t, id| drop(t.remove((id, last)).unwrap())),
        tamper(&|t, id| drop(t.insert((id, last + 1), &b"extra"[..]).unwrap())),
        tamper(&|t, id| {
            t.retain_in(body::chunk_keys(id), |_, _| false).unwrap();
        }),
    ];
    for e in &broken {
        let err = |r: Result<_, StoreError>| matches!(r, Err(StoreError::Codec(_)));
        assert!(err(store.event_with_body(e.id).map(|_| ())), "{}", e.id);
        assert!(err(store.event_detail(e.id).map(|_| ())), "{}", e.id);
        assert!(err(store
            .event_with_small_body(e.id, usize::MAX)
            .map(|_| ())));
    }
    // The intact one beside them reads.
    let fine = ingest_settled(&store, &body);
    assert_eq!(store.event_with_body(fine.id).unwrap().unwrap().1, body);
    store.close();
}

/// A file grows by about the size of the large bodies written into it: redb would give a
/// 1 MiB body stored as one value a 2 MiB leaf, and a 100 KiB one 128 KiB. Measured in
/// redb's allocated pages: the file's length grows by doubling (up to redb's 4 GiB
/// regions), and its allocated blocks follow the zeroer's fill up to that length, so both
/// are coarse at this size, while the pages are what they must hold.
#[test]
fn large_bodies_cost_about_their_size() {
    for (n, size) in [(24, 1024 * 1024), (100, 100 * 1024)] {
        let (grown, [_, _, pages]) = growth(n, size);
        assert!(
            pages < 1.25,
            "{n} bodies of {size} bytes made redb allocate {} bytes ({pages:.2}x)",
            grown.pages
        );
    }
}

/// Writes `n` events, each delivered to target `a` at ingest and failed at target `b` by
/// an attempt (every tenth with an `x-order` header), in batches; returns `(a, b)`.
fn filled(store: &EventStore, n: usize) -> (Uuid, Uuid) {
    let (a, b) = (Uuid::new_v4(), Uuid::new_v4());
    let mut ingest = Vec::new();
    let mut attempts = Vec::new();
    for i in 0..n {
        let mut e = event(br#"{"type":"order.paid"}"#);
        if i % 10 == 0 {
            e.headers = vec![("x-order".into(), format!("ord-{i}").into_bytes())];
        }
        let mut ok = delivery(&e, DeliveryStatus::Delivered);
        ok.target_id = a;
        let mut pending = delivery(&e, DeliveryStatus::Pending);
        pending.target_id = b;
        let failed = Delivery {
            status: DeliveryStatus::Failed,
            attempts: 1,
            next_attempt_at: None,
            ..pending.clone()
        };
        attempts.push(WriteOp::Attempt(AttemptWrite {
            previous_due: pending.next_attempt_at,
            result: Some(DeliveryResult {
                delivery_id: failed.id,
                attempt: 1,
                started_at: 2,
                duration_us: 10,
                status_code: Some(404),
                error: None,
                response_body: vec![],
                success: false,
                exchange: Default::default(),
            }),
            delivery: failed,
        }));
        ingest.push(WriteOp::Ingest(NewEvent {
            event: e,
            body: Bytes::from_static(br#"{"type":"order.paid"}"#),
            deliveries: vec![ok, pending],
            dedupe: None,
        }));
    }
    for ops in [ingest, attempts] {
        for chunk in ops.chunks(1000) {
            for outcome in store.write_all_blocking(chunk.to_vec()) {
                outcome.unwrap();
            }
        }
    }
    (a, b)
}

/// Filters keep what they say, newest first; a scan stops at its bound and says so;
/// counts are per target and status.
#[test]
fn finding_events_is_a_bounded_newest_first_scan() {
    let dir = tempfile::tempdir().unwrap();
    let store = open_in(dir.path());
    let (a, b) = filled(&store, 300);
    let find = |filter: &EventFilter, bound: usize| {
        let mut ids = Vec::new();
        let report = store
            .find_events(filter, bound, |f| {
                ids.push(f.event.id);
                Ok(true)
            })
            .unwrap();
        (ids, report)
    };
    let failed_at = |t: Uuid| EventFilter {
        status: Some(DeliveryStatus::Failed),
        target_id: Some(t),
        ..EventFilter::default()
    };
    let (ids, report) = find(&failed_at(b), usize::MAX);
    assert_eq!(
        (ids.len(), report.scanned, report.complete),
        (300, 300, true)
    );
    assert!(ids.windows(2).all(|w| w[0] > w[1]), "newest first");
    assert!(find(&failed_at(a), usize::MAX).0.is_empty());
    let (ids, report) = find(&failed_at(b), 50);
    assert_eq!(
        (ids.len(), report.scanned, report.complete),
        (50, 50, false)
    );
    let text = |t: &str| EventFilter {
        text: t.as_bytes().to_vec(),
        ..EventFilter::default()
    };
    assert_eq!(find(&text("ORD-29"), usize::MAX).0.len(), 1, "ord-290");
    assert_eq!(
        find(&text("order.PAID"), usize::MAX).0.len(),
        300,
        "the body"
    );
    assert!(find(&text("nowhere"), usize::MAX).0.is_empty());
    let counts = store.target_counts(usize::MAX).unwrap();
    assert_eq!(
        counts.counted, 300,
        "delivered-at-ingest rows are in the event row"
    );
    assert!(counts.complete);
    assert_eq!(counts.targets[&b].failed, 300);
    assert_eq!(counts.targets[&b].pending, 0);
    let last = counts.targets[&b].last.as_ref().unwrap();
    assert_eq!((last.status_code, last.success), (Some(404), false));
    assert!(!counts.targets.contains_key(&a));
    let some = store.target_counts(100).unwrap();
    assert_eq!((some.counted, some.complete), (100, false));
}

/// What the bounded scans cost: `cargo test --lib measure_find -- --ignored --nocapture`.
#[test]
#[ignore = "a measurement: times the bounded scans over 10,000 events"]
fn measure_find_and_count_scans() {
    let dir = tempfile::tempdir().unwrap();
    let store = EventStore::open(
        Uuid::new_v4(),
        &dir.path().join("e.redb"),
        &pool(),
        Arc::default(),
        64 << 20,
    )
    .unwrap();
    let (_, b) = filled(&store, 10_000);
    let time = |what: &str, f: &dyn Fn() -> usize| {
        let start = std::time::Instant::now();
        let n = f();
        eprintln!("{what}: {n} found in {:?}", start.elapsed());
    };
    let store = &store;
    let count = |filter: EventFilter| {
        move || {
            let mut n = 0;
            store
                .find_events(&filter, 10_000, |_| {
                    n += 1;
                    Ok(true)
                })
                .unwrap();
            n
        }
    };
    time(
        "status=failed over 10,000 events",
        &count(EventFilter {
            status: Some(DeliveryStatus::Failed),
            target_id: Some(b),
            ..EventFilter::default()
        }),
    );
    time(
        "text search over 10,000 events",
        &count(EventFilter {
            text: b"ord-9990".to_vec(),
            ..EventFilter::default()
        }),
    );
    time("counts over 10,000 deliveries", &|| {
        store.target_counts(100_000).unwrap().counted
    });
}

/// An event received now, with an idempotency key remembered for `window_ms`.
fn keyed(key: &[u8], window_ms: Millis) -> WriteOp {
    let mut e = event(b"{}");
    e.received_at = crate::model::now_ms();
    WriteOp::Ingest(NewEvent {
        deliveries: vec![Delivery::skipped(
            e.id,
            Uuid::new_v4(),
            1,
            "filter: x".into(),
        )],
        event: e,
        body: Bytes::from_static(b"{}"),
        dedupe: Some(DedupeKey {
            key: key.to_vec(),
            window_ms,
        }),
    })
}

fn event_id(op: &WriteOp) -> Uuid {
    match op {
        WriteOp::Ingest(n) => n.event.id,
        _ => unreachable!("an ingest"),
    }
}

/// The dedupe lookup and its key are part of the event's own transaction: a keyed event
/// costs the same one commit (one fsync) as an unkeyed one, and a duplicate costs none
/// (its transaction wrote nothing and is aborted).
#[test]
fn dedupe_adds_no_commit_and_a_duplicate_costs_none() {
    let dir = tempfile::tempdir().unwrap();
    let store = open_store(&dir.path().join("e.redb"));
    let first = keyed(b"\0delivery-1", 60_000);
    let first_id = event_id(&first);
    store.write_blocking(first).unwrap();
    assert_eq!(store.commits(), 1);
    match store.write_blocking(keyed(b"\0delivery-1", 60_000)) {
        Err(StoreError::Duplicate(id)) => assert_eq!(id, first_id),
        other => panic!("expected a duplicate, got {other:?}"),
    }
    assert_eq!(store.commits(), 1, "a lone duplicate commits nothing");
    assert_eq!(store.event_count().unwrap(), 1);
    store
        .write_blocking(keyed(b"\0delivery-2", 60_000))
        .unwrap();
    assert_eq!(
        store.commits(),
        2,
        "one commit per stored event, key included"
    );
    // A skipped delivery keeps its reason.
    let detail = store.event_detail(first_id).unwrap().unwrap();
    assert_eq!(detail.deliveries[0].0.status.reason(), Some("filter: x"));
}

/// Two requests with one key in the same transaction: the second sees the first's key.
#[test]
fn one_key_twice_in_one_batch_stores_one_event() {
    let dir = tempfile::tempdir().unwrap();
    let store = open_store(&dir.path().join("e.redb"));
    let (a, b) = (keyed(b"\0same", 60_000), keyed(b"\0same", 60_000));
    let a_id = event_id(&a);
    let db = store.db.read().unwrap();
    let done = commit(db.as_ref().unwrap(), [a, b].iter(), SyncBy::File).unwrap();
    assert!(done.committed.is_some());
    assert!(done.outcomes[0].is_ok());
    assert!(matches!(done.outcomes[1], Err(StoreError::Duplicate(id)) if id == a_id));
    drop(db);
    assert_eq!(store.event_count().unwrap(), 1);
}

/// A key older than the window stores the event again, and the index then names the new
/// event; pruning forgets keys older than the cutoff, the re-stored one included.
#[test]
fn a_key_outside_its_window_is_stored_again_and_pruned_later() {
    let dir = tempfile::tempdir().unwrap();
    let store = open_store(&dir.path().join("e.redb"));
    store.write_blocking(keyed(b"\0k", 60_000)).unwrap();
    // A window of 0 ms: the stored key is already outside it.
    let again = keyed(b"\0k", 0);
    let again_id = event_id(&again);
    store.write_blocking(again).unwrap();
    assert_eq!(store.event_count().unwrap(), 2);
    match store.write_blocking(keyed(b"\0k", 60_000)) {
        Err(StoreError::Duplicate(id)) => assert_eq!(id, again_id),
        other => panic!("expected a duplicate of the second, got {other:?}"),
    }
    assert_eq!(
        store.prune_dedupe(0).unwrap(),
        0,
        "nothing before the epoch"
    );
    let later = crate::model::now_ms() + 1000;
    assert_eq!(store.prune_dedupe(later).unwrap(), 2);
    store.write_blocking(keyed(b"\0k", 60_000)).unwrap();
    assert_eq!(store.event_count().unwrap(), 3);
}

/// Each target's last failed attempt is kept in the file, a step at a time: a failure
/// within [`FAILURE_TIME_STEP_MS`] of the stored time writes nothing, a success never
/// moves it, and it outlives the open file.
#[test]
fn a_targets_last_failure_is_kept_in_the_file_by_the_step() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("e.redb");
    let store = open_store(&path);
    let e = event(b"{}");
    let pending = delivery(&e, DeliveryStatus::Pending);
    let target = pending.target_id;
    store
        .write_blocking(WriteOp::Ingest(NewEvent {
            event: e.clone(),
            body: Bytes::from_static(b"{}"),
            deliveries: vec![pending.clone()],
            dedupe: None,
        }))
        .unwrap();
    let overview = store.overview().unwrap();
    assert_eq!(overview.events, 1);
    assert!(overview.last_failures.is_empty(), "no failure yet");

    let base: Millis = 1_700_000_000_000;
    let (mut attempt, mut due) = (0, pending.next_attempt_at);
    let mut attempt_at = |at: Millis, success: bool| {
        attempt += 1;
        let d = Delivery {
            status: DeliveryStatus::Retrying,
            attempts: attempt,
            next_attempt_at: Some(at + 1),
            ..pending.clone()
        };
        let previous_due = std::mem::replace(&mut due, d.next_attempt_at);
        let op = WriteOp::Attempt(AttemptWrite {
            previous_due,
            result: Some(DeliveryResult {
                delivery_id: d.id,
                attempt,
                started_at: at,
                duration_us: 10,
                status_code: Some(500),
                error: None,
                response_body: vec![],
                success,
                exchange: Default::default(),
            }),
            delivery: d,
        });
        store.write_blocking(op).unwrap();
        store
            .overview()
            .unwrap()
            .last_failures
            .get(&target)
            .copied()
    };
    assert_eq!(attempt_at(base, false), Some(base));
    assert_eq!(
        attempt_at(base + FAILURE_TIME_STEP_MS - 1, false),
        Some(base),
        "within a step: not written"
    );
    let later = base + FAILURE_TIME_STEP_MS;
    assert_eq!(attempt_at(later, false), Some(later));
    assert_eq!(
        attempt_at(later + 2 * FAILURE_TIME_STEP_MS, true),
        Some(later)
    );
    // A time from the future (a clock that jumped) gives way to the next real failure.
    let future = later + 1_000 * FAILURE_TIME_STEP_MS;
    assert_eq!(attempt_at(future, false), Some(future));
    assert_eq!(
        attempt_at(later + 10, false),
        Some(later + 10),
        "an earlier failure a step or more before the stored time replaces it"
    );
    let later = later + 10;
    store.close();
    drop(store);
    let again = open_store(&path);
    assert_eq!(
        again.overview().unwrap().last_failures.get(&target),
        Some(&later)
    );
}
