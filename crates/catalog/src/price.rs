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
/// Rounds half away from zero, as PHP's `round` (and so WooCommerce) does. A VAT rate that
/// cannot be taken out (-100 % or less, or one that makes the price overflow) is treated as
/// 0 %: the price is used as it is rather than a nonsensical one.
pub fn woo_price(price_inc_vat: Decimal, vat_percent: Decimal, rules: PriceRules) -> Decimal {
    let dp = rules.decimals.min(8);
    let value = if rules.prices_include_tax || vat_percent.is_zero() {
        price_inc_vat
    } else {
        // Checked: the rate is outside input, and `Decimal`'s `/` panics on a zero divisor.
        (vat_percent / Decimal::ONE_HUNDRED)
            .checked_add(Decimal::ONE)
            .filter(|factor| *factor > Decimal::ZERO)
            .and_then(|factor| price_inc_vat.checked_div(factor))
            .unwrap_or(price_inc_vat)
    };
    value
        .round_dp_with_strategy(dp, RoundingStrategy::MidpointAwayFromZero)
        .normalize()
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
        fn converting_back_is_within_half_a_cent(cents in 1i64..10_000_000, vat in prop::sample::select(vec![0i64, 12, 15, 25])) {
            let inc = Decimal::new(cents, 2);
            let vat = Decimal::from(vat);
            let ex = woo_price(inc, vat, EX);
            prop_assert_eq!(ex.scale() <= 2, true);
            let back = ex * (Decimal::ONE + vat / Decimal::ONE_HUNDRED);
            prop_assert!((back - inc).abs() <= dec!(0.01) * (Decimal::ONE + vat / Decimal::ONE_HUNDRED));
        }

        #[test]
        fn taking_vat_out_is_exact_up_to_half_a_unit_of_the_store_decimals(
            units in 0i64..1_000_000_000_000,
            scale in 0u32..5,
            vat_hundredths in 0i64..=10_000,
            dp in 0u32..=8,
        ) {
            let inc = Decimal::new(units, scale);
            let vat = Decimal::new(vat_hundredths, 2);
            let rules = PriceRules { prices_include_tax: false, decimals: dp };
            let ex = woo_price(inc, vat, rules);
            prop_assert!(ex.scale() <= dp);
            let factor = Decimal::ONE + vat / Decimal::ONE_HUNDRED;
            let half_unit = Decimal::new(5, dp + 1);
            // Exact within the documented rounding (plus Decimal's 28-digit division).
            let exact = inc / factor;
            prop_assert!((ex - exact).abs() <= half_unit, "{} vs {}", ex, exact);
            // Putting the VAT back gives the DUELL price within that rounding, scaled.
            prop_assert!((ex * factor - inc).abs() <= half_unit * factor + Decimal::new(1, 20));
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
