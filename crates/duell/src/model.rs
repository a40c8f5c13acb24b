//! Typed DUELL records. Deserialisation is tolerant of DUELL's loose typing (see `de.rs`);
//! fields nobody has seen in a real response are `Option` or defaulted, and everything we do not
//! model is kept in `extra` so callers can still reach it.

use std::collections::BTreeMap;
use std::fmt;

use rust_decimal::Decimal;
use secrecy::{ExposeSecret, SecretString};
use serde::{Deserialize, Deserializer, Serialize, Serializer};
use serde_json::Value;
use time::PrimitiveDateTime;

use crate::de;

macro_rules! id_type {
    ($(#[$doc:meta])* $name:ident) => {
        $(#[$doc])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
        pub struct $name(pub u64);

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                self.0.fmt(f)
            }
        }

        impl Serialize for $name {
            fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
                s.serialize_u64(self.0)
            }
        }

        // DUELL sends ids as numbers in some endpoints and as strings in others.
        impl<'de> Deserialize<'de> for $name {
            fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
                let v = Value::deserialize(d)?;
                match de::u64_from_value(&v).map_err(serde::de::Error::custom)? {
                    Some(n) => Ok($name(n)),
                    None => Err(serde::de::Error::custom(concat!("missing ", stringify!($name)))),
                }
            }
        }

        impl From<u64> for $name {
            fn from(n: u64) -> Self {
                $name(n)
            }
        }
    };
}

id_type!(
    /// DUELL's product primary key (`product_id`): the identity of a product.
    ProductId
);
id_type!(
    /// DUELL order id (`order_id`) of a customer order or a sales order.
    OrderId
);
id_type!(
    /// DUELL customer id (`customer_id`).
    CustomerId
);
id_type!(
    /// DUELL product category id (`category_id`).
    CategoryId
);

/// A department's API token ("Stock Department" / "Order Department" in settings). It selects the
/// department in stock calls and orders and is treated as a secret.
#[derive(Clone)]
pub struct DepartmentToken(SecretString);

impl DepartmentToken {
    /// Wraps a token string.
    pub fn new(token: impl Into<String>) -> Self {
        DepartmentToken(SecretString::from(token.into()))
    }

    /// The token text, for building a request. Never log it.
    pub fn expose(&self) -> &str {
        self.0.expose_secret()
    }
}

impl fmt::Debug for DepartmentToken {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("DepartmentToken([REDACTED])")
    }
}

impl<'de> Deserialize<'de> for DepartmentToken {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        Ok(DepartmentToken::new(de::string(d)?))
    }
}

/// One DUELL custom field of a product (attribute name and value).
///
/// ASSUMPTION (reference §6.3 lists no custom fields): `custom_fields` is a list of
/// `{"description": "Farge", "value": "Rød"}`; an object `{"Farge": "Rød"}` is accepted too.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CustomField {
    /// The field's label in DUELL; becomes the Woo attribute name.
    #[serde(default, deserialize_with = "de::string")]
    pub description: String,
    /// The field's value; becomes the Woo attribute option.
    #[serde(default, deserialize_with = "de::string")]
    pub value: String,
}

fn custom_fields<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<CustomField>, D::Error> {
    let v = Value::deserialize(d)?;
    Ok(match v {
        Value::Array(items) => items
            .into_iter()
            .filter_map(|item| serde_json::from_value::<CustomField>(item).ok())
            .collect(),
        Value::Object(map) => map
            .into_iter()
            .map(|(k, v)| CustomField {
                description: k,
                value: de::string_from_value(&v).unwrap_or_default(),
            })
            .collect(),
        _ => Vec::new(),
    })
}

