//! The simulator's in-memory database and the domain rules that change it (stock, reservations,
//! order status, tokens). Everything here is synchronous and runs under one mutex.

use std::collections::{BTreeMap, HashMap};

use rust_decimal::Decimal;
use serde::{Deserialize, Serialize};
use time::PrimitiveDateTime;

use crate::config::SimConfig;
use crate::model::*;

/// A token the simulator issued.
#[derive(Debug, Clone)]
pub(crate) struct TokenInfo {
    /// Expiry, epoch seconds.
    pub(crate) exp: u64,
    /// Force-expired through the control API.
    pub(crate) revoked: bool,
}

/// Fields of a product that the control API can change. `None` leaves a field as it is.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ProductPatch {
    /// New name.
    pub product_name: Option<String>,
    /// New item number.
    pub product_number: Option<String>,
    /// New description (`""` clears).
    pub description: Option<String>,
    /// New price with VAT.
    pub price_inc_vat: Option<Decimal>,
    /// New VAT rate.
    pub vatrate_percent: Option<u32>,
    /// Offer: `Some(Some(p))` sets, `Some(None)` (JSON `null`) removes the offer and its period.
    #[serde(default, with = "double_option")]
    pub special_price: Option<Option<Decimal>>,
    /// Offer start (`Some(None)` clears).
    #[serde(default, with = "double_option_ts")]
    pub special_price_start_date: Option<Option<PrimitiveDateTime>>,
    /// Offer end (`Some(None)` clears).
    #[serde(default, with = "double_option_ts")]
    pub special_price_end_date: Option<Option<PrimitiveDateTime>>,
    /// Image: `""` removes it, an `http(s)://` URL is sent as is, any other text names a
    /// generated PNG served at `/images/<text>.png`.
    pub product_image: Option<String>,
    /// Replaces all custom fields.
    pub custom_fields: Option<Vec<SimCustomField>>,
    /// Show in / hide from the web shop.
    pub view_on_webshop: Option<bool>,
    /// Deleted flag.
    pub is_deleted: Option<bool>,
    /// Category path; the category is created when missing.
    pub category_name: Option<String>,
}

mod double_option {
    use super::*;
    pub fn serialize<S: serde::Serializer>(
        v: &Option<Option<Decimal>>,
        s: S,
    ) -> Result<S::Ok, S::Error> {
        match v {
            Some(Some(d)) => s.serialize_some(&d.to_string()),
            _ => s.serialize_none(),
        }
    }
    pub fn deserialize<'de, D: serde::Deserializer<'de>>(
        d: D,
    ) -> Result<Option<Option<Decimal>>, D::Error> {
        let v = serde_json::Value::deserialize(d)?;
        match v {
            serde_json::Value::Null => Ok(Some(None)),
            serde_json::Value::String(s) if s.trim().is_empty() => Ok(Some(None)),
            other => crate::params::decimal(&other)
                .map(|d| Some(Some(d)))
                .ok_or_else(|| serde::de::Error::custom("expected a decimal or null")),
        }
    }
}

mod double_option_ts {
    use super::*;
    pub fn serialize<S: serde::Serializer>(
        v: &Option<Option<PrimitiveDateTime>>,
        s: S,
    ) -> Result<S::Ok, S::Error> {
        match v {
            Some(Some(d)) => s.serialize_some(&ts(*d)),
            _ => s.serialize_none(),
        }
    }
    pub fn deserialize<'de, D: serde::Deserializer<'de>>(
        d: D,
    ) -> Result<Option<Option<PrimitiveDateTime>>, D::Error> {
        let v = Option::<String>::deserialize(d)?;
        match v.as_deref().map(str::trim) {
            None | Some("") => Ok(Some(None)),
            Some(s) => parse_ts(s)
                .map(|d| Some(Some(d)))
                .ok_or_else(|| serde::de::Error::custom("expected YYYY-MM-DD HH:MM:SS")),
        }
    }
}

