//! Product and variation semantics: rendering (edit/view, v3/v2) and writes with
//! WooCommerce 7.9's coercions, SKU rules, stock rules, sale prices, meta and images.

use serde_json::{Map, Value};

use crate::json::J;
use crate::obj;
use crate::store::{
    dec, fmt_date, kses, parse_date, wc_clean, Attachment, Attr, Meta, Product, State, WpError,
    UNCATEGORIZED,
};

/// Rendering context.
#[derive(Clone, Debug)]
pub struct Ctx {
    /// `http://127.0.0.1:PORT` (no trailing slash).
    pub home: String,
    /// `v3` or `v2`.
    pub version: String,
    /// `view` context (GETs, webhook payloads) vs `edit` (writes).
    pub view: bool,
    /// Site timezone offset in seconds.
    pub offset: i64,
    /// Current unix time.
    pub now: i64,
}

impl Ctx {
    fn d(&self, ts: i64) -> J {
        J::Str(fmt_date(ts, self.offset))
    }
    fn dg(&self, ts: i64) -> J {
        J::Str(fmt_date(ts, 0))
    }
    fn od(&self, ts: Option<i64>) -> J {
        ts.map(|t| self.d(t)).unwrap_or(J::Null)
    }
    fn odg(&self, ts: Option<i64>) -> J {
        ts.map(|t| self.dg(t)).unwrap_or(J::Null)
    }
    fn api(&self, path: &str) -> String {
        format!("{}/wp-json/wc/{}/{}", self.home, self.version, path)
    }
}

fn links(ctx: &Ctx, self_path: &str, collection: &str, up: Option<&str>) -> J {
    let mut l = obj! {
        "self" => vec![obj!{ "href" => ctx.api(self_path) }],
        "collection" => vec![obj!{ "href" => ctx.api(collection) }],
    };
    if let Some(up) = up {
        l.set("up", J::Arr(vec![obj! { "href" => ctx.api(up) }]));
    }
    l
}

fn autop(s: &str, view: bool) -> String {
    if view && !s.trim().is_empty() {
        format!("<p>{}</p>\n", s.trim())
    } else {
        s.to_string()
    }
}

fn price_html(p: &Product, on_sale: bool) -> String {
    let amount = |v: &str| {
        format!(
            "<span class=\"woocommerce-Price-amount amount\"><bdi><span class=\"woocommerce-Price-currencySymbol\">&euro;</span>{}</bdi></span>",
            dec(v).map(|d| crate::store::money(d, 2)).unwrap_or_default()
        )
    };
    if p.price.is_empty() {
        return String::new();
    }
    if on_sale {
        format!(
            "<del aria-hidden=\"true\">{}</del> <ins>{}</ins>",
            amount(&p.regular_price),
            amount(&p.price)
        )
    } else {
        amount(&p.price)
    }
}

fn meta_j(meta: &[Meta]) -> J {
    J::Arr(
        meta.iter()
            .map(|m| obj! { "id" => m.id, "key" => m.key.as_str(), "value" => J::from(&m.value) })
            .collect(),
    )
}

fn sale_price_out(p: &Product) -> String {
    // A stored "0" reads back as "" (WooCommerce treats it as empty when preparing output).
    if dec(&p.sale_price).is_some_and(|d| d.is_zero()) {
        String::new()
    } else {
        p.sale_price.clone()
    }
}

fn image_j(ctx: &Ctx, a: &Attachment, position: Option<usize>) -> J {
    let mut j = obj! {
        "id" => a.id,
        "date_created" => ctx.d(a.created),
        "date_created_gmt" => ctx.dg(a.created),
        "date_modified" => ctx.d(a.created),
        "date_modified_gmt" => ctx.dg(a.created),
        "src" => a.src.as_str(),
        "name" => a.file_name.as_str(),
        "alt" => a.alt.as_str(),
    };
    if let Some(pos) = position {
        j.set("position", J::Int(pos as i64));
    }
    j
}

/// Effective stock view of a variation whose own stock is unmanaged: the parent's.
fn stock_view(state: &State, p: &Product) -> (J, J) {
    if p.is_variation() && !p.manage_stock {
        if let Some(parent) = state.products.get(&p.parent_id) {
            if parent.manage_stock {
                return (J::from("parent"), J::from(parent.stock_quantity));
            }
        }
    }
    (J::Bool(p.manage_stock), J::from(p.stock_quantity))
}

