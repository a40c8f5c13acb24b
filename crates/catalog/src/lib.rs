//! Pure catalogue rules (SPEC §3.1), no IO: what a DUELL product should look like in
//! WooCommerce under a store's settings, whether WooCommerce already holds it, and the smallest
//! write that makes it so.
//!
//! The catalog publisher keeps, per product, the last DUELL facts ([`Source`]) and what it knows
//! WooCommerce holds ([`WooState`], from its own confirmed writes or from reads). [`desired`]
//! turns the facts into the values DUELL owns ([`Desired`]); [`update_write`] compares them with
//! the WooCommerce state and returns only the fields that differ, so an unchanged product costs
//! no request at all.
#![forbid(unsafe_code)]

mod campaign;
pub mod holds;
pub mod plan;
mod price;
mod tax;
mod text;

use std::collections::BTreeMap;

use duellsync_events::v1::DuellProduct;
use duellsync_settings::StoreSettings;
use duellsync_woo_model::{
    AttributeWrite, Clearable, ImageWrite, ManageStock, MetaWrite, Product, ProductWrite,
};
use rust_decimal::Decimal;
use serde::{Deserialize, Serialize};

pub use campaign::{parse_duell_time, sale_want, SaleWant};
pub use holds::{held_units, Hold, Phase};
pub use plan::{attach_image, downloads_image, drift_left_alone, plan, Link, PlanInput, Planned};
pub use price::{format_price, woo_price, PriceRules};
pub use tax::TaxClasses;
pub use text::{category_path, same_text, variant_option};

/// Meta key holding the DUELL product id on the WooCommerce product, so links can be rebuilt
/// from WooCommerce alone after a lost state.
pub const META_DUELL_ID: &str = "_duell_product_id";

/// Name of the attribute that distinguishes the variations of a variable product.
pub const VARIANT_ATTRIBUTE: &str = "Variant";

/// Everything the engine knows about a product on the DUELL side.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Source {
    /// Last observed product; `None` while only stock has been seen.
    pub product: Option<ProductData>,
    /// Stock of the stock department from the configured field, decimal text.
    pub stock: Option<Decimal>,
    /// When that stock was observed (Unix ms), to tell which holds it already reflects.
    pub stock_observed_ms: i64,
    /// Product withdrawn from the web shop (hidden or deleted).
    pub withdrawn: bool,
    /// When the product facts were observed (Unix ms); older facts arriving late are ignored.
    pub product_observed_ms: i64,
    /// Event id of the last product fact applied (causation of the writes it leads to).
    pub last_event_id: String,
}

/// The product fields the sync uses, in a serde-friendly form for the state store.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct ProductData {
    pub product_id: i64,
    pub product_number: String,
    pub name: String,
    pub description: String,
    pub price_inc_vat: Option<Decimal>,
    pub vat_rate_percent: Decimal,
    pub special_price: Option<Decimal>,
    pub special_from: Option<i64>,
    pub special_to: Option<i64>,
    pub category_path: String,
    pub image_url: String,
    pub custom_fields: Vec<(String, String)>,
    pub is_parent: bool,
    pub parent_product_id: i64,
}

impl ProductData {
    /// From the event form; unparseable numbers become `None` (the product is then written
    /// without that field rather than with a wrong value). A custom field named like the
    /// variant attribute ([`VARIANT_ATTRIBUTE`], any case) is left out: WooCommerce keys
    /// attributes by name, so it would be read back as the variant attribute (and rewritten on
    /// every pass) or collide with a variable product's variant attribute.
    ///
    /// Campaign dates are DUELL's local time, read in the store's time zone `tz`.
    pub fn from_event(p: &DuellProduct, tz: &jiff::tz::TimeZone) -> ProductData {
        let dec = |s: &str| s.trim().parse::<Decimal>().ok();
        ProductData {
            product_id: p.product_id,
            product_number: p.product_number.trim().to_owned(),
            name: p.name.trim().to_owned(),
            description: p.description.clone(),
            price_inc_vat: dec(&p.price_inc_vat),
            vat_rate_percent: dec(&p.vat_rate_percent).unwrap_or(Decimal::from(25)),
            special_price: dec(&p.special_price).filter(|d| *d > Decimal::ZERO),
            special_from: parse_duell_time(&p.special_from, tz),
            special_to: parse_duell_time(&p.special_to, tz),
            category_path: p.category_path.clone(),
            image_url: p.image_url.trim().to_owned(),
            custom_fields: p
                .custom_fields
                .iter()
                .filter(|f| !f.name.trim().is_empty() && !f.value.trim().is_empty())
                .filter(|f| !f.name.trim().eq_ignore_ascii_case(VARIANT_ATTRIBUTE))
                .map(|f| (f.name.trim().to_owned(), f.value.trim().to_owned()))
                .collect(),
            is_parent: p.is_parent,
            parent_product_id: p.parent_product_id,
        }
    }

