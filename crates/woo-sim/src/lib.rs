//! A WooCommerce 7.9 simulator for tests and the demo.
//!
//! It serves `/wp-json/wc/v3/` and `/wp-json/wc/v2/` from memory with the behaviour captured
//! on a real 7.9.0 store (see `tests/fixtures/woocommerce-samples/`): PHP-style JSON, string
//! prices, offset-less dates with `_gmt` twins, OAuth 1.0a verified exactly like WooCommerce
//! over http, Basic and query-string keys only over https (real TLS with a CA generated at
//! start), SKU rules, stock rules, sale prices and the sale cron, batch semantics, pagination
//! headers, `_fields`, the missing id tie-break on product lists, orders with status side
//! effects, notes, and webhooks with a ping, signed asynchronous deliveries, no retries and
//! auto-disable after the 7th failure.
//!
//! # Starting it in-process
//! ```no_run
//! # async fn demo() -> anyhow::Result<()> {
//! use duellsync_woo_sim::{SimConfig, WooSim};
//! let sim = WooSim::start(SimConfig::default()).await?;
//! let url = sim.base_url();            // http://127.0.0.1:PORT (OAuth 1.0a)
//! let tls = sim.https_base_url();      // Some(https://127.0.0.1:PORT2) (Basic / query keys)
//! let ca = sim.ca_pem();               // trust this for the https listener
//! let (key, secret) = sim.credentials(); // a read_write key
//! # Ok(()) }
//! ```
//!
//! # Control API
//! Under `/__sim/` on both listeners (no authentication; not a WooCommerce route):
//!
//! | Route | Effect |
//! |---|---|
//! | `GET /__sim/health` | `{"ok":true}` |
//! | `GET /__sim/requests` / `DELETE /__sim/requests` | request counts per `METHOD route` (e.g. `"POST products/batch"`, `"PUT products/{id}"`), reset |
//! | `POST /__sim/faults` (a [`FaultRule`]) / `GET` / `DELETE /__sim/faults` | add, list, clear fault rules |
//! | `POST /__sim/products/seed` `{"count":N,"prefix":"SKU-","price":"9.90","stock":5}` | create N simple products |
//! | `POST /__sim/products` (REST product body) | create a product as an admin would |
//! | `PUT /__sim/products/{id}` (REST product body) | edit a product as an admin would (fires `product.updated`) |
//! | `POST /__sim/orders` ([`PlaceOrder`]) | place an order as a customer at checkout |
//! | `PUT /__sim/orders/{id}/status` `{"status":"completed"}` | change an order's status as a person would |
//! | `POST /__sim/cron/sales` | run the daily scheduled-sales job now |
//! | `POST /__sim/webhooks/pause`, `/resume`, `/flush` | control the delivery queue (`flush` delivers everything now) |
//! | `PUT /__sim/webhooks/knobs` ([`DeliveryKnobs`]) | delay, duplicate copies, drop rate |
//! | `GET /__sim/deliveries` | every delivery attempt ([`DeliveryRecord`]) |
//! | `GET /__sim/captures` | payments captured (orders that reached `completed`) |
//! | `PUT /__sim/clock` `{"offset_secs":N}` | shift the simulator's clock |
//! | `PUT /__sim/settings` `{"prices_include_tax":true,"calc_taxes":true,"tax_rates":[…],…}` | store settings (keys below); an unknown key or value is refused with 400 |
//! | `PUT /__sim/settings/preset` `{"preset":"norway"}` | replace the settings with a preset: `norway` ([`Settings::norway`]) or `default` |
//! | `GET /__sim/ca.pem` | the CA certificate of the https listener |
//!
//! Settings keys: `prices_include_tax`, `price_num_decimals`, `manage_stock`, `currency`,
//! `calc_taxes`, `tax_round_at_subtotal`, `shipping_tax_class` (`inherit`, `""` or a class
//! slug), `tax_based_on` (`shipping`, `billing`, `base`), `default_country`, `tax_classes`
//! (names of the additional classes) and `tax_rates` (a list of [`TaxRate`]). The REST API
//! shows them under `/settings/general/…` and `/settings/tax/…`, the rates under `GET /taxes`
//! and `GET /taxes/classes`.
//!
//! # Taxes
//! With `calc_taxes` on, orders carry taxes computed as WooCommerce 7.9 computes them (see the
//! `tax` module): REST-created orders through `calculate_totals` (lines priced without tax,
//! taxes added per line and rounded with the store's tax rounding mode), checkout orders
//! (`POST /__sim/orders`) through the cart's arithmetic in cents; shipping and taxable fees are
//! taxed on top of their amount; `tax_lines`, `shipping_tax`, `cart_tax`, `discount_tax`,
//! `total_tax` and the lines' `taxes` are filled as the real store fills them. Off (the
//! default, as on the captured reference store) every tax is zero.
//!
//! The same operations exist as methods on [`WooSim`]. In-process only (for benchmarks):
//! [`WooSim::product_count`], [`WooSim::peak_concurrency`], and [`WooSim::record_stock_changes`] /
//! [`WooSim::take_stock_changes`], which time every stock value a product write sets.
#![forbid(unsafe_code)]

