//! The simulators, a sandbox (private NATS, services as real processes) and a store `s1` wired
//! to both: the part of the end-to-end harness these tests need, kept here so that they do not
//! depend on the end-to-end crate.

use std::collections::BTreeMap;
use std::time::Duration;

use duellsync_duell_sim::{DuellSim, SimConfig as DuellConfig};
use duellsync_test_support::sandbox::{Sandbox, StoreFile};
use duellsync_woo::{ClientConfig, Product, WooClient};
use duellsync_woo_sim::{SimConfig as WooConfig, WooSim};

/// DUELL department ids in the simulator.
const STOCK_DEPARTMENT: u64 = 1;
const ORDER_DEPARTMENT: u64 = 2;

pub struct World {
    pub sandbox: Sandbox,
    pub duell: DuellSim,
    pub woo: WooSim,
    pub store: StoreFile,
    pub client: WooClient,
}

impl World {
    /// Both simulators (DUELL with `products` generated products) and store `s1` with the
    /// given extra top-level settings. No service runs yet.
    pub async fn new(products: usize, settings: &[&str]) -> World {
        Self::with(
            DuellConfig {
                products,
                ..DuellConfig::default()
            },
            WooConfig::default(),
            settings,
        )
        .await
    }

    pub async fn with(duell: DuellConfig, woo: WooConfig, settings: &[&str]) -> World {
        duellsync_test_support::init_tracing();
        let duell = DuellSim::start(duell).await.expect("duell-sim starts");
        let woo = WooSim::start(woo).await.expect("woo-sim starts");
        let (ck, cs) = woo.credentials();
        let store = StoreFile {
            id: "s1".into(),
            woo_url: woo.base_url(),
            consumer_key: ck.clone(),
            consumer_secret: cs.clone(),
            webhook_secret: "cliWebhookSecret123".into(),
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
            notice_secret: String::new(),
            settings: settings.iter().map(|s| (*s).to_owned()).collect(),
            sections: String::new(),
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

    /// Rewrites the store file after a change to `self.store`.
    pub fn save_store(&self) {
        self.sandbox.write_store("s1", &self.store.to_toml());
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
        let mut scan = self
            .client
            .scan_products(&["id", "sku", "name", "status"], 100);
        while let Some(page) = scan.next_page().await.expect("woo-sim lists products") {
            for p in page {
                out.insert(p.sku.clone(), p);
            }
        }
        out
    }

    /// Writes WooCommerce received since the counters were last reset, by route.
    pub fn woo_writes(&self) -> BTreeMap<String, u64> {
        self.woo
            .request_counts()
            .into_iter()
            .filter(|(k, _)| !k.starts_with("GET ") && !k.starts_with("OPTIONS "))
            .collect()
    }

    pub fn woo_write_count(&self) -> u64 {
        self.woo_writes().values().sum()
    }
}
