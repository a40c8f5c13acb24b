//! The events the importer appends, with their deterministic ids: the same fact always gets the
//! same id, so a republish after a crash is dropped by JetStream's duplicate window and by the
//! consumers' ledgers.
//!
//! | event | id parts |
//! |---|---|
//! | `OrderImported` | `order-imported`, store, woo order id (one per order, ever) |
//! | `StockHoldChanged` IMPORTED_UNDRAWN | `stock-hold`, store, woo id, `imported-undrawn`, attempt id |
//! | `StockHoldChanged` RELEASED after import | `stock-hold`, store, woo id, `released`, attempt id |
//! | `StockHoldChanged` RELEASED before import | `stock-hold`, store, woo id, `released-unimported`, observation event id |
//! | `OrderParked` | `order-parked`, store, woo id, code, missing SKUs, missing woo ids |
//! | `OrderInDoubt` | `order-in-doubt`, store, woo id, attempt id |
//! | `OrderSkipped` | `order-skipped`, store, woo id, status |
//! | `OrderRetryRequested` | `order-retry`, store, woo id, park event id, what appeared |

use duellsync_events::{caused_meta, meta, order_correlation, v1, EventId, Meta};

use crate::state::{Imported, PlannedLine};
use crate::{StoreCtx, SERVICE};

/// The meta of the fact that caused what the importer does now (an observation, a retry
/// command), or a stand-in carrying the order's correlation id (start-up recovery).
pub(crate) fn cause_of(ctx: &StoreCtx, woo_order_id: i64, m: Option<&Meta>) -> Meta {
    match m {
        Some(m) if !m.event_id.is_empty() => m.clone(),
        _ => Meta {
            store: ctx.id().to_owned(),
            correlation_id: order_correlation(ctx.id(), woo_order_id),
            ..Meta::default()
        },
    }
}

fn derived(ctx: &StoreCtx, cause: &Meta, id: String) -> Meta {
    if cause.event_id.is_empty() {
        meta(ctx.id(), id, SERVICE, cause.correlation_id.clone())
    } else {
        caused_meta(cause, id, SERVICE)
    }
}

pub(crate) fn held_lines(lines: &[PlannedLine]) -> Vec<v1::HeldLine> {
    lines
        .iter()
        .filter(|l| l.product_line)
        .map(|l| v1::HeldLine {
            duell_product_id: l.duell_product_id,
            product_number: l.product_number.clone(),
            woo_product_id: l.woo_product_id,
            sku: l.sku.clone(),
            quantity: l.quantity.normalize().to_string(),
        })
        .collect()
}

pub(crate) fn imported(
    ctx: &StoreCtx,
    cause: &Meta,
    woo_order_id: i64,
    imp: &Imported,
) -> v1::OrderImported {
    let id = EventId::new("order-imported", ctx.id())
        .int(woo_order_id)
        .finish();
    v1::OrderImported {
        meta: Some(derived(ctx, cause, id)),
        woo_order_id,
        woo_number: imp.woo_number.clone(),
        kind: crate::state::kind(imp.operation) as i32,
        duell_order_id: imp.duell_order_id,
        duell_order_number: imp.duell_order_number.clone(),
        duell_customer_id: imp.customer_id,
        total: imp.total.clone(),
        lines: held_lines(&imp.lines),
        recovered_by_lookup: imp.recovered_by_lookup(),
    }
}

/// The stock hold after an import: a customer order holds its units until DUELL draws them at
/// the packing slip; a sales order or stock deduction is in DUELL's stock at once.
pub(crate) fn hold_after_import(
    ctx: &StoreCtx,
    cause: &Meta,
    woo_order_id: i64,
    imp: &Imported,
) -> v1::StockHoldChanged {
    use v1::stock_hold_changed::Phase;
    let (phase, tag, reason) = match imp.operation {
        crate::state::Operation::CustomerOrder => (
            Phase::ImportedUndrawn,
            "imported-undrawn",
            format!(
                "imported as DUELL customer order {}; stock is drawn at the packing slip",
                imp.duell_order_number
            ),
        ),
        op => (
            Phase::Released,
            "released",
            format!(
                "imported as DUELL {} {}; DUELL's stock reflects it",
                op.label(),
                imp.duell_order_number
            )
            .trim_end()
            .to_owned(),
        ),
    };
    let id = EventId::new("stock-hold", ctx.id())
        .int(woo_order_id)
        .str(tag)
        .str(&imp.attempt_id)
        .finish();
    v1::StockHoldChanged {
        meta: Some(derived(ctx, cause, id)),
        woo_order_id,
        phase: phase as i32,
        lines: held_lines(&imp.lines),
        effective_at_ms: imp.effective_at_ms,
        reason,
    }
}

