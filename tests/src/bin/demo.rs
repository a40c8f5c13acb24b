//! The demo: a private NATS, both simulators (a seeded DUELL catalogue and an empty WooCommerce
//! store), every service as its own process, and a narrated sync — the initial catalogue sync with
//! a progress bar, then live price and stock changes, a web order into DUELL, and DUELL's
//! completion back to WooCommerce.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use clap::Parser;
use duellsync_bus::{Bus, BusOptions, StoredMessage};
use duellsync_duell_sim::{ProductPatch, SimConfig as DuellConfig};
use duellsync_e2e::{World, ORDER_DEPARTMENT, STOCK_DEPARTMENT};
use duellsync_events::{event_name_for_subject, v1};
use duellsync_test_support::free_port;
use duellsync_woo_sim::{PlaceLine, PlaceOrder, SimConfig as WooConfig};
use indicatif::{ProgressBar, ProgressStyle};
use prost::Message;
use rust_decimal::Decimal;
use tokio_util::sync::CancellationToken;

#[derive(Debug, Parser)]
#[command(
    name = "duellsync-demo",
    about = "Runs the whole sync engine against simulators"
)]
struct Args {
    /// Products in the simulated DUELL catalogue.
    #[arg(long, default_value_t = 2000)]
    products: usize,
    /// Seed of the simulated catalogue.
    #[arg(long, default_value_t = 7)]
    seed: u64,
    /// Exit after the scenario instead of running until Ctrl-C.
    #[arg(long)]
    once: bool,
}