    pub fn is_variant(&self) -> bool {
        !self.is_parent && self.parent_product_id > 0
    }
}

/// The description WooCommerce shows: DUELL's, or the name when DUELL has none (as DUELL's own
/// plugin did, so a product page is never blank).
pub fn description_of(product: &ProductData) -> String {
    if product.description.trim().is_empty() {
        product.name.clone()
    } else {
        product.description.clone()
    }
}

/// How a product exists in WooCommerce.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
pub enum Shape {
    #[default]
    Simple,
    /// A DUELL parent: a variable product whose variations are its variants.
    Variable,
    /// A DUELL variant: a variation of its parent's variable product.
    Variation,
}

/// The values DUELL owns for one product. `None` means "not DUELL's under these settings":
/// never written, never reported as drift.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Desired {
    pub sku: String,
    pub shape: Shape,
    pub name: Option<String>,
    pub description: Option<String>,
    pub regular_price: Option<Decimal>,
    pub sale: Option<SaleWant>,
    pub stock: Option<i64>,
    /// Custom attributes (name, option), in DUELL's order.
    pub attributes: Option<Vec<(String, String)>>,
    /// For variations: the option of the variant attribute.
    pub variant_option: Option<String>,
    /// Visible status: `None` = leave as it is; `Some` when withdrawn or restored.
    pub status: Option<String>,
    /// The WooCommerce tax class of the product's VAT rate (`""` = standard); `None` = leave
    /// the class as it is (prices not synced, taxes off, no class carries the rate).
    #[serde(default)]
    pub tax_class: Option<String>,
}

/// What the engine knows WooCommerce holds for one product.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct WooState {
    pub woo_id: u64,
    /// Parent product id for variations.
    pub parent_id: u64,
    pub sku: String,
    pub name: String,
    pub description: String,
    pub status: String,
    pub regular_price: Option<Decimal>,
    pub sale_price: Option<Decimal>,
    pub sale_from: Option<i64>,
    pub sale_to: Option<i64>,
    pub manage_stock: bool,
    pub stock: Option<i64>,
    pub image_ids: Vec<u64>,
    pub attributes: Vec<(String, String)>,
    pub variant_option: Option<String>,
    /// Option list of the variant attribute on a variable product.
    pub variant_options: Vec<String>,
    /// The DUELL id in the product's meta data, if any.
    #[serde(default)]
    pub duell_id: Option<i64>,
    /// The tax class slug (`""` = standard; a variation may say `parent`).
    #[serde(default)]
    pub tax_class: String,
}

fn unix(dt: Option<time::PrimitiveDateTime>) -> Option<i64> {
    dt.map(|d| d.assume_utc().unix_timestamp())
}

