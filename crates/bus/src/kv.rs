//! Key-value buckets (JetStream KV): records that are read and changed as a whole and watched
//! for changes (the store registry, service leases, console accounts). Buckets are declared in
//! `duellsync_events` next to the streams and created idempotently.
//!
//! Every write can be conditional on the revision the writer read (compare-and-set), so two
//! writers never overwrite each other's change unseen.

use std::time::Duration;

use async_nats::jetstream::kv;
use bytes::Bytes;
use duellsync_events::KvSpec;
use futures::StreamExt;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use crate::{Bus, Error, Result};

/// One revision of a key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KvEntry {
    pub key: String,
    pub value: Bytes,
    /// The bucket-wide sequence of this revision (what a compare-and-set names).
    pub revision: u64,
    /// When it was written, Unix ms.
    pub created_ms: i64,
    /// A delete (or purge) marker: the key has no value since this revision.
    pub deleted: bool,
}

/// What a watch reports.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum KvChange {
    /// Every key's current value, after the watch (re)started: keys not in it are gone.
    Snapshot(Vec<KvEntry>),
    /// One key changed (a put or a delete marker).
    Changed(KvEntry),
}

/// Why a conditional write was refused.
#[derive(Debug, thiserror::Error)]
pub enum KvError {
    /// Someone else changed the key since it was read (or created it first): read it again.
    #[error("`{key}` was changed by someone else meanwhile (expected revision {expected:?})")]
    Conflict { key: String, expected: Option<u64> },
    #[error(transparent)]
    Bus(#[from] Error),
}

/// A key-value bucket. Cheap to clone.
#[derive(Clone)]
pub struct Kv {
    store: kv::Store,
    js: async_nats::jetstream::Context,
    name: &'static str,
}

impl std::fmt::Debug for Kv {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Kv").field("name", &self.name).finish()
    }
}

fn ms(t: time::OffsetDateTime) -> i64 {
    (t.unix_timestamp_nanos() / 1_000_000) as i64
}

fn entry(e: kv::Entry) -> KvEntry {
    KvEntry {
        key: e.key,
        value: e.value,
        revision: e.revision,
        created_ms: ms(e.created),
        deleted: !matches!(e.operation, kv::Operation::Put),
    }
}

fn unavailable(name: &str, e: impl std::fmt::Display) -> Error {
    Error::Unavailable(format!("key-value bucket {name}: {e}"))
}

impl Bus {
    /// Opens the bucket, creating it when it is missing; safe from every process at once.
    ///
    /// An existing bucket is taken as it is, as [`Bus::ensure_stream`] takes a stream: changing
    /// a bucket's configuration is an operator's act (the services' NATS credentials may only
    /// look it up and create it).
    pub async fn ensure_kv(&self, spec: &KvSpec) -> Result<Kv> {
        let stream = format!("KV_{}", spec.name);
        let config = kv::Config {
            bucket: spec.name.to_owned(),
            description: spec.description.to_owned(),
            history: spec.history,
            max_age: spec.max_age,
            storage: async_nats::jetstream::stream::StorageType::File,
            num_replicas: self.options.replicas,
            ..Default::default()
        };
        let mut last = String::new();
        // Two processes starting at once may race on creation; the loser finds the bucket.
        for _ in 0..5 {
            let found = self
                .api(
                    format!("$JS.API.STREAM.INFO.{stream}"),
                    self.js.get_key_value(spec.name),
                )
                .await?;
            let store = match found {
                Ok(store) => Ok(store),
                Err(_) => self
                    .api(
                        format!("$JS.API.STREAM.CREATE.{stream}"),
                        self.js.create_key_value(config.clone()),
                    )
                    .await?
                    .map_err(|e| e.to_string()),
            };
            match store {
                Ok(store) => {
                    return Ok(Kv {
                        store,
                        js: self.js.clone(),
                        name: spec.name,
                    })
                }
                Err(e) => {
                    last = e;
                    tokio::time::sleep(Duration::from_millis(200)).await;
                }
            }
        }
        Err(Error::Stream {
            stream,
            reason: last,
        })
    }

    /// Opens a bucket that exists (tools that must not create it).
    pub async fn kv(&self, spec: &KvSpec) -> Result<Kv> {
        let store = self
            .js
            .get_key_value(spec.name)
            .await
            .map_err(|e| Error::Stream {
                stream: format!("KV_{}", spec.name),
                reason: e.to_string(),
            })?;
        Ok(Kv {
            store,
            js: self.js.clone(),
            name: spec.name,
        })
    }
}

impl Kv {
    pub fn name(&self) -> &str {
        self.name
    }

    /// The current value of a key; `None` when it never had one or was deleted.
    pub async fn get(&self, key: &str) -> Result<Option<KvEntry>> {
        match self.store.entry(key).await {
            Ok(Some(e)) if matches!(e.operation, kv::Operation::Put) => Ok(Some(entry(e))),
            Ok(_) => Ok(None),
            Err(e) => Err(unavailable(self.name, e)),
        }
    }

    /// Every revision the bucket still keeps of a key, oldest first (delete markers too).
    pub async fn history(&self, key: &str) -> Result<Vec<KvEntry>> {
        let mut h = match self.store.history(key).await {
            Ok(h) => h,
            // No message on the key's subject: no history.
            Err(e) if e.to_string().to_lowercase().contains("no message") => return Ok(Vec::new()),
            Err(e) => return Err(unavailable(self.name, e)),
        };
        let mut out = Vec::new();
        while let Some(e) = h.next().await {
            match e {
                Ok(e) => out.push(entry(e)),
                Err(e) => return Err(unavailable(self.name, e)),
            }
        }
        Ok(out)
    }

