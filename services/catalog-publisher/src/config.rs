//! catalog-publisher configuration.

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
    pub publisher: PublisherSection,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            nats: NatsSection::default(),
            telemetry: TelemetrySection::default(),
            admin: AdminSection::default(),
            shard: String::new(),
            seal: SealSection::default(),
            state_dir: PathBuf::from("/var/lib/duellsync/catalog-publisher"),
            publisher: PublisherSection::default(),
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
pub struct PublisherSection {
    /// A product written to WooCommerce is not written again sooner than this: a storm of
    /// changes to one product becomes a few writes carrying the latest values.
    #[serde(with = "duellsync_settings::duration")]
    pub min_write_interval: Duration,
    /// How long a change waits for others to fill its batch (full batches go at once).
    #[serde(with = "duellsync_settings::duration")]
    pub linger: Duration,
    /// Items per batch request (WooCommerce's limit is 100).
    pub batch_size: usize,
    /// Items per batch when some of them make WooCommerce download an image: downloads run
    /// inside the request and are what makes real stores time out.
    pub image_batch_size: usize,
    /// Wait before retrying writes after WooCommerce failed (grows to 10× this).
    #[serde(with = "duellsync_settings::duration")]
    pub retry_backoff: Duration,
    /// How long after sending a create (or an image download) whose answer was lost the
    /// publisher waits before reading WooCommerce to learn what it did: a store keeps executing
    /// a request after the client gave up (a batch create of 100 takes ~20 s on a real store),
    /// and a read before it is done would miss products still being made, which would then be
    /// created twice. Longer than the client's request timeout (30 s) and the store's own
    /// execution limit.
    #[serde(with = "duellsync_settings::duration")]
    pub settle_after: Duration,
    /// Most dirty products planned and sent in one round of the writer (it goes again at once
    /// while more are ready). A round holds the plans and request bodies of all its products at
    /// once; a few times `batch_size × woo.max_concurrency` keeps every connection busy, and
    /// more only raises the memory a full sync of a large catalogue leaves behind.
    pub write_round: usize,
    /// The share of its time (1–100 %) a reconciliation or full sync spends reading
    /// WooCommerce and planning: after each page read (and each chunk planned) it pauses in
    /// proportion to how long that step took. It competes for the same CPU, sled log and shop as the live writer, and a stock
    /// change must not wait behind it; a real shop also serves its customers from the database
    /// those pages come from. 100 = no pause.
    pub reconcile_duty_percent: u32,
}

impl PublisherSection {
    /// The pause after a reconciliation step that took `took`.
    pub fn reconcile_pause(&self, took: Duration) -> Duration {
        let duty = self.reconcile_duty_percent.clamp(1, 100);
        took * (100 - duty) / duty
    }
}

impl Default for PublisherSection {
    fn default() -> Self {
        PublisherSection {
            min_write_interval: Duration::from_millis(300),
            linger: Duration::from_millis(50),
            batch_size: 100,
            image_batch_size: 100,
            retry_backoff: Duration::from_secs(2),
            settle_after: Duration::from_secs(120),
            write_round: 500,
            reconcile_duty_percent: 50,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_reconciliation_pauses_in_proportion_to_its_share() {
        let mut cfg = PublisherSection::default();
        let took = Duration::from_millis(40);
        assert_eq!(cfg.reconcile_pause(took), took, "half the time by default");
        cfg.reconcile_duty_percent = 100;
        assert_eq!(cfg.reconcile_pause(took), Duration::ZERO);
        cfg.reconcile_duty_percent = 25;
        assert_eq!(cfg.reconcile_pause(took), Duration::from_millis(120));
        // Out of range is read as the nearest sensible share, never a division by zero.
        cfg.reconcile_duty_percent = 0;
        assert_eq!(cfg.reconcile_pause(took), took * 99);
        cfg.reconcile_duty_percent = 500;
        assert_eq!(cfg.reconcile_pause(took), Duration::ZERO);
    }
}
