//! Secrets in config: where they come from, and a value that never prints.

use std::path::PathBuf;

use secrecy::{ExposeSecret, SecretString};
use serde::Deserialize;

/// Where a secret is read from. A plain string is accepted for local demos; `syncctl config
/// check` warns about it.
#[derive(Debug, Clone, Deserialize, PartialEq, Eq)]
#[serde(untagged)]
pub enum SecretSource {
    Env {
        env: String,
    },
    File {
        file: PathBuf,
    },
    /// Encrypted in the store registry (`duellsync-registry`): opened with a sealing key the
    /// process holds, never written in plain text anywhere.
    Sealed {
        sealed: String,
    },
    #[serde(skip)]
    Missing,
    Literal(String),
}

/// Opens secrets sealed in the store registry. The keys and the cipher live in
/// `duellsync-registry`; settings only ask.
pub trait Unseal {
    /// The plain value of `sealed`, which was sealed for `aad` (`<store>/<key>`).
    fn unseal(&self, sealed: &str, aad: &str) -> Result<String, String>;
}

/// A process without sealing keys.
#[derive(Debug, Clone, Copy)]
pub struct NoKeys;

impl Unseal for NoKeys {
    fn unseal(&self, _sealed: &str, _aad: &str) -> Result<String, String> {
        Err("is sealed in the store registry and this process has no sealing key; give it DUELLSYNC_SEAL__API_KEY and DUELLSYNC_SEAL__RECEIVER_KEY".into())
    }
}

/// A resolved secret. `Debug` and `Display` never show the value.
#[derive(Clone, Deserialize)]
#[serde(from = "SecretSource")]
pub struct Secret {
    source: SecretSource,
    value: Option<SecretString>,
}

impl From<SecretSource> for Secret {
    fn from(source: SecretSource) -> Self {
        let value = match &source {
            SecretSource::Literal(v) => Some(SecretString::from(v.clone())),
            _ => None,
        };
        Secret { source, value }
    }
}

impl Default for Secret {
    fn default() -> Self {
        Secret {
            source: SecretSource::Missing,
            value: None,
        }
    }
}

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match &self.source {
            SecretSource::Env { env } => write!(f, "Secret(env {env})"),
            SecretSource::File { file } => write!(f, "Secret(file {})", file.display()),
            SecretSource::Literal(_) => write!(f, "Secret([redacted])"),
            SecretSource::Sealed { .. } => write!(f, "Secret(sealed)"),
            SecretSource::Missing => write!(f, "Secret(missing)"),
        }
    }
}

impl Secret {
    /// A literal secret (tests, the demo).
    pub fn literal(v: impl Into<String>) -> Self {
        Secret::from(SecretSource::Literal(v.into()))
    }

    pub fn source(&self) -> &SecretSource {
        &self.source
    }

    /// Reads the value from the environment or the file. `env` is passed in so that tests never
    /// touch the process environment.
    pub fn resolve(&mut self, env: &dyn Fn(&str) -> Option<String>) -> Result<(), String> {
        self.resolve_with(env, &NoKeys, "", true)
    }

    /// Like [`Secret::resolve`], opening a sealed secret with `unseal` (`aad` binds it to its
    /// store and key). With `references` false, `{ env }` and `{ file }` are only checked to be
    /// there, not read: the store registry validates a record without the environment of the
    /// services that will read it.
    pub fn resolve_with(
        &mut self,
        env: &dyn Fn(&str) -> Option<String>,
        unseal: &dyn Unseal,
        aad: &str,
        references: bool,
    ) -> Result<(), String> {
        if !references
            && matches!(
                self.source,
                SecretSource::Env { .. } | SecretSource::File { .. }
            )
        {
            return Ok(());
        }
        match &self.source {
            SecretSource::Sealed { sealed } => {
                let v = unseal.unseal(sealed, aad)?;
                self.value = Some(SecretString::from(v));
                Ok(())
            }
            SecretSource::Env { env: name } => match env(name) {
                Some(v) if !v.is_empty() => {
                    self.value = Some(SecretString::from(v));
                    Ok(())
                }
                _ => Err(format!(
                    "environment variable {name} is not set; set it (e.g. from a Kubernetes Secret)"
                )),
            },
            SecretSource::File { file } => match std::fs::read_to_string(file) {
                Ok(v) => {
                    let v = v.trim_end_matches(['\n', '\r']).to_owned();
                    if v.is_empty() {
                        return Err(format!("secret file {} is empty", file.display()));
                    }
                    self.value = Some(SecretString::from(v));
                    Ok(())
                }
                Err(e) => Err(format!(
                    "cannot read secret file {}: {e}; mount the Secret there",
                    file.display()
                )),
            },
            SecretSource::Literal(_) => Ok(()),
            SecretSource::Missing => {
                Err("missing; set it as { env = \"NAME\" } or { file = \"/path\" }".into())
            }
        }
    }

    pub fn is_set(&self) -> bool {
        self.value
            .as_ref()
            .map(|v| !v.expose_secret().is_empty())
            .unwrap_or(false)
    }

    /// The value, for the one place that needs it (an HTTP client). Empty when unresolved.
    pub fn expose(&self) -> &str {
        self.value.as_ref().map(|v| v.expose_secret()).unwrap_or("")
    }

    /// The value as a `SecretString`, for clients that keep it.
    pub fn to_secret_string(&self) -> SecretString {
        SecretString::from(self.expose().to_owned())
    }

    pub fn is_literal(&self) -> bool {
        matches!(self.source, SecretSource::Literal(_))
    }

    pub fn is_sealed(&self) -> bool {
        matches!(self.source, SecretSource::Sealed { .. })
    }
}

impl PartialEq for Secret {
    fn eq(&self, other: &Self) -> bool {
        self.source == other.source && self.expose() == other.expose()
    }
}
