//! Items 4, 5 and 8 on one catalogue: every service as a process, a full sync of `products` new
//! DUELL products into an empty woo-sim (0 ms), then memory of each process with that state, a
//! re-sync with nothing changed, restarts with the state, the change → written latency at a
//! steady rate spread over many products, and a stock storm of one product. Request counts are
//! woo-sim's; stock-write times are woo-sim's own record of when a write set the value.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use duellsync_bus::Bus;
use duellsync_duell_sim::{DuellSim, NewSimProduct, SimConfig as DuellConfig};
use duellsync_events::{v1, Event};
use duellsync_test_support::free_port;
use duellsync_test_support::sandbox::{Sandbox, SERVICES};
use duellsync_woo_sim::{FaultKind, FaultRule, SimConfig as WooConfig, WooSim};
use prost::Message;
use rust_decimal::Decimal;

use crate::events::{full_sync_requested, stock_observed};
use crate::report::Report;
use crate::stats::summarize;
use crate::world::{self, STORE};

pub struct Sizes {
    pub products: usize,
    /// Stock changes per second of the latency measurement.
    pub rate: u64,
    pub rate_seconds: u64,
}

pub(crate) struct CatalogWorld {
    pub sandbox: Sandbox,
    pub _duell: DuellSim,
    pub woo: WooSim,
    pub bus: Bus,
    /// DUELL id and SKU of every product.
    pub products: Vec<(i64, String)>,
}

/// duell-sim with `n` simple products (unique SKU, no image, no category, stock 5), an empty
/// woo-sim (`latency_ms` on every REST request), a sandbox with store `s1`.
pub(crate) async fn catalog_world(
    n: usize,
    latency_ms: u64,
    woo_concurrency: Option<usize>,
    settings: &[&str],
) -> anyhow::Result<CatalogWorld> {
    let duell = DuellSim::start(DuellConfig {
        products: 0,
        customers: 0,
        ..DuellConfig::default()
    })
    .await?;
    let mut products = Vec::with_capacity(n);
    for i in 0..n {
        let sku = format!("B{i:06}");
        let p = duell.create_product(NewSimProduct {
            product_name: format!("Vare {i}"),
            product_number: Some(sku.clone()),
            price_inc_vat: Some(Decimal::from(100 + (i % 500) as i64)),
            vatrate_percent: Some(25),
            category_name: Some(String::new()),
            product_image: Some(String::new()),
            stock: Some(Decimal::from(5)),
            ..NewSimProduct::default()
        });
        products.push((p.product_id as i64, sku));
    }
    let woo = WooSim::start(WooConfig {
        https: false,
        ..WooConfig::default()
    })
    .await?;
    if latency_ms > 0 {
        woo.add_fault(FaultRule {
            method: None,
            route: None,
            path_contains: None,
            query_contains: None,
            kind: FaultKind::Latency { ms: latency_ms },
            times: None,
            probability: None,
        });
    }
    let sandbox = world::sandbox().await?;
    let mut toml = world::store_file(Some(&woo), Some(&duell), settings).to_toml();
    if let Some(c) = woo_concurrency {
        toml = world::with_woo_concurrency(&toml, c);
    }
    sandbox.write_store(STORE, &toml);
    let bus = world::bus(&sandbox, "bench-catalog").await?;
    Ok(CatalogWorld {
        sandbox,
        _duell: duell,
        woo,
        bus,
        products,
    })
}

/// The newest `FullSyncCompleted`, if any.
pub(crate) async fn last_full_sync(bus: &Bus) -> Option<v1::FullSyncCompleted> {
    let m = bus
        .last_message("SYNC", &v1::FullSyncCompleted::subject(STORE))
        .await
        .ok()??;
    v1::FullSyncCompleted::decode(m.payload.as_ref()).ok()
}

/// Waits for a full sync to complete (`run_id` if given, else any) and returns it.
pub(crate) async fn wait_full_sync(
    bus: &Bus,
    run_id: Option<&str>,
    timeout: Duration,
) -> anyhow::Result<v1::FullSyncCompleted> {
    let done = world::wait_for(
        "the full sync to complete",
        timeout,
        Duration::from_millis(50),
        async || {
            last_full_sync(bus)
                .await
                .filter(|c| run_id.is_none_or(|r| c.run_id == r))
        },
    )
    .await?;
    if !done.error.is_empty() {
        bail!("the full sync failed: {}", done.error);
    }
    Ok(done)
}

