//! The writer-back's sled state: what was imported, what was written, what is in flight.
//!
//! All of it is a projection: `imported` is rebuilt by replaying `sync.<store>.order.imported`;
//! `progress` by replaying `sync.<store>.order_status.written` (and WooCommerce itself is the
//! truth for the current status, read before every write).

use std::collections::BTreeMap;

use duellsync_store::{Store, Table};
use serde::{Deserialize, Serialize};

/// An order the importer brought into DUELL, as far as the writer-back needs it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub(crate) struct Imported {
    /// `OrderImported.Kind` as its protobuf number.
    pub kind: i32,
    /// WooCommerce total at import, decimal text: `completed` is only written while the
    /// WooCommerce total still equals it.
    pub total: String,
    pub woo_number: String,
    pub duell_order_id: i64,
    pub event_id: String,
}

/// A status the engine wrote to a WooCommerce order.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub(crate) struct Written {
    pub from: String,
    pub duell_status: i32,
    pub cause_event_id: String,
    pub at_ms: i64,
}

/// A write about to be sent. Committed before the PUT, so that after a crash the next event for
/// the order can tell "our write landed" (WooCommerce shows the target) from "it did not".
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub(crate) struct Pending {
    pub target: String,
    pub from: String,
    pub duell_status: i32,
    pub cause_event_id: String,
    pub correlation_id: String,
}

/// What the engine did to one WooCommerce order's status.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub(crate) struct Progress {
    /// Statuses written, by WooCommerce status. Each is written at most once per order.
    #[serde(default)]
    pub written: BTreeMap<String, Written>,
    #[serde(default)]
    pub pending: Option<Pending>,
}

/// Keys are `(store, woo_order_id)`.
pub(crate) type OrderKey = (String, i64);

pub(crate) fn imported(state: &Store) -> Table<OrderKey, Imported> {
    state.table("writeback_imported")
}

pub(crate) fn progress(state: &Store) -> Table<OrderKey, Progress> {
    state.table("writeback_progress")
}
