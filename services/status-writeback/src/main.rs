//! status-writeback: writes the WooCommerce order status that DUELL's customer-order status
//! maps to (default: DUELL 5 "Fullført" → `completed`), once, never backwards.

use clap::Parser;
use duellsync_status_writeback::{App, Args};

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let env = duellsync_settings::service::env_vars();
    if args.service.check_config {
        std::process::exit(args.check(&env));
    }
    // Bad config exits here, before anything is bound.
    let (config, stores) = args.load(&env)?;
    let telemetry = duellsync_telemetry::init(&config.telemetry_options())?;
    let app = App::build(config, stores).await?;
    let result = app.run(duellsync_telemetry::shutdown_signal()).await;
    telemetry.flush();
    result
}
