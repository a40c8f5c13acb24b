//! syncctl: the operator's command line for the sync engine (SPEC §6).
//!
//! It never talks to the services: it reads and writes the same JetStream streams they do
//! (commands to `cmd.<store>.>`, the sync log in `sync.<store>.>`, dead letters in
//! `dlq.<store>.<service>`), calls WooCommerce and DUELL with a store's settings for the
//! connection test and the webhook upkeep, and edits a stopped service's sled state for a
//! rebuild. Every command prints for a person by default and JSON with `--json`.
//!
//! Exit codes: 0 ok, 1 a failure (a red check, a failed sync, an unreachable broker),
//! 2 a usage or configuration error (bad arguments, invalid settings, a refused action).
#![forbid(unsafe_code)]

mod config_check;
mod conn_test;
mod dlq;
mod events;
mod explain;
mod log;
mod rebuild;
mod status;
mod sync;
mod timefmt;
mod ui;
mod webhooks;

use std::path::PathBuf;
use std::time::Duration;

use clap::{Parser, Subcommand};
use duellsync_bus::{Bus, BusOptions};
use duellsync_settings::{StoreSettings, Stores};

pub use ui::Ui;

/// The operator CLI of the DUELL ⇄ WooCommerce sync engine.
#[derive(Debug, Parser)]
#[command(name = "syncctl", version, about, long_about = None)]
pub struct Cli {
    /// NATS server the engine runs on.
    #[arg(
        long,
        global = true,
        env = "DUELLSYNC_NATS__URL",
        default_value = "nats://127.0.0.1:4222"
    )]
    pub nats_url: String,
    /// File with syncctl's NKey seed, when NATS requires credentials (the deployment's
    /// `nats-syncctl` Secret).
    #[arg(long, global = true, env = "DUELLSYNC_NATS__NKEY_FILE")]
    pub nats_nkey_file: Option<PathBuf>,
    /// JWT credentials file, for a NATS server with decentralized auth.
    #[arg(long, global = true, env = "DUELLSYNC_NATS__CREDENTIALS_FILE")]
    pub nats_credentials_file: Option<PathBuf>,
    /// CA certificate (PEM) of the NATS server; turns TLS on.
    #[arg(long, global = true, env = "DUELLSYNC_NATS__TLS_CA_FILE")]
    pub nats_tls_ca_file: Option<PathBuf>,
    /// Client certificate and key (PEM) for a server that verifies clients.
    #[arg(long, global = true, env = "DUELLSYNC_NATS__TLS_CERT_FILE")]
    pub nats_tls_cert_file: Option<PathBuf>,
    #[arg(long, global = true, env = "DUELLSYNC_NATS__TLS_KEY_FILE")]
    pub nats_tls_key_file: Option<PathBuf>,
    /// Accept an unencrypted connection to a NATS server on another machine (a lab).
    #[arg(long, global = true, env = "DUELLSYNC_NATS__ALLOW_PLAINTEXT")]
    pub nats_allow_plaintext: bool,
    /// Store settings: a directory of `<id>.toml`, one store file, or a file of `[stores.<id>]`.
    #[arg(long = "stores", global = true, env = "DUELLSYNC_STORES_PATH")]
    pub stores: Option<PathBuf>,
    /// Machine-readable output (JSON; `log` prints one JSON object per line).
    #[arg(long, global = true)]
    pub json: bool,
    /// How long to wait for the first connection to NATS.
    #[arg(long, global = true, default_value = "5s", value_parser = parse_duration)]
    pub connect_timeout: Duration,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Validate configuration files without starting anything.
    #[command(subcommand)]
    Config(ConfigCommand),
    /// Connection test of one store: DUELL, departments, WooCommerce, permissions, webhooks.
    Test(conn_test::TestArgs),
    /// Run a full sync now (or plan one with --dry-run) and show its progress and summary.
    Sync(sync::SyncArgs),
    /// Per store: consumer lag, last syncs, counts, open failures, webhook state.
    Status(status::StatusArgs),
    /// The sync log: what the engine did for a store, one line per event.
    Log(log::LogArgs),
    /// Dead letters: list, replay or skip messages that failed for good.
    #[command(subcommand)]
    Dlq(dlq::DlqCommand),
    /// The chain of events that made a product (by SKU) or an order what it is.
    Explain(explain::ExplainArgs),
    /// WooCommerce order webhooks.
    #[command(subcommand)]
    Webhooks(webhooks::WebhooksCommand),
    /// A service's local state.
    #[command(subcommand)]
    State(rebuild::StateCommand),
}

#[derive(Debug, Subcommand)]
pub enum ConfigCommand {
    /// Check store files (--stores) and service config files (--service NAME --config FILE).
    Check(config_check::CheckArgs),
}

