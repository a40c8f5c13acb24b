//! order-importer: imports WooCommerce orders into DUELL exactly once (customer orders, sales
//! orders or stock deductions), parks what needs a person, flags what is in doubt.

use clap::Parser;
use duellsync_order_importer::{App, Args};

// mimalloc instead of glibc's malloc: an order allocates and frees many small, short-lived
// buffers (JSON, HTTP, protobuf, state records), some on another thread than the one that made
// them (the state's committer). Alternating bench runs: 12-18 % less CPU per imported order
// (BENCHMARKS.md, "The importer's allocator and thin LTO"). The catalog-publisher and the
// change-poller keep glibc's: after a full sync of 100,000 products they held 40-75 % more
// memory with mimalloc, over their 64 MB budget.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

// One thread: the importer waits on DUELL, WooCommerce, NATS and its state's committer thread
// and computes little, and on a multi-threaded runtime every one of those waits handed its task
// to another worker (a context switch each, ~0.5 ms of CPU per order in the bench). It scales by
// running more processes (store shards), as the deployment does.
#[tokio::main(flavor = "current_thread")]
async fn main() -> anyhow::Result<()> {
    // Listen for SIGTERM/SIGINT from the first moment: a signal that arrives while the app is
    // still building must stop it gracefully, not kill it with the default action.
    let shutdown = tokio_util::sync::CancellationToken::new();
    let signalled = shutdown.clone();
    tokio::spawn(async move {
        duellsync_telemetry::shutdown_signal().await;
        signalled.cancel();
    });
    tokio::task::yield_now().await;
    let args = Args::parse();
    let env = duellsync_settings::service::env_vars();
    if args.service.check_config {
        std::process::exit(args.check(&env));
    }
    let (config, stores) = args.load(&env)?;
    let _telemetry = duellsync_telemetry::init(&config.telemetry_options())?;
    let app = App::build(config, stores).await?;
    app.run(shutdown.cancelled_owned()).await
}
