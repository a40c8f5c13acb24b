//! NATS as the deployment runs it: the accounts and permissions of deploy/nats/permissions.toml
//! (rendered by deploy/generate.py, the same code that renders the cluster's), one NKey per
//! service, TLS with the test's own CA. Each service connects with its own credentials; what a
//! service may not do is refused by the server, whoever asks.

use std::time::Duration;

use bytes::Bytes;
use duellsync_bus::{Bus, BusOptions, ConsumerSpec, Error, HeaderMap};
use duellsync_events::{v1, Event, STREAM_DLQ, STREAM_WOO};
use duellsync_test_support::{builders::stock_observed, NatsServer};
use tokio::sync::mpsc;

const SERVICES: [&str; 5] = [
    "webhook-ingest",
    "change-poller",
    "catalog-publisher",
    "order-importer",
    "status-writeback",
];

fn options(server: &NatsServer, user: &str) -> BusOptions {
    let mut o = BusOptions::new(server.url(), user);
    o.nkey_file = server.nkey_file(user).map(Into::into);
    o.tls_ca_file = server.ca_file().map(Into::into);
    o.publish_deadline = Duration::from_secs(20);
    o.connect_timeout = Duration::from_secs(20);
    o
}

async fn connect(server: &NatsServer, user: &str) -> Bus {
    let bus = Bus::connect(options(server, user))
        .await
        .unwrap_or_else(|e| panic!("{user} connects with its own credentials: {e}"));
    bus.ensure_streams()
        .await
        .unwrap_or_else(|e| panic!("{user} finds or creates the streams: {e}"));
    bus
}

async fn publish(bus: &Bus, subject: &str, id: &str) -> duellsync_bus::Result<()> {
    bus.publish_raw(subject, id, HeaderMap::new(), Bytes::from_static(b"forged"))
        .await
        .map(|_| ())
}

