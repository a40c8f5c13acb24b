//! `spawn_app()`: the order importer in-process on port 0, against a private nats-server, a temp
//! state dir, and in-process WooCommerce and DUELL simulators; plus helpers to place orders in
//! WooCommerce, publish what a source would, and read what the importer appended.
#![allow(dead_code)]

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use duellsync_bus::{Bus, BusOptions, StoredMessage};
use duellsync_duell_sim::{DuellSim, NewSimProduct};
use duellsync_events::{meta, order_correlation, sha256_hex, v1, Event, EventId};
use duellsync_order_importer::{App, Config};
use duellsync_test_support::sandbox::StoreFile;
use duellsync_test_support::NatsServer;
use duellsync_woo_sim::{PlaceLine, PlaceOrder, WooSim};
use rust_decimal::Decimal;
use serde_json::Value;
use tokio::sync::oneshot;

pub const STORE: &str = "s1";

/// What a test may change before the app starts.
pub struct Setup {
    /// Extra top-level store settings (`create_customer_order = false`).
    pub settings: Vec<String>,
    /// Extra store sections (`[orders]` …).
    pub sections: String,
    /// DUELL simulator configuration.
    pub duell: duellsync_duell_sim::SimConfig,
    /// The WooCommerce store's settings (taxes, currency): a Norwegian shop with VAT by default,
    /// `Settings::default()` for a store that computes no taxes.
    pub woo: duellsync_woo_sim::Settings,
    /// Importer configuration (NATS, paths and ports are filled in).
    pub config: Config,
    /// Environment for the store files (`DUELLSYNC_STORES__S1__DUELL__ORDER_LOOKUP=true`).
    pub env: Vec<(String, String)>,
}

impl Setup {
    /// Turns the UNVERIFIED DUELL order lookup on.
    pub fn lookup_on(&mut self) {
        self.env.push((
            "DUELLSYNC_STORES__S1__DUELL__ORDER_LOOKUP".into(),
            "true".into(),
        ));
    }
}

pub struct TestApp {
    pub nats: NatsServer,
    pub bus: Bus,
    pub duell: DuellSim,
    pub woo: WooSim,
    pub admin: SocketAddr,
    dir: tempfile::TempDir,
    config: Config,
    /// The store file (the test builds the app's stores from it).
    stores_path: std::path::PathBuf,
    env: Vec<(String, String)>,
    stop_tx: Option<oneshot::Sender<()>>,
    handle: Option<tokio::task::JoinHandle<anyhow::Result<()>>>,
    /// The running importer's state (dropped on stop, so a restart can open it again).
    state: Option<duellsync_store::Store>,
}

pub async fn spawn_app() -> TestApp {
    spawn_app_with(|_| {}).await
}

