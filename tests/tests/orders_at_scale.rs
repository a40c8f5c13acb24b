//! Issue #6's acceptance test: 500 web orders reach DUELL exactly once through real, signed
//! WooCommerce webhooks that arrive three times each, lose 10 % of deliveries, and are disabled
//! by WooCommerce in the middle of the run (webhook-ingest is down long enough for 7 failed
//! deliveries). What the webhooks miss, the change-poller's gap-fill finds; its reconciliation
//! re-creates the disabled webhooks, which deliver again afterwards.

use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, Instant};

use duellsync_bus::{Bus, BusOptions};
use duellsync_duell_sim::NewSimProduct;
use duellsync_e2e::{empty_duell, eventually, plain_shop, World};
use duellsync_events::{v1, Event};
use duellsync_test_support::free_port;
use duellsync_woo_sim::{DeliveryKnobs, PlaceLine, PlaceOrder, Settings, SimConfig as WooConfig};

const STORE: &str = "s1";
const ORDERS: usize = 500;
/// Distinct buyers; most of them order many times.
const BUYERS: usize = 40;
const SKUS: [&str; 5] = ["TS-1", "TS-2", "TS-3", "TS-4", "TS-5"];
const STATUS_AFTER_IMPORT: &str = "on-hold";
const WAIT: Duration = Duration::from_secs(60);
const INGEST: &str = "webhook-ingest";
const POLLER: &str = "change-poller";
const IMPORTER: &str = "order-importer";

fn place(world: &World, n: usize) -> u64 {
    let buyer = n % BUYERS;
    let order = PlaceOrder {
        lines: vec![PlaceLine {
            sku: Some(SKUS[n % SKUS.len()].into()),
            quantity: 1 + (n % 3) as i64,
            ..PlaceLine::default()
        }],
        billing: [
            ("first_name", "Kunde".to_owned()),
            ("last_name", format!("Nummer {buyer}")),
            ("email", format!("kunde{buyer}@example.no")),
            ("phone", format!("+47 9{buyer:07}")),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_owned(), Some(v)))
        .collect(),
        ..PlaceOrder::default()
    };
    world
        .woo
        .place_order(&order)
        .expect("woo-sim takes the order")
}

/// Places `count` orders as bursts of checkouts, a short breath between bursts, as a busy shop
/// would see them; returns their ids.
async fn place_bursts(world: &World, from: usize, count: usize) -> Vec<u64> {
    let mut ids = Vec::with_capacity(count);
    for n in from..from + count {
        ids.push(place(world, n));
        if ids.len() % 25 == 0 {
            tokio::time::sleep(Duration::from_millis(150)).await;
        }
    }
    ids
}

/// The order webhooks as WooCommerce lists them: topic → (id, status).
async fn webhooks(world: &World) -> BTreeMap<String, (u64, String)> {
    world
        .client
        .list_webhooks(None)
        .await
        .unwrap_or_default()
        .into_iter()
        .filter(|h| h.topic.starts_with("order."))
        .map(|h| (h.topic, (h.id, h.status)))
        .collect()
}

async fn events<E: Event>(bus: &Bus) -> Vec<E> {
    let stream = duellsync_events::stream_for_subject(&E::subject(STORE))
        .expect("the event has a stream")
        .name;
    bus.read(stream, &E::subject(STORE), 1, 20_000)
        .await
        .unwrap_or_default()
        .iter()
        .filter_map(|m| E::decode(m.payload.as_ref()).ok())
        .collect()
}

