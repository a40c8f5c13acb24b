//! Lenient, borrowing readers for the few JSON fields the ingest looks at. The body itself is
//! forwarded byte for byte; these only fill the event's summary fields.

use std::borrow::Cow;
use std::fmt;

use serde::de::{self, Deserializer, Visitor};
use serde::Deserialize;

/// A JSON scalar as text: strings as they are (borrowed when unescaped), numbers and booleans
/// in their JSON spelling, `null` as empty. Objects and arrays are refused.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub(crate) struct Text<'a>(pub(crate) Cow<'a, str>);

impl Text<'_> {
    pub(crate) fn into_string(self) -> String {
        self.0.into_owned()
    }
}

impl<'de: 'a, 'a> Deserialize<'de> for Text<'a> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = Text<'de>;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a string, number, boolean or null")
            }
            fn visit_borrowed_str<E: de::Error>(self, v: &'de str) -> Result<Self::Value, E> {
                Ok(Text(Cow::Borrowed(v)))
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<Self::Value, E> {
                Ok(Text(Cow::Owned(v.to_owned())))
            }
            fn visit_string<E: de::Error>(self, v: String) -> Result<Self::Value, E> {
                Ok(Text(Cow::Owned(v)))
            }
            fn visit_i64<E: de::Error>(self, v: i64) -> Result<Self::Value, E> {
                Ok(Text(Cow::Owned(v.to_string())))
            }
            fn visit_u64<E: de::Error>(self, v: u64) -> Result<Self::Value, E> {
                Ok(Text(Cow::Owned(v.to_string())))
            }
            fn visit_f64<E: de::Error>(self, v: f64) -> Result<Self::Value, E> {
                Ok(Text(Cow::Owned(v.to_string())))
            }
            fn visit_bool<E: de::Error>(self, v: bool) -> Result<Self::Value, E> {
                Ok(Text(Cow::Borrowed(if v { "true" } else { "false" })))
            }
            fn visit_unit<E: de::Error>(self) -> Result<Self::Value, E> {
                Ok(Text::default())
            }
            fn visit_none<E: de::Error>(self) -> Result<Self::Value, E> {
                Ok(Text::default())
            }
            fn visit_map<A: de::MapAccess<'de>>(self, map: A) -> Result<Self::Value, A::Error> {
                Ok(Text(Cow::Owned(arbitrary_precision_number(map)?)))
            }
        }
        d.deserialize_any(V)
    }
}

/// A positive resource id, as a JSON number or a numeric string. Anything else (0, negative,
/// fractional, text) reads as "no id".
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Id(pub(crate) Option<i64>);

impl<'de> Deserialize<'de> for Id {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = Id;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("an id")
            }
            fn visit_i64<E: de::Error>(self, v: i64) -> Result<Id, E> {
                Ok(Id(Some(v).filter(|v| *v > 0)))
            }
            fn visit_u64<E: de::Error>(self, v: u64) -> Result<Id, E> {
                Ok(Id(i64::try_from(v).ok().filter(|v| *v > 0)))
            }
            fn visit_f64<E: de::Error>(self, _: f64) -> Result<Id, E> {
                Ok(Id(None))
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<Id, E> {
                Ok(Id(v.trim().parse::<i64>().ok().filter(|v| *v > 0)))
            }
            fn visit_bool<E: de::Error>(self, _: bool) -> Result<Id, E> {
                Ok(Id(None))
            }
            fn visit_unit<E: de::Error>(self) -> Result<Id, E> {
                Ok(Id(None))
            }
            fn visit_none<E: de::Error>(self) -> Result<Id, E> {
                Ok(Id(None))
            }
            fn visit_map<A: de::MapAccess<'de>>(self, map: A) -> Result<Id, A::Error> {
                let n = arbitrary_precision_number(map)?;
                Ok(Id(n.parse::<i64>().ok().filter(|v| *v > 0)))
            }
        }
        d.deserialize_any(V)
    }
}

/// serde_json's `arbitrary_precision` feature (switched on in this workspace by rust_decimal)
/// hands numbers that are not plain integers to `deserialize_any` as a one-entry map under a
/// private key. Reads that number as text; any real object is refused.
fn arbitrary_precision_number<'de, A: de::MapAccess<'de>>(mut map: A) -> Result<String, A::Error> {
    const KEY: &str = "$serde_json::private::Number";
    match map.next_key::<Cow<'de, str>>()? {
        Some(k) if k == KEY => {
            let n: String = map.next_value()?;
            if map.next_key::<de::IgnoredAny>()?.is_some() {
                return Err(de::Error::custom("expected a scalar"));
            }
            Ok(n)
        }
        _ => Err(de::Error::custom("expected a scalar, found an object")),
    }
}

/// Whether the body is a JSON object (serde would also read a struct from an array).
pub(crate) fn looks_like_object(body: &[u8]) -> bool {
    body.trim_ascii_start().first() == Some(&b'{')
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Deserialize)]
    struct Probe<'a> {
        #[serde(default)]
        id: Id,
        #[serde(borrow, default)]
        t: Text<'a>,
    }

    fn probe(s: &str) -> Option<(Option<i64>, String)> {
        serde_json::from_str::<Probe<'_>>(s)
            .ok()
            .map(|p| (p.id.0, p.t.into_string()))
    }

    #[test]
    fn reads_ids_and_scalars_leniently() {
        assert_eq!(
            probe(r#"{"id":15,"t":"48.90"}"#),
            Some((Some(15), "48.90".into()))
        );
        assert_eq!(
            probe(r#"{"id":"15","t":48.9}"#),
            Some((Some(15), "48.9".into()))
        );
        assert_eq!(probe(r#"{"id":0,"t":null}"#), Some((None, String::new())));
        assert_eq!(probe(r#"{"id":-1}"#), Some((None, String::new())));
        assert_eq!(probe(r#"{"t":"a\/b"}"#), Some((None, "a/b".into())));
        assert_eq!(probe(r#"{"id":1,"t":{"x":1}}"#), None);
        assert_eq!(probe(r#"{"id":1,"t":{}}"#), None);
        assert_eq!(probe(r#"{"id":1,"t":[1]}"#), None);
        assert_eq!(probe(r#"{"id":15.5}"#), Some((None, String::new())));
        assert_eq!(
            probe(r#"{"id":1,"t":12345678901234567890123}"#),
            Some((Some(1), "12345678901234567890123".into()))
        );
        assert_eq!(probe(r#"{"id":1"#), None);
    }

    #[test]
    fn only_objects_look_like_objects() {
        assert!(looks_like_object(b" \n{\"id\":1}"));
        assert!(!looks_like_object(b"[1,2]"));
        assert!(!looks_like_object(b""));
    }
}
