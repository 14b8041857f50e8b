//! The main file `webhooker.redb`: users, API keys, sessions, webhooks, entrypoints,
//! targets and settings. Every write is its own `Durability::Immediate` transaction;
//! configuration writes also rebuild the [`Catalog`] snapshot.

use std::collections::HashMap;
use std::path::Path;
use std::sync::{Arc, Mutex, RwLock};

use redb::{
    Database, ReadTransaction, ReadableDatabase, ReadableTable, TableDefinition, WriteTransaction,
};
use serde::{Serialize, de::DeserializeOwned};
use uuid::Uuid;

use super::catalog::Catalog;
use super::{MAIN_FORMAT_VERSION, MAIN_OLDEST_READABLE, StoreError, check_format_version};
use super::{codec, migrate};
use crate::model::{ApiKey, Entrypoint, Millis, Session, Target, User, Webhook};

const SETTINGS: TableDefinition<'static, &str, &[u8]> = TableDefinition::new("settings");
const USERS: TableDefinition<'static, u128, &[u8]> = TableDefinition::new("users");
const USERNAMES: TableDefinition<'static, &str, u128> = TableDefinition::new("usernames");
const API_KEYS: TableDefinition<'static, u128, &[u8]> = TableDefinition::new("api_keys");
/// Keyed by HMAC(session key, cookie token), so a copy of the file holds no usable cookie.
const SESSIONS: TableDefinition<'static, &[u8], &[u8]> = TableDefinition::new("sessions");
const WEBHOOKS: TableDefinition<'static, u128, &[u8]> = TableDefinition::new("webhooks");
const ENTRYPOINTS: TableDefinition<'static, u128, &[u8]> = TableDefinition::new("entrypoints");
const TARGETS: TableDefinition<'static, u128, &[u8]> = TableDefinition::new("targets");
/// Target id → when it was paused. Operational state, apart from the target's record: a
/// pause or resume rewrites no configuration, and a file without the table (written
/// before pausing existed) simply has no paused target.
const PAUSED_TARGETS: TableDefinition<'static, u128, i64> = TableDefinition::new("paused_targets");

const FORMAT_KEY: &str = "format_version";
const SESSION_KEY: &str = "session_key";

/// Handle on the main file.
pub struct MainDb {
    db: Database,
    catalog: RwLock<Arc<Catalog>>,
    /// Serialises configuration commits with their catalog rebuild, so snapshots never go
    /// backwards.
    config_lock: Mutex<()>,
}

impl MainDb {
    /// Opens or creates the file, checks its format version and loads the catalog.
    pub(crate) fn open(path: &Path) -> Result<MainDb, StoreError> {
        // Configuration is small; a modest cache keeps RSS predictable.
        let db = match Database::builder()
            .set_cache_size(8 * 1024 * 1024)
            .create(path)
        {
            Err(redb::DatabaseError::DatabaseAlreadyOpen) => {
                return Err(StoreError::InUse(path.to_path_buf()));
            }
            other => other?,
        };
        let tx = db.begin_write()?;
        {
            let mut settings = tx.open_table(SETTINGS)?;
            let found = settings.get(FORMAT_KEY)?.map(|v| decode_version(v.value()));
            if check_format_version(path, found, MAIN_FORMAT_VERSION, MAIN_OLDEST_READABLE)? {
                if let Some(found) = found {
                    migrate::upgrade(&tx, found, WEBHOOKS, TARGETS)?;
                }
                settings.insert(FORMAT_KEY, MAIN_FORMAT_VERSION.to_le_bytes().as_slice())?;
            }
            // Create every table so readers never meet a missing one.
            tx.open_table(USERS)?;
            tx.open_table(USERNAMES)?;
            tx.open_table(API_KEYS)?;
            tx.open_table(SESSIONS)?;
            tx.open_table(WEBHOOKS)?;
            tx.open_table(ENTRYPOINTS)?;
            tx.open_table(TARGETS)?;
            tx.open_table(PAUSED_TARGETS)?;
        }
        tx.commit()?;
        let main = MainDb {
            db,
            catalog: RwLock::new(Arc::new(Catalog::default())),
            config_lock: Mutex::new(()),
        };
        main.reload_catalog()?;
        Ok(main)
    }

