//! A store's record in the registry bucket, and the field-by-field difference of two records.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

/// Who changed a secret last (secrets are write-only: this is all anyone is shown).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Stamp {
    pub at_ms: i64,
    pub by: String,
}

/// One store, as the registry keeps it (JSON under the key `<store id>`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StoreRecord {
    pub id: String,
    /// The settings as TOML, with every secret sealed (`{ sealed = "v1:…" }`) or a reference
    /// (`{ env = … }`, `{ file = … }`) that the reading service resolves. Valid by the rules of
    /// `duellsync-settings` when it was stored.
    pub settings: String,
    /// When and by whom each secret was last set.
    #[serde(default)]
    pub secrets: BTreeMap<String, Stamp>,
    pub changed_at_ms: i64,
    pub changed_by: String,
}

impl StoreRecord {
    pub fn table(&self) -> toml::Table {
        self.settings.parse::<toml::Table>().unwrap_or_default()
    }

    /// The shard that serves the store (`shard` of its settings; empty = any).
    pub fn shard(&self) -> String {
        self.table()
            .get("shard")
            .and_then(|v| v.as_str())
            .unwrap_or_default()
            .to_owned()
    }
}

/// One changed setting. Secret values never appear: a sealed secret reads `(sealed)`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FieldChange {
    pub key: String,
    pub before: Option<String>,
    pub after: Option<String>,
}

/// What a secret's setting shows: its reference, or that it is sealed (never a value).
pub fn secret_display(v: &toml::Value) -> String {
    match v {
        toml::Value::Table(t) if t.contains_key("sealed") => "(sealed)".into(),
        toml::Value::Table(_) => v.to_string(),
        toml::Value::String(_) => "(plain text)".into(),
        other => other.to_string(),
    }
}

/// Flattens a settings table to `dotted.key → shown value`.
pub fn flatten(table: &toml::Table) -> BTreeMap<String, (String, String)> {
    fn walk(prefix: &str, t: &toml::Table, out: &mut BTreeMap<String, (String, String)>) {
        for (k, v) in t {
            let key = if prefix.is_empty() {
                k.clone()
            } else {
                format!("{prefix}.{k}")
            };
            let secret = duellsync_settings::SECRET_KEYS.contains(&key.as_str());
            match v {
                toml::Value::Table(inner) if !secret && key != "status_map" => {
                    walk(&key, inner, out)
                }
                _ if secret => {
                    // The raw form tells a changed sealed value from an unchanged one.
                    out.insert(key, (secret_display(v), v.to_string()));
                }
                _ => {
                    out.insert(key, (v.to_string(), v.to_string()));
                }
            }
        }
    }
    let mut out = BTreeMap::new();
    walk("", table, &mut out);
    out
}

/// The settings that differ between two tables (either may be empty: create, delete).
pub fn diff(before: &toml::Table, after: &toml::Table) -> Vec<FieldChange> {
    let a = flatten(before);
    let b = flatten(after);
    let mut keys: Vec<&String> = a.keys().chain(b.keys()).collect();
    keys.sort();
    keys.dedup();
    keys.into_iter()
        .filter_map(|k| {
            let x = a.get(k);
            let y = b.get(k);
            if x.map(|v| &v.1) == y.map(|v| &v.1) {
                return None;
            }
            let mut before = x.map(|v| v.0.clone());
            let mut after = y.map(|v| v.0.clone());
            if before == after {
                // A sealed secret replaced by another sealed value.
                before = before.map(|_| "(sealed)".into());
                after = after.map(|_| "(sealed, changed)".into());
            }
            Some(FieldChange {
                key: k.clone(),
                before,
                after,
            })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t(s: &str) -> toml::Table {
        s.parse().unwrap()
    }

    #[test]
    fn the_diff_names_each_changed_key_and_never_a_secret() {
        let a = t(r#"sync_prices = true
[woo]
url = "https://a"
consumer_secret = { sealed = "v1:api:AAA" }
"#);
        let b = t(r#"sync_prices = false
[woo]
url = "https://a"
consumer_secret = { sealed = "v1:api:BBB" }
consumer_key = { env = "CK" }
"#);
        let d = diff(&a, &b);
        let keys: Vec<&str> = d.iter().map(|c| c.key.as_str()).collect();
        assert_eq!(
            keys,
            vec!["sync_prices", "woo.consumer_key", "woo.consumer_secret"]
        );
        assert_eq!(d[0].before.as_deref(), Some("true"));
        assert_eq!(d[0].after.as_deref(), Some("false"));
        assert_eq!(d[1].after.as_deref(), Some("{ env = \"CK\" }"));
        assert_eq!(d[2].after.as_deref(), Some("(sealed, changed)"));
        let text = format!("{d:?}");
        assert!(!text.contains("AAA") && !text.contains("BBB"), "{text}");
        assert!(diff(&a, &a).is_empty());
        assert_eq!(diff(&a, &toml::Table::new()).len(), 3);
    }
}
