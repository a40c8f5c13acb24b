//! Issue 12 §1 and §2 against a WooCommerce that behaves like a real one: a batch keeps running
//! after the client is gone (each created product takes a while) and two overlapping creates of
//! one SKU both succeed. The catalogue publisher is killed (`kill -9`) twice during the initial
//! full sync of 1,000 products and restarted: every DUELL product ends up in WooCommerce exactly
//! once, and the interrupted full sync completes and is reported.

use std::collections::BTreeMap;
use std::time::Duration;

use duellsync_bus::{Bus, BusOptions};
use duellsync_duell_sim::{NewSimProduct, SimConfig as DuellConfig};
use duellsync_e2e::{eventually, World};
use duellsync_events::{v1, Event};
use duellsync_woo_sim::SimConfig as WooConfig;
use prost::Message;
use rust_decimal::Decimal;

const PRODUCTS: usize = 1000;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kills_during_the_initial_full_sync_leave_exactly_one_woo_product_per_duell_product() {
    let mut world = World::with(
        DuellConfig {
            products: 0,
            ..DuellConfig::default()
        },
        WooConfig {
            // A batch of 100 creates runs 2 s and goes on after the client is killed.
            batch_item_time: Duration::from_millis(20),
            racy_sku_check: true,
            ..WooConfig::default()
        },
        &[
            "sync_orders = false",
            "poll_interval = \"200ms\"",
            "stock_poll_interval = \"200ms\"",
        ],
        "",
    )
    .await;
    // Requests may take 3 s; a lost create is read back 4 s after it was sent (a real store
    // needs the defaults: 30 s and 120 s), by which time every orphaned batch is done.
    let toml = world
        .store
        .to_toml()
        .replace("[woo]\n", "[woo]\nrequest_timeout = \"3s\"\n");
    world.sandbox.write_store("s1", &toml);
    for n in 0..PRODUCTS {
        world.duell.create_product(NewSimProduct {
            product_name: format!("Vare {n}"),
            product_number: Some(format!("K{n:04}")),
            price_inc_vat: Some(Decimal::from(100 + n)),
            product_image: Some(String::new()),
            category_name: Some(String::new()),
            stock: Some(Decimal::from(5)),
            ..NewSimProduct::default()
        });
    }
    let settle = [("DUELLSYNC_PUBLISHER__SETTLE_AFTER", "4s")];
    world.sandbox.start("change-poller", &[]);
    world.sandbox.start("catalog-publisher", &settle);
    world
        .sandbox
        .wait_ready("change-poller", Duration::from_secs(60));
    world
        .sandbox
        .wait_ready("catalog-publisher", Duration::from_secs(60));

    // Kill it while batches are being created, twice.
    for at_least in [150, 450] {
        eventually("creates under way", Duration::from_secs(120), || async {
            (world.woo.product_count() >= at_least).then_some(())
        })
        .await;
        world.sandbox.kill("catalog-publisher");
        world.sandbox.restart("catalog-publisher");
        world
            .sandbox
            .wait_ready("catalog-publisher", Duration::from_secs(60));
    }

    eventually(
        "every product in WooCommerce",
        Duration::from_secs(180),
        || async { (world.woo.product_count() >= PRODUCTS).then_some(()) },
    )
    .await;
    // Let anything still unsettled settle, then count.
    tokio::time::sleep(Duration::from_secs(6)).await;
    let mut by_sku: BTreeMap<String, Vec<u64>> = BTreeMap::new();
    let mut by_duell_id: BTreeMap<String, Vec<u64>> = BTreeMap::new();
    for id in world.woo.product_ids() {
        let Some(p) = world.woo.product_json(id) else {
            continue;
        };
        if p["type"] != "simple" {
            continue;
        }
        by_sku
            .entry(p["sku"].as_str().unwrap_or_default().to_owned())
            .or_default()
            .push(id);
        let duell = p["meta_data"]
            .as_array()
            .into_iter()
            .flatten()
            .find(|m| m["key"] == "_duell_product_id")
            .and_then(|m| m["value"].as_str().map(str::to_owned))
            .unwrap_or_default();
        by_duell_id.entry(duell).or_default().push(id);
    }
    let twice: Vec<_> = by_sku.iter().filter(|(_, ids)| ids.len() > 1).collect();
    assert!(
        twice.is_empty(),
        "SKUs in WooCommerce more than once: {twice:?}"
    );
    assert_eq!(by_sku.len(), PRODUCTS, "one product per DUELL product");
    assert!(!by_duell_id.contains_key(""), "every product is tagged");
    assert_eq!(by_duell_id.len(), PRODUCTS);
    assert_eq!(world.sandbox.starts("catalog-publisher"), 3);
    // Issue 12 §2: the interrupted initial full sync completes and is reported.
    let bus = Bus::connect(BusOptions::new(world.sandbox.nats.url(), "test"))
        .await
        .expect("nats");
    let completed = eventually(
        "the initial full sync reported",
        Duration::from_secs(180),
        || async {
            let msgs = bus
                .read("SYNC", &v1::FullSyncCompleted::subject("s1"), 1, 1000)
                .await
                .ok()?;
            msgs.iter()
                .filter_map(|m| v1::FullSyncCompleted::decode(m.payload.as_ref()).ok())
                .find(|c| c.run_id.starts_with("initial-"))
        },
    )
    .await;
    assert!(completed.error.is_empty(), "{completed:?}");
}
