//! The chaos scenario runner (issue #8): a mixed workload — catalogue changes, stock changes,
//! web orders, DUELL status changes — through every service, while services are SIGKILLed and
//! restarted at random moments, NATS restarts, both simulators fail a fifth of their requests,
//! DUELL tokens expire and webhooks are duplicated, dropped and disabled. Afterwards the final
//! state is checked against an expectation computed here, from the simulators' own data and the
//! workload's log, not from anything the engine reports.

use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, Instant};

use duellsync_bus::{Bus, BusOptions};
use duellsync_duell_sim::{
    Fault, NewSimProduct, ProductPatch, RandomFaults, SimConfig as DuellConfig,
};
use duellsync_events::headers;
use duellsync_test_support::free_port;
use duellsync_woo::WebhookUpdate;
use duellsync_woo_sim::{
    DeliveryKnobs, FaultKind, FaultRule, PlaceLine, PlaceOrder, SimConfig as WooConfig,
};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use rust_decimal::{Decimal, RoundingStrategy};

use crate::{World, STOCK_DEPARTMENT};

/// How big and how hostile a run is.
#[derive(Debug, Clone)]
pub struct ChaosConfig {
    pub seed: u64,
    pub products: usize,
    pub orders: usize,
    /// How long the workload and the chaos last.
    pub duration: Duration,
    /// SIGKILLs of random services during the run.
    pub kills: usize,
    /// Restarts of nats-server during the run.
    pub nats_restarts: usize,
    /// Share of requests the simulators fail while faults are on.
    pub fault_rate: f64,
    /// How long the engine gets to converge after the chaos stops.
    pub settle: Duration,
}

impl ChaosConfig {
    /// Small enough for CI.
    pub fn small() -> Self {
        ChaosConfig {
            seed: 7,
            products: 30,
            orders: 30,
            duration: Duration::from_secs(20),
            kills: 6,
            nats_restarts: 1,
            fault_rate: 0.2,
            settle: Duration::from_secs(120),
        }
    }

    /// The setting to run by hand (`duellsync-chaos --large`).
    pub fn large() -> Self {
        ChaosConfig {
            seed: 11,
            products: 300,
            orders: 300,
            duration: Duration::from_secs(120),
            kills: 25,
            nats_restarts: 2,
            fault_rate: 0.2,
            settle: Duration::from_secs(300),
        }
    }
}

/// What happened and what was found.
#[derive(Debug, Default)]
pub struct ChaosReport {
    pub kills: Vec<String>,
    pub nats_restarts: usize,
    pub orders_placed: usize,
    pub price_changes: usize,
    pub stock_changes: usize,
    pub completions: usize,
    pub dead_letters: usize,
    pub converged_after: Option<Duration>,
    /// Every way the final state differs from the expectation (empty = pass).
    pub problems: Vec<String>,
}

const SERVICES: [&str; 5] = [
    "webhook-ingest",
    "change-poller",
    "catalog-publisher",
    "order-importer",
    "status-writeback",
];

/// The price incl. VAT WooCommerce shows for a stored net price, computed independently of the
/// engine: the simulated (Norwegian) shop enters prices without tax, two decimals, tax rounded
/// per line (WooCommerce's default), PHP rounding. It must be DUELL's price to the øre.
fn shown_price(net: Decimal, vat: u32) -> Decimal {
    let round = |d: Decimal| d.round_dp_with_strategy(2, RoundingStrategy::MidpointAwayFromZero);
    round(net + round(net * Decimal::from(vat) / Decimal::ONE_HUNDRED))
}