fn block<T>(f: impl FnOnce() -> T) -> T {
    tokio::task::block_in_place(f)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn five_hundred_orders_through_duplicated_dropped_and_disabled_webhooks_become_five_hundred_duell_orders(
) {
    let started = Instant::now();
    let ingest_port = free_port();
    let mut world = World::with(
        empty_duell(),
        WooConfig {
            // Every delivery three times (two extra copies), one in ten never sent.
            delivery: DeliveryKnobs {
                delay_ms: 20,
                duplicates: 2,
                drop_rate: 0.1,
            },
            // A Norwegian shop: prices with VAT.
            ..plain_shop(Settings::norway())
        },
        &[
            r#"poll_interval = "500ms""#,
            r#"stock_poll_interval = "5s""#,
            &format!("status_after_import = {STATUS_AFTER_IMPORT:?}"),
        ],
        "",
    )
    .await;
    world.store.webhook_delivery_url =
        format!("http://127.0.0.1:{ingest_port}/webhooks/woocommerce/{STORE}");
    world.sandbox.write_store(STORE, &world.store.to_toml());
    for sku in SKUS {
        world.duell.create_product(NewSimProduct {
            product_name: format!("Vare {sku}"),
            product_number: Some(sku.into()),
            price_inc_vat: Some(100.into()),
            stock: Some(100_000.into()),
            ..NewSimProduct::default()
        });
        world
            .woo
            .admin_write_product(
                None,
                serde_json::json!({"name": format!("Vare {sku}"), "sku": sku,
                    "regular_price": "100.00", "manage_stock": true, "stock_quantity": 100_000}),
            )
            .expect("woo product");
    }
    let listen = format!("127.0.0.1:{ingest_port}");
    block(|| {
        world
            .sandbox
            .start(INGEST, &[("DUELLSYNC_INGEST__LISTEN", listen.as_str())]);
        // A short order overlap keeps each 500 ms gap-fill cycle to the recent orders; the
        // default (5 min) would re-list every order of the run twice a second.
        world
            .sandbox
            .start(POLLER, &[("DUELLSYNC_POLLER__ORDER_OVERLAP", "10s")]);
        world.sandbox.start(IMPORTER, &[]);
        for s in [INGEST, POLLER, IMPORTER] {
            world.sandbox.wait_ready(s, WAIT);
        }
    });
    let bus = Bus::connect(BusOptions::new(world.sandbox.nats.url(), "e2e-test"))
        .await
        .expect("bus connects");

    // The change-poller creates both order webhooks at start.
    let first_hooks = eventually("the order webhooks to be created", WAIT, || async {
        let hooks = webhooks(&world).await;
        (hooks.len() == 2 && hooks.values().all(|(_, s)| s == "active")).then_some(hooks)
    })
    .await;

    // Phase 1: webhooks working (with copies and drops).
    let mut placed = place_bursts(&world, 0, 150).await;

    // Phase 2: webhook-ingest is down; every delivery fails until WooCommerce disables both
    // webhooks (7 failures in a row). Orders keep coming and are imported through the
    // gap-fill; their creation (and the status changes after import) fail deliveries of both
    // topics.
    let code = block(|| world.sandbox.terminate(INGEST, Duration::from_secs(30)));
    assert_eq!(code, Some(0), "{}", world.sandbox.logs(INGEST));
    let deadline = Instant::now() + WAIT;
    loop {
        if placed.len() < 250 {
            let more = place_bursts(&world, placed.len(), 10).await;
            placed.extend(more);
        }
        let hooks = webhooks(&world).await;
        if hooks.len() == 2 && hooks.values().all(|(_, s)| s == "disabled") {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "WooCommerce did not disable the webhooks: {hooks:?}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    block(|| {
        world.sandbox.restart(INGEST);
        world.sandbox.wait_ready(INGEST, WAIT);
    });

    // Phase 3: webhooks disabled, so WooCommerce sends nothing; only the gap-fill sees orders.
    let target = placed.len() + 100;
    let more = place_bursts(&world, placed.len(), target - placed.len()).await;
    placed.extend(more);

    // Phase 4: the change-poller's reconciliation (which runs at its start and then every
    // `reconcile_interval`, at least a minute) deletes the disabled webhooks and creates new ones.
    block(|| {
        world.sandbox.restart(POLLER);
        world.sandbox.wait_ready(POLLER, WAIT);
    });
    let new_hooks = eventually("the disabled webhooks to be re-created", WAIT, || async {
        let hooks = webhooks(&world).await;
        (hooks.len() == 2
            && hooks
                .iter()
                .all(|(t, (id, s))| s == "active" && *id != first_hooks[t].0))
        .then_some(hooks)
    })
    .await;
    let ensured = eventually("WebhooksEnsured naming both topics", WAIT, || async {
        events::<v1::WebhooksEnsured>(&bus)
            .await
            .into_iter()
            .find(|e| e.recreated.len() == 2)
    })
    .await;
    assert_eq!(
        ensured.recreated.iter().collect::<BTreeSet<_>>(),
        ["order.created", "order.updated"]
            .iter()
            .map(|s| s.to_string())
            .collect::<Vec<_>>()
            .iter()
            .collect::<BTreeSet<_>>()
    );

    // Phase 5: the rest, through the new webhooks again.
    let more = place_bursts(&world, placed.len(), ORDERS - placed.len()).await;
    placed.extend(more);
    assert_eq!(placed.len(), ORDERS);
    let placed_at = started.elapsed();

    // Every order imported and moved to `status_after_import`.
    eventually("every order imported and on hold", WAIT, || async {
        let imported = world.duell.customer_orders().len();
        let held = placed
            .iter()
            .filter(|id| {
                world.woo.order_json(**id).and_then(|o| {
                    o.get("status")
                        .and_then(|s| s.as_str())
                        .map(|s| s == STATUS_AFTER_IMPORT)
                }) == Some(true)
            })
            .count();
        (imported >= ORDERS && held == ORDERS).then_some(())
    })
    .await;
    let imported_at = started.elapsed();

    // Quiet: nothing left that could still import an order twice — no delivery queued, the
    // gap-fill has seen every order in its final status, and the importer has handled all.
    eventually(
        "deliveries, gap-fill and importer to settle",
        WAIT,
        || async {
            if world.woo.pending_deliveries() > 0 {
                return None;
            }
            let polled: BTreeSet<i64> = events::<v1::OrderObserved>(&bus)
                .await
                .into_iter()
                .filter(|e| {
                    e.source == v1::order_observed::Source::Poll as i32
                        && e.status == STATUS_AFTER_IMPORT
                })
                .map(|e| e.order_id)
                .collect();
            if placed.iter().any(|id| !polled.contains(&(*id as i64))) {
                return None;
            }
            for (stream, durable) in [
                ("WOO", format!("{IMPORTER}-{STORE}-orders")),
                ("CMD", format!("{IMPORTER}-{STORE}-retry")),
            ] {
                if bus.consumer_lag(stream, &durable).await.ok() != Some(0) {
                    return None;
                }
            }
            Some(())
        },
    )
    .await;

    // Exactly 500 DUELL customer orders, one per WooCommerce order.
    let duell_orders = world.duell.customer_orders();
    let mut by_reference: BTreeMap<String, Vec<u64>> = BTreeMap::new();
    for o in &duell_orders {
        by_reference
            .entry(o.reference())
            .or_default()
            .push(o.order_id);
    }
    let twice: Vec<_> = by_reference.iter().filter(|(_, v)| v.len() > 1).collect();
    assert!(twice.is_empty(), "imported more than once: {twice:?}");
    assert_eq!(duell_orders.len(), ORDERS);
    let expected: BTreeSet<String> = placed.iter().map(|id| id.to_string()).collect();
    assert_eq!(
        by_reference.keys().cloned().collect::<BTreeSet<_>>(),
        expected,
        "every DUELL order's reference is one of the placed WooCommerce orders"
    );
    let imported_events = events::<v1::OrderImported>(&bus).await;
    assert_eq!(imported_events.len(), ORDERS, "one OrderImported per order");
    assert!(events::<v1::OrderInDoubt>(&bus).await.is_empty());
    assert!(events::<v1::OrderParked>(&bus).await.is_empty());

    // Repeat buyers are one DUELL customer each.
    let customers = world.duell.customers();
    assert_eq!(customers.len(), BUYERS, "one DUELL customer per buyer");
    let mut customer_of_buyer: BTreeMap<usize, BTreeSet<u64>> = BTreeMap::new();
    for o in &duell_orders {
        let n = placed
            .iter()
            .position(|id| id.to_string() == o.reference())
            .expect("a placed order");
        customer_of_buyer
            .entry(n % BUYERS)
            .or_default()
            .insert(o.customer_id);
    }
    assert!(
        customer_of_buyer.values().all(|c| c.len() == 1),
        "a buyer's orders all go to one customer: {customer_of_buyer:?}"
    );

    // The webhooks really were duplicated and lossy, and some orders reached the importer only
    // through the gap-fill: no successful delivery of them while they were `processing`.
    let deliveries = world.woo.deliveries();
    let dropped = deliveries.iter().filter(|d| d.dropped).count();
    assert!(dropped > 0, "some deliveries were dropped");
    let copies = deliveries.iter().filter(|d| d.success).fold(
        BTreeMap::<(u64, String, String), u32>::new(),
        |mut m, d| {
            *m.entry((d.webhook_id, d.delivery_id.clone(), d.body.clone()))
                .or_default() += 1;
            m
        },
    );
    assert!(
        copies.values().any(|n| *n == 3),
        "deliveries arrived three times"
    );
    let delivered_processing: BTreeSet<u64> = deliveries
        .iter()
        .filter(|d| d.success && d.topic.starts_with("order."))
        .filter(|d| {
            serde_json::from_str::<serde_json::Value>(&d.body)
                .ok()
                .and_then(|b| b.get("status").and_then(|s| s.as_str()).map(str::to_owned))
                .as_deref()
                == Some("processing")
        })
        .map(|d| d.resource_id)
        .collect();
    let missed: Vec<u64> = placed
        .iter()
        .copied()
        .filter(|id| !delivered_processing.contains(id))
        .collect();
    assert!(
        missed.len() >= 100,
        "the outage and the disabled webhooks hid at least phase 3's orders: {}",
        missed.len()
    );
    let polled_processing: BTreeSet<i64> = events::<v1::OrderObserved>(&bus)
        .await
        .into_iter()
        .filter(|e| e.source == v1::order_observed::Source::Poll as i32 && e.status == "processing")
        .map(|e| e.order_id)
        .collect();
    assert!(
        missed
            .iter()
            .all(|id| polled_processing.contains(&(*id as i64))),
        "the gap-fill found every order the webhooks missed"
    );
    // The re-created webhooks deliver again.
    for (topic, (id, _)) in &new_hooks {
        assert!(
            deliveries.iter().any(|d| d.webhook_id == *id && d.success),
            "re-created {topic} webhook delivers"
        );
    }
    let importer_dlq = bus
        .read(
            "DLQ",
            &duellsync_events::dlq_subject(STORE, IMPORTER),
            1,
            1000,
        )
        .await
        .unwrap_or_default();
    assert!(importer_dlq.is_empty(), "no order dead-lettered");
    eprintln!(
        "{ORDERS} orders placed after {:.1} s, imported after {:.1} s, settled after {:.1} s; \
         {dropped} deliveries dropped, {} orders only seen by the gap-fill",
        placed_at.as_secs_f64(),
        imported_at.as_secs_f64(),
        started.elapsed().as_secs_f64(),
        missed.len()
    );
}
