//! Taxes as WooCommerce 7.9 computes them, in exact decimals.
//!
//! Two paths make an order's amounts, and they round differently — as the real store does:
//!
//! - **REST (and admin) orders** (`WC_Abstract_Order::calculate_totals`): a new line is priced
//!   from the product *excluding* tax (`wc_get_price_excluding_tax`: the base-rate tax is taken
//!   out of an inclusive price, unrounded); every line, fee and shipping line is then taxed
//!   exclusively on its stored amount; per-rate taxes are rounded with `wc_round_tax_total`
//!   (half *down* in a store whose prices include tax, half up otherwise) unless the store
//!   rounds at subtotal; the grand total is rounded once.
//! - **Checkout** (`WC_Cart_Totals`): works in cents; an item's tax is taken out of (prices with
//!   tax) or added to (prices without) its line price, per-rate taxes are rounded to whole cents
//!   with the tax rounding mode, and shipping taxes (always added to a cost entered without tax)
//!   are rounded half *up* — so a 4.90 shipping line in an inclusive store carries 1.23 tax at
//!   checkout and 1.22 when the same order is made over REST.
//!
//! Per-rate taxes are kept unrounded (`WC_Tax::round`: 6 decimals) on every line; `total_tax`
//! of a line is the sum of the rounded per-rate taxes, or of the unrounded ones when rounding at
//! subtotal.

use rust_decimal::{Decimal, RoundingStrategy};

use crate::store::{
    CouponLine, Order, OrderTotals, Product, RateTaxes, Settings, State, TaxLine, TaxRate,
};

/// `wc_get_rounding_precision()`: the store's decimals + 2, at least 6.
fn precision(s: &Settings) -> u32 {
    (s.price_num_decimals + 2).max(6)
}

/// PHP `round()` (and `NumberUtil::round`): half away from zero.
pub fn round_half_up(d: Decimal, dp: u32) -> Decimal {
    d.round_dp_with_strategy(dp, RoundingStrategy::MidpointAwayFromZero)
}

/// `wc_round_tax_total`: the store's tax rounding mode (`WC_TAX_ROUNDING_MODE`): half down
/// (towards zero) when prices are entered with tax, half up otherwise.
pub fn round_tax_total(s: &Settings, d: Decimal, dp: u32) -> Decimal {
    let mode = if s.prices_include_tax {
        RoundingStrategy::MidpointTowardZero
    } else {
        RoundingStrategy::MidpointAwayFromZero
    };
    d.round_dp_with_strategy(dp, mode)
}

/// `WC_Tax::round`: every computed tax, to the rounding precision, half up.
fn tax_round(s: &Settings, d: Decimal) -> Decimal {
    round_half_up(d, precision(s))
}

fn add(a: Decimal, b: Decimal) -> Decimal {
    a.checked_add(b).unwrap_or(Decimal::MAX)
}

fn sub(a: Decimal, b: Decimal) -> Decimal {
    a.checked_sub(b).unwrap_or(Decimal::MIN)
}

fn mul(a: Decimal, b: Decimal) -> Decimal {
    a.checked_mul(b).unwrap_or(Decimal::MAX)
}

fn div(a: Decimal, b: Decimal) -> Decimal {
    a.checked_div(b).unwrap_or_default()
}

fn sum(it: impl IntoIterator<Item = Decimal>) -> Decimal {
    it.into_iter().fold(Decimal::ZERO, add)
}

/// Adds `amount` to the entry of `rate` (appending a new rate at the end, as PHP arrays do).
fn merge(into: &mut RateTaxes, rate: u64, amount: Decimal) {
    match into.iter_mut().find(|(r, _)| *r == rate) {
        Some(slot) => slot.1 = add(slot.1, amount),
        None => into.push((rate, amount)),
    }
}

/// Where an order is taxed (`get_tax_location`): the shipping or billing country as the store
/// says, the shop's base country when that is empty or the store taxes at its base.
pub fn order_location(s: &Settings, o: &Order) -> String {
    let field = |addr: &[(String, String)], k: &str| {
        addr.iter()
            .find(|(key, _)| key == k)
            .map(|(_, v)| v.trim().to_uppercase())
            .unwrap_or_default()
    };
    let billing: Vec<(String, String)> = o
        .billing
        .iter()
        .map(|(k, v)| (k.clone(), v.clone().unwrap_or_default()))
        .collect();
    // Local pickup is taxed where the shop is (`woocommerce_apply_base_tax_for_local_pickup`).
    let pickup = o
        .shipping_lines
        .iter()
        .any(|l| matches!(l.method_id.as_str(), "local_pickup" | "legacy_local_pickup"));
    let country = match s.tax_based_on.as_str() {
        _ if pickup => String::new(),
        "base" => String::new(),
        "billing" => field(&billing, "country"),
        _ => {
            let ship = field(&o.shipping, "country");
            if ship.is_empty() {
                field(&billing, "country")
            } else {
                ship
            }
        }
    };
    if country.is_empty() {
        s.base_country().to_uppercase()
    } else {
        country
    }
}

/// `WC_Tax::find_rates`: the rates of `class` for `country` (or for every country), one per
/// priority, the most specific first.
pub fn find_rates<'a>(s: &'a Settings, class: &str, country: &str) -> Vec<&'a TaxRate> {
    let mut found: Vec<&TaxRate> = s
        .tax_rates
        .iter()
        .filter(|r| r.class == class)
        .filter(|r| r.country.is_empty() || r.country.eq_ignore_ascii_case(country))
        .collect();
    found.sort_by_key(|r| (r.priority, r.country.is_empty(), r.id));
    let mut seen = Vec::new();
    found.retain(|r| {
        if seen.contains(&r.priority) {
            false
        } else {
            seen.push(r.priority);
            true
        }
    });
    found
}

