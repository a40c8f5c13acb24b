//! Decodes any stored event into what an operator reads: the kind, the product or order it is
//! about, what happened, why (for failures), and every field as JSON. The event type comes from
//! the subject (`duellsync_events::event_name_for_subject`); a type this build does not know
//! still shows its `Meta` (field 1 of every event), so newer producers never break the tools.

use duellsync_bus::StoredMessage;
use duellsync_events::{event_name_for_subject, headers, v1, Meta};
use prost::Message;
use serde_json::{json, Value};

/// Where an event wrote to the outside world.
pub const WOO: &str = "WooCommerce";
pub const DUELL: &str = "DUELL";

/// An event as syncctl shows it.
#[derive(Debug, Clone, Default)]
pub struct Decoded {
    /// Event type ("ProductApplied"); "unknown" when the subject names none.
    pub name: String,
    pub meta: Meta,
    /// The product or order (or run) it is about: "product 42 SKU 1001", "order 1234".
    pub key: String,
    /// What happened, one line.
    pub what: String,
    /// Why, for failures and skips.
    pub reason: String,
    /// A failure the sync log's `--failed` shows.
    pub failed: bool,
    /// The outside system this event records a write to, if any.
    pub outside_write: Option<&'static str>,
    pub product_id: Option<i64>,
    pub order_id: Option<i64>,
    pub sku: Option<String>,
    /// Further causes besides `meta.causation_id` (coalesced writes).
    pub caused_by: Vec<String>,
    /// Every field, for `--json`.
    pub fields: Value,
    /// The payload could not be decoded as the type its subject names.
    pub undecodable: Option<String>,
}

/// Any event's `Meta`: every event carries it as field 1.
#[derive(Clone, PartialEq, Message)]
struct Envelope {
    #[prost(message, optional, tag = "1")]
    meta: Option<Meta>,
}

fn meta_json(m: &Meta) -> Value {
    json!({
        "store": m.store,
        "event_id": m.event_id,
        "observed_at_ms": m.observed_at_ms,
        "causation_id": m.causation_id,
        "correlation_id": m.correlation_id,
        "producer": m.producer,
    })
}

fn product_key(id: i64, sku: &str) -> String {
    if sku.is_empty() {
        format!("product {id}")
    } else {
        format!("product {id} SKU {sku}")
    }
}

fn enum_name<E: TryFrom<i32>>(v: i32, name: impl Fn(E) -> &'static str) -> String {
    match E::try_from(v) {
        Ok(e) => name(e).to_ascii_lowercase(),
        Err(_) => v.to_string(),
    }
}

fn lines_text(lines: &[v1::HeldLine]) -> String {
    lines
        .iter()
        .map(|l| {
            let sku = if l.sku.is_empty() {
                &l.product_number
            } else {
                &l.sku
            };
            format!("{sku} × {}", l.quantity)
        })
        .collect::<Vec<_>>()
        .join(", ")
}

fn lines_json(lines: &[v1::HeldLine]) -> Value {
    Value::Array(
        lines
            .iter()
            .map(|l| {
                json!({
                    "duell_product_id": l.duell_product_id,
                    "product_number": l.product_number,
                    "woo_product_id": l.woo_product_id,
                    "sku": l.sku,
                    "quantity": l.quantity,
                })
            })
            .collect(),
    )
}

fn plan_json(p: &v1::SyncPlan) -> Value {
    let sorted = |m: &std::collections::HashMap<String, i64>| {
        let b: std::collections::BTreeMap<&String, &i64> = m.iter().collect();
        json!(b)
    };
    json!({
        "creates": p.creates,
        "withdrawals": p.withdrawals,
        "unchanged": p.unchanged,
        "updates_by_field": sorted(&p.updates_by_field),
        "drift_left_alone": sorted(&p.drift_left_alone),
        "sample": p.sample,
        "failures": p.failures,
        "replaces_attributes": p.replaces_attributes,
        "pending": p.pending,
        "duplicates": p.duplicates,
        "duplicate_lines": p.duplicate_lines,
    })
}

