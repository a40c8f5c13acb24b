//! WooCommerce order lines → DUELL order lines (reference §6.11 `product_data`, §9 "Line prices"):
//! per-unit prices with and without VAT *before* discount, the per-unit discount *with* VAT, the
//! VAT rate as a whole percent; shipping and fee lines become lines of dedicated products.
//!
//! All arithmetic is exact ([`Decimal`]) and checked: absurd amounts from a plugin give a
//! [`MapError`], never a panic. Per-unit amounts are rounded like PHP's `round()`: half away from
//! zero.

use duellsync_woo_model::Order;
use rust_decimal::{Decimal, RoundingStrategy};

/// Key of the (first) shipping line in a DUELL order's `product_data`, as DUELL's own plugin sent
/// it. Other lines are keyed by their WooCommerce item id, which is unique within an order.
pub const SHIPPING_LINE_KEY: &str = "-9999999";

/// How lines are mapped.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MapOptions {
    /// Decimals of per-unit amounts. DUELL's plugin sent `round(x, 2)`; DUELL is not known to
    /// accept more.
    pub unit_decimals: u32,
    /// VAT rate (percent) used when the order carries no tax at all (a store that does not
    /// compute taxes); its amounts are then taken as amounts with VAT, as Norwegian retail prices
    /// are.
    pub fallback_vat: Decimal,
    /// Whether the store computes taxes, when known from the raw order ([`taxes_computed_in`]).
    /// Then a line without tax is zero-rated (0 %), not "unknown". `None`: inferred from the
    /// amounts (any tax on the order means the store computes taxes).
    pub taxes_computed: Option<bool>,
}

impl Default for MapOptions {
    fn default() -> Self {
        MapOptions {
            unit_decimals: 2,
            fallback_vat: Decimal::from(25),
            taxes_computed: None,
        }
    }
}

/// Whether the raw WooCommerce order JSON shows that the store computes taxes: it has tax lines,
/// or a line carries per-rate `taxes` entries (present even for a 0 % rate). `None` when the JSON
/// does not tell (a store without taxes, or fields left out by `_fields`).
pub fn taxes_computed_in(raw: &serde_json::Value) -> Option<bool> {
    let non_empty = |v: Option<&serde_json::Value>| {
        v.and_then(serde_json::Value::as_array)
            .is_some_and(|a| !a.is_empty())
    };
    if non_empty(raw.get("tax_lines")) {
        return Some(true);
    }
    for list in ["line_items", "shipping_lines", "fee_lines"] {
        if let Some(items) = raw.get(list).and_then(serde_json::Value::as_array) {
            if items.iter().any(|i| non_empty(i.get("taxes"))) {
                return Some(true);
            }
        }
    }
    None
}

/// [`taxes_computed_in`] read from the order's JSON text without building its tree: the
/// importer parses the typed order from the same bytes, and a whole order's tree per message was
/// a visible share of its CPU. Same answer for any text (`None` when it is not JSON).
pub fn taxes_computed_in_json(json: &[u8]) -> Option<bool> {
    use serde::de::DeserializeSeed;
    let mut de = serde_json::Deserializer::from_slice(json);
    let taxed = Look::Order.deserialize(&mut de).ok()?;
    de.end().ok()?;
    taxed.then_some(true)
}

/// What [`taxes_computed_in_json`] looks for in a value while the parser walks the order once,
/// skipping everything else. Any other kind of value than the one looked for answers `false`.
#[derive(Clone, Copy)]
enum Look {
    /// An object with non-empty `tax_lines`, or a taxed item in one of its line lists.
    Order,
    /// An array holding a taxed item.
    TaxedItems,
    /// An object whose `taxes` is a non-empty array.
    TaxedItem,
    /// An array with at least one element.
    NonEmpty,
}

impl<'de> serde::de::DeserializeSeed<'de> for Look {
    type Value = bool;
    fn deserialize<D: serde::Deserializer<'de>>(self, d: D) -> Result<bool, D::Error> {
        d.deserialize_any(self)
    }
}

impl<'de> serde::de::Visitor<'de> for Look {
    type Value = bool;

    fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("any JSON value")
    }

    fn visit_seq<A: serde::de::SeqAccess<'de>>(self, mut seq: A) -> Result<bool, A::Error> {
        let mut found = false;
        match self {
            Look::NonEmpty => {
                while seq.next_element::<serde::de::IgnoredAny>()?.is_some() {
                    found = true;
                }
            }
            Look::TaxedItems => {
                while let Some(taxed) = seq.next_element_seed(Look::TaxedItem)? {
                    found |= taxed;
                }
            }
            Look::Order | Look::TaxedItem => {
                while seq.next_element::<serde::de::IgnoredAny>()?.is_some() {}
            }
        }
        Ok(found)
    }

    fn visit_map<A: serde::de::MapAccess<'de>>(self, mut map: A) -> Result<bool, A::Error> {
        // One flag per key looked at: a repeated key replaces the earlier one, as in a `Value`.
        let keys: &[(&str, Look)] = match self {
            Look::Order => &[
                ("tax_lines", Look::NonEmpty),
                ("line_items", Look::TaxedItems),
                ("shipping_lines", Look::TaxedItems),
                ("fee_lines", Look::TaxedItems),
            ],
            Look::TaxedItem => &[("taxes", Look::NonEmpty)],
            Look::TaxedItems | Look::NonEmpty => &[],
        };
        let mut found = [false; 4];
        while let Some(key) = map.next_key::<std::borrow::Cow<'de, str>>()? {
            match keys.iter().position(|(k, _)| *k == key) {
                Some(i) => found[i] = map.next_value_seed(keys[i].1)?,
                None => {
                    map.next_value::<serde::de::IgnoredAny>()?;
                }
            }
        }
        Ok(found.iter().any(|f| *f))
    }

    fn visit_bool<E: serde::de::Error>(self, _: bool) -> Result<bool, E> {
        Ok(false)
    }
    fn visit_i64<E: serde::de::Error>(self, _: i64) -> Result<bool, E> {
        Ok(false)
    }
    fn visit_u64<E: serde::de::Error>(self, _: u64) -> Result<bool, E> {
        Ok(false)
    }
    fn visit_f64<E: serde::de::Error>(self, _: f64) -> Result<bool, E> {
        Ok(false)
    }
    fn visit_str<E: serde::de::Error>(self, _: &str) -> Result<bool, E> {
        Ok(false)
    }
    fn visit_unit<E: serde::de::Error>(self) -> Result<bool, E> {
        Ok(false)
    }
}

