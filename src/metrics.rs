//! Metric names and the Prometheus recorder. Every metric is named here.

use std::sync::OnceLock;

use metrics_exporter_prometheus::{PrometheusBuilder, PrometheusHandle};

/// Events accepted, by webhook.
pub const EVENTS_RECEIVED: &str = "webhooker_events_received_total";
/// Body bytes accepted, by webhook.
pub const EVENT_BODY_BYTES: &str = "webhooker_event_body_bytes_total";
/// Requests refused by the webhook's sender verification (401, nothing stored), by webhook
/// and reason (`missing_header`, `malformed_header`, `bad_signature`, `stale_timestamp`,
/// `bad_credentials`).
pub const INGEST_REJECTED: &str = "webhooker_ingest_rejected_total";
/// Finished attempts, by target and outcome (`delivered`, `retry`, `failed`, `deferred`).
pub const DELIVERY_ATTEMPTS: &str = "webhooker_delivery_attempts_total";
/// Deliveries reaching a terminal status, by target and status.
pub const DELIVERIES_FINISHED: &str = "webhooker_deliveries_finished_total";
/// Deliveries skipped by their target's filter (no attempt), by target.
pub const DELIVERIES_SKIPPED: &str = "webhooker_deliveries_skipped_total";
/// Requests answered as duplicates of a stored event (nothing stored), by webhook.
pub const INGEST_DUPLICATES: &str = "webhooker_ingest_duplicates_total";
/// Requests refused with 508 because their hop count shows a delivery loop, by webhook.
pub const INGEST_LOOPS: &str = "webhooker_ingest_loops_total";
/// Attempt duration in seconds, by target.
pub const DELIVERY_DURATION: &str = "webhooker_delivery_duration_seconds";
/// Retries scheduled, by target.
pub const RETRIES_SCHEDULED: &str = "webhooker_retries_scheduled_total";
/// Tasks waiting, by queue (`delivery`, `scheduler`, `parked`, `claimed`), and exchanges
/// holding a slot (`in_flight`).
pub const QUEUE_DEPTH: &str = "webhooker_queue_depth";
/// Breaker state by target: 0 closed, 1 open, 2 half-open.
pub const BREAKER_STATE: &str = "webhooker_breaker_state";
/// Event files that cannot be opened or written now (what makes the healthcheck
/// `degraded`), set at each scrape.
pub const STORAGE_FAILING_FILES: &str = "webhooker_storage_failing_event_files";
/// Free bytes on the data directory's filesystem, set at each scrape.
pub const STORAGE_FREE_BYTES: &str = "webhooker_storage_free_bytes";
/// Unfinished deliveries in the due index, by webhook.
pub const DUE_ROWS: &str = "webhooker_due_index_rows";

static HANDLE: OnceLock<Option<PrometheusHandle>> = OnceLock::new();

/// Whether a recorder is installed, so metrics that cost work to compute are worth it.
pub fn enabled() -> bool {
    HANDLE.get().is_some_and(Option::is_some)
}

/// The process-wide recorder, installed on first use. The `metrics` facade is global, so
/// two `App`s in one process (tests) share it; that only merges their counters.
pub fn handle() -> Option<PrometheusHandle> {
    HANDLE
        .get_or_init(|| {
            let builder = PrometheusBuilder::new()
                .set_buckets_for_metric(
                    metrics_exporter_prometheus::Matcher::Full(DELIVERY_DURATION.into()),
                    &[
                        0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0,
                    ],
                )
                .ok()?;
            match builder.install_recorder() {
                Ok(h) => {
                    describe();
                    Some(h)
                }
                Err(e) => {
                    tracing::warn!(error = %e, "metrics recorder not installed");
                    None
                }
            }
        })
        .clone()
}

fn describe() {
    use metrics::{describe_counter, describe_gauge, describe_histogram};
    describe_counter!(EVENTS_RECEIVED, "Webhook events accepted");
    describe_counter!(EVENT_BODY_BYTES, "Webhook body bytes accepted");
    describe_counter!(
        INGEST_REJECTED,
        "Webhook requests refused by sender verification"
    );
    describe_counter!(DELIVERY_ATTEMPTS, "Delivery attempts by outcome");
    describe_counter!(DELIVERIES_FINISHED, "Deliveries reaching a terminal status");
    describe_counter!(
        DELIVERIES_SKIPPED,
        "Deliveries skipped by their target's filter"
    );
    describe_counter!(INGEST_DUPLICATES, "Requests answered as duplicates");
    describe_counter!(INGEST_LOOPS, "Requests refused as a delivery loop (508)");
    describe_histogram!(
        DELIVERY_DURATION,
        metrics::Unit::Seconds,
        "Attempt duration"
    );
    describe_counter!(RETRIES_SCHEDULED, "Retries scheduled");
    describe_gauge!(QUEUE_DEPTH, "Deliveries waiting in memory, by queue");
    describe_gauge!(
        BREAKER_STATE,
        "Circuit breaker state: 0 closed, 1 open, 2 half-open"
    );
    describe_gauge!(DUE_ROWS, "Unfinished deliveries in the due index");
}

/// Counts a delivery finished by its own commit (a `database` target) as one delivered
/// attempt, like the engine counts the attempts it makes.
pub fn delivered_by_commit(target_id: uuid::Uuid) {
    let target = target_id.to_string();
    metrics::counter!(DELIVERY_ATTEMPTS, "target" => target.clone(), "outcome" => "delivered")
        .increment(1);
    metrics::counter!(DELIVERIES_FINISHED, "target" => target, "status" => "delivered")
        .increment(1);
}