impl WooState {
    /// Reads the state from a WooCommerce response (edit context) or a list row.
    pub fn from_product(p: &Product) -> WooState {
        let mut images: Vec<u64> = p.images.iter().map(|i| i.id).filter(|i| *i > 0).collect();
        if let Some(img) = &p.image {
            if img.id > 0 {
                images.push(img.id);
            }
        }
        let mut attributes = Vec::new();
        let mut variant_option = None;
        let mut variant_options = Vec::new();
        for a in &p.attributes {
            if a.name == VARIANT_ATTRIBUTE {
                if let Some(o) = &a.option {
                    variant_option = Some(text::unescape(o));
                }
                variant_options = a.options.iter().map(|o| text::unescape(o)).collect();
                continue;
            }
            if let Some(o) = &a.option {
                attributes.push((text::unescape(&a.name), text::unescape(o)));
            } else {
                attributes.push((
                    text::unescape(&a.name),
                    text::unescape(&a.options.join(" | ")),
                ));
            }
        }
        WooState {
            woo_id: p.id,
            parent_id: p.parent_id,
            sku: p.sku.clone(),
            name: text::unescape(&p.name),
            description: p.description.clone(),
            status: p.status.clone(),
            regular_price: p.regular_price,
            sale_price: p.sale_price,
            sale_from: unix(p.date_on_sale_from_gmt),
            sale_to: unix(p.date_on_sale_to_gmt),
            manage_stock: p.manage_stock == ManageStock::Yes,
            stock: p.stock_quantity,
            image_ids: images,
            attributes,
            variant_option,
            variant_options,
            duell_id: WooState::duell_id_of(p),
            tax_class: p.tax_class.clone(),
        }
    }

    /// The DUELL id stored in a product's meta data, if any.
    pub fn duell_id_of(p: &Product) -> Option<i64> {
        p.meta(META_DUELL_ID).and_then(|v| match v {
            serde_json::Value::String(s) => s.trim().parse().ok(),
            serde_json::Value::Number(n) => n.as_i64(),
            _ => None,
        })
    }
}

/// Units of stock WooCommerce may offer: DUELL stock rounded down, minus units web orders hold,
/// never below zero (never offer what is not there).
pub fn publishable_stock(duell_stock: Decimal, held_units: Decimal) -> i64 {
    // Saturating: DUELL's stock is outside input, and `Decimal`'s `-` panics on overflow.
    let free = duell_stock.saturating_sub(held_units).floor();
    if free <= Decimal::ZERO {
        0
    } else {
        i64::try_from(free).unwrap_or(i64::MAX)
    }
}

/// What DUELL wants WooCommerce to hold for `product`, under `settings`.
///
/// `held_units` are units that web orders have taken but DUELL's stock does not show yet;
/// `parent_name` is the parent's name for a variant (its option is the variant's name without
/// it).
pub fn desired(
    product: &ProductData,
    stock: Option<Decimal>,
    held_units: Decimal,
    settings: &StoreSettings,
    prices: PriceRules,
    parent_name: Option<&str>,
    now_unix: i64,
) -> Desired {
    let shape = if product.is_parent {
        Shape::Variable
    } else if product.is_variant() {
        Shape::Variation
    } else {
        Shape::Simple
    };
    let mut d = Desired {
        sku: product.product_number.clone(),
        shape,
        ..Desired::default()
    };
    if settings.update_products && shape != Shape::Variation {
        d.name = Some(product.name.clone());
        d.description = Some(description_of(product));
    }
    // Variable products carry no price or stock of their own in WooCommerce.
    if settings.sync_prices && shape != Shape::Variable {
        if let Some(p) = product.price_inc_vat {
            let regular = woo_price(p, product.vat_rate_percent, prices);
            d.regular_price = Some(regular);
            d.sale = Some(sale_want(product, regular, prices, now_unix));
        }
    }
    if settings.sync_stock && shape != Shape::Variable {
        if let Some(s) = stock {
            d.stock = Some(publishable_stock(s, held_units));
        }
    }
    if settings.sync_attributes && shape != Shape::Variation {
        d.attributes = Some(product.custom_fields.clone());
    }
    if shape == Shape::Variation {
        d.variant_option = Some(variant_option(parent_name.unwrap_or(""), &product.name));
    }
    d
}

