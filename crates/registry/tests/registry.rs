//! The registry and the supervisor against a real, private nats-server.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use duellsync_bus::{Bus, BusOptions};
use duellsync_registry::{
    generate_key, Error, Keyring, Registry, RegistrySource, StoreRun, StoreSource, Supervisor,
};
use duellsync_settings::Needs;
use duellsync_test_support::NatsServer;
use tokio_util::sync::CancellationToken;

const TOKEN: &str = "0123456789abcdef0123456789abcdef";

async fn bus(server: &NatsServer) -> Bus {
    Bus::connect(BusOptions::new(server.url(), "registry-test"))
        .await
        .expect("connects")
}

fn keys() -> Keyring {
    Keyring::new(Some(&generate_key()), Some(&generate_key())).unwrap()
}

fn store(extra: &str) -> toml::Table {
    format!(
        r#"{extra}
[woo]
url = "https://shop.test"
consumer_key = "ck_live_1"
consumer_secret = "cs_live_1"
webhook_secret = "hook1"
[duell]
client_number = "012345"
client_token = "{TOKEN}"
stock_department = "{TOKEN}"
order_department = "{TOKEN}"
"#
    )
    .parse()
    .unwrap()
}

#[tokio::test]
async fn changes_are_validated_sealed_compare_and_set_and_audited() {
    let server = NatsServer::start();
    let bus = bus(&server).await;
    let reg = Registry::open(&bus, keys()).await.unwrap();

    // Refused with key, value and fix; nothing stored.
    let err = reg
        .save("acme", store("deduct_stock = true"), None, "alice")
        .await
        .unwrap_err();
    let Error::Invalid(e) = err else {
        panic!("expected a validation error")
    };
    assert!(e.to_string().contains("deduct_stock"), "{e}");
    assert!(
        e.to_string().contains("create_customer_order = false"),
        "{e}"
    );
    assert!(reg.get("acme").await.unwrap().is_none());

    let (plan, rev1) = reg.save("acme", store(""), None, "alice").await.unwrap();
    assert!(!plan.changes.is_empty());
    let stored = reg.get("acme").await.unwrap().unwrap();
    assert_eq!(stored.revision, rev1);
    // Secrets are sealed: no plain value in the record, a stamp of who set them.
    assert!(!stored.record.settings.contains("cs_live_1"));
    assert!(!stored.record.settings.contains(TOKEN));
    assert_eq!(stored.record.secrets["woo.consumer_secret"].by, "alice");

    // The same settings again: nothing changes (the secrets are not re-sealed).
    let (plan, _) = reg
        .save("acme", store(""), Some(&stored), "bob")
        .await
        .unwrap();
    assert!(plan.is_noop(), "{:?}", plan.changes);

    // A toggle: one field in the diff; an editor who read the old revision is refused.
    let (plan, rev2) = reg
        .save("acme", store("sync_prices = false"), Some(&stored), "bob")
        .await
        .unwrap();
    let keys: Vec<&str> = plan.changes.iter().map(|c| c.key.as_str()).collect();
    assert_eq!(keys, vec!["sync_prices"]);
    assert!(rev2 > rev1);
    let err = reg
        .save("acme", store("sync_stock = false"), Some(&stored), "carol")
        .await
        .unwrap_err();
    assert!(matches!(err, Error::Conflict(_)), "{err:?}");

    // Rotating a secret: the diff says it changed, never what it is.
    let current = reg.get("acme").await.unwrap().unwrap();
    let rotated = store("sync_prices = false");
    let mut rotated_text = toml::to_string(&rotated).unwrap();
    rotated_text = rotated_text.replace("cs_live_1", "cs_live_2");
    let (plan, _) = reg
        .save(
            "acme",
            rotated_text.parse().unwrap(),
            Some(&current),
            "dave",
        )
        .await
        .unwrap();
    assert_eq!(plan.changes.len(), 1);
    assert_eq!(plan.changes[0].key, "woo.consumer_secret");
    assert!(!format!("{plan:?}").contains("cs_live"));

    reg.delete("acme", None, "erin").await.unwrap();
    assert!(reg.get("acme").await.unwrap().is_none());
    let history = reg.history("acme").await.unwrap();
    let actions: Vec<(&str, &str)> = history
        .iter()
        .map(|h| (h.action.as_str(), h.by.as_str()))
        .collect();
    assert_eq!(
        actions,
        vec![
            ("create", "alice"),
            ("update", "bob"),
            ("update", "dave"),
            ("delete", "erin")
        ]
    );
    // Not written before: the default applied.
    assert_eq!(history[1].changes[0].before, None);
    assert_eq!(history[1].changes[0].after.as_deref(), Some("false"));
    let all = serde_json::to_string(&history).unwrap();
    assert!(!all.contains("cs_live") && !all.contains(TOKEN));
}

