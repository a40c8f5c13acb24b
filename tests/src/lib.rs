//! Shared harness of the end-to-end tests: the DUELL and WooCommerce simulators in this
//! process, every service as a real process on a private NATS (see
//! `duellsync_test_support::sandbox`), and small helpers to wait for the outcome.
#![forbid(unsafe_code)]

use std::collections::BTreeMap;
use std::future::Future;
use std::time::{Duration, Instant};

use duellsync_duell_sim::{DuellSim, SimConfig as DuellConfig};
use duellsync_test_support::sandbox::{Sandbox, StoreFile};
use duellsync_woo::{ClientConfig, Product, WooClient};
use duellsync_woo_sim::{PlaceLine, PlaceOrder, SimConfig as WooConfig, WooSim};

pub use duellsync_test_support::sandbox;

pub mod chaos;

/// DUELL department ids in the simulator.
pub const STOCK_DEPARTMENT: u64 = 1;
pub const ORDER_DEPARTMENT: u64 = 2;

/// A DUELL simulator with no products and no customers: the test makes what it needs.
pub fn empty_duell() -> DuellConfig {
    DuellConfig {
        products: 0,
        customers: 0,
        ..DuellConfig::default()
    }
}

/// A WooCommerce simulator on plain http with these settings.
pub fn plain_shop(settings: duellsync_woo_sim::Settings) -> WooConfig {
    WooConfig {
        https: false,
        settings,
        ..WooConfig::default()
    }
}

/// The simulators, the sandbox and a store wired to both.
pub struct World {
    pub sandbox: Sandbox,
    pub duell: DuellSim,
    pub woo: WooSim,
    pub store: StoreFile,
    pub client: WooClient,
}

impl World {
    /// Starts both simulators (DUELL with `products` generated products) and writes store `s1`
    /// with the given extra settings. No service is started yet.
    pub async fn new(products: usize, settings: &[&str], sections: &str) -> World {
        Self::with(
            DuellConfig {
                products,
                ..DuellConfig::default()
            },
            WooConfig::default(),
            settings,
            sections,
        )
        .await
    }

    /// An empty DUELL (no products, no customers) and a shop on plain http with the given
    /// WooCommerce settings (tax, prices with or without tax). No service is started yet.
    pub async fn empty_shop(woo_settings: duellsync_woo_sim::Settings, settings: &[&str]) -> World {
        Self::with(empty_duell(), plain_shop(woo_settings), settings, "").await
    }

    pub async fn with(
        duell_config: DuellConfig,
        woo_config: WooConfig,
        settings: &[&str],
        sections: &str,
    ) -> World {
        duellsync_test_support::init_tracing();
        let duell = DuellSim::start(duell_config)
            .await
            .expect("duell-sim starts");
        let woo = WooSim::start(woo_config).await.expect("woo-sim starts");
        let (ck, cs) = woo.credentials();
        let store = StoreFile {
            id: "s1".into(),
            woo_url: woo.base_url(),
            consumer_key: ck.clone(),
            consumer_secret: cs.clone(),
            webhook_secret: "e2eWebhookSecret123".into(),
            webhook_delivery_url: String::new(),
            duell_url: duell.base_url(),
            client_number: duell.client_number().to_owned(),
            client_token: duell.client_token().to_owned(),
            stock_department: duell
                .department_token(STOCK_DEPARTMENT)
                .expect("stock department"),
            order_department: duell
                .department_token(ORDER_DEPARTMENT)
                .expect("order department"),
            notice_secret: "e2eNoticeSecret123".into(),
            settings: settings.iter().map(|s| (*s).to_owned()).collect(),
            sections: sections.to_owned(),
        };
        let sandbox = Sandbox::new();
        sandbox.write_store("s1", &store.to_toml());
        let client = WooClient::new(ClientConfig::new(
            woo.base_url(),
            ck,
            secrecy::SecretString::from(cs),
        ))
        .expect("woo client");
        World {
            sandbox,
            duell,
            woo,
            store,
            client,
        }
    }

    /// Starts services and waits until they are ready.
    pub fn start(&mut self, services: &[&str]) {
        for s in services {
            self.sandbox.start(s, &[]);
        }
        for s in services {
            self.sandbox.wait_ready(s, Duration::from_secs(60));
        }
    }

    /// Every WooCommerce product (not variations), by SKU.
    pub async fn woo_products(&self) -> BTreeMap<String, Product> {
        let mut out = BTreeMap::new();
        let mut scan = self.client.scan_products(
            &[
                "id",
                "sku",
                "name",
                "status",
                "regular_price",
                "sale_price",
                "stock_quantity",
                "manage_stock",
                "images",
                "type",
                "meta_data",
                "attributes",
                "categories",
                "tax_class",
            ],
            100,
        );
        while let Some(page) = scan.next_page().await.expect("woo-sim lists products") {
            for p in page {
                out.insert(p.sku.clone(), p);
            }
        }
        out
    }

    /// Writes WooCommerce has received since the counters were last reset, by route.
    pub fn woo_writes(&self) -> BTreeMap<String, u64> {
        self.woo
            .request_counts()
            .into_iter()
            .filter(|(k, _)| !k.starts_with("GET ") && !k.starts_with("OPTIONS "))
            .collect()
    }

    /// Places a web order of `quantity` × `sku` in the WooCommerce simulator, billed with the
    /// given (field, value) pairs, and returns its id.
    pub fn place_web_order(&self, sku: &str, quantity: i64, billing: &[(&str, &str)]) -> u64 {
        self.woo
            .place_order(&PlaceOrder {
                lines: vec![PlaceLine {
                    sku: Some(sku.to_owned()),
                    quantity,
                    ..PlaceLine::default()
                }],
                billing: billing
                    .iter()
                    .map(|(k, v)| ((*k).to_owned(), Some((*v).to_owned())))
                    .collect(),
                ..PlaceOrder::default()
            })
            .expect("order placed")
    }

    pub fn woo_write_count(&self) -> u64 {
        self.woo_writes().values().sum()
    }
}

/// Polls `check` until it returns `Some`, or panics with `what` after `timeout`.
pub async fn eventually<T, F, Fut>(what: &str, timeout: Duration, mut check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Option<T>>,
{
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(v) = check().await {
            return v;
        }
        if Instant::now() > deadline {
            panic!("timed out after {timeout:?} waiting for {what}");
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}
