//! End to end, with the order importer as a real process: it is SIGKILLed after DUELL saved an
//! order but before the importer recorded the outcome (DUELL's answer never comes), then
//! restarted. Whatever happens, one WooCommerce order never becomes two DUELL orders: with the
//! (UNVERIFIED) order lookup on, the restart finds the order and records it as imported; with it
//! off, the order is flagged in doubt for an operator and never sent again.

use std::time::{Duration, Instant};

use duellsync_bus::{Bus, BusOptions};
use duellsync_duell_sim::{DuellSim, Fault, NewSimProduct, SimConfig as DuellConfig};
use duellsync_events::{headers, meta, order_correlation, sha256_hex, v1, Event, EventId};
use duellsync_test_support::sandbox::{Sandbox, StoreFile};
use duellsync_woo_sim::{PlaceLine, PlaceOrder, Settings, SimConfig as WooConfig, WooSim};
use prost::Message as _;

const STORE: &str = "s1";
const IMPORTER: &str = "order-importer";
const WAIT: Duration = Duration::from_secs(60);

struct World {
    sandbox: Sandbox,
    duell: DuellSim,
    woo: WooSim,
    bus: Bus,
    store: StoreFile,
}

async fn world(settings: &[&str]) -> World {
    duellsync_test_support::init_tracing();
    let duell = DuellSim::start(DuellConfig {
        products: 10,
        customers: 0,
        ..DuellConfig::default()
    })
    .await
    .expect("duell-sim starts");
    let woo = WooSim::start(WooConfig {
        https: false,
        // A Norwegian shop: prices with VAT, VAT on shipping.
        settings: Settings::norway(),
        ..WooConfig::default()
    })
    .await
    .expect("woo-sim starts");
    let (ck, cs) = woo.credentials();
    let store = StoreFile {
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
        settings: settings.iter().map(|s| (*s).to_owned()).collect(),
        sections: String::new(),
    };
    let sandbox = Sandbox::new();
    sandbox.write_store(STORE, &store.to_toml());
    let bus = Bus::connect(BusOptions::new(sandbox.nats.url(), "e2e-test"))
        .await
        .expect("bus connects");
    bus.ensure_streams().await.expect("streams");
    World {
        sandbox,
        duell,
        woo,
        bus,
        store,
    }
}

impl World {
    /// A product with this SKU in DUELL and WooCommerce.
    fn product(&self, sku: &str) {
        self.duell.create_product(NewSimProduct {
            product_name: format!("Vare {sku}"),
            product_number: Some(sku.into()),
            price_inc_vat: Some(100.into()),
            stock: Some(10.into()),
            ..Default::default()
        });
        self.woo
            .admin_write_product(
                None,
                serde_json::json!({"name": format!("Vare {sku}"), "sku": sku,
                    "regular_price": "100.00", "manage_stock": true, "stock_quantity": 10}),
            )
            .expect("woo product");
    }

    fn place(&self, sku: &str) -> i64 {
        let order = PlaceOrder {
            lines: vec![PlaceLine {
                product_id: None,
                sku: Some(sku.into()),
                quantity: 1,
            }],
            billing: [
                ("first_name", "Kari"),
                ("last_name", "Nordmann"),
                ("email", "kari@example.no"),
                ("phone", "+47 912 34 567"),
            ]
            .iter()
            .map(|(k, v)| ((*k).to_owned(), Some((*v).to_owned())))
            .collect(),
            ..Default::default()
        };
        self.woo.place_order(&order).expect("order placed") as i64
    }

    /// Starts (or restarts) a service process and waits until it is ready. The sandbox blocks;
    /// the simulators keep serving on the other runtime threads.
    fn start(&mut self, service: &str, env: &[(&str, &str)]) {
        tokio::task::block_in_place(|| {
            self.sandbox.start(service, env);
            self.sandbox.wait_ready(service, WAIT);
        });
    }

    fn restart(&mut self, service: &str) {
        tokio::task::block_in_place(|| {
            self.sandbox.restart(service);
            self.sandbox.wait_ready(service, WAIT);
        });
    }

    /// SIGKILL: the process dies wherever it is.
    fn kill(&mut self, service: &str) {
        tokio::task::block_in_place(|| self.sandbox.kill(service));
    }

