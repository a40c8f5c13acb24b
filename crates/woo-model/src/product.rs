//! Products, variations and categories as WooCommerce's REST API reads and writes them.

use rust_decimal::Decimal;
use serde::{Deserialize, Serialize, Serializer};
use serde_json::Value;
use time::PrimitiveDateTime;

use crate::de;
use crate::error::ApiError;

/// Most items WooCommerce accepts in one batch request.
pub const BATCH_LIMIT: usize = 100;
/// Largest `per_page`.
pub const MAX_PER_PAGE: u32 = 100;

/// `stock_status` (v3). On v2 the client maps it to and from `in_stock`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum StockStatus {
    /// `instock`.
    Instock,
    /// `outofstock`.
    Outofstock,
    /// `onbackorder`.
    Onbackorder,
}

/// `manage_stock`: a bool, or `"parent"` on variations whose parent manages stock.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum ManageStock {
    /// Stock not managed (quantity is null).
    #[default]
    No,
    /// Stock managed on this product or variation.
    Yes,
    /// A variation using its parent's stock.
    Parent,
}

fn manage_stock<'de, D: serde::Deserializer<'de>>(d: D) -> Result<ManageStock, D::Error> {
    Ok(match Value::deserialize(d)? {
        Value::Bool(true) => ManageStock::Yes,
        Value::String(s) if s == "parent" => ManageStock::Parent,
        Value::String(s) if s == "yes" || s == "true" => ManageStock::Yes,
        _ => ManageStock::No,
    })
}

/// `{id, name, slug}` of a category or tag on a product.
#[derive(Clone, Debug, Default, PartialEq, Deserialize, Serialize)]
pub struct TermRef {
    /// Term id.
    #[serde(default, deserialize_with = "de::u64_lenient")]
    pub id: u64,
    /// Name, HTML-escaped by WordPress (`&amp;`).
    #[serde(default, deserialize_with = "de::string")]
    pub name: String,
    /// Slug.
    #[serde(default, deserialize_with = "de::string")]
    pub slug: String,
}

/// An image attached to a product.
#[derive(Clone, Debug, Default, PartialEq, Deserialize, Serialize)]
pub struct Image {
    /// Attachment id (0 for v2's placeholder).
    #[serde(default, deserialize_with = "de::u64_lenient")]
    pub id: u64,
    /// The store's own uploads URL, never the URL that was sent.
    #[serde(default, deserialize_with = "de::string")]
    pub src: String,
    /// File name.
    #[serde(default, deserialize_with = "de::string")]
    pub name: String,
    /// Alt text.
    #[serde(default, deserialize_with = "de::string")]
    pub alt: String,
}

/// A product attribute (`options`) or a variation attribute (`option`).
#[derive(Clone, Debug, Default, PartialEq, Deserialize, Serialize)]
pub struct Attribute {
    /// 0 for custom attributes.
    #[serde(default, deserialize_with = "de::u64_lenient")]
    pub id: u64,
    /// Label.
    #[serde(default, deserialize_with = "de::string")]
    pub name: String,
    /// Position.
    #[serde(default, deserialize_with = "de::i64_lenient")]
    pub position: i64,
    /// Shown on the product page.
    #[serde(default, deserialize_with = "de::bool_lenient")]
    pub visible: bool,
    /// Used for variations.
    #[serde(default, deserialize_with = "de::bool_lenient")]
    pub variation: bool,
    /// Values (products).
    #[serde(default, deserialize_with = "de::vec_lenient")]
    pub options: Vec<String>,
    /// Value (variations).
    #[serde(default, deserialize_with = "de::opt_string")]
    pub option: Option<String>,
}

/// A `meta_data` entry.
#[derive(Clone, Debug, Default, PartialEq, Deserialize, Serialize)]
pub struct MetaData {
    /// Meta id.
    #[serde(default, deserialize_with = "de::u64_lenient")]
    pub id: u64,
    /// Key.
    #[serde(default, deserialize_with = "de::string")]
    pub key: String,
    /// Value as stored (numbers come back as strings, objects as objects).
    #[serde(default)]
    pub value: Value,
}

