//! Orders and order notes as WooCommerce's REST API reads and writes them.

use rust_decimal::Decimal;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use time::PrimitiveDateTime;

use crate::de;
use crate::product::MetaData;

/// Billing or shipping address. Every field tolerates `null` (e.g. a missing email).
#[derive(Clone, Debug, Default, PartialEq, Deserialize, Serialize)]
pub struct Address {
    /// First name.
    #[serde(default, deserialize_with = "de::string")]
    pub first_name: String,
    /// Last name.
    #[serde(default, deserialize_with = "de::string")]
    pub last_name: String,
    /// Company.
    #[serde(default, deserialize_with = "de::string")]
    pub company: String,
    /// Street.
    #[serde(default, deserialize_with = "de::string")]
    pub address_1: String,
    /// Street, second line.
    #[serde(default, deserialize_with = "de::string")]
    pub address_2: String,
    /// City.
    #[serde(default, deserialize_with = "de::string")]
    pub city: String,
    /// State.
    #[serde(default, deserialize_with = "de::string")]
    pub state: String,
    /// Postcode.
    #[serde(default, deserialize_with = "de::string")]
    pub postcode: String,
    /// ISO country.
    #[serde(default, deserialize_with = "de::string")]
    pub country: String,
    /// E-mail; `None` when null or empty.
    #[serde(default, deserialize_with = "opt_nonempty")]
    pub email: Option<String>,
    /// Phone; `None` when null or empty.
    #[serde(default, deserialize_with = "opt_nonempty")]
    pub phone: Option<String>,
}

fn opt_nonempty<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Option<String>, D::Error> {
    Ok(de::opt_string(d)?.filter(|s| !s.trim().is_empty()))
}

/// An order line. `price` (a JSON number derived from total ÷ quantity) is deliberately not
/// modelled: use `total`/`subtotal`.
#[derive(Clone, Debug, Default, PartialEq, Deserialize)]
pub struct LineItem {
    /// Item id.
    #[serde(default, deserialize_with = "de::u64_lenient")]
    pub id: u64,
    /// Name at the time of ordering.
    #[serde(default, deserialize_with = "de::string")]
    pub name: String,
    /// Product (the parent for a variation line; 0 once the product is deleted).
    #[serde(default, deserialize_with = "de::u64_lenient")]
    pub product_id: u64,
    /// Variation (0 if none).
    #[serde(default, deserialize_with = "de::u64_lenient")]
    pub variation_id: u64,
    /// Quantity.
    #[serde(default, deserialize_with = "de::i64_lenient")]
    pub quantity: i64,
    /// Tax class.
    #[serde(default, deserialize_with = "de::string")]
    pub tax_class: String,
    /// Before discounts, excl. tax.
    #[serde(default, deserialize_with = "de::decimal")]
    pub subtotal: Decimal,
    /// Tax before discounts.
    #[serde(default, deserialize_with = "de::decimal")]
    pub subtotal_tax: Decimal,
    /// After discounts, excl. tax.
    #[serde(default, deserialize_with = "de::decimal")]
    pub total: Decimal,
    /// Tax after discounts.
    #[serde(default, deserialize_with = "de::decimal")]
    pub total_tax: Decimal,
    /// The product's *current* SKU; `None` when the product is gone or has none.
    #[serde(default, deserialize_with = "opt_nonempty")]
    pub sku: Option<String>,
    /// Item meta (e.g. `_reduced_stock`).
    #[serde(default, deserialize_with = "de::vec_lenient")]
    pub meta_data: Vec<MetaData>,
    /// Parent product name for variation lines.
    #[serde(default, deserialize_with = "de::opt_string")]
    pub parent_name: Option<String>,
}

/// A shipping line.
#[derive(Clone, Debug, Default, PartialEq, Deserialize)]
pub struct ShippingLine {
    /// Item id.
    #[serde(default, deserialize_with = "de::u64_lenient")]
    pub id: u64,
    /// Title shown to the customer.
    #[serde(default, deserialize_with = "de::string")]
    pub method_title: String,
    /// Method id, e.g. `flat_rate`.
    #[serde(default, deserialize_with = "de::string")]
    pub method_id: String,
    /// Instance id (a string).
    #[serde(default, deserialize_with = "de::string")]
    pub instance_id: String,
    /// Total excl. tax.
    #[serde(default, deserialize_with = "de::decimal")]
    pub total: Decimal,
    /// Tax.
    #[serde(default, deserialize_with = "de::decimal")]
    pub total_tax: Decimal,
}