    /// Publishes the order as WooCommerce shows it, as webhook-ingest or the poller would.
    async fn observe(&self, id: i64, note: &str) {
        let mut json = self.woo.order_json(id as u64).expect("order exists");
        json["customer_note"] = note.into();
        let payload = serde_json::to_vec(&json).expect("json");
        let sha = sha256_hex(&payload);
        let text = |f: &str| {
            json.get(f)
                .and_then(|v| v.as_str())
                .unwrap_or("")
                .to_owned()
        };
        let ev = v1::OrderObserved {
            meta: Some(meta(
                STORE,
                EventId::new("e2e-order", STORE).int(id).str(&sha).finish(),
                "e2e",
                order_correlation(STORE, id),
            )),
            order_id: id,
            status: text("status"),
            number: text("number"),
            date_created_gmt: text("date_created_gmt"),
            date_modified_gmt: text("date_modified_gmt"),
            total: text("total"),
            source: v1::order_observed::Source::Webhook as i32,
            topic: "order.updated".into(),
            body_sha256: sha,
            payload_json: payload,
        };
        self.bus.publish(&ev).await.expect("published");
    }

    async fn events<E: Event>(&self) -> Vec<E> {
        let stream = duellsync_events::stream_for_subject(&E::subject(STORE))
            .expect("stream")
            .name;
        self.bus
            .read(stream, &E::subject(STORE), 1, 10_000)
            .await
            .unwrap_or_default()
            .iter()
            .filter_map(|m| E::decode(m.payload.as_ref()).ok())
            .collect()
    }

    async fn dead_letters(&self) -> Vec<duellsync_bus::StoredMessage> {
        self.bus
            .read(
                "DLQ",
                &duellsync_events::dlq_subject(STORE, IMPORTER),
                1,
                1000,
            )
            .await
            .unwrap_or_default()
    }

    fn customer_orders(&self, id: i64) -> usize {
        self.duell
            .customer_orders()
            .iter()
            .filter(|o| o.reference() == id.to_string())
            .count()
    }

    /// Waits until the importer's order consumers hold no unhandled message.
    async fn drained(&self) {
        eventually("the importer to drain", || async {
            for (stream, durable) in [
                ("WOO", format!("{IMPORTER}-{STORE}-orders")),
                ("CMD", format!("{IMPORTER}-{STORE}-retry")),
            ] {
                if self.bus.consumer_lag(stream, &durable).await.ok() != Some(0) {
                    return None;
                }
            }
            Some(())
        })
        .await
    }

    fn assert_no_secret_in_logs(&self) {
        let logs = self.sandbox.all_logs();
        for s in self.store.secrets() {
            assert!(!logs.contains(&s), "a secret leaked into the logs");
        }
    }
}