/// A product from `product/list`.
#[derive(Debug, Clone, Deserialize)]
pub struct Product {
    /// DUELL primary key; the product's identity.
    pub product_id: ProductId,
    /// Item number, used as the Woo SKU. Not unique in DUELL.
    #[serde(default, deserialize_with = "de::string")]
    pub product_number: String,
    /// Name; a variant's name contains its parent's name.
    #[serde(default, deserialize_with = "de::string")]
    pub product_name: String,
    /// Long description (`null` or `""` → `None`).
    #[serde(default, deserialize_with = "de::opt_string")]
    pub description: Option<String>,
    /// EAN/GTIN as DUELL holds it (may carry a leading 0).
    #[serde(default, deserialize_with = "de::opt_string")]
    pub barcode: Option<String>,
    /// Category id.
    #[serde(default, deserialize_with = "de::opt_nonzero_u64")]
    pub category_id: Option<u64>,
    /// Category path, levels separated by `>` ("A > B > C").
    #[serde(default, deserialize_with = "de::opt_string")]
    pub category_name: Option<String>,
    /// VAT rate in percent (25, 15, 12 or 0 in Norway).
    #[serde(default, deserialize_with = "de::decimal")]
    pub vatrate_percent: Decimal,
    /// Price including VAT.
    #[serde(default, deserialize_with = "de::decimal")]
    pub price_inc_vat: Decimal,
    /// Offer price including VAT; `None` when DUELL sends `null`, `""` or nothing.
    #[serde(default, deserialize_with = "de::opt_decimal")]
    pub special_price: Option<Decimal>,
    /// ASSUMPTION: start of the offer period (`special_price_start_date`), DUELL local time.
    #[serde(default, deserialize_with = "de::opt_datetime")]
    pub special_price_start_date: Option<PrimitiveDateTime>,
    /// ASSUMPTION: end of the offer period (`special_price_end_date`), DUELL local time.
    #[serde(default, deserialize_with = "de::opt_datetime")]
    pub special_price_end_date: Option<PrimitiveDateTime>,
    /// Cost price.
    #[serde(default, deserialize_with = "de::opt_decimal")]
    pub cost_price: Option<Decimal>,
    /// Stock price (used as cost price by some exports).
    #[serde(default, deserialize_with = "de::opt_decimal")]
    pub stock_price: Option<Decimal>,
    /// Supplier.
    #[serde(default, deserialize_with = "de::opt_string")]
    pub supplier_name: Option<String>,
    /// Deleted in DUELL.
    #[serde(default, deserialize_with = "de::boolish")]
    pub is_deleted: bool,
    /// Has variants.
    #[serde(default, deserialize_with = "de::boolish")]
    pub is_parent: bool,
    /// The parent's product id when this is a variant (`0` → `None`).
    #[serde(default, deserialize_with = "de::opt_nonzero_u64")]
    pub parent_variant: Option<u64>,
    /// "Vis i nettbutikk"; `None` when DUELL does not send the field (not seen in real responses).
    #[serde(default, deserialize_with = "de::opt_boolish")]
    pub view_on_webshop: Option<bool>,
    /// One image URL (`""` → `None`).
    #[serde(default, deserialize_with = "de::opt_string")]
    pub product_image: Option<String>,
    /// ASSUMPTION: when the product last changed (`YYYY-MM-DD HH:MM:SS`, DUELL local time).
    #[serde(default, deserialize_with = "de::opt_datetime")]
    pub last_update_date: Option<PrimitiveDateTime>,
    /// ASSUMPTION: custom fields → Woo attributes (see [`CustomField`]).
    #[serde(default, deserialize_with = "custom_fields")]
    pub custom_fields: Vec<CustomField>,
    /// Every other field DUELL sent.
    #[serde(flatten)]
    pub extra: BTreeMap<String, Value>,
}

impl Product {
    /// The variant's parent product id, when this product is a variant.
    pub fn parent(&self) -> Option<ProductId> {
        if self.is_parent {
            None
        } else {
            self.parent_variant.map(ProductId)
        }
    }
}

/// Stock of one product in one stock location.
#[derive(Debug, Clone, Deserialize)]
pub struct LocationStock {
    /// Location name ("Lager A").
    #[serde(default, deserialize_with = "de::string")]
    pub name: String,
    /// Stock in that location.
    #[serde(default, deserialize_with = "de::decimal")]
    pub stock: Decimal,
}