pub async fn spawn_app_with(f: impl FnOnce(&mut Setup)) -> TestApp {
    duellsync_test_support::init_tracing();
    let nats = NatsServer::start();
    let dir = tempfile::tempdir().expect("temp dir");
    let mut config = Config::default();
    config.importer.duell_timeout = Duration::from_secs(2);
    config.importer.lookup_settle = Duration::from_millis(300);
    config.importer.ack_wait = Duration::from_secs(5);
    config.importer.backoff_cap = Duration::from_millis(300);
    let mut setup = Setup {
        settings: Vec::new(),
        sections: String::new(),
        duell: duellsync_duell_sim::SimConfig {
            products: 10,
            customers: 0,
            ..Default::default()
        },
        // A Norwegian shop, as the engine's users run: prices with VAT, VAT on shipping.
        woo: duellsync_woo_sim::Settings::norway(),
        config,
        env: Vec::new(),
    };
    f(&mut setup);
    let duell = DuellSim::start(setup.duell.clone())
        .await
        .expect("duell-sim starts");
    let woo = WooSim::start(duellsync_woo_sim::SimConfig {
        https: false,
        settings: setup.woo.clone(),
        ..Default::default()
    })
    .await
    .expect("woo-sim starts");
    let (ck, cs) = woo.credentials();
    let file = StoreFile {
        id: STORE.into(),
        woo_url: woo.base_url(),
        consumer_key: ck,
        consumer_secret: cs,
        webhook_secret: "hooksecret1".into(),
        webhook_delivery_url: String::new(),
        duell_url: duell.base_url(),
        client_number: duell.client_number().into(),
        client_token: duell.client_token().into(),
        stock_department: duell.department_token(1).expect("department 1"),
        order_department: duell.department_token(2).expect("department 2"),
        notice_secret: String::new(),
        settings: setup.settings.clone(),
        sections: setup.sections.clone(),
    };
    let stores_path = dir.path().join("stores");
    std::fs::create_dir_all(&stores_path).expect("stores dir");
    std::fs::write(stores_path.join(format!("{STORE}.toml")), file.to_toml()).expect("store file");
    let mut config = setup.config;
    config.nats.url = nats.url();
    config.state_dir = dir.path().join("state");
    config.admin.listen = "127.0.0.1:0".into();
    let bus = Bus::connect(BusOptions::new(nats.url(), "test"))
        .await
        .expect("bus connects");
    let mut app = TestApp {
        nats,
        bus,
        duell,
        woo,
        admin: "127.0.0.1:0".parse().expect("addr"),
        dir,
        config,
        stores_path,
        env: setup.env,
        stop_tx: None,
        handle: None,
        state: None,
    };
    app.start().await;
    app
}

impl TestApp {
    async fn start(&mut self) {
        let stores = duellsync_settings::load_stores(&self.stores_path, &self.env)
            .expect("store settings are valid");
        let app = App::build(self.config.clone(), stores)
            .await
            .expect("app builds");
        self.admin = app.admin_addr();
        self.state = Some(app.state());
        let (tx, rx) = oneshot::channel::<()>();
        self.stop_tx = Some(tx);
        self.handle = Some(tokio::spawn(app.run(async move {
            let _ = rx.await;
        })));
    }

    /// Graceful stop (as on SIGTERM); the state stays.
    pub async fn stop(&mut self) {
        if let Some(tx) = self.stop_tx.take() {
            let _ = tx.send(());
        }
        if let Some(h) = self.handle.take() {
            h.await.expect("app task").expect("app stops cleanly");
        }
        self.state = None;
    }

    fn state(&self) -> &duellsync_store::Store {
        self.state.as_ref().expect("the importer runs")
    }

    /// The importer's ledger entry of an order (read while it runs).
    pub fn ledger(&self, woo_id: i64) -> Option<duellsync_orders::OrderRecord> {
        duellsync_order_importer::ledger_entry(self.state(), STORE, woo_id)
            .expect("ledger readable")
    }

    /// Whether the importer keeps a body for the order (read while it runs).
    pub fn body_stored(&self, woo_id: i64) -> bool {
        let bodies: duellsync_store::Table<(String, i64), Value> =
            self.state().table("importer_bodies");
        bodies
            .contains(&(STORE.into(), woo_id))
            .expect("bodies readable")
    }

    /// Waits until DUELL has a customer order for `woo_id`, then until the importer is idle.
    pub async fn customer_order_made(&self, woo_id: i64) {
        eventually(&format!("a customer order for {woo_id}"), WAIT, || {
            (!self.customer_orders_for(woo_id).is_empty()).then_some(())
        })
        .await;
        self.drained().await;
    }

    /// Flushes of the importer's state so far.
    pub fn flushes(&self) -> u64 {
        self.state().flushes().get()
    }

    /// Atomic multi-write batches of the importer's state so far.
    pub fn batches(&self) -> u64 {
        self.state().batches().get()
    }

    /// Waits until the ledger was completed from the import markers in WooCommerce.
    pub async fn markers_restored(&self) {
        eventually("the import markers to be read", WAIT, || {
            duellsync_order_importer::markers_restored(self.state(), STORE)
                .expect("state readable")
                .then_some(())
        })
        .await
    }