/// Where a mapped line came from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LineSource {
    /// A product line: resolved to a DUELL product by the link (variation id, else product id)
    /// or by SKU.
    Product {
        line_id: u64,
        product_id: u64,
        variation_id: u64,
        sku: Option<String>,
    },
    /// A shipping line: the store's shipping product.
    Shipping { line_id: u64, method_id: String },
    /// A fee line: the store's fee product.
    Fee { line_id: u64 },
}

impl LineSource {
    /// The WooCommerce id the link table knows the product by: the variation, else the product.
    pub fn woo_product_key(&self) -> Option<u64> {
        match self {
            LineSource::Product {
                product_id,
                variation_id,
                ..
            } => Some(if *variation_id > 0 {
                *variation_id
            } else {
                *product_id
            })
            .filter(|id| *id > 0),
            _ => None,
        }
    }
}

/// One DUELL order line, before its DUELL product is known.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MappedLine {
    /// Key in DUELL's `product_data` object; unique within the order.
    pub key: String,
    pub source: LineSource,
    /// Name at the time of ordering (for products created from unknown lines, and logs).
    pub name: String,
    pub quantity: Decimal,
    /// Unit price before discount, without VAT.
    pub price_ex_vat: Decimal,
    /// Unit price before discount, with VAT.
    pub price_inc_vat: Decimal,
    /// Whole percent.
    pub vat_rate: Decimal,
    /// Discount per unit with VAT; `None` when there is none (DUELL gets `""`).
    pub discount_inc_vat: Option<Decimal>,
    /// Line text: variant attributes, shipping method.
    pub comments: String,
}

impl MappedLine {
    /// What the line costs the buyer as DUELL will book it: (price − discount) × quantity.
    pub fn total_inc_vat(&self) -> Option<Decimal> {
        self.price_inc_vat
            .checked_sub(self.discount_inc_vat.unwrap_or_default())?
            .checked_mul(self.quantity)
    }
}

/// Why an order's lines cannot be mapped. Each is a permanent property of the order as it is.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum MapError {
    #[error("the order has no product lines")]
    NoLines,
    #[error(
        "line {line_id} ({name}) has quantity {quantity}; only positive quantities can be booked"
    )]
    BadQuantity {
        line_id: u64,
        name: String,
        quantity: i64,
    },
    #[error("line {line_id} has amounts too large to compute with")]
    Overflow { line_id: u64 },
}

/// Rounds like PHP's `round()`: half away from zero.
pub fn round_half_away(d: Decimal, dp: u32) -> Decimal {
    d.round_dp_with_strategy(dp, RoundingStrategy::MidpointAwayFromZero)
}

/// `tax / net` as a whole percent, when it makes sense (net not zero, result 0–100).
fn vat_rate(tax: Decimal, net: Decimal) -> Option<Decimal> {
    if net.is_zero() {
        return None;
    }
    let r = round_half_away(tax.checked_div(net)?.checked_mul(Decimal::ONE_HUNDRED)?, 0);
    (r >= Decimal::ZERO && r <= Decimal::ONE_HUNDRED).then_some(r)
}

/// Whether the order carries any tax; if not, the store does not compute taxes.
fn order_has_tax(o: &Order) -> bool {
    !o.total_tax.is_zero()
        || !o.cart_tax.is_zero()
        || !o.shipping_tax.is_zero()
        || o.line_items
            .iter()
            .any(|l| !l.subtotal_tax.is_zero() || !l.total_tax.is_zero())
        || o.shipping_lines.iter().any(|s| !s.total_tax.is_zero())
        || o.fee_lines.iter().any(|f| !f.total_tax.is_zero())
}

/// One WooCommerce line (product, shipping or fee) in amounts with VAT, before it becomes one or
/// two DUELL lines.
struct Priced {
    key: String,
    source: LineSource,
    name: String,
    comments: String,
    qty: Decimal,
    vat: Decimal,
    /// The whole line with VAT, before and after discount, rounded to the unit decimals.
    gross_before: Decimal,
    gross_after: Decimal,
    /// Without VAT, as WooCommerce shows them (for the prices without VAT).
    net_before: Decimal,
    net_after: Decimal,
    /// The line carries tax, so its amount with VAT is a sum of two rounded numbers and may be
    /// an øre off what WooCommerce counted in the order total.
    taxed: bool,
}

impl Priced {
    /// What the line comes to with VAT computed from its amount without VAT: where the
    /// rounding most likely went when the lines and the order total disagree.
    fn estimated(&self) -> Option<Decimal> {
        let factor = Decimal::ONE.checked_add(self.vat.checked_div(Decimal::ONE_HUNDRED)?)?;
        self.net_after.checked_mul(factor)
    }
}

/// Where a line comes from and what it is called.
struct Origin {
    key: String,
    source: LineSource,
    name: String,
    comments: String,
}

