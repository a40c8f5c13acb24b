//! In-memory store: products, variations, attachments, categories, orders, notes, webhooks,
//! and the helpers that render WooCommerce's conventions (dates, money, escaping).

use std::collections::{BTreeMap, HashMap};

use rust_decimal::Decimal;
use serde_json::Value;

use crate::json::J;
use crate::obj;

/// A WooCommerce error: `{code, message, data: {status, ...extra}}`.
#[derive(Clone, Debug, PartialEq)]
pub struct WpError {
    pub status: u16,
    pub code: String,
    pub message: String,
    pub extra: Vec<(String, J)>,
}

impl WpError {
    pub fn new(status: u16, code: &str, message: &str) -> Self {
        WpError {
            status,
            code: code.to_string(),
            message: message.to_string(),
            extra: Vec::new(),
        }
    }

    pub fn with(mut self, key: &str, value: J) -> Self {
        self.extra.push((key.to_string(), value));
        self
    }

    pub fn to_j(&self) -> J {
        let mut data = vec![("status".to_string(), J::Int(i64::from(self.status)))];
        data.extend(self.extra.iter().cloned());
        obj! { "code" => self.code.as_str(), "message" => self.message.as_str(), "data" => J::Obj(data) }
    }

    pub fn invalid_param(param: &str, code: &str, message: &str) -> Self {
        WpError::new(
            400,
            "rest_invalid_param",
            &format!("Invalid parameter(s): {param}"),
        )
        .with("params", obj! { param => message })
        .with(
            "details",
            obj! { param => obj! { "code" => code, "message" => message, "data" => obj! { "param" => param } } },
        )
    }
}

/// A meta row.
#[derive(Clone, Debug, PartialEq)]
pub struct Meta {
    pub id: u64,
    pub key: String,
    pub value: Value,
}

/// A product attribute as stored.
#[derive(Clone, Debug, PartialEq)]
pub struct Attr {
    pub id: u64,
    pub name: String,
    pub position: i64,
    pub visible: bool,
    pub variation: bool,
    pub options: Vec<String>,
}

/// A product or a variation (`kind == "variation"`).
#[derive(Clone, Debug, PartialEq)]
pub struct Product {
    pub id: u64,
    pub parent_id: u64,
    pub kind: String,
    pub status: String,
    /// Status before trashing, restored on untrash; a trashed product frees its SKU.
    pub trashed_from: Option<String>,
    pub name: String,
    pub slug: String,
    pub description: String,
    pub short_description: String,
    pub sku: String,
    pub regular_price: String,
    pub sale_price: String,
    /// `_price`, recomputed on saves that touch prices or sale dates, and by the sale cron.
    pub price: String,
    pub sale_from: Option<i64>,
    pub sale_to: Option<i64>,
    /// For variations `None` means "use the parent's stock" when the parent manages it.
    pub manage_stock: bool,
    pub stock_quantity: Option<i64>,
    pub stock_status: String,
    pub backorders: String,
    pub low_stock_amount: Option<i64>,
    pub tax_status: String,
    pub tax_class: String,
    pub weight: String,
    pub dimensions: [String; 3],
    pub featured: bool,
    pub catalog_visibility: String,
    pub virtual_: bool,
    pub downloadable: bool,
    pub sold_individually: bool,
    pub menu_order: i64,
    pub purchase_note: String,
    pub categories: Vec<u64>,
    pub tags: Vec<Value>,
    pub images: Vec<u64>,
    pub attributes: Vec<Attr>,
    /// Variation attributes `(name, option)`.
    pub var_attrs: Vec<(String, String)>,
    pub default_attributes: Vec<Value>,
    pub upsell_ids: Vec<u64>,
    pub cross_sell_ids: Vec<u64>,
    pub meta: Vec<Meta>,
    pub total_sales: i64,
    pub created: i64,
    pub modified: i64,
}