    /// The current configuration snapshot.
    pub fn catalog(&self) -> Arc<Catalog> {
        self.catalog
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    fn reload_catalog(&self) -> Result<(), StoreError> {
        let rx = self.db.begin_read()?;
        let catalog = Catalog::build(
            all(&rx, WEBHOOKS)?,
            all(&rx, ENTRYPOINTS)?,
            all(&rx, TARGETS)?,
            paused(&rx)?,
        );
        *self.catalog.write().unwrap_or_else(|p| p.into_inner()) = Arc::new(catalog);
        Ok(())
    }

    fn write<R>(
        &self,
        f: impl FnOnce(&WriteTransaction) -> Result<R, StoreError>,
    ) -> Result<R, StoreError> {
        let tx = self.db.begin_write()?;
        let r = f(&tx)?;
        tx.commit()?;
        Ok(r)
    }

    /// A write to webhooks/entrypoints/targets: commits, then applies the same change to a
    /// copy of the catalog (`edit`, given the write's result) and publishes it. Under
    /// `config_lock`, the current catalog is exactly what the file holds.
    fn write_config<R>(
        &self,
        f: impl FnOnce(&WriteTransaction, &Catalog) -> Result<R, StoreError>,
        edit: impl FnOnce(&R, &mut Catalog),
    ) -> Result<R, StoreError> {
        let _guard = self.config_lock.lock().unwrap_or_else(|p| p.into_inner());
        let current = self.catalog();
        let r = self.write(|tx| f(tx, &current))?;
        let mut next = Catalog::clone(&current);
        edit(&r, &mut next);
        *self.catalog.write().unwrap_or_else(|p| p.into_inner()) = Arc::new(next);
        Ok(r)
    }

    // ---- settings ----

    /// The session key, generated (64 random bytes) and stored on first call.
    pub fn session_key(&self) -> Result<Vec<u8>, StoreError> {
        self.write(|tx| {
            let mut t = tx.open_table(SETTINGS)?;
            if let Some(v) = t.get(SESSION_KEY)? {
                return Ok(v.value().to_vec());
            }
            let mut key = vec![0u8; 64];
            rand::fill(&mut key[..]);
            t.insert(SESSION_KEY, key.as_slice())?;
            Ok(key)
        })
    }

    // ---- users ----

    /// Number of users.
    pub fn user_count(&self) -> Result<u64, StoreError> {
        use redb::ReadableTableMetadata;
        let rx = self.db.begin_read()?;
        Ok(rx.open_table(USERS)?.len()?)
    }

    /// Inserts a user unless the username is taken; returns whether it was inserted.
    pub fn insert_user(&self, user: &User) -> Result<bool, StoreError> {
        self.write(|tx| {
            let mut names = tx.open_table(USERNAMES)?;
            if names.get(user.username.as_str())?.is_some() {
                return Ok(false);
            }
            names.insert(user.username.as_str(), user.id.as_u128())?;
            put(&mut tx.open_table(USERS)?, user.id, user)?;
            Ok(true)
        })
    }

    /// A user by id.
    pub fn user(&self, id: Uuid) -> Result<Option<User>, StoreError> {
        get(&self.db.begin_read()?, USERS, id)
    }

    /// A user by username.
    pub fn user_by_name(&self, username: &str) -> Result<Option<User>, StoreError> {
        let rx = self.db.begin_read()?;
        let id = rx.open_table(USERNAMES)?.get(username)?.map(|v| v.value());
        match id {
            Some(id) => get(&rx, USERS, Uuid::from_u128(id)),
            None => Ok(None),
        }
    }

    /// Replaces a user's password hash and ends all of their sessions, and with
    /// `revoke_api_keys` all of their API keys too, in one transaction.
    pub fn set_password(
        &self,
        user_id: Uuid,
        password_hash: String,
        revoke_api_keys: bool,
    ) -> Result<(), StoreError> {
        self.write(|tx| {
            let mut users = tx.open_table(USERS)?;
            let Some(mut user) = get_in::<User>(&users, user_id)? else {
                return Ok(());
            };
            user.password_hash = password_hash;
            put(&mut users, user_id, &user)?;
            if revoke_api_keys {
                remove_children(tx, API_KEYS, |k: &ApiKey| k.user_id == user_id)?;
            }
            delete_sessions_of(tx, user_id)
        })
    }

    // ---- sessions ----

    /// Stores a session under its keyed hash, dropping expired sessions on the way.
    pub fn insert_session(&self, key: &[u8], session: &Session) -> Result<(), StoreError> {
        self.write(|tx| {
            let mut t = tx.open_table(SESSIONS)?;
            let now = session.created_at;
            t.retain(|_, v| {
                codec::decode::<Session>(v)
                    .map(|s| s.expires_at > now)
                    .unwrap_or(false)
            })?;
            t.insert(key, codec::encode(session)?.as_slice())?;
            Ok(())
        })
    }

    /// A session by keyed hash.
    pub fn session(&self, key: &[u8]) -> Result<Option<Session>, StoreError> {
        let rx = self.db.begin_read()?;
        let t = rx.open_table(SESSIONS)?;
        let v = t.get(key)?;
        v.map(|v| codec::decode(v.value())).transpose()
    }

    /// Ends one session.
    pub fn delete_session(&self, key: &[u8]) -> Result<(), StoreError> {
        self.write(|tx| {
            tx.open_table(SESSIONS)?.remove(key)?;
            Ok(())
        })
    }

    // ---- API keys ----

    /// Stores a new API key.
    pub fn insert_api_key(&self, key: &ApiKey) -> Result<(), StoreError> {
        self.write(|tx| put(&mut tx.open_table(API_KEYS)?, key.id, key))
    }

    /// One API key.
    pub fn api_key(&self, id: Uuid) -> Result<Option<ApiKey>, StoreError> {
        get(&self.db.begin_read()?, API_KEYS, id)
    }

    /// A user's API keys, oldest first.
    pub fn api_keys_of(&self, user_id: Uuid) -> Result<Vec<ApiKey>, StoreError> {
        let mut keys: Vec<ApiKey> = all(&self.db.begin_read()?, API_KEYS)?;
        keys.retain(|k| k.user_id == user_id);
        keys.sort_by_key(|k| k.created_at);
        Ok(keys)
    }

    /// Revokes an API key; returns whether it existed and belonged to the user.
    pub fn delete_api_key(&self, user_id: Uuid, id: Uuid) -> Result<bool, StoreError> {
        self.write(|tx| {
            let mut t = tx.open_table(API_KEYS)?;
            match get_in::<ApiKey>(&t, id)? {
                Some(k) if k.user_id == user_id => {
                    t.remove(id.as_u128())?;
                    Ok(true)
                }
                _ => Ok(false),
            }
        })
    }

    /// Records a key's last use.
    pub fn touch_api_key(&self, id: Uuid, at: i64) -> Result<(), StoreError> {
        self.write(|tx| {
            let mut t = tx.open_table(API_KEYS)?;
            if let Some(mut k) = get_in::<ApiKey>(&t, id)? {
                k.last_used_at = Some(at);
                put(&mut t, id, &k)?;
            }
            Ok(())
        })
    }

    // ---- webhooks, entrypoints, targets ----

    /// Creates a webhook with its first entrypoint.
    pub fn create_webhook(
        &self,
        webhook: &Webhook,
        entrypoint: &Entrypoint,
    ) -> Result<(), StoreError> {
        self.write_config(
            |tx, _| {
                put(&mut tx.open_table(WEBHOOKS)?, webhook.id, webhook)?;
                put(&mut tx.open_table(ENTRYPOINTS)?, entrypoint.id, entrypoint)
            },
            |_, c| {
                c.put_webhook(webhook.clone());
                c.put_entrypoint(entrypoint.clone());
            },
        )
    }

    /// Overwrites a webhook's record; false, writing nothing, if it was deleted meanwhile
    /// (an update racing a delete must not bring it back).
    pub fn update_webhook(&self, webhook: &Webhook) -> Result<bool, StoreError> {
        self.write_config(
            |tx, _| replace(&mut tx.open_table(WEBHOOKS)?, webhook.id, webhook),
            |&done, c| {
                if done {
                    c.put_webhook(webhook.clone());
                }
            },
        )
    }

    /// Removes a webhook with its entrypoints and targets; returns whether it existed.
    pub fn delete_webhook(&self, id: Uuid) -> Result<bool, StoreError> {
        self.write_config(
            |tx, current| {
                let existed = tx.open_table(WEBHOOKS)?.remove(id.as_u128())?.is_some();
                // The catalog lists the children, so nothing else needs to be read.
                let mut entrypoints = tx.open_table(ENTRYPOINTS)?;
                for e in current.entrypoints_of(id) {
                    entrypoints.remove(e.id.as_u128())?;
                }
                let mut targets = tx.open_table(TARGETS)?;
                let mut paused = tx.open_table(PAUSED_TARGETS)?;
                for t in current.targets_of(id) {
                    targets.remove(t.id.as_u128())?;
                    paused.remove(t.id.as_u128())?;
                }
                Ok(existed)
            },
            |_, c| c.remove_webhook(id),
        )
    }

    /// Adds an entrypoint; false, writing nothing, if its webhook was deleted meanwhile.
    pub fn insert_entrypoint(&self, entrypoint: &Entrypoint) -> Result<bool, StoreError> {
        self.write_config(
            |tx, _| {
                put_child(
                    tx,
                    ENTRYPOINTS,
                    entrypoint.webhook_id,
                    entrypoint.id,
                    entrypoint,
                )
            },
            |&done, c| {
                if done {
                    c.put_entrypoint(entrypoint.clone());
                }
            },
        )
    }

    /// Overwrites an entrypoint; false, writing nothing, if it was deleted meanwhile.
    pub fn update_entrypoint(&self, entrypoint: &Entrypoint) -> Result<bool, StoreError> {
        self.write_config(
            |tx, _| replace(&mut tx.open_table(ENTRYPOINTS)?, entrypoint.id, entrypoint),
            |&done, c| {
                if done {
                    c.put_entrypoint(entrypoint.clone());
                }
            },
        )
    }

    /// Removes an entrypoint; returns whether it existed.
    pub fn delete_entrypoint(&self, id: Uuid) -> Result<bool, StoreError> {
        self.write_config(
            |tx, _| Ok(tx.open_table(ENTRYPOINTS)?.remove(id.as_u128())?.is_some()),
            |_, c| c.remove_entrypoint(id),
        )
    }

    /// Adds a target; false, writing nothing, if its webhook was deleted meanwhile.
    pub fn insert_target(&self, target: &Target) -> Result<bool, StoreError> {
        self.write_config(
            |tx, _| put_child(tx, TARGETS, target.webhook_id, target.id, target),
            |&done, c| {
                if done {
                    c.put_target(target.clone());
                }
            },
        )
    }

    /// Changes a target with `change`, applied to its current version under the lock that
    /// orders configuration writes, so no configuration write made meanwhile is undone;
    /// `None`, writing nothing, if it does not exist.
    pub fn modify_target(
        &self,
        id: Uuid,
        change: impl FnOnce(&mut Target),
    ) -> Result<Option<Target>, StoreError> {
        self.write_config(
            |tx, current| {
                let Some(mut target) = current.target(id).map(|t| Target::clone(t)) else {
                    return Ok(None);
                };
                change(&mut target);
                Ok(replace(&mut tx.open_table(TARGETS)?, id, &target)?.then_some(target))
            },
            |done, c| {
                if let Some(target) = done {
                    c.put_target(target.clone());
                }
            },
        )
    }

    /// Writes `edited` over the target if the catalog still holds `read`, the version it
    /// was made from (compare and swap: an edit built from a copy, with checks that cannot
    /// run under the configuration lock, never undoes a write made since the copy).
    pub fn replace_target(
        &self,
        read: &Arc<Target>,
        edited: &Target,
    ) -> Result<Replaced, StoreError> {
        self.write_config(
            |tx, current| match current.target(read.id) {
                None => Ok(Replaced::Gone),
                Some(now) if !Arc::ptr_eq(now, read) => Ok(Replaced::Changed),
                Some(_) => Ok(if replace(&mut tx.open_table(TARGETS)?, read.id, edited)? {
                    Replaced::Done
                } else {
                    Replaced::Gone
                }),
            },
            |done, c| {
                if *done == Replaced::Done {
                    c.put_target(edited.clone());
                }
            },
        )
    }

    /// Removes a target (and its pause); returns whether it existed.
    pub fn delete_target(&self, id: Uuid) -> Result<bool, StoreError> {
        self.write_config(
            |tx, _| {
                tx.open_table(PAUSED_TARGETS)?.remove(id.as_u128())?;
                Ok(tx.open_table(TARGETS)?.remove(id.as_u128())?.is_some())
            },
            |_, c| c.remove_target(id),
        )
    }

    /// Pauses (`Some(since)`) or resumes (`None`) a target; false, writing nothing, if it
    /// was deleted meanwhile. Pausing a paused target keeps its first time.
    pub fn set_target_paused(&self, id: Uuid, since: Option<Millis>) -> Result<bool, StoreError> {
        let (done, _) = self.write_config(
            |tx, _| {
                if !exists(&tx.open_table(TARGETS)?, id)? {
                    return Ok((false, None));
                }
                let mut paused = tx.open_table(PAUSED_TARGETS)?;
                let kept = match since {
                    Some(at) => {
                        let first = paused.get(id.as_u128())?.map(|v| v.value());
                        if first.is_none() {
                            paused.insert(id.as_u128(), at)?;
                        }
                        Some(first.unwrap_or(at))
                    }
                    None => {
                        paused.remove(id.as_u128())?;
                        None
                    }
                };
                Ok((true, kept))
            },
            |&(done, kept), c| {
                if done {
                    c.set_paused(id, kept);
                }
            },
        )?;
        Ok(done)
    }
}

/// What [`MainDb::replace_target`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Replaced {
    /// The edit is written.
    Done,
    /// The target changed since it was read: nothing written.
    Changed,
    /// The target is gone: nothing written.
    Gone,
}

