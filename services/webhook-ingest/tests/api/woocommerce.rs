//! `POST /webhooks/woocommerce/{store}`.

use duellsync_events::{headers, v1};

use crate::helpers::{
    order_body, spawn_app, spawn_app_with, RawConnection, ROTATED_NEW_SECRET, ROTATED_OLD_SECRET,
    S1_SECRET,
};

#[tokio::test]
async fn a_valid_delivery_is_stored_once_with_the_body_byte_for_byte() {
    let app = spawn_app().await;
    let body = order_body(15, "processing", "48.90");

    let resp = app.deliver("order.created", &body).await;
    assert_eq!(resp.status().as_u16(), 200);

    let stored = app.woo_events().await;
    assert_eq!(stored.len(), 1);
    assert_eq!(stored[0].subject, "woo.s1.order.observed");
    let events = app.orders_observed().await;
    let ev = &events[0];
    assert_eq!(
        ev.payload_json, body,
        "payload is the raw body, never re-serialised"
    );
    assert_eq!(ev.body_sha256, duellsync_events::sha256_hex(&body));
    assert_eq!(ev.order_id, 15);
    assert_eq!(ev.status, "processing");
    assert_eq!(ev.number, "15");
    assert_eq!(ev.total, "48.90");
    assert_eq!(ev.date_created_gmt, "2026-11-29T01:57:40");
    assert_eq!(ev.date_modified_gmt, "2026-11-29T01:57:41");
    assert_eq!(ev.topic, "order.created");
    assert_eq!(ev.source, v1::order_observed::Source::Webhook as i32);
    let meta = ev.meta.as_ref().unwrap();
    assert_eq!(meta.store, "s1");
    assert_eq!(meta.producer, "webhook-ingest");
    assert_eq!(meta.correlation_id, "order:s1:15");
    assert_eq!(
        stored[0].header(headers::MSG_ID),
        Some(meta.event_id.as_str())
    );
    assert_eq!(stored[0].header(headers::EVENT_TYPE), Some("OrderObserved"));
}

#[tokio::test]
async fn duplicate_deliveries_store_one_event() {
    let app = spawn_app().await;
    let body = order_body(16, "processing", "10.00");
    for _ in 0..3 {
        assert_eq!(
            app.deliver("order.updated", &body).await.status().as_u16(),
            200
        );
    }
    assert_eq!(app.woo_events().await.len(), 1);
    app.wait_metric(
        r#"duellsync_ingest_requests_total{store="s1",endpoint="woocommerce",outcome="duplicate",status="200"}"#,
        2.0,
    )
    .await;
}

#[tokio::test]
async fn another_topic_or_a_changed_body_is_another_event() {
    let app = spawn_app().await;
    let body = order_body(17, "processing", "10.00");
    // order.created then order.updated with the same body: both are facts (SPEC §5 key).
    app.deliver("order.created", &body).await;
    app.deliver("order.updated", &body).await;
    // A line edit leaves date_modified alone; only the body hash tells it apart.
    let edited = order_body(17, "processing", "20.00");
    app.deliver("order.updated", &edited).await;
    let events = app.orders_observed().await;
    assert_eq!(events.len(), 3);
    assert_eq!(events[2].total, "20.00");
}

#[tokio::test]
async fn rejects_forged_signature() {
    let app = spawn_app().await;
    let body = order_body(15, "processing", "48.90");
    let resp = app
        .deliver_signed("s1", "order.created", "not-the-secret", &body)
        .await;
    assert_eq!(resp.status().as_u16(), 401);
    assert!(app.woo_events().await.is_empty());
}

#[tokio::test]
async fn during_a_secret_rotation_both_the_new_and_the_previous_secret_are_accepted() {
    let app = spawn_app().await;
    let body = order_body(16, "processing", "10.00");
    for secret in [ROTATED_NEW_SECRET, ROTATED_OLD_SECRET] {
        let resp = app
            .deliver_signed("rot", "order.created", secret, &body)
            .await;
        assert_eq!(resp.status().as_u16(), 200, "signed with {secret}");
    }
    let resp = app
        .deliver_signed("rot", "order.created", "neither", &body)
        .await;
    assert_eq!(resp.status().as_u16(), 401);
    // Only the previous secret of this store is accepted, not another store's.
    let resp = app
        .deliver_signed("s1", "order.created", ROTATED_OLD_SECRET, &body)
        .await;
    assert_eq!(resp.status().as_u16(), 401);
}

