//! What an import writes back to WooCommerce: the import marker (the DUELL order id and number
//! in the order's meta data) together with `status_after_import` in one write, then an order
//! note with the DUELL order number (WooCommerce's REST API adds notes through their own
//! endpoint only). All of it runs after the outcome is on disk and is safe to repeat: the meta
//! is upserted by key, the status write is idempotent, and a note is looked for before it is
//! added again.

use duellsync_orders::lifecycle::WooWrite;
use duellsync_orders::Marker;
use duellsync_woo::ErrorKind;

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
    if imp.recovered_by_lookup() {
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

/// A failed WooCommerce write: retried later, or given up on (the order is gone or refuses it:
/// nothing a retry changes; the import stands).
fn woo_failure(what: &str, e: &duellsync_woo::Error) -> WooWrite {
    match e.kind() {
        // A note whose outcome is unknown is looked for before it is re-added.
        ErrorKind::Transient | ErrorKind::OutcomeUnknown | ErrorKind::Configuration => {
            WooWrite::Retry {
                reason: format!("{what}: {e}"),
                after_ms: None,
            }
        }
        ErrorKind::Permanent => WooWrite::GaveUp {
            reason: format!("{what}: {e}"),
        },
    }
}

fn count(ctx: &StoreCtx, kind: &'static str, outcome: &'static str) {
    metrics::counter!("duellsync_importer_woo_writes_total", "store" => ctx.id().to_owned(), "kind" => kind, "outcome" => outcome).increment(1);
}

/// One PUT: the marker and, when given, `status_after_import`.
pub(crate) async fn write_marker(
    ctx: &StoreCtx,
    woo_order_id: i64,
    status: Option<String>,
    marker: Option<Marker>,
) -> WooWrite {
    let Ok(id) = u64::try_from(woo_order_id) else {
        return WooWrite::GaveUp {
            reason: "not a WooCommerce order id".into(),
        };
    };
    let meta = marker.as_ref().map(Marker::meta_data).unwrap_or_default();
    let kind = if status.is_some() { "status" } else { "marker" };
    match ctx
        .woo
        .update_order_meta(id, &meta, status.as_deref())
        .await
    {
        Ok(_) => {
            count(ctx, kind, "ok");
            WooWrite::Written {
                status_written: status.is_some(),
            }
        }
        Err(e) => match woo_failure("writing the import marker and status_after_import", &e) {
            // The status may be what WooCommerce refuses (a status it does not know): the
            // marker must not be lost with it.
            WooWrite::GaveUp { reason } if status.is_some() && !meta.is_empty() => {
                count(ctx, "status", "refused");
                tracing::warn!(store = %ctx.id(), woo_order_id, reason = %reason, "WooCommerce refused status_after_import; writing the import marker alone");
                match ctx.woo.update_order_meta(id, &meta, None).await {
                    Ok(_) => {
                        count(ctx, "marker", "ok");
                        WooWrite::Written {
                            status_written: false,
                        }
                    }
                    Err(e) => woo_failure("writing the import marker", &e),
                }
            }
            WooWrite::GaveUp { reason } => {
                count(ctx, kind, "refused");
                tracing::warn!(store = %ctx.id(), woo_order_id, reason = %reason, "WooCommerce refused the import marker; the import stands");
                WooWrite::GaveUp { reason }
            }
            other => other,
        },
    }
}

/// The note naming the DUELL order; `check_first`: an earlier try may have added it.
pub(crate) async fn add_note(
    ctx: &StoreCtx,
    woo_order_id: i64,
    imp: &Imported,
    check_first: bool,
) -> WooWrite {
    let Ok(id) = u64::try_from(woo_order_id) else {
        return WooWrite::GaveUp {
            reason: "not a WooCommerce order id".into(),
        };
    };
    let note = note_text(imp);
    if check_first {
        match ctx.woo.list_order_notes(id).await {
            Ok(notes) if notes.iter().any(|n| n.note.trim() == note) => {
                return WooWrite::Written {
                    status_written: false,
                }
            }
            Ok(_) => {}
            Err(e) => {
                let w = woo_failure("reading order notes", &e);
                if let WooWrite::GaveUp { reason } = &w {
                    tracing::warn!(store = %ctx.id(), woo_order_id, reason = %reason, "cannot read the order's notes; no note written");
                }
                return w;
            }
        }
    }
    match ctx.woo.add_order_note(id, &note, false).await {
        Ok(_) => {
            count(ctx, "note", "ok");
            WooWrite::Written {
                status_written: false,
            }
        }
        Err(e) => {
            let w = woo_failure("adding the order note", &e);
            if let WooWrite::GaveUp { reason } = &w {
                count(ctx, "note", "refused");
                tracing::warn!(store = %ctx.id(), woo_order_id, reason = %reason, "WooCommerce refused the order note; the import stands");
            }
            w
        }
    }
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
            origin: duellsync_orders::Origin::Answer,
            attempt_id: "1-1".into(),
            effective_at_ms: 0,
            refused: None,
            progress: Default::default(),
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
        r.origin = duellsync_orders::Origin::Lookup;
        assert!(note_text(&r).contains("lookup"));
    }
}
