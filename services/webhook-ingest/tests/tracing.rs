//! The trace that starts at a webhook request continues in JetStream: the stored event carries
//! the request span's W3C trace context. Its own test binary, because telemetry is installed
//! once per process.

#[allow(dead_code)]
#[path = "api/helpers.rs"]
mod helpers;

use duellsync_events::headers;

#[tokio::test]
async fn a_stored_delivery_carries_the_request_trace_context() {
    let mut options = duellsync_telemetry::TelemetryOptions::new("webhook-ingest-test");
    // Spans of the ingest are on; its info lines (start-up) are the only output.
    options.log_filter = "warn,duellsync_webhook_ingest=info".into();
    let _telemetry = duellsync_telemetry::init(&options).expect("telemetry installs once");

    let app = helpers::spawn_app().await;
    let resp = app
        .deliver(
            "order.created",
            &helpers::order_body(15, "processing", "1.00"),
        )
        .await;
    assert_eq!(resp.status().as_u16(), 200);
    let stored = app.woo_events().await;
    let traceparent = stored[0]
        .header(headers::TRACEPARENT)
        .expect("the event carries a traceparent");
    // 00-<trace id>-<span id>-<flags>
    let parts: Vec<&str> = traceparent.split('-').collect();
    assert_eq!(parts.len(), 4, "{traceparent}");
    assert_eq!(parts[1].len(), 32);
    assert_ne!(parts[1], "0".repeat(32));
}