pub mod faults;
pub mod json;
mod orders;
mod products;
mod server;
pub mod store;
mod tax;
mod tls;
mod webhooks;

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicI64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use rand::SeedableRng as _;
use serde::{Deserialize, Serialize};

pub(crate) use duellsync_woo::webhook_signature::sign;
pub use faults::{FaultKind, FaultRule};
pub use store::{Settings, StockChange, TaxRate};
pub use webhooks::{DeliveryKnobs, DeliveryRecord};

/// Key permissions.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Permissions {
    /// GET/HEAD only.
    Read,
    /// Writes only.
    Write,
    /// Everything.
    ReadWrite,
}

/// A REST API key.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ApiKey {
    /// `ck_...`.
    pub consumer_key: String,
    /// `cs_...`.
    pub consumer_secret: String,
    /// What the key may do.
    pub permissions: Permissions,
}

/// Simulator configuration.
#[derive(Clone, Debug)]
pub struct SimConfig {
    /// Plain-http listener (OAuth 1.0a only, like a real store over http).
    pub bind: SocketAddr,
    /// Also serve https (Basic and query-string keys work there).
    pub https: bool,
    /// The https listener address.
    pub https_bind: SocketAddr,
    /// Accepted keys; the first is returned by [`WooSim::credentials`].
    pub keys: Vec<ApiKey>,
    /// Seed for random faults, drops and the tie shuffle.
    pub seed: u64,
    /// Site timezone offset (local dates = GMT + offset); 0 = UTC.
    pub site_utc_offset_secs: i64,
    /// 7.9-faithful product lists: no id tie-break when ordering by date or modified.
    pub faithful_ordering: bool,
    /// Coalesce deliveries for the same webhook and resource while one is pending.
    pub coalesce_deliveries: bool,
    /// Initial delivery knobs.
    pub delivery: DeliveryKnobs,
    /// Timeout of a webhook delivery (WooCommerce: 60 s).
    pub delivery_timeout: Duration,
    /// Timeout of a ping (WooCommerce: 5 s).
    pub ping_timeout: Duration,
    /// Hosts the simulator may contact for image downloads, pings and deliveries. Anything
    /// else fails like WordPress' safe-URL check ("A valid URL was not provided.").
    pub allowed_hosts: Vec<String>,
    /// Treat `X-Forwarded-Proto: https` as https (the lab store's setup).
    pub trust_forwarded_proto: bool,
    /// How long a "hang" fault holds a request.
    pub hang: Duration,
    /// The store's settings at start: currency, decimals, prices with or without tax, tax rates
    /// ([`Settings::norway`] for a Norwegian shop).
    pub settings: Settings,
    /// How long each item of a product batch takes (a real WooCommerce 7.9 store takes about
    /// 0.2 s per created product: a batch of 100 runs ~20 s). A batch always runs to its end,
    /// even when the client timed out or disconnected, as PHP does.
    pub batch_item_time: Duration,
    /// WooCommerce's SKU check is not atomic: a create checks uniqueness, spends
    /// `batch_item_time` (image downloads, saving), then stores, so two overlapping creates of
    /// one SKU both succeed. Off: the check and the insert are one step.
    pub racy_sku_check: bool,
}

impl Default for SimConfig {
    fn default() -> Self {
        SimConfig {
            bind: SocketAddr::from(([127, 0, 0, 1], 0)),
            https: true,
            https_bind: SocketAddr::from(([127, 0, 0, 1], 0)),
            keys: vec![ApiKey {
                consumer_key: "ck_woosim_0000000000000000000000000000000000".into(),
                consumer_secret: "cs_woosim_0000000000000000000000000000000000".into(),
                permissions: Permissions::ReadWrite,
            }],
            seed: 7,
            site_utc_offset_secs: 0,
            faithful_ordering: true,
            coalesce_deliveries: true,
            delivery: DeliveryKnobs::default(),
            delivery_timeout: Duration::from_secs(60),
            ping_timeout: Duration::from_secs(5),
            allowed_hosts: vec!["127.0.0.1".into(), "localhost".into()],
            trust_forwarded_proto: true,
            hang: Duration::from_secs(600),
            settings: Settings::default(),
            batch_item_time: Duration::ZERO,
            racy_sku_check: true,
        }
    }
}

