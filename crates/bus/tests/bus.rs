//! The bus against a real, private nats-server.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use duellsync_bus::{Bus, BusOptions, ConsumerSpec, HandleError};
use duellsync_events::{headers, v1, Event, STREAM_DLQ, STREAM_DUELL};
use duellsync_test_support::{builders::stock_observed, NatsServer};
use tokio_util::sync::CancellationToken;

async fn bus(server: &NatsServer) -> Bus {
    let mut opts = BusOptions::new(server.url(), "bus-test");
    opts.publish_deadline = Duration::from_secs(20);
    let bus = Bus::connect(opts).await.expect("connects");
    bus.ensure_streams().await.expect("streams");
    bus
}

fn spec(durable: &str) -> ConsumerSpec {
    let mut spec = ConsumerSpec::new(
        &STREAM_DUELL,
        durable,
        vec![v1::StockObserved::subject("s1")],
        "bus-test",
        "s1",
    );
    spec.max_deliveries = 3;
    spec.ack_wait = Duration::from_secs(5);
    spec.backoff_cap = Duration::from_millis(50);
    spec
}

#[tokio::test]
async fn publish_is_confirmed_and_a_repeated_event_id_is_dropped() {
    let server = NatsServer::start();
    let bus = bus(&server).await;
    let ev = stock_observed("s1", 1, "5");
    let first = bus.publish(&ev).await.unwrap();
    let second = bus.publish(&ev).await.unwrap();
    assert!(!first.duplicate);
    assert!(second.duplicate);
    assert_eq!(bus.stream_state("DUELL").await.unwrap().0, 1);
}

#[tokio::test]
async fn ensure_streams_is_idempotent() {
    let server = NatsServer::start();
    let bus = bus(&server).await;
    bus.ensure_streams().await.unwrap();
    assert!(bus.streams_present().await);
}

