//! OAuth 1.0a one-legged signing exactly as WooCommerce verifies it (reference §3.2).
//!
//! No general OAuth crate is used because WooCommerce deviates from RFC 5849 in ways that
//! matter: parameters are sorted by their *raw* key byte-wise before encoding, each `k=v`
//! pair is percent-encoded a second time, and PHP array parameters are signed as
//! `key[0]`, `key[1]`. The same functions serve the client (signing) and the simulator
//! (verifying), so both agree with the captured real requests by construction and by test.

use base64::Engine as _;
use hmac::{Hmac, Mac};
use percent_encoding::{utf8_percent_encode, AsciiSet, NON_ALPHANUMERIC};

/// RFC 3986 unreserved characters stay as they are; everything else is percent-encoded,
/// which is what PHP's `rawurlencode` does.
const RFC3986: &AsciiSet = &NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'_')
    .remove(b'.')
    .remove(b'~');

/// Percent-encodes like PHP's `rawurlencode` (spaces become `%20`, never `+`).
pub fn encode(s: &str) -> String {
    utf8_percent_encode(s, RFC3986).to_string()
}

/// The digest WooCommerce accepts in `oauth_signature_method`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum SignatureMethod {
    /// `HMAC-SHA256`, the default.
    #[default]
    HmacSha256,
    /// `HMAC-SHA1`.
    HmacSha1,
}

impl SignatureMethod {
    /// The value sent in `oauth_signature_method`.
    pub fn as_str(self) -> &'static str {
        match self {
            SignatureMethod::HmacSha256 => "HMAC-SHA256",
            SignatureMethod::HmacSha1 => "HMAC-SHA1",
        }
    }

    /// Parses the wire value; anything but the two HMAC methods is refused by WooCommerce.
    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "HMAC-SHA256" => Some(SignatureMethod::HmacSha256),
            "HMAC-SHA1" => Some(SignatureMethod::HmacSha1),
            _ => None,
        }
    }
}

/// A parameter value as PHP sees it after parsing the query: a scalar, or an array built from
/// `key[]=` / `key[n]=` entries (signed as `key[0]`, `key[1]`, ...).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ParamValue {
    /// A plain `key=value`.
    Scalar(String),
    /// `key[sub]=value` entries in order, with their sub-keys.
    Array(Vec<(String, String)>),
}

/// Builds the signature base string: `METHOD&encoded_uri&joined_params`.
///
/// `base_uri` is the store's home URL plus the request path, without the query string.
/// `params` are all query/form/oauth parameters except `oauth_signature`, already decoded.
pub fn base_string(method: &str, base_uri: &str, params: &[(String, ParamValue)]) -> String {
    let mut sorted: Vec<&(String, ParamValue)> = params.iter().collect();
    // strcmp on the raw key, before any encoding (not RFC 5849's sort on encoded keys).
    sorted.sort_by(|a, b| a.0.as_bytes().cmp(b.0.as_bytes()));
    let mut pairs = Vec::with_capacity(sorted.len());
    for (key, value) in sorted {
        let k = encode(key);
        match value {
            ParamValue::Scalar(v) => pairs.push(encode(&format!("{k}={}", encode(v)))),
            ParamValue::Array(items) => {
                for (sub, v) in items {
                    pairs.push(encode(&format!("{k}%5B{sub}%5D={}", encode(v))));
                }
            }
        }
    }
    format!(
        "{}&{}&{}",
        method.to_ascii_uppercase(),
        encode(base_uri),
        pairs.join("%26")
    )
}

/// `base64(HMAC(consumer_secret + "&", base_string))`.
pub fn signature(method: SignatureMethod, consumer_secret: &str, base_string: &str) -> String {
    let key = format!("{consumer_secret}&");
    let raw = match method {
        SignatureMethod::HmacSha256 => {
            let mut mac = Hmac::<sha2::Sha256>::new_from_slice(key.as_bytes())
                .expect("hmac accepts keys of any length");
            mac.update(base_string.as_bytes());
            mac.finalize().into_bytes().to_vec()
        }
        SignatureMethod::HmacSha1 => {
            let mut mac = Hmac::<sha1::Sha1>::new_from_slice(key.as_bytes())
                .expect("hmac accepts keys of any length");
            mac.update(base_string.as_bytes());
            mac.finalize().into_bytes().to_vec()
        }
    };
    base64::engine::general_purpose::STANDARD.encode(raw)
}

