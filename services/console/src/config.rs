//! console configuration: defaults → file → `DUELLSYNC_*` environment.

use std::time::Duration;

use duellsync_settings::service::{
    AdminSection, NatsSection, SealSection, ServiceConfig, TelemetrySection,
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
    /// How many reverse proxies (the Ingress controller, a load balancer in front of it) stand
    /// between the clients and the console, each appending the address it was reached from to
    /// `X-Forwarded-For`. Login throttling per client address then takes the address that many
    /// entries from the right of that header: the one the outermost trusted proxy saw. 0 (the
    /// default): the header is ignored, since any client can write it, and the address is the
    /// connection's peer. Set it only when the console cannot be reached except through those
    /// proxies (the NetworkPolicy admits only the Ingress controller); behind an Ingress the
    /// peer is the Ingress for every client, so without it all clients share one throttle.
    pub trusted_proxy_hops: usize,
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
            trusted_proxy_hops: 0,
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
        duellsync_telemetry::TelemetryOptions::from_section(crate::SERVICE, &self.telemetry)
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
        if self.console.trusted_proxy_hops > 10 {
            problems.push(duellsync_settings::Problem {
                key: "console.trusted_proxy_hops".into(),
                message: format!(
                    "{} proxies in a row is not a deployment; write the number of reverse proxies in front of the console (usually 1), or 0",
                    self.console.trusted_proxy_hops
                ),
            });
        }
        if problems.is_empty() {
            Ok(())
        } else {
            Err(duellsync_settings::ConfigError { problems })
        }
    }
}
