//! The operator-tool reads of the bus against a private nats-server: reads from a time or a
//! sequence with several filters, the last message of a subject, counts per subject, consumer
//! states, and following a stream.

use std::time::Duration;

use duellsync_bus::{Bus, BusOptions, ConsumerSpec, StartAt};
use duellsync_events::{v1, Event, STREAM_DUELL};
use duellsync_test_support::{builders::stock_observed, NatsServer};
use tokio_util::sync::CancellationToken;

async fn bus(server: &NatsServer) -> Bus {
    let bus = Bus::connect(BusOptions::new(server.url(), "inspect-test"))
        .await
        .expect("connects");
    bus.ensure_streams().await.expect("streams");
    bus
}

fn filters(f: &[&str]) -> Vec<String> {
    f.iter().map(|s| (*s).to_owned()).collect()
}

#[tokio::test]
async fn reads_start_at_a_sequence_or_a_time_and_take_several_filters() {
    let server = NatsServer::start();
    let bus = bus(&server).await;
    for i in 1..=3 {
        bus.publish(&stock_observed("s1", i, "1")).await.unwrap();
        bus.publish(&stock_observed("s2", i, "1")).await.unwrap();
    }
    let all = bus
        .read_at("DUELL", &[], StartAt::First, 100)
        .await
        .unwrap();
    assert_eq!(all.len(), 6);
    let two = bus
        .read_at(
            "DUELL",
            &filters(&["duell.s1.stock.observed", "duell.s2.stock.observed"]),
            StartAt::Sequence(5),
            100,
        )
        .await
        .unwrap();
    assert_eq!(
        two.iter().map(|m| m.sequence).collect::<Vec<_>>(),
        vec![5, 6]
    );
    let cut = all[3].published_ms;
    let later = bus
        .read_at(
            "DUELL",
            &filters(&["duell.s2.>"]),
            StartAt::TimeMs(cut),
            100,
        )
        .await
        .unwrap();
    assert!(later
        .iter()
        .all(|m| m.published_ms >= cut && m.subject.contains(".s2.")));
    assert!(!later.is_empty());
    let future = bus
        .read_at("DUELL", &[], StartAt::TimeMs(i64::MAX / 2), 100)
        .await
        .unwrap_or_default();
    assert!(
        future.is_empty(),
        "{:?}",
        future.iter().map(|m| m.sequence).collect::<Vec<_>>()
    );
    let mut visited = 0;
    let n = bus
        .scan_at("DUELL", &[], StartAt::First, 4, |_| visited += 1)
        .await
        .unwrap();
    assert_eq!((n, visited), (4, 4), "the limit stops the walk");
}

#[tokio::test]
async fn the_last_message_of_a_subject_and_counts_per_subject_are_found() {
    let server = NatsServer::start();
    let bus = bus(&server).await;
    assert!(bus
        .last_message("DUELL", "duell.s1.stock.observed")
        .await
        .unwrap()
        .is_none());
    bus.publish(&stock_observed("s1", 1, "1")).await.unwrap();
    bus.publish(&stock_observed("s1", 2, "7")).await.unwrap();
    bus.publish(&stock_observed("s2", 2, "7")).await.unwrap();
    let last = bus
        .last_message("DUELL", "duell.s1.stock.observed")
        .await
        .unwrap()
        .expect("a message");
    let ev: v1::StockObserved = prost::Message::decode(last.payload.as_ref()).unwrap();
    assert_eq!(ev.product_id, 2);
    let counts = bus.subject_counts("DUELL", "duell.>").await.unwrap();
    assert_eq!(counts.get("duell.s1.stock.observed"), Some(&2));
    assert_eq!(counts.get("duell.s2.stock.observed"), Some(&1));
    assert!(bus
        .subject_counts("DUELL", "duell.s9.>")
        .await
        .unwrap()
        .is_empty());
}

#[tokio::test]
async fn consumer_states_show_filters_store_and_lag() {
    let server = NatsServer::start();
    let bus = bus(&server).await;
    for i in 0..4 {
        bus.publish(&stock_observed("s1-x", i, "1")).await.unwrap();
    }
    bus.consumer(ConsumerSpec::new(
        &STREAM_DUELL,
        "svc-s1-x-duell",
        vec![v1::StockObserved::subject("s1-x")],
        "svc",
        "s1-x",
    ))
    .await
    .unwrap();
    // A reader's ordered consumer is not listed.
    let stop = CancellationToken::new();
    let mut rx = bus.follow_at("DUELL", &[], StartAt::First, stop.clone());
    assert!(rx.recv().await.is_some());
    let states = bus.consumers("DUELL").await.unwrap();
    stop.cancel();
    assert_eq!(states.len(), 1, "{states:?}");
    let c = &states[0];
    assert_eq!(c.name, "svc-s1-x-duell");
    assert_eq!(c.store(), Some("s1-x"));
    assert_eq!(c.lag(), 4);
    assert_eq!(c.description.as_deref(), Some("svc for store s1-x"));
}

#[tokio::test]
async fn follow_delivers_what_is_stored_then_what_arrives() {
    let server = NatsServer::start();
    let bus = bus(&server).await;
    bus.publish(&stock_observed("s1", 1, "1")).await.unwrap();
    let stop = CancellationToken::new();
    let mut rx = bus.follow_at(
        "DUELL",
        &filters(&["duell.s1.>"]),
        StartAt::First,
        stop.clone(),
    );
    let first = tokio::time::timeout(Duration::from_secs(10), rx.recv())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(first.sequence, 1);
    bus.publish(&stock_observed("s2", 1, "1")).await.unwrap();
    bus.publish(&stock_observed("s1", 2, "1")).await.unwrap();
    let second = tokio::time::timeout(Duration::from_secs(10), rx.recv())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        second.sequence, 3,
        "the other store's message is filtered out"
    );
    stop.cancel();
}