/// An order placed as a customer would at checkout (control API).
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct PlaceOrder {
    /// Lines by product id, variation id or SKU.
    pub lines: Vec<PlaceLine>,
    /// Billing address fields (`first_name`, `email`, `phone`, ...).
    #[serde(default)]
    pub billing: BTreeMap<String, Option<String>>,
    /// Shipping address fields.
    #[serde(default)]
    pub shipping: BTreeMap<String, String>,
    /// Shipping line.
    #[serde(default)]
    pub shipping_line: Option<PlaceShipping>,
    /// Fee line.
    #[serde(default)]
    pub fee: Option<PlaceFee>,
    /// Coupon code and discount amount.
    #[serde(default)]
    pub coupon: Option<PlaceCoupon>,
    /// Status after checkout: `processing` (paid, default), `pending`, `on-hold`.
    #[serde(default)]
    pub status: Option<String>,
    /// Payment method id.
    #[serde(default)]
    pub payment_method: Option<String>,
    /// The customer's note.
    #[serde(default)]
    pub customer_note: Option<String>,
}

/// A line of [`PlaceOrder`].
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct PlaceLine {
    /// Product id.
    #[serde(default)]
    pub product_id: Option<u64>,
    /// SKU.
    #[serde(default)]
    pub sku: Option<String>,
    /// Quantity.
    pub quantity: i64,
}

/// Shipping of [`PlaceOrder`].
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct PlaceShipping {
    /// Method id.
    pub method_id: String,
    /// Title.
    pub method_title: String,
    /// Cost without tax (shipping costs are entered without tax even where prices include it).
    pub total: String,
}

/// Fee of [`PlaceOrder`] (`WC_Cart::add_fee`): an amount without tax.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct PlaceFee {
    /// Name.
    pub name: String,
    /// Amount, without tax.
    pub total: String,
    /// Whether tax is added (WooCommerce's default: no).
    #[serde(default)]
    pub taxable: bool,
    /// Tax class slug of a taxable fee (`""` = standard).
    #[serde(default)]
    pub tax_class: String,
}

/// Coupon of [`PlaceOrder`]: a `fixed_cart` coupon.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct PlaceCoupon {
    /// Code.
    pub code: String,
    /// Discount amount as the customer sees prices (with tax when prices include tax), spread
    /// over the units as WooCommerce does: whole cents per unit, the rest a cent at a time.
    pub amount: String,
}

pub(crate) struct Shared {
    pub cfg: SimConfig,
    pub state: Mutex<store::State>,
    pub clock_offset: AtomicI64,
    pub counts: Mutex<BTreeMap<String, u64>>,
    pub faults: Mutex<Vec<FaultRule>>,
    pub rng: Mutex<rand::rngs::StdRng>,
    pub http: reqwest::Client,
    pub home_http: OnceLock<String>,
    pub home_https: OnceLock<String>,
    pub hooks: webhooks::Hooks,
    pub ca_pem: Option<String>,
    /// REST requests being served right now, and the most at once since the last reset.
    pub in_flight: AtomicUsize,
    pub peak_in_flight: AtomicUsize,
}

impl Shared {
    pub fn now(&self) -> i64 {
        let real = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_secs() as i64)
            .unwrap_or_default();
        real + self.clock_offset.load(Ordering::SeqCst)
    }

    pub fn home_http(&self) -> String {
        self.home_http.get().cloned().unwrap_or_default()
    }

    pub fn outgoing_allowed(&self, url: &str) -> bool {
        match url::Url::parse(url) {
            Ok(u) => {
                matches!(u.scheme(), "http" | "https")
                    && u.host_str()
                        .is_some_and(|h| self.cfg.allowed_hosts.iter().any(|a| a == h))
            }
            Err(_) => false,
        }
    }
}

/// A running simulator. Dropping it stops the listeners.
pub struct WooSim {
    shared: Arc<Shared>,
    http_addr: SocketAddr,
    https_addr: Option<SocketAddr>,
    tasks: Vec<tokio::task::JoinHandle<()>>,
}

