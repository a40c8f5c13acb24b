//! Refusals of store settings in machine-readable form: what rule, which key, which value, and
//! the limits, so that a page can word the refusal in its reader's language (the console shows
//! Norwegian and English) while the rules themselves stay here. Every refusal also carries the
//! English message that files, logs and `syncctl` print.

use serde::Serialize;

use crate::layered::one_line;
use crate::store::{Needs, StoreSettings};
use crate::{Problem, Unseal};

/// Which rule refused a value. The names (snake_case) are stable: pages key their texts on them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Code {
    /// Not a store id (1-32 of `a-z0-9-_`).
    StoreId,
    /// A number or a duration outside `min`..`max` (either may be open).
    OutOfRange,
    /// Not an IANA time zone name.
    TimeZone,
    /// `woo.auth = "basic"` over plain http.
    BasicOverHttp,
    /// An http:// shop address while the store does not allow insecure http.
    PlainHttp,
    /// Not a URL.
    NotAUrl,
    /// A secret that cannot be read (missing, unreadable file, unset variable, sealed with
    /// another key); `message` says which. The value is never given.
    Secret,
    /// The webhook secret has characters WooCommerce mangles.
    SecretCharacters,
    /// Not a shard name.
    Shard,
    /// Not DUELL's 6-digit client number.
    ClientNumber,
    /// A DUELL token too short to be one (the value is never given).
    TokenTooShort,
    /// `deduct_stock` on together with `create_customer_order`.
    DeductStockWithCustomerOrder,
    /// Not a date.
    NotADate,
    /// A list that must not be empty.
    Empty,
    /// Not a WooCommerce order status slug.
    NotAWooStatus,
    /// Not a DUELL customer-order status (`min`..`max`).
    NotADuellStatus,
    /// A status written twice in the status map (`5` and `05`).
    Duplicate,
    /// Not a plain decimal number.
    NotADecimal,
    /// Not a duration (`30s`, `40m`, `500ms`).
    NotADuration,
    /// Not a whole number.
    NotAnInteger,
    /// Anything else the settings cannot be read as (a wrong type, an unknown key, an unknown
    /// choice); `message` is the reader's detail in English.
    Format,
}

impl Code {
    pub fn as_str(self) -> &'static str {
        match self {
            Code::StoreId => "store_id",
            Code::OutOfRange => "out_of_range",
            Code::TimeZone => "time_zone",
            Code::BasicOverHttp => "basic_over_http",
            Code::PlainHttp => "plain_http",
            Code::NotAUrl => "not_a_url",
            Code::Secret => "secret",
            Code::SecretCharacters => "secret_characters",
            Code::Shard => "shard",
            Code::ClientNumber => "client_number",
            Code::TokenTooShort => "token_too_short",
            Code::DeductStockWithCustomerOrder => "deduct_stock_with_customer_order",
            Code::NotADate => "not_a_date",
            Code::Empty => "empty",
            Code::NotAWooStatus => "not_a_woo_status",
            Code::NotADuellStatus => "not_a_duell_status",
            Code::Duplicate => "duplicate",
            Code::NotADecimal => "not_a_decimal",
            Code::NotADuration => "not_a_duration",
            Code::NotAnInteger => "not_an_integer",
            Code::Format => "format",
        }
    }
}

/// One refused value.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Refusal {
    pub code: Code,
    /// The settings key (`deduct_stock`, `woo.url`, `status_map`).
    pub key: String,
    /// The refused value as written; empty for secrets, which are never repeated.
    pub value: String,
    /// The smallest and largest value the rule accepts, where it has them.
    pub min: Option<String>,
    pub max: Option<String>,
    /// The refusal in English with its fix (what files and logs show).
    pub message: String,
}

impl Refusal {
    pub fn new(code: Code, key: &str, value: &str, message: String) -> Refusal {
        Refusal {
            code,
            key: key.to_owned(),
            value: value.to_owned(),
            min: None,
            max: None,
            message,
        }
    }

    pub fn limits(mut self, min: Option<&str>, max: Option<&str>) -> Refusal {
        self.min = min.map(str::to_owned);
        self.max = max.map(str::to_owned);
        self
    }

    pub(crate) fn secret(key: &str, message: String) -> Refusal {
        Refusal::new(Code::Secret, key, "", message)
    }

    /// The refusal as a configuration problem of a file or record named `origin`.
    pub fn problem(&self, origin: &str) -> Problem {
        Problem {
            key: format!("{origin}: {}", self.key),
            message: self.message.clone(),
        }
    }
}

const DURATION_KEYS: [&str; 4] = [
    "reconcile_interval",
    "poll_interval",
    "stock_poll_interval",
    "woo.request_timeout",
];
const INTEGER_KEYS: [&str; 3] = [
    "orders_from_number",
    "woo.max_concurrency",
    "orders.initial_status",
];
const INTEGER_LIST_KEYS: [&str; 2] = ["stock.drawn_statuses", "stock.cancelled_statuses"];