/// Renders a product (or a variation in product shape) like `/products/{id}`.
pub fn render_product(state: &State, ctx: &Ctx, p: &Product) -> J {
    let on_sale = p.on_sale(ctx.now);
    let (manage, qty) = stock_view(state, p);
    let permalink = format!("{}/product/{}/", ctx.home, p.slug);
    let categories: Vec<J> = p
        .categories
        .iter()
        .filter_map(|id| state.categories.get(id))
        .map(|c| obj! { "id" => c.id, "name" => c.name.as_str(), "slug" => c.slug.as_str() })
        .collect();
    let v2 = ctx.version == "v2";
    let mut images: Vec<J> = p
        .images
        .iter()
        .filter_map(|id| state.attachments.get(id))
        .enumerate()
        .map(|(i, a)| image_j(ctx, a, v2.then_some(i)))
        .collect();
    if v2 && images.is_empty() {
        images.push(obj! {
            "id" => 0i64, "date_created" => ctx.d(p.created), "date_created_gmt" => ctx.dg(p.created),
            "date_modified" => ctx.d(p.created), "date_modified_gmt" => ctx.dg(p.created),
            "src" => format!("{}/wp-content/uploads/woocommerce-placeholder.png", ctx.home),
            "name" => "Placeholder", "alt" => "Placeholder", "position" => 0i64,
        });
    }
    let attributes: Vec<J> = p
        .attributes
        .iter()
        .map(|a| {
            obj! { "id" => a.id, "name" => a.name.as_str(), "position" => a.position, "visible" => a.visible,
            "variation" => a.variation, "options" => J::Arr(a.options.iter().map(J::from).collect()) }
        })
        .collect();
    let variations: Vec<J> = if p.kind == "variable" {
        state
            .products
            .values()
            .filter(|v| v.parent_id == p.id && v.is_variation() && !v.is_trashed())
            .map(|v| J::from(v.id))
            .collect()
    } else {
        Vec::new()
    };
    let mut j = obj! {
        "id" => p.id,
        "name" => p.name.as_str(),
        "slug" => p.slug.as_str(),
        "permalink" => permalink,
        "date_created" => ctx.d(p.created),
        "date_created_gmt" => ctx.dg(p.created),
        "date_modified" => ctx.d(p.modified),
        "date_modified_gmt" => ctx.dg(p.modified),
        "type" => p.kind.as_str(),
        "status" => p.status.as_str(),
        "featured" => p.featured,
        "catalog_visibility" => p.catalog_visibility.as_str(),
        "description" => autop(&p.description, ctx.view),
        "short_description" => autop(&p.short_description, ctx.view),
        "sku" => p.sku.as_str(),
        "price" => p.price.as_str(),
        "regular_price" => p.regular_price.as_str(),
        "sale_price" => sale_price_out(p),
        "date_on_sale_from" => ctx.od(p.sale_from),
        "date_on_sale_from_gmt" => ctx.odg(p.sale_from),
        "date_on_sale_to" => ctx.od(p.sale_to),
        "date_on_sale_to_gmt" => ctx.odg(p.sale_to),
        "on_sale" => on_sale,
        "purchasable" => !p.price.is_empty(),
        "total_sales" => p.total_sales,
        "virtual" => p.virtual_,
        "downloadable" => p.downloadable,
        "downloads" => J::Arr(vec![]),
        "download_limit" => -1i64,
        "download_expiry" => -1i64,
        "external_url" => "",
        "button_text" => "",
        "tax_status" => p.tax_status.as_str(),
        "tax_class" => p.tax_class.as_str(),
        "manage_stock" => manage,
        "stock_quantity" => qty,
        "backorders" => p.backorders.as_str(),
        "backorders_allowed" => p.backorders != "no",
        "backordered" => p.backorders != "no" && p.manage_stock && p.stock_quantity.unwrap_or(0) <= 0,
        "low_stock_amount" => p.low_stock_amount,
        "sold_individually" => p.sold_individually,
        "weight" => p.weight.as_str(),
        "dimensions" => obj!{ "length" => p.dimensions[0].as_str(), "width" => p.dimensions[1].as_str(), "height" => p.dimensions[2].as_str() },
        "shipping_required" => !p.virtual_,
        "shipping_taxable" => !p.virtual_,
        "shipping_class" => "",
        "shipping_class_id" => 0i64,
        "reviews_allowed" => true,
        "average_rating" => if ctx.view { "0.00" } else { "0" },
        "rating_count" => 0i64,
        "upsell_ids" => J::Arr(p.upsell_ids.iter().map(|i| J::from(*i)).collect()),
        "cross_sell_ids" => J::Arr(p.cross_sell_ids.iter().map(|i| J::from(*i)).collect()),
        "parent_id" => p.parent_id,
        "purchase_note" => p.purchase_note.as_str(),
        "categories" => J::Arr(categories),
        "tags" => J::Arr(p.tags.iter().map(J::from).collect()),
        "images" => J::Arr(images),
        "attributes" => J::Arr(attributes),
        "default_attributes" => J::Arr(p.default_attributes.iter().map(J::from).collect()),
        "variations" => J::Arr(variations),
        "grouped_products" => J::Arr(vec![]),
        "menu_order" => p.menu_order,
        "price_html" => price_html(p, on_sale),
        "related_ids" => J::Arr(vec![]),
        "meta_data" => meta_j(&p.meta),
        "stock_status" => p.stock_status.as_str(),
        "has_options" => p.kind == "variable",
    };
    if v2 {
        if let J::Obj(fields) = &mut j {
            for (k, v) in fields.iter_mut() {
                if k == "stock_status" {
                    *k = "in_stock".into();
                    *v = J::Bool(p.stock_status != "outofstock");
                }
            }
        }
    }
    if !ctx.view {
        j.set(
            "permalink_template",
            J::from(format!("{}/product/%pagename%/", ctx.home)),
        );
        j.set("generated_slug", J::from(p.slug.as_str()));
    }
    j.set(
        "_links",
        links(ctx, &format!("products/{}", p.id), "products", None),
    );
    j
}

