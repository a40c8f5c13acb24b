//! The import marker: meta data on the WooCommerce order that says it is in DUELL. It outlives
//! every volume of the engine (the importer's ledger, the streams), so an importer that lost
//! its state does not import an order a second time when it sees it again.
//!
//! Keys start with `_`, which hides them from WooCommerce's admin screen (as DUELL's own plugin
//! did) but not from the REST API: WooCommerce 7.9 returns every meta key that is not one of
//! its own internal ones. `_duell_order_id` is the key DUELL's plugin wrote too, so orders that
//! plugin imported count as imported here as well.

use duellsync_woo_model::MetaData;
use serde_json::Value;

use crate::ledger::{Imported, Operation};

/// The DUELL order id (0 for a stock deduction, which makes no order).
pub const ORDER_ID_KEY: &str = "_duell_order_id";
/// The DUELL order number.
pub const ORDER_NUMBER_KEY: &str = "_duell_order_number";
/// What the import made: `customer_order`, `sales_order` or `adjust_stock`.
pub const KIND_KEY: &str = "_duell_import";

/// What the marker says.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Marker {
    pub operation: Operation,
    pub duell_order_id: i64,
    pub duell_order_number: String,
}

impl Marker {
    pub fn of(imp: &Imported) -> Marker {
        Marker {
            operation: imp.operation,
            duell_order_id: imp.duell_order_id,
            duell_order_number: imp.duell_order_number.clone(),
        }
    }

    /// The `meta_data` entries that write it (values as strings: WooCommerce stores every
    /// scalar as text).
    pub fn meta_data(&self) -> Vec<Value> {
        [
            (ORDER_ID_KEY, self.duell_order_id.to_string()),
            (ORDER_NUMBER_KEY, self.duell_order_number.clone()),
            (KIND_KEY, self.operation.as_str().to_owned()),
        ]
        .into_iter()
        .map(|(k, v)| serde_json::json!({ "key": k, "value": v }))
        .collect()
    }

    /// The marker in an order's meta data, if it carries one: `_duell_order_id` with a whole
    /// number. A missing kind is a customer order (DUELL's plugin wrote none); a kind this
    /// version does not know is still a marker.
    pub fn read(meta: &[MetaData]) -> Option<Marker> {
        let text = |key: &str| {
            meta.iter()
                .rev()
                .find(|m| m.key == key)
                .and_then(|m| match &m.value {
                    Value::String(s) => Some(s.trim().to_owned()),
                    Value::Number(n) => Some(n.to_string()),
                    _ => None,
                })
        };
        let duell_order_id = text(ORDER_ID_KEY)?.parse::<i64>().ok()?;
        let operation = text(KIND_KEY)
            .and_then(|k| Operation::parse(&k))
            .unwrap_or(Operation::CustomerOrder);
        Some(Marker {
            operation,
            duell_order_id,
            duell_order_number: text(ORDER_NUMBER_KEY).unwrap_or_default(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn meta(pairs: &[(&str, Value)]) -> Vec<MetaData> {
        pairs
            .iter()
            .enumerate()
            .map(|(i, (k, v))| MetaData {
                id: i as u64 + 1,
                key: (*k).to_owned(),
                value: v.clone(),
            })
            .collect()
    }

    #[test]
    fn a_written_marker_reads_back() {
        let m = Marker {
            operation: Operation::SalesOrder,
            duell_order_id: 987,
            duell_order_number: "SO-987".into(),
        };
        let written: Vec<MetaData> = m
            .meta_data()
            .into_iter()
            .map(|v| serde_json::from_value(v).unwrap())
            .collect();
        assert_eq!(Marker::read(&written), Some(m));
    }

    #[test]
    fn the_plugins_marker_and_numbers_count_and_garbage_does_not() {
        // DUELL's plugin: id and number, no kind.
        let m = Marker::read(&meta(&[
            ("_duell_order_id", Value::String("55".into())),
            ("_duell_order_number", Value::String("1055".into())),
        ]))
        .expect("marker");
        assert_eq!(m.operation, Operation::CustomerOrder);
        assert_eq!(m.duell_order_id, 55);
        assert!(Marker::read(&meta(&[("_duell_order_id", serde_json::json!(7))])).is_some());
        assert!(
            Marker::read(&meta(&[("_duell_order_id", Value::String(String::new()))])).is_none()
        );
        assert!(Marker::read(&meta(&[("_duell_order_id", serde_json::json!({"a": 1}))])).is_none());
        assert!(Marker::read(&meta(&[("duell_order_id", Value::String("5".into()))])).is_none());
        assert!(Marker::read(&[]).is_none());
    }
}