/// A product to create through the control API. Missing fields get plausible defaults.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NewSimProduct {
    /// Name (required).
    pub product_name: String,
    /// Item number (default: `SIM-<id>`).
    pub product_number: Option<String>,
    /// Price with VAT (default 100).
    pub price_inc_vat: Option<Decimal>,
    /// VAT (default 25).
    pub vatrate_percent: Option<u32>,
    /// Offer price.
    pub special_price: Option<Decimal>,
    /// Category path (default `DIVERSE`).
    pub category_name: Option<String>,
    /// Shown in the web shop (default true).
    pub view_on_webshop: Option<bool>,
    /// Parent product id (makes this a variant).
    pub parent_variant: Option<u64>,
    /// Has variants.
    pub is_parent: Option<bool>,
    /// Custom fields.
    pub custom_fields: Option<Vec<SimCustomField>>,
    /// Description.
    pub description: Option<String>,
    /// Image (see [`ProductPatch::product_image`]); default: a generated image.
    pub product_image: Option<String>,
    /// Initial physical stock in every department (default 0).
    pub stock: Option<Decimal>,
}

pub(crate) struct Db {
    pub(crate) products: BTreeMap<u64, SimProduct>,
    pub(crate) next_product_id: u64,
    pub(crate) categories: BTreeMap<u64, SimCategory>,
    pub(crate) next_category_id: u64,
    pub(crate) departments: Vec<SimDepartment>,
    /// Physical stock per (department id, product id).
    pub(crate) stock: HashMap<(u64, u64), Decimal>,
    /// Open customer-order reservations per (department id, product id).
    pub(crate) reserved: HashMap<(u64, u64), Decimal>,
    pub(crate) customers: BTreeMap<u64, SimCustomer>,
    pub(crate) next_customer_id: u64,
    pub(crate) customer_orders: BTreeMap<u64, SimOrder>,
    pub(crate) sales_orders: BTreeMap<u64, SimOrder>,
    pub(crate) next_order_id: u64,
    pub(crate) adjustments: Vec<SimStockAdjustment>,
    pub(crate) tokens: HashMap<String, TokenInfo>,
    pub(crate) token_serial: u64,
    pub(crate) draw_statuses: Vec<u32>,
    pub(crate) stock_bumps_last_update: bool,
    pub(crate) utc_offset: time::UtcOffset,
}

/// Order status "Kansellert": releases the reservation of an undrawn order.
pub(crate) const STATUS_CANCELLED: u32 = 8;

impl Db {
    pub(crate) fn new(config: &SimConfig) -> Db {
        Db {
            products: BTreeMap::new(),
            next_product_id: 1,
            categories: BTreeMap::new(),
            next_category_id: 1,
            departments: Vec::new(),
            stock: HashMap::new(),
            reserved: HashMap::new(),
            customers: BTreeMap::new(),
            next_customer_id: 1,
            customer_orders: BTreeMap::new(),
            sales_orders: BTreeMap::new(),
            next_order_id: 1001,
            adjustments: Vec::new(),
            tokens: HashMap::new(),
            token_serial: 0,
            draw_statuses: config.draw_statuses.clone(),
            stock_bumps_last_update: config.stock_bumps_last_update,
            utc_offset: time::UtcOffset::from_whole_seconds(config.utc_offset_secs)
                .unwrap_or(time::UtcOffset::UTC),
        }
    }

    /// Now in DUELL local time, to the second.
    pub(crate) fn now(&self) -> PrimitiveDateTime {
        let now = time::OffsetDateTime::now_utc().to_offset(self.utc_offset);
        let now = PrimitiveDateTime::new(now.date(), now.time());
        now.replace_nanosecond(0).unwrap_or(now)
    }

    pub(crate) fn department_by_token(&self, token: &str) -> Option<&SimDepartment> {
        let token = token.trim();
        self.departments.iter().find(|d| d.api_token == token)
    }

    pub(crate) fn category_by_name(&mut self, name: &str) -> u64 {
        let name = name.trim();
        if let Some(c) = self
            .categories
            .values()
            .find(|c| c.category_name.eq_ignore_ascii_case(name))
        {
            return c.category_id;
        }
        self.create_category(name)
    }

    pub(crate) fn create_category(&mut self, name: &str) -> u64 {
        let id = self.next_category_id;
        self.next_category_id += 1;
        self.categories.insert(
            id,
            SimCategory {
                category_id: id,
                category_name: name.to_string(),
                category_type: "product".into(),
            },
        );
        id
    }