/// Renders a variation like `/products/{pid}/variations/{id}`.
pub fn render_variation(state: &State, ctx: &Ctx, v: &Product) -> J {
    let on_sale = v.on_sale(ctx.now);
    let (manage, qty) = stock_view(state, v);
    let parent_slug = state
        .products
        .get(&v.parent_id)
        .map(|p| p.slug.clone())
        .unwrap_or_default();
    let query: Vec<String> = v
        .var_attrs
        .iter()
        .map(|(n, o)| format!("attribute_{}={}", crate::store::slugify(n), o))
        .collect();
    let permalink = if query.is_empty() {
        format!("{}/product/{}/", ctx.home, parent_slug)
    } else {
        format!("{}/product/{}/?{}", ctx.home, parent_slug, query.join("&"))
    };
    let image = v
        .images
        .first()
        .and_then(|id| state.attachments.get(id))
        .map(|a| image_j(ctx, a, None))
        .unwrap_or(J::Null);
    let mut j = obj! {
        "id" => v.id,
        "date_created" => ctx.d(v.created),
        "date_created_gmt" => ctx.dg(v.created),
        "date_modified" => ctx.d(v.modified),
        "date_modified_gmt" => ctx.dg(v.modified),
        "description" => autop(&v.description, ctx.view),
        "permalink" => permalink,
        "sku" => v.sku.as_str(),
        "price" => v.price.as_str(),
        "regular_price" => v.regular_price.as_str(),
        "sale_price" => sale_price_out(v),
        "date_on_sale_from" => ctx.od(v.sale_from),
        "date_on_sale_from_gmt" => ctx.odg(v.sale_from),
        "date_on_sale_to" => ctx.od(v.sale_to),
        "date_on_sale_to_gmt" => ctx.odg(v.sale_to),
        "on_sale" => on_sale,
        "status" => v.status.as_str(),
        "purchasable" => !v.price.is_empty(),
        "virtual" => v.virtual_,
        "downloadable" => v.downloadable,
        "downloads" => J::Arr(vec![]),
        "download_limit" => -1i64,
        "download_expiry" => -1i64,
        "tax_status" => v.tax_status.as_str(),
        "tax_class" => v.tax_class.as_str(),
        "manage_stock" => manage,
        "stock_quantity" => qty,
        "stock_status" => v.stock_status.as_str(),
        "backorders" => v.backorders.as_str(),
        "backorders_allowed" => v.backorders != "no",
        "backordered" => false,
        "low_stock_amount" => v.low_stock_amount,
        "weight" => v.weight.as_str(),
        "dimensions" => obj!{ "length" => v.dimensions[0].as_str(), "width" => v.dimensions[1].as_str(), "height" => v.dimensions[2].as_str() },
        "shipping_class" => "",
        "shipping_class_id" => 0i64,
        "image" => image,
        "attributes" => J::Arr(v.var_attrs.iter().map(|(n, o)| obj!{ "id" => 0i64, "name" => n.as_str(), "option" => o.as_str() }).collect()),
        "menu_order" => v.menu_order,
        "meta_data" => meta_j(&v.meta),
    };
    if ctx.version == "v2" {
        j.set("in_stock", J::Bool(v.stock_status != "outofstock"));
        j.set("visible", J::Bool(v.status == "publish"));
    }
    j.set(
        "_links",
        links(
            ctx,
            &format!("products/{}/variations/{}", v.parent_id, v.id),
            &format!("products/{}/variations", v.parent_id),
            Some(&format!("products/{}", v.parent_id)),
        ),
    );
    j
}

