//! `syncctl log`: the sync log as lines, `--failed`, `--limit`, `--follow`, `--json`.

use std::process::Stdio;
use std::time::Duration;

use duellsync_events::{order_correlation, product_correlation, v1};
use duellsync_test_support::NatsServer;
use tokio::io::{AsyncBufReadExt, BufReader};

use crate::helpers::{bus, meta_at, publish, syncctl};

fn applied(store: &str, id: &str, product: i64, at: i64) -> v1::ProductApplied {
    v1::ProductApplied {
        meta: Some(meta_at(
            store,
            id,
            &product_correlation(store, product),
            "",
            at,
        )),
        product_id: product,
        sku: format!("SKU-{product}"),
        woo_id: product * 10,
        action: v1::product_applied::Action::Updated as i32,
        fields: vec!["stock_quantity".into()],
        caused_by: vec![],
    }
}

async fn seed(bus: &duellsync_bus::Bus) {
    let now = duellsync_events::now_ms();
    publish(bus, &applied("s1", "a1", 1, now - 5000)).await;
    publish(
        bus,
        &v1::ProductFailed {
            meta: Some(meta_at(
                "s1",
                "f1",
                &product_correlation("s1", 2),
                "",
                now - 4000,
            )),
            product_id: 2,
            sku: "SKU-2".into(),
            code: "product_invalid_sku".into(),
            message: "Invalid or duplicated SKU.".into(),
            permanent: true,
        },
    )
    .await;
    publish(
        bus,
        &v1::OrderParked {
            meta: Some(meta_at(
                "s1",
                "p1",
                &order_correlation("s1", 7),
                "",
                now - 3000,
            )),
            woo_order_id: 7,
            reason: "SKU 1001 is not in DUELL".into(),
            code: "unknown_product".into(),
            missing_skus: vec!["1001".into()],
        },
    )
    .await;
    publish(
        bus,
        &v1::FullSyncProgress {
            meta: Some(meta_at("s1", "g1", "fullsync:r1", "", now - 2500)),
            run_id: "r1".into(),
            phase: "write".into(),
            done: 1,
            total: 2,
        },
    )
    .await;
    publish(
        bus,
        &v1::FullSyncCompleted {
            meta: Some(meta_at("s1", "c1", "fullsync:r1", "", now - 2000)),
            run_id: "r1".into(),
            error: "woocommerce unreachable".into(),
            ..Default::default()
        },
    )
    .await;
    publish(
        bus,
        &v1::OrderImported {
            meta: Some(meta_at(
                "s1",
                "i1",
                &order_correlation("s1", 8),
                "",
                now - 1000,
            )),
            woo_order_id: 8,
            duell_order_id: 5,
            duell_order_number: "5".into(),
            kind: v1::order_imported::Kind::CustomerOrder as i32,
            total: "10.00".into(),
            ..Default::default()
        },
    )
    .await;
    publish(bus, &applied("s2", "other", 9, now - 500)).await;
}

fn types(lines: &[serde_json::Value]) -> Vec<String> {
    lines
        .iter()
        .map(|l| l["type"].as_str().unwrap_or_default().to_owned())
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_log_shows_each_event_once_and_failed_keeps_the_failures() {
    let server = NatsServer::start();
    let bus = bus(&server.url()).await;
    seed(&bus).await;
    let env = [("DUELLSYNC_NATS__URL", server.url())];

    let run = syncctl(&env, &["--json", "log", "--store", "s1"]).await;
    assert_eq!(run.code, 0, "{run}");
    let lines = run.json_lines();
    assert_eq!(
        types(&lines),
        [
            "ProductApplied",
            "ProductFailed",
            "OrderParked",
            "FullSyncCompleted",
            "OrderImported"
        ],
        "progress ticks and other stores are left out"
    );
    assert_eq!(lines[0]["key"], "product 1 SKU SKU-1");
    assert_eq!(lines[0]["outside_write"], "WooCommerce");

    let run = syncctl(&env, &["--json", "log", "--store", "s1", "--failed"]).await;
    assert_eq!(
        types(&run.json_lines()),
        ["ProductFailed", "OrderParked", "FullSyncCompleted"]
    );

    let run = syncctl(&env, &["log", "--store", "s1", "--failed"]).await;
    assert!(
        run.stdout
            .contains("product_invalid_sku: Invalid or duplicated SKU."),
        "{run}"
    );
    assert!(run.stdout.contains("SKU 1001 is not in DUELL"), "{run}");
    assert!(run.stdout.contains("woocommerce unreachable"), "{run}");

    let run = syncctl(&env, &["--json", "log", "--store", "s1", "--limit", "2"]).await;
    assert_eq!(
        types(&run.json_lines()),
        ["FullSyncCompleted", "OrderImported"]
    );

    let run = syncctl(&env, &["--json", "log", "--store", "s1", "--progress"]).await;
    assert_eq!(run.json_lines().len(), 6);

    let run = syncctl(&env, &["log", "--store", "s9", "--since", "1h"]).await;
    assert_eq!(run.code, 0, "{run}");
    assert!(run.stdout.contains("no events for store s9"), "{run}");
    let run = syncctl(&env, &["log", "--store", "S 1"]).await;
    assert_eq!(run.code, 2, "{run}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn follow_prints_new_events_as_they_arrive() {
    let server = NatsServer::start();
    let bus = bus(&server.url()).await;
    seed(&bus).await;
    let mut child = tokio::process::Command::new(env!("CARGO_BIN_EXE_syncctl"))
        .env_clear()
        .env("DUELLSYNC_NATS__URL", server.url())
        .args(["--json", "log", "--store", "s1", "--follow", "--failed"])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .expect("syncctl starts");
    let mut lines = BufReader::new(child.stdout.take().expect("stdout")).lines();
    for want in ["ProductFailed", "OrderParked", "FullSyncCompleted"] {
        assert_eq!(next(&mut lines).await["type"], want);
    }
    let now = duellsync_events::now_ms();
    publish(&bus, &applied("s1", "a-new", 3, now)).await;
    publish(
        &bus,
        &v1::OrderStatusConflict {
            meta: Some(meta_at("s1", "x-new", &order_correlation("s1", 9), "", now)),
            woo_order_id: 9,
            woo_status: "refunded".into(),
            wanted_status: "completed".into(),
            code: "final_status_set_by_person".into(),
            reason: "a person refunded it".into(),
        },
    )
    .await;
    let line = next(&mut lines).await;
    assert_eq!(line["type"], "OrderStatusConflict", "{line}");
    assert_eq!(line["reason"], "a person refunded it");
    child.kill().await.ok();
}

async fn next(
    lines: &mut tokio::io::Lines<BufReader<tokio::process::ChildStdout>>,
) -> serde_json::Value {
    let line = tokio::time::timeout(Duration::from_secs(30), lines.next_line())
        .await
        .expect("a line within 30 s")
        .expect("readable")
        .expect("not closed");
    serde_json::from_str(&line).expect("JSON")
}
