//! Facts from other services that move imported or parked orders:
//!
//! - `OrderStatusObserved` (change-poller): DUELL drew or cancelled an imported customer order,
//!   so its stock hold is released;
//! - `ProductApplied` (catalogue publisher): a WooCommerce product is linked to a DUELL product,
//!   which is how order lines find their DUELL product first;
//! - `ProductApplied` / `ProductObserved`: a product a parked order waits for appeared, so the
//!   order is retried (`OrderRetryRequested`, handled like an observation).
//!
//! Each handler is idempotent by the state it changes (links are upserts, a hold is released
//! once — the order's lifecycle decides that, see `import::duell_released` — a retry is
//! requested once per park), so redeliveries need no ledger.

use duellsync_bus::HandleError;
use duellsync_events::{now_ms, v1, Meta};
use duellsync_orders::lifecycle::Input;
use duellsync_store::Commit;

use crate::events;
use crate::state::{Link, OrderKey, ParkIndex};
use crate::StoreCtx;

fn store_err(e: duellsync_store::Error) -> HandleError {
    HandleError::retry(format!("state store: {e}"))
}

/// Releases the stock hold of an imported customer order once DUELL drew or cancelled it.
pub(crate) async fn on_status(
    ctx: &StoreCtx,
    ev: v1::OrderStatusObserved,
) -> Result<(), HandleError> {
    let stock = &ctx.settings.stock;
    let drawn = stock.drawn_statuses.contains(&ev.status_id);
    let cancelled = stock.cancelled_statuses.contains(&ev.status_id);
    if !drawn && !cancelled {
        return Ok(());
    }
    let woo_order_id = ev.woo_order_id;
    let _guard = ctx.locks.lock(woo_order_id).await;
    let known = ctx
        .t
        .orders
        .get(&ctx.key(woo_order_id))
        .map_err(store_err)?
        .and_then(|r| r.stage.imported().cloned());
    if let Some(imp) = &known {
        if ev.duell_order_id != 0 && ev.duell_order_id != imp.duell_order_id {
            tracing::warn!(store = %ctx.id(), woo_order_id, duell_order_id = ev.duell_order_id, imported = imp.duell_order_id, "status of another DUELL order than the imported one; ignored");
        }
    }
    let cause = events::cause_of(ctx, woo_order_id, ev.meta.as_ref());
    // DUELL changed the status before the poller saw it: stock read after the observation
    // reflects the change.
    let effective_at_ms = ev
        .meta
        .as_ref()
        .map(|m| m.observed_at_ms)
        .filter(|t| *t > 0)
        .unwrap_or_else(now_ms);
    let reason = format!(
        "DUELL customer order {} reached status {} ({})",
        known
            .as_ref()
            .map(|i| i.duell_order_number.as_str())
            .unwrap_or_default(),
        ev.status_id,
        if drawn { "stock drawn" } else { "cancelled" }
    );
    crate::import::duell_released(
        ctx,
        woo_order_id,
        cause,
        Input::DuellReleased {
            duell_order_id: ev.duell_order_id,
            effective_at_ms,
            reason,
        },
    )
    .await
}

/// Learns a link and retries parked orders that wait for the product.
pub(crate) async fn on_product_applied(
    ctx: &StoreCtx,
    ev: v1::ProductApplied,
) -> Result<(), HandleError> {
    if ev.woo_id > 0 && ev.product_id > 0 {
        let key = (ctx.id().to_owned(), ev.woo_id);
        let link = Link {
            duell_product_id: ev.product_id,
            product_number: ev.sku.clone(),
        };
        if ctx.t.links.get(&key).map_err(store_err)?.as_ref() != Some(&link) {
            let mut c = Commit::new();
            ctx.t.links.put(&mut c, &key, &link);
            ctx.state.commit(c).await.map_err(store_err)?;
        }
    }
    let why = format!(
        "DUELL product {} (SKU {}) was linked to WooCommerce product {}",
        ev.product_id, ev.sku, ev.woo_id
    );
    retry_parked(ctx, ev.meta.as_ref(), Some(&ev.sku), Some(ev.woo_id), &why).await
}

