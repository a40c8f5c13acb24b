//! Order webhook upkeep against the simulator: missing webhooks are created, a webhook
//! WooCommerce disabled after failed deliveries is deleted and created anew (with a fresh
//! failure count), a paused one is left to the person who paused it.

use std::time::Duration;

use duellsync_woo::{
    ClientConfig, RetryPolicy, WebhookHealth, WebhookUpdate, WooClient, ORDER_WEBHOOK_TOPICS,
};
use duellsync_woo_sim::{PlaceLine, PlaceOrder, SimConfig, WooSim};
use secrecy::SecretString;

/// Nothing listens here: pings and deliveries fail at once (connection refused).
const URL: &str = "http://127.0.0.1:9/hooks/s1";

async fn sim() -> (WooSim, WooClient) {
    let sim = WooSim::start(SimConfig::default())
        .await
        .expect("sim starts");
    let (key, secret) = sim.credentials();
    let mut cfg = ClientConfig::new(sim.base_url(), key, SecretString::from(secret));
    cfg.retry = RetryPolicy {
        max_attempts: 2,
        base_delay: Duration::from_millis(10),
        max_delay: Duration::from_millis(50),
        max_retry_after: Duration::from_secs(1),
    };
    let client = WooClient::new(cfg).expect("client builds");
    (sim, client)
}

fn secret() -> SecretString {
    SecretString::from("hookSecret1".to_string())
}

fn writes(sim: &WooSim) -> u64 {
    sim.request_counts()
        .iter()
        .filter(|(k, _)| !k.starts_with("GET "))
        .map(|(_, n)| n)
        .sum()
}

#[tokio::test]
async fn missing_order_webhooks_are_created_and_a_second_run_writes_nothing() {
    let (sim, c) = sim().await;
    let first = c
        .ensure_order_webhooks(URL, &secret(), "duellsync s1")
        .await
        .unwrap();
    assert_eq!(first.created, ORDER_WEBHOOK_TOPICS.to_vec());
    assert!(first.recreated.is_empty() && first.healthy.is_empty() && first.paused.is_empty());
    let hooks = c.list_webhooks(None).await.unwrap();
    assert_eq!(hooks.len(), 2);
    assert!(hooks
        .iter()
        .any(|h| h.name.starts_with("duellsync s1 order.created key:") && h.status == "active"));

    sim.reset_request_counts();
    let second = c
        .ensure_order_webhooks(URL, &secret(), "duellsync s1")
        .await
        .unwrap();
    assert_eq!(second.healthy, ORDER_WEBHOOK_TOPICS.to_vec());
    assert_eq!(writes(&sim), 0, "{:?}", sim.request_counts());
    let states = c.order_webhook_states(URL).await.unwrap();
    assert!(states.iter().all(|s| s.health == WebhookHealth::Active));
}

#[tokio::test]
async fn a_webhook_disabled_after_failed_deliveries_is_created_anew_with_a_fresh_failure_count() {
    let (sim, c) = sim().await;
    c.ensure_order_webhooks(URL, &secret(), "duellsync s1")
        .await
        .unwrap();
    let product = sim.seed_products(1, "WH-", "10.00", 100)[0];
    // WooCommerce disables a webhook on the 7th failed delivery in a row.
    for _ in 0..7 {
        sim.place_order(&PlaceOrder {
            lines: vec![PlaceLine {
                product_id: Some(product),
                sku: None,
                quantity: 1,
            }],
            ..PlaceOrder::default()
        })
        .expect("order placed");
        sim.flush_deliveries().await;
    }
    let states = c.order_webhook_states(URL).await.unwrap();
    let created = states
        .iter()
        .find(|s| s.topic == "order.created")
        .expect("order.created");
    assert_eq!(created.health, WebhookHealth::Disabled);
    let old_id = created.hooks[0].id;

    let report = c
        .ensure_order_webhooks(URL, &secret(), "duellsync s1")
        .await
        .unwrap();
    // Checkout fires order.updated too, so both were disabled.
    assert_eq!(report.recreated, ORDER_WEBHOOK_TOPICS.to_vec());
    assert!(report.created.is_empty() && report.healthy.is_empty());
    assert!(
        c.get_webhook(old_id).await.is_err(),
        "the disabled one is deleted"
    );
    let hooks = c.list_webhooks(None).await.unwrap();
    let new = hooks
        .iter()
        .find(|h| h.topic == "order.created")
        .expect("a new order.created webhook");
    assert_eq!(new.status, "active");
    assert_ne!(new.id, old_id);
    assert_eq!(sim.webhook_failure_count(new.id), Some(0));
}

#[tokio::test]
async fn a_paused_webhook_is_reported_and_left_alone() {
    let (sim, c) = sim().await;
    c.ensure_order_webhooks(URL, &secret(), "duellsync s1")
        .await
        .unwrap();
    let hooks = c.list_webhooks(None).await.unwrap();
    let updated = hooks
        .iter()
        .find(|h| h.topic == "order.updated")
        .expect("order.updated");
    c.update_webhook(
        updated.id,
        &WebhookUpdate {
            status: Some("paused".into()),
            ..WebhookUpdate::default()
        },
    )
    .await
    .unwrap();
    sim.reset_request_counts();
    let report = c
        .ensure_order_webhooks(URL, &secret(), "duellsync s1")
        .await
        .unwrap();
    assert_eq!(report.paused, vec!["order.updated".to_owned()]);
    assert_eq!(report.healthy, vec!["order.created".to_owned()]);
    assert_eq!(writes(&sim), 0);
    assert_eq!(c.get_webhook(updated.id).await.unwrap().status, "paused");
}

#[tokio::test]
async fn webhooks_to_another_url_are_not_ours() {
    let (_sim, c) = sim().await;
    c.ensure_order_webhooks("http://127.0.0.1:9/elsewhere", &secret(), "other")
        .await
        .unwrap();
    let states = c.order_webhook_states(URL).await.unwrap();
    assert!(states.iter().all(|s| s.health == WebhookHealth::Missing));
    let report = c
        .ensure_order_webhooks(URL, &secret(), "duellsync s1")
        .await
        .unwrap();
    assert_eq!(report.created.len(), 2);
    assert_eq!(c.list_webhooks(None).await.unwrap().len(), 4);
}

#[tokio::test]
async fn a_rotated_secret_is_given_to_the_active_webhooks_once() {
    let (sim, c) = sim().await;
    c.ensure_order_webhooks(URL, &secret(), "duellsync s1")
        .await
        .unwrap();
    let new = SecretString::from("hookSecret2".to_string());
    sim.reset_request_counts();
    let rotated = c
        .ensure_order_webhooks(URL, &new, "duellsync s1")
        .await
        .unwrap();
    assert_eq!(rotated.rotated, ORDER_WEBHOOK_TOPICS.to_vec());
    assert!(rotated.created.is_empty() && rotated.recreated.is_empty());
    assert_eq!(
        writes(&sim),
        2,
        "one update per webhook: {:?}",
        sim.request_counts()
    );
    let fp = duellsync_woo::secret_fingerprint(&new);
    assert!(c
        .list_webhooks(None)
        .await
        .unwrap()
        .iter()
        .all(|h| h.name.ends_with(&fp)));
    sim.reset_request_counts();
    let again = c
        .ensure_order_webhooks(URL, &new, "duellsync s1")
        .await
        .unwrap();
    assert_eq!(again.healthy, ORDER_WEBHOOK_TOPICS.to_vec());
    assert_eq!(writes(&sim), 0);
}
