//! The console: the retailer's "Integrasjoner → WooCommerce" page as a web application, and
//! the operator's view of every store (issue 16).
//!
//! Server-rendered HTML (maud), one small script (`static/console.js`) only for the live parts
//! (Server-Sent Events for full-sync progress and status). Everything a page shows comes from
//! the store registry (`duellsync-registry`) and the operations library (`duellsync-ops`), the
//! same code `syncctl` runs; every change goes through the registry's validation and audit.
//!
//! Who may do what: an operator (credentials from a Kubernetes Secret, or created on the
//! first-run page) sees every store, creates stores and invites retailers; a retailer sees and
//! changes only the store of the invitation it signed up with. The store of a request comes
//! from its URL only and is checked against the session on every request; form fields never
//! name a store. Sessions, accounts and invitations live in the `duellsync_console` bucket
//! (see [`auth`]).
#![forbid(unsafe_code)]
// Guards return the answer to send instead (`Result<_, Response>`), the axum idiom; a Response
// is large, and boxing it would only add noise at every call.
#![allow(clippy::result_large_err)]

pub mod auth;
pub mod config;
mod pages;
mod store_pages;
pub mod texts;
mod web;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;

use anyhow::Context;
use duellsync_bus::{Bus, BusOptions};
use duellsync_events::KV_CONSOLE;
use duellsync_registry::{Keyring, Registry};
use duellsync_telemetry::Readiness;
use tokio_util::sync::CancellationToken;

pub use config::Config;

pub const SERVICE: &str = "console";

#[derive(Debug, clap::Parser)]
#[command(
    name = "console",
    about = "The retailer's web console of the sync engine"
)]
pub struct Args {
    /// Service config file (TOML); `DUELLSYNC_*` environment variables override it.
    #[arg(long, env = "DUELLSYNC_CONFIG")]
    pub config: Option<PathBuf>,
    /// Check the configuration, print the result as JSON and exit (0 valid, 2 invalid).
    #[arg(long)]
    pub check_config: bool,
    #[command(subcommand)]
    pub command: Option<Command>,
}

#[derive(Debug, clap::Subcommand)]
pub enum Command {
    /// Read a password on stdin and print its argon2id hash (DUELLSYNC_CONSOLE__OPERATOR_PASSWORD_HASH).
    HashPassword,
}

impl Args {
    pub fn check(&self, env: &[(String, String)]) -> i32 {
        let report = duellsync_registry::check_service::<Config>(
            SERVICE,
            self.config.as_deref(),
            env,
            Config::validate,
        );
        duellsync_settings::service::print_check_report(&report)
    }

    pub fn load(&self, env: &[(String, String)]) -> anyhow::Result<Config> {
        let config: Config =
            duellsync_settings::service::load_service_config(self.config.as_deref(), env)?;
        config.validate()?;
        Keyring::from_section(&config.seal, env)?;
        Ok(config)
    }
}

/// `console hash-password`.
pub fn print_password_hash() -> anyhow::Result<()> {
    let mut line = String::new();
    std::io::stdin().read_line(&mut line)?;
    let password = line.trim_end_matches(['\n', '\r']);
    if password.chars().count() < 12 {
        anyhow::bail!("use a password of at least 12 characters");
    }
    println!("{}", auth::hash_password(password));
    Ok(())
}

/// What every handler shares.
pub(crate) struct State {
    pub bus: Bus,
    pub registry: Registry,
    pub accounts: auth::Accounts,
    pub cfg: config::ConsoleSection,
    pub env: Vec<(String, String)>,
}

pub(crate) type AppState = Arc<State>;

/// The built console, ready to run.
pub struct App {
    state: AppState,
    listener: tokio::net::TcpListener,
    admin: tokio::net::TcpListener,
    readiness: Readiness,
}

impl App {
    /// Connects to NATS, opens the registry and the console bucket, binds both listeners.
    pub async fn build(config: Config, env: Vec<(String, String)>) -> anyhow::Result<App> {
        duellsync_telemetry::install_crypto_provider();
        config.validate()?;
        let keys = Keyring::from_section(&config.seal, &env)?;
        // Its own NATS user and the server's CA, as every service (tests/tests/secured.rs).
        let bus = Bus::connect(BusOptions::from_settings(&config.nats, SERVICE)).await?;
        bus.ensure_streams().await?;
        let registry = Registry::open(&bus, keys).await?;
        let kv = bus.ensure_kv(&KV_CONSOLE).await?;
        let mut hash = config.console.operator_password_hash.clone();
        let lookup = |n: &str| {
            env.iter()
                .rev()
                .find(|(k, _)| k == n)
                .map(|(_, v)| v.clone())
        };
        let operator_hash = if matches!(hash.source(), duellsync_settings::SecretSource::Missing) {
            None
        } else {
            hash.resolve(&lookup)
                .map_err(|e| anyhow::anyhow!("console.operator_password_hash: {e}"))?;
            Some(hash.expose().to_owned())
        };
        let accounts = auth::Accounts::new(
            kv,
            config.console.operator_user.clone(),
            operator_hash,
            config.console.session_ttl,
            config.console.invitation_ttl,
        );
        let listener = tokio::net::TcpListener::bind(&config.console.listen)
            .await
            .with_context(|| format!("binding console address {}", config.console.listen))?;
        let admin = tokio::net::TcpListener::bind(&config.admin.listen)
            .await
            .with_context(|| format!("binding admin address {}", config.admin.listen))?;
        let readiness = Readiness::new();
        readiness.add(Arc::new(duellsync_bus::BusReady(bus.clone())));
        Ok(App {
            state: Arc::new(State {
                bus,
                registry,
                accounts,
                cfg: config.console,
                env,
            }),
            listener,
            admin,
            readiness,
        })
    }

    pub fn addr(&self) -> SocketAddr {
        self.listener
            .local_addr()
            .expect("a bound listener has an address")
    }

    pub fn admin_addr(&self) -> SocketAddr {
        self.admin
            .local_addr()
            .expect("a bound listener has an address")
    }

    /// Serves until `shutdown`, then finishes the requests in flight.
    pub async fn run(
        self,
        shutdown: impl std::future::Future<Output = ()> + Send + 'static,
    ) -> anyhow::Result<()> {
        let stop = CancellationToken::new();
        tracing::info!(addr = %self.addr(), "console running");
        let admin = tokio::spawn(duellsync_telemetry::serve_admin(
            self.admin,
            self.readiness.clone(),
            stop.clone(),
        ));
        let s = stop.clone();
        let served = axum::serve(
            self.listener,
            web::router(self.state.clone()).into_make_service_with_connect_info::<SocketAddr>(),
        )
        .with_graceful_shutdown(async move {
            tokio::select! {
                _ = shutdown => {}
                _ = s.cancelled() => {}
            }
        })
        .await;
        self.readiness.drain();
        stop.cancel();
        let _ = admin.await;
        self.state.bus.flush().await;
        served.context("console listener")
    }
}