fn writes(woo: &WooSim) -> (u64, u64) {
    let counts = woo.request_counts();
    let w = counts
        .iter()
        .filter(|(k, _)| !k.starts_with("GET ") && !k.starts_with("OPTIONS "))
        .map(|(_, v)| v)
        .sum();
    let r = counts
        .iter()
        .filter(|(k, _)| k.starts_with("GET "))
        .map(|(_, v)| v)
        .sum();
    (w, r)
}

/// Every consumer of every stream has nothing pending.
async fn settled(bus: &Bus) -> bool {
    for s in ["DUELL", "WOO", "SYNC", "CMD"] {
        match bus.consumers(s).await {
            Ok(cs) if cs.iter().all(|c| c.lag() == 0) => {}
            _ => return false,
        }
    }
    true
}

fn dir_size(path: &std::path::Path) -> u64 {
    let Ok(entries) = std::fs::read_dir(path) else {
        return 0;
    };
    entries
        .flatten()
        .map(|e| match e.metadata() {
            Ok(m) if m.is_dir() => dir_size(&e.path()),
            Ok(m) => m.len(),
            Err(_) => 0,
        })
        .sum()
}

pub async fn run(report: &mut Report, sizes: &Sizes) -> anyhow::Result<()> {
    let n = sizes.products;
    crate::log(&format!("catalog: creating {n} products in duell-sim"));
    let mut w = catalog_world(n, 0, None, &[]).await?;
    let listen = format!("127.0.0.1:{}", free_port());
    // The poller last: its start begins the initial full scan.
    let order = [
        "webhook-ingest",
        "order-importer",
        "status-writeback",
        "catalog-publisher",
        "change-poller",
    ];
    let mut cold = Vec::new();
    let mut sync_started = Instant::now();
    for s in order {
        let env: Vec<(&str, &str)> = if s == "webhook-ingest" {
            vec![("DUELLSYNC_INGEST__LISTEN", listen.as_str())]
        } else {
            Vec::new()
        };
        if s == "change-poller" {
            sync_started = Instant::now();
        }
        cold.push((s, world::start(&mut w.sandbox, s, &env).await?));
    }
    for (s, t) in &cold {
        report.add(
            8,
            &format!("startup.empty.{s}"),
            &format!("start-up of {s}, empty state (spawn → /readyz 200)"),
            t.as_secs_f64() * 1000.0,
            "ms",
            false,
            None,
            "",
        );
    }

    // Item 5: a full sync of N new products.
    crate::log("catalog: initial full sync running");
    let done = world::with_log(
        wait_full_sync(&w.bus, None, Duration::from_secs(3600)).await,
        &w.sandbox,
        "catalog-publisher",
    )?;
    let sync_time = sync_started.elapsed();
    let in_woo = w.woo.product_count();
    let batches = w.woo.request_count("POST products/batch");
    let (all_writes, reads) = writes(&w.woo);
    let want = n.div_ceil(100) as u64;
    report.add(
        5,
        "requests.full_sync_batch_writes",
        &format!("full sync of {n} new products: batch writes"),
        batches as f64,
        "",
        false,
        Some((
            &format!("= ⌈N/100⌉ = {want}"),
            batches == want && all_writes == want && in_woo == n,
        )),
        format!(
            "all writes {all_writes}, GETs {reads}, products in woo-sim {in_woo}, FullSyncCompleted.batch_writes {}",
            done.batch_writes
        ),
    );
    report.add(
        5,
        "requests.full_sync_wall_time",
        &format!("full sync of {n} new products, 0 ms woo-sim: wall time"),
        sync_time.as_secs_f64(),
        "s",
        false,
        None,
        format!(
            "poller start → FullSyncCompleted; {:.0} products/s",
            n as f64 / sync_time.as_secs_f64()
        ),
    );

    // Item 8: memory with N products of state, once everything consumed what it had to.
    crate::log("catalog: waiting for every consumer to catch up");
    world::wait_for(
        "every consumer to catch up",
        Duration::from_secs(1800),
        Duration::from_millis(500),
        async || settled(&w.bus).await.then_some(()),
    )
    .await?;
    tokio::time::sleep(Duration::from_secs(3)).await;
    for s in SERVICES {
        let pid = w.sandbox.pid(s).context("service running")?;
        let (rss, hwm) = world::memory_mb(pid).context("reading /proc status")?;
        let state = dir_size(&w.sandbox.dir().join("state").join(s)) as f64 / 1e6;
        report.add(
            8,
            &format!("rss.{s}"),
            &format!("RSS of {s} with {n} products of state"),
            rss,
            "MB",
            false,
            Some(("< 64 MB", rss < 64.0)),
            format!("peak (VmHWM) {hwm:.1} MB; sled state on disk {state:.1} MB"),
        );
    }

    // Item 5: a re-sync with nothing changed.
    w.woo.reset_request_counts();
    let (run_id, ev) = full_sync_requested();
    let started = Instant::now();
    w.bus.publish(&ev).await?;
    let done = wait_full_sync(&w.bus, Some(&run_id), Duration::from_secs(3600)).await?;
    let resync = started.elapsed();
    let (all_writes, reads) = writes(&w.woo);
    report.add(
        5,
        "requests.resync_unchanged_writes",
        &format!("re-sync of {n} unchanged products: writes"),
        all_writes as f64,
        "",
        false,
        Some(("0", all_writes == 0)),
        format!(
            "GETs {reads}; wall time {:.1} s; unchanged in plan {}",
            resync.as_secs_f64(),
            done.plan.map(|p| p.unchanged).unwrap_or(0)
        ),
    );

    // Item 8: start-up with the state (graceful stop, then start).
    for s in order {
        world::terminate(&mut w.sandbox, s).await;
        let t = world::restart(&mut w.sandbox, s).await?;
        report.add(
            8,
            &format!("startup.state.{s}"),
            &format!("start-up of {s} with {n} products of state"),
            t.as_secs_f64() * 1000.0,
            "ms",
            false,
            None,
            "",
        );
    }
    // From here on the facts come from the benchmark, not from DUELL.
    world::terminate(&mut w.sandbox, "change-poller").await;
    world::wait_for(
        "every consumer to catch up",
        Duration::from_secs(600),
        Duration::from_millis(200),
        async || settled(&w.bus).await.then_some(()),
    )
    .await?;

    latency(report, &w, sizes, None).await?;

    // Item 4 again while the publisher reconciles the whole catalogue (issue 13: live changes
    // never wait behind a reconciliation). The scan marker is what the poller publishes at the
    // end of a full DUELL scan; nothing in DUELL changed, so the reconciliation reads all of
    // WooCommerce, plans every product and writes nothing of its own.
    let (run_id, scanned) = crate::events::catalog_scanned(n as i64);
    let reconcile_started = Instant::now();
    w.bus.publish(&scanned).await?;
    world::wait_for(
        "the reconciliation to read WooCommerce",
        Duration::from_secs(600),
        Duration::from_millis(50),
        async || {
            let m = w
                .bus
                .last_message("SYNC", &v1::FullSyncProgress::subject(STORE))
                .await
                .ok()??;
            let p = v1::FullSyncProgress::decode(m.payload.as_ref()).ok()?;
            (p.run_id == run_id).then_some(())
        },
    )
    .await?;
    latency(report, &w, sizes, Some(n)).await?;
    let done = wait_full_sync(&w.bus, Some(&run_id), Duration::from_secs(3600)).await?;
    crate::log(&format!(
        "catalog: the reconciliation of {n} products took {:.1} s ({} unchanged)",
        reconcile_started.elapsed().as_secs_f64(),
        done.plan.map(|p| p.unchanged).unwrap_or(0)
    ));
    storm(report, &w).await?;
    Ok(())
}

