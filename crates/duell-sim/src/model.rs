//! The simulator's records, as tests read them through the in-process accessors and the control
//! API, and how products render as DUELL JSON.

use rust_decimal::Decimal;
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};
use time::PrimitiveDateTime;

/// `YYYY-MM-DD HH:MM:SS`, DUELL's timestamp format.
pub(crate) const TS_FORMAT: &[time::format_description::BorrowedFormatItem<'static>] =
    time::macros::format_description!("[year]-[month]-[day] [hour]:[minute]:[second]");

pub(crate) fn ts(dt: PrimitiveDateTime) -> String {
    dt.format(TS_FORMAT).unwrap_or_default()
}

pub(crate) fn parse_ts(s: &str) -> Option<PrimitiveDateTime> {
    let s = s.trim();
    PrimitiveDateTime::parse(s, TS_FORMAT)
        .ok()
        .or_else(|| {
            let d = time::Date::parse(
                s.get(..10)?,
                time::macros::format_description!("[year]-[month]-[day]"),
            )
            .ok()?;
            (s.len() == 10).then(|| d.midnight())
        })
        .or_else(|| PrimitiveDateTime::parse(&s.replacen('T', " ", 1), TS_FORMAT).ok())
}

/// A decimal as an exact JSON number.
pub(crate) fn num(d: Decimal) -> Value {
    d.normalize()
        .to_string()
        .parse::<serde_json::Number>()
        .map(Value::Number)
        .unwrap_or(Value::Null)
}

mod ts_serde {
    use super::*;
    pub fn serialize<S: serde::Serializer>(v: &PrimitiveDateTime, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&ts(*v))
    }
    pub fn deserialize<'de, D: serde::Deserializer<'de>>(
        d: D,
    ) -> Result<PrimitiveDateTime, D::Error> {
        let s = String::deserialize(d)?;
        parse_ts(&s).ok_or_else(|| serde::de::Error::custom("expected YYYY-MM-DD HH:MM:SS"))
    }
}

pub(crate) mod opt_ts_serde {
    use super::*;
    pub fn serialize<S: serde::Serializer>(
        v: &Option<PrimitiveDateTime>,
        s: S,
    ) -> Result<S::Ok, S::Error> {
        match v {
            Some(v) => s.serialize_str(&ts(*v)),
            None => s.serialize_none(),
        }
    }
    pub fn deserialize<'de, D: serde::Deserializer<'de>>(
        d: D,
    ) -> Result<Option<PrimitiveDateTime>, D::Error> {
        let s = Option::<String>::deserialize(d)?;
        match s.as_deref().map(str::trim) {
            None | Some("") => Ok(None),
            Some(s) => parse_ts(s)
                .map(Some)
                .ok_or_else(|| serde::de::Error::custom("expected YYYY-MM-DD HH:MM:SS")),
        }
    }
}

/// A product's image.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", tag = "kind", content = "value")]
pub enum SimImage {
    /// No image: `product_image` is `""`.
    None,
    /// A PNG the simulator generates and serves at `/images/<name>.png`.
    Generated(String),
    /// Any other URL, sent as is.
    Url(String),
}

/// A custom field (`{"description": …, "value": …}` in product JSON).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SimCustomField {
    /// Field label (Woo attribute name).
    pub description: String,
    /// Value (Woo attribute option).
    pub value: String,
}

/// A product as the simulator holds it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SimProduct {
    /// Primary key.
    pub product_id: u64,
    /// Item number; duplicates exist.
    pub product_number: String,
    /// Name (a variant's name contains its parent's).
    pub product_name: String,
    /// Description.
    pub description: Option<String>,
    /// EAN-13 or GTIN-14 with a leading 0; may be empty.
    pub barcode: String,
    /// Category id.
    pub category_id: u64,
    /// Category path "A > B > C".
    pub category_name: String,
    /// 25, 15, 12 or 0.
    pub vatrate_percent: u32,
    /// Price with VAT.
    pub price_inc_vat: Decimal,
    /// Offer price with VAT.
    pub special_price: Option<Decimal>,
    /// Offer start (ASSUMED field name), DUELL local time.
    #[serde(with = "opt_ts_serde", default)]
    pub special_price_start_date: Option<PrimitiveDateTime>,
    /// Offer end (ASSUMED field name), DUELL local time.
    #[serde(with = "opt_ts_serde", default)]
    pub special_price_end_date: Option<PrimitiveDateTime>,
    /// Cost price.
    pub cost_price: Decimal,
    /// Stock price.
    pub stock_price: Decimal,
    /// Supplier.
    pub supplier_name: String,
    /// Deleted (listed only with `filter[is_deleted]=1`).
    pub is_deleted: bool,
    /// Has variants.
    pub is_parent: bool,
    /// Parent's product id for a variant, else 0.
    pub parent_variant: u64,
    /// "Vis i nettbutikk".
    pub view_on_webshop: bool,
    /// Image.
    pub image: SimImage,
    /// Last change, DUELL local time.
    #[serde(with = "ts_serde")]
    pub last_update_date: PrimitiveDateTime,
    /// Custom fields.
    pub custom_fields: Vec<SimCustomField>,
}

