//! webhook-ingest: the engine's only public HTTP port. Stateless and horizontally scalable.
//!
//! - `POST /webhooks/woocommerce/{store}`: WooCommerce webhook deliveries. The signature
//!   (`X-WC-Webhook-Signature`, HMAC-SHA256 of the raw body with the store's
//!   `woo.webhook_secret`) is checked in constant time; `order.created` / `order.updated`
//!   become `woo.<store>.order.observed` events carrying the raw body byte for byte; other
//!   topics are answered 200 and dropped; the unsigned creation ping is answered 200.
//! - `POST /notices/duell/{store}`: thin change notices signed with the store's
//!   `duell.notice_secret` (`X-Duellsync-Signature`) become `duell.<store>.change.noticed`.
//!
//! A 2xx is sent only after JetStream has stored the event (SPEC §5); when it cannot be stored
//! in time the answer is 503. WooCommerce never retries, so a lost delivery is found again by
//! the change-poller's order gap-fill. Exactly-once effects are the importer's job: the ingest
//! only makes repeated deliveries collapse into one stored event (deterministic event ids and
//! JetStream's duplicate window).
#![forbid(unsafe_code)]

mod admission;
mod body;
pub mod config;
mod json;
pub mod notices;
mod outcome;
mod server;
mod signature;
mod woocommerce;

use std::collections::HashMap;
use std::future::IntoFuture;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context;
use axum::routing::post;
use axum::Router;
use duellsync_bus::{Bus, BusOptions, Published};
use duellsync_events::Event;
use duellsync_registry::{StoreSource, Supervisor};
use duellsync_settings::StoreSettings;
use duellsync_telemetry::Readiness;
use tokio_util::sync::CancellationToken;

pub use config::Config;
pub use notices::{read_change_notice, sign_change_notice};
pub use woocommerce::{is_creation_ping, read_order_delivery, OrderDelivery, OrderSummary};

use outcome::{Endpoint, EndpointMetrics, Outcome};
use signature::Signer;

pub const SERVICE: &str = "webhook-ingest";

/// Route of WooCommerce deliveries.
pub const WOOCOMMERCE_ROUTE: &str = "/webhooks/woocommerce/{store}";
/// Route of DUELL change notices.
pub const NOTICE_ROUTE: &str = "/notices/duell/{store}";

/// Command-line arguments.
#[derive(Debug, clap::Parser)]
#[command(
    name = "webhook-ingest",
    about = "Receives WooCommerce webhooks and DUELL change notices and records them in JetStream"
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

    /// The config, and the registry source of the stores it answers for.
    pub fn load(&self, env: &[(String, String)]) -> anyhow::Result<(Config, StoreSource)> {
        Ok(self.service.load::<Config>(env, Config::validate)?)
    }
}

/// What the ingest knows of one store.
pub(crate) struct StoreEntry {
    pub(crate) id: String,
    /// `None`: the store has no webhook secret, so it takes no webhooks (404).
    pub(crate) woo: Option<Signer>,
    /// The secret being rotated out, accepted too until WooCommerce signs with the new one.
    pub(crate) woo_previous: Option<Signer>,
    /// `None`: the store has no notice secret, so it takes no notices (404).
    pub(crate) notice: Option<Signer>,
    /// Verified change notices accepted per second for this store.
    pub(crate) notice_rate: admission::RateLimiter,
    pub(crate) woo_metrics: EndpointMetrics,
    pub(crate) notice_metrics: EndpointMetrics,
}

impl StoreEntry {
    fn new(s: &StoreSettings, notice_rate: f64, notice_burst: u32) -> StoreEntry {
        let woo = s
            .woo
            .webhook_secret
            .is_set()
            .then(|| Signer::woocommerce(s.woo.webhook_secret.expose()));
        let woo_previous = s
            .woo
            .previous_webhook_secret
            .is_set()
            .then(|| Signer::woocommerce(s.woo.previous_webhook_secret.expose()));
        let notice = s
            .duell
            .notice_secret
            .is_set()
            .then(|| Signer::new(s.duell.notice_secret.expose().as_bytes()));
        if woo.is_none() {
            tracing::warn!(store = %s.id, "no woo.webhook_secret: WooCommerce deliveries for this store are refused with 404");
        }
        StoreEntry {
            id: s.id.clone(),
            woo,
            woo_previous,
            notice,
            notice_rate: admission::RateLimiter::new(notice_rate, notice_burst),
            woo_metrics: EndpointMetrics::new(&s.id, Endpoint::WooCommerce),
            notice_metrics: EndpointMetrics::new(&s.id, Endpoint::DuellNotice),
        }
    }
}

