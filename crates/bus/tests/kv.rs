//! Key-value buckets against a real, private nats-server.

use std::time::Duration;

use bytes::Bytes;
use duellsync_bus::{Bus, BusOptions, KvChange, KvError};
use duellsync_events::KvSpec;
use duellsync_test_support::NatsServer;
use tokio_util::sync::CancellationToken;

const SPEC: KvSpec = KvSpec {
    name: "kv_test",
    description: "test bucket",
    history: 10,
    max_age: Duration::ZERO,
};

async fn bus(server: &NatsServer) -> Bus {
    let mut opts = BusOptions::new(server.url(), "kv-test");
    opts.connect_timeout = Duration::from_secs(10);
    Bus::connect(opts).await.expect("connects")
}

async fn next(rx: &mut tokio::sync::mpsc::Receiver<KvChange>) -> KvChange {
    tokio::time::timeout(Duration::from_secs(20), rx.recv())
        .await
        .expect("a change within 20 s")
        .expect("the watch is open")
}

#[tokio::test]
async fn writes_are_compare_and_set_on_the_revision_read() {
    let server = NatsServer::start();
    let bus = bus(&server).await;
    let kv = bus.ensure_kv(&SPEC).await.unwrap();
    // Declaring it again (another process starting) changes nothing.
    let kv2 = bus.ensure_kv(&SPEC).await.unwrap();

    let r1 = kv.create("s1", Bytes::from("a")).await.unwrap();
    assert!(matches!(
        kv2.create("s1", Bytes::from("b")).await,
        Err(KvError::Conflict { .. })
    ));
    let r2 = kv.update("s1", Bytes::from("b"), r1).await.unwrap();
    // A writer that read r1 lost the race: refused, nothing overwritten.
    assert!(matches!(
        kv2.update("s1", Bytes::from("c"), r1).await,
        Err(KvError::Conflict { .. })
    ));
    assert_eq!(kv.get("s1").await.unwrap().unwrap().value, Bytes::from("b"));
    assert!(matches!(
        kv.delete("s1", Some(r1)).await,
        Err(KvError::Conflict { .. })
    ));
    kv.delete("s1", Some(r2)).await.unwrap();
    assert!(kv.get("s1").await.unwrap().is_none());
    assert!(kv.keys().await.unwrap().is_empty());

    let history = kv.history("s1").await.unwrap();
    let values: Vec<(&[u8], bool)> = history
        .iter()
        .map(|e| (e.value.as_ref(), e.deleted))
        .collect();
    assert_eq!(values, vec![(&b"a"[..], false), (b"b", false), (b"", true)]);
    assert!(kv.history("never").await.unwrap().is_empty());
    // A deleted key can be created again.
    kv.create("s1", Bytes::from("again")).await.unwrap();
}

#[tokio::test]
async fn a_watch_starts_with_a_snapshot_and_survives_a_broker_restart() {
    let mut server = NatsServer::start();
    let bus = bus(&server).await;
    let kv = bus.ensure_kv(&SPEC).await.unwrap();
    kv.put("a", Bytes::from("1")).await.unwrap();
    let stop = CancellationToken::new();
    let mut rx = kv.watch(stop.clone());
    match next(&mut rx).await {
        KvChange::Snapshot(s) => {
            assert_eq!(s.len(), 1);
            assert_eq!(s[0].key, "a");
        }
        other => panic!("expected a snapshot, got {other:?}"),
    }
    kv.put("b", Bytes::from("2")).await.unwrap();
    match next(&mut rx).await {
        KvChange::Changed(e) => assert_eq!((e.key.as_str(), e.deleted), ("b", false)),
        other => panic!("expected a change, got {other:?}"),
    }
    kv.delete("a", None).await.unwrap();
    match next(&mut rx).await {
        KvChange::Changed(e) => assert_eq!((e.key.as_str(), e.deleted), ("a", true)),
        other => panic!("expected a delete, got {other:?}"),
    }

    server.restart();
    // Changed while the watch reconnects: the new snapshot (or a change) carries it.
    let mut written = false;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    let mut seen_c = false;
    while tokio::time::Instant::now() < deadline && !seen_c {
        if !written && kv.put("c", Bytes::from("3")).await.is_ok() {
            written = true;
        }
        let Ok(Some(change)) = tokio::time::timeout(Duration::from_millis(500), rx.recv()).await
        else {
            continue;
        };
        seen_c = match change {
            KvChange::Snapshot(s) => s.iter().any(|e| e.key == "c"),
            KvChange::Changed(e) => e.key == "c",
        };
    }
    assert!(seen_c, "the watch saw the write made around the restart");
    stop.cancel();
}
