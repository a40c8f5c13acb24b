//! `syncctl repair duplicates --store S [--dry-run]` against a WooCommerce simulator that made a
//! product twice (two overlapping creates of one SKU both succeed, as on a real store).

use std::time::Duration;

use duellsync_duell_sim::SimConfig as DuellConfig;
use duellsync_woo::{Batch, MetaWrite, ProductWrite};
use duellsync_woo_sim::SimConfig as WooConfig;

use crate::helpers::{env, syncctl};
use crate::world::World;

fn create(sku: &str, duell_id: i64) -> ProductWrite {
    ProductWrite {
        name: Some(format!("Vare {sku}")),
        sku: Some(sku.to_owned()),
        meta_data: Some(vec![MetaWrite {
            key: "_duell_product_id".into(),
            value: Some(serde_json::Value::String(duell_id.to_string())),
        }]),
        ..ProductWrite::default()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn duplicates_are_listed_by_a_dry_run_and_the_younger_copy_is_trashed() {
    let world = World::with(
        DuellConfig {
            products: 0,
            ..DuellConfig::default()
        },
        WooConfig {
            batch_item_time: Duration::from_millis(100),
            racy_sku_check: true,
            ..WooConfig::default()
        },
        &[],
    )
    .await;
    let twin = Batch {
        create: vec![create("DUP", 5)],
        ..Batch::default()
    };
    let (a, b) = tokio::join!(
        world.client.batch_products(&twin),
        world.client.batch_products(&twin)
    );
    a.unwrap();
    b.unwrap();
    world
        .client
        .batch_products(&Batch {
            create: vec![create("ONE", 6)],
            ..Batch::default()
        })
        .await
        .unwrap();
    let mut ids = world.woo.product_ids();
    ids.sort();
    assert_eq!(ids.len(), 3, "the simulator made DUP twice");

    let e = env(&world.sandbox.nats.url(), &world.sandbox.stores_path());
    let dry = syncctl(
        &e,
        &[
            "--json",
            "repair",
            "duplicates",
            "--store",
            "s1",
            "--dry-run",
        ],
    )
    .await;
    assert_eq!(dry.code, 0, "{dry}");
    let v = dry.json();
    assert_eq!(v["duplicates"].as_array().unwrap().len(), 1, "{v}");
    assert_eq!(v["duplicates"][0]["sku"], "DUP");
    assert_eq!(v["duplicates"][0]["keep"], ids[0]);
    assert_eq!(v["duplicates"][0]["trash"], serde_json::json!([ids[1]]));
    assert_eq!(world.woo.product_count(), 3, "a dry run changes nothing");

    let run = syncctl(&e, &["repair", "duplicates", "--store", "s1"]).await;
    assert_eq!(run.code, 0, "{run}");
    assert!(run.stdout.contains("keep"), "{run}");
    assert_eq!(world.woo.product_ids(), vec![ids[0], ids[2]]);
    let trashed = world.woo.product_json(ids[1]).unwrap();
    assert_eq!(
        trashed["status"], "trash",
        "moved to the trash, not deleted"
    );

    let again = syncctl(&e, &["--json", "repair", "duplicates", "--store", "s1"]).await;
    assert_eq!(again.json()["duplicates"], serde_json::json!([]));
}
