//! Item 2: webhook-ingest (signature check + dedupe id + durable acked publish) as a process,
//! driven by the load generator with the captured `order.created` delivery (a new order id per
//! request, each body signed with the store's secret); and, in the same sandbox, the bare server
//! (one awaited publish per request) as the ceiling.

use std::net::SocketAddr;
use std::sync::Arc;

use bytes::Bytes;
use duellsync_test_support::free_port;

use crate::bare::BareServer;
use crate::load::{self, delivery_headers, Prepared};
use crate::report::Report;
use crate::stats::summarize;
use crate::world::{self, order_body, STORE, WEBHOOK_SECRET};

pub struct Sizes {
    pub requests: usize,
    pub concurrency: usize,
}

/// Signed deliveries of orders `first..first + n`.
fn deliveries(template: &str, first: u64, n: usize, signed: bool) -> Arc<Vec<Prepared>> {
    Arc::new(
        (first..first + n as u64)
            .map(|id| {
                let body = order_body(template, id);
                let headers = delivery_headers(&body, signed.then_some(WEBHOOK_SECRET));
                Prepared {
                    body: Bytes::from(body),
                    headers,
                }
            })
            .collect(),
    )
}

/// CPU microseconds per request between two readings.
fn per_request(
    before: Option<std::time::Duration>,
    after: Option<std::time::Duration>,
    requests: usize,
) -> f64 {
    match (before, after) {
        (Some(b), Some(a)) if requests > 0 => (a - b).as_secs_f64() * 1e6 / requests as f64,
        _ => f64::NAN,
    }
}

pub async fn run(report: &mut Report, sizes: &Sizes) -> anyhow::Result<()> {
    let mut sandbox = world::sandbox().await?;
    sandbox.write_store(STORE, &world::store_file(None, None, &[]).to_toml());
    let port = free_port();
    let listen = format!("127.0.0.1:{port}");
    world::start(
        &mut sandbox,
        "webhook-ingest",
        // The load generator keeps 256 requests in flight; the default admission (64 at once)
        // would answer most of them 503.
        &[
            ("DUELLSYNC_INGEST__LISTEN", listen.as_str()),
            ("DUELLSYNC_INGEST__MAX_IN_FLIGHT", "512"),
            ("DUELLSYNC_INGEST__MAX_CONNECTIONS", "1024"),
        ],
    )
    .await?;
    let ingest_addr: SocketAddr = listen.parse()?;
    let bare = BareServer::start(&sandbox.nats.url()).await?;
    let template = world::sample_body();
    let c = sizes.concurrency;
    let n = sizes.requests;

    // Warm-up of both (connections, JIT-free but cold caches, stream files).
    let warm = 2_000.min(n);
    load::run(
        bare.addr,
        crate::bare::PATH,
        deliveries(&template, 1, warm, false),
        c,
    )
    .await?;
    let ingest_path = format!("/webhooks/woocommerce/{STORE}");
    load::run(
        ingest_addr,
        &ingest_path,
        deliveries(&template, 1, warm, true),
        c,
    )
    .await?;

    let bare_reqs = deliveries(&template, 100_000, n, false);
    let cpu0 = world::cpu_time(bare.pid());
    let mut out = load::run(bare.addr, crate::bare::PATH, bare_reqs, c).await?;
    let bare_cpu = per_request(cpu0, world::cpu_time(bare.pid()), out.ok());
    let lat = summarize(&mut out.latencies);
    let ceiling = out.rate();
    report.add(
        2,
        "bare.throughput",
        "bare HTTP server + one awaited publish per request (ceiling)",
        ceiling,
        "/s",
        true,
        None,
        format!(
            "{n} requests, {c} connections; p50 {:.2} ms, p99 {:.2} ms; {bare_cpu:.0} µs CPU per request in the server; {}",
            lat.p50_ms,
            lat.p99_ms,
            out.status_text()
        ),
    );
    drop(bare);

    let ingest_reqs = deliveries(&template, 1_000_000, n, true);
    let pid = sandbox.pid("webhook-ingest").unwrap_or(0);
    let cpu0 = world::cpu_time(pid);
    let mut out = load::run(ingest_addr, &ingest_path, ingest_reqs, c).await?;
    let ingest_cpu = per_request(cpu0, world::cpu_time(pid), out.ok());
    let lat = summarize(&mut out.latencies);
    let rate = out.rate();
    let b = report.b.unwrap_or(f64::NAN);
    report.add(
        2,
        "ingest.throughput",
        "webhook ingest (signature, dedupe id, acked publish)",
        rate,
        "/s",
        true,
        Some(("≥ 0.30 × b", rate >= 0.30 * b)),
        format!(
            "{n} captured deliveries re-signed, {c} connections; {:.2} of the bare server; {ingest_cpu:.0} µs CPU per request in webhook-ingest; {}",
            rate / ceiling,
            out.status_text()
        ),
    );
    report.add(
        2,
        "ingest.latency_p50",
        "webhook ingest latency p50 (at that load)",
        lat.p50_ms,
        "ms",
        false,
        None,
        "",
    );
    report.add(
        2,
        "ingest.latency_p99",
        "webhook ingest latency p99 (at that load)",
        lat.p99_ms,
        "ms",
        false,
        None,
        format!("max {:.1} ms", lat.max_ms),
    );
    Ok(())
}
