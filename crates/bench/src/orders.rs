//! Items 3 and 7: orders into DUELL. The whole pipeline (webhook-ingest → JetStream →
//! order-importer → DUELL, against a 0 ms duell-sim) driven with the captured delivery over HTTP,
//! and the importer alone, fed `OrderObserved` events directly. Both count the customer orders
//! duell-sim holds. Every order also exists in woo-sim, so the importer's note on the order is a
//! real WooCommerce read and write, as in production.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

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
    _woo: WooSim,
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
        _woo: woo,
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
    Ok(())
}

/// Item 7: the importer alone, `OrderObserved` events published directly.
pub async fn importer(report: &mut Report, sizes: &Sizes) -> anyhow::Result<()> {
    for c in &sizes.importer_concurrency {
        importer_with(report, sizes.orders, *c).await?;
    }
    Ok(())
}

async fn importer_with(report: &mut Report, n: usize, c: Option<usize>) -> anyhow::Result<()> {
    let mut w = order_world(WARM + n).await?;
    let env = importer_env(c);
    world::start(&mut w.sandbox, "order-importer", &env_refs(&env)).await?;
    let template = world::sample_body();
    let events: Vec<_> = w
        .woo_orders
        .iter()
        .map(|id| crate::events::order_observed(&order_body(&template, *id)))
        .collect();
    let (warm, timed) = events.split_at(WARM);
    w.bus.publish_all(warm, 16).await?;
    let duell = w.duell.clone();
    world::with_log(
        world::wait_count("warm-up orders in DUELL", WARM, STALL, || {
            duell.customer_order_count()
        })
        .await,
        &w.sandbox,
        "order-importer",
    )?;
    let started = Instant::now();
    w.bus.publish_all(timed, crate::baseline::IN_FLIGHT).await?;
    let published = started.elapsed();
    let done = world::with_log(
        world::wait_count("orders in DUELL", WARM + n, STALL, || {
            duell.customer_order_count()
        })
        .await,
        &w.sandbox,
        "order-importer",
    )?;
    let elapsed = done - started;
    let rate = n as f64 / elapsed.as_secs_f64();
    let key = match c {
        Some(c) => format!("importer.orders_per_second.c{c}"),
        None => "importer.orders_per_second".to_owned(),
    };
    report.add(
        7,
        &key,
        &format!("order import alone ({})", concurrency_text(c)),
        rate,
        "/s",
        true,
        None,
        format!(
            "{n} OrderObserved published in {:.2} s, all in DUELL after {:.1} s",
            published.as_secs_f64(),
            elapsed.as_secs_f64()
        ),
    );
    Ok(())
}
