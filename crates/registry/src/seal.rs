//! Sealing of store secrets: XChaCha20-Poly1305 (RustCrypto) under keys that come from a
//! Kubernetes Secret or the environment, never from the registry itself.
//!
//! Two keys: `api` seals WooCommerce keys and DUELL tokens, `receiver` seals the webhook and
//! change-notice secrets. webhook-ingest, the one pod that faces the internet, gets only the
//! receiver key, so a compromise of it never opens API credentials (least secrets per pod, as
//! `Needs::RECEIVER` already keeps referenced secrets out of it).
//!
//! A sealed value is `v1:<api|receiver>:<base64(nonce ‖ ciphertext)>`; the associated data is
//! `<store>/<key>`, so a sealed value copied to another store or key does not open.

use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine as _;
use chacha20poly1305::aead::{Aead, KeyInit, Payload};
use chacha20poly1305::{Key, XChaCha20Poly1305, XNonce};
use duellsync_settings::service::SealSection;
use duellsync_settings::{ConfigError, Problem, Secret, Unseal, RECEIVER_SECRETS};

/// Which key seals a secret.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KeyClass {
    Api,
    Receiver,
}

impl KeyClass {
    pub fn of(key: &str) -> KeyClass {
        if RECEIVER_SECRETS.contains(&key) {
            KeyClass::Receiver
        } else {
            KeyClass::Api
        }
    }

    fn name(self) -> &'static str {
        match self {
            KeyClass::Api => "api",
            KeyClass::Receiver => "receiver",
        }
    }
}

/// The sealing keys a process holds (one, both or none).
#[derive(Clone, Default)]
pub struct Keyring {
    api: Option<[u8; 32]>,
    receiver: Option<[u8; 32]>,
}

impl std::fmt::Debug for Keyring {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Keyring")
            .field("api", &self.api.is_some())
            .field("receiver", &self.receiver.is_some())
            .finish()
    }
}

/// A new random key, base64 (`syncctl store keygen`).
pub fn generate_key() -> String {
    B64.encode(rand::random::<[u8; 32]>())
}

fn parse_key(text: &str) -> Result<[u8; 32], String> {
    let bytes = B64
        .decode(text.trim())
        .map_err(|_| "is not base64".to_owned())?;
    <[u8; 32]>::try_from(bytes.as_slice()).map_err(|_| format!("is {} bytes, not 32", bytes.len()))
}

impl Keyring {
    pub fn new(api: Option<&str>, receiver: Option<&str>) -> Result<Keyring, String> {
        Ok(Keyring {
            api: api.map(parse_key).transpose()?,
            receiver: receiver.map(parse_key).transpose()?,
        })
    }

    /// The keys of a service config (`[seal]`, `DUELLSYNC_SEAL__*`): an unset key is absent,
    /// a key that cannot be read or is not 32 bytes of base64 is a configuration error.
    pub fn from_section(
        section: &SealSection,
        env: &[(String, String)],
    ) -> Result<Keyring, ConfigError> {
        let lookup = |name: &str| {
            env.iter()
                .rev()
                .find(|(k, _)| k == name)
                .map(|(_, v)| v.clone())
        };
        let mut problems = Vec::new();
        let mut one = |key: &str, secret: &Secret| -> Option<[u8; 32]> {
            if matches!(secret.source(), duellsync_settings::SecretSource::Missing) {
                return None;
            }
            let mut s = secret.clone();
            let text = match s.resolve(&lookup) {
                Ok(()) => s.expose().to_owned(),
                Err(e) => {
                    problems.push(Problem {
                        key: key.to_owned(),
                        message: e,
                    });
                    return None;
                }
            };
            match parse_key(&text) {
                Ok(k) => Some(k),
                Err(e) => {
                    problems.push(Problem {
                        key: key.to_owned(),
                        message: format!(
                            "{e}; make a key with `syncctl store keygen` (32 random bytes, base64)"
                        ),
                    });
                    None
                }
            }
        };
        let api = one("seal.api_key", &section.api_key);
        let receiver = one("seal.receiver_key", &section.receiver_key);
        if problems.is_empty() {
            Ok(Keyring { api, receiver })
        } else {
            Err(ConfigError { problems })
        }
    }

    pub fn has(&self, class: KeyClass) -> bool {
        self.key(class).is_some()
    }

    fn key(&self, class: KeyClass) -> Option<&[u8; 32]> {
        match class {
            KeyClass::Api => self.api.as_ref(),
            KeyClass::Receiver => self.receiver.as_ref(),
        }
    }

