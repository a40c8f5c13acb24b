//! Property tests over taxed orders generated the way WooCommerce 7.9 computes them: prices
//! entered with or without tax, Norwegian rates (25, 15, 12 and 0 %), tax on shipping and on
//! taxable fees, rounding per line or at subtotal, orders made over REST
//! (`WC_Abstract_Order::calculate_totals`) and at checkout (`WC_Cart_Totals`, in cents, with a
//! fixed-cart coupon). Whatever WooCommerce charged, the DUELL lines book exactly that: prices with
//! VAT × quantities, less discounts, add up to the order total to the øre.

use duellsync_orders::{
    check_total, map_lines, taxes_computed_in, LineSource, MapOptions, MappedLine,
};
use duellsync_woo_model::Order;
use proptest::prelude::*;
use rust_decimal::{Decimal, RoundingStrategy};
use serde_json::{json, Value};

fn cents(c: i64) -> Decimal {
    Decimal::new(c, 2)
}

fn half_up(d: Decimal, dp: u32) -> Decimal {
    d.round_dp_with_strategy(dp, RoundingStrategy::MidpointAwayFromZero)
}

/// `WC_Tax::round`: computed taxes to 6 decimals, half up.
fn six(d: Decimal) -> Decimal {
    half_up(d, 6)
}

/// A stored unrounded amount as `wc_format_decimal` writes it.
fn raw_str(d: Decimal) -> String {
    let n = six(d).normalize();
    if n.is_zero() {
        "0".into()
    } else {
        n.to_string()
    }
}

fn rate_id(rate: u32) -> u64 {
    match rate {
        25 => 1,
        15 => 2,
        12 => 3,
        _ => 4,
    }
}

#[derive(Clone, Debug)]
struct Setup {
    prices_include_tax: bool,
    round_at_subtotal: bool,
    checkout: bool,
}

impl Setup {
    /// `wc_round_tax_total`: half down when prices include tax.
    fn round_tax(&self, d: Decimal, dp: u32) -> Decimal {
        let mode = if self.prices_include_tax {
            RoundingStrategy::MidpointTowardZero
        } else {
            RoundingStrategy::MidpointAwayFromZero
        };
        d.round_dp_with_strategy(dp, mode)
    }

    fn line_tax(&self, t: Decimal) -> Decimal {
        if self.round_at_subtotal {
            t
        } else {
            self.round_tax(t, 2)
        }
    }

    fn contained(price: Decimal, rate: u32) -> Decimal {
        let r = Decimal::from(rate) / Decimal::ONE_HUNDRED;
        six(price * r / (Decimal::ONE + r))
    }

    fn added(price: Decimal, rate: u32) -> Decimal {
        six(price * Decimal::from(rate) / Decimal::ONE_HUNDRED)
    }
}

#[derive(Clone, Debug)]
struct GenLine {
    /// Unit price as entered (with tax when the store says so), in øre.
    unit: i64,
    qty: i64,
    rate: u32,
}

#[derive(Clone, Debug)]
struct GenFee {
    amount: i64,
    taxable: bool,
}

#[derive(Clone, Debug)]
struct GenOrder {
    setup: Setup,
    lines: Vec<GenLine>,
    shipping: Vec<i64>,
    fees: Vec<GenFee>,
    coupon: i64,
}

impl GenOrder {
    /// Shipping inherits the class of the items: standard when a standard item is there.
    fn shipping_rate(&self) -> u32 {
        for r in [25, 12, 0, 15] {
            if self.lines.iter().any(|l| l.rate == r) {
                return r;
            }
        }
        25
    }
}

fn gen_order() -> impl Strategy<Value = GenOrder> {
    let line = (
        1i64..300_000,
        1i64..12,
        prop::sample::select(vec![25u32, 15, 12, 0]),
    )
        .prop_map(|(unit, qty, rate)| GenLine { unit, qty, rate });
    let fee = (-3_000i64..10_000, any::<bool>()).prop_map(|(amount, taxable)| GenFee {
        amount,
        // A negative fee here is a plain discount without tax of its own.
        taxable: taxable && amount >= 0,
    });
    (
        (any::<bool>(), any::<bool>(), any::<bool>()),
        prop::collection::vec(line, 1..7),
        prop::collection::vec(0i64..40_000, 0..3),
        prop::collection::vec(fee, 0..3),
        0u32..60,
    )
        .prop_map(
            |((incl, at_sub, checkout), lines, shipping, fees, coupon_pct)| {
                let gross: i64 = lines.iter().map(|l| l.unit * l.qty).sum();
                GenOrder {
                    setup: Setup {
                        prices_include_tax: incl,
                        round_at_subtotal: at_sub,
                        checkout,
                    },
                    coupon: if checkout {
                        gross * i64::from(coupon_pct) / 100
                    } else {
                        0
                    },
                    lines,
                    shipping,
                    fees,
                }
            },
        )
}