/// The fields of `desired` that `woo` does not hold yet, as a write and the list of their names.
/// `None` when WooCommerce already holds everything DUELL owns.
pub fn update_write(
    desired: &Desired,
    woo: &WooState,
    now_unix: i64,
) -> Option<(Vec<&'static str>, ProductWrite)> {
    let mut w = ProductWrite {
        id: Some(woo.woo_id),
        ..ProductWrite::default()
    };
    let mut fields = Vec::new();
    if let Some(name) = &desired.name {
        if !same_text(name, &woo.name) {
            w.name = Some(name.clone());
            fields.push("name");
        }
    }
    if let Some(desc) = &desired.description {
        if !same_text(desc, &woo.description) {
            w.description = Some(desc.clone());
            fields.push("description");
        }
    }
    if let Some(price) = desired.regular_price {
        if woo.regular_price != Some(price) {
            w.regular_price = Some(Clearable::Set(price));
            fields.push("regular_price");
        }
    }
    if let Some(sale) = &desired.sale {
        if !campaign::converged(sale, woo, now_unix) {
            match sale {
                SaleWant::NoSale => {
                    w.sale_price = Some(Clearable::Clear);
                    w.date_on_sale_from_gmt = Some(Clearable::Clear);
                    w.date_on_sale_to_gmt = Some(Clearable::Clear);
                }
                SaleWant::Sale { price, from, to } => {
                    w.sale_price = Some(Clearable::Set(*price));
                    w.date_on_sale_from_gmt = Some(clearable_time(*from));
                    w.date_on_sale_to_gmt = Some(clearable_time(*to));
                }
            }
            fields.push("sale");
        }
    }
    if let Some(stock) = desired.stock {
        if !woo.manage_stock || woo.stock != Some(stock) {
            w.manage_stock = Some(true);
            w.stock_quantity = Some(stock);
            fields.push("stock_quantity");
        }
    }
    if let Some(attrs) = &desired.attributes {
        if !same_attributes(attrs, &woo.attributes) {
            w.attributes = Some(attribute_writes(desired, attrs, &woo.variant_options));
            fields.push("attributes");
        }
    }
    if let Some(opt) = &desired.variant_option {
        if woo.variant_option.as_deref() != Some(opt.as_str()) {
            w.attributes = Some(vec![AttributeWrite {
                name: VARIANT_ATTRIBUTE.to_owned(),
                option: Some(opt.clone()),
                ..AttributeWrite::default()
            }]);
            fields.push("variant_option");
        }
    }
    if let Some(status) = &desired.status {
        if &woo.status != status {
            w.status = Some(status.clone());
            fields.push("status");
        }
    }
    if let Some(class) = &desired.tax_class {
        if &woo.tax_class != class {
            w.tax_class = Some(class.clone());
            fields.push("tax_class");
        }
    }
    if fields.is_empty() {
        None
    } else {
        Some((fields, w))
    }
}

fn clearable_time(t: Option<i64>) -> Clearable<time::PrimitiveDateTime> {
    match t.and_then(|t| time::OffsetDateTime::from_unix_timestamp(t).ok()) {
        Some(dt) => Clearable::Set(time::PrimitiveDateTime::new(dt.date(), dt.time())),
        None => Clearable::Clear,
    }
}

fn same_attributes(want: &[(String, String)], have: &[(String, String)]) -> bool {
    want.len() == have.len()
        && want
            .iter()
            .zip(have)
            .all(|(a, b)| same_text(&a.0, &b.0) && same_text(&a.1, &b.1))
}

fn attribute_writes(
    desired: &Desired,
    attrs: &[(String, String)],
    variant_options: &[String],
) -> Vec<AttributeWrite> {
    let mut out: Vec<AttributeWrite> = attrs
        .iter()
        .enumerate()
        .map(|(i, (name, value))| AttributeWrite {
            name: name.clone(),
            options: Some(vec![value.clone()]),
            visible: Some(true),
            variation: Some(false),
            position: Some(i as i64),
            ..AttributeWrite::default()
        })
        .collect();
    // The attributes list replaces the whole set, so a variable product must resend its
    // variant attribute or its variations lose their option.
    if desired.shape == Shape::Variable && !variant_options.is_empty() {
        out.push(variant_attribute(variant_options));
    }
    out
}

