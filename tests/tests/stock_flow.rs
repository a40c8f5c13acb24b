//! The first vertical slice: a stock change in DUELL appears in WooCommerce, exactly once, even
//! when the publisher is killed between its write and its commit.

use std::time::Duration;

use duellsync_e2e::{eventually, World, STOCK_DEPARTMENT};
use duellsync_woo_sim::{FaultKind, FaultRule};
use rust_decimal::Decimal;

const SETTINGS: &[&str] = &[
    "sync_orders = false",
    "poll_interval = \"200ms\"",
    "stock_poll_interval = \"200ms\"",
];

/// Simple, visible products with a unique number (a duplicate number is a SKU clash in Woo).
fn simple_products(world: &World, n: usize) -> Vec<(u64, String)> {
    let all = world.duell.products();
    let mut out = Vec::new();
    for p in &all {
        let unique = all
            .iter()
            .filter(|q| q.product_number.eq_ignore_ascii_case(&p.product_number))
            .count()
            == 1;
        if p.view_on_webshop && !p.is_deleted && !p.is_parent && p.parent_variant == 0 && unique {
            out.push((p.product_id, p.product_number.clone()));
        }
        if out.len() == n {
            break;
        }
    }
    out
}

async fn woo_stock(world: &World, sku: &str) -> Option<i64> {
    let found = world.client.find_by_sku(sku).await.ok()?;
    found.first().and_then(|p| p.stock_quantity)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stock_changes_reach_woocommerce_once_across_publisher_crashes() {
    let mut world = World::new(30, SETTINGS, "").await;
    world.start(&["change-poller", "catalog-publisher"]);
    let products = simple_products(&world, 3);
    assert_eq!(
        products.len(),
        3,
        "the generated catalogue has simple products"
    );

    // The initial full sync creates the catalogue.
    for (id, sku) in &products {
        let want = world.duell.stock(STOCK_DEPARTMENT, *id).physical.floor();
        let want = i64::try_from(want.max(Decimal::ZERO)).unwrap();
        eventually(
            &format!("{sku} created with stock {want}"),
            Duration::from_secs(60),
            || async { (woo_stock(&world, sku).await == Some(want)).then_some(()) },
        )
        .await;
    }
    // Let the first sync settle, then count from zero.
    tokio::time::sleep(Duration::from_millis(500)).await;
    world.woo.reset_request_counts();

    let mut expected_writes = 0;
    for round in 0..8i64 {
        let (id, sku) = &products[(round as usize) % products.len()];
        let value = 100 + round;
        let crash = round == 2 || round == 5;
        if crash {
            // The write reaches WooCommerce, but the answer never comes back: the publisher is
            // killed after the write and before it could record it.
            world.woo.add_fault(FaultRule::next(
                "POST",
                "products/batch",
                1,
                FaultKind::HangAfterApply,
            ));
        }
        world
            .duell
            .set_stock(STOCK_DEPARTMENT, *id, Decimal::from(value));
        eventually(
            &format!("{sku} stock {value} in Woo"),
            Duration::from_secs(30),
            || async { (woo_stock(&world, sku).await == Some(value)).then_some(()) },
        )
        .await;
        expected_writes += 1;
        if crash {
            world.sandbox.kill("catalog-publisher");
            world.woo.clear_faults();
            world.sandbox.restart("catalog-publisher");
            world
                .sandbox
                .wait_ready("catalog-publisher", Duration::from_secs(60));
        }
    }
    // Give a (wrong) duplicate write the chance to happen before counting.
    tokio::time::sleep(Duration::from_secs(2)).await;
    let writes = world.woo_writes();
    assert_eq!(
        writes.get("POST products/batch").copied().unwrap_or(0),
        expected_writes,
        "one batch write per stock change, none repeated after the crashes: {writes:?}"
    );
    assert_eq!(
        world.woo_write_count(),
        expected_writes,
        "no other writes: {writes:?}"
    );
    for (round, (_, sku)) in products.iter().enumerate() {
        let last = (0..8i64)
            .filter(|r| (*r as usize) % products.len() == round)
            .map(|r| 100 + r)
            .max()
            .unwrap();
        assert_eq!(
            woo_stock(&world, sku).await,
            Some(last),
            "{sku} ends at its last value"
        );
    }
}
