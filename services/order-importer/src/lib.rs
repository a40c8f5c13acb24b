//! order-importer: the sink that takes WooCommerce orders into DUELL (SPEC §3.2), exactly once.
//!
//! Per store it consumes
//! - `woo.<store>.order.observed` (webhooks and the gap-fill poller; many times per order, out of
//!   order, with different bodies) and its own `cmd.<store>.order.retry_requested`: imports the
//!   order as a DUELL customer order, sales order or stock deduction (see [`import`]);
//! - `duell.<store>.order_status.observed`: releases the stock hold of a drawn or cancelled
//!   customer order;
//! - `sync.<store>.product.applied` and `duell.<store>.product.observed`: learns product links
//!   and retries orders parked for an unknown product.
//!
//! It appends `OrderImported`, `StockHoldChanged`, `OrderParked`, `OrderInDoubt`,
//! `OrderSkipped` (sync stream) and `OrderRetryRequested` (cmd stream). Its sled state is the
//! exactly-once ledger per WooCommerce order; see `docs/order-importer.md`.
#![forbid(unsafe_code)]

pub mod config;
mod events;
mod import;
mod lookups;
mod rebuild;
mod resolve;
mod state;
mod triggers;
mod woo_side;

use std::collections::HashMap;
use std::future::Future;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Weak};
use std::time::Duration;

use anyhow::Context;
use duellsync_bus::{Bus, BusOptions, Consumer, ConsumerSpec, Delivery, HandleError};
use duellsync_events::{v1, Event, STREAM_CMD, STREAM_DUELL, STREAM_SYNC, STREAM_WOO};
use duellsync_registry::{StoreSource, Supervisor};
use duellsync_settings::StoreSettings;
use duellsync_store::{Store, StoreOptions};
use duellsync_telemetry::Readiness;
use rust_decimal::Decimal;
use tokio::sync::{OwnedMutexGuard, Semaphore};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tracing::Instrument as _;

pub use config::Config;

pub const SERVICE: &str = "order-importer";

/// Command-line arguments.
#[derive(Debug, clap::Parser)]
#[command(
    name = "order-importer",
    about = "Imports WooCommerce orders into DUELL exactly once"
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

/// The ledger entry of one order, read from the importer's state (tests, tools).
pub fn ledger_entry(
    state: &Store,
    store: &str,
    woo_order_id: i64,
) -> Result<Option<duellsync_orders::OrderRecord>, duellsync_store::Error> {
    state::Tables::new(state)
        .orders
        .get(&(store.to_owned(), woo_order_id))
}

/// Whether the ledger of `store` was completed from the import markers in WooCommerce.
pub fn markers_restored(state: &Store, store: &str) -> Result<bool, duellsync_store::Error> {
    state::Tables::new(state)
        .marks
        .contains(&(store.to_owned(), rebuild::MARKERS_RESTORED.to_owned()))
}

/// One async lock per WooCommerce order: every trigger of one order runs alone.
#[derive(Default)]
pub(crate) struct Locks {
    map: std::sync::Mutex<HashMap<i64, Weak<tokio::sync::Mutex<()>>>>,
}

impl Locks {
    pub async fn lock(&self, id: i64) -> OwnedMutexGuard<()> {
        let m = {
            let mut map = self.map.lock().unwrap_or_else(|e| e.into_inner());
            if map.len() > 4096 {
                map.retain(|_, w| w.strong_count() > 0);
            }
            match map.get(&id).and_then(Weak::upgrade) {
                Some(m) => m,
                None => {
                    let m = Arc::new(tokio::sync::Mutex::new(()));
                    map.insert(id, Arc::downgrade(&m));
                    m
                }
            }
        };
        m.lock_owned().await
    }
}

/// Shared handles of one store's workers.
#[derive(Clone)]
pub(crate) struct StoreCtx {
    pub settings: Arc<StoreSettings>,
    pub bus: Bus,
    pub state: Store,
    pub t: state::Tables,
    pub duell: duellsync_duell::DuellClient,
    pub woo: duellsync_woo::WooClient,
    pub config: Arc<config::ImporterSection>,
    pub locks: Arc<Locks>,
    /// Find-or-create of one customer, product or category runs alone, so that two orders
    /// imported at once do not both create it (keyed by a hash of the `Tables::known` key).
    pub creation_locks: Arc<Locks>,
    /// Recent DUELL look-ups that found a product or customer (`importer.lookup_cache_ttl`).
    pub lookups: Arc<lookups::Lookups>,
    /// Shop name in DUELL's reference comment.
    pub site: String,
    /// `orders.total_tolerance`.
    pub tolerance: Decimal,
}