/// `WC_Tax::calc_exclusive_tax`: tax added to a price without tax.
pub fn calc_exclusive(s: &Settings, price: Decimal, rates: &[&TaxRate]) -> RateTaxes {
    let mut taxes: RateTaxes = Vec::new();
    for r in rates.iter().filter(|r| !r.compound) {
        merge(
            &mut taxes,
            r.id,
            mul(price, div(r.rate, Decimal::ONE_HUNDRED)),
        );
    }
    for r in rates.iter().filter(|r| r.compound) {
        let pre = sum(taxes.iter().map(|t| t.1));
        merge(
            &mut taxes,
            r.id,
            mul(add(price, pre), div(r.rate, Decimal::ONE_HUNDRED)),
        );
    }
    // Rates that add nothing still appear (a 0 % rate marks the line as zero-rated).
    for r in rates {
        merge(&mut taxes, r.id, Decimal::ZERO);
    }
    order_like(&mut taxes, rates);
    taxes
        .into_iter()
        .map(|(r, t)| (r, tax_round(s, t)))
        .collect()
}

/// `WC_Tax::calc_inclusive_tax`: the tax contained in a price with tax.
pub fn calc_inclusive(s: &Settings, price: Decimal, rates: &[&TaxRate]) -> RateTaxes {
    let mut taxes: RateTaxes = rates.iter().map(|r| (r.id, Decimal::ZERO)).collect();
    let mut non_compound = price;
    for r in rates.iter().rev().filter(|r| r.compound) {
        let t = sub(
            non_compound,
            div(
                non_compound,
                add(Decimal::ONE, div(r.rate, Decimal::ONE_HUNDRED)),
            ),
        );
        merge(&mut taxes, r.id, t);
        non_compound = sub(non_compound, t);
    }
    let regular: Vec<&&TaxRate> = rates.iter().filter(|r| !r.compound).collect();
    let regular_sum = add(
        Decimal::ONE,
        div(sum(regular.iter().map(|r| r.rate)), Decimal::ONE_HUNDRED),
    );
    for r in regular {
        let share = div(div(r.rate, Decimal::ONE_HUNDRED), regular_sum);
        merge(&mut taxes, r.id, mul(share, non_compound));
    }
    taxes
        .into_iter()
        .map(|(r, t)| (r, tax_round(s, t)))
        .collect()
}

fn order_like(taxes: &mut RateTaxes, rates: &[&TaxRate]) {
    taxes.sort_by_key(|(id, _)| rates.iter().position(|r| r.id == *id));
}

fn calc(s: &Settings, price: Decimal, rates: &[&TaxRate], inclusive: bool) -> RateTaxes {
    if inclusive {
        calc_inclusive(s, price, rates)
    } else {
        calc_exclusive(s, price, rates)
    }
}

/// The class a product is taxed in (a variation may take its parent's).
fn product_class(state: &State, p: &Product) -> String {
    if p.tax_class == "parent" {
        return state
            .products
            .get(&p.parent_id)
            .map(|pp| pp.tax_class.clone())
            .unwrap_or_default();
    }
    p.tax_class.clone()
}

/// A variation's tax status is its parent's.
fn product_taxable(state: &State, p: &Product) -> bool {
    let owner = if p.is_variation() {
        state.products.get(&p.parent_id).unwrap_or(p)
    } else {
        p
    };
    owner.tax_status == "taxable"
}

fn line_product(state: &State, product_id: u64, variation_id: u64) -> Option<&Product> {
    let id = if variation_id > 0 {
        variation_id
    } else {
        product_id
    };
    state.products.get(&id)
}

/// `wc_get_price_excluding_tax(product, qty)`: what a REST line costs without tax. With prices
/// entered with tax the base rates' tax is taken out, unrounded.
pub fn price_excluding_tax(state: &State, p: &Product, qty: i64) -> Decimal {
    let s = &state.settings;
    let unit = crate::store::dec(&p.price).unwrap_or_default();
    let line = mul(unit, Decimal::from(qty.max(0)));
    if s.calc_taxes && s.prices_include_tax && product_taxable(state, p) {
        let rates = find_rates(s, &product_class(state, p), s.base_country());
        let taxes = calc_inclusive(s, line, &rates);
        return sub(line, sum(taxes.iter().map(|t| t.1)));
    }
    line
}

/// A line's `total_tax` from its per-rate taxes (`set_taxes`).
fn line_tax(s: &Settings, taxes: &RateTaxes) -> Decimal {
    if s.tax_round_at_subtotal {
        sum(taxes.iter().map(|t| t.1))
    } else {
        sum(taxes
            .iter()
            .map(|t| round_tax_total(s, t.1, s.price_num_decimals)))
    }
}

/// `round_line_tax(value, in_cents = false)`.
fn round_line_tax(s: &Settings, d: Decimal) -> Decimal {
    if s.tax_round_at_subtotal {
        d
    } else {
        round_tax_total(s, d, s.price_num_decimals)
    }
}

/// `round_item_subtotal`: an item amount rounded to the store's decimals before summing, unless
/// the store rounds at subtotal.
fn round_item(s: &Settings, d: Decimal) -> Decimal {
    if s.tax_round_at_subtotal {
        d
    } else {
        round_half_up(d, s.price_num_decimals)
    }
}

/// `calculate_taxes` with `inherit`: the class of the first standard-or-listed class found among
/// the taxable items; `None` when no item is taxable (shipping then carries no tax).
fn shipping_class(state: &State, o: &Order, item_classes: &[(String, bool)]) -> Option<String> {
    let s = &state.settings;
    if s.shipping_tax_class != "inherit" {
        return Some(s.shipping_tax_class.clone());
    }
    let mut order = vec![String::new()];
    order.extend(s.tax_class_slugs());
    let found = order
        .into_iter()
        .find(|c| item_classes.iter().any(|(ic, taxable)| *taxable && ic == c));
    match found {
        Some(c) => Some(c),
        None if o.lines.is_empty() => Some(String::new()),
        None => None,
    }
}

