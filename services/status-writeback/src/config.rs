//! status-writeback configuration: defaults → file → `DUELLSYNC_*` environment.

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
    /// Where the sled state lives (imported orders, written statuses, processed-event ledger).
    pub state_dir: PathBuf,
    pub writeback: WritebackSection,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            nats: NatsSection::default(),
            telemetry: TelemetrySection::default(),
            admin: AdminSection::default(),
            shard: String::new(),
            seal: SealSection::default(),
            state_dir: PathBuf::from("/var/lib/duellsync/status-writeback"),
            writeback: WritebackSection::default(),
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
        if self.writeback.max_deliveries == 0 {
            problems.push(duellsync_settings::Problem {
                key: "writeback.max_deliveries".into(),
                message: "0 would dead-letter every status change at once; the default is 10"
                    .into(),
            });
        }
        if self.writeback.backoff_cap < Duration::from_millis(10) {
            problems.push(duellsync_settings::Problem {
                key: "writeback.backoff_cap".into(),
                message: format!(
                    "{} is too short; use at least \"10ms\" (the default is \"60s\")",
                    duellsync_settings::duration::format(self.writeback.backoff_cap)
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

#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct WritebackSection {
    /// Deliveries of a status change that keeps failing (WooCommerce down, order not yet
    /// imported here) before it goes to the dead-letter stream with the reason.
    pub max_deliveries: u64,
    /// Longest wait between two deliveries of a failing status change (the wait doubles from
    /// 1 s up to this).
    #[serde(with = "duellsync_settings::duration")]
    pub backoff_cap: Duration,
    /// How long handled event ids are remembered. Longer than the streams keep events (30
    /// days), so no redelivery can outlive its ledger entry.
    #[serde(with = "duellsync_settings::duration")]
    pub ledger_max_age: Duration,
}

impl Default for WritebackSection {
    fn default() -> Self {
        WritebackSection {
            max_deliveries: 10,
            backoff_cap: Duration::from_secs(60),
            ledger_max_age: Duration::from_secs(31 * 24 * 3600),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn environment_overrides_and_defaults_validate() {
        let env = vec![
            (
                "DUELLSYNC_WRITEBACK__MAX_DELIVERIES".to_owned(),
                "3".to_owned(),
            ),
            ("DUELLSYNC_STATE_DIR".to_owned(), "/tmp/wb".to_owned()),
        ];
        let c: Config = duellsync_settings::service::load_service_config(None, &env).unwrap();
        assert_eq!(c.writeback.max_deliveries, 3);
        assert_eq!(c.state_dir, PathBuf::from("/tmp/wb"));
        c.validate().unwrap();
        Config::default().validate().unwrap();
    }

    #[test]
    fn rejects_settings_that_cannot_work() {
        let mut c = Config::default();
        c.writeback.max_deliveries = 0;
        c.writeback.backoff_cap = Duration::ZERO;
        assert_eq!(c.validate().unwrap_err().problems.len(), 2);
    }
}