    /// Stops and starts the importer again on the same state.
    pub async fn restart(&mut self) {
        self.stop().await;
        self.start().await;
    }

    /// A WooCommerce client for the store, configured as the importer configures its own.
    pub fn woo_client(&self) -> duellsync_woo::WooClient {
        let stores = duellsync_settings::load_stores(&self.stores_path, &self.env)
            .expect("store settings are valid");
        let store = stores.get(STORE).expect("the store");
        duellsync_clients::woo_client(store).expect("woo client")
    }

    /// Starts the importer again after [`TestApp::stop`].
    pub async fn start_again(&mut self) {
        self.start().await;
    }

    pub fn state_dir(&self) -> PathBuf {
        self.config.state_dir.clone()
    }

    /// A product with this SKU in both DUELL (stock 10) and WooCommerce; returns (DUELL id,
    /// WooCommerce id).
    pub fn product(&self, sku: &str, price: &str) -> (u64, u64) {
        let d = self.duell_product(sku, price);
        let w = self.woo_product(sku, price);
        (d, w)
    }

    pub fn duell_product(&self, sku: &str, price: &str) -> u64 {
        self.duell
            .create_product(NewSimProduct {
                product_name: format!("Vare {sku}"),
                product_number: Some(sku.into()),
                price_inc_vat: Some(price.parse().expect("price")),
                stock: Some(Decimal::from(10)),
                ..Default::default()
            })
            .product_id
    }

    pub fn woo_product(&self, sku: &str, price: &str) -> u64 {
        self.woo_product_in(sku, price, "")
    }

    /// A WooCommerce product in a tax class (`""` standard, `food`, `reduced-rate`, `zero-rate`).
    pub fn woo_product_in(&self, sku: &str, price: &str, tax_class: &str) -> u64 {
        self.woo
            .admin_write_product(
                None,
                serde_json::json!({
                    "name": format!("Vare {sku}"), "sku": sku, "regular_price": price,
                    "manage_stock": true, "stock_quantity": 10, "tax_class": tax_class,
                }),
            )
            .expect("woo product")
    }

    /// What a DUELL order books: Σ (unit price with VAT − unit discount) × quantity.
    pub fn booked(o: &duellsync_duell_sim::SimOrder) -> Decimal {
        o.lines
            .iter()
            .map(|l| (l.price_inc_vat - l.discount_amount.unwrap_or_default()) * l.quantity)
            .sum()
    }

    /// Places an order at checkout (status `processing` unless `f` says otherwise).
    pub fn place(&self, lines: &[(&str, i64)], f: impl FnOnce(&mut PlaceOrder)) -> i64 {
        let mut order = PlaceOrder {
            lines: lines
                .iter()
                .map(|(sku, q)| PlaceLine {
                    product_id: None,
                    sku: Some((*sku).into()),
                    quantity: *q,
                })
                .collect(),
            billing: [
                ("first_name", "Kari"),
                ("last_name", "Nordmann"),
                ("address_1", "Storgata 1"),
                ("city", "Oslo"),
                ("postcode", "0155"),
                ("country", "NO"),
                ("email", "kari@example.no"),
                ("phone", "+47 912 34 567"),
            ]
            .iter()
            .map(|(k, v)| ((*k).to_owned(), Some((*v).to_owned())))
            .collect(),
            ..Default::default()
        };
        f(&mut order);
        self.woo.place_order(&order).expect("order placed") as i64
    }

    pub fn order_json(&self, id: i64) -> Value {
        self.woo.order_json(id as u64).expect("order exists")
    }

    /// Publishes the order as WooCommerce shows it now, as a source would.
    pub async fn observe(&self, id: i64) -> v1::OrderObserved {
        let json = self.order_json(id);
        self.observe_json(&json).await
    }

    /// Publishes an observation with this body.
    pub async fn observe_json(&self, json: &Value) -> v1::OrderObserved {
        let ev = observation(json);
        self.bus.publish(&ev).await.expect("published");
        ev
    }

