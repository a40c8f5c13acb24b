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
        /// Unix seconds (instants; DUELL's local times converted with the store's zone).
        from: Option<i64>,
        to: Option<i64>,
    },
}

/// Parses DUELL's date-times ("2026-12-01 00:00:00", "2026-12-01T00:00:00", "2026-12-01",
/// RFC 3339) to Unix seconds. DUELL sends local time without an offset: it is read in the
/// store's time zone `tz`, with its daylight-saving rules (a time that does not exist when the
/// clocks go forward is read as the same wall time after the jump; one that exists twice when
/// they go back as the first). An explicit offset (RFC 3339) is taken as it is. Empty or
/// unparseable → `None`.
pub fn parse_duell_time(s: &str, tz: &jiff::tz::TimeZone) -> Option<i64> {
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
    let local = time::PrimitiveDateTime::parse(s, &dt)
        .or_else(|_| time::PrimitiveDateTime::parse(s, &dt_t))
        .or_else(|_| time::Date::parse(s, &d).map(|date| date.midnight()))
        .ok()?;
    local_to_unix(local, tz)
}

fn local_to_unix(local: time::PrimitiveDateTime, tz: &jiff::tz::TimeZone) -> Option<i64> {
    let civil = jiff::civil::DateTime::new(
        i16::try_from(local.year()).ok()?,
        local.month() as i8,
        local.day() as i8,
        local.hour() as i8,
        local.minute() as i8,
        local.second() as i8,
        0,
    )
    .ok()?;
    let zoned = tz.to_ambiguous_zoned(civil).compatible().ok()?;
    Some(zoned.timestamp().as_second())
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

#[cfg(test)]
mod tests {
    use super::*;

    fn oslo() -> jiff::tz::TimeZone {
        jiff::tz::TimeZone::get("Europe/Oslo").unwrap()
    }

    fn utc(s: &str) -> i64 {
        time::OffsetDateTime::parse(s, &time::format_description::well_known::Rfc3339)
            .unwrap()
            .unix_timestamp()
    }

    #[test]
    fn duell_times_are_local_time_of_the_store() {
        // Winter: UTC+1. A sale ending at midnight in Norway ends at 23:00 UTC.
        assert_eq!(
            parse_duell_time("2026-01-15 00:00:00", &oslo()),
            Some(utc("2026-01-14T23:00:00Z"))
        );
        // Summer: UTC+2.
        assert_eq!(
            parse_duell_time("2026-07-01T00:00:00", &oslo()),
            Some(utc("2026-06-30T22:00:00Z"))
        );
        assert_eq!(
            parse_duell_time("2026-07-01", &oslo()),
            Some(utc("2026-06-30T22:00:00Z"))
        );
        // An explicit offset wins.
        assert_eq!(
            parse_duell_time("2026-07-01T00:00:00+00:00", &oslo()),
            Some(utc("2026-07-01T00:00:00Z"))
        );
        assert_eq!(
            parse_duell_time("2026-07-01 00:00:00", &jiff::tz::TimeZone::UTC),
            Some(utc("2026-07-01T00:00:00Z"))
        );
        assert_eq!(parse_duell_time("", &oslo()), None);
        assert_eq!(parse_duell_time("soon", &oslo()), None);
    }

    #[test]
    fn both_daylight_saving_changes_are_crossed_correctly() {
        // 29 March 2026: clocks go from 02:00 to 03:00 in Oslo.
        assert_eq!(
            parse_duell_time("2026-03-29 01:59:59", &oslo()),
            Some(utc("2026-03-29T00:59:59Z"))
        );
        assert_eq!(
            parse_duell_time("2026-03-29 03:00:00", &oslo()),
            Some(utc("2026-03-29T01:00:00Z"))
        );
        // 02:30 does not exist that night: read as 03:30 summer time.
        assert_eq!(
            parse_duell_time("2026-03-29 02:30:00", &oslo()),
            Some(utc("2026-03-29T01:30:00Z"))
        );
        // 25 October 2026: clocks go from 03:00 back to 02:00.
        assert_eq!(
            parse_duell_time("2026-10-25 01:00:00", &oslo()),
            Some(utc("2026-10-24T23:00:00Z"))
        );
        // 02:30 happens twice: the first (summer time).
        assert_eq!(
            parse_duell_time("2026-10-25 02:30:00", &oslo()),
            Some(utc("2026-10-25T00:30:00Z"))
        );
        assert_eq!(
            parse_duell_time("2026-10-25 04:00:00", &oslo()),
            Some(utc("2026-10-25T03:00:00Z"))
        );
        // A campaign over the autumn change lasts one hour longer in real time.
        let from = parse_duell_time("2026-10-24 00:00:00", &oslo()).unwrap();
        let to = parse_duell_time("2026-10-26 00:00:00", &oslo()).unwrap();
        assert_eq!(to - from, 49 * 3600);
    }
}
