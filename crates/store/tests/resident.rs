//! How much resident memory merely opening a store costs. This file holds one test so that,
//! under nextest and cargo test alike, nothing else runs in its process while it measures.

use std::fs;

use duellsync_store::{Commit, Store};

fn resident_kb() -> u64 {
    let status = fs::read_to_string("/proc/self/status").expect("procfs is mounted");
    status
        .lines()
        .find_map(|line| line.strip_prefix("VmRSS:"))
        .and_then(|rest| rest.trim().trim_end_matches("kB").trim().parse().ok())
        .expect("VmRSS in /proc/self/status")
}

/// sled keeps 41 metric histograms of 512 KB in a process-wide static. Written at start-up they
/// stay resident (~21 MB in every unoptimised process that opens a store: each service of the
/// e2e tests); allocated zeroed (the workspace's sled feature `miri_optimizations`) their pages
/// are never touched. Release builds get the zeroed allocation from the optimiser either way.
#[tokio::test]
async fn opening_a_store_does_not_make_sleds_metric_histograms_resident() {
    let dir = tempfile::tempdir().expect("tempdir");
    let before = resident_kb();

    let store = Store::open(dir.path().join("state")).expect("open store");
    let table = store.table::<String, String>("probe");
    let mut commit = Commit::new();
    table.put(&mut commit, &"key".to_string(), &"value".to_string());
    store.commit(commit).await.expect("commit");
    assert_eq!(
        table.get(&"key".to_string()).expect("read"),
        Some("value".to_string())
    );

    let grown_mb = resident_kb().saturating_sub(before) / 1024;
    assert!(
        grown_mb < 12,
        "opening a store made {grown_mb} MB resident; sled's histograms are being written \
         (is the sled feature `miri_optimizations` still on in the workspace Cargo.toml?)"
    );
}
