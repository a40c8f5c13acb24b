//! order-importer: imports WooCommerce orders into DUELL exactly once (customer orders, sales
//! orders or stock deductions), parks what needs a person, flags what is in doubt.

use clap::Parser;
use duellsync_order_importer::{App, Args};

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let env = duellsync_settings::service::env_vars();
    let (config, stores) = args.load(&env)?;
    let _telemetry = duellsync_telemetry::init(&config.telemetry_options())?;
    let app = App::build(config, stores).await?;
    app.run(duellsync_telemetry::shutdown_signal()).await
}
