//! Retention: a minute after start and then hourly, each webhook with
//! `retention_days > 0` loses events older than that whose deliveries are all finished;
//! the file is compacted when much went. A webhook that dedupes forgets the keys older
//! than its window.

use std::time::Duration;

use super::queue::StopSignal;
use crate::model::now_ms;
use crate::store::Store;

/// Time between retention passes.
const PRUNE_INTERVAL: Duration = Duration::from_secs(3600);
/// The first pass comes soon after start (a process restarted more often than hourly
/// would otherwise never prune), but after the startup recovery sweep has had its turn.
const FIRST_PASS_AFTER: Duration = Duration::from_secs(60);

pub(super) fn run(store: &Store, stop: &StopSignal) {
    let mut wait = FIRST_PASS_AFTER;
    loop {
        crossbeam_channel::select! {
            recv(stop.rx()) -> _ => return,
            default(wait) => prune_all(store, stop),
        }
        wait = PRUNE_INTERVAL;
    }
}

fn prune_all(store: &Store, stop: &StopSignal) {
    for webhook in store.catalog().webhooks() {
        if stop.stopping() {
            return;
        }
        if let Some(dedupe) = &webhook.dedupe {
            let cutoff = now_ms() - i64::from(dedupe.window_secs) * 1000;
            if let Err(e) = store
                .events(webhook.id)
                .and_then(|e| e.prune_dedupe(cutoff))
            {
                tracing::error!(webhook_id = %webhook.id, error = %e, "pruning dedupe keys failed");
            }
        }
        if webhook.retention_days == 0 {
            continue;
        }
        let cutoff = now_ms() - i64::from(webhook.retention_days) * 86_400_000;
        let result = store.events(webhook.id).and_then(|e| e.prune(cutoff));
        match result {
            Ok(r) if r.events_removed > 0 => tracing::info!(
                webhook_id = %webhook.id,
                removed = r.events_removed,
                compacted = r.compacted,
                "retention pass"
            ),
            Ok(_) => {}
            Err(e) => {
                tracing::error!(webhook_id = %webhook.id, error = %e, "retention pass failed")
            }
        }
    }
}
