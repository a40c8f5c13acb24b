//! Pure order rules (SPEC §3.2, §3.3), no IO: which WooCommerce orders are imported, what
//! WooCommerce has done to its stock for an order, and (in later modules) how a WooCommerce order
//! becomes DUELL order lines and how WooCommerce statuses may move.
//!
//! The order importer, the catalogue publisher (stock holds) and status write-back all decide
//! with these functions, so the three services agree on every rule.
#![forbid(unsafe_code)]

mod eligibility;

pub use eligibility::{eligibility, takes_woo_stock, SkipReason};
