//! Simulator behaviour other engineers rely on: stock semantics, control API, images,
//! garbage input.

use duellsync_duell::{CustomerId, ProductId, StockQuery};
use duellsync_duell_sim::{ReservationField, SimConfig};
use rust_decimal::Decimal;

use crate::harness::sim_only;
use crate::order;

async fn stock_of(t: &crate::harness::Target, product: u64) -> (Decimal, Decimal) {
    let mut q = StockQuery::department(t.order_department.clone());
    q.product_ids = vec![ProductId(product)];
    let rows = t.client.stock(q).collect_all().await.unwrap();
    let d = &rows[0].department[0];
    (d.stock, d.actual_stock.unwrap())
}

#[tokio::test]
async fn customer_orders_reserve_stock_until_drawn_and_sales_orders_draw_at_once() {
    let Some((t, sim)) = sim_only(
        "customer_orders_reserve_stock",
        SimConfig::default(),
        |_| {},
    )
    .await
    else {
        return;
    };
    let customer = CustomerId(sim.customers()[0].customer_id);
    let p = sim.product_ids_where(|p| !p.is_deleted && !p.is_parent)[0];
    sim.set_stock(2, p, Decimal::from(10));
    let saved = t
        .client
        .save_customer_orders(
            &t.order_department,
            &[order("100", customer, ProductId(p), 3)],
        )
        .await
        .unwrap();
    assert_eq!(
        stock_of(&t, p).await,
        (Decimal::from(10), Decimal::from(7)),
        "reserved, not drawn"
    );
    // Status 11 "Ferdig plukket": the packing slip is made and the stock is drawn.
    sim.set_order_status(saved.data[0].order_id.0, 11).unwrap();
    assert_eq!(stock_of(&t, p).await, (Decimal::from(7), Decimal::from(7)));
    t.client
        .save_sales_orders(
            &t.order_department,
            &[order("101", customer, ProductId(p), 2)],
        )
        .await
        .unwrap();
    assert_eq!(stock_of(&t, p).await, (Decimal::from(5), Decimal::from(5)));
    // A cancelled undrawn order releases its reservation.
    let saved = t
        .client
        .save_customer_orders(
            &t.order_department,
            &[order("102", customer, ProductId(p), 1)],
        )
        .await
        .unwrap();
    assert_eq!(stock_of(&t, p).await, (Decimal::from(5), Decimal::from(4)));
    sim.set_order_status(saved.data[0].order_id.0, 8).unwrap();
    assert_eq!(stock_of(&t, p).await, (Decimal::from(5), Decimal::from(5)));
}

#[tokio::test]
async fn the_stock_field_can_be_the_one_that_nets_reservations() {
    let config = SimConfig {
        reservation_field: ReservationField::Stock,
        ..SimConfig::default()
    };
    let Some((t, sim)) = sim_only("the_stock_field_can_net_reservations", config, |_| {}).await
    else {
        return;
    };
    let customer = CustomerId(sim.customers()[0].customer_id);
    let p = sim.product_ids_where(|p| !p.is_deleted && !p.is_parent)[0];
    sim.set_stock(2, p, Decimal::from(4));
    t.client
        .save_customer_orders(
            &t.order_department,
            &[order("200", customer, ProductId(p), 1)],
        )
        .await
        .unwrap();
    assert_eq!(stock_of(&t, p).await, (Decimal::from(3), Decimal::from(4)));
}

#[tokio::test]
async fn hidden_deleted_and_changed_products_show_through_the_api() {
    let Some((t, sim)) = sim_only(
        "hidden_deleted_and_changed_products",
        SimConfig::default(),
        |_| {},
    )
    .await
    else {
        return;
    };
    let p = sim.product_ids_where(|p| p.view_on_webshop && !p.is_deleted && !p.is_parent)[0];
    sim.set_visible(p, false).unwrap();
    let shown = t
        .client
        .products(duellsync_duell::ProductQuery::webshop())
        .collect_all()
        .await
        .unwrap();
    assert!(shown.iter().all(|x| x.product_id.0 != p));
    sim.delete_product(p).unwrap();
    let deleted = t
        .client
        .products(duellsync_duell::ProductQuery::deleted())
        .collect_all()
        .await
        .unwrap();
    assert!(deleted.iter().any(|x| x.product_id.0 == p));
    let q = sim.product_ids_where(|p| p.view_on_webshop && !p.is_deleted && !p.is_parent)[0];
    sim.update_product(
        q,
        duellsync_duell_sim::ProductPatch {
            price_inc_vat: Some(Decimal::new(19990, 2)),
            special_price: Some(Some(Decimal::new(14990, 2))),
            special_price_start_date: Some(Some(time::macros::datetime!(2026-12-01 00:00:00))),
            special_price_end_date: Some(Some(time::macros::datetime!(2026-12-24 23:59:59))),
            product_image: Some("kampanje-1".into()),
            custom_fields: Some(vec![duellsync_duell_sim::SimCustomField {
                description: "Farge".into(),
                value: "Rød".into(),
            }]),
            ..Default::default()
        },
    )
    .unwrap();
    let found = t
        .client
        .find_products_by_number(&sim.product(q).unwrap().product_number)
        .await
        .unwrap();
    let x = found.iter().find(|x| x.product_id.0 == q).unwrap();
    assert_eq!(x.price_inc_vat, Decimal::new(19990, 2));
    assert_eq!(x.special_price, Some(Decimal::new(14990, 2)));
    assert_eq!(
        x.special_price_end_date,
        Some(time::macros::datetime!(2026-12-24 23:59:59))
    );
    assert_eq!(x.custom_fields[0].description, "Farge");
    let image = x.product_image.clone().unwrap();
    assert_eq!(image, format!("{}/images/kampanje-1.png", sim.origin()));
    let png = reqwest::get(&image).await.unwrap();
    assert_eq!(png.headers()["content-type"], "image/png");
    assert!(png.bytes().await.unwrap().starts_with(b"\x89PNG"));
}