/// How strictly a write is validated.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Mode {
    /// Single endpoint: schema types and enums are checked (400 `rest_invalid_param`).
    Single,
    /// Batch item: no schema validation; values are coerced.
    Batch,
}

/// An image download prepared before taking the store lock.
#[derive(Clone, Debug)]
pub enum Fetched {
    /// Downloaded: the file name to use.
    Ok(String),
    /// Failed with WordPress' download error text.
    Err(String),
}

fn type_err(field: &str, ty: &str) -> WpError {
    WpError::invalid_param(
        field,
        "rest_invalid_type",
        &format!("{field} is not of type {ty}."),
    )
}

fn enum_err(field: &str, allowed: &[&str]) -> WpError {
    let list = match allowed.split_last() {
        Some((last, rest)) if !rest.is_empty() => format!("{}, and {}", rest.join(", "), last),
        Some((last, _)) => last.to_string(),
        None => String::new(),
    };
    WpError::invalid_param(
        field,
        "rest_not_in_enum",
        &format!("{field} is not one of {list}."),
    )
}

/// A string field: single endpoints refuse non-strings; `null` becomes `""` (WordPress'
/// sanitiser), batch items stringify numbers.
pub fn str_field(v: &Value, field: &str, mode: Mode) -> Result<String, WpError> {
    match v {
        Value::String(s) => Ok(s.clone()),
        Value::Null => Ok(String::new()),
        Value::Number(n) if mode == Mode::Batch => Ok(n.to_string()),
        Value::Bool(b) if mode == Mode::Batch => Ok(if *b { "1".into() } else { String::new() }),
        _ => Err(type_err(field, "string")),
    }
}

fn int_field(v: &Value, field: &str, mode: Mode) -> Result<i64, WpError> {
    let php_intval = |s: &str| -> i64 {
        let t = s.trim();
        let digits: String = t
            .char_indices()
            .take_while(|(i, c)| c.is_ascii_digit() || (*i == 0 && (*c == '-' || *c == '+')))
            .map(|(_, c)| c)
            .collect();
        digits.parse().unwrap_or(0)
    };
    match v {
        Value::Null => Ok(0),
        Value::Number(n) => {
            if let Some(i) = n.as_i64() {
                Ok(i)
            } else {
                match n.as_f64() {
                    Some(f) if f.fract() == 0.0 => Ok(f as i64),
                    Some(f) if mode == Mode::Batch => Ok(f.trunc() as i64),
                    _ => Err(type_err(field, "integer")),
                }
            }
        }
        Value::String(s) => match s.trim().parse::<i64>() {
            Ok(i) => Ok(i),
            Err(_) if mode == Mode::Batch => Ok(php_intval(s)),
            Err(_) => Err(type_err(field, "integer")),
        },
        Value::Bool(b) if mode == Mode::Batch => Ok(i64::from(*b)),
        _ => Err(type_err(field, "integer")),
    }
}

fn bool_field(v: &Value, field: &str, mode: Mode) -> Result<bool, WpError> {
    match v {
        Value::Null => Ok(false),
        Value::Bool(b) => Ok(*b),
        Value::Number(n) => match n.as_i64() {
            Some(0) => Ok(false),
            Some(1) => Ok(true),
            _ if mode == Mode::Batch => Ok(n.as_f64().is_some_and(|f| f != 0.0)),
            _ => Err(type_err(field, "boolean")),
        },
        Value::String(s) => match s.as_str() {
            "true" | "1" => Ok(true),
            "false" | "0" | "" => Ok(false),
            "yes" if mode == Mode::Batch => Ok(true),
            _ if mode == Mode::Batch => Ok(false),
            _ => Err(type_err(field, "boolean")),
        },
        _ => Err(type_err(field, "boolean")),
    }
}

