//! The store's tax settings, read over REST, and what WooCommerce 7.9 charges under them for an
//! order created over REST (`WC_Abstract_Order::calculate_totals`). The contract suite asserts
//! these instead of amounts that hold only in a store without taxes, so it passes unchanged
//! against a store with any tax setup — the simulator's default (no taxes), its Norwegian preset,
//! or a real store.
//!
//! Written from WooCommerce's code, independently of the simulator's implementation.

use std::str::FromStr;

use rust_decimal::{Decimal, RoundingStrategy};
use serde_json::Value;

use super::Target;

/// One rate of `GET /taxes`.
#[derive(Clone, Debug, PartialEq)]
pub struct Rate {
    pub id: u64,
    pub country: String,
    pub rate: Decimal,
    pub priority: i64,
    pub compound: bool,
    pub shipping: bool,
    pub order: i64,
    /// `""` for the standard class.
    pub class: String,
}

/// The settings that decide an order's taxes.
#[derive(Clone, Debug, PartialEq)]
pub struct StoreTaxes {
    pub calc_taxes: bool,
    pub prices_include_tax: bool,
    pub round_at_subtotal: bool,
    /// `inherit`, `""` or a class slug.
    pub shipping_tax_class: String,
    pub base_country: String,
    pub decimals: u32,
    /// Additional class slugs in the store's order.
    pub classes: Vec<String>,
    pub rates: Vec<Rate>,
}

/// A line of an order to create: a product's price (as entered) × quantity, its tax class.
#[derive(Clone, Debug)]
pub struct Line {
    pub price: Decimal,
    pub quantity: i64,
    pub class: String,
}

/// What the store charges for an order.
#[derive(Clone, Debug, PartialEq)]
pub struct Expected {
    /// Per line: `total` and `total_tax` as the REST API shows them.
    pub lines: Vec<(Decimal, Decimal)>,
    pub shipping_tax: Decimal,
    pub cart_tax: Decimal,
    pub total_tax: Decimal,
    pub total: Decimal,
}

async fn setting(t: &Target, group: &str, id: &str) -> Option<String> {
    let r = t
        .raw(
            "GET",
            &format!("/wp-json/wc/v3/settings/{group}/{id}"),
            None,
        )
        .await;
    // A store without taxes may not register the tax group at all.
    if r.status == 404 {
        return None;
    }
    assert_eq!(r.status, 200, "settings/{group}/{id}: {}", r.text);
    r.body
        .get("value")
        .and_then(Value::as_str)
        .map(str::to_owned)
}

fn decimal(v: &Value) -> Decimal {
    match v {
        Value::String(s) => Decimal::from_str(s.trim()).expect("a decimal string"),
        Value::Number(n) => Decimal::from_str(&n.to_string()).expect("a decimal number"),
        other => panic!("not a decimal: {other}"),
    }
}

impl StoreTaxes {
    /// Reads the settings and every rate from the store.
    pub async fn read(t: &Target) -> StoreTaxes {
        let yes = |v: Option<String>| v.as_deref() == Some("yes");
        let calc_taxes = yes(setting(t, "general", "woocommerce_calc_taxes").await);
        let prices_include_tax = yes(setting(t, "tax", "woocommerce_prices_include_tax").await);
        let round_at_subtotal = yes(setting(t, "tax", "woocommerce_tax_round_at_subtotal").await);
        let shipping_tax_class = setting(t, "tax", "woocommerce_shipping_tax_class")
            .await
            .unwrap_or_else(|| "inherit".into());
        let base_country = setting(t, "general", "woocommerce_default_country")
            .await
            .unwrap_or_default()
            .split(':')
            .next()
            .unwrap_or_default()
            .to_uppercase();
        let decimals = setting(t, "general", "woocommerce_price_num_decimals")
            .await
            .and_then(|v| v.trim().parse().ok())
            .unwrap_or(2);
        let classes_resp = t.raw("GET", "/wp-json/wc/v3/taxes/classes", None).await;
        assert_eq!(
            classes_resp.status, 200,
            "taxes/classes: {}",
            classes_resp.text
        );
        let classes = classes_resp
            .body
            .as_array()
            .expect("a list of classes")
            .iter()
            .filter_map(|c| c.get("slug").and_then(Value::as_str))
            .filter(|s| *s != "standard")
            .map(str::to_owned)
            .collect();
        let mut rates = Vec::new();
        for page in 1.. {
            let r = t
                .raw(
                    "GET",
                    &format!("/wp-json/wc/v3/taxes?per_page=100&page={page}"),
                    None,
                )
                .await;
            assert_eq!(r.status, 200, "taxes: {}", r.text);
            let items = r.body.as_array().expect("a list of rates").clone();
            for v in &items {
                let class = v["class"].as_str().unwrap_or("standard");
                rates.push(Rate {
                    id: v["id"].as_u64().expect("rate id"),
                    country: v["country"].as_str().unwrap_or("").to_uppercase(),
                    rate: decimal(&v["rate"]),
                    priority: v["priority"].as_i64().unwrap_or(1),
                    compound: v["compound"].as_bool().unwrap_or(false),
                    shipping: v["shipping"].as_bool().unwrap_or(true),
                    order: v["order"].as_i64().unwrap_or(0),
                    class: if class == "standard" {
                        String::new()
                    } else {
                        class.to_owned()
                    },
                });
            }
            if items.len() < 100 {
                break;
            }
        }
        StoreTaxes {
            calc_taxes,
            prices_include_tax,
            round_at_subtotal,
            shipping_tax_class,
            base_country,
            decimals,
            classes,
            rates,
        }
    }

