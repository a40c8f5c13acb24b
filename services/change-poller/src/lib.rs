//! change-poller: the engine's eyes. Per store it
//! - polls DUELL's catalogue incrementally (`last_update_date`) and scans the stock department,
//!   appending only what changed (`duell.<store>.product.*`, `duell.<store>.stock.observed`);
//! - runs full DUELL scans on `syncctl sync` and on the reconciliation timer, ending each with a
//!   `duell.<store>.catalog.scanned` marker for the publisher;
//! - fetches fresh data when a change notice arrives (never trusting pushed content);
//! - watches the DUELL status of imported customer orders (`duell.<store>.order_status.observed`);
//! - fills gaps behind WooCommerce webhooks by listing orders (`woo.<store>.order.observed`) and
//!   keeps the store's webhooks present and active.
//!
//! Every fact is published (and confirmed by JetStream) before the poller commits the cursor or
//! the "last seen" value that covers it, so a crash repeats observations (deduplicated by their
//! deterministic ids) but never skips one.
#![forbid(unsafe_code)]

mod catalog;
pub mod config;
mod orders;
mod status;
mod webhooks;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use duellsync_bus::{Bus, BusOptions, ConsumerSpec, Delivery, HandleError};
use duellsync_events::{v1, Event, STREAM_CMD, STREAM_DUELL, STREAM_SYNC};
use duellsync_registry::{StoreSource, Supervisor};
use duellsync_settings::StoreSettings;
use duellsync_store::{Store, StoreOptions};
use duellsync_telemetry::Readiness;
use tokio::sync::{mpsc, oneshot};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

pub use config::Config;

pub const SERVICE: &str = "change-poller";

/// Command-line arguments.
#[derive(Debug, clap::Parser)]
#[command(
    name = "change-poller",
    about = "Observes DUELL and WooCommerce and records what changed"
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

/// Shared handles of one store's workers.
#[derive(Clone)]
pub(crate) struct StoreCtx {
    pub store: Arc<StoreSettings>,
    pub bus: Bus,
    pub state: Store,
    pub duell: duellsync_duell::DuellClient,
    pub woo: duellsync_woo::WooClient,
    pub config: Arc<config::PollerSection>,
}