    /// The keys that have a value.
    pub async fn keys(&self) -> Result<Vec<String>> {
        let mut keys = match self.store.keys().await {
            Ok(k) => k,
            Err(e) => return Err(unavailable(self.name, e)),
        };
        let mut out = Vec::new();
        while let Some(k) = keys.next().await {
            out.push(k.map_err(|e| unavailable(self.name, e))?);
        }
        out.sort();
        Ok(out)
    }

    /// Every key's current value, by key.
    pub async fn entries(&self) -> Result<Vec<KvEntry>> {
        let mut out = Vec::new();
        for k in self.keys().await? {
            if let Some(e) = self.get(&k).await? {
                out.push(e);
            }
        }
        Ok(out)
    }

    /// Writes a key only if it has no value yet; returns the new revision.
    pub async fn create(&self, key: &str, value: Bytes) -> std::result::Result<u64, KvError> {
        self.store.create(key, value).await.map_err(|e| {
            if matches!(e.kind(), kv::CreateErrorKind::AlreadyExists) {
                KvError::Conflict {
                    key: key.to_owned(),
                    expected: None,
                }
            } else {
                KvError::Bus(unavailable(self.name, e))
            }
        })
    }

    /// Writes a key only if its latest revision is still `expected`; returns the new revision.
    pub async fn update(
        &self,
        key: &str,
        value: Bytes,
        expected: u64,
    ) -> std::result::Result<u64, KvError> {
        self.store.update(key, value, expected).await.map_err(|e| {
            if matches!(e.kind(), kv::UpdateErrorKind::WrongLastRevision) {
                KvError::Conflict {
                    key: key.to_owned(),
                    expected: Some(expected),
                }
            } else {
                KvError::Bus(unavailable(self.name, e))
            }
        })
    }

    /// Creates (`expected` = None) or updates (compare-and-set on `expected`).
    pub async fn write(
        &self,
        key: &str,
        value: Bytes,
        expected: Option<u64>,
    ) -> std::result::Result<u64, KvError> {
        match expected {
            None => self.create(key, value).await,
            Some(rev) => self.update(key, value, rev).await,
        }
    }

    /// Writes a key whatever it holds (records nobody else writes, e.g. a session).
    pub async fn put(&self, key: &str, value: Bytes) -> Result<u64> {
        self.store
            .put(key, value)
            .await
            .map_err(|e| unavailable(self.name, e))
    }

    /// Deletes a key (a delete marker; the history stays), only if its latest revision is
    /// still `expected` when given.
    pub async fn delete(
        &self,
        key: &str,
        expected: Option<u64>,
    ) -> std::result::Result<(), KvError> {
        self.store
            .delete_expect_revision(key, expected)
            .await
            .map_err(|e| {
                let text = e.to_string().to_lowercase();
                if expected.is_some()
                    && (text.contains("wrong last sequence") || text.contains("10071"))
                {
                    KvError::Conflict {
                        key: key.to_owned(),
                        expected,
                    }
                } else {
                    KvError::Bus(unavailable(self.name, e))
                }
            })
    }

    /// Watches every key: first a [`KvChange::Snapshot`] of the current values, then each
    /// change. When the connection is lost the watch starts again by itself (a new snapshot),
    /// so a watcher only has to apply what it gets; nothing is missed across a broker restart.
    pub fn watch(&self, shutdown: CancellationToken) -> mpsc::Receiver<KvChange> {
        let (tx, rx) = mpsc::channel(256);
        let kv = self.clone();
        tokio::spawn(async move {
            let mut backoff = Duration::from_millis(100);
            while !shutdown.is_cancelled() {
                match kv.watch_once(&tx, &shutdown).await {
                    Ok(()) => return,
                    Err(e) => {
                        tracing::warn!(bucket = kv.name, error = %e, "watch interrupted; starting again");
                    }
                }
                if tx.is_closed() {
                    return;
                }
                tokio::select! {
                    _ = shutdown.cancelled() => return,
                    _ = tokio::time::sleep(backoff) => {}
                }
                backoff = (backoff * 2).min(Duration::from_secs(2));
            }
        });
        rx
    }

    /// One watch: snapshot, then changes until the stream breaks (`Err`) or the watcher is
    /// gone or shut down (`Ok`).
    async fn watch_once(
        &self,
        tx: &mpsc::Sender<KvChange>,
        shutdown: &CancellationToken,
    ) -> Result<()> {
        // Changes after `last` come from the watch; the snapshot may already hold some of them
        // (a watcher ignores revisions it has seen).
        // (`kv::Store::status` answers from the info cached at opening: ask the server.)
        let last = self
            .js
            .get_stream(format!("KV_{}", self.name))
            .await
            .map_err(|e| unavailable(self.name, e))?
            .cached_info()
            .state
            .last_sequence;
        let snapshot = self.entries().await?;
        let mut watch = self
            .store
            .watch_all_from_revision(last + 1)
            .await
            .map_err(|e| unavailable(self.name, e))?;
        if tx.send(KvChange::Snapshot(snapshot)).await.is_err() {
            return Ok(());
        }
        loop {
            let next = tokio::select! {
                _ = shutdown.cancelled() => return Ok(()),
                n = watch.next() => n,
            };
            match next {
                Some(Ok(e)) => {
                    if tx.send(KvChange::Changed(entry(e))).await.is_err() {
                        return Ok(());
                    }
                }
                Some(Err(e)) => return Err(unavailable(self.name, e)),
                None => return Err(unavailable(self.name, "watch ended")),
            }
        }
    }
}
