//! order-importer configuration.

use std::path::PathBuf;
use std::time::Duration;

use duellsync_settings::service::{
    AdminSection, NatsSection, SealSection, ServiceConfig, TelemetrySection,
};
use serde::Deserialize;

#[derive(Debug, Clone, Deserialize)]
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
    /// Where the sled state lives.
    pub state_dir: PathBuf,
    pub importer: ImporterSection,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            nats: NatsSection::default(),
            telemetry: TelemetrySection::default(),
            admin: AdminSection::default(),
            shard: String::new(),
            seal: SealSection::default(),
            state_dir: PathBuf::from("/var/lib/duellsync/order-importer"),
            importer: ImporterSection::default(),
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

    /// Checks the importer section; every problem at once.
    pub fn validate(&self) -> Result<(), duellsync_settings::ConfigError> {
        let i = &self.importer;
        let mut problems = Vec::new();
        let mut p = |key: &str, message: String| {
            problems.push(duellsync_settings::Problem {
                key: format!("importer.{key}"),
                message,
            })
        };
        if i.concurrency == 0 || i.concurrency > 64 {
            p(
                "concurrency",
                format!("{} is out of range; use 1 to 64", i.concurrency),
            );
        }
        if i.duell_timeout < Duration::from_millis(100) {
            p(
                "duell_timeout",
                "is too short; DUELL answers in seconds (the default is \"30s\")".into(),
            );
        }
        if i.ack_wait < Duration::from_secs(1) {
            p(
                "ack_wait",
                "use at least \"1s\" (the default is \"30s\")".into(),
            );
        }
        if i.max_deliveries == 0 {
            p(
                "max_deliveries",
                "use at least 1 (the default is 10)".into(),
            );
        }
        if i.lookup_cache_ttl > Duration::from_secs(24 * 3600) {
            p(
                "lookup_cache_ttl",
                "use at most \"24h\" (the default is \"10m\"; \"0s\" turns it off)".into(),
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
pub struct ImporterSection {
    /// Orders imported at once per store (different orders only: one order is always handled by
    /// one task at a time).
    pub concurrency: usize,
    /// Whole-request timeout of DUELL calls. A write that times out has an unknown outcome.
    #[serde(with = "duellsync_settings::duration")]
    pub duell_timeout: Duration,
    /// After a write's outcome became unknown, how long an empty order lookup is not yet trusted
    /// as proof of absence (a slow DUELL may still apply the write).
    #[serde(with = "duellsync_settings::duration")]
    pub lookup_settle: Duration,
    /// How long JetStream waits for an ack before redelivering; long handlers send progress.
    #[serde(with = "duellsync_settings::duration")]
    pub ack_wait: Duration,
    /// Deliveries after which a message that keeps failing is dead-lettered. With the backoff
    /// below, the defaults ride out about two hours of DUELL being down before an order needs
    /// a replay (or its next observation) to be imported.
    pub max_deliveries: u64,
    /// Longest redelivery backoff.
    #[serde(with = "duellsync_settings::duration")]
    pub backoff_cap: Duration,
    /// How long a DUELL look-up that found a product (by SKU) or a customer (for the same phone
    /// and e-mail) is reused for the next orders; `0s` asks DUELL every time. A product DUELL
    /// changes is forgotten when the change-poller observes it, everything when DUELL refuses an
    /// order.
    #[serde(with = "duellsync_settings::duration")]
    pub lookup_cache_ttl: Duration,
    /// Shop name in DUELL's `reference_comment` ("Ordre 1234 <site_name>"); empty = the host
    /// of the store's WooCommerce URL.
    pub site_name: String,
}

impl Default for ImporterSection {
    fn default() -> Self {
        ImporterSection {
            concurrency: 4,
            duell_timeout: Duration::from_secs(30),
            lookup_settle: Duration::from_secs(60),
            ack_wait: Duration::from_secs(30),
            max_deliveries: 30,
            backoff_cap: Duration::from_secs(300),
            lookup_cache_ttl: Duration::from_secs(600),
            site_name: String::new(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_lookup_cache_ttl_is_bounded_and_zero_turns_it_off() {
        let mut c = Config::default();
        assert_eq!(c.importer.lookup_cache_ttl, Duration::from_secs(600));
        c.importer.lookup_cache_ttl = Duration::ZERO;
        assert!(c.validate().is_ok());
        c.importer.lookup_cache_ttl = Duration::from_secs(2 * 86_400);
        let e = c.validate().expect_err("too long");
        assert_eq!(e.problems.len(), 1);
        assert_eq!(e.problems[0].key, "importer.lookup_cache_ttl");
    }
}
