//! Runs the chaos scenario by hand: `duellsync-chaos [--large] [--seed N]` (see
//! `duellsync_e2e::chaos`). Exits non-zero when the final state is not what it must be.

use clap::Parser;
use duellsync_e2e::chaos::{run, ChaosConfig};

#[derive(Debug, Parser)]
#[command(
    name = "duellsync-chaos",
    about = "Kills, restarts and faults while syncing; checks the result"
)]
struct Args {
    /// The large setting (≥ 20 kills, hundreds of products and orders, two NATS restarts).
    #[arg(long)]
    large: bool,
    /// Seed of the workload and the faults.
    #[arg(long)]
    seed: Option<u64>,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let mut cfg = if args.large {
        ChaosConfig::large()
    } else {
        ChaosConfig::small()
    };
    if let Some(seed) = args.seed {
        cfg.seed = seed;
    }
    println!("chaos run: {cfg:?}");
    let report = run(cfg).await;
    println!(
        "kills: {} ({:?})\nnats restarts: {}\norders placed: {}\nprice changes: {}\nstock changes: {}\ncompletions: {}\ndead letters: {}\nconverged after: {:?}",
        report.kills.len(),
        report.kills,
        report.nats_restarts,
        report.orders_placed,
        report.price_changes,
        report.stock_changes,
        report.completions,
        report.dead_letters,
        report.converged_after
    );
    if report.problems.is_empty() {
        println!("PASS: no lost change, no duplicate, converged");
        Ok(())
    } else {
        for p in &report.problems {
            println!("FAIL: {p}");
        }
        anyhow::bail!("{} problems", report.problems.len())
    }
}
