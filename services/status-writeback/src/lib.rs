//! status-writeback: moves WooCommerce orders to the status DUELL reports (SPEC §3.3).
//!
//! Per store, two durable consumers:
//! - `sync.<store>.order.imported`: remembers each imported order's kind and its WooCommerce
//!   total at import (sled);
//! - `duell.<store>.order_status.observed`: maps the DUELL status through the store's
//!   `status_map` and writes it to WooCommerce, never backwards, never over a final status, and
//!   `completed` only while the total is still the imported one (see [`writeback`]).
//!
//! Results go to the sync log: `sync.<store>.order_status.written` and
//! `sync.<store>.order_status.conflict`; a total mismatch also dead-letters the status event
//! with the reason, so `syncctl dlq` shows the parked order and can replay it once fixed.
#![forbid(unsafe_code)]

pub mod config;
mod imported;
mod state;
mod writeback;

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use duellsync_bus::{Bus, BusOptions, ConsumerSpec, Delivery, HandleError};
use duellsync_events::{v1, Event, STREAM_DUELL, STREAM_SYNC};
use duellsync_registry::{StoreSource, Supervisor};
use duellsync_settings::StoreSettings;
use duellsync_store::{Ledger, Store, StoreOptions, Table};
use duellsync_telemetry::Readiness;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

pub use config::Config;

pub const SERVICE: &str = "status-writeback";

/// Command-line arguments.
#[derive(Debug, clap::Parser)]
#[command(
    name = "status-writeback",
    about = "Writes DUELL order statuses back to WooCommerce"
)]
pub struct Args {
    #[command(flatten)]
    pub service: duellsync_registry::ServiceArgs,
}

impl Args {
    /// `--check-config`: this service's own rules, printed as JSON; returns the exit code.
    pub fn check(&self, env: &[(String, String)]) -> i32 {
        self.service.check::<Config>(SERVICE, env, Config::validate)
    }

    /// The config, and the registry source of the stores of its shard.
    pub fn load(&self, env: &[(String, String)]) -> anyhow::Result<(Config, StoreSource)> {
        Ok(self.service.load::<Config>(env, Config::validate)?)
    }
}

/// Shared handles of one store's consumers.
pub(crate) struct StoreCtx {
    pub id: String,
    /// DUELL status id → WooCommerce status, from the store's settings.
    pub status_map: BTreeMap<i32, String>,
    pub bus: Bus,
    pub state: Store,
    pub woo: duellsync_woo::WooClient,
    pub imported: Table<state::OrderKey, state::Imported>,
    pub progress: Table<state::OrderKey, state::Progress>,
}

impl StoreCtx {
    fn new(store: &StoreSettings, bus: Bus, state: Store) -> anyhow::Result<StoreCtx> {
        Ok(StoreCtx {
            id: store.id.clone(),
            status_map: store.status_map(),
            woo: duellsync_clients::woo_client(store).map_err(anyhow::Error::msg)?,
            imported: state::imported(&state),
            progress: state::progress(&state),
            bus,
            state,
        })
    }
}

/// The built service, ready to run.
pub struct App {
    config: Config,
    stores: StoreSource,
    bus: Bus,
    state: Store,
    admin: tokio::net::TcpListener,
    readiness: Readiness,
}

impl App {
    /// Connects to NATS, declares the streams, opens the state and binds the admin port. Fails
    /// fast on anything wrong.
    pub async fn build(config: Config, stores: impl Into<StoreSource>) -> anyhow::Result<App> {
        let stores = stores.into();
        duellsync_telemetry::install_crypto_provider();
        config.validate()?;
        let bus_options = BusOptions::from_settings(&config.nats, SERVICE);
        let bus = Bus::connect(bus_options).await?;
        bus.ensure_streams().await?;
        std::fs::create_dir_all(&config.state_dir)
            .with_context(|| format!("creating state dir {}", config.state_dir.display()))?;
        let state = Store::open_with(StoreOptions::new(config.state_dir.join("sled")))?;
        let admin = tokio::net::TcpListener::bind(&config.admin.listen)
            .await
            .with_context(|| format!("binding admin address {}", config.admin.listen))?;
        let readiness = Readiness::new();
        readiness.add(Arc::new(duellsync_bus::BusReady(bus.clone())));
        // Building the clients here makes a bad store setting fail the start, not a consumer.
        if let StoreSource::Fixed(fixed) = &stores {
            for store in fixed.stores.values() {
                duellsync_clients::woo_client(store).map_err(anyhow::Error::msg)?;
            }
        }
        Ok(App {
            config,
            stores,
            bus,
            state,
            admin,
            readiness,
        })
    }

    pub fn admin_addr(&self) -> SocketAddr {
        self.admin
            .local_addr()
            .expect("a bound listener has an address")
    }