    /// Seals `plain` for `<store>/<key>` with the key its class needs.
    pub fn seal(&self, store: &str, key: &str, plain: &str) -> Result<String, String> {
        let class = KeyClass::of(key);
        let k = self.key(class).ok_or_else(|| {
            format!(
                "{key} cannot be sealed: this process has no {} sealing key (DUELLSYNC_SEAL__{}_KEY)",
                class.name(),
                class.name().to_ascii_uppercase()
            )
        })?;
        let cipher = XChaCha20Poly1305::new(Key::from_slice(k));
        let nonce: [u8; 24] = rand::random();
        let aad = format!("{store}/{key}");
        let ct = cipher
            .encrypt(
                XNonce::from_slice(&nonce),
                Payload {
                    msg: plain.as_bytes(),
                    aad: aad.as_bytes(),
                },
            )
            .map_err(|_| format!("{key} cannot be sealed"))?;
        let mut blob = nonce.to_vec();
        blob.extend_from_slice(&ct);
        Ok(format!("v1:{}:{}", class.name(), B64.encode(blob)))
    }
}

impl Unseal for Keyring {
    fn unseal(&self, sealed: &str, aad: &str) -> Result<String, String> {
        let mut parts = sealed.splitn(3, ':');
        let (Some("v1"), Some(class), Some(blob)) = (parts.next(), parts.next(), parts.next())
        else {
            return Err("is not a sealed value of this engine (v1:<key>:<data>)".into());
        };
        let class = match class {
            "api" => KeyClass::Api,
            "receiver" => KeyClass::Receiver,
            other => return Err(format!("is sealed with an unknown key `{other}`")),
        };
        let k = self.key(class).ok_or_else(|| {
            format!(
                "is sealed with the {} key, which this process does not have (DUELLSYNC_SEAL__{}_KEY)",
                class.name(),
                class.name().to_ascii_uppercase()
            )
        })?;
        let blob = B64
            .decode(blob)
            .map_err(|_| "is a damaged sealed value (not base64)".to_owned())?;
        if blob.len() < 24 + 16 {
            return Err("is a damaged sealed value (too short)".into());
        }
        let (nonce, ct) = blob.split_at(24);
        let cipher = XChaCha20Poly1305::new(Key::from_slice(k));
        let plain = cipher
            .decrypt(
                XNonce::from_slice(nonce),
                Payload {
                    msg: ct,
                    aad: aad.as_bytes(),
                },
            )
            .map_err(|_| {
                "cannot be opened: sealed with another key, or for another store or key".to_owned()
            })?;
        String::from_utf8(plain).map_err(|_| "opens to something that is not text".into())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn both() -> Keyring {
        Keyring::new(Some(&generate_key()), Some(&generate_key())).unwrap()
    }

    #[test]
    fn a_sealed_secret_opens_only_for_its_store_and_key() {
        let keys = both();
        let sealed = keys.seal("s1", "woo.consumer_secret", "cs_123").unwrap();
        assert!(sealed.starts_with("v1:api:"));
        assert!(!sealed.contains("cs_123"));
        assert_eq!(
            keys.unseal(&sealed, "s1/woo.consumer_secret").unwrap(),
            "cs_123"
        );
        assert!(keys.unseal(&sealed, "s2/woo.consumer_secret").is_err());
        assert!(keys.unseal(&sealed, "s1/woo.consumer_key").is_err());
        // Sealing twice gives two values (fresh nonces) that open to the same secret.
        assert_ne!(
            sealed,
            keys.seal("s1", "woo.consumer_secret", "cs_123").unwrap()
        );
        let other = both();
        assert!(other.unseal(&sealed, "s1/woo.consumer_secret").is_err());
    }

    #[test]
    fn the_receiver_key_opens_webhook_secrets_and_never_api_credentials() {
        let api = generate_key();
        let receiver = generate_key();
        let all = Keyring::new(Some(&api), Some(&receiver)).unwrap();
        let ingest = Keyring::new(None, Some(&receiver)).unwrap();
        let hook = all.seal("s1", "woo.webhook_secret", "hook").unwrap();
        assert!(hook.starts_with("v1:receiver:"));
        assert_eq!(
            ingest.unseal(&hook, "s1/woo.webhook_secret").unwrap(),
            "hook"
        );
        let token = all
            .seal("s1", "duell.client_token", "t".repeat(40).as_str())
            .unwrap();
        let err = ingest.unseal(&token, "s1/duell.client_token").unwrap_err();
        assert!(err.contains("api key"), "{err}");
        assert!(ingest.seal("s1", "duell.client_token", "x").is_err());
    }

    #[test]
    fn bad_keys_and_damaged_values_are_errors_not_panics() {
        assert!(Keyring::new(Some("short"), None).is_err());
        assert!(Keyring::new(Some(&B64.encode([0u8; 16])), None).is_err());
        let keys = both();
        for bad in [
            "",
            "v1",
            "v1:api:",
            "v1:api:!!!",
            "v1:zzz:AAAA",
            "v2:api:AAAA",
            "v1:api:AAAA",
        ] {
            assert!(keys.unseal(bad, "s1/woo.consumer_key").is_err(), "{bad}");
        }
        assert!(!format!("{keys:?}").contains('='));
    }
}
