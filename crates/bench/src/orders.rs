//! Items 3 and 7: orders into DUELL. The whole pipeline (webhook-ingest → JetStream →
//! order-importer → DUELL, against a 0 ms duell-sim) driven with the captured delivery over HTTP,
//! and the importer alone, fed `OrderObserved` events directly. Both count the customer orders
//! duell-sim holds. Every order also exists in woo-sim, so the importer's fresh read, marker and
//! note are real WooCommerce requests, as in production.
//!
//! Both are also judged against the **call ceiling** ([`crate::ceiling`]): a process making the
//! same DUELL and WooCommerce calls per order against the same simulators, without broker or
//! state, measured in the importer's world right before the importer.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context;

use bytes::Bytes;
use duellsync_bus::Bus;
use duellsync_duell_sim::{DuellSim, NewSimProduct, SimConfig as DuellConfig};
use duellsync_test_support::free_port;
use duellsync_test_support::sandbox::Sandbox;
use duellsync_woo_sim::{PlaceLine, PlaceOrder, PlaceShipping, SimConfig as WooConfig, WooSim};
use rust_decimal::Decimal;

use crate::load::{self, delivery_headers, Prepared};
use crate::report::Report;
use crate::world::{self, order_body, STORE, WEBHOOK_SECRET};

/// Orders imported before the clock starts (first customer, product look-ups, connections).
const WARM: usize = 20;
/// A count that does not move for this long means something is stuck.
const STALL: Duration = Duration::from_secs(90);

pub struct Sizes {
    pub orders: usize,
    pub concurrency: usize,
    /// `importer.concurrency` values to measure the importer alone with (`None` = its default).
    pub importer_concurrency: Vec<Option<usize>>,
}

struct OrderWorld {
    sandbox: Sandbox,
    duell: DuellSim,
    woo: WooSim,
    bus: Bus,
    /// WooCommerce ids of the placed orders.
    woo_orders: Vec<u64>,
}

/// duell-sim with the captured order's products and the shipping product, woo-sim with `n`
/// placed orders of the same shape, a sandbox with store `s1` pointing at both.
async fn order_world(n: usize) -> anyhow::Result<OrderWorld> {
    let duell = DuellSim::start(DuellConfig {
        products: 0,
        customers: 0,
        ..DuellConfig::default()
    })
    .await?;
    for (sku, name, price) in [
        ("LAB-4D5FC1-001", "Lab Mug", 11),
        ("LAB-4D5FC1-TM", "Lab Tee M", 22),
        ("SHIPPING", "Frakt", 0),
    ] {
        duell.create_product(NewSimProduct {
            product_name: name.into(),
            product_number: Some(sku.into()),
            price_inc_vat: Some(Decimal::from(price)),
            category_name: Some(String::new()),
            product_image: Some(String::new()),
            stock: Some(Decimal::from(1_000_000)),
            ..NewSimProduct::default()
        });
    }
    let woo = WooSim::start(WooConfig {
        https: false,
        ..WooConfig::default()
    })
    .await?;
    for (sku, name, price) in [
        ("LAB-4D5FC1-001", "Lab Mug", "11.00"),
        ("LAB-4D5FC1-TM", "Lab Tee M", "22.00"),
    ] {
        woo.admin_write_product(
            None,
            serde_json::json!({"name": name, "sku": sku, "regular_price": price, "manage_stock": false}),
        )
        .map_err(anyhow::Error::msg)?;
    }
    let billing: BTreeMap<String, Option<String>> = [
        ("first_name", "Ada"),
        ("last_name", "Lovelace"),
        ("address_1", "1 Lab Street"),
        ("city", "Berlin"),
        ("postcode", "10115"),
        ("country", "DE"),
        ("email", "ada@example.com"),
        ("phone", "+49 30 000000"),
    ]
    .iter()
    .map(|(k, v)| ((*k).to_owned(), Some((*v).to_owned())))
    .collect();
    let order = PlaceOrder {
        lines: vec![
            PlaceLine {
                product_id: None,
                sku: Some("LAB-4D5FC1-001".into()),
                quantity: 2,
            },
            PlaceLine {
                product_id: None,
                sku: Some("LAB-4D5FC1-TM".into()),
                quantity: 1,
            },
        ],
        billing,
        shipping_line: Some(PlaceShipping {
            method_id: "flat_rate".into(),
            method_title: "Flat rate".into(),
            total: "4.90".into(),
        }),
        payment_method: Some("bacs".into()),
        ..PlaceOrder::default()
    };
    let mut woo_orders = Vec::with_capacity(n);
    for _ in 0..n {
        woo_orders.push(woo.place_order(&order).map_err(anyhow::Error::msg)?);
    }
    let sandbox = world::sandbox().await?;
    sandbox.write_store(
        STORE,
        &world::store_file(Some(&woo), Some(&duell), &[]).to_toml(),
    );
    let bus = world::bus(&sandbox, "bench-orders").await?;
    Ok(OrderWorld {
        sandbox,
        duell,
        woo,
        bus,
        woo_orders,
    })
}