    pub async fn publish<E: Event>(&self, ev: &E) {
        self.bus.publish(ev).await.expect("published");
    }

    /// Every event of type `E` the store's stream holds.
    pub async fn events<E: Event>(&self) -> Vec<E> {
        let stream = duellsync_events::stream_for_subject(&E::subject(STORE))
            .expect("subject has a stream")
            .name;
        self.bus
            .read(stream, &E::subject(STORE), 1, 10_000)
            .await
            .expect("stream readable")
            .iter()
            .map(|m| E::decode(m.payload.as_ref()).expect("decodes"))
            .collect()
    }

    /// The events of type `E` the importer appended about WooCommerce order `id`.
    pub async fn order_events<E: Event + OfOrder>(&self, id: i64) -> Vec<E> {
        let mut all = self.events::<E>().await;
        all.retain(|e| e.woo_order_id() == id);
        all
    }

    /// The first event of type `E` about WooCommerce order `id`, if any yet.
    pub async fn order_event<E: Event + OfOrder>(&self, id: i64) -> Option<E> {
        self.order_events(id).await.into_iter().next()
    }

    /// Dead letters of the importer.
    pub async fn dead_letters(&self) -> Vec<StoredMessage> {
        self.bus
            .read(
                "DLQ",
                &duellsync_events::dlq_subject(STORE, "order-importer"),
                1,
                10_000,
            )
            .await
            .unwrap_or_default()
    }

    /// Republishes a dead letter to its subject as `syncctl dlq replay` does.
    pub async fn replay(&self, dead: &StoredMessage) {
        let subject = dead
            .header(duellsync_events::headers::DLQ_SUBJECT)
            .expect("dead letter names its subject")
            .to_owned();
        let mut h = async_nats::HeaderMap::new();
        h.insert(duellsync_events::headers::REPLAY, "1");
        self.bus
            .publish_raw(
                &subject,
                &format!("replay:{}:{}", dead.sequence, now_ms()),
                h,
                dead.payload.clone(),
            )
            .await
            .expect("replayed");
    }

    /// Removes the store's messages from a stream (a stream lost or past its retention).
    pub async fn purge(&self, stream: &str, filter: &str) {
        let client = async_nats::connect(self.nats.url())
            .await
            .expect("nats connects");
        let js = async_nats::jetstream::new(client);
        js.get_stream(stream)
            .await
            .expect("stream exists")
            .purge()
            .filter(filter)
            .await
            .expect("purged");
    }

    /// Stops the importer, loses its volume and (re)creates its WOO consumer at the beginning of
    /// the stream, as after a lost volume or a state rebuild, and starts it again.
    pub async fn lose_the_volume(&mut self) {
        self.stop().await;
        std::fs::remove_dir_all(self.state_dir()).expect("state removed");
        for name in self.bus.consumer_names("WOO").await.expect("consumers") {
            if name.starts_with("order-importer-") {
                self.bus
                    .delete_consumer("WOO", &name)
                    .await
                    .expect("deleted");
            }
        }
        self.start().await;
    }

    /// The order's meta data in WooCommerce, `key → value`.
    pub fn woo_meta(&self, id: i64) -> std::collections::BTreeMap<String, Value> {
        self.order_json(id)["meta_data"]
            .as_array()
            .map(|a| {
                a.iter()
                    .map(|m| {
                        (
                            m["key"].as_str().unwrap_or_default().to_owned(),
                            m["value"].clone(),
                        )
                    })
                    .collect()
            })
            .unwrap_or_default()
    }

    pub fn customer_orders_for(&self, woo_id: i64) -> Vec<duellsync_duell_sim::SimOrder> {
        self.duell
            .customer_orders()
            .into_iter()
            .filter(|o| o.reference() == woo_id.to_string())
            .collect()
    }

