//! Request parameters as DUELL's PHP backend reads them: bracket keys (`filter[x]`,
//! `filter[x][]`, `filter[x][0]`), booleans as `1`/`true`, numbers as text.

use std::collections::HashMap;
use std::str::FromStr;

use rust_decimal::Decimal;
use serde_json::Value;

/// Parsed query-string (or form) parameters.
#[derive(Debug, Default, Clone)]
pub(crate) struct Params {
    /// Plain keys (`start`, `length`, `department`, …); the last value wins, as in PHP.
    pub(crate) top: HashMap<String, String>,
    /// `filter[...]` keys; arrays collect every value.
    pub(crate) filter: HashMap<String, Vec<String>>,
}

impl Params {
    pub(crate) fn parse(raw: Option<&str>) -> Params {
        let mut p = Params::default();
        let Some(raw) = raw else { return p };
        for (k, v) in url::form_urlencoded::parse(raw.as_bytes()) {
            let (k, v) = (k.into_owned(), v.into_owned());
            if let Some(rest) = k.strip_prefix("filter[") {
                let name = rest.split(']').next().unwrap_or("").to_string();
                let entry = p.filter.entry(name).or_default();
                let is_array = rest.contains("][");
                if !is_array {
                    entry.clear();
                }
                entry.push(v);
            } else {
                p.top.insert(k, v);
            }
        }
        p
    }

    /// Adds parameters from a JSON object body (PUT merges query and body).
    pub(crate) fn merge_json(&mut self, body: &Value) {
        if let Value::Object(map) = body {
            for (k, v) in map {
                if let Some(s) = text(v) {
                    self.top.entry(k.clone()).or_insert(s);
                }
            }
        }
    }

    pub(crate) fn get(&self, key: &str) -> Option<&str> {
        self.top.get(key).map(String::as_str)
    }

    pub(crate) fn filter(&self, key: &str) -> Option<&str> {
        self.filter
            .get(key)
            .and_then(|v| v.last())
            .map(String::as_str)
            .filter(|s| !s.trim().is_empty())
    }

    pub(crate) fn filter_list(&self, key: &str) -> Vec<&str> {
        self.filter
            .get(key)
            .map(|v| {
                v.iter()
                    .flat_map(|s| s.split(','))
                    .map(str::trim)
                    .filter(|s| !s.is_empty())
                    .collect()
            })
            .unwrap_or_default()
    }

    /// `start` and `length` (or `limit` when allowed), clamped to the page cap.
    pub(crate) fn paging(
        &self,
        cap: usize,
        default_len: usize,
        limit_alias: bool,
    ) -> (usize, usize) {
        let start = self
            .get("start")
            .and_then(|s| s.trim().parse::<usize>().ok())
            .unwrap_or(0);
        let len = self
            .get("length")
            .or_else(|| if limit_alias { self.get("limit") } else { None })
            .and_then(|s| s.trim().parse::<usize>().ok())
            .unwrap_or(default_len);
        (start, len.min(cap))
    }
}

/// A JSON scalar as text (numbers keep their exact text).
pub(crate) fn text(v: &Value) -> Option<String> {
    match v {
        Value::String(s) => Some(s.clone()),
        Value::Number(n) => Some(n.to_string()),
        Value::Bool(b) => Some(if *b { "1".into() } else { "0".into() }),
        _ => None,
    }
}

/// A bool-like value: `true`, `1`, `"1"`, `"true"`.
pub(crate) fn truthy(s: &str) -> Option<bool> {
    match s.trim().to_ascii_lowercase().as_str() {
        "1" | "true" | "yes" | "on" => Some(true),
        "0" | "false" | "no" | "off" | "" => Some(false),
        _ => None,
    }
}

pub(crate) fn json_truthy(v: &Value) -> Option<bool> {
    match v {
        Value::Bool(b) => Some(*b),
        other => text(other).and_then(|s| truthy(&s)),
    }
}

/// A decimal from a JSON number or a numeric string (`","` as decimal separator accepted).
pub(crate) fn decimal(v: &Value) -> Option<Decimal> {
    let s = text(v)?;
    let s = s.trim().replace(',', ".");
    if s.is_empty() {
        return None;
    }
    Decimal::from_str(&s)
        .or_else(|_| Decimal::from_scientific(&s))
        .ok()
}

pub(crate) fn u64_of(v: &Value) -> Option<u64> {
    let d = decimal(v)?;
    if d.fract().is_zero() && d >= Decimal::ZERO {
        u64::try_from(d).ok()
    } else {
        None
    }
}

/// Digits only, for phone comparison.
pub(crate) fn digits(s: &str) -> String {
    s.chars().filter(char::is_ascii_digit).collect()
}

/// A list given as a JSON array or as an object keyed by anything: `(key, item)` pairs, the key
/// being the array index for arrays.
pub(crate) fn keyed_items(v: &Value) -> Vec<(String, &Value)> {
    match v {
        Value::Array(a) => a
            .iter()
            .enumerate()
            .map(|(i, x)| (i.to_string(), x))
            .collect(),
        Value::Object(m) => m.iter().map(|(k, x)| (k.clone(), x)).collect(),
        _ => Vec::new(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_php_bracket_keys_and_arrays() {
        let p = Params::parse(Some(
            "filter%5Bproduct_number%5D=A+1&filter[product_id][]=1&filter[product_id][]=2&start=5",
        ));
        assert_eq!(p.filter("product_number"), Some("A 1"));
        assert_eq!(p.filter_list("product_id"), vec!["1", "2"]);
        assert_eq!(p.paging(100, 20, false), (5, 20));
        let p = Params::parse(Some("length=500"));
        assert_eq!(p.paging(100, 20, false), (0, 100));
    }

    proptest::proptest! {
        #[test]
        fn garbage_queries_never_panic(q in ".{0,64}", cap in 0usize..200) {
            let p = Params::parse(Some(&q));
            let _ = p.paging(cap, 20, true);
            let _ = p.filter_list("product_id");
            let _ = p.filter("product_number").map(truthy);
        }
    }
}