/// Stock of one product in one department.
#[derive(Debug, Clone, Deserialize)]
pub struct DepartmentStock {
    /// Numeric department id.
    #[serde(default, deserialize_with = "de::opt_u64")]
    pub department_id: Option<u64>,
    /// `stock` as DUELL sends it; may be fractional or negative.
    #[serde(default, deserialize_with = "de::decimal")]
    pub stock: Decimal,
    /// `actual_stock`; may be fractional or negative. Which of the two nets out open customer
    /// order reservations is unknown for real DUELL (reference open question 7).
    #[serde(default, deserialize_with = "de::opt_decimal")]
    pub actual_stock: Option<Decimal>,
    /// Per-location stock when DUELL uses stock locations.
    #[serde(default, deserialize_with = "de::list")]
    pub location: Vec<LocationStock>,
    /// Every other field DUELL sent.
    #[serde(flatten)]
    pub extra: BTreeMap<String, Value>,
}

/// A row of `all/product/stock`.
#[derive(Debug, Clone, Deserialize)]
pub struct StockRow {
    /// Product id (a string in this endpoint; accepted either way).
    pub product_id: ProductId,
    /// Product number.
    #[serde(default, deserialize_with = "de::string")]
    pub product_number: String,
    /// Stock per department (one entry when the call names a department).
    #[serde(default, deserialize_with = "de::list")]
    pub department: Vec<DepartmentStock>,
}

impl StockRow {
    /// The stock entry of the given department id, or the first entry when DUELL omits ids.
    pub fn department_stock(&self, department_id: Option<u64>) -> Option<&DepartmentStock> {
        match department_id {
            Some(id) => self
                .department
                .iter()
                .find(|d| d.department_id == Some(id))
                .or_else(|| self.department.first()),
            None => self.department.first(),
        }
    }
}

/// A department (shop or warehouse) from `department/list`.
#[derive(Debug, Clone, Deserialize)]
pub struct Department {
    /// Numeric id.
    #[serde(default, deserialize_with = "de::opt_u64")]
    pub department_id: Option<u64>,
    /// Name.
    #[serde(default, deserialize_with = "de::string")]
    pub department_name: String,
    /// The department token used by stock calls and orders.
    pub api_token: Option<DepartmentToken>,
    /// City.
    #[serde(default, deserialize_with = "de::opt_string")]
    pub city: Option<String>,
}

/// A product category.
#[derive(Debug, Clone, Deserialize)]
pub struct Category {
    /// Id.
    pub category_id: CategoryId,
    /// Name (may be a path "A > B > C").
    #[serde(default, deserialize_with = "de::string")]
    pub category_name: String,
    /// Every other field DUELL sent.
    #[serde(flatten)]
    pub extra: BTreeMap<String, Value>,
}

/// A category to create with `product/category/save`.
#[derive(Debug, Clone, Serialize)]
pub struct NewCategory {
    /// Name, e.g. `DIVERSE`.
    pub category_name: String,
    /// `product` for product categories.
    pub category_type: String,
}

/// A customer from `customer/list`.
#[derive(Debug, Clone, Deserialize)]
pub struct Customer {
    /// Id.
    pub customer_id: CustomerId,
    /// Name.
    #[serde(default, deserialize_with = "de::opt_string")]
    pub customer_name: Option<String>,
    /// Phone.
    #[serde(default, deserialize_with = "de::opt_string")]
    pub phone: Option<String>,
    /// E-mail.
    #[serde(default, deserialize_with = "de::opt_string")]
    pub email: Option<String>,
    /// Every other field DUELL sent.
    #[serde(flatten)]
    pub extra: BTreeMap<String, Value>,
}

/// Fields of `PUT customer`. With `customer_id` the call updates that customer (idempotent);
/// without it, it creates one (not idempotent).
#[derive(Debug, Clone, Default, Serialize)]
pub struct CustomerInput {
    /// Set to update an existing customer.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub customer_id: Option<CustomerId>,
    /// Full name.
    pub customer_name: String,
    /// Phone, digits.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub phone: Option<String>,
    /// E-mail.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub email: Option<String>,
    /// Street address.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub primary_address: Option<String>,
    /// Postcode.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub primary_zip: Option<String>,
    /// City.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub city: Option<String>,
}