/// Release of an imported customer order's hold: DUELL drew or cancelled it.
pub(crate) fn hold_released_by_status(
    ctx: &StoreCtx,
    cause: &Meta,
    woo_order_id: i64,
    imp: &Imported,
    effective_at_ms: i64,
    reason: String,
) -> v1::StockHoldChanged {
    let id = EventId::new("stock-hold", ctx.id())
        .int(woo_order_id)
        .str("released")
        .str(&imp.attempt_id)
        .finish();
    v1::StockHoldChanged {
        meta: Some(derived(ctx, cause, id)),
        woo_order_id,
        phase: v1::stock_hold_changed::Phase::Released as i32,
        lines: held_lines(&imp.lines),
        effective_at_ms,
        reason,
    }
}

/// Release of the hold of an order abandoned before import (cancelled, refunded, failed).
pub(crate) fn hold_released_unimported(
    ctx: &StoreCtx,
    cause: &Meta,
    order: &duellsync_woo::Order,
    effective_at_ms: i64,
) -> v1::StockHoldChanged {
    let woo_order_id = i64::try_from(order.id).unwrap_or(i64::MAX);
    let id = EventId::new("stock-hold", ctx.id())
        .int(woo_order_id)
        .str("released-unimported")
        .str(&cause.event_id)
        .finish();
    let lines = order
        .line_items
        .iter()
        .map(|l| {
            let woo = if l.variation_id > 0 {
                l.variation_id
            } else {
                l.product_id
            };
            let woo = i64::try_from(woo).unwrap_or(0);
            let link = ctx.t.links.get(&(ctx.id().to_owned(), woo)).ok().flatten();
            let sku = l.sku.clone().unwrap_or_default();
            v1::HeldLine {
                duell_product_id: link.as_ref().map(|k| k.duell_product_id).unwrap_or(0),
                product_number: link
                    .map(|k| k.product_number)
                    .unwrap_or_else(|| sku.clone()),
                woo_product_id: woo,
                sku,
                quantity: l.quantity.to_string(),
            }
        })
        .collect();
    v1::StockHoldChanged {
        meta: Some(derived(ctx, cause, id)),
        woo_order_id,
        phase: v1::stock_hold_changed::Phase::Released as i32,
        lines,
        effective_at_ms,
        reason: format!("order {} before it was imported", order.status),
    }
}

pub(crate) fn parked(
    ctx: &StoreCtx,
    cause: &Meta,
    woo_order_id: i64,
    code: &str,
    reason: &str,
    missing_skus: &[String],
    missing_woo_ids: &[i64],
) -> v1::OrderParked {
    let mut id = EventId::new("order-parked", ctx.id())
        .int(woo_order_id)
        .str(code);
    for s in missing_skus {
        id = id.str(s);
    }
    id = id.str("|");
    for w in missing_woo_ids {
        id = id.int(*w);
    }
    v1::OrderParked {
        meta: Some(derived(ctx, cause, id.finish())),
        woo_order_id,
        reason: reason.to_owned(),
        code: code.to_owned(),
        missing_skus: missing_skus.to_vec(),
    }
}

pub(crate) fn in_doubt(
    ctx: &StoreCtx,
    cause: &Meta,
    woo_order_id: i64,
    operation: &str,
    attempt_id: &str,
    detail: &str,
) -> v1::OrderInDoubt {
    let id = EventId::new("order-in-doubt", ctx.id())
        .int(woo_order_id)
        .str(attempt_id)
        .finish();
    v1::OrderInDoubt {
        meta: Some(derived(ctx, cause, id)),
        woo_order_id,
        operation: operation.to_owned(),
        attempt_id: attempt_id.to_owned(),
        detail: detail.to_owned(),
    }
}

pub(crate) fn skipped(
    ctx: &StoreCtx,
    cause: &Meta,
    woo_order_id: i64,
    status: &str,
    reason: &str,
) -> v1::OrderSkipped {
    let id = EventId::new("order-skipped", ctx.id())
        .int(woo_order_id)
        .str(status)
        .finish();
    v1::OrderSkipped {
        meta: Some(derived(ctx, cause, id)),
        woo_order_id,
        status: status.to_owned(),
        reason: reason.to_owned(),
    }
}

pub(crate) fn retry(
    ctx: &StoreCtx,
    cause: &Meta,
    woo_order_id: i64,
    park_event_id: &str,
    appeared: &str,
    observed: v1::OrderObserved,
) -> v1::OrderRetryRequested {
    let id = EventId::new("order-retry", ctx.id())
        .int(woo_order_id)
        .str(park_event_id)
        .str(appeared)
        .finish();
    // The retry belongs to the order's flow, whatever product event triggered it.
    let mut m = derived(ctx, cause, id);
    m.correlation_id = order_correlation(ctx.id(), woo_order_id);
    v1::OrderRetryRequested {
        meta: Some(m),
        woo_order_id,
        reason: format!("{appeared}; retrying the parked order"),
        observed: Some(observed),
    }
}
