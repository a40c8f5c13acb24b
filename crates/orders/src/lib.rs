//! Pure order rules (SPEC §3.2, §3.3), no IO:
//!
//! - [`eligibility`]: which WooCommerce orders are imported; [`takes_woo_stock`]: in which
//!   statuses WooCommerce has reduced its own stock for an order.
//! - [`customer`]: phone normalisation, e-mail validity, the customer to find or create.
//! - [`lines`]: WooCommerce lines → DUELL lines (per-unit prices with/without VAT before
//!   discount, per-unit discount with VAT, VAT rate), shipping and fee lines, and the totals
//!   cross-check.
//! - [`status`]: how WooCommerce statuses may move (never backwards, never over a final
//!   decision).
//! - [`ledger`]: the importer's record of one order and where it is in its import;
//!   [`lifecycle`]: the import as a state machine over that record (`decide`), which the order
//!   importer executes; [`marker`]: the import marker on the WooCommerce order.
//!
//! The order importer, the catalogue publisher (stock holds) and status write-back all decide
//! with these functions, so the three services agree on every rule.
#![forbid(unsafe_code)]

pub mod customer;
mod eligibility;
pub mod ledger;
pub mod lifecycle;
pub mod lines;
pub mod marker;
pub mod status;

pub use customer::{normalize_phone, valid_email, CustomerDraft, CustomerIdentity};
pub use eligibility::{eligibility, takes_woo_stock, SkipReason};
pub use ledger::{
    Attempt, ImportPlan, Imported, InDoubt, Operation, OrderRecord, Origin, Parked, PlannedLine,
    Progress, Stage,
};
pub use lines::{
    check_total, map_lines, mapped_total, parse_tolerance, round_half_away, same_total,
    taxes_computed_in, taxes_computed_in_json, LineSource, MapError, MapOptions, MappedLine,
    TotalMismatch, SHIPPING_LINE_KEY,
};
pub use marker::Marker;
pub use status::{
    is_abandoned_status, is_final_status, normalize_status, plan_status_move, status_rank,
    StatusMove,
};
