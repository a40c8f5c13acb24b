//! Graceful shutdown: stop accepting, finish what is in flight (including its publish), exit.

use std::time::Duration;

use crate::helpers::{eventually, order_body, spawn_app, RawConnection, S1_SECRET};

#[tokio::test]
async fn shutdown_finishes_in_flight_requests_and_stops_accepting() {
    let mut app = spawn_app().await;
    let body = order_body(77, "processing", "9.90");
    let sig = duellsync_woo::webhook_signature::sign(S1_SECRET, &body);
    let (first, rest) = body.split_at(body.len() / 2);
    let mut slow = RawConnection::open(
        &app.url,
        "/webhooks/woocommerce/slow",
        &[
            ("X-WC-Webhook-Topic", "order.created"),
            ("X-WC-Webhook-Signature", &sig),
        ],
    )
    .await;
    slow.send_chunk(first).await;
    app.wait_metric(
        r#"duellsync_ingest_in_flight_requests{store="slow",endpoint="woocommerce"}"#,
        1.0,
    )
    .await;

    app.begin_shutdown();
    // Readiness turns 503 first, then the listener closes.
    let admin = app.admin_url.clone();
    let http = app.http.clone();
    eventually(10, "/readyz answering 503", || {
        let (admin, http) = (admin.clone(), http.clone());
        async move {
            let status = http
                .get(format!("{admin}/readyz"))
                .send()
                .await
                .ok()?
                .status();
            (status.as_u16() == 503).then_some(())
        }
    })
    .await;
    let addr = app.url.trim_start_matches("http://").to_owned();
    eventually(10, "the public listener to close", || {
        let addr = addr.clone();
        async move {
            tokio::net::TcpStream::connect(&addr)
                .await
                .is_err()
                .then_some(())
        }
    })
    .await;

    // The request that was in flight completes normally, and its event is stored.
    slow.send_chunk(rest).await;
    assert_eq!(slow.finish().await, 200);
    tokio::time::timeout(Duration::from_secs(20), app.stopped())
        .await
        .expect("stops")
        .expect("stops cleanly");
    let events = app.orders_observed().await;
    assert_eq!(events.len(), 1);
    assert_eq!(events[0].payload_json, body);
}
