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

/// What a DUELL-side sender signs: `<notice id>.<timestamp>.<body>` (services/webhook-ingest
/// README, "DUELL change notices").
fn sign(secret: &str, id: &str, ts: i64, body: &[u8]) -> String {
    let mut mac = Hmac::<Sha256>::new_from_slice(secret.as_bytes()).expect("any key length");
    mac.update(format!("{id}.{ts}.").as_bytes());
    mac.update(body);
    base64::engine::general_purpose::STANDARD.encode(mac.finalize().into_bytes())
}

fn now_s() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("after 1970")
        .as_secs() as i64
}

async fn post_notice(http: &reqwest::Client, url: &str, secret: &str, id: &str, body: &str) -> u16 {
    let ts = now_s();
    http.post(url)
        .header("content-type", "application/json")
        .header("x-duellsync-notice-id", id)
        .header("x-duellsync-timestamp", ts.to_string())
        .header(
            "x-duellsync-signature",
            sign(secret, id, ts, body.as_bytes()),
        )
        .body(body.to_owned())
        .send()
        .await
        .unwrap()
        .status()
        .as_u16()
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
    assert_eq!(
        post_notice(&http, &url, "wrong", "forged-1", &body).await,
        401
    );

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
    for (notice_id, body) in [
        ("n-1", format!(r#"{{"kind":"stock","product_id":{id}}}"#)),
        (
            "n-2",
            format!(r#"{{"kind":"product","product_id":{id},"product_number":"NOTE-1"}}"#),
        ),
    ] {
        assert_eq!(
            post_notice(&http, &url, &secret, notice_id, &body).await,
            200
        );
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

/// A notice that names no product (here published straight to the stream, as a buggy or hostile
/// publisher could; the ingest refuses it) is dead-lettered by the poller, which never answers
/// it with a scan of DUELL's whole stock.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_malformed_notice_never_becomes_a_full_stock_scan() {
    let mut world = World::with(
        DuellConfig {
            products: 3,
            ..DuellConfig::default()
        },
        WooConfig::default(),
        // No scans of its own: any stock request would be the notices' doing. (Notices are
        // handled whatever `automatic` says.)
        &["sync_orders = false", "automatic = false"],
        "",
    )
    .await;
    world.start(&["change-poller"]);
    let bus = duellsync_bus::Bus::connect(duellsync_bus::BusOptions::new(
        world.sandbox.nats.url(),
        "e2e-test",
    ))
    .await
    .unwrap();
    let stock_requests = world.duell.request_count("all/product/stock");
    for (i, (kind, product_id)) in [(2, 0), (2, -1)].into_iter().enumerate() {
        let notice = duellsync_events::v1::ChangeNoticed {
            meta: Some(duellsync_events::meta(
                "s1",
                format!("malformed-{i}"),
                "test",
                String::new(),
            )),
            kind,
            product_id,
            product_number: String::new(),
        };
        bus.publish(&notice).await.unwrap();
    }
    let dead = eventually(
        "both notices dead-lettered",
        Duration::from_secs(60),
        || async {
            let dlq = bus.read("DLQ", "dlq.s1.change-poller", 1, 10).await.ok()?;
            (dlq.len() == 2).then_some(dlq)
        },
    )
    .await;
    assert!(dead.iter().all(|m| m
        .header("Duellsync-Dlq-Reason")
        .is_some_and(|r| r.contains("malformed change notice"))));
    assert_eq!(
        world.duell.request_count("all/product/stock"),
        stock_requests,
        "no stock request was made for them"
    );
}
