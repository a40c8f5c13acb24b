//! DUELL offers → WooCommerce sale price and period.

use rust_decimal::Decimal;
use serde::{Deserialize, Serialize};

use crate::{woo_price, PriceRules, ProductData, WooState};

/// Offers shorter than this are not synced: WooCommerce's scheduled-sales job runs once a day,
/// so a few-hour offer would show at the wrong time or not at all.
pub const MIN_CAMPAIGN_SECS: i64 = 24 * 3600;

/// The sale WooCommerce should show.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum SaleWant {
    NoSale,
    Sale {
        price: Decimal,
        /// Unix seconds, UTC.
        from: Option<i64>,
        to: Option<i64>,
    },
}

/// Parses DUELL's date-times ("2026-12-01 00:00:00", "2026-12-01T00:00:00", "2026-12-01",
/// RFC 3339); they are read as UTC. Empty or unparseable → `None`.
pub fn parse_duell_time(s: &str) -> Option<i64> {
    use time::format_description::well_known::Rfc3339;
    let s = s.trim();
    if s.is_empty() {
        return None;
    }
    if let Ok(t) = time::OffsetDateTime::parse(s, &Rfc3339) {
        return Some(t.unix_timestamp());
    }
    let dt = time::macros::format_description!("[year]-[month]-[day] [hour]:[minute]:[second]");
    let dt_t = time::macros::format_description!("[year]-[month]-[day]T[hour]:[minute]:[second]");
    let d = time::macros::format_description!("[year]-[month]-[day]");
    if let Ok(t) = time::PrimitiveDateTime::parse(s, &dt) {
        return Some(t.assume_utc().unix_timestamp());
    }
    if let Ok(t) = time::PrimitiveDateTime::parse(s, &dt_t) {
        return Some(t.assume_utc().unix_timestamp());
    }
    if let Ok(date) = time::Date::parse(s, &d) {
        return Some(date.midnight().assume_utc().unix_timestamp());
    }
    None
}

/// The sale for `product` given its WooCommerce regular price, at `now`.
pub fn sale_want(
    product: &ProductData,
    regular: Decimal,
    prices: PriceRules,
    now: i64,
) -> SaleWant {
    let Some(special) = product.special_price else {
        return SaleWant::NoSale;
    };
    let price = woo_price(special, product.vat_rate_percent, prices);
    // WooCommerce discards a sale price that is not below the regular price.
    if price >= regular || price <= Decimal::ZERO {
        return SaleWant::NoSale;
    }
    let (from, to) = (product.special_from, product.special_to);
    if let Some(to) = to {
        if to <= now {
            return SaleWant::NoSale;
        }
        if let Some(from) = from {
            if to - from < MIN_CAMPAIGN_SECS {
                return SaleWant::NoSale;
            }
        }
    }
    SaleWant::Sale { price, from, to }
}

/// Whether WooCommerce already shows the wanted sale. WooCommerce's daily sale job clears
/// `date_on_sale_from` when a sale starts and clears the whole sale when it ends; both count as
/// converged, or the engine would re-push the campaign forever.
pub(crate) fn converged(want: &SaleWant, woo: &WooState, now: i64) -> bool {
    let woo_ended = woo.sale_to.map(|t| t <= now).unwrap_or(false);
    match want {
        SaleWant::NoSale => woo.sale_price.is_none() || woo_ended,
        SaleWant::Sale { price, from, to } => {
            if woo.sale_price != Some(*price) {
                return false;
            }
            let from_ok = woo.sale_from == *from
                || (woo.sale_from.is_none() && from.map(|f| f <= now).unwrap_or(true));
            from_ok && woo.sale_to == *to
        }
    }
}