/// A product to create with `product/save`.
#[derive(Debug, Clone, Serialize)]
pub struct NewProduct {
    /// Name.
    pub product_name: String,
    /// Item number (SKU).
    pub product_number: String,
    /// Price including VAT.
    #[serde(with = "rust_decimal::serde::arbitrary_precision")]
    pub price_inc_vat: Decimal,
    /// VAT rate percent.
    #[serde(with = "rust_decimal::serde::arbitrary_precision")]
    pub vatrate_percent: Decimal,
    /// Category (e.g. the `DIVERSE` category).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub category_id: Option<CategoryId>,
    /// Description.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
}

/// A row DUELL returns for a created product.
#[derive(Debug, Clone, Deserialize)]
pub struct SavedProduct {
    /// The new id.
    pub product_id: ProductId,
    /// Every other field DUELL sent.
    #[serde(flatten)]
    pub extra: BTreeMap<String, Value>,
}

/// A row DUELL returns for a created category.
#[derive(Debug, Clone, Deserialize)]
pub struct SavedCategory {
    /// The new id.
    pub category_id: CategoryId,
    /// Every other field DUELL sent.
    #[serde(flatten)]
    pub extra: BTreeMap<String, Value>,
}

/// One line of `product/adjust-stock`: subtract `quantity` from the product's stock.
#[derive(Debug, Clone, Serialize)]
pub struct StockAdjustment {
    /// Product number (DUELL identifies the product by it, not by id).
    pub product_number: String,
    /// Units to subtract (positive = sold).
    #[serde(with = "rust_decimal::serde::arbitrary_precision")]
    pub quantity: Decimal,
}

/// Key of the shipping line in an order's `product_data` object (what DUELL's plugin sends).
pub const SHIPPING_LINE_KEY: &str = "-9999999";

/// An address of an order.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct Address {
    /// Street address.
    #[serde(default, deserialize_with = "de::string")]
    pub address: String,
    /// City.
    #[serde(default, deserialize_with = "de::string")]
    pub city: String,
    /// Postcode.
    #[serde(default, deserialize_with = "de::string")]
    pub zip: String,
    /// ISO-2 country code ("NO").
    #[serde(default, deserialize_with = "de::string")]
    pub country: String,
}

/// One order line.
#[derive(Debug, Clone)]
pub struct OrderLine {
    /// Key in the `product_data` object: the shop's line id, or [`SHIPPING_LINE_KEY`].
    pub key: String,
    /// `product` (DUELL may know `service` too).
    pub entity_type: String,
    /// DUELL product.
    pub product_id: ProductId,
    /// Unit price before discount, without VAT.
    pub price_ex_vat: Decimal,
    /// Unit price before discount, with VAT.
    pub price_inc_vat: Decimal,
    /// Units.
    pub quantity: Decimal,
    /// VAT rate percent.
    pub vatrate_percent: Decimal,
    /// Discount per unit with VAT; `None` is sent as `""`, like DUELL's plugin.
    pub discount_amount: Option<Decimal>,
    /// Line text (e.g. variant attributes).
    pub comments: String,
}

/// A customer order (`logistics/orders/save`) or sales order (`sale/orders/save`) to create.
#[derive(Debug, Clone)]
pub struct NewOrder {
    /// Key in the `orders` object: the shop's order id.
    pub key: String,
    /// DUELL customer.
    pub customer_id: CustomerId,
    /// The shop order id; DUELL echoes it back and it is the only link to the shop order.
    pub reference_order_number: String,
    /// `"Ordre <id> <site name>"`.
    pub reference_comment: String,
    /// Order comment (reference text plus the customer's note).
    pub comments: String,
    /// Order time, shop local, sent as `YYYY-MM-DD HH:MM:SS`.
    pub order_date: PrimitiveDateTime,
    /// Rounding amount (DUELL's plugin sends 0).
    pub round_off_amount: Decimal,
    /// Billing address.
    pub order_address: Option<Address>,
    /// Shipping address (customer orders only).
    pub shipping_address: Option<Address>,
    /// Initial status of a customer order (1 "Behandles" when `None`). Ignored for sales orders.
    pub purchase_order_status_id: Option<u32>,
    /// For a sales order that follows a customer order: that customer order's id.
    pub ref_customer_order_id: Option<OrderId>,
    /// The lines.
    pub lines: Vec<OrderLine>,
}

