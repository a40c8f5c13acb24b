//! The importer's sled state: its own ledger per WooCommerce order (not per event: one order
//! arrives many times with different bodies and event ids), the attempts to create its DUELL
//! effect (intent before the call, outcome right after), and what it learned about DUELL
//! (product links, created customers and products).
//!
//! Keys are `(store id, WooCommerce order id)` unless said otherwise.

use std::collections::BTreeSet;

use base64::Engine as _;
use duellsync_events::v1;
use duellsync_store::{Store, Table};
use prost::Message as _;
use rust_decimal::Decimal;
use serde::{Deserialize, Serialize};

pub type OrderKey = (String, i64);

/// The DUELL write that imports an order.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Operation {
    /// `logistics/orders/save`.
    CustomerOrder,
    /// `sale/orders/save`.
    SalesOrder,
    /// `product/adjust-stock` (no lookup exists for it).
    AdjustStock,
}

impl Operation {
    pub fn as_str(self) -> &'static str {
        match self {
            Operation::CustomerOrder => "customer_order",
            Operation::SalesOrder => "sales_order",
            Operation::AdjustStock => "adjust_stock",
        }
    }

    pub fn endpoint(self) -> &'static str {
        match self {
            Operation::CustomerOrder => "logistics/orders/save",
            Operation::SalesOrder => "sale/orders/save",
            Operation::AdjustStock => "product/adjust-stock",
        }
    }

    pub fn kind(self) -> v1::order_imported::Kind {
        match self {
            Operation::CustomerOrder => v1::order_imported::Kind::CustomerOrder,
            Operation::SalesOrder => v1::order_imported::Kind::SalesOrder,
            Operation::AdjustStock => v1::order_imported::Kind::StockOnly,
        }
    }

    /// Words for notes and logs.
    pub fn label(self) -> &'static str {
        match self {
            Operation::CustomerOrder => "customer order",
            Operation::SalesOrder => "sales order",
            Operation::AdjustStock => "stock deduction",
        }
    }
}

/// One line of a planned import, with its DUELL product.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PlannedLine {
    pub key: String,
    pub duell_product_id: i64,
    pub product_number: String,
    /// The WooCommerce product or variation the line sold; 0 for shipping and fee lines.
    pub woo_product_id: i64,
    pub sku: String,
    pub name: String,
    pub quantity: Decimal,
    pub price_ex_vat: Decimal,
    pub price_inc_vat: Decimal,
    pub vat_rate: Decimal,
    pub discount_inc_vat: Option<Decimal>,
    pub comments: String,
    /// A product line (stock moves); false for shipping and fees.
    pub product_line: bool,
}

/// Everything the DUELL write needs, fixed at intent time so that a recovery after a crash
/// knows what was (maybe) written without resolving anything again.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ImportPlan {
    pub operation: Operation,
    /// 0 for a stock deduction.
    pub customer_id: i64,
    pub woo_number: String,
    /// WooCommerce order total, decimal text.
    pub total: String,
    pub lines: Vec<PlannedLine>,
    /// Remarks for the DUELL order comment and the WooCommerce note (ambiguous SKUs).
    pub remarks: Vec<String>,
}

/// What became of one attempt.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Outcome {
    /// DUELL created the order.
    Created {
        order_id: i64,
        order_number: String,
        at_ms: i64,
    },
    /// DUELL applied the stock deduction (`refused`: rows DUELL did not apply).
    Adjusted { at_ms: i64, refused: Option<String> },
    /// DUELL provably did nothing (refused, unreachable, throttled).
    NotApplied { reason: String, at_ms: i64 },
    /// The write may or may not have been applied: resolve by lookup or flag in doubt.
    Unknown { detail: String, at_ms: i64 },
    /// An order lookup found what the attempt created.
    FoundByLookup {
        order_id: i64,
        order_number: String,
        at_ms: i64,
    },
    /// Settled as not applied after an unknown outcome: an order lookup found nothing after
    /// the settle time (`by = "lookup"`), or an operator replayed the in-doubt dead letter
    /// (`by = "operator"`).
    Absent { by: String, at_ms: i64 },
}

/// One try at the DUELL write. The intent (this record without outcome) is flushed before the
/// call; the outcome right after.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Attempt {
    /// `<woo order id>-<n>`.
    pub id: String,
    pub started_ms: i64,
    pub plan: ImportPlan,
    pub outcome: Option<Outcome>,
}