fn priced(
    origin: Origin,
    qty: i64,
    (net_before, tax_before, net_after, tax_after): (Decimal, Decimal, Decimal, Decimal),
    has_tax: bool,
    opts: &MapOptions,
) -> Option<Priced> {
    let Origin {
        key,
        source,
        name,
        comments,
    } = origin;
    let dp = opts.unit_decimals;
    let (vat, gross_before, gross_after) = if has_tax {
        let vat = vat_rate(tax_before, net_before)
            .or_else(|| vat_rate(tax_after, net_after))
            .unwrap_or(opts.fallback_vat);
        (
            vat,
            net_before.checked_add(tax_before)?,
            net_after.checked_add(tax_after)?,
        )
    } else {
        (opts.fallback_vat, net_before, net_after)
    };
    Some(Priced {
        key,
        source,
        name,
        comments,
        qty: Decimal::from(qty),
        vat,
        gross_before: round_half_away(gross_before, dp),
        gross_after: round_half_away(gross_after, dp),
        net_before,
        net_after,
        taxed: has_tax && !(tax_before.is_zero() && tax_after.is_zero()),
    })
}

/// Makes the lines add up to WooCommerce's total when they miss it by rounding only: a line's
/// amount with VAT is its amount without VAT plus its tax, each rounded, while WooCommerce may
/// have rounded the two together, rounded the tax the other way (half down in a store whose
/// prices include tax, half up for shipping at checkout) or rounded only the order's sum
/// (`woocommerce_tax_round_at_subtotal`). Each taxed line can be off by at most one unit of the
/// last decimal, so a difference within that many units is given back one unit per line, to
/// the lines whose shown amount is furthest from their own VAT arithmetic. Anything larger is
/// not rounding, and is left for the totals check to report.
fn reconcile(lines: &mut [Priced], woo_total: Decimal, dp: u32) -> Option<()> {
    let unit = Decimal::new(1, dp);
    let sum = lines
        .iter()
        .try_fold(Decimal::ZERO, |acc, l| acc.checked_add(l.gross_after))?;
    let residual = round_half_away(woo_total, dp).checked_sub(sum)?;
    let candidates: Vec<usize> = (0..lines.len()).filter(|i| lines[*i].taxed).collect();
    let units = residual.checked_div(unit)?.abs();
    if residual.is_zero() || units > Decimal::from(candidates.len()) {
        return Some(());
    }
    let step = if residual > Decimal::ZERO {
        unit
    } else {
        -unit
    };
    // How far a line's shown amount is below (for a positive residual) its own arithmetic.
    let mut scored: Vec<(Decimal, usize)> = candidates
        .iter()
        .map(|i| {
            let l = &lines[*i];
            let gap = l
                .estimated()
                .and_then(|e| e.checked_sub(l.gross_after))
                .unwrap_or_default();
            (if step > Decimal::ZERO { gap } else { -gap }, *i)
        })
        .collect();
    scored.sort_by(|a, b| b.0.cmp(&a.0).then(a.1.cmp(&b.1)));
    let n = units.to_string().parse::<usize>().ok()?;
    for (_, i) in scored.into_iter().take(n) {
        let l = &mut lines[i];
        let undiscounted = l.gross_before == l.gross_after;
        l.gross_after = l.gross_after.checked_add(step)?;
        if undiscounted {
            l.gross_before = l.gross_after;
        }
    }
    Some(())
}

/// DUELL books a line as (unit price − unit discount) × quantity with per-unit amounts of
/// `dp` decimals, so a line whose amount does not divide by its quantity becomes two lines of
/// the same product: the units at the lower price and, for the remainder, units one øre dearer
/// (3 for 100.00: 2 × 33.33 and 1 × 33.34). Every line then books exactly its WooCommerce amount.
fn split(l: Priced, has_tax: bool, opts: &MapOptions) -> Option<Vec<MappedLine>> {
    let dp = opts.unit_decimals;
    let unit = Decimal::new(1, dp);
    let units = l.gross_after.checked_div(unit)?.round();
    let base = units.checked_div(l.qty)?.floor();
    let rest = units.checked_sub(base.checked_mul(l.qty)?)?;
    let priced_up = l.gross_after > l.gross_before;
    let discounted = !priced_up && l.gross_before != l.gross_after;
    let before_unit = round_half_away(l.gross_before.checked_div(l.qty)?, dp);
    // Prices without VAT keep the line's own ratio between its amounts without and with VAT.
    let (net, gross) = if priced_up {
        (l.net_after, l.gross_after)
    } else {
        (l.net_before, l.gross_before)
    };
    let ex = |inc: Decimal| -> Option<Decimal> {
        let value = if has_tax && !gross.is_zero() {
            inc.checked_mul(net)?.checked_div(gross)?
        } else {
            let divisor = Decimal::ONE.checked_add(l.vat.checked_div(Decimal::ONE_HUNDRED)?)?;
            inc.checked_div(divisor)?
        };
        Some(round_half_away(value, dp))
    };
    let mut out = Vec::new();
    for (count, unit_units) in [
        (l.qty.checked_sub(rest)?, base),
        (rest, base.checked_add(Decimal::ONE)?),
    ] {
        if count <= Decimal::ZERO {
            continue;
        }
        let after = unit_units.checked_mul(unit)?;
        let (price, discount) = match before_unit.checked_sub(after)? {
            d if discounted && d > Decimal::ZERO => (before_unit, Some(d)),
            _ => (after, None),
        };
        out.push(MappedLine {
            key: if out.is_empty() {
                l.key.clone()
            } else {
                format!("{}-2", l.key)
            },
            source: l.source.clone(),
            name: l.name.clone(),
            quantity: count,
            price_ex_vat: ex(price)?,
            price_inc_vat: price,
            vat_rate: l.vat,
            discount_inc_vat: discount,
            comments: l.comments.clone(),
        });
    }
    Some(out)
}

