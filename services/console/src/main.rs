//! console: the retailer's web page and the operator's view of every store (`console --help`).

use clap::Parser;
use duellsync_console::{App, Args, Command};

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let shutdown = duellsync_telemetry::shutdown_signal();
    let args = Args::parse();
    if let Some(Command::HashPassword) = args.command {
        return duellsync_console::print_password_hash();
    }
    let env = duellsync_settings::service::env_vars();
    if args.check_config {
        std::process::exit(args.check(&env));
    }
    // Bad config exits here, before anything is bound.
    let config = args.load(&env)?;
    let telemetry = duellsync_telemetry::init(&config.telemetry_options())?;
    let app = App::build(config, env).await?;
    let result = app.run(shutdown).await;
    telemetry.flush();
    result
}
