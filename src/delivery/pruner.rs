//! Retention (BRIEF R7): hourly, each webhook with `retention_days > 0` loses events older
//! than that whose deliveries are all finished; the file is compacted when much went.

use std::time::Duration;

use super::engine::Shared;
use crate::model::now_ms;

/// Time between retention passes.
const PRUNE_INTERVAL: Duration = Duration::from_secs(3600);

pub(super) fn run(s: &Shared) {
    loop {
        crossbeam_channel::select! {
            recv(s.stop_rx) -> _ => return,
            default(PRUNE_INTERVAL) => prune_all(s),
        }
    }
}

fn prune_all(s: &Shared) {
    for webhook in s.store.catalog().webhooks() {
        if webhook.retention_days == 0 || s.stopping() {
            continue;
        }
        let cutoff = now_ms() - i64::from(webhook.retention_days) * 86_400_000;
        let result = s.store.events(webhook.id).and_then(|e| e.prune(cutoff));
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