/// A row DUELL returns for a created order.
#[derive(Debug, Clone, Deserialize)]
pub struct SavedOrder {
    /// The shop's order id echoed back.
    #[serde(default, deserialize_with = "de::string")]
    pub reference_order_number: String,
    /// DUELL's order id (for `logistics/orders/view/{id}`).
    pub order_id: OrderId,
    /// DUELL's human-facing order number.
    #[serde(default, deserialize_with = "de::string")]
    pub order_number: String,
    /// Every other field DUELL sent.
    #[serde(flatten)]
    pub extra: BTreeMap<String, Value>,
}

/// The result of a bulk save whose `status` was true. `validation` holds the rows DUELL refused
/// (a partial failure); `data` the rows it created.
#[derive(Debug, Clone)]
pub struct SaveOutcome<T> {
    /// `total_affected` as DUELL reported it (absent on some endpoints).
    pub total_affected: Option<u64>,
    /// The created rows.
    pub data: Vec<T>,
    /// Per-row refusals, when DUELL sent a non-empty `validation_message`.
    pub validation: Option<ValidationMessage>,
}

impl<T> SaveOutcome<T> {
    /// True when DUELL reported no refused row.
    pub fn is_complete(&self) -> bool {
        self.validation.as_ref().is_none_or(|v| v.is_empty())
    }
}

impl SaveOutcome<SavedOrder> {
    /// The created order for a shop order id, if DUELL created one.
    pub fn order_for(&self, reference_order_number: &str) -> Option<&SavedOrder> {
        self.data
            .iter()
            .find(|o| o.reference_order_number == reference_order_number)
    }
}

/// The status of a customer order (`purchase_order_status_id`, 1–11).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum OrderStatus {
    /// 1 Behandles (processing; set on creation).
    Processing,
    /// 2 Venter.
    Waiting,
    /// 3 Sendt.
    Shipped,
    /// 4 Mottatt.
    Received,
    /// 5 Fullført.
    Completed,
    /// 6 Fakturert.
    Invoiced,
    /// 7 Betalt.
    Paid,
    /// 8 Kansellert.
    Cancelled,
    /// 9 Under bestilling.
    BeingOrdered,
    /// 10 Klar for plukking.
    ReadyForPicking,
    /// 11 Ferdig plukket.
    Picked,
    /// Any other id.
    Other(u32),
}

impl OrderStatus {
    /// Maps a DUELL status id.
    pub fn from_id(id: u32) -> Self {
        use OrderStatus::*;
        match id {
            1 => Processing,
            2 => Waiting,
            3 => Shipped,
            4 => Received,
            5 => Completed,
            6 => Invoiced,
            7 => Paid,
            8 => Cancelled,
            9 => BeingOrdered,
            10 => ReadyForPicking,
            11 => Picked,
            n => Other(n),
        }
    }

    /// The DUELL status id.
    pub fn id(self) -> u32 {
        use OrderStatus::*;
        match self {
            Processing => 1,
            Waiting => 2,
            Shipped => 3,
            Received => 4,
            Completed => 5,
            Invoiced => 6,
            Paid => 7,
            Cancelled => 8,
            BeingOrdered => 9,
            ReadyForPicking => 10,
            Picked => 11,
            Other(n) => n,
        }
    }

    /// DUELL's Norwegian label.
    pub fn label(self) -> &'static str {
        use OrderStatus::*;
        match self {
            Processing => "Behandles",
            Waiting => "Venter",
            Shipped => "Sendt",
            Received => "Mottatt",
            Completed => "Fullført",
            Invoiced => "Fakturert",
            Paid => "Betalt",
            Cancelled => "Kansellert",
            BeingOrdered => "Under bestilling",
            ReadyForPicking => "Klar for plukking",
            Picked => "Ferdig plukket",
            Other(_) => "ukjent",
        }
    }
}