fn say(line: &str) {
    println!("{line}");
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    say(&format!(
        "▶ starting NATS, a DUELL simulator with {} products and an empty WooCommerce simulator",
        args.products
    ));
    let ingest_port = free_port();
    let mut world = World::with(
        DuellConfig {
            products: args.products,
            seed: args.seed,
            ..DuellConfig::default()
        },
        // A Norwegian shop (NOK, MVA 25/15/12/0 %) that enters prices without tax: the engine
        // converts every price and picks each product's tax class.
        WooConfig {
            settings: duellsync_woo_sim::Settings {
                prices_include_tax: false,
                ..duellsync_woo_sim::Settings::norway()
            },
            ..WooConfig::default()
        },
        &[
            "poll_interval = \"2s\"",
            "stock_poll_interval = \"2s\"",
            "reconcile_interval = \"10m\"",
        ],
        "",
    )
    .await;
    world.store.webhook_delivery_url =
        format!("http://127.0.0.1:{ingest_port}/webhooks/woocommerce/s1");
    world.sandbox.write_store("s1", &world.store.to_toml());
    say(&format!(
        "  DUELL simulator:       {}",
        world.duell.base_url()
    ));
    say(&format!(
        "  WooCommerce simulator: {}",
        world.woo.base_url()
    ));
    say(&format!(
        "  NATS:                  {}",
        world.sandbox.nats.url()
    ));
    say(&format!(
        "  service logs:          {}",
        world.sandbox.dir().join("logs").display()
    ));

    say("▶ starting webhook-ingest, change-poller, catalog-publisher, order-importer, status-writeback");
    let listen = format!("127.0.0.1:{ingest_port}");
    world.sandbox.start(
        "webhook-ingest",
        &[("DUELLSYNC_INGEST__LISTEN", listen.as_str())],
    );
    for s in [
        "change-poller",
        "catalog-publisher",
        "order-importer",
        "status-writeback",
    ] {
        world.sandbox.start(s, &[]);
    }
    for s in duellsync_test_support::sandbox::SERVICES {
        world.sandbox.wait_ready(s, Duration::from_secs(120));
    }

    // The console, with an operator login made up for this run.
    let console_port = free_port();
    let console_listen = format!("127.0.0.1:{console_port}");
    let password = format!("demo-{:016x}", rand::random::<u64>());
    let hash = console_password_hash(&password)?;
    world.sandbox.start(
        "console",
        &[
            ("DUELLSYNC_CONSOLE__LISTEN", console_listen.as_str()),
            ("DUELLSYNC_CONSOLE__OPERATOR_PASSWORD_HASH", hash.as_str()),
            (
                "DUELLSYNC_CONSOLE__PUBLIC_URL",
                &format!("http://{console_listen}"),
            ),
        ],
    );
    world.sandbox.wait_ready("console", Duration::from_secs(60));
    say(&format!(
        "  console:               http://{console_listen}/  (operator / {password})"
    ));

    let bus = Bus::connect(BusOptions::new(world.sandbox.nats.url(), "demo")).await?;
    let stop = CancellationToken::new();
    let mut log = bus.follow("SYNC", "sync.s1.>", 1, stop.clone());

    // 1. The initial sync.
    let visible = world
        .duell
        .products()
        .iter()
        .filter(|p| p.view_on_webshop && !p.is_deleted)
        .count() as u64;
    say(&format!(
        "▶ initial sync: {visible} DUELL products are shown in the web shop"
    ));
    let bar = ProgressBar::new(visible);
    bar.set_style(
        ProgressStyle::with_template(
            "  {bar:40.cyan/blue} {pos:>6}/{len} products in WooCommerce  {elapsed_precise}  {msg}",
        )?
        .progress_chars("█▉▊▋▌▍▎▏ "),
    );
    let started = Instant::now();
    let mut created = 0u64;
    let mut failed: BTreeMap<String, u64> = BTreeMap::new();
    let mut settled = Instant::now();
    loop {
        let next = tokio::time::timeout(Duration::from_secs(5), log.recv()).await;
        match next {
            Ok(Some(m)) => {
                settled = Instant::now();
                match event_name_for_subject(&m.subject) {
                    Some("ProductApplied") => {
                        let ev = v1::ProductApplied::decode(m.payload.as_ref())?;
                        if ev.action == v1::product_applied::Action::Created as i32
                            || ev.action == v1::product_applied::Action::Linked as i32
                        {
                            created += 1;
                            bar.set_position(created.min(visible));
                        }
                    }
                    Some("ProductFailed") => {
                        let ev = v1::ProductFailed::decode(m.payload.as_ref())?;
                        *failed.entry(ev.code).or_default() += 1;
                        bar.set_message(format!("{} not written", failed.values().sum::<u64>()));
                    }
                    _ => {}
                }
            }
            Ok(None) => break,
            Err(_) if settled.elapsed() > Duration::from_secs(5) && created > 0 => break,
            Err(_) => {}
        }
    }
    bar.finish();
    say(&format!(
        "  ✔ {created} products and variations created in {:.1} s; WooCommerce got {} product batch writes and {} variation batch writes (variations go per variable product)",
        started.elapsed().as_secs_f64(),
        world.woo.request_count("POST products/batch"),
        world.woo.request_count("POST products/{id}/variations/batch")
    ));
    for (code, n) in &failed {
        say(&format!(
            "  ✖ {n} products not written ({code}) — DUELL numbers are not unique; see `syncctl log --failed`"
        ));
    }

    // 2. Live changes.
    let simple = world
        .duell
        .products()
        .into_iter()
        .find(|p| p.view_on_webshop && !p.is_deleted && !p.is_parent && p.parent_variant == 0)
        .ok_or_else(|| anyhow::anyhow!("no simple product in the catalogue"))?;
    let sku = simple.product_number.clone();
    let new_price = (simple.price_inc_vat + Decimal::from(50)).round_dp(0);
    say(&format!(
        "▶ DUELL: price of {sku} '{}' {} → {new_price} (VAT incl.)",
        simple.product_name, simple.price_inc_vat
    ));
    let t = Instant::now();
    world.duell.update_product(
        simple.product_id,
        ProductPatch {
            price_inc_vat: Some(new_price),
            ..ProductPatch::default()
        },
    )?;
    let applied = wait_for_event(&mut log, "ProductApplied", |m| {
        v1::ProductApplied::decode(m.payload.as_ref())
            .ok()
            .filter(|e| {
                e.product_id == simple.product_id as i64
                    && e.fields.iter().any(|f| f == "regular_price")
            })
    })
    .await;
    let woo = wait_for_woo(&world, &sku, |_| applied.is_some()).await;
    say(&format!(
        "  ✔ WooCommerce: {sku} regular price {} (this shop enters prices without tax; tax class {}) after {:.2} s",
        woo.as_ref().and_then(|p| p.regular_price).unwrap_or_default(),
        woo.as_ref()
            .map(|p| if p.tax_class.is_empty() { "standard" } else { p.tax_class.as_str() })
            .unwrap_or("?"),
        t.elapsed().as_secs_f64()
    ));

    let stock = world
        .duell
        .stock(STOCK_DEPARTMENT, simple.product_id)
        .physical
        + Decimal::from(7);
    say(&format!("▶ DUELL: stock of {sku} → {stock}"));
    let t = Instant::now();
    world
        .duell
        .set_stock(STOCK_DEPARTMENT, simple.product_id, stock);
    let target = i64::try_from(stock.floor()).unwrap_or(0);
    wait_for_woo(&world, &sku, |p| p.stock_quantity == Some(target)).await;
    say(&format!(
        "  ✔ WooCommerce: {sku} stock {target} after {:.1} s",
        t.elapsed().as_secs_f64()
    ));

    // 3. A web order.
    say(&format!("▶ WooCommerce: a customer buys 2 × {sku}"));
    let t = Instant::now();
    let order_id = world
        .woo
        .place_order(&PlaceOrder {
            lines: vec![PlaceLine {
                sku: Some(sku.clone()),
                quantity: 2,
                ..PlaceLine::default()
            }],
            billing: [
                ("first_name", "Kari"),
                ("last_name", "Nordmann"),
                ("email", "kari@example.no"),
                ("phone", "+47 912 34 567"),
                ("address_1", "Storgata 1"),
                ("city", "Oslo"),
                ("postcode", "0155"),
                ("country", "NO"),
            ]
            .iter()
            .map(|(k, v)| ((*k).to_owned(), Some((*v).to_owned())))
            .collect(),
            ..PlaceOrder::default()
        })
        .map_err(anyhow::Error::msg)?;
    let imported = wait_for_event(&mut log, "OrderImported", |m| {
        v1::OrderImported::decode(m.payload.as_ref())
            .ok()
            .filter(|e| e.woo_order_id == order_id as i64)
    })
    .await;
    match imported {
        Some(ev) => say(&format!(
            "  ✔ DUELL: customer order {} created for web order #{order_id} after {:.1} s (reserves the stock)",
            ev.duell_order_number,
            t.elapsed().as_secs_f64()
        )),
        None => say("  ✖ the order did not reach DUELL; see the order-importer log"),
    }

    // 4. DUELL completes the order.
    if let Some(duell_order) = world
        .duell
        .customer_orders()
        .into_iter()
        .find(|o| o.reference() == order_id.to_string())
    {
        say(&format!(
            "▶ DUELL: order {} packed and completed (status 5 Fullført)",
            duell_order.order_number
        ));
        let t = Instant::now();
        world.duell.set_order_status(duell_order.order_id, 5)?;
        let _ = ORDER_DEPARTMENT;
        let written = wait_for_event(&mut log, "OrderStatusWritten", |m| {
            v1::OrderStatusWritten::decode(m.payload.as_ref())
                .ok()
                .filter(|e| e.woo_order_id == order_id as i64)
        })
        .await;
        match written {
            Some(ev) => say(&format!(
                "  ✔ WooCommerce: web order #{order_id} {} → {} after {:.1} s (the payment is captured now)",
                ev.from_status,
                ev.to_status,
                t.elapsed().as_secs_f64()
            )),
            None => say("  ✖ the status did not reach WooCommerce; see the status-writeback log"),
        }
    }

    if args.once {
        stop.cancel();
        say("▶ done");
        return Ok(());
    }
    say("▶ the services keep running; change data through the simulators' /__sim/ APIs. Ctrl-C stops everything.");
    let _ = tokio::signal::ctrl_c().await;
    stop.cancel();
    Ok(())
}

