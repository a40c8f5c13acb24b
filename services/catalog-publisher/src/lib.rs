//! catalog-publisher: the sink that keeps WooCommerce's catalogue in step with DUELL (SPEC §3.1,
//! §3.4). Per store it projects the DUELL facts (products, stock, withdrawals) and the units web
//! orders hold, and writes to WooCommerce only what differs from what WooCommerce holds: new
//! products, changed names, prices, campaigns, attributes, images (uploaded once), stock and
//! visibility, in batches of up to 100, one product at most every `min_write_interval`.
//!
//! Full syncs (`syncctl sync`, the reconciliation timer) read all of WooCommerce after the
//! poller's DUELL scan and correct drift, or only report it (`--dry-run`).
#![forbid(unsafe_code)]

pub mod config;
mod ctx;
mod inputs;
mod outbox;
mod project;
mod reconcile;
mod settle;
mod state;
mod synclog;
mod woo_read;
mod worker;
mod write;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use duellsync_bus::{Bus, BusOptions, ConsumerSpec};
use duellsync_registry::{StoreSource, Supervisor};
use duellsync_store::{Store, StoreOptions};
use duellsync_telemetry::Readiness;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

pub use config::Config;

pub const SERVICE: &str = "catalog-publisher";

/// Command-line arguments.
#[derive(Debug, clap::Parser)]
#[command(
    name = "catalog-publisher",
    about = "Writes DUELL's catalogue and stock to WooCommerce"
)]
pub struct Args {
    #[command(flatten)]
    pub service: duellsync_registry::ServiceArgs,
}

impl Args {
    /// `--check-config`: this service's own rules, printed as JSON; returns the exit code.
    pub fn check(&self, env: &[(String, String)]) -> i32 {
        self.service
            .check::<Config>(SERVICE, env, |_: &Config| Ok(()))
    }

    /// The config, and the registry source of the stores of its shard.
    pub fn load(&self, env: &[(String, String)]) -> anyhow::Result<(Config, StoreSource)> {
        Ok(self.service.load::<Config>(env, |_: &Config| Ok(()))?)
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
    /// Connects to NATS, declares the streams, opens the state and binds the admin port.
    pub async fn build(config: Config, stores: impl Into<StoreSource>) -> anyhow::Result<App> {
        let stores = stores.into();
        duellsync_telemetry::install_crypto_provider();
        let bus_options = BusOptions::from_settings(&config.nats, SERVICE);
        let bus = Bus::connect(bus_options).await?;
        bus.ensure_streams().await?;
        std::fs::create_dir_all(&config.state_dir)
            .with_context(|| format!("creating state dir {}", config.state_dir.display()))?;
        // The largest state of all services (every product's facts and links); its hot rows
        // are the few products changing now, so a smaller cache than the others costs little.
        let state = Store::open_with(StoreOptions {
            cache_capacity_bytes: 2 * 1024 * 1024,
            ..StoreOptions::new(config.state_dir.join("sled"))
        })?;
        let admin = tokio::net::TcpListener::bind(&config.admin.listen)
            .await
            .with_context(|| format!("binding admin address {}", config.admin.listen))?;
        let readiness = Readiness::new();
        readiness.add(Arc::new(duellsync_bus::BusReady(bus.clone())));
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

    /// Runs until `shutdown` resolves, then stops consuming, lets the current batch finish
    /// (bounded) and flushes the state.
    pub async fn run(self, shutdown: impl std::future::Future<Output = ()>) -> anyhow::Result<()> {
        let stop = CancellationToken::new();
        let failed = CancellationToken::new();
        let tracker = TaskTracker::new();
        tracker.spawn(duellsync_telemetry::serve_admin(
            self.admin,
            self.readiness.clone(),
            stop.clone(),
        ));
        let cfg = Arc::new(self.config.publisher.clone());
        let tables = state::Tables::new(&self.state);
        let bus = self.bus.clone();
        let f = failed.clone();
        let failed_run = failed.clone();
        let supervisor = Supervisor::new(SERVICE, self.bus.clone()).exclusive(true);
        let stores = self.stores;
        let s = stop.clone();
        tracker.spawn(async move {
            let started = supervisor
                .run(
                    stores,
                    s,
                    || tracing::info!("catalog-publisher running"),
                    move |store, run| {
                        let (bus, tables, cfg, failed) =
                            (bus.clone(), tables.clone(), cfg.clone(), f.clone());
                        async move { start_store(store, run, bus, tables, cfg, failed).await }
                    },
                )
                .await;
            if let Err(e) = started {
                tracing::error!(error = %format!("{e:#}"), "stores could not be run");
                failed_run.cancel();
            }
        });
        tracker.close();
        tokio::select! {
            _ = shutdown => {}
            _ = failed.cancelled() => tracing::error!("a worker failed; stopping so the supervisor restarts us"),
        }
        self.readiness.drain();
        stop.cancel();
        if tokio::time::timeout(Duration::from_secs(20), tracker.wait())
            .await
            .is_err()
        {
            tracing::warn!("workers did not stop within 20 s");
        }
        self.state.flush().await?;
        self.bus.flush().await;
        if failed.is_cancelled() {
            anyhow::bail!("a worker failed");
        }
        Ok(())
    }
}

/// Starts one store's consumers and worker on the store's run (the supervisor stops and
/// restarts them when the store's settings change).
async fn start_store(
    store: Arc<duellsync_settings::StoreSettings>,
    run: duellsync_registry::StoreRun,
    bus: Bus,
    tables: state::Tables,
    cfg: Arc<config::PublisherSection>,
    failed: CancellationToken,
) -> anyhow::Result<()> {
    let woo = duellsync_clients::woo_client(&store).map_err(anyhow::Error::msg)?;
    let ctx = ctx::StoreCtx::new(store.clone(), bus.clone(), woo, tables, cfg);
    let (tx, rx) = mpsc::channel(1000);
    for (stream, filters) in project::subjects(&store.id) {
        let mut spec = ConsumerSpec::new(
            stream,
            format!("{SERVICE}-{}-{}", store.id, stream.name.to_lowercase()),
            filters,
            SERVICE,
            &store.id,
        );
        spec.max_ack_pending = 5000;
        spec.batch = 500;
        let consumer = bus.consumer(spec).await?;
        let mut deliveries = consumer.deliveries(run.stop.clone());
        let tx = tx.clone();
        run.tracker.spawn(async move {
            while let Some(d) = deliveries.recv().await {
                if tx.send(Arc::new(d)).await.is_err() {
                    return;
                }
            }
        });
    }
    run.tracker.spawn(outbox::drain(
        ctx.bus.clone(),
        ctx.t.clone(),
        ctx.id.clone(),
        ctx.outbox_wake.clone(),
        run.stop.clone(),
    ));
    run.tracker
        .spawn(reconcile::reconciler(ctx.clone(), run.stop.clone()));
    let w = worker::Worker::new(ctx);
    let s = run.stop.clone();
    let id = store.id.clone();
    run.tracker.spawn(async move {
        if let Err(e) = w.run(rx, s).await {
            tracing::error!(store = %id, error = %format!("{e:#}"), "publisher stopped with an error");
            failed.cancel();
        }
    });
    Ok(())
}