impl std::fmt::Debug for WooSim {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WooSim")
            .field("http", &self.http_addr)
            .field("https", &self.https_addr)
            .finish()
    }
}

impl Drop for WooSim {
    fn drop(&mut self) {
        for t in &self.tasks {
            t.abort();
        }
    }
}

impl WooSim {
    /// Binds the listeners (port 0 by default) and starts serving.
    pub async fn start(cfg: SimConfig) -> anyhow::Result<WooSim> {
        let _ = rustls::crypto::ring::default_provider().install_default();
        let tls = if cfg.https {
            Some(tls::generate()?)
        } else {
            None
        };
        let http = reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .build()?;
        let shared = Arc::new(Shared {
            rng: Mutex::new(rand::rngs::StdRng::seed_from_u64(cfg.seed)),
            hooks: webhooks::Hooks::new(cfg.coalesce_deliveries, cfg.delivery.clone()),
            cfg: cfg.clone(),
            state: Mutex::new(store::State::with_settings(cfg.settings.clone())),
            clock_offset: AtomicI64::new(0),
            counts: Mutex::new(BTreeMap::new()),
            faults: Mutex::new(Vec::new()),
            http,
            home_http: OnceLock::new(),
            home_https: OnceLock::new(),
            ca_pem: tls.as_ref().map(|t| t.ca_pem.clone()),
            in_flight: AtomicUsize::new(0),
            peak_in_flight: AtomicUsize::new(0),
        });
        let mut tasks = Vec::new();
        let listener = tokio::net::TcpListener::bind(cfg.bind).await?;
        let http_addr = listener.local_addr()?;
        let _ = shared.home_http.set(format!("http://{http_addr}"));
        let app = server::router(shared.clone(), false);
        tasks.push(tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        }));
        let mut https_addr = None;
        if let Some(tls) = tls {
            let tcp = tokio::net::TcpListener::bind(cfg.https_bind).await?;
            let addr = tcp.local_addr()?;
            https_addr = Some(addr);
            let _ = shared.home_https.set(format!("https://{addr}"));
            let app = server::router(shared.clone(), true);
            let listener = tls::TlsListener {
                tcp,
                acceptor: tls.acceptor,
            };
            tasks.push(tokio::spawn(async move {
                let _ = axum::serve(listener, app).await;
            }));
        }
        tasks.push(tokio::spawn(webhooks::worker(shared.clone())));
        Ok(WooSim {
            shared,
            http_addr,
            https_addr,
            tasks,
        })
    }

    /// `http://127.0.0.1:PORT`: the store's "home" for OAuth 1.0a over http.
    pub fn base_url(&self) -> String {
        format!("http://{}", self.http_addr)
    }

    /// `https://127.0.0.1:PORT` when https is on.
    pub fn https_base_url(&self) -> Option<String> {
        self.https_addr.map(|a| format!("https://{a}"))
    }

    /// PEM of the CA that signed the https certificate.
    pub fn ca_pem(&self) -> Option<String> {
        self.shared.ca_pem.clone()
    }

    /// The first configured key and secret.
    pub fn credentials(&self) -> (String, String) {
        self.shared
            .cfg
            .keys
            .first()
            .map(|k| (k.consumer_key.clone(), k.consumer_secret.clone()))
            .unwrap_or_default()
    }

    /// Requests received per `METHOD route` (route without the `wc/vN/` prefix, numeric
    /// segments as `{id}`), e.g. `"POST products/batch"`.
    pub fn request_counts(&self) -> BTreeMap<String, u64> {
        self.shared
            .counts
            .lock()
            .map(|c| c.clone())
            .unwrap_or_default()
    }

    /// One count, 0 if never seen.
    pub fn request_count(&self, key: &str) -> u64 {
        self.request_counts().get(key).copied().unwrap_or(0)
    }

    /// Resets the request counts.
    pub fn reset_request_counts(&self) {
        if let Ok(mut c) = self.shared.counts.lock() {
            c.clear();
        }
    }

    /// Adds a fault rule.
    pub fn add_fault(&self, rule: FaultRule) {
        if let Ok(mut f) = self.shared.faults.lock() {
            f.push(rule);
        }
    }

    /// Removes all fault rules.
    pub fn clear_faults(&self) {
        if let Ok(mut f) = self.shared.faults.lock() {
            f.clear();
        }
    }

    /// Pauses webhook deliveries (queued jobs wait).
    pub fn pause_deliveries(&self) {
        self.shared.hooks.paused.store(true, Ordering::SeqCst);
    }

    /// Resumes webhook deliveries.
    pub fn resume_deliveries(&self) {
        self.shared.hooks.paused.store(false, Ordering::SeqCst);
    }

    /// Delivers every queued webhook now and waits for them.
    pub async fn flush_deliveries(&self) {
        webhooks::flush(&self.shared).await;
    }

    /// Jobs still queued.
    pub fn pending_deliveries(&self) -> usize {
        self.shared.hooks.pending()
    }

    /// Sets the delivery knobs.
    pub fn set_delivery_knobs(&self, knobs: DeliveryKnobs) {
        if let Ok(mut k) = self.shared.hooks.knobs.lock() {
            *k = knobs;
        }
    }

    /// Every delivery attempt so far.
    pub fn deliveries(&self) -> Vec<DeliveryRecord> {
        self.shared
            .hooks
            .log
            .lock()
            .map(|l| l.clone())
            .unwrap_or_default()
    }

    /// Runs the daily sale job now; returns the products it changed.
    pub fn run_sale_cron(&self) -> Vec<u64> {
        server::run_sale_cron(&self.shared)
    }

    /// Shifts the simulator's clock by `secs` (relative to real time).
    pub fn set_clock_offset(&self, secs: i64) {
        self.shared.clock_offset.store(secs, Ordering::SeqCst);
    }

    /// Places an order as a customer at checkout; returns the order id.
    pub fn place_order(&self, order: &PlaceOrder) -> Result<u64, String> {
        server::place_order(&self.shared, order)
    }

    /// Changes an order's status as a shop manager would in the admin.
    pub fn set_order_status(&self, id: u64, status: &str) -> Result<(), String> {
        server::admin_order_status(&self.shared, id, status)
    }

    /// Creates (`id: None`) or edits a product as an admin would, with a REST-shaped body.
    pub fn admin_write_product(
        &self,
        id: Option<u64>,
        body: serde_json::Value,
    ) -> Result<u64, String> {
        server::admin_write_product(&self.shared, id, body)
    }

    /// Creates `count` simple products `{prefix}{n}` with managed stock; returns their ids.
    pub fn seed_products(&self, count: usize, prefix: &str, price: &str, stock: i64) -> Vec<u64> {
        server::seed_products(&self.shared, count, prefix, price, stock)
    }

    /// A product as the REST API would show it (edit context), if it exists.
    pub fn product_json(&self, id: u64) -> Option<serde_json::Value> {
        server::product_json(&self.shared, id)
    }

    /// Every attachment in the media library as (id, file name); each image download makes one.
    pub fn attachments(&self) -> Vec<(u64, String)> {
        self.shared
            .state
            .lock()
            .map(|s| {
                s.attachments
                    .values()
                    .map(|a| (a.id, a.file_name.clone()))
                    .collect()
            })
            .unwrap_or_default()
    }

    /// An order as the REST API would show it, if it exists.
    pub fn order_json(&self, id: u64) -> Option<serde_json::Value> {
        server::order_json(&self.shared, id)
    }

    /// The stored webhook failure count (REST never shows it).
    pub fn webhook_failure_count(&self, id: u64) -> Option<u32> {
        self.shared
            .state
            .lock()
            .ok()
            .and_then(|s| s.webhooks.get(&id).map(|w| w.failure_count))
    }

    /// Orders whose payment was captured (reached `completed`).
    pub fn captured_orders(&self) -> Vec<u64> {
        self.shared
            .state
            .lock()
            .map(|s| s.captures.iter().map(|c| c.order_id).collect())
            .unwrap_or_default()
    }

    /// Ids of the products (not variations) that are not in the trash, ascending.
    pub fn product_ids(&self) -> Vec<u64> {
        self.shared
            .state
            .lock()
            .map(|s| {
                s.products
                    .values()
                    .filter(|p| !p.is_variation() && !p.is_trashed())
                    .map(|p| p.id)
                    .collect()
            })
            .unwrap_or_default()
    }

    /// Products (not variations) that are not in the trash. Cheap: no rendering.
    pub fn product_count(&self) -> usize {
        self.shared
            .state
            .lock()
            .map(|s| {
                s.products
                    .values()
                    .filter(|p| !p.is_variation() && !p.is_trashed())
                    .count()
            })
            .unwrap_or_default()
    }

    /// The most REST requests (`/wp-json/…`) served at the same time since the start or the
    /// last [`WooSim::reset_peak_concurrency`]: the concurrency a client really used.
    pub fn peak_concurrency(&self) -> usize {
        self.shared.peak_in_flight.load(Ordering::SeqCst)
    }

    /// Restarts [`WooSim::peak_concurrency`] from the requests in flight now.
    pub fn reset_peak_concurrency(&self) {
        let now = self.shared.in_flight.load(Ordering::SeqCst);
        self.shared.peak_in_flight.store(now, Ordering::SeqCst);
    }

    /// Starts (`true`, clearing what was recorded) or stops recording every stock value a
    /// product write sets, with the moment it was applied (in-process only; benchmarks use it to
    /// time "observed → written" independently of the engine's own metrics).
    pub fn record_stock_changes(&self, on: bool) {
        if let Ok(mut s) = self.shared.state.lock() {
            s.stock_changes = on.then(Vec::new);
        }
    }

    /// Takes the stock changes recorded so far (recording stays on if it was).
    pub fn take_stock_changes(&self) -> Vec<StockChange> {
        self.shared
            .state
            .lock()
            .ok()
            .and_then(|mut s| s.stock_changes.as_mut().map(std::mem::take))
            .unwrap_or_default()
    }

    /// Store settings.
    pub fn set_settings(
        &self,
        prices_include_tax: Option<bool>,
        price_num_decimals: Option<u32>,
        manage_stock: Option<bool>,
    ) {
        if let Ok(mut s) = self.shared.state.lock() {
            if let Some(v) = prices_include_tax {
                s.settings.prices_include_tax = v;
            }
            if let Some(v) = price_num_decimals {
                s.settings.price_num_decimals = v;
            }
            if let Some(v) = manage_stock {
                s.settings.manage_stock = v;
            }
        }
    }

    /// The store's settings now (taxes included).
    pub fn settings(&self) -> Settings {
        self.shared
            .state
            .lock()
            .map(|s| s.settings.clone())
            .unwrap_or_default()
    }

    /// Replaces the store's settings, as an admin changing WooCommerce → Settings would. Existing
    /// orders keep their amounts; new orders and recalculations use the new settings.
    pub fn replace_settings(&self, settings: Settings) {
        if let Ok(mut s) = self.shared.state.lock() {
            s.settings = settings;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn client_with_timeout(sim: &WooSim, timeout: Duration) -> duellsync_woo::WooClient {
        let (ck, cs) = sim.credentials();
        let mut c =
            duellsync_woo::ClientConfig::new(sim.base_url(), ck, secrecy::SecretString::from(cs));
        c.timeout = timeout;
        duellsync_woo::WooClient::new(c).unwrap()
    }

    /// A simulator on plain http with the default settings.
    async fn plain_sim() -> WooSim {
        WooSim::start(SimConfig {
            https: false,
            ..SimConfig::default()
        })
        .await
        .unwrap()
    }

    fn create(sku: &str) -> duellsync_woo::ProductWrite {
        duellsync_woo::ProductWrite {
            name: Some(format!("Product {sku}")),
            sku: Some(sku.to_owned()),
            ..duellsync_woo::ProductWrite::default()
        }
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_batch_keeps_running_after_the_client_gave_up() {
        let sim = WooSim::start(SimConfig {
            https: false,
            batch_item_time: Duration::from_millis(40),
            ..SimConfig::default()
        })
        .await
        .unwrap();
        let client = client_with_timeout(&sim, Duration::from_millis(100));
        let batch = duellsync_woo::Batch {
            create: (0..10).map(|n| create(&format!("B-{n}"))).collect(),
            ..duellsync_woo::Batch::default()
        };
        let err = client.batch_products(&batch).await.unwrap_err();
        assert!(
            matches!(err, duellsync_woo::Error::OutcomeUnknown { .. }),
            "{err:?}"
        );
        assert!(sim.product_count() < 10, "the client left before the end");
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        while sim.product_count() < 10 && std::time::Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        assert_eq!(sim.product_count(), 10, "the orphaned batch ran to its end");
    }

    async fn concurrent_creates_of_one_sku(racy: bool) -> usize {
        let sim = WooSim::start(SimConfig {
            https: false,
            batch_item_time: Duration::from_millis(100),
            racy_sku_check: racy,
            ..SimConfig::default()
        })
        .await
        .unwrap();
        let client = client_with_timeout(&sim, Duration::from_secs(10));
        let batch = duellsync_woo::Batch {
            create: vec![create("SAME")],
            ..duellsync_woo::Batch::default()
        };
        let (a, b) = tokio::join!(client.batch_products(&batch), client.batch_products(&batch));
        let ok = |r: duellsync_woo::Result<duellsync_woo::BatchResult<duellsync_woo::Product>>| {
            r.unwrap()
                .create
                .into_iter()
                .filter(|i| matches!(i, duellsync_woo::BatchItem::Ok(_)))
                .count()
        };
        let created = ok(a) + ok(b);
        assert_eq!(created, sim.product_count());
        created
    }

    /// Issue 13 defect 3 (b): an update that carries an image `src` is not idempotent (each
    /// send makes a new attachment), so the client does not repeat it after a timeout.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn an_update_that_downloads_an_image_is_not_repeated_after_a_timeout() {
        let images = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let image_url = format!("http://{}/shirt.png", images.local_addr().unwrap());
        tokio::spawn(async move {
            let app = axum::Router::new().route(
                "/shirt.png",
                axum::routing::get(|| async { vec![0x89u8, b'P', b'N', b'G'] }),
            );
            axum::serve(images, app).await.unwrap();
        });
        let sim = WooSim::start(SimConfig {
            https: false,
            hang: Duration::from_secs(2),
            ..SimConfig::default()
        })
        .await
        .unwrap();
        let id = sim
            .admin_write_product(None, serde_json::json!({"name": "Shirt", "sku": "S-1"}))
            .unwrap();
        sim.add_fault(FaultRule::next(
            "POST",
            "products/batch",
            1,
            FaultKind::HangAfterApply,
        ));
        let client = client_with_timeout(&sim, Duration::from_millis(500));
        let batch = duellsync_woo::Batch {
            update: vec![duellsync_woo::ProductWrite {
                id: Some(id),
                images: Some(vec![duellsync_woo::ImageWrite {
                    src: Some(image_url),
                    ..duellsync_woo::ImageWrite::default()
                }]),
                ..duellsync_woo::ProductWrite::default()
            }],
            ..duellsync_woo::Batch::default()
        };
        let err = client.batch_products(&batch).await.unwrap_err();
        assert!(
            matches!(err, duellsync_woo::Error::OutcomeUnknown { .. }),
            "{err:?}"
        );
        assert_eq!(sim.request_count("POST products/batch"), 1, "not repeated");
        assert_eq!(sim.attachments().len(), 1);
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn concurrent_creates_of_one_sku_both_succeed_as_on_a_real_store() {
        assert_eq!(concurrent_creates_of_one_sku(true).await, 2);
        assert_eq!(concurrent_creates_of_one_sku(false).await, 1);
    }

    #[tokio::test]
    async fn records_the_stock_values_product_writes_set_only_while_asked() {
        let sim = plain_sim().await;
        let early = sim
            .admin_write_product(
                None,
                serde_json::json!({"name": "Early", "sku": "E-1", "manage_stock": true, "stock_quantity": 1}),
            )
            .unwrap();
        sim.record_stock_changes(true);
        let id = sim
            .admin_write_product(
                None,
                serde_json::json!({"name": "Mug", "sku": "M-1", "manage_stock": true, "stock_quantity": 5}),
            )
            .unwrap();
        sim.admin_write_product(Some(id), serde_json::json!({"stock_quantity": 7}))
            .unwrap();
        sim.admin_write_product(Some(id), serde_json::json!({"name": "Big mug"}))
            .unwrap();
        sim.admin_write_product(Some(early), serde_json::json!({"stock_quantity": 1}))
            .unwrap();
        let changes = sim.take_stock_changes();
        let seen: Vec<(u64, &str, Option<i64>)> = changes
            .iter()
            .map(|c| (c.product_id, c.sku.as_str(), c.stock_quantity))
            .collect();
        assert_eq!(seen, vec![(id, "M-1", Some(5)), (id, "M-1", Some(7))]);
        assert!(changes[0].at <= changes[1].at);
        assert!(sim.take_stock_changes().is_empty(), "taken once");
        assert_eq!(sim.product_count(), 2);

        sim.record_stock_changes(false);
        sim.admin_write_product(Some(id), serde_json::json!({"stock_quantity": 9}))
            .unwrap();
        assert!(sim.take_stock_changes().is_empty(), "off records nothing");
    }

    #[tokio::test]
    async fn the_control_api_configures_taxes_and_refuses_what_it_cannot_apply() {
        let sim = plain_sim().await;
        let http = reqwest::Client::new();
        let put = |path: &str, body: serde_json::Value| {
            http.put(format!("{}/__sim/{path}", sim.base_url()))
                .json(&body)
                .send()
        };
        let r = put(
            "settings",
            serde_json::json!({
                "calc_taxes": true, "prices_include_tax": true, "currency": "NOK",
                "tax_classes": ["Food"], "tax_round_at_subtotal": true,
                "tax_rates": [{"id": 9, "country": "NO", "rate": "25", "name": "MVA"},
                              {"id": 10, "country": "NO", "rate": 15, "name": "MVA", "class": "food"}]
            }),
        )
        .await
        .unwrap();
        assert_eq!(r.status(), 200, "{}", r.text().await.unwrap());
        let s = sim.settings();
        assert!(s.calc_taxes && s.prices_include_tax && s.tax_round_at_subtotal);
        assert_eq!(s.tax_rates.len(), 2);
        assert!(
            s.tax_rates[0].shipping,
            "rates apply to shipping unless told"
        );
        assert_eq!(s.tax_rates[1].rate, rust_decimal::Decimal::from(15));

        for (body, says) in [
            (serde_json::json!({"calc_taxs": true}), "unknown setting"),
            (serde_json::json!({"calc_taxes": "yes"}), "true or false"),
            (
                serde_json::json!({"tax_rates": [{"id": 1, "rate": "25", "class": "nope"}]}),
                "not one of the tax classes",
            ),
            (
                serde_json::json!({"tax_rates": [{"id": 1}]}),
                "tax_rates must be",
            ),
            (serde_json::json!({"tax_based_on": "moon"}), "tax_based_on"),
        ] {
            let r = put("settings", body.clone()).await.unwrap();
            assert_eq!(r.status(), 400, "{body}");
            let text = r.text().await.unwrap();
            assert!(text.contains(says), "{body}: {text}");
        }
        assert_eq!(sim.settings(), s, "a refused body changes nothing");

        let r = put("settings/preset", serde_json::json!({"preset": "norway"}))
            .await
            .unwrap();
        assert_eq!(r.status(), 200);
        assert_eq!(sim.settings(), Settings::norway());
        let r = put("settings/preset", serde_json::json!({"preset": "mars"}))
            .await
            .unwrap();
        assert_eq!(r.status(), 400);
    }

    #[tokio::test]
    async fn keeps_the_peak_number_of_requests_served_at_once() {
        let sim = plain_sim().await;
        sim.add_fault(FaultRule {
            method: None,
            route: None,
            path_contains: None,
            query_contains: None,
            kind: FaultKind::Latency { ms: 200 },
            times: None,
            probability: None,
        });
        let http = reqwest::Client::new();
        let url = format!("{}/wp-json/wc/v3/products", sim.base_url());
        let get = || http.get(&url).send();
        let (a, b, c) = tokio::join!(get(), get(), get());
        for r in [a, b, c] {
            r.unwrap();
        }
        assert_eq!(sim.peak_concurrency(), 3);
        sim.reset_peak_concurrency();
        assert_eq!(sim.peak_concurrency(), 0);
        get().await.unwrap();
        assert_eq!(sim.peak_concurrency(), 1);
    }

    /// A slow answer shows the store as it was when the request was processed: the reader of
    /// a catalogue page must not take a product missing from it as gone if it was made later.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_slow_answer_describes_the_store_when_the_request_was_processed() {
        let sim = plain_sim().await;
        sim.add_fault(FaultRule {
            query_contains: Some("orderby=id".into()),
            ..FaultRule::next("GET", "products", 1, FaultKind::SlowAnswer { ms: 600 })
        });
        let client = client_with_timeout(&sim, Duration::from_secs(10));
        let query = duellsync_woo::ProductQuery {
            orderby: Some(duellsync_woo::OrderBy::Id),
            ..duellsync_woo::ProductQuery::default()
        };
        let slow = tokio::spawn({
            let client = client.clone();
            let query = query.clone();
            async move { client.list_products(&query).await }
        });
        tokio::time::sleep(Duration::from_millis(200)).await;
        let made = sim.seed_products(1, "LATE-", "10", 1);
        let early = slow.await.unwrap().unwrap();
        assert!(
            early.items.is_empty(),
            "answered with the store before the product was made"
        );
        // Only the matching request was slowed, and only once.
        let now = client.list_products(&query).await.unwrap();
        assert_eq!(now.items.iter().map(|p| p.id).collect::<Vec<_>>(), made);
    }
}
