//! Catalogue sync end to end (SPEC §3.1, §3.4): the change-poller and the catalogue publisher as
//! real processes on a private NATS, against the DUELL and WooCommerce simulators. Request counts
//! are what the WooCommerce simulator received.

use std::time::Duration;

use duellsync_bus::{Bus, BusOptions};
use duellsync_duell_sim::{NewSimProduct, ProductPatch, SimConfig as DuellConfig, SimCustomField};
use duellsync_e2e::{eventually, World, STOCK_DEPARTMENT};
use duellsync_events::{meta, v1, Event, EventId};
use duellsync_woo::Product;
use duellsync_woo_sim::{FaultKind, FaultRule, SimConfig as WooConfig};
use prost::Message;
use rust_decimal::Decimal;

const FAST: &[&str] = &[
    "sync_orders = false",
    "poll_interval = \"200ms\"",
    "stock_poll_interval = \"200ms\"",
];

const WAIT: Duration = Duration::from_secs(60);

/// A Norwegian shop that enters prices without tax (so every price is converted: 25 % VAT
/// taken out), with its tax tables (so each product gets the class of its VAT rate).
async fn empty_world(settings: &[&str]) -> World {
    let mut all: Vec<&str> = FAST.to_vec();
    all.extend_from_slice(settings);
    World::with(
        DuellConfig {
            products: 0,
            ..DuellConfig::default()
        },
        WooConfig {
            settings: duellsync_woo_sim::Settings {
                prices_include_tax: false,
                ..duellsync_woo_sim::Settings::norway()
            },
            ..WooConfig::default()
        },
        &all,
        "",
    )
    .await
}

/// Starts the change-poller and the catalogue publisher, the latter with one setting of its
/// own (`DUELLSYNC_PUBLISHER__…`), and waits until both are ready.
fn start_with_publisher_env(world: &mut World, setting: (&str, &str)) {
    world.sandbox.start("change-poller", &[]);
    world.sandbox.start("catalog-publisher", &[setting]);
    world.sandbox.wait_ready("change-poller", WAIT);
    world.sandbox.wait_ready("catalog-publisher", WAIT);
}

fn add(world: &World, name: &str, sku: &str, price: u32, stock: i64) -> u64 {
    world
        .duell
        .create_product(NewSimProduct {
            product_name: name.into(),
            product_number: Some(sku.into()),
            price_inc_vat: Some(Decimal::from(price)),
            vatrate_percent: Some(25),
            category_name: Some("Klær > Herre".into()),
            description: Some(format!("{name} fra DUELL")),
            product_image: Some(String::new()),
            custom_fields: Some(vec![SimCustomField {
                description: "Farge".into(),
                value: "Rød".into(),
            }]),
            stock: Some(Decimal::from(stock)),
            ..NewSimProduct::default()
        })
        .product_id
}

async fn woo(world: &World, sku: &str) -> Option<Product> {
    world
        .client
        .find_by_sku(sku)
        .await
        .ok()
        .and_then(|v| v.into_iter().next())
}

async fn wait_woo(world: &World, what: &str, sku: &str, f: impl Fn(&Product) -> bool) -> Product {
    eventually(what, WAIT, || async {
        woo(world, sku).await.filter(|p| f(p))
    })
    .await
}

async fn bus(world: &World) -> Bus {
    Bus::connect(BusOptions::new(world.sandbox.nats.url(), "test"))
        .await
        .expect("nats")
}

/// Asks for a full sync the way `syncctl sync` does and returns its completion.
async fn full_sync(world: &World, dry_run: bool) -> v1::FullSyncCompleted {
    let bus = bus(world).await;
    let run_id = format!("test-{}", duellsync_events::now_ms());
    let id = EventId::new("fullsync-requested", "s1")
        .str(&run_id)
        .finish();
    bus.publish(&v1::FullSyncRequested {
        meta: Some(meta("s1", id, "test", format!("fullsync:{run_id}"))),
        run_id: run_id.clone(),
        dry_run,
        trigger: v1::full_sync_requested::Trigger::Manual as i32,
    })
    .await
    .expect("command published");
    eventually("the full sync to complete", WAIT, || async {
        let msgs = bus
            .read("SYNC", &v1::FullSyncCompleted::subject("s1"), 1, 10_000)
            .await
            .ok()?;
        msgs.iter()
            .filter_map(|m| v1::FullSyncCompleted::decode(m.payload.as_ref()).ok())
            .find(|c| c.run_id == run_id)
    })
    .await
}

/// Waits until the full sync that follows a store's first DUELL scan is done, so a test's own
/// full sync is not raced by it.
async fn initial_sync_done(world: &World) {
    initial_sync_within(world, WAIT).await;
}