#[tokio::test]
async fn consumer_acks_what_the_handler_finished() {
    let server = NatsServer::start();
    let bus = bus(&server).await;
    for i in 0..20 {
        bus.publish(&stock_observed("s1", i, "1")).await.unwrap();
    }
    let consumer = bus.consumer(spec("c1")).await.unwrap();
    let seen = Arc::new(AtomicU64::new(0));
    let stop = CancellationToken::new();
    let (s, st) = (seen.clone(), stop.clone());
    let run = tokio::spawn(async move {
        consumer
            .run(st.clone(), move |d| {
                let s = s.clone();
                let st = st.clone();
                let ev = d.decode::<v1::StockObserved>();
                async move {
                    ev?;
                    if s.fetch_add(1, Ordering::SeqCst) + 1 == 20 {
                        st.cancel();
                    }
                    Ok(())
                }
            })
            .await
    });
    tokio::time::timeout(Duration::from_secs(20), run)
        .await
        .expect("all handled")
        .unwrap()
        .unwrap();
    assert_eq!(seen.load(Ordering::SeqCst), 20);
    // Acks are asynchronous on the server; give it a moment to settle.
    let mut lag = u64::MAX;
    for _ in 0..50 {
        lag = bus.consumer_lag("DUELL", "c1").await.unwrap();
        if lag == 0 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(lag, 0);
}

#[tokio::test]
async fn a_retryable_failure_is_redelivered_then_dead_lettered_with_its_reason() {
    let server = NatsServer::start();
    let bus = bus(&server).await;
    bus.publish(&stock_observed("s1", 9, "3")).await.unwrap();
    let consumer = bus.consumer(spec("c2")).await.unwrap();
    let attempts = Arc::new(AtomicU64::new(0));
    let stop = CancellationToken::new();
    let a = attempts.clone();
    let st = stop.clone();
    tokio::spawn(async move {
        consumer
            .run(st, move |_d| {
                a.fetch_add(1, Ordering::SeqCst);
                async { Err(HandleError::retry("woo is down")) }
            })
            .await
    });
    let dlq = wait_for_dlq(&bus, 1).await;
    stop.cancel();
    assert_eq!(attempts.load(Ordering::SeqCst), 3);
    let m = &dlq[0];
    assert_eq!(m.subject, "dlq.s1.bus-test");
    assert_eq!(
        m.header(headers::DLQ_SUBJECT),
        Some("duell.s1.stock.observed")
    );
    assert_eq!(m.header(headers::DLQ_DELIVERIES), Some("3"));
    assert!(m
        .header(headers::DLQ_REASON)
        .unwrap()
        .contains("gave up after 3 deliveries: woo is down"));
}

#[tokio::test]
async fn a_permanent_failure_is_dead_lettered_at_once() {
    let server = NatsServer::start();
    let bus = bus(&server).await;
    bus.publish(&stock_observed("s1", 9, "3")).await.unwrap();
    let consumer = bus.consumer(spec("c3")).await.unwrap();
    let attempts = Arc::new(AtomicU64::new(0));
    let stop = CancellationToken::new();
    let a = attempts.clone();
    let st = stop.clone();
    tokio::spawn(async move {
        consumer
            .run(st, move |_d| {
                a.fetch_add(1, Ordering::SeqCst);
                async { Err(HandleError::permanent("sku is not valid\nat all")) }
            })
            .await
    });
    let dlq = wait_for_dlq(&bus, 1).await;
    stop.cancel();
    assert_eq!(attempts.load(Ordering::SeqCst), 1);
    assert_eq!(
        dlq[0].header(headers::DLQ_REASON),
        Some("sku is not valid at all")
    );
    let original = v1::StockObserved::decode_from(&dlq[0].payload);
    assert_eq!(original.product_id, 9);
}

trait DecodeFrom {
    fn decode_from(bytes: &[u8]) -> Self;
}
impl DecodeFrom for v1::StockObserved {
    fn decode_from(bytes: &[u8]) -> Self {
        <v1::StockObserved as prost::Message>::decode(bytes).unwrap()
    }
}

async fn wait_for_dlq(bus: &Bus, n: usize) -> Vec<duellsync_bus::StoredMessage> {
    for _ in 0..200 {
        let msgs = bus.read(STREAM_DLQ.name, "dlq.>", 1, 100).await.unwrap();
        if msgs.len() >= n {
            return msgs;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("no dead letter arrived");
}

#[tokio::test]
async fn nothing_is_lost_across_a_broker_restart() {
    let mut server = NatsServer::start();
    let bus = bus(&server).await;
    for i in 0..10 {
        bus.publish(&stock_observed("s1", i, "1")).await.unwrap();
    }
    let consumer = bus.consumer(spec("c4")).await.unwrap();
    let stop = CancellationToken::new();
    let mut rx = consumer.deliveries(stop.clone());
    let mut got = std::collections::BTreeSet::new();
    while got.len() < 10 {
        let d = tokio::time::timeout(Duration::from_secs(10), rx.recv())
            .await
            .unwrap()
            .unwrap();
        got.insert(d.decode::<v1::StockObserved>().unwrap().product_id);
        d.ack().await;
    }

    server.restart();

    // Publishing retries until the broker is back, then everything flows again.
    for i in 10..20 {
        bus.publish(&stock_observed("s1", i, "1")).await.unwrap();
    }
    while got.len() < 20 {
        let d = tokio::time::timeout(Duration::from_secs(30), rx.recv())
            .await
            .expect("deliveries resume after the restart")
            .unwrap();
        got.insert(d.decode::<v1::StockObserved>().unwrap().product_id);
        d.ack().await;
    }
    stop.cancel();
    assert_eq!(got, (0..20).collect());
}

#[tokio::test]
async fn read_returns_stored_messages_in_order() {
    let server = NatsServer::start();
    let bus = bus(&server).await;
    for i in 0..5 {
        bus.publish(&stock_observed("s1", i, "1")).await.unwrap();
    }
    let msgs = bus.read("DUELL", "duell.s1.>", 1, 100).await.unwrap();
    let seqs: Vec<u64> = msgs.iter().map(|m| m.sequence).collect();
    assert_eq!(seqs, vec![1, 2, 3, 4, 5]);
    assert_eq!(msgs[0].header(headers::EVENT_TYPE), Some("StockObserved"));
    assert!(bus
        .read("DUELL", "duell.s2.>", 1, 100)
        .await
        .unwrap()
        .is_empty());
    let from3 = bus.read("DUELL", "duell.s1.>", 3, 100).await.unwrap();
    assert_eq!(from3.len(), 3);
    assert!(bus.get("DUELL", 2).await.unwrap().is_some());
    assert!(bus.delete_message("DUELL", 2).await.unwrap());
    assert!(bus.get("DUELL", 2).await.unwrap().is_none());
}

#[tokio::test]
async fn credentials_in_the_url_never_show_in_debug_output_or_connect_errors() {
    let server = NatsServer::start();
    // A server without authorization ignores the user and password, so the client connects.
    let url = server
        .url()
        .replace("nats://", "nats://svc-user:hunter2secret@");
    let bus = Bus::connect(BusOptions::new(url.clone(), "debug-test"))
        .await
        .expect("connects");
    let shown = format!("{bus:?}");
    assert!(!shown.contains("hunter2secret"), "{shown}");
    assert!(shown.contains("svc-user:***@"), "{shown}");

    let port = duellsync_test_support::free_port();
    let mut opts = BusOptions::new(
        format!("nats://svc-user:hunter2secret@127.0.0.1:{port}"),
        "debug-test",
    );
    opts.connect_timeout = Duration::from_millis(500);
    let err = Bus::connect(opts).await.unwrap_err();
    for text in [err.to_string(), format!("{err:?}")] {
        assert!(!text.contains("hunter2secret"), "{text}");
    }
    let token = format!("nats://s3cr3tTokenValue@127.0.0.1:{port}");
    let mut opts = BusOptions::new(token, "debug-test");
    opts.connect_timeout = Duration::from_millis(500);
    let err = Bus::connect(opts).await.unwrap_err().to_string();
    assert!(!err.contains("s3cr3tTokenValue"), "{err}");
}