fn line_comments(meta: &[duellsync_woo_model::MetaData]) -> String {
    meta.iter()
        .filter(|m| !m.key.starts_with('_') && !m.key.trim().is_empty())
        .filter_map(|m| {
            let v = match &m.value {
                serde_json::Value::String(s) => s.clone(),
                serde_json::Value::Number(n) => n.to_string(),
                _ => return None,
            };
            Some(format!("{}: {}", m.key.trim(), v.trim()))
        })
        .collect::<Vec<_>>()
        .join("; ")
}

/// Maps every product, shipping and fee line of `order`. Fee lines of zero are left out (nothing
/// to book); shipping lines are kept even when free, because the method matters for fulfilment.
///
/// The lines book exactly what WooCommerce charged: prices with VAT come from each line's
/// amount and tax, a difference from the order total that only rounding explains is given back
/// to the lines it came from ([`reconcile`]), and a line whose amount does not divide by its
/// quantity is split in two ([`split`]).
pub fn map_lines(order: &Order, opts: &MapOptions) -> Result<Vec<MappedLine>, MapError> {
    if order.line_items.is_empty() {
        return Err(MapError::NoLines);
    }
    let has_tax = opts.taxes_computed.unwrap_or(false) || order_has_tax(order);
    let mut lines: Vec<Priced> = Vec::new();
    for item in &order.line_items {
        if item.quantity <= 0 {
            return Err(MapError::BadQuantity {
                line_id: item.id,
                name: item.name.clone(),
                quantity: item.quantity,
            });
        }
        let p = priced(
            Origin {
                key: item.id.to_string(),
                source: LineSource::Product {
                    line_id: item.id,
                    product_id: item.product_id,
                    variation_id: item.variation_id,
                    sku: item.sku.clone().filter(|s| !s.trim().is_empty()),
                },
                name: item.name.clone(),
                comments: line_comments(&item.meta_data),
            },
            item.quantity,
            (item.subtotal, item.subtotal_tax, item.total, item.total_tax),
            has_tax,
            opts,
        )
        .ok_or(MapError::Overflow { line_id: item.id })?;
        lines.push(p);
    }
    for (i, s) in order.shipping_lines.iter().enumerate() {
        let title = if s.method_title.trim().is_empty() {
            "Frakt".to_owned()
        } else {
            s.method_title.trim().to_owned()
        };
        let p = priced(
            Origin {
                key: if i == 0 {
                    SHIPPING_LINE_KEY.to_owned()
                } else {
                    s.id.to_string()
                },
                source: LineSource::Shipping {
                    line_id: s.id,
                    method_id: s.method_id.clone(),
                },
                name: title.clone(),
                comments: title,
            },
            1,
            (s.total, s.total_tax, s.total, s.total_tax),
            has_tax,
            opts,
        )
        .ok_or(MapError::Overflow { line_id: s.id })?;
        lines.push(p);
    }
    for f in &order.fee_lines {
        if f.total.is_zero() && f.total_tax.is_zero() {
            continue;
        }
        let p = priced(
            Origin {
                key: f.id.to_string(),
                source: LineSource::Fee { line_id: f.id },
                name: f.name.clone(),
                comments: f.name.trim().to_owned(),
            },
            1,
            (f.total, f.total_tax, f.total, f.total_tax),
            has_tax,
            opts,
        )
        .ok_or(MapError::Overflow { line_id: f.id })?;
        lines.push(p);
    }
    let first_id = order.line_items[0].id;
    reconcile(&mut lines, order.total, opts.unit_decimals)
        .ok_or(MapError::Overflow { line_id: first_id })?;
    let mut out: Vec<MappedLine> = Vec::new();
    for l in lines {
        let line_id = match &l.source {
            LineSource::Product { line_id, .. }
            | LineSource::Shipping { line_id, .. }
            | LineSource::Fee { line_id } => *line_id,
        };
        for mut line in split(l, has_tax, opts).ok_or(MapError::Overflow { line_id })? {
            // Item ids are unique in a well-formed order; keep keys unique whatever a plugin sends.
            let base = line.key.clone();
            let mut n = 1;
            while out.iter().any(|l| l.key == line.key) {
                n += 1;
                line.key = format!("{base}-{n}");
            }
            out.push(line);
        }
    }
    Ok(out)
}

/// Sum of the mapped lines as DUELL will book them; `None` on overflow.
pub fn mapped_total(lines: &[MappedLine]) -> Option<Decimal> {
    lines
        .iter()
        .try_fold(Decimal::ZERO, |acc, l| acc.checked_add(l.total_inc_vat()?))
}

/// The mapped lines do not add up to what WooCommerce charged.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("mapped lines sum to {mapped}, WooCommerce total is {woo} (difference {difference}, tolerance {tolerance})")]
pub struct TotalMismatch {
    pub mapped: Decimal,
    pub woo: Decimal,
    pub difference: Decimal,
    pub tolerance: Decimal,
}

/// Checks the mapped lines against the WooCommerce order total: the sale DUELL books must be what
/// the buyer paid, within `tolerance` (per-unit rounding). Returns the mapped total.
pub fn check_total(
    lines: &[MappedLine],
    woo_total: Decimal,
    tolerance: Decimal,
) -> Result<Decimal, TotalMismatch> {
    let overflow = || TotalMismatch {
        mapped: Decimal::MAX,
        woo: woo_total,
        difference: Decimal::MAX,
        tolerance,
    };
    let mapped = mapped_total(lines).ok_or_else(overflow)?;
    let difference = mapped.checked_sub(woo_total).ok_or_else(overflow)?.abs();
    if difference > tolerance.abs() {
        return Err(TotalMismatch {
            mapped,
            woo: woo_total,
            difference,
            tolerance,
        });
    }
    Ok(mapped)
}