fn assert_denied(r: duellsync_bus::Result<()>, who: &str, subject: &str) {
    match r {
        Err(Error::Denied { subject: s }) => assert_eq!(s, subject),
        other => panic!("{who} publishing to {subject}: want a permission refusal, got {other:?}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_service_connects_over_tls_with_its_own_credentials() {
    let server = NatsServer::start_secured();
    assert!(server.url().starts_with("tls://"));
    for user in SERVICES.iter().chain(&["syncctl"]) {
        let bus = connect(&server, user).await;
        assert!(bus.is_connected(), "{user}");
        assert!(bus.streams_present().await, "{user} sees the streams");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn webhook_ingest_may_record_deliveries_and_notices_and_nothing_else() {
    let server = NatsServer::start_secured();
    let ingest = connect(&server, "webhook-ingest").await;
    publish(&ingest, &v1::OrderObserved::subject("s1"), "ok-1")
        .await
        .expect("an order delivery");
    publish(&ingest, &v1::ChangeNoticed::subject("s1"), "ok-2")
        .await
        .expect("a change notice");
    for forged in [
        // what the importer and the write-back act on
        v1::OrderImported::subject("s1"),
        v1::OrderRetryRequested::subject("s1"),
        // another fact about an order, or about the catalogue
        "woo.s1.order.created".to_owned(),
        v1::StockObserved::subject("s1"),
        v1::FullSyncRequested::subject("s1"),
        duellsync_events::dlq_subject("s1", "order-importer"),
    ] {
        assert_denied(
            publish(&ingest, &forged, "forged").await,
            "webhook-ingest",
            &forged,
        );
    }
    // The server logs each refusal (tests/tests/secured.rs relies on it to find a gap in the
    // table).
    assert!(
        server.log().contains("Publish Violation"),
        "{}",
        server.log()
    );
    let admin = connect(&server, "syncctl").await;
    assert_eq!(admin.stream_state("WOO").await.unwrap().0, 1);
    assert_eq!(admin.stream_state("SYNC").await.unwrap().0, 0);
    assert_eq!(admin.stream_state("CMD").await.unwrap().0, 0);
    assert_eq!(admin.stream_state("DLQ").await.unwrap().0, 0);
    assert_eq!(
        admin.stream_state("DUELL").await.unwrap().0,
        1,
        "only the notice"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_order_importer_cannot_write_an_order_it_would_import() {
    let server = NatsServer::start_secured();
    let importer = connect(&server, "order-importer").await;
    let subject = v1::OrderObserved::subject("s1");
    assert_denied(
        publish(&importer, &subject, "forged").await,
        "order-importer",
        &subject,
    );
    publish(&importer, &v1::OrderImported::subject("s1"), "outcome")
        .await
        .expect("its own outcome");
    let admin = connect(&server, "syncctl").await;
    assert_eq!(admin.stream_state("WOO").await.unwrap().0, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_shard_service_acts_only_in_its_own_role_whatever_the_store() {
    let server = NatsServer::start_secured();
    let poller = connect(&server, "change-poller").await;
    // Stores are live data (the registry), so the server cannot know which stores a shard
    // serves: a poller may observe for any store (deploy/nats/permissions.toml explains the
    // trade-off) ...
    for store in ["s1", "s2"] {
        publish(&poller, &v1::StockObserved::subject(store), store)
            .await
            .expect("an observation");
    }
    // ... but only as a poller: not an import outcome, not a command it does not make.
    for forged in [
        v1::OrderImported::subject("s2"),
        v1::OrderRetryRequested::subject("s2"),
    ] {
        assert_denied(
            publish(&poller, &forged, "forged").await,
            "change-poller",
            &forged,
        );
    }
    // Another service's consumer: refused at declaration.
    for durable in ["order-importer-s1-orders", "order-importer-s2-orders"] {
        let spec = ConsumerSpec::new(
            &STREAM_WOO,
            durable,
            vec![v1::OrderObserved::subject("s1")],
            "change-poller",
            "s1",
        );
        match poller.consumer(spec).await {
            Err(Error::Denied { .. }) => {}
            other => panic!("change-poller declaring {durable}: {other:?}"),
        }
    }
    // It reads the registry and holds its own leases; it writes no store's settings and no
    // other service's lease.
    poller
        .ensure_kv(&duellsync_events::KV_STORES)
        .await
        .expect("the registry");
    let leases = poller
        .ensure_kv(&duellsync_events::KV_LEASES)
        .await
        .expect("the leases");
    leases
        .put("change-poller.s2", Bytes::from_static(b"me"))
        .await
        .expect("its own lease");
    let (client, mut errors) = raw(&server, "change-poller").await;
    for subject in [
        "$KV.duellsync_stores.s1",
        "$KV.duellsync_leases.order-importer.s1",
        "$KV.duellsync_console.session.x",
    ] {
        client
            .publish(subject, Bytes::from_static(b"forged"))
            .await
            .unwrap();
        client.flush().await.unwrap();
        assert!(
            refused(&mut errors, subject).await,
            "change-poller was not refused {subject}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_console_edits_settings_but_touches_no_service_state() {
    let server = NatsServer::start_secured();
    let console = connect(&server, "console").await;
    let stores = console
        .ensure_kv(&duellsync_events::KV_STORES)
        .await
        .expect("the registry");
    stores
        .put("s1", Bytes::from_static(b"{}"))
        .await
        .expect("a store's settings");
    console
        .ensure_kv(&duellsync_events::KV_CONSOLE)
        .await
        .expect("its accounts")
        .put("session.x", Bytes::from_static(b"{}"))
        .await
        .expect("a session");
    console
        .ensure_stream(&duellsync_events::STREAM_AUDIT)
        .await
        .expect("the audit stream");
    publish(&console, "audit.s1.settings", "audit-1")
        .await
        .expect("an audit entry");
    publish(&console, &v1::FullSyncRequested::subject("s1"), "sync-1")
        .await
        .expect("a full sync request");
    let (client, mut errors) = raw(&server, "console").await;
    for subject in [
        "$KV.duellsync_leases.catalog-publisher.s1",
        "$JS.API.STREAM.DELETE.WOO",
        "$JS.API.STREAM.PURGE.SYNC",
        "$JS.API.STREAM.UPDATE.KV_duellsync_stores",
        "$JS.API.CONSUMER.DELETE.WOO.order-importer-s1-orders",
        "$JS.API.CONSUMER.DURABLE.CREATE.WOO.order-importer-s1-orders",
    ] {
        client
            .publish_with_reply(subject, "_INBOX_console.x", Bytes::from_static(b"{}"))
            .await
            .unwrap();
        client.flush().await.unwrap();
        assert!(
            refused(&mut errors, subject).await,
            "the console was not refused {subject}"
        );
    }
}

/// A raw client with a service's credentials, recording the server's errors: what a service's
/// code could do if it were not the engine's (a compromised pod).
async fn raw(
    server: &NatsServer,
    user: &str,
) -> (async_nats::Client, mpsc::UnboundedReceiver<String>) {
    let (tx, rx) = mpsc::unbounded_channel();
    let seed = std::fs::read_to_string(server.nkey_file(user).expect("a user of the table"))
        .expect("the seed is readable");
    let client = async_nats::ConnectOptions::new()
        .nkey(seed.trim().to_owned())
        .require_tls(true)
        .add_root_certificates(server.ca_file().expect("secured").to_path_buf())
        .custom_inbox_prefix(format!("_INBOX_{user}"))
        .request_timeout(Some(Duration::from_secs(3)))
        .event_callback(move |e| {
            let tx = tx.clone();
            async move {
                if let async_nats::Event::ServerError(e) = e {
                    let _ = tx.send(e.to_string());
                }
            }
        })
        .connect(server.url())
        .await
        .unwrap_or_else(|e| panic!("{user} connects: {e}"));
    (client, rx)
}

async fn refused(rx: &mut mpsc::UnboundedReceiver<String>, subject: &str) -> bool {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    while let Ok(Some(e)) = tokio::time::timeout_at(deadline, rx.recv()).await {
        if e.contains("Permissions Violation") && e.contains(subject) {
            return true;
        }
    }
    false
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn only_syncctl_may_delete_or_purge() {
    let server = NatsServer::start_secured();
    let admin = connect(&server, "syncctl").await;
    publish(&admin, &v1::OrderObserved::subject("s1"), "keep")
        .await
        .unwrap();
    publish(
        &admin,
        &duellsync_events::dlq_subject("s1", "order-importer"),
        "dl",
    )
    .await
    .unwrap();
    let importer = connect(&server, "order-importer").await;
    let spec = ConsumerSpec::new(
        &STREAM_WOO,
        "order-importer-s1-orders",
        vec![v1::OrderObserved::subject("s1")],
        "order-importer",
        "s1",
    );
    importer.consumer(spec).await.expect("its own consumer");

    let destructive = [
        "$JS.API.STREAM.DELETE.WOO",
        "$JS.API.STREAM.PURGE.WOO",
        "$JS.API.STREAM.UPDATE.WOO",
        "$JS.API.STREAM.MSG.DELETE.DLQ",
        "$JS.API.STREAM.DELETE.DLQ",
        "$JS.API.CONSUMER.DELETE.WOO.order-importer-s1-orders",
    ];
    for user in SERVICES {
        let (client, mut errors) = raw(&server, user).await;
        for subject in destructive {
            // The request as the JetStream API takes it; no need to wait for the answer that
            // never comes.
            client
                .publish_with_reply(
                    subject,
                    format!("_INBOX_{user}.x"),
                    Bytes::from_static(b"{}"),
                )
                .await
                .unwrap();
            client.flush().await.unwrap();
            assert!(
                refused(&mut errors, subject).await,
                "{user} was not refused {subject}"
            );
        }
    }
    assert_eq!(
        admin.stream_state("WOO").await.unwrap().0,
        1,
        "nothing purged"
    );
    assert_eq!(admin.stream_state("DLQ").await.unwrap().0, 1);
    assert!(admin
        .consumer_names("WOO")
        .await
        .unwrap()
        .contains(&"order-importer-s1-orders".to_owned()));

    // syncctl may: skip a dead letter, drop a consumer for a rebuild.
    let (_, last) = admin.stream_state(STREAM_DLQ.name).await.unwrap();
    assert!(admin.delete_message(STREAM_DLQ.name, last).await.unwrap());
    assert!(admin
        .delete_consumer("WOO", "order-importer-s1-orders")
        .await
        .unwrap());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_credentials_there_is_no_connection() {
    let server = NatsServer::start_secured();
    let mut anonymous = options(&server, "webhook-ingest");
    anonymous.nkey_file = None;
    anonymous.connect_timeout = Duration::from_secs(3);
    let err = Bus::connect(anonymous).await.unwrap_err().to_string();
    assert!(err.contains("authorization violation"), "{err}");
    assert!(err.contains("nats.nkey_file"), "the fix is named: {err}");

    // A well-formed key the server does not know.
    let dir = tempfile::tempdir().unwrap();
    let stranger = dir.path().join("stranger.nk");
    std::fs::write(&stranger, nkeys::KeyPair::new_user().seed().unwrap()).unwrap();
    let mut o = options(&server, "webhook-ingest");
    o.nkey_file = Some(stranger);
    o.connect_timeout = Duration::from_secs(3);
    let err = Bus::connect(o).await.unwrap_err().to_string();
    assert!(err.contains("authorization violation"), "{err}");

    // And so no publish, of course: the raw protocol is refused before any PUB.
    let (tx, mut rx) = mpsc::unbounded_channel();
    let r = async_nats::ConnectOptions::new()
        .require_tls(true)
        .add_root_certificates(server.ca_file().unwrap().to_path_buf())
        .event_callback(move |e| {
            let tx = tx.clone();
            async move {
                let _ = tx.send(e.to_string());
            }
        })
        .connect(server.url())
        .await;
    assert!(r.is_err(), "an anonymous client connected");
    drop(rx.try_recv());
    let admin = connect(&server, "syncctl").await;
    assert_eq!(admin.stream_state("WOO").await.unwrap().0, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_server_certificate_must_come_from_the_configured_ca() {
    let server = NatsServer::start_secured();
    let dir = tempfile::tempdir().unwrap();
    let other_ca = dir.path().join("other-ca.pem");
    std::fs::write(
        &other_ca,
        duellsync_test_support::tls::server_material(&["127.0.0.1"]).ca_pem,
    )
    .unwrap();
    let mut o = options(&server, "webhook-ingest");
    o.tls_ca_file = Some(other_ca);
    o.connect_timeout = Duration::from_secs(3);
    let err = Bus::connect(o).await.unwrap_err().to_string();
    assert!(err.contains("nats.tls_ca_file"), "{err}");

    // A plain connection is refused by the server (it requires TLS).
    let mut plain = options(&server, "webhook-ingest");
    plain.url = plain.url.replace("tls://", "nats://");
    plain.tls_ca_file = None;
    plain.connect_timeout = Duration::from_secs(3);
    assert!(Bus::connect(plain).await.is_err());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_service_leaves_a_changed_stream_as_it_is_and_goes_on() {
    let server = NatsServer::start_secured();
    let admin = connect(&server, "syncctl").await;
    publish(&admin, &v1::OrderObserved::subject("s1"), "kept")
        .await
        .unwrap();
    // A new release declares the stream differently: the services may not change it (an
    // update can also shorten retention and so drop data).
    let spec = duellsync_events::StreamSpec {
        max_age: Duration::from_secs(3600),
        ..STREAM_WOO
    };
    let ingest = connect(&server, "webhook-ingest").await;
    ingest
        .ensure_stream(&spec)
        .await
        .expect("a difference it may not apply is not an error");
    // The admin may apply it.
    admin.ensure_stream(&spec).await.unwrap();
    assert_eq!(admin.stream_state("WOO").await.unwrap().0, 1);
    publish(&ingest, &v1::OrderObserved::subject("s1"), "after")
        .await
        .expect("the ingest still records");
}

#[tokio::test]
async fn a_dead_letter_and_an_event_use_only_granted_subjects() {
    // Dead letters go to dlq.<store>.<service>, which each service may publish.
    let server = NatsServer::start_secured();
    let poller = connect(&server, "change-poller").await;
    publish(
        &poller,
        &duellsync_events::dlq_subject("s1", "change-poller"),
        "dl",
    )
    .await
    .expect("its own dead letters");
    poller
        .publish(&stock_observed("s1", 1, "2"))
        .await
        .expect("its facts");
    let theirs = duellsync_events::dlq_subject("s1", "order-importer");
    assert_denied(
        publish(&poller, &theirs, "dl2").await,
        "change-poller",
        &theirs,
    );
}