/// A fee line.
#[derive(Clone, Debug, Default, PartialEq, Deserialize)]
pub struct FeeLine {
    /// Item id.
    #[serde(default, deserialize_with = "de::u64_lenient")]
    pub id: u64,
    /// Name.
    #[serde(default, deserialize_with = "de::string")]
    pub name: String,
    /// Tax class.
    #[serde(default, deserialize_with = "de::string")]
    pub tax_class: String,
    /// `taxable` or `none`.
    #[serde(default, deserialize_with = "de::string")]
    pub tax_status: String,
    /// Total excl. tax.
    #[serde(default, deserialize_with = "de::decimal")]
    pub total: Decimal,
    /// Tax.
    #[serde(default, deserialize_with = "de::decimal")]
    pub total_tax: Decimal,
}

/// A coupon line.
#[derive(Clone, Debug, Default, PartialEq, Deserialize)]
pub struct CouponLine {
    /// Item id.
    #[serde(default, deserialize_with = "de::u64_lenient")]
    pub id: u64,
    /// Coupon code.
    #[serde(default, deserialize_with = "de::string")]
    pub code: String,
    /// Discount excl. tax.
    #[serde(default, deserialize_with = "de::decimal")]
    pub discount: Decimal,
    /// Discount tax.
    #[serde(default, deserialize_with = "de::decimal")]
    pub discount_tax: Decimal,
}

/// A refund summary; `total` is negative.
#[derive(Clone, Debug, Default, PartialEq, Deserialize)]
pub struct Refund {
    /// Refund id.
    #[serde(default, deserialize_with = "de::u64_lenient")]
    pub id: u64,
    /// Reason.
    #[serde(default, deserialize_with = "de::string")]
    pub reason: String,
    /// Negative amount, e.g. `-5.00`.
    #[serde(default, deserialize_with = "de::decimal")]
    pub total: Decimal,
}

/// An order.
#[derive(Clone, Debug, Default, PartialEq, Deserialize)]
pub struct Order {
    /// Id.
    #[serde(default, deserialize_with = "de::u64_lenient")]
    pub id: u64,
    /// Parent order.
    #[serde(default, deserialize_with = "de::u64_lenient")]
    pub parent_id: u64,
    /// Display number; a string that plugins may change (`"WC-1001"`).
    #[serde(default, deserialize_with = "de::string")]
    pub number: String,
    /// Order key.
    #[serde(default, deserialize_with = "de::string")]
    pub order_key: String,
    /// `checkout`, `rest-api`, `admin`...
    #[serde(default, deserialize_with = "de::string")]
    pub created_via: String,
    /// Status without the `wc-` prefix.
    #[serde(default, deserialize_with = "de::string")]
    pub status: String,
    /// ISO currency.
    #[serde(default, deserialize_with = "de::string")]
    pub currency: String,
    /// Site time.
    #[serde(default, deserialize_with = "de::opt_datetime")]
    pub date_created: Option<PrimitiveDateTime>,
    /// UTC.
    #[serde(default, deserialize_with = "de::opt_datetime")]
    pub date_created_gmt: Option<PrimitiveDateTime>,
    /// Site time; on post storage it moves only on status/customer-note changes.
    #[serde(default, deserialize_with = "de::opt_datetime")]
    pub date_modified: Option<PrimitiveDateTime>,
    /// UTC.
    #[serde(default, deserialize_with = "de::opt_datetime")]
    pub date_modified_gmt: Option<PrimitiveDateTime>,
    /// Site time.
    #[serde(default, deserialize_with = "de::opt_datetime")]
    pub date_paid: Option<PrimitiveDateTime>,
    /// UTC.
    #[serde(default, deserialize_with = "de::opt_datetime")]
    pub date_paid_gmt: Option<PrimitiveDateTime>,
    /// Site time.
    #[serde(default, deserialize_with = "de::opt_datetime")]
    pub date_completed: Option<PrimitiveDateTime>,
    /// UTC.
    #[serde(default, deserialize_with = "de::opt_datetime")]
    pub date_completed_gmt: Option<PrimitiveDateTime>,
    /// Discounts excl. tax.
    #[serde(default, deserialize_with = "de::decimal")]
    pub discount_total: Decimal,
    /// Discount tax.
    #[serde(default, deserialize_with = "de::decimal")]
    pub discount_tax: Decimal,
    /// Shipping excl. tax.
    #[serde(default, deserialize_with = "de::decimal")]
    pub shipping_total: Decimal,
    /// Shipping tax.
    #[serde(default, deserialize_with = "de::decimal")]
    pub shipping_tax: Decimal,
    /// Tax on items.
    #[serde(default, deserialize_with = "de::decimal")]
    pub cart_tax: Decimal,
    /// Grand total.
    #[serde(default, deserialize_with = "de::decimal")]
    pub total: Decimal,
    /// Total tax.
    #[serde(default, deserialize_with = "de::decimal")]
    pub total_tax: Decimal,
    /// Whether line prices include tax.
    #[serde(default, deserialize_with = "de::bool_lenient")]
    pub prices_include_tax: bool,
    /// Customer user id (0 = guest).
    #[serde(default, deserialize_with = "de::u64_lenient")]
    pub customer_id: u64,
    /// The customer's note.
    #[serde(default, deserialize_with = "de::string")]
    pub customer_note: String,
    /// Billing address.
    #[serde(default)]
    pub billing: Address,
    /// Shipping address.
    #[serde(default)]
    pub shipping: Address,
    /// Payment method id.
    #[serde(default, deserialize_with = "de::string")]
    pub payment_method: String,
    /// Payment method title.
    #[serde(default, deserialize_with = "de::string")]
    pub payment_method_title: String,
    /// Gateway transaction id.
    #[serde(default, deserialize_with = "de::string")]
    pub transaction_id: String,
    /// Order meta (internal keys hidden).
    #[serde(default, deserialize_with = "de::vec_lenient")]
    pub meta_data: Vec<MetaData>,
    /// Product lines.
    #[serde(default, deserialize_with = "de::vec_lenient")]
    pub line_items: Vec<LineItem>,
    /// Shipping lines.
    #[serde(default, deserialize_with = "de::vec_lenient")]
    pub shipping_lines: Vec<ShippingLine>,
    /// Fee lines.
    #[serde(default, deserialize_with = "de::vec_lenient")]
    pub fee_lines: Vec<FeeLine>,
    /// Coupon lines.
    #[serde(default, deserialize_with = "de::vec_lenient")]
    pub coupon_lines: Vec<CouponLine>,
    /// Refunds.
    #[serde(default, deserialize_with = "de::vec_lenient")]
    pub refunds: Vec<Refund>,
}

