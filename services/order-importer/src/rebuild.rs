//! Restores a lost import ledger. The ledger is what keeps an order from being imported twice;
//! if it is lost (a new volume, `syncctl state rebuild`, a store moved to another shard), the
//! WOO stream replays every order the store sent in its retention, and without this they would
//! all be imported again.
//!
//! - From the sync log, before any order is taken: the SYNC stream keeps what was imported
//!   (`order.imported`) and what is in doubt (`order.in_doubt`) for 30 days.
//! - From the import markers in WooCommerce, in the background, once per new state: orders
//!   created before the store's oldest sync-log fact that carry `_duell_order_id` are recorded
//!   as imported, so the ledger also knows what is older than the stream (or was imported by
//!   DUELL's own plugin). Every order is read fresh from WooCommerce before a new intent anyway
//!   (see `import`), so an order this scan has not reached yet is still never imported twice;
//!   the scan makes the ledger complete (stock holds, `syncctl explain`).

use std::time::Duration;

use duellsync_events::{v1, Event, STREAM_SYNC};
use duellsync_orders::ledger::{InDoubt, Origin, Progress};
use duellsync_orders::{Attempt, ImportPlan, Marker};
use duellsync_store::Commit;
use duellsync_woo::{format_gmt_cursor, OrderBy, OrderQuery, SortOrder};
use prost::Message;
use rust_decimal::Decimal;
use time::OffsetDateTime;
use tokio_util::sync::CancellationToken;

use crate::state::{Imported, Operation, PlannedLine, Stage};
use crate::StoreCtx;

/// Row of `Tables::marks` set once the marker scan of the current state is complete.
pub(crate) const MARKERS_RESTORED: &str = "markers_restored";

/// Adds ledger entries for imported and in-doubt orders the ledger does not know. Returns how
/// many were restored.
pub(crate) async fn restore_from_sync_log(ctx: &StoreCtx) -> anyhow::Result<usize> {
    let store = ctx.id().to_owned();
    let mut restored = 0;
    for subject in [
        v1::OrderImported::subject(&store),
        v1::OrderInDoubt::subject(&store),
    ] {
        let mut next = 1u64;
        loop {
            let page = ctx.bus.read(STREAM_SYNC.name, &subject, next, 1000).await?;
            let Some(last) = page.last() else { break };
            next = last.sequence + 1;
            let mut c = Commit::new();
            for m in &page {
                if let Some((id, stage)) = entry(m.payload.as_ref(), &subject, &store) {
                    let key = (store.clone(), id);
                    let mut rec = ctx.t.orders.get(&key)?.unwrap_or_default();
                    // The ledger has its own, richer record: keep it.
                    if matches!(rec.stage, Stage::Imported(_) | Stage::InDoubt(_)) {
                        continue;
                    }
                    rec.stage = stage;
                    ctx.t.orders.put(&mut c, &key, &rec);
                    ctx.t.open.remove(&mut c, &key);
                    restored += 1;
                }
            }
            ctx.state.commit(c).await?;
            if page.len() < 1000 {
                break;
            }
        }
    }
    if restored > 0 {
        tracing::info!(store = %store, restored, "import ledger restored from the sync log");
    }
    Ok(restored)
}

fn operation(kind: i32) -> Operation {
    match v1::order_imported::Kind::try_from(kind) {
        Ok(v1::order_imported::Kind::SalesOrder) => Operation::SalesOrder,
        Ok(v1::order_imported::Kind::StockOnly) => Operation::AdjustStock,
        _ => Operation::CustomerOrder,
    }
}

fn entry(payload: &[u8], subject: &str, store: &str) -> Option<(i64, Stage)> {
    if subject == v1::OrderImported::subject(store) {
        let ev = v1::OrderImported::decode(payload).ok()?;
        let at = ev.meta.as_ref().map(|m| m.observed_at_ms).unwrap_or(0);
        let lines = ev
            .lines
            .iter()
            .map(|l| PlannedLine {
                key: String::new(),
                duell_product_id: l.duell_product_id,
                product_number: l.product_number.clone(),
                woo_product_id: l.woo_product_id,
                sku: l.sku.clone(),
                name: String::new(),
                quantity: l.quantity.parse().unwrap_or(Decimal::ZERO),
                price_ex_vat: Decimal::ZERO,
                price_inc_vat: Decimal::ZERO,
                vat_rate: Decimal::ZERO,
                discount_inc_vat: None,
                comments: String::new(),
                product_line: true,
            })
            .collect();
        let stage = Stage::Imported(Imported {
            operation: operation(ev.kind),
            duell_order_id: ev.duell_order_id,
            duell_order_number: ev.duell_order_number.clone(),
            customer_id: ev.duell_customer_id,
            woo_number: ev.woo_number.clone(),
            total: ev.total.clone(),
            lines,
            remarks: Vec::new(),
            origin: if ev.recovered_by_lookup {
                Origin::Lookup
            } else {
                Origin::SyncLog
            },
            attempt_id: String::new(),
            effective_at_ms: at,
            refused: None,
            // Everything that followed the import was done when the log was written; a
            // restored entry must not redo it. The marker may predate this version: the next
            // trigger of the order writes it (meta only).
            progress: Progress {
                marked: false,
                hold_released: false,
                ..Progress::all_done()
            },
        });
        Some((ev.woo_order_id, stage))
    } else {
        let ev = v1::OrderInDoubt::decode(payload).ok()?;
        let at = ev.meta.as_ref().map(|m| m.observed_at_ms).unwrap_or(0);
        let op = Operation::parse(&ev.operation).unwrap_or(Operation::CustomerOrder);
        let stage = Stage::InDoubt(InDoubt {
            attempt: Attempt {
                id: ev.attempt_id.clone(),
                started_ms: at,
                plan: ImportPlan {
                    operation: op,
                    customer_id: 0,
                    woo_number: String::new(),
                    total: String::new(),
                    lines: Vec::new(),
                    remarks: Vec::new(),
                },
            },
            detail: format!("restored from the sync log: {}", ev.detail),
            at_ms: at,
            dlq_event_id: None,
            announced: true,
        });
        Some((ev.woo_order_id, stage))
    }
}

