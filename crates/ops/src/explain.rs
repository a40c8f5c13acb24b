//! `syncctl explain --store S <sku|order-id>`: the chain of events and outside writes that made
//! a product or an order what it is, read from the streams.
//!
//! A SKU is resolved to DUELL product ids through the facts that carry it
//! (`duell.<s>.product.observed`/`withdrawn`, `sync.<s>.product.applied`/`failed`). Then every
//! event of the store in DUELL, WOO, SYNC, CMD and DLQ whose correlation id is
//! `product:<s>:<id>` (or `order:<s>:<id>`) is collected, in time order, with its causation
//! link. For a product, the stock holds of web orders on it are shown too: they are why its
//! WooCommerce stock is below DUELL's. An argument that is a number is tried as a SKU and as
//! an order id; `--sku`, `--order`, `--product` say which.

use std::collections::{BTreeMap, BTreeSet};

use duellsync_bus::{Bus, StartAt, StoredMessage};
use duellsync_events::{
    headers, v1, Event, STREAM_CMD, STREAM_DLQ, STREAM_DUELL, STREAM_SYNC, STREAM_WOO,
};
use prost::Message;
use serde_json::{json, Value};

use crate::events::{decode_message, Decoded};
use crate::timefmt::at;
use crate::ui::{cut, Tone};
use crate::{check_store_id, usage, Ctx, Outcome};

#[derive(Debug, clap::Args)]
pub struct ExplainArgs {
    /// The store.
    #[arg(long)]
    store: String,
    /// A SKU (DUELL product number) or a WooCommerce order id.
    target: String,
    /// The argument is a SKU.
    #[arg(long, conflicts_with_all = ["order", "product"])]
    sku: bool,
    /// The argument is a WooCommerce order id.
    #[arg(long, conflicts_with_all = ["sku", "product"])]
    order: bool,
    /// The argument is a DUELL product id.
    #[arg(long, conflicts_with_all = ["sku", "order"])]
    product: bool,
}

/// Any event's `Meta`, field 1 of every event: enough to pick the chain without decoding all.
#[derive(Clone, PartialEq, Message)]
struct Envelope {
    #[prost(message, optional, tag = "1")]
    meta: Option<duellsync_events::Meta>,
}

struct Found {
    msg: StoredMessage,
    d: Decoded,
    /// Held stock of a web order on the product (not in the product's own correlation).
    related: bool,
}

impl Found {
    fn time(&self) -> i64 {
        if self.d.meta.observed_at_ms > 0 {
            self.d.meta.observed_at_ms
        } else {
            self.msg.published_ms
        }
    }
}

/// DUELL product ids whose number (the WooCommerce SKU) is `sku`, case-insensitive.
async fn resolve_sku(bus: &Bus, store: &str, sku: &str) -> anyhow::Result<BTreeSet<i64>> {
    let mut ids = BTreeSet::new();
    let mut visit = |m: StoredMessage| {
        let d = decode_message(&m);
        if let (Some(id), Some(s)) = (d.product_id, d.sku.as_deref()) {
            if s.eq_ignore_ascii_case(sku) {
                ids.insert(id);
            }
        }
    };
    bus.scan_at(
        STREAM_DUELL.name,
        &[
            v1::ProductObserved::subject(store),
            v1::ProductWithdrawn::subject(store),
        ],
        StartAt::First,
        usize::MAX,
        &mut visit,
    )
    .await?;
    bus.scan_at(
        STREAM_SYNC.name,
        &[
            v1::ProductApplied::subject(store),
            v1::ProductFailed::subject(store),
        ],
        StartAt::First,
        usize::MAX,
        &mut visit,
    )
    .await?;
    Ok(ids)
}

fn holds_product(d: &Decoded, products: &BTreeSet<i64>) -> bool {
    d.name == v1::StockHoldChanged::NAME
        && d.fields["lines"].as_array().is_some_and(|lines| {
            lines.iter().any(|l| {
                l["duell_product_id"]
                    .as_i64()
                    .is_some_and(|id| products.contains(&id))
            })
        })
}

