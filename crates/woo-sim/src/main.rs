//! `woo-sim`: runs the WooCommerce 7.9 simulator as a process (for the demo and manual tests).

use std::net::SocketAddr;

use clap::Parser;
use duellsync_woo_sim::{ApiKey, Permissions, Settings, SimConfig, WooSim};

/// A WooCommerce 7.9 simulator.
#[derive(Debug, Parser)]
#[command(name = "woo-sim", version)]
struct Args {
    /// Plain-http port (OAuth 1.0a).
    #[arg(long, env = "WOO_SIM_PORT", default_value_t = 8088)]
    port: u16,
    /// https port (Basic and query keys); 0 picks a free port.
    #[arg(long, env = "WOO_SIM_HTTPS_PORT", default_value_t = 8443)]
    https_port: u16,
    /// Disable the https listener.
    #[arg(long)]
    no_https: bool,
    /// Address to bind.
    #[arg(long, default_value = "127.0.0.1")]
    host: std::net::IpAddr,
    /// Seed for random faults.
    #[arg(long, default_value_t = 7)]
    seed: u64,
    /// Consumer key.
    #[arg(
        long,
        env = "WOO_SIM_CONSUMER_KEY",
        default_value = "ck_woosim_0000000000000000000000000000000000"
    )]
    consumer_key: String,
    /// Consumer secret.
    #[arg(
        long,
        env = "WOO_SIM_CONSUMER_SECRET",
        default_value = "cs_woosim_0000000000000000000000000000000000"
    )]
    consumer_secret: String,
    /// Site timezone offset in hours.
    #[arg(long, default_value_t = 0)]
    utc_offset_hours: i64,
    /// Seed this many products at start.
    #[arg(long, default_value_t = 0)]
    seed_products: usize,
    /// Write the https CA certificate to this file.
    #[arg(long)]
    ca_out: Option<std::path::PathBuf>,
    /// Store settings: `default` (EUR, no taxes) or `norway` (NOK, prices with 25 % VAT, food
    /// 15 %, reduced 12 %, zero-rated 0 %).
    #[arg(long, env = "WOO_SIM_PRESET", default_value = "default", value_parser = ["default", "norway"])]
    preset: String,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
        .init();
    let args = Args::parse();
    let cfg = SimConfig {
        bind: SocketAddr::new(args.host, args.port),
        https: !args.no_https,
        https_bind: SocketAddr::new(args.host, args.https_port),
        keys: vec![ApiKey {
            consumer_key: args.consumer_key.clone(),
            consumer_secret: args.consumer_secret.clone(),
            permissions: Permissions::ReadWrite,
        }],
        seed: args.seed,
        site_utc_offset_secs: args.utc_offset_hours * 3600,
        settings: if args.preset == "norway" {
            Settings::norway()
        } else {
            Settings::default()
        },
        ..SimConfig::default()
    };
    let sim = WooSim::start(cfg).await?;
    if args.seed_products > 0 {
        sim.seed_products(args.seed_products, "SIM-", "9.90", 10);
    }
    if let (Some(path), Some(pem)) = (&args.ca_out, sim.ca_pem()) {
        std::fs::write(path, pem)?;
    }
    println!("woo-sim listening on {}", sim.base_url());
    if let Some(u) = sim.https_base_url() {
        println!("woo-sim https on {u}");
    }
    println!("consumer key {}", args.consumer_key);
    tokio::signal::ctrl_c().await?;
    Ok(())
}
