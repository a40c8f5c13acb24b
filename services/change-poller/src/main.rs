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
    // A full sync or scan walks every product and frees most of what it read; glibc keeps the
    // freed pages below live blocks resident (~7.5 MB of the publisher's 64 MB budget after
    // 100,000 products) unless asked to give them back.
    tokio::spawn(duellsync_heap::trim_after_bursts(
        duellsync_heap::Policy::default(),
    ));
    let app = App::build(config, stores).await?;
    app.run(shutdown).await
}
