//! Sections every service's config shares, and loading a service config from its file and the
//! environment.

use std::path::{Path, PathBuf};

use serde::de::DeserializeOwned;
use serde::Deserialize;

use crate::{load_layered, ConfigError};

/// Where NATS is and how this service proves who it is. Which subjects each service may use
/// is the server's business (deploy/nats/permissions.toml); the service only brings its
/// credentials and checks the server's certificate.
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct NatsSection {
    /// `nats://host:4222` or `tls://host:4222`; several servers separated by commas.
    pub url: String,
    /// Stream replicas: 1 for one server, 3 for a production cluster.
    pub replicas: usize,
    /// File holding this service's NKey seed (`SU…`), for a server that lists its users' public
    /// keys (the deployment's static accounts). A Kubernetes Secret mounted as a file.
    pub nkey_file: Option<PathBuf>,
    /// A JWT credentials file (`.creds`), for a server run with decentralized (operator) auth.
    pub credentials_file: Option<PathBuf>,
    /// PEM file of the CA that signed the server's certificate. Setting it requires TLS.
    pub tls_ca_file: Option<PathBuf>,
    /// Client certificate and key (PEM), for a server that also verifies clients (mutual TLS).
    pub tls_cert_file: Option<PathBuf>,
    pub tls_key_file: Option<PathBuf>,
    /// Accept an unencrypted connection to a server that is not on this machine. Off: outside
    /// a lab, credentials and events must not cross the network in clear.
    pub allow_plaintext: bool,
}

impl Default for NatsSection {
    fn default() -> Self {
        NatsSection {
            url: "nats://127.0.0.1:4222".into(),
            replicas: 1,
            nkey_file: None,
            credentials_file: None,
            tls_ca_file: None,
            tls_cert_file: None,
            tls_key_file: None,
            allow_plaintext: false,
        }
    }
}

#[derive(Debug, Clone, Copy, Default, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    #[default]
    Json,
    Text,
}

#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct TelemetrySection {
    /// `RUST_LOG`-style filter.
    pub log_filter: String,
    pub log_format: LogFormat,
    /// OTLP/HTTP endpoint (Jaeger: `http://jaeger-collector:4318`); empty = no export.
    pub otlp_endpoint: String,
}

impl Default for TelemetrySection {
    fn default() -> Self {
        TelemetrySection {
            log_filter: "info".into(),
            log_format: LogFormat::Json,
            otlp_endpoint: String::new(),
        }
    }
}

#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct AdminSection {
    /// Address of `/healthz`, `/readyz` and `/metrics`.
    pub listen: String,
}

impl Default for AdminSection {
    fn default() -> Self {
        AdminSection {
            listen: "0.0.0.0:9090".into(),
        }
    }
}

/// A list written as a TOML array (`["a", "b"]`) or as one comma-separated string (`"a,b"`,
/// convenient in an environment variable such as `DUELLSYNC_SHARD=a,b`). A string that starts
/// like an array but is not valid TOML is refused rather than split at its commas.
pub fn string_list<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Vec<String>, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum List {
        Many(Vec<String>),
        One(String),
    }
    Ok(match List::deserialize(d)? {
        List::Many(v) => v,
        List::One(s) if s.trim_start().starts_with('[') => {
            return Err(serde::de::Error::custom(format!(
                "`{}` is not a TOML array of strings; write [\"a\",\"b\"] (quoted ids) or a,b",
                s.chars().take(80).collect::<String>()
            )));
        }
        List::One(s) => s
            .split(',')
            .map(|p| p.trim().to_owned())
            .filter(|p| !p.is_empty())
            .collect(),
    })
}

/// The process environment as pairs (read once in `main`; libraries take it as an argument).
pub fn env_vars() -> Vec<(String, String)> {
    std::env::vars().collect()
}

/// Loads a service config: defaults, then the TOML file (if any), then `DUELLSYNC_*`
/// environment variables (`__` nests). Store overrides (`DUELLSYNC_STORES__…`) belong to the
/// store files and are skipped here.
pub fn load_service_config<T: DeserializeOwned>(
    path: Option<&Path>,
    env: &[(String, String)],
) -> Result<T, ConfigError> {
    let text =
        match path {
            Some(p) => Some(std::fs::read_to_string(p).map_err(|e| {
                ConfigError::one(p.display().to_string(), format!("cannot read: {e}"))
            })?),
            None => None,
        };
    let env: Vec<(String, String)> = env
        .iter()
        .filter(|(k, _)| !k.starts_with("DUELLSYNC_STORES__"))
        .cloned()
        .collect();
    let name = path
        .map(|p| p.display().to_string())
        .unwrap_or_else(|| "environment".into());
    load_layered(&name, text.as_deref(), "DUELLSYNC_", &env)
}

/// What the shared loader needs to know of a service config.
pub trait ServiceConfig: DeserializeOwned {
    /// File or directory with the store settings.
    fn stores_path(&self) -> &Path;
    /// Store ids this instance serves (its shard); empty = all.
    fn shard(&self) -> &[String];
    /// Which store secrets the service uses.
    fn secrets_needed(&self) -> crate::Needs {
        crate::Needs::ALL
    }
}

/// Loads a service config and the stores of its shard, validating both.
pub fn load_service<T: ServiceConfig>(
    config_path: Option<&Path>,
    env: &[(String, String)],
) -> Result<(T, crate::Stores), ConfigError> {
    let config: T = load_service_config(config_path, env)?;
    let stores = crate::load_stores_for(config.stores_path(), env, config.secrets_needed())?
        .select(config.shard())?;
    Ok((config, stores))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, Deserialize)]
    struct Shard {
        #[serde(deserialize_with = "string_list")]
        shard: Vec<String>,
    }

    #[test]
    fn a_shard_is_a_list_or_a_comma_separated_string() {
        let env = |v: &str| vec![("DUELLSYNC_SHARD".to_owned(), v.to_owned())];
        let a: Shard = crate::load_layered("env", None, "DUELLSYNC_", &env("a, b")).unwrap();
        assert_eq!(a.shard, vec!["a", "b"]);
        let b: Shard =
            crate::load_layered("env", None, "DUELLSYNC_", &env("[\"a\",\"b\"]")).unwrap();
        assert_eq!(b.shard, vec!["a", "b"]);
        let c: Shard = crate::load_layered("env", None, "DUELLSYNC_", &env("solo")).unwrap();
        assert_eq!(c.shard, vec!["solo"]);
        let d: Shard = crate::load_layered("env", None, "DUELLSYNC_", &env("acme,bolt")).unwrap();
        assert_eq!(d.shard, vec!["acme", "bolt"], "docs/operations.md §4");
    }

    #[test]
    fn a_broken_array_is_refused_not_split_at_its_commas() {
        let env = |v: &str| vec![("DUELLSYNC_SHARD".to_owned(), v.to_owned())];
        for bad in ["[\"acme\", bolt]", "[acme,bolt]", "[\"acme\""] {
            let err = crate::load_layered::<Shard>("env", None, "DUELLSYNC_", &env(bad))
                .unwrap_err()
                .to_string();
            assert!(err.contains("not a TOML array"), "{bad}: {err}");
        }
    }
}