    pub fn sales_orders_for(&self, woo_id: i64) -> Vec<duellsync_duell_sim::SimOrder> {
        self.duell
            .sales_orders()
            .into_iter()
            .filter(|o| o.reference() == woo_id.to_string())
            .collect()
    }

    /// The order's notes, read through the REST API.
    pub async fn notes(&self, woo_id: i64) -> Vec<String> {
        let stores = duellsync_settings::load_stores(&self.stores_path, &self.env)
            .expect("store settings are valid");
        let client =
            duellsync_clients::woo_client(stores.get(STORE).expect("store")).expect("woo client");
        client
            .list_order_notes(woo_id as u64)
            .await
            .expect("notes readable")
            .into_iter()
            .map(|n| n.note)
            .collect()
    }

    /// Waits until the importer's consumers hold no unhandled message (pending, in flight or
    /// waiting for redelivery): what was published before has been handled.
    pub async fn drained(&self) {
        let consumers = [
            ("WOO", "orders"),
            ("CMD", "retry"),
            ("DUELL", "duell"),
            ("SYNC", "applied"),
        ];
        eventually_async("the importer to drain its consumers", WAIT, || async {
            for (stream, suffix) in consumers {
                let durable = format!("order-importer-{STORE}-{suffix}");
                match self.bus.consumer_lag(stream, &durable).await {
                    Ok(0) => {}
                    _ => return None,
                }
            }
            Some(())
        })
        .await
    }
}

impl Drop for TestApp {
    fn drop(&mut self) {
        if let Some(tx) = self.stop_tx.take() {
            let _ = tx.send(());
        }
    }
}

fn now_ms() -> i64 {
    duellsync_events::now_ms()
}

/// An `OrderObserved` for a WooCommerce order body, with the id a poller would give it.
pub fn observation(json: &Value) -> v1::OrderObserved {
    let payload = serde_json::to_vec(json).expect("json serialises");
    let id = json.get("id").and_then(Value::as_i64).unwrap_or(0);
    let text = |f: &str| json.get(f).and_then(Value::as_str).unwrap_or("").to_owned();
    let body_sha256 = sha256_hex(&payload);
    let event_id = EventId::new("order-observed-test", STORE)
        .int(id)
        .str(&body_sha256)
        .finish();
    v1::OrderObserved {
        meta: Some(meta(STORE, event_id, "test", order_correlation(STORE, id))),
        order_id: id,
        status: text("status"),
        number: text("number"),
        date_created_gmt: text("date_created_gmt"),
        date_modified_gmt: text("date_modified_gmt"),
        total: text("total"),
        source: v1::order_observed::Source::Poll as i32,
        topic: String::new(),
        body_sha256,
        payload_json: payload,
    }
}

/// Polls `f` until it returns `Some`, or panics after `timeout` naming `what`.
pub async fn eventually<T>(what: &str, timeout: Duration, mut f: impl FnMut() -> Option<T>) -> T {
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(v) = f() {
            return v;
        }
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
}

/// Polls the async `f` until it returns `Some`.
pub async fn eventually_async<T, Fut>(
    what: &str,
    timeout: Duration,
    mut f: impl FnMut() -> Fut,
) -> T
where
    Fut: std::future::Future<Output = Option<T>>,
{
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(v) = f().await {
            return v;
        }
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

pub const WAIT: Duration = Duration::from_secs(20);

pub fn decode<E: Event>(m: &StoredMessage) -> E {
    E::decode(m.payload.as_ref()).expect("decodes")
}

/// The order events carry the WooCommerce order id they are about.
pub trait OfOrder {
    fn woo_order_id(&self) -> i64;
}

macro_rules! of_order {
    ($($t:ty),*) => {$(
        impl OfOrder for $t {
            fn woo_order_id(&self) -> i64 {
                self.woo_order_id
            }
        }
    )*};
}

of_order!(
    v1::OrderImported,
    v1::OrderInDoubt,
    v1::OrderParked,
    v1::OrderSkipped,
    v1::StockHoldChanged
);
