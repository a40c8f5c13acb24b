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
mod rebuild;
mod store;

use std::path::PathBuf;
use std::time::Duration;

use clap::{Parser, Subcommand};

// The operations live in duellsync-ops (shared with the console); re-exported so that the
// command modules here name them as before (`crate::Ctx`, `crate::ui::Tone`).
pub use duellsync_ops::{
    check_store_id, conn_test, dlq, events, explain, log, parse_duration, repair, status, sync,
    timefmt, ui, usage, webhooks, Ctx, Outcome, Ui, UsageError,
};

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
    /// The store registry: apply settings files, read, list, delete, history.
    #[command(subcommand)]
    Store(store::StoreCommand),
    /// A service's local state.
    #[command(subcommand)]
    State(rebuild::StateCommand),
    /// Repairs in a store: WooCommerce products a DUELL product has more than once.
    #[command(subcommand)]
    Repair(repair::RepairCommand),
}

#[derive(Debug, Subcommand)]
pub enum ConfigCommand {
    /// Check store files (--stores) and service config files (--service NAME --config FILE).
    Check(config_check::CheckArgs),
}

/// Runs a parsed command line and returns the process exit code.
pub async fn run(cli: Cli) -> u8 {
    let ctx = Ctx::new(
        Ui::new(cli.json),
        duellsync_settings::service::NatsSection {
            url: cli.nats_url,
            nkey_file: cli.nats_nkey_file,
            credentials_file: cli.nats_credentials_file,
            tls_ca_file: cli.nats_tls_ca_file,
            tls_cert_file: cli.nats_tls_cert_file,
            tls_key_file: cli.nats_tls_key_file,
            allow_plaintext: cli.nats_allow_plaintext,
            ..Default::default()
        },
        cli.stores,
        duellsync_settings::service::env_vars(),
        cli.connect_timeout,
    );
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
        Command::Store(cmd) => store::run(&ctx, cmd).await,
        Command::Repair(cmd) => repair::run(&ctx, cmd).await,
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
}