impl Product {
    pub fn new(id: u64, now: i64) -> Self {
        Product {
            id,
            parent_id: 0,
            kind: "simple".into(),
            status: "publish".into(),
            trashed_from: None,
            name: String::new(),
            slug: String::new(),
            description: String::new(),
            short_description: String::new(),
            sku: String::new(),
            regular_price: String::new(),
            sale_price: String::new(),
            price: String::new(),
            sale_from: None,
            sale_to: None,
            manage_stock: false,
            stock_quantity: None,
            stock_status: "instock".into(),
            backorders: "no".into(),
            low_stock_amount: None,
            tax_status: "taxable".into(),
            tax_class: String::new(),
            weight: String::new(),
            dimensions: Default::default(),
            featured: false,
            catalog_visibility: "visible".into(),
            virtual_: false,
            downloadable: false,
            sold_individually: false,
            menu_order: 0,
            purchase_note: String::new(),
            categories: Vec::new(),
            tags: Vec::new(),
            images: Vec::new(),
            attributes: Vec::new(),
            var_attrs: Vec::new(),
            default_attributes: Vec::new(),
            upsell_ids: Vec::new(),
            cross_sell_ids: Vec::new(),
            meta: Vec::new(),
            total_sales: 0,
            created: now,
            modified: now,
        }
    }

    pub fn is_variation(&self) -> bool {
        self.kind == "variation"
    }

    pub fn is_trashed(&self) -> bool {
        self.status == "trash"
    }

    /// `is_on_sale('edit')`: a non-empty sale price below the regular price, inside the window.
    pub fn on_sale(&self, now: i64) -> bool {
        if self.sale_price.is_empty() {
            return false;
        }
        let (Some(sale), Some(regular)) = (dec(&self.sale_price), dec(&self.regular_price)) else {
            return false;
        };
        if regular <= sale {
            return false;
        }
        if self.sale_from.is_some_and(|f| f > now) {
            return false;
        }
        if self.sale_to.is_some_and(|t| t < now) {
            return false;
        }
        true
    }

    /// Recomputes `_price` as WooCommerce does on save.
    pub fn recompute_price(&mut self, now: i64) {
        self.price = if self.on_sale(now) {
            self.sale_price.clone()
        } else {
            self.regular_price.clone()
        };
    }

    /// Derives `stock_status` from the quantity when stock is managed.
    pub fn derive_stock_status(&mut self, notify_no_stock: i64) {
        if self.manage_stock {
            let qty = self.stock_quantity.unwrap_or(0);
            self.stock_status = if self.stock_quantity.is_some() && qty > notify_no_stock {
                "instock".into()
            } else if self.backorders != "no" {
                "onbackorder".into()
            } else {
                "outofstock".into()
            };
        } else {
            self.stock_quantity = None;
            if !self.is_variation() {
                self.backorders = "no".into();
            }
        }
    }
}

/// An uploaded image.
#[derive(Clone, Debug, PartialEq)]
pub struct Attachment {
    pub id: u64,
    pub file_name: String,
    pub src: String,
    pub alt: String,
    pub created: i64,
}

/// A product category.
#[derive(Clone, Debug, PartialEq)]
pub struct Category {
    pub id: u64,
    /// Stored escaped (`&amp;`) like WordPress' kses does.
    pub name: String,
    pub slug: String,
    pub parent: u64,
    pub description: String,
}

/// Taxes per rate id, in the order WooCommerce keeps them: stored unrounded (at the rounding
/// precision, 6 decimals), rounded only when summed.
pub type RateTaxes = Vec<(u64, Decimal)>;

/// An order line. Amounts are stored as WooCommerce stores them: excluding tax, unrounded.
#[derive(Clone, Debug, PartialEq)]
pub struct OrderLine {
    pub id: u64,
    pub name: String,
    pub product_id: u64,
    pub variation_id: u64,
    pub quantity: i64,
    pub tax_class: String,
    pub subtotal: Decimal,
    pub total: Decimal,
    pub subtotal_tax: Decimal,
    pub total_tax: Decimal,
    /// `taxes.total` and `taxes.subtotal`.
    pub taxes: RateTaxes,
    pub subtotal_taxes: RateTaxes,
    pub meta: Vec<Meta>,
    /// Units taken from stock for this line (`_reduced_stock`).
    pub reduced_stock: Option<i64>,
}

/// A shipping line; the cost is always entered excluding tax.
#[derive(Clone, Debug, PartialEq)]
pub struct ShippingLine {
    pub id: u64,
    pub method_title: String,
    pub method_id: String,
    pub total: Decimal,
    pub total_tax: Decimal,
    pub taxes: RateTaxes,
}

