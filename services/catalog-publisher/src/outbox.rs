//! Messages the publisher owes the streams — sync-log entries (`ProductApplied`,
//! `ProductFailed`), dead letters, requests for a fresh stock reading — kept in the state and
//! committed together with the change they report, then published by a drainer with retries.
//!
//! The order importer learns product links from `ProductApplied` and un-parks orders with it,
//! and a failed product must reach the sync log and the dead letters, so none may be lost
//! between WooCommerce's answer and the broker's ack: a crash after the commit publishes them on
//! the next start, a broker outage delays them. Each entry carries its deterministic event id
//! as `Nats-Msg-Id`, so one published twice (a crash between the ack and the removal) is
//! stored once.

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use duellsync_bus::{Bus, HeaderMap};
use duellsync_events::{headers, Event};
use duellsync_store::{Commit, Table};
use futures::StreamExt;
use serde::{Deserialize, Serialize};
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;

use crate::state::{NameKey, Tables};

/// One message to publish.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub(crate) struct Entry {
    pub subject: String,
    pub headers: Vec<(String, String)>,
    /// The encoded payload, hex.
    pub payload: String,
}

/// Messages published at once by the drainer.
const IN_FLIGHT: usize = 64;

/// Stages the publication of an event in `commit` (keyed by its event id: staging one twice
/// keeps one).
pub(crate) fn stage_event<E: Event>(t: &Tables, commit: &mut Commit, store: &str, ev: &E) {
    let Some(meta) = ev.meta() else {
        return;
    };
    if meta.event_id.is_empty() {
        return;
    }
    stage_raw(
        t,
        commit,
        store,
        &E::subject(&meta.store),
        &meta.event_id,
        vec![(headers::EVENT_TYPE.to_owned(), E::NAME.to_owned())],
        &ev.encode_to_vec(),
    );
}

/// Stages a message with explicit subject and headers (dead letters).
pub(crate) fn stage_raw(
    t: &Tables,
    commit: &mut Commit,
    store: &str,
    subject: &str,
    msg_id: &str,
    headers: Vec<(String, String)>,
    payload: &[u8],
) {
    t.outbox.put(
        commit,
        &(store.to_owned(), msg_id.to_owned()),
        &Entry {
            subject: subject.to_owned(),
            headers,
            payload: hex::encode(payload),
        },
    );
}

/// Publishes what the outbox holds for one store until `stop`: woken by `wake` after a
/// commit that staged entries, and every second anyway.
pub(crate) async fn drain(
    bus: Bus,
    t: Tables,
    store: String,
    wake: Arc<Notify>,
    stop: CancellationToken,
) {
    let mut backoff = Duration::from_millis(200);
    loop {
        match drain_once(&bus, &t, &store).await {
            Ok(0) => {
                backoff = Duration::from_millis(200);
                tokio::select! {
                    _ = stop.cancelled() => return,
                    _ = wake.notified() => {}
                    _ = tokio::time::sleep(Duration::from_secs(1)) => {}
                }
            }
            Ok(_) => backoff = Duration::from_millis(200),
            Err(e) => {
                metrics::counter!("duellsync_publisher_outbox_failures_total", "store" => store.clone())
                    .increment(1);
                tracing::warn!(store = %store, error = %format!("{e:#}"), retry_in = ?backoff, "sync-log entries not published yet; retrying");
                tokio::select! {
                    _ = stop.cancelled() => return,
                    _ = tokio::time::sleep(backoff) => {}
                }
                backoff = (backoff * 2).min(Duration::from_secs(30));
            }
        }
    }
}

/// Publishes up to a few hundred entries and removes the published ones; returns how many.
pub(crate) async fn drain_once(bus: &Bus, t: &Tables, store: &str) -> anyhow::Result<usize> {
    let rows: Vec<(NameKey, Entry)> = t
        .outbox
        .iter_group(store)
        .take(512)
        .collect::<Result<_, _>>()?;
    if rows.is_empty() {
        return Ok(0);
    }
    let results: Vec<(NameKey, anyhow::Result<()>)> =
        futures::stream::iter(rows.into_iter().map(|(key, e)| async move {
            let r = publish(bus, &key.1, &e).await;
            (key, r)
        }))
        .buffered(IN_FLIGHT)
        .collect()
        .await;
    let mut c = Commit::new();
    let mut first_error = None;
    let mut n = 0;
    for (key, r) in results {
        match r {
            Ok(()) => {
                t.outbox.remove(&mut c, &key);
                n += 1;
            }
            Err(e) => {
                first_error.get_or_insert(e);
            }
        }
    }
    t.store.commit(c).await?;
    metrics::gauge!("duellsync_publisher_outbox_entries", "store" => store.to_owned())
        .set(t.outbox.iter_group(store).count() as f64);
    match first_error {
        Some(e) if n == 0 => Err(e),
        _ => Ok(n),
    }
}

