//! HMAC-SHA256 signatures over raw request bodies, keyed once per store and secret.

use base64::Engine as _;
use hmac::{Hmac, Mac};
use sha2::Sha256;

/// A keyed HMAC-SHA256. The key schedule is computed once at start; each request clones the
/// keyed state (a copy of two hash states, no allocation) instead of re-keying.
#[derive(Clone)]
pub(crate) struct Signer(Hmac<Sha256>);

impl std::fmt::Debug for Signer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never show key material, not even derived state.
        f.write_str("Signer([redacted])")
    }
}

/// A base64 HMAC-SHA256 is 44 characters; anything much longer is not a signature and is
/// refused before decoding.
const MAX_HEADER_LEN: usize = 88;

impl Signer {
    pub(crate) fn new(key: &[u8]) -> Signer {
        Signer(Hmac::new_from_slice(key).expect("HMAC accepts keys of any length"))
    }

    /// WooCommerce HTML-entity-decodes the stored secret before signing, so the key is the
    /// decoded secret (see `duellsync_woo::webhook_signature`).
    pub(crate) fn woocommerce(secret: &str) -> Signer {
        Signer::new(duellsync_woo::webhook_signature::decode_secret(secret).as_bytes())
    }

    /// Whether `header` (base64) is the HMAC of the exact `body` bytes. The comparison is
    /// constant-time (`verify_slice`); a header that is not base64 of the right length fails.
    pub(crate) fn verify(&self, body: &[u8], header: &[u8]) -> bool {
        let header = header.trim_ascii();
        if header.is_empty() || header.len() > MAX_HEADER_LEN {
            return false;
        }
        let mut tag = [0u8; MAX_HEADER_LEN * 3 / 4];
        let Ok(n) = base64::engine::general_purpose::STANDARD.decode_slice(header, &mut tag) else {
            return false;
        };
        let mut mac = self.0.clone();
        mac.update(body);
        mac.verify_slice(&tag[..n]).is_ok()
    }

    /// The base64 signature of `body` (tests and tools).
    #[cfg(test)]
    pub(crate) fn sign(&self, body: &[u8]) -> String {
        let mut mac = self.0.clone();
        mac.update(body);
        base64::engine::general_purpose::STANDARD.encode(mac.finalize().into_bytes())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn agrees_with_the_woocommerce_recipe() {
        let body = br#"{"id":15,"permalink":"http:\/\/x"}"#;
        let sig = duellsync_woo::webhook_signature::sign("s3cret", body);
        let signer = Signer::woocommerce("s3cret");
        assert!(signer.verify(body, sig.as_bytes()));
        assert_eq!(signer.sign(body), sig);
    }

    #[test]
    fn rejects_tampering_other_keys_and_garbage_headers() {
        let signer = Signer::woocommerce("s3cret");
        let sig = signer.sign(b"{\"id\":1}");
        assert!(!signer.verify(b"{\"id\":2}", sig.as_bytes()));
        assert!(!Signer::woocommerce("other").verify(b"{\"id\":1}", sig.as_bytes()));
        for bad in [
            "",
            "not base64!",
            &sig[..20],
            "AAAA",
            &"A".repeat(200),
            &format!("{sig}{sig}"),
        ] {
            assert!(!signer.verify(b"{\"id\":1}", bad.as_bytes()), "{bad}");
        }
        // Surrounding whitespace is tolerated, as WooCommerce's own verify does.
        assert!(signer.verify(b"{\"id\":1}", format!(" {sig} ").as_bytes()));
    }

    #[test]
    fn decodes_html_entities_in_woocommerce_secrets() {
        let body = b"x";
        let sig = duellsync_woo::webhook_signature::sign("a&b", body);
        assert!(Signer::woocommerce("a&amp;b").verify(body, sig.as_bytes()));
    }
}

#[cfg(test)]
mod properties {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        /// The ingest's keyed verifier and the WooCommerce recipe agree on every header, so the
        /// fuzzed `duellsync_woo::webhook_signature::verify` speaks for the ingest too.
        #[test]
        fn the_keyed_signer_agrees_with_the_woocommerce_recipe(
            secret in "[ -~]{0,24}",
            body in prop::collection::vec(any::<u8>(), 0..128),
            header in "[A-Za-z0-9+/= ]{0,100}",
            signed in any::<bool>(),
        ) {
            let signer = Signer::woocommerce(&secret);
            let header = if signed {
                format!(" {} ", duellsync_woo::webhook_signature::sign(&secret, &body))
            } else {
                header
            };
            prop_assert_eq!(
                signer.verify(&body, header.as_bytes()),
                duellsync_woo::webhook_signature::verify(&secret, &body, &header)
            );
            prop_assert_eq!(signer.verify(&body, header.as_bytes()), signed);
        }
    }
}
