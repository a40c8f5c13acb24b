//! `syncctl explain`: the chain of a product (by SKU) and of an order, across streams, in time
//! order, with causation links and dead letters.

use duellsync_events::{order_correlation, product_correlation, v1};
use duellsync_test_support::NatsServer;

use crate::helpers::{bus, dead_letter, meta_at, publish, syncctl};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_sku_and_an_order_are_explained_by_their_events_in_time_order() {
    let server = NatsServer::start();
    let bus = bus(&server.url()).await;
    let t = duellsync_events::now_ms() - 60_000;
    let p42 = product_correlation("s1", 42);
    let o77 = order_correlation("s1", 77);
    publish(
        &bus,
        &v1::ProductObserved {
            meta: Some(meta_at("s1", "obs-42", &p42, "", t)),
            product: Some(v1::DuellProduct {
                product_id: 42,
                product_number: "ABC-1".into(),
                name: "Kaffe".into(),
                price_inc_vat: "99.00".into(),
                ..Default::default()
            }),
            content_hash: "h".into(),
        },
    )
    .await;
    publish(
        &bus,
        &v1::ProductObserved {
            meta: Some(meta_at(
                "s1",
                "obs-43",
                &product_correlation("s1", 43),
                "",
                t + 1,
            )),
            product: Some(v1::DuellProduct {
                product_id: 43,
                product_number: "OTHER".into(),
                ..Default::default()
            }),
            content_hash: "h".into(),
        },
    )
    .await;
    publish(
        &bus,
        &v1::StockObserved {
            meta: Some(meta_at("s1", "stock-42", &p42, "", t + 1000)),
            product_id: 42,
            product_number: "ABC-1".into(),
            stock: "12".into(),
            actual_stock: String::new(),
        },
    )
    .await;
    publish(
        &bus,
        &v1::OrderObserved {
            meta: Some(meta_at("s1", "order-77", &o77, "", t + 2000)),
            order_id: 77,
            status: "processing".into(),
            number: "77".into(),
            total: "99.00".into(),
            ..Default::default()
        },
    )
    .await;
    publish(
        &bus,
        &v1::StockHoldChanged {
            meta: Some(meta_at("s1", "hold-77", &o77, "order-77", t + 3000)),
            woo_order_id: 77,
            phase: v1::stock_hold_changed::Phase::Received as i32,
            lines: vec![v1::HeldLine {
                duell_product_id: 42,
                product_number: "ABC-1".into(),
                sku: "ABC-1".into(),
                quantity: "1".into(),
                ..Default::default()
            }],
            ..Default::default()
        },
    )
    .await;
    publish(
        &bus,
        &v1::ProductApplied {
            meta: Some(meta_at("s1", "applied-42", &p42, "stock-42", t + 4000)),
            product_id: 42,
            sku: "ABC-1".into(),
            woo_id: 420,
            action: v1::product_applied::Action::Created as i32,
            fields: vec!["create".into()],
            caused_by: vec!["obs-42".into(), "stock-42".into()],
        },
    )
    .await;
    publish(
        &bus,
        &v1::OrderImported {
            meta: Some(meta_at("s1", "imported-77", &o77, "order-77", t + 5000)),
            woo_order_id: 77,
            duell_order_id: 9001,
            duell_order_number: "9001".into(),
            kind: v1::order_imported::Kind::CustomerOrder as i32,
            total: "99.00".into(),
            ..Default::default()
        },
    )
    .await;
    let status = v1::OrderStatusObserved {
        meta: Some(meta_at("s1", "status-77", &o77, "imported-77", t + 6000)),
        woo_order_id: 77,
        duell_order_id: 9001,
        status_id: 5,
        previous_status_id: 1,
    };
    publish(&bus, &status).await;
    dead_letter(
        &bus,
        "s1",
        "status-writeback",
        &status,
        "total_mismatch: 99.00 in DUELL, 120.00 in WooCommerce",
    )
    .await;
    let env = [("DUELLSYNC_NATS__URL", server.url())];

    let run = syncctl(&env, &["--json", "explain", "--store", "s1", "abc-1"]).await;
    assert_eq!(run.code, 0, "{run}");
    let v = run.json();
    assert_eq!(v["product_ids"], serde_json::json!([42]));
    let chain = &v["chains"][0];
    assert_eq!(chain["title"], "product 42 SKU ABC-1");
    let events = chain["events"].as_array().unwrap();
    let types: Vec<&str> = events.iter().map(|e| e["type"].as_str().unwrap()).collect();
    assert_eq!(
        types,
        [
            "ProductObserved",
            "StockObserved",
            "StockHoldChanged",
            "ProductApplied"
        ],
        "{v}"
    );
    assert_eq!(
        events[2]["related"], true,
        "the order's hold on the product"
    );
    assert_eq!(events[3]["outside_write"], "WooCommerce");
    assert_eq!(events[3]["meta"]["causation_id"], "stock-42");
    assert_eq!(
        events[3]["caused_by"],
        serde_json::json!(["obs-42", "stock-42"])
    );

    let run = syncctl(&env, &["--json", "explain", "--store", "s1", "77"]).await;
    assert_eq!(run.code, 0, "{run}");
    let v = run.json();
    let events = v["chains"][0]["events"].as_array().unwrap();
    let types: Vec<&str> = events.iter().map(|e| e["type"].as_str().unwrap()).collect();
    assert_eq!(
        types,
        [
            "OrderObserved",
            "StockHoldChanged",
            "OrderImported",
            "OrderStatusObserved",
            "OrderStatusObserved"
        ],
        "{v}"
    );
    assert_eq!(events[2]["outside_write"], "DUELL");
    assert!(events[4]["dead_letter"]["reason"]
        .as_str()
        .unwrap()
        .contains("total_mismatch"));

    let human = syncctl(&env, &["explain", "--store", "s1", "ABC-1"]).await;
    assert!(human.stdout.contains("→ WooCommerce"), "{human}");
    assert!(
        human.stdout.contains("← stock-42 (StockObserved)"),
        "{human}"
    );

    let run = syncctl(&env, &["explain", "--store", "s1", "NOPE"]).await;
    assert_eq!(run.code, 1, "{run}");
    let run = syncctl(&env, &["explain", "--store", "s1", "--order", "x"]).await;
    assert_eq!(run.code, 2, "{run}");
}
