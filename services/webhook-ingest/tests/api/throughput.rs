//! A rough throughput check of the ingest against the raw JetStream publish rate (SPEC §8),
//! for tuning the hot path. Ignored by default (timing is meaningless in debug builds and on a
//! busy CI machine); run it with
//! `cargo test --release -p duellsync-webhook-ingest --test api throughput -- --ignored --nocapture`.
//! It prints rates and ratios; it asserts nothing about speed.

use std::sync::Arc;
use std::time::Instant;

use axum::routing::post;
use duellsync_events::{meta, v1, EventId};
use futures::StreamExt;

use crate::helpers::{order_body, spawn_app_with, S1_SECRET};

const N: usize = 20_000;
const IN_FLIGHT: usize = 256;

/// A ~3 KB order body, unique per `i`.
fn body(i: usize) -> Vec<u8> {
    let mut b = order_body(i as i64 + 1, "processing", "48.90");
    let pad = format!(r#","pad":"{}"}}"#, "x".repeat(3000 - b.len().min(2900)));
    b.pop();
    b.extend_from_slice(pad.as_bytes());
    b
}

fn event(i: usize, payload: Vec<u8>) -> v1::OrderObserved {
    let id = EventId::new("bench", "s1").int(i as i64).finish();
    v1::OrderObserved {
        meta: Some(meta("s1", id, "bench", String::new())),
        order_id: i as i64,
        payload_json: payload,
        ..Default::default()
    }
}

async fn http_rate(url: &str, requests: Vec<(Vec<u8>, String)>) -> f64 {
    let client = reqwest::Client::builder()
        .pool_max_idle_per_host(IN_FLIGHT)
        .build()
        .unwrap();
    let started = Instant::now();
    let ok = futures::stream::iter(requests)
        .map(|(body, sig)| {
            let client = client.clone();
            async move {
                client
                    .post(url)
                    .header("X-WC-Webhook-Topic", "order.created")
                    .header("X-WC-Webhook-Signature", sig)
                    .body(body)
                    .send()
                    .await
                    .map(|r| r.status().as_u16() == 200)
                    .unwrap_or(false)
            }
        })
        .buffer_unordered(IN_FLIGHT)
        .filter(|ok| futures::future::ready(*ok))
        .count()
        .await;
    assert_eq!(ok, N);
    N as f64 / started.elapsed().as_secs_f64()
}

#[tokio::test(flavor = "multi_thread")]
#[ignore = "a measurement, run it by hand in release mode"]
async fn throughput_against_raw_jetstream() {
    // IN_FLIGHT requests at once: above the default admission, which would shed most.
    let app = spawn_app_with(|c| {
        c.ingest.max_in_flight = 2 * IN_FLIGHT;
        c.ingest.max_connections = 4 * IN_FLIGHT;
    })
    .await;
    let bodies: Vec<Vec<u8>> = (0..N).map(body).collect();

    // b: raw JetStream publish rate, 256 in flight, 3 KB messages.
    let events: Vec<v1::OrderObserved> = bodies
        .iter()
        .enumerate()
        .map(|(i, b)| event(i, b.clone()))
        .collect();
    let started = Instant::now();
    app.bus.publish_all(&events, IN_FLIGHT).await.unwrap();
    let b = N as f64 / started.elapsed().as_secs_f64();

    // Ceiling: a bare axum server with one awaited publish per request.
    let bus = app.bus.clone();
    let counter = Arc::new(std::sync::atomic::AtomicUsize::new(1_000_000));
    let bare = axum::Router::new().route(
        "/bare",
        post(move |body: bytes::Bytes| {
            let bus = bus.clone();
            let n = counter.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            async move {
                match bus.publish(&event(n, body.to_vec())).await {
                    Ok(_) => axum::http::StatusCode::OK,
                    Err(_) => axum::http::StatusCode::SERVICE_UNAVAILABLE,
                }
            }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let bare_url = format!("http://{}/bare", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, bare).await });
    let requests: Vec<(Vec<u8>, String)> =
        bodies.iter().map(|b| (b.clone(), String::new())).collect();
    let ceiling = http_rate(&bare_url, requests).await;

    // The ingest: signature, parse, dedupe id, acked publish.
    let requests: Vec<(Vec<u8>, String)> = bodies
        .iter()
        .map(|b| {
            (
                b.clone(),
                duellsync_woo::webhook_signature::sign(S1_SECRET, b),
            )
        })
        .collect();
    let ingest = http_rate(&format!("{}/webhooks/woocommerce/s1", app.url), requests).await;

    println!(
        "b = {b:.0}/s; bare server + publish = {ceiling:.0}/s ({:.2} b); ingest = {ingest:.0}/s ({:.2} b, {:.2} of the bare server)",
        ceiling / b,
        ingest / b,
        ingest / ceiling
    );
}
