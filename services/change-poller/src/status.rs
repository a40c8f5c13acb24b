//! DUELL status of imported customer orders, for status write-back and stock holds.

use std::collections::BTreeSet;

use duellsync_bus::HandleError;
use duellsync_duell::OrderId;
use duellsync_events::{caused_meta, meta, order_correlation, v1, EventId};
use duellsync_store::{Commit, Table};
use serde::{Deserialize, Serialize};
use tokio_util::sync::CancellationToken;
use tracing::Instrument;

use crate::{StoreCtx, SERVICE};

#[derive(Debug, Clone, Serialize, Deserialize)]
struct Watched {
    duell_order_id: i64,
    last_status: i32,
    /// Causation for the first status event.
    imported_event_id: String,
}

fn table(ctx: &StoreCtx) -> Table<(String, i64), Watched> {
    ctx.state.table("poller_watched_orders")
}

/// DUELL statuses after which nothing more happens to an order.
fn final_statuses(ctx: &StoreCtx) -> BTreeSet<i32> {
    let mut s: BTreeSet<i32> = [5, 6, 7, 8].into_iter().collect();
    s.extend(ctx.store.stock.cancelled_statuses.iter().copied());
    for (k, v) in ctx.store.status_map() {
        if matches!(v.as_str(), "completed" | "cancelled" | "refunded") {
            s.insert(k);
        }
    }
    s
}

/// Starts watching an imported customer order.
pub(crate) async fn watch(ctx: &StoreCtx, ev: v1::OrderImported) -> Result<(), HandleError> {
    if ev.kind != v1::order_imported::Kind::CustomerOrder as i32 || ev.duell_order_id <= 0 {
        return Ok(());
    }
    let t = table(ctx);
    let key = (ctx.id().to_owned(), ev.woo_order_id);
    if t.contains(&key).map_err(HandleError::retry)? {
        return Ok(());
    }
    let mut c = Commit::new();
    t.put(
        &mut c,
        &key,
        &Watched {
            duell_order_id: ev.duell_order_id,
            last_status: ctx.store.orders.initial_status,
            imported_event_id: ev.meta.map(|m| m.event_id).unwrap_or_default(),
        },
    );
    ctx.state.commit(c).await.map_err(HandleError::retry)?;
    Ok(())
}

pub(crate) async fn run(ctx: StoreCtx, stop: CancellationToken) -> anyhow::Result<()> {
    let mut tick = tokio::time::interval(ctx.store.poll_interval);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = stop.cancelled() => return Ok(()),
            _ = tick.tick() => {
                let span = tracing::info_span!("poll", otel.name = "order status poll", store = %ctx.id());
                if let Err(e) = poll(&ctx, &stop).instrument(span).await {
                    tracing::warn!(store = %ctx.id(), error = %format!("{e:#}"), "order status poll failed");
                }
                report_dead_letters(&ctx).await;
            }
        }
    }
}

/// Dead letters waiting for a person, per service, as a gauge (the poller runs once per store,
/// so the figure is reported exactly once).
async fn report_dead_letters(ctx: &StoreCtx) {
    let filter = format!("dlq.{}.>", ctx.id());
    match ctx.bus.subject_counts("DLQ", &filter).await {
        Ok(counts) => {
            for service in [
                "catalog-publisher",
                "order-importer",
                "status-writeback",
                "change-poller",
            ] {
                let subject = duellsync_events::dlq_subject(ctx.id(), service);
                let n = counts.get(&subject).copied().unwrap_or(0);
                metrics::gauge!("duellsync_dlq_depth_messages", "store" => ctx.id().to_owned(), "service" => service)
                    .set(n as f64);
            }
        }
        Err(e) => tracing::debug!(store = %ctx.id(), error = %e, "cannot count dead letters"),
    }
}

async fn poll(ctx: &StoreCtx, stop: &CancellationToken) -> anyhow::Result<()> {
    let t = table(ctx);
    let finals = final_statuses(ctx);
    let watched: Vec<((String, i64), Watched)> =
        t.iter_group(ctx.id()).collect::<Result<_, _>>()?;
    for batch in watched.chunks(ctx.config.status_batch.max(1)) {
        if stop.is_cancelled() {
            return Ok(());
        }
        for ((_, woo_order_id), w) in batch {
            let view = match ctx
                .duell
                .view_customer_order(OrderId(w.duell_order_id as u64))
                .await
            {
                Ok(v) => v,
                Err(e) => {
                    tracing::warn!(store = %ctx.id(), woo_order_id, error = %e, "cannot read DUELL order status");
                    continue;
                }
            };
            let Some(status) = view.order_data.purchase_order_status_id else {
                continue;
            };
            let status = status as i32;
            if status == w.last_status {
                continue;
            }
            let id = EventId::new("order-status-observed", ctx.id())
                .int(w.duell_order_id)
                .int(w.last_status as i64)
                .int(status as i64)
                .finish();
            let correlation = order_correlation(ctx.id(), *woo_order_id);
            let m = if w.imported_event_id.is_empty() {
                meta(ctx.id(), id, SERVICE, correlation)
            } else {
                let cause = duellsync_events::Meta {
                    store: ctx.id().to_owned(),
                    event_id: w.imported_event_id.clone(),
                    correlation_id: correlation,
                    ..Default::default()
                };
                caused_meta(&cause, id, SERVICE)
            };
            ctx.bus
                .publish(&v1::OrderStatusObserved {
                    meta: Some(m),
                    woo_order_id: *woo_order_id,
                    duell_order_id: w.duell_order_id,
                    status_id: status,
                    previous_status_id: w.last_status,
                })
                .await?;
            let mut c = Commit::new();
            let key = (ctx.id().to_owned(), *woo_order_id);
            if finals.contains(&status) {
                t.remove(&mut c, &key);
            } else {
                t.put(
                    &mut c,
                    &key,
                    &Watched {
                        last_status: status,
                        ..w.clone()
                    },
                );
            }
            ctx.state.commit(c).await?;
        }
        tokio::time::sleep(ctx.config.status_batch_pause).await;
    }
    Ok(())
}
