//! Units web orders take from WooCommerce's stock before DUELL's stock shows them.
//!
//! The publisher learns of a received order straight from the intake stream (webhooks and
//! gap-fill), so a hold exists even while the importer is down; the importer then moves the hold
//! on (`StockHoldChanged`: imported but not drawn, or released once DUELL's stock reflects the
//! order).

use duellsync_bus::Delivery;
use duellsync_events::v1;
use duellsync_orders::SkipReason;
use duellsync_woo::Order;
use rust_decimal::Decimal;

use crate::state::{ids_for_sku, mk, Staged, IMPORTED_UNDRAWN, RECEIVED, RELEASED};
use crate::worker::{set_hold, StoreCtx};

pub(crate) fn order_observed(
    ctx: &StoreCtx,
    st: &mut Staged<'_>,
    d: &Delivery,
) -> anyhow::Result<()> {
    let ev: v1::OrderObserved = d.decode().map_err(|e| anyhow::anyhow!("{e}"))?;
    // An order we cannot read is the importer's to park; it holds nothing here.
    let Ok(order) = serde_json::from_slice::<Order>(&ev.payload_json) else {
        return Ok(());
    };
    let id = order.id as i64;
    let existing = st.hold(id)?;
    if existing
        .as_ref()
        .map(|h| h.phase >= IMPORTED_UNDRAWN)
        .unwrap_or(false)
    {
        return Ok(());
    }
    let will_import = match duellsync_orders::eligibility(&order, &ctx.settings) {
        Ok(()) => true,
        // The status filter decides *when* the order is imported (an on-hold order is imported
        // once paid), not whether its units are gone from WooCommerce's stock meanwhile.
        Err(SkipReason::Status { .. }) => true,
        Err(_) => false,
    };
    if will_import && duellsync_orders::takes_woo_stock(&order.status) {
        let lines = resolve_lines(ctx, st, &order)?;
        if let Some(h) = &existing {
            if h.lines == lines {
                return Ok(());
            }
        }
        set_hold(st, id, RECEIVED, lines, 0)?;
    } else if existing.map(|h| h.phase == RECEIVED).unwrap_or(false) {
        // Cancelled (or never paid) before DUELL saw it: WooCommerce restored its own stock and
        // DUELL never counted it, so the release applies to every stock reading.
        set_hold(st, id, RELEASED, Vec::new(), 0)?;
    }
    Ok(())
}

/// Order lines as (DUELL product id, units): by the WooCommerce id we linked, else by SKU.
fn resolve_lines(
    ctx: &StoreCtx,
    st: &Staged<'_>,
    order: &Order,
) -> anyhow::Result<Vec<(i64, Decimal)>> {
    let mut out: Vec<(i64, Decimal)> = Vec::new();
    for line in &order.line_items {
        if line.quantity <= 0 {
            continue;
        }
        let woo_id = if line.variation_id > 0 {
            line.variation_id
        } else {
            line.product_id
        };
        let mut pid = if woo_id > 0 {
            ctx.t.rev.get(&mk(st.store_id, woo_id as i64))?
        } else {
            None
        };
        if pid.is_none() {
            if let Some(sku) = line.sku.as_deref().filter(|s| !s.trim().is_empty()) {
                pid = ids_for_sku(&ctx.t, &ctx.id, sku)?.first().copied();
            }
        }
        if let Some(pid) = pid {
            let q = Decimal::from(line.quantity);
            match out.iter_mut().find(|(p, _)| *p == pid) {
                Some((_, n)) => *n += q,
                None => out.push((pid, q)),
            }
        }
    }
    out.sort_by_key(|(p, _)| *p);
    Ok(out)
}