/// A fee line; the amount is always excluding tax.
#[derive(Clone, Debug, PartialEq)]
pub struct FeeLine {
    pub id: u64,
    pub name: String,
    pub tax_class: String,
    pub tax_status: String,
    pub total: Decimal,
    pub total_tax: Decimal,
    pub taxes: RateTaxes,
}

/// A coupon line.
#[derive(Clone, Debug, PartialEq)]
pub struct CouponLine {
    pub id: u64,
    pub code: String,
    pub discount: Decimal,
    pub discount_tax: Decimal,
}

/// A tax line: one per rate used by the order (`WC_Order_Item_Tax`).
#[derive(Clone, Debug, PartialEq)]
pub struct TaxLine {
    pub id: u64,
    pub rate_id: u64,
    pub rate_code: String,
    pub label: String,
    pub compound: bool,
    pub rate_percent: Decimal,
    pub tax_total: Decimal,
    pub shipping_tax_total: Decimal,
}

/// The totals an order stores (recomputed only where WooCommerce recomputes them).
#[derive(Clone, Debug, Default, PartialEq)]
pub struct OrderTotals {
    pub discount_total: Decimal,
    pub discount_tax: Decimal,
    pub shipping_total: Decimal,
    pub shipping_tax: Decimal,
    pub cart_tax: Decimal,
    pub total: Decimal,
    pub total_tax: Decimal,
}

/// An order (post storage semantics of 7.9).
#[derive(Clone, Debug, PartialEq)]
pub struct Order {
    pub id: u64,
    pub parent_id: u64,
    pub status: String,
    pub currency: String,
    pub prices_include_tax: bool,
    pub created: i64,
    pub modified: i64,
    pub paid: Option<i64>,
    pub completed: Option<i64>,
    pub customer_id: u64,
    pub order_key: String,
    pub billing: Vec<(String, Option<String>)>,
    pub shipping: Vec<(String, String)>,
    pub payment_method: String,
    pub payment_method_title: String,
    pub transaction_id: String,
    pub created_via: String,
    pub customer_note: String,
    pub meta: Vec<Meta>,
    pub lines: Vec<OrderLine>,
    pub shipping_lines: Vec<ShippingLine>,
    pub fee_lines: Vec<FeeLine>,
    pub coupon_lines: Vec<CouponLine>,
    pub tax_lines: Vec<TaxLine>,
    pub totals: OrderTotals,
    pub refunds: Vec<(u64, String, Decimal)>,
    pub stock_reduced: bool,
    pub trashed_from: Option<String>,
}

/// An order note.
#[derive(Clone, Debug, PartialEq)]
pub struct Note {
    pub id: u64,
    pub order_id: u64,
    pub note: String,
    pub customer_note: bool,
    pub author: String,
    pub created: i64,
}

/// A webhook as stored (with the fields REST never shows).
#[derive(Clone, Debug, PartialEq)]
pub struct Webhook {
    pub id: u64,
    pub name: String,
    pub status: String,
    pub topic: String,
    pub delivery_url: String,
    pub secret: String,
    pub api_version: String,
    pub failure_count: u32,
    pub pending_delivery: bool,
    pub created: i64,
    pub modified: Option<i64>,
}

/// A tax rate (WooCommerce → Settings → Tax → the rate tables).
#[derive(Clone, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct TaxRate {
    /// Rate id (`tax_rate_id`); the id order items refer to.
    pub id: u64,
    /// ISO country, `""` for every country.
    #[serde(default)]
    pub country: String,
    /// State code, `""` for every state.
    #[serde(default)]
    pub state: String,
    /// Percent, e.g. `25`.
    pub rate: Decimal,
    /// Name shown to customers and used as the tax line label (`MVA`).
    #[serde(default)]
    pub name: String,
    /// One matching rate per priority is used.
    #[serde(default = "one")]
    pub priority: i64,
    /// Applied on top of the other rates.
    #[serde(default)]
    pub compound: bool,
    /// Also applied to shipping.
    #[serde(default = "yes")]
    pub shipping: bool,
    /// Tax class slug, `""` for the standard class.
    #[serde(default)]
    pub class: String,
}

fn one() -> i64 {
    1
}

fn yes() -> bool {
    true
}

