//! DUELL prices include VAT; WooCommerce stores prices with or without tax as the shop is set
//! up, rounded to its number of decimals. All in exact decimals.

use rust_decimal::{Decimal, RoundingStrategy};

/// The store's price settings, read from WooCommerce.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PriceRules {
    /// `woocommerce_prices_include_tax`.
    pub prices_include_tax: bool,
    /// `woocommerce_price_num_decimals`.
    pub decimals: u32,
}

impl Default for PriceRules {
    fn default() -> Self {
        PriceRules {
            prices_include_tax: true,
            decimals: 2,
        }
    }
}

/// A DUELL price (VAT included) as WooCommerce should hold it.
///
/// With prices entered with tax, the price rounded to the store's decimals (half away from
/// zero, as PHP's `round`, so WooCommerce, does). With prices entered without tax, WooCommerce
/// stores the net price with every decimal it is sent but shows customers
/// `round(net + tax, decimals)`; a net price rounded to the store's decimals is then often one
/// øre off (19.97 incl. 25 % → 15.98 → shown 19.98). So the net price gets as many extra
/// decimals as it takes for the shown price to be DUELL's exactly, whether the store rounds
/// tax per line or at the subtotal ([`shown_price`]).
///
/// A VAT rate that cannot be taken out (-100 % or less, or one that makes the price overflow)
/// is treated as 0 %: the price is used as it is rather than a nonsensical one.
pub fn woo_price(price_inc_vat: Decimal, vat_percent: Decimal, rules: PriceRules) -> Decimal {
    let dp = rules.decimals.min(8);
    let round =
        |d: Decimal, dp: u32| d.round_dp_with_strategy(dp, RoundingStrategy::MidpointAwayFromZero);
    let factor = (vat_percent / Decimal::ONE_HUNDRED)
        .checked_add(Decimal::ONE)
        .filter(|factor| *factor > Decimal::ZERO);
    let (true, Some(factor)) = (!rules.prices_include_tax && !vat_percent.is_zero(), factor) else {
        return round(price_inc_vat, dp).normalize();
    };
    // What customers must see is DUELL's price at the store's decimals.
    let target = round(price_inc_vat, dp);
    let Some(net) = target.checked_div(factor) else {
        return target.normalize();
    };
    let shows = |p: Decimal, at_subtotal: bool| {
        shown_price(p, vat_percent, dp, at_subtotal) == Some(target)
    };
    // The fewest decimals that show DUELL's price; near a rounding edge of the tax a neighbour
    // of the nearest net price may be needed. Rounding the tax per line is WooCommerce's
    // default; for a few prices no net price shows DUELL's with it (the tax's rounding jumps
    // over the price), and then the one that is right when tax is rounded at the subtotal is
    // taken.
    let mut candidates = Vec::new();
    for extra in 0..=4u32 {
        let places = dp + extra;
        let base = round(net, places);
        let unit = Decimal::new(1, places);
        for k in [0i64, -1, 1, -2, 2, -3, 3] {
            if let Some(p) = base.checked_add(unit * Decimal::from(k)) {
                candidates.push(p);
            }
        }
    }
    candidates
        .iter()
        .find(|p| shows(**p, false) && shows(**p, true))
        .or_else(|| candidates.iter().find(|p| shows(**p, false)))
        .or_else(|| candidates.iter().find(|p| shows(**p, true)))
        .copied()
        .unwrap_or_else(|| round(net, dp + 4))
        .normalize()
}

/// The price incl. tax WooCommerce shows for a net price `net` (`wc_get_price_including_tax`
/// with prices entered without tax): the tax is `net × rate`, rounded to the store's decimals
/// per line (`wc_round_tax_total`) unless the store rounds at the subtotal
/// (`woocommerce_tax_round_at_subtotal`), and the sum rounded to the store's decimals, half up.
pub fn shown_price(
    net: Decimal,
    vat_percent: Decimal,
    decimals: u32,
    at_subtotal: bool,
) -> Option<Decimal> {
    let round =
        |d: Decimal| d.round_dp_with_strategy(decimals, RoundingStrategy::MidpointAwayFromZero);
    let tax = net
        .checked_mul(vat_percent)?
        .checked_div(Decimal::ONE_HUNDRED)?;
    let tax = if at_subtotal { tax } else { round(tax) };
    Some(round(net.checked_add(tax)?))
}