impl StoreCtx {
    pub fn id(&self) -> &str {
        &self.store.id
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

    /// Runs until `shutdown` resolves, then stops polling, lets in-flight work finish (bounded)
    /// and flushes the state.
    pub async fn run(self, shutdown: impl std::future::Future<Output = ()>) -> anyhow::Result<()> {
        let stop = CancellationToken::new();
        let tracker = TaskTracker::new();
        let failed = CancellationToken::new();
        tracker.spawn(duellsync_telemetry::serve_admin(
            self.admin,
            self.readiness.clone(),
            stop.clone(),
        ));
        let config = Arc::new(self.config.poller.clone());
        let (bus, state, f) = (self.bus.clone(), self.state.clone(), failed.clone());
        let supervisor = Supervisor::new(SERVICE, self.bus.clone()).exclusive(true);
        let stores = self.stores;
        let (s, failed_run) = (stop.clone(), failed.clone());
        tracker.spawn(async move {
            let ran = supervisor
                .run(
                    stores,
                    s,
                    || tracing::info!("change-poller running"),
                    move |store, run| {
                        let ctx = (bus.clone(), state.clone(), config.clone(), f.clone());
                        async move {
                            let (bus, state, config, failed) = ctx;
                            let ctx = StoreCtx {
                                duell: duellsync_clients::duell_client(&store)
                                    .map_err(anyhow::Error::msg)?,
                                woo: duellsync_clients::woo_client(&store)
                                    .map_err(anyhow::Error::msg)?,
                                store,
                                bus,
                                state,
                                config,
                            };
                            spawn_store(&run.tracker, ctx, run.stop.clone(), failed).await
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

async fn spawn_store(
    tracker: &TaskTracker,
    ctx: StoreCtx,
    stop: CancellationToken,
    failed: CancellationToken,
) -> anyhow::Result<()> {
    let store = ctx.id().to_owned();
    let (catalog_tx, catalog_rx) = mpsc::channel::<catalog::Command>(64);

    let worker = catalog::CatalogWorker::new(ctx.clone());
    tracker.spawn(supervise(
        format!("catalog {store}"),
        worker.run(catalog_rx, stop.clone()),
        failed.clone(),
    ));
    tracker.spawn(supervise(
        format!("orders {store}"),
        orders::run(ctx.clone(), stop.clone()),
        failed.clone(),
    ));
    tracker.spawn(supervise(
        format!("order status {store}"),
        status::run(ctx.clone(), stop.clone()),
        failed.clone(),
    ));
    tracker.spawn(supervise(
        format!("webhooks {store}"),
        webhooks::run(ctx.clone(), stop.clone()),
        failed.clone(),
    ));

    // Commands (full sync) and change notices go to the catalogue worker, one at a time; the
    // message is acked only when the worker is done with it.
    let mut cmd_spec = ConsumerSpec::new(
        &STREAM_CMD,
        format!("{SERVICE}-{store}-cmd"),
        vec![v1::FullSyncRequested::subject(&store)],
        SERVICE,
        &store,
    );
    cmd_spec.max_deliveries = 3;
    let cmd = ctx.bus.consumer(cmd_spec).await?;
    let tx = catalog_tx.clone();
    let s = stop.clone();
    tracker.spawn(supervise(
        format!("commands {store}"),
        async move {
            cmd.run(s, move |d| forward_command(d, tx.clone())).await?;
            Ok(())
        },
        failed.clone(),
    ));

    let notice_spec = ConsumerSpec::new(
        &STREAM_DUELL,
        format!("{SERVICE}-{store}-notice"),
        vec![v1::ChangeNoticed::subject(&store)],
        SERVICE,
        &store,
    );
    let notices = ctx.bus.consumer(notice_spec).await?;
    let tx = catalog_tx;
    let s = stop.clone();
    tracker.spawn(supervise(
        format!("notices {store}"),
        async move {
            notices
                .run(s, move |d| forward_command(d, tx.clone()))
                .await?;
            Ok(())
        },
        failed.clone(),
    ));

    let imported_spec = ConsumerSpec::new(
        &STREAM_SYNC,
        format!("{SERVICE}-{store}-imported"),
        vec![v1::OrderImported::subject(&store)],
        SERVICE,
        &store,
    );
    let imported = ctx.bus.consumer(imported_spec).await?;
    let c = ctx.clone();
    tracker.spawn(supervise(
        format!("imported orders {store}"),
        async move {
            imported
                .run(stop, move |d| {
                    let c = c.clone();
                    let ev = d.decode::<v1::OrderImported>();
                    async move { status::watch(&c, ev?).await }
                })
                .await?;
            Ok(())
        },
        failed,
    ));
    Ok(())
}

/// Hands a command or notice to the catalogue worker and waits for it, telling JetStream the
/// work is in progress so a long full scan is not redelivered meanwhile.
async fn forward_command(
    d: Arc<Delivery>,
    tx: mpsc::Sender<catalog::Command>,
) -> Result<(), HandleError> {
    let (done_tx, mut done_rx) = oneshot::channel();
    let cmd = if d.is::<v1::FullSyncRequested>() {
        let ev: v1::FullSyncRequested = d.decode()?;
        catalog::Command::FullScan {
            run_id: ev.run_id.clone(),
            dry_run: ev.dry_run,
            cause: ev.meta.unwrap_or_default(),
            done: done_tx,
            span: tracing::Span::current(),
        }
    } else if d.is::<v1::ChangeNoticed>() {
        let ev: v1::ChangeNoticed = d.decode()?;
        if let Some(why) = malformed_notice(&ev) {
            // Dead-lettered at once: whatever published it, it is no reason to ask DUELL.
            return Err(HandleError::permanent(format!(
                "malformed change notice: {why}"
            )));
        }
        catalog::Command::Refresh {
            notice: ev,
            done: done_tx,
            span: tracing::Span::current(),
        }
    } else {
        return Err(HandleError::permanent(format!(
            "unexpected subject {}",
            d.subject
        )));
    };
    tx.send(cmd)
        .await
        .map_err(|_| HandleError::retry("catalog worker stopped"))?;
    loop {
        tokio::select! {
            r = &mut done_rx => {
                return r.map_err(|_| HandleError::retry("catalog worker stopped"))?;
            }
            _ = tokio::time::sleep(Duration::from_secs(10)) => d.in_progress().await,
        }
    }
}

/// Why a change notice cannot be acted on with the one product it names, if it cannot. The
/// ingest refuses such notices; this guards against any other publisher.
fn malformed_notice(n: &v1::ChangeNoticed) -> Option<&'static str> {
    use v1::change_noticed::Kind;
    match Kind::try_from(n.kind).unwrap_or_default() {
        Kind::Stock if n.product_id <= 0 => Some("a stock notice names no product id"),
        Kind::Product if n.product_id < 0 => Some("a negative product id"),
        Kind::Product if n.product_id == 0 && n.product_number.trim().is_empty() => {
            Some("a product notice names neither a product id nor a product number")
        }
        Kind::Unspecified => Some("no kind (product or stock)"),
        _ => None,
    }
}

async fn supervise(
    name: String,
    task: impl std::future::Future<Output = anyhow::Result<()>>,
    failed: CancellationToken,
) {
    if let Err(e) = task.await {
        tracing::error!(task = %name, error = %format!("{e:#}"), "worker stopped with an error");
        failed.cancel();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use v1::change_noticed::Kind;

    fn notice(kind: Kind, product_id: i64, number: &str) -> v1::ChangeNoticed {
        v1::ChangeNoticed {
            meta: None,
            kind: kind as i32,
            product_id,
            product_number: number.into(),
        }
    }

    #[test]
    fn a_notice_that_only_a_scan_could_answer_is_malformed() {
        assert!(malformed_notice(&notice(Kind::Stock, 0, "")).is_some());
        assert!(malformed_notice(&notice(Kind::Stock, 0, "1001")).is_some());
        assert!(malformed_notice(&notice(Kind::Stock, -4, "")).is_some());
        assert!(malformed_notice(&notice(Kind::Product, 0, " ")).is_some());
        assert!(malformed_notice(&notice(Kind::Unspecified, 7, "x")).is_some());
        assert!(malformed_notice(&notice(Kind::Stock, 7, "")).is_none());
        assert!(malformed_notice(&notice(Kind::Product, 0, "1001")).is_none());
        assert!(malformed_notice(&notice(Kind::Product, 7, "")).is_none());
    }
}