pub async fn run(cfg: ChaosConfig) -> ChaosReport {
    let mut rng = StdRng::seed_from_u64(cfg.seed);
    let mut report = ChaosReport::default();
    let ingest_port = free_port();
    let mut world = World::with(
        DuellConfig {
            products: 0,
            seed: cfg.seed,
            ..DuellConfig::default()
        },
        WooConfig {
            seed: cfg.seed,
            hang: Duration::from_millis(1500),
            // Prices entered without tax, so every price the engine writes is converted.
            settings: duellsync_woo_sim::Settings {
                prices_include_tax: false,
                ..duellsync_woo_sim::Settings::norway()
            },
            ..WooConfig::default()
        },
        &[
            "poll_interval = \"500ms\"",
            "stock_poll_interval = \"500ms\"",
            "reconcile_interval = \"1m\"",
        ],
        "",
    )
    .await;
    // One warehouse: web orders are drawn from the stock that is published. The simulator's
    // unverified order lookup settles DUELL writes whose answer a kill or a fault lost.
    world.store.order_department = world.store.stock_department.clone();
    world.store.webhook_delivery_url =
        format!("http://127.0.0.1:{ingest_port}/webhooks/woocommerce/s1");
    let toml = world
        .store
        .to_toml()
        .replace("[duell]\n", "[duell]\norder_lookup = true\n");
    world.sandbox.write_store("s1", &toml);

    // The catalogue: simple products with unique numbers, plenty of stock.
    let mut products: Vec<(u64, String)> = Vec::new();
    for n in 0..cfg.products {
        let sku = format!("CH-{n:04}");
        let p = world.duell.create_product(NewSimProduct {
            product_name: format!("Kaos {n}"),
            product_number: Some(sku.clone()),
            price_inc_vat: Some(Decimal::from(rng.random_range(50..2000))),
            vatrate_percent: Some(*[25u32, 15, 12, 0].get(n % 4).unwrap_or(&25)),
            product_image: Some(if n % 5 == 0 {
                format!("kaos-{n}")
            } else {
                String::new()
            }),
            stock: Some(Decimal::from(1000)),
            ..NewSimProduct::default()
        });
        products.push((p.product_id, sku));
    }

    let listen = format!("127.0.0.1:{ingest_port}");
    world.sandbox.start(
        "webhook-ingest",
        &[("DUELLSYNC_INGEST__LISTEN", listen.as_str())],
    );
    // A write whose answer was lost is looked up after 2 s (not the production minute).
    world.sandbox.start(
        "order-importer",
        &[
            ("DUELLSYNC_IMPORTER__LOOKUP_SETTLE", "2s"),
            ("DUELLSYNC_IMPORTER__DUELL_TIMEOUT", "5s"),
        ],
    );
    for s in ["change-poller", "catalog-publisher", "status-writeback"] {
        world.sandbox.start(s, &[]);
    }
    for s in SERVICES {
        world.sandbox.wait_ready(s, Duration::from_secs(120));
    }
    crate::eventually(
        "the initial catalogue in WooCommerce",
        Duration::from_secs(120),
        || async { (world.woo_products().await.len() == cfg.products).then_some(()) },
    )
    .await;

    // The chaos.
    world.woo.set_delivery_knobs(DeliveryKnobs {
        delay_ms: 20,
        duplicates: 2,
        drop_rate: 0.1,
    });
    world.duell.set_random_faults(Some(RandomFaults {
        rate: cfg.fault_rate,
        seed: cfg.seed,
        faults: vec![
            Fault::ServerError { status: 503 },
            Fault::RateLimited {
                retry_after_secs: 1,
            },
            Fault::EmptyBody { status: 200 },
            Fault::ExpiredToken,
            Fault::ServerErrorAfterProcessing { status: 502 },
        ],
        endpoint: None,
    }));
    for kind in [
        FaultKind::ServerError {
            status: 503,
            html: false,
        },
        FaultKind::TooManyRequests {
            retry_after_secs: 1,
        },
        FaultKind::Hang,
    ] {
        world.woo.add_fault(FaultRule {
            method: None,
            route: None,
            path_contains: Some("/wp-json/".into()),
            query_contains: None,
            kind,
            times: None,
            probability: Some(cfg.fault_rate / 3.0),
        });
    }

    let started = Instant::now();
    let step = cfg.duration / (cfg.orders.max(1) as u32 * 2).max(1);
    let kill_every = cfg.duration / (cfg.kills.max(1) as u32 + 1);
    let mut next_kill = started + kill_every;
    let nats_at: Vec<Instant> = (1..=cfg.nats_restarts)
        .map(|i| started + cfg.duration * i as u32 / (cfg.nats_restarts as u32 + 1))
        .collect();
    let disable_at = started + cfg.duration / 2;
    let mut disabled = false;
    let mut placed: Vec<u64> = Vec::new();
    let mut completed_wanted: BTreeSet<u64> = BTreeSet::new();
    let phones = [
        "+47 900 00 001",
        "004790000002",
        "90000003",
        "",
        "+4790000005",
    ];
    while started.elapsed() < cfg.duration {
        // One workload action.
        let (id, sku) = products[rng.random_range(0..products.len())].clone();
        match rng.random_range(0..10) {
            0..=2 if placed.len() < cfg.orders => {
                let phone = phones[rng.random_range(0..phones.len())];
                let mut billing: BTreeMap<String, Option<String>> = [
                    ("first_name", "Kari"),
                    ("last_name", "Kaos"),
                    ("address_1", "Gate 1"),
                    ("city", "Oslo"),
                    ("postcode", "0150"),
                    ("country", "NO"),
                ]
                .iter()
                .map(|(k, v)| ((*k).to_owned(), Some((*v).to_owned())))
                .collect();
                if !phone.is_empty() {
                    billing.insert("phone".into(), Some(phone.to_owned()));
                    billing.insert("email".into(), Some(format!("k{}@example.no", phone.len())));
                }
                let quantity = rng.random_range(1..3);
                if let Ok(order) = world.woo.place_order(&PlaceOrder {
                    lines: vec![PlaceLine {
                        sku: Some(sku.clone()),
                        quantity,
                        ..PlaceLine::default()
                    }],
                    billing,
                    ..PlaceOrder::default()
                }) {
                    placed.push(order);
                }
            }
            3..=4 => {
                let price = Decimal::from(rng.random_range(50..2000));
                let _ = world.duell.update_product(
                    id,
                    ProductPatch {
                        price_inc_vat: Some(price),
                        ..ProductPatch::default()
                    },
                );
                report.price_changes += 1;
            }
            5..=7 => {
                let stock = Decimal::from(rng.random_range(500..1500));
                world.duell.set_stock(STOCK_DEPARTMENT, id, stock);
                report.stock_changes += 1;
            }
            _ => {
                // DUELL completes an imported order now and then.
                let orders = world.duell.customer_orders();
                if let Some(o) = orders
                    .iter()
                    .filter(|o| o.purchase_order_status_id < 5)
                    .nth(rng.random_range(0..3))
                {
                    if let Ok(woo_id) = o.reference().parse::<u64>() {
                        if world.duell.set_order_status(o.order_id, 5).is_ok() {
                            completed_wanted.insert(woo_id);
                            report.completions += 1;
                        }
                    }
                }
            }
        }
        // Chaos events.
        let now = Instant::now();
        if now >= next_kill && report.kills.len() < cfg.kills {
            let victim = SERVICES[rng.random_range(0..SERVICES.len())];
            world.sandbox.kill(victim);
            tokio::time::sleep(Duration::from_millis(rng.random_range(100..800))).await;
            world.sandbox.restart(victim);
            report.kills.push(victim.to_owned());
            next_kill = now + kill_every;
        }
        if report.nats_restarts < nats_at.len() && now >= nats_at[report.nats_restarts] {
            world.sandbox.nats.restart();
            report.nats_restarts += 1;
        }
        if !disabled && now >= disable_at {
            // WooCommerce disables webhooks after failed deliveries; the gap-fill keeps orders
            // coming and the reconciliation re-creates them.
            if let Ok(hooks) = world.client.list_webhooks(None).await {
                for h in hooks {
                    let _ = world
                        .client
                        .update_webhook(
                            h.id,
                            &WebhookUpdate {
                                status: Some("disabled".into()),
                                ..WebhookUpdate::default()
                            },
                        )
                        .await;
                }
            }
            world.duell.expire_all_tokens();
            disabled = true;
        }
        tokio::time::sleep(step).await;
    }
    // Peace: faults off, every service up, the remaining orders placed.
    world.duell.set_random_faults(None);
    world.woo.clear_faults();
    world.woo.set_delivery_knobs(DeliveryKnobs::default());
    for s in SERVICES {
        if !world.sandbox.is_running(s) {
            world.sandbox.restart(s);
        }
        world.sandbox.wait_ready(s, Duration::from_secs(120));
    }
    report.orders_placed = placed.len();

    // Convergence against the expectation.
    let settle_started = Instant::now();
    loop {
        let problems = check(&world, &products, &placed, &completed_wanted).await;
        if problems.is_empty() {
            report.converged_after = Some(settle_started.elapsed());
            break;
        }
        if settle_started.elapsed() > cfg.settle {
            report.problems = problems;
            break;
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    // Duplicates never heal, so they are checked once more at the very end, and every dead
    // letter must say why.
    let bus = Bus::connect(BusOptions::new(world.sandbox.nats.url(), "chaos"))
        .await
        .expect("nats");
    let dead = bus
        .read("DLQ", "dlq.>", 1, 100_000)
        .await
        .unwrap_or_default();
    report.dead_letters = dead.len();
    for d in &dead {
        if d.header(headers::DLQ_REASON).unwrap_or("").is_empty() {
            report
                .problems
                .push(format!("dead letter {} has no reason", d.sequence));
        }
    }
    if !report.problems.is_empty() {
        eprintln!(
            "{}",
            world
                .sandbox
                .all_logs()
                .lines()
                .filter(|l| l.contains("\"ERROR\""))
                .take(50)
                .collect::<Vec<_>>()
                .join("\n")
        );
    }
    report
}

/// Every difference between the final state and what it must be.
async fn check(
    world: &World,
    products: &[(u64, String)],
    placed: &[u64],
    completed_wanted: &BTreeSet<u64>,
) -> Vec<String> {
    let mut problems = Vec::new();
    // Catalogue: every product once, at DUELL's price and free stock.
    let woo = world.woo_products().await;
    if woo.len() != products.len() {
        problems.push(format!(
            "{} WooCommerce products, want {}",
            woo.len(),
            products.len()
        ));
    }
    for (id, sku) in products {
        let Some(d) = world.duell.product(*id) else {
            continue;
        };
        let Some(w) = woo.get(sku) else {
            problems.push(format!("{sku} missing in WooCommerce"));
            continue;
        };
        let want_price = d
            .price_inc_vat
            .round_dp_with_strategy(2, RoundingStrategy::MidpointAwayFromZero);
        let shown = w
            .regular_price
            .map(|net| shown_price(net, d.vatrate_percent));
        if shown != Some(want_price) {
            problems.push(format!(
                "{sku}: price {:?} shows {shown:?}, want {want_price}",
                w.regular_price
            ));
        }
        let level = world.duell.stock(STOCK_DEPARTMENT, *id);
        let free = (level.physical - level.reserved).floor().max(Decimal::ZERO);
        let want_stock = i64::try_from(free).unwrap_or(0);
        if w.stock_quantity != Some(want_stock) {
            problems.push(format!(
                "{sku}: stock {:?}, want {want_stock}",
                w.stock_quantity
            ));
        }
    }
    let attachments = world.woo.attachments().len();
    let with_images = products
        .iter()
        .filter(|(id, _)| {
            world
                .duell
                .product(*id)
                .map(|p| !matches!(p.image, duellsync_duell_sim::SimImage::None))
                .unwrap_or(false)
        })
        .count();
    if attachments > with_images {
        problems.push(format!(
            "{attachments} image attachments for {with_images} products with an image"
        ));
    }
    // Orders: every web order exactly once in DUELL.
    let mut by_ref: BTreeMap<String, usize> = BTreeMap::new();
    for o in world.duell.customer_orders() {
        *by_ref.entry(o.reference()).or_default() += 1;
    }
    for o in world.duell.sales_orders() {
        problems.push(format!("unexpected sales order {}", o.order_id));
    }
    for id in placed {
        match by_ref.get(&id.to_string()) {
            None => problems.push(format!("web order {id} not in DUELL")),
            Some(1) => {}
            Some(n) => problems.push(format!("web order {id} is {n} DUELL orders")),
        }
    }
    if by_ref.len() > placed.len() {
        problems.push(format!(
            "{} DUELL orders for {} web orders",
            by_ref.len(),
            placed.len()
        ));
    }
    if !world.duell.stock_adjustments().is_empty() {
        problems.push("stock adjustments in customer-order mode".into());
    }
    // Customers: one per buyer (phones normalise to the same number).
    let mut phones: BTreeMap<String, usize> = BTreeMap::new();
    for c in world.duell.customers() {
        let digits: String = c.phone.chars().filter(|c| c.is_ascii_digit()).collect();
        if !digits.is_empty() {
            *phones.entry(digits).or_default() += 1;
        }
    }
    for (p, n) in phones {
        if n > 1 {
            problems.push(format!("{n} DUELL customers with phone {p}"));
        }
    }
    // Status write-back: completed once.
    let captures = world.woo.captured_orders();
    let unique: BTreeSet<u64> = captures.iter().copied().collect();
    if unique.len() != captures.len() {
        problems.push("an order was captured twice".into());
    }
    for id in completed_wanted {
        let status = world
            .woo
            .order_json(*id)
            .and_then(|o| o["status"].as_str().map(str::to_owned))
            .unwrap_or_default();
        if status != "completed" {
            problems.push(format!("web order {id} is {status}, want completed"));
        }
    }
    problems
}
