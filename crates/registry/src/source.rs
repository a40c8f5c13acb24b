//! Where a service's stores come from: fixed (tests, tools) or the registry, watched. The
//! watch turns bucket changes into "this store's settings are now X" and "this store is gone
//! (deleted, or moved to another shard)", resolving each record with the process's own
//! environment and sealing keys. A record this process cannot use (a variable it lacks) is
//! logged and the last good settings stay in force.

use std::collections::BTreeMap;
use std::sync::Arc;

use duellsync_bus::{Bus, KvChange, KvEntry};
use duellsync_events::KV_STORES;
use duellsync_settings::{Needs, StoreSettings, Stores};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use crate::record::StoreRecord;
use crate::seal::Keyring;

/// The registry, as one service instance reads it.
#[derive(Debug, Clone)]
pub struct RegistrySource {
    /// Serve the stores of this shard; empty = every store.
    pub shard: String,
    pub keys: Keyring,
    /// The process environment, for `{ env = … }` secrets.
    pub env: Vec<(String, String)>,
    /// Which secrets this service resolves.
    pub needs: Needs,
}

/// Where a service's stores come from.
#[derive(Debug, Clone)]
pub enum StoreSource {
    /// These stores, started once and never changed (tests, tools).
    Fixed(Stores),
    /// The registry: stores come, change and go while the service runs.
    Registry(RegistrySource),
}

impl From<Stores> for StoreSource {
    fn from(s: Stores) -> Self {
        StoreSource::Fixed(s)
    }
}

/// A change of the stores a service serves.
#[derive(Debug, Clone)]
pub enum StoreUpdate {
    Set(Arc<StoreSettings>),
    Removed(String),
    /// Every store of a (re)started watch has been reported.
    Synced,
}

impl RegistrySource {
    /// Resolves a record for this process: `None` when it belongs to another shard.
    pub fn resolve(&self, record: &StoreRecord) -> Option<Result<StoreSettings, String>> {
        if !self.shard.is_empty() && record.shard() != self.shard {
            return None;
        }
        // The record is the whole truth: no `DUELLSYNC_STORES__…` override of a pod applies.
        let env: Vec<(String, String)> = self
            .env
            .iter()
            .filter(|(k, _)| !k.starts_with("DUELLSYNC_STORES__"))
            .cloned()
            .collect();
        let parsed = duellsync_settings::parse_stores_with(
            &record.id,
            &record.id,
            &record.settings,
            &env,
            self.needs,
            &self.keys,
        );
        Some(match parsed {
            Ok(mut stores) => stores
                .stores
                .remove(&record.id)
                .ok_or_else(|| format!("record {} holds no store {}", record.id, record.id)),
            Err(e) => Err(e.to_string()),
        })
    }

    /// Watches the registry until `stop`: the stores of this shard as updates.
    pub async fn watch(
        &self,
        bus: &Bus,
        stop: CancellationToken,
    ) -> Result<mpsc::Receiver<StoreUpdate>, duellsync_bus::Error> {
        let kv = bus.ensure_kv(&KV_STORES).await?;
        let mut changes = kv.watch(stop.clone());
        let (tx, rx) = mpsc::channel(64);
        let me = self.clone();
        tokio::spawn(async move {
            // id → (revision seen, whether this instance serves it)
            let mut known: BTreeMap<String, (u64, bool)> = BTreeMap::new();
            while let Some(change) = changes.recv().await {
                let mut out = Vec::new();
                match change {
                    KvChange::Snapshot(entries) => {
                        let present: Vec<String> = entries.iter().map(|e| e.key.clone()).collect();
                        for (id, (_, served)) in known.iter_mut() {
                            if !present.contains(id) && *served {
                                *served = false;
                                out.push(StoreUpdate::Removed(id.clone()));
                            }
                        }
                        known.retain(|id, _| present.contains(id));
                        for e in entries {
                            me.apply(&e, &mut known, &mut out);
                        }
                        out.push(StoreUpdate::Synced);
                    }
                    KvChange::Changed(e) => me.apply(&e, &mut known, &mut out),
                }
                for u in out {
                    if tx.send(u).await.is_err() {
                        return;
                    }
                }
            }
        });
        Ok(rx)
    }

    fn apply(
        &self,
        e: &KvEntry,
        known: &mut BTreeMap<String, (u64, bool)>,
        out: &mut Vec<StoreUpdate>,
    ) {
        let seen = known.get(&e.key).copied();
        if seen.is_some_and(|(rev, _)| rev >= e.revision) {
            return;
        }
        let served = seen.is_some_and(|(_, s)| s);
        if e.deleted {
            known.remove(&e.key);
            if served {
                tracing::info!(store = %e.key, "store deleted from the registry; stopping it");
                out.push(StoreUpdate::Removed(e.key.clone()));
            }
            return;
        }
        let record: StoreRecord = match serde_json::from_slice(&e.value) {
            Ok(r) => r,
            Err(err) => {
                tracing::error!(store = %e.key, error = %err, "registry record unreadable; keeping the last good settings");
                known.insert(e.key.clone(), (e.revision, served));
                return;
            }
        };
        match self.resolve(&record) {
            None => {
                known.insert(e.key.clone(), (e.revision, false));
                if served {
                    tracing::info!(store = %e.key, shard = %record.shard(), "store moved to another shard; stopping it here");
                    out.push(StoreUpdate::Removed(e.key.clone()));
                }
            }
            Some(Ok(settings)) => {
                known.insert(e.key.clone(), (e.revision, true));
                out.push(StoreUpdate::Set(Arc::new(settings)));
            }
            Some(Err(err)) => {
                // e.g. a `{ env = … }` this pod lacks: refuse the revision, keep what runs.
                tracing::error!(store = %e.key, revision = e.revision, error = %err, "store settings unusable here; keeping the last good settings");
                known.insert(e.key.clone(), (e.revision, served));
            }
        }
    }
}
