//! Store-level tests on real redb files: retention, due-index ordering, format version.

use std::collections::HashSet;

use bytes::Bytes;
use uuid::Uuid;
use webhooker::model::{
    Delivery, DeliveryStatus, Entrypoint, Event, Target, TargetKind, Verification, Webhook, now_ms,
};
use webhooker::store::{NewEvent, Notice, Store, StoreError, WriteOp};

fn event_with(status: DeliveryStatus, due: Option<i64>) -> NewEvent {
    event_with_body(status, due, Bytes::from_static(b"abc"))
}

fn event_with_body(status: DeliveryStatus, due: Option<i64>, body: Bytes) -> NewEvent {
    let now = now_ms();
    let event = Event {
        id: Uuid::now_v7(),
        entrypoint_id: Uuid::nil(),
        received_at: now,
        method: "POST".into(),
        path: "/".into(),
        headers: vec![],
        content_type: None,
        remote_addr: "127.0.0.1".into(),
        body_len: body.len() as u64,
    };
    let delivery = Delivery {
        id: Uuid::now_v7(),
        event_id: event.id,
        target_id: Uuid::nil(),
        status,
        attempts: 1,
        next_attempt_at: due,
        created_at: now,
    };
    NewEvent {
        event,
        body,
        deliveries: vec![delivery],
        dedupe: None,
    }
}

#[test]
fn small_and_large_bodies_read_back_whole_or_cut() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path()).unwrap();
    let events = store.create_events(Uuid::new_v4()).unwrap();
    // Empty, small (stored in the event's row), right at and above the inline limit (the
    // large one in its own table), all with bytes that are not UTF-8.
    let bodies: Vec<Bytes> = [0usize, 1000, 16 * 1024, 16 * 1024 + 1, 300_000]
        .into_iter()
        .map(|n| {
            (0..n)
                .map(|i| (i % 251) as u8 ^ 0x80)
                .collect::<Vec<u8>>()
                .into()
        })
        .collect();
    let mut ids = Vec::new();
    for body in &bodies {
        let new = event_with_body(DeliveryStatus::Delivered, None, body.clone());
        ids.push(new.event.id);
        events.write_blocking(WriteOp::Ingest(new)).unwrap();
    }
    for (id, body) in ids.iter().zip(&bodies) {
        let detail = events.event_detail(*id).unwrap().unwrap();
        assert_eq!(detail.body, body.as_ref(), "{} bytes", body.len());
        assert_eq!(detail.event.body_len, body.len() as u64);
        let (_, whole) = events.event_with_body(*id).unwrap().unwrap();
        assert_eq!(whole, body.as_ref());
        let (_, small) = events
            .event_with_small_body(*id, 16 * 1024)
            .unwrap()
            .unwrap();
        assert_eq!(small.is_some(), body.len() < 16 * 1024);
    }
    // The event log cuts every body to its limit; newest first.
    let (page, total) = events.list_events(0, 10, 100).unwrap();
    assert_eq!(total, 5);
    for (row, body) in page.iter().zip(bodies.iter().rev()) {
        assert_eq!(row.body, &body[..body.len().min(100)]);
    }
    store.close();
}

#[test]
fn retention_removes_only_old_finished_events() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path()).unwrap();
    let events = store.create_events(Uuid::new_v4()).unwrap();
    let now = now_ms();
    for status in [DeliveryStatus::Delivered, DeliveryStatus::Failed] {
        for _ in 0..3 {
            events
                .write_blocking(WriteOp::Ingest(event_with(status.clone(), None)))
                .unwrap();
        }
    }
    let pending = event_with(DeliveryStatus::Retrying, Some(now + 60_000));
    let pending_id = pending.event.id;
    events.write_blocking(WriteOp::Ingest(pending)).unwrap();
    assert_eq!(events.event_count().unwrap(), 7);

    // A cutoff before everything removes nothing.
    assert_eq!(events.prune(now - 60_000).unwrap().events_removed, 0);
    // A cutoff after everything removes the finished ones only.
    let report = events.prune(now_ms() + 1000).unwrap();
    assert_eq!(report.events_removed, 6);
    assert_eq!(events.event_count().unwrap(), 1);
    assert!(events.event_detail(pending_id).unwrap().is_some());
    assert_eq!(
        events.due_count().unwrap(),
        1,
        "the unfinished delivery keeps its due row"
    );
    store.close();
}