impl Attempt {
    /// Neither applied nor provably not applied.
    pub fn unresolved(&self) -> bool {
        matches!(self.outcome, None | Some(Outcome::Unknown { .. }))
    }

    /// When the outcome became unknown (the intent time for a crash).
    pub fn unknown_since_ms(&self) -> i64 {
        match &self.outcome {
            Some(Outcome::Unknown { at_ms, .. }) => *at_ms,
            _ => self.started_ms,
        }
    }
}

/// The order is in DUELL (or its stock deducted).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Imported {
    pub operation: Operation,
    /// 0 for a stock deduction.
    pub duell_order_id: i64,
    pub duell_order_number: String,
    pub customer_id: i64,
    pub woo_number: String,
    pub total: String,
    pub lines: Vec<PlannedLine>,
    pub remarks: Vec<String>,
    pub recovered_by_lookup: bool,
    pub attempt_id: String,
    /// When DUELL applied it (an upper bound: the answer or the lookup), for stock holds.
    pub effective_at_ms: i64,
    /// Rows of a stock deduction DUELL refused (reported once, never re-sent).
    pub refused: Option<String>,
    /// `OrderImported` and the stock hold event are published.
    pub announced: bool,
    /// WooCommerce status and note written (or given up on for good).
    pub woo_done: bool,
    /// The refused rows were dead-lettered for a person.
    pub refusal_reported: bool,
    /// The stock hold was released (sales order, stock deduction, drawn or cancelled in DUELL).
    pub hold_released: bool,
}

/// Waiting for a person or for the cause to go away.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Parked {
    /// "unknown_product", "total_mismatch", "validation", "customer".
    pub code: String,
    pub reason: String,
    pub missing_skus: Vec<String>,
    /// WooCommerce products/variations without SKU and without link.
    pub missing_woo_ids: Vec<i64>,
    pub at_ms: i64,
    /// Event id of the message dead-lettered for this park.
    pub dlq_event_id: String,
}

impl Parked {
    pub fn same_cause(&self, code: &str, skus: &[String], woo_ids: &[i64]) -> bool {
        self.code == code && self.missing_skus == skus && self.missing_woo_ids == woo_ids
    }
}

/// A DUELL write whose outcome is unknown and that no lookup could settle.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct InDoubt {
    pub attempt_id: String,
    pub operation: Operation,
    pub detail: String,
    pub at_ms: i64,
    /// Event id of the message dead-lettered as in doubt. Only a replay of that very message
    /// is an operator's decision.
    pub dlq_event_id: Option<String>,
}

/// The importer's ledger entry for one WooCommerce order.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct OrderState {
    /// Newest observation: `date_modified_gmt` (Unix s, 0 unknown), status rank, status, event.
    pub newest_modified: i64,
    pub newest_rank: u8,
    pub newest_status: String,
    pub newest_event_id: String,
    /// Statuses an `OrderSkipped` was published for.
    pub skipped: BTreeSet<String>,
    pub attempts: Vec<Attempt>,
    pub imported: Option<Imported>,
    pub parked: Option<Parked>,
    pub in_doubt: Option<InDoubt>,
    /// Observation whose "abandoned before import" hold release was published.
    pub released_unimported: Option<String>,
}

impl OrderState {
    /// The last attempt, when it is neither applied nor provably not applied.
    pub fn unresolved_attempt(&self) -> Option<usize> {
        let i = self.attempts.len().checked_sub(1)?;
        self.attempts[i].unresolved().then_some(i)
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
    pub orders: Table<OrderKey, OrderState>,
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

    #[test]
    fn only_the_last_attempt_can_be_unresolved() {
        let plan = ImportPlan {
            operation: Operation::SalesOrder,
            customer_id: 1,
            woo_number: "1".into(),
            total: "1".into(),
            lines: vec![],
            remarks: vec![],
        };
        let mut st = OrderState::default();
        st.attempts.push(Attempt {
            id: "1-1".into(),
            started_ms: 5,
            plan: plan.clone(),
            outcome: Some(Outcome::NotApplied {
                reason: "down".into(),
                at_ms: 6,
            }),
        });
        assert_eq!(st.unresolved_attempt(), None);
        st.attempts.push(Attempt {
            id: "1-2".into(),
            started_ms: 7,
            plan,
            outcome: None,
        });
        assert_eq!(st.unresolved_attempt(), Some(1));
        assert_eq!(st.attempts[1].unknown_since_ms(), 7);
    }
}
