//! `spawn_app()`: the writer-back with a private NATS, woo-sim and a temp state dir; the test
//! plays the importer and the poller by publishing their events.

use std::time::{Duration, Instant};

use duellsync_bus::{Bus, BusOptions, StoredMessage};
use duellsync_events::{meta, order_correlation, v1, Event, EventId};
use duellsync_status_writeback::{App, Config};
use duellsync_test_support::sandbox::StoreFile;
use duellsync_test_support::NatsServer;
use duellsync_woo_sim::{PlaceLine, PlaceOrder, SimConfig, WooSim};
use prost::Message;
use tokio::sync::oneshot;

pub const STORE: &str = "s1";

pub struct TestApp {
    pub sim: WooSim,
    _nats: NatsServer,
    config: Config,
    stores: duellsync_settings::Stores,
    pub bus: Bus,
    pub woo: duellsync_woo::WooClient,
    stop: Option<oneshot::Sender<()>>,
    task: Option<tokio::task::JoinHandle<anyhow::Result<()>>>,
    _dir: tempfile::TempDir,
}

/// The default store (`status_map` = {5: completed}).
pub async fn spawn_app() -> TestApp {
    spawn_app_with(&[]).await
}

/// `settings` are extra top-level store settings, e.g. `status_map = { "8" = "cancelled" }`.
pub async fn spawn_app_with(settings: &[&str]) -> TestApp {
    duellsync_test_support::init_tracing();
    let nats = NatsServer::start();
    let sim = WooSim::start(SimConfig {
        https: false,
        ..SimConfig::default()
    })
    .await
    .expect("woo-sim starts");
    let (key, secret) = sim.credentials();
    let dir = tempfile::tempdir().unwrap();
    let stores = dir.path().join("stores");
    std::fs::create_dir_all(&stores).unwrap();
    let file = StoreFile {
        id: STORE.into(),
        woo_url: sim.base_url(),
        consumer_key: key.clone(),
        consumer_secret: secret.clone(),
        webhook_secret: "whsecret".into(),
        webhook_delivery_url: String::new(),
        duell_url: "http://127.0.0.1:9/v1/".into(),
        client_number: "123456".into(),
        client_token: "t".repeat(40),
        stock_department: "d".repeat(40),
        order_department: "o".repeat(40),
        notice_secret: String::new(),
        settings: settings.iter().map(|s| (*s).to_owned()).collect(),
        sections: String::new(),
    };
    std::fs::write(stores.join("s1.toml"), file.to_toml()).unwrap();
    let stores = duellsync_settings::load_stores(&stores, &[]).expect("valid store file");

    let mut config = Config::default();
    config.nats.url = nats.url();
    config.admin.listen = "127.0.0.1:0".into();
    config.state_dir = dir.path().join("state");
    config.writeback.backoff_cap = Duration::from_millis(100);
    config.writeback.max_deliveries = 5;
    let (stop_tx, task) = start(config.clone(), stores.clone()).await;
    let mut opts = BusOptions::new(nats.url(), "writeback-test");
    opts.publish_deadline = Duration::from_secs(5);
    let bus = Bus::connect(opts).await.unwrap();
    let woo = duellsync_woo::WooClient::new(duellsync_woo::ClientConfig::new(
        sim.base_url(),
        key,
        secrecy::SecretString::from(secret),
    ))
    .unwrap();
    TestApp {
        sim,
        _nats: nats,
        config,
        stores,
        bus,
        woo,
        stop: Some(stop_tx),
        task: Some(task),
        _dir: dir,
    }
}

type Running = (
    oneshot::Sender<()>,
    tokio::task::JoinHandle<anyhow::Result<()>>,
);

async fn start(config: Config, stores: duellsync_settings::Stores) -> Running {
    let app = App::build(config, stores).await.expect("the app builds");
    let (stop_tx, stop_rx) = oneshot::channel::<()>();
    let task = tokio::spawn(app.run(async move {
        let _ = stop_rx.await;
    }));
    (stop_tx, task)
}

impl TestApp {
    /// A paid (processing) order placed at the simulator's checkout; returns (id, total).
    pub fn place_order(&self) -> (u64, String) {
        let product = self
            .sim
            .seed_products(1, &format!("SKU-{}-", rand_suffix()), "25.00", 100)[0];
        let id = self
            .sim
            .place_order(&PlaceOrder {
                lines: vec![PlaceLine {
                    product_id: Some(product),
                    sku: None,
                    quantity: 2,
                }],
                ..PlaceOrder::default()
            })
            .expect("order placed");
        (id, self.order_total(id))
    }

    pub fn order_status(&self, id: u64) -> String {
        self.sim.order_json(id).expect("order exists")["status"]
            .as_str()
            .unwrap()
            .to_owned()
    }

    pub fn order_total(&self, id: u64) -> String {
        self.sim.order_json(id).expect("order exists")["total"]
            .as_str()
            .unwrap()
            .to_owned()
    }