/// Shared state of the request handlers. The stores change while the ingest runs (the
/// registry): a request takes the store's entry as it is at that moment.
pub(crate) struct Ingest {
    stores: std::sync::RwLock<HashMap<String, Arc<StoreEntry>>>,
    pub(crate) unknown_woo: EndpointMetrics,
    pub(crate) unknown_notice: EndpointMetrics,
    pub(crate) bus: Bus,
    pub(crate) body_limit: usize,
    pub(crate) publish_timeout: Duration,
    pub(crate) read_timeout: Duration,
    pub(crate) notice_tolerance: Duration,
}

impl Ingest {
    fn new(config: &config::IngestSection, bus: Bus) -> Ingest {
        Ingest {
            stores: Default::default(),
            unknown_woo: EndpointMetrics::new("unknown", Endpoint::WooCommerce),
            unknown_notice: EndpointMetrics::new("unknown", Endpoint::DuellNotice),
            bus,
            body_limit: config.body_limit,
            publish_timeout: config.publish_timeout,
            read_timeout: config.read_timeout,
            notice_tolerance: config.notice_tolerance,
        }
    }

    /// The store's entry now; `None` for a store this ingest does not answer for.
    pub(crate) fn store(&self, id: &str) -> Option<Arc<StoreEntry>> {
        self.stores
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .get(id)
            .cloned()
    }

    fn set_store(&self, entry: Arc<StoreEntry>) {
        self.stores
            .write()
            .unwrap_or_else(|e| e.into_inner())
            .insert(entry.id.clone(), entry);
    }

    /// Removes the entry unless a newer one replaced it meanwhile.
    fn remove_store(&self, entry: &Arc<StoreEntry>) {
        let mut stores = self.stores.write().unwrap_or_else(|e| e.into_inner());
        if stores.get(&entry.id).is_some_and(|e| Arc::ptr_eq(e, entry)) {
            stores.remove(&entry.id);
        }
    }

    fn store_count(&self) -> usize {
        self.stores.read().unwrap_or_else(|e| e.into_inner()).len()
    }

    /// Publishes and waits for JetStream's ack, bounded by `publish_timeout`. The error is the
    /// outcome to answer with; its cause is logged here (never sent to the client).
    pub(crate) async fn publish<E: Event>(
        &self,
        event: &E,
        metrics: &EndpointMetrics,
    ) -> Result<Published, Outcome> {
        let started = Instant::now();
        match tokio::time::timeout(self.publish_timeout, self.bus.publish(event)).await {
            Ok(Ok(published)) => {
                metrics.publish_latency(started.elapsed().as_secs_f64());
                Ok(published)
            }
            Ok(Err(duellsync_bus::Error::Unavailable(reason))) => {
                tracing::error!(error = %reason, event = E::NAME, "event not stored: JetStream unavailable");
                Err(Outcome::Unavailable)
            }
            Ok(Err(e)) => {
                tracing::error!(error = %e, event = E::NAME, "event not stored");
                Err(Outcome::Failed)
            }
            Err(_) => {
                tracing::error!(
                    timeout_ms = self.publish_timeout.as_millis() as u64,
                    event = E::NAME,
                    "event not stored: JetStream did not confirm in time"
                );
                Err(Outcome::Unavailable)
            }
        }
    }

    /// Reads the request body under the size limit and the read timeout.
    pub(crate) async fn read_body(
        &self,
        headers: &axum::http::HeaderMap,
        body: axum::body::Body,
    ) -> Result<bytes::Bytes, Outcome> {
        let declared = body::content_length(headers);
        match tokio::time::timeout(
            self.read_timeout,
            body::read(body, declared, self.body_limit),
        )
        .await
        {
            Ok(Ok(bytes)) => Ok(bytes),
            Ok(Err(body::BodyError::TooLarge)) => Err(Outcome::TooLarge),
            Ok(Err(body::BodyError::Broken)) => Err(Outcome::Malformed),
            Err(_) => Err(Outcome::Timeout),
        }
    }
}

/// Ends a request: counts it, records it on the request span, answers.
pub(crate) fn finish(metrics: &EndpointMetrics, outcome: Outcome) -> axum::response::Response {
    metrics.count(outcome);
    let span = tracing::Span::current();
    span.record("outcome", outcome.as_str());
    span.record("http.response.status_code", outcome.status().as_u16());
    if outcome.status().is_server_error() {
        span.record("otel.status_code", "ERROR");
    }
    outcome.response()
}

