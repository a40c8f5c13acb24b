//! change-poller: observes DUELL (catalogue, stock, customer-order status) and WooCommerce
//! (orders, as gap-fill behind webhooks) and appends what changed to JetStream.

use clap::Parser;
use duellsync_change_poller::{App, Args};

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    // Signal handlers first: a SIGTERM during start-up still stops the service gracefully.
    let shutdown = duellsync_telemetry::shutdown_signal();
    let args = Args::parse();
    let env = duellsync_settings::service::env_vars();
    if args.service.check_config {
        std::process::exit(args.check(&env));
    }
    let (config, stores) = args.load(&env)?;
    let _telemetry = duellsync_telemetry::init(&config.telemetry_options())?;
    // After a full scan walks every product, freed pages stay resident unless handed back (crates/heap).
    tokio::spawn(duellsync_heap::trim_after_bursts(
        duellsync_heap::Policy::default(),
    ));
    let app = App::build(config, stores).await?;
    app.run(shutdown).await
}