#[test]
fn due_index_is_ordered_by_due_time() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path()).unwrap();
    let events = store.create_events(Uuid::new_v4()).unwrap();
    let now = now_ms();
    for offset in [5_000, -3_000, 0, -10_000, 60_000] {
        events
            .write_blocking(WriteOp::Ingest(event_with(
                DeliveryStatus::Pending,
                Some(now + offset),
            )))
            .unwrap();
    }
    let due = events.due_before(now, 100, &Default::default()).unwrap();
    let times: Vec<i64> = due.iter().map(|r| r.due_at - now).collect();
    assert_eq!(times, [-10_000, -3_000, 0]);
    assert_eq!(
        events
            .due_before(now, 2, &Default::default())
            .unwrap()
            .len(),
        2
    );
    assert_eq!(events.due_count().unwrap(), 5);

    // Rows of a passed-over target neither come back nor count against the limit.
    let other_target = Uuid::new_v4();
    let mut later = event_with(DeliveryStatus::Pending, Some(now - 1_000));
    later.deliveries[0].target_id = other_target;
    events.write_blocking(WriteOp::Ingest(later)).unwrap();
    let skip = HashSet::from([Uuid::nil()]);
    let due = events.due_before(now, 1, &skip).unwrap();
    assert_eq!(due.len(), 1);
    assert_eq!(due[0].target_id, other_target);
    store.close();
}

#[test]
fn event_file_written_by_another_format_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    {
        let db = redb::Database::create(dir.path().join("webhooker.redb")).unwrap();
        let tx = db.begin_write().unwrap();
        {
            let mut t = tx
                .open_table(redb::TableDefinition::<&str, &[u8]>::new("settings"))
                .unwrap();
            t.insert("format_version", 99u32.to_le_bytes().as_slice())
                .unwrap();
        }
        tx.commit().unwrap();
    }
    match Store::open(dir.path()) {
        Err(StoreError::FormatVersion {
            found, expected, ..
        }) => {
            assert_eq!(
                (found, expected),
                (99, webhooker::store::MAIN_FORMAT_VERSION)
            );
        }
        Err(e) => panic!("unexpected error {e}"),
        Ok(_) => panic!("a file of another format was opened"),
    }
}

/// Redelivery reads the event and then commits `AddDeliveries`; retention runs its own
/// transactions and may remove the event in between. The commit is refused rather than
/// storing deliveries (and due rows) for an event that is gone, which nothing would prune.
#[test]
fn deliveries_for_an_event_removed_meanwhile_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path()).unwrap();
    let events = store.create_events(Uuid::new_v4()).unwrap();
    let new = event_with(DeliveryStatus::Delivered, None);
    let event_id = new.event.id;
    events.write_blocking(WriteOp::Ingest(new)).unwrap();
    assert!(events.event_with_body(event_id).unwrap().is_some());
    assert_eq!(events.prune(now_ms() + 1000).unwrap().events_removed, 1);
    let d = Delivery::pending(event_id, Uuid::new_v4(), now_ms());
    let did = d.id;
    match events.write_blocking(WriteOp::AddDeliveries(vec![d])) {
        Err(StoreError::UnknownEvent) => {}
        other => panic!("expected UnknownEvent, got {other:?}"),
    }
    assert!(events.delivery(event_id, did).unwrap().is_none());
    assert_eq!(events.due_count().unwrap(), 0);
    // Queued together (most likely one batch): the refusal fails only its own request.
    let (tx, rx) = crossbeam_channel::unbounded();
    let neighbour = event_with(DeliveryStatus::Delivered, None);
    let neighbour_id = neighbour.event.id;
    let refused =
        WriteOp::AddDeliveries(vec![Delivery::pending(event_id, Uuid::new_v4(), now_ms())]);
    for (name, op) in [
        ("refused", refused),
        ("neighbour", WriteOp::Ingest(neighbour)),
    ] {
        events.submit(op, Notice::message(&tx, name)).unwrap();
    }
    let outcome = || {
        let (name, r) = rx.recv().unwrap();
        (name, r.is_ok())
    };
    let mut outcomes = vec![outcome(), outcome()];
    outcomes.sort();
    assert_eq!(outcomes, [("neighbour", true), ("refused", false)]);
    assert!(events.event_with_body(neighbour_id).unwrap().is_some());
    store.close();
}

