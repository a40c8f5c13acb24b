//! `syncctl status [--store S]`: per store, how far behind each durable consumer is, when each
//! flow last did something, what the sync log counted over a window, what is left to an
//! operator (dead letters, unresolved in-doubt orders, parked orders) and the webhook state.
//!
//! Everything comes from JetStream: consumer info, the last message per sync-log subject,
//! the sync log of the window, the order outcomes of the whole retained log, dead-letter counts.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use duellsync_bus::{Bus, ConsumerState, StartAt};
use duellsync_events::{dlq_subject, v1, Event, ALL_STREAMS, STREAM_DLQ, STREAM_SYNC};
use prost::Message;
use serde_json::{json, Value};

use crate::events::decode_message;
use crate::timefmt::{at_ago, span_ms};
use crate::ui::{table, Tone};
use crate::{check_store_id, parse_duration, Ctx, Outcome};

#[derive(Debug, clap::Args)]
pub struct StatusArgs {
    /// Only this store (default: every store of --stores, or every store the broker knows).
    #[arg(long)]
    store: Option<String>,
    /// The window of the counts.
    #[arg(long, default_value = "24h", value_parser = parse_duration)]
    window: Duration,
}

/// The "last time it worked" of each flow: the newest message of a sync-log subject.
fn flows(store: &str) -> [(&'static str, &'static str, String); 5] {
    [
        (
            "catalogue",
            "last product written",
            v1::ProductApplied::subject(store),
        ),
        (
            "orders",
            "last order imported",
            v1::OrderImported::subject(store),
        ),
        (
            "status",
            "last status written",
            v1::OrderStatusWritten::subject(store),
        ),
        (
            "fullsync",
            "last full sync",
            v1::FullSyncCompleted::subject(store),
        ),
        (
            "webhooks",
            "last webhook check",
            v1::WebhooksEnsured::subject(store),
        ),
    ]
}

struct StoreStatus {
    store: String,
    consumers: Vec<ConsumerState>,
    last: Vec<(
        &'static str,
        &'static str,
        Option<crate::events::Decoded>,
        i64,
    )>,
    counts: BTreeMap<String, u64>,
    failures_in_window: u64,
    dlq: BTreeMap<String, u64>,
    in_doubt_open: Vec<i64>,
    parked_open: Vec<i64>,
    webhooks: Option<(i64, v1::WebhooksEnsured)>,
}

async fn all_consumers(bus: &Bus) -> anyhow::Result<Vec<ConsumerState>> {
    let mut out = Vec::new();
    for s in ALL_STREAMS.iter().filter(|s| s.name != STREAM_DLQ.name) {
        out.extend(bus.consumers(s.name).await?);
    }
    Ok(out)
}

/// Orders whose latest outcome is "in doubt" or "parked" (not imported or skipped since).
async fn open_orders(bus: &Bus, store: &str) -> anyhow::Result<(BTreeSet<i64>, BTreeSet<i64>)> {
    let filters = vec![
        v1::OrderInDoubt::subject(store),
        v1::OrderParked::subject(store),
        v1::OrderImported::subject(store),
        v1::OrderSkipped::subject(store),
    ];
    let mut latest: BTreeMap<i64, &'static str> = BTreeMap::new();
    bus.scan_at(
        STREAM_SYNC.name,
        &filters,
        StartAt::First,
        usize::MAX,
        |m| {
            let d = decode_message(&m);
            if let Some(id) = d.order_id {
                let kind = match d.name.as_str() {
                    "OrderInDoubt" => "in_doubt",
                    "OrderParked" => "parked",
                    _ => "done",
                };
                latest.insert(id, kind);
            }
        },
    )
    .await?;
    let pick = |k: &str| {
        latest
            .iter()
            .filter(|(_, v)| **v == k)
            .map(|(id, _)| *id)
            .collect::<BTreeSet<i64>>()
    };
    Ok((pick("in_doubt"), pick("parked")))
}

/// Order ids of the importer's dead letters still in the DLQ.
async fn dead_lettered_orders(bus: &Bus, store: &str) -> anyhow::Result<BTreeSet<i64>> {
    let mut out = BTreeSet::new();
    bus.scan_at(
        STREAM_DLQ.name,
        &[dlq_subject(store, "order-importer")],
        StartAt::First,
        usize::MAX,
        |m| {
            if let Some(id) = decode_message(&m).order_id {
                out.insert(id);
            }
        },
    )
    .await?;
    Ok(out)
}