/// Every paused target with the time it was paused.
fn paused(rx: &ReadTransaction) -> Result<HashMap<Uuid, Millis>, StoreError> {
    let mut out = HashMap::new();
    for row in rx.open_table(PAUSED_TARGETS)?.iter()? {
        let (k, v) = row?;
        out.insert(Uuid::from_u128(k.value()), v.value());
    }
    Ok(out)
}

fn decode_version(bytes: &[u8]) -> u32 {
    bytes.try_into().map(u32::from_le_bytes).unwrap_or(u32::MAX)
}

fn put<T: Serialize>(
    table: &mut redb::Table<'_, u128, &[u8]>,
    id: Uuid,
    value: &T,
) -> Result<(), StoreError> {
    table.insert(id.as_u128(), codec::encode(value)?.as_slice())?;
    Ok(())
}

/// Overwrites the row `id` only if it exists; returns whether it did.
fn replace<T: Serialize>(
    table: &mut redb::Table<'_, u128, &[u8]>,
    id: Uuid,
    value: &T,
) -> Result<bool, StoreError> {
    if !exists(table, id)? {
        return Ok(false);
    }
    put(table, id, value)?;
    Ok(true)
}

/// Inserts `value` under `id` in `def` if its webhook `parent` still exists; returns
/// whether it did.
fn put_child<T: Serialize>(
    tx: &WriteTransaction,
    def: TableDefinition<'_, u128, &'static [u8]>,
    parent: Uuid,
    id: Uuid,
    value: &T,
) -> Result<bool, StoreError> {
    if !exists(&tx.open_table(WEBHOOKS)?, parent)? {
        return Ok(false);
    }
    put(&mut tx.open_table(def)?, id, value)?;
    Ok(true)
}