/// Like [`finish`], for a refusal that tells the client when to come back.
pub(crate) fn finish_retry_after(
    metrics: &EndpointMetrics,
    outcome: Outcome,
    seconds: u64,
) -> axum::response::Response {
    let _ = finish(metrics, outcome);
    outcome.response_retry_after(seconds)
}

/// The public routes, behind the admission layer (requests in flight are bounded).
fn router(ingest: Arc<Ingest>, admission: Arc<admission::Admission>) -> Router {
    Router::new()
        .route(WOOCOMMERCE_ROUTE, post(woocommerce::receive))
        .route(NOTICE_ROUTE, post(notices::receive))
        .with_state(ingest)
        .layer(axum::middleware::from_fn_with_state(
            admission,
            admission::admit,
        ))
}

/// A value from the request path (a store id) as it may appear in logs: a valid store id as
/// is, anything else shortened and escaped, so a 60 KB path makes a short log line.
pub(crate) fn log_safe(value: &str) -> std::borrow::Cow<'_, str> {
    if duellsync_events::is_valid_store_id(value) {
        return value.into();
    }
    const KEEP: usize = 64;
    let head: String = value
        .chars()
        .take(KEEP)
        .flat_map(char::escape_debug)
        .collect();
    if value.chars().count() > KEEP {
        format!("{head}…({} bytes)", value.len()).into()
    } else {
        head.into()
    }
}

/// The built service, ready to run.
pub struct App {
    config: Config,
    stores: StoreSource,
    bus: Bus,
    ingest: Arc<Ingest>,
    listener: tokio::net::TcpListener,
    admin: tokio::net::TcpListener,
    /// Built in `build`, because building it installs the metrics recorder, which must exist
    /// before the per-store metric handles are registered.
    admin_router: Router,
    readiness: Readiness,
    loaded: Arc<std::sync::atomic::AtomicBool>,
}

/// Not ready until the stores are known (a delivery before that would be refused as unknown).
struct StoresLoaded(Arc<std::sync::atomic::AtomicBool>);

impl duellsync_telemetry::ReadinessCheck for StoresLoaded {
    fn name(&self) -> &str {
        "stores"
    }
    fn check(&self) -> futures::future::BoxFuture<'_, Result<(), String>> {
        Box::pin(async move {
            if self.0.load(std::sync::atomic::Ordering::SeqCst) {
                Ok(())
            } else {
                Err("reading the store registry".into())
            }
        })
    }
}

impl App {
    /// Connects to NATS, declares the streams and binds both listeners. Fails fast on anything
    /// wrong, before accepting a single request.
    pub async fn build(config: Config, stores: impl Into<StoreSource>) -> anyhow::Result<App> {
        let stores = stores.into();
        duellsync_telemetry::install_crypto_provider();
        config.validate()?;
        let mut bus_options = BusOptions::from_settings(&config.nats, SERVICE);
        // The bus retries unconfirmed publishes internally; it must give up when the request
        // does, so a request never outlives its answer by much.
        bus_options.publish_deadline = config.ingest.publish_timeout;
        let bus = Bus::connect(bus_options).await?;
        bus.ensure_streams().await?;
        let listener = tokio::net::TcpListener::bind(&config.ingest.listen)
            .await
            .with_context(|| format!("binding public address {}", config.ingest.listen))?;
        let admin = tokio::net::TcpListener::bind(&config.admin.listen)
            .await
            .with_context(|| format!("binding admin address {}", config.admin.listen))?;
        let readiness = Readiness::new();
        readiness.add(Arc::new(duellsync_bus::BusReady(bus.clone())));
        let admin_router = duellsync_telemetry::admin_router(readiness.clone());
        let ingest = Arc::new(Ingest::new(&config.ingest, bus.clone()));
        // Fixed stores answer from the first request; registry stores once they are read
        // (readiness waits for that).
        let loaded = Arc::new(std::sync::atomic::AtomicBool::new(false));
        if let StoreSource::Fixed(fixed) = &stores {
            for s in fixed.stores.values() {
                ingest.set_store(Arc::new(StoreEntry::new(
                    s,
                    config.ingest.notice_rate,
                    config.ingest.notice_burst,
                )));
            }
            loaded.store(true, std::sync::atomic::Ordering::SeqCst);
        }
        readiness.add(Arc::new(StoresLoaded(loaded.clone())));
        tracing::info!(
            stores = ingest.store_count(),
            listen = %config.ingest.listen,
            "webhook-ingest built"
        );
        Ok(App {
            config,
            stores,
            loaded,
            bus,
            ingest,
            listener,
            admin,
            admin_router,
            readiness,
        })
    }