/// Decodes a stored message. A dead letter is decoded as the event of its original subject.
pub fn decode_message(m: &StoredMessage) -> Decoded {
    let subject = m.header(headers::DLQ_SUBJECT).unwrap_or(&m.subject);
    decode(subject, &m.payload)
}

/// Decodes `payload` as the event type `subject` carries.
pub fn decode(subject: &str, payload: &[u8]) -> Decoded {
    let name = event_name_for_subject(subject).unwrap_or("unknown");
    let mut d = Decoded {
        name: name.to_owned(),
        ..Decoded::default()
    };
    macro_rules! parse {
        ($ty:ty) => {
            match <$ty>::decode(payload) {
                Ok(ev) => ev,
                Err(e) => {
                    d.undecodable = Some(format!("cannot decode {name}: {e}"));
                    return generic(d, payload);
                }
            }
        };
    }
    match name {
        "ProductObserved" => {
            let ev = parse!(v1::ProductObserved);
            let p = ev.product.clone().unwrap_or_default();
            d.product_id = Some(p.product_id);
            d.sku = Some(p.product_number.clone());
            d.key = product_key(p.product_id, &p.product_number);
            let mut what = format!("observed '{}' price {}", p.name, p.price_inc_vat);
            if !p.special_price.is_empty() {
                what.push_str(&format!(", offer {}", p.special_price));
            }
            if p.parent_product_id != 0 {
                what.push_str(&format!(", variant of {}", p.parent_product_id));
            }
            d.what = what;
            d.fields = json!({
                "product": {
                    "product_id": p.product_id,
                    "product_number": p.product_number,
                    "name": p.name,
                    "description": p.description,
                    "price_inc_vat": p.price_inc_vat,
                    "vat_rate_percent": p.vat_rate_percent,
                    "special_price": p.special_price,
                    "special_from": p.special_from,
                    "special_to": p.special_to,
                    "category_path": p.category_path,
                    "category_id": p.category_id,
                    "image_url": p.image_url,
                    "custom_fields": p.custom_fields.iter().map(|f| json!({"name": f.name, "value": f.value})).collect::<Vec<_>>(),
                    "is_parent": p.is_parent,
                    "parent_product_id": p.parent_product_id,
                    "barcode": p.barcode,
                    "last_update": p.last_update,
                },
                "content_hash": ev.content_hash,
            });
            d.meta = ev.meta.unwrap_or_default();
        }
        "ProductWithdrawn" => {
            let ev = parse!(v1::ProductWithdrawn);
            let reason = enum_name(ev.reason, |r: v1::product_withdrawn::Reason| {
                r.as_str_name()
            });
            d.product_id = Some(ev.product_id);
            d.sku = Some(ev.product_number.clone());
            d.key = product_key(ev.product_id, &ev.product_number);
            d.what = format!("withdrawn from the web shop ({reason})");
            d.fields = json!({"product_id": ev.product_id, "product_number": ev.product_number, "reason": reason});
            d.meta = ev.meta.unwrap_or_default();
        }
        "StockObserved" => {
            let ev = parse!(v1::StockObserved);
            d.product_id = Some(ev.product_id);
            d.sku = Some(ev.product_number.clone());
            d.key = product_key(ev.product_id, &ev.product_number);
            d.what = if ev.actual_stock.is_empty() {
                format!("stock {}", ev.stock)
            } else {
                format!("stock {} (actual {})", ev.stock, ev.actual_stock)
            };
            d.fields = json!({"product_id": ev.product_id, "product_number": ev.product_number, "stock": ev.stock, "actual_stock": ev.actual_stock});
            d.meta = ev.meta.unwrap_or_default();
        }
        "CatalogScanned" => {
            let ev = parse!(v1::CatalogScanned);
            d.key = format!("run {}", ev.run_id);
            d.what = format!(
                "DUELL scan finished: {} products, {} stock rows{}",
                ev.products,
                ev.stock_rows,
                if ev.dry_run { " (dry run)" } else { "" }
            );
            d.fields = json!({"run_id": ev.run_id, "products": ev.products, "stock_rows": ev.stock_rows, "dry_run": ev.dry_run});
            d.meta = ev.meta.unwrap_or_default();
        }
        "ChangeNoticed" => {
            let ev = parse!(v1::ChangeNoticed);
            let kind = enum_name(ev.kind, |k: v1::change_noticed::Kind| k.as_str_name());
            d.product_id = Some(ev.product_id);
            d.key = product_key(ev.product_id, &ev.product_number);
            d.what = format!("change noticed ({kind})");
            d.fields = json!({"kind": kind, "product_id": ev.product_id, "product_number": ev.product_number});
            d.meta = ev.meta.unwrap_or_default();
        }
        "OrderStatusObserved" => {
            let ev = parse!(v1::OrderStatusObserved);
            d.order_id = Some(ev.woo_order_id);
            d.key = format!("order {}", ev.woo_order_id);
            d.what = format!(
                "DUELL order {} status {} → {}",
                ev.duell_order_id, ev.previous_status_id, ev.status_id
            );
            d.fields = json!({"woo_order_id": ev.woo_order_id, "duell_order_id": ev.duell_order_id, "status_id": ev.status_id, "previous_status_id": ev.previous_status_id});
            d.meta = ev.meta.unwrap_or_default();
        }
        "OrderObserved" => {
            let ev = parse!(v1::OrderObserved);
            let source = enum_name(ev.source, |s: v1::order_observed::Source| s.as_str_name());
            d.order_id = Some(ev.order_id);
            d.key = format!("order {}", ev.order_id);
            let via = if ev.topic.is_empty() {
                source.clone()
            } else {
                format!("{source} {}", ev.topic)
            };
            d.what = format!("{} #{} total {} ({via})", ev.status, ev.number, ev.total);
            d.fields = json!({
                "order_id": ev.order_id, "status": ev.status, "number": ev.number,
                "date_created_gmt": ev.date_created_gmt, "date_modified_gmt": ev.date_modified_gmt,
                "total": ev.total, "source": source, "topic": ev.topic, "body_sha256": ev.body_sha256,
                "payload_bytes": ev.payload_json.len(),
            });
            d.meta = ev.meta.unwrap_or_default();
        }
        "FullSyncRequested" => {
            let ev = parse!(v1::FullSyncRequested);
            let trigger = enum_name(ev.trigger, |t: v1::full_sync_requested::Trigger| {
                t.as_str_name()
            });
            d.key = format!("run {}", ev.run_id);
            d.what = format!(
                "full sync requested ({trigger}{})",
                if ev.dry_run { ", dry run" } else { "" }
            );
            d.fields = json!({"run_id": ev.run_id, "dry_run": ev.dry_run, "trigger": trigger});
            d.meta = ev.meta.unwrap_or_default();
        }
        "FullSyncProgress" => {
            let ev = parse!(v1::FullSyncProgress);
            d.key = format!("run {}", ev.run_id);
            d.what = format!("{} {}/{}", ev.phase, ev.done, ev.total);
            d.fields =
                json!({"run_id": ev.run_id, "phase": ev.phase, "done": ev.done, "total": ev.total});
            d.meta = ev.meta.unwrap_or_default();
        }
        "FullSyncCompleted" => {
            let ev = parse!(v1::FullSyncCompleted);
            d.key = format!("run {}", ev.run_id);
            let p = ev.plan.clone().unwrap_or_default();
            let updates: i64 = p.updates_by_field.values().sum();
            d.what = if !ev.error.is_empty() {
                format!(
                    "full sync{} failed",
                    if ev.dry_run { " (dry run)" } else { "" }
                )
            } else {
                format!(
                "full sync {}: {} creates, {} field updates, {} withdrawals, {} unchanged, {} failures, {} batch writes",
                if ev.dry_run { "planned (dry run)" } else { "done" },
                p.creates,
                updates,
                p.withdrawals,
                p.unchanged,
                p.failures,
                ev.batch_writes
            )
            };
            d.reason = ev.error.clone();
            d.failed = !ev.error.is_empty();
            d.fields = json!({
                "run_id": ev.run_id, "dry_run": ev.dry_run, "batch_writes": ev.batch_writes,
                "error": ev.error, "plan": ev.plan.as_ref().map(plan_json),
            });
            d.meta = ev.meta.unwrap_or_default();
        }
        "ProductApplied" => {
            let ev = parse!(v1::ProductApplied);
            let action = enum_name(ev.action, |a: v1::product_applied::Action| a.as_str_name());
            d.product_id = Some(ev.product_id);
            d.sku = Some(ev.sku.clone());
            d.key = product_key(ev.product_id, &ev.sku);
            d.what = if ev.fields.is_empty() {
                format!("{action} as Woo #{}", ev.woo_id)
            } else {
                format!("{action} Woo #{}: {}", ev.woo_id, ev.fields.join(", "))
            };
            d.outside_write = Some(WOO);
            d.caused_by = ev.caused_by.clone();
            d.fields = json!({"product_id": ev.product_id, "sku": ev.sku, "woo_id": ev.woo_id, "action": action, "fields": ev.fields, "caused_by": ev.caused_by});
            d.meta = ev.meta.unwrap_or_default();
        }
        "ProductFailed" => {
            let ev = parse!(v1::ProductFailed);
            d.product_id = Some(ev.product_id);
            d.sku = Some(ev.sku.clone());
            d.key = product_key(ev.product_id, &ev.sku);
            d.what = format!(
                "not written ({})",
                if ev.permanent { "permanent" } else { "retried" }
            );
            d.reason = format!("{}: {}", ev.code, ev.message);
            d.failed = true;
            d.fields = json!({"product_id": ev.product_id, "sku": ev.sku, "code": ev.code, "message": ev.message, "permanent": ev.permanent});
            d.meta = ev.meta.unwrap_or_default();
        }
        "StockHoldChanged" => {
            let ev = parse!(v1::StockHoldChanged);
            let phase = enum_name(ev.phase, |p: v1::stock_hold_changed::Phase| p.as_str_name());
            d.order_id = Some(ev.woo_order_id);
            d.key = format!("order {}", ev.woo_order_id);
            d.what = format!("stock hold {phase}: {}", lines_text(&ev.lines));
            d.reason = ev.reason.clone();
            d.fields = json!({"woo_order_id": ev.woo_order_id, "phase": phase, "lines": lines_json(&ev.lines), "effective_at_ms": ev.effective_at_ms, "reason": ev.reason});
            d.meta = ev.meta.unwrap_or_default();
        }
        "OrderImported" => {
            let ev = parse!(v1::OrderImported);
            let kind = enum_name(ev.kind, |k: v1::order_imported::Kind| k.as_str_name());
            d.order_id = Some(ev.woo_order_id);
            d.key = format!("order {}", ev.woo_order_id);
            let target = if ev.duell_order_id == 0 {
                kind.clone()
            } else {
                format!(
                    "{kind} {} (id {})",
                    ev.duell_order_number, ev.duell_order_id
                )
            };
            d.what = format!(
                "imported into DUELL as {target}, total {}{}",
                ev.total,
                if ev.recovered_by_lookup {
                    ", found by lookup after an unknown outcome"
                } else {
                    ""
                }
            );
            d.outside_write = Some(DUELL);
            d.fields = json!({
                "woo_order_id": ev.woo_order_id, "woo_number": ev.woo_number, "kind": kind,
                "duell_order_id": ev.duell_order_id, "duell_order_number": ev.duell_order_number,
                "duell_customer_id": ev.duell_customer_id, "total": ev.total,
                "lines": lines_json(&ev.lines), "recovered_by_lookup": ev.recovered_by_lookup,
            });
            d.meta = ev.meta.unwrap_or_default();
        }
        "OrderParked" => {
            let ev = parse!(v1::OrderParked);
            d.order_id = Some(ev.woo_order_id);
            d.key = format!("order {}", ev.woo_order_id);
            d.what = if ev.missing_skus.is_empty() {
                format!("parked ({})", ev.code)
            } else {
                format!(
                    "parked ({}), waits for SKU {}",
                    ev.code,
                    ev.missing_skus.join(", ")
                )
            };
            d.reason = ev.reason.clone();
            d.failed = true;
            d.fields = json!({"woo_order_id": ev.woo_order_id, "reason": ev.reason, "code": ev.code, "missing_skus": ev.missing_skus});
            d.meta = ev.meta.unwrap_or_default();
        }
        "OrderInDoubt" => {
            let ev = parse!(v1::OrderInDoubt);
            d.order_id = Some(ev.woo_order_id);
            d.key = format!("order {}", ev.woo_order_id);
            d.what = format!("in doubt ({}, attempt {})", ev.operation, ev.attempt_id);
            d.reason = ev.detail.clone();
            d.failed = true;
            d.fields = json!({"woo_order_id": ev.woo_order_id, "operation": ev.operation, "attempt_id": ev.attempt_id, "detail": ev.detail});
            d.meta = ev.meta.unwrap_or_default();
        }
        "OrderSkipped" => {
            let ev = parse!(v1::OrderSkipped);
            d.order_id = Some(ev.woo_order_id);
            d.key = format!("order {}", ev.woo_order_id);
            d.what = format!("skipped (status {})", ev.status);
            d.reason = ev.reason.clone();
            d.fields =
                json!({"woo_order_id": ev.woo_order_id, "status": ev.status, "reason": ev.reason});
            d.meta = ev.meta.unwrap_or_default();
        }
        "OrderRetryRequested" => {
            let ev = parse!(v1::OrderRetryRequested);
            d.order_id = Some(ev.woo_order_id);
            d.key = format!("order {}", ev.woo_order_id);
            d.what = "retry requested".into();
            d.reason = ev.reason.clone();
            d.fields = json!({"woo_order_id": ev.woo_order_id, "reason": ev.reason, "observed_status": ev.observed.as_ref().map(|o| o.status.clone())});
            d.meta = ev.meta.unwrap_or_default();
        }
        "OrderStatusWritten" => {
            let ev = parse!(v1::OrderStatusWritten);
            d.order_id = Some(ev.woo_order_id);
            d.key = format!("order {}", ev.woo_order_id);
            d.what = format!(
                "status {} → {} (DUELL status {})",
                ev.from_status, ev.to_status, ev.duell_status_id
            );
            d.outside_write = Some(WOO);
            d.fields = json!({"woo_order_id": ev.woo_order_id, "from_status": ev.from_status, "to_status": ev.to_status, "duell_status_id": ev.duell_status_id});
            d.meta = ev.meta.unwrap_or_default();
        }
        "OrderStatusConflict" => {
            let ev = parse!(v1::OrderStatusConflict);
            d.order_id = Some(ev.woo_order_id);
            d.key = format!("order {}", ev.woo_order_id);
            d.what = format!(
                "status {} not moved to {} ({})",
                ev.woo_status, ev.wanted_status, ev.code
            );
            d.reason = ev.reason.clone();
            d.failed = true;
            d.fields = json!({"woo_order_id": ev.woo_order_id, "woo_status": ev.woo_status, "wanted_status": ev.wanted_status, "code": ev.code, "reason": ev.reason});
            d.meta = ev.meta.unwrap_or_default();
        }
        "WebhooksEnsured" => {
            let ev = parse!(v1::WebhooksEnsured);
            d.key = "webhooks".into();
            let list = |v: &[String]| {
                if v.is_empty() {
                    "-".to_owned()
                } else {
                    v.join(" ")
                }
            };
            d.what = format!(
                "created {}, recreated {}, healthy {}",
                list(&ev.created),
                list(&ev.recreated),
                list(&ev.healthy)
            );
            if !ev.created.is_empty() || !ev.recreated.is_empty() {
                d.outside_write = Some(WOO);
            }
            d.fields =
                json!({"created": ev.created, "recreated": ev.recreated, "healthy": ev.healthy});
            d.meta = ev.meta.unwrap_or_default();
        }
        _ => return generic(d, payload),
    }
    d
}

