//! Migrations of the main file from older format versions, run inside the transaction that
//! opens it and records the current version.
//!
//! Records are bincode (not self-describing), so a record read with a newer layout than it
//! was written in fails to decode. Each older layout is therefore spelled out here as it
//! was, read, and rewritten in the current one. Nothing else may use these types.

use redb::{ReadableTable, TableDefinition, WriteTransaction};
use serde::{Deserialize, Serialize, de::DeserializeOwned};

use super::{StoreError, codec};
use crate::model::{
    HttpTarget, Millis, RetryLimit, Signing, SigningKey, SlackTarget, Target, TargetKind,
    Verification, Webhook,
};
use crate::routing::Transform;

/// Brings a main file written at format `found` to the current layout, one version at a
/// time, in the transaction that opens it.
pub(super) fn upgrade(
    tx: &WriteTransaction,
    found: u32,
    webhooks: TableDefinition<'_, u128, &'static [u8]>,
    targets: TableDefinition<'_, u128, &'static [u8]>,
) -> Result<(), StoreError> {
    if found <= 1 {
        v1_to_v2(tx, webhooks, targets)?;
    }
    if found <= 2 {
        v2_to_v3(tx, webhooks, targets)?;
    }
    Ok(())
}

/// Version 1 to 2: webhooks gain sender verification (none), http targets a signing
/// secret. Signing starts switched off on targets that existed before it did, so an
/// upgrade changes nothing their receivers get (a sender's own `webhook-*` headers pass
/// through as before); it is one update away.
fn v1_to_v2(
    tx: &WriteTransaction,
    webhooks: TableDefinition<'_, u128, &'static [u8]>,
    targets: TableDefinition<'_, u128, &'static [u8]>,
) -> Result<(), StoreError> {
    rewrite(tx, webhooks, |w: WebhookV1| WebhookV2 {
        id: w.id,
        name: w.name,
        description: w.description,
        retention_days: w.retention_days,
        created_at: w.created_at,
        verification: Verification::None,
    })?;
    rewrite(tx, targets, |t: TargetV1| TargetV2 {
        id: t.id,
        webhook_id: t.webhook_id,
        name: t.name,
        active: t.active,
        created_at: t.created_at,
        kind: match t.kind {
            TargetKindV1::Http(h) => TargetKindV2::Http(HttpTargetV2 {
                url: h.url,
                timeout_secs: h.timeout_secs,
                max_retries: h.max_retries,
                max_backoff_secs: h.max_backoff_secs,
                max_in_flight: h.max_in_flight,
                signing: Signing {
                    enabled: false,
                    secret: SigningKey::generate(),
                    previous: None,
                },
            }),
            TargetKindV1::Log => TargetKindV2::Log,
            TargetKindV1::Database => TargetKindV2::Database,
            TargetKindV1::Slack(s) => TargetKindV2::Slack(s),
        },
    })
}

/// Version 2 to 3: webhooks gain dedupe (off), targets a filter (none: every event), http
/// targets a transform (none). Nothing about what is delivered changes.
fn v2_to_v3(
    tx: &WriteTransaction,
    webhooks: TableDefinition<'_, u128, &'static [u8]>,
    targets: TableDefinition<'_, u128, &'static [u8]>,
) -> Result<(), StoreError> {
    rewrite(tx, webhooks, |w: WebhookV2| Webhook {
        id: w.id,
        name: w.name,
        description: w.description,
        retention_days: w.retention_days,
        created_at: w.created_at,
        verification: w.verification,
        dedupe: None,
    })?;
    rewrite(tx, targets, |t: TargetV2| Target {
        id: t.id,
        webhook_id: t.webhook_id,
        name: t.name,
        active: t.active,
        created_at: t.created_at,
        filter: None,
        kind: match t.kind {
            TargetKindV2::Http(h) => TargetKind::Http(HttpTarget {
                url: h.url,
                timeout_secs: h.timeout_secs,
                max_retries: h.max_retries,
                max_backoff_secs: h.max_backoff_secs,
                max_in_flight: h.max_in_flight,
                signing: h.signing,
                transform: Transform::default(),
            }),
            TargetKindV2::Log => TargetKind::Log,
            TargetKindV2::Database => TargetKind::Database,
            TargetKindV2::Slack(s) => TargetKind::Slack(s),
        },
    })
}

/// Decodes every row of `def` as `Old` and stores `convert` of it in its place. A row that
/// does not decode fails the open: guessing would lose configuration.
fn rewrite<Old: DeserializeOwned, New: Serialize>(
    tx: &WriteTransaction,
    def: TableDefinition<'_, u128, &'static [u8]>,
    convert: impl Fn(Old) -> New,
) -> Result<(), StoreError> {
    let mut table = tx.open_table(def)?;
    let mut rows = Vec::new();
    for row in table.iter()? {
        let (key, value) = row?;
        let old: Old = codec::decode(value.value())?;
        rows.push((key.value(), codec::encode(&convert(old))?));
    }
    for (key, value) in rows {
        table.insert(key, value.as_slice())?;
    }
    Ok(())
}