/// A product or variation as read (edit context for writes, view for GETs).
///
/// Every field has a default so that `_fields` reads decode: fields not asked for are empty.
#[derive(Clone, Debug, Default, PartialEq, Deserialize)]
pub struct Product {
    /// Id (0 if `_fields` left it out).
    #[serde(default, deserialize_with = "de::u64_lenient")]
    pub id: u64,
    /// Name (HTML-escaped: `&` reads `&amp;`).
    #[serde(default, deserialize_with = "de::string")]
    pub name: String,
    /// Slug.
    #[serde(default, deserialize_with = "de::string")]
    pub slug: String,
    /// `simple`, `variable`, `variation`, ...
    #[serde(default, rename = "type", deserialize_with = "de::string")]
    pub kind: String,
    /// `publish`, `draft`, `private`, `pending`, `trash`.
    #[serde(default, deserialize_with = "de::string")]
    pub status: String,
    /// Parent product of a variation.
    #[serde(default, deserialize_with = "de::u64_lenient")]
    pub parent_id: u64,
    /// SKU (`""` = none).
    #[serde(default, deserialize_with = "de::string")]
    pub sku: String,
    /// Description (HTML; rendered in view context).
    #[serde(default, deserialize_with = "de::string")]
    pub description: String,
    /// Short description.
    #[serde(default, deserialize_with = "de::string")]
    pub short_description: String,
    /// Active price (derived by WooCommerce).
    #[serde(default, deserialize_with = "de::opt_decimal")]
    pub price: Option<Decimal>,
    /// Regular price; `None` when unset.
    #[serde(default, deserialize_with = "de::opt_decimal")]
    pub regular_price: Option<Decimal>,
    /// Sale price; `None` when unset (also when stored as `"0"`, which reads back `""`).
    #[serde(default, deserialize_with = "de::opt_decimal")]
    pub sale_price: Option<Decimal>,
    /// Computed live from prices and sale dates.
    #[serde(default, deserialize_with = "de::bool_lenient")]
    pub on_sale: bool,
    /// Sale start, site time.
    #[serde(default, deserialize_with = "de::opt_datetime")]
    pub date_on_sale_from: Option<PrimitiveDateTime>,
    /// Sale start, UTC.
    #[serde(default, deserialize_with = "de::opt_datetime")]
    pub date_on_sale_from_gmt: Option<PrimitiveDateTime>,
    /// Sale end, site time.
    #[serde(default, deserialize_with = "de::opt_datetime")]
    pub date_on_sale_to: Option<PrimitiveDateTime>,
    /// Sale end, UTC.
    #[serde(default, deserialize_with = "de::opt_datetime")]
    pub date_on_sale_to_gmt: Option<PrimitiveDateTime>,
    /// Created, UTC.
    #[serde(default, deserialize_with = "de::opt_datetime")]
    pub date_created_gmt: Option<PrimitiveDateTime>,
    /// Last modified, UTC (moves on every REST save).
    #[serde(default, deserialize_with = "de::opt_datetime")]
    pub date_modified_gmt: Option<PrimitiveDateTime>,
    /// Stock management.
    #[serde(default, deserialize_with = "manage_stock")]
    pub manage_stock: ManageStock,
    /// Stock (may be negative; `None` when not managed).
    #[serde(default, deserialize_with = "de::opt_i64")]
    pub stock_quantity: Option<i64>,
    /// Stock status (v3; filled from `in_stock` on v2).
    #[serde(default, deserialize_with = "opt_stock_status")]
    pub stock_status: Option<StockStatus>,
    /// `no`, `notify`, `yes`.
    #[serde(default, deserialize_with = "de::string")]
    pub backorders: String,
    /// `taxable`, `shipping`, `none`.
    #[serde(default, deserialize_with = "de::string")]
    pub tax_status: String,
    /// Tax class (`""` = standard).
    #[serde(default, deserialize_with = "de::string")]
    pub tax_class: String,
    /// Categories.
    #[serde(default, deserialize_with = "de::vec_lenient")]
    pub categories: Vec<TermRef>,
    /// Images of a product (index 0 is the featured image).
    #[serde(default, deserialize_with = "de::vec_lenient")]
    pub images: Vec<Image>,
    /// The single image of a variation.
    #[serde(default, deserialize_with = "opt_image")]
    pub image: Option<Image>,
    /// Attributes.
    #[serde(default, deserialize_with = "de::vec_lenient")]
    pub attributes: Vec<Attribute>,
    /// Variation ids of a variable product.
    #[serde(default, deserialize_with = "de::vec_lenient")]
    pub variations: Vec<u64>,
    /// Meta data.
    #[serde(default, deserialize_with = "de::vec_lenient")]
    pub meta_data: Vec<MetaData>,
    /// v2's stock flag, mapped into `stock_status` by the client.
    #[serde(default, deserialize_with = "opt_bool")]
    pub in_stock: Option<bool>,
}

