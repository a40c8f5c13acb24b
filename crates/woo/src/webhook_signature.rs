//! Webhook signatures: `X-WC-Webhook-Signature = base64(HMAC-SHA256(secret, raw body))`.
//!
//! WooCommerce HTML-entity-decodes the stored secret before signing, so a secret containing
//! `&` is stored as `&amp;` but signed with `&`; [`sign`] and [`verify`] apply the same
//! decoding so that any secret the receiver was configured with verifies.

use base64::Engine as _;
use hmac::{Hmac, Mac};
use subtle::ConstantTimeEq;

/// Decodes the entities WordPress' `wp_specialchars_decode(…, ENT_QUOTES)` decodes.
pub fn decode_secret(secret: &str) -> String {
    if !secret.contains('&') {
        return secret.to_string();
    }
    secret
        .replace("&lt;", "<")
        .replace("&gt;", ">")
        .replace("&quot;", "\"")
        .replace("&#039;", "'")
        .replace("&#39;", "'")
        .replace("&#x27;", "'")
        .replace("&amp;", "&")
}

fn mac(secret: &str, body: &[u8]) -> Hmac<sha2::Sha256> {
    let key = decode_secret(secret);
    let mut mac = Hmac::<sha2::Sha256>::new_from_slice(key.as_bytes())
        .expect("hmac accepts keys of any length");
    mac.update(body);
    mac
}

/// The signature WooCommerce sends for `body` (44 base64 characters).
pub fn sign(secret: &str, body: &[u8]) -> String {
    base64::engine::general_purpose::STANDARD.encode(mac(secret, body).finalize().into_bytes())
}

/// Checks `header` against the raw body bytes in constant time.
///
/// Never re-serialise the JSON before calling this: PHP's escaping (`\/`, `\uXXXX`) does not
/// survive a round trip, so only the exact received bytes verify.
pub fn verify(secret: &str, raw_body: &[u8], header: &str) -> bool {
    let Ok(given) = base64::engine::general_purpose::STANDARD.decode(header.trim()) else {
        return false;
    };
    let expected = mac(secret, raw_body).finalize().into_bytes();
    given.len() == expected.len() && bool::from(expected.as_slice().ct_eq(&given))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn verifies_what_it_signs_and_rejects_tampering() {
        let sig = sign("s3cret", b"{\"id\":1}");
        assert_eq!(sig.len(), 44);
        assert!(verify("s3cret", b"{\"id\":1}", &sig));
        assert!(!verify("s3cret", b"{\"id\":2}", &sig));
        assert!(!verify("other", b"{\"id\":1}", &sig));
        assert!(!verify("s3cret", b"{\"id\":1}", "not base64!"));
    }

    #[test]
    fn decodes_html_entities_in_the_secret() {
        assert_eq!(sign("a&amp;b", b"x"), sign("a&b", b"x"));
        assert_eq!(decode_secret("&lt;&gt;&quot;&#039;&amp;amp;"), "<>\"'&amp;");
    }

    mod properties {
        use super::super::*;
        use proptest::prelude::*;

        proptest! {
            #[test]
            fn what_is_signed_verifies_and_other_bodies_do_not(secret in "\\PC{0,40}", body in prop::collection::vec(any::<u8>(), 0..200), other in prop::collection::vec(any::<u8>(), 0..200)) {
                let sig = sign(&secret, &body);
                prop_assert!(verify(&secret, &body, &sig));
                prop_assert_eq!(verify(&secret, &other, &sig), other == body);
            }

            #[test]
            fn any_header_is_checked_without_panicking(secret in "\\PC{0,40}", body in prop::collection::vec(any::<u8>(), 0..64), header in "[A-Za-z0-9+/= ]{0,100}|\\PC{0,100}") {
                let _ = verify(&secret, &body, &header);
            }
        }
    }
}
