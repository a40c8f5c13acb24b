//! console configuration: defaults → file → `DUELLSYNC_*` environment.

use std::time::Duration;

use duellsync_settings::service::{
    AdminSection, LogFormat, NatsSection, SealSection, ServiceConfig, TelemetrySection,
};
use duellsync_settings::Secret;
use serde::Deserialize;

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Config {
    pub nats: NatsSection,
    pub telemetry: TelemetrySection,
    pub admin: AdminSection,
    /// Not used: the console serves every store. Accepted so that one environment fits every
    /// service of a deployment.
    pub shard: String,
    /// Not used: the console keeps its state in NATS (accepted for the same reason).
    pub state_dir: Option<std::path::PathBuf>,
    /// Both keys: the console seals what a retailer types and tests a store's connection.
    pub seal: SealSection,
    pub console: ConsoleSection,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ConsoleSection {
    /// Address of the pages (behind the Ingress, which terminates TLS).
    pub listen: String,
    /// The operator's login name.
    pub operator_user: String,
    /// The operator's password as an argon2id hash (`console hash-password`), from a
    /// Kubernetes Secret. Unset: the first-run page creates the operator in the console bucket.
    pub operator_password_hash: Secret,
    /// Cookies only over https (`Secure`). Off only for a console on plain http off localhost.
    pub secure_cookies: bool,
    /// The console's public address, for invitation links (`https://sync.example.com`).
    pub public_url: String,
    /// How long a session lasts without use.
    #[serde(with = "duellsync_settings::duration")]
    pub session_ttl: Duration,
    /// How long an invitation link can be used.
    #[serde(with = "duellsync_settings::duration")]
    pub invitation_ttl: Duration,
    /// Where the connection test asks for this host's public address (DUELL firewall advice).
    pub egress_ip_url: String,
}

impl Default for ConsoleSection {
    fn default() -> Self {
        ConsoleSection {
            listen: "0.0.0.0:8088".into(),
            operator_user: "operator".into(),
            operator_password_hash: Secret::default(),
            secure_cookies: true,
            public_url: String::new(),
            session_ttl: Duration::from_secs(12 * 3600),
            invitation_ttl: Duration::from_secs(72 * 3600),
            egress_ip_url: "https://checkip.amazonaws.com".into(),
        }
    }
}

impl ServiceConfig for Config {
    fn shard(&self) -> &str {
        &self.shard
    }
    fn seal(&self) -> &SealSection {
        &self.seal
    }
}

impl Config {
    pub fn telemetry_options(&self) -> duellsync_telemetry::TelemetryOptions {
        let mut o = duellsync_telemetry::TelemetryOptions::new(crate::SERVICE);
        o.log_filter = self.telemetry.log_filter.clone();
        o.json_logs = self.telemetry.log_format == LogFormat::Json;
        o.otlp_endpoint = Some(self.telemetry.otlp_endpoint.clone()).filter(|e| !e.is_empty());
        o
    }

    /// Checks what serde cannot; every problem at once.
    pub fn validate(&self) -> Result<(), duellsync_settings::ConfigError> {
        let mut problems = Vec::new();
        if self.console.listen.parse::<std::net::SocketAddr>().is_err() {
            problems.push(duellsync_settings::Problem {
                key: "console.listen".into(),
                message: format!(
                    "`{}` is not an address; write e.g. \"0.0.0.0:8088\"",
                    self.console.listen
                ),
            });
        }
        if self.console.session_ttl < Duration::from_secs(60) {
            problems.push(duellsync_settings::Problem {
                key: "console.session_ttl".into(),
                message: "is shorter than a minute; use e.g. \"12h\"".into(),
            });
        }
        if problems.is_empty() {
            Ok(())
        } else {
            Err(duellsync_settings::ConfigError { problems })
        }
    }
}