    /// The bound public address (port 0 in tests).
    pub fn addr(&self) -> SocketAddr {
        self.listener
            .local_addr()
            .expect("a bound listener has an address")
    }

    pub fn admin_addr(&self) -> SocketAddr {
        self.admin
            .local_addr()
            .expect("a bound listener has an address")
    }

    /// Serves until `shutdown` resolves. Then: `/readyz` turns 503, after `drain_delay` the
    /// listener closes, in-flight requests (and their publishes) finish within
    /// `shutdown_grace`, buffered client writes are flushed, the admin server stops.
    pub async fn run(self, shutdown: impl std::future::Future<Output = ()>) -> anyhow::Result<()> {
        let stop_admin = CancellationToken::new();
        let stop_public = CancellationToken::new();
        let stop = stop_admin.clone();
        let admin = tokio::spawn(
            axum::serve(self.admin, self.admin_router)
                .with_graceful_shutdown(async move { stop.cancelled().await })
                .into_future(),
        );
        let limits = server::Limits {
            max_connections: self.config.ingest.max_connections,
            header_read_timeout: self.config.ingest.header_read_timeout,
            idle_timeout: self.config.ingest.idle_timeout,
            // Reading the body, publishing, answering; a client that stalls past it is cut.
            request_timeout: self.config.ingest.read_timeout
                + self.config.ingest.publish_timeout
                + Duration::from_secs(5),
        };
        let admission = Arc::new(admission::Admission::new(&self.config.ingest));
        let mut public = tokio::spawn(server::serve(
            self.listener,
            router(self.ingest.clone(), admission),
            limits,
            stop_public.clone(),
        ));
        // Stores come and go while the ingest runs; a changed store's new entry replaces the
        // old one before the old one is dropped, so no delivery falls between the two.
        let stop_stores = CancellationToken::new();
        let ingest = self.ingest.clone();
        let loaded = self.loaded.clone();
        let (notice_rate, notice_burst) = (
            self.config.ingest.notice_rate,
            self.config.ingest.notice_burst,
        );
        let supervisor = Supervisor::new(SERVICE, self.bus.clone()).overlap(true);
        let stores_task = tokio::spawn(supervisor.run(
            self.stores,
            stop_stores.clone(),
            move || loaded.store(true, std::sync::atomic::Ordering::SeqCst),
            move |store, run| {
                let ingest = ingest.clone();
                async move {
                    let entry = Arc::new(StoreEntry::new(&store, notice_rate, notice_burst));
                    ingest.set_store(entry.clone());
                    run.tracker.spawn(async move {
                        run.stop.cancelled().await;
                        ingest.remove_store(&entry);
                    });
                    Ok(())
                }
            },
        ));
        tracing::info!(stores = self.ingest.store_count(), "webhook-ingest running");
        let served = tokio::select! {
            _ = shutdown => None,
            r = &mut public => Some(r),
        };
        self.readiness.drain();
        let result = match served {
            // The server stopped on its own: accept() failed for good.
            Some(r) => flatten(r).context("public listener stopped"),
            None => {
                if !self.config.ingest.drain_delay.is_zero() {
                    tokio::time::sleep(self.config.ingest.drain_delay).await;
                }
                stop_public.cancel();
                match tokio::time::timeout(self.config.ingest.shutdown_grace, &mut public).await {
                    Ok(r) => flatten(r).context("public listener"),
                    Err(_) => {
                        tracing::warn!(
                            grace_s = self.config.ingest.shutdown_grace.as_secs(),
                            "in-flight requests did not finish in time; exiting anyway"
                        );
                        public.abort();
                        Ok(())
                    }
                }
            }
        };
        stop_stores.cancel();
        let _ = stores_task.await;
        self.bus.flush().await;
        stop_admin.cancel();
        let _ = admin.await;
        tracing::info!("webhook-ingest stopped");
        result
    }
}

fn flatten(r: Result<std::io::Result<()>, tokio::task::JoinError>) -> anyhow::Result<()> {
    r.map_err(anyhow::Error::from)?.map_err(anyhow::Error::from)
}
