//! Store settings are live data: a change saved in the registry reaches the running services
//! within moments, without restarting them (issue 16 §1): a toggle, a new store, a removed
//! store.

use std::time::Duration;

use duellsync_bus::{Bus, BusOptions, StartAt};
use duellsync_duell_sim::ProductPatch;
use duellsync_e2e::{eventually, World, STOCK_DEPARTMENT};
use duellsync_events::{v1, Event};
use duellsync_woo::{ClientConfig, WooClient};
use duellsync_woo_sim::{SimConfig as WooConfig, WooSim};
use prost::Message;
use rust_decimal::Decimal;

const SETTINGS: &[&str] = &[
    "sync_orders = false",
    "poll_interval = \"200ms\"",
    "stock_poll_interval = \"200ms\"",
];
const WAIT: Duration = Duration::from_secs(60);

/// A visible simple product with a unique number.
fn simple_products(world: &World, n: usize) -> Vec<(u64, String)> {
    let all = world.duell.products();
    all.iter()
        .filter(|p| {
            p.view_on_webshop
                && !p.is_deleted
                && !p.is_parent
                && p.parent_variant == 0
                && all
                    .iter()
                    .filter(|q| q.product_number.eq_ignore_ascii_case(&p.product_number))
                    .count()
                    == 1
        })
        .take(n)
        .map(|p| (p.product_id, p.product_number.clone()))
        .collect()
}

async fn woo_product(client: &WooClient, sku: &str) -> Option<duellsync_woo::Product> {
    client.find_by_sku(sku).await.ok()?.into_iter().next()
}

/// Waits until the poller has recorded the product with this price (so a later fact of the
/// same product is consumed after it).
async fn price_observed(bus: &Bus, store: &str, id: u64, price: &str) {
    eventually(
        &format!("product {id} observed at {price}"),
        WAIT,
        || async {
            let msgs = bus
                .read_at(
                    "DUELL",
                    &[v1::ProductObserved::subject(store)],
                    StartAt::First,
                    usize::MAX,
                )
                .await
                .ok()?;
            msgs.iter()
                .filter_map(|m| v1::ProductObserved::decode(m.payload.as_ref()).ok())
                .any(|p| {
                    p.product.as_ref().is_some_and(|p| {
                        p.product_id == id as i64
                            && p.price_inc_vat.parse::<Decimal>().ok() == price.parse().ok()
                    })
                })
                .then_some(())
        },
    )
    .await;
}

async fn stock_reaches(client: &WooClient, sku: &str, want: i64) {
    eventually(
        &format!("{sku} stock {want} in WooCommerce"),
        WAIT,
        || async { (woo_product(client, sku).await?.stock_quantity == Some(want)).then_some(()) },
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_toggle_a_new_store_and_a_removed_store_apply_without_a_restart() {
    let mut world = World::new(20, SETTINGS, "").await;
    world.start(&["change-poller", "catalog-publisher"]);
    let bus = Bus::connect(BusOptions::new(world.sandbox.nats.url(), "test"))
        .await
        .unwrap();
    let products = simple_products(&world, 2);
    let (x, x_sku) = products[0].clone();
    let (y, y_sku) = products[1].clone();
    eventually("the initial sync", WAIT, || async {
        woo_product(&world.client, &x_sku).await.map(|_| ())
    })
    .await;
    let pids = (
        world.sandbox.pid("change-poller"),
        world.sandbox.pid("catalog-publisher"),
    );

    // With sync_prices on, a price change reaches WooCommerce (so the check below can fail).
    world
        .duell
        .update_product(
            y,
            ProductPatch {
                price_inc_vat: Some(Decimal::from(777)),
                ..ProductPatch::default()
            },
        )
        .unwrap();
    eventually("the price change with sync_prices on", WAIT, || async {
        let p = woo_product(&world.client, &y_sku).await?;
        (p.regular_price? > Decimal::from(500)).then_some(())
    })
    .await;

    // Turned off in the registry: a price change stays in DUELL, a stock change still arrives.
    let mut store = world.store.clone();
    store.settings.push("sync_prices = false".into());
    world.sandbox.write_store("s1", &store.to_toml());
    eventually(
        "the publisher to restart the store's tasks",
        WAIT,
        || async {
            (world
                .sandbox
                .logs("catalog-publisher")
                .matches("store started")
                .count()
                >= 2)
                .then_some(())
        },
    )
    .await;
    let before = woo_product(&world.client, &x_sku)
        .await
        .unwrap()
        .regular_price;
    world
        .duell
        .update_product(
            x,
            ProductPatch {
                price_inc_vat: Some(Decimal::from(999)),
                ..ProductPatch::default()
            },
        )
        .unwrap();
    price_observed(&bus, "s1", x, "999").await;
    world
        .duell
        .set_stock(STOCK_DEPARTMENT, x, Decimal::from(4321));
    // The stock fact comes after the price fact in the stream: once it is written, the price
    // fact has been handled too.
    stock_reaches(&world.client, &x_sku, 4321).await;
    let after = woo_product(&world.client, &x_sku)
        .await
        .unwrap()
        .regular_price;
    assert_eq!(after, before, "the price did not reach WooCommerce");
    assert_eq!(
        (
            world.sandbox.pid("change-poller"),
            world.sandbox.pid("catalog-publisher")
        ),
        pids,
        "no service was restarted"
    );

    // A new store: served at once by the running services.
    let woo2 = WooSim::start(WooConfig::default()).await.unwrap();
    let (ck, cs) = woo2.credentials();
    let client2 = WooClient::new(ClientConfig::new(
        woo2.base_url(),
        ck.clone(),
        secrecy::SecretString::from(cs.clone()),
    ))
    .unwrap();
    let mut s2 = world.store.clone();
    s2.id = "s2".into();
    s2.woo_url = woo2.base_url();
    s2.consumer_key = ck;
    s2.consumer_secret = cs;
    world.sandbox.write_store("s2", &s2.to_toml());
    stock_reaches(&client2, &x_sku, 4321).await;

    // Removed: its tasks stop; the other store goes on.
    world.sandbox.delete_store("s2");
    eventually("the publisher to stop s2", WAIT, || async {
        world
            .sandbox
            .logs("catalog-publisher")
            .contains("store no longer served here")
            .then_some(())
    })
    .await;
    world
        .duell
        .set_stock(STOCK_DEPARTMENT, x, Decimal::from(55));
    stock_reaches(&world.client, &x_sku, 55).await;
    assert_eq!(
        woo_product(&client2, &x_sku).await.unwrap().stock_quantity,
        Some(4321),
        "the removed store got no more writes"
    );
    assert_eq!(
        world.sandbox.pid("catalog-publisher"),
        pids.1,
        "no service was restarted"
    );
}