impl Product {
    /// The value of a meta key, if present.
    pub fn meta(&self, key: &str) -> Option<&Value> {
        self.meta_data
            .iter()
            .find(|m| m.key == key)
            .map(|m| &m.value)
    }

    /// Maps v2's `in_stock` to `stock_status`, so callers read one field on both versions.
    pub fn normalise(mut self) -> Self {
        if self.stock_status.is_none() {
            if let Some(in_stock) = self.in_stock {
                self.stock_status = Some(if in_stock {
                    StockStatus::Instock
                } else {
                    StockStatus::Outofstock
                });
            }
        }
        self
    }
}

fn opt_stock_status<'de, D: serde::Deserializer<'de>>(
    d: D,
) -> Result<Option<StockStatus>, D::Error> {
    Ok(serde_json::from_value(Value::deserialize(d)?).ok())
}

fn opt_bool<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Option<bool>, D::Error> {
    Ok(match Value::deserialize(d)? {
        Value::Bool(b) => Some(b),
        _ => None,
    })
}

fn opt_image<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Option<Image>, D::Error> {
    Ok(match Value::deserialize(d)? {
        v @ Value::Object(_) => serde_json::from_value(v).ok(),
        _ => None,
    })
}

/// A value that can be set, or cleared with `""` (WooCommerce's way to unset prices and
/// sale dates; `null` would clear strings but is ignored on dates).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Clearable<T> {
    /// Set this value.
    Set(T),
    /// Clear the field (sent as `""`).
    Clear,
}

impl Serialize for Clearable<Decimal> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        match self {
            Clearable::Set(d) => s.serialize_str(&d.to_string()),
            Clearable::Clear => s.serialize_str(""),
        }
    }
}

impl Serialize for Clearable<PrimitiveDateTime> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        match self {
            Clearable::Set(d) => s.serialize_str(&de::format_datetime(*d)),
            Clearable::Clear => s.serialize_str(""),
        }
    }
}

/// `{id}` reference (categories are accepted by id only).
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct IdRef {
    /// Id.
    pub id: u64,
}

/// An image to set: `{id}` reuses an attachment; `{src}` makes WooCommerce download the URL
/// into a *new* attachment on every write (remember the returned id and send it next time).
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
pub struct ImageWrite {
    /// Existing attachment id.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub id: Option<u64>,
    /// URL to download.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub src: Option<String>,
    /// Title.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// Alt text.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub alt: Option<String>,
}

/// A custom attribute to set (the list replaces the product's attributes), or on a
/// variation `{name, option}`.
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
pub struct AttributeWrite {
    /// Global attribute id; `None` for custom attributes.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub id: Option<u64>,
    /// Name.
    pub name: String,
    /// Values (products).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub options: Option<Vec<String>>,
    /// Value (variations).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub option: Option<String>,
    /// Shown on the product page.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub visible: Option<bool>,
    /// Used for variations.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub variation: Option<bool>,
    /// Position.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub position: Option<i64>,
}

/// A meta entry to upsert by key; `value: None` deletes the key.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct MetaWrite {
    /// Key.
    pub key: String,
    /// Value; `None` (JSON null) deletes the key.
    pub value: Option<Value>,
}