/// `Webhook` as format version 1 stored it.
#[derive(Serialize, Deserialize)]
pub(super) struct WebhookV1 {
    pub(super) id: uuid::Uuid,
    pub(super) name: String,
    pub(super) description: String,
    pub(super) retention_days: u32,
    pub(super) created_at: Millis,
}

/// `Target` as format version 1 stored it.
#[derive(Serialize, Deserialize)]
pub(super) struct TargetV1 {
    pub(super) id: uuid::Uuid,
    pub(super) webhook_id: uuid::Uuid,
    pub(super) name: String,
    pub(super) active: bool,
    pub(super) kind: TargetKindV1,
    pub(super) created_at: Millis,
}

/// `TargetKind` as format version 1 stored it (same variants, in the same order).
#[derive(Serialize, Deserialize)]
pub(super) enum TargetKindV1 {
    Http(HttpTargetV1),
    Log,
    Database,
    Slack(SlackTarget),
}

/// `Webhook` as format version 2 stored it.
#[derive(Serialize, Deserialize)]
pub(super) struct WebhookV2 {
    pub(super) id: uuid::Uuid,
    pub(super) name: String,
    pub(super) description: String,
    pub(super) retention_days: u32,
    pub(super) created_at: Millis,
    pub(super) verification: Verification,
}

/// `Target` as format version 2 stored it.
#[derive(Serialize, Deserialize)]
pub(super) struct TargetV2 {
    pub(super) id: uuid::Uuid,
    pub(super) webhook_id: uuid::Uuid,
    pub(super) name: String,
    pub(super) active: bool,
    pub(super) kind: TargetKindV2,
    pub(super) created_at: Millis,
}

/// `TargetKind` as format version 2 stored it (same variants, in the same order).
#[derive(Serialize, Deserialize)]
pub(super) enum TargetKindV2 {
    Http(HttpTargetV2),
    Log,
    Database,
    Slack(SlackTarget),
}

/// `HttpTarget` as format version 2 stored it.
#[derive(Serialize, Deserialize)]
pub(super) struct HttpTargetV2 {
    pub(super) url: String,
    pub(super) timeout_secs: u32,
    pub(super) max_retries: RetryLimit,
    pub(super) max_backoff_secs: u32,
    pub(super) max_in_flight: u32,
    pub(super) signing: Signing,
}

/// `HttpTarget` as format version 1 stored it.
#[derive(Serialize, Deserialize)]
pub(super) struct HttpTargetV1 {
    pub(super) url: String,
    pub(super) timeout_secs: u32,
    pub(super) max_retries: RetryLimit,
    pub(super) max_backoff_secs: u32,
    pub(super) max_in_flight: u32,
}

#[cfg(test)]
mod tests {
    use super::super::MainDb;
    use crate::model::{RetryLimit, TargetKind, Verification};

    /// `tests/it/fixtures/main-v1.redb` was written by webhooker 1.0.0 (main format 1): a
    /// webhook "legacy" with an http target (7 retries) and a log target.
    #[test]
    fn a_main_file_written_before_signatures_reads_and_is_migrated_once() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("webhooker.redb");
        std::fs::copy(
            concat!(
                env!("CARGO_MANIFEST_DIR"),
                "/tests/it/fixtures/main-v1.redb"
            ),
            &path,
        )
        .unwrap();
        let secret = {
            let main = MainDb::open(&path).unwrap();
            let catalog = main.catalog();
            let webhooks = catalog.webhooks();
            assert_eq!(webhooks.len(), 1);
            let webhook = &webhooks[0];
            assert_eq!(webhook.name, "legacy");
            assert_eq!(webhook.verification, Verification::None);
            assert_eq!(webhook.dedupe, None);
            let targets = catalog.targets_of(webhook.id);
            assert_eq!(targets.len(), 2);
            assert!(targets.iter().any(|t| t.kind == TargetKind::Log));
            assert!(targets.iter().all(|t| t.filter.is_none()));
            let http = targets
                .iter()
                .find_map(|t| match &t.kind {
                    TargetKind::Http(h) => Some(h.clone()),
                    _ => None,
                })
                .unwrap();
            assert_eq!(http.url, "http://127.0.0.1:9/legacy");
            assert_eq!(http.max_retries, RetryLimit::Limited(7));
            assert!(!http.signing.enabled, "signing starts off for old targets");
            assert_eq!(http.signing.secret.bytes().len(), 32);
            assert!(http.signing.previous.is_none());
            assert!(http.transform.is_empty());
            http.signing.secret
        };
        // Opened again, the file is at the current version: nothing is migrated twice.
        let main = MainDb::open(&path).unwrap();
        let catalog = main.catalog();
        let id = catalog.webhooks()[0].id;
        let again = catalog
            .targets_of(id)
            .iter()
            .find_map(|t| match &t.kind {
                TargetKind::Http(h) => Some(h.signing.secret.clone()),
                _ => None,
            })
            .unwrap();
        assert_eq!(again, secret);
    }
}