async fn wait_for_woo(
    world: &World,
    sku: &str,
    done: impl Fn(&duellsync_woo::Product) -> bool,
) -> Option<duellsync_woo::Product> {
    let deadline = Instant::now() + Duration::from_secs(60);
    while Instant::now() < deadline {
        if let Ok(found) = world.client.find_by_sku(sku).await {
            if let Some(p) = found.into_iter().find(|p| done(p)) {
                return Some(p);
            }
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    None
}

async fn wait_for_event<T>(
    log: &mut tokio::sync::mpsc::Receiver<StoredMessage>,
    name: &str,
    mut pick: impl FnMut(&StoredMessage) -> Option<T>,
) -> Option<T> {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(90);
    loop {
        let m = tokio::time::timeout_at(deadline, log.recv()).await.ok()??;
        if event_name_for_subject(&m.subject) == Some(name) {
            if let Some(v) = pick(&m) {
                return Some(v);
            }
        }
    }
}

/// The argon2id hash of a password, made by the console binary (`console hash-password`).
fn console_password_hash(password: &str) -> anyhow::Result<String> {
    use std::io::Write;
    let mut child = std::process::Command::new(duellsync_test_support::sandbox::binary("console"))
        .arg("hash-password")
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()?;
    child
        .stdin
        .take()
        .expect("stdin is piped")
        .write_all(format!("{password}\n").as_bytes())?;
    let out = child.wait_with_output()?;
    anyhow::ensure!(out.status.success(), "console hash-password failed");
    Ok(String::from_utf8(out.stdout)?.trim().to_owned())
}