async fn collect(
    ctx: &Ctx,
    bus: &Bus,
    store: &str,
    correlations: &BTreeSet<String>,
    products: &BTreeSet<i64>,
) -> anyhow::Result<Vec<Found>> {
    let mut found = Vec::new();
    let spinner = ctx.ui.spinner("reading the streams");
    for (stream, source) in [
        (&STREAM_DUELL, "duell"),
        (&STREAM_WOO, "woo"),
        (&STREAM_SYNC, "sync"),
        (&STREAM_CMD, "cmd"),
        (&STREAM_DLQ, "dlq"),
    ] {
        bus.scan_at(
            stream.name,
            &[format!("{source}.{store}.>")],
            StartAt::First,
            usize::MAX,
            |m| {
                spinner.inc(1);
                let correlation = Envelope::decode(m.payload.as_ref())
                    .ok()
                    .and_then(|e| e.meta)
                    .map(|m| m.correlation_id)
                    .unwrap_or_default();
                let own = correlations.contains(&correlation);
                let maybe_hold = !own
                    && !products.is_empty()
                    && m.subject == v1::StockHoldChanged::subject(store);
                if !own && !maybe_hold {
                    return;
                }
                let d = decode_message(&m);
                if own || holds_product(&d, products) {
                    found.push(Found {
                        msg: m,
                        d,
                        related: !own,
                    });
                }
            },
        )
        .await?;
    }
    spinner.finish_and_clear();
    // A dead letter carries its original's meta (and time): it goes right after it.
    found.sort_by_key(|f| {
        (
            f.time(),
            f.msg.stream == STREAM_DLQ.name,
            f.msg.published_ms,
            f.msg.sequence,
        )
    });
    Ok(found)
}

fn short(id: &str) -> String {
    id.chars().take(8).collect()
}

fn to_json(f: &Found) -> Value {
    let mut v = f.d.to_json();
    v["stream"] = json!(f.msg.stream);
    v["seq"] = json!(f.msg.sequence);
    v["subject"] = json!(f.msg.subject);
    v["time_ms"] = json!(f.time());
    v["related"] = json!(f.related);
    v["caused_by"] = json!(f.d.caused_by);
    if f.msg.stream == STREAM_DLQ.name {
        v["dead_letter"] = json!({
            "reason": f.msg.header(headers::DLQ_REASON),
            "subject": f.msg.header(headers::DLQ_SUBJECT),
            "deliveries": f.msg.header(headers::DLQ_DELIVERIES),
        });
    }
    v
}

fn print(ctx: &Ctx, title: &str, found: &[&Found]) {
    let ui = &ctx.ui;
    ui.line(ui.paint(Tone::Bold, title));
    let names: BTreeMap<&str, &str> = found
        .iter()
        .map(|f| (f.d.meta.event_id.as_str(), f.d.name.as_str()))
        .collect();
    let link = |id: &str| match names.get(id) {
        Some(n) => format!("{} ({n})", short(id)),
        None => short(id),
    };
    for f in found {
        let dead = f.msg.stream == STREAM_DLQ.name;
        let kind = if dead {
            ui.paint(Tone::Bad, &format!("{:<20}", format!("✖ {}", f.d.name)))
        } else if f.d.failed {
            ui.paint(Tone::Bad, &format!("{:<20}", f.d.name))
        } else {
            format!("{:<20}", f.d.name)
        };
        let mut line = format!(
            "  {}  {:<5}  {kind}  {}",
            at(f.time()),
            f.msg.stream,
            cut(&f.d.what, 90)
        );
        if let Some(to) = f.d.outside_write {
            line.push_str(&ui.paint(Tone::Good, &format!("  → {to}")));
        }
        if f.related {
            line.push_str(&format!("  [{}]", f.d.key));
        }
        if !f.d.meta.event_id.is_empty() {
            line.push_str(&ui.paint(Tone::Dim, &format!("  #{}", short(&f.d.meta.event_id))));
        }
        let mut causes: Vec<String> = Vec::new();
        if !f.d.meta.causation_id.is_empty() {
            causes.push(link(&f.d.meta.causation_id));
        }
        for c in &f.d.caused_by {
            if *c != f.d.meta.causation_id {
                causes.push(link(c));
            }
        }
        if !causes.is_empty() {
            line.push_str(&ui.paint(Tone::Dim, &format!(" ← {}", causes.join(", "))));
        }
        ui.line(line);
        if !f.d.reason.is_empty() {
            ui.line(format!("      why: {}", cut(&f.d.reason, 200)));
        }
        if dead {
            ui.line(format!(
                "      dead letter (dlq seq {}): {}",
                f.msg.sequence,
                cut(f.msg.header(headers::DLQ_REASON).unwrap_or(""), 200)
            ));
        }
    }
}

