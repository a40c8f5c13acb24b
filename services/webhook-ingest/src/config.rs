//! webhook-ingest configuration: defaults → file → `DUELLSYNC_*` environment.

use std::path::PathBuf;
use std::time::Duration;

use duellsync_settings::service::{
    AdminSection, LogFormat, NatsSection, SealSection, ServiceConfig, TelemetrySection,
};
use serde::Deserialize;

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Config {
    pub nats: NatsSection,
    pub telemetry: TelemetrySection,
    pub admin: AdminSection,
    /// The shard this instance serves: the stores whose registry record names it
    /// (`DUELLSYNC_SHARD=shard-a`); empty = every store.
    pub shard: String,
    /// Keys that open the store secrets sealed in the registry.
    pub seal: SealSection,
    /// Not used: the ingest keeps no state. Accepted so that one environment
    /// (`DUELLSYNC_STATE_DIR`) fits every service of a deployment.
    pub state_dir: Option<PathBuf>,
    pub ingest: IngestSection,
}

impl ServiceConfig for Config {
    fn shard(&self) -> &str {
        &self.shard
    }
    fn seal(&self) -> &SealSection {
        &self.seal
    }
    /// The ingest verifies signatures; API credentials stay out of its pods.
    fn secrets_needed(&self) -> duellsync_settings::Needs {
        duellsync_settings::Needs::RECEIVER
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
        let mut p = |key: &str, message: String| {
            problems.push(duellsync_settings::Problem {
                key: key.to_owned(),
                message,
            })
        };
        if self.ingest.listen.parse::<std::net::SocketAddr>().is_err() {
            p(
                "ingest.listen",
                format!(
                    "`{}` is not an address; write e.g. \"0.0.0.0:8080\"",
                    self.ingest.listen
                ),
            );
        }
        if self.ingest.body_limit < 1024 || self.ingest.body_limit > 64 * 1024 * 1024 {
            p(
                "ingest.body_limit",
                format!(
                    "{} bytes is out of range; use 1024 to 67108864 (the default is 2097152 = 2 MiB)",
                    self.ingest.body_limit
                ),
            );
        }
        for (key, d) in [
            ("ingest.publish_timeout", self.ingest.publish_timeout),
            ("ingest.read_timeout", self.ingest.read_timeout),
        ] {
            if d < Duration::from_millis(100) || d > Duration::from_secs(55) {
                p(
                    key,
                    format!(
                        "{} is out of range; use 100ms to 55s (WooCommerce gives up after 60 s)",
                        duellsync_settings::duration::format(d)
                    ),
                );
            }
        }
        if problems.is_empty() {
            Ok(())
        } else {
            Err(duellsync_settings::ConfigError { problems })
        }
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct IngestSection {
    /// The public address WooCommerce and DUELL notice senders post to
    /// (`DUELLSYNC_INGEST__LISTEN`). WooCommerce only delivers to ports 80, 443 and 8080.
    pub listen: String,
    /// Largest request body accepted, in bytes (`DUELLSYNC_INGEST__BODY_LIMIT`); larger → 413.
    /// An order with hundreds of lines is well under the 2 MiB default.
    pub body_limit: usize,
    /// How long a request waits for JetStream to confirm the event before answering 503
    /// (`DUELLSYNC_INGEST__PUBLISH_TIMEOUT`). Long enough to ride out a broker restart or leader
    /// election, well under WooCommerce's 60 s delivery timeout.
    #[serde(with = "duellsync_settings::duration")]
    pub publish_timeout: Duration,
    /// How long a client may take to send its body before it gets 408 (slow senders must not
    /// hold connections forever).
    #[serde(with = "duellsync_settings::duration")]
    pub read_timeout: Duration,
    /// Pause between turning `/readyz` to 503 and closing the listener at shutdown, so a load
    /// balancer stops sending first (a few seconds on Kubernetes; 0 in tests).
    #[serde(with = "duellsync_settings::duration")]
    pub drain_delay: Duration,
    /// How long in-flight requests (and their publishes) may take to finish at shutdown.
    #[serde(with = "duellsync_settings::duration")]
    pub shutdown_grace: Duration,
}

impl Default for IngestSection {
    fn default() -> Self {
        IngestSection {
            listen: "0.0.0.0:8080".into(),
            body_limit: 2 * 1024 * 1024,
            publish_timeout: Duration::from_secs(10),
            read_timeout: Duration::from_secs(30),
            drain_delay: Duration::ZERO,
            shutdown_grace: Duration::from_secs(30),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
        pairs
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect()
    }

    #[test]
    fn listen_address_and_limits_come_from_the_environment() {
        let c: Config = duellsync_settings::service::load_service_config(
            None,
            &env(&[
                ("DUELLSYNC_INGEST__LISTEN", "127.0.0.1:9999"),
                ("DUELLSYNC_INGEST__BODY_LIMIT", "4096"),
                ("DUELLSYNC_INGEST__PUBLISH_TIMEOUT", "2s"),
                ("DUELLSYNC_STATE_DIR", "/tmp/ignored"),
            ]),
        )
        .unwrap();
        assert_eq!(c.ingest.listen, "127.0.0.1:9999");
        assert_eq!(c.ingest.body_limit, 4096);
        assert_eq!(c.ingest.publish_timeout, Duration::from_secs(2));
        c.validate().unwrap();
    }

    #[test]
    fn defaults_are_valid_and_match_the_documentation() {
        let c = Config::default();
        assert_eq!(c.ingest.listen, "0.0.0.0:8080");
        assert_eq!(c.ingest.body_limit, 2 * 1024 * 1024);
        c.validate().unwrap();
    }

    #[test]
    fn rejects_unknown_keys_and_bad_values() {
        let err = duellsync_settings::service::load_service_config::<Config>(
            None,
            &env(&[("DUELLSYNC_INGEST__LISTN", "x")]),
        )
        .unwrap_err();
        assert!(err.to_string().contains("listn"), "{err}");
        let mut c = Config::default();
        c.ingest.listen = "nowhere".into();
        c.ingest.body_limit = 10;
        let err = c.validate().unwrap_err();
        assert_eq!(err.problems.len(), 2, "{err}");
    }
}