/// What a fake service sees of its stores: (id, sync_prices) per start, and stops.
#[derive(Default)]
struct Seen {
    events: Mutex<Vec<String>>,
}

impl Seen {
    fn has(&self, e: &str) -> bool {
        self.events.lock().unwrap().iter().any(|x| x == e)
    }
    fn count(&self, e: &str) -> usize {
        self.events
            .lock()
            .unwrap()
            .iter()
            .filter(|x| *x == e)
            .count()
    }
}

fn spawn_service(
    bus: &Bus,
    keys: &Keyring,
    shard: &str,
    seen: Arc<Seen>,
    stop: CancellationToken,
) -> tokio::task::JoinHandle<anyhow::Result<()>> {
    let source = StoreSource::Registry(RegistrySource {
        shard: shard.to_owned(),
        keys: keys.clone(),
        env: Vec::new(),
        needs: Needs::ALL,
    });
    let supervisor = Supervisor::new("svc", bus.clone())
        .exclusive(true)
        .grace(Duration::from_secs(5));
    let tag = shard.to_owned();
    tokio::spawn(supervisor.run(
        source,
        stop,
        || {},
        move |s, run: StoreRun| {
            let seen = seen.clone();
            let tag = tag.clone();
            async move {
                seen.events.lock().unwrap().push(format!(
                    "{tag} start {} prices={} secret={}",
                    s.id,
                    s.sync_prices,
                    s.woo.consumer_secret.expose()
                ));
                let id = s.id.clone();
                run.tracker.spawn(async move {
                    run.stop.cancelled().await;
                    seen.events.lock().unwrap().push(format!("{tag} stop {id}"));
                });
                Ok(())
            }
        },
    ))
}

async fn until(what: &str, f: impl Fn() -> bool) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    while !f() {
        assert!(
            tokio::time::Instant::now() < deadline,
            "timed out waiting for {what}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test]
async fn a_service_applies_changes_live_and_a_moved_store_has_one_writer_at_a_time() {
    let server = NatsServer::start();
    let bus = bus(&server).await;
    let keys = keys();
    let reg = Registry::open(&bus, keys.clone()).await.unwrap();
    reg.save("acme", store("shard = \"a\""), None, "op")
        .await
        .unwrap();

    let seen = Arc::new(Seen::default());
    let stop = CancellationToken::new();
    let a = spawn_service(&bus, &keys, "a", seen.clone(), stop.clone());
    let b = spawn_service(&bus, &keys, "b", seen.clone(), stop.clone());
    until("acme starts on a", || {
        seen.has("a start acme prices=true secret=cs_live_1")
    })
    .await;

    // A toggle restarts the store's tasks with the new settings.
    let cur = reg.get("acme").await.unwrap().unwrap();
    reg.save(
        "acme",
        store("shard = \"a\"\nsync_prices = false"),
        Some(&cur),
        "op",
    )
    .await
    .unwrap();
    until("the toggle", || {
        seen.has("a start acme prices=false secret=cs_live_1")
    })
    .await;
    assert_eq!(seen.count("a stop acme"), 1);

    // A new store starts; the other is not touched.
    reg.save("bolt", store("shard = \"a\""), None, "op")
        .await
        .unwrap();
    until("bolt starts", || {
        seen.has("a start bolt prices=true secret=cs_live_1")
    })
    .await;
    assert_eq!(seen.count("a stop acme"), 1);

    // Moved to shard b: a stops it and lets go, then b starts it.
    let cur = reg.get("acme").await.unwrap().unwrap();
    reg.save(
        "acme",
        store("shard = \"b\"\nsync_prices = false"),
        Some(&cur),
        "op",
    )
    .await
    .unwrap();
    until("acme moves to b", || {
        seen.has("b start acme prices=false secret=cs_live_1")
    })
    .await;
    {
        let events = seen.events.lock().unwrap();
        let stopped = events.iter().rposition(|e| e == "a stop acme").unwrap();
        let started = events
            .iter()
            .position(|e| e == "b start acme prices=false secret=cs_live_1")
            .unwrap();
        assert!(
            stopped < started,
            "b started acme before a stopped it: {events:?}"
        );
    }

    // Deleted: stopped.
    reg.delete("bolt", None, "op").await.unwrap();
    until("bolt stops", || seen.has("a stop bolt")).await;

    stop.cancel();
    a.await.unwrap().unwrap();
    b.await.unwrap().unwrap();
}
