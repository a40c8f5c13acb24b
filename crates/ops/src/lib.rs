//! The operator's operations on a running engine, in one library used by `syncctl` and the
//! console: the connection test (SPEC §3.5), full-sync request and progress, status, the sync
//! log, dead letters, explain and the webhook upkeep.
//!
//! None of them talks to a service: they read and write the same JetStream streams the
//! services do (commands to `cmd.<store>.>`, the sync log in `sync.<store>.>`, dead letters in
//! `dlq.<store>.<service>`) and call WooCommerce and DUELL with a store's settings. Each module
//! keeps its command-line rendering (`run`) next to the operation, so that `syncctl` stays a
//! thin command line over this crate.
//!
//! Exit codes of the renderings: 0 ok, 1 a failure (a red check, a failed sync, an unreachable
//! broker), 2 a usage or configuration error (bad arguments, invalid settings, a refused action).
#![forbid(unsafe_code)]

pub mod conn_test;
pub mod dlq;
pub mod events;
pub mod explain;
pub mod log;
pub mod query;
pub mod repair;
pub mod status;
pub mod sync;
pub mod timefmt;
pub mod ui;
pub mod webhooks;

use std::path::PathBuf;
use std::time::Duration;

use duellsync_bus::{Bus, BusOptions};
use duellsync_settings::{StoreSettings, Stores};

pub use ui::Ui;

/// A usage or configuration error: exit code 2.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct UsageError(pub String);

pub fn usage(msg: impl Into<String>) -> anyhow::Error {
    anyhow::Error::new(UsageError(msg.into()))
}

/// How a command ended when it did not fail outright.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    Ok,
    /// It ran, but found or caused a failure (red check, failed sync): exit code 1.
    Failed,
    /// It ran and reported invalid configuration or a refused action itself: exit code 2.
    Invalid,
}

impl Outcome {
    pub fn from_ok(ok: bool) -> Outcome {
        if ok {
            Outcome::Ok
        } else {
            Outcome::Failed
        }
    }
}

/// What every command may need: output, where NATS and the store settings are, the process
/// environment (for secrets and `DUELLSYNC_*` overrides).
pub struct Ctx {
    pub ui: Ui,
    /// Where NATS is and syncctl's own credentials for it.
    nats: duellsync_settings::service::NatsSection,
    stores_path: Option<PathBuf>,
    env: Vec<(String, String)>,
    connect_timeout: Duration,
}

impl Ctx {
    pub fn new(
        ui: Ui,
        nats: duellsync_settings::service::NatsSection,
        stores_path: Option<PathBuf>,
        env: Vec<(String, String)>,
        connect_timeout: Duration,
    ) -> Ctx {
        Ctx {
            ui,
            nats,
            stores_path,
            env,
            connect_timeout,
        }
    }

    /// Connects to NATS without asking for the engine's streams (the registry comes before
    /// any service has run).
    pub async fn connect(&self) -> anyhow::Result<Bus> {
        let mut options = BusOptions::from_settings(&self.nats, "syncctl");
        options.connect_timeout = self.connect_timeout;
        options.publish_deadline = Duration::from_secs(15);
        // The registry's bucket is declared with the cluster's replica count, as the services
        // declare their streams.
        if let Some(n) = self
            .env
            .iter()
            .rev()
            .find(|(k, _)| k == "DUELLSYNC_NATS__REPLICAS")
            .and_then(|(_, v)| v.trim().parse().ok())
        {
            options.replicas = n;
        }
        Bus::connect(options).await.map_err(|e| {
            anyhow::anyhow!("{e}; check --nats-url (or DUELLSYNC_NATS__URL) and that NATS runs")
        })
    }

    /// Connects to NATS; a broker that is not there is a failure (exit 1) with the fix.
    pub async fn bus(&self) -> anyhow::Result<Bus> {
        let bus = self.connect().await?;
        // syncctl never declares streams (the services do, with the cluster's replica count).
        // (`Bus::streams_present` asks nothing of the server, so each stream is looked up.)
        for spec in duellsync_events::ALL_STREAMS.iter() {
            if bus.stream_state(spec.name).await.is_err() {
                anyhow::bail!(
                    "the engine's streams are missing on NATS at {} (no stream {}): no service has started on it yet, or --nats-url points elsewhere",
                    duellsync_bus::redact_url(&self.nats.url),
                    spec.name
                );
            }
        }
        Ok(bus)
    }

