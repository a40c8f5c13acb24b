//! Runs each store's tasks and restarts them when the store's settings change, so that a
//! service applies a registry change within moments and without a process restart: a toggle
//! or a rotated secret restarts that store's tasks with the new settings, a new store starts,
//! a deleted one (or one moved to another shard) stops gracefully. The other stores are not
//! touched.
//!
//! A service hands the supervisor one function that starts a store's tasks on a given
//! [`StoreRun`] (its own stop token and task tracker). Stopping a store is cancelling that
//! token and waiting for the tracker, bounded by the grace time.
//!
//! Stateful services run *exclusive*: before a store starts, the instance takes the store's
//! lease in the `duellsync_leases` bucket (`<service>.<store>`), renews it while it runs and
//! lets go when it stops. A store moved from shard A to shard B therefore starts in B only
//! after A has stopped it (or A's lease ran out because A died): never two writers of one
//! store's ledger. An instance that cannot renew its lease for longer than the lease lasts
//! stops the store, since someone else may hold it by then.

use std::collections::HashMap;
use std::future::Future;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use duellsync_bus::{Bus, Kv, KvError};
use duellsync_events::KV_LEASES;
use duellsync_settings::StoreSettings;
use futures::future::BoxFuture;
use serde::{Deserialize, Serialize};
use tokio::sync::{oneshot, watch};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::source::{StoreSource, StoreUpdate};

/// How long a lease lasts without renewal.
pub const LEASE_TTL: Duration = Duration::from_secs(15);
const RENEW_EVERY: Duration = Duration::from_secs(5);

/// One run of one store's tasks.
#[derive(Clone, Debug)]
pub struct StoreRun {
    /// Cancelled when the store stops (settings changed, store removed, shutdown).
    pub stop: CancellationToken,
    /// Spawn the store's tasks here: stopping waits for them.
    pub tracker: TaskTracker,
}

type StartFn = Arc<
    dyn Fn(Arc<StoreSettings>, StoreRun) -> BoxFuture<'static, anyhow::Result<()>> + Send + Sync,
>;

/// Runs the stores of a [`StoreSource`].
pub struct Supervisor {
    service: String,
    bus: Bus,
    exclusive: bool,
    overlap: bool,
    grace: Duration,
    holder: String,
}

#[derive(Debug, Serialize, Deserialize)]
struct LeaseValue {
    holder: String,
    expires_ms: i64,
}

impl Supervisor {
    pub fn new(service: &str, bus: Bus) -> Supervisor {
        let host = std::env::var("HOSTNAME").unwrap_or_else(|_| "local".into());
        Supervisor {
            service: service.to_owned(),
            bus,
            exclusive: false,
            overlap: false,
            grace: Duration::from_secs(20),
            holder: format!(
                "{service}@{host}/{}/{:08x}",
                std::process::id(),
                rand::random::<u32>()
            ),
        }
    }

    /// One instance at a time per store (the stateful services), through leases.
    pub fn exclusive(mut self, on: bool) -> Self {
        self.exclusive = on;
        self
    }

    /// Start a store's new run before stopping the old one (stateless services, so that no
    /// request falls between the two).
    pub fn overlap(mut self, on: bool) -> Self {
        self.overlap = on;
        self
    }

    /// How long a stopping store's tasks get to finish.
    pub fn grace(mut self, grace: Duration) -> Self {
        self.grace = grace;
        self
    }