fn enum_field(
    v: &Value,
    field: &str,
    allowed: &[&str],
    mode: Mode,
    batch_default: &str,
) -> Result<Option<String>, WpError> {
    match v {
        Value::Null => Ok(None),
        Value::String(s) if allowed.contains(&s.as_str()) => Ok(Some(s.clone())),
        _ if mode == Mode::Batch => Ok(Some(batch_default.to_string())),
        Value::String(_) => Err(enum_err(field, allowed)),
        _ => Err(type_err(field, "string")),
    }
}

/// `wc_format_decimal` for prices: trims; text that is not a number clears the price.
fn format_price(s: &str) -> String {
    let t = s.trim();
    if t.is_empty() {
        return String::new();
    }
    if dec(t).is_some() {
        t.to_string()
    } else {
        String::new()
    }
}

/// Applies a REST write to `p` (a clone; the caller stores it on success).
#[allow(clippy::too_many_arguments)]
pub fn apply_write(
    state: &mut State,
    p: &mut Product,
    body: &Map<String, Value>,
    mode: Mode,
    fetched: &[Option<Fetched>],
    home: &str,
    now: i64,
    offset: i64,
) -> Result<(), WpError> {
    // Schema-level checks first (a single endpoint refuses the whole request).
    if mode == Mode::Single {
        for f in [
            "regular_price",
            "sale_price",
            "sku",
            "name",
            "description",
            "short_description",
            "tax_class",
            "weight",
        ] {
            if let Some(v) = body.get(f) {
                str_field(v, f, mode)?;
            }
        }
        if let Some(v) = body.get("stock_quantity") {
            int_field(v, "stock_quantity", mode)?;
        }
    }
    let mut price_touched = false;
    if let Some(v) = body.get("name") {
        p.name = kses(&str_field(v, "name", mode)?);
    }
    if let Some(v) = body.get("type") {
        if let Some(t) = enum_field(
            v,
            "type",
            &["simple", "grouped", "external", "variable"],
            mode,
            "simple",
        )? {
            if !p.is_variation() {
                p.kind = t;
                price_touched = true;
            }
        }
    }
    if let Some(v) = body.get("status") {
        let allowed: &[&str] = if p.is_variation() {
            &["draft", "pending", "private", "publish"]
        } else {
            &["draft", "pending", "private", "publish", "future"]
        };
        if let Some(s) = enum_field(v, "status", allowed, mode, "draft")? {
            p.status = s;
        }
    }
    if let Some(v) = body.get("featured") {
        p.featured = bool_field(v, "featured", mode)?;
    }
    if let Some(v) = body.get("catalog_visibility") {
        if let Some(s) = enum_field(
            v,
            "catalog_visibility",
            &["visible", "catalog", "search", "hidden"],
            mode,
            "visible",
        )? {
            p.catalog_visibility = s;
        }
    }
    if let Some(v) = body.get("description") {
        p.description = str_field(v, "description", mode)?;
    }
    if let Some(v) = body.get("short_description") {
        p.short_description = str_field(v, "short_description", mode)?;
    }
    if let Some(v) = body.get("sku") {
        let sku = wc_clean(&str_field(v, "sku", mode)?);
        if !sku.is_empty() {
            if let Some(owner) = state.sku_owner(&sku, Some(p.id)) {
                return Err(
                    WpError::new(400, "product_invalid_sku", "Invalid or duplicated SKU.")
                        .with("resource_id", J::from(owner))
                        .with("unique_sku", J::from(state.unique_sku(&sku))),
                );
            }
        }
        p.sku = sku;
    }
    if let Some(v) = body.get("regular_price") {
        p.regular_price = format_price(&str_field(v, "regular_price", mode)?);
        price_touched = true;
    }
    if let Some(v) = body.get("sale_price") {
        p.sale_price = format_price(&str_field(v, "sale_price", mode)?);
        price_touched = true;
    }
    for (field, gmt, is_from) in [
        ("date_on_sale_from", false, true),
        ("date_on_sale_from_gmt", true, true),
        ("date_on_sale_to", false, false),
        ("date_on_sale_to_gmt", true, false),
    ] {
        let Some(v) = body.get(field) else { continue };
        // Null is ignored on sale dates; any string goes to strtotime (unparseable: ignored).
        let Value::String(s) = v else { continue };
        price_touched = true;
        let value = if s.trim().is_empty() {
            None
        } else {
            match parse_date(s, if gmt { 0 } else { offset }) {
                Some((t, _)) => Some(t),
                None => continue,
            }
        };
        if is_from {
            p.sale_from = value;
        } else {
            p.sale_to = value;
        }
    }
    if let Some(v) = body.get("virtual") {
        p.virtual_ = bool_field(v, "virtual", mode)?;
    }
    if let Some(v) = body.get("downloadable") {
        p.downloadable = bool_field(v, "downloadable", mode)?;
    }
    if let Some(v) = body.get("tax_status") {
        if let Some(s) = enum_field(
            v,
            "tax_status",
            &["taxable", "shipping", "none"],
            mode,
            "taxable",
        )? {
            p.tax_status = s;
        }
    }
    if let Some(v) = body.get("tax_class") {
        let c = str_field(v, "tax_class", mode)?;
        // "standard" is stored as ""; an unknown class silently becomes "".
        p.tax_class = match c.as_str() {
            "parent" if p.is_variation() => c,
            c if state.settings.has_tax_class(c) => c.to_string(),
            _ => String::new(),
        };
    }
    if let Some(v) = body.get("weight") {
        p.weight = str_field(v, "weight", mode)?;
    }
    if let Some(Value::Object(d)) = body.get("dimensions") {
        for (i, k) in ["length", "width", "height"].iter().enumerate() {
            if let Some(v) = d.get(*k) {
                p.dimensions[i] = str_field(v, k, mode)?;
            }
        }
    }
    if let Some(v) = body.get("sold_individually") {
        p.sold_individually = bool_field(v, "sold_individually", mode)?;
    }
    if let Some(v) = body.get("menu_order") {
        p.menu_order = int_field(v, "menu_order", mode)?;
    }
    if let Some(v) = body.get("purchase_note") {
        p.purchase_note = str_field(v, "purchase_note", mode)?;
    }
    if let Some(v) = body.get("parent_id") {
        if !p.is_variation() {
            p.parent_id = u64::try_from(int_field(v, "parent_id", mode)?).unwrap_or(0);
        }
    }
    let store_manages = state.settings.manage_stock;
    if store_manages {
        if let Some(v) = body.get("manage_stock") {
            p.manage_stock = match v {
                Value::String(s) if s == "parent" => false,
                other => bool_field(other, "manage_stock", mode)?,
            };
        }
        if let Some(v) = body.get("backorders") {
            if let Some(s) = enum_field(v, "backorders", &["no", "notify", "yes"], mode, "no")? {
                p.backorders = s;
            }
        }
        if let Some(v) = body.get("inventory_delta") {
            if p.manage_stock {
                let d = int_field(v, "inventory_delta", Mode::Batch)?;
                p.stock_quantity = Some(p.stock_quantity.unwrap_or(0).saturating_add(d));
            }
        }
        if let Some(v) = body.get("stock_quantity") {
            let q = int_field(v, "stock_quantity", mode)?;
            if p.manage_stock {
                p.stock_quantity = Some(q);
            }
        }
        if let Some(v) = body.get("low_stock_amount") {
            p.low_stock_amount = match v {
                Value::Null => None,
                other => Some(int_field(other, "low_stock_amount", mode)?),
            };
        }
    }
    if let Some(v) = body.get("stock_status") {
        if let Some(s) = enum_field(
            v,
            "stock_status",
            &["instock", "outofstock", "onbackorder"],
            mode,
            "instock",
        )? {
            if !p.manage_stock {
                p.stock_status = s;
            }
        }
    }
    if let Some(v) = body.get("in_stock") {
        if !p.manage_stock {
            p.stock_status = if bool_field(v, "in_stock", mode)? {
                "instock".into()
            } else {
                "outofstock".into()
            };
        }
    }
    if let Some(Value::Array(cats)) = body.get("categories") {
        // Accepted by id only; names and unknown ids are ignored; empty means Uncategorized.
        let ids: Vec<u64> = cats
            .iter()
            .filter_map(|c| c.get("id").and_then(Value::as_u64))
            .filter(|id| state.categories.contains_key(id))
            .collect();
        p.categories = if ids.is_empty() {
            vec![UNCATEGORIZED]
        } else {
            ids
        };
    }
    if let Some(Value::Array(tags)) = body.get("tags") {
        p.tags = tags.clone();
    }
    for (field, list) in [("upsell_ids", true), ("cross_sell_ids", false)] {
        if let Some(Value::Array(ids)) = body.get(field) {
            let ids: Vec<u64> = ids.iter().filter_map(Value::as_u64).collect();
            if list {
                p.upsell_ids = ids;
            } else {
                p.cross_sell_ids = ids;
            }
        }
    }
    if let Some(Value::Array(attrs)) = body.get("attributes") {
        {
            if p.is_variation() {
                let parent_attrs = state
                    .products
                    .get(&p.parent_id)
                    .map(|pp| pp.attributes.clone())
                    .unwrap_or_default();
                p.var_attrs = attrs
                    .iter()
                    .filter_map(|a| {
                        let name = a.get("name").and_then(Value::as_str)?;
                        let option = a.get("option").and_then(Value::as_str)?;
                        let pa = parent_attrs
                            .iter()
                            .find(|pa| pa.name.eq_ignore_ascii_case(name) && pa.variation)?;
                        Some((pa.name.clone(), option.to_string()))
                    })
                    .collect();
            } else {
                p.attributes = attrs
                    .iter()
                    .enumerate()
                    .filter_map(|(i, a)| {
                        let id = a.get("id").and_then(Value::as_u64).unwrap_or(0);
                        let name = a.get("name").and_then(Value::as_str).unwrap_or("");
                        if id == 0 && name.is_empty() {
                            return None;
                        }
                        let options: Vec<String> = match a.get("options") {
                            Some(Value::Array(o)) => o
                                .iter()
                                .filter_map(|x| match x {
                                    Value::String(s) => Some(s.trim().to_string()),
                                    Value::Number(n) => Some(n.to_string()),
                                    _ => None,
                                })
                                .collect(),
                            Some(Value::String(s)) => {
                                s.split('|').map(|x| x.trim().to_string()).collect()
                            }
                            _ => Vec::new(),
                        };
                        if id > 0 && options.is_empty() {
                            return None;
                        }
                        let flag = |k: &str| {
                            a.get(k)
                                .map(|v| bool_field(v, k, Mode::Batch).unwrap_or(false))
                                .unwrap_or(false)
                        };
                        Some(Attr {
                            id: 0,
                            name: kses(name),
                            position: a
                                .get("position")
                                .and_then(Value::as_i64)
                                .unwrap_or(i as i64),
                            visible: flag("visible"),
                            variation: flag("variation"),
                            options: options.iter().map(|o| kses(o)).collect(),
                        })
                    })
                    .collect();
            }
        }
    }
    if let Some(Value::Array(d)) = body.get("default_attributes") {
        p.default_attributes = d.clone();
    }
    if let Some(Value::Array(meta)) = body.get("meta_data") {
        for m in meta {
            let Some(key) = m.get("key").and_then(Value::as_str) else {
                continue;
            };
            if key == "_price" {
                continue;
            }
            let value = m.get("value").cloned().unwrap_or(Value::Null);
            let by_id = m.get("id").and_then(Value::as_u64);
            let idx = match by_id {
                Some(id) => p.meta.iter().position(|x| x.id == id),
                None => p.meta.iter().position(|x| x.key == key),
            };
            if value.is_null() {
                if let Some(i) = idx {
                    p.meta.remove(i);
                }
                continue;
            }
            let value = match value {
                Value::Number(n) => Value::String(n.to_string()),
                Value::Bool(b) => Value::String(if b { "1".into() } else { String::new() }),
                other => other,
            };
            match idx {
                Some(i) => {
                    p.meta[i].value = value;
                    p.meta[i].key = key.to_string();
                }
                None => {
                    let id = state.meta_id();
                    p.meta.push(Meta {
                        id,
                        key: key.to_string(),
                        value,
                    });
                }
            }
        }
    }
    // Images last among the checks: a failed download fails the whole write.
    let image_entries: Option<Vec<Value>> = if p.is_variation() {
        match body.get("image") {
            Some(v @ Value::Object(_)) => Some(vec![v.clone()]),
            Some(Value::Null) => Some(Vec::new()),
            _ => None,
        }
    } else {
        match body.get("images") {
            Some(Value::Array(a)) => Some(a.clone()),
            _ => None,
        }
    };
    if let Some(entries) = image_entries {
        let mut ids = Vec::new();
        let mut new_files: Vec<(usize, String, String)> = Vec::new();
        for (i, e) in entries.iter().enumerate() {
            let id = e.get("id").and_then(Value::as_u64).unwrap_or(0);
            let alt = e
                .get("alt")
                .and_then(Value::as_str)
                .unwrap_or("")
                .to_string();
            if id > 0 {
                if !state.attachments.contains_key(&id) {
                    return Err(WpError::new(
                        400,
                        "woocommerce_product_invalid_image_id",
                        &format!("#{id} is an invalid image ID."),
                    ));
                }
                if let Some(a) = state.attachments.get_mut(&id) {
                    if e.get("alt").is_some() {
                        a.alt = alt;
                    }
                }
                ids.push(Some(id));
                continue;
            }
            let src = e.get("src").and_then(Value::as_str).unwrap_or("");
            if src.is_empty() {
                continue;
            }
            match fetched.get(i).cloned().flatten() {
                Some(Fetched::Ok(name)) => {
                    new_files.push((ids.len(), name, alt));
                    ids.push(None);
                }
                Some(Fetched::Err(msg)) => {
                    return Err(WpError::new(
                        400,
                        "woocommerce_product_image_upload_error",
                        &format!("Error getting remote image {src}. Error: {msg}"),
                    ))
                }
                None => {
                    return Err(WpError::new(
                        400,
                        "woocommerce_product_image_upload_error",
                        &format!(
                        "Error getting remote image {src}. Error: A valid URL was not provided."
                    ),
                    ))
                }
            }
        }
        for (slot, name, alt) in new_files {
            let id = state.post_id();
            let file_name = unique_file_name(state, &name);
            let t = time::OffsetDateTime::from_unix_timestamp(now)
                .unwrap_or(time::OffsetDateTime::UNIX_EPOCH);
            let src = format!(
                "{home}/wp-content/uploads/{:04}/{:02}/{file_name}",
                t.year(),
                u8::from(t.month())
            );
            state.attachments.insert(
                id,
                Attachment {
                    id,
                    file_name,
                    src,
                    alt,
                    created: now,
                },
            );
            ids[slot] = Some(id);
        }
        p.images = ids.into_iter().flatten().collect();
    }
    // validate_props: stock rules, discarded sale prices, derived price.
    let notify = state.settings.notify_no_stock_amount;
    p.derive_stock_status(notify);
    if let (Some(sale), Some(regular)) = (dec(&p.sale_price), dec(&p.regular_price)) {
        if sale >= regular {
            p.sale_price = String::new();
        }
    }
    if matches!(p.kind.as_str(), "variable" | "grouped") {
        p.regular_price = String::new();
        p.sale_price = String::new();
    }
    if price_touched {
        p.recompute_price(now);
    }
    p.modified = now;
    Ok(())
}

