//! Which WooCommerce tax class carries which VAT rate in one shop.
//!
//! WooCommerce taxes a product by its tax class, not by a rate of its own: a 15 % food product
//! left in the standard class is taxed at 25 %. In a shop that enters prices without tax the
//! customer then pays more than DUELL's price (the net price is DUELL's price without 15 %, and
//! WooCommerce adds 25 %); in one that enters them with tax the price is right but the VAT on
//! the order is wrong. So each product is written with the class of its DUELL VAT rate.
//!
//! The classes come from the shop's own tax tables (`GET /taxes`): the class whose rate for the
//! shop's base country equals the product's VAT, the standard class first. A store setting
//! (`tax_classes`) names the class for rates the tables cannot decide. A shop that calculates
//! no taxes gets no class written.

use std::collections::BTreeMap;

use duellsync_woo_model::TaxRate;
use rust_decimal::Decimal;

/// The shop's VAT rate → tax class slug (`""` = standard).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TaxClasses {
    /// `false`: the shop calculates no taxes (or its tables were never read): write no class.
    enabled: bool,
    by_rate: BTreeMap<Decimal, String>,
}

impl TaxClasses {
    /// No class is ever written (a shop without taxes, or before its tables are read).
    pub const NONE: TaxClasses = TaxClasses {
        enabled: false,
        by_rate: BTreeMap::new(),
    };

    /// From the shop's tax tables, its base country, and the store's `tax_classes` setting
    /// (which wins over the tables; its keys are validated percents).
    pub fn new(
        calc_taxes: bool,
        rates: &[TaxRate],
        base_country: &str,
        overrides: &BTreeMap<String, String>,
    ) -> TaxClasses {
        let mut by_rate: BTreeMap<Decimal, String> = BTreeMap::new();
        // The rows that apply to a sale in the base country: that country's (a state-wide row
        // before a state's) or every country's, in the table's priority order.
        let mut rows: Vec<&TaxRate> = rates
            .iter()
            .filter(|r| r.rate.is_some())
            .filter(|r| r.country.is_empty() || r.country.eq_ignore_ascii_case(base_country))
            .collect();
        rows.sort_by_key(|r| (r.country.is_empty(), !r.state.is_empty(), r.priority));
        let mut class_rate: Vec<(String, Decimal)> = Vec::new();
        for r in rows {
            let class = slug(&r.class);
            if class_rate.iter().all(|(c, _)| *c != class) {
                class_rate.push((class, r.rate.unwrap_or_default().normalize()));
            }
        }
        // Standard first, then the table's order: a rate carried by two classes goes to the
        // standard one, or to the first that carries it.
        class_rate.sort_by_key(|(c, _)| !c.is_empty());
        for (class, rate) in class_rate {
            by_rate.entry(rate).or_insert(class);
        }
        for (k, v) in overrides {
            if let Ok(rate) = k.trim().parse::<Decimal>() {
                by_rate.insert(rate.normalize(), v.trim().to_owned());
            }
        }
        TaxClasses {
            enabled: calc_taxes,
            by_rate,
        }
    }

    /// The class to write for a product with this VAT rate; `None` when no class is to be
    /// written (taxes off, or no class carries the rate: the product keeps its class).
    pub fn class_for(&self, vat_percent: Decimal) -> Option<&str> {
        if !self.enabled {
            return None;
        }
        self.by_rate
            .get(&vat_percent.normalize())
            .map(String::as_str)
    }

    /// The VAT WooCommerce will add to a product with this DUELL rate (in the base country), so
    /// the net price to enter in a shop that enters prices without tax: the rate itself when a
    /// class carries it, else the standard class's rate (the product stays in its class; the
    /// VAT split is then the shop's to fix, the price is still DUELL's), 0 without taxes.
    pub fn applied_rate(&self, vat_percent: Decimal) -> Decimal {
        if !self.enabled {
            return Decimal::ZERO;
        }
        if self.class_for(vat_percent).is_some() {
            return vat_percent;
        }
        self.by_rate
            .iter()
            .find(|(_, c)| c.is_empty())
            .map(|(r, _)| *r)
            .unwrap_or(Decimal::ZERO)
    }

