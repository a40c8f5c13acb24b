//! Ordered JSON values written the way PHP's `json_encode` writes them (`\/`, `\uXXXX`), and
//! `_fields` trimming.

use std::fmt::Write as _;

/// An ordered JSON value (WooCommerce responses have a stable field order).
#[derive(Clone, Debug, PartialEq)]
pub enum J {
    /// `null`.
    Null,
    /// `true`/`false`.
    Bool(bool),
    /// An integer.
    Int(i64),
    /// A number written verbatim (decimals without going through f64).
    Raw(String),
    /// A string.
    Str(String),
    /// An array.
    Arr(Vec<J>),
    /// An object with ordered keys.
    Obj(Vec<(String, J)>),
}

impl J {
    /// Object field lookup.
    pub fn get(&self, key: &str) -> Option<&J> {
        match self {
            J::Obj(fields) => fields.iter().find(|(k, _)| k == key).map(|(_, v)| v),
            _ => None,
        }
    }

    /// Sets or appends an object field.
    pub fn set(&mut self, key: &str, value: J) {
        if let J::Obj(fields) = self {
            if let Some(slot) = fields.iter_mut().find(|(k, _)| k == key) {
                slot.1 = value;
            } else {
                fields.push((key.to_string(), value));
            }
        }
    }

    /// PHP `json_encode` output.
    pub fn to_php(&self) -> String {
        let mut out = String::with_capacity(256);
        self.write(&mut out);
        out
    }

    fn write(&self, out: &mut String) {
        match self {
            J::Null => out.push_str("null"),
            J::Bool(b) => out.push_str(if *b { "true" } else { "false" }),
            J::Int(i) => {
                let _ = write!(out, "{i}");
            }
            J::Raw(r) => out.push_str(r),
            J::Str(s) => write_php_str(s, out),
            J::Arr(items) => {
                out.push('[');
                for (i, item) in items.iter().enumerate() {
                    if i > 0 {
                        out.push(',');
                    }
                    item.write(out);
                }
                out.push(']');
            }
            J::Obj(fields) => {
                out.push('{');
                for (i, (k, v)) in fields.iter().enumerate() {
                    if i > 0 {
                        out.push(',');
                    }
                    write_php_str(k, out);
                    out.push(':');
                    v.write(out);
                }
                out.push('}');
            }
        }
    }

    /// Keeps only the listed fields. `nested` allows `a.b` paths (orders, system status);
    /// products honour top-level names only. `_links` is kept on single objects.
    pub fn trim_fields(&self, fields: &[String], nested: bool, keep_links: bool) -> J {
        let J::Obj(all) = self else {
            return self.clone();
        };
        let mut out: Vec<(String, J)> = Vec::new();
        for (k, v) in all {
            if k == "_links" && keep_links {
                out.push((k.clone(), v.clone()));
                continue;
            }
            if fields.iter().any(|f| f == k) {
                out.push((k.clone(), v.clone()));
                continue;
            }
            if nested {
                let prefix = format!("{k}.");
                let subs: Vec<String> = fields
                    .iter()
                    .filter_map(|f| f.strip_prefix(&prefix).map(str::to_string))
                    .collect();
                if !subs.is_empty() {
                    if let J::Obj(_) = v {
                        let trimmed = v.trim_fields(&subs, true, false);
                        if let J::Obj(inner) = &trimmed {
                            if !inner.is_empty() {
                                out.push((k.clone(), trimmed));
                            }
                        }
                    }
                }
            }
        }
        J::Obj(out)
    }
}

fn write_php_str(s: &str, out: &mut String) {
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '/' => out.push_str("\\/"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            '\u{8}' => out.push_str("\\b"),
            '\u{c}' => out.push_str("\\f"),
            c if (c as u32) < 0x20 || (c as u32) > 0x7e => {
                let mut buf = [0u16; 2];
                for unit in c.encode_utf16(&mut buf) {
                    let _ = write!(out, "\\u{unit:04x}");
                }
            }
            c => out.push(c),
        }
    }
    out.push('"');
}

impl From<&str> for J {
    fn from(s: &str) -> J {
        J::Str(s.to_string())
    }
}
impl From<String> for J {
    fn from(s: String) -> J {
        J::Str(s)
    }
}
impl From<&String> for J {
    fn from(s: &String) -> J {
        J::Str(s.clone())
    }
}
impl From<bool> for J {
    fn from(b: bool) -> J {
        J::Bool(b)
    }
}
impl From<i64> for J {
    fn from(i: i64) -> J {
        J::Int(i)
    }
}
impl From<u64> for J {
    fn from(i: u64) -> J {
        J::Int(i64::try_from(i).unwrap_or(i64::MAX))
    }
}
impl From<u32> for J {
    fn from(i: u32) -> J {
        J::Int(i64::from(i))
    }
}
impl From<Vec<J>> for J {
    fn from(v: Vec<J>) -> J {
        J::Arr(v)
    }
}
impl<T: Into<J>> From<Option<T>> for J {
    fn from(o: Option<T>) -> J {
        o.map(Into::into).unwrap_or(J::Null)
    }
}
impl From<&serde_json::Value> for J {
    fn from(v: &serde_json::Value) -> J {
        match v {
            serde_json::Value::Null => J::Null,
            serde_json::Value::Bool(b) => J::Bool(*b),
            serde_json::Value::Number(n) => J::Raw(n.to_string()),
            serde_json::Value::String(s) => J::Str(s.clone()),
            serde_json::Value::Array(a) => J::Arr(a.iter().map(J::from).collect()),
            serde_json::Value::Object(o) => {
                J::Obj(o.iter().map(|(k, v)| (k.clone(), J::from(v))).collect())
            }
        }
    }
}

/// Builds an ordered object: `obj! { "id" => 1, "name" => name }`.
#[macro_export]
#[doc(hidden)]
macro_rules! obj {
    ($($k:expr => $v:expr),* $(,)?) => {
        $crate::json::J::Obj(vec![$(($k.to_string(), $crate::json::J::from($v))),*])
    };
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escapes_like_php() {
        let j = obj! { "u" => "http://x/é€😀", "n" => J::Raw("10.5".into()) };
        assert_eq!(
            j.to_php(),
            r#"{"u":"http:\/\/x\/\u00e9\u20ac\ud83d\ude00","n":10.5}"#
        );
    }

    #[test]
    fn trims_nested_fields_only_when_allowed() {
        let j = obj! { "id" => 1i64, "billing" => obj!{ "email" => "a@b", "phone" => "1" }, "_links" => obj!{} };
        let f = vec!["id".to_string(), "billing.email".to_string()];
        assert_eq!(
            j.trim_fields(&f, true, false).to_php(),
            r#"{"id":1,"billing":{"email":"a@b"}}"#
        );
        assert_eq!(
            j.trim_fields(&f, false, true).to_php(),
            r#"{"id":1,"_links":{}}"#
        );
    }
}