/// The order JSON WooCommerce would show.
fn woo_json(g: &GenOrder) -> Value {
    if g.setup.checkout {
        checkout(g)
    } else {
        rest(g)
    }
}

fn taxes_j(rate: u32, total: Decimal, subtotal: Option<Decimal>) -> Value {
    json!([{"id": rate_id(rate), "total": raw_str(total),
            "subtotal": subtotal.map(raw_str).unwrap_or_default()}])
}

fn tax_lines(g: &GenOrder) -> Value {
    let mut rates: Vec<u32> = g.lines.iter().map(|l| l.rate).collect();
    rates.push(g.shipping_rate());
    rates.sort_unstable();
    rates.dedup();
    Value::Array(
        rates
            .iter()
            .map(|r| json!({"id": 900 + rate_id(*r), "rate_id": rate_id(*r), "rate_percent": r}))
            .collect(),
    )
}

/// `calculate_totals` of an order created over REST.
fn rest(g: &GenOrder) -> Value {
    let s = &g.setup;
    let (mut cart_total, mut cart_tax, mut ship_total, mut ship_tax, mut fees_total) = (
        Decimal::ZERO,
        Decimal::ZERO,
        Decimal::ZERO,
        Decimal::ZERO,
        Decimal::ZERO,
    );
    let mut items = Vec::new();
    for (i, l) in g.lines.iter().enumerate() {
        let gross = cents(l.unit * l.qty);
        let net = if s.prices_include_tax {
            gross - Setup::contained(gross, l.rate)
        } else {
            gross
        };
        let tax = Setup::added(net, l.rate);
        cart_total += if s.round_at_subtotal {
            net
        } else {
            half_up(net, 2)
        };
        cart_tax += s.line_tax(tax);
        items.push(json!({
            "id": i + 1, "product_id": 100 + i, "quantity": l.qty,
            "subtotal": half_up(net, 2).to_string(), "subtotal_tax": half_up(s.line_tax(tax), 2).to_string(),
            "total": half_up(net, 2).to_string(), "total_tax": half_up(s.line_tax(tax), 2).to_string(),
            "taxes": taxes_j(l.rate, tax, Some(tax)),
        }));
    }
    let ship_rate = g.shipping_rate();
    let mut shipping = Vec::new();
    for (i, c) in g.shipping.iter().enumerate() {
        let cost = cents(*c);
        let tax = Setup::added(cost, ship_rate);
        ship_total += cost;
        ship_tax += s.line_tax(tax);
        shipping.push(json!({
            "id": 50 + i, "method_id": "flat_rate", "method_title": "Frakt",
            "total": cost.to_string(), "total_tax": half_up(s.line_tax(tax), 2).to_string(),
            "taxes": taxes_j(ship_rate, tax, None),
        }));
    }
    let mut fees = Vec::new();
    for (i, f) in g.fees.iter().enumerate() {
        let mut amount = cents(f.amount);
        if amount < Decimal::ZERO {
            let max = -half_up(cart_total + fees_total + ship_total, 2);
            if amount < max && max < Decimal::ZERO {
                amount = max;
            }
        }
        fees_total += amount;
        let (tax, taxes) = if f.taxable {
            let t = Setup::added(amount, 25);
            (s.line_tax(t), taxes_j(25, t, None))
        } else {
            (Decimal::ZERO, json!([]))
        };
        cart_tax += tax;
        fees.push(json!({
            "id": 70 + i, "name": "Gebyr", "tax_status": if f.taxable { "taxable" } else { "none" },
            "total": amount.to_string(), "total_tax": half_up(tax, 2).to_string(), "taxes": taxes,
        }));
    }
    let total = half_up(
        cart_total + fees_total + ship_total + cart_tax + ship_tax,
        2,
    );
    json!({
        "id": 1, "prices_include_tax": s.prices_include_tax, "total": total.to_string(),
        "total_tax": half_up(cart_tax + ship_tax, 2).to_string(),
        "line_items": items, "shipping_lines": shipping, "fee_lines": fees, "tax_lines": tax_lines(g),
    })
}

