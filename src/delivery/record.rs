//! Recording what became of an attempt: the result and the delivery's next state go to the
//! event file's writer in one transaction; after the commit the delivery either waits in
//! the scheduler for its next due time or leaves memory.

use std::time::{Duration, Instant};

use rand::RngExt;

use super::backoff::{backoff, clamp_retry_after};
use super::engine::Shared;
use super::targets::{AttemptReport, Verdict};
use super::task::DeliveryTask;
use crate::metrics as m;
use crate::model::{
    DEFAULT_MAX_BACKOFF_SECS, Delivery, DeliveryResult, DeliveryStatus, Millis, RetryLimit,
    SLACK_MAX_RETRIES, Target, TargetKind, now_ms,
};
use uuid::Uuid;

use super::committed::AfterCommit;
use super::scheduler::Scheduler;
use crate::store::{AttemptWrite, Notice, WriteOp};

/// The policy for retries of a target kind: (retry limit, backoff cap).
fn retry_policy(target: &Target) -> (RetryLimit, Duration) {
    match &target.kind {
        TargetKind::Http(h) => (
            h.max_retries,
            Duration::from_secs(h.max_backoff_secs as u64),
        ),
        TargetKind::Slack(_) => (
            RetryLimit::Limited(SLACK_MAX_RETRIES),
            Duration::from_secs(DEFAULT_MAX_BACKOFF_SECS as u64),
        ),
        TargetKind::Log | TargetKind::Database => (RetryLimit::Limited(0), Duration::ZERO),
    }
}

/// Writes the attempt's result and the delivery's next state in one transaction (through
/// the group-commit writer); after the commit, schedules the retry or lets the task go.
pub(super) fn record(
    s: &Shared,
    task: DeliveryTask,
    report: AttemptReport,
    duration_us: u64,
    started: Millis,
) {
    let now = now_ms();
    let attempt = task.delivery.attempts + 1;
    let (limit, max_backoff) = retry_policy(&task.target);
    let previous_due = task.delivery.next_attempt_at;
    let mut delivery = task.delivery.clone();
    delivery.attempts = attempt;
    let target_label = task.target.id.to_string();
    let outcome = match report.verdict {
        Verdict::Delivered => {
            delivery.status = DeliveryStatus::Delivered;
            delivery.next_attempt_at = None;
            "delivered"
        }
        Verdict::Retry { after } if limit.allows_retry_after(attempt) => {
            let computed = backoff(
                attempt,
                s.config.retry_base,
                max_backoff.max(s.config.retry_base),
                rand::rng().random::<f64>(),
            );
            let delay = match after {
                Some(hint) => clamp_retry_after(hint, computed, max_backoff),
                None => computed,
            };
            delivery.status = DeliveryStatus::Retrying;
            delivery.next_attempt_at = Some(now + delay.as_millis() as Millis);
            metrics::counter!(m::RETRIES_SCHEDULED, "target" => target_label.clone()).increment(1);
            "retry"
        }
        Verdict::Retry { .. } | Verdict::Fail => {
            delivery.status = DeliveryStatus::Failed;
            delivery.next_attempt_at = None;
            "failed"
        }
    };
    metrics::counter!(m::DELIVERY_ATTEMPTS, "target" => target_label.clone(), "outcome" => outcome)
        .increment(1);
    metrics::histogram!(m::DELIVERY_DURATION, "target" => target_label.clone())
        .record(duration_us as f64 / 1e6);
    if delivery.status.is_terminal() {
        metrics::counter!(m::DELIVERIES_FINISHED, "target" => target_label, "status" => delivery.status.as_str())
            .increment(1);
    }
    let result = DeliveryResult {
        delivery_id: delivery.id,
        attempt,
        started_at: started,
        duration_us,
        status_code: report.status_code,
        error: report.error,
        response_body: report.response_body,
        success: report.verdict == Verdict::Delivered,
        exchange: *report.exchange,
    };
    let write = AttemptWrite {
        delivery: delivery.clone(),
        previous_due,
        result: Some(result),
    };
    submit(s, task, delivery, write);
}

/// The breaker is open: move the due time to when it may close, spending no attempt.
pub(super) fn defer(s: &Shared, task: DeliveryTask, until: Instant) {
    let wait = until.saturating_duration_since(Instant::now());
    let previous_due = task.delivery.next_attempt_at;
    let mut delivery = task.delivery.clone();
    delivery.next_attempt_at = Some(now_ms() + wait.as_millis() as Millis);
    metrics::counter!(m::DELIVERY_ATTEMPTS, "target" => task.target.id.to_string(), "outcome" => "deferred")
        .increment(1);
    let write = AttemptWrite {
        delivery: delivery.clone(),
        previous_due,
        result: None,
    };
    submit(s, task, delivery, write);
}

/// How long a delivery waits when its event file could not be read or written.
const STORE_RETRY_DELAY_MS: Millis = 30_000;

/// Leaves a delivery that the event file failed (its body could not be read, or its attempt
/// not recorded) to the due index only after [`STORE_RETRY_DELAY_MS`], claimed meanwhile:
/// released at once, the sweeper would find it within a second and, while the file stays
/// broken, send it again each time. The sweeper then re-reads what the file holds (a
/// failed commit may have landed after all).
pub(super) fn retry_later(scheduler: &Scheduler, delivery_id: Uuid, why: &str) {
    tracing::warn!(delivery_id = %delivery_id, reason = why, "event file failed; delivery retried in 30 s");
    scheduler.release_later(now_ms() + STORE_RETRY_DELAY_MS, delivery_id);
}

/// Sends the write to the event file's writer; once it is committed, the committer thread
/// schedules the delivery's next attempt or lets it leave memory.
fn submit(s: &Shared, task: DeliveryTask, delivery: Delivery, write: AttemptWrite) {
    let deferral = write.result.is_none();
    let webhook_id = task.webhook_id;
    let task = DeliveryTask { delivery, ..task };
    let notice = Notice::message(&s.commits, AfterCommit::Recorded { task, deferral });
    // Never opens the file on this thread; a write that cannot be queued fires the notice
    // with the reason, like a failed commit.
    s.store
        .submit_to(webhook_id, WriteOp::Attempt(write), notice);
}