/// Positive amounts per tax class of the order's items, shipping and fees (what a negative fee
/// is spread over, as a discount would be).
fn class_costs(
    state: &State,
    o: &Order,
    ship_class: &Option<String>,
    skip_fee: usize,
) -> Vec<(Option<String>, Decimal)> {
    let mut costs: Vec<(Option<String>, Decimal)> = Vec::new();
    let mut put = |class: Option<String>, amount: Decimal| {
        if amount < Decimal::ZERO {
            return;
        }
        match costs.iter_mut().find(|(c, _)| *c == class) {
            Some(slot) => slot.1 = add(slot.1, amount),
            None => costs.push((class, amount)),
        }
    };
    for l in &o.lines {
        let taxable = line_product(state, l.product_id, l.variation_id)
            .is_none_or(|p| product_taxable(state, p));
        put(taxable.then(|| l.tax_class.clone()), l.total);
    }
    for (i, f) in o.fee_lines.iter().enumerate() {
        if i != skip_fee {
            put(
                (f.tax_status == "taxable").then(|| f.tax_class.clone()),
                f.total,
            );
        }
    }
    for sh in &o.shipping_lines {
        put(ship_class.clone(), sh.total);
    }
    costs
}

/// `WC_Abstract_Order::calculate_totals(true)`: taxes every line from its stored amount
/// (exclusively), rebuilds the tax lines and the order totals.
pub fn calculate_totals(state: &mut State, o: &mut Order) {
    let s = state.settings.clone();
    let dp = s.price_num_decimals;
    let country = order_location(&s, o);
    let cart_subtotal = sum(o.lines.iter().map(|l| round_item(&s, l.subtotal)));
    let cart_total = sum(o.lines.iter().map(|l| round_item(&s, l.total)));
    let shipping_total = sum(o.shipping_lines.iter().map(|l| round_half_up(l.total, dp)));
    let mut fees_total = Decimal::ZERO;
    for f in o.fee_lines.iter_mut() {
        if f.total < Decimal::ZERO {
            let max_discount = -round_half_up(add(add(cart_total, fees_total), shipping_total), dp);
            if f.total < max_discount && max_discount < Decimal::ZERO {
                f.total = max_discount;
            }
        }
        fees_total = add(fees_total, f.total);
    }

    // calculate_taxes()
    let item_classes: Vec<(String, bool)> = o
        .lines
        .iter()
        .map(|l| {
            let taxable = line_product(state, l.product_id, l.variation_id)
                .is_none_or(|p| product_taxable(state, p));
            (l.tax_class.clone(), taxable)
        })
        .collect();
    let ship_class = shipping_class(state, o, &item_classes);
    for (l, (_, taxable)) in o.lines.iter_mut().zip(&item_classes) {
        if s.calc_taxes && *taxable && l.tax_class != "0" {
            let rates = find_rates(&s, &l.tax_class, &country);
            let total = calc_exclusive(&s, l.total, &rates);
            let subtotal = calc_exclusive(&s, l.subtotal, &rates);
            set_line_taxes(&s, l, total, subtotal);
        } else {
            set_line_taxes(&s, l, Vec::new(), Vec::new());
        }
    }
    let fee_taxes: Vec<RateTaxes> = (0..o.fee_lines.len())
        .map(|i| {
            let f = &o.fee_lines[i];
            if !s.calc_taxes {
                return Vec::new();
            }
            if f.total >= Decimal::ZERO {
                if f.tax_status != "taxable" || f.tax_class == "0" {
                    return Vec::new();
                }
                return calc_exclusive(&s, f.total, &find_rates(&s, &f.tax_class, &country));
            }
            // A negative fee is a discount: its tax is spread over the classes it discounts.
            let costs = class_costs(state, o, &ship_class, i);
            let all = sum(costs.iter().map(|c| c.1));
            let mut taxes = Vec::new();
            if !all.is_zero() {
                for (class, cost) in &costs {
                    let Some(class) = class else { continue };
                    let part = mul(f.total, div(*cost, all));
                    for (r, t) in calc_exclusive(&s, part, &find_rates(&s, class, &country)) {
                        merge(&mut taxes, r, t);
                    }
                }
            }
            taxes
        })
        .collect();
    for (f, taxes) in o.fee_lines.iter_mut().zip(fee_taxes) {
        f.total_tax = line_tax(&s, &taxes);
        f.taxes = taxes;
    }
    for sh in o.shipping_lines.iter_mut() {
        let taxes = match (&ship_class, s.calc_taxes) {
            (Some(class), true) => {
                let rates: Vec<&TaxRate> = find_rates(&s, class, &country)
                    .into_iter()
                    .filter(|r| r.shipping)
                    .collect();
                calc_exclusive(&s, sh.total, &rates)
            }
            _ => Vec::new(),
        };
        sh.total_tax = line_tax(&s, &taxes);
        sh.taxes = taxes;
    }

    // update_taxes()
    let mut cart_taxes: RateTaxes = Vec::new();
    for taxes in o
        .lines
        .iter()
        .map(|l| &l.taxes)
        .chain(o.fee_lines.iter().map(|f| &f.taxes))
    {
        for (r, t) in taxes {
            merge(&mut cart_taxes, *r, round_line_tax(&s, *t));
        }
    }
    let mut shipping_taxes: RateTaxes = Vec::new();
    for sh in &o.shipping_lines {
        for (r, t) in &sh.taxes {
            merge(&mut shipping_taxes, *r, round_line_tax(&s, *t));
        }
    }
    let used = rate_ids([&cart_taxes, &shipping_taxes]);
    rebuild_tax_lines(state, o, used, &cart_taxes, &shipping_taxes);
    let cart_tax = sum(cart_taxes.iter().map(|t| t.1));
    let shipping_tax = sum(shipping_taxes.iter().map(|t| t.1));

    let cart_total_tax = sum(o.lines.iter().flat_map(|l| l.taxes.iter().map(|t| t.1)));
    let cart_subtotal_tax = sum(o
        .lines
        .iter()
        .flat_map(|l| l.subtotal_taxes.iter().map(|t| t.1)));
    o.totals = OrderTotals {
        discount_total: round_half_up(sub(cart_subtotal, cart_total), dp),
        discount_tax: round_tax_total(&s, sub(cart_subtotal_tax, cart_total_tax), dp),
        shipping_total,
        shipping_tax,
        cart_tax,
        total: round_half_up(
            sum([
                cart_total,
                fees_total,
                shipping_total,
                cart_tax,
                shipping_tax,
            ]),
            dp,
        ),
        total_tax: round_half_up(add(cart_tax, shipping_tax), dp),
    };
}

