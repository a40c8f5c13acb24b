//! The call ceiling of the order import (issue 14 §4): one process that makes exactly the DUELL
//! and WooCommerce calls the importer makes per order in steady state — read the order, save the
//! customer order, add the note, write the import marker; the buyer and the products of the lines
//! are looked up once, as the importer reuses what a look-up found (`importer.lookup_cache_ttl`) —
//! through the same clients, against the same simulators, with no broker and no state. What the
//! importer reaches of this rate is what its bookkeeping (ledger, flushes, events, acks) costs.
//!
//! It runs as its own process (`duellsync-bench call-ceiling`), like the importer and on the same
//! kind of runtime (one thread), so that the runtime's own cost is on both sides: it builds its
//! clients, imports the warm-up orders, prints `ready`, waits for `go` on stdin, imports the
//! timed orders and prints `done`. The bench times `go` → `done` and reads the process's CPU time.

use std::io::{BufRead, Write};
use std::path::PathBuf;
use std::process::{Child, ChildStdin, ChildStdout, Command, Stdio};
use std::sync::Arc;

use anyhow::Context;
use duellsync_duell::{Address, CustomerId, DuellClient, NewOrder, OrderLine, ProductId};
use duellsync_orders::{
    map_lines, taxes_computed_in_json, LineSource, MapOptions, Marker, Operation,
};
use duellsync_woo::{Idempotency, Method, WooClient, WooRequest};
use futures::StreamExt;

/// What the process needs: the store file (as the importer reads it) and the orders.
#[derive(Debug, Clone, clap::Args)]
pub struct CeilingArgs {
    /// Directory of store files (`s1.toml`).
    #[arg(long)]
    stores: PathBuf,
    /// WooCommerce order ids to import before `go`.
    #[arg(long, value_delimiter = ',')]
    warm: Vec<u64>,
    /// File with the WooCommerce order ids to import after `go`, one per line.
    #[arg(long)]
    orders: PathBuf,
    /// Orders in flight (the importer's `importer.concurrency`).
    #[arg(long, default_value_t = 4)]
    concurrency: usize,
}

struct Clients {
    woo: WooClient,
    duell: DuellClient,
    department: duellsync_duell::DepartmentToken,
    /// The DUELL customer of the orders (the importer knows it after the first order).
    customer: u64,
    /// The SHIPPING and FEE products (found once, as the importer remembers them).
    shipping: u64,
    fee: u64,
    /// Every order's body, read before the clock starts (the importer's comes in the message).
    bodies: std::collections::HashMap<u64, Vec<u8>>,
    /// Products found by SKU (the importer reuses a found answer for the next orders).
    products: std::sync::Mutex<std::collections::HashMap<String, u64>>,
}