/// Store-wide settings (the `woocommerce_*` options the simulator honours).
#[derive(Clone, Debug, PartialEq)]
pub struct Settings {
    /// `woocommerce_prices_include_tax`: product prices are entered with tax.
    pub prices_include_tax: bool,
    pub price_num_decimals: u32,
    pub currency: String,
    pub manage_stock: bool,
    pub notify_no_stock_amount: i64,
    /// `woocommerce_calc_taxes`: "Enable tax rates and calculations".
    pub calc_taxes: bool,
    /// `woocommerce_tax_round_at_subtotal`: round tax at subtotal level instead of per line.
    pub tax_round_at_subtotal: bool,
    /// `woocommerce_shipping_tax_class`: `inherit` (from the cart items), `""` (standard) or a
    /// class slug.
    pub shipping_tax_class: String,
    /// `woocommerce_tax_based_on`: `shipping`, `billing` or `base`.
    pub tax_based_on: String,
    /// `woocommerce_default_country`: the shop's base country (`NO`, or `US:CA` with a state).
    pub default_country: String,
    /// `woocommerce_tax_classes`: the additional classes by name; the slug is the sanitised
    /// name (`Reduced rate` → `reduced-rate`).
    pub tax_classes: Vec<String>,
    /// The rate tables of every class.
    pub tax_rates: Vec<TaxRate>,
}

impl Default for Settings {
    /// What the captured reference store used: EUR, prices without tax, no tax rates.
    fn default() -> Self {
        Settings {
            prices_include_tax: false,
            price_num_decimals: 2,
            currency: "EUR".into(),
            manage_stock: true,
            notify_no_stock_amount: 0,
            calc_taxes: false,
            tax_round_at_subtotal: false,
            shipping_tax_class: "inherit".into(),
            tax_based_on: "shipping".into(),
            default_country: "DE".into(),
            tax_classes: vec!["Reduced rate".into(), "Zero rate".into()],
            tax_rates: Vec::new(),
        }
    }
}

impl Settings {
    /// A Norwegian shop as a retailer sets one up: NOK with 2 decimals, prices entered with tax,
    /// taxes on (MVA 25 % standard, 15 % food, 12 % reduced, 0 %), tax on shipping.
    pub fn norway() -> Self {
        let rate = |id: u64, pct: i64, class: &str| TaxRate {
            id,
            country: "NO".into(),
            state: String::new(),
            rate: Decimal::from(pct),
            name: "MVA".into(),
            priority: 1,
            compound: false,
            shipping: true,
            class: class.into(),
        };
        Settings {
            prices_include_tax: true,
            currency: "NOK".into(),
            calc_taxes: true,
            default_country: "NO".into(),
            tax_classes: vec!["Reduced rate".into(), "Zero rate".into(), "Food".into()],
            tax_rates: vec![
                rate(1, 25, ""),
                rate(2, 15, "food"),
                rate(3, 12, "reduced-rate"),
                rate(4, 0, "zero-rate"),
            ],
            ..Settings::default()
        }
    }

    /// The slugs of the additional tax classes, in the store's order.
    pub fn tax_class_slugs(&self) -> Vec<String> {
        self.tax_classes.iter().map(|c| slugify(c)).collect()
    }

    /// Whether `slug` names a tax class of this store (`""` is the standard class).
    pub fn has_tax_class(&self, slug: &str) -> bool {
        slug.is_empty() || self.tax_class_slugs().iter().any(|s| s == slug)
    }

    /// The base country without a state.
    pub fn base_country(&self) -> &str {
        self.default_country.split(':').next().unwrap_or_default()
    }
}

/// A capture recorded when an order reached `completed` (or `processing`) for the first time:
/// what a payment gateway would capture.
#[derive(Clone, Debug, PartialEq)]
pub struct Capture {
    pub order_id: u64,
    pub status: String,
    pub total: Decimal,
    pub at: i64,
}

/// A stock value a product write set, with the moment the simulator applied it. Recorded only
/// while [`crate::WooSim::record_stock_changes`] is on (benchmarks measure "observed in DUELL →
/// written in WooCommerce" against it).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StockChange {
    pub product_id: u64,
    pub sku: String,
    pub stock_quantity: Option<i64>,
    pub at: std::time::Instant,
}