#[tokio::test]
async fn rejects_a_tampered_body() {
    let app = spawn_app().await;
    let body = order_body(15, "processing", "48.90");
    let sig = duellsync_woo::webhook_signature::sign(S1_SECRET, &body);
    let tampered = order_body(15, "processing", "0.01");
    let resp = app
        .post_webhook("s1", Some("order.created"), Some(&sig), tampered)
        .await;
    assert_eq!(resp.status().as_u16(), 401);
    // Re-serialising the JSON is tampering too: PHP's `\/` escaping does not survive it.
    let reserialised =
        serde_json::to_vec(&serde_json::from_slice::<serde_json::Value>(&body).unwrap()).unwrap();
    let resp = app
        .post_webhook("s1", Some("order.created"), Some(&sig), reserialised)
        .await;
    assert_eq!(resp.status().as_u16(), 401);
    assert!(app.woo_events().await.is_empty());
}

#[tokio::test]
async fn rejects_an_unsigned_delivery() {
    let app = spawn_app().await;
    let body = order_body(15, "processing", "48.90");
    let resp = app
        .post_webhook("s1", Some("order.created"), None, body)
        .await;
    assert_eq!(resp.status().as_u16(), 401);
    let resp = app
        .post_webhook(
            "s1",
            Some("order.created"),
            Some("garbage=="),
            order_body(1, "x", "1"),
        )
        .await;
    assert_eq!(resp.status().as_u16(), 401);
    assert!(app.woo_events().await.is_empty());
}

#[tokio::test]
async fn refuses_a_body_over_the_limit_with_413() {
    let app = spawn_app().await;
    // One byte over the default limit is refused, signed or not.
    let mut body = order_body(15, "processing", "48.90");
    body.resize(
        duellsync_webhook_ingest::Config::default()
            .ingest
            .body_limit
            + 1,
        b' ',
    );
    let resp = app.deliver("order.created", &body).await;
    assert_eq!(resp.status().as_u16(), 413);
    // Without a Content-Length (chunked), the limit holds while reading.
    let sig = duellsync_woo::webhook_signature::sign(S1_SECRET, &body);
    let mut conn = RawConnection::open(
        &app.url,
        "/webhooks/woocommerce/s1",
        &[
            ("X-WC-Webhook-Topic", "order.created"),
            ("X-WC-Webhook-Signature", &sig),
        ],
    )
    .await;
    for chunk in body.chunks(64 * 1024) {
        conn.send_chunk(chunk).await;
    }
    let status = conn.finish().await;
    assert_eq!(status, 413);
    assert!(app.woo_events().await.is_empty());
}

#[tokio::test]
async fn a_configured_body_limit_is_honoured() {
    let app = spawn_app_with(|c| c.ingest.body_limit = 4096).await;
    let mut body = order_body(15, "processing", "48.90");
    body.resize(4096, b' ');
    assert_eq!(
        app.deliver("order.created", &body).await.status().as_u16(),
        200
    );
    body.push(b' ');
    assert_eq!(
        app.deliver("order.created", &body).await.status().as_u16(),
        413
    );
    assert_eq!(app.woo_events().await.len(), 1);
}

#[tokio::test]
async fn rejects_malformed_json_with_400() {
    let app = spawn_app().await;
    for body in [
        &b"{\"id\":15,\"status\":"[..],
        b"not json",
        b"[1,2,3]",
        b"{\"id\":15} trailing",
        b"{\"status\":\"processing\"}",
        b"{\"id\":15,\"total\":{\"nested\":1}}",
    ] {
        let resp = app.deliver("order.updated", body).await;
        assert_eq!(
            resp.status().as_u16(),
            400,
            "{}",
            String::from_utf8_lossy(body)
        );
    }
    assert!(app.woo_events().await.is_empty());
}

#[tokio::test]
async fn rejects_an_unknown_store_with_404() {
    let app = spawn_app().await;
    let body = order_body(15, "processing", "48.90");
    let resp = app
        .deliver_signed("nope", "order.created", S1_SECRET, &body)
        .await;
    assert_eq!(resp.status().as_u16(), 404);
    assert!(app.woo_events().await.is_empty());
    // Unknown stores share one metric label, whatever the path says.
    app.wait_metric(
        r#"duellsync_ingest_requests_total{store="unknown",endpoint="woocommerce",outcome="unknown_store",status="404"}"#,
        1.0,
    )
    .await;
}

#[tokio::test]
async fn answers_the_creation_ping_with_exactly_200() {
    let app = spawn_app().await;
    let resp = app
        .http
        .post(format!("{}/webhooks/woocommerce/s1", app.url))
        .header("Content-Type", "application/x-www-form-urlencoded")
        .header("User-Agent", "WooCommerce/7.9.0 Hookshot (WordPress/6.1.9)")
        .body("webhook_id=1")
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status().as_u16(), 200);
    assert!(app.woo_events().await.is_empty());
}