fn importer_env(concurrency: Option<usize>) -> Vec<(String, String)> {
    concurrency
        .map(|c| vec![("DUELLSYNC_IMPORTER__CONCURRENCY".to_owned(), c.to_string())])
        .unwrap_or_default()
}

fn env_refs(env: &[(String, String)]) -> Vec<(&str, &str)> {
    env.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect()
}

fn concurrency_text(c: Option<usize>) -> String {
    match c {
        Some(c) => format!("importer.concurrency = {c}"),
        None => "importer.concurrency = 4 (default)".into(),
    }
}

/// Item 3: webhook → ingest → importer → DUELL.
pub async fn pipeline(report: &mut Report, sizes: &Sizes) -> anyhow::Result<()> {
    let n = sizes.orders;
    let mut w = order_world(WARM + n).await?;
    let importer_c = sizes.importer_concurrency.first().copied().flatten();
    let env = importer_env(importer_c);
    world::start(&mut w.sandbox, "order-importer", &env_refs(&env)).await?;
    let listen = format!("127.0.0.1:{}", free_port());
    world::start(
        &mut w.sandbox,
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
    let addr: SocketAddr = listen.parse()?;
    let path = format!("/webhooks/woocommerce/{STORE}");
    let template = world::sample_body();
    let prepare = |ids: &[u64]| -> Arc<Vec<Prepared>> {
        Arc::new(
            ids.iter()
                .map(|id| {
                    let body = order_body(&template, *id);
                    let headers = delivery_headers(&body, Some(WEBHOOK_SECRET));
                    Prepared {
                        body: Bytes::from(body),
                        headers,
                    }
                })
                .collect(),
        )
    };
    let warm = prepare(&w.woo_orders[..WARM]);
    let timed = prepare(&w.woo_orders[WARM..]);
    load::run(addr, &path, warm, 16).await?;
    let duell = w.duell.clone();
    world::with_log(
        world::wait_count("warm-up orders in DUELL", WARM, STALL, || {
            duell.customer_order_count()
        })
        .await,
        &w.sandbox,
        "order-importer",
    )?;

    wait_for_marker_scan(&w.sandbox).await?;
    let started = Instant::now();
    let http = load::run(addr, &path, timed, sizes.concurrency).await?;
    let accepted = http.ok();
    let done = world::with_log(
        world::wait_count("orders in DUELL", WARM + accepted, STALL, || {
            duell.customer_order_count()
        })
        .await,
        &w.sandbox,
        "order-importer",
    )?;
    let elapsed = done - started;
    let rate = accepted as f64 / elapsed.as_secs_f64();
    tokio::time::sleep(Duration::from_secs(1)).await;
    let total = duell.customer_order_count();
    let b = report.b.unwrap_or(f64::NAN);
    let ceiling = report.ceiling;
    report.add(
        3,
        "pipeline.orders_per_second",
        "whole pipeline: webhook → ingest → importer → DUELL (0 ms duell-sim)",
        rate,
        "/s",
        true,
        Some(("≥ 0.20 × b", rate >= 0.20 * b)),
        format!(
            "{accepted} orders in {:.1} s ({} accepted by the ingest in {:.1} s at {} connections; {}); DUELL customer orders after: {total} (want {})",
            elapsed.as_secs_f64(),
            http.status_text(),
            http.elapsed.as_secs_f64(),
            sizes.concurrency,
            concurrency_text(importer_c),
            WARM + accepted
        ),
    );
    if let Some(ceiling) = ceiling {
        report.add(
            3,
            "pipeline.ratio_to_ceiling",
            "whole pipeline ÷ call ceiling",
            rate / ceiling,
            "×",
            false,
            None,
            format!("{rate:.0}/s ÷ {ceiling:.0}/s (the ceiling of item 7, same run)"),
        );
    }
    Ok(())
}

/// Item 7: the importer alone, `OrderObserved` events published directly, after the call
/// ceiling in the same world.
pub async fn importer(report: &mut Report, sizes: &Sizes) -> anyhow::Result<()> {
    for c in &sizes.importer_concurrency {
        importer_with(report, sizes.orders, *c).await?;
    }
    Ok(())
}

/// Requests per order each simulator received in a window, by endpoint.
#[derive(Debug, Default, Clone, PartialEq)]
struct Calls(BTreeMap<String, f64>);

impl Calls {
    fn of(before: &BTreeMap<String, u64>, after: &BTreeMap<String, u64>, n: usize) -> Calls {
        Calls(
            after
                .iter()
                .filter_map(|(k, v)| {
                    let d = v - before.get(k).copied().unwrap_or(0);
                    (d > 0).then(|| (k.clone(), d as f64 / n as f64))
                })
                .collect(),
        )
    }

    fn text(&self) -> String {
        self.0
            .iter()
            .map(|(k, v)| format!("{k} {v:.2}"))
            .collect::<Vec<_>>()
            .join(", ")
    }
}

fn requests(w: &OrderWorld) -> BTreeMap<String, u64> {
    let mut all: BTreeMap<String, u64> = w
        .woo
        .request_counts()
        .into_iter()
        .map(|(k, v)| (format!("woo {k}"), v))
        .collect();
    all.extend(
        w.duell
            .stats()
            .requests
            .into_iter()
            .filter(|(k, _)| k != "login")
            .map(|(k, v)| (format!("duell {k}"), v)),
    );
    all
}

/// Waits until the importer logged that its ledger is complete from the import markers.
async fn wait_for_marker_scan(sandbox: &Sandbox) -> anyhow::Result<()> {
    let deadline = Instant::now() + STALL;
    while !sandbox
        .logs("order-importer")
        .contains("import ledger completed from the import markers")
    {
        anyhow::ensure!(
            Instant::now() < deadline,
            "the importer did not finish reading the import markers"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    Ok(())
}

/// The share of the cores' time in a window that the hypervisor gave to someone else.
fn steal_share(
    before: Option<world::MachineTime>,
    after: Option<world::MachineTime>,
    window: Duration,
) -> Option<f64> {
    let cores = std::thread::available_parallelism().map_or(1, |c| c.get());
    let (b, a) = (before?, after?);
    let total = window.as_secs_f64() * cores as f64;
    (total > 0.0).then(|| a.steal.saturating_sub(b.steal).as_secs_f64() / total)
}

fn steal_text(share: Option<f64>) -> String {
    match share {
        Some(s) => format!("steal {:.0} % of the cores' time in the window", 100.0 * s),
        None => "steal unknown".into(),
    }
}

fn cpu_ms_per_order(before: Option<Duration>, after: Option<Duration>, n: usize) -> f64 {
    match (before, after) {
        (Some(b), Some(a)) if n > 0 => (a - b).as_secs_f64() * 1000.0 / n as f64,
        _ => f64::NAN,
    }
}

async fn importer_with(report: &mut Report, n: usize, c: Option<usize>) -> anyhow::Result<()> {
    let mut w = order_world(2 * (WARM + n)).await?;
    let (ceiling_ids, importer_ids) = w.woo_orders.split_at(WARM + n);
    let (ceiling_ids, importer_ids) = (ceiling_ids.to_vec(), importer_ids.to_vec());
    let concurrency = c.unwrap_or(4);

    // The call ceiling, first, on its own half of the orders.
    let ceiling = crate::ceiling::Ceiling::start(
        w.sandbox.stores_path(),
        &ceiling_ids[..WARM],
        &ceiling_ids[WARM..],
        concurrency,
        w.sandbox.dir(),
    )
    .await?;
    let pid = ceiling.pid();
    let before = requests(&w);
    let base = w.duell.customer_order_count();
    let cpu0 = world::cpu_time(pid);
    let machine0 = world::machine_time();
    let started = Instant::now();
    let cpu_end = Some(ceiling.run().await?);
    let ceiling_elapsed = started.elapsed();
    let machine1 = world::machine_time();
    let ceiling_machine = cpu_ms_per_order(machine0.map(|m| m.busy), machine1.map(|m| m.busy), n);
    let ceiling_steal = steal_share(machine0, machine1, ceiling_elapsed);
    let ceiling_rate = n as f64 / ceiling_elapsed.as_secs_f64();
    let ceiling_calls = Calls::of(&before, &requests(&w), n);
    let ceiling_cpu = cpu_ms_per_order(cpu0, cpu_end, n);
    anyhow::ensure!(
        w.duell.customer_order_count() == base + n,
        "the call ceiling saved {} customer orders, want {n}",
        w.duell.customer_order_count() - base
    );

    // The importer, on the other half.
    let env = importer_env(c);
    world::start(&mut w.sandbox, "order-importer", &env_refs(&env)).await?;
    let template = world::sample_body();
    let events: Vec<_> = importer_ids
        .iter()
        .map(|id| crate::events::order_observed(&order_body(&template, *id)))
        .collect();
    let (warm, timed) = events.split_at(WARM);
    w.bus.publish_all(warm, 16).await?;
    let duell = w.duell.clone();
    let want_warm = base + n + WARM;
    world::with_log(
        world::wait_count("warm-up orders in DUELL", want_warm, STALL, || {
            duell.customer_order_count()
        })
        .await,
        &w.sandbox,
        "order-importer",
    )?;
    // Its first start reads every order's marker (a new ledger): not part of the timed window.
    wait_for_marker_scan(&w.sandbox).await?;
    let pid = w.sandbox.pid("order-importer").context("importer pid")?;
    let before = requests(&w);
    let cpu0 = world::cpu_time(pid);
    let threads0 = world::thread_cpu(pid);
    let machine0 = world::machine_time();
    let started = Instant::now();
    w.bus.publish_all(timed, crate::baseline::IN_FLIGHT).await?;
    let published = started.elapsed();
    let done = world::with_log(
        world::wait_count("orders in DUELL", want_warm + n, STALL, || {
            duell.customer_order_count()
        })
        .await,
        &w.sandbox,
        "order-importer",
    )?;
    let elapsed = done - started;
    // Read at the last DUELL order, like the rate: the notes after it are the importer's alone.
    let machine1 = world::machine_time();
    let import_machine = cpu_ms_per_order(machine0.map(|m| m.busy), machine1.map(|m| m.busy), n);
    let import_steal = steal_share(machine0, machine1, elapsed);
    let busiest = world::busiest_thread(&threads0, &world::thread_cpu(pid));
    // The importer finishes an order's WooCommerce steps after DUELL has it: wait for them too
    // before reading its CPU time and calls.
    let want_notes = before
        .get("woo POST orders/{id}/notes")
        .copied()
        .unwrap_or(0)
        + n as u64;
    let woo = &w.woo;
    world::wait_count("the importer's notes", want_notes as usize, STALL, || {
        woo.request_count("POST orders/{id}/notes") as usize
    })
    .await?;
    let importer_cpu = cpu_ms_per_order(cpu0, world::cpu_time(pid), n);
    let importer_calls = Calls::of(&before, &requests(&w), n);
    let rate = n as f64 / elapsed.as_secs_f64();
    let suffix = c.map(|c| format!(".c{c}")).unwrap_or_default();
    let calls_note = if importer_calls == ceiling_calls {
        format!("same calls per order: {}", ceiling_calls.text())
    } else {
        format!(
            "CALLS DIFFER per order — importer: {}; ceiling: {}",
            importer_calls.text(),
            ceiling_calls.text()
        )
    };
    report.add(
        7,
        &format!("importer.call_ceiling_per_second{suffix}"),
        &format!(
            "call ceiling: the importer's DUELL + WooCommerce calls per order, no broker, no state ({} in flight, one thread)",
            concurrency
        ),
        ceiling_rate,
        "/s",
        true,
        None,
        format!(
            "{n} orders in {:.1} s; {ceiling_cpu:.2} ms CPU per order in the ceiling process; {calls_note}; {}",
            ceiling_elapsed.as_secs_f64(),
            steal_text(ceiling_steal)
        ),
    );
    report.ceiling.get_or_insert(ceiling_rate);
    report.add(
        7,
        &format!("importer.orders_per_second{suffix}"),
        &format!("order import alone ({})", concurrency_text(c)),
        rate,
        "/s",
        true,
        None,
        format!(
            "{n} OrderObserved published in {:.2} s, all in DUELL after {:.1} s; {:.2} × the call ceiling; {}",
            published.as_secs_f64(),
            elapsed.as_secs_f64(),
            rate / ceiling_rate,
            steal_text(import_steal)
        ),
    );
    report.add(
        7,
        &format!("importer.ratio_to_ceiling{suffix}"),
        "order import alone ÷ call ceiling",
        rate / ceiling_rate,
        "×",
        false,
        Some(("≥ 0.5", rate / ceiling_rate >= 0.5)),
        format!("{rate:.0}/s ÷ {ceiling_rate:.0}/s, measured one after the other against the same simulators"),
    );
    let cores = std::thread::available_parallelism().map_or(1, |c| c.get());
    let bound = |ms: f64| cores as f64 * 1000.0 / ms;
    let busiest_note = busiest
        .map(|(name, t)| {
            format!(
                "; the importer's busiest thread (`{name}`) was busy {:.0} % of the window",
                100.0 * t.as_secs_f64() / elapsed.as_secs_f64()
            )
        })
        .unwrap_or_default();
    report.add(
        7,
        &format!("importer.machine_cpu_ms_per_order{suffix}"),
        "CPU per imported order, whole machine (importer, broker, simulators, bench)",
        import_machine,
        "ms",
        false,
        None,
        format!(
            "busy time of all {cores} cores (/proc/stat, without steal) until the last order was in DUELL, ÷ {n}: at most {:.0}/s if every core were busy; the call ceiling's run used {ceiling_machine:.2} ms (at most {:.0}/s){busiest_note}",
            bound(import_machine),
            bound(ceiling_machine),
        ),
    );
    report.add(
        7,
        &format!("importer.cpu_ms_per_order{suffix}"),
        "CPU per imported order in order-importer",
        importer_cpu,
        "ms",
        false,
        Some(("≤ 1.0 ms (half of ~2 ms)", importer_cpu <= 1.0)),
        format!(
            "user + system time of the process over the {n} timed orders (/proc/<pid>/stat); the ceiling process used {ceiling_cpu:.2} ms"
        ),
    );
    Ok(())
}
