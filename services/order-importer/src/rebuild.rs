//! Restores the import ledger from the sync log. The ledger is what keeps an order from being
//! imported twice; if it is lost (a new volume, `syncctl state rebuild`, a store moved to another
//! shard), the WOO stream replays every order the store ever sent, and without this they would
//! all be imported again. The SYNC stream keeps what was imported (`order.imported`) and what is
//! in doubt (`order.in_doubt`); both are put back before any order is taken.

use duellsync_events::{v1, Event, STREAM_SYNC};
use duellsync_store::Commit;
use prost::Message;
use rust_decimal::Decimal;

use crate::state::{Imported, InDoubt, Operation, OrderState, PlannedLine};
use crate::StoreCtx;

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
                if let Some((id, st)) = entry(m.payload.as_ref(), &subject, &store) {
                    let key = (store.clone(), id);
                    let known = ctx.t.orders.get(&key)?;
                    let merged = match known {
                        // The ledger has its own, richer record: keep it.
                        Some(k) if k.imported.is_some() || k.in_doubt.is_some() => continue,
                        Some(mut k) => {
                            k.imported = st.imported;
                            k.in_doubt = st.in_doubt;
                            k
                        }
                        None => st,
                    };
                    ctx.t.orders.put(&mut c, &key, &merged);
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

fn entry(payload: &[u8], subject: &str, store: &str) -> Option<(i64, OrderState)> {
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
        let st = OrderState {
            imported: Some(Imported {
                operation: operation(ev.kind),
                duell_order_id: ev.duell_order_id,
                duell_order_number: ev.duell_order_number.clone(),
                customer_id: ev.duell_customer_id,
                woo_number: ev.woo_number.clone(),
                total: ev.total.clone(),
                lines,
                remarks: Vec::new(),
                recovered_by_lookup: ev.recovered_by_lookup,
                attempt_id: String::new(),
                effective_at_ms: at,
                refused: None,
                // Everything that followed the import was done when the log was written; a
                // restored entry must not redo it.
                announced: true,
                woo_done: true,
                refusal_reported: true,
                hold_released: false,
            }),
            ..OrderState::default()
        };
        Some((ev.woo_order_id, st))
    } else {
        let ev = v1::OrderInDoubt::decode(payload).ok()?;
        let at = ev.meta.as_ref().map(|m| m.observed_at_ms).unwrap_or(0);
        let op = match ev.operation.as_str() {
            "sales_order" => Operation::SalesOrder,
            "adjust_stock" => Operation::AdjustStock,
            _ => Operation::CustomerOrder,
        };
        let st = OrderState {
            in_doubt: Some(InDoubt {
                attempt_id: ev.attempt_id.clone(),
                operation: op,
                detail: format!("restored from the sync log: {}", ev.detail),
                at_ms: at,
                dlq_event_id: None,
            }),
            ..OrderState::default()
        };
        Some((ev.woo_order_id, st))
    }
}
