//! A change notice pushed to webhook-ingest makes the poller fetch the product from DUELL at
//! once, long before its next poll (SPEC §3.1 sources: sub-second latency for anything that can
//! push). The notice is thin: the data always comes from DUELL.

use std::time::Duration;

use base64::Engine;
use duellsync_duell_sim::{NewSimProduct, ProductPatch, SimConfig as DuellConfig};
use duellsync_e2e::{eventually, World, STOCK_DEPARTMENT};
use duellsync_test_support::free_port;
use duellsync_woo_sim::SimConfig as WooConfig;
use hmac::{Hmac, Mac};
use rust_decimal::Decimal;
use sha2::Sha256;

fn sign(secret: &str, body: &[u8]) -> String {
    let mut mac = Hmac::<Sha256>::new_from_slice(secret.as_bytes()).expect("any key length");
    mac.update(body);
    base64::engine::general_purpose::STANDARD.encode(mac.finalize().into_bytes())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_signed_notice_brings_a_duell_change_to_woocommerce_before_the_next_poll() {
    let mut world = World::with(
        DuellConfig {
            products: 0,
            ..DuellConfig::default()
        },
        WooConfig::default(),
        // Polls far apart: only the notice can explain a quick update.
        &[
            "sync_orders = false",
            "poll_interval = \"10m\"",
            "stock_poll_interval = \"10m\"",
        ],
        "",
    )
    .await;
    let id = world
        .duell
        .create_product(NewSimProduct {
            product_name: "Varsel".into(),
            product_number: Some("NOTE-1".into()),
            price_inc_vat: Some(Decimal::from(100)),
            product_image: Some(String::new()),
            stock: Some(Decimal::from(2)),
            ..NewSimProduct::default()
        })
        .product_id;
    let port = free_port();
    let listen = format!("127.0.0.1:{port}");
    world.sandbox.start(
        "webhook-ingest",
        &[("DUELLSYNC_INGEST__LISTEN", listen.as_str())],
    );
    world.start(&["change-poller", "catalog-publisher"]);
    world
        .sandbox
        .wait_ready("webhook-ingest", Duration::from_secs(60));
    eventually("the product in Woo", Duration::from_secs(60), || async {
        let p = world.client.find_by_sku("NOTE-1").await.ok()?;
        p.first()
            .filter(|p| p.stock_quantity == Some(2))
            .map(|_| ())
    })
    .await;

    let http = reqwest::Client::new();
    let url = format!("http://{listen}/notices/duell/s1");
    let secret = world.store.notice_secret.clone();

    // A forged notice is refused and changes nothing.
    let body = format!(r#"{{"kind":"stock","product_id":{id}}}"#);
    let forged = http
        .post(&url)
        .header("content-type", "application/json")
        .header("x-duellsync-signature", sign("wrong", body.as_bytes()))
        .body(body.clone())
        .send()
        .await
        .unwrap();
    assert_eq!(forged.status(), 401);

    world
        .duell
        .set_stock(STOCK_DEPARTMENT, id, Decimal::from(9));
    world
        .duell
        .update_product(
            id,
            ProductPatch {
                product_name: Some("Varsel ny".into()),
                ..ProductPatch::default()
            },
        )
        .unwrap();
    for body in [
        format!(r#"{{"kind":"stock","product_id":{id}}}"#),
        format!(r#"{{"kind":"product","product_id":{id},"product_number":"NOTE-1"}}"#),
    ] {
        let r = http
            .post(&url)
            .header("content-type", "application/json")
            .header("x-duellsync-signature", sign(&secret, body.as_bytes()))
            .body(body)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200);
    }
    eventually(
        "the new stock and name in Woo",
        Duration::from_secs(30),
        || async {
            let p = world.client.find_by_sku("NOTE-1").await.ok()?;
            p.first()
                .filter(|p| p.stock_quantity == Some(9) && p.name == "Varsel ny")
                .map(|_| ())
        },
    )
    .await;
}