impl SimProduct {
    /// The product as `product/list` returns it. `origin` prefixes generated image URLs.
    pub fn to_json(&self, origin: &str) -> Value {
        let image = match &self.image {
            SimImage::None => String::new(),
            SimImage::Generated(name) => format!("{origin}/images/{name}.png"),
            SimImage::Url(u) => u.clone(),
        };
        json!({
            "product_id": self.product_id,
            "product_number": self.product_number,
            "product_name": self.product_name,
            "description": self.description,
            "barcode": self.barcode,
            "category_id": self.category_id,
            "category_name": self.category_name,
            "vatrate_percent": self.vatrate_percent,
            "price_inc_vat": num(self.price_inc_vat),
            // DUELL sends "" for "no offer".
            "special_price": self.special_price.map(num).unwrap_or_else(|| json!("")),
            "special_price_start_date": self.special_price_start_date.map(ts),
            "special_price_end_date": self.special_price_end_date.map(ts),
            "cost_price": num(self.cost_price),
            "stock_price": num(self.stock_price),
            "supplier_name": self.supplier_name,
            "is_deleted": self.is_deleted,
            "is_parent": self.is_parent,
            "parent_variant": self.parent_variant,
            "related_product_id": null,
            "view_on_webshop": self.view_on_webshop,
            "product_image": image,
            "last_update_date": ts(self.last_update_date),
            "custom_fields": self.custom_fields,
        })
    }
}

/// A department (shop or warehouse).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SimDepartment {
    /// Numeric id.
    pub department_id: u64,
    /// Name.
    pub department_name: String,
    /// Department token (> 30 characters).
    pub api_token: String,
    /// City.
    pub city: String,
}

/// A product category.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SimCategory {
    /// Id.
    pub category_id: u64,
    /// Name (generated ones are paths "A > B > C").
    pub category_name: String,
    /// `product`.
    pub category_type: String,
}

/// A customer.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SimCustomer {
    /// Id.
    pub customer_id: u64,
    /// Name.
    pub customer_name: String,
    /// Phone as saved.
    pub phone: String,
    /// E-mail as saved.
    pub email: String,
    /// Street address.
    pub primary_address: String,
    /// Postcode.
    pub primary_zip: String,
    /// City.
    pub city: String,
}

/// One line of a saved order.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SimOrderLine {
    /// Key in the request's `product_data` (`-9999999` for shipping).
    pub line_key: String,
    /// `product` or what was sent.
    pub entity_type: String,
    /// Product.
    pub product_id: u64,
    /// Unit price without VAT as sent.
    pub price_ex_vat: Decimal,
    /// Unit price with VAT as sent.
    pub price_inc_vat: Decimal,
    /// Units.
    pub quantity: Decimal,
    /// VAT rate as sent.
    pub vatrate_percent: Decimal,
    /// Per-unit discount with VAT (`None` when sent as `""`).
    pub discount_amount: Option<Decimal>,
    /// Line text.
    pub comments: String,
}

/// A saved customer order or sales order.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SimOrder {
    /// DUELL order id.
    pub order_id: u64,
    /// DUELL order number.
    pub order_number: String,
    /// Key in the request's `orders` object (or array index).
    pub request_key: String,
    /// The shop order id as sent (string or number).
    pub reference_order_number: Value,
    /// Department id resolved from the department token.
    pub department_id: u64,
    /// Customer.
    pub customer_id: u64,
    /// Status (customer orders; sales orders keep 0).
    pub purchase_order_status_id: u32,
    /// Whether the order's stock has been drawn (customer orders: at a draw status; sales orders:
    /// at once).
    pub stock_drawn: bool,
    /// The whole `order_data` as sent.
    pub order_data: Value,
    /// The lines.
    pub lines: Vec<SimOrderLine>,
    /// For a sales order linked to a customer order: that order's id.
    pub ref_order_id: Option<u64>,
    /// When it was saved, DUELL local time.
    #[serde(with = "ts_serde")]
    pub created_at: PrimitiveDateTime,
}

impl SimOrder {
    /// The reference as text.
    pub fn reference(&self) -> String {
        match &self.reference_order_number {
            Value::String(s) => s.clone(),
            Value::Null => String::new(),
            other => other.to_string(),
        }
    }
}

/// A line of `product/adjust-stock` the simulator applied.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SimStockAdjustment {
    /// Department id resolved from the token.
    pub department_id: u64,
    /// Product number as sent.
    pub product_number: String,
    /// The product it was applied to.
    pub product_id: u64,
    /// Quantity subtracted.
    pub quantity: Decimal,
    /// When, DUELL local time.
    #[serde(with = "ts_serde")]
    pub at: PrimitiveDateTime,
}

/// Stock of one product in one department.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct StockLevel {
    /// Physical stock.
    pub physical: Decimal,
    /// Reserved by open (not drawn, not cancelled) customer orders.
    pub reserved: Decimal,
}

impl StockLevel {
    /// Physical minus reserved.
    pub fn available(&self) -> Decimal {
        self.physical - self.reserved
    }
}
