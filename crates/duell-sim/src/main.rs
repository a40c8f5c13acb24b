//! `duell-sim`: runs the DUELL API simulator as a process (for the demo and for tests in other
//! languages or processes). Prints the base URL, credentials and department tokens at start.
#![forbid(unsafe_code)]

use std::net::SocketAddr;
use std::time::Duration;

use anyhow::Context as _;
use clap::Parser;
use duellsync_duell_sim::{
    DuellSim, LastUpdateFilter, RateLimit, ReservationField, SimConfig, ValidationShape,
};

/// A DUELL (Kasseservice) API simulator.
#[derive(Debug, Parser)]
#[command(name = "duell-sim", version)]
struct Args {
    /// Address to bind.
    #[arg(long, env = "DUELL_SIM_HOST", default_value = "127.0.0.1")]
    host: std::net::IpAddr,
    /// Port to bind (0 = any free port).
    #[arg(long, short, env = "DUELL_SIM_PORT", default_value_t = 8088)]
    port: u16,
    /// Public origin for image URLs (default http://HOST:PORT).
    #[arg(long, env = "DUELL_SIM_PUBLIC_URL")]
    public_url: Option<String>,
    /// Seed of the generated catalogue and random faults.
    #[arg(long, env = "DUELL_SIM_SEED", default_value_t = 42)]
    seed: u64,
    /// Number of products to generate (10 to 100000).
    #[arg(long, env = "DUELL_SIM_PRODUCTS", default_value_t = 200)]
    products: usize,
    /// Accepted client number.
    #[arg(long, env = "DUELL_SIM_CLIENT_NUMBER", default_value = "012345")]
    client_number: String,
    /// Accepted client token.
    #[arg(
        long,
        env = "DUELL_SIM_CLIENT_TOKEN",
        default_value = "0f3c9a1e5b7d4c2a8e6f1b3d5a7c9e0f"
    )]
    client_token: String,
    /// Token lifetime in seconds (DUELL: 259200 = 72 h).
    #[arg(long, env = "DUELL_SIM_TOKEN_TTL", default_value_t = 259_200)]
    token_ttl_secs: u64,
    /// Rate limit: requests per window (0 = off).
    #[arg(long, env = "DUELL_SIM_RATE_LIMIT", default_value_t = 0)]
    rate_limit: u32,
    /// Rate-limit window in milliseconds.
    #[arg(long, env = "DUELL_SIM_RATE_WINDOW_MS", default_value_t = 60_000)]
    rate_window_ms: u64,
    /// Latency added to every API request, in milliseconds.
    #[arg(long, env = "DUELL_SIM_LATENCY_MS", default_value_t = 0)]
    latency_ms: u64,
    /// Which stock field nets reservations: actual-stock, stock or neither.
    #[arg(
        long,
        env = "DUELL_SIM_RESERVATION_FIELD",
        default_value = "actual-stock"
    )]
    reservation_field: String,
    /// `filter[last_update_date]` comparison: inclusive (>=) or exclusive (>).
    #[arg(
        long,
        env = "DUELL_SIM_LAST_UPDATE_FILTER",
        default_value = "inclusive"
    )]
    last_update_filter: String,
    /// Shape of validation_message: keyed-object, list or text.
    #[arg(
        long,
        env = "DUELL_SIM_VALIDATION_SHAPE",
        default_value = "keyed-object"
    )]
    validation_shape: String,
    /// DUELL local time offset from UTC in seconds (e.g. 3600 for CET).
    #[arg(long, env = "DUELL_SIM_UTC_OFFSET", default_value_t = 0)]
    utc_offset_secs: i32,
    /// Disable the UNVERIFIED order lookup endpoints (as real DUELL probably lacks them).
    #[arg(long)]
    no_order_lookup: bool,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into()),
        )
        .init();
    let args = Args::parse();
    anyhow::ensure!(
        (1..=100_000).contains(&args.products),
        "--products must be between 1 and 100000"
    );
    let config = SimConfig {
        bind: SocketAddr::new(args.host, args.port),
        public_url: args.public_url,
        seed: args.seed,
        products: args.products,
        client_number: args.client_number,
        client_token: args.client_token,
        token_ttl: Duration::from_secs(args.token_ttl_secs),
        rate_limit: (args.rate_limit > 0).then_some(RateLimit {
            limit: args.rate_limit,
            window_ms: args.rate_window_ms,
        }),
        latency: Duration::from_millis(args.latency_ms),
        reservation_field: match args.reservation_field.as_str() {
            "actual-stock" => ReservationField::ActualStock,
            "stock" => ReservationField::Stock,
            "neither" => ReservationField::Neither,
            other => anyhow::bail!("unknown --reservation-field {other}"),
        },
        last_update_filter: match args.last_update_filter.as_str() {
            "inclusive" => LastUpdateFilter::Inclusive,
            "exclusive" => LastUpdateFilter::Exclusive,
            other => anyhow::bail!("unknown --last-update-filter {other}"),
        },
        validation_shape: match args.validation_shape.as_str() {
            "keyed-object" => ValidationShape::KeyedObject,
            "list" => ValidationShape::List,
            "text" => ValidationShape::Text,
            other => anyhow::bail!("unknown --validation-shape {other}"),
        },
        utc_offset_secs: args.utc_offset_secs,
        order_lookup: !args.no_order_lookup,
        ..SimConfig::default()
    };
    let sim = DuellSim::start(config)
        .await
        .context("starting duell-sim")?;
    println!("duell-sim listening: base url {}", sim.base_url());
    println!("client number: {}", sim.client_number());
    println!("client token:  {}", sim.client_token());
    for d in sim.departments() {
        println!(
            "department {} ({}): token {}",
            d.department_id, d.department_name, d.api_token
        );
    }
    println!("control api: {}/__sim/stats", sim.origin());
    tokio::select! {
        _ = sim.wait() => {}
        _ = shutdown_signal() => tracing::info!("shutting down"),
    }
    Ok(())
}

async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        _ = ctrl_c => {}
        _ = term => {}
    }
}