fn unique_file_name(state: &State, name: &str) -> String {
    let taken = |n: &str| state.attachments.values().any(|a| a.file_name == n);
    if !taken(name) {
        return name.to_string();
    }
    let (stem, ext) = match name.rfind('.') {
        Some(i) => (&name[..i], &name[i..]),
        None => (name, ""),
    };
    (1..)
        .map(|n| format!("{stem}-{n}{ext}"))
        .find(|n| !taken(n))
        .unwrap_or_default()
}

/// After a variation save: the parent's price is the lowest variation price and its stock
/// status follows the children.
pub fn sync_parent(state: &mut State, parent_id: u64) {
    let children: Vec<(String, String)> = state
        .products
        .values()
        .filter(|v| v.parent_id == parent_id && v.is_variation() && !v.is_trashed())
        .map(|v| (v.price.clone(), v.stock_status.clone()))
        .collect();
    let Some(parent) = state.products.get_mut(&parent_id) else {
        return;
    };
    let min = children
        .iter()
        .filter_map(|(p, _)| dec(p).map(|d| (d, p.clone())))
        .min_by(|a, b| a.0.cmp(&b.0))
        .map(|(_, s)| s);
    parent.price = min.unwrap_or_default();
    if !parent.manage_stock && !children.is_empty() {
        parent.stock_status = if children.iter().any(|(_, s)| s == "instock") {
            "instock".into()
        } else if children.iter().any(|(_, s)| s == "onbackorder") {
            "onbackorder".into()
        } else {
            "outofstock".into()
        };
    }
}

/// The daily `woocommerce_scheduled_sales` job. Returns the ids it changed.
pub fn run_sale_cron(state: &mut State, now: i64) -> Vec<u64> {
    let mut changed = Vec::new();
    for p in state.products.values_mut() {
        if p.sale_to.is_some_and(|t| t < now) {
            // Sale ended: back to the regular price, sale price and both dates cleared.
            p.price = p.regular_price.clone();
            p.sale_price = String::new();
            p.sale_from = None;
            p.sale_to = None;
            p.modified = now;
            changed.push(p.id);
        } else if p.sale_from.is_some_and(|f| f <= now) {
            // Sale started: the sale price becomes active and the start date is cleared.
            if !p.sale_price.is_empty() {
                p.price = p.sale_price.clone();
            }
            p.sale_from = None;
            p.modified = now;
            changed.push(p.id);
        }
    }
    changed
}
