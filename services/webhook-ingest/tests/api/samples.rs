//! The deliveries captured from a real WooCommerce 7.9.0, replayed with their real headers,
//! raw bodies and secrets.

use base64::Engine as _;

use crate::helpers::{read_sample, spawn_app};

/// Raw body bytes and headers of a captured delivery.
fn capture(name: &str) -> (Vec<u8>, Vec<(String, String)>) {
    let v = read_sample(name);
    let body = base64::engine::general_purpose::STANDARD
        .decode(v["body_base64"].as_str().expect("body_base64"))
        .expect("valid base64");
    let skip = ["host", "content-length", "connection", "accept-encoding"];
    let headers = v["headers"]
        .as_object()
        .expect("headers")
        .iter()
        .filter(|(k, _)| !skip.contains(&k.to_ascii_lowercase().as_str()))
        .map(|(k, v)| (k.clone(), v.as_str().unwrap_or_default().to_owned()))
        .collect();
    (body, headers)
}

async fn replay(app: &crate::helpers::TestApp, store: &str, name: &str) -> (u16, Vec<u8>) {
    let (body, headers) = capture(name);
    let mut req = app
        .http
        .post(format!("{}/webhooks/woocommerce/{store}", app.url));
    for (k, v) in &headers {
        req = req.header(k.as_str(), v.as_str());
    }
    let status = req
        .body(body.clone())
        .send()
        .await
        .unwrap()
        .status()
        .as_u16();
    (status, body)
}

#[tokio::test]
async fn captured_order_deliveries_verify_and_are_stored_byte_for_byte() {
    let app = spawn_app().await;
    let (status, created) = replay(&app, "lab", "25-webhook-order-created-delivery.json").await;
    assert_eq!(status, 200);
    let (status, updated) = replay(&app, "lab", "29-webhook-order-updated-delivery.json").await;
    assert_eq!(status, 200);
    let events = app.orders_observed().await;
    assert_eq!(events.len(), 2);
    assert_eq!(events[0].payload_json, created);
    assert_eq!(events[0].topic, "order.created");
    assert_eq!(
        (events[0].order_id, events[0].status.as_str()),
        (15, "processing")
    );
    assert_eq!(events[1].payload_json, updated);
    assert_eq!(events[1].topic, "order.updated");
    assert_eq!(events[1].status, "completed");
    assert_eq!(events[1].total, "48.90");
    // Replaying the same capture again stores nothing new.
    let (status, _) = replay(&app, "lab", "25-webhook-order-created-delivery.json").await;
    assert_eq!(status, 200);
    assert_eq!(app.woo_events().await.len(), 2);
}

#[tokio::test]
async fn captured_product_deliveries_verify_and_are_dropped() {
    let app = spawn_app().await;
    // Same Delivery-ID on both: they are still two authentic deliveries.
    for name in [
        "78-webhook-same-delivery-id-1.json",
        "79-webhook-same-delivery-id-2.json",
    ] {
        let (status, _) = replay(&app, "vfy", name).await;
        assert_eq!(status, 200, "{name}");
    }
    assert!(app.woo_events().await.is_empty());
    app.wait_metric(
        r#"duellsync_ingest_requests_total{store="vfy",endpoint="woocommerce",outcome="dropped",status="200"}"#,
        2.0,
    )
    .await;
    // Their real signatures do not verify under another store's secret.
    let (status, _) = replay(&app, "lab", "78-webhook-same-delivery-id-1.json").await;
    assert_eq!(status, 401);
}

#[tokio::test]
async fn the_captured_ping_is_answered_200() {
    let app = spawn_app().await;
    let (status, _) = replay(&app, "lab", "21-webhook-ping-delivery.json").await;
    assert_eq!(status, 200);
    assert!(app.woo_events().await.is_empty());
}