/// `WC_Order_Item_Product::set_taxes`: both sets or none; the subtotal tax never below the
/// total tax.
fn set_line_taxes(
    s: &Settings,
    l: &mut crate::store::OrderLine,
    total: RateTaxes,
    subtotal: RateTaxes,
) {
    let (total, mut subtotal) = if total.is_empty() || subtotal.is_empty() {
        (Vec::new(), Vec::new())
    } else {
        (total, subtotal)
    };
    if sum(subtotal.iter().map(|t| t.1)) < sum(total.iter().map(|t| t.1)) {
        subtotal = total.clone();
    }
    l.total_tax = line_tax(s, &total);
    l.subtotal_tax = line_tax(s, &subtotal);
    l.taxes = total;
    l.subtotal_taxes = subtotal;
}

/// One tax line per rate in use: kept (same item id) for rates still used, dropped for rates
/// no longer used, new ones appended.
fn rebuild_tax_lines(
    state: &mut State,
    o: &mut Order,
    used: Vec<u64>,
    cart: &RateTaxes,
    shipping: &RateTaxes,
) {
    let amount = |taxes: &RateTaxes, rate: u64| {
        taxes
            .iter()
            .find(|(r, _)| *r == rate)
            .map(|t| t.1)
            .unwrap_or_default()
    };
    let mut lines: Vec<TaxLine> = Vec::new();
    for mut tl in std::mem::take(&mut o.tax_lines) {
        if used.contains(&tl.rate_id) && !lines.iter().any(|l| l.rate_id == tl.rate_id) {
            tl.tax_total = amount(cart, tl.rate_id);
            tl.shipping_tax_total = amount(shipping, tl.rate_id);
            lines.push(tl);
        }
    }
    for rate in used {
        if lines.iter().any(|l| l.rate_id == rate) {
            continue;
        }
        let id = state.item_id();
        lines.push(tax_line(
            &state.settings,
            id,
            rate,
            amount(cart, rate),
            amount(shipping, rate),
        ));
    }
    o.tax_lines = lines;
}

/// The rate ids of several per-rate sums, in PHP's `array_keys($a + $b + …)` order.
fn rate_ids<const N: usize>(sets: [&RateTaxes; N]) -> Vec<u64> {
    let mut ids = Vec::new();
    for set in sets {
        for (r, _) in set {
            if !ids.contains(r) {
                ids.push(*r);
            }
        }
    }
    ids
}

fn tax_line(s: &Settings, id: u64, rate_id: u64, tax: Decimal, shipping: Decimal) -> TaxLine {
    let rate = s.tax_rates.iter().find(|r| r.id == rate_id);
    let name = rate.map(|r| r.name.clone()).unwrap_or_default();
    // WC_Tax::get_rate_code: COUNTRY-STATE-NAME-PRIORITY without the empty parts, upper case.
    let code = rate
        .map(|r| {
            let name = if r.name.is_empty() {
                "TAX"
            } else {
                r.name.as_str()
            };
            [
                r.country.clone(),
                r.state.clone(),
                name.to_string(),
                r.priority.to_string(),
            ]
            .into_iter()
            .filter(|p| !p.is_empty())
            .collect::<Vec<_>>()
            .join("-")
            .to_uppercase()
        })
        .unwrap_or_default();
    TaxLine {
        id,
        rate_id,
        rate_code: code,
        label: if name.is_empty() { "Tax".into() } else { name },
        compound: rate.is_some_and(|r| r.compound),
        rate_percent: rate.map(|r| r.rate).unwrap_or_default(),
        tax_total: tax,
        shipping_tax_total: shipping,
    }
}

/// A coupon used at checkout (`fixed_cart`): the amount the customer sees, with tax when prices
/// include tax.
pub struct CheckoutCoupon {
    pub code: String,
    pub amount: Decimal,
}

/// Which fees of a checkout are taxable and in which class (`WC_Cart::add_fee`).
pub struct CheckoutFee {
    pub taxable: bool,
    pub tax_class: String,
}