    /// Runs until `stop`: starts every store of `source` with `start`, follows the registry,
    /// and at the end stops every store. `ready` is called once the stores known at start
    /// have been started (or are waiting for their lease).
    pub async fn run<F, Fut>(
        self,
        source: StoreSource,
        stop: CancellationToken,
        ready: impl FnOnce() + Send,
        start: F,
    ) -> anyhow::Result<()>
    where
        F: Fn(Arc<StoreSettings>, StoreRun) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = anyhow::Result<()>> + Send + 'static,
    {
        let start: StartFn = Arc::new(move |s, r| Box::pin(start(s, r)));
        match source {
            StoreSource::Fixed(stores) => {
                let mut runs = Vec::new();
                for s in stores.stores.into_values() {
                    let run = StoreRun {
                        stop: stop.child_token(),
                        tracker: TaskTracker::new(),
                    };
                    start(Arc::new(s), run.clone()).await?;
                    runs.push(run);
                }
                ready();
                stop.cancelled().await;
                for run in runs {
                    stop_run(&run, self.grace).await;
                }
                Ok(())
            }
            StoreSource::Registry(registry) => {
                let mut updates = registry.watch(&self.bus, stop.clone()).await?;
                let leases = if self.exclusive {
                    Some(self.bus.ensure_kv(&KV_LEASES).await?)
                } else {
                    None
                };
                let inner = Arc::new(Inner {
                    service: self.service,
                    holder: self.holder,
                    overlap: self.overlap,
                    grace: self.grace,
                    leases,
                    start,
                });
                let runners = TaskTracker::new();
                let mut stores: HashMap<String, watch::Sender<Option<Arc<StoreSettings>>>> =
                    HashMap::new();
                let mut ready = Some(ready);
                let mut firsts: Vec<oneshot::Receiver<()>> = Vec::new();
                loop {
                    let update = tokio::select! {
                        _ = stop.cancelled() => break,
                        u = updates.recv() => u,
                    };
                    let Some(update) = update else { break };
                    match update {
                        StoreUpdate::Set(settings) => {
                            let id = settings.id.clone();
                            match stores.get(&id) {
                                Some(tx) => {
                                    tx.send_replace(Some(settings));
                                }
                                None => {
                                    let (tx, rx) = watch::channel(Some(settings));
                                    let (first_tx, first_rx) = oneshot::channel();
                                    firsts.push(first_rx);
                                    runners.spawn(inner.clone().runner(
                                        id.clone(),
                                        rx,
                                        stop.clone(),
                                        first_tx,
                                    ));
                                    stores.insert(id, tx);
                                }
                            }
                        }
                        StoreUpdate::Removed(id) => {
                            if let Some(tx) = stores.get(&id) {
                                tx.send_replace(None);
                            }
                        }
                        StoreUpdate::Synced => {
                            if let Some(ready) = ready.take() {
                                for f in firsts.drain(..) {
                                    let _ = f.await;
                                }
                                ready();
                            }
                        }
                    }
                }
                drop(stores);
                runners.close();
                runners.wait().await;
                Ok(())
            }
        }
    }
}

async fn stop_run(run: &StoreRun, grace: Duration) {
    run.stop.cancel();
    run.tracker.close();
    if tokio::time::timeout(grace, run.tracker.wait())
        .await
        .is_err()
    {
        tracing::warn!(?grace, "a store's tasks did not stop in time");
    }
}

struct Inner {
    service: String,
    holder: String,
    overlap: bool,
    grace: Duration,
    leases: Option<Kv>,
    start: StartFn,
}

struct Running {
    settings: Arc<StoreSettings>,
    run: StoreRun,
}

enum Renewed {
    Ok(u64),
    Lost,
    Unknown,
}

impl Inner {
    fn lease_key(&self, store: &str) -> String {
        format!("{}.{store}", self.service)
    }

    fn lease_value(&self) -> Bytes {
        let v = LeaseValue {
            holder: self.holder.clone(),
            expires_ms: duellsync_events::now_ms() + LEASE_TTL.as_millis() as i64,
        };
        Bytes::from(serde_json::to_vec(&v).expect("a lease serialises"))
    }

    /// Takes the lease when it is free, expired or already ours; `None` while another holds it.
    async fn acquire(&self, kv: &Kv, store: &str) -> Option<u64> {
        let key = self.lease_key(store);
        let current = match kv.get(&key).await {
            Ok(c) => c,
            Err(e) => {
                tracing::warn!(store, error = %e, "cannot read the store's lease");
                return None;
            }
        };
        let result = match current {
            None => kv.create(&key, self.lease_value()).await,
            Some(e) => {
                let held: Option<LeaseValue> = serde_json::from_slice(&e.value).ok();
                let free = held.as_ref().is_none_or(|h| {
                    h.holder == self.holder || h.expires_ms < duellsync_events::now_ms()
                });
                if !free {
                    tracing::info!(store, holder = %held.map(|h| h.holder).unwrap_or_default(), "store held by another instance; waiting for it to let go");
                    return None;
                }
                kv.update(&key, self.lease_value(), e.revision).await
            }
        };
        result.ok()
    }

    async fn renew(&self, kv: &Kv, store: &str, revision: u64) -> Renewed {
        match kv
            .update(&self.lease_key(store), self.lease_value(), revision)
            .await
        {
            Ok(rev) => Renewed::Ok(rev),
            Err(KvError::Conflict { .. }) => Renewed::Lost,
            Err(KvError::Bus(e)) => {
                tracing::warn!(store, error = %e, "cannot renew the store's lease");
                Renewed::Unknown
            }
        }
    }