async fn publish(bus: &Bus, msg_id: &str, e: &Entry) -> anyhow::Result<()> {
    let mut h = HeaderMap::new();
    for (k, v) in &e.headers {
        h.insert(k.as_str(), v.as_str());
    }
    let Ok(payload) = hex::decode(&e.payload) else {
        // Only a damaged state file gets here; retrying cannot mend it.
        tracing::error!(msg_id, subject = %e.subject, "outbox entry is corrupt; dropped");
        return Ok(());
    };
    bus.publish_raw(&e.subject, msg_id, h, Bytes::from(payload))
        .await?;
    Ok(())
}

/// The outbox table.
pub(crate) fn table(store: &duellsync_store::Store) -> Table<NameKey, Entry> {
    store.table("pub_outbox")
}

#[cfg(test)]
mod tests {
    use super::*;
    use duellsync_bus::BusOptions;
    use duellsync_events::{meta, v1};
    use duellsync_store::Store;
    use duellsync_test_support::NatsServer;

    fn failed(n: i64) -> v1::ProductFailed {
        v1::ProductFailed {
            meta: Some(meta("s1", format!("failed-{n}"), "test", String::new())),
            product_id: n,
            sku: format!("SKU-{n}"),
            code: "duplicate_sku".into(),
            message: "clash".into(),
            permanent: true,
        }
    }

    /// Issue 13 defect 6 / issue 15 §6: a sync-log entry and a dead letter recorded while the
    /// broker is gone are not lost: they stay in the state until they are stored, once.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn entries_recorded_while_the_broker_is_down_are_published_once_it_is_back() {
        let mut nats = NatsServer::start();
        let mut options = BusOptions::new(nats.url(), "test");
        options.publish_deadline = Duration::from_millis(300);
        let bus = Bus::connect(options).await.unwrap();
        bus.ensure_streams().await.unwrap();
        let store = Store::temporary().unwrap();
        let t = Tables::new(&store);

        nats.kill();
        let mut c = Commit::new();
        stage_event(&t, &mut c, "s1", &failed(1));
        stage_event(&t, &mut c, "s1", &failed(2));
        stage_raw(
            &t,
            &mut c,
            "s1",
            &duellsync_events::dlq_subject("s1", "catalog-publisher"),
            "dlq-failed-1",
            vec![(
                headers::DLQ_REASON.to_owned(),
                "duplicate_sku: clash".to_owned(),
            )],
            b"payload",
        );
        store.commit(c).await.unwrap();
        assert!(
            drain_once(&bus, &t, "s1").await.is_err(),
            "the broker is down"
        );
        assert_eq!(t.outbox.iter_group("s1").count(), 3, "nothing is dropped");

        nats.restart();
        let mut published = 0;
        for _ in 0..100 {
            match drain_once(&bus, &t, "s1").await {
                Ok(n) => published += n,
                Err(_) => tokio::time::sleep(Duration::from_millis(100)).await,
            }
            if t.outbox.iter_group("s1").count() == 0 {
                break;
            }
        }
        assert_eq!(published, 3);
        let log = bus
            .read("SYNC", &v1::ProductFailed::subject("s1"), 1, 100)
            .await
            .unwrap();
        assert_eq!(log.len(), 2);
        let dlq = bus
            .read("DLQ", "dlq.s1.catalog-publisher", 1, 100)
            .await
            .unwrap();
        assert_eq!(dlq.len(), 1);
        assert_eq!(
            dlq[0].header(headers::DLQ_REASON),
            Some("duplicate_sku: clash")
        );

        // Staging the same entries again (a crash between the broker's ack and the removal)
        // stores nothing new.
        let mut c = Commit::new();
        stage_event(&t, &mut c, "s1", &failed(1));
        store.commit(c).await.unwrap();
        drain_once(&bus, &t, "s1").await.unwrap();
        let log = bus
            .read("SYNC", &v1::ProductFailed::subject("s1"), 1, 100)
            .await
            .unwrap();
        assert_eq!(log.len(), 2);
    }
}
