//! Item 6: a full sync of `products` new products into a woo-sim that takes `latency_ms` per
//! request (a slow real store), once per `woo.max_concurrency` value. woo-sim reports the most
//! requests it served at once: the concurrency the publisher really used.

use std::time::{Duration, Instant};

use crate::catalog::{catalog_world, wait_full_sync};
use crate::report::Report;
use crate::world;

pub struct Sizes {
    pub products: usize,
    pub latency_ms: u64,
    pub concurrency: Vec<usize>,
}

pub async fn run(report: &mut Report, sizes: &Sizes) -> anyhow::Result<()> {
    for c in &sizes.concurrency {
        run_one(report, sizes, *c).await?;
    }
    Ok(())
}

async fn run_one(report: &mut Report, sizes: &Sizes, c: usize) -> anyhow::Result<()> {
    let n = sizes.products;
    crate::log(&format!(
        "full sync of {n} products, woo-sim {} ms per request, woo.max_concurrency = {c}",
        sizes.latency_ms
    ));
    let mut w = catalog_world(n, sizes.latency_ms, Some(c), &["sync_orders = false"]).await?;
    world::start(&mut w.sandbox, "catalog-publisher", &[]).await?;
    // Let the publisher read the store's price settings first (two slow GETs).
    tokio::time::sleep(Duration::from_millis(4 * sizes.latency_ms + 200)).await;
    w.woo.reset_request_counts();
    w.woo.reset_peak_concurrency();
    let started = Instant::now();
    world::start(&mut w.sandbox, "change-poller", &[]).await?;
    let woo = &w.woo;
    let created = world::with_log(
        world::wait_count("products in woo-sim", n, Duration::from_secs(300), || {
            woo.product_count()
        })
        .await,
        &w.sandbox,
        "catalog-publisher",
    )?;
    let done = wait_full_sync(&w.bus, None, Duration::from_secs(3600)).await?;
    let elapsed = started.elapsed();
    let counts = w.woo.request_counts();
    let batches = counts.get("POST products/batch").copied().unwrap_or(0);
    let gets: u64 = counts
        .iter()
        .filter(|(k, _)| k.starts_with("GET "))
        .map(|(_, v)| v)
        .sum();
    let sku_lookups = counts.get("GET products").copied().unwrap_or(0);
    let floor = n.div_ceil(100) as f64 * sizes.latency_ms as f64 / 1000.0 / c as f64;
    report.add(
        6,
        &format!("fullsync_slow_woo.wall_time.c{c}"),
        &format!(
            "full sync of {n} products, woo-sim {} ms/request, woo.max_concurrency = {c}: wall time",
            sizes.latency_ms
        ),
        elapsed.as_secs_f64(),
        "s",
        false,
        None,
        format!(
            "poller start → FullSyncCompleted (all {n} in woo-sim after {:.1} s); {batches} batch writes, {gets} GETs ({sku_lookups} product lists); at most {} requests in flight; floor for the batch writes alone ⌈N/100⌉ × {} ms / {c} = {floor:.1} s; FullSyncCompleted.batch_writes {}",
            (created - started).as_secs_f64(),
            w.woo.peak_concurrency(),
            sizes.latency_ms,
            done.batch_writes
        ),
    );
    Ok(())
}
