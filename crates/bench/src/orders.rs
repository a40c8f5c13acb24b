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

impl OrderWorld {
    /// Waits until duell-sim holds `want` customer orders and returns when it did; a stall's
    /// error carries the end of the importer's log.
    async fn until_in_duell(&self, what: &str, want: usize) -> anyhow::Result<Instant> {
        let duell = &self.duell;
        world::with_log(
            world::wait_count(what, want, STALL, || duell.customer_order_count()).await,
            &self.sandbox,
            "order-importer",
        )
    }
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
    w.until_in_duell("warm-up orders in DUELL", WARM).await?;

    wait_for_marker_scan(&w.sandbox).await?;
    let started = Instant::now();
    let http = load::run(addr, &path, timed, sizes.concurrency).await?;
    let accepted = http.ok();
    let done = w.until_in_duell("orders in DUELL", WARM + accepted).await?;
    let elapsed = done - started;
    let rate = accepted as f64 / elapsed.as_secs_f64();
    tokio::time::sleep(Duration::from_secs(1)).await;
    let total = w.duell.customer_order_count();
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

fn steal_text(share: Option<f64>) -> String {
    match share {
        Some(s) => format!("steal {:.0} % of the cores' time in the windows", 100.0 * s),
        None => "steal unknown".into(),
    }
}

/// The ceiling and the importer take turns this many times on their own share of the orders:
/// the machine's speed drifts by tens of percent within seconds, and a ratio of two windows
/// measured side by side, repeated, is steadier than one measured once each.
const ROUNDS: usize = 3;

/// One timed window.
#[derive(Default)]
struct Window {
    orders: usize,
    elapsed: Duration,
    /// CPU time of the measured process.
    cpu: Option<Duration>,
    machine: Option<Duration>,
    steal: Option<Duration>,
}

impl Window {
    /// No turn yet: nothing counted, every time known (and zero).
    fn total() -> Window {
        Window {
            cpu: Some(Duration::ZERO),
            machine: Some(Duration::ZERO),
            steal: Some(Duration::ZERO),
            ..Window::default()
        }
    }

    fn rate(&self) -> f64 {
        self.orders as f64 / self.elapsed.as_secs_f64()
    }

    fn add(&mut self, w: &Window) {
        self.orders += w.orders;
        self.elapsed += w.elapsed;
        self.cpu = self.cpu.zip(w.cpu).map(|(a, b)| a + b);
        self.machine = self.machine.zip(w.machine).map(|(a, b)| a + b);
        self.steal = self.steal.zip(w.steal).map(|(a, b)| a + b);
    }

    fn per_order_ms(d: Option<Duration>, n: usize) -> f64 {
        match d {
            Some(d) if n > 0 => d.as_secs_f64() * 1000.0 / n as f64,
            _ => f64::NAN,
        }
    }