/// An update that races a delete must not bring the deleted row back, and a child must not
/// be added to a webhook deleted meanwhile: the service reads from the in-memory catalog,
/// so the store checks again inside the write transaction.
#[test]
fn updates_and_children_of_deleted_rows_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path()).unwrap();
    let webhook = Webhook {
        id: Uuid::new_v4(),
        name: "w".into(),
        description: String::new(),
        retention_days: 0,
        created_at: now_ms(),
        verification: Verification::None,
        dedupe: None,
    };
    let entrypoint = Entrypoint {
        id: Uuid::new_v4(),
        webhook_id: webhook.id,
        description: String::new(),
        active: true,
        created_at: now_ms(),
    };
    let target = Target {
        id: Uuid::new_v4(),
        webhook_id: webhook.id,
        name: "t".into(),
        active: true,
        kind: TargetKind::Log,
        created_at: now_ms(),
        filter: None,
    };
    store.main.create_webhook(&webhook, &entrypoint).unwrap();
    assert!(store.main.insert_target(&target).unwrap());
    assert!(
        store
            .main
            .modify_target(target.id, |_| {})
            .unwrap()
            .is_some()
    );
    assert!(store.main.update_entrypoint(&entrypoint).unwrap());
    assert!(store.main.update_webhook(&webhook).unwrap());

    assert!(store.main.delete_target(target.id).unwrap());
    assert!(
        store
            .main
            .modify_target(target.id, |_| {})
            .unwrap()
            .is_none()
    );
    assert!(store.main.delete_entrypoint(entrypoint.id).unwrap());
    assert!(!store.main.update_entrypoint(&entrypoint).unwrap());
    assert!(store.main.delete_webhook(webhook.id).unwrap());
    assert!(!store.main.update_webhook(&webhook).unwrap());
    assert!(!store.main.insert_target(&target).unwrap());
    assert!(!store.main.insert_entrypoint(&entrypoint).unwrap());

    let catalog = store.catalog();
    assert!(catalog.webhooks().is_empty());
    assert!(catalog.target(target.id).is_none());
    assert!(catalog.entrypoint(entrypoint.id).is_none());
    store.close();
}

/// Event files of `dir` the process holds open now, from /proc/self/fd.
fn open_event_files_under(dir: &std::path::Path) -> HashSet<std::path::PathBuf> {
    std::fs::read_dir("/proc/self/fd")
        .unwrap()
        .filter_map(|fd| std::fs::read_link(fd.ok()?.path()).ok())
        .filter(|path| {
            path.starts_with(dir)
                && path
                    .file_name()
                    .is_some_and(|n| n.to_string_lossy().starts_with("events-"))
        })
        .collect()
}

