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
