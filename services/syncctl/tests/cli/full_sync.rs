//! The commands that need the running engine, on one world (change-poller and
//! catalog-publisher as real processes): a dry run plans and writes nothing, a real full sync
//! needs confirmation and then creates the catalogue, the sync log, status and explain show
//! it, and a state rebuild of the publisher drops the store's state and consumers, after which
//! the restarted publisher replays and converges (a new full sync creates nothing).

use std::time::Duration;

use crate::world::World;

use crate::helpers::{env, eventually, syncctl};

const SETTINGS: &[&str] = &[
    "automatic = false",
    "sync_orders = false",
    "poll_interval = \"200ms\"",
    "stock_poll_interval = \"200ms\"",
];

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dry_run_sync_log_status_explain_and_a_publisher_rebuild_that_converges() {
    let mut world = World::new(20, SETTINGS).await;
    world.start(&["change-poller", "catalog-publisher"]);
    let e = env(&world.sandbox.nats.url(), &world.sandbox.stores_path());
    world.woo.reset_request_counts();

    // Dry run: the plan, no write.
    let run = syncctl(
        &e,
        &[
            "--json",
            "sync",
            "--store",
            "s1",
            "--dry-run",
            "--timeout",
            "2m",
        ],
    )
    .await;
    assert_eq!(run.code, 0, "{run}");
    let v = run.json();
    assert_eq!(v["dry_run"], true);
    let creates = v["plan"]["creates"].as_i64().unwrap();
    assert!(creates > 0, "{v}");
    assert!(!v["plan"]["sample"].as_array().unwrap().is_empty(), "{v}");
    assert_eq!(v["batch_writes"], 0);
    assert_eq!(world.woo_write_count(), 0, "{:?}", world.woo_writes());

    // A real sync replaces attributes (sync_attributes is on by default): not without --yes
    // when nobody can be asked.
    let run = syncctl(&e, &["sync", "--store", "s1"]).await;
    assert_eq!(run.code, 2, "{run}");
    assert!(
        run.stderr.contains("--yes") && run.stderr.contains("attributes"),
        "{run}"
    );
    assert_eq!(world.woo_write_count(), 0);

    let run = syncctl(
        &e,
        &[
            "--json",
            "sync",
            "--store",
            "s1",
            "--yes",
            "--timeout",
            "2m",
        ],
    )
    .await;
    let v = run.json();
    let failures = v["plan"]["failures"].as_i64().unwrap();
    assert_eq!(run.code, if failures == 0 { 0 } else { 1 }, "{run}");
    assert_eq!(v["dry_run"], false);
    assert_eq!(v["plan"]["creates"].as_i64().unwrap(), creates, "{v}");
    assert!(v["batch_writes"].as_i64().unwrap() >= 1, "{v}");
    let products = world.woo_products().await;
    assert!(products.len() as i64 >= creates - failures, "{products:?}");
    let human = syncctl(&e, &["sync", "--store", "s1", "--yes", "--dry-run"]).await;
    assert!(human.stdout.contains("unchanged"), "{human}");
    assert!(human.stdout.contains("batch writes"), "{human}");
    // What a sync with nothing new still plans to create: products it cannot write (a SKU
    // that clashes in WooCommerce is retried by every full sync).
    let again = syncctl(&e, &["--json", "sync", "--store", "s1", "--dry-run"]).await;
    let still_created = again.json()["plan"]["creates"].as_i64().unwrap();
    assert!(still_created <= failures, "{again}");

    // The sync log and the status show it.
    let log = syncctl(&e, &["--json", "log", "--store", "s1"]).await;
    assert_eq!(log.code, 0, "{log}");
    let lines = log.json_lines();
    assert!(lines.iter().any(|l| l["type"] == "ProductApplied"), "{log}");
    assert!(
        lines.iter().any(|l| l["type"] == "FullSyncCompleted"),
        "{log}"
    );
    let status = syncctl(&e, &["--json", "status", "--store", "s1"]).await;
    assert_eq!(status.code, 0, "{status}");
    let s = &status.json()["stores"][0];
    assert!(s["last"]["fullsync"]["at_ms"].as_i64().is_some(), "{s}");
    assert!(
        s["counts"]["ProductApplied created"].as_u64().unwrap() >= 1,
        "{s}"
    );
    let names: Vec<&str> = s["consumers"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["name"].as_str().unwrap())
        .collect();
    assert!(names.contains(&"catalog-publisher-s1-duell"), "{names:?}");
    assert!(names.contains(&"change-poller-s1-cmd"), "{names:?}");

    // Explain one created product by its SKU.
    let (sku, _) = products.iter().next().expect("a product");
    let run = syncctl(&e, &["--json", "explain", "--store", "s1", sku]).await;
    assert_eq!(run.code, 0, "{run}");
    let v = run.json();
    let types: Vec<&str> = v["chains"][0]["events"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["type"].as_str().unwrap())
        .collect();
    assert!(types.contains(&"ProductObserved"), "{types:?}");
    assert!(types.contains(&"ProductApplied"), "{types:?}");

    // State rebuild: refused while the service runs — found by its locked database, or by
    // its pulls when --state-dir points elsewhere — and without confirmation.
    let elsewhere = tempfile::tempdir().unwrap();
    let run = syncctl(
        &e,
        &[
            "state",
            "rebuild",
            "--service",
            "change-poller",
            "--store",
            "s1",
            "--state-dir",
            elsewhere.path().to_str().unwrap(),
            "--yes",
        ],
    )
    .await;
    assert_eq!(run.code, 1, "{run}");
    assert!(run.stderr.contains("still pulling"), "{run}");
    let state_dir = world.sandbox.dir().join("state").join("catalog-publisher");
    let dir = state_dir.to_str().unwrap().to_owned();
    let rebuild = [
        "state",
        "rebuild",
        "--service",
        "catalog-publisher",
        "--store",
        "s1",
        "--state-dir",
        dir.as_str(),
    ];
    let run = syncctl(&e, &[&rebuild[..], &["--yes"]].concat()).await;
    assert_eq!(run.code, 1, "{run}");
    assert!(run.stderr.contains("locked"), "{run}");
    assert_eq!(
        world
            .sandbox
            .terminate("catalog-publisher", Duration::from_secs(30)),
        Some(0)
    );
    let run = syncctl(&e, &rebuild).await;
    assert_eq!(run.code, 2, "{run}");
    let run = syncctl(
        &e,
        &[
            "--json",
            "state",
            "rebuild",
            "--service",
            "order-importer",
            "--store",
            "s1",
            "--state-dir",
            "/nonexistent",
        ],
    )
    .await;
    assert_eq!(run.code, 2, "{run}");

    let run = syncctl(&e, &[&["--json"][..], &rebuild[..], &["--yes"]].concat()).await;
    assert_eq!(run.code, 0, "{run}");
    let v = run.json();
    let mut deleted: Vec<&str> = v["consumers_deleted"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["name"].as_str().unwrap())
        .collect();
    deleted.sort();
    assert_eq!(
        deleted,
        [
            "catalog-publisher-s1-duell",
            "catalog-publisher-s1-sync",
            "catalog-publisher-s1-woo"
        ],
        "{v}"
    );
    assert!(v["rows_removed"]["pub_source"].as_u64().unwrap() > 0, "{v}");
    assert!(v["ledger_entries_forgotten"].as_u64().unwrap() > 0, "{v}");
    {
        let db = duellsync_store::Store::open(state_dir.join("sled")).expect("the database opens");
        assert!(
            db.remove_group("s1").unwrap().is_empty(),
            "no row of s1 is left"
        );
    }
    let bus = crate::helpers::bus(&world.sandbox.nats.url()).await;
    for stream in ["DUELL", "SYNC", "WOO"] {
        let left = bus.consumers(stream).await.unwrap();
        assert!(
            left.iter()
                .all(|c| !c.name.starts_with("catalog-publisher-s1")),
            "{left:?}"
        );
    }
    assert!(
        bus.consumers("CMD")
            .await
            .unwrap()
            .iter()
            .any(|c| c.name == "change-poller-s1-cmd"),
        "other services' consumers stay"
    );

    // The publisher replays and converges: nothing is created twice.
    world.sandbox.restart("catalog-publisher");
    world
        .sandbox
        .wait_ready("catalog-publisher", Duration::from_secs(60));
    eventually(
        "the publisher's consumers caught up",
        Duration::from_secs(120),
        || async {
            let run = syncctl(&e, &["--json", "status", "--store", "s1"]).await;
            let v = run.json();
            let consumers = v["stores"][0]["consumers"].as_array()?.clone();
            let mine: Vec<_> = consumers
                .iter()
                .filter(|c| {
                    c["name"]
                        .as_str()
                        .unwrap_or("")
                        .starts_with("catalog-publisher-s1")
                })
                .collect();
            (mine.len() == 3 && mine.iter().all(|c| c["lag"] == 0)).then_some(())
        },
    )
    .await;
    let count_before = products.len();
    let run = syncctl(
        &e,
        &[
            "--json",
            "sync",
            "--store",
            "s1",
            "--yes",
            "--timeout",
            "2m",
        ],
    )
    .await;
    let v = run.json();
    assert_eq!(
        v["plan"]["creates"].as_i64().unwrap(),
        still_created,
        "links came back from WooCommerce: {v}"
    );
    assert_eq!(world.woo_products().await.len(), count_before);
}
