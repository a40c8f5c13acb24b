//! `syncctl dlq list|replay|skip` on dead letters stored the way the services store them.

use duellsync_bus::StartAt;
use duellsync_events::{headers, order_correlation, v1, Event, EventId};
use duellsync_test_support::NatsServer;

use crate::helpers::{bus, dead_letter, meta_at, publish, syncctl, Run};

fn order(store: &str, id: i64) -> v1::OrderObserved {
    let event_id = EventId::new("order", store).int(id).finish();
    v1::OrderObserved {
        meta: Some(meta_at(
            store,
            &event_id,
            &order_correlation(store, id),
            "",
            duellsync_events::now_ms(),
        )),
        order_id: id,
        status: "processing".into(),
        number: id.to_string(),
        total: "100.00".into(),
        source: v1::order_observed::Source::Webhook as i32,
        topic: "order.created".into(),
        payload_json: format!("{{\"id\":{id}}}").into_bytes(),
        ..Default::default()
    }
}

async fn run(server: &NatsServer, args: &[&str]) -> Run {
    syncctl(&[("DUELLSYNC_NATS__URL", server.url())], args).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn list_replay_and_skip_dead_letters_and_a_second_replay_finds_nothing() {
    let server = NatsServer::start();
    let bus = bus(&server.url()).await;
    let first = order("s1", 101);
    publish(&bus, &first).await;
    let seq1 = dead_letter(
        &bus,
        "s1",
        "order-importer",
        &first,
        "unknown_product: SKU 1001 is not in DUELL",
    )
    .await;
    let second = order("s1", 102);
    let seq2 = dead_letter(
        &bus,
        "s1",
        "order-importer",
        &second,
        "in doubt: check DUELL",
    )
    .await;
    let other = order("s2", 201);
    let seq3 = dead_letter(&bus, "s2", "order-importer", &other, "other store").await;

    let listed = run(&server, &["--json", "dlq", "list", "--store", "s1"]).await;
    assert_eq!(listed.code, 0, "{listed}");
    let v = listed.json();
    let letters = v["dead_letters"].as_array().unwrap();
    assert_eq!(letters.len(), 2, "{v}");
    assert_eq!(letters[0]["seq"], seq1);
    assert_eq!(letters[0]["service"], "order-importer");
    assert_eq!(letters[0]["subject"], "woo.s1.order.observed");
    assert_eq!(letters[0]["deliveries"], 10);
    assert_eq!(
        letters[0]["reason"],
        "unknown_product: SKU 1001 is not in DUELL"
    );
    assert_eq!(letters[0]["event"]["key"], "order 101");

    let human = run(&server, &["dlq", "list"]).await;
    assert!(
        human.stdout.contains("unknown_product") && human.stdout.contains("s2"),
        "{human}"
    );

    // Replay: the original event id was stored a moment ago, so only a new message id gets the
    // replay past JetStream's duplicate window.
    let s = seq1.to_string();
    let replayed = run(&server, &["--json", "dlq", "replay", &s]).await;
    assert_eq!(replayed.code, 0, "{replayed}");
    assert_eq!(replayed.json()["replayed"][0]["result"], "replayed");
    let on_subject = bus
        .read_at(
            "WOO",
            &[v1::OrderObserved::subject("s1")],
            StartAt::First,
            100,
        )
        .await
        .unwrap();
    assert_eq!(on_subject.len(), 2, "the original and its replay");
    let replay = &on_subject[1];
    assert_eq!(replay.header(headers::REPLAY), Some("1"));
    assert_ne!(replay.header(headers::MSG_ID), Some(first.event_id()));
    assert_eq!(replay.header(headers::EVENT_TYPE), Some("OrderObserved"));
    assert!(replay.header(headers::DLQ_REASON).is_none());
    assert_eq!(replay.payload, on_subject[0].payload);
    assert!(
        bus.get("DLQ", seq1).await.unwrap().is_none(),
        "the dead letter is gone"
    );

    let again = run(&server, &["dlq", "replay", &s]).await;
    assert_eq!(again.code, 0, "{again}");
    assert!(
        again.stdout.contains("not in the dead-letter queue"),
        "{again}"
    );
    let on_subject = bus
        .read_at(
            "WOO",
            &[v1::OrderObserved::subject("s1")],
            StartAt::First,
            100,
        )
        .await
        .unwrap();
    assert_eq!(on_subject.len(), 2, "nothing replayed twice");

    // A sequence of another store is refused when --store says which store is meant.
    let wrong = run(
        &server,
        &["dlq", "replay", &seq3.to_string(), "--store", "s1"],
    )
    .await;
    assert_eq!(wrong.code, 1, "{wrong}");
    assert!(wrong.stdout.contains("belongs to store s2"), "{wrong}");

    let skipped = run(
        &server,
        &[
            "dlq",
            "skip",
            &seq2.to_string(),
            "--reason",
            "order is in DUELL already",
        ],
    )
    .await;
    assert_eq!(skipped.code, 0, "{skipped}");
    assert!(
        skipped.stdout.contains("order is in DUELL already"),
        "{skipped}"
    );
    assert!(
        skipped.stdout.contains("in doubt: check DUELL"),
        "{skipped}"
    );
    assert!(bus.get("DLQ", seq2).await.unwrap().is_none());
    let woo = bus
        .read_at(
            "WOO",
            &[v1::OrderObserved::subject("s1")],
            StartAt::First,
            100,
        )
        .await
        .unwrap();
    assert_eq!(woo.len(), 2, "a skip sends nothing");

    let all = run(
        &server,
        &["--json", "dlq", "replay", "--all", "--store", "s2"],
    )
    .await;
    assert_eq!(all.code, 0, "{all}");
    assert_eq!(all.json()["replayed"].as_array().unwrap().len(), 1);
    let left = run(&server, &["--json", "dlq", "list"]).await.json();
    assert!(
        left["dead_letters"].as_array().unwrap().is_empty(),
        "{left}"
    );

    let usage = run(&server, &["dlq", "replay"]).await;
    assert_eq!(usage.code, 2, "{usage}");
}

#[tokio::test]
async fn an_unreachable_broker_is_a_failure_with_the_fix() {
    let run = syncctl(
        &[("DUELLSYNC_NATS__URL", "nats://127.0.0.1:9".into())],
        &["--connect-timeout", "1s", "dlq", "list"],
    )
    .await;
    assert_eq!(run.code, 1, "{run}");
    assert!(run.stderr.contains("--nats-url"), "{run}");
}

#[tokio::test]
async fn a_broker_without_the_engines_streams_is_named() {
    let server = NatsServer::start();
    let run = run(&server, &["dlq", "list"]).await;
    assert_eq!(run.code, 1, "{run}");
    assert!(run.stderr.contains("streams are missing"), "{run}");
}