/// A usage or configuration error: exit code 2.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct UsageError(pub String);

pub(crate) fn usage(msg: impl Into<String>) -> anyhow::Error {
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
    fn from_ok(ok: bool) -> Outcome {
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
    nats: duellsync_settings::service::NatsSection,
    stores_path: Option<PathBuf>,
    env: Vec<(String, String)>,
    connect_timeout: Duration,
}

impl Ctx {
    /// Connects to NATS; a broker that is not there is a failure (exit 1) with the fix.
    pub(crate) async fn bus(&self) -> anyhow::Result<Bus> {
        let mut options = BusOptions::from_settings(&self.nats, "syncctl");
        options.connect_timeout = self.connect_timeout;
        options.publish_deadline = Duration::from_secs(15);
        let bus = Bus::connect(options).await.map_err(|e| {
            anyhow::anyhow!("{e}; check --nats-url (or DUELLSYNC_NATS__URL) and that NATS runs")
        })?;
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

    /// Every store of the settings path, validated; problems are a configuration error.
    pub(crate) fn stores(&self) -> anyhow::Result<Stores> {
        let Some(path) = &self.stores_path else {
            return Err(usage(
                "the store settings are needed: give --stores PATH or set DUELLSYNC_STORES_PATH",
            ));
        };
        duellsync_settings::load_stores(path, &self.env).map_err(|e| {
            usage(format!(
                "{e}\n(run `syncctl config check --stores {}` for the details)",
                path.display()
            ))
        })
    }

    /// One store's settings.
    pub(crate) fn store(&self, id: &str) -> anyhow::Result<StoreSettings> {
        check_store_id(id)?;
        let stores = self.stores()?;
        stores.get(id).cloned().ok_or_else(|| {
            usage(format!(
                "store `{id}` is not defined in {}; known stores: {}",
                self.stores_path
                    .as_deref()
                    .map(|p| p.display().to_string())
                    .unwrap_or_default(),
                stores.ids().collect::<Vec<_>>().join(", ")
            ))
        })
    }

    pub(crate) fn env(&self) -> &[(String, String)] {
        &self.env
    }

    pub(crate) fn stores_path(&self) -> Option<&std::path::Path> {
        self.stores_path.as_deref()
    }
}

pub(crate) fn check_store_id(id: &str) -> anyhow::Result<()> {
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

/// Runs a parsed command line and returns the process exit code.
pub async fn run(cli: Cli) -> u8 {
    let ctx = Ctx {
        ui: Ui::new(cli.json),
        nats: duellsync_settings::service::NatsSection {
            url: cli.nats_url,
            nkey_file: cli.nats_nkey_file,
            credentials_file: cli.nats_credentials_file,
            tls_ca_file: cli.nats_tls_ca_file,
            tls_cert_file: cli.nats_tls_cert_file,
            tls_key_file: cli.nats_tls_key_file,
            allow_plaintext: cli.nats_allow_plaintext,
            ..Default::default()
        },
        stores_path: cli.stores,
        env: duellsync_settings::service::env_vars(),
        connect_timeout: cli.connect_timeout,
    };
    duellsync_telemetry::install_crypto_provider();
    let result = match cli.command {
        Command::Config(ConfigCommand::Check(args)) => config_check::run(&ctx, args).await,
        Command::Test(args) => conn_test::run(&ctx, args).await,
        Command::Sync(args) => sync::run(&ctx, args).await,
        Command::Status(args) => status::run(&ctx, args).await,
        Command::Log(args) => log::run(&ctx, args).await,
        Command::Dlq(cmd) => dlq::run(&ctx, cmd).await,
        Command::Explain(args) => explain::run(&ctx, args).await,
        Command::Webhooks(cmd) => webhooks::run(&ctx, cmd).await,
        Command::State(cmd) => rebuild::run(&ctx, cmd).await,
    };
    match result {
        Ok(Outcome::Ok) => 0,
        Ok(Outcome::Failed) => 1,
        Ok(Outcome::Invalid) => 2,
        Err(e) => {
            let usage = e.is::<UsageError>();
            if ctx.ui.json {
                ctx.ui.json_out(&serde_json::json!({
                    "ok": false,
                    "error": format!("{e:#}"),
                    "usage_error": usage,
                }));
            }
            ctx.ui.note(format!("error: {e:#}"));
            if usage {
                2
            } else {
                1
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    #[test]
    fn the_command_line_is_well_formed() {
        Cli::command().debug_assert();
    }

    #[test]
    fn durations_take_units() {
        assert_eq!(parse_duration("24h"), Ok(Duration::from_secs(86400)));
        assert!(parse_duration("24").is_err());
    }
}