/// The ledger entry an import marker stands for.
fn marked(m: Marker, now_ms: i64) -> Stage {
    Stage::Imported(Imported {
        operation: m.operation,
        duell_order_id: m.duell_order_id,
        duell_order_number: m.duell_order_number,
        customer_id: 0,
        woo_number: String::new(),
        total: String::new(),
        lines: Vec::new(),
        remarks: Vec::new(),
        origin: Origin::Marker,
        attempt_id: String::new(),
        effective_at_ms: now_ms,
        refused: None,
        progress: Progress::all_done(),
    })
}

/// When the store's oldest fact in the sync log was stored: orders created after it that were
/// imported are in the log.
async fn sync_log_start(ctx: &StoreCtx) -> anyhow::Result<Option<OffsetDateTime>> {
    let first = ctx
        .bus
        .read(STREAM_SYNC.name, &format!("sync.{}.>", ctx.id()), 1, 1)
        .await?;
    Ok(first.first().and_then(|m| {
        OffsetDateTime::from_unix_timestamp_nanos(i128::from(m.published_ms) * 1_000_000).ok()
    }))
}

/// One pass over the store's orders older than the sync log (id order, `_fields=id,meta_data`),
/// recording every marked order the ledger does not know. Returns how many were recorded.
pub(crate) async fn restore_from_markers(ctx: &StoreCtx) -> anyhow::Result<usize> {
    let mark = (ctx.id().to_owned(), MARKERS_RESTORED.to_owned());
    if ctx.t.marks.get(&mark)?.is_some() {
        return Ok(0);
    }
    // A day of margin: store clocks and ours differ, and repeating an order costs nothing.
    let before = sync_log_start(ctx)
        .await?
        .map(|t| t + time::Duration::days(1));
    let after = ctx
        .settings
        .orders_from_unix()
        .and_then(|t| OffsetDateTime::from_unix_timestamp(t).ok());
    let mut extra = vec![("dates_are_gmt".to_owned(), "true".to_owned())];
    if let Some(b) = before {
        extra.push(("before".into(), format_gmt_cursor(b)));
    }
    if let Some(a) = after {
        extra.push(("after".into(), format_gmt_cursor(a)));
    }
    let mut restored = 0;
    let mut page = 1u32;
    loop {
        let list = ctx
            .woo
            .list_orders(&OrderQuery {
                orderby: Some(OrderBy::Id),
                order: Some(SortOrder::Desc),
                per_page: Some(100),
                page: Some(page),
                fields: vec!["id".into(), "meta_data".into()],
                extra: extra.clone(),
                ..OrderQuery::default()
            })
            .await?;
        let n = list.items.len();
        for o in list.items {
            let (Some(m), Ok(id)) = (Marker::read(&o.meta_data), i64::try_from(o.id)) else {
                continue;
            };
            let _guard = ctx.locks.lock(id).await;
            let key = ctx.key(id);
            let mut rec = ctx.t.orders.get(&key)?.unwrap_or_default();
            if !matches!(rec.stage, Stage::Pending | Stage::Parked(_)) {
                continue;
            }
            let was_parked = matches!(rec.stage, Stage::Parked(_));
            rec.stage = marked(m, duellsync_events::now_ms());
            let mut c = Commit::new();
            ctx.t.orders.put(&mut c, &key, &rec);
            ctx.t.bodies.remove(&mut c, &key);
            if was_parked {
                ctx.t.parked.remove(&mut c, &key);
            }
            ctx.state.commit_unflushed(c).await?;
            restored += 1;
        }
        if n < 100 || list.total_pages.is_some_and(|tp| u64::from(page) >= tp) {
            break;
        }
        page += 1;
    }
    let mut c = Commit::new();
    ctx.t.marks.put(&mut c, &mark, &duellsync_events::now_ms());
    ctx.state.commit(c).await?;
    tracing::info!(store = %ctx.id(), restored, "import ledger completed from the import markers in WooCommerce");
    Ok(restored)
}

/// Runs [`restore_from_markers`] until it completes (WooCommerce may be down for a while).
pub(crate) async fn restore_from_markers_in_background(ctx: StoreCtx, stop: CancellationToken) {
    let mut wait = Duration::from_secs(5);
    loop {
        let run = tokio::select! {
            _ = stop.cancelled() => return,
            r = restore_from_markers(&ctx) => r,
        };
        match run {
            Ok(_) => return,
            Err(e) => {
                tracing::warn!(store = %ctx.id(), error = %format!("{e:#}"), retry_in = ?wait, "cannot read the import markers from WooCommerce yet");
            }
        }
        tokio::select! {
            _ = stop.cancelled() => return,
            _ = tokio::time::sleep(wait) => {}
        }
        wait = (wait * 2).min(Duration::from_secs(600));
    }
}