/// Whether two totals are equal within `tolerance` (status write-back compares the Woo total
/// before completing with the total imported).
pub fn same_total(a: Decimal, b: Decimal, tolerance: Decimal) -> bool {
    a.checked_sub(b)
        .map(|d| d.abs() <= tolerance.abs())
        .unwrap_or(false)
}

/// `orders.total_tolerance` as a decimal (validated by the settings; 0.05 if unreadable).
pub fn parse_tolerance(text: &str) -> Decimal {
    text.trim()
        .parse::<Decimal>()
        .map(|d| d.abs())
        .unwrap_or_else(|_| Decimal::new(5, 2))
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use rust_decimal_macros::dec;

    fn order(v: serde_json::Value) -> Order {
        serde_json::from_value(v).expect("order json")
    }

    #[test]
    fn a_store_without_taxes_books_amounts_with_fallback_vat() {
        let o = order(serde_json::json!({
            "id": 9, "total": "248.00",
            "line_items": [{"id": 1, "name": "Genser", "product_id": 10, "quantity": 2,
                            "subtotal": "250.00", "total": "200.00", "sku": "G-1",
                            "meta_data": [{"key": "Størrelse", "value": "M"}, {"key": "_reduced_stock", "value": "2"}]}],
            "shipping_lines": [{"id": 2, "method_id": "flat_rate", "method_title": "Posten", "total": "48.00"}],
        }));
        let lines = map_lines(&o, &MapOptions::default()).unwrap();
        assert_eq!(lines.len(), 2);
        let l = &lines[0];
        assert_eq!(l.key, "1");
        assert_eq!(
            (l.price_inc_vat, l.price_ex_vat, l.vat_rate),
            (dec!(125.00), dec!(100.00), dec!(25))
        );
        assert_eq!(l.discount_inc_vat, Some(dec!(25.00)));
        assert_eq!(l.comments, "Størrelse: M");
        let s = &lines[1];
        assert_eq!(s.key, SHIPPING_LINE_KEY);
        assert_eq!(
            (s.price_inc_vat, s.price_ex_vat),
            (dec!(48.00), dec!(38.40))
        );
        assert_eq!(check_total(&lines, o.total, dec!(0.05)), Ok(dec!(248.00)));
    }

    #[test]
    fn taxed_lines_take_their_vat_from_the_line_taxes() {
        let o = order(serde_json::json!({
            "id": 9, "total": "363.50", "total_tax": "63.50",
            "line_items": [
                {"id": 1, "product_id": 10, "quantity": 1, "subtotal": "200.00", "subtotal_tax": "50.00",
                 "total": "200.00", "total_tax": "50.00"},
                {"id": 2, "product_id": 11, "quantity": 2, "subtotal": "80.00", "subtotal_tax": "12.00",
                 "total": "40.00", "total_tax": "6.00"},
                {"id": 3, "product_id": 12, "quantity": 1, "subtotal": "30.00", "subtotal_tax": "0.00",
                 "total": "30.00", "total_tax": "0.00"}],
            "shipping_lines": [{"id": 4, "total": "40.00", "total_tax": "10.00"}],
            "fee_lines": [{"id": 5, "name": "Gebyr", "total": "0.00", "total_tax": "0.00"},
                          {"id": 6, "name": "Emballasje", "total": "-10.00", "total_tax": "-2.50"}],
        }));
        let lines = map_lines(&o, &MapOptions::default()).unwrap();
        let vats: Vec<Decimal> = lines.iter().map(|l| l.vat_rate).collect();
        assert_eq!(vats, vec![dec!(25), dec!(15), dec!(0), dec!(25), dec!(25)]);
        assert_eq!(lines[1].price_inc_vat, dec!(46.00));
        assert_eq!(lines[1].price_ex_vat, dec!(40.00));
        assert_eq!(lines[1].discount_inc_vat, Some(dec!(23.00)));
        assert_eq!(lines[0].discount_inc_vat, None);
        assert_eq!(
            lines[4].price_inc_vat,
            dec!(-12.50),
            "negative fee kept as a negative price"
        );
        assert!(lines.iter().all(|l| l.key != "5"), "zero fee left out");
        assert_eq!(check_total(&lines, o.total, dec!(0.05)), Ok(dec!(363.50)));
    }

    /// The tree-free reader answers as the `Value` one does, for orders and for any other JSON.
    #[test]
    fn taxes_computed_in_json_agrees_with_the_tree() {
        let cases = [
            r#"{"tax_lines": [{"id": 7}]}"#,
            r#"{"tax_lines": []}"#,
            r#"{"tax_lines": {"a": 1}}"#,
            r#"{"tax_lines": [1], "tax_lines": []}"#,
            r#"{"line_items": [{"taxes": []}, {"taxes": [{"id": 1, "total": "0"}]}]}"#,
            r#"{"line_items": [{"taxes": [1]}], "line_items": []}"#,
            r#"{"shipping_lines": [{"taxes": "x"}], "fee_lines": [7, null, {"taxes": [null]}]}"#,
            r#"{"line_items": [{"name": "\"taxes\"", "taxes": 1.5e3}]}"#,
            r#"{"fee_lines": {"taxes": [1]}}"#,
            r#"[{"tax_lines": [1]}]"#,
            r#""text""#,
            r#"12"#,
            r#"{"tax_lines": [1]"#,
            r#"not json"#,
        ];
        for case in cases {
            let tree = serde_json::from_str::<serde_json::Value>(case)
                .ok()
                .and_then(|v| taxes_computed_in(&v));
            assert_eq!(taxes_computed_in_json(case.as_bytes()), tree, "{case}");
        }
        // The order body of a delivery captured from a real store.
        let capture: serde_json::Value = serde_json::from_str(include_str!(
            "../../../tests/fixtures/woocommerce-samples/25-webhook-order-created-delivery.json"
        ))
        .unwrap();
        let body = capture["body_text"].as_str().unwrap();
        let tree: serde_json::Value = serde_json::from_str(body).unwrap();
        assert_eq!(
            taxes_computed_in_json(body.as_bytes()),
            taxes_computed_in(&tree)
        );
    }

    proptest::proptest! {
        #[test]
        fn taxes_computed_in_json_agrees_with_the_tree_on_any_lists(
            lists in proptest::collection::vec((0usize..4, proptest::collection::vec(0usize..3, 0..3)), 0..5)
        ) {
            let names = ["tax_lines", "line_items", "shipping_lines", "fee_lines"];
            let item = |k: usize| match k {
                0 => r#"{"taxes": []}"#,
                1 => r#"{"taxes": [{"id": 1}], "total": "1.00"}"#,
                _ => "3",
            };
            let body: Vec<String> = lists
                .iter()
                .map(|(n, items)| {
                    let items: Vec<&str> = items.iter().map(|k| item(*k)).collect();
                    format!(r#""{}": [{}]"#, names[*n], items.join(","))
                })
                .collect();
            let text = format!("{{{}}}", body.join(","));
            let tree: serde_json::Value = serde_json::from_str(&text).unwrap();
            proptest::prop_assert_eq!(taxes_computed_in_json(text.as_bytes()), taxes_computed_in(&tree), "{}", text);
        }
    }

    #[test]
    fn tax_lines_in_the_raw_order_mark_zero_tax_as_zero_rated() {
        let raw = serde_json::json!({
            "id": 9, "total": "30.00", "tax_lines": [{"id": 7, "rate_code": "NO-MVA-0", "rate_percent": 0}],
            "line_items": [{"id": 1, "product_id": 10, "quantity": 1, "subtotal": "30.00", "total": "30.00",
                            "taxes": [{"id": 7, "total": "0", "subtotal": "0"}]}],
        });
        assert_eq!(taxes_computed_in(&raw), Some(true));
        assert_eq!(
            taxes_computed_in(&serde_json::json!({"tax_lines": []})),
            None
        );
        let o = order(raw.clone());
        let opts = MapOptions {
            taxes_computed: taxes_computed_in(&raw),
            ..MapOptions::default()
        };
        let l = &map_lines(&o, &opts).unwrap()[0];
        assert_eq!(
            (l.vat_rate, l.price_ex_vat, l.price_inc_vat),
            (dec!(0), dec!(30.00), dec!(30.00))
        );
        // Without that knowledge the amount is taken as with VAT at the fallback rate.
        let l = &map_lines(&o, &MapOptions::default()).unwrap()[0];
        assert_eq!(
            (l.vat_rate, l.price_ex_vat, l.price_inc_vat),
            (dec!(25), dec!(24.00), dec!(30.00))
        );
    }

    #[test]
    fn a_line_priced_up_after_checkout_gets_no_negative_discount() {
        let o = order(serde_json::json!({
            "id": 9, "total": "150.00",
            "line_items": [{"id": 1, "product_id": 10, "quantity": 1, "subtotal": "100.00", "total": "150.00"}],
        }));
        let l = &map_lines(&o, &MapOptions::default()).unwrap()[0];
        assert_eq!((l.price_inc_vat, l.discount_inc_vat), (dec!(150.00), None));
    }

    #[test]
    fn rounding_is_half_away_from_zero_like_php() {
        assert_eq!(round_half_away(dec!(0.125), 2), dec!(0.13));
        assert_eq!(round_half_away(dec!(-0.125), 2), dec!(-0.13));
        assert_eq!(round_half_away(dec!(2.5), 0), dec!(3));
    }

    #[test]
    fn a_line_that_does_not_divide_by_its_quantity_becomes_two_exact_lines() {
        let o = order(serde_json::json!({
            "id": 9, "total": "100.00",
            "line_items": [{"id": 1, "product_id": 10, "quantity": 3, "subtotal": "100.00", "total": "100.00"}],
        }));
        let lines = map_lines(&o, &MapOptions::default()).unwrap();
        let parts: Vec<(&str, Decimal, Decimal, Option<Decimal>)> = lines
            .iter()
            .map(|l| {
                (
                    l.key.as_str(),
                    l.quantity,
                    l.price_inc_vat,
                    l.discount_inc_vat,
                )
            })
            .collect();
        assert_eq!(
            parts,
            vec![
                ("1", dec!(2), dec!(33.33), None),
                ("1-2", dec!(1), dec!(33.34), None)
            ]
        );
        assert_eq!(lines[0].source, lines[1].source, "the same product");
        assert_eq!(check_total(&lines, o.total, dec!(0)), Ok(dec!(100.00)));

        // With a discount the unit price before discount stays; the discounts differ by an øre.
        let o = order(serde_json::json!({
            "id": 9, "total": "80.00",
            "line_items": [{"id": 1, "product_id": 10, "quantity": 3, "subtotal": "90.00", "total": "80.00"}],
        }));
        let lines = map_lines(&o, &MapOptions::default()).unwrap();
        let parts: Vec<(Decimal, Decimal, Option<Decimal>)> = lines
            .iter()
            .map(|l| (l.quantity, l.price_inc_vat, l.discount_inc_vat))
            .collect();
        assert_eq!(
            parts,
            vec![
                (dec!(1), dec!(30.00), Some(dec!(3.34))),
                (dec!(2), dec!(30.00), Some(dec!(3.33)))
            ]
        );
        assert_eq!(check_total(&lines, o.total, dec!(0)), Ok(dec!(80.00)));
    }

    #[test]
    fn an_ore_of_tax_rounding_between_the_lines_and_the_total_goes_to_the_line_it_came_from() {
        // Checkout in a store whose prices include VAT: the shipping line shows its tax rounded
        // half down (1.225 → 1.22) while the cart counted it rounded half up (1.23).
        let raw = serde_json::json!({
            "id": 9, "total": "28.13", "total_tax": "5.63", "prices_include_tax": true,
            "tax_lines": [{"id": 3, "rate_id": 1, "rate_percent": 25}],
            "line_items": [{"id": 1, "product_id": 10, "quantity": 2, "subtotal": "17.60", "subtotal_tax": "4.40",
                            "total": "17.60", "total_tax": "4.40", "taxes": [{"id": 1, "total": "4.4", "subtotal": "4.4"}]}],
            "shipping_lines": [{"id": 2, "method_id": "flat_rate", "total": "4.90", "total_tax": "1.22",
                                "taxes": [{"id": 1, "total": "1.225", "subtotal": ""}]}],
        });
        let o = order(raw.clone());
        let opts = MapOptions {
            taxes_computed: taxes_computed_in(&raw),
            ..MapOptions::default()
        };
        let lines = map_lines(&o, &opts).unwrap();
        assert_eq!(
            lines[0].price_inc_vat,
            dec!(11.00),
            "the product line as sold"
        );
        assert_eq!(
            lines[1].price_inc_vat,
            dec!(6.13),
            "the øre goes to shipping"
        );
        assert_eq!(check_total(&lines, o.total, dec!(0)), Ok(dec!(28.13)));

        // A difference rounding cannot explain is not spread: the totals check reports it.
        let mut far = raw;
        far["total"] = "28.20".into();
        let o = order(far);
        let lines = map_lines(&o, &opts).unwrap();
        assert_eq!(mapped_total(&lines), Some(dec!(28.12)));
        assert!(check_total(&lines, o.total, dec!(0.05)).is_err());
    }

    #[test]
    fn orders_without_lines_or_with_bad_quantities_cannot_be_mapped() {
        let o = order(serde_json::json!({"id": 1, "line_items": []}));
        assert_eq!(
            map_lines(&o, &MapOptions::default()),
            Err(MapError::NoLines)
        );
        let o = order(serde_json::json!({"id": 1, "line_items": [{"id": 3, "quantity": 0}]}));
        assert!(matches!(
            map_lines(&o, &MapOptions::default()),
            Err(MapError::BadQuantity { line_id: 3, .. })
        ));
    }

    #[test]
    fn a_total_far_off_is_a_mismatch_with_both_sums() {
        let o = order(serde_json::json!({
            "id": 9, "total": "50.00",
            "line_items": [{"id": 1, "product_id": 10, "quantity": 1, "subtotal": "100.00", "total": "100.00"}],
        }));
        let lines = map_lines(&o, &MapOptions::default()).unwrap();
        let err = check_total(&lines, o.total, dec!(0.05)).unwrap_err();
        assert_eq!(
            (err.mapped, err.woo, err.difference),
            (dec!(100.00), dec!(50.00), dec!(50.00))
        );
        assert!(err.to_string().contains("100.00") && err.to_string().contains("50.00"));
    }

    #[test]
    fn tolerance_text_parses_with_a_safe_default() {
        assert_eq!(parse_tolerance("0.10"), dec!(0.10));
        assert_eq!(parse_tolerance("x"), dec!(0.05));
        assert!(same_total(dec!(10.00), dec!(10.04), dec!(0.05)));
        assert!(!same_total(dec!(10.00), dec!(10.06), dec!(0.05)));
    }

    fn money() -> impl Strategy<Value = i64> {
        0i64..2_000_000 // cents, up to 20 000.00
    }

    /// A line as WooCommerce computes it: unit price in cents × quantity, a discount of whole
    /// cents on the line, tax at `rate` rounded to cents.
    #[derive(Debug, Clone)]
    struct GenLine {
        unit_cents: i64,
        qty: i64,
        discount_cents: i64,
        rate: i64,
    }

    fn gen_line() -> impl Strategy<Value = GenLine> {
        (
            money(),
            1i64..40,
            0i64..=100,
            prop::sample::select(vec![0i64, 12, 15, 25]),
        )
            .prop_map(|(unit_cents, qty, pct, rate)| GenLine {
                unit_cents,
                qty,
                discount_cents: unit_cents * qty * pct / 100,
                rate,
            })
    }

    fn cents(c: i64) -> Decimal {
        Decimal::new(c, 2)
    }

    fn tax_of(net: Decimal, rate: i64) -> Decimal {
        round_half_away(net * Decimal::from(rate) / Decimal::ONE_HUNDRED, 2)
    }

    fn build(
        lines: &[GenLine],
        shipping_cents: i64,
        taxed: bool,
        per_unit_discount: bool,
    ) -> Order {
        let mut items = Vec::new();
        let mut total = Decimal::ZERO;
        let mut total_tax = Decimal::ZERO;
        for (i, l) in lines.iter().enumerate() {
            let subtotal = cents(l.unit_cents * l.qty);
            let disc = if per_unit_discount {
                cents((l.discount_cents / l.qty) * l.qty)
            } else {
                cents(l.discount_cents)
            };
            let line_total = subtotal - disc;
            let (st, tt) = if taxed {
                (tax_of(subtotal, l.rate), tax_of(line_total, l.rate))
            } else {
                (Decimal::ZERO, Decimal::ZERO)
            };
            total += line_total + tt;
            total_tax += tt;
            items.push(serde_json::json!({
                "id": i + 1, "product_id": 100 + i, "quantity": l.qty,
                "subtotal": subtotal.to_string(), "subtotal_tax": st.to_string(),
                "total": line_total.to_string(), "total_tax": tt.to_string(),
            }));
        }
        let ship = cents(shipping_cents);
        let ship_tax = if taxed {
            tax_of(ship, 25)
        } else {
            Decimal::ZERO
        };
        total += ship + ship_tax;
        total_tax += ship_tax;
        order(serde_json::json!({
            "id": 1, "total": total.to_string(), "total_tax": total_tax.to_string(),
            "line_items": items,
            "shipping_lines": [{"id": 99, "total": ship.to_string(), "total_tax": ship_tax.to_string()}],
        }))
    }

    proptest! {
        #[test]
        fn rounding_is_within_half_a_unit_and_symmetric(units in any::<i64>(), scale in 0u32..=28, dp in 0u32..28) {
            let d = Decimal::new(units, scale);
            let r = round_half_away(d, dp);
            prop_assert!(r.scale() <= dp);
            prop_assert!((r - d).abs() <= Decimal::new(5, dp + 1));
            // Half away from zero: negative amounts round like their positive mirror.
            prop_assert_eq!(round_half_away(-d, dp), -r);
        }

        #[test]
        fn mapping_never_panics_on_any_amounts(
            amounts in prop::collection::vec((any::<i64>(), any::<u32>(), any::<i64>(), any::<u32>(), -5i64..1000), 0..6),
            fee in (any::<i64>(), any::<u32>()),
            dp in 0u32..8,
        ) {
            let items: Vec<serde_json::Value> = amounts.iter().enumerate().map(|(i, (a, sa, b, sb, q))| {
                serde_json::json!({"id": i, "product_id": i, "quantity": q,
                    "subtotal": Decimal::new(*a, sa % 29).to_string(),
                    "subtotal_tax": Decimal::new(*b, sb % 29).to_string(),
                    "total": Decimal::new(b.wrapping_sub(*a), sa % 29).to_string(),
                    "total_tax": Decimal::new(a / 3, sb % 29).to_string()})
            }).collect();
            let o = order(serde_json::json!({
                "id": 1, "total": "1", "line_items": items,
                "fee_lines": [{"id": 77, "total": Decimal::new(fee.0, fee.1 % 29).to_string()}],
                "shipping_lines": [{"id": 78, "total": "7.5", "total_tax": Decimal::new(fee.0, 3).to_string()}],
            }));
            let opts = MapOptions { unit_decimals: dp, ..MapOptions::default() };
            if let Ok(lines) = map_lines(&o, &opts) {
                let _ = check_total(&lines, o.total, Decimal::new(5, 2));
                for l in &lines {
                    prop_assert!(l.vat_rate >= Decimal::ZERO && l.vat_rate <= Decimal::ONE_HUNDRED);
                }
            }
        }

        #[test]
        fn per_unit_amounts_reconstruct_the_woo_total_exactly(
            lines in prop::collection::vec(gen_line(), 1..8),
            shipping in 0i64..20_000,
            taxed in any::<bool>(),
        ) {
            // Whole-cent unit prices and whole-cent per-unit discounts (the usual case): exact.
            let o = build(&lines, shipping, taxed, true);
            let mapped = map_lines(&o, &MapOptions::default()).unwrap();
            prop_assert!(check_total(&mapped, o.total, Decimal::ZERO).is_ok(),
                "{:?}", check_total(&mapped, o.total, Decimal::ZERO));
        }

        #[test]
        fn spread_discounts_reconstruct_the_woo_total_exactly(
            lines in prop::collection::vec(gen_line(), 1..8),
            shipping in 0i64..20_000,
            taxed in any::<bool>(),
        ) {
            // Discounts of any øre amount on lines of several units: split lines absorb them.
            let o = build(&lines, shipping, taxed, false);
            let mapped = map_lines(&o, &MapOptions::default()).unwrap();
            prop_assert!(check_total(&mapped, o.total, Decimal::ZERO).is_ok(),
                "{:?}", check_total(&mapped, o.total, Decimal::ZERO));
        }

        #[test]
        fn vat_rates_come_back_from_the_taxes(
            lines in prop::collection::vec(gen_line().prop_filter("net >= 10.00", |l| l.unit_cents * l.qty >= 1000), 1..6),
        ) {
            let o = build(&lines, 0, true, true);
            // A store that computes taxes says so in its tax lines; all-0 % orders need it.
            let opts = MapOptions { taxes_computed: Some(true), ..MapOptions::default() };
            let mapped = map_lines(&o, &opts).unwrap();
            for (i, g) in lines.iter().enumerate() {
                let parts: Vec<&MappedLine> = mapped
                    .iter()
                    .filter(|m| matches!(m.source, LineSource::Product { line_id, .. } if line_id == i as u64 + 1))
                    .collect();
                prop_assert!(!parts.is_empty() && parts.len() <= 2);
                prop_assert_eq!(parts.iter().map(|m| m.quantity).sum::<Decimal>(), Decimal::from(g.qty));
                for m in parts {
                    prop_assert_eq!(m.vat_rate, Decimal::from(g.rate));
                    prop_assert!(m.price_inc_vat >= m.price_ex_vat);
                    prop_assert!(m.discount_inc_vat.unwrap_or_default() <= m.price_inc_vat);
                }
            }
        }
    }
}