/// Everything the simulated store holds.
#[derive(Debug)]
pub struct State {
    pub next_post_id: u64,
    pub next_term_id: u64,
    pub next_meta_id: u64,
    pub next_item_id: u64,
    pub next_comment_id: u64,
    pub next_webhook_id: u64,
    pub products: BTreeMap<u64, Product>,
    pub attachments: BTreeMap<u64, Attachment>,
    pub categories: BTreeMap<u64, Category>,
    pub orders: BTreeMap<u64, Order>,
    pub notes: Vec<Note>,
    pub webhooks: BTreeMap<u64, Webhook>,
    pub settings: Settings,
    pub captures: Vec<Capture>,
    /// Used nonces per consumer key: timestamp → nonce (a later request with the same
    /// timestamp replaces the entry, as WooCommerce stores them).
    pub nonces: HashMap<String, BTreeMap<i64, String>>,
    /// Stock values set by product writes, while recording is on (`None` = off).
    pub stock_changes: Option<Vec<StockChange>>,
    /// Candidate owners per normalised SKU and per slug, so the uniqueness checks of a create
    /// do not scan every product (a 100,000-product sync was quadratic). Entries are added by
    /// [`State::put_product`] and may go stale (trash, delete, a changed SKU): lookups verify
    /// each candidate against `products`, so only a missing entry could mislead, and every
    /// write that sets a SKU or slug stores the product through `put_product`.
    sku_index: HashMap<String, Vec<u64>>,
    slug_index: HashMap<String, Vec<u64>>,
}

pub const UNCATEGORIZED: u64 = 15;

impl State {
    pub fn new() -> Self {
        State::with_settings(Settings::default())
    }

    pub fn with_settings(settings: Settings) -> Self {
        let mut categories = BTreeMap::new();
        categories.insert(
            UNCATEGORIZED,
            Category {
                id: UNCATEGORIZED,
                name: "Uncategorized".into(),
                slug: "uncategorized".into(),
                parent: 0,
                description: String::new(),
            },
        );
        State {
            next_post_id: 10,
            next_term_id: 16,
            next_meta_id: 100,
            next_item_id: 1,
            next_comment_id: 1,
            next_webhook_id: 1,
            products: BTreeMap::new(),
            attachments: BTreeMap::new(),
            categories,
            orders: BTreeMap::new(),
            notes: Vec::new(),
            webhooks: BTreeMap::new(),
            settings,
            captures: Vec::new(),
            nonces: HashMap::new(),
            stock_changes: None,
            sku_index: HashMap::new(),
            slug_index: HashMap::new(),
        }
    }

    /// Records that a write set `p`'s stock (when recording is on).
    pub fn record_stock_change(&mut self, p: &Product) {
        if let Some(log) = self.stock_changes.as_mut() {
            log.push(StockChange {
                product_id: p.id,
                sku: p.sku.clone(),
                stock_quantity: p.stock_quantity,
                at: std::time::Instant::now(),
            });
        }
    }

    pub fn post_id(&mut self) -> u64 {
        let id = self.next_post_id;
        self.next_post_id += 1;
        id
    }

    pub fn meta_id(&mut self) -> u64 {
        let id = self.next_meta_id;
        self.next_meta_id += 1;
        id
    }

    pub fn item_id(&mut self) -> u64 {
        let id = self.next_item_id;
        self.next_item_id += 1;
        id
    }

    /// Stores a product (new or rewritten) and indexes its SKU and slug. Every write that can
    /// set a SKU or a slug goes through here, never through `products.insert`.
    pub fn put_product(&mut self, p: Product) {
        let sku = normalise_sku(&p.sku);
        if !sku.is_empty() {
            let ids = self.sku_index.entry(sku).or_default();
            if !ids.contains(&p.id) {
                ids.push(p.id);
            }
        }
        if !p.slug.is_empty() {
            let ids = self.slug_index.entry(p.slug.clone()).or_default();
            if !ids.contains(&p.id) {
                ids.push(p.id);
            }
        }
        self.products.insert(p.id, p);
    }

    /// The product (or variation) that owns `sku`, ignoring trash and `except`.
    pub fn sku_owner(&self, sku: &str, except: Option<u64>) -> Option<u64> {
        let wanted = normalise_sku(sku);
        if wanted.is_empty() {
            return None;
        }
        let owns =
            |p: &Product| Some(p.id) != except && !p.is_trashed() && same_sku(&p.sku, &wanted);
        let found = self
            .sku_index
            .get(&wanted)
            .into_iter()
            .flatten()
            .filter_map(|id| self.products.get(id))
            .filter(|p| owns(p))
            .map(|p| p.id)
            .min();
        // The index must agree with a full scan; checked where a scan is affordable (tests).
        debug_assert!(
            self.products.len() > 5_000
                || found == self.products.values().find(|p| owns(p)).map(|p| p.id),
            "woo-sim SKU index out of step for {wanted:?}"
        );
        found
    }