    /// What the importer publishes after creating the DUELL customer order.
    pub async fn imported(&self, woo_order_id: u64, total: &str) {
        self.imported_as(woo_order_id, total, v1::order_imported::Kind::CustomerOrder)
            .await
    }

    pub async fn imported_as(
        &self,
        woo_order_id: u64,
        total: &str,
        kind: v1::order_imported::Kind,
    ) {
        let id = woo_order_id as i64;
        let event_id = EventId::new("order-imported", STORE).int(id).finish();
        let ev = v1::OrderImported {
            meta: Some(meta(
                STORE,
                event_id,
                "test-importer",
                order_correlation(STORE, id),
            )),
            woo_order_id: id,
            woo_number: id.to_string(),
            kind: kind as i32,
            duell_order_id: 1000 + id,
            duell_order_number: format!("D{id}"),
            duell_customer_id: 7,
            total: total.to_owned(),
            lines: Vec::new(),
            recovered_by_lookup: false,
        };
        self.bus.publish(&ev).await.unwrap();
    }

    /// What the change-poller publishes when a DUELL customer order's status changes.
    pub fn status_event(
        &self,
        woo_order_id: u64,
        previous: i32,
        status: i32,
    ) -> v1::OrderStatusObserved {
        let id = woo_order_id as i64;
        let event_id = EventId::new("order-status-observed", STORE)
            .int(1000 + id)
            .int(previous as i64)
            .int(status as i64)
            .finish();
        v1::OrderStatusObserved {
            meta: Some(meta(
                STORE,
                event_id,
                "test-poller",
                order_correlation(STORE, id),
            )),
            woo_order_id: id,
            duell_order_id: 1000 + id,
            status_id: status,
            previous_status_id: previous,
        }
    }

    pub async fn status(&self, woo_order_id: u64, previous: i32, status: i32) {
        let ev = self.status_event(woo_order_id, previous, status);
        self.bus.publish(&ev).await.unwrap();
    }

    /// Stores the same event again under another message id, so JetStream keeps it and the
    /// consumer sees it a second time (what a redelivery after a crash looks like to it).
    pub async fn redeliver(&self, ev: &v1::OrderStatusObserved) {
        let subject = v1::OrderStatusObserved::subject(STORE);
        let msg_id = format!("{}-again-{}", ev.event_id(), rand_suffix());
        self.bus
            .publish_raw(
                &subject,
                &msg_id,
                Default::default(),
                ev.encode_to_vec().into(),
            )
            .await
            .unwrap();
    }

    /// Waits until both consumers have acknowledged (or dead-lettered) everything.
    pub async fn settle(&self) {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let imported = self
                .bus
                .consumer_lag("SYNC", &format!("status-writeback-{STORE}-imported"))
                .await;
            let status = self
                .bus
                .consumer_lag("DUELL", &format!("status-writeback-{STORE}-status"))
                .await;
            if matches!((imported, status), (Ok(0), Ok(0))) {
                return;
            }
            assert!(Instant::now() < deadline, "the writer-back did not settle");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// Sync-log events of one type.
    pub async fn sync_events<E: Event>(&self) -> Vec<E> {
        self.bus
            .read("SYNC", &E::subject(STORE), 1, 1000)
            .await
            .unwrap()
            .iter()
            .map(|m| E::decode(m.payload.as_ref()).unwrap())
            .collect()
    }

    pub async fn dead_letters(&self) -> Vec<StoredMessage> {
        self.bus.read("DLQ", "dlq.>", 1, 100).await.unwrap()
    }

    /// `PUT orders/{id}` requests the writer-back sent.
    pub fn status_writes(&self) -> u64 {
        self.sim.request_count("PUT orders/{id}")
    }

    pub fn notes_added(&self) -> u64 {
        self.sim.request_count("POST orders/{id}/notes")
    }

    pub async fn notes(&self, id: u64) -> Vec<String> {
        self.woo
            .list_order_notes(id)
            .await
            .unwrap()
            .into_iter()
            .map(|n| n.note)
            .collect()
    }

    /// Stops the service gracefully and starts it again on the same state.
    pub async fn restart(&mut self) {
        self.stop().await;
        let (stop_tx, task) = start(self.config.clone(), self.stores.clone()).await;
        self.stop = Some(stop_tx);
        self.task = Some(task);
    }

    pub async fn stop(&mut self) {
        if let Some(tx) = self.stop.take() {
            let _ = tx.send(());
        }
        if let Some(task) = self.task.take() {
            tokio::time::timeout(Duration::from_secs(30), task)
                .await
                .expect("stops in time")
                .expect("no panic")
                .expect("stops cleanly");
        }
    }
}

fn rand_suffix() -> u64 {
    use std::sync::atomic::{AtomicU64, Ordering};
    static N: AtomicU64 = AtomicU64::new(1);
    N.fetch_add(1, Ordering::SeqCst)
}

/// Polls `f` until it returns `Some`, failing after `secs`.
pub async fn eventually<T, F, Fut>(secs: u64, what: &str, mut f: F) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    let deadline = Instant::now() + Duration::from_secs(secs);
    loop {
        if let Some(v) = f().await {
            return v;
        }
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
}