async fn store_status(
    bus: &Bus,
    store: &str,
    consumers: &[ConsumerState],
    window: Duration,
) -> anyhow::Result<StoreStatus> {
    let now = duellsync_events::now_ms();
    let mut last = Vec::new();
    for (flow, label, subject) in flows(store) {
        let m = bus.last_message(STREAM_SYNC.name, &subject).await?;
        let at = m.as_ref().map(|m| m.published_ms).unwrap_or(0);
        last.push((flow, label, m.as_ref().map(decode_message), at));
    }
    let mut counts: BTreeMap<String, u64> = BTreeMap::new();
    let mut failures_in_window = 0;
    let since = now - i64::try_from(window.as_millis()).unwrap_or(i64::MAX);
    bus.scan_at(
        STREAM_SYNC.name,
        &[format!("sync.{store}.>")],
        StartAt::TimeMs(since),
        usize::MAX,
        |m| {
            let d = decode_message(&m);
            if d.name == v1::FullSyncProgress::NAME {
                return;
            }
            if d.failed {
                failures_in_window += 1;
            }
            let key = match d.name.as_str() {
                "ProductApplied" => format!(
                    "ProductApplied {}",
                    d.fields["action"].as_str().unwrap_or("?")
                ),
                "FullSyncCompleted" if d.failed => "FullSyncCompleted (failed)".into(),
                other => other.to_owned(),
            };
            *counts.entry(key).or_default() += 1;
        },
    )
    .await?;
    let dlq = bus
        .subject_counts(STREAM_DLQ.name, &format!("dlq.{store}.>"))
        .await?
        .into_iter()
        .map(|(s, n)| (s.rsplit('.').next().unwrap_or_default().to_owned(), n))
        .collect();
    let (in_doubt, parked) = open_orders(bus, store).await?;
    // An in-doubt order is open while its dead letter waits for the operator's decision:
    // replaying it imports the order, skipping it records that DUELL has it.
    let lettered = dead_lettered_orders(bus, store).await?;
    let in_doubt_open = in_doubt.intersection(&lettered).copied().collect();
    let webhooks = match bus
        .last_message(STREAM_SYNC.name, &v1::WebhooksEnsured::subject(store))
        .await?
    {
        Some(m) => v1::WebhooksEnsured::decode(m.payload.as_ref())
            .ok()
            .map(|ev| (m.published_ms, ev)),
        None => None,
    };
    Ok(StoreStatus {
        store: store.to_owned(),
        consumers: consumers
            .iter()
            .filter(|c| c.store() == Some(store))
            .cloned()
            .collect(),
        last,
        counts,
        failures_in_window,
        dlq,
        in_doubt_open,
        parked_open: parked.into_iter().collect(),
        webhooks,
    })
}

fn webhook_topics(ev: &v1::WebhooksEnsured) -> Vec<String> {
    duellsync_woo::ORDER_WEBHOOK_TOPICS
        .iter()
        .filter(|t| {
            !ev.created.iter().any(|x| x == *t)
                && !ev.recreated.iter().any(|x| x == *t)
                && !ev.healthy.iter().any(|x| x == *t)
        })
        .map(|t| (*t).to_owned())
        .collect()
}

fn to_json(s: &StoreStatus, window: Duration) -> Value {
    json!({
        "store": s.store,
        "consumers": s.consumers.iter().map(|c| json!({
            "stream": c.stream,
            "name": c.name,
            "lag": c.lag(),
            "pending": c.num_pending,
            "ack_pending": c.num_ack_pending,
            "redelivered": c.num_redelivered,
            "last_active_ms": c.last_active_ms,
        })).collect::<Vec<_>>(),
        "last": s.last.iter().map(|(flow, _, d, at)| (flow.to_string(), json!({
            "at_ms": if *at > 0 { Some(*at) } else { None },
            "event": d.as_ref().map(|d| d.to_json()),
        }))).collect::<serde_json::Map<String, Value>>(),
        "window_secs": window.as_secs(),
        "counts": s.counts,
        "failures_in_window": s.failures_in_window,
        "open_failures": {
            "dlq_depth": s.dlq.values().sum::<u64>(),
            "dlq_by_service": s.dlq,
            "in_doubt_orders": s.in_doubt_open,
            "parked_orders": s.parked_open,
        },
        "webhooks": s.webhooks.as_ref().map(|(at, ev)| json!({
            "checked_at_ms": at,
            "created": ev.created,
            "recreated": ev.recreated,
            "healthy": ev.healthy,
            "not_active": webhook_topics(ev),
        })),
    })
}