/// A price as text with exactly the store's decimals ("199.00").
pub fn format_price(d: Decimal, decimals: u32) -> String {
    let mut d = d.round_dp_with_strategy(decimals, RoundingStrategy::MidpointAwayFromZero);
    d.rescale(decimals);
    d.to_string()
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use rust_decimal_macros::dec;

    const INC: PriceRules = PriceRules {
        prices_include_tax: true,
        decimals: 2,
    };
    const EX: PriceRules = PriceRules {
        prices_include_tax: false,
        decimals: 2,
    };

    #[test]
    fn prices_entered_with_tax_are_used_as_they_are() {
        assert_eq!(woo_price(dec!(199), dec!(25), INC), dec!(199));
        assert_eq!(woo_price(dec!(19.999), dec!(25), INC), dec!(20));
    }

    #[test]
    fn prices_entered_without_tax_take_the_vat_out() {
        assert_eq!(woo_price(dec!(125), dec!(25), EX), dec!(100));
        assert_eq!(woo_price(dec!(99.90), dec!(15), EX), dec!(86.87));
        assert_eq!(woo_price(dec!(49), dec!(12), EX), dec!(43.75));
        assert_eq!(woo_price(dec!(49), dec!(0), EX), dec!(49));
    }

    #[test]
    fn a_net_price_gets_the_decimals_that_make_woocommerce_show_duells_price() {
        // Issue 13 defect 5: 15.98 was sent and WooCommerce showed 19.98.
        let net = woo_price(dec!(19.97), dec!(25), EX);
        assert_eq!(net, dec!(15.976));
        assert_eq!(shown_price(net, dec!(25), 2, false), Some(dec!(19.97)));
        assert_eq!(shown_price(net, dec!(25), 2, true), Some(dec!(19.97)));
        assert_eq!(
            shown_price(dec!(15.98), dec!(25), 2, false),
            Some(dec!(19.98))
        );
    }

    #[test]
    fn rounding_is_half_away_from_zero_to_the_store_decimals() {
        let zero = PriceRules {
            prices_include_tax: true,
            decimals: 0,
        };
        assert_eq!(woo_price(dec!(10.5), dec!(25), zero), dec!(11));
        assert_eq!(woo_price(dec!(0.125), dec!(25), INC), dec!(0.13));
        assert_eq!(format_price(dec!(199), 2), "199.00");
        assert_eq!(format_price(dec!(0.125), 2), "0.13");
    }

    proptest! {
        #[test]
        /// For every DUELL price and VAT rate, the price WooCommerce shows (computed as it
        /// does, tax rounded per line or at the subtotal) is DUELL's to the øre.
        #[test]
        fn woocommerce_shows_duells_price_to_the_ore(
            cents in 1i64..100_000_000,
            vat in prop_oneof![
                prop::sample::select(vec![dec!(0), dec!(6), dec!(12), dec!(15), dec!(25)]),
                (0i64..=5_000).prop_map(|h| Decimal::new(h, 2)),
            ],
            dp in 0u32..=4,
            at_subtotal in any::<bool>(),
        ) {
            let inc = Decimal::new(cents, 2);
            let ex = woo_price(inc, vat, PriceRules { prices_include_tax: false, decimals: dp });
            let want = inc.round_dp_with_strategy(dp, RoundingStrategy::MidpointAwayFromZero);
            prop_assert!(ex.scale() <= dp + 4);
            if shown_price(ex, vat, dp, at_subtotal) != Some(want) {
                // Only where no net price can show it: tax rounded per line jumps over the
                // price. Every net price near the exact one (steps far finer than the store's)
                // shows something else.
                prop_assert!(!at_subtotal, "net {} shows {:?}", ex, shown_price(ex, vat, dp, true));
                let exact = want / (Decimal::ONE + vat / Decimal::ONE_HUNDRED);
                let step = Decimal::new(1, dp + 3);
                for k in -3000i64..=3000 {
                    let p = exact + step * Decimal::from(k);
                    prop_assert_ne!(shown_price(p, vat, dp, false), Some(want), "net {} would show it", p);
                }
            }
        }

        #[test]
        fn taking_vat_out_stays_within_a_few_units_of_the_store_decimals(
            units in 0i64..1_000_000_000_000,
            scale in 0u32..5,
            vat_hundredths in 0i64..=10_000,
            dp in 0u32..=8,
        ) {
            let inc = Decimal::new(units, scale);
            let vat = Decimal::new(vat_hundredths, 2);
            let rules = PriceRules { prices_include_tax: false, decimals: dp };
            let ex = woo_price(inc, vat, rules);
            prop_assert!(ex.scale() <= dp + 4);
            let factor = Decimal::ONE + vat / Decimal::ONE_HUNDRED;
            // The net price is the exact one, or a neighbour within a few units of the store's
            // decimals when DUELL's price has more decimals than the store shows (the shown
            // price is then DUELL's rounded, see `woocommerce_shows_duells_price_to_the_ore`).
            let slack = Decimal::new(35, dp + 1);
            let exact = inc / factor;
            prop_assert!((ex - exact).abs() <= slack, "{} vs {}", ex, exact);
            prop_assert!((ex * factor - inc).abs() <= slack * factor + Decimal::new(1, 20));
        }

        #[test]
        fn formatted_prices_read_back_as_the_rounded_price(units in any::<i64>(), scale in 0u32..10, dp in 0u32..=8) {
            let d = Decimal::new(units, scale);
            let text = format_price(d, dp);
            let back: Decimal = text.parse().unwrap();
            prop_assert_eq!(back, d.round_dp_with_strategy(dp, RoundingStrategy::MidpointAwayFromZero));
            prop_assert_eq!(text.split('.').nth(1).map_or(0, str::len), dp as usize);
        }

        #[test]
        fn any_price_and_rate_give_a_price(
            price in any::<(u32, u32, u32, bool, u32)>(),
            vat in any::<(u32, u32, u32, bool, u32)>(),
            include in any::<bool>(),
            dp in 0u32..40,
        ) {
            let d = |(lo, mid, hi, neg, scale): (u32, u32, u32, bool, u32)| Decimal::from_parts(lo, mid, hi, neg, scale % 29);
            let _ = woo_price(d(price), d(vat), PriceRules { prices_include_tax: include, decimals: dp });
            // The store's decimals come from a WooCommerce setting: any number.
            let _ = format_price(d(price), dp);
        }

        #[test]
        fn inclusive_prices_never_change_by_more_than_rounding(cents in 0i64..1_000_000_000, dp in 0u32..4) {
            let inc = Decimal::new(cents, 3);
            let r = PriceRules { prices_include_tax: true, decimals: dp };
            let out = woo_price(inc, dec!(25), r);
            prop_assert!((out - inc).abs() <= Decimal::new(5, dp + 1));
        }
    }
}