async fn initial_sync_within(world: &World, wait: Duration) {
    let bus = bus(world).await;
    eventually("the initial full sync", wait, || async {
        let msgs = bus
            .read("SYNC", &v1::FullSyncCompleted::subject("s1"), 1, 100)
            .await
            .ok()?;
        (!msgs.is_empty()).then_some(())
    })
    .await;
}

/// Lets WooCommerce requests time out after `timeout` (the store's `woo.request_timeout`).
fn set_request_timeout(world: &World, timeout: &str) {
    let toml = world.store.to_toml().replace(
        "[woo]\n",
        &format!("[woo]\nrequest_timeout = \"{timeout}\"\n"),
    );
    world.sandbox.write_store("s1", &toml);
}

fn batch_writes(world: &World) -> u64 {
    world.woo.request_count("POST products/batch")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_sync_of_1000_new_products_costs_10_batch_writes_and_a_second_none() {
    let mut world = empty_world(&[]).await;
    for n in 0..1000 {
        world.duell.create_product(NewSimProduct {
            product_name: format!("Vare {n}"),
            product_number: Some(format!("V{n:04}")),
            price_inc_vat: Some(Decimal::from(100 + n)),
            product_image: Some(String::new()),
            category_name: Some(String::new()),
            stock: Some(Decimal::from(5)),
            ..NewSimProduct::default()
        });
    }
    world.start(&["change-poller", "catalog-publisher"]);
    initial_sync_within(&world, WAIT * 2).await;
    let products = world.woo_products().await;
    assert_eq!(products.len(), 1000);
    assert!(products.values().all(|p| p.stock_quantity == Some(5)));
    assert_eq!(batch_writes(&world), 10, "{:?}", world.woo_writes());

    world.woo.reset_request_counts();
    let done = full_sync(&world, false).await;
    let plan = done.plan.expect("a plan");
    assert_eq!(plan.unchanged, 1000);
    assert_eq!(done.batch_writes, 0);
    assert_eq!(world.woo_write_count(), 0, "{:?}", world.woo_writes());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_storm_of_1000_stock_changes_of_one_product_costs_one_write_per_write_interval() {
    let mut world = empty_world(&[]).await;
    let id = add(&world, "Storm", "STORM-1", 100, 1) as i64;
    world.start(&["change-poller", "catalog-publisher"]);
    wait_woo(&world, "the product", "STORM-1", |p| {
        p.stock_quantity == Some(1)
    })
    .await;
    world.woo.reset_request_counts();

    // DUELL's stock scan cannot see 1000 changes a second; the facts are appended as a
    // change-notice-fed poller would.
    let bus = bus(&world).await;
    let start = std::time::Instant::now();
    let mut tick = tokio::time::interval(Duration::from_micros(900));
    for n in 0..1000i64 {
        tick.tick().await;
        let value = (n + 10).to_string();
        let ev = v1::StockObserved {
            meta: Some(meta(
                "s1",
                EventId::new("storm", "s1").int(n).finish(),
                "test",
                String::new(),
            )),
            product_id: id,
            product_number: "STORM-1".into(),
            stock: value.clone(),
            actual_stock: value,
        };
        bus.publish(&ev).await.expect("published");
    }
    // How fast the storm went depends on the machine; the bound on the writes follows from how
    // long it lasted (SPEC §8's "≤ 5 writes for 1,000 changes in 1 s" is measured by the
    // bench): the product is written at most once per `min_write_interval` (300 ms) while facts
    // come in, plus the last value once they stop.
    let storm = start.elapsed();
    wait_woo(&world, "the last value", "STORM-1", |p| {
        p.stock_quantity == Some(1009)
    })
    .await;
    tokio::time::sleep(Duration::from_millis(800)).await;
    let writes = batch_writes(&world);
    let min_write_interval = Duration::from_millis(300);
    let linger = Duration::from_millis(50);
    let bound = 2
        + (storm + linger)
            .as_millis()
            .div_ceil(min_write_interval.as_millis()) as u64;
    assert!(
        (1..=bound).contains(&writes),
        "{writes} writes for a storm of {storm:?} (at most {bound}): {:?}",
        world.woo_writes()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_image_is_downloaded_once_across_a_crash_and_for_every_product_showing_it() {
    let mut world = empty_world(&[]).await;
    let img = |name: &str, sku: &str| NewSimProduct {
        product_name: name.into(),
        product_number: Some(sku.into()),
        product_image: Some("shared-picture".into()),
        stock: Some(Decimal::from(3)),
        ..NewSimProduct::default()
    };
    world.duell.create_product(img("Bilde A", "IMG-A"));
    world.start(&["change-poller", "catalog-publisher"]);
    let a = wait_woo(&world, "product A with its image", "IMG-A", |p| {
        !p.images.is_empty()
    })
    .await;
    let attachment = a.images[0].id;
    assert_eq!(world.woo.attachments().len(), 1);
    initial_sync_done(&world).await;

    // The next create downloads nothing new even when the answer is lost: it reuses the
    // attachment, and the crash is settled by reading.
    world.woo.add_fault(FaultRule::next(
        "POST",
        "products/batch",
        1,
        FaultKind::HangAfterApply,
    ));
    world.duell.create_product(img("Bilde B", "IMG-B"));
    let b = wait_woo(&world, "product B", "IMG-B", |p| !p.images.is_empty()).await;
    world.sandbox.kill("catalog-publisher");
    world.woo.clear_faults();
    world.sandbox.restart("catalog-publisher");
    world.sandbox.wait_ready("catalog-publisher", WAIT);
    assert_eq!(b.images[0].id, attachment, "the attachment is reused by id");

    // A product whose image was removed by hand gets it back, again without a download.
    world
        .woo
        .admin_write_product(Some(a.id), serde_json::json!({"images": []}))
        .unwrap();
    full_sync(&world, false).await;
    let a = wait_woo(&world, "A's image back", "IMG-A", |p| !p.images.is_empty()).await;
    assert_eq!(a.images[0].id, attachment);
    assert_eq!(
        world.woo.attachments().len(),
        1,
        "{:?}",
        world.woo.attachments()
    );
    assert_eq!(
        world.woo_products().await.len(),
        2,
        "no duplicate product after the crash"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn price_drift_made_in_woocommerce_is_corrected_by_the_next_reconciliation() {
    let mut world = empty_world(&[]).await;
    add(&world, "Jakke", "JAKKE-1", 1250, 2);
    world.start(&["change-poller", "catalog-publisher"]);
    let p = wait_woo(&world, "the jacket", "JAKKE-1", |p| {
        p.regular_price.is_some()
    })
    .await;
    let price = p.regular_price.unwrap();
    // The full sync after the first DUELL scan would otherwise correct the drift itself and
    // leave nothing for the one this test asks for.
    initial_sync_done(&world).await;
    world
        .woo
        .admin_write_product(Some(p.id), serde_json::json!({"regular_price": "1.00"}))
        .unwrap();
    let done = full_sync(&world, false).await;
    assert_eq!(
        done.plan.unwrap().updates_by_field.get("regular_price"),
        Some(&1)
    );
    wait_woo(&world, "the price corrected", "JAKKE-1", |p| {
        p.regular_price == Some(price)
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn price_drift_is_left_alone_and_reported_when_woocommerce_owns_prices() {
    let mut world = empty_world(&["sync_prices = false"]).await;
    add(&world, "Jakke", "JAKKE-1", 1250, 2);
    world.start(&["change-poller", "catalog-publisher"]);
    let p = wait_woo(&world, "the jacket", "JAKKE-1", |_| true).await;
    initial_sync_done(&world).await;
    world
        .woo
        .admin_write_product(Some(p.id), serde_json::json!({"regular_price": "1.00"}))
        .unwrap();
    world.woo.reset_request_counts();
    let done = full_sync(&world, false).await;
    let plan = done.plan.unwrap();
    assert_eq!(plan.updates_by_field.get("regular_price"), None);
    assert_eq!(plan.drift_left_alone.get("regular_price"), Some(&1));
    assert_eq!(world.woo_write_count(), 0);
    let p = woo(&world, "JAKKE-1").await.unwrap();
    assert_eq!(p.regular_price, Some(Decimal::ONE));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dry_run_plans_every_change_and_writes_nothing() {
    let mut world = empty_world(&["automatic = false"]).await;
    add(&world, "A", "DRY-A", 100, 1);
    add(&world, "B", "DRY-B", 200, 1);
    // DUELL numbers are not unique: this one cannot be created beside the first (issue 12 §6:
    // it was counted as a create and a failure).
    add(&world, "A igjen", "DRY-A", 100, 1);
    world.start(&["change-poller", "catalog-publisher"]);
    let done = full_sync(&world, true).await;
    let plan = done.plan.unwrap();
    assert!(done.dry_run);
    assert_eq!(plan.creates, 2, "{:?}", plan.sample);
    assert_eq!(plan.failures, 1, "{:?}", plan.sample);
    assert_eq!(
        plan.pending, 3,
        "with automatic off every planned write is pending anyway"
    );
    assert!(plan.replaces_attributes);
    assert!(
        plan.sample.iter().any(|l| l.contains("create SKU DRY-A")),
        "{:?}",
        plan.sample
    );
    assert_eq!(world.woo_write_count(), 0);
    assert!(world.woo_products().await.is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_automatic_off_changes_wait_for_a_manual_sync() {
    let mut world = empty_world(&["automatic = false"]).await;
    add(&world, "A", "MAN-A", 100, 1);
    world.start(&["change-poller", "catalog-publisher"]);
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert!(
        world.woo_products().await.is_empty(),
        "nothing written automatically"
    );
    let done = full_sync(&world, false).await;
    assert_eq!(done.plan.unwrap().creates, 1);
    wait_woo(&world, "the product after the manual sync", "MAN-A", |_| {
        true
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_every_catalogue_setting_on_duell_owns_names_prices_stock_images_categories_and_attributes(
) {
    let mut world = empty_world(&["new_product_status = \"draft\""]).await;
    let id = world
        .duell
        .create_product(NewSimProduct {
            product_name: "Skjorte & slips".into(),
            product_number: Some("ON-1".into()),
            price_inc_vat: Some(Decimal::from(500)),
            vatrate_percent: Some(25),
            category_name: Some("Klær > Herre > Skjorter".into()),
            description: Some("Lang beskrivelse".into()),
            custom_fields: Some(vec![SimCustomField {
                description: "Farge".into(),
                value: "Blå".into(),
            }]),
            stock: Some(Decimal::new(75, 1)),
            ..NewSimProduct::default()
        })
        .product_id;
    world.start(&["change-poller", "catalog-publisher"]);
    let p = wait_woo(&world, "created", "ON-1", |_| true).await;
    // The shop enters prices without tax: 500 incl. 25 % VAT is 400.
    assert_eq!(p.regular_price, Some(Decimal::from(400)));
    assert_eq!(p.stock_quantity, Some(7), "7.5 is rounded down");
    assert_eq!(p.status, "draft", "new_product_status");
    assert_eq!(p.images.len(), 1, "sync_images");
    let cats: Vec<&str> = p.categories.iter().map(|c| c.name.as_str()).collect();
    assert_eq!(
        cats,
        vec!["Skjorter"],
        "sync_new_categories: the deepest level of the tree"
    );
    assert!(p
        .attributes
        .iter()
        .any(|a| a.name == "Farge" && a.options == vec!["Blå"]));

    world
        .duell
        .update_product(
            id,
            ProductPatch {
                product_name: Some("Skjorte og slips".into()),
                price_inc_vat: Some(Decimal::from(625)),
                custom_fields: Some(vec![SimCustomField {
                    description: "Farge".into(),
                    value: "Grønn".into(),
                }]),
                category_name: Some("Annet".into()),
                ..ProductPatch::default()
            },
        )
        .unwrap();
    world
        .duell
        .set_stock(STOCK_DEPARTMENT, id, Decimal::from(-2));
    let p = wait_woo(&world, "updated", "ON-1", |p| {
        p.name == "Skjorte og slips"
            && p.regular_price == Some(Decimal::from(500))
            && p.stock_quantity == Some(0)
            && p.attributes.iter().any(|a| a.options == vec!["Grønn"])
    })
    .await;
    let cats: Vec<&str> = p.categories.iter().map(|c| c.name.as_str()).collect();
    assert_eq!(
        cats,
        vec!["Skjorter"],
        "categories are set only at creation"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_every_catalogue_setting_off_woocommerce_keeps_what_it_has() {
    let mut world = empty_world(&[
        "update_products = false",
        "sync_prices = false",
        "sync_stock = false",
        "sync_images = false",
        "sync_new_categories = false",
        "sync_attributes = false",
    ])
    .await;
    let id = world
        .duell
        .create_product(NewSimProduct {
            product_name: "Bukse".into(),
            product_number: Some("OFF-1".into()),
            price_inc_vat: Some(Decimal::from(500)),
            category_name: Some("Klær > Dame".into()),
            custom_fields: Some(vec![SimCustomField {
                description: "Farge".into(),
                value: "Blå".into(),
            }]),
            stock: Some(Decimal::from(4)),
            ..NewSimProduct::default()
        })
        .product_id;
    world.start(&["change-poller", "catalog-publisher"]);
    let p = wait_woo(&world, "created", "OFF-1", |_| true).await;
    assert_eq!(p.status, "publish", "the default new_product_status");
    assert_eq!(
        p.regular_price, None,
        "sync_prices off: no price from DUELL"
    );
    assert_eq!(p.stock_quantity, None, "sync_stock off");
    assert!(p.images.is_empty(), "sync_images off");
    assert!(p.attributes.is_empty(), "sync_attributes off");
    assert!(
        p.categories.iter().all(|c| c.name == "Uncategorized"),
        "sync_new_categories off: {:?}",
        p.categories
    );
    world.woo.reset_request_counts();
    world
        .duell
        .update_product(
            id,
            ProductPatch {
                product_name: Some("Ny bukse".into()),
                price_inc_vat: Some(Decimal::from(900)),
                ..ProductPatch::default()
            },
        )
        .unwrap();
    world
        .duell
        .set_stock(STOCK_DEPARTMENT, id, Decimal::from(40));
    tokio::time::sleep(Duration::from_secs(2)).await;
    let p = woo(&world, "OFF-1").await.unwrap();
    assert_eq!(p.name, "Bukse", "update_products off");
    assert_eq!(world.woo_write_count(), 0, "{:?}", world.woo_writes());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_create_products_off_new_duell_products_stay_out_of_woocommerce() {
    let mut world = empty_world(&["create_products = false"]).await;
    add(&world, "Ny", "NEW-1", 100, 1);
    world.start(&["change-poller", "catalog-publisher"]);
    // A sync requested while the first one is queued can be covered by it (and then reports
    // nothing of its own): ask once the first is done.
    initial_sync_done(&world).await;
    let done = full_sync(&world, false).await;
    assert_eq!(done.plan.unwrap().creates, 0);
    assert!(woo(&world, "NEW-1").await.is_none());
    assert_eq!(world.woo_write_count(), 0);
}

async fn hide_and_show(action: &str, hidden_status: &str) {
    let mut world = empty_world(&[&format!("hidden_product_action = \"{action}\"")]).await;
    let id = add(&world, "Skjult", "HIDE-1", 100, 1);
    world.start(&["change-poller", "catalog-publisher"]);
    let p = wait_woo(&world, "created", "HIDE-1", |p| p.status == "publish").await;
    world.duell.set_visible(id, false).unwrap();
    let status = eventually("hidden in Woo", WAIT, || async {
        let v = world.woo.product_json(p.id)?;
        let s = v["status"].as_str()?.to_owned();
        (s == hidden_status).then_some(s)
    })
    .await;
    assert_eq!(status, hidden_status);
    world.duell.set_visible(id, true).unwrap();
    eventually("visible again", WAIT, || async {
        let v = world.woo.product_json(p.id)?;
        (v["status"].as_str()? == "publish").then_some(())
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hidden_product_becomes_a_draft_and_comes_back() {
    hide_and_show("draft", "draft").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hidden_product_becomes_private_when_configured() {
    hide_and_show("private", "private").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hidden_product_goes_to_the_trash_when_configured() {
    hide_and_show("trash", "trash").await;
}

/// The initial full sync reads WooCommerce's catalogue while the live writer creates the
/// product, and the page (taken before the create) arrives after it. The full sync took the
/// product missing from that page as deleted by a person and dropped its link; a hide that was
/// still waiting for `min_write_interval` then found nothing to hide, and the product stayed on
/// sale. (Paced reconciliations made this window wide enough for the hide tests above to fail
/// about 1 run in 4.)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_product_created_while_a_full_sync_reads_the_catalogue_keeps_its_link() {
    let mut world = empty_world(&[]).await;
    let id = add(&world, "Sen", "LATE-1", 100, 1);
    world.woo.add_fault(FaultRule {
        // The full sync's catalogue pages, not the writer's look-ups by SKU.
        query_contains: Some("orderby=id".into()),
        ..FaultRule::next("GET", "products", 1, FaultKind::SlowAnswer { ms: 2000 })
    });
    start_with_publisher_env(
        &mut world,
        ("DUELLSYNC_PUBLISHER__MIN_WRITE_INTERVAL", "4s"),
    );
    let p = wait_woo(&world, "created", "LATE-1", |p| p.status == "publish").await;
    world.duell.set_visible(id, false).unwrap();
    eventually("hidden in Woo", WAIT, || async {
        let v = world.woo.product_json(p.id)?;
        (v["status"].as_str()? == "draft").then_some(())
    })
    .await;
    assert_eq!(world.woo_products().await.len(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_campaign_becomes_a_sale_with_its_period_and_ending_it_clears_the_sale() {
    let mut world = empty_world(&[]).await;
    let id = add(&world, "Kampanje", "SALE-1", 1000, 1);
    let now = time::OffsetDateTime::now_utc();
    let at = |d: time::Duration| {
        let t = now + d;
        time::PrimitiveDateTime::new(t.date(), time::Time::from_hms(0, 0, 0).unwrap())
    };
    world
        .duell
        .update_product(
            id,
            ProductPatch {
                special_price: Some(Some(Decimal::from(750))),
                special_price_start_date: Some(Some(at(time::Duration::days(-1)))),
                special_price_end_date: Some(Some(at(time::Duration::days(10)))),
                ..ProductPatch::default()
            },
        )
        .unwrap();
    world.start(&["change-poller", "catalog-publisher"]);
    // 750 incl. 25 % VAT = 600 in a shop that enters prices without tax.
    let p = wait_woo(&world, "the sale", "SALE-1", |p| p.sale_price.is_some()).await;
    assert_eq!(p.sale_price, Some(Decimal::from(600)));
    assert!(p.on_sale);
    assert!(p.date_on_sale_to_gmt.is_some());
    world
        .duell
        .update_product(
            id,
            ProductPatch {
                special_price: Some(None),
                ..ProductPatch::default()
            },
        )
        .unwrap();
    wait_woo(&world, "the sale ended", "SALE-1", |p| {
        p.sale_price.is_none() && !p.on_sale
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn variants_become_a_variable_product_with_variations() {
    let mut world = empty_world(&[]).await;
    let parent = world
        .duell
        .create_product(NewSimProduct {
            product_name: "T-skjorte".into(),
            product_number: Some("TS".into()),
            is_parent: Some(true),
            product_image: Some(String::new()),
            ..NewSimProduct::default()
        })
        .product_id;
    for (name, sku, price, stock) in [
        ("T-skjorte Rød", "TS-R", 200, 3),
        ("T-skjorte Blå", "TS-B", 250, 4),
    ] {
        world.duell.create_product(NewSimProduct {
            product_name: name.into(),
            product_number: Some(sku.into()),
            parent_variant: Some(parent),
            price_inc_vat: Some(Decimal::from(price)),
            product_image: Some(String::new()),
            stock: Some(Decimal::from(stock)),
            ..NewSimProduct::default()
        });
    }
    world.start(&["change-poller", "catalog-publisher"]);
    let p = wait_woo(&world, "the variable product", "TS", |p| {
        p.variations.len() == 2
    })
    .await;
    assert_eq!(p.kind, "variable");
    let attr = p
        .attributes
        .iter()
        .find(|a| a.name == "Variant")
        .expect("variant attribute");
    let mut opts = attr.options.clone();
    opts.sort();
    assert_eq!(opts, vec!["Blå", "Rød"]);
    let v = wait_woo(&world, "the red variation", "TS-R", |v| {
        v.stock_quantity == Some(3)
    })
    .await;
    assert_eq!(v.kind, "variation");
    assert_eq!(v.regular_price, Some(Decimal::from(160)));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_sku_clash_fails_only_that_product_and_is_logged() {
    let mut world = empty_world(&[]).await;
    add(&world, "Første", "SAME", 100, 1);
    add(&world, "Andre", "SAME", 100, 1);
    add(&world, "Tredje", "OTHER", 100, 1);
    world.start(&["change-poller", "catalog-publisher"]);
    wait_woo(&world, "the other product", "OTHER", |_| true).await;
    wait_woo(&world, "one product with the shared SKU", "SAME", |_| true).await;
    let bus = bus(&world).await;
    let failed = eventually("the failure in the sync log", WAIT, || async {
        let msgs = bus
            .read("SYNC", &v1::ProductFailed::subject("s1"), 1, 100)
            .await
            .ok()?;
        msgs.first()
            .and_then(|m| v1::ProductFailed::decode(m.payload.as_ref()).ok())
    })
    .await;
    assert_eq!(failed.sku, "SAME");
    assert!(failed.permanent);
    let dlq = bus
        .read("DLQ", "dlq.s1.catalog-publisher", 1, 100)
        .await
        .unwrap();
    assert_eq!(dlq.len(), 1, "the failure is dead-lettered for a replay");
    assert_eq!(world.woo_products().await.len(), 2);
}

/// Issue 12 §3: a DUELL parent whose number another product already has in WooCommerce fails
/// for good. It is dead-lettered once, its variants are parked with its reason, and nothing is
/// retried (no look-ups, no writes) until its cause changes — not by later flushes, not by a
/// full sync.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_permanent_failure_is_dead_lettered_once_and_not_retried_until_its_cause_changes() {
    let mut world = empty_world(&[]).await;
    add(&world, "Enkel", "DUP", 100, 1);
    let parent = world
        .duell
        .create_product(NewSimProduct {
            product_name: "Genser".into(),
            product_number: Some("DUP".into()),
            is_parent: Some(true),
            product_image: Some(String::new()),
            ..NewSimProduct::default()
        })
        .product_id;
    for (name, sku) in [("Genser Rød", "DUP-R"), ("Genser Blå", "DUP-B")] {
        world.duell.create_product(NewSimProduct {
            product_name: name.into(),
            product_number: Some(sku.into()),
            parent_variant: Some(parent),
            price_inc_vat: Some(Decimal::from(300)),
            product_image: Some(String::new()),
            stock: Some(Decimal::from(2)),
            ..NewSimProduct::default()
        });
    }
    world.start(&["change-poller", "catalog-publisher"]);
    initial_sync_done(&world).await;
    let bus = bus(&world).await;
    let failures = || async {
        bus.read("SYNC", &v1::ProductFailed::subject("s1"), 1, 100)
            .await
            .unwrap()
            .iter()
            .filter_map(|m| v1::ProductFailed::decode(m.payload.as_ref()).ok())
            .collect::<Vec<_>>()
    };
    let logged = eventually("the parent and its variants failed", WAIT, || async {
        let f = failures().await;
        (f.len() >= 3).then_some(f)
    })
    .await;
    let mut codes: Vec<(String, String)> = logged
        .iter()
        .map(|f| (f.sku.clone(), f.code.clone()))
        .collect();
    codes.sort();
    assert_eq!(
        codes,
        vec![
            ("DUP".to_owned(), "duplicate_sku".to_owned()),
            ("DUP-B".to_owned(), "parent_failed".to_owned()),
            ("DUP-R".to_owned(), "parent_failed".to_owned()),
        ],
        "{logged:?}"
    );
    assert!(logged
        .iter()
        .filter(|f| f.code == "parent_failed")
        .all(|f| f.message.contains("DUP") && f.message.contains("duplicate_sku")));

    // A full sync and then quiet: nothing is tried again.
    full_sync(&world, false).await;
    world.woo.reset_request_counts();
    tokio::time::sleep(Duration::from_secs(6)).await;
    assert_eq!(
        world.woo.request_counts(),
        Default::default(),
        "no look-ups and no writes for a product that failed for good"
    );
    let dlq = bus
        .read("DLQ", "dlq.s1.catalog-publisher", 1, 100)
        .await
        .unwrap();
    assert_eq!(dlq.len(), 1, "dead-lettered once");
    assert_eq!(failures().await.len(), 3, "logged once per product");

    // The cause goes away: the parent gets its own number in DUELL; it and its variants are
    // written.
    world
        .duell
        .update_product(
            parent,
            ProductPatch {
                product_number: Some("GENSER".into()),
                ..ProductPatch::default()
            },
        )
        .unwrap();
    wait_woo(&world, "the parent with its variations", "GENSER", |p| {
        p.variations.len() == 2
    })
    .await;
}

/// Issue 12 §4: a dry run records nothing, so it can never lead to a write. (It used to adopt
/// and drop links while reading WooCommerce: a product deleted by hand was then re-created by
/// the live path right after the dry run that only planned it.)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dry_run_records_nothing_and_no_write_follows_it() {
    let mut world = empty_world(&[]).await;
    add(&world, "Lampe", "LAMP-1", 400, 3);
    let other = add(&world, "Stol", "CHAIR-1", 900, 2);
    world.start(&["change-poller", "catalog-publisher"]);
    let p = wait_woo(&world, "the lamp", "LAMP-1", |_| true).await;
    initial_sync_done(&world).await;
    world.client.delete_product(p.id, true).await.unwrap();
    world.woo.reset_request_counts();
    let done = full_sync(&world, true).await;
    let plan = done.plan.unwrap();
    assert_eq!(plan.creates, 1, "the dry run plans to create it again");
    assert_eq!(plan.pending, 0, "nothing was pending before the dry run");
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert_eq!(world.woo_write_count(), 0, "{:?}", world.woo_writes());
    // A live change of another product makes the writer write what is dirty: the lamp is not.
    world
        .duell
        .set_stock(STOCK_DEPARTMENT, other, Decimal::from(7));
    wait_woo(&world, "the chair's new stock", "CHAIR-1", |p| {
        p.stock_quantity == Some(7)
    })
    .await;
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert!(
        woo(&world, "LAMP-1").await.is_none(),
        "the dry run led to a create: {:?}",
        world.woo_writes()
    );
}

/// Issue 13 defect 3: two products showing one new image, written in one flush, with the
/// first write's answer lost: the image is downloaded once (the second product gets the
/// attachment by id once the first write is settled).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_image_of_two_products_written_together_is_downloaded_once_even_when_the_answer_is_lost(
) {
    let mut world = empty_world(&[]).await;
    set_request_timeout(&world, "2s");
    for (name, sku) in [("Kopp A", "CUP-A"), ("Kopp B", "CUP-B")] {
        world.duell.create_product(NewSimProduct {
            product_name: name.into(),
            product_number: Some(sku.into()),
            product_image: Some("shared-cup".into()),
            stock: Some(Decimal::from(3)),
            ..NewSimProduct::default()
        });
    }
    world.woo.add_fault(FaultRule::next(
        "POST",
        "products/batch",
        1,
        FaultKind::HangAfterApply,
    ));
    start_with_publisher_env(&mut world, ("DUELLSYNC_PUBLISHER__SETTLE_AFTER", "3s"));
    let a = wait_woo(&world, "A with its image", "CUP-A", |p| {
        !p.images.is_empty()
    })
    .await;
    let b = wait_woo(&world, "B with its image", "CUP-B", |p| {
        !p.images.is_empty()
    })
    .await;
    assert_eq!(a.images[0].id, b.images[0].id, "one attachment for both");
    assert_eq!(
        world.woo.attachments().len(),
        1,
        "{:?}",
        world.woo.attachments()
    );
    assert_eq!(world.woo_products().await.len(), 2);
}

/// Issue 13 defect 1: a stock change is written while a reconciliation is still reading a slow
/// WooCommerce, not after it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stock_change_is_written_while_a_reconciliation_runs() {
    let mut world = empty_world(&[]).await;
    let mut ids = Vec::new();
    for n in 0..250 {
        ids.push(add(
            &world,
            &format!("Vare {n}"),
            &format!("R{n:03}"),
            100,
            5,
        ));
    }
    world.start(&["change-poller", "catalog-publisher"]);
    initial_sync_within(&world, WAIT * 2).await;
    let woo_id = woo(&world, "R007").await.unwrap().id;
    // Every page of the reconciliation's read takes 1.5 s.
    world.woo.add_fault(FaultRule {
        method: Some("GET".into()),
        route: Some("products".into()),
        path_contains: None,
        query_contains: None,
        kind: FaultKind::Latency { ms: 1500 },
        times: Some(6),
        probability: None,
    });
    let bus = bus(&world).await;
    let run_id = format!("test-{}", duellsync_events::now_ms());
    let id = EventId::new("fullsync-requested", "s1")
        .str(&run_id)
        .finish();
    bus.publish(&v1::FullSyncRequested {
        meta: Some(meta("s1", id, "test", format!("fullsync:{run_id}"))),
        run_id: run_id.clone(),
        dry_run: false,
        trigger: v1::full_sync_requested::Trigger::Manual as i32,
    })
    .await
    .unwrap();
    // Once WooCommerce is being read, DUELL's stock changes.
    eventually("the reconciliation reading WooCommerce", WAIT, || async {
        let msgs = bus
            .read("SYNC", &v1::FullSyncProgress::subject("s1"), 1, 10_000)
            .await
            .ok()?;
        msgs.iter()
            .filter_map(|m| v1::FullSyncProgress::decode(m.payload.as_ref()).ok())
            .find(|p| p.run_id == run_id && p.phase == "read-woo")
    })
    .await;
    world
        .duell
        .set_stock(STOCK_DEPARTMENT, ids[7], Decimal::from(42));
    eventually("the new stock in WooCommerce", WAIT, || async {
        let v = world.woo.product_json(woo_id)?;
        (v["stock_quantity"].as_i64() == Some(42)).then_some(())
    })
    .await;
    let completed = bus
        .read("SYNC", &v1::FullSyncCompleted::subject("s1"), 1, 10_000)
        .await
        .unwrap()
        .iter()
        .filter_map(|m| v1::FullSyncCompleted::decode(m.payload.as_ref()).ok())
        .any(|c| c.run_id == run_id);
    assert!(
        !completed,
        "the stock was written before the reconciliation was done, not after it"
    );
}

/// Issue 12 §1: a DUELL product WooCommerce has twice (here a copy tagged with its DUELL id)
/// is named by the full sync, and the oldest copy stays the one written to.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_sync_names_duplicates_and_keeps_writing_to_the_oldest() {
    let mut world = empty_world(&[]).await;
    let id = add(&world, "Bord", "TABLE-1", 1000, 2);
    world.start(&["change-poller", "catalog-publisher"]);
    let original = wait_woo(&world, "the table", "TABLE-1", |_| true).await;
    initial_sync_done(&world).await;
    let copy = world
        .woo
        .admin_write_product(
            None,
            serde_json::json!({
                "name": "Bord",
                "meta_data": [{"key": "_duell_product_id", "value": id.to_string()}],
            }),
        )
        .unwrap();
    assert!(copy > original.id);
    let done = full_sync(&world, false).await;
    let plan = done.plan.unwrap();
    assert_eq!(plan.duplicates, 1, "{plan:?}");
    assert!(
        plan.duplicate_lines[0].contains(&format!("{} (kept), {copy}", original.id)),
        "{:?}",
        plan.duplicate_lines
    );
    world
        .duell
        .set_stock(STOCK_DEPARTMENT, id, Decimal::from(9));
    wait_woo(&world, "the new stock on the original", "TABLE-1", |p| {
        p.stock_quantity == Some(9)
    })
    .await;
    let copy_json = world.woo.product_json(copy).unwrap();
    assert_ne!(
        copy_json["stock_quantity"].as_i64(),
        Some(9),
        "the copy is left alone"
    );
}