    /// The sealing keys of this process (`DUELLSYNC_SEAL__API_KEY`, `…RECEIVER_KEY`).
    pub fn keys(&self) -> anyhow::Result<duellsync_registry::Keyring> {
        #[derive(serde::Deserialize, Default)]
        #[serde(default)]
        struct Env {
            seal: duellsync_settings::service::SealSection,
        }
        let env: Env =
            duellsync_settings::load_layered("environment", None, "DUELLSYNC_", &self.env)
                .map_err(|e| usage(e.to_string()))?;
        duellsync_registry::Keyring::from_section(&env.seal, &self.env)
            .map_err(|e| usage(e.to_string()))
    }

    /// The store registry on NATS.
    pub async fn registry(&self) -> anyhow::Result<duellsync_registry::Registry> {
        let bus = self.connect().await?;
        Ok(duellsync_registry::Registry::open(&bus, self.keys()?).await?)
    }

    /// Every store of the registry (or of `--stores` files when given), validated and with
    /// its secrets resolved as a service would; problems are a configuration error.
    pub fn stores(&self) -> anyhow::Result<Stores> {
        let Some(path) = &self.stores_path else {
            // The operations ask synchronously (they were written for files); the registry is
            // read on this runtime meanwhile.
            return tokio::task::block_in_place(|| {
                tokio::runtime::Handle::current().block_on(self.registry_stores())
            });
        };
        duellsync_settings::load_stores(path, &self.env).map_err(|e| {
            usage(format!(
                "{e}\n(run `syncctl config check --stores {}` for the details)",
                path.display()
            ))
        })
    }

    /// One store's settings.
    pub fn store(&self, id: &str) -> anyhow::Result<StoreSettings> {
        check_store_id(id)?;
        let stores = self.stores()?;
        stores.get(id).cloned().ok_or_else(|| {
            usage(format!(
                "store `{id}` is not defined in {}; known stores: {}{}",
                self.stores_path
                    .as_deref()
                    .map(|p| p.display().to_string())
                    .unwrap_or_else(|| "the store registry".into()),
                stores.ids().collect::<Vec<_>>().join(", "),
                stores
                    .warnings
                    .iter()
                    .map(|w| format!("\n{w}"))
                    .collect::<String>()
            ))
        })
    }

    async fn registry_stores(&self) -> anyhow::Result<Stores> {
        let registry = self.registry().await?;
        let source = duellsync_registry::RegistrySource {
            shard: String::new(),
            keys: registry.keys().clone(),
            env: self.env.clone(),
            needs: duellsync_settings::Needs::ALL,
        };
        let mut out = Stores::default();
        for stored in registry.list().await? {
            match source.resolve(&stored.record) {
                Some(Ok(s)) => {
                    out.stores.insert(s.id.clone(), s);
                }
                Some(Err(e)) => out
                    .warnings
                    .push(format!("store {}: {e}", stored.record.id)),
                None => {}
            }
        }
        Ok(out)
    }

    pub fn env(&self) -> &[(String, String)] {
        &self.env
    }

    pub fn stores_path(&self) -> Option<&std::path::Path> {
        self.stores_path.as_deref()
    }
}

pub fn check_store_id(id: &str) -> anyhow::Result<()> {
    if duellsync_events::is_valid_store_id(id) {
        Ok(())
    } else {
        Err(usage(format!(
            "`{id}` is not a store id (1-32 lowercase letters, digits, '-' or '_')"
        )))
    }
}

/// Parses "30s", "15m", "24h", "7d".
pub fn parse_duration(s: &str) -> Result<Duration, String> {
    duellsync_settings::duration::parse(s)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_take_units() {
        assert_eq!(parse_duration("24h"), Ok(Duration::from_secs(86400)));
        assert!(parse_duration("24").is_err());
    }
}
