//! What an import writes back to WooCommerce: the status `status_after_import` (if set) and an
//! order note with the DUELL order number. Both run after the import is committed locally and
//! are safe to repeat: the status write is idempotent, and the note is added only when the order
//! does not carry it yet.

use duellsync_orders::{is_final_status, normalize_status};
use duellsync_woo::ErrorKind;

use crate::resolve::Stop;
use crate::state::{Imported, Operation};
use crate::StoreCtx;

/// The note an import leaves on the WooCommerce order.
pub(crate) fn note_text(imp: &Imported) -> String {
    let mut s = match imp.operation {
        Operation::AdjustStock => {
            "Stock deducted in DUELL (stock department) for this order".to_owned()
        }
        op => format!(
            "Imported into DUELL as {} {}",
            op.label(),
            imp.duell_order_number
        )
        .trim_end()
        .to_owned(),
    };
    if imp.recovered_by_lookup {
        s.push_str(" (found by order lookup after an interrupted import)");
    }
    for r in &imp.remarks {
        s.push_str(". ");
        s.push_str(r);
    }
    if let Some(refused) = &imp.refused {
        s.push_str(". DUELL refused: ");
        s.push_str(refused);
    }
    s
}

fn woo_stop(what: &str, e: &duellsync_woo::Error) -> Option<Stop> {
    match e.kind() {
        // Try again later; a note whose outcome is unknown is looked for before it is re-added.
        ErrorKind::Transient | ErrorKind::OutcomeUnknown | ErrorKind::Configuration => {
            Some(Stop::retry(format!("{what}: {e}")))
        }
        // The order is gone or refuses the write: nothing a retry changes; the import stands.
        ErrorKind::Permanent => None,
    }
}

pub(crate) async fn after_import(
    ctx: &StoreCtx,
    woo_order_id: i64,
    current_status: &str,
    imp: &Imported,
) -> Result<(), Stop> {
    let Ok(id) = u64::try_from(woo_order_id) else {
        return Ok(());
    };
    if let Some(target) = ctx.settings.status_after_import.as_deref() {
        // A final status was decided by a person or a gateway: never overwritten.
        if !is_final_status(current_status)
            && normalize_status(current_status) != normalize_status(target)
        {
            match ctx.woo.update_order_status(id, target).await {
                Ok(_) => {
                    metrics::counter!("duellsync_importer_woo_writes_total", "store" => ctx.id().to_owned(), "kind" => "status", "outcome" => "ok").increment(1);
                }
                Err(e) => match woo_stop("setting status_after_import", &e) {
                    Some(stop) => return Err(stop),
                    None => {
                        metrics::counter!("duellsync_importer_woo_writes_total", "store" => ctx.id().to_owned(), "kind" => "status", "outcome" => "refused").increment(1);
                        tracing::warn!(store = %ctx.id(), woo_order_id, error = %e, "WooCommerce refused status_after_import; the import stands");
                    }
                },
            }
        }
    }
    let note = note_text(imp);
    let present = match ctx.woo.list_order_notes(id).await {
        Ok(notes) => notes.iter().any(|n| n.note.trim() == note),
        Err(e) => match woo_stop("reading order notes", &e) {
            Some(stop) => return Err(stop),
            None => {
                tracing::warn!(store = %ctx.id(), woo_order_id, error = %e, "cannot read the order's notes; no note written");
                return Ok(());
            }
        },
    };
    if !present {
        match ctx.woo.add_order_note(id, &note, false).await {
            Ok(_) => {
                metrics::counter!("duellsync_importer_woo_writes_total", "store" => ctx.id().to_owned(), "kind" => "note", "outcome" => "ok").increment(1);
            }
            Err(e) => match woo_stop("adding the order note", &e) {
                Some(stop) => return Err(stop),
                None => {
                    tracing::warn!(store = %ctx.id(), woo_order_id, error = %e, "WooCommerce refused the order note; the import stands");
                }
            },
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn imp(op: Operation) -> Imported {
        Imported {
            operation: op,
            duell_order_id: 9,
            duell_order_number: "KO-9".into(),
            customer_id: 1,
            woo_number: "1".into(),
            total: "1".into(),
            lines: vec![],
            remarks: vec![],
            recovered_by_lookup: false,
            attempt_id: "1-1".into(),
            effective_at_ms: 0,
            refused: None,
            announced: false,
            woo_done: false,
            refusal_reported: false,
            hold_released: false,
        }
    }

    #[test]
    fn the_note_names_the_duell_order() {
        assert_eq!(
            note_text(&imp(Operation::CustomerOrder)),
            "Imported into DUELL as customer order KO-9"
        );
        assert_eq!(
            note_text(&imp(Operation::SalesOrder)),
            "Imported into DUELL as sales order KO-9"
        );
        assert!(note_text(&imp(Operation::AdjustStock)).starts_with("Stock deducted"));
        let mut r = imp(Operation::CustomerOrder);
        r.recovered_by_lookup = true;
        assert!(note_text(&r).contains("lookup"));
    }
}
