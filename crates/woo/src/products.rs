//! Products, variations, categories: models and calls.

use reqwest::Method;
use rust_decimal::Decimal;
use serde::{Deserialize, Serialize, Serializer};
use serde_json::{json, Value};
use time::{OffsetDateTime, PrimitiveDateTime, UtcOffset};

use crate::client::{ApiVersion, Idempotency, WooClient, WooRequest};
use crate::de;
use crate::error::{ApiError, Error, Result};

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

    pub(crate) fn normalise(mut self) -> Self {
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

/// `orderby` for lists.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum OrderBy {
    /// Stable and complete; the only safe order for full scans on 7.9.
    Id,
    /// Default; products have no id tie-break on 7.9 (rows skip and repeat across pages).
    Date,
    /// Last modification; same caveat as `Date` for products.
    Modified,
    /// Title.
    Title,
    /// Order of `include`.
    Include,
}

impl OrderBy {
    fn as_str(self) -> &'static str {
        match self {
            OrderBy::Id => "id",
            OrderBy::Date => "date",
            OrderBy::Modified => "modified",
            OrderBy::Title => "title",
            OrderBy::Include => "include",
        }
    }
}

/// `order` for lists.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SortOrder {
    /// Ascending.
    Asc,
    /// Descending (WooCommerce's default).
    Desc,
}

impl SortOrder {
    fn as_str(self) -> &'static str {
        match self {
            SortOrder::Asc => "asc",
            SortOrder::Desc => "desc",
        }
    }
}

/// Formats a cursor as WooCommerce needs it: UTC without an offset (used with
/// `dates_are_gmt=true`). A value with `Z` would be shifted by the site's timezone (7.9).
pub fn format_gmt_cursor(t: OffsetDateTime) -> String {
    let utc = t.to_offset(UtcOffset::UTC);
    de::format_datetime(PrimitiveDateTime::new(utc.date(), utc.time()))
}

/// Filters for `GET /products` (and variations).
#[derive(Clone, Debug, Default)]
pub struct ProductQuery {
    /// Exact SKU, case-insensitive; may return variations. Several as `A,B`.
    pub sku: Option<String>,
    /// Only these ids.
    pub include: Vec<u64>,
    /// Strictly after this instant (sent as UTC without offset, `dates_are_gmt=true`).
    pub modified_after: Option<OffsetDateTime>,
    /// Status filter (`any` by default on the server).
    pub status: Option<String>,
    /// Product type filter.
    pub kind: Option<String>,
    /// Parent ids.
    pub parent: Vec<u64>,
    /// Ordering.
    pub orderby: Option<OrderBy>,
    /// Direction.
    pub order: Option<SortOrder>,
    /// 1..=100.
    pub per_page: Option<u32>,
    /// 1-based page.
    pub page: Option<u32>,
    /// `_fields`: top-level field names only. `id` is added when missing because WooCommerce
    /// does not keep it implicitly.
    pub fields: Vec<String>,
    /// Extra raw parameters.
    pub extra: Vec<(String, String)>,
}

impl ProductQuery {
    pub(crate) fn to_params(&self) -> Result<Vec<(String, String)>> {
        let mut q = Vec::new();
        if let Some(sku) = &self.sku {
            q.push(("sku".into(), sku.clone()));
        }
        if !self.include.is_empty() {
            q.push(("include".into(), join_ids(&self.include)));
        }
        if !self.parent.is_empty() {
            q.push(("parent".into(), join_ids(&self.parent)));
        }
        if let Some(t) = self.modified_after {
            q.push(("modified_after".into(), format_gmt_cursor(t)));
            q.push(("dates_are_gmt".into(), "true".into()));
        }
        if let Some(s) = &self.status {
            q.push(("status".into(), s.clone()));
        }
        if let Some(k) = &self.kind {
            q.push(("type".into(), k.clone()));
        }
        push_paging(&mut q, self.orderby, self.order, self.per_page, self.page)?;
        push_fields(&mut q, &self.fields);
        q.extend(self.extra.iter().cloned());
        Ok(q)
    }
}

pub(crate) fn join_ids(ids: &[u64]) -> String {
    ids.iter().map(u64::to_string).collect::<Vec<_>>().join(",")
}