    async fn release(&self, kv: &Kv, store: &str, revision: u64) {
        let _ = kv.delete(&self.lease_key(store), Some(revision)).await;
    }

    async fn start_run(
        &self,
        settings: Arc<StoreSettings>,
        stop: &CancellationToken,
    ) -> Option<Running> {
        let run = StoreRun {
            stop: stop.child_token(),
            tracker: TaskTracker::new(),
        };
        let id = settings.id.clone();
        match (self.start)(settings.clone(), run.clone()).await {
            Ok(()) => {
                tracing::info!(store = %id, "store started");
                Some(Running { settings, run })
            }
            Err(e) => {
                tracing::error!(store = %id, error = %format!("{e:#}"), "store did not start; trying again shortly");
                stop_run(&run, self.grace).await;
                None
            }
        }
    }

    /// One store's life: apply the wanted settings, hold the lease, until shutdown.
    async fn runner(
        self: Arc<Self>,
        id: String,
        mut wanted: watch::Receiver<Option<Arc<StoreSettings>>>,
        stop: CancellationToken,
        first: oneshot::Sender<()>,
    ) {
        let mut first = Some(first);
        let mut running: Option<Running> = None;
        let mut lease: Option<u64> = None;
        let mut renewed_at = Instant::now();
        let mut retry = false;
        loop {
            if stop.is_cancelled() {
                break;
            }
            let want = wanted.borrow_and_update().clone();
            let same = match (&running, &want) {
                (Some(r), Some(w)) => *r.settings == **w,
                (None, None) => true,
                _ => false,
            };
            if !same || retry {
                retry = false;
                match want {
                    Some(settings) => {
                        let mut may_start = true;
                        if let (Some(kv), None) = (&self.leases, lease) {
                            match self.acquire(kv, &id).await {
                                Some(rev) => {
                                    lease = Some(rev);
                                    renewed_at = Instant::now();
                                }
                                None => may_start = false,
                            }
                        }
                        if may_start {
                            let old = running.take();
                            if !self.overlap {
                                if let Some(o) = &old {
                                    tracing::info!(store = %id, "store settings changed; restarting its tasks");
                                    stop_run(&o.run, self.grace).await;
                                }
                            }
                            running = self.start_run(settings, &stop).await;
                            if self.overlap {
                                if let Some(o) = &old {
                                    stop_run(&o.run, self.grace).await;
                                }
                            }
                        }
                        retry = running.is_none();
                    }
                    None => {
                        if let Some(o) = running.take() {
                            tracing::info!(store = %id, "store no longer served here; stopping it");
                            stop_run(&o.run, self.grace).await;
                        }
                        if let (Some(kv), Some(rev)) = (&self.leases, lease.take()) {
                            self.release(kv, &id, rev).await;
                        }
                    }
                }
                if let Some(f) = first.take() {
                    let _ = f.send(());
                }
            }
            let wait = if retry {
                Duration::from_secs(1)
            } else {
                RENEW_EVERY
            };
            tokio::select! {
                _ = stop.cancelled() => break,
                changed = wanted.changed() => {
                    if changed.is_err() {
                        break;
                    }
                }
                _ = tokio::time::sleep(wait) => {
                    if let (Some(kv), Some(rev)) = (&self.leases, lease) {
                        match self.renew(kv, &id, rev).await {
                            Renewed::Ok(rev) => {
                                lease = Some(rev);
                                renewed_at = Instant::now();
                            }
                            Renewed::Lost => {
                                tracing::error!(store = %id, "another instance took the store's lease; stopping it here");
                                if let Some(o) = running.take() {
                                    stop_run(&o.run, self.grace).await;
                                }
                                lease = None;
                                retry = true;
                            }
                            Renewed::Unknown if renewed_at.elapsed() > LEASE_TTL => {
                                tracing::error!(store = %id, "lease not renewed for longer than it lasts; stopping the store until it is taken again");
                                if let Some(o) = running.take() {
                                    stop_run(&o.run, self.grace).await;
                                }
                                lease = None;
                                retry = true;
                            }
                            Renewed::Unknown => {}
                        }
                    }
                }
            }
        }
        if let Some(o) = running.take() {
            stop_run(&o.run, self.grace).await;
        }
        if let (Some(kv), Some(rev)) = (&self.leases, lease) {
            self.release(kv, &id, rev).await;
        }
    }
}