/// `WC_Cart_Totals` and `WC_Checkout::create_order`, in øre.
fn checkout(g: &GenOrder) -> Value {
    let s = &g.setup;
    let incl = s.prices_include_tax;
    let round_c = |d: Decimal| {
        if s.round_at_subtotal {
            d
        } else {
            s.round_tax(d, 0)
        }
    };
    let round_item_c = |d: Decimal| {
        if s.round_at_subtotal {
            d
        } else {
            half_up(d, 0)
        }
    };
    let calc = |price: Decimal, rate: u32| {
        if incl {
            Setup::contained(price, rate)
        } else {
            Setup::added(price, rate)
        }
    };
    // WC_Discounts fixed_cart: whole øre per unit, the rest one øre a unit, dearest lines first.
    let prices: Vec<Decimal> = g
        .lines
        .iter()
        .map(|l| Decimal::from(l.unit * l.qty))
        .collect();
    let mut discount = vec![Decimal::ZERO; g.lines.len()];
    let mut order: Vec<usize> = (0..g.lines.len()).collect();
    order.sort_by(|a, b| prices[*b].cmp(&prices[*a]));
    let units: i64 = g.lines.iter().map(|l| l.qty).sum();
    let mut left = Decimal::from(g.coupon);
    while left > Decimal::ZERO {
        let per = (left / Decimal::from(units)).floor();
        let mut given = Decimal::ZERO;
        if per > Decimal::ZERO {
            for i in &order {
                let d = (per * Decimal::from(g.lines[*i].qty)).min(prices[*i] - discount[*i]);
                discount[*i] += d;
                given += d;
            }
        } else {
            'outer: for i in &order {
                for _ in 0..g.lines[*i].qty {
                    if prices[*i] - discount[*i] >= Decimal::ONE {
                        discount[*i] += Decimal::ONE;
                        given += Decimal::ONE;
                    }
                    if given >= left {
                        break 'outer;
                    }
                }
            }
        }
        if given.is_zero() {
            break;
        }
        left -= given;
    }
    let hundred = Decimal::ONE_HUNDRED;
    let (mut items_total, mut item_tax) = (Decimal::ZERO, Decimal::ZERO);
    let mut items = Vec::new();
    for (i, l) in g.lines.iter().enumerate() {
        let sub_tax = calc(prices[i], l.rate);
        let sub_ex = if incl { prices[i] - sub_tax } else { prices[i] };
        let total = prices[i] - discount[i];
        let tax = calc(total, l.rate);
        let ex = if incl { total - tax } else { total };
        items_total += round_item_c(ex);
        item_tax += round_c(tax);
        let (tax_u, sub_tax_u) = (tax / hundred, sub_tax / hundred);
        items.push(json!({
            "id": i + 1, "product_id": 100 + i, "quantity": l.qty,
            "subtotal": half_up(sub_ex / hundred, 2).to_string(),
            "subtotal_tax": half_up(s.line_tax(sub_tax_u.max(tax_u)), 2).to_string(),
            "total": half_up(ex / hundred, 2).to_string(),
            "total_tax": half_up(s.line_tax(tax_u), 2).to_string(),
            "taxes": taxes_j(l.rate, tax_u, Some(sub_tax_u.max(tax_u))),
        }));
    }
    let ship_rate = g.shipping_rate();
    let (mut ship_total, mut ship_tax) = (Decimal::ZERO, Decimal::ZERO);
    let mut shipping = Vec::new();
    for (i, c) in g.shipping.iter().enumerate() {
        let t = Setup::added(cents(*c), ship_rate);
        ship_total += Decimal::from(*c);
        ship_tax += round_item_c(t * hundred);
        shipping.push(json!({
            "id": 50 + i, "method_id": "flat_rate", "method_title": "Frakt",
            "total": cents(*c).to_string(), "total_tax": half_up(s.line_tax(t), 2).to_string(),
            "taxes": taxes_j(ship_rate, t, None),
        }));
    }
    let (mut fees_total, mut fee_tax) = (Decimal::ZERO, Decimal::ZERO);
    let mut fees = Vec::new();
    for (i, f) in g.fees.iter().enumerate() {
        let mut amount = Decimal::from(f.amount);
        if amount < Decimal::ZERO {
            let max = -half_up(items_total + fees_total + ship_total, 0);
            if amount < max {
                amount = max;
            }
        }
        fees_total += amount;
        let (tax_u, taxes) = if f.taxable {
            let t = Setup::added(amount, 25);
            fee_tax += round_c(t);
            (t / hundred, taxes_j(25, t / hundred, None))
        } else {
            (Decimal::ZERO, json!([]))
        };
        fees.push(json!({
            "id": 70 + i, "name": "Gebyr", "tax_status": if f.taxable { "taxable" } else { "none" },
            "total": (amount / hundred).to_string(), "total_tax": half_up(s.line_tax(tax_u), 2).to_string(),
            "taxes": taxes,
        }));
    }
    let total = half_up(
        items_total + fees_total + ship_total + item_tax + fee_tax + ship_tax,
        0,
    ) / hundred;
    json!({
        "id": 1, "prices_include_tax": incl, "total": total.max(Decimal::ZERO).to_string(),
        "line_items": items, "shipping_lines": shipping, "fee_lines": fees, "tax_lines": tax_lines(g),
    })
}