    /// A free SKU suggestion: `sku-1`, `sku-2`, ...
    pub fn unique_sku(&self, sku: &str) -> String {
        (1..)
            .map(|n| format!("{sku}-{n}"))
            .find(|s| self.sku_owner(s, None).is_none())
            .unwrap_or_default()
    }

    pub fn unique_slug(&self, base: &str, except: u64) -> String {
        let base = if base.is_empty() { "product" } else { base };
        let taken = |s: &str| {
            let indexed = self
                .slug_index
                .get(s)
                .into_iter()
                .flatten()
                .filter_map(|id| self.products.get(id))
                .any(|p| p.id != except && !p.is_variation() && p.slug == s);
            debug_assert!(
                self.products.len() > 5_000
                    || indexed
                        == self
                            .products
                            .values()
                            .any(|p| p.id != except && !p.is_variation() && p.slug == s),
                "woo-sim slug index out of step for {s:?}"
            );
            indexed
        };
        if !taken(base) {
            return base.to_string();
        }
        (2..)
            .map(|n| format!("{base}-{n}"))
            .find(|s| !taken(s))
            .unwrap_or_default()
    }
}

impl Default for State {
    fn default() -> Self {
        State::new()
    }
}

/// Whether `sku` normalises to `wanted` (already normalised). An ASCII SKU is compared in place:
/// normalising one only trims and lower-cases it, and this check runs against every product on
/// every create, so allocating there made large catalogues quadratic in allocations.
pub fn same_sku(sku: &str, wanted: &str) -> bool {
    if sku.is_ascii() {
        sku.trim().eq_ignore_ascii_case(wanted)
    } else {
        normalise_sku(sku) == wanted
    }
}

/// SKU comparison as the usual MySQL collation does it: case- and accent-insensitive.
pub fn normalise_sku(s: &str) -> String {
    s.trim()
        .chars()
        .map(|c| match c {
            'à' | 'á' | 'â' | 'ã' | 'ä' | 'å' | 'À' | 'Á' | 'Â' | 'Ã' | 'Ä' | 'Å' => {
                'a'
            }
            'è' | 'é' | 'ê' | 'ë' | 'È' | 'É' | 'Ê' | 'Ë' => 'e',
            'ì' | 'í' | 'î' | 'ï' | 'Ì' | 'Í' | 'Î' | 'Ï' => 'i',
            'ò' | 'ó' | 'ô' | 'õ' | 'ö' | 'Ò' | 'Ó' | 'Ô' | 'Õ' | 'Ö' => 'o',
            'ù' | 'ú' | 'û' | 'ü' | 'Ù' | 'Ú' | 'Û' | 'Ü' => 'u',
            'ç' | 'Ç' => 'c',
            'ñ' | 'Ñ' => 'n',
            c => c,
        })
        .flat_map(char::to_lowercase)
        .collect()
}

/// `wc_clean`: trimmed and tag-stripped.
pub fn wc_clean(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    let mut in_tag = false;
    for c in s.chars() {
        match c {
            '<' => in_tag = true,
            '>' if in_tag => in_tag = false,
            c if !in_tag => out.push(c),
            _ => {}
        }
    }
    out.trim().to_string()
}

/// kses on names: a bare `&` becomes `&amp;` (existing entities stay).
pub fn kses(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    let bytes: Vec<char> = s.chars().collect();
    for (i, c) in bytes.iter().enumerate() {
        if *c == '&' {
            let rest: String = bytes[i + 1..].iter().take(10).collect();
            let is_entity = rest
                .find(';')
                .map(|end| {
                    let ent = &rest[..end];
                    !ent.is_empty()
                        && ent
                            .chars()
                            .all(|ch| ch.is_ascii_alphanumeric() || ch == '#')
                })
                .unwrap_or(false);
            if is_entity {
                out.push('&');
            } else {
                out.push_str("&amp;");
            }
        } else {
            out.push(*c);
        }
    }
    out
}

/// Decodes the entities kses produces, to compare names.
pub fn entity_decode(s: &str) -> String {
    s.replace("&amp;", "&")
        .replace("&lt;", "<")
        .replace("&gt;", ">")
        .replace("&quot;", "\"")
        .replace("&#039;", "'")
}