/// Retries parked orders that wait for a product number DUELL now shows.
pub(crate) async fn on_product_observed(
    ctx: &StoreCtx,
    ev: v1::ProductObserved,
) -> Result<(), HandleError> {
    let Some(p) = ev.product.as_ref() else {
        return Ok(());
    };
    ctx.lookups.product_changed(&p.product_number, p.product_id);
    let why = format!(
        "product {} (SKU {}) appeared in DUELL",
        p.product_id, p.product_number
    );
    retry_parked(ctx, ev.meta.as_ref(), Some(&p.product_number), None, &why).await
}

fn waits_for(p: &ParkIndex, sku: Option<&str>, woo_id: Option<i64>) -> bool {
    let sku = sku.map(str::trim).filter(|s| !s.is_empty());
    // WooCommerce SKUs are case-insensitive.
    sku.is_some_and(|s| {
        p.missing_skus
            .iter()
            .any(|m| m.trim().eq_ignore_ascii_case(s))
    }) || woo_id.is_some_and(|w| w > 0 && p.missing_woo_ids.contains(&w))
}

async fn retry_parked(
    ctx: &StoreCtx,
    cause: Option<&Meta>,
    sku: Option<&str>,
    woo_id: Option<i64>,
    why: &str,
) -> Result<(), HandleError> {
    let waiting: Vec<OrderKey> = ctx
        .t
        .parked
        .iter_group(ctx.id())
        .filter_map(|r| r.ok())
        .filter(|(_, p)| !p.retry_requested && waits_for(p, sku, woo_id))
        .map(|(k, _)| k)
        .collect();
    for key in waiting {
        let woo_order_id = key.1;
        let _guard = ctx.locks.lock(woo_order_id).await;
        let Some(mut idx) = ctx.t.parked.get(&key).map_err(store_err)? else {
            continue;
        };
        if idx.retry_requested || !waits_for(&idx, sku, woo_id) {
            continue;
        }
        let Some(observed) = ctx
            .t
            .bodies
            .get(&key)
            .map_err(store_err)?
            .and_then(|b| b.decode())
        else {
            tracing::warn!(store = %ctx.id(), woo_order_id, "parked order without a stored body; it waits for its next observation or a replay");
            continue;
        };
        let park_id = ctx
            .t
            .orders
            .get(&key)
            .map_err(store_err)?
            .and_then(|s| s.stage.parked().cloned())
            .map(|p| format!("{}:{}", p.dlq_event_id, p.at_ms))
            .unwrap_or_default();
        let cause = events::cause_of(ctx, woo_order_id, cause);
        let cmd = events::retry(ctx, &cause, woo_order_id, &park_id, why, observed);
        ctx.bus
            .publish(&cmd)
            .await
            .map_err(|e| HandleError::retry(format!("publishing: {e}")))?;
        idx.retry_requested = true;
        let mut c = Commit::new();
        ctx.t.parked.put(&mut c, &key, &idx);
        ctx.state.commit(c).await.map_err(store_err)?;
        tracing::info!(store = %ctx.id(), woo_order_id, reason = %why, "retrying parked order");
        metrics::counter!("duellsync_importer_parked_retries_total", "store" => ctx.id().to_owned())
            .increment(1);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_park_waits_for_its_skus_in_any_case_and_its_woo_ids() {
        let p = ParkIndex {
            missing_skus: vec!["Abc-1".into()],
            missing_woo_ids: vec![42],
            retry_requested: false,
        };
        assert!(waits_for(&p, Some("ABC-1"), None));
        assert!(waits_for(&p, Some(" abc-1 "), None));
        assert!(waits_for(&p, None, Some(42)));
        assert!(!waits_for(&p, Some("abc-2"), Some(41)));
        assert!(!waits_for(&p, Some(""), Some(0)));
    }
}
