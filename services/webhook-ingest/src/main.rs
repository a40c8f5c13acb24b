//! webhook-ingest: the public HTTP endpoint for WooCommerce webhooks and DUELL change notices.
//! Verifies each request and records it in JetStream before answering 2xx.

use clap::Parser;
use duellsync_webhook_ingest::{App, Args};

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
