//! duellsync-bench: the performance figures of SPEC §8, measured in one run side by side with
//! the raw JetStream baseline b they are judged against (the machine is shared and noisy, so
//! only ratios measured in the same run mean something). Prints a Markdown table, or JSON with
//! `--json`. Services run as the release (or debug) binaries of the profile this binary was
//! built in, each a process on a private nats-server; the simulators run in this process.
//! See BENCHMARKS.md for the commands and the figures.
#![forbid(unsafe_code)]

mod bare;
mod baseline;
mod catalog;
mod ceiling;
mod events;
mod fullsync;
mod ingest;
mod load;
mod orders;
mod report;
mod stats;
mod world;

use std::sync::OnceLock;
use std::time::Instant;

use clap::{Parser, Subcommand, ValueEnum};

use report::Report;

/// The measurements of SPEC §8 (see BENCHMARKS.md).
#[derive(Debug, Clone, Parser)]
#[command(
    name = "duellsync-bench",
    about = "Measures the SPEC §8 figures against a raw JetStream baseline measured in the same run"
)]
struct Args {
    #[command(subcommand)]
    command: Option<Command>,
    /// Small sizes: the whole run takes a minute or two.
    #[arg(long)]
    quick: bool,
    /// Print the results as JSON (the table still goes to stderr).
    #[arg(long)]
    json: bool,
    /// Run only these scenarios (the baseline always runs).
    #[arg(long, value_delimiter = ',')]
    only: Vec<Scenario>,
    /// Catalogue size of the full sync, request counts, latency and memory scenario
    /// [default: 100000, quick 5000].
    #[arg(long)]
    products: Option<usize>,
    /// Orders through the pipeline and through the importer alone [default: 10000, quick 1000].
    #[arg(long)]
    orders: Option<usize>,
    /// Webhook deliveries to the ingest and to the bare server [default: 50000, quick 10000].
    #[arg(long)]
    requests: Option<usize>,
    /// Concurrent HTTP connections of the load generator.
    #[arg(long, default_value_t = 256)]
    concurrency: usize,
    /// Publishes measured for b [default: 100000, quick 30000].
    #[arg(long)]
    baseline_messages: Option<usize>,
    /// Products of the full sync against a slow woo-sim [default: 10000, quick 1000].
    #[arg(long)]
    fullsync_products: Option<usize>,
    /// woo-sim latency per request in the slow full sync.
    #[arg(long, default_value_t = 100)]
    woo_latency_ms: u64,
    /// `woo.max_concurrency` values of the slow full sync.
    #[arg(long, value_delimiter = ',', default_value = "4,8")]
    woo_concurrency: Vec<usize>,
    /// Stock changes per second of the latency measurement.
    #[arg(long, default_value_t = 1000)]
    rate: u64,
    /// Seconds of the latency measurement [default: 10, quick 5].
    #[arg(long)]
    rate_seconds: Option<u64>,
    /// Also write the results (JSON) to this file after every scenario, so a run that is cut
    /// short keeps what it measured.
    #[arg(long)]
    save: Option<std::path::PathBuf>,
    /// `importer.concurrency` values for the importer alone (the first also for the pipeline);
    /// empty = the service default.
    #[arg(long, value_delimiter = ',')]
    importer_concurrency: Vec<usize>,
}

#[derive(Debug, Clone, Subcommand)]
enum Command {
    /// (internal) The bare HTTP server + one awaited publish per request.
    #[command(hide = true)]
    ServeBare {
        #[arg(long)]
        nats: String,
    },
    /// (internal) The order import's call ceiling: the importer's calls, no broker, no state.
    #[command(hide = true)]
    CallCeiling(ceiling::CeilingArgs),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
enum Scenario {
    /// Items 2: webhook ingest and the bare server.
    Ingest,
    /// Item 3: webhook → importer → DUELL.
    Pipeline,
    /// Item 7: the importer alone, and its call ceiling.
    Import,
    /// Items 4, 5, 8: full sync, request counts, latency, memory and start-up.
    Catalog,
    /// Item 6: full sync against a slow woo-sim.
    Fullsync,
}

static STARTED: OnceLock<Instant> = OnceLock::new();

/// Progress on stderr, with the time since the start.
pub(crate) fn log(msg: &str) {
    let t = STARTED.get_or_init(Instant::now).elapsed().as_secs_f64();
    eprintln!("[{t:7.1}s] {msg}");
}

/// Writes the results so far to `--save`, if given.
fn save(args: &Args, report: &Report) {
    if let Some(path) = &args.save {
        match serde_json::to_string_pretty(report) {
            Ok(text) => {
                if let Err(e) = std::fs::write(path, text) {
                    log(&format!("cannot write {}: {e}", path.display()));
                }
            }
            Err(e) => log(&format!("cannot encode the results: {e}")),
        }
    }
}

fn pick(given: Option<usize>, quick: bool, small: usize, full: usize) -> usize {
    given.unwrap_or(if quick { small } else { full })
}

fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    if let Some(Command::CallCeiling(a)) = args.command.clone() {
        // The order importer runs on one thread; its ceiling makes the same calls the same way.
        return tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()?
            .block_on(ceiling::serve(a));
    }
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?
        .block_on(run(args))
}