/// At most `MAX_OPEN_EVENT_FILES` event files are open, however many webhooks get events;
/// a file closed for another reopens transparently for ingest, the sweeper, reads and
/// redelivery, and closing it loses and duplicates nothing.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn open_event_files_stay_under_the_cap_and_reopen_transparently() {
    use std::sync::Arc;
    use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
    use std::time::Duration;

    use serde_json::json;

    use crate::support::receiver::Receiver;
    use crate::support::{TestApp, wait_until};

    const CAP: usize = 4;
    const WEBHOOKS: usize = 12;
    const EVENTS: usize = 3;
    let app = TestApp::start_with(|c| {
        c.store.max_open_event_files = CAP;
        c.store.event_cache_bytes = CAP * 1024 * 1024;
    })
    .await;
    let data_dir = app.dir.path().canonicalize().unwrap();
    let sink = Receiver::start().await;
    let mut hooks = Vec::new();
    for i in 0..WEBHOOKS {
        let (wh, url) = app.webhook(&format!("w{i}")).await;
        app.target(
            &wh,
            json!({"name": "sink", "kind": "http", "url": sink.url(&format!("/{i}"))}),
        )
        .await;
        hooks.push((wh, url));
    }
    // Watch the open files while events flow.
    let most_open = Arc::new(AtomicUsize::new(0));
    let watching = Arc::new(AtomicBool::new(true));
    let watcher = {
        let (most_open, watching, dir) = (most_open.clone(), watching.clone(), data_dir.clone());
        std::thread::spawn(move || {
            // Reading /proc/self/fd is not atomic: a file closed and another opened while
            // one scan runs would both be seen. A file counts as open when two scans in a
            // row see it.
            let mut last = open_event_files_under(&dir);
            while watching.load(Ordering::SeqCst) {
                let now = open_event_files_under(&dir);
                let open = now.intersection(&last).count();
                most_open.fetch_max(open, Ordering::SeqCst);
                last = now;
                std::thread::sleep(Duration::from_millis(1));
            }
        })
    };
    for _ in 0..EVENTS {
        for (_, url) in &hooks {
            app.send(url, b"{\"n\":1}").await;
            assert!(app.app().store().open_event_files() <= CAP);
        }
    }
    let all = WEBHOOKS * EVENTS;
    assert!(
        wait_until(Duration::from_secs(20), || async { sink.count() >= all }).await,
        "delivered {} of {all}",
        sink.count()
    );
    // Every event reads back from its (reopened) file, each delivered once.
    for (wh, _) in &hooks {
        assert!(
            wait_until(Duration::from_secs(10), || async {
                let page = app.get_json(&format!("/webhooks/{wh}/events")).await;
                page["events"].as_array().is_some_and(|events| {
                    events.len() == EVENTS
                        && events
                            .iter()
                            .all(|e| e["deliveries"][0]["status"] == "delivered")
                })
            })
            .await,
            "webhook {wh}"
        );
    }
    let deliveries: HashSet<String> = sink
        .received()
        .iter()
        .filter_map(|r| r.header("x-webhooker-delivery-id"))
        .collect();
    assert_eq!(deliveries.len(), all, "no delivery lost or sent twice");
    // Redelivery to the first webhook, whose file was closed for the others.
    let (first, _) = &hooks[0];
    let page = app.get_json(&format!("/webhooks/{first}/events")).await;
    let event_id = page["events"][0]["id"].as_str().unwrap().to_string();
    assert!(app.redeliver(first, &event_id, None).await.is_success());
    assert!(
        wait_until(Duration::from_secs(10), || async { sink.count() > all }).await,
        "the redelivery never came"
    );
    watching.store(false, Ordering::SeqCst);
    watcher.join().unwrap();
    let most = most_open.load(Ordering::SeqCst);
    eprintln!("at most {most} event files open at once (cap {CAP})");
    assert!(most <= CAP, "{most} event files open at once");
    assert!(most >= 2, "the watcher saw the files");
    app.stop().await;
}

/// Copies the files under `from` to `to`, subdirectories too.
fn copy_tree(from: &std::path::Path, to: &std::path::Path) {
    std::fs::create_dir_all(to).unwrap();
    for entry in std::fs::read_dir(from).unwrap() {
        let entry = entry.unwrap();
        let target = to.join(entry.file_name());
        if entry.file_type().unwrap().is_dir() {
            copy_tree(&entry.path(), &target);
        } else {
            std::fs::copy(entry.path(), &target).unwrap();
        }
    }
}

