//! Tolerant deserializers for WooCommerce's loosely typed JSON.
//!
//! A field of an unexpected type decodes to its empty value instead of failing the whole
//! object: a sync engine must keep working when a plugin returns `""` where an int belongs.

use rust_decimal::Decimal;
use serde::{Deserialize, Deserializer};
use serde_json::Value;
use time::PrimitiveDateTime;

/// A string; numbers are stringified, `null` and other types become `""`.
pub fn string<'de, D: Deserializer<'de>>(d: D) -> Result<String, D::Error> {
    Ok(match Value::deserialize(d)? {
        Value::String(s) => s,
        Value::Number(n) => n.to_string(),
        Value::Bool(b) => b.to_string(),
        _ => String::new(),
    })
}

/// An optional string; `null` stays `None`.
pub fn opt_string<'de, D: Deserializer<'de>>(d: D) -> Result<Option<String>, D::Error> {
    Ok(match Value::deserialize(d)? {
        Value::String(s) => Some(s),
        Value::Number(n) => Some(n.to_string()),
        _ => None,
    })
}

/// Parses a money or number value from a JSON string or number.
pub fn decimal_from_value(v: &Value) -> Option<Decimal> {
    match v {
        Value::String(s) => {
            let t = s.trim();
            if t.is_empty() {
                None
            } else {
                t.parse::<Decimal>()
                    .ok()
                    .or_else(|| Decimal::from_scientific(t).ok())
            }
        }
        Value::Number(n) => {
            let t = n.to_string();
            t.parse::<Decimal>()
                .ok()
                .or_else(|| Decimal::from_scientific(&t).ok())
        }
        _ => None,
    }
}

/// An optional decimal: `""`, `null` and garbage are `None`.
pub fn opt_decimal<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Decimal>, D::Error> {
    Ok(decimal_from_value(&Value::deserialize(d)?))
}

/// A decimal defaulting to zero.
pub fn decimal<'de, D: Deserializer<'de>>(d: D) -> Result<Decimal, D::Error> {
    Ok(decimal_from_value(&Value::deserialize(d)?).unwrap_or_default())
}

/// An unsigned id; strings of digits are accepted, anything else is 0.
pub fn u64_lenient<'de, D: Deserializer<'de>>(d: D) -> Result<u64, D::Error> {
    Ok(crate::error::json_u64(&Value::deserialize(d)?).unwrap_or_default())
}

/// An optional integer (stock quantities may be null, strings or floats like `5.0`).
pub fn opt_i64<'de, D: Deserializer<'de>>(d: D) -> Result<Option<i64>, D::Error> {
    Ok(match Value::deserialize(d)? {
        Value::Number(n) => n
            .as_i64()
            .or_else(|| n.as_f64().filter(|f| f.fract() == 0.0).map(|f| f as i64)),
        Value::String(s) => s.trim().parse().ok(),
        _ => None,
    })
}

/// An integer defaulting to 0.
pub fn i64_lenient<'de, D: Deserializer<'de>>(d: D) -> Result<i64, D::Error> {
    Ok(opt_i64(d)?.unwrap_or_default())
}

/// A boolean; `"yes"`/`"true"`/`"1"`/1 are true, anything else false.
pub fn bool_lenient<'de, D: Deserializer<'de>>(d: D) -> Result<bool, D::Error> {
    Ok(match Value::deserialize(d)? {
        Value::Bool(b) => b,
        Value::Number(n) => n.as_i64() == Some(1),
        Value::String(s) => matches!(s.as_str(), "yes" | "true" | "1"),
        _ => false,
    })
}

const FORMAT: &[time::format_description::FormatItem<'static>] =
    time::macros::format_description!("[year]-[month]-[day]T[hour]:[minute]:[second]");

/// Parses WooCommerce's offset-less `YYYY-MM-DDTHH:MM:SS`.
pub fn parse_datetime(s: &str) -> Option<PrimitiveDateTime> {
    let s = s.trim();
    let s = s.get(..19).unwrap_or(s);
    PrimitiveDateTime::parse(s, FORMAT).ok()
}

/// Formats as `YYYY-MM-DDTHH:MM:SS` (no offset).
pub fn format_datetime(dt: PrimitiveDateTime) -> String {
    dt.format(FORMAT).unwrap_or_default()
}

/// An optional offset-less date-time; `null`, `""` and garbage are `None`.
pub fn opt_datetime<'de, D: Deserializer<'de>>(
    d: D,
) -> Result<Option<PrimitiveDateTime>, D::Error> {
    Ok(match Value::deserialize(d)? {
        Value::String(s) => parse_datetime(&s),
        _ => None,
    })
}

/// A list that may come back as `null` or the wrong type.
pub fn vec_lenient<'de, D, T>(d: D) -> Result<Vec<T>, D::Error>
where
    D: Deserializer<'de>,
    T: serde::de::DeserializeOwned,
{
    Ok(match Value::deserialize(d)? {
        Value::Array(items) => items
            .into_iter()
            .filter_map(|v| serde_json::from_value(v).ok())
            .collect(),
        _ => Vec::new(),
    })
}