pub async fn run(ctx: &Ctx, args: ExplainArgs) -> anyhow::Result<Outcome> {
    check_store_id(&args.store)?;
    let target = args.target.trim();
    if target.is_empty() {
        return Err(usage("name a SKU or an order id"));
    }
    let numeric = target.parse::<i64>().ok().filter(|n| *n > 0);
    if (args.order || args.product) && numeric.is_none() {
        return Err(usage(format!("`{target}` is not a positive id")));
    }
    let store = args.store.as_str();
    let bus = ctx.bus().await?;
    let mut products: BTreeSet<i64> = BTreeSet::new();
    if args.product {
        products.extend(numeric);
    } else if !args.order {
        products = resolve_sku(&bus, store, target).await?;
    }
    let order = if args.order || (!args.sku && !args.product) {
        numeric
    } else {
        None
    };
    let mut correlations: BTreeSet<String> = products
        .iter()
        .map(|id| duellsync_events::product_correlation(store, *id))
        .collect();
    if let Some(o) = order {
        correlations.insert(duellsync_events::order_correlation(store, o));
    }
    if correlations.is_empty() {
        if ctx.ui.json {
            ctx.ui.json_out(&json!({"store": store, "target": target, "product_ids": [], "order_id": null, "chains": []}));
        } else {
            ctx.ui.line(format!(
                "no product with SKU `{target}` in store {store}'s streams (they keep 30 days)"
            ));
        }
        return Ok(Outcome::Failed);
    }
    let found = collect(ctx, &bus, store, &correlations, &products).await?;
    // One chain per product and one for the order, each in time order.
    let mut chains: Vec<(String, String, Vec<&Found>)> = Vec::new();
    for id in &products {
        let corr = duellsync_events::product_correlation(store, *id);
        let events: Vec<&Found> = found
            .iter()
            .filter(|f| {
                f.d.meta.correlation_id == corr
                    || (f.related && holds_product(&f.d, &BTreeSet::from([*id])))
            })
            .collect();
        let title = match found
            .iter()
            .find(|f| f.d.meta.correlation_id == corr && f.d.sku.is_some())
            .and_then(|f| f.d.sku.clone())
        {
            Some(sku) => format!("product {id} SKU {sku}"),
            None => format!("product {id}"),
        };
        chains.push((corr, title, events));
    }
    if let Some(o) = order {
        let corr = duellsync_events::order_correlation(store, o);
        let events: Vec<&Found> = found
            .iter()
            .filter(|f| f.d.meta.correlation_id == corr)
            .collect();
        if !events.is_empty() || products.is_empty() {
            chains.push((corr, format!("order {o}"), events));
        }
    }
    let any = chains.iter().any(|(_, _, e)| !e.is_empty());
    if ctx.ui.json {
        ctx.ui.json_out(&json!({
            "store": store,
            "target": target,
            "product_ids": products,
            "order_id": order,
            "chains": chains.iter().map(|(corr, title, events)| json!({
                "correlation_id": corr,
                "title": title,
                "events": events.iter().map(|f| to_json(f)).collect::<Vec<_>>(),
            })).collect::<Vec<_>>(),
        }));
    } else if !any {
        ctx.ui.line(format!(
            "nothing found for `{target}` in store {store}'s streams (no product with that SKU, no order with that id; the streams keep 30 days)"
        ));
    } else {
        for (_, title, events) in &chains {
            if events.is_empty() {
                continue;
            }
            print(
                ctx,
                &format!("{title} (store {store}): {} events", events.len()),
                events,
            );
        }
    }
    Ok(Outcome::from_ok(any))
}
