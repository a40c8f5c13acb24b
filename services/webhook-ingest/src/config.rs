//! webhook-ingest configuration: defaults → file → `DUELLSYNC_*` environment.

use std::path::PathBuf;
use std::time::Duration;

use duellsync_settings::service::{
    AdminSection, NatsSection, SealSection, ServiceConfig, TelemetrySection,
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
        duellsync_telemetry::TelemetryOptions::from_section(crate::SERVICE, &self.telemetry)
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
        let i = &self.ingest;
        if i.body_limit < 1024 || i.body_limit > 64 * 1024 * 1024 {
            p(
                "ingest.body_limit",
                format!(
                    "{} bytes is out of range; use 1024 to 67108864 (the default is 1048576 = 1 MiB)",
                    i.body_limit
                ),
            );
        }
        if i.small_body < 1024 || i.small_body > 64 * 1024 * 1024 {
            p(
                "ingest.small_body",
                format!(
                    "{} bytes is out of range; use 1024 to 67108864 (the default is 65536)",
                    i.small_body
                ),
            );
        }
        for (key, n, max) in [
            ("ingest.max_in_flight", i.max_in_flight, 10_000),
            ("ingest.max_large_in_flight", i.max_large_in_flight, 1_000),
            ("ingest.max_connections", i.max_connections, 100_000),
        ] {
            if n == 0 || n > max {
                p(key, format!("{n} is out of range; use 1 to {max}"));
            }
        }
        if i.max_connections < i.max_in_flight + i.max_large_in_flight {
            p(
                "ingest.max_connections",
                format!(
                    "{} cannot carry ingest.max_in_flight + ingest.max_large_in_flight ({}) requests; raise it",
                    i.max_connections,
                    i.max_in_flight + i.max_large_in_flight
                ),
            );
        }
        if i.notice_tolerance < Duration::from_secs(10)
            || i.notice_tolerance > Duration::from_secs(300)
        {
            p(
                "ingest.notice_tolerance",
                format!(
                    "{} is out of range; use 10s to 5m (a replay must fall inside the DUELL stream's 10-minute duplicate window)",
                    duellsync_settings::duration::format(i.notice_tolerance)
                ),
            );
        }
        if !(i.notice_rate.is_finite() && i.notice_rate > 0.0 && i.notice_rate <= 10_000.0) {
            p(
                "ingest.notice_rate",
                format!(
                    "{} is out of range; use a number above 0 (notices a second, per store)",
                    i.notice_rate
                ),
            );
        }
        if i.notice_burst == 0 {
            p("ingest.notice_burst", "must be at least 1".into());
        }
        for (key, d) in [
            ("ingest.publish_timeout", i.publish_timeout),
            ("ingest.read_timeout", i.read_timeout),
            ("ingest.header_read_timeout", i.header_read_timeout),
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
        if i.idle_timeout < Duration::from_secs(1) || i.idle_timeout > Duration::from_secs(3600) {
            p(
                "ingest.idle_timeout",
                format!(
                    "{} is out of range; use 1s to 1h (above the ingress controller's upstream keep-alive, 60 s for nginx)",
                    duellsync_settings::duration::format(i.idle_timeout)
                ),
            );
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
    /// A 500-line order as WooCommerce renders it is about 250 KB (measured with woo-sim's
    /// rendering, `the_largest_realistic_order_delivery_fits_the_default_body_limit_with_room`),
    /// so the 1 MiB default takes orders four times that size. It bounds memory: at most
    /// `max_large_in_flight` such bodies are held at once.
    pub body_limit: usize,
    /// Requests whose declared body is at most this many bytes (and at most `body_limit`) use
    /// the `max_in_flight` slots;
    /// larger ones, and bodies of unknown length, the few `max_large_in_flight` slots. Real
    /// deliveries (a few KB) never wait behind large uploads.
    pub small_body: usize,
    /// Requests with a small body handled at once; beyond, the ingest answers 503 with
    /// `Retry-After` at once (load shedding) instead of queueing.
    pub max_in_flight: usize,
    /// Requests with a large or unknown-length body handled at once; beyond, 503.
    pub max_large_in_flight: usize,
    /// Open connections at most (never more than the open-file limit allows); at the limit a
    /// new connection closes the one that has waited longest without a request.
    pub max_connections: usize,
    /// How long a connection may take to send a request head, from its first byte (or from its
    /// opening); a slower one is closed.
    #[serde(with = "duellsync_settings::duration")]
    pub header_read_timeout: Duration,
    /// How long a kept-alive connection may idle between requests. Longer than the ingress
    /// controller's upstream keep-alive (nginx: 60 s), so the proxy, not the ingest, closes an
    /// idle connection (a close racing the proxy's next request would fail that request).
    #[serde(with = "duellsync_settings::duration")]
    pub idle_timeout: Duration,
    /// How long a request waits for JetStream to confirm the event before answering 503
    /// (`DUELLSYNC_INGEST__PUBLISH_TIMEOUT`). Long enough to ride out a broker restart or leader
    /// election, well under WooCommerce's 60 s delivery timeout.
    #[serde(with = "duellsync_settings::duration")]
    pub publish_timeout: Duration,
    /// How long a client may take to send its body before it gets 408 (slow senders must not
    /// hold connections forever).
    #[serde(with = "duellsync_settings::duration")]
    pub read_timeout: Duration,
    /// How far a change notice's signed timestamp may be from now (either way) before it is
    /// refused as a replay. At most 5 minutes: a notice's id is remembered for the DUELL
    /// stream's 10-minute duplicate window, which must cover the whole tolerance.
    #[serde(with = "duellsync_settings::duration")]
    pub notice_tolerance: Duration,
    /// Change notices accepted per second and store (per replica), and the burst above that;
    /// beyond, 429 with `Retry-After`. Each notice costs the poller DUELL requests.
    pub notice_rate: f64,
    pub notice_burst: u32,
    /// Pause between turning `/readyz` to 503 and closing the listener at shutdown, so a load
    /// balancer stops sending first (a few seconds on Kubernetes; 0 in tests).
    #[serde(with = "duellsync_settings::duration")]
    pub drain_delay: Duration,
    /// How long in-flight requests (and their publishes) may take to finish at shutdown.
    #[serde(with = "duellsync_settings::duration")]
    pub shutdown_grace: Duration,
}

impl IngestSection {
    /// The most memory the request bodies held at once can take (each body is held, copied
    /// into the event and encoded: three times), plus what open connections buffer. The pod's
    /// memory limit is set from it (deploy/generate.py).
    pub fn memory_bound(&self) -> usize {
        let bodies = self.max_large_in_flight.saturating_mul(self.body_limit)
            + self.max_in_flight.saturating_mul(self.small_body());
        bodies.saturating_mul(3) + self.max_connections.saturating_mul(32 * 1024)
    }
}

impl IngestSection {
    /// `small_body`, never above `body_limit`.
    pub fn small_body(&self) -> usize {
        self.small_body.min(self.body_limit)
    }
}

impl Default for IngestSection {
    fn default() -> Self {
        IngestSection {
            listen: "0.0.0.0:8080".into(),
            body_limit: 1024 * 1024,
            small_body: 64 * 1024,
            max_in_flight: 64,
            max_large_in_flight: 4,
            max_connections: 512,
            header_read_timeout: Duration::from_secs(10),
            idle_timeout: Duration::from_secs(75),
            publish_timeout: Duration::from_secs(10),
            read_timeout: Duration::from_secs(30),
            notice_tolerance: Duration::from_secs(5 * 60),
            notice_rate: 5.0,
            notice_burst: 50,
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
        assert_eq!(c.ingest.body_limit, 1024 * 1024);
        assert!(
            c.ingest.memory_bound() < 96 * 1024 * 1024,
            "the defaults fit a 128 MiB pod with room for the rest: {}",
            c.ingest.memory_bound()
        );
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