impl StoreCtx {
    pub fn id(&self) -> &str {
        &self.settings.id
    }

    pub fn key(&self, woo_order_id: i64) -> state::OrderKey {
        (self.settings.id.clone(), woo_order_id)
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
    /// Every store's consumers are declared and running.
    started: Arc<AtomicBool>,
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
        let started = Arc::new(AtomicBool::new(false));
        readiness.add(Arc::new(Started(started.clone())));
        Ok(App {
            config,
            stores,
            bus,
            state,
            admin,
            readiness,
            started,
        })
    }

    /// A handle on the service's state (tests and tools read the ledger through it; it keeps
    /// the database open until dropped).
    pub fn state(&self) -> Store {
        self.state.clone()
    }

    pub fn admin_addr(&self) -> SocketAddr {
        self.admin
            .local_addr()
            .expect("a bound listener has an address")
    }

    /// Runs until `shutdown` resolves, then stops taking messages, lets in-flight imports
    /// finish (bounded) and flushes the state.
    pub async fn run(self, shutdown: impl Future<Output = ()>) -> anyhow::Result<()> {
        let stop = CancellationToken::new();
        let tracker = TaskTracker::new();
        let failed = CancellationToken::new();
        tracker.spawn(duellsync_telemetry::serve_admin(
            self.admin,
            self.readiness.clone(),
            stop.clone(),
        ));
        let config = Arc::new(self.config.importer.clone());
        let (bus, state, f) = (self.bus.clone(), self.state.clone(), failed.clone());
        let grace = config.duell_timeout + Duration::from_secs(10);
        let supervisor = Supervisor::new(SERVICE, self.bus.clone())
            .exclusive(true)
            .grace(grace);
        let stores = self.stores;
        let (s, failed_run, started) = (stop.clone(), failed.clone(), self.started.clone());
        let cfg = config.clone();
        tracker.spawn(async move {
            let ready = move || {
                started.store(true, Ordering::SeqCst);
                tracing::info!("order-importer running");
            };
            let ran = supervisor
                .run(stores, s, ready, move |store, run| {
                    let ctx = (bus.clone(), state.clone(), cfg.clone(), f.clone());
                    async move {
                        let (bus, state, config, failed) = ctx;
                        let mut duell_config =
                            duellsync_clients::duell_config(&store).map_err(anyhow::Error::msg)?;
                        duell_config.request_timeout = config.duell_timeout;
                        let duell =
                            duellsync_duell::DuellClient::new(duell_config).map_err(|e| {
                                anyhow::anyhow!("store {}: duell client: {e}", store.id)
                            })?;
                        let site = if config.site_name.trim().is_empty() {
                            url_host(&store.woo.url)
                        } else {
                            config.site_name.trim().to_owned()
                        };
                        let ctx = StoreCtx {
                            woo: duellsync_clients::woo_client(&store)
                                .map_err(anyhow::Error::msg)?,
                            tolerance: duellsync_orders::parse_tolerance(
                                &store.orders.total_tolerance,
                            ),
                            settings: store,
                            bus,
                            t: state::Tables::new(&state),
                            state,
                            duell,
                            lookups: Arc::new(lookups::Lookups::new(config.lookup_cache_ttl)),
                            config,
                            locks: Arc::new(Locks::default()),
                            creation_locks: Arc::new(Locks::default()),
                            site,
                        };
                        spawn_store(&run.tracker, ctx, run.stop.clone(), failed).await
                    }
                })
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
        // In-flight imports finish: a DUELL write is never abandoned between intent and outcome
        // on a graceful stop. The bound is the DUELL timeout plus a margin.
        if tokio::time::timeout(grace, tracker.wait()).await.is_err() {
            tracing::warn!(?grace, "workers did not stop in time");
        }
        self.state.flush().await?;
        self.bus.flush().await;
        if failed.is_cancelled() {
            anyhow::bail!("a worker failed");
        }
        Ok(())
    }
}

fn url_host(url: &str) -> String {
    url::Url::parse(url)
        .ok()
        .and_then(|u| u.host_str().map(str::to_owned))
        .unwrap_or_default()
}

/// Not ready until every store's consumers run (a readiness probe, or a test, that sees 200
/// can rely on messages being taken).
struct Started(Arc<AtomicBool>);

impl duellsync_telemetry::ReadinessCheck for Started {
    fn name(&self) -> &str {
        "consumers"
    }
    fn check(&self) -> futures::future::BoxFuture<'_, Result<(), String>> {
        Box::pin(async move {
            if self.0.load(Ordering::SeqCst) {
                Ok(())
            } else {
                Err("starting".into())
            }
        })
    }
}

fn spec(
    ctx: &StoreCtx,
    stream: &'static duellsync_events::StreamSpec,
    suffix: &str,
    subjects: Vec<String>,
) -> ConsumerSpec {
    let store = ctx.id();
    let mut s = ConsumerSpec::new(
        stream,
        format!("{SERVICE}-{store}-{suffix}"),
        subjects,
        SERVICE,
        store,
    );
    s.ack_wait = ctx.config.ack_wait;
    s.max_deliveries = ctx.config.max_deliveries;
    s.backoff_cap = ctx.config.backoff_cap;
    s
}

/// A consumer whose handlers call DUELL: few messages are pulled at once, so that none waits in
/// the local queue until its ack deadline passes (messages waiting for a redelivery stay on the
/// server and do not count here).
fn import_spec(
    ctx: &StoreCtx,
    stream: &'static duellsync_events::StreamSpec,
    suffix: &str,
    subjects: Vec<String>,
) -> ConsumerSpec {
    let mut s = spec(ctx, stream, suffix, subjects);
    let n = ctx.config.concurrency.max(1);
    s.batch = n * 2;
    s
}

async fn spawn_store(
    tracker: &TaskTracker,
    ctx: StoreCtx,
    stop: CancellationToken,
    failed: CancellationToken,
) -> anyhow::Result<()> {
    let store = ctx.id().to_owned();

    // A lost ledger is restored from the sync log before any order is taken, so a replay of
    // the WOO stream cannot import an order twice.
    rebuild::restore_from_sync_log(&ctx)
        .await
        .with_context(|| format!("store {store}: restoring the import ledger"))?;

    // Attempts a crash left without outcome are settled first (their messages come back too).
    let c = ctx.clone();
    tracker.spawn(supervise(
        format!("start-up recovery {store}"),
        async move { import::recover_on_start(&c).await },
        failed.clone(),
    ));

    // A new (or rebuilt) ledger also learns the orders older than the sync log from their
    // import markers in WooCommerce.
    if ctx.settings.sync_orders {
        tracker.spawn(rebuild::restore_from_markers_in_background(
            ctx.clone(),
            stop.clone(),
        ));
    }

    let orders = ctx
        .bus
        .consumer(import_spec(
            &ctx,
            &STREAM_WOO,
            "orders",
            vec![v1::OrderObserved::subject(&store)],
        ))
        .await?;
    // One shared context per consumer: every delivery clones the `Arc`, not the context (its
    // tables, clients and strings were a dozen allocations per message).
    let c = Arc::new(ctx.clone());
    tracker.spawn(supervise(
        format!("orders {store}"),
        run_concurrent(
            orders,
            stop.clone(),
            ctx.config.concurrency,
            ctx.config.ack_wait,
            move |d| {
                let c = c.clone();
                async move { on_order(&c, d).await }
            },
        ),
        failed.clone(),
    ));

    let retries = ctx
        .bus
        .consumer(import_spec(
            &ctx,
            &STREAM_CMD,
            "retry",
            vec![v1::OrderRetryRequested::subject(&store)],
        ))
        .await?;
    let c = Arc::new(ctx.clone());
    tracker.spawn(supervise(
        format!("retries {store}"),
        run_concurrent(
            retries,
            stop.clone(),
            ctx.config.concurrency,
            ctx.config.ack_wait,
            move |d| {
                let c = c.clone();
                async move { on_retry(&c, d).await }
            },
        ),
        failed.clone(),
    ));

    let duell_facts = ctx
        .bus
        .consumer(spec(
            &ctx,
            &STREAM_DUELL,
            "duell",
            vec![
                v1::OrderStatusObserved::subject(&store),
                v1::ProductObserved::subject(&store),
            ],
        ))
        .await?;
    let c = Arc::new(ctx.clone());
    let s = stop.clone();
    tracker.spawn(supervise(
        format!("duell facts {store}"),
        async move {
            duell_facts
                .run(s, move |d| {
                    let c = c.clone();
                    async move {
                        if d.is::<v1::OrderStatusObserved>() {
                            triggers::on_status(&c, d.decode()?).await
                        } else if d.is::<v1::ProductObserved>() {
                            triggers::on_product_observed(&c, d.decode()?).await
                        } else {
                            Err(HandleError::permanent(format!(
                                "unexpected subject {}",
                                d.subject
                            )))
                        }
                    }
                })
                .await?;
            Ok(())
        },
        failed.clone(),
    ));

    let applied = ctx
        .bus
        .consumer(spec(
            &ctx,
            &STREAM_SYNC,
            "applied",
            vec![v1::ProductApplied::subject(&store)],
        ))
        .await?;
    let c = Arc::new(ctx.clone());
    tracker.spawn(supervise(
        format!("product links {store}"),
        async move {
            applied
                .run(stop, move |d| {
                    let c = c.clone();
                    async move { triggers::on_product_applied(&c, d.decode()?).await }
                })
                .await?;
            Ok(())
        },
        failed,
    ));
    Ok(())
}

async fn on_order(ctx: &StoreCtx, d: Arc<Delivery>) -> Result<(), HandleError> {
    let ev: v1::OrderObserved = d.decode()?;
    let message_meta = ev
        .meta
        .clone()
        .filter(|m| !m.event_id.is_empty())
        .unwrap_or_else(|| duellsync_events::Meta {
            store: ctx.id().to_owned(),
            event_id: d.event_id().to_owned(),
            correlation_id: duellsync_events::order_correlation(ctx.id(), ev.order_id),
            ..Default::default()
        });
    import::handle(
        ctx,
        import::Incoming {
            observed: ev,
            message_meta,
            replay: d.is_replay(),
        },
    )
    .await
}

async fn on_retry(ctx: &StoreCtx, d: Arc<Delivery>) -> Result<(), HandleError> {
    let cmd: v1::OrderRetryRequested = d.decode()?;
    let Some(observed) = cmd.observed else {
        return Err(HandleError::permanent(
            "OrderRetryRequested without the order",
        ));
    };
    let message_meta = cmd.meta.unwrap_or_default();
    import::handle(
        ctx,
        import::Incoming {
            observed,
            message_meta,
            replay: d.is_replay(),
        },
    )
    .await
}

/// Handles deliveries of one consumer with up to `concurrency` at once (per-order locks keep
/// one order to one task), telling JetStream that slow ones are still in progress. Returns when
/// `stop` is cancelled and every in-flight delivery is finished.
async fn run_concurrent<F, Fut>(
    consumer: Consumer,
    stop: CancellationToken,
    concurrency: usize,
    ack_wait: Duration,
    handler: F,
) -> anyhow::Result<()>
where
    F: Fn(Arc<Delivery>) -> Fut + Clone + Send + Sync + 'static,
    Fut: Future<Output = Result<(), HandleError>> + Send + 'static,
{
    let mut rx = consumer.deliveries(stop);
    let permits = Arc::new(Semaphore::new(concurrency.max(1)));
    let tasks = TaskTracker::new();
    let heartbeat = (ack_wait / 3).max(Duration::from_millis(300));
    while let Some(d) = rx.recv().await {
        let permit = permits.clone().acquire_owned().await?;
        let d = Arc::new(d);
        let handler = handler.clone();
        tasks.spawn(async move {
            let span = d.span.clone();
            let work = handler(d.clone()).instrument(span);
            tokio::pin!(work);
            let result = loop {
                tokio::select! {
                    r = &mut work => break r,
                    _ = tokio::time::sleep(heartbeat) => d.in_progress().await,
                }
            };
            d.finish(result).await;
            drop(permit);
        });
    }
    tasks.close();
    tasks.wait().await;
    Ok(())
}

async fn supervise(
    name: String,
    task: impl Future<Output = anyhow::Result<()>>,
    failed: CancellationToken,
) {
    if let Err(e) = task.await {
        tracing::error!(task = %name, error = %format!("{e:#}"), "worker stopped with an error");
        failed.cancel();
    }
}
