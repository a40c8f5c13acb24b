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

/// The keys that open secrets sealed in the store registry (`duellsync-registry`). Two keys,
/// so that the internet-facing webhook-ingest holds only the one for webhook and notice
/// secrets and can never open API credentials.
#[derive(Debug, Clone, Default, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct SealSection {
    /// Opens WooCommerce keys and DUELL tokens: 32 random bytes, base64
    /// (`syncctl store keygen`), or `{ file = "/run/secrets/…" }`.
    pub api_key: crate::Secret,
    /// Opens webhook and change-notice secrets.
    pub receiver_key: crate::Secret,
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
/// environment variables (`__` nests). Store settings live in the store registry, so a
/// `DUELLSYNC_STORES__…` variable is refused like any unknown key.
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
    let name = path
        .map(|p| p.display().to_string())
        .unwrap_or_else(|| "environment".into());
    load_layered(&name, text.as_deref(), "DUELLSYNC_", env)
}

/// What the shared loader needs to know of a service config.
pub trait ServiceConfig: DeserializeOwned {
    /// The shard this instance serves: the stores whose registry record names it (`shard`);
    /// empty = every store.
    fn shard(&self) -> &str;
    /// The keys that open sealed secrets.
    fn seal(&self) -> &SealSection;
    /// Which store secrets the service uses.
    fn secrets_needed(&self) -> crate::Needs {
        crate::Needs::ALL
    }
}

/// One part of a configuration check: a config file or a set of stores.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub struct CheckSection {
    pub title: String,
    pub problems: Vec<CheckProblem>,
    pub warnings: Vec<String>,
    /// The stores it defines or would serve.
    pub stores: Vec<String>,
}

#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub struct CheckProblem {
    pub key: String,
    pub message: String,
}

impl From<&crate::Problem> for CheckProblem {
    fn from(p: &crate::Problem) -> Self {
        CheckProblem {
            key: p.key.clone(),
            message: p.message.clone(),
        }
    }
}

/// The result of `<service> --check-config`, printed as JSON on stdout.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub struct CheckReport {
    pub service: String,
    pub ok: bool,
    pub sections: Vec<CheckSection>,
}

/// A service's own check of its configuration (`--check-config`): its config file and
/// environment with its own `Config` type and `validate`. (Stores are not part of it: they are
/// validated when they are saved in the registry.)
/// `syncctl config check --service` runs the service binary with `--check-config` and reads
/// this report, so that the CLI never has to link the services to know their rules.
pub fn check_config<T: ServiceConfig>(
    service: &str,
    path: Option<&Path>,
    env: &[(String, String)],
    validate: impl Fn(&T) -> Result<(), ConfigError>,
) -> CheckReport {
    let problems = |e: ConfigError| e.problems.iter().map(CheckProblem::from).collect();
    let mut section = CheckSection {
        title: format!(
            "service {service} {}",
            path.map(|p| p.display().to_string())
                .unwrap_or_else(|| "(environment)".into())
        ),
        problems: Vec::new(),
        warnings: Vec::new(),
        stores: Vec::new(),
    };
    let config: T = match load_service_config(path, env) {
        Ok(c) => c,
        Err(e) => {
            section.problems = problems(e);
            return CheckReport {
                service: service.to_owned(),
                ok: false,
                sections: vec![section],
            };
        }
    };
    if let Err(e) = validate(&config) {
        section.problems = problems(e);
    }
    CheckReport {
        service: service.to_owned(),
        ok: section.problems.is_empty(),
        sections: vec![section],
    }
}

/// Prints a [`CheckReport`] as JSON on stdout and returns the exit code: 0 valid, 2 invalid.
pub fn print_check_report(report: &CheckReport) -> i32 {
    match serde_json::to_string_pretty(report) {
        Ok(text) => println!("{text}"),
        Err(e) => {
            eprintln!("cannot print the report: {e}");
            return 1;
        }
    }
    if report.ok {
        0
    } else {
        2
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, Deserialize)]
    struct Shard {
        #[serde(deserialize_with = "string_list")]
        shard: Vec<String>,
    }

    #[derive(Debug, Default, Deserialize)]
    #[serde(default, deny_unknown_fields)]
    struct Svc {
        shard: String,
        seal: SealSection,
        limit: u32,
    }

    impl ServiceConfig for Svc {
        fn shard(&self) -> &str {
            &self.shard
        }
        fn seal(&self) -> &SealSection {
            &self.seal
        }
    }

    #[test]
    fn a_config_check_reports_the_services_own_rules() {
        let dir = tempfile::tempdir().unwrap();
        let cfg = dir.path().join("svc.toml");
        std::fs::write(&cfg, "shard = \"a\"\nlimit = 0\n").unwrap();
        let rule = |c: &Svc| {
            if c.limit == 0 {
                Err(ConfigError::one("limit", "0 is too small; use 1 or more"))
            } else {
                Ok(())
            }
        };
        let report = check_config::<Svc>("svc", Some(&cfg), &[], rule);
        assert!(!report.ok);
        assert_eq!(report.sections[0].problems[0].key, "limit");
        std::fs::write(&cfg, "limitt = 1\n").unwrap();
        let report = check_config::<Svc>("svc", Some(&cfg), &[], rule);
        assert!(report.sections[0].problems[0].message.contains("limitt"));
        std::fs::write(&cfg, "limit = 1\n").unwrap();
        assert!(check_config::<Svc>("svc", Some(&cfg), &[], rule).ok);
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