/// `sanitize_title`: lower-case ASCII words joined by `-`.
pub fn slugify(s: &str) -> String {
    let decoded = entity_decode(s);
    let mut out = String::new();
    let mut dash = false;
    for c in normalise_sku(&wc_clean(&decoded)).chars() {
        if c.is_ascii_alphanumeric() {
            out.push(c);
            dash = false;
        } else if (c.is_whitespace() || c == '-' || c == '_') && !dash && !out.is_empty() {
            out.push('-');
            dash = true;
        }
    }
    out.trim_end_matches('-').to_string()
}

/// Parses a decimal string as `wc_format_decimal` would accept it.
pub fn dec(s: &str) -> Option<Decimal> {
    let t = s.trim();
    if t.is_empty() {
        return None;
    }
    t.parse::<Decimal>().ok()
}

/// Money rounded to `dp` decimals with trailing zeros, as order totals are rendered
/// (`wc_format_decimal` with `dp`: PHP's `number_format`, half away from zero).
pub fn money(d: Decimal, dp: u32) -> String {
    let mut r = d.round_dp_with_strategy(dp, rust_decimal::RoundingStrategy::MidpointAwayFromZero);
    r.rescale(dp);
    r.to_string()
}

/// A stored unrounded amount as `wc_format_decimal` without `dp` writes a float: at most 6
/// decimals, trailing zeros trimmed (`4.4`, `1.225`, `0`).
pub fn unrounded(d: Decimal) -> String {
    let r = d
        .round_dp_with_strategy(6, rust_decimal::RoundingStrategy::MidpointAwayFromZero)
        .normalize();
    if r.is_zero() {
        "0".into()
    } else {
        r.to_string()
    }
}

/// Formats a unix time as WooCommerce's offset-less date, shifted by `offset` seconds.
pub fn fmt_date(ts: i64, offset: i64) -> String {
    let t = time::OffsetDateTime::from_unix_timestamp(ts + offset)
        .unwrap_or(time::OffsetDateTime::UNIX_EPOCH);
    format!(
        "{:04}-{:02}-{:02}T{:02}:{:02}:{:02}",
        t.year(),
        u8::from(t.month()),
        t.day(),
        t.hour(),
        t.minute(),
        t.second()
    )
}