    pub(crate) fn level(&self, department_id: u64, product_id: u64) -> StockLevel {
        StockLevel {
            physical: self
                .stock
                .get(&(department_id, product_id))
                .copied()
                .unwrap_or_default(),
            reserved: self
                .reserved
                .get(&(department_id, product_id))
                .copied()
                .unwrap_or_default(),
        }
    }

    fn bump_for_stock(&mut self, product_id: u64) {
        if self.stock_bumps_last_update {
            let now = self.now();
            if let Some(p) = self.products.get_mut(&product_id) {
                p.last_update_date = now;
            }
        }
    }

    pub(crate) fn set_stock(&mut self, department_id: u64, product_id: u64, qty: Decimal) {
        self.stock.insert((department_id, product_id), qty);
        self.bump_for_stock(product_id);
    }

    pub(crate) fn add_stock(&mut self, department_id: u64, product_id: u64, delta: Decimal) {
        *self.stock.entry((department_id, product_id)).or_default() += delta;
        self.bump_for_stock(product_id);
    }

    fn reserve(&mut self, order: &SimOrder, sign: Decimal) {
        for l in &order.lines {
            *self
                .reserved
                .entry((order.department_id, l.product_id))
                .or_default() += l.quantity * sign;
        }
    }

    fn draw(&mut self, order: &SimOrder) {
        for l in &order.lines {
            self.add_stock(order.department_id, l.product_id, -l.quantity);
        }
    }

    fn reserving(order: &SimOrder) -> bool {
        !order.stock_drawn && order.purchase_order_status_id != STATUS_CANCELLED
    }

    /// Stores a new customer order: its lines reserve stock until it is drawn or cancelled; an
    /// order created directly in a draw status draws at once.
    pub(crate) fn insert_customer_order(&mut self, mut order: SimOrder) -> SimOrder {
        if self.draw_statuses.contains(&order.purchase_order_status_id) {
            order.stock_drawn = true;
            self.draw(&order);
        } else if Self::reserving(&order) {
            self.reserve(&order, Decimal::ONE);
        }
        self.customer_orders.insert(order.order_id, order.clone());
        order
    }

    /// Stores a sales order: its lines leave the physical stock at once. A sales order linked
    /// to a customer order (`ref_order_id`) draws that order instead: its reservation ends and
    /// the units leave the stock once (not at all when the customer order was drawn already).
    pub(crate) fn insert_sales_order(&mut self, mut order: SimOrder) -> SimOrder {
        order.stock_drawn = true;
        let linked = order
            .ref_order_id
            .and_then(|id| self.customer_orders.get(&id).cloned());
        match linked {
            // The customer order already left the stock: do not draw the same units again.
            Some(co) if co.stock_drawn => {}
            Some(co) => {
                if Self::reserving(&co) {
                    self.reserve(&co, -Decimal::ONE);
                }
                if let Some(co) = self.customer_orders.get_mut(&co.order_id) {
                    co.stock_drawn = true;
                }
                self.draw(&order);
            }
            None => self.draw(&order),
        }
        self.sales_orders.insert(order.order_id, order.clone());
        order
    }

    /// Changes a customer order's status, drawing its stock the first time it reaches a draw
    /// status and releasing its reservation when cancelled before that.
    pub(crate) fn set_order_status(&mut self, order_id: u64, status: u32) -> Option<SimOrder> {
        let before = self.customer_orders.get(&order_id)?.clone();
        let mut after = before.clone();
        after.purchase_order_status_id = status;
        let draws = !before.stock_drawn && self.draw_statuses.contains(&status);
        if draws {
            after.stock_drawn = true;
        }
        match (Self::reserving(&before), Self::reserving(&after)) {
            (true, false) => self.reserve(&before, -Decimal::ONE),
            (false, true) => self.reserve(&after, Decimal::ONE),
            _ => {}
        }
        if draws {
            self.draw(&after);
        }
        self.customer_orders.insert(order_id, after.clone());
        Some(after)
    }

    pub(crate) fn next_order(&mut self) -> (u64, String) {
        let id = self.next_order_id;
        self.next_order_id += 1;
        (id, format!("{}", 100_000 + id))
    }

