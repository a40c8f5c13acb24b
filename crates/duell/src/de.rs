//! Tolerant deserialisation of DUELL's loosely typed JSON: ids as numbers or strings, booleans as
//! `true`/`1`/`"true"`/`"1"`, money as numbers, numeric strings, `null` or `""`. Every helper goes
//! through `serde_json::Value` so that a number keeps its exact decimal text (the workspace
//! enables serde_json's `arbitrary_precision`), and money never passes through f64.

use std::str::FromStr;

use rust_decimal::Decimal;
use serde::{Deserialize, Deserializer};
use serde_json::Value;
use time::PrimitiveDateTime;

/// Parses a decimal from DUELL text: `"199.00"`, `"199,5"`, `"1e3"`, `" 12 "`.
pub(crate) fn parse_decimal(text: &str) -> Option<Decimal> {
    let t = text.trim();
    if t.is_empty() {
        return None;
    }
    let owned;
    // A lone comma is a Norwegian decimal separator; with a dot present it is a thousands mark.
    let t = if t.contains(',') {
        owned = if t.contains('.') {
            t.replace(',', "")
        } else {
            t.replace(',', ".")
        };
        owned.as_str()
    } else {
        t
    };
    Decimal::from_str(t)
        .or_else(|_| Decimal::from_scientific(t))
        .ok()
        .map(|d| d.normalize())
}

pub(crate) fn decimal_from_value(v: &Value) -> Result<Option<Decimal>, String> {
    match v {
        Value::Null => Ok(None),
        Value::Number(n) => parse_decimal(&n.to_string())
            .map(Some)
            .ok_or_else(|| "number out of decimal range".to_string()),
        Value::String(s) if s.trim().is_empty() => Ok(None),
        Value::String(s) => parse_decimal(s)
            .map(Some)
            .ok_or_else(|| "expected a decimal string".to_string()),
        Value::Bool(false) => Ok(None),
        other => Err(format!("expected a number, got {}", kind(other))),
    }
}

pub(crate) fn bool_from_value(v: &Value) -> Option<bool> {
    match v {
        Value::Bool(b) => Some(*b),
        Value::Number(n) => Some(n.to_string().trim_start_matches('-') != "0"),
        Value::String(s) => match s.trim().to_ascii_lowercase().as_str() {
            "1" | "true" | "yes" | "y" | "on" => Some(true),
            "0" | "false" | "no" | "n" | "off" | "" => Some(false),
            _ => None,
        },
        Value::Null => None,
        _ => None,
    }
}

pub(crate) fn u64_from_value(v: &Value) -> Result<Option<u64>, String> {
    match v {
        Value::Null => Ok(None),
        Value::Number(n) => {
            if let Some(u) = n.as_u64() {
                return Ok(Some(u));
            }
            // "12.0" or a huge/negative number: accept only whole non-negative values.
            match parse_decimal(&n.to_string()) {
                Some(d) if d.fract().is_zero() && d >= Decimal::ZERO => {
                    u64::try_from(d).map(Some).map_err(|e| e.to_string())
                }
                _ => Err(format!("expected an id, got {n}")),
            }
        }
        Value::String(s) if s.trim().is_empty() => Ok(None),
        Value::String(s) => s
            .trim()
            .parse::<u64>()
            .map(Some)
            .map_err(|_| "expected a numeric id string".to_string()),
        other => Err(format!("expected an id, got {}", kind(other))),
    }
}

pub(crate) fn string_from_value(v: &Value) -> Option<String> {
    match v {
        Value::Null => None,
        Value::String(s) => Some(s.clone()),
        Value::Number(n) => Some(n.to_string()),
        Value::Bool(b) => Some(b.to_string()),
        other => Some(other.to_string()),
    }
}

/// Parses DUELL timestamps: `YYYY-MM-DD HH:MM:SS`, an ISO `T` form, optional fraction or zone
/// suffix (dropped: DUELL's timezone is unknown, the caller decides), or a bare date.
pub(crate) fn parse_datetime(text: &str) -> Option<PrimitiveDateTime> {
    use time::macros::format_description;
    let t = text.trim();
    if t.len() < 10 || t.starts_with("0000") {
        return None;
    }
    let date = time::Date::parse(t.get(..10)?, format_description!("[year]-[month]-[day]")).ok()?;
    let rest = t.get(10..)?;
    if rest.is_empty() {
        return Some(date.midnight());
    }
    let rest = rest.strip_prefix([' ', 'T'])?;
    let hms = rest.get(..8)?;
    let time = time::Time::parse(hms, format_description!("[hour]:[minute]:[second]"))
        .or_else(|_| {
            time::Time::parse(
                rest.get(..5).unwrap_or(""),
                format_description!("[hour]:[minute]"),
            )
        })
        .ok()?;
    Some(PrimitiveDateTime::new(date, time))
}

