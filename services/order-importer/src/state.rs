//! The importer's sled state: its own ledger per WooCommerce order (not per event: one order
//! arrives many times with different bodies and event ids; the record and its lifecycle are
//! `duellsync_orders::ledger`), the newest body of orders not imported yet, indexes of parked
//! orders and open attempts, and what it learned about DUELL (product links, created customers
//! and products).
//!
//! Keys are `(store id, WooCommerce order id)` unless said otherwise.

use base64::Engine as _;
use duellsync_events::v1;
use duellsync_store::{Store, Table};
use prost::Message as _;
use serde::{Deserialize, Serialize};

pub type OrderKey = (String, i64);

pub use duellsync_orders::ledger::{Imported, Operation, OrderRecord, PlannedLine, Stage};
pub use duellsync_orders::ImportPlan;

/// `OrderImported.kind` of an operation.
pub fn kind(op: Operation) -> v1::order_imported::Kind {
    match op {
        Operation::CustomerOrder => v1::order_imported::Kind::CustomerOrder,
        Operation::SalesOrder => v1::order_imported::Kind::SalesOrder,
        Operation::AdjustStock => v1::order_imported::Kind::StockOnly,
    }
}

/// Parked orders, by key, with what would unpark them (small rows, scanned on product events).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ParkIndex {
    pub missing_skus: Vec<String>,
    pub missing_woo_ids: Vec<i64>,
    /// A retry was requested since the order was (re)parked.
    pub retry_requested: bool,
}

/// WooCommerce product (or variation) → DUELL product, from `ProductApplied`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Link {
    pub duell_product_id: i64,
    /// DUELL product number (= WooCommerce SKU).
    pub product_number: String,
}

/// The newest observation of an order not imported yet, kept so that any trigger (a stale
/// redelivery, a replay, a retry) works on the newest body.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Body {
    /// Base64 of the protobuf `OrderObserved`.
    pub observed_b64: String,
}

impl Body {
    pub fn of(observed: &v1::OrderObserved) -> Body {
        Body {
            observed_b64: base64::engine::general_purpose::STANDARD
                .encode(observed.encode_to_vec()),
        }
    }

    pub fn decode(&self) -> Option<v1::OrderObserved> {
        let bytes = base64::engine::general_purpose::STANDARD
            .decode(&self.observed_b64)
            .ok()?;
        v1::OrderObserved::decode(bytes.as_slice()).ok()
    }
}

/// The importer's tables.
#[derive(Clone, Debug)]
pub struct Tables {
    pub orders: Table<OrderKey, OrderRecord>,
    pub bodies: Table<OrderKey, Body>,
    pub parked: Table<OrderKey, ParkIndex>,
    /// Orders with an unresolved attempt (resolved at start-up).
    pub open: Table<OrderKey, String>,
    /// WooCommerce product/variation id → DUELL product.
    pub links: Table<(String, i64), Link>,
    /// Ids the importer found or created once and must not create again: `customer:phone:<n>`,
    /// `customer:email:<e>`, `customer:placeholder:<n>`, `product:<sku>`, `special:<number>`,
    /// `category:<name>`.
    pub known: Table<(String, String), i64>,
    /// Per store: `markers_restored` once the ledger was completed from the import markers in
    /// WooCommerce (a new or rebuilt state has no such row).
    pub marks: Table<(String, String), i64>,
}

impl Tables {
    pub fn new(store: &Store) -> Tables {
        Tables {
            orders: store.table("importer_orders"),
            bodies: store.table("importer_bodies"),
            parked: store.table("importer_parked"),
            open: store.table("importer_open"),
            links: store.table("importer_links"),
            known: store.table("importer_known"),
            marks: store.table("importer_marks"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bodies_round_trip_the_observation() {
        let o = v1::OrderObserved {
            order_id: 7,
            status: "processing".into(),
            payload_json: br#"{"id":7}"#.to_vec(),
            ..Default::default()
        };
        assert_eq!(Body::of(&o).decode(), Some(o));
        assert_eq!(
            Body {
                observed_b64: "!!".into()
            }
            .decode(),
            None
        );
    }
}
