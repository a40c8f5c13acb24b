//! `syncctl webhooks ensure`: missing webhooks are created, a disabled one is re-created, a
//! paused one is reported; the result shows in `syncctl status`.

use crate::world::World;
use duellsync_woo::WebhookUpdate;

use crate::helpers::{bus, env, syncctl};

const HOOK_URL: &str = "http://127.0.0.1:9/hooks/s1";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn missing_webhooks_are_created_disabled_ones_recreated_and_paused_ones_reported() {
    let mut world = World::new(3, &[]).await;
    let _ = bus(&world.sandbox.nats.url()).await;
    let e = env(&world.sandbox.nats.url(), &world.sandbox.stores_path());

    let run = syncctl(&e, &["webhooks", "ensure", "--store", "s1"]).await;
    assert_eq!(run.code, 2, "no delivery URL, no webhooks: {run}");
    assert!(run.stderr.contains("webhook_delivery_url"), "{run}");

    world.store.webhook_delivery_url = HOOK_URL.into();
    world.save_store();
    let run = syncctl(&e, &["--json", "webhooks", "ensure", "--store", "s1"]).await;
    assert_eq!(run.code, 0, "{run}");
    let v = run.json();
    assert_eq!(
        v["created"],
        serde_json::json!(["order.created", "order.updated"])
    );
    assert_eq!(v["recorded"], true);
    let hooks = world.client.list_webhooks(None).await.unwrap();
    assert_eq!(hooks.len(), 2);
    assert!(hooks
        .iter()
        .all(|h| h.status == "active" && h.delivery_url == HOOK_URL));

    let old = hooks.iter().find(|h| h.topic == "order.created").unwrap();
    world
        .client
        .update_webhook(
            old.id,
            &WebhookUpdate {
                status: Some("disabled".into()),
                ..WebhookUpdate::default()
            },
        )
        .await
        .unwrap();
    let updated = hooks.iter().find(|h| h.topic == "order.updated").unwrap();
    world
        .client
        .update_webhook(
            updated.id,
            &WebhookUpdate {
                status: Some("paused".into()),
                ..WebhookUpdate::default()
            },
        )
        .await
        .unwrap();
    let run = syncctl(&e, &["webhooks", "ensure", "--store", "s1"]).await;
    assert_eq!(run.code, 0, "{run}");
    assert!(run.stdout.contains("re-created"), "{run}");
    assert!(run.stdout.contains("paused by a person"), "{run}");
    let hooks = world.client.list_webhooks(None).await.unwrap();
    let created: Vec<_> = hooks
        .iter()
        .filter(|h| h.topic == "order.created")
        .collect();
    assert_eq!(created.len(), 1, "the disabled one is replaced: {hooks:?}");
    assert_ne!(created[0].id, old.id);
    assert_eq!(created[0].status, "active");
    assert_eq!(
        world.client.get_webhook(updated.id).await.unwrap().status,
        "paused"
    );

    let status = syncctl(&e, &["--json", "status", "--store", "s1"]).await;
    assert_eq!(status.code, 0, "{status}");
    let v = status.json();
    let hooks = &v["stores"][0]["webhooks"];
    assert_eq!(
        hooks["recreated"],
        serde_json::json!(["order.created"]),
        "{v}"
    );
    assert_eq!(
        hooks["not_active"],
        serde_json::json!(["order.updated"]),
        "{v}"
    );
    let human = syncctl(&e, &["status", "--store", "s1"]).await;
    assert!(
        human.stdout.contains("NOT ACTIVE [order.updated]"),
        "{human}"
    );
}
