//! Stock never counts units a web order has taken (SPEC §3.1 "Stock"): an order received but not
//! yet in DUELL, then imported but not yet drawn, holds its units until DUELL's own stock shows
//! them gone.

use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use duellsync_duell_sim::{NewSimProduct, SimConfig as DuellConfig};
use duellsync_e2e::{eventually, World, STOCK_DEPARTMENT};
use duellsync_woo_sim::SimConfig as WooConfig;
use rust_decimal::Decimal;

const WAIT: Duration = Duration::from_secs(60);

async fn woo_stock(world: &World, sku: &str) -> Option<i64> {
    world
        .client
        .find_by_sku(sku)
        .await
        .ok()?
        .first()
        .and_then(|p| p.stock_quantity)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_web_order_not_yet_in_duell_never_lets_a_stock_push_offer_its_units_again() {
    let mut world = World::with(
        DuellConfig {
            products: 0,
            ..DuellConfig::default()
        },
        WooConfig::default(),
        &[
            "poll_interval = \"200ms\"",
            "stock_poll_interval = \"200ms\"",
        ],
        "",
    )
    .await;
    let id = world
        .duell
        .create_product(NewSimProduct {
            product_name: "Kopp".into(),
            product_number: Some("KOPP".into()),
            product_image: Some(String::new()),
            stock: Some(Decimal::from(10)),
            ..NewSimProduct::default()
        })
        .product_id;
    // The web shop's warehouse is one DUELL department: web orders are drawn from the stock
    // that is published.
    world.store.order_department = world.store.stock_department.clone();
    world.sandbox.write_store("s1", &world.store.to_toml());
    // No importer yet: the order stays "received, not in DUELL".
    world.start(&["change-poller", "catalog-publisher"]);
    eventually("the cup in Woo with 10", WAIT, || async {
        (woo_stock(&world, "KOPP").await == Some(10)).then_some(())
    })
    .await;

    let order = world.place_web_order(
        "KOPP",
        3,
        &[("first_name", "Ola"), ("phone", "+47 99 88 77 66")],
    );
    assert_eq!(
        woo_stock(&world, "KOPP").await,
        Some(7),
        "WooCommerce took 3 units"
    );

    // Watch WooCommerce's stock from now on: it must never offer more than is really there.
    let highest = Arc::new(AtomicI64::new(7));
    let watcher = {
        let highest = highest.clone();
        let client = world.client.clone();
        tokio::spawn(async move {
            loop {
                if let Ok(found) = client.find_by_sku("KOPP").await {
                    if let Some(q) = found.first().and_then(|p| p.stock_quantity) {
                        highest.fetch_max(q, Ordering::SeqCst);
                    }
                }
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        })
    };

    // Goods received in DUELL: 12 on the shelf, of which 3 are sold online already.
    tokio::time::sleep(Duration::from_millis(800)).await;
    world
        .duell
        .set_stock(STOCK_DEPARTMENT, id, Decimal::from(12));
    eventually("Woo at 12 - 3", WAIT, || async {
        (woo_stock(&world, "KOPP").await == Some(9)).then_some(())
    })
    .await;

    // The importer brings the order into DUELL as a customer order: DUELL reserves, but its
    // `stock` still shows 12 until the packing slip.
    world.start(&["order-importer"]);
    eventually("the customer order in DUELL", WAIT, || async {
        world
            .duell
            .customer_orders()
            .into_iter()
            .find(|o| o.reference() == order.to_string())
    })
    .await;
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert_eq!(woo_stock(&world, "KOPP").await, Some(9));

    // DUELL draws the units (packing slip made): its stock is now 9 and the hold is released.
    let duell_order = world
        .duell
        .customer_orders()
        .into_iter()
        .find(|o| o.reference() == order.to_string())
        .unwrap();
    world
        .duell
        .set_order_status(duell_order.order_id, 11)
        .unwrap();
    eventually("DUELL's stock drawn", WAIT, || async {
        (world.duell.stock(STOCK_DEPARTMENT, id).physical == Decimal::from(9)).then_some(())
    })
    .await;
    tokio::time::sleep(Duration::from_secs(2)).await;
    watcher.abort();
    assert_eq!(
        highest.load(Ordering::SeqCst),
        9,
        "WooCommerce never offered the 3 units sold online again"
    );
    assert_eq!(woo_stock(&world, "KOPP").await, Some(9));

    // Another delivery: 9 + 5 = 14 really available, and nothing is held any more.
    world
        .duell
        .set_stock(STOCK_DEPARTMENT, id, Decimal::from(14));
    eventually("Woo at 14 once the hold is released", WAIT, || async {
        (woo_stock(&world, "KOPP").await == Some(14)).then_some(())
    })
    .await;
}