impl Order {
    /// The value of an order meta key, if present.
    pub fn meta(&self, key: &str) -> Option<&Value> {
        self.meta_data
            .iter()
            .find(|m| m.key == key)
            .map(|m| &m.value)
    }
}

/// An order note.
#[derive(Clone, Debug, Default, PartialEq, Deserialize)]
pub struct OrderNote {
    /// Note id.
    #[serde(default, deserialize_with = "de::u64_lenient")]
    pub id: u64,
    /// `"WooCommerce"` for system and REST notes.
    #[serde(default, deserialize_with = "de::string")]
    pub author: String,
    /// UTC.
    #[serde(default, deserialize_with = "de::opt_datetime")]
    pub date_created_gmt: Option<PrimitiveDateTime>,
    /// Text.
    #[serde(default, deserialize_with = "de::string")]
    pub note: String,
    /// True when shown (and e-mailed) to the customer.
    #[serde(default, deserialize_with = "de::bool_lenient")]
    pub customer_note: bool,
}

/// A line of a new order: by product id, variation id or SKU.
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
pub struct NewLineItem {
    /// Product id.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub product_id: Option<u64>,
    /// Variation id.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub variation_id: Option<u64>,
    /// SKU.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub sku: Option<String>,
    /// Quantity.
    pub quantity: i64,
}

/// A shipping line of a new order.
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
pub struct NewShippingLine {
    /// Method id.
    pub method_id: String,
    /// Title.
    pub method_title: String,
    /// Total excl. tax (sent as a string).
    pub total: Decimal,
}

/// A fee line of a new order.
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
pub struct NewFeeLine {
    /// Name.
    pub name: String,
    /// Total excl. tax.
    pub total: Decimal,
    /// `taxable` or `none`.
    pub tax_status: String,
}

/// `POST /orders` body (what a test or an admin would create).
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
pub struct NewOrder {
    /// Initial status (default `pending`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub status: Option<String>,
    /// Mark paid (moves to processing, reduces stock).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub set_paid: Option<bool>,
    /// Currency.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub currency: Option<String>,
    /// Billing address.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub billing: Option<Address>,
    /// Shipping address.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub shipping: Option<Address>,
    /// Lines.
    pub line_items: Vec<NewLineItem>,
    /// Shipping lines.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub shipping_lines: Vec<NewShippingLine>,
    /// Fee lines.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub fee_lines: Vec<NewFeeLine>,
    /// Customer note.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub customer_note: Option<String>,
    /// Meta entries `{key, value}`.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub meta_data: Vec<Value>,
}