async fn run(args: Args) -> anyhow::Result<()> {
    if let Some(Command::ServeBare { nats }) = args.command.clone() {
        return bare::serve(nats).await;
    }
    STARTED.get_or_init(Instant::now);
    let _ = rustls::crypto::ring::default_provider().install_default();
    let argv: Vec<String> = std::env::args().skip(1).collect();
    let mut report = Report::new(if argv.is_empty() {
        "(defaults)".into()
    } else {
        argv.join(" ")
    });
    let q = args.quick;
    let runs = |s: Scenario| args.only.is_empty() || args.only.contains(&s);
    log(&format!(
        "machine: {} × {}, load {}",
        report.machine.nproc, report.machine.cpu, report.machine.load_at_start
    ));
    world::prebuild().await?;

    let b_messages = pick(args.baseline_messages, q, 30_000, 100_000);
    let b = baseline::run(
        &mut report,
        b_messages,
        "baseline.b",
        "b: JetStream publishes/s, 256 in flight, 3 KB, file storage",
    )
    .await?;
    report.b = Some(b);
    baseline::single_publish_latency(&mut report, if q { 1_000 } else { 3_000 }).await?;

    let importer_concurrency: Vec<Option<usize>> = if args.importer_concurrency.is_empty() {
        vec![None]
    } else {
        args.importer_concurrency.iter().map(|c| Some(*c)).collect()
    };
    let order_sizes = orders::Sizes {
        orders: pick(args.orders, q, 1_000, 10_000),
        concurrency: args.concurrency,
        importer_concurrency,
    };
    let mut failures = Vec::new();
    macro_rules! scenario {
        ($s:expr, $name:literal, $run:expr) => {
            if runs($s) {
                log(concat!("scenario ", $name));
                if let Err(e) = $run.await {
                    log(&format!("scenario {} failed: {e:#}", $name));
                    failures.push(format!("{}: {e:#}", $name));
                }
                save(&args, &report);
            }
        };
    }
    scenario!(
        Scenario::Ingest,
        "ingest",
        ingest::run(
            &mut report,
            &ingest::Sizes {
                requests: pick(args.requests, q, 10_000, 50_000),
                concurrency: args.concurrency,
            },
        )
    );
    // The import first: it measures the call ceiling the pipeline is also judged against.
    scenario!(
        Scenario::Import,
        "import",
        orders::importer(&mut report, &order_sizes)
    );
    scenario!(
        Scenario::Pipeline,
        "pipeline",
        orders::pipeline(&mut report, &order_sizes)
    );
    scenario!(
        Scenario::Catalog,
        "catalog",
        catalog::run(
            &mut report,
            &catalog::Sizes {
                products: pick(args.products, q, 5_000, 100_000),
                rate: args.rate,
                rate_seconds: args.rate_seconds.unwrap_or(if q { 5 } else { 10 }),
            },
        )
    );
    scenario!(
        Scenario::Fullsync,
        "fullsync",
        fullsync::run(
            &mut report,
            &fullsync::Sizes {
                products: pick(args.fullsync_products, q, 1_000, 10_000),
                latency_ms: args.woo_latency_ms,
                concurrency: args.woo_concurrency.clone(),
            },
        )
    );

    // The baseline once more: how much the machine moved during the run.
    let b_end = baseline::run(
        &mut report,
        b_messages,
        "baseline.b_end",
        "b again at the end of the run (noise check; ratios use the first)",
    )
    .await?;
    if let Some(r) = report.rows.last_mut() {
        r.note.push_str(&format!(
            "; {:+.0} % against the first",
            (b_end / b - 1.0) * 100.0
        ));
    }
    report.failures = failures;
    report.finish();
    save(&args, &report);
    let table = report.markdown();
    if args.json {
        eprintln!("{table}");
        println!("{}", serde_json::to_string_pretty(&report)?);
    } else {
        println!("{table}");
    }
    if !report.failures.is_empty() {
        std::process::exit(1);
    }
    Ok(())
}