/// `WC_Cart_Totals` + `WC_Checkout::create_order`: prices the order's lines from their products
/// as the cart does (in cents), applies a fixed-cart coupon, taxes shipping and fees, and stores
/// the cart's totals and tax lines. `fees` gives each fee line's taxability.
pub fn checkout_totals(
    state: &mut State,
    o: &mut Order,
    coupon: Option<&CheckoutCoupon>,
    fees: &[CheckoutFee],
) {
    let s = state.settings.clone();
    let dp = s.price_num_decimals;
    let cents = Decimal::from(10i64.pow(dp.min(9)));
    let to_cents = |d: Decimal| mul(d, cents);
    let from_cents = |d: Decimal| div(d, cents);
    // Work in cents: round_line_tax/round_item_subtotal round to whole cents there.
    let round_cents = |d: Decimal| {
        if s.tax_round_at_subtotal {
            d
        } else {
            round_tax_total(&s, d, 0)
        }
    };
    let round_item_cents = |d: Decimal| {
        if s.tax_round_at_subtotal {
            d
        } else {
            round_half_up(d, 0)
        }
    };
    let country = order_location(&s, o);
    let incl = s.prices_include_tax;
    let base = s.base_country().to_uppercase();

    struct Item {
        price: Decimal,
        qty: i64,
        taxable: bool,
        rates: Vec<TaxRate>,
        class: String,
        discount: Decimal,
        /// After discount, without tax.
        total: Decimal,
    }
    let mut items: Vec<Item> = Vec::new();
    for l in &o.lines {
        let p = line_product(state, l.product_id, l.variation_id);
        let unit = p
            .and_then(|p| crate::store::dec(&p.price))
            .unwrap_or_else(|| div(l.subtotal, Decimal::from(l.quantity.max(1))));
        let taxable = s.calc_taxes && p.is_none_or(|p| product_taxable(state, p));
        let class = p.map(|p| product_class(state, p)).unwrap_or_default();
        let rates: Vec<TaxRate> = if taxable {
            find_rates(&s, &class, &country)
                .into_iter()
                .cloned()
                .collect()
        } else {
            Vec::new()
        };
        let mut price = to_cents(mul(unit, Decimal::from(l.quantity.max(0))));
        // adjust_non_base_location_price: the customer outside the base pays the same price
        // with their own rates.
        if incl && taxable && country != base {
            let base_rates: Vec<TaxRate> =
                find_rates(&s, &class, &base).into_iter().cloned().collect();
            if base_rates != rates {
                let br: Vec<&TaxRate> = base_rates.iter().collect();
                let nr: Vec<&TaxRate> = rates.iter().collect();
                let out = sum(calc_inclusive(&s, price, &br).iter().map(|t| t.1));
                let inn = sum(calc_exclusive(&s, sub(price, out), &nr).iter().map(|t| t.1));
                price = add(sub(price, out), inn);
            }
        }
        items.push(Item {
            price,
            qty: l.quantity.max(0),
            taxable,
            rates,
            class,
            discount: Decimal::ZERO,
            total: Decimal::ZERO,
        });
    }

    // WC_Discounts, fixed_cart: whole cents per unit, the rest one cent at a time, the dearest
    // lines first.
    let mut coupon_discount = Decimal::ZERO;
    if let Some(c) = coupon {
        let mut order: Vec<usize> = (0..items.len())
            .filter(|i| items[*i].price > Decimal::ZERO)
            .collect();
        order.sort_by(|a, b| items[*b].price.cmp(&items[*a].price));
        let amount = round_half_up(to_cents(c.amount), 0);
        let units: i64 = order
            .iter()
            .fold(0i64, |acc, i| acc.saturating_add(items[*i].qty));
        let mut left = amount;
        while left > Decimal::ZERO && units > 0 {
            let per = (left / Decimal::from(units)).floor();
            let mut given = Decimal::ZERO;
            if per > Decimal::ZERO {
                for i in &order {
                    let it = &mut items[*i];
                    let room = sub(it.price, it.discount);
                    let d = round_half_up(mul(per, Decimal::from(it.qty)).min(room), 0);
                    it.discount = add(it.discount, d);
                    given = add(given, d);
                }
            } else {
                // One cent per unit while the line has a cent left, until the rest is given:
                // counted per line at once rather than unit by unit (quantities may be huge).
                for i in &order {
                    let it = &mut items[*i];
                    let room = sub(it.price, it.discount).floor().max(Decimal::ZERO);
                    let n = Decimal::from(it.qty).min(room).min(sub(left, given));
                    it.discount = add(it.discount, n);
                    given = add(given, n);
                    if given >= left {
                        break;
                    }
                }
            }
            if given.is_zero() {
                break;
            }
            left = sub(left, given);
        }
        coupon_discount = sub(amount, left.max(Decimal::ZERO));
    }

    let mut items_total = Decimal::ZERO;
    let mut item_taxes: RateTaxes = Vec::new();
    let mut discount_tax = Decimal::ZERO;
    for (l, it) in o.lines.iter_mut().zip(items.iter_mut()) {
        let rates: Vec<&TaxRate> = it.rates.iter().collect();
        let mut subtotal = it.price;
        let mut sub_taxes = Vec::new();
        if it.taxable {
            sub_taxes = calc(&s, subtotal, &rates, incl);
            if incl {
                subtotal = sub(subtotal, sum(sub_taxes.iter().map(|t| t.1)));
            }
        }
        let mut total = sub(it.price, it.discount);
        let mut taxes = Vec::new();
        if it.taxable {
            taxes = calc(&s, total, &rates, incl);
            if incl {
                total = sub(total, sum(taxes.iter().map(|t| t.1)));
            }
            if !it.discount.is_zero() {
                discount_tax = add(
                    discount_tax,
                    sum(calc(&s, it.discount, &rates, incl).iter().map(|t| t.1)),
                );
            }
        }
        it.total = total;
        items_total = add(items_total, round_item_cents(total));
        for (r, t) in &taxes {
            merge(&mut item_taxes, *r, round_cents(*t));
        }
        l.subtotal = from_cents(subtotal);
        l.total = from_cents(total);
        l.tax_class = it.class.clone();
        let taxes: RateTaxes = taxes.into_iter().map(|(r, t)| (r, from_cents(t))).collect();
        let sub_taxes: RateTaxes = sub_taxes
            .into_iter()
            .map(|(r, t)| (r, from_cents(t)))
            .collect();
        set_line_taxes(&s, l, taxes, sub_taxes);
    }

    // Shipping: the rate's taxes (added to the cost), rounded to whole cents half up.
    let item_classes: Vec<(String, bool)> =
        items.iter().map(|i| (i.class.clone(), i.taxable)).collect();
    let ship_class = shipping_class(state, o, &item_classes);
    let mut shipping_total = Decimal::ZERO;
    let mut shipping_tax = Decimal::ZERO;
    let mut shipping_taxes: RateTaxes = Vec::new();
    for sh in o.shipping_lines.iter_mut() {
        let rate_taxes = match (&ship_class, s.calc_taxes) {
            (Some(class), true) => {
                let rates: Vec<&TaxRate> = find_rates(&s, class, &country)
                    .into_iter()
                    .filter(|r| r.shipping)
                    .collect();
                calc_exclusive(&s, sh.total, &rates)
            }
            _ => Vec::new(),
        };
        shipping_total = add(shipping_total, to_cents(sh.total));
        for (r, t) in &rate_taxes {
            let c = round_item_cents(to_cents(*t));
            shipping_tax = add(shipping_tax, c);
            merge(&mut shipping_taxes, *r, c);
        }
        // The order item keeps the rate's unrounded taxes and rounds them itself.
        sh.total_tax = line_tax(&s, &rate_taxes);
        sh.taxes = rate_taxes;
    }

    // Fees: entered without tax; a negative one never takes the total below zero.
    let mut fees_total = Decimal::ZERO;
    let mut fee_tax = Decimal::ZERO;
    let mut fee_taxes: RateTaxes = Vec::new();
    for (i, f) in o.fee_lines.iter_mut().enumerate() {
        let cfg = fees.get(i);
        let taxable = cfg.is_some_and(|c| c.taxable);
        f.tax_status = if taxable { "taxable" } else { "none" }.into();
        f.tax_class = if taxable {
            cfg.map(|c| c.tax_class.clone()).unwrap_or_default()
        } else {
            "0".into()
        };
        let mut total = to_cents(f.total);
        if total < Decimal::ZERO {
            let max = -round_half_up(sum([items_total, fees_total, shipping_total]), 0);
            if total < max {
                total = max;
            }
        }
        fees_total = add(fees_total, total);
        let mut taxes: RateTaxes = Vec::new();
        if s.calc_taxes {
            if total < Decimal::ZERO {
                let mut costs: Vec<(String, Decimal)> = Vec::new();
                for it in items.iter().filter(|it| it.taxable) {
                    let c = it.total;
                    if c < Decimal::ZERO {
                        continue;
                    }
                    match costs.iter_mut().find(|(k, _)| *k == it.class) {
                        Some(slot) => slot.1 = add(slot.1, c),
                        None => costs.push((it.class.clone(), c)),
                    }
                }
                let all = sum(costs.iter().map(|c| c.1));
                if !all.is_zero() {
                    for (class, cost) in &costs {
                        let part = mul(total, div(*cost, all));
                        for (r, t) in calc_exclusive(&s, part, &find_rates(&s, class, &country)) {
                            merge(&mut taxes, r, t);
                        }
                    }
                }
            } else if taxable {
                taxes = calc_exclusive(&s, total, &find_rates(&s, &f.tax_class, &country));
            }
        }
        for (r, t) in &taxes {
            let c = round_cents(*t);
            fee_tax = add(fee_tax, c);
            merge(&mut fee_taxes, *r, from_cents(*t));
        }
        f.total = from_cents(total);
        let taxes: RateTaxes = taxes.into_iter().map(|(r, t)| (r, from_cents(t))).collect();
        f.total_tax = line_tax(&s, &taxes);
        f.taxes = taxes;
    }

    let items_tax = sum(item_taxes.iter().map(|t| t.1));
    let total = round_half_up(
        sum([
            items_total,
            fees_total,
            shipping_total,
            items_tax,
            fee_tax,
            shipping_tax,
        ]),
        0,
    );
    let discount_excl = if incl {
        sub(coupon_discount, discount_tax)
    } else {
        coupon_discount
    };
    if let Some(c) = coupon {
        let id = state.item_id();
        o.coupon_lines.push(CouponLine {
            id,
            code: c.code.clone(),
            discount: from_cents(discount_excl),
            discount_tax: from_cents(discount_tax),
        });
    }

    // create_order_tax_lines: items' rounded taxes + fees' unrounded ones; shipping's.
    let mut cart_by_rate: RateTaxes = item_taxes
        .iter()
        .map(|(r, t)| (*r, from_cents(*t)))
        .collect();
    for (r, t) in &fee_taxes {
        merge(&mut cart_by_rate, *r, *t);
    }
    let shipping_by_rate: RateTaxes = shipping_taxes
        .iter()
        .map(|(r, t)| (*r, from_cents(*t)))
        .collect();
    o.tax_lines.clear();
    let used = rate_ids([&item_taxes, &shipping_taxes, &fee_taxes]);
    rebuild_tax_lines(state, o, used, &cart_by_rate, &shipping_by_rate);

    let cart_tax = from_cents(add(items_tax, fee_tax));
    let shipping_tax = from_cents(shipping_tax);
    o.totals = OrderTotals {
        discount_total: from_cents(discount_excl),
        discount_tax: from_cents(discount_tax),
        shipping_total: from_cents(shipping_total),
        shipping_tax,
        cart_tax,
        total: from_cents(total).max(Decimal::ZERO),
        total_tax: round_half_up(add(cart_tax, shipping_tax), dp),
    };
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::orders::{apply_order_write, new_order, render_order};
    use crate::products::{Ctx, Mode};
    use serde_json::{json, Value};

    fn d(s: &str) -> Decimal {
        s.parse().unwrap()
    }

    fn ctx() -> Ctx {
        Ctx {
            home: "http://shop".into(),
            version: "v3".into(),
            view: true,
            offset: 0,
            now: 1_700_000_000,
        }
    }

    /// A store with these settings and products `(sku, price, tax class)`.
    fn store(settings: Settings, products: &[(&str, &str, &str)]) -> State {
        let mut state = State::with_settings(settings);
        for (sku, price, class) in products {
            let id = state.post_id();
            let mut p = Product::new(id, 0);
            p.sku = (*sku).into();
            p.name = format!("Vare {sku}");
            p.regular_price = (*price).into();
            p.price = (*price).into();
            p.tax_class = (*class).into();
            state.put_product(p);
        }
        state
    }

    fn pid(state: &State, sku: &str) -> u64 {
        state.sku_owner(sku, None).expect("product")
    }

    /// `POST /orders` as the REST controller does it.
    fn rest_order(state: &mut State, body: impl FnOnce(&State) -> Value) -> Value {
        let body = body(state).as_object().cloned().unwrap();
        let mut o = new_order(state, 1_700_000_000, "rest-api");
        apply_order_write(state, &mut o, &body, Mode::Single, 1_700_000_000).unwrap();
        calculate_totals(state, &mut o);
        serde_json::from_str(&render_order(state, &ctx(), &o).to_php()).unwrap()
    }

    /// An order placed at checkout.
    fn checkout_order(
        state: &mut State,
        body: impl FnOnce(&State) -> Value,
        coupon: Option<&str>,
        fees: &[CheckoutFee],
    ) -> Value {
        let body = body(state).as_object().cloned().unwrap();
        let mut o = new_order(state, 1_700_000_000, "checkout");
        apply_order_write(state, &mut o, &body, Mode::Batch, 1_700_000_000).unwrap();
        let coupon = coupon.map(|a| CheckoutCoupon {
            code: "RABATT".into(),
            amount: d(a),
        });
        checkout_totals(state, &mut o, coupon.as_ref(), fees);
        serde_json::from_str(&render_order(state, &ctx(), &o).to_php()).unwrap()
    }

    #[test]
    fn a_rest_order_in_a_norwegian_shop_adds_vat_to_shipping() {
        // The reference store: 2 × 11.00 (with VAT) + 4.90 shipping (without) = 28.12.
        let mut st = store(Settings::norway(), &[("O1", "11.00", "")]);
        let o = rest_order(&mut st, |st| {
            json!({"line_items": [{"product_id": pid(st, "O1"), "quantity": 2}],
                   "shipping_lines": [{"method_id": "flat_rate", "method_title": "Flat rate", "total": "4.90"}]})
        });
        assert_eq!(o["prices_include_tax"], json!(true));
        assert_eq!(o["currency"], json!("NOK"));
        assert_eq!(o["currency_symbol"], json!("kr"));
        let l = &o["line_items"][0];
        assert_eq!(
            (
                &l["subtotal"],
                &l["subtotal_tax"],
                &l["total"],
                &l["total_tax"]
            ),
            (
                &json!("17.60"),
                &json!("4.40"),
                &json!("17.60"),
                &json!("4.40")
            )
        );
        assert_eq!(
            l["taxes"],
            json!([{"id": 1, "total": "4.4", "subtotal": "4.4"}])
        );
        let sh = &o["shipping_lines"][0];
        assert_eq!(sh["total_tax"], json!("1.22"), "1.225 rounded half down");
        assert_eq!(
            sh["taxes"],
            json!([{"id": 1, "total": "1.225", "subtotal": ""}])
        );
        for (k, v) in [
            ("shipping_total", "4.90"),
            ("shipping_tax", "1.22"),
            ("cart_tax", "4.40"),
            ("total_tax", "5.62"),
            ("discount_total", "0.00"),
            ("discount_tax", "0.00"),
            ("total", "28.12"),
        ] {
            assert_eq!(o[k], json!(v), "{k}");
        }
        assert_eq!(
            o["tax_lines"],
            json!([{"id": o["tax_lines"][0]["id"], "rate_code": "NO-MVA-1", "rate_id": 1, "label": "MVA",
                    "compound": false, "tax_total": "4.40", "shipping_tax_total": "1.22",
                    "rate_percent": 25, "meta_data": []}])
        );
    }

    #[test]
    fn checkout_rounds_shipping_tax_in_cents_half_up() {
        let mut st = store(Settings::norway(), &[("O1", "11.00", "")]);
        let o = checkout_order(
            &mut st,
            |st| {
                json!({"line_items": [{"product_id": pid(st, "O1"), "quantity": 2}],
                   "shipping_lines": [{"method_id": "flat_rate", "method_title": "Frakt", "total": "4.90"}]})
            },
            None,
            &[],
        );
        assert_eq!(o["shipping_tax"], json!("1.23"));
        assert_eq!(
            o["shipping_lines"][0]["total_tax"],
            json!("1.22"),
            "the order item rounds its own taxes"
        );
        assert_eq!(o["total"], json!("28.13"));
        assert_eq!(o["tax_lines"][0]["shipping_tax_total"], json!("1.23"));
    }

    #[test]
    fn reduced_rates_fees_and_a_coupon_at_checkout() {
        let mut st = store(
            Settings::norway(),
            &[
                ("MAT", "49.90", "food"),
                ("BOK", "199.00", "reduced-rate"),
                ("KAP", "99.00", ""),
            ],
        );
        let o = checkout_order(
            &mut st,
            |st| {
                json!({"line_items": [
                    {"product_id": pid(st, "MAT"), "quantity": 3},
                    {"product_id": pid(st, "BOK"), "quantity": 1},
                    {"product_id": pid(st, "KAP"), "quantity": 2}],
                   "shipping_lines": [{"method_id": "flat_rate", "method_title": "Posten", "total": "79.20"}],
                   "fee_lines": [{"name": "Gebyr", "total": "20.00"}, {"name": "Pant", "total": "2.00"}]})
            },
            Some("50.00"),
            &[
                CheckoutFee {
                    taxable: true,
                    tax_class: String::new(),
                },
                CheckoutFee {
                    taxable: false,
                    tax_class: String::new(),
                },
            ],
        );
        // 50.00 over 6 units: 8.33 each, the 2 øre left one a unit, the dearest lines first.
        let gross = |i: usize| {
            let l = &o["line_items"][i];
            d(l["total"].as_str().unwrap()) + d(l["total_tax"].as_str().unwrap())
        };
        assert_eq!(gross(0), d("124.71"), "3 × 49.90 − 3 × 8.33");
        assert_eq!(gross(1), d("190.66"), "199.00 − 8.33 − 0.01");
        assert_eq!(gross(2), d("181.33"), "2 × 99.00 − 2 × 8.33 − 0.01");
        let rates: Vec<&Value> = o["line_items"]
            .as_array()
            .unwrap()
            .iter()
            .map(|l| &l["taxes"][0]["id"])
            .collect();
        assert_eq!(rates, vec![&json!(2), &json!(3), &json!(1)]);
        assert_eq!(o["fee_lines"][0]["total_tax"], json!("5.00"));
        assert_eq!(o["fee_lines"][0]["tax_status"], json!("taxable"));
        assert_eq!(o["fee_lines"][1]["taxes"], json!([]));
        assert_eq!(o["fee_lines"][1]["tax_status"], json!("none"));
        assert_eq!(o["coupon_lines"][0]["code"], json!("RABATT"));
        // Shipping inherits the standard class (a standard item is in the cart).
        assert_eq!(o["shipping_lines"][0]["taxes"][0]["id"], json!(1));
        assert_eq!(o["shipping_tax"], json!("19.80"));
        // What the customer pays: items with VAT after the coupon, shipping and fees with VAT.
        let expected =
            d("124.71") + d("190.66") + d("181.33") + d("99.00") + d("25.00") + d("2.00");
        assert_eq!(d(o["total"].as_str().unwrap()), expected);
        let tax_sum: Decimal = o["tax_lines"]
            .as_array()
            .unwrap()
            .iter()
            .map(|t| {
                d(t["tax_total"].as_str().unwrap()) + d(t["shipping_tax_total"].as_str().unwrap())
            })
            .sum();
        assert_eq!(d(o["total_tax"].as_str().unwrap()), tax_sum);
        assert_eq!(o["tax_lines"].as_array().unwrap().len(), 3);
    }

    #[test]
    fn prices_without_tax_get_tax_added_and_rounding_at_subtotal_changes_the_total() {
        let mut s = Settings::norway();
        s.prices_include_tax = false;
        let mut st = store(
            s.clone(),
            &[("A", "0.10", ""), ("B", "0.10", ""), ("C", "0.10", "")],
        );
        let body = |st: &State| {
            json!({"line_items": [
                {"product_id": pid(st, "A"), "quantity": 1},
                {"product_id": pid(st, "B"), "quantity": 1},
                {"product_id": pid(st, "C"), "quantity": 1}]})
        };
        let per_line = rest_order(&mut st, body);
        // 0.025 tax per line, rounded half up per line: 3 × 0.03.
        assert_eq!(per_line["cart_tax"], json!("0.09"));
        assert_eq!(per_line["total"], json!("0.39"));
        s.tax_round_at_subtotal = true;
        let mut st = store(
            s,
            &[("A", "0.10", ""), ("B", "0.10", ""), ("C", "0.10", "")],
        );
        let at_subtotal = rest_order(&mut st, body);
        assert_eq!(
            at_subtotal["line_items"][0]["total_tax"],
            json!("0.03"),
            "0.025 shown rounded"
        );
        assert_eq!(at_subtotal["cart_tax"], json!("0.08"), "0.075 rounded once");
        assert_eq!(at_subtotal["total"], json!("0.38"));
    }

    #[test]
    fn without_tax_calculation_every_tax_is_zero_and_absent() {
        let mut st = store(Settings::default(), &[("O1", "11.00", "")]);
        let o = rest_order(&mut st, |st| {
            json!({"line_items": [{"product_id": pid(st, "O1"), "quantity": 2}],
                   "shipping_lines": [{"method_id": "flat_rate", "method_title": "Flat rate", "total": "4.90"}]})
        });
        assert_eq!(o["total"], json!("26.90"));
        assert_eq!(o["tax_lines"], json!([]));
        assert_eq!(o["line_items"][0]["taxes"], json!([]));
        assert_eq!(o["shipping_lines"][0]["taxes"], json!([]));
        assert_eq!(o["total_tax"], json!("0.00"));
    }

    #[test]
    fn absurd_quantities_and_amounts_never_panic() {
        for settings in [Settings::norway(), Settings::default()] {
            let mut st = store(settings, &[("X", "79228162514264337593543950", "")]);
            let body = |st: &State| {
                json!({"line_items": [{"product_id": pid(st, "X"), "quantity": i64::MAX}],
                       "shipping_lines": [{"method_id": "flat_rate", "total": "79228162514264337593543950"}],
                       "fee_lines": [{"name": "f", "total": "-79228162514264337593543950"}]})
            };
            let o = checkout_order(
                &mut st,
                body,
                Some("79228162514264337593543950"),
                &[CheckoutFee {
                    taxable: true,
                    tax_class: String::new(),
                }],
            );
            assert!(o["total"].is_string());
            let o = rest_order(&mut st, body);
            assert!(o["total"].is_string());
        }
    }

    #[test]
    fn a_zero_rated_line_carries_an_empty_tax_and_a_tax_line() {
        let mut st = store(Settings::norway(), &[("Z", "100.00", "zero-rate")]);
        let o = rest_order(
            &mut st,
            |st| json!({"line_items": [{"product_id": pid(st, "Z"), "quantity": 1}]}),
        );
        assert_eq!(
            o["line_items"][0]["taxes"],
            json!([{"id": 4, "total": "0", "subtotal": "0"}])
        );
        assert_eq!(o["tax_lines"][0]["rate_percent"], json!(0));
        assert_eq!(o["total"], json!("100.00"));
    }

    #[test]
    fn inclusive_and_exclusive_taxes_match_woocommerce() {
        let s = Settings::norway();
        let std = find_rates(&s, "", "NO");
        assert_eq!(std.len(), 1);
        assert_eq!(calc_inclusive(&s, d("22"), &std), vec![(1, d("4.4"))]);
        assert_eq!(calc_exclusive(&s, d("4.90"), &std), vec![(1, d("1.225"))]);
        // 49.90 with 15 %: 6.508696 (6 decimals, half up).
        let food = find_rates(&s, "food", "NO");
        assert_eq!(
            calc_inclusive(&s, d("49.90"), &food),
            vec![(2, d("6.508696"))]
        );
        assert!(find_rates(&s, "", "SE").is_empty(), "a Norwegian rate only");
        // A 0 % rate still appears, with nothing in it.
        let zero = find_rates(&s, "zero-rate", "NO");
        assert_eq!(calc_exclusive(&s, d("10"), &zero), vec![(4, d("0"))]);
    }

    #[test]
    fn tax_totals_round_half_down_when_prices_include_tax() {
        let mut s = Settings::norway();
        assert_eq!(round_tax_total(&s, d("1.225"), 2), d("1.22"));
        s.prices_include_tax = false;
        assert_eq!(round_tax_total(&s, d("1.225"), 2), d("1.23"));
        assert_eq!(round_half_up(d("-1.225"), 2), d("-1.23"));
    }

    #[test]
    fn compound_rates_apply_on_top() {
        let s = Settings {
            tax_rates: vec![
                TaxRate {
                    id: 7,
                    country: String::new(),
                    state: String::new(),
                    rate: d("5"),
                    name: "GST".into(),
                    priority: 1,
                    compound: false,
                    shipping: true,
                    class: String::new(),
                },
                TaxRate {
                    id: 8,
                    country: String::new(),
                    state: String::new(),
                    rate: d("10"),
                    name: "PST".into(),
                    priority: 2,
                    compound: true,
                    shipping: true,
                    class: String::new(),
                },
            ],
            ..Settings::default()
        };
        let rates = find_rates(&s, "", "CA");
        // 100 + 5 = 105; 10 % of 105 = 10.5.
        assert_eq!(
            calc_exclusive(&s, d("100"), &rates),
            vec![(7, d("5")), (8, d("10.5"))]
        );
        let back = calc_inclusive(&s, d("115.5"), &rates);
        assert_eq!(back, vec![(7, d("5")), (8, d("10.5"))]);
    }
}