/// The variant attribute of a variable product with the given options.
pub fn variant_attribute(options: &[String]) -> AttributeWrite {
    AttributeWrite {
        name: VARIANT_ATTRIBUTE.to_owned(),
        options: Some(options.to_vec()),
        visible: Some(true),
        variation: Some(true),
        ..AttributeWrite::default()
    }
}

/// Everything a new WooCommerce product gets: the desired values plus the create-only fields
/// (status, category ids, image, the DUELL id in meta data). Category ids and the image are
/// resolved by the caller (they need WooCommerce lookups).
pub fn create_write(
    desired: &Desired,
    product: &ProductData,
    settings: &StoreSettings,
    category_ids: &[u64],
    image: Option<ImageWrite>,
    variant_options: &[String],
) -> ProductWrite {
    let mut w = ProductWrite {
        sku: Some(desired.sku.clone()),
        name: Some(product.name.clone()),
        ..ProductWrite::default()
    };
    match desired.shape {
        Shape::Simple => w.kind = Some("simple".into()),
        Shape::Variable => w.kind = Some("variable".into()),
        Shape::Variation => {}
    }
    if desired.shape != Shape::Variation {
        w.status = Some(settings.new_product_status.as_str().to_owned());
        w.description = Some(description_of(product));
    }
    if let Some(p) = desired.regular_price {
        w.regular_price = Some(Clearable::Set(p));
    }
    if let Some(SaleWant::Sale { price, from, to }) = &desired.sale {
        w.sale_price = Some(Clearable::Set(*price));
        if from.is_some() {
            w.date_on_sale_from_gmt = Some(clearable_time(*from));
        }
        if to.is_some() {
            w.date_on_sale_to_gmt = Some(clearable_time(*to));
        }
    }
    if let Some(s) = desired.stock {
        w.manage_stock = Some(true);
        w.stock_quantity = Some(s);
    }
    if let Some(class) = &desired.tax_class {
        w.tax_class = Some(class.clone());
    }
    if settings.sync_new_categories && !category_ids.is_empty() && desired.shape != Shape::Variation
    {
        w.categories = Some(
            category_ids
                .iter()
                .map(|id| duellsync_woo_model::IdRef { id: *id })
                .collect(),
        );
    }
    if let Some(img) = image {
        if desired.shape == Shape::Variation {
            w.image = Some(img);
        } else {
            w.images = Some(vec![img]);
        }
    }
    if settings.sync_attributes && desired.shape != Shape::Variation {
        let attrs = desired
            .attributes
            .clone()
            .unwrap_or_else(|| product.custom_fields.clone());
        let mut list = attribute_writes(desired, &attrs, variant_options);
        if desired.shape == Shape::Variable
            && variant_options.is_empty()
            && !list.iter().any(|a| a.name == VARIANT_ATTRIBUTE)
        {
            list.push(variant_attribute(&[]));
        }
        if !list.is_empty() {
            w.attributes = Some(list);
        }
    } else if desired.shape == Shape::Variable && !variant_options.is_empty() {
        w.attributes = Some(vec![variant_attribute(variant_options)]);
    }
    if let Some(opt) = &desired.variant_option {
        w.attributes = Some(vec![AttributeWrite {
            name: VARIANT_ATTRIBUTE.to_owned(),
            option: Some(opt.clone()),
            ..AttributeWrite::default()
        }]);
    }
    w.meta_data = Some(vec![MetaWrite {
        key: META_DUELL_ID.to_owned(),
        value: Some(serde_json::Value::String(product.product_id.to_string())),
    }]);
    w
}

/// Counts of changed fields over many products (plans and summaries).
pub fn count_fields<'a>(
    changes: impl IntoIterator<Item = &'a [&'static str]>,
) -> BTreeMap<String, i64> {
    let mut m = BTreeMap::new();
    for fields in changes {
        for f in fields {
            *m.entry((*f).to_owned()).or_insert(0) += 1;
        }
    }
    m
}

#[cfg(test)]
mod properties;
#[cfg(test)]
mod tests;