/// A power cut, while three webhooks' files take writes: the data directory copied at one
/// instant is what the disk would hold (redb keeps an unsynced commit's header in memory,
/// so a file's copy opens at its last synced commit). Every acknowledged write is back
/// after the start replays the commit journal, and only thanks to it: the same copy
/// without the journal lacks the writes the files had not synced yet.
#[test]
fn acknowledged_writes_survive_a_power_cut_through_the_journal() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    // Files never sync by themselves in this test: everything rests on the journal.
    let limits = webhooker::config::StoreConfig {
        checkpoint_after: std::time::Duration::from_secs(3600),
        ..Default::default()
    };
    let store = Store::open_with(&data, limits).unwrap();
    let hooks: Vec<Uuid> = (0..3).map(|_| Uuid::new_v4()).collect();
    let mut acked = Vec::new();
    for (i, hook) in hooks.iter().enumerate() {
        let events = store.create_events(*hook).unwrap();
        for n in 0..40 {
            // Small bodies in the event row, large ones in chunks, none of them UTF-8.
            let len = if n % 10 == 9 { 40_000 } else { 100 + n };
            let body: Bytes = (0..len)
                .map(|b| (b % 251) as u8 ^ 0x80)
                .collect::<Vec<u8>>()
                .into();
            let new = event_with_body(DeliveryStatus::Pending, Some(now_ms()), body.clone());
            let delivery = new.deliveries[0].clone();
            acked.push((*hook, new.event.id, body));
            events.write_blocking(WriteOp::Ingest(new)).unwrap();
            // Every other delivery is then attempted and delivered: its due row goes.
            if n % 2 == 0 {
                let done = Delivery {
                    status: DeliveryStatus::Delivered,
                    attempts: 1,
                    next_attempt_at: None,
                    ..delivery.clone()
                };
                events
                    .write_blocking(WriteOp::Attempt(webhooker::store::AttemptWrite {
                        previous_due: delivery.next_attempt_at,
                        delivery: done,
                        result: None,
                    }))
                    .unwrap();
            }
        }
        assert_eq!(events.due_count().unwrap(), 20, "webhook {i}");
    }
    let cut = dir.path().join("cut");
    copy_tree(&data, &cut);
    let cut_without_journal = dir.path().join("cut-without-journal");
    copy_tree(&data, &cut_without_journal);
    std::fs::remove_dir_all(cut_without_journal.join("journal")).unwrap();
    store.close();
    // A clean stop leaves an empty journal.
    assert_eq!(std::fs::read_dir(data.join("journal")).unwrap().count(), 0);

    let without = Store::open(&cut_without_journal).unwrap();
    let mut found_without = 0;
    for hook in &hooks {
        found_without += without.create_events(*hook).unwrap().event_count().unwrap();
    }
    without.close();
    assert!(
        found_without < acked.len() as u64,
        "without the journal the files hold {found_without} of {} events: the test cut nothing",
        acked.len()
    );

    // One file cannot be opened while the start replays the journal (another process
    // holds it): the server starts anyway, and the file gets its commits when it opens.
    let blocker = redb::Database::open(cut.join(format!("events-{}.redb", hooks[0]))).unwrap();
    let restarted = Store::open(&cut).unwrap();
    for hook in &hooks[1..] {
        let events = restarted.create_events(*hook).unwrap();
        assert_eq!(events.event_count().unwrap(), 40);
        assert_eq!(events.due_count().unwrap(), 20);
    }
    let refused = restarted.create_events(hooks[0]).map(|_| ());
    assert!(refused.is_err(), "{refused:?}");
    drop(blocker);
    let events = restarted.create_events(hooks[0]).unwrap();
    assert_eq!(events.event_count().unwrap(), 40);
    assert_eq!(events.due_count().unwrap(), 20);
    for (hook, id, body) in &acked {
        let detail = restarted
            .create_events(*hook)
            .unwrap()
            .event_detail(*id)
            .unwrap()
            .expect("an acknowledged event");
        assert_eq!(&detail.body, body);
        assert_eq!(detail.deliveries.len(), 1);
    }
    restarted.close();
    drop(restarted);
    // The replay was made durable in the files: the journal is gone, and a second start
    // finds the same.
    assert_eq!(std::fs::read_dir(cut.join("journal")).unwrap().count(), 0);
    let again = Store::open(&cut).unwrap();
    for hook in &hooks {
        let events = again.create_events(*hook).unwrap();
        assert_eq!(events.event_count().unwrap(), 40);
        assert_eq!(events.due_count().unwrap(), 20);
    }
    again.close();
}