fn exists(table: &impl ReadableTable<u128, &'static [u8]>, id: Uuid) -> Result<bool, StoreError> {
    Ok(table.get(id.as_u128())?.is_some())
}

fn get_in<T: DeserializeOwned>(
    table: &impl ReadableTable<u128, &'static [u8]>,
    id: Uuid,
) -> Result<Option<T>, StoreError> {
    let v = table.get(id.as_u128())?;
    v.map(|v| codec::decode(v.value())).transpose()
}

fn get<T: DeserializeOwned>(
    rx: &ReadTransaction,
    def: TableDefinition<'_, u128, &'static [u8]>,
    id: Uuid,
) -> Result<Option<T>, StoreError> {
    get_in(&rx.open_table(def)?, id)
}

fn all<T: DeserializeOwned>(
    rx: &ReadTransaction,
    def: TableDefinition<'_, u128, &'static [u8]>,
) -> Result<Vec<T>, StoreError> {
    let t = rx.open_table(def)?;
    let mut out = Vec::new();
    for row in t.iter()? {
        let (_, v) = row?;
        out.push(codec::decode(v.value())?);
    }
    Ok(out)
}

fn remove_children<T: DeserializeOwned>(
    tx: &WriteTransaction,
    def: TableDefinition<'_, u128, &'static [u8]>,
    belongs: impl Fn(&T) -> bool,
) -> Result<(), StoreError> {
    let mut t = tx.open_table(def)?;
    // Undecodable rows are kept: deleting data we cannot read is never the safe default.
    t.retain(|_, v| codec::decode::<T>(v).map(|x| !belongs(&x)).unwrap_or(true))?;
    Ok(())
}