    /// Whether the shop calculates taxes at all.
    pub fn enabled(&self) -> bool {
        self.enabled
    }
}

/// WooCommerce's `standard` is the class stored as `""`.
fn slug(class: &str) -> String {
    let c = class.trim();
    if c.eq_ignore_ascii_case("standard") {
        String::new()
    } else {
        c.to_owned()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rust_decimal_macros::dec;

    fn rate(country: &str, state: &str, pct: Decimal, class: &str, priority: u64) -> TaxRate {
        TaxRate {
            country: country.into(),
            state: state.into(),
            rate: Some(pct),
            class: class.into(),
            priority,
            ..TaxRate::default()
        }
    }

    fn norway() -> Vec<TaxRate> {
        vec![
            rate("NO", "", dec!(25.0000), "standard", 1),
            rate("NO", "", dec!(15.0000), "food", 1),
            rate("NO", "", dec!(12.0000), "reduced-rate", 1),
            rate("NO", "", dec!(0.0000), "zero-rate", 1),
            rate("SE", "", dec!(25.0000), "food", 1),
        ]
    }

    #[test]
    fn each_rate_gets_the_class_that_carries_it_in_the_base_country() {
        let t = TaxClasses::new(true, &norway(), "NO", &BTreeMap::new());
        assert_eq!(t.class_for(dec!(25)), Some(""));
        assert_eq!(t.class_for(dec!(25.00)), Some(""));
        assert_eq!(t.class_for(dec!(15)), Some("food"));
        assert_eq!(t.class_for(dec!(12)), Some("reduced-rate"));
        assert_eq!(t.class_for(dec!(0)), Some("zero-rate"));
        assert_eq!(t.class_for(dec!(6)), None, "no class carries 6 %");
    }

    #[test]
    fn the_standard_class_wins_a_rate_two_classes_carry() {
        let mut rates = norway();
        rates.insert(0, rate("NO", "", dec!(25), "luxury", 1));
        let t = TaxClasses::new(true, &rates, "NO", &BTreeMap::new());
        assert_eq!(t.class_for(dec!(25)), Some(""));
    }

    #[test]
    fn other_countries_rows_do_not_count_and_every_country_rows_do() {
        let rates = vec![
            rate("SE", "", dec!(12), "food", 1),
            rate("", "", dec!(15), "food", 1),
            rate("", "", dec!(25), "standard", 1),
        ];
        let t = TaxClasses::new(true, &rates, "NO", &BTreeMap::new());
        assert_eq!(t.class_for(dec!(15)), Some("food"));
        assert_eq!(t.class_for(dec!(12)), None);
    }

    #[test]
    fn the_setting_wins_over_the_tables() {
        let overrides = BTreeMap::from([("15".to_owned(), "reduced-rate".to_owned())]);
        let t = TaxClasses::new(true, &norway(), "NO", &overrides);
        assert_eq!(t.class_for(dec!(15.0)), Some("reduced-rate"));
    }

    #[test]
    fn the_net_price_is_taken_at_the_rate_woocommerce_will_add() {
        let t = TaxClasses::new(true, &norway(), "NO", &BTreeMap::new());
        assert_eq!(t.applied_rate(dec!(15)), dec!(15));
        assert_eq!(
            t.applied_rate(dec!(6)),
            dec!(25),
            "no class: the standard one's"
        );
        let bare = TaxClasses::new(true, &[], "NO", &BTreeMap::new());
        assert_eq!(
            bare.applied_rate(dec!(25)),
            dec!(0),
            "no rates: nothing is added"
        );
        assert_eq!(TaxClasses::NONE.applied_rate(dec!(25)), dec!(0));
    }

    #[test]
    fn a_shop_without_taxes_gets_no_class() {
        let t = TaxClasses::new(false, &norway(), "NO", &BTreeMap::new());
        assert_eq!(t.class_for(dec!(15)), None);
        assert_eq!(TaxClasses::default().class_for(dec!(25)), None);
    }
}
