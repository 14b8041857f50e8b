//! Store-level benchmarks: group-committed ingest by batch and body size, and the due-index
//! range scan the sweeper runs.
//!
//! `cargo bench --bench store`

use std::hint::black_box;
use std::time::Duration;

use bytes::Bytes;
use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use uuid::Uuid;
use webhooker::model::{Delivery, Event, now_ms};
use webhooker::store::{EventStore, NewEvent, Notice, Store, WriteOp};

fn new_event(body: &Bytes) -> NewEvent {
    let now = now_ms();
    let event = Event {
        id: Uuid::now_v7(),
        entrypoint_id: Uuid::nil(),
        received_at: now,
        method: "POST".into(),
        path: "/webhook/x".into(),
        headers: vec![
            ("content-type".into(), b"application/json".to_vec()),
            ("user-agent".into(), b"GitHub-Hookshot/abc".to_vec()),
        ],
        content_type: Some("application/json".into()),
        remote_addr: "127.0.0.1".into(),
        body_len: body.len() as u64,
    };
    let delivery = Delivery::pending(event.id, Uuid::nil(), now);
    NewEvent {
        event,
        body: body.clone(),
        deliveries: vec![delivery],
        dedupe: None,
    }
}

/// Submits `count` ingests at once and waits for every acknowledgement.
fn ingest_and_wait(events: &EventStore, body: &Bytes, count: usize) {
    let (tx, rx) = crossbeam_channel::unbounded();
    for _ in 0..count {
        events
            .submit(WriteOp::Ingest(new_event(body)), Notice::message(&tx, ()))
            .unwrap();
    }
    for _ in 0..count {
        assert!(rx.recv().unwrap().1.is_ok());
    }
}

/// Submits `batch` ingests at once (the writer commits what is queued together) and waits
/// for every acknowledgement: what `batch` concurrent senders see.
fn ingest(c: &mut Criterion) {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path()).unwrap();
    let events = store.create_events(Uuid::new_v4()).unwrap();
    let mut group = c.benchmark_group("ingest");
    group
        .sample_size(10)
        .measurement_time(Duration::from_secs(3));
    for body_size in [256usize, 4096, 65536] {
        let body = Bytes::from(vec![b'x'; body_size]);
        for batch in [1usize, 16, 100] {
            group.throughput(Throughput::Elements(batch as u64));
            group.bench_with_input(
                BenchmarkId::new(format!("body_{body_size}"), batch),
                &batch,
                |b, &batch| b.iter(|| ingest_and_wait(&events, &body, batch)),
            );
        }
    }
    group.finish();
    store.close();
}

/// The sweeper's query over a due index of 100k rows: the first page of due work, and
/// the whole index.
fn due_scan(c: &mut Criterion) {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path()).unwrap();
    let events = store.create_events(Uuid::new_v4()).unwrap();
    ingest_and_wait(&events, &Bytes::from_static(b"{}"), 100_000);
    let now = now_ms() + 1;
    // No target is passed over: the plain scan.
    let skip = std::collections::HashSet::new();
    let mut group = c.benchmark_group("due_index_100k");
    group.sample_size(10);
    group.bench_function("first_1000_due", |b| {
        b.iter(|| black_box(events.due_before(now, 1000, &skip).unwrap().len()))
    });
    group.bench_function("all_100k_due", |b| {
        b.iter(|| black_box(events.due_before(now, usize::MAX, &skip).unwrap().len()))
    });
    group.bench_function("nothing_due", |b| {
        b.iter(|| black_box(events.due_before(0, 1000, &skip).unwrap().len()))
    });
    group.finish();
    store.close();
}

criterion_group!(benches, ingest, due_scan);
criterion_main!(benches);