/// One order, the importer's calls in the importer's order.
async fn import(c: &Clients, id: u64) -> anyhow::Result<()> {
    // The fresh read before the intent (marker, status), trimmed as the importer trims it.
    let fresh = c
        .woo
        .get_order_fields(
            id,
            &[
                "id",
                "number",
                "status",
                "date_created_gmt",
                "date_modified_gmt",
                "meta_data",
            ],
        )
        .await?;
    if Marker::read(&fresh.meta_data).is_some() {
        return Ok(());
    }
    // The importer plans from the observation's body (the webhook's), which this process
    // does not receive: it uses the order it placed, read once before the clock starts.
    // Parsed per order, as the importer parses each message's payload.
    let raw = c.bodies.get(&id).context("order body")?;
    let order: duellsync_woo::Order = serde_json::from_slice(raw)?;
    let opts = MapOptions {
        taxes_computed: taxes_computed_in_json(raw),
        ..MapOptions::default()
    };
    // A returning buyer: the importer looked the customer up by phone for its first order and
    // reuses what it found, as this process uses `c.customer`.
    let mapped = map_lines(&order, &opts).map_err(|e| anyhow::anyhow!("order {id}: {e}"))?;
    let mut lines = Vec::new();
    for m in &mapped {
        let product = match &m.source {
            LineSource::Product { sku, .. } => {
                let sku = sku.clone().unwrap_or_default();
                let known = c
                    .products
                    .lock()
                    .map_err(|_| anyhow::anyhow!("poisoned"))?
                    .get(&sku)
                    .copied();
                match known {
                    Some(id) => id,
                    None => {
                        let found = c.duell.find_products_by_number(&sku).await?;
                        let id = found
                            .iter()
                            .map(|p| p.product_id.0)
                            .min()
                            .with_context(|| format!("no DUELL product {sku}"))?;
                        c.products
                            .lock()
                            .map_err(|_| anyhow::anyhow!("poisoned"))?
                            .insert(sku, id);
                        id
                    }
                }
            }
            LineSource::Shipping { .. } => c.shipping,
            LineSource::Fee { .. } => c.fee,
        };
        lines.push(OrderLine {
            key: m.key.clone(),
            entity_type: "product".into(),
            product_id: ProductId(product),
            price_ex_vat: m.price_ex_vat,
            price_inc_vat: m.price_inc_vat,
            quantity: m.quantity,
            vatrate_percent: m.vat_rate,
            discount_amount: m.discount_inc_vat,
            comments: m.comments.clone(),
        });
    }
    let address = |a: &duellsync_woo::Address| Address {
        address: a.address_1.clone(),
        city: a.city.clone(),
        zip: a.postcode.clone(),
        country: a.country.clone(),
    };
    let request = NewOrder {
        key: id.to_string(),
        customer_id: CustomerId(c.customer),
        reference_order_number: id.to_string(),
        reference_comment: format!("Ordre {id}"),
        comments: format!("Ordre {id}"),
        order_date: order.date_created.unwrap_or(time::PrimitiveDateTime::MIN),
        round_off_amount: rust_decimal::Decimal::ZERO,
        order_address: Some(address(&order.billing)),
        shipping_address: Some(address(&order.billing)),
        purchase_order_status_id: Some(1),
        ref_customer_order_id: None,
        lines,
    };
    let saved = c
        .duell
        .save_customer_orders(&c.department, std::slice::from_ref(&request))
        .await?;
    let row = saved
        .order_for(&id.to_string())
        .context("DUELL answered without the order")?;
    let marker = Marker {
        operation: Operation::CustomerOrder,
        duell_order_id: i64::try_from(row.order_id.0)?,
        duell_order_number: row.order_number.clone(),
    };
    // The importer adds the note while it publishes its events, then writes the marker; with
    // no events here, the two calls go one after the other in that order.
    c.woo
        .add_order_note(
            id,
            &format!("Imported into DUELL as customer order {}", row.order_number),
            false,
        )
        .await?;
    c.woo
        .update_order_meta(id, &marker.meta_data(), None)
        .await?;
    Ok(())
}

async fn import_all(c: &Arc<Clients>, ids: Vec<u64>, concurrency: usize) -> anyhow::Result<()> {
    let mut results = futures::stream::iter(ids)
        .map(|id| {
            let c = c.clone();
            async move { import(&c, id).await }
        })
        .buffer_unordered(concurrency.max(1));
    while let Some(r) = results.next().await {
        r?;
    }
    Ok(())
}