async fn eventually<T, F, Fut>(what: &str, mut f: F) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    let deadline = Instant::now() + WAIT;
    loop {
        if let Some(v) = f().await {
            return v;
        }
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Importer settings for fast redeliveries in tests; the DUELL timeout stays long so the process
/// is surely inside the call when it is killed.
fn importer_env() -> Vec<(&'static str, &'static str)> {
    vec![
        ("DUELLSYNC_IMPORTER__ACK_WAIT", "2s"),
        ("DUELLSYNC_IMPORTER__BACKOFF_CAP", "500ms"),
        ("DUELLSYNC_IMPORTER__LOOKUP_SETTLE", "1s"),
        ("DUELLSYNC_IMPORTER__DUELL_TIMEOUT", "60s"),
    ]
}

/// The store's `duell.order_lookup`, saved in the store registry the services watch.
fn set_order_lookup(w: &World, on: bool) {
    let path = w.sandbox.stores_path().join(format!("{STORE}.toml"));
    let text = std::fs::read_to_string(&path)
        .expect("the store file")
        .replace("order_lookup = true\n", "");
    let text = if on {
        text.replacen("[duell]\n", "[duell]\norder_lookup = true\n", 1)
    } else {
        text
    };
    w.sandbox.write_store(STORE, &text);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_crash_after_duell_saved_the_order_is_recovered_by_the_lookup_as_the_one_order() {
    // The order comes from WooCommerce through the change-poller's gap-fill, as in production
    // when webhooks are off.
    let mut w = world(&[r#"poll_interval = "1s""#]).await;
    w.product("A-1");
    w.duell
        .fail_next(Some("logistics/orders/save"), 1, Fault::HangAfterProcessing);
    set_order_lookup(&w, true);
    w.start(IMPORTER, &importer_env());
    w.start("change-poller", &[]);
    let id = w.place("A-1");

    // DUELL saved it; the importer waits for an answer that never comes, and dies.
    eventually("DUELL to save the order", || async {
        (w.customer_orders(id) == 1).then_some(())
    })
    .await;
    w.kill(IMPORTER);
    w.duell.clear_faults();
    // The first lookup is refused (a firewall page): a read is repeated, not given up on.
    w.duell
        .fail_next(Some("logistics/orders/list"), 1, Fault::Firewall);
    w.restart(IMPORTER);

    let ev = eventually("OrderImported", || async {
        w.events::<v1::OrderImported>()
            .await
            .into_iter()
            .find(|e| e.woo_order_id == id)
    })
    .await;
    assert!(
        ev.recovered_by_lookup,
        "found by the lookup, not created again"
    );
    w.drained().await;
    // Another delivery of the order changes nothing.
    w.observe(id, "late webhook").await;
    w.drained().await;
    assert_eq!(w.customer_orders(id), 1);
    assert!(w.events::<v1::OrderInDoubt>().await.is_empty());
    assert!(w.dead_letters().await.is_empty());
    let metrics = w.sandbox.metrics(IMPORTER);
    assert!(
        metrics.contains("duellsync_importer_orders_imported_total")
            && metrics.contains("duellsync_importer_duell_call_duration_seconds"),
        "{metrics}"
    );
    w.assert_no_secret_in_logs();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_crash_after_duell_saved_the_order_without_the_lookup_leaves_one_order_in_doubt() {
    let mut w = world(&[]).await;
    w.product("A-1");
    w.duell
        .fail_next(Some("logistics/orders/save"), 1, Fault::HangAfterProcessing);
    set_order_lookup(&w, false);
    w.start(IMPORTER, &importer_env());
    let id = w.place("A-1");
    w.observe(id, "").await;

    eventually("DUELL to save the order", || async {
        (w.customer_orders(id) == 1).then_some(())
    })
    .await;
    w.kill(IMPORTER);
    w.duell.clear_faults();
    w.restart(IMPORTER);

    let doubt = eventually("OrderInDoubt", || async {
        w.events::<v1::OrderInDoubt>()
            .await
            .into_iter()
            .find(|e| e.woo_order_id == id)
    })
    .await;
    assert_eq!(doubt.operation, "customer_order");
    // The unacked message comes back and is dead-lettered with what to do.
    let dead = eventually("the in-doubt dead letter", || async {
        w.dead_letters().await.into_iter().next()
    })
    .await;
    let reason = dead.header(headers::DLQ_REASON).unwrap_or_default();
    assert!(reason.contains("in doubt"), "{reason}");
    let dead_event = v1::OrderObserved::decode(dead.payload.as_ref()).expect("the observation");
    assert_eq!(dead_event.order_id, id);

    // New observations and another crash-restart never send it again.
    w.observe(id, "late webhook").await;
    w.drained().await;
    w.kill(IMPORTER);
    w.restart(IMPORTER);
    w.observe(id, "after the restart").await;
    w.drained().await;
    assert_eq!(w.customer_orders(id), 1);
    assert!(w
        .events::<v1::OrderImported>()
        .await
        .iter()
        .all(|e| e.woo_order_id != id));
    assert_eq!(w.dead_letters().await.len(), 1);
    w.restart(IMPORTER);
    w.drained().await;
    assert_eq!(w.customer_orders(id), 1);
    // SIGTERM: a graceful stop exits 0.
    let code =
        tokio::task::block_in_place(|| w.sandbox.terminate(IMPORTER, Duration::from_secs(30)));
    assert_eq!(code, Some(0), "{}", w.sandbox.logs(IMPORTER));
    w.assert_no_secret_in_logs();
}
