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
/// Rounds half away from zero, as PHP's `round` (and so WooCommerce) does.
pub fn woo_price(price_inc_vat: Decimal, vat_percent: Decimal, rules: PriceRules) -> Decimal {
    let dp = rules.decimals.min(8);
    let value = if rules.prices_include_tax || vat_percent.is_zero() {
        price_inc_vat
    } else {
        let factor = Decimal::ONE + vat_percent / Decimal::ONE_HUNDRED;
        price_inc_vat / factor
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
        fn inclusive_prices_never_change_by_more_than_rounding(cents in 0i64..1_000_000_000, dp in 0u32..4) {
            let inc = Decimal::new(cents, 3);
            let r = PriceRules { prices_include_tax: true, decimals: dp };
            let out = woo_price(inc, dec!(25), r);
            prop_assert!((out - inc).abs() <= Decimal::new(5, dp + 1));
        }
    }
}
