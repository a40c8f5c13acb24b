//! `syncctl test --store S` against the simulators: all green for a good store; a red line
//! with the reason and the fix for a wrong secret, a read-only key, DUELL's firewall and a
//! disabled webhook.

use crate::world::World;
use duellsync_duell_sim::{Fault, SimConfig as DuellConfig};
use duellsync_woo::{WebhookUpdate, ORDER_WEBHOOK_TOPICS};
use duellsync_woo_sim::{ApiKey, Permissions, SimConfig as WooConfig};
use serde_json::Value;

use crate::helpers::{env, syncctl, Run};

const HOOK_URL: &str = "http://127.0.0.1:9/hooks/s1";
const READ_ONLY: (&str, &str) = (
    "ck_readonly_000000000000000000000000000000000",
    "cs_readonly_000000000000000000000000000000000",
);

async fn world() -> World {
    let mut woo = WooConfig::default();
    woo.keys.push(ApiKey {
        consumer_key: READ_ONLY.0.into(),
        consumer_secret: READ_ONLY.1.into(),
        permissions: Permissions::Read,
    });
    let mut world = World::with(
        DuellConfig {
            products: 5,
            ..DuellConfig::default()
        },
        woo,
        &["sync_orders = true"],
    )
    .await;
    world.store.webhook_delivery_url = HOOK_URL.into();
    // Orders in the stock department: the safe set-up (see the department test below).
    world.store.order_department = world.store.stock_department.clone();
    world.save_store();
    world
}

async fn test(world: &World) -> Run {
    syncctl(
        &env(&world.sandbox.nats.url(), &world.sandbox.stores_path()),
        &[
            "--json",
            "test",
            "--store",
            "s1",
            "--egress-ip",
            "203.0.113.7",
        ],
    )
    .await
}