/// Groups decoded query pairs the way PHP builds `$_GET`: `a[]=x&a[]=y` becomes an array
/// with sub-keys `0`, `1`; `a[k]=x` keeps `k`; a repeated plain key keeps the last value.
pub fn php_params(pairs: impl IntoIterator<Item = (String, String)>) -> Vec<(String, ParamValue)> {
    let mut out: Vec<(String, ParamValue)> = Vec::new();
    for (key, value) in pairs {
        if let Some(open) = key.find('[') {
            if key.ends_with(']') && open > 0 {
                let base = key[..open].to_string();
                let sub = key[open + 1..key.len() - 1].to_string();
                let idx = out.iter().position(|(k, _)| *k == base);
                match idx {
                    Some(i) => {
                        if let ParamValue::Array(items) = &mut out[i].1 {
                            let sub = if sub.is_empty() {
                                items.len().to_string()
                            } else {
                                sub
                            };
                            items.retain(|(s, _)| *s != sub);
                            items.push((sub, value));
                        } else {
                            let sub = if sub.is_empty() { "0".into() } else { sub };
                            out[i].1 = ParamValue::Array(vec![(sub, value)]);
                        }
                    }
                    None => {
                        let sub = if sub.is_empty() { "0".into() } else { sub };
                        out.push((base, ParamValue::Array(vec![(sub, value)])));
                    }
                }
                continue;
            }
        }
        match out.iter().position(|(k, _)| *k == key) {
            Some(i) => out[i].1 = ParamValue::Scalar(value),
            None => out.push((key, ParamValue::Scalar(value))),
        }
    }
    out
}

/// Parses the `oauth_*` entries of an `Authorization: OAuth ...` header the way WooCommerce
/// does (values URL-decoded once, `+` turning into a space).
pub fn parse_authorization_header(header: &str) -> Option<Vec<(String, String)>> {
    let rest = header.strip_prefix("OAuth ")?;
    let mut out = Vec::new();
    for part in rest.split(',') {
        let part = part.trim();
        let Some((k, v)) = part.split_once('=') else {
            continue;
        };
        if !k.starts_with("oauth_") {
            continue;
        }
        let v = v.trim().trim_matches('"');
        let decoded = form_decode(v);
        out.push((k.to_string(), decoded));
    }
    Some(out)
}

/// PHP `rawurldecode`: `%XX` is a byte, `+` stays a plus; invalid UTF-8 is replaced.
pub fn raw_decode(s: &str) -> String {
    percent_encoding::percent_decode_str(s)
        .decode_utf8_lossy()
        .into_owned()
}

/// PHP `urldecode`: `+` is a space, `%XX` is a byte; invalid UTF-8 is replaced.
pub fn form_decode(s: &str) -> String {
    let replaced = s.replace('+', " ");
    percent_encoding::percent_decode_str(&replaced)
        .decode_utf8_lossy()
        .into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn encodes_spaces_as_percent_20_and_keeps_tilde() {
        assert_eq!(encode("a b~c+d/é"), "a%20b~c%2Bd%2F%C3%A9");
    }

    #[test]
    fn signs_array_parameters_with_indices() {
        let params = php_params(vec![
            ("status[]".to_string(), "processing".to_string()),
            ("status[]".to_string(), "completed".to_string()),
        ]);
        let base = base_string("get", "http://h/wp-json/wc/v3/orders", &params);
        assert_eq!(
            base,
            "GET&http%3A%2F%2Fh%2Fwp-json%2Fwc%2Fv3%2Forders&status%255B0%255D%3Dprocessing%26status%255B1%255D%3Dcompleted"
        );
    }

    #[test]
    fn sorts_by_raw_key_bytes() {
        let params = vec![
            ("b".to_string(), ParamValue::Scalar("1".into())),
            ("B".to_string(), ParamValue::Scalar("2".into())),
            ("a_b".to_string(), ParamValue::Scalar("3".into())),
            ("a".to_string(), ParamValue::Scalar("4".into())),
        ];
        let base = base_string("GET", "u", &params);
        assert!(base.ends_with("B%3D2%26a%3D4%26a_b%3D3%26b%3D1"), "{base}");
    }

    mod properties {
        use super::super::*;
        use proptest::prelude::*;

        proptest! {
            #[test]
            fn any_authorization_header_parses_or_is_refused(header in "(OAuth )?[ -~\\PC]{0,200}") {
                if let Some(pairs) = parse_authorization_header(&header) {
                    for (k, _) in &pairs {
                        prop_assert!(k.starts_with("oauth_"));
                    }
                    let params = php_params(pairs);
                    let base = base_string("GET", "http://h/wp-json/wc/v3/orders", &params);
                    let _ = signature(SignatureMethod::HmacSha256, "cs", &base);
                }
            }

            #[test]
            fn any_query_pairs_make_a_base_string(pairs in prop::collection::vec(("[a-z\\[\\]0-9_]{0,8}", "\\PC{0,8}"), 0..10), method in "\\PC{0,6}") {
                let params = php_params(pairs.clone());
                let base = base_string(&method, "http://h/p", &params);
                prop_assert!(base.starts_with(&method.to_ascii_uppercase()));
                // The base string depends on the parameters, not on their order.
                let mut reversed = pairs;
                reversed.reverse();
                let distinct: std::collections::BTreeSet<_> = reversed.iter().map(|(k, _)| k.clone()).collect();
                if distinct.len() == reversed.len() && !reversed.iter().any(|(k, _)| k.contains('[')) {
                    prop_assert_eq!(base, base_string(&method, "http://h/p", &php_params(reversed)));
                }
            }

            #[test]
            fn decoding_never_panics(s in "\\PC{0,40}|[%+0-9a-fA-F]{0,40}") {
                let _ = (raw_decode(&s), form_decode(&s), encode(&s));
            }
        }
    }
}
