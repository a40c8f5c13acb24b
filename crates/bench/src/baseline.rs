//! Item 1, the baseline b: raw JetStream publish rate with 256 publishes in flight (3 KB
//! messages, the engine's file-backed WOO stream, no per-message fsync: nats-server's default),
//! on a private nats-server, through `duellsync_bus` (ids, headers, acks); and the latency of
//! one publish with its ack awaited.

use std::time::{Duration, Instant};

use duellsync_bus::{Bus, BusOptions};
use duellsync_test_support::NatsServer;

use crate::events::{payload_3kb, raw_order};
use crate::report::Report;
use crate::stats::summarize;

pub const IN_FLIGHT: usize = 256;

/// Measures b; returns it.
pub async fn run(
    report: &mut Report,
    messages: usize,
    key: &str,
    name: &str,
) -> anyhow::Result<f64> {
    let nats = tokio::task::spawn_blocking(NatsServer::start).await?;
    let bus = Bus::connect(BusOptions::new(nats.url(), "bench-baseline")).await?;
    bus.ensure_streams().await?;
    let payload = payload_3kb(&crate::world::sample_body());
    let make = |from: u64, n: usize| -> Vec<_> {
        (from..from + n as u64)
            .map(|i| raw_order(i, "bench-b", payload.clone()))
            .collect()
    };
    // Warm-up: connections, stream files, the duplicate window's first entries.
    bus.publish_all(&make(0, 5_000), IN_FLIGHT).await?;
    let events = make(1_000_000, messages);
    let started = Instant::now();
    bus.publish_all(&events, IN_FLIGHT).await?;
    let b = messages as f64 / started.elapsed().as_secs_f64();
    report.add(
        1,
        key,
        name,
        b,
        "/s",
        false,
        None,
        format!(
            "{messages} publishes of {} B payload, {IN_FLIGHT} in flight, all acked",
            payload.len()
        ),
    );
    Ok(b)
}

/// One publish at a time, each ack awaited.
pub async fn single_publish_latency(report: &mut Report, n: usize) -> anyhow::Result<()> {
    let nats = tokio::task::spawn_blocking(NatsServer::start).await?;
    let bus = Bus::connect(BusOptions::new(nats.url(), "bench-baseline")).await?;
    bus.ensure_streams().await?;
    let payload = payload_3kb(&crate::world::sample_body());
    for i in 0..200 {
        bus.publish(&raw_order(i, "bench-one", payload.clone()))
            .await?;
    }
    let mut samples: Vec<Duration> = Vec::with_capacity(n);
    for i in 0..n as u64 {
        let ev = raw_order(10_000 + i, "bench-one", payload.clone());
        let t = Instant::now();
        bus.publish(&ev).await?;
        samples.push(t.elapsed());
    }
    let s = summarize(&mut samples);
    report.add(
        1,
        "baseline.publish_latency_p50",
        "one publish with awaited ack, p50",
        s.p50_ms,
        "ms",
        false,
        None,
        format!("{n} sequential publishes, 3 KB"),
    );
    report.add(
        1,
        "baseline.publish_latency_p99",
        "one publish with awaited ack, p99",
        s.p99_ms,
        "ms",
        false,
        None,
        format!("mean {:.3} ms, max {:.2} ms", s.mean_ms, s.max_ms),
    );
    Ok(())
}