    pub(crate) fn create_product(&mut self, spec: NewSimProduct) -> SimProduct {
        let id = self.next_product_id;
        self.next_product_id += 1;
        let category_name = spec.category_name.unwrap_or_else(|| "DIVERSE".into());
        let category_id = self.category_by_name(&category_name);
        let image = match spec.product_image {
            Some(s) => image_from_text(&s),
            None => SimImage::Generated(format!("p{id}")),
        };
        let price = spec.price_inc_vat.unwrap_or(Decimal::from(100));
        let p = SimProduct {
            product_id: id,
            product_number: spec.product_number.unwrap_or_else(|| format!("SIM-{id}")),
            product_name: spec.product_name,
            description: spec.description,
            barcode: String::new(),
            category_id,
            category_name,
            vatrate_percent: spec.vatrate_percent.unwrap_or(25),
            price_inc_vat: price,
            special_price: spec.special_price,
            special_price_start_date: None,
            special_price_end_date: None,
            cost_price: (price / Decimal::from(2)).round_dp(2),
            stock_price: (price / Decimal::from(2)).round_dp(2),
            supplier_name: "Simulert Leverandør AS".into(),
            is_deleted: false,
            is_parent: spec.is_parent.unwrap_or(false),
            parent_variant: spec.parent_variant.unwrap_or(0),
            view_on_webshop: spec.view_on_webshop.unwrap_or(true),
            image,
            last_update_date: self.now(),
            custom_fields: spec.custom_fields.unwrap_or_default(),
        };
        self.products.insert(id, p.clone());
        let qty = spec.stock.unwrap_or_default();
        let deps: Vec<u64> = self.departments.iter().map(|d| d.department_id).collect();
        for d in deps {
            self.stock.insert((d, id), qty);
        }
        p
    }

    /// Applies a patch; every change bumps `last_update_date`.
    pub(crate) fn patch_product(&mut self, id: u64, patch: ProductPatch) -> Option<SimProduct> {
        let category = patch
            .category_name
            .as_ref()
            .map(|n| (self.category_by_name(n), n.trim().to_string()));
        let now = self.now();
        let p = self.products.get_mut(&id)?;
        if let Some(v) = patch.product_name {
            p.product_name = v;
        }
        if let Some(v) = patch.product_number {
            p.product_number = v;
        }
        if let Some(v) = patch.description {
            p.description = (!v.is_empty()).then_some(v);
        }
        if let Some(v) = patch.price_inc_vat {
            p.price_inc_vat = v;
        }
        if let Some(v) = patch.vatrate_percent {
            p.vatrate_percent = v;
        }
        if let Some(v) = patch.special_price {
            p.special_price = v;
            if v.is_none() {
                p.special_price_start_date = None;
                p.special_price_end_date = None;
            }
        }
        if let Some(v) = patch.special_price_start_date {
            p.special_price_start_date = v;
        }
        if let Some(v) = patch.special_price_end_date {
            p.special_price_end_date = v;
        }
        if let Some(v) = patch.product_image {
            p.image = image_from_text(&v);
        }
        if let Some(v) = patch.custom_fields {
            p.custom_fields = v;
        }
        if let Some(v) = patch.view_on_webshop {
            p.view_on_webshop = v;
        }
        if let Some(v) = patch.is_deleted {
            p.is_deleted = v;
        }
        if let Some((cid, name)) = category {
            p.category_id = cid;
            p.category_name = name;
        }
        p.last_update_date = now;
        Some(p.clone())
    }

    /// Issues a token id and remembers its expiry.
    pub(crate) fn remember_token(&mut self, token: String, exp: u64) {
        self.tokens.insert(
            token,
            TokenInfo {
                exp,
                revoked: false,
            },
        );
    }
}

pub(crate) fn image_from_text(s: &str) -> SimImage {
    let s = s.trim();
    if s.is_empty() {
        SimImage::None
    } else if s.starts_with("http://") || s.starts_with("https://") {
        SimImage::Url(s.to_string())
    } else {
        SimImage::Generated(
            s.chars()
                .filter(|c| c.is_ascii_alphanumeric() || *c == '-' || *c == '_')
                .collect(),
        )
    }
}
