//! Remembers imported orders (`sync.<store>.order.imported`): their kind and the WooCommerce
//! total at import, which the write-back checks before completing an order.

use duellsync_bus::{Delivery, HandleError};
use duellsync_events::v1;
use duellsync_store::Commit;

use crate::state::Imported;
use crate::StoreCtx;

pub(crate) async fn on_imported(ctx: &StoreCtx, d: &Delivery) -> Result<(), HandleError> {
    let ev: v1::OrderImported = d.decode()?;
    if ev.woo_order_id <= 0 {
        return Err(HandleError::permanent(format!(
            "OrderImported without a WooCommerce order id ({})",
            ev.woo_order_id
        )));
    }
    let key = (ctx.id.clone(), ev.woo_order_id);
    // The first import fact is the one DUELL holds; a repeat (redelivery, replay) changes
    // nothing, so the total compared before completing is always the imported one.
    if ctx
        .imported
        .contains(&key)
        .map_err(|e| HandleError::retry(format!("local state: {e}")))?
    {
        return Ok(());
    }
    let row = Imported {
        kind: ev.kind,
        total: ev.total.clone(),
        woo_number: ev.woo_number.clone(),
        duell_order_id: ev.duell_order_id,
        event_id: ev.meta.map(|m| m.event_id).unwrap_or_default(),
    };
    let mut c = Commit::new();
    ctx.imported.put(&mut c, &key, &row);
    ctx.state
        .commit(c)
        .await
        .map_err(|e| HandleError::retry(format!("local state: {e}")))?;
    metrics::counter!("duellsync_writeback_imported_orders_total", "store" => ctx.id.clone())
        .increment(1);
    tracing::debug!(woo_order_id = ev.woo_order_id, kind = ev.kind, total = %row.total, "imported order remembered");
    Ok(())
}
