//! End to end with the WooCommerce simulator: webhooks created over REST point at the ingest,
//! the simulator pings, orders placed at its checkout arrive as signed deliveries.

use duellsync_woo::{ClientConfig, NewWebhook, WooClient};
use duellsync_woo_sim::{DeliveryKnobs, PlaceLine, PlaceOrder, SimConfig, WooSim};
use secrecy::SecretString;

use crate::helpers::{spawn_app, S1_SECRET};

#[tokio::test]
async fn orders_placed_in_woocommerce_arrive_as_events() {
    let app = spawn_app().await;
    let sim = WooSim::start(SimConfig {
        https: false,
        ..SimConfig::default()
    })
    .await
    .unwrap();
    let (key, secret) = sim.credentials();
    let woo = WooClient::new(ClientConfig::new(
        sim.base_url(),
        key,
        SecretString::from(secret),
    ))
    .unwrap();
    let mut hook_ids = Vec::new();
    for topic in ["order.created", "order.updated"] {
        let hook = woo
            .create_webhook(&NewWebhook {
                name: format!("duellsync {topic}"),
                topic: topic.into(),
                delivery_url: format!("{}/webhooks/woocommerce/s1", app.url),
                secret: SecretString::from(S1_SECRET),
            })
            .await
            .unwrap();
        hook_ids.push(hook.id);
    }
    // WooCommerce delivers some events twice; the ingest must collapse them.
    sim.set_delivery_knobs(DeliveryKnobs {
        delay_ms: 0,
        duplicates: 1,
        drop_rate: 0.0,
    });
    let products = sim.seed_products(3, "SKU-", "10.00", 50);
    let mut orders = Vec::new();
    for p in &products {
        orders.push(
            sim.place_order(&PlaceOrder {
                lines: vec![PlaceLine {
                    product_id: Some(*p),
                    sku: None,
                    quantity: 2,
                }],
                ..PlaceOrder::default()
            })
            .unwrap(),
        );
    }
    sim.flush_deliveries().await;

    let deliveries = sim.deliveries();
    assert!(!deliveries.is_empty());
    assert!(
        deliveries.iter().all(|d| d.status == Some(200)),
        "every delivery answered 200: {:?}",
        deliveries.iter().map(|d| d.status).collect::<Vec<_>>()
    );
    for id in &hook_ids {
        assert_eq!(sim.webhook_failure_count(*id), Some(0));
    }
    let events = app.orders_observed().await;
    for order in &orders {
        for topic in ["order.created", "order.updated"] {
            let n = events
                .iter()
                .filter(|e| e.order_id == *order as i64 && e.topic == topic)
                .count();
            assert_eq!(n, 1, "order {order} {topic}");
        }
        let delivered = deliveries
            .iter()
            .find(|d| d.resource_id == *order && d.topic == "order.created")
            .unwrap();
        let stored = events
            .iter()
            .find(|e| e.order_id == *order as i64 && e.topic == "order.created")
            .unwrap();
        assert_eq!(stored.payload_json, delivered.body.as_bytes());
        assert_eq!(stored.status, "processing");
    }

    // A person completes an order in the admin: the update arrives too.
    sim.set_order_status(orders[0], "completed").unwrap();
    sim.flush_deliveries().await;
    let events = app.orders_observed().await;
    assert!(events
        .iter()
        .any(|e| e.order_id == orders[0] as i64 && e.status == "completed"));
}

/// How large a real order delivery gets, as WooCommerce renders it (woo-sim renders orders as
/// WooCommerce 7.9 does: every line with its meta, taxes and image, PHP's JSON escaping, so
/// `æøå` costs six bytes each): a large B2B order of 500 lines with long Norwegian product
/// names, a long address, a note, shipping, a fee and a coupon. The ingest's default body limit
/// must take it with room to spare (the limit bounds the ingest's memory, see
/// `ingest.body_limit`); a larger delivery is refused with 413 and the order is still found by
/// the poller's gap fill.
#[tokio::test]
async fn the_largest_realistic_order_delivery_fits_the_default_body_limit_with_room() {
    let app = spawn_app().await;
    let sim = WooSim::start(SimConfig {
        https: false,
        ..SimConfig::default()
    })
    .await
    .unwrap();
    let (key, secret) = sim.credentials();
    let woo = WooClient::new(ClientConfig::new(
        sim.base_url(),
        key,
        SecretString::from(secret),
    ))
    .unwrap();
    woo.create_webhook(&NewWebhook {
        name: "duellsync order.created".into(),
        topic: "order.created".into(),
        delivery_url: format!("{}/webhooks/woocommerce/s1", app.url),
        secret: SecretString::from(S1_SECRET),
    })
    .await
    .unwrap();
    const LINES: usize = 500;
    let mut lines = Vec::new();
    for n in 0..LINES {
        let id = sim
            .admin_write_product(
                None,
                serde_json::json!({
                    "name": format!("Kaffekopp i rød keramikk, håndlaget på Sørlandet – modell {n:04} «Blåbær»"),
                    "sku": format!("KOPP-RØD-{n:05}-XL"),
                    "regular_price": "249.00",
                    "manage_stock": true,
                    "stock_quantity": 1000,
                }),
            )
            .unwrap();
        lines.push(PlaceLine {
            product_id: Some(id),
            sku: None,
            quantity: 3,
        });
    }
    let long = |s: &str| format!("{s} {}", "Ærlig Øvre Åsgårdsveien ".repeat(4));
    let order = sim
        .place_order(&PlaceOrder {
            lines,
            billing: [
                ("first_name", "Kari Sofie"),
                ("last_name", "Nordmann-Ødegård"),
                ("company", "Kafé Ørsta og Omegn AS"),
                ("address_1", &long("Storgata 1")),
                ("address_2", &long("Bakgården")),
                ("city", "Ørsta"),
                ("postcode", "6150"),
                ("country", "NO"),
                ("email", "kari.sofie.nordmann-odegard@kafe-orsta.example.no"),
                ("phone", "+47 912 34 567"),
            ]
            .iter()
            .map(|(k, v)| ((*k).to_owned(), Some((*v).to_owned())))
            .collect(),
            shipping_line: Some(duellsync_woo_sim::PlaceShipping {
                method_id: "flat_rate".into(),
                method_title: "Bring Bedriftspakke dør til dør".into(),
                total: "490.00".into(),
            }),
            fee: Some(duellsync_woo_sim::PlaceFee {
                name: "Miljøgebyr for emballasje".into(),
                total: "75.00".into(),
                ..Default::default()
            }),
            customer_note: Some(long("Leveres på bakrommet, ring på døren til venstre.")),
            ..PlaceOrder::default()
        })
        .unwrap();
    sim.flush_deliveries().await;
    let delivery = sim
        .deliveries()
        .into_iter()
        .find(|d| d.resource_id == order && d.topic == "order.created")
        .expect("the order was delivered");
    let size = delivery.body.len();
    let per_line = size / LINES;
    let limit = duellsync_webhook_ingest::Config::default()
        .ingest
        .body_limit;
    println!("a {LINES}-line order delivery is {size} bytes (~{per_line} bytes a line); the default body limit is {limit}");
    assert_eq!(delivery.status, Some(200), "accepted by the ingest");
    assert!(
        size * 3 / 2 <= limit,
        "{size} bytes leave less than half again as much room under the limit {limit}"
    );
}
