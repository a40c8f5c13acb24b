//! Contract suite of the DUELL client. Runs against duell-sim started in-process, and unchanged
//! against a real DUELL account when `DUELL_URL`, `DUELL_CLIENT_NUMBER`, `DUELL_CLIENT_TOKEN`,
//! `DUELL_STOCK_DEPARTMENT` and `DUELL_ORDER_DEPARTMENT` are set (read-only unless
//! `DUELL_CONTRACT_WRITE=1`). Simulator-only tests print a note and pass against a real account.

mod auth;
mod endpoints;
mod failures;
mod harness;
mod paging;
mod ratelimit;
mod secrets;
mod simulator;
mod writes;

use duellsync_duell::{CustomerId, NewOrder, OrderLine, ProductId};
use rust_decimal::Decimal;

/// A one-line order of `quantity` units of `product` at 100 kr incl. 25 % VAT.
pub fn order(key: &str, customer: CustomerId, product: ProductId, quantity: i64) -> NewOrder {
    NewOrder {
        key: key.to_string(),
        customer_id: customer,
        reference_order_number: key.to_string(),
        reference_comment: format!("Ordre {key} contract-test"),
        comments: format!("Ordre {key} contract-test"),
        order_date: time::macros::datetime!(2026-11-01 12:00:00),
        round_off_amount: Decimal::ZERO,
        order_address: None,
        shipping_address: None,
        purchase_order_status_id: None,
        ref_customer_order_id: None,
        lines: vec![OrderLine {
            key: format!("{key}-1"),
            entity_type: "product".into(),
            product_id: product,
            price_ex_vat: Decimal::from(80),
            price_inc_vat: Decimal::from(100),
            quantity: Decimal::from(quantity),
            vatrate_percent: Decimal::from(25),
            discount_amount: None,
            comments: String::new(),
        }],
    }
}