    /// The share of the cores' time in the windows that the hypervisor gave to someone else.
    fn steal_share(&self) -> Option<f64> {
        let cores = std::thread::available_parallelism().map_or(1, |c| c.get());
        let total = self.elapsed.as_secs_f64() * cores as f64;
        self.steal
            .filter(|_| total > 0.0)
            .map(|s| s.as_secs_f64() / total)
    }
}

fn since(before: Option<Duration>, after: Option<Duration>) -> Option<Duration> {
    before.zip(after).map(|(b, a)| a.saturating_sub(b))
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    match v.len() {
        0 => f64::NAN,
        n if n % 2 == 1 => v[n / 2],
        n => (v[n / 2 - 1] + v[n / 2]) / 2.0,
    }
}

/// `n` split into `ROUNDS` shares (the last takes the remainder).
fn shares(n: usize) -> Vec<usize> {
    let each = n / ROUNDS;
    (0..ROUNDS)
        .map(|r| {
            if r + 1 == ROUNDS {
                n - each * (ROUNDS - 1)
            } else {
                each
            }
        })
        .filter(|s| *s > 0)
        .collect()
}

async fn importer_with(report: &mut Report, n: usize, c: Option<usize>) -> anyhow::Result<()> {
    let shares = shares(n);
    let rounds = shares.len();
    // Each start of the ceiling process imports its own warm-up orders.
    let mut w = order_world(WARM * rounds + WARM + 2 * n).await?;
    let (ceiling_ids, importer_ids) = w.woo_orders.split_at(WARM * rounds + n);
    let (mut ceiling_ids, importer_ids) = (ceiling_ids.to_vec(), importer_ids.to_vec());
    let concurrency = c.unwrap_or(4);

    // The importer, started and warmed up once.
    let env = importer_env(c);
    world::start(&mut w.sandbox, "order-importer", &env_refs(&env)).await?;
    let template = world::sample_body();
    let events: Vec<_> = importer_ids
        .iter()
        .map(|id| crate::events::order_observed(&order_body(&template, *id)))
        .collect();
    let (warm, mut timed) = events.split_at(WARM);
    let want_warm = w.duell.customer_order_count() + WARM;
    w.bus.publish_all(warm, 16).await?;
    w.until_in_duell("warm-up orders in DUELL", want_warm)
        .await?;
    // Its first start reads every order's marker (a new ledger): not part of the timed window.
    wait_for_marker_scan(&w.sandbox).await?;
    let importer_pid = w.sandbox.pid("order-importer").context("importer pid")?;

    let (mut ceiling, mut import) = (Window::total(), Window::total());
    let mut ratios = Vec::new();
    let mut ceiling_calls = None;
    let mut importer_calls = None;
    let mut busiest: Option<(String, Duration)> = None;
    let mut published = Duration::ZERO;
    for &m in &shares {
        // The call ceiling on its share: a process of its own per round, with its warm-up.
        let rest = ceiling_ids.split_off(WARM + m);
        let mine = std::mem::replace(&mut ceiling_ids, rest);
        let run = crate::ceiling::Ceiling::start(
            w.sandbox.stores_path(),
            &mine[..WARM],
            &mine[WARM..],
            concurrency,
            w.sandbox.dir(),
        )
        .await?;
        let pid = run.pid();
        let before = requests(&w);
        let base = w.duell.customer_order_count();
        let cpu0 = world::cpu_time(pid);
        let machine0 = world::machine_time();
        let started = Instant::now();
        let cpu_end = Some(run.run().await?);
        let elapsed = started.elapsed();
        let machine1 = world::machine_time();
        let round_ceiling = Window {
            orders: m,
            elapsed,
            cpu: since(cpu0, cpu_end),
            machine: since(machine0.map(|t| t.busy), machine1.map(|t| t.busy)),
            steal: since(machine0.map(|t| t.steal), machine1.map(|t| t.steal)),
        };
        ceiling_calls.get_or_insert(Calls::of(&before, &requests(&w), m));
        anyhow::ensure!(
            w.duell.customer_order_count() == base + m,
            "the call ceiling saved {} customer orders, want {m}",
            w.duell.customer_order_count() - base
        );

        // The importer on its share, right after.
        let (mine, rest) = timed.split_at(m);
        timed = rest;
        let before = requests(&w);
        let base = w.duell.customer_order_count();
        let cpu0 = world::cpu_time(importer_pid);
        let threads0 = world::thread_cpu(importer_pid);
        let machine0 = world::machine_time();
        let started = Instant::now();
        w.bus.publish_all(mine, crate::baseline::IN_FLIGHT).await?;
        published += started.elapsed();
        let done = w.until_in_duell("orders in DUELL", base + m).await?;
        let elapsed = done - started;
        // Read at the last DUELL order, like the rate: the notes after it are the importer's
        // alone.
        let machine1 = world::machine_time();
        if let Some((name, t)) = world::busiest_thread(&threads0, &world::thread_cpu(importer_pid))
        {
            let t = busiest.as_ref().map_or(t, |(_, b)| *b + t);
            busiest = Some((name, t));
        }
        // The importer finishes an order's WooCommerce steps after DUELL has it: wait for them
        // too before reading its CPU time and calls, and before the next round's ceiling.
        let want_notes = before
            .get("woo POST orders/{id}/notes")
            .copied()
            .unwrap_or(0)
            + m as u64;
        let woo = &w.woo;
        world::wait_count("the importer's notes", want_notes as usize, STALL, || {
            woo.request_count("POST orders/{id}/notes") as usize
        })
        .await?;
        let round_import = Window {
            orders: m,
            elapsed,
            cpu: since(cpu0, world::cpu_time(importer_pid)),
            machine: since(machine0.map(|t| t.busy), machine1.map(|t| t.busy)),
            steal: since(machine0.map(|t| t.steal), machine1.map(|t| t.steal)),
        };
        importer_calls.get_or_insert(Calls::of(&before, &requests(&w), m));
        ratios.push(round_import.rate() / round_ceiling.rate());
        ceiling.add(&round_ceiling);
        import.add(&round_import);
    }

    let ceiling_rate = ceiling.rate();
    let rate = import.rate();
    let ratio = median(ratios.clone());
    let ratios_text = ratios
        .iter()
        .map(|r| format!("{r:.2}"))
        .collect::<Vec<_>>()
        .join(", ");
    let ceiling_cpu = Window::per_order_ms(ceiling.cpu, ceiling.orders);
    let importer_cpu = Window::per_order_ms(import.cpu, import.orders);
    let ceiling_machine = Window::per_order_ms(ceiling.machine, ceiling.orders);
    let import_machine = Window::per_order_ms(import.machine, import.orders);
    let suffix = c.map(|c| format!(".c{c}")).unwrap_or_default();
    let (ceiling_calls, importer_calls) = (
        ceiling_calls.unwrap_or_default(),
        importer_calls.unwrap_or_default(),
    );
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
            "{} orders in {:.1} s over {rounds} turns; {ceiling_cpu:.2} ms CPU per order in the ceiling process; {calls_note}; {}",
            ceiling.orders,
            ceiling.elapsed.as_secs_f64(),
            steal_text(ceiling.steal_share())
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
            "{} orders over {rounds} turns, each right after the ceiling's: OrderObserved published in {:.2} s, all in DUELL after {:.1} s in all; {}",
            import.orders,
            published.as_secs_f64(),
            import.elapsed.as_secs_f64(),
            steal_text(import.steal_share())
        ),
    );
    report.add(
        7,
        &format!("importer.ratio_to_ceiling{suffix}"),
        "order import alone ÷ call ceiling (median of the turns)",
        ratio,
        "×",
        false,
        Some(("≥ 0.5", ratio >= 0.5)),
        format!("turns: {ratios_text}; over all turns {rate:.0}/s ÷ {ceiling_rate:.0}/s, against the same simulators"),
    );
    let cores = std::thread::available_parallelism().map_or(1, |c| c.get());
    let bound = |ms: f64| cores as f64 * 1000.0 / ms;
    let busiest_note = busiest
        .map(|(name, t)| {
            format!(
                "; the importer's busiest thread (`{name}`) was busy {:.0} % of the windows",
                100.0 * t.as_secs_f64() / import.elapsed.as_secs_f64()
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
            "busy time of all {cores} cores (/proc/stat, without steal) until the last order of each turn was in DUELL, ÷ {}: at most {:.0}/s if every core were busy; the call ceiling's windows used {ceiling_machine:.2} ms (at most {:.0}/s){busiest_note}",
            import.orders,
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
            "user + system time of the process over the {} timed orders (/proc/<pid>/stat); the ceiling process used {ceiling_cpu:.2} ms",
            import.orders
        ),
    );
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_orders_are_shared_out_over_the_turns_and_the_median_is_the_middle_turn() {
        assert_eq!(shares(10_000), vec![3_333, 3_333, 3_334]);
        assert_eq!(shares(2), vec![2], "too few to share: one turn");
        assert_eq!(shares(0), Vec::<usize>::new());
        assert_eq!(median(vec![0.41, 0.33, 0.38]), 0.38);
        assert!((median(vec![0.4, 0.2]) - 0.3).abs() < 1e-12);
        assert!(median(Vec::new()).is_nan());
    }

    #[test]
    fn turns_add_up_to_one_window() {
        let mut all = Window::total();
        let turn = Window {
            orders: 500,
            elapsed: Duration::from_millis(500),
            cpu: Some(Duration::from_millis(400)),
            machine: Some(Duration::from_millis(800)),
            steal: Some(Duration::from_millis(10)),
        };
        all.add(&turn);
        all.add(&turn);
        assert_eq!(all.orders, 1_000);
        assert_eq!(all.rate(), 1_000.0);
        assert_eq!(Window::per_order_ms(all.cpu, all.orders), 0.8);
        // A turn whose CPU time could not be read makes the total unknown, not smaller.
        all.add(&Window {
            cpu: None,
            ..Window::default()
        });
        assert!(Window::per_order_ms(all.cpu, all.orders).is_nan());
    }
}