fn print(ctx: &Ctx, s: &StoreStatus, window: Duration) {
    let ui = &ctx.ui;
    let now = duellsync_events::now_ms();
    ui.line(ui.paint(Tone::Bold, &format!("Store {}", s.store)));
    if s.consumers.is_empty() {
        ui.line("  consumers: none (no service has served this store on this NATS)");
    } else {
        let rows: Vec<Vec<String>> = s
            .consumers
            .iter()
            .map(|c| {
                vec![
                    c.name.clone(),
                    c.stream.clone(),
                    c.lag().to_string(),
                    c.last_active_ms
                        .map(|t| format!("{} ago", span_ms(now - t)))
                        .unwrap_or_else(|| "-".into()),
                ]
            })
            .collect();
        for l in table(&["CONSUMER", "STREAM", "LAG", "LAST DELIVERY"], &rows) {
            ui.line(format!("  {l}"));
        }
    }
    ui.line("  last activity:");
    for (_, label, d, at) in &s.last {
        let what = d
            .as_ref()
            .map(|d| format!(" — {} {}", d.key, d.what))
            .unwrap_or_default();
        ui.line(format!(
            "    {label:<22} {}{}",
            at_ago(*at, now),
            crate::ui::cut(&what, 90)
        ));
    }
    ui.line(format!(
        "  last {}: {}",
        duellsync_settings::duration::format(window),
        if s.counts.is_empty() {
            "nothing in the sync log".to_owned()
        } else {
            s.counts
                .iter()
                .map(|(k, n)| format!("{k} {n}"))
                .collect::<Vec<_>>()
                .join(", ")
        }
    ));
    let depth: u64 = s.dlq.values().sum();
    let mark = |bad: bool| {
        if bad {
            ui.paint(Tone::Bad, "✖")
        } else {
            ui.paint(Tone::Good, "✔")
        }
    };
    ui.line(format!(
        "  {} dead letters: {depth}{}",
        mark(depth > 0),
        if depth > 0 {
            format!(
                " ({}) — syncctl dlq list --store {}",
                s.dlq
                    .iter()
                    .map(|(k, n)| format!("{k} {n}"))
                    .collect::<Vec<_>>()
                    .join(", "),
                s.store
            )
        } else {
            String::new()
        }
    ));
    let ids = |v: &[i64]| {
        v.iter()
            .map(|i| i.to_string())
            .collect::<Vec<_>>()
            .join(", ")
    };
    ui.line(format!(
        "  {} orders in doubt: {}{}",
        mark(!s.in_doubt_open.is_empty()),
        s.in_doubt_open.len(),
        if s.in_doubt_open.is_empty() {
            String::new()
        } else {
            format!(
                " ({}) — check DUELL, then dlq skip or replay",
                ids(&s.in_doubt_open)
            )
        }
    ));
    ui.line(format!(
        "  {} orders parked: {}{}",
        mark(!s.parked_open.is_empty()),
        s.parked_open.len(),
        if s.parked_open.is_empty() {
            String::new()
        } else {
            format!(" ({})", ids(&s.parked_open))
        }
    ));
    match &s.webhooks {
        Some((at, ev)) => {
            let missing = webhook_topics(ev);
            let detail = format!(
                "healthy [{}], created [{}], recreated [{}]{} — checked {}",
                ev.healthy.join(" "),
                ev.created.join(" "),
                ev.recreated.join(" "),
                if missing.is_empty() {
                    String::new()
                } else {
                    format!(", NOT ACTIVE [{}] (paused?)", missing.join(" "))
                },
                at_ago(*at, now)
            );
            ui.line(format!(
                "  {} webhooks: {detail}",
                mark(!missing.is_empty())
            ));
        }
        None => ui
            .line("  – webhooks: never checked (no webhook_delivery_url, or no change-poller yet)"),
    }
}

/// One store's status as the JSON `syncctl status --json` prints (the console's Status page).
pub async fn store_json(bus: &Bus, store: &str, window: Duration) -> anyhow::Result<Value> {
    let consumers = all_consumers(bus).await?;
    let s = store_status(bus, store, &consumers, window).await?;
    Ok(to_json(&s, window))
}

pub async fn run(ctx: &Ctx, args: StatusArgs) -> anyhow::Result<Outcome> {
    if let Some(s) = &args.store {
        check_store_id(s)?;
    }
    let bus = ctx.bus().await?;
    let consumers = all_consumers(&bus).await?;
    let stores: Vec<String> = match &args.store {
        Some(s) => vec![s.clone()],
        None => match ctx.stores_path() {
            Some(_) => ctx.stores()?.ids().map(str::to_owned).collect(),
            None => consumers
                .iter()
                .filter_map(|c| c.store().map(str::to_owned))
                .collect::<BTreeSet<_>>()
                .into_iter()
                .collect(),
        },
    };
    let mut out = Vec::new();
    for store in &stores {
        out.push(store_status(&bus, store, &consumers, args.window).await?);
    }
    if ctx.ui.json {
        ctx.ui.json_out(&json!({
            "stores": out.iter().map(|s| to_json(s, args.window)).collect::<Vec<_>>(),
        }));
    } else if out.is_empty() {
        ctx.ui
            .line("no stores: give --stores PATH or --store S (no consumers on this NATS yet)");
    } else {
        for s in &out {
            print(ctx, s, args.window);
        }
    }
    Ok(Outcome::Ok)
}