/// An event type this build does not know (or cannot decode): its meta, and the subject.
fn generic(mut d: Decoded, payload: &[u8]) -> Decoded {
    d.meta = Envelope::decode(payload)
        .ok()
        .and_then(|e| e.meta)
        .unwrap_or_default();
    d.what = match &d.undecodable {
        Some(e) => e.clone(),
        None => format!("{} ({} bytes)", d.name, payload.len()),
    };
    d.fields = json!({});
    d
}

impl Decoded {
    /// The event as JSON: type, meta, summary and fields.
    pub fn to_json(&self) -> Value {
        json!({
            "type": self.name,
            "meta": meta_json(&self.meta),
            "key": self.key,
            "what": self.what,
            "reason": self.reason,
            "failed": self.failed,
            "outside_write": self.outside_write,
            "fields": self.fields,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use duellsync_events::{meta, Event};

    #[test]
    fn a_product_failure_names_the_product_and_the_reason() {
        let ev = v1::ProductFailed {
            meta: Some(meta("s1", "e1".into(), "t", "product:s1:7".into())),
            product_id: 7,
            sku: "1001".into(),
            code: "product_invalid_sku".into(),
            message: "SKU already used".into(),
            permanent: true,
        };
        let d = decode(&v1::ProductFailed::subject("s1"), &ev.encode_to_vec());
        assert_eq!(d.name, "ProductFailed");
        assert_eq!(d.key, "product 7 SKU 1001");
        assert!(d.failed);
        assert_eq!(d.reason, "product_invalid_sku: SKU already used");
        assert_eq!(d.meta.correlation_id, "product:s1:7");
        assert_eq!(d.to_json()["fields"]["code"], "product_invalid_sku");
    }

    #[test]
    fn an_applied_write_is_an_outside_write_with_its_fields() {
        let ev = v1::ProductApplied {
            meta: Some(meta("s1", "e2".into(), "t", "product:s1:7".into())),
            product_id: 7,
            sku: "1001".into(),
            woo_id: 70,
            action: v1::product_applied::Action::Updated as i32,
            fields: vec!["regular_price".into(), "stock_quantity".into()],
            caused_by: vec!["e1".into()],
        };
        let d = decode(&v1::ProductApplied::subject("s1"), &ev.encode_to_vec());
        assert_eq!(d.what, "updated Woo #70: regular_price, stock_quantity");
        assert_eq!(d.outside_write, Some(WOO));
        assert_eq!(d.caused_by, vec!["e1".to_owned()]);
        assert!(!d.failed);
    }

    #[test]
    fn an_unknown_subject_still_shows_the_meta() {
        let ev = v1::StockObserved {
            meta: Some(meta("s1", "e3".into(), "t", "product:s1:9".into())),
            ..Default::default()
        };
        let d = decode("duell.s1.something.new", &ev.encode_to_vec());
        assert_eq!(d.name, "unknown");
        assert_eq!(d.meta.event_id, "e3");
        let garbage = decode(&v1::OrderImported::subject("s1"), b"\xff\xff\xff");
        assert!(garbage.undecodable.is_some());
    }

    #[test]
    fn a_full_sync_with_an_error_is_a_failure() {
        let ev = v1::FullSyncCompleted {
            run_id: "r1".into(),
            error: "woocommerce unreachable".into(),
            ..Default::default()
        };
        let d = decode(&v1::FullSyncCompleted::subject("s1"), &ev.encode_to_vec());
        assert!(d.failed);
        assert_eq!(d.key, "run r1");
        assert_eq!(d.what, "full sync failed");
        assert_eq!(d.reason, "woocommerce unreachable");
    }
}