    /// Runs until `shutdown` resolves (or a consumer dies), then stops pulling, lets the event
    /// in hand finish (bounded), and flushes the state and the bus.
    pub async fn run(self, shutdown: impl std::future::Future<Output = ()>) -> anyhow::Result<()> {
        let stop = CancellationToken::new();
        let failed = CancellationToken::new();
        let tracker = TaskTracker::new();
        tracker.spawn(duellsync_telemetry::serve_admin(
            self.admin,
            self.readiness.clone(),
            stop.clone(),
        ));
        let pruned = prune_ledger(&self.state.ledger(), &self.state, &self.config).await;
        if let Err(e) = pruned {
            tracing::warn!(error = %e, "cannot prune the ledger");
        }
        let (bus, state, f) = (self.bus.clone(), self.state.clone(), failed.clone());
        let section = Arc::new(self.config.writeback.clone());
        let supervisor = Supervisor::new(SERVICE, self.bus.clone())
            .exclusive(true)
            .grace(Duration::from_secs(30));
        let stores = self.stores;
        let (s, failed_run) = (stop.clone(), failed.clone());
        tracker.spawn(async move {
            let ran = supervisor
                .run(
                    stores,
                    s,
                    || tracing::info!("status-writeback running"),
                    move |store, run| {
                        let c = (bus.clone(), state.clone(), section.clone(), f.clone());
                        async move {
                            let (bus, state, section, failed) = c;
                            let ctx = Arc::new(StoreCtx::new(&store, bus, state)?);
                            spawn_store(&run.tracker, ctx, &section, run.stop.clone(), failed).await
                        }
                    },
                )
                .await;
            if let Err(e) = ran {
                tracing::error!(error = %format!("{e:#}"), "stores could not be run");
                failed_run.cancel();
            }
        });
        tracker.close();
        tokio::select! {
            _ = shutdown => tracing::info!("shutting down"),
            _ = failed.cancelled() => tracing::error!("a consumer failed; stopping so the supervisor restarts us"),
        }
        self.readiness.drain();
        stop.cancel();
        if tokio::time::timeout(Duration::from_secs(30), tracker.wait())
            .await
            .is_err()
        {
            tracing::warn!("consumers did not stop within 30 s");
        }
        self.state.flush().await?;
        self.bus.flush().await;
        if failed.is_cancelled() {
            anyhow::bail!("a consumer failed");
        }
        Ok(())
    }
}

async fn prune_ledger(ledger: &Ledger, state: &Store, config: &Config) -> anyhow::Result<()> {
    let max_age = i64::try_from(config.writeback.ledger_max_age.as_millis()).unwrap_or(i64::MAX);
    let n = ledger.prune(state, max_age).await?;
    if n > 0 {
        tracing::info!(entries = n, "pruned old ledger entries");
    }
    Ok(())
}

fn spec(
    stream: &'static duellsync_events::StreamSpec,
    durable: String,
    subject: String,
    store: &str,
    section: &config::WritebackSection,
) -> ConsumerSpec {
    let mut spec = ConsumerSpec::new(stream, durable, vec![subject], SERVICE, store);
    spec.max_deliveries = section.max_deliveries;
    spec.backoff_cap = section.backoff_cap;
    // One WooCommerce call can take up to its own retries (4 × 30 s); the handler also
    // reports progress while it waits, see `keep_alive`.
    spec.ack_wait = Duration::from_secs(60);
    spec
}

async fn spawn_store(
    tracker: &TaskTracker,
    ctx: Arc<StoreCtx>,
    section: &config::WritebackSection,
    stop: CancellationToken,
    failed: CancellationToken,
) -> anyhow::Result<()> {
    let store = ctx.id.clone();
    let imported = ctx
        .bus
        .consumer(spec(
            &STREAM_SYNC,
            format!("{SERVICE}-{store}-imported"),
            v1::OrderImported::subject(&store),
            &store,
            section,
        ))
        .await?;
    let statuses = ctx
        .bus
        .consumer(spec(
            &STREAM_DUELL,
            format!("{SERVICE}-{store}-status"),
            v1::OrderStatusObserved::subject(&store),
            &store,
            section,
        ))
        .await?;

    let c = ctx.clone();
    let s = stop.clone();
    tracker.spawn(supervise(
        format!("imported orders {store}"),
        async move {
            imported
                .run(s, move |d| {
                    let c = c.clone();
                    async move { imported::on_imported(&c, &d).await }
                })
                .await?;
            Ok(())
        },
        failed.clone(),
    ));
    let c = ctx;
    tracker.spawn(supervise(
        format!("order statuses {store}"),
        async move {
            statuses
                .run(stop, move |d| {
                    let c = c.clone();
                    async move { keep_alive(&d, writeback::on_status(&c, &d)).await }
                })
                .await?;
            Ok(())
        },
        failed,
    ));
    Ok(())
}

/// Tells JetStream the message is still being worked on while `work` waits for WooCommerce, so
/// a slow store does not cause a redelivery in the middle of a write.
async fn keep_alive(
    d: &Delivery,
    work: impl std::future::Future<Output = Result<(), HandleError>>,
) -> Result<(), HandleError> {
    tokio::pin!(work);
    let mut tick = tokio::time::interval(Duration::from_secs(15));
    tick.tick().await;
    loop {
        tokio::select! {
            r = &mut work => return r,
            _ = tick.tick() => d.in_progress().await,
        }
    }
}

async fn supervise(
    name: String,
    task: impl std::future::Future<Output = anyhow::Result<()>>,
    failed: CancellationToken,
) {
    if let Err(e) = task.await {
        tracing::error!(task = %name, error = %format!("{e:#}"), "consumer stopped with an error");
        failed.cancel();
    }
}