fn delete_sessions_of(tx: &WriteTransaction, user_id: Uuid) -> Result<(), StoreError> {
    let mut t = tx.open_table(SESSIONS)?;
    t.retain(|_, v| {
        codec::decode::<Session>(v)
            .map(|s| s.user_id != user_id)
            .unwrap_or(false)
    })?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{TargetKind, Verification};

    /// Every record of a catalog in a comparable form: ids in list order, records by `Debug`.
    fn snapshot(c: &Catalog) -> Vec<String> {
        let mut out = Vec::new();
        for w in c.webhooks() {
            out.push(format!("{w:?}"));
            for e in c.entrypoints_of(w.id) {
                out.push(format!("{e:?} {:?}", c.entrypoint(e.id).map(|x| x.id)));
            }
            for t in c.targets_of(w.id) {
                let paused = c.paused_since(t.id);
                out.push(format!(
                    "{t:?} {:?} {paused:?}",
                    c.target(t.id).map(|x| x.id)
                ));
            }
        }
        out
    }

    #[test]
    fn edited_catalog_matches_one_built_from_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("main.redb");
        let db = MainDb::open(&path).unwrap();
        let mut webhooks = Vec::new();
        for i in 0..5i64 {
            let w = Webhook {
                id: Uuid::now_v7(),
                name: format!("w{i}"),
                description: String::new(),
                retention_days: 0,
                // Out of order on purpose: lists follow creation time, not insertion.
                created_at: (i * 7) % 5,
                verification: Verification::None,
                dedupe: None,
            };
            let e = Entrypoint {
                id: Uuid::now_v7(),
                webhook_id: w.id,
                description: String::new(),
                active: true,
                created_at: i,
            };
            db.create_webhook(&w, &e).unwrap();
            for j in 0..3i64 {
                let t = Target {
                    id: Uuid::now_v7(),
                    webhook_id: w.id,
                    name: format!("t{j}"),
                    active: true,
                    kind: TargetKind::Log,
                    created_at: 3 - j,
                    filter: None,
                };
                assert!(db.insert_target(&t).unwrap());
            }
            webhooks.push(w);
        }
        let mut renamed = webhooks[1].clone();
        renamed.name = "renamed".into();
        assert!(db.update_webhook(&renamed).unwrap());
        let target = db.catalog().targets_of(webhooks[2].id)[1].id;
        let modified = db.modify_target(target, |t| t.active = false).unwrap();
        assert!(modified.is_some_and(|t| !t.active));
        assert!(db.modify_target(Uuid::now_v7(), |_| {}).unwrap().is_none());
        // An edit built from a copy lands only while the copy is current.
        let read = db.catalog().targets_of(webhooks[2].id)[2].clone();
        let mut edited = Target::clone(&read);
        edited.name = "edited".into();
        db.modify_target(read.id, |t| t.created_at += 1).unwrap();
        assert_eq!(
            db.replace_target(&read, &edited).unwrap(),
            Replaced::Changed
        );
        let read = db.catalog().target(read.id).unwrap().clone();
        let mut edited = Target::clone(&read);
        edited.name = "edited".into();
        assert_eq!(db.replace_target(&read, &edited).unwrap(), Replaced::Done);
        let other = db.catalog().targets_of(webhooks[2].id)[0].clone();
        assert!(db.delete_target(other.id).unwrap());
        assert_eq!(db.replace_target(&other, &other).unwrap(), Replaced::Gone);
        let first = db.catalog().targets_of(webhooks[3].id)[0].id;
        assert!(db.set_target_paused(first, Some(5)).unwrap());
        assert!(db.delete_target(first).unwrap());
        let paused = db.catalog().targets_of(webhooks[4].id)[0].id;
        assert!(db.set_target_paused(paused, Some(7)).unwrap());
        assert!(
            db.set_target_paused(paused, Some(9)).unwrap(),
            "a second pause keeps the first time"
        );
        let resumed = db.catalog().targets_of(webhooks[4].id)[1].id;
        assert!(db.set_target_paused(resumed, Some(8)).unwrap());
        assert!(db.set_target_paused(resumed, None).unwrap());
        let gone_with_webhook = db.catalog().targets_of(webhooks[0].id)[0].id;
        assert!(db.set_target_paused(gone_with_webhook, Some(1)).unwrap());
        let extra = Entrypoint {
            id: Uuid::now_v7(),
            webhook_id: webhooks[2].id,
            description: "second".into(),
            active: false,
            created_at: 0,
        };
        assert!(db.insert_entrypoint(&extra).unwrap());
        assert!(db.delete_webhook(webhooks[0].id).unwrap());
        // A child of a deleted webhook is refused and leaves the catalog alone.
        let orphan = Target {
            id: Uuid::now_v7(),
            webhook_id: webhooks[0].id,
            name: "orphan".into(),
            active: true,
            kind: TargetKind::Log,
            created_at: 0,
            filter: None,
        };
        assert!(!db.insert_target(&orphan).unwrap());
        assert!(!db.set_target_paused(orphan.id, Some(1)).unwrap());

        let edited = snapshot(&db.catalog());
        assert_eq!(
            db.catalog().paused_targets().collect::<Vec<_>>(),
            vec![paused]
        );
        assert_eq!(db.catalog().paused_since(paused), Some(7));
        assert_eq!(db.catalog().webhooks().len(), 4);
        assert!(db.catalog().target(orphan.id).is_none());
        drop(db);
        let reopened = MainDb::open(&path).unwrap();
        assert_eq!(edited, snapshot(&reopened.catalog()));
    }
}