/// `data.order_data` of `logistics/orders/view/{id}`.
#[derive(Debug, Clone, Deserialize)]
pub struct OrderViewData {
    /// Status id (1–11).
    #[serde(default, deserialize_with = "de::opt_u64")]
    pub purchase_order_status_id: Option<u64>,
    /// The shop order id, when DUELL returns it.
    #[serde(default, deserialize_with = "de::opt_string")]
    pub reference_order_number: Option<String>,
    /// Every other field DUELL sent.
    #[serde(flatten)]
    pub extra: BTreeMap<String, Value>,
}

/// A line of a viewed order (fields beyond `product_id` and `quantity` are in `extra`).
#[derive(Debug, Clone, Deserialize)]
pub struct OrderViewLine {
    /// Product.
    #[serde(default, deserialize_with = "de::opt_u64")]
    pub product_id: Option<u64>,
    /// Units.
    #[serde(default, deserialize_with = "de::decimal")]
    pub quantity: Decimal,
    /// Every other field DUELL sent.
    #[serde(flatten)]
    pub extra: BTreeMap<String, Value>,
}

/// A customer order as `logistics/orders/view/{id}` returns it.
#[derive(Debug, Clone, Deserialize)]
pub struct OrderView {
    /// Header data; `purchase_order_status_id` is what status write-back needs.
    pub order_data: OrderViewData,
    /// Lines (may be absent on real DUELL; reference §6.12 marks them as probable).
    #[serde(default, deserialize_with = "de::list")]
    pub product_data: Vec<OrderViewLine>,
}

impl OrderView {
    /// The order status, if DUELL sent one.
    pub fn status(&self) -> Option<OrderStatus> {
        self.order_data
            .purchase_order_status_id
            .and_then(|id| u32::try_from(id).ok())
            .map(OrderStatus::from_id)
    }
}

/// An order found by its reference through the UNVERIFIED lookup
/// ([`crate::DuellClient::find_customer_orders_by_reference`]).
#[derive(Debug, Clone, Deserialize)]
pub struct OrderSummary {
    /// DUELL order id.
    pub order_id: OrderId,
    /// DUELL order number.
    #[serde(default, deserialize_with = "de::string")]
    pub order_number: String,
    /// The shop order id.
    #[serde(default, deserialize_with = "de::string")]
    pub reference_order_number: String,
    /// Status (customer orders).
    #[serde(default, deserialize_with = "de::opt_u64")]
    pub purchase_order_status_id: Option<u64>,
    /// Every other field DUELL sent.
    #[serde(flatten)]
    pub extra: BTreeMap<String, Value>,
}

/// One refusal extracted from a `validation_message`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ValidationEntry {
    /// The row it concerns, when the message says so (an object key such as the shop order id,
    /// a product number, or an array index).
    pub row: Option<String>,
    /// The message text.
    pub message: String,
}

/// DUELL's `validation_message`, whose shape is unknown (string, array or object). Kept as raw
/// JSON; [`ValidationMessage::entries`] flattens it into per-row messages.
#[derive(Debug, Clone, PartialEq)]
pub struct ValidationMessage(pub Value);

impl ValidationMessage {
    /// True for `null`, `""`, `[]`, `{}` and containers of only such values.
    pub fn is_empty(&self) -> bool {
        fn empty(v: &Value) -> bool {
            match v {
                Value::Null => true,
                Value::String(s) => s.trim().is_empty(),
                Value::Array(a) => a.iter().all(empty),
                Value::Object(m) => m.values().all(empty),
                Value::Bool(b) => !b,
                Value::Number(_) => false,
            }
        }
        empty(&self.0)
    }

    /// The raw JSON.
    pub fn as_json(&self) -> &Value {
        &self.0
    }

    /// The messages, each with the row it names when the shape tells.
    pub fn entries(&self) -> Vec<ValidationEntry> {
        let mut out = Vec::new();
        collect(&self.0, None, &mut out);
        out
    }

    /// The entries that name `row` (e.g. a shop order id or product number).
    pub fn for_row(&self, row: &str) -> Vec<String> {
        self.entries()
            .into_iter()
            .filter(|e| e.row.as_deref() == Some(row))
            .map(|e| e.message)
            .collect()
    }
}

const ROW_KEYS: [&str; 6] = [
    "row",
    "key",
    "reference_order_number",
    "product_number",
    "product_id",
    "index",
];
const MESSAGE_KEYS: [&str; 4] = ["message", "error", "msg", "validation_message"];