fn kind(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

pub(crate) fn decimal<'de, D: Deserializer<'de>>(d: D) -> Result<Decimal, D::Error> {
    let v = Value::deserialize(d)?;
    decimal_from_value(&v)
        .map(|o| o.unwrap_or_default())
        .map_err(serde::de::Error::custom)
}

pub(crate) fn opt_decimal<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Decimal>, D::Error> {
    let v = Value::deserialize(d)?;
    decimal_from_value(&v).map_err(serde::de::Error::custom)
}

pub(crate) fn boolish<'de, D: Deserializer<'de>>(d: D) -> Result<bool, D::Error> {
    let v = Value::deserialize(d)?;
    Ok(bool_from_value(&v).unwrap_or(false))
}

pub(crate) fn opt_boolish<'de, D: Deserializer<'de>>(d: D) -> Result<Option<bool>, D::Error> {
    let v = Value::deserialize(d)?;
    Ok(bool_from_value(&v))
}

pub(crate) fn opt_u64<'de, D: Deserializer<'de>>(d: D) -> Result<Option<u64>, D::Error> {
    let v = Value::deserialize(d)?;
    u64_from_value(&v).map_err(serde::de::Error::custom)
}

/// An id where `0`, `null` and `""` mean "none" (DUELL's `parent_variant: 0`).
pub(crate) fn opt_nonzero_u64<'de, D: Deserializer<'de>>(d: D) -> Result<Option<u64>, D::Error> {
    let v = Value::deserialize(d)?;
    u64_from_value(&v)
        .map(|o| o.filter(|n| *n != 0))
        .map_err(serde::de::Error::custom)
}

pub(crate) fn string<'de, D: Deserializer<'de>>(d: D) -> Result<String, D::Error> {
    let v = Value::deserialize(d)?;
    Ok(string_from_value(&v).unwrap_or_default())
}

/// A string where `null` and `""` mean "none".
pub(crate) fn opt_string<'de, D: Deserializer<'de>>(d: D) -> Result<Option<String>, D::Error> {
    let v = Value::deserialize(d)?;
    Ok(string_from_value(&v).filter(|s| !s.trim().is_empty()))
}

pub(crate) fn opt_datetime<'de, D: Deserializer<'de>>(
    d: D,
) -> Result<Option<PrimitiveDateTime>, D::Error> {
    let v = Value::deserialize(d)?;
    Ok(match v {
        Value::String(s) => parse_datetime(&s),
        _ => None,
    })
}

/// A list that may come as an array, as an object keyed by anything (PHP associative array),
/// or as null / "" / missing.
pub(crate) fn list<'de, D, T>(d: D) -> Result<Vec<T>, D::Error>
where
    D: Deserializer<'de>,
    T: serde::de::DeserializeOwned,
{
    let v = Value::deserialize(d)?;
    let items: Vec<Value> = match v {
        Value::Array(a) => a,
        Value::Object(m) => m.into_iter().map(|(_, v)| v).collect(),
        _ => Vec::new(),
    };
    items
        .into_iter()
        .map(|item| serde_json::from_value(item).map_err(serde::de::Error::custom))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_decimals_in_every_shape_duell_sends() {
        let cases = [
            (serde_json::json!(199), Some("199")),
            (serde_json::json!("199,50"), Some("199.5")),
            (serde_json::json!("1,234.50"), Some("1234.5")),
            (serde_json::json!(""), None),
            (serde_json::json!(null), None),
            (serde_json::json!(-2.5), Some("-2.5")),
            (serde_json::json!("1e2"), Some("100")),
        ];
        for (v, want) in cases {
            let got = decimal_from_value(&v).unwrap().map(|d| d.to_string());
            assert_eq!(got.as_deref(), want, "{v}");
        }
        assert!(decimal_from_value(&serde_json::json!([1])).is_err());
    }

    #[test]
    fn reads_bool_like_values() {
        for t in [
            serde_json::json!(true),
            serde_json::json!(1),
            serde_json::json!("1"),
            serde_json::json!("true"),
        ] {
            assert_eq!(bool_from_value(&t), Some(true), "{t}");
        }
        for f in [
            serde_json::json!(false),
            serde_json::json!(0),
            serde_json::json!("0"),
            serde_json::json!("false"),
        ] {
            assert_eq!(bool_from_value(&f), Some(false), "{f}");
        }
    }

    #[test]
    fn parses_duell_timestamps() {
        let dt = parse_datetime("2025-03-01 12:30:05").unwrap();
        assert_eq!(dt.to_string(), "2025-03-01 12:30:05.0");
        assert!(parse_datetime("2025-03-01T12:30:05+01:00").is_some());
        assert!(parse_datetime("2025-03-01").is_some());
        assert!(parse_datetime("0000-00-00 00:00:00").is_none());
        assert!(parse_datetime("garbage").is_none());
    }
}

#[cfg(test)]
mod properties {
    use super::*;
    use proptest::prelude::*;

    fn json() -> impl Strategy<Value = Value> {
        let leaf = prop_oneof![
            Just(Value::Null),
            any::<bool>().prop_map(Value::Bool),
            any::<i64>().prop_map(|n| serde_json::json!(n)),
            "[0-9.,eE+-]{0,12}".prop_map(Value::String),
            ".{0,12}".prop_map(Value::String),
        ];
        leaf.prop_recursive(3, 16, 4, |inner| {
            prop_oneof![
                prop::collection::vec(inner.clone(), 0..4).prop_map(Value::Array),
                prop::collection::btree_map("[a-z_]{1,12}", inner, 0..4)
                    .prop_map(|m| Value::Object(m.into_iter().collect())),
            ]
        })
    }

    proptest! {
        #[test]
        fn loose_values_never_panic(v in json(), text in ".{0,24}") {
            let _ = decimal_from_value(&v);
            let _ = bool_from_value(&v);
            let _ = u64_from_value(&v);
            let _ = parse_datetime(&text);
            let _ = parse_decimal(&text);
            let m = crate::model::ValidationMessage(v.clone());
            let _ = (m.is_empty(), m.entries(), m.to_string());
            let _ = serde_json::from_value::<crate::model::Product>(v);
        }

        #[test]
        fn decimal_text_round_trips(n in any::<i64>(), scale in 0u32..6) {
            let d = Decimal::new(n, scale);
            prop_assert_eq!(parse_decimal(&d.to_string()), Some(d.normalize()));
        }
    }
}