/// Fields to write on a product or variation. Absent fields are left alone (never sent as
/// `null`, which WooCommerce turns into `""`/0/false).
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
pub struct ProductWrite {
    /// Required for batch updates; must be absent on creates.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub id: Option<u64>,
    /// Name.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// `simple`, `variable`, ...
    #[serde(rename = "type", skip_serializing_if = "Option::is_none")]
    pub kind: Option<String>,
    /// Status.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub status: Option<String>,
    /// SKU.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub sku: Option<String>,
    /// Description.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    /// Short description.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub short_description: Option<String>,
    /// Regular price (sent as a string).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub regular_price: Option<Clearable<Decimal>>,
    /// Sale price; a value ≥ the regular price is discarded by WooCommerce.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub sale_price: Option<Clearable<Decimal>>,
    /// Sale start in UTC.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub date_on_sale_from_gmt: Option<Clearable<PrimitiveDateTime>>,
    /// Sale end in UTC.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub date_on_sale_to_gmt: Option<Clearable<PrimitiveDateTime>>,
    /// Turn stock management on (send with `stock_quantity`) or off.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub manage_stock: Option<bool>,
    /// Absolute stock (WooCommerce has no atomic delta).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub stock_quantity: Option<i64>,
    /// Only honoured when stock is not managed.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub stock_status: Option<StockStatus>,
    /// `no`, `notify`, `yes`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub backorders: Option<String>,
    /// Tax class.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tax_class: Option<String>,
    /// Categories by id (replaces the set).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub categories: Option<Vec<IdRef>>,
    /// Images (replaces the set).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub images: Option<Vec<ImageWrite>>,
    /// The single image of a variation.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub image: Option<ImageWrite>,
    /// Attributes (replaces the set).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub attributes: Option<Vec<AttributeWrite>>,
    /// Meta entries to upsert by key.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub meta_data: Option<Vec<MetaWrite>>,
    /// Anything else, sent as is.
    #[serde(flatten)]
    pub extra: serde_json::Map<String, Value>,
}

/// One page of a collection.
#[derive(Clone, Debug, PartialEq)]
pub struct Page<T> {
    /// The items.
    pub items: Vec<T>,
    /// `X-WP-Total`.
    pub total: Option<u64>,
    /// `X-WP-TotalPages`.
    pub total_pages: Option<u64>,
}

/// One result of a batch: the object, or WooCommerce's per-item error.
#[derive(Clone, Debug, PartialEq)]
pub enum BatchItem<T> {
    /// Applied.
    Ok(T),
    /// Refused; `id` is 0 for creates, `None` for an update without id.
    Err {
        /// The id WooCommerce echoed.
        id: Option<u64>,
        /// The error (`product_invalid_sku`, `woocommerce_rest_product_invalid_id`, ...).
        error: ApiError,
    },
}

impl<T> BatchItem<T> {
    /// The object, if applied.
    pub fn ok(&self) -> Option<&T> {
        match self {
            BatchItem::Ok(t) => Some(t),
            BatchItem::Err { .. } => None,
        }
    }

    /// The error, if refused.
    pub fn err(&self) -> Option<&ApiError> {
        match self {
            BatchItem::Ok(_) => None,
            BatchItem::Err { error, .. } => Some(error),
        }
    }
}

/// A batch request: creates, then updates, then (always permanent) deletes.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Batch<W> {
    /// Objects to create (no `id`).
    pub create: Vec<W>,
    /// Objects to update (with `id`).
    pub update: Vec<W>,
    /// Ids to delete permanently.
    pub delete: Vec<u64>,
}

impl<W> Batch<W> {
    /// Total number of items (the limit is 100).
    pub fn len(&self) -> usize {
        self.create.len() + self.update.len() + self.delete.len()
    }

    /// True when there is nothing to send.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// Per-item results in request order.
#[derive(Clone, Debug, PartialEq)]
pub struct BatchResult<T> {
    /// One per create, in order.
    pub create: Vec<BatchItem<T>>,
    /// One per update, in order.
    pub update: Vec<BatchItem<T>>,
    /// One per delete (entries with id 0 are skipped by WooCommerce).
    pub delete: Vec<BatchItem<T>>,
}

/// A product category.
#[derive(Clone, Debug, Default, PartialEq, Deserialize)]
pub struct Category {
    /// Term id.
    #[serde(default, deserialize_with = "de::u64_lenient")]
    pub id: u64,
    /// Name (HTML-escaped).
    #[serde(default, deserialize_with = "de::string")]
    pub name: String,
    /// Slug.
    #[serde(default, deserialize_with = "de::string")]
    pub slug: String,
    /// Parent term id (0 = top level).
    #[serde(default, deserialize_with = "de::u64_lenient")]
    pub parent: u64,
    /// Number of products.
    #[serde(default, deserialize_with = "de::i64_lenient")]
    pub count: i64,
}

/// Outcome of creating a category.
#[derive(Clone, Debug, PartialEq)]
pub enum CategoryCreated {
    /// A new category.
    Created(Category),
    /// A category with this name already existed under the parent (`term_exists`).
    Existing {
        /// Its id.
        id: u64,
    },
}

impl CategoryCreated {
    /// The category id either way.
    pub fn id(&self) -> u64 {
        match self {
            CategoryCreated::Created(c) => c.id,
            CategoryCreated::Existing { id } => *id,
        }
    }
}