#[tokio::test]
async fn an_uninteresting_topic_is_answered_200_and_dropped() {
    let app = spawn_app().await;
    let body = br#"{"id":393,"name":"Mug","sku":"M-1"}"#;
    for topic in ["product.updated", "order.deleted", "action.woocommerce_x"] {
        let resp = app.deliver(topic, body).await;
        assert_eq!(resp.status().as_u16(), 200, "{topic}");
    }
    assert!(app.woo_events().await.is_empty());
    app.wait_metric(
        r#"duellsync_ingest_dropped_total{store="s1",reason="topic",topic="product.updated"}"#,
        1.0,
    )
    .await;
}

#[tokio::test]
async fn an_error_object_instead_of_an_order_is_answered_200_and_dropped() {
    let app = spawn_app().await;
    let body = br#"{"code":"woocommerce_rest_shop_order_invalid_id","message":"Invalid ID.","data":{"status":404}}"#;
    assert_eq!(
        app.deliver("order.updated", body).await.status().as_u16(),
        200
    );
    assert!(app.woo_events().await.is_empty());
}

#[tokio::test]
async fn answers_503_when_the_broker_is_down() {
    let mut app =
        spawn_app_with(|c| c.ingest.publish_timeout = std::time::Duration::from_millis(500)).await;
    app.nats.kill();
    let resp = app
        .deliver("order.created", &order_body(20, "processing", "1.00"))
        .await;
    assert_eq!(resp.status().as_u16(), 503);
    assert_eq!(resp.text().await.unwrap(), "temporarily unavailable");
    // Validation still answers without the broker.
    let resp = app
        .deliver_signed("s1", "order.created", "forged", b"{}")
        .await;
    assert_eq!(resp.status().as_u16(), 401);

    // The broker comes back: deliveries are stored again.
    app.nats.restart();
    let body = order_body(21, "processing", "2.00");
    crate::helpers::eventually(
        30,
        "a delivery accepted after the broker restart",
        || async {
            (app.deliver("order.created", &body).await.status().as_u16() == 200).then_some(())
        },
    )
    .await;
    let events = app.orders_observed().await;
    assert!(events.iter().any(|e| e.order_id == 21));
}

#[tokio::test]
async fn only_post_is_routed() {
    let app = spawn_app().await;
    let resp = app
        .http
        .get(format!("{}/webhooks/woocommerce/s1", app.url))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status().as_u16(), 405);
    let resp = app
        .http
        .post(format!("{}/elsewhere", app.url))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status().as_u16(), 404);
}

/// Uploads beyond the large-body slots are shed at once with 503 and `Retry-After` instead of
/// being buffered, and they never take the slots of ordinary deliveries.
#[tokio::test]
async fn large_uploads_beyond_their_slots_are_shed_and_small_deliveries_still_pass() {
    let app = spawn_app_with(|c| {
        c.ingest.max_large_in_flight = 2;
        c.ingest.read_timeout = std::time::Duration::from_secs(30);
    })
    .await;
    // Two slow uploads of unknown length hold both large slots.
    let mut slow = Vec::new();
    for _ in 0..2 {
        let mut conn = RawConnection::open(
            &app.url,
            "/webhooks/woocommerce/s1",
            &[("X-WC-Webhook-Topic", "order.created")],
        )
        .await;
        conn.send_chunk(b"{\"id\":").await;
        slow.push(conn);
    }
    // Wait until the server holds them (they are in flight).
    app.wait_metric(
        "duellsync_ingest_in_flight_requests{store=\"s1\",endpoint=\"woocommerce\"}",
        2.0,
    )
    .await;
    let big = vec![b' '; 200 * 1024];
    let resp = app
        .post_webhook("s1", Some("order.created"), Some("AAAA"), big)
        .await;
    assert_eq!(resp.status().as_u16(), 503);
    assert_eq!(
        resp.headers()
            .get("retry-after")
            .and_then(|v| v.to_str().ok()),
        Some("1")
    );
    let resp = app
        .deliver("order.created", &order_body(15, "processing", "48.90"))
        .await;
    assert_eq!(
        resp.status().as_u16(),
        200,
        "a delivery is never behind uploads"
    );
    app.wait_metric("duellsync_ingest_shed_total{pool=\"large\"}", 1.0)
        .await;
    for conn in slow {
        conn.finish().await;
    }
}
