//! Per-request cost of routing at ingest: ten targets' filters of five conditions each
//! evaluated against one request (headers, method and a JSON body of about 1 KiB), next
//! to ten targets without filters. Ingest spends about 27 µs of CPU per request at 64
//! connections (docs/performance.md), so 5% of it is about 1.3 µs.
//!
//! `cargo bench --bench routing`

use std::hint::black_box;

use criterion::{Criterion, criterion_group, criterion_main};
use serde_json::json;
use webhooker::routing::{Dedupe, Filter, RequestView};

/// A GitHub-like `pull_request` delivery of 1.2 KiB (the load test sends the same).
fn body() -> Vec<u8> {
    include_bytes!("github-pull-request.json")
        .trim_ascii()
        .to_vec()
}

fn headers() -> Vec<(String, Vec<u8>)> {
    [
        ("host", "hooks.example.com"),
        ("user-agent", "GitHub-Hookshot/044aadd"),
        ("content-type", "application/json"),
        ("content-length", "1024"),
        ("x-github-event", "pull_request"),
        ("x-github-delivery", "72d3162e-cc78-11e3-81ab-4c9367dc0958"),
        ("x-github-hook-id", "292430182"),
        (
            "x-hub-signature-256",
            "sha256=d57c68ca6f92289e6987922ff26938930f6e66a2d161ef06abdf1859230aa23c",
        ),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), v.as_bytes().to_vec()))
    .collect()
}

/// Ten filters of five conditions; the i-th target wants event kind i, so one of them
/// matches and nine are skipped (each skip formats its reason).
fn filters(json_conditions: bool) -> Vec<Filter> {
    let kinds = [
        "push",
        "issues",
        "release",
        "pull_request",
        "fork",
        "star",
        "watch",
        "create",
        "delete",
        "deployment",
    ];
    kinds
        .iter()
        .map(|kind| {
            let mut conditions = vec![
                json!({"method": "POST"}),
                json!({"header": "X-GitHub-Event", "equals": kind}),
                json!({"header": "User-Agent", "prefix": "GitHub-Hookshot/"}),
            ];
            if json_conditions {
                conditions
                    .push(json!({"json": "/action", "in": ["opened", "reopened", "synchronize"]}));
                conditions.push(json!({"json": "/pull_request/additions", "gt": 10}));
            } else {
                conditions.push(
                    json!({"header": "Content-Type", "in": ["application/json", "text/json"]}),
                );
                conditions.push(json!({"header": "X-GitHub-Hook-Id", "exists": true}));
            }
            Filter::from_json(&json!({ "all": conditions })).unwrap()
        })
        .collect()
}

/// What ingest does per request: one view, the JSON paths of every filter found in one
/// pass, every target's filter checked.
fn route(filters: &[Option<Filter>], headers: &[(String, Vec<u8>)], body: &[u8]) -> usize {
    let view = RequestView::new("POST", headers, body);
    view.find_json(filters.iter().flatten().flat_map(Filter::json_pointers));
    filters
        .iter()
        .filter(|f| f.as_ref().and_then(|f| f.check(&view).err()).is_some())
        .count()
}

fn bench(c: &mut Criterion) {
    let (headers, body) = (headers(), body());
    let mut g = c.benchmark_group("route_10_targets");
    let none: Vec<Option<Filter>> = vec![None; 10];
    g.bench_function("no_filters", |b| {
        b.iter(|| route(black_box(&none), black_box(&headers), black_box(&body)))
    });
    let header_only: Vec<_> = filters(false).into_iter().map(Some).collect();
    g.bench_function("5_header_conditions_each", |b| {
        b.iter(|| {
            route(
                black_box(&header_only),
                black_box(&headers),
                black_box(&body),
            )
        })
    });
    let mixed: Vec<_> = filters(true).into_iter().map(Some).collect();
    g.bench_function("3_header_2_json_conditions_each", |b| {
        b.iter(|| route(black_box(&mixed), black_box(&headers), black_box(&body)))
    });
    // The load test's shape: every condition holds, so all fifty are evaluated.
    let matching: Vec<_> = (0..10)
        .map(|_| {
            Some(
                Filter::from_json(&json!({"all": [
                    {"method": "POST"},
                    {"header": "X-GitHub-Event", "in": ["push", "pull_request"]},
                    {"header": "User-Agent", "prefix": "GitHub-Hookshot/"},
                    {"json": "/action", "in": ["opened", "reopened", "synchronize"]},
                    {"json": "/pull_request/additions", "gt": 10},
                ]}))
                .unwrap(),
            )
        })
        .collect();
    g.bench_function("3_header_2_json_conditions_each_all_matching", |b| {
        b.iter(|| route(black_box(&matching), black_box(&headers), black_box(&body)))
    });
    g.finish();

    let by_header = Dedupe::from_json(&json!({"header": "X-GitHub-Delivery"})).unwrap();
    c.bench_function("dedupe_key_from_header", |b| {
        b.iter(|| {
            by_header.key(&RequestView::new(
                "POST",
                black_box(&headers),
                black_box(&body),
            ))
        })
    });
}

criterion_group!(benches, bench);
criterion_main!(benches);