#[tokio::test]
async fn control_api_over_http_changes_stock_and_reports_counts() {
    let Some((t, sim)) = sim_only("control_api_over_http", SimConfig::default(), |_| {}).await
    else {
        return;
    };
    let http = reqwest::Client::new();
    let base = format!("{}/__sim", sim.origin());
    let p = sim.product_ids_where(|p| !p.is_deleted && !p.is_parent)[0];
    let r = http
        .put(format!("{base}/stock/2/{p}"))
        .json(&serde_json::json!({"stock": 12.5}))
        .send()
        .await
        .unwrap();
    assert!(r.status().is_success());
    assert_eq!(sim.stock(2, p).physical, Decimal::new(125, 1));
    let r = http
        .post(format!("{base}/faults"))
        .json(&serde_json::json!({"endpoint": "department/list", "count": 1, "fault": {"kind": "server_error", "status": 503}}))
        .send()
        .await
        .unwrap();
    assert!(r.status().is_success());
    t.client.departments().await.unwrap();
    let stats: serde_json::Value = http
        .get(format!("{base}/stats"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(stats["requests"]["department/list"], 2);
    assert_eq!(stats["logins"], 1);
    let r = http
        .post(format!("{base}/tokens/expire"))
        .send()
        .await
        .unwrap();
    assert!(r.status().is_success());
    t.client.departments().await.unwrap();
    assert_eq!(sim.login_count(), 2);
    let created: serde_json::Value = http
        .post(format!("{base}/products"))
        .json(&serde_json::json!({"product_name": "Kontrollvare", "price_inc_vat": "99.50", "stock": "3"}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let id = created["product_id"].as_u64().unwrap();
    assert_eq!(
        sim.product(id).unwrap().price_inc_vat,
        Decimal::new(9950, 2)
    );
}

#[tokio::test]
async fn the_simulator_answers_garbage_with_error_envelopes() {
    let Some((_t, sim)) = sim_only(
        "the_simulator_answers_garbage",
        SimConfig::default(),
        |_| {},
    )
    .await
    else {
        return;
    };
    let http = reqwest::Client::new();
    let login: serde_json::Value = http
        .post(format!("{}getaccesstokens", sim.base_url()))
        .json(&serde_json::json!({"client_number": sim.client_number(), "client_token": sim.client_token()}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let token = login["token"].as_str().unwrap().to_string();
    let garbage: [&[u8]; 6] = [
        b"",
        b"{",
        b"[1,2]",
        b"\xff\xfe",
        b"{\"orders\": 5}",
        b"{\"orders\": {\"1\": {\"order_data\": [], \"product_data\": \"x\"}}}",
    ];
    for path in [
        "logistics/orders/save",
        "sale/orders/save",
        "product/save",
        "product/adjust-stock",
        "product/category/save",
    ] {
        for body in garbage {
            let r = http
                .post(format!("{}{path}", sim.base_url()))
                .bearer_auth(&token)
                .body(body.to_vec())
                .send()
                .await
                .unwrap();
            let status = r.status();
            assert!(status.as_u16() < 500, "{path} {body:?}: {status}");
            let v: serde_json::Value = r.json().await.unwrap();
            if status.is_success() {
                // Rows that are all invalid: saved nothing, said why.
                assert_eq!(v["total_affected"], 0, "{path} {body:?}: {v}");
            } else {
                assert_eq!(v["status"], false);
            }
        }
    }
    for query in [
        "start=-1&length=abc",
        "filter[last_update_date]=yesterday",
        "filter[product_id][]=x&sort_by=%00",
    ] {
        let r = http
            .get(format!("{}product/list?{query}", sim.base_url()))
            .bearer_auth(&token)
            .send()
            .await
            .unwrap();
        assert!(r.status().as_u16() < 500, "{query}");
    }
    let r = http
        .get(format!("{}logistics/orders/view/abc", sim.base_url()))
        .bearer_auth(&token)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 404);
    let r = http
        .get(format!("{}nope", sim.base_url()))
        .bearer_auth(&token)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 404);
    let r = http
        .get(format!("{}product/list", sim.base_url()))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 401);
}