    /// The rates of `class` in `country`: one per priority, country-specific before
    /// "every country" (`WC_Tax::find_rates`).
    fn rates(&self, class: &str, country: &str) -> Vec<&Rate> {
        let mut found: Vec<&Rate> = self
            .rates
            .iter()
            .filter(|r| r.class == class && (r.country.is_empty() || r.country == country))
            .collect();
        found.sort_by_key(|r| (r.priority, r.country.is_empty(), r.id));
        let mut priorities = Vec::new();
        found.retain(|r| {
            let first = !priorities.contains(&r.priority);
            priorities.push(r.priority);
            first
        });
        found
    }

    fn six(d: Decimal) -> Decimal {
        d.round_dp_with_strategy(6, RoundingStrategy::MidpointAwayFromZero)
    }

    fn added(price: Decimal, rates: &[&Rate]) -> Vec<Decimal> {
        let mut taxes: Vec<Decimal> = Vec::new();
        for r in rates.iter().filter(|r| !r.compound) {
            taxes.push(price * r.rate / Decimal::ONE_HUNDRED);
        }
        for r in rates.iter().filter(|r| r.compound) {
            let before: Decimal = taxes.iter().sum();
            taxes.push((price + before) * r.rate / Decimal::ONE_HUNDRED);
        }
        taxes.into_iter().map(Self::six).collect()
    }

    fn contained(price: Decimal, rates: &[&Rate]) -> Decimal {
        let mut rest = price;
        let mut total = Decimal::ZERO;
        for r in rates.iter().rev().filter(|r| r.compound) {
            let t = rest - rest / (Decimal::ONE + r.rate / Decimal::ONE_HUNDRED);
            total += Self::six(t);
            rest -= t;
        }
        let regular: Vec<&&Rate> = rates.iter().filter(|r| !r.compound).collect();
        let sum: Decimal = regular.iter().map(|r| r.rate).sum();
        for r in regular {
            let share =
                (r.rate / Decimal::ONE_HUNDRED) / (Decimal::ONE + sum / Decimal::ONE_HUNDRED);
            total += Self::six(share * rest);
        }
        total
    }

    fn money(&self, d: Decimal) -> Decimal {
        d.round_dp_with_strategy(self.decimals, RoundingStrategy::MidpointAwayFromZero)
    }

    /// `wc_round_tax_total`: half down when prices include tax, half up otherwise.
    fn round_tax(&self, d: Decimal) -> Decimal {
        let mode = if self.prices_include_tax {
            RoundingStrategy::MidpointTowardZero
        } else {
            RoundingStrategy::MidpointAwayFromZero
        };
        d.round_dp_with_strategy(self.decimals, mode)
    }

    fn line_tax(&self, taxes: &[Decimal]) -> Decimal {
        if self.round_at_subtotal {
            taxes.iter().sum()
        } else {
            taxes.iter().map(|t| self.round_tax(*t)).sum()
        }
    }

    /// What the store charges for an order created over REST with these lines and shipping
    /// costs, for a customer without an address (taxed at the shop's base).
    pub fn rest_order(&self, lines: &[Line], shipping: &[Decimal]) -> Expected {
        let country = self.base_country.clone();
        let mut out_lines = Vec::new();
        let (mut cart_total, mut cart_tax) = (Decimal::ZERO, Decimal::ZERO);
        for l in lines {
            let gross = l.price * Decimal::from(l.quantity);
            // wc_get_price_excluding_tax: the base rates' tax out of a price entered with tax.
            let net = if self.calc_taxes && self.prices_include_tax {
                gross - Self::contained(gross, &self.rates(&l.class, &self.base_country))
            } else {
                gross
            };
            let taxes = if self.calc_taxes {
                Self::added(net, &self.rates(&l.class, &country))
            } else {
                Vec::new()
            };
            cart_total += if self.round_at_subtotal {
                net
            } else {
                self.money(net)
            };
            cart_tax += self.line_tax(&taxes);
            out_lines.push((self.money(net), self.money(self.line_tax(&taxes))));
        }
        let class = if self.shipping_tax_class == "inherit" {
            std::iter::once(String::new())
                .chain(self.classes.iter().cloned())
                .find(|c| lines.iter().any(|l| l.class == *c))
        } else {
            Some(self.shipping_tax_class.clone())
        };
        let mut shipping_tax = Decimal::ZERO;
        let mut shipping_total = Decimal::ZERO;
        for cost in shipping {
            shipping_total += self.money(*cost);
            if let (true, Some(class)) = (self.calc_taxes, &class) {
                let rates: Vec<&Rate> = self
                    .rates(class, &country)
                    .into_iter()
                    .filter(|r| r.shipping)
                    .collect();
                shipping_tax += self.line_tax(&Self::added(*cost, &rates));
            }
        }
        Expected {
            lines: out_lines,
            shipping_tax: self.money(shipping_tax),
            cart_tax: self.money(cart_tax),
            total_tax: self.money(cart_tax + shipping_tax),
            total: self.money(cart_total + shipping_total + cart_tax + shipping_tax),
        }
    }
}