/// Item 4: `StockObserved` facts at a steady rate, each product once (round robin over as many
/// products as there are changes), timed from the fact's observation to woo-sim applying it.
/// `during` = the size of a reconciliation running meanwhile.
async fn latency(
    report: &mut Report,
    w: &CatalogWorld,
    sizes: &Sizes,
    during: Option<usize>,
) -> anyhow::Result<()> {
    // New values each round: the same value again would be nothing to write.
    let base: i64 = if during.is_some() { 1_000_000 } else { 1_000 };
    let total = (sizes.rate * sizes.rate_seconds) as usize;
    let spread = total.min(w.products.len());
    crate::log(&format!(
        "catalog: {total} stock changes at {}/s over {spread} products",
        sizes.rate
    ));
    w.woo.record_stock_changes(true);
    let period = Duration::from_secs_f64(1.0 / sizes.rate as f64);
    let mut tick = tokio::time::interval(period);
    let mut sent: HashMap<(String, i64), Instant> = HashMap::with_capacity(total);
    let mut publishes = tokio::task::JoinSet::new();
    let first = Instant::now();
    for k in 0..total {
        tick.tick().await;
        let (id, sku) = &w.products[k % spread];
        let value = base + k as i64;
        let ev = stock_observed(*id, sku, value, base as u64 + k as u64);
        sent.insert((sku.clone(), value), Instant::now());
        let bus = w.bus.clone();
        publishes.spawn(async move { bus.publish(&ev).await });
    }
    let sending = first.elapsed();
    let mut failed = 0;
    while let Some(r) = publishes.join_next().await {
        if !matches!(r, Ok(Ok(_))) {
            failed += 1;
        }
    }
    let mut applied: HashMap<(String, i64), Instant> = HashMap::with_capacity(total);
    let deadline = Instant::now() + Duration::from_secs(60);
    while applied.len() < sent.len() - failed && Instant::now() < deadline {
        for c in w.woo.take_stock_changes() {
            if let Some(q) = c.stock_quantity {
                applied.entry((c.sku, q)).or_insert(c.at);
            }
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    w.woo.record_stock_changes(false);
    let mut samples: Vec<Duration> = sent
        .iter()
        .filter_map(|(k, t)| applied.get(k).map(|a| a.saturating_duration_since(*t)))
        .collect();
    let missing = sent.len() - samples.len();
    let s = summarize(&mut samples);
    let note = format!(
        "{total} changes in {:.2} s ({:.0}/s achieved) over {spread} products; {} written, {missing} not seen written{}",
        sending.as_secs_f64(),
        total as f64 / sending.as_secs_f64(),
        s.count,
        if failed > 0 { format!(", {failed} publishes failed") } else { String::new() }
    );
    let (key, label, target) = match during {
        None => (
            "latency.observed_to_written".to_owned(),
            format!("change observed → Woo written, {{}} ({}/s)", sizes.rate),
            ("< 100 ms", 100.0),
        ),
        Some(n) => (
            "latency.during_reconcile.observed_to_written".to_owned(),
            format!(
                "change observed → Woo written while a reconcile of {n} products runs, {{}} ({}/s)",
                sizes.rate
            ),
            ("< 250 ms", 250.0),
        ),
    };
    report.add(
        4,
        &format!("{key}_p50"),
        &label.replace("{}", "p50"),
        s.p50_ms,
        "ms",
        false,
        None,
        note,
    );
    report.add(
        4,
        &format!("{key}_p99"),
        &label.replace("{}", "p99"),
        s.p99_ms,
        "ms",
        false,
        Some((target.0, s.p99_ms < target.1 && missing == 0)),
        format!("max {:.1} ms, mean {:.1} ms", s.max_ms, s.mean_ms),
    );
    Ok(())
}

/// Item 5: 1,000 stock changes of one product within a second.
async fn storm(report: &mut Report, w: &CatalogWorld) -> anyhow::Result<()> {
    tokio::time::sleep(Duration::from_secs(1)).await;
    let (id, sku) = w.products[0].clone();
    w.woo.reset_request_counts();
    w.woo.record_stock_changes(true);
    let mut tick = tokio::time::interval(Duration::from_micros(950));
    let started = Instant::now();
    let mut last = 0;
    for k in 0..1000u64 {
        tick.tick().await;
        last = 500_000 + k as i64;
        w.bus
            .publish(&stock_observed(id, &sku, last, 500_000 + k))
            .await?;
    }
    let took = started.elapsed();
    let deadline = Instant::now() + Duration::from_secs(30);
    let mut seen_last = None;
    while seen_last.is_none() && Instant::now() < deadline {
        seen_last = w
            .woo
            .take_stock_changes()
            .into_iter()
            .find(|c| c.sku == sku && c.stock_quantity == Some(last))
            .map(|c| c.at);
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    w.woo.record_stock_changes(false);
    tokio::time::sleep(Duration::from_secs(1)).await;
    let (all_writes, _) = writes(&w.woo);
    let batches = w.woo.request_count("POST products/batch");
    report.add(
        5,
        "requests.stock_storm_writes",
        "stock storm: 1,000 changes of one product in 1 s → writes",
        all_writes as f64,
        "",
        false,
        Some(("≤ 5", all_writes <= 5 && seen_last.is_some())),
        format!(
            "changes published in {:.2} s; batch writes {batches}; last value {}",
            took.as_secs_f64(),
            match seen_last {
                Some(at) => format!(
                    "written {:.0} ms after the storm began",
                    at.saturating_duration_since(started).as_secs_f64() * 1000.0
                ),
                None => "never written".into(),
            }
        ),
    );
    Ok(())
}