/// The process: clients, warm-up, `ready`, `go`, timed orders, `done`.
pub async fn serve(args: CeilingArgs) -> anyhow::Result<()> {
    duellsync_telemetry::install_crypto_provider();
    let stores = duellsync_settings::load_stores(&args.stores, &[])?;
    let store = stores
        .stores
        .values()
        .next()
        .context("no store file")?
        .clone();
    let woo = duellsync_clients::woo_client(&store).map_err(anyhow::Error::msg)?;
    let duell = duellsync_clients::duell_client(&store).map_err(anyhow::Error::msg)?;
    // The importer knows the orders' customer after the first order: found or created once here.
    let found = duell
        .find_customers_by_email("ada@example.com")
        .await?
        .iter()
        .map(|c| c.customer_id.0)
        .min();
    let customer = match found {
        Some(id) => id,
        None => {
            duell
                .upsert_customer(&duellsync_duell::CustomerInput {
                    customer_id: None,
                    customer_name: "Ada Lovelace".into(),
                    phone: Some("4930000000".into()),
                    email: Some("ada@example.com".into()),
                    primary_address: None,
                    primary_zip: None,
                    city: None,
                })
                .await?
                .0
        }
    };
    let special = |number: String| {
        let duell = duell.clone();
        async move {
            anyhow::Ok(
                duell
                    .find_products_by_number(&number)
                    .await?
                    .iter()
                    .map(|p| p.product_id.0)
                    .min()
                    .unwrap_or(0),
            )
        }
    };
    let shipping = special(store.orders.shipping_product_number.clone()).await?;
    let fee = special(store.orders.fee_product_number.clone()).await?;
    let text = std::fs::read_to_string(&args.orders)?;
    let ids: Vec<u64> = text.lines().filter_map(|l| l.trim().parse().ok()).collect();
    let mut bodies = std::collections::HashMap::new();
    let mut reads = futures::stream::iter(args.warm.iter().chain(ids.iter()).copied())
        .map(|id| {
            let woo = woo.clone();
            async move {
                let req =
                    WooRequest::new(Method::GET, format!("orders/{id}"), Idempotency::Idempotent);
                anyhow::Ok((id, woo.send(req).await?.body))
            }
        })
        .buffer_unordered(16);
    while let Some(r) = reads.next().await {
        let (id, body) = r?;
        bodies.insert(id, serde_json::to_vec(&body)?);
    }
    drop(reads);
    let clients = Arc::new(Clients {
        woo,
        duell,
        department: duellsync_clients::order_department(&store),
        customer,
        shipping,
        fee,
        bodies,
        products: Default::default(),
    });
    import_all(&clients, args.warm.clone(), args.concurrency).await?;
    println!("ready");
    std::io::stdout().flush()?;
    let mut line = String::new();
    std::io::stdin().lock().read_line(&mut line)?;
    import_all(&clients, ids, args.concurrency).await?;
    // Its own CPU time, read before it exits (the bench cannot read it after).
    let cpu = crate::world::cpu_time(std::process::id())
        .map(|d| d.as_millis())
        .unwrap_or(0);
    println!("done {cpu}");
    std::io::stdout().flush()?;
    Ok(())
}

/// The ceiling process, started by the bench.
pub struct Ceiling {
    child: Child,
    stdin: Option<ChildStdin>,
    stdout: std::io::BufReader<ChildStdout>,
}

impl Ceiling {
    /// Starts the process and waits for `ready` (clients built, warm-up orders imported).
    pub async fn start(
        stores: PathBuf,
        warm: &[u64],
        orders: &[u64],
        concurrency: usize,
        dir: &std::path::Path,
    ) -> anyhow::Result<Ceiling> {
        let list = dir.join("ceiling-orders.txt");
        std::fs::write(
            &list,
            orders
                .iter()
                .map(u64::to_string)
                .collect::<Vec<_>>()
                .join("\n"),
        )?;
        let warm = warm
            .iter()
            .map(u64::to_string)
            .collect::<Vec<_>>()
            .join(",");
        tokio::task::spawn_blocking(move || {
            let mut child = Command::new(std::env::current_exe()?)
                .args(["call-ceiling", "--stores"])
                .arg(&stores)
                .args(["--warm", &warm, "--orders"])
                .arg(&list)
                .args(["--concurrency", &concurrency.to_string()])
                .stdin(Stdio::piped())
                .stdout(Stdio::piped())
                .stderr(Stdio::inherit())
                .spawn()
                .context("starting the call ceiling")?;
            let stdin = child.stdin.take();
            let mut stdout =
                std::io::BufReader::new(child.stdout.take().context("ceiling stdout")?);
            let mut line = String::new();
            stdout.read_line(&mut line)?;
            anyhow::ensure!(line.trim() == "ready", "the call ceiling said {line:?}");
            Ok(Ceiling {
                child,
                stdin,
                stdout,
            })
        })
        .await?
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Sends `go`, waits for `done` and returns the process's CPU time by then.
    pub async fn run(self) -> anyhow::Result<std::time::Duration> {
        tokio::task::spawn_blocking(move || {
            let mut me = self;
            let mut stdin = me.stdin.take().context("ceiling stdin")?;
            writeln!(stdin, "go")?;
            stdin.flush()?;
            let mut line = String::new();
            me.stdout.read_line(&mut line)?;
            let cpu_ms = line
                .trim()
                .strip_prefix("done ")
                .and_then(|ms| ms.parse::<u64>().ok())
                .with_context(|| format!("the call ceiling stopped with {line:?}"))?;
            let _ = me.child.wait();
            Ok(std::time::Duration::from_millis(cpu_ms))
        })
        .await?
    }
}

impl Drop for Ceiling {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