fn take(t: &mut toml::Table, key: &str) -> Option<toml::Value> {
    match key.split_once('.') {
        Some((a, b)) => t.get_mut(a)?.as_table_mut()?.remove(b),
        None => t.remove(key),
    }
}

fn put(t: &mut toml::Table, key: &str, v: toml::Value) {
    match key.split_once('.') {
        Some((a, b)) => {
            if let Some(sec) = t.get_mut(a).and_then(|s| s.as_table_mut()) {
                sec.insert(b.to_owned(), v);
            }
        }
        None => {
            t.insert(key.to_owned(), v);
        }
    }
}

fn shown(v: &toml::Value) -> String {
    match v {
        toml::Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

/// Checks the settings table of store `id` as it would be stored, with every rule, and returns
/// every refusal (empty: the table is valid). `unseal` opens sealed secrets; `needs` says which
/// secrets must be readable ([`Needs::RECORD`] for a save). Values of the wrong form (a duration,
/// a whole number) are refused by key and the remaining keys are still checked.
pub fn check_store_table(
    id: &str,
    table: &toml::Table,
    unseal: &dyn Unseal,
    needs: Needs,
) -> Vec<Refusal> {
    let mut out = Vec::new();
    let mut t = table.clone();
    for key in DURATION_KEYS {
        let Some(v) = take(&mut t, key) else { continue };
        match v.as_str().map(crate::duration::parse) {
            Some(Ok(_)) => put(&mut t, key, v),
            Some(Err(e)) => out.push(Refusal::new(Code::NotADuration, key, &shown(&v), e)),
            None => out.push(Refusal::new(
                Code::NotADuration,
                key,
                &shown(&v),
                format!(
                    "`{}` is not a duration; write e.g. \"30s\", \"40m\", \"500ms\"",
                    shown(&v)
                ),
            )),
        }
    }
    for key in INTEGER_KEYS {
        let Some(v) = take(&mut t, key) else { continue };
        if v.is_integer() {
            put(&mut t, key, v);
        } else {
            out.push(not_an_integer(key, &shown(&v)));
        }
    }
    for key in INTEGER_LIST_KEYS {
        let Some(v) = take(&mut t, key) else { continue };
        let bad: Vec<String> = match &v {
            toml::Value::Array(a) => a.iter().filter(|x| !x.is_integer()).map(shown).collect(),
            other => vec![shown(other)],
        };
        if bad.is_empty() {
            put(&mut t, key, v);
        }
        for b in bad {
            out.push(not_an_integer(key, &b));
        }
    }
    let text = match toml::to_string(&t) {
        Ok(s) => s,
        Err(e) => {
            out.push(Refusal::new(Code::Format, "", "", one_line(&e.to_string())));
            return out;
        }
    };
    let mut store: StoreSettings = match toml::from_str(&text) {
        Ok(s) => s,
        Err(e) => {
            let (key, value) = e.span().map(|span| locate(&text, span)).unwrap_or_default();
            out.push(Refusal::new(
                Code::Format,
                &key,
                &value,
                one_line(e.message()),
            ));
            return out;
        }
    };
    if store.id.is_empty() {
        store.id = id.to_owned();
    } else if store.id != id {
        out.push(Refusal::new(
            Code::StoreId,
            "id",
            &store.id,
            format!(
                "`{}` differs from the store's id `{id}`; make them equal",
                store.id
            ),
        ));
    }
    out.extend(store.refusals(&|_| None, unseal, needs));
    out
}

fn not_an_integer(key: &str, value: &str) -> Refusal {
    Refusal::new(
        Code::NotAnInteger,
        key,
        value,
        format!("`{value}` is not a whole number; write e.g. 5"),
    )
}

/// The dotted key and the written value at `span` of a TOML text written by `toml::to_string`
/// (one `key = value` a line under `[section]` headers).
fn locate(text: &str, span: std::ops::Range<usize>) -> (String, String) {
    let start = span.start.min(text.len());
    let line_start = text[..start].rfind('\n').map(|i| i + 1).unwrap_or(0);
    let line_end = text[start..]
        .find('\n')
        .map(|i| start + i)
        .unwrap_or(text.len());
    let line = &text[line_start..line_end];
    let section = text[..line_start]
        .lines()
        .rev()
        .find(|l| l.starts_with('['))
        .map(|l| l.trim_matches(|c| c == '[' || c == ']').to_owned());
    let Some((k, v)) = line.split_once('=') else {
        return (section.unwrap_or_default(), String::new());
    };
    let k = k.trim().trim_matches('"');
    let key = match section {
        Some(s) => format!("{s}.{k}"),
        None => k.to_owned(),
    };
    (key, v.trim().trim_matches('"').to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::NoKeys;

    fn table(extra: &str) -> toml::Table {
        format!(
            r#"{extra}
[woo]
url = "https://shop.test"
consumer_key = "ck_x"
consumer_secret = "cs_x"
[duell]
client_number = "012345"
client_token = "{t}"
stock_department = "{t}"
"#,
            t = "t".repeat(40)
        )
        .parse()
        .unwrap()
    }

    #[test]
    fn a_valid_table_has_no_refusals() {
        assert_eq!(
            check_store_table("s1", &table(""), &NoKeys, Needs::RECORD),
            vec![]
        );
    }

    #[test]
    fn refusals_name_the_rule_the_key_the_value_and_the_limits() {
        let r = check_store_table(
            "s1",
            &table("deduct_stock = true\nreconcile_interval = \"5s\"\nstatus_map = { 12 = \"completed\" }"),
            &NoKeys,
            Needs::RECORD,
        );
        let deduct = r.iter().find(|r| r.key == "deduct_stock").unwrap();
        assert_eq!(deduct.code, Code::DeductStockWithCustomerOrder);
        assert_eq!(deduct.value, "true");
        let rec = r.iter().find(|r| r.key == "reconcile_interval").unwrap();
        assert_eq!(
            (rec.code, rec.value.as_str(), rec.min.as_deref()),
            (Code::OutOfRange, "5s", Some("1m"))
        );
        let map = r.iter().find(|r| r.key == "status_map").unwrap();
        assert_eq!(
            (map.code, map.value.as_str(), map.max.as_deref()),
            (Code::NotADuellStatus, "12", Some("11"))
        );
        assert_eq!(
            serde_json::to_value(map.code).unwrap(),
            "not_a_duell_status"
        );
        assert_eq!(map.code.as_str(), "not_a_duell_status");
    }

    #[test]
    fn values_of_the_wrong_form_are_refused_by_key_and_the_rest_is_still_checked() {
        let r = check_store_table(
            "s1",
            &table("poll_interval = \"soon\"\norders_from_number = \"12a\"\ndeduct_stock = true\n[stock]\ndrawn_statuses = [3, \"x\"]"),
            &NoKeys,
            Needs::RECORD,
        );
        let codes: Vec<(Code, &str, &str)> = r
            .iter()
            .map(|r| (r.code, r.key.as_str(), r.value.as_str()))
            .collect();
        assert!(
            codes.contains(&(Code::NotADuration, "poll_interval", "soon")),
            "{codes:?}"
        );
        assert!(
            codes.contains(&(Code::NotAnInteger, "orders_from_number", "12a")),
            "{codes:?}"
        );
        assert!(
            codes.contains(&(Code::NotAnInteger, "stock.drawn_statuses", "x")),
            "{codes:?}"
        );
        assert!(
            codes
                .iter()
                .any(|c| c.0 == Code::DeductStockWithCustomerOrder),
            "{codes:?}"
        );
    }

    #[test]
    fn other_unreadable_values_are_located() {
        let r = check_store_table(
            "s1",
            &table("new_product_status = \"shiny\""),
            &NoKeys,
            Needs::RECORD,
        );
        assert_eq!(r.len(), 1, "{r:?}");
        assert_eq!(
            (r[0].code, r[0].key.as_str(), r[0].value.as_str()),
            (Code::Format, "new_product_status", "shiny")
        );
        let r = check_store_table("s1", &table("[woo.x]\ny = 1"), &NoKeys, Needs::RECORD);
        assert_eq!(r[0].code, Code::Format);
        assert!(r[0].key.starts_with("woo"), "{r:?}");
    }

    #[test]
    fn a_status_mapped_twice_is_refused() {
        let r = check_store_table(
            "s1",
            &table("status_map = { 5 = \"completed\", \"05\" = \"cancelled\" }"),
            &NoKeys,
            Needs::RECORD,
        );
        assert_eq!(r.len(), 1, "{r:?}");
        assert_eq!(
            (r[0].code, r[0].key.as_str(), r[0].value.as_str()),
            (Code::Duplicate, "status_map", "5")
        );
    }

    #[test]
    fn secrets_are_never_repeated_in_a_refusal() {
        let mut t = table("");
        t["duell"].as_table_mut().unwrap().insert(
            "client_token".into(),
            toml::Value::String("short-token".into()),
        );
        let r = check_store_table("s1", &t, &NoKeys, Needs::RECORD);
        let tok = r.iter().find(|r| r.key == "duell.client_token").unwrap();
        assert_eq!(tok.code, Code::TokenTooShort);
        assert_eq!(tok.value, "");
        assert!(!format!("{r:?}").contains("short-token"));
    }
}