fn parts_of(mapped: &[MappedLine], id: u64) -> Vec<&MappedLine> {
    mapped
        .iter()
        .filter(|m| match &m.source {
            LineSource::Product { line_id, .. }
            | LineSource::Shipping { line_id, .. }
            | LineSource::Fee { line_id } => *line_id == id,
        })
        .collect()
}

fn booked(parts: &[&MappedLine]) -> Decimal {
    parts.iter().map(|m| m.total_inc_vat().unwrap()).sum()
}

fn dec(v: &Value) -> Decimal {
    v.as_str().unwrap().parse().unwrap()
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    #[test]
    fn duell_lines_add_up_to_the_woo_total_to_the_ore(g in gen_order()) {
        let raw = woo_json(&g);
        let order: Order = serde_json::from_value(raw.clone()).unwrap();
        let opts = MapOptions { taxes_computed: taxes_computed_in(&raw), ..MapOptions::default() };
        let mapped = map_lines(&order, &opts).unwrap();
        prop_assert_eq!(
            check_total(&mapped, order.total, Decimal::ZERO).map_err(|e| e.to_string()),
            Ok(order.total),
            "{}", raw
        );
        let one = Decimal::new(1, 2);
        for (i, l) in g.lines.iter().enumerate() {
            let woo = &raw["line_items"][i];
            let parts = parts_of(&mapped, i as u64 + 1);
            prop_assert!(!parts.is_empty() && parts.len() <= 2, "{:?}", parts);
            prop_assert_eq!(parts.iter().map(|m| m.quantity).sum::<Decimal>(), Decimal::from(l.qty));
            // Each line books its own amount, give or take the øre of rounding it carried.
            let shown = dec(&woo["total"]) + dec(&woo["total_tax"]);
            prop_assert!((booked(&parts) - shown).abs() <= one, "{} vs {}", booked(&parts), shown);
            for m in &parts {
                let d = m.discount_inc_vat.unwrap_or_default();
                prop_assert!(d >= Decimal::ZERO && d <= m.price_inc_vat, "{:?}", m);
                prop_assert!(m.price_ex_vat <= m.price_inc_vat);
                if dec(&woo["subtotal"]) >= Decimal::from(10) {
                    prop_assert_eq!(m.vat_rate, Decimal::from(l.rate), "{}", woo);
                }
            }
        }
        for (i, c) in g.shipping.iter().enumerate() {
            let parts = parts_of(&mapped, 50 + i as u64);
            prop_assert_eq!(parts.len(), 1);
            if *c >= 1000 {
                prop_assert_eq!(parts[0].vat_rate, Decimal::from(g.shipping_rate()));
            }
        }
    }

    #[test]
    fn the_same_order_maps_to_the_same_lines(g in gen_order()) {
        // A redelivered webhook must plan the same DUELL order.
        let raw = woo_json(&g);
        let order: Order = serde_json::from_value(raw.clone()).unwrap();
        let opts = MapOptions { taxes_computed: taxes_computed_in(&raw), ..MapOptions::default() };
        prop_assert_eq!(map_lines(&order, &opts), map_lines(&order, &opts));
    }
}

#[test]
fn the_reference_stores_order_books_28_12() {
    // The real Norwegian store: 2 × 11.00 with VAT and 4.90 shipping over REST.
    let g = GenOrder {
        setup: Setup {
            prices_include_tax: true,
            round_at_subtotal: false,
            checkout: false,
        },
        lines: vec![GenLine {
            unit: 1100,
            qty: 2,
            rate: 25,
        }],
        shipping: vec![490],
        fees: vec![],
        coupon: 0,
    };
    let raw = woo_json(&g);
    assert_eq!(raw["total"], json!("28.12"));
    let order: Order = serde_json::from_value(raw.clone()).unwrap();
    let opts = MapOptions {
        taxes_computed: taxes_computed_in(&raw),
        ..MapOptions::default()
    };
    let mapped = map_lines(&order, &opts).unwrap();
    let prices: Vec<(Decimal, Decimal)> = mapped
        .iter()
        .map(|m| (m.quantity, m.price_inc_vat))
        .collect();
    assert_eq!(
        prices,
        vec![
            (Decimal::from(2), Decimal::new(1100, 2)),
            (Decimal::ONE, Decimal::new(612, 2))
        ]
    );
    // At checkout the shipping tax was rounded up in the total: the øre goes to shipping.
    let g = GenOrder {
        setup: Setup {
            checkout: true,
            ..g.setup
        },
        ..g
    };
    let raw = woo_json(&g);
    assert_eq!(raw["total"], json!("28.13"));
    assert_eq!(raw["shipping_lines"][0]["total_tax"], json!("1.22"));
    let order: Order = serde_json::from_value(raw.clone()).unwrap();
    let mapped = map_lines(&order, &opts).unwrap();
    assert_eq!(mapped[1].price_inc_vat, Decimal::new(613, 2));
}