/// Parses a date string the way the REST layer and `strtotime` would for the formats a sync
/// engine sends: `YYYY-MM-DD`, `YYYY-MM-DDTHH:MM:SS`, a space instead of `T`, fractional
/// seconds, and an optional `Z`/`±HH:MM` offset. Without an offset the value is read in
/// `default_offset` (site time, or 0 for `_gmt` fields). Returns the unix time and whether
/// an offset was present.
pub fn parse_date(s: &str, default_offset: i64) -> Option<(i64, bool)> {
    let s = s.trim();
    if s.len() < 10 {
        return None;
    }
    let date = time::Date::parse(
        s.get(..10)?,
        time::macros::format_description!("[year]-[month]-[day]"),
    )
    .ok()?;
    let rest = &s[10..];
    let (clock, tail) = if rest.starts_with('T') || rest.starts_with(' ') {
        let r = &rest[1..];
        let end = r.find(['Z', '+', '-', 'z']).unwrap_or(r.len());
        (Some(&r[..end]), &r[end..])
    } else {
        (None, rest)
    };
    let mut secs = 0i64;
    if let Some(clock) = clock {
        let clock = clock.split('.').next().unwrap_or("");
        let parts: Vec<&str> = clock.split(':').collect();
        if parts.len() < 2 {
            return None;
        }
        let h: i64 = parts[0].parse().ok()?;
        let m: i64 = parts[1].parse().ok()?;
        let sec: i64 = parts.get(2).map(|x| x.parse().ok()).unwrap_or(Some(0))?;
        if h > 23 || m > 59 || sec > 60 {
            return None;
        }
        secs = h * 3600 + m * 60 + sec;
    }
    let midnight = date.midnight().assume_utc().unix_timestamp();
    let (offset, had_offset) = match tail {
        "" => (default_offset, false),
        "Z" | "z" => (0, true),
        t => {
            let sign = if t.starts_with('-') { -1 } else { 1 };
            let digits: String = t[1..].chars().filter(|c| c.is_ascii_digit()).collect();
            if digits.len() != 4 {
                return None;
            }
            let h: i64 = digits[..2].parse().ok()?;
            let m: i64 = digits[2..].parse().ok()?;
            (sign * (h * 3600 + m * 60), true)
        }
    };
    Some((midnight + secs - offset, had_offset))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn product(id: u64, sku: &str, slug: &str) -> Product {
        let mut p = Product::new(id, 0);
        p.sku = sku.into();
        p.slug = slug.into();
        p
    }

    #[test]
    fn the_sku_and_slug_indexes_follow_rewrites_trash_and_deletes() {
        let mut s = State::new();
        s.put_product(product(10, "AB-1", "shirt"));
        assert_eq!(s.sku_owner(" ab-1", None), Some(10));
        assert_eq!(s.sku_owner("AB-1", Some(10)), None);
        assert_eq!(s.unique_slug("shirt", 11), "shirt-2");
        assert_eq!(s.unique_slug("shirt", 10), "shirt");

        // A rewrite that changes the SKU and slug frees the old ones.
        s.put_product(product(10, "AB-2", "tee"));
        assert_eq!(s.sku_owner("AB-1", None), None);
        assert_eq!(s.sku_owner("ab-2", None), Some(10));
        assert_eq!(s.unique_slug("shirt", 11), "shirt");
        assert_eq!(s.unique_slug("tee", 11), "tee-2");

        // Trash frees the SKU (the slug stays taken in this simulator); a delete frees both.
        s.put_product(product(11, "AB-1", "shirt"));
        s.products.get_mut(&11).unwrap().status = "trash".into();
        assert_eq!(s.sku_owner("AB-1", None), None);
        assert_eq!(s.unique_slug("shirt", 12), "shirt-2");
        s.products.remove(&11);
        assert_eq!(s.unique_slug("shirt", 12), "shirt");

        // The lowest id wins when two own the same SKU, as the scan it replaced.
        s.put_product(product(13, "X", "x"));
        s.put_product(product(12, "x", "x-2"));
        assert_eq!(s.sku_owner("X", None), Some(12));
        assert_eq!(s.unique_sku("X"), "X-1");
    }

    #[test]
    fn compares_skus_case_and_accent_insensitively() {
        assert_eq!(normalise_sku(" AB-Café "), "ab-cafe");
    }

    #[test]
    fn the_in_place_sku_comparison_agrees_with_normalising() {
        let skus = [
            "AB-1", " ab-1 ", "AB-1\t", "ab-2", "", "Café", "CAFE", "cafe ", "ÅS-1", "as-1", "ß",
        ];
        for a in skus {
            for b in skus {
                let wanted = normalise_sku(b);
                assert_eq!(
                    same_sku(a, &wanted),
                    normalise_sku(a) == wanted,
                    "{a:?} against {b:?}"
                );
            }
        }
    }

    #[test]
    fn kses_escapes_bare_ampersands_only() {
        assert_eq!(kses("Salt & Pepper &amp; Co"), "Salt &amp; Pepper &amp; Co");
    }

    #[test]
    fn parses_dates_with_and_without_offsets() {
        assert_eq!(parse_date("1970-01-01T01:00:00", 0), Some((3600, false)));
        assert_eq!(parse_date("1970-01-01T01:00:00", 3600), Some((0, false)));
        assert_eq!(parse_date("1970-01-01T01:00:00Z", 3600), Some((3600, true)));
        assert_eq!(parse_date("1970-01-01T01:00:00+01:00", 0), Some((0, true)));
        assert_eq!(parse_date("1970-01-02", 0), Some((86400, false)));
        assert_eq!(parse_date("yesterday", 0), None);
    }

    #[test]
    fn formats_money_with_trailing_zeros() {
        assert_eq!(money(Decimal::new(49, 1), 2), "4.90");
        // number_format rounds half away from zero, not to even.
        assert_eq!(money(Decimal::new(1225, 3), 2), "1.23");
        assert_eq!(money(Decimal::new(-1225, 3), 2), "-1.23");
        assert_eq!(unrounded(Decimal::new(44000, 4)), "4.4");
        assert_eq!(unrounded(Decimal::new(1_2250001, 7)), "1.225");
        assert_eq!(unrounded(Decimal::ZERO), "0");
    }
}
