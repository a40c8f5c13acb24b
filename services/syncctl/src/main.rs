//! syncctl: the operator CLI of the DUELL ⇄ WooCommerce sync engine (`syncctl --help`).

use std::process::ExitCode;

use clap::Parser;
use duellsync_syncctl::{run, Cli};

#[tokio::main]
async fn main() -> ExitCode {
    // Usage errors from clap exit with code 2 here, before anything runs.
    let cli = Cli::parse();
    ExitCode::from(run(cli).await)
}