pub(crate) fn push_paging(
    q: &mut Vec<(String, String)>,
    orderby: Option<OrderBy>,
    order: Option<SortOrder>,
    per_page: Option<u32>,
    page: Option<u32>,
) -> Result<()> {
    if let Some(o) = orderby {
        q.push(("orderby".into(), o.as_str().into()));
    }
    if let Some(o) = order {
        q.push(("order".into(), o.as_str().into()));
    }
    if let Some(pp) = per_page {
        if !(1..=MAX_PER_PAGE).contains(&pp) {
            return Err(Error::InvalidRequest(format!(
                "per_page must be between 1 and {MAX_PER_PAGE}, got {pp}"
            )));
        }
        q.push(("per_page".into(), pp.to_string()));
    }
    if let Some(p) = page {
        if p == 0 {
            return Err(Error::InvalidRequest("page starts at 1".into()));
        }
        q.push(("page".into(), p.to_string()));
    }
    Ok(())
}

pub(crate) fn push_fields(q: &mut Vec<(String, String)>, fields: &[String]) {
    if fields.is_empty() {
        return;
    }
    let mut f: Vec<String> = fields.to_vec();
    if !f.iter().any(|x| x == "id") {
        f.insert(0, "id".into());
    }
    q.push(("_fields".into(), f.join(",")));
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

fn parse_batch_items<T: serde::de::DeserializeOwned>(
    v: Option<&Value>,
    endpoint: &str,
    map: fn(T) -> T,
) -> Result<Vec<BatchItem<T>>> {
    let Some(Value::Array(items)) = v else {
        return Ok(Vec::new());
    };
    let mut out = Vec::with_capacity(items.len());
    for item in items {
        if let Some(err) = item.get("error") {
            let error: ApiError =
                serde_json::from_value(err.clone()).map_err(|source| Error::Decode {
                    endpoint: endpoint.to_string(),
                    source,
                })?;
            let id = item.get("id").and_then(crate::error::json_u64);
            out.push(BatchItem::Err { id, error });
        } else {
            let t: T = serde_json::from_value(item.clone()).map_err(|source| Error::Decode {
                endpoint: endpoint.to_string(),
                source,
            })?;
            out.push(BatchItem::Ok(map(t)));
        }
    }
    Ok(out)
}

pub(crate) fn parse_batch<T: serde::de::DeserializeOwned>(
    body: &Value,
    endpoint: &str,
    map: fn(T) -> T,
) -> Result<BatchResult<T>> {
    Ok(BatchResult {
        create: parse_batch_items(body.get("create"), endpoint, map)?,
        update: parse_batch_items(body.get("update"), endpoint, map)?,
        delete: parse_batch_items(body.get("delete"), endpoint, map)?,
    })
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

/// Filters for `GET /products/categories`.
#[derive(Clone, Debug, Default)]
pub struct CategoryQuery {
    /// Name search.
    pub search: Option<String>,
    /// Parent id (0 = top level).
    pub parent: Option<u64>,
    /// Slug.
    pub slug: Option<String>,
    /// 1..=100.
    pub per_page: Option<u32>,
    /// Page.
    pub page: Option<u32>,
}

/// A product as read from any product or variation endpoint (v2's `in_stock` mapped).
pub(crate) fn product_from_value(v: Value, endpoint: &str) -> Result<Product> {
    serde_json::from_value::<Product>(v)
        .map(Product::normalise)
        .map_err(|source| Error::Decode {
            endpoint: endpoint.to_string(),
            source,
        })
}

impl WooClient {
    /// Serialises a write, mapping `stock_status` to v2's `in_stock`.
    pub(crate) fn product_body(&self, w: &ProductWrite) -> Result<Value> {
        let mut v = serde_json::to_value(w).map_err(|source| Error::Decode {
            endpoint: "serialise product".into(),
            source,
        })?;
        if self.api_version() == ApiVersion::V2 {
            if let Some(obj) = v.as_object_mut() {
                if let Some(ss) = obj.remove("stock_status") {
                    obj.insert("in_stock".into(), Value::Bool(ss == "instock"));
                }
            }
        }
        Ok(v)
    }

    /// `GET /products/{id}` (also returns a variation when given a variation id).
    pub async fn get_product(&self, id: u64) -> Result<Product> {
        let req = WooRequest::new(
            Method::GET,
            format!("products/{id}"),
            Idempotency::Idempotent,
        );
        let v = self.send(req).await?.body;
        product_from_value(v, "GET products/{id}")
    }

    /// `GET /products` with filters; one page.
    pub async fn list_products(&self, query: &ProductQuery) -> Result<Page<Product>> {
        self.list_products_at("products", query).await
    }

    async fn list_products_at(&self, path: &str, query: &ProductQuery) -> Result<Page<Product>> {
        let mut req = WooRequest::new(Method::GET, path, Idempotency::Idempotent);
        req.query = query.to_params()?;
        let endpoint = format!("GET {}", crate::client::endpoint_template(path));
        let resp = self.send(req).await?;
        let items: Vec<Value> = resp.clone().decode(&endpoint)?;
        let items = items
            .into_iter()
            .map(|v| product_from_value(v, &endpoint))
            .collect::<Result<Vec<_>>>()?;
        Ok(Page {
            items,
            total: resp.total,
            total_pages: resp.total_pages,
        })
    }

    /// Finds products (or variations) by exact, case-insensitive SKU.
    pub async fn find_by_sku(&self, sku: &str) -> Result<Vec<Product>> {
        let q = ProductQuery {
            sku: Some(sku.to_string()),
            per_page: Some(MAX_PER_PAGE),
            ..Default::default()
        };
        Ok(self.list_products(&q).await?.items)
    }

    /// A page-by-page scan of all products ordered by id ascending (the only ordering that
    /// neither skips nor repeats rows on 7.9). Memory use is one page.
    pub fn scan_products(&self, fields: &[&str], per_page: u32) -> ProductScan {
        ProductScan {
            client: self.clone(),
            query: ProductQuery {
                orderby: Some(OrderBy::Id),
                order: Some(SortOrder::Asc),
                per_page: Some(per_page.clamp(1, MAX_PER_PAGE)),
                fields: fields.iter().map(|f| f.to_string()).collect(),
                ..Default::default()
            },
            next_page: 1,
            done: false,
        }
    }

    /// `POST /products`. Not retried after a timeout (see [`Error::OutcomeUnknown`]).
    pub async fn create_product(&self, product: &ProductWrite) -> Result<Product> {
        let req = WooRequest::new(Method::POST, "products", Idempotency::NonIdempotent)
            .json(self.product_body(product)?);
        let v = self.send(req).await?.body;
        product_from_value(v, "POST products")
    }

    /// `PUT /products/{id}`.
    pub async fn update_product(&self, id: u64, product: &ProductWrite) -> Result<Product> {
        let mut body = self.product_body(product)?;
        if let Some(o) = body.as_object_mut() {
            o.remove("id");
        }
        let req = WooRequest::new(
            Method::PUT,
            format!("products/{id}"),
            Idempotency::Idempotent,
        )
        .json(body);
        let v = self.send(req).await?.body;
        product_from_value(v, "PUT products/{id}")
    }

    /// `DELETE /products/{id}` (`force=true` deletes for good; otherwise trash).
    pub async fn delete_product(&self, id: u64, force: bool) -> Result<Product> {
        let req = WooRequest::new(
            Method::DELETE,
            format!("products/{id}"),
            Idempotency::Idempotent,
        )
        .query("force", force.to_string());
        let v = self.send(req).await?.body;
        product_from_value(v, "DELETE products/{id}")
    }

    /// `POST /products/batch` with at most 100 items. Per-item errors come back per item in
    /// request order. A batch containing creates is not retried after a timeout; the error
    /// is [`Error::OutcomeUnknown`] and the caller should reconcile by SKU.
    pub async fn batch_products(
        &self,
        batch: &Batch<ProductWrite>,
    ) -> Result<BatchResult<Product>> {
        self.batch_at("products/batch", batch).await
    }

    async fn batch_at(
        &self,
        path: &str,
        batch: &Batch<ProductWrite>,
    ) -> Result<BatchResult<Product>> {
        if batch.len() > BATCH_LIMIT {
            return Err(Error::BatchTooLarge(batch.len()));
        }
        let mut body = serde_json::Map::new();
        if !batch.create.is_empty() {
            let items = batch
                .create
                .iter()
                .map(|w| self.product_body(w))
                .collect::<Result<Vec<_>>>()?;
            body.insert("create".into(), Value::Array(items));
        }
        if !batch.update.is_empty() {
            let items = batch
                .update
                .iter()
                .map(|w| self.product_body(w))
                .collect::<Result<Vec<_>>>()?;
            body.insert("update".into(), Value::Array(items));
        }
        if !batch.delete.is_empty() {
            body.insert("delete".into(), json!(batch.delete));
        }
        let idempotency = if batch.create.is_empty() {
            Idempotency::Idempotent
        } else {
            Idempotency::NonIdempotent
        };
        let req = WooRequest::new(Method::POST, path, idempotency).json(Value::Object(body));
        let endpoint = format!("POST {}", crate::client::endpoint_template(path));
        let v = self.send(req).await?.body;
        parse_batch(&v, &endpoint, Product::normalise)
    }

    /// `GET /products/{id}/variations`.
    pub async fn list_variations(
        &self,
        product_id: u64,
        query: &ProductQuery,
    ) -> Result<Page<Product>> {
        self.list_products_at(&format!("products/{product_id}/variations"), query)
            .await
    }

    /// `POST /products/{id}/variations`.
    pub async fn create_variation(&self, product_id: u64, v: &ProductWrite) -> Result<Product> {
        let req = WooRequest::new(
            Method::POST,
            format!("products/{product_id}/variations"),
            Idempotency::NonIdempotent,
        )
        .json(self.product_body(v)?);
        let body = self.send(req).await?.body;
        product_from_value(body, "POST products/{id}/variations")
    }

    /// `PUT /products/{id}/variations/{vid}`.
    pub async fn update_variation(
        &self,
        product_id: u64,
        variation_id: u64,
        v: &ProductWrite,
    ) -> Result<Product> {
        let mut body = self.product_body(v)?;
        if let Some(o) = body.as_object_mut() {
            o.remove("id");
        }
        let req = WooRequest::new(
            Method::PUT,
            format!("products/{product_id}/variations/{variation_id}"),
            Idempotency::Idempotent,
        )
        .json(body);
        let body = self.send(req).await?.body;
        product_from_value(body, "PUT products/{id}/variations/{id}")
    }

    /// `POST /products/{id}/variations/batch` (≤ 100 items).
    pub async fn batch_variations(
        &self,
        product_id: u64,
        batch: &Batch<ProductWrite>,
    ) -> Result<BatchResult<Product>> {
        self.batch_at(&format!("products/{product_id}/variations/batch"), batch)
            .await
    }

    /// `GET /products/categories`.
    pub async fn list_categories(&self, query: &CategoryQuery) -> Result<Page<Category>> {
        let mut req = WooRequest::new(Method::GET, "products/categories", Idempotency::Idempotent);
        if let Some(s) = &query.search {
            req = req.query("search", s.clone());
        }
        if let Some(p) = query.parent {
            req = req.query("parent", p.to_string());
        }
        if let Some(s) = &query.slug {
            req = req.query("slug", s.clone());
        }
        push_paging(&mut req.query, None, None, query.per_page, query.page)?;
        let resp = self.send(req).await?;
        let (total, total_pages) = (resp.total, resp.total_pages);
        let items: Vec<Category> = resp.decode("GET products/categories")?;
        Ok(Page {
            items,
            total,
            total_pages,
        })
    }

    /// `POST /products/categories`; a name that exists under the parent returns its id.
    pub async fn create_category(
        &self,
        name: &str,
        parent: Option<u64>,
    ) -> Result<CategoryCreated> {
        let mut body = json!({ "name": name });
        if let Some(p) = parent {
            body["parent"] = json!(p);
        }
        let req = WooRequest::new(
            Method::POST,
            "products/categories",
            Idempotency::NonIdempotent,
        )
        .json(body);
        match self.call::<Category>(req).await {
            Ok(c) => Ok(CategoryCreated::Created(c)),
            Err(e) if e.code() == Some("term_exists") => {
                match e.api_error().and_then(ApiError::resource_id) {
                    Some(id) => Ok(CategoryCreated::Existing { id }),
                    None => Err(e),
                }
            }
            Err(e) => Err(e),
        }
    }

    /// `DELETE /products/categories/{id}?force=true`.
    pub async fn delete_category(&self, id: u64) -> Result<()> {
        let req = WooRequest::new(
            Method::DELETE,
            format!("products/categories/{id}"),
            Idempotency::Idempotent,
        )
        .query("force", "true");
        self.send(req).await.map(|_| ())
    }
}

/// Page iterator over all products ordered by id; see [`WooClient::scan_products`].
#[derive(Debug)]
pub struct ProductScan {
    client: WooClient,
    query: ProductQuery,
    next_page: u32,
    done: bool,
}

impl ProductScan {
    /// The next page, or `None` after the last one.
    pub async fn next_page(&mut self) -> Result<Option<Vec<Product>>> {
        if self.done {
            return Ok(None);
        }
        let mut q = self.query.clone();
        q.page = Some(self.next_page);
        let page = self.client.list_products(&q).await?;
        let per_page = q.per_page.unwrap_or(MAX_PER_PAGE) as usize;
        let last = page.items.len() < per_page
            || page
                .total_pages
                .is_some_and(|tp| u64::from(self.next_page) >= tp);
        self.next_page += 1;
        if last {
            self.done = true;
        }
        if page.items.is_empty() {
            return Ok(None);
        }
        Ok(Some(page.items))
    }
}
