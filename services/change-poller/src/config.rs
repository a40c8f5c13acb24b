//! change-poller configuration.

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
    pub poller: PollerSection,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            nats: NatsSection::default(),
            telemetry: TelemetrySection::default(),
            admin: AdminSection::default(),
            shard: String::new(),
            seal: SealSection::default(),
            state_dir: PathBuf::from("/var/lib/duellsync/change-poller"),
            poller: PollerSection::default(),
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
}

#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct PollerSection {
    /// How far before the last seen `last_update_date` the next product poll starts, so an edit
    /// made while a poll ran is not skipped (DUELL's timestamps have second resolution).
    #[serde(with = "duellsync_settings::duration")]
    pub product_overlap: Duration,
    /// Same for WooCommerce order cursors.
    #[serde(with = "duellsync_settings::duration")]
    pub order_overlap: Duration,
    /// On a store's first run without `orders_from_date`, how far back orders are looked for.
    #[serde(with = "duellsync_settings::duration")]
    pub first_run_lookback: Duration,
    /// Unconfirmed publishes in flight while a poll appends facts.
    pub publish_in_flight: usize,
    /// DUELL customer orders viewed per status-poll batch.
    pub status_batch: usize,
    /// Pause between status batches (DUELL's own plugin waits 0.5 s).
    #[serde(with = "duellsync_settings::duration")]
    pub status_batch_pause: Duration,
}

impl Default for PollerSection {
    fn default() -> Self {
        PollerSection {
            product_overlap: Duration::from_secs(120),
            order_overlap: Duration::from_secs(300),
            first_run_lookback: Duration::from_secs(24 * 3600),
            publish_in_flight: 256,
            status_batch: 10,
            status_batch_pause: Duration::from_millis(500),
        }
    }
}