fn collect(v: &Value, row: Option<&str>, out: &mut Vec<ValidationEntry>) {
    match v {
        Value::Null => {}
        Value::String(s) if s.trim().is_empty() => {}
        Value::String(s) => out.push(ValidationEntry {
            row: row.map(str::to_string),
            message: s.clone(),
        }),
        Value::Array(items) => {
            for item in items {
                collect(item, row, out);
            }
        }
        Value::Object(map) => {
            let named_row = ROW_KEYS
                .iter()
                .find_map(|k| map.get(*k).and_then(de::string_from_value));
            let message = MESSAGE_KEYS.iter().find_map(|k| map.get(*k));
            match (named_row, message) {
                (Some(r), Some(m)) => collect(m, Some(&r), out),
                (None, Some(m)) if map.len() == 1 => collect(m, row, out),
                _ => {
                    for (k, v) in map {
                        // The outermost key names the row; deeper keys name a field.
                        match row {
                            None => collect(v, Some(k), out),
                            Some(r) => {
                                let mut inner = Vec::new();
                                collect(v, Some(r), &mut inner);
                                out.extend(inner.into_iter().map(|e| ValidationEntry {
                                    row: e.row,
                                    message: format!("{k}: {}", e.message),
                                }));
                            }
                        }
                    }
                }
            }
        }
        other => out.push(ValidationEntry {
            row: row.map(str::to_string),
            message: other.to_string(),
        }),
    }
}

impl fmt::Display for ValidationMessage {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let entries = self.entries();
        if entries.is_empty() {
            return f.write_str("no validation messages");
        }
        for (i, e) in entries.iter().enumerate() {
            if i > 0 {
                f.write_str("; ")?;
            }
            match &e.row {
                Some(r) => write!(f, "{r}: {}", e.message)?,
                None => f.write_str(&e.message)?,
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn reads_a_product_with_loose_types() {
        let p: Product = serde_json::from_value(json!({
            "product_id": "17", "product_number": 1001, "product_name": "Ullgenser",
            "price_inc_vat": "499.00", "special_price": "", "vatrate_percent": 25,
            "is_deleted": "0", "is_parent": 1, "parent_variant": 0, "product_image": "",
            "custom_fields": [{"description": "Farge", "value": "Rød"}], "weight": 2
        }))
        .unwrap();
        assert_eq!(p.product_id, ProductId(17));
        assert_eq!(p.product_number, "1001");
        assert_eq!(p.special_price, None);
        assert!(p.is_parent && !p.is_deleted);
        assert_eq!(p.parent(), None);
        assert_eq!(p.product_image, None);
        assert_eq!(p.custom_fields[0].value, "Rød");
        assert_eq!(p.extra["weight"], json!(2));
    }

    #[test]
    fn defaults_missing_product_fields() {
        let p: Product = serde_json::from_value(json!({"product_id": 5})).unwrap();
        assert_eq!(p.price_inc_vat, Decimal::ZERO);
        assert!(p.custom_fields.is_empty());
        assert_eq!(p.view_on_webshop, None);
    }

    #[test]
    fn flattens_validation_messages_of_any_shape() {
        let s = ValidationMessage(json!("Product not found"));
        assert_eq!(s.entries().len(), 1);
        let a = ValidationMessage(json!(["a", "", "b"]));
        assert_eq!(a.entries().len(), 2);
        let o = ValidationMessage(
            json!({"1234": ["Unknown product 9"], "1235": {"customer_id": "missing"}}),
        );
        assert_eq!(o.for_row("1234"), vec!["Unknown product 9".to_string()]);
        assert_eq!(o.for_row("1235"), vec!["customer_id: missing".to_string()]);
        let rows = ValidationMessage(json!([{"product_number": "X1", "message": "not found"}]));
        assert_eq!(rows.for_row("X1"), vec!["not found".to_string()]);
        assert!(ValidationMessage(json!([])).is_empty());
        assert!(ValidationMessage(json!({"a": []})).is_empty());
        assert!(!o.is_empty());
    }
}
