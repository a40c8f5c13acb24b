//! The chaos scenario at CI size: random SIGKILLs, a NATS restart, 20 % faults in both
//! simulators, expired tokens, duplicated/dropped/disabled webhooks — and afterwards no lost
//! change, no duplicate DUELL order, customer, Woo product or image, and every dead letter with
//! its reason. The large setting runs by hand: `target/debug/duellsync-chaos --large`.

use duellsync_e2e::chaos::{run, ChaosConfig};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_engine_converges_without_loss_or_duplicates_through_kills_restarts_and_faults() {
    let report = run(ChaosConfig::small()).await;
    assert!(
        report.problems.is_empty(),
        "after {} kills ({:?}) and {} NATS restarts: {:#?}",
        report.kills.len(),
        report.kills,
        report.nats_restarts,
        report.problems
    );
    assert!(report.kills.len() >= 5, "{:?}", report.kills);
    assert!(report.orders_placed >= 10);
}