fn check<'a>(v: &'a Value, name: &str) -> &'a Value {
    v["checks"]
        .as_array()
        .and_then(|c| c.iter().find(|c| c["name"] == name))
        .unwrap_or_else(|| panic!("no check {name}: {v}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_check_is_green_against_the_simulators_and_a_disabled_webhook_is_red() {
    let world = world().await;
    let secret = secrecy::SecretString::from(world.store.webhook_secret.clone());
    world
        .client
        .ensure_order_webhooks(HOOK_URL, &secret, "duellsync s1")
        .await
        .unwrap();
    let run = test(&world).await;
    assert_eq!(run.code, 0, "{run}");
    let v = run.json();
    assert_eq!(v["ok"], true, "{v}");
    for c in v["checks"].as_array().unwrap() {
        assert_eq!(c["status"], "ok", "{c}");
    }
    for name in [
        "DUELL login",
        "DUELL firewall",
        "Stock department",
        "Order department",
        "WooCommerce URL",
        "WooCommerce credentials",
        "WooCommerce API version",
        "Read permission",
        "Write permission",
        "Webhook order.created",
        "Webhook order.updated",
    ] {
        check(&v, name);
    }
    assert!(check(&v, "WooCommerce API version")["detail"]
        .as_str()
        .unwrap()
        .contains("7.9.0"));

    // Human output: one ✔ line per check.
    let human = syncctl(
        &env(&world.sandbox.nats.url(), &world.sandbox.stores_path()),
        &["test", "--store", "s1"],
    )
    .await;
    assert_eq!(human.code, 0, "{human}");
    assert_eq!(human.stdout.matches('✔').count(), 11, "{human}");

    let hooks = world.client.list_webhooks(None).await.unwrap();
    let created = hooks
        .iter()
        .find(|h| h.topic == ORDER_WEBHOOK_TOPICS[0])
        .unwrap();
    world
        .client
        .update_webhook(
            created.id,
            &WebhookUpdate {
                status: Some("disabled".into()),
                ..WebhookUpdate::default()
            },
        )
        .await
        .unwrap();
    let run = test(&world).await;
    assert_eq!(run.code, 1, "{run}");
    let v = run.json();
    let c = check(&v, "Webhook order.created");
    assert_eq!(c["status"], "failed");
    assert!(c["detail"].as_str().unwrap().contains("disabled"), "{c}");
    assert!(
        c["fix"]
            .as_str()
            .unwrap()
            .contains("syncctl webhooks ensure --store s1"),
        "{c}"
    );
    assert_eq!(check(&v, "Webhook order.updated")["status"], "ok");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_wrong_secret_and_a_read_only_key_are_red_with_the_fix() {
    let mut world = world().await;
    world.store.consumer_secret = "cs_wrong_0000000000000000000000000000000000".into();
    world.save_store();
    let run = test(&world).await;
    assert_eq!(run.code, 1, "{run}");
    let v = run.json();
    assert_eq!(check(&v, "WooCommerce URL")["status"], "ok", "{v}");
    let c = check(&v, "WooCommerce credentials");
    assert_eq!(c["status"], "failed", "{v}");
    assert!(
        c["fix"].as_str().unwrap().contains("woo.consumer_secret"),
        "{c}"
    );
    assert_eq!(check(&v, "Write permission")["status"], "skipped");
    assert_eq!(
        check(&v, "DUELL login")["status"],
        "ok",
        "DUELL is not affected"
    );

    world.store.consumer_key = READ_ONLY.0.into();
    world.store.consumer_secret = READ_ONLY.1.into();
    world.save_store();
    let run = test(&world).await;
    assert_eq!(run.code, 1, "{run}");
    let v = run.json();
    assert_eq!(check(&v, "WooCommerce credentials")["status"], "ok", "{v}");
    assert_eq!(check(&v, "Read permission")["status"], "ok", "{v}");
    let c = check(&v, "Write permission");
    assert_eq!(c["status"], "failed", "{v}");
    assert!(c["fix"].as_str().unwrap().contains("Read/Write"), "{c}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn duells_firewall_is_red_with_the_address_to_whitelist() {
    let world = world().await;
    world.duell.fail_next(None, 20, Fault::Firewall);
    let run = test(&world).await;
    assert_eq!(run.code, 1, "{run}");
    let v = run.json();
    let c = check(&v, "DUELL firewall");
    assert_eq!(c["status"], "failed", "{v}");
    let fix = c["fix"].as_str().unwrap();
    assert!(
        fix.contains("support@duell.no") && fix.contains("203.0.113.7"),
        "{c}"
    );
    assert_eq!(check(&v, "DUELL login")["status"], "failed");
    assert_eq!(check(&v, "Stock department")["status"], "skipped");
    assert_eq!(
        check(&v, "WooCommerce URL")["status"],
        "ok",
        "Woo is not affected"
    );

    let mut bad = world.store.clone();
    bad.client_token = "x".repeat(40);
    world.duell.clear_faults();
    world.sandbox.write_store("s1", &bad.to_toml());
    let v = test(&world).await.json();
    let c = check(&v, "DUELL login");
    assert_eq!(c["status"], "failed", "{v}");
    assert!(c["fix"].as_str().unwrap().contains("API-oppsett"), "{c}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_order_department_apart_from_the_stock_department_is_a_warning_with_the_reason() {
    let mut world = world().await;
    let secret = secrecy::SecretString::from(world.store.webhook_secret.clone());
    world
        .client
        .ensure_order_webhooks(HOOK_URL, &secret, "duellsync s1")
        .await
        .unwrap();
    assert_eq!(
        check(&test(&world).await.json(), "Order department")["status"],
        "ok"
    );
    world.store.order_department = world.duell.department_token(2).expect("department 2");
    world.save_store();
    let run = test(&world).await;
    assert_eq!(run.code, 0, "a warning does not fail the test: {run}");
    let v = run.json();
    let c = check(&v, "Order department");
    assert_eq!(c["status"], "warning", "{v}");
    let detail = c["detail"].as_str().unwrap();
    assert!(
        detail.contains("is not the stock department") && detail.contains("draws"),
        "{c}"
    );
    assert!(
        c["fix"]
            .as_str()
            .unwrap()
            .contains("duell.order_department"),
        "{c}"
    );
    let human = syncctl(
        &env(&world.sandbox.nats.url(), &world.sandbox.stores_path()),
        &["test", "--store", "s1"],
    )
    .await;
    assert!(human.stdout.contains('⚠'), "{human}");
}
